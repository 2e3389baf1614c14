//! A synthetic head for tests that need a segmentation to run (the worker's API tests, the
//! server's segmentation client tests): seconds on a CPU instead of minutes for a real T1,
//! and no file to ship. No I/O, no randomness: every call returns the same volume.

use crate::nifti::Volume;

/// An ellipsoid of brain-like intensities (a brighter core, a darker rim, a fixed ripple)
/// in a 40³ grid of 1.2 mm voxels, RAS, centred on the origin; zero outside.
pub fn head() -> Volume<f32> {
    let n = 40usize;
    let mut data = vec![0f32; n * n * n];
    for k in 0..n {
        for j in 0..n {
            for i in 0..n {
                let (x, y, z) = (i as f32 - 20.0, j as f32 - 20.0, k as f32 - 20.0);
                let r = (x * x / 196.0 + y * y / 256.0 + z * z / 169.0).sqrt();
                if r < 1.0 {
                    data[i + n * (j + n * k)] = if r < 0.6 { 110.0 } else { 70.0 } + ((i * 7 + j * 3 + k) % 11) as f32;
                }
            }
        }
    }
    let mut v = Volume {
        dims: [n, n, n],
        data,
        header: Default::default(),
    };
    v.header.pixdim = [1.0, 1.2, 1.2, 1.2, 1.0, 1.0, 1.0, 1.0];
    v.header.set_affine(
        &[[1.2, 0.0, 0.0, -24.0], [0.0, 1.2, 0.0, -24.0], [0.0, 0.0, 1.2, -24.0]],
        1,
    );
    v
}
