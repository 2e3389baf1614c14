//! Per-region volumes, asymmetry and quality signals (serde types), and the
//! `volumes.json` shape the CLI writes.

use serde::{Deserialize, Serialize};

use crate::Segmentation;
use crate::composite::{Composite, CompositeVolume, composite_volumes};
use crate::post::per_label_components;

/// Which voxel grid the volumes were counted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grid {
    /// The 256³ 1 mm LIA conformed grid the model ran on (1 voxel = 1 mm³), as upstream reports.
    Conformed1mm,
    /// The input's own grid (labels resliced nearest-neighbour), voxels × native voxel volume.
    Native,
}

impl Grid {
    pub fn as_str(self) -> &'static str {
        match self {
            Grid::Conformed1mm => "conformed_1mm",
            Grid::Native => "native",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionVolume {
    pub label: u8,
    /// FreeSurfer-style name (upstream colormap name, trailing '*' removed).
    pub name: String,
    pub voxels: u64,
    /// Partial-volume corrected (on the conformed grid), what percentiles are computed on;
    /// the voxel count's volume on a grid without intensities.
    pub volume_mm3: f64,
    /// Voxel count × voxel volume (what upstream reports).
    pub counted_mm3: f64,
    /// Voxels in this label's largest 26-connected piece / all its voxels (1.0 = one piece).
    pub largest_component_fraction: f64,
}

/// Left/right asymmetry of one bilateral structure: (L − R) / ((L + R) / 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Asymmetry {
    /// Name without the side (e.g. "Hippocampus", "ctx-bankssts").
    pub structure: String,
    pub left_mm3: f64,
    pub right_mm3: f64,
    pub index: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityFlag {
    /// Stable machine code, e.g. "missing_region", "fragmented", "icv_implausible".
    pub code: String,
    pub region: Option<String>,
    /// One-line human reason.
    pub message: String,
}

impl QualityFlag {
    /// Whether the flag concerns this region: it names it, or (asymmetry) names the
    /// structure both sides share ("Hippocampus" for "Left-Hippocampus").
    /// A composite ([`crate::composite`]) is concerned by every flag on one of its parts.
    pub fn concerns(&self, region: &str) -> bool {
        let Some(flagged) = self.region.as_deref() else {
            return false;
        };
        if let Some(c) = Composite::named(region) {
            return flagged == region || c.includes(flagged) || c.sums_structure(flagged);
        }
        let structure = side_of(region).map(|(_, s)| s);
        flagged == region || structure.as_deref() == Some(flagged)
    }
}

/// How far a segmentation can be trusted, from its quality flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grade {
    /// No flag: every percentile the method supports is reported.
    A,
    /// A flag about some regions or the input (fragmented, asymmetric or missing regions,
    /// labels partly outside the brain, coarse voxels): percentiles are reported, the
    /// flagged regions' withheld, and the reasons shown.
    B,
    /// A flag about the whole segmentation ([`WHOLE_SEGMENTATION_FLAGS`]): every percentile
    /// is withheld.
    C,
}

impl Grade {
    /// The grade the flags give (the one rule; a caller may only lower it further).
    pub fn of_flags(flags: &[QualityFlag]) -> Grade {
        if flags
            .iter()
            .any(|f| WHOLE_SEGMENTATION_FLAGS.contains(&f.code.as_str()))
        {
            Grade::C
        } else if flags.is_empty() {
            Grade::A
        } else {
            Grade::B
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
        }
    }
}

/// Flags that concern the whole segmentation: grade C.
pub const WHOLE_SEGMENTATION_FLAGS: &[&str] = &[
    QUALITY_UNCHECKED,
    "too_little_labelled",
    "labels_outside_mask",
    "icv_implausible",
    "many_fragmented",
    "many_missing",
    "brain_poorly_labelled",
];

/// The flag of a `volumes.json` without quality signals: what was never checked is not
/// vouched for (grade C).
pub const QUALITY_UNCHECKED: &str = "quality_unchecked";

/// More regions than this without a voxel: the image does not hold a whole brain (a whole
/// brain, the reference's and the development brains', labels every region).
pub const MANY_MISSING: usize = 3;

/// More deep structures than this fragmented: the segmentation as a whole is suspect.
pub const MANY_FRAGMENTED: usize = 2;

/// Labelled voxels inside the brain mask below this fraction: grade B (below 0.9: C). The
/// development brains reach 0.95–0.98.
pub const PARTLY_OUTSIDE_MASK_BELOW: f64 = 0.93;

/// Of the brain mask, less than this fraction labelled: the labels miss much of the brain
/// (grade C). The development brains reach 0.77–0.82 (the mask also holds the CSF around
/// the brain, which carries no label).
pub const MASK_LABELLED_BELOW: f64 = 0.6;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Fraction of brain-mask voxels that carry a non-zero region label (None without a mask).
    pub mask_fraction_labelled: Option<f64>,
    /// Fraction of labelled voxels that lie inside the brain mask (None without a mask).
    pub labelled_fraction_in_mask: Option<f64>,
    pub flags: Vec<QualityFlag>,
    /// True when no flag was raised (grade A; a grade B segmentation is scored too, less
    /// its flagged regions).
    pub ok: bool,
    /// [`Grade::of_flags`] (absent in files written before grades).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<Grade>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeReport {
    pub model: String,
    /// How the labels were drawn (upstream, or refined towards FreeSurfer's).
    pub labelling: crate::Labelling,
    /// The engine (and, for the GPU one, the adapter) that ran the models.
    pub engine: String,
    pub grid: Grid,
    pub voxel_mm3: f64,
    /// Brain-mask (mindgrab) volume, used as the intracranial-volume proxy; None if no mask was run.
    pub icv_mm3: Option<f64>,
    pub total_labelled_mm3: f64,
    /// Every non-background label of the model, including those with zero voxels.
    pub regions: Vec<RegionVolume>,
    /// FreeSurfer's sums of labels the model allows ([`crate::composite::COMPOSITES`]).
    pub composites: Vec<CompositeVolume>,
    pub asymmetry: Vec<Asymmetry>,
    pub quality: Quality,
}

