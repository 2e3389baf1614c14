//! Issue 12 part 5: a machine without the assets folder downloads the pinned upstream files and
//! derives the engine's `model.safetensors` + `arch.json` from the TF.js files. Offline: the
//! "upstream" is the shared assets folder, read through a local [`Downloader`].
//!
//! The shared assets are found through `NEUROVOL_ASSETS` (default: `../shared` beside the
//! repository). Without them these tests skip, except the pinned manifest's own checks; with
//! `NEUROVOL_REQUIRE_ASSETS=1` (the test command sets it) a missing folder fails instead.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use assets::derive::{DeriveError, ModelNaming, TfjsModel, source_from_url};
use assets::{
    AssetError, FileStatus, MANIFEST_PATH, Manifest, ManifestFile, Outcome, derive_missing, install, pinned_manifest,
    verify,
};
use volumetry::{Model, ModelId};

/// The shared assets folder, or `None` (test skipped) unless assets are required.
fn assets_root() -> Option<PathBuf> {
    let dir = assets::assets_root_from_env()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join(MANIFEST_PATH).is_file() {
        return Some(dir);
    }
    if std::env::var("NEUROVOL_REQUIRE_ASSETS").is_ok_and(|v| v == "1") {
        panic!("shared assets not found at {} (set NEUROVOL_ASSETS)", dir.display());
    }
    eprintln!(
        "skipping: shared assets not found at {} (set NEUROVOL_ASSETS)",
        dir.display()
    );
    None
}

fn shared_models() -> Option<PathBuf> {
    assets_root().map(|root| root.join("models"))
}

fn entry<'m>(m: &'m Manifest, path: &str) -> &'m ManifestFile {
    m.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not in the manifest"))
}

/// Model folders whose `model.safetensors` the manifest lists as derived.
fn derived_models(m: &Manifest) -> Vec<String> {
    m.files
        .iter()
        .filter(|f| !f.derived_from.is_empty() && f.path.ends_with("/model.safetensors"))
        .map(|f| f.path.trim_end_matches("/model.safetensors").to_string())
        .collect()
}

/// Derives one model straight from the shared TF.js files through the public API.
fn derive_from_shared(models: &Path, m: &Manifest, model: &str) -> Result<assets::derive::Derived, DeriveError> {
    let json_entry = entry(m, &format!("{model}/model.json"));
    let tfjs = TfjsModel::parse(&fs::read(models.join(&json_entry.path)).unwrap())?;
    let shards: Vec<Vec<u8>> = tfjs
        .shard_paths()
        .iter()
        .map(|p| fs::read(models.join(model).join(p)).unwrap())
        .collect();
    let refs: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
    let source = source_from_url(json_entry.upstream_url.as_deref().unwrap()).unwrap();
    tfjs.derive(
        &refs,
        ModelNaming {
            name: model,
            source: &source,
        },
    )
}

/// Every file under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = vec![];
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// An "upstream" that serves each pinned URL from the shared assets folder.
fn local_upstream(m: &Manifest, models: &Path) -> impl FnMut(&str, &mut dyn Write) -> Result<(), String> + use<> {
    let by_url: Vec<(String, PathBuf)> = m
        .files
        .iter()
        .filter_map(|f| Some((f.upstream_url.clone()?, models.join(&f.path))))
        .collect();
    move |url: &str, sink: &mut dyn Write| {
        let (_, path) = by_url
            .iter()
            .find(|(u, _)| u == url)
            .ok_or_else(|| format!("404 {url}"))?;
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        sink.write_all(&bytes).map_err(|e| e.to_string())
    }
}

/// Copies one model's upstream TF.js files (model.json + shards) from the shared folder.
fn copy_upstream(m: &Manifest, models: &Path, dest: &Path, model: &str) {
    for f in &m.files {
        if f.upstream_url.is_some() && f.path.starts_with(&format!("{model}/")) {
            fs::create_dir_all(dest.join(model)).unwrap();
            fs::copy(models.join(&f.path), dest.join(&f.path)).unwrap();
        }
    }
}

