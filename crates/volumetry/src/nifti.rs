//! Minimal NIfTI-1 reader/writer (`.nii`, `.nii.gz`).
//!
//! Why not the `nifti` crate: its affine support needs the `nalgebra` + `simba` stack and
//! its default features pull `ndarray`; we need only a 348-byte header, seven scalar data
//! types and the exact sform/qform selection rules that niimath (and so the reference
//! outputs) use. The header is a fixed struct, so a careful ~300-line implementation with
//! `flate2` is leaner and lets us keep every field when writing labels back.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Result, VolumetryError};

/// NIFTI_INTENT_LABEL: what upstream writes into label volumes.
pub const INTENT_LABEL: i16 = 1002;

/// The NIfTI-1 header fields we use; all others are written as zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub dim: [i16; 8],
    pub intent_code: i16,
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f32; 8],
    pub vox_offset: f32,
    pub scl_slope: f32,
    pub scl_inter: f32,
    pub xyzt_units: u8,
    pub cal_max: f32,
    pub cal_min: f32,
    pub qform_code: i16,
    pub sform_code: i16,
    pub quatern: [f32; 3],
    pub qoffset: [f32; 3],
    pub srow: [[f32; 4]; 3],
    pub descrip: [u8; 80],
}

impl Default for Header {
    fn default() -> Self {
        Header {
            dim: [3, 1, 1, 1, 1, 1, 1, 1],
            intent_code: 0,
            datatype: 16,
            bitpix: 32,
            pixdim: [1.0; 8],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            xyzt_units: 2 | 8, // mm, s
            cal_max: 0.0,
            cal_min: 0.0,
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [[0.0; 4]; 3],
            descrip: [0; 80],
        }
    }
}

/// A 3D scalar volume, voxel (i,j,k) at `data[i + nx*(j + ny*k)]` (file order, i fastest).
#[derive(Clone, Debug)]
pub struct Volume<T> {
    pub dims: [usize; 3],
    pub data: Vec<T>,
    pub header: Header,
}

impl<T> Volume<T> {
    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn idx(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }
}

/// Row-major 3×4 voxel→world (mm) matrix; the implicit last row is [0 0 0 1].
pub type Affine = [[f64; 4]; 3];

impl Header {
    /// Voxel size (mm³) from pixdim[1..4].
    pub fn voxel_volume_mm3(&self) -> f64 {
        (1..4).map(|i| (self.pixdim[i] as f64).abs()).product()
    }

    /// The qform matrix (always computed from the quaternion fields, whatever qform_code
    /// says, as nibabel and niimath do).
    pub fn qform_affine(&self) -> Affine {
        let [b, c, d] = self.quatern.map(|v| v as f64);
        let mut a2 = 1.0 - (b * b + c * c + d * d);
        let (mut b, mut c, mut d) = (b, c, d);
        let a = if a2 < 1e-7 {
            // 180° rotation: renormalise (b,c,d), a = 0 (nifti1_io behaviour)
            let n = (b * b + c * c + d * d).sqrt();
            if n > 0.0 {
                b /= n;
                c /= n;
                d /= n;
            }
            a2 = 0.0;
            a2
        } else {
            a2.sqrt()
        };
        let dx = if self.pixdim[1] > 0.0 {
            self.pixdim[1] as f64
        } else {
            1.0
        };
        let dy = if self.pixdim[2] > 0.0 {
            self.pixdim[2] as f64
        } else {
            1.0
        };
        let mut dz = if self.pixdim[3] > 0.0 {
            self.pixdim[3] as f64
        } else {
            1.0
        };
        if self.pixdim[0] < 0.0 {
            dz = -dz; // qfac
        }
        let r = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        let s = [dx, dy, dz];
        let mut m = [[0.0; 4]; 3];
        for row in 0..3 {
            for col in 0..3 {
                m[row][col] = r[row][col] * s[col];
            }
            m[row][3] = self.qoffset[row] as f64;
        }
        m
    }

    pub fn sform_affine(&self) -> Affine {
        self.srow.map(|r| r.map(|v| v as f64))
    }

