//! Site calibration: learning a new site's offsets from its own healthy controls, as braincharts
//! adapts its models to a site outside its 82 training sites.
//!
//! braincharts (pcntoolkit's warped BLR, `BLR.predict_and_adjust` in
//! `pcntoolkit/model/bayesreg.py`) adapts a model to a new site from an "adaptation" sample of
//! that site: it predicts each adaptation subject with the trained model, takes the residuals in
//! the warped space, shifts the site's predicted mean by their mean and sets the site's
//! predictive variance from their spread. This module does the same for every region:
//!
//! - residual `r_i = warp(volume_i) − mu_w(age_i, sex_i)` with the training-site average
//!   ([`Site::TrainingAverage`]);
//! - offset `= mean(r_i)`, its standard error `se = sd(r_i)/√n` (sample SD);
//! - the site's extra variance `s2 = max(0, var(r_i) − mean(sigma_w_i²))`.
//!
//! **The variance, where we differ from pcntoolkit.** pcntoolkit replaces the predictive
//! variance by `var(r)` at every age. We keep the model's own age- and sex-dependent
//! `sigma_w` and add the excess of the site's scatter over it, never less than zero: a site
//! whose controls scatter *less* than the reference is, at the sample sizes a clinic has,
//! mostly sampling noise (the SD of a 20-control variance estimate is about a third of it),
//! and narrowing the bands on that evidence would call more healthy scans abnormal. Estimating
//! a larger scatter widens the bands, which errs towards "usual range".
//!
//! The offsets are assumed the same at every age and for both sexes, as braincharts' site
//! effect is (one intercept per site). The controls' age range is recorded in the file so a
//! report can say how far a scan's age lies from them.
//!
//! The crate does no I/O: the caller reads the controls' volumes and the calibration file.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Norms, REGION_MAP, Sex, Site, SiteCalibration, SiteOffset};

/// The calibration file's format; checked on load.
pub const FORMAT: &str = "neurovol-calibration/2";

/// How the controls' volumes were measured: offsets learnt on one segmentation's volumes say
/// nothing of another's, whose borders (and so biases) differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasuredBy {
    /// The segmentation model (`volumes.json`'s `model`).
    pub model: String,
    /// How its labels were drawn (`volumes.json`'s `labelling`: `upstream`, `refined`).
    pub labelling: String,
}

impl std::fmt::Display for MeasuredBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {} labels", self.model, self.labelling)
    }
}

/// The fewest healthy controls a calibration accepts, overall and per region (a region with
/// fewer usable controls is left out and falls back to the training-site average).
///
/// Why 20: the offset's standard error is `sd/√n`, about `0.22` of the region's normative SD
/// at 20 controls (`0.32` at 10). The offset corrects a site effect whose size, among
/// braincharts' own 82 FreeSurfer sites, is 0.15–0.99 normative SD (`between_site_sd_w`: 0.4–0.5
/// for most regions; more for another segmentation method). Calibrating beats not calibrating,
/// in expectation, once `se² <` (site effect)²: at 20 controls that holds for every NeuroVol
/// region except the lateral ventricles (0.15) and the 4th ventricle (0.20), whose offsets are
/// then about as uncertain as the effect they correct; at 10 it would fail for the caudate and
/// the 3rd ventricle too. An error of 0.22 SD moves a 50th percentile by about ±9 points and
/// the 5th by about ±2, and the site's scatter (SD) is known within about ±16 % (`1/√(2(n−1))`).
///
/// 20 is a floor, not a target. pcntoolkit itself only refuses fewer than 2 adaptation
/// subjects per site; the BrainChart lifespan app (Bethlehem et al.) refuses fewer than 10 per
/// sex per site and recommends at least 100; a 2025 study of adapting pretrained normative
/// models to a new cohort (UK Biobank to OASIS-3 and AIBL) found about 50 controls enough.
/// See [`RECOMMENDED_CONTROLS`].
pub const MIN_CONTROLS: usize = 20;

