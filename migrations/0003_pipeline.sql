-- The processing pipeline (issue 6): per-scan results, durable jobs, step history.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Times in *_ms are Unix milliseconds.

-- scans.status now walks: deidentified → converted → stored → segmenting → segmented →
-- scored → done, or failed (failure_code/failure_reason; failure_retryable says whether
-- the Retry action is offered). There is no 'uploaded' row: nothing is written to the
-- database before the authoritative de-identification succeeded (the upload's temp folder
-- is that state). Object keys are random and assigned once, when the scan is queued, so a
-- re-run step overwrites its own objects instead of adding new ones.
ALTER TABLE scans ADD COLUMN failure_code TEXT;
ALTER TABLE scans ADD COLUMN failure_reason TEXT;
ALTER TABLE scans ADD COLUMN failure_retryable BIGINT NOT NULL DEFAULT 0;
-- the user's choice "discard the DICOM archive after processing" (1 = discard)
ALTER TABLE scans ADD COLUMN discard_archive BIGINT NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN archive_deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE scans ADD COLUMN nifti_key TEXT;
ALTER TABLE scans ADD COLUMN labels_key TEXT;
ALTER TABLE scans ADD COLUMN volumes_key TEXT;
-- the scored report (names, numbers, codes; the report.json of `neurovol analyze`)
ALTER TABLE scans ADD COLUMN result_json TEXT;
-- conversion facts and warnings (dims, voxel size, low resolution)
ALTER TABLE scans ADD COLUMN conversion_json TEXT;

-- One region's volume and percentile, for the results table and the longitudinal view.
CREATE TABLE scan_regions (
    scan_id    TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    label      BIGINT NOT NULL,
    volume_mm3 DOUBLE PRECISION NOT NULL,
    percentile DOUBLE PRECISION,
    flag       TEXT,
    PRIMARY KEY (scan_id, name)
);

-- One durable job per scan. `step` is the next step to run (convert, segment, score);
-- `state` is queued, done or failed. A process owns a job while `lease_until_ms` is in the
-- future and renews it while working; a crashed owner's job is claimed again after expiry.
CREATE TABLE jobs (
    scan_id        TEXT PRIMARY KEY REFERENCES scans(id) ON DELETE CASCADE,
    state          TEXT NOT NULL,
    step           TEXT NOT NULL,
    attempts       BIGINT NOT NULL,
    run_after_ms   BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until_ms BIGINT,
    -- the dispatched segmentation (segmenter::JobHandle as JSON), to find it after a crash
    segment_job    TEXT,
    last_error     TEXT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs(state, run_after_ms);

-- Every step run (history and timing; shows that no step completed twice).
CREATE TABLE job_runs (
    id           TEXT PRIMARY KEY,
    scan_id      TEXT NOT NULL REFERENCES scans(id) ON DELETE CASCADE,
    step         TEXT NOT NULL,
    owner        TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    started_ms   BIGINT NOT NULL,
    finished_ms  BIGINT,
    -- ok, retry, failed, lease_lost; NULL while running (or when its process died)
    outcome      TEXT
);
CREATE INDEX job_runs_scan ON job_runs(scan_id, step);