    /// Affine used by conform (RECIPE §1.2): qform if qform_code > sform_code, else sform;
    /// the other one if the preferred matrix is degenerate.
    pub fn conform_affine(&self) -> Affine {
        let (q, s) = (self.qform_affine(), self.sform_affine());
        let (prim, sec) = if self.qform_code > self.sform_code {
            (q, s)
        } else {
            (s, q)
        };
        if affine_valid(&prim) { prim } else { sec }
    }

    /// Affine used by the inverse (label) reslice (RECIPE §6): sform unless it is missing
    /// (code 0) or degenerate, then qform.
    pub fn sform_or_qform(&self) -> Affine {
        let s = self.sform_affine();
        if self.sform_code > 0 && affine_valid(&s) {
            return s;
        }
        let q = self.qform_affine();
        if affine_valid(&q) { q } else { s }
    }

    /// Set both qform and sform to `m` (must be a rotation × positive diagonal, possibly
    /// with a reflection, as all our output grids are).
    pub fn set_affine(&mut self, m: &Affine, code: i16) {
        self.srow = m.map(|r| r.map(|v| v as f32));
        self.sform_code = code;
        self.qform_code = code;
        // column norms = voxel sizes
        let mut s = [0.0f64; 3];
        for (col, sv) in s.iter_mut().enumerate() {
            *sv = (0..3).map(|r| m[r][col] * m[r][col]).sum::<f64>().sqrt();
            if *sv == 0.0 {
                *sv = 1.0;
            }
        }
        let mut r = [[0.0f64; 3]; 3];
        for row in 0..3 {
            for col in 0..3 {
                r[row][col] = m[row][col] / s[col];
            }
        }
        let det = det3(&r);
        let qfac = if det < 0.0 {
            for row in r.iter_mut() {
                row[2] = -row[2];
            }
            -1.0
        } else {
            1.0
        };
        // rotation matrix → quaternion (nifti_mat44_to_quatern)
        let (xx, yy, zz) = (r[0][0], r[1][1], r[2][2]);
        let mut a = xx + yy + zz + 1.0;
        let (b, c, d);
        if a > 0.5 {
            a = 0.5 * a.sqrt();
            b = 0.25 * (r[2][1] - r[1][2]) / a;
            c = 0.25 * (r[0][2] - r[2][0]) / a;
            d = 0.25 * (r[1][0] - r[0][1]) / a;
        } else {
            let xd = 1.0 + xx - (yy + zz);
            let yd = 1.0 + yy - (xx + zz);
            let zd = 1.0 + zz - (xx + yy);
            let (mut bb, mut cc, mut dd);
            if xd > 1.0 {
                bb = 0.5 * xd.sqrt();
                cc = 0.25 * (r[0][1] + r[1][0]) / bb;
                dd = 0.25 * (r[0][2] + r[2][0]) / bb;
                a = 0.25 * (r[2][1] - r[1][2]) / bb;
            } else if yd > 1.0 {
                cc = 0.5 * yd.sqrt();
                bb = 0.25 * (r[0][1] + r[1][0]) / cc;
                dd = 0.25 * (r[1][2] + r[2][1]) / cc;
                a = 0.25 * (r[0][2] - r[2][0]) / cc;
            } else {
                dd = 0.5 * zd.sqrt();
                bb = 0.25 * (r[0][2] + r[2][0]) / dd;
                cc = 0.25 * (r[1][2] + r[2][1]) / dd;
                a = 0.25 * (r[1][0] - r[0][1]) / dd;
            }
            if a < 0.0 {
                bb = -bb;
                cc = -cc;
                dd = -dd;
            }
            b = bb;
            c = cc;
            d = dd;
        }
        self.quatern = [b as f32, c as f32, d as f32];
        self.qoffset = [m[0][3] as f32, m[1][3] as f32, m[2][3] as f32];
        self.pixdim[0] = qfac as f32;
        self.pixdim[1] = s[0] as f32;
        self.pixdim[2] = s[1] as f32;
        self.pixdim[3] = s[2] as f32;
    }
}

pub(crate) fn det3(r: &[[f64; 3]; 3]) -> f64 {
    r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0])
}

