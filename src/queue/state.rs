//! The durable per-recipient delivery state log.
