//! Fresh UIDs: `2.25.` + a random 128-bit integer (PS3.5 B.2), drawn from a ChaCha20
//! stream seeded by the caller. Never derived from the original UID: the original is only
//! the lookup key, so the same original maps to the same new UID within one upload and
//! references between files stay valid. The same seed and input give the same output
//! on every platform (native/WASM equality test); callers pass OS randomness.
//!
//! The draw order is the order in which originals are first met in output order (file by
//! file, element by element). The ZIP path notes each file's originals in a [`UidRecord`]
//! (in parallel), then draws for them in output order, then rewrites files in parallel with
//! lookups only: the same mapping as drawing while rewriting file after file.

use std::collections::{HashMap, HashSet};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

pub(crate) struct UidMap {
    rng: ChaCha20Rng,
    map: HashMap<String, String>,
}

impl UidMap {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(seed),
            map: HashMap::new(),
        }
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

    /// The new UID of an original already mapped.
    pub(crate) fn get(&self, original: &str) -> Option<&str> {
        self.map.get(original).map(String::as_str)
    }

    /// Number of distinct originals replaced so far.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// The originals one file would map, each once, in the order a rewrite meets them.
#[derive(Debug, Default, Clone)]
pub(crate) struct UidRecord {
    order: Vec<String>,
    seen: HashSet<String>,
}

impl UidRecord {
    pub(crate) fn note(&mut self, original: &str) {
        if !self.seen.contains(original) {
            self.seen.insert(original.to_string());
            self.order.push(original.to_string());
        }
    }

    pub(crate) fn into_order(self) -> Vec<String> {
        self.order
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
        assert_eq!(
            a,
            m2.map("9.9"),
            "depends only on seed and order, never on the original"
        );
    }

    #[test]
    fn record_keeps_first_appearance_order() {
        let mut r = UidRecord::default();
        for u in ["1.2", "1.3", "1.2", "1.4", "1.3"] {
            r.note(u);
        }
        assert_eq!(r.into_order(), ["1.2", "1.3", "1.4"]);
    }
}
