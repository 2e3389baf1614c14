//! Intensity normalisation before the network (RECIPE §2, upstream Python "P") and label
//! post-processing (RECIPE §5): largest 26-connected component, connected-component stats.

use rayon::prelude::*;

/// P's normalisation of the conformed uint8 cube: q2/q98 = numpy `quantile` (linear
/// interpolation) over all voxels; `clip((v − q2)/(q98 − q2 + 1e-3), 0, 1)`.
/// Exact quantiles via a 256-bin histogram (values are integers 0..255).
pub fn normalize_quantile(conformed: &[u8]) -> Vec<f32> {
    normalize_between(conformed, quantiles_u8(conformed))
}

/// `clip((v − q2)/(q98 − q2 + 1e-3), 0, 1)` with given quantiles.
pub fn normalize_between(conformed: &[u8], (q2, q98): (f32, f32)) -> Vec<f32> {
    let den = q98 - q2 + 1e-3f32;
    conformed
        .par_iter()
        .map(|&v| ((v as f32 - q2) / den).clamp(0.0, 1.0))
        .collect()
}

/// numpy-compatible linear-interpolated 2 % and 98 % quantiles of u8 data.
pub fn quantiles_u8(v: &[u8]) -> (f32, f32) {
    let mut hist = [0usize; 256];
    for &x in v {
        hist[x as usize] += 1;
    }
    let n = v.len();
    // value at sorted position k
    let at = |k: usize| -> f64 {
        let mut acc = 0;
        for (val, &h) in hist.iter().enumerate() {
            acc += h;
            if acc > k {
                return val as f64;
            }
        }
        255.0
    };
    let q = |p: f64| -> f32 {
        if n == 0 {
            return 0.0;
        }
        let pos = p * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let t = pos - lo as f64;
        let (a, b) = (at(lo), at(hi));
        // numpy's _lerp: a + (b−a)·t, or b − (b−a)·(1−t) when t ≥ 0.5
        (if t >= 0.5 {
            b - (b - a) * (1.0 - t)
        } else {
            a + (b - a) * t
        }) as f32
    };
    (q(0.02), q(0.98))
}

const N26: usize = 26;

fn neighbours(dims: [usize; 3]) -> [(isize, isize, isize); N26] {
    let _ = dims;
    let mut o = [(0, 0, 0); N26];
    let mut i = 0;
    for dz in -1..=1 {
        for dy in -1..=1 {
            for dx in -1..=1 {
                if (dx, dy, dz) != (0, 0, 0) {
                    o[i] = (dx, dy, dz);
                    i += 1;
                }
            }
        }
    }
    o
}

/// 26-connected components of voxels where `same(a, b)` links neighbours a,b (both
/// `active`). Returns (component id per voxel, 0 = inactive; sizes indexed by id − 1).
pub fn components(labels: &[u8], dims: [usize; 3], per_label: bool) -> (Vec<u32>, Vec<usize>) {
    let [nx, ny, nz] = dims;
    let mut comp = vec![0u32; labels.len()];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    let nb = neighbours(dims);
    for start in 0..labels.len() {
        if labels[start] == 0 || comp[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        let lab = labels[start];
        comp[start] = id;
        stack.push(start);
        let mut size = 0usize;
        while let Some(v) = stack.pop() {
            size += 1;
            let (x, y, z) = (v % nx, (v / nx) % ny, v / (nx * ny));
            for &(dx, dy, dz) in &nb {
                let (xx, yy, zz) = (x as isize + dx, y as isize + dy, z as isize + dz);
                if xx < 0 || yy < 0 || zz < 0 || xx >= nx as isize || yy >= ny as isize || zz >= nz as isize {
                    continue;
                }
                let u = xx as usize + nx * (yy as usize + ny * zz as usize);
                let l = labels[u];
                if l != 0 && comp[u] == 0 && (!per_label || l == lab) {
                    comp[u] = id;
                    stack.push(u);
                }
            }
        }
        sizes.push(size);
    }
    (comp, sizes)
}

/// Keep only the largest 26-connected component of the non-zero labels (labels inside it
/// unchanged). Ties between equal-size components: the first in scan order wins.
pub fn keep_largest_component(labels: &mut [u8], dims: [usize; 3]) {
    let (comp, sizes) = components(labels, dims, false);
    let Some(best) = sizes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i as u32 + 1)
    else {
        return;
    };
    labels.par_iter_mut().zip(comp.par_iter()).for_each(|(l, &c)| {
        if c != best {
            *l = 0;
        }
    });
}

/// Per label value: (total voxels, voxels in its largest 26-connected same-label piece).
pub fn per_label_components(labels: &[u8], dims: [usize; 3]) -> Vec<(usize, usize)> {
    let (comp, sizes) = components(labels, dims, true);
    let mut first_label = vec![0u8; sizes.len()];
    for (i, &c) in comp.iter().enumerate() {
        if c != 0 {
            first_label[c as usize - 1] = labels[i];
        }
    }
    let mut out = vec![(0usize, 0usize); 256];
    for (ci, &s) in sizes.iter().enumerate() {
        let l = first_label[ci] as usize;
        out[l].0 += s;
        out[l].1 = out[l].1.max(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        // numpy: np.quantile(np.arange(101, dtype=np.float32)... ) on 0..=100 → q2 = 2, q98 = 98
        let v: Vec<u8> = (0..=100).collect();
        assert_eq!(quantiles_u8(&v), (2.0, 98.0));
        // np.quantile([0,0,0,10], 0.98) = 10*(0.94) = 9.4 (pos 2.94)
        let (_, q) = quantiles_u8(&[0, 0, 0, 10]);
        assert!((q - 9.4).abs() < 1e-5);
    }

    #[test]
    fn largest_component_26_connected() {
        let dims = [6, 6, 6];
        let mut l = vec![0u8; 216];
        let at = |x: usize, y: usize, z: usize| x + 6 * (y + 6 * z);
        // main blob of two classes touching diagonally (26-connected only)
        l[at(1, 1, 1)] = 3;
        l[at(2, 2, 2)] = 5;
        l[at(3, 3, 3)] = 5;
        // detached island
        l[at(5, 0, 0)] = 3;
        keep_largest_component(&mut l, dims);
        assert_eq!(
            (l[at(1, 1, 1)], l[at(2, 2, 2)], l[at(3, 3, 3)], l[at(5, 0, 0)]),
            (3, 5, 5, 0)
        );
        let pc = per_label_components(&l, dims);
        assert_eq!(pc[5], (2, 2));
        assert_eq!(pc[3], (1, 1));
    }
}
