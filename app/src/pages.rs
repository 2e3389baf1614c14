//! The pages. Account forms are plain HTML forms posting to the server's `/auth/*`
//! handlers, so they work before (and without) the WASM; hydration adds live feedback.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_query_map;

use crate::auth_rules::{AuthNotice, PasswordRule};
use crate::session::{PrivacyFacts, SessionInfo, get_privacy_facts, use_session};

/// Runs `f` with the session once it is resolved (it is blocking, so this is immediate
/// after the first render).
pub(crate) fn with_session<V: IntoView + 'static>(
    f: impl Fn(SessionInfo) -> V + Send + Sync + Clone + 'static,
) -> impl IntoView {
    let session = use_session();
    view! {
        <Suspense fallback=|| ()>
            {
                let f = f.clone();
                move || {
                    let f = f.clone();
                    Suspend::new(async move {
                        match session.await {
                            Ok(info) => f(info).into_any(),
                            Err(_) => view! { <p class="notice error">"The server could not be reached."</p> }.into_any(),
                        }
                    })
                }
            }
        </Suspense>
    }
}

#[component]
pub(crate) fn CsrfField(token: String) -> impl IntoView {
    view! { <input type="hidden" name="csrf_token" value=token/> }
}

#[component]
pub fn AccountNav() -> impl IntoView {
    with_session(|info| match info.user {
        Some(user) => view! {
            <A href="/home">"My scans"</A>
            <A href="/account" attr:class="who" attr:data-testid="account-link">{user.email}</A>
            <form method="post" action="/auth/logout" class="inline">
                <CsrfField token=info.csrf_token/>
                <button type="submit" class="link">"Log out"</button>
            </form>
        }
        .into_any(),
        None => view! {
            <A href="/login">"Log in"</A>
            <A href="/signup" attr:class="button">"Sign up"</A>
        }
        .into_any(),
    })
}

/// The notice named by `?notice=` or `?error=` in the URL (codes only, never user data).
pub(crate) fn notice_from_query() -> impl IntoView {
    let query = use_query_map();
    move || {
        let q = query.read();
        let code = q.get("error").or_else(|| q.get("notice"))?;
        let notice = AuthNotice::from_code(&code)?;
        let class = if notice.is_error() { "notice error" } else { "notice" };
        Some(view! { <p class=class role="alert" data-testid="form-notice">{notice.message()}</p> })
    }
}

/// The page to return to after signing in (`?next=`), when it is a path on this site.
#[component]
fn NextField() -> impl IntoView {
    let query = use_query_map();
    move || {
        let next = query.read().get("next")?;
        let next = crate::auth_rules::safe_next(&next)?.to_string();
        Some(view! { <input type="hidden" name="next" value=next/> })
    }
}

/// A password input with a show/hide toggle (a button, so it needs the hydrated page).
#[component]
pub(crate) fn PasswordInput(
    name: &'static str,
    label: &'static str,
    autocomplete: &'static str,
    #[prop(optional)] on_input: Option<WriteSignal<String>>,
    /// Names the field's id (and its toggle's test id) when `name` is not unique on the page.
    #[prop(optional)]
    key: Option<&'static str>,
) -> impl IntoView {
    let (visible, set_visible) = signal(false);
    let key = key.unwrap_or(name);
    let id = format!("field-{key}");
    view! {
        <label for=id.clone()>{label}</label>
        <div class="password-row">
            <input
                id=id
                name=name
                type=move || if visible.get() { "text" } else { "password" }
                autocomplete=autocomplete
                required
                on:input=move |ev| {
                    if let Some(set) = on_input {
                        set.set(event_target_value(&ev));
                    }
                }
            />
            <button
                type="button"
                class="toggle"
                data-testid=format!("toggle-{key}")
                aria-pressed=move || visible.get().to_string()
                on:click=move |_| set_visible.update(|v| *v = !*v)
            >
                {move || if visible.get() { "Hide" } else { "Show" }}
            </button>
        </div>
    }
}

#[component]
pub fn Landing() -> impl IntoView {
    view! {
        <Title text="NeuroVol — brain volumes from your MRI"/>
        <section class="hero">
            <h1>"Your brain MRI, measured."</h1>
            <p class="lead">
                "Upload a brain MRI series (a ZIP of DICOM files, ideally a 3D T1) and get the volume of each brain region — hippocampus, ventricles, thalamus and more — with a percentile against people of your age and sex, and a view of how they change across your scans."
            </p>
            <p class="lead">
                "Identifying information is stripped from the files in your browser before anything is uploaded, and stripped again on our server before anything is stored."
            </p>
            <p class="actions">
                <A href="/signup" attr:class="button">"Create an account"</A>
                " "
                <A href="/login">"Log in"</A>
                " · "
                <A href="/privacy">"What we keep"</A>
            </p>
        </section>
    }
}

