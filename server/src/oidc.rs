//! Google sign-in (OpenID Connect): the provider's discovery and keys, one-time flows, the
//! ID token's verification, and the accounts' Google identities.
//!
//! Authorization code flow with PKCE (S256). `state`, `nonce` and the PKCE verifier live in
//! one `oidc_flows` row, bound to the starting browser by a random cookie (only hashes of
//! the state and the cookie are stored); the callback deletes the row before anything else,
//! so a replayed or forged callback fails before the token call. The ID token is verified
//! by `openidconnect` (RS256 signature against the provider's JWKS, exact issuer, audience =
//! our client id with no other audience trusted, expiry, nonce). The crate never refreshes
//! the JWKS: discovery is cached for an hour and done again at once on an unknown `kid`
//! (such forced discoveries at most every [`JWKS_MIN_REFRESH`]). The HTTP client follows no redirects. An account is
//! keyed by (issuer, `sub`), never by email.

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, TokenResponse as _,
};
use sqlx::Row;
use tokio::sync::Mutex;

use crate::auth::{random_token, sha256_hex};
use crate::config::GoogleSettings;
use crate::db::{Db, now_secs};

/// How long a started sign-in may take before its callback is refused.
pub const FLOW_SECS: i64 = 600;
/// Discovery (and so the JWKS) is done again when older than this.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` re-discovers at most this often.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);
/// The provider's answers (discovery, keys, token) must come within this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a flow was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A visitor signs in (or signs up) with Google.
    SignIn,
    /// A signed-in account links its Google identity.
    Link,
    /// A signed-in Google account proves itself again (account deletion).
    Reauth,
    /// A signed-in Google account proves itself again to delete one of its scans (the
    /// flow's `scan_id`).
    DeleteScan,
}

impl Purpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign_in",
            Purpose::Link => "link",
            Purpose::Reauth => "reauth",
            Purpose::DeleteScan => "delete_scan",
        }
    }

    fn parse(s: &str) -> Option<Purpose> {
        [Purpose::SignIn, Purpose::Link, Purpose::Reauth, Purpose::DeleteScan]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery or keys unreachable or malformed.
    #[error("the sign-in provider cannot be reached")]
    Provider,
    /// No such flow: a replay, a forged or mismatched state, no (or another) browser
    /// cookie, or an expired flow.
    #[error("no such sign-in in progress")]
    UnknownFlow,
    /// The provider answered the authorization with an error (the user cancelled).
    #[error("the provider did not authorize the sign-in")]
    Denied,
    /// The code was refused at the token endpoint, or its answer was malformed.
    #[error("the authorization code was refused")]
    TokenExchange,
    /// The ID token failed verification.
    #[error("the ID token is invalid: {0}")]
    InvalidToken(&'static str),
    /// The provider has not verified the email.
    #[error("the email is not verified by the provider")]
    EmailUnverified,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl OidcError {
    /// The stable code (logs, the error page's query).
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Provider => "provider_unavailable",
            OidcError::UnknownFlow => "unknown_flow",
            OidcError::Denied => "denied",
            OidcError::TokenExchange => "token_exchange",
            OidcError::InvalidToken(_) => "invalid_token",
            OidcError::EmailUnverified => "email_unverified",
            OidcError::Db(_) => "internal",
        }
    }

    /// [`code`](Self::code), and for an invalid ID token which check failed (the audit
    /// log's subject).
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::InvalidToken(check) => check,
            other => other.code(),
        }
    }
}

/// A verified Google identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    /// The verified email (lower-cased).
    pub email: String,
}

/// A flow taken by its callback.
#[derive(Debug)]
pub struct Flow {
    pub purpose: Purpose,
    /// The account that started a link or re-authentication.
    pub user_id: Option<String>,
    /// The scan whose deletion a [`Purpose::DeleteScan`] flow confirms.
    pub scan_id: Option<String>,
    nonce: String,
    pkce_verifier: String,
}

/// A started flow: where to send the browser, and the cookie that binds it.
pub struct Started {
    pub authorize_url: String,
    pub browser_cookie: String,
}

struct Discovered {
    metadata: CoreProviderMetadata,
    at: Instant,
    /// The last discovery forced by an unknown `kid`.
    forced_at: Option<Instant>,
}

/// The configured provider. Discovery is lazy (the server starts without reaching it).
pub struct Provider {
    settings: GoogleSettings,
    /// The issuer's origin (`scheme://host[:port]`), where the sign-in forms redirect.
    origin: String,
    http: reqwest::Client,
    discovered: Mutex<Option<Discovered>>,
}

