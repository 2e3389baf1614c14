//! `neurovol calibrate --controls controls.csv --label "Site A, 3T MPRAGE" --out calibration.json`
//!
//! Learns this site's offsets from the normative reference (`norms::calibration`) on its own
//! healthy controls, each already segmented by NeuroVol (`volumes.json`, as `neurovol
//! segment` or the pipeline writes it). `controls.csv` has the header `volumes_json,age,sex`
//! (any column order) and one row per control scan: the path of its `volumes.json` (relative
//! to the CSV's folder, or absolute), the age in years at the scan and `M` or `F`. Fields may
//! be double-quoted (a path with a comma); blank lines and lines starting with `#` are skipped.
//!
//! Each control contributes its modelled regions' volumes and the brain-mask volume
//! (`icv_mm3`, as `TotalIntracranialVolume`). A control whose segmentation has grade C (a
//! flag of `volumetry::WHOLE_SEGMENTATION_FLAGS`: `too_little_labelled`,
//! `labels_outside_mask`, …) is refused, naming its line; a region the quality check flagged
//! (`missing_region`, `fragmented`, `asymmetric`) is left out of that control only.
//!
//! The file is written (through a temporary name, then renamed) only when the calibration
//! succeeded; a table of the offsets is printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use norms::calibration::{CalibrationError, Control, MIN_CONTROLS, RECOMMENDED_CONTROLS};
use norms::{Calibration, MeasuredBy, Norms, Sex};
use volumetry::VolumesJson;

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// CSV of healthy control scans: header `volumes_json,age,sex`, one row per scan.
    #[arg(long)]
    pub controls: PathBuf,
    /// What is calibrated, printed on every report (scanner, protocol); never a person's name.
    #[arg(long)]
    pub label: String,
    /// The calibration file to write (JSON; `NEUROVOL_CALIBRATION` names it to the server).
    #[arg(long)]
    pub out: PathBuf,
}

/// The volume name `icv_mm3` is calibrated under (a NeuroVol region name of `norms::REGION_MAP`).
const ICV_REGION: &str = "TotalIntracranialVolume";

/// One row of `controls.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlRow {
    /// 1-based line in the CSV.
    pub line: usize,
    /// Resolved against the CSV's folder.
    pub volumes_json: PathBuf,
    pub age: f64,
    pub sex: Sex,
}

/// What is wrong with one line of `controls.csv`.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RowProblem {
    #[error("the header must name the columns volumes_json, age and sex (any order), not {found:?}")]
    Header { found: String },
    #[error("{found} fields, the header has {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("a quoted field is not closed")]
    UnclosedQuote,
    #[error("volumes_json is empty")]
    EmptyPath,
    #[error("age {value:?} is not a number of years")]
    Age { value: String },
    #[error("sex {value:?} is neither M nor F")]
    Sex { value: String },
    #[error("the same volumes.json as line {first_line}")]
    Duplicate { first_line: usize },
}

