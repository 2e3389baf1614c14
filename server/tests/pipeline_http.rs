//! The processing pipeline through the real `neurovol serve` (uploads over HTTP, real
//! dcm2niix, the real local worker, SQLite or PostgreSQL, the local store or s3s-fs).
//!
//! * the PHI fixture from upload to scored volumes; the stored NIfTI's voxels equal
//!   dcm2niix's on the clean fixture; no injected value anywhere afterwards;
//! * `kill -9` during conversion and during segmentation: the job finishes exactly once;
//! * the S3 server stopped for 30 s mid-job: the job retries and completes;
//! * a failed scan is retried by the user and completes;
//! * refused inputs leave no row, no object, no temp file;
//! * two server processes on one PostgreSQL share 20 queued scans, no step run twice.
//!
//! Segmentation runs without mindgrab (`NEUROVOL_SEGMENT_BRAIN_MASK=0`, half the CPU time).
//! Fault tests use a "small head" derived from the clean fixture: the same 256-file series
//! with the image zeroed outside a 32³ cube, so the segmentation engine (which only computes
//! inside the head's bounding box) takes seconds. Store: local, or s3s-fs with
//! `NEUROVOL_TEST_S3=1` (scripts/test.sh sets it for the PostgreSQL run).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::account_kit::{as_refs, optional_s3, pipeline_env, upload_scan, upload_with};
use common::s3::{BUCKET, S3Server, s3s_fs_or_skip};
use common::upload_kit::*;
use common::{Browser, TestServer, temp_dir};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

async fn scan_status(db: &sqlx::AnyPool, scan: &str) -> String {
    sqlx::query("SELECT status FROM scans WHERE id = $1")
        .bind(scan)
        .fetch_one(db)
        .await
        .unwrap()
        .get::<String, _>("status")
}

/// Polls until the scan's status is one of `want` (panics with the server logs on timeout
/// or on an unexpected failure).
async fn wait_for(server: &TestServer, db: &sqlx::AnyPool, scan: &str, want: &[&str], timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let st = scan_status(db, scan).await;
        if want.contains(&st.as_str()) {
            return st;
        }
        if st == "failed" {
            let reason: Option<String> = sqlx::query("SELECT failure_reason FROM scans WHERE id = $1")
                .bind(scan)
                .fetch_one(db)
                .await
                .unwrap()
                .get("failure_reason");
            panic!(
                "scan failed ({reason:?}) while waiting for {want:?}; log:\n{}",
                server.logs()
            );
        }
        assert!(
            Instant::now() < until,
            "scan still {st} after {timeout:?} (wanted {want:?}); log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (step, outcome, owner, started_ms, finished_ms) of every step run of a scan.
async fn runs(db: &sqlx::AnyPool, scan: &str) -> Vec<(String, Option<String>, String, i64, Option<i64>)> {
    sqlx::query(
        "SELECT step, outcome, owner, started_ms, finished_ms FROM job_runs WHERE scan_id = $1 ORDER BY started_ms",
    )
    .bind(scan)
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get("step"),
            r.get("outcome"),
            r.get("owner"),
            r.get("started_ms"),
            r.get("finished_ms"),
        )
    })
    .collect()
}

/// Every step completed exactly once.
async fn assert_each_step_once(db: &sqlx::AnyPool, scan: &str) {
    let runs = runs(db, scan).await;
    for step in ["convert", "segment", "score"] {
        let ok = runs
            .iter()
            .filter(|r| r.0 == step && r.1.as_deref() == Some("ok"))
            .count();
        assert_eq!(ok, 1, "step {step} completed {ok} times: {runs:?}");
    }
    let regions: i64 = sqlx::query("SELECT COUNT(*) AS n FROM scan_regions WHERE scan_id = $1")
        .bind(scan)
        .fetch_one(db)
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        regions as usize,
        103 + volumetry::composite::COMPOSITES.len(),
        "model21_104class's 103 regions and FreeSurfer's sums of them, each stored once"
    );
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// NIfTI-1 dims (as stored) and voxel bytes.
fn nifti_voxels(nii: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(
        i32::from_le_bytes(nii[0..4].try_into().unwrap()),
        348,
        "NIfTI-1, little endian"
    );
    let vox_offset = f32::from_le_bytes(nii[108..112].try_into().unwrap()) as usize;
    (nii[40..56].to_vec(), nii[vox_offset..].to_vec())
}

