//! Change over time: an account's processed scans in time order, and between two
//! consecutive scans the annualised change of a region's volume next to the change its
//! centile curve expects (from `norms`), with the reasons the two may not be comparable.
//! Pure: the page (`timeline_page.rs`) draws it, the server only fills [`TimelineScan`]s.

use norms::{Norms, Sex, Site};
use serde::{Deserialize, Serialize};

/// Scans closer than this are "too close to measure change": a year's atrophy (≈0.5 %) is
/// smaller than the method's scan–rescan error over a few months.
pub const MIN_INTERVAL_YEARS: f64 = 0.5;
/// Voxel sizes differing by more than this fraction (any axis) change measured volumes.
const VOXEL_TOLERANCE: f64 = 0.05;

/// The scanner that made a scan, as the de-identification step kept it (`deid::Scanner`'s
/// fields, read back from the stored report).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScannerFacts {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub field_strength_t: Option<f64>,
}

impl ScannerFacts {
    /// "SIEMENS Skyra, 3 T", or "not recorded".
    pub fn text(&self) -> String {
        let name = [self.manufacturer.as_deref(), self.model.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        match (name.is_empty(), self.field_strength_t) {
            (true, None) => "not recorded".to_string(),
            (true, Some(t)) => format!("{t} T"),
            (false, None) => name,
            (false, Some(t)) => format!("{name}, {t} T"),
        }
    }
}

/// One processed scan of the account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineScan {
    pub id: String,
    /// ISO date.
    pub study_date: Option<String>,
    pub age_years: Option<u32>,
    /// M, F, O or U.
    pub sex: String,
    pub scanner: ScannerFacts,
    pub voxel_mm: Option<[f64; 3]>,
    /// The segmentation model.
    pub model: Option<String>,
    /// How its labels were drawn (`upstream`, `refined`).
    pub labelling: Option<String>,
    /// Regions whose percentile our method withholds: not charted against the reference.
    pub withheld_by_method: Vec<String>,
    /// The site its percentiles were computed with.
    pub site: Site,
    pub neurovol_version: Option<String>,
    /// (region, volume in mm³, percentile).
    pub regions: Vec<(String, f64, Option<f64>)>,
}

impl TimelineScan {
    pub fn region(&self, name: &str) -> Option<(f64, Option<f64>)> {
        self.regions.iter().find(|(n, ..)| n == name).map(|(_, v, p)| (*v, *p))
    }
}

/// Why two scans' volumes may differ for reasons other than the brain.
#[derive(Clone, Debug, PartialEq)]
pub enum Incomparable {
    Scanner { from: String, to: String },
    VoxelSize { from: [f64; 3], to: [f64; 3] },
    Model { from: String, to: String },
    Labelling { from: String, to: String },
    Version { from: String, to: String },
    ShortInterval { months: f64 },
    NoDates,
}

impl Incomparable {
    /// A few words, for a list of them.
    pub fn short(&self) -> &'static str {
        match self {
            Incomparable::Scanner { .. } => "different scanners",
            Incomparable::VoxelSize { .. } => "different voxel sizes",
            Incomparable::Model { .. } => "different segmentation models",
            Incomparable::Labelling { .. } => "labels drawn differently",
            Incomparable::Version { .. } => "different NeuroVol releases",
            Incomparable::ShortInterval { .. } => "less than 6 months apart",
            Incomparable::NoDates => "a scan date is not recorded",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Incomparable::Scanner { .. } => "scanner",
            Incomparable::VoxelSize { .. } => "voxel_size",
            Incomparable::Model { .. } => "model",
            Incomparable::Labelling { .. } => "labelling",
            Incomparable::Version { .. } => "version",
            Incomparable::ShortInterval { .. } => "short_interval",
            Incomparable::NoDates => "no_dates",
        }
    }

    pub fn text(&self) -> String {
        let mm = |v: &[f64; 3]| format!("{:.2} × {:.2} × {:.2} mm", v[0], v[1], v[2]);
        match self {
            Incomparable::Scanner { from, to } => format!(
                "Different scanners ({from}, then {to}): scanners and field strengths measure volumes differently, \
                 often by more than a year's change."
            ),
            Incomparable::VoxelSize { from, to } => format!(
                "Different voxel sizes ({}, then {}): resolution changes the measured volumes.",
                mm(from),
                mm(to)
            ),
            Incomparable::Model { from, to } => {
                format!("Segmented by different models ({from}, then {to}): their regions' borders differ.")
            }
            Incomparable::Labelling { from, to } => format!(
                "Labels drawn differently ({from}, then {to}): NeuroVol's refined labels follow FreeSurfer's \
                 borders, so structures such as the brain stem measure differently."
            ),
            Incomparable::Version { from, to } => {
                format!("Measured by different NeuroVol releases ({from}, then {to}).")
            }
            Incomparable::ShortInterval { months } => format!(
                "Only {months:.0} months apart: over less than 6 months, real change is smaller than the \
                 measurement's own variation."
            ),
            Incomparable::NoDates => {
                "A scan date is not recorded: the interval, and so the yearly change, is unknown.".into()
            }
        }
    }
}

