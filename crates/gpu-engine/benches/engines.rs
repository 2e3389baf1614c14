//! The GPU engine beside the CPU engine on the same input: network time only (normalised
//! input in, labels out), median of NEUROVOL_BENCH_RUNS (default 3) after one warm-up run
//! (which compiles the GPU pipelines), and whether the labels agree.
//!
//!     cargo bench -p gpu-engine --bench engines
//!
//! Input: the reference T1 (conformed, normalised): by default its middle 64³ block, a
//! size a software Vulkan device (lavapipe) gets through; NEUROVOL_BENCH_SIDE=256 takes the
//! whole cube (for a real GPU; `scripts/gpu-check.sh` times the whole command instead).
//! NEUROVOL_BENCH_MODELS: comma list (default model21_104class,mindgrab).

use std::time::Instant;

use gpu_engine::GpuEngine;
use volumetry::{CpuEngine, Engine, GeluForm, Model, ModelId, RunOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(engine: &dyn Engine, model: &Model, x: &[f32], dims: [usize; 3], runs: usize) -> (f64, Vec<u8>) {
    let opts = RunOptions {
        region: None,
        gelu: GeluForm::Exact,
    };
    let labels = engine.run(model, x, dims, &opts).expect("inference");
    let secs = (0..runs)
        .map(|_| {
            let t = Instant::now();
            engine.run(model, x, dims, &opts).expect("inference");
            t.elapsed().as_secs_f64()
        })
        .collect();
    (median(secs), labels)
}

fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let runs: usize = env("NEUROVOL_BENCH_RUNS", "3").parse().expect("NEUROVOL_BENCH_RUNS");
    let side: usize = env("NEUROVOL_BENCH_SIDE", "64").parse().expect("NEUROVOL_BENCH_SIDE");
    let assets = volumetry::assets_dir();
    let t1 = volumetry::nifti::read_f32(assets.join("reference/t1_crop/conformed_input.nii.gz")).expect("reference T1");
    let bytes: Vec<u8> = t1.data.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
    let x = volumetry::post::normalize_quantile(&bytes);
    let o = t1.dims.map(|d| (d - side.min(d)) / 2);
    let mut block = Vec::with_capacity(side.pow(3));
    for z in o[2]..o[2] + side {
        for y in o[1]..o[1] + side {
            let row = t1.dims[0] * (y + t1.dims[1] * z);
            block.extend_from_slice(&x[row + o[0]..row + o[0] + side]);
        }
    }
    let dims = [side; 3];
    let gpu = GpuEngine::new().unwrap_or_else(|e| panic!("{e}"));
    let cpu = CpuEngine::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "input {side}³ of the reference T1; {runs} runs after a warm-up; load average {}",
        load.trim()
    );
    println!("{} | {}", cpu.name(), gpu.name());
    for name in env("NEUROVOL_BENCH_MODELS", "model21_104class,mindgrab").split(',') {
        let model = Model::load(&assets, ModelId::parse(name).expect("model name")).expect("model");
        let (tc, lc) = time(&cpu, &model, &block, dims, runs);
        let (tg, lg) = time(&gpu, &model, &block, dims, runs);
        let differ = lc.iter().zip(&lg).filter(|(a, b)| a != b).count();
        println!(
            "{name:>18}: cpu {tc:7.3} s   gpu {tg:7.3} s   ({:.2}× the CPU's time)   {differ} of {} labels differ",
            tg / tc,
            lc.len()
        );
    }
}
