//! The overview chart: every region with a percentile on one screen, a dot per region on a
//! 0–100 percentile scale over the usual 5th–95th band (and the 25th–75th), outside it in
//! the warning colour. Plotters' SVG backend, like the centile chart; every word is SVG
//! text placed through the chart's transform (no font measuring, the same SVG on the
//! server and in the browser).

use plotters::prelude::*;

use crate::chart::{escape, svg_text};

/// One row: the region's words, its FreeSurfer name and its percentile.
pub struct OverviewRow {
    pub text: String,
    pub name: String,
    pub percentile: f64,
}

const WIDTH: u32 = 640;
const ROW: u32 = 18;
const TOP: u32 = 28;
const BOTTOM: u32 = 34;
const LABELS: u32 = 280;

/// The chart's SVG, or `None` when no region has a percentile.
pub fn overview_chart(rows: &[OverviewRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let height = TOP + BOTTOM + ROW * rows.len() as u32;
    let n = rows.len() as f64;
    let mut svg = String::new();
    let mut marks = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin_top(TOP)
            .margin_right(16)
            .margin_bottom(0)
            .margin_left(0)
            .x_label_area_size(BOTTOM)
            .y_label_area_size(LABELS)
            .build_cartesian_2d(0.0..100.0, 0.0..n)
            .ok()?;
        let band = |from: f64, to: f64, colour: RGBColor| Rectangle::new([(from, 0.0), (to, n)], colour.filled());
        chart
            .draw_series([
                band(5.0, 95.0, RGBColor(229, 236, 247)),
                band(25.0, 75.0, RGBColor(207, 220, 240)),
            ])
            .ok()?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(50.0, 0.0), (50.0, n)],
                RGBColor(36, 86, 166),
            )))
            .ok()?;
        let text = |x: i32, y: i32, anchor: &str, words: &str| svg_text(x, y, anchor, "middle", 12, words);
        // the band's edges and quartiles; 0 and 100 would collide with 5 and 95
        for p in [5.0, 25.0, 50.0, 75.0, 95.0] {
            let (x, y) = chart.backend_coord(&(p, 0.0));
            marks.push(text(x, y + 14, "middle", &format!("{p:.0}")));
        }
        let (left, bottom) = chart.backend_coord(&(0.0, 0.0));
        let (right, _) = chart.backend_coord(&(100.0, 0.0));
        marks.push(text(
            (left + right) / 2,
            bottom + 28,
            "middle",
            "Percentile for age and sex",
        ));
        for (i, r) in rows.iter().enumerate() {
            // the first row at the top
            let y_mid = n - i as f64 - 0.5;
            let (lx, ly) = chart.backend_coord(&(0.0, y_mid));
            marks.push(text(lx - 8, ly, "end", &r.text));
            let (x, y) = chart.backend_coord(&(r.percentile.clamp(0.0, 100.0), y_mid));
            let outside = !(5.0..=95.0).contains(&r.percentile);
            let words = escape(&format!("{}: {:.1} percentile", r.text, r.percentile));
            marks.push(format!(
                r#"<circle cx="{x}" cy="{y}" r="5" class="overview-point{}" data-testid="overview-point" data-name="{}" data-value="{:.1}"><title>{words}</title></circle>"#,
                if outside { " outside" } else { "" },
                escape(&r.name),
                r.percentile
            ));
        }
        root.present().ok()?;
    }
    let label = "Overview: every region's percentile for age and sex; the shaded band is the usual range (5th to 95th), the darker one the 25th to 75th";
    let svg = svg.replacen(
        "<svg ",
        &format!(r#"<svg role="img" aria-label="{label}" class="overview-chart" "#),
        1,
    );
    let end = svg.rfind("</svg>")?;
    Some(format!("{}{}{}", &svg[..end], marks.join(""), &svg[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dot_per_region_outside_ones_marked() {
        let rows: Vec<OverviewRow> = [("Hippocampus — left", 3.0), ("Thalamus — left", 50.0), ("A & B", 97.5)]
            .iter()
            .map(|(t, p)| OverviewRow {
                text: t.to_string(),
                name: t.to_string(),
                percentile: *p,
            })
            .collect();
        let svg = overview_chart(&rows).unwrap();
        assert_eq!(svg.matches("data-testid=\"overview-point\"").count(), 3);
        assert_eq!(svg.matches("class=\"overview-point outside\"").count(), 2);
        assert!(svg.contains(">A &amp; B</text>"));
        assert!(svg.starts_with("<svg role=\"img\" aria-label=\"Overview"));
        assert!(overview_chart(&[]).is_none());
    }
}