/// `volumes.json` as the CLI writes it; `percentile` is filled by the caller (norms crate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumesJson {
    pub model: String,
    /// How the labels were drawn (files written before refined labels are upstream).
    #[serde(default = "upstream")]
    pub labelling: crate::Labelling,
    /// Which engine ran the models, e.g. "cpu-avx2" or "gpu-wgpu: NVIDIA H100 … (DiscreteGpu,
    /// Vulkan)" (absent in files written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    pub grid: String,
    pub icv_mm3: Option<f64>,
    pub regions: Vec<VolumesJsonRegion>,
    /// Left/right asymmetry indices (absent in files written before they were added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asymmetry: Vec<Asymmetry>,
    /// Quality signals, so the scorer can flag instead of score a bad segmentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// The site calibration the percentiles were computed with, in words (set by the caller
    /// that fills percentiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumesJsonRegion {
    /// The label's value in the labels volume; 0 for a composite, a sum of labels
    /// ([`crate::composite`]).
    pub label: u8,
    pub name: String,
    /// Partial-volume corrected: the volume percentiles are computed on.
    pub volume_mm3: f64,
    /// The voxel count's volume (absent in files written before corrected volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_mm3: Option<f64>,
    pub percentile: Option<f64>,
    /// The percentiles one SD of uncertainty below and above (set with the percentile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile_band: Option<[f64; 2]>,
    /// Why there is no percentile: a code and the reason in words (set by the caller that
    /// fills percentiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_percentile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_percentile_reason: Option<String>,
}

impl VolumesJson {
    /// The quality flags; for a file without quality signals, the one flag saying so.
    pub fn quality_flags(&self) -> std::borrow::Cow<'_, [QualityFlag]> {
        match &self.quality {
            Some(q) => std::borrow::Cow::Borrowed(&q.flags),
            None => std::borrow::Cow::Owned(vec![QualityFlag {
                code: QUALITY_UNCHECKED.into(),
                region: None,
                message: "The segmentation's quality was not checked: no percentiles.".into(),
            }]),
        }
    }
}

fn upstream() -> crate::Labelling {
    crate::Labelling::Upstream
}

/// FreeSurfer-style display name: upstream's trailing '*' (thalamus) removed.
pub fn clean_name(s: &str) -> String {
    s.trim_end_matches('*').to_string()
}

