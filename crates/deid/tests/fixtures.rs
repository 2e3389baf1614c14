//! Every fixture in ../shared/fixtures: canaries gone from every output byte, no private or
//! overlay element at any depth, UIDs new and consistent, facts right, pixel data unchanged,
//! and every adversarial ZIP refused with its specific error.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;

use common::*;
use deid::{DeidError, Options, OutputCompression, Profile, SeriesSelector, Sex};
use dicom_core::Tag;
use sha2::{Digest, Sha256};

fn run(name: &str, opts: &Options) -> Result<(deid::Outcome, Vec<u8>), DeidError> {
    let input = std::fs::read(fixtures().join(format!("{name}.zip"))).expect("fixture zip");
    let mut out = Cursor::new(Vec::new());
    let o = deid::deidentify_zip(Cursor::new(input), &mut out, opts)?;
    Ok((o, out.into_inner()))
}

fn original_uids(m: &serde_json::Value) -> Vec<String> {
    let ou = &m["original_uids"];
    let mut v = Vec::new();
    for k in [
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "SOPInstanceUIDs",
    ] {
        if let Some(a) = ou[k].as_array() {
            v.extend(a.iter().filter_map(|x| x.as_str().map(String::from)));
        }
    }
    v
}

fn check_series_output(name: &str, profile: Profile, compression: OutputCompression) {
    let m = manifest(name);
    let mut opts = Options::new(seed(42));
    opts.profile = profile;
    opts.compression = compression;
    let (outcome, zip) = run(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let entries = zip_entries(&zip);
    let n_files = m["series"][0]["n_files"].as_u64().unwrap();
    assert_eq!(entries.len() as u64, n_files, "{name}: file count");
    assert_eq!(outcome.report.files_written, n_files);
    assert_eq!(outcome.series.files, n_files);

    // ---- raw byte search: the ZIP as stored, every inflated entry, every entry name
    let mut needles: Vec<(String, String)> = Vec::new();
    for e in m["injected"].as_array().unwrap() {
        let action = e["action"].as_str().unwrap();
        let Some(v) = e["value"].as_str() else { continue };
        let must_go = action == "remove" || (action == "advisory" && profile == Profile::Basic);
        if must_go {
            needles.push((e["path"].as_str().unwrap().to_string(), v.to_string()));
        }
    }
    for u in original_uids(&m) {
        needles.push(("original UID".into(), u));
    }
    if profile == Profile::Basic {
        needles.push(("PHI- marker".into(), "PHI-".into()));
    }
    for (path, v) in &needles {
        assert!(
            !contains(&zip, v.as_bytes()),
            "{name}: {path} value found in raw output ZIP"
        );
        for (ename, data) in &entries {
            assert!(
                !contains(ename.as_bytes(), v.as_bytes()),
                "{name}: {path} in an entry name"
            );
            assert!(!contains(data, v.as_bytes()), "{name}: {path} value found in {ename}");
        }
    }

    // ---- structure, UIDs, facts, pixels
    let orig: HashSet<String> = original_uids(&m).into_iter().collect();
    let (mut studies, mut series, mut fors, mut sops) = (HashSet::new(), HashSet::new(), HashSet::new(), Vec::new());
    let mut pixel_hashes = Vec::new();
    let keep: BTreeMap<String, String> = m["injected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "keep")
        .map(|e| {
            (
                e["keyword"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (ename, data) in &entries {
        assert!(
            ename.starts_with("IM") && ename.ends_with(".dcm"),
            "named by position: {ename}"
        );
        let p = parse(data);
        assert!(p.preamble_zero, "{name}: preamble not zeroed");
        for t in &p.all_tags {
            assert!(t.0 % 2 == 0, "{name}: private element {t} left in {ename}");
            assert!(
                !(0x6000..=0x60FF).contains(&t.0),
                "{name}: overlay element {t} left in {ename}"
            );
        }
        for (t, u) in &p.uis {
            for part in u.split('\\') {
                assert!(!orig.contains(part), "{name}: original UID survives in {t}");
                assert!(part.len() <= 64, "UID too long");
            }
        }
        studies.insert(top_text(&p, 0x0020, 0x000D).expect("StudyInstanceUID"));
        series.insert(top_text(&p, 0x0020, 0x000E).expect("SeriesInstanceUID"));
        if let Some(f) = top_text(&p, 0x0020, 0x0052) {
            fors.insert(f);
        }
        let sop = top_text(&p, 0x0008, 0x0018).expect("SOPInstanceUID");
        assert_eq!(
            text(&p.meta[&0x0003]),
            sop,
            "meta MediaStorageSOPInstanceUID = SOPInstanceUID"
        );
        assert!(sop.starts_with("2.25."));
        sops.push(sop);
        let ts_orig = m["series"][0]["TransferSyntaxUID"][0].as_str().unwrap();
        assert_eq!(p.transfer_syntax, ts_orig, "transfer syntax preserved");
        // MRAcquisitionType drives dcm2niix's voxel order: it must survive
        assert!(p.top.contains_key(&Tag(0x0018, 0x0023)), "MRAcquisitionType kept");
        for (kw, v) in &keep {
            let tag = match kw.as_str() {
                "PatientAge" => (0x0010, 0x1010),
                "PatientSex" => (0x0010, 0x0040),
                "StudyDate" => (0x0008, 0x0020),
                _ => continue,
            };
            assert_eq!(
                top_text(&p, tag.0, tag.1).as_deref(),
                Some(v.as_str()),
                "{kw} kept unchanged"
            );
        }
        pixel_hashes.push(hex(&Sha256::digest(p.pixel.as_ref().expect("pixel data"))));
    }
    assert_eq!(studies.len(), 1, "one StudyInstanceUID");
    assert_eq!(series.len(), 1, "one SeriesInstanceUID");
    assert!(fors.len() <= 1, "one FrameOfReferenceUID");
    let uniq: HashSet<_> = sops.iter().collect();
    assert_eq!(uniq.len(), sops.len(), "SOPInstanceUIDs unique");
    for s in studies.iter().chain(series.iter()).chain(fors.iter()) {
        assert!(!orig.contains(s) && s.starts_with("2.25."));
    }
    let mut want: Vec<String> = m["series"][0]["pixel_sha256"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    want.sort();
    pixel_hashes.sort();
    assert_eq!(pixel_hashes, want, "{name}: pixel data byte-identical");

    // ---- facts
    let f = outcome.facts.clone();
    let age: u32 = keep["PatientAge"].trim_end_matches('Y').parse().unwrap();
    assert_eq!(f.age_years, Some(age));
    let sex = match keep["PatientSex"].as_str() {
        "M" => Sex::Male,
        "F" => Sex::Female,
        _ => Sex::Other,
    };
    assert_eq!(f.sex, sex);
    let d = &keep["StudyDate"];
    let sd = f.study_date.expect("study date");
    assert_eq!(format!("{:04}{:02}{:02}", sd.year, sd.month, sd.day), *d);

    // ---- the report names keywords and counts, never values
    let rj = serde_json::to_string(&outcome).unwrap();
    for (_, v) in &needles {
        assert!(!rj.contains(v.as_str()), "{name}: a value leaked into the report");
    }
    if name.ends_with("_phi") {
        assert_eq!(outcome.report.removed.get("PatientName"), Some(&n_files));
        assert!(outcome.report.private_elements_removed > 0);
        assert!(outcome.report.overlay_elements_removed > 0);
    }
    assert!(outcome.series.looks_like_3d_t1, "{name}: recognised as 3D T1");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn series_fixtures_basic_stored() {
    for name in SERIES_FIXTURES {
        check_series_output(name, Profile::Basic, OutputCompression::Stored);
    }
}

#[test]
fn series_fixtures_basic_deflated() {
    for name in SERIES_FIXTURES {
        check_series_output(name, Profile::Basic, OutputCompression::Deflate { level: 6 });
    }
}

#[test]
fn series_fixtures_seed_profile() {
    for name in SERIES_FIXTURES {
        check_series_output(name, Profile::Seed, OutputCompression::Stored);
    }
    // the seed profile keeps what only PS3.15 removes (advisory canaries)
    let (_, zip) = run("t1_mprage_sag_phi", &{
        let mut o = Options::new(seed(1));
        o.profile = Profile::Seed;
        o
    })
    .unwrap();
    assert!(zip_entries(&zip).iter().any(|(_, d)| contains(d, b"PHI-RPID-abe8")));
}

#[test]
fn same_seed_same_bytes_other_seed_other_uids() {
    let o = Options::new(seed(9));
    let (_, a) = run("siemens_xa30_enh_t1_phi", &o).unwrap();
    let (_, b) = run("siemens_xa30_enh_t1_phi", &o).unwrap();
    assert_eq!(a, b, "deterministic for a given seed");
    let (_, c) = run("siemens_xa30_enh_t1_phi", &Options::new(seed(10))).unwrap();
    assert_ne!(a, c);
    let pa = parse(&zip_entries(&a)[0].1);
    let pc = parse(&zip_entries(&c)[0].1);
    assert_ne!(top_text(&pa, 0x0020, 0x000D), top_text(&pc, 0x0020, 0x000D));
}

#[test]
fn references_between_files_stay_consistent() {
    // the ORIGINAL StudyInstanceUID is also injected as ReferencedSOPInstanceUID: with the
    // seed profile the sequence stays and must point at the NEW study UID
    let mut o = Options::new(seed(3));
    o.profile = Profile::Seed;
    let (_, zip) = run("t1_mprage_sag_phi", &o).unwrap();
    for (_, data) in zip_entries(&zip).iter().take(3) {
        let p = parse(data);
        let study = top_text(&p, 0x0020, 0x000D).unwrap();
        let refs: Vec<&String> = p
            .uis
            .iter()
            .filter(|(t, _)| *t == Tag(0x0008, 0x1155))
            .map(|(_, u)| u)
            .collect();
        assert!(
            refs.contains(&&study),
            "ReferencedSOPInstanceUID mapped like the study UID"
        );
    }
}

#[test]
fn inventory_lists_series_and_local_only_text() {
    let input = std::fs::read(fixtures().join("philips_ingenia_adni_t1_phi.zip")).unwrap();
    let inv = deid::inspect_zip(Cursor::new(input), &deid::Limits::default()).unwrap();
    assert_eq!(inv.series.len(), 1);
    let s = &inv.series[0];
    assert_eq!(s.info.files, 170);
    assert_eq!(
        (s.info.rows, s.info.columns, s.info.slices),
        (Some(256), Some(256), 170)
    );
    assert_eq!(s.info.modality.as_deref(), Some("MR"));
    assert!(s.info.looks_like_3d_t1);
    assert!(
        s.local_only
            .series_description
            .as_deref()
            .is_some_and(|d| d.starts_with("PHI-SeriesDescription"))
    );
    assert!(inv.skipped.junk > 0, "Finder junk dropped");
    // nothing but local_only carries text from the files
    let info = serde_json::to_string(&s.info).unwrap();
    assert!(!info.contains("PHI-"));
}

#[test]
fn preview_lists_values_locally() {
    let input = std::fs::read(fixtures().join("siemens_xa30_enh_t1_phi.zip")).unwrap();
    let e = zip_entries(&input);
    let (_, file) = e.iter().find(|(n, d)| n.ends_with(".dcm") && !d.is_empty()).unwrap();
    let prev = deid::preview_removals(file, Profile::Basic).unwrap();
    let find = |p: &str| prev.iter().find(|r| r.path == p).map(|r| r.value.clone());
    assert!(find("PatientName").is_some_and(|v| v.starts_with("PHI-PatientName")));
    assert!(
        prev.iter().any(|r| r.path.starts_with("(0029,")),
        "private elements listed"
    );
    assert!(prev.iter().any(|r| r.path.starts_with("(6000,")), "overlay listed");
    assert!(find("PatientAge").is_none(), "kept facts are not listed");
}

#[test]
fn file_by_file_api_matches_zip_api() {
    let input = std::fs::read(fixtures().join("t1_mprage_sag_clean.zip")).unwrap();
    let files: Vec<Vec<u8>> = zip_entries(&input)
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d.len() > 132)
        .collect();
    let mut d = deid::Deidentifier::new(Profile::Basic, seed(5));
    let a = d.file(&files[0]).unwrap();
    let b = d.file(&files[1]).unwrap();
    let (pa, pb) = (parse(&a), parse(&b));
    assert_eq!(
        top_text(&pa, 0x0020, 0x000D),
        top_text(&pb, 0x0020, 0x000D),
        "one mapping per upload"
    );
    assert_ne!(top_text(&pa, 0x0008, 0x0018), top_text(&pb, 0x0008, 0x0018));
    assert_eq!(d.report().files_written, 2);
    assert_eq!(
        deid::deidentify_file_bytes(b"not dicom", Profile::Basic, seed(1)),
        Err(DeidError::NotDicomPart10)
    );
}

// ---------------------------------------------------------------- adversarial

type Expect = fn(&Result<deid::Outcome, DeidError>) -> bool;

fn adversarial_expectation(file: &str) -> Option<Expect> {
    Some(match file {
        "adv_zipslip.zip" | "adv_absolute_path.zip" => |r| matches!(r, Err(DeidError::UnsafePath)),
        "adv_zipbomb.zip" => |r| matches!(r, Err(DeidError::TooLargeWhenExtracted { .. })),
        "adv_two_series_mixed.zip" => |r| matches!(r, Err(DeidError::MultipleSeries { count: 2 })),
        "adv_nondicom_named_dcm.zip" => {
            |r| matches!(r, Ok(o) if o.report.files_written == 64 && o.report.skipped.not_dicom == 3)
        }
        "adv_nondicom_only.zip" => |r| matches!(r, Err(DeidError::NoDicomImages)),
        "adv_truncated_dicom.zip" => |r| matches!(r, Err(DeidError::TruncatedOrCorruptDicom { count: 2, .. })),
        "adv_empty.zip" => |r| matches!(r, Err(DeidError::EmptyZip)),
        "adv_not_a_zip.zip" => |r| matches!(r, Err(DeidError::NotAZip)),
        "adv_encrypted_entry.zip" => |r| matches!(r, Err(DeidError::EncryptedEntries)),
        _ => return None,
    })
}

/// Counts the bytes the library pulls from the input.
struct CountingReader<R> {
    inner: R,
    read: u64,
}
impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}
impl<R: std::io::Seek> std::io::Seek for CountingReader<R> {
    fn seek(&mut self, p: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(p)
    }
}

#[test]
fn every_adversarial_zip_gets_its_specific_error() {
    let adv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("adversarial.json")).unwrap()).unwrap();
    let cases = adv["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for c in cases {
        let file = c["file"].as_str().unwrap();
        let check = adversarial_expectation(file).unwrap_or_else(|| panic!("no expectation for new case {file}"));
        let input = std::fs::read(fixtures().join(file)).unwrap();
        let names: Vec<String> = zip::ZipArchive::new(Cursor::new(&input))
            .map(|mut z| {
                (0..z.len())
                    .filter_map(|i| {
                        z.by_index_raw(i)
                            .ok()
                            .map(|f| String::from_utf8_lossy(f.name_raw()).into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut reader = CountingReader {
            inner: Cursor::new(input.clone()),
            read: 0,
        };
        let mut out = Cursor::new(Vec::new());
        let r = deid::deidentify_zip(&mut reader, &mut out, &Options::new(seed(7)));
        assert!(check(&r), "{file}: unexpected result {r:?}");
        if let Err(e) = &r {
            let msg = e.to_string();
            assert!(
                !msg.contains("PHI-") && !msg.contains("neurovol_") && !msg.contains('/'),
                "{file}: {msg}"
            );
            for n in &names {
                let base = n.rsplit('/').next().unwrap_or(n);
                assert!(base.len() < 4 || !msg.contains(base), "{file}: error names an entry");
            }
            assert!(out.get_ref().is_empty(), "{file}: nothing written on refusal");
        }
        // inspection gives the same verdict (the browser's first step)
        let inv = deid::inspect_zip(Cursor::new(input.clone()), &deid::Limits::default());
        match (&r, &inv) {
            (Err(DeidError::MultipleSeries { .. }), Ok(inv)) => assert_eq!(inv.series.len(), 2),
            (Ok(_), Ok(_)) => {}
            (Err(a), Err(b)) => assert_eq!(a, b, "{file}"),
            other => panic!("{file}: inspect and deidentify disagree: {other:?}"),
        }
        if file == "adv_zipbomb.zip" {
            // refused on the declared sizes: the library read about the archive, not 2.25 GiB
            assert!(reader.read <= input.len() as u64 * 2, "read {} bytes", reader.read);
        }
    }
}

#[test]
fn two_series_never_merged_and_each_selectable() {
    let input = std::fs::read(fixtures().join("adv_two_series_mixed.zip")).unwrap();
    let inv = deid::inspect_zip(Cursor::new(input.clone()), &deid::Limits::default()).unwrap();
    assert_eq!(inv.series.len(), 2);
    let mut series_uids = HashSet::new();
    for (i, s) in inv.series.iter().enumerate() {
        assert_eq!(s.info.files, 64);
        for sel in [
            SeriesSelector::Index(i),
            SeriesSelector::Uid(s.local_only.series_instance_uid.clone()),
        ] {
            let mut o = Options::new(seed(11));
            o.series = Some(sel);
            let mut out = Cursor::new(Vec::new());
            let oc = deid::deidentify_zip(Cursor::new(input.clone()), &mut out, &o).unwrap();
            assert_eq!(oc.report.files_written, 64);
            let e = zip_entries(out.get_ref());
            let uids: HashSet<_> = e
                .iter()
                .map(|(_, d)| top_text(&parse(d), 0x0020, 0x000E).unwrap())
                .collect();
            assert_eq!(uids.len(), 1, "only the chosen series");
            let sn: HashSet<_> = e.iter().map(|(_, d)| top_text(&parse(d), 0x0020, 0x0011)).collect();
            assert_eq!(sn.len(), 1);
            series_uids.insert(sn.into_iter().next().unwrap());
        }
    }
    assert_eq!(series_uids.len(), 2, "the two selections are different series");
    let mut o = Options::new(seed(11));
    o.series = Some(SeriesSelector::Index(5));
    let r = deid::deidentify_zip(Cursor::new(input), Cursor::new(Vec::new()), &o);
    assert_eq!(r.err(), Some(DeidError::SeriesNotFound));
}

#[test]
fn configured_limits_are_enforced() {
    // per-entry limit below a real slice: refused as too large, whatever the header says
    let input = std::fs::read(fixtures().join("t1_mprage_sag_clean.zip")).unwrap();
    let mut o = Options::new(seed(1));
    o.limits.max_entry_bytes = 1000;
    let r = deid::deidentify_zip(Cursor::new(input.clone()), Cursor::new(Vec::new()), &o);
    assert!(matches!(r, Err(DeidError::TooLargeWhenExtracted { .. })));
    o.limits = deid::Limits {
        max_entries: 10,
        ..Default::default()
    };
    let r = deid::deidentify_zip(Cursor::new(input), Cursor::new(Vec::new()), &o);
    assert!(matches!(r, Err(DeidError::TooManyEntries { .. })));
}

#[test]
fn duplicate_instances_are_written_once() {
    let input = std::fs::read(fixtures().join("t1_mprage_sag_clean.zip")).unwrap();
    let entries = zip_entries(&input);
    let dicoms: Vec<&(String, Vec<u8>)> = entries.iter().filter(|(_, d)| d.len() > 132).collect();
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let fo = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (i, (_, d)) in dicoms.iter().enumerate() {
        zw.start_file(format!("a/{i}.dcm"), fo).unwrap();
        std::io::Write::write_all(&mut zw, d).unwrap();
    }
    zw.start_file("copy/of/first.dcm", fo).unwrap();
    std::io::Write::write_all(&mut zw, &dicoms[0].1).unwrap();
    let zip = zw.finish().unwrap().into_inner();
    let mut out = Cursor::new(Vec::new());
    let o = deid::deidentify_zip(Cursor::new(zip), &mut out, &Options::new(seed(4))).unwrap();
    assert_eq!(o.report.files_written, dicoms.len() as u64);
    assert_eq!(o.report.skipped.duplicates, 1);
}

#[test]
fn dicom_without_part10_header_is_named_as_such() {
    let input = std::fs::read(fixtures().join("t1_mprage_sag_clean.zip")).unwrap();
    let entries = zip_entries(&input);
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let fo = zip::write::SimpleFileOptions::default();
    for (i, (_, d)) in entries.iter().filter(|(_, d)| d.len() > 132).take(3).enumerate() {
        // strip preamble + DICM + file meta: a raw data set starting at group 0008
        let meta_len = u32::from_le_bytes(d[140..144].try_into().unwrap()) as usize;
        zw.start_file(format!("{i}"), fo).unwrap();
        std::io::Write::write_all(&mut zw, &d[144 + meta_len..]).unwrap();
    }
    let zip = zw.finish().unwrap().into_inner();
    let r = deid::deidentify_zip(
        Cursor::new(zip.clone()),
        Cursor::new(Vec::new()),
        &Options::new(seed(4)),
    );
    assert_eq!(r.err(), Some(DeidError::NoPart10Header));
    // and a raw file is never passed through by the file API either
    let raw = &entries.iter().find(|(_, d)| d.len() > 132).unwrap().1;
    let meta_len = u32::from_le_bytes(raw[140..144].try_into().unwrap()) as usize;
    assert_eq!(
        deid::deidentify_file_bytes(&raw[144 + meta_len..], Profile::Basic, seed(1)).err(),
        Some(DeidError::NotDicomPart10)
    );
}
