//! ZIP in, ZIP out. Pass 1 checks every entry's metadata (paths, encryption, declared
//! sizes) before inflating a byte, then reads each entry with a hard cap and scans it;
//! pass 2 re-reads only the chosen series and writes de-identified files named by
//! position. Nothing is written anywhere but the caller's writer.

use std::io::{Read, Seek, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::part10::{self, Ctx, FileError, Scan, Want, DICOMDIR_CLASS};
use crate::uid::UidMap;
use crate::{
    DeidError, Facts, Inventory, Limits, LocalOnly, Options, OutputCompression, Outcome, SeriesInfo,
    SeriesSelector, SeriesSummary, Skipped,
};

const MIB: u64 = 1024 * 1024;

fn too_large(limit: u64) -> DeidError {
    DeidError::TooLargeWhenExtracted { limit_mib: limit.div_ceil(MIB) }
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
}

/// Metadata pass: refuses the archive before any inflation.
fn check_entries<R: Read + Seek>(za: &mut ZipArchive<R>, limits: &Limits) -> Result<Vec<Entry>, DeidError> {
    let n = za.len() as u64;
    if n == 0 {
        return Err(DeidError::EmptyZip);
    }
    if n > limits.max_entries {
        return Err(DeidError::TooManyEntries { count: n, limit: limits.max_entries });
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
            let size = f.size();
            declared_total = declared_total.saturating_add(size);
            if size > limits.max_entry_bytes {
                big = true;
            }
            if size >= limits.ratio_check_min_bytes
                && size / f.compressed_size().max(1) > limits.max_compression_ratio
            {
                big = true;
            }
        }
        out.push(Entry { index: i, position: i as u64 + 1, junk, dir });
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

/// Inflate one entry, never more than the per-entry cap and the remaining total budget,
/// whatever its header claims.
fn read_entry<R: Read + Seek>(
    za: &mut ZipArchive<R>,
    index: usize,
    limits: &Limits,
    total_read: &mut u64,
) -> Result<Vec<u8>, DeidError> {
    let f = za.by_index(index).map_err(map_zip_err)?;
    let budget = limits.max_entry_bytes.min(limits.max_total_bytes.saturating_sub(*total_read));
    let mut buf = Vec::with_capacity(f.size().min(budget) as usize);
    let mut t = f.take(budget.saturating_add(1));
    t.read_to_end(&mut buf).map_err(|_| DeidError::CorruptZip)?;
    if buf.len() as u64 > budget {
        return Err(too_large(if budget == limits.max_entry_bytes {
            limits.max_entry_bytes
        } else {
            limits.max_total_bytes
        }));
    }
    *total_read += buf.len() as u64;
    Ok(buf)
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
    cache: std::collections::HashMap<usize, Vec<u8>>,
}

fn looks_like_3d_t1(s: &Scan) -> bool {
    if !s.modality.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("MR")) {
        return false;
    }
    if !s.mr_acquisition_type.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("3D")) {
        return false;
    }
    let text = format!(
        "{} {} {}",
        s.series_description.as_deref().unwrap_or(""),
        s.protocol_name.as_deref().unwrap_or(""),
        s.sequence_name.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    let named_t1 = ["t1", "mprage", "mp-rage", "mp2rage", "spgr", "bravo", "tfl", "tfe", "ir-fspgr", "ffe"]
        .iter()
        .any(|k| text.contains(k));
    let named_other = ["t2", "flair", "dwi", "dti", "swi", "tof", "pd"].iter().any(|k| text.contains(k));
    let seq = s.scanning_sequence.as_deref().unwrap_or("").to_ascii_uppercase();
    let var = s.sequence_variant.as_deref().unwrap_or("").to_ascii_uppercase();
    let te_short = s.echo_time_ms.is_some_and(|te| te > 0.0 && te < 10.0);
    let params_t1 = (var.contains("MP") || s.inversion_time_ms.is_some() || seq.contains("GR")) && te_short;
    // enhanced MR keeps TE per frame; its top-level pulse-sequence flags say "IR gradient echo"
    let enhanced_t1 = s.inversion_recovery.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("YES"))
        && s.echo_pulse_sequence.as_deref().is_some_and(|v| v.eq_ignore_ascii_case("GRADIENT"));
    let params_t1 = params_t1 || enhanced_t1;
    (named_t1 || params_t1) && !named_other
}

