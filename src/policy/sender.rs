//! Sender authorization (RFC 6409 §6.1): a submission server must not let a logged-in user
//! send as somebody else. The server asks a [`SenderPolicy`]; the embedded default allows a user
//! exactly their own address. (Aliases and granted domains extend it.)

use crate::smtp::SenderDecision;

pub trait SenderPolicy: Send + Sync {
    /// May `user` (the authenticated account) use `sender` as MAIL FROM? The null sender is
    /// decided by the session itself and never asked about.
    fn authorize(&self, user: &str, sender: &str) -> SenderDecision;
}

/// Each account may send as its own address only, compared case-insensitively as logins are.
pub struct OwnAddressOnly;

impl SenderPolicy for OwnAddressOnly {
    fn authorize(&self, user: &str, sender: &str) -> SenderDecision {
        if crate::auth::canonical_username(sender) == user {
            SenderDecision::Allowed
        } else {
            SenderDecision::Denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_address_in_any_case_and_nothing_else() {
        let policy = OwnAddressOnly;
        assert_eq!(
            policy.authorize("alice@example.test", "Alice@Example.TEST"),
            SenderDecision::Allowed
        );
        assert_eq!(
            policy.authorize("alice@example.test", "bob@example.test"),
            SenderDecision::Denied
        );
        assert_eq!(
            policy.authorize("alice@example.test", "alice@example.test.evil"),
            SenderDecision::Denied
        );
    }
}
