//! Which engine runs inference: the one choice the CLI (`neurovol segment --engine`) and
//! the worker (`--engine`, `NEUROVOL_WORKER_ENGINE`) both make.

use std::sync::Arc;

use volumetry::{CpuEngine, Engine, VolumetryError};

use crate::GpuEngine;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// This machine's CPU cores (SIMD, streamed). Default.
    #[default]
    Cpu,
    /// The wgpu engine on the best Vulkan adapter; an error when there is none.
    Gpu,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [EngineKind::Cpu, EngineKind::Gpu];

    pub const fn as_str(self) -> &'static str {
        match self {
            EngineKind::Cpu => "cpu",
            EngineKind::Gpu => "gpu",
        }
    }

    /// Parses a name as given on a command line or in the environment.
    pub fn parse(name: &str) -> Result<EngineKind, String> {
        EngineKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| format!("unknown engine '{name}' (cpu or gpu)"))
    }

    /// Opens the engine; the GPU one fails here, at start, when no adapter is usable.
    pub fn open(self) -> Result<Arc<dyn Engine>, VolumetryError> {
        Ok(match self {
            EngineKind::Cpu => Arc::new(CpuEngine::new()),
            EngineKind::Gpu => Arc::new(GpuEngine::new()?),
        })
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EngineKind::ALL {
            assert_eq!(EngineKind::parse(k.as_str()), Ok(k));
        }
        assert!(EngineKind::parse("cuda").unwrap_err().contains("cpu or gpu"));
    }
}
