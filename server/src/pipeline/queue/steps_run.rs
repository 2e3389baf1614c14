//! What each step's run writes: the scan's keys and facts read for the step, the step body
//! called, and its result recorded in fenced writes (status, job's next step, regions).

use super::*;

/// The keys and facts of a scan the steps need.
struct ScanRow {
    archive_key: String,
    nifti_key: String,
    labels_key: String,
    volumes_key: String,
    archive_deleted: bool,
    facts: ScanFacts,
    conversion: Option<ConversionFacts>,
}

impl Pipeline {
    async fn load_scan(&self, scan_id: &str) -> Result<ScanRow, StepError> {
        let r = sqlx::query(
            "SELECT object_key, nifti_key, labels_key, volumes_key, archive_deleted, age_years, sex, study_date, conversion_json \
             FROM scans WHERE id = $1",
        )
        .bind(scan_id)
        .fetch_one(&self.db)
        .await?;
        let conversion: Option<String> = r.try_get("conversion_json")?;
        Ok(ScanRow {
            archive_key: r.try_get("object_key")?,
            nifti_key: r.try_get::<Option<String>, _>("nifti_key")?.unwrap_or_default(),
            labels_key: r.try_get::<Option<String>, _>("labels_key")?.unwrap_or_default(),
            volumes_key: r.try_get::<Option<String>, _>("volumes_key")?.unwrap_or_default(),
            archive_deleted: r.try_get::<i64, _>("archive_deleted")? != 0,
            facts: ScanFacts {
                age_years: r
                    .try_get::<Option<i64>, _>("age_years")?
                    .and_then(|a| u32::try_from(a).ok()),
                sex: r.try_get("sex")?,
                study_date: r.try_get("study_date")?,
            },
            conversion: conversion.and_then(|c| serde_json::from_str(&c).ok()),
        })
    }

    /// Records a finished step: the scan's new status and the job's next step, together.
    async fn advance(&self, scan_id: &str, status: ScanStatus, next: Next) -> Result<Next, StepError> {
        let now = now_ms();
        let job_write = match next {
            Next::Step(step) => (
                "UPDATE jobs SET step = $1, attempts = 0, segment_job = NULL, last_error = NULL, updated_ms = $2 WHERE scan_id = $3",
                vec![
                    Bind::Text(step.as_str().into()),
                    Bind::Int(now),
                    Bind::Text(scan_id.into()),
                ],
            ),
            // the step column keeps the last step run
            Next::Done => (
                "UPDATE jobs SET state = $1, lease_owner = NULL, lease_until_ms = NULL, segment_job = NULL, last_error = NULL, updated_ms = $2 WHERE scan_id = $3",
                vec![
                    Bind::Text(JobState::Done.as_str().into()),
                    Bind::Int(now),
                    Bind::Text(scan_id.into()),
                ],
            ),
        };
        self.fenced(
            scan_id,
            vec![
                (
                    "UPDATE scans SET status = $1, failure_code = NULL, failure_reason = NULL, failure_retryable = 0, updated_at = $2 WHERE id = $3",
                    vec![Bind::Text(status.as_str().into()), Bind::Int(now / 1000), Bind::Text(scan_id.into())],
                ),
                job_write,
            ],
        )
        .await?;
        Ok(next)
    }

