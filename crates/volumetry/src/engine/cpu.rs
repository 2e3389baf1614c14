//! CPU engine.
//!
//! * Models without instance norm are **streamed along z**: each layer keeps only a ring of
//!   `2·dilation+2` z-slices of its output, and every slice is produced as soon as the
//!   slices it depends on exist. Peak activation memory for a 21-channel model is ~0.5 GB
//!   instead of 2 × 1.4 GB. The optional `region` box restricts each layer to the box grown
//!   by the receptive radius of the layers after it, which is exact inside the box.
//! * Models with instance norm (mindgrab) need whole-volume statistics per layer, so each
//!   layer is materialised; input and output share one ring of `nz + dmax + 1` slices (the
//!   output is written `dmax+1` slices behind the input it no longer needs), ~1.1 GB.
//! * Each slice is split into rows over rayon; rows run the SIMD kernels of `kernels.rs`.

#![allow(clippy::too_many_arguments)]

use rayon::prelude::*;

use super::kernels::{Block, ConvRow, HeadRow, Isa};
use super::schedule::{Step, stream_plan};
use super::{Box3, Engine, RunOptions};
use crate::error::{Result, VolumetryError};
use crate::model::{Activation, GeluForm, Model};

/// Engine on this machine's CPU cores (rayon's global pool).
#[derive(Clone, Debug)]
pub struct CpuEngine {
    isa: Isa,
}

impl Default for CpuEngine {
    fn default() -> Self {
        CpuEngine { isa: Isa::detect() }
    }
}

