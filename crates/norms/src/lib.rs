//! Exact normative percentiles for brain-region volumes from the braincharts lifespan models
//! (Rutherford et al. 2022, eLife 11:e72904; provenance and licence in `data/PROVENANCE.md`).
//!
//! The model (warped Bayesian linear regression, pcntoolkit BLR) is evaluated in closed form,
//! exactly as `shared/normative/README.md` describes:
//!
//! 1. cubic B-spline basis `B1..B7(age)` (Cox–de Boor on the knot vector, half-open intervals,
//!    0/0 = 0);
//! 2. design row `x = [1, age, sex, site, B1..B7]` with sex F = 0, M = 1 and `site = 1` (the
//!    uniform average of the 82 training-site columns);
//! 3. warped mean `mu_w = x·w` and spread `sigma_w = sqrt(s2_noise + xᵀ Σ x)`;
//! 4. sinh-arcsinh warp `u = sinh(b·(asinh(v) + eps))`;
//! 5. `z = (u − mu_w)/sigma_w`, percentile `= 100·Φ(z)`.
//!
//! The inverse (volume at a centile, for centile curves) is
//! `v_q = sinh(asinh(mu_w + sigma_w·Φ⁻¹(q/100))/b − eps)`.
//!
//! Φ uses `libm::erfc` (rust-lang's no_std port of musl libm: small, exact to ~1 ulp and builds
//! for wasm32; `statrs` would pull in far more). Φ⁻¹ is Acklam's rational approximation polished
//! by one Halley step on that erfc, which brings it to full double precision.
//!
//! The parameters (`data/braincharts_params.json`, 0.27 MB) are embedded in the binary and parsed
//! once on first use; the crate does no I/O and has no web dependency.

use std::collections::BTreeMap;
use std::f64::consts::{PI, SQRT_2};
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub mod calibration;
pub mod validity;
pub use calibration::{Calibration, MeasuredBy};

/// The embedded braincharts parameter file (verbatim copy of
/// `shared/normative/braincharts_params.json`).
pub const EMBEDDED_PARAMS_JSON: &str = include_str!("../data/braincharts_params.json");

/// Ages below this (years) are inside the reference range but sparsely sampled (147 controls
/// aged 2–5), so their percentiles are flagged low-confidence.
pub const LOW_CONFIDENCE_BELOW_AGE: f64 = 5.0;
/// Ages above this (years) are flagged low-confidence (158 controls older than 85).
pub const LOW_CONFIDENCE_ABOVE_AGE: f64 = 85.0;

