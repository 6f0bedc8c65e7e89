//! Policy: who may connect how often ([`connections`]), how failed logins are slowed, locked
//! and refused ([`logins`]), and which sender addresses an authenticated user may use
//! ([`sender`]).

pub mod connections;
pub mod logins;
pub mod sender;

pub use connections::{ConnectionLimiter, Refusal, canonical};
pub use logins::{LoginGuard, LoginPolicy};
pub use sender::{SenderPolicy, StoreSenderPolicy};
