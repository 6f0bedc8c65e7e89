use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn sock(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn no_shuffle(_: &mut [Hop]) {}

fn reverse(hops: &mut [Hop]) {
    hops.reverse();
}

fn router(fake: &Arc<FakeResolver>, routes: Vec<Route>) -> Router {
    let table = RouteTable::new(routes).unwrap();
    Router::new(table, fake.clone(), 25, TlsPolicy::May)
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.hops.iter().map(|h| h.name.as_str()).collect()
}

fn route(patterns: &[&str], relay: Option<&str>) -> Route {
    Route {
        domains: patterns
            .iter()
            .map(|p| DomainPattern::parse(p).unwrap())
            .collect(),
        relay: relay.map(|r| Relay::parse(r).unwrap()),
        tls: None,
        auth: None,
    }
}

async fn plan(router: &Router, domain: &str) -> Result<Plan, RoutingError> {
    router.plan(domain, &mut no_shuffle).await
}

#[tokio::test]
async fn exchanges_are_tried_in_preference_order() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx(
                "example.com",
                &[
                    (30, "c.example.com"),
                    (10, "a.example.com"),
                    (20, "b.example.com"),
                ],
            )
            .with_addresses("a.example.com", &[ip("192.0.2.1")])
            .with_addresses("b.example.com", &[ip("192.0.2.2")])
            .with_addresses("c.example.com", &[ip("192.0.2.3")]),
    );
    let plan = plan(&router(&fake, vec![]), "example.com").await.unwrap();
    assert_eq!(
        names(&plan),
        ["a.example.com", "b.example.com", "c.example.com"]
    );
    assert_eq!(plan.hops[0].addresses, [sock("192.0.2.1:25")]);
    assert_eq!(plan.destination, "example.com");
    assert_eq!(plan.tls, TlsPolicy::May);
    assert_eq!(plan.auth, None);
    assert!(plan.skipped.is_empty());
}

#[tokio::test]
async fn equal_preferences_are_shuffled_and_only_among_themselves() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx(
                "example.com",
                &[
                    (10, "a1.example.com"),
                    (10, "a2.example.com"),
                    (10, "a3.example.com"),
                    (20, "b.example.com"),
                ],
            )
            .with_addresses("a1.example.com", &[ip("192.0.2.1")])
            .with_addresses("a2.example.com", &[ip("192.0.2.2")])
            .with_addresses("a3.example.com", &[ip("192.0.2.3")])
            .with_addresses("b.example.com", &[ip("192.0.2.4")]),
    );
    let router = router(&fake, vec![]);
    let mut calls = Vec::new();
    let mut shuffle = |hops: &mut [Hop]| {
        calls.push(hops.len());
        reverse(hops);
    };
    let plan = router.plan("example.com", &mut shuffle).await.unwrap();
    assert_eq!(
        names(&plan),
        [
            "a3.example.com",
            "a2.example.com",
            "a1.example.com",
            "b.example.com"
        ]
    );
    // Called for the group of three, not for the lone backup.
    assert_eq!(calls, [3]);
}

#[tokio::test]
async fn seeded_shuffle_is_reproducible_and_keeps_every_hop() {
    let hops: Vec<Hop> = (0..8)
        .map(|i| Hop {
            name: format!("mx{i}"),
            addresses: vec![],
        })
        .collect();
    let mut first = hops.clone();
    let mut second = hops.clone();
    seeded_shuffle(7)(&mut first);
    seeded_shuffle(7)(&mut second);
    assert_eq!(first, second);
    assert_ne!(first, hops);
    let mut sorted: Vec<String> = first.iter().map(|h| h.name.clone()).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        hops.iter().map(|h| h.name.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn no_mx_records_make_the_domain_its_own_exchanger() {
    let fake = Arc::new(FakeResolver::new().with_addresses("example.com", &[ip("192.0.2.9")]));
    let plan = plan(&router(&fake, vec![]), "example.com").await.unwrap();
    assert_eq!(names(&plan), ["example.com"]);
    assert_eq!(plan.hops[0].addresses, [sock("192.0.2.9:25")]);
    assert_eq!(
        fake.lookups(),
        [
            Lookup::Mx("example.com".into()),
            Lookup::Addresses("example.com".into())
        ]
    );
}

#[tokio::test]
async fn implicit_mx_without_addresses_bounces_and_nxdomain_there_is_no_such_domain() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx("bare.example", &[])
            .with_mx("gone.example", &[])
            .with_address_error("gone.example", DnsError::NxDomain),
    );
    let router = router(&fake, vec![]);
    let error = plan(&router, "bare.example").await.unwrap_err();
    assert!(matches!(error, RoutingError::NoAddresses { .. }));
    assert_eq!(error.status(), (550, "5.4.4"));
    let error = plan(&router, "gone.example").await.unwrap_err();
    assert_eq!(
        error,
        RoutingError::NoSuchDomain {
            domain: "gone.example".into()
        }
    );
    assert_eq!(error.status(), (550, "5.1.2"));
}

