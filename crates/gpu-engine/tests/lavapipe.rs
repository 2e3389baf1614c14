//! The wgpu engine against the naive CPU reference (single layers) and the CPU engine
//! (whole shipped models), on whatever Vulkan adapter this machine has: in CI that is
//! Mesa's lavapipe, a software device (scripts/setup.sh installs it). No adapter is a
//! failure here, never a skip.

use gpu_engine::GpuEngine;
use volumetry::engine::naive;
use volumetry::model::{Activation, Layer};
use volumetry::{Box3, CpuEngine, Engine, GeluForm, Model, ModelId, RunOptions};

fn engine() -> GpuEngine {
    GpuEngine::new().unwrap_or_else(|e| {
        panic!("{e}\n(these tests need a Vulkan adapter: `apt-get install mesa-vulkan-drivers` gives lavapipe)")
    })
}

/// xorshift, so the tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn layer(rng: &mut Rng, cin: usize, cout: usize, d: usize, act: Activation, norm: bool) -> Layer {
    Layer {
        cin,
        cout,
        kernel: 3,
        dilation: d,
        weight: (0..cout * cin * 27).map(|_| rng.f() * 0.4).collect(),
        bias: (0..cout).map(|_| rng.f() * 0.3).collect(),
        instance_norm_eps: norm.then_some(1e-5),
        activation: act,
    }
}

/// The naive reference of one layer: conv, instance norm (whole volume), activation.
fn naive_layer(l: &Layer, input: &[f32], dims: [usize; 3], gelu: GeluForm) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let mut y = naive::conv3d(l, input, dims);
    if let Some(eps) = l.instance_norm_eps {
        for ch in y.chunks_mut(n) {
            let mean = ch.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = ch.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            ch.iter_mut().for_each(|v| *v = ((*v as f64 - mean) * inv) as f32);
        }
    }
    y.iter_mut().for_each(|v| *v = naive::activate(*v, l.activation, gelu));
    y
}

fn max_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Every activation and every dilation of the shipped models (1, 2, 4, 8, 16), with and
/// without instance norm, equal the naive loops within float tolerance.
#[test]
fn every_activation_and_dilation_matches_the_naive_layer() {
    let gpu = engine();
    let mut rng = Rng(0x2545F4914F6CDD1D);
    // wider than 2·16 on every axis, so the largest dilation reaches inside and out
    let dims = [37, 35, 34];
    let n: usize = dims.iter().product();
    let cases = [
        (Activation::Relu, GeluForm::Exact, false),
        (Activation::Elu, GeluForm::Exact, false),
        (Activation::Gelu, GeluForm::Exact, false),
        (Activation::Gelu, GeluForm::Tanh, false),
        (Activation::None, GeluForm::Exact, false),
        (Activation::Gelu, GeluForm::Exact, true),
        (Activation::Gelu, GeluForm::Tanh, true),
    ];
    for d in [1, 2, 4, 8, 16] {
        for &(act, gelu, norm) in &cases {
            let (cin, cout) = (3, 7);
            let l = layer(&mut rng, cin, cout, d, act, norm);
            let input: Vec<f32> = (0..cin * n).map(|_| rng.f()).collect();
            let want = naive_layer(&l, &input, dims, gelu);
            let got = gpu.layer_outputs(&l, &input, dims, gelu).unwrap();
            let err = max_error(&got, &want);
            assert!(
                err < 1e-4,
                "dilation {d}, {act:?} {gelu:?}, norm {norm}: max abs error {err}"
            );
        }
    }
    // the widest hidden layer shipped (30 channels in and out)
    let l = layer(&mut rng, 30, 30, 16, Activation::Elu, false);
    let input: Vec<f32> = (0..30 * n).map(|_| rng.f()).collect();
    let want = naive_layer(&l, &input, dims, GeluForm::Exact);
    let err = max_error(&gpu.layer_outputs(&l, &input, dims, GeluForm::Exact).unwrap(), &want);
    assert!(err < 1e-4, "30 → 30 channels: max abs error {err}");
}

