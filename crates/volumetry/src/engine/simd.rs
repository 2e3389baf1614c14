//! Tiny SIMD abstraction so one generic kernel compiles to AVX-512, AVX2+FMA and a
//! portable path. Every method is `#[inline(always)]`: the generic kernels are only ever
//! instantiated inside `#[target_feature]` wrappers, where the intrinsics inline.

#![allow(unsafe_op_in_unsafe_fn)]

pub(crate) trait Simd: Copy {
    /// Lanes per vector.
    const W: usize;
    type V: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// a·b + c
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane-wise: where `acc > best` (strict, NaN never wins) take (acc, idx_new).
    unsafe fn gt_select(acc: Self::V, best: Self::V, idx_new: Self::V, idx_best: Self::V) -> (Self::V, Self::V);
}

#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl Simd for Portable {
    const W: usize = 8;
    type V = [f32; 8];
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        std::ptr::read_unaligned(p as *const [f32; 8])
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        std::ptr::write_unaligned(p as *mut [f32; 8], v)
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        let mut r = c;
        for i in 0..8 {
            r[i] += a[i] * b[i];
        }
        r
    }
    #[inline(always)]
    unsafe fn gt_select(acc: Self::V, best: Self::V, idx_new: Self::V, idx_best: Self::V) -> (Self::V, Self::V) {
        let mut b = best;
        let mut i = idx_best;
        for l in 0..8 {
            if acc[l] > best[l] {
                b[l] = acc[l];
                i[l] = idx_new[l];
            }
        }
        (b, i)
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;
    impl Simd for Avx512 {
        const W: usize = 16;
        type V = __m512;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn gt_select(acc: __m512, best: __m512, idx_new: __m512, idx_best: __m512) -> (__m512, __m512) {
            let m = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(acc, best);
            (
                _mm512_mask_blend_ps(m, best, acc),
                _mm512_mask_blend_ps(m, idx_best, idx_new),
            )
        }
    }

    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;
    impl Simd for Avx2 {
        const W: usize = 8;
        type V = __m256;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn gt_select(acc: __m256, best: __m256, idx_new: __m256, idx_best: __m256) -> (__m256, __m256) {
            let m = _mm256_cmp_ps::<_CMP_GT_OQ>(acc, best);
            (_mm256_blendv_ps(best, acc, m), _mm256_blendv_ps(idx_best, idx_new, m))
        }
    }
}
