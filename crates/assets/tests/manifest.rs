//! Issue 4 item 7: the real manifest verifies the shared model files, and a fetch refuses (and
//! deletes) any download whose SHA-256 differs, tested with local files only.
//!
//! The shared assets are found through `NEUROVOL_ASSETS` (default: `../shared` beside the
//! repository, as in CI); a missing folder fails rather than skips.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use assets::{AssetError, FileStatus, MANIFEST_PATH, Manifest, fetch, verify};

fn assets_root() -> PathBuf {
    let dir = assets::assets_root_from_env()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join(MANIFEST_PATH).is_file(),
        "shared assets not found at {} (set NEUROVOL_ASSETS)",
        dir.display()
    );
    dir
}

fn real_manifest() -> Manifest {
    Manifest::load(&assets_root().join(MANIFEST_PATH)).unwrap()
}

/// A manifest with a few small upstream files and one derived file of the real manifest.
fn small_manifest() -> Manifest {
    let mut m = real_manifest();
    let keep = [
        "model18cls/colormap.json",
        "mindgrab/colormap.json",
        "model11_gw_ae/labels.json",
        "LICENSE-brainchop.txt",
        "model5_gw_ae/arch.json",
    ];
    m.files.retain(|f| keep.contains(&f.path.as_str()));
    assert_eq!(m.files.len(), keep.len());
    m
}

/// An "upstream" served from a local folder: URL → file (copied from the shared assets,
/// optionally tampered), recording every URL asked for.
struct LocalMirror {
    by_url: BTreeMap<String, PathBuf>,
    requested: Vec<String>,
}

impl LocalMirror {
    fn new(manifest: &Manifest, dir: &Path) -> LocalMirror {
        let models = assets_root().join("models");
        let mut by_url = BTreeMap::new();
        for (i, f) in manifest.files.iter().enumerate() {
            if let Some(url) = &f.upstream_url {
                let local = dir.join(format!("{i}"));
                fs::copy(models.join(&f.path), &local).unwrap();
                by_url.insert(url.clone(), local);
            }
        }
        LocalMirror {
            by_url,
            requested: vec![],
        }
    }

    fn file_for(&self, manifest: &Manifest, path: &str) -> PathBuf {
        let url = manifest
            .files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.upstream_url.clone())
            .unwrap();
        self.by_url[&url].clone()
    }
}

