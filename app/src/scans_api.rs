//! What the pages know about a user's scans, and the server functions that read them.
//!
//! `app` cannot depend on `server`, so the database access is injected: the server
//! implements [`ScanStore`] and provides an `Arc<dyn ScanStore>` as Leptos context
//! (`leptos_routes_with_context`), which the server functions below use. The upload itself
//! (create / chunks / status / complete) is plain HTTP (`/uploads/...`, server/src/web/upload.rs)
//! because it carries raw bytes.

use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use serde::{Deserialize, Serialize};

pub use crate::scan_state::{ScanStatus, Step};

/// A scan as listed on the home page. Numbers and codes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub id: String,
    pub status: ScanStatus,
    pub age_years: Option<u32>,
    /// M, F, O or U
    pub sex: String,
    /// ISO date
    pub study_date: Option<String>,
    pub created_at: i64,
    pub files: u64,
}

/// A scan's status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanDetail {
    pub summary: ScanSummary,
    pub object_bytes: u64,
    /// Distinct attribute keywords removed.
    pub attributes_removed: u64,
    pub private_elements_removed: u64,
    pub overlay_elements_removed: u64,
    pub uids_replaced: u64,
    pub archive_deleted: bool,
    /// User-readable reason when the scan failed.
    pub failure_reason: Option<String>,
    /// Whether the Retry action is offered.
    pub failure_retryable: bool,
    /// Set while the pipeline waits to retry a step after a service did not answer.
    pub retrying: Option<Retrying>,
    /// (code, message) notes: low resolution, quality, age outside the reference, ...
    pub warnings: Vec<(String, String)>,
    pub voxel_mm: Option<[f64; 3]>,
    pub model: Option<String>,
    /// Whether the segmentation passed the automatic quality checks (known once scored).
    #[serde(default)]
    pub quality_ok: Option<bool>,
    /// The quality grade (A, B or C) and why it is not A (known once scored).
    #[serde(default)]
    pub grade: Option<String>,
    #[serde(default)]
    pub grade_reasons: Vec<String>,
    /// The site calibration the percentiles use, in words…
    #[serde(default)]
    pub calibration: Option<String>,
    /// …and itself: the charts' centiles are its.
    #[serde(default)]
    pub site: norms::Site,
    /// What the validity table that decided which percentiles are shown measured.
    #[serde(default)]
    pub validity: Option<String>,
    pub icv_mm3: Option<f64>,
    pub regions: Vec<RegionRow>,
    /// The account's other processed scans (their region volumes), for the charts.
    #[serde(default)]
    pub history: Vec<HistoryScan>,
    /// The account has no password (it signs in with Google only): its deletion is
    /// confirmed by a fresh Google sign-in instead of the password.
    #[serde(default)]
    pub confirm_with_google: bool,
}

/// Another processed scan of the same account, as the charts place it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryScan {
    pub id: String,
    pub study_date: Option<String>,
    pub age_years: Option<u32>,
    /// (region name, volume in mm³)
    pub volumes: Vec<(String, f64)>,
}

/// A file of a scan that its owner can download (`GET /scans/{id}/files/{name}`) and that
/// the export holds: one name per file, used by the links, the server and the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanFile {
    /// The de-identified DICOM archive, until its images are converted (they show the face).
    Archive,
    /// The de-identified 3D volume, face removed.
    Volume,
    /// The mid-sagittal slice of the stored volume (shows that the face was removed).
    Midline,
    /// The segmentation: one label per voxel.
    Labels,
    /// The segmentation service's region volumes.
    Volumes,
    /// The scored report: volumes, percentiles and flags.
    Results,
    /// The regions table: volume, percentile and flag per region.
    RegionsCsv,
    /// The normative reference's centile volumes per region, sex and age (what the
    /// percentiles were computed against).
    NormalLimits,
    /// The labels' names and colours (JSON), the model's own colour map.
    LabelColours,
    /// The same as a FreeSurfer-style colour look-up table (text).
    LabelLut,
    /// The middle axial slice with the labels over it (PNG), for the report.
    SliceAxial,
    /// The middle coronal slice with the labels (PNG).
    SliceCoronal,
    /// The middle sagittal slice with the labels (PNG).
    SliceSagittal,
}

