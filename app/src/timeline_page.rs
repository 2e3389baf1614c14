//! `/timeline`: every processed scan of the account in time order; per region its
//! trajectory over the centile bands (the scan page's chart, with every scan) and the
//! annualised change between consecutive scans next to the change the centile curve
//! expects; and, in words, why two scans may not be comparable.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::chart::{ScanPoint, has_reference};
use crate::region_chart::{ChartChoice, RegionChart};
use crate::regions::describe;
use crate::scans_api::get_timeline;
use crate::timeline::{MIN_INTERVAL_YEARS, Step, TimelineScan, region_change, steps};

/// The region the page opens on (a common question: is my hippocampus shrinking?).
const FIRST_REGION: &str = "Left-Hippocampus";

#[component]
pub fn TimelinePage() -> impl IntoView {
    let scans = Resource::new_blocking(|| (), |_| get_timeline());
    view! {
        <Title text="Over time — NeuroVol"/>
        <section class="card wide">
            <h1>"Your scans over time"</h1>
            <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match scans.await {
                        Ok(list) => timeline(list).into_any(),
                        Err(_) => view! {
                            <p class="notice error">"Please " <a href="/login">"log in"</a> " to see your scans."</p>
                        }
                        .into_any(),
                    }
                })}
            </Suspense>
            <p><A href="/home">"Back to my scans"</A></p>
        </section>
    }
}

