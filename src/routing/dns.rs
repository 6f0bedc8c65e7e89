//! [`Resolver`] over real DNS, with hickory-resolver.
//!
//! Routing needs three answers told apart (RFC 5321 §5.1, RFC 7505): the name does not exist
//! (bounce), the name exists without records of the type asked (implicit MX, or no address),
//! and "no answer now" (retry later). hickory reports the first two as errors that carry the
//! response code, and everything else (SERVFAIL, REFUSED, timeouts, I/O) as other errors; this
//! module maps them onto [`DnsError`] and nothing else.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver as Hickory, TokioResolver};

use super::{DnsError, DnsFuture, MxRecord, Resolver};

/// How long one try waits for an answer: resolv.conf's default.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per question, so a lost UDP datagram costs a retry rather than a deferral, while an
/// unreachable server costs about `TRIES * TIMEOUT`, not minutes.
const TRIES: usize = 2;

/// DNS lookups through the system's resolvers (`/etc/resolv.conf`) or the configured ones
/// (`[delivery] dns_servers`).
///
/// Every name is asked fully qualified, so resolv.conf's `search` and `domain` never apply:
/// a recipient domain `example` must not turn into `example.corp.internal`. Answers are cached
/// for their TTL. Lookups must run on a tokio runtime (multi-thread or not); the resolver opens
/// its connections on the runtime of the first lookup that needs them.
pub struct DnsResolver {
    inner: TokioResolver,
    /// Where questions go, for `Debug` and logs.
    servers: String,
}

impl DnsResolver {
    /// `servers` empty: the system's configuration (its servers; our timeouts). Otherwise
    /// exactly those servers, over UDP with TCP for truncated answers, and without
    /// `/etc/hosts`: whoever lists servers explicitly wants their answers and no others.
    pub fn new(servers: &[SocketAddr]) -> Result<DnsResolver, String> {
        let provider = TokioRuntimeProvider::default();
        let (mut builder, description) = if servers.is_empty() {
            let builder = Hickory::builder(provider).map_err(|err| {
                format!("cannot use the system's DNS configuration (/etc/resolv.conf): {err}")
            })?;
            (builder, "system resolvers (/etc/resolv.conf)".to_string())
        } else {
            let config = ResolverConfig::from_name_servers(
                servers.iter().copied().map(name_server).collect(),
            );
            let list: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
            (
                Hickory::builder_with_config(config, provider),
                list.join(", "),
            )
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = TIMEOUT;
        // hickory counts the retries after the first try.
        options.attempts = TRIES - 1;
        if !servers.is_empty() {
            options.use_hosts_file = ResolveHosts::Never;
        }
        let inner = builder
            .build()
            .map_err(|err| format!("cannot set up DNS resolution via {description}: {err}"))?;
        Ok(DnsResolver {
            inner,
            servers: description,
        })
    }

    /// The records of `kind` at `name`: `Ok(vec![])` for NODATA, [`DnsError::NxDomain`] for
    /// NXDOMAIN, [`DnsError::Temporary`] for any other failure.
    async fn query(&self, name: &str, kind: RecordType) -> Result<Vec<RData>, DnsError> {
        let fqdn = fully_qualified(name)?;
        let answer = self.inner.lookup(fqdn.clone(), kind).await;
        records(answer, kind).map_err(|reason| match reason {
            Failure::NxDomain => DnsError::NxDomain,
            Failure::Temporary(reason) => {
                DnsError::Temporary(format!("{kind} {}: {reason}", fqdn.to_ascii()))
            }
        })
    }
}

impl fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsResolver")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// Stands in when the system has no usable DNS configuration (no /etc/resolv.conf): the server
/// still starts, and every lookup fails temporarily with the reason, so mail is deferred
/// (`4.4.3`) and `queue list` says why instead of the server refusing to run.
#[derive(Debug)]
pub struct NoResolver(pub String);

impl Resolver for NoResolver {
    fn mx<'a>(&'a self, _domain: &'a str) -> DnsFuture<'a, Vec<MxRecord>> {
        Box::pin(async move { Err(DnsError::Temporary(self.0.clone())) })
    }

    fn addresses<'a>(&'a self, _host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move { Err(DnsError::Temporary(self.0.clone())) })
    }
}