/// What is wrong with a control's `volumes.json`.
#[derive(Debug, thiserror::Error)]
pub enum VolumesProblem {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("not a volumes.json: {0}")]
    Parse(serde_json::Error),
    #[error("region {name} appears twice")]
    DuplicateRegion { name: String },
    #[error("the segmentation failed its quality check ({codes}): segment it again or remove the control")]
    QualityFailed { codes: String },
    #[error("segmented as {found}, line {first_line} as {first}: every control must be segmented the same way")]
    OtherMethod {
        found: Box<MeasuredBy>,
        first: Box<MeasuredBy>,
        first_line: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("cannot read {path}: {source}")]
    ReadCsv { path: PathBuf, source: std::io::Error },
    #[error("{csv} line {line}: {problem}")]
    Row {
        csv: PathBuf,
        line: usize,
        problem: RowProblem,
    },
    #[error("{csv} line {line}: {volumes_json}: {problem}")]
    Volumes {
        csv: PathBuf,
        line: usize,
        volumes_json: PathBuf,
        problem: VolumesProblem,
    },
    /// The estimate refused one control.
    #[error("{csv} line {line}: {source}")]
    Control {
        csv: PathBuf,
        line: usize,
        source: CalibrationError,
    },
    #[error("{0}")]
    Calibration(CalibrationError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What `neurovol calibrate` did: the calibration written and what was left out.
#[derive(Debug)]
pub struct Calibrated {
    pub calibration: Calibration,
    /// Region volumes left out of their control for a quality flag.
    pub flagged_left_out: usize,
    pub out: PathBuf,
}

pub fn run(args: &CalibrateArgs) -> Result<Calibrated, CalibrateError> {
    let text = std::fs::read_to_string(&args.controls).map_err(|source| CalibrateError::ReadCsv {
        path: args.controls.clone(),
        source,
    })?;
    let rows = parse_controls_csv(&text, &args.controls)?;
    let mut controls = Vec::with_capacity(rows.len());
    let mut flagged_left_out = 0;
    let mut measured_by: Option<(MeasuredBy, usize)> = None;
    for row in &rows {
        let volumes_error = |problem| CalibrateError::Volumes {
            csv: args.controls.clone(),
            line: row.line,
            volumes_json: row.volumes_json.clone(),
            problem,
        };
        let json = std::fs::read_to_string(&row.volumes_json).map_err(|e| volumes_error(VolumesProblem::Read(e)))?;
        let vj: VolumesJson = serde_json::from_str(&json).map_err(|e| volumes_error(VolumesProblem::Parse(e)))?;
        let method = MeasuredBy {
            model: vj.model.clone(),
            labelling: vj.labelling.as_str().to_string(),
        };
        match &measured_by {
            None => measured_by = Some((method, row.line)),
            Some((first, first_line)) if *first != method => {
                return Err(volumes_error(VolumesProblem::OtherMethod {
                    found: Box::new(method),
                    first: Box::new(first.clone()),
                    first_line: *first_line,
                }));
            }
            Some(_) => {}
        }
        let (volumes, left_out) = control_volumes(&vj).map_err(volumes_error)?;
        flagged_left_out += left_out;
        controls.push(Control {
            age: row.age,
            sex: row.sex,
            volumes,
        });
    }
    let Some((measured_by, _)) = measured_by else {
        return Err(CalibrateError::Calibration(CalibrationError::TooFewControls {
            n: 0,
            min: MIN_CONTROLS,
        }));
    };
    let calibration =
        Calibration::estimate(Norms::embedded(), &controls, &args.label, measured_by).map_err(|source| match source
            .control()
            .and_then(|i| rows.get(i))
        {
            Some(row) => CalibrateError::Control {
                csv: args.controls.clone(),
                line: row.line,
                source,
            },
            None => CalibrateError::Calibration(source),
        })?;
    write_atomically(&args.out, calibration.to_json_pretty().as_bytes()).map_err(|source| CalibrateError::Write {
        path: args.out.clone(),
        source,
    })?;
    Ok(Calibrated {
        calibration,
        flagged_left_out,
        out: args.out.clone(),
    })
}

impl Calibrated {
    /// The table printed on success: one row per calibrated region, then what was skipped.
    pub fn table(&self) -> String {
        let c = &self.calibration;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "calibration {:?}: {} controls aged {:.1}–{:.1} years, written to {}",
            c.label,
            c.n_controls,
            c.age_range[0],
            c.age_range[1],
            self.out.display()
        );
        let _ = writeln!(
            s,
            "{:<32} {:>4} {:>11} {:>12} {:>8} {:>14}",
            "region", "n", "offset (w)", "offset (SD)", "SE (w)", "scatter/model"
        );
        for (name, r) in &c.regions {
            let _ = writeln!(
                s,
                "{:<32} {:>4} {:>11.4} {:>+12.2} {:>8.4} {:>14.2}",
                name,
                r.n,
                r.offset_w,
                r.offset_sd(),
                r.se_w,
                r.resid_sd_w / r.model_sd_w
            );
        }
        if !c.skipped.is_empty() {
            let list: Vec<String> = c.skipped.iter().map(|k| format!("{} ({})", k.region, k.n)).collect();
            let _ = writeln!(
                s,
                "skipped, fewer than {MIN_CONTROLS} controls (training-site average kept): {}",
                list.join(", ")
            );
        }
        if self.flagged_left_out > 0 {
            let _ = writeln!(
                s,
                "{} region volume(s) left out of their control for a quality flag",
                self.flagged_left_out
            );
        }
        if c.n_controls < RECOMMENDED_CONTROLS {
            let _ = writeln!(
                s,
                "note: with {} controls an offset is uncertain by about {:.2} normative SD (its SE); \
                 {RECOMMENDED_CONTROLS} or more bring that to {:.2}",
                c.n_controls,
                (c.n_controls as f64).sqrt().recip(),
                (RECOMMENDED_CONTROLS as f64).sqrt().recip()
            );
        }
        s
    }
}

