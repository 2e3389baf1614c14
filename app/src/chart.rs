//! The centile chart of one region: the normative reference's 1st–99th centile curves over
//! age for the scan's sex (from `norms`, nothing recomputed here), this scan's volume and
//! every earlier scan of the account. One implementation, plotters' SVG backend, compiled
//! into the server (the first paint, which works without JavaScript) and into the hydrated
//! WASM (re-rendered when the person picks another region).
//!
//! The points are drawn over plotters' output as focusable circles that carry their
//! values; [`Frame`] keeps plotters' data→pixel transform so that a pointer anywhere on
//! the plot can be read back as an age, and the curves' volumes at that age shown.

use norms::{Norms, Sex, Site};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// The curves drawn, outermost first pairs: 1st/99th, 5th/95th, 25th/75th, then the median.
pub const CHART_CENTILES: [f64; 7] = [1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0];
/// The SVG's size in pixels (its viewBox; the page scales it to its column).
pub const SIZE: (u32, u32) = (640, 360);
/// Years shown either side of the scans' ages (within the reference's range).
const AGE_MARGIN: f64 = 20.0;

/// One scan's volume of the region, a point on the chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanPoint {
    pub scan_id: String,
    /// ISO date of the scan, when recorded.
    pub date: Option<String>,
    pub age_years: f64,
    pub volume_mm3: f64,
    /// The scan whose page this is.
    pub current: bool,
}

/// Plotters' mapping between data and the SVG's pixels, kept to read a pointer back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    /// Pixel x of the first and last age shown.
    pub x_px: (f64, f64),
    pub ages: (f64, f64),
}

impl Frame {
    /// The age under pixel x of the SVG, when x lies on the plot.
    pub fn age_at(&self, x: f64) -> Option<f64> {
        let (x0, x1) = self.x_px;
        let t = (x - x0) / (x1 - x0);
        (0.0..=1.0)
            .contains(&t)
            .then_some(self.ages.0 + t * (self.ages.1 - self.ages.0))
    }
}

pub struct Chart {
    pub svg: String,
    pub frame: Frame,
}

