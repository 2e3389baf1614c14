//! `neurovol analyze`: the whole pipeline on one machine without the web UI (real deid,
//! dcm2niix, the local worker through a loopback signed-URL store, scoring).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::upload_kit::{canaries, find_identifying, fixtures, report_region, small_head};

fn analyze(input: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neurovol"))
        .arg("analyze")
        .arg(input)
        .arg("--out")
        .arg(out)
        .arg("--no-brain-mask")
        .env_remove("NEUROVOL_CONFIG")
        .env("NEUROVOL_DATA_DIR", out.with_extension("data"))
        .output()
        .expect("run neurovol analyze")
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn temp_entries() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("neurovol-analyze"))
        })
        .collect()
}

#[test]
fn analyze_writes_the_four_outputs_and_keeps_nothing_identifying() {
    let dir = common::temp_dir("analyze");
    // the clean series with the image reduced to a small cube: segmentation takes seconds
    let small = dir.join("small_head.zip");
    std::fs::write(&small, small_head()).unwrap();
    let out = dir.join("out");
    let before = temp_entries();
    let res = analyze(&small, &out);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert_eq!(
        listing(&out),
        ["labels.nii.gz", "report.json", "volume.nii.gz", "volumes.json"]
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for key in ["age_years", "sex", "study_date", "model", "icv_mm3", "regions"] {
        assert!(report.get(key).is_some(), "report.json has {key}: {report}");
    }
    assert_eq!(report["model"], "model21_104class");
    let regions = report["regions"].as_array().unwrap();
    // the 103 labels and FreeSurfer's four sums of them (volumetry::composite)
    assert_eq!(regions.len(), 107);
    assert_eq!(regions[103]["name"], "SubCortGrayVol");
    for r in regions {
        assert!(
            r["name"].is_string()
                && r["volume_mm3"].is_number()
                && r.get("percentile").is_some()
                && r.get("flag").is_some(),
            "{r}"
        );
    }
    // the small head fails the quality checks: flagged, not scored
    assert_eq!(report["quality_ok"], false);
    assert!(regions.iter().all(|r| r["percentile"].is_null()));
    assert_eq!(temp_entries(), before, "the temp dir is removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_of_the_phi_fixture_has_no_canary_in_its_outputs() {
    // the real PHI fixture end to end (one full segmentation, without mindgrab)
    let dir = common::temp_dir("analyze-phi");
    let out = dir.join("out");
    let res = analyze(&fixtures().join("t1_mprage_sag_phi.zip"), &out);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let mut blobs = vec![
        ("stderr".to_string(), res.stderr.clone()),
        ("stdout".to_string(), res.stdout.clone()),
    ];
    for name in listing(&out) {
        let bytes = std::fs::read(out.join(&name)).unwrap();
        if name.ends_with(".gz") {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
            blobs.push((format!("{name} (gunzipped)"), plain));
        }
        blobs.push((name, bytes));
    }
    if let Some(found) = find_identifying(&blobs, &canaries("t1_mprage_sag_phi.manifest.json")) {
        panic!("{found}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["age_years"], 67);
    assert_eq!(report["sex"], "F");
    // without a brain mask the labels are upstream's: the validity table keeps few
    // percentiles for them, among them the lateral ventricle's
    assert_eq!(report["labelling"], "upstream");
    let region = |name: &str| report_region(&report, name);
    let ventricle = region("Left-Lateral-Ventricle");
    assert!(ventricle["percentile"].is_number(), "{ventricle}");
    assert!(ventricle["percentile_band"].is_array(), "{ventricle}");
    let hippo = region("Left-Hippocampus");
    assert_eq!(hippo["no_percentile"], "method_biased", "{hippo}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refused_input_exits_non_zero_with_one_line_and_writes_nothing() {
    let dir = common::temp_dir("analyze-refused");
    for (name, expect) in [("adv_not_a_zip.zip", "ZIP"), ("adv_zipbomb.zip", "")] {
        let out = dir.join(name);
        let before = temp_entries();
        let res = analyze(&fixtures().join(name), &out);
        assert!(!res.status.success());
        let stderr = String::from_utf8_lossy(&res.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("neurovol: the scan was refused: ") && last.contains(expect),
            "{stderr}"
        );
        assert!(!out.exists(), "no output for refused input");
        assert_eq!(temp_entries(), before, "the temp dir is removed");
    }
    // a series without its middle slice: refused by the conversion rules
    let gap = dir.join("gap.zip");
    std::fs::write(&gap, common::upload_kit::clean_subset(|i| i != 128)).unwrap();
    let res = analyze(&gap, &dir.join("gap-out"));
    assert!(!res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.lines().last().unwrap_or_default().contains("refused"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