impl ScanFile {
    pub const ALL: [ScanFile; 13] = [
        ScanFile::Archive,
        ScanFile::Volume,
        ScanFile::Midline,
        ScanFile::Labels,
        ScanFile::Volumes,
        ScanFile::Results,
        ScanFile::RegionsCsv,
        ScanFile::NormalLimits,
        ScanFile::LabelColours,
        ScanFile::LabelLut,
        ScanFile::SliceAxial,
        ScanFile::SliceCoronal,
        ScanFile::SliceSagittal,
    ];

    /// The file's name, in the URL, the download and the export.
    pub const fn file_name(self) -> &'static str {
        match self {
            ScanFile::Archive => "dicom-deidentified.zip",
            ScanFile::Volume => "volume.nii.gz",
            ScanFile::Midline => "midline.png",
            ScanFile::Labels => "labels.nii.gz",
            ScanFile::Volumes => "volumes.json",
            ScanFile::Results => "results.json",
            ScanFile::RegionsCsv => "regions.csv",
            ScanFile::NormalLimits => "normal-limits.csv",
            ScanFile::LabelColours => "label-colours.json",
            ScanFile::LabelLut => "label-colours.txt",
            ScanFile::SliceAxial => "slice-axial.png",
            ScanFile::SliceCoronal => "slice-coronal.png",
            ScanFile::SliceSagittal => "slice-sagittal.png",
        }
    }

    pub fn parse(name: &str) -> Option<ScanFile> {
        Self::ALL.into_iter().find(|f| f.file_name() == name)
    }

    /// What it is, for the scan page and the export's README.
    pub fn describe(self) -> &'static str {
        match self {
            ScanFile::Archive => {
                "the de-identified DICOM files as the server stored them after its own de-identification"
            }
            ScanFile::Volume => {
                "the de-identified 3D volume (NIfTI) converted from the DICOM files, with the face removed"
            }
            ScanFile::Midline => {
                "the middle slice of that volume seen from the side, to check that the face was removed (PNG)"
            }
            ScanFile::Labels => "the segmentation: a NIfTI with one region label per voxel",
            ScanFile::Volumes => "the region volumes as measured by the segmentation service (JSON)",
            ScanFile::Results => "the results: region volumes, percentiles and flags (JSON)",
            ScanFile::RegionsCsv => "the results as a table: region, volume, percentile, flag (CSV)",
            ScanFile::NormalLimits => {
                "the normal limits used: the reference's 1st–99th centile volumes per region, sex and year of age (CSV)"
            }
            ScanFile::LabelColours => "each label's value, name and colour in labels.nii.gz (JSON)",
            ScanFile::LabelLut => {
                "the same as a FreeSurfer colour look-up table, for FreeSurfer's tools and viewers (text)"
            }
            ScanFile::SliceAxial => "the middle axial slice with the regions in their colours (PNG)",
            ScanFile::SliceCoronal => "the middle coronal slice with the regions in their colours (PNG)",
            ScanFile::SliceSagittal => "the middle sagittal slice with the regions in their colours (PNG)",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ScanFile::Archive => "application/zip",
            ScanFile::Volume | ScanFile::Labels => "application/gzip",
            ScanFile::Midline | ScanFile::SliceAxial | ScanFile::SliceCoronal | ScanFile::SliceSagittal => "image/png",
            ScanFile::Volumes | ScanFile::Results | ScanFile::LabelColours => "application/json",
            ScanFile::LabelLut => "text/plain; charset=utf-8",
            ScanFile::RegionsCsv | ScanFile::NormalLimits => "text/csv; charset=utf-8",
        }
    }

    /// Pictures drawn for the pages (viewing them is not a download worth auditing).
    pub fn is_picture(self) -> bool {
        matches!(
            self,
            ScanFile::Midline | ScanFile::SliceAxial | ScanFile::SliceCoronal | ScanFile::SliceSagittal
        )
    }

    /// The files of a scan in this state (the picture once the volume is stored, results
    /// once it is done).
    pub fn available(status: ScanStatus, archive_deleted: bool) -> Vec<ScanFile> {
        Self::ALL
            .into_iter()
            .filter(|f| match f {
                ScanFile::Archive => !archive_deleted,
                ScanFile::Midline => status.volume_stored(),
                _ => status == ScanStatus::Done,
            })
            .collect()
    }
}