/// The number of controls the `calibrate` command recommends (it notes when fewer are used):
/// the offset's standard error is then about 0.14 normative SD.
pub const RECOMMENDED_CONTROLS: usize = 50;

/// A control whose residual lies further than this many normative SDs from the controls'
/// median residual refuses the calibration (braincharts' own outlier threshold,
/// `outlier_thresh = 7` in its transfer notebook). Measured from the median, a large offset
/// shared by every control of the site is not an outlier.
pub const OUTLIER_Z: f64 = 7.0;

/// The longest label (characters): it is printed on one line of every report.
pub const MAX_LABEL_CHARS: usize = 120;

/// One healthy control scanned at the site.
#[derive(Clone, Debug, PartialEq)]
pub struct Control {
    /// Years; must lie in the reference's age range.
    pub age: f64,
    pub sex: Sex,
    /// Volume (mm³) by NeuroVol region name, as in `volumes.json` (`Left-Thalamus`,
    /// `TotalIntracranialVolume`, …); braincharts' own names are accepted too. Regions without
    /// a normative model are ignored.
    pub volumes: BTreeMap<String, f64>,
}

/// A site's calibration: the calibration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Always [`FORMAT`].
    pub format: String,
    /// What was calibrated, for reports (e.g. "Site A, 3T MPRAGE"); never identifying.
    pub label: String,
    /// [`reference_fingerprint`] of the normative reference the offsets were estimated against:
    /// warped-space offsets mean nothing for other parameters.
    pub reference: String,
    /// How every control was segmented; scans segmented otherwise are not calibrated by it.
    pub measured_by: MeasuredBy,
    /// Controls given.
    pub n_controls: usize,
    /// Youngest and oldest control (years).
    pub age_range: [f64; 2],
    /// By braincharts region name (`Left-Thalamus-Proper`, …).
    pub regions: BTreeMap<String, RegionCalibration>,
    /// Regions NeuroVol reports, or some control had, with fewer than [`MIN_CONTROLS`] usable
    /// controls: they keep the training-site average.
    pub skipped: Vec<SkippedRegion>,
}

/// One region's calibration, in the model's warped units.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionCalibration {
    /// Controls that had the region.
    pub n: usize,
    /// Mean residual: added to `mu_w`.
    pub offset_w: f64,
    /// Standard error of the offset: `resid_sd_w / √n`.
    pub se_w: f64,
    /// Sample SD of the residuals: the site's scatter.
    pub resid_sd_w: f64,
    /// Root mean square of the model's `sigma_w` over the controls: the normative SD the offset
    /// and the scatter compare with.
    pub model_sd_w: f64,
}

impl RegionCalibration {
    /// The variance added to the model's: `max(0, resid_sd_w² − model_sd_w²)`.
    pub fn extra_var_w(&self) -> f64 {
        (self.resid_sd_w.powi(2) - self.model_sd_w.powi(2)).max(0.0)
    }

    /// The offset as a fraction of the normative SD.
    pub fn offset_sd(&self) -> f64 {
        self.offset_w / self.model_sd_w
    }
}

/// A region left uncalibrated, with the number of controls that had it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkippedRegion {
    pub region: String,
    pub n: usize,
}