/// How a NeuroVol region name relates to a braincharts model.
///
/// `model: None` marks a NeuroVol region that braincharts does not model (it gets a volume and
/// no percentile). Mirrors `shared/normative/braincharts_region_map.csv` (a test checks it).
pub const REGION_MAP: &[(&str, Option<&str>)] = &[
    ("Left-Lateral-Ventricle", Some("Left-Lateral-Ventricle")),
    ("Right-Lateral-Ventricle", Some("Right-Lateral-Ventricle")),
    ("Left-Inf-Lat-Vent", Some("Left-Inf-Lat-Vent")),
    ("Right-Inf-Lat-Vent", Some("Right-Inf-Lat-Vent")),
    // FreeSurfer 7 name; braincharts was trained on FreeSurfer <= 6, which said "-Proper".
    ("Left-Thalamus", Some("Left-Thalamus-Proper")),
    ("Right-Thalamus", Some("Right-Thalamus-Proper")),
    ("Left-Caudate", Some("Left-Caudate")),
    ("Right-Caudate", Some("Right-Caudate")),
    ("Left-Putamen", Some("Left-Putamen")),
    ("Right-Putamen", Some("Right-Putamen")),
    ("Left-Pallidum", Some("Left-Pallidum")),
    ("Right-Pallidum", Some("Right-Pallidum")),
    ("Left-Hippocampus", Some("Left-Hippocampus")),
    ("Right-Hippocampus", Some("Right-Hippocampus")),
    ("Left-Amygdala", Some("Left-Amygdala")),
    ("Right-Amygdala", Some("Right-Amygdala")),
    ("Left-Accumbens-area", Some("Left-Accumbens-area")),
    ("Right-Accumbens-area", Some("Right-Accumbens-area")),
    ("Left-VentralDC", Some("Left-VentralDC")),
    ("Right-VentralDC", Some("Right-VentralDC")),
    ("Left-Cerebellum-Cortex", Some("Left-Cerebellum-Cortex")),
    ("Right-Cerebellum-Cortex", Some("Right-Cerebellum-Cortex")),
    ("Left-Cerebellum-White-Matter", Some("Left-Cerebellum-White-Matter")),
    ("Right-Cerebellum-White-Matter", Some("Right-Cerebellum-White-Matter")),
    ("Left-Cerebral-White-Matter", None),
    ("Right-Cerebral-White-Matter", None),
    ("Left-Cerebral-Cortex", None),
    ("Right-Cerebral-Cortex", None),
    ("3rd-Ventricle", Some("3rd-Ventricle")),
    ("4th-Ventricle", Some("4th-Ventricle")),
    ("Brain-Stem", Some("Brain-Stem")),
    // FreeSurfer eTIV (atlas-scaling estimate), not a segmented TIV: see PROVENANCE.md caveats.
    ("TotalIntracranialVolume", Some("EstimatedTotalIntraCranialVol")),
];

/// Sex as the model codes it (F = 0, M = 1). Serialised as the one-letter DICOM code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    #[serde(rename = "F")]
    Female,
    #[serde(rename = "M")]
    Male,
}

impl Sex {
    /// Parses a DICOM-style sex code: `F` or `M` (case-insensitive, surrounding spaces
    /// ignored). Anything else (`O`, empty, …) has no reference and gives `None`.
    pub fn from_code(code: &str) -> Option<Sex> {
        match code.trim() {
            "F" | "f" => Some(Sex::Female),
            "M" | "m" => Some(Sex::Male),
            _ => None,
        }
    }

    /// The one-letter code (`"F"` / `"M"`).
    pub fn code(self) -> &'static str {
        match self {
            Sex::Female => "F",
            Sex::Male => "M",
        }
    }

    /// The value of the sex column in the design row.
    fn covariate(self) -> f64 {
        match self {
            Sex::Female => 0.0,
            Sex::Male => 1.0,
        }
    }
}

impl FromStr for Sex {
    type Err = NoPercentile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sex::from_code(s).ok_or(NoPercentile::SexUnknown)
    }
}

/// Which site effect the reference uses.
///
/// NeuroVol's scanners are not among braincharts' 82 training sites, so the default is the
/// uniform average of the training-site effects. Once NeuroVol has calibrated its own pipeline on
/// healthy controls, the learned offsets go in [`Site::Calibrated`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Site {
    /// Every site column = 1/82 (README "Our choice").
    #[default]
    TrainingAverage,
    /// Average site plus per-region offsets in warped units.
    Calibrated(SiteCalibration),
}

impl Site {
    /// Whether this site's offsets hold for volumes segmented by `model` with `labelling`:
    /// a calibration learnt on controls segmented otherwise does not.
    pub fn fits(&self, model: &str, labelling: &str) -> bool {
        match self {
            Site::TrainingAverage => true,
            Site::Calibrated(c) => c
                .measured_by
                .as_ref()
                .is_none_or(|m| m.model == model && m.labelling == labelling),
        }
    }
}

/// Per-region site offsets relative to the training-site average, in the model's warped units.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteCalibration {
    /// A label for reports (e.g. the calibration batch); never identifying.
    pub label: String,
    /// How the calibration's controls were segmented (`None`: offsets that hold for any
    /// segmentation, as a training site's do).
    #[serde(default)]
    pub measured_by: Option<MeasuredBy>,
    /// Keyed by braincharts region name (e.g. `Left-Thalamus-Proper`). A region missing here
    /// falls back to the training average, and its result says `site_calibrated: false`.
    pub offsets: BTreeMap<String, SiteOffset>,
}

