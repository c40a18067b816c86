//! The members of one topic: slab keys, kept in the cheapest form for their number.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;

use super::KeyHasher;

type KeySet = HashSet<u32, BuildHasherDefault<KeyHasher>>;

/// Members kept as a plain list up to this many (a scan of 32 keys beats hashing).
const LIST_MAX: usize = 32;

/// A bit set is chosen when it is no bigger than about 8 bytes per member (what a hash set
/// costs): at least one member per this many slots.
const DENSE_SLOTS_PER_MEMBER: usize = 64;

/// A bit set goes back to a hash set below a quarter of that density (hysteresis, so a
/// topic on the boundary does not convert back and forth).
const SPARSE_SLOTS_PER_MEMBER: usize = 4 * DENSE_SLOTS_PER_MEMBER;

/// Whether `len` members among slab keys below `bound` are dense enough for a bit set.
fn dense(len: usize, bound: usize) -> bool {
    bound <= len * DENSE_SLOTS_PER_MEMBER
}

/// The slab keys subscribed to one topic, in the cheapest form for their number.
#[derive(Debug)]
pub(crate) enum Members {
    /// Few: keys in subscription order.
    List(Vec<u32>),
    /// Sparse among the slab's slots. `bound`: every key is below it (tight after a scan;
    /// `stale` counts removals since, and a scan follows once they are a quarter of the
    /// members, so finding that a thinned set became dense costs O(1) per removal).
    Set {
        keys: KeySet,
        bound: u32,
        stale: u32,
    },
    /// Dense: bit `k` of the set says whether slab key `k` is a member.
    Bits { words: Vec<u64>, len: u32 },
}

impl Default for Members {
    fn default() -> Self {
        Members::List(Vec::new())
    }
}

impl Members {
    pub fn len(&self) -> usize {
        match self {
            Members::List(v) => v.len(),
            Members::Set { keys, .. } => keys.len(),
            Members::Bits { len, .. } => *len as usize,
        }
    }

    pub fn contains(&self, key: u32) -> bool {
        match self {
            Members::List(v) => v.contains(&key),
            Members::Set { keys, .. } => keys.contains(&key),
            Members::Bits { words, .. } => words
                .get(key as usize / 64)
                .is_some_and(|w| w & (1 << (key % 64)) != 0),
        }
    }

    /// Adds `key`; false if it was a member.
    pub fn insert(&mut self, key: u32) -> bool {
        if let Members::Bits { words, len } = self
            && key as usize / 64 >= words.len()
            && !dense(*len as usize + 1, (key as usize / 64 + 1) * 64)
        {
            // A far key would make the bit set mostly empty words.
            self.become_set();
        }
        let added = match self {
            Members::List(v) => {
                let new = !v.contains(&key);
                if new {
                    v.push(key);
                }
                new
            }
            Members::Set { keys, bound, .. } => {
                *bound = (*bound).max(key + 1);
                keys.insert(key)
            }
            Members::Bits { words, len } => {
                let w = key as usize / 64;
                if w >= words.len() {
                    words.resize(w + 1, 0);
                }
                let bit = 1u64 << (key % 64);
                let new = words[w] & bit == 0;
                words[w] |= bit;
                *len += new as u32;
                new
            }
        };
        if added {
            self.reshape();
        }
        added
    }

    /// Removes `key`; false if it was not a member.
    pub fn remove(&mut self, key: u32) -> bool {
        let removed = match self {
            Members::List(v) => match v.iter().position(|&k| k == key) {
                Some(i) => {
                    v.swap_remove(i);
                    true
                }
                None => false,
            },
            Members::Set { keys, stale, .. } => {
                let removed = keys.remove(&key);
                *stale += removed as u32;
                removed
            }
            Members::Bits { words, len } => match words.get_mut(key as usize / 64) {
                Some(w) if *w & (1 << (key % 64)) != 0 => {
                    *w &= !(1 << (key % 64));
                    *len -= 1;
                    true
                }
                _ => false,
            },
        };
        if removed {
            self.reshape();
        }
        removed
    }

