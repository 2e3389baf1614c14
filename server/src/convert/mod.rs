//! DICOM → NIfTI conversion of a de-identified upload with dcm2niix (issue 6, item 1).
//!
//! [`convert`] takes the de-identified ZIP (never a raw upload), extracts it into
//! `<work>/dicom/` under index names, runs dcm2niix with a fixed output name and no JSON
//! sidecar, checks that the result is exactly one 3D volume usable for whole-brain
//! volumetry, scrubs the NIfTI header's free-text fields and writes
//! `<work>/out/volume.nii.gz`. Everything it writes stays under `work` (dcm2niix's
//! `TMPDIR` included); on return only `out/volume.nii.gz` is left (nothing on error).
//!
//! ## How dcm2niix is run
//! `dcm2niix -g i -z n -b n -f volume -o <work>/out <work>/dicom`, with an empty
//! environment (only `PATH`, and `TMPDIR=<work>/tmp`), stdin closed, stdout and stderr to
//! a file under `work`, in its own process group, killed (the whole group) on timeout.
//! - `-g i`: ignore `~/.dcm2nii.ini` (a defaults file must not change our flags);
//! - `-b n`: no BIDS JSON (it would hold institution, station, serial number);
//! - `-f volume`: fixed name (the default copies ProtocolName into the file name);
//! - `-z n`: uncompressed. We rewrite the file anyway to scrub its header, so compressing
//!   once here (flate2) is cheaper than dcm2niix's gzip followed by ours (0.3 s instead of
//!   1.7-2.8 s for the 256³ fixture), and `-z y` would run `pigz` through `/bin/sh`,
//!   i.e. grandchildren to chase on timeout.
//!
//! dcm2niix's output is parsed only for known warnings and never copied into an error:
//! it can echo header text.
//!
//! ## What is refused, and why (the defaults)
//! - no NIfTI at all → [`ConvertError::NoVolume`]; more than one (several series, echoes,
//!   `_ph`, `_i0000n` localizer planes, `a`/`b` suffixes) → [`ConvertError::SeveralVolumes`];
//! - an `_Eq_` output (dcm2niix's equalised copy of an irregularly spaced stack) or the
//!   warnings "Missing images", "Interslice distance varies", "slices not equidistant",
//!   "Unable to equalize", "Missing DICOMs", "image position not sequential" →
//!   [`ConvertError::MissingSlices`]. (dcm2niix v1.0.20220720 prints, for a dropped middle
//!   slice: `Warning: Interslice distance varies in this volume (incompatible with NIfTI
//!   format).`, `Warning: Missing images? Expected 255 images, but instance number
//!   (0020,0013) ranges from 1 to 256`, `Warning: Unable to rotate 3D volume: slices not
//!   equidistant: 1 != 2`, and writes `volume.nii` plus `volume_Eq_1.nii`.)
//!   Slices missing at either end of a stack leave no trace in DICOM; the coverage rule
//!   below catches the gross cases;
//! - "File not large enough to store image data" (a truncated file) →
//!   [`ConvertError::CorruptDicom`];
//! - more than one volume in time → [`ConvertError::FourD`]; a single 2D image →
//!   [`ConvertError::NotThreeD`];
//! - fewer than [`DEFAULT_MIN_SLICES`] (50) voxels along any axis →
//!   [`ConvertError::TooFewSlices`]: localizers (1-3 slices per plane), thin slabs and 2D
//!   stacks (20-30 thick slices) cannot give whole-brain volumes;
//! - any voxel edge above [`DEFAULT_MAX_VOXEL_MM`] (2.0 mm) → [`ConvertError::TooCoarse`]:
//!   cortex is 2-4 mm thick, and the segmentation model was trained on ~1 mm data;
//! - less than [`DEFAULT_MIN_EXTENT_MM`] (100 mm) of coverage along any axis →
//!   [`ConvertError::TooLittleCoverage`]: the adult brain measures about 140 × 170 × 120
//!   mm (L-R × A-P × S-I), so a field of view under 100 mm in any direction cannot hold
//!   it. With voxels ≤ 2 mm, 100 mm already implies ≥ 50 slices; the slice rule gives a
//!   clearer message for localizers;
//! - voxels coarser than [`DEFAULT_LOW_RES_VOXEL_MM`] (1.2 mm, the coarsest of the
//!   common 3D T1 protocols such as ADNI's 1.0-1.2 mm) up to 2.0 mm are accepted with
//!   [`ConvertWarning::LowResolution`].
//!   Comparisons allow 0.001 mm of rounding (DICOM decimal strings stored as f32).

