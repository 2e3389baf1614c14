//! Site calibration on synthetic controls drawn from the model itself: a known offset added in
//! warped space is recovered, applying it moves a typical control back towards the 50th
//! percentile, and every refusal the file format and the estimate promise.

use norms::calibration::{self, CalibrationError, Control, FORMAT, MIN_CONTROLS, OUTLIER_Z};
use norms::{Calibration, Norms, REGION_MAP, Sex, Site};

/// splitmix64: a tiny deterministic generator, so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// How the synthetic controls were "segmented".
fn method() -> norms::MeasuredBy {
    norms::MeasuredBy {
        model: "model21_104class".into(),
        labelling: "refined".into(),
    }
}

/// NeuroVol region names that have a model (the keys of `volumes.json`).
fn modelled() -> Vec<&'static str> {
    REGION_MAP
        .iter()
        .filter(|(_, m)| m.is_some())
        .map(|(n, _)| *n)
        .collect()
}

/// The known site offset of a region: `shift` × its `sigma_w` at 45 years (F), constant in age.
fn true_offset(norms: &Norms, region: &str, shift: f64) -> f64 {
    shift
        * norms
            .predict(region, Sex::Female, 45.0, &Site::TrainingAverage)
            .unwrap()
            .sigma_w
}

/// `n` controls aged 20–70, alternating sex, every modelled region drawn from the model with
/// the site's offset (`shift` normative SDs) and extra scatter (`extra_sd`, in normative SDs).
fn controls(norms: &Norms, n: usize, shift: f64, extra_sd: f64, seed: u64) -> Vec<Control> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let age = 20.0 + 50.0 * rng.uniform();
            let sex = if i % 2 == 0 { Sex::Female } else { Sex::Male };
            let volumes = modelled()
                .into_iter()
                .map(|region| {
                    let pred = norms.predict(region, sex, age, &Site::TrainingAverage).unwrap();
                    let z = rng.normal() * (1.0 + extra_sd * extra_sd).sqrt();
                    let u = pred.mu_w + true_offset(norms, region, shift) + pred.sigma_w * z;
                    (region.to_string(), norms.model(region).unwrap().unwarp(u))
                })
                .collect();
            Control { age, sex, volumes }
        })
        .collect()
}

const LABEL: &str = "Site A, 3T MPRAGE";

/// The seed is fixed, so the result is too. (Across seeds, some one of the 28 regions lands
/// beyond 3 SE in about 1 − 0.9973²⁸ ≈ 7 % of draws, as it should.)
#[test]
fn known_offset_recovered_within_three_standard_errors() {
    let norms = Norms::embedded();
    let shift = 0.4;
    let cs = controls(norms, 200, shift, 0.0, 1);
    let cal = Calibration::estimate(norms, &cs, LABEL, method()).unwrap();
    assert_eq!(cal.format, FORMAT);
    assert_eq!(cal.measured_by, method());
    assert_eq!(cal.n_controls, 200);
    assert!(
        cal.age_range[0] >= 20.0 && cal.age_range[1] <= 70.0,
        "{:?}",
        cal.age_range
    );
    assert_eq!(cal.regions.len(), modelled().len(), "every modelled region calibrated");
    assert!(cal.skipped.is_empty(), "{:?}", cal.skipped);
    for region in modelled() {
        let model = norms.model(region).unwrap();
        let r = cal
            .regions
            .get(&model.name)
            .unwrap_or_else(|| panic!("{region} calibrated"));
        let truth = true_offset(norms, region, shift);
        assert_eq!(r.n, 200, "{region}");
        assert!(
            (r.offset_w - truth).abs() < 3.0 * r.se_w,
            "{region}: offset {} vs {truth} (se {})",
            r.offset_w,
            r.se_w
        );
        // the model's own scatter: SE about sigma/√200, scatter about the model's
        assert!(
            (r.se_w / r.model_sd_w - 200f64.sqrt().recip()).abs() < 0.02,
            "{region}: {r:?}"
        );
        assert!((r.resid_sd_w / r.model_sd_w - 1.0).abs() < 0.2, "{region}: {r:?}");
        assert!(
            (r.offset_sd() - shift).abs() < 3.0 * r.se_w / r.model_sd_w,
            "{region}: {r:?}"
        );
    }
}

