//! The parallel ZIP path (native default) gives the same bytes as the sequential one (the
//! path wasm32 always takes) for the same seed: on every fixture ZIP, both profiles, stored
//! and deflated output, and the same error where an archive is refused.

mod common;

use std::io::Cursor;

use common::*;
use deid::{Options, OutputCompression, Profile, SeriesSelector};

#[test]
fn parallel_and_sequential_give_identical_zips() {
    let mut names: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "zip"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing");
    let mut compared = 0;
    for path in &names {
        let input = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        for (profile, compression, seed_byte) in [
            (Profile::Basic, OutputCompression::Stored, 11),
            (Profile::Basic, OutputCompression::Deflate { level: 6 }, 12),
            (Profile::Seed, OutputCompression::Stored, 13),
        ] {
            // series 0 so archives with two series are compared too
            for series in [None, Some(SeriesSelector::Index(0))] {
                let mut o = Options::new(seed(seed_byte));
                o.profile = profile;
                o.compression = compression;
                o.series = series.clone();
                let mut par = Cursor::new(Vec::new());
                let mut seq = Cursor::new(Vec::new());
                let rp = deid::deidentify_zip(Cursor::new(&input), &mut par, &o);
                let rs = deid::deidentify_zip_sequential(Cursor::new(&input), &mut seq, &o);
                assert_eq!(rp, rs, "{name} {profile:?} {compression:?} {series:?}: outcome differs");
                if rp.is_ok() {
                    assert!(
                        par.get_ref() == seq.get_ref(),
                        "{name} {profile:?} {compression:?}: bytes differ"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared >= 20, "too few successful runs compared ({compared})");
}

#[test]
fn zip_path_maps_uids_like_file_by_file() {
    // the ZIP path assigns UIDs before rewriting (so files can be rewritten in parallel);
    // the result must be what one Deidentifier gives file after file, in output order
    for name in SERIES_FIXTURES {
        let input = std::fs::read(fixtures().join(format!("{name}.zip"))).unwrap();
        let mut o = Options::new(seed(9));
        o.compression = OutputCompression::Stored;
        let mut out = Cursor::new(Vec::new());
        let outcome = deid::deidentify_zip(Cursor::new(&input), &mut out, &o).unwrap();
        let written = zip_entries(out.get_ref());
        // the inputs in output order: the scan's order (entry order, images of the series)
        let inputs: Vec<Vec<u8>> = zip_entries(&input)
            .into_iter()
            .filter(|(n, d)| {
                !n.contains("__MACOSX") && !n.ends_with("DICOMDIR") && d.len() > 132 && &d[128..132] == b"DICM"
            })
            .map(|(_, d)| d)
            .collect();
        let mut d = deid::Deidentifier::new(o.profile, o.seed);
        let mut k = 0;
        for f in &inputs {
            // non-image Part 10 files are not written; the file API would still rewrite them
            let Ok(b) = d.file(f) else { continue };
            if k < written.len() && b == written[k].1 {
                k += 1;
            }
        }
        assert_eq!(k, written.len(), "{name}: ZIP output differs from file-by-file output");
        assert_eq!(
            outcome.report.distinct_uids_replaced,
            d.report().distinct_uids_replaced,
            "{name}"
        );
    }
}
