//! Volumes FreeSurfer reports as sums of its labels (the `# Measure` lines of `aseg.stats`),
//! which the normative reference models as regions of their own.
//!
//! FreeSurfer's measures are voxel counts, or for the cortex and white matter volumes inside
//! its surfaces (within 0.3 % of its own labels' voxel counts on the development brains), never
//! partial-volume corrected: a composite is the sum of its parts' voxel counts. A composite is
//! reported only where the model draws every part: a sum with a part missing would read as
//! atrophy.

use crate::volumes::{RegionVolume, side_of};

/// One sum of labels.
#[derive(Debug, PartialEq, Eq)]
pub struct Composite {
    /// FreeSurfer's (and braincharts') name of the measure.
    pub name: &'static str,
    /// Structures summed on both sides (names after `Left-` / `Right-`).
    pub sided: &'static [&'static [&'static str]],
    /// Structures without a side.
    pub midline: &'static [&'static str],
    /// Whether the cerebral cortex is summed: every parcel (`ctx-lh-*`, `ctx-rh-*`) or each
    /// hemisphere's cortex as one label.
    pub cortex: bool,
}

/// FreeSurfer's subcortical grey structures (it also counts the substantia nigra, which its
/// aseg never labels).
const DEEP_GREY: &[&str] = &[
    "Thalamus",
    "Caudate",
    "Putamen",
    "Pallidum",
    "Hippocampus",
    "Amygdala",
    "Accumbens-area",
    "VentralDC",
];
const CEREBRAL_WHITE_MATTER: &[&str] = &["Cerebral-White-Matter"];
const CORPUS_CALLOSUM: &[&str] = &[
    "CC_Posterior",
    "CC_Mid_Posterior",
    "CC_Central",
    "CC_Mid_Anterior",
    "CC_Anterior",
];

/// `SubCortGrayVol`: the deep grey matter of both hemispheres.
pub const SUBCORTICAL_GREY: Composite = Composite {
    name: "SubCortGrayVol",
    sided: &[DEEP_GREY],
    midline: &[],
    cortex: false,
};

/// `TotalGrayVol`: the cerebral cortex, the deep grey matter and the cerebellar cortex.
pub const TOTAL_GREY: Composite = Composite {
    name: "TotalGrayVol",
    sided: &[DEEP_GREY, &["Cerebellum-Cortex"]],
    midline: &[],
    cortex: true,
};

/// `SupraTentorialVolNotVent`: the cerebrum above the tentorium (cortex, white matter, corpus
/// callosum, deep grey matter), without the ventricles.
pub const SUPRATENTORIAL_NOT_VENTRICLES: Composite = Composite {
    name: "SupraTentorialVolNotVent",
    sided: &[DEEP_GREY, CEREBRAL_WHITE_MATTER],
    midline: CORPUS_CALLOSUM,
    cortex: true,
};

/// `SupraTentorialVol`: the same with the lateral ventricles (FreeSurfer adds the choroid
/// plexus, which the models do not draw: about 0.2 % of the sum).
pub const SUPRATENTORIAL: Composite = Composite {
    name: "SupraTentorialVol",
    sided: &[DEEP_GREY, CEREBRAL_WHITE_MATTER, &["Lateral-Ventricle", "Inf-Lat-Vent"]],
    midline: CORPUS_CALLOSUM,
    cortex: true,
};

/// Every composite a segmentation reports.
pub const COMPOSITES: &[Composite] = &[
    SUBCORTICAL_GREY,
    TOTAL_GREY,
    SUPRATENTORIAL_NOT_VENTRICLES,
    SUPRATENTORIAL,
];

/// A composite's volume in one segmentation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompositeVolume {
    pub name: String,
    /// The parts' voxel counts × voxel volume, summed.
    pub volume_mm3: f64,
}

