//! One network evaluation on the device: the buffers, step records and dispatches of a
//! streamed model (region models) or a materialised one (instance norm).

use std::collections::HashMap;

use volumetry::engine::schedule::{Step, stream_plan};
use volumetry::model::Activation;
use volumetry::{Box3, GeluForm, Model, VolumetryError};

use crate::device::{Gpu, Kernel, StepUniform, linear_groups, tile_groups};
use crate::{activation_code, pack};

type Result<T> = std::result::Result<T, VolumetryError>;

/// Dispatches per submission: long enough to keep the device busy, short enough that no
/// single submission runs for seconds.
const STEPS_PER_SUBMIT: usize = 512;

fn bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// The x/y origin and lengths of a box.
fn rect_of(b: &Box3, origin: [usize; 2]) -> [u32; 4] {
    [
        (b.0[0].start - origin[0]) as u32,
        (b.0[1].start - origin[1]) as u32,
        b.0[0].len() as u32,
        b.0[1].len() as u32,
    ]
}

/// A kernel and its override constants: one compiled pipeline.
type PipelineKey = (Kernel, Vec<(&'static str, u64)>);

/// One network evaluation: the model's buffers and kernels on the device.
pub(crate) struct Run<'a> {
    gpu: &'a Gpu,
    model: &'a Model,
    gelu: GeluForm,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
}

/// A dispatch: which kernel with which constants, bind group, step record, workgroups.
struct Dispatch {
    pipeline: PipelineKey,
    bind_group: usize,
    step: usize,
    groups: (u32, u32, u32),
}

impl<'a> Run<'a> {
    pub(crate) fn new(gpu: &'a Gpu, model: &'a Model, gelu: GeluForm) -> Run<'a> {
        Run {
            gpu,
            model,
            gelu,
            pipelines: HashMap::new(),
        }
    }

    /// The pipeline key of layer `l`'s kernel over an `ex × ey` extent.
    fn layer_kernel(&self, l: usize, ex: usize, ey: usize) -> PipelineKey {
        let layer = &self.model.layers[l];
        let mut c = vec![
            ("CIN", layer.cin as u64),
            ("COUT", layer.cout as u64),
            ("EX", ex as u64),
            ("EY", ey as u64),
        ];
        if layer.kernel == 1 {
            return (Kernel::Head, c);
        }
        // a normalised layer is activated after its statistics, by the norm kernel
        let act = if layer.instance_norm_eps.is_some() {
            Activation::None
        } else {
            layer.activation
        };
        c.push(("ACT", activation_code(act, self.gelu) as u64));
        (Kernel::Conv, c)
    }

    fn params(&self, l: usize) -> Result<wgpu::Buffer> {
        self.gpu.upload(
            &format!("layer {l} weights"),
            bytes(&pack(&self.model.layers[l])),
            wgpu::BufferUsages::STORAGE,
        )
    }

    /// Encodes `dispatches` (in order; each sees the previous one's writes) and submits them
    /// in batches.
    fn execute(&mut self, dispatches: &[Dispatch], groups: &[wgpu::BindGroup]) -> Result<()> {
        for d in dispatches {
            if !self.pipelines.contains_key(&d.pipeline) {
                let constants: Vec<(&str, f64)> = d.pipeline.1.iter().map(|&(k, v)| (k, v as f64)).collect();
                let p = self.gpu.pipeline(d.pipeline.0, &constants);
                self.pipelines.insert(d.pipeline.clone(), p);
            }
        }
        for batch in dispatches.chunks(STEPS_PER_SUBMIT) {
            let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for d in batch {
                    pass.set_pipeline(&self.pipelines[&d.pipeline]);
                    let offset = (d.step as u64 * self.gpu.step_stride) as u32;
                    pass.set_bind_group(0, &groups[d.bind_group], &[offset]);
                    pass.dispatch_workgroups(d.groups.0, d.groups.1, d.groups.2);
                }
            }
            self.gpu.submit(encoder)?;
        }
        Ok(())
    }

    /// Models without instance norm, streamed along z.
    pub(crate) fn streaming(mut self, input: &[f32], dims: [usize; 3], region: &Box3) -> Result<Vec<u8>> {
        let layers = &self.model.layers;
        let nh = layers.len() - 1;
        let rads: Vec<usize> = layers.iter().map(|l| (l.kernel / 2) * l.dilation).collect();
        let plan = stream_plan(&rads, dims, region)?;
        // Everything is stored over the extent the first layer reads.
        let ext = plan.boxes[0].grow(rads[0], dims);
        let [ex, ey, ez] = [0, 1, 2].map(|a| ext.0[a].len());
        let origin = [ext.0[0].start, ext.0[1].start];
        let plane = ex * ey;
        // the input as a ring of ez slices (slot = z mod ez, a bijection on the extent)
        let mut staged = vec![0f32; plane * ez];
        for z in ext.0[2].clone() {
            for y in ext.0[1].clone() {
                let row = dims[0] * (y + dims[1] * z);
                let at = ((z % ez) * ey + (y - origin[1])) * ex;
                staged[at..at + ex].copy_from_slice(&input[row + ext.0[0].start..row + ext.0[0].end]);
            }
        }
        let gpu = self.gpu;
        let input_buf = gpu.upload("input volume", bytes(&staged), wgpu::BufferUsages::STORAGE)?;
        drop(staged);
        let rings = (0..nh)
            .map(|l| {
                let size = (plan.caps[l] * layers[l].cout * plane * 4) as u64;
                gpu.storage(&format!("layer {l} ring"), size, wgpu::BufferUsages::empty())
            })
            .collect::<Result<Vec<_>>>()?;
        let [rw, rh, rd] = [0, 1, 2].map(|a| region.0[a].len());
        let label_bytes = (rw * rh * rd * 4) as u64;
        let labels = gpu.storage("labels", label_bytes, wgpu::BufferUsages::COPY_SRC)?;
        let params = (0..=nh).map(|l| self.params(l)).collect::<Result<Vec<_>>>()?;

        let cap_in = |l: usize| if l == 0 { ez } else { plan.caps[l - 1] };
        let mut records = Vec::with_capacity(plan.steps.len());
        let mut dispatches = Vec::with_capacity(plan.steps.len());
        for &Step { layer: l, z } in &plan.steps {
            let rect = rect_of(&plan.boxes[l], origin);
            let record = if l == nh {
                StepUniform {
                    slots: [-1, (z % cap_in(l)) as i32, -1, -1],
                    rect,
                    misc: [0, (z - region.0[2].start) as u32, 0, 0],
                }
            } else {
                let d = layers[l].dilation as isize;
                let mut slots = [-1i32; 4];
                for (kz, s) in slots.iter_mut().take(3).enumerate() {
                    let zz = z as isize + (kz as isize - 1) * d;
                    if (0..dims[2] as isize).contains(&zz) {
                        *s = (zz as usize % cap_in(l)) as i32;
                    }
                }
                slots[3] = (z % plan.caps[l]) as i32;
                StepUniform {
                    slots,
                    rect,
                    misc: [d as u32, 0, 0, 0],
                }
            };
            let (gx, gy) = tile_groups(rect[2], rect[3]);
            dispatches.push(Dispatch {
                pipeline: self.layer_kernel(l, ex, ey),
                bind_group: l,
                step: records.len(),
                groups: (gx, gy, 1),
            });
            records.push(record);
        }
        let steps = gpu.steps_buffer(&records)?;
        let groups: Vec<wgpu::BindGroup> = (0..=nh)
            .map(|l| {
                let src = if l == 0 { &input_buf } else { &rings[l - 1] };
                let dst = if l == nh { &labels } else { &rings[l] };
                gpu.bind_group([src, dst, &params[l]], &steps)
            })
            .collect();
        self.execute(&dispatches, &groups)?;
        let got: Vec<u32> = bytemuck::pod_collect_to_vec(&gpu.read_back(&labels, label_bytes)?);
        let mut out = vec![0u8; dims.iter().product()];
        for (i, z) in region.0[2].clone().enumerate() {
            for (j, y) in region.0[1].clone().enumerate() {
                let row = dims[0] * (y + dims[1] * z) + region.0[0].start;
                let src = &got[(i * rh + j) * rw..(i * rh + j + 1) * rw];
                for (o, &v) in out[row..row + rw].iter_mut().zip(src) {
                    *o = v as u8;
                }
            }
        }
        Ok(out)
    }

    /// Models with instance norm: each layer whole, normalised by whole-volume statistics.
    /// `input` is `[channel][z][y][x]`. With a 1×1×1 head last, the labels; without (a
    /// model of 3³ layers only, see [`GpuEngine::layer_outputs`]), the last activations.
    pub(crate) fn materialised(mut self, input: &[f32], dims: [usize; 3]) -> Result<Outcome> {
        let layers = &self.model.layers;
        let has_head = layers.last().is_some_and(|l| l.kernel == 1);
        let hidden = layers.len() - usize::from(has_head);
        let [nx, ny, nz] = dims;
        let plane = nx * ny;
        let cmax = layers[..hidden].iter().map(|l| l.cout).max().unwrap_or(1);
        let gpu = self.gpu;
        // slices hold every channel of one z ([z][c][y][x])
        let cin = layers[0].cin;
        let mut staged = vec![0f32; input.len()];
        for c in 0..cin {
            for z in 0..nz {
                let from = (c * nz + z) * plane;
                let to = (z * cin + c) * plane;
                staged[to..to + plane].copy_from_slice(&input[from..from + plane]);
            }
        }
        let input_buf = gpu.upload("input volume", bytes(&staged), wgpu::BufferUsages::STORAGE)?;
        drop(staged);
        let layer_bytes = (nz * cmax * plane * 4) as u64;
        let ping = [
            gpu.storage("layer activations", layer_bytes, wgpu::BufferUsages::COPY_SRC)?,
            gpu.storage("layer activations", layer_bytes, wgpu::BufferUsages::COPY_SRC)?,
        ];
        let sums_bytes = (nz * cmax * 2 * 4) as u64;
        let sums = gpu.storage("channel sums", sums_bytes, wgpu::BufferUsages::COPY_SRC)?;
        let moments = gpu.storage("channel moments", (cmax * 2 * 4) as u64, wgpu::BufferUsages::COPY_DST)?;
        let unused = gpu.storage("unused", 4, wgpu::BufferUsages::empty())?;
        let label_bytes = if has_head { (plane * nz * 4) as u64 } else { 4 };
        let labels = gpu.storage("labels", label_bytes, wgpu::BufferUsages::COPY_SRC)?;
        let params = (0..layers.len()).map(|l| self.params(l)).collect::<Result<Vec<_>>>()?;

        // Step records, three per layer: the whole layer in one dispatch (every z), then its
        // stats and its norm.
        let mut records = Vec::new();
        for layer in layers {
            let c = layer.cout as u32;
            records.push(StepUniform {
                slots: [-1; 4],
                rect: [0, 0, nx as u32, ny as u32],
                misc: [layer.dilation as u32, 0, nz as u32, 1],
            });
            records.push(StepUniform {
                misc: [0, 0, plane as u32, c],
                ..Default::default()
            });
            records.push(StepUniform {
                misc: [plane as u32, 0, (nz * plane) as u32 * c, c],
                ..Default::default()
            });
        }
        let steps = gpu.steps_buffer(&records)?;
        // bind groups: one per layer; then stats and norm over each ping buffer
        let out_of = |l: usize| &ping[l % 2];
        let mut groups: Vec<wgpu::BindGroup> = (0..layers.len())
            .map(|l| {
                let src = if l == 0 { &input_buf } else { out_of(l - 1) };
                let dst = if l == hidden { &labels } else { out_of(l) };
                gpu.bind_group([src, dst, &params[l]], &steps)
            })
            .collect();
        let stats_group = groups.len();
        groups.extend(ping.iter().map(|b| gpu.bind_group([b, &sums, &params[0]], &steps)));
        let norm_group = groups.len();
        groups.extend(ping.iter().map(|b| gpu.bind_group([&unused, b, &moments], &steps)));

        for (l, layer) in layers.iter().enumerate() {
            let (gx, gy) = tile_groups(nx as u32, ny as u32);
            let conv = Dispatch {
                pipeline: self.layer_kernel(l, nx, ny),
                bind_group: l,
                step: 3 * l,
                groups: (gx, gy, nz as u32),
            };
            self.execute(&[conv], &groups)?;
            let Some(eps) = layer.instance_norm_eps else {
                continue;
            };
            let c = layer.cout;
            let stats = Dispatch {
                pipeline: (Kernel::Stats, vec![("ACT", 0)]),
                bind_group: stats_group + l % 2,
                step: 3 * l + 1,
                groups: (nz as u32, c as u32, 1),
            };
            self.execute(&[stats], &groups)?;
            let partial: Vec<f32> = bytemuck::pod_collect_to_vec(&gpu.read_back(&sums, (nz * c * 2 * 4) as u64)?);
            let count = (nz * plane) as f64;
            let mut m = vec![0f32; 2 * c];
            for ch in 0..c {
                let (s, q) = (0..nz).fold((0f64, 0f64), |(s, q), z| {
                    let i = (z * c + ch) * 2;
                    (s + partial[i] as f64, q + partial[i + 1] as f64)
                });
                let mean = s / count;
                let var = (q / count - mean * mean).max(0.0);
                m[2 * ch] = mean as f32;
                m[2 * ch + 1] = (1.0 / (var + eps as f64).sqrt()) as f32;
            }
            gpu.queue.write_buffer(&moments, 0, bytes(&m));
            let norm = Dispatch {
                pipeline: (
                    Kernel::Norm,
                    vec![("ACT", activation_code(layer.activation, self.gelu) as u64)],
                ),
                bind_group: norm_group + l % 2,
                step: 3 * l + 2,
                groups: {
                    let (x, y) = linear_groups((nz * c * plane) as u64);
                    (x, y, 1)
                },
            };
            self.execute(&[norm], &groups)?;
        }
        if has_head {
            let got: Vec<u32> = bytemuck::pod_collect_to_vec(&gpu.read_back(&labels, label_bytes)?);
            return Ok(Outcome::Labels(got.into_iter().map(|v| v as u8).collect()));
        }
        let c = layers[hidden - 1].cout;
        let got: Vec<f32> =
            bytemuck::pod_collect_to_vec(&gpu.read_back(out_of(hidden - 1), (nz * c * plane * 4) as u64)?);
        let mut out = vec![0f32; got.len()];
        for z in 0..nz {
            for ch in 0..c {
                let from = (z * c + ch) * plane;
                let to = (ch * nz + z) * plane;
                out[to..to + plane].copy_from_slice(&got[from..from + plane]);
            }
        }
        Ok(Outcome::Activations(out))
    }
}

/// What a materialised run gives back.
pub(crate) enum Outcome {
    Labels(Vec<u8>),
    Activations(Vec<f32>),
}
