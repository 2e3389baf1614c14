//! User-facing errors. Display texts are plain language and never contain a DICOM
//! value or a name from the archive (folder names can hold patient names); positions are
//! 1-based counts of files in the archive.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeidError {
    #[error("The file is not a ZIP archive. Please upload a .zip file that contains the DICOM files of one scan.")]
    NotAZip,
    #[error("The ZIP archive is damaged and cannot be read.")]
    CorruptZip,
    #[error("The ZIP archive is empty.")]
    EmptyZip,
    #[error(
        "The ZIP archive contains a file with an unsafe path (an absolute path or one that leads outside the archive), so it was refused."
    )]
    UnsafePath,
    #[error(
        "The ZIP archive contains encrypted (password-protected) files, which are not supported. Please upload an unencrypted ZIP."
    )]
    EncryptedEntries,
    #[error(
        "The ZIP archive contains another ZIP archive. Please upload one ZIP with the DICOM files directly inside."
    )]
    NestedZip,
    #[error(
        "The ZIP archive uses a compression method that is not supported. Please create the ZIP with standard (deflate) compression."
    )]
    UnsupportedCompression,
    #[error("The ZIP archive contains too many files ({count}; the limit is {limit}).")]
    TooManyEntries { count: u64, limit: u64 },
    #[error("The archive is too large when extracted (the limit is {limit_mib} MiB).")]
    TooLargeWhenExtracted { limit_mib: u64 },
    #[error(
        "{count} DICOM file(s) in the archive are truncated or corrupt (the first is file number {first_position}). Please export the scan again."
    )]
    TruncatedOrCorruptDicom { count: u64, first_position: u64 },
    #[error("No DICOM images were found in the archive.")]
    NoDicomImages,
    #[error(
        "The archive holds DICOM data without the standard DICOM file header (DICOM Part 10), which is not supported. Please export the scan as DICOM files from the viewer or the scanner."
    )]
    NoPart10Header,
    #[error("The archive holds {count} different image series. Please choose the one series to use.")]
    MultipleSeries { count: u64 },
    #[error("The chosen series is not in the archive.")]
    SeriesNotFound,
    #[error("The file is not a DICOM Part 10 file.")]
    NotDicomPart10,
    #[error("The DICOM file is truncated or corrupt.")]
    CorruptDicom,
    #[error("The DICOM files use an encoding (transfer syntax) that is not supported.")]
    UnsupportedTransferSyntax,
    #[error("Writing the de-identified archive failed.")]
    Output,
}

impl DeidError {
    /// The stable code of this error, the same in the browser (the WASM worker's JSON) and
    /// in the server's HTTP answers: the serde tag, i.e. the variant's snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            DeidError::NotAZip => "not_a_zip",
            DeidError::CorruptZip => "corrupt_zip",
            DeidError::EmptyZip => "empty_zip",
            DeidError::UnsafePath => "unsafe_path",
            DeidError::EncryptedEntries => "encrypted_entries",
            DeidError::NestedZip => "nested_zip",
            DeidError::UnsupportedCompression => "unsupported_compression",
            DeidError::TooManyEntries { .. } => "too_many_entries",
            DeidError::TooLargeWhenExtracted { .. } => "too_large_when_extracted",
            DeidError::TruncatedOrCorruptDicom { .. } => "truncated_or_corrupt_dicom",
            DeidError::NoDicomImages => "no_dicom_images",
            DeidError::NoPart10Header => "no_part10_header",
            DeidError::MultipleSeries { .. } => "multiple_series",
            DeidError::SeriesNotFound => "series_not_found",
            DeidError::NotDicomPart10 => "not_dicom_part10",
            DeidError::CorruptDicom => "corrupt_dicom",
            DeidError::UnsupportedTransferSyntax => "unsupported_transfer_syntax",
            DeidError::Output => "output",
        }
    }

    /// The archive is over a size or count limit (as opposed to unreadable or unusable).
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            DeidError::TooManyEntries { .. } | DeidError::TooLargeWhenExtracted { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `code()` is the serde tag, so the WASM worker's JSON and the server agree.
    #[test]
    fn code_is_the_serde_tag() {
        let all = [
            DeidError::NotAZip,
            DeidError::CorruptZip,
            DeidError::EmptyZip,
            DeidError::UnsafePath,
            DeidError::EncryptedEntries,
            DeidError::NestedZip,
            DeidError::UnsupportedCompression,
            DeidError::TooManyEntries { count: 1, limit: 1 },
            DeidError::TooLargeWhenExtracted { limit_mib: 1 },
            DeidError::TruncatedOrCorruptDicom {
                count: 1,
                first_position: 1,
            },
            DeidError::NoDicomImages,
            DeidError::NoPart10Header,
            DeidError::MultipleSeries { count: 2 },
            DeidError::SeriesNotFound,
            DeidError::NotDicomPart10,
            DeidError::CorruptDicom,
            DeidError::UnsupportedTransferSyntax,
            DeidError::Output,
        ];
        for e in all {
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(json["code"], e.code(), "{e:?}");
        }
    }
}
