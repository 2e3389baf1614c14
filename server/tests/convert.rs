//! DICOM → NIfTI conversion (`server/src/convert.rs`) with the real dcm2niix on the shared
//! fixtures: the volume equals dcm2niix's own conversion of the clean original, the header
//! holds no canary, the usability rules refuse what they should with the specific error,
//! and nothing is left behind but `out/volume.nii.gz` (nothing at all on error) — not in
//! `work`, not in the temp dir, no process.
//!
//! The rules that would need DICOM series too costly to build here (coarse voxels, 4D,
//! low resolution, coverage, units) are tested on synthetic headers through the same
//! `check_volume` that `convert` calls.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use server::convert::{self, ConvertError, ConvertSettings, ConvertWarning};
use volumetry::nifti::Header;

// ---------------------------------------------------------------------------------------
// helpers

fn fixtures() -> PathBuf {
    let assets = std::env::var("NEUROVOL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assets.join("fixtures")
}

fn dcm2niix_available() -> bool {
    convert::dcm2niix_version(Path::new("dcm2niix")).is_ok()
}

/// A private directory under the system temp dir, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!(
            "neurovol-convert-{tag}-{}",
            hex::encode(rand::random::<[u8; 6]>())
        ));
        fs::create_dir(&dir).unwrap();
        TestDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    /// An empty `work` directory, as the pipeline passes it.
    fn work(&self) -> PathBuf {
        let w = self.0.join("work");
        fs::create_dir(&w).unwrap();
        w
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every path under `dir`, relative, directories with a trailing `/`.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn temp_entries() -> BTreeSet<String> {
    fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `convert` and checks what it left: `out/volume.nii.gz` on success, nothing on
/// error; no new temp-dir entry that looks like conversion output; no process still
/// running with `work` in its command line.
fn convert_checked(zip: &Path, work: &Path, settings: &ConvertSettings) -> Result<convert::Converted, ConvertError> {
    let before = temp_entries();
    let result = convert::convert(zip, work, settings, None);
    let left = tree(work);
    match &result {
        Ok(c) => {
            assert_eq!(c.nifti, work.join("out/volume.nii.gz"));
            assert_eq!(
                left,
                BTreeSet::from(["out/".to_string(), "out/volume.nii.gz".to_string()]),
                "work after success"
            );
        }
        Err(e) => assert!(left.is_empty(), "work after {e:?}: {left:?}"),
    }
    // Other processes share the temp dir: only flag entries that look like ours.
    let leaked: Vec<_> = temp_entries()
        .difference(&before)
        .filter(|n| !n.starts_with("neurovol-"))
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            n.contains("dcm2niix") || n.contains(".nii") || n.contains(".dcm") || n.contains("volume")
        })
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "new temp-dir entries: {leaked:?}");
    assert!(
        processes_mentioning(work).is_empty(),
        "a process still uses {}",
        work.display()
    );
    result
}

/// Pids of live processes whose command line mentions `path`.
fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(&needle)
            && !is_zombie(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid)
}

/// De-identifies a fixture (or any ZIP) as the upload path does.
fn deidentify(input: &Path, out: &Path, series: Option<usize>) -> PathBuf {
    let mut opts = deid::Options::new(rand::random());
    opts.series = series.map(deid::SeriesSelector::Index);
    let reader = std::io::BufReader::new(File::open(input).unwrap());
    let writer = File::create(out).unwrap();
    deid::deidentify_zip(reader, writer, &opts).expect("de-identify");
    out.to_path_buf()
}

fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut za = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for i in 0..za.len() {
        let mut f = za.by_index(i).unwrap();
        if f.is_dir() {
            continue;
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.push((f.name().unwrap().to_string(), bytes));
    }
    out
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) -> PathBuf {
    let mut w = zip::ZipWriter::new(File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
    path.to_path_buf()
}

/// dcm2niix run directly (the way `convert` runs it) on an extracted fixture; returns the
/// uncompressed bytes of the NIfTI named `volume.nii`.
fn dcm2niix_direct(zip: &Path, dir: &Path) -> Vec<u8> {
    let input = dir.join("direct-in");
    let out = dir.join("direct-out");
    fs::create_dir_all(&out).unwrap();
    zip::ZipArchive::new(File::open(zip).unwrap())
        .unwrap()
        .extract(&input)
        .unwrap();
    let res = std::process::Command::new("dcm2niix")
        .args(["-g", "i", "-z", "n", "-b", "n", "-f", "volume", "-o"])
        .arg(&out)
        .arg(&input)
        .output()
        .unwrap();
    assert!(res.status.success(), "dcm2niix on the original failed");
    fs::read(out.join("volume.nii")).unwrap()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// The image bytes of an uncompressed little-endian NIfTI-1 file.
fn voxels(nii: &[u8]) -> &[u8] {
    &nii[f32_at(nii, 108) as usize..]
}

/// Dims, datatype, pixdim, scaling, qform/sform codes, quaternion and sform rows.
fn geometry_fields(nii: &[u8]) -> Vec<u8> {
    [40..76, 76..108, 112..120, 252..344]
        .into_iter()
        .flat_map(|r| nii[r].to_vec())
        .collect()
}

/// Every identifying string of a fixture's manifest: removed and advisory values and the
/// original UIDs, plus the `PHI-` prefix.
fn canaries(manifest: &Path) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&fs::read(manifest).unwrap()).unwrap();
    let mut out: Vec<String> = m["injected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] != "keep")
        .filter_map(|i| i["value"].as_str().map(str::to_string))
        .filter(|v| v.len() >= 6)
        .collect();
    for key in ["StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"] {
        if let Some(uid) = m["original_uids"][key].as_str() {
            out.push(uid.to_string());
        }
    }
    out.push("PHI-".into());
    assert!(out.len() > 30, "manifest lists the canaries");
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    // memchr is built optimised (a dependency); a naive scan of 33 MB per canary is slow in a debug test
    memchr::memmem::find(hay, needle).is_some()
}

/// The de-identified clean T1 fixture, written once per test into `dir`.
fn clean_deid(dir: &Path) -> PathBuf {
    deidentify(
        &fixtures().join("t1_mprage_sag_clean.zip"),
        &dir.join("clean.deid.zip"),
        None,
    )
}

macro_rules! require_dcm2niix {
    () => {
        if !dcm2niix_available() {
            // the test command requires it (NEUROVOL_REQUIRE_DCM2NIIX=1): a failure, not a skip
            assert!(
                std::env::var("NEUROVOL_REQUIRE_DCM2NIIX").ok().is_none_or(|v| v != "1"),
                "dcm2niix is not installed (NEUROVOL_REQUIRE_DCM2NIIX=1)"
            );
            eprintln!("SKIPPED: dcm2niix is not installed");
            return;
        }
    };
}

// ---------------------------------------------------------------------------------------
// real fixtures

#[test]
fn phi_t1_converts_like_dcm2niix_on_the_clean_original_and_keeps_no_canary() {
    require_dcm2niix!();
    let t = TestDir::new("phi");
    let deid_zip = deidentify(
        &fixtures().join("t1_mprage_sag_phi.zip"),
        &t.path().join("phi.deid.zip"),
        None,
    );
    let work = t.work();
    let c = convert_checked(&deid_zip, &work, &ConvertSettings::default()).expect("converts");
    assert_eq!(c.dims, [256, 256, 256]);
    assert_eq!(c.voxel_mm, [1.0, 1.0, 1.0]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let ours = gunzip(&c.nifti);
    let direct = dcm2niix_direct(&fixtures().join("t1_mprage_sag_clean.zip"), t.path());
    assert_eq!(
        geometry_fields(&ours),
        geometry_fields(&direct),
        "dims, pixdim, scaling, qform, sform"
    );
    assert_eq!(ours[70..72], [4, 0], "int16");
    assert!(voxels(&ours) == voxels(&direct), "voxel bytes differ");
    assert_eq!(voxels(&ours).len(), 256 * 256 * 256 * 2);

    // scrubbed header
    assert_eq!(f32_at(&ours, 108), 352.0, "vox_offset");
    assert!(ours[148..252].iter().all(|&b| b == 0), "descrip and aux_file blank");
    assert!(ours[328..344].iter().all(|&b| b == 0), "intent_name blank");
    assert_eq!(ours[344..352], *b"n+1\0\0\0\0\0", "magic, no extension");
    assert!(
        contains(&direct[148..228], b"TE="),
        "dcm2niix did write a descrip (the scrub is not vacuous)"
    );
    for canary in canaries(&fixtures().join("t1_mprage_sag_phi.manifest.json")) {
        assert!(!contains(&ours, canary.as_bytes()), "{canary} in the NIfTI");
    }
    // volumetry reads it
    let vol = volumetry::nifti::read_f32(&c.nifti).expect("volumetry reads the result");
    assert_eq!(vol.dims, [256, 256, 256]);
    assert_eq!(vol.header.descrip, [0u8; 80]);
}

#[test]
fn vendor_fixtures_convert() {
    require_dcm2niix!();
    for (fixture, dims, voxel, low_res) in [
        ("philips_ingenia_adni_t1_phi", [170, 256, 256], [1.0, 1.0, 1.0], false),
        ("siemens_xa30_enh_t1_phi", [96, 128, 128], [2.0, 2.0, 2.0], true),
    ] {
        let t = TestDir::new("vendor");
        let deid_zip = deidentify(
            &fixtures().join(format!("{fixture}.zip")),
            &t.path().join("deid.zip"),
            None,
        );
        let work = t.work();
        let started = Instant::now();
        let c = convert_checked(&deid_zip, &work, &ConvertSettings::default())
            .unwrap_or_else(|e| panic!("{fixture}: {} ({e})", e.code()));
        eprintln!(
            "{fixture}: dims {:?}, voxel {:?} mm, warnings {:?}, dcm2niix {} ms, convert {} ms",
            c.dims,
            c.voxel_mm,
            c.warnings.iter().map(|w| w.code()).collect::<Vec<_>>(),
            c.dcm2niix_ms,
            started.elapsed().as_millis()
        );
        assert_eq!(c.dims, dims, "{fixture}");
        for (got, want) in c.voxel_mm.iter().zip(voxel) {
            assert!((got - want).abs() < 1e-4, "{fixture}: voxel {:?}", c.voxel_mm);
        }
        assert_eq!(
            c.warnings
                .iter()
                .any(|w| matches!(w, ConvertWarning::LowResolution { .. })),
            low_res,
            "{fixture}: {:?}",
            c.warnings
        );

        // The same stored voxels and geometry as dcm2niix on the original (whose overlays
        // become extra *_ROI volumes and whose Philips private scaling changes only
        // scl_slope, so those are not compared).
        let ours = gunzip(&c.nifti);
        let direct = dcm2niix_direct(&fixtures().join(format!("{fixture}.zip")), t.path());
        assert!(voxels(&ours) == voxels(&direct), "{fixture}: voxel bytes differ");
        assert_eq!(ours[40..108], direct[40..108], "{fixture}: dims, datatype, pixdim");
        assert_eq!(ours[252..328], direct[252..328], "{fixture}: qform/sform");
        for canary in canaries(&fixtures().join(format!("{fixture}.manifest.json"))) {
            assert!(!contains(&ours, canary.as_bytes()), "{fixture}: {canary} in the NIfTI");
        }
        volumetry::nifti::read_f32(&c.nifti).expect("volumetry reads the result");
    }
}

// ---------------------------------------------------------------------------------------
// refusals with the real dcm2niix

#[test]
fn a_missing_middle_slice_is_refused() {
    require_dcm2niix!();
    let t = TestDir::new("missing");
    let mut entries = zip_entries(&clean_deid(t.path()));
    assert_eq!(entries.len(), 256);
    entries.remove(128);
    let zip = write_zip(&t.path().join("missing.zip"), &entries);
    let err = convert_checked(&zip, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::MissingSlices), "{err:?}");
    assert!(err.is_input_problem());
}

#[test]
fn ten_slices_are_refused() {
    require_dcm2niix!();
    let t = TestDir::new("ten");
    let entries: Vec<_> = zip_entries(&clean_deid(t.path()))
        .into_iter()
        .skip(100)
        .take(10)
        .collect();
    let zip = write_zip(&t.path().join("ten.zip"), &entries);
    let err = convert_checked(&zip, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(
        matches!(err, ConvertError::TooFewSlices { slices: 10, min: 50 }),
        "{err:?}"
    );
    assert!(err.is_input_problem());
}

#[test]
fn a_single_slice_is_not_3d() {
    require_dcm2niix!();
    let t = TestDir::new("one");
    let entries: Vec<_> = zip_entries(&clean_deid(t.path()))
        .into_iter()
        .skip(128)
        .take(1)
        .collect();
    let zip = write_zip(&t.path().join("one.zip"), &entries);
    let err = convert_checked(&zip, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::NotThreeD), "{err:?}");
}

#[test]
fn two_series_are_refused() {
    require_dcm2niix!();
    let t = TestDir::new("two");
    // adv_two_series_mixed.zip: two interleaved series; deid outputs one chosen series, so
    // the two de-identified series are put back into one archive.
    let two = fixtures().join("adv_two_series_mixed.zip");
    let mut entries = zip_entries(&deidentify(&two, &t.path().join("s1.zip"), Some(0)));
    for (name, bytes) in zip_entries(&deidentify(&two, &t.path().join("s2.zip"), Some(1))) {
        entries.push((format!("b{name}"), bytes));
    }
    let zip = write_zip(&t.path().join("two.zip"), &entries);
    let err = convert_checked(&zip, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::SeveralVolumes(2)), "{err:?}");
    assert!(err.is_input_problem());

    // The same with two full-size series (the clean and the PHI T1, each de-identified).
    let mut entries = zip_entries(&clean_deid(t.path()));
    let phi = deidentify(
        &fixtures().join("t1_mprage_sag_phi.zip"),
        &t.path().join("phi.zip"),
        None,
    );
    for (name, bytes) in zip_entries(&phi) {
        entries.push((format!("b{name}"), bytes));
    }
    let zip = write_zip(&t.path().join("two-t1.zip"), &entries);
    let err = convert_checked(&zip, &t.path().join("work2").tap_mkdir(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::SeveralVolumes(2)), "{err:?}");
}