/// Offset of one site for one region, in warped units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteOffset {
    /// Added to `mu_w`.
    pub mu_w: f64,
    /// Added to the warped variance `s2_w` (0 for a point estimate of the site effect).
    pub s2_w: f64,
    /// The standard error of `mu_w` (0 where the offset is known exactly): the site term of
    /// a percentile's band.
    #[serde(default)]
    pub se_w: f64,
}

impl SiteCalibration {
    /// A site that differs from the training average in `region` alone, by `offset_sd` of the
    /// region's normative SD at `sex` and `age`, known within `se_sd` of it: a site whose
    /// effect is known, for tests and worked examples. `None` for a region without a model.
    pub fn one_region(
        norms: &Norms,
        region: &str,
        sex: Sex,
        age: f64,
        offset_sd: f64,
        se_sd: f64,
    ) -> Option<SiteCalibration> {
        let model = norms.model(region).ok()?;
        let sigma = norms.predict(region, sex, age, &Site::TrainingAverage).ok()?.sigma_w;
        Some(SiteCalibration {
            label: format!("{region} {offset_sd:+} SD"),
            measured_by: None,
            offsets: [(
                model.name.clone(),
                SiteOffset {
                    mu_w: offset_sd * sigma,
                    s2_w: 0.0,
                    se_w: se_sd * sigma,
                },
            )]
            .into(),
        })
    }

    /// The offsets of one of braincharts' own training sites (`site_offsets_w` in the params:
    /// that site's coefficient minus the average). Exact for the mean; the variance is left at
    /// the average site's, which understates it by up to 14 % for small sites (README).
    pub fn training_site(norms: &Norms, site: &str) -> Option<SiteCalibration> {
        let mut offsets = BTreeMap::new();
        for (name, model) in &norms.regions {
            let mu_w = *model.site_offsets_w.get(site)?;
            offsets.insert(
                name.clone(),
                SiteOffset {
                    mu_w,
                    s2_w: 0.0,
                    se_w: 0.0,
                },
            );
        }
        Some(SiteCalibration {
            label: format!("braincharts training site {site}"),
            measured_by: None,
            offsets,
        })
    }
}

/// Why a volume got no percentile. Serialised as `{"reason": "snake_case_name", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NoPercentile {
    /// A known brain structure that braincharts does not model (cerebral cortex and cerebral
    /// white matter, cortical parcels, corpus-callosum segments, bilateral sums).
    #[error("no normative model for region {region}")]
    NoModel { region: String },
    /// A name this crate does not know.
    #[error("unknown region {region:?}")]
    UnknownRegion { region: String },
    /// The age is outside the range the reference was trained on (no extrapolation).
    #[error("age {age} years is outside the reference range {min}–{max} years")]
    AgeOutOfRange { age: f64, min: f64, max: f64 },
    /// No age was given.
    #[error("age unknown")]
    AgeUnknown,
    /// No sex, or a code other than F/M (the reference is F/M only).
    #[error("sex unknown or not F/M")]
    SexUnknown,
    /// Volume negative, infinite or NaN.
    #[error("volume is not a finite non-negative number")]
    InvalidVolume,
    /// A centile outside the open interval (0, 100).
    #[error("centile must be strictly between 0 and 100")]
    InvalidCentile,
    /// Our volumes of this structure differ from FreeSurfer's on average by more than
    /// [`validity::MAX_METHOD_Z`] of the reference's SD (the validity table).
    // two decimals: one would show a withheld +0.51 as the threshold's own +0.5
    #[error("ours differ from FreeSurfer's by {bias_z:+.2} SD on average")]
    MethodBiased { bias_z: f64 },
    /// Our volumes of this structure scatter around FreeSurfer's by more than
    /// [`validity::MAX_METHOD_Z`] of the reference's SD.
    #[error("ours scatter around FreeSurfer's by {sd_z:.2} SD")]
    MethodImprecise { sd_z: f64 },
    /// Our labels of this structure overlap FreeSurfer's less than
    /// [`validity::MIN_DICE`] (mean Dice).
    #[error("our labels overlap FreeSurfer's by only {:.0} %", dice * 100.0)]
    MethodOverlap { dice: f64 },
    /// This model and labelling were never compared with FreeSurfer, or on one brain only.
    #[error("our way of measuring this structure has not been compared with FreeSurfer's on enough brains")]
    MethodUnmeasured,
}

