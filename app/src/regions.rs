//! How a region is shown to a person: its name in words ("Hippocampus — left") and its
//! group (subcortical, ventricles, cerebellum, brain stem, white matter, each hemisphere's
//! cortex). Region names are FreeSurfer's, as the models' colour maps write them.

/// The groups of the scan page, in the order it shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegionGroup {
    /// FreeSurfer's sums over the brain (total grey matter, the supratentorial volume).
    WholeBrain,
    Subcortical,
    Ventricles,
    Cerebellum,
    BrainStem,
    WhiteMatter,
    CortexLeft,
    CortexRight,
    Other,
}

impl RegionGroup {
    pub const ALL: [RegionGroup; 9] = [
        RegionGroup::WholeBrain,
        RegionGroup::Subcortical,
        RegionGroup::Ventricles,
        RegionGroup::Cerebellum,
        RegionGroup::BrainStem,
        RegionGroup::WhiteMatter,
        RegionGroup::CortexLeft,
        RegionGroup::CortexRight,
        RegionGroup::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RegionGroup::WholeBrain => "whole_brain",
            RegionGroup::Subcortical => "subcortical",
            RegionGroup::Ventricles => "ventricles",
            RegionGroup::Cerebellum => "cerebellum",
            RegionGroup::BrainStem => "brain_stem",
            RegionGroup::WhiteMatter => "white_matter",
            RegionGroup::CortexLeft => "cortex_left",
            RegionGroup::CortexRight => "cortex_right",
            RegionGroup::Other => "other",
        }
    }

    pub const fn title(self) -> &'static str {
        match self {
            RegionGroup::WholeBrain => "Whole brain",
            RegionGroup::Subcortical => "Deep grey matter",
            RegionGroup::Ventricles => "Ventricles and fluid",
            RegionGroup::Cerebellum => "Cerebellum",
            RegionGroup::BrainStem => "Brain stem",
            RegionGroup::WhiteMatter => "White matter",
            RegionGroup::CortexLeft => "Cortex — left hemisphere",
            RegionGroup::CortexRight => "Cortex — right hemisphere",
            RegionGroup::Other => "Other structures",
        }
    }

    /// Cortical parcels are many: the page folds them under their hemisphere.
    pub const fn folded(self) -> bool {
        matches!(self, RegionGroup::CortexLeft | RegionGroup::CortexRight)
    }
}

/// A region as a person reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionName {
    pub group: RegionGroup,
    /// "Hippocampus — left".
    pub text: String,
}

/// The Desikan–Killiany parcels (FreeSurfer `aparc`), in words.
const PARCELS: &[(&str, &str)] = &[
    ("bankssts", "Banks of the superior temporal sulcus"),
    ("caudalanteriorcingulate", "Caudal anterior cingulate"),
    ("caudalmiddlefrontal", "Caudal middle frontal"),
    ("cuneus", "Cuneus"),
    ("entorhinal", "Entorhinal"),
    ("fusiform", "Fusiform"),
    ("inferiorparietal", "Inferior parietal"),
    ("inferiortemporal", "Inferior temporal"),
    ("isthmuscingulate", "Isthmus of the cingulate"),
    ("lateraloccipital", "Lateral occipital"),
    ("lateralorbitofrontal", "Lateral orbitofrontal"),
    ("lingual", "Lingual"),
    ("medialorbitofrontal", "Medial orbitofrontal"),
    ("middletemporal", "Middle temporal"),
    ("parahippocampal", "Parahippocampal"),
    ("paracentral", "Paracentral"),
    ("parsopercularis", "Pars opercularis"),
    ("parsorbitalis", "Pars orbitalis"),
    ("parstriangularis", "Pars triangularis"),
    ("pericalcarine", "Pericalcarine"),
    ("postcentral", "Postcentral"),
    ("posteriorcingulate", "Posterior cingulate"),
    ("precentral", "Precentral"),
    ("precuneus", "Precuneus"),
    ("rostralanteriorcingulate", "Rostral anterior cingulate"),
    ("rostralmiddlefrontal", "Rostral middle frontal"),
    ("superiorfrontal", "Superior frontal"),
    ("superiorparietal", "Superior parietal"),
    ("superiortemporal", "Superior temporal"),
    ("supramarginal", "Supramarginal"),
    ("frontalpole", "Frontal pole"),
    ("temporalpole", "Temporal pole"),
    ("transversetemporal", "Transverse temporal"),
    ("insula", "Insula"),
    // `Left-` / `Right-Cerebral-Cortex`: the hemisphere's cortex as one region
    ("Cerebral-Cortex", "Cerebral cortex, all of it"),
];

