//! `neurovol`: the NeuroVol server and its command-line tools.

mod auth;
mod cli;
mod config;
mod convert;
mod db;
mod object_store;
mod pipeline;
mod segmenter;
mod storage;
mod web;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

#[derive(Parser)]
#[command(name = "neurovol", version, about = "Brain MRI volumetry with privacy by design")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app (applies pending database migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// De-identify a ZIP of DICOM files (the server's authoritative step, as a command).
    Deid(cli::deid::DeidArgs),
    /// Segment a NIfTI on this machine's CPU and report region volumes (and percentiles).
    Segment(cli::segment::SegmentArgs),
    /// Run the whole pipeline on one ZIP without the web UI (de-identify, convert, segment, score).
    Analyze(cli::analyze::AnalyzeArgs),
}

fn init_logging() {
    // JSON lines when NEUROVOL_LOG_FORMAT=json (for collectors), readable text otherwise.
    let filter = EnvFilter::try_from_env("NEUROVOL_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("NEUROVOL_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json { builder.json().init() } else { builder.with_ansi(false).init() }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    if let Command::Deid(args) = &cli.command {
        return match cli::deid::run(args) {
            Ok(outcome) => {
                eprintln!(
                    "de-identified {} file(s); kept facts {}",
                    outcome.report.files_written,
                    serde_json::to_string(&outcome.facts).unwrap_or_default()
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("neurovol deid: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("neurovol: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Command::Segment(args) = &cli.command {
        return match cli::segment::run(args, &config.assets_dir) {
            Ok(report) => {
                eprintln!("segmented with {}: {} regions", args.model, report.regions.len());
                std::process::ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("neurovol segment: {reason}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("neurovol: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Deid(_) | Command::Segment(_) => unreachable!("handled before the runtime starts"),
            Command::Analyze(args) => cli::analyze::run(&args, &config).await,
            Command::Migrate => {
                let db = db::connect(&config).await?;
                db::migrate(&db).await?;
                println!("migrations applied ({})", db::redact_url(&config.effective_database_url()));
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("neurovol: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let db = db::connect(&config).await?;
    db::migrate(&db).await?;
    auth::warm_up().await;
    let config = Arc::new(config);
    tracing::info!(
        database = if config.uses_postgres() { "postgres" } else { "sqlite" },
        data_dir = %config.data_dir.display(),
        site_root = %config.site_root.display(),
        "starting"
    );
    // Hourly clean-up of expired sessions and throttle counters.
    {
        let (db, config) = (db.clone(), config.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                if let Err(e) = auth::purge_expired(&db, &config).await {
                    tracing::warn!(error = %e, "session clean-up failed");
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    // where the worker fetches the local store's signed URLs (the bound port if it was 0)
    let object_url_base = config.object_url_base.clone().unwrap_or_else(|| {
        if config.public_url.ends_with(":0") {
            format!("http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default())
        } else {
            config.public_url.clone()
        }
    });
    let store = pipeline::open_store(&config, &object_url_base).await?;
    let wake = Arc::new(tokio::sync::Notify::new());
    pipeline::start(&config, db.clone(), store.clone(), wake.clone())?;
    let state = web::AppState {
        leptos: web::leptos_options(&config),
        privacy: Arc::new(web::privacy::facts(&config)),
        db,
        config,
        store,
        wake,
    };
    web::serve(state, listener).await
}