impl CpuEngine {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_isa(isa: Isa) -> Self {
        CpuEngine { isa }
    }
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// Layer weights repacked for the kernels: per block `[tap][ci][cb]`.
struct Packed {
    cin: usize,
    cout: usize,
    /// Receptive radius of this layer ((kernel/2)·dilation).
    rad: usize,
    d: usize,
    blocks: Vec<Block>,
    w: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
    norm: Option<f32>,
}

fn pack(l: &crate::model::Layer, isa: Isa, head: bool) -> Packed {
    let nb = l.cout.div_ceil(isa.cb_max());
    let mut sizes = vec![l.cout / nb; nb];
    if head {
        // equal blocks; padded classes get −∞ bias so they never win the argmax
        sizes = vec![l.cout.div_ceil(nb); nb];
    } else {
        for s in sizes.iter_mut().take(l.cout % nb) {
            *s += 1;
        }
    }
    let k = l.kernel;
    let taps = k * k * k;
    let mut w = Vec::new();
    let mut blocks = Vec::new();
    let mut c0 = 0;
    for &cb in &sizes {
        blocks.push(Block { c0, cb, w_off: w.len() });
        for kz in 0..k {
            for ky in 0..k {
                for kx in 0..k {
                    for ci in 0..l.cin {
                        for c in 0..cb {
                            let co = c0 + c;
                            // kernel axes a,b,c run along x,y,z (tensor D,H,W = NIfTI i,j,k)
                            w.push(if co < l.cout { l.w(co, ci, kx, ky, kz) } else { 0.0 });
                        }
                    }
                }
            }
        }
        c0 += cb;
    }
    debug_assert_eq!(w.len(), c0 * taps * l.cin);
    let mut bias = l.bias.clone();
    bias.resize(c0, f32::NEG_INFINITY);
    Packed {
        cin: l.cin,
        cout: l.cout,
        rad: (k / 2) * l.dilation,
        d: l.dilation,
        blocks,
        w,
        bias,
        act: l.activation,
        norm: l.instance_norm_eps,
    }
}

#[derive(Clone, Copy)]
struct Geo {
    nx: usize,
    ny: usize,
    nz: usize,
    nx_pad: usize,
    pad: usize,
    /// Row stride (floats) = pad + nx_pad + pad.
    rs: usize,
}

impl Geo {
    fn slice_len(&self, c: usize) -> usize {
        self.ny * c * self.rs
    }
}

/// Per-channel (mean, 1/std), channel count and activation still to apply to a layer's output.
type Owed = (Vec<(f32, f32)>, usize, Activation);

/// Pointers shared across rayon workers; every worker writes only its own rows.
#[derive(Clone, Copy)]
struct P<T>(*mut T);
unsafe impl<T> Send for P<T> {}
unsafe impl<T> Sync for P<T> {}
impl<T> P<T> {
    // a method (not field access) so closures capture the whole Send/Sync wrapper
    #[inline]
    fn get(self) -> *mut T {
        self.0
    }
}

fn x_range(b: &Box3, g: &Geo) -> (usize, usize) {
    let x0 = b.0[0].start / 32 * 32;
    let x1 = (b.0[0].end.div_ceil(32) * 32).min(g.nx_pad);
    (x0, x1)
}

impl CpuEngine {
    /// One output slice of a 3³ layer. `inputs[kz]` = input slice at z + (kz−1)·d, if inside.
    /// Returns per-channel (sum, sum²) over the computed rows when `stats` is set.
    fn conv_slice(
        &self,
        p: &Packed,
        g: &Geo,
        inputs: [Option<*const f32>; 3],
        out: *mut f32,
        b: &Box3,
        stats: bool,
        gelu: GeluForm,
    ) -> Vec<(f64, f64)> {
        let (x0, x1) = x_range(b, g);
        let inputs = inputs.map(|o| o.map(|p| P(p as *mut f32)));
        let out = P(out);
        let isa = self.isa;
        let act = if p.norm.is_some() { Activation::None } else { p.act };
        let row = |y: usize| -> Vec<(f64, f64)> {
            let mut taps = [(std::ptr::null::<f32>(), 0usize); 9];
            let mut nt = 0;
            for (kz, inp) in inputs.iter().enumerate() {
                let Some(inp) = inp else { continue };
                for ky in 0..3 {
                    let yy = y as isize + (ky as isize - 1) * p.d as isize;
                    if yy < 0 || yy >= g.ny as isize {
                        continue;
                    }
                    // SAFETY: yy < ny, so the row lies inside the input slice
                    taps[nt] = (
                        unsafe { inp.get().add((yy as usize * p.cin) * g.rs + g.pad) } as *const f32,
                        (kz * 3 + ky) * 3,
                    );
                    nt += 1;
                }
            }
            let out_row = unsafe { out.get().add(y * p.cout * g.rs + g.pad) };
            let r = ConvRow {
                taps,
                ntaps: nt,
                d: p.d,
                cin: p.cin,
                rs: g.rs,
                blocks: &p.blocks,
                w: p.w.as_ptr(),
                bias: p.bias.as_ptr(),
                out: out_row,
                x_begin: x0,
                x_end: x1,
                nx: g.nx,
                nx_pad: g.nx_pad,
                act,
                gelu,
            };
            isa.conv_row(&r);
            if !stats {
                return Vec::new();
            }
            (0..p.cout)
                .map(|c| {
                    // SAFETY: this row was just written by this worker
                    let s = unsafe { std::slice::from_raw_parts(out_row.add(c * g.rs), g.nx) };
                    isa.sums(s)
                })
                .collect()
        };
        let rows: Vec<Vec<(f64, f64)>> = b.0[1].clone().into_par_iter().map(row).collect();
        let mut acc = vec![(0.0, 0.0); if stats { p.cout } else { 0 }];
        for r in rows {
            for (a, v) in acc.iter_mut().zip(r) {
                a.0 += v.0;
                a.1 += v.1;
            }
        }
        acc
    }

    fn head_slice(&self, p: &Packed, g: &Geo, input: *const f32, labels: &mut [u8], b: &Box3) {
        let (x0, x1) = x_range(b, g);
        let input = P(input as *mut f32);
        let lab = P(labels.as_mut_ptr());
        let isa = self.isa;
        b.0[1].clone().into_par_iter().for_each(|y| {
            let r = HeadRow {
                // SAFETY: y < ny: inside the slice / label plane
                input: unsafe { input.get().add(y * p.cin * g.rs + g.pad) },
                rs: g.rs,
                cin: p.cin,
                blocks: &p.blocks,
                w: p.w.as_ptr(),
                bias: p.bias.as_ptr(),
                labels: unsafe { lab.get().add(y * g.nx) },
                x_begin: x0,
                x_end: x1,
                nx: g.nx,
            };
            isa.head_row(&r);
        });
    }

