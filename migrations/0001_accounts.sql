-- Accounts and sessions. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are Unix seconds (BIGINT); ids are random text tokens.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- The cookie carries a random token; only its SHA-256 is stored, so a database leak
-- does not hand out live sessions.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Failed sign-in counters, per account (hashed submitted email, so unknown emails are
-- throttled exactly like known ones) and per client IP.
CREATE TABLE login_throttle (
    throttle_key TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