#[tokio::test]
async fn null_mx_refuses_without_looking_up_addresses() {
    for exchange in [".", ""] {
        let fake = Arc::new(
            FakeResolver::new()
                .with_mx("nomail.example", &[(0, exchange)])
                .with_addresses("nomail.example", &[ip("192.0.2.1")]),
        );
        let error = plan(&router(&fake, vec![]), "nomail.example")
            .await
            .unwrap_err();
        assert_eq!(
            error,
            RoutingError::NullMx {
                domain: "nomail.example".into()
            }
        );
        assert_eq!(error.status(), (556, "5.1.10"));
        assert!(error.is_permanent());
        assert_eq!(
            error.to_string(),
            "nomail.example: the domain accepts no mail (null MX, RFC 7505)"
        );
        assert_eq!(fake.address_lookups(), 0);
        assert_eq!(fake.mx_lookups(), 1);
    }
}

#[tokio::test]
async fn a_root_exchange_beside_real_ones_is_ignored() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx("example.com", &[(0, "."), (10, "mx.example.com")])
            .with_addresses("mx.example.com", &[ip("192.0.2.1")]),
    );
    let plan = plan(&router(&fake, vec![]), "example.com").await.unwrap();
    assert_eq!(names(&plan), ["mx.example.com"]);
    assert_eq!(fake.address_lookups(), 1);
}

#[tokio::test]
async fn nxdomain_is_no_such_domain() {
    let fake = Arc::new(FakeResolver::new().with_nxdomain("nowhere.example"));
    let router = router(&fake, vec![]);
    let error = plan(&router, "nowhere.example").await.unwrap_err();
    assert_eq!(
        error,
        RoutingError::NoSuchDomain {
            domain: "nowhere.example".into()
        }
    );
    assert_eq!(error.status(), (550, "5.1.2"));
    assert!(error.is_permanent());
    assert_eq!(fake.address_lookups(), 0);
    // A name the fake knows nothing about is NXDOMAIN too, like real DNS.
    let error = plan(&router, "unknown.example").await.unwrap_err();
    assert_eq!(error.status(), (550, "5.1.2"));
}

#[tokio::test]
async fn servfail_or_timeout_on_mx_is_temporary() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_temporary("slow.example", "timed out")
            .with_mx_error("broken.example", DnsError::Temporary("SERVFAIL".into())),
    );
    let router = router(&fake, vec![]);
    for domain in ["slow.example", "broken.example"] {
        let error = plan(&router, domain).await.unwrap_err();
        assert!(matches!(error, RoutingError::Temporary { .. }), "{error:?}");
        assert_eq!(error.status(), (451, "4.4.3"));
        assert!(!error.is_permanent());
    }
    let error = plan(&router, "broken.example").await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "broken.example: MX lookup failed: SERVFAIL"
    );
}

#[tokio::test]
async fn an_exchange_without_addresses_is_skipped_and_remembered() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx(
                "example.com",
                &[
                    (10, "empty.example.com"),
                    (20, "down.example.com"),
                    (30, "gone.example.com"),
                    (40, "ok.example.com"),
                ],
            )
            .with_addresses("empty.example.com", &[])
            .with_temporary("down.example.com", "timed out")
            .with_nxdomain("gone.example.com")
            .with_addresses("ok.example.com", &[ip("192.0.2.7")]),
    );
    let plan = plan(&router(&fake, vec![]), "example.com").await.unwrap();
    assert_eq!(names(&plan), ["ok.example.com"]);
    assert_eq!(
        plan.skipped,
        [
            Skipped {
                name: "empty.example.com".into(),
                reason: SkipReason::NoAddresses
            },
            Skipped {
                name: "down.example.com".into(),
                reason: SkipReason::Dns(DnsError::Temporary("timed out".into()))
            },
            Skipped {
                name: "gone.example.com".into(),
                reason: SkipReason::Dns(DnsError::NxDomain)
            },
        ]
    );
}

