//! Outbound delivery.

pub mod client;
