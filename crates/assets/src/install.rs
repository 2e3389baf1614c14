//! Filling a folder from the manifest on a machine that has nothing: [`install`] =
//! [`fetch`](crate::fetch) the pinned upstream files, then [`derive_missing`] the derived
//! `model.safetensors` + `arch.json` from the upstream TF.js files (see [`crate::derive`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::derive::{self, Derived, ModelNaming, TfjsModel};
use crate::{
    AssetError, Downloader, FetchReport, FileStatus, Manifest, ManifestFile, fetch, file_status, io_err,
    write_atomically,
};

/// What [`derive_missing`] did, by manifest path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeriveReport {
    /// Computed from the upstream files and written.
    pub derived: Vec<String>,
    /// Already there: a `model.safetensors` with the manifest's SHA-256; an `arch.json` that is
    /// the shipped one (the manifest's SHA-256) or exactly what would be derived.
    pub already_present: Vec<String>,
    /// Derived entries that are neither a `model.safetensors` nor an `arch.json`: this crate
    /// does not know how to make them.
    pub not_derivable: Vec<String>,
}

/// The derived files of one model folder and the upstream URLs they come from.
#[derive(Default)]
struct DerivedSet<'m> {
    safetensors: Option<&'m ManifestFile>,
    arch: Option<&'m ManifestFile>,
    from: BTreeSet<&'m str>,
}

impl DerivedSet<'_> {
    fn targets(&self) -> String {
        let paths: Vec<&str> = [self.safetensors, self.arch]
            .into_iter()
            .flatten()
            .map(|f| f.path.as_str())
            .collect();
        paths.join(" and ")
    }
}

/// Makes every missing derived file of the manifest in `dir` (the manifest's folder) from the
/// upstream files already there, which must be intact (their SHA-256 is checked first).
///
/// A derived `model.safetensors` is compared with the manifest's SHA-256 before anything is
/// written: on a mismatch nothing is written and the error names the file and both hashes.
/// A derived `arch.json` cannot be checked by hash (the shipped one carries descriptive text):
/// it is accepted when it is the shipped file, otherwise it is (re)written from the same
/// hash-pinned `model.json` as the weights, and its verification is structural (tests compare
/// it with the shipped one and load both into the engine). [`crate::verify`] compares bytes, so
/// it reports a derived `arch.json` as differing from the manifest; that is expected.
///
/// Files are written through a temporary name and renamed, so no partial file is ever left.
pub fn derive_missing(manifest: &Manifest, dir: &Path) -> Result<DeriveReport, AssetError> {
    let mut report = DeriveReport::default();
    let mut sets: BTreeMap<&str, DerivedSet> = BTreeMap::new();
    for f in &manifest.files {
        if f.upstream_url.is_some() || f.derived_from.is_empty() {
            continue;
        }
        let (folder, file) = f.path.rsplit_once('/').unwrap_or(("", f.path.as_str()));
        let set = sets.entry(folder).or_default();
        match file {
            "model.safetensors" => set.safetensors = Some(f),
            "arch.json" => set.arch = Some(f),
            _ => {
                report.not_derivable.push(f.path.clone());
                continue;
            }
        }
        set.from.extend(f.derived_from.iter().map(String::as_str));
    }

    for (folder, set) in &sets {
        let intact = |f: Option<&ManifestFile>| -> Result<bool, AssetError> {
            f.map_or(Ok(true), |f| Ok(file_status(f, &dir.join(&f.path))? == FileStatus::Ok))
        };
        let (weights_ok, arch_shipped) = (intact(set.safetensors)?, intact(set.arch)?);
        if weights_ok && arch_shipped {
            report.already_present.extend(
                [set.safetensors, set.arch]
                    .into_iter()
                    .flatten()
                    .map(|f| f.path.clone()),
            );
            continue;
        }
        let derived = derive_set(manifest, dir, folder, set)?;
        if let Some(f) = set.safetensors {
            if weights_ok {
                report.already_present.push(f.path.clone());
            } else {
                let actual = hex::encode(Sha256::digest(&derived.safetensors));
                if actual != f.sha256 {
                    return Err(AssetError::DerivedHashMismatch {
                        path: f.path.clone(),
                        expected: f.sha256.clone(),
                        actual,
                    });
                }
                write_atomically(&dir.join(&f.path), &derived.safetensors)?;
                report.derived.push(f.path.clone());
            }
        }
        if let Some(f) = set.arch {
            let dest = dir.join(&f.path);
            if arch_shipped || fs::read(&dest).is_ok_and(|b| b == derived.arch_json) {
                report.already_present.push(f.path.clone());
            } else {
                write_atomically(&dest, &derived.arch_json)?;
                report.derived.push(f.path.clone());
            }
        }
    }
    Ok(report)
}