#[tokio::test]
async fn no_exchanger_with_addresses_is_temporary_if_any_lookup_was() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx(
                "flaky.example",
                &[(10, "empty.flaky.example"), (20, "down.flaky.example")],
            )
            .with_addresses("empty.flaky.example", &[])
            .with_temporary("down.flaky.example", "SERVFAIL")
            .with_mx(
                "dead.example",
                &[(10, "empty.dead.example"), (20, "gone.dead.example")],
            )
            .with_addresses("empty.dead.example", &[])
            .with_nxdomain("gone.dead.example"),
    );
    let router = router(&fake, vec![]);
    let error = plan(&router, "flaky.example").await.unwrap_err();
    assert_eq!(error.status(), (451, "4.4.3"));
    assert_eq!(
        error.to_string(),
        "flaky.example: address lookup for down.flaky.example failed: SERVFAIL"
    );
    let error = plan(&router, "dead.example").await.unwrap_err();
    assert_eq!(error.status(), (550, "5.4.4"));
    assert!(error.is_permanent());
    assert_eq!(
        error.to_string(),
        "dead.example: none of its mail exchangers has an address (empty.dead.example, gone.dead.example)"
    );
}

#[tokio::test]
async fn ipv6_and_ipv4_addresses_are_both_kept_in_order_once() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx("example.com", &[(10, "mx.example.com")])
            .with_addresses(
                "mx.example.com",
                &[ip("2001:db8::25"), ip("192.0.2.25"), ip("2001:db8::25")],
            ),
    );
    let plan = plan(&router(&fake, vec![]), "example.com").await.unwrap();
    assert_eq!(
        plan.hops[0].addresses,
        [sock("[2001:db8::25]:25"), sock("192.0.2.25:25")]
    );
}

#[tokio::test]
async fn a_relay_route_skips_mx_and_uses_the_relay_port() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx("example.com", &[(10, "mx.example.com")])
            .with_addresses("smtp.relay.example", &[ip("198.51.100.1")]),
    );
    let mut relayed = route(&["example.com"], Some("smtp.relay.example:587"));
    relayed.tls = Some(TlsPolicy::Verify);
    relayed.auth = Some(RelayAuth {
        user: "portcullis".into(),
        password: "secret".into(),
    });
    let router = router(&fake, vec![relayed]);
    let plan = plan(&router, "Example.COM.").await.unwrap();
    assert_eq!(names(&plan), ["smtp.relay.example"]);
    assert_eq!(plan.hops[0].addresses, [sock("198.51.100.1:587")]);
    assert_eq!(plan.destination, "relay:smtp.relay.example:587");
    assert_eq!(plan.tls, TlsPolicy::Verify);
    assert_eq!(
        plan.auth.as_ref().map(|a| a.user.as_str()),
        Some("portcullis")
    );
    assert_eq!(fake.mx_lookups(), 0);
    assert!(!format!("{plan:?}").contains("secret"));
}

#[tokio::test]
async fn an_ip_literal_relay_needs_no_lookup_and_a_broken_relay_is_temporary() {
    let fake = Arc::new(FakeResolver::new());
    let router = router(
        &fake,
        vec![
            route(&["v6.example"], Some("[2001:db8::1]:25")),
            route(&["v4.example"], Some("192.0.2.1:2525")),
            route(&["broken.example"], Some("missing.relay.example:25")),
        ],
    );
    let plan6 = plan(&router, "v6.example").await.unwrap();
    assert_eq!(plan6.hops[0].addresses, [sock("[2001:db8::1]:25")]);
    assert_eq!(plan6.destination, "relay:[2001:db8::1]:25");
    let plan4 = plan(&router, "v4.example").await.unwrap();
    assert_eq!(plan4.hops[0].addresses, [sock("192.0.2.1:2525")]);
    assert!(fake.lookups().is_empty());

    let error = plan(&router, "broken.example").await.unwrap_err();
    assert_eq!(error.status(), (451, "4.4.3"));
    assert_eq!(
        error.to_string(),
        "broken.example: relay missing.relay.example:25: no such domain (NXDOMAIN)"
    );
}

#[tokio::test]
async fn a_route_without_relay_changes_only_the_tls_policy() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx("example.com", &[(10, "mx.example.com")])
            .with_addresses("mx.example.com", &[ip("192.0.2.1")]),
    );
    let mut strict = route(&["example.com"], None);
    strict.tls = Some(TlsPolicy::Encrypt);
    let plan = plan(&router(&fake, vec![strict]), "example.com")
        .await
        .unwrap();
    assert_eq!(names(&plan), ["mx.example.com"]);
    assert_eq!(plan.tls, TlsPolicy::Encrypt);
    assert_eq!(plan.destination, "example.com");
}

