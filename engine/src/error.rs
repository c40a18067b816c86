//! The engine's error type: what can stop a server from starting or running, each case
//! distinct so that a program can react without parsing messages.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::config::BackendKind;

/// A setting [`crate::Config::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The `Config` field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: String) -> Self {
        ConfigError { field, reason }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Why a server did not start, or stopped badly.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid.
    InvalidConfig(ConfigError),
    /// A listener could not bind its address (in use, not permitted, ...).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the kernel said.
        source: io::Error,
    },
    /// The address is already taken by another process: binding it would have joined
    /// that process's `SO_REUSEPORT` group and split its traffic.
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// io_uring was asked for (by the config or `THRONG_BACKEND`) and cannot run here.
    BackendUnavailable {
        /// The probe's reason (seccomp, kernel version, `io_uring_disabled`, ...).
        reason: String,
    },
    /// `THRONG_BACKEND` holds a value that names no backend.
    BadBackendVariable {
        /// The value found.
        value: String,
    },
    /// A worker's backend could not be set up (ring, buffers, epoll instance).
    BackendSetup {
        /// The backend being set up.
        backend: BackendKind,
        /// What failed.
        source: io::Error,
    },
    /// A worker thread could not be started.
    Spawn(io::Error),
    /// A worker's run loop failed (its wait returned an error).
    Worker {
        /// The worker's index.
        worker: usize,
        /// What failed.
        source: io::Error,
    },
    /// A worker thread panicked (a bug in the engine: handler panics are caught per
    /// connection). Its connections were closed; the other workers kept running.
    WorkerPanicked {
        /// The worker's index.
        worker: usize,
        /// The panic message, when it was a string.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(e) => e.fmt(f),
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::AddrInUse { addr } => write!(
                f,
                "cannot listen on {addr}: address in use (another process holds it)"
            ),
            Error::BackendUnavailable { reason } => {
                write!(f, "io_uring was asked for and cannot run here: {reason}")
            }
            Error::BadBackendVariable { value } => write!(
                f,
                "THRONG_BACKEND={value:?} names no backend (expected auto, uring or epoll)"
            ),
            Error::BackendSetup { backend, source } => {
                write!(f, "{} backend setup failed: {source}", backend.name())
            }
            Error::Spawn(e) => write!(f, "cannot start a worker thread: {e}"),
            Error::Worker { worker, source } => write!(f, "worker {worker} failed: {source}"),
            Error::WorkerPanicked { worker, message } => {
                write!(f, "worker {worker} panicked: {message}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidConfig(e) => Some(e),
            Error::Bind { source, .. }
            | Error::BackendSetup { source, .. }
            | Error::Worker { source, .. } => Some(source),
            Error::Spawn(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::InvalidConfig(e)
    }
}

impl From<Error> for io::Error {
    /// For programs that handle every error as an `io::Error`.
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Bind { source, .. } => source.kind(),
            Error::AddrInUse { .. } => io::ErrorKind::AddrInUse,
            Error::BackendUnavailable { .. } => io::ErrorKind::Unsupported,
            Error::InvalidConfig(_) | Error::BadBackendVariable { .. } => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