#[test]
fn calibration_moves_a_typical_control_back_towards_the_median() {
    let norms = Norms::embedded();
    let cal = Calibration::estimate(norms, &controls(norms, 200, 0.4, 0.0, 2), LABEL, method()).unwrap();
    let site = cal.site();
    for region in modelled() {
        for (sex, age) in [(Sex::Female, 30.0), (Sex::Male, 60.0)] {
            // the site's median scan: on the model's mean plus the site's offset
            let pred = norms.predict(region, sex, age, &Site::TrainingAverage).unwrap();
            let volume = norms
                .model(region)
                .unwrap()
                .unwarp(pred.mu_w + true_offset(norms, region, 0.4));
            let before = norms
                .percentile(region, sex, age, volume, &Site::TrainingAverage)
                .unwrap();
            let after = norms.percentile(region, sex, age, volume, &site).unwrap();
            assert!(!before.site_calibrated && after.site_calibrated, "{region}");
            assert!(before.percentile > 60.0, "{region}: {}", before.percentile);
            assert!(
                (after.percentile - 50.0).abs() < (before.percentile - 50.0).abs()
                    && (after.percentile - 50.0).abs() < 10.0,
                "{region} {sex:?} {age}: {} → {}",
                before.percentile,
                after.percentile
            );
        }
    }
}

#[test]
fn extra_scatter_widens_the_site_variance() {
    let norms = Norms::embedded();
    // the site scatters √(1 + 0.75²) = 1.25 times the model's SD: extra variance ≈ 0.5625 σ²
    let cal = Calibration::estimate(norms, &controls(norms, 400, 0.0, 0.75, 3), LABEL, method()).unwrap();
    let Site::Calibrated(site) = cal.site() else {
        panic!("calibrated site")
    };
    for (name, r) in &cal.regions {
        let ratio = r.extra_var_w() / r.model_sd_w.powi(2);
        assert!((ratio - 0.5625).abs() < 0.45, "{name}: extra variance {ratio} σ²");
        assert_eq!(site.offsets[name].s2_w, r.extra_var_w());
        assert_eq!(site.offsets[name].mu_w, r.offset_w);
    }
    // without extra scatter the variance is never narrowed below the model's
    let cal = Calibration::estimate(norms, &controls(norms, 40, 0.0, 0.0, 4), LABEL, method()).unwrap();
    assert!(cal.regions.values().all(|r| r.extra_var_w() >= 0.0));
    assert!(cal.regions.values().any(|r| r.extra_var_w() == 0.0));
}

#[test]
fn one_control_too_few_is_refused() {
    let norms = Norms::embedded();
    let cs = controls(norms, MIN_CONTROLS - 1, 0.4, 0.0, 5);
    let err = Calibration::estimate(norms, &cs, LABEL, method()).unwrap_err();
    assert!(
        matches!(err, CalibrationError::TooFewControls { n, min } if n == MIN_CONTROLS - 1 && min == MIN_CONTROLS),
        "{err}"
    );
    assert_eq!(err.code(), "too_few_controls");
    let cs = controls(norms, MIN_CONTROLS, 0.4, 0.0, 5);
    assert!(Calibration::estimate(norms, &cs, LABEL, method()).is_ok());
}

#[test]
fn age_outside_the_reference_is_refused() {
    let norms = Norms::embedded();
    for bad in [1.0, 101.0, f64::NAN] {
        let mut cs = controls(norms, 30, 0.0, 0.0, 6);
        cs[7].age = bad;
        let err = Calibration::estimate(norms, &cs, LABEL, method()).unwrap_err();
        assert!(
            matches!(err, CalibrationError::AgeOutOfRange { control: 7, .. }),
            "{err}"
        );
        assert_eq!(err.control(), Some(7));
    }
}

#[test]
fn nan_negative_or_infinite_volume_is_refused() {
    let norms = Norms::embedded();
    for bad in [f64::NAN, -1.0, f64::INFINITY] {
        let mut cs = controls(norms, 30, 0.0, 0.0, 7);
        cs[3].volumes.insert("Left-Hippocampus".into(), bad);
        let err = Calibration::estimate(norms, &cs, LABEL, method()).unwrap_err();
        assert!(
            matches!(&err, CalibrationError::InvalidVolume { control: 3, region } if region == "Left-Hippocampus"),
            "{err}"
        );
    }
}

