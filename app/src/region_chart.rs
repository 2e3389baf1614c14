//! The scan page's interactive centile chart: pick a region (the list, the other side, or
//! a region's name in the table) and the chart is drawn again in the browser without a
//! page load; hover or focus a point to read its value, or anywhere on the plot to read
//! the centiles at that age. Without JavaScript the list and the table's links load the
//! page with `?region=…`, which the server draws.

use leptos::prelude::*;
use norms::{Sex, Site};

use crate::chart::{CHART_CENTILES, SIZE, ScanPoint, centile_chart, centile_name, readout_at};

/// A region that can be charted, with its points (this scan and the account's others).
#[derive(Clone, Debug, PartialEq)]
pub struct ChartChoice {
    pub name: String,
    pub text: String,
    pub points: Vec<ScanPoint>,
    /// Whether the reference's centiles are drawn: not where our method withholds the
    /// structure's percentile (its volumes are then shown alone).
    pub reference: bool,
}

/// The region on the other side ("Left-X" ↔ "Right-X"), when there is one.
fn other_side(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("Left-") {
        Some(format!("Right-{rest}"))
    } else {
        name.strip_prefix("Right-").map(|rest| format!("Left-{rest}"))
    }
}

#[component]
pub fn RegionChart(
    choices: Vec<ChartChoice>,
    sex: Sex,
    /// The site the percentiles were computed with: the curves are its centiles.
    site: Site,
    selected: RwSignal<String>,
) -> impl IntoView {
    let choices = StoredValue::new(choices);
    let site = StoredValue::new(site);
    let readout = RwSignal::new(String::new());
    let chart = Memo::new(move |_| {
        let name = selected.get();
        choices.with_value(|all| {
            let c = all.iter().find(|c| c.name == name).or_else(|| all.first())?;
            site.with_value(|site| centile_chart(&c.name, &c.text, sex, c.reference.then_some(site), &c.points))
                .ok()
                .map(|chart| (c.clone(), chart.svg, chart.frame))
        })
    });
    let on_pick = move |name: String| {
        readout.set(String::new());
        selected.set(name);
    };
    // a point's own text, else the centiles at the age under the pointer
    let on_pointer = move |ev: web_sys::PointerEvent| {
        use wasm_bindgen::JsCast;
        let Some(target) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else {
            return;
        };
        if let Some(text) = target.get_attribute("data-readout") {
            readout.set(text);
            return;
        }
        let Some(svg) = ev
            .current_target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|div| div.query_selector("svg").ok().flatten())
        else {
            return;
        };
        let rect = svg.get_bounding_client_rect();
        if rect.width() <= 0.0 {
            return;
        }
        let x = (f64::from(ev.client_x()) - rect.left()) * f64::from(SIZE.0) / rect.width();
        if let Some((c, _, frame)) = chart.get_untracked()
            && c.reference
            && let Some(age) = frame.age_at(x)
            && let Some(text) = site.with_value(|site| readout_at(&c.name, sex, age, site))
        {
            readout.set(text);
        }
    };
    let on_focus = move |ev: web_sys::FocusEvent| {
        use wasm_bindgen::JsCast;
        if let Some(text) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .and_then(|e| e.get_attribute("data-readout"))
        {
            readout.set(text);
        }
    };
    let options = move || {
        choices.with_value(|all| {
            all.iter()
                .map(|c| {
                    let name = c.name.clone();
                    view! { <option value=name.clone() selected=move || selected.get() == name>{c.text.clone()}</option> }
                })
                .collect_view()
        })
    };
    view! {
        <section id="chart" class="chart-section" data-testid="chart-section">
            <h2>"Centile chart"</h2>
            <form method="get" action="#chart" class="chart-controls" on:submit=|ev| ev.prevent_default()>
                <label>"Region "
                    <select name="region" data-testid="chart-region"
                        on:change=move |ev| on_pick(event_target_value(&ev))>
                        {options}
                    </select>
                </label>
                <noscript><button type="submit">"Show"</button></noscript>
                <button type="button" class="toggle" data-testid="chart-side"
                    disabled=move || other_side(&selected.get()).is_none()
                    on:click=move |_| if let Some(o) = other_side(&selected.get_untracked()) { on_pick(o) }>
                    "Other side"
                </button>
            </form>
            <div class="chart" data-testid="chart" data-region=move || selected.get()
                on:pointermove=on_pointer on:focusin=on_focus
                inner_html=move || chart.get().map(|(_, svg, _)| svg).unwrap_or_default()>
            </div>
            <p class="chart-readout" data-testid="chart-readout" aria-live="polite">
                {move || {
                    let r = readout.get();
                    if r.is_empty() { "Point at the chart or a scan's dot (or Tab to it) to read exact values.".to_string() } else { r }
                }}
            </p>
            {move || chart.get().filter(|(c, ..)| !c.reference).map(|_| view! {
                <p class="muted small" data-testid="chart-no-reference">
                    "No reference centiles for this structure: our volumes of it differ too much from FreeSurfer's, on which the reference was built. Its change between your scans is measured the same way each time."
                </p>
            })}
            {move || chart.get().map(|(c, ..)| site.with_value(|site| chart_table(&c, sex, site)))}
        </section>
    }
}

/// The chart's values as a table (for screen readers and print): the reference's centiles
/// at each scan's age, and the scan's volume.
fn chart_table(c: &ChartChoice, sex: Sex, site: &Site) -> impl IntoView + use<> {
    let norms = norms::Norms::embedded();
    let rows = c
        .points
        .iter()
        .map(|p| {
            let cells = CHART_CENTILES
                .iter()
                .map(|&k| {
                    let v = c
                        .reference
                        .then(|| norms.centile_volume(&c.name, sex, p.age_years, k, site).ok())
                        .flatten();
                    view! { <td class="num">{v.map_or("—".to_string(), crate::format::ml)}</td> }
                })
                .collect_view();
            view! {
                <tr>
                    <td>{p.date.clone().unwrap_or_else(|| "—".into())}{if p.current { " (this scan)" } else { "" }}</td>
                    <td class="num">{format!("{:.0}", p.age_years)}</td>
                    <td class="num">{crate::format::ml(p.volume_mm3)}</td>
                    {cells}
                </tr>
            }
        })
        .collect_view();
    view! {
        <details class="chart-table">
            <summary>"The chart as a table"</summary>
            <table class="regions" data-testid="chart-table">
                <caption>{format!("{}: your scans and the reference's centiles (mL) at their ages", c.text)}</caption>
                <thead>
                    <tr>
                        <th scope="col">"Scan"</th><th scope="col" class="num">"Age"</th><th scope="col" class="num">"Volume"</th>
                        {CHART_CENTILES.iter().map(|&k| view! { <th scope="col" class="num">{centile_name(k)}</th> }).collect_view()}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </details>
    }
}
