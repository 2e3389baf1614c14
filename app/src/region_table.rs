//! The scan page's regions table: per region its volume in mL and as a share of the
//! intracranial volume, the reference's usual range for the age and sex, the percentile
//! with a small band graphic (where it sits among the 5th/25th/50th/75th/95th centiles),
//! the left/right asymmetry index, and a note (a flag, or why there is no percentile).

use leptos::prelude::*;

use crate::overview::{OverviewRow, overview_chart};
use crate::regions::{RegionGroup, describe};
use crate::scans_api::{RegionRow, flag_text, no_percentile_text};

/// What a percentile means, once, above the table.
const PERCENTILE_MEANING: &str = "A percentile says where a volume sits among people of the same age and sex in the \
     reference: at the 30th percentile, 30 in 100 of them have a smaller volume. The 5th to 95th percentile is the \
     usual range; values outside it are marked. Scanners, protocols and segmentation methods differ by several \
     percent, so read a percentile as a guide, not a diagnosis.";

/// `chart`: the chart's selected region, when there is a chart (the names of charted
/// regions then pick it).
pub fn regions_table(
    regions: Vec<RegionRow>,
    model: Option<String>,
    icv_mm3: Option<f64>,
    chart: Option<RwSignal<String>>,
) -> impl IntoView {
    let rows: Vec<(RegionGroup, String, RegionRow)> = regions
        .into_iter()
        .map(|r| {
            let name = describe(&r.name);
            (name.group, name.text, r)
        })
        .collect();
    let head = || {
        view! {
            <thead>
                <tr>
                    <th scope="col">"Region"</th>
                    <th scope="col" class="num">"Volume (mL)"</th>
                    <th scope="col" class="num"><abbr title="share of the intracranial volume (the brain-mask volume)">"% ICV"</abbr></th>
                    <th scope="col" class="num">"Usual range (mL)"</th>
                    <th scope="col" class="num">"Percentile"</th>
                    <th scope="col"><span class="visually-hidden">"Band"</span></th>
                    <th scope="col" class="num"><abbr title="left/right asymmetry: (left − right) / mean">"L−R"</abbr></th>
                    <th scope="col">"Note"</th>
                </tr>
            </thead>
        }
    };
    let body = |group: RegionGroup| {
        rows.iter()
            .filter(|(g, ..)| *g == group)
            .map(|(_, text, r)| region_row(group, text, r, icv_mm3, chart))
            .collect_view()
    };
    let present = |group: RegionGroup| rows.iter().any(|(g, ..)| *g == group);
    let overview: Vec<OverviewRow> = RegionGroup::ALL
        .into_iter()
        .flat_map(|group| rows.iter().filter(move |(g, ..)| *g == group))
        .filter_map(|(_, text, r)| {
            Some(OverviewRow {
                text: text.clone(),
                name: r.name.clone(),
                percentile: r.percentile?,
            })
        })
        .collect();
    view! {
        <h2>"Regional volumes"</h2>
        <p class="muted small" data-testid="percentile-meaning">{PERCENTILE_MEANING}</p>
        {overview_chart(&overview).map(|svg| view! {
            <figure class="overview" data-testid="overview">
                <div inner_html=svg></div>
                <figcaption class="muted small">"Every region with a percentile, on one scale: dots outside the shaded band (5th to 95th) are marked in the table below."</figcaption>
            </figure>
        })}
        <p class="muted small">
            {format!(
                "Model {}. Volumes are corrected for partial volume (a voxel on a border counts for each region by its intensity), \
                 as FreeSurfer's are, from which the reference was built; the downloads keep the plain voxel counts too. \
                 The reference is the BrainCharts normative model (site average). \
                 % ICV divides by the brain-mask volume, which is not FreeSurfer's estimated intracranial volume.",
                model.unwrap_or_default()
            )}
        </p>
        <table class="regions" data-testid="regions">
            {head()}
            {RegionGroup::ALL.into_iter().filter(|g| !g.folded() && present(*g)).map(|group| view! {
                <tbody data-group=group.as_str()>
                    <tr class="group"><th colspan="8" scope="rowgroup">{group.title()}</th></tr>
                    {body(group)}
                </tbody>
            }).collect_view()}
        </table>
        {RegionGroup::ALL.into_iter().filter(|g| g.folded() && present(*g)).map(|group| view! {
            <details class="cortex" data-testid=format!("group-{}", group.as_str())>
                <summary>{format!("{} ({} regions)", group.title(), rows.iter().filter(|(g, ..)| *g == group).count())}</summary>
                <table class="regions">
                    {head()}
                    <tbody data-group=group.as_str()>{body(group)}</tbody>
                </table>
            </details>
        }).collect_view()}
    }
}

