-- Scans: one row per accepted upload, written only after the server's authoritative
-- de-identification succeeded. Numbers and codes only: no DICOM text, no file names.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Times are Unix seconds (BIGINT).
CREATE TABLE scans (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'deidentified' now; the processing pipeline (issue 6) adds later states
    status      TEXT NOT NULL,
    age_years   BIGINT,
    -- M, F, O or U
    sex         TEXT NOT NULL,
    -- ISO YYYY-MM-DD or NULL
    study_date  TEXT,
    -- random key of the de-identified ZIP in the object store
    object_key  TEXT NOT NULL,
    object_bytes BIGINT NOT NULL,
    files       BIGINT NOT NULL,
    -- counts from the de-identification report (attribute keywords and numbers, no values)
    report_json TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX scans_user ON scans(user_id, created_at);
