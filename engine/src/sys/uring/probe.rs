//! Whether this process can run the io_uring backend: probed once, the answer cached.
//!
//! The probe builds a ring exactly as a worker does, asks the kernel which opcodes it
//! offers, and registers a small provided-buffer ring. Any refusal (ENOSYS on an old
//! kernel, EPERM from a container's seccomp profile or `kernel.io_uring_disabled`) makes
//! the answer an error that says why; `BackendChoice::Auto` then runs epoll.

use std::io;
use std::sync::OnceLock;

use io_uring::{IoUring, Probe, opcode};

use super::bufring::{BufRing, RING_INC};

/// What the kernel offers beyond the required minimum.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// Provided buffers are consumed incrementally (6.12+): a small receive takes only
    /// the bytes it needs from a buffer, so one buffer serves many connections.
    pub incremental_buffers: bool,
}

/// Test hook: when set, the probe fails with this text, as on a kernel without io_uring.
pub const FAIL_ENV: &str = "THRONG_URING_PROBE_FAIL";

/// The cached probe result.
pub fn probe() -> Result<Features, String> {
    static RESULT: OnceLock<Result<Features, String>> = OnceLock::new();
    if let Ok(why) = std::env::var(FAIL_ENV) {
        // Not cached: a test flips it within one process.
        return Err(format!("probe failure simulated via {FAIL_ENV}: {why}"));
    }
    RESULT.get_or_init(run).clone()
}

/// Builds a ring with the worker's setup flags, dropping the newest ones the kernel lacks.
/// `defer`: deferred task work (the default; `Config::uring_defer_taskrun`), else
/// cooperative task work only, for A/B measurements.
pub(super) fn build_ring(entries: u32, defer: bool) -> io::Result<IoUring> {
    let cq = entries * 4;
    if !defer {
        return IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_cqsize(cq)
            .build(entries);
    }
    let full = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_no_sqarray()
        .setup_cqsize(cq)
        .build(entries);
    match full {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(cq)
            .build(entries),
        other => other,
    }
}

/// Opcodes the backend submits.
const REQUIRED: [(u8, &str); 6] = [
    (opcode::AcceptMulti::CODE, "accept"),
    (opcode::RecvMulti::CODE, "recv"),
    (opcode::Send::CODE, "send"),
    (opcode::SendMsg::CODE, "sendmsg"),
    (opcode::AsyncCancel2::CODE, "async_cancel"),
    (opcode::Read::CODE, "read"),
];

fn run() -> Result<Features, String> {
    let ring = build_ring(8, true).map_err(|e| explain("ring setup", &e))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| explain("opcode probe", &e))?;
    for (code, name) in REQUIRED {
        if !probe.is_supported(code) {
            return Err(format!("the kernel lacks the io_uring {name} opcode"));
        }
    }
    let incremental = match BufRing::new(&ring, 8, 4096, RING_INC, 8) {
        Ok(_) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            BufRing::new(&ring, 8, 4096, 0, 8).map_err(|e| explain("provided-buffer ring", &e))?;
            false
        }
        Err(e) => return Err(explain("provided-buffer ring", &e)),
    };
    Ok(Features {
        incremental_buffers: incremental,
    })
}

fn explain(step: &str, e: &io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring is not in this kernel".to_string(),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("io_uring is blocked (seccomp profile or kernel.io_uring_disabled={disabled})")
        }
        _ => e.to_string(),
    };
    format!("{step} failed: {why}")
}
