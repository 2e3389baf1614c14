//! ZIP in, ZIP out. Pass 1 checks every entry's metadata (paths, encryption, declared
//! sizes) before inflating a byte, then reads each entry with a hard cap and scans it,
//! keeping the inflated image files (up to [`CACHE_BUDGET`]); pass 2 writes the chosen
//! series' files, de-identified and named by position. Nothing is written anywhere but the
//! caller's writer.
//!
//! Both passes go batch by batch: the calling thread reads compressed entries (and writes
//! finished ones), and the per-entry work (inflate + CRC check, parse, rewrite, compress)
//! runs on rayon's pool on native targets ([`PARALLEL`]) or in line (wasm32). Everything
//! that depends on order is done on the calling thread in entry order: the checks and
//! their first error, the series grouping, and the UID mapping (each file's originals are
//! noted during the scan; new UIDs are drawn in output order before the rewrite), so the
//! output is byte-identical either way.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Seek, Write};

use zip::write::{PreparedZipFile, SimpleFileOptions, ZipFileBuilder};
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::part10::{self, Ctx, DICOMDIR_CLASS, FileError, Out, Scan, Uids, Want};
use crate::uid::{UidMap, UidRecord};
use crate::{
    DeidError, Facts, Inventory, Limits, LocalOnly, Options, Outcome, OutputCompression, Profile, Report, SeriesInfo,
    SeriesSelector, SeriesSummary, Skipped,
};

/// Whether [`crate::deidentify_zip`] and [`crate::inspect_zip`] spread the per-entry work
/// over rayon's pool: native targets with the `parallel` feature (default). The wasm32
/// build has no threads and always works in line.
pub(crate) const PARALLEL: bool = cfg!(all(feature = "parallel", not(target_arch = "wasm32")));

/// A batch of entries is closed at this many declared (uncompressed) bytes...
const BATCH_BYTES: u64 = 8 * MIB;
/// ...or entries.
const BATCH_ENTRIES: usize = 64;
/// The first batch of a pass is small, so the pool and the calling thread both start early.
const FIRST_BATCH_ENTRIES: usize = 8;
/// Deflated entries up to this compressed size are read into memory and inflated by the
/// per-entry work; larger ones are inflated while reading, in bounded memory.
const IN_MEMORY_COMPRESSED: u64 = 16 * MIB;

const MIB: u64 = 1024 * 1024;

fn too_large(limit: u64) -> DeidError {
    DeidError::TooLargeWhenExtracted {
        limit_mib: limit.div_ceil(MIB),
    }
}

/// Junk that archivers and file managers add; dropped silently.
fn is_junk(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| p.eq_ignore_ascii_case("__MACOSX")) {
        return true;
    }
    let base = parts.last().copied().unwrap_or("");
    base.eq_ignore_ascii_case(".DS_Store")
        || base.starts_with("._")
        || base.eq_ignore_ascii_case("DICOMDIR")
        || base.eq_ignore_ascii_case("Thumbs.db")
        || base.eq_ignore_ascii_case("desktop.ini")
}

/// Absolute, drive-letter, or climbing ('..') paths; NUL bytes. Entry names are never used
/// as paths here, but such an archive is hostile or broken, so it is refused as a whole.
fn is_unsafe_path(raw: &[u8]) -> bool {
    if raw.contains(&0) {
        return true;
    }
    let name = String::from_utf8_lossy(raw).replace('\\', "/");
    if name.starts_with('/') {
        return true;
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return true;
    }
    name.split('/').any(|p| p == "..")
}

fn map_zip_err(e: zip::result::ZipError) -> DeidError {
    use zip::result::ZipError as Z;
    match e {
        Z::UnsupportedArchive(m) if m.to_ascii_lowercase().contains("password") => DeidError::EncryptedEntries,
        Z::UnsupportedArchive(_) => DeidError::UnsupportedCompression,
        _ => DeidError::CorruptZip,
    }
}

