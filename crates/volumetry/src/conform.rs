//! Conform (RECIPE.md §1) and the nearest-neighbour label reslice back to the input grid
//! (RECIPE.md §6). Arithmetic is done in f32 in the same order as niimath / conform_ref.py
//! so that the uint8 conformed volume is bit-identical to the reference where possible.

use rayon::prelude::*;

use crate::error::{Result, VolumetryError};
use crate::nifti::{Affine, Header, INTENT_LABEL, Volume, affine_valid};

/// Conformed grid edge (voxels).
pub const CONFORMED_DIM: usize = 256;

/// A conformed volume: 256³ uint8, LIA, 1 mm.
#[derive(Clone, Debug)]
pub struct Conformed {
    pub volume: Volume<u8>,
    /// Intensity scaling applied before resampling: (lo, hi, scale).
    pub scaling: (f32, f32, f32),
}

/// FastSurfer-style robust 0..255 scaling (RECIPE §1.1). Returns scaled data and (lo, hi, scale).
pub fn robust_scale(v: &[f32]) -> (Vec<f32>, (f32, f32, f32)) {
    let (lo, hi, scale) = robust_range(v);
    (apply_scaling(v, (lo, hi, scale)), (lo, hi, scale))
}

/// `v` scaled by (lo, hi, scale) and clamped to 0..255.
pub fn apply_scaling(v: &[f32], (lo, _, scale): (f32, f32, f32)) -> Vec<f32> {
    v.par_iter()
        .map(|&x| (0.0f32 + scale * (x - lo)).clamp(0.0, 255.0))
        .collect()
}

/// The (lo, hi, scale) of [`robust_scale`].
fn robust_range(v: &[f32]) -> (f32, f32, f32) {
    let n = v.len();
    let mut mn = f32::INFINITY;
    let mut mx = f32::NEG_INFINITY;
    let mut nneg = 0usize;
    let mut nz = 0usize;
    for &x in v {
        mn = mn.min(x);
        mx = mx.max(x);
        nneg += (x < 0.0) as usize;
        nz += (x.abs() >= 1e-15) as usize;
    }
    let mut lo = mn;
    if lo < 0.0 && 100.0 * nneg as f64 / (n as f64) < 2.0 {
        lo = 0.0;
    }
    let bin = (mx - lo) / 1000.0f32;
    let mut hist = vec![0usize; 1000];
    for &x in v {
        let b = ((x - lo) / bin).trunc();
        // NaN (bin == 0) → 0, like the C cast after clamping
        let b = if b.is_nan() { 0.0 } else { b.clamp(0.0, 999.0) };
        hist[b as usize] += 1;
    }
    let mut cs = vec![0usize; 1000];
    let mut acc = 0;
    for i in 0..1000 {
        acc += hist[i];
        cs[i] = acc;
    }
    let f_high = 0.98f32 as f64;
    let nth = n as i64 - ((1.0 - f_high) * nz as f64) as i64;
    let mut idx = 0usize;
    while idx < 999 && (cs[idx + 1] as i64) < nth {
        idx += 1;
    }
    let hi = idx as f32 * bin + lo;
    let scale = if hi != lo { 255.0f32 / (hi - lo) } else { 1.0 };
    (lo, hi, scale)
}

fn mul(a: &Affine, b: &Affine) -> Affine {
    let mut m = [[0.0; 4]; 3];
    for r in 0..3 {
        for c in 0..4 {
            m[r][c] = (0..3).map(|k| a[r][k] * b[k][c]).sum::<f64>() + if c == 3 { a[r][3] } else { 0.0 };
        }
    }
    m
}