impl assets::Downloader for LocalMirror {
    fn download(&mut self, url: &str, sink: &mut dyn Write) -> Result<(), String> {
        self.requested.push(url.to_string());
        let path = self.by_url.get(url).ok_or_else(|| format!("404 {url}"))?;
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        // in pieces, like a network body
        for chunk in bytes.chunks(50) {
            sink.write_all(chunk).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".part") {
            out.push(name);
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn real_manifest_verifies_shared_models() {
    let m = real_manifest();
    assert_eq!(m.files.len(), 41);
    assert_eq!(m.upstream_commit, "4c87885f3a2a8835e260d521dcec922b58d91d41");
    // every weight file the engine loads is pinned
    for model in ["mindgrab", "model18cls", "model21_104class", "model30chan50cls"] {
        for file in ["model.safetensors", "arch.json"] {
            assert!(
                m.files.iter().any(|f| f.path == format!("{model}/{file}")),
                "{model}/{file}"
            );
        }
    }
    let report = verify(&m, &assets_root().join("models")).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems().collect::<Vec<_>>());
}

#[test]
fn fetch_downloads_verifies_and_is_idempotent() {
    let m = small_manifest();
    let tmp = tempfile::tempdir().unwrap();
    let (mirror_dir, dest) = (tmp.path().join("mirror"), tmp.path().join("models"));
    fs::create_dir_all(&mirror_dir).unwrap();
    let mut mirror = LocalMirror::new(&m, &mirror_dir);

    let report = fetch(&m, &dest, &mut mirror).unwrap();
    assert_eq!(report.downloaded.len(), 4);
    assert!(report.already_present.is_empty());
    // the derived arch.json has no upstream URL: reported, not invented
    assert_eq!(report.not_downloadable, ["model5_gw_ae/arch.json"]);
    let v = verify(&m, &dest).unwrap();
    assert_eq!(
        v.problems().map(|(p, s)| (p.as_str(), s.clone())).collect::<Vec<_>>(),
        [("model5_gw_ae/arch.json", FileStatus::Missing)]
    );
    assert!(leftovers(&dest).is_empty());

    // second run: nothing downloaded again
    mirror.requested.clear();
    let again = fetch(&m, &dest, &mut mirror).unwrap();
    assert!(again.downloaded.is_empty() && mirror.requested.is_empty());
    assert_eq!(again.already_present.len(), 4);
}

#[test]
fn fetch_refuses_tampered_download_and_deletes_it() {
    let m = small_manifest();
    let tmp = tempfile::tempdir().unwrap();
    let (mirror_dir, dest) = (tmp.path().join("mirror"), tmp.path().join("models"));
    fs::create_dir_all(&mirror_dir).unwrap();
    let mut mirror = LocalMirror::new(&m, &mirror_dir);

    // flip one byte of the upstream copy of mindgrab/colormap.json (same size, different hash)
    let victim = "mindgrab/colormap.json";
    let tampered = mirror.file_for(&m, victim);
    let mut bytes = fs::read(&tampered).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&tampered, &bytes).unwrap();
    let tampered_sha = assets::sha256_file(&tampered).unwrap();
    let expected_sha = m.files.iter().find(|f| f.path == victim).unwrap().sha256.clone();

    let err = fetch(&m, &dest, &mut mirror).unwrap_err();
    match &err {
        AssetError::HashMismatch {
            path,
            expected,
            actual,
            url,
        } => {
            assert_eq!(path, victim);
            assert_eq!(expected, &expected_sha);
            assert_eq!(actual, &tampered_sha);
            assert!(url.ends_with("/public/models/mindgrab/colormap.json"));
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    // the message names the file and both hashes
    let msg = err.to_string();
    assert!(
        msg.contains(victim) && msg.contains(&expected_sha) && msg.contains(&tampered_sha),
        "{msg}"
    );
    // refused: neither the file nor its temporary download is left
    assert!(!dest.join(victim).exists());
    assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    assert_eq!(
        verify(&m, &dest)
            .unwrap()
            .files
            .iter()
            .find(|(p, _)| p == victim)
            .unwrap()
            .1,
        FileStatus::Missing
    );

    // a corrected upstream then fetches fine, and only what is missing is downloaded
    fs::copy(assets_root().join("models").join(victim), &tampered).unwrap();
    let report = fetch(&m, &dest, &mut mirror).unwrap();
    assert!(report.downloaded.contains(&victim.to_string()));
    assert_eq!(verify(&m, &dest).unwrap().problems().count(), 1); // only the derived file
}

#[test]
fn tampered_local_file_is_reported_then_replaced() {
    let m = small_manifest();
    let tmp = tempfile::tempdir().unwrap();
    let (mirror_dir, dest) = (tmp.path().join("mirror"), tmp.path().join("models"));
    fs::create_dir_all(&mirror_dir).unwrap();
    let mut mirror = LocalMirror::new(&m, &mirror_dir);
    fetch(&m, &dest, &mut mirror).unwrap();

    let victim = "LICENSE-brainchop.txt";
    fs::write(dest.join(victim), b"not the licence").unwrap();
    let status = verify(&m, &dest)
        .unwrap()
        .files
        .into_iter()
        .find(|(p, _)| p == victim)
        .unwrap()
        .1;
    assert!(
        matches!(status, FileStatus::Mismatch { ref actual, .. } if *actual == assets::sha256_file(&dest.join(victim)).unwrap())
    );

    let report = fetch(&m, &dest, &mut mirror).unwrap();
    assert_eq!(report.downloaded, [victim]);
    assert_eq!(
        assets::sha256_file(&dest.join(victim)).unwrap(),
        m.files.iter().find(|f| f.path == victim).unwrap().sha256
    );
}

#[test]
fn oversized_and_failed_downloads_are_refused() {
    let mut m = small_manifest();
    m.files.retain(|f| f.path == "model18cls/colormap.json");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("models");

    // a body longer than the manifest's size is cut off and refused
    let mut endless = |_: &str, sink: &mut dyn Write| -> Result<(), String> {
        loop {
            sink.write_all(&[b'x'; 4096]).map_err(|e| e.to_string())?;
        }
    };
    let err = fetch(&m, &dest, &mut endless).unwrap_err();
    assert!(
        matches!(err, AssetError::TooLarge { ref path, expected_bytes: 608, .. } if path == "model18cls/colormap.json"),
        "{err}"
    );
    assert!(walk(&dest).is_empty(), "{:?}", walk(&dest));

    // a downloader error is passed on with the file's name, and the partial file is deleted
    let mut failing = |_: &str, sink: &mut dyn Write| -> Result<(), String> {
        sink.write_all(b"partial").map_err(|e| e.to_string())?;
        Err("connection reset".into())
    };
    let err = fetch(&m, &dest, &mut failing).unwrap_err();
    assert!(matches!(err, AssetError::Download { ref message, .. } if message == "connection reset"));
    assert!(err.to_string().contains("model18cls/colormap.json"));
    assert!(walk(&dest).is_empty(), "{:?}", walk(&dest));
}

#[test]
fn unsafe_manifests_are_refused() {
    let entry = |path: &str, sha: &str, url: &str| {
        format!(
            r#"{{"upstream_repo":"r","upstream_commit":"c","upstream_license":"l","files":[{{"path":{path:?},"sha256":{sha:?},"bytes":1,"kind":"k","upstream_url":{url:?}}}]}}"#
        )
    };
    let sha = "a".repeat(64);
    let url = "https://example.org/x";
    assert!(Manifest::from_json(&entry("ok/file.bin", &sha, url)).is_ok());
    // upper-case hashes are accepted and normalised
    let m = Manifest::from_json(&entry("ok/file.bin", &"A".repeat(64), url)).unwrap();
    assert_eq!(m.files[0].sha256, sha);
    for path in ["../escape", "a/../../b", "/etc/passwd", "a//b", "./a", "a\\b", ""] {
        assert!(
            matches!(
                Manifest::from_json(&entry(path, &sha, url)),
                Err(AssetError::InvalidManifest(_))
            ),
            "{path:?}"
        );
    }
    for bad_sha in ["abc", &"g".repeat(64)] {
        assert!(Manifest::from_json(&entry("a", bad_sha, url)).is_err(), "{bad_sha}");
    }
    assert!(Manifest::from_json(&entry("a", &sha, "http://example.org/x")).is_err());
    assert!(matches!(Manifest::from_json("{"), Err(AssetError::Json(_))));
    let twice = r#"{"upstream_repo":"r","upstream_commit":"c","upstream_license":"l","files":[
        {"path":"a","sha256":"SHA","bytes":1,"kind":"k"},{"path":"a","sha256":"SHA","bytes":1,"kind":"k"}]}"#
        .replace("SHA", &sha);
    assert!(Manifest::from_json(&twice).is_err());
}