/// dcm2niix on the clean fixture, as the reference for the stored volume.
fn reference_nifti() -> Vec<u8> {
    let dir = temp_dir("reference");
    let zip = dir.join("clean.zip");
    std::fs::write(&zip, fixture("t1_mprage_sag_clean.zip")).unwrap();
    let src = dir.join("dicom");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let st = std::process::Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let st = std::process::Command::new("dcm2niix")
        .args(["-z", "n", "-b", "n", "-f", "ref", "-o"])
        .arg(&out)
        .arg(&src)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let nii = std::fs::read(out.join("ref.nii")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    nii
}

/// Bytes of every stored thing: files of the data dir and the S3 root (ZIPs inflated,
/// gzip decompressed), every text value of every table, and the server's logs.
async fn everything_kept(
    server: &TestServer,
    s3: Option<&S3Server>,
    db: &sqlx::AnyPool,
    logs: &[String],
) -> Vec<(String, Vec<u8>)> {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut files = files_under(&server.data_dir);
    if let Some(s3) = s3 {
        files.extend(files_under(&s3.root()));
    }
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        if bytes.starts_with(b"PK\x03\x04") {
            let out = std::process::Command::new("unzip")
                .arg("-p")
                .arg(&f)
                .output()
                .expect("unzip installed");
            assert!(out.status.success(), "object is a readable ZIP");
            blobs.push((format!("{} (inflated)", f.display()), out.stdout));
        }
        if bytes.starts_with(&[0x1f, 0x8b]) {
            blobs.push((format!("{} (gunzipped)", f.display()), gunzip(&bytes)));
        }
        blobs.push((
            format!("file name {}", f.display()),
            f.display().to_string().into_bytes(),
        ));
        blobs.push((f.display().to_string(), bytes));
    }
    // every table's text (the kit's list covers the privacy tables too)
    blobs.extend(common::account_kit::database_text(db).await);
    for (i, l) in logs.iter().enumerate() {
        blobs.push((format!("server log {i}"), l.clone().into_bytes()));
    }
    blobs
}

