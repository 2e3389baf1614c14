//! NeuroVol de-identification: one crate for the browser (wasm32) and the server.
//!
//! Pure Rust, no I/O of its own, no clock, no OS randomness: callers hand in bytes (or a
//! `Read + Seek`), a `Write + Seek` for the output ZIP, and a 32-byte seed from the OS
//! RNG. The same input and seed give byte-identical output on every target.
//!
//! What it does to every file (DESIGN.md "Privacy rules", issue 3):
//! - removes the 32 listed attributes, every private (odd-group) element including
//!   private creators and VR UN, every 60xx overlay element, at every nesting depth
//!   (functional groups, private sequences); the default [`Profile::Basic`] also applies
//!   the PS3.15 Annex E Basic profile with "Retain Patient Characteristics" and "Retain
//!   Longitudinal Temporal Information with Full Dates" ([`Profile::Seed`] = the list only);
//! - replaces every UID-valued (VR UI) attribute that is not a DICOM registry UID
//!   (`1.2.840.10008.*`) or a class/syntax/coding-scheme UID with `2.25.<random 128 bit>`,
//!   consistently within one upload, never derived from the original;
//! - zeroes the preamble, rebuilds the file meta (new MediaStorageSOPInstanceUID, no
//!   source AE titles or private meta), names output files by position;
//! - marks each file as PS3.15 asks: PatientIdentityRemoved = YES,
//!   DeidentificationMethod, and (Basic) the method codes 113100/113106/113108;
//! - writes each SOP instance once (duplicates in an archive are counted, not repeated);
//! - copies every kept value byte for byte: pixel data (native or encapsulated) is
//!   identical and the transfer syntax is preserved (implicit/explicit LE, explicit BE,
//!   JPEG/JPEG-LS/JPEG 2000/RLE without decoding), except that a deflated data set is
//!   written inflated: Deflated Explicit VR Little Endian becomes Explicit VR Little Endian
//!   (dcm2niix cannot read deflated files; [`Report::transcoded_from_deflated`]);
//! - captures PatientAge (years), PatientSex and StudyDate before removal ([`Facts`]).
//!
//! # Why not the `dicom-anonymization` crate
//! Evaluated v0.3.1 (carecoders/dicom-anonymization, MIT/Apache-2.0), the only
//! anonymization crate on crates.io. Not used, because it misses rules that are not
//! negotiable here: (1) its UID action hashes the original UID (blake3) into the new
//! one, so new UIDs are *derived* from the originals (DESIGN: never derivable); (2) it is
//! built on dicom-rs 0.8 with `dicom-object`'s `inventory-registry` feature and pulls
//! clap, env_logger, walkdir, rayon and blake3 into the library — a second dicom-rs
//! version next to the workspace's 0.10 and an awkward wasm32 build; (3) it rebuilds
//! whole in-memory objects, so kept values are re-encoded rather than copied, and it
//! offers no report of what was removed, no fact capture, no ZIP handling. Its
//! per-tag action model (remove/empty/hash/keep) covers nested sequences, private tags
//! and overlays via flags, but with (1) alone it fails DESIGN. This crate uses
//! dicom-rs 0.10 directly: `dicom-parser`'s token reader (raw value strategy) for parsing,
//! `dicom-dictionary-std` for keywords/VRs, and a small re-encoder of its own.
//!
//! # Randomness
//! `rand_chacha::ChaCha20Rng` seeded from [`Options::seed`]. The crate itself has no
//! `getrandom` code path; note that the `zip` crate lists `getrandom` as a dependency
//! (used only by its encryption *writers*, which this crate never calls; on wasm32 it
//! resolves to the `wasm_js` backend and compiles for `wasm32-unknown-unknown`).

mod archive;
mod error;
mod facts;
mod part10;
mod rules;
mod uid;

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};

use serde::{Deserialize, Serialize};

pub use error::DeidError;
pub use facts::{AgeSource, Date, Facts, Sex, parse_age};
pub use rules::Profile;

/// ImplementationClassUID written into rebuilt file meta (a fixed `2.25` UID for NeuroVol).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.178590465718386155460327917325463390215";
/// ImplementationVersionName written into rebuilt file meta.
pub const IMPLEMENTATION_VERSION_NAME: &str = "NEUROVOL_DEID_1";

/// Hard limits on an uploaded archive. Checked on the declared sizes before inflating,
/// and again while inflating (a lying header cannot push past them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Maximum number of entries (files and folders) in the ZIP.
    pub max_entries: u64,
    /// Maximum total uncompressed bytes of all entries (a deflated data set counts inflated
    /// as well, since it is written inflated).
    pub max_total_bytes: u64,
    /// Maximum uncompressed bytes of one entry (also caps an inflated deflated data set).
    pub max_entry_bytes: u64,
    /// Maximum uncompressed/compressed ratio for entries of at least `ratio_check_min_bytes`.
    pub max_compression_ratio: u64,
    /// Small entries may compress extremely well (blank slices): ratio checked above this.
    pub ratio_check_min_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 20_000,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_entry_bytes: 512 * 1024 * 1024,
            max_compression_ratio: 200,
            ratio_check_min_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Which series to output when an archive holds several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesSelector {
    /// Position in [`Inventory::series`].
    Index(usize),
    /// Original SeriesInstanceUID ([`LocalOnly::series_instance_uid`]; browser only).
    Uid(String),
}