mod process;
mod volume;

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use volumetry::deface::{Defacer, Defacing};

use process::*;
pub use process::{
    CORRUPT_MARKERS, MISSING_SLICE_MARKERS, UNSUPPORTED_MARKERS, classify_run, dcm2niix_version, parse_version,
};
use volume::*;
pub use volume::{Geometry, SCRUBBED_RANGES, check_volume, scrub_nifti};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_VOXEL_MM: f64 = 2.0;
pub const DEFAULT_LOW_RES_VOXEL_MM: f64 = 1.2;
pub const DEFAULT_MIN_SLICES: usize = 50;
pub const DEFAULT_MIN_EXTENT_MM: f64 = 100.0;
/// deid's own limit on entries is 20 000; a de-identified ZIP never comes near it.
pub const DEFAULT_MAX_FILES: usize = 20_000;
/// deid's own limit on the inflated total is 2 GiB.
pub const DEFAULT_MAX_EXTRACTED_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Rounding allowance for voxel sizes and extents (mm).
const MM_EPS: f64 = 1e-3;
/// How much of dcm2niix's output is read for warnings.
const MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;
/// The version query is instant; this only guards against a hung binary.
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);
/// The name of the result under `<work>/out/`.
pub const OUTPUT_NAME: &str = "volume.nii.gz";

#[derive(Debug, Clone, PartialEq)]
pub struct ConvertSettings {
    /// The dcm2niix binary: a path, or a name looked up in `PATH`.
    pub dcm2niix: PathBuf,
    /// Wall-clock limit for one dcm2niix run; the process group is killed after it.
    pub timeout: Duration,
    /// Refuse volumes with any voxel edge above this (mm).
    pub max_voxel_mm: f64,
    /// Warn ([`ConvertWarning::LowResolution`]) above this (mm).
    pub low_res_voxel_mm: f64,
    /// Refuse volumes with fewer voxels than this along any axis.
    pub min_slices: usize,
    /// Refuse volumes covering less than this along any axis (mm).
    pub min_extent_mm: f64,
    /// Refuse archives with more files than this.
    pub max_files: usize,
    /// Refuse archives that inflate to more than this many bytes.
    pub max_extracted_bytes: u64,
    /// gzip level of the result (0-9).
    pub gzip_level: u32,
}

impl Default for ConvertSettings {
    fn default() -> Self {
        ConvertSettings {
            dcm2niix: PathBuf::from("dcm2niix"),
            timeout: DEFAULT_TIMEOUT,
            max_voxel_mm: DEFAULT_MAX_VOXEL_MM,
            low_res_voxel_mm: DEFAULT_LOW_RES_VOXEL_MM,
            min_slices: DEFAULT_MIN_SLICES,
            min_extent_mm: DEFAULT_MIN_EXTENT_MM,
            max_files: DEFAULT_MAX_FILES,
            max_extracted_bytes: DEFAULT_MAX_EXTRACTED_BYTES,
            gzip_level: 6,
        }
    }
}

/// The converted volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// `<work>/out/volume.nii.gz`, header scrubbed.
    pub nifti: PathBuf,
    /// Voxels along i, j, k.
    pub dims: [usize; 3],
    /// Voxel edge lengths along i, j, k (mm).
    pub voxel_mm: [f64; 3],
    pub warnings: Vec<ConvertWarning>,
    /// Wall-clock time of the dcm2niix run.
    pub dcm2niix_ms: u64,
    /// The face removal applied to the result, when a defacer was given.
    pub defacing: Option<Defacing>,
}

/// Accepted, but worth telling the user.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum ConvertWarning {
    /// Some voxel edge is above `low_res_voxel_mm` (but within `max_voxel_mm`).
    LowResolution { voxel_mm: [f64; 3] },
}

