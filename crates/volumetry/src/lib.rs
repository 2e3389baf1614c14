//! NeuroVol volumetry: NIfTI I/O, brainchop-compatible conform, MeshNet inference on the
//! CPU, and per-region volumes with quality signals.
//!
//! Pipeline (shared/models/RECIPE.md §10): conform → uint8 256³ LIA → P quantile
//! normalisation → MeshNet → argmax → largest 26-connected component → labels on the
//! conformed grid, plus a nearest-neighbour reslice to the input grid.

// index loops mirror the formulas (matrix and voxel indices); iterator rewrites obscure them
#![allow(clippy::needless_range_loop)]

pub mod borders;
pub mod composite;
pub mod conform;
pub mod deface;
pub mod engine;
pub mod error;
mod grid;
pub mod mgh;
pub mod model;
pub mod nifti;
pub mod partial_volume;
pub mod post;
pub mod preview;
pub mod refine;
pub mod synthetic;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use engine::{Box3, CpuEngine, Engine, RunOptions, planned_flops};
pub use error::{Result, VolumetryError};
pub use model::{GeluForm, Model, ModelId};
pub use nifti::Volume;
pub use refine::Labelling;
pub use volumes::{
    Asymmetry, Grade, Grid, QUALITY_UNCHECKED, Quality, QualityFlag, VolumeReport, VolumesJson, VolumesJsonRegion,
    WHOLE_SEGMENTATION_FLAGS, report, report_on, side_of, volumes_json,
};

/// The assets folder: `$NEUROVOL_ASSETS`, else `<this crate>/../../../shared` (dev layout).
pub fn assets_dir() -> PathBuf {
    std::env::var_os("NEUROVOL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

/// The intensity normalisation of the head a defaced volume was cut from: the conform
/// scaling (lo, hi, scale) and the conformed cube's 2 %/98 % quantiles. Both are measured
/// over every voxel, so zeroing the face would shift them and, through them, the labels;
/// segmenting the defaced volume with the original's numbers keeps the labels where they
/// were. Four numbers about intensities: nothing identifying.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntensityReference {
    pub scaling: (f32, f32, f32),
    pub quantiles: (f32, f32),
}

impl IntensityReference {
    /// Measured on a (not yet defaced) conformed head.
    pub fn of(conformed: &conform::Conformed) -> IntensityReference {
        IntensityReference {
            scaling: conformed.scaling,
            quantiles: post::quantiles_u8(&conformed.volume.data),
        }
    }
}

/// How much of the cube the region model evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOfView {
    /// Labels only inside the bounding box of the non-zero normalised head (+2 voxels);
    /// outside it the input is all background and labels are 0. Inside the box the
    /// result equals the full-cube computation exactly (each layer is evaluated on the box
    /// grown by the receptive radius still ahead of it). Default.
    #[default]
    HeadBox,
    /// Evaluate all 256³ voxels, as upstream P does.
    FullCube,
}

#[derive(Clone)]
pub struct SegmentOptions {
    pub model: ModelId,
    /// Upstream labels, or refined towards FreeSurfer's (the default model only).
    pub labelling: Labelling,
    /// Also run mindgrab for the brain mask / ICV.
    pub brain_mask: bool,
    pub field_of_view: FieldOfView,
    pub gelu: GeluForm,
    /// Inference engine; `None` = [`CpuEngine`] with the best ISA of this CPU.
    pub engine: Option<Arc<dyn Engine>>,
    /// Normalise intensities as this reference says instead of measuring them (the input
    /// is a defaced head).
    pub intensity: Option<IntensityReference>,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            model: ModelId::Model21_104class,
            labelling: Labelling::Refined,
            brain_mask: true,
            field_of_view: FieldOfView::HeadBox,
            gelu: GeluForm::Exact,
            engine: None,
            intensity: None,
        }
    }
}

/// Wall time of each step (seconds).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    pub conform_s: f64,
    pub model_s: f64,
    /// The deep-structure model of the refined labelling (0 for upstream labels).
    #[serde(default)]
    pub deep_model_s: f64,
    pub mask_s: f64,
    pub post_s: f64,
    /// The partial-volume correction of the labels' volumes.
    #[serde(default)]
    pub partial_volume_s: f64,
    pub total_s: f64,
}

