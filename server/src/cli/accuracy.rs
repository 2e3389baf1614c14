//! `neurovol accuracy [--data DIR] [--cases sub-01,sub-02] [--model NAME] [--json OUT]`
//!
//! How far our volumes are from FreeSurfer's, on brains FreeSurfer has processed: each case
//! folder holds FreeSurfer's `mri/T1.mgz` (the conformed, intensity-normalised head),
//! `mri/aseg.mgz` and `stats/aseg.stats`. We segment `T1.mgz` and compare, per structure
//! that both have: Dice against `aseg.mgz`, and the volume ratio and Δz (our z-score minus
//! FreeSurfer's, BrainCharts at a nominal age and sex) against the reference.
//!
//! The reference is `aseg.stats`' `Volume_mm3`: the normative models were fitted to those
//! numbers, which FreeSurfer corrects for partial volume, not to `aseg.mgz`'s voxel counts
//! (both are reported for the transition). Ours are reported as voxel counts and
//! partial-volume corrected, exactly as the product reports them (`volumetry::report`); the
//! method alone is checked by correcting FreeSurfer's own labels as FreeSurfer does
//! (`Correction::FreeSurfer`; FreeSurfer used norm.mgz, which these folders may lack); the
//! brain-mask volume is set beside FreeSurfer's eTIV.
//!
//! Data comes from outside the repository (`NEUROVOL_ACCURACY_DATA`); nothing measured
//! here is a constant of the product.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use norms::{Norms, Sex, Site};
use serde::Serialize;
use volumetry::composite::Composite;
use volumetry::partial_volume::{Correction, partial_volumes};
use volumetry::{ModelId, SegmentOptions};

mod stats;
mod validity_table;

pub use stats::{StatsRow, parse_stats};
use validity_table::{kept_by_shipped_table, write_validity};

#[derive(Debug, clap::Args)]
pub struct AccuracyArgs {
    /// Folder of FreeSurfer subjects (each with mri/T1.mgz, mri/aseg.mgz, stats/aseg.stats).
    #[arg(long, env = "NEUROVOL_ACCURACY_DATA")]
    pub data: PathBuf,
    /// Subjects to compare, comma-separated (default: the development brains sub-01…sub-04).
    #[arg(long, value_delimiter = ',', default_value = "sub-01,sub-02,sub-03,sub-04")]
    pub cases: Vec<String>,
    /// Region model.
    #[arg(long, default_value = volumetry::ModelId::DEFAULT.folder())]
    pub model: String,
    /// The model's labels exactly as upstream draws them (no deep-structure model, no cut
    /// to the brain mask).
    #[arg(long)]
    pub upstream: bool,
    /// Nominal age for the z-scores.
    #[arg(long, default_value_t = 35.0)]
    pub age: f64,
    /// Nominal sex for the z-scores (M or F).
    #[arg(long, default_value = "F")]
    pub sex: String,
    /// Also write every figure as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write (or update, in an existing file) this model and labelling's entry of a validity
    /// table (`norms::validity`): per structure, the mean and SD of Δz and of the ratio.
    #[arg(long)]
    pub validity_out: Option<PathBuf>,
    /// Where the data came from, for the validity table's provenance (repository, commit).
    #[arg(long, default_value = "unnamed")]
    pub source: String,
}