/// Why a calibration could not be estimated or loaded. `control` is the control's index in the
/// slice given to [`Calibration::estimate`].
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("the label must be non-empty, one line and at most {MAX_LABEL_CHARS} characters")]
    BadLabel,
    #[error("{n} controls given; a calibration needs at least {min}")]
    TooFewControls { n: usize, min: usize },
    #[error("controls[{control}]: age {age} years is outside the reference range {min}–{max} years")]
    AgeOutOfRange {
        control: usize,
        age: f64,
        min: f64,
        max: f64,
    },
    #[error("controls[{control}]: the volume of {region} is not a finite non-negative number")]
    InvalidVolume { control: usize, region: String },
    #[error("controls[{control}]: {region} is given twice, under two names")]
    DuplicateRegion { control: usize, region: String },
    #[error(
        "controls[{control}]: {region} lies {z:.1} SD from the controls' median (more than {OUTLIER_Z}): \
         a failed segmentation or not a healthy control"
    )]
    Outlier { control: usize, region: String, z: f64 },
    #[error("no region has {MIN_CONTROLS} controls with its volume")]
    NoRegion,
    #[error("calibration file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("calibration file: format {found:?}, expected {FORMAT:?}")]
    Format { found: String },
    #[error(
        "calibration file: made against another normative reference ({found}; this build has {expected}): \
         calibrate again"
    )]
    Reference { found: String, expected: String },
    #[error("calibration file: {problem}")]
    InvalidFile { problem: &'static str },
    #[error("calibration file: region {region}: {problem}")]
    InvalidRegion { region: String, problem: &'static str },
}

impl CalibrationError {
    /// The one stable machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            CalibrationError::BadLabel => "bad_label",
            CalibrationError::TooFewControls { .. } => "too_few_controls",
            CalibrationError::AgeOutOfRange { .. } => "age_out_of_range",
            CalibrationError::InvalidVolume { .. } => "invalid_volume",
            CalibrationError::DuplicateRegion { .. } => "duplicate_region",
            CalibrationError::Outlier { .. } => "outlier",
            CalibrationError::NoRegion => "no_region",
            CalibrationError::Json(_) => "calibration_json",
            CalibrationError::Format { .. } => "calibration_format",
            CalibrationError::Reference { .. } => "calibration_reference",
            CalibrationError::InvalidFile { .. } | CalibrationError::InvalidRegion { .. } => "calibration_invalid",
        }
    }

    /// The index of the control the error is about, if any.
    pub fn control(&self) -> Option<usize> {
        match self {
            CalibrationError::AgeOutOfRange { control, .. }
            | CalibrationError::InvalidVolume { control, .. }
            | CalibrationError::DuplicateRegion { control, .. }
            | CalibrationError::Outlier { control, .. } => Some(*control),
            _ => None,
        }
    }
}

/// One control's residual for one region.
struct Residual {
    control: usize,
    r: f64,
    sigma_w: f64,
}

