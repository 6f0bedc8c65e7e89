//! DKIM signing (RFC 6376, RFC 8463): every message whose From: domain has an active key is
//! signed as it is queued, before it is written to the spool, so that every delivery attempt
//! sends the same signed bytes.
//!
//! The signing domain is the From: header's, not the envelope sender's: DMARC aligns DKIM on
//! the From: domain, the one the reader sees, while the envelope sender is often a bounce
//! address of another domain. A message with several From: addresses is signed for the first.
//!
//! [`canon`], [`sign`] and [`key`] are sans-IO; [`store`] is the key files; [`Signer`] holds
//! the active keys in memory for the server, read again every 30 seconds and on SIGHUP.

pub mod canon;
pub mod key;
pub mod records;
pub mod sign;
pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

pub use key::{Algorithm, PrivateKey};
pub use sign::SigningKey;
pub use store::KeyStore;

use crate::delivery::client::limit_line_length;
use crate::smtp::header_from::{self, HeaderFrom};

/// The domain whose key signs `message`: that of its (first) From: address, in lower case.
pub fn signing_domain(message: &[u8]) -> Option<(String, String)> {
    let HeaderFrom::Addresses(addresses) = header_from::addresses(message) else {
        return None;
    };
    let address = addresses.into_iter().next()?;
    let (_, domain) = address.rsplit_once('@')?;
    Some((domain.to_ascii_lowercase(), address))
}

/// The message as it is stored: its DKIM-Signature fields first, then the message with no
/// line longer than 998 octets. Delivery would shorten longer lines after signing and break
/// the signature (the classic "relay re-folded after the signer"), so that is done first, here.
pub fn signed_message(message: &[u8], keys: &[&SigningKey], now: u64) -> Result<Vec<u8>, String> {
    let limited = limit_line_length(message);
    let mut out = sign::sign(&limited, keys, now)?;
    out.extend_from_slice(&limited);
    Ok(out)
}

type KeysByDomain = HashMap<String, Vec<Arc<SigningKey>>>;

/// The server's active keys by domain.
pub struct Signer {
    store: KeyStore,
    keys: RwLock<Arc<KeysByDomain>>,
    state: Mutex<Loaded>,
}

/// What the last refresh loaded and could not read: each change is logged once, not every 30 s.
#[derive(Default)]
struct Loaded {
    loaded: Vec<String>,
    problems: Vec<String>,
}

impl Signer {
    /// The keys of `data_dir`, read now.
    pub fn new(data_dir: &Path) -> Signer {
        let signer = Signer {
            store: KeyStore::new(data_dir),
            keys: RwLock::new(Arc::new(HashMap::new())),
            state: Mutex::new(Loaded::default()),
        };
        signer.refresh();
        signer
    }

    /// Reads the key files again: new keys sign from now on, retired and removed ones stop.
    pub fn refresh(&self) {
        let (keys, problems) = self.store.signing_keys();
        let mut by_domain = KeysByDomain::new();
        for key in keys {
            by_domain
                .entry(key.domain.clone())
                .or_default()
                .push(Arc::new(key));
        }
        // RSA first: a verifier that stops at the first signature it can check is more likely
        // to know rsa-sha256 than ed25519-sha256.
        for keys in by_domain.values_mut() {
            keys.sort_by_key(|k| (k.key.algorithm() != Algorithm::Rsa2048, k.selector.clone()));
        }
        let mut loaded: Vec<String> = by_domain
            .values()
            .flatten()
            .map(|k| format!("{}._domainkey.{}", k.selector, k.domain))
            .collect();
        loaded.sort();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(by_domain);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.loaded != loaded {
            tracing::info!(keys = %loaded.join(" "), "DKIM signing keys loaded");
        }
        for problem in problems.iter().filter(|p| !state.problems.contains(p)) {
            tracing::error!(%problem, "cannot use a DKIM key: mail of its domain goes out without its signature; fix or remove the file");
        }
        *state = Loaded { loaded, problems };
    }

    /// The active keys of `domain` (RSA first), none when it has no key.
    pub fn keys_for(&self, domain: &str) -> Vec<Arc<SigningKey>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.get(domain).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_domain_is_the_first_from_address_s_in_lower_case() {
        let message = b"From: Alice <alice@Example.TEST>, bob@other.test\r\nTo: x@y\r\n\r\n";
        assert_eq!(
            signing_domain(message),
            Some(("example.test".into(), "alice@Example.TEST".into()))
        );
        assert_eq!(signing_domain(b"To: x@y\r\n\r\n"), None);
        assert_eq!(signing_domain(b"From: nobody\r\n\r\n"), None);
    }

    #[test]
    fn a_signed_message_has_no_line_over_998_octets() {
        let pem = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let key = SigningKey {
            domain: "example.test".into(),
            selector: "s".into(),
            key: PrivateKey::from_pem(&pem, Algorithm::Ed25519).unwrap(),
        };
        let mut message = b"From: a@example.test\r\n\r\n".to_vec();
        message.extend(std::iter::repeat_n(b'x', 3000));
        message.extend_from_slice(b"\r\n");
        let signed = signed_message(&message, &[&key], 1).unwrap();
        assert!(signed.starts_with(b"DKIM-Signature: "));
        assert!(signed.split(|&b| b == b'\n').all(|line| line.len() <= 999));
        // What delivery sends is what was signed: its own limit changes nothing now.
        assert_eq!(limit_line_length(&signed).as_ref(), signed.as_slice());
    }

    #[test]
    fn the_signer_serves_the_active_keys_of_a_domain_rsa_first() {
        let data = std::env::temp_dir().join(format!("portcullis-signer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let store = KeyStore::new(&data);
        for (selector, algorithm) in [("a-ed", Algorithm::Ed25519), ("a-rsa", Algorithm::Rsa2048)] {
            let pem = PrivateKey::generate(algorithm).unwrap();
            store
                .create("example.test", selector, algorithm, &pem)
                .unwrap();
        }
        let signer = Signer::new(&data);
        let selectors: Vec<String> = signer
            .keys_for("example.test")
            .iter()
            .map(|k| k.selector.clone())
            .collect();
        assert_eq!(selectors, ["a-rsa", "a-ed"]);
        assert!(signer.keys_for("other.test").is_empty());
        let rsa = store.list(Some("example.test")).unwrap();
        store.retire(&rsa[1]).unwrap();
        signer.refresh();
        assert_eq!(signer.keys_for("example.test").len(), 1);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