impl Provider {
    pub fn new(settings: GoogleSettings) -> anyhow::Result<Provider> {
        let http = reqwest::Client::builder()
            // a redirect could lead the token or key request anywhere
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()?;
        let origin = IssuerUrl::new(settings.issuer.clone())?
            .url()
            .origin()
            .ascii_serialization();
        RedirectUrl::new(settings.redirect_url.clone())?;
        Ok(Provider {
            settings,
            origin,
            http,
            discovered: Mutex::new(None),
        })
    }

    /// The issuer's origin: the page's `form-action` allows it (`web/headers.rs`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The provider's metadata (with its JWKS): cached, fetched again when older than
    /// [`JWKS_MAX_AGE`], or when `stale` (an unknown `kid`) unless the last such forced
    /// discovery was less than [`JWKS_MIN_REFRESH`] ago.
    async fn metadata(&self, stale: bool) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.discovered.lock().await;
        let mut forced_at = None;
        if let Some(d) = cached.as_ref() {
            let may_force = d.forced_at.is_none_or(|t| t.elapsed() >= JWKS_MIN_REFRESH);
            if d.at.elapsed() < JWKS_MAX_AGE && !(stale && may_force) {
                return Ok(d.metadata.clone());
            }
            forced_at = if stale { Some(Instant::now()) } else { d.forced_at };
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|_| OidcError::Provider)?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                tracing::info!(keys = metadata.jwks().keys().len(), "sign-in provider discovered");
                *cached = Some(Discovered {
                    metadata: metadata.clone(),
                    at: Instant::now(),
                    forced_at,
                });
                Ok(metadata)
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "sign-in provider discovery failed");
                // a provider briefly down keeps the last keys (and a failed forced discovery
                // counts as one)
                let d = cached.as_mut().ok_or(OidcError::Provider)?;
                d.forced_at = forced_at;
                Ok(d.metadata.clone())
            }
        }
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.settings.redirect_url.clone()).map_err(|_| OidcError::Provider)?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.expose().to_string())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a flow: stores its one-time row and returns the provider's authorization URL.
    /// `user_id`: the signed-in account of a link or re-authentication; `scan_id`: the
    /// scan whose deletion a [`Purpose::DeleteScan`] flow confirms.
    pub async fn start(
        &self,
        db: &Db,
        purpose: Purpose,
        user_id: Option<&str>,
        scan_id: Option<&str>,
    ) -> Result<Started, OidcError> {
        let client = self.client(self.metadata(false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let browser_cookie = random_token();
        let now = now_secs();
        sqlx::query("DELETE FROM oidc_flows WHERE expires_at < $1")
            .bind(now)
            .execute(db)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_flows (state_hash, browser_hash, nonce, pkce_verifier, purpose, user_id, scan_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(sha256_hex(state.secret().as_bytes()))
        .bind(sha256_hex(browser_cookie.as_bytes()))
        .bind(nonce.secret())
        .bind(verifier.secret())
        .bind(purpose.as_str())
        .bind(user_id)
        .bind(scan_id)
        .bind(now + FLOW_SECS)
        .execute(db)
        .await?;
        Ok(Started {
            authorize_url: url.to_string(),
            browser_cookie,
        })
    }

    /// Exchanges the code (with the flow's PKCE verifier) and verifies the ID token.
    pub async fn finish(&self, flow: &Flow, code: &str) -> Result<Identity, OidcError> {
        let client = self.client(self.metadata(false).await?)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| OidcError::Provider)?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::info!(error = %error_chain(&e), "token exchange refused");
                OidcError::TokenExchange
            })?;
        let id_token = token.id_token().ok_or(OidcError::InvalidToken("missing"))?;
        let nonce = Nonce::new(flow.nonce.clone());
        let verify = |client: &CoreClient<_, _, _, _, _, _>| {
            let verifier = client
                .id_token_verifier()
                .set_allowed_algs(vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
            id_token.claims(&verifier, &nonce).cloned()
        };
        let claims = match verify(&client) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // the provider may have rotated its keys: discover again, once
                verify(&self.client(self.metadata(true).await?)?)
            }
            other => other,
        }
        .map_err(|e| {
            let check = claims_error_code(&e);
            tracing::info!(check, error = %e, "ID token refused");
            OidcError::InvalidToken(check)
        })?;
        if claims.email_verified() != Some(true) {
            return Err(OidcError::EmailUnverified);
        }
        let email = claims
            .email()
            .map(|e| e.as_str().trim().to_lowercase())
            .filter(|e| !e.is_empty())
            .ok_or(OidcError::InvalidToken("no_email"))?;
        Ok(Identity {
            issuer: claims.issuer().as_str().to_string(),
            subject: claims.subject().as_str().to_string(),
            email,
        })
    }
}