impl Calibration {
    /// Estimates a site's calibration from its healthy controls (see the module docs).
    ///
    /// Refuses: a bad label; fewer than [`MIN_CONTROLS`] controls; a control outside the
    /// reference's ages; a NaN, infinite or negative volume; a region given twice under two
    /// names; a control more than [`OUTLIER_Z`] SD from the others; no region with enough
    /// controls. Regions with fewer than [`MIN_CONTROLS`] controls are listed in `skipped`.
    pub fn estimate(
        norms: &Norms,
        controls: &[Control],
        label: &str,
        measured_by: MeasuredBy,
    ) -> Result<Calibration, CalibrationError> {
        let label = check_label(label)?;
        if controls.len() < MIN_CONTROLS {
            return Err(CalibrationError::TooFewControls {
                n: controls.len(),
                min: MIN_CONTROLS,
            });
        }
        // candidates: every model NeuroVol reports, plus any a control names
        let mut residuals: BTreeMap<String, Vec<Residual>> = REGION_MAP
            .iter()
            .filter_map(|(_, model)| *model)
            .filter(|m| norms.model(m).is_ok())
            .map(|m| (m.to_string(), Vec::new()))
            .collect();
        let (mut age_min, mut age_max) = (f64::INFINITY, f64::NEG_INFINITY);
        for (i, c) in controls.iter().enumerate() {
            let age_out_of_range = |_| {
                let (min, max) = norms.age_range();
                CalibrationError::AgeOutOfRange {
                    control: i,
                    age: c.age,
                    min,
                    max,
                }
            };
            norms.check_age(c.age).map_err(age_out_of_range)?;
            age_min = age_min.min(c.age);
            age_max = age_max.max(c.age);
            let mut seen = BTreeSet::new();
            for (name, &volume) in &c.volumes {
                if !(volume.is_finite() && volume >= 0.0) {
                    return Err(CalibrationError::InvalidVolume {
                        control: i,
                        region: name.clone(),
                    });
                }
                // regions without a normative model (cortex, parcels, …) are not calibrated
                let Ok(model) = norms.model(name) else {
                    continue;
                };
                if !seen.insert(model.name.as_str()) {
                    return Err(CalibrationError::DuplicateRegion {
                        control: i,
                        region: model.name.clone(),
                    });
                }
                // the model and the age were checked above: this cannot fail
                let pred = norms
                    .predict(&model.name, c.sex, c.age, &Site::TrainingAverage)
                    .map_err(age_out_of_range)?;
                residuals.entry(model.name.clone()).or_default().push(Residual {
                    control: i,
                    r: model.warp(volume) - pred.mu_w,
                    sigma_w: pred.sigma_w,
                });
            }
        }

        let mut regions = BTreeMap::new();
        let mut skipped = Vec::new();
        for (region, rs) in residuals {
            let n = rs.len();
            if n < MIN_CONTROLS {
                skipped.push(SkippedRegion { region, n });
                continue;
            }
            let median = median(rs.iter().map(|x| x.r).collect());
            if let Some(out) = rs.iter().find(|x| ((x.r - median) / x.sigma_w).abs() > OUTLIER_Z) {
                return Err(CalibrationError::Outlier {
                    control: out.control,
                    region,
                    z: (out.r - median) / out.sigma_w,
                });
            }
            let nf = n as f64;
            let mean = rs.iter().map(|x| x.r).sum::<f64>() / nf;
            let var = rs.iter().map(|x| (x.r - mean).powi(2)).sum::<f64>() / (nf - 1.0);
            let model_var = rs.iter().map(|x| x.sigma_w.powi(2)).sum::<f64>() / nf;
            let resid_sd_w = var.sqrt();
            regions.insert(
                region,
                RegionCalibration {
                    n,
                    offset_w: mean,
                    se_w: resid_sd_w / nf.sqrt(),
                    resid_sd_w,
                    model_sd_w: model_var.sqrt(),
                },
            );
        }
        if regions.is_empty() {
            return Err(CalibrationError::NoRegion);
        }
        Ok(Calibration {
            format: FORMAT.to_string(),
            label,
            reference: reference_fingerprint(norms),
            measured_by,
            n_controls: controls.len(),
            age_range: [age_min, age_max],
            regions,
            skipped,
        })
    }

    /// Parses and validates a calibration file against the embedded reference
    /// ([`Norms::embedded`], the one the product scores with).
    pub fn from_json(json: &str) -> Result<Calibration, CalibrationError> {
        Calibration::from_json_for(json, Norms::embedded())
    }

