//! Fresh UIDs: `2.25.` + a random 128-bit integer (PS3.5 B.2), drawn from a ChaCha20
//! stream seeded by the caller. Never derived from the original UID: the original is only
//! the lookup key, so the same original maps to the same new UID within one upload and
//! references between files stay valid. The same seed and input give the same output
//! on every platform (native/WASM equality test); callers pass OS randomness.

use std::collections::HashMap;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

pub(crate) struct UidMap {
    rng: ChaCha20Rng,
    map: HashMap<String, String>,
}

impl UidMap {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        Self { rng: ChaCha20Rng::from_seed(seed), map: HashMap::new() }
    }

    pub(crate) fn map(&mut self, original: &str) -> String {
        if let Some(u) = self.map.get(original) {
            return u.clone();
        }
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        let new = format!("2.25.{}", u128::from_be_bytes(b));
        self.map.insert(original.to_string(), new.clone());
        new
    }

    /// Number of distinct originals replaced so far.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_and_valid() {
        let mut m = UidMap::new([7; 32]);
        let a = m.map("1.2.3.4");
        assert_eq!(a, m.map("1.2.3.4"));
        assert_ne!(a, m.map("1.2.3.5"));
        assert!(a.starts_with("2.25.") && a.len() <= 64);
        assert!(!a[5..].starts_with('0') || a.len() == 6);
        let mut m2 = UidMap::new([7; 32]);
        assert_eq!(a, m2.map("9.9"), "depends only on seed and order, never on the original");
    }
}
