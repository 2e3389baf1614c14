//! How the pages write numbers and codes in words (one home for each).

/// A byte count in MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Volumes from this many mL up are written without decimals: whole-brain measures, whose
/// hundredths of a mL (a thousandth of a percent) no method measures.
const WHOLE_ML_FROM: f64 = 100.0;

/// A volume (given in mm³) in mL: two decimals for a structure, none for a whole-brain
/// measure ([`WHOLE_ML_FROM`]).
pub fn ml(mm3: f64) -> String {
    let v = mm3 / 1000.0;
    if v.abs() >= WHOLE_ML_FROM {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A range of volumes (mm³) in mL, as [`ml`] writes each end: "45.98–59.27".
pub fn ml_range(low_mm3: f64, high_mm3: f64) -> String {
    format!("{}–{}", ml(low_mm3), ml(high_mm3))
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

/// A Unix time (seconds) as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_time(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{} {:02}:{:02} UTC",
        utc_date(days * 86_400),
        rest / 3600,
        rest % 3600 / 60
    )
}

/// A Unix time (seconds) as its UTC date, `YYYY-MM-DD`.
pub fn utc_date(secs: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc_time(951_782_400 + 3_723), "2000-02-29 01:02 UTC");
        assert_eq!(super::utc_date(1_767_225_600), "2026-01-01");
    }

    #[test]
    fn structures_in_hundredths_of_a_ml_whole_brains_in_ml() {
        assert_eq!(super::ml(4_512.0), "4.51");
        assert_eq!(super::ml(99_994.0), "99.99");
        assert_eq!(super::ml(1_106_540.0), "1107");
        assert_eq!(super::ml_range(45_980.0, 159_270.0), "45.98–159");
    }
}