#[tokio::test]
async fn phi_scan_goes_from_upload_to_scored_volumes_and_nothing_identifying_is_kept() {
    let s3 = optional_s3();
    let extra: Vec<(&'static str, String)> = s3.as_ref().map(|s| s.env()).unwrap_or_default();
    let env = pipeline_env(&extra);
    let server = TestServer::start(&as_refs(&env)).await;
    let db = server.db().await;
    let b = signed_in(&server).await;
    let t0 = Instant::now();
    let scan = upload_scan(&b, &fixture("t1_mprage_sag_phi.zip")).await;
    wait_for(&server, &db, &scan, &["done"], Duration::from_secs(900)).await;
    eprintln!("PHI fixture: upload to done in {:.1} s", t0.elapsed().as_secs_f64());
    assert_each_step_once(&db, &scan).await;

    // the stored NIfTI = dcm2niix on the clean fixture, defaced (voxel for voxel): the
    // worker fetched this object through its signed URL; no other copy of the head exists
    let row = sqlx::query(
        "SELECT nifti_key, labels_key, volumes_key, object_key, result_json, age_years, sex, conversion_json, archive_deleted \
         FROM scans WHERE id = $1",
    )
    .bind(&scan)
    .fetch_one(&db)
    .await
    .unwrap();
    let key = |k: &str| row.get::<String, _>(k);
    let object_path = |k: &str| match &s3 {
        Some(s) => s.root().join(BUCKET).join(k),
        None => server.data_dir.join("objects").join(k),
    };
    let stored_gz = std::fs::read(object_path(&key("nifti_key"))).expect("stored NIfTI");
    let stored = gunzip(&stored_gz);
    let (dims, _) = nifti_voxels(&stored);
    let (ref_dims, _) = nifti_voxels(&reference_nifti());
    assert_eq!(dims, ref_dims);
    let stored_volume = volumetry::nifti::decode_f32(&stored).unwrap();
    let mut defaced = volumetry::nifti::decode_f32(&reference_nifti()).unwrap();
    let defacer =
        volumetry::deface::Defacer::load(&volumetry::assets_dir(), volumetry::deface::MaskGrid::Coarse).unwrap();
    let defacing = defacer.deface(&mut defaced).unwrap();
    assert!(
        defacing.removed_voxels > 1_000_000,
        "the face and neck went: {defacing:?}"
    );
    assert!(
        stored_volume.data == defaced.data,
        "stored voxels differ from dcm2niix on the clean fixture, defaced"
    );
    let conversion: Value = serde_json::from_str(&key("conversion_json")).unwrap();
    assert_eq!(
        serde_json::from_value::<volumetry::deface::Defacing>(conversion["defacing"].clone())
            .unwrap()
            .plane,
        defacing.plane,
        "the scan records the plane it was cut with"
    );
    // the DICOM archive (its pixels show the face) was deleted once the volume was stored
    assert_eq!(row.get::<i64, _>("archive_deleted"), 1);
    assert!(!object_path(&key("object_key")).exists(), "no archive kept");
    for k in ["labels_key", "volumes_key"] {
        assert!(object_path(&key(k)).is_file(), "{k} stored");
    }
    // exactly these three objects, nothing else
    let n_objects = match &s3 {
        Some(s) => s.objects().len(),
        None => objects(&server).len(),
    };
    assert_eq!(n_objects, 3, "NIfTI, labels, volumes");
    // the person's download is the stored (defaced) volume; the picture shows it
    let mut b = b;
    let download = b.get(&format!("/scans/{scan}/files/volume.nii.gz")).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(
        download.bytes().await.unwrap() == stored_gz,
        "the download is the stored volume"
    );
    let picture = b.get(&format!("/scans/{scan}/files/midline.png")).await;
    assert_eq!(picture.status(), StatusCode::OK);
    assert_eq!(picture.headers()["content-type"], "image/png");
    let png = picture.bytes().await.unwrap();
    assert!(
        png == volumetry::preview::mid_sagittal_png(&defaced).unwrap(),
        "the picture is of the defaced volume"
    );
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    std::fs::write(artefacts.join("pipeline-t1-midline.png"), &png).unwrap();
    assert!(
        b.get(&format!("/scans/{scan}/files/dicom-deidentified.zip"))
            .await
            .status()
            == StatusCode::NOT_FOUND,
        "no archive to download"
    );
    // every file of the finished scan downloads for its owner; another account gets "not
    // found" for the page and each of them, as for a scan that does not exist
    let mut other = signed_in(&server).await;
    assert_eq!(
        other.get(&format!("/scans/{scan}")).await.status(),
        StatusCode::NOT_FOUND
    );
    let mut colours = Value::Null;
    for file in app::scans_api::ScanFile::ALL {
        let path = format!("/scans/{scan}/files/{}", file.file_name());
        let own = b.get(&path).await;
        let expected = if file == app::scans_api::ScanFile::Archive {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(own.status(), expected, "{path} for its owner");
        assert_eq!(
            other.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path} for another account"
        );
        match file {
            app::scans_api::ScanFile::NormalLimits => {
                let csv = own.text().await.unwrap();
                assert!(csv.starts_with("region,sex,age_years,p1,p5,p25,p50,p75,p95,p99\n"));
                assert!(csv.contains(&format!("\nLeft-Hippocampus,{},", row.get::<String, _>("sex"))));
            }
            app::scans_api::ScanFile::LabelColours => colours = own.json().await.unwrap(),
            app::scans_api::ScanFile::LabelLut => {
                let lut = own.text().await.unwrap();
                assert!(
                    lut.lines()
                        .any(|l| l.split_whitespace().nth(1) == Some("Left-Hippocampus"))
                );
            }
            _ => {}
        }
    }
    // the viewer: short-lived URLs of the two volumes and the same colours, for the owner;
    // each URL serves the stored file to its owner only, and only as signed
    let viewer = b.get(&format!("/scans/{scan}/viewer.json")).await;
    assert_eq!(viewer.status(), StatusCode::OK);
    let viewer: Value = viewer.json().await.unwrap();
    assert_eq!(viewer["colours"], colours, "the viewer's colours are the download's");
    assert_eq!(
        other.get(&format!("/scans/{scan}/viewer.json")).await.status(),
        StatusCode::NOT_FOUND
    );
    for (field, stored) in [
        ("volume", stored_gz.clone()),
        ("labels", std::fs::read(object_path(&key("labels_key"))).unwrap()),
    ] {
        let url = viewer[field].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&format!("/scans/{scan}/view/{field}.nii.gz?exp=")),
            "{url}"
        );
        let own = b.get(&url).await;
        assert_eq!(own.status(), StatusCode::OK, "{field}");
        assert!(
            own.bytes().await.unwrap() == stored,
            "the viewer's {field} is the stored one"
        );
        assert_eq!(
            other.get(&url).await.status(),
            StatusCode::NOT_FOUND,
            "{field} for another account"
        );
        let unsigned = url.split_once('?').unwrap().0;
        assert_eq!(
            b.get(unsigned).await.status(),
            StatusCode::NOT_FOUND,
            "{field} unsigned"
        );
        let exp = viewer["expires_at"].as_u64().unwrap();
        let later = url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
        assert_eq!(
            b.get(&later).await.status(),
            StatusCode::NOT_FOUND,
            "{field} with its expiry moved"
        );
    }
    // the label NIfTI's voxel counts, named by the colour table, are the results' voxel
    // counts (beside each, the partial-volume-corrected volume the percentile is computed on)
    let labels =
        volumetry::nifti::decode_f32(&gunzip(&std::fs::read(object_path(&key("labels_key"))).unwrap())).unwrap();
    let voxel_mm3 = labels.header.voxel_volume_mm3();
    let mut counts = vec![0u64; 256];
    for v in &labels.data {
        counts[*v as usize] += 1;
    }
    let report_now: Value = serde_json::from_str(&key("result_json")).unwrap();
    let (mut compared, mut corrected_differs) = (0, 0);
    let (mut composites, colour_table) = (0, colours["labels"].as_array().unwrap());
    for region in report_now["regions"].as_array().unwrap() {
        let name = region["name"].as_str().unwrap();
        if let Some(composite) = volumetry::composite::Composite::named(name) {
            // a sum of labels: its parts' voxel counts added up
            let parts: f64 = colour_table
                .iter()
                .filter(|l| composite.includes(l["name"].as_str().unwrap()))
                .map(|l| counts[l["value"].as_u64().unwrap() as usize] as f64 * voxel_mm3)
                .sum();
            assert!(
                (parts - region["volume_mm3"].as_f64().unwrap()).abs() <= 1e-6 * parts,
                "{name}: {parts} vs {region}"
            );
            composites += 1;
            continue;
        }
        let value = colours["labels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{name} in the colour table"))["value"]
            .as_u64()
            .unwrap() as usize;
        let counted = counts[value] as f64 * voxel_mm3;
        let reported = region["counted_mm3"].as_f64().unwrap();
        assert!(
            (counted - reported).abs() <= 1e-6 * reported.max(1.0),
            "{name}: {counted} vs {reported}"
        );
        let corrected = region["volume_mm3"].as_f64().unwrap();
        if reported > 1000.0 {
            assert!(
                (0.8..1.25).contains(&(corrected / reported)),
                "{name}: corrected {corrected} vs counted {reported}"
            );
        }
        corrected_differs += usize::from((corrected - reported).abs() > 1e-6);
        compared += 1;
    }
    assert!(compared > 100, "{compared} regions compared");
    assert_eq!(composites, volumetry::composite::COMPOSITES.len());
    assert!(corrected_differs > 100, "the corrected volumes are not the counts");

    // the report: percentiles for modelled regions at the fixture's age and sex
    let report: Value = serde_json::from_str(&key("result_json")).unwrap();
    assert_eq!(report["age_years"], row.get::<Option<i64>, _>("age_years").unwrap());
    assert_eq!(report["sex"], row.get::<String, _>("sex"));
    let region = |name: &str| report_region(&report, name);
    let hippo = region("Left-Hippocampus");
    assert!(hippo["volume_mm3"].as_f64().unwrap() > 1000.0, "{hippo}");
    // (without a brain mask, as here, upstream's labels), a grade, the calibration used; a
    // percentile with its band where our method measures as FreeSurfer does, else the
    // reason in words
    assert_eq!(report["labelling"], "upstream");
    assert!(
        matches!(report["grade"].as_str(), Some("A" | "B")),
        "{}",
        report["grade"]
    );
    assert_eq!(report["calibration"], "none — braincharts training-site average");
    let ventricle = region("Left-Lateral-Ventricle");
    let p = ventricle["percentile"].as_f64().expect("a percentile");
    let band = ventricle["percentile_band"].as_array().expect("a band");
    assert!(
        band[0].as_f64().unwrap() <= p && p <= band[1].as_f64().unwrap(),
        "{ventricle}"
    );
    assert!(hippo["percentile"].is_null(), "{hippo}");
    assert_eq!(hippo["no_percentile"], "method_biased");
    assert!(hippo["no_percentile_reason"].as_str().unwrap().contains("FreeSurfer"));
    let stored_band: (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_low, percentile_high FROM scan_regions WHERE scan_id = $1 AND name = 'Left-Lateral-Ventricle'",
    )
    .bind(&scan)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((stored_band.0, stored_band.1), (band[0].as_f64(), band[1].as_f64()));
    let page = b.get(&format!("/scans/{scan}")).await.text().await.unwrap();
    assert!(
        page.contains(r#"data-status="done""#) && page.contains("Left-Hippocampus"),
        "results on the scan page"
    );

    // nothing identifying in the data dir, the object store, the database or the logs
    let canaries = canaries("t1_mprage_sag_phi.manifest.json");
    let blobs = everything_kept(&server, s3.as_ref(), &db, &[server.logs()]).await;
    assert!(
        blobs.iter().any(|(w, _)| w.contains("gunzipped")),
        "the NIfTIs were searched"
    );
    if let Some(found) = find_identifying(&blobs, &canaries) {
        panic!("{found}");
    }
    assert!(
        temp_files(&server).is_empty(),
        "no temp files left: {:?}",
        temp_files(&server)
    );
}