#[test]
fn no_dicom_gives_no_volume() {
    require_dcm2niix!();
    let t = TestDir::new("nodicom");
    let zip = write_zip(
        &t.path().join("text.zip"),
        &[("0001.dcm".into(), b"not a DICOM file\n".repeat(100))],
    );
    let err = convert_checked(&zip, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::NoVolume), "{err:?}");
    assert!(err.is_input_problem());

    let empty = write_zip(&t.path().join("empty.zip"), &[]);
    let err = convert_checked(&empty, &t.path().join("work2").tap_mkdir(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::NoVolume), "{err:?}");
}

#[test]
fn a_truncated_file_is_corrupt() {
    require_dcm2niix!();
    let t = TestDir::new("trunc");
    let mut entries = zip_entries(&clean_deid(t.path()));
    let len = entries[100].1.len();
    entries[100].1.truncate(len - 4000);
    let zip = write_zip(&t.path().join("trunc.zip"), &entries);
    let err = convert_checked(&zip, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::CorruptDicom), "{err:?}");
    assert!(err.is_input_problem());
}

#[test]
fn not_a_zip_is_a_bad_archive() {
    let t = TestDir::new("notzip");
    let path = t.path().join("x.zip");
    fs::write(&path, b"PK\x03\x04 but not really").unwrap();
    let err = convert_checked(&path, &t.work(), &ConvertSettings::default()).unwrap_err();
    assert!(matches!(err, ConvertError::BadArchive(_)), "{err:?}");
    assert!(!err.is_input_problem());
}

