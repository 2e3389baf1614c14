//! What the scan page shows beside each region's volume and percentile: why a percentile
//! is missing, the reference's centile volumes for the scan's age and sex (the normal
//! range and the band), and the left/right asymmetry index. Computed when the page is
//! read, from the stored results and the embedded normative model (`norms` is the one home
//! of the reference; nothing here is stored).

use app::scans_api::{BAND_CENTILES, RegionRow};
use norms::{Norms, Sex, Site};

use crate::pipeline::score::Report;

pub fn enrich(
    mut regions: Vec<RegionRow>,
    result: Option<&Report>,
    sex: &str,
    age_years: Option<u32>,
) -> Vec<RegionRow> {
    let norms = Norms::embedded();
    let default_site = Site::default();
    // the centiles beside a percentile come from the site it was computed with
    let site = result.map_or(&default_site, |r| &r.site);
    let sex = Sex::from_code(sex);
    let age = age_years.map(f64::from);
    for row in &mut regions {
        let scored = result.and_then(|r| r.regions.iter().find(|g| g.name == row.name));
        row.no_percentile = scored.and_then(|g| g.no_percentile.clone());
        row.no_percentile_reason = scored.and_then(|g| g.no_percentile_reason.clone());
        row.percentile_band = scored.and_then(|g| g.percentile_band);
        row.centiles = sex.zip(age).and_then(|(sex, age)| {
            let mut v = [0.0; 5];
            for (slot, c) in v.iter_mut().zip(BAND_CENTILES) {
                *slot = norms.centile_volume(&row.name, sex, age, c, site).ok()?;
            }
            Some(v)
        });
    }
    // (L − R) / mean for every structure present on both sides, written on both rows
    let volume_of = |side: char, structure: &str, rows: &[RegionRow]| {
        rows.iter()
            .find(|r| volumetry::side_of(&r.name).is_some_and(|(s, n)| s == side && n == structure))
            .map(|r| r.volume_mm3)
    };
    let indices: Vec<Option<f64>> = regions
        .iter()
        .map(|r| {
            let (_, structure) = volumetry::side_of(&r.name)?;
            let (l, rt) = (
                volume_of('L', &structure, &regions)?,
                volume_of('R', &structure, &regions)?,
            );
            let mean = (l + rt) / 2.0;
            (mean > 0.0).then(|| (l - rt) / mean)
        })
        .collect();
    for (row, index) in regions.iter_mut().zip(indices) {
        row.asymmetry = index;
    }
    regions
}

/// The centiles of the normal-limits download.
pub const LIMIT_CENTILES: [f64; 7] = [1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0];

