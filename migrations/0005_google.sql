-- Google sign-in (OpenID Connect, issue 16). Portable SQL: runs unchanged on SQLite and
-- PostgreSQL. Times are Unix seconds.

-- A Google identity of an account, keyed by the provider's (issuer, subject), never by
-- email. An account signed up through Google has no password: `users.password_hash` is ''
-- (no password verifies against it). An account keeps at least one sign-in method.
CREATE TABLE oidc_identities (
    issuer    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_identities_user ON oidc_identities(user_id);

-- One started sign-in, link or re-authentication: one-time (the callback deletes the row
-- before anything else, so a replayed callback finds nothing) and short-lived.
-- `state_hash`: SHA-256 of the `state` parameter; `browser_hash`: SHA-256 of the cookie
-- that binds the flow to the browser that started it; `user_id`: the signed-in account
-- of a link or re-authentication (NULL for a sign-in); `scan_id`: the scan whose deletion a
-- re-authentication confirms (NULL for the others, and for the account's deletion).
CREATE TABLE oidc_flows (
    state_hash    TEXT PRIMARY KEY,
    browser_hash  TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    user_id       TEXT REFERENCES users(id) ON DELETE CASCADE,
    scan_id       TEXT,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oidc_flows_expiry ON oidc_flows(expires_at);
