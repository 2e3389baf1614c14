//! `neurovol analyze INPUT.zip --out DIR [--series N] [--model NAME] [--no-brain-mask]`
//!
//! The whole pipeline on one machine, without the web UI or the database: de-identify
//! (fresh random seed), convert with dcm2niix, segment through the configured segmentation
//! service (the local worker by default, RunPod when configured), score against the
//! normative model. Writes `DIR/volume.nii.gz` (the de-identified NIfTI),
//! `DIR/labels.nii.gz`, `DIR/volumes.json` (the worker's) and `DIR/report.json`.
//!
//! Objects move through the configured object store exactly as in the server: a private
//! temporary local store whose signed URLs this command serves on a loopback port, or the
//! S3/R2 store (then the objects are deleted again at the end). Nothing identifying is
//! written anywhere; the temp dir is removed on success and on every failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::config::Config;
use crate::object_store::ObjectStore;
use crate::pipeline::{PipelineSettings, SegmenterSlot, StepError, Steps};
use crate::segmenter::{ClientSettings, Segmenter};
use crate::storage::{self, ObjectFolder, UrlSigner};
use crate::temp_dir::TempDir;

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// ZIP of one DICOM series (or several: choose with --series).
    pub input: PathBuf,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// 1-based series number when the ZIP holds several series.
    #[arg(long)]
    pub series: Option<usize>,
    /// Region model (default: the configured one, model21_104class).
    #[arg(long)]
    pub model: Option<String>,
    /// Skip mindgrab (no intracranial volume; about twice as fast on a CPU).
    #[arg(long)]
    pub no_brain_mask: bool,
}

pub async fn run(args: &AnalyzeArgs, config: &Config) -> anyhow::Result<()> {
    if !args.input.is_file() {
        return Err(anyhow!("cannot read {}: no such file", args.input.display()));
    }
    let mut settings = PipelineSettings::from_config(config)?;
    if let Some(m) = &args.model {
        volumetry::ModelId::parse(m).map_err(|e| anyhow!("{e}"))?;
        settings.model = m.clone();
    }
    if args.no_brain_mask {
        settings.brain_mask = false;
    }
    crate::pipeline::check_dcm2niix(&settings.convert.dcm2niix)?;
    let s3 = config.s3_settings()?;
    let backend = config.segmenter_backend();
    if s3.is_none() && matches!(backend, crate::segmenter::Backend::RunPod { .. }) {
        return Err(anyhow!(
            "a RunPod segmenter needs the S3 object store (the worker must reach the signed URLs): set NEUROVOL_S3_*"
        ));
    }

    let tmp = TempDir::new(&std::env::temp_dir(), "neurovol-analyze").context("cannot create a temp dir")?;
    settings.tmp_dir = tmp.path().join("work");

    // 1. de-identify (the authoritative step, as on the server)
    let deid_zip = tmp.path().join("deid.zip");
    let facts = {
        let (input, out, series) = (args.input.clone(), deid_zip.clone(), args.series);
        tokio::task::spawn_blocking(move || -> anyhow::Result<deid::Facts> {
            use std::io::{BufReader, BufWriter, Write};
            let i = std::fs::File::open(&input).with_context(|| format!("cannot read {}", input.display()))?;
            let o = std::fs::File::create(&out).context("cannot write a temp file")?;
            let mut opts = deid::Options::new(rand::random::<[u8; 32]>());
            opts.series = series.map(|n| deid::SeriesSelector::Index(n.saturating_sub(1)));
            let mut w = BufWriter::new(o);
            let outcome = deid::deidentify_zip(BufReader::new(i), &mut w, &opts)
                .map_err(|e| anyhow!("the scan was refused: {e}"))?;
            w.flush().context("cannot write a temp file")?;
            Ok(outcome.facts)
        })
        .await
        .map_err(|_| anyhow!("the de-identification task failed"))??
    };
    let scan_facts = crate::pipeline::score::ScanFacts {
        age_years: facts.age_years,
        sex: facts.sex.code().to_string(),
        study_date: facts.study_date.map(|d| d.to_string()),
    };

    // 2. the object store (and, for the local one, its signed-URL routes on loopback)
    let mut object_server = None;
    let store: Arc<dyn ObjectStore> = match s3 {
        Some(s3) => Arc::new(
            crate::object_store::S3ObjectStore::connect(s3)
                .await
                .map_err(|e| anyhow!("{e}"))?,
        ),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot open a loopback port")?;
            let base = format!("http://{}", listener.local_addr()?);
            let signer = UrlSigner::new(rand::random::<[u8; 32]>().to_vec(), &base);
            let root = tmp.path().join("objects");
            std::fs::create_dir_all(&root)?;
            let routes = crate::web::objects::router::<()>(crate::web::objects::SignedObjects::new(
                ObjectFolder::new(&root),
                Some(signer.clone()),
                tmp.path().join("staging"),
            ));
            object_server = Some(tokio::spawn(async move {
                let _ = axum::serve(listener, routes).await;
            }));
            Arc::new(crate::object_store::LocalObjectStore::new(root, signer))
        }
    };
    let keys = [
        storage::new_key(".zip"),
        storage::new_key(".nii.gz"),
        storage::new_key("-labels.nii.gz"),
        storage::new_key("-volumes.json"),
    ];

    let slot: SegmenterSlot = Arc::new(tokio::sync::OnceCell::new());
    let steps = Steps {
        store: store.clone(),
        segmenter: slot.clone(),
        defacer: crate::pipeline::load_defacer(&config.assets_dir)?,
        settings,
    };
    let result = async {
        let segmenter = Segmenter::start(backend, ClientSettings::default()).await?;
        let _ = slot.set(segmenter);
        run_steps(&steps, &keys, &deid_zip, &scan_facts, &args.out).await
    }
    .await;

    // clean up: the worker, the loopback routes, and objects in a shared store
    if let Some(seg) = slot.get() {
        seg.shutdown().await;
    }
    if let Some(h) = object_server {
        h.abort();
    }
    if store.kind() != "local" {
        for k in &keys {
            let _ = store.delete(k).await;
        }
    }
    result
}