/// Why a parameter file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NormsError {
    #[error("normative parameters: {0}")]
    Json(#[from] serde_json::Error),
    #[error("normative parameters: {0}")]
    Invalid(String),
}

/// The exact percentile of one volume.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    /// 100·Φ(z), in [0, 100].
    pub percentile: f64,
    /// The deviation score braincharts itself reports.
    pub z: f64,
    /// Age under 5 or over 85: sparse training data.
    pub low_confidence: bool,
    /// Whether a calibrated site offset was applied (false: training-site average).
    pub site_calibrated: bool,
}

/// Warped-space prediction for one (region, sex, age, site).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarpedPrediction {
    pub mu_w: f64,
    pub sigma_w: f64,
    pub site_calibrated: bool,
}

/// One region's volume with its percentile, or the reason it has none. This is the shape a
/// results table or `volumes.json` needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionNorm {
    pub region: String,
    pub volume_mm3: f64,
    pub percentile: Option<f64>,
    pub z: Option<f64>,
    pub low_confidence: bool,
    pub site_calibrated: bool,
    pub no_percentile: Option<NoPercentile>,
    /// The percentiles one SD of uncertainty below and above (our method's scatter and the
    /// site effect's, [`Norms::assess_method`]); `None` without a percentile or without a
    /// method measurement.
    #[serde(default)]
    pub band: Option<[f64; 2]>,
}

/// One centile curve: `(age, volume_mm3)` points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CentileCurve {
    pub centile: f64,
    pub points: Vec<[f64; 2]>,
}

/// One braincharts region model (all in warped units except `n_train`).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionModel {
    pub name: String,
    pub n_train: u64,
    pub eps: f64,
    pub b: f64,
    pub s2_noise: f64,
    /// Posterior mean weights for `[1, age, sex, site, B1..Bn]`.
    pub w: Vec<f64>,
    /// Posterior covariance of `w`, row-major, `w.len()²` values.
    pub sigma: Vec<f64>,
    /// SD of the 82 training-site coefficients.
    pub between_site_sd_w: f64,
    /// Per training site: coefficient minus the average.
    pub site_offsets_w: BTreeMap<String, f64>,
}

impl RegionModel {
    /// The sinh-arcsinh warp `f(v) = sinh(b·(asinh(v) + eps))` (strictly increasing).
    pub fn warp(&self, volume_mm3: f64) -> f64 {
        (self.b * (volume_mm3.asinh() + self.eps)).sinh()
    }

    /// The inverse warp `f⁻¹(u) = sinh(asinh(u)/b − eps)`.
    pub fn unwarp(&self, u: f64) -> f64 {
        (u.asinh() / self.b - self.eps).sinh()
    }
}

/// The normative reference: all region models plus the shared B-spline and age range.
#[derive(Clone, Debug, PartialEq)]
pub struct Norms {
    knots: Vec<f64>,
    degree: usize,
    age_min: f64,
    age_max: f64,
    regions: BTreeMap<String, RegionModel>,
}

#[derive(Deserialize)]
struct ParamsFile {
    format: String,
    valid_age_range: [f64; 2],
    bspline: BsplineJson,
    regions: BTreeMap<String, RegionJson>,
}

#[derive(Deserialize)]
struct BsplineJson {
    degree: usize,
    knot_vector: Vec<f64>,
    n_basis: usize,
}