    pub(super) async fn run_step(&self, job: &Claimed) -> Result<Next, StepError> {
        let scan = self.load_scan(&job.scan_id).await?;
        match job.step {
            Step::Convert => {
                let id = job.scan_id.clone();
                // a run that stored the volume and deleted the archive, then stopped
                let stored_before = scan.archive_deleted
                    || (self.steps.store.size(&scan.archive_key).await?.is_none()
                        && self.steps.store.size(&scan.nifti_key).await?.is_some());
                if !stored_before {
                    self.steps
                        .convert_and_store(&scan.archive_key, &scan.nifti_key, |facts| async move {
                            let json = serde_json::to_string(&facts).unwrap_or_default();
                            self.fenced(
                                &id,
                                vec![(
                                    "UPDATE scans SET status = $1, conversion_json = $2, updated_at = $3 WHERE id = $4",
                                    vec![
                                        Bind::Text(ScanStatus::Converted.as_str().into()),
                                        Bind::Text(json),
                                        Bind::Int(now_ms() / 1000),
                                        Bind::Text(id.clone()),
                                    ],
                                )],
                            )
                            .await
                        })
                        .await?;
                }
                // The DICOM images show the face: once the defaced volume is stored, the
                // archive goes. Recorded first, under the lease (a process that lost it must
                // not delete what the new holder converts); the step runs again from here if
                // this process stops before the delete.
                self.fenced(
                    &job.scan_id,
                    vec![(
                        "UPDATE scans SET archive_deleted = 1, object_bytes = 0 WHERE id = $1",
                        vec![Bind::Text(job.scan_id.clone())],
                    )],
                )
                .await?;
                self.steps.store.delete(&scan.archive_key).await?;
                self.advance(&job.scan_id, ScanStatus::Stored, Next::Step(Step::Segment))
                    .await
            }
            Step::Segment => {
                let handle = match job
                    .segment_job
                    .as_deref()
                    .and_then(|j| serde_json::from_str::<JobHandle>(j).ok())
                {
                    Some(h) => h,
                    None => {
                        let h = self
                            .steps
                            .submit_segmentation(
                                &scan.nifti_key,
                                &scan.labels_key,
                                &scan.volumes_key,
                                scan.conversion
                                    .as_ref()
                                    .and_then(|c| c.defacing.as_ref())
                                    .map(|d| d.intensity),
                            )
                            .await?;
                        let now = now_ms();
                        self.fenced(
                            &job.scan_id,
                            vec![
                                (
                                    "UPDATE jobs SET segment_job = $1, updated_ms = $2 WHERE scan_id = $3",
                                    vec![
                                        Bind::Text(serde_json::to_string(&h).unwrap_or_default()),
                                        Bind::Int(now),
                                        Bind::Text(job.scan_id.clone()),
                                    ],
                                ),
                                (
                                    "UPDATE scans SET status = $1, updated_at = $2 WHERE id = $3",
                                    vec![
                                        Bind::Text(ScanStatus::Segmenting.as_str().into()),
                                        Bind::Int(now / 1000),
                                        Bind::Text(job.scan_id.clone()),
                                    ],
                                ),
                            ],
                        )
                        .await?;
                        h
                    }
                };
                let output = self
                    .steps
                    .await_segmentation(&handle, &scan.labels_key, &scan.volumes_key)
                    .await?;
                tracing::info!(
                    scan = %job.scan_id,
                    engine = %output.engine,
                    seconds = output.timings.get("total_s").copied().unwrap_or(0.0),
                    "segmentation completed"
                );
                self.advance(&job.scan_id, ScanStatus::Segmented, Next::Step(Step::Score))
                    .await
            }
            Step::Score => {
                let warnings = scan.conversion.as_ref().map(|c| c.warnings.clone()).unwrap_or_default();
                let (report, _) = self.steps.score(&scan.volumes_key, &scan.facts, warnings).await?;
                let now = now_ms();
                let mut writes = vec![(
                    "DELETE FROM scan_regions WHERE scan_id = $1",
                    vec![Bind::Text(job.scan_id.clone())],
                )];
                for r in &report.regions {
                    // sqlx's Any driver binds a NULL without its type, and PostgreSQL then
                    // prepares the statement for the wrong type: rows without a percentile
                    // leave the column out instead of binding NULL.
                    let (sql, mut binds) = match (r.percentile, r.percentile_band) {
                        (Some(p), Some([low, high])) => (
                            "INSERT INTO scan_regions (scan_id, name, label, volume_mm3, flag, percentile, percentile_low, percentile_high) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                            vec![Bind::Float(p), Bind::Float(low), Bind::Float(high)],
                        ),
                        (Some(p), None) => (
                            "INSERT INTO scan_regions (scan_id, name, label, volume_mm3, flag, percentile) VALUES ($1, $2, $3, $4, $5, $6)",
                            vec![Bind::Float(p)],
                        ),
                        (None, _) => (
                            "INSERT INTO scan_regions (scan_id, name, label, volume_mm3, flag) VALUES ($1, $2, $3, $4, $5)",
                            vec![],
                        ),
                    };
                    binds.splice(
                        0..0,
                        [
                            Bind::Text(job.scan_id.clone()),
                            Bind::Text(r.name.clone()),
                            Bind::Int(i64::from(r.label)),
                            Bind::Float(r.volume_mm3),
                            Bind::OptText(r.flag.clone()),
                        ],
                    );
                    writes.push((sql, binds));
                }
                writes.push((
                    "UPDATE scans SET status = $1, result_json = $2, updated_at = $3 WHERE id = $4",
                    vec![
                        Bind::Text(ScanStatus::Scored.as_str().into()),
                        Bind::Text(serde_json::to_string(&report).unwrap_or_default()),
                        Bind::Int(now / 1000),
                        Bind::Text(job.scan_id.clone()),
                    ],
                ));
                self.fenced(&job.scan_id, writes).await?;
                self.advance(&job.scan_id, ScanStatus::Done, Next::Done).await
            }
        }
    }
}
