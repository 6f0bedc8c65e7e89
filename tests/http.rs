//! The `[http]` listener end to end: the real binary, real SMTP clients (smtplib) and a real MX
//! (aiosmtpd), `/metrics` read by prometheus_client's parsers (tests/clients/parse_metrics.py)
//! and compared with what the test did, the JSON API compared with the CLI's `--json`, and the
//! access rules.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use common::mx::Mx;
use common::{Options, Raw, Server, assert_reply, python_command, smtplib, wait_until};
use serde_json::Value;

const ALICE: &str = "alice@example.test";
const ALICE_PASSWORD: &str = "alice's long password";
const BOB: &str = "bob@example.test";
const BOB_PASSWORD: &str = "bob's long password";

fn server(name: &str, extra: &str) -> Server {
    let server = Server::start(
        name,
        Options {
            extra: format!("[http]\naddress = \"127.0.0.1:0\"\n{extra}"),
            log: Some("info"),
            ..Options::default()
        },
    );
    server.add_account(ALICE, ALICE_PASSWORD);
    server.add_account(BOB, BOB_PASSWORD);
    server
}

/// One HTTP/1.1 GET: the status, the head (lower case) and the body.
fn get(address: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let authorization =
        token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn http(server: &Server) -> SocketAddr {
    server.http.expect("the server announced its http listener")
}

/// A 200 answer's body as JSON.
fn api(server: &Server, path: &str) -> Value {
    let (status, head, body) = get(http(server), path, None);
    assert_eq!(status, 200, "{path}: {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

fn cli_json(server: &Server, args: &[&str]) -> Value {
    let text = server.cli_ok(args, None);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// One sample as a parser read it.
#[derive(Debug)]
struct Sample {
    family_type: String,
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// What the two parsers of `parse_metrics.py` read from the scrape.
struct Scrape {
    openmetrics: Vec<Sample>,
    text: Vec<Sample>,
}

impl Scrape {
    /// The value of sample `name` with exactly `labels`; 0 for a labelled series that has not
    /// been counted yet (a family shows only the label sets it has seen).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let from_openmetrics = find(&self.openmetrics, name, labels);
        let from_text = find(&self.text, name, labels);
        assert_eq!(
            from_openmetrics, from_text,
            "{name} {labels:?}: the OpenMetrics and the text parser disagree"
        );
        from_openmetrics.unwrap_or(0.0)
    }

    /// The sum of the samples called `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.openmetrics
            .iter()
            .filter(|s| s.name == name && has_labels(s, labels))
            .map(|s| s.value)
            .sum()
    }

    fn family_type(&self, sample_name: &str) -> &str {
        self.openmetrics
            .iter()
            .find(|s| s.name == sample_name)
            .map_or("(absent)", |s| s.family_type.as_str())
    }
}

fn has_labels(sample: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| sample.labels.get(*k).and_then(Value::as_str) == Some(*v))
}

fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && s.labels.len() == labels.len() && has_labels(s, labels))
        .map(|s| s.value)
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} appears {} times",
        found.len()
    );
    found.first().copied()
}

fn samples(rows: &Value) -> Vec<Sample> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| Sample {
            family_type: row[1].as_str().unwrap().to_string(),
            name: row[2].as_str().unwrap().to_string(),
            labels: row[3].as_object().unwrap().clone(),
            value: row[4]
                .as_f64()
                .or_else(|| row[4].as_str().and_then(|s| s.parse().ok()))
                .unwrap(),
        })
        .collect()
}

/// Scrapes `/metrics` and has prometheus_client parse it.
fn scrape(server: &Server, token: Option<&str>) -> Scrape {
    let (status, head, body) = get(http(server), "/metrics", token);
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let mut parser = python_command("parse_metrics.py")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = parser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client refused the scrape: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    Scrape {
        openmetrics: samples(&parsed["openmetrics"]),
        text: samples(&parsed["text"]),
    }
}

fn send(server: &Server, user: &str, password: &str, to: &[&str]) -> Value {
    let port = server.submission.port().to_string();
    let mut args = vec![
        "--port",
        &port,
        "--mode",
        "starttls",
        "--user",
        user,
        "--password",
        password,
        "--from",
        user,
    ];
    for recipient in to {
        args.extend(["--to", recipient]);
    }
    smtplib(server, &args)
}

fn plaintext_send(server: &Server) -> Value {
    let port = server.submission.port().to_string();
    smtplib(
        server,
        &[
            "--port",
            &port,
            "--mode",
            "plain",
            "--from",
            ALICE,
            "--to",
            "x@example.org",
        ],
    )
}

