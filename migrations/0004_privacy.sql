-- The user's own privacy controls (issue 16): the audit log, self-service hard deletion
-- with an outbox of objects to remove, deletion receipts, and the account's settings.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL. Times in *_ms are Unix
-- milliseconds, other times Unix seconds.

-- The account's default for "discard the DICOM archive after processing" (1 = discard);
-- the upload page starts from it.
ALTER TABLE users ADD COLUMN discard_archive_default BIGINT NOT NULL DEFAULT 0;

-- What happened to an account, for its owner: sign-ins (success and failure), uploads,
-- downloads, exports, deletions, retries. `kind` is an `app::account::AuditKind` name;
-- `subject` is a scan or receipt id, the failed check of a refusal, or ''. The app only
-- inserts (there is no update path); the rows go with the account (ON DELETE CASCADE).
-- `user_id` is NULL for a content-free refusal that concerns no account (a visitor's
-- refused Google sign-in: time, kind, failed check, IP, user agent): such a row belongs
-- to no account, so no account's page, export or deletion ever sees it.
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    user_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
    at_ms      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    ip         TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX audit_log_user ON audit_log(user_id, at_ms);

-- What a deletion removed: counts and dates, never health data. A scan's receipt belongs
-- to its account (`user_id`); an account's receipt has none (`user_id` = ''), so it is the
-- one content-free record left of a deleted account. `completed_at` stays NULL while
-- objects of the deletion are still being removed from the store ("deletion pending").
CREATE TABLE deletion_receipts (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    -- 'scan' or 'account' (app::account::DeletionScope)
    scope         TEXT NOT NULL,
    requested_at  BIGINT NOT NULL,
    completed_at  BIGINT,
    scans         BIGINT NOT NULL,
    objects       BIGINT NOT NULL,
    audit_events  BIGINT NOT NULL,
    sessions      BIGINT NOT NULL,
    -- first and last upload of the deleted scans (0 when there were none)
    first_upload_at BIGINT NOT NULL,
    last_upload_at  BIGINT NOT NULL,
    account_created_at BIGINT NOT NULL
);
CREATE INDEX deletion_receipts_user ON deletion_receipts(user_id);

-- One row per object key still to remove. Written in the transaction that deletes the
-- rows; the deleter claims a row with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL),
-- deletes the object (missing = done) and then the row, retrying with back-off while the
-- store is unreachable. `recheck_after_ms`: a job of the scan was in flight when it was
-- deleted (its step or the worker's signed URL may still write the object), so the key is
-- deleted once more after that time.
CREATE TABLE deletion_outbox (
    object_key       TEXT PRIMARY KEY,
    receipt_id       TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    run_after_ms     BIGINT NOT NULL,
    recheck_after_ms BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until_ms   BIGINT,
    last_error       TEXT,
    created_ms       BIGINT NOT NULL
);
CREATE INDEX deletion_outbox_ready ON deletion_outbox(run_after_ms);
CREATE INDEX deletion_outbox_receipt ON deletion_outbox(receipt_id);
