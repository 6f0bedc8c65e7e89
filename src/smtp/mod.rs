//! The SMTP submission protocol as a sans-IO core: bytes and events in, replies and actions
//! out. Nothing in here touches a socket, a file or a clock it was not given, so every rule is
//! testable on its own and the whole session can be fuzzed.

pub mod address;
pub mod budget;
pub mod command;
pub mod data;
pub mod dsn;
pub mod header_from;
pub mod reply;
pub mod sasl;
pub mod session;

pub use data::BareLineEndings;
pub use reply::{Reply, Status};
pub use session::{
    Action, Allowance, AuthOutcome, Envelope, HeaderFromDecision, Limits, RecipientDsn, Remaining,
    SenderDecision, Session, SessionConfig, SpoolOutcome, Submission, TlsInfo,
};
