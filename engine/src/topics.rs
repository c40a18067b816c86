//! A worker's topic table: which of its connections subscribe to what. Each worker has
//! its own, so publishing touches no shared state; a publish reaches other workers once
//! per worker through their mailboxes, never once per subscriber.
//!
//! Memory is spent per topic, not per subscription, wherever possible:
//! - a topic's name is stored once, and the topic is known by a small id;
//! - a connection's first topic id sits in its record (`Conn::topic`, two bytes); only a
//!   connection in two or more topics has an entry in a side map;
//! - a topic's members are slab keys in the cheapest form for their number: a short list,
//!   a hash set while sparse, one bit per slab slot once dense (a topic every connection
//!   joins costs an eighth of a byte per connection).
//!
//! Members are slab keys without generations: membership ends when the connection is
//! removed (`Core::remove`, the only place a slab slot is freed, calls
//! [`Topics::remove_conn`]), so a slot reused by a new connection starts with none.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

mod members;

pub(crate) use members::Members;

/// Hashes slab keys (already well spread small integers) with one multiply instead of
/// SipHash: these maps sit on the subscribe and close paths.
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

pub(crate) type KeyMap<V> = HashMap<u32, V, BuildHasherDefault<KeyHasher>>;

/// A topic's id, as stored inline in a connection record: id + 1, or 0 when the id does
/// not fit (those subscriptions go to the side map like second topics do).
fn inline_code(id: u32) -> u16 {
    if id < u16::MAX as u32 {
        id as u16 + 1
    } else {
        0
    }
}

/// One topic: its name (stored once) and members.
#[derive(Debug)]
struct Topic {
    name: Box<str>,
    members: Members,
}

#[derive(Default)]
pub(crate) struct Topics {
    /// Topic name -> id (an index in `topics`). A topic disappears with its last member.
    ids: HashMap<Box<str>, u32>,
    topics: Vec<Option<Topic>>,
    /// Ids of removed topics, reused first (so ids stay small and fit records inline).
    free: Vec<u32>,
    /// Slab key -> topics of that connection beyond the one in its record. Only
    /// connections in two or more topics appear.
    extra: KeyMap<Vec<u32>>,
    /// Told when a topic is created or dropped (`ServerHandle::watch_topics`).
    watch: Option<crate::interest::Watch>,
}

