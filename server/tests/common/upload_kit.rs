//! Helpers shared by the upload and pipeline tests: fixtures and their canaries, the
//! upload API as a client sends it, and the "nothing identifying anywhere" search.

// Each test binary compiles this kit and uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;

use super::{Browser, TestServer, sign_up, unique_email};

pub fn fixtures() -> PathBuf {
    let dir = std::env::var("NEUROVOL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    dir.canonicalize()
        .expect("fixtures folder (../shared/fixtures or NEUROVOL_FIXTURES)")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap_or_else(|e| panic!("read fixture {name}: {e}"))
}

/// Every value the manifest says must be removed or replaced, plus the original UIDs.
pub fn canaries(manifest: &str) -> Vec<String> {
    let m: Value = serde_json::from_slice(&fixture(manifest)).unwrap();
    let mut out: Vec<String> = m["injected"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| matches!(i["action"].as_str(), Some("remove") | Some("replace_uid")))
        .filter_map(|i| i["value"].as_str().map(str::to_string))
        .collect();
    // original_uids: keyword -> UID or list of UIDs
    let mut n_uids = 0;
    for v in m["original_uids"].as_object().unwrap().values() {
        let list = match v {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for u in list.iter().filter_map(|u| u.as_str()) {
            out.push(u.to_string());
            n_uids += 1;
        }
    }
    assert!(
        n_uids >= 259,
        "study, series, frame of reference and 256 SOP instance UIDs"
    );
    out.push("PHI-".into());
    out.sort();
    out.dedup();
    assert!(out.len() > 40, "manifest lists the canaries");
    out
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Raw bytes of every file in the data dir (SQLite files included) and the inflated
/// contents of every ZIP in it, plus the server log.
pub fn assert_nothing_identifying(server: &TestServer, canaries: &[String]) {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for f in files_under(&server.data_dir) {
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
        blobs.push((f.display().to_string(), bytes));
        blobs.push((
            format!("file name {}", f.display()),
            f.display().to_string().into_bytes(),
        ));
    }
    blobs.push(("server log".into(), server.logs().into_bytes()));
    if let Some(found) = find_identifying(&blobs, canaries) {
        panic!("{found}");
    }
}

/// The first canary found: UIDs as whole UID-like tokens (looked up in a set), other
/// values as substrings.
pub fn find_identifying(blobs: &[(String, Vec<u8>)], canaries: &[String]) -> Option<String> {
    let uids: std::collections::HashSet<&str> = canaries
        .iter()
        .map(String::as_str)
        .filter(|c| c.len() > 20 && c.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .collect();
    assert!(uids.len() >= 259);
    for (what, bytes) in blobs {
        let text = String::from_utf8_lossy(bytes);
        for c in canaries.iter().filter(|c| !uids.contains(c.as_str())) {
            if text.contains(c.as_str()) {
                return Some(format!("{c:?} found in {what}"));
            }
        }
        for token in text.split(|ch: char| !(ch.is_ascii_digit() || ch == '.')) {
            if uids.contains(token) {
                return Some(format!("original UID {token} found in {what}"));
            }
        }
    }
    None
}

pub async fn signed_in(server: &TestServer) -> Browser {
    let mut b = Browser::new(&server.url);
    let resp = sign_up(&mut b, &unique_email("upload")).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(b.cookie("nv_session").is_some());
    b
}

pub fn cookies(b: &Browser) -> String {
    b.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn csrf(b: &Browser) -> String {
    b.cookie("nv_csrf").expect("csrf cookie")
}

pub async fn json(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub async fn create(b: &Browser, size: usize, chunk: usize, series: Option<usize>) -> (StatusCode, Value) {
    let mut body = serde_json::json!({ "size": size, "chunk_size": chunk });
    if let Some(s) = series {
        body["series"] = s.into();
    }
    create_with(b, &body).await
}

/// `POST /uploads` with any body.
pub async fn create_with(b: &Browser, body: &Value) -> (StatusCode, Value) {
    let resp = b
        .http
        .post(format!("{}/uploads", b.base))
        .header("cookie", cookies(b))
        .header("x-csrf-token", csrf(b))
        .json(body)
        .send()
        .await
        .unwrap();
    json(resp).await
}

pub async fn put_chunk(b: &Browser, id: &str, i: usize, bytes: &[u8]) -> (StatusCode, Value) {
    let resp = b
        .http
        .put(format!("{}/uploads/{id}/chunks/{i}", b.base))
        .header("cookie", cookies(b))
        .header("x-csrf-token", csrf(b))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    json(resp).await
}

pub async fn status(b: &Browser, id: &str) -> (StatusCode, Value) {
    json(
        b.http
            .get(format!("{}/uploads/{id}", b.base))
            .header("cookie", cookies(b))
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub async fn complete(b: &Browser, id: &str) -> (StatusCode, Value) {
    let resp = b
        .http
        .post(format!("{}/uploads/{id}/complete", b.base))
        .header("cookie", cookies(b))
        .header("x-csrf-token", csrf(b))
        .send()
        .await
        .unwrap();
    json(resp).await
}

/// The whole upload, every chunk once. Returns complete's answer.
pub async fn upload(b: &Browser, bytes: &[u8], chunk: usize, series: Option<usize>) -> (StatusCode, Value) {
    let (st, created) = create(b, bytes.len(), chunk, series).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let t0 = std::time::Instant::now();
    for (i, part) in bytes.chunks(chunk).enumerate() {
        let (st, v) = put_chunk(b, &id, i, part).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let secs = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let done = complete(b, &id).await;
    eprintln!(
        "upload of {} bytes in {} chunk(s): {:.0} MiB/s on loopback; complete (server de-identification) {:.2} s",
        bytes.len(),
        bytes.len().div_ceil(chunk),
        bytes.len() as f64 / 1048576.0 / secs.max(1e-6),
        t1.elapsed().as_secs_f64()
    );
    done
}

pub fn objects(server: &TestServer) -> Vec<PathBuf> {
    files_under(&server.data_dir.join("objects"))
}

pub fn temp_files(server: &TestServer) -> Vec<PathBuf> {
    files_under(&server.data_dir.join("tmp"))
}

/// The clean fixture's files rewritten by `edit(position, bytes)`; `false` drops the file.
pub fn rewrite_clean(mut edit: impl FnMut(usize, &mut Vec<u8>) -> bool) -> Vec<u8> {
    let src = fixture("t1_mprage_sag_clean.zip");
    let mut zin = zip::ZipArchive::new(std::io::Cursor::new(src)).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut index = 0;
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        if f.is_dir() {
            continue;
        }
        let name = f.name().unwrap().to_string();
        let mut d = Vec::new();
        f.read_to_end(&mut d).unwrap();
        if edit(index, &mut d) {
            out.start_file(name, opts).unwrap();
            out.write_all(&d).unwrap();
        }
        index += 1;
    }
    assert_eq!(index, 256);
    out.finish().unwrap().into_inner()
}

/// The clean fixture with its image zeroed outside a 32³ cube (files 112..144, rows and
/// columns 112..144). Explicit VR little endian, 256×256 16-bit: pixel data is the last
/// element (`7FE0,0010 OW`).
pub fn small_head() -> Vec<u8> {
    static ZIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZIP.get_or_init(|| {
        rewrite_clean(|index, d| {
            let at = d
                .windows(4)
                .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
                .expect("pixel data");
            assert_eq!(&d[at + 4..at + 6], b"OW");
            let len = u32::from_le_bytes(d[at + 8..at + 12].try_into().unwrap()) as usize;
            assert_eq!(len, 256 * 256 * 2);
            let pix = at + 12;
            let keep_slice = (112..144).contains(&index);
            for r in 0..256 {
                for c in 0..256 {
                    if !(keep_slice && (112..144).contains(&r) && (112..144).contains(&c)) {
                        let o = pix + (r * 256 + c) * 2;
                        d[o] = 0;
                        d[o + 1] = 0;
                    }
                }
            }
            true
        })
    })
    .clone()
}

/// The clean fixture with only some of its files (by position), for refusals.
pub fn clean_subset(keep: impl Fn(usize) -> bool) -> Vec<u8> {
    rewrite_clean(|index, _| keep(index))
}

/// One region of a scored report (`report.json`, a scan's `result_json`), by name.
pub fn report_region(report: &Value, name: &str) -> Value {
    report["regions"]
        .as_array()
        .and_then(|regions| regions.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("{name} not in the report"))
        .clone()
}
