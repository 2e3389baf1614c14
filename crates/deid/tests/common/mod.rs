//! Test helpers: locate the shared fixtures, read ZIPs, and walk output DICOM files with
//! dicom-parser independently of the crate's own rewrite loop.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
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

pub const SERIES_FIXTURES: &[&str] = &[
    "t1_mprage_sag_phi",
    "t1_mprage_sag_clean",
    "siemens_xa30_enh_t1_phi",
    "philips_ingenia_adni_t1_phi",
];

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

/// Zip `files` (stored entries `f0.dcm`, `f1.dcm`...).
pub fn zip_of(files: &[Vec<u8>]) -> Vec<u8> {
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (i, f) in files.iter().enumerate() {
        let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zw.start_file(format!("f{i}.dcm"), o).unwrap();
        zw.write_all(f).unwrap();
    }
    zw.finish().unwrap().into_inner()
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

/// One element of a file meta group (explicit VR little endian), as encoded.
#[derive(Debug, Clone)]
pub struct MetaElement {
    pub elem: u16,
    pub encoded: Vec<u8>,
    header_len: usize,
}

impl MetaElement {
    /// An element of group 0002; an odd-length value is padded (UI with NUL, others with space).
    pub fn new(elem: u16, vr: &[u8; 2], value: &[u8]) -> MetaElement {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(if vr == b"UI" { 0 } else { b' ' });
        }
        let mut encoded = Vec::new();
        encoded.extend_from_slice(&0x0002u16.to_le_bytes());
        encoded.extend_from_slice(&elem.to_le_bytes());
        encoded.extend_from_slice(vr);
        let header_len = if long_meta_vr(vr) {
            encoded.extend_from_slice(&[0, 0]);
            encoded.extend_from_slice(&(value.len() as u32).to_le_bytes());
            12
        } else {
            encoded.extend_from_slice(&(value.len() as u16).to_le_bytes());
            8
        };
        encoded.extend_from_slice(&value);
        MetaElement {
            elem,
            encoded,
            header_len,
        }
    }

    pub fn value(&self) -> &[u8] {
        &self.encoded[self.header_len..]
    }
}

fn long_meta_vr(vr: &[u8]) -> bool {
    matches!(vr, b"OB" | b"UN" | b"UT" | b"SQ")
}

/// The file meta elements of a Part 10 file, in order, and the offset of its data set.
pub fn meta_elements(bytes: &[u8]) -> (Vec<MetaElement>, usize) {
    assert_eq!(&bytes[128..132], b"DICM");
    let mut out = Vec::new();
    let mut pos = 132;
    while u16::from_le_bytes([bytes[pos], bytes[pos + 1]]) == 2 {
        let elem = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
        let vr = &bytes[pos + 4..pos + 6];
        let (len, header_len) = if long_meta_vr(vr) {
            (
                u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize,
                12,
            )
        } else {
            (u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize, 8)
        };
        out.push(MetaElement {
            elem,
            encoded: bytes[pos..pos + header_len + len].to_vec(),
            header_len,
        });
        pos += header_len + len;
    }
    (out, pos)
}

pub const EXPLICIT_LE_TS: &str = "1.2.840.10008.1.2.1";
pub const DEFLATED_TS: &str = "1.2.840.10008.1.2.1.99";
pub const DICOMDIR_CLASS: &str = "1.2.840.10008.1.3.10";

/// The text of file meta element (0002,`elem`) of a Part 10 file.
pub fn meta_text(file: &[u8], elem: u16) -> Option<String> {
    let (meta, _) = meta_elements(file);
    meta.iter().find(|m| m.elem == elem).map(|m| text(m.value()))
}

/// A Part 10 file: `preamble`, "DICM", the meta `elements` with the transfer syntax set to
/// `ts` and a group length computed afresh, then `data_set` as given (already deflated for
/// a deflated syntax).
pub fn part10_file(preamble: &[u8], elements: &[MetaElement], ts: &str, data_set: &[u8]) -> Vec<u8> {
    let mut group = Vec::new();
    for e in elements {
        match e.elem {
            0x0000 => {}
            0x0010 => group.extend_from_slice(&MetaElement::new(0x0010, b"UI", ts.as_bytes()).encoded),
            _ => group.extend_from_slice(&e.encoded),
        }
    }
    let mut f = preamble.to_vec();
    f.extend_from_slice(b"DICM");
    f.extend_from_slice(&MetaElement::new(0x0000, b"UL", &(group.len() as u32).to_le_bytes()).encoded);
    f.extend_from_slice(&group);
    f.extend_from_slice(data_set);
    f
}