/// niimath's test: finite, every row and column has a non-negligible entry, |det| ≥ 1e-6.
pub fn affine_valid(m: &Affine) -> bool {
    let m32: Vec<Vec<f32>> = m.iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect();
    if m32.iter().flatten().any(|v| !v.is_finite()) {
        return false;
    }
    let big = |r: usize, c: usize| m32[r][c].abs() > 1e-6;
    let rows_ok = (0..3).all(|r| (0..3).any(|c| big(r, c)));
    let cols_ok = (0..3).all(|c| (0..3).any(|r| big(r, c)));
    let r3 = [
        [m[0][0], m[0][1], m[0][2]],
        [m[1][0], m[1][1], m[1][2]],
        [m[2][0], m[2][1], m[2][2]],
    ];
    rows_ok && cols_ok && det3(&r3).abs() >= 1e-6
}

fn bad(reason: impl Into<String>) -> VolumetryError {
    VolumetryError::BadInput(reason.into())
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| VolumetryError::Io(format!("cannot read {}: {e}", path.display())))?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::with_capacity(raw.len() * 3);
        // multi-member gzip is legal; MultiGzDecoder handles both
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|_| bad("the .nii.gz file is not valid gzip data"))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    be: bool,
}
impl Reader<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn f32(&self, off: usize) -> f32 {
        f32::from_le_bytes(self.arr(off))
    }
}

/// Parse a NIfTI-1 header; returns the header and whether the file is big-endian.
pub fn parse_header(b: &[u8]) -> Result<(Header, bool)> {
    if b.len() < 348 {
        return Err(bad("the file is too short to be a NIfTI image"));
    }
    let le = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let big = match (le, be) {
        (348, _) => false,
        (_, 348) => true,
        (540, _) | (_, 540) => {
            return Err(bad("NIfTI-2 files are not supported; convert to NIfTI-1"));
        }
        _ => return Err(bad("not a NIfTI-1 file (bad header size)")),
    };
    let r = Reader { b, be: big };
    let magic = &b[344..348];
    if magic != b"n+1\0" && magic != b"ni1\0" {
        return Err(bad("not a NIfTI-1 file (bad magic; ANALYZE is not supported)"));
    }
    if magic == b"ni1\0" {
        return Err(bad(
            "two-file NIfTI (.hdr/.img) is not supported; use a single .nii/.nii.gz",
        ));
    }
    let mut h = Header::default();
    for i in 0..8 {
        h.dim[i] = r.i16(40 + 2 * i);
        h.pixdim[i] = r.f32(76 + 4 * i);
    }
    h.intent_code = r.i16(68);
    h.datatype = r.i16(70);
    h.bitpix = r.i16(72);
    h.vox_offset = r.f32(108);
    h.scl_slope = r.f32(112);
    h.scl_inter = r.f32(116);
    h.xyzt_units = b[123];
    h.cal_max = r.f32(124);
    h.cal_min = r.f32(128);
    h.descrip.copy_from_slice(&b[148..228]);
    h.qform_code = r.i16(252);
    h.sform_code = r.i16(254);
    for i in 0..3 {
        h.quatern[i] = r.f32(256 + 4 * i);
        h.qoffset[i] = r.f32(268 + 4 * i);
    }
    for row in 0..3 {
        for col in 0..4 {
            h.srow[row][col] = r.f32(280 + 16 * row + 4 * col);
        }
    }
    Ok((h, big))
}

/// Read a 3D NIfTI-1 volume as f32 with scl_slope/scl_inter applied.
/// A 4D file with a single volume is accepted; more volumes are refused.
/// Bytes per voxel of the scalar datatypes this module reads; `None` for colour, complex
/// and unknown types.
pub fn scalar_bytes(datatype: i16) -> Option<usize> {
    match datatype {
        2 | 256 => Some(1),
        4 | 512 => Some(2),
        8 | 768 | 16 => Some(4),
        64 | 1024 | 1280 => Some(8),
        _ => None,
    }
}

pub fn read_f32(path: impl AsRef<Path>) -> Result<Volume<f32>> {
    let raw = read_all(path.as_ref())?;
    decode_f32(&raw)
}

