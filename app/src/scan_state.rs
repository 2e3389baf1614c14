//! The pipeline's states, shared by the pages and the server: a scan's [`ScanStatus`], the
//! job [`Step`] that moves it on, and the job's [`JobState`]. Stored as their snake_case
//! names (`as_str` / `parse`), the same names serde writes.

use serde::{Deserialize, Serialize};

/// Where a scan is. No row exists before the authoritative de-identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    Deidentified,
    Converted,
    Stored,
    Segmenting,
    Segmented,
    Scored,
    Done,
    Failed,
}

impl ScanStatus {
    /// The successful path, in order (the scan page's step list).
    pub const PATH: [ScanStatus; 7] = [
        ScanStatus::Deidentified,
        ScanStatus::Converted,
        ScanStatus::Stored,
        ScanStatus::Segmenting,
        ScanStatus::Segmented,
        ScanStatus::Scored,
        ScanStatus::Done,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Deidentified => "deidentified",
            ScanStatus::Converted => "converted",
            ScanStatus::Stored => "stored",
            ScanStatus::Segmenting => "segmenting",
            ScanStatus::Segmented => "segmented",
            ScanStatus::Scored => "scored",
            ScanStatus::Done => "done",
            ScanStatus::Failed => "failed",
        }
    }

    /// Whether the (defaced) volume is in the object store.
    pub fn volume_stored(self) -> bool {
        matches!(
            self,
            ScanStatus::Stored | ScanStatus::Segmenting | ScanStatus::Segmented | ScanStatus::Scored | ScanStatus::Done
        )
    }

    pub fn parse(s: &str) -> Option<ScanStatus> {
        Self::PATH
            .into_iter()
            .chain([ScanStatus::Failed])
            .find(|v| v.as_str() == s)
    }

    /// Still moving (the page refreshes itself).
    pub fn is_processing(self) -> bool {
        !matches!(self, ScanStatus::Done | ScanStatus::Failed)
    }

    /// The step list's name for this state.
    pub fn step_label(self) -> &'static str {
        match self {
            ScanStatus::Deidentified => "De-identified",
            ScanStatus::Converted => "Converted to a 3D volume",
            ScanStatus::Stored => "Stored",
            ScanStatus::Segmenting => "Segmenting brain regions",
            ScanStatus::Segmented => "Segmented",
            ScanStatus::Scored => "Compared with the normative reference",
            ScanStatus::Done => "Done",
            ScanStatus::Failed => "Failed",
        }
    }

    /// One line for the scan list and the page's status tag.
    pub fn text(self) -> &'static str {
        match self {
            ScanStatus::Deidentified => "Received and de-identified — waiting for processing",
            ScanStatus::Converted | ScanStatus::Stored => "Converted — waiting for segmentation",
            ScanStatus::Segmenting => "Segmenting",
            ScanStatus::Segmented | ScanStatus::Scored => "Computing percentiles",
            ScanStatus::Failed => "Processing failed",
            ScanStatus::Done => "Done",
        }
    }
}

impl std::fmt::Display for ScanStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's next piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Convert,
    Segment,
    Score,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Convert, Step::Segment, Step::Score];

    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Convert => "convert",
            Step::Segment => "segment",
            Step::Score => "score",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The scan's status while this step waits to run (and after a user's retry).
    pub const fn status_before(self) -> ScanStatus {
        match self {
            Step::Convert => ScanStatus::Deidentified,
            Step::Segment => ScanStatus::Stored,
            Step::Score => ScanStatus::Segmented,
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job row's state (`jobs.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Done,
    Failed,
}

impl JobState {
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in ScanStatus::PATH.into_iter().chain([ScanStatus::Failed]) {
            assert_eq!(ScanStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(ScanStatus::parse("uploaded"), None);
        assert_eq!(Step::parse(""), None);
    }
}