fn claims_error_code(e: &ClaimsVerificationError) -> &'static str {
    match e {
        ClaimsVerificationError::Expired(_) => "expired",
        ClaimsVerificationError::InvalidAudience(_) => "audience",
        ClaimsVerificationError::InvalidIssuer(_) => "issuer",
        ClaimsVerificationError::InvalidNonce(_) => "nonce",
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey) => "unknown_kid",
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::DisallowedAlg(_)
            | SignatureVerificationError::UnsupportedAlg(_)
            | SignatureVerificationError::NoSignature,
        ) => "algorithm",
        ClaimsVerificationError::SignatureVerification(_) => "signature",
        _ => "claims",
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Takes (deletes) the flow named by `state`, if `browser_cookie` is the one that started
/// it and it has not expired. The row is gone whatever the outcome: one try per flow.
pub async fn take_flow(db: &Db, state: &str, browser_cookie: Option<&str>) -> Result<Flow, OidcError> {
    let row = sqlx::query(
        "DELETE FROM oidc_flows WHERE state_hash = $1 \
         RETURNING browser_hash, nonce, pkce_verifier, purpose, user_id, scan_id, expires_at",
    )
    .bind(sha256_hex(state.as_bytes()))
    .fetch_optional(db)
    .await?
    .ok_or(OidcError::UnknownFlow)?;
    let browser_hash: String = row.try_get("browser_hash")?;
    let cookie_matches = browser_cookie.is_some_and(|c| {
        use subtle::ConstantTimeEq;
        bool::from(sha256_hex(c.as_bytes()).as_bytes().ct_eq(browser_hash.as_bytes()))
    });
    let expires_at: i64 = row.try_get("expires_at")?;
    let flow = Flow {
        purpose: Purpose::parse(&row.try_get::<String, _>("purpose")?).ok_or(OidcError::UnknownFlow)?,
        user_id: row.try_get("user_id")?,
        scan_id: row.try_get("scan_id")?,
        nonce: row.try_get("nonce")?,
        pkce_verifier: row.try_get("pkce_verifier")?,
    };
    if !cookie_matches || expires_at < now_secs() {
        return Err(OidcError::UnknownFlow);
    }
    Ok(flow)
}

/// The account of a Google identity.
pub async fn account_of(db: &Db, issuer: &str, subject: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM oidc_identities WHERE issuer = $1 AND subject = $2")
        .bind(issuer)
        .bind(subject)
        .fetch_optional(db)
        .await
}

/// The account's Google identity (issuer, subject), if linked.
pub async fn identity_of(db: &Db, user_id: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("SELECT issuer, subject FROM oidc_identities WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    row.map(|r| Ok((r.try_get("issuer")?, r.try_get("subject")?)))
        .transpose()
}

/// Whether the account has a password (accounts created through Google have none).
pub async fn has_password(db: &Db, user_id: &str) -> Result<bool, sqlx::Error> {
    let hash: Option<String> = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    Ok(hash.is_some_and(|h| !h.is_empty()))
}

/// What signing up through Google found.
pub enum SignUp {
    Created(String),
    /// A password account has this email: no automatic link.
    EmailTaken,
}

/// A new account for a Google identity (no password), unless the email is taken.
pub async fn create_account(db: &Db, identity: &Identity) -> Result<SignUp, sqlx::Error> {
    let id = random_token();
    let now = now_secs();
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, '', $3) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&id)
    .bind(&identity.email)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(SignUp::EmailTaken);
    }
    sqlx::query("INSERT INTO oidc_identities (issuer, subject, user_id, linked_at) VALUES ($1, $2, $3, $4)")
        .bind(&identity.issuer)
        .bind(&identity.subject)
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(SignUp::Created(id))
}

/// What linking found.
pub enum Link {
    Linked,
    /// The Google identity belongs to another account.
    TakenByAnother,
    /// The account already has a Google identity.
    AlreadyLinked,
}

pub async fn link(db: &Db, user_id: &str, identity: &Identity) -> Result<Link, sqlx::Error> {
    if identity_of(db, user_id).await?.is_some() {
        return Ok(Link::AlreadyLinked);
    }
    let inserted = sqlx::query(
        "INSERT INTO oidc_identities (issuer, subject, user_id, linked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(user_id)
    .bind(now_secs())
    .execute(db)
    .await?;
    Ok(if inserted.rows_affected() == 0 {
        Link::TakenByAnother
    } else {
        Link::Linked
    })
}

/// Removes the account's Google identity, only while the account has a password (an
/// account keeps at least one way in). `Ok(false)`: nothing removed.
pub async fn unlink(db: &Db, user_id: &str) -> Result<bool, sqlx::Error> {
    let removed = sqlx::query(
        "DELETE FROM oidc_identities WHERE user_id = $1 \
         AND EXISTS (SELECT 1 FROM users WHERE id = $1 AND password_hash <> '')",
    )
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(removed.rows_affected() > 0)
}
