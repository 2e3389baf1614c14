//! How the pages write numbers and codes in words (one home for each).

/// A byte count in MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// The DICOM sex code (M, F, O; anything else is unknown) in words.
pub fn sex_text(code: &str) -> &'static str {
    match code {
        "M" => "male",
        "F" => "female",
        "O" => "other",
        _ => "not recorded",
    }
}