struct Entry {
    index: usize,
    /// 1-based position among the archive's entries, for error messages
    position: u64,
    junk: bool,
    dir: bool,
    /// declared uncompressed size (checked against the limits)
    size: u64,
}

/// Metadata pass: refuses the archive before any inflation.
fn check_entries<R: Read + Seek>(za: &mut ZipArchive<R>, limits: &Limits) -> Result<Vec<Entry>, DeidError> {
    let n = za.len() as u64;
    if n == 0 {
        return Err(DeidError::EmptyZip);
    }
    if n > limits.max_entries {
        return Err(DeidError::TooManyEntries {
            count: n,
            limit: limits.max_entries,
        });
    }
    let mut out = Vec::with_capacity(za.len());
    let mut declared_total: u64 = 0;
    let (mut unsafe_path, mut encrypted, mut nested, mut big, mut unsupported) = (false, false, false, false, false);
    for i in 0..za.len() {
        let f = za.by_index_raw(i).map_err(map_zip_err)?;
        let raw = f.name_raw().to_vec();
        let name = String::from_utf8_lossy(&raw).replace('\\', "/");
        if is_unsafe_path(&raw) || f.is_symlink() {
            unsafe_path = true;
        }
        let dir = f.is_dir();
        let junk = is_junk(&name);
        let size = f.size();
        if !dir {
            if f.encrypted() {
                encrypted = true;
            }
            if name.to_ascii_lowercase().ends_with(".zip") {
                nested = true;
            }
            if !matches!(f.compression(), CompressionMethod::Stored | CompressionMethod::Deflated) {
                unsupported = true;
            }
            declared_total = declared_total.saturating_add(size);
            if size > limits.max_entry_bytes {
                big = true;
            }
            if size >= limits.ratio_check_min_bytes && size / f.compressed_size().max(1) > limits.max_compression_ratio
            {
                big = true;
            }
        }
        out.push(Entry {
            index: i,
            position: i as u64 + 1,
            junk,
            dir,
            size,
        });
    }
    // the most specific, most hostile finding wins
    if unsafe_path {
        return Err(DeidError::UnsafePath);
    }
    if encrypted {
        return Err(DeidError::EncryptedEntries);
    }
    if big {
        return Err(too_large(limits.max_entry_bytes));
    }
    if declared_total > limits.max_total_bytes {
        return Err(too_large(limits.max_total_bytes));
    }
    if nested {
        return Err(DeidError::NestedZip);
    }
    if unsupported {
        return Err(DeidError::UnsupportedCompression);
    }
    Ok(out)
}

/// One entry as read from the archive by the calling thread, not yet inflated.
enum Packed {
    Stored {
        data: Vec<u8>,
        crc: u32,
        declared: u64,
    },
    Deflated {
        data: Vec<u8>,
        crc: u32,
        declared: u64,
    },
    /// inflated while reading (large entries), or the read failed
    Done(Result<Vec<u8>, DeidError>),
}

/// Read one entry's stored bytes. Never more than its declared size (+1 to see a lie) of
/// stored data; deflated data above [`IN_MEMORY_COMPRESSED`] is inflated right here.
fn read_packed<R: Read + Seek>(za: &mut ZipArchive<R>, index: usize) -> Packed {
    let mut f = match za.by_index_raw(index) {
        Ok(f) => f,
        Err(e) => return Packed::Done(Err(map_zip_err(e))),
    };
    let (crc, declared, csize) = (f.crc32(), f.size(), f.compressed_size());
    match f.compression() {
        CompressionMethod::Stored => {
            let mut data = Vec::with_capacity(csize.min(declared.saturating_add(1)) as usize);
            match (&mut f).take(declared.saturating_add(1)).read_to_end(&mut data) {
                Ok(_) => Packed::Stored { data, crc, declared },
                Err(_) => Packed::Done(Err(DeidError::CorruptZip)),
            }
        }
        CompressionMethod::Deflated if csize <= IN_MEMORY_COMPRESSED => {
            let mut data = Vec::with_capacity(csize as usize);
            match f.read_to_end(&mut data) {
                Ok(_) => Packed::Deflated { data, crc, declared },
                Err(_) => Packed::Done(Err(DeidError::CorruptZip)),
            }
        }
        CompressionMethod::Deflated => {
            Packed::Done(inflate(BufReader::with_capacity(64 * 1024, f), false, declared, crc))
        }
        _ => Packed::Done(Err(DeidError::UnsupportedCompression)),
    }
}

