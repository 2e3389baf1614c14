//! One DICOM Part 10 file: parse the file meta, walk the data set token by token with
//! dicom-parser (raw value strategy: no text decoding, no byte swapping), and re-encode
//! only what the rules keep. Kept values are copied byte for byte, so pixel data and
//! every untouched attribute are identical; sequences and items are re-written with
//! undefined length because their content may shrink.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::Read;
use std::ops::Range;
use std::rc::Rc;

use dicom_core::dictionary::DataDictionary;
use dicom_core::header::DataElementHeader;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_parser::dataset::read::{DataSetReaderOptions, ValueReadStrategy};
use dicom_parser::dataset::{DataSetReader, DataToken};
use dicom_transfer_syntax_registry::entries;

use crate::facts::RawFacts;
use crate::rules::{self, Action, Profile, RemoveKind};
use crate::uid::{UidMap, UidRecord};

pub(crate) const EXPLICIT_LE_TS: &str = "1.2.840.10008.1.2.1";
pub(crate) const DEFLATED_TS: &str = "1.2.840.10008.1.2.1.99";
pub(crate) const JPIP_TS: &str = "1.2.840.10008.1.2.4.94";
pub(crate) const JPIP_DEFLATED_TS: &str = "1.2.840.10008.1.2.4.95";
pub(crate) const DICOMDIR_CLASS: &str = "1.2.840.10008.1.3.10";

/// Why one file could not be handled. Carries no value from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileError {
    /// No "DICM" magic at offset 128: not a Part 10 file.
    NotPart10,
    /// Part 10 magic, but the content ends early or is inconsistent.
    Corrupt,
    /// A transfer syntax this crate cannot walk.
    UnsupportedTransferSyntax,
    /// Inflating a deflated data set went past the size limit.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
    /// Explicit VR little endian, data set deflated (raw DEFLATE) after the meta; written
    /// back inflated ([`written_transfer_syntax`]).
    DeflatedLe,
}

/// File meta group, as far as it matters here.
#[derive(Debug, Default, Clone)]
pub(crate) struct Meta {
    pub transfer_syntax: String,
    pub sop_class: Option<String>,
    pub sop_instance: Option<String>,
    /// (0002,0001) bytes, kept so the version stays what the file said.
    version: Option<Vec<u8>>,
    /// Offset of the first data set byte.
    body_offset: usize,
}

/// What one pass over a file learnt: series grouping facts, captured facts, the
/// removal tally (keywords, never values) and optionally the previews.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scan {
    pub meta: Meta,
    /// Length of the data set after inflating, for a file with a deflated data set (written
    /// inflated, so it counts toward the archive's size limits).
    pub inflated_data_set: Option<u64>,
    pub has_pixel_data: bool,
    pub rows: Option<u16>,
    pub columns: Option<u16>,
    pub frames: Option<u32>,
    pub series_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub mr_acquisition_type: Option<String>,
    pub scanning_sequence: Option<String>,
    pub sequence_variant: Option<String>,
    pub echo_time_ms: Option<f64>,
    pub inversion_time_ms: Option<f64>,
    pub image_type: Option<String>,
    /// Local-only text (never leaves the browser): used for the series list and the
    /// 3D T1 guess.
    pub series_description: Option<String>,
    pub protocol_name: Option<String>,
    /// SequenceName (0018,0024) or, in enhanced files, PulseSequenceName (0018,9005)
    pub sequence_name: Option<String>,
    /// Enhanced MR: EchoPulseSequence (GRADIENT/SPIN/BOTH), InversionRecovery (YES/NO)
    pub echo_pulse_sequence: Option<String>,
    pub inversion_recovery: Option<String>,
    pub facts: RawFacts,
    /// keywords removed in this file (each counted once per file)
    pub removed_keywords: BTreeSet<&'static str>,
    pub private_removed: u64,
    pub overlay_removed: u64,
    pub curve_removed: u64,
    pub uid_values_replaced: u64,
    pub previews: Option<Vec<(String, String)>>,
}

/// Source that shares its read position, so the token loop can check a declared
/// length against the bytes that are really left before dicom-parser allocates it.
struct SharedPosReader<'a> {
    data: &'a [u8],
    pos: Rc<Cell<usize>>,
}

