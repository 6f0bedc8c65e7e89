//! `routing::DnsResolver` against a real DNS server (dnsmasq, see tests/common/dns.rs): every
//! kind of answer routing tells apart, and the router's plans built from them.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dns::{Dns, Record};
use portcullis::routing::{
    DnsError, DnsResolver, MxRecord, Resolver, RouteTable, Router, RoutingError, TlsPolicy,
};

/// The queue's kind of runtime: lookups run in spawned tasks on worker threads.
fn run<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { tokio::spawn(future).await.unwrap() })
}

fn resolver(dns: &Dns) -> Arc<dyn Resolver> {
    Arc::new(DnsResolver::new(&[dns.address()]).unwrap())
}

type DnsFutureOutput = Result<(), DnsError>;

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn example_zone() -> Dns {
    Dns::start(&[
        Record::mx("mail.test", "mx2.mail.test", 20),
        Record::mx("mail.test", "mx1.mail.test", 10),
        Record::a("mx1.mail.test", "192.0.2.1"),
        Record::a("mx2.mail.test", "192.0.2.2"),
        Record::aaaa("mx2.mail.test", "2001:db8::2"),
        Record::a("implicit.test", "192.0.2.3"),
        Record::aaaa("v6only.test", "2001:db8::4"),
        Record::null_mx("nullmx.test"),
        Record::servfail("broken.test"),
        Record::refused("refusing.test"),
    ])
}

#[test]
fn mx_records_with_two_preferences() {
    let dns = example_zone();
    let resolver = resolver(&dns);
    let mut records = run(async move { resolver.mx("mail.test").await }).unwrap();
    records.sort_by_key(|r| r.preference);
    assert_eq!(
        records,
        [
            MxRecord::new(10, "mx1.mail.test."),
            MxRecord::new(20, "mx2.mail.test."),
        ]
    );
}

#[test]
fn addresses_of_both_families() {
    let dns = example_zone();
    let resolver = resolver(&dns);
    let (both, v4, v6) = run(async move {
        (
            resolver.addresses("mx2.mail.test").await,
            resolver.addresses("mx1.mail.test").await,
            resolver.addresses("v6only.test").await,
        )
    });
    assert_eq!(both, Ok(ips(&["2001:db8::2", "192.0.2.2"])));
    assert_eq!(v4, Ok(ips(&["192.0.2.1"])));
    assert_eq!(v6, Ok(ips(&["2001:db8::4"])));
}

#[test]
fn a_domain_with_only_an_address_has_no_mx() {
    let dns = example_zone();
    let resolver = resolver(&dns);
    let (mx, addresses) = run(async move {
        (
            resolver.mx("implicit.test").await,
            resolver.addresses("implicit.test").await,
        )
    });
    assert_eq!(mx, Ok(vec![]), "NODATA");
    assert_eq!(addresses, Ok(ips(&["192.0.2.3"])));
    // The other way round: a name with MX records only has no addresses.
    let resolver = self::resolver(&dns);
    let none = run(async move { resolver.addresses("mail.test").await });
    assert_eq!(none, Ok(vec![]));
}

#[test]
fn unknown_names_do_not_exist() {
    let dns = example_zone();
    let resolver = resolver(&dns);
    let (mx, addresses, case) = run(async move {
        (
            resolver.mx("nowhere.test").await,
            resolver.addresses("nowhere.test").await,
            resolver.mx("MAIL.Test.").await,
        )
    });
    assert_eq!(mx, Err(DnsError::NxDomain));
    assert_eq!(addresses, Err(DnsError::NxDomain));
    assert_eq!(case.map(|r| r.len()), Ok(2), "names are case-insensitive");
}

#[test]
fn null_mx_is_the_root() {
    let dns = example_zone();
    let resolver = resolver(&dns);
    let records = run(async move { resolver.mx("nullmx.test").await });
    assert_eq!(records, Ok(vec![MxRecord::new(0, ".")]));
}