/// Raw DEFLATE into one buffer, never more than the declared size (the declared sizes
/// were checked against the limits before any inflation; more output than declared is a
/// damaged or hostile archive), then the CRC-32 check. Same verdicts as the `zip` crate's
/// reader: a stream cut short is caught by the CRC, data after the end of the stream is
/// ignored. `whole`: the first buffer of `src` is all of the compressed data (in memory):
/// inflate it as the last input (zlib then keeps no window copy of the output).
fn inflate<B: BufRead>(mut src: B, whole: bool, declared: u64, crc: u32) -> Result<Vec<u8>, DeidError> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut out = Vec::with_capacity(declared.saturating_add(1) as usize);
    let mut d = Decompress::new(false);
    loop {
        let input = src.fill_buf().map_err(|_| DeidError::CorruptZip)?;
        let eof = input.is_empty();
        let (in0, out0) = (d.total_in(), out.len());
        let flush = if eof || whole {
            FlushDecompress::Finish
        } else {
            FlushDecompress::None
        };
        let status = d
            .decompress_vec(input, &mut out, flush)
            .map_err(|_| DeidError::CorruptZip)?;
        let used = (d.total_in() - in0) as usize;
        src.consume(used);
        if out.len() as u64 > declared {
            return Err(DeidError::CorruptZip);
        }
        if status == Status::StreamEnd {
            break;
        }
        if used == 0 && out.len() == out0 {
            if eof {
                // the compressed data ended early: the CRC decides
                break;
            }
            return Err(DeidError::CorruptZip);
        }
    }
    check_crc(out, crc)
}

fn check_crc(data: Vec<u8>, crc: u32) -> Result<Vec<u8>, DeidError> {
    let mut c = flate2::Crc::new();
    c.update(&data);
    if c.sum() == crc {
        Ok(data)
    } else {
        Err(DeidError::CorruptZip)
    }
}

/// The per-entry half of reading: inflate and check.
fn unpack(p: Packed) -> Result<Vec<u8>, DeidError> {
    match p {
        Packed::Stored { data, crc, declared } => {
            if data.len() as u64 > declared {
                return Err(DeidError::CorruptZip);
            }
            check_crc(data, crc)
        }
        Packed::Deflated { data, crc, declared } => inflate(&data[..], true, declared, crc),
        Packed::Done(r) => r,
    }
}

/// Caps on the inflated bytes: one entry, and all entries read so far. The declared sizes
/// already passed these caps and inflating never goes past a declared size, so for entries
/// this is a second line of defence; for the deflated data sets inside entries, which declare
/// no size, it is the only cap on their total.
fn charge(len: u64, limits: &Limits, total_read: &mut u64) -> Result<(), DeidError> {
    let budget = limits
        .max_entry_bytes
        .min(limits.max_total_bytes.saturating_sub(*total_read));
    if len > budget {
        return Err(too_large(if budget == limits.max_entry_bytes {
            limits.max_entry_bytes
        } else {
            limits.max_total_bytes
        }));
    }
    *total_read += len;
    Ok(())
}

