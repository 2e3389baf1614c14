//! The step bodies (convert, segment, score): object store and segmentation service,
//! never the database, so `neurovol analyze` runs them without one.

use std::sync::Arc;

use super::score::{self, Report, ScanFacts, Warning};
use super::*;
use crate::convert::{self};
use crate::object_store::ObjectStore;
use crate::segmenter::{JobHandle, JobInput, JobOutput, JobState, Segmenter};
use crate::temp_dir::TempDir;
use volumetry::deface::{Defacer, Defacing};

/// What conversion found out about the volume (kept with the scan; no header text).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ConversionFacts {
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    pub nifti_bytes: u64,
    pub warnings: Vec<Warning>,
    pub dcm2niix_ms: u64,
    /// The face removal (plane, voxels removed, time); absent on scans converted before it.
    #[serde(default)]
    pub defacing: Option<Defacing>,
}

/// The segmentation client, set once it has started (the local worker takes a moment).
pub type SegmenterSlot = Arc<tokio::sync::OnceCell<Segmenter>>;

/// The step bodies: object store + segmentation service, no database.
pub struct Steps {
    pub store: Arc<dyn ObjectStore>,
    pub segmenter: SegmenterSlot,
    /// Removes the face before the volume is stored or sent anywhere.
    pub defacer: Arc<Defacer>,
    pub settings: PipelineSettings,
}

impl Steps {
    fn segmenter(&self) -> Result<&Segmenter, StepError> {
        self.segmenter
            .get()
            .ok_or_else(|| StepError::Transient("the segmentation service is starting".into()))
    }

    /// De-identified ZIP (`archive_key`) → defaced NIfTI stored under `nifti_key`; nothing
    /// with a face is stored or sent. `on_converted` runs between conversion and storing
    /// (the job records the `converted` state there).
    pub async fn convert_and_store<F, Fut>(
        &self,
        archive_key: &str,
        nifti_key: &str,
        on_converted: F,
    ) -> Result<ConversionFacts, StepError>
    where
        F: FnOnce(ConversionFacts) -> Fut,
        Fut: std::future::Future<Output = Result<(), StepError>>,
    {
        let work = TempDir::new(&self.settings.tmp_dir, "convert")
            .map_err(|e| StepError::Transient(format!("cannot create a temp dir: {e}")))?;
        let archive = work.path().join("archive.zip");
        self.store.get_to_file(archive_key, &archive).await?;
        let (zip, dir, settings) = (archive.clone(), work.path().join("work"), self.settings.convert.clone());
        let defacer = self.defacer.clone();
        std::fs::create_dir(&dir).map_err(|e| StepError::Transient(format!("cannot create a temp dir: {e}")))?;
        let converted = tokio::task::spawn_blocking(move || convert::convert(&zip, &dir, &settings, Some(&defacer)))
            .await
            .map_err(|_| StepError::Transient("the conversion task failed".into()))?;
        let converted = match converted {
            Ok(c) => c,
            Err(e) if e.is_input_problem() => {
                return Err(StepError::Refused {
                    code: e.code(),
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(StepError::Transient(format!("conversion: {} ({})", e.code(), e))),
        };
        let nifti_bytes = std::fs::metadata(&converted.nifti).map(|m| m.len()).unwrap_or(0);
        let facts = ConversionFacts {
            dims: converted.dims,
            voxel_mm: converted.voxel_mm,
            nifti_bytes,
            // the converter's own warnings (low resolution), as the report carries them
            warnings: converted
                .warnings
                .iter()
                .map(|w| Warning {
                    code: w.code().into(),
                    message: w.to_string(),
                })
                .collect(),
            dcm2niix_ms: converted.dcm2niix_ms,
            defacing: converted.defacing.clone(),
        };
        on_converted(facts.clone()).await?;
        self.store.put_file(nifti_key, &converted.nifti).await?;
        Ok(facts)
    }

    /// Hands the stored (defaced) NIfTI to the segmentation service with pre-signed URLs
    /// and the head's intensity reference (`None` for a scan converted before defacing).
    pub async fn submit_segmentation(
        &self,
        nifti_key: &str,
        labels_key: &str,
        volumes_key: &str,
        intensity: Option<volumetry::IntensityReference>,
    ) -> Result<JobHandle, StepError> {
        let input = JobInput {
            nifti_url: self
                .store
                .presign_get(nifti_key, crate::storage::MAX_SIGNED_URL_TTL)
                .await?,
            labels_url: self
                .store
                .presign_put(labels_key, crate::storage::MAX_SIGNED_URL_TTL)
                .await?,
            volumes_url: self
                .store
                .presign_put(volumes_key, crate::storage::MAX_SIGNED_URL_TTL)
                .await?,
            model: self.settings.model.clone(),
            brain_mask: self.settings.brain_mask,
            intensity,
        };
        Ok(self
            .segmenter()?
            .submit(&input, Some(self.settings.segment_timeout))
            .await?)
    }

    /// Waits for a dispatched segmentation; checks that both outputs arrived.
    pub async fn await_segmentation(
        &self,
        job: &JobHandle,
        labels_key: &str,
        volumes_key: &str,
    ) -> Result<JobOutput, StepError> {
        match self.segmenter()?.wait(job, self.settings.segment_timeout).await? {
            JobState::Completed { output } => {
                let labels = self.store.size(labels_key).await?;
                let volumes = self.store.size(volumes_key).await?;
                if labels.is_none() || volumes.is_none() {
                    return Err(StepError::Resubmit(
                        "the worker reported success but an output is missing".into(),
                    ));
                }
                Ok(output)
            }
            JobState::Lost { reason } | JobState::TimedOut { reason } => Err(StepError::Resubmit(reason)),
            JobState::Cancelled => Err(StepError::Resubmit("the segmentation was cancelled".into())),
            // The inputs were validated before; a refusal here is most likely an expired URL
            // or an unreachable object store, so it is submitted again (and reported if it
            // keeps failing).
            JobState::Failed { reason } => Err(StepError::Resubmit(format!("segmentation failed: {reason}"))),
            JobState::Queued | JobState::Running => Err(StepError::Transient("segmentation still running".into())),
        }
    }

    /// The worker's volumes JSON + age and sex → the report.
    pub async fn score(
        &self,
        volumes_key: &str,
        facts: &ScanFacts,
        warnings: Vec<Warning>,
    ) -> Result<(Report, Vec<u8>), StepError> {
        let bytes = self.store.get_bytes(volumes_key, MAX_VOLUMES_JSON).await?;
        let volumes: volumetry::VolumesJson = serde_json::from_slice(&bytes).map_err(|e| StepError::Refused {
            code: "bad_volumes",
            reason: format!("the segmentation service returned unreadable volumes ({e})"),
        })?;
        Ok((score::score(&volumes, facts, warnings, &self.settings.site), bytes))
    }
}