    /// Parses and validates a calibration file against `norms`: the format, the reference it was
    /// made against, the label, and every number (finite, in range, enough controls).
    // negated comparisons on purpose: NaN must fail them
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn from_json_for(json: &str, norms: &Norms) -> Result<Calibration, CalibrationError> {
        #[derive(Deserialize)]
        struct FormatOnly {
            format: String,
        }
        // the format first, so a newer file says so rather than failing on a new field
        let FormatOnly { format } = serde_json::from_str(json)?;
        if format != FORMAT {
            return Err(CalibrationError::Format { found: format });
        }
        let c: Calibration = serde_json::from_str(json)?;
        let expected = reference_fingerprint(norms);
        if c.reference != expected {
            return Err(CalibrationError::Reference {
                found: c.reference,
                expected,
            });
        }
        if check_label(&c.label)? != c.label {
            return Err(CalibrationError::BadLabel);
        }
        let bad = |problem| Err(CalibrationError::InvalidFile { problem });
        let named = |s: &str| !s.is_empty() && s.len() <= MAX_LABEL_CHARS && !s.chars().any(char::is_control);
        if !(named(&c.measured_by.model) && named(&c.measured_by.labelling)) {
            return bad("measured_by must name the model and the labelling");
        }
        if c.n_controls < MIN_CONTROLS {
            return bad("fewer controls than a calibration needs");
        }
        let [lo, hi] = c.age_range;
        let (min, max) = norms.age_range();
        if !(lo >= min && lo <= hi && hi <= max) {
            return bad("age_range is not an interval inside the reference's ages");
        }
        if c.regions.is_empty() {
            return bad("no region is calibrated");
        }
        let canonical = |name: &str| norms.model(name).is_ok_and(|m| m.name == name);
        for (region, r) in &c.regions {
            let bad_region = |problem| {
                Err(CalibrationError::InvalidRegion {
                    region: region.clone(),
                    problem,
                })
            };
            if !canonical(region) {
                return bad_region("not a braincharts model name");
            }
            if !(r.n >= MIN_CONTROLS && r.n <= c.n_controls) {
                return bad_region("n is below the minimum or above n_controls");
            }
            if !(r.offset_w.is_finite()
                && r.se_w.is_finite()
                && r.se_w >= 0.0
                && r.resid_sd_w.is_finite()
                && r.resid_sd_w >= 0.0
                && r.model_sd_w.is_finite()
                && r.model_sd_w > 0.0)
            {
                return bad_region("offset, SE and SDs must be finite, SDs positive");
            }
        }
        for s in &c.skipped {
            if !canonical(&s.region) || c.regions.contains_key(&s.region) || s.n >= MIN_CONTROLS {
                return Err(CalibrationError::InvalidRegion {
                    region: s.region.clone(),
                    problem: "skipped, yet calibrated, unknown or with enough controls",
                });
            }
        }
        Ok(c)
    }

    /// The file's text (pretty-printed JSON).
    pub fn to_json_pretty(&self) -> String {
        // plain data with finite numbers: serialising cannot fail
        serde_json::to_string_pretty(self).expect("a calibration serialises")
    }

    /// The site to score with: the training-site average plus these offsets; regions not
    /// calibrated keep the average (`site_calibrated: false`).
    pub fn site(&self) -> Site {
        Site::Calibrated(SiteCalibration {
            label: self.describe(),
            measured_by: Some(self.measured_by.clone()),
            offsets: self
                .regions
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        SiteOffset {
                            mu_w: r.offset_w,
                            s2_w: r.extra_var_w(),
                            se_w: r.se_w,
                        },
                    )
                })
                .collect(),
        })
    }

    /// The line reports print: `<label> (<N> controls)`.
    pub fn describe(&self) -> String {
        format!("{} ({} controls)", self.label, self.n_controls)
    }
}

/// The line every report prints for the site calibration in use.
pub fn describe(site: &Site) -> String {
    match site {
        Site::TrainingAverage => "none — braincharts training-site average".to_string(),
        Site::Calibrated(c) => c.label.clone(),
    }
}

/// A fingerprint of a normative reference's parameters (every model's warp, noise, weights and
/// covariance, the age range and the B-spline basis), as `fnv1a64:<16 hex digits>`. Two
/// references with the same fingerprint give the same predictions.
pub fn reference_fingerprint(norms: &Norms) -> String {
    // FNV-1a, 64 bit: tiny, stable across platforms (wasm32 included); not cryptographic,
    // which a consistency check does not need
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let (min, max) = norms.age_range();
    for v in [min, max] {
        eat(&v.to_bits().to_le_bytes());
    }
    for age in [3.0, 10.0, 25.0, 50.0, 75.0, 95.0] {
        for v in norms.bspline_basis(age) {
            eat(&v.to_bits().to_le_bytes());
        }
    }
    for name in norms.model_names() {
        eat(name.as_bytes());
        eat(&[0]);
        if let Ok(m) = norms.model(name) {
            let scalars = [m.eps, m.b, m.s2_noise];
            for v in scalars.iter().chain(&m.w).chain(&m.sigma) {
                eat(&v.to_bits().to_le_bytes());
            }
        }
    }
    format!("fnv1a64:{h:016x}")
}

fn check_label(label: &str) -> Result<String, CalibrationError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(CalibrationError::BadLabel);
    }
    Ok(label.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}