#[test]
fn a_missing_binary_is_a_clear_error() {
    let t = TestDir::new("nobin");
    let settings = ConvertSettings {
        dcm2niix: t.path().join("no-such-dcm2niix"),
        ..Default::default()
    };
    let zip = write_zip(&t.path().join("one.zip"), &[("0001.dcm".into(), vec![0u8; 200])]);
    let err = convert_checked(&zip, &t.work(), &settings).unwrap_err();
    assert!(matches!(err, ConvertError::Dcm2niixMissing), "{err:?}");
    assert_eq!(err.code(), "dcm2niix_missing");
    assert!(!err.is_input_problem());
    assert!(err.to_string().contains("dcm2niix"), "{err}");
    let err = convert::dcm2niix_version(&settings.dcm2niix).unwrap_err();
    assert!(matches!(err, ConvertError::Dcm2niixMissing), "{err:?}");
    // by name, not found in PATH
    let err = convert::dcm2niix_version(Path::new("neurovol-no-such-dcm2niix")).unwrap_err();
    assert!(matches!(err, ConvertError::Dcm2niixMissing), "{err:?}");
}

#[test]
fn version_of_the_installed_dcm2niix() {
    require_dcm2niix!();
    let v = convert::dcm2niix_version(Path::new("dcm2niix")).unwrap();
    eprintln!("dcm2niix {v}");
    assert!(v.starts_with("v1."), "{v}");
}

#[test]
fn timeout_kills_the_real_dcm2niix() {
    require_dcm2niix!();
    let t = TestDir::new("timeout");
    let zip = clean_deid(t.path());
    let settings = ConvertSettings {
        timeout: Duration::from_millis(1),
        ..Default::default()
    };
    let err = convert_checked(&zip, &t.work(), &settings).unwrap_err();
    assert!(matches!(err, ConvertError::Timeout { .. }), "{err:?}");
    assert!(!err.is_input_problem());
}