    fn run_streaming(
        &self,
        packed: &[Packed],
        g: &Geo,
        input: &[Vec<f32>],
        region: &Box3,
        gelu: GeluForm,
    ) -> Result<Vec<u8>> {
        let nh = packed.len() - 1;
        let rads: Vec<usize> = packed.iter().map(|p| p.rad).collect();
        let plan = stream_plan(&rads, [g.nx, g.ny, g.nz], region)?;
        let (boxes, caps) = (&plan.boxes, &plan.caps);
        let mut rings: Vec<Vec<Vec<f32>>> = caps.iter().map(|&c| vec![Vec::new(); c]).collect();
        let mut labels = vec![0u8; g.nx * g.ny * g.nz];
        for &Step { layer: l, z } in &plan.steps {
            if l == nh {
                let plane = &mut labels[z * g.nx * g.ny..(z + 1) * g.nx * g.ny];
                let ip = if l == 0 {
                    input[z].as_ptr()
                } else {
                    rings[l - 1][z % caps[l - 1]].as_ptr()
                };
                self.head_slice(&packed[l], g, ip, plane, &boxes[l]);
                continue;
            }
            let mut slot = std::mem::take(&mut rings[l][z % caps[l]]);
            if slot.is_empty() {
                slot = vec![0.0; g.slice_len(packed[l].cout)];
            }
            let d = packed[l].d as isize;
            let inputs = [0isize, 1, 2].map(|kz| {
                let zz = z as isize + (kz - 1) * d;
                (zz >= 0 && zz < g.nz as isize).then(|| {
                    let zz = zz as usize;
                    if l == 0 {
                        input[zz].as_ptr()
                    } else {
                        rings[l - 1][zz % caps[l - 1]].as_ptr()
                    }
                })
            });
            self.conv_slice(&packed[l], g, inputs, slot.as_mut_ptr(), &boxes[l], false, gelu);
            rings[l][z % caps[l]] = slot;
        }
        Ok(labels)
    }

    /// Normalise + activate one materialised slice in place (rows in parallel).
    fn norm_slice(&self, slot: &mut [f32], g: &Geo, cout: usize, ms: &[(f32, f32)], act: Activation, gelu: GeluForm) {
        let isa = self.isa;
        slot[..g.slice_len(cout)].par_chunks_mut(cout * g.rs).for_each(|row| {
            for (c, &(mean, inv)) in ms.iter().enumerate() {
                let o = c * g.rs + g.pad;
                isa.norm_act(&mut row[o..o + g.nx], mean, inv, act, gelu);
            }
        });
    }