impl ConvertWarning {
    pub fn code(&self) -> &'static str {
        match self {
            ConvertWarning::LowResolution { .. } => "low_resolution",
        }
    }
}

impl std::fmt::Display for ConvertWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConvertWarning::LowResolution { voxel_mm } => write!(
                f,
                "The scan's resolution is lower than usual for volumetry ({}); regional volumes are less precise.",
                mm3(voxel_mm)
            ),
        }
    }
}

/// Why a conversion failed. Messages are for the user; none holds dcm2niix output or
/// header text. [`ConvertError::is_input_problem`] says whether to refuse the scan.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("The DICOM converter (dcm2niix) is not installed or cannot be run on the server.")]
    Dcm2niixMissing,
    #[error("The DICOM converter (dcm2niix) did not report a version.")]
    Dcm2niixVersion,
    #[error("Converting the images took longer than {seconds} s and was stopped.")]
    Timeout { seconds: u64 },
    #[error("The DICOM converter (dcm2niix) stopped unexpectedly.")]
    Dcm2niixCrashed,
    #[error("No DICOM image in the upload could be converted to a volume.")]
    NoVolume,
    #[error(
        "The upload holds {0} image volumes (several series, echoes or image types); please upload a single 3D T1-weighted series."
    )]
    SeveralVolumes(usize),
    #[error("The series is a single 2D image, not a 3D volume of the head.")]
    NotThreeD,
    #[error(
        "The series holds {volumes} volumes over time (4D, such as fMRI or diffusion); please upload a 3D T1-weighted series."
    )]
    FourD { volumes: usize },
    #[error(
        "The volume has only {slices} slices along one direction; at least {min} are needed to cover the whole brain (a localizer or a partial slab cannot be used)."
    )]
    TooFewSlices { slices: usize, min: usize },
    #[error(
        "The volume covers only {} ({:.0} mm along its shortest direction); at least {min_mm:.0} mm in every direction are needed to cover the whole brain.",
        mm3(extent_mm),
        min3(extent_mm)
    )]
    TooLittleCoverage { extent_mm: [f64; 3], min_mm: f64 },
    #[error(
        "The voxels are too coarse ({}); at most {max_mm} mm in every direction is supported. Please upload a high-resolution 3D T1-weighted series.",
        mm3(voxel_mm)
    )]
    TooCoarse { voxel_mm: [f64; 3], max_mm: f64 },
    #[error("Slices are missing or irregularly spaced in this series; please upload the complete series.")]
    MissingSlices,
    #[error("One or more DICOM files are truncated or corrupt; please export the series again.")]
    CorruptDicom,
    #[error("The DICOM files use an encoding (transfer syntax) the converter cannot read.")]
    UnsupportedEncoding,
    #[error(
        "The images are colour or complex-valued (NIfTI datatype {datatype}); a greyscale T1-weighted series is needed."
    )]
    UnsupportedDataType { datatype: i16 },
    #[error("The volume's geometry (voxel size) is invalid.")]
    InvalidGeometry,
    #[error(
        "The converted volume cannot be used for segmentation (invalid voxel values, such as NaN, or an implausible size)."
    )]
    UnreadableVolume,
    #[error(
        "We could not find a brain in this image, so we cannot remove the face from it before storing it. Please upload a 3D T1-weighted series of the whole head."
    )]
    NoBrain,
    #[error("The DICOM converter could not convert this series (exit status {status}).")]
    ConversionFailed { status: i32 },
    #[error("The de-identified archive could not be read ({0}).")]
    BadArchive(&'static str),
    #[error("The upload is too large to convert ({0}).")]
    TooLarge(&'static str),
    #[error("The converter produced an unusable file ({0}).")]
    BadOutput(&'static str),
    #[error("Input/output error while converting ({op}): {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ConvertError {
    /// A stable code for logs, the database and the API.
    pub fn code(&self) -> &'static str {
        use ConvertError::*;
        match self {
            Dcm2niixMissing => "dcm2niix_missing",
            Dcm2niixVersion => "dcm2niix_version",
            Timeout { .. } => "convert_timeout",
            Dcm2niixCrashed => "dcm2niix_crashed",
            NoVolume => "no_volume",
            SeveralVolumes(_) => "several_volumes",
            NotThreeD => "not_3d",
            FourD { .. } => "four_d",
            TooFewSlices { .. } => "too_few_slices",
            TooLittleCoverage { .. } => "too_little_coverage",
            TooCoarse { .. } => "too_coarse",
            MissingSlices => "missing_slices",
            CorruptDicom => "corrupt_dicom",
            UnsupportedEncoding => "unsupported_encoding",
            UnsupportedDataType { .. } => "unsupported_datatype",
            InvalidGeometry => "invalid_geometry",
            UnreadableVolume => "unreadable_volume",
            NoBrain => "no_brain",
            ConversionFailed { .. } => "conversion_failed",
            BadArchive(_) => "bad_archive",
            TooLarge(_) => "archive_too_large",
            BadOutput(_) => "bad_output",
            Io { .. } => "convert_io",
        }
    }

    /// `true`: the scan itself is unusable (refuse it; the user must upload another).
    /// `false`: the server's side failed (missing/crashed/slow dcm2niix, I/O, an
    /// unreadable stored archive or dcm2niix output): retrying may succeed.
    ///
    /// dcm2niix exiting with an error we do not recognise ([`ConvertError::ConversionFailed`])
    /// counts as an input problem: it is deterministic, a retry gives the same result. A
    /// death by signal ([`ConvertError::Dcm2niixCrashed`]) does not: it may be the OOM killer.
    pub fn is_input_problem(&self) -> bool {
        use ConvertError::*;
        match self {
            NoVolume
            | SeveralVolumes(_)
            | NotThreeD
            | FourD { .. }
            | TooFewSlices { .. }
            | TooLittleCoverage { .. }
            | TooCoarse { .. }
            | MissingSlices
            | CorruptDicom
            | UnsupportedEncoding
            | UnsupportedDataType { .. }
            | InvalidGeometry
            | UnreadableVolume
            | NoBrain
            | ConversionFailed { .. }
            | TooLarge(_) => true,
            Dcm2niixMissing
            | Dcm2niixVersion
            | Timeout { .. }
            | Dcm2niixCrashed
            | BadArchive(_)
            | BadOutput(_)
            | Io { .. } => false,
        }
    }
}

fn mm3(v: &[f64; 3]) -> String {
    format!("{} × {} × {} mm", fmt_mm(v[0]), fmt_mm(v[1]), fmt_mm(v[2]))
}

fn fmt_mm(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() { "0".into() } else { s.to_string() }
}

fn min3(v: &[f64; 3]) -> f64 {
    v[0].min(v[1]).min(v[2])
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> ConvertError {
    move |source| ConvertError::Io { op, source }
}

/// Converts the de-identified ZIP `deid_zip` into `<work>/out/volume.nii.gz`, defaced by
/// `defacer` when given (the pipeline always gives one; the upload's dry run does not,
/// as its result is thrown away).
///
/// `work` is a private, empty directory owned by the caller (who removes it). Only
/// de-identified archives may be passed: dcm2niix copies header text into its outputs.
/// Blocking (runs a child process for up to `settings.timeout`): call it from
/// `spawn_blocking`.
pub fn convert(
    deid_zip: &Path,
    work: &Path,
    settings: &ConvertSettings,
    defacer: Option<&Defacer>,
) -> Result<Converted, ConvertError> {
    let mut scratch = Scratch { dirs: Vec::new() };
    let result = convert_in(deid_zip, work, settings, defacer, &mut scratch);
    // Keep only the result: extracted DICOM, logs and dcm2niix's temp dir go now,
    // `out/` too when there is no result.
    scratch.remove_all(result.is_ok());
    result
}

/// Directories this call created under `work`, removed when it ends.
struct Scratch {
    dirs: Vec<(PathBuf, bool)>,
}

impl Scratch {
    fn create(&mut self, path: PathBuf, keep_on_success: bool) -> Result<PathBuf, ConvertError> {
        fs::create_dir(&path).map_err(io_err("create a work folder"))?;
        self.dirs.push((path.clone(), keep_on_success));
        Ok(path)
    }

    fn remove(&mut self, path: &Path) {
        if let Some(i) = self.dirs.iter().position(|(p, _)| p == path) {
            let _ = fs::remove_dir_all(&self.dirs[i].0);
            self.dirs.remove(i);
        }
    }

    fn remove_all(&mut self, success: bool) {
        for (dir, keep_on_success) in self.dirs.drain(..) {
            if !(success && keep_on_success) {
                let _ = fs::remove_dir_all(dir);
            }
        }
    }
}

fn convert_in(
    deid_zip: &Path,
    work: &Path,
    settings: &ConvertSettings,
    defacer: Option<&Defacer>,
    scratch: &mut Scratch,
) -> Result<Converted, ConvertError> {
    let dicom = scratch.create(work.join("dicom"), false)?;
    let out = scratch.create(work.join("out"), true)?;
    let tmp = scratch.create(work.join("tmp"), false)?;

    let files = extract_zip(deid_zip, &dicom, settings)?;
    if files == 0 {
        return Err(ConvertError::NoVolume);
    }

    let log_path = tmp.join("dcm2niix.log");
    let run = run_dcm2niix(settings, &dicom, &out, &tmp, &log_path)?;
    scratch.remove(&dicom);
    let log = read_log(&log_path)?;
    let _ = fs::remove_file(&log_path);

    let names = nifti_outputs(&out)?;
    let chosen = classify_run(run.status.code(), &log, &names)?;
    let produced = out.join(&chosen);
    let target = out.join(OUTPUT_NAME);
    let (geometry, defacing) = finalize_nifti(&produced, &target, settings, defacer)?;
    if produced != target {
        let _ = fs::remove_file(&produced);
    }
    // Anything else dcm2niix left (it should leave nothing with these flags).
    for entry in fs::read_dir(&out).map_err(io_err("list the converter's output"))? {
        let entry = entry.map_err(io_err("list the converter's output"))?;
        if entry.path() != target {
            let _ = if entry.path().is_dir() {
                fs::remove_dir_all(entry.path())
            } else {
                fs::remove_file(entry.path())
            };
        }
    }
    Ok(Converted {
        nifti: target,
        dims: geometry.dims,
        voxel_mm: geometry.voxel_mm,
        warnings: geometry.warnings,
        dcm2niix_ms: run.elapsed.as_millis() as u64,
        defacing,
    })
}

/// Extracts every file entry of the ZIP into `dir` as `000001.dcm`, `000002.dcm`, … (entry
/// names are never used as paths). Returns the number of files.
pub fn extract_zip(zip_path: &Path, dir: &Path, settings: &ConvertSettings) -> Result<usize, ConvertError> {
    use zip::result::ZipError;
    let file = File::open(zip_path).map_err(io_err("open the de-identified archive"))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|_| ConvertError::BadArchive("not a readable ZIP archive"))?;
    if archive.len() > settings.max_files {
        return Err(ConvertError::TooLarge("too many files"));
    }
    let mut total: u64 = 0;
    let mut count = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| match e {
            ZipError::Io(source) => ConvertError::Io {
                op: "read the de-identified archive",
                source,
            },
            ZipError::UnsupportedArchive(_) | ZipError::CompressionMethodNotSupported(_) => {
                ConvertError::BadArchive("an entry is encrypted or uses an unsupported compression")
            }
            _ => ConvertError::BadArchive("an entry is damaged"),
        })?;
        if entry.is_dir() {
            continue;
        }
        count += 1;
        let path = dir.join(format!("{count:06}.dcm"));
        let mut out = BufWriter::new(File::create_new(&path).map_err(io_err("write an extracted file"))?);
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|_| ConvertError::BadArchive("an entry is damaged"))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > settings.max_extracted_bytes {
                return Err(ConvertError::TooLarge("too large when extracted"));
            }
            out.write_all(&buf[..n]).map_err(io_err("write an extracted file"))?;
        }
        out.flush().map_err(io_err("write an extracted file"))?;
    }
    Ok(count)
}