impl Read for SharedPosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let p = self.pos.get();
        let rest = self.data.get(p..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos.set(p + n);
        Ok(n)
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn long_length_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR" | b"UT" | b"UV"
    )
}

pub(crate) fn is_part10(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// Text of a string value: trailing NUL/space padding removed.
pub(crate) fn trim_text(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && (b[end - 1] == 0 || b[end - 1] == b' ') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && b[start] == b' ' {
        start += 1;
    }
    &b[start..end]
}

fn text(b: &[u8]) -> String {
    // Latin-1 is a superset-safe fallback for display: every byte maps to a char.
    match std::str::from_utf8(trim_text(b)) {
        Ok(s) => s.to_string(),
        Err(_) => trim_text(b).iter().map(|&c| c as char).collect(),
    }
}

pub(crate) fn parse_meta(bytes: &[u8]) -> Result<Meta, FileError> {
    if !is_part10(bytes) {
        return Err(FileError::NotPart10);
    }
    let mut meta = Meta::default();
    let mut pos = 132usize;
    let mut ts = None;
    while let Some(0x0002) = le16(bytes, pos) {
        let elem = le16(bytes, pos + 2).ok_or(FileError::Corrupt)?;
        let vr = bytes.get(pos + 4..pos + 6).ok_or(FileError::Corrupt)?;
        let (len, hdr) = if long_length_vr(vr) {
            (le32(bytes, pos + 8).ok_or(FileError::Corrupt)? as usize, 12)
        } else {
            (le16(bytes, pos + 6).ok_or(FileError::Corrupt)? as usize, 8)
        };
        let start = pos + hdr;
        let end = start.checked_add(len).ok_or(FileError::Corrupt)?;
        let value = bytes.get(start..end).ok_or(FileError::Corrupt)?;
        match elem {
            0x0001 => meta.version = Some(value.to_vec()),
            0x0002 => meta.sop_class = Some(text(value)),
            0x0003 => meta.sop_instance = Some(text(value)),
            0x0010 => ts = Some(text(value)),
            _ => {}
        }
        pos = end;
    }
    meta.transfer_syntax = ts.ok_or(FileError::Corrupt)?;
    meta.body_offset = pos;
    Ok(meta)
}

/// The transfer syntax a rewritten file is written in: the source's own, except that a
/// deflated data set is written inflated, under the syntax that differs from the source's
/// only in not being deflated (dcm2niix, among others, cannot read deflated data sets).
pub(crate) fn written_transfer_syntax(ts: &str) -> &str {
    match ts {
        DEFLATED_TS => EXPLICIT_LE_TS,
        JPIP_DEFLATED_TS => JPIP_TS,
        other => other,
    }
}

fn encoding_of(ts: &str) -> Result<Encoding, FileError> {
    Ok(match ts {
        "1.2.840.10008.1.2" => Encoding::ImplicitLe,
        "1.2.840.10008.1.2.2" => Encoding::ExplicitBe,
        DEFLATED_TS | JPIP_DEFLATED_TS => Encoding::DeflatedLe,
        // every other standard syntax (JPEG, JPEG-LS, JPEG 2000, RLE, MPEG, HTJ2K,
        // encapsulated uncompressed...) encodes the data set as explicit VR LE
        t if t.starts_with("1.2.840.10008.1.2.") => Encoding::ExplicitLe,
        _ => return Err(FileError::UnsupportedTransferSyntax),
    })
}

/// Re-encodes tokens in the source's own encoding.
struct Enc {
    le: bool,
    explicit: bool,
}

impl Enc {
    fn u16(&self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&if self.le { v.to_le_bytes() } else { v.to_be_bytes() });
    }
    fn u32(&self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&if self.le { v.to_le_bytes() } else { v.to_be_bytes() });
    }
    fn tag(&self, out: &mut Vec<u8>, t: Tag) {
        self.u16(out, t.0);
        self.u16(out, t.1);
    }
    fn header(&self, out: &mut Vec<u8>, t: Tag, vr: VR, len: u32) {
        self.tag(out, t);
        if self.explicit {
            let vrb = vr.to_bytes();
            out.extend_from_slice(&vrb);
            if long_length_vr(&vrb) {
                out.extend_from_slice(&[0, 0]);
                self.u32(out, len);
            } else {
                // values never grow past 64 KiB here (only UIDs are rewritten)
                self.u16(out, len.min(0xFFFF) as u16);
            }
        } else {
            self.u32(out, len);
        }
    }
    fn seq_start(&self, out: &mut Vec<u8>, t: Tag) {
        self.header(out, t, VR::SQ, 0xFFFF_FFFF);
    }
    fn pixel_seq_start(&self, out: &mut Vec<u8>) {
        self.header(out, Tag(0x7FE0, 0x0010), VR::OB, 0xFFFF_FFFF);
    }
    fn item(&self, out: &mut Vec<u8>, len: u32) {
        self.tag(out, Tag(0xFFFE, 0xE000));
        self.u32(out, len);
    }
    fn item_end(&self, out: &mut Vec<u8>) {
        self.tag(out, Tag(0xFFFE, 0xE00D));
        self.u32(out, 0);
    }
    fn seq_end(&self, out: &mut Vec<u8>) {
        self.tag(out, Tag(0xFFFE, 0xE0DD));
        self.u32(out, 0);
    }
}

