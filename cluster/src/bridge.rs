//! The bridge thread: the node's two Redis connections (one subscribing, one publishing:
//! in RESP2 a subscribed connection may not publish), the publish queue, the topic
//! interest the workers report, health checks, reconnects.
//!
//! Nothing here runs on an engine worker: workers and publishing threads only push to a
//! queue or a channel and wake this thread (one eventfd write per burst, coalesced).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::{Events, Interest as Ready, Poll, Token};
use throng_engine::{DataKind, TopicEvent};

use crate::cluster::{LocalPublish, Shared};
use crate::envelope;
use crate::interest::Interest;
use crate::link::{Drained, Link, OpenError};
use crate::options::{Mode, Options};
use crate::resp::{Limits, Value, encode};
use crate::slot::slot;
use crate::stats::{Gap, LinkEvent, bump};
use crate::url::Target;

pub(crate) const WAKE: Token = Token(0);
const SUB: Token = Token(1);
const PUBLISH: Token = Token(2);

/// Wakes the bridge: one wakeup per burst of posts.
pub(crate) struct Nudge {
    waker: mio::Waker,
    pending: AtomicBool,
}

impl Nudge {
    pub fn new(waker: mio::Waker) -> Nudge {
        Nudge {
            waker,
            pending: AtomicBool::new(false),
        }
    }

    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// Called before draining, so a post racing with the drain wakes the bridge again.
    fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// Both connections, up.
pub(crate) struct Up {
    pub sub: Link,
    pub publ: Link,
}

/// Opens both connections.
pub(crate) fn open(target: &Target, opts: &Options) -> Result<Up, OpenError> {
    let limits = limits(opts);
    let sub = Link::open(target, opts.connect_timeout, limits)?;
    let publ = Link::open(target, opts.connect_timeout, limits)?;
    Ok(Up { sub, publ })
}

/// Messages carry a channel name and a payload of up to `max_payload` plus the header.
pub(crate) fn limits(opts: &Options) -> Limits {
    Limits::for_payload(opts.max_payload + envelope::HEADER)
}

/// The outage in progress.
struct Down {
    since: Instant,
    next_try: Instant,
    backoff: Duration,
    /// `dropped` when the link was lost.
    dropped_before: u64,
    unconfirmed: u64,
}

pub(crate) struct Bridge {
    shared: Arc<Shared>,
    local: LocalPublish,
    poll: Poll,
    target: Target,
    opts: Options,
    up: Option<Up>,
    down: Option<Down>,
    topics: Receiver<TopicEvent>,
    interest: Interest,
    values: Vec<Value>,
    /// A link stopped reading at its budget: poll without sleeping.
    again: bool,
    next_health: Instant,
    rng: u64,
}

impl Bridge {
    pub fn new(
        shared: Arc<Shared>,
        local: LocalPublish,
        poll: Poll,
        target: Target,
        opts: Options,
        up: Up,
        topics: Receiver<TopicEvent>,
    ) -> Bridge {
        let rng = shared.node | 1;
        let mut b = Bridge {
            shared,
            local,
            poll,
            target,
            next_health: Instant::now() + opts.health_interval,
            opts,
            up: None,
            down: None,
            topics,
            interest: Interest::default(),
            values: Vec::new(),
            again: false,
            rng,
        };
        if let Err(why) = b.begin(up) {
            b.lose(why);
        }
        b
    }

