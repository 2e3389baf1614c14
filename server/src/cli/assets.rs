//! `neurovol assets --dest DIR`
//!
//! Makes DIR an assets folder on a machine that has none (a fresh clone without `../shared`):
//! downloads the upstream files pinned in the manifest built into the binary
//! (`crates/assets/MANIFEST.json`) into `DIR/models`, refusing any whose SHA-256 differs, then
//! derives the engine's `model.safetensors` + `arch.json` from the upstream TF.js files
//! (`assets::install`; the derived weights are checked against the manifest's SHA-256 too).
//! Files already intact are kept, so a second run downloads nothing. Afterwards
//! `NEUROVOL_ASSETS=DIR` points the server at it.

use std::error::Error as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use assets::Outcome;

/// GitHub's `/raw/` URLs answer with one redirect (to raw.githubusercontent.com); a few more are
/// tolerated, endless chains are not.
const MAX_REDIRECTS: usize = 3;

#[derive(Debug, clap::Args)]
pub struct AssetsArgs {
    /// Assets folder to fill: the model files go to DIR/models. Then set NEUROVOL_ASSETS=DIR.
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
}

/// Downloads and derives into `DEST/models`, prints one line per manifest file and a summary.
/// Stops at the first refused file (the error names it); what was verified before stays.
pub async fn run(args: &AssetsArgs) -> anyhow::Result<()> {
    let manifest = assets::pinned_manifest().context("the manifest built into this binary")?;
    let models = args.dest.join("models");
    let mut downloader = HttpDownloader {
        client: http_client()?,
        runtime: tokio::runtime::Handle::current(),
    };
    // The crate's Downloader writes into a blocking sink (the checked temporary file), so the
    // install runs on a blocking thread that drives each request on this runtime.
    let report = tokio::task::spawn_blocking({
        let (manifest, models) = (manifest.clone(), models.clone());
        move || assets::install(&manifest, &models, &mut downloader)
    })
    .await
    .context("the asset download task stopped")??;
    write_manifest_copy(&models)?;

    let mut counts = [0usize; 4];
    for f in &manifest.files {
        let (slot, what) = match report.outcome(&f.path) {
            Outcome::Downloaded => (0, "downloaded"),
            Outcome::Derived => (1, "derived"),
            Outcome::AlreadyPresent => (2, "present"),
            Outcome::Unavailable => (3, "skipped"),
        };
        counts[slot] += 1;
        println!("{what:<10} {}", f.path);
    }
    let [downloaded, derived, present, skipped] = counts;
    println!(
        "assets: {downloaded} downloaded, {derived} derived, {present} already present, \
         {skipped} skipped (NeuroVol's own documents, not needed to run), in {}",
        models.display()
    );
    println!("set NEUROVOL_ASSETS={}", args.dest.display());
    Ok(())
}

/// Keeps `DEST/models/MANIFEST.json` equal to the pinned manifest, so the folder can be
/// checked later (`assets::verify`) like the team's assets folder.
fn write_manifest_copy(models: &std::path::Path) -> anyhow::Result<()> {
    let path = models.join("MANIFEST.json");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(assets::PINNED_MANIFEST_JSON) {
        std::fs::write(&path, assets::PINNED_MANIFEST_JSON)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// https only (also after redirects), bounded redirects and time. The size limit is the
/// manifest's byte count, enforced by the sink `assets::fetch` hands us: a longer body is cut
/// off and refused.
fn http_client() -> anyhow::Result<reqwest::Client> {
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt.url().scheme() != "https" {
            attempt.error("redirect to a URL that is not https")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .https_only(true)
        .redirect(redirects)
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("neurovol/", env!("CARGO_PKG_VERSION"), " (assets)"))
        .build()
        .context("cannot build the HTTP client")
}

struct HttpDownloader {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl assets::Downloader for HttpDownloader {
    fn download(&mut self, url: &str, sink: &mut dyn Write) -> Result<(), String> {
        self.runtime.block_on(async {
            let mut response = self.client.get(url).send().await.map_err(describe)?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            // streamed chunk by chunk: the sink stops a body larger than the manifest says
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
                sink.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

/// A reqwest error with its causes (its own message alone is often just "error sending
/// request"); the URL is left out because the caller's error already names it.
fn describe(e: reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    std::iter::once(e.without_url().to_string())
        .chain(causes)
        .collect::<Vec<_>>()
        .join(": ")
}