/// Split a lateralised name into (side, structure): "Left-X" / "ctx-lh-X" → ('L', "X" /
/// "ctx-X"). The one pairing of left and right (volumes.json's asymmetry, the scan page).
pub fn side_of(name: &str) -> Option<(char, String)> {
    if let Some(r) = name.strip_prefix("Left-") {
        Some(('L', r.to_string()))
    } else if let Some(r) = name.strip_prefix("Right-") {
        Some(('R', r.to_string()))
    } else if let Some(r) = name.strip_prefix("ctx-lh-") {
        Some(('L', format!("ctx-{r}")))
    } else {
        name.strip_prefix("ctx-rh-").map(|r| ('R', format!("ctx-{r}")))
    }
}

/// A deep structure whose largest piece holds less than this fraction of it is flagged.
/// (On the reference scan every deep structure is ≥ 0.9; model21_104class's cortical parcels
/// go down to 0.29, hence they are exempt.)
pub const FRAGMENTED_BELOW: f64 = 0.5;
/// |asymmetry index| above which a pair is flagged: 1.0 = one side three times the other.
/// The default model itself reaches 0.8 (cuneus) and 0.72 (pallidum) on the reference
/// scan, so lower thresholds would flag normal results.
pub const ASYMMETRY_ABOVE: f64 = 1.0;

/// Plausible brain-mask volume range for an adult or child head (mm³).
const ICV_RANGE: (f64, f64) = (700_000.0, 2_300_000.0);

/// Volumes on the conformed grid (1 mm³ voxels), as upstream reports them.
pub fn report(seg: &Segmentation) -> VolumeReport {
    report_on(seg, Grid::Conformed1mm)
}

