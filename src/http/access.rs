//! Who may use the HTTP listener: with a token, whoever presents it (from any address);
//! without one, loopback clients only. Metrics and the queue name accounts and recipients,
//! so nothing is served to the network without a secret.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 403: no token is configured and the client is not on loopback.
    LoopbackOnly,
    /// 401: a token is configured and the request does not carry it.
    TokenRequired,
}

/// The decision for a request from `peer` with the `Authorization` header `authorization`.
pub fn decide(peer: IpAddr, token: Option<&str>, authorization: Option<&[u8]>) -> Access {
    match token {
        None if is_loopback(peer) => Access::Allowed,
        None => Access::LoopbackOnly,
        Some(token) => match authorization.and_then(bearer) {
            Some(presented) if same_secret(presented, token.as_bytes()) => Access::Allowed,
            _ => Access::TokenRequired,
        },
    }
}

/// `::ffff:127.0.0.1` (a dual-stack socket's view of an IPv4 client) is loopback too.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The credentials of `Bearer CREDENTIALS` (the scheme in any case, RFC 6750 §2.1).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    presented.len() == secret.len()
        && presented
            .iter()
            .zip(secret)
            .fold(0u8, |differs, (a, b)| differs | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_a_token_only_loopback_is_served() {
        assert_eq!(decide(ip("127.0.0.1"), None, None), Access::Allowed);
        assert_eq!(decide(ip("127.0.0.9"), None, None), Access::Allowed);
        assert_eq!(decide(ip("::1"), None, None), Access::Allowed);
        assert_eq!(decide(ip("::ffff:127.0.0.1"), None, None), Access::Allowed);
        assert_eq!(decide(ip("192.0.2.7"), None, None), Access::LoopbackOnly);
        assert_eq!(decide(ip("2001:db8::1"), None, None), Access::LoopbackOnly);
        // A header does not open the door when no token is configured.
        let header = Some(&b"Bearer anything"[..]);
        assert_eq!(decide(ip("192.0.2.7"), None, header), Access::LoopbackOnly);
    }

    #[test]
    fn with_a_token_everyone_must_present_it() {
        let token = Some("s3cret");
        let with = |header: &'static str| Some(header.as_bytes());
        assert_eq!(
            decide(ip("192.0.2.7"), token, with("Bearer s3cret")),
            Access::Allowed
        );
        assert_eq!(
            decide(ip("127.0.0.1"), token, with("bearer s3cret")),
            Access::Allowed
        );
        // Loopback is no exception once a token is set.
        assert_eq!(decide(ip("127.0.0.1"), token, None), Access::TokenRequired);
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer",
        ] {
            assert_eq!(
                decide(ip("192.0.2.7"), token, with(wrong)),
                Access::TokenRequired,
                "{wrong}"
            );
        }
    }
}
