//! `neurovol-worker`: see the library docs and docs/segmentation-worker.md.

use std::io::Read;
use std::process::ExitCode;

use clap::Parser;
use neurovol_worker::WorkerConfig;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cfg = WorkerConfig::parse();
    let filter = EnvFilter::try_from_env("NEUROVOL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("NEUROVOL_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init()
    } else {
        builder.with_ansi(false).init()
    }
    if let Err(e) = cfg.validate() {
        eprintln!("neurovol-worker: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("neurovol-worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        if cfg.exit_on_stdin_eof {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut sink = [0u8; 256];
                let mut stdin = std::io::stdin().lock();
                while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
                tracing::info!("stdin closed (parent gone)");
                let _ = tx.send(true);
            });
        }
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        neurovol_worker::serve(cfg, listener, rx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("neurovol-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