#[derive(Deserialize)]
struct RegionJson {
    n_train: u64,
    warp: WarpJson,
    s2_noise: f64,
    w: Vec<f64>,
    #[serde(rename = "Sigma")]
    sigma: Vec<Vec<f64>>,
    between_site_sd_w: f64,
    site_offsets_w: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct WarpJson {
    eps: f64,
    b: f64,
}

/// Number of design-row entries before the B-spline block: intercept, age, sex, site.
const N_FIXED: usize = 4;

impl Norms {
    /// The embedded reference, parsed once.
    pub fn embedded() -> &'static Norms {
        static NORMS: OnceLock<Norms> = OnceLock::new();
        NORMS.get_or_init(|| {
            // The embedded file is a build-time constant checked by the tests, so failing here
            // is a build defect, not bad input.
            Norms::from_json(EMBEDDED_PARAMS_JSON).expect("embedded braincharts_params.json is valid")
        })
    }

    /// Parses and validates a `neurovol-normative-braincharts-v1` parameter file.
    // negated comparisons on purpose: NaN must fail them
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn from_json(json: &str) -> Result<Norms, NormsError> {
        let file: ParamsFile = serde_json::from_str(json)?;
        let bad = |m: String| Err(NormsError::Invalid(m));
        if file.format != "neurovol-normative-braincharts-v1" {
            return bad(format!("unsupported format {:?}", file.format));
        }
        let bs = &file.bspline;
        if bs.knot_vector.len() != bs.n_basis + bs.degree + 1 || bs.knot_vector.windows(2).any(|k| !(k[0] <= k[1])) {
            return bad("B-spline knot vector does not match degree and basis size".into());
        }
        let [age_min, age_max] = file.valid_age_range;
        if !(age_min < age_max) {
            return bad("empty age range".into());
        }
        let n = N_FIXED + bs.n_basis;
        let mut regions = BTreeMap::new();
        for (name, r) in file.regions {
            let finite = r.w.iter().chain(r.sigma.iter().flatten()).all(|v| v.is_finite());
            if r.w.len() != n || r.sigma.len() != n || r.sigma.iter().any(|row| row.len() != n) || !finite {
                return bad(format!(
                    "region {name}: weights/covariance are not {n}-dimensional and finite"
                ));
            }
            if !(r.warp.b > 0.0 && r.warp.eps.is_finite() && r.s2_noise > 0.0) {
                return bad(format!("region {name}: warp b and noise variance must be positive"));
            }
            let model = RegionModel {
                name: name.clone(),
                n_train: r.n_train,
                eps: r.warp.eps,
                b: r.warp.b,
                s2_noise: r.s2_noise,
                w: r.w,
                sigma: r.sigma.into_iter().flatten().collect(),
                between_site_sd_w: r.between_site_sd_w,
                site_offsets_w: r.site_offsets_w,
            };
            regions.insert(name, model);
        }
        Ok(Norms {
            knots: file.bspline.knot_vector,
            degree: file.bspline.degree,
            age_min,
            age_max,
            regions,
        })
    }

    /// The ages (years, inclusive) the reference covers; outside them there is no percentile.
    pub fn age_range(&self) -> (f64, f64) {
        (self.age_min, self.age_max)
    }

