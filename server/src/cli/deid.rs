//! `neurovol deid INPUT.zip --out OUTPUT.zip [--report report.json] [--profile basic|seed]`
//!
//! The same de-identification the server applies to uploads, as a command. Output files
//! are written under a temporary name and renamed only on success, so a refused input
//! leaves nothing behind.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ::deid::{DeidError, Options, Profile, SeriesSelector};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProfileArg {
    /// DESIGN.md's list plus the DICOM PS3.15 Basic profile (retaining patient
    /// characteristics and full dates).
    Basic,
    /// Exactly DESIGN.md's list.
    Seed,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Basic => Profile::Basic,
            ProfileArg::Seed => Profile::Seed,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct DeidArgs {
    /// ZIP of DICOM files.
    pub input: PathBuf,
    /// De-identified ZIP to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write what was removed (keywords and counts, never values) as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "basic")]
    pub profile: ProfileArg,
    /// Which series (1-based, as listed by the error for multi-series archives).
    #[arg(long)]
    pub series: Option<usize>,
}

/// The one-line reason for a refused input, or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum DeidCliError {
    #[error("{0}")]
    Refused(#[from] DeidError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

pub fn run(args: &DeidArgs) -> Result<::deid::Outcome, DeidCliError> {
    let input = File::open(&args.input).map_err(|source| DeidCliError::Read {
        path: args.input.clone(),
        source,
    })?;
    let mut options = Options::new(rand::random());
    options.profile = args.profile.into();
    options.series = args.series.map(|n| SeriesSelector::Index(n.saturating_sub(1)));

    let outcome = write_atomically(&args.out, |w| {
        ::deid::deidentify_zip(BufReader::new(&input), w, &options)
    })
    .map_err(|e| match e {
        WriteError::Io(source) => DeidCliError::Write {
            path: args.out.clone(),
            source,
        },
        WriteError::Inner(e) => DeidCliError::Refused(e),
    })?;
    if let Some(report_path) = &args.report {
        let json = serde_json::json!({
            "report": outcome.report,
            "facts": outcome.facts,
            "series": outcome.series,
        });
        let result = write_atomically(report_path, |w| {
            serde_json::to_writer_pretty(&mut *w, &json).map_err(|e| std::io::Error::other(e.to_string()))?;
            w.write_all(b"\n")?;
            Ok::<_, std::io::Error>(())
        });
        if let Err(e) = result {
            // The pair is all or nothing.
            let _ = std::fs::remove_file(&args.out);
            return Err(match e {
                WriteError::Io(source) => DeidCliError::Write {
                    path: report_path.clone(),
                    source,
                },
                WriteError::Inner(source) => DeidCliError::Write {
                    path: report_path.clone(),
                    source,
                },
            });
        }
    }
    Ok(outcome)
}

enum WriteError<E> {
    Io(std::io::Error),
    Inner(E),
}

/// Writes through a temp file beside `path`, renamed into place only when `f` succeeds.
fn write_atomically<T, E>(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<&File>) -> Result<T, E>,
) -> Result<T, WriteError<E>> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".neurovol-{}.partial", hex::encode(rand::random::<[u8; 6]>())));
    let file = File::create(&tmp).map_err(WriteError::Io)?;
    let result = (|| {
        let mut w = BufWriter::new(&file);
        let value = f(&mut w).map_err(WriteError::Inner)?;
        w.flush().map_err(WriteError::Io)?;
        drop(w);
        file.sync_all().map_err(WriteError::Io)?;
        std::fs::rename(&tmp, path).map_err(WriteError::Io)?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
