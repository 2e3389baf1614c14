//! Labels drawn closer to FreeSurfer's `aseg`, on which the normative reference was built.
//!
//! The default model (model21_104class) names every region of FreeSurfer's aparc+aseg, left
//! and right; model30chan50cls draws the deep structures with far better agreement with
//! FreeSurfer (mean Dice 0.84 against 0.71 on the development brains, `neurovol accuracy`)
//! but merges the hemispheres. The refined labelling keeps the default model's label set
//! and takes each structure in [`FROM_DEEP_MODEL`] from model30chan50cls, with its side
//! from the default model, then restricts every label to the brain mask.
//!
//! Ventricle the default model leaves unlabelled inside the brain, where the deep model sees
//! ventricle, joins the ventricle it opens into ([`fill_ventricles`]).
//!
//! Last, some borders are drawn by intensity, as FreeSurfer draws them ([`crate::borders`]).
//!
//! The choice of structures is a rule, not a fit: a structure comes from the model whose
//! labels overlap FreeSurfer's more (Dice). No volume is scaled.

use std::collections::VecDeque;

use crate::grid::face_neighbours;
use crate::volumes::{clean_name, side_of};

/// Structures (side-less names) taken from model30chan50cls: those where its mean Dice
/// against FreeSurfer's aseg exceeds model21_104class's on sub-01, sub-02 and sub-04 of the
/// accuracy data (0.79–0.93 against 0.32–0.86). The ventricles stay with the default model,
/// which alone tells lateral, inferior-lateral, 3rd and 4th ventricles apart.
pub const FROM_DEEP_MODEL: &[&str] = &[
    "Brain-Stem",
    "Thalamus-Proper",
    "Caudate",
    "Putamen",
    "Pallidum",
    "Hippocampus",
    "Amygdala",
    "Accumbens-area",
    "VentralDC",
    "Cerebellum-Cortex",
    "Cerebellum-White-Matter",
    "CSF",
];

/// The default model's ventricles (side-less names), which it tells apart.
const VENTRICLES: &[&str] = &["Lateral-Ventricle", "Inf-Lat-Vent", "3rd-Ventricle", "4th-Ventricle"];

/// The deep model's one label for every ventricle.
const DEEP_VENTRICLE: &str = "Ventricle";

/// How the labels are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Labelling {
    /// Exactly the region model's labels, as upstream brainchop draws them (the reference
    /// agreement tests run on these).
    Upstream,
    /// The default model's labels with the deep structures from model30chan50cls, inside
    /// the brain mask ([`refine`]).
    #[default]
    Refined,
}

