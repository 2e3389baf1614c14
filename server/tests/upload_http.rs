//! Chunked upload over real HTTP, as an API client (curl) would send it, bypassing the
//! browser: the server's own de-identification is the authoritative step.

mod common;

use std::path::Path;
use std::time::Duration;

use common::upload_kit::*;
use common::{Browser, TestServer};
use reqwest::StatusCode;

const MIB: usize = 1024 * 1024;

#[test]
fn the_canary_search_finds_the_raw_fixture() {
    let path = fixtures().join("t1_mprage_sag_phi.zip");
    let out = std::process::Command::new("unzip")
        .arg("-p")
        .arg(&path)
        .output()
        .expect("unzip installed");
    let canaries = canaries("t1_mprage_sag_phi.manifest.json");
    assert!(find_identifying(&[("raw fixture".into(), out.stdout.clone())], &canaries).is_some());
    // UIDs alone are found too
    let uids_only: Vec<String> = canaries
        .iter()
        .filter(|c| c.starts_with("2.25.") || c.starts_with("1."))
        .cloned()
        .collect();
    let mut with_uid = canaries
        .iter()
        .filter(|c| c.len() > 20 && c.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .cloned()
        .collect::<Vec<_>>();
    with_uid.push("NOT-PRESENT-ANYWHERE".into());
    assert!(!uids_only.is_empty());
    let sample = format!("xx\0{}\0yy", with_uid[0]);
    assert!(find_identifying(&[("sample".into(), sample.into_bytes())], &with_uid).is_some());
}

async fn scan_rows(server: &TestServer) -> Vec<(String, Option<i64>, String, Option<String>, String, String)> {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let url = server
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", server.data_dir.join("neurovol.db").display()));
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT id, age_years, sex, study_date, status, object_key FROM scans ORDER BY created_at")
        .fetch_all(&pool)
        .await
        .unwrap();
    let out = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("id"),
                r.get::<Option<i64>, _>("age_years"),
                r.get::<String, _>("sex"),
                r.get::<Option<String>, _>("study_date"),
                r.get::<String, _>("status"),
                r.get::<String, _>("object_key"),
            )
        })
        .collect();
    pool.close().await;
    out
}

#[tokio::test]
async fn raw_phi_upload_keeps_nothing_identifying() {
    let server = TestServer::start(&[]).await;
    let b = signed_in(&server).await;
    let zip = fixture("t1_mprage_sag_phi.zip");
    let started = std::time::Instant::now();
    let (st, done) = upload(&b, &zip, MIB, None).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(st, StatusCode::CREATED, "{done}");
    eprintln!(
        "raw upload + server de-identification of {} bytes: {secs:.2} s",
        zip.len()
    );
    let scan_id = done["scan_id"].as_str().unwrap();
    assert_eq!(done["url"], format!("/scans/{scan_id}"));

    let rows = scan_rows(&server).await;
    assert_eq!(rows.len(), 1);
    let (id, age, sex, date, status, key) = &rows[0];
    assert_eq!(id, scan_id);
    assert_eq!(
        (*age, sex.as_str(), date.as_deref(), status.as_str()),
        (Some(67), "F", Some("2019-03-14"), "deidentified")
    );
    let objs = objects(&server);
    assert_eq!(objs.len(), 1, "exactly one object: the de-identified ZIP");
    assert!(objs[0].ends_with(key));
    assert!(
        temp_files(&server).is_empty(),
        "temp files left: {:?}",
        temp_files(&server)
    );

    // the status page and the home page list show it
    let page = b
        .http
        .get(format!("{}/scans/{scan_id}", server.url))
        .header("cookie", cookies(&b))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("de-identified"), "status page shows the state");

    assert_nothing_identifying(&server, &canaries("t1_mprage_sag_phi.manifest.json"));
}