/// Runs `work` on every item of every batch that `next` gives, and hands each batch's
/// results, in item order, to `consume`. `next` and `consume` run on the calling thread
/// (they hold the reader and the writer, which need not be `Send`); with `parallel`, `work`
/// runs on rayon's pool, on batch k+1 while `consume` takes batch k. The results and their
/// order are the same either way; only the timing differs. Stops at `consume`'s first error.
fn pipeline<I: Send, O: Send, E>(
    parallel: bool,
    mut next: impl FnMut() -> Option<Vec<I>>,
    work: impl Fn(I) -> O + Sync + Send,
    mut consume: impl FnMut(Vec<O>) -> Result<(), E>,
) -> Result<(), E> {
    #[cfg(all(feature = "parallel", not(target_arch = "wasm32")))]
    if parallel {
        use rayon::prelude::*;
        let mut batch = next();
        let mut done: Option<Vec<O>> = None;
        while let Some(items) = batch.take() {
            let mut results = None;
            let mut step = Ok(());
            rayon::in_place_scope(|s| {
                s.spawn(|_| results = Some(items.into_par_iter().map(&work).collect::<Vec<O>>()));
                if let Some(prev) = done.take() {
                    step = consume(prev);
                }
                if step.is_ok() {
                    batch = next();
                }
            });
            step?;
            done = results;
        }
        return match done {
            Some(prev) => consume(prev),
            None => Ok(()),
        };
    }
    let _ = parallel;
    while let Some(items) = next() {
        consume(items.into_iter().map(&work).collect())?;
    }
    Ok(())
}

/// Frees written buffers on the pool where there is one: giving large blocks back to the OS
/// is work the writing thread need not wait for.
fn discard(parallel: bool, spent: Vec<Vec<u8>>) {
    #[cfg(all(feature = "parallel", not(target_arch = "wasm32")))]
    if parallel {
        rayon::spawn(move || drop(spent));
        return;
    }
    let _ = parallel;
    drop(spent);
}

/// A data set starting with a group 0008 (or 0002) element, little endian: what old
/// exports without the Part 10 header look like.
fn looks_like_raw_dicom(b: &[u8]) -> bool {
    b.len() >= 16 && matches!(b[0..2], [0x08, 0x00] | [0x02, 0x00]) && b[3] == 0x00
}

fn is_zip_magic(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") || b.starts_with(b"PK\x07\x08")
}

/// Inflated entries kept from the scan for the output pass, up to this many bytes, so a
/// typical series is inflated once; larger uploads are re-read entry by entry.
const CACHE_BUDGET: u64 = 256 * MIB;

struct Scanned {
    series: Vec<(SeriesSummary, Vec<usize>, Facts)>,
    skipped: Skipped,
    /// entry index -> inflated bytes (image entries only, within CACHE_BUDGET)
    cache: HashMap<usize, Vec<u8>>,
    /// entry index -> the originals its rewrite maps, in order (image entries, when recording)
    uids: HashMap<usize, Vec<String>>,
}

/// One entry for the scan's per-entry work.
struct ScanJob {
    index: usize,
    position: u64,
    packed: Packed,
}

/// A scanned file and the UID originals its rewrite maps (when recording).
type FileScan = Result<(Scan, Option<Vec<String>>), FileError>;

/// What the per-entry work learnt about one entry.
struct Scanned1 {
    index: usize,
    position: u64,
    bytes: Result<Vec<u8>, DeidError>,
    /// None for a nested ZIP (or when the read failed)
    file: Option<FileScan>,
}

/// `record`: the profile of the rewrite to come, whose UID originals are noted.
fn scan_entry(job: ScanJob, max_entry_bytes: u64, record: Option<Profile>) -> Scanned1 {
    let bytes = unpack(job.packed);
    let file = match &bytes {
        Ok(b) if !is_zip_magic(b) => {
            let mut rec = UidRecord::default();
            let mut ctx = match record {
                Some(profile) => Ctx {
                    profile,
                    uids: Uids::Record(&mut rec),
                },
                None => Ctx {
                    profile: Profile::Seed,
                    uids: Uids::Ignore,
                },
            };
            let r = part10::process(
                b,
                max_entry_bytes,
                &mut ctx,
                Want {
                    output: false,
                    previews: false,
                },
            );
            Some(r.map(|(scan, _)| (scan, record.map(|_| rec.into_order()))))
        }
        _ => None,
    };
    Scanned1 {
        index: job.index,
        position: job.position,
        bytes,
        file,
    }
}

