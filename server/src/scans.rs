//! The scans read model: what the pages show of a user's scans, read from the database
//! (`app::scans_api::ScanStore`, provided to the pages as Leptos context).

use app::scans_api::{BoxFuture, ScanDetail, ScanStatus, ScanStore, ScanSummary};
use sqlx::Row;

use crate::db::Db;
use crate::object_store::StoreError;

/// `scans.report_json`: the server's removal report (keywords and counts, no values) and
/// the series it kept, as `web/upload/complete.rs` writes it.
#[derive(serde::Deserialize)]
struct StoredDeidReport {
    report: deid::Report,
}

pub struct DbScanStore {
    pub db: Db,
}

fn summary_from(row: &sqlx::any::AnyRow) -> Result<ScanSummary, sqlx::Error> {
    Ok(ScanSummary {
        id: row.try_get("id")?,
        status: crate::db::get_enum(row, "status", ScanStatus::parse)?,
        age_years: row
            .try_get::<Option<i64>, _>("age_years")?
            .and_then(|a| u32::try_from(a).ok()),
        sex: row.try_get("sex")?,
        study_date: row.try_get("study_date")?,
        created_at: row.try_get("created_at")?,
        files: row.try_get::<i64, _>("files")?.max(0) as u64,
    })
}

impl ScanStore for DbScanStore {
    fn list(&self, user_id: String) -> BoxFuture<Result<Vec<ScanSummary>, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, status, age_years, sex, study_date, created_at, files FROM scans \
                 WHERE user_id = $1 ORDER BY created_at DESC, id",
            )
            .bind(user_id)
            .fetch_all(&db)
            .await
            .map_err(|e| e.to_string())?;
            rows.iter()
                .map(summary_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())
        })
    }

    fn get(&self, user_id: String, scan_id: String) -> BoxFuture<Result<Option<ScanDetail>, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, status, age_years, sex, study_date, created_at, files, object_bytes, report_json, \
                 archive_deleted, failure_reason, failure_retryable, conversion_json, result_json FROM scans \
                 WHERE user_id = $1 AND id = $2",
            )
            .bind(user_id.as_str())
            .bind(&scan_id)
            .fetch_optional(&db)
            .await
            .map_err(|e| e.to_string())?;
            let Some(row) = row else { return Ok(None) };
            let mut detail = detail_from(&db, &scan_id, &row).await.map_err(|e| e.to_string())?;
            detail.history = history(&db, &user_id, &scan_id).await.map_err(|e| e.to_string())?;
            detail.confirm_with_google = !crate::oidc::has_password(&db, &user_id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Some(detail))
        })
    }

    fn timeline(&self, user_id: String) -> BoxFuture<Result<Vec<app::timeline::TimelineScan>, String>> {
        let db = self.db.clone();
        Box::pin(async move { timeline(&db, &user_id).await.map_err(|e| e.to_string()) })
    }
}