pub(crate) fn inverse(a: &Affine) -> Option<Affine> {
    let r = [
        [a[0][0], a[0][1], a[0][2]],
        [a[1][0], a[1][1], a[1][2]],
        [a[2][0], a[2][1], a[2][2]],
    ];
    let det = crate::nifti::det3(&r);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let mut inv = [[0.0; 4]; 3];
    for i in 0..3 {
        for j in 0..3 {
            // cofactor transpose
            let (i1, i2) = ((j + 1) % 3, (j + 2) % 3);
            let (j1, j2) = ((i + 1) % 3, (i + 2) % 3);
            inv[i][j] = (r[i1][j1] * r[i2][j2] - r[i1][j2] * r[i2][j1]) / det;
        }
    }
    for i in 0..3 {
        inv[i][3] = -(0..3).map(|k| inv[i][k] * a[k][3]).sum::<f64>();
    }
    Some(inv)
}

/// Voxel→voxel map from output voxel coordinates to source voxel coordinates:
/// inverse(inverse(out_aff) · src_aff), computed in f64 and rounded to f32 (as conform_ref).
fn voxel_map(src_aff: &Affine, out_aff: &Affine) -> Result<[[f32; 4]; 3]> {
    let inv_out = inverse(out_aff).ok_or_else(|| VolumetryError::BadInput("degenerate output affine".into()))?;
    let m = inverse(&mul(&inv_out, src_aff))
        .ok_or_else(|| VolumetryError::BadInput("the image orientation matrix is degenerate".into()))?;
    Ok(m.map(|r| r.map(|v| v as f32)))
}

