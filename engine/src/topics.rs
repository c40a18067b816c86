//! A worker's topic table: which of its connections subscribe to what. Each worker has
//! its own, so publishing touches no shared state; a publish reaches other workers once
//! per worker through their mailboxes, never once per subscriber.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes slab keys (already well spread small integers) with one multiply instead of
/// SipHash: these maps sit on the publish path.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyMap<V> = HashMap<u32, V, BuildHasherDefault<KeyHasher>>;

/// Subscribers of one topic: slab key -> generation.
pub(crate) type Members = KeyMap<u32>;

#[derive(Default)]
pub(crate) struct Topics {
    /// Topic name -> its members. A topic disappears with its last member.
    topics: HashMap<Box<str>, Members>,
    /// Slab key -> the topics that connection subscribes to (for `is_subscribed` and to
    /// clean up when it closes). Only connections with subscriptions appear.
    by_conn: KeyMap<Vec<Box<str>>>,
}

impl Topics {
    /// Adds a subscription; false if it existed.
    pub fn subscribe(&mut self, key: u32, generation: u32, topic: &str) -> bool {
        let members = match self.topics.get_mut(topic) {
            Some(m) => m,
            None => self.topics.entry(topic.into()).or_default(),
        };
        if members.insert(key, generation).is_some() {
            return false;
        }
        self.by_conn.entry(key).or_default().push(topic.into());
        true
    }

    /// Removes a subscription; false if there was none.
    pub fn unsubscribe(&mut self, key: u32, topic: &str) -> bool {
        let Some(list) = self.by_conn.get_mut(&key) else {
            return false;
        };
        let Some(i) = list.iter().position(|t| &**t == topic) else {
            return false;
        };
        list.swap_remove(i);
        if list.is_empty() {
            self.by_conn.remove(&key);
        }
        self.leave(key, topic);
        true
    }

    fn leave(&mut self, key: u32, topic: &str) {
        if let Some(members) = self.topics.get_mut(topic) {
            members.remove(&key);
            if members.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    pub fn is_subscribed(&self, key: u32, topic: &str) -> bool {
        self.by_conn
            .get(&key)
            .is_some_and(|l| l.iter().any(|t| &**t == topic))
    }

    /// Ends every subscription of a connection (it closed).
    pub fn remove_conn(&mut self, key: u32) {
        if let Some(list) = self.by_conn.remove(&key) {
            for topic in list.iter() {
                self.leave(key, topic);
            }
        }
    }

    /// Lends a topic's members out for a publish (so the sender can borrow the rest of the
    /// worker mutably); give them back with [`Topics::restore`].
    pub fn take(&mut self, topic: &str) -> Option<Members> {
        self.topics.get_mut(topic).map(std::mem::take)
    }

    pub fn restore(&mut self, topic: &str, members: Members) {
        if let Some(slot) = self.topics.get_mut(topic) {
            *slot = members;
        }
    }

    /// Subscribers of `topic` on this worker.
    pub fn count(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_unsubscribe_and_cleanup() {
        let mut t = Topics::default();
        assert!(t.subscribe(1, 7, "a"));
        assert!(!t.subscribe(1, 7, "a"));
        assert!(t.subscribe(1, 7, "b"));
        assert!(t.subscribe(2, 9, "a"));
        assert_eq!(t.count("a"), 2);
        assert!(t.is_subscribed(1, "b"));
        assert!(t.unsubscribe(1, "b"));
        assert!(!t.unsubscribe(1, "b"));
        assert!(!t.is_subscribed(1, "b"));
        assert_eq!(t.count("b"), 0);
        t.remove_conn(1);
        assert_eq!(t.count("a"), 1);
        assert!(!t.is_subscribed(1, "a"));
        t.remove_conn(2);
        assert!(t.topics.is_empty() && t.by_conn.is_empty());
    }

    #[test]
    fn take_and_restore_keep_members() {
        let mut t = Topics::default();
        t.subscribe(3, 1, "x");
        let m = t.take("x").unwrap();
        assert_eq!(m.get(&3), Some(&1));
        t.restore("x", m);
        assert_eq!(t.count("x"), 1);
    }
}
