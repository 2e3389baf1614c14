//! Full segmentation benchmark on the T1 reference input.
//!
//!     cargo bench -p volumetry --bench segment
//!
//! Env: NEUROVOL_BENCH_RUNS (default 5), NEUROVOL_BENCH_MODELS (comma list, default
//! model21_104class,model18cls,model30chan50cls,mindgrab), NEUROVOL_BENCH_FOV=head|full
//! (default head), NEUROVOL_ASSETS. Each run = read NIfTI → conform → normalise → MeshNet →
//! argmax → largest component → native reslice (the brain mask is not added to region
//! models here; mindgrab is timed on its own). Peak RSS per model = VmHWM after resetting it
//! (/proc/self/clear_refs) before that model's runs. A last table times the product's default
//! path whole (region model + mindgrab + labels + partial volumes), with upstream's labels
//! and with the refined ones (`volumetry::refine`).

use std::time::Instant;

use volumetry::*;

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// User + system CPU seconds of this process so far (/proc/self/stat, clock ticks of 100 Hz).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Best-of-N multithreaded SGEMM (gemm crate, AVX-512 kernels) on 2048³: this machine's
/// practical f32 peak.
fn sgemm_peak_gflops() -> f64 {
    let n = 2048usize;
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: all three buffers are n×n column-major and live for the call
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                n as isize,
                1,
                false,
                a.as_ptr(),
                n as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        best = best.max(2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(&c);
    best
}

fn upstream_seconds(assets: &std::path::Path, model: &str) -> Option<(f64, f64)> {
    let dir = assets.join("reference/t1_crop");
    let read = |f: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).ok()?).ok()
    };
    let v = if model == "model21_104class" {
        read("model21_104class_timing.json")?
    } else {
        read("timing.json")?.get(model)?.clone()
    };
    let wall = v.get("t_segment_s")?.as_f64()?;
    let cpu = match (
        v.get("cpu_user_s").and_then(|x| x.as_f64()),
        v.get("cpu_sys_s").and_then(|x| x.as_f64()),
    ) {
        (Some(u), Some(s)) => u + s,
        _ => f64::NAN,
    };
    Some((wall, cpu))
}

fn main() {
    let assets = assets_dir();
    let input_path = assets.join("reference/t1_crop/input_t1_crop.nii.gz");
    if !input_path.exists() {
        eprintln!("assets not found at {} (set NEUROVOL_ASSETS)", assets.display());
        return;
    }
    let runs: usize = std::env::var("NEUROVOL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let models: Vec<ModelId> = std::env::var("NEUROVOL_BENCH_MODELS")
        .unwrap_or_else(|_| "model21_104class,model18cls,model30chan50cls,mindgrab".into())
        .split(',')
        .map(|m| ModelId::parse(m.trim()).expect("model name"))
        .collect();
    let fov = match std::env::var("NEUROVOL_BENCH_FOV").as_deref() {
        Ok("full") => FieldOfView::FullCube,
        _ => FieldOfView::HeadBox,
    };
    let engine = CpuEngine::new();
    let threads = rayon::current_num_threads();
    let peak = sgemm_peak_gflops();
    println!(
        "machine: {threads} threads, engine {}, field of view {fov:?}, runs {runs}",
        engine.name()
    );
    println!(
        "SGEMM peak (gemm crate, 2048³, best of 5): {peak:.1} GFLOP/s; load average at start {}",
        load_average()
    );
    println!();
    println!(
        "| model | median total s | min s | median model s | CPU s/run | peak RSS MB | nominal 256³ TFLOP | computed TFLOP | GFLOP/s (computed/model s) | % SGEMM peak | upstream P segment wall s / CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let input = nifti::read_f32(&input_path).expect("input");
    for id in models {
        let model = Model::load(&assets, id).expect("model");
        let conformed = conform::conform(&input).expect("conform");
        let x = post::normalize_quantile(&conformed.volume.data);
        let fov_m = if model.has_instance_norm() {
            FieldOfView::FullCube
        } else {
            fov
        };
        let region = inference_region(&x, conformed.volume.dims, fov_m).expect("region");
        let computed = planned_flops(&model, conformed.volume.dims, region.as_ref());
        drop((conformed, x));
        let nominal = model.flops_per_voxel * 256f64.powi(3);
        let opts = SegmentOptions {
            model: id,
            brain_mask: false,
            field_of_view: fov,
            engine: Some(std::sync::Arc::new(engine.clone())),
            ..Default::default()
        };
        reset_hwm();
        let (mut totals, mut models_s) = (Vec::new(), Vec::new());
        let cpu0 = cpu_seconds();
        for _ in 0..runs {
            let t = Instant::now();
            let seg = segment_file(&input_path, &assets, &opts).expect("segment");
            totals.push(t.elapsed().as_secs_f64());
            models_s.push(seg.timings.model_s);
            std::hint::black_box(&seg);
        }
        let rss = vm_hwm_mb();
        let cpu = (cpu_seconds() - cpu0) / runs as f64;
        let min = totals.iter().cloned().fold(f64::INFINITY, f64::min);
        let mt = median(&mut models_s);
        let gf = computed / mt / 1e9;
        let up = upstream_seconds(&assets, id.folder())
            .map(|(w, c)| {
                if c.is_nan() {
                    format!("{w:.0} / n/a")
                } else {
                    format!("{w:.0} / {c:.0}")
                }
            })
            .unwrap_or_else(|| "not run".into());
        println!(
            "| {id} | {:.2} | {min:.2} | {mt:.2} | {cpu:.1} | {rss:.0} | {:.2} | {:.2} | {gf:.1} | {:.0} % | {up} |",
            median(&mut totals),
            nominal / 1e12,
            computed / 1e12,
            gf / peak * 100.0
        );
        eprintln!("  ({id} done; load average {})", load_average());
    }

    // The product's default path, whole: the region model, mindgrab, the labels (upstream's,
    // or refined with model30chan50cls) and the partial-volume correction.
    println!();
    println!(
        "| default path (model21_104class + mindgrab) | median total s | min s | median deep-structure model s | CPU s/run | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|");
    for labelling in [Labelling::Upstream, Labelling::Refined] {
        let opts = SegmentOptions {
            labelling,
            field_of_view: fov,
            engine: Some(std::sync::Arc::new(engine.clone())),
            ..Default::default()
        };
        reset_hwm();
        let (mut totals, mut deep) = (Vec::new(), Vec::new());
        let cpu0 = cpu_seconds();
        for _ in 0..runs {
            let t = Instant::now();
            let seg = segment_file(&input_path, &assets, &opts).expect("segment");
            totals.push(t.elapsed().as_secs_f64());
            deep.push(seg.timings.deep_model_s);
            std::hint::black_box(&seg);
        }
        let rss = vm_hwm_mb();
        let cpu = (cpu_seconds() - cpu0) / runs as f64;
        let min = totals.iter().cloned().fold(f64::INFINITY, f64::min);
        println!(
            "| {} labels | {:.2} | {min:.2} | {:.2} | {cpu:.1} | {rss:.0} |",
            labelling.as_str(),
            median(&mut totals),
            median(&mut deep)
        );
        eprintln!(
            "  (default path, {} labels, done; load average {})",
            labelling.as_str(),
            load_average()
        );
    }
}