fn looks_like_3d_t1(s: &Scan) -> bool {
    if !s.modality.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("MR")) {
        return false;
    }
    if !s
        .mr_acquisition_type
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("3D"))
    {
        return false;
    }
    let text = format!(
        "{} {} {}",
        s.series_description.as_deref().unwrap_or(""),
        s.protocol_name.as_deref().unwrap_or(""),
        s.sequence_name.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    let named_t1 = [
        "t1", "mprage", "mp-rage", "mp2rage", "spgr", "bravo", "tfl", "tfe", "ir-fspgr", "ffe",
    ]
    .iter()
    .any(|k| text.contains(k));
    let named_other = ["t2", "flair", "dwi", "dti", "swi", "tof", "pd"]
        .iter()
        .any(|k| text.contains(k));
    let seq = s.scanning_sequence.as_deref().unwrap_or("").to_ascii_uppercase();
    let var = s.sequence_variant.as_deref().unwrap_or("").to_ascii_uppercase();
    let te_short = s.echo_time_ms.is_some_and(|te| te > 0.0 && te < 10.0);
    let params_t1 = (var.contains("MP") || s.inversion_time_ms.is_some() || seq.contains("GR")) && te_short;
    // enhanced MR keeps TE per frame; its top-level pulse-sequence flags say "IR gradient echo"
    let enhanced_t1 = s
        .inversion_recovery
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("YES"))
        && s.echo_pulse_sequence
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("GRADIENT"));
    let params_t1 = params_t1 || enhanced_t1;
    (named_t1 || params_t1) && !named_other
}