/// A step that a service kept from finishing and that the pipeline will run again by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retrying {
    pub step: Step,
    /// Attempts made so far.
    pub attempts: u32,
}

impl Retrying {
    /// What the scan page says; the server log keeps the technical reason.
    pub fn text(&self) -> String {
        let waiting_for = match self.step {
            Step::Segment => "the segmentation service",
            Step::Convert | Step::Score => "the storage service",
        };
        let tries = if self.attempts == 1 { "once" } else { "several times" };
        format!(
            "Waiting for {waiting_for}: it did not answer ({tries} so far). We retry automatically; you can leave this page."
        )
    }
}

/// One region of a processed scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRow {
    pub name: String,
    pub volume_mm3: f64,
    pub percentile: Option<f64>,
    pub flag: Option<String>,
    /// Why there is no percentile (a code, see [`no_percentile_text`]), when there is none…
    #[serde(default)]
    pub no_percentile: Option<String>,
    /// …and the reason in words with its figure, where the scorer gave one.
    #[serde(default)]
    pub no_percentile_reason: Option<String>,
    /// The percentiles one SD of uncertainty below and above the percentile.
    #[serde(default)]
    pub percentile_band: Option<[f64; 2]>,
    /// The reference's volumes (mm³) at [`BAND_CENTILES`] for the scan's age and sex, where
    /// the region has a normative model and both are known.
    #[serde(default)]
    pub centiles: Option<[f64; 5]>,
    /// Left/right asymmetry index of the structure, (L − R) / mean, on both sides' rows.
    #[serde(default)]
    pub asymmetry: Option<f64>,
}

/// Whether a `no_percentile` code says our method cannot support a percentile (the validity
/// table's `method_*` codes), rather than the scan or the reference.
pub fn is_method_code(code: &str) -> bool {
    code.starts_with("method_")
}

impl RegionRow {
    /// Whether its centile chart is drawn: it has a reference, and our method may place it
    /// on it (a region whose percentile the validity table withholds gets no dot among the
    /// centiles either).
    pub fn chartable(&self) -> bool {
        crate::chart::has_reference(&self.name) && !self.withheld_by_method()
    }

    /// Whether the validity table withheld its percentile.
    pub fn withheld_by_method(&self) -> bool {
        self.no_percentile.as_deref().is_some_and(is_method_code)
    }

    /// The scorer's words, with their figure, for a percentile our method withheld (the
    /// other reasons read better in [`no_percentile_text`]'s few words).
    pub fn method_reason(&self) -> Option<&str> {
        self.no_percentile_reason
            .as_deref()
            .filter(|_| self.withheld_by_method())
    }
}

/// A percentile's band in words, "17–27"; "<3" or ">97" where it reaches an end (no one
/// stands at the 0th or the 100th).
pub fn band_text([low, high]: [f64; 2]) -> String {
    match (low < 0.5, high >= 99.5) {
        (false, false) => format!("{low:.0}–{high:.0}"),
        (true, false) => format!("<{high:.0}"),
        (false, true) => format!(">{low:.0}"),
        (true, true) => "<1–>99".to_string(),
    }
}

/// The centiles the scan page's band and normal range show (the 5th–95th is the usual
/// range; below or above it a value is flagged).
pub const BAND_CENTILES: [f64; 5] = [5.0, 25.0, 50.0, 75.0, 95.0];

/// What a quality grade means, in a few words.
impl ScanDetail {
    /// The grade's reasons that the scan's notes do not already say (a flag about the whole
    /// segmentation, or about the input, is both a note and a reason).
    pub fn grade_reasons_beyond_notes(&self) -> Vec<&str> {
        self.grade_reasons
            .iter()
            .map(String::as_str)
            .filter(|r| !self.warnings.iter().any(|(_, w)| w == r))
            .collect()
    }
}

