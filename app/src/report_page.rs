//! The printable report (`/scans/{id}/report`): one page with the scan's facts, the
//! quality checks, the overview chart, the main regions (those the reference has a model
//! for) and three slices with the regions in their colours. Print CSS lays it out on one
//! A4 page; the screen shows the same with a Print button.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::overview::{OverviewRow, overview_chart};
use crate::regions::describe;
use crate::scan_page::with_scan;
use crate::scans_api::{ScanDetail, ScanFile, flag_text, grade_text};

/// The printed report's note for a percentile the validity table withheld (explained once
/// under the table, to keep the report on one page).
const WITHHELD_BY_METHOD: &str = "method withheld";

/// The sentence every report carries about what it is and is not.
const CAVEAT: &str = "Percentiles compare each volume with people of the same age and sex in the BrainCharts reference \
     (site average); the usual range is the 5th to 95th percentile. Scanners, protocols and segmentation methods differ \
     by several percent: this report is a measurement, not a diagnosis.";

#[component]
pub fn ReportPage() -> impl IntoView {
    view! {
        <Title text="Report — NeuroVol"/>
        <section class="card wide report-card">{with_scan(|d, _| report(d).into_any())}</section>
    }
}

fn report(d: ScanDetail) -> impl IntoView {
    let s = d.summary.clone();
    let id = s.id.clone();
    let main: Vec<_> = d
        .regions
        .iter()
        .filter(|r| crate::chart::has_reference(&r.name))
        .cloned()
        .collect();
    let overview: Vec<OverviewRow> = main
        .iter()
        .filter_map(|r| {
            Some(OverviewRow {
                text: describe(&r.name).text,
                name: r.name.clone(),
                percentile: r.percentile?,
            })
        })
        .collect();
    let slice = |file: ScanFile, alt: &'static str| {
        view! { <img src=format!("/scans/{id}/files/{}", file.file_name()) alt=alt data-testid="report-slice"/> }
    };
    view! {
        <article class="report" data-testid="report">
            <header class="report-head">
                <h1>"Brain volumes"</h1>
                <button type="button" class="no-print" data-testid="print" on:click=|_| { let _ = window().print(); }>"Print"</button>
            </header>
            <dl class="facts">
                <dt>"Scan date"</dt><dd>{s.study_date.clone().unwrap_or_else(|| "not recorded".into())}</dd>
                <dt>"Age at the scan"</dt><dd>{s.age_years.map_or("not recorded".to_string(), |a| format!("{a} years"))}</dd>
                <dt>"Sex"</dt><dd>{s.sex_text()}</dd>
                <dt>"Segmentation"</dt><dd>{d.model.clone().unwrap_or_default()}</dd>
                {d.icv_mm3.map(|v| view! { <dt>"Intracranial volume"</dt><dd>{format!("{:.0} cm³ (brain mask)", v / 1000.0)}</dd> })}
                <dt>"Quality checks"</dt>
                <dd data-testid="report-quality">
                    {match (d.grade.as_deref(), d.quality_ok) {
                        (Some(g), _) => format!("grade {}", grade_text(g)),
                        (None, Some(true)) => "passed".to_string(),
                        (None, Some(false)) => "failed: percentiles withheld".to_string(),
                        (None, None) => "not available".to_string(),
                    }}
                    {(!d.grade_reasons_beyond_notes().is_empty()).then(|| format!(" — {}", d.grade_reasons_beyond_notes().join("; ")))}
                </dd>
                <dt>"Site calibration"</dt>
                <dd data-testid="report-calibration">{d.calibration.clone().unwrap_or_else(|| "not recorded".into())}</dd>
            </dl>
            {(!d.warnings.is_empty()).then(|| view! {
                <ul class="notice warn">{d.warnings.iter().map(|w| view! { <li>{w.1.clone()}</li> }).collect_view()}</ul>
            })}
            <div class="report-body">
                <table class="regions compact" data-testid="report-regions">
                    <thead><tr>
                        <th scope="col">"Region"</th><th scope="col" class="num">"Volume (mL)"</th>
                        <th scope="col" class="num">"Usual range (mL)"</th><th scope="col" class="num">"Percentile"</th><th scope="col">"Note"</th>
                    </tr></thead>
                    <tbody>
                        {main.into_iter().map(|r| view! {
                            <tr data-name=r.name.clone()>
                                <td>{describe(&r.name).text}</td>
                                <td class="num">{crate::format::ml(r.volume_mm3)}</td>
                                <td class="num">{r.centiles.map_or("—".to_string(), |c| crate::format::ml_range(c[0], c[4]))}</td>
                                <td class="num">{r.percentile.map_or("—".to_string(), |p| match r.percentile_band {
                                    Some(band) => format!("{p:.1} ({})", crate::scans_api::band_text(band)),
                                    None => format!("{p:.1}"),
                                })}</td>
                                <td>{match (r.flag.as_deref(), r.withheld_by_method()) {
                                    (Some(flag), _) => flag_text(flag),
                                    (None, true) => WITHHELD_BY_METHOD,
                                    (None, false) => "",
                                }}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                <div class="report-side">
                    {overview_chart(&overview).map(|svg| view! { <figure class="overview"><div inner_html=svg></div></figure> })}
                    <div class="slices">
                        {slice(ScanFile::SliceAxial, "Middle axial slice with the regions in colour")}
                        {slice(ScanFile::SliceCoronal, "Middle coronal slice with the regions in colour")}
                        {slice(ScanFile::SliceSagittal, "Middle sagittal slice with the regions in colour")}
                    </div>
                </div>
            </div>
            <p class="muted small">{format!("{WITHHELD_BY_METHOD}: our volumes of the structure do not agree closely enough with FreeSurfer's, on which the reference was built, for a percentile (the results page gives the figures). A percentile's range in brackets is one SD of our method's and the site's uncertainty. ")}{CAVEAT}</p>
        </article>
    }
}
