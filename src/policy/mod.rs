//! Policy: who may connect how often ([`connections`]) and which sender addresses an
//! authenticated user may use ([`sender`]).

pub mod connections;
pub mod sender;

pub use connections::{ConnectionLimiter, Refusal, canonical};
pub use sender::{SenderPolicy, StoreSenderPolicy};
