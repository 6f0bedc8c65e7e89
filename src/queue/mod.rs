//! The queue manager's sans-IO parts: durable per-recipient state and retry scheduling.

pub mod schedule;
pub mod state;
