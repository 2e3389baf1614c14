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

/// A scan as listed on the home page. Numbers and codes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub id: String,
    /// `deidentified` (then the pipeline's states, issue 6)
    pub status: String,
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
    /// (code, message) notes: low resolution, quality, age outside the reference, ...
    pub warnings: Vec<(String, String)>,
    pub voxel_mm: Option<[f64; 3]>,
    pub model: Option<String>,
    pub icv_mm3: Option<f64>,
    pub regions: Vec<RegionRow>,
    /// The visitor's CSRF token, for the Retry form (filled by [`get_scan`]).
    pub csrf_token: String,
}

/// One region of a processed scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionRow {
    pub name: String,
    pub volume_mm3: f64,
    pub percentile: Option<f64>,
    pub flag: Option<String>,
}

/// The pipeline's states in order, with what the scan page calls them.
pub const STEPS: &[(&str, &str)] = &[
    ("deidentified", "De-identified"),
    ("converted", "Converted to a 3D volume"),
    ("stored", "Stored"),
    ("segmenting", "Segmenting brain regions"),
    ("segmented", "Segmented"),
    ("scored", "Compared with the normative reference"),
    ("done", "Done"),
];

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
    pub fn status_text(&self) -> &'static str {
        match self.status.as_str() {
            "deidentified" => "Received and de-identified — waiting for processing",
            "converted" | "stored" => "Converted — waiting for segmentation",
            "segmenting" => "Segmenting",
            "segmented" | "scored" => "Computing percentiles",
            "failed" => "Processing failed",
            "done" => "Done",
            _ => "Processing",
        }
    }

    pub fn sex_text(&self) -> &'static str {
        match self.sex.as_str() {
            "M" => "male",
            "F" => "female",
            "O" => "other",
            _ => "not recorded",
        }
    }
}

#[cfg(feature = "ssr")]
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Scan rows, implemented by the server over its database.
#[cfg(feature = "ssr")]
pub trait ScanStore: Send + Sync + 'static {
    fn list(&self, user_id: String) -> BoxFuture<Result<Vec<ScanSummary>, String>>;
    fn get(
        &self,
        user_id: String,
        scan_id: String,
    ) -> BoxFuture<Result<Option<ScanDetail>, String>>;
}

#[cfg(feature = "ssr")]
pub type SharedScanStore = std::sync::Arc<dyn ScanStore>;

#[cfg(feature = "ssr")]
fn signed_in_user() -> Result<String, ServerFnError> {
    let parts = use_context::<http::request::Parts>()
        .ok_or_else(|| ServerFnError::new("request context missing"))?;
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
    let mut detail = store()?
        .get(user, id)
        .await
        .map_err(|_| ServerFnError::new("The scan could not be loaded."))?;
    if let Some(d) = detail.as_mut() {
        d.csrf_token = csrf_token()?;
    }
    Ok(detail)
}

#[cfg(feature = "ssr")]
fn csrf_token() -> Result<String, ServerFnError> {
    let parts = use_context::<http::request::Parts>()
        .ok_or_else(|| ServerFnError::new("request context missing"))?;
    Ok(parts.extensions.get::<crate::SessionInfo>().map(|s| s.csrf_token.clone()).unwrap_or_default())
}
