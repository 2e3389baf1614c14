//! Runs the independent checker ../shared/tools/check_deid.py --strict on the output of
//! every series fixture (canaries, private/overlay, UIDs, kept facts, pixel data, and
//! dcm2niix voxel equality between original and de-identified series), and on the T1 series
//! re-written with the Deflated transfer syntax, whose de-identified files dcm2niix must
//! convert to the same voxels as those of the Explicit VR Little Endian series.
//!
//! Python comes from NEUROVOL_PYTHON, else the venv made by scripts/py-venv.sh
//! (/work/target/pyenv-deid/bin/python). When python with pydicom/numpy/nibabel or
//! dcm2niix is missing the test is SKIPPED with a loud message, unless
//! NEUROVOL_REQUIRE_PYCHECK=1 (CI), where it fails.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
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
    eprintln!(
        "\n!!!!!!!! SKIPPED check_deid.py test: {why}. Run scripts/py-venv.sh and set NEUROVOL_PYTHON. !!!!!!!!\n"
    );
}

fn dcm2niix_on_path() -> bool {
    Command::new("dcm2niix").arg("-h").output().is_ok()
}

/// The python that can run check_deid.py (with dcm2niix on PATH), or None after
/// [`unavailable`] said why.
fn checker_python() -> Option<PathBuf> {
    let py = python();
    let ok = Command::new(&py)
        .args([
            "-c",
            "import pydicom, numpy, nibabel; assert int(pydicom.__version__.split('.')[0]) >= 3",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        unavailable(&format!("{} lacks pydicom>=3/numpy/nibabel", py.display()));
        return None;
    }
    if !dcm2niix_on_path() {
        unavailable("dcm2niix not on PATH");
        return None;
    }
    Some(py)
}

/// A fresh folder for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("deid-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn deidentify(zip: &[u8], seed_byte: u8) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    deid::deidentify_zip(Cursor::new(zip), &mut out, &deid::Options::new(seed(seed_byte))).unwrap();
    out.into_inner()
}

/// check_deid.py --strict on `deid_zip` against `original_zip` and the manifest of fixture
/// `name`: its last line, or its whole output when it fails.
fn check_strict(py: &Path, name: &str, original_zip: &Path, deid_zip: &Path) -> Result<String, String> {
    let o = Command::new(py)
        .arg(assets().join("tools/check_deid.py"))
        .arg("--original")
        .arg(original_zip)
        .arg("--manifest")
        .arg(fixtures().join(format!("{name}.manifest.json")))
        .arg("--deid")
        .arg(deid_zip)
        .arg("--strict")
        .output()
        .expect("run check_deid.py");
    let stdout = String::from_utf8_lossy(&o.stdout);
    if o.status.success() {
        Ok(stdout.lines().last().unwrap_or("").to_string())
    } else {
        Err(format!("{stdout}\n{}", String::from_utf8_lossy(&o.stderr)))
    }
}

#[test]
fn check_deid_strict_on_every_series_fixture() {
    let Some(py) = checker_python() else { return };
    let tmp = TempDir::new("check");
    let mut failures = Vec::new();
    for name in SERIES_FIXTURES {
        let original = fixtures().join(format!("{name}.zip"));
        let out_path = tmp.0.join(format!("{name}.deid.zip"));
        std::fs::write(&out_path, deidentify(&std::fs::read(&original).unwrap(), 21)).unwrap();
        match check_strict(&py, name, &original, &out_path) {
            Ok(last) => eprintln!("{name}: {last}"),
            Err(out) => failures.push(format!("{name}:\n{out}")),
        }
    }
    assert!(
        failures.is_empty(),
        "check_deid.py --strict failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn check_deid_strict_on_the_deflated_t1_series() {
    let Some(py) = checker_python() else { return };
    let name = "t1_mprage_sag_phi";
    let tmp = TempDir::new("check-deflated");
    let original = tmp.0.join(format!("{name}.deflated.zip"));
    let deflated = deflated_fixture_zip(name);
    std::fs::write(&original, &deflated).unwrap();
    let out_path = tmp.0.join(format!("{name}.deflated.deid.zip"));
    std::fs::write(&out_path, deidentify(&deflated, 21)).unwrap();
    match check_strict(&py, name, &original, &out_path) {
        Ok(last) => eprintln!("{name} (deflated): {last}"),
        Err(out) => panic!("check_deid.py --strict failed on the deflated series:\n{out}"),
    }
}

/// dcm2niix (`-p n`, no compression, fixed name) on the files of `zip`, extracted into `dir`:
/// the voxel bytes and the dimensions of every NIfTI it writes, by file name.
fn dcm2niix_volumes(zip: &[u8], dir: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let (dicom, nifti) = (dir.join("dicom"), dir.join("nifti"));
    std::fs::create_dir_all(&dicom).unwrap();
    std::fs::create_dir_all(&nifti).unwrap();
    for (name, data) in zip_entries(zip) {
        std::fs::write(dicom.join(name), data).unwrap();
    }
    let o = Command::new("dcm2niix")
        .args(["-p", "n", "-z", "n", "-b", "n", "-f", "v_%s_%e", "-o"])
        .arg(&nifti)
        .arg(&dicom)
        .output()
        .expect("run dcm2niix");
    assert!(
        o.status.success(),
        "dcm2niix failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut vols: Vec<_> = std::fs::read_dir(&nifti)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "nii"))
        .map(|p| {
            let nii = std::fs::read(&p).unwrap();
            // NIfTI-1: dim[8] (i16) at 40, vox_offset (f32) at 108
            let vox_offset = f32::from_le_bytes(nii[108..112].try_into().unwrap()) as usize;
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, nii[40..56].to_vec(), nii[vox_offset..].to_vec())
        })
        .collect();
    vols.sort();
    vols
}

#[test]
fn a_deflated_series_converts_to_the_same_voxels_as_its_explicit_twin() {
    if !dcm2niix_on_path() {
        return unavailable("dcm2niix not on PATH");
    }
    let name = "t1_mprage_sag_phi";
    let tmp = TempDir::new("d2n-deflated");
    let explicit = deidentify(&std::fs::read(fixtures().join(format!("{name}.zip"))).unwrap(), 31);
    let deflated = deidentify(&deflated_fixture_zip(name), 31);
    let want = dcm2niix_volumes(&explicit, &tmp.0.join("explicit"));
    let got = dcm2niix_volumes(&deflated, &tmp.0.join("deflated"));
    assert_eq!(want.len(), 1, "one volume from the Explicit VR LE series");
    assert_eq!(
        got.len(),
        want.len(),
        "one volume from the de-identified deflated series"
    );
    for ((wn, wdim, wvox), (gn, gdim, gvox)) in want.iter().zip(&got) {
        assert_eq!((gn, gdim), (wn, wdim), "same volume name and dimensions");
        assert!(gvox == wvox, "{gn}: voxel data differ");
    }
}