fn step_error(e: StepError) -> anyhow::Error {
    match e {
        StepError::Refused { reason, .. } => anyhow!("the scan was refused: {reason}"),
        StepError::Transient(r) | StepError::Resubmit(r) => anyhow!("{r}"),
        StepError::LeaseLost => anyhow!("interrupted"),
    }
}

async fn run_steps(
    steps: &Steps,
    [archive, nifti, labels, volumes]: &[String; 4],
    deid_zip: &Path,
    facts: &crate::pipeline::score::ScanFacts,
    out: &Path,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    steps
        .store
        .put_file(archive, deid_zip)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let conversion = steps
        .convert_and_store(archive, nifti, |_| async { Ok(()) })
        .await
        .map_err(step_error)?;
    tracing::info!(ms = started.elapsed().as_millis() as u64, dims = ?conversion.dims, "converted");

    // segmentation, submitted again if the worker lost it (a few times at most)
    let mut attempt = 0;
    loop {
        attempt += 1;
        let job = steps
            .submit_segmentation(
                nifti,
                labels,
                volumes,
                conversion.defacing.as_ref().map(|d| d.intensity),
            )
            .await
            .map_err(step_error)?;
        match steps.await_segmentation(&job, labels, volumes).await {
            Ok(_) => break,
            Err(StepError::Resubmit(r)) | Err(StepError::Transient(r)) if attempt < 3 => {
                tracing::warn!(reason = %r, "segmentation submitted again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(step_error(e)),
        }
    }
    tracing::info!(ms = started.elapsed().as_millis() as u64, "segmented");
    let (report, volumes_json) = steps
        .score(volumes, facts, conversion.warnings.clone())
        .await
        .map_err(step_error)?;

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = async {
        let part = |name: &str| out.join(format!(".partial-{name}"));
        steps
            .store
            .get_to_file(nifti, &part("volume.nii.gz"))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        steps
            .store
            .get_to_file(labels, &part("labels.nii.gz"))
            .await
            .map_err(|e| anyhow!("{e}"))?;
        std::fs::write(part("volumes.json"), &volumes_json)?;
        let mut report_json = serde_json::to_vec_pretty(&report)?;
        report_json.push(b'\n');
        std::fs::write(part("report.json"), report_json)?;
        for name in ["volume.nii.gz", "labels.nii.gz", "volumes.json", "report.json"] {
            std::fs::rename(part(name), out.join(name))
                .with_context(|| format!("cannot write {}", out.join(name).display()))?;
        }
        Ok::<(), anyhow::Error>(())
    };
    if let Err(e) = write.await {
        for name in ["volume.nii.gz", "labels.nii.gz", "volumes.json", "report.json"] {
            let _ = std::fs::remove_file(out.join(format!(".partial-{name}")));
        }
        return Err(e);
    }
    eprintln!(
        "analyzed in {:.1} s: {} regions, model {}, written to {}",
        started.elapsed().as_secs_f64(),
        report.regions.len(),
        report.model,
        out.display()
    );
    Ok(())
}
