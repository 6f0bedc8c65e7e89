//! Policy: who may connect how often ([`connections`]), how failed logins are slowed, locked
//! and refused ([`logins`]), at which host name an account may log in ([`hosts`]), and which
//! sender addresses an authenticated user may use ([`sender`]).

pub mod connections;
pub mod hosts;
pub mod logins;
pub mod sender;

pub use connections::{ConnectionLimiter, Refusal, canonical};
pub use hosts::{HostDecision, HostPolicy, StoreHostPolicy};
pub use logins::{LoginGuard, LoginPolicy};
pub use sender::{SenderPolicy, StoreSenderPolicy};