/// A dcm2niix that waits before converting, so a test can kill the server mid-conversion.
fn slow_dcm2niix(dir: &Path, secs: u32) -> PathBuf {
    let p = dir.join("slow-dcm2niix");
    std::fs::write(&p, format!("#!/bin/sh\nsleep {secs}\nexec dcm2niix \"$@\"\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn kill_9_during_conversion_and_during_segmentation_finishes_exactly_once() {
    let tools = temp_dir("tools");
    let dcm2niix = slow_dcm2niix(&tools, 3);
    let env = pipeline_env(&[("NEUROVOL_DCM2NIIX", dcm2niix.display().to_string())]);
    let env = as_refs(&env);
    let mut first = TestServer::start(&env).await;
    let db = first.db().await;
    let b = signed_in(&first).await;
    let scan = upload_scan(&b, &small_head()).await;

    // 1. kill -9 while dcm2niix runs for the job
    let until = Instant::now() + Duration::from_secs(60);
    while !runs(&db, &scan).await.iter().any(|r| r.0 == "convert" && r.1.is_none()) {
        assert!(Instant::now() < until, "conversion did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    first.kill9();
    assert_eq!(
        scan_status(&db, &scan).await,
        "deidentified",
        "killed before the conversion finished"
    );

    // 2. restarted: the lease expires, the job is converted again; kill -9 mid-segmentation
    let mut second = TestServer::start_on(first.data_dir.clone(), first.database_url.clone(), &env, false).await;
    wait_for(&second, &db, &scan, &["segmenting"], Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill9();
    assert_eq!(
        scan_status(&db, &scan).await,
        "segmenting",
        "killed before the segmentation finished"
    );

    // 3. restarted again: the lost segmentation is submitted again and the scan completes
    let third = TestServer::start_on(first.data_dir.clone(), first.database_url.clone(), &env, false).await;
    wait_for(&third, &db, &scan, &["done"], Duration::from_secs(300)).await;
    assert_each_step_once(&db, &scan).await;
    let all = runs(&db, &scan).await;
    let crashed: Vec<_> = all.iter().filter(|r| r.1.is_none()).map(|r| r.0.as_str()).collect();
    assert_eq!(
        crashed,
        ["convert", "segment"],
        "one run of each killed step never finished: {all:?}"
    );

    // retention: the archive was discarded; exactly NIfTI, labels and volumes remain
    let row = sqlx::query("SELECT archive_deleted, nifti_key, labels_key, volumes_key FROM scans WHERE id = $1")
        .bind(&scan)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("archive_deleted"), 1);
    let mut want: Vec<String> = ["nifti_key", "labels_key", "volumes_key"]
        .iter()
        .map(|k| row.get::<String, _>(*k))
        .collect();
    want.sort();
    let mut have: Vec<String> = objects(&third)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(have, want, "no orphan or duplicate objects");
    let left = temp_files(&third);
    assert!(
        left.is_empty(),
        "{} temp files left, e.g. {:?}",
        left.len(),
        left.first()
    );
    drop(third);
    drop(second);
    drop(first);
    let _ = std::fs::remove_dir_all(&tools);
}

#[tokio::test]
async fn the_object_store_down_for_30_s_mid_job_is_retried() {
    let Some(bin) = s3s_fs_or_skip("the_object_store_down_for_30_s_mid_job_is_retried") else {
        return;
    };
    let mut s3 = S3Server::start(bin, temp_dir("s3"));
    let mut extra = s3.env();
    extra.push(("NEUROVOL_JOB_MAX_ATTEMPTS", "20".into()));
    let env = pipeline_env(&extra);
    let server = TestServer::start(&as_refs(&env)).await;
    let db = server.db().await;
    let b = signed_in(&server).await;
    let scan = upload_scan(&b, &small_head()).await;
    wait_for(
        &server,
        &db,
        &scan,
        &["converted", "stored", "segmenting"],
        Duration::from_secs(120),
    )
    .await;
    s3.stop();
    tokio::time::sleep(Duration::from_secs(30)).await;
    s3.spawn();
    wait_for(&server, &db, &scan, &["done"], Duration::from_secs(300)).await;
    assert_each_step_once(&db, &scan).await;
    let all = runs(&db, &scan).await;
    assert!(
        all.iter().any(|r| r.1.as_deref() == Some("retry")),
        "the outage caused retries: {all:?}"
    );
    assert_eq!(
        s3.objects().len(),
        3,
        "NIfTI, labels, volumes (the archive went once converted); no duplicates"
    );
    assert!(
        temp_files(&server).is_empty(),
        "no temp files left: {:?}",
        temp_files(&server)
    );
}

#[tokio::test]
async fn a_failed_scan_says_why_and_the_user_can_retry_it() {
    // a worker that exits at once: every segmentation attempt fails, then the scan fails
    let broken = pipeline_env(&[
        ("NEUROVOL_WORKER_BIN", "/bin/false".into()),
        ("NEUROVOL_JOB_MAX_ATTEMPTS", "2".into()),
    ]);
    let mut first = TestServer::start(&as_refs(&broken)).await;
    let db = first.db().await;
    let mut b = signed_in(&first).await;
    let scan = upload_scan(&b, &small_head()).await;
    let until = Instant::now() + Duration::from_secs(240);
    while scan_status(&db, &scan).await != "failed" {
        assert!(Instant::now() < until, "scan did not fail; log:\n{}", first.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let page = b.get(&format!("/scans/{scan}")).await.text().await.unwrap();
    assert!(
        page.contains(r#"data-testid="scan-failure""#) && page.contains(r#"data-testid="retry""#),
        "{page}"
    );
    first.kill9();

    // the service is back: Retry (a form post with the CSRF token) completes the scan
    let good = pipeline_env(&[]);
    let second = TestServer::start_on(
        first.data_dir.clone(),
        first.database_url.clone(),
        &as_refs(&good),
        false,
    )
    .await;
    let mut b2 = Browser::new(&second.url);
    b2.cookies = b.cookies.clone();
    let token = csrf(&b2);
    let resp = b2
        .post_form(&format!("/scans/{scan}/retry"), &[("csrf_token", &token)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{}", second.logs());
    wait_for(&second, &db, &scan, &["done"], Duration::from_secs(300)).await;
    let ok_segments = runs(&db, &scan)
        .await
        .iter()
        .filter(|r| r.0 == "segment" && r.1.as_deref() == Some("ok"))
        .count();
    assert_eq!(ok_segments, 1);
    drop(second);
    drop(first);
}

#[tokio::test]
async fn a_scan_waiting_for_the_segmentation_service_says_so_in_plain_words() {
    // a worker that exits at once, and a long back-off: the scan waits between attempts
    let env = pipeline_env(&[
        ("NEUROVOL_WORKER_BIN", "/bin/false".into()),
        ("NEUROVOL_JOB_BACKOFF_SECS", "120".into()),
    ]);
    let server = TestServer::start(&as_refs(&env)).await;
    let db = server.db().await;
    let mut b = signed_in(&server).await;
    let scan = upload_scan(&b, &small_head()).await;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let attempts: Option<i64> = sqlx::query("SELECT attempts FROM jobs WHERE scan_id = $1 AND step = 'segment'")
            .bind(&scan)
            .fetch_optional(&db)
            .await
            .unwrap()
            .map(|r| r.get("attempts"));
        if attempts.is_some_and(|a| a > 0) {
            break;
        }
        assert!(
            Instant::now() < until,
            "no segmentation attempt; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let page = b.get(&format!("/scans/{scan}")).await.text().await.unwrap();
    assert!(page.contains(r#"data-testid="scan-retrying""#), "{page}");
    assert!(
        page.contains("Waiting for the segmentation service") && page.contains("We retry automatically"),
        "{page}"
    );
    // the technical reason stays in the log
    assert!(!page.contains("is starting"), "{page}");
    assert!(
        server.logs().contains("the segmentation service is starting"),
        "{}",
        server.logs()
    );
    assert_eq!(scan_status(&db, &scan).await, "stored");
}

#[tokio::test]
async fn refused_inputs_say_why_and_leave_nothing() {
    let server = TestServer::start(&[]).await;
    let db = server.db().await;
    let b = signed_in(&server).await;
    // a localizer-like stack of 10 slices; a series with its middle slice missing
    for (bytes, codes) in [
        (
            clean_subset(|i| (100..110).contains(&i)),
            &["too_few_slices", "too_little_coverage"][..],
        ),
        (clean_subset(|i| i != 128), &["missing_slices"][..]),
    ] {
        let (st, v) = upload_with(&b, &bytes).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(codes.contains(&v["code"].as_str().unwrap_or("")), "{v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.len() > 20),
            "a specific message: {v}"
        );
    }
    for table in ["scans", "jobs", "job_runs", "scan_regions"] {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
            .fetch_one(&db)
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 0, "no rows in {table}");
    }
    assert!(objects(&server).is_empty(), "no objects");
    assert!(
        temp_files(&server).is_empty(),
        "no temp files: {:?}",
        temp_files(&server)
    );
}

#[tokio::test]
async fn two_processes_on_one_postgres_share_20_scans_without_running_a_step_twice() {
    if std::env::var("NEUROVOL_TEST_DATABASE_URL").is_err() {
        eprintln!("SKIP: needs PostgreSQL (scripts/test.sh runs it on a private server)");
        return;
    }
    // queue 20 scans with the pipeline off
    let mut loader = TestServer::start(&[]).await;
    let db = loader.db().await;
    let b = signed_in(&loader).await;
    let head = small_head();
    let mut scans = Vec::new();
    for _ in 0..20 {
        scans.push(upload_scan(&b, &head).await);
    }
    loader.kill9();

    // two processes, two runners each, on the same database and data dir
    let env = pipeline_env(&[
        ("NEUROVOL_PIPELINE_CONCURRENCY", "2".into()),
        ("NEUROVOL_JOB_LEASE_SECS", "15".into()),
    ]);
    let env = as_refs(&env);
    let p1 = TestServer::start_on(loader.data_dir.clone(), loader.database_url.clone(), &env, false).await;
    let p2 = TestServer::start_on(loader.data_dir.clone(), loader.database_url.clone(), &env, false).await;
    let t0 = Instant::now();
    for s in &scans {
        wait_for(&p1, &db, s, &["done"], Duration::from_secs(1200)).await;
    }
    eprintln!("20 scans by 2 processes in {:.1} s", t0.elapsed().as_secs_f64());

    let mut owners = HashSet::new();
    for s in &scans {
        assert_each_step_once(&db, s).await;
        let all = runs(&db, s).await;
        // no two runs of one step of one scan overlapped in time
        let mut by_step: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
        for r in &all {
            owners.insert(r.2.clone());
            by_step
                .entry(r.0.as_str())
                .or_default()
                .push((r.3, r.4.unwrap_or(i64::MAX)));
        }
        for (step, mut spans) in by_step {
            spans.sort();
            for w in spans.windows(2) {
                assert!(w[1].0 >= w[0].1, "two runs of {step} overlapped for one scan: {all:?}");
            }
        }
    }
    assert_eq!(owners.len(), 2, "both processes ran jobs");
    drop(p1);
    drop(p2);
    drop(loader);
}

/// `neurovol serve` with the pipeline on and `env` set: its exit status, the last line it
/// printed, and the files it left in its data dir.
fn serve_at_start(name: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String, Vec<std::path::PathBuf>) {
    let dir = temp_dir(name);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_neurovol"));
    cmd.arg("serve");
    for var in [
        "NEUROVOL_CONFIG",
        "NEUROVOL_DATABASE_URL",
        "NEUROVOL_RUNPOD_ENDPOINT_ID",
        "NEUROVOL_RUNPOD_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("NEUROVOL_DATA_DIR", &dir)
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("NEUROVOL_PIPELINE_CONCURRENCY", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_string();
    let mut files = Vec::new();
    let mut todo = vec![dir.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                todo.push(e.path())
            } else {
                files.push(e.path())
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    (out.status, last, files)
}

#[test]
fn a_missing_dcm2niix_stops_the_server_at_start_with_a_clear_message() {
    let (status, last, files) = serve_at_start("no-dcm2niix", &[("NEUROVOL_DCM2NIIX", "/nonexistent/dcm2niix")]);
    assert!(!status.success());
    assert!(
        last.contains("dcm2niix") && last.contains("NEUROVOL_DCM2NIIX"),
        "{last}"
    );
    assert!(files.is_empty(), "left behind: {files:?}");
}

#[test]
fn a_server_without_a_segmentation_service_stops_at_start_and_writes_no_database() {
    // neither a worker binary nor RunPod: one line naming the setting, no database file
    let (status, last, files) = serve_at_start("no-worker", &[("NEUROVOL_WORKER_BIN", "/nonexistent/neurovol-worker")]);
    assert!(!status.success());
    assert!(
        last.contains("NEUROVOL_WORKER_BIN") && last.contains("/nonexistent/neurovol-worker"),
        "{last}"
    );
    assert!(files.is_empty(), "left behind: {files:?}");
    // a worker that is there but cannot be run (no execute bit) is refused the same way
    let not_executable = temp_dir("not-executable").join("neurovol-worker");
    std::fs::write(&not_executable, b"#!/bin/sh\n").unwrap();
    let bin = not_executable.display().to_string();
    let (status, last, files) = serve_at_start("worker-not-executable", &[("NEUROVOL_WORKER_BIN", bin.as_str())]);
    assert!(!status.success());
    assert!(last.contains("NEUROVOL_WORKER_BIN"), "{last}");
    assert!(files.is_empty(), "left behind: {files:?}");
    std::fs::remove_dir_all(not_executable.parent().unwrap()).unwrap();
}

#[test]
fn a_server_without_its_model_files_stops_at_start_naming_neurovol_assets() {
    // an executable that is there: the check looks at the model files next
    let worker = "/bin/true";
    let (status, last, files) = serve_at_start(
        "no-assets",
        &[
            ("NEUROVOL_WORKER_BIN", worker),
            ("NEUROVOL_ASSETS", "/nonexistent/assets"),
        ],
    );
    assert!(!status.success());
    assert!(
        last.contains("NEUROVOL_ASSETS") && last.contains("model21_104class"),
        "{last}"
    );
    assert!(files.is_empty(), "left behind: {files:?}");
}

/// A scan stored before defacing existed (a whole head and a kept DICOM archive) is
/// defaced in place by the next start: the stored voxels become the defaced head's, the
/// archive goes, and the scan records the plane.
#[tokio::test]
async fn a_scan_stored_before_defacing_is_defaced_at_the_next_start() {
    let env = pipeline_env(&[]);
    let mut first = TestServer::start(&as_refs(&env)).await;
    let db = first.db().await;
    let b = signed_in(&first).await;
    let scan = upload_scan(&b, &small_head()).await;
    wait_for(&first, &db, &scan, &["done"], Duration::from_secs(300)).await;
    first.kill9();

    // turn it into a scan of the old release: the whole T1 head, an archive, no defacing
    let row = sqlx::query("SELECT nifti_key, object_key, conversion_json FROM scans WHERE id = $1")
        .bind(&scan)
        .fetch_one(&db)
        .await
        .unwrap();
    let objects_dir = first.data_dir.join("objects");
    let (nifti_key, archive_key) = (row.get::<String, _>("nifti_key"), row.get::<String, _>("object_key"));
    let whole_head = reference_nifti();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &whole_head).unwrap();
    std::fs::write(objects_dir.join(&nifti_key), gz.finish().unwrap()).unwrap();
    std::fs::write(objects_dir.join(&archive_key), small_head()).unwrap();
    let mut old: Value = serde_json::from_str(&row.get::<String, _>("conversion_json")).unwrap();
    old.as_object_mut().unwrap().remove("defacing");
    sqlx::query("UPDATE scans SET conversion_json = $1, archive_deleted = 0 WHERE id = $2")
        .bind(old.to_string())
        .bind(&scan)
        .execute(&db)
        .await
        .unwrap();

    let _second = TestServer::start_on(
        first.data_dir.clone(),
        first.database_url.clone(),
        &as_refs(&env),
        false,
    )
    .await;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (conversion, deleted): (String, i64) =
            sqlx::query_as("SELECT conversion_json, archive_deleted FROM scans WHERE id = $1")
                .bind(&scan)
                .fetch_one(&db)
                .await
                .unwrap();
        if deleted == 1 && conversion.contains("\"defacing\"") {
            break;
        }
        assert!(Instant::now() < until, "the old scan was not defaced");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!objects_dir.join(&archive_key).exists(), "the archive went");
    let stored = gunzip(&std::fs::read(objects_dir.join(&nifti_key)).unwrap());
    let mut defaced = volumetry::nifti::decode_f32(&whole_head).unwrap();
    let defacer =
        volumetry::deface::Defacer::load(&volumetry::assets_dir(), volumetry::deface::MaskGrid::Coarse).unwrap();
    defacer.deface(&mut defaced).unwrap();
    assert!(
        volumetry::nifti::decode_f32(&stored).unwrap().data == defaced.data,
        "the stored volume is the defaced head"
    );
    assert_eq!(scan_status(&db, &scan).await, "done", "its results stay");
}
