//! Scoring: the worker's `volumes.json` plus the scan's age and sex → the report a user
//! sees (`report.json` of `neurovol analyze`, `scans.result_json` and `scan_regions`).
//!
//! Pure: no I/O. The worker never receives age or sex (it only sees the de-identified
//! volume); percentiles are computed here, with the embedded normative model.
//!
//! A region is *flagged, not scored* when the segmentation looks wrong for it: a quality
//! flag from the volumetry core names it (missing, fragmented), the whole segmentation
//! failed a global check (too little labelled, labels outside the brain mask, implausible
//! intracranial volume), or its volume is implausible for the age (|z| > 4, i.e. outside
//! the 0.003rd–99.997th percentile — a segmentation error far more often than anatomy).

use norms::{NoPercentile, Norms, Sex, Site};
use serde::{Deserialize, Serialize};
use volumetry::VolumesJson;

/// |z| beyond this: "implausible for the age", percentile withheld.
pub const IMPLAUSIBLE_Z: f64 = 4.0;

/// Quality codes that concern the whole segmentation: every percentile is withheld.
const GLOBAL_FAILURES: &[&str] = &["too_little_labelled", "labels_outside_mask", "icv_implausible"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub age_years: Option<u32>,
    /// M, F, O or null.
    pub sex: Option<String>,
    /// ISO date.
    pub study_date: Option<String>,
    pub model: String,
    /// The NeuroVol release that scored the scan (absent in reports written before it was
    /// recorded): a change of release between two scans is named on the timeline.
    #[serde(default)]
    pub neurovol_version: Option<String>,
    /// Grid on which volumes were measured ("native": the input's voxels).
    pub grid: String,
    pub icv_mm3: Option<f64>,
    /// False when a global quality check failed (then no region has a percentile).
    pub quality_ok: bool,
    /// Scan-level notes (codes + one line each): quality flags, low resolution, age range.
    pub warnings: Vec<Warning>,
    pub regions: Vec<RegionResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionResult {
    pub name: String,
    pub label: u8,
    /// Partial-volume corrected: what the percentile is computed on.
    pub volume_mm3: f64,
    /// The voxel count's volume (absent from segmentations that did not report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_mm3: Option<f64>,
    /// Null where no normative model exists, age/sex are unknown or out of range, or the
    /// region is flagged.
    pub percentile: Option<f64>,
    /// Null, or one code: a quality code (`missing_region`, `fragmented`, `quality`),
    /// `implausible_for_age`, `below_5th` / `above_95th`, `low_confidence` (age < 5 or > 85).
    pub flag: Option<String>,
    /// Why there is no percentile (`no_model`, `age_out_of_range`, `age_unknown`,
    /// `sex_unknown`, `flagged`), null when there is one.
    pub no_percentile: Option<String>,
}

/// Facts about the scan that scoring needs (from the de-identification step).
#[derive(Clone, Debug, Default)]
pub struct ScanFacts {
    pub age_years: Option<u32>,
    /// M, F, O or U (unknown).
    pub sex: String,
    pub study_date: Option<String>,
}

fn no_percentile_code(e: &NoPercentile) -> &'static str {
    match e {
        NoPercentile::NoModel { .. } | NoPercentile::UnknownRegion { .. } => "no_model",
        NoPercentile::AgeOutOfRange { .. } => "age_out_of_range",
        NoPercentile::AgeUnknown => "age_unknown",
        NoPercentile::SexUnknown => "sex_unknown",
        _ => "invalid_volume",
    }
}

