//! The server's segmentation client (`server::segmenter`) against
//! the real `neurovol-worker` child process, with inputs and outputs moving through the
//! real `neurovol serve`'s signed object URLs (src/storage.rs + web/objects.rs).
//!
//! The worker binary: `NEUROVOL_WORKER_BIN`, else `<target>/<profile>/neurovol-worker`
//! (built here with `cargo build -p neurovol-worker` when missing).
//!
//! One full segmentation of the T1 reference runs in the worker and once in-process for
//! the comparison (model21_104class; `NEUROVOL_E2E_BRAIN_MASK=1` adds mindgrab, ~2× time).
//! Every failure path uses a tiny synthetic head or a stalled URL.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use server::segmenter::{Backend, ClientSettings, JobInput, JobState, LocalWorkerSettings, Segmenter, SegmenterError};
use server::storage::{self, ObjectFolder, UrlSigner};

const URL_KEY: &str = "test-object-url-key-0123456789abcdef0123456789";

fn assets() -> PathBuf {
    std::env::var_os("NEUROVOL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NEUROVOL_WORKER_BIN") {
        return PathBuf::from(p);
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_neurovol"));
    let profile_dir = exe.parent().expect("binary folder").to_path_buf();
    let bin = profile_dir.join("neurovol-worker");
    // Always ask cargo (a no-op when fresh): `cargo test -p server` alone does not rebuild
    // another package's binary, and a stale worker would compare an old volumetry.
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "neurovol-worker", "--bin", "neurovol-worker"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        // Drop what cargo set for this test process (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...):
        // build scripts (ring) declare `rerun-if-env-changed` on some, so a nested build
        // with them set would rebuild half the dependency tree every time.
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str()
                && ((k.starts_with("CARGO_") && k != "CARGO_HOME") || k == "OUT_DIR")
            {
                cmd.env_remove(k);
            }
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    assert!(
        ok && bin.is_file(),
        "cannot build the worker: run cargo build -p neurovol-worker (or set NEUROVOL_WORKER_BIN)"
    );
    bin
}

fn settings() -> ClientSettings {
    ClientSettings {
        request_timeout: Duration::from_secs(10),
        max_retries: 3,
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        poll_interval: Duration::from_millis(100),
        worker_start_timeout: Duration::from_secs(30),
    }
}

async fn put(store: &ObjectFolder, key: &str, bytes: &[u8]) {
    let tmp = std::env::temp_dir().join(format!("nv-seg-put-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::write(&tmp, bytes).unwrap();
    store.put_file(key, &tmp).await.unwrap();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The worker tests' synthetic head (an ellipsoid, 40³ at 1.2 mm), gzip.
fn tiny_head_gz() -> Vec<u8> {
    let raw = volumetry::nifti::encode(&volumetry::synthetic::head());
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// A URL that accepts connections and never answers (a job stays IN_PROGRESS on it).
async fn stalled_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    format!("http://{addr}/stalled.nii.gz")
}

struct Keys {
    labels: String,
    volumes: String,
}

fn job(signer: &UrlSigner, input_url: String, keys: &Keys, brain_mask: bool) -> JobInput {
    let ttl = Duration::from_secs(600);
    let mut j = JobInput::new(
        input_url,
        signer.sign(&keys.labels, "PUT", ttl).unwrap(),
        signer.sign(&keys.volumes, "PUT", ttl).unwrap(),
    );
    j.brain_mask = brain_mask;
    j
}

fn fresh_keys() -> Keys {
    Keys {
        labels: storage::new_key(".labels.nii.gz"),
        volumes: storage::new_key(".volumes.json"),
    }
}

async fn wait_state(
    seg: &Segmenter,
    h: &server::segmenter::JobHandle,
    want: fn(&JobState) -> bool,
    within: Duration,
) -> JobState {
    let t0 = Instant::now();
    loop {
        let s = seg.status(h).await.unwrap();
        if want(&s) {
            return s;
        }
        assert!(t0.elapsed() < within, "still {s:?} after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_cancel_timeout_queue_and_worker_crash() {
    let server = TestServer::start(&[("NEUROVOL_OBJECT_URL_KEY", URL_KEY)]).await;
    let store = ObjectFolder::new(server.data_dir.join("objects"));
    let signer = UrlSigner::new(URL_KEY.as_bytes().to_vec(), &server.url);
    let ttl = Duration::from_secs(600);

    let head = storage::new_key(".nii.gz");
    put(&store, &head, &tiny_head_gz()).await;
    let text = storage::new_key(".nii");
    put(&store, &text, &b"plain text, not an image ".repeat(40)).await;
    let big = storage::new_key(".nii");
    put(&store, &big, &vec![0u8; 400_000]).await;

    // --- the signed-URL routes themselves: no cookie needed, signature required
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/objects/{head}", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http.get(signer.sign(&head, "GET", ttl).unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let probe = storage::new_key(".json");
    let r = http
        .put(signer.sign(&probe, "PUT", ttl).unwrap())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a signed PUT needs no CSRF token");
    assert_eq!(store.get(&probe).await.unwrap(), b"{}");
    let r = http
        .put(signer.sign(&probe, "GET", ttl).unwrap())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a GET signature does not allow PUT");

    let mut local = LocalWorkerSettings::new(worker_bin(), assets());
    local.queue_capacity = 1;
    local
        .extra_env
        .push(("NEUROVOL_WORKER_MAX_INPUT_BYTES".into(), "200000".into()));
    let seg = Segmenter::start(Backend::Local(local), settings())
        .await
        .expect("local worker starts");

    // --- refused inputs: FAILED with a reason, nothing uploaded
    let mut tampered = signer.sign(&head, "GET", ttl).unwrap();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let cases = [
        (signer.sign_until(&head, "GET", unix_now() - 5).unwrap(), "expired"),
        (tampered, "signature does not match"),
        (signer.sign(&head, "PUT", ttl).unwrap(), "another method"),
        (signer.sign(&storage::new_key(".nii"), "GET", ttl).unwrap(), "HTTP 404"),
        (signer.sign(&text, "GET", ttl).unwrap(), "not a single 3D NIfTI"),
        (signer.sign(&big, "GET", ttl).unwrap(), "too large"),
    ];
    for (url, want) in cases {
        let keys = fresh_keys();
        let h = seg.submit(&job(&signer, url, &keys, false), None).await.unwrap();
        match seg.wait(&h, Duration::from_secs(60)).await.unwrap() {
            JobState::Failed { reason } => {
                assert!(reason.contains(want), "{reason:?} should mention {want:?}");
                assert!(
                    !reason.contains("sig=") && !reason.contains("/objects/"),
                    "URL in reason: {reason}"
                );
            }
            other => panic!("expected FAILED ({want}), got {other:?}"),
        }
        assert!(store.get(&keys.labels).await.is_err() && store.get(&keys.volumes).await.is_err());
    }
    // an expired upload URL: the segmentation runs, the upload is refused
    let keys = fresh_keys();
    let mut j = job(&signer, signer.sign(&head, "GET", ttl).unwrap(), &keys, false);
    j.labels_url = signer.sign_until(&keys.labels, "PUT", unix_now() - 1).unwrap();
    let h = seg.submit(&j, None).await.unwrap();
    match seg.wait(&h, Duration::from_secs(120)).await.unwrap() {
        JobState::Failed { reason } => assert!(
            reason.contains("label NIfTI upload") && reason.contains("expired"),
            "{reason}"
        ),
        other => panic!("expected FAILED, got {other:?}"),
    }

    // --- timeout (policy.executionTimeout) → TIMED_OUT
    let stalled = stalled_url().await;
    let h = seg
        .submit(
            &job(&signer, stalled.clone(), &fresh_keys(), false),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let s = seg.wait(&h, Duration::from_secs(30)).await.unwrap();
    assert!(matches!(s, JobState::TimedOut { .. }), "{s:?}");
    assert!(s.is_retryable());

    // --- queue full → the client retries 429 with backoff, then reports Busy; cancel
    let running = seg
        .submit(&job(&signer, stalled.clone(), &fresh_keys(), false), None)
        .await
        .unwrap();
    wait_state(&seg, &running, |s| *s == JobState::Running, Duration::from_secs(10)).await;
    let queued = seg
        .submit(&job(&signer, stalled.clone(), &fresh_keys(), false), None)
        .await
        .unwrap();
    assert_eq!(seg.status(&queued).await.unwrap(), JobState::Queued);
    let t0 = Instant::now();
    let busy = seg
        .submit(&job(&signer, stalled.clone(), &fresh_keys(), false), None)
        .await;
    assert!(matches!(busy, Err(SegmenterError::Busy)), "{busy:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "429 was not retried with backoff"
    );
    assert_eq!(seg.cancel(&queued).await.unwrap(), JobState::Cancelled);
    assert_eq!(seg.status(&queued).await.unwrap(), JobState::Cancelled);

    // --- the worker is killed mid-job: the client sees the job lost; a retry completes
    let pid = seg.local_worker_pid().expect("worker pid");
    assert_eq!(seg.status(&running).await.unwrap(), JobState::Running);
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let lost = wait_state(&seg, &running, |s| s.is_terminal(), Duration::from_secs(60)).await;
    assert!(matches!(lost, JobState::Lost { .. }), "{lost:?}");
    assert!(lost.is_retryable());
    let new_pid = seg.local_worker_pid().expect("worker restarted");
    assert_ne!(new_pid, pid);
    let keys = fresh_keys();
    let retry = seg
        .submit(
            &job(&signer, signer.sign(&head, "GET", ttl).unwrap(), &keys, false),
            None,
        )
        .await
        .unwrap();
    match seg.wait(&retry, Duration::from_secs(180)).await.unwrap() {
        JobState::Completed { output } => {
            use sha2::Digest;
            let labels = store.get(&keys.labels).await.expect("labels stored");
            assert_eq!(output.labels_sha256, hex::encode(sha2::Sha256::digest(&labels)));
            assert!(store.get(&keys.volumes).await.is_ok());
        }
        other => panic!("retry should complete, got {other:?}"),
    }

    // --- the RunPod backend of the same client, against a worker with a known key
    let key = "runpod-style-key-0123456789";
    let mut child = Command::new(worker_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--exit-on-stdin-eof",
            "--endpoint-id",
            "ep42",
        ])
        .env("NEUROVOL_WORKER_API_KEY", key)
        .env("NEUROVOL_ASSETS", assets())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("neurovol-worker ready at ")
        .unwrap()
        .to_string();
    let wrong = Segmenter::start(
        Backend::RunPod {
            base_url: base.clone(),
            endpoint_id: "ep42".into(),
            api_key: "wrong-key-0123456789abc".into(),
        },
        settings(),
    )
    .await
    .unwrap();
    let r = wrong
        .submit(&job(&signer, stalled.clone(), &fresh_keys(), false), None)
        .await;
    assert!(matches!(r, Err(SegmenterError::Unauthorized)), "{r:?}");
    let rp = Segmenter::start(
        Backend::RunPod {
            base_url: base,
            endpoint_id: "ep42".into(),
            api_key: key.into(),
        },
        settings(),
    )
    .await
    .unwrap();
    let h = rp
        .submit(&job(&signer, stalled.clone(), &fresh_keys(), false), None)
        .await
        .unwrap();
    assert_eq!(h.backend, "runpod:ep42");
    wait_state(&rp, &h, |s| *s == JobState::Running, Duration::from_secs(10)).await;
    assert_eq!(rp.cancel(&h).await.unwrap(), JobState::Cancelled);
    let _ = child.kill();
    let _ = child.wait();
    // worker gone: the RunPod client gives up after its retries with a clear error
    let gone = rp.status(&h).await;
    assert!(matches!(gone, Err(SegmenterError::Unavailable(_))), "{gone:?}");

    seg.shutdown().await;
    assert!(seg.local_worker_pid().is_none());
    let logs = server.logs();
    assert!(!logs.contains("sig="), "signed URL in the server log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_reference_end_to_end_equals_segment_file() {
    let brain_mask = std::env::var("NEUROVOL_E2E_BRAIN_MASK").is_ok_and(|v| v == "1");
    let input = assets().join("reference/t1_crop/input_t1_crop.nii.gz");
    let server = TestServer::start(&[("NEUROVOL_OBJECT_URL_KEY", URL_KEY)]).await;
    let store = ObjectFolder::new(server.data_dir.join("objects"));
    let signer = UrlSigner::new(URL_KEY.as_bytes().to_vec(), &server.url);
    let in_key = storage::new_key(".nii.gz");
    put(&store, &in_key, &std::fs::read(&input).unwrap()).await;
    let keys = fresh_keys();

    let seg = Segmenter::start(
        Backend::Local(LocalWorkerSettings::new(worker_bin(), assets())),
        settings(),
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let h = seg
        .submit(
            &job(
                &signer,
                signer.sign(&in_key, "GET", Duration::from_secs(900)).unwrap(),
                &keys,
                brain_mask,
            ),
            None,
        )
        .await
        .unwrap();
    let output = match seg.wait(&h, Duration::from_secs(900)).await.unwrap() {
        JobState::Completed { output } => output,
        other => panic!("expected COMPLETED, got {other:?}"),
    };
    let dispatch_s = t0.elapsed().as_secs_f64();
    seg.shutdown().await;
    let labels = store.get(&keys.labels).await.unwrap();
    let volumes = store.get(&keys.volumes).await.unwrap();

    // the same input through volumetry in-process, written as `neurovol segment` writes it
    let t1 = Instant::now();
    let dir = common::temp_dir("seg-ref");
    let (ref_labels, ref_volumes) = (dir.join("labels.nii.gz"), dir.join("volumes.json"));
    {
        let (input, ref_labels, ref_volumes) = (input.clone(), ref_labels.clone(), ref_volumes.clone());
        tokio::task::spawn_blocking(move || {
            let opts = volumetry::SegmentOptions {
                brain_mask,
                ..Default::default()
            };
            let s = volumetry::segment_file(&input, &assets(), &opts).unwrap();
            volumetry::write_outputs(&s, &ref_labels, &ref_volumes, &|_| {}).unwrap();
        })
        .await
        .unwrap();
    }
    let local_s = t1.elapsed().as_secs_f64();
    let got_path = dir.join("got.nii.gz");
    std::fs::write(&got_path, &labels).unwrap();
    let got = volumetry::nifti::read_labels(&got_path).unwrap();
    let want = volumetry::nifti::read_labels(&ref_labels).unwrap();
    assert_eq!(got.dims, want.dims);
    assert!(got.data == want.data, "labels differ from volumetry::segment_file");
    assert_eq!(got.header.sform_or_qform(), want.header.sform_or_qform());
    let same = |a: &[u8], b: &[u8], what: &str| {
        if a != b {
            let at = a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            let keep = std::env::temp_dir().join(format!("nv-e2e-{what}"));
            std::fs::write(keep.with_extension("worker"), a).unwrap();
            std::fs::write(keep.with_extension("reference"), b).unwrap();
            panic!(
                "{what}: worker output differs from segment_file at byte {at} (lengths {} vs {}); kept in {}",
                a.len(),
                b.len(),
                keep.display()
            );
        }
    };
    same(&volumes, &std::fs::read(&ref_volumes).unwrap(), "volumes.json");
    // The label NIfTI byte for byte once decompressed (header + voxels). The gzip streams
    // themselves may differ: the worker and this test link flate2 with different backends
    // (feature unification per binary), which compress the same bytes differently.
    let gunzip = |b: &[u8]| {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b).read_to_end(&mut out).unwrap();
        out
    };
    same(
        &gunzip(&labels),
        &gunzip(&std::fs::read(&ref_labels).unwrap()),
        "labels.nii",
    );
    let vj: serde_json::Value = serde_json::from_slice(&volumes).unwrap();
    assert_eq!(vj["model"], "model21_104class");
    assert_eq!(vj["icv_mm3"].is_null(), !brain_mask);
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!(
        "T1 reference (brain_mask={brain_mask}): worker job {dispatch_s:.1} s through the client (worker timings {:?}); in-process segment_file {local_s:.1} s",
        output.timings
    );
}