/// Compression of the output ZIP's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputCompression {
    Stored,
    /// DEFLATE level 1 (fast) ..= 9 (small).
    Deflate {
        level: u8,
    },
}

impl Default for OutputCompression {
    fn default() -> Self {
        OutputCompression::Deflate { level: 6 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    pub profile: Profile,
    pub limits: Limits,
    /// Required when the archive holds more than one series.
    pub series: Option<SeriesSelector>,
    /// Seed of the UID generator: pass 32 bytes of OS randomness. Equal seeds give equal
    /// output (tests); reusing a seed across uploads would repeat UIDs.
    pub seed: [u8; 32],
    pub compression: OutputCompression,
}

impl Options {
    pub fn new(seed: [u8; 32]) -> Self {
        Options {
            profile: Profile::default(),
            limits: Limits::default(),
            series: None,
            seed,
            compression: OutputCompression::default(),
        }
    }
}

/// Non-identifying description of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub files: u64,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub rows: Option<u16>,
    pub columns: Option<u16>,
    /// Images in the series: files, or the sum of NumberOfFrames for multi-frame files.
    pub slices: u64,
    pub mr_acquisition_type: Option<String>,
    pub transfer_syntax: String,
    /// MR, 3D acquisition, and T1-like by name or parameters (a hint for the picker).
    pub looks_like_3d_t1: bool,
}

/// Identifying text shown to the user in the browser to pick a series.
/// LOCAL ONLY: the server must never persist or log it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalOnly {
    pub series_description: Option<String>,
    pub series_instance_uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSummary {
    /// Position, usable as [`SeriesSelector::Index`].
    pub index: usize,
    pub info: SeriesInfo,
    pub local_only: LocalOnly,
}

/// Entries that were not image DICOM files and were left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `__MACOSX/`, `._*`, `.DS_Store`, `DICOMDIR`, `Thumbs.db`...
    pub junk: u64,
    /// Files that are not DICOM at all (pictures, PDFs, text...).
    pub not_dicom: u64,
    /// Raw DICOM data sets without the Part 10 header (no "DICM" at offset 128): not
    /// supported, because the transfer syntax would have to be guessed.
    pub dicom_without_part10_header: u64,
    /// DICOMDIR files found under another name.
    pub dicomdir: u64,
    /// Part 10 files without pixel data (reports, presentation states...).
    pub non_image_dicom: u64,
    /// Second copies of an image already in the archive (same SOP Instance UID).
    pub duplicates: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub series: Vec<SeriesSummary>,
    pub skipped: Skipped,
}

/// What was done. Keywords and counts only, never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub profile: Profile,
    pub files_written: u64,
    /// Removed attribute keyword -> number of files that had it (at any depth).
    pub removed: BTreeMap<String, u64>,
    /// Private (odd-group) elements removed, all files, all depths.
    pub private_elements_removed: u64,
    /// Overlay (60xx) elements removed, all files, all depths.
    pub overlay_elements_removed: u64,
    /// Curve (50xx) elements removed (Basic profile).
    pub curve_elements_removed: u64,
    /// Distinct original UIDs replaced.
    pub distinct_uids_replaced: u64,
    /// Files stored with a deflated data set (Deflated Explicit VR Little Endian): written
    /// uncompressed after de-identification, as Explicit VR Little Endian.
    #[serde(default)]
    pub transcoded_from_deflated: u64,
    pub skipped: Skipped,
    pub series_in_archive: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub report: Report,
    pub facts: Facts,
    pub series: SeriesInfo,
}

/// One attribute that will be removed from a file, with its original value as display
/// text. LOCAL ONLY (the browser's "what will be removed" screen): never send or log it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Keyword path, e.g. `RequestAttributesSequence > AccessionNumber`, or `(0029,1010)`.
    pub path: String,
    pub value: String,
}

/// One de-identified file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeidFile {
    pub bytes: Vec<u8>,
    pub facts: Facts,
}

/// De-identifies file after file with one UID mapping (one upload). Used by
/// [`deidentify_zip`] and directly by the browser, which may work file by file.
pub struct Deidentifier {
    profile: Profile,
    uids: uid::UidMap,
    report: Report,
    max_inflated: u64,
}

impl Deidentifier {
    pub fn new(profile: Profile, seed: [u8; 32]) -> Self {
        Deidentifier {
            profile,
            uids: uid::UidMap::new(seed),
            report: Report {
                profile,
                ..Default::default()
            },
            max_inflated: Limits::default().max_entry_bytes,
        }
    }

