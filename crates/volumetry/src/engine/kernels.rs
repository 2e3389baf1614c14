//! Row kernels: one output row (all x of one (y, z)) of a dilated 3×3×3 conv, and of the
//! fused 1×1×1 head + argmax. Vectorised along x (the NIfTI i axis, contiguous in memory),
//! `CB` output channels × 2 vectors of accumulators held in registers, weights broadcast.
//! Slice layout everywhere: `[y][channel][rs]`, valid x at `pad..pad+nx`, zero padding
//! around so dilated taps along x need no bounds checks.

#![allow(unsafe_op_in_unsafe_fn, clippy::too_many_arguments)]

use super::simd::*;
use crate::model::{Activation, GeluForm};

/// Output-channel block of a packed layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub c0: usize,
    pub cb: usize,
    /// Offset into the packed weights: `[tap 27 (or 1)][ci][cb]`.
    pub w_off: usize,
}

/// Everything one conv row needs. Raw pointers: rows are written by different threads,
/// each to its own disjoint row.
pub(crate) struct ConvRow<'a> {
    /// (pointer to input row of channel 0 at x = 0 (i.e. after pad), tap index of kx = 0)
    pub taps: [(*const f32, usize); 9],
    pub ntaps: usize,
    pub d: usize,
    pub cin: usize,
    pub rs: usize,
    pub blocks: &'a [Block],
    pub w: *const f32,
    pub bias: *const f32,
    /// Output row of channel 0 at x = 0.
    pub out: *mut f32,
    pub x_begin: usize,
    pub x_end: usize,
    pub nx: usize,
    pub nx_pad: usize,
    /// Activation applied in place after the row is complete (None when a norm follows).
    pub act: Activation,
    pub gelu: GeluForm,
}

pub(crate) struct HeadRow<'a> {
    /// Input row of channel 0 at x = 0.
    pub input: *const f32,
    pub rs: usize,
    pub cin: usize,
    pub blocks: &'a [Block],
    pub w: *const f32,
    /// Bias per (padded) class; padded classes carry −∞ so they never win.
    pub bias: *const f32,
    pub labels: *mut u8,
    pub x_begin: usize,
    pub x_end: usize,
    pub nx: usize,
}

#[inline(always)]
unsafe fn conv_block<S: Simd, const CB: usize>(r: &ConvRow, b: &Block) {
    let w = r.w.add(b.w_off);
    let tile = 2 * S::W;
    let mut x0 = r.x_begin;
    while x0 < r.x_end {
        let mut acc = [[S::splat(0.0); 2]; CB];
        for (c, a) in acc.iter_mut().enumerate() {
            let bv = S::splat(*r.bias.add(b.c0 + c));
            *a = [bv, bv];
        }
        for t in 0..r.ntaps {
            let (base, tap0) = r.taps[t];
            for kx in 0..3usize {
                let p0 = base.add(x0 + kx * r.d).sub(r.d);
                let wk = w.add((tap0 + kx) * r.cin * CB);
                for ci in 0..r.cin {
                    let p = p0.add(ci * r.rs);
                    let v0 = S::load(p);
                    let v1 = S::load(p.add(S::W));
                    let wp = wk.add(ci * CB);
                    for c in 0..CB {
                        let wv = S::splat(*wp.add(c));
                        acc[c][0] = S::fmadd(wv, v0, acc[c][0]);
                        acc[c][1] = S::fmadd(wv, v1, acc[c][1]);
                    }
                }
            }
        }
        for (c, a) in acc.iter().enumerate() {
            let o = r.out.add((b.c0 + c) * r.rs + x0);
            S::store(o, a[0]);
            S::store(o.add(S::W), a[1]);
        }
        x0 += tile;
    }
}

macro_rules! dispatch_cb {
    ($cb:expr, $f:ident, $S:ty, $($a:expr),*) => {
        match $cb {
            1 => $f::<$S, 1>($($a),*), 2 => $f::<$S, 2>($($a),*), 3 => $f::<$S, 3>($($a),*),
            4 => $f::<$S, 4>($($a),*), 5 => $f::<$S, 5>($($a),*), 6 => $f::<$S, 6>($($a),*),
            7 => $f::<$S, 7>($($a),*), 8 => $f::<$S, 8>($($a),*), 9 => $f::<$S, 9>($($a),*),
            10 => $f::<$S, 10>($($a),*), 11 => $f::<$S, 11>($($a),*), 12 => $f::<$S, 12>($($a),*),
            _ => unreachable!("channel block too large"),
        }
    };
}