/// One structure of one case.
#[derive(Debug, Clone, Serialize)]
pub struct StructureRow {
    pub structure: String,
    pub dice: f64,
    /// Our voxel count and partial-volume-corrected volume (mm³).
    pub ours_voxels_mm3: f64,
    pub ours_pv_mm3: f64,
    /// FreeSurfer's voxel count (`NVoxels`) and corrected volume (`Volume_mm3`).
    pub fs_voxels_mm3: f64,
    pub fs_stats_mm3: f64,
    /// Ours (corrected) ÷ FreeSurfer's stats volume.
    pub ratio: f64,
    /// Ours (voxel count) ÷ FreeSurfer's stats volume: before the correction.
    pub ratio_uncorrected: f64,
    /// Ours (voxel count) ÷ FreeSurfer's voxel count: the old reference.
    pub ratio_voxels: f64,
    /// Our z minus FreeSurfer's (stats volume); None without a normative model.
    pub delta_z: Option<f64>,
    pub delta_z_uncorrected: Option<f64>,
    pub delta_z_voxels: Option<f64>,
    /// Corrected ÷ voxel count, ours and FreeSurfer's.
    pub pv_over_voxels_ours: f64,
    pub pv_over_voxels_fs: f64,
    /// Our correction (as FreeSurfer's) on FreeSurfer's own labels ÷ its `Volume_mm3`:
    /// how closely the method alone reproduces FreeSurfer's (1.0 = exactly).
    pub method_fidelity: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    pub case: String,
    pub model: String,
    pub labelling: volumetry::Labelling,
    pub structures: Vec<StructureRow>,
    pub brain_mask_mm3: Option<f64>,
    pub etiv_mm3: Option<f64>,
    pub fs_mask_mm3: Option<f64>,
    pub segment_s: f64,
}

fn dice(ours: &[u8], our_value: u8, theirs: &[f32], their_value: f32) -> f64 {
    overlap(ours, &[our_value], theirs, &[their_value]).dice()
}

/// Voxel counts of two label sets and of their overlap.
struct Overlap {
    both: u64,
    ours: u64,
    theirs: u64,
}

impl Overlap {
    fn dice(&self) -> f64 {
        if self.ours + self.theirs == 0 {
            1.0
        } else {
            2.0 * self.both as f64 / (self.ours + self.theirs) as f64
        }
    }
}

/// The voxels carrying any of our values against those carrying any of theirs.
fn overlap(ours: &[u8], our_values: &[u8], theirs: &[f32], their_values: &[f32]) -> Overlap {
    let mut o = Overlap {
        both: 0,
        ours: 0,
        theirs: 0,
    };
    for (&a, &b) in ours.iter().zip(theirs) {
        let (x, y) = (our_values.contains(&a), their_values.contains(&b));
        o.ours += u64::from(x);
        o.theirs += u64::from(y);
        o.both += u64::from(x && y);
    }
    o
}

/// aseg's labels without a row in `aseg.stats` (FreeSurfer's colour table numbers), which the
/// composites sum.
const ASEG_WITHOUT_STATS_ROW: &[(&str, u32)] = &[
    ("Left-Cerebral-White-Matter", 2),
    ("Left-Cerebral-Cortex", 3),
    ("Right-Cerebral-White-Matter", 41),
    ("Right-Cerebral-Cortex", 42),
];

fn z(name: &str, volume: f64, sex: Sex, age: f64) -> Option<f64> {
    Norms::embedded()
        .assess(name, volume, Some(sex), Some(age), &Site::default())
        .z
}