    /// De-identify one Part 10 file. Non-Part-10 input is refused, never passed through.
    pub fn file(&mut self, bytes: &[u8]) -> Result<Vec<u8>, DeidError> {
        Ok(self.file_with_facts(bytes)?.bytes)
    }

    /// Like [`Deidentifier::file`], also returning the facts captured from this file.
    pub fn file_with_facts(&mut self, bytes: &[u8]) -> Result<DeidFile, DeidError> {
        let mut ctx = part10::Ctx {
            profile: self.profile,
            uids: part10::Uids::Draw(&mut self.uids),
        };
        let (scan, out) = part10::process(
            bytes,
            self.max_inflated,
            &mut ctx,
            part10::Want {
                output: true,
                previews: false,
            },
        )
        .map_err(file_err)?;
        let out = out.ok_or(DeidError::CorruptDicom)?;
        count_file(&mut self.report, &scan);
        self.report.distinct_uids_replaced = self.uids.len() as u64;
        Ok(DeidFile {
            bytes: out.to_vec(bytes),
            facts: scan.facts.resolve(),
        })
    }

    /// The report so far.
    pub fn report(&self) -> Report {
        self.report.clone()
    }
}

/// Adds one written file to the report (keywords and counts only).
fn count_file(r: &mut Report, scan: &part10::Scan) {
    r.files_written += 1;
    for k in &scan.removed_keywords {
        *r.removed.entry((*k).to_string()).or_default() += 1;
    }
    r.private_elements_removed += scan.private_removed;
    r.overlay_elements_removed += scan.overlay_removed;
    r.curve_elements_removed += scan.curve_removed;
    r.transcoded_from_deflated += u64::from(scan.inflated_data_set.is_some());
}

fn file_err(e: part10::FileError) -> DeidError {
    match e {
        part10::FileError::NotPart10 => DeidError::NotDicomPart10,
        part10::FileError::Corrupt => DeidError::CorruptDicom,
        part10::FileError::UnsupportedTransferSyntax => DeidError::UnsupportedTransferSyntax,
        part10::FileError::TooLarge => DeidError::TooLargeWhenExtracted {
            limit_mib: Limits::default().max_entry_bytes / (1024 * 1024),
        },
    }
}

/// List the image series in a ZIP (for the browser's series picker).
pub fn inspect_zip<R: Read + Seek>(r: R, limits: &Limits) -> Result<Inventory, DeidError> {
    archive::inspect(r, limits, archive::PARALLEL)
}

/// De-identify the chosen series of a ZIP into a new ZIP (`IM00001.dcm`...).
///
/// On native targets with the `parallel` feature (default), the per-file work (inflating,
/// parsing, rewriting, compressing) runs on rayon's global pool; the output is byte-identical
/// to the sequential path (and to the wasm32 build) for the same seed.
pub fn deidentify_zip<R: Read + Seek, W: Write + Seek>(r: R, w: W, opts: &Options) -> Result<Outcome, DeidError> {
    archive::deidentify(r, w, opts, archive::PARALLEL)
}

/// [`deidentify_zip`] on the calling thread only: the path the wasm32 build always takes.
/// For the parallel-equals-sequential tests and benchmarks.
#[doc(hidden)]
pub fn deidentify_zip_sequential<R: Read + Seek, W: Write + Seek>(
    r: R,
    w: W,
    opts: &Options,
) -> Result<Outcome, DeidError> {
    archive::deidentify(r, w, opts, false)
}

/// De-identify one Part 10 file with its own UID mapping. For several files of one
/// upload use one [`Deidentifier`] so UIDs stay consistent across files.
pub fn deidentify_file_bytes(bytes: &[u8], profile: Profile, seed: [u8; 32]) -> Result<DeidFile, DeidError> {
    Deidentifier::new(profile, seed).file_with_facts(bytes)
}

/// What [`Deidentifier::file`] would remove from this file, with the original values as
/// display text. LOCAL ONLY: for the browser's preview screen.
pub fn preview_removals(bytes: &[u8], profile: Profile) -> Result<Vec<Removal>, DeidError> {
    let mut ctx = part10::Ctx {
        profile,
        uids: part10::Uids::Ignore,
    };
    let (scan, _) = part10::process(
        bytes,
        Limits::default().max_entry_bytes,
        &mut ctx,
        part10::Want {
            output: false,
            previews: true,
        },
    )
    .map_err(file_err)?;
    Ok(scan
        .previews
        .unwrap_or_default()
        .into_iter()
        .map(|(path, value)| Removal { path, value })
        .collect())
}

/// Keywords of the attributes `profile` removes at every depth: DESIGN.md's list first,
/// then (for `Basic`) the further PS3.15 Basic-profile attributes. For the Privacy page,
/// so it states exactly what this code does.
pub fn removed_keywords(profile: Profile) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = rules::DESIGN_LIST.iter().map(|(_, _, k)| *k).collect();
    if profile == Profile::Basic {
        out.extend(rules::BASIC_EXTRA.iter().map(|(_, _, k)| *k));
    }
    out
}
