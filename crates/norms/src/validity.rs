//! How far our volumes of each structure are from FreeSurfer's, on which the reference was
//! built: the validity table, and the rule that withholds a percentile where our method
//! cannot support one.
//!
//! The table (`data/validity.json`) is written by `neurovol accuracy --validity-out` and
//! records measurements only — the mean and SD, over the brains compared, of Δz (our z-score
//! minus FreeSurfer's for the same brain) and of the volume ratio, with their provenance.
//! Nothing in it corrects a volume: a user corrects for their own scanner with a site
//! calibration ([`crate::calibration`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::NoPercentile;

/// The table shipped with this release.
pub const EMBEDDED_VALIDITY_JSON: &str = include_str!("../data/validity.json");

/// The file format this crate reads.
pub const FORMAT: &str = "neurovol-validity/1";

/// A percentile is reported only where our method's mean error and its SD, in the
/// reference's own SD units, are both at most this. Half an SD moves a person at the median
/// to the 31st or 69th percentile and one at the 5th to the 1.7th or 11th: beyond that the
/// number would say more about our method than about the person.
pub const MAX_METHOD_Z: f64 = 0.5;

/// A percentile is reported only where our labels overlap FreeSurfer's at least this much
/// (mean Dice): below it, agreeing volumes may be errors that cancel rather than the same
/// structure drawn the same way. (Added after the acceptance brains showed the left
/// inferior lateral ventricle, Dice 0.44–0.50, off by 0.72 SD; so those brains no longer
/// test this rule independently.)
pub const MIN_DICE: f64 = 0.7;

/// The measured agreement of one structure (keyed by braincharts' name).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StructureValidity {
    /// Brains compared.
    pub n: usize,
    /// Mean Dice of our labels against FreeSurfer's.
    pub dice_mean: f64,
    /// Our volume ÷ FreeSurfer's `Volume_mm3`: mean and SD over the brains.
    pub ratio_mean: f64,
    pub ratio_sd: f64,
    /// Our z minus FreeSurfer's: mean (the bias) and SD (the method's scatter).
    pub delta_z_mean: f64,
    pub delta_z_sd: f64,
}

impl StructureValidity {
    /// Whether a percentile may be reported, or why not.
    pub fn judge(&self) -> Result<&StructureValidity, NoPercentile> {
        self.judge_with(false)
    }

    /// As [`judge`](Self::judge), for a region calibrated on the site's own controls: they
    /// were measured by the same method, so its bias is in their offset and only the overlap
    /// and the scatter decide.
    pub fn judge_calibrated(&self) -> Result<&StructureValidity, NoPercentile> {
        self.judge_with(true)
    }

    fn judge_with(&self, bias_calibrated: bool) -> Result<&StructureValidity, NoPercentile> {
        if self.dice_mean < MIN_DICE {
            Err(NoPercentile::MethodOverlap { dice: self.dice_mean })
        } else if !bias_calibrated && self.delta_z_mean.abs() > MAX_METHOD_Z {
            Err(NoPercentile::MethodBiased {
                bias_z: self.delta_z_mean,
            })
        } else if self.n < 2 {
            // one brain says nothing about the scatter
            Err(NoPercentile::MethodUnmeasured)
        } else if self.delta_z_sd > MAX_METHOD_Z {
            Err(NoPercentile::MethodImprecise { sd_z: self.delta_z_sd })
        } else {
            Ok(self)
        }
    }
}

/// Where the measurements came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// What was compared with what.
    pub comparison: String,
    /// The data (repository, commit, which brains) and its licence status.
    pub data: String,
    pub cases: Vec<String>,
    /// The command that reproduces the table.
    pub command: String,
    pub neurovol_version: String,
    /// The nominal age and sex at which the z-scores were taken.
    pub age: f64,
    pub sex: String,
}

impl Provenance {
    /// One line for a report: what was compared, on how many brains.
    pub fn summary(&self) -> String {
        format!(
            "compared with FreeSurfer on {} brains, NeuroVol {}",
            self.cases.len(),
            self.neurovol_version
        )
    }
}

/// The measurements of one way of drawing labels (model and labelling).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodValidity {
    pub model: String,
    pub labelling: String,
    pub provenance: Provenance,
    pub structures: BTreeMap<String, StructureValidity>,
}

/// The validity file: one entry per measured method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidityTable {
    pub format: String,
    pub methods: Vec<MethodValidity>,
}

impl ValidityTable {
    /// The table shipped with this release.
    pub fn embedded() -> &'static ValidityTable {
        static TABLE: OnceLock<ValidityTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            ValidityTable::from_json(EMBEDDED_VALIDITY_JSON).expect("embedded validity table is valid (tested)")
        })
    }

    pub fn from_json(json: &str) -> Result<ValidityTable, String> {
        let t: ValidityTable = serde_json::from_str(json).map_err(|e| format!("validity table: {e}"))?;
        if t.format != FORMAT {
            return Err(format!("validity table: format {:?}, expected {FORMAT:?}", t.format));
        }
        Ok(t)
    }

    /// The measurements of one model and labelling, if they were measured.
    pub fn method(&self, model: &str, labelling: &str) -> Option<&MethodValidity> {
        self.methods
            .iter()
            .find(|m| m.model == model && m.labelling == labelling)
    }
}

impl MethodValidity {
    /// One structure's measurements, by braincharts' name.
    pub fn structure(&self, braincharts_name: &str) -> Option<&StructureValidity> {
        self.structures.get(braincharts_name)
    }
}
