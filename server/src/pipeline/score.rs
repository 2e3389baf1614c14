//! Scoring: the worker's `volumes.json` plus the scan's age and sex → the report a user
//! sees (`report.json` of `neurovol analyze`, `scans.result_json` and `scan_regions`).
//!
//! Pure: no I/O. The worker never receives age or sex (it only sees the de-identified
//! volume); percentiles are computed here, with the embedded normative model.
//!
//! A region is *flagged, not scored* when the segmentation looks wrong for it: a quality
//! flag from the volumetry core names it (missing, fragmented), the whole segmentation has
//! grade C (too little labelled, labels outside the brain mask, implausible intracranial
//! volume, many structures in pieces), or its volume is implausible for the age (|z| > 4,
//! i.e. outside the 0.003rd–99.997th percentile — a segmentation error far more often than
//! anatomy). A percentile is also withheld where the validity table says our method cannot
//! support one for the structure (`norms::validity`); every other percentile carries its
//! band, and the report names the site calibration it was computed with.

use norms::validity::ValidityTable;
use norms::{NoPercentile, Norms, Sex, Site};
use serde::{Deserialize, Serialize};
use volumetry::{Grade, Labelling, VolumesJson, WHOLE_SEGMENTATION_FLAGS};

/// |z| beyond this: "implausible for the age", percentile withheld.
pub const IMPLAUSIBLE_Z: f64 = 4.0;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub age_years: Option<u32>,
    /// M, F, O or null.
    pub sex: Option<String>,
    /// ISO date.
    pub study_date: Option<String>,
    pub model: String,
    /// How the labels were drawn (absent in reports written before it was recorded, whose
    /// labels are all upstream's: [`Report::labelling`]).
    #[serde(default, rename = "labelling")]
    pub recorded_labelling: Option<Labelling>,
    /// The NeuroVol release that scored the scan (absent in reports written before it was
    /// recorded): a change of release between two scans is named on the timeline.
    #[serde(default)]
    pub neurovol_version: Option<String>,
    /// Grid on which volumes were measured ("native": the input's voxels).
    pub grid: String,
    pub icv_mm3: Option<f64>,
    /// False when a global quality check failed (grade C: no region has a percentile).
    pub quality_ok: bool,
    /// The segmentation's quality grade and why it is not A (absent in older reports).
    #[serde(default)]
    pub grade: Option<Grade>,
    #[serde(default)]
    pub grade_reasons: Vec<String>,
    /// The site calibration the percentiles use, in words (absent in older reports)…
    #[serde(default)]
    pub calibration: Option<String>,
    /// …and itself, so that the page's centiles always match the percentiles they stand
    /// beside, whatever the server is configured with later.
    #[serde(default)]
    pub site: Site,
    /// What the validity table that decided which percentiles are shown measured (absent in
    /// older reports, and where the method was never measured).
    #[serde(default)]
    pub validity: Option<String>,
    /// Scan-level notes (codes + one line each): quality flags, low resolution, age range.
    pub warnings: Vec<Warning>,
    pub regions: Vec<RegionResult>,
}

impl Report {
    /// How the labels were drawn; upstream's where the report predates the record, as every
    /// report then did.
    pub fn labelling(&self) -> Labelling {
        self.recorded_labelling.unwrap_or(Labelling::Upstream)
    }
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
    /// The percentiles one SD of uncertainty below and above (our method's and the site
    /// effect's), where there is a percentile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_band: Option<[f64; 2]>,
    /// Null, or one code: a quality code (`missing_region`, `fragmented`, `quality`),
    /// `implausible_for_age`, `below_5th` / `above_95th`, `low_confidence` (age < 5 or > 85).
    pub flag: Option<String>,
    /// Why there is no percentile (`no_model`, `age_out_of_range`, `age_unknown`,
    /// `sex_unknown`, `flagged`, `method_biased`, `method_imprecise`, `method_overlap`,
    /// `method_unmeasured`),
    /// null when there is one.
    pub no_percentile: Option<String>,
    /// The reason in words, with its figure where there is one (absent in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_percentile_reason: Option<String>,
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
        NoPercentile::MethodBiased { .. } => "method_biased",
        NoPercentile::MethodImprecise { .. } => "method_imprecise",
        NoPercentile::MethodOverlap { .. } => "method_overlap",
        NoPercentile::MethodUnmeasured => "method_unmeasured",
        _ => "invalid_volume",
    }
}

