//! Throughput of de-identification on the T1 series fixture (256 files of 256x256).
//!
//! `cargo bench -p deid --bench deid_bench [-- RUNS]` prints one JSON line per measure
//! (medians over RUNS, default 15):
//! - `files`: de-identify the already-inflated files one by one (parse + rules + encode),
//!   the part the pydicom baseline (bench/deid_pydicom.py) also measures as `files`;
//! - `zip_stored`: ZIP to ZIP with stored output (`deidentify_zip`: per-entry work on
//!   rayon's pool, all cores), the measure compared with pydicom's `zip_stored`;
//! - `zip_deflate6`: ZIP to ZIP with the upload's compression (deflate level 6);
//! - `zip_stored_seq`, `zip_deflate6_seq`: the same on the calling thread only (the path
//!   the wasm32 build takes; same output bytes).
//!
//! MB/s counts the uncompressed DICOM bytes of the series. `threads`: the cores available (rayon's default pool size).

use std::io::{Cursor, Read};
use std::path::PathBuf;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(15);
    let assets = std::env::var_os("NEUROVOL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let zip_path = assets.join("fixtures/t1_mprage_sag_phi.zip");
    let zip_bytes = std::fs::read(&zip_path).expect("t1_mprage_sag_phi.zip (set NEUROVOL_ASSETS)");

    // inflate the image files once (same selection as the library: Part 10 with pixels)
    let mut za = zip::ZipArchive::new(Cursor::new(&zip_bytes)).expect("zip");
    let mut files = Vec::new();
    for i in 0..za.len() {
        let mut f = za.by_index(i).expect("entry");
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        if f.is_dir() || name.contains("__MACOSX") || name.ends_with(".DS_Store") || name.ends_with("DICOMDIR") {
            continue;
        }
        let mut v = Vec::new();
        f.read_to_end(&mut v).expect("read");
        if v.len() > 132 && &v[128..132] == b"DICM" {
            files.push(v);
        }
    }
    let bytes: usize = files.iter().map(|f| f.len()).sum();
    let mb = bytes as f64 / 1e6;
    let n = files.len() as f64;

    let mut t_files = Vec::new();
    for r in 0..runs {
        let mut d = deid::Deidentifier::new(deid::Profile::Basic, [r as u8; 32]);
        let t = Instant::now();
        let mut out = 0usize;
        for f in &files {
            out += d.file(f).expect("deid").len();
        }
        t_files.push(t.elapsed().as_secs_f64());
        assert!(out > 0);
    }
    let zip_run = |c: deid::OutputCompression, parallel: bool| {
        let mut ts = Vec::new();
        for r in 0..runs {
            let mut o = deid::Options::new([r as u8; 32]);
            o.compression = c;
            let mut out = Cursor::new(Vec::with_capacity(bytes + 1024 * 1024));
            let t = Instant::now();
            if parallel {
                deid::deidentify_zip(Cursor::new(&zip_bytes), &mut out, &o).expect("deid zip");
            } else {
                deid::deidentify_zip_sequential(Cursor::new(&zip_bytes), &mut out, &o).expect("deid zip");
            }
            ts.push(t.elapsed().as_secs_f64());
        }
        median(ts)
    };
    let stored = deid::OutputCompression::Stored;
    let deflate6 = deid::OutputCompression::Deflate { level: 6 };
    let measures = [
        ("files", median(t_files)),
        ("zip_stored", zip_run(stored, true)),
        ("zip_stored_seq", zip_run(stored, false)),
        ("zip_deflate6", zip_run(deflate6, true)),
        ("zip_deflate6_seq", zip_run(deflate6, false)),
    ];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (what, s) in measures {
        println!(
            "{{\"impl\":\"rust-native\",\"measure\":\"{what}\",\"files\":{n},\"mb\":{mb:.2},\"median_s\":{s:.4},\"files_per_s\":{:.0},\"mb_per_s\":{:.1},\"runs\":{runs},\"threads\":{threads}}}",
            n / s,
            mb / s
        );
    }
}