impl Resolver for DnsResolver {
    /// Exchanges in ASCII (A-label) form with their final dot, as written in the zone; a null
    /// MX (RFC 7505, `MX 0 .`) comes back as exchange `"."`, which the router recognises.
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<MxRecord>> {
        Box::pin(async move {
            let records = self.query(domain, RecordType::MX).await?;
            Ok(records
                .into_iter()
                .filter_map(|data| match data {
                    RData::MX(mx) => Some(MxRecord {
                        preference: mx.preference,
                        exchange: mx.exchange.to_ascii(),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    /// A and AAAA asked at once, combined by [`combine`].
    fn addresses<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let (v6, v4) = tokio::join!(
                self.query(host, RecordType::AAAA),
                self.query(host, RecordType::A)
            );
            let v6 = v6.map(|records| {
                records
                    .into_iter()
                    .filter_map(|data| match data {
                        RData::AAAA(address) => Some(address.0),
                        _ => None,
                    })
                    .collect()
            });
            let v4 = v4.map(|records| {
                records
                    .into_iter()
                    .filter_map(|data| match data {
                        RData::A(address) => Some(address.0),
                        _ => None,
                    })
                    .collect()
            });
            combine(v6, v4)
        })
    }
}

/// One server, UDP first and TCP when an answer comes back truncated.
fn name_server(address: SocketAddr) -> NameServerConfig {
    let connection = |mut config: ConnectionConfig| {
        config.port = address.port();
        config
    };
    NameServerConfig::new(
        address.ip(),
        true,
        vec![
            connection(ConnectionConfig::udp()),
            connection(ConnectionConfig::tcp()),
        ],
    )
}

/// `name` with its final dot, so no search domain is ever tried. A name that cannot be put in
/// a DNS question (a label over 63 octets, say) cannot exist either: that is an NXDOMAIN, not
/// something to retry for days.
fn fully_qualified(name: &str) -> Result<Name, DnsError> {
    let parsed = if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        // A U-label domain (SMTPUTF8): its A-label form is what DNS holds.
        Name::from_utf8(name)
    };
    let mut fqdn = parsed.map_err(|_| DnsError::NxDomain)?;
    fqdn.set_fqdn(true);
    Ok(fqdn)
}

/// A lookup that produced no records, before the name and type are added to the reason.
#[derive(Debug, PartialEq)]
enum Failure {
    NxDomain,
    Temporary(String),
}

/// The records of `kind` in hickory's answer (which may also hold the CNAMEs that led there).
/// hickory reports NXDOMAIN and NODATA as `NoRecordsFound` with the response code; only those
/// two are answers, every other error is a failure to get one.
fn records(answer: Result<Lookup, NetError>, kind: RecordType) -> Result<Vec<RData>, Failure> {
    use hickory_resolver::net::DnsError as HickoryDnsError;
    use hickory_resolver::net::NoRecords;
    match answer {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter(|record| record.record_type() == kind)
            .map(|record| record.data.clone())
            .collect()),
        Err(NetError::Dns(HickoryDnsError::NoRecordsFound(NoRecords {
            response_code, ..
        }))) => match response_code {
            ResponseCode::NXDomain => Err(Failure::NxDomain),
            ResponseCode::NoError => Ok(Vec::new()),
            code => Err(Failure::Temporary(format!("the server answered {code}"))),
        },
        Err(NetError::Dns(HickoryDnsError::ResponseCode(code))) => {
            Err(Failure::Temporary(format!("the server answered {code}")))
        }
        Err(NetError::Timeout) => Err(Failure::Temporary(format!(
            "no answer within {} seconds ({TRIES} tries)",
            TIMEOUT.as_secs()
        ))),
        Err(err) => Err(Failure::Temporary(err.to_string())),
    }
}

/// Both families' answers as one list.
///
/// Any address is an answer: if one family fails temporarily while the other has addresses,
/// those are returned, because they are usable now and the failing family may stay broken for
/// a long time. With no address at all, NXDOMAIN from either query wins (the name does not
/// exist, whatever the other said), then a temporary failure (the missing family might hold
/// the only address, so "no addresses", which bounces, would be a guess), and only two NODATA
/// answers make `Ok(vec![])`.
///
/// The order alternates families, IPv6 first (RFC 8305 §4): IPv6 is what RFC 6724 prefers,
/// and alternating means a host whose IPv6 is broken loses one connect timeout per MX, not one
/// per IPv6 address. Within a family, the order of the answer.
fn combine(
    v6: Result<Vec<Ipv6Addr>, DnsError>,
    v4: Result<Vec<Ipv4Addr>, DnsError>,
) -> Result<Vec<IpAddr>, DnsError> {
    let six = v6.as_deref().unwrap_or_default();
    let four = v4.as_deref().unwrap_or_default();
    if !six.is_empty() || !four.is_empty() {
        let mut addresses = Vec::with_capacity(six.len() + four.len());
        for i in 0..six.len().max(four.len()) {
            addresses.extend(six.get(i).copied().map(IpAddr::V6));
            addresses.extend(four.get(i).copied().map(IpAddr::V4));
        }
        return Ok(addresses);
    }
    match (v6, v4) {
        (Err(DnsError::NxDomain), _) | (_, Err(DnsError::NxDomain)) => Err(DnsError::NxDomain),
        (Err(DnsError::Temporary(a)), Err(DnsError::Temporary(b))) => {
            Err(DnsError::Temporary(format!("{a}; {b}")))
        }
        (Err(temporary), Ok(_)) | (Ok(_), Err(temporary)) => Err(temporary),
        (Ok(_), Ok(_)) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn without_a_resolver_every_lookup_is_temporary_with_the_reason() {
        let resolver = NoResolver("no /etc/resolv.conf".into());
        let temporary = Err(DnsError::Temporary("no /etc/resolv.conf".into()));
        assert_eq!(resolver.mx("example.org").await, temporary);
        assert_eq!(
            resolver.addresses("mx.example.org").await,
            Err(DnsError::Temporary("no /etc/resolv.conf".into()))
        );
    }

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    fn v4(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    fn temporary(reason: &str) -> DnsError {
        DnsError::Temporary(reason.to_string())
    }

    #[test]
    fn families_alternate_ipv6_first() {
        let both = combine(
            Ok(vec![
                v6("2001:db8::1"),
                v6("2001:db8::2"),
                v6("2001:db8::3"),
            ]),
            Ok(vec![v4("192.0.2.1")]),
        );
        assert_eq!(
            both,
            Ok(ips(&[
                "2001:db8::1",
                "192.0.2.1",
                "2001:db8::2",
                "2001:db8::3"
            ]))
        );
        let more_v4 = combine(
            Ok(vec![v6("2001:db8::1")]),
            Ok(vec![v4("192.0.2.1"), v4("192.0.2.2")]),
        );
        assert_eq!(more_v4, Ok(ips(&["2001:db8::1", "192.0.2.1", "192.0.2.2"])));
        assert_eq!(
            combine(Ok(vec![]), Ok(vec![v4("192.0.2.1")])),
            Ok(ips(&["192.0.2.1"]))
        );
    }

    #[test]
    fn one_family_answering_is_enough() {
        assert_eq!(
            combine(Err(temporary("AAAA: timeout")), Ok(vec![v4("192.0.2.1")])),
            Ok(ips(&["192.0.2.1"]))
        );
        assert_eq!(
            combine(Ok(vec![v6("2001:db8::1")]), Err(temporary("A: SERVFAIL"))),
            Ok(ips(&["2001:db8::1"]))
        );
    }

    #[test]
    fn without_addresses_nxdomain_then_temporary_then_nodata() {
        assert_eq!(
            combine(Err(DnsError::NxDomain), Err(DnsError::NxDomain)),
            Err(DnsError::NxDomain)
        );
        assert_eq!(
            combine(Err(DnsError::NxDomain), Err(temporary("A: timeout"))),
            Err(DnsError::NxDomain)
        );
        assert_eq!(
            combine(Ok(vec![]), Err(DnsError::NxDomain)),
            Err(DnsError::NxDomain)
        );
        // NODATA for one family says nothing about the other, which failed.
        assert_eq!(
            combine(Ok(vec![]), Err(temporary("A: timeout"))),
            Err(temporary("A: timeout"))
        );
        assert_eq!(
            combine(Err(temporary("AAAA: x")), Err(temporary("A: y"))),
            Err(temporary("AAAA: x; A: y"))
        );
        assert_eq!(combine(Ok(vec![]), Ok(vec![])), Ok(vec![]));
    }

    #[test]
    fn names_are_asked_fully_qualified() {
        let name = fully_qualified("Example.TEST").unwrap();
        assert!(name.is_fqdn());
        assert_eq!(name.to_ascii(), "Example.TEST.");
        assert_eq!(
            fully_qualified("example.test.").unwrap().to_ascii(),
            "example.test."
        );
        assert_eq!(
            fully_qualified("bücher.example").unwrap().to_ascii(),
            "xn--bcher-kva.example."
        );
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(fully_qualified(&long_label), Err(DnsError::NxDomain));
    }

    #[test]
    fn a_null_mx_exchange_is_the_root() {
        // What the router's null MX check sees for `MX 0 .`.
        assert_eq!(Name::root().to_ascii(), ".");
        let normalized = crate::routing::normalize(&Name::root().to_ascii());
        assert!(normalized.is_empty());
    }

    #[test]
    fn response_codes_other_than_nxdomain_and_noerror_are_temporary() {
        use hickory_resolver::net::DnsError as HickoryDnsError;
        let refused = Err(NetError::Dns(HickoryDnsError::ResponseCode(
            ResponseCode::Refused,
        )));
        assert!(matches!(
            records(refused, RecordType::MX),
            Err(Failure::Temporary(reason)) if reason.contains("Refused")
        ));
        let timeout = records(Err(NetError::Timeout), RecordType::A);
        assert_eq!(
            timeout,
            Err(Failure::Temporary(
                "no answer within 5 seconds (2 tries)".to_string()
            ))
        );
    }

    #[test]
    fn usable_as_a_shared_resolver() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<DnsResolver>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let resolver: Arc<dyn Resolver> = Arc::new(DnsResolver::new(&[server]).unwrap());
        // The futures are Send, so they can be spawned on a multi-thread runtime; nothing is
        // asked here (that is tests/dns_resolver.rs, against a real server).
        let future = async move {
            let _pending = resolver.mx("example.test");
        };
        runtime.block_on(runtime.spawn(future)).unwrap();
    }
}
