//! The shipped validity table and the rule that withholds a percentile (`norms::validity`).

use norms::validity::{MAX_METHOD_Z, StructureValidity, ValidityTable};
use norms::{NoPercentile, Norms, Sex, Site};

fn measured(bias: f64, sd: f64, n: usize) -> StructureValidity {
    StructureValidity {
        n,
        dice_mean: 0.9,
        ratio_mean: 1.0,
        ratio_sd: 0.05,
        delta_z_mean: bias,
        delta_z_sd: sd,
    }
}

#[test]
fn the_shipped_table_measures_the_default_labels_on_named_brains() {
    let table = ValidityTable::embedded();
    for labelling in ["refined", "upstream"] {
        let m = table.method("model21_104class", labelling).expect(labelling);
        assert!(m.provenance.cases.len() >= 3, "{:?}", m.provenance.cases);
        assert!(m.provenance.data.contains("FreeSurfer"));
        assert!(m.provenance.command.starts_with("neurovol accuracy"));
        // every structure it names is one the reference models, under braincharts' name
        for name in m.structures.keys() {
            assert_eq!(&Norms::embedded().model(name).unwrap().name, name);
        }
        assert!(m.structures.len() >= 28, "{}", m.structures.len());
    }
    assert!(table.method("model18cls", "upstream").is_none());
}

#[test]
fn a_percentile_needs_a_small_bias_and_a_small_scatter() {
    assert!(measured(0.2, 0.3, 3).judge().is_ok());
    assert!(measured(MAX_METHOD_Z, MAX_METHOD_Z, 3).judge().is_ok());
    assert!(matches!(measured(-0.6, 0.1, 3).judge(), Err(NoPercentile::MethodBiased { bias_z }) if bias_z == -0.6));
    assert!(matches!(
        measured(0.1, 0.7, 3).judge(),
        Err(NoPercentile::MethodImprecise { .. })
    ));
    // volumes that agree while the labels barely overlap are not trusted
    let mut poor = measured(0.1, 0.1, 3);
    poor.dice_mean = 0.5;
    assert!(matches!(poor.judge(), Err(NoPercentile::MethodOverlap { .. })));
    // the reason never rounds onto the threshold it failed
    let just_over = measured(0.51, 0.1, 3).judge().unwrap_err().to_string();
    assert!(just_over.contains("+0.51 SD"), "{just_over}");
    // one brain says nothing about the scatter
    assert_eq!(measured(0.1, 0.0, 1).judge(), Err(NoPercentile::MethodUnmeasured));
}

#[test]
fn assess_method_withholds_or_gives_a_band_around_the_percentile() {
    let norms = Norms::embedded();
    let table = ValidityTable::embedded().method("model21_104class", "refined").unwrap();
    let (kept, withheld): (Vec<_>, Vec<_>) = table.structures.iter().partition(|(_, v)| v.judge().is_ok());
    assert!(!kept.is_empty() && !withheld.is_empty());
    let site = Site::default();
    for (name, v) in &kept {
        let volume = norms.centile_volume(name, Sex::Male, 40.0, 30.0, &site).unwrap();
        let a = norms.assess_method(name, volume, Some(Sex::Male), Some(40.0), &site, Some(table));
        let p = a.percentile.unwrap();
        assert!((p - 30.0).abs() < 1e-6);
        let [low, high] = a.band.unwrap();
        assert!(low < p && p < high, "{name}: {low} {p} {high}");
        // one SD of the method and of the site: at least the method's own
        let z_low = norms::normal_quantile(low / 100.0);
        assert!(a.z.unwrap() - z_low >= v.delta_z_sd - 1e-9, "{name}");
    }
    for (name, _) in &withheld {
        let a = norms.assess_method(name, 4000.0, Some(Sex::Male), Some(40.0), &site, Some(table));
        assert_eq!(a.percentile, None);
        assert_eq!(a.band, None);
        assert!(matches!(
            a.no_percentile,
            Some(
                NoPercentile::MethodBiased { .. }
                    | NoPercentile::MethodImprecise { .. }
                    | NoPercentile::MethodOverlap { .. }
            )
        ));
    }
    // no measurement at all: withheld, and said so
    let a = norms.assess_method("Left-Thalamus", 7000.0, Some(Sex::Male), Some(40.0), &site, None);
    assert_eq!(a.no_percentile, Some(NoPercentile::MethodUnmeasured));
    // no age: the usual reason, not the method's
    let a = norms.assess_method("Left-Thalamus", 7000.0, Some(Sex::Male), None, &site, Some(table));
    assert_eq!(a.no_percentile, Some(NoPercentile::AgeUnknown));
}

#[test]
fn a_calibrated_region_is_not_withheld_for_the_bias_and_its_band_is_the_offsets_error() {
    let norms = Norms::embedded();
    let table = ValidityTable::embedded().method("model21_104class", "refined").unwrap();
    // a structure withheld only for its bias: a site's controls, measured the same way,
    // carry that bias into their offset
    let (name, v) = table
        .structures
        .iter()
        .find(|(_, v)| matches!(v.judge(), Err(NoPercentile::MethodBiased { .. })) && v.judge_calibrated().is_ok())
        .expect("a structure withheld for its bias alone");
    let mut calibration = norms::SiteCalibration::one_region(norms, name, Sex::Male, 40.0, 0.6, 0.1).unwrap();
    calibration.measured_by = Some(norms::MeasuredBy {
        model: "model21_104class".into(),
        labelling: "refined".into(),
    });
    let site = Site::Calibrated(calibration);
    let volume = norms.centile_volume(name, Sex::Male, 40.0, 30.0, &site).unwrap();
    let a = norms.assess_method(name, volume, Some(Sex::Male), Some(40.0), &site, Some(table));
    assert!((a.percentile.unwrap() - 30.0).abs() < 1e-6, "{name}");
    let [low, high] = a.band.unwrap();
    let z = a.z.unwrap();
    // the offset's error alone, not the method's scatter again
    assert!(
        (z - norms::normal_quantile(low / 100.0) - 0.1).abs() < 1e-6,
        "{name} {low}"
    );
    assert!(
        (norms::normal_quantile(high / 100.0) - z - 0.1).abs() < 1e-6,
        "{name} {high}"
    );
    assert!(0.1 < v.delta_z_sd);
    // uncalibrated, the same volume is withheld
    let plain = norms.assess_method(name, volume, Some(Sex::Male), Some(40.0), &Site::default(), Some(table));
    assert!(matches!(plain.no_percentile, Some(NoPercentile::MethodBiased { .. })));
    // the calibration holds for its own segmentation only
    assert!(site.fits("model21_104class", "refined"));
    assert!(!site.fits("model21_104class", "upstream"));
    assert!(!site.fits("model18cls", "refined"));
    assert!(Site::TrainingAverage.fits("model18cls", "upstream"));
}