fn scan_archive<R: Read + Seek>(za: &mut ZipArchive<R>, limits: &Limits, keep: bool) -> Result<Scanned, DeidError> {
    let mut cache = std::collections::HashMap::new();
    let mut cached = 0u64;
    let mut seen_sops = std::collections::HashSet::new();
    let entries = check_entries(za, limits)?;
    let mut skipped = Skipped::default();
    let mut total_read = 0u64;
    let mut corrupt: Option<(u64, u64)> = None;
    let mut groups: Vec<(String, Vec<(usize, Scan)>)> = Vec::new();
    // the scan never writes, so this map is thrown away
    let mut scratch = UidMap::new([0; 32]);
    for e in entries.iter() {
        if e.dir {
            continue;
        }
        if e.junk {
            skipped.junk += 1;
            continue;
        }
        let bytes = read_entry(za, e.index, limits, &mut total_read)?;
        if is_zip_magic(&bytes) {
            return Err(DeidError::NestedZip);
        }
        let mut ctx = Ctx { profile: crate::Profile::Seed, uids: &mut scratch };
        match part10::process(&bytes, limits.max_entry_bytes, &mut ctx, Want { output: false, previews: false }) {
            Ok((scan, _)) => {
                if scan.meta.sop_class.as_deref() == Some(DICOMDIR_CLASS) {
                    skipped.dicomdir += 1;
                } else if !scan.has_pixel_data {
                    if scan.rows.is_some() {
                        // image attributes but no pixels: cut off before the pixel data
                        let c = corrupt.get_or_insert((0, e.position));
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
                        Some((_, v)) => v.push((e.index, scan)),
                        None => groups.push((key, vec![(e.index, scan)])),
                    }
                    if keep && cached + bytes.len() as u64 <= CACHE_BUDGET {
                        cached += bytes.len() as u64;
                        cache.insert(e.index, bytes);
                    }
                }
            }
            Err(FileError::NotPart10) if looks_like_raw_dicom(&bytes) => skipped.dicom_without_part10_header += 1,
            Err(FileError::NotPart10) => skipped.not_dicom += 1,
            Err(FileError::Corrupt) => {
                let c = corrupt.get_or_insert((0, e.position));
                c.0 += 1;
            }
            Err(FileError::UnsupportedTransferSyntax) => return Err(DeidError::UnsupportedTransferSyntax),
            Err(FileError::TooLarge) => return Err(too_large(limits.max_entry_bytes)),
        }
    }
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
    Ok(Scanned { series, skipped, cache })
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

pub(crate) fn inspect<R: Read + Seek>(r: R, limits: &Limits) -> Result<Inventory, DeidError> {
    let mut za = open(r)?;
    let s = scan_archive(&mut za, limits, false)?;
    if s.series.is_empty() {
        return Err(no_images(&s.skipped));
    }
    Ok(Inventory { series: s.series.into_iter().map(|(sum, _, _)| sum).collect(), skipped: s.skipped })
}

pub(crate) fn deidentify<R: Read + Seek, W: Write + Seek>(
    r: R,
    w: W,
    opts: &Options,
) -> Result<Outcome, DeidError> {
    let mut za = open(r)?;
    let mut scanned = scan_archive(&mut za, &opts.limits, true)?;
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
    let wanted: std::collections::HashSet<usize> = indices.iter().copied().collect();
    cache.retain(|k, _| wanted.contains(k));

    let mut zw = ZipWriter::new(w);
    let fo = match opts.compression {
        OutputCompression::Stored => SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
        OutputCompression::Deflate { level } => SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(i64::from(level.clamp(1, 9)))),
    }
    // fixed time and mode: output depends only on input and seed
    .last_modified_time(DateTime::default())
    .unix_permissions(0o644);

    let mut deid = crate::Deidentifier::new(opts.profile, opts.seed);
    deid.max_inflated = opts.limits.max_entry_bytes;
    let mut total_read = 0u64;
    for (pos, &idx) in indices.iter().enumerate() {
        let bytes = match cache.remove(&idx) {
            Some(b) => b,
            None => read_entry(&mut za, idx, &opts.limits, &mut total_read)?,
        };
        let out = deid.file(&bytes).map_err(|e| match e {
            // the scan already accepted this entry; a different answer means the input changed
            DeidError::CorruptDicom => DeidError::TruncatedOrCorruptDicom { count: 1, first_position: idx as u64 + 1 },
            other => other,
        })?;
        zw.start_file(format!("IM{:05}.dcm", pos + 1), fo).map_err(|_| DeidError::Output)?;
        zw.write_all(&out).map_err(|_| DeidError::Output)?;
    }
    zw.finish().map_err(|_| DeidError::Output)?;
    let mut report = deid.report();
    report.skipped = scanned.skipped;
    report.series_in_archive = n as u64;
    Ok(Outcome { report, facts, series: summary.info })
}