impl Topics {
    /// The id of a topic with members on this worker.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn members(&mut self, id: u32) -> &mut Members {
        &mut self.topics[id as usize]
            .as_mut()
            .expect("live topic")
            .members
    }

    /// Adds a subscription of connection `key`, whose record's topic slot is `inline`;
    /// false if it existed.
    pub fn subscribe(&mut self, key: u32, inline: &mut u16, name: &str) -> bool {
        let id = match self.ids.get(name) {
            Some(&id) => id,
            None => self.create(name),
        };
        if !self.members(id).insert(key) {
            return false;
        }
        let code = inline_code(id);
        if *inline == 0 && code != 0 {
            *inline = code;
        } else {
            self.extra.entry(key).or_default().push(id);
        }
        true
    }

    fn create(&mut self, name: &str) -> u32 {
        let topic = Topic {
            name: name.into(),
            members: Members::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.topics[id as usize] = Some(topic);
                id
            }
            None => {
                self.topics.push(Some(topic));
                (self.topics.len() - 1) as u32
            }
        };
        self.ids.insert(name.into(), id);
        if let Some(w) = &self.watch {
            w.gained(name);
        }
        id
    }

    /// Installs (or removes) the watcher, first telling it every topic that exists now.
    pub fn set_watch(&mut self, watch: Option<crate::interest::Watch>) {
        if let Some(w) = &watch {
            self.ids.keys().for_each(|name| w.gained(name));
        }
        self.watch = watch;
    }

    /// Removes a subscription; false if there was none.
    pub fn unsubscribe(&mut self, key: u32, inline: &mut u16, name: &str) -> bool {
        let Some(id) = self.id(name) else {
            return false;
        };
        if !self.members(id).remove(key) {
            return false;
        }
        if *inline != 0 && *inline == inline_code(id) {
            *inline = 0;
            // Bring a topic from the side map into the record, if one fits there.
            if let Some(list) = self.extra.get_mut(&key)
                && let Some(i) = list.iter().position(|&t| inline_code(t) != 0)
            {
                *inline = inline_code(list.swap_remove(i));
                if list.is_empty() {
                    self.extra.remove(&key);
                }
            }
        } else if let Some(list) = self.extra.get_mut(&key) {
            if let Some(i) = list.iter().position(|&t| t == id) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.extra.remove(&key);
            }
        }
        self.drop_if_empty(id);
        true
    }

    /// Ends every subscription of a connection (it is being removed).
    pub fn remove_conn(&mut self, key: u32, inline: u16) {
        if inline != 0 {
            self.leave(key, inline as u32 - 1);
        }
        if !self.extra.is_empty()
            && let Some(list) = self.extra.remove(&key)
        {
            for id in list {
                self.leave(key, id);
            }
        }
    }

    fn leave(&mut self, key: u32, id: u32) {
        self.members(id).remove(key);
        self.drop_if_empty(id);
    }

    fn drop_if_empty(&mut self, id: u32) {
        let slot = &mut self.topics[id as usize];
        if slot.as_ref().is_some_and(|t| t.members.len() == 0) {
            let topic = slot.take().expect("checked");
            self.ids.remove(&topic.name);
            self.free.push(id);
            if let Some(w) = &self.watch {
                w.lost(&topic.name);
            }
        }
    }

    pub fn is_subscribed(&self, key: u32, name: &str) -> bool {
        self.id(name).is_some_and(|id| {
            self.topics[id as usize]
                .as_ref()
                .is_some_and(|t| t.members.contains(key))
        })
    }

    /// Lends a topic's members out for a publish (so the sender can borrow the rest of the
    /// worker mutably); give them back with [`Topics::restore`]. Nothing may subscribe or
    /// unsubscribe meanwhile (a publish runs no callback).
    pub fn take(&mut self, id: u32) -> Members {
        std::mem::take(self.members(id))
    }

    pub fn restore(&mut self, id: u32, members: Members) {
        *self.members(id) = members;
    }

    /// Subscribers of `topic` on this worker.
    pub fn count(&self, name: &str) -> usize {
        self.id(name)
            .and_then(|id| self.topics[id as usize].as_ref())
            .map_or(0, |t| t.members.len())
    }

    /// Heap bytes the table holds, roughly (for memory reports and tests).
    pub fn bytes(&self) -> usize {
        let topics: usize = self
            .topics
            .iter()
            .flatten()
            .map(|t| t.members.bytes() + 2 * t.name.len())
            .sum();
        let extra: usize = self.extra.values().map(|l| l.capacity() * 4).sum();
        topics
            + self.topics.capacity() * size_of::<Option<Topic>>()
            + self.ids.capacity() * (size_of::<(Box<str>, u32)>() + 1)
            + self.extra.capacity() * (size_of::<(u32, Vec<u32>)>() + 1)
            + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection as the table sees it: its key and its record's topic slot.
    struct C {
        key: u32,
        inline: u16,
    }

    impl C {
        fn new(key: u32) -> Self {
            C { key, inline: 0 }
        }
        fn sub(&mut self, t: &mut Topics, name: &str) -> bool {
            t.subscribe(self.key, &mut self.inline, name)
        }
        fn unsub(&mut self, t: &mut Topics, name: &str) -> bool {
            t.unsubscribe(self.key, &mut self.inline, name)
        }
        fn close(self, t: &mut Topics) {
            t.remove_conn(self.key, self.inline)
        }
    }

    fn members(t: &mut Topics, name: &str) -> Vec<u32> {
        let mut v = Vec::new();
        if let Some(id) = t.id(name) {
            let m = t.take(id);
            m.for_each(|k| v.push(k));
            t.restore(id, m);
        }
        v.sort_unstable();
        v
    }

    fn is_empty(t: &Topics) -> bool {
        t.ids.is_empty() && t.extra.is_empty() && t.topics.iter().all(Option::is_none)
    }

    #[test]
    fn subscribe_unsubscribe_and_cleanup() {
        let mut t = Topics::default();
        let (mut a, mut b) = (C::new(1), C::new(2));
        assert!(a.sub(&mut t, "a"));
        assert!(!a.sub(&mut t, "a"));
        assert!(a.sub(&mut t, "b"));
        assert!(b.sub(&mut t, "a"));
        assert_eq!(t.count("a"), 2);
        assert!(t.is_subscribed(1, "b"));
        assert!(!t.is_subscribed(2, "b"));
        assert!(a.unsub(&mut t, "b"));
        assert!(!a.unsub(&mut t, "b"));
        assert!(!b.unsub(&mut t, "b"));
        assert!(!t.is_subscribed(1, "b"));
        assert_eq!(t.count("b"), 0);
        assert!(t.id("b").is_none(), "an emptied topic is dropped");
        a.close(&mut t);
        assert_eq!(t.count("a"), 1);
        assert!(!t.is_subscribed(1, "a"));
        assert_eq!(members(&mut t, "a"), vec![2]);
        b.close(&mut t);
        assert!(is_empty(&t));
    }

    #[test]
    fn first_topic_inline_others_in_the_side_map() {
        let mut t = Topics::default();
        let mut c = C::new(5);
        assert!(c.sub(&mut t, "one"));
        assert_ne!(c.inline, 0);
        assert!(
            t.extra.is_empty(),
            "one topic needs no per-connection heap object"
        );
        assert!(c.sub(&mut t, "two"));
        assert!(c.sub(&mut t, "three"));
        assert_eq!(t.extra[&5].len(), 2);
        // Leaving the inline topic brings one from the side map into the record.
        assert!(c.unsub(&mut t, "one"));
        assert_ne!(c.inline, 0);
        assert_eq!(t.extra[&5].len(), 1);
        assert!(t.is_subscribed(5, "two") && t.is_subscribed(5, "three"));
        assert!(c.unsub(&mut t, "three"));
        assert!(c.unsub(&mut t, "two"));
        assert_eq!(c.inline, 0);
        assert!(is_empty(&t));
    }

    #[test]
    fn many_topics_per_connection() {
        let mut t = Topics::default();
        let mut c = C::new(9);
        let mut d = C::new(10);
        for i in 0..500 {
            assert!(c.sub(&mut t, &format!("t{i}")));
        }
        assert!(d.sub(&mut t, "t7"));
        for i in 0..500 {
            assert!(t.is_subscribed(9, &format!("t{i}")));
            assert_eq!(members(&mut t, &format!("t{i}"))[0], 9);
        }
        for i in (0..500).step_by(2) {
            assert!(c.unsub(&mut t, &format!("t{i}")));
        }
        assert!(!t.is_subscribed(9, "t0") && t.is_subscribed(9, "t1"));
        c.close(&mut t);
        assert_eq!(t.ids.len(), 1, "only d's topic is left");
        assert_eq!(members(&mut t, "t7"), vec![10]);
        d.close(&mut t);
        assert!(is_empty(&t));
    }

    #[test]
    fn slot_reuse_starts_with_no_subscription() {
        let mut t = Topics::default();
        let mut old = C::new(4);
        old.sub(&mut t, "news");
        old.sub(&mut t, "sport");
        let mut other = C::new(8);
        other.sub(&mut t, "news");
        old.close(&mut t);
        // A new connection in slot 4 (a new record: its topic slot is 0).
        let mut new = C::new(4);
        assert!(!t.is_subscribed(4, "news") && !t.is_subscribed(4, "sport"));
        assert_eq!(members(&mut t, "news"), vec![8]);
        assert!(new.sub(&mut t, "sport"), "the old subscription is gone");
        assert_eq!(members(&mut t, "sport"), vec![4]);
        new.close(&mut t);
        other.close(&mut t);
        assert!(is_empty(&t));
    }

    #[test]
    fn a_topic_emptied_and_recreated() {
        let mut t = Topics::default();
        let mut a = C::new(1);
        a.sub(&mut t, "room");
        let first = t.id("room").unwrap();
        a.unsub(&mut t, "room");
        assert!(t.id("room").is_none());
        let mut b = C::new(2);
        b.sub(&mut t, "other"); // takes the freed id
        assert_eq!(t.id("other"), Some(first));
        assert!(a.sub(&mut t, "room"));
        assert_ne!(t.id("room"), Some(first));
        assert_eq!(members(&mut t, "room"), vec![1]);
        assert_eq!(members(&mut t, "other"), vec![2]);
        assert!(!t.is_subscribed(2, "room") && !t.is_subscribed(1, "other"));
        a.close(&mut t);
        b.close(&mut t);
        assert!(is_empty(&t));
    }

    /// One topic every connection joins: a bit per slot, nothing per connection.
    #[test]
    fn a_big_topic_costs_a_bit_per_slot() {
        let mut t = Topics::default();
        let mut conns: Vec<C> = (0..100_000).map(C::new).collect();
        for c in &mut conns {
            assert!(c.sub(&mut t, "all"));
        }
        assert!(t.extra.is_empty());
        let per_conn = t.bytes() as f64 / conns.len() as f64;
        assert!(per_conn < 0.2, "{per_conn} bytes per connection");
        for c in conns {
            c.close(&mut t);
        }
        assert!(is_empty(&t));
    }
}