/// A manifest restricted to one model's files.
fn one_model(m: &Manifest, model: &str) -> Manifest {
    let mut m = m.clone();
    m.files.retain(|f| f.path.starts_with(&format!("{model}/")));
    m
}

#[test]
fn pinned_manifest_is_valid_and_equals_the_shared_one() {
    let pinned = pinned_manifest().unwrap();
    // the derivation has inputs for every derived weight file, and what the server runs is there
    let derived = derived_models(&pinned);
    for model in ["model21_104class", "mindgrab"] {
        assert!(derived.iter().any(|d| d == model), "{model}");
    }
    for f in pinned.files.iter().filter(|f| !f.derived_from.is_empty()) {
        for url in &f.derived_from {
            assert!(
                pinned
                    .files
                    .iter()
                    .any(|g| g.upstream_url.as_deref() == Some(url.as_str())),
                "{}: {url} is not downloadable",
                f.path
            );
        }
    }
    let Some(root) = assets_root() else { return };
    let shared = fs::read_to_string(root.join(MANIFEST_PATH)).unwrap();
    assert!(
        shared == assets::PINNED_MANIFEST_JSON,
        "crates/assets/MANIFEST.json differs from {}: copy it again",
        root.join(MANIFEST_PATH).display()
    );
}

#[test]
fn derived_safetensors_are_byte_identical_to_the_shipped_ones() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    let derived = derived_models(&m);
    assert_eq!(derived.len(), 7, "{derived:?}");
    for model in &derived {
        let out = derive_from_shared(&models, &m, model).unwrap();
        let shipped = fs::read(models.join(model).join("model.safetensors")).unwrap();
        assert!(
            out.safetensors == shipped,
            "{model}: derived safetensors differs from the shipped file ({} vs {} bytes)",
            out.safetensors.len(),
            shipped.len()
        );
    }
}

#[test]
fn derived_arch_json_has_the_shipped_structure() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    // descriptive fields the derivation words its own way
    let descriptive = ["derived_by", "source", "flops_note"];
    for model in derived_models(&m) {
        let out = derive_from_shared(&models, &m, &model).unwrap();
        let derived: serde_json::Value = serde_json::from_slice(&out.arch_json).unwrap();
        let shipped: serde_json::Value =
            serde_json::from_slice(&fs::read(models.join(&model).join("arch.json")).unwrap()).unwrap();
        for (key, value) in derived.as_object().unwrap() {
            if descriptive.contains(&key.as_str()) || key == "layers" {
                continue;
            }
            assert_eq!(value, &shipped[key], "{model}: {key}");
        }
        let (dl, sl) = (
            derived["layers"].as_array().unwrap(),
            shipped["layers"].as_array().unwrap(),
        );
        assert_eq!(dl.len(), sl.len(), "{model}: layer count");
        for (d, s) in dl.iter().zip(sl) {
            for (key, value) in d.as_object().unwrap() {
                if key == "norm" && !value.is_null() {
                    // the shipped norm adds descriptive text; kind and eps are what counts
                    assert_eq!(value["kind"], s["norm"]["kind"], "{model} {d}");
                    assert_eq!(value["eps"], s["norm"]["eps"], "{model} {d}");
                } else {
                    assert_eq!(value, &s[key], "{model}: layer {} {key}", d["index"]);
                }
            }
        }
    }
}

/// Compares two loaded models layer by layer (volumetry's `Layer` has no `PartialEq`).
fn assert_same_model(a: &Model, b: &Model, what: &str) {
    assert_eq!(
        (&a.id, &a.name, &a.labels, a.flops_per_voxel),
        (&b.id, &b.name, &b.labels, b.flops_per_voxel),
        "{what}"
    );
    assert_eq!(a.layers.len(), b.layers.len(), "{what}");
    for (n, (x, y)) in a.layers.iter().zip(&b.layers).enumerate() {
        assert_eq!(
            (x.cin, x.cout, x.kernel, x.dilation, x.instance_norm_eps, x.activation),
            (y.cin, y.cout, y.kernel, y.dilation, y.instance_norm_eps, y.activation),
            "{what}: layer {n}"
        );
        assert!(x.weight == y.weight && x.bias == y.bias, "{what}: layer {n} weights");
    }
}