/// [`read_f32`] from bytes already in memory (uncompressed or gzip).
pub fn decode_f32(bytes: &[u8]) -> Result<Volume<f32>> {
    let owned;
    let raw: &[u8] = if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|_| bad("the .nii.gz file is not valid gzip data"))?;
        owned = out;
        &owned
    } else {
        bytes
    };
    let (h, big) = parse_header(raw)?;
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return Err(bad("invalid NIfTI dimension count"));
    }
    let mut dims = [1usize; 7];
    for i in 0..nd as usize {
        if h.dim[i + 1] < 1 {
            return Err(bad("invalid NIfTI dimensions (zero or negative size)"));
        }
        dims[i] = h.dim[i + 1] as usize;
    }
    if dims[3..].iter().product::<usize>() != 1 {
        return Err(bad(format!(
            "expected a single 3D volume, got {} volumes (4D series are not supported)",
            dims[3..].iter().product::<usize>()
        )));
    }
    if dims[0] < 2 || dims[1] < 2 || dims[2] < 2 {
        return Err(bad("the image is not a 3D volume (a dimension has size 1)"));
    }
    let n = dims[0]
        .checked_mul(dims[1])
        .and_then(|v| v.checked_mul(dims[2]))
        .filter(|&v| v <= 1 << 30)
        .ok_or_else(|| bad("the image is implausibly large"))?;
    let (size, conv): (usize, fn(&[u8]) -> f64) = match h.datatype {
        2 => (1, |b| b[0] as f64),
        256 => (1, |b| b[0] as i8 as f64),
        4 => (2, |b| i16::from_le_bytes([b[0], b[1]]) as f64),
        512 => (2, |b| u16::from_le_bytes([b[0], b[1]]) as f64),
        8 => (4, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        768 => (4, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        16 => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        64 => (8, |b| {
            f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }),
        1024 => (8, |b| {
            i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
        }),
        1280 => (8, |b| {
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64
        }),
        dt => {
            return Err(bad(format!(
                "unsupported NIfTI datatype {dt} (RGB/complex images cannot be segmented)"
            )));
        }
    };
    let off = h.vox_offset;
    if !off.is_finite() || off < 348.0 {
        return Err(bad("invalid NIfTI vox_offset"));
    }
    let off = off as usize;
    let need = n * size;
    if raw.len() < off || raw.len() - off < need {
        return Err(bad(
            "the NIfTI file is truncated (fewer voxels than its header declares)",
        ));
    }
    let body = &raw[off..off + need];
    // scl_slope == 0 means "no scaling" (NIfTI-1 spec)
    let (slope, inter) = if h.scl_slope == 0.0 || !h.scl_slope.is_finite() {
        (1.0f32, 0.0f32)
    } else {
        (h.scl_slope, if h.scl_inter.is_finite() { h.scl_inter } else { 0.0 })
    };
    let mut data = Vec::with_capacity(n);
    let mut tmp = [0u8; 8];
    for chunk in body.chunks_exact(size) {
        tmp[..size].copy_from_slice(chunk);
        if big {
            tmp[..size].reverse();
        }
        let v = conv(&tmp[..size]) as f32;
        data.push(if slope == 1.0 && inter == 0.0 {
            v
        } else {
            v * slope + inter
        });
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(bad("the image contains NaN or infinite values"));
    }
    let mut header = h;
    header.dim = [3, dims[0] as i16, dims[1] as i16, dims[2] as i16, 1, 1, 1, 1];
    Ok(Volume {
        dims: [dims[0], dims[1], dims[2]],
        data,
        header,
    })
}

/// Types that can be stored as NIfTI voxels.
pub trait Voxel: Copy {
    const DATATYPE: i16;
    const BITPIX: i16;
    fn put(self, out: &mut Vec<u8>);
}
impl Voxel for u8 {
    const DATATYPE: i16 = 2;
    const BITPIX: i16 = 8;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self)
    }
}
impl Voxel for f32 {
    const DATATYPE: i16 = 16;
    const BITPIX: i16 = 32;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

/// Serialise a volume as a single-file NIfTI-1 (little-endian, vox_offset 352, no
/// extensions). Datatype/bitpix come from `T`; scaling is reset to identity.
pub fn encode<T: Voxel>(vol: &Volume<T>) -> Vec<u8> {
    let h = &vol.header;
    let mut b = vec![0u8; 352];
    let put_i16 = |b: &mut Vec<u8>, off: usize, v: i16| b[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |b: &mut Vec<u8>, off: usize, v: f32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    b[0..4].copy_from_slice(&348i32.to_le_bytes());
    b[38] = b'r';
    let dim = [
        3i16,
        vol.dims[0] as i16,
        vol.dims[1] as i16,
        vol.dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for i in 0..8 {
        put_i16(&mut b, 40 + 2 * i, dim[i]);
        put_f32(
            &mut b,
            76 + 4 * i,
            if i == 0 && h.pixdim[0] == 0.0 { 1.0 } else { h.pixdim[i] },
        );
    }
    put_i16(&mut b, 68, h.intent_code);
    put_i16(&mut b, 70, T::DATATYPE);
    put_i16(&mut b, 72, T::BITPIX);
    put_f32(&mut b, 108, 352.0);
    put_f32(&mut b, 112, 1.0);
    put_f32(&mut b, 116, 0.0);
    b[123] = h.xyzt_units;
    put_f32(&mut b, 124, h.cal_max);
    put_f32(&mut b, 128, h.cal_min);
    b[148..228].copy_from_slice(&h.descrip);
    put_i16(&mut b, 252, h.qform_code);
    put_i16(&mut b, 254, h.sform_code);
    for i in 0..3 {
        put_f32(&mut b, 256 + 4 * i, h.quatern[i]);
        put_f32(&mut b, 268 + 4 * i, h.qoffset[i]);
    }
    for row in 0..3 {
        for col in 0..4 {
            put_f32(&mut b, 280 + 16 * row + 4 * col, h.srow[row][col]);
        }
    }
    b[344..348].copy_from_slice(b"n+1\0");
    b.reserve(vol.data.len() * (T::BITPIX as usize / 8));
    for &v in &vol.data {
        v.put(&mut b);
    }
    b
}

/// Write a volume; gzip-compressed when the path ends in `.gz`.
pub fn write<T: Voxel>(vol: &Volume<T>, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = encode(vol);
    let io = |e: std::io::Error| VolumetryError::Io(format!("cannot write {}: {e}", path.display()));
    let f = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
        gz.write_all(&bytes).map_err(io)?;
        gz.finish().map_err(io)?.flush().map_err(io)?;
    } else {
        w.write_all(&bytes).map_err(io)?;
        w.flush().map_err(io)?;
    }
    Ok(())
}

/// Read an integer label volume (uint8 or any integral type) as u8.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Volume<u8>> {
    labels_of(read_f32(path)?)
}

/// [`read_labels`] from the bytes of an uncompressed NIfTI.
pub fn decode_labels(bytes: &[u8]) -> Result<Volume<u8>> {
    labels_of(decode_f32(bytes)?)
}

fn labels_of(v: Volume<f32>) -> Result<Volume<u8>> {
    if v.data.iter().any(|&x| !(0.0..=255.0).contains(&x) || x.fract() != 0.0) {
        return Err(bad("label volume has values outside 0..255 or non-integers"));
    }
    Ok(Volume {
        dims: v.dims,
        data: v.data.iter().map(|&x| x as u8).collect(),
        header: v.header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_affine_and_data() {
        let mut h = Header::default();
        // oblique affine with a reflection
        let th: f64 = 0.3;
        let m = [
            [-0.9 * th.cos(), 0.0, 1.2 * th.sin(), 10.0],
            [0.0, 1.1, 0.0, -20.0],
            [0.9 * th.sin(), 0.0, 1.2 * th.cos(), 5.5],
        ];
        h.set_affine(&m, 2);
        let q = h.qform_affine();
        for r in 0..3 {
            for c in 0..4 {
                assert!((q[r][c] - m[r][c]).abs() < 1e-5, "{q:?} vs {m:?}");
            }
        }
        let vol = Volume {
            dims: [3, 4, 5],
            data: (0..60).map(|v| v as f32 * 0.5).collect(),
            header: h,
        };
        let bytes = encode(&vol);
        let back = decode_f32(&bytes).unwrap();
        assert_eq!(back.dims, [3, 4, 5]);
        assert_eq!(back.data, vol.data);
        assert_eq!(
            back.header.sform_affine().map(|r| r.map(|v| v as f32)),
            m.map(|r| r.map(|v| v as f32))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(decode_f32(b"hello"), Err(VolumetryError::BadInput(_))));
        let mut b = encode(&Volume {
            dims: [2, 2, 2],
            data: vec![0u8; 8],
            header: Header::default(),
        });
        b.truncate(355);
        assert!(matches!(decode_f32(&b), Err(VolumetryError::BadInput(_))));
    }
}
