//! The browser's de-identification, run inside a Web Worker (`public/deid-worker.js`).
//!
//! A thin layer over the `deid` crate (the same code the server runs): JSON strings in
//! and out so the worker bundle needs neither Leptos nor serde-wasm-bindgen. The worker
//! drives a [`DeidJob`] step by step so it can post "files done / total" progress.
//!
//! Flow: `new(zip)` → `inspect()` (series list; LOCAL-ONLY descriptions included) →
//! `start(series_index, seed)` → `step(n)` until `done()` → `finish()` (the de-identified
//! ZIP) and `summary()` (report + kept facts + the LOCAL-ONLY removal preview with the
//! original values, for the page's "what will be removed" screen; never uploaded).

use std::collections::BTreeSet;
use std::io::{Cursor, Read, Write};

use deid::{DeidError, Deidentifier, Facts, Inventory, Limits, Profile, Removal, Report, SeriesInfo};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

/// At most this many distinct (attribute, value) pairs are shown in the preview.
const MAX_PREVIEW: usize = 400;

/// Error as JSON: `{"code": "...", "message": "plain-language text"}`.
fn err_json(e: &DeidError) -> String {
    serde_json::json!({ "code": e.code(), "message": e.to_string() }).to_string()
}

fn internal(msg: &str) -> String {
    serde_json::json!({ "code": "internal", "message": msg }).to_string()
}

#[derive(Serialize)]
struct Summary<'a> {
    report: &'a Report,
    facts: Option<Facts>,
    series: Option<&'a SeriesInfo>,
    /// LOCAL ONLY: original values, for display in the user's own browser.
    removals: &'a [Removal],
    removals_truncated: bool,
    output_bytes: usize,
}

struct Run {
    series_uid: String,
    series: SeriesInfo,
    /// ZIP entry indices not yet looked at.
    entries: Vec<usize>,
    next: usize,
    deid: Deidentifier,
    writer: Option<ZipWriter<Cursor<Vec<u8>>>>,
    written: u32,
    total: u32,
    facts: Option<Facts>,
    removals: Vec<Removal>,
    seen: BTreeSet<(String, String)>,
    truncated: bool,
    output: Vec<u8>,
    report: Option<Report>,
}

#[wasm_bindgen]
pub struct DeidJob {
    zip: Vec<u8>,
    limits: Limits,
    inventory: Option<Inventory>,
    run: Option<Run>,
    /// Output compression: 0 = stored, 1..=9 = DEFLATE level.
    level: u8,
}

#[wasm_bindgen]
impl DeidJob {
    /// Takes the ZIP's bytes (copied once into WASM memory).
    #[wasm_bindgen(constructor)]
    pub fn new(zip: Vec<u8>) -> DeidJob {
        DeidJob {
            zip,
            limits: Limits::default(),
            inventory: None,
            run: None,
            level: 1,
        }
    }

    /// The series in the archive (JSON [`Inventory`]); throws the error JSON.
    pub fn inspect(&mut self) -> Result<String, String> {
        let inv = deid::inspect_zip(Cursor::new(&self.zip[..]), &self.limits).map_err(|e| err_json(&e))?;
        let json = serde_json::to_string(&inv).map_err(|_| internal("serialisation failed"))?;
        self.inventory = Some(inv);
        Ok(json)
    }

    /// Starts de-identifying the series at `series_index` with a 32-byte seed from
    /// `crypto.getRandomValues`. Returns the number of files to process.
    pub fn start(&mut self, series_index: usize, seed: &[u8], deflate_level: u8) -> Result<u32, String> {
        let inv = self.inventory.as_ref().ok_or_else(|| internal("inspect first"))?;
        let summary = inv
            .series
            .get(series_index)
            .ok_or_else(|| err_json(&DeidError::SeriesNotFound))?;
        let seed: [u8; 32] = seed.try_into().map_err(|_| internal("the seed must be 32 bytes"))?;
        let za = ZipArchive::new(Cursor::new(&self.zip[..])).map_err(|_| err_json(&DeidError::NotAZip))?;
        let entries: Vec<usize> = (0..za.len()).collect();
        self.run = Some(Run {
            series_uid: summary.local_only.series_instance_uid.clone(),
            series: summary.info.clone(),
            entries,
            next: 0,
            deid: Deidentifier::new(Profile::default(), seed),
            writer: Some(ZipWriter::new(Cursor::new(Vec::new()))),
            written: 0,
            total: u32::try_from(summary.info.files).unwrap_or(u32::MAX),
            facts: None,
            removals: Vec::new(),
            seen: BTreeSet::new(),
            truncated: false,
            output: Vec::new(),
            report: None,
        });
        self.level = deflate_level.min(9);
        Ok(self.total())
    }