/// Days since 1970-01-01 of an ISO date (`YYYY-MM-DD`).
fn days(iso: &str) -> Option<i64> {
    let mut it = iso.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.get(..2)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// Years from one ISO date to another.
pub fn years_between(from: &str, to: &str) -> Option<f64> {
    Some((days(to)? - days(from)?) as f64 / 365.2425)
}

/// Two consecutive scans: their interval and why they may not be comparable.
#[derive(Clone, Debug, PartialEq)]
pub struct Step<'a> {
    pub from: &'a TimelineScan,
    pub to: &'a TimelineScan,
    pub years: Option<f64>,
    pub warnings: Vec<Incomparable>,
}

/// Every consecutive pair of `scans` (already in time order).
pub fn steps(scans: &[TimelineScan]) -> Vec<Step<'_>> {
    scans
        .windows(2)
        .map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let years = a
                .study_date
                .as_deref()
                .zip(b.study_date.as_deref())
                .and_then(|(x, y)| years_between(x, y));
            Step {
                from: a,
                to: b,
                years,
                warnings: incomparable(a, b, years),
            }
        })
        .collect()
}

fn incomparable(a: &TimelineScan, b: &TimelineScan, years: Option<f64>) -> Vec<Incomparable> {
    let mut out = Vec::new();
    if a.scanner != b.scanner {
        out.push(Incomparable::Scanner {
            from: a.scanner.text(),
            to: b.scanner.text(),
        });
    }
    if let (Some(x), Some(y)) = (a.voxel_mm, b.voxel_mm)
        && x.iter()
            .zip(&y)
            .any(|(p, q)| (p - q).abs() > VOXEL_TOLERANCE * p.max(*q))
    {
        out.push(Incomparable::VoxelSize { from: x, to: y });
    }
    let named = |s: &Option<String>| s.clone().unwrap_or_else(|| "not recorded".into());
    if a.model != b.model {
        out.push(Incomparable::Model {
            from: named(&a.model),
            to: named(&b.model),
        });
    }
    if a.labelling != b.labelling {
        out.push(Incomparable::Labelling {
            from: named(&a.labelling),
            to: named(&b.labelling),
        });
    }
    if a.neurovol_version != b.neurovol_version {
        out.push(Incomparable::Version {
            from: named(&a.neurovol_version),
            to: named(&b.neurovol_version),
        });
    }
    match years {
        None => out.push(Incomparable::NoDates),
        Some(y) if y < MIN_INTERVAL_YEARS => out.push(Incomparable::ShortInterval { months: y * 12.0 }),
        Some(_) => {}
    }
    out
}

/// The change of one region between two scans.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionChange {
    /// Percent of the earlier volume per year.
    pub annualised_percent: Option<f64>,
    /// What the reference's centile curve through the earlier scan changes by per year
    /// over the same ages (percent), where the region has a normative model and the earlier
    /// scan a percentile.
    pub expected_percent: Option<f64>,
}

