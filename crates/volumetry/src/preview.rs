//! Pictures of a stored volume: the mid-sagittal slice, resampled in world millimetres
//! (anterior to the right, superior up), as a greyscale PNG — the scan page shows it so a
//! person can see that the face was removed; and the middle axial, coronal and sagittal
//! slices with the labels over them in their colours, for the printable report.

use crate::conform::inverse;
use crate::error::{Result, VolumetryError};
use crate::nifti::Volume;

/// The largest side of the picture (pixels = mm).
const MAX_SIDE: usize = 320;

/// The mid-sagittal slice of `v` as PNG bytes (1 px = 1 mm; nearest neighbour; intensities
/// scaled so the 99.5th percentile of the non-zero voxels is white).
pub fn mid_sagittal_png(v: &Volume<f32>) -> Result<Vec<u8>> {
    // the affine the defacing cut with, so the picture shows what was cut
    let aff = v.header.conform_affine();
    let inv = inverse(&aff).ok_or_else(|| VolumetryError::BadInput("the image orientation is degenerate".into()))?;
    let (lo, hi) = world_box(&aff, v.dims);
    let x = (lo[0] + hi[0]) / 2.0;
    let width = ((hi[1] - lo[1]).ceil() as usize + 1).min(MAX_SIDE);
    let height = ((hi[2] - lo[2]).ceil() as usize + 1).min(MAX_SIDE);
    let white = percentile_nonzero(&v.data, 0.995).max(f32::MIN_POSITIVE);
    let mut pixels = vec![0u8; width * height];
    for row in 0..height {
        let s = hi[2] - row as f64;
        for col in 0..width {
            let a = lo[1] + col as f64;
            let ijk = [0, 1, 2].map(|r| (inv[r][0] * x + inv[r][1] * a + inv[r][2] * s + inv[r][3]).round());
            if ijk.iter().zip(v.dims).all(|(&c, n)| c >= 0.0 && c < n as f64) {
                let value = v.data[v.idx(ijk[0] as usize, ijk[1] as usize, ijk[2] as usize)];
                pixels[col + width * row] = (255.0 * (value / white).clamp(0.0, 1.0)).round() as u8;
            }
        }
    }
    encode_png(&pixels, width, height, png::ColorType::Grayscale)
}

/// The three slice planes of the report's pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// Seen from above, anterior up, the person's right on the picture's left.
    Axial,
    /// Seen from the front, superior up, the person's right on the picture's left.
    Coronal,
    /// Seen from the side, anterior to the right, superior up.
    Sagittal,
}

/// How strongly a label's colour covers the image (0–1).
const LABEL_OPACITY: f32 = 0.45;

/// The middle slice of `v` in `plane`, in world millimetres (1 px = 1 mm), with `labels`
/// (on `v`'s grid) drawn over it in `colours` (value → RGB), as an RGB PNG.
pub fn overlay_png(v: &Volume<f32>, labels: &Volume<u8>, colours: &[[u8; 3]], plane: Plane) -> Result<Vec<u8>> {
    if labels.dims != v.dims {
        return Err(VolumetryError::BadInput(
            "the labels are not on the volume's grid".into(),
        ));
    }
    let aff = v.header.conform_affine();
    let inv = inverse(&aff).ok_or_else(|| VolumetryError::BadInput("the image orientation is degenerate".into()))?;
    let (lo, hi) = world_box(&aff, v.dims);
    let mid = [0, 1, 2].map(|r| (lo[r] + hi[r]) / 2.0);
    // (picture column, row) → world (x, a, s); the axes across and down, and the fixed one
    let (across, down) = match plane {
        Plane::Axial => (0, 1),
        Plane::Coronal => (0, 2),
        Plane::Sagittal => (1, 2),
    };
    let width = ((hi[across] - lo[across]).ceil() as usize + 1).min(MAX_SIDE);
    let height = ((hi[down] - lo[down]).ceil() as usize + 1).min(MAX_SIDE);
    let white = percentile_nonzero(&v.data, 0.995).max(f32::MIN_POSITIVE);
    let mut pixels = vec![0u8; width * height * 3];
    for row in 0..height {
        for col in 0..width {
            let mut w = mid;
            // radiological: x runs from the person's right (high x) across; up is high a or s
            w[across] = if across == 0 {
                hi[0] - col as f64
            } else {
                lo[across] + col as f64
            };
            w[down] = hi[down] - row as f64;
            let ijk = [0, 1, 2].map(|r| (inv[r][0] * w[0] + inv[r][1] * w[1] + inv[r][2] * w[2] + inv[r][3]).round());
            if !ijk.iter().zip(v.dims).all(|(&c, n)| c >= 0.0 && c < n as f64) {
                continue;
            }
            let i = v.idx(ijk[0] as usize, ijk[1] as usize, ijk[2] as usize);
            let grey = 255.0 * (v.data[i] / white).clamp(0.0, 1.0);
            let label = labels.data[i] as usize;
            let rgb = match colours.get(label).filter(|_| label != 0) {
                Some(c) => c.map(|k| grey * (1.0 - LABEL_OPACITY) + f32::from(k) * LABEL_OPACITY),
                None => [grey; 3],
            };
            let px = &mut pixels[(col + width * row) * 3..][..3];
            for (p, c) in px.iter_mut().zip(rgb) {
                *p = c.round() as u8;
            }
        }
    }
    encode_png(&pixels, width, height, png::ColorType::Rgb)
}