/// Per-label Dice of `got` against `want`, for labels present in either.
fn dice(got: &[u8], want: &[u8]) -> Vec<(u8, f64, usize)> {
    let mut both = [0usize; 256];
    let mut g = [0usize; 256];
    let mut w = [0usize; 256];
    for (&a, &b) in got.iter().zip(want) {
        g[a as usize] += 1;
        w[b as usize] += 1;
        if a == b {
            both[a as usize] += 1;
        }
    }
    (0..256)
        .filter(|&v| g[v] + w[v] > 0)
        .map(|v| (v as u8, 2.0 * both[v] as f64 / (g[v] + w[v]) as f64, w[v]))
        .collect()
}

/// The reference T1, conformed and normalised as the pipeline does: the middle `side`³
/// block, each voxel the mean of a `step`³ block (step 2 or 4: the whole head, coarse).
fn reference_input(side: usize, step: usize) -> (Vec<f32>, [usize; 3]) {
    let a = volumetry::assets_dir();
    let conformed = volumetry::nifti::read_f32(a.join("reference/t1_crop/conformed_input.nii.gz"))
        .expect("the reference T1 (set NEUROVOL_ASSETS to the shared folder)");
    let bytes: Vec<u8> = conformed.data.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
    let x = volumetry::post::normalize_quantile(&bytes);
    let [nx, ny, _] = conformed.dims;
    let c = conformed.dims.map(|d| d / 2 - side * step / 2);
    let mut out = Vec::with_capacity(side.pow(3));
    for z in 0..side {
        for y in 0..side {
            for xx in 0..side {
                let mut sum = 0.0;
                for (dz, dy, dx) in (0..step.pow(3)).map(|i| (i / (step * step), i / step % step, i % step)) {
                    let at = |o: usize, i: usize, d: usize| o + i * step + d;
                    sum += x[at(c[0], xx, dx) + nx * (at(c[1], y, dy) + ny * at(c[2], z, dz))];
                }
                out.push(sum / step.pow(3) as f32);
            }
        }
    }
    (out, [side; 3])
}

fn compare_with_cpu(id: ModelId, (x, dims): (Vec<f32>, [usize; 3]), region: Option<Box3>) {
    let model = Model::load(&volumetry::assets_dir(), id).expect("shipped model");
    let opts = RunOptions {
        region,
        gelu: GeluForm::Exact,
    };
    let want = CpuEngine::new().run(&model, &x, dims, &opts).unwrap();
    let got = engine().run(&model, &x, dims, &opts).unwrap();
    let scores = dice(&got, &want);
    eprintln!(
        "{id}: {} labels, min Dice {:.5}",
        scores.len(),
        scores.iter().map(|s| s.1).fold(1.0, f64::min)
    );
    assert!(
        scores.len() >= 2,
        "{id}: the input must hold more than background, got {scores:?}"
    );
    for (label, d, voxels) in scores {
        assert!(
            d >= 0.999,
            "{id}: label {label} ({voxels} voxels) Dice {d:.5} against the CPU engine"
        );
    }
}

/// The default region model, streamed along z and restricted to a box (the head box's
/// code path), gives the CPU engine's labels.
#[test]
fn the_region_model_gives_the_cpu_engines_labels() {
    compare_with_cpu(
        ModelId::DEFAULT,
        reference_input(64, 1),
        Some(Box3([6..58, 4..60, 8..56])),
    );
}

/// mindgrab (GELU and instance norm: whole-volume statistics) on the whole head at 4 mm
/// gives the CPU engine's mask.
#[test]
fn mindgrab_gives_the_cpu_engines_mask() {
    compare_with_cpu(ModelId::Mindgrab, reference_input(64, 4), None);
}

/// The 18-class model (ELU) over the whole head at 4 mm, no box.
#[test]
fn the_tissue_model_gives_the_cpu_engines_labels() {
    compare_with_cpu(ModelId::Model18cls, reference_input(64, 4), None);
}