/// Pass 1. `keep`: cache the inflated image files for pass 2. `record`: note the UIDs a
/// rewrite with this profile maps.
fn scan_archive<R: Read + Seek>(
    za: &mut ZipArchive<R>,
    limits: &Limits,
    keep: bool,
    record: Option<Profile>,
    parallel: bool,
) -> Result<Scanned, DeidError> {
    let entries = check_entries(za, limits)?;
    let mut skipped = Skipped {
        junk: entries.iter().filter(|e| !e.dir && e.junk).count() as u64,
        ..Default::default()
    };
    let mut to_read = entries.iter().filter(|e| !e.dir && !e.junk).peekable();
    let mut read_failed = false;
    let mut most = FIRST_BATCH_ENTRIES;
    let next = || {
        if read_failed {
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let limit = std::mem::replace(&mut most, BATCH_ENTRIES);
        while let Some(e) = to_read.next_if(|_| bytes < BATCH_BYTES && batch.len() < limit) {
            bytes = bytes.saturating_add(e.size);
            let packed = read_packed(za, e.index);
            read_failed = matches!(packed, Packed::Done(Err(_)));
            batch.push(ScanJob {
                index: e.index,
                position: e.position,
                packed,
            });
            if read_failed {
                // the fold stops at this entry (or before): read no further
                break;
            }
        }
        (!batch.is_empty()).then_some(batch)
    };

    let mut cache = HashMap::new();
    let mut uids = HashMap::new();
    let mut cached = 0u64;
    let mut seen_sops = HashSet::new();
    let mut total_read = 0u64;
    let mut corrupt: Option<(u64, u64)> = None;
    let mut groups: Vec<(String, Vec<(usize, Scan)>)> = Vec::new();
    let fold = |items: Vec<Scanned1>| -> Result<(), DeidError> {
        for it in items {
            let bytes = it.bytes?;
            charge(bytes.len() as u64, limits, &mut total_read)?;
            let Some(file) = it.file else {
                return Err(DeidError::NestedZip);
            };
            match file {
                Ok((scan, rec)) => {
                    // a deflated data set is written inflated: its inflated bytes are extracted too
                    charge(scan.inflated_data_set.unwrap_or(0), limits, &mut total_read)?;
                    if scan.meta.sop_class.as_deref() == Some(DICOMDIR_CLASS) {
                        skipped.dicomdir += 1;
                    } else if !scan.has_pixel_data {
                        if scan.rows.is_some() {
                            // image attributes but no pixels: cut off before the pixel data
                            let c = corrupt.get_or_insert((0, it.position));
                            c.0 += 1;
                        } else {
                            skipped.non_image_dicom += 1;
                        }
                    } else {
                        let key = scan.series_uid.clone().unwrap_or_default();
                        let sop = scan.sop_instance_uid.clone().filter(|u| !u.is_empty());
                        if let Some(u) = sop.as_ref()
                            && !seen_sops.insert(u.clone())
                        {
                            // the same instance twice (re-export, copy): one copy is enough, and
                            // two would share one new SOP Instance UID
                            skipped.duplicates += 1;
                            continue;
                        }
                        match groups.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, v)) => v.push((it.index, scan)),
                            None => groups.push((key, vec![(it.index, scan)])),
                        }
                        if let Some(r) = rec {
                            uids.insert(it.index, r);
                        }
                        if keep && cached + bytes.len() as u64 <= CACHE_BUDGET {
                            cached += bytes.len() as u64;
                            cache.insert(it.index, bytes);
                        }
                    }
                }
                Err(FileError::NotPart10) if looks_like_raw_dicom(&bytes) => skipped.dicom_without_part10_header += 1,
                Err(FileError::NotPart10) => skipped.not_dicom += 1,
                Err(FileError::Corrupt) => {
                    let c = corrupt.get_or_insert((0, it.position));
                    c.0 += 1;
                }
                Err(FileError::UnsupportedTransferSyntax) => return Err(DeidError::UnsupportedTransferSyntax),
                Err(FileError::TooLarge) => return Err(too_large(limits.max_entry_bytes)),
            }
        }
        Ok(())
    };
    let max_entry = limits.max_entry_bytes;
    pipeline(parallel, next, |job| scan_entry(job, max_entry, record), fold)?;

    if let Some((count, first_position)) = corrupt {
        return Err(DeidError::TruncatedOrCorruptDicom { count, first_position });
    }
    let series = groups
        .into_iter()
        .enumerate()
        .map(|(i, (uid, files))| {
            let first = &files[0].1;
            let frames_total: u64 = files.iter().map(|(_, s)| u64::from(s.frames.unwrap_or(1).max(1))).sum();
            let info = SeriesInfo {
                files: files.len() as u64,
                modality: first.modality.clone(),
                series_number: first.series_number,
                rows: first.rows,
                columns: first.columns,
                slices: frames_total,
                mr_acquisition_type: first.mr_acquisition_type.clone(),
                transfer_syntax: first.meta.transfer_syntax.clone(),
                looks_like_3d_t1: looks_like_3d_t1(first) && frames_total >= 32,
            };
            let summary = SeriesSummary {
                index: i,
                info,
                local_only: LocalOnly {
                    series_description: first.series_description.clone(),
                    series_instance_uid: uid,
                },
            };
            let facts = first.facts.resolve();
            (summary, files.into_iter().map(|(idx, _)| idx).collect(), facts)
        })
        .collect();
    Ok(Scanned {
        series,
        skipped,
        cache,
        uids,
    })
}

fn no_images(skipped: &Skipped) -> DeidError {
    if skipped.dicom_without_part10_header > 0 {
        DeidError::NoPart10Header
    } else {
        DeidError::NoDicomImages
    }
}