    /// Names of all braincharts models (the 37 in the embedded file).
    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    /// Resolves a region name to its model.
    ///
    /// Accepted: NeuroVol/FreeSurfer names from [`REGION_MAP`] (`Left-Thalamus`,
    /// `TotalIntracranialVolume`, …), braincharts' own names (`Left-Thalamus-Proper`, `CSF`,
    /// `EstimatedTotalIntraCranialVol`, …) and model21_104class's `Left-Thalamus-Proper*` (the
    /// trailing asterisk is stripped). Cortical parcels (`ctx-lh-*`), corpus-callosum segments
    /// (`CC_*`), unmodelled NeuroVol regions and hemisphere-less names of modelled structures
    /// (`Hippocampus`: a bilateral sum has no reference) give [`NoPercentile::NoModel`].
    pub fn model(&self, region: &str) -> Result<&RegionModel, NoPercentile> {
        let name = region.trim().trim_end_matches('*');
        let no_model = || NoPercentile::NoModel {
            region: name.to_string(),
        };
        if let Some((_, target)) = REGION_MAP.iter().find(|(n, _)| *n == name) {
            return target.and_then(|t| self.regions.get(t)).ok_or_else(no_model);
        }
        if let Some(m) = self.regions.get(name) {
            return Ok(m);
        }
        let lateral = |side: &str| {
            let full = format!("{side}-{name}");
            REGION_MAP.iter().any(|(n, _)| *n == full) || self.regions.contains_key(&full)
        };
        if name.starts_with("ctx-lh-") || name.starts_with("ctx-rh-") || name.starts_with("CC_") || lateral("Left") {
            return Err(no_model());
        }
        Err(NoPercentile::UnknownRegion {
            region: name.to_string(),
        })
    }

    /// Cubic (in general degree-p) B-spline basis at `age` by Cox–de Boor with half-open
    /// intervals and 0/0 = 0; sums to 1 inside the knot span.
    pub fn bspline_basis(&self, age: f64) -> Vec<f64> {
        let t = &self.knots;
        let m = t.len();
        // degree 0: indicator of [t_i, t_{i+1})
        let mut n: Vec<f64> = (0..m - 1)
            .map(|i| if t[i] <= age && age < t[i + 1] { 1.0 } else { 0.0 })
            .collect();
        for p in 1..=self.degree {
            let ratio = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
            n = (0..m - 1 - p)
                .map(|i| {
                    ratio(age - t[i], t[i + p] - t[i]) * n[i]
                        + ratio(t[i + p + 1] - age, t[i + p + 1] - t[i + 1]) * n[i + 1]
                })
                .collect();
        }
        n
    }

    /// Checks the age against the reference range; `Ok(low_confidence)`.
    pub fn check_age(&self, age: f64) -> Result<bool, NoPercentile> {
        // written so that NaN fails the range test
        if !(age >= self.age_min && age <= self.age_max) {
            return Err(NoPercentile::AgeOutOfRange {
                age,
                min: self.age_min,
                max: self.age_max,
            });
        }
        Ok(!(LOW_CONFIDENCE_BELOW_AGE..=LOW_CONFIDENCE_ABOVE_AGE).contains(&age))
    }

    /// Warped mean and SD for (region, sex, age, site).
    pub fn predict(&self, region: &str, sex: Sex, age: f64, site: &Site) -> Result<WarpedPrediction, NoPercentile> {
        let model = self.model(region)?;
        self.check_age(age)?;
        Ok(self.predict_model(model, sex, age, site))
    }

    fn predict_model(&self, model: &RegionModel, sex: Sex, age: f64, site: &Site) -> WarpedPrediction {
        let mut x = vec![1.0, age, sex.covariate(), 1.0];
        x.extend(self.bspline_basis(age));
        let n = x.len();
        let mu: f64 = x.iter().zip(&model.w).map(|(a, b)| a * b).sum();
        let quad: f64 = (0..n)
            .map(|i| x[i] * (0..n).map(|j| model.sigma[i * n + j] * x[j]).sum::<f64>())
            .sum();
        let offset = match site {
            Site::TrainingAverage => None,
            Site::Calibrated(c) => c.offsets.get(&model.name).copied(),
        };
        let off = offset.unwrap_or_default();
        WarpedPrediction {
            mu_w: mu + off.mu_w,
            sigma_w: (model.s2_noise + quad + off.s2_w).sqrt(),
            site_calibrated: offset.is_some(),
        }
    }