/// Output affine of the conformed grid (RECIPE §1.2): LIA, 1 mm, centre of the input
/// (voxel dims/2) mapped to conformed voxel (128,128,128). Computed in f32 like niimath.
pub fn conformed_affine(in_aff: &Affine, in_dims: [usize; 3]) -> Affine {
    let a: Vec<Vec<f32>> = in_aff.iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect();
    let half = [
        in_dims[0] as f32 / 2.0,
        in_dims[1] as f32 / 2.0,
        in_dims[2] as f32 / 2.0,
        1.0f32,
    ];
    let mut centre = [0.0f32; 3];
    for r in 0..3 {
        centre[r] = a[r][0] * half[0] + a[r][1] * half[1] + a[r][2] * half[2] + a[r][3] * half[3];
    }
    let mdc = [[-1.0f32, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
    let d = CONFORMED_DIM as f32;
    let mut out = [[0.0f64; 4]; 3];
    for r in 0..3 {
        let vc = 0.5 * (mdc[r][0] * d + mdc[r][1] * d + mdc[r][2] * d);
        for c in 0..3 {
            out[r][c] = mdc[r][c] as f64;
        }
        out[r][3] = (centre[r] - vc) as f64;
    }
    out
}

/// Round half away from zero, clamp to 0..255 (C `round()` then uint8 clamp).
#[inline]
fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Conform a native volume to the 256³ LIA 1 mm uint8 grid the models expect.
pub fn conform(input: &Volume<f32>) -> Result<Conformed> {
    conform_scaled(input, None)
}

/// [`conform`] with the intensity scaling `scaling` (lo, hi, scale) instead of the one
/// measured on `input` (a defaced volume is scaled as the head it came from).
pub fn conform_scaled(input: &Volume<f32>, scaling: Option<(f32, f32, f32)>) -> Result<Conformed> {
    // conform_ref/niimath hold the input affine in f32
    let in_aff = input.header.conform_affine().map(|r| r.map(|v| v as f32 as f64));
    if !affine_valid(&in_aff) {
        return Err(VolumetryError::BadInput(
            "the image has no usable orientation (qform/sform)".into(),
        ));
    }
    let (scaled, scaling) = match scaling {
        Some(given) => (apply_scaling(&input.data, given), given),
        None => robust_scale(&input.data),
    };
    let fill = scaled.iter().copied().fold(f32::INFINITY, f32::min);
    let out_aff = conformed_affine(&in_aff, input.dims);
    let m = voxel_map(&in_aff, &out_aff)?;
    let [nx, ny, nz] = input.dims;
    let n = CONFORMED_DIM;
    let mut data = vec![0u8; n * n * n];
    data.par_chunks_mut(n * n).enumerate().for_each(|(z, plane)| {
        let zf = z as f32;
        for y in 0..n {
            let yf = y as f32;
            let ry = [
                yf * m[0][1] + zf * m[0][2] + m[0][3],
                yf * m[1][1] + zf * m[1][2] + m[1][3],
                yf * m[2][1] + zf * m[2][2] + m[2][3],
            ];
            for x in 0..n {
                let xf = x as f32;
                let ix = xf * m[0][0] + ry[0];
                let iy = xf * m[1][0] + ry[1];
                let iz = xf * m[2][0] + ry[2];
                let (fx, fy, fz) = (ix.floor(), iy.floor(), iz.floor());
                let v = if fx >= 0.0
                    && fy >= 0.0
                    && fz >= 0.0
                    && fx + 1.0 < nx as f32
                    && fy + 1.0 < ny as f32
                    && fz + 1.0 < nz as f32
                {
                    let (x0, y0, z0) = (fx as usize, fy as usize, fz as usize);
                    let (dx, dy, dz) = (ix - fx, iy - fy, iz - fz);
                    let (wx0, wy0, wz0) = (1.0 - dx, 1.0 - dy, 1.0 - dz);
                    let s = |a: usize, b: usize, c: usize| scaled[a + nx * (b + ny * c)];
                    let mut v = 0.0f32;
                    v += s(x0, y0, z0) * wx0 * wy0 * wz0;
                    v += s(x0, y0, z0 + 1) * wx0 * wy0 * dz;
                    v += s(x0, y0 + 1, z0) * wx0 * dy * wz0;
                    v += s(x0, y0 + 1, z0 + 1) * wx0 * dy * dz;
                    v += s(x0 + 1, y0, z0) * dx * wy0 * wz0;
                    v += s(x0 + 1, y0, z0 + 1) * dx * wy0 * dz;
                    v += s(x0 + 1, y0 + 1, z0) * dx * dy * wz0;
                    v += s(x0 + 1, y0 + 1, z0 + 1) * dx * dy * dz;
                    v
                } else {
                    fill
                };
                plane[x + n * y] = to_u8(v);
            }
        }
    });
    let mut header = Header {
        datatype: 2,
        bitpix: 8,
        ..Header::default()
    };
    let code = input.header.qform_code.max(input.header.sform_code).max(1);
    header.set_affine(&out_aff, code);
    header.pixdim[4..].fill(0.0);
    Ok(Conformed {
        volume: Volume {
            dims: [n; 3],
            data,
            header,
        },
        scaling,
    })
}

/// Nearest-neighbour reslice of conformed labels onto the grid described by `native`
/// (RECIPE §6, niimath `-reslice_nn`): 0 outside the conformed cube.
pub fn labels_to_native(labels: &Volume<u8>, native: &Header, native_dims: [usize; 3]) -> Result<Volume<u8>> {
    let src_aff = labels.header.sform_or_qform();
    let out_aff = native.sform_or_qform();
    let m = voxel_map(&src_aff, &out_aff)?;
    let [sx, sy, sz] = labels.dims;
    let [nx, ny, _nz] = native_dims;
    let mut data = vec![0u8; native_dims.iter().product()];
    data.par_chunks_mut(nx * ny).enumerate().for_each(|(z, plane)| {
        let zf = z as f32;
        for y in 0..ny {
            let yf = y as f32;
            let ry = [
                yf * m[0][1] + zf * m[0][2] + m[0][3],
                yf * m[1][1] + zf * m[1][2] + m[1][3],
                yf * m[2][1] + zf * m[2][2] + m[2][3],
            ];
            for x in 0..nx {
                let xf = x as f32;
                let (ix, iy, iz) = (
                    (xf * m[0][0] + ry[0]).round(),
                    (xf * m[1][0] + ry[1]).round(),
                    (xf * m[2][0] + ry[2]).round(),
                );
                if ix >= 0.0 && iy >= 0.0 && iz >= 0.0 && ix < sx as f32 && iy < sy as f32 && iz < sz as f32 {
                    plane[x + nx * y] = labels.data[ix as usize + sx * (iy as usize + sy * iz as usize)];
                }
            }
        }
    });
    let mut header = native.clone();
    header.datatype = 2;
    header.bitpix = 8;
    header.scl_slope = 1.0;
    header.scl_inter = 0.0;
    header.intent_code = INTENT_LABEL;
    // descrip can carry acquisition details from the converter: never copy it into outputs
    header.descrip = [0; 80];
    header.dim = [3, nx as i16, ny as i16, native_dims[2] as i16, 1, 1, 1, 1];
    Ok(Volume {
        dims: native_dims,
        data,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(dims: [usize; 3], aff: &Affine, f: impl Fn(usize, usize, usize) -> f32) -> Volume<f32> {
        let mut h = Header::default();
        h.set_affine(aff, 1);
        let mut data = vec![0.0; dims.iter().product()];
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    data[i + dims[0] * (j + dims[1] * k)] = f(i, j, k);
                }
            }
        }
        Volume { dims, data, header: h }
    }

    /// World (mm) position of a conformed voxel.
    fn world(a: &Affine, p: [f64; 3]) -> [f64; 3] {
        [0, 1, 2].map(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
    }

    #[test]
    fn ras_input_becomes_lia_with_centre_preserved() {
        // 1 mm RAS input, 100×120×90, a bright cube at known world coords
        let dims = [100, 120, 90];
        let aff: Affine = [[1.0, 0.0, 0.0, -50.0], [0.0, 1.0, 0.0, -60.0], [0.0, 0.0, 1.0, -45.0]];
        let v = vol(dims, &aff, |i, j, k| {
            if (60..70).contains(&i) && (30..40).contains(&j) && (50..55).contains(&k) {
                100.0
            } else {
                10.0
            }
        });
        let c = conform(&v).unwrap();
        let oa = c.volume.header.sform_affine();
        // LIA rotation
        assert_eq!([oa[0][0], oa[1][2], oa[2][1]], [-1.0, 1.0, -1.0]);
        // centre: world of input (50,60,45) == world of output (128,128,128)
        let wi = world(&aff, [50.0, 60.0, 45.0]);
        let wo = world(&oa, [128.0, 128.0, 128.0]);
        for r in 0..3 {
            assert!((wi[r] - wo[r]).abs() < 1e-4);
        }
        // the bright cube lands where the affines say it should
        let p = world(&aff, [65.0, 35.0, 52.0]);
        let inv = inverse(&oa).unwrap();
        let q = world(&inv, p).map(|x| x.round() as usize);
        let at = |i: usize, j: usize, k: usize| c.volume.data[i + 256 * (j + 256 * k)];
        // hi == lo here (98 % of voxels in the first histogram bin) → scale 1: 100 − 10
        assert_eq!(c.scaling, (10.0, 10.0, 1.0));
        assert_eq!(at(q[0], q[1], q[2]), 90);
        // outside the input field of view → fill (0)
        assert_eq!(at(2, 2, 2), 0);
    }

    #[test]
    fn flipped_input_gives_same_conformed_volume() {
        // same object stored with i reversed (LAS vs RAS); the conformed result must match
        let dims = [64, 64, 64];
        let f =
            |i: usize, j: usize, k: usize| ((i * 7 + j * 3 + k * 11) % 50) as f32 + if i > 40 { 100.0 } else { 0.0 };
        let ras: Affine = [[1.0, 0.0, 0.0, -32.0], [0.0, 1.0, 0.0, -32.0], [0.0, 0.0, 1.0, -32.0]];
        let a = vol(dims, &ras, f);
        // LAS: world x = -(i') + 31 - 32 with i' = 63 - i → identical world positions
        let las: Affine = [[-1.0, 0.0, 0.0, 31.0], [0.0, 1.0, 0.0, -32.0], [0.0, 0.0, 1.0, -32.0]];
        let b = vol(dims, &las, |i, j, k| f(63 - i, j, k));
        let (ca, cb) = (conform(&a).unwrap(), conform(&b).unwrap());
        // centre convention (dims/2) shifts by one voxel when flipping an even dim; compare
        // through world coordinates: cb is ca shifted by exactly 1 voxel along conformed i
        let sa = ca.volume.header.sform_affine();
        let sb = cb.volume.header.sform_affine();
        let shift = [sb[0][3] - sa[0][3], sb[1][3] - sa[1][3], sb[2][3] - sa[2][3]];
        assert!(
            (shift[0].abs() - 1.0).abs() < 1e-6 && shift[1].abs() < 1e-6 && shift[2].abs() < 1e-6,
            "{shift:?}"
        );
        let di = (-shift[0]).round() as isize; // conformed i runs towards -x
        let at = |v: &Volume<u8>, i: usize, j: usize, k: usize| v.data[i + 256 * (j + 256 * k)];
        let mut same = 0;
        let mut tot = 0;
        for k in 100..156 {
            for j in 100..156 {
                for i in 100..156 {
                    tot += 1;
                    same += (at(&ca.volume, i, j, k) == at(&cb.volume, (i as isize - di) as usize, j, k)) as usize;
                }
            }
        }
        assert_eq!(same, tot);
    }

    #[test]
    fn oblique_input_resamples_by_world_position() {
        // 30° rotation about z, 1.2 mm voxels; intensity = smooth function of world position
        let th = 30f64.to_radians();
        let s = 1.2;
        let dims = [80, 80, 60];
        let aff: Affine = [
            [s * th.cos(), -s * th.sin(), 0.0, 0.0],
            [s * th.sin(), s * th.cos(), 0.0, -60.0],
            [0.0, 0.0, s, -36.0],
        ];
        let g = |w: [f64; 3]| (20.0 + 0.5 * w[0] + 0.3 * w[1] + 0.2 * w[2] + 100.0) as f32;
        let v = vol(dims, &aff, |i, j, k| g(world(&aff, [i as f64, j as f64, k as f64])));
        let c = conform(&v).unwrap();
        let (lo, _hi, sc) = c.scaling;
        let oa = c.volume.header.sform_affine();
        // near the centre the conformed value equals the scaled linear function of world position
        for &(i, j, k) in &[(128, 128, 128), (120, 140, 110), (135, 125, 130)] {
            let w = world(&oa, [i as f64, j as f64, k as f64]);
            let want = ((g(w) - lo) * sc).clamp(0.0, 255.0);
            let got = c.volume.data[i + 256 * (j + 256 * k)] as f32;
            assert!((got - want).abs() <= 1.0, "{got} vs {want}");
        }
        // inverse map of labels: a label cube round-trips onto the native grid
        let mut lab = Volume {
            dims: [256; 3],
            data: vec![0u8; 256 * 256 * 256],
            header: c.volume.header.clone(),
        };
        for k in 110..150 {
            for j in 110..150 {
                for i in 110..150 {
                    lab.data[i + 256 * (j + 256 * k)] = 7;
                }
            }
        }
        let nat = labels_to_native(&lab, &v.header, dims).unwrap();
        let n7 = nat.data.iter().filter(|&&x| x == 7).count() as f64 * s * s * s;
        assert!((n7 - 40.0f64.powi(3)).abs() / 40.0f64.powi(3) < 0.05, "{n7}");
    }

    #[test]
    fn identity_geometry_zeroes_last_planes() {
        // already-conformed LIA input: grid unchanged, i/j/k = 255 planes filled with 0
        let aff: Affine = [
            [-1.0, 0.0, 0.0, 128.0],
            [0.0, 0.0, 1.0, -128.0],
            [0.0, -1.0, 0.0, 128.0],
        ];
        let v = vol([256; 3], &aff, |i, j, k| 1.0 + ((i + j + k) % 3) as f32);
        let c = conform(&v).unwrap();
        assert_eq!(c.volume.header.sform_affine(), aff);
        let at = |i: usize, j: usize, k: usize| c.volume.data[i + 256 * (j + 256 * k)];
        assert_eq!(at(255, 10, 10), 0);
        assert_eq!(at(10, 255, 10), 0);
        assert_eq!(at(10, 10, 255), 0);
        assert!(at(254, 254, 253) > 0); // value 3 of 1..3
    }
}
