//! The upload page (`/upload`), a scan's status page (`/scans/{id}`) and the scan list on
//! the home page.
//!
//! Upload flow, all in the user's browser until they confirm:
//! drop / pick a ZIP → the de-identification Web Worker (`/deid-worker.js`, the `deid`
//! crate compiled to WASM) lists its series (with the LOCAL-ONLY SeriesDescription) →
//! the user picks one (a 3D-T1-looking one is pre-selected) → the worker de-identifies
//! it with progress → the page shows what will be removed (original values from the
//! user's own file, shown here and never sent) and what is kept → on confirm, only the
//! de-identified ZIP is uploaded in 8 MiB chunks (`/uploads/...`), resuming from the
//! server's acknowledged chunks after a dropped connection → the scan's status page.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use send_wrapper::SendWrapper;
use serde::Deserialize;

use crate::session::use_session;
use crate::upload_api::{ScanDetail, ScanSummary, get_scan, list_scans};

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
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct FactsView {
    age_years: Option<u32>,
    sex: String,
    study_date: Option<DateView>,
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

fn sex_text(code: &str) -> &'static str {
    match code {
        "M" => "male",
        "F" => "female",
        "O" => "other",
        _ => "not recorded",
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
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
                    Ok(info) if info.user.is_some() => view! { <UploadFlow csrf=info.csrf_token/> }.into_any(),
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
                .and_then(|i| {
                    i.series
                        .iter()
                        .find(|s| s.index == selected.get_untracked())
                })
                .map_or(0, |s| s.info.files)
        });
        set_progress.set((0, n as u32));
        set_phase.set(Phase::Deidentifying);
        worker.with_value(|w| {
            if let Some(w) = w {
                client::post(
                    w,
                    "deidentify",
                    None,
                    Some(("series", selected.get_untracked() as f64)),
                );
            }
        });
    };

    let (discard, set_discard) = signal(false);
    let confirm = move |_| {
        let Some(blob) = output.with_value(|b| b.as_ref().map(|b| (**b).clone())) else {
            return;
        };
        let discard_archive = discard.get_untracked();
        set_error.set(None);
        set_phase.set(Phase::Uploading);
        set_sent.set((0.0, blob.size()));
        let token = csrf.get_value();
        leptos::task::spawn_local(async move {
            let t0 = client::now_ms();
            match client::upload(&blob, &token, CHUNK, discard_archive, move |done, total| {
                set_sent.set((done, total))
            })
            .await
            {
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
        if let Some(file) = ev
            .data_transfer()
            .and_then(|d| d.files())
            .and_then(|f| f.get(0))
        {
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
                            <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct>
                                <div class="fill" style=format!("width:{pct}%")></div>
                            </div>
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
                    <p class="option">
                        <label>
                            <input type="checkbox" data-testid="discard-archive"
                                prop:checked=move || discard.get()
                                on:change=move |ev| set_discard.set(event_target_checked(&ev))/>
                            " Discard the DICOM archive after processing (keep only the 3D volume, its labels and the volumes)"
                        </label>
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
                            <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=pct>
                                <div class="fill" style=format!("width:{pct}%")></div>
                            </div>
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
                <li>{format!("{} attribute kinds removed; {} identifiers (UIDs) replaced with new random ones", r.removed.len(), r.distinct_uids_replaced)}</li>
                {(r.curve_elements_removed > 0).then(|| view! { <li>{format!("{} curve elements removed", r.curve_elements_removed)}</li> })}
            </ul>
            <h2>"What is kept"</h2>
            <ul class="kept" data-testid="kept-facts">
                <li>"Age at the scan: " <strong>{age}</strong></li>
                <li>"Sex: " <strong>{sex}</strong></li>
                <li>"Scan date: " <strong>{date}</strong></li>
            </ul>
            <p class="muted">{format!("Upload size: {}. The image pixels are not changed.", mib(s.output_bytes as f64))}</p>
        </div>
    }
}

#[component]
pub fn ScanStatusPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let scan = Resource::new(id, get_scan);
    view! {
        <Title text="Scan — NeuroVol"/>
        <section class="card">
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match scan.await {
                        Ok(Some(d)) => scan_detail(d).into_any(),
                        Ok(None) => view! { <h1>"Scan not found"</h1><p><A href="/home">"Back to my scans"</A></p> }.into_any(),
                        Err(_) => view! {
                            <h1>"Scan"</h1>
                            <p class="notice error">"Please " <a href="/login">"log in"</a> " to see this scan."</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

fn scan_detail(d: ScanDetail) -> impl IntoView {
    let s = d.summary.clone();
    let processing = !matches!(s.status.as_str(), "done" | "failed");
    let archive_text = if d.archive_deleted {
        "The de-identified DICOM archive was discarded after processing, as you asked.".to_string()
    } else {
        format!("The de-identified archive ({}) is kept.", mib(d.object_bytes as f64))
    };
    let csrf = d.csrf_token.clone();
    let id = s.id.clone();
    view! {
        <h1>"Scan"</h1>
        <p class="status-line" data-testid="scan-status" data-status=s.status.clone()>
            <span class="tag">{s.status_text()}</span>
            {processing.then(|| view! {
                // reload while processing (no script needed); results appear when done
                <meta http-equiv="refresh" content="10"/>
                <span class="muted small">" This page refreshes itself until the results are ready."</span>
            })}
        </p>
        <ol class="steps" data-testid="scan-steps">
            {crate::upload_api::STEPS.iter().map(|(state, label)| {
                let cls = step_class(&s.status, state);
                view! { <li class=cls>{*label}</li> }
            }).collect_view()}
        </ol>
        {d.failure_reason.clone().map(|reason| view! {
            <div class="notice error" role="alert" data-testid="scan-failure">
                <p>{reason}</p>
                {d.failure_retryable.then(|| view! {
                    <form method="post" action=format!("/scans/{id}/retry")>
                        <input type="hidden" name="csrf_token" value=csrf.clone()/>
                        <button type="submit" data-testid="retry">"Retry"</button>
                    </form>
                })}
            </div>
        })}
        {(!d.warnings.is_empty()).then(|| view! {
            <ul class="notice warn" data-testid="scan-warnings">
                {d.warnings.iter().map(|w| view! { <li data-code=w.0.clone()>{w.1.clone()}</li> }).collect_view()}
            </ul>
        })}
        <dl class="facts" data-testid="scan-facts">
            <dt>"Age at the scan"</dt><dd>{s.age_years.map_or("not recorded".to_string(), |a| format!("{a} years"))}</dd>
            <dt>"Sex"</dt><dd>{s.sex_text()}</dd>
            <dt>"Scan date"</dt><dd>{s.study_date.clone().unwrap_or_else(|| "not recorded".into())}</dd>
            <dt>"Files"</dt><dd>{s.files}</dd>
            {d.voxel_mm.map(|v| view! { <dt>"Voxel size"</dt><dd>{format!("{:.2} × {:.2} × {:.2} mm", v[0], v[1], v[2])}</dd> })}
            {d.icv_mm3.map(|v| view! { <dt>"Intracranial volume"</dt><dd>{format!("{:.0} cm³", v / 1000.0)}</dd> })}
        </dl>
        {(!d.regions.is_empty()).then(|| regions_table(d.clone()))}
        <p class="muted">
            {format!(
                "The server de-identified the files again before storing them: {} attribute kinds, {} private and {} overlay elements removed, {} identifiers replaced. ",
                d.attributes_removed, d.private_elements_removed, d.overlay_elements_removed, d.uids_replaced
            )}
            {archive_text}
        </p>
        <p><A href="/home">"Back to my scans"</A> " · " <A href="/upload">"Upload another scan"</A></p>
    }
}

fn step_class(status: &str, step: &str) -> &'static str {
    let order = |s: &str| crate::upload_api::STEPS.iter().position(|(k, _)| *k == s);
    match (order(status), order(step)) {
        (Some(a), Some(b)) if b < a || status == "done" => "done",
        (Some(a), Some(b)) if a == b => "current",
        _ => "todo",
    }
}

fn regions_table(d: ScanDetail) -> impl IntoView {
    view! {
        <h2>"Regional volumes"</h2>
        <p class="muted small">
            {format!("Model {}. Volumes are measured on the scan's own voxel grid; percentiles compare with people of the same age and sex (BrainCharts normative model, site average).", d.model.unwrap_or_default())}
        </p>
        <table class="regions" data-testid="regions">
            <thead><tr><th>"Region"</th><th class="num">"Volume (mm³)"</th><th class="num">"Percentile"</th><th>"Note"</th></tr></thead>
            <tbody>
                {d.regions.into_iter().map(|r| view! {
                    <tr data-testid="region-row" data-name=r.name.clone()>
                        <td>{r.name.clone()}</td>
                        <td class="num">{format!("{:.0}", r.volume_mm3)}</td>
                        <td class="num">{r.percentile.map_or("—".to_string(), |p| format!("{p:.1}"))}</td>
                        <td data-flag=r.flag.clone().unwrap_or_default()>{r.flag.as_deref().map(crate::upload_api::flag_text).unwrap_or("")}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// The home page's list of the user's scans (or the empty state).
#[component]
pub fn ScanList() -> impl IntoView {
    let scans = Resource::new(|| (), |_| list_scans());
    view! {
        <p class="actions"><A href="/upload" attr:class="button" attr:data-testid="upload-link">"Upload a scan"</A></p>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match scans.await {
                    Ok(list) if list.is_empty() => view! {
                        <div class="empty-state" data-testid="scans-empty">
                            <h2>"No scans yet"</h2>
                            <p>
                                "When you upload a brain MRI series, it appears here with its regional volumes and percentiles, and your scans are compared over time."
                            </p>
                        </div>
                    }
                    .into_any(),
                    Ok(list) => scan_table(list).into_any(),
                    Err(_) => view! { <p class="notice error">"Your scans could not be loaded."</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn scan_table(list: Vec<ScanSummary>) -> impl IntoView {
    view! {
        <table class="scans" data-testid="scan-list">
            <thead><tr><th>"Scan date"</th><th>"Age"</th><th>"Sex"</th><th>"Status"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|s| {
                    let href = format!("/scans/{}", s.id);
                    view! {
                        <tr data-testid="scan-row">
                            <td>{s.study_date.clone().unwrap_or_else(|| "—".into())}</td>
                            <td>{s.age_years.map_or("—".to_string(), |a| a.to_string())}</td>
                            <td>{s.sex_text()}</td>
                            <td>{s.status_text()}</td>
                            <td><A href=href>"Open"</A></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

// ---------------------------------------------------------------------------------------
// browser glue (only ever called from event handlers, i.e. in the hydrated page)

mod client {
    use std::future::Future;
    use std::rc::Rc;

    use js_sys::{Array, Object, Promise, Reflect};
    use serde::Deserialize;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{Blob, MessageEvent, Worker, WorkerOptions, WorkerType, XmlHttpRequest};

    pub fn get_str(v: &JsValue, k: &str) -> Option<String> {
        Reflect::get(v, &k.into()).ok().and_then(|x| x.as_string())
    }
    pub fn get_num(v: &JsValue, k: &str) -> Option<f64> {
        Reflect::get(v, &k.into()).ok().and_then(|x| x.as_f64())
    }
    pub fn get_array_buffer(v: &JsValue, k: &str) -> Option<js_sys::ArrayBuffer> {
        Reflect::get(v, &k.into())
            .ok()
            .and_then(|x| x.dyn_into().ok())
    }
    pub fn blob_of(buf: &js_sys::ArrayBuffer) -> Option<Blob> {
        let parts = Array::of1(buf);
        Blob::new_with_buffer_source_sequence(&parts).ok()
    }
    pub fn now_ms() -> f64 {
        web_sys::window()
            .and_then(|w| w.performance())
            .map_or(0.0, |p| p.now())
    }
    pub fn go(url: &str) {
        if let Some(w) = web_sys::window() {
            let _ = w.location().set_href(url);
        }
    }
    pub fn input_file(ev: &web_sys::Event) -> Option<web_sys::File> {
        let input: web_sys::HtmlInputElement = ev.target()?.dyn_into().ok()?;
        let f = input.files()?.get(0);
        input.set_value("");
        f
    }

    pub fn start_worker(on_message: impl Fn(String, JsValue) + 'static) -> Result<Worker, String> {
        let opts = WorkerOptions::new();
        opts.set_type(WorkerType::Module);
        let w = Worker::new_with_options("/deid-worker.js", &opts)
            .map_err(|_| "This browser cannot run the de-identification worker.".to_string())?;
        let cb = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            let data = ev.data();
            let kind = get_str(&data, "type").unwrap_or_default();
            on_message(kind, data);
        });
        w.set_onmessage(Some(cb.as_ref().unchecked_ref()));
        cb.forget();
        let on_err = Closure::<dyn FnMut(web_sys::Event)>::new(move |_ev: web_sys::Event| {
            web_sys::console::error_1(&"de-identification worker failed to load".into());
        });
        w.set_onerror(Some(on_err.as_ref().unchecked_ref()));
        on_err.forget();
        Ok(w)
    }

    pub fn post(w: &Worker, kind: &str, obj: Option<(&str, &JsValue)>, num: Option<(&str, f64)>) {
        let msg = Object::new();
        let _ = Reflect::set(&msg, &"type".into(), &kind.into());
        if let Some((k, v)) = obj {
            let _ = Reflect::set(&msg, &k.into(), v);
        }
        if let Some((k, v)) = num {
            let _ = Reflect::set(&msg, &k.into(), &v.into());
        }
        let _ = w.post_message(&msg);
    }

    fn sleep(ms: i32) -> impl Future<Output = ()> {
        let p = Promise::new(&mut |resolve, _| {
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
            }
        });
        async move {
            let _ = JsFuture::from(p).await;
        }
    }

    /// One request; resolves with (status, body) — status 0 when the connection failed.
    async fn xhr(
        method: &str,
        url: &str,
        csrf: &str,
        body: Option<Body<'_>>,
        on_progress: Option<Rc<dyn Fn(f64)>>,
    ) -> (u16, String) {
        let Ok(x) = XmlHttpRequest::new() else {
            return (0, String::new());
        };
        if x.open_with_async(method, url, true).is_err() {
            return (0, String::new());
        }
        let _ = x.set_request_header("x-csrf-token", csrf);
        // `loadend` fires after success, error, abort and timeout alike
        let done = Promise::new(&mut |resolve, _reject| {
            let onloadend = Closure::once_into_js(move || {
                let _ = resolve.call0(&JsValue::NULL);
            });
            x.set_onloadend(Some(onloadend.unchecked_ref()));
        });
        // byte-level progress of the request body
        let _progress_cb = on_progress.map(|f| {
            let cb = Closure::<dyn FnMut(web_sys::ProgressEvent)>::new(
                move |ev: web_sys::ProgressEvent| f(ev.loaded()),
            );
            if let Ok(up) = x.upload() {
                up.set_onprogress(Some(cb.as_ref().unchecked_ref()));
            }
            cb
        });
        let sent = match body {
            Some(Body::Json(s)) => {
                let _ = x.set_request_header("content-type", "application/json");
                x.send_with_opt_str(Some(s))
            }
            Some(Body::Blob(b)) => {
                let _ = x.set_request_header("content-type", "application/octet-stream");
                x.send_with_opt_blob(Some(b))
            }
            None => x.send(),
        };
        if sent.is_err() {
            return (0, String::new());
        }
        let _ = JsFuture::from(done).await;
        if let Ok(up) = x.upload() {
            up.set_onprogress(None);
        }
        let status = x.status().unwrap_or(0);
        let text = x.response_text().ok().flatten().unwrap_or_default();
        (status, text)
    }

    enum Body<'a> {
        Json(&'a str),
        Blob(&'a Blob),
    }

    #[derive(Deserialize)]
    struct Status {
        id: String,
        chunk_size: f64,
        chunks: u32,
        received: Vec<u32>,
    }

    #[derive(Deserialize)]
    struct Completed {
        url: String,
    }

    fn error_text(status: u16, body: &str) -> String {
        match serde_json::from_str::<super::ErrorView>(body) {
            Ok(e) if !e.message.is_empty() => {
                let _ = e.code;
                e.message
            }
            _ if status == 403 => "The page has expired. Please reload it and try again.".into(),
            _ if status == 413 => "The file is too large.".into(),
            _ => "The upload failed. Please try again.".into(),
        }
    }

    /// Chunked upload with resume: after a failed chunk the server's list of acknowledged
    /// chunks is fetched again and only the missing ones are sent. Returns the scan's URL.
    pub async fn upload(
        blob: &Blob,
        csrf: &str,
        chunk: f64,
        discard_archive: bool,
        progress: impl Fn(f64, f64) + 'static,
    ) -> Result<String, String> {
        let progress: Rc<dyn Fn(f64, f64)> = Rc::new(progress);
        let total = blob.size();
        let create = serde_json::json!({
            "size": total as u64,
            "chunk_size": chunk as u64,
            "discard_archive": discard_archive,
        })
        .to_string();
        let (st, body) = xhr("POST", "/uploads", csrf, Some(Body::Json(&create)), None).await;
        if st != 201 {
            return Err(if st == 0 {
                "The server could not be reached.".into()
            } else {
                error_text(st, &body)
            });
        }
        let mut status: Status = serde_json::from_str(&body)
            .map_err(|_| "Unexpected answer from the server.".to_string())?;
        let url_base = format!("/uploads/{}", status.id);
        let mut failures = 0;
        loop {
            let chunk_size = status.chunk_size;
            let acked = |s: &Status| -> f64 {
                s.received
                    .iter()
                    .map(|i| (total - f64::from(*i) * s.chunk_size).min(s.chunk_size))
                    .sum()
            };
            let mut done_bytes = acked(&status);
            progress(done_bytes, total);
            let missing: Vec<u32> = (0..status.chunks)
                .filter(|i| !status.received.contains(i))
                .collect();
            if missing.is_empty() {
                break;
            }
            let mut failed = None;
            for i in missing {
                let start = f64::from(i) * chunk_size;
                let end = (start + chunk_size).min(total);
                let Ok(part) = blob.slice_with_f64_and_f64(start, end) else {
                    return Err("The file could not be read.".into());
                };
                let base = done_bytes;
                let p = progress.clone();
                let report: Rc<dyn Fn(f64)> =
                    Rc::new(move |loaded: f64| p(base + loaded.min(end - start), total));
                let (st, body) = xhr(
                    "PUT",
                    &format!("{url_base}/chunks/{i}"),
                    csrf,
                    Some(Body::Blob(&part)),
                    Some(report),
                )
                .await;
                if st == 200 {
                    done_bytes += end - start;
                    progress(done_bytes, total);
                } else {
                    failed = Some((st, body));
                    break;
                }
            }
            match failed {
                None => {
                    // confirm with the server what it holds
                    let (st, body) = xhr("GET", &url_base, csrf, None, None).await;
                    if st == 200
                        && let Ok(s) = serde_json::from_str::<Status>(&body)
                    {
                        status = s;
                    }
                    if status.received.len() as u32 == status.chunks {
                        break;
                    }
                }
                Some((st, body)) if st != 0 && st < 500 && st != 408 && st != 429 => {
                    return Err(error_text(st, &body));
                }
                Some(_) => {
                    failures += 1;
                    if failures > 8 {
                        return Err("The connection keeps failing. Please try again later.".into());
                    }
                    sleep(500 * failures).await;
                    // resume from what the server acknowledged
                    let (st, body) = xhr("GET", &url_base, csrf, None, None).await;
                    if st == 200 {
                        if let Ok(s) = serde_json::from_str::<Status>(&body) {
                            status = s;
                        }
                    } else if st != 0 {
                        return Err(error_text(st, &body));
                    }
                }
            }
        }
        progress(total, total);
        let (st, body) = xhr("POST", &format!("{url_base}/complete"), csrf, None, None).await;
        if st == 201 {
            serde_json::from_str::<Completed>(&body)
                .map(|c| c.url)
                .map_err(|_| "Unexpected answer from the server.".into())
        } else if st == 0 {
            Err("The server could not be reached.".into())
        } else {
            Err(error_text(st, &body))
        }
    }
}