#[test]
fn region_missing_in_most_controls_is_skipped() {
    let norms = Norms::embedded();
    let mut cs = controls(norms, 30, 0.0, 0.0, 8);
    for c in cs.iter_mut().skip(5) {
        c.volumes.remove("Left-Thalamus");
    }
    // an unmodelled region is ignored, whatever its volume
    cs[0].volumes.insert("Left-Cerebral-Cortex".into(), 250_000.0);
    let cal = Calibration::estimate(norms, &cs, LABEL, method()).unwrap();
    assert!(!cal.regions.contains_key("Left-Thalamus-Proper"));
    assert_eq!(cal.skipped.len(), 1, "{:?}", cal.skipped);
    assert_eq!(cal.skipped[0].region, "Left-Thalamus-Proper");
    assert_eq!(cal.skipped[0].n, 5);
    assert_eq!(cal.regions.len(), modelled().len() - 1);
    // it keeps the training average when scored
    let p = norms
        .percentile("Left-Thalamus", Sex::Female, 40.0, 7000.0, &cal.site())
        .unwrap();
    assert!(!p.site_calibrated);
    // a region in no control at all is skipped with n = 0, and nothing calibrated is refused
    let mut cs = controls(norms, 30, 0.0, 0.0, 9);
    for c in &mut cs {
        c.volumes.retain(|k, _| k != "Brain-Stem");
    }
    let cal = Calibration::estimate(norms, &cs, LABEL, method()).unwrap();
    assert!(cal.skipped.iter().any(|s| s.region == "Brain-Stem" && s.n == 0));
    for c in &mut cs {
        c.volumes.clear();
    }
    let err = Calibration::estimate(norms, &cs, LABEL, method()).unwrap_err();
    assert!(matches!(err, CalibrationError::NoRegion), "{err}");
}

#[test]
fn outlier_and_duplicate_controls_are_refused() {
    let norms = Norms::embedded();
    let mut cs = controls(norms, 30, 0.0, 0.0, 10);
    // a failed segmentation: a hippocampus of 100 mm³
    cs[12].volumes.insert("Right-Hippocampus".into(), 100.0);
    let err = Calibration::estimate(norms, &cs, LABEL, method()).unwrap_err();
    assert!(
        matches!(&err, CalibrationError::Outlier { control: 12, region, z } if region == "Right-Hippocampus" && *z < -OUTLIER_Z),
        "{err}"
    );
    // a large offset shared by every control is not an outlier
    let cal = Calibration::estimate(norms, &controls(norms, 30, 9.0, 0.0, 11), LABEL, method()).unwrap();
    assert!(cal.regions.values().all(|r| r.offset_sd() > 8.0));

    let mut cs = controls(norms, 30, 0.0, 0.0, 12);
    let v = cs[4].volumes["Left-Thalamus"];
    cs[4].volumes.insert("Left-Thalamus-Proper".into(), v);
    let err = Calibration::estimate(norms, &cs, LABEL, method()).unwrap_err();
    assert!(
        matches!(&err, CalibrationError::DuplicateRegion { control: 4, region } if region == "Left-Thalamus-Proper"),
        "{err}"
    );
}

#[test]
fn label_must_be_one_non_empty_line() {
    let norms = Norms::embedded();
    let cs = controls(norms, 25, 0.0, 0.0, 13);
    for bad in ["", "   ", "Site A\nSite B", &"x".repeat(121)] {
        let err = Calibration::estimate(norms, &cs, bad, method()).unwrap_err();
        assert!(matches!(err, CalibrationError::BadLabel), "{bad:?}: {err}");
    }
    let cal = Calibration::estimate(norms, &cs, "  Site A  ", method()).unwrap();
    assert_eq!(cal.label, "Site A");
    assert_eq!(cal.describe(), "Site A (25 controls)");
    assert_eq!(calibration::describe(&cal.site()), "Site A (25 controls)");
    assert_eq!(
        calibration::describe(&Site::TrainingAverage),
        "none — braincharts training-site average"
    );
}

#[test]
fn file_round_trip() {
    let norms = Norms::embedded();
    let mut cs = controls(norms, 30, 0.3, 0.2, 14);
    for c in cs.iter_mut().skip(3) {
        c.volumes.remove("4th-Ventricle");
    }
    let cal = Calibration::estimate(norms, &cs, LABEL, method()).unwrap();
    let json = cal.to_json_pretty();
    let back = Calibration::from_json(&json).unwrap();
    // serde_json's default float parsing may land one ulp away: equal within 1e-14
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-14 * a.abs().max(b.abs());
    assert_eq!(
        (
            &back.format,
            &back.label,
            &back.reference,
            back.n_controls,
            &back.skipped
        ),
        (&cal.format, &cal.label, &cal.reference, cal.n_controls, &cal.skipped)
    );
    assert!(back.age_range.iter().zip(&cal.age_range).all(|(a, b)| close(*a, *b)));
    assert_eq!(
        back.regions.keys().collect::<Vec<_>>(),
        cal.regions.keys().collect::<Vec<_>>()
    );
    for (a, b) in back.regions.values().zip(cal.regions.values()) {
        assert_eq!(a.n, b.n);
        for (x, y) in [
            (a.offset_w, b.offset_w),
            (a.se_w, b.se_w),
            (a.resid_sd_w, b.resid_sd_w),
            (a.model_sd_w, b.model_sd_w),
        ] {
            assert!(close(x, y), "{a:?} vs {b:?}");
        }
    }
    assert_eq!(calibration::describe(&back.site()), calibration::describe(&cal.site()));
    assert_eq!(back.reference, calibration::reference_fingerprint(norms));
    assert!(json.contains("\"format\": \"neurovol-calibration/2\""), "{json}");
    assert_eq!(back.measured_by, method());
    assert!(json.contains("\"skipped\""), "{json}");
}

