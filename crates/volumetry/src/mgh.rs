//! FreeSurfer's MGH/MGZ volumes (`T1.mgz`, `aseg.mgz`, `norm.mgz`), read into the same
//! [`Volume`] as NIfTI, for the accuracy bench that compares our labels with FreeSurfer's.
//!
//! The format (FreeSurfer's `mghformat`): a big-endian header (version 1; width, height,
//! depth, frames, type, dof as i32; a "good RAS" flag as i16; then voxel sizes, the 3×3
//! direction cosines column by column and the centre's RAS as f32), the voxels from byte
//! 284, x fastest; `.mgz` is the same gzipped. The voxel→RAS matrix is
//! `M = Mdc · diag(sizes)`, `P0 = c_ras − M · (dims / 2)`.

use std::io::Read;
use std::path::Path;

use crate::error::{Result, VolumetryError};
use crate::nifti::{Header, Volume};

const DATA_OFFSET: usize = 284;

fn bad(path: &Path, why: impl std::fmt::Display) -> VolumetryError {
    VolumetryError::BadInput(format!("{}: not a FreeSurfer MGH volume ({why})", path.display()))
}

/// The first frame of an `.mgh` or `.mgz` file, as f32.
pub fn read(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|e| VolumetryError::Io(format!("cannot read {}: {e}", path.display())))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, e))?;
        out
    } else {
        raw
    };
    decode(&bytes).map_err(|why| bad(path, why))
}

fn decode(b: &[u8]) -> std::result::Result<Volume<f32>, String> {
    let i32_at = |o: usize| -> std::result::Result<i32, String> {
        Ok(i32::from_be_bytes(
            b.get(o..o + 4).ok_or("header too short")?.try_into().expect("4 bytes"),
        ))
    };
    let f32_at = |o: usize| -> std::result::Result<f32, String> {
        Ok(f32::from_be_bytes(
            b.get(o..o + 4).ok_or("header too short")?.try_into().expect("4 bytes"),
        ))
    };
    if i32_at(0)? != 1 {
        return Err("version is not 1".into());
    }
    let dims = [i32_at(4)?, i32_at(8)?, i32_at(12)?];
    if dims.iter().any(|&d| d <= 0 || d > 4096) {
        return Err(format!("implausible dimensions {dims:?}"));
    }
    let dims = dims.map(|d| d as usize);
    let kind = i32_at(20)?;
    let good_ras = i16::from_be_bytes(b.get(28..30).ok_or("header too short")?.try_into().expect("2 bytes")) > 0;
    let n = dims[0] * dims[1] * dims[2];
    let width = match kind {
        0 => 1,
        1 | 3 => 4,
        4 => 2,
        other => return Err(format!("voxel type {other} is not supported")),
    };
    let data = b
        .get(DATA_OFFSET..DATA_OFFSET + n * width)
        .ok_or("fewer voxels than the header says")?;
    let data: Vec<f32> = match kind {
        0 => data.iter().map(|&v| f32::from(v)).collect(),
        1 => data
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes(c.try_into().expect("4")) as f32)
            .collect(),
        3 => data
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes(c.try_into().expect("4")))
            .collect(),
        _ => data
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_be_bytes(c.try_into().expect("2"))))
            .collect(),
    };
    // without "good RAS", FreeSurfer assumes coronal slices (LIA) of 1 mm at the centre
    let (sizes, mdc, c_ras) = if good_ras {
        let sizes = [f32_at(30)?, f32_at(34)?, f32_at(38)?].map(f64::from);
        let mut mdc = [[0.0f64; 3]; 3];
        for col in 0..3 {
            for row in 0..3 {
                mdc[row][col] = f64::from(f32_at(42 + 12 * col + 4 * row)?);
            }
        }
        (sizes, mdc, [f32_at(78)?, f32_at(82)?, f32_at(86)?].map(f64::from))
    } else {
        (
            [1.0; 3],
            [[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]],
            [0.0; 3],
        )
    };
    let mut affine = [[0.0f64; 4]; 3];
    for row in 0..3 {
        for col in 0..3 {
            affine[row][col] = mdc[row][col] * sizes[col];
        }
        let centre: f64 = (0..3).map(|col| affine[row][col] * dims[col] as f64 / 2.0).sum();
        affine[row][3] = c_ras[row] - centre;
    }
    let mut header = Header {
        dim: [3, dims[0] as i16, dims[1] as i16, dims[2] as i16, 1, 1, 1, 1],
        pixdim: [
            1.0,
            sizes[0] as f32,
            sizes[1] as f32,
            sizes[2] as f32,
            1.0,
            1.0,
            1.0,
            1.0,
        ],
        ..Header::default()
    };
    header.set_affine(&affine, 1);
    Ok(Volume { dims, data, header })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mgh(dims: [i32; 3], kind: i32, voxels: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; DATA_OFFSET];
        let put_i32 = |b: &mut Vec<u8>, o: usize, v: i32| b[o..o + 4].copy_from_slice(&v.to_be_bytes());
        let put_f32 = |b: &mut Vec<u8>, o: usize, v: f32| b[o..o + 4].copy_from_slice(&v.to_be_bytes());
        put_i32(&mut b, 0, 1);
        for (k, d) in dims.iter().enumerate() {
            put_i32(&mut b, 4 + 4 * k, *d);
        }
        put_i32(&mut b, 16, 1);
        put_i32(&mut b, 20, kind);
        b[28..30].copy_from_slice(&1i16.to_be_bytes());
        for (k, s) in [1.0f32, 1.0, 2.0].iter().enumerate() {
            put_f32(&mut b, 30 + 4 * k, *s);
        }
        // LIA: x → −R, y → −S, z → +A
        let mdc = [[-1.0f32, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]];
        for (col, c) in mdc.iter().enumerate() {
            for (row, v) in c.iter().enumerate() {
                put_f32(&mut b, 42 + 12 * col + 4 * row, *v);
            }
        }
        put_f32(&mut b, 78, 10.0);
        b.extend_from_slice(voxels);
        b
    }

    #[test]
    fn reads_voxels_and_the_voxel_to_ras_matrix() {
        let voxels: Vec<u8> = (0..2 * 3 * 4).collect();
        let v = decode(&mgh([2, 3, 4], 0, &voxels)).unwrap();
        assert_eq!(v.dims, [2, 3, 4]);
        assert_eq!(v.data[v.idx(1, 2, 3)], 23.0);
        let m = v.header.sform_affine();
        assert_eq!(m[0][0], -1.0);
        assert_eq!(m[1][2], 2.0, "z is anterior, 2 mm");
        assert_eq!(m[2][1], -1.0, "y is inferior");
        // the centre voxel (dims / 2) sits at c_ras
        let c: Vec<f64> = (0..3)
            .map(|r| m[r][0] * 1.0 + m[r][1] * 1.5 + m[r][2] * 2.0 + m[r][3])
            .collect();
        assert_eq!(c, [10.0, 0.0, 0.0]);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(
            decode(&mgh([2, 3, 4], 0, &[0; 5]))
                .unwrap_err()
                .contains("fewer voxels")
        );
        assert!(decode(&mgh([2, 3, 4], 7, &[0; 96])).unwrap_err().contains("type 7"));
        assert!(decode(&[0; 10]).is_err());
    }
}