#[test]
fn servfail_and_refused_are_temporary() {
    let dns = example_zone();
    let resolver = resolver(&dns);
    let started = Instant::now();
    let (servfail, servfail_addresses, refused, outside) = run(async move {
        (
            resolver.mx("broken.test").await,
            resolver.addresses("host.broken.test").await,
            resolver.mx("refusing.test").await,
            // dnsmasq has no upstream, so it refuses names outside its zones.
            resolver.mx("elsewhere.example.com").await,
        )
    });
    let temporary = |answer: Result<(), DnsError>, code: &str| match answer {
        Err(DnsError::Temporary(reason)) => assert!(
            reason.contains(code),
            "{reason:?} does not mention {code:?}; dnsmasq log:\n{}",
            dns.log()
        ),
        other => panic!("{other:?} is not a temporary failure ({code})"),
    };
    temporary(servfail.map(drop), "Server Failure");
    temporary(servfail_addresses.map(drop), "Server Failure");
    temporary(refused.map(drop), "Refused");
    temporary(outside.map(drop), "Refused");
    // Answers, not timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn unreachable_servers_are_temporary_within_bounded_time() {
    // Nothing listens on the first port; the second swallows every question.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_resolver = Arc::new(DnsResolver::new(&[closed]).unwrap());
    let silent_resolver = Arc::new(DnsResolver::new(&[silent.local_addr().unwrap()]).unwrap());
    let started = Instant::now();
    let answers = run(async move {
        let timed = async |answer: DnsFutureOutput| (answer, started.elapsed());
        tokio::join!(
            async { timed(closed_resolver.mx("mail.test").await.map(drop)).await },
            async { timed(silent_resolver.addresses("mx1.mail.test").await.map(drop)).await },
        )
    });
    for (name, (answer, took)) in [("closed port", answers.0), ("silent server", answers.1)] {
        eprintln!("{name}: {answer:?} after {took:?}");
        assert!(
            matches!(answer, Err(DnsError::Temporary(_))),
            "{name}: {answer:?}"
        );
        // Two tries of 5 seconds, and slack for a loaded machine.
        assert!(took < Duration::from_secs(14), "{name}: took {took:?}");
    }
    drop(silent);
}

#[test]
fn plans_from_real_dns() {
    let dns = example_zone();
    let router = Router::new(RouteTable::default(), resolver(&dns), 2525, TlsPolicy::May);
    let router = Arc::new(router);
    let plans = run(async move {
        let mut keep_order = |_: &mut [portcullis::routing::Hop]| {};
        (
            router.plan("mail.test", &mut keep_order).await,
            router.plan("implicit.test", &mut keep_order).await,
            router.plan("nullmx.test", &mut keep_order).await,
            router.plan("nowhere.test", &mut keep_order).await,
            router.plan("broken.test", &mut keep_order).await,
        )
    });
    let (mx, implicit, null, nowhere, broken) = plans;
    let socket = |text: &str| -> SocketAddr { text.parse().unwrap() };
    let mx = mx.unwrap();
    let hops: Vec<(&str, &[SocketAddr])> = mx
        .hops
        .iter()
        .map(|hop| (hop.name.as_str(), hop.addresses.as_slice()))
        .collect();
    assert_eq!(
        hops,
        [
            ("mx1.mail.test", &[socket("192.0.2.1:2525")][..]),
            (
                "mx2.mail.test",
                &[socket("[2001:db8::2]:2525"), socket("192.0.2.2:2525")][..]
            ),
        ]
    );
    let implicit = implicit.unwrap();
    assert_eq!(implicit.hops.len(), 1);
    assert_eq!(implicit.hops[0].name, "implicit.test");
    assert_eq!(implicit.hops[0].addresses, [socket("192.0.2.3:2525")]);
    assert!(matches!(null, Err(RoutingError::NullMx { .. })), "{null:?}");
    assert!(
        matches!(nowhere, Err(RoutingError::NoSuchDomain { .. })),
        "{nowhere:?}"
    );
    assert!(
        matches!(broken, Err(RoutingError::Temporary { .. })),
        "{broken:?}"
    );
}

#[test]
fn the_system_configuration_is_read() {
    // Only construction: what the system's resolvers answer is not this test's business.
    if std::path::Path::new("/etc/resolv.conf").exists() {
        DnsResolver::new(&[]).unwrap();
    }
}
