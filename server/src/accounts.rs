//! The account read model: what the account page and the receipts show, read from the
//! database (`app::account::AccountStore`, provided to the pages as Leptos context).

use app::account::{AccountStore, AccountView, BoxFuture, Receipt, SignInMethod};
use sqlx::Row;

use crate::db::Db;

pub struct DbAccountStore {
    pub db: Db,
    /// Whether Google sign-in is configured (the page offers link and unlink).
    pub google_available: bool,
}

/// How an account can sign in: its password (accounts made through Google have none) and
/// its Google identity.
pub async fn sign_in_methods(db: &Db, user_id: &str) -> Result<Vec<SignInMethod>, sqlx::Error> {
    let mut methods = Vec::new();
    if crate::oidc::has_password(db, user_id).await? {
        methods.push(SignInMethod::Password);
    }
    if crate::oidc::identity_of(db, user_id).await?.is_some() {
        methods.push(SignInMethod::Google);
    }
    Ok(methods)
}

async fn account(db: &Db, user_id: &str, google_available: bool) -> Result<Option<AccountView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT email, created_at, (SELECT COUNT(*) FROM scans WHERE user_id = $1) AS scans \
         FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(AccountView {
        email: row.try_get("email")?,
        created_at: row.try_get("created_at")?,
        methods: sign_in_methods(db, user_id).await?,
        google_available,
        scans: row.try_get::<i64, _>("scans")?.max(0) as u64,
        audit: crate::audit::list(db, user_id, Some(crate::audit::PAGE_EVENTS)).await?,
        receipts: crate::deletion::receipts_of(db, user_id).await?,
    }))
}

impl AccountStore for DbAccountStore {
    fn account(&self, user_id: String) -> BoxFuture<Result<Option<AccountView>, String>> {
        let (db, google) = (self.db.clone(), self.google_available);
        Box::pin(async move { account(&db, &user_id, google).await.map_err(|e| e.to_string()) })
    }

    fn receipt(&self, user_id: Option<String>, id: String) -> BoxFuture<Result<Option<Receipt>, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            crate::deletion::receipt(&db, user_id.as_deref(), &id)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
