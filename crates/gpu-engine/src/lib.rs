//! MeshNet on a GPU through wgpu (Vulkan): the dilated 3×3×3 convolutions, each model's
//! activation, instance norm and the 1×1×1 head with its argmax as WGSL compute shaders.
//!
//! It keeps the CPU engine's shape so that the two give the same labels and the GPU's
//! memory stays bounded:
//! * models without instance norm are streamed along z in the order of
//!   [`volumetry::engine::schedule::stream_plan`] (each layer holds a ring of
//!   `2·dilation+2` slices), each layer restricted to the region grown by the receptive
//!   radius still ahead of it (the head box, exact inside it);
//! * models with instance norm (mindgrab) materialise each layer (two buffers, ping-pong),
//!   sum each channel on the device, finish the statistics on the host in f64, then
//!   normalise and activate in place.
//!
//! The same code runs on NVIDIA's Vulkan driver and on Mesa's lavapipe (a software Vulkan
//! device), which is how it is tested on machines without a GPU.

use volumetry::model::{Activation, Layer};
use volumetry::{Box3, Engine, GeluForm, Model, RunOptions, VolumetryError};

mod device;
mod kind;
mod run;

pub use kind::EngineKind;

use device::{Gpu, engine_error};
use run::{Outcome, Run};

type Result<T> = std::result::Result<T, VolumetryError>;

/// Widest layer the kernels hold in registers (`MAXC` in common.wgsl).
const MAX_CHANNELS: usize = 32;

/// The wgpu engine on the best Vulkan adapter of this machine.
pub struct GpuEngine {
    gpu: Gpu,
}

impl GpuEngine {
    /// Opens the highest-performance Vulkan adapter; an error (naming the engine) when there
    /// is none. Never falls back to the CPU.
    pub fn new() -> Result<GpuEngine> {
        Ok(GpuEngine { gpu: Gpu::open()? })
    }

    /// The adapter's name and kind, e.g. "NVIDIA H100 80GB HBM3 (DiscreteGpu, Vulkan)".
    pub fn adapter(&self) -> String {
        let i = &self.gpu.info;
        format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend)
    }
}

impl GpuEngine {
    /// One 3³ layer (conv, instance norm if it has one, activation) over a whole volume,
    /// `input` and the result `[channel][z][y][x]`: the kernels without the network around
    /// them, for checking against the naive reference.
    pub fn layer_outputs(&self, layer: &Layer, input: &[f32], dims: [usize; 3], gelu: GeluForm) -> Result<Vec<f32>> {
        let n: usize = dims.iter().product();
        if layer.kernel != 3 || layer.cout > MAX_CHANNELS || input.len() != layer.cin * n || n == 0 {
            return Err(VolumetryError::BadInput(
                "a 3³ layer and an input of its channels".into(),
            ));
        }
        let model = Model {
            id: None,
            name: "one layer".into(),
            layers: vec![layer.clone()],
            labels: Vec::new(),
            flops_per_voxel: 0.0,
        };
        match Run::new(&self.gpu, &model, gelu).materialised(input, dims)? {
            Outcome::Activations(out) => Ok(out),
            Outcome::Labels(_) => Err(engine_error("a layer without a head gave labels")),
        }
    }
}

impl Engine for GpuEngine {
    fn name(&self) -> String {
        format!("gpu-wgpu: {}", self.adapter())
    }

    fn run(&self, model: &Model, input: &[f32], dims: [usize; 3], opts: &RunOptions) -> Result<Vec<u8>> {
        let n: usize = dims.iter().product();
        if input.len() != n || n == 0 {
            return Err(VolumetryError::BadInput(
                "input size does not match its dimensions".into(),
            ));
        }
        let nh = model
            .layers
            .len()
            .checked_sub(1)
            .ok_or_else(|| engine_error("the model has no layers"))?;
        if model.layers.iter().take(nh).any(|l| l.cout > MAX_CHANNELS) || model.layers[nh].cin > MAX_CHANNELS {
            return Err(engine_error(format!(
                "{}: layers wider than {MAX_CHANNELS} channels are not supported",
                model.name
            )));
        }
        if n > u32::MAX as usize / MAX_CHANNELS {
            return Err(engine_error("the volume is too large to index"));
        }
        if model.has_instance_norm() {
            return match Run::new(&self.gpu, model, opts.gelu).materialised(input, dims)? {
                Outcome::Labels(labels) => Ok(labels),
                Outcome::Activations(_) => Err(engine_error("the model has no 1×1×1 head")),
            };
        }
        let full = Box3::full(dims);
        let region = opts
            .region
            .clone()
            .map(|b| Box3([0, 1, 2].map(|a| b.0[a].start.min(dims[a])..b.0[a].end.min(dims[a]))))
            .unwrap_or(full);
        if region.is_empty() {
            return Ok(vec![0u8; n]);
        }
        Run::new(&self.gpu, model, opts.gelu).streaming(input, dims, &region)
    }
}

/// The activation codes of common.wgsl.
pub(crate) fn activation_code(act: Activation, gelu: GeluForm) -> u32 {
    match (act, gelu) {
        (Activation::None, _) => 0,
        (Activation::Relu, _) => 1,
        (Activation::Elu, _) => 2,
        (Activation::Gelu, GeluForm::Exact) => 3,
        (Activation::Gelu, GeluForm::Tanh) => 4,
    }
}

/// Weights as the kernels read them: a 3³ layer `[tap][ci][co]` (tap = (kz·3+ky)·3+kx),
/// the head `[co][ci]`; then the biases.
pub(crate) fn pack(l: &Layer) -> Vec<f32> {
    let mut w = Vec::with_capacity(l.weight.len() + l.cout);
    if l.kernel == 3 {
        for kz in 0..3 {
            for ky in 0..3 {
                for kx in 0..3 {
                    for ci in 0..l.cin {
                        w.extend((0..l.cout).map(|co| l.w(co, ci, kx, ky, kz)));
                    }
                }
            }
        }
    } else {
        for co in 0..l.cout {
            w.extend((0..l.cin).map(|ci| l.w(co, ci, 0, 0, 0)));
        }
    }
    w.extend_from_slice(&l.bias);
    w
}
