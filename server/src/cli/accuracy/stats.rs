//! FreeSurfer's `aseg.stats`: the per-label volumes the normative reference was fitted to,
//! and its whole-brain `# Measure` lines.

use std::collections::BTreeMap;

/// One row of `aseg.stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRow {
    pub seg_id: u32,
    pub voxels: f64,
    pub volume_mm3: f64,
    pub name: String,
}

/// `aseg.stats`: its rows and its `# Measure` lines (by short name: `eTIV`, `MaskVol`, …).
pub fn parse_stats(text: &str) -> (Vec<StatsRow>, BTreeMap<String, f64>) {
    let mut rows = Vec::new();
    let mut measures = BTreeMap::new();
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("# Measure ") {
            let parts: Vec<&str> = m.split(',').map(str::trim).collect();
            if let (Some(short), Some(value)) = (parts.get(1), parts.get(3).and_then(|v| v.parse().ok())) {
                measures.insert(short.to_string(), value);
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, id, voxels, volume, name, ..] = f[..]
            && let (Ok(seg_id), Ok(voxels), Ok(volume_mm3)) = (id.parse(), voxels.parse(), volume.parse())
        {
            rows.push(StatsRow {
                seg_id,
                voxels,
                volume_mm3,
                name: name.to_string(),
            });
        }
    }
    (rows, measures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_aseg_stats_rows_and_measures() {
        let text = "# Measure Mask, MaskVol, Mask Volume, 1688076.000000, mm^3\n\
                    # Measure EstimatedTotalIntraCranialVol, eTIV, Estimated Total Intracranial Volume, 1516267.932629, mm^3\n\
                    # ColHeaders  Index SegId NVoxels Volume_mm3 StructName normMean\n  \
                    1   4      3129     3430.2  Left-Lateral-Ventricle            43.2547\n \
                    12  17      4685     4531.2  Left-Hippocampus                  72.2322\n";
        let (rows, measures) = parse_stats(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[1],
            StatsRow {
                seg_id: 17,
                voxels: 4685.0,
                volume_mm3: 4531.2,
                name: "Left-Hippocampus".into()
            }
        );
        assert_eq!(measures["eTIV"], 1516267.932629);
        assert_eq!(measures["MaskVol"], 1688076.0);
    }
}