#[derive(Debug, Clone, Copy)]
enum Frame {
    Seq { pixel: bool },
    Item { pixel: bool },
}

/// Where the new UIDs come from.
pub(crate) enum Uids<'a> {
    /// Draw a fresh UID the first time an original is met (file by file, [`crate::Deidentifier`]).
    Draw(&'a mut UidMap),
    /// No output: note the originals in the order a rewrite would meet them. The ZIP path
    /// assigns new UIDs from these notes in output order before rewriting files in parallel,
    /// so the mapping never depends on which file a thread finishes first.
    Record(&'a mut UidRecord),
    /// Rewrite with UIDs assigned beforehand (from the notes); an unknown original is an
    /// error (the input changed between the passes), never passed through.
    Assigned(&'a UidMap),
    /// No output and no notes (inspection, previews).
    Ignore,
}

impl Uids<'_> {
    fn map(&mut self, original: &str) -> Result<String, FileError> {
        match self {
            Uids::Draw(m) => Ok(m.map(original)),
            Uids::Record(r) => {
                r.note(original);
                Ok(String::new())
            }
            Uids::Assigned(m) => m.get(original).map(str::to_string).ok_or(FileError::Corrupt),
            Uids::Ignore => Ok(String::new()),
        }
    }
}

/// State shared by all files of one upload.
pub(crate) struct Ctx<'a> {
    pub profile: Profile,
    pub uids: Uids<'a>,
}

/// A rewritten file: `buf`, with stretches of the input file spliced in at given offsets, so
/// large kept values (the pixel data) are never copied before they reach the ZIP writer.
#[derive(Debug, Default)]
pub(crate) struct Out {
    buf: Vec<u8>,
    /// (offset in `buf`, range of the input file), offsets ascending
    splices: Vec<(usize, Range<usize>)>,
}

impl Out {
    /// The file's bytes in order, as slices of `buf` and of `input` (the bytes given to
    /// [`process`]).
    pub(crate) fn pieces<'a>(&'a self, input: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut at = 0;
        let mut parts = Vec::with_capacity(2 * self.splices.len() + 1);
        for (off, r) in &self.splices {
            parts.push(&self.buf[at..*off]);
            parts.push(&input[r.clone()]);
            at = *off;
        }
        parts.push(&self.buf[at..]);
        parts.into_iter().filter(|p| !p.is_empty())
    }

    pub(crate) fn to_vec(&self, input: &[u8]) -> Vec<u8> {
        let len = self.buf.len() + self.splices.iter().map(|(_, r)| r.len()).sum::<usize>();
        let mut v = Vec::with_capacity(len);
        for p in self.pieces(input) {
            v.extend_from_slice(p);
        }
        v
    }
}

/// Kept values at least this long at depth 0 are spliced in from the input (no copy).
const SPLICE_MIN: usize = 8 * 1024;

/// What `process` should produce.
pub(crate) struct Want {
    pub output: bool,
    pub previews: bool,
}

fn keyword_of(tag: Tag) -> Option<&'static str> {
    StandardDataDictionary.by_tag(tag).map(|e| e.alias)
}

fn effective_vr(h: &DataElementHeader) -> VR {
    if h.vr == VR::UN
        && let Some(e) = StandardDataDictionary.by_tag(h.tag)
    {
        return e.vr.relaxed();
    }
    h.vr
}

