//! Running dcm2niix: a clean environment, its own process group, a timeout, and what its
//! log and outputs say (never copied into an error: it can echo header text).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The dcm2niix version, e.g. `v1.0.20220720` (for the logs and the start-up check).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait_with_timeout, or killed by the guard"
)]
pub fn dcm2niix_version(bin: &Path) -> Result<String, ConvertError> {
    let mut cmd = Command::new(bin);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
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

pub(super) struct Run {
    pub(super) status: ExitStatus,
    pub(super) elapsed: Duration,
}

pub(super) fn run_dcm2niix(
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
pub(super) fn sanitise_env(cmd: &mut Command, tmp: Option<&Path>) {
    use std::os::unix::process::CommandExt;
    cmd.env_clear();
    cmd.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    if let Some(tmp) = tmp {
        cmd.env("TMPDIR", tmp);
    }
    cmd.process_group(0);
}

pub(super) fn spawn_error(e: io::Error) -> ConvertError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => ConvertError::Dcm2niixMissing,
        _ => ConvertError::Io {
            op: "start dcm2niix",
            source: e,
        },
    }
}

/// Kills the child's process group when dropped with the child still unreaped (timeout,
/// error or panic).
pub(super) struct ChildGuard(Option<Child>);

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
pub(super) fn kill_group(child: &mut Child) {
    let pgid = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls the child until it exits or `timeout` passes (then kills its group).
pub(super) fn wait_with_timeout(
    guard: &mut ChildGuard,
    timeout: Duration,
) -> Result<(ExitStatus, Duration), ConvertError> {
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
            return Err(ConvertError::Timeout {
                seconds: timeout.as_secs().max(1),
            });
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

pub(super) fn read_log(path: &Path) -> Result<String, ConvertError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_LOG_BYTES).read_to_end(&mut bytes))
        .map_err(io_err("read the converter's log"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The NIfTI files dcm2niix wrote (names only), sorted.
pub(super) fn nifti_outputs(out: &Path) -> Result<Vec<String>, ConvertError> {
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
