//! `neurovol segment INPUT.nii.gz --out labels.nii.gz --volumes volumes.json
//!  [--model NAME] [--engine cpu|gpu] [--age YEARS --sex M|F]`
//!
//! Segments one NIfTI with MeshNet on this machine's CPU (or, with `--engine gpu`, its
//! Vulkan GPU through wgpu), writes the native-grid label
//! NIfTI and `volumes.json`, and fills each region's percentile from the normative model
//! when age and sex are given. Outputs appear only when everything succeeded.

use std::path::{Path, PathBuf};

use gpu_engine::EngineKind;
use norms::{Sex, Site};
use volumetry::{ModelId, SegmentOptions, VolumesJson};

#[derive(Debug, clap::Args)]
pub struct SegmentArgs {
    /// A single 3D NIfTI (.nii or .nii.gz).
    pub input: PathBuf,
    /// Label NIfTI to write (on the input's grid).
    #[arg(long)]
    pub out: PathBuf,
    /// Region volumes to write as JSON.
    #[arg(long)]
    pub volumes: PathBuf,
    /// model21_104class (default), model18cls, model30chan50cls or mindgrab.
    #[arg(long, default_value = volumetry::ModelId::DEFAULT.folder())]
    pub model: String,
    /// Inference engine: cpu (default) or gpu (wgpu on the best Vulkan adapter; an error,
    /// never a silent fall-back, when there is none).
    #[arg(long, default_value = "cpu", value_parser = EngineKind::parse)]
    pub engine: EngineKind,
    /// Age in years at the scan (for percentiles).
    #[arg(long)]
    pub age: Option<f64>,
    /// M or F (for percentiles).
    #[arg(long)]
    pub sex: Option<String>,
    /// The model's labels exactly as upstream draws them (no deep-structure model, no cut
    /// to the brain mask).
    #[arg(long)]
    pub upstream: bool,
    /// Normalise intensities as measured on this NIfTI (the head INPUT was defaced from),
    /// as the pipeline segments a defaced volume.
    #[arg(long)]
    pub intensity_from: Option<PathBuf>,
}

/// The labelling a command's `--upstream` flag asks for.
pub fn labelling(upstream: bool) -> volumetry::Labelling {
    if upstream {
        volumetry::Labelling::Upstream
    } else {
        volumetry::Labelling::Refined
    }
}

/// Fills each region's percentile and band, or the reason it has none, with the scorer's
/// rules (`pipeline::score`: validity table, quality grade) and the given site calibration.
pub fn fill_percentiles(vj: &mut VolumesJson, sex: Option<Sex>, age: Option<f64>, site: &Site) {
    // the flags decide, as for the scorer (files written before grades have none stored)
    let flags = vj.quality_flags();
    let whole_failed = volumetry::Grade::of_flags(&flags) == volumetry::Grade::C;
    let (site, not_applied) = crate::pipeline::score::site_for(vj, site);
    let scored = crate::pipeline::score::score_regions(vj, sex, age, site, whole_failed);
    for (region, s) in vj.regions.iter_mut().zip(scored) {
        region.percentile = s.percentile;
        region.percentile_band = s.percentile_band;
        region.no_percentile = s.no_percentile;
        region.no_percentile_reason = s.no_percentile_reason;
    }
    let used = norms::calibration::describe(site);
    vj.calibration = Some(match not_applied {
        Some(note) => format!("{used} ({})", note.message),
        None => used,
    });
}

/// What a finished `neurovol segment` reports.
pub struct Segmented {
    pub report: volumetry::VolumeReport,
    pub timings: volumetry::Timings,
}

impl Segmented {
    /// The one line printed on success: model, engine, regions and where the time went.
    pub fn summary(&self) -> String {
        let (r, t) = (&self.report, &self.timings);
        format!(
            "segmented with {} ({} labels) on {}: {} regions, grade {} (conform {:.2} s, model {:.2} s, deep-structure model {:.2} s, brain mask {:.2} s, partial volume {:.2} s, total {:.2} s)",
            r.model,
            r.labelling.as_str(),
            r.engine,
            r.regions.len(),
            r.quality.grade.map_or("—", |g| g.as_str()),
            t.conform_s,
            t.model_s,
            t.deep_model_s,
            t.mask_s,
            t.partial_volume_s,
            t.total_s
        )
    }
}

pub fn run(args: &SegmentArgs, assets: &Path, site: &Site) -> Result<Segmented, String> {
    let model = ModelId::parse(&args.model).map_err(|e| e.to_string())?;
    let sex = match args.sex.as_deref() {
        None => None,
        Some(code) => Some(Sex::from_code(code).ok_or_else(|| format!("--sex must be M or F, not {code:?}"))?),
    };
    if let Some(age) = args.age
        && !(age.is_finite() && (0.0..=130.0).contains(&age))
    {
        return Err(format!("--age must be a number of years between 0 and 130, not {age}"));
    }
    if !args.input.is_file() {
        return Err(format!("cannot read {}: no such file", args.input.display()));
    }
    let intensity = match &args.intensity_from {
        None => None,
        Some(path) => {
            let head = volumetry::nifti::read_f32(path).map_err(|e| e.to_string())?;
            let conformed = volumetry::conform::conform(&head).map_err(|e| e.to_string())?;
            Some(volumetry::IntensityReference::of(&conformed))
        }
    };
    let engine = args.engine.open().map_err(|e| e.to_string())?;
    let opts = SegmentOptions {
        model,
        labelling: labelling(args.upstream),
        intensity,
        engine: Some(engine),
        ..SegmentOptions::default()
    };
    let tmp_labels = partial_name(&args.out);
    let tmp_volumes = partial_name(&args.volumes);
    let result = volumetry::segment_file(&args.input, assets, &opts)
        .and_then(|seg| {
            let report = volumetry::write_outputs(&seg, &tmp_labels, &tmp_volumes, &|vj| {
                fill_percentiles(vj, sex, args.age, site)
            })?;
            Ok(Segmented {
                report,
                timings: seg.timings,
            })
        })
        .map_err(|e| e.to_string())
        .and_then(|done| {
            std::fs::rename(&tmp_labels, &args.out).map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
            std::fs::rename(&tmp_volumes, &args.volumes)
                .map_err(|e| format!("cannot write {}: {e}", args.volumes.display()))?;
            Ok(done)
        });
    if result.is_err() {
        for p in [&tmp_labels, &tmp_volumes, &args.out, &args.volumes] {
            let _ = std::fs::remove_file(p);
        }
    }
    result
}

/// A hidden temporary name beside `path`, keeping its extension (the NIfTI writer
/// compresses when the name ends in .gz).
fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".partial-{}-{name}", hex::encode(rand::random::<[u8; 4]>())))
}
