//! How a busy worker waits: for a batch of completions rather than one at a time.

use std::time::Duration;

/// How a poll waits. With deferred task work the kernel wakes a waiting worker only once
/// as many completions are pending as it waits for; waiting for one each time (the
/// simple way) means that a worker faster than its peers sleeps and is woken for almost
/// every message, and each wakeup (an IPI, in the sender's context) is paid by the
/// peer's send. Under load the worker therefore waits for about half as many completions
/// as its last poll brought, and at most `min_wait_us` for them (then it takes what is
/// there), so one wakeup covers a batch; when the load is light (a poll brought one or
/// two) it waits for one and answers at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    /// Most completions waited for; 1 turns batching off.
    pub(super) max_nr: usize,
    /// Longest wait for a batch once one completion is there.
    pub(super) min_wait_us: u32,
    /// Receives (and accepts) the last poll handled.
    pub(super) last: usize,
}

impl Wait {
    /// `max_nr` completions at most, `min_wait` at most for them; batching needs the
    /// kernel's minimum-wait timeout (6.12+), without it every wait is for one.
    pub(super) fn new(min_timeout: bool, max_nr: u32, min_wait: Duration) -> Wait {
        Wait {
            max_nr: if min_timeout {
                max_nr.max(1) as usize
            } else {
                1
            },
            min_wait_us: min_wait.as_micros().min(u32::MAX as u128) as u32,
            last: 0,
        }
    }

    /// Completions to wait for now, and the batch timeout to go with them.
    pub(super) fn next(&self) -> (usize, u32) {
        let nr = (self.last / 2).clamp(1, self.max_nr);
        if nr == 1 || self.min_wait_us == 0 {
            (1, 0)
        } else {
            (nr, self.min_wait_us)
        }
    }
}
