//! The order in which a streamed network produces its z-slices. Shared by every engine
//! that streams (CPU, GPU), so they keep the same bounded memory and the same boxes.
//!
//! Layer `l` keeps a ring of `caps[l]` output slices; slice `z` of layer `l` can be made
//! once layer `l−1` has made every slice up to `z + rad[l]`, and only when the slot it
//! overwrites has been read by layer `l+1` for the last time.

use super::Box3;
use crate::error::{Result, VolumetryError};

/// One unit of work: output slice `z` of layer `layer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub layer: usize,
    pub z: usize,
}

#[derive(Clone, Debug)]
pub struct StreamPlan {
    /// Per layer, the box it computes: the region grown by the receptive radius of the
    /// layers after it (exact inside the region, nothing outside its margin).
    pub boxes: Vec<Box3>,
    /// Ring length (slices) of each layer's output; the head writes labels, no ring.
    pub caps: Vec<usize>,
    pub steps: Vec<Step>,
}

/// `rads[l]`: receptive radius of layer `l` ((kernel/2)·dilation; 0 for the 1×1×1 head,
/// which is the last layer).
pub fn stream_plan(rads: &[usize], dims: [usize; 3], region: &Box3) -> Result<StreamPlan> {
    let nl = rads.len();
    let nh = nl
        .checked_sub(1)
        .ok_or_else(|| VolumetryError::Model("a network needs layers".into()))?;
    let mut boxes = vec![region.clone(); nl];
    let mut r = 0;
    for l in (0..nh).rev() {
        r += rads[l + 1];
        boxes[l] = region.grow(r, dims);
    }
    let caps: Vec<usize> = (0..nh).map(|l| 2 * rads[l + 1] + 2).collect();
    let mut produced: Vec<usize> = boxes.iter().map(|b| b.0[2].start).collect();
    let mut steps = Vec::new();
    loop {
        let mut progressed = false;
        for l in 0..nl {
            loop {
                let z = produced[l];
                if z >= boxes[l].0[2].end {
                    break;
                }
                let ready = l == 0 || produced[l - 1] > (z + rads[l]).min(dims[2] - 1);
                let space = l == nh || {
                    let old = z as isize - caps[l] as isize;
                    old < boxes[l].0[2].start as isize || produced[l + 1] as isize > old + rads[l + 1] as isize
                };
                if !ready || !space {
                    break;
                }
                steps.push(Step { layer: l, z });
                produced[l] += 1;
                progressed = true;
            }
        }
        if produced[nh] >= boxes[nh].0[2].end {
            break;
        }
        if !progressed {
            return Err(VolumetryError::Model(
                "internal error: inference schedule stalled".into(),
            ));
        }
    }
    Ok(StreamPlan { boxes, caps, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step reads only slices that exist and are still in their ring.
    #[test]
    fn every_read_is_made_and_not_yet_overwritten() {
        let rads = [1, 2, 4, 8, 4, 0];
        let dims = [9, 9, 60];
        let plan = stream_plan(&rads, dims, &Box3([0..9, 0..9, 20..31])).unwrap();
        let nl = rads.len();
        // made[l][z] = step index at which slice z of layer l was made
        let mut made = vec![vec![None; dims[2]]; nl];
        for (i, s) in plan.steps.iter().enumerate() {
            if s.layer > 0 {
                let l = s.layer - 1;
                let lo = s.z.saturating_sub(rads[s.layer]);
                let hi = (s.z + rads[s.layer]).min(dims[2] - 1);
                for zz in (lo..=hi).filter(|zz| plan.boxes[l].0[2].contains(zz)) {
                    let at = made[l][zz].expect("read before made");
                    // no later slice of layer l has reused its ring slot since
                    let reused = plan.steps[at + 1..i]
                        .iter()
                        .any(|t| t.layer == l && t.z % plan.caps[l] == zz % plan.caps[l]);
                    assert!(!reused, "layer {l} slice {zz} overwritten before step {i} read it");
                }
            }
            made[s.layer][s.z] = Some(i);
        }
        assert!(plan.boxes[nl - 1].0[2].clone().all(|z| made[nl - 1][z].is_some()));
    }
}
