//! Scans stored before defacing existed: at start, every finished scan whose conversion
//! has no defacing gets its stored volume defaced in place and its DICOM archive deleted,
//! so no copy with a face outlives an upgrade. Its labels and volumes stay (they were
//! measured on the whole head, which is what defacing keeps them close to anyway).

use std::io::{Read, Write};
use std::sync::Arc;

use sqlx::Row;
use volumetry::deface::{DEFACED_DESCRIP, Defacer};

use crate::db::Db;
use crate::object_store::ObjectStore;

/// The largest stored volume read back (as the segmentation worker accepts).
const MAX_STORED_VOLUME: u64 = 1 << 30;

/// Defaces every finished scan stored without defacing; returns how many. A scan that
/// cannot be done now (store down) is tried again at the next start.
pub async fn deface_stored_scans(db: &Db, store: &dyn ObjectStore, defacer: &Arc<Defacer>) -> usize {
    let rows = sqlx::query(
        "SELECT id, object_key, nifti_key, conversion_json FROM scans \
         WHERE status NOT IN ('deidentified', 'converted') AND conversion_json IS NOT NULL",
    )
    .fetch_all(db)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot list the scans stored before defacing");
            return 0;
        }
    };
    let mut done = 0;
    for row in rows {
        let (Ok(id), Ok(archive), Ok(Some(nifti)), Ok(conversion)) = (
            row.try_get::<String, _>("id"),
            row.try_get::<String, _>("object_key"),
            row.try_get::<Option<String>, _>("nifti_key"),
            row.try_get::<String, _>("conversion_json"),
        ) else {
            continue;
        };
        let Ok(mut facts) = serde_json::from_str::<serde_json::Value>(&conversion) else {
            continue;
        };
        if !facts.get("defacing").is_none_or(|d| d.is_null()) {
            continue;
        }
        match deface_one(db, store, defacer, &id, &archive, &nifti, &mut facts).await {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(scan = %id, error = %e, "cannot deface a scan stored before defacing"),
        }
    }
    if done > 0 {
        tracing::info!(scans = done, "defaced the volumes stored before defacing");
    }
    done
}

async fn deface_one(
    db: &Db,
    store: &dyn ObjectStore,
    defacer: &Arc<Defacer>,
    id: &str,
    archive: &str,
    nifti: &str,
    facts: &mut serde_json::Value,
) -> anyhow::Result<bool> {
    // a scan that failed before its volume was stored keeps its archive for a retry,
    // which defaces as every conversion does
    if store.size(nifti).await?.is_none() {
        return Ok(false);
    }
    {
        let gz = store.get_bytes(nifti, MAX_STORED_VOLUME).await?;
        let defacer = defacer.clone();
        let done = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut raw = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut raw)?;
            // a run that stopped after storing it: defaced already (its intensities are not
            // the whole head's any more, so nothing is measured again)
            if raw.get(148..148 + DEFACED_DESCRIP.len()) == Some(DEFACED_DESCRIP.as_bytes()) {
                return Ok(None);
            }
            let defacing = defacer.deface_nifti(&mut raw)?;
            let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            out.write_all(&raw)?;
            Ok(Some((defacing, out.finish()?)))
        })
        .await??;
        // (already defaced: the facts stay as they are, and the next start only looks again)
        if let Some((defacing, gz)) = done {
            store.put_bytes(nifti, gz).await?;
            facts["defacing"] = serde_json::to_value(&defacing)?;
        }
    }
    store.delete(archive).await?;
    sqlx::query("UPDATE scans SET conversion_json = $1, archive_deleted = 1, object_bytes = 0 WHERE id = $2")
        .bind(facts.to_string())
        .bind(id)
        .execute(db)
        .await?;
    Ok(true)
}