fn open<R: Read + Seek>(r: R) -> Result<ZipArchive<R>, DeidError> {
    ZipArchive::new(r).map_err(|e| match e {
        zip::result::ZipError::Io(_) | zip::result::ZipError::InvalidArchive(_) => DeidError::NotAZip,
        other => map_zip_err(other),
    })
}

pub(crate) fn inspect<R: Read + Seek>(r: R, limits: &Limits, parallel: bool) -> Result<Inventory, DeidError> {
    let mut za = open(r)?;
    let s = scan_archive(&mut za, limits, false, None, parallel)?;
    if s.series.is_empty() {
        return Err(no_images(&s.skipped));
    }
    Ok(Inventory {
        series: s.series.into_iter().map(|(sum, _, _)| sum).collect(),
        skipped: s.skipped,
    })
}

/// One output file for the rewrite's per-entry work.
struct OutJob {
    /// 0-based position in the output
    pos: usize,
    index: usize,
    /// the cached bytes, or the entry as read again
    input: Result<Vec<u8>, Packed>,
}

/// A rewritten file, ready for the writer.
enum Ready {
    /// stored output: the writer copies the pieces (and computes the CRC)
    Stored(Out),
    /// compressed by the per-entry work
    Deflated(PreparedZipFile),
}

struct Rewritten {
    index: usize,
    reread: bool,
    bytes: Result<Vec<u8>, DeidError>,
    file: Option<Result<(Scan, Ready), DeidError>>,
}

fn entry_name(pos: usize) -> String {
    format!("IM{:05}.dcm", pos + 1)
}

fn rewrite_entry(
    job: OutJob,
    max_inflated: u64,
    profile: Profile,
    uids: &UidMap,
    fo: SimpleFileOptions,
    stored: bool,
) -> Rewritten {
    let reread = job.input.is_err();
    let bytes = job.input.or_else(unpack);
    let file = bytes.as_ref().ok().map(|b| {
        let mut ctx = Ctx {
            profile,
            uids: Uids::Assigned(uids),
        };
        let (scan, out) = part10::process(
            b,
            max_inflated,
            &mut ctx,
            Want {
                output: true,
                previews: false,
            },
        )
        .map_err(crate::file_err)?;
        let out = out.ok_or(DeidError::CorruptDicom)?;
        let ready = if stored {
            Ready::Stored(out)
        } else {
            let mut zb = ZipFileBuilder::new(entry_name(job.pos), fo).map_err(|_| DeidError::Output)?;
            for p in out.pieces(b) {
                zb.write_all(p).map_err(|_| DeidError::Output)?;
            }
            Ready::Deflated(zb.finish().map_err(|_| DeidError::Output)?)
        };
        Ok((scan, ready))
    });
    Rewritten {
        index: job.index,
        reread,
        bytes,
        file,
    }
}

