//! The wgpu device, the one bind-group layout every kernel shares, the compiled kernels,
//! and the buffer plumbing (upload, read back, submit).

use volumetry::VolumetryError;
use wgpu::util::DeviceExt;

/// One home for the engine's error wording: every failure names the engine.
pub(crate) fn engine_error(what: impl std::fmt::Display) -> VolumetryError {
    VolumetryError::Engine(format!("GPU engine (wgpu/Vulkan): {what}"))
}

/// What a dispatch reads from its uniform (`Step` in common.wgsl; 48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct StepUniform {
    pub slots: [i32; 4],
    pub rect: [u32; 4],
    pub misc: [u32; 4],
}

/// Kernels (WGSL entry points) and the workgroup shape each was written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Conv,
    Head,
    Stats,
    Norm,
}

impl Kernel {
    fn source(self) -> String {
        let body = match self {
            Kernel::Conv => include_str!("shaders/conv.wgsl"),
            Kernel::Head => include_str!("shaders/head.wgsl"),
            Kernel::Stats | Kernel::Norm => include_str!("shaders/norm.wgsl"),
        };
        format!("{}\n{body}", include_str!("shaders/common.wgsl"))
    }
    fn entry(self) -> &'static str {
        match self {
            Kernel::Conv => "conv",
            Kernel::Head => "head",
            Kernel::Stats => "stats",
            Kernel::Norm => "norm",
        }
    }
}

/// Workgroup size of the per-voxel kernels (conv, head) in x and y.
pub(crate) const TILE: [u32; 2] = [16, 8];
/// Workgroup size of the 1-D kernels (stats, norm).
pub(crate) const WG_1D: u32 = 256;
/// Most workgroups a dispatch may have along one axis (WebGPU's guaranteed minimum).
pub(crate) const MAX_GROUPS: u32 = 65_535;

pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    modules: std::collections::HashMap<Kernel, wgpu::ShaderModule>,
    /// Bytes between consecutive step records (the uniform offset alignment).
    pub step_stride: u64,
}

impl Gpu {
    pub fn open() -> Result<Gpu, VolumetryError> {
        let instance = wgpu::Instance::default();
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| {
            engine_error(format!(
                "no Vulkan adapter found ({e}); install a Vulkan driver (NVIDIA's, or Mesa's lavapipe \
                 for a software device) or choose the cpu engine"
            ))
        })?;
        let info = adapter.get_info();
        // The adapter's own maxima: a 256³ volume's layer needs buffers far beyond WebGPU's
        // defaults (128 MiB bindings).
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("neurovol"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| engine_error(format!("cannot open {}: {e}", info.name)))?;
        let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("meshnet"),
            entries: &[
                storage(0, true),
                storage(1, false),
                storage(2, true),
                wgpu::BindGroupLayoutEntry {
                    binding: 3,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(size_of::<StepUniform>() as u64),
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("meshnet"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let modules = [Kernel::Conv, Kernel::Head, Kernel::Stats]
            .into_iter()
            .map(|k| {
                let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.entry()),
                    source: wgpu::ShaderSource::Wgsl(k.source().into()),
                });
                (k, m)
            })
            .collect();
        let step_stride =
            (size_of::<StepUniform>() as u64).next_multiple_of(limits.min_uniform_buffer_offset_alignment as u64);
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            layout,
            pipeline_layout,
            modules,
            step_stride,
        })
    }

    /// A kernel specialised by its override constants (channels, activation, extent).
    pub fn pipeline(&self, kernel: Kernel, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
        let module_kernel = if kernel == Kernel::Norm { Kernel::Stats } else { kernel };
        self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            layout: Some(&self.pipeline_layout),
            module: &self.modules[&module_kernel],
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        })
    }

    /// A storage buffer of `bytes` (zeroed), refused with the sizes when the adapter cannot
    /// hold it.
    pub fn storage(&self, what: &str, bytes: u64, usage: wgpu::BufferUsages) -> Result<wgpu::Buffer, VolumetryError> {
        self.check_size(what, bytes)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | usage,
            mapped_at_creation: false,
        }))
    }

    pub fn upload(&self, what: &str, data: &[u8], usage: wgpu::BufferUsages) -> Result<wgpu::Buffer, VolumetryError> {
        self.check_size(what, data.len() as u64)?;
        Ok(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: data,
            usage,
        }))
    }

    fn check_size(&self, what: &str, bytes: u64) -> Result<(), VolumetryError> {
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(engine_error(format!(
                "the {what} needs {} MiB in one buffer; {} allows {} MiB",
                bytes >> 20,
                self.info.name,
                max >> 20
            )));
        }
        Ok(())
    }

    pub fn bind_group(&self, buffers: [&wgpu::Buffer; 3], steps: &wgpu::Buffer) -> wgpu::BindGroup {
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: 3,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: steps,
                offset: 0,
                size: wgpu::BufferSize::new(size_of::<StepUniform>() as u64),
            }),
        });
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        })
    }

    /// All step records in one uniform buffer, each at a multiple of `step_stride`.
    pub fn steps_buffer(&self, steps: &[StepUniform]) -> Result<wgpu::Buffer, VolumetryError> {
        let stride = self.step_stride as usize;
        let mut bytes = vec![0u8; stride * steps.len().max(1)];
        for (i, s) in steps.iter().enumerate() {
            bytes[i * stride..i * stride + size_of::<StepUniform>()].copy_from_slice(bytemuck::bytes_of(s));
        }
        self.upload("step records", &bytes, wgpu::BufferUsages::UNIFORM)
    }

    /// Submits, waits, and reports a device error (lost device, validation) as an engine error.
    pub fn submit(&self, encoder: wgpu::CommandEncoder) -> Result<(), VolumetryError> {
        self.queue.submit([encoder.finish()]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| engine_error(format!("the device failed: {e}")))?;
        Ok(())
    }

    /// Copies `bytes` of `buffer` back to the host.
    pub fn read_back(&self, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, VolumetryError> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.submit(encoder)?;
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| engine_error(format!("the device failed: {e}")))?;
        rx.recv()
            .map_err(|_| engine_error("the read-back was dropped"))?
            .map_err(|e| engine_error(format!("cannot read results back: {e}")))?;
        let out = slice
            .get_mapped_range()
            .map_err(|e| engine_error(format!("cannot read results back: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}

/// Workgroups for a `w × h` rectangle of per-voxel kernels.
pub(crate) fn tile_groups(w: u32, h: u32) -> (u32, u32) {
    (w.div_ceil(TILE[0]), h.div_ceil(TILE[1]))
}

/// Workgroups (x, y) covering `n` elements of a 1-D kernel.
pub(crate) fn linear_groups(n: u64) -> (u32, u32) {
    let groups = n.div_ceil(WG_1D as u64);
    let x = groups.min(MAX_GROUPS as u64) as u32;
    (x, groups.div_ceil(x.max(1) as u64) as u32)
}
