//! PatientAge / PatientSex / StudyDate, read before removal, and the scanner (Manufacturer,
//! ManufacturerModelName, MagneticFieldStrength, which are kept in the files anyway): the
//! only header facts that leave this crate, as numbers, one-letter codes and short plain
//! text. The scanner is what makes two scans of one person comparable over time.

use serde::{Deserialize, Serialize};

/// Raw text as found (stays inside the crate).
#[derive(Debug, Default, Clone)]
pub(crate) struct RawFacts {
    pub patient_age: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub birth_date: Option<String>,
    pub manufacturer: Option<String>,
    pub model_name: Option<String>,
    pub field_strength: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Sex {
    #[serde(rename = "M")]
    Male,
    #[serde(rename = "F")]
    Female,
    #[serde(rename = "O")]
    Other,
    #[default]
    #[serde(rename = "U")]
    Unknown,
}

impl Sex {
    /// One-letter code for the database: M, F, O or U.
    pub fn code(self) -> char {
        match self {
            Sex::Male => 'M',
            Sex::Female => 'F',
            Sex::Other => 'O',
            Sex::Unknown => 'U',
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// ISO 8601 (`YYYY-MM-DD`), as the pages and the reports show it.
impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Date {
    /// Parse a DICOM DA value (YYYYMMDD, or the old YYYY.MM.DD form).
    pub fn parse_da(s: &str) -> Option<Date> {
        let d: String = s.trim().chars().filter(|c| *c != '.').collect();
        if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: u16 = d[0..4].parse().ok()?;
        let month: u8 = d[4..6].parse().ok()?;
        let day: u8 = d[6..8].parse().ok()?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1800 {
            return None;
        }
        Some(Date { year, month, day })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeSource {
    /// From PatientAge (nnnY/M/W/D).
    PatientAge,
    /// PatientAge absent: whole years between PatientBirthDate and StudyDate.
    BirthDateAndStudyDate,
}

/// The scanner that made the series: not identifying (they stay in the de-identified
/// files), kept so that a change of scanner between two scans can be named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Scanner {
    pub manufacturer: Option<String>,
    /// ManufacturerModelName.
    pub model: Option<String>,
    /// MagneticFieldStrength in tesla.
    pub field_strength_t: Option<f64>,
}

/// Longest scanner text kept (DICOM's LO is 64 characters).
const SCANNER_TEXT_MAX: usize = 64;

/// A scanner's name as plain text: printable ASCII, spaces collapsed, at most 64
/// characters; `None` when nothing is left.
fn plain(s: &str) -> Option<String> {
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter(|w| !w.is_empty())
        .collect();
    let text: String = words
        .join(" ")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(SCANNER_TEXT_MAX)
        .collect();
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The captured facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Facts {
    /// Age in whole years at the study, when known.
    pub age_years: Option<u32>,
    pub age_source: Option<AgeSource>,
    pub sex: Sex,
    pub study_date: Option<Date>,
    #[serde(default)]
    pub scanner: Scanner,
}

/// Parse PatientAge: "067Y", "006M", "012W", "003D" (also tolerates missing zero padding).
pub fn parse_age(s: &str) -> Option<u32> {
    let s = s.trim();
    let unit = s.chars().last()?.to_ascii_uppercase();
    let n: u32 = s.get(..s.len().checked_sub(1)?)?.trim().parse().ok()?;
    Some(match unit {
        'Y' => n,
        'M' => n / 12,
        'W' => n * 7 / 365,
        'D' => n / 365,
        _ => return None,
    })
    .filter(|y| *y <= 150)
}

fn years_between(birth: Date, at: Date) -> Option<u32> {
    let mut y = at.year as i32 - birth.year as i32;
    if (at.month, at.day) < (birth.month, birth.day) {
        y -= 1;
    }
    u32::try_from(y).ok().filter(|y| *y <= 150)
}

impl RawFacts {
    pub(crate) fn resolve(&self) -> Facts {
        let study_date = self.study_date.as_deref().and_then(Date::parse_da);
        let sex = match self.patient_sex.as_deref().map(|s| s.trim().to_ascii_uppercase()) {
            Some(s) if s == "M" => Sex::Male,
            Some(s) if s == "F" => Sex::Female,
            Some(s) if s == "O" => Sex::Other,
            _ => Sex::Unknown,
        };
        let from_age = self.patient_age.as_deref().and_then(parse_age);
        let (age_years, age_source) = match from_age {
            Some(a) => (Some(a), Some(AgeSource::PatientAge)),
            None => {
                let b = self.birth_date.as_deref().and_then(Date::parse_da);
                match (b, study_date) {
                    (Some(b), Some(s)) => match years_between(b, s) {
                        Some(a) => (Some(a), Some(AgeSource::BirthDateAndStudyDate)),
                        None => (None, None),
                    },
                    _ => (None, None),
                }
            }
        };
        let scanner = Scanner {
            manufacturer: self.manufacturer.as_deref().and_then(plain),
            model: self.model_name.as_deref().and_then(plain),
            // DS: the first value; a plausible MR field (0.01–20 T; some write gauss)
            field_strength_t: self
                .field_strength
                .as_deref()
                .and_then(|s| s.split('\\').next()?.trim().parse::<f64>().ok())
                .map(|t| if t > 100.0 { t / 10_000.0 } else { t })
                .filter(|t| (0.01..=20.0).contains(t)),
        };
        Facts {
            age_years,
            age_source,
            sex,
            study_date,
            scanner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_facts_are_short_plain_text_and_tesla() {
        let r = RawFacts {
            manufacturer: Some("  SIEMENS ".into()),
            model_name: Some("Skyra\\fit\u{7}  3T".into()),
            field_strength: Some("3\\1.5".into()),
            ..Default::default()
        };
        let s = r.resolve().scanner;
        assert_eq!(s.manufacturer.as_deref(), Some("SIEMENS"));
        assert_eq!(s.model.as_deref(), Some("Skyra fit 3T"));
        assert_eq!(s.field_strength_t, Some(3.0));
        let gauss = RawFacts {
            field_strength: Some("15000".into()),
            model_name: Some("x".repeat(100)),
            ..Default::default()
        }
        .resolve()
        .scanner;
        assert_eq!(gauss.field_strength_t, Some(1.5));
        assert_eq!(gauss.model.map(|m| m.len()), Some(SCANNER_TEXT_MAX));
        let none = RawFacts {
            manufacturer: Some("   ".into()),
            field_strength: Some("n/a".into()),
            ..Default::default()
        }
        .resolve()
        .scanner;
        assert_eq!(none, Scanner::default());
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("067Y"), Some(67));
        assert_eq!(parse_age("018M"), Some(1));
        assert_eq!(parse_age("104W"), Some(1));
        assert_eq!(parse_age("400D"), Some(1));
        assert_eq!(parse_age("Y"), None);
        assert_eq!(parse_age(""), None);
        let r = RawFacts {
            birth_date: Some("19620815".into()),
            study_date: Some("20190314".into()),
            ..Default::default()
        };
        let f = r.resolve();
        assert_eq!(f.age_years, Some(56));
        assert_eq!(f.age_source, Some(AgeSource::BirthDateAndStudyDate));
        assert_eq!(
            f.study_date,
            Some(Date {
                year: 2019,
                month: 3,
                day: 14
            })
        );
    }
}