/// The reference's centile volumes (mm³) for each of `regions` that has a normative model,
/// for the scan's sex (both when it records neither M nor F), at every whole year of the
/// reference's age range, at the site the scan was scored with:
/// `region,sex,age_years,p1,p5,p25,p50,p75,p95,p99`.
pub fn normal_limits_csv(regions: &[String], sex: &str, site: &Site) -> String {
    let norms = Norms::embedded();
    let sexes: Vec<Sex> = match Sex::from_code(sex) {
        Some(s) => vec![s],
        None => vec![Sex::Female, Sex::Male],
    };
    let (min, max) = norms.age_range();
    let ages: Vec<f64> = (min.ceil() as u32..=max.floor() as u32).map(f64::from).collect();
    let mut csv = String::from("region,sex,age_years");
    for c in LIMIT_CENTILES {
        csv.push_str(&format!(",p{c}"));
    }
    csv.push('\n');
    for region in regions {
        for &s in &sexes {
            let Ok(curves) = norms.centile_curves(region, s, &LIMIT_CENTILES, &ages, site) else {
                continue;
            };
            for (i, age) in ages.iter().enumerate() {
                csv.push_str(&format!("{region},{},{age}", s.code()));
                for curve in &curves {
                    csv.push_str(&format!(",{:.1}", curve.points[i][1]));
                }
                csv.push('\n');
            }
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, volume_mm3: f64) -> RegionRow {
        RegionRow {
            name: name.into(),
            volume_mm3,
            percentile: None,
            flag: None,
            no_percentile: None,
            no_percentile_reason: None,
            percentile_band: None,
            centiles: None,
            asymmetry: None,
        }
    }

    #[test]
    fn both_sides_carry_the_asymmetry_and_the_centiles_rise() {
        let rows = vec![
            row("Left-Hippocampus", 4200.0),
            row("Right-Hippocampus", 3800.0),
            row("Left-Amygdala", 1500.0),
            row("3rd-Ventricle", 900.0),
        ];
        let out = enrich(rows, None, "F", Some(67));
        let idx = out[0].asymmetry.unwrap();
        assert!((idx - 0.1).abs() < 1e-12, "{idx}");
        assert_eq!(out[1].asymmetry, Some(idx));
        assert_eq!(out[2].asymmetry, None, "no right amygdala: no index");
        assert_eq!(out[3].asymmetry, None, "a midline structure has none");
        let c = out[0].centiles.expect("the hippocampus has a model");
        assert!(c.windows(2).all(|w| w[0] < w[1]), "{c:?}");
        assert!((2000.0..6000.0).contains(&c[2]), "median hippocampus {c:?}");
        // the reference is by sex and age: without them, no centiles
        assert!(
            enrich(vec![row("Left-Hippocampus", 4200.0)], None, "U", Some(67))[0]
                .centiles
                .is_none()
        );
        assert!(
            enrich(vec![row("Left-Hippocampus", 4200.0)], None, "F", None)[0]
                .centiles
                .is_none()
        );
    }

    #[test]
    fn normal_limits_cover_the_reference_ages_of_modelled_regions() {
        let regions = ["Left-Hippocampus".to_string(), "ctx-lh-bankssts".to_string()];
        let csv = normal_limits_csv(&regions, "F", &Site::default());
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("region,sex,age_years,p1,p5,p25,p50,p75,p95,p99"));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let (min, max) = Norms::embedded().age_range();
        assert_eq!(
            rows.len(),
            (max.floor() - min.ceil()) as usize + 1,
            "one row a year, one region, one sex"
        );
        assert!(rows.iter().all(|r| r[0] == "Left-Hippocampus" && r[1] == "F"));
        for r in &rows {
            let v: Vec<f64> = r[3..].iter().map(|x| x.parse().unwrap()).collect();
            assert!(v.windows(2).all(|w| w[0] < w[1]), "{r:?}");
        }
        // at 67 the 5th and 95th are the page's usual range
        let at67 = rows.iter().find(|r| r[2] == "67").unwrap();
        let page = enrich(vec![row("Left-Hippocampus", 4000.0)], None, "F", Some(67))[0]
            .centiles
            .unwrap();
        assert!((at67[4].parse::<f64>().unwrap() - page[0]).abs() < 0.06);
        assert!((at67[8].parse::<f64>().unwrap() - page[4]).abs() < 0.06);
        // unknown sex: both
        assert_eq!(
            normal_limits_csv(&regions, "U", &Site::default()).lines().count(),
            2 * rows.len() + 1
        );
        // a calibrated site moves the limits as it moves the percentiles
        let norms = Norms::embedded();
        let site = Site::Calibrated(
            norms::SiteCalibration::one_region(norms, "Left-Hippocampus", Sex::Female, 67.0, 1.0, 0.0).unwrap(),
        );
        let shifted = normal_limits_csv(&regions, "F", &site);
        let median_at_67 = |csv: &str| -> f64 {
            let row = csv.lines().find(|l| l.starts_with("Left-Hippocampus,F,67,")).unwrap();
            row.split(',').nth(6).unwrap().parse().unwrap()
        };
        let expected = norms
            .centile_volume("Left-Hippocampus", Sex::Female, 67.0, 50.0, &site)
            .unwrap();
        assert!((median_at_67(&shifted) - expected).abs() < 0.06);
        assert!(median_at_67(&shifted) > median_at_67(&csv) + 1.0);
    }
}