    fn run_materialised(&self, packed: &[Packed], g: &Geo, input: &[Vec<f32>], gelu: GeluForm) -> Result<Vec<u8>> {
        let nh = packed.len() - 1;
        let gap = packed.iter().map(|p| p.rad).max().unwrap_or(0) + 1;
        let cap = g.nz + gap;
        let cmax = packed[..nh].iter().map(|p| p.cout).max().unwrap_or(1);
        let mut ring: Vec<Vec<f32>> = vec![Vec::new(); cap];
        let full = Box3::full([g.nx, g.ny, g.nz]);
        let mut in_base = 0usize;
        // Normalisation owed by the current input slices: (per-channel mean/inv-std, channels,
        // activation). It is applied lazily, slice by slice, right before a slice is first
        // read, so the slice is still in cache for the conv that reads it.
        let mut owed: Option<Owed> = None;
        let mut normed = 0usize;
        let settle =
            |ring: &mut Vec<Vec<f32>>, owed: &Option<Owed>, normed: &mut usize, in_base: usize, upto: usize| {
                if let Some((ms, cout, act)) = owed {
                    while *normed < upto {
                        let pos = (in_base + *normed) % cap;
                        self.norm_slice(&mut ring[pos], g, *cout, ms, *act, gelu);
                        *normed += 1;
                    }
                }
            };
        for l in 0..nh {
            let p = &packed[l];
            let out_base = if l == 0 { 0 } else { (in_base + cap - gap) % cap };
            let mut stats = vec![(0.0f64, 0.0f64); p.cout];
            for z in 0..g.nz {
                settle(&mut ring, &owed, &mut normed, in_base, (z + p.d + 1).min(g.nz));
                let pos = (out_base + z) % cap;
                let mut slot = std::mem::take(&mut ring[pos]);
                if slot.is_empty() {
                    slot = vec![0.0; g.slice_len(cmax)];
                }
                let inputs = [0isize, 1, 2].map(|kz| {
                    let zz = z as isize + (kz - 1) * p.d as isize;
                    (zz >= 0 && zz < g.nz as isize).then(|| {
                        let zz = zz as usize;
                        if l == 0 {
                            input[zz].as_ptr()
                        } else {
                            ring[(in_base + zz) % cap].as_ptr()
                        }
                    })
                });
                let s = self.conv_slice(p, g, inputs, slot.as_mut_ptr(), &full, p.norm.is_some(), gelu);
                for (a, v) in stats.iter_mut().zip(s) {
                    a.0 += v.0;
                    a.1 += v.1;
                }
                ring[pos] = slot;
            }
            owed = p.norm.map(|eps| {
                let n = (g.nx * g.ny * g.nz) as f64;
                let ms = stats
                    .iter()
                    .map(|&(s, q)| {
                        let mean = s / n;
                        let var = (q / n - mean * mean).max(0.0);
                        (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
                    })
                    .collect();
                (ms, p.cout, p.act)
            });
            normed = 0;
            in_base = out_base;
        }
        let mut labels = vec![0u8; g.nx * g.ny * g.nz];
        for z in 0..g.nz {
            let ip = if nh == 0 {
                input[z].as_ptr()
            } else {
                settle(&mut ring, &owed, &mut normed, in_base, z + 1);
                ring[(in_base + z) % cap].as_ptr()
            };
            let plane = &mut labels[z * g.nx * g.ny..(z + 1) * g.nx * g.ny];
            self.head_slice(&packed[nh], g, ip, plane, &full);
        }
        Ok(labels)
    }
}

/// FLOPs (2 per multiply-add, conv + bias) the CPU engine actually performs for `model` on
/// a volume of `dims` restricted to `region` (instance-norm models: always the full cube),
/// counting the 32-wide x tiles it computes. For benchmarks.
pub fn planned_flops(model: &Model, dims: [usize; 3], region: Option<&Box3>) -> f64 {
    let nl = model.layers.len();
    let per_vox = |l: &crate::model::Layer| (2 * l.cin * l.cout * l.kernel.pow(3)) as f64;
    let full = Box3::full(dims);
    let region = if model.has_instance_norm() {
        &full
    } else {
        region.unwrap_or(&full)
    };
    let nx_pad = dims[0].div_ceil(32) * 32;
    let mut r = 0;
    let mut total = 0.0;
    for i in (0..nl).rev() {
        let b = region.grow(r, dims);
        let x0 = b.0[0].start / 32 * 32;
        let x1 = (b.0[0].end.div_ceil(32) * 32).min(nx_pad);
        total += per_vox(&model.layers[i]) * ((x1 - x0) * b.0[1].len() * b.0[2].len()) as f64;
        r += (model.layers[i].kernel / 2) * model.layers[i].dilation;
    }
    total
}

impl Engine for CpuEngine {
    fn name(&self) -> String {
        format!("cpu-{:?}", self.isa).to_lowercase()
    }