    /// Looks at up to `max_entries` more ZIP entries; returns the files written so far.
    pub fn step(&mut self, max_entries: u32) -> Result<u32, String> {
        let limits = self.limits;
        let level = self.level;
        let run = self.run.as_mut().ok_or_else(|| internal("start first"))?;
        let mut za = ZipArchive::new(Cursor::new(&self.zip[..])).map_err(|_| err_json(&DeidError::NotAZip))?;
        let opts = match level {
            0 => SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
            l => SimpleFileOptions::default()
                .compression_method(CompressionMethod::Deflated)
                .compression_level(Some(i64::from(l.clamp(1, 9)))),
        }
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
        let mut n = 0;
        while n < max_entries && run.next < run.entries.len() {
            let index = run.entries[run.next];
            run.next += 1;
            n += 1;
            let (name, bytes) = {
                let f = za.by_index(index).map_err(|_| err_json(&DeidError::CorruptZip))?;
                if f.is_dir() {
                    continue;
                }
                let name = f.name_raw().to_vec();
                let mut buf = Vec::with_capacity(f.size().min(limits.max_entry_bytes) as usize);
                f.take(limits.max_entry_bytes + 1)
                    .read_to_end(&mut buf)
                    .map_err(|_| err_json(&DeidError::CorruptZip))?;
                if buf.len() as u64 > limits.max_entry_bytes {
                    return Err(err_json(&DeidError::TooLargeWhenExtracted {
                        limit_mib: limits.max_entry_bytes / (1024 * 1024),
                    }));
                }
                (name, buf)
            };
            if !in_series(&name, &bytes, &run.series_uid, &limits)? {
                continue;
            }
            if !run.truncated
                && let Ok(items) = deid::preview_removals(&bytes, Profile::default())
            {
                for r in items {
                    if run.seen.len() >= MAX_PREVIEW {
                        run.truncated = true;
                        break;
                    }
                    if run.seen.insert((r.path.clone(), r.value.clone())) {
                        run.removals.push(r);
                    }
                }
            }
            let out = run.deid.file_with_facts(&bytes).map_err(|e| err_json(&e))?;
            if run.facts.is_none() {
                run.facts = Some(out.facts);
            }
            run.written += 1;
            let w = run.writer.as_mut().ok_or_else(|| internal("already finished"))?;
            w.start_file(format!("IM{:05}.dcm", run.written), opts)
                .map_err(|_| err_json(&DeidError::Output))?;
            w.write_all(&out.bytes).map_err(|_| err_json(&DeidError::Output))?;
        }
        Ok(run.written)
    }

    pub fn done(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.next >= r.entries.len())
    }

    pub fn total(&self) -> u32 {
        self.run.as_ref().map_or(0, |r| r.total)
    }

    /// Closes the output ZIP and returns its bytes (the only thing that is uploaded).
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        let run = self.run.as_mut().ok_or_else(|| internal("start first"))?;
        if let Some(w) = run.writer.take() {
            let cursor = w.finish().map_err(|_| err_json(&DeidError::Output))?;
            run.output = cursor.into_inner();
            let mut report = run.deid.report();
            if let Some(inv) = &self.inventory {
                report.skipped = inv.skipped;
                report.series_in_archive = inv.series.len() as u64;
            }
            run.report = Some(report);
        }
        if run.written == 0 {
            return Err(err_json(&DeidError::NoDicomImages));
        }
        Ok(run.output.clone())
    }

    /// JSON: report (counts), kept facts, series info and the LOCAL-ONLY removal preview.
    pub fn summary(&self) -> Result<String, String> {
        let run = self.run.as_ref().ok_or_else(|| internal("start first"))?;
        let report = run.report.clone().unwrap_or_else(|| run.deid.report());
        serde_json::to_string(&Summary {
            report: &report,
            facts: run.facts.clone(),
            series: Some(&run.series),
            removals: &run.removals,
            removals_truncated: run.truncated,
            output_bytes: run.output.len(),
        })
        .map_err(|_| internal("serialisation failed"))
    }
}

/// Whether one archive entry is an image of the chosen series. The `deid` crate groups
/// series inside `inspect_zip`; asking it about a one-entry archive keeps the grouping
/// rules (junk names, DICOMDIR, non-image DICOM) identical to the server's.
fn in_series(name: &[u8], bytes: &[u8], series_uid: &str, limits: &Limits) -> Result<bool, String> {
    let mut one = ZipWriter::new(Cursor::new(Vec::with_capacity(bytes.len() + 256)));
    let name = String::from_utf8_lossy(name).into_owned();
    let opts = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    one.start_file(name, opts).map_err(|_| err_json(&DeidError::Output))?;
    one.write_all(bytes).map_err(|_| err_json(&DeidError::Output))?;
    let buf = one.finish().map_err(|_| err_json(&DeidError::Output))?.into_inner();
    match deid::inspect_zip(Cursor::new(&buf[..]), limits) {
        Ok(inv) => Ok(inv
            .series
            .iter()
            .any(|s| s.local_only.series_instance_uid == series_uid)),
        Err(DeidError::NoDicomImages) => Ok(false),
        Err(e) => Err(err_json(&e)),
    }
}