    /// Calls `f` with every member's key (in key order once dense).
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(u32)) {
        match self {
            Members::List(v) => v.iter().for_each(|&k| f(k)),
            Members::Set { keys, .. } => keys.iter().for_each(|&k| f(k)),
            Members::Bits { words, .. } => {
                for (i, &word) in words.iter().enumerate() {
                    let mut w = word;
                    while w != 0 {
                        f(i as u32 * 64 + w.trailing_zeros());
                        w &= w - 1;
                    }
                }
            }
        }
    }

    /// Heap bytes held (capacity, not length).
    pub fn bytes(&self) -> usize {
        match self {
            Members::List(v) => v.capacity() * 4,
            // hashbrown: a key and a control byte per bucket, 7/8 of the buckets usable.
            Members::Set { keys, .. } => (keys.capacity() * 8 / 7 + 1).next_power_of_two() * 5,
            Members::Bits { words, .. } => words.capacity() * 8,
        }
    }

    /// Moves to the form that suits the current number of members.
    fn reshape(&mut self) {
        let len = self.len();
        match self {
            Members::List(v) if v.len() > LIST_MAX => {
                let bound = v.iter().max().map_or(0, |&k| k as usize + 1);
                if dense(len, bound) {
                    self.become_bits();
                } else {
                    self.become_set();
                }
            }
            Members::Set { keys, bound, stale } if len > LIST_MAX => {
                if *stale as usize > len / 4 {
                    *bound = keys.iter().max().map_or(0, |&k| k + 1);
                    *stale = 0;
                }
                if dense(len, *bound as usize) {
                    self.become_bits();
                }
            }
            Members::Set { .. } | Members::Bits { .. } if len <= LIST_MAX / 2 => {
                let mut v = Vec::with_capacity(LIST_MAX);
                self.for_each(|k| v.push(k));
                *self = Members::List(v);
            }
            Members::Bits { words, .. } if words.len() * 64 > len * SPARSE_SLOTS_PER_MEMBER => {
                self.become_set();
            }
            _ => {}
        }
    }

    fn become_set(&mut self) {
        let mut keys = KeySet::with_capacity_and_hasher(self.len() + 1, Default::default());
        let mut bound = 0;
        self.for_each(|k| {
            keys.insert(k);
            bound = bound.max(k + 1);
        });
        *self = Members::Set {
            keys,
            bound,
            stale: 0,
        };
    }

    fn become_bits(&mut self) {
        let mut words = Vec::new();
        let len = self.len() as u32;
        self.for_each(|k| {
            let w = k as usize / 64;
            if w >= words.len() {
                words.resize(w + 1, 0);
            }
            words[w] |= 1u64 << (k % 64);
        });
        *self = Members::Bits { words, len };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A topic's members change form with their number and density, and stay the same set.
    #[test]
    fn members_change_form_and_keep_the_set() {
        let mut m = Members::default();
        let mut model = std::collections::BTreeSet::new();
        let check = |m: &Members, model: &std::collections::BTreeSet<u32>| {
            let mut v = Vec::new();
            m.for_each(|k| v.push(k));
            v.sort_unstable();
            assert_eq!(v, model.iter().copied().collect::<Vec<_>>());
            assert_eq!(m.len(), model.len());
            for k in [0, 1, 63, 64, 999, 10_000, 1 << 20] {
                assert_eq!(m.contains(k), model.contains(&k));
            }
        };
        // Dense keys: list, then bits.
        for k in 0..2_000 {
            assert!(m.insert(k));
            model.insert(k);
        }
        assert!(matches!(m, Members::Bits { .. }));
        assert!(!m.insert(5));
        check(&m, &model);
        // A far key would leave the bit set mostly empty: a hash set instead.
        assert!(m.insert(1 << 20));
        model.insert(1 << 20);
        assert!(matches!(m, Members::Set { .. }));
        check(&m, &model);
        // Without the far key the set is dense again: found by a scan once a quarter of
        // the members have left.
        assert!(m.remove(1 << 20));
        model.remove(&(1 << 20));
        for k in 0..600 {
            assert!(m.remove(k));
            model.remove(&k);
        }
        assert!(matches!(m, Members::Bits { .. }));
        check(&m, &model);
        // Thinning out: bits, then a set, then a list.
        for k in 600..2_000 {
            if k % 300 != 0 {
                assert!(m.remove(k));
                model.remove(&k);
            }
        }
        assert!(matches!(m, Members::List(_)));
        check(&m, &model);
        assert!(!m.remove(1));
        // Sparse keys from the start: list, then a set.
        let mut s = Members::default();
        let mut model = std::collections::BTreeSet::new();
        for k in (0..100).map(|i| i * 1_000) {
            s.insert(k);
            model.insert(k);
        }
        assert!(matches!(s, Members::Set { .. }));
        check(&s, &model);
    }
}
