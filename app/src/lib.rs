#![recursion_limit = "256"]

//! NeuroVol's user interface: routes, pages and the server functions they call.
//!
//! Built twice: with `ssr` into the server binary (renders HTML, runs server functions) and
//! with `hydrate` into the browser's WASM (makes the same HTML interactive).

pub mod account;
mod account_page;
pub mod auth_rules;
pub mod chart;
mod format;
mod overview;
mod pages;
mod region_chart;
mod region_table;
pub mod regions;
mod report_page;
mod scan_page;
pub mod scan_state;
pub mod scans_api;
pub mod session;
mod slice_viewer;
pub mod timeline;
mod timeline_page;
mod upload;

use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::{SsrMode, path};

pub use session::{PrivacyFacts, SessionInfo, UserInfo};

/// The HTML document around the app, rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="referrer" content="same-origin"/>
                // the content-hashed name when the build wrote hash.txt (scripts/build.sh)
                <HashedStylesheet options=options.clone() id="neurovol"/>
                <HydrationScripts options/>
                // defines <neurovol-viewer> (a few lines; NiiVue itself is imported only when a
                // viewer is on the page), here so that pages drawn in the browser get it too
                <script type="module" src="/viewer.js" nonce=leptos::nonce::use_nonce()></script>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Who is signed in and the CSRF token, resolved before the page streams so the
    // server-rendered HTML and the hydrated page agree.
    let session = Resource::new_blocking(|| (), |_| session::get_session_info());
    provide_context(session);

    view! {
        <Title text="NeuroVol"/>
        <Router>
            <header class="site-header">
                <A href="/" attr:class="brand">"NeuroVol"</A>
                <nav>
                    <A href="/privacy">"Privacy"</A>
                    <pages::AccountNav/>
                </nav>
            </header>
            <main>
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view=pages::Landing/>
                    <Route path=path!("/signup") view=pages::SignUp/>
                    <Route path=path!("/login") view=pages::LogIn/>
                    <Route path=path!("/home") view=pages::Home/>
                    <Route path=path!("/privacy") view=pages::Privacy/>
                    <Route path=path!("/upload") view=upload::UploadPage/>
                    // rendered whole once their data is loaded (their forms need no script; a
                    // missing scan's 404 is set before the answer starts; the answer never
                    // depends on which part was ready first)
                    <Route path=path!("/scans/:id") view=scan_page::ScanStatusPage ssr=SsrMode::Async/>
                    <Route path=path!("/scans/:id/report") view=report_page::ReportPage ssr=SsrMode::Async/>
                    <Route path=path!("/timeline") view=timeline_page::TimelinePage ssr=SsrMode::Async/>
                    <Route path=path!("/account") view=account_page::AccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/deleted/:id") view=account_page::ReceiptPage ssr=SsrMode::Async/>
                </Routes>
            </main>
            <footer class="site-footer">
                <p>
                    "NeuroVol reports research-grade volumetry. It is not a medical device and does not give a diagnosis."
                </p>
            </footer>
        </Router>
    }
}
