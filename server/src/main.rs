//! `neurovol`: the NeuroVol server and its command-line tools.

//! Parses the command line and calls the library (`server`), which holds everything else.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use server::config::Config;
use server::{cli, db};

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
    /// Segment a NIfTI on this machine's CPU or GPU and report region volumes (and percentiles).
    Segment(cli::segment::SegmentArgs),
    /// Remove the face from a head NIfTI (the pipeline's defacing, as a command).
    Deface(cli::deface::DefaceArgs),
    /// Run the whole pipeline on one ZIP without the web UI (de-identify, convert, segment, score).
    Analyze(cli::analyze::AnalyzeArgs),
    /// Compare our volumes with FreeSurfer's on FreeSurfer-processed brains (Dice, volume
    /// ratio and Δz against aseg.stats, per structure).
    Accuracy(cli::accuracy::AccuracyArgs),
    /// Learn this site's normative offsets from its healthy controls' volumes.json files and
    /// write the calibration file the server reads (NEUROVOL_CALIBRATION).
    Calibrate(cli::calibrate::CalibrateArgs),
    /// Fetch the pinned upstream model files into DIR/models (SHA-256 checked) and derive
    /// the weights the engine reads from them.
    Assets(cli::assets::AssetsArgs),
}

fn init_logging() {
    // JSON lines when NEUROVOL_LOG_FORMAT=json (for collectors), readable text otherwise.
    let filter = EnvFilter::try_from_env("NEUROVOL_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("NEUROVOL_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init()
    } else {
        builder.with_ansi(false).init()
    }
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
    if let Command::Calibrate(args) = &cli.command {
        return match cli::calibrate::run(args) {
            Ok(done) => {
                print!("{}", done.table());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("neurovol calibrate: {e}");
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
        let site = match config.load_site() {
            Ok(site) => site,
            Err(e) => {
                eprintln!("neurovol: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        return match cli::segment::run(args, &config.assets_dir, &site) {
            Ok(done) => {
                eprintln!("{}", done.summary());
                std::process::ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("neurovol segment: {reason}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Command::Accuracy(args) = &cli.command {
        return match cli::accuracy::run(args, &config.assets_dir) {
            Ok(table) => {
                print!("{table}");
                std::process::ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("neurovol accuracy: {reason}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Command::Deface(args) = &cli.command {
        return match cli::deface::run(args, &config.assets_dir) {
            Ok(defacing) => {
                println!("{}", serde_json::to_string(&defacing).unwrap_or_default());
                std::process::ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("neurovol deface: {reason}");
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
            Command::Serve => server::serve(config).await,
            Command::Deid(_)
            | Command::Segment(_)
            | Command::Deface(_)
            | Command::Accuracy(_)
            | Command::Calibrate(_) => {
                unreachable!("handled before the runtime starts")
            }
            Command::Analyze(args) => cli::analyze::run(&args, &config).await,
            Command::Assets(args) => cli::assets::run(&args).await,
            Command::Migrate => {
                let db = db::connect(&config).await?;
                db::migrate(&db).await?;
                println!(
                    "migrations applied ({})",
                    db::redact_url(&config.effective_database_url())
                );
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