    /// The exact percentile of `volume_mm3` for (region, sex, age).
    pub fn percentile(
        &self,
        region: &str,
        sex: Sex,
        age: f64,
        volume_mm3: f64,
        site: &Site,
    ) -> Result<Percentile, NoPercentile> {
        let model = self.model(region)?;
        if !(volume_mm3.is_finite() && volume_mm3 >= 0.0) {
            return Err(NoPercentile::InvalidVolume);
        }
        let low_confidence = self.check_age(age)?;
        let pred = self.predict_model(model, sex, age, site);
        let z = (model.warp(volume_mm3) - pred.mu_w) / pred.sigma_w;
        Ok(Percentile {
            percentile: 100.0 * normal_cdf(z),
            z,
            low_confidence,
            site_calibrated: pred.site_calibrated,
        })
    }

    /// The volume (mm³) at `centile` (0 < centile < 100) for (region, sex, age).
    pub fn centile_volume(
        &self,
        region: &str,
        sex: Sex,
        age: f64,
        centile: f64,
        site: &Site,
    ) -> Result<f64, NoPercentile> {
        let model = self.model(region)?;
        let zq = centile_z(centile)?;
        self.check_age(age)?;
        let pred = self.predict_model(model, sex, age, site);
        Ok(model.unwarp(pred.mu_w + pred.sigma_w * zq))
    }

    /// Centile curves for a chart: one curve per centile, one point per age. Every age must lie
    /// in [`Norms::age_range`].
    pub fn centile_curves(
        &self,
        region: &str,
        sex: Sex,
        centiles: &[f64],
        ages: &[f64],
        site: &Site,
    ) -> Result<Vec<CentileCurve>, NoPercentile> {
        let model = self.model(region)?;
        let zs = centiles.iter().map(|&c| centile_z(c)).collect::<Result<Vec<_>, _>>()?;
        let mut curves: Vec<CentileCurve> = centiles
            .iter()
            .map(|&centile| CentileCurve {
                centile,
                points: Vec::with_capacity(ages.len()),
            })
            .collect();
        for &age in ages {
            self.check_age(age)?;
            // one prediction per age, shared by all centiles
            let pred = self.predict_model(model, sex, age, site);
            for (curve, zq) in curves.iter_mut().zip(&zs) {
                curve.points.push([age, model.unwarp(pred.mu_w + pred.sigma_w * zq)]);
            }
        }
        Ok(curves)
    }

    /// Volume plus percentile or the typed reason for none. Checks in the order region,
    /// volume, sex, age, so an unmodelled region reports `no_model` even without age or sex.
    pub fn assess(&self, region: &str, volume_mm3: f64, sex: Option<Sex>, age: Option<f64>, site: &Site) -> RegionNorm {
        let result = (|| -> Result<Percentile, NoPercentile> {
            self.model(region)?;
            if !(volume_mm3.is_finite() && volume_mm3 >= 0.0) {
                return Err(NoPercentile::InvalidVolume);
            }
            let sex = sex.ok_or(NoPercentile::SexUnknown)?;
            let age = age.ok_or(NoPercentile::AgeUnknown)?;
            self.percentile(region, sex, age, volume_mm3, site)
        })();
        let (percentile, z, low_confidence, site_calibrated, no_percentile) = match result {
            Ok(p) => (Some(p.percentile), Some(p.z), p.low_confidence, p.site_calibrated, None),
            Err(e) => (None, None, false, false, Some(e)),
        };
        RegionNorm {
            region: region.to_string(),
            volume_mm3,
            percentile,
            z,
            low_confidence,
            site_calibrated,
            no_percentile,
            band: None,
        }
    }

