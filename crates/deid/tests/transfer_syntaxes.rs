//! Synthetic files in every encoding the crate must preserve: implicit VR LE, explicit VR
//! LE/BE, deflated (written inflated, as explicit VR LE), and encapsulated pixel data.
//! Checks removal at depth, UID mapping across references, untouched pixel bytes and the
//! transfer syntax; and that damaged files are refused without large allocations.

mod common;

use std::io::Write;

use common::*;
use deid::{DeidError, Profile};
use dicom_core::Tag;

#[derive(Clone, Copy)]
struct Enc {
    explicit: bool,
    le: bool,
}

impl Enc {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.le { v.to_le_bytes() } else { v.to_be_bytes() }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.le { v.to_le_bytes() } else { v.to_be_bytes() }
    }
    fn el(&self, out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], val: &[u8]) {
        let mut v = val.to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        out.extend_from_slice(&self.u16(g));
        out.extend_from_slice(&self.u16(e));
        if self.explicit {
            out.extend_from_slice(vr);
            if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT") {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&self.u32(v.len() as u32));
            } else {
                out.extend_from_slice(&self.u16(v.len() as u16));
            }
        } else {
            out.extend_from_slice(&self.u32(v.len() as u32));
        }
        out.extend_from_slice(&v);
    }
    fn seq(&self, out: &mut Vec<u8>, g: u16, e: u16, items: &[Vec<u8>], defined: bool) {
        out.extend_from_slice(&self.u16(g));
        out.extend_from_slice(&self.u16(e));
        let mut body = Vec::new();
        for it in items {
            body.extend_from_slice(&self.u16(0xFFFE));
            body.extend_from_slice(&self.u16(0xE000));
            if defined {
                body.extend_from_slice(&self.u32(it.len() as u32));
                body.extend_from_slice(it);
            } else {
                body.extend_from_slice(&self.u32(0xFFFF_FFFF));
                body.extend_from_slice(it);
                body.extend_from_slice(&self.u16(0xFFFE));
                body.extend_from_slice(&self.u16(0xE00D));
                body.extend_from_slice(&self.u32(0));
            }
        }
        let len = if defined { body.len() as u32 } else { 0xFFFF_FFFF };
        if self.explicit {
            out.extend_from_slice(b"SQ\0\0");
        }
        out.extend_from_slice(&self.u32(len));
        out.extend_from_slice(&body);
        if !defined {
            out.extend_from_slice(&self.u16(0xFFFE));
            out.extend_from_slice(&self.u16(0xE0DD));
            out.extend_from_slice(&self.u32(0));
        }
    }
}

const SOP: &str = "1.2.826.0.1.3680043.99.1.7";
const STUDY: &str = "1.2.826.0.1.3680043.99.2";

/// Returns (file bytes, expected PixelData value bytes as pydicom/common::parse sees them).
fn build(ts: &str, enc: Enc, deflate: bool, encapsulated: bool) -> (Vec<u8>, Vec<u8>) {
    build_with(ts, enc, deflate, encapsulated, false)
}

