//! A series stored with the Deflated Explicit VR Little Endian transfer syntax (the T1
//! fixture with its canaries, re-written by the test kit at test time) comes out as the same
//! de-identified files as the series in Explicit VR Little Endian: written uncompressed,
//! byte for byte what the explicit series gives, and the report says so. A deflate bomb is
//! refused with its own error before its data set is read, and nothing is written.

mod common;

use std::io::Cursor;

use common::*;
use deid::{DeidError, Limits, Options, OutputCompression, Profile};

const T1: &str = "t1_mprage_sag_phi";
const MIB: u64 = 1024 * 1024;

fn deidentify(zip: &[u8], opts: &Options) -> Result<(deid::Outcome, Vec<u8>), DeidError> {
    let mut out = Cursor::new(Vec::new());
    let o = deid::deidentify_zip(Cursor::new(zip), &mut out, opts)?;
    Ok((o, out.into_inner()))
}

fn transfer_syntax(file: &[u8]) -> String {
    meta_text(file, 0x0010).unwrap_or_default()
}

/// The image files of a fixture ZIP (Part 10, not the DICOMDIR), in archive order: what the
/// output is made of.
fn image_files(zip: &[u8]) -> Vec<Vec<u8>> {
    zip_entries(zip)
        .into_iter()
        .filter(|(name, d)| {
            !name.contains("__MACOSX")
                && d.len() > 132
                && &d[128..132] == b"DICM"
                && meta_text(d, 0x0002).as_deref() != Some(DICOMDIR_CLASS)
        })
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn a_deflated_series_is_written_as_the_same_explicit_vr_little_endian_files() {
    let explicit = std::fs::read(fixtures().join(format!("{T1}.zip"))).unwrap();
    let deflated = deflated_fixture_zip(T1);
    let n = manifest(T1)["series"][0]["n_files"].as_u64().unwrap();
    let inputs = image_files(&deflated);
    assert_eq!(inputs.len() as u64, n, "test kit: every slice re-written");
    assert!(
        inputs.iter().all(|f| transfer_syntax(f) == DEFLATED_TS),
        "test kit: every slice deflated"
    );

    for compression in [OutputCompression::Stored, OutputCompression::Deflate { level: 6 }] {
        let mut opts = Options::new(seed(19));
        opts.compression = compression;
        let (from_deflated, zip) = deidentify(&deflated, &opts).unwrap();
        let (from_explicit, want) = deidentify(&explicit, &opts).unwrap();
        assert!(
            zip == want,
            "{compression:?}: output differs from the Explicit VR LE series' output"
        );
        assert_eq!(
            from_deflated.report.transcoded_from_deflated, n,
            "the report says the files are stored uncompressed"
        );
        assert_eq!(from_explicit.report.transcoded_from_deflated, 0);
        assert_eq!(
            deid::Report {
                transcoded_from_deflated: 0,
                ..from_deflated.report.clone()
            },
            from_explicit.report,
            "nothing else in the report differs"
        );
        assert_eq!(from_deflated.facts, from_explicit.facts);
        assert_eq!(
            from_deflated.series.transfer_syntax, DEFLATED_TS,
            "the series is described as uploaded"
        );

        for (name, file) in zip_entries(&zip) {
            assert_eq!(
                transfer_syntax(&file),
                EXPLICIT_LE_TS,
                "{name}: written as Explicit VR Little Endian"
            );
            assert!(
                parse(&file).pixel.is_some(),
                "{name}: an uncompressed data set with its pixel data"
            );
        }
    }

    // the browser writes file by file: same bytes as the server's ZIP pass
    let (_, zip) = deidentify(&deflated, &Options::new(seed(19))).unwrap();
    let mut d = deid::Deidentifier::new(Profile::Basic, seed(19));
    for (input, (name, written)) in inputs.iter().zip(zip_entries(&zip)) {
        assert!(
            d.file(input).unwrap() == written,
            "{name}: file-by-file output differs from the ZIP entry"
        );
    }
    assert_eq!(d.report().transcoded_from_deflated, n);
}

#[test]
fn no_canary_survives_in_the_output_of_a_deflated_series() {
    let m = manifest(T1);
    let (_, zip) = deidentify(&deflated_fixture_zip(T1), &Options::new(seed(23))).unwrap();
    let mut needles: Vec<String> = vec!["PHI-".into()];
    for e in m["injected"].as_array().unwrap() {
        if matches!(e["action"].as_str(), Some("remove" | "advisory"))
            && let Some(v) = e["value"].as_str()
        {
            needles.push(v.to_string());
        }
    }
    for k in [
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
        "SOPInstanceUIDs",
    ] {
        needles.extend(
            m["original_uids"][k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(String::from)),
        );
    }
    let entries = zip_entries(&zip);
    for v in &needles {
        assert!(!contains(&zip, v.as_bytes()), "a canary survives in the output ZIP");
        for (name, data) in &entries {
            assert!(!contains(data, v.as_bytes()), "a canary survives in {name}");
        }
    }
}

#[test]
fn a_deflate_bomb_is_refused_before_its_data_set_is_read_and_nothing_is_written() {
    let limit = Limits::default().max_entry_bytes;
    let bomb = deflate_bomb(limit + MIB);
    assert!((bomb.len() as u64) < limit / 100, "test kit: a small file");
    let refused = Err(DeidError::TooLargeWhenExtracted { limit_mib: limit / MIB });

    let mut d = deid::Deidentifier::new(Profile::Basic, seed(3));
    assert_eq!(d.file(&bomb).map(|_| ()), refused, "file by file (the browser)");
    assert_eq!(d.report().files_written, 0);
    assert_eq!(d.report().distinct_uids_replaced, 0);
    assert_eq!(
        deid::preview_removals(&bomb, Profile::Basic).map(|_| ()),
        refused,
        "preview"
    );

    // among real slices of a deflated series, after some of them
    let mut files = image_files(&deflated_fixture_zip(T1));
    files.truncate(4);
    files.push(bomb);
    let zip = zip_of(&files);
    let opts = Options::new(seed(3));
    assert_eq!(
        deid::inspect_zip(Cursor::new(&zip), &opts.limits).map(|_| ()),
        refused,
        "inspection"
    );
    for sequential in [false, true] {
        let mut out = Cursor::new(Vec::new());
        let r = if sequential {
            deid::deidentify_zip_sequential(Cursor::new(&zip), &mut out, &opts)
        } else {
            deid::deidentify_zip(Cursor::new(&zip), &mut out, &opts)
        };
        assert_eq!(r.map(|_| ()), refused, "ZIP (sequential: {sequential})");
        assert!(out.get_ref().is_empty(), "nothing written for a refused archive");
    }
}

#[test]
fn inflated_data_sets_count_toward_the_archive_size_limit() {
    // they are written inflated: an archive of well-compressed data sets cannot grow past the
    // limit on the way out
    let deflated = deflated_fixture_zip(T1);
    let entries: u64 = zip_entries(&deflated).iter().map(|(_, d)| d.len() as u64).sum();
    let inflated: u64 = image_files(&deflated)
        .iter()
        .map(|f| {
            let (_, body) = meta_elements(f);
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::DeflateDecoder::new(&f[body..]), &mut v).unwrap();
            v.len() as u64
        })
        .sum();
    let mut opts = Options::new(seed(7));
    opts.limits.max_total_bytes = (entries + inflated / 2).next_multiple_of(MIB);
    assert!(opts.limits.max_total_bytes < entries + inflated, "test set-up");
    let refused = Err(DeidError::TooLargeWhenExtracted {
        limit_mib: opts.limits.max_total_bytes / MIB,
    });
    assert_eq!(
        deid::inspect_zip(Cursor::new(&deflated), &opts.limits).map(|_| ()),
        refused
    );
    assert_eq!(deidentify(&deflated, &opts).map(|_| ()), refused);
    opts.limits.max_total_bytes = (entries + inflated).next_multiple_of(MIB);
    assert!(deidentify(&deflated, &opts).is_ok(), "within the limit");
}