fn one_case(dir: &Path, case: &str, args: &AccuracyArgs, sex: Sex, assets: &Path) -> Result<CaseReport, String> {
    let read = |p: &str| {
        let path = dir.join(p);
        volumetry::mgh::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let t1 = read("mri/T1.mgz")?;
    let aseg = read("mri/aseg.mgz")?;
    if aseg.dims != t1.dims {
        return Err(format!("{case}: aseg.mgz and T1.mgz have different grids"));
    }
    let stats_path = dir.join("stats/aseg.stats");
    let stats =
        std::fs::read_to_string(&stats_path).map_err(|e| format!("cannot read {}: {e}", stats_path.display()))?;
    let (rows, measures) = parse_stats(&stats);
    let model = ModelId::parse(&args.model).map_err(|e| e.to_string())?;
    let opts = SegmentOptions {
        model,
        labelling: super::segment::labelling(args.upstream),
        ..SegmentOptions::default()
    };
    let seg = volumetry::segment(&t1, assets, &opts).map_err(|e| e.to_string())?;
    let labelling = seg.labelling;
    let labels = &seg.labels_native;
    let voxel_mm3 = t1.header.voxel_volume_mm3();
    // our volumes exactly as the product reports them (corrected, and the voxel count)
    let report = volumetry::report(&seg);
    let ours: BTreeMap<&str, &volumetry::volumes::RegionVolume> =
        report.regions.iter().map(|r| (r.name.as_str(), r)).collect();
    // FreeSurfer's labels as compact values (aseg's ids reach 255; the structures compared
    // are among them), corrected as FreeSurfer corrects them
    let mut compact: BTreeMap<u32, u8> = BTreeMap::new();
    let fs_labels: Vec<u8> = aseg
        .data
        .iter()
        .map(|&v| {
            let next = u8::try_from(compact.len()).unwrap_or(u8::MAX);
            *compact.entry(v as u32).or_insert(next)
        })
        .collect();
    let fs_pv = partial_volumes(&fs_labels, &t1.data, t1.dims, Correction::FreeSurfer);
    let structures = rows
        .iter()
        .filter(|r| r.voxels > 0.0)
        .filter_map(|r| {
            let region = ours.get(r.name.as_str())?;
            let (ours_voxels_mm3, ours_pv_mm3) = (region.counted_mm3, region.volume_mm3);
            let fs_voxels_mm3 = r.voxels * voxel_mm3;
            let dz = |a: f64, b: f64| Some(z(&r.name, a, sex, args.age)? - z(&r.name, b, sex, args.age)?);
            Some(StructureRow {
                structure: r.name.clone(),
                dice: dice(&labels.data, region.label, &aseg.data, r.seg_id as f32),
                ours_voxels_mm3,
                ours_pv_mm3,
                fs_voxels_mm3,
                fs_stats_mm3: r.volume_mm3,
                ratio: ours_pv_mm3 / r.volume_mm3,
                ratio_uncorrected: ours_voxels_mm3 / r.volume_mm3,
                ratio_voxels: ours_voxels_mm3 / fs_voxels_mm3,
                delta_z: dz(ours_pv_mm3, r.volume_mm3),
                delta_z_uncorrected: dz(ours_voxels_mm3, r.volume_mm3),
                delta_z_voxels: dz(ours_voxels_mm3, fs_voxels_mm3),
                pv_over_voxels_ours: ours_pv_mm3 / ours_voxels_mm3.max(f64::MIN_POSITIVE),
                pv_over_voxels_fs: r.volume_mm3 / fs_voxels_mm3,
                method_fidelity: compact
                    .get(&r.seg_id)
                    .map_or(f64::NAN, |&k| fs_pv.of(k) * voxel_mm3 / r.volume_mm3),
            })
        })
        .collect::<Vec<_>>();
    let composites = composite_rows(&report, &labels.data, &aseg.data, &rows, &measures, |name, a, b| {
        Some(z(name, a, sex, args.age)? - z(name, b, sex, args.age)?)
    });
    let brain_mask_mm3 = seg
        .brain_mask
        .as_ref()
        .map(|m| m.data.iter().filter(|&&v| v > 0).count() as f64 * m.header.voxel_volume_mm3());
    Ok(CaseReport {
        case: case.to_string(),
        model: seg.model.clone(),
        structures: structures.into_iter().chain(composites).collect(),
        brain_mask_mm3,
        labelling,
        etiv_mm3: measures.get("eTIV").copied(),
        fs_mask_mm3: measures.get("MaskVol").copied(),
        segment_s: seg.timings.total_s,
    })
}

/// The composites (FreeSurfer's sums of labels) against `aseg.stats`' measures of the same
/// name: Dice of the union of their parts; neither side is partial-volume corrected, so the
/// corrected and uncorrected figures are one, and the "method" column is how closely the
/// voxel count of FreeSurfer's own labels comes to its measure.
fn composite_rows(
    report: &volumetry::VolumeReport,
    ours: &[u8],
    aseg: &[f32],
    rows: &[StatsRow],
    measures: &BTreeMap<String, f64>,
    delta_z: impl Fn(&str, f64, f64) -> Option<f64>,
) -> Vec<StructureRow> {
    report
        .composites
        .iter()
        .filter_map(|c| {
            let composite = Composite::named(&c.name)?;
            let fs = *measures.get(&c.name)?;
            let our_labels: Vec<u8> = report
                .regions
                .iter()
                .filter(|r| composite.includes(&r.name))
                .map(|r| r.label)
                .collect();
            let fs_ids: Vec<f32> = rows
                .iter()
                .map(|r| (r.name.as_str(), r.seg_id))
                .chain(ASEG_WITHOUT_STATS_ROW.iter().copied())
                .filter(|(name, _)| composite.includes(name))
                .map(|(_, id)| id as f32)
                .collect();
            let o = overlap(ours, &our_labels, aseg, &fs_ids);
            let fs_voxels_mm3 = o.theirs as f64 * report.voxel_mm3;
            let dz = delta_z(&c.name, c.volume_mm3, fs);
            Some(StructureRow {
                structure: c.name.clone(),
                dice: o.dice(),
                ours_voxels_mm3: c.volume_mm3,
                ours_pv_mm3: c.volume_mm3,
                fs_voxels_mm3,
                fs_stats_mm3: fs,
                ratio: c.volume_mm3 / fs,
                ratio_uncorrected: c.volume_mm3 / fs,
                ratio_voxels: c.volume_mm3 / fs_voxels_mm3,
                delta_z: dz,
                delta_z_uncorrected: dz,
                delta_z_voxels: delta_z(&c.name, c.volume_mm3, fs_voxels_mm3),
                pv_over_voxels_ours: 1.0,
                pv_over_voxels_fs: 1.0,
                method_fidelity: fs_voxels_mm3 / fs,
            })
        })
        .collect()
}

/// Across cases, per structure: (mean, SD) of a figure.
fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub cases: usize,
    /// Mean |mean Δz| over the normed structures (corrected vs stats; voxels vs voxels).
    pub mean_abs_delta_z: f64,
    pub mean_abs_delta_z_voxels: f64,
    /// The same before the correction (our voxel count against the stats volume).
    pub mean_abs_delta_z_uncorrected: f64,
    /// Mean Dice over the subcortical structures both have (not cortex, white matter, CSF).
    pub subcortical_dice: f64,
    pub brain_stem_ratios: Vec<f64>,
    /// Brain mask ÷ eTIV per case.
    pub mask_over_etiv: Vec<f64>,
}

