//! The spool: where a message is made durable before its 250 goes out.
//!
//! The server sees only the [`Spool`] trait; the embedded implementation is an append-only
//! [`log::SegmentLog`] with group commit, so that concurrent sessions share one `fdatasync`.

pub mod log;
mod record;

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::smtp::{Envelope, Submission};

pub use log::SegmentLog;

/// Resolves once the message is durable (`Ok(queue id)`) or definitely not stored.
pub type Receipt = oneshot::Receiver<Result<String, SpoolError>>;

pub trait Spool: Send + Sync {
    /// Queues a message for durable storage. The receipt resolves only after the message and its
    /// envelope are on stable storage.
    fn submit(&self, submission: Submission) -> Receipt;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolError {
    /// The file system is full (ENOSPC or a quota).
    Full,
    /// Any other I/O failure; the text says what failed.
    Io(String),
    /// The spool is shutting down.
    Closed,
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Full => f.write_str("spool file system is full"),
            SpoolError::Io(reason) => write!(f, "spool I/O error: {reason}"),
            SpoolError::Closed => f.write_str("spool is shut down"),
        }
    }
}

impl std::error::Error for SpoolError {}

/// A message as stored: its queue id, envelope and size. This is what `queue list --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: String,
    #[serde(flatten)]
    pub envelope: Envelope,
    pub size: u64,
}