/// "5th", "50th", "99th".
pub fn centile_name(c: f64) -> String {
    let n = c.round() as u32;
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The curves' volumes at one age, in words: what hovering the plot shows.
pub fn readout_at(region: &str, sex: Sex, age: f64, site: &Site) -> Option<String> {
    let norms = Norms::embedded();
    let parts = CHART_CENTILES
        .iter()
        .map(|&c| {
            let v = norms.centile_volume(region, sex, age, c, site).ok()?;
            Some(format!("{} {}", centile_name(c), crate::format::ml(v)))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(format!("At {age:.0} years, centiles (mL): {}", parts.join(", ")))
}

/// A point's values in words (its tooltip and accessible name).
pub fn point_text(p: &ScanPoint) -> String {
    let when = p.date.clone().unwrap_or_else(|| "date not recorded".into());
    let which = if p.current { "this scan" } else { "an earlier scan" };
    format!(
        "{which}, {when}: {} mL at {:.0} years",
        crate::format::ml(p.volume_mm3),
        p.age_years
    )
}

/// Whether the reference has a model for `region` (only those get a chart).
pub fn has_reference(region: &str) -> bool {
    Norms::embedded().model(region).is_ok()
}

/// Words on a chart: an SVG `<text>` at pixel (x, y) of the chart.
pub(crate) fn svg_text(x: i32, y: i32, anchor: &str, baseline: &str, size: u32, words: &str) -> String {
    format!(
        r##"<text x="{x}" y="{y}" text-anchor="{anchor}" dominant-baseline="{baseline}" font-size="{size}" font-family="sans-serif" fill="#323f4b">{}</text>"##,
        escape(words)
    )
}

/// Text for SVG markup (element content or a quoted attribute).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// About `n` round tick values (1, 2 or 5 × a power of ten apart) inside [lo, hi].
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo) / n as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return Vec::new();
    }
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A tick's value with as many decimals as its step needs.
fn format_tick(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn plot_error<E: std::fmt::Debug>(e: E) -> String {
    format!("the chart could not be drawn: {e:?}")
}

/// Draws the chart of `region` (its title `title`) for `sex`, with the centiles of `site`
/// (the one the scan's percentiles were computed with), or without any where `site` is
/// `None`: the volumes alone, for a structure our method cannot set against the reference.
pub fn centile_chart(
    region: &str,
    title: &str,
    sex: Sex,
    site: Option<&Site>,
    points: &[ScanPoint],
) -> Result<Chart, String> {
    let norms = Norms::embedded();
    let (min, max) = norms.age_range();
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.age_years), b.max(p.age_years))
    });
    let (mut a0, mut a1) = if lo.is_finite() {
        ((lo - AGE_MARGIN).max(min), (hi + AGE_MARGIN).min(max))
    } else {
        (min, max)
    };
    if a1 - a0 < 2.0 * AGE_MARGIN {
        (a0, a1) = (min.max(a0 - AGE_MARGIN), max.min(a1 + AGE_MARGIN));
    }
    let steps = 120;
    let ages: Vec<f64> = (0..=steps).map(|i| a0 + (a1 - a0) * i as f64 / steps as f64).collect();
    let curves = match site {
        Some(site) => norms
            .centile_curves(region, sex, &CHART_CENTILES, &ages, site)
            .map_err(|e| e.to_string())?,
        None if points.is_empty() => return Err("no reference and no scan to draw".into()),
        None => Vec::new(),
    };
    let ml = |v: f64| v / 1000.0;
    let (mut v0, mut v1) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in curves.iter().flat_map(|c| &c.points) {
        v0 = v0.min(ml(p[1]));
        v1 = v1.max(ml(p[1]));
    }
    for p in points {
        v0 = v0.min(ml(p.volume_mm3));
        v1 = v1.max(ml(p.volume_mm3));
    }
    // one volume alone still needs a scale
    let pad = ((v1 - v0) * 0.08).max(v1 * 0.02);
    let (v0, v1) = (v0 - pad, v1 + pad);

    let mut svg = String::new();
    let frame;
    let mut marks = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        // No text goes through plotters: in the browser it measures text with styled DOM
        // elements (which the Content-Security-Policy forbids) and on the server it guesses.
        // Grid lines are drawn here and every word is an SVG <text> placed through the
        // chart's transform, so the server's and the browser's SVG are the same.
        let mut chart = ChartBuilder::on(&root)
            .margin_top(34)
            .margin_right(12)
            .margin_bottom(8)
            .margin_left(8)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .right_y_label_area_size(40)
            .build_cartesian_2d(a0..a1, v0..v1)
            .map_err(plot_error)?;
        let grid = RGBColor(228, 232, 238);
        let axis = RGBColor(120, 130, 145);
        let text = svg_text;
        for age in ticks(a0, a1, 6) {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(age, v0), (age, v1)], grid)))
                .map_err(plot_error)?;
            let (x, y) = chart.backend_coord(&(age, v0));
            marks.push(text(x, y + 14, "middle", "middle", 12, &format!("{age:.0}")));
        }
        for v in ticks(v0, v1, 6) {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(a0, v), (a1, v)], grid)))
                .map_err(plot_error)?;
            let (x, y) = chart.backend_coord(&(a0, v));
            marks.push(text(x - 6, y, "end", "middle", 12, &format_tick(v)));
        }
        let (left, bottom) = chart.backend_coord(&(a0, v0));
        let (right, top) = chart.backend_coord(&(a1, v1));
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(a0, v1), (a0, v0), (a1, v0)],
                axis,
            )))
            .map_err(plot_error)?;
        marks.push(text(
            (left + right) / 2,
            bottom + 32,
            "middle",
            "middle",
            12,
            "Age (years)",
        ));
        marks.push(format!(
            r##"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle" dominant-baseline="middle" font-size="12" font-family="sans-serif" fill="#323f4b">Volume (mL)</text>"##,
            (top + bottom) / 2,
            (top + bottom) / 2
        ));
        marks.push(text((left + right) / 2, 16, "middle", "middle", 16, title));
        let colour = |c: f64| match c as u32 {
            50 => RGBColor(36, 86, 166),
            25 | 75 => RGBColor(111, 146, 205),
            5 | 95 => RGBColor(157, 183, 224),
            _ => RGBColor(200, 210, 225),
        };
        for curve in &curves {
            let width = if curve.centile == 50.0 { 2 } else { 1 };
            let style = colour(curve.centile).stroke_width(width);
            chart
                .draw_series(LineSeries::new(curve.points.iter().map(|p| (p[0], ml(p[1]))), style))
                .map_err(plot_error)?;
            // the curve's name at its right end
            if let Some(last) = curve.points.last() {
                let at = chart.backend_coord(&(last[0], ml(last[1])));
                marks.push(text(
                    at.0 + 4,
                    at.1,
                    "start",
                    "middle",
                    11,
                    &centile_name(curve.centile),
                ));
            }
        }
        let (x0, _) = chart.backend_coord(&(a0, v0));
        let (x1, _) = chart.backend_coord(&(a1, v0));
        frame = Frame {
            x_px: (x0 as f64, x1 as f64),
            ages: (a0, a1),
        };
        for p in points {
            let (x, y) = chart.backend_coord(&(p.age_years, ml(p.volume_mm3)));
            let words = escape(&point_text(p));
            marks.push(format!(
                r#"<circle cx="{x}" cy="{y}" r="{}" class="scan-point{}" tabindex="0" role="img" aria-label="{words}" data-testid="chart-point" data-scan="{}" data-readout="{words}"><title>{words}</title></circle>"#,
                if p.current { 6 } else { 5 },
                if p.current { " current" } else { "" },
                escape(&p.scan_id),
            ));
        }
        root.present().map_err(plot_error)?;
    }
    let label = match site {
        Some(_) => format!("Centile chart of {title}: the reference's 1st to 99th centiles by age, and your scans"),
        None => format!("Chart of {title}: your scans' volumes by age, without the reference's centiles"),
    };
    let svg = svg.replacen(
        "<svg ",
        &format!(r#"<svg role="img" aria-label="{label}" class="centile-chart" "#),
        1,
    );
    let svg = match svg.rfind("</svg>") {
        Some(end) => format!("{}{}{}", &svg[..end], marks.join(""), &svg[end..]),
        None => return Err("the chart could not be drawn".into()),
    };
    Ok(Chart { svg, frame })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(age: f64, ml: f64, current: bool) -> ScanPoint {
        ScanPoint {
            scan_id: format!("s{age}"),
            date: Some("2024-01-02".into()),
            age_years: age,
            volume_mm3: ml * 1000.0,
            current,
        }
    }

    #[test]
    fn curves_points_and_the_transform() {
        let points = [point(60.0, 4.1, false), point(67.0, 3.9, true)];
        let chart = centile_chart(
            "Left-Hippocampus",
            "Hippocampus — left",
            Sex::Female,
            Some(&Site::default()),
            &points,
        )
        .unwrap();
        assert!(
            chart
                .svg
                .starts_with("<svg role=\"img\" aria-label=\"Centile chart of Hippocampus — left")
        );
        assert_eq!(chart.svg.matches("data-testid=\"chart-point\"").count(), 2);
        assert_eq!(chart.svg.matches("class=\"scan-point current\"").count(), 1);
        for c in ["1st", "5th", "25th", "50th", "75th", "95th", "99th"] {
            assert!(chart.svg.contains(&format!(">{c}</text>")), "{c} label");
        }
        // the ages shown surround the scans; reading the pixel of an age back gives it
        let f = chart.frame;
        assert!(f.ages.0 <= 40.0 && f.ages.1 >= 87.0, "{f:?}");
        let x_of = |age: f64| f.x_px.0 + (age - f.ages.0) / (f.ages.1 - f.ages.0) * (f.x_px.1 - f.x_px.0);
        assert!((f.age_at(x_of(67.0)).unwrap() - 67.0).abs() < 1e-9);
        assert_eq!(f.age_at(f.x_px.0 - 5.0), None);
        // the point's circle sits where plotters put age 67
        let at = chart.svg.find("class=\"scan-point current\"").unwrap();
        let cx: f64 = chart.svg[..at]
            .rsplit("cx=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((cx - x_of(67.0)).abs() <= 1.0, "{cx} vs {}", x_of(67.0));
    }

    #[test]
    fn round_ticks() {
        assert_eq!(ticks(27.0, 87.0, 6), vec![30.0, 40.0, 50.0, 60.0, 70.0, 80.0]);
        assert_eq!(ticks(2.9, 5.1, 6), vec![3.0, 3.5, 4.0, 4.5, 5.0]);
        assert_eq!(format_tick(3.5), "3.5");
        assert_eq!(format_tick(40.0), "40");
        assert!(ticks(1.0, 1.0, 6).is_empty());
    }

    #[test]
    fn readouts_and_regions_without_a_reference() {
        let r = readout_at("Left-Hippocampus", Sex::Male, 52.0, &Site::default()).unwrap();
        assert!(r.starts_with("At 52 years, centiles (mL): 1st "), "{r}");
        assert!(has_reference("Left-Hippocampus"));
        assert!(!has_reference("ctx-lh-bankssts"));
        assert!(centile_chart("ctx-lh-bankssts", "x", Sex::Male, Some(&Site::default()), &[]).is_err());
    }

    #[test]
    fn a_calibrated_site_draws_its_own_centiles() {
        let norms = Norms::embedded();
        let site = Site::Calibrated(
            norms::SiteCalibration::one_region(norms, "Left-Hippocampus", Sex::Male, 52.0, -1.0, 0.0).unwrap(),
        );
        let plain = readout_at("Left-Hippocampus", Sex::Male, 52.0, &Site::default()).unwrap();
        let calibrated = readout_at("Left-Hippocampus", Sex::Male, 52.0, &site).unwrap();
        assert_ne!(plain, calibrated);
        let median = norms
            .centile_volume("Left-Hippocampus", Sex::Male, 52.0, 50.0, &site)
            .unwrap();
        assert!(
            calibrated.contains(&format!("50th {:.2}", median / 1000.0)),
            "{calibrated}"
        );
        let points = [ScanPoint {
            scan_id: "s".into(),
            date: None,
            age_years: 52.0,
            volume_mm3: median,
            current: true,
        }];
        let a = centile_chart("Left-Hippocampus", "x", Sex::Male, Some(&Site::default()), &points).unwrap();
        let b = centile_chart("Left-Hippocampus", "x", Sex::Male, Some(&site), &points).unwrap();
        assert_ne!(a.svg, b.svg);
        // without a reference: the scans alone, and the label says so
        let bare = centile_chart("Left-Hippocampus", "x", Sex::Male, None, &points).unwrap();
        assert!(bare.svg.contains("without the reference's centiles"));
        assert!(!bare.svg.contains(">50th<"));
        assert_eq!(bare.svg.matches("data-testid=\"chart-point\"").count(), 1);
        assert!(centile_chart("Left-Hippocampus", "x", Sex::Male, None, &[]).is_err());
    }
}
