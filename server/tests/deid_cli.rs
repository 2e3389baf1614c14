//! `neurovol deid` on the shared fixtures: the wiring, the exit status, the one-line
//! reasons, and that a refused input leaves nothing behind. (The crate's own tests check
//! the de-identification itself in depth.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    let assets = std::env::var("NEUROVOL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assets.join("fixtures")
}

fn deid(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neurovol"))
        .arg("deid")
        .args(args)
        .output()
        .expect("run neurovol deid")
}

fn canaries(manifest: &Path) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    m["injected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == "remove")
        .filter_map(|i| i["value"].as_str().map(str::to_string))
        .filter(|v| v.len() >= 6)
        .collect()
}

#[test]
fn deid_writes_zip_and_report_without_identifiers() {
    let dir = common::temp_dir("deid-cli");
    let out = dir.join("out.zip");
    let report = dir.join("report.json");
    let input = fixtures().join("t1_mprage_sag_phi.zip");
    let res = deid(&[
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["report"]["files_written"], 256);
    assert_eq!(json["report"]["removed"]["PatientName"], 256);
    assert_eq!(json["facts"]["age_years"], 67);
    assert_eq!(json["facts"]["sex"], "F");

    let bytes = std::fs::read(&out).unwrap();
    let report_text = std::fs::read_to_string(&report).unwrap();
    for canary in canaries(&fixtures().join("t1_mprage_sag_phi.manifest.json")) {
        let needle = canary.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{canary} in output ZIP"
        );
        assert!(
            !report_text.contains(&canary) && !stderr.contains(&canary),
            "{canary} in report or stderr"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "only out.zip and report.json: {leftovers:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refused_inputs_give_one_line_and_leave_nothing() {
    let cases = [
        ("adv_zipslip.zip", "unsafe path"),
        ("adv_absolute_path.zip", "unsafe path"),
        ("adv_not_a_zip.zip", "not a ZIP"),
        ("adv_empty.zip", "empty"),
        ("adv_encrypted_entry.zip", "encrypted"),
        ("adv_zipbomb.zip", "too large when extracted"),
        ("adv_truncated_dicom.zip", "truncated or corrupt"),
        ("adv_nondicom_only.zip", "No DICOM images"),
        ("adv_two_series_mixed.zip", "2 different image series"),
    ];
    for (file, reason) in cases {
        let dir = common::temp_dir("deid-refused");
        let out = dir.join("out.zip");
        let report = dir.join("report.json");
        let res = deid(&[
            fixtures().join(file).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{file} accepted");
        assert_eq!(stderr.trim().lines().count(), 1, "{file}: one line: {stderr}");
        assert!(stderr.contains(reason), "{file}: expected {reason:?} in {stderr:?}");
        assert!(
            !stderr.contains("PHI-") && !stderr.contains("canary"),
            "{file}: identifying text in {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{file} left {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Choosing a series makes the two-series archive usable.
    let dir = common::temp_dir("deid-series");
    let out = dir.join("out.zip");
    let res = deid(&[
        fixtures().join("adv_two_series_mixed.zip").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--series",
        "1",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