#[tokio::test]
async fn an_interrupted_upload_resumes_without_resending_acknowledged_chunks() {
    let server = TestServer::start(&[]).await;
    let b = signed_in(&server).await;
    let zip = fixture("t1_mprage_sag_phi.zip");
    let chunk = MIB;
    let parts: Vec<&[u8]> = zip.chunks(chunk).collect();
    assert!(parts.len() >= 4);
    let (st, created) = create(&b, zip.len(), chunk, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["chunks"], parts.len());

    // the first half arrives
    let half = parts.len() / 2;
    for (i, p) in parts.iter().enumerate().take(half) {
        assert_eq!(put_chunk(&b, &id, i, p).await.0, StatusCode::OK);
    }
    // the next chunk's connection drops midway (raw socket, half the body, then closed)
    {
        use tokio::io::AsyncWriteExt;
        let addr = server.url.trim_start_matches("http://").to_string();
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "PUT /uploads/{id}/chunks/{half} HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nx-csrf-token: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            cookies(&b),
            csrf(&b),
            parts[half].len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&parts[half][..parts[half].len() / 2]).await.unwrap();
        sock.flush().await.unwrap();
        drop(sock);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // completing now is refused: parts are missing
    let (st, v) = complete(&b, &id).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "incomplete");

    // the client re-queries what the server acknowledged...
    let (st, s) = status(&b, &id).await;
    assert_eq!(st, StatusCode::OK);
    let acked: Vec<usize> = s["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(
        acked,
        (0..half).collect::<Vec<_>>(),
        "only whole chunks are acknowledged"
    );
    assert_eq!(s["received_bytes"].as_u64().unwrap() as usize, half * chunk);
    // ...and sends only the rest
    let mut sent_again = 0;
    for (i, p) in parts.iter().enumerate() {
        if acked.contains(&i) {
            continue;
        }
        sent_again += 1;
        assert_eq!(put_chunk(&b, &id, i, p).await.0, StatusCode::OK);
    }
    assert_eq!(sent_again, parts.len() - half);
    let (st, done) = complete(&b, &id).await;
    assert_eq!(st, StatusCode::CREATED, "{done}");
    assert_eq!(scan_rows(&server).await.len(), 1);
    assert!(temp_files(&server).is_empty());
    // a completed upload is gone
    assert_eq!(status(&b, &id).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn adversarial_archives_get_specific_errors_and_leave_nothing() {
    let server = TestServer::start(&[]).await;
    let b = signed_in(&server).await;
    let cases = [
        (
            "adv_zipslip.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_path",
            "unsafe path",
        ),
        (
            "adv_absolute_path.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsafe_path",
            "unsafe path",
        ),
        (
            "adv_zipbomb.zip",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large_when_extracted",
            "too large when extracted",
        ),
        (
            "adv_two_series_mixed.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "multiple_series",
            "2 different image series",
        ),
        (
            "adv_nondicom_only.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_dicom_images",
            "No DICOM images",
        ),
        (
            "adv_truncated_dicom.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "truncated_or_corrupt_dicom",
            "truncated or corrupt",
        ),
        ("adv_empty.zip", StatusCode::UNPROCESSABLE_ENTITY, "empty_zip", "empty"),
        (
            "adv_not_a_zip.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_zip",
            "not a ZIP",
        ),
        (
            "adv_encrypted_entry.zip",
            StatusCode::UNPROCESSABLE_ENTITY,
            "encrypted_entries",
            "encrypted",
        ),
    ];
    for (file, want_status, want_code, want_text) in cases {
        let bytes = fixture(file);
        let (st, v) = upload(&b, &bytes, 256 * 1024, None).await;
        assert_eq!(st, want_status, "{file}: {v}");
        assert_eq!(v["code"], want_code, "{file}: {v}");
        let msg = v["error"].as_str().unwrap_or("");
        assert!(msg.contains(want_text), "{file}: plain-language error, got {msg:?}");
        assert!(scan_rows(&server).await.is_empty(), "{file}: no row");
        assert!(objects(&server).is_empty(), "{file}: no object");
        assert!(
            temp_files(&server).is_empty(),
            "{file}: temp files left: {:?}",
            temp_files(&server)
        );
    }
    for p in ["/tmp/neurovol_abs_canary.dcm", "/etc/neurovol_abs_canary.txt"] {
        assert!(!Path::new(p).exists());
    }
    assert!(
        files_under(&server.data_dir)
            .iter()
            .all(|f| !f.to_string_lossy().contains("canary"))
    );
    let log = server.logs();
    assert!(!log.contains("panicked"), "no panic");
    assert!(!log.contains("canary"));

    // the two-series archive: the client names a series; this one is a 4 mm stack, which
    // the conversion check refuses (after de-identification, before anything is kept)
    let (st, v) = upload(&b, &fixture("adv_two_series_mixed.zip"), 256 * 1024, Some(1)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "too_coarse", "{v}");
    assert!(scan_rows(&server).await.is_empty());
    // non-DICOM files named .dcm are skipped by de-identification (no "not DICOM" refusal);
    // the small synthetic series left is then refused by the conversion check
    let (st, v) = upload(&b, &fixture("adv_nondicom_named_dcm.zip"), 256 * 1024, None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "too_coarse", "{v}");
    assert!(scan_rows(&server).await.is_empty());
    assert!(objects(&server).is_empty());
    assert!(temp_files(&server).is_empty());
}

#[tokio::test]
async fn limits_csrf_ownership_and_expiry() {
    let server = TestServer::start(&[
        ("NEUROVOL_UPLOAD_MAX_BYTES", "3000000"),
        ("NEUROVOL_UPLOAD_EXPIRY_SECS", "2"),
        ("NEUROVOL_UPLOAD_SWEEP_SECS", "1"),
    ])
    .await;
    let b = signed_in(&server).await;

    // over the cap: refused before a byte is sent
    let (st, v) = create(&b, 4_352_577, MIB, None).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["code"], "too_large");
    assert!(v["error"].as_str().unwrap().contains("too large"));

    let data = vec![7u8; 2 * MIB + 10];
    let (st, created) = create(&b, data.len(), MIB, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();

    // CSRF required on chunk PUTs: no header, wrong header. (Small bodies: the server
    // answers 403 before reading the body, and may close the connection on a big one.)
    let url = format!("{}/uploads/{id}/chunks/0", server.url);
    let refused: [&[(&str, String)]; 3] = [
        &[],
        &[("x-csrf-token", "x".repeat(43))],
        // a foreign origin, even with the token
        &[("x-csrf-token", csrf(&b)), ("origin", "https://evil.example".into())],
    ];
    for headers in refused {
        let mut put = b.http.put(&url).header("cookie", cookies(&b));
        for (name, value) in headers {
            put = put.header(*name, value);
        }
        let resp = put.body(data[..10].to_vec()).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert!(status(&b, &id).await.1["received"].as_array().unwrap().is_empty());

    // wrong size and out-of-range chunks; an oversized body
    assert_eq!(put_chunk(&b, &id, 0, &data[..10]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(put_chunk(&b, &id, 9, &data[..10]).await.0, StatusCode::BAD_REQUEST);
    // over the route's body limit: 413, or the connection is closed while the body is still
    // being sent (the server answers from the Content-Length before reading the body)
    let big = b
        .http
        .put(&url)
        .header("cookie", cookies(&b))
        .header("x-csrf-token", csrf(&b))
        .body(vec![0u8; 9 * MIB])
        .send()
        .await;
    if let Ok(r) = big {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    // signed out: 401; another account: the upload does not exist
    let anon = Browser::new(&server.url);
    let resp = anon
        .http
        .get(format!("{}/uploads/{id}", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let other = signed_in(&server).await;
    assert_eq!(status(&other, &id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(put_chunk(&other, &id, 0, &data[..MIB]).await.0, StatusCode::NOT_FOUND);

    // at most 3 open uploads per account
    let (st, second) = create(&b, 100, MIB, None).await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(create(&b, 100, MIB, None).await.0, StatusCode::CREATED);
    let (st, v) = create(&b, 100, MIB, None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "too_many_uploads");
    // cancelling one frees a slot
    let resp = b
        .http
        .delete(format!("{}/uploads/{}", server.url, second["id"].as_str().unwrap()))
        .header("cookie", cookies(&b))
        .header("x-csrf-token", csrf(&b))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(create(&b, 100, MIB, None).await.0, StatusCode::CREATED);

    // one chunk, then the client goes away: the sweep removes the abandoned upload
    assert_eq!(put_chunk(&b, &id, 0, &data[..MIB]).await.0, StatusCode::OK);
    assert!(!temp_files(&server).is_empty());
    let mut gone = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if temp_files(&server).is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "abandoned upload swept");
    assert_eq!(status(&b, &id).await.0, StatusCode::NOT_FOUND);
}