/// The grade of a scored scan: the segmentation's, lowered to B by a note about the input
/// (coarse voxels), with every reason in words.
fn grade(volumes: &VolumesJson, input_warnings: &[Warning]) -> (Grade, Vec<String>) {
    let flags = volumes.quality_flags();
    let mut grade = Grade::of_flags(&flags);
    if !input_warnings.is_empty() {
        grade = grade.max(Grade::B);
    }
    let reasons = flags
        .iter()
        .map(|f| f.message.clone())
        .chain(input_warnings.iter().map(|w| w.message.clone()))
        .collect();
    (grade, reasons)
}

/// Each region's percentile and band, or the reason it has none (code and words), with the
/// embedded validity table. `whole_failed`: grade C, every percentile withheld.
pub fn score_regions(
    volumes: &VolumesJson,
    sex: Option<Sex>,
    age: Option<f64>,
    site: &Site,
    whole_failed: bool,
) -> Vec<RegionResult> {
    let norms = Norms::embedded();
    let method = ValidityTable::embedded().method(&volumes.model, volumes.labelling.as_str());
    let flags = volumes.quality_flags();
    volumes
        .regions
        .iter()
        .map(|r| {
            let region_flag = flags
                .iter()
                .find(|f| f.concerns(&r.name) && !WHOLE_SEGMENTATION_FLAGS.contains(&f.code.as_str()));
            // implausibility is judged on the raw z, before the method may withhold it
            let raw_z = norms.assess(&r.name, r.volume_mm3, sex, age, site).z;
            let a = norms.assess_method(&r.name, r.volume_mm3, sex, age, site, method);
            let flagged = |flag: &str, reason: String| (None, Some(flag.to_string()), Some(FLAGGED.to_string()), Some(reason));
            let (percentile, flag, no_percentile, no_percentile_reason) = if whole_failed {
                flagged("quality", "withheld: the segmentation as a whole failed a quality check (grade C)".into())
            } else if let Some(f) = region_flag {
                flagged(&f.code, format!("withheld: {}", f.message))
            } else if raw_z.is_some_and(|z| z.abs() > IMPLAUSIBLE_Z) {
                flagged(
                    "implausible_for_age",
                    format!("withheld: a volume more than {IMPLAUSIBLE_Z} SD from the reference is more likely a segmentation error"),
                )
            } else if let Some(e) = &a.no_percentile {
                (None, None, Some(no_percentile_code(e).to_string()), Some(e.to_string()))
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
                (a.percentile, flag.map(str::to_string), None, None)
            };
            RegionResult {
                name: r.name.clone(),
                label: r.label,
                volume_mm3: r.volume_mm3,
                counted_mm3: r.counted_mm3,
                percentile,
                percentile_band: percentile.and(a.band),
                flag,
                no_percentile,
                no_percentile_reason,
            }
        })
        .collect()
}

/// The site `volumes` are scored with: the configured one where it holds for how they were
/// segmented ([`Site::fits`]), else the training-site average and a note saying why.
pub fn site_for<'a>(volumes: &VolumesJson, site: &'a Site) -> (&'a Site, Option<Warning>) {
    static AVERAGE: Site = Site::TrainingAverage;
    match site {
        Site::Calibrated(c) if !site.fits(&volumes.model, volumes.labelling.as_str()) => {
            let learnt_on = c.measured_by.as_ref().map_or_else(String::new, |m| m.to_string());
            let note = Warning {
                code: "calibration_not_applied".into(),
                message: format!(
                    "The site calibration {} was learnt on scans segmented as {learnt_on}, this one as {}, {} labels: \
                     its percentiles use the reference's training-site average.",
                    c.label,
                    volumes.model,
                    volumes.labelling.as_str()
                ),
            };
            (&AVERAGE, Some(note))
        }
        _ => (site, None),
    }
}

/// The `no_percentile` code of a region withheld for a quality reason.
const FLAGGED: &str = "flagged";

