//! The object-store trait (src/object_store.rs) against both implementations: the local
//! folder and a real S3 server, `s3s-fs` (a child process on a free loopback port with a
//! temporary root; scripts/setup.sh installs it). The same conformance checks run on both;
//! the S3 side adds pre-signed URLs over plain HTTP and a server that goes away and comes
//! back.
//!
//! `s3s-fs`: `NEUROVOL_S3S_FS_BIN`, else `s3s-fs` on PATH, else `~/.cargo/bin/s3s-fs`.
//! When it is missing the S3 tests print a skip line, unless `NEUROVOL_REQUIRE_S3=1`
//! (scripts/test.sh) makes that a failure.

mod common;

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use common::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, s3s_fs_or_skip};
use server::object_store::{LocalObjectStore, ObjectStore, S3ObjectStore, S3Settings, StoreError};
use server::storage::{self, UrlSigner};

const URL_KEY: &str = "test-object-url-key-0123456789abcdef0123456789";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neurovol-{tag}-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic, incompressible-looking test data.
fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn query(url: &str) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(url.split_once('?').expect("URL has a query").1.as_bytes())
        .into_owned()
        .collect()
}

// ---------------------------------------------------------------------------------------
// The same checks for every implementation
// ---------------------------------------------------------------------------------------

