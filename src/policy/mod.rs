//! Policy: who may connect how often ([`connections`]), how failed logins are slowed, locked
//! and refused ([`logins`]), at which host name an account may log in ([`hosts`]), which
//! sender addresses an authenticated user may use ([`sender`]), and how much it may send
//! ([`quotas`]).

pub mod connections;
pub mod hosts;
pub mod logins;
pub mod quotas;
pub mod sender;

pub use connections::{ConnectionLimiter, Refusal, canonical};
pub use hosts::{HostDecision, HostPolicy, StoreHostPolicy};
pub use logins::{LoginGuard, LoginPolicy};
pub use quotas::QuotaBook;
pub use sender::{SenderPolicy, StoreSenderPolicy};
