//! What a serving process checks and starts: the object store, the start-up checks, the
//! segmentation client and the job runners.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::*;
use crate::convert::{self};
use crate::db::Db;
use crate::object_store::ObjectStore;
use crate::segmenter::Segmenter;
use volumetry::deface::{Defacer, MaskGrid};

/// The configured object store: S3/R2 when configured, else the local folder whose signed
/// URLs the app serves itself at `object_url_base` (where the worker reaches the app).
pub async fn open_store(config: &crate::config::Config, object_url_base: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    use crate::object_store::{LocalObjectStore, S3ObjectStore};
    if let Some(s3) = config.s3_settings()? {
        let store = S3ObjectStore::connect(s3)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the S3 object store: {e}"))?;
        // R2 tokens are often not allowed to create buckets: a warning, not an error
        if let Err(e) = store.ensure_bucket().await {
            tracing::warn!(error = %e, "cannot check or create the S3 bucket");
        }
        tracing::info!(store = "s3", "object store");
        return Ok(Arc::new(store));
    }
    let secret =
        crate::storage::load_or_create_secret(config.object_url_key.as_ref().map(|k| k.expose()), &config.data_dir)?;
    let signer = crate::storage::UrlSigner::new(secret, object_url_base);
    tracing::info!(store = "local", "object store");
    Ok(Arc::new(LocalObjectStore::new(config.data_dir.join("objects"), signer)))
}

/// Removes `<root>/<pid>` dirs of processes that no longer run (killed mid-step).
fn remove_dead_process_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let alive = name
            .parse::<u32>()
            .is_ok_and(|pid| pid == std::process::id() || Path::new("/proc").join(&name).exists());
        if !alive && std::fs::remove_dir_all(e.path()).is_ok() {
            tracing::info!(pid = %name, "removed the temp files of a stopped process");
        }
    }
}

/// The dcm2niix version, or a clear error when it is missing (checked at start).
pub fn check_dcm2niix(bin: &Path) -> anyhow::Result<String> {
    convert::dcm2niix_version(bin).map_err(|e| anyhow::anyhow!("{e} (install dcm2niix, or set NEUROVOL_DCM2NIIX)"))
}

/// What the pipeline needs before `serve` touches the database: dcm2niix, the brain-mask
/// model the defacing runs here, a segmentation service that can run, and (for the local
/// worker) its model files. Each missing part stops the server with one line naming the
/// setting that fixes it.
pub fn preflight(config: &crate::config::Config) -> anyhow::Result<()> {
    if config.pipeline_concurrency == 0 {
        return Ok(());
    }
    let version = check_dcm2niix(&config.dcm2niix)?;
    tracing::info!(dcm2niix = %version, "converter");
    let backend = config.segmenter_backend();
    backend.check_runnable().map_err(|e| anyhow::anyhow!(e))?;
    if let crate::segmenter::Backend::Local(local) = &backend {
        check_model_files(&local.assets, &config.segment_model)?;
    }
    // the defacing runs here, whichever service segments
    check_model_files(&config.assets_dir, volumetry::ModelId::Mindgrab.folder())
}

fn check_model_files(assets: &Path, model: &str) -> anyhow::Result<()> {
    let dir = volumetry::model::models_dir(assets).join(model);
    if !["arch.json", "model.safetensors", "colormap.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        anyhow::bail!(
            "the model files of {model} are not in {} (set NEUROVOL_ASSETS to the assets folder)",
            dir.display()
        );
    }
    Ok(())
}

/// The defacing every converted volume goes through (mindgrab on the coarse grid).
pub fn load_defacer(assets: &Path) -> anyhow::Result<Arc<Defacer>> {
    Defacer::load(assets, MaskGrid::Coarse).map(Arc::new).map_err(|e| {
        anyhow::anyhow!("cannot load the defacing's brain-mask model: {e} (set NEUROVOL_ASSETS to the assets folder)")
    })
}

/// Starts the segmentation client (in the background: the local worker takes a moment)
/// and this process's job runners. [`preflight`] has checked what they need.
pub fn start(
    config: &crate::config::Config,
    db: Db,
    store: Arc<dyn ObjectStore>,
    wake: Arc<Notify>,
) -> anyhow::Result<()> {
    let mut settings = PipelineSettings::from_config(config)?;
    // Temp dirs per process, so a restarted process can remove what a killed one left
    // without touching the live dirs of another process sharing this data dir.
    let root = config.tmp_dir().join("pipeline");
    remove_dead_process_dirs(&root);
    settings.tmp_dir = root.join(std::process::id().to_string());
    if settings.concurrency == 0 {
        tracing::info!("pipeline disabled in this process (NEUROVOL_PIPELINE_CONCURRENCY=0)");
        return Ok(());
    }
    let slot: SegmenterSlot = Arc::new(tokio::sync::OnceCell::new());
    {
        let (slot, backend) = (slot.clone(), config.segmenter_backend());
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(2);
            loop {
                match Segmenter::start(backend.clone(), crate::segmenter::ClientSettings::default()).await {
                    Ok(seg) => {
                        let _ = slot.set(seg);
                        tracing::info!("segmentation service ready");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the segmentation service; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
    }
    let defacer = load_defacer(&config.assets_dir)?;
    {
        let (db, store, defacer) = (db.clone(), store.clone(), defacer.clone());
        tokio::spawn(async move { super::backfill::deface_stored_scans(&db, &*store, &defacer).await });
    }
    let steps = Steps {
        store,
        segmenter: slot,
        defacer,
        settings,
    };
    Pipeline::new(db, config.uses_postgres(), steps, wake).spawn();
    Ok(())
}