    fn run(&self, model: &Model, input: &[f32], dims: [usize; 3], opts: &RunOptions) -> Result<Vec<u8>> {
        let [nx, ny, nz] = dims;
        if input.len() != nx * ny * nz || nx == 0 || ny == 0 || nz == 0 {
            return Err(VolumetryError::BadInput(
                "input size does not match its dimensions".into(),
            ));
        }
        let nl = model.layers.len();
        let packed: Vec<Packed> = model
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| pack(l, self.isa, i + 1 == nl))
            .collect();
        let dmax = packed.iter().map(|p| p.rad).max().unwrap_or(0);
        let pad = dmax.div_ceil(16).max(1) * 16;
        let nx_pad = nx.div_ceil(32) * 32;
        let g = Geo {
            nx,
            ny,
            nz,
            nx_pad,
            pad,
            rs: pad + nx_pad + pad,
        };
        // layer-0 input as padded slices [z][y][1][rs]
        let slices: Vec<Vec<f32>> = (0..nz)
            .into_par_iter()
            .map(|z| {
                let mut s = vec![0.0f32; g.slice_len(1)];
                for y in 0..ny {
                    let src = &input[nx * (y + ny * z)..nx * (y + ny * z) + nx];
                    s[y * g.rs + pad..y * g.rs + pad + nx].copy_from_slice(src);
                }
                s
            })
            .collect();
        if model.has_instance_norm() {
            return self.run_materialised(&packed, &g, &slices, opts.gelu);
        }
        let full = Box3::full(dims);
        let region = opts
            .region
            .clone()
            .map(|b| Box3([0, 1, 2].map(|a| b.0[a].start.min(dims[a])..b.0[a].end.min(dims[a]))))
            .unwrap_or(full.clone());
        if region.is_empty() {
            return Ok(vec![0u8; nx * ny * nz]);
        }
        let mut labels = self.run_streaming(&packed, &g, &slices, &region, opts.gelu)?;
        if region != full {
            // tiles are 32 wide: clear whatever was computed outside the requested box
            for z in 0..nz {
                for y in 0..ny {
                    for x in 0..nx {
                        if !region.contains(x, y, z) {
                            labels[x + nx * (y + ny * z)] = 0;
                        }
                    }
                }
            }
        }
        Ok(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::naive;
    use crate::model::Layer;

    /// Small deterministic PRNG (xorshift) so tests need no extra crate.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn f(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    pub(crate) fn layer(
        rng: &mut Rng,
        cin: usize,
        cout: usize,
        k: usize,
        d: usize,
        act: Activation,
        norm: bool,
    ) -> Layer {
        Layer {
            cin,
            cout,
            kernel: k,
            dilation: d,
            weight: (0..cout * cin * k * k * k).map(|_| rng.f() * 0.5).collect(),
            bias: (0..cout).map(|_| if norm { 0.0 } else { rng.f() * 0.2 }).collect(),
            instance_norm_eps: norm.then_some(1e-5),
            activation: act,
        }
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// One dilated 3×3×3 conv layer (multi-channel in and out, ELU) vs the naive loops.
    #[test]
    fn dilated_conv_layer_matches_naive() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        let dims = [37, 21, 13];
        let (cin, cout, d) = (5, 23, 3);
        let l = layer(&mut rng, cin, cout, 3, d, Activation::Elu, false);
        let n = dims.iter().product::<usize>();
        let input: Vec<f32> = (0..cin * n).map(|_| rng.f()).collect();
        let mut want = naive::conv3d(&l, &input, dims);
        want.iter_mut()
            .for_each(|v| *v = naive::activate(*v, Activation::Elu, GeluForm::Exact));
        for isa in isas() {
            let eng = CpuEngine::with_isa(isa);
            let p = pack(&l, isa, false);
            let nx_pad = dims[0].div_ceil(32) * 32;
            let g = Geo {
                nx: dims[0],
                ny: dims[1],
                nz: dims[2],
                nx_pad,
                pad: 16,
                rs: 32 + nx_pad,
            };
            let slices: Vec<Vec<f32>> = (0..dims[2])
                .map(|z| {
                    let mut s = vec![0.0; g.slice_len(cin)];
                    for y in 0..dims[1] {
                        for c in 0..cin {
                            for x in 0..dims[0] {
                                s[(y * cin + c) * g.rs + g.pad + x] = input[c * n + x + dims[0] * (y + dims[1] * z)];
                            }
                        }
                    }
                    s
                })
                .collect();
            let full = Box3::full(dims);
            let mut maxerr = 0.0f32;
            for z in 0..dims[2] {
                let mut out = vec![0.0; g.slice_len(cout)];
                let inputs = [0isize, 1, 2].map(|kz| {
                    let zz = z as isize + (kz - 1) * d as isize;
                    (zz >= 0 && zz < dims[2] as isize).then(|| slices[zz as usize].as_ptr())
                });
                eng.conv_slice(&p, &g, inputs, out.as_mut_ptr(), &full, false, GeluForm::Exact);
                for y in 0..dims[1] {
                    for c in 0..cout {
                        for x in 0..dims[0] {
                            let got = out[(y * cout + c) * g.rs + g.pad + x];
                            let w = want[c * n + x + dims[0] * (y + dims[1] * z)];
                            maxerr = maxerr.max((got - w).abs());
                        }
                        // padding columns stay zero
                        assert!(
                            out[(y * cout + c) * g.rs + g.pad + dims[0]..(y * cout + c) * g.rs + g.pad + nx_pad]
                                .iter()
                                .all(|&v| v == 0.0)
                        );
                    }
                }
            }
            assert!(maxerr < 2e-5, "{isa:?}: max abs error {maxerr}");
        }
    }