/// Raw DEFLATE (no zlib header), as the Deflated Explicit VR Little Endian syntax stores the
/// data set.
pub fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// A deflate bomb: a Part 10 MR image file with the Deflated Explicit VR Little Endian
/// syntax whose data set, about a thousandth of `inflated_len` when compressed, inflates to
/// `inflated_len` zero bytes.
pub fn deflate_bomb(inflated_len: u64) -> Vec<u8> {
    let elements = [
        MetaElement::new(0x0001, b"OB", &[0, 1]),
        MetaElement::new(0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.4"),
        MetaElement::new(0x0003, b"UI", b"2.25.1"),
        MetaElement::new(0x0010, b"UI", DEFLATED_TS.as_bytes()),
    ];
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1 << 20];
    let mut left = inflated_len;
    while left > 0 {
        let n = left.min(zeros.len() as u64);
        z.write_all(&zeros[..n as usize]).unwrap();
        left -= n;
    }
    part10_file(&[0; 128], &elements, DEFLATED_TS, &z.finish().unwrap())
}

/// An Explicit VR Little Endian Part 10 file re-written with the Deflated Explicit VR Little
/// Endian transfer syntax: the same preamble, meta elements and data set, the data set
/// deflated; only the meta's transfer syntax and group length change.
pub fn deflate_part10(file: &[u8]) -> Vec<u8> {
    assert_eq!(
        meta_text(file, 0x0010).as_deref(),
        Some(EXPLICIT_LE_TS),
        "only Explicit VR LE files are deflated"
    );
    let (elements, body) = meta_elements(file);
    part10_file(&file[..128], &elements, DEFLATED_TS, &raw_deflate(&file[body..]))
}

/// The fixture ZIP `name` with every Explicit VR Little Endian Part 10 file but the DICOMDIR
/// (which the standard keeps in Explicit VR Little Endian) re-written by [`deflate_part10`];
/// every other entry, the names and the order as they were. Made at test time: nothing
/// derived from the fixtures is committed.
pub fn deflated_fixture_zip(name: &str) -> Vec<u8> {
    let input = std::fs::read(fixtures().join(format!("{name}.zip"))).expect("fixture zip");
    let mut za = zip::ZipArchive::new(Cursor::new(input)).expect("fixture is a zip");
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..za.len() {
        let mut f = za.by_index(i).expect("entry");
        let entry_name = f.name().expect("entry name").into_owned();
        if f.is_dir() {
            zw.add_directory(entry_name, stored).unwrap();
            continue;
        }
        let mut v = Vec::new();
        f.read_to_end(&mut v).expect("read entry");
        let deflate = v.len() > 132
            && &v[128..132] == b"DICM"
            && meta_text(&v, 0x0010).as_deref() == Some(EXPLICIT_LE_TS)
            && meta_text(&v, 0x0002).as_deref() != Some(DICOMDIR_CLASS);
        if deflate {
            v = deflate_part10(&v);
        }
        zw.start_file(entry_name, stored).unwrap();
        zw.write_all(&v).unwrap();
    }
    zw.finish().unwrap().into_inner()
}

pub fn parse(bytes: &[u8]) -> Parsed {
    let mut p = Parsed {
        preamble_zero: bytes[..128].iter().all(|&b| b == 0),
        ..Default::default()
    };
    let (elements, pos) = meta_elements(bytes);
    for e in &elements {
        p.meta.insert(e.elem, e.value().to_vec());
    }
    p.transfer_syntax = text(&p.meta[&0x0010]);
    let inflated;
    let body: &[u8] = if p.transfer_syntax == "1.2.840.10008.1.2.1.99" {
        let mut v = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[pos..])
            .read_to_end(&mut v)
            .unwrap();
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