fn region_row(
    group: RegionGroup,
    text: &str,
    r: &RegionRow,
    icv_mm3: Option<f64>,
    chart: Option<RwSignal<String>>,
) -> impl IntoView + use<> {
    let (mark, class) = match r.flag.as_deref() {
        Some("below_5th") => ("▼ ", "flag-low"),
        Some("above_95th") => ("▲ ", "flag-high"),
        _ => ("", ""),
    };
    let note = match (&r.flag, &r.no_percentile) {
        (Some(flag), _) => flag_text(flag).to_string(),
        (None, Some(code)) => r.method_reason().unwrap_or(no_percentile_text(code)).to_string(),
        (None, None) => String::new(),
    };
    let uncertainty = r
        .percentile
        .zip(r.percentile_band)
        .map(|(_, band)| crate::scans_api::band_text(band));
    view! {
        <tr data-testid="region-row" data-name=r.name.clone() data-group=group.as_str() class=class>
            <td title=r.name.clone() data-col="region">{region_name(text, &r.name, chart.filter(|_| r.chartable()))}</td>
            <td class="num" data-col="volume">{crate::format::ml(r.volume_mm3)}</td>
            <td class="num" data-col="icv-share">
                {icv_mm3.filter(|v| *v > 0.0).map_or("—".to_string(), |icv| format!("{:.2}", 100.0 * r.volume_mm3 / icv))}
            </td>
            <td class="num" data-col="range">
                {r.centiles.map_or("—".to_string(), |c| crate::format::ml_range(c[0], c[4]))}
            </td>
            <td class="num" data-col="percentile" data-value=r.percentile.map(|p| format!("{p:.1}"))>
                <span aria-hidden="true">{mark}</span>
                {r.percentile.map_or("—".to_string(), |p| format!("{p:.1}"))}
                {uncertainty.map(|u| view! { <span class="muted small band-range" data-testid="percentile-band" title="one SD of our method's and the site's uncertainty">{format!(" ({u})")}</span> })}
            </td>
            <td data-col="band">{r.percentile.map(|p| band(p, r.percentile_band))}</td>
            <td class="num" data-col="asymmetry">
                {r.asymmetry.map_or(String::new(), |a| format!("{:+.1} %", 100.0 * a))}
            </td>
            <td data-col="note" data-flag=r.flag.clone().unwrap_or_default() data-no-percentile=r.no_percentile.clone().unwrap_or_default()>
                {note}
            </td>
        </tr>
    }
}

/// A charted region's name links to its chart: without JavaScript a page load with
/// `?region=`, with it the chart changes in place.
fn region_name(text: &str, name: &str, chart: Option<RwSignal<String>>) -> impl IntoView + use<> {
    match chart {
        Some(selected) => {
            let name = name.to_string();
            let href = format!("?region={name}#chart");
            view! {
                <a href=href data-testid="chart-link" on:click=move |ev| {
                    ev.prevent_default();
                    selected.set(name.clone());
                    if let Some(section) = document().get_element_by_id("chart") {
                        section.scroll_into_view();
                    }
                }>{text.to_string()}</a>
            }
            .into_any()
        }
        None => text.to_string().into_any(),
    }
}

/// Where a percentile sits: the 5th–95th (usual) and 25th–75th bands, the median line,
/// a dot at the value and a bar over its uncertainty band, on a 0–100 scale.
fn band(p: f64, uncertainty: Option<[f64; 2]>) -> impl IntoView {
    let p = p.clamp(0.0, 100.0);
    let label = match uncertainty {
        Some([low, high]) => format!(
            "{} (likely between {} and {}), usual range 5th to 95th percentile",
            ordinal(p),
            ordinal_bound(low),
            ordinal_bound(high)
        ),
        None => format!("{}, usual range 5th to 95th percentile", ordinal(p)),
    };
    let range = uncertainty.map(|[low, high]| {
        let (low, high) = (low.clamp(0.0, 100.0), high.clamp(0.0, 100.0));
        view! { <rect x=format!("{low:.1}") y="5" width=format!("{:.1}", (high - low).max(0.5)) height="2" class="band-uncertainty"/> }
    });
    view! {
        <svg class="band" viewBox="0 0 100 12" width="100" height="12" role="img" aria-label=label data-testid="band">
            <rect x="0" y="4" width="100" height="4" class="band-all"/>
            <rect x="5" y="3" width="90" height="6" class="band-usual"/>
            <rect x="25" y="2" width="50" height="8" class="band-middle"/>
            <line x1="50" y1="1" x2="50" y2="11" class="band-median"/>
            {range}
            <circle cx=format!("{p:.1}") cy="6" r="3" class="band-value"/>
        </svg>
    }
}

/// "34th percentile".
fn ordinal(p: f64) -> String {
    format!("{} percentile", ordinal_bound(p))
}

/// "the 22nd"; "below the 1st" and "above the 99th" at the ends, where no one stands.
fn ordinal_bound(p: f64) -> String {
    if p < 0.5 {
        "below the 1st".into()
    } else if p >= 99.5 {
        "above the 99th".into()
    } else {
        format!("the {}", crate::chart::centile_name(p))
    }
}

#[cfg(test)]
mod tests {
    use super::ordinal;
    use crate::scans_api::band_text;

    #[test]
    fn ordinals() {
        assert_eq!(ordinal(1.2), "the 1st percentile");
        assert_eq!(ordinal(11.0), "the 11th percentile");
        assert_eq!(ordinal(22.4), "the 22nd percentile");
        assert_eq!(ordinal(33.0), "the 33rd percentile");
        assert_eq!(ordinal(99.6), "above the 99th percentile");
        assert_eq!(ordinal(0.2), "below the 1st percentile");
    }

    #[test]
    fn bands_never_read_0th_or_100th() {
        assert_eq!(band_text([17.4, 27.2]), "17–27");
        assert_eq!(band_text([0.02, 2.1]), "<2");
        assert_eq!(band_text([97.0, 99.9]), ">97");
    }
}
