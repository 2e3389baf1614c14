//! Quick manual run: `cargo run -p volumetry --release --example seg -- INPUT MODEL [full] [OUT.nii.gz]`
use std::time::Instant;
use volumetry::*;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let assets = assets_dir();
    let input = a.get(1).cloned().unwrap_or_else(|| {
        assets
            .join("reference/t1_crop/input_t1_crop.nii.gz")
            .display()
            .to_string()
    });
    let model = ModelId::parse(a.get(2).map(|s| s.as_str()).unwrap_or("model21_104class")).unwrap();
    let fov = if a.get(3).map(|s| s == "full").unwrap_or(false) {
        FieldOfView::FullCube
    } else {
        FieldOfView::HeadBox
    };
    let t = Instant::now();
    let opts = SegmentOptions {
        model,
        brain_mask: false,
        field_of_view: fov,
        ..Default::default()
    };
    let seg = segment_file(&input, &assets, &opts).unwrap();
    eprintln!(
        "{:?} total {:.1}s engine {}",
        seg.timings,
        t.elapsed().as_secs_f64(),
        seg.engine
    );
    if let Some(out) = a.get(4) {
        nifti::write(&seg.labels, out).unwrap();
    }
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    eprintln!("{}", s.lines().find(|l| l.starts_with("VmHWM")).unwrap());
}