#[test]
fn exact_beats_longest_suffix_beats_any_and_ties_go_to_the_first() {
    let table = RouteTable::new(vec![
        route(&["*"], Some("any.relay:25")),
        route(&[".example.com"], Some("suffix.relay:25")),
        route(&[".deep.example.com"], Some("deep.relay:25")),
        route(&["mail.example.com"], Some("exact.relay:25")),
        route(&["mail.example.com", "*"], Some("late.relay:25")),
        route(&[".deep.example.com"], Some("late-deep.relay:25")),
    ])
    .unwrap();
    let relay_for = |domain: &str| {
        table
            .route_for(domain)
            .and_then(|r| r.relay.as_ref())
            .map(|r| r.host.clone())
    };
    assert_eq!(
        relay_for("mail.example.com").as_deref(),
        Some("exact.relay")
    );
    assert_eq!(
        relay_for("MAIL.Example.com.").as_deref(),
        Some("exact.relay")
    );
    assert_eq!(
        relay_for("www.example.com").as_deref(),
        Some("suffix.relay")
    );
    assert_eq!(
        relay_for("a.deep.example.com").as_deref(),
        Some("deep.relay")
    );
    // A suffix pattern covers subdomains only, and only at a label boundary.
    assert_eq!(relay_for("example.com").as_deref(), Some("any.relay"));
    assert_eq!(relay_for("badexample.com").as_deref(), Some("any.relay"));
    assert_eq!(relay_for("other.org").as_deref(), Some("any.relay"));

    let no_default = RouteTable::new(vec![route(&[".example.com"], None)]).unwrap();
    assert!(no_default.route_for("example.org").is_none());
}

#[test]
fn the_route_table_refuses_credentials_without_a_relay_and_empty_routes() {
    let mut leaky = route(&["example.com"], None);
    leaky.auth = Some(RelayAuth {
        user: "u".into(),
        password: "p".into(),
    });
    assert_eq!(
        RouteTable::new(vec![leaky]).unwrap_err(),
        "route 1: credentials are only sent to a relay, and this route has none"
    );
    assert_eq!(
        RouteTable::new(vec![route(&["*"], None), route(&[], None)]).unwrap_err(),
        "route 2: no domains"
    );
}

#[test]
fn domain_patterns_parse_and_refuse_with_reasons() {
    assert_eq!(DomainPattern::parse("*"), Ok(DomainPattern::Any));
    assert_eq!(
        DomainPattern::parse("Example.COM."),
        Ok(DomainPattern::Exact("example.com".into()))
    );
    assert_eq!(
        DomainPattern::parse(".Example.com"),
        Ok(DomainPattern::Suffix("example.com".into()))
    );
    assert_eq!(
        DomainPattern::parse("xn--bcher-kva.example").map(|p| p.to_string()),
        Ok("xn--bcher-kva.example".into())
    );
    assert_eq!(
        DomainPattern::parse(".example.com").map(|p| p.to_string()),
        Ok(".example.com".into())
    );
    let refused = [
        ("", "a domain pattern must not be empty"),
        ("  ", "a domain pattern must not be empty"),
        (".", "\"\" is not a domain name"),
        (
            "*.example.com",
            "\"*.example.com\": write \".example.com\" for the subdomains of example.com, or \"*\" for every domain",
        ),
        ("a..b", "\"a..b\" has an empty label (two dots in a row?)"),
        (
            "exa_mple.com",
            "\"exa_mple.com\": the label \"exa_mple\" may hold only letters, digits and hyphens",
        ),
        (
            "-a.com",
            "\"-a.com\": the label \"-a\" must not start or end with a hyphen",
        ),
        (
            "bücher.example",
            "\"bücher.example\": write internationalized domain names in their A-label (xn--) form",
        ),
    ];
    for (text, reason) in refused {
        assert_eq!(
            DomainPattern::parse(text),
            Err(reason.to_string()),
            "{text}"
        );
    }
    let long_label = format!("{}.com", "a".repeat(64));
    assert!(
        DomainPattern::parse(&long_label)
            .unwrap_err()
            .contains("longer than 63")
    );
    let long_name = vec!["a".repeat(60); 5].join(".");
    assert!(
        DomainPattern::parse(&long_name)
            .unwrap_err()
            .contains("longer than 253")
    );
}

