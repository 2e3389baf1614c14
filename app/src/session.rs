//! Data shared between the server and the page about the visitor and the instance.

use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub email: String,
}

/// Resolved by the server's session middleware for every request and put into the
/// request's extensions; pages read it through [`get_session_info`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub user: Option<UserInfo>,
    /// The CSRF token, bound to the session (server `web/csrf.rs`): equals the `nv_csrf`
    /// cookie; every state-changing request must echo it (form field `csrf_token` or header
    /// `x-csrf-token`).
    pub csrf_token: String,
    /// Whether this instance offers Google sign-in (`NEUROVOL_GOOGLE_*` configured).
    #[serde(default)]
    pub google_sign_in: bool,
}

/// What this running instance does with data, built by the server from its real
/// configuration so the Privacy page cannot drift from behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyFacts {
    /// DICOM attributes removed from every file, at every nesting level.
    pub removed_attributes: Vec<String>,
    /// Other classes of data removed (private elements, overlays, ...).
    pub removed_also: Vec<String>,
    /// The only header facts kept, and how.
    pub kept_facts: Vec<String>,
    /// Where accounts and results live (e.g. "SQLite file on this server").
    pub database: String,
    /// Where stored files live.
    pub object_store: String,
    /// Where segmentation runs.
    pub segmentation: String,
    pub session_days: u32,
    /// What is kept and for how long.
    pub retention: Vec<String>,
    /// What the user can do with their data themselves (export, delete, the audit log).
    pub controls: Vec<String>,
    pub logging: String,
}

#[server(input = GetUrl)]
pub async fn get_session_info() -> Result<SessionInfo, ServerFnError> {
    let parts = use_context::<http::request::Parts>().ok_or_else(|| ServerFnError::new("request context missing"))?;
    parts
        .extensions
        .get::<SessionInfo>()
        .cloned()
        .ok_or_else(|| ServerFnError::new("session middleware not installed"))
}

#[server(input = GetUrl)]
pub async fn get_privacy_facts() -> Result<PrivacyFacts, ServerFnError> {
    use_context::<PrivacyFacts>().ok_or_else(|| ServerFnError::new("privacy facts not provided"))
}

pub type SessionResource = Resource<Result<SessionInfo, ServerFnError>>;

pub fn use_session() -> SessionResource {
    expect_context::<SessionResource>()
}