pub(crate) fn deidentify<R: Read + Seek, W: Write + Seek>(
    r: R,
    w: W,
    opts: &Options,
    parallel: bool,
) -> Result<Outcome, DeidError> {
    let mut za = open(r)?;
    let mut scanned = scan_archive(&mut za, &opts.limits, true, Some(opts.profile), parallel)?;
    let n = scanned.series.len();
    let chosen = match (&opts.series, n) {
        (_, 0) => return Err(no_images(&scanned.skipped)),
        (None, 1) => 0,
        (None, n) => return Err(DeidError::MultipleSeries { count: n as u64 }),
        (Some(SeriesSelector::Index(i)), _) if *i < n => *i,
        (Some(SeriesSelector::Index(_)), _) => return Err(DeidError::SeriesNotFound),
        (Some(SeriesSelector::Uid(u)), _) => scanned
            .series
            .iter()
            .position(|(s, _, _)| s.local_only.series_instance_uid == *u)
            .ok_or(DeidError::SeriesNotFound)?,
    };
    let (summary, indices, facts) = scanned.series.swap_remove(chosen);
    let mut cache = scanned.cache;
    // free the other series' files before writing
    let wanted: HashSet<usize> = indices.iter().copied().collect();
    cache.retain(|k, _| wanted.contains(k));

    // new UIDs, drawn in output order: what drawing while rewriting file after file gives
    let mut uids = UidMap::new(opts.seed);
    for idx in &indices {
        for u in scanned.uids.get(idx).map(Vec::as_slice).unwrap_or_default() {
            uids.map(u);
        }
    }
    drop(scanned.uids);

    let fo = match opts.compression {
        OutputCompression::Stored => SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
        OutputCompression::Deflate { level } => SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(i64::from(level.clamp(1, 9)))),
    }
    // fixed time and mode: output depends only on input and seed
    .last_modified_time(DateTime::default())
    .unix_permissions(0o644);

    let mut todo = indices.iter().copied().enumerate().peekable();
    let mut most = FIRST_BATCH_ENTRIES;
    let next = || {
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        let limit = std::mem::replace(&mut most, BATCH_ENTRIES);
        while let Some((pos, index)) = todo.next_if(|_| bytes < BATCH_BYTES && batch.len() < limit) {
            let input = match cache.remove(&index) {
                Some(b) => {
                    bytes += b.len() as u64;
                    Ok(b)
                }
                None => {
                    // beyond the cache budget: read again (as in pass 1, checked again)
                    let p = read_packed(&mut za, index);
                    bytes = bytes.saturating_add(match &p {
                        Packed::Stored { data, .. } | Packed::Deflated { data, .. } => data.len() as u64,
                        Packed::Done(_) => 0,
                    });
                    Err(p)
                }
            };
            batch.push(OutJob { pos, index, input });
        }
        (!batch.is_empty()).then_some(batch)
    };

    let mut zw = ZipWriter::new(w);
    let mut report = Report {
        profile: opts.profile,
        ..Default::default()
    };
    let mut total_read = 0u64;
    let mut pos = 0usize;
    let write = |items: Vec<Rewritten>| -> Result<(), DeidError> {
        let mut spent = Vec::with_capacity(items.len());
        for it in items {
            let bytes = it.bytes?;
            if it.reread {
                charge(bytes.len() as u64, &opts.limits, &mut total_read)?;
            }
            let (scan, ready) = it.file.unwrap_or(Err(DeidError::CorruptDicom)).map_err(|e| match e {
                // the scan already accepted this entry; a different answer means the input changed
                DeidError::CorruptDicom => DeidError::TruncatedOrCorruptDicom {
                    count: 1,
                    first_position: it.index as u64 + 1,
                },
                other => other,
            })?;
            match ready {
                Ready::Stored(out) => {
                    zw.start_file(entry_name(pos), fo).map_err(|_| DeidError::Output)?;
                    for p in out.pieces(&bytes) {
                        zw.write_all(p).map_err(|_| DeidError::Output)?;
                    }
                }
                Ready::Deflated(p) => zw.add_prepared_file(p).map_err(|_| DeidError::Output)?,
            }
            pos += 1;
            crate::count_file(&mut report, &scan);
            spent.push(bytes);
        }
        discard(parallel, spent);
        Ok(())
    };
    let (profile, max_inflated) = (opts.profile, opts.limits.max_entry_bytes);
    let stored = opts.compression == OutputCompression::Stored;
    pipeline(
        parallel,
        next,
        |job| rewrite_entry(job, max_inflated, profile, &uids, fo, stored),
        write,
    )?;
    zw.finish().map_err(|_| DeidError::Output)?;
    report.distinct_uids_replaced = uids.len() as u64;
    report.skipped = scanned.skipped;
    report.series_in_archive = n as u64;
    Ok(Outcome {
        report,
        facts,
        series: summary.info,
    })
}