    /// Runs until the cluster is left.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(16);
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                self.lose(format!("poll: {e}"));
                std::thread::sleep(Duration::from_millis(10));
            }
            self.shared.nudge.clear();
            let stopping = self.shared.stop.load(Ordering::Acquire);
            while let Ok(ev) = self.topics.try_recv() {
                self.interest.apply(ev);
            }
            if self.up.is_some() {
                if let Err(why) = self.serve() {
                    self.lose(why);
                }
            } else if !stopping
                && self
                    .down
                    .as_ref()
                    .is_none_or(|d| Instant::now() >= d.next_try)
            {
                self.reconnect();
            }
            if stopping {
                self.finish();
                return;
            }
        }
    }

    fn timeout(&self) -> Duration {
        let now = Instant::now();
        if self.again {
            return Duration::ZERO;
        }
        match &self.down {
            Some(d) if self.up.is_none() => d.next_try.saturating_duration_since(now),
            _ => self.next_health.saturating_duration_since(now),
        }
    }

    /// A new link: register it, subscribe to everything wanted.
    fn begin(&mut self, mut up: Up) -> Result<(), String> {
        let reg = self.poll.registry();
        let both = Ready::READABLE | Ready::WRITABLE;
        reg.register(&mut up.sub.stream, SUB, both)
            .and_then(|_| reg.register(&mut up.publ.stream, PUBLISH, both))
            .map_err(|e| format!("register: {e}"))?;
        match self.opts.mode {
            Mode::Pattern => {
                let mut pattern = Vec::new();
                for &b in self.shared.prefix.iter() {
                    if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                        pattern.push(b'\\');
                    }
                    pattern.push(b);
                }
                pattern.push(b'*');
                encode::simple(up.sub.out(), &[b"PSUBSCRIBE", &pattern]);
                bump(&self.shared.counters.subscribe_commands);
            }
            Mode::PerTopic | Mode::Sharded => {
                let all = self.interest.resubscribe();
                self.subscription(&mut up.sub, &all, true);
            }
        }
        up.sub.flush()?;
        self.up = Some(up);
        let c = &self.shared.counters;
        let epoch = c.epoch.fetch_add(1, Ordering::Relaxed) + 1;
        c.connected.store(true, Ordering::Relaxed);
        self.next_health = Instant::now() + self.opts.health_interval;
        if let Some(d) = self.down.take() {
            bump(&c.gaps);
            let gap = Gap {
                epoch,
                down_for: d.since.elapsed(),
                dropped: c.dropped.load(Ordering::Relaxed) - d.dropped_before,
                unconfirmed: d.unconfirmed,
            };
            if let Some(f) = &self.opts.on_link {
                f(LinkEvent::Restored(gap));
            }
        }
        Ok(())
    }

    fn reconnect(&mut self) {
        match open(&self.target, &self.opts) {
            Ok(up) => {
                if let Err(why) = self.begin(up) {
                    self.lose(why);
                }
            }
            Err(_) => {
                let d = self.down.as_mut().expect("reconnecting after a loss");
                d.backoff = (d.backoff * 2).min(self.opts.backoff_max);
                let wait = jitter(&mut self.rng, d.backoff);
                d.next_try = Instant::now() + wait;
            }
        }
    }

    /// The link broke (or a check failed): drop both connections and start backing off.
    fn lose(&mut self, why: String) {
        let c = &self.shared.counters;
        let unconfirmed = self.up.take().map_or(0, |up| up.publ.pending);
        c.unconfirmed.fetch_add(unconfirmed, Ordering::Relaxed);
        c.connected.store(false, Ordering::Relaxed);
        c.channels.store(0, Ordering::Relaxed);
        self.interest.lost();
        self.again = false;
        let now = Instant::now();
        match &mut self.down {
            // Lost again right after a reconnect: the same outage goes on.
            Some(d) => d.unconfirmed += unconfirmed,
            None => {
                self.down = Some(Down {
                    since: now,
                    next_try: now,
                    backoff: self.opts.backoff_min,
                    dropped_before: c.dropped.load(Ordering::Relaxed),
                    unconfirmed,
                })
            }
        }
        let d = self.down.as_mut().expect("set");
        d.next_try = now + jitter(&mut self.rng, d.backoff);
        if let Some(f) = &self.opts.on_link {
            f(LinkEvent::Lost {
                epoch: c.epoch.load(Ordering::Relaxed),
                reason: why,
            });
        }
    }

    /// One turn with the link up.
    fn serve(&mut self) -> Result<(), String> {
        let mut up = self.up.take().expect("up");
        let result = self.serve_up(&mut up);
        self.up = Some(up);
        result
    }

    fn serve_up(&mut self, up: &mut Up) -> Result<(), String> {
        self.values.clear();
        let sub_drained = up.sub.read(&mut self.values)?;
        let mut values = std::mem::take(&mut self.values);
        for v in values.drain(..) {
            self.on_sub(up, v);
        }
        let pub_drained = up.publ.read(&mut values)?;
        for v in values.drain(..) {
            self.on_publish_reply(&mut up.publ, v);
        }
        self.values = values;
        self.again = sub_drained == Drained::No || pub_drained == Drained::No;

        if self.opts.mode != Mode::Pattern {
            let changes = self.interest.changes();
            self.subscription(&mut up.sub, &changes.subscribe, true);
            self.subscription(&mut up.sub, &changes.unsubscribe, false);
        }

        let budget = self.opts.pipeline_bytes;
        if up.publ.unsent() < budget {
            let limit = up.publ.out().len() + budget - up.publ.unsent();
            let n = self.shared.queue.take_into(up.publ.out(), limit);
            up.publ.pending += n;
        }

        let now = Instant::now();
        if now >= self.next_health {
            for link in [&mut up.sub, &mut up.publ] {
                match link.ping_sent {
                    Some(t) if now - t > self.opts.health_timeout => {
                        return Err(format!(
                            "Redis did not answer PING in {:?}",
                            self.opts.health_timeout
                        ));
                    }
                    Some(_) => {}
                    None => {
                        encode::simple(link.out(), &[b"PING"]);
                        link.ping_sent = Some(now);
                    }
                }
            }
            self.next_health = now + self.opts.health_interval;
        }
        up.sub.flush()?;
        up.publ.flush()
    }

    /// Writes (un)subscribe commands for `topics`, at most `subscribe_batch` channels
    /// each; sharded ones grouped by hash slot.
    fn subscription(&self, sub: &mut Link, topics: &[Arc<str>], subscribe: bool) {
        if topics.is_empty() {
            return; // an UNSUBSCRIBE without channels would drop them all
        }
        let prefix = &self.shared.prefix;
        let channel = |t: &Arc<str>| [&prefix[..], t.as_bytes()].concat();
        let mut channels: Vec<Vec<u8>> = topics.iter().map(channel).collect();
        let (cmd, sharded): (&[u8], bool) = match (self.opts.mode, subscribe) {
            (Mode::Sharded, true) => (b"SSUBSCRIBE", true),
            (Mode::Sharded, false) => (b"SUNSUBSCRIBE", true),
            (_, true) => (b"SUBSCRIBE", false),
            (_, false) => (b"UNSUBSCRIBE", false),
        };
        if sharded {
            channels.sort_by_key(|c| slot(c));
        }
        let batch = self.opts.subscribe_batch.max(1);
        let mut rest = &channels[..];
        while !rest.is_empty() {
            let mut n = rest.len().min(batch);
            if sharded {
                let s = slot(&rest[0]);
                n = rest[..n].iter().take_while(|c| slot(c) == s).count();
            }
            let mut args: Vec<&[u8]> = Vec::with_capacity(n + 1);
            args.push(cmd);
            args.extend(rest[..n].iter().map(|c| &c[..]));
            encode::simple(sub.out(), &args);
            bump(&self.shared.counters.subscribe_commands);
            rest = &rest[n..];
        }
    }

    /// A value on the subscribing connection.
    fn on_sub(&mut self, up: &mut Up, v: Value) {
        let c = &self.shared.counters;
        let items = match v {
            Value::Array(items) => items,
            Value::Simple(s) if s == b"PONG" => {
                up.sub.ping_sent = None;
                return;
            }
            Value::Error(_) => return bump(&c.redis_errors),
            _ => return bump(&c.garbage),
        };
        let kind = match items.first() {
            Some(Value::Bulk(k)) => k.as_slice(),
            _ => return bump(&c.garbage),
        };
        match (kind, &items[..]) {
            (b"message" | b"smessage", [_, channel, payload])
            | (b"pmessage", [_, _, channel, payload]) => self.deliver(channel, payload),
            (
                b"subscribe" | b"unsubscribe" | b"ssubscribe" | b"sunsubscribe" | b"psubscribe"
                | b"punsubscribe",
                [_, _, Value::Integer(n)],
            ) => c.channels.store((*n).max(0) as u64, Ordering::Relaxed),
            (b"pong", _) => up.sub.ping_sent = None,
            _ => bump(&c.garbage),
        }
    }

    /// A message from Redis: to local subscribers, unless it is bad or our own.
    fn deliver(&self, channel: &Value, payload: &Value) {
        let c = &self.shared.counters;
        let bytes = match payload {
            Value::Bulk(b) => b,
            Value::TooLarge(_) => return bump(&c.oversize),
            _ => return bump(&c.garbage),
        };
        let topic = match channel {
            Value::Bulk(ch) => ch
                .strip_prefix(&self.shared.prefix[..])
                .and_then(|t| std::str::from_utf8(t).ok()),
            _ => None,
        };
        let (Some(topic), Some(m)) = (topic, envelope::parse(bytes)) else {
            return bump(&c.garbage);
        };
        if m.origin == self.shared.node {
            return bump(&c.own);
        }
        let kind = if m.text {
            DataKind::Text
        } else {
            DataKind::Binary
        };
        (self.local)(topic, kind, m.payload);
        bump(&c.received);
    }

    /// A reply on the publishing connection: one per PUBLISH, in order, or a PONG.
    fn on_publish_reply(&mut self, publ: &mut Link, v: Value) {
        let c = &self.shared.counters;
        match v {
            Value::Integer(_) if publ.pending > 0 => {
                publ.pending -= 1;
                bump(&c.sent);
            }
            Value::Simple(s) if s == b"PONG" => publ.ping_sent = None,
            Value::Error(_) => {
                publ.pending = publ.pending.saturating_sub(1);
                bump(&c.redis_errors);
            }
            _ => bump(&c.redis_errors),
        }
    }

    /// Leaving: send what is queued, for up to a second.
    fn finish(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut events = Events::with_capacity(4);
        while let Some(up) = self.up.as_mut() {
            self.shared.queue.take_into(up.publ.out(), usize::MAX);
            if up.publ.flush().is_err() || up.publ.unsent() == 0 || Instant::now() >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(10)));
        }
        self.up = None;
        self.shared
            .counters
            .connected
            .store(false, Ordering::Relaxed);
    }
}

/// `d` scaled by a factor in [0.5, 1): reconnecting nodes do not move in lockstep.
fn jitter(rng: &mut u64, d: Duration) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let f = 0.5 + (*rng >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
    d.mul_f64(f)
}
