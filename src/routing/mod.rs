//! Routing: where mail for a recipient domain goes (RFC 5321 §5.1, RFC 7505), behind a resolver trait.
//!
//! The core is sans-IO in the sense that matters for tests: DNS is a trait ([`Resolver`]), so the
//! whole decision (static route, MX order, implicit MX, null MX, which failures bounce and which
//! retry) runs against [`FakeResolver`] without a network. The queue asks [`Router::plan`] for a
//! [`Plan`] per recipient domain and only then opens connections.

mod dns;
mod fake;
mod plan;
mod routes;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

pub use dns::{DnsResolver, NoResolver};
pub use fake::{FakeResolver, Lookup};
pub use plan::{Hop, Plan, Router, RoutingError, SkipReason, Skipped, seeded_shuffle};
pub use routes::{DomainPattern, Relay, RelayAuth, Route, RouteTable, TlsPolicy};

/// What a resolver returns: a boxed future, so the trait stays object-safe (`Arc<dyn Resolver>`)
/// without an async-trait dependency. `Send` because the queue drives plans on a multi-thread
/// runtime.
pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// DNS as routing needs it. Implementations answer for one name at a time; retries and timeouts
/// are theirs, and any of them that gives up reports [`DnsError::Temporary`].
pub trait Resolver: Send + Sync {
    /// The MX records of `domain`. `Ok(vec![])` means the name exists but has no MX records
    /// (NODATA), which makes the domain its own mail exchanger (implicit MX).
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<MxRecord>>;

    /// The A and AAAA addresses of `host`, both families. `Ok(vec![])` means the name exists
    /// but has no addresses.
    fn addresses<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>>;
}

/// One MX record as returned by DNS (the exchange as written, perhaps with a final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRecord {
    pub preference: u16,
    pub exchange: String,
}

impl MxRecord {
    pub fn new(preference: u16, exchange: &str) -> Self {
        MxRecord {
            preference,
            exchange: exchange.to_string(),
        }
    }
}

/// Why a lookup produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (RCODE 3). Authoritative, so it is a permanent answer.
    NxDomain,
    /// Timeout, SERVFAIL, refused, network error: the answer may be different later.
    Temporary(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NxDomain => f.write_str("no such domain (NXDOMAIN)"),
            DnsError::Temporary(reason) => write!(f, "temporary DNS failure: {reason}"),
        }
    }
}

/// The form names are compared in: ASCII lower case without the final dot, because DNS names
/// are case-insensitive and "example.com." is the same name as "example.com".
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}
