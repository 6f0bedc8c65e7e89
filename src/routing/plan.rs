//! The plan for one recipient domain: the hosts to try, in order, with their addresses.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::{DnsError, MxRecord, Relay, RelayAuth, Resolver, RouteTable, TlsPolicy, normalize};

/// One host to try, with every address it has (IPv6 and IPv4, in the resolver's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The MX host (or relay) name: what TLS verifies the certificate against (and sends as
    /// SNI), and what logs show.
    pub name: String,
    pub addresses: Vec<SocketAddr>,
}

/// Why an exchange is missing from a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NoAddresses,
    Dns(DnsError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// In the order to try them: by MX preference, equal preferences shuffled.
    pub hops: Vec<Hop>,
    pub tls: TlsPolicy,
    /// Only ever set for a relay route (see `RouteTable::new`).
    pub auth: Option<RelayAuth>,
    /// The key for per-destination limits: the recipient domain (lower case) for MX delivery,
    /// `relay:HOST:PORT` for a relay, so every domain sent through one relay shares its limits.
    pub destination: String,
    /// Exchanges left out, so a log can say why a backup MX was never tried.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    NullMx { domain: String },
    /// The recipient domain does not exist.
    NoSuchDomain { domain: String },
    /// The domain exists but none of its mail exchangers has an address, and no lookup failed
    /// temporarily (so waiting would not change the answer).
    NoAddresses {
        domain: String,
        skipped: Vec<Skipped>,
    },
    /// A DNS failure that may pass: retry later.
    Temporary { domain: String, reason: String },
}

impl RoutingError {
    /// The basic and enhanced status codes (RFC 5321, RFC 3463) for a DSN or a log.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            // RFC 7505 §4.2 names these codes.
            RoutingError::NullMx { .. } => (556, "5.1.10"),
            // X.1.2 "bad destination system address": the domain itself is wrong.
            RoutingError::NoSuchDomain { .. } => (550, "5.1.2"),
            // X.4.4 "unable to route", not X.1.2: the domain exists (it answered), it is the
            // routing information, its exchangers' addresses, that is missing. The distinction
            // tells the sender to blame the domain's DNS, not the address they typed.
            RoutingError::NoAddresses { .. } => (550, "5.4.4"),
            // X.4.3 "directory server failure": DNS did not answer.
            RoutingError::Temporary { .. } => (451, "4.4.3"),
        }
    }

    pub fn is_permanent(&self) -> bool {
        !matches!(self, RoutingError::Temporary { .. })
    }

    pub fn domain(&self) -> &str {
        match self {
            RoutingError::NullMx { domain }
            | RoutingError::NoSuchDomain { domain }
            | RoutingError::NoAddresses { domain, .. }
            | RoutingError::Temporary { domain, .. } => domain,
        }
    }
}

impl fmt::Display for RoutingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutingError::NullMx { domain } => write!(
                f,
                "{domain}: the domain accepts no mail (null MX, RFC 7505)"
            ),
            RoutingError::NoSuchDomain { domain } => {
                write!(f, "{domain}: the domain does not exist (NXDOMAIN)")
            }
            RoutingError::NoAddresses { domain, skipped } => {
                let names: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
                write!(
                    f,
                    "{domain}: none of its mail exchangers has an address ({})",
                    names.join(", ")
                )
            }
            RoutingError::Temporary { domain, reason } => write!(f, "{domain}: {reason}"),
        }
    }
}

impl std::error::Error for RoutingError {}

/// Decides where mail for a domain goes.
pub struct Router {
    table: RouteTable,
    resolver: Arc<dyn Resolver>,
    mx_port: u16,
    default_tls: TlsPolicy,
}