/// Reads the set's intact upstream inputs and derives both files.
fn derive_set(manifest: &Manifest, dir: &Path, folder: &str, set: &DerivedSet) -> Result<Derived, AssetError> {
    let fail = |message: String| AssetError::Derive {
        path: set.targets(),
        message,
    };
    // every input must be a pinned upstream file of the manifest, present and intact
    let mut inputs = Vec::new();
    for url in &set.from {
        let input = manifest
            .files
            .iter()
            .find(|f| f.upstream_url.as_deref() == Some(*url))
            .ok_or_else(|| {
                AssetError::InvalidManifest(format!(
                    "{}: derived_from {url} is not an upstream file of the manifest",
                    set.targets()
                ))
            })?;
        match file_status(input, &dir.join(&input.path))? {
            FileStatus::Ok => inputs.push(input),
            FileStatus::Missing => {
                return Err(fail(format!(
                    "its upstream file {} is missing; fetch it first",
                    input.path
                )));
            }
            FileStatus::Mismatch { expected, actual } => {
                return Err(fail(format!(
                    "its upstream file {} has SHA-256 {actual}, the manifest expects {expected}; \
                     fetch it again",
                    input.path
                )));
            }
        }
    }
    let mut model_jsons = inputs
        .iter()
        .filter(|f| f.path.rsplit('/').next() == Some("model.json"));
    let (Some(model_json), None) = (model_jsons.next(), model_jsons.next()) else {
        return Err(fail("derived_from must name exactly one model.json".into()));
    };
    let read = |path: &str| {
        let full = dir.join(path);
        fs::read(&full).map_err(io_err(&full))
    };
    let model = TfjsModel::parse(&read(&model_json.path)?).map_err(|e| fail(format!("{}: {e}", model_json.path)))?;

    // the shards model.json names, each of which must be one of the hash-checked inputs
    let base = model_json.path.rsplit_once('/').map_or("", |(base, _)| base);
    let mut shards = Vec::new();
    for shard in model.shard_paths() {
        let path = if base.is_empty() {
            shard.to_string()
        } else {
            format!("{base}/{shard}")
        };
        if !inputs.iter().any(|f| f.path == path) {
            return Err(fail(format!(
                "{} names the weight file {shard:?}, which is not among the pinned inputs",
                model_json.path
            )));
        }
        shards.push(read(&path)?);
    }
    let source = model_json
        .upstream_url
        .as_deref()
        .and_then(derive::source_from_url)
        .ok_or_else(|| fail(format!("{}: unexpected upstream URL shape", model_json.path)))?;
    let name = folder.rsplit('/').next().unwrap_or(folder);
    let shard_refs: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
    model
        .derive(&shard_refs, ModelNaming { name, source: &source })
        .map_err(|e| fail(e.to_string()))
}

/// What happened to one manifest file in [`install`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Downloaded,
    AlreadyPresent,
    Derived,
    /// Neither downloadable nor derivable and not present: NeuroVol's own documents
    /// (`RECIPE.md`, `NOTES.md`, `validation.json`), which nothing loads at run time.
    Unavailable,
}

/// What [`install`] did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InstallReport {
    pub fetch: FetchReport,
    pub derive: DeriveReport,
}

impl InstallReport {
    /// The outcome for one manifest path (a path of no step is [`Outcome::Unavailable`]).
    pub fn outcome(&self, path: &str) -> Outcome {
        let has = |list: &[String]| list.iter().any(|p| p == path);
        if has(&self.fetch.downloaded) {
            Outcome::Downloaded
        } else if has(&self.derive.derived) {
            Outcome::Derived
        } else if has(&self.fetch.already_present) || has(&self.derive.already_present) {
            Outcome::AlreadyPresent
        } else {
            Outcome::Unavailable
        }
    }
}

/// Downloads what is missing ([`fetch`](crate::fetch), SHA-256 checked) and then derives what
/// is missing ([`derive_missing`]), so that `dir` ends up with every model the engine loads.
/// Stops at the first refusal; what was verified before it stays.
pub fn install(manifest: &Manifest, dir: &Path, downloader: &mut dyn Downloader) -> Result<InstallReport, AssetError> {
    let fetch = fetch(manifest, dir, downloader)?;
    let derive = derive_missing(manifest, dir)?;
    Ok(InstallReport { fetch, derive })
}