    /// [`Norms::assess`] with our method's validity: the percentile is withheld where the
    /// validity table says our volumes of the structure cannot support one (or where the
    /// method was never measured), and otherwise comes with its band — the percentiles at
    /// z ± √(method SD² + site SD²), all in the reference's SD units. The site SD is the
    /// spread of braincharts' training sites (NeuroVol's scanner is not one of them) or, for
    /// a calibrated region, the standard error of its offset.
    pub fn assess_method(
        &self,
        region: &str,
        volume_mm3: f64,
        sex: Option<Sex>,
        age: Option<f64>,
        site: &Site,
        method: Option<&validity::MethodValidity>,
    ) -> RegionNorm {
        let mut norm = self.assess(region, volume_mm3, sex, age, site);
        let (Some(z), Some(sex), Some(age), Ok(model)) = (norm.z, sex, age, self.model(region)) else {
            return norm;
        };
        let calibrated = match site {
            Site::Calibrated(c) => c.offsets.get(&model.name),
            Site::TrainingAverage => None,
        };
        let judged = method
            .ok_or(NoPercentile::MethodUnmeasured)
            .and_then(|m| m.structure(&model.name).ok_or(NoPercentile::MethodUnmeasured))
            .and_then(|v| match calibrated {
                Some(_) => v.judge_calibrated(),
                None => v.judge(),
            });
        match (judged, calibrated) {
            (Err(reason), _) => {
                norm.percentile = None;
                norm.z = None;
                norm.no_percentile = Some(reason);
            }
            (Ok(v), None) => {
                let pred = self.predict_model(model, sex, age, site);
                let site_sd = model.between_site_sd_w / pred.sigma_w;
                norm.band = Some(band(z, (v.delta_z_sd.powi(2) + site_sd.powi(2)).sqrt()));
            }
            // the site's controls were measured by the same method, so its scatter is in the
            // calibrated variance already: only the offset's own error remains
            (Ok(_), Some(offset)) => {
                let pred = self.predict_model(model, sex, age, site);
                norm.band = Some(band(z, offset.se_w / pred.sigma_w));
            }
        }
        norm
    }
}

/// The percentiles `sd` reference SDs either side of `z`.
fn band(z: f64, sd: f64) -> [f64; 2] {
    [100.0 * normal_cdf(z - sd), 100.0 * normal_cdf(z + sd)]
}

fn centile_z(centile: f64) -> Result<f64, NoPercentile> {
    if !(centile > 0.0 && centile < 100.0) {
        return Err(NoPercentile::InvalidCentile);
    }
    Ok(normal_quantile(centile / 100.0))
}

/// Standard normal CDF Φ(z) = ½·erfc(−z/√2) (accurate in both tails, unlike ½(1+erf)).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / SQRT_2)
}

/// Standard normal quantile Φ⁻¹(p) for 0 < p < 1 (NaN otherwise): Acklam's rational
/// approximation (relative error 1.2e-9) refined by one Halley step on [`normal_cdf`], which
/// gives full double precision.
pub fn normal_quantile(p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0) {
        return f64::NAN;
    }
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    const P_LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // Halley step: e = Φ(x) − p, u = e/φ(x)
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_known_values_and_round_trip() {
        assert!((normal_quantile(0.975) - 1.959963984540054).abs() < 1e-14);
        assert!((normal_quantile(0.01) + 2.3263478740408408).abs() < 1e-13);
        assert_eq!(normal_quantile(0.5), 0.0);
        for &p in &[
            1e-12,
            1e-6,
            0.001,
            0.02425,
            0.1,
            0.3,
            0.5,
            0.77,
            0.97575,
            0.999,
            1.0 - 1e-9,
        ] {
            let x = normal_quantile(p);
            let back = normal_cdf(x);
            let tol = 1e-13 * p.min(1.0 - p).max(1e-3);
            assert!((back - p).abs() <= tol.max(1e-15), "p={p} x={x} back={back}");
        }
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(normal_quantile(bad).is_nan());
        }
    }

    #[test]
    fn cdf_tails() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-16);
        // Φ(-10) ≈ 7.619853024160527e-24: erfc keeps the relative precision
        assert!((normal_cdf(-10.0) / 7.619853024160527e-24 - 1.0).abs() < 1e-12);
        assert_eq!(normal_cdf(f64::INFINITY), 1.0);
    }
}
