//! Pipeline benchmark: time of each step on the T1 fixture (median of N sequential scans)
//! and peak memory of the server (and of its worker) while 4 uploads are processed at once.
//!
//! ```sh
//! cargo bench -p server --bench pipeline                       # 5 runs, with mindgrab
//! NEUROVOL_BENCH_RUNS=3 NEUROVOL_BENCH_BRAIN_MASK=0 cargo bench -p server --bench pipeline
//! ```
//! The real `neurovol serve` (this profile's build) on SQLite with the local store and the
//! local CPU worker, uploads over HTTP as in the tests. Step times come from `job_runs`
//! (server-side), upload = the client's `complete` call (assembly, authoritative
//! de-identification, dry-run conversion, storing). Peak memory = `VmHWM` of the processes.

// the integration tests' kit (a bench target cannot name tests/ as a module otherwise)
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::TestServer;
use common::upload_kit::*;
use sqlx::Row;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

async fn upload_one(b: &common::Browser, zip: &[u8]) -> (String, f64) {
    let (st, created) = create(b, zip.len(), 8 << 20, None).await;
    assert!(st.is_success(), "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    for (i, part) in zip.chunks(8 << 20).enumerate() {
        put_chunk(b, &id, i, part).await;
    }
    let t = Instant::now();
    let (st, done) = complete(b, &id).await;
    assert!(st.is_success(), "{done}");
    (done["scan_id"].as_str().unwrap().to_string(), t.elapsed().as_secs_f64())
}

async fn wait_done(db: &sqlx::AnyPool, scans: &[String], server: &TestServer) {
    let until = Instant::now() + Duration::from_secs(3600);
    loop {
        let mut all = true;
        for s in scans {
            let st: String = sqlx::query("SELECT status FROM scans WHERE id = $1")
                .bind(s)
                .fetch_one(db)
                .await
                .unwrap()
                .get("status");
            assert_ne!(st, "failed", "log:\n{}", server.logs());
            all &= st == "done";
        }
        if all {
            return;
        }
        assert!(Instant::now() < until, "timeout");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("NEUROVOL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mask = std::env::var("NEUROVOL_BENCH_BRAIN_MASK").unwrap_or_else(|_| "1".into());
    let zip = fixture("t1_mprage_sag_phi.zip");
    let env = [
        ("NEUROVOL_PIPELINE_CONCURRENCY", "1"),
        ("NEUROVOL_SEGMENT_BRAIN_MASK", mask.as_str()),
    ];

    // 1. step times, one scan at a time (NEUROVOL_BENCH_RUNS=0 skips this part)
    if runs > 0 {
        let server = TestServer::start(&env).await;
        let db = server.db().await;
        let b = signed_in(&server).await;
        let mut upload_s = Vec::new();
        let mut total_s = Vec::new();
        let mut steps: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut defacing_s = Vec::new();
        for i in 0..runs {
            let t = Instant::now();
            let (scan, up) = upload_one(&b, &zip).await;
            wait_done(&db, std::slice::from_ref(&scan), &server).await;
            total_s.push(t.elapsed().as_secs_f64());
            upload_s.push(up);
            for r in
                sqlx::query("SELECT step, started_ms, finished_ms FROM job_runs WHERE scan_id = $1 AND outcome = 'ok'")
                    .bind(&scan)
                    .fetch_all(&db)
                    .await
                    .unwrap()
            {
                let ms = r.get::<Option<i64>, _>("finished_ms").unwrap() - r.get::<i64, _>("started_ms");
                steps.entry(r.get("step")).or_default().push(ms as f64 / 1000.0);
            }
            let conversion: String = sqlx::query("SELECT conversion_json FROM scans WHERE id = $1")
                .bind(&scan)
                .fetch_one(&db)
                .await
                .unwrap()
                .get(0);
            let conversion: serde_json::Value = serde_json::from_str(&conversion).unwrap();
            defacing_s.push(conversion["defacing"]["mask_s"].as_f64().unwrap());
            eprintln!("run {}: {:.1} s", i + 1, total_s.last().unwrap());
        }
        drop(server);
        println!("T1 fixture (t1_mprage_sag_phi.zip, 256 files), brain mask {mask}, median of {runs}:");
        println!(
            "  upload complete (assemble + de-identify + dry-run conversion + store): {:.2} s",
            median(upload_s)
        );
        for (step, v) in &steps {
            println!("  {step}: {:.2} s", median(v.clone()));
        }
        println!(
            "  of convert, the defacing (brain mask + plane): {:.2} s",
            median(defacing_s)
        );
        println!("  upload → done: {:.1} s", median(total_s));
    }

    // 2. peak memory with 4 uploads at once (a fresh server, so VmHWM covers only this)
    let env4 = [
        ("NEUROVOL_PIPELINE_CONCURRENCY", "4"),
        ("NEUROVOL_SEGMENT_BRAIN_MASK", mask.as_str()),
    ];
    let server = TestServer::start(&env4).await;
    let db = server.db().await;
    // two accounts: one account may have at most 3 uploads open at once
    let (b1, b2) = (signed_in(&server).await, signed_in(&server).await);
    let t = Instant::now();
    let (a, c, d, e) = tokio::join!(
        upload_one(&b1, &zip),
        upload_one(&b1, &zip),
        upload_one(&b2, &zip),
        upload_one(&b2, &zip)
    );
    let scans = vec![a.0, c.0, d.0, e.0];
    wait_done(&db, &scans, &server).await;
    let workers: Vec<(u32, u64)> = children(server.pid())
        .into_iter()
        .filter_map(|p| vm_hwm_kib(p).map(|m| (p, m)))
        .collect();
    println!(
        "4 uploads at once: all done in {:.1} s; server peak RSS (VmHWM) {:.0} MiB; worker peak {:?} MiB",
        t.elapsed().as_secs_f64(),
        vm_hwm_kib(server.pid()).unwrap_or(0) as f64 / 1024.0,
        workers
            .iter()
            .map(|(_, m)| (*m as f64 / 1024.0).round())
            .collect::<Vec<_>>()
    );
}
