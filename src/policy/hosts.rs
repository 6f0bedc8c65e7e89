//! Which host name an account may log in at (`[policy] require_host_match`): the host
//! configured for its domain (`portcullis domains add DOMAIN --host NAME`), so that each
//! customer's devices use the name (and certificate) meant for them. A domain without a host
//! may log in at any name. Asked only after the password was found right, so the rule tells
//! nothing to someone who does not know it.

use std::sync::Arc;

use crate::accounts::{SqliteStore, canonical_host, same_host};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDecision {
    Allowed,
    /// The account's domain is served by this other host name.
    ServedElsewhere(String),
    /// The policy's data could not be read; the client should retry later.
    Unavailable,
}

pub trait HostPolicy: Send + Sync {
    /// May `user` (whose password was right) log in at `asked`, the host name the client
    /// connected to (see [`asked_host`])?
    fn check(&self, user: &str, asked: &str) -> HostDecision;
}

/// The account store's rule: the host of the account's domain.
pub struct StoreHostPolicy(pub Arc<SqliteStore>);

impl HostPolicy for StoreHostPolicy {
    fn check(&self, user: &str, asked: &str) -> HostDecision {
        match self.0.serving_host(user) {
            Ok(serving) => decide(asked, serving.as_deref()),
            Err(error) => {
                tracing::error!(%error, "cannot read the host serving the account's domain");
                HostDecision::Unavailable
            }
        }
    }
}

/// The rule itself: a domain's host serves it; a domain without one is served everywhere.
pub fn decide(asked: &str, serving: Option<&str>) -> HostDecision {
    match serving {
        Some(serving) if !same_host(serving, asked) => {
            HostDecision::ServedElsewhere(serving.to_string())
        }
        _ => HostDecision::Allowed,
    }
}

/// The host name a client connected to: the name it asked for in the TLS handshake (SNI), or,
/// without one (clients connecting to an address send none), the listener's host name.
pub fn asked_host(server_name: Option<&str>, listener_hostname: &str) -> String {
    canonical_host(server_name.unwrap_or(listener_hostname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domains_host_serves_it_whatever_the_case_or_a_final_dot() {
        assert_eq!(
            decide("box.a.test", Some("box.a.test")),
            HostDecision::Allowed
        );
        assert_eq!(
            decide("box.a.test", Some("Box.A.Test.")),
            HostDecision::Allowed
        );
        assert_eq!(
            decide("box.a.test", Some("box.b.test")),
            HostDecision::ServedElsewhere("box.b.test".into())
        );
    }

    #[test]
    fn a_domain_without_a_host_is_served_everywhere() {
        assert_eq!(decide("anything.test", None), HostDecision::Allowed);
    }

    #[test]
    fn the_asked_host_is_the_sni_name_else_the_listeners() {
        assert_eq!(
            asked_host(Some("BOX.A.TEST."), "mail.example.test"),
            "box.a.test"
        );
        assert_eq!(asked_host(None, "Mail.Example.Test"), "mail.example.test");
    }

    #[test]
    fn the_store_policy_reads_the_host_of_the_accounts_domain() {
        let dir = std::env::temp_dir().join(format!("portcullis-hosts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(SqliteStore::open(&dir).unwrap());
        store
            .add_domain("b.test", Some("box.b.test"), None)
            .unwrap();
        store.add_account("u@b.test", "$argon2id$u").unwrap();
        store.add_account("v@c.test", "$argon2id$v").unwrap();
        let policy = StoreHostPolicy(store);
        assert_eq!(
            policy.check("u@b.test", "box.a.test"),
            HostDecision::ServedElsewhere("box.b.test".into())
        );
        assert_eq!(
            policy.check("u@b.test", "box.b.test"),
            HostDecision::Allowed
        );
        assert_eq!(
            policy.check("v@c.test", "box.a.test"),
            HostDecision::Allowed
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