#[test]
fn derived_arch_json_loads_into_the_same_layers() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for id in ModelId::ALL {
        let model = id.folder();
        let out = derive_from_shared(&models, &m, model).unwrap();
        let dir = tmp.path().join(model);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("arch.json"), &out.arch_json).unwrap();
        fs::write(dir.join("model.safetensors"), &out.safetensors).unwrap();
        fs::copy(models.join(model).join("colormap.json"), dir.join("colormap.json")).unwrap();
        let derived = Model::load_dir(&dir).unwrap();
        let shipped = Model::load_dir(models.join(model)).unwrap();
        assert_same_model(&derived, &shipped, model);
    }
}

#[test]
fn a_truncated_weight_file_is_refused() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();

    // the pure derivation names the file and both lengths
    let tfjs = TfjsModel::parse(&fs::read(models.join("mindgrab/model.json")).unwrap()).unwrap();
    let bin = fs::read(models.join("mindgrab/model.bin")).unwrap();
    let naming = ModelNaming {
        name: "mindgrab",
        source: "github.com/neuroneural/brainchop public/models/mindgrab",
    };
    let err = tfjs.derive(&[&bin[..bin.len() - 4]], naming).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DeriveError::Weights(_)), "{msg}");
    assert!(
        msg.contains("model.bin holds 584944 bytes") && msg.contains("the weightsManifest needs 584948"),
        "{msg}"
    );
    // one byte too many is refused as well
    let mut longer = bin.clone();
    longer.push(0);
    assert!(tfjs.derive(&[&longer], naming).is_err());

    // in a folder: the altered upstream file is refused by its hash before any derivation,
    // and nothing is written
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_upstream(&m, &models, dir, "mindgrab");
    fs::write(dir.join("mindgrab/model.bin"), &bin[..bin.len() - 4]).unwrap();
    let before = listing(dir);
    let err = derive_missing(&one_model(&m, "mindgrab"), dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, AssetError::Derive { .. }), "{msg}");
    assert!(
        msg.contains("mindgrab/model.safetensors")
            && msg.contains("mindgrab/model.bin")
            && msg.contains(&entry(&m, "mindgrab/model.bin").sha256),
        "{msg}"
    );
    assert_eq!(listing(dir), before);
}

#[test]
fn a_derived_file_with_another_hash_is_refused_and_not_written() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    let model = "model21_104class";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_upstream(&m, &models, dir, model);
    let before = listing(dir);

    // 1. the manifest pins another hash for the derived weights
    let mut pinned_other = one_model(&m, model);
    let target = format!("{model}/model.safetensors");
    let wrong = "0".repeat(64);
    pinned_other.files.iter_mut().find(|f| f.path == target).unwrap().sha256 = wrong.clone();
    let err = derive_missing(&pinned_other, dir).unwrap_err();
    let msg = err.to_string();
    match &err {
        AssetError::DerivedHashMismatch { path, expected, actual } => {
            assert_eq!(path, &target);
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &entry(&m, &target).sha256);
        }
        other => panic!("expected a derived hash mismatch, got {other:?}"),
    }
    assert!(msg.contains(&target) && msg.contains(&wrong), "{msg}");
    assert_eq!(listing(dir), before, "nothing written, no partial file");

    // 2. an upstream weight file with one value changed, pinned as such: the weights derived
    // from it are not the manifest's, so they are refused too
    let bin_path = format!("{model}/group1-shard1of1.bin");
    let mut bin = fs::read(dir.join(&bin_path)).unwrap();
    bin[1000] ^= 0x01;
    fs::write(dir.join(&bin_path), &bin).unwrap();
    let mut changed_upstream = one_model(&m, model);
    changed_upstream
        .files
        .iter_mut()
        .find(|f| f.path == bin_path)
        .unwrap()
        .sha256 = assets::sha256_file(&dir.join(&bin_path)).unwrap();
    let before = listing(dir);
    let err = derive_missing(&changed_upstream, dir).unwrap_err();
    assert!(
        matches!(err, AssetError::DerivedHashMismatch { ref path, .. } if *path == target),
        "{err}"
    );
    assert_eq!(listing(dir), before);
}