impl Labelling {
    /// The labelling a run that asks for `requested` gets: refined labels need the default
    /// model's label set and the brain mask, and are upstream's otherwise.
    pub fn drawn(requested: Labelling, model: crate::ModelId, brain_mask: bool) -> Labelling {
        match (requested, model, brain_mask) {
            (Labelling::Refined, crate::ModelId::DEFAULT, true) => Labelling::Refined,
            _ => Labelling::Upstream,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Labelling::Upstream => "upstream",
            Labelling::Refined => "refined",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// The deep model's name for a structure as the default model spells it (side-less).
fn base_structure(deep_name: &str) -> &str {
    match deep_name {
        "Cerebellum" => "Cerebellum-Cortex",
        "Ventricle" => "Lateral-Ventricle",
        "Corpus callosum" => "Cerebral-White-Matter",
        other => other,
    }
}

/// For each deep label: the default model's label on the left and on the right (the same
/// for a midline structure), `None` for background or a name the default model lacks.
fn deep_to_base(deep_names: &[String], base_names: &[String]) -> Vec<[Option<u8>; 2]> {
    let find = |name: &str| base_names.iter().position(|n| clean_name(n) == name).map(|i| i as u8);
    deep_names
        .iter()
        .map(|n| {
            let s = base_structure(clean_name(n).as_str()).to_string();
            if let Some(v) = find(&s) {
                return [Some(v), Some(v)];
            }
            if let Some(parcel) = s.strip_prefix("ctx-") {
                return [find(&format!("ctx-lh-{parcel}")), find(&format!("ctx-rh-{parcel}"))];
            }
            [find(&format!("Left-{s}")), find(&format!("Right-{s}"))]
        })
        .collect()
}

/// The side of every voxel: the default model's, where its label is lateralised, else the
/// side of the plane half-way between its left and right labels' centres, normal to the
/// line joining them (the mid-sagittal plane of a roughly symmetric brain).
struct Sides {
    of_label: Vec<Option<Side>>,
    mid: [f64; 3],
    normal: [f64; 3],
}

impl Sides {
    fn new(base: &[u8], base_names: &[String], dims: [usize; 3]) -> Sides {
        let of_label: Vec<Option<Side>> = base_names
            .iter()
            .map(|n| match side_of(&clean_name(n)) {
                Some(('L', _)) => Some(Side::Left),
                Some(_) => Some(Side::Right),
                None => None,
            })
            .collect();
        let (mut sum, mut count) = ([[0f64; 3]; 2], [0f64; 2]);
        for (i, &l) in base.iter().enumerate() {
            if let Some(side) = of_label.get(l as usize).copied().flatten() {
                let k = (side == Side::Right) as usize;
                let p = position(i, dims);
                for a in 0..3 {
                    sum[k][a] += p[a];
                }
                count[k] += 1.0;
            }
        }
        let centre = |k: usize| sum[k].map(|s| s / count[k].max(1.0));
        let (l, r) = (centre(0), centre(1));
        let mid = [0, 1, 2].map(|a| (l[a] + r[a]) / 2.0);
        let normal = [0, 1, 2].map(|a| l[a] - r[a]);
        Sides { of_label, mid, normal }
    }

    fn at(&self, i: usize, label: u8, dims: [usize; 3]) -> Side {
        if let Some(side) = self.of_label.get(label as usize).copied().flatten() {
            return side;
        }
        let p = position(i, dims);
        let d: f64 = (0..3).map(|a| (p[a] - self.mid[a]) * self.normal[a]).sum();
        if d >= 0.0 { Side::Left } else { Side::Right }
    }
}

fn position(i: usize, [nx, ny, _]: [usize; 3]) -> [f64; 3] {
    [(i % nx) as f64, ((i / nx) % ny) as f64, (i / (nx * ny)) as f64]
}

/// Refines the default model's labels in place (see the module's documentation).
///
/// A voxel the deep model gives to a chosen structure takes that structure, on its side.
/// A voxel the default model gave to a chosen structure that the deep model does not is
/// released: it takes the most common label among its 26 neighbours that is not a chosen
/// structure in the default model's labels, else the deep model's own label. Outside the
/// brain mask every voxel becomes background. Last, the ventricles take the unlabelled
/// ventricle the deep model sees ([`fill_ventricles`]).
pub fn refine(
    base: &mut [u8],
    base_names: &[String],
    deep: &[u8],
    deep_names: &[String],
    mask: Option<&[u8]>,
    dims: [usize; 3],
) {
    let to_base = deep_to_base(deep_names, base_names);
    let deep_chosen: Vec<bool> = deep_names
        .iter()
        .map(|n| FROM_DEEP_MODEL.contains(&base_structure(clean_name(n).as_str())))
        .collect();
    let mut base_chosen = vec![false; base_names.len().max(256)];
    for (d, sides) in to_base.iter().enumerate() {
        if deep_chosen[d] {
            for v in sides.iter().flatten() {
                base_chosen[*v as usize] = true;
            }
        }
    }
    let sides = Sides::new(base, base_names, dims);
    let original = base.to_vec();
    let [nx, ny, nz] = dims;
    let mut votes = vec![0u32; 256];
    for i in 0..base.len() {
        if mask.is_some_and(|m| m[i] == 0) {
            base[i] = 0;
            continue;
        }
        let (b, d) = (original[i], deep[i] as usize);
        let side = |label| sides.at(i, label, dims) as usize;
        if deep_chosen.get(d).copied().unwrap_or(false) {
            if let Some(v) = to_base[d][side(b)] {
                base[i] = v;
            }
        } else if base_chosen[b as usize] {
            let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
            votes.fill(0);
            for zz in z.saturating_sub(1)..(z + 2).min(nz) {
                for yy in y.saturating_sub(1)..(y + 2).min(ny) {
                    for xx in x.saturating_sub(1)..(x + 2).min(nx) {
                        let n = original[xx + nx * (yy + ny * zz)];
                        if !base_chosen[n as usize] {
                            votes[n as usize] += 1;
                        }
                    }
                }
            }
            let best = (0..256).max_by_key(|&v| (votes[v], v != 0)).filter(|&v| votes[v] > 0);
            base[i] = match best {
                Some(v) => v as u8,
                None => to_base.get(d).and_then(|s| s[side(b)]).unwrap_or(0),
            };
        }
    }
    if let Some(ventricle) = deep_names.iter().position(|n| clean_name(n) == DEEP_VENTRICLE) {
        fill_ventricles(base, base_names, deep, ventricle, mask, dims);
    }
}

/// A label's structure without its side (`Left-Lateral-Ventricle` → `Lateral-Ventricle`).
fn side_less(name: &str) -> String {
    let name = clean_name(name);
    side_of(&name).map_or(name, |(_, structure)| structure)
}

/// Ventricle that the default model leaves unlabelled: inside the brain mask, a voxel without
/// a label that the deep model calls ventricle joins the ventricle it is connected to through
/// such voxels (breadth-first by faces from the default model's ventricles, so the nearest
/// one; the default model alone tells lateral, inferior-lateral, 3rd and 4th apart). Voxels
/// connected to no ventricle stay background.
///
/// Why: both models see the same ventricle, but the default model often leaves voxels at its
/// edge unlabelled, and FreeSurfer labels them ventricle: of the voxels this adds on sub-01
/// and sub-04 of the accuracy data, 92 % and 86 % are FreeSurfer's ventricle (the rest mostly
/// white matter, its hypointensities and background).
///
/// `deep_ventricle` is the deep model's ventricle label.
fn fill_ventricles(
    base: &mut [u8],
    base_names: &[String],
    deep: &[u8],
    deep_ventricle: usize,
    mask: Option<&[u8]>,
    dims: [usize; 3],
) {
    let ventricle: Vec<bool> = base_names
        .iter()
        .map(|n| VENTRICLES.contains(&side_less(n).as_str()))
        .collect();
    let mut queue: VecDeque<usize> = (0..base.len())
        .filter(|&i| ventricle.get(base[i] as usize).copied().unwrap_or(false))
        .collect();
    while let Some(i) = queue.pop_front() {
        let label = base[i];
        for j in face_neighbours(i, dims) {
            if base[j] == 0 && deep[j] as usize == deep_ventricle && mask.is_none_or(|m| m[j] != 0) {
                base[j] = label;
                queue.push_back(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A 6×1×1 row: left hemisphere at x < 3 (the default model's white matter says so).
    #[test]
    fn deep_structures_take_the_deep_model_and_the_default_models_side() {
        let base_names = names(&[
            "BG",
            "Left-Cerebral-White-Matter",
            "Right-Cerebral-White-Matter",
            "Left-Putamen",
            "Right-Putamen",
            "Brain-Stem",
        ]);
        let deep_names = names(&["BG", "Cerebral-White-Matter", "Putamen", "Brain-Stem"]);
        let dims = [6, 1, 1];
        // default: WM L, putamen L, putamen L, brain stem, WM R, WM R
        let mut base = vec![1, 3, 3, 5, 2, 2];
        // deep: putamen, WM, putamen, putamen (on the right), WM, BG
        let deep = vec![2, 1, 2, 2, 1, 0];
        refine(&mut base, &base_names, &deep, &deep_names, None, dims);
        // x0: putamen on the left (default's WM is left); x1: released → neighbours' left WM;
        // x2: putamen L; x3: brain stem released → the deep model's putamen, side from the
        // plane (x = 2.75, half-way between the left centre 1 and the right 4.5) → right
        assert_eq!(base, vec![3, 1, 3, 4, 2, 2]);
    }

    /// A 12×1×1 row. Default: lateral ventricle at x0, gap x1–x4, 3rd ventricle at x5, white
    /// matter at x6, gap x7–x8, white matter x9, gap x10–x11. The deep model calls every gap
    /// ventricle; the mask leaves out x11.
    #[test]
    fn unlabelled_ventricle_joins_the_nearest_ventricle_it_opens_into() {
        let base_names = names(&[
            "BG",
            "Left-Lateral-Ventricle",
            "3rd-Ventricle",
            "Left-Cerebral-White-Matter",
        ]);
        // the deep model: 0 background, 1 ventricle, 2 white matter
        let mut base = vec![1, 0, 0, 0, 0, 2, 3, 0, 0, 3, 0, 0];
        let deep = vec![1, 1, 1, 1, 1, 1, 2, 1, 1, 2, 1, 1];
        let mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
        fill_ventricles(&mut base, &base_names, &deep, 1, Some(&mask), [12, 1, 1]);
        // x1–x2 nearer the lateral ventricle, x3–x4 nearer the 3rd; x7–x8 touch no ventricle;
        // x10 touches none either, and x11 is outside the mask
        assert_eq!(base, vec![1, 1, 1, 2, 2, 2, 3, 0, 0, 3, 0, 0]);
        // where the deep model sees no ventricle, nothing is added
        let mut base = vec![1, 0, 2];
        fill_ventricles(&mut base, &base_names, &[1, 2, 1], 1, None, [3, 1, 1]);
        assert_eq!(base, vec![1, 0, 2]);
    }

    #[test]
    fn labels_outside_the_mask_become_background() {
        let n = names(&["BG", "Brain-Stem"]);
        let mut base = vec![1, 1, 1];
        refine(&mut base, &n, &[1, 1, 1], &n, Some(&[1, 0, 1]), [3, 1, 1]);
        assert_eq!(base, vec![1, 0, 1]);
    }

    #[test]
    fn every_chosen_structure_exists_in_both_models() {
        let base: Vec<String> =
            crate::model::LabelColours::load(&crate::assets_dir(), crate::ModelId::Model21_104class)
                .map(|c| c.entries().map(|(_, n, _)| n.to_string()).collect())
                .unwrap_or_default();
        let deep: Vec<String> =
            crate::model::LabelColours::load(&crate::assets_dir(), crate::ModelId::Model30chan50cls)
                .map(|c| c.entries().map(|(_, n, _)| n.to_string()).collect())
                .unwrap_or_default();
        assert!(!base.is_empty() && !deep.is_empty(), "the model assets are needed");
        let map = deep_to_base(&deep, &base);
        for s in FROM_DEEP_MODEL {
            let d = deep
                .iter()
                .position(|n| base_structure(clean_name(n).as_str()) == *s)
                .unwrap_or_else(|| panic!("{s} not in model30chan50cls"));
            assert!(
                map[d][0].is_some() && map[d][1].is_some(),
                "{s} has no label in the default model"
            );
        }
        // the ventricle rule needs the deep model's ventricle and every ventricle of the default
        assert!(deep.iter().any(|n| clean_name(n) == DEEP_VENTRICLE));
        for v in VENTRICLES {
            assert!(base.iter().any(|n| side_less(n) == *v), "{v} not in model21_104class");
        }
    }
}
