//! Neighbourhoods on a voxel grid stored x fastest (`i = x + nx·(y + ny·z)`).

/// The grid indices of the in-grid face neighbours of voxel `i` (at most six).
pub(crate) fn face_neighbours(i: usize, [nx, ny, nz]: [usize; 3]) -> impl Iterator<Item = usize> {
    let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
    [
        (x > 0).then(|| i - 1),
        (x + 1 < nx).then(|| i + 1),
        (y > 0).then(|| i - nx),
        (y + 1 < ny).then(|| i + nx),
        (z > 0).then(|| i - nx * ny),
        (z + 1 < nz).then(|| i + nx * ny),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corner_has_three_face_neighbours_and_an_inner_voxel_six() {
        let dims = [3, 4, 5];
        assert_eq!(face_neighbours(0, dims).collect::<Vec<_>>(), [1, 3, 12]);
        let centre = 1 + 3 * (1 + 4 * 2);
        let mut n: Vec<usize> = face_neighbours(centre, dims).collect();
        n.sort_unstable();
        assert_eq!(
            n,
            [centre - 12, centre - 3, centre - 1, centre + 1, centre + 3, centre + 12]
        );
    }
}