#[test]
fn timeout_kills_a_slow_converter_and_its_children() {
    let t = TestDir::new("slow");
    let pids = t.path().join("pids");
    let script = t.path().join("slow-dcm2niix");
    // A stand-in that starts a grandchild and then waits: both must be gone afterwards.
    // Written by a separate process: a file this multi-threaded test process had open for
    // writing could leak into another test's fork and make exec fail with ETXTBSY.
    let text = format!(
        "#!/bin/sh\nsleep 30 &\necho $! > '{0}.child'\necho $$ > '{0}.main'\nwait\n",
        pids.display()
    );
    let status = std::process::Command::new("sh")
        .args(["-c", "printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", &text])
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
    let zip = write_zip(&t.path().join("one.zip"), &[("0001.dcm".into(), vec![0u8; 200])]);
    let settings = ConvertSettings {
        dcm2niix: script,
        timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let started = Instant::now();
    let err = convert_checked(&zip, &t.work(), &settings).unwrap_err();
    assert!(matches!(err, ConvertError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    for which in ["main", "child"] {
        let pid: u32 = fs::read_to_string(pids.with_extension(which))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid), "{which} process {pid} still running");
    }
}

// ---------------------------------------------------------------------------------------
// the rules on synthetic headers (the same function `convert` applies)

fn header(dim: [i16; 8], voxel: [f32; 3]) -> Header {
    let mut h = Header {
        dim,
        ..Default::default()
    };
    h.pixdim[1..4].copy_from_slice(&voxel);
    h
}

fn check(h: &Header) -> Result<convert::Geometry, ConvertError> {
    convert::check_volume(h, &ConvertSettings::default())
}

#[test]
fn rules_accept_a_1mm_volume_without_warning() {
    let g = check(&header([3, 176, 256, 256, 1, 1, 1, 1], [1.0, 1.0, 1.0])).unwrap();
    assert_eq!(g.dims, [176, 256, 256]);
    assert!(g.warnings.is_empty());
    // 4D with a single time point is a 3D volume
    assert!(check(&header([4, 176, 256, 256, 1, 1, 1, 1], [1.0, 1.0, 1.0])).is_ok());
    // 1.2 mm (ADNI-style) is not "low resolution"; f32 noise is tolerated
    assert!(
        check(&header([3, 160, 192, 192, 1, 1, 1, 1], [1.2, 1.0000001, 1.2000003]))
            .unwrap()
            .warnings
            .is_empty()
    );
}

#[test]
fn rules_warn_between_1_2_and_2_mm() {
    for voxel in [[1.5, 1.0, 1.0], [2.0, 2.0, 2.0], [0.9, 0.9, 2.0000002]] {
        let g = check(&header([3, 128, 128, 128, 1, 1, 1, 1], voxel)).unwrap();
        assert_eq!(g.warnings.len(), 1, "{voxel:?}");
        assert_eq!(g.warnings[0].code(), "low_resolution");
        let ConvertWarning::LowResolution { voxel_mm } = &g.warnings[0];
        assert!((voxel_mm[0] - voxel[0] as f64).abs() < 1e-6);
        let text = g.warnings[0].to_string();
        assert!(text.contains("mm"), "{text}");
    }
}

#[test]
fn rules_refuse_coarse_voxels() {
    for voxel in [[1.0, 1.0, 3.0], [2.1, 1.0, 1.0], [0.5, 0.5, 5.0]] {
        let err = check(&header([3, 256, 256, 60, 1, 1, 1, 1], voxel)).unwrap_err();
        assert!(
            matches!(err, ConvertError::TooCoarse { max_mm: 2.0, .. }),
            "{voxel:?}: {err:?}"
        );
        assert_eq!(err.code(), "too_coarse");
        assert!(err.is_input_problem());
    }
    let err = check(&header([3, 256, 256, 60, 1, 1, 1, 1], [1.0, 1.0, 3.0])).unwrap_err();
    assert!(err.to_string().contains("1 × 1 × 3 mm"), "{err}");
}

#[test]
fn rules_refuse_4d() {
    let err = check(&header([4, 96, 96, 60, 200, 1, 1, 1], [2.0, 2.0, 2.0])).unwrap_err();
    assert!(matches!(err, ConvertError::FourD { volumes: 200 }), "{err:?}");
    let err = check(&header([5, 96, 96, 60, 1, 3, 1, 1], [2.0, 2.0, 2.0])).unwrap_err();
    assert!(matches!(err, ConvertError::FourD { volumes: 3 }), "{err:?}");
    assert_eq!(err.code(), "four_d");
}

#[test]
fn rules_refuse_2d_few_slices_and_little_coverage() {
    // a single image
    let err = check(&header([2, 256, 256, 1, 1, 1, 1, 1], [1.0, 1.0, 1.0])).unwrap_err();
    assert!(matches!(err, ConvertError::NotThreeD), "{err:?}");
    let err = check(&header([3, 256, 256, 1, 1, 1, 1, 1], [1.0, 1.0, 5.0])).unwrap_err();
    assert!(matches!(err, ConvertError::NotThreeD), "{err:?}");
    // a localizer plane stack, a thin slab
    let err = check(&header([3, 256, 256, 3, 1, 1, 1, 1], [1.0, 1.0, 1.0])).unwrap_err();
    assert!(
        matches!(err, ConvertError::TooFewSlices { slices: 3, min: 50 }),
        "{err:?}"
    );
    let err = check(&header([3, 49, 256, 256, 1, 1, 1, 1], [1.0, 1.0, 1.0])).unwrap_err();
    assert!(matches!(err, ConvertError::TooFewSlices { slices: 49, .. }), "{err:?}");
    // enough slices but under 100 mm along one axis
    let err = check(&header([3, 256, 256, 80, 1, 1, 1, 1], [1.0, 1.0, 1.0])).unwrap_err();
    assert!(
        matches!(err, ConvertError::TooLittleCoverage { min_mm: 100.0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("80 mm"), "{err}");
    // exactly 100 mm passes
    assert!(check(&header([3, 256, 256, 100, 1, 1, 1, 1], [1.0, 1.0, 1.0])).is_ok());
}

#[test]
fn rules_respect_units_and_reject_invalid_sizes() {
    // metres: 0.001 m = 1 mm
    let mut h = header([3, 176, 256, 256, 1, 1, 1, 1], [0.001, 0.001, 0.001]);
    h.xyzt_units = 1 | 8;
    let g = check(&h).unwrap();
    assert!((g.voxel_mm[0] - 1.0).abs() < 1e-6, "{:?}", g.voxel_mm);
    // micrometres: 1000 µm = 1 mm
    h = header([3, 176, 256, 256, 1, 1, 1, 1], [1000.0, 1000.0, 1000.0]);
    h.xyzt_units = 3;
    assert!(check(&h).is_ok());
    for bad in [0.0, f32::NAN, f32::INFINITY] {
        let err = check(&header([3, 176, 256, 256, 1, 1, 1, 1], [1.0, bad, 1.0])).unwrap_err();
        assert!(
            matches!(err, ConvertError::InvalidGeometry | ConvertError::TooCoarse { .. }),
            "{bad}: {err:?}"
        );
    }
    // negative pixdim (a flip in some writers) is its absolute value
    assert!(check(&header([3, 176, 256, 256, 1, 1, 1, 1], [-1.0, 1.0, 1.0])).is_ok());
}

#[test]
fn run_outcomes_are_classified() {
    use convert::classify_run;
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        classify_run(Some(0), "Convert 256 DICOM as out/volume", &names(&["volume.nii"])).unwrap(),
        "volume.nii"
    );
    let cases: Vec<(Option<i32>, &str, Vec<String>, &str)> = vec![
        (None, "", names(&["volume.nii"]), "dcm2niix_crashed"),
        (Some(0), "", names(&["volume.nii", "volume_Eq_1.nii"]), "missing_slices"),
        (
            Some(0),
            "Warning: Missing images? Expected 255 images",
            names(&["volume.nii"]),
            "missing_slices",
        ),
        (
            Some(0),
            "Warning: Interslice distance varies in this volume",
            names(&["volume.nii"]),
            "missing_slices",
        ),
        (
            Some(1),
            "Error: Missing images. Found 250 images",
            names(&[]),
            "missing_slices",
        ),
        (Some(10), "", names(&["volume.nii"]), "missing_slices"),
        (
            Some(1),
            "Warning: File not large enough to store image data: x",
            names(&[]),
            "corrupt_dicom",
        ),
        (
            Some(0),
            "Warning: Unsupported transfer syntax '1.2.840.10008.1.2.1.99'",
            names(&[]),
            "unsupported_encoding",
        ),
        (Some(0), "", names(&["volume.nii", "volumea.nii"]), "several_volumes"),
        (
            Some(0),
            "",
            names(&["volume_e1.nii", "volume_e2.nii"]),
            "several_volumes",
        ),
        (
            Some(0),
            "",
            names(&["volume_i00001.nii", "volume_i00002.nii", "volume_i00003.nii"]),
            "several_volumes",
        ),
        (
            Some(2),
            "Error: Unable to find any DICOM images",
            names(&[]),
            "no_volume",
        ),
        (Some(0), "", names(&[]), "no_volume"),
        (Some(1), "", names(&[]), "conversion_failed"),
        (Some(8), "", names(&["volume.nii"]), "conversion_failed"),
    ];
    for (code, log, outputs, want) in cases {
        let got = classify_run(code, log, &outputs).unwrap_err();
        assert_eq!(got.code(), want, "{code:?} {log:?} {outputs:?}");
    }
}

#[test]
fn scrub_keeps_voxels_and_drops_text_and_extensions() {
    // A NIfTI-1 header with text fields filled and a 32-byte extension, then 2x2x2 int16.
    let mut h = vec![0u8; 348];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[4..14].copy_from_slice(b"PHI-dtype\0");
    h[14..32].copy_from_slice(b"PHI-dbname-000000\0");
    for (i, d) in [3i16, 2, 2, 2, 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_le_bytes());
    h[72..74].copy_from_slice(&16i16.to_le_bytes());
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&(352f32 + 32.0).to_le_bytes());
    h[148..148 + 22].copy_from_slice(b"TE=3;Time=120517.042;x");
    h[228..228 + 20].copy_from_slice(b"PHI-ImageComments-xx");
    h[328..328 + 12].copy_from_slice(b"PHI-intent-x");
    h[344..348].copy_from_slice(b"n+1\0");
    let mut file = h.clone();
    file.extend_from_slice(&[1, 0, 0, 0]); // extension present
    file.extend_from_slice(&32i32.to_le_bytes());
    file.extend_from_slice(&4i32.to_le_bytes()); // ecode
    file.extend_from_slice(b"PHI-extension-text-here!"); // 24 bytes: esize 32 in all
    let vox: Vec<u8> = (0..16u8).map(|b| b.wrapping_mul(37)).collect();
    file.extend_from_slice(&vox);

    let mut buf = file.clone();
    convert::scrub_nifti(&mut buf, false, 16).unwrap();
    assert_eq!(buf.len(), 352 + 16);
    assert_eq!(&buf[352..], &vox[..], "voxel bytes unchanged");
    assert_eq!(f32_at(&buf, 108), 352.0);
    assert!(
        !contains(&buf, b"PHI-") && !contains(&buf, b"TE="),
        "text left in the header"
    );
    assert_eq!(&buf[0..4], &file[0..4]);
    assert_eq!(&buf[32..108], &file[32..108], "dims, datatype, pixdim untouched");
    assert_eq!(&buf[112..148], &file[112..148]);
    assert_eq!(&buf[252..328], &file[252..328], "qform/sform untouched");
    assert_eq!(&buf[344..348], b"n+1\0");
    let vol = volumetry::nifti::decode_f32(&buf).unwrap();
    assert_eq!(vol.dims, [2, 2, 2]);

    // too few voxels, bad offsets
    let mut short = file.clone();
    short.truncate(file.len() - 1);
    assert!(matches!(
        convert::scrub_nifti(&mut short, false, 16),
        Err(ConvertError::BadOutput(_))
    ));
    let mut odd = file.clone();
    odd[108..112].copy_from_slice(&100f32.to_le_bytes());
    assert!(matches!(
        convert::scrub_nifti(&mut odd, false, 16),
        Err(ConvertError::BadOutput(_))
    ));
}

#[test]
fn every_error_has_a_code_and_a_message_without_placeholders() {
    use ConvertError::*;
    let all = [
        Dcm2niixMissing,
        Dcm2niixVersion,
        Timeout { seconds: 300 },
        Dcm2niixCrashed,
        NoVolume,
        SeveralVolumes(3),
        NotThreeD,
        FourD { volumes: 2 },
        TooFewSlices { slices: 3, min: 50 },
        TooLittleCoverage {
            extent_mm: [256.0, 256.0, 80.0],
            min_mm: 100.0,
        },
        TooCoarse {
            voxel_mm: [1.0, 1.0, 5.0],
            max_mm: 2.0,
        },
        MissingSlices,
        CorruptDicom,
        UnsupportedEncoding,
        UnsupportedDataType { datatype: 128 },
        InvalidGeometry,
        UnreadableVolume,
        ConversionFailed { status: 1 },
        BadArchive("x"),
        TooLarge("x"),
        BadOutput("x"),
        Io {
            op: "x",
            source: std::io::Error::other("disk full"),
        },
    ];
    let codes: BTreeSet<_> = all.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), all.len(), "codes are distinct");
    for e in &all {
        let text = e.to_string();
        assert!(text.len() > 20 && !text.contains('{'), "{text}");
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> PathBuf;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        fs::create_dir(&self).unwrap();
        self
    }
}