#[inline(always)]
unsafe fn conv_row_generic<S: Simd>(r: &ConvRow) {
    for b in r.blocks {
        dispatch_cb!(b.cb, conv_block, S, r, b);
    }
    let cout: usize = r.blocks.iter().map(|b| b.cb).sum();
    for c in 0..cout {
        let row = std::slice::from_raw_parts_mut(r.out.add(c * r.rs), r.nx_pad);
        // columns beyond the volume must read as zero padding for the next layer
        row[r.nx..].fill(0.0);
        act_inplace(&mut row[r.x_begin.min(r.nx)..r.x_end.min(r.nx)], r.act, r.gelu);
    }
}

#[inline(always)]
unsafe fn head_block<S: Simd, const CB: usize>(
    r: &HeadRow,
    b: &Block,
    x0: usize,
    best: &mut [S::V; 2],
    idx: &mut [S::V; 2],
) {
    let w = r.w.add(b.w_off);
    let mut acc = [[S::splat(0.0); 2]; CB];
    for (c, a) in acc.iter_mut().enumerate() {
        let bv = S::splat(*r.bias.add(b.c0 + c));
        *a = [bv, bv];
    }
    for ci in 0..r.cin {
        let p = r.input.add(ci * r.rs + x0);
        let v0 = S::load(p);
        let v1 = S::load(p.add(S::W));
        let wp = w.add(ci * CB);
        for c in 0..CB {
            let wv = S::splat(*wp.add(c));
            acc[c][0] = S::fmadd(wv, v0, acc[c][0]);
            acc[c][1] = S::fmadd(wv, v1, acc[c][1]);
        }
    }
    // ascending class order + strict '>' = ties go to the lowest index
    for (c, a) in acc.iter().enumerate() {
        let iv = S::splat((b.c0 + c) as f32);
        for v in 0..2 {
            let (nb, ni) = S::gt_select(a[v], best[v], iv, idx[v]);
            best[v] = nb;
            idx[v] = ni;
        }
    }
}

#[inline(always)]
unsafe fn head_row_generic<S: Simd>(r: &HeadRow) {
    let tile = 2 * S::W;
    let mut x0 = r.x_begin;
    let mut tmp = [0.0f32; 32];
    while x0 < r.x_end {
        let mut best = [S::splat(f32::NEG_INFINITY); 2];
        let mut idx = [S::splat(0.0); 2];
        for b in r.blocks {
            dispatch_cb!(b.cb, head_block, S, r, b, x0, &mut best, &mut idx);
        }
        S::store(tmp.as_mut_ptr(), idx[0]);
        S::store(tmp.as_mut_ptr().add(S::W), idx[1]);
        for (l, &v) in tmp[..tile].iter().enumerate() {
            if x0 + l < r.nx {
                *r.labels.add(x0 + l) = v as u8;
            }
        }
        x0 += tile;
    }
}

// ---------------------------------------------------------------- activations

/// e^x for x in about [−87, 88], ≈1 ulp, branch-free and without float→int conversions
/// (Rust's saturating `as i32` does not vectorise well) so loops vectorise.
#[inline(always)]
pub(crate) fn exp_fast(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer in the low mantissa bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // t's bit pattern is 0x4B40_0000 + n for |n| < 2^22
    let e = (t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23;
    p * f32::from_bits(e)
}

#[inline(always)]
pub(crate) fn gelu_exact(x: f32) -> f32 {
    // erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), vectorisable
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let e = 1.0 - poly * exp_fast(-a * a);
    let erf = if z < 0.0 { -e } else { e };
    0.5 * x * (1.0 + erf)
}

#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    // 0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u))
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp_fast(-2.0 * u))
}

#[inline(always)]
pub(crate) fn act_inplace(row: &mut [f32], act: Activation, gelu: GeluForm) {
    match act {
        Activation::None => {}
        Activation::Relu => row.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Elu => row.iter_mut().for_each(|v| {
            let e = exp_fast(*v) - 1.0;
            *v = if *v > 0.0 { *v } else { e }
        }),
        Activation::Gelu => match gelu {
            GeluForm::Exact => row.iter_mut().for_each(|v| *v = gelu_exact(*v)),
            GeluForm::Tanh => row.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
        },
    }
}

/// Instance norm then activation, in place.
#[inline(always)]
fn norm_act_generic(row: &mut [f32], mean: f32, inv_std: f32, act: Activation, gelu: GeluForm) {
    row.iter_mut().for_each(|v| *v = (*v - mean) * inv_std);
    act_inplace(row, act, gelu);
}