fn timeline(scans: Vec<TimelineScan>) -> impl IntoView {
    if scans.is_empty() {
        return view! {
            <p data-testid="timeline-empty">"No processed scans yet. When you have two or more, this page shows how each region changed."</p>
        }
        .into_any();
    }
    let latest = scans.last().cloned().expect("not empty");
    let sex = norms::Sex::from_code(&latest.sex);
    let choices: Vec<ChartChoice> = latest
        .regions
        .iter()
        .filter(|(name, ..)| has_reference(name))
        .map(|(name, ..)| ChartChoice {
            // a region our method withholds a percentile for is not set against the reference
            reference: !latest.withheld_by_method.contains(name),
            name: name.clone(),
            text: describe(name).text,
            points: scans
                .iter()
                .filter_map(|s| {
                    Some(ScanPoint {
                        scan_id: s.id.clone(),
                        date: s.study_date.clone(),
                        age_years: f64::from(s.age_years?),
                        volume_mm3: s.region(name)?.0,
                        current: s.id == latest.id,
                    })
                })
                .collect(),
        })
        .collect();
    let first = choices
        .iter()
        .find(|c| c.name == FIRST_REGION)
        .or_else(|| choices.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let selected = RwSignal::new(first);
    let chart = match sex.filter(|_| !choices.is_empty()) {
        Some(sex) => view! { <RegionChart choices=choices sex=sex site=latest.site.clone() selected=selected/> }.into_any(),
        None => view! {
            <p class="muted" data-testid="no-chart">"No centile chart: the reference is by age and sex, and the latest scan does not record both."</p>
        }
        .into_any(),
    };
    let scans = StoredValue::new(scans);
    view! {
        <p class="muted">
            "A region's volume changes slowly with age (a few tenths of a percent a year in mid-life). Between two scans, "
            "the change measured here is set beside the change the reference's centile curve expects over the same years. "
            "Changes of scanner, resolution or software, and short intervals, move volumes by more than that: "
            "they are named below each pair of scans."
        </p>
        {scans.with_value(|s| scan_list(s))}
        {chart}
        {move || scans.with_value(|s| changes(s, &selected.get()))}
        {move || scans.with_value(|s| last_step_table(s))}
    }
    .into_any()
}

fn scan_list(scans: &[TimelineScan]) -> impl IntoView + use<> {
    let rows = scans
        .iter()
        .map(|s| {
            let date = s.study_date.clone().unwrap_or_else(|| "date not recorded".into());
            view! {
                <tr data-testid="timeline-scan" data-id=s.id.clone()>
                    <td><A href=format!("/scans/{}", s.id)>{date}</A></td>
                    <td class="num">{s.age_years.map_or("—".to_string(), |a| a.to_string())}</td>
                    <td data-col="scanner">{s.scanner.text()}</td>
                    <td>{s.voxel_mm.map_or("—".to_string(), |v| format!("{:.2} × {:.2} × {:.2}", v[0], v[1], v[2]))}</td>
                    <td>{s.model.clone().unwrap_or_else(|| "—".into())}</td>
                    <td>{s.neurovol_version.clone().unwrap_or_else(|| "—".into())}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h2>"Scans"</h2>
        <table class="regions" data-testid="timeline-scans">
            <thead>
                <tr>
                    <th scope="col">"Scan date"</th><th scope="col" class="num">"Age"</th><th scope="col">"Scanner"</th>
                    <th scope="col">"Voxel size (mm)"</th><th scope="col">"Model"</th><th scope="col">"NeuroVol"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        {(scans.len() < 2).then(|| view! {
            <p class="notice" data-testid="timeline-one">"Upload a later scan of the same person to see how each region changed."</p>
        })}
    }
}

fn percent(p: Option<f64>) -> String {
    p.map_or("—".to_string(), |p| format!("{p:+.1} %"))
}

fn step_title(step: &Step<'_>) -> String {
    let date = |s: &TimelineScan| s.study_date.clone().unwrap_or_else(|| "date not recorded".into());
    format!("{} → {}", date(step.from), date(step.to))
}

/// The selected region between each pair of consecutive scans, with the pair's warnings.
fn changes(scans: &[TimelineScan], region: &str) -> Option<impl IntoView + use<>> {
    let steps = steps(scans);
    if steps.is_empty() || region.is_empty() {
        return None;
    }
    let text = describe(region).text;
    let rows = steps
        .iter()
        .map(|step| {
            let change = region_change(step, region);
            let volumes = step
                .from
                .region(region)
                .zip(step.to.region(region))
                .map_or("—".to_string(), |((a, _), (b, _))| {
                    format!("{} → {}", crate::format::ml(a), crate::format::ml(b))
                });
            let codes = step.warnings.iter().map(|w| w.code()).collect::<Vec<_>>().join(" ");
            view! {
                <tr data-testid="timeline-step" data-warnings=codes>
                    <td class="nowrap">{step_title(step)}</td>
                    <td class="num">{step.years.map_or("—".to_string(), |y| format!("{y:.1}"))}</td>
                    <td class="num nowrap">{volumes}</td>
                    <td class="num" data-col="annualised">{percent(change.as_ref().and_then(|c| c.annualised_percent))}</td>
                    <td class="num" data-col="expected">{percent(change.as_ref().and_then(|c| c.expected_percent))}</td>
                    <td>
                        {if step.warnings.is_empty() {
                            view! { <span class="muted">"comparable"</span> }.into_any()
                        } else {
                            view! {
                                <ul class="step-warnings" data-testid="comparability">
                                    {step.warnings.iter().map(|w| view! { <li data-code=w.code()>{w.text()}</li> }).collect_view()}
                                </ul>
                            }
                            .into_any()
                        }}
                    </td>
                </tr>
            }
        })
        .collect_view();
    Some(view! {
        <h2>{format!("{text}: change between scans")}</h2>
        <table class="regions" data-testid="timeline-changes" data-region=region.to_string()>
            <thead>
                <tr>
                    <th scope="col">"Scans"</th><th scope="col" class="num">"Years apart"</th><th scope="col" class="num">"Volume (mL)"</th>
                    <th scope="col" class="num">"Change a year"</th><th scope="col" class="num">"Expected a year"</th><th scope="col">"Comparable?"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
        <p class="muted small">
            {format!(
                "Change a year: the difference as a percentage of the earlier volume, divided by the years between the scan dates. \
                 Expected: how much the reference's centile curve through the earlier scan's percentile changes over the same ages. \
                 Less than {} months apart, or across scanners, the difference is mostly measurement.",
                (MIN_INTERVAL_YEARS * 12.0) as u32
            )}
        </p>
    })
}

/// Every region with a normative model between the last two scans.
fn last_step_table(scans: &[TimelineScan]) -> Option<impl IntoView + use<>> {
    let steps = steps(scans);
    let step = steps.last()?;
    let rows = step
        .to
        .regions
        .iter()
        .filter(|(name, ..)| has_reference(name))
        .filter_map(|(name, ..)| {
            let c = region_change(step, name)?;
            Some(view! {
                <tr data-testid="timeline-region" data-name=name.clone()>
                    <td>{describe(name).text}</td>
                    <td class="num">{percent(c.annualised_percent)}</td>
                    <td class="num">{percent(c.expected_percent)}</td>
                </tr>
            })
        })
        .collect_view();
    let caveat = (!step.warnings.is_empty()).then(|| {
        view! {
            <p class="notice warn" data-testid="last-step-caveat">
                {format!(
                    "Read these with care: {}.",
                    step.warnings.iter().map(|w| w.short()).collect::<Vec<_>>().join("; ")
                )}
            </p>
        }
    });
    Some(view! {
        <h2>{format!("Every region, {}", step_title(step))}</h2>
        {caveat}
        <table class="regions" data-testid="timeline-last-step">
            <thead>
                <tr><th scope="col">"Region"</th><th scope="col" class="num">"Change a year"</th><th scope="col" class="num">"Expected a year"</th></tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    })
}