fn path_name(stack_names: &[String], tag: Tag) -> String {
    let own = match keyword_of(tag) {
        // repeating groups (overlays, curves) are shown by number: the group tells which
        Some(k) if tag.0.is_multiple_of(2) && !(0x5000..=0x60FF).contains(&tag.0) => k.to_string(),
        _ => format!("({:04X},{:04X})", tag.0, tag.1),
    };
    if stack_names.is_empty() {
        own
    } else {
        format!("{} > {}", stack_names.join(" > "), own)
    }
}

fn preview_text(vr: VR, raw: &[u8]) -> String {
    match vr {
        VR::OB
        | VR::OW
        | VR::OF
        | VR::OD
        | VR::OL
        | VR::OV
        | VR::UN
        | VR::US
        | VR::SS
        | VR::UL
        | VR::SL
        | VR::FL
        | VR::FD
        | VR::AT
        | VR::SV
        | VR::UV => {
            format!("({} bytes of binary data)", raw.len())
        }
        _ => text(raw),
    }
}

fn parse_ds(raw: &[u8]) -> Option<f64> {
    std::str::from_utf8(trim_text(raw))
        .ok()?
        .split('\\')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Walk (and optionally rewrite) one Part 10 file. With output, `Out`'s splices refer to
/// `bytes`.
pub(crate) fn process(
    bytes: &[u8],
    max_inflated: u64,
    ctx: &mut Ctx<'_>,
    want: Want,
) -> Result<(Scan, Option<Out>), FileError> {
    let meta = parse_meta(bytes)?;
    let enc_kind = encoding_of(&meta.transfer_syntax)?;
    let body_raw = bytes.get(meta.body_offset..).ok_or(FileError::Corrupt)?;
    let inflated;
    let body: &[u8] = if enc_kind == Encoding::DeflatedLe {
        let mut d = flate2::read::DeflateDecoder::new(body_raw).take(max_inflated.saturating_add(1));
        let mut v = Vec::new();
        d.read_to_end(&mut v).map_err(|_| FileError::Corrupt)?;
        if v.len() as u64 > max_inflated {
            return Err(FileError::TooLarge);
        }
        inflated = v;
        &inflated
    } else {
        body_raw
    };
    let ts = match enc_kind {
        Encoding::ImplicitLe => entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        Encoding::ExplicitBe => entries::EXPLICIT_VR_BIG_ENDIAN.erased(),
        Encoding::ExplicitLe | Encoding::DeflatedLe => entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    };
    let enc = Enc {
        le: enc_kind != Encoding::ExplicitBe,
        explicit: enc_kind != Encoding::ImplicitLe,
    };
    let recording = matches!(ctx.uids, Uids::Record(_));

    let pos = Rc::new(Cell::new(0usize));
    let opts = DataSetReaderOptions::default().value_read(ValueReadStrategy::Raw);
    let new_reader = || {
        DataSetReader::new_with_ts_options(
            SharedPosReader {
                data: body,
                pos: pos.clone(),
            },
            &ts,
            opts,
        )
        .map_err(|_| FileError::Corrupt)
    };
    let mut reader = new_reader()?;

    let mut scan = Scan {
        meta: meta.clone(),
        inflated_data_set: (enc_kind == Encoding::DeflatedLe).then_some(body.len() as u64),
        ..Default::default()
    };
    if want.previews {
        scan.previews = Some(Vec::new());
    }
    // the header goes first so the body is written once, in place (no copy of the pixels)
    let mut out = Out::default();
    if want.output || recording {
        let new_instance = match meta.sop_instance.as_deref() {
            Some(u) if !u.is_empty() => Some(ctx.uids.map(u)?),
            _ => None,
        };
        if want.output {
            let mut header = file_header(&meta, new_instance.as_deref());
            out.buf.reserve(header.len() + body.len().min(64 * 1024) + 512);
            out.buf.append(&mut header);
        }
    }
    let mut stack: Vec<Frame> = Vec::new();
    // names of the enclosing sequences, for preview paths
    let mut names: Vec<String> = Vec::new();
    // depth of the stack at which a removed sequence started: skip until we return to it
    let mut skip_at: Option<usize> = None;
    let mut pending: Option<(DataElementHeader, Action)> = None;
    let total = body.len();
    let mut markers_written = false;
    // a recording scan walks past the pixel data only for the UIDs: from there on, the scan's
    // verdict is the one a plain scan gives (which stops at the pixel data)
    let mut settled = false;

    let walked = (|| -> Result<(), FileError> {
        loop {
            if stack.is_empty() && pending.is_none() && pos.get() >= total {
                // the data set ends at depth 0 after a whole element: where dicom-parser would
                // meet end of input reading the next tag and stop (after building an error
                // with a backtrace)
                break;
            }
            let Some(token) = reader.next() else { break };
            let token = token.map_err(|_| FileError::Corrupt)?;
            let depth = stack.len();
            if want.output && !markers_written && depth == 0 {
                let next_tag = match &token {
                    DataToken::SequenceStart { tag, .. } => Some(*tag),
                    DataToken::ElementHeader(h) => Some(h.tag),
                    DataToken::PixelSequenceStart => Some(Tag(0x7FE0, 0x0010)),
                    _ => None,
                };
                if next_tag.is_some_and(|t| t > Tag(0x0012, 0x0064)) {
                    write_markers(&enc, &mut out.buf, ctx.profile);
                    markers_written = true;
                }
            }
            match token {
                DataToken::SequenceStart { tag, len } => {
                    if len.get().is_some_and(|l| l as usize > total.saturating_sub(pos.get())) {
                        return Err(FileError::Corrupt);
                    }
                    stack.push(Frame::Seq { pixel: false });
                    if skip_at.is_some() {
                        names.push(String::new());
                        continue;
                    }
                    let act = rules::action(ctx.profile, tag.0, tag.1, false);
                    match act {
                        Action::Keep | Action::ReplaceUid => {
                            names.push(if want.previews {
                                path_name(&[], tag)
                            } else {
                                String::new()
                            });
                            if want.output {
                                enc.seq_start(&mut out.buf, tag);
                            }
                        }
                        _ => {
                            tally(&mut scan, act, depth, tag);
                            if let Some(p) = scan.previews.as_mut() {
                                p.push((path_name(&names, tag), "(sequence, removed with all its items)".into()));
                            }
                            skip_at = Some(depth);
                            names.push(String::new());
                        }
                    }
                }
                DataToken::PixelSequenceStart => {
                    stack.push(Frame::Seq { pixel: true });
                    if depth == 0 {
                        // (a plain scan reads encapsulated fragments to the end: no `settled`)
                        scan.has_pixel_data = true;
                    }
                    if skip_at.is_none() && want.output {
                        enc.pixel_seq_start(&mut out.buf);
                    }
                    names.push(String::new());
                }
                DataToken::ItemStart { len } => {
                    let pixel = matches!(stack.last(), Some(Frame::Seq { pixel: true, .. }));
                    if len.get().is_some_and(|l| l as usize > total.saturating_sub(pos.get())) {
                        return Err(FileError::Corrupt);
                    }
                    stack.push(Frame::Item { pixel });
                    if skip_at.is_none() && want.output {
                        if pixel {
                            enc.item(&mut out.buf, len.0);
                        } else {
                            enc.item(&mut out.buf, 0xFFFF_FFFF);
                        }
                    }
                }
                DataToken::ItemEnd => {
                    let Some(Frame::Item { pixel }) = stack.pop() else {
                        return Err(FileError::Corrupt);
                    };
                    if skip_at.is_none() && want.output && !pixel {
                        enc.item_end(&mut out.buf);
                    }
                }
                DataToken::SequenceEnd => {
                    let Some(Frame::Seq { .. }) = stack.pop() else {
                        return Err(FileError::Corrupt);
                    };
                    names.pop();
                    match skip_at {
                        Some(d) if d == stack.len() => skip_at = None,
                        Some(_) => {}
                        None => {
                            if want.output {
                                enc.seq_end(&mut out.buf);
                            }
                        }
                    }
                }
                DataToken::ElementHeader(h) => {
                    if h.len
                        .get()
                        .is_some_and(|l| l as usize > total.saturating_sub(pos.get()))
                    {
                        return Err(FileError::Corrupt);
                    }
                    if skip_at.is_some() {
                        pending = Some((h, Action::DropStructural));
                        continue;
                    }
                    if !want.output && !want.previews && depth == 0 && h.tag == Tag(0x7FE0, 0x0010) {
                        // a scan needs nothing past the pixel data header: its length was checked
                        // against the bytes left just above, so a cut-off file is still caught
                        scan.has_pixel_data = true;
                        if !recording {
                            break;
                        }
                        settled = true;
                    }
                    let vr = effective_vr(&h);
                    let mut act = rules::action(ctx.profile, h.tag.0, h.tag.1, vr == VR::UI);
                    if h.vr == VR::UN && vr == VR::SQ && act == Action::Keep {
                        // a sequence stored as opaque UN bytes cannot be cleaned inside: drop it
                        act = Action::Remove(RemoveKind::Listed(keyword_of(h.tag).unwrap_or("UnparsedSequence")));
                    }
                    match h.len.get().map(|l| l as usize) {
                        Some(len) if depth == 0 && len >= SPLICE_MIN => {
                            // a large value (the pixel data): take it from the input as it is
                            // and go on with a fresh reader after it (nothing is open at depth 0)
                            let start = pos.get();
                            let raw = body.get(start..start + len).ok_or(FileError::Corrupt)?;
                            let splice = (want.output && act == Action::Keep).then(|| {
                                enc.header(&mut out.buf, h.tag, h.vr, len as u32);
                                (out.buf.len(), start..start + len)
                            });
                            value(
                                &mut scan,
                                &mut out.buf,
                                &enc,
                                &mut ctx.uids,
                                &want,
                                &names,
                                depth,
                                h,
                                act,
                                raw,
                                splice.is_some(),
                            )?;
                            out.splices.extend(splice);
                            pos.set(start + len);
                            reader = new_reader()?;
                        }
                        _ => pending = Some((h, act)),
                    }
                }
                DataToken::PrimitiveValue(v) => {
                    let Some((h, act)) = pending.take() else {
                        return Err(FileError::Corrupt);
                    };
                    if skip_at.is_some() {
                        continue;
                    }
                    let raw = v.to_bytes();
                    value(
                        &mut scan,
                        &mut out.buf,
                        &enc,
                        &mut ctx.uids,
                        &want,
                        &names,
                        depth,
                        h,
                        act,
                        &raw,
                        false,
                    )?;
                }
                DataToken::OffsetTable(table) => {
                    if skip_at.is_none() && want.output {
                        for t in table {
                            out.buf.extend_from_slice(&t.to_le_bytes());
                        }
                    }
                }
                DataToken::ItemValue(data) => {
                    if skip_at.is_none() && want.output {
                        out.buf.extend_from_slice(&data);
                    }
                }
            }
        }
        if want.output && !markers_written {
            write_markers(&enc, &mut out.buf, ctx.profile);
        }
        if !stack.is_empty() || pending.is_some() {
            // the data set ended inside a sequence or before a value: truncated
            return Err(FileError::Corrupt);
        }
        if scan.rows.is_some() && !scan.has_pixel_data {
            // image attributes but the data set stops before the pixels: cut off at an
            // element boundary, which dicom-parser reads as a clean end
            return Err(FileError::Corrupt);
        }
        Ok(())
    })();
    match walked {
        Ok(()) => {}
        // past the point where a plain scan stops: same verdict as a plain scan (the rewrite
        // of this file will fail at the same place, before any output)
        Err(_) if settled => return Ok((scan, None)),
        Err(e) => return Err(e),
    }
    if !want.output {
        return Ok((scan, None));
    }

    if enc_kind == Encoding::DeflatedLe {
        // written inflated: the splices refer to the inflated data set, which ends here
        return Ok((
            scan,
            Some(Out {
                buf: out.to_vec(body),
                splices: Vec::new(),
            }),
        ));
    }
    // `out` already starts with the header; splices refer to `bytes` from here on
    for (_, r) in out.splices.iter_mut() {
        *r = r.start + meta.body_offset..r.end + meta.body_offset;
    }
    Ok((scan, Some(out)))
}

/// One primitive value at `depth`: facts, and the rule's action. With `spliced`, the caller
/// has written the header and splices the value itself.
#[allow(clippy::too_many_arguments)]
fn value(
    scan: &mut Scan,
    out: &mut Vec<u8>,
    enc: &Enc,
    uids: &mut Uids<'_>,
    want: &Want,
    names: &[String],
    depth: usize,
    h: DataElementHeader,
    act: Action,
    raw: &[u8],
    spliced: bool,
) -> Result<(), FileError> {
    if depth == 0 {
        capture(scan, h.tag, raw, enc);
    }
    match act {
        Action::Keep => {
            if want.output && !spliced {
                enc.header(out, h.tag, h.vr, raw.len() as u32);
                out.extend_from_slice(raw);
            }
        }
        Action::DropStructural => {}
        Action::ReplaceUid => {
            let new = replace_uids(raw, uids, &mut scan.uid_values_replaced)?;
            if want.output {
                enc.header(out, h.tag, h.vr, new.len() as u32);
                out.extend_from_slice(&new);
            }
        }
        Action::Remove(_) => {
            tally(scan, act, depth, h.tag);
            if let Some(p) = scan.previews.as_mut() {
                p.push((path_name(names, h.tag), preview_text(effective_vr(&h), raw)));
            }
        }
    }
    Ok(())
}

/// Zero preamble, "DICM" and a rebuilt file meta group (explicit VR LE), with the transfer
/// syntax the data set is written in and the group length of what is written.
fn file_header(meta: &Meta, new_instance: Option<&str>) -> Vec<u8> {
    let mut file = Vec::with_capacity(400);
    file.extend_from_slice(&[0u8; 128]);
    file.extend_from_slice(b"DICM");
    let mut group = Vec::new();
    let put = |g: &mut Vec<u8>, elem: u16, vr: &[u8; 2], val: &[u8]| {
        let mut v = val.to_vec();
        if v.len() % 2 == 1 {
            // UI pads with NUL, text with space
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        g.extend_from_slice(&0x0002u16.to_le_bytes());
        g.extend_from_slice(&elem.to_le_bytes());
        g.extend_from_slice(vr);
        if long_length_vr(vr) {
            g.extend_from_slice(&[0, 0]);
            g.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            g.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        g.extend_from_slice(&v);
    };
    put(&mut group, 0x0001, b"OB", meta.version.as_deref().unwrap_or(&[0, 1]));
    if let Some(c) = meta.sop_class.as_deref() {
        put(&mut group, 0x0002, b"UI", c.as_bytes());
    }
    if let Some(u) = new_instance {
        put(&mut group, 0x0003, b"UI", u.as_bytes());
    }
    put(
        &mut group,
        0x0010,
        b"UI",
        written_transfer_syntax(&meta.transfer_syntax).as_bytes(),
    );
    put(&mut group, 0x0012, b"UI", crate::IMPLEMENTATION_CLASS_UID.as_bytes());
    put(&mut group, 0x0013, b"SH", crate::IMPLEMENTATION_VERSION_NAME.as_bytes());
    file.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    file.extend_from_slice(&(group.len() as u32).to_le_bytes());
    file.extend_from_slice(&group);
    file
}

/// PS3.15 E.1.1: PatientIdentityRemoved = YES and the method, as text and, for the Basic
/// profile, as codes (113100 Basic, 113108 Retain Patient Characteristics, 113106 Retain
/// Longitudinal Temporal Information with Full Dates). Written in tag order at depth 0.
fn write_markers(enc: &Enc, out: &mut Vec<u8>, profile: Profile) {
    enc.header(out, Tag(0x0012, 0x0062), VR::CS, 4);
    out.extend_from_slice(b"YES ");
    let method: &[u8] = match profile {
        Profile::Basic => b"NEUROVOL DEID 1 BASIC PS3.15 RETAIN PAT CHARS, FULL DATES",
        Profile::Seed => b"NEUROVOL DEID 1 SEED (DESIGN LIST)",
    };
    let mut m = method.to_vec();
    if m.len() % 2 == 1 {
        m.push(b' ');
    }
    enc.header(out, Tag(0x0012, 0x0063), VR::LO, m.len() as u32);
    out.extend_from_slice(&m);
    if profile == Profile::Basic {
        enc.seq_start(out, Tag(0x0012, 0x0064));
        for (code, meaning) in [
            (&b"113100"[..], &b"Basic Application Confidentiality Profile"[..]),
            (b"113106", b"Retain Longitudinal Temporal Information Full Dates Option"),
            (b"113108", b"Retain Patient Characteristics Option"),
        ] {
            enc.item(out, 0xFFFF_FFFF);
            for (e, vr, v) in [
                (0x0100u16, VR::SH, code),
                (0x0102, VR::SH, b"DCM".as_slice()),
                (0x0104, VR::LO, meaning),
            ] {
                let mut v = v.to_vec();
                if v.len() % 2 == 1 {
                    v.push(b' ');
                }
                enc.header(out, Tag(0x0008, e), vr, v.len() as u32);
                out.extend_from_slice(&v);
            }
            enc.item_end(out);
        }
        enc.seq_end(out);
    }
}

fn tally(scan: &mut Scan, act: Action, _depth: usize, _tag: Tag) {
    match act {
        Action::Remove(RemoveKind::Listed(k)) => {
            scan.removed_keywords.insert(k);
        }
        Action::Remove(RemoveKind::Private) => scan.private_removed += 1,
        Action::Remove(RemoveKind::Overlay) => scan.overlay_removed += 1,
        Action::Remove(RemoveKind::Curve) => scan.curve_removed += 1,
        _ => {}
    }
}

/// Replace each UID of a (possibly multi-valued) UI value; registry UIDs stay.
fn replace_uids(raw: &[u8], uids: &mut Uids<'_>, counter: &mut u64) -> Result<Vec<u8>, FileError> {
    let t = trim_text(raw);
    let mut out = Vec::with_capacity(64);
    for (i, part) in t.split(|&b| b == b'\\').enumerate() {
        if i > 0 {
            out.push(b'\\');
        }
        let p = trim_text(part);
        let s = String::from_utf8_lossy(p);
        if p.is_empty() || rules::is_registry_uid(&s) {
            out.extend_from_slice(p);
        } else {
            *counter += 1;
            out.extend_from_slice(uids.map(&s)?.as_bytes());
        }
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    Ok(out)
}

fn capture(scan: &mut Scan, tag: Tag, raw: &[u8], enc: &Enc) {
    let u16v = |b: &[u8]| -> Option<u16> {
        let a: [u8; 2] = b.get(0..2)?.try_into().ok()?;
        Some(if enc.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    };
    match (tag.0, tag.1) {
        (0x0010, 0x1010) => scan.facts.patient_age = Some(text(raw)),
        (0x0010, 0x0040) => scan.facts.patient_sex = Some(text(raw)),
        (0x0008, 0x0020) => scan.facts.study_date = Some(text(raw)),
        (0x0010, 0x0030) => scan.facts.birth_date = Some(text(raw)),
        (0x0008, 0x0070) => scan.facts.manufacturer = Some(text(raw)),
        (0x0008, 0x1090) => scan.facts.model_name = Some(text(raw)),
        (0x0018, 0x0087) => scan.facts.field_strength = Some(text(raw)),
        (0x0008, 0x0060) => scan.modality = Some(text(raw)),
        (0x0020, 0x000E) => scan.series_uid = Some(text(raw)),
        (0x0008, 0x0018) => scan.sop_instance_uid = Some(text(raw)),
        (0x0020, 0x0011) => {
            scan.series_number = std::str::from_utf8(trim_text(raw))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        }
        (0x0028, 0x0010) => scan.rows = u16v(raw),
        (0x0028, 0x0011) => scan.columns = u16v(raw),
        (0x0028, 0x0008) => {
            scan.frames = std::str::from_utf8(trim_text(raw))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        }
        (0x0018, 0x0023) => scan.mr_acquisition_type = Some(text(raw)),
        (0x0018, 0x0020) => scan.scanning_sequence = Some(text(raw)),
        (0x0018, 0x0021) => scan.sequence_variant = Some(text(raw)),
        (0x0018, 0x0081) => scan.echo_time_ms = parse_ds(raw),
        (0x0018, 0x0082) => scan.inversion_time_ms = parse_ds(raw),
        (0x0008, 0x0008) => scan.image_type = Some(text(raw)),
        (0x0008, 0x103E) => scan.series_description = Some(text(raw)),
        (0x0018, 0x1030) => scan.protocol_name = Some(text(raw)),
        (0x0018, 0x0024) | (0x0018, 0x9005) => scan.sequence_name = Some(text(raw)),
        (0x0018, 0x9008) => scan.echo_pulse_sequence = Some(text(raw)),
        (0x0018, 0x9009) => scan.inversion_recovery = Some(text(raw)),
        (0x7FE0, 0x0010) | (0x7FE0, 0x0008) | (0x7FE0, 0x0009) => scan.has_pixel_data = true,
        _ => {}
    }
}