#[test]
fn missing_upstream_files_are_named() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    copy_upstream(&m, &models, tmp.path(), "mindgrab");
    fs::remove_file(tmp.path().join("mindgrab/model.json")).unwrap();
    let err = derive_missing(&one_model(&m, "mindgrab"), tmp.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("its upstream file mindgrab/model.json is missing"),
        "{err}"
    );
}

#[test]
fn fetch_and_derive_gives_a_folder_the_engine_loads() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("models");
    let mut upstream = local_upstream(&m, &models);

    let report = install(&m, &dest, &mut upstream).unwrap();
    for f in &m.files {
        let expected = if f.upstream_url.is_some() {
            Outcome::Downloaded
        } else if !f.derived_from.is_empty() {
            Outcome::Derived
        } else {
            Outcome::Unavailable // NeuroVol's own documents
        };
        assert_eq!(report.outcome(&f.path), expected, "{}", f.path);
    }
    assert!(report.derive.not_derivable.is_empty());

    // every file is intact by hash except the derived arch.json files (checked structurally
    // above) and the documents nobody can download
    for (path, status) in verify(&m, &dest).unwrap().files {
        match report.outcome(&path) {
            Outcome::Unavailable => assert_eq!(status, FileStatus::Missing, "{path}"),
            _ if path.ends_with("/arch.json") => {
                assert!(matches!(status, FileStatus::Mismatch { .. }), "{path}")
            }
            _ => assert_eq!(status, FileStatus::Ok, "{path}"),
        }
    }
    assert!(
        !listing(&dest).iter().any(|p| p.ends_with(".part")),
        "{:?}",
        listing(&dest)
    );

    // the engine loads every model it knows from the new folder, with the shipped layers
    for id in ModelId::ALL {
        let fresh = Model::load(tmp.path(), id).unwrap();
        let shipped = Model::load_dir(models.join(id.folder())).unwrap();
        assert_same_model(&fresh, &shipped, id.folder());
    }

    // a second run downloads and derives nothing
    let mut no_network =
        |url: &str, _: &mut dyn Write| -> Result<(), String> { Err(format!("unexpected download of {url}")) };
    let again = install(&m, &dest, &mut no_network).unwrap();
    assert!(again.fetch.downloaded.is_empty() && again.derive.derived.is_empty());
    for f in &m.files {
        let expected = if f.upstream_url.is_none() && f.derived_from.is_empty() {
            Outcome::Unavailable
        } else {
            Outcome::AlreadyPresent
        };
        assert_eq!(again.outcome(&f.path), expected, "{}", f.path);
    }

    // a damaged derived arch.json is written again; the weights are left alone
    let arch = dest.join("mindgrab/arch.json");
    fs::write(&arch, b"{}").unwrap();
    let repaired = derive_missing(&m, &dest).unwrap();
    assert_eq!(repaired.derived, ["mindgrab/arch.json"]);
    Model::load(tmp.path(), ModelId::Mindgrab).unwrap();
}

#[test]
fn the_shipped_arch_json_is_accepted_as_is() {
    let Some(models) = shared_models() else {
        return;
    };
    let m = pinned_manifest().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_upstream(&m, &models, dir, "mindgrab");
    fs::copy(models.join("mindgrab/arch.json"), dir.join("mindgrab/arch.json")).unwrap();
    let report = derive_missing(&one_model(&m, "mindgrab"), dir).unwrap();
    assert_eq!(report.derived, ["mindgrab/model.safetensors"]);
    assert_eq!(report.already_present, ["mindgrab/arch.json"]);
    assert_eq!(
        fs::read(dir.join("mindgrab/arch.json")).unwrap(),
        fs::read(models.join("mindgrab/arch.json")).unwrap()
    );
}