/// N messages accepted, one refused over quota, M refused with 530 before STARTTLS, K failed
/// logins (the last locking the account), one login refused while locked, one plaintext
/// client on the implicit-TLS port; one recipient of each message delivered, one bounced (its
/// DSN delivered to the sender through the same MX). The scrape says exactly that.
#[test]
fn a_scrape_counts_what_a_scripted_run_did() {
    const N: usize = 3;
    const M: usize = 2;
    const K: usize = 2;
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server(
        "metrics",
        &format!(
            "[limits]\nmax_memory_in_flight = 104857600\n\
             [quotas]\nmessages_per_hour = {N}\n\
             [auth]\nlock_after_failures = {K}\n\
             [delivery]\nretry_seconds = [1]\n\
             [[route]]\ndomains = [\"*\"]\nrelay = \"{}\"\ntls = \"none\"\n",
            mx.address()
        ),
    );
    for _ in 0..N {
        let report = send(
            &server,
            ALICE,
            ALICE_PASSWORD,
            &["accept1@example.org", "reject1@example.org"],
        );
        assert_reply(&report["data"], 250, "2.0.0 OK: queued as ");
    }
    let over_quota = send(&server, ALICE, ALICE_PASSWORD, &["accept1@example.org"]);
    assert_reply(
        &over_quota["error"],
        451,
        "4.7.1 Account <alice@example.test> reached its quota",
    );
    for _ in 0..M {
        assert_reply(
            &plaintext_send(&server)["error"],
            530,
            "5.7.0 Must issue a STARTTLS command first",
        );
    }
    for attempt in 0..K {
        let wrong = format!("wrong password {attempt}");
        let report = send(&server, BOB, &wrong, &["x@example.org"]);
        assert_reply(
            &report["error"],
            535,
            "5.7.8 Authentication credentials invalid",
        );
    }
    let locked = send(&server, BOB, BOB_PASSWORD, &["x@example.org"]);
    assert_reply(&locked["error"], 454, "4.7.0 Too many failed logins");
    let mut plaintext = Raw::connect(server.submissions);
    plaintext.send(b"EHLO client.example\r\n");
    // Dropped: a clean close, or a reset since the server never read the command.
    let _ = plaintext.closed();

    // Everything delivered or bounced, the bounces' DSNs delivered, every connection closed.
    let mut last = None;
    let settled = wait_until(Duration::from_secs(60), || {
        let scrape = scrape(&server, None);
        let done = scrape.sum(
            "portcullis_delivery_attempts_total",
            &[("outcome", "delivered")],
        ) == (2 * N) as f64
            && scrape.sum("portcullis_notifications_total", &[]) == N as f64
            && scrape.sum("portcullis_connections_open", &[]) == 0.0
            && scrape.value("portcullis_queue_messages", &[]) == 0.0;
        last = Some(scrape);
        done
    });
    let scrape = last.unwrap();
    assert!(settled, "the run did not settle: {:?}", scrape.openmetrics);
    assert_eq!(mx.wait_for(2 * N, Duration::from_secs(10)).len(), 2 * N);

    let submission = server.submission.to_string();
    let submissions = server.submissions.to_string();
    fn on(listener: &str) -> [(&'static str, &str); 1] {
        [("listener", listener)]
    }
    // Connections: N + 1 + M + K + 1 on the STARTTLS port, the plaintext one on the other.
    assert_eq!(
        scrape.value("portcullis_connections_total", &on(&submission)),
        (N + 1 + M + K + 1) as f64
    );
    assert_eq!(
        scrape.value("portcullis_connections_total", &on(&submissions)),
        1.0
    );
    assert_eq!(
        scrape.value("portcullis_connections_open", &on(&submission)),
        0.0
    );
    // Every session but the M plaintext ones upgraded.
    assert_eq!(
        scrape.value("portcullis_tls_handshakes_total", &on(&submission)),
        (N + 1 + K + 1) as f64
    );
    assert_eq!(
        scrape.value("portcullis_tls_handshakes_total", &on(&submissions)),
        0.0
    );
    assert_eq!(
        scrape.value(
            "portcullis_tls_handshake_failures_total",
            &[
                ("listener", &submissions),
                ("cause", "plaintext-on-implicit-tls-port")
            ]
        ),
        1.0
    );
    // AUTH by outcome.
    let auth = |outcome| scrape.value("portcullis_auth_total", &[("outcome", outcome)]);
    assert_eq!(auth("accepted"), (N + 1) as f64);
    assert_eq!(auth("wrong-password"), K as f64);
    assert_eq!(auth("locked"), 1.0);
    assert_eq!(
        scrape.sum("portcullis_auth_total", &[]),
        (N + 1 + K + 1) as f64
    );
    assert_eq!(scrape.value("portcullis_login_locks_total", &[]), 1.0);
    assert_eq!(scrape.value("portcullis_network_refusals_total", &[]), 0.0);
    // Messages.
    assert_eq!(
        scrape.value("portcullis_messages_accepted_total", &[]),
        N as f64
    );
    assert_eq!(
        scrape.value("portcullis_recipients_accepted_total", &[]),
        (2 * N) as f64
    );
    assert!(scrape.value("portcullis_accepted_bytes_total", &[]) > 0.0);
    // Refusals by basic and enhanced code: nothing else was refused.
    let refused = |code, enhanced| {
        scrape.value(
            "portcullis_refusals_total",
            &[("code", code), ("enhanced", enhanced)],
        )
    };
    assert_eq!(refused("530", "5.7.0"), M as f64);
    assert_eq!(refused("535", "5.7.8"), K as f64);
    assert_eq!(refused("454", "4.7.0"), 1.0);
    assert_eq!(refused("451", "4.7.1"), 1.0);
    assert_eq!(
        scrape.sum("portcullis_refusals_total", &[]),
        (M + K + 1 + 1) as f64
    );
    assert_eq!(
        scrape.value(
            "portcullis_quota_refusals_total",
            &[("quota", "messages_per_hour")]
        ),
        1.0
    );
    // The spool wrote the N messages and the N DSNs, in at most that many syncs.
    assert_eq!(
        scrape.value("portcullis_spool_batch_messages_sum", &[]),
        (2 * N) as f64
    );
    let syncs = scrape.value("portcullis_spool_fsync_seconds_count", &[]);
    assert!((1.0..=(2 * N) as f64).contains(&syncs), "{syncs} syncs");
    assert_eq!(
        scrape.value("portcullis_spool_batch_messages_count", &[]),
        syncs
    );
    assert_eq!(
        scrape.value("portcullis_spool_fsync_seconds_bucket", &[("le", "+Inf")]),
        syncs
    );
    assert!(scrape.value("portcullis_spool_segments", &[]) >= 1.0);
    assert!(scrape.value("portcullis_spool_bytes", &[]) > 0.0);
    // Delivery: N + N DSNs delivered, N bounced, one DSN per bounce.
    assert_eq!(
        scrape.sum(
            "portcullis_delivery_attempts_total",
            &[("outcome", "bounced")]
        ),
        N as f64
    );
    assert_eq!(
        scrape.sum(
            "portcullis_delivery_attempts_total",
            &[("outcome", "deferred")]
        ),
        0.0
    );
    let relay = format!("[{}]", mx.address());
    assert_eq!(
        scrape.value(
            "portcullis_delivery_attempts_total",
            &[("outcome", "delivered"), ("destination", &relay)]
        ),
        (2 * N) as f64
    );
    assert_eq!(
        scrape.value("portcullis_notifications_total", &[("kind", "failure")]),
        N as f64
    );
    assert_eq!(
        scrape.value("portcullis_delivery_latency_seconds_count", &[]),
        (2 * N) as f64
    );
    // States read at the scrape: an empty queue, no message data in flight, the budget.
    assert_eq!(scrape.value("portcullis_queue_up", &[]), 1.0);
    assert_eq!(
        scrape.sum("portcullis_queue_recipients", &[]),
        0.0,
        "finished messages leave the queue"
    );
    assert_eq!(scrape.value("portcullis_memory_in_flight_bytes", &[]), 0.0);
    assert_eq!(
        scrape.value("portcullis_memory_budget_bytes", &[]),
        104_857_600.0
    );
    // The types Prometheus is told.
    assert_eq!(
        scrape.family_type("portcullis_connections_total"),
        "counter"
    );
    assert_eq!(scrape.family_type("portcullis_connections_open"), "gauge");
    assert_eq!(
        scrape.family_type("portcullis_spool_fsync_seconds_bucket"),
        "histogram"
    );
}

/// The API shows what the CLI shows, from the same code: the queue (whole and filtered), one
/// message, one account; the summary and the scrape agree with the queue.
#[test]
fn the_api_answers_what_the_cli_prints() {
    let server = server("api", "");
    let first = send(
        &server,
        ALICE,
        ALICE_PASSWORD,
        &["b@example.org", "c@example.org"],
    );
    assert_reply(&first["data"], 250, "2.0.0 OK: queued as ");
    let second = send(&server, ALICE, ALICE_PASSWORD, &["d@example.net"]);
    assert_reply(&second["data"], 250, "2.0.0 OK: queued as ");
    let failed = send(&server, ALICE, "not alice's password", &["x@example.org"]);
    assert_reply(&failed["error"], 535, "5.7.8");
    let id = second["data"][1]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();

    let queue = api(&server, "/api/queue");
    assert_eq!(queue.as_array().unwrap().len(), 2, "{queue}");
    assert_eq!(queue, Value::Array(server.queue()));
    for (query, args) in [
        ("?domain=example.net", vec!["--domain", "example.net"]),
        (
            "?status=queued&account=ALICE@example.test",
            vec!["--status", "queued", "--account", "ALICE@example.test"],
        ),
        ("?status=delivered", vec!["--status", "delivered"]),
    ] {
        let from_api = api(&server, &format!("/api/queue{query}"));
        let from_cli = cli_json(&server, &[&["queue", "list", "--json"], &args[..]].concat());
        assert_eq!(from_api, from_cli, "{query}");
    }
    assert_eq!(
        api(&server, "/api/queue?domain=example.net")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        api(&server, "/api/queue?status=delivered")
            .as_array()
            .unwrap()
            .is_empty()
    );

    let message = api(&server, &format!("/api/queue/{id}"));
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["recipients"][0]["address"], "d@example.net");
    assert_eq!(
        message,
        cli_json(&server, &["queue", "show", &id, "--json"])
    );
    let lower = api(&server, &format!("/api/queue/{}", id.to_ascii_lowercase()));
    assert_eq!(lower, message, "a queue id in either case");

    // The login record and the quota counters are written in batches; the two views agree
    // once they are on disk.
    let mut views = (Value::Null, Value::Null);
    let agreed = wait_until(Duration::from_secs(10), || {
        views = (
            api(&server, "/api/accounts/alice@example.test"),
            cli_json(&server, &["accounts", "show", ALICE, "--json"]),
        );
        views.0 == views.1
            && views.0["recent_failures"]
                .as_array()
                .is_some_and(|f| f.len() == 1)
            && !views.0["last_login"].is_null()
    });
    assert!(agreed, "API {} and CLI {} differ", views.0, views.1);
    assert_eq!(views.0["address"], ALICE);
    assert_eq!(views.0["recent_failures"][0]["reason"], "wrong-password");
    assert_eq!(
        api(&server, "/api/accounts/Alice@Example.test"),
        views.0,
        "a login name in any case"
    );

    let summary = api(&server, "/api/summary");
    assert_eq!(summary["queue"]["messages"], 2, "{summary}");
    assert_eq!(summary["queue"]["recipients"]["queued"], 3, "{summary}");
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    let scrape = scrape(&server, None);
    assert_eq!(scrape.value("portcullis_queue_messages", &[]), 2.0);
    assert_eq!(
        scrape.value("portcullis_queue_recipients", &[("status", "queued")]),
        3.0
    );

    for (path, status) in [
        ("/api/queue/0000000900000000", 404),
        ("/api/queue/not-an-id", 400),
        ("/api/accounts/nobody@example.test", 404),
        ("/nothing-here", 404),
    ] {
        let (got, _, body) = get(http(&server), path, None);
        assert_eq!(got, status, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
}

/// With `token_file`, every request needs the token (loopback too): 401 and a
/// `WWW-Authenticate` challenge without it or with a wrong one. (The 403 for clients off
/// loopback without a token cannot be produced from loopback; `http::access` tests it.)
#[test]
fn a_token_is_required_once_configured() {
    let dir = common::TempDir::new("http-token");
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, "Zr8q-metrics-token\n").unwrap();
    let server = server(
        "http-token",
        &format!("token_file = \"{}\"\n", token_file.display()),
    );
    for token in [None, Some("wrong"), Some("Zr8q-metrics-toke")] {
        for path in ["/metrics", "/api/summary", "/api/queue"] {
            let (status, head, body) = get(http(&server), path, token);
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
            assert!(head.contains("www-authenticate: bearer"), "{head}");
            assert!(body.contains("Authorization: Bearer"), "{body}");
        }
    }
    let scrape = scrape(&server, Some("Zr8q-metrics-token"));
    assert_eq!(scrape.value("portcullis_queue_up", &[]), 1.0);
    let (status, _, _) = get(http(&server), "/api/queue", Some("Zr8q-metrics-token"));
    assert_eq!(status, 200);
}
