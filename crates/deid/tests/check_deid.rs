//! Runs the independent checker ../shared/tools/check_deid.py --strict on the output of
//! every series fixture (canaries, private/overlay, UIDs, kept facts, pixel data, and
//! dcm2niix voxel equality between original and de-identified series).
//!
//! Python comes from NEUROVOL_PYTHON, else the venv made by scripts/py-venv.sh
//! (/work/target/pyenv-deid/bin/python). When python with pydicom/numpy/nibabel or
//! dcm2niix is missing the test is SKIPPED with a loud message, unless
//! NEUROVOL_REQUIRE_PYCHECK=1 (CI), where it fails.

mod common;

use std::io::Cursor;
use std::path::PathBuf;
use std::process::Command;

use common::*;

fn python() -> PathBuf {
    std::env::var_os("NEUROVOL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/target/pyenv-deid/bin/python"))
}

fn unavailable(why: &str) {
    if std::env::var("NEUROVOL_REQUIRE_PYCHECK").is_ok_and(|v| v == "1") {
        panic!("check_deid.py cannot run: {why}");
    }
    eprintln!("\n!!!!!!!! SKIPPED check_deid.py test: {why}. Run scripts/py-venv.sh and set NEUROVOL_PYTHON. !!!!!!!!\n");
}

#[test]
fn check_deid_strict_on_every_series_fixture() {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import pydicom, numpy, nibabel; assert int(pydicom.__version__.split('.')[0]) >= 3"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return unavailable(&format!("{} lacks pydicom>=3/numpy/nibabel", py.display()));
    }
    if Command::new("dcm2niix").arg("-h").output().is_err() {
        return unavailable("dcm2niix not on PATH");
    }
    let tmp = std::env::temp_dir().join(format!("deid-check-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let checker = assets().join("tools/check_deid.py");
    let mut failures = Vec::new();
    for name in SERIES_FIXTURES {
        let input = std::fs::read(fixtures().join(format!("{name}.zip"))).unwrap();
        let mut out = Cursor::new(Vec::new());
        deid::deidentify_zip(Cursor::new(input), &mut out, &deid::Options::new(seed(21))).unwrap();
        let out_path = tmp.join(format!("{name}.deid.zip"));
        std::fs::write(&out_path, out.into_inner()).unwrap();
        let o = Command::new(&py)
            .arg(&checker)
            .arg("--original")
            .arg(fixtures().join(format!("{name}.zip")))
            .arg("--manifest")
            .arg(fixtures().join(format!("{name}.manifest.json")))
            .arg("--deid")
            .arg(&out_path)
            .arg("--strict")
            .output()
            .expect("run check_deid.py");
        let stdout = String::from_utf8_lossy(&o.stdout);
        eprintln!("{name}: {}", stdout.lines().last().unwrap_or(""));
        if !o.status.success() {
            failures.push(format!("{name}:\n{stdout}\n{}", String::from_utf8_lossy(&o.stderr)));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "check_deid.py --strict failed:\n{}", failures.join("\n"));
}
