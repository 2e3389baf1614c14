//! The upload page (`/upload`).
//!
//! Upload flow, all in the user's browser until they confirm:
//! drop / pick a ZIP → the de-identification Web Worker (`/deid-worker.js`, the `deid`
//! crate compiled to WASM) lists its series (with the LOCAL-ONLY SeriesDescription) →
//! the user picks one (a 3D-T1-looking one is pre-selected) → the worker de-identifies
//! it with progress → the page shows what will be removed (original values from the
//! user's own file, shown here and never sent) and what is kept → on confirm, only the
//! de-identified ZIP is uploaded in 8 MiB chunks (`/uploads/...`), resuming from the
//! server's acknowledged chunks after a dropped connection → the scan's status page.

mod client;

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use send_wrapper::SendWrapper;
use serde::Deserialize;

use crate::format::{mib, sex_text};
use crate::session::{SessionInfo, use_session};

// ---------------------------------------------------------------------------------------
// what the worker sends (a subset of the deid crate's JSON; unknown fields ignored)

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct InventoryView {
    series: Vec<SeriesView>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct SeriesView {
    index: usize,
    info: SeriesInfoView,
    /// LOCAL ONLY: shown to help choose, never sent.
    local_only: LocalOnlyView,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct SeriesInfoView {
    files: u64,
    modality: Option<String>,
    series_number: Option<i64>,
    rows: Option<u16>,
    columns: Option<u16>,
    slices: u64,
    looks_like_3d_t1: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct LocalOnlyView {
    series_description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct SummaryView {
    report: ReportView,
    facts: Option<FactsView>,
    /// LOCAL ONLY: original values from the user's own files.
    removals: Vec<RemovalView>,
    removals_truncated: bool,
    output_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ReportView {
    files_written: u64,
    removed: BTreeMap<String, u64>,
    private_elements_removed: u64,
    overlay_elements_removed: u64,
    #[serde(default)]
    curve_elements_removed: u64,
    distinct_uids_replaced: u64,
    #[serde(default)]
    transcoded_from_deflated: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct FactsView {
    age_years: Option<u32>,
    sex: String,
    study_date: Option<DateView>,
    #[serde(default)]
    scanner: crate::timeline::ScannerFacts,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
struct DateView {
    year: u16,
    month: u8,
    day: u8,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct RemovalView {
    path: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ErrorView {
    #[serde(default)]
    code: String,
    #[serde(alias = "error")]
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Reading,
    Choose,
    Deidentifying,
    Review,
    Uploading,
    Finishing,
}

const CHUNK: f64 = 8.0 * 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------
// pages

#[component]
pub fn UploadPage() -> impl IntoView {
    let session = use_session();
    view! {
        <Title text="Upload a scan — NeuroVol"/>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match session.await {
                    Ok(SessionInfo { user: Some(_), csrf_token, .. }) => {
                        view! { <UploadFlow csrf=csrf_token/> }.into_any()
                    }
                    Ok(_) => view! {
                        <section class="card">
                            <h1>"Please log in"</h1>
                            <p>"Uploads are tied to your account. " <a href="/login">"Log in"</a> " to upload a scan."</p>
                        </section>
                    }
                    .into_any(),
                    Err(_) => view! { <p class="notice error">"The server could not be reached."</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn UploadFlow(csrf: String) -> impl IntoView {
    let (phase, set_phase) = signal(Phase::Idle);
    let (error, set_error) = signal(None::<String>);
    let (hover, set_hover) = signal(false);
    let (inventory, set_inventory) = signal(None::<InventoryView>);
    let (selected, set_selected) = signal(0usize);
    let (progress, set_progress) = signal((0u32, 0u32));
    let (summary, set_summary) = signal(None::<SummaryView>);
    let (deid_ms, set_deid_ms) = signal(None::<f64>);
    let (sent, set_sent) = signal((0f64, 0f64));
    let (upload_ms, set_upload_ms) = signal(None::<f64>);
    // Browser objects, only ever set in the browser (None during server rendering, so
    // dropping them on any server thread is fine).
    let worker = StoredValue::new(None::<SendWrapper<web_sys::Worker>>);
    let output = StoredValue::new(None::<SendWrapper<web_sys::Blob>>);
    let csrf = StoredValue::new(csrf);

    let on_message = move |kind: String, data: wasm_bindgen::JsValue| {
        let json = || client::get_str(&data, "json").unwrap_or_default();
        match kind.as_str() {
            "inventory" => match serde_json::from_str::<InventoryView>(&json()) {
                Ok(inv) => {
                    let pick = inv
                        .series
                        .iter()
                        .find(|s| s.info.looks_like_3d_t1)
                        .or_else(|| inv.series.iter().max_by_key(|s| s.info.slices))
                        .map_or(0, |s| s.index);
                    set_selected.set(pick);
                    set_inventory.set(Some(inv));
                    set_phase.set(Phase::Choose);
                }
                Err(_) => {
                    set_error.set(Some("The archive could not be read.".into()));
                    set_phase.set(Phase::Idle);
                }
            },
            "progress" => {
                let done = client::get_num(&data, "done").unwrap_or(0.0) as u32;
                let total = client::get_num(&data, "total").unwrap_or(0.0) as u32;
                set_progress.set((done, total));
            }
            "result" => {
                let parsed = serde_json::from_str::<SummaryView>(&json());
                match (parsed, client::get_array_buffer(&data, "zip")) {
                    (Ok(s), Some(buf)) => {
                        output.set_value(client::blob_of(&buf).map(SendWrapper::new));
                        set_deid_ms.set(client::get_num(&data, "ms"));
                        set_summary.set(Some(s));
                        set_phase.set(Phase::Review);
                    }
                    _ => {
                        set_error.set(Some("De-identification failed in the browser.".into()));
                        set_phase.set(Phase::Idle);
                    }
                }
            }
            _ => {
                let msg = serde_json::from_str::<ErrorView>(&json())
                    .map(|e| e.message)
                    .unwrap_or_else(|_| "The archive could not be processed.".into());
                set_error.set(Some(msg));
                set_phase.set(Phase::Idle);
            }
        }
    };

    let take_file = move |file: web_sys::File| {
        set_error.set(None);
        set_inventory.set(None);
        set_summary.set(None);
        output.set_value(None);
        if worker.with_value(|w| w.is_none()) {
            match client::start_worker(on_message) {
                Ok(w) => worker.set_value(Some(SendWrapper::new(w))),
                Err(msg) => {
                    set_error.set(Some(msg));
                    return;
                }
            }
        }
        set_phase.set(Phase::Reading);
        worker.with_value(|w| {
            if let Some(w) = w {
                client::post(w, "inspect", Some(("file", file.as_ref())), None);
            }
        });
    };

    let deidentify = move |_| {
        set_error.set(None);
        let n = inventory.with(|i| {
            i.as_ref()
                .and_then(|i| i.series.iter().find(|s| s.index == selected.get_untracked()))
                .map_or(0, |s| s.info.files)
        });
        set_progress.set((0, n as u32));
        set_phase.set(Phase::Deidentifying);
        worker.with_value(|w| {
            if let Some(w) = w {
                client::post(w, "deidentify", None, Some(("series", selected.get_untracked() as f64)));
            }
        });
    };

    let confirm = move |_| {
        let Some(blob) = output.with_value(|b| b.as_ref().map(|b| (**b).clone())) else {
            return;
        };
        set_error.set(None);
        set_phase.set(Phase::Uploading);
        set_sent.set((0.0, blob.size()));
        let token = csrf.get_value();
        leptos::task::spawn_local(async move {
            let t0 = client::now_ms();
            match client::upload(&blob, &token, CHUNK, move |done, total| set_sent.set((done, total))).await {
                Ok(url) => {
                    set_upload_ms.set(Some(client::now_ms() - t0));
                    set_phase.set(Phase::Finishing);
                    client::go(&url);
                }
                Err(msg) => {
                    set_error.set(Some(msg));
                    set_phase.set(Phase::Review);
                }
            }
        });
    };

    let cancel = move |_| {
        output.set_value(None);
        set_summary.set(None);
        set_inventory.set(None);
        set_phase.set(Phase::Idle);
    };

    let busy = move || {
        matches!(
            phase.get(),
            Phase::Reading | Phase::Deidentifying | Phase::Uploading | Phase::Finishing
        )
    };
    let on_drop = move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        set_hover.set(false);
        if busy() {
            return;
        }
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            take_file(file);
        }
    };
    let on_pick = move |ev: web_sys::Event| {
        if let Some(file) = client::input_file(&ev)
            && !busy()
        {
            take_file(file);
        }
    };

    let dropzone = view! {
            <div
                class="dropzone"
                class:hover=move || hover.get()
                class:busy=busy
                data-testid="dropzone"
                on:dragenter=move |ev: web_sys::DragEvent| { ev.prevent_default(); set_hover.set(true); }
                on:dragover=move |ev: web_sys::DragEvent| { ev.prevent_default(); set_hover.set(true); }
                on:dragleave=move |_| set_hover.set(false)
                on:drop=on_drop
            >
                <p><strong>"Drop the ZIP here"</strong></p>
                <p>"or"</p>
                <label class="button" for="zip-input">"Choose a ZIP file"</label>
                <input id="zip-input" class="visually-hidden" type="file" accept=".zip,application/zip" data-testid="file-input" on:change=on_pick/>
                <p class="muted small">"Nothing leaves your computer until you confirm."</p>
            </div>

    }
    .into_any();
    let reading = view! {
            <Show when=move || phase.get() == Phase::Reading>
                <p class="status" data-testid="reading" aria-live="polite">"Reading the archive…"</p>
            </Show>

    }
    .into_any();
    let series = view! {
            <Show when=move || inventory.with(|i| i.is_some()) && matches!(phase.get(), Phase::Choose | Phase::Deidentifying)>
                <div class="series" data-testid="series-list">
                    <h2>"Choose the series"</h2>
                    <p class="muted">"The descriptions come from your files and are only shown here; they are never sent."</p>
                    <table>
                        <thead><tr><th></th><th>"Series"</th><th>"Description (local only)"</th><th>"Modality"</th><th>"Files"</th><th>"Dimensions"</th></tr></thead>
                        <tbody>
                            {move || inventory.get().map(|inv| inv.series.into_iter().map(|s| {
                                let idx = s.index;
                                let dims = match (s.info.columns, s.info.rows) {
                                    (Some(c), Some(r)) => format!("{c} × {r} × {}", s.info.slices),
                                    _ => format!("{} images", s.info.slices),
                                };
                                view! {
                                    <tr data-testid="series-row" class:recommended=s.info.looks_like_3d_t1>
                                        <td><input type="radio" name="series" prop:checked=move || selected.get() == idx
                                            on:change=move |_| set_selected.set(idx) disabled=busy/></td>
                                        <td>{s.info.series_number.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                                        <td class="local-only">{s.local_only.series_description.unwrap_or_else(|| "(none)".into())}
                                            {s.info.looks_like_3d_t1.then(|| view! { " " <span class="tag">"3D T1"</span> })}</td>
                                        <td>{s.info.modality.unwrap_or_else(|| "?".into())}</td>
                                        <td>{s.info.files}</td>
                                        <td>{dims}</td>
                                    </tr>
                                }
                            }).collect_view())}
                        </tbody>
                    </table>
                    <button type="button" data-testid="deidentify" on:click=deidentify disabled=busy>"De-identify this series"</button>
                </div>
            </Show>

    }
    .into_any();
    let deid_progress = view! {
            <Show when=move || phase.get() == Phase::Deidentifying>
                {move || {
                    let (done, total) = progress.get();
                    let pct = if total > 0 { (f64::from(done) * 100.0 / f64::from(total)).round() } else { 0.0 };
                    view! {
                        <div class="progress-block" data-testid="deid-progress">
                            <p>"De-identifying in your browser: " {done} " of " {total} " files"</p>
                            // a <progress> element, not a styled div: the CSP allows no inline styles
                            <progress class="bar" max="100" value=pct></progress>
                        </div>
                    }
                }}
            </Show>

    }
    .into_any();
    let review_block = view! {
            <Show when=move || summary.with(|s| s.is_some()) && matches!(phase.get(), Phase::Review | Phase::Uploading | Phase::Finishing)>
                {move || summary.get().map(|s| review(s, deid_ms.get()))}
                <Show when=move || phase.get() == Phase::Review>
                    <p class="muted small" data-testid="face-removal">
                        "On the server the face is removed from the 3D volume before it is stored or segmented, and the DICOM files are deleted once converted: their images show the face."
                    </p>
                    <p class="actions">
                        <button type="button" data-testid="confirm-upload" on:click=confirm>"Upload the de-identified files"</button>
                        " "
                        <button type="button" class="link" on:click=cancel>"Cancel"</button>
                    </p>
                </Show>
            </Show>

    }
    .into_any();
    let upload_block = view! {
            <Show when=move || matches!(phase.get(), Phase::Uploading | Phase::Finishing)>
                {move || {
                    let (done, total) = sent.get();
                    let pct = if total > 0.0 { (done * 100.0 / total).floor().min(100.0) } else { 0.0 };
                    view! {
                        <div class="progress-block" data-testid="upload-progress">
                            <p>"Uploading: " {mib(done)} " of " {mib(total)} " — "
                                <span data-testid="upload-percent">{format!("{pct:.0} %")}</span></p>
                            // a <progress> element, not a styled div: the CSP allows no inline styles
                            <progress class="bar" max="100" value=pct></progress>
                            {move || (phase.get() == Phase::Finishing).then(|| view! { <p class="muted">"Checking the files on the server…"</p> })}
                            {move || upload_ms.get().map(|ms| view! { <p class="muted small" data-testid="upload-ms" data-ms=ms.round()>{format!("Uploaded in {:.1} s", ms / 1000.0)}</p> })}
                        </div>
                    }
                }}
            </Show>
    }
    .into_any();
    view! {
        <section class="upload">
            <h1>"Upload a scan"</h1>
            <p class="lead">
                "Choose a ZIP of one brain MRI scan's DICOM files (ideally a 3D T1). Identifying information is removed here, in your browser, before anything is sent — you will see exactly what, and confirm."
            </p>
            {move || error.get().map(|e| view! { <p class="notice error" role="alert" data-testid="upload-error">{e}</p> })}
            {dropzone}
            {reading}
            {series}
            {deid_progress}
            {review_block}
            {upload_block}
        </section>
    }
}

/// The "what will be removed" screen. Original values are the user's own, shown only here.
fn review(s: SummaryView, ms: Option<f64>) -> impl IntoView {
    let facts = s.facts.clone();
    let age = facts
        .as_ref()
        .and_then(|f| f.age_years)
        .map_or("not recorded".to_string(), |a| format!("{a} years"));
    let sex = facts.as_ref().map_or("not recorded", |f| sex_text(&f.sex));
    let date = facts
        .as_ref()
        .and_then(|f| f.study_date)
        .map_or("not recorded".to_string(), |d| {
            format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
        });
    let scanner = facts.as_ref().map_or("not recorded".to_string(), |f| f.scanner.text());
    let r = s.report.clone();
    view! {
        <div class="review" data-testid="removal-report">
            <h2>"What will be removed"</h2>
            <p>
                {format!("{} files de-identified", r.files_written)}
                {ms.map(|ms| view! { <span data-testid="deid-ms" data-ms=ms.round()>{format!(" in {:.1} s", ms / 1000.0)}</span> })}
                ". The values below are from your own files and are shown only on this screen; none of them is sent."
            </p>
            <table class="removals">
                <thead><tr><th>"Attribute"</th><th>"Value in your file (removed)"</th></tr></thead>
                <tbody>
                    {s.removals.iter().map(|x| view! {
                        <tr data-testid="removal-row"><td>{x.path.clone()}</td><td class="local-only">{x.value.clone()}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
            {s.removals_truncated.then(|| view! { <p class="muted">"(More values were removed than are listed here.)"</p> })}
            <ul class="counts">
                <li data-testid="private-count">{format!("{} private (vendor) elements removed", r.private_elements_removed)}</li>
                <li data-testid="overlay-count">{format!("{} overlay elements removed (they can hold burnt-in text)", r.overlay_elements_removed)}</li>
                {(r.transcoded_from_deflated > 0).then(|| view! {
                    <li data-testid="deflated-count">{format!(
                        "{} file(s) used the Deflated transfer syntax: they are uploaded and stored uncompressed (Explicit VR Little Endian)",
                        r.transcoded_from_deflated
                    )}</li>
                })}
                <li>{format!("{} attribute kinds removed; {} identifiers (UIDs) replaced with new random ones", r.removed.len(), r.distinct_uids_replaced)}</li>
                {(r.curve_elements_removed > 0).then(|| view! { <li>{format!("{} curve elements removed", r.curve_elements_removed)}</li> })}
            </ul>
            <h2>"What is kept"</h2>
            <ul class="kept" data-testid="kept-facts">
                <li>"Age at the scan: " <strong>{age}</strong></li>
                <li>"Sex: " <strong>{sex}</strong></li>
                <li>"Scan date: " <strong>{date}</strong></li>
                <li>"Scanner (to compare your scans over time): " <strong>{scanner}</strong></li>
            </ul>
            <p class="muted">{format!("Upload size: {}. The image pixels are not changed.", mib(s.output_bytes as f64))}</p>
        </div>
    }
}
