//! Volumes FreeSurfer reports as sums of its labels (the `# Measure` lines of `aseg.stats`),
//! which the normative reference models as regions of their own.
//!
//! FreeSurfer counts these measures' voxels (no partial-volume correction), so a composite
//! is the sum of its parts' voxel counts, not of their corrected volumes. A composite is
//! reported only where the model draws every part: a sum with a part missing would read as
//! atrophy.

use crate::volumes::{RegionVolume, side_of};

/// One sum of labels.
#[derive(Debug, PartialEq, Eq)]
pub struct Composite {
    /// FreeSurfer's (and braincharts') name of the measure.
    pub name: &'static str,
    /// The structures summed, each on both sides (names after `Left-` / `Right-`).
    pub structures: &'static [&'static str],
}

/// FreeSurfer's `SubCortGrayVol`: the deep grey matter of both hemispheres (FreeSurfer also
/// counts the substantia nigra, which its aseg never labels).
pub const SUBCORTICAL_GREY: Composite = Composite {
    name: "SubCortGrayVol",
    structures: &[
        "Thalamus",
        "Caudate",
        "Putamen",
        "Pallidum",
        "Hippocampus",
        "Amygdala",
        "Accumbens-area",
        "VentralDC",
    ],
};

/// Every composite a segmentation reports.
pub const COMPOSITES: &[Composite] = &[SUBCORTICAL_GREY];

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

    /// Whether a structure (`Putamen`, `Thalamus-Proper`) is summed here.
    pub fn sums_structure(&self, structure: &str) -> bool {
        // FreeSurfer 6 and the 104-class model say "Thalamus-Proper", FreeSurfer 7 "Thalamus"
        let structure = structure.strip_suffix("-Proper").unwrap_or(structure);
        self.structures.contains(&structure)
    }

    /// Whether a region (`Left-Putamen`) is one of the parts.
    pub fn includes(&self, region: &str) -> bool {
        side_of(region).is_some_and(|(_, s)| self.sums_structure(&s))
    }

    /// The composite's volume from a segmentation's regions; None unless every part is
    /// drawn by the model.
    pub fn volume(&self, regions: &[RegionVolume]) -> Option<CompositeVolume> {
        let parts: Vec<&RegionVolume> = regions.iter().filter(|r| self.includes(&r.name)).collect();
        (parts.len() == 2 * self.structures.len()).then(|| CompositeVolume {
            name: self.name.to_string(),
            volume_mm3: parts.iter().map(|r| r.counted_mm3).sum(),
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

    fn deep_grey() -> Vec<RegionVolume> {
        let mut regions = vec![region("Left-Cerebral-White-Matter", 250_000.0), region("CSF", 1_000.0)];
        for side in ["Left", "Right"] {
            for s in SUBCORTICAL_GREY.structures {
                let s = if *s == "Thalamus" { "Thalamus-Proper" } else { s };
                regions.push(region(&format!("{side}-{s}"), 1_000.0));
            }
        }
        regions
    }

    #[test]
    fn the_deep_grey_sums_the_voxel_counts_of_both_sides() {
        let v = composite_volumes(&deep_grey());
        assert_eq!(
            v,
            vec![CompositeVolume {
                name: "SubCortGrayVol".into(),
                volume_mm3: 16_000.0
            }]
        );
        assert!(SUBCORTICAL_GREY.includes("Right-Thalamus-Proper"));
        assert!(SUBCORTICAL_GREY.includes("Left-Thalamus"));
        assert!(!SUBCORTICAL_GREY.includes("Left-Cerebral-White-Matter"));
        assert!(!SUBCORTICAL_GREY.includes("Putamen"));
        assert_eq!(Composite::named("SubCortGrayVol"), Some(&SUBCORTICAL_GREY));
    }

    #[test]
    fn no_composite_with_a_part_the_model_does_not_draw() {
        let mut regions = deep_grey();
        regions.retain(|r| r.name != "Right-Accumbens-area");
        assert!(composite_volumes(&regions).is_empty());
    }
}
