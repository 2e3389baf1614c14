//! The worker binary over loopback: RunPod job API, auth, refusals, timeout, queue limit,
//! shutdown. Inputs come from a small in-test object store; the one successful
//! segmentation uses a tiny synthetic head (seconds, not a full T1).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};

const KEY: &str = "test-key-0123456789abcdef";
/// Appears in every URL's query, as a signature would; must never reach a log.
const SIG: &str = "sig=SECRETSIGNATURE42";

struct Worker {
    url: String,
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(args: &[&str]) -> Worker {
        let log = std::env::temp_dir().join(format!("nv-worker-test-{}.log", hex::encode(rand::random::<[u8; 6]>())));
        let mut child = Command::new(env!("CARGO_BIN_EXE_neurovol-worker"))
            .args(["--listen", "127.0.0.1:0", "--exit-on-stdin-eof"])
            .args(args)
            .env("NEUROVOL_WORKER_API_KEY", KEY)
            .env("NEUROVOL_LOG", "debug")
            .env_remove("NEUROVOL_WORKER_LISTEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .expect("spawn neurovol-worker");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("neurovol-worker ready at ")
            .unwrap_or_else(|| panic!("bad ready line {line:?}"))
            .to_string();
        Worker { url, child, log }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/v2/local{path}", self.url)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An authorised request without a body.
    async fn request(&self, http: &reqwest::Client, method: Method, path: &str) -> reqwest::Response {
        http.request(method, self.api(path))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
    }

    /// An authorised request without a body; the JSON answer.
    async fn call(&self, http: &reqwest::Client, method: Method, path: &str) -> Value {
        self.request(http, method, path).await.json().await.unwrap()
    }

    async fn run(&self, http: &reqwest::Client, input: Value) -> reqwest::Response {
        http.post(self.api("/run"))
            .bearer_auth(KEY)
            .json(&json!({ "input": input }))
            .send()
            .await
            .unwrap()
    }

    async fn submit(&self, http: &reqwest::Client, input: Value) -> String {
        let r = self.run(http, input).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "IN_QUEUE");
        v["id"].as_str().unwrap().to_string()
    }

    async fn status(&self, http: &reqwest::Client, id: &str) -> Value {
        self.call(http, Method::GET, &format!("/status/{id}")).await
    }

    async fn wait_for(&self, http: &reqwest::Client, id: &str, want: &[&str], within: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.status(http, id).await;
            if want.iter().any(|w| v["status"] == *w) {
                return v;
            }
            assert!(
                t0.elapsed() < within,
                "job {id} still {v} after {within:?}; worker log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let logs = self.logs();
        let _ = std::fs::remove_file(&self.log);
        // Never a signed URL (or its signature) in the worker's log.
        assert!(
            !logs.contains("SECRETSIGNATURE42"),
            "signature leaked into the log:\n{logs}"
        );
        assert!(!logs.contains("/obj/"), "URL path leaked into the log:\n{logs}");
    }
}

/// A tiny object store: GET/PUT /obj/{name}, GET /expired (403 like an expired signed
/// URL), GET /stall (never answers).
#[derive(Clone, Default)]
struct Store(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl Store {
    async fn start() -> (Store, String) {
        let store = Store::default();
        async fn get_obj(State(s): State<Store>, Path(name): Path<String>) -> axum::response::Response {
            match s.0.lock().unwrap().get(&name) {
                Some(b) => b.clone().into_response(),
                None => (StatusCode::NOT_FOUND, "no such object").into_response(),
            }
        }
        async fn put_obj(State(s): State<Store>, Path(name): Path<String>, body: Bytes) -> StatusCode {
            s.0.lock().unwrap().insert(name, body.to_vec());
            StatusCode::OK
        }
        let app = Router::new()
            .route("/obj/{name}", get(get_obj).put(put_obj))
            .route(
                "/expired",
                get(|| async { (StatusCode::FORBIDDEN, "signed URL has expired") }),
            )
            .route(
                "/stall",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "late"
                }),
            )
            .with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (store, base)
    }

    fn put(&self, name: &str, bytes: Vec<u8>) {
        self.0.lock().unwrap().insert(name.to_string(), bytes);
    }

    fn get(&self, name: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(name).cloned()
    }
}

fn input(base: &str, nifti: &str) -> Value {
    json!({
        "nifti_url": format!("{base}{nifti}?{SIG}"),
        "labels_url": format!("{base}/obj/labels.nii.gz?{SIG}"),
        "volumes_url": format!("{base}/obj/volumes.json?{SIG}"),
        "model": "model21_104class",
        "brain_mask": false,
    })
}

/// The synthetic head (an ellipsoid, 40³ at 1.2 mm): segments in seconds.
fn tiny_head() -> Vec<u8> {
    volumetry::nifti::encode(&volumetry::synthetic::head())
}

fn four_d() -> Vec<u8> {
    let v = volumetry::Volume {
        dims: [6, 6, 6],
        data: vec![5.0f32; 216],
        header: Default::default(),
    };
    let mut b = volumetry::nifti::encode(&v);
    b.extend(vec![0u8; 216 * 4]); // the second volume
    b[40..42].copy_from_slice(&4i16.to_le_bytes());
    b[48..50].copy_from_slice(&2i16.to_le_bytes());
    b
}

#[tokio::test]
async fn run_status_cancel_and_outputs() {
    let (store, base) = Store::start().await;
    store.put("head.nii", tiny_head());
    let w = Worker::start(&[]);
    let http = reqwest::Client::new();

    let id = w.submit(&http, input(&base, "/obj/head.nii")).await;
    let done = w
        .wait_for(&http, &id, &["COMPLETED", "FAILED"], Duration::from_secs(240))
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let out = &done["output"];
    assert_eq!(out["model"], "model21_104class");
    assert_eq!(out["dims"], json!([40, 40, 40]));
    for k in ["download_s", "segment_s", "upload_s", "total_s", "model_s", "conform_s"] {
        assert!(out["timings"][k].as_f64().is_some(), "timing {k} missing: {out}");
    }
    assert!(done["executionTime"].as_u64().is_some() && done["delayTime"].as_u64().is_some());
    // outputs were uploaded and decode; their digests match the report
    let labels = store.get("labels.nii.gz").expect("labels uploaded");
    let volumes = store.get("volumes.json").expect("volumes uploaded");
    use sha2::Digest;
    assert_eq!(out["labels_sha256"], hex::encode(sha2::Sha256::digest(&labels)));
    assert_eq!(out["volumes_sha256"], hex::encode(sha2::Sha256::digest(&volumes)));
    let dir = std::env::temp_dir().join(format!("nv-wt-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("l.nii.gz"), &labels).unwrap();
    let lab = volumetry::nifti::read_labels(dir.join("l.nii.gz")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(lab.dims, [40, 40, 40]);
    let vj: volumetry::VolumesJson = serde_json::from_slice(&volumes).unwrap();
    assert_eq!(vj.model, "model21_104class");
    assert!(vj.regions.iter().all(|r| r.percentile.is_none()));
    // which engine ran it is recorded in the output and the volumes
    let engine = out["engine"].as_str().unwrap();
    assert!(engine.starts_with("cpu-"), "{engine}");
    assert_eq!(vj.engine.as_deref(), Some(engine));

    // cancel: one running (stalled download), one queued
    let running = w.submit(&http, input(&base, "/stall")).await;
    w.wait_for(&http, &running, &["IN_PROGRESS"], Duration::from_secs(10))
        .await;
    let queued = w.submit(&http, input(&base, "/obj/head.nii")).await;
    assert_eq!(w.status(&http, &queued).await["status"], "IN_QUEUE");
    for id in [&queued, &running] {
        let c = w.call(&http, Method::POST, &format!("/cancel/{id}")).await;
        assert_eq!(c["status"], "CANCELLED");
    }
    assert_eq!(w.status(&http, &running).await["status"], "CANCELLED");
    assert_eq!(w.status(&http, &queued).await["status"], "CANCELLED");

    let r = w.request(&http, Method::GET, "/status/nope").await;
    assert_eq!(r.status(), 404);
    let h = w.call(&http, Method::GET, "/health").await;
    assert_eq!(h["jobs"]["completed"], 1, "{h}");
    assert_eq!(h["jobs"]["cancelled"], 2, "{h}");
    assert_eq!(h["engine"]["kind"], "cpu", "{h}");
    assert_eq!(h["engine"]["name"].as_str(), Some(engine), "{h}");
    let logs = w.logs();
    assert!(logs.contains("job completed"), "{logs}");
}

#[tokio::test]
async fn wrong_key_or_endpoint_is_refused() {
    let w = Worker::start(&[]);
    let http = reqwest::Client::new();
    let body = json!({"input": input("http://127.0.0.1:9", "/obj/x")});
    for auth in [
        None,
        Some("Bearer wrong-key-0123456789abcdef"),
        Some("Bearer "),
        Some("test-key-0123456789abcdeX"),
    ] {
        let mut rq = http.post(w.api("/run")).json(&body);
        if let Some(a) = auth {
            rq = rq.header("authorization", a);
        }
        assert_eq!(rq.send().await.unwrap().status(), 401, "{auth:?}");
    }
    assert_eq!(
        http.get(w.api("/status/x"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(http.post(w.api("/cancel/x")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(w.api("/health")).send().await.unwrap().status(), 401);
    // the bare key (RunPod also accepts it without "Bearer") and another endpoint id
    assert_eq!(
        http.get(w.api("/health"))
            .header("authorization", KEY)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let other = format!("{}/v2/other/health", w.url);
    assert_eq!(http.get(other).bearer_auth(KEY).send().await.unwrap().status(), 404);
    // malformed bodies
    let r = http
        .post(w.api("/run"))
        .bearer_auth(KEY)
        .body("not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(w.api("/run"))
        .bearer_auth(KEY)
        .json(&json!({"nothing": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn refused_inputs_fail_with_a_reason() {
    let (store, base) = Store::start().await;
    store.put("text.nii", b"this is not an image at all, just text".repeat(20));
    store.put("big.nii", vec![0u8; 20_000]);
    store.put("4d.nii", four_d());
    store.put("head.nii", tiny_head());
    let w = Worker::start(&["--max-input-bytes", "10000"]);
    let http = reqwest::Client::new();
    let mut cases = vec![
        (input(&base, "/expired"), "expired"),
        (input(&base, "/obj/missing.nii"), "HTTP 404"),
        (input(&base, "/obj/text.nii"), "not a single 3D NIfTI"),
        (input(&base, "/obj/big.nii"), "too large"),
        (input(&base, "/obj/4d.nii"), "volumes"),
        (input("http://127.0.0.1:1", "/obj/head.nii"), "cannot download"),
    ];
    let mut bad_model = input(&base, "/obj/head.nii");
    bad_model["model"] = json!("no_such_model");
    cases.push((bad_model, "unknown model"));
    let mut bad_url = input(&base, "/obj/head.nii");
    bad_url["labels_url"] = json!("file:///etc/passwd");
    cases.push((bad_url, "http(s) URL"));
    for (inp, want) in cases {
        let id = w.submit(&http, inp).await;
        let v = w
            .wait_for(&http, &id, &["FAILED", "COMPLETED"], Duration::from_secs(60))
            .await;
        assert_eq!(v["status"], "FAILED", "{v}");
        let err = v["error"].as_str().unwrap();
        assert!(err.contains(want), "error {err:?} should mention {want:?}");
        assert!(
            !err.contains("SECRETSIGNATURE42") && !err.contains("127.0.0.1"),
            "URL in error: {err}"
        );
    }
    // nothing was uploaded for any refused job
    assert!(store.get("labels.nii.gz").is_none() && store.get("volumes.json").is_none());
}

#[tokio::test]
async fn slow_jobs_time_out() {
    let (_store, base) = Store::start().await;
    let w = Worker::start(&["--job-timeout", "0.5"]);
    let http = reqwest::Client::new();
    let id = w.submit(&http, input(&base, "/stall")).await;
    let v = w
        .wait_for(
            &http,
            &id,
            &["TIMED_OUT", "FAILED", "COMPLETED"],
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(v["status"], "TIMED_OUT", "{v}");
    assert!(v["error"].as_str().unwrap().contains("limit"), "{v}");
    // a job may ask for less than the worker's limit (RunPod policy.executionTimeout)
    let w2 = Worker::start(&[]);
    let r = http
        .post(w2.api("/run"))
        .bearer_auth(KEY)
        .json(&json!({"input": input(&base, "/stall"), "policy": {"executionTimeout": 300}}))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let v = w2.wait_for(&http, &id, &["TIMED_OUT"], Duration::from_secs(20)).await;
    assert_eq!(v["status"], "TIMED_OUT");
}

#[tokio::test]
async fn full_queue_answers_429() {
    let (_store, base) = Store::start().await;
    let w = Worker::start(&["--queue-capacity", "1"]);
    let http = reqwest::Client::new();
    let running = w.submit(&http, input(&base, "/stall")).await;
    w.wait_for(&http, &running, &["IN_PROGRESS"], Duration::from_secs(10))
        .await;
    let _queued = w.submit(&http, input(&base, "/stall")).await;
    let r = w.run(&http, input(&base, "/stall")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn stdin_eof_and_sigterm_shut_down() {
    // parent gone (stdin closed) with a stalled job: finishes or requeues within the grace
    let (_store, base) = Store::start().await;
    let mut w = Worker::start(&["--shutdown-grace", "0.5"]);
    let http = reqwest::Client::new();
    let id = w.submit(&http, input(&base, "/stall")).await;
    w.wait_for(&http, &id, &["IN_PROGRESS"], Duration::from_secs(10)).await;
    drop(w.child.stdin.take());
    let t0 = Instant::now();
    loop {
        if let Some(status) = w.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "worker did not exit; log:\n{}",
            w.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = w.logs();
    assert!(logs.contains("put back in the queue"), "{logs}");

    let mut w = Worker::start(&[]);
    let pid = w.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let t0 = Instant::now();
    while w.child.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(15), "worker ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Labels of a finished job, decoded from the uploaded NIfTI.
fn uploaded_labels(store: &Store) -> volumetry::Volume<u8> {
    let dir = std::env::temp_dir().join(format!("nv-wt-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("l.nii.gz"),
        store.get("labels.nii.gz").expect("labels uploaded"),
    )
    .unwrap();
    let lab = volumetry::nifti::read_labels(dir.join("l.nii.gz")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    lab
}

/// The middle 48³ block of the reference T1 (conformed, 1 mm), where it lies in the head:
/// real anatomy the region model labels, small enough for a software GPU.
fn t1_block() -> volumetry::Volume<f32> {
    let t1 = volumetry::nifti::read_f32(volumetry::assets_dir().join("reference/t1_crop/conformed_input.nii.gz"))
        .expect("the reference T1 (set NEUROVOL_ASSETS)");
    let side = 48;
    let o = t1.dims.map(|d| d / 2 - side / 2);
    let mut data = Vec::with_capacity(side * side * side);
    for k in o[2]..o[2] + side {
        for j in o[1]..o[1] + side {
            let row = t1.dims[0] * (j + t1.dims[1] * k);
            data.extend_from_slice(&t1.data[row + o[0]..row + o[0] + side]);
        }
    }
    let mut a = t1.header.sform_affine();
    for r in &mut a {
        r[3] += (0..3).map(|c| r[c] * o[c] as f64).sum::<f64>();
    }
    let mut header = t1.header.clone();
    header.set_affine(&a, 1);
    volumetry::Volume {
        dims: [side; 3],
        data,
        header,
    }
}

/// `--engine gpu` (lavapipe here, NVIDIA's Vulkan driver in the GPU image): the health
/// answer names the adapter, a job runs on it, says so in its output and volumes.json,
/// and its labels are the CPU engine's.
#[tokio::test]
async fn the_gpu_engine_runs_jobs_and_names_its_adapter() {
    let (store, base) = Store::start().await;
    let block = t1_block();
    store.put("head.nii", volumetry::nifti::encode(&block));
    let w = Worker::start(&["--engine", "gpu"]);
    let http = reqwest::Client::new();
    let h = w.call(&http, Method::GET, "/health").await;
    assert_eq!(h["engine"]["kind"], "gpu", "{h}");
    let name = h["engine"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("gpu-wgpu: ") && name.contains("Vulkan"), "{name}");

    let id = w.submit(&http, input(&base, "/obj/head.nii")).await;
    let done = w
        .wait_for(&http, &id, &["COMPLETED", "FAILED"], Duration::from_secs(600))
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["output"]["engine"].as_str(), Some(name.as_str()));
    let vj: volumetry::VolumesJson = serde_json::from_slice(&store.get("volumes.json").unwrap()).unwrap();
    assert_eq!(vj.engine.as_deref(), Some(name.as_str()));

    let gpu = uploaded_labels(&store);
    let assets = volumetry::assets_dir();
    let opts = volumetry::SegmentOptions {
        brain_mask: false,
        ..Default::default()
    };
    let cpu = volumetry::segment(&block, &assets, &opts).unwrap();
    assert_eq!(gpu.dims, cpu.labels_native.dims);
    let differ = gpu
        .data
        .iter()
        .zip(&cpu.labels_native.data)
        .filter(|(a, b)| a != b)
        .count();
    let labelled = cpu.labels_native.data.iter().filter(|&&v| v != 0).count();
    assert!(labelled > 1000, "the synthetic head must get labels ({labelled})");
    assert!(
        differ * 1000 <= labelled,
        "{differ} of {labelled} labelled voxels differ from the CPU engine"
    );
}

/// No Vulkan driver: the worker refuses to start, naming the engine, and never falls back
/// to the CPU.
#[test]
fn the_gpu_engine_without_an_adapter_refuses_to_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_neurovol-worker"))
        .args(["--listen", "127.0.0.1:0", "--engine", "gpu"])
        .env("NEUROVOL_WORKER_API_KEY", KEY)
        // the Vulkan loader's driver list: none
        .env("VK_ICD_FILENAMES", "/nonexistent/none.json")
        .env("VK_DRIVER_FILES", "/nonexistent/none.json")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GPU engine (wgpu/Vulkan): no Vulkan adapter found"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready at"));
}
