//! `neurovol segment` on the T1 reference input: the volumes.json shape, percentiles
//! filled from age and sex, agreement with the upstream reference volumes, and clean
//! refusals. (crates/volumetry's tests check Dice for every model in depth.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn assets() -> PathBuf {
    std::env::var("NEUROVOL_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn segment(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neurovol"))
        .arg("segment")
        .args(args)
        .env("NEUROVOL_ASSETS", assets())
        .output()
        .expect("run neurovol segment")
}

#[test]
fn segments_the_reference_t1_with_percentiles() {
    let dir = common::temp_dir("segment-cli");
    let labels = dir.join("labels.nii.gz");
    let volumes = dir.join("volumes.json");
    let input = assets().join("reference/t1_crop/input_t1_crop.nii.gz");
    let res = segment(&[
        input.to_str().unwrap(),
        "--out",
        labels.to_str().unwrap(),
        "--volumes",
        volumes.to_str().unwrap(),
        "--age",
        "67",
        "--sex",
        "F",
        // upstream's labels, so that every voxel count can be held against upstream's
        "--upstream",
    ]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(labels.is_file());

    let vj: serde_json::Value = serde_json::from_slice(&std::fs::read(&volumes).unwrap()).unwrap();
    assert_eq!(vj["model"], "model21_104class");
    // the default engine, and it says which
    assert!(
        vj["engine"].as_str().is_some_and(|e| e.starts_with("cpu-")),
        "{}",
        vj["engine"]
    );
    assert!(vj["grid"].is_string());
    assert!(
        vj["icv_mm3"].as_f64().unwrap() > 500_000.0,
        "ICV from the brain mask: {}",
        vj["icv_mm3"]
    );
    let regions = vj["regions"].as_array().unwrap();
    let find = |name: &str| {
        regions
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };

    // Modelled regions our method measures as FreeSurfer does get a percentile in (0, 100)
    // with its band; the others say why not, in a code and in words.
    assert_eq!(vj["labelling"], "upstream");
    assert_eq!(vj["calibration"], "none — braincharts training-site average");
    assert!(matches!(vj["quality"]["grade"].as_str(), Some("A" | "B" | "C")));
    let ventricle = find("Left-Lateral-Ventricle");
    let p = ventricle["percentile"].as_f64().expect("lateral ventricle percentile");
    assert!(p > 0.0 && p < 100.0, "{p}");
    let band = ventricle["percentile_band"].as_array().expect("a band");
    assert!(band[0].as_f64().unwrap() <= p && p <= band[1].as_f64().unwrap());
    // FreeSurfer's sum of the deep grey structures is their voxel counts added up
    let deep_grey = volumetry::composite::SUBCORTICAL_GREY;
    let parts: f64 = regions
        .iter()
        .filter(|r| deep_grey.includes(r["name"].as_str().unwrap()))
        .map(|r| r["counted_mm3"].as_f64().unwrap())
        .sum();
    let sum = find(deep_grey.name);
    assert_eq!(sum["label"], 0);
    assert!(
        parts > 0.0 && (sum["volume_mm3"].as_f64().unwrap() - parts).abs() < 1e-6,
        "{sum} vs {parts}"
    );
    let hippo = find("Left-Hippocampus");
    assert!(hippo["percentile"].is_null());
    assert_eq!(hippo["no_percentile"], "method_biased");
    assert!(
        hippo["no_percentile_reason"]
            .as_str()
            .unwrap()
            .contains("differ from FreeSurfer's")
    );
    assert!(find("Left-Cerebral-White-Matter")["percentile"].is_null());
    assert_eq!(find("Left-Cerebral-White-Matter")["no_percentile"], "no_model");

    // Every region's voxel count agrees with the upstream implementation's within 1 %
    // (the corrected volume, which gets the percentile, is ours alone).
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(assets().join("reference/t1_crop/model21_104class_volumes.json")).unwrap(),
    )
    .unwrap();
    let ref_labels = reference["conformed"]["labels"].as_object().unwrap();
    let mut compared = 0;
    // label 0 marks a composite (a sum of labels), which upstream does not report
    for region in regions.iter().filter(|r| r["label"] != 0) {
        let label = region["label"].as_u64().unwrap().to_string();
        let Some(expected) = ref_labels.get(&label).and_then(|l| l["mm3"].as_f64()) else {
            continue;
        };
        let ours = region["counted_mm3"].as_f64().unwrap();
        if expected >= 500.0 {
            assert!(
                (ours - expected).abs() <= 0.01 * expected,
                "{}: {ours} vs upstream {expected}",
                region["name"]
            );
            compared += 1;
        }
    }
    assert!(compared > 50, "compared {compared} regions");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_input_is_refused_in_one_line_without_outputs() {
    let dir = common::temp_dir("segment-bad");
    let bogus = dir.join("not-a-nifti.nii.gz");
    std::fs::write(&bogus, b"this is not a NIfTI file").unwrap();
    let labels = dir.join("labels.nii.gz");
    let volumes = dir.join("volumes.json");
    for (args, expect) in [
        (vec![bogus.to_str().unwrap()], ""),
        (vec![dir.join("missing.nii").to_str().unwrap()], "no such file"),
        (vec![bogus.to_str().unwrap(), "--model", "nonsense"], "model"),
        (vec![bogus.to_str().unwrap(), "--sex", "X"], "--sex"),
    ] {
        let mut all = args.clone();
        all.extend([
            "--out",
            labels.to_str().unwrap(),
            "--volumes",
            volumes.to_str().unwrap(),
        ]);
        let res = segment(&all);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{args:?} accepted");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the bogus input remains: {left:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--engine gpu` on a machine without a Vulkan driver: one line naming the engine, no
/// outputs, never a silent fall-back to the CPU; an unknown engine is named.
#[test]
fn a_missing_gpu_is_refused_without_outputs() {
    let dir = common::temp_dir("segment-nogpu");
    let input = assets().join("reference/t1_crop/input_t1_crop.nii.gz");
    let labels = dir.join("labels.nii.gz");
    let volumes = dir.join("volumes.json");
    let outs = [
        "--out",
        labels.to_str().unwrap(),
        "--volumes",
        volumes.to_str().unwrap(),
    ];
    let res = Command::new(env!("CARGO_BIN_EXE_neurovol"))
        .arg("segment")
        .arg(&input)
        .args(["--engine", "gpu"])
        .args(outs)
        .env("NEUROVOL_ASSETS", assets())
        // the Vulkan loader's driver list: none
        .env("VK_ICD_FILENAMES", "/nonexistent/none.json")
        .env("VK_DRIVER_FILES", "/nonexistent/none.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success());
    assert!(
        err.contains("GPU engine (wgpu/Vulkan): no Vulkan adapter found"),
        "{err}"
    );
    let res = segment(&[
        input.to_str().unwrap(),
        "--engine",
        "cuda",
        outs[0],
        outs[1],
        outs[2],
        outs[3],
    ]);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("cpu or gpu"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
    std::fs::remove_dir_all(&dir).unwrap();
}