#[test]
fn relays_parse_host_port_and_bracketed_ipv6() {
    assert_eq!(
        Relay::parse("SMTP.Example.com:587"),
        Ok(Relay {
            host: "smtp.example.com".into(),
            port: 587
        })
    );
    assert_eq!(
        Relay::parse("[2001:DB8::1]:25"),
        Ok(Relay {
            host: "2001:db8::1".into(),
            port: 25
        })
    );
    assert_eq!(
        Relay::parse("192.0.2.1:465").map(|r| r.ip()),
        Ok(Some(ip("192.0.2.1")))
    );
    assert_eq!(
        Relay::parse("[2001:db8::1]:25").map(|r| r.to_string()),
        Ok("[2001:db8::1]:25".into())
    );
    let refused = [
        (
            "smtp.example.com",
            "\"smtp.example.com\": write the relay as host:port, e.g. smtp.example.com:587",
        ),
        (
            "2001:db8::1:25",
            "\"2001:db8::1:25\": put an IPv6 address in brackets, as in \"[2001:db8::1]:587\"",
        ),
        (
            "[2001:db8::1:25",
            "\"[2001:db8::1:25\": the \"[\" of an IPv6 address has no \"]\"",
        ),
        (
            "[example.com]:25",
            "\"[example.com]:25\": \"example.com\" is not an IPv6 address",
        ),
        (
            "[2001:db8::1]",
            "\"[2001:db8::1]\": a port must follow, as in \"[2001:db8::1]:587\"",
        ),
        (
            "smtp.example.com:0",
            "\"smtp.example.com:0\": the port must be a number from 1 to 65535",
        ),
        (
            "smtp.example.com:65536",
            "\"smtp.example.com:65536\": the port must be a number from 1 to 65535",
        ),
        (
            "smtp.example.com:smtp",
            "\"smtp.example.com:smtp\": the port must be a number from 1 to 65535",
        ),
        (":25", "\"\" is not a domain name"),
    ];
    for (text, reason) in refused {
        assert_eq!(Relay::parse(text), Err(reason.to_string()), "{text}");
    }
}

#[test]
fn tls_policies_parse_and_default_to_may() {
    assert_eq!(TlsPolicy::default(), TlsPolicy::May);
    for (text, policy) in [
        ("none", TlsPolicy::None),
        ("may", TlsPolicy::May),
        ("Encrypt", TlsPolicy::Encrypt),
        ("verify", TlsPolicy::Verify),
    ] {
        assert_eq!(text.parse::<TlsPolicy>(), Ok(policy));
        assert_eq!(policy.to_string(), text.to_ascii_lowercase());
    }
    assert_eq!(
        "required".parse::<TlsPolicy>(),
        Err("\"required\" is not a TLS policy: use none, may, encrypt or verify".to_string())
    );
}

#[tokio::test]
async fn names_are_case_insensitive_and_the_final_dot_is_ignored() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx("Example.COM.", &[(10, "MX.Example.com.")])
            .with_addresses("mx.example.com", &[ip("192.0.2.1")]),
    );
    let plan = plan(&router(&fake, vec![]), "EXAMPLE.com.").await.unwrap();
    assert_eq!(names(&plan), ["mx.example.com"]);
    assert_eq!(plan.destination, "example.com");
    assert_eq!(
        fake.lookups(),
        [
            Lookup::Mx("example.com".into()),
            Lookup::Addresses("mx.example.com".into())
        ]
    );
}

#[tokio::test]
async fn the_same_exchange_listed_twice_is_tried_once_at_its_best_preference() {
    let fake = Arc::new(
        FakeResolver::new()
            .with_mx(
                "example.com",
                &[
                    (20, "mx.example.com"),
                    (10, "MX.example.com."),
                    (15, "b.example.com"),
                ],
            )
            .with_addresses("mx.example.com", &[ip("192.0.2.1")])
            .with_addresses("b.example.com", &[ip("192.0.2.2")]),
    );
    let plan = plan(&router(&fake, vec![]), "example.com").await.unwrap();
    assert_eq!(names(&plan), ["mx.example.com", "b.example.com"]);
    assert_eq!(fake.address_lookups(), 2);
}

#[test]
fn the_plan_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let fake = Arc::new(FakeResolver::new());
    let router = router(&fake, vec![]);
    let mut shuffle = seeded_shuffle(1);
    let future = router.plan("example.com", &mut shuffle);
    assert_send(&future);
}