/// `big`: 32 KiB of pixel data (large values are spliced, not copied, by the rewrite) and
/// elements after it (a private name and trailing padding).
fn build_with(ts: &str, enc: Enc, deflate: bool, encapsulated: bool, big: bool) -> (Vec<u8>, Vec<u8>) {
    let mut ds = Vec::new();
    enc.el(&mut ds, 0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.4");
    enc.el(&mut ds, 0x0008, 0x0018, b"UI", SOP.as_bytes());
    enc.el(&mut ds, 0x0008, 0x0020, b"DA", b"20200102");
    enc.el(&mut ds, 0x0008, 0x0060, b"CS", b"MR");
    // kept sequence: its reference to this SOP instance must follow the new UID
    let mut ref_item = Vec::new();
    enc.el(&mut ref_item, 0x0008, 0x1150, b"UI", b"1.2.840.10008.5.1.4.1.1.4");
    enc.el(&mut ref_item, 0x0008, 0x1155, b"UI", SOP.as_bytes());
    enc.el(&mut ref_item, 0x0010, 0x0010, b"PN", b"PHI-nested-name");
    enc.el(&mut ref_item, 0x0029, 0x0010, b"LO", b"ACME 1.0");
    enc.el(&mut ref_item, 0x0029, 0x1010, b"LO", b"PHI-nested-private");
    enc.seq(&mut ds, 0x0008, 0x1140, &[ref_item.clone()], true);
    enc.el(&mut ds, 0x0009, 0x0010, b"LO", b"ACME 1.0");
    enc.el(&mut ds, 0x0009, 0x1001, b"LO", b"PHI-private");
    // private sequence holding a name, undefined length
    let mut priv_item = Vec::new();
    enc.el(&mut priv_item, 0x0010, 0x0010, b"PN", b"PHI-in-private-seq");
    enc.seq(&mut ds, 0x0009, 0x1002, &[priv_item], false);
    enc.el(&mut ds, 0x0010, 0x0010, b"PN", b"PHI-name");
    enc.el(&mut ds, 0x0010, 0x0030, b"DA", b"19700101");
    enc.el(&mut ds, 0x0010, 0x0040, b"CS", b"F");
    enc.el(&mut ds, 0x0018, 0x0023, b"CS", b"3D");
    enc.el(&mut ds, 0x0020, 0x000D, b"UI", STUDY.as_bytes());
    enc.el(&mut ds, 0x0020, 0x000E, b"UI", b"1.2.826.0.1.3680043.99.3");
    enc.el(&mut ds, 0x0028, 0x0010, b"US", &enc.u16(2));
    enc.el(&mut ds, 0x0028, 0x0011, b"US", &enc.u16(2));
    let mut req = Vec::new();
    enc.el(&mut req, 0x0008, 0x0050, b"SH", b"PHI-acc");
    enc.el(&mut req, 0x0040, 0x1001, b"SH", b"PHI-rpid");
    enc.seq(&mut ds, 0x0040, 0x0275, &[req], false);
    enc.el(&mut ds, 0x6000, 0x0010, b"US", &enc.u16(2));
    enc.el(&mut ds, 0x6000, 0x0022, b"LO", b"PHI-overlay");
    let pixel: Vec<u8> = if encapsulated {
        // offset table item (empty) + one fragment; always little endian
        let mut frag = b"\xFF\xD8jpegish\xFF\xD9".to_vec();
        if big {
            frag.splice(2..2, (0..32 * 1024u32).map(|i| (i * 7 % 251) as u8));
        }
        let mut p = Vec::new();
        p.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        p.extend_from_slice(&(frag.len() as u32).to_le_bytes());
        p.extend_from_slice(&frag);
        ds.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        ds.extend_from_slice(&p);
        ds.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        p
    } else {
        // 2x2 16-bit pixels in the file's byte order
        let mut p = Vec::new();
        for v in [1u16, 0x0203, 0x0405, 0xFFFE] {
            p.extend_from_slice(&enc.u16(v));
        }
        if big {
            for v in 0..16 * 1024u32 {
                p.extend_from_slice(&enc.u16((v * 31 % 65521) as u16));
            }
        }
        enc.el(&mut ds, 0x7FE0, 0x0010, b"OW", &p);
        p
    };
    if big {
        enc.el(&mut ds, 0x7FE1, 0x0010, b"LO", b"ACME 1.0");
        enc.el(&mut ds, 0x7FE1, 0x1001, b"LO", b"PHI-after-pixels");
        enc.el(&mut ds, 0xFFFC, 0xFFFC, b"OB", &[0; 8]);
    }
    let mut f = vec![0x55u8; 128]; // non-zero preamble: must come back zeroed
    f.extend_from_slice(b"DICM");
    let mut meta = Vec::new();
    let le = Enc {
        explicit: true,
        le: true,
    };
    le.el(&mut meta, 0x0002, 0x0001, b"OB", &[0, 1]);
    le.el(&mut meta, 0x0002, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.4");
    le.el(&mut meta, 0x0002, 0x0003, b"UI", SOP.as_bytes());
    le.el(&mut meta, 0x0002, 0x0010, b"UI", ts.as_bytes());
    le.el(&mut meta, 0x0002, 0x0016, b"AE", b"PHI-AE-TITLE");
    le.el(&mut f, 0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes());
    f.extend_from_slice(&meta);
    if deflate {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&ds).unwrap();
        f.extend_from_slice(&z.finish().unwrap());
    } else {
        f.extend_from_slice(&ds);
    }
    (f, pixel)
}

fn variants() -> Vec<(&'static str, Enc, bool, bool)> {
    vec![
        (
            "1.2.840.10008.1.2",
            Enc {
                explicit: false,
                le: true,
            },
            false,
            false,
        ),
        (
            "1.2.840.10008.1.2.1",
            Enc {
                explicit: true,
                le: true,
            },
            false,
            false,
        ),
        (
            "1.2.840.10008.1.2.2",
            Enc {
                explicit: true,
                le: false,
            },
            false,
            false,
        ),
        (
            "1.2.840.10008.1.2.1.99",
            Enc {
                explicit: true,
                le: true,
            },
            true,
            false,
        ),
        (
            "1.2.840.10008.1.2.4.50",
            Enc {
                explicit: true,
                le: true,
            },
            false,
            true,
        ),
        (
            "1.2.840.10008.1.2.4.80",
            Enc {
                explicit: true,
                le: true,
            },
            false,
            true,
        ),
        (
            "1.2.840.10008.1.2.4.90",
            Enc {
                explicit: true,
                le: true,
            },
            false,
            true,
        ),
        (
            "1.2.840.10008.1.2.5",
            Enc {
                explicit: true,
                le: true,
            },
            false,
            true,
        ),
    ]
}

#[test]
fn every_transfer_syntax_preserved_and_cleaned() {
    for (ts, enc, deflate, encap) in variants() {
        let (input, pixel) = build(ts, enc, deflate, encap);
        // sanity: the synthetic input parses and has what we inject
        let pin = parse(&input);
        assert_eq!(pin.pixel.as_deref(), Some(&pixel[..]), "{ts}: test builder");
        let out = deid::deidentify_file_bytes(&input, Profile::Basic, seed(1)).unwrap_or_else(|e| panic!("{ts}: {e}"));
        let p = parse(&out.bytes);
        // a deflated data set is written inflated, as Explicit VR Little Endian
        let written = if deflate { EXPLICIT_LE_TS } else { ts };
        assert_eq!(p.transfer_syntax, written, "{ts}: transfer syntax preserved");
        assert!(p.preamble_zero, "{ts}: preamble zeroed");
        assert_eq!(p.pixel.as_deref(), Some(&pixel[..]), "{ts}: pixel bytes identical");
        for t in &p.all_tags {
            assert!(t.0 % 2 == 0 && !(0x6000..=0x60FF).contains(&t.0), "{ts}: {t} left");
            assert!(
                *t != Tag(0x0010, 0x0010) && *t != Tag(0x0040, 0x0275) && *t != Tag(0x0010, 0x0030),
                "{ts}: {t} left"
            );
        }
        assert!(
            !p.meta.contains_key(&0x0016),
            "{ts}: SourceApplicationEntityTitle dropped"
        );
        assert!(!contains(&out.bytes, b"PHI-"), "{ts}: canary left");
        assert!(
            !contains(&out.bytes, SOP.as_bytes()) && !contains(&out.bytes, STUDY.as_bytes()),
            "{ts}: UID left"
        );
        let sop = top_text(&p, 0x0008, 0x0018).unwrap();
        assert_eq!(text(&p.meta[&0x0003]), sop);
        let referenced: Vec<_> = p.uis.iter().filter(|(t, _)| *t == Tag(0x0008, 0x1155)).collect();
        assert_eq!(referenced.len(), 1, "{ts}: kept sequence kept");
        assert_eq!(referenced[0].1, sop, "{ts}: reference follows the new SOP UID");
        assert_eq!(
            top_text(&p, 0x0008, 0x0016).as_deref(),
            Some("1.2.840.10008.5.1.4.1.1.4"),
            "class kept"
        );
        assert_eq!(top_text(&p, 0x0018, 0x0023).as_deref(), Some("3D"));
        assert_eq!(
            top_text(&p, 0x0012, 0x0062).as_deref(),
            Some("YES"),
            "{ts}: PatientIdentityRemoved"
        );
        assert!(top_text(&p, 0x0012, 0x0063).is_some_and(|m| m.contains("BASIC")));
        let codes: Vec<_> = p.all_tags.iter().filter(|t| **t == Tag(0x0008, 0x0100)).collect();
        assert_eq!(codes.len(), 3, "{ts}: three method codes");
        let order: Vec<_> = p.all_tags.iter().filter(|t| p.top.contains_key(t)).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{ts}: top-level tags ascending");
        assert_eq!(top_text(&p, 0x0008, 0x0020).as_deref(), Some("20200102"), "dates kept");
        assert_eq!(
            out.facts.age_years,
            Some(50),
            "{ts}: age from birth date and study date"
        );
        assert_eq!(out.facts.sex, deid::Sex::Female);
    }
}

#[test]
fn large_pixel_data_and_trailing_elements_in_every_transfer_syntax() {
    for (ts, enc, deflate, encap) in variants() {
        let (input, pixel) = build_with(ts, enc, deflate, encap, true);
        let out = deid::deidentify_file_bytes(&input, Profile::Basic, seed(2)).unwrap_or_else(|e| panic!("{ts}: {e}"));
        let p = parse(&out.bytes);
        assert_eq!(p.pixel.as_deref(), Some(&pixel[..]), "{ts}: pixel bytes identical");
        assert!(
            !p.all_tags.iter().any(|t| t.0 == 0x7FE1),
            "{ts}: private element after the pixels left"
        );
        assert!(
            !contains(&out.bytes, b"PHI-") && !contains(&out.bytes, SOP.as_bytes()),
            "{ts}: canary left"
        );

        // three instances (one when deflated: the SOP UID cannot be patched in place)
        let mut files = vec![input.clone()];
        if !deflate {
            for last in [b'8', b'9'] {
                let mut f = input.clone();
                let mut at = 0;
                while let Some(i) = memchr::memmem::find(&f[at..], SOP.as_bytes()) {
                    f[at + i + SOP.len() - 1] = last;
                    at += i + SOP.len();
                }
                files.push(f);
            }
        }
        let zip = zip_of(&files);
        for compression in [
            deid::OutputCompression::Stored,
            deid::OutputCompression::Deflate { level: 1 },
        ] {
            let mut o = deid::Options::new(seed(4));
            o.compression = compression;
            let mut par = std::io::Cursor::new(Vec::new());
            let mut seq = std::io::Cursor::new(Vec::new());
            let a =
                deid::deidentify_zip(std::io::Cursor::new(&zip), &mut par, &o).unwrap_or_else(|e| panic!("{ts}: {e}"));
            let b = deid::deidentify_zip_sequential(std::io::Cursor::new(&zip), &mut seq, &o).unwrap();
            assert_eq!(a, b, "{ts}: outcome");
            assert!(
                par.get_ref() == seq.get_ref(),
                "{ts} {compression:?}: parallel != sequential bytes"
            );
            let written = zip_entries(par.get_ref());
            assert_eq!(written.len(), files.len(), "{ts}: files written");
            let mut d = deid::Deidentifier::new(o.profile, o.seed);
            for (f, (_, w)) in files.iter().zip(&written) {
                assert!(
                    d.file(f).unwrap() == *w,
                    "{ts}: ZIP entry differs from the file-by-file rewrite"
                );
            }
        }
    }
}

#[test]
fn a_deflated_file_is_written_as_the_rewrite_of_its_explicit_vr_little_endian_twin() {
    let le = Enc {
        explicit: true,
        le: true,
    };
    for big in [false, true] {
        let (deflated, _) = build_with(DEFLATED_TS, le, true, false, big);
        let (explicit, _) = build_with(EXPLICIT_LE_TS, le, false, false, big);
        let mut d = deid::Deidentifier::new(Profile::Basic, seed(5));
        let mut e = deid::Deidentifier::new(Profile::Basic, seed(5));
        let out = d.file(&deflated).unwrap();
        assert!(
            out == e.file(&explicit).unwrap(),
            "big={big}: output differs from the explicit VR LE rewrite"
        );
        let (meta, body) = meta_elements(&out);
        let group_length = meta.iter().find(|m| m.elem == 0x0000).map(|m| m.value().to_vec());
        let group: usize = meta.iter().filter(|m| m.elem != 0x0000).map(|m| m.encoded.len()).sum();
        assert_eq!(
            group_length,
            Some((group as u32).to_le_bytes().to_vec()),
            "group length of what is written"
        );
        assert!(
            body < out.len() && contains(&out[body..], b"MR"),
            "the data set is stored uncompressed"
        );
        let (dr, er) = (d.report(), e.report());
        assert_eq!(
            (dr.transcoded_from_deflated, er.transcoded_from_deflated),
            (1, 0),
            "the report says so"
        );
        assert_eq!(
            deid::Report {
                transcoded_from_deflated: 0,
                ..dr
            },
            er,
            "nothing else differs"
        );
    }
}

#[test]
fn native_same_seed_same_bytes() {
    for (ts, enc, deflate, encap) in variants() {
        let (input, _) = build(ts, enc, deflate, encap);
        let a = deid::deidentify_file_bytes(&input, Profile::Basic, seed(3)).unwrap();
        let b = deid::deidentify_file_bytes(&input, Profile::Basic, seed(3)).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn damaged_files_are_refused() {
    let (input, _) = build(
        "1.2.840.10008.1.2.1",
        Enc {
            explicit: true,
            le: true,
        },
        false,
        false,
    );
    for cut in [140usize, 200, 300, input.len() - 3, input.len() - 9] {
        let r = deid::deidentify_file_bytes(&input[..cut], Profile::Basic, seed(1));
        assert!(r.is_err(), "cut at {cut} accepted");
    }
    // a value length of 0xFFFFFFF0 must be refused, not allocated
    let mut bad = input.clone();
    let at = bad.len() - 8 - 4; // PixelData OW length field
    bad[at..at + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    assert_eq!(
        deid::deidentify_file_bytes(&bad, Profile::Basic, seed(1)).err(),
        Some(DeidError::CorruptDicom)
    );
    assert_eq!(
        deid::deidentify_file_bytes(b"DICM but not at 128", Profile::Basic, seed(1)).err(),
        Some(DeidError::NotDicomPart10)
    );
    let (mut unk, _) = build(
        "1.2.840.10008.1.2.1",
        Enc {
            explicit: true,
            le: true,
        },
        false,
        false,
    );
    // unknown private transfer syntax: refused, never passed through
    let pos = memchr::memmem::find(&unk, b"1.2.840.10008.1.2.1\0").unwrap();
    unk[pos..pos + 20].copy_from_slice(b"9.9.9.9.9.9.9.9.9.9\0");
    assert_eq!(
        deid::deidentify_file_bytes(&unk, Profile::Basic, seed(1)).err(),
        Some(DeidError::UnsupportedTransferSyntax)
    );
}

#[test]
fn sequence_hidden_in_un_is_dropped_not_passed_through() {
    // ReferencedImageSequence stored as VR UN (some converters do this): its content can
    // not be cleaned, so it must go even with the Seed profile, which keeps the sequence
    let le = Enc {
        explicit: true,
        le: true,
    };
    let mut item = Vec::new();
    let imp = Enc {
        explicit: false,
        le: true,
    };
    imp.el(&mut item, 0x0010, 0x0010, b"PN", b"PHI-hidden");
    let mut un = Vec::new();
    un.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
    un.extend_from_slice(&(item.len() as u32).to_le_bytes());
    un.extend_from_slice(&item);
    let mut ds = Vec::new();
    le.el(&mut ds, 0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.4");
    le.el(&mut ds, 0x0008, 0x0018, b"UI", SOP.as_bytes());
    le.el(&mut ds, 0x0008, 0x1140, b"UN", &un);
    le.el(&mut ds, 0x7FE0, 0x0010, b"OB", &[1, 2, 3, 4]);
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    let mut meta = Vec::new();
    le.el(&mut meta, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1");
    f.extend_from_slice(&meta);
    f.extend_from_slice(&ds);
    let mut d = deid::Deidentifier::new(Profile::Seed, seed(1));
    let out = d.file(&f).unwrap();
    assert!(!contains(&out, b"PHI-hidden"));
    assert!(!parse(&out).all_tags.contains(&Tag(0x0008, 0x1140)));
    assert_eq!(d.report().removed.get("ReferencedImageSequence"), Some(&1));
    let prev = deid::preview_removals(&f, Profile::Seed).unwrap();
    assert!(prev.iter().any(|r| r.path == "ReferencedImageSequence"));
}

#[test]
fn stray_delimiter_group_and_command_elements_do_not_break_reencoding() {
    // found by fuzzing: a (FFFE,FFFF) "element" has no VR on disk; writing it back in
    // explicit form made our own output unreadable. Such tags are dropped now.
    let le = Enc {
        explicit: true,
        le: true,
    };
    let mut ds = Vec::new();
    le.el(&mut ds, 0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.4");
    le.el(&mut ds, 0x0008, 0x0018, b"UI", SOP.as_bytes());
    le.el(&mut ds, 0x0000, 0x0002, b"UI", b"1.2.3");
    ds.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    le.el(&mut f, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1");
    f.extend_from_slice(&ds);
    let out = deid::deidentify_file_bytes(&f, Profile::Seed, seed(2)).unwrap();
    let again = deid::deidentify_file_bytes(&out.bytes, Profile::Seed, seed(3)).expect("own output re-read");
    let p = parse(&again.bytes);
    assert!(p.all_tags.iter().all(|t| t.0 != 0xFFFE && t.0 != 0x0000));
}