#[component]
pub fn SignUp() -> impl IntoView {
    let (email, set_email) = signal(String::new());
    let (password, set_password) = signal(String::new());
    view! {
        <Title text="Sign up — NeuroVol"/>
        <section class="card">
            <h1>"Create your account"</h1>
            {notice_from_query()}
            {with_session(move |info| view! {
                <form method="post" action="/auth/signup" class="stack" data-testid="signup-form">
                    <CsrfField token=info.csrf_token.clone()/>
                    <label for="field-email">"Email"</label>
                    <input id="field-email" name="email" type="email" autocomplete="email" required
                        on:input=move |ev| set_email.set(event_target_value(&ev))/>
                    <PasswordInput name="password" label="Password" autocomplete="new-password" on_input=set_password/>
                    <ul class="rules" data-testid="password-rules" aria-live="polite">
                        {PasswordRule::ALL.into_iter().map(|rule| {
                            let ok = move || rule.satisfied(&password.read(), &email.read()) && !password.read().is_empty();
                            view! {
                                <li class:ok=ok>
                                    <span aria-hidden="true">{move || if ok() { "✓ " } else { "• " }}</span>
                                    {rule.describe()}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                    <PasswordInput name="password_confirm" label="Repeat password" autocomplete="new-password"/>
                    <button type="submit">"Create account"</button>
                </form>
                <GoogleSignIn show=info.google_sign_in token=info.csrf_token.clone()/>
            })}
            <p>"Already have an account? " <A href="/login">"Log in"</A></p>
        </section>
    }
}

#[component]
pub fn LogIn() -> impl IntoView {
    view! {
        <Title text="Log in — NeuroVol"/>
        <section class="card">
            <h1>"Log in"</h1>
            {notice_from_query()}
            {with_session(|info| view! {
                <form method="post" action="/auth/login" class="stack" data-testid="login-form">
                    <CsrfField token=info.csrf_token.clone()/>
                    <NextField/>
                    <label for="field-email">"Email"</label>
                    <input id="field-email" name="email" type="email" autocomplete="username" required/>
                    <PasswordInput name="password" label="Password" autocomplete="current-password"/>
                    <button type="submit">"Log in"</button>
                </form>
                <GoogleSignIn show=info.google_sign_in token=info.csrf_token.clone()/>
            })}
            <p>"New here? " <A href="/signup">"Create an account"</A></p>
        </section>
    }
}

#[component]
pub fn Home() -> impl IntoView {
    view! {
        <Title text="My scans — NeuroVol"/>
        {with_session(|info| match info.user {
            Some(user) => view! {
                <section>
                    <h1>"My scans"</h1>
                    <p class="muted">"Signed in as " <strong>{user.email}</strong></p>
                    <crate::scan_page::ScanList/>
                </section>
            }
            .into_any(),
            None => view! {
                <section class="card">
                    <h1>"Please log in"</h1>
                    <p>"Your scans are only shown to you. " <a href="/login">"Log in"</a> " to see them."</p>
                </section>
            }
            .into_any(),
        })}
    }
}

#[component]
pub fn Privacy() -> impl IntoView {
    let facts = Resource::new_blocking(|| (), |_| get_privacy_facts());
    view! {
        <Title text="Privacy — NeuroVol"/>
        <section class="prose">
            <h1>"Privacy: what this server does with your data"</h1>
            <p class="muted">"Generated from this running instance's configuration."</p>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match facts.await {
                        Ok(f) => privacy_body(f).into_any(),
                        Err(_) => view! { <p class="notice error">"The privacy facts could not be loaded."</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn privacy_body(f: PrivacyFacts) -> impl IntoView {
    let list = |items: Vec<String>| items.into_iter().map(|i| view! { <li>{i}</li> }).collect_view();
    view! {
        <h2>"Before upload, in your browser — and again on the server"</h2>
        <p>
            "Every DICOM file is de-identified by the same code in your browser and then, authoritatively, on the server before anything is stored. These attributes are removed from every file at every nesting level:"
        </p>
        <ul class="columns" data-testid="removed-attributes">{list(f.removed_attributes)}</ul>
        <p>"Also removed:"</p>
        <ul>{list(f.removed_also)}</ul>
        <h2>"What is kept"</h2>
        <ul data-testid="kept-facts">{list(f.kept_facts)}</ul>
        <p>"Files that used the Deflated transfer syntax are stored uncompressed (Explicit VR Little Endian) after de-identification."</p>
        <h2>"Where it is kept"</h2>
        <ul>
            <li>"Accounts and results: " {f.database}</li>
            <li>"Files: " {f.object_store}</li>
            <li>"Segmentation: " {f.segmentation}</li>
            <li>{format!("Sign-in sessions last {} days, or until you log out.", f.session_days)}</li>
        </ul>
        <h2>"Retention"</h2>
        <ul>{list(f.retention)}</ul>
        <h2>"Your controls"</h2>
        <ul data-testid="privacy-controls">{list(f.controls)}</ul>
        <h2>"Logs"</h2>
        <p>{f.logging}</p>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
        resp.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found — NeuroVol"/>
        <section class="card">
            <h1>"Page not found"</h1>
            <p><A href="/">"Back to the start"</A></p>
        </section>
    }
}

/// "Continue with Google": a form posting to `/auth/google`, shown only where the instance
/// offers Google sign-in.
#[component]
fn GoogleSignIn(show: bool, token: String) -> impl IntoView {
    show.then(|| {
        view! {
            <form method="post" action="/auth/google" class="stack" data-testid="google-sign-in">
                <CsrfField token=token/>
                <button type="submit" class="secondary">"Continue with Google"</button>
            </form>
        }
    })
}
