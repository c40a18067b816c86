//! Where output waits before a backend writes it: the per-worker [`Arena`] that stages a
//! turn's small sends without allocating, and each connection's [`Outbox`] for what the
//! socket did not take at once. Both are backend-neutral; the backend contract hands them
//! to a backend to write.

pub mod arena;
pub mod outbox;

pub use arena::{Arena, CHUNK, Piece};
pub use outbox::{IOV_BATCH, Outbox};
