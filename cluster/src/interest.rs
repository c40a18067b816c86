//! Which topics this node wants from Redis: the union over its workers of the topics
//! with local subscribers, from the engine's [`TopicEvent`]s, and the batched changes
//! that bring Redis's subscriptions in line with it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use throng_engine::TopicEvent;

/// The node's interest and what Redis has been asked for.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    /// Topic -> workers with subscribers of it (each worker reports in order, so a
    /// count is exact).
    workers: HashMap<Arc<str>, u32>,
    /// Topics subscribed on the current link.
    subscribed: HashSet<Arc<str>>,
    /// Topics whose count went to or from zero since the last [`Interest::changes`].
    touched: Vec<Arc<str>>,
}

/// Subscriptions to add and to drop.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub subscribe: Vec<Arc<str>>,
    pub unsubscribe: Vec<Arc<str>>,
}

impl Interest {
    pub fn apply(&mut self, event: TopicEvent) {
        match event {
            TopicEvent::Gained { topic, .. } => {
                let n = self.workers.entry(topic.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    self.touched.push(topic);
                }
            }
            TopicEvent::Lost { topic, .. } => {
                if let Some(n) = self.workers.get_mut(&topic) {
                    *n -= 1;
                    if *n == 0 {
                        self.workers.remove(&topic);
                        self.touched.push(topic);
                    }
                }
            }
        }
    }

    /// The net changes since the last call (a topic gained and lost meanwhile needs
    /// none), recorded as done.
    pub fn changes(&mut self) -> Changes {
        let mut c = Changes::default();
        for topic in self.touched.drain(..) {
            let wanted = self.workers.contains_key(&topic);
            if wanted && !self.subscribed.contains(&topic) {
                self.subscribed.insert(topic.clone());
                c.subscribe.push(topic);
            } else if !wanted && self.subscribed.remove(&topic) {
                c.unsubscribe.push(topic);
            }
        }
        c
    }

    /// A new link starts with nothing subscribed: everything wanted is to subscribe.
    pub fn resubscribe(&mut self) -> Vec<Arc<str>> {
        self.touched.clear();
        self.subscribed = self.workers.keys().cloned().collect();
        self.subscribed.iter().cloned().collect()
    }

    /// The link was lost: nothing is subscribed.
    pub fn lost(&mut self) {
        self.subscribed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gained(worker: usize, t: &str) -> TopicEvent {
        TopicEvent::Gained {
            worker,
            topic: t.into(),
        }
    }
    fn lost(worker: usize, t: &str) -> TopicEvent {
        TopicEvent::Lost {
            worker,
            topic: t.into(),
        }
    }
    fn names(v: &[Arc<str>]) -> Vec<&str> {
        let mut v: Vec<&str> = v.iter().map(|s| &**s).collect();
        v.sort();
        v
    }

    #[test]
    fn union_over_workers_and_net_changes() {
        let mut i = Interest::default();
        i.apply(gained(0, "a"));
        i.apply(gained(1, "a"));
        i.apply(gained(0, "b"));
        let c = i.changes();
        assert_eq!(names(&c.subscribe), ["a", "b"]);
        assert!(c.unsubscribe.is_empty());
        // One worker leaving "a" keeps it; both leaving drops it.
        i.apply(lost(0, "a"));
        assert_eq!(i.changes(), Changes::default());
        i.apply(lost(1, "a"));
        assert_eq!(names(&i.changes().unsubscribe), ["a"]);
        // Gained and lost between two batches: nothing to send.
        i.apply(gained(0, "c"));
        i.apply(lost(0, "c"));
        assert_eq!(i.changes(), Changes::default());
        // Lost and regained while subscribed: nothing either.
        i.apply(lost(0, "b"));
        i.apply(gained(1, "b"));
        assert_eq!(i.changes(), Changes::default());
        i.lost();
        assert_eq!(names(&i.resubscribe()), ["b"]);
        // A stray Lost does not underflow.
        i.apply(lost(3, "zzz"));
        assert_eq!(i.changes(), Changes::default());
    }
}
