//! Why joining a cluster failed.

use std::fmt;
use std::io;
use std::time::Duration;

/// Why [`crate::Cluster::join`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClusterError {
    /// The Redis URL is not `redis://[[user]:password@]host[:port][/db]`.
    Url(String),
    /// No TCP connection to Redis (refused, unreachable, timed out, name not resolved).
    Connect {
        /// `host:port`.
        addr: String,
        /// The last attempt's error.
        source: io::Error,
        /// How long join kept trying; `None` when [`crate::Options::join_retry`] is not
        /// set (one attempt).
        tried: Option<Duration>,
    },
    /// Redis answered the connection's first commands (AUTH, PING) with an error or with
    /// something that is not RESP: a wrong password, a server that is not Redis.
    Handshake {
        /// `host:port`.
        addr: String,
        /// What it answered.
        reason: String,
    },
    /// The bridge thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Url(why) => write!(f, "bad Redis URL {why}"),
            ClusterError::Connect {
                addr,
                source,
                tried,
            } => {
                write!(f, "cannot connect to Redis at {addr}: {source}")?;
                match tried {
                    None => f.write_str(" (Options::join_retry makes join wait for it)"),
                    Some(t) => write!(f, " (kept trying for {:.1} s)", t.as_secs_f64()),
                }
            }
            ClusterError::Handshake { addr, reason } => {
                write!(f, "Redis at {addr} refused the connection: {reason}")
            }
            ClusterError::Thread(e) => write!(f, "cannot start the cluster bridge thread: {e}"),
        }
    }
}

impl std::error::Error for ClusterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClusterError::Connect { source, .. } | ClusterError::Thread(source) => Some(source),
            _ => None,
        }
    }
}
