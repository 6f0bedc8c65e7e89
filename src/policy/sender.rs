//! Sender authorization (RFC 6409 §6.1): a submission server must not let a logged-in user
//! send as somebody else. The server asks a [`SenderPolicy`]; the embedded one allows an account
//! its own address, its aliases and the domains granted to it ([`StoreSenderPolicy`]).

use std::sync::Arc;

use crate::accounts::{SenderRule, SqliteStore};
use crate::smtp::SenderDecision;

pub trait SenderPolicy: Send + Sync {
    /// May `user` (the authenticated account) use `sender` as MAIL FROM? The null sender is
    /// decided by the session itself and never asked about.
    fn authorize(&self, user: &str, sender: &str) -> SenderDecision;
}

/// The account store's rules: own address, aliases, granted domains.
pub struct StoreSenderPolicy(pub Arc<SqliteStore>);

impl SenderPolicy for StoreSenderPolicy {
    fn authorize(&self, user: &str, sender: &str) -> SenderDecision {
        match self
            .0
            .sender_rule(user, &crate::auth::canonical_username(sender))
        {
            Ok(SenderRule::NotOwned) => SenderDecision::Denied,
            Ok(_) => SenderDecision::Allowed,
            Err(error) => {
                tracing::error!(%error, "cannot check the sender address");
                SenderDecision::Unavailable
            }
        }
    }
}