/// (sum, sum of squares) of a row: f32 vector lanes (explicit SIMD: the auto-vectoriser
/// produced scalar-ish code here), reduced in f64.
#[inline(always)]
unsafe fn sums_generic<S: Simd>(row: &[f32]) -> (f64, f64) {
    let one = S::splat(1.0);
    let (mut s, mut q) = (S::splat(0.0), S::splat(0.0));
    let n = row.len() / S::W * S::W;
    let p = row.as_ptr();
    let mut i = 0;
    while i < n {
        let v = S::load(p.add(i));
        s = S::fmadd(one, v, s);
        q = S::fmadd(v, v, q);
        i += S::W;
    }
    let (mut a, mut b) = ([0.0f32; 16], [0.0f32; 16]);
    S::store(a.as_mut_ptr(), s);
    S::store(b.as_mut_ptr(), q);
    let mut ss: f64 = a[..S::W].iter().map(|&v| v as f64).sum();
    let mut qq: f64 = b[..S::W].iter().map(|&v| v as f64).sum();
    for &v in &row[n..] {
        ss += v as f64;
        qq += (v as f64) * (v as f64);
    }
    (ss, qq)
}

// ---------------------------------------------------------------- ISA wrappers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// Best ISA of this CPU; `NEUROVOL_ISA=portable|avx2|avx512` forces a lower one.
    pub fn detect() -> Isa {
        let want = std::env::var("NEUROVOL_ISA").ok();
        #[cfg(target_arch = "x86_64")]
        {
            let has512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl");
            let has2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            match want.as_deref() {
                Some("portable") => return Isa::Portable,
                Some("avx2") if has2 => return Isa::Avx2,
                _ => {}
            }
            if has512 {
                return Isa::Avx512;
            }
            if has2 {
                return Isa::Avx2;
            }
        }
        let _ = want;
        Isa::Portable
    }

    pub(crate) fn cb_max(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 | Isa::Portable => 6,
        }
    }

    pub(crate) fn conv_row(self, r: &ConvRow) {
        // SAFETY: pointers in `r` were built by the engine over live, correctly sized buffers;
        // the ISA was checked at run time by `detect`.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => conv_row_avx512(r),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => conv_row_avx2(r),
                _ => conv_row_generic::<Portable>(r),
            }
        }
    }

    pub(crate) fn head_row(self, r: &HeadRow) {
        // SAFETY: as in conv_row.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => head_row_avx512(r),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => head_row_avx2(r),
                _ => head_row_generic::<Portable>(r),
            }
        }
    }

    pub(crate) fn norm_act(self, row: &mut [f32], mean: f32, inv_std: f32, act: Activation, gelu: GeluForm) {
        // SAFETY: feature checked by `detect`.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => norm_act_avx512(row, mean, inv_std, act, gelu),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => norm_act_avx2(row, mean, inv_std, act, gelu),
                _ => norm_act_generic(row, mean, inv_std, act, gelu),
            }
        }
    }

    pub(crate) fn sums(self, row: &[f32]) -> (f64, f64) {
        // SAFETY: feature checked by `detect`.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => sums_avx512(row),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => sums_avx2(row),
                _ => sums_generic::<Portable>(row),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn conv_row_avx512(r: &ConvRow) {
    conv_row_generic::<Avx512>(r)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_row_avx2(r: &ConvRow) {
    conv_row_generic::<Avx2>(r)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn head_row_avx512(r: &HeadRow) {
    head_row_generic::<Avx512>(r)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_row_avx2(r: &HeadRow) {
    head_row_generic::<Avx2>(r)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn norm_act_avx512(row: &mut [f32], mean: f32, inv_std: f32, act: Activation, gelu: GeluForm) {
    norm_act_generic(row, mean, inv_std, act, gelu)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn norm_act_avx2(row: &mut [f32], mean: f32, inv_std: f32, act: Activation, gelu: GeluForm) {
    norm_act_generic(row, mean, inv_std, act, gelu)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn sums_avx512(row: &[f32]) -> (f64, f64) {
    sums_generic::<Avx512>(row)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sums_avx2(row: &[f32]) -> (f64, f64) {
    sums_generic::<Avx2>(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_math_accuracy() {
        let mut x = -20.0f32;
        while x < 20.0 {
            let e = exp_fast(x);
            assert!(
                ((e as f64 - (x as f64).exp()) / (x as f64).exp()).abs() < 3e-7,
                "exp {x}"
            );
            let ge = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / 2f64.sqrt()));
            assert!(
                (gelu_exact(x) as f64 - ge).abs() < 1e-6 * (1.0 + x.abs() as f64),
                "gelu {x}"
            );
            let u = 0.7978845608 * (x as f64 + 0.044715 * (x as f64).powi(3));
            let gt = 0.5 * x as f64 * (1.0 + u.tanh());
            assert!(
                (gelu_tanh(x) as f64 - gt).abs() < 1e-6 * (1.0 + x.abs() as f64),
                "gelu_tanh {x}"
            );
            x += 0.0137;
        }
    }
}