/// Result of [`segment`].
#[derive(Clone, Debug)]
pub struct Segmentation {
    pub model: String,
    /// How the labels were drawn (refined only for the default model with a brain mask).
    pub labelling: Labelling,
    /// `label_names[v]` = upstream name of label value v.
    pub label_names: Vec<String>,
    /// Region labels on the conformed grid (256³ uint8, LIA, 1 mm, intent LABEL).
    pub labels: Volume<u8>,
    /// The same labels resliced (nearest neighbour) to the input grid.
    pub labels_native: Volume<u8>,
    /// Partial-volume-corrected voxel counts per label value on the conformed grid, from
    /// the conformed intensities (`partial_volume`, FreeSurfer's means: the reference's numbers
    /// were measured so, and the accuracy bench agrees better with them); empty when not measured.
    pub corrected_voxels: Vec<f64>,
    /// Of the region model's labelled voxels, the fraction inside the brain mask before the
    /// refined labelling cut them to it (`None`: not cut; measure on `labels`).
    pub labelled_fraction_in_mask: Option<f64>,
    /// mindgrab brain mask (0/1) on the conformed grid, when requested.
    pub brain_mask: Option<Volume<u8>>,
    pub engine: String,
    pub timings: Timings,
}

/// Bounding box of non-zero voxels, grown by `margin`; None if all zero.
pub fn nonzero_box(v: &[f32], dims: [usize; 3], margin: usize) -> Option<Box3> {
    let [nx, ny, nz] = dims;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for z in 0..nz {
        for y in 0..ny {
            let row = &v[nx * (y + ny * z)..nx * (y + ny * z) + nx];
            let Some(f) = row.iter().position(|&x| x != 0.0) else {
                continue;
            };
            let l = row.iter().rposition(|&x| x != 0.0).unwrap_or(f);
            lo = [lo[0].min(f), lo[1].min(y), lo[2].min(z)];
            hi = [hi[0].max(l + 1), hi[1].max(y + 1), hi[2].max(z + 1)];
        }
    }
    (lo[0] != usize::MAX).then(|| Box3([lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]).grow(margin, dims))
}

/// The box [`run_model`] evaluates for `fov` on a normalised volume.
pub fn inference_region(normalised: &[f32], dims: [usize; 3], fov: FieldOfView) -> Result<Option<Box3>> {
    Ok(match fov {
        FieldOfView::FullCube => None,
        FieldOfView::HeadBox => Some(
            nonzero_box(normalised, dims, 2)
                .ok_or_else(|| VolumetryError::BadInput("the image is empty after intensity scaling".into()))?,
        ),
    })
}

/// Run one model on a conformed volume: normalise (between `quantiles`, else the
/// volume's own), infer, argmax, largest component. Returns labels on the conformed grid
/// (same header, intent LABEL).
pub fn run_model(
    model: &Model,
    conformed: &Volume<u8>,
    engine: &dyn Engine,
    fov: FieldOfView,
    gelu: GeluForm,
    quantiles: Option<(f32, f32)>,
) -> Result<Volume<u8>> {
    let x = match quantiles {
        Some(q) => post::normalize_between(&conformed.data, q),
        None => post::normalize_quantile(&conformed.data),
    };
    let region = inference_region(&x, conformed.dims, fov)?;
    let mut labels = engine.run(model, &x, conformed.dims, &RunOptions { region, gelu })?;
    drop(x);
    post::keep_largest_component(&mut labels, conformed.dims);
    let mut header = conformed.header.clone();
    header.intent_code = nifti::INTENT_LABEL;
    header.cal_min = 0.0;
    header.cal_max = (model.n_classes() - 1) as f32;
    Ok(Volume {
        dims: conformed.dims,
        data: labels,
        header,
    })
}

