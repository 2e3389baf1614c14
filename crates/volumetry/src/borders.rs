//! Borders drawn by intensity, as FreeSurfer draws them. FreeSurfer puts the boundary
//! between two tissues where the intensity crosses half-way between theirs; the models draw
//! some borders past that point (grey structures into the white matter) or short of it (the
//! cortex at the CSF). Each rule compares a border voxel with the midpoint between the two
//! sides' typical intensities (their interiors' medians), in the scan's own units: no number
//! in it comes from any brain.

use crate::grid::face_neighbours;
use crate::volumes::clean_name;

/// Grey structures whose border with the cerebral white matter is redrawn by intensity
/// ([`release_bright_borders`]). Both models draw them into the white matter FreeSurfer
/// keeps (putamen +19 % and +11 %, caudate +7 % and +6 % on the development brains). Not
/// the thalamus, whose intensity lies close to the white matter's, nor the pallidum, brighter
/// still; the amygdala and accumbens gained nothing on the development brains.
pub const BORDER_BY_INTENSITY: &[&str] = &["Putamen", "Caudate", "Hippocampus"];

/// How far in from its border (voxels, city-block) a voxel counts as a label's interior, whose
/// median intensity is the label's typical one.
const INTERIOR_DEPTH: usize = 2;

/// Fewer interior voxels than this: no typical intensity, and the border is left as drawn.
const MIN_INTERIOR: u32 = 20;