pub fn grade_text(grade: &str) -> &'static str {
    match grade {
        "A" => "A: no quality concern",
        "B" => "B: usable, with the concerns listed; flagged regions have no percentile",
        "C" => "C: the segmentation failed a check; every percentile is withheld",
        _ => "not available",
    }
}

/// Why a region has no percentile, in a few words.
pub fn no_percentile_text(code: &str) -> &'static str {
    match code {
        "no_model" => "no normative model for this region",
        "age_out_of_range" => "age outside the normative reference",
        "age_unknown" => "age not recorded",
        "sex_unknown" => "sex not recorded",
        "flagged" => "withheld: see the note",
        "method_biased" => "withheld: our measurement of this structure differs from the reference's method",
        "method_imprecise" => "withheld: our measurement of this structure is not precise enough for a percentile",
        "method_overlap" => "withheld: our labels of this structure overlap the reference method's too little",
        "method_unmeasured" => "withheld: this way of measuring was never compared with the reference's",
        _ => "not available",
    }
}

/// What a region's flag means, in a few words.
pub fn flag_text(code: &str) -> &'static str {
    match code {
        "below_5th" => "below the 5th percentile",
        "above_95th" => "above the 95th percentile",
        "low_confidence" => "few reference scans at this age",
        "implausible_for_age" => "implausible for the age: likely a segmentation error, not scored",
        "fragmented" => "segmented in pieces: not scored",
        "missing_region" => "not found by the segmentation: not scored",
        "quality" => "segmentation failed a quality check: not scored",
        _ => "flagged",
    }
}

impl ScanSummary {
    pub fn sex_text(&self) -> &'static str {
        crate::format::sex_text(&self.sex)
    }
}

#[cfg(feature = "ssr")]
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Scan rows, implemented by the server over its database.
#[cfg(feature = "ssr")]
pub trait ScanStore: Send + Sync + 'static {
    fn list(&self, user_id: String) -> BoxFuture<Result<Vec<ScanSummary>, String>>;
    fn get(&self, user_id: String, scan_id: String) -> BoxFuture<Result<Option<ScanDetail>, String>>;
    /// The account's processed scans in time order (scan date, then upload).
    fn timeline(&self, user_id: String) -> BoxFuture<Result<Vec<crate::timeline::TimelineScan>, String>>;
}

#[cfg(feature = "ssr")]
pub type SharedScanStore = std::sync::Arc<dyn ScanStore>;

/// The signed-in account's id from the request (an error for a visitor).
#[cfg(feature = "ssr")]
pub(crate) fn signed_in_user() -> Result<String, ServerFnError> {
    let parts = use_context::<http::request::Parts>().ok_or_else(|| ServerFnError::new("request context missing"))?;
    parts
        .extensions
        .get::<crate::SessionInfo>()
        .and_then(|s| s.user.as_ref().map(|u| u.id.clone()))
        .ok_or_else(|| ServerFnError::new("Please log in."))
}

#[cfg(feature = "ssr")]
fn store() -> Result<SharedScanStore, ServerFnError> {
    use_context::<SharedScanStore>().ok_or_else(|| ServerFnError::new("scan store not provided"))
}

/// The signed-in user's scans, newest first.
#[server(input = GetUrl)]
pub async fn list_scans() -> Result<Vec<ScanSummary>, ServerFnError> {
    let user = signed_in_user()?;
    store()?
        .list(user)
        .await
        .map_err(|_| ServerFnError::new("The scans could not be loaded."))
}

/// One of the signed-in user's scans (`None` when it does not exist or is not theirs).
#[server(input = GetUrl)]
pub async fn get_scan(id: String) -> Result<Option<ScanDetail>, ServerFnError> {
    let user = signed_in_user()?;
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    store()?
        .get(user, id)
        .await
        .map_err(|_| ServerFnError::new("The scan could not be loaded."))
}

/// The signed-in user's processed scans in time order, for the view of change over time.
#[server(input = GetUrl)]
pub async fn get_timeline() -> Result<Vec<crate::timeline::TimelineScan>, ServerFnError> {
    let user = signed_in_user()?;
    store()?
        .timeline(user)
        .await
        .map_err(|_| ServerFnError::new("The scans could not be loaded."))
}