fn is_subcortical(name: &str) -> bool {
    // a composite's Dice (of a union) is not one structure's
    !(name.contains("Cortex")
        || name.contains("White-Matter")
        || name == "CSF"
        || name.contains("vessel")
        || Composite::named(name).is_some())
}

pub fn run(args: &AccuracyArgs, assets: &Path) -> Result<String, String> {
    let sex = Sex::from_code(&args.sex).ok_or_else(|| format!("--sex must be M or F, not {:?}", args.sex))?;
    let mut reports = Vec::new();
    for case in &args.cases {
        let dir = args.data.join(case);
        eprintln!("{case}: segmenting {}", dir.join("mri/T1.mgz").display());
        reports.push(one_case(&dir, case, args, sex, assets)?);
    }
    let mut by_structure: BTreeMap<String, Vec<&StructureRow>> = BTreeMap::new();
    for r in &reports {
        for s in &r.structures {
            by_structure.entry(s.structure.clone()).or_default().push(s);
        }
    }
    let mut out = format!(
        "{} on {} ({}), z at age {} {}: ours (partial-volume corrected) against aseg.stats Volume_mm3; \
         before = our voxel count against Volume_mm3; [voxels] = our voxel count against aseg.mgz's; \
         method = our correction (FreeSurfer's) on FreeSurfer's labels ÷ Volume_mm3\n\
         {:<30} {:>6} {:>14} {:>8} {:>13} {:>8} {:>16} {:>8} {:>11} {:>11} {:>8}\n",
        reports.first().map_or("", |r| r.model.as_str()),
        reports.len(),
        args.cases.join(", "),
        args.age,
        args.sex,
        "structure",
        "Dice",
        "ratio",
        "Δz",
        "before ratio",
        "Δz",
        "[voxels] ratio",
        "Δz",
        "PV/vox us",
        "PV/vox FS",
        "method"
    );
    let (mut abs_dz, mut abs_dz_vox, mut abs_dz_before, mut dice_sub) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (name, rows) in &by_structure {
        let col = |f: fn(&StructureRow) -> f64| mean_sd(&rows.iter().map(|r| f(r)).collect::<Vec<_>>());
        let dz: Vec<f64> = rows.iter().filter_map(|r| r.delta_z).collect();
        let dzv: Vec<f64> = rows.iter().filter_map(|r| r.delta_z_voxels).collect();
        let dzb: Vec<f64> = rows.iter().filter_map(|r| r.delta_z_uncorrected).collect();
        let (ratio_b, _) = col(|r| r.ratio_uncorrected);
        let (ratio, ratio_sd) = col(|r| r.ratio);
        let (ratio_v, _) = col(|r| r.ratio_voxels);
        let (dice, _) = col(|r| r.dice);
        let show = |xs: &[f64]| {
            if xs.is_empty() {
                "—".to_string()
            } else {
                format!("{:+.2}", mean_sd(xs).0)
            }
        };
        if !dz.is_empty() {
            abs_dz.push(mean_sd(&dz).0.abs());
            abs_dz_vox.push(mean_sd(&dzv).0.abs());
            abs_dz_before.push(mean_sd(&dzb).0.abs());
        }
        if is_subcortical(name) {
            dice_sub.push(dice);
        }
        out.push_str(&format!(
            "{name:<30} {dice:>6.2} {:>14} {:>8} {:>13.2} {:>8} {:>16.2} {:>8} {:>11.3} {:>11.3} {:>8.3}\n",
            format!("{ratio:.2} ± {ratio_sd:.2}"),
            show(&dz),
            ratio_b,
            show(&dzb),
            ratio_v,
            show(&dzv),
            col(|r| r.pv_over_voxels_ours).0,
            col(|r| r.pv_over_voxels_fs).0,
            col(|r| r.method_fidelity).0,
        ));
    }
    let summary = Summary {
        cases: reports.len(),
        mean_abs_delta_z: mean_sd(&abs_dz).0,
        mean_abs_delta_z_voxels: mean_sd(&abs_dz_vox).0,
        mean_abs_delta_z_uncorrected: mean_sd(&abs_dz_before).0,
        subcortical_dice: mean_sd(&dice_sub).0,
        brain_stem_ratios: reports
            .iter()
            .flat_map(|r| {
                r.structures
                    .iter()
                    .filter(|s| s.structure == "Brain-Stem")
                    .map(|s| s.ratio)
            })
            .collect(),
        mask_over_etiv: reports
            .iter()
            .filter_map(|r| Some(r.brain_mask_mm3? / r.etiv_mm3?))
            .collect(),
    };
    out.push_str(&kept_by_shipped_table(&reports, &by_structure));
    let list = |xs: &[f64]| xs.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    out.push_str(&format!(
        "summary: mean |Δz| {:.2} over {} normed structures (before the correction {:.2}; voxels against voxels {:.2}); subcortical Dice {:.3}; \
         brain stem ratio per case [{}]; brain mask ÷ eTIV per case [{}]; segmentation {:.0} s per case\n",
        summary.mean_abs_delta_z,
        abs_dz.len(),
        summary.mean_abs_delta_z_uncorrected,
        summary.mean_abs_delta_z_voxels,
        summary.subcortical_dice,
        list(&summary.brain_stem_ratios),
        list(&summary.mask_over_etiv),
        mean_sd(&reports.iter().map(|r| r.segment_s).collect::<Vec<_>>()).0,
    ));
    if let Some(path) = &args.validity_out {
        write_validity(path, args, &reports, &by_structure)?;
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({ "cases": reports, "summary": summary });
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_of_overlapping_masks() {
        let ours = [1u8, 1, 0, 0];
        let theirs = [17.0f32, 0.0, 17.0, 0.0];
        assert_eq!(dice(&ours, 1, &theirs, 17.0), 0.5);
    }
}