/// Gives to the white matter of its side each voxel of a [`BORDER_BY_INTENSITY`] structure
/// that touches that white matter (a face neighbour) and is brighter than half-way between
/// the two labels' typical intensities: FreeSurfer's boundary between grey and white is that
/// midpoint, and both models draw these structures past it. Only the structures shrink: a
/// dark white-matter voxel beside them may be cortex or CSF and is left alone.
pub fn release_bright_borders(labels: &mut [u8], names: &[String], intensity: &[u8], dims: [usize; 3]) {
    let find = |name: &str| names.iter().position(|n| clean_name(n) == name).map(|i| i as u8);
    let pairs: Vec<(u8, u8)> = ["Left", "Right"]
        .iter()
        .filter_map(|side| Some((side, find(&format!("{side}-Cerebral-White-Matter"))?)))
        .flat_map(|(side, wm)| {
            BORDER_BY_INTENSITY
                .iter()
                .filter_map(move |s| find(&format!("{side}-{s}")).map(|grey| (grey, wm)))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    let mut involved = [false; 256];
    for &(g, w) in &pairs {
        involved[g as usize] = true;
        involved[w as usize] = true;
    }
    let typical = interior_medians(
        256,
        |i| involved[labels[i] as usize].then_some(labels[i] as usize),
        intensity,
        dims,
    );
    // per grey label: its white matter and whether an intensity lies on the white side of
    // the midpoint between their typical intensities
    let mut rule: [Option<(u8, f64, bool)>; 256] = [None; 256];
    for &(grey, wm) in &pairs {
        if let (Some(g), Some(w)) = (typical[grey as usize], typical[wm as usize]) {
            rule[grey as usize] = Some((wm, (g + w) / 2.0, w > g));
        }
    }
    let mut released = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let Some((wm, midpoint, white_is_brighter)) = rule[l as usize] else {
            continue;
        };
        let v = f64::from(intensity[i]);
        if (v > midpoint) != white_is_brighter || v == midpoint {
            continue;
        }
        if face_neighbours(i, dims).any(|j| labels[j] == wm) {
            released.push((i, wm));
        }
    }
    for (i, wm) in released {
        labels[i] = wm;
    }
}

/// The median intensity of each class's interior: the voxels whose whole city-block
/// neighbourhood of radius [`INTERIOR_DEPTH`] is of the same class (`class_at`: a voxel's
/// class, `None` for one of no class). `None` for a class with fewer than [`MIN_INTERIOR`]
/// such voxels.
fn interior_medians(
    n_classes: usize,
    class_at: impl Fn(usize) -> Option<usize>,
    intensity: &[u8],
    dims: [usize; 3],
) -> Vec<Option<f64>> {
    let [nx, ny, nz] = dims;
    let r = INTERIOR_DEPTH as isize;
    let mut histograms = vec![[0u32; 256]; n_classes];
    for (i, &v) in intensity.iter().enumerate() {
        let Some(class) = class_at(i) else {
            continue;
        };
        let (x, y, z) = ((i % nx) as isize, ((i / nx) % ny) as isize, (i / (nx * ny)) as isize);
        let inside = |a: isize, n: usize| a >= 0 && (a as usize) < n;
        let interior = (-r..=r).all(|dz| {
            (-r..=r).all(|dy| {
                (-r..=r).all(|dx| {
                    if dx.abs() + dy.abs() + dz.abs() > r {
                        return true;
                    }
                    let (a, b, c) = (x + dx, y + dy, z + dz);
                    inside(a, nx)
                        && inside(b, ny)
                        && inside(c, nz)
                        && class_at(a as usize + nx * (b as usize + ny * c as usize)) == Some(class)
                })
            })
        });
        if interior {
            histograms[class][v as usize] += 1;
        }
    }
    histograms
        .iter()
        .map(|h| {
            let n: u32 = h.iter().sum();
            if n < MIN_INTERIOR {
                return None;
            }
            let mut seen = 0;
            h.iter()
                .position(|&c| {
                    seen += c;
                    2 * seen >= n
                })
                .map(|v| v as f64)
        })
        .collect()
}

/// Gives to the cortex each unlabelled voxel inside the brain mask that touches a cortical
/// label (a face neighbour) and is brighter than half-way between the cortex's typical
/// intensity and that of the unlabelled voxels inside the mask (the CSF of the sulci and
/// around the brain): FreeSurfer's pial surface lies at that midpoint, and the default model
/// stops short of it (its cortex is 0.84–0.91 of FreeSurfer's on the development brains).
/// The voxel takes the parcel most of its cortical face neighbours carry. One pass: the
/// cortex grows by at most one voxel. The inner border is left as drawn: the same rule
/// there (dark white matter to the cortex) took the white matter from +6 % to −5 % of
/// FreeSurfer's and the total grey matter past it.
pub fn claim_bright_pial_border(labels: &mut [u8], names: &[String], intensity: &[u8], mask: &[u8], dims: [usize; 3]) {
    let mut cortex = [false; 256];
    for (flag, name) in cortex.iter_mut().zip(names) {
        let name = clean_name(name);
        *flag = name.starts_with("ctx-") || name.ends_with("-Cerebral-Cortex");
    }
    if !cortex.iter().any(|&c| c) {
        return;
    }
    let (cortex_class, unlabelled_class) = (0, 1);
    let typical = interior_medians(
        2,
        |i| {
            if cortex[labels[i] as usize] {
                Some(cortex_class)
            } else if labels[i] == 0 && mask[i] != 0 {
                Some(unlabelled_class)
            } else {
                None
            }
        },
        intensity,
        dims,
    );
    let (Some(grey), Some(csf)) = (typical[cortex_class], typical[unlabelled_class]) else {
        return;
    };
    let midpoint = (grey + csf) / 2.0;
    let mut claimed = Vec::new();
    for (i, (&l, &m)) in labels.iter().zip(mask).enumerate() {
        let v = f64::from(intensity[i]);
        if l != 0 || m == 0 || v == midpoint || (v > midpoint) != (grey > csf) {
            continue;
        }
        let parcels: Vec<u8> = face_neighbours(i, dims)
            .map(|j| labels[j])
            .filter(|&n| cortex[n as usize])
            .collect();
        // the most common parcel; on a tie the lower label
        let parcel = parcels
            .iter()
            .max_by_key(|&&p| (parcels.iter().filter(|&&q| q == p).count(), std::cmp::Reverse(p)));
        if let Some(&p) = parcel {
            claimed.push((i, p));
        }
    }
    for (i, parcel) in claimed {
        labels[i] = parcel;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// A 12×9×9 block: putamen (intensity 80) at x < 6, white matter (110) beyond.
    #[test]
    fn a_grey_structures_bright_border_goes_to_the_white_matter() {
        let names = names(&[
            "BG",
            "Left-Putamen",
            "Left-Cerebral-White-Matter",
            "Left-Thalamus-Proper",
        ]);
        let dims = [12, 9, 9];
        let at = |x: usize, y: usize, z: usize| x + 12 * (y + 9 * z);
        let mut labels: Vec<u8> = (0..12 * 81).map(|i| if i % 12 < 6 { 1 } else { 2 }).collect();
        let mut intensity: Vec<u8> = labels.iter().map(|&l| if l == 1 { 80 } else { 110 }).collect();
        // on the border: one voxel brighter than the midpoint (95), one darker
        intensity[at(5, 4, 4)] = 100;
        intensity[at(5, 3, 4)] = 90;
        // bright, but not touching the white matter
        intensity[at(3, 4, 4)] = 105;
        let before = labels.clone();
        release_bright_borders(&mut labels, &names, &intensity, dims);
        assert_eq!(labels[at(5, 4, 4)], 2);
        assert_eq!(labels[at(5, 3, 4)], 1);
        assert_eq!(labels[at(3, 4, 4)], 1);
        assert_eq!(labels.iter().zip(&before).filter(|(a, b)| a != b).count(), 1);
        // a structure not in the list (the thalamus) keeps its border
        let mut thalamus: Vec<u8> = before.iter().map(|&l| if l == 1 { 3 } else { l }).collect();
        release_bright_borders(&mut thalamus, &names, &intensity, dims);
        assert_eq!(thalamus[at(5, 4, 4)], 3);
    }

    /// A 12×9×9 block: cortex (intensity 80) at x < 6, unlabelled CSF (40) beyond, all inside
    /// the mask but for one voxel.
    #[test]
    fn a_bright_voxel_beyond_the_cortex_joins_its_parcel() {
        let names = names(&["BG", "ctx-lh-insula", "ctx-lh-precuneus"]);
        let dims = [12, 9, 9];
        let at = |x: usize, y: usize, z: usize| x + 12 * (y + 9 * z);
        let mut labels: Vec<u8> = (0..12 * 81).map(|i| if i % 12 < 6 { 1 } else { 0 }).collect();
        // a notch of precuneus: the voxel between has two precuneus neighbours, one insula
        labels[at(6, 4, 3)] = 2;
        labels[at(6, 4, 5)] = 2;
        let mut intensity: Vec<u8> = labels.iter().map(|&l| if l == 0 { 40 } else { 80 }).collect();
        let mut mask = vec![1u8; 12 * 81];
        // beside the cortex: brighter than the midpoint (60), darker, bright outside the mask
        intensity[at(6, 4, 4)] = 70;
        intensity[at(6, 3, 4)] = 50;
        intensity[at(6, 2, 4)] = 70;
        mask[at(6, 2, 4)] = 0;
        // bright, but not touching the cortex
        intensity[at(9, 4, 4)] = 75;
        let before = labels.clone();
        claim_bright_pial_border(&mut labels, &names, &intensity, &mask, dims);
        assert_eq!(labels[at(6, 4, 4)], 2);
        assert_eq!(labels[at(6, 3, 4)], 0);
        assert_eq!(labels[at(6, 2, 4)], 0);
        assert_eq!(labels[at(9, 4, 4)], 0);
        assert_eq!(labels.iter().zip(&before).filter(|(a, b)| a != b).count(), 1);
    }
}
