//! The processing pipeline: after the authoritative de-identification (web/upload.rs) a
//! scan is a durable job in the database that moves through
//!
//! ```text
//! deidentified --convert--> converted --store--> stored --segment--> segmenting
//!     --> segmented --score--> scored --retention--> done        (or failed)
//! ```
//!
//! * **convert**: the de-identified ZIP from the object store → dcm2niix in a private temp
//!   dir (convert.rs) → defaced → the NIfTI into the object store under the scan's
//!   `nifti_key` → the archive deleted.
//! * **segment**: pre-signed URLs (GET NIfTI, PUT labels and volumes) → the segmentation
//!   service (segmenter.rs: the local worker or RunPod); the job handle is persisted so a
//!   restarted server finds the running job again, or submits it again if it was lost.
//! * **score**: the worker's volumes JSON + the scan's age and sex → percentiles (score.rs)
//!   → `scan_regions` rows and `scans.result_json`, and `done`. (The DICOM archive, whose
//!   images show the face, went when convert stored the defaced volume.)
//!
//! Durability: one `jobs` row per scan. A process claims a ready job with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), renews it while
//! working, and every state change is *fenced*: it commits only while this process still
//! holds the lease, so a job taken over after a lease expiry cannot be completed twice.
//! Steps are idempotent: object keys are fixed when the scan is queued (a re-run overwrites
//! its own objects), result rows are replaced in one transaction. Transient failures (object
//! store or worker unavailable) are retried with exponential backoff; a scan fails with a
//! user-readable reason after `job_max_attempts`, and the user may retry it.
//!
//! The step bodies ([`Steps`]) do not touch the database, so `neurovol analyze` runs the
//! very same conversion, segmentation and scoring on one machine without it.

mod backfill;
mod queue;
pub mod score;
mod startup;
mod steps;

use std::path::PathBuf;
use std::time::Duration;

use crate::convert::ConvertSettings;
use crate::object_store::StoreError;
use crate::segmenter::SegmenterError;

pub use queue::{Pipeline, enqueue, retry};
pub use startup::{check_dcm2niix, load_defacer, open_store, preflight, start};
pub use steps::{ConversionFacts, SegmenterSlot, Steps};

/// The worker's volumes JSON is small; anything bigger is not ours.
const MAX_VOLUMES_JSON: u64 = 4 << 20;

#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub concurrency: u32,
    pub lease: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub poll_interval: Duration,
    pub model: String,
    pub brain_mask: bool,
    pub segment_timeout: Duration,
    pub convert: ConvertSettings,
    /// Private temp dirs are created (and removed) under this folder.
    pub tmp_dir: PathBuf,
    /// The site calibration percentiles are computed with (`NEUROVOL_CALIBRATION`).
    pub site: norms::Site,
}

impl PipelineSettings {
    /// Fails on a calibration file that cannot be read or does not fit the reference.
    pub fn from_config(config: &crate::config::Config) -> Result<PipelineSettings, crate::config::ConfigError> {
        Ok(PipelineSettings {
            concurrency: config.pipeline_concurrency,
            lease: Duration::from_secs(config.job_lease_secs),
            max_attempts: config.job_max_attempts,
            backoff_base: Duration::from_secs(config.job_backoff_secs),
            backoff_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(1000),
            model: config.segment_model.clone(),
            brain_mask: config.segment_brain_mask,
            segment_timeout: Duration::from_secs(config.segment_timeout_secs),
            convert: convert_settings(config),
            tmp_dir: config.tmp_dir(),
            site: config.load_site_for_pipeline()?,
        })
    }
}

/// The conversion settings of this configuration (the pipeline and the upload's dry run).
pub fn convert_settings(config: &crate::config::Config) -> ConvertSettings {
    ConvertSettings {
        dcm2niix: config.dcm2niix.clone(),
        ..ConvertSettings::default()
    }
}

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// Try again later (object store or worker unavailable, I/O): backoff, then retry.
    Transient(String),
    /// The input cannot be processed: the scan fails with this code and user-readable reason.
    Refused { code: &'static str, reason: String },
    /// The segmentation service lost the job (restart, expiry): submit it again now.
    Resubmit(String),
    /// Another process owns the job now: stop without writing anything.
    LeaseLost,
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> StepError {
        // the store's own rule: a store that is down or an I/O error may pass; a missing,
        // oversized or unnamable object of this scan will not come back by waiting
        if e.is_transient() {
            StepError::Transient(format!("object store: {e}"))
        } else {
            StepError::Refused {
                code: "stored_file_unusable",
                reason: "A file we stored for this scan can no longer be read. Please upload the scan again.".into(),
            }
        }
    }
}

impl From<SegmenterError> for StepError {
    fn from(e: SegmenterError) -> StepError {
        StepError::Transient(e.to_string())
    }
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> StepError {
        StepError::Transient(format!("database: {e}"))
    }
}
