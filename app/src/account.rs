//! What the account page knows: the audit log's event kinds, the sign-in methods, deletion
//! receipts, and the server functions that read them.
//!
//! Like the scans (`scans_api.rs`), the database access is injected: the server implements
//! [`AccountStore`] and provides it as Leptos context. Every change (password, settings,
//! export, deletion) is a plain form post to the server's `/account/*` and
//! `/scans/{id}/delete` endpoints, so the page works without its WASM.

use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use serde::{Deserialize, Serialize};

/// One kind of event in an account's audit log, stored under its `as_str` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    AccountCreated,
    SignInSucceeded,
    /// A wrong password for this account's email (unknown emails have no account to log to).
    SignInFailed,
    /// Refused without a check: too many failures.
    SignInThrottled,
    SignedOut,
    PasswordChanged,
    /// A wrong password where the account page asked for it again (delete, change password).
    PasswordCheckFailed,
    UploadAccepted,
    FileDownloaded,
    ExportDownloaded,
    ScanRetried,
    ScanDeleted,
    GoogleSignInSucceeded,
    /// A Google sign-in, link or re-authentication refused (token, state, unverified email).
    GoogleSignInFailed,
    GoogleLinked,
    GoogleUnlinked,
}

impl AuditKind {
    pub const ALL: [AuditKind; 16] = [
        AuditKind::AccountCreated,
        AuditKind::SignInSucceeded,
        AuditKind::SignInFailed,
        AuditKind::SignInThrottled,
        AuditKind::SignedOut,
        AuditKind::PasswordChanged,
        AuditKind::PasswordCheckFailed,
        AuditKind::UploadAccepted,
        AuditKind::FileDownloaded,
        AuditKind::ExportDownloaded,
        AuditKind::ScanRetried,
        AuditKind::ScanDeleted,
        AuditKind::GoogleSignInSucceeded,
        AuditKind::GoogleSignInFailed,
        AuditKind::GoogleLinked,
        AuditKind::GoogleUnlinked,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AuditKind::AccountCreated => "account_created",
            AuditKind::SignInSucceeded => "sign_in_succeeded",
            AuditKind::SignInFailed => "sign_in_failed",
            AuditKind::SignInThrottled => "sign_in_throttled",
            AuditKind::SignedOut => "signed_out",
            AuditKind::PasswordChanged => "password_changed",
            AuditKind::PasswordCheckFailed => "password_check_failed",
            AuditKind::UploadAccepted => "upload_accepted",
            AuditKind::FileDownloaded => "file_downloaded",
            AuditKind::ExportDownloaded => "export_downloaded",
            AuditKind::ScanRetried => "scan_retried",
            AuditKind::ScanDeleted => "scan_deleted",
            AuditKind::GoogleSignInSucceeded => "google_sign_in_succeeded",
            AuditKind::GoogleSignInFailed => "google_sign_in_failed",
            AuditKind::GoogleLinked => "google_linked",
            AuditKind::GoogleUnlinked => "google_unlinked",
        }
    }

    pub fn parse(s: &str) -> Option<AuditKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The account page's words for it.
    pub fn text(self) -> &'static str {
        match self {
            AuditKind::AccountCreated => "Account created",
            AuditKind::SignInSucceeded => "Signed in",
            AuditKind::SignInFailed => "Sign-in refused: wrong password",
            AuditKind::SignInThrottled => "Sign-in refused: too many attempts",
            AuditKind::SignedOut => "Signed out",
            AuditKind::PasswordChanged => "Password changed; other sessions ended",
            AuditKind::PasswordCheckFailed => "Password check failed on the account page",
            AuditKind::UploadAccepted => "Scan uploaded",
            AuditKind::FileDownloaded => "File of a scan downloaded",
            AuditKind::ExportDownloaded => "All data exported",
            AuditKind::ScanRetried => "Processing of a scan retried",
            AuditKind::ScanDeleted => "Scan deleted",
            AuditKind::GoogleSignInSucceeded => "Signed in with Google",
            AuditKind::GoogleSignInFailed => "Google sign-in refused",
            AuditKind::GoogleLinked => "Google sign-in linked",
            AuditKind::GoogleUnlinked => "Google sign-in unlinked",
        }
    }

    /// Whether the event is a warning sign the page highlights.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            AuditKind::SignInFailed
                | AuditKind::SignInThrottled
                | AuditKind::PasswordCheckFailed
                | AuditKind::GoogleSignInFailed
        )
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an account can sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    Password,
    Google,
}