/// The region's change over `step`.
pub fn region_change(step: &Step<'_>, region: &str) -> Option<RegionChange> {
    let (v1, p1) = step.from.region(region)?;
    let (v2, _) = step.to.region(region)?;
    let years = step.years.filter(|y| *y > 0.0);
    let annualised_percent = years.map(|y| 100.0 * (v2 - v1) / v1 / y);
    let expected_percent = (|| {
        let years = years?;
        let sex = Sex::from_code(&step.from.sex)?;
        let age = f64::from(step.from.age_years?);
        let norms = Norms::embedded();
        let site = &step.from.site;
        let at = |a: f64| norms.centile_volume(region, sex, a, p1?.clamp(0.5, 99.5), site).ok();
        let (e1, e2) = (at(age)?, at(age + years)?);
        Some(100.0 * (e2 - e1) / e1 / years)
    })();
    Some(RegionChange {
        annualised_percent,
        expected_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(date: &str, age: u32, model: &str, hippo: f64) -> TimelineScan {
        TimelineScan {
            id: date.into(),
            study_date: Some(date.into()),
            age_years: Some(age),
            sex: "F".into(),
            scanner: ScannerFacts {
                manufacturer: Some("SIEMENS".into()),
                model: Some("Skyra".into()),
                field_strength_t: Some(3.0),
            },
            voxel_mm: Some([1.0, 1.0, 1.0]),
            model: Some(model.into()),
            labelling: Some("refined".into()),
            withheld_by_method: vec![],
            site: Site::TrainingAverage,
            neurovol_version: Some("0.1.0".into()),
            regions: vec![("Left-Hippocampus".into(), hippo, Some(40.0))],
        }
    }

    #[test]
    fn dates_make_intervals() {
        assert_eq!(days("1970-01-01"), Some(0));
        assert_eq!(days("2000-03-01"), Some(11_017));
        assert_eq!(days("2000-13-01"), None);
        let y = years_between("2019-03-14", "2021-03-14").unwrap();
        assert!((y - 2.0).abs() < 0.002, "{y}");
    }

    #[test]
    fn a_two_year_step_has_a_yearly_change_and_the_curves_expectation() {
        let scans = [
            scan("2019-03-14", 66, "m21", 4000.0),
            scan("2021-03-14", 68, "m21", 3920.0),
        ];
        let s = steps(&scans);
        assert_eq!(s.len(), 1);
        assert!(s[0].warnings.is_empty(), "{:?}", s[0].warnings);
        let c = region_change(&s[0], "Left-Hippocampus").unwrap();
        assert!((c.annualised_percent.unwrap() + 1.0).abs() < 0.01, "{c:?}");
        // the hippocampus shrinks with age in the late sixties
        let e = c.expected_percent.unwrap();
        assert!((-2.0..0.0).contains(&e), "{e}");
        assert!(region_change(&s[0], "Left-Nowhere").is_none());
    }

    #[test]
    fn each_difference_is_named() {
        let a = scan("2019-03-14", 66, "m21", 4000.0);
        let mut b = scan("2019-06-14", 66, "m18", 4000.0);
        b.scanner.model = Some("Prisma".into());
        b.voxel_mm = Some([0.9, 1.0, 1.2]);
        b.labelling = Some("upstream".into());
        b.neurovol_version = None;
        let scans = [a, b];
        let codes: Vec<_> = steps(&scans)[0].warnings.iter().map(|w| w.code()).collect();
        assert_eq!(
            codes,
            [
                "scanner",
                "voxel_size",
                "model",
                "labelling",
                "version",
                "short_interval"
            ]
        );
        assert_eq!(steps(&scans)[0].warnings[5].short(), "less than 6 months apart");
        assert!(steps(&scans)[0].warnings[3].text().contains("(refined, then upstream)"));
        let text = steps(&scans)[0].warnings[0].text();
        assert!(text.contains("SIEMENS Skyra, 3 T, then SIEMENS Prisma, 3 T"), "{text}");
        let mut undated = scans.clone();
        undated[1].study_date = None;
        let s = steps(&undated);
        assert!(s[0].warnings.contains(&Incomparable::NoDates));
        assert_eq!(
            region_change(&s[0], "Left-Hippocampus").unwrap().annualised_percent,
            None
        );
    }
}