pub fn score(volumes: &VolumesJson, facts: &ScanFacts, extra_warnings: Vec<Warning>) -> Report {
    let norms = Norms::embedded();
    let site = Site::default();
    let sex = Sex::from_code(&facts.sex);
    let age = facts.age_years.map(f64::from);
    let mut warnings = extra_warnings;

    let flags = volumes.quality.as_ref().map(|q| q.flags.as_slice()).unwrap_or(&[]);
    let global_failure = flags.iter().any(|f| GLOBAL_FAILURES.contains(&f.code.as_str()));
    for f in flags
        .iter()
        .filter(|f| f.region.is_none() || GLOBAL_FAILURES.contains(&f.code.as_str()))
    {
        warnings.push(Warning {
            code: f.code.clone(),
            message: f.message.clone(),
        });
    }
    // the reference's own age range and low-confidence ages (norms is their one home)
    if let Some(a) = facts.age_years {
        let (min, max) = Norms::embedded().age_range();
        match Norms::embedded().check_age(f64::from(a)) {
            Err(_) => warnings.push(Warning {
                code: "age_out_of_range".into(),
                message: format!(
                    "Age {a} years is outside the normative reference ({min}–{max} years): no percentiles."
                ),
            }),
            Ok(true) => warnings.push(Warning {
                code: "low_confidence".into(),
                message: format!(
                    "Percentiles under {} or over {} years rest on few reference scans: read them with care.",
                    norms::LOW_CONFIDENCE_BELOW_AGE,
                    norms::LOW_CONFIDENCE_ABOVE_AGE
                ),
            }),
            Ok(false) => {}
        }
    } else {
        warnings.push(Warning {
            code: "age_unknown".into(),
            message: "The scan does not record the age: no percentiles.".into(),
        });
    }
    if sex.is_none() {
        warnings.push(Warning {
            code: "sex_unknown".into(),
            message: "The normative reference is by sex (M or F); this scan records neither: no percentiles.".into(),
        });
    }

    let regions = volumes
        .regions
        .iter()
        .map(|r| {
            let region_flag = flags
                .iter()
                .find(|f| f.region.as_deref() == Some(r.name.as_str()) && !GLOBAL_FAILURES.contains(&f.code.as_str()))
                .map(|f| f.code.clone());
            let a = norms.assess(&r.name, r.volume_mm3, sex, age, &site);
            let (percentile, flag, no_percentile) = if global_failure {
                (None, Some("quality".to_string()), Some("flagged".to_string()))
            } else if let Some(code) = region_flag {
                (None, Some(code), Some("flagged".to_string()))
            } else if let Some(e) = &a.no_percentile {
                (None, None, Some(no_percentile_code(e).to_string()))
            } else if a.z.is_some_and(|z| z.abs() > IMPLAUSIBLE_Z) {
                (
                    None,
                    Some("implausible_for_age".to_string()),
                    Some("flagged".to_string()),
                )
            } else {
                let p = a.percentile.unwrap_or(f64::NAN);
                let flag = if p < 5.0 {
                    Some("below_5th")
                } else if p > 95.0 {
                    Some("above_95th")
                } else if a.low_confidence {
                    Some("low_confidence")
                } else {
                    None
                };
                (a.percentile, flag.map(str::to_string), None)
            };
            RegionResult {
                name: r.name.clone(),
                label: r.label,
                volume_mm3: r.volume_mm3,
                counted_mm3: r.counted_mm3,
                percentile,
                flag,
                no_percentile,
            }
        })
        .collect();

    Report {
        age_years: facts.age_years,
        sex: match facts.sex.as_str() {
            "M" | "F" | "O" => Some(facts.sex.clone()),
            _ => None,
        },
        study_date: facts.study_date.clone(),
        model: volumes.model.clone(),
        neurovol_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        grid: volumes.grid.clone(),
        icv_mm3: volumes.icv_mm3,
        quality_ok: !global_failure,
        warnings,
        regions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volumetry::{Quality, QualityFlag, VolumesJsonRegion};

    fn volumes(regions: &[(&str, f64)], flags: Vec<QualityFlag>) -> VolumesJson {
        VolumesJson {
            model: "model21_104class".into(),
            engine: None,
            grid: "native".into(),
            icv_mm3: Some(1.4e6),
            regions: regions
                .iter()
                .enumerate()
                .map(|(i, (n, v))| VolumesJsonRegion {
                    label: i as u8 + 1,
                    name: n.to_string(),
                    volume_mm3: *v,
                    counted_mm3: None,
                    percentile: None,
                })
                .collect(),
            asymmetry: vec![],
            quality: Some(Quality {
                mask_fraction_labelled: None,
                labelled_fraction_in_mask: None,
                ok: flags.is_empty(),
                flags,
            }),
        }
    }

    fn facts(age: Option<u32>, sex: &str) -> ScanFacts {
        ScanFacts {
            age_years: age,
            sex: sex.into(),
            study_date: Some("2020-01-02".into()),
        }
    }

    #[test]
    fn percentiles_match_the_norms_crate() {
        let v = volumes(
            &[("Left-Hippocampus", 4000.0), ("Left-Cerebral-Cortex", 250_000.0)],
            vec![],
        );
        let r = score(&v, &facts(Some(60), "F"), vec![]);
        let expected = Norms::embedded()
            .assess(
                "Left-Hippocampus",
                4000.0,
                Some(Sex::Female),
                Some(60.0),
                &Site::default(),
            )
            .percentile
            .unwrap();
        assert_eq!(r.regions[0].percentile, Some(expected));
        assert_eq!(r.regions[1].percentile, None);
        assert_eq!(r.regions[1].no_percentile.as_deref(), Some("no_model"));
        assert!(r.quality_ok);
        assert_eq!(r.sex.as_deref(), Some("F"));
    }

    #[test]
    fn flagged_regions_are_not_scored() {
        let frag = QualityFlag {
            code: "fragmented".into(),
            region: Some("Left-Hippocampus".into()),
            message: "in pieces".into(),
        };
        let v = volumes(
            &[("Left-Hippocampus", 4000.0), ("Right-Hippocampus", 4000.0)],
            vec![frag],
        );
        let r = score(&v, &facts(Some(60), "M"), vec![]);
        assert_eq!(r.regions[0].flag.as_deref(), Some("fragmented"));
        assert_eq!(r.regions[0].percentile, None);
        assert!(r.regions[1].percentile.is_some());
    }

    #[test]
    fn a_global_quality_failure_withholds_every_percentile() {
        let bad = QualityFlag {
            code: "too_little_labelled".into(),
            region: None,
            message: "x".into(),
        };
        let v = volumes(&[("Left-Hippocampus", 4000.0)], vec![bad]);
        let r = score(&v, &facts(Some(60), "M"), vec![]);
        assert!(!r.quality_ok);
        assert_eq!(r.regions[0].percentile, None);
        assert_eq!(r.regions[0].flag.as_deref(), Some("quality"));
        assert!(r.warnings.iter().any(|w| w.code == "too_little_labelled"));
    }

    #[test]
    fn implausible_volumes_for_the_age_are_flagged() {
        // a hippocampus of 40 cm³ is ten times normal
        let v = volumes(&[("Left-Hippocampus", 40_000.0), ("Right-Hippocampus", 1.0)], vec![]);
        let r = score(&v, &facts(Some(40), "F"), vec![]);
        for reg in &r.regions {
            assert_eq!(reg.flag.as_deref(), Some("implausible_for_age"), "{reg:?}");
            assert_eq!(reg.percentile, None);
        }
    }

    #[test]
    fn ages_outside_the_reference_and_unknown_sex() {
        let v = volumes(&[("Left-Hippocampus", 4000.0)], vec![]);
        let r = score(&v, &facts(Some(101), "F"), vec![]);
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("age_out_of_range"));
        assert!(r.warnings.iter().any(|w| w.code == "age_out_of_range"));
        let r = score(&v, &facts(Some(3), "F"), vec![]);
        assert!(r.warnings.iter().any(|w| w.code == "low_confidence"));
        let r = score(&v, &facts(Some(50), "U"), vec![]);
        assert_eq!(r.sex, None);
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("sex_unknown"));
        let r = score(&v, &facts(None, "M"), vec![]);
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("age_unknown"));
    }
}