/// Volumes counted on the chosen grid.
pub fn report_on(seg: &Segmentation, grid: Grid) -> VolumeReport {
    let lab = match grid {
        Grid::Conformed1mm => &seg.labels,
        Grid::Native => &seg.labels_native,
    };
    let voxel_mm3 = lab.header.voxel_volume_mm3();
    let comps = per_label_components(&lab.data, lab.dims);
    let mut regions = Vec::new();
    let mut flags = Vec::new();
    for (v, name) in seg.label_names.iter().enumerate().skip(1) {
        let (n, largest) = comps[v];
        let name = clean_name(name);
        let frac = if n > 0 { largest as f64 / n as f64 } else { 0.0 };
        if n == 0 {
            flags.push(QualityFlag {
                code: "missing_region".into(),
                region: Some(name.clone()),
                message: format!("{name} has no voxels"),
            });
        } else if !name.starts_with("ctx-") && frac < FRAGMENTED_BELOW && n as f64 * voxel_mm3 > 1000.0 {
            // cortical parcels are thin ribbons and legitimately split; deep structures are not
            flags.push(QualityFlag {
                code: "fragmented".into(),
                region: Some(name.clone()),
                message: format!(
                    "{name} is fragmented: its largest piece holds {:.0} % of its voxels",
                    frac * 100.0
                ),
            });
        }
        let counted_mm3 = n as f64 * voxel_mm3;
        let corrected = match grid {
            Grid::Conformed1mm => seg.corrected_voxels.get(v).map(|c| c * voxel_mm3),
            // no intensities on the input's grid: the count stands
            Grid::Native => None,
        };
        regions.push(RegionVolume {
            label: v as u8,
            name,
            voxels: n as u64,
            volume_mm3: corrected.unwrap_or(counted_mm3),
            counted_mm3,
            largest_component_fraction: frac,
        });
    }
    let total = regions.iter().map(|r| r.volume_mm3).sum::<f64>();
    let mut asymmetry = Vec::new();
    for l in &regions {
        let Some(('L', s)) = side_of(&l.name) else {
            continue;
        };
        let Some(r) = regions.iter().find(|r| side_of(&r.name) == Some(('R', s.clone()))) else {
            continue;
        };
        let m = (l.volume_mm3 + r.volume_mm3) / 2.0;
        let index = if m > 0.0 {
            (l.volume_mm3 - r.volume_mm3) / m
        } else {
            0.0
        };
        if index.abs() > ASYMMETRY_ABOVE && m > 1000.0 {
            flags.push(QualityFlag {
                code: "asymmetric".into(),
                region: Some(s.clone()),
                message: format!("{s} differs by {:.0} % between left and right", index.abs() * 100.0),
            });
        }
        asymmetry.push(Asymmetry {
            structure: s,
            left_mm3: l.volume_mm3,
            right_mm3: r.volume_mm3,
            index,
        });
    }
    let (mut mask_frac, mut in_mask, mut icv) = (None, None, None);
    if let Some(mask) = &seg.brain_mask {
        // the mask lives on the conformed grid; compare there
        let nm = mask.data.iter().filter(|&&m| m != 0).count();
        let both = mask
            .data
            .iter()
            .zip(&seg.labels.data)
            .filter(|&(&m, &l)| m != 0 && l != 0)
            .count();
        let nl = seg.labels.data.iter().filter(|&&l| l != 0).count();
        mask_frac = Some(if nm > 0 { both as f64 / nm as f64 } else { 0.0 });
        in_mask = Some(match seg.labelled_fraction_in_mask {
            // refined labels are cut to the mask: what counts is how much was cut
            Some(f) => f,
            None if nl > 0 => both as f64 / nl as f64,
            None => 0.0,
        });
        let v = nm as f64 * mask.header.voxel_volume_mm3();
        icv = Some(v);
        if !(ICV_RANGE.0..=ICV_RANGE.1).contains(&v) {
            flags.push(QualityFlag {
                code: "icv_implausible".into(),
                region: None,
                message: format!(
                    "brain mask volume {:.0} cm³ is outside the plausible {:.0}–{:.0} cm³",
                    v / 1000.0,
                    ICV_RANGE.0 / 1000.0,
                    ICV_RANGE.1 / 1000.0
                ),
            });
        }
        let inside = in_mask.unwrap_or(1.0);
        if inside < 0.9 {
            flags.push(QualityFlag {
                code: "labels_outside_mask".into(),
                region: None,
                message: "more than 10 % of labelled voxels lie outside the brain mask".into(),
            });
        } else if inside < PARTLY_OUTSIDE_MASK_BELOW {
            flags.push(QualityFlag {
                code: "labels_partly_outside_mask".into(),
                region: None,
                message: format!(
                    "{:.0} % of labelled voxels lay outside the brain mask",
                    (1.0 - inside) * 100.0
                ),
            });
        }
        if mask_frac.is_some_and(|f| f < MASK_LABELLED_BELOW) {
            flags.push(QualityFlag {
                code: "brain_poorly_labelled".into(),
                region: None,
                message: format!(
                    "only {:.0} % of the brain mask carries a region label",
                    mask_frac.unwrap_or(0.0) * 100.0
                ),
            });
        }
    }
    let missing = flags.iter().filter(|f| f.code == "missing_region").count();
    if missing > MANY_MISSING {
        flags.push(QualityFlag {
            code: "many_missing".into(),
            region: None,
            message: format!("{missing} regions are missing entirely: the image does not seem to hold a whole brain"),
        });
    }
    let fragmented = flags.iter().filter(|f| f.code == "fragmented").count();
    if fragmented > MANY_FRAGMENTED {
        flags.push(QualityFlag {
            code: "many_fragmented".into(),
            region: None,
            message: format!("{fragmented} deep structures are in pieces"),
        });
    }
    if total < 100_000.0 {
        flags.push(QualityFlag {
            code: "too_little_labelled".into(),
            region: None,
            message: format!("only {:.0} cm³ labelled: probably not a brain T1", total / 1000.0),
        });
    }
    let ok = flags.is_empty();
    let grade = Some(Grade::of_flags(&flags));
    let composites = composite_volumes(&regions);
    VolumeReport {
        model: seg.model.clone(),
        labelling: seg.labelling,
        engine: seg.engine.clone(),
        grid,
        voxel_mm3,
        icv_mm3: icv,
        total_labelled_mm3: total,
        regions,
        composites,
        asymmetry,
        quality: Quality {
            mask_fraction_labelled: mask_frac,
            labelled_fraction_in_mask: in_mask,
            flags,
            ok,
            grade,
        },
    }
}

/// The label value of a composite's row in `volumes.json`: it has no voxels of its own.
pub const COMPOSITE_LABEL: u8 = 0;