impl Router {
    /// `mx_port` is 25 in production; tests point it at a local listener.
    pub fn new(
        table: RouteTable,
        resolver: Arc<dyn Resolver>,
        mx_port: u16,
        default_tls: TlsPolicy,
    ) -> Self {
        Router {
            table,
            resolver,
            mx_port,
            default_tls,
        }
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// The plan for `domain`. `shuffle` reorders each group of equally preferred hops (RFC 5321
    /// §5.1 asks for random order among them, to spread load); it is injected so tests are
    /// deterministic. It is only called for groups of two or more.
    pub async fn plan(
        &self,
        domain: &str,
        shuffle: &mut (dyn FnMut(&mut [Hop]) + Send),
    ) -> Result<Plan, RoutingError> {
        let domain = normalize(domain);
        let route = self.table.route_for(&domain);
        let tls = route.and_then(|r| r.tls).unwrap_or(self.default_tls);
        if let Some(route) = route
            && let Some(relay) = &route.relay
        {
            let hop = self.relay_hop(&domain, relay).await?;
            return Ok(Plan {
                hops: vec![hop],
                tls,
                auth: route.auth.clone(),
                destination: format!("relay:{relay}"),
                skipped: Vec::new(),
            });
        }
        if domain.is_empty() {
            return Err(RoutingError::NoSuchDomain { domain });
        }

        let records = match self.resolver.mx(&domain).await {
            Ok(records) => records,
            Err(DnsError::NxDomain) => return Err(RoutingError::NoSuchDomain { domain }),
            Err(DnsError::Temporary(reason)) => {
                return Err(RoutingError::Temporary {
                    domain,
                    reason: format!("MX lookup failed: {reason}"),
                });
            }
        };
        if is_null_mx(&records) {
            return Err(RoutingError::NullMx { domain });
        }
        let implicit = records.is_empty();
        let exchanges = if implicit {
            // RFC 5321 §5.1: no MX records, so the domain is its own exchanger at preference 0.
            vec![(0, domain.clone())]
        } else {
            ordered_exchanges(&records)
        };

        // Sequential lookups: a domain has a handful of exchangers, and a fixed order keeps the
        // resolver's view (and the tests) deterministic.
        let mut resolved: Vec<(u16, Hop)> = Vec::new();
        let mut skipped = Vec::new();
        for (preference, name) in exchanges {
            let reason = match self.resolver.addresses(&name).await {
                Ok(addresses) if !addresses.is_empty() => {
                    let addresses = socket_addresses(&addresses, self.mx_port);
                    resolved.push((preference, Hop { name, addresses }));
                    continue;
                }
                // The domain answered NODATA for MX, so NXDOMAIN now means it vanished between
                // the two questions; either way it does not exist.
                Err(DnsError::NxDomain) if implicit => {
                    return Err(RoutingError::NoSuchDomain { domain });
                }
                Ok(_) => SkipReason::NoAddresses,
                Err(error) => SkipReason::Dns(error),
            };
            skipped.push(Skipped { name, reason });
        }

        if resolved.is_empty() {
            let temporary = skipped.iter().find_map(|s| match &s.reason {
                SkipReason::Dns(DnsError::Temporary(reason)) => Some((s.name.clone(), reason)),
                _ => None,
            });
            return Err(match temporary {
                Some((name, reason)) => RoutingError::Temporary {
                    reason: format!("address lookup for {name} failed: {reason}"),
                    domain,
                },
                None => RoutingError::NoAddresses { domain, skipped },
            });
        }

        let mut hops = Vec::with_capacity(resolved.len());
        for group in resolved.chunk_by(|a, b| a.0 == b.0) {
            let start = hops.len();
            hops.extend(group.iter().map(|(_, hop)| hop.clone()));
            if hops.len() - start > 1 {
                shuffle(&mut hops[start..]);
            }
        }
        Ok(Plan {
            hops,
            tls,
            auth: None,
            destination: domain,
            skipped,
        })
    }

    /// The relay's hop. Every failure here is temporary, NXDOMAIN included: the relay is the
    /// administrator's choice, not the recipient's, so a broken relay name is a configuration
    /// problem to fix while the mail waits, never a reason to bounce it.
    async fn relay_hop(&self, domain: &str, relay: &Relay) -> Result<Hop, RoutingError> {
        let addresses = match relay.ip() {
            Some(address) => vec![address],
            None => {
                let failure = |reason: String| RoutingError::Temporary {
                    domain: domain.to_string(),
                    reason: format!("relay {relay}: {reason}"),
                };
                match self.resolver.addresses(&relay.host).await {
                    Ok(addresses) if !addresses.is_empty() => addresses,
                    Ok(_) => return Err(failure("the host name has no addresses".to_string())),
                    Err(error) => return Err(failure(error.to_string())),
                }
            }
        };
        Ok(Hop {
            name: relay.host.clone(),
            addresses: socket_addresses(&addresses, relay.port),
        })
    }
}

/// RFC 7505 §3: a null MX is a single record whose exchange is the root (".", seen as "" by
/// resolvers that drop the final dot).
fn is_null_mx(records: &[MxRecord]) -> bool {
    matches!(records, [only] if normalize(&only.exchange).is_empty())
}

/// Exchanges by preference (stable, so equal preferences keep DNS order until shuffled), each
/// name once at its best preference. Root exchanges among other records are dropped: they
/// break RFC 7505 §3 and cannot be connected to anyway.
fn ordered_exchanges(records: &[MxRecord]) -> Vec<(u16, String)> {
    let mut sorted: Vec<&MxRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.preference);
    let mut exchanges: Vec<(u16, String)> = Vec::with_capacity(sorted.len());
    for record in sorted {
        let name = normalize(&record.exchange);
        if !name.is_empty() && !exchanges.iter().any(|(_, seen)| *seen == name) {
            exchanges.push((record.preference, name));
        }
    }
    exchanges
}

/// Each address once, in the resolver's order, with `port`.
fn socket_addresses(addresses: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    for address in addresses {
        let socket = SocketAddr::new(*address, port);
        if !unique.contains(&socket) {
            unique.push(socket);
        }
    }
    unique
}

/// A Fisher-Yates shuffle driven by `seed` (SplitMix64): good enough to spread load among equal
/// MX hosts, and reproducible. The queue seeds it from `ring::rand::SystemRandom`.
pub fn seeded_shuffle(seed: u64) -> impl FnMut(&mut [Hop]) + Send {
    let mut state = seed;
    move |hops: &mut [Hop]| {
        for i in (1..hops.len()).rev() {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // The modulo bias is at most 2^-60 for a handful of hosts.
            let j = (z % (i as u64 + 1)) as usize;
            hops.swap(i, j);
        }
    }
}
