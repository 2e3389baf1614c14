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


use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use volumetry::nifti::{self, Header};

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
    #[error("The converted volume cannot be used for segmentation (invalid voxel values, such as NaN, or an implausible size).")]
    UnreadableVolume,
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
            NoVolume | SeveralVolumes(_) | NotThreeD | FourD { .. } | TooFewSlices { .. } | TooLittleCoverage { .. }
            | TooCoarse { .. } | MissingSlices | CorruptDicom | UnsupportedEncoding | UnsupportedDataType { .. }
            | InvalidGeometry | UnreadableVolume | ConversionFailed { .. } | TooLarge(_) => true,
            Dcm2niixMissing | Dcm2niixVersion | Timeout { .. } | Dcm2niixCrashed | BadArchive(_) | BadOutput(_)
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

/// The dcm2niix version, e.g. `v1.0.20220720` (for the logs and the start-up check).
pub fn dcm2niix_version(bin: &Path) -> Result<String, ConvertError> {
    let mut cmd = Command::new(bin);
    cmd.arg("--version").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    sanitise_env(&mut cmd, None);
    let child = cmd.spawn().map_err(spawn_error)?;
    let mut guard = ChildGuard(Some(child));
    let (status, _) = wait_with_timeout(&mut guard, VERSION_TIMEOUT)?;
    let mut child = guard.0.take().expect("child present until reaped");
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = (&mut out).take(64 * 1024).read_to_string(&mut text);
    }
    // dcm2niix exits with 3 (kEXIT_REPORT_VERSION) after --version.
    if !matches!(status.code(), Some(0) | Some(3)) {
        return Err(ConvertError::Dcm2niixVersion);
    }
    parse_version(&text).ok_or(ConvertError::Dcm2niixVersion)
}

/// The first token shaped like `v1.0.20220720` in dcm2niix's `--version` output.
pub fn parse_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find(|t| {
            let rest = t.strip_prefix('v').unwrap_or("");
            rest.starts_with(|c: char| c.is_ascii_digit())
                && rest.contains('.')
                && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
}

/// Converts the de-identified ZIP `deid_zip` into `<work>/out/volume.nii.gz`.
///
/// `work` is a private, empty directory owned by the caller (who removes it). Only
/// de-identified archives may be passed: dcm2niix copies header text into its outputs.
/// Blocking (runs a child process for up to `settings.timeout`): call it from
/// `spawn_blocking`.
pub fn convert(deid_zip: &Path, work: &Path, settings: &ConvertSettings) -> Result<Converted, ConvertError> {
    let mut scratch = Scratch { dirs: Vec::new() };
    let result = convert_in(deid_zip, work, settings, &mut scratch);
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
    let geometry = finalize_nifti(&produced, &target, settings)?;
    if produced != target {
        let _ = fs::remove_file(&produced);
    }
    // Anything else dcm2niix left (it should leave nothing with these flags).
    for entry in fs::read_dir(&out).map_err(io_err("list the converter's output"))? {
        let entry = entry.map_err(io_err("list the converter's output"))?;
        if entry.path() != target {
            let _ = if entry.path().is_dir() { fs::remove_dir_all(entry.path()) } else { fs::remove_file(entry.path()) };
        }
    }
    Ok(Converted {
        nifti: target,
        dims: geometry.dims,
        voxel_mm: geometry.voxel_mm,
        warnings: geometry.warnings,
        dcm2niix_ms: run.elapsed.as_millis() as u64,
    })
}

/// Extracts every file entry of the ZIP into `dir` as `000001.dcm`, `000002.dcm`, … (entry
/// names are never used as paths). Returns the number of files.
pub fn extract_zip(zip_path: &Path, dir: &Path, settings: &ConvertSettings) -> Result<usize, ConvertError> {
    use zip::result::ZipError;
    let file = File::open(zip_path).map_err(io_err("open the de-identified archive"))?;
    let mut archive =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|_| ConvertError::BadArchive("not a readable ZIP archive"))?;
    if archive.len() > settings.max_files {
        return Err(ConvertError::TooLarge("too many files"));
    }
    let mut total: u64 = 0;
    let mut count = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| match e {
            ZipError::Io(source) => ConvertError::Io { op: "read the de-identified archive", source },
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
            let n = entry.read(&mut buf).map_err(|_| ConvertError::BadArchive("an entry is damaged"))?;
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

struct Run {
    status: ExitStatus,
    elapsed: Duration,
}

fn run_dcm2niix(
    settings: &ConvertSettings,
    dicom: &Path,
    out: &Path,
    tmp: &Path,
    log_path: &Path,
) -> Result<Run, ConvertError> {
    let log = File::create_new(log_path).map_err(io_err("create the converter's log"))?;
    let log2 = log.try_clone().map_err(io_err("create the converter's log"))?;
    let mut cmd = Command::new(&settings.dcm2niix);
    cmd.args(["-g", "i", "-z", "n", "-b", "n", "-f", "volume", "-o"])
        .arg(out)
        .arg(dicom)
        .current_dir(tmp)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    sanitise_env(&mut cmd, Some(tmp));
    let child = cmd.spawn().map_err(spawn_error)?;
    let mut guard = ChildGuard(Some(child));
    let (status, elapsed) = wait_with_timeout(&mut guard, settings.timeout)?;
    guard.0 = None;
    Ok(Run { status, elapsed })
}

/// An empty environment but `PATH` (and `TMPDIR` under `work`), in a new process group.
fn sanitise_env(cmd: &mut Command, tmp: Option<&Path>) {
    use std::os::unix::process::CommandExt;
    cmd.env_clear();
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()));
    if let Some(tmp) = tmp {
        cmd.env("TMPDIR", tmp);
    }
    cmd.process_group(0);
}