/// The account's processed scans with what makes them comparable, in time order.
async fn timeline(db: &Db, user_id: &str) -> Result<Vec<app::timeline::TimelineScan>, sqlx::Error> {
    #[derive(serde::Deserialize)]
    struct StoredScanner {
        #[serde(default)]
        scanner: app::timeline::ScannerFacts,
    }
    let scans = sqlx::query(
        "SELECT id, study_date, age_years, sex, report_json, conversion_json, result_json FROM scans \
         WHERE user_id = $1 AND status = $2 ORDER BY study_date, created_at, id",
    )
    .bind(user_id)
    .bind(ScanStatus::Done.as_str())
    .fetch_all(db)
    .await?;
    let regions = sqlx::query(
        "SELECT r.scan_id, r.name, r.volume_mm3, r.percentile FROM scan_regions r JOIN scans s ON s.id = r.scan_id \
         WHERE s.user_id = $1 AND s.status = $2 ORDER BY r.label, r.name",
    )
    .bind(user_id)
    .bind(ScanStatus::Done.as_str())
    .fetch_all(db)
    .await?;
    let json = |row: &sqlx::any::AnyRow, column: &str| -> Result<Option<String>, sqlx::Error> { row.try_get(column) };
    scans
        .iter()
        .map(|s| {
            let id: String = s.try_get("id")?;
            let scanner = json(s, "report_json")?
                .and_then(|j| serde_json::from_str::<StoredScanner>(&j).ok())
                .map(|r| r.scanner)
                .unwrap_or_default();
            let conversion: Option<crate::pipeline::ConversionFacts> =
                json(s, "conversion_json")?.and_then(|j| serde_json::from_str(&j).ok());
            let result: Option<crate::pipeline::score::Report> =
                json(s, "result_json")?.and_then(|j| serde_json::from_str(&j).ok());
            let regions = regions
                .iter()
                .filter(|r| r.try_get::<String, _>("scan_id").is_ok_and(|x| x == id))
                .map(|r| Ok((r.try_get("name")?, r.try_get("volume_mm3")?, r.try_get("percentile")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(app::timeline::TimelineScan {
                study_date: s.try_get("study_date")?,
                age_years: s
                    .try_get::<Option<i64>, _>("age_years")?
                    .and_then(|a| u32::try_from(a).ok()),
                sex: s.try_get("sex")?,
                scanner,
                voxel_mm: conversion.map(|c| c.voxel_mm),
                model: result.as_ref().map(|r| r.model.clone()),
                labelling: result.as_ref().map(|r| r.labelling().as_str().to_string()),
                withheld_by_method: result
                    .as_ref()
                    .map(|r| {
                        r.regions
                            .iter()
                            .filter(|g| g.no_percentile.as_deref().is_some_and(app::scans_api::is_method_code))
                            .map(|g| g.name.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                site: result.as_ref().map(|r| r.site.clone()).unwrap_or_default(),
                neurovol_version: result.and_then(|r| r.neurovol_version),
                regions,
                id,
            })
        })
        .collect()
}

/// The account's other processed scans with their region volumes (oldest first).
async fn history(db: &Db, user_id: &str, scan_id: &str) -> Result<Vec<app::scans_api::HistoryScan>, sqlx::Error> {
    Ok(timeline(db, user_id)
        .await?
        .into_iter()
        .filter(|s| s.id != scan_id)
        .map(|s| app::scans_api::HistoryScan {
            volumes: s.regions.into_iter().map(|(name, volume, _)| (name, volume)).collect(),
            study_date: s.study_date,
            age_years: s.age_years,
            id: s.id,
        })
        .collect())
}

async fn detail_from(db: &Db, scan_id: &str, row: &sqlx::any::AnyRow) -> Result<ScanDetail, sqlx::Error> {
    let summary = summary_from(row)?;
    let object_bytes = row.try_get::<i64, _>("object_bytes")?.max(0) as u64;
    let stored: StoredDeidReport =
        serde_json::from_str(&row.try_get::<String, _>("report_json")?).map_err(|e| sqlx::Error::ColumnDecode {
            index: "report_json".into(),
            source: Box::new(e),
        })?;
    let r = &stored.report;
    let conversion: Option<crate::pipeline::ConversionFacts> = row
        .try_get::<Option<String>, _>("conversion_json")?
        .and_then(|c| serde_json::from_str(&c).ok());
    let result: Option<crate::pipeline::score::Report> = row
        .try_get::<Option<String>, _>("result_json")?
        .and_then(|c| serde_json::from_str(&c).ok());
    let mut warnings: Vec<(String, String)> = Vec::new();
    if let Some(res) = &result {
        warnings.extend(res.warnings.iter().map(|w| (w.code.clone(), w.message.clone())));
    } else if let Some(c) = &conversion {
        warnings.extend(c.warnings.iter().map(|w| (w.code.clone(), w.message.clone())));
    }
    let regions = sqlx::query(
        "SELECT name, volume_mm3, percentile, flag FROM scan_regions WHERE scan_id = $1 ORDER BY label, name",
    )
    .bind(scan_id)
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| {
        Ok(app::scans_api::RegionRow {
            name: r.try_get("name")?,
            volume_mm3: r.try_get("volume_mm3")?,
            percentile: r.try_get("percentile")?,
            flag: r.try_get("flag")?,
            no_percentile: None,
            no_percentile_reason: None,
            percentile_band: None,
            centiles: None,
            asymmetry: None,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let regions = crate::scan_regions::enrich(regions, result.as_ref(), &summary.sex, summary.age_years);
    // a queued job with attempts behind it is waiting for a service to answer
    let retrying =
        sqlx::query("SELECT step, attempts FROM jobs WHERE scan_id = $1 AND state = 'queued' AND attempts > 0")
            .bind(scan_id)
            .fetch_optional(db)
            .await?
            .map(|j| {
                Ok::<_, sqlx::Error>(app::scans_api::Retrying {
                    step: crate::db::get_enum(&j, "step", app::scans_api::Step::parse)?,
                    attempts: u32::try_from(j.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                })
            })
            .transpose()?;
    Ok(ScanDetail {
        retrying,
        summary,
        object_bytes,
        attributes_removed: r.removed.len() as u64,
        private_elements_removed: r.private_elements_removed,
        overlay_elements_removed: r.overlay_elements_removed,
        uids_replaced: r.distinct_uids_replaced,
        archive_deleted: row.try_get::<i64, _>("archive_deleted")? != 0,
        failure_reason: row.try_get("failure_reason")?,
        failure_retryable: row.try_get::<i64, _>("failure_retryable")? != 0,
        warnings,
        voxel_mm: conversion.as_ref().map(|c| c.voxel_mm),
        model: result.as_ref().map(|r| r.model.clone()),
        quality_ok: result.as_ref().map(|r| r.quality_ok),
        grade: result.as_ref().and_then(|r| r.grade).map(|g| g.as_str().to_string()),
        grade_reasons: result.as_ref().map(|r| r.grade_reasons.clone()).unwrap_or_default(),
        calibration: result.as_ref().and_then(|r| r.calibration.clone()),
        site: result.as_ref().map(|r| r.site.clone()).unwrap_or_default(),
        validity: result.as_ref().and_then(|r| r.validity.clone()),
        icv_mm3: result.as_ref().and_then(|r| r.icv_mm3),
        regions,
        history: Vec::new(),
        confirm_with_google: false,
    })
}

/// Where a file of a scan comes from: an object of the store, bytes made from the
/// database (the results and their table), or a picture of a stored volume.
pub enum FileSource {
    Object(String),
    Made(Vec<u8>),
    PictureOf(Picture),
}

/// A picture drawn from stored objects when it is asked for (never stored itself).
pub enum Picture {
    /// The mid-sagittal slice of the stored volume.
    Midline { volume: String },
    /// A middle slice of the stored volume with its labels in their colours.
    Slice {
        volume: String,
        labels: String,
        colours: Vec<[u8; 3]>,
        plane: volumetry::preview::Plane,
    },
}

/// The biggest stored volume a picture is drawn from (as the worker accepts).
const MAX_PICTURE_SOURCE: u64 = 1 << 30;

fn gunzip_volume(gz: &[u8]) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(gz), &mut raw).ok()?;
    Some(raw)
}

/// Draws `picture` as PNG from the stored objects it names.
pub async fn draw(store: &dyn crate::object_store::ObjectStore, picture: Picture) -> Result<Vec<u8>, StoreError> {
    let (volume_key, labels_key) = match &picture {
        Picture::Midline { volume } => (volume.clone(), None),
        Picture::Slice { volume, labels, .. } => (volume.clone(), Some(labels.clone())),
    };
    let volume_gz = store.get_bytes(&volume_key, MAX_PICTURE_SOURCE).await?;
    let labels_gz = match labels_key {
        Some(k) => Some(store.get_bytes(&k, MAX_PICTURE_SOURCE).await?),
        None => None,
    };
    tokio::task::spawn_blocking(move || {
        let volume = volumetry::nifti::decode_f32(&gunzip_volume(&volume_gz)?).ok()?;
        match picture {
            Picture::Midline { .. } => volumetry::preview::mid_sagittal_png(&volume).ok(),
            Picture::Slice { colours, plane, .. } => {
                let labels = volumetry::nifti::decode_labels(&gunzip_volume(&labels_gz?)?).ok()?;
                volumetry::preview::overlay_png(&volume, &labels, &colours, plane).ok()
            }
        }
    })
    .await
    .ok()
    .flatten()
    // a volume that cannot be drawn will not become drawable by waiting: no picture
    .ok_or(StoreError::NotFound)
}

/// A file of the account's scan, or `None` when the account has no such scan or the scan
/// has no such file (yet, or any more): the two answer alike.
pub async fn file_source(
    db: &Db,
    assets: &std::path::Path,
    user_id: &str,
    scan_id: &str,
    file: app::scans_api::ScanFile,
) -> Result<Option<FileSource>, sqlx::Error> {
    use app::scans_api::ScanFile;
    let row = sqlx::query(
        "SELECT status, archive_deleted, sex, object_key, nifti_key, labels_key, volumes_key, result_json FROM scans \
         WHERE id = $1 AND user_id = $2",
    )
    .bind(scan_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status = crate::db::get_enum(&row, "status", ScanStatus::parse)?;
    if !ScanFile::available(status, row.try_get::<i64, _>("archive_deleted")? != 0).contains(&file) {
        return Ok(None);
    }
    let key = |column: &str| {
        row.try_get::<Option<String>, _>(column)
            .map(|k| k.map(FileSource::Object))
    };
    Ok(match file {
        ScanFile::Archive => key("object_key")?,
        ScanFile::Volume => key("nifti_key")?,
        ScanFile::Midline => row
            .try_get::<Option<String>, _>("nifti_key")?
            .map(|volume| FileSource::PictureOf(Picture::Midline { volume })),
        ScanFile::SliceAxial | ScanFile::SliceCoronal | ScanFile::SliceSagittal => {
            let plane = match file {
                ScanFile::SliceAxial => volumetry::preview::Plane::Axial,
                ScanFile::SliceCoronal => volumetry::preview::Plane::Coronal,
                _ => volumetry::preview::Plane::Sagittal,
            };
            let keys = (
                row.try_get::<Option<String>, _>("nifti_key")?,
                row.try_get::<Option<String>, _>("labels_key")?,
            );
            match (keys, label_colours(&row, assets)?) {
                ((Some(volume), Some(labels)), Some((_, c))) => Some(FileSource::PictureOf(Picture::Slice {
                    volume,
                    labels,
                    colours: c.entries().map(|(_, _, rgb)| rgb).collect(),
                    plane,
                })),
                _ => None,
            }
        }
        ScanFile::Labels => key("labels_key")?,
        ScanFile::Volumes => key("volumes_key")?,
        ScanFile::Results => row.try_get::<Option<String>, _>("result_json")?.map(|json| {
            // pretty-printed for people; the stored text is compact
            let value: serde_json::Value = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
            FileSource::Made(serde_json::to_vec_pretty(&value).unwrap_or_default())
        }),
        ScanFile::RegionsCsv => Some(FileSource::Made(regions_csv(db, scan_id).await?.into_bytes())),
        ScanFile::NormalLimits => {
            let names = sqlx::query("SELECT name FROM scan_regions WHERE scan_id = $1 ORDER BY label, name")
                .bind(scan_id)
                .fetch_all(db)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("name"))
                .collect::<Result<Vec<_>, _>>()?;
            let sex: String = row.try_get("sex")?;
            // the centiles the scan's percentiles were computed with
            let site = row
                .try_get::<Option<String>, _>("result_json")?
                .and_then(|j| serde_json::from_str::<crate::pipeline::score::Report>(&j).ok())
                .map(|r| r.site)
                .unwrap_or_default();
            Some(FileSource::Made(
                crate::scan_regions::normal_limits_csv(&names, &sex, &site).into_bytes(),
            ))
        }
        ScanFile::LabelColours | ScanFile::LabelLut => label_colours(&row, assets)?.map(|(model, c)| {
            FileSource::Made(if file == ScanFile::LabelLut {
                c.freesurfer_lut().into_bytes()
            } else {
                serde_json::to_vec_pretty(&c.json(model.folder())).unwrap_or_default()
            })
        }),
    })
}

/// The model that segmented the scan (`result_json` names it) and its label colours.
fn label_colours(
    row: &sqlx::any::AnyRow,
    assets: &std::path::Path,
) -> Result<Option<(volumetry::ModelId, volumetry::model::LabelColours)>, sqlx::Error> {
    let model = row
        .try_get::<Option<String>, _>("result_json")?
        .and_then(|json| serde_json::from_str::<crate::pipeline::score::Report>(&json).ok())
        .and_then(|r| volumetry::ModelId::parse(&r.model).ok());
    Ok(
        match model.map(|m| (m, volumetry::model::LabelColours::load(assets, m))) {
            Some((m, Ok(colours))) => Some((m, colours)),
            Some((_, Err(e))) => {
                tracing::error!(error = %e, "cannot read the model's colour map");
                None
            }
            None => None,
        },
    )
}

/// The regions table as CSV: region, label, volume (mm³), percentile, its band (low, high),
/// flag.
pub async fn regions_csv(db: &Db, scan_id: &str) -> Result<String, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT name, label, volume_mm3, percentile, percentile_low, percentile_high, flag FROM scan_regions \
         WHERE scan_id = $1 ORDER BY label, name",
    )
    .bind(scan_id)
    .fetch_all(db)
    .await?;
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut csv = String::from("region,label,volume_mm3,percentile,percentile_low,percentile_high,flag\n");
    let number = |v: Option<f64>| v.map(|p| format!("{p:.2}")).unwrap_or_default();
    for r in &rows {
        let flag: Option<String> = r.try_get("flag")?;
        csv.push_str(&format!(
            "{},{},{:.1},{},{},{},{}\n",
            field(&r.try_get::<String, _>("name")?),
            r.try_get::<i64, _>("label")?,
            r.try_get::<f64, _>("volume_mm3")?,
            number(r.try_get("percentile")?),
            number(r.try_get("percentile_low")?),
            number(r.try_get("percentile_high")?),
            field(flag.as_deref().unwrap_or("")),
        ));
    }
    Ok(csv)
}