/// A control's volumes by region name: every region of `volumes.json` not flagged by its
/// quality check, plus `icv_mm3`; and how many were left out for a flag. A global quality
/// failure refuses the control.
fn control_volumes(vj: &VolumesJson) -> Result<(BTreeMap<String, f64>, usize), VolumesProblem> {
    let flags = vj.quality_flags();
    // grade C (a flag about the whole segmentation) refuses the control
    let global: Vec<&str> = flags
        .iter()
        .map(|f| f.code.as_str())
        .filter(|c| volumetry::WHOLE_SEGMENTATION_FLAGS.contains(c))
        .collect();
    if !global.is_empty() {
        return Err(VolumesProblem::QualityFailed {
            codes: global.join(", "),
        });
    }
    let flagged = |name: &str| flags.iter().any(|f| f.concerns(name));
    let mut volumes = BTreeMap::new();
    let mut left_out = 0;
    for r in &vj.regions {
        if flagged(&r.name) {
            left_out += 1;
            continue;
        }
        if volumes.insert(r.name.clone(), r.volume_mm3).is_some() {
            return Err(VolumesProblem::DuplicateRegion { name: r.name.clone() });
        }
    }
    if let Some(icv) = vj.icv_mm3
        && volumes.insert(ICV_REGION.to_string(), icv).is_some()
    {
        return Err(VolumesProblem::DuplicateRegion {
            name: ICV_REGION.to_string(),
        });
    }
    Ok((volumes, left_out))
}

/// Parses `controls.csv` (its text and its path, for relative `volumes_json` paths and
/// messages). Does no I/O.
pub fn parse_controls_csv(text: &str, csv: &Path) -> Result<Vec<ControlRow>, CalibrateError> {
    let base = csv.parent().unwrap_or(Path::new(""));
    let row_error = |line, problem| CalibrateError::Row {
        csv: csv.to_path_buf(),
        line,
        problem,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Err(row_error(1, RowProblem::Header { found: String::new() }));
    };
    let names = split_fields(header).map_err(|p| row_error(header_line, p))?;
    let names: Vec<String> = names.iter().map(|n| n.trim().to_ascii_lowercase()).collect();
    let column = |want: &str| names.iter().position(|n| n == want);
    let (Some(path_col), Some(age_col), Some(sex_col), 3) =
        (column("volumes_json"), column("age"), column("sex"), names.len())
    else {
        return Err(row_error(
            header_line,
            RowProblem::Header {
                found: header.to_string(),
            },
        ));
    };

    let mut rows: Vec<ControlRow> = Vec::new();
    for (line, text) in lines {
        let fields = split_fields(text).map_err(|p| row_error(line, p))?;
        if fields.len() != names.len() {
            return Err(row_error(
                line,
                RowProblem::FieldCount {
                    expected: names.len(),
                    found: fields.len(),
                },
            ));
        }
        let path = fields[path_col].trim();
        if path.is_empty() {
            return Err(row_error(line, RowProblem::EmptyPath));
        }
        let volumes_json = base.join(path);
        let age_text = fields[age_col].trim();
        let age = age_text.parse::<f64>().ok().filter(|a| a.is_finite()).ok_or_else(|| {
            row_error(
                line,
                RowProblem::Age {
                    value: age_text.to_string(),
                },
            )
        })?;
        let sex = Sex::from_code(&fields[sex_col]).ok_or_else(|| {
            row_error(
                line,
                RowProblem::Sex {
                    value: fields[sex_col].trim().to_string(),
                },
            )
        })?;
        if let Some(first) = rows.iter().find(|r| r.volumes_json == volumes_json) {
            return Err(row_error(line, RowProblem::Duplicate { first_line: first.line }));
        }
        rows.push(ControlRow {
            line,
            volumes_json,
            age,
            sex,
        });
    }
    Ok(rows)
}

/// Splits one CSV line into fields: commas separate, a field may be double-quoted (`""` is a
/// quote inside it).
fn split_fields(line: &str) -> Result<Vec<String>, RowProblem> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(RowProblem::UnclosedQuote);
    }
    fields.push(field);
    Ok(fields)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place: a reader