impl SignInMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::Google => "google",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            SignInMethod::Password => "Email and password",
            SignInMethod::Google => "Google",
        }
    }
}

/// What a deletion covered, stored under its `as_str` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionScope {
    Scan,
    Account,
}

impl DeletionScope {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeletionScope::Scan => "scan",
            DeletionScope::Account => "account",
        }
    }

    pub fn parse(s: &str) -> Option<DeletionScope> {
        [DeletionScope::Scan, DeletionScope::Account]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One audit-log line as the account page (and the export) shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub kind: AuditKind,
    /// A scan or receipt id, or empty.
    pub subject: String,
    pub ip: String,
    pub user_agent: String,
}

/// A deletion's receipt: counts and dates, never health data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub id: String,
    pub scope: DeletionScope,
    pub requested_at: i64,
    /// `None` while stored files are still being removed ("deletion pending").
    pub completed_at: Option<i64>,
    pub scans: u64,
    pub objects: u64,
    /// Stored files of this deletion not removed yet.
    pub objects_pending: u64,
    pub audit_events: u64,
    pub sessions: u64,
    pub first_upload_at: Option<i64>,
    pub last_upload_at: Option<i64>,
    pub account_created_at: Option<i64>,
}

impl Receipt {
    pub fn is_pending(&self) -> bool {
        self.completed_at.is_none()
    }
}

/// Everything the account page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub email: String,
    pub created_at: i64,
    pub methods: Vec<SignInMethod>,
    /// Whether this instance offers Google sign-in (link and unlink are shown).
    #[serde(default)]
    pub google_available: bool,
    pub scans: u64,
    /// Newest first.
    pub audit: Vec<AuditEntry>,
    /// Receipts of this account's scan deletions, newest first.
    pub receipts: Vec<Receipt>,
}

#[cfg(feature = "ssr")]
pub use crate::scans_api::BoxFuture;

/// Account rows, implemented by the server over its database.
#[cfg(feature = "ssr")]
pub trait AccountStore: Send + Sync + 'static {
    fn account(&self, user_id: String) -> BoxFuture<Result<Option<AccountView>, String>>;
    /// A receipt: an account's receipt for anyone holding its id (the account is gone), a
    /// scan's receipt only for its account (`None` for anyone else, as for a missing one).
    fn receipt(&self, user_id: Option<String>, id: String) -> BoxFuture<Result<Option<Receipt>, String>>;
}

#[cfg(feature = "ssr")]
pub type SharedAccountStore = std::sync::Arc<dyn AccountStore>;

#[cfg(feature = "ssr")]
fn store() -> Result<SharedAccountStore, ServerFnError> {
    use_context::<SharedAccountStore>().ok_or_else(|| ServerFnError::new("account store not provided"))
}

/// The signed-in account (an error for a visitor).
#[server(input = GetUrl)]
pub async fn get_account() -> Result<AccountView, ServerFnError> {
    let user = crate::scans_api::signed_in_user()?;
    store()?
        .account(user)
        .await
        .map_err(|_| ServerFnError::new("Your account could not be loaded."))?
        .ok_or_else(|| ServerFnError::new("Please log in."))
}

/// A deletion receipt by its id (`None` when missing or not the visitor's to see).
#[server(input = GetUrl)]
pub async fn get_receipt(id: String) -> Result<Option<Receipt>, ServerFnError> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let user = crate::scans_api::signed_in_user().ok();
    store()?
        .receipt(user, id)
        .await
        .map_err(|_| ServerFnError::new("The receipt could not be loaded."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for k in AuditKind::ALL {
            assert_eq!(AuditKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        for s in [DeletionScope::Scan, DeletionScope::Account] {
            assert_eq!(DeletionScope::parse(s.as_str()), Some(s));
        }
        assert_eq!(AuditKind::parse(""), None);
    }
}