/// Lateralised structures (after `Left-` / `Right-`): words and group.
const SIDED: &[(&str, &str, RegionGroup)] = &[
    ("Thalamus", "Thalamus", RegionGroup::Subcortical),
    ("Thalamus-Proper", "Thalamus", RegionGroup::Subcortical),
    ("Caudate", "Caudate", RegionGroup::Subcortical),
    ("Putamen", "Putamen", RegionGroup::Subcortical),
    ("Pallidum", "Pallidum", RegionGroup::Subcortical),
    ("Hippocampus", "Hippocampus", RegionGroup::Subcortical),
    ("Amygdala", "Amygdala", RegionGroup::Subcortical),
    ("Accumbens-area", "Nucleus accumbens", RegionGroup::Subcortical),
    ("VentralDC", "Ventral diencephalon", RegionGroup::Subcortical),
    ("Lateral-Ventricle", "Lateral ventricle", RegionGroup::Ventricles),
    (
        "Inf-Lat-Vent",
        "Inferior horn of the lateral ventricle",
        RegionGroup::Ventricles,
    ),
    ("Cerebellum-Cortex", "Cerebellar cortex", RegionGroup::Cerebellum),
    (
        "Cerebellum-White-Matter",
        "Cerebellar white matter",
        RegionGroup::Cerebellum,
    ),
    (
        "Cerebral-White-Matter",
        "Cerebral white matter",
        RegionGroup::WhiteMatter,
    ),
    ("choroid-plexus", "Choroid plexus", RegionGroup::Ventricles),
    ("vessel", "Vessel", RegionGroup::Other),
];

/// Structures without a side.
const MIDLINE: &[(&str, &str, RegionGroup)] = &[
    ("3rd-Ventricle", "Third ventricle", RegionGroup::Ventricles),
    ("4th-Ventricle", "Fourth ventricle", RegionGroup::Ventricles),
    ("5th-Ventricle", "Fifth ventricle", RegionGroup::Ventricles),
    (
        "CSF",
        "Cerebrospinal fluid (outside the ventricles)",
        RegionGroup::Ventricles,
    ),
    ("Brain-Stem", "Brain stem", RegionGroup::BrainStem),
    // FreeSurfer's sums of labels (volumetry's composites), named short enough for one line
    // of the printed report: all grey = cerebral and cerebellar cortex and deep grey matter;
    // cerebrum = cortex, white matter and deep grey matter; with ventricles = and the lateral
    // ventricles
    ("SubCortGrayVol", "All deep grey matter", RegionGroup::Subcortical),
    ("TotalGrayVol", "All grey matter", RegionGroup::WholeBrain),
    ("SupraTentorialVolNotVent", "Cerebrum", RegionGroup::WholeBrain),
    ("SupraTentorialVol", "Cerebrum with ventricles", RegionGroup::WholeBrain),
    (
        "WM-hypointensities",
        "White-matter hypointensities",
        RegionGroup::WhiteMatter,
    ),
    ("CC_Posterior", "Corpus callosum — posterior", RegionGroup::WhiteMatter),
    (
        "CC_Mid_Posterior",
        "Corpus callosum — mid-posterior",
        RegionGroup::WhiteMatter,
    ),
    ("CC_Central", "Corpus callosum — central", RegionGroup::WhiteMatter),
    (
        "CC_Mid_Anterior",
        "Corpus callosum — mid-anterior",
        RegionGroup::WhiteMatter,
    ),
    ("CC_Anterior", "Corpus callosum — anterior", RegionGroup::WhiteMatter),
    ("Optic-Chiasm", "Optic chiasm", RegionGroup::Other),
];