/// Segment a native-space volume with the chosen region model (and mindgrab if asked).
pub fn segment(input: &Volume<f32>, assets: &Path, opts: &SegmentOptions) -> Result<Segmentation> {
    let t0 = Instant::now();
    let engine: Arc<dyn Engine> = opts.engine.clone().unwrap_or_else(|| Arc::new(CpuEngine::new()));
    let conformed = conform::conform_scaled(input, opts.intensity.map(|r| r.scaling))?;
    let quantiles = opts.intensity.map(|r| r.quantiles);
    let t_conf = t0.elapsed().as_secs_f64();
    let model = Model::load(assets, opts.model)?;
    let t1 = Instant::now();
    let fov = if model.has_instance_norm() {
        FieldOfView::FullCube
    } else {
        opts.field_of_view
    };
    let mut labels = run_model(&model, &conformed.volume, engine.as_ref(), fov, opts.gelu, quantiles)?;
    let model_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let brain_mask = if opts.brain_mask {
        if opts.model == ModelId::Mindgrab {
            Some(labels.clone())
        } else {
            let mg = Model::load(assets, ModelId::Mindgrab)?;
            Some(run_model(
                &mg,
                &conformed.volume,
                engine.as_ref(),
                FieldOfView::FullCube,
                opts.gelu,
                quantiles,
            )?)
        }
    } else {
        None
    };
    let mask_s = t2.elapsed().as_secs_f64();
    let t_deep = Instant::now();
    // refined labels need the default model's label set and the brain mask
    let mut labelled_fraction_in_mask = None;
    let labelling = match &brain_mask {
        Some(mask) if Labelling::drawn(opts.labelling, opts.model, true) == Labelling::Refined => {
            let (labelled, inside) = labels
                .data
                .iter()
                .zip(&mask.data)
                .fold((0usize, 0usize), |(n, i), (&l, &m)| {
                    (n + usize::from(l != 0), i + usize::from(l != 0 && m != 0))
                });
            labelled_fraction_in_mask = Some(if labelled > 0 {
                inside as f64 / labelled as f64
            } else {
                0.0
            });
            let deep = Model::load(assets, ModelId::Model30chan50cls)?;
            let deep_fov = if deep.has_instance_norm() {
                FieldOfView::FullCube
            } else {
                opts.field_of_view
            };
            let deep_labels = run_model(
                &deep,
                &conformed.volume,
                engine.as_ref(),
                deep_fov,
                opts.gelu,
                quantiles,
            )?;
            refine::refine(
                &mut labels.data,
                &model.labels,
                &deep_labels.data,
                &deep.labels,
                Some(&mask.data),
                labels.dims,
            );
            borders::release_bright_borders(&mut labels.data, &model.labels, &conformed.volume.data, labels.dims);
            borders::claim_bright_pial_border(
                &mut labels.data,
                &model.labels,
                &conformed.volume.data,
                &mask.data,
                labels.dims,
            );
            Labelling::Refined
        }
        _ => Labelling::Upstream,
    };
    let deep_model_s = t_deep.elapsed().as_secs_f64();
    let t3 = Instant::now();
    let labels_native = conform::labels_to_native(&labels, &input.header, input.dims)?;
    let post_s = t3.elapsed().as_secs_f64();
    let t4 = Instant::now();
    let intensity: Vec<f32> = conformed.volume.data.iter().map(|&v| f32::from(v)).collect();
    let corrected_voxels = partial_volume::partial_volumes(
        &labels.data,
        &intensity,
        labels.dims,
        partial_volume::Correction::FreeSurfer,
    )
    .voxels;
    let partial_volume_s = t4.elapsed().as_secs_f64();
    Ok(Segmentation {
        model: model.name.clone(),
        labelling,
        labelled_fraction_in_mask,
        label_names: model.labels.clone(),
        labels,
        labels_native,
        corrected_voxels,
        brain_mask,
        engine: engine.name(),
        timings: Timings {
            conform_s: t_conf,
            model_s,
            deep_model_s,
            mask_s,
            post_s,
            partial_volume_s,
            total_s: t0.elapsed().as_secs_f64(),
        },
    })
}

/// [`segment`] reading the input from a `.nii` / `.nii.gz` file.
pub fn segment_file(input: impl AsRef<Path>, assets: &Path, opts: &SegmentOptions) -> Result<Segmentation> {
    let v = nifti::read_f32(input)?;
    segment(&v, assets, opts)
}

/// Write the native-grid label NIfTI and `volumes.json` (conformed-grid volumes, as
/// upstream reports them) for a finished segmentation.
pub fn write_outputs(
    seg: &Segmentation,
    labels_out: &Path,
    volumes_out: &Path,
    fill_percentiles: &dyn Fn(&mut VolumesJson),
) -> Result<VolumeReport> {
    nifti::write(&seg.labels_native, labels_out)?;
    let rep = report(seg);
    let mut vj = volumes_json(&rep);
    fill_percentiles(&mut vj);
    let s = serde_json::to_string_pretty(&vj).map_err(|e| VolumetryError::Io(format!("cannot encode volumes: {e}")))?;
    std::fs::write(volumes_out, s)
        .map_err(|e| VolumetryError::Io(format!("cannot write {}: {e}", volumes_out.display())))?;
    Ok(rep)
}