/// The CLI's `volumes.json` (percentiles left `None` for the caller to fill): the regions,
/// then the composites.
pub fn volumes_json(r: &VolumeReport) -> VolumesJson {
    VolumesJson {
        model: r.model.clone(),
        labelling: r.labelling,
        engine: Some(r.engine.clone()),
        grid: r.grid.as_str().to_string(),
        icv_mm3: r.icv_mm3,
        regions: r
            .regions
            .iter()
            .map(|g| VolumesJsonRegion {
                label: g.label,
                name: g.name.clone(),
                volume_mm3: g.volume_mm3,
                counted_mm3: Some(g.counted_mm3),
                percentile: None,
                percentile_band: None,
                no_percentile: None,
                no_percentile_reason: None,
            })
            .chain(r.composites.iter().map(|c| VolumesJsonRegion {
                label: COMPOSITE_LABEL,
                name: c.name.clone(),
                volume_mm3: c.volume_mm3,
                counted_mm3: Some(c.volume_mm3),
                percentile: None,
                percentile_band: None,
                no_percentile: None,
                no_percentile_reason: None,
            }))
            .collect(),
        asymmetry: r.asymmetry.clone(),
        quality: Some(r.quality.clone()),
        calibration: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nifti::{Header, Volume};

    #[test]
    fn an_asymmetry_flag_concerns_both_sides() {
        let flag = |region: &str| QualityFlag {
            code: "asymmetric".into(),
            region: Some(region.into()),
            message: String::new(),
        };
        assert!(flag("Hippocampus").concerns("Left-Hippocampus"));
        assert!(flag("Hippocampus").concerns("Right-Hippocampus"));
        assert!(flag("ctx-cuneus").concerns("ctx-rh-cuneus"));
        assert!(!flag("Hippocampus").concerns("Left-Amygdala"));
        assert!(flag("Left-Putamen").concerns("Left-Putamen"));
        assert!(!flag("Left-Putamen").concerns("Right-Putamen"));
        // the deep grey sum is concerned by any flag on its parts, and only those
        assert!(flag("Left-Putamen").concerns("SubCortGrayVol"));
        assert!(flag("Thalamus-Proper").concerns("SubCortGrayVol"));
        assert!(!flag("Left-Lateral-Ventricle").concerns("SubCortGrayVol"));
        assert!(!flag("SubCortGrayVol").concerns("Left-Putamen"));
    }

    #[test]
    fn report_volumes_asymmetry_and_flags() {
        let dims = [10, 10, 10];
        let mut h = Header::default();
        h.set_affine(&[[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], 1);
        let mut data = vec![0u8; 1000];
        // label 1 (left): 30 voxels in one piece; label 2 (right): 20 voxels; label 3 absent
        for v in data.iter_mut().take(30) {
            *v = 1;
        }
        for v in data.iter_mut().skip(500).take(20) {
            *v = 2;
        }
        let labels = Volume { dims, data, header: h };
        let seg = Segmentation {
            model: "m".into(),
            labelling: crate::Labelling::Upstream,
            labelled_fraction_in_mask: None,
            label_names: vec![
                "BG".into(),
                "Left-Thalamus-Proper*".into(),
                "Right-Thalamus-Proper*".into(),
                "CSF".into(),
            ],
            labels_native: labels.clone(),
            labels,
            corrected_voxels: Vec::new(),
            brain_mask: None,
            engine: "test".into(),
            timings: Default::default(),
        };
        let r = report(&seg);
        assert_eq!(r.voxel_mm3, 2.0);
        assert_eq!(r.regions.len(), 3);
        assert_eq!(r.regions[0].name, "Left-Thalamus-Proper");
        assert_eq!(r.regions[0].volume_mm3, 60.0);
        assert_eq!(r.regions[0].largest_component_fraction, 1.0);
        assert_eq!(r.asymmetry.len(), 1);
        assert_eq!(r.asymmetry[0].structure, "Thalamus-Proper");
        assert!((r.asymmetry[0].index - (60.0 - 40.0) / 50.0).abs() < 1e-12);
        assert!(
            r.quality
                .flags
                .iter()
                .any(|f| f.code == "missing_region" && f.region.as_deref() == Some("CSF"))
        );
        assert!(r.quality.flags.iter().any(|f| f.code == "too_little_labelled"));
        assert!(!r.quality.ok);
        let j = volumes_json(&r);
        let s = serde_json::to_value(&j).unwrap();
        assert_eq!(s["grid"], "conformed_1mm");
        assert!(s["regions"][0]["percentile"].is_null());
        assert!(s["icv_mm3"].is_null());
    }
}