/// The name in words and the group of a FreeSurfer region name; an unknown name keeps its
/// own spelling (dashes as spaces) in [`RegionGroup::Other`].
pub fn describe(name: &str) -> RegionName {
    let sided = |rest: &str, side: &str, cortex: RegionGroup| -> Option<RegionName> {
        if let Some((_, words)) = PARCELS.iter().find(|(key, _)| *key == rest) {
            return Some(RegionName {
                group: cortex,
                text: format!("{words} — {side}"),
            });
        }
        SIDED
            .iter()
            .find(|(key, ..)| *key == rest)
            .map(|(_, words, group)| RegionName {
                group: *group,
                text: format!("{words} — {side}"),
            })
    };
    let found = if let Some(rest) = name.strip_prefix("ctx-lh-") {
        sided(rest, "left", RegionGroup::CortexLeft)
    } else if let Some(rest) = name.strip_prefix("ctx-rh-") {
        sided(rest, "right", RegionGroup::CortexRight)
    } else if let Some(rest) = name.strip_prefix("Left-") {
        sided(rest, "left", RegionGroup::CortexLeft)
    } else if let Some(rest) = name.strip_prefix("Right-") {
        sided(rest, "right", RegionGroup::CortexRight)
    } else {
        MIDLINE
            .iter()
            .find(|(key, ..)| *key == name)
            .map(|(_, words, group)| RegionName {
                group: *group,
                text: (*words).to_string(),
            })
    };
    found.unwrap_or_else(|| RegionName {
        group: RegionGroup::Other,
        text: name.replace(['-', '_'], " "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_as_words_in_their_groups() {
        let d = describe("Left-Hippocampus");
        assert_eq!(
            (d.group, d.text.as_str()),
            (RegionGroup::Subcortical, "Hippocampus — left")
        );
        let d = describe("ctx-rh-bankssts");
        assert_eq!(
            (d.group, d.text.as_str()),
            (
                RegionGroup::CortexRight,
                "Banks of the superior temporal sulcus — right"
            )
        );
        assert_eq!(describe("Right-Thalamus-Proper").text, "Thalamus — right");
        assert_eq!(describe("Brain-Stem").group, RegionGroup::BrainStem);
        assert_eq!(describe("Right-Inf-Lat-Vent").group, RegionGroup::Ventricles);
        assert_eq!(describe("Left-Cerebellum-White-Matter").group, RegionGroup::Cerebellum);
        assert_eq!(describe("CC_Central").group, RegionGroup::WhiteMatter);
        assert_eq!(describe("Left-Cerebral-Cortex").group, RegionGroup::CortexLeft);
        assert_eq!(describe("SubCortGrayVol").group, RegionGroup::Subcortical);
        assert_eq!(describe("TotalGrayVol").group, RegionGroup::WholeBrain);
        let unknown = describe("Some-New_Label");
        assert_eq!(
            (unknown.group, unknown.text.as_str()),
            (RegionGroup::Other, "Some New Label")
        );
    }

    #[test]
    fn every_region_of_the_default_model_has_words() {
        // the 104-class model's names (brainchop's colormap, shipped with the assets)
        let assets = std::env::var("NEUROVOL_ASSETS")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared").into());
        let Ok(text) = std::fs::read_to_string(format!("{assets}/models/model21_104class/colormap.json")) else {
            assert!(
                std::env::var("NEUROVOL_REQUIRE_ASSETS").is_err(),
                "the shared assets are required (NEUROVOL_REQUIRE_ASSETS)"
            );
            return;
        };
        let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&text).unwrap()["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().trim_end_matches('*').to_string())
            .collect();
        let unnamed: Vec<&String> = names
            .iter()
            .skip(1) // background
            .filter(|n| describe(n).group == RegionGroup::Other && !n.contains("Optic") && !n.contains("vessel"))
            .collect();
        assert!(unnamed.is_empty(), "{unnamed:?}");
        let cortex = names.iter().filter(|n| describe(n).group.folded()).count();
        assert!(cortex >= 68, "{cortex} cortical regions");
    }
}