/// The face goes before anything is stored. On real heads (the T1 fixture and the Philips
/// full head): the converted volume is dcm2niix's above the plane and zero below it, and no
/// voxel of the brain (mindgrab at full resolution on the original) lies below the plane;
/// the mid-sagittal slices are saved as test artefacts.
#[test]
fn real_heads_are_defaced_and_keep_their_brain() {
    require_dcm2niix!();
    use volumetry::deface::{Defacer, MaskGrid, for_each_removed};
    let assets = volumetry::assets_dir();
    let defacer = Defacer::load(&assets, MaskGrid::Coarse).unwrap();
    let full_mask = Defacer::load(&assets, MaskGrid::Full).unwrap();
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    fs::create_dir_all(&artefacts).unwrap();
    for fixture in ["t1_mprage_sag_clean.zip", "philips_ingenia_adni_t1_phi.zip"] {
        let t = TestDir::new("deface");
        let zip = deidentify(&fixtures().join(fixture), &t.path().join("deid.zip"), None);
        let settings = ConvertSettings::default();
        let plain = convert::convert(&zip, &t.work(), &settings, None).unwrap();
        let original = volumetry::nifti::decode_f32(&gunzip(&plain.nifti)).unwrap();
        fs::remove_dir_all(t.path().join("work")).unwrap();
        let converted = convert::convert(&zip, &t.work(), &settings, Some(&defacer)).unwrap();
        let defacing = converted.defacing.clone().expect("defaced");
        let raw = gunzip(&converted.nifti);
        assert_eq!(
            &raw[148..148 + volumetry::deface::DEFACED_DESCRIP.len()],
            volumetry::deface::DEFACED_DESCRIP.as_bytes(),
            "the file says the face was removed"
        );
        let defaced = volumetry::nifti::decode_f32(&raw).unwrap();
        assert_eq!(defaced.dims, original.dims);

        // the same cut again (the mask is deterministic): the plane and the shell
        let (_, cut) = defacer.plan(&original).unwrap();
        assert_eq!(cut.plane, defacing.plane);
        let mut below = vec![false; original.data.len()];
        let removed = for_each_removed(&defaced.header, defaced.dims, &cut, |i| below[i] = true);
        assert_eq!(removed, defacing.removed_voxels);
        assert!(
            removed > original.data.len() / 20,
            "{fixture}: a real cut ({removed} voxels)"
        );
        let nonzero_before = (0..below.len())
            .filter(|&i| below[i] && original.data[i] != 0.0)
            .count();
        assert!(nonzero_before > 100_000, "{fixture}: there was a face to remove");
        // the plane alone: nothing non-zero is left in front of and below it
        let aff = defaced.header.conform_affine();
        let [nx, ny, _] = defaced.dims;
        for (i, &value) in defaced.data.iter().enumerate() {
            let (x, y, z) = ((i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64);
            let p = [0, 1, 2].map(|r| aff[r][0] * x + aff[r][1] * y + aff[r][2] * z + aff[r][3]);
            assert!(
                !defacing.plane.removes(p) || value == 0.0,
                "{fixture}: voxel {i} below the plane"
            );
        }
        for (i, (&gone, (&before, &after))) in below.iter().zip(original.data.iter().zip(&defaced.data)).enumerate() {
            let want = if gone { 0.0 } else { before };
            assert_eq!(after, want, "{fixture}: voxel {i}");
        }
        // the brain: no voxel of a full-resolution mask of the original is removed
        let (mask, _) = full_mask.brain_mask(&original).unwrap();
        let aff = mask.header.sform_or_qform();
        let mut brain = 0;
        for (idx, _) in mask.data.iter().enumerate().filter(|(_, v)| **v != 0) {
            let (i, j, k) = (idx % 256, (idx / 256) % 256, idx / 65536);
            let p = [0, 1, 2].map(|r| aff[r][0] * i as f64 + aff[r][1] * j as f64 + aff[r][2] * k as f64 + aff[r][3]);
            assert!(!cut.removes(p), "{fixture}: brain voxel ({i},{j},{k}) removed");
            brain += 1;
        }
        assert!(brain > 1_000_000, "{fixture}: a brain was found ({brain} mm³)");
        let png = volumetry::preview::mid_sagittal_png(&defaced).unwrap();
        fs::write(
            artefacts.join(format!("defaced-{}.png", fixture.trim_end_matches(".zip"))),
            png,
        )
        .unwrap();
    }
}

/// A volume without a brain cannot be defaced, so it is refused with its own reason.
#[test]
fn a_volume_without_a_brain_is_refused() {
    require_dcm2niix!();
    let defacer =
        volumetry::deface::Defacer::load(&volumetry::assets_dir(), volumetry::deface::MaskGrid::Coarse).unwrap();
    let t = TestDir::new("nobrain");
    let zip = clean_deid(t.path());
    // the fixture's voxels all zero: a converted volume, but nothing in it
    let blank = write_zip(
        &t.path().join("blank.zip"),
        &zip_entries(&zip)
            .into_iter()
            .map(|(name, mut bytes)| {
                let at = bytes.windows(4).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00]).unwrap() + 12;
                bytes[at..].fill(0);
                (name, bytes)
            })
            .collect::<Vec<_>>(),
    );
    let err = convert::convert(&blank, &t.work(), &ConvertSettings::default(), Some(&defacer)).unwrap_err();
    assert_eq!(err.code(), "no_brain", "{err}");
    assert!(err.is_input_problem());
    assert!(!t.path().join("work/out").exists(), "nothing left behind");
}

