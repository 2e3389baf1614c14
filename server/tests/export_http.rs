//! The account's export (`POST /account/export`) checked against what the account holds:
//! every file is in the manifest with its size and SHA-256 (and the manifest lists nothing
//! else), each scan's stored files are byte for byte the store's objects, the account's
//! facts and audit log are its own, and nothing of another account is in it. Runs the real
//! pipeline (local store, or s3s-fs with `NEUROVOL_TEST_S3=1`).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use common::account_kit::*;
use common::upload_kit::*;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Every entry of a ZIP: name → bytes.
fn entries(zip: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a readable ZIP");
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.insert(f.name().unwrap().to_string(), bytes);
    }
    out
}

fn stored(server: &common::TestServer, s3: Option<&common::s3::S3Server>, key: &str) -> Vec<u8> {
    let path = match s3 {
        Some(s) => s.root().join(common::s3::BUCKET).join(key),
        None => server.data_dir.join("objects").join(key),
    };
    std::fs::read(path).unwrap_or_else(|e| panic!("object {key}: {e}"))
}

#[tokio::test]
async fn the_export_holds_exactly_what_the_account_holds() {
    let s3 = optional_s3();
    let extra: Vec<(&'static str, String)> = s3.as_ref().map(|s| s.env()).unwrap_or_default();
    let env = pipeline_env(&extra);
    let server = common::TestServer::start(&as_refs(&env)).await;
    let db = server.db().await;
    let (mut a, a_email) = account(&server, "exporter").await;
    let (b, b_email) = account(&server, "bystander").await;
    let kept = upload_scan(&a, &small_head()).await;
    let second = upload_scan(&a, &small_head()).await;
    let b_scan = upload_scan(&b, &small_head()).await;
    for scan in [&kept, &second, &b_scan] {
        wait_done(&server, &db, scan, Duration::from_secs(600)).await;
    }
    let a_id = user_id(&db, &a_email).await;
    let b_id = user_id(&db, &b_email).await;

    // a download first, so the audit log has one
    let resp = a.get(&format!("/scans/{kept}/files/volume.nii.gz")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let downloaded = resp.bytes().await.unwrap().to_vec();

    let resp = a.post_form("/account/export", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", server.logs());
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header("content-type"), "application/zip");
    assert!(
        header("content-disposition").starts_with("attachment; filename=\"neurovol-export-"),
        "{}",
        header("content-disposition")
    );
    let length: usize = header("content-length").parse().unwrap();
    let zip = resp.bytes().await.unwrap().to_vec();
    assert_eq!(zip.len(), length);
    let files = entries(&zip);

    // the manifest: every other file, with its size and SHA-256, and nothing else
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["schema_version"], 1);
    let listed: BTreeMap<String, (u64, String)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                (f["bytes"].as_u64().unwrap(), f["sha256"].as_str().unwrap().to_string()),
            )
        })
        .collect();
    let mut in_zip: Vec<&String> = files.keys().filter(|k| *k != "manifest.json").collect();
    in_zip.sort();
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        in_zip,
        "the manifest lists exactly the other files"
    );
    for (path, (bytes, sha)) in &listed {
        assert_eq!(files[path].len() as u64, *bytes, "{path} size");
        assert_eq!(&hex::encode(Sha256::digest(&files[path])), sha, "{path} SHA-256");
    }

    // each scan's files, as the store holds them
    let object_files = [
        ("nifti_key", "volume.nii.gz"),
        ("labels_key", "labels.nii.gz"),
        ("volumes_key", "volumes.json"),
    ];
    for scan in [&kept, &second] {
        let keys = scan_keys(&db, scan).await;
        for (i, (_, name)) in object_files.iter().enumerate() {
            let entry = format!("scans/{scan}/{name}");
            assert!(
                // keys[0] is the archive's
                files[&entry] == stored(&server, s3.as_ref(), &keys[i + 1]),
                "{entry} equals the stored object"
            );
        }
        // the DICOM archive (its images show the face) is gone once converted
        assert!(!files.contains_key(&format!("scans/{scan}/dicom-deidentified.zip")));
        assert!(files[&format!("scans/{scan}/midline.png")].starts_with(b"\x89PNG\r\n\x1a\n"));
        let results: Value = serde_json::from_slice(&files[&format!("scans/{scan}/results.json")]).unwrap();
        // the 103 labels and FreeSurfer's four sums of them (volumetry::composite)
        assert_eq!(results["regions"].as_array().unwrap().len(), 107);
        let csv = String::from_utf8(files[&format!("scans/{scan}/regions.csv")].clone()).unwrap();
        assert!(csv.starts_with("region,label,volume_mm3,percentile,percentile_low,percentile_high,flag\n"));
        assert_eq!(csv.lines().count(), 108, "a header and 107 regions");
        assert!(csv.contains("\nSubCortGrayVol,0,"));
        assert!(csv.contains("Left-Hippocampus,"));
    }
    assert!(
        files[&format!("scans/{kept}/volume.nii.gz")] == downloaded,
        "the download and the export agree"
    );

    // the account's own facts and log
    let account_json: Value = serde_json::from_slice(&files["account.json"]).unwrap();
    assert_eq!(account_json["email"], a_email.as_str());
    assert_eq!(account_json["sign_in_methods"], serde_json::json!(["password"]));
    assert_eq!(
        account_json["sessions"].as_array().unwrap().len(),
        1,
        "the one signed-in session, by its dates"
    );
    let mut ids: Vec<&str> = account_json["scans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![kept.as_str(), second.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let audit: Value = serde_json::from_slice(&files["audit_log.json"]).unwrap();
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in ["account_created", "upload_accepted", "file_downloaded"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let readme = String::from_utf8(files["README.md"].clone()).unwrap();
    for needle in [
        "GDPR",
        "volume.nii.gz",
        "audit_log.json",
        "Why we hold it",
        "Where it is stored",
        "For how long",
    ] {
        assert!(readme.contains(needle), "README lacks {needle}");
    }

    // nothing of the other account, in any entry's name or bytes
    let mut b_needles = vec![b_email.clone(), b_id.clone(), b_scan.clone()];
    b_needles.extend(scan_keys(&db, &b_scan).await);
    let blobs: Vec<(String, Vec<u8>)> = files
        .iter()
        .flat_map(|(name, bytes)| {
            [
                (format!("name {name}"), name.clone().into_bytes()),
                (name.clone(), bytes.clone()),
            ]
        })
        .collect();
    let found = traces(&blobs, &b_needles);
    assert!(found.is_empty(), "another account's data in the export: {found:?}");

    // the export is in the log now, and nothing was left behind
    assert!(audit_kinds(&db, &a_id).await.contains(&"export_downloaded".to_string()));
    assert!(
        temp_files(&server).is_empty(),
        "temp files left: {:?}",
        temp_files(&server)
    );
}