async fn conformance(store: &dyn ObjectStore, scratch: &Path) {
    assert_eq!(
        store.list().await.unwrap(),
        Vec::<String>::new(),
        "{}: fresh store not empty",
        store.kind()
    );

    // invalid keys are refused by every operation, before touching anything
    let src = scratch.join("src.bin");
    std::fs::write(&src, b"source").unwrap();
    let long = "k".repeat(129);
    for bad in [
        "",
        "../x",
        "a/b",
        ".hidden",
        ".incoming-1234",
        "a b",
        "ключ",
        "a\\b",
        long.as_str(),
    ] {
        let ctx = format!("{} key {bad:?}", store.kind());
        assert!(
            matches!(store.put_file(bad, &src).await, Err(StoreError::InvalidKey)),
            "{ctx}"
        );
        assert!(
            matches!(store.put_bytes(bad, b"x".to_vec()).await, Err(StoreError::InvalidKey)),
            "{ctx}"
        );
        assert!(
            matches!(
                store.get_to_file(bad, &scratch.join("out")).await,
                Err(StoreError::InvalidKey)
            ),
            "{ctx}"
        );
        assert!(
            matches!(store.get_bytes(bad, 1 << 20).await, Err(StoreError::InvalidKey)),
            "{ctx}"
        );
        assert!(matches!(store.size(bad).await, Err(StoreError::InvalidKey)), "{ctx}");
        assert!(matches!(store.delete(bad).await, Err(StoreError::InvalidKey)), "{ctx}");
        assert!(
            matches!(
                store.presign_get(bad, Duration::from_secs(60)).await,
                Err(StoreError::InvalidKey)
            ),
            "{ctx}"
        );
        assert!(
            matches!(
                store.presign_put(bad, Duration::from_secs(60)).await,
                Err(StoreError::InvalidKey)
            ),
            "{ctx}"
        );
    }
    assert!(src.exists(), "{}: refused put_file removed its source", store.kind());
    assert!(!scratch.join("out").exists());
    let longest = "k".repeat(128);
    store.put_bytes(&longest, b"ok".to_vec()).await.unwrap();
    assert_eq!(store.get_bytes(&longest, 2).await.unwrap(), b"ok");
    store.delete(&longest).await.unwrap();

    // put_file / get_to_file / get_bytes round trip, a few MB
    let big = data(3 * 1024 * 1024 + 17, 1);
    let key = storage::new_key(".zip");
    std::fs::write(&src, &big).unwrap();
    assert_eq!(store.put_file(&key, &src).await.unwrap(), big.len() as u64);
    assert!(!src.exists(), "{}: put_file left its source", store.kind());
    assert_eq!(store.size(&key).await.unwrap(), Some(big.len() as u64));
    let dst = scratch.join("dst.bin");
    std::fs::write(&dst, b"old content, longer than nothing").unwrap(); // truncated
    assert_eq!(store.get_to_file(&key, &dst).await.unwrap(), big.len() as u64);
    assert!(
        std::fs::read(&dst).unwrap() == big,
        "{}: get_to_file bytes differ",
        store.kind()
    );
    assert!(
        store.get_bytes(&key, big.len() as u64).await.unwrap() == big,
        "{}: get_bytes differs",
        store.kind()
    );
    assert!(
        matches!(
            store.get_bytes(&key, big.len() as u64 - 1).await,
            Err(StoreError::TooLarge)
        ),
        "{}",
        store.kind()
    );
    assert!(
        matches!(store.get_bytes(&key, 0).await, Err(StoreError::TooLarge)),
        "{}",
        store.kind()
    );

    // put_bytes, overwrite, empty objects
    let small = storage::new_key(".json");
    store.put_bytes(&small, b"{\"a\":1}".to_vec()).await.unwrap();
    store.put_bytes(&small, b"{\"a\":2}".to_vec()).await.unwrap();
    assert_eq!(store.get_bytes(&small, 100).await.unwrap(), b"{\"a\":2}");
    assert_eq!(store.size(&small).await.unwrap(), Some(7));
    let empty = storage::new_key(".txt");
    store.put_bytes(&empty, Vec::new()).await.unwrap();
    assert_eq!(store.get_bytes(&empty, 0).await.unwrap(), Vec::<u8>::new());
    assert_eq!(store.get_to_file(&empty, &scratch.join("empty")).await.unwrap(), 0);
    assert_eq!(store.size(&empty).await.unwrap(), Some(0));

    let mut want = vec![key.clone(), small.clone(), empty.clone()];
    want.sort();
    assert_eq!(store.list().await.unwrap(), want);

    // missing objects
    let missing = storage::new_key(".zip");
    assert!(
        matches!(store.get_bytes(&missing, 100).await, Err(StoreError::NotFound)),
        "{}",
        store.kind()
    );
    let nowhere = scratch.join("missing.bin");
    assert!(
        matches!(store.get_to_file(&missing, &nowhere).await, Err(StoreError::NotFound)),
        "{}",
        store.kind()
    );
    assert!(!nowhere.exists(), "{}: failed get_to_file left its file", store.kind());
    assert_eq!(store.size(&missing).await.unwrap(), None);
    store.delete(&missing).await.unwrap();
    assert!(!StoreError::NotFound.is_transient());

    // delete
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.size(&key).await.unwrap(), None);
    assert!(matches!(
        store.get_bytes(&key, u64::MAX).await,
        Err(StoreError::NotFound)
    ));
    store.delete(&small).await.unwrap();
    store.delete(&empty).await.unwrap();
    assert_eq!(store.list().await.unwrap(), Vec::<String>::new());

    // a missing source file is an I/O error, and nothing is stored
    assert!(matches!(
        store.put_file(&key, &scratch.join("no-such-file")).await,
        Err(StoreError::Io(_))
    ));
    assert_eq!(store.size(&key).await.unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// Local folder
// ---------------------------------------------------------------------------------------

fn local_store(dir: &Path) -> LocalObjectStore {
    LocalObjectStore::new(
        dir.join("objects"),
        UrlSigner::new(URL_KEY.as_bytes().to_vec(), "http://127.0.0.1:9/"),
    )
}

#[tokio::test]
async fn local_store_conformance() {
    let dir = temp_dir("objstore-local");
    let store = local_store(&dir);
    assert_eq!(store.kind(), "local");
    conformance(&store, &dir).await;

    // staging files and folders are not objects
    let root = dir.join("objects");
    std::fs::write(root.join(".incoming-0123456789abcdef"), b"half").unwrap();
    std::fs::create_dir_all(root.join("subdir")).unwrap();
    store.put_bytes("abc.zip", b"x".to_vec()).await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec!["abc.zip".to_string()]);
    assert_eq!(store.size("subdir").await.unwrap(), None);
    // the folder store underneath sees the same objects
    assert_eq!(store.local().get("abc.zip").await.unwrap(), b"x");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn local_presigned_urls_verify() {
    let dir = temp_dir("objstore-local-sign");
    let store = local_store(&dir);
    let signer = UrlSigner::new(URL_KEY.as_bytes().to_vec(), "http://elsewhere");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let get = store.presign_get("abc.nii.gz", Duration::from_secs(60)).await.unwrap();
    assert!(
        get.starts_with("http://127.0.0.1:9/objects/abc.nii.gz?method=GET&"),
        "{get}"
    );
    let q = query(&get);
    let (exp, sig) = (q.get("exp").map(String::as_str), q.get("sig").map(String::as_str));
    assert_eq!(signer.verify("abc.nii.gz", "GET", exp, sig), Ok(()));
    assert_eq!(
        signer.verify("abc.nii.gz", "PUT", exp, sig),
        Err(storage::SignatureError::Invalid)
    );
    assert_eq!(
        signer.verify("abd.nii.gz", "GET", exp, sig),
        Err(storage::SignatureError::Invalid)
    );
    let exp: u64 = exp.unwrap().parse().unwrap();
    assert!((now + 59..=now + 62).contains(&exp), "exp {exp}, now {now}");

    let put = store
        .presign_put("seg.nii.gz", Duration::from_secs(3600))
        .await
        .unwrap();
    let q = query(&put);
    assert_eq!(
        signer.verify(
            "seg.nii.gz",
            "PUT",
            q.get("exp").map(String::as_str),
            q.get("sig").map(String::as_str)
        ),
        Ok(())
    );
    let exp: u64 = q["exp"].parse().unwrap();
    assert!(exp <= now + 15 * 60 + 2, "ttl not capped: exp {exp}, now {now}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// S3 (s3s-fs)
// ---------------------------------------------------------------------------------------

fn settings(server: &S3Server) -> S3Settings {
    S3Settings {
        endpoint: server.endpoint(),
        bucket: BUCKET.into(),
        region: "auto".into(),
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
        force_path_style: true,
    }
}

async fn store_of(server: &S3Server) -> S3ObjectStore {
    let store = S3ObjectStore::connect(settings(server)).await.expect("S3 client");
    store.ensure_bucket().await.expect("create bucket");
    store.ensure_bucket().await.expect("bucket exists: no-op");
    store
}

#[tokio::test]
async fn s3_store_conformance() {
    let Some(bin) = s3s_fs_or_skip("s3_store_conformance") else {
        return;
    };
    let dir = temp_dir("objstore-s3");
    let server = S3Server::start(bin, dir.clone());
    let store = store_of(&server).await;
    assert_eq!(store.kind(), "s3");
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    conformance(&store, &scratch).await;

    // settings never print the secret
    let shown = format!("{:?}", settings(&server));
    assert!(!shown.contains(SECRET_KEY) && shown.contains("redacted"), "{shown}");
    // connect does not need the bucket; operations on a missing one fail, not as NotFound
    let mut other = settings(&server);
    other.bucket = "no-such-bucket".into();
    let other = S3ObjectStore::connect(other).await.unwrap();
    assert!(matches!(other.list().await, Err(StoreError::Unavailable(_))));
    // wrong credentials are refused
    let mut wrong = settings(&server);
    wrong.secret_access_key = "not-the-secret-key-0123456789".into();
    let wrong = S3ObjectStore::connect(wrong).await.unwrap();
    match wrong.put_bytes("abc.txt", b"x".to_vec()).await {
        Err(StoreError::Unavailable(msg)) => assert!(!msg.contains("not-the-secret"), "{msg}"),
        other => panic!("wrong secret: {other:?}"),
    }
    assert_eq!(store.list().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn s3_presigned_urls() {
    let Some(bin) = s3s_fs_or_skip("s3_presigned_urls") else {
        return;
    };
    let server = S3Server::start(bin, temp_dir("objstore-s3-presign"));
    let store = store_of(&server).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // GET
    let key = storage::new_key(".nii.gz");
    let body = data(300_000, 2);
    store.put_bytes(&key, body.clone()).await.unwrap();
    let url = store.presign_get(&key, Duration::from_secs(60)).await.unwrap();
    assert!(
        url.starts_with(&format!("{}/{BUCKET}/{key}?", server.endpoint())),
        "path-style URL expected"
    );
    assert_eq!(query(&url).get("X-Amz-Expires").map(String::as_str), Some("60"));
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == body);

    // PUT (what the worker does with its result)
    let out_key = storage::new_key(".seg.nii.gz");
    let put_url = store.presign_put(&out_key, Duration::from_secs(60)).await.unwrap();
    let result = data(123_457, 3);
    let resp = http.put(&put_url).body(result.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
    assert!(store.get_bytes(&out_key, 1 << 20).await.unwrap() == result);
    assert_eq!(store.size(&out_key).await.unwrap(), Some(result.len() as u64));

    // ttl is capped at 15 minutes
    let long = store
        .presign_get(&key, Duration::from_secs(7 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(query(&long).get("X-Amz-Expires").map(String::as_str), Some("900"));

    // the method is part of the signature
    assert_eq!(http.get(&put_url).send().await.unwrap().status(), 403);
    assert_eq!(http.put(&url).body("overwrite").send().await.unwrap().status(), 403);
    assert!(store.get_bytes(&key, 1 << 20).await.unwrap() == body);

    // tampered: one character of the signature, or another key
    let sig = query(&url)["X-Amz-Signature"].clone();
    let flipped: String = sig
        .char_indices()
        .map(|(i, c)| if i == 10 { if c == '0' { '1' } else { '0' } } else { c })
        .collect();
    assert_ne!(sig, flipped);
    let tampered = url.replace(&sig, &flipped);
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);
    let other_key = url.replace(&key, &out_key);
    assert_ne!(other_key, url);
    assert_eq!(http.get(&other_key).send().await.unwrap().status(), 403);

    // expired
    let short = store.presign_get(&key, Duration::from_secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(http.get(&short).send().await.unwrap().status(), 403);
    // and the untampered one still works
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn s3_server_down_is_transient_and_recovers() {
    let Some(bin) = s3s_fs_or_skip("s3_server_down_is_transient_and_recovers") else {
        return;
    };
    let dir = temp_dir("objstore-s3-down");
    let mut server = S3Server::start(bin, dir.clone());
    let store = store_of(&server).await;
    let key = storage::new_key(".zip");
    let body = data(1_000_000, 4);
    store.put_bytes(&key, body.clone()).await.unwrap();
    assert!(store.get_bytes(&key, 1 << 21).await.unwrap() == body); // a pooled connection now exists

    server.stop();
    let t = Instant::now();
    let err = store.get_bytes(&key, 1 << 21).await.unwrap_err();
    assert!(
        err.is_transient() && matches!(err, StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "failure took {:?}", t.elapsed());
    let msg = err.to_string();
    assert!(!msg.contains(SECRET_KEY) && !msg.contains("Signature"), "{msg}");
    // size must not say "missing" when it cannot know
    assert!(store.size(&key).await.unwrap_err().is_transient());
    let dst = dir.join("down.bin");
    assert!(store.get_to_file(&key, &dst).await.unwrap_err().is_transient());
    assert!(!dst.exists());
    let src = dir.join("pending.bin");
    std::fs::write(&src, b"kept for the retry").unwrap();
    let other = storage::new_key(".zip");
    assert!(store.put_file(&other, &src).await.unwrap_err().is_transient());
    assert!(src.exists(), "failed put_file removed its source");
    eprintln!("server down: errors within {:?}; e.g. {msg}", t.elapsed());

    // back on the same port and root: same client, same object
    server.spawn();
    assert!(store.get_bytes(&key, 1 << 21).await.unwrap() == body);
    assert_eq!(store.put_file(&other, &src).await.unwrap(), 18);
    assert!(!src.exists());
    let mut want = vec![key, other];
    want.sort();
    assert_eq!(store.list().await.unwrap(), want);
}

#[tokio::test]
async fn s3_settings_are_checked_at_connect() {
    let good = S3Settings {
        endpoint: "https://0123456789abcdef.r2.cloudflarestorage.com/".into(),
        bucket: "neurovol".into(),
        region: String::new(), // → "auto"
        access_key_id: "id".into(),
        secret_access_key: "secret-value-never-shown".into(),
        force_path_style: true,
    };
    // no request is made: the endpoint need not be reachable
    let store = S3ObjectStore::connect(good.clone()).await.expect("R2-style settings");
    assert_eq!(store.kind(), "s3");
    assert!(!format!("{:?} {:?}", good, store).contains("never-shown"));
    let url = store.presign_get("abc.zip", Duration::from_secs(60)).await.unwrap();
    assert!(
        url.starts_with("https://0123456789abcdef.r2.cloudflarestorage.com/neurovol/abc.zip?"),
        "{url}"
    );
    assert!(
        url.contains("%2Fauto%2Fs3%2Faws4_request"),
        "region auto expected in the credential scope: {url}"
    );
    for bad in [
        S3Settings {
            endpoint: "ftp://example.com".into(),
            ..good.clone()
        },
        S3Settings {
            endpoint: String::new(),
            ..good.clone()
        },
        S3Settings {
            bucket: String::new(),
            ..good.clone()
        },
        S3Settings {
            secret_access_key: String::new(),
            ..good.clone()
        },
    ] {
        assert!(matches!(
            S3ObjectStore::connect(bad).await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