fn spawn_error(e: io::Error) -> ConvertError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ConvertError::Dcm2niixMissing,
        _ => ConvertError::Io { op: "start dcm2niix", source: e },
    }
}

/// Kills the child's process group when dropped with the child still unreaped (timeout,
/// error or panic).
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            kill_group(child);
        }
    }
}

/// SIGKILL to the child's process group (it leads one: `process_group(0)`), then to the
/// child itself in case `kill` is unavailable, then reap it. The group id cannot be
/// reused before the child is reaped, so the group signalled is ours.
fn kill_group(child: &mut Child) {
    let pgid = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls the child until it exits or `timeout` passes (then kills its group).
fn wait_with_timeout(guard: &mut ChildGuard, timeout: Duration) -> Result<(ExitStatus, Duration), ConvertError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let child = guard.0.as_mut().expect("child present until reaped");
        if let Some(status) = child.try_wait().map_err(io_err("wait for dcm2niix"))? {
            return Ok((status, started.elapsed()));
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            if let Some(mut child) = guard.0.take() {
                kill_group(&mut child);
            }
            return Err(ConvertError::Timeout { seconds: timeout.as_secs().max(1) });
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

fn read_log(path: &Path) -> Result<String, ConvertError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_LOG_BYTES).read_to_end(&mut bytes))
        .map_err(io_err("read the converter's log"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The NIfTI files dcm2niix wrote (names only), sorted.
fn nifti_outputs(out: &Path) -> Result<Vec<String>, ConvertError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(out).map_err(io_err("list the converter's output"))? {
        let entry = entry.map_err(io_err("list the converter's output"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// dcm2niix v1.0.20220720's messages that mean slices are missing or irregularly spaced.
pub const MISSING_SLICE_MARKERS: &[&str] = &[
    "Missing images",
    "Missing DICOMs",
    "Interslice distance varies",
    "slices not equidistant",
    "Unable to equalize",
    "image position not sequential",
];
/// … that mean a file is truncated.
pub const CORRUPT_MARKERS: &[&str] = &["not large enough to store"];
/// … that mean a transfer syntax it cannot decode.
pub const UNSUPPORTED_MARKERS: &[&str] = &["Unsupported transfer syntax"];

/// Decides from dcm2niix's exit code (`None`: killed by a signal), its output text and the
/// NIfTI names it wrote which single output to keep, or why the upload is refused.
pub fn classify_run(code: Option<i32>, log: &str, outputs: &[String]) -> Result<String, ConvertError> {
    let Some(code) = code else {
        return Err(ConvertError::Dcm2niixCrashed);
    };
    let has = |markers: &[&str]| markers.iter().any(|m| log.contains(m));
    if has(CORRUPT_MARKERS) {
        return Err(ConvertError::CorruptDicom);
    }
    if has(UNSUPPORTED_MARKERS) {
        return Err(ConvertError::UnsupportedEncoding);
    }
    // 10 = kEXIT_INCOMPLETE_VOLUMES_FOUND
    if code == 10 || has(MISSING_SLICE_MARKERS) || outputs.iter().any(|n| n.contains("_Eq_")) {
        return Err(ConvertError::MissingSlices);
    }
    match outputs {
        // 2 = kEXIT_NO_VALID_FILES_FOUND
        [] if code == 0 || code == 2 => Err(ConvertError::NoVolume),
        [] => Err(ConvertError::ConversionFailed { status: code }),
        [one] if code == 0 => Ok(one.clone()),
        [_] => Err(ConvertError::ConversionFailed { status: code }),
        many => Err(ConvertError::SeveralVolumes(many.len())),
    }
}

/// Geometry of an accepted volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    pub warnings: Vec<ConvertWarning>,
}

/// The usability rules on a parsed NIfTI header (see the module documentation).
pub fn check_volume(h: &Header, settings: &ConvertSettings) -> Result<Geometry, ConvertError> {
    let nd = h.dim[0];
    if !(1..=7).contains(&nd) {
        return Err(ConvertError::BadOutput("invalid dimension count"));
    }
    let nd = nd as usize;
    let mut sizes = [1usize; 7];
    for (i, size) in sizes.iter_mut().enumerate().take(nd) {
        let d = h.dim[i + 1];
        if d < 1 {
            return Err(ConvertError::BadOutput("invalid dimensions"));
        }
        *size = d as usize;
    }
    let volumes: usize = sizes[3..].iter().product();
    if volumes > 1 {
        return Err(ConvertError::FourD { volumes });
    }
    let dims = [sizes[0], sizes[1], sizes[2]];
    if dims.contains(&1) {
        return Err(ConvertError::NotThreeD);
    }
    let fewest = *dims.iter().min().expect("three dims");
    if fewest < settings.min_slices {
        return Err(ConvertError::TooFewSlices { slices: fewest, min: settings.min_slices });
    }
    // xyzt_units & 7: 1 metre, 2 mm, 3 µm; 0 (unknown) is taken as mm.
    let scale = match h.xyzt_units & 7 {
        1 => 1000.0,
        3 => 0.001,
        _ => 1.0,
    };
    let voxel_mm = [1, 2, 3].map(|i| (h.pixdim[i] as f64).abs() * scale);
    if voxel_mm.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return Err(ConvertError::InvalidGeometry);
    }
    if voxel_mm.iter().any(|&v| v > settings.max_voxel_mm + MM_EPS) {
        return Err(ConvertError::TooCoarse { voxel_mm, max_mm: settings.max_voxel_mm });
    }
    let extent_mm = [0, 1, 2].map(|i| dims[i] as f64 * voxel_mm[i]);
    if extent_mm.iter().any(|&e| e < settings.min_extent_mm - MM_EPS) {
        return Err(ConvertError::TooLittleCoverage { extent_mm, min_mm: settings.min_extent_mm });
    }
    let mut warnings = Vec::new();
    if voxel_mm.iter().any(|&v| v > settings.low_res_voxel_mm + MM_EPS) {
        warnings.push(ConvertWarning::LowResolution { voxel_mm });
    }
    Ok(Geometry { dims, voxel_mm, warnings })
}

/// Bytes per voxel of the scalar datatypes volumetry reads; `None` for colour, complex and
/// unknown types.
fn scalar_bytes(datatype: i16) -> Option<usize> {
    match datatype {
        2 | 256 => Some(1),
        4 | 512 => Some(2),
        8 | 768 | 16 => Some(4),
        64 | 1024 | 1280 => Some(8),
        _ => None,
    }
}

/// Header byte ranges blanked by [`scrub_nifti`]: ANALYZE `data_type` (4..14) and
/// `db_name` (14..32), `descrip` (148..228: dcm2niix writes TE and acquisition time),
/// `aux_file` (228..252: dcm2niix copies ImageComments), `intent_name` (328..344) and the
/// extension flag (348..352).
pub const SCRUBBED_RANGES: &[std::ops::Range<usize>] = &[4..14, 14..32, 148..228, 228..252, 328..344, 348..352];

/// Blanks the header's text fields and drops header extensions in an uncompressed
/// NIfTI-1 image held in `buf`: afterwards `vox_offset` is 352 and `buf[352..]` is exactly
/// the `voxel_bytes` of image data that followed the old `vox_offset`.
pub fn scrub_nifti(buf: &mut Vec<u8>, big_endian: bool, voxel_bytes: usize) -> Result<(), ConvertError> {
    if buf.len() < 352 {
        return Err(ConvertError::BadOutput("truncated header"));
    }
    let raw: [u8; 4] = buf[108..112].try_into().expect("4 bytes");
    let vox_offset = if big_endian { f32::from_be_bytes(raw) } else { f32::from_le_bytes(raw) };
    if !vox_offset.is_finite() || vox_offset < 352.0 || vox_offset.fract() != 0.0 {
        return Err(ConvertError::BadOutput("invalid vox_offset"));
    }
    let vox_offset = vox_offset as usize;
    let end = vox_offset.checked_add(voxel_bytes).ok_or(ConvertError::BadOutput("invalid size"))?;
    if buf.len() < end {
        return Err(ConvertError::BadOutput("fewer voxels than the header declares"));
    }
    buf.truncate(end);
    buf.drain(352..vox_offset);
    for range in SCRUBBED_RANGES {
        buf[range.clone()].fill(0);
    }
    let offset = if big_endian { 352f32.to_be_bytes() } else { 352f32.to_le_bytes() };
    buf[108..112].copy_from_slice(&offset);
    Ok(())
}

/// Reads dcm2niix's output, checks it, scrubs its header, verifies it with volumetry's
/// reader and writes it gzip-compressed to `target` (through a temporary name).
fn finalize_nifti(produced: &Path, target: &Path, settings: &ConvertSettings) -> Result<Geometry, ConvertError> {
    let file = File::open(produced).map_err(io_err("read the converted volume"))?;
    let gz = produced.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> =
        if gz { Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(BufReader::new(file)) };
    // Header first: a 4D series is refused before its voxels are read.
    let mut buf = vec![0u8; 348];
    reader.read_exact(&mut buf).map_err(|_| ConvertError::BadOutput("truncated header"))?;
    let (header, big_endian) = nifti::parse_header(&buf).map_err(|_| ConvertError::BadOutput("not a NIfTI-1 file"))?;
    let geometry = check_volume(&header, settings)?;
    let bytes_per_voxel =
        scalar_bytes(header.datatype).ok_or(ConvertError::UnsupportedDataType { datatype: header.datatype })?;
    let voxel_bytes = geometry.dims.iter().product::<usize>() * bytes_per_voxel;
    reader.read_to_end(&mut buf).map_err(|_| ConvertError::BadOutput("unreadable voxel data"))?;
    drop(reader);
    scrub_nifti(&mut buf, big_endian, voxel_bytes)?;
    // The reader the segmentation worker uses. Header, datatype and size are already
    // checked, so what it can still refuse is the data (NaN/infinite values, > 2^30 voxels).
    let volume = nifti::decode_f32(&buf).map_err(|_| ConvertError::UnreadableVolume)?;
    if volume.dims != geometry.dims {
        return Err(ConvertError::BadOutput("dimensions changed"));
    }
    drop(volume);

    let partial = target.with_extension("gz.partial");
    let written = (|| {
        let file = File::create_new(&partial)?;
        let mut gz = flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::new(settings.gzip_level.min(9)));
        gz.write_all(&buf)?;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&partial, target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(ConvertError::Io { op: "write the converted volume", source: e });
    }
    Ok(geometry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_token() {
        let text = "Chris Rorden's dcm2niiX version v1.0.20220720  (JP2:OpenJPEG) GCC12.2.0 x86-64 (64-bit Linux)\nv1.0.20220720\n";
        assert_eq!(parse_version(text).as_deref(), Some("v1.0.20220720"));
        assert_eq!(parse_version("no version here v. vx1"), None);
    }
}
