//! The account page (`/account`: email, sign-in methods, password, the archive default,
//! the audit log, export, deletion) and a deletion's receipt (`/deleted/{id}`).
//!
//! Every action is a plain HTML form posting to the server (`/account/*`), so the page
//! works without its WASM; outcomes come back as a notice code in the URL.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::account::{AccountView, AuditEntry, DeletionScope, Receipt, SignInMethod, get_account, get_receipt};
use crate::format::{utc_date, utc_time};
use crate::pages::{CsrfField, PasswordInput, notice_from_query};
use crate::session::use_session;

#[component]
pub fn AccountPage() -> impl IntoView {
    let account = Resource::new_blocking(|| (), |_| get_account());
    let session = use_session();
    view! {
        <Title text="Your account — NeuroVol"/>
        <section class="prose account">
            <h1>"Your account"</h1>
            {notice_from_query()}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let csrf = session.await.map(|s| s.csrf_token).unwrap_or_default();
                    match account.await {
                        Ok(a) => account_body(a, csrf).into_any(),
                        Err(_) => view! {
                            <p>"Your account is only shown to you. " <a href="/login">"Log in"</a> " to see it."</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn account_body(a: AccountView, csrf: String) -> impl IntoView {
    let pending: u64 = a
        .receipts
        .iter()
        .filter(|r| r.is_pending())
        .map(|r| r.objects_pending)
        .sum();
    let has_password = a.methods.contains(&SignInMethod::Password);
    let has_google = a.methods.contains(&SignInMethod::Google);
    view! {
        <dl class="facts">
            <dt>"Email"</dt><dd data-testid="account-email">{a.email.clone()}</dd>
            <dt>"Account created"</dt><dd>{utc_date(a.created_at)}</dd>
            <dt>"Scans"</dt><dd data-testid="account-scans">{a.scans}</dd>
        </dl>

        <h2 id="methods">"How you sign in"</h2>
        <ul data-testid="sign-in-methods">
            {a.methods.iter().map(|m| view! { <li data-method=m.as_str()>{m.text()}</li> }).collect_view()}
        </ul>
        {google_methods(a.google_available, has_password, has_google, csrf.clone())}

        <h2 id="password">"Change your password"</h2>
        <form method="post" action="/account/password" class="stack narrow" data-testid="password-form">
            <CsrfField token=csrf.clone()/>
            <PasswordInput name="current_password" label="Current password" autocomplete="current-password"/>
            <PasswordInput name="password" key="new-password" label="New password" autocomplete="new-password"/>
            <PasswordInput name="password_confirm" label="Repeat the new password" autocomplete="new-password"/>
            <p class="muted small">"Every other session of your account is signed out."</p>
            <button type="submit">"Change password"</button>
        </form>

        <h2 id="export">"Your data"</h2>
        <p>
            "Download everything we hold about you as one ZIP: each scan's files and results, your account's facts, your activity log, a manifest with the SHA-256 of every file, and a README saying what each file is, why we hold it, where and for how long."
        </p>
        <form method="post" action="/account/export">
            <CsrfField token=csrf.clone()/>
            <button type="submit" data-testid="export">"Download all my data (ZIP)"</button>
        </form>

        {(!a.receipts.is_empty()).then(|| view! {
            <h2 id="deletions">"Deleted scans"</h2>
            {(pending > 0).then(|| view! {
                <p class="notice" data-testid="deletion-pending">
                    {format!("Deletion pending: {pending} stored file(s) are still being removed.")}
                </p>
            })}
            <ul data-testid="receipts">
                {a.receipts.iter().map(|r| view! {
                    <li data-testid="receipt" data-pending=r.is_pending().to_string()>
                        <A href=format!("/deleted/{}", r.id)>{format!("Scan deleted {}", utc_time(r.requested_at))}</A>
                        {if r.is_pending() { " — deletion pending" } else { " — done" }}
                    </li>
                }).collect_view()}
            </ul>
        })}

        <h2 id="activity">"Activity"</h2>
        <p class="muted small">"Sign-ins, uploads, downloads, exports, deletions and retries of your account, newest first. Times are UTC."</p>
        {audit_table(a.audit)}

        <h2 id="delete">"Delete your account"</h2>
        <p>
            "This deletes your account and everything of it at once: every scan with its files and results, your sessions and your activity log. It cannot be undone; download your data first if you want to keep it. A receipt with counts and dates, naming no account, remains."
        </p>
        {if has_password {
            view! {
                <form method="post" action="/account/delete" class="stack narrow" data-testid="delete-account-form">
                    <CsrfField token=csrf/>
                    <PasswordInput name="password" key="delete-password" label="Your password, to confirm" autocomplete="current-password"/>
                    <DeleteUnderstood/>
                    <button type="submit" class="danger" data-testid="delete-account">"Delete my account and all my data"</button>
                </form>
            }
            .into_any()
        } else {
            view! {
                <form method="post" action="/account/delete/google" class="stack narrow" data-testid="delete-account-form">
                    <CsrfField token=csrf/>
                    <p class="muted small">"To confirm, sign in with Google again; the account is deleted when Google confirms it is you."</p>
                    <DeleteUnderstood/>
                    <button type="submit" class="danger" data-testid="delete-account">"Confirm with Google and delete my account"</button>
                </form>
            }
            .into_any()
        }}
    }
}

#[component]
fn DeleteUnderstood() -> impl IntoView {
    view! {
        <label class="option">
            <input type="checkbox" name="understood" required data-testid="delete-understood"/>
            " I understand that my account and all its data will be deleted."
        </label>
    }
}

/// Linking and unlinking Google (where the instance offers it). Both ask for the password;
/// an account without one keeps Google, its only way in.
fn google_methods(available: bool, has_password: bool, has_google: bool, csrf: String) -> impl IntoView {
    match (available, has_password, has_google) {
        (true, true, false) => view! {
            <form method="post" action="/account/google/link" class="stack narrow" data-testid="google-link-form">
                <CsrfField token=csrf/>
                <PasswordInput name="password" key="link-password" label="Your password, to link Google" autocomplete="current-password"/>
                <button type="submit" data-testid="google-link">"Link Google sign-in"</button>
            </form>
        }
        .into_any(),
        (true, true, true) => view! {
            <form method="post" action="/account/google/unlink" class="stack narrow" data-testid="google-unlink-form">
                <CsrfField token=csrf/>
                <PasswordInput name="password" key="unlink-password" label="Your password, to unlink Google" autocomplete="current-password"/>
                <button type="submit" data-testid="google-unlink">"Unlink Google sign-in"</button>
            </form>
        }
        .into_any(),
        (_, false, true) => view! {
            <p class="muted small" data-testid="google-only">
                "You sign in with Google only, so it cannot be unlinked: an account keeps at least one way in."
            </p>
        }
        .into_any(),
        _ => ().into_any(),
    }
}

fn audit_table(entries: Vec<AuditEntry>) -> impl IntoView {
    view! {
        <table class="scans audit" data-testid="audit-log">
            <thead><tr><th>"When"</th><th>"What"</th><th>"IP address"</th><th>"Browser"</th></tr></thead>
            <tbody>
                {entries.into_iter().map(|e| view! {
                    <tr data-testid="audit-row" data-kind=e.kind.as_str() class:warn=e.kind.is_warning()>
                        <td>{utc_time(e.at_ms / 1000)}</td>
                        <td>{e.kind.text()}</td>
                        <td>{e.ip}</td>
                        <td class="small">{e.user_agent}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
pub fn ReceiptPage() -> impl IntoView {
    let params = use_params_map();
    let receipt = Resource::new_blocking(move || params.read().get("id").unwrap_or_default(), get_receipt);
    view! {
        <Title text="Deletion receipt — NeuroVol"/>
        <section class="card">
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match receipt.await {
                        Ok(Some(r)) => receipt_body(r).into_any(),
                        _ => {
                            #[cfg(feature = "ssr")]
                            if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
                                resp.set_status(http::StatusCode::NOT_FOUND);
                            }
                            view! { <h1>"Receipt not found"</h1><p><A href="/">"Back to the start"</A></p> }.into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

fn receipt_body(r: Receipt) -> impl IntoView {
    let what = match r.scope {
        DeletionScope::Scan => "A scan was deleted",
        DeletionScope::Account => "An account was deleted",
    };
    let date = |t: Option<i64>| t.map(utc_date).unwrap_or_else(|| "—".into());
    view! {
        <h1>"Deletion receipt"</h1>
        <p data-testid="receipt-status" data-pending=r.is_pending().to_string()>
            {match r.completed_at {
                Some(t) => format!("{what} on {}. Done: everything was removed by {}.", utc_time(r.requested_at), utc_time(t)),
                None => format!(
                    "{what} on {}. Its database rows are gone. Deletion pending: {} stored file(s) are still being removed; this page refreshes itself.",
                    utc_time(r.requested_at),
                    r.objects_pending
                ),
            }}
        </p>
        {r.is_pending().then(|| view! { <meta http-equiv="refresh" content="5"/> })}
        <dl class="facts" data-testid="receipt-counts">
            <dt>"Scans"</dt><dd data-count="scans">{r.scans}</dd>
            <dt>"Stored files"</dt><dd data-count="objects">{r.objects}</dd>
            {(r.scope == DeletionScope::Account).then(|| view! {
                <dt>"Activity log entries"</dt><dd data-count="audit_events">{r.audit_events}</dd>
                <dt>"Sessions signed out"</dt><dd data-count="sessions">{r.sessions}</dd>
                <dt>"Account created"</dt><dd>{date(r.account_created_at)}</dd>
            })}
            <dt>"First upload"</dt><dd>{date(r.first_upload_at)}</dd>
            <dt>"Last upload"</dt><dd>{date(r.last_upload_at)}</dd>
        </dl>
        <p class="muted small">"This receipt holds counts and dates only. Keep its address if you want to check it later."</p>
        <p>
            {match r.scope {
                DeletionScope::Scan => view! { <A href="/home">"Back to my scans"</A> }.into_any(),
                DeletionScope::Account => view! { <A href="/">"Back to the start"</A> }.into_any(),
            }}
        </p>
    }
}
