//! Inference engines. [`Engine`] is the seam; [`CpuEngine`] is the streaming, SIMD CPU
//! implementation, and the `gpu-engine` crate the wgpu (Vulkan) one. Both stream along z
//! in the order [`schedule::stream_plan`] gives.

use std::ops::Range;

use crate::error::Result;
use crate::model::{GeluForm, Model};

mod cpu;
pub mod kernels;
pub mod naive;
pub mod schedule;
mod simd;

pub use cpu::{CpuEngine, planned_flops};
pub use kernels::Isa;

/// A 3D box of voxels, per axis a half-open range (x = NIfTI i, y = j, z = k).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Box3(pub [Range<usize>; 3]);

impl Box3 {
    pub fn full(dims: [usize; 3]) -> Box3 {
        Box3([0..dims[0], 0..dims[1], 0..dims[2]])
    }
    /// Grown by `r` on every side, clamped to `dims`.
    pub fn grow(&self, r: usize, dims: [usize; 3]) -> Box3 {
        Box3([0, 1, 2].map(|a| self.0[a].start.saturating_sub(r)..(self.0[a].end + r).min(dims[a])))
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().any(|r| r.is_empty())
    }
    pub fn voxels(&self) -> usize {
        self.0.iter().map(|r| r.len()).product()
    }
    pub fn contains(&self, x: usize, y: usize, z: usize) -> bool {
        self.0[0].contains(&x) && self.0[1].contains(&y) && self.0[2].contains(&z)
    }
}

/// Options for one network evaluation.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Only voxels inside this box get labels (others are 0); work outside the box's
    /// receptive-field margin is skipped. Inside the box the result is exactly that of the
    /// full volume. Ignored for models with instance norm (whole-volume statistics).
    pub region: Option<Box3>,
    pub gelu: GeluForm,
}

/// Runs a MeshNet on a normalised volume and returns the argmax label of every voxel.
pub trait Engine: Send + Sync {
    /// Human-readable name (e.g. "cpu-avx512").
    fn name(&self) -> String;
    /// `input`: normalised intensities, voxel (x,y,z) at `x + dims[0]*(y + dims[1]*z)`, with
    /// x = tensor axis D = NIfTI i (RECIPE §0). Returns labels in the same layout.
    fn run(&self, model: &Model, input: &[f32], dims: [usize; 3], opts: &RunOptions) -> Result<Vec<u8>>;
}