/// Segmentation is not harmed: on the Philips full head, the labels of every structure with
/// a normative model, segmented from the defaced volume with the head's intensity reference
/// (as the pipeline sends it), agree with the labels of the whole head: Dice ≥ 0.99 and
/// volume within 1 %.
#[test]
fn defacing_leaves_the_normed_structures_where_they_were() {
    require_dcm2niix!();
    use volumetry::deface::{Defacer, MaskGrid};
    let assets = volumetry::assets_dir();
    let t = TestDir::new("deface-labels");
    let zip = deidentify(
        &fixtures().join("philips_ingenia_adni_t1_phi.zip"),
        &t.path().join("deid.zip"),
        None,
    );
    let settings = ConvertSettings::default();
    let plain = convert::convert(&zip, &t.work(), &settings, None).unwrap();
    let head = volumetry::nifti::decode_f32(&gunzip(&plain.nifti)).unwrap();
    fs::remove_dir_all(t.path().join("work")).unwrap();
    let defacer = Defacer::load(&assets, MaskGrid::Coarse).unwrap();
    let converted = convert::convert(&zip, &t.work(), &settings, Some(&defacer)).unwrap();
    let defaced = volumetry::nifti::decode_f32(&gunzip(&converted.nifti)).unwrap();
    let intensity = converted.defacing.unwrap().intensity;

    let options = |intensity| volumetry::SegmentOptions {
        brain_mask: false,
        intensity,
        ..Default::default()
    };
    let whole = volumetry::segment(&head, &assets, &options(None)).unwrap();
    let cut = volumetry::segment(&defaced, &assets, &options(Some(intensity))).unwrap();
    let mut checked = 0;
    for (name, model) in norms::REGION_MAP {
        let Some(label) = model.and_then(|_| whole.label_names.iter().position(|n| n == name)) else {
            continue;
        };
        let label = label as u8;
        let (a, b) = (&whole.labels.data, &cut.labels.data);
        let na = a.iter().filter(|&&v| v == label).count() as f64;
        let nb = b.iter().filter(|&&v| v == label).count() as f64;
        let both = a.iter().zip(b).filter(|&(&x, &y)| x == label && y == label).count() as f64;
        let dice = 2.0 * both / (na + nb);
        assert!(dice >= 0.99, "{name}: Dice {dice:.4}");
        assert!((nb / na - 1.0).abs() <= 0.01, "{name}: {na} → {nb} voxels");
        checked += 1;
    }
    assert!(checked >= 25, "{checked} normed structures compared");
}