/// Scores with the embedded validity table; `site` is the configured calibration (or the
/// training-site average).
pub fn score(volumes: &VolumesJson, facts: &ScanFacts, extra_warnings: Vec<Warning>, site: &Site) -> Report {
    let method = ValidityTable::embedded().method(&volumes.model, volumes.labelling.as_str());
    let sex = Sex::from_code(&facts.sex);
    let age = facts.age_years.map(f64::from);
    let (grade, grade_reasons) = grade(volumes, &extra_warnings);
    let global_failure = grade == Grade::C;
    let mut warnings = extra_warnings;
    let (site, not_applied) = site_for(volumes, site);
    warnings.extend(not_applied);

    let flags = volumes.quality_flags();
    for f in flags
        .iter()
        .filter(|f| f.region.is_none() || WHOLE_SEGMENTATION_FLAGS.contains(&f.code.as_str()))
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

    let regions = score_regions(volumes, sex, age, site, global_failure);

    Report {
        age_years: facts.age_years,
        sex: match facts.sex.as_str() {
            "M" | "F" | "O" => Some(facts.sex.clone()),
            _ => None,
        },
        study_date: facts.study_date.clone(),
        model: volumes.model.clone(),
        recorded_labelling: Some(volumes.labelling),
        neurovol_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        grid: volumes.grid.clone(),
        icv_mm3: volumes.icv_mm3,
        quality_ok: !global_failure,
        grade: Some(grade),
        grade_reasons,
        calibration: Some(norms::calibration::describe(site)),
        site: site.clone(),
        validity: method.map(|m| m.provenance.summary()),
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
            labelling: volumetry::Labelling::Refined,
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
                    percentile_band: None,
                    no_percentile: None,
                    no_percentile_reason: None,
                })
                .collect(),
            asymmetry: vec![],
            quality: Some(Quality {
                mask_fraction_labelled: None,
                labelled_fraction_in_mask: None,
                ok: flags.is_empty(),
                grade: Some(Grade::of_flags(&flags)),
                flags,
            }),
            calibration: None,
        }
    }

    fn method() -> &'static norms::validity::MethodValidity {
        ValidityTable::embedded()
            .method("model21_104class", "refined")
            .expect("the shipped table measures the default labels")
    }

    /// A region (NeuroVol name) of the shipped table that keeps its percentile…
    fn kept() -> &'static str {
        norms::REGION_MAP
            .iter()
            .find(|(_, bc)| {
                bc.and_then(|b| method().structure(b))
                    .is_some_and(|v| v.judge().is_ok())
            })
            .map(|(n, _)| *n)
            .expect("some structure keeps its percentile")
    }

    /// …and one it withholds for our method's bias.
    fn withheld() -> &'static str {
        norms::REGION_MAP
            .iter()
            .find(|(_, bc)| {
                bc.and_then(|b| method().structure(b))
                    .is_some_and(|v| matches!(v.judge(), Err(NoPercentile::MethodBiased { .. })))
            })
            .map(|(n, _)| *n)
            .expect("some structure is withheld for bias")
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
        let volume = Norms::embedded()
            .centile_volume(kept(), Sex::Female, 60.0, 40.0, &Site::default())
            .unwrap();
        let v = volumes(&[(kept(), volume), ("Left-Cerebral-Cortex", 250_000.0)], vec![]);
        let r = score(&v, &facts(Some(60), "F"), vec![], &Site::default());
        let expected = Norms::embedded()
            .assess(kept(), volume, Some(Sex::Female), Some(60.0), &Site::default())
            .percentile
            .unwrap();
        assert_eq!(r.regions[0].percentile, Some(expected));
        assert!((expected - 40.0).abs() < 1e-6);
        // the band holds the percentile, and is about one SD of the method and the site wide
        let [low, high] = r.regions[0].percentile_band.expect("a band");
        assert!(low < expected && expected < high, "{low} {expected} {high}");
        assert!(high - low > 10.0 && high - low < 80.0, "{low}–{high}");
        assert_eq!(r.grade, Some(Grade::A));
        assert_eq!(
            r.calibration.as_deref(),
            Some("none — braincharts training-site average")
        );
        assert!(r.validity.as_deref().is_some_and(|v| v.contains("FreeSurfer")));
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
        let v = volumes(&[("Left-Hippocampus", 4000.0), (kept(), 4000.0)], vec![frag]);
        let r = score(&v, &facts(Some(60), "M"), vec![], &Site::default());
        assert_eq!(r.regions[0].flag.as_deref(), Some("fragmented"));
        assert_eq!(r.regions[0].percentile, None);
        assert_eq!(
            r.regions[0].no_percentile_reason.as_deref(),
            Some("withheld: in pieces")
        );
        assert_eq!(r.grade, Some(Grade::B));
        assert_eq!(r.grade_reasons, vec!["in pieces".to_string()]);
        assert!(r.regions[1].percentile.is_some());
    }

    #[test]
    fn the_deep_grey_sum_is_scored_and_withheld_with_any_of_its_parts() {
        let sum = volumetry::composite::SUBCORTICAL_GREY.name;
        let volume = Norms::embedded()
            .centile_volume(sum, Sex::Female, 50.0, 30.0, &Site::default())
            .unwrap();
        let v = volumes(&[(sum, volume)], vec![]);
        let r = score(&v, &facts(Some(50), "F"), vec![], &Site::default());
        assert!(
            (r.regions[0].percentile.expect("the shipped table keeps the sum") - 30.0).abs() < 1e-6,
            "{:?}",
            r.regions[0]
        );
        // a part in pieces, or asymmetric, puts the sum in doubt too
        for flagged in ["Right-Putamen", "Pallidum"] {
            let flag = QualityFlag {
                code: "fragmented".into(),
                region: Some(flagged.into()),
                message: "in pieces".into(),
            };
            let v = volumes(&[(sum, volume), ("Left-Hippocampus", 4000.0)], vec![flag]);
            let r = score(&v, &facts(Some(50), "F"), vec![], &Site::default());
            assert_eq!(r.regions[0].percentile, None, "{flagged}");
            assert_eq!(r.regions[0].flag.as_deref(), Some("fragmented"));
        }
    }

    #[test]
    fn a_global_quality_failure_withholds_every_percentile() {
        let bad = QualityFlag {
            code: "too_little_labelled".into(),
            region: None,
            message: "x".into(),
        };
        let v = volumes(&[("Left-Hippocampus", 4000.0)], vec![bad]);
        let r = score(&v, &facts(Some(60), "M"), vec![], &Site::default());
        assert!(!r.quality_ok);
        assert_eq!(r.grade, Some(Grade::C));
        assert_eq!(r.regions[0].percentile, None);
        assert_eq!(r.regions[0].flag.as_deref(), Some("quality"));
        assert!(r.warnings.iter().any(|w| w.code == "too_little_labelled"));

        // a segmentation whose quality was never checked is not vouched for either
        let mut unchecked = volumes(&[(kept(), 5000.0)], vec![]);
        unchecked.quality = None;
        let r = score(&unchecked, &facts(Some(60), "M"), vec![], &Site::default());
        assert_eq!(r.grade, Some(Grade::C));
        assert_eq!(r.regions[0].percentile, None);
        assert!(r.warnings.iter().any(|w| w.code == volumetry::QUALITY_UNCHECKED));
    }

    #[test]
    fn implausible_volumes_for_the_age_are_flagged() {
        // a hippocampus of 40 cm³ is ten times normal
        let v = volumes(&[("Left-Hippocampus", 40_000.0), ("Right-Hippocampus", 1.0)], vec![]);
        let r = score(&v, &facts(Some(40), "F"), vec![], &Site::default());
        for reg in &r.regions {
            assert_eq!(reg.flag.as_deref(), Some("implausible_for_age"), "{reg:?}");
            assert_eq!(reg.percentile, None);
        }
    }

    #[test]
    fn ages_outside_the_reference_and_unknown_sex() {
        let v = volumes(&[("Left-Hippocampus", 4000.0)], vec![]);
        let r = score(&v, &facts(Some(101), "F"), vec![], &Site::default());
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("age_out_of_range"));
        assert!(r.warnings.iter().any(|w| w.code == "age_out_of_range"));
        let r = score(&v, &facts(Some(3), "F"), vec![], &Site::default());
        assert!(r.warnings.iter().any(|w| w.code == "low_confidence"));
        let r = score(&v, &facts(Some(50), "U"), vec![], &Site::default());
        assert_eq!(r.sex, None);
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("sex_unknown"));
        let r = score(&v, &facts(None, "M"), vec![], &Site::default());
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("age_unknown"));
    }

    #[test]
    fn the_validity_table_withholds_what_our_method_cannot_support() {
        let v = volumes(&[(withheld(), 4000.0), (kept(), 4000.0)], vec![]);
        let r = score(&v, &facts(Some(50), "F"), vec![], &Site::default());
        assert_eq!(r.regions[0].percentile, None);
        assert_eq!(r.regions[0].percentile_band, None);
        assert_eq!(r.regions[0].no_percentile.as_deref(), Some("method_biased"));
        let reason = r.regions[0].no_percentile_reason.clone().unwrap();
        assert!(reason.contains("differ from FreeSurfer's by"), "{reason}");
        assert!(r.regions[1].percentile.is_some());
        // a model the table never measured: every percentile withheld, and said why
        let mut other = v.clone();
        other.model = "model18cls".into();
        let r = score(&other, &facts(Some(50), "F"), vec![], &Site::default());
        assert!(
            r.regions
                .iter()
                .all(|g| g.no_percentile.as_deref() == Some("method_unmeasured"))
        );
        assert_eq!(r.validity, None);
    }

    #[test]
    fn a_note_about_the_input_lowers_the_grade_to_b() {
        let v = volumes(&[(kept(), 4000.0)], vec![]);
        let low = Warning {
            code: "low_resolution".into(),
            message: "coarse voxels".into(),
        };
        let r = score(&v, &facts(Some(50), "F"), vec![low], &Site::default());
        assert_eq!(r.grade, Some(Grade::B));
        assert_eq!(r.grade_reasons, vec!["coarse voxels".to_string()]);
        assert!(r.regions[0].percentile.is_some());
    }

    #[test]
    fn a_site_calibration_moves_the_percentile_narrows_the_band_and_is_named() {
        let norms = Norms::embedded();
        let mut calibration = norms::SiteCalibration::one_region(norms, kept(), Sex::Male, 50.0, 0.5, 0.05).unwrap();
        calibration.label = "Site A, 3T MPRAGE (40 controls)".into();
        calibration.measured_by = Some(norms::MeasuredBy {
            model: "model21_104class".into(),
            labelling: "refined".into(),
        });
        let site = Site::Calibrated(calibration);
        let volume = norms
            .centile_volume(kept(), Sex::Male, 50.0, 50.0, &Site::default())
            .unwrap();
        let v = volumes(&[(kept(), volume)], vec![]);
        let plain = score(&v, &facts(Some(50), "M"), vec![], &Site::default());
        let calibrated = score(&v, &facts(Some(50), "M"), vec![], &site);
        let (p0, p1) = (
            plain.regions[0].percentile.unwrap(),
            calibrated.regions[0].percentile.unwrap(),
        );
        assert!((p0 - 50.0).abs() < 1e-6);
        assert!((p1 - 100.0 * norms::normal_cdf(-0.5)).abs() < 1e-6, "{p1}");
        let width = |r: &Report| {
            let [l, h] = r.regions[0].percentile_band.unwrap();
            h - l
        };
        assert!(width(&calibrated) < width(&plain));
        assert_eq!(
            calibrated.calibration.as_deref(),
            Some("Site A, 3T MPRAGE (40 controls)")
        );
        assert_eq!(calibrated.site, site);
        assert!(calibrated.warnings.is_empty(), "{:?}", calibrated.warnings);

        // learnt on upstream labels, it does not calibrate refined ones: the average site,
        // and the report says why
        let mut upstream = v.clone();
        upstream.labelling = Labelling::Upstream;
        let r = score(&upstream, &facts(Some(50), "M"), vec![], &site);
        assert_eq!(r.site, Site::TrainingAverage);
        assert_eq!(r.regions[0].percentile, plain.regions[0].percentile);
        assert_eq!(r.calibration, plain.calibration);
        let note = r.warnings.iter().find(|w| w.code == "calibration_not_applied").unwrap();
        assert!(
            note.message.contains(
                "segmented as model21_104class, refined labels, this one as model21_104class, upstream labels"
            ),
            "{}",
            note.message
        );
    }

    #[test]
    fn a_report_from_before_labelling_was_recorded_reads_as_upstream() {
        let v = volumes(&[(kept(), 5000.0)], vec![]);
        let report = score(&v, &facts(Some(50), "M"), vec![], &Site::default());
        assert_eq!(report.labelling(), Labelling::Refined);
        let mut json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["labelling"], "refined");
        json.as_object_mut().unwrap().remove("labelling");
        let old: Report = serde_json::from_value(json).unwrap();
        assert_eq!(old.labelling(), Labelling::Upstream);
    }
}
