//! The quality grade on a real head and on degraded copies of it: the reference T1
//! (`$NEUROVOL_ASSETS/reference/t1_crop`, MIT) is A; with its upper half cut away, or with
//! noise at a third of its brightest intensity, C; in 3 mm slices, B (at 5 mm: C). Each
//! grade is reached and says why.
//! Slow (four refined segmentations); the crate is built at opt-level 3 in tests.

use std::path::PathBuf;

use volumetry::*;

fn input() -> Option<Volume<f32>> {
    let a = assets_dir();
    let path = a.join("reference/t1_crop/input_t1_crop.nii.gz");
    if !path.exists() {
        if std::env::var("NEUROVOL_REQUIRE_ASSETS").is_ok_and(|v| v == "1") {
            panic!("assets not found at {} (set NEUROVOL_ASSETS)", a.display());
        }
        eprintln!("skipping: assets not found at {}", a.display());
        return None;
    }
    Some(nifti::read_f32(path).expect("reference input"))
}

fn assets() -> PathBuf {
    assets_dir()
}

fn grade_of(v: &Volume<f32>) -> (Grade, Vec<String>) {
    let seg = segment(v, &assets(), &SegmentOptions::default()).expect("segmentation");
    assert_eq!(seg.labelling, Labelling::Refined);
    let q = report(&seg).quality;
    let codes: Vec<String> = q.flags.iter().map(|f| f.code.clone()).collect();
    assert_eq!(q.grade, Some(Grade::of_flags(&q.flags)));
    (q.grade.expect("graded"), codes)
}

/// A small deterministic generator (splitmix64) and Box–Muller: no dependency for noise.
fn gaussian_noise(n: usize, sd: f32) -> Vec<f32> {
    let mut state = 0x5eed_u64;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (next().max(1e-12), next());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32 * sd
        })
        .collect()
}

#[test]
fn grades_of_a_real_head_and_of_degraded_copies() {
    let Some(head) = input() else { return };
    let max = head.data.iter().copied().fold(0.0f32, f32::max);

    let (grade, codes) = grade_of(&head);
    assert_eq!(grade, Grade::A, "the reference head: {codes:?}");

    // the upper half of the head (LIA: the second axis runs downwards) cut away
    let mut cropped = head.clone();
    let [nx, ny, _] = cropped.dims;
    for (i, v) in cropped.data.iter_mut().enumerate() {
        if (i / nx) % ny < ny / 2 {
            *v = 0.0;
        }
    }
    let (grade, codes) = grade_of(&cropped);
    assert_eq!(grade, Grade::C, "half a head: {codes:?}");
    assert!(codes.iter().any(|c| c == "many_missing"), "{codes:?}");

    // noise at a third of the brightest intensity
    let mut noisy = head.clone();
    for (v, n) in noisy.data.iter_mut().zip(gaussian_noise(head.data.len(), max / 3.0)) {
        *v = (*v + n).max(0.0);
    }
    let (grade, codes) = grade_of(&noisy);
    assert_eq!(grade, Grade::C, "a noisy head: {codes:?}");
    assert!(codes.iter().any(|c| c == "too_little_labelled"), "{codes:?}");

    // coarse voxels: 1 × 3 × 1 mm (thick slices along the second axis), block averages
    let f = 3;
    let (cx, cy, cz) = (head.dims[0], head.dims[1] / f, head.dims[2]);
    let mut coarse = vec![0f32; cx * cy * cz];
    for z in 0..cz {
        for y in 0..cy {
            for x in 0..cx {
                let s: f32 = (0..f).map(|k| head.data[x + nx * (y * f + k + ny * z)]).sum();
                coarse[x + cx * (y + cy * z)] = s / f as f32;
            }
        }
    }
    let mut header = head.header.clone();
    let mut affine = head.header.sform_or_qform();
    for row in affine.iter_mut().take(3) {
        row[1] *= f as f64;
    }
    header.set_affine(&affine, 1);
    header.dim[2] = cy as i16;
    header.pixdim[2] *= f as f32;
    let coarse = Volume {
        dims: [cx, cy, cz],
        data: coarse,
        header,
    };
    let (grade, codes) = grade_of(&coarse);
    assert_eq!(grade, Grade::B, "3 mm slices: {codes:?}");
    assert!(codes.iter().any(|c| c == "labels_partly_outside_mask"), "{codes:?}");
}