#[test]
fn bad_files_are_refused() {
    let norms = Norms::embedded();
    let cal = Calibration::estimate(norms, &controls(norms, 30, 0.3, 0.0, 15), LABEL, method()).unwrap();
    let json = cal.to_json_pretty();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        f(&mut v);
        Calibration::from_json(&v.to_string())
    };

    let err = edit(&|v| v["format"] = "neurovol-calibration/3".into()).unwrap_err();
    assert!(
        matches!(&err, CalibrationError::Format { found } if found == "neurovol-calibration/3"),
        "{err}"
    );
    // a newer format with new fields still says it is another format
    let err = edit(&|v| {
        v["format"] = "neurovol-calibration/3".into();
        v["new_field"] = 1.into();
    })
    .unwrap_err();
    assert!(matches!(err, CalibrationError::Format { .. }), "{err}");
    assert!(matches!(
        Calibration::from_json("not json").unwrap_err(),
        CalibrationError::Json(_)
    ));
    let err = edit(&|v| v["reference"] = "fnv1a64:0000000000000000".into()).unwrap_err();
    assert!(matches!(err, CalibrationError::Reference { .. }), "{err}");
    // a file that does not say how its controls were segmented cannot be matched to a scan
    let err = edit(&|v| {
        v.as_object_mut().unwrap().remove("measured_by");
    })
    .unwrap_err();
    assert!(matches!(err, CalibrationError::Json(_)), "{err}");
    let err = edit(&|v| v["measured_by"]["model"] = "".into()).unwrap_err();
    assert!(matches!(err, CalibrationError::InvalidFile { .. }), "{err}");
    let err = edit(&|v| v["label"] = "".into()).unwrap_err();
    assert!(matches!(err, CalibrationError::BadLabel), "{err}");
    let err = edit(&|v| v["n_controls"] = 5.into()).unwrap_err();
    assert!(matches!(err, CalibrationError::InvalidFile { .. }), "{err}");
    let err = edit(&|v| v["age_range"] = serde_json::json!([1.0, 50.0])).unwrap_err();
    assert!(matches!(err, CalibrationError::InvalidFile { .. }), "{err}");
    let err = edit(&|v| v["regions"]["Left-Hippocampus"]["model_sd_w"] = (-1.0).into()).unwrap_err();
    assert!(
        matches!(&err, CalibrationError::InvalidRegion { region, .. } if region == "Left-Hippocampus"),
        "{err}"
    );
    let err = edit(&|v| v["regions"]["Left-Hippocampus"]["n"] = 3.into()).unwrap_err();
    assert!(matches!(err, CalibrationError::InvalidRegion { .. }), "{err}");
    let err = edit(&|v| {
        let r = v["regions"]["Left-Thalamus-Proper"].take();
        v["regions"]["Left-Thalamus"] = r;
        v["regions"].as_object_mut().unwrap().remove("Left-Thalamus-Proper");
    })
    .unwrap_err();
    assert!(
        matches!(&err, CalibrationError::InvalidRegion { region, .. } if region == "Left-Thalamus"),
        "{err}"
    );
    let err = edit(&|v| v["regions"]["Left-Hippocampus"]["typo"] = 1.into()).unwrap_err();
    assert!(matches!(err, CalibrationError::Json(_)), "{err}");
    let err = edit(&|v| v["regions"] = serde_json::json!({})).unwrap_err();
    assert!(matches!(err, CalibrationError::InvalidFile { .. }), "{err}");
}

#[test]
fn controls_keyed_by_braincharts_names_work_too() {
    let norms = Norms::embedded();
    let mut cs = controls(norms, 25, 0.0, 0.0, 16);
    for c in &mut cs {
        let v = c.volumes.remove("Left-Thalamus").unwrap();
        c.volumes.insert("Left-Thalamus-Proper".into(), v);
    }
    let cal = Calibration::estimate(norms, &cs, LABEL, method()).unwrap();
    assert_eq!(cal.regions["Left-Thalamus-Proper"].n, 25);
}
