//! Encoded plaintexts, kept for reuse in a least-recently-used cache bounded by bytes.
//!
//! The VM hands the backend slot vectors ([`crate::PlainSlots`]); a CKKS backend must encode
//! each at the level and scale of the ciphertext it meets (an FFT and `ℓ + 1` NTTs), and a plan
//! uses the same weight diagonal at the same level on every run and, in a decode loop, every
//! step. Encodings are keyed by the plaintext's index in the plan, the level and the scale; an
//! encoding at level ℓ holds `(ℓ + 1)·N` words. When the budget is exceeded the least recently
//! used encodings go first; one larger than the whole budget is used once and not kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cachemir_ckks::Plaintext;

/// What identifies one encoding: plaintext index, level, scale (its bits).
pub type EncodingKey = (u32, usize, u64);

/// Hits, misses and evictions of a [`PlaintextCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    /// Bytes held now.
    pub bytes: u64,
}

/// The cache (see the module documentation).
#[derive(Debug)]
pub struct PlaintextCache {
    budget: u64,
    entries: HashMap<EncodingKey, (Arc<Plaintext>, u64, u64)>,
    /// Last use (a counter) → key, oldest first.
    order: BTreeMap<u64, EncodingKey>,
    clock: u64,
    stats: CacheStats,
}

impl PlaintextCache {
    /// An empty cache holding at most `budget` bytes of encodings.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            stats: CacheStats::default(),
        }
    }

    /// The encoding of `key`, marking it used; counts a hit or a miss.
    pub fn get(&mut self, key: &EncodingKey) -> Option<Arc<Plaintext>> {
        self.clock += 1;
        let clock = self.clock;
        match self.entries.get_mut(key) {
            Some((plaintext, _, used)) => {
                self.order.remove(used);
                *used = clock;
                self.order.insert(clock, *key);
                self.stats.hits += 1;
                Some(Arc::clone(plaintext))
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Keeps `plaintext` (of `bytes` bytes) under `key`, evicting the least recently used
    /// encodings until it fits; not kept when larger than the whole budget.
    pub fn insert(&mut self, key: EncodingKey, plaintext: Arc<Plaintext>, bytes: u64) {
        if bytes > self.budget || self.entries.contains_key(&key) {
            return;
        }
        while self.stats.bytes + bytes > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, size, _)) = self.entries.remove(&oldest) {
                self.stats.bytes -= size;
                self.stats.evictions += 1;
            }
        }
        self.clock += 1;
        self.order.insert(self.clock, key);
        self.entries.insert(key, (plaintext, bytes, self.clock));
        self.stats.bytes += bytes;
    }

    /// Hits, misses, evictions and bytes held.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Encodings held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ckks::{CkksContext, Encoder, ParamSet, Security};

    #[test]
    fn least_recently_used_go_first_within_the_budget() {
        let ctx = CkksContext::from_set(ParamSet::ToyN12, Security::InsecureForTesting).unwrap();
        let pt = Arc::new(
            Encoder::new(&ctx)
                .encode_real(&[1.0], 4, 0, 2f64.powi(30))
                .unwrap(),
        );
        let mut cache = PlaintextCache::new(300);
        for i in 0..3 {
            cache.insert((i, 0, 0), Arc::clone(&pt), 100);
        }
        assert!(cache.get(&(0, 0, 0)).is_some());
        cache.insert((3, 0, 0), Arc::clone(&pt), 100);
        // 1 was the least recently used.
        assert!(cache.get(&(1, 0, 0)).is_none());
        assert!(cache.get(&(0, 0, 0)).is_some() && cache.get(&(3, 0, 0)).is_some());
        cache.insert((4, 0, 0), Arc::clone(&pt), 1000);
        assert!(cache.get(&(4, 0, 0)).is_none());
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.evictions, stats.bytes),
            (3, 2, 1, 300)
        );
        assert_eq!(cache.len(), 3);
    }
}