impl Composite {
    /// The composite of this name.
    pub fn named(name: &str) -> Option<&'static Composite> {
        COMPOSITES.iter().find(|c| c.name == name)
    }

    /// Whether a structure as a flag names it, without its side (`Putamen`,
    /// `Thalamus-Proper`, `ctx-cuneus`), is summed here.
    pub fn sums_structure(&self, structure: &str) -> bool {
        // FreeSurfer 6 and the 104-class model say "Thalamus-Proper", FreeSurfer 7 "Thalamus"
        let structure = structure.strip_suffix("-Proper").unwrap_or(structure);
        (self.cortex && (structure.starts_with("ctx-") || structure == "Cerebral-Cortex"))
            || self.sided.iter().any(|list| list.contains(&structure))
    }

    /// Whether a region (`Left-Putamen`, `ctx-lh-insula`, `CC_Central`) is one of the parts.
    pub fn includes(&self, region: &str) -> bool {
        self.midline.contains(&region) || side_of(region).is_some_and(|(_, s)| self.sums_structure(&s))
    }

    /// Whether the model draws every part (the cortex: on each side).
    fn drawn(&self, regions: &[RegionVolume]) -> bool {
        let has = |name: &str| {
            regions
                .iter()
                .any(|r| r.name == name || r.name.strip_suffix("-Proper") == Some(name))
        };
        let sided = self
            .sided
            .iter()
            .flat_map(|list| list.iter())
            .all(|s| has(&format!("Left-{s}")) && has(&format!("Right-{s}")));
        let cortex = !self.cortex
            || [('L', "ctx-lh-"), ('R', "ctx-rh-")].iter().all(|(side, parcel)| {
                regions.iter().any(|r| {
                    r.name.starts_with(parcel) || side_of(&r.name) == Some((*side, "Cerebral-Cortex".to_string()))
                })
            });
        sided && cortex && self.midline.iter().all(|m| has(m))
    }

    /// The composite's volume from a segmentation's regions; None unless every part is
    /// drawn by the model.
    pub fn volume(&self, regions: &[RegionVolume]) -> Option<CompositeVolume> {
        self.drawn(regions).then(|| CompositeVolume {
            name: self.name.to_string(),
            volume_mm3: regions
                .iter()
                .filter(|r| self.includes(&r.name))
                .map(|r| r.counted_mm3)
                .sum(),
        })
    }
}

/// Every composite the regions allow.
pub fn composite_volumes(regions: &[RegionVolume]) -> Vec<CompositeVolume> {
    COMPOSITES.iter().filter_map(|c| c.volume(regions)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str, counted_mm3: f64) -> RegionVolume {
        RegionVolume {
            label: 1,
            name: name.into(),
            voxels: counted_mm3 as u64,
            volume_mm3: counted_mm3 * 0.9,
            counted_mm3,
            largest_component_fraction: 1.0,
        }
    }

    /// Every part of every composite, 1000 mm³ each, and a 4th ventricle (in none).
    fn whole_brain() -> Vec<RegionVolume> {
        let mut regions = vec![region("4th-Ventricle", 1_000.0)];
        for side in ["Left", "Right"] {
            for s in DEEP_GREY.iter().chain(CEREBRAL_WHITE_MATTER).chain(&[
                "Cerebellum-Cortex",
                "Lateral-Ventricle",
                "Inf-Lat-Vent",
            ]) {
                let s = if *s == "Thalamus" { "Thalamus-Proper" } else { s };
                regions.push(region(&format!("{side}-{s}"), 1_000.0));
            }
        }
        for parcel in ["ctx-lh-insula", "ctx-lh-cuneus", "ctx-rh-insula"] {
            regions.push(region(parcel, 1_000.0));
        }
        for cc in CORPUS_CALLOSUM {
            regions.push(region(cc, 1_000.0));
        }
        regions
    }

    #[test]
    fn each_composite_sums_the_voxel_counts_of_its_parts() {
        let volumes: Vec<(String, f64)> = composite_volumes(&whole_brain())
            .into_iter()
            .map(|c| (c.name, c.volume_mm3))
            .collect();
        // 16 deep grey; + 2 cerebellar cortex + 3 parcels; + 2 white matter + 5 CC; + 4 ventricles
        let expected = [
            ("SubCortGrayVol", 16_000.0),
            ("TotalGrayVol", 21_000.0),
            ("SupraTentorialVolNotVent", 26_000.0),
            ("SupraTentorialVol", 30_000.0),
        ];
        assert_eq!(volumes, expected.map(|(n, v)| (n.to_string(), v)));
        assert!(SUBCORTICAL_GREY.includes("Right-Thalamus-Proper"));
        assert!(SUBCORTICAL_GREY.includes("Left-Thalamus"));
        assert!(!SUBCORTICAL_GREY.includes("Left-Cerebral-White-Matter"));
        assert!(!SUBCORTICAL_GREY.includes("Putamen"));
        assert!(TOTAL_GREY.includes("ctx-rh-insula") && TOTAL_GREY.includes("Left-Cerebral-Cortex"));
        assert!(!TOTAL_GREY.includes("CC_Central") && SUPRATENTORIAL.includes("CC_Central"));
        assert!(TOTAL_GREY.sums_structure("ctx-insula"));
        assert_eq!(Composite::named("SubCortGrayVol"), Some(&SUBCORTICAL_GREY));
    }

    #[test]
    fn no_composite_with_a_part_the_model_does_not_draw() {
        let mut regions = whole_brain();
        regions.retain(|r| r.name != "Right-Accumbens-area");
        assert!(composite_volumes(&regions).is_empty());
        // no cortex on the right: only the deep grey sum stands
        let mut regions = whole_brain();
        regions.retain(|r| !r.name.starts_with("ctx-rh-"));
        let names: Vec<String> = composite_volumes(&regions).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["SubCortGrayVol"]);
        // a composite whose parts are all drawn is reported even where a part has no voxel
        // (its quality flag withholds the percentile)
        let mut regions = whole_brain();
        regions[1].counted_mm3 = 0.0;
        assert_eq!(composite_volumes(&regions).len(), 4);
    }
}
