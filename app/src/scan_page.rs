//! A scan's page (`/scans/{id}`: the pipeline's progress, then the results) and the scan
//! list on the home page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::format::mib;
use crate::pages::{CsrfField, PasswordInput, notice_from_query};
use crate::region_table::regions_table;
use crate::scans_api::{ScanDetail, ScanFile, ScanStatus, ScanSummary, get_scan, grade_text, list_scans};
use crate::session::use_session;

/// Why the intracranial volume has no percentile.
const ICV_NO_PERCENTILE: &str = " No percentile: the reference's intracranial volume is FreeSurfer's estimate (eTIV, \
     from the head's scaling to an atlas), which a brain-mask volume differs from by several percent.";

#[component]
pub fn ScanStatusPage() -> impl IntoView {
    view! {
        <Title text="Scan — NeuroVol"/>
        <section class="card wide">{with_scan(|d, csrf| scan_detail(d, csrf).into_any())}</section>
    }
}

/// The account's scan named in the path, drawn by `body` (with the session's CSRF token),
/// or "not found" (status 404) when the account has no such scan.
pub(crate) fn with_scan(body: fn(ScanDetail, String) -> AnyView) -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    // blocking: a missing scan's 404 status is set before the page streams
    let scan = Resource::new_blocking(id, get_scan);
    let session = use_session();
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                // the Retry form's CSRF token is the session's, not part of the scan
                let csrf = session.await.map(|s| s.csrf_token).unwrap_or_default();
                match scan.await {
                    Ok(Some(d)) => body(d, csrf),
                    Ok(None) => {
                        // another account's scan answers exactly like a missing one
                        #[cfg(feature = "ssr")]
                        if let Some(resp) = use_context::<leptos_axum::ResponseOptions>() {
                            resp.set_status(http::StatusCode::NOT_FOUND);
                        }
                        view! { <h1>"Scan not found"</h1><p><A href="/home">"Back to my scans"</A></p> }.into_any()
                    }
                    Err(_) => view! {
                        <h1>"Scan"</h1>
                        <p class="notice error">"Please " <a href="/login">"log in"</a> " to see this scan."</p>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

fn scan_detail(d: ScanDetail, csrf: String) -> impl IntoView {
    let s = d.summary.clone();
    let reasons: Vec<String> = d.grade_reasons_beyond_notes().into_iter().map(str::to_string).collect();
    let processing = s.status.is_processing();
    let archive_text = if d.archive_deleted {
        "The face was removed from the 3D volume before it was stored or sent for segmentation, and the DICOM files were deleted: their images show the face.".to_string()
    } else {
        format!(
            "The de-identified DICOM files ({}) are kept only until they are converted; then the face is removed from the 3D volume and the DICOM files are deleted.",
            mib(d.object_bytes as f64)
        )
    };
    let id = s.id.clone();
    view! {
        <h1>"Scan"</h1>
        <p class="status-line" data-testid="scan-status" data-status=s.status.as_str()>
            <span class="tag">{s.status.text()}</span>
            {processing.then(|| view! {
                // reload while processing (no script needed); results appear when done
                <meta http-equiv="refresh" content="10"/>
                <span class="muted small">" This page refreshes itself until the results are ready."</span>
            })}
        </p>
        <ol class="steps" data-testid="scan-steps">
            {ScanStatus::PATH.iter().map(|state| {
                let cls = step_class(s.status, *state);
                view! { <li class=cls>{state.step_label()}</li> }
            }).collect_view()}
        </ol>
        {d.retrying.as_ref().map(|r| view! {
            <p class="notice warn" role="status" data-testid="scan-retrying" data-step=r.step.as_str()>{r.text()}</p>
        })}
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
            {d.icv_mm3.map(|v| view! {
                <dt>"Intracranial volume"</dt>
                <dd data-testid="icv">
                    {format!("{:.0} cm³ (brain-mask volume)", v / 1000.0)}
                    <span class="muted small">{ICV_NO_PERCENTILE}</span>
                </dd>
            })}
            {d.quality_ok.map(|ok| view! {
                <dt>"Quality checks"</dt>
                <dd data-testid="quality" data-ok=ok.to_string() data-grade=d.grade.clone().unwrap_or_default()>
                    {match d.grade.as_deref() {
                        Some(g) => format!("grade {}", grade_text(g)),
                        None if ok => "passed: the segmentation looks like a brain's".to_string(),
                        None => "failed: percentiles are withheld (see the notes above)".to_string(),
                    }}
                    {(d.grade_reasons.len() > reasons.len()).then_some(" (see the notes above)")}
                    {(!reasons.is_empty()).then(|| view! {
                        <ul class="small" data-testid="grade-reasons">{reasons.iter().map(|r| view! { <li>{r.clone()}</li> }).collect_view()}</ul>
                    })}
                </dd>
            })}
            {d.calibration.clone().map(|c| view! {
                <dt>"Site calibration"</dt><dd data-testid="calibration">{c}</dd>
            })}
            {d.validity.clone().map(|v| view! {
                <dt>"Percentiles checked"</dt>
                <dd data-testid="validity">
                    {format!("only for structures we measure as FreeSurfer does, on which the reference was built ({v}); the range after a percentile is its uncertainty")}
                </dd>
            })}
        </dl>
        {s.status.volume_stored().then(|| view! {
            <figure class="midline" data-testid="midline">
                <img src=format!("/scans/{id}/files/{}", ScanFile::Midline.file_name())
                    alt="The middle slice of the stored volume, seen from the side: the face has been removed."/>
                <figcaption class="muted small">"What we keep: the volume with the face removed (middle slice, seen from the side)."</figcaption>
            </figure>
        })}
        {chart_and_table(&d)}
        <p class="muted">
            {format!(
                "The server de-identified the files again before storing them: {} attribute kinds, {} private and {} overlay elements removed, {} identifiers replaced. ",
                d.attributes_removed, d.private_elements_removed, d.overlay_elements_removed, d.uids_replaced
            )}
            {archive_text}
        </p>
        {(s.status == ScanStatus::Done).then(|| view! {
            <p><a href=format!("/scans/{id}/report") data-testid="report-link">"Printable report"</a>
            <span class="muted small">" — one page: the facts, the overview, the main regions and three slices with the regions in colour."</span></p>
        })}
        {scan_files(&id, ScanFile::available(s.status, d.archive_deleted))}
        <h2 id="delete">"Delete this scan"</h2>
        {notice_from_query()}
        {delete_form(&id, d.confirm_with_google, csrf.clone())}
        <p>
            <A href="/home">"Back to my scans"</A> " · " <A href="/timeline">"All your scans over time"</A> " · "
            <A href="/upload">"Upload another scan"</A>
        </p>
    }
}

/// The centile chart (when the scan records age and sex) and the slice viewer above the
/// regions table, sharing the selected region: the table's names pick the chart's region,
/// its rows centre the viewer.
fn chart_and_table(d: &ScanDetail) -> impl IntoView + use<> {
    use crate::chart::ScanPoint;
    use crate::region_chart::{ChartChoice, RegionChart};
    if d.regions.is_empty() {
        return None;
    }
    let s = &d.summary;
    let sex = norms::Sex::from_code(&s.sex);
    let choices: Vec<ChartChoice> = d
        .regions
        .iter()
        .filter(|r| r.chartable())
        .map(|r| {
            let current = s.age_years.map(|age| ScanPoint {
                scan_id: s.id.clone(),
                date: s.study_date.clone(),
                age_years: f64::from(age),
                volume_mm3: r.volume_mm3,
                current: true,
            });
            let earlier = d.history.iter().filter_map(|h| {
                let (_, v) = h.volumes.iter().find(|(n, _)| *n == r.name)?;
                Some(ScanPoint {
                    scan_id: h.id.clone(),
                    date: h.study_date.clone(),
                    age_years: f64::from(h.age_years?),
                    volume_mm3: *v,
                    current: false,
                })
            });
            let mut points: Vec<ScanPoint> = earlier.chain(current).collect();
            points.sort_by(|a, b| a.age_years.total_cmp(&b.age_years));
            ChartChoice {
                reference: true,
                name: r.name.clone(),
                text: crate::regions::describe(&r.name).text,
                points,
            }
        })
        .collect();
    let asked = leptos_router::hooks::use_query_map().read_untracked().get("region");
    let initial = asked
        .filter(|a| choices.iter().any(|c| &c.name == a))
        .or_else(|| {
            choices
                .iter()
                .find(|c| c.name == "Left-Hippocampus")
                .map(|c| c.name.clone())
        })
        .or_else(|| choices.first().map(|c| c.name.clone()));
    let charted = sex.zip(initial).filter(|_| s.age_years.is_some());
    let selected = RwSignal::new(charted.as_ref().map(|(_, n)| n.clone()).unwrap_or_default());
    let chart = match charted {
        Some((sex, _)) => view! { <RegionChart choices=choices sex=sex site=d.site.clone() selected=selected/> }.into_any(),
        None => view! {
            <p class="muted" data-testid="no-chart">"No centile chart: the reference is by age and sex, and this scan does not record both."</p>
        }
        .into_any(),
    };
    let link = (!selected.get_untracked().is_empty()).then_some(selected);
    Some(view! {
        {chart}
        {crate::slice_viewer::slice_viewer(s.id.clone())}
        {regions_table(d.regions.clone(), d.model.clone(), d.icv_mm3, link)}
    })
}

/// The scan's deletion: confirmed by the password, or (an account without one) by a fresh
/// Google sign-in (`POST /scans/{id}/delete/google`).
fn delete_form(id: &str, confirm_with_google: bool, csrf: String) -> impl IntoView + use<> {
    let explain = view! {
        <p class="muted small">
            "The scan, its files and its results are deleted at once and cannot be restored. A receipt shows when its stored files are gone."
        </p>
    };
    if confirm_with_google {
        view! {
            <form method="post" action=format!("/scans/{id}/delete/google") class="stack narrow" data-testid="delete-scan-form">
                <CsrfField token=csrf/>
                {explain}
                <p class="muted small">"To confirm, sign in with Google again; the scan is deleted when Google confirms it is you."</p>
                <button type="submit" class="danger" data-testid="delete-scan">"Confirm with Google and delete"</button>
            </form>
        }
        .into_any()
    } else {
        view! {
            <form method="post" action=format!("/scans/{id}/delete") class="stack narrow" data-testid="delete-scan-form">
                <CsrfField token=csrf/>
                {explain}
                <PasswordInput name="password" label="Your password, to confirm" autocomplete="current-password"/>
                <button type="submit" class="danger" data-testid="delete-scan">"Delete this scan"</button>
            </form>
        }
        .into_any()
    }
}

/// Download links of the scan's files (`GET /scans/{id}/files/{name}`).
fn scan_files(id: &str, files: Vec<ScanFile>) -> impl IntoView + use<> {
    let id = id.to_string();
    (!files.is_empty()).then(move || view! {
        <h2>"Files"</h2>
        <ul data-testid="scan-files">
            {files.into_iter().map(|f| view! {
                <li>
                    <a href=format!("/scans/{id}/files/{}", f.file_name()) download=f.file_name() data-file=f.file_name()>{f.file_name()}</a>
                    <span class="muted small">{format!(" — {}", f.describe())}</span>
                </li>
            }).collect_view()}
        </ul>
    })
}

fn step_class(status: ScanStatus, step: ScanStatus) -> &'static str {
    let order = |s: ScanStatus| ScanStatus::PATH.iter().position(|k| *k == s);
    match (order(status), order(step)) {
        (Some(a), Some(b)) if b < a || status == ScanStatus::Done => "done",
        (Some(a), Some(b)) if a == b => "current",
        _ => "todo",
    }
}

/// The home page's list of the user's scans (or the empty state).
#[component]
pub fn ScanList() -> impl IntoView {
    let scans = Resource::new(|| (), |_| list_scans());
    view! {
        <p class="actions">
            <A href="/upload" attr:class="button" attr:data-testid="upload-link">"Upload a scan"</A>
            " "
            <A href="/timeline" attr:data-testid="timeline-link">"Your scans over time"</A>
        </p>
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
                            <td>{s.status.text()}</td>
                            <td><A href=href>"Open"</A></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