    fn small_model(rng: &mut Rng, norm: bool) -> Model {
        let (act, c) = if norm {
            (Activation::Gelu, 6)
        } else {
            (Activation::Relu, 9)
        };
        let layers = vec![
            layer(rng, 1, c, 3, 1, act, norm),
            layer(rng, c, c, 3, 2, if norm { act } else { Activation::Elu }, norm),
            layer(rng, c, c, 3, 4, act, norm),
            layer(rng, c, 14, 1, 1, Activation::None, false),
        ];
        Model {
            id: None,
            name: "test".into(),
            layers,
            labels: (0..14).map(|i| format!("l{i}")).collect(),
            flops_per_voxel: 0.0,
        }
    }

    #[test]
    fn streaming_network_matches_naive_and_region_is_exact() {
        let mut rng = Rng(12345);
        let m = small_model(&mut rng, false);
        let dims = [40, 23, 29];
        let n = dims.iter().product::<usize>();
        let x: Vec<f32> = (0..n).map(|_| rng.f().abs()).collect();
        let logits = naive::logits(&m, &x, dims, GeluForm::Exact);
        let want = naive::argmax(&logits, 14, n);
        for isa in isas() {
            let eng = CpuEngine::with_isa(isa);
            let got = eng.run(&m, &x, dims, &RunOptions::default()).unwrap();
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert!(diff <= n / 2000, "{isa:?}: {diff} labels differ");
            let region = Box3([5..30, 3..20, 10..17]);
            let got_r = eng
                .run(
                    &m,
                    &x,
                    dims,
                    &RunOptions {
                        region: Some(region.clone()),
                        gelu: GeluForm::Exact,
                    },
                )
                .unwrap();
            for z in 0..dims[2] {
                for y in 0..dims[1] {
                    for xx in 0..dims[0] {
                        let i = xx + dims[0] * (y + dims[1] * z);
                        if region.contains(xx, y, z) {
                            assert_eq!(
                                got_r[i], got[i],
                                "{isa:?}: inside the region labels must equal the full run"
                            );
                        } else {
                            assert_eq!(got_r[i], 0);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn instance_norm_network_matches_naive() {
        let mut rng = Rng(777);
        let m = small_model(&mut rng, true);
        let dims = [33, 17, 20];
        let n = dims.iter().product::<usize>();
        let x: Vec<f32> = (0..n).map(|_| rng.f().abs()).collect();
        for gelu in [GeluForm::Exact, GeluForm::Tanh] {
            let want = naive::argmax(&naive::logits(&m, &x, dims, gelu), 14, n);
            for isa in isas() {
                let got = CpuEngine::with_isa(isa)
                    .run(&m, &x, dims, &RunOptions { region: None, gelu })
                    .unwrap();
                let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert!(diff <= n / 2000, "{isa:?} {gelu:?}: {diff} labels differ");
            }
        }
    }

    #[test]
    fn argmax_ties_go_to_lowest_index() {
        // head: classes 0..5 with identical weights/bias for classes 1, 3 and 4 (and 0 lower)
        let mut rng = Rng(99);
        let mut l0 = layer(&mut rng, 1, 4, 3, 1, Activation::Relu, false);
        l0.bias = vec![1.0; 4];
        let mut head = layer(&mut rng, 4, 5, 1, 1, Activation::None, false);
        for c in [1, 3, 4] {
            for ci in 0..4 {
                head.weight[c * 4 + ci] = 0.25;
            }
            head.bias[c] = 10.0;
        }
        head.bias[0] = -10.0;
        head.bias[2] = -10.0;
        let m = Model {
            id: None,
            name: "tie".into(),
            layers: vec![l0, head],
            labels: (0..5).map(|i| i.to_string()).collect(),
            flops_per_voxel: 0.0,
        };
        let dims = [20, 5, 4];
        let x = vec![0.5f32; 400];
        for isa in isas() {
            let got = CpuEngine::with_isa(isa)
                .run(&m, &x, dims, &RunOptions::default())
                .unwrap();
            assert!(
                got.iter().all(|&v| v == 1),
                "{isa:?}: ties must resolve to the lowest class"
            );
        }
        // the naive oracle agrees
        assert_eq!(naive::argmax(&[1.0, 3.0, 3.0, 2.0], 4, 1), vec![1]);
    }
}