/// never sees a partial file, and a failure leaves nothing behind.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".neurovol-calibration-{}.partial", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ControlRow>, CalibrateError> {
        parse_controls_csv(text, Path::new("/data/site-a/controls.csv"))
    }

    fn problem(text: &str) -> (usize, RowProblem) {
        match parse(text) {
            Err(CalibrateError::Row { line, problem, .. }) => (line, problem),
            other => panic!("expected a row error, got {other:?}"),
        }
    }

    #[test]
    fn rows_resolve_paths_against_the_csv_folder() {
        let rows = parse(
            "\u{feff}volumes_json,age,sex\r\n\
             sub-01/volumes.json,34,F\r\n\
             \r\n\
             # a comment\n\
             /scans/sub-02/volumes.json, 61.5 , m\n\
             \"odd, name/volumes.json\",45,M\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                ControlRow {
                    line: 2,
                    volumes_json: PathBuf::from("/data/site-a/sub-01/volumes.json"),
                    age: 34.0,
                    sex: Sex::Female,
                },
                ControlRow {
                    line: 5,
                    volumes_json: PathBuf::from("/scans/sub-02/volumes.json"),
                    age: 61.5,
                    sex: Sex::Male,
                },
                ControlRow {
                    line: 6,
                    volumes_json: PathBuf::from("/data/site-a/odd, name/volumes.json"),
                    age: 45.0,
                    sex: Sex::Male,
                },
            ]
        );
    }

    #[test]
    fn columns_in_any_order_and_a_csv_in_the_current_folder() {
        let rows = parse_controls_csv("Sex,Age,Volumes_JSON\nF,40,a.json\n", Path::new("controls.csv")).unwrap();
        assert_eq!(rows[0].volumes_json, PathBuf::from("a.json"));
        assert_eq!((rows[0].age, rows[0].sex), (40.0, Sex::Female));
    }

    #[test]
    fn bad_rows_name_their_line() {
        assert!(matches!(problem(""), (1, RowProblem::Header { .. })));
        assert!(matches!(problem("path,age,sex\n"), (1, RowProblem::Header { .. })));
        assert!(matches!(
            problem("volumes_json,age,sex,subject\n"),
            (1, RowProblem::Header { .. })
        ));
        assert_eq!(
            problem("volumes_json,age,sex\na.json,40\n"),
            (2, RowProblem::FieldCount { expected: 3, found: 2 })
        );
        assert_eq!(
            problem("volumes_json,age,sex\na.json,40,F\nb.json,forty,F\n"),
            (3, RowProblem::Age { value: "forty".into() })
        );
        assert_eq!(
            problem("volumes_json,age,sex\na.json,NaN,F\n"),
            (2, RowProblem::Age { value: "NaN".into() })
        );
        assert_eq!(
            problem("volumes_json,age,sex\na.json,40,O\n"),
            (2, RowProblem::Sex { value: "O".into() })
        );
        assert_eq!(problem("volumes_json,age,sex\n  ,40,F\n"), (2, RowProblem::EmptyPath));
        assert_eq!(
            problem("volumes_json,age,sex\n\"a.json,40,F\n"),
            (2, RowProblem::UnclosedQuote)
        );
        assert_eq!(
            problem("volumes_json,age,sex\na.json,40,F\n# note\n./a.json,41,F\n"),
            (4, RowProblem::Duplicate { first_line: 2 })
        );
        let err = parse("volumes_json,age,sex\na.json,40,X\n").unwrap_err().to_string();
        assert_eq!(err, "/data/site-a/controls.csv line 2: sex \"X\" is neither M nor F");
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(
            split_fields(r#"a,"b,c","d""e",,"#).unwrap(),
            ["a", "b,c", "d\"e", "", ""]
        );
        assert_eq!(split_fields(r#" "x" ,y"#).unwrap(), ["x ", "y"]);
    }

    /// A `volumes.json` for a control at the model's mean plus `z` SD in every region.
    fn volumes_json(age: f64, sex: Sex, z: f64, flags: serde_json::Value) -> String {
        volumes_json_labelled(age, sex, z, flags, "refined")
    }

    fn volumes_json_labelled(age: f64, sex: Sex, z: f64, flags: serde_json::Value, labelling: &str) -> String {
        let norms = Norms::embedded();
        let mut regions = Vec::new();
        for (label, (name, model)) in norms::REGION_MAP.iter().enumerate() {
            let volume = match model {
                Some(_) if *name != ICV_REGION => {
                    let p = norms.predict(name, sex, age, &norms::Site::TrainingAverage).unwrap();
                    norms.model(name).unwrap().unwarp(p.mu_w + z * p.sigma_w)
                }
                Some(_) => continue,
                None => 250_000.0,
            };
            regions
                .push(serde_json::json!({"label": label + 1, "name": name, "volume_mm3": volume, "percentile": null}));
        }
        let p = norms
            .predict(ICV_REGION, sex, age, &norms::Site::TrainingAverage)
            .unwrap();
        let icv = norms.model(ICV_REGION).unwrap().unwarp(p.mu_w + z * p.sigma_w);
        serde_json::json!({
            "model": "model21_104class",
            "labelling": labelling,
            "grid": "conformed_1mm",
            "icv_mm3": icv,
            "regions": regions,
            "quality": {"mask_fraction_labelled": null, "labelled_fraction_in_mask": null, "flags": flags, "ok": true},
        })
        .to_string()
    }

    #[test]
    fn run_writes_the_file_only_on_success() {
        let dir = std::env::temp_dir().join(format!("nv-calibrate-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scans")).unwrap();
        let mut csv = String::from("volumes_json,age,sex\n");
        for i in 0..24 {
            let (age, sex) = (25.0 + 2.0 * i as f64, if i % 2 == 0 { Sex::Female } else { Sex::Male });
            // a site 0.3 SD above the reference, scattered ±1 SD
            let z = 0.3 + if i % 2 == 0 { 1.0 } else { -1.0 } * ((i / 2) % 2) as f64;
            let flags = if i == 5 {
                serde_json::json!([{"code": "fragmented", "region": "Left-Hippocampus", "message": "m"}])
            } else {
                serde_json::json!([])
            };
            std::fs::write(dir.join(format!("scans/c{i}.json")), volumes_json(age, sex, z, flags)).unwrap();
            csv.push_str(&format!("scans/c{i}.json,{age},{}\n", sex.code()));
        }
        std::fs::write(dir.join("controls.csv"), &csv).unwrap();
        let args = CalibrateArgs {
            controls: dir.join("controls.csv"),
            label: "Site A, 3T MPRAGE".into(),
            out: dir.join("calibration.json"),
        };
        let done = run(&args).unwrap();
        let cal = Calibration::from_json(&std::fs::read_to_string(&args.out).unwrap()).unwrap();
        assert_eq!(cal.n_controls, 24);
        assert_eq!(cal.measured_by.to_string(), "model21_104class, refined labels");
        assert_eq!(done.flagged_left_out, 1);
        assert_eq!(cal.regions["Left-Hippocampus"].n, 23);
        assert_eq!(cal.regions["Right-Hippocampus"].n, 24);
        assert!(cal.regions.contains_key("EstimatedTotalIntraCranialVol"));
        let off = cal.regions["Left-Thalamus-Proper"].offset_sd();
        assert!((off - 0.3).abs() < 0.1, "{off}");
        let table = done.table();
        assert!(table.contains("Left-Thalamus-Proper"), "{table}");
        assert!(table.contains("24 controls"), "{table}");
        assert!(table.contains("left out of their control"), "{table}");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "no temporary file left: {names:?}");

        // a control outside the reference's ages: refused, naming its line; nothing written
        std::fs::remove_file(&args.out).unwrap();
        std::fs::write(
            dir.join("controls.csv"),
            csv.replace("scans/c3.json,31,M", "scans/c3.json,101,M"),
        )
        .unwrap();
        let err = run(&args).unwrap_err();
        assert!(
            matches!(
                &err,
                CalibrateError::Control {
                    line: 5,
                    source: CalibrationError::AgeOutOfRange { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!args.out.exists());

        // a failed segmentation: refused, naming its line
        std::fs::write(dir.join("controls.csv"), &csv).unwrap();
        std::fs::write(
            dir.join("scans/c7.json"),
            volumes_json(
                39.0,
                Sex::Male,
                0.0,
                serde_json::json!([{"code": "too_little_labelled", "region": null, "message": "m"}]),
            ),
        )
        .unwrap();
        let err = run(&args).unwrap_err();
        assert!(
            matches!(&err, CalibrateError::Volumes { line: 9, problem: VolumesProblem::QualityFailed { codes }, .. } if codes == "too_little_labelled"),
            "{err}"
        );
        assert!(!args.out.exists());

        // a control segmented another way: refused, naming both lines
        std::fs::write(
            dir.join("scans/c7.json"),
            volumes_json_labelled(39.0, Sex::Male, 0.0, serde_json::json!([]), "upstream"),
        )
        .unwrap();
        let err = run(&args).unwrap_err();
        assert!(
            matches!(
                &err,
                CalibrateError::Volumes {
                    line: 9,
                    problem: VolumesProblem::OtherMethod { first_line: 2, .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("segmented as model21_104class, upstream labels, line 2 as model21_104class, refined labels"),
            "{err}"
        );
        assert!(!args.out.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
