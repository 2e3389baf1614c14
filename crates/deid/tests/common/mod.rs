//! Test helpers: locate the shared fixtures, read ZIPs, and walk output DICOM files with
//! dicom-parser independently of the crate's own rewrite loop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::PathBuf;

use dicom_core::Tag;
use dicom_parser::dataset::read::{DataSetReaderOptions, ValueReadStrategy};
use dicom_parser::dataset::{DataSetReader, DataToken};
use dicom_transfer_syntax_registry::entries;

pub fn assets() -> PathBuf {
    let p = match std::env::var_os("NEUROVOL_ASSETS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    assert!(
        p.join("fixtures/README.md").exists(),
        "shared assets not found at {} (set NEUROVOL_ASSETS)",
        p.display()
    );
    p
}

pub fn fixtures() -> PathBuf {
    assets().join("fixtures")
}

pub fn manifest(name: &str) -> serde_json::Value {
    let s = std::fs::read_to_string(fixtures().join(format!("{name}.manifest.json"))).expect("manifest");
    serde_json::from_str(&s).expect("manifest json")
}

pub const SERIES_FIXTURES: &[&str] =
    &["t1_mprage_sag_phi", "t1_mprage_sag_clean", "siemens_xa30_enh_t1_phi", "philips_ingenia_adni_t1_phi"];

pub fn seed(b: u8) -> [u8; 32] {
    [b; 32]
}

/// (name, inflated bytes) of every entry.
pub fn zip_entries(zip_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut za = zip::ZipArchive::new(Cursor::new(zip_bytes)).expect("output is a zip");
    let mut out = Vec::new();
    for i in 0..za.len() {
        let mut f = za.by_index(i).expect("entry");
        let name = String::from_utf8_lossy(f.name_raw()).into_owned();
        let mut v = Vec::new();
        f.read_to_end(&mut v).expect("read entry");
        out.push((name, v));
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(hay, needle).is_some()
}

pub fn text(b: &[u8]) -> String {
    let t: &[u8] = {
        let mut end = b.len();
        while end > 0 && (b[end - 1] == 0 || b[end - 1] == b' ') {
            end -= 1;
        }
        &b[..end]
    };
    String::from_utf8_lossy(t).into_owned()
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub preamble_zero: bool,
    pub meta: HashMap<u16, Vec<u8>>,
    pub transfer_syntax: String,
    /// every element tag at every depth (item/delimiter tags excluded)
    pub all_tags: Vec<Tag>,
    /// top-level primitive values, raw
    pub top: HashMap<Tag, Vec<u8>>,
    /// every UI-looking value at any depth: (tag, text)
    pub uis: Vec<(Tag, String)>,
    /// the top-level PixelData value (native) or fragments concatenated with item headers
    pub pixel: Option<Vec<u8>>,
}

pub fn parse(bytes: &[u8]) -> Parsed {
    let mut p = Parsed { preamble_zero: bytes[..128].iter().all(|&b| b == 0), ..Default::default() };
    assert_eq!(&bytes[128..132], b"DICM");
    let mut pos = 132;
    while u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 2 {
        let e = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let vr = &bytes[pos + 4..pos + 6];
        let (len, h) = if matches!(vr, b"OB" | b"UN" | b"UT" | b"SQ") {
            (u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize, 12)
        } else {
            (u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize, 8)
        };
        p.meta.insert(e, bytes[pos + h..pos + h + len].to_vec());
        pos += h + len;
    }
    p.transfer_syntax = text(&p.meta[&0x0010]);
    let inflated;
    let body: &[u8] = if p.transfer_syntax == "1.2.840.10008.1.2.1.99" {
        let mut v = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[pos..]).read_to_end(&mut v).unwrap();
        inflated = v;
        &inflated
    } else {
        &bytes[pos..]
    };
    let ts = match p.transfer_syntax.as_str() {
        "1.2.840.10008.1.2" => entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        "1.2.840.10008.1.2.2" => entries::EXPLICIT_VR_BIG_ENDIAN.erased(),
        _ => entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    };
    let opts = DataSetReaderOptions::default().value_read(ValueReadStrategy::Raw);
    let reader = DataSetReader::new_with_ts_options(Cursor::new(body), &ts, opts).unwrap();
    let mut depth = 0usize;
    let mut last: Option<dicom_core::header::DataElementHeader> = None;
    let mut in_pixel = false;
    let mut pixel_frag: Vec<u8> = Vec::new();
    for t in reader {
        match t.expect("output parses") {
            DataToken::SequenceStart { tag, .. } => {
                p.all_tags.push(tag);
                depth += 1;
            }
            DataToken::PixelSequenceStart => {
                p.all_tags.push(Tag(0x7FE0, 0x0010));
                in_pixel = true;
                depth += 1;
            }
            DataToken::SequenceEnd => {
                depth -= 1;
                if in_pixel && depth == 0 {
                    in_pixel = false;
                    p.pixel = Some(std::mem::take(&mut pixel_frag));
                }
            }
            DataToken::ItemStart { len } => {
                if in_pixel {
                    pixel_frag.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
                    pixel_frag.extend_from_slice(&len.0.to_le_bytes());
                }
            }
            DataToken::ItemValue(v) => pixel_frag.extend_from_slice(&v),
            DataToken::OffsetTable(t) => {
                for x in t {
                    pixel_frag.extend_from_slice(&x.to_le_bytes());
                }
            }
            DataToken::ElementHeader(h) => {
                p.all_tags.push(h.tag);
                last = Some(h);
            }
            DataToken::PrimitiveValue(v) => {
                let h = last.take().unwrap();
                let raw = v.to_bytes().into_owned();
                if h.vr == dicom_core::VR::UI {
                    p.uis.push((h.tag, text(&raw)));
                }
                if depth == 0 {
                    if h.tag == Tag(0x7FE0, 0x0010) {
                        p.pixel = Some(raw.clone());
                    }
                    p.top.insert(h.tag, raw);
                }
            }
            DataToken::ItemEnd => {}
        }
    }
    p
}

pub fn top_text(p: &Parsed, g: u16, e: u16) -> Option<String> {
    p.top.get(&Tag(g, e)).map(|v| text(v))
}