/// World bounding box of the voxel centres of a grid.
fn world_box(aff: &[[f64; 4]; 3], dims: [usize; 3]) -> ([f64; 3], [f64; 3]) {
    let [nx, ny, nz] = dims;
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for c in 0..8 {
        let ijk = [(c & 1) * (nx - 1), ((c >> 1) & 1) * (ny - 1), (c >> 2) * (nz - 1)].map(|x| x as f64);
        for r in 0..3 {
            let w = aff[r][0] * ijk[0] + aff[r][1] * ijk[1] + aff[r][2] * ijk[2] + aff[r][3];
            lo[r] = lo[r].min(w);
            hi[r] = hi[r].max(w);
        }
    }
    (lo, hi)
}

fn encode_png(pixels: &[u8], width: usize, height: usize, colour: png::ColorType) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
    encoder.set_color(colour);
    encoder.set_depth(png::BitDepth::Eight);
    let written = encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(pixels).and_then(|_| w.finish()));
    written.map_err(|e| VolumetryError::Io(format!("cannot encode the picture: {e}")))?;
    Ok(out)
}

/// The `q` quantile of the non-zero values (0 when there are none).
fn percentile_nonzero(data: &[f32], q: f64) -> f32 {
    let mut nz: Vec<f32> = data.iter().copied().filter(|&x| x > 0.0).collect();
    if nz.is_empty() {
        return 0.0;
    }
    let k = ((nz.len() - 1) as f64 * q) as usize;
    *nz.select_nth_unstable_by(k, f32::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_head_renders_with_its_world_extent() {
        let head = crate::synthetic::head();
        let png = mid_sagittal_png(&head).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().expect("a small picture")];
        let info = reader.next_frame(&mut buf).unwrap();
        // 40 voxels of 1.2 mm: 46.8 mm between the outer centres → 48 px
        assert_eq!((info.width, info.height), (48, 48));
        let px = &buf[..info.buffer_size()];
        assert_eq!(px[0], 0, "outside the ellipsoid");
        assert!(px[24 + 48 * 24] > 100, "bright core at the centre");
    }

    #[test]
    fn labels_are_drawn_in_their_colours_in_each_plane() {
        let head = crate::synthetic::head();
        // label 1 wherever the head is bright
        let labels = Volume {
            dims: head.dims,
            data: head.data.iter().map(|&v| u8::from(v > 100.0)).collect(),
            header: head.header.clone(),
        };
        let colours = [[0, 0, 0], [255, 0, 0]];
        for plane in [Plane::Axial, Plane::Coronal, Plane::Sagittal] {
            let png = overlay_png(&head, &labels, &colours, plane).unwrap();
            let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!((info.width, info.height), (48, 48), "{plane:?}");
            let at = |c: usize, r: usize| &buf[(c + 48 * r) * 3..][..3];
            let centre = at(24, 24);
            assert!(
                centre[0] > centre[1] + 50,
                "{plane:?}: the label's red over the core {centre:?}"
            );
            assert_eq!(at(0, 0), &[0, 0, 0], "{plane:?}: outside the head");
        }
        let other = Volume {
            dims: [2, 2, 2],
            data: vec![0u8; 8],
            header: head.header.clone(),
        };
        assert!(overlay_png(&head, &other, &colours, Plane::Axial).is_err());
    }
}
