//! Topics: subscriptions, and publishing a message once to many.

use std::sync::Arc;

use bytes::Bytes;
use throng_protocol::DataKind;
use throng_protocol::frame::{FrameHead, HeaderBuf};

use super::Core;
use crate::conn::*;
use crate::mailbox::{Publish, Published};
use crate::ws::SendError;

impl<S> Core<S> {
    pub fn subscribe(&mut self, key: usize, topic: &str) -> bool {
        let c = &mut self.conns[key];
        c.flags |= SUBSCRIBED;
        self.topics.subscribe(key as u32, &mut c.topic, topic)
    }

    pub fn unsubscribe(&mut self, key: usize, topic: &str) -> bool {
        let c = &mut self.conns[key];
        self.topics.unsubscribe(key as u32, &mut c.topic, topic)
    }

    pub fn is_subscribed(&self, key: usize, topic: &str) -> bool {
        self.conns[key].has(SUBSCRIBED) && self.topics.is_subscribed(key as u32, topic)
    }

    /// Publishes to `topic` here and on every other worker (once per worker, through
    /// its mailbox). The frame is encoded once, and compressed at most once (for the
    /// subscribers that negotiated permessage-deflate): here before posting when there
    /// are other workers, else when the first deflate subscriber is reached. Returns this
    /// worker's counts.
    pub fn publish(
        &mut self,
        topic: &str,
        kind: DataKind,
        payload: &[u8],
        except: Option<usize>,
    ) -> Published {
        let frame = encode_frame(kind, payload);
        let others = self.peers.workers.get().is_some_and(|p| p.len() > 1);
        let mut deflated = None;
        if others && self.deflate.is_some() {
            deflated = Some(self.deflated_frame(&frame));
        }
        if let Some(peers) = self.peers.workers.get() {
            let mut shared: Option<Arc<str>> = None;
            for (i, peer) in peers.iter().enumerate() {
                if i != self.worker as usize {
                    let topic = shared.get_or_insert_with(|| topic.into()).clone();
                    peer.post(Publish {
                        topic,
                        frame: frame.clone(),
                        deflated: deflated.clone(),
                        reply: None,
                    });
                }
            }
        }
        self.publish_local(topic, &frame, &mut deflated, except)
    }

    /// Delivers an encoded frame to this worker's subscribers of `topic`; those that
    /// negotiated permessage-deflate get `deflated`, compressed here on first need when
    /// it is `None` (not compressed yet).
    pub fn publish_local(
        &mut self,
        topic: &str,
        frame: &Bytes,
        deflated: &mut Option<Option<Bytes>>,
        except: Option<usize>,
    ) -> Published {
        let mut result = Published::default();
        let Some(id) = self.topics.id(topic) else {
            return result;
        };
        let members = self.topics.take(id);
        members.for_each(|key| {
            let key = key as usize;
            // Members are live connections (membership ends in `remove`); the check only
            // keeps a broken invariant from becoming a panic.
            if Some(key) == except || !self.conns.contains(key) {
                return;
            }
            let compressed = if super::deflate::compresses(self.conns[key].flags)
                && self.takes_shared_frame(key)
            {
                deflated
                    .get_or_insert_with(|| self.deflated_frame(frame))
                    .as_ref()
            } else {
                None
            };
            match self.send_encoded(key, compressed.unwrap_or(frame)) {
                Ok(_) => result.reached += 1,
                Err(SendError::Backpressure) => result.dropped += 1,
                Err(SendError::Closed) => {}
            }
        });
        self.topics.restore(id, members);
        result
    }

    /// Handles a publish from another worker or thread.
    pub fn remote_publish(&mut self, mut p: Publish) {
        let result = self.publish_local(&p.topic, &p.frame, &mut p.deflated, None);
        if let Some(reply) = p.reply {
            let _ = reply.send(result);
        }
    }
}

/// Encodes a whole unmasked data frame (header and payload) into one shared buffer.
pub(crate) fn encode_frame(kind: DataKind, payload: &[u8]) -> Bytes {
    let head = data_head(kind, payload.len() as u64);
    let mut hb = HeaderBuf::default();
    let header = head.encode(&mut hb);
    let mut v = Vec::with_capacity(header.len() + payload.len());
    v.extend_from_slice(header);
    v.extend_from_slice(payload);
    Bytes::from(v)
}

/// The header of a whole, final data frame of `len` bytes.
pub(super) fn data_head(kind: DataKind, len: u64) -> FrameHead {
    match kind {
        DataKind::Text => FrameHead::text(len),
        DataKind::Binary => FrameHead::binary(len),
    }
}
