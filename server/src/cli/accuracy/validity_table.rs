//! The accuracy figures as a validity table (`norms::validity`): one entry per model and
//! labelling, written for the product to embed, and how the shipped table's choice fares on
//! the brains just measured.

use std::collections::BTreeMap;
use std::path::Path;

use norms::Norms;
use norms::validity::{self, MethodValidity, Provenance, StructureValidity, ValidityTable};

use super::{AccuracyArgs, CaseReport, StructureRow, mean_sd};

/// One structure's validity measurements over the cases (None without a normative model).
fn structure_validity(name: &str, rows: &[&StructureRow]) -> Option<(String, StructureValidity)> {
    let model = Norms::embedded().model(name).ok()?;
    let dz: Vec<f64> = rows.iter().filter_map(|r| r.delta_z).collect();
    if dz.is_empty() {
        return None;
    }
    let (delta_z_mean, delta_z_sd) = mean_sd(&dz);
    let (ratio_mean, ratio_sd) = mean_sd(&rows.iter().map(|r| r.ratio).collect::<Vec<_>>());
    let (dice_mean, _) = mean_sd(&rows.iter().map(|r| r.dice).collect::<Vec<_>>());
    Some((
        model.name.clone(),
        StructureValidity {
            n: dz.len(),
            dice_mean,
            ratio_mean,
            ratio_sd,
            delta_z_mean,
            delta_z_sd,
        },
    ))
}

/// The figures of the structures that the shipped validity table lets keep a percentile:
/// on brains the table was not measured on, this is the test of the withholding rule.
pub(super) fn kept_by_shipped_table(
    reports: &[CaseReport],
    by_structure: &BTreeMap<String, Vec<&StructureRow>>,
) -> String {
    let Some(first) = reports.first() else {
        return String::new();
    };
    let Some(method) = ValidityTable::embedded().method(&first.model, first.labelling.as_str()) else {
        return format!(
            "the shipped validity table has no entry for {} ({} labels): every percentile withheld\n",
            first.model,
            first.labelling.as_str()
        );
    };
    let mut kept = Vec::new();
    for (name, rows) in by_structure {
        let Some((bc, measured)) = structure_validity(name, rows) else {
            continue;
        };
        if method.structure(&bc).is_some_and(|v| v.judge().is_ok()) {
            kept.push((name.as_str(), measured.delta_z_mean));
        }
    }
    let mean = kept.iter().map(|(_, dz)| dz.abs()).sum::<f64>() / (kept.len().max(1) as f64);
    let worst = kept
        .iter()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map_or("—".to_string(), |(n, dz)| format!("{n} {dz:+.2}"));
    format!(
        "shipped validity table ({}): {} structures keep a percentile; over them here mean |Δz| {mean:.2}, largest |mean Δz| {worst}\n",
        method.provenance.summary(),
        kept.len()
    )
}

/// Writes this model and labelling's entry of a validity table, keeping the file's others.
pub(super) fn write_validity(
    path: &Path,
    args: &AccuracyArgs,
    reports: &[CaseReport],
    by_structure: &BTreeMap<String, Vec<&StructureRow>>,
) -> Result<(), String> {
    let first = reports.first().ok_or("no cases")?;
    let mut table = match std::fs::read_to_string(path) {
        Ok(text) => ValidityTable::from_json(&text)?,
        Err(_) => ValidityTable {
            format: validity::FORMAT.to_string(),
            methods: Vec::new(),
        },
    };
    let labelling = first.labelling.as_str().to_string();
    let entry = MethodValidity {
        model: first.model.clone(),
        labelling: labelling.clone(),
        provenance: Provenance {
            comparison: "Δz of `neurovol accuracy` (partial-volume-corrected volumes) against FreeSurfer's aseg.stats \
                         Volume_mm3"
                .to_string(),
            data: args.source.clone(),
            cases: args.cases.clone(),
            command: format!(
                "neurovol accuracy --cases {} --model {}{} --age {} --sex {} --source … --validity-out …",
                args.cases.join(","),
                first.model,
                if args.upstream { " --upstream" } else { "" },
                args.age,
                args.sex
            ),
            neurovol_version: env!("CARGO_PKG_VERSION").to_string(),
            age: args.age,
            sex: args.sex.clone(),
        },
        structures: by_structure
            .iter()
            .filter_map(|(name, rows)| structure_validity(name, rows))
            .collect(),
    };
    table
        .methods
        .retain(|m| !(m.model == entry.model && m.labelling == labelling));
    table.methods.push(entry);
    table
        .methods
        .sort_by(|a, b| (&a.model, &a.labelling).cmp(&(&b.model, &b.labelling)));
    let json = serde_json::to_string_pretty(&table).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
