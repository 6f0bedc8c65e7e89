//! Outbound delivery end to end: the real binary relays what it accepted to receiving servers
//! the test started on loopback (aiosmtpd, `tests/clients/mx_server.py`, one 127.0.0.x address
//! per host), by static route or by MX records that dnsmasq serves. Every outcome is checked at
//! the receiving side and in `queue list --json`.

mod common;

use std::time::Duration;

use common::dns::{Dns, Record};
use common::mx::{Mx, Received};
use common::{Options, Server, smtplib, wait_until};
use serde_json::Value;

const SENDER: &str = "alice@example.test";
const USER: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";
const LIMIT: Duration = Duration::from_secs(30);

/// A server whose trusted network is loopback, retrying every second, with `extra` TOML after
/// its `[delivery]` keys (more keys, then `[[route]]` tables).
fn server(name: &str, extra: &str) -> Server {
    let retry = if extra.contains("retry_seconds") {
        ""
    } else {
        "retry_seconds = [1]\n"
    };
    Server::start(
        name,
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            extra: format!("[delivery]\nhelo_name = \"out.example.test\"\n{retry}{extra}\n"),
            log: Some("info"),
            ..Options::default()
        },
    )
}

/// A `[[route]]` sending every domain to `mx`, in plaintext.
fn everything_to(mx: &Mx) -> String {
    format!(
        "[[route]]\ndomains = [\"*\"]\nrelay = \"{}\"\ntls = \"none\"\n",
        mx.address()
    )
}

/// Submits over the trusted network with smtplib; returns the queue id.
fn submit(server: &Server, to: &[&str]) -> String {
    let port = server.submission.port().to_string();
    let mut args = vec!["--port", &port, "--mode", "plain", "--from", SENDER];
    for recipient in to {
        args.extend(["--to", recipient]);
    }
    let report = smtplib(server, &args);
    let data = report["data"][1].as_str().unwrap_or_default().to_string();
    assert_eq!(report["data"][0], 250, "{report}");
    data.rsplit(' ').next().unwrap().to_string()
}

fn entry(server: &Server, id: &str) -> Option<Value> {
    server.queue().into_iter().find(|m| m["id"] == id)
}

/// The queue's view of one recipient of `id`.
fn recipient(server: &Server, id: &str, address: &str) -> Value {
    let entry = entry(server, id).unwrap_or_else(|| panic!("{id} is not in the queue"));
    entry["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("{address} is not a recipient of {entry}"))
}

/// Waits until the recipient has `status`; panics with the queue and the log if it does not.
fn wait_status(server: &Server, id: &str, address: &str, status: &str) -> Value {
    let reached = wait_until(LIMIT, || recipient(server, id, address)["status"] == status);
    let now = recipient(server, id, address);
    assert!(
        reached,
        "{address} never became {status}: {now}\n{}",
        server.log()
    );
    now
}

/// The one DSN that reached the sender's server, parsed by Python's email package.
fn parse_dsn(dsn: &Received) -> Value {
    let file = common::TempDir::new("dsn");
    let path = file.0.join("dsn.eml");
    std::fs::write(&path, &dsn.data).unwrap();
    let (ok, stdout, stderr) = common::python_script("parse_dsn.py", &[path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let parsed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed["type"], "multipart/report", "{parsed}");
    assert_eq!(parsed["report_type"], "delivery-status");
    assert_eq!(parsed["parts"][1], "message/delivery-status");
    assert_eq!(parsed["defects"], serde_json::json!([]));
    parsed
}

#[test]
fn swaks_on_the_submission_port_then_delivered_byte_for_byte_through_a_route() {
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server("delivered", &everything_to(&mx));
    server.add_account(USER, PASSWORD);
    let starttls = format!("127.0.0.1:{}", server.submission.port());
    let output = std::process::Command::new("swaks")
        .args(["--server", &starttls, "--tls", "--auth", "PLAIN"])
        .args(["--auth-user", USER, "--auth-password", PASSWORD])
        .args([
            "--from",
            USER,
            "--to",
            "bob@example.org",
            "--helo",
            "swaks.example",
        ])
        .args(["--body", "Hello Bob.\n.A line with a leading dot\n"])
        .output()
        .expect("swaks is installed (.ci/run installs it)");
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{transcript}");
    let id = transcript
        .split("queued as ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a queue id")
        .to_string();
    let received = mx.wait_for(1, LIMIT);
    assert_eq!(received[0].mail_from, USER);
    assert_eq!(received[0].rcpt_tos, ["bob@example.org"]);
    assert_eq!(received[0].helo, "out.example.test");
    let shown = server.show(&id);
    let stored = shown
        .split_once("\n\n")
        .expect("envelope, blank line, message")
        .1;
    assert_eq!(received[0].text(), stored, "delivered exactly as spooled");
    let bob = wait_status(&server, &id, "bob@example.org", "delivered");
    assert_eq!(bob["attempts"], 1);
    assert_eq!(
        bob["last_reply"], "250 2.0.0 Ok: queued as MX000001",
        "{bob}"
    );
    let relay = format!("127.0.0.2[127.0.0.2]:{}", mx.port());
    let history = server.show(&id);
    let delivered = format!(
        "<bob@example.org> delivered relay={relay} reply=\"250 2.0.0 Ok: queued as MX000001\""
    );
    assert!(history.contains(&delivered), "{history}");
    let log = server.log();
    let line = log
        .lines()
        .find(|line| line.contains("delivery") && line.contains(&id))
        .unwrap_or_else(|| panic!("one log line per attempt: {log}"));
    for field in [
        "to=\"bob@example.org\"".to_string(),
        format!("relay=\"{relay}\""),
        "attempt=1".to_string(),
        "dsn=\"2.0.0\"".to_string(),
        "status=\"sent\"".to_string(),
        "reply=\"250 2.0.0 Ok: queued as MX000001\"".to_string(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
}

#[test]
fn greylisting_is_retried_per_retry_seconds_and_then_delivered() {
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server("greylist", &everything_to(&mx));
    let id = submit(&server, &["greylist-bob@example.org"]);
    let bob = wait_status(&server, &id, "greylist-bob@example.org", "delivered");
    assert_eq!(bob["attempts"], 2, "{bob}");
    let rcpts = mx.events_of("rcpt");
    assert_eq!(rcpts.len(), 2);
    assert_eq!(
        rcpts[0].reply.as_deref(),
        Some(
            "450 4.2.0 <greylist-bob@example.org>: Recipient address rejected: Greylisted, try again later"
        )
    );
    assert_eq!(rcpts[1].reply.as_deref(), Some("250 2.1.5 Ok"));
    let history = server.show(&id);
    assert!(
        history.contains("deferred") && history.contains("450 4.2.0"),
        "{history}"
    );
}

#[test]
fn one_refused_recipient_of_three_gets_one_dsn_that_python_parses() {
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server("partial", &everything_to(&mx));
    let to = [
        "accept-a@example.org",
        "reject-b@example.org",
        "accept-c@example.org",
    ];
    let id = submit(&server, &to);
    // Two deliveries: the message itself (two recipients), then the DSN to the sender.
    let received = mx.wait_for(2, LIMIT);
    let (message, dsn) = if received[0].mail_from.is_empty() {
        (&received[1], &received[0])
    } else {
        (&received[0], &received[1])
    };
    assert_eq!(
        message.rcpt_tos,
        ["accept-a@example.org", "accept-c@example.org"]
    );
    assert_eq!(dsn.mail_from, "", "a DSN comes from the null sender");
    assert_eq!(dsn.rcpt_tos, [SENDER]);
    let parsed = parse_dsn(dsn);
    let recipients = parsed["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 1, "{parsed}");
    assert_eq!(
        recipients[0]["Final-Recipient"],
        "rfc822; reject-b@example.org"
    );
    assert_eq!(recipients[0]["Action"], "failed");
    assert_eq!(recipients[0]["Status"], "5.1.1");
    assert!(
        recipients[0]["Diagnostic-Code"]
            .as_str()
            .unwrap()
            .starts_with("smtp; 550 5.1.1"),
        "{parsed}"
    );
    let text = parsed["text"].as_str().unwrap();
    assert!(text.contains("5.1.1"), "the text explains the code: {text}");
    wait_status(&server, &id, "reject-b@example.org", "bounced");
    assert_eq!(
        recipient(&server, &id, "accept-a@example.org")["status"],
        "delivered"
    );
    // No DSN about the DSN: it was delivered, and a bounce of a bounce is never sent.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(mx.received().len(), 2);
}

#[test]
fn a_552_at_the_end_of_data_bounces_with_its_reply() {
    let refusing = Mx::start(
        "127.0.0.2",
        &["--data-reply", "552 5.3.4 Message too big for this system"],
    );
    let senders_mx = Mx::start("127.0.0.3", &[]);
    let routes = format!(
        "{}[[route]]\ndomains = [\"example.test\"]\nrelay = \"{}\"\ntls = \"none\"\n",
        everything_to(&refusing),
        senders_mx.address()
    );
    let server = server("data-552", &routes);
    let id = submit(&server, &["bob@example.org"]);
    let dsn = &senders_mx.wait_for(1, LIMIT)[0];
    let parsed = parse_dsn(dsn);
    assert_eq!(parsed["recipients"][0]["Status"], "5.3.4", "{parsed}");
    assert!(
        parsed["recipients"][0]["Diagnostic-Code"]
            .as_str()
            .unwrap()
            .contains("552 5.3.4 Message too big"),
        "{parsed}"
    );
    wait_status(&server, &id, "bob@example.org", "bounced");
}

#[test]
fn a_server_that_closes_after_the_dot_is_tried_again_with_at_most_one_duplicate() {
    let mx = Mx::start("127.0.0.2", &["--close-after-dot", "1"]);
    let server = server("close-after-dot", &everything_to(&mx));
    let id = submit(&server, &["bob@example.org"]);
    let bob = wait_status(&server, &id, "bob@example.org", "delivered");
    let received = mx.received();
    assert_eq!(
        received.len(),
        2,
        "the first copy may have been delivered: one duplicate"
    );
    assert!(received[0].closed && !received[1].closed);
    assert_eq!(received[0].data, received[1].data);
    assert_eq!(bob["attempts"], 2);
}

#[test]
fn a_recipient_still_failing_at_the_end_of_its_lifetime_expires_into_a_bounce() {
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server(
        "expiry",
        &format!("max_queue_lifetime_seconds = 3\n{}", everything_to(&mx)),
    );
    let id = submit(&server, &["tempfail-bob@example.org"]);
    let bob = wait_status(&server, &id, "tempfail-bob@example.org", "expired");
    assert!(bob["attempts"].as_u64().unwrap() >= 2, "{bob}");
    let dsn = mx
        .wait_for(1, LIMIT)
        .into_iter()
        .find(|m| m.mail_from.is_empty())
        .expect("a DSN");
    let parsed = parse_dsn(&dsn);
    assert_eq!(parsed["recipients"][0]["Action"], "failed");
    assert_eq!(parsed["recipients"][0]["Status"], "4.4.7", "{parsed}");
}

#[test]
fn queue_commands_are_applied_by_the_running_server() {
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server(
        "queue-commands",
        &format!("retry_seconds = [3600]\n{}", everything_to(&mx)),
    );
    let id = submit(&server, &["tempfail-bob@example.org"]);
    wait_status(&server, &id, "tempfail-bob@example.org", "deferred");
    let out = server.cli_ok(&["queue", "retry", &id], None);
    assert_eq!(out.trim(), format!("retry {id}: applied"));
    assert!(wait_until(LIMIT, || recipient(
        &server,
        &id,
        "tempfail-bob@example.org"
    )["attempts"]
        == 2));
    server.cli_ok(&["queue", "hold", &id], None);
    assert_eq!(
        recipient(&server, &id, "tempfail-bob@example.org")["status"],
        "held"
    );
    server.cli_ok(&["queue", "retry", "--all"], None);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(mx.events_of("rcpt").len(), 2, "a held message is not tried");
    server.cli_ok(&["queue", "release", &id], None);
    assert!(wait_until(LIMIT, || mx.events_of("rcpt").len() == 3));
    server.cli_ok(&["queue", "bounce", &id], None);
    let dsn = mx.wait_for(1, LIMIT).remove(0);
    assert_eq!(dsn.rcpt_tos, [SENDER]);
    wait_status(&server, &id, "tempfail-bob@example.org", "bounced");

    let other = submit(&server, &["tempfail-carol@example.org"]);
    wait_status(&server, &other, "tempfail-carol@example.org", "deferred");
    server.cli_ok(&["queue", "delete", &other], None);
    assert!(
        entry(&server, &other).is_none(),
        "deleted messages leave the queue"
    );
    let unknown = server.cli(&["queue", "hold", "00000000DEADBEEF"], None);
    assert_eq!(common::status(&unknown), 66);
}

#[test]
fn mx_records_preference_fallback_implicit_mx_null_mx_nxdomain_and_servfail() {
    // One port for every MX host ([delivery] mx_port); nothing listens on 127.0.0.3.
    let hosts = Mx::start_group(&[("127.0.0.4", &[]), ("127.0.0.5", &[]), ("127.0.0.6", &[])]);
    let (second_mx, implicit_mx, senders_mx) = (&hosts[0], &hosts[1], &hosts[2]);
    let dns = Dns::start(&[
        Record::mx("a.test", "mx1.a.test", 10),
        Record::a("mx1.a.test", "127.0.0.3"),
        Record::mx("a.test", "mx2.a.test", 20),
        Record::a("mx2.a.test", "127.0.0.4"),
        Record::a("b.test", "127.0.0.5"),
        Record::null_mx("null.test"),
        Record::mx("example.test", "mx.example.test", 10),
        Record::a("mx.example.test", "127.0.0.6"),
        Record::servfail("broken.test"),
    ]);
    let server = server(
        "mx-records",
        &format!(
            "dns_servers = [\"{}\"]\nmx_port = {}\nretry_seconds = [3600]\n",
            dns.address(),
            second_mx.port()
        ),
    );
    let preferred = submit(&server, &["bob@a.test"]);
    let implicit = submit(&server, &["carol@b.test"]);
    let null = submit(&server, &["dave@null.test"]);
    let missing = submit(&server, &["erin@missing.test"]);
    let broken = submit(&server, &["frank@broken.test"]);

    let delivered = second_mx.wait_for(1, LIMIT);
    assert_eq!(
        delivered[0].rcpt_tos,
        ["bob@a.test"],
        "the first MX is dead: the second"
    );
    let bob = wait_status(&server, &preferred, "bob@a.test", "delivered");
    assert!(bob["attempts"] == 1, "one attempt, two hosts: {bob}");
    assert_eq!(implicit_mx.wait_for(1, LIMIT)[0].rcpt_tos, ["carol@b.test"]);
    wait_status(&server, &implicit, "carol@b.test", "delivered");

    // Two bounces reach the sender's own MX: null MX (5.1.10) and NXDOMAIN (5.1.2).
    let dsns = senders_mx.wait_for(2, LIMIT);
    let mut statuses: Vec<(String, String)> = dsns
        .iter()
        .map(|dsn| {
            let parsed = parse_dsn(dsn);
            let recipient = &parsed["recipients"][0];
            (
                recipient["Final-Recipient"].as_str().unwrap().to_string(),
                recipient["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("rfc822; dave@null.test".to_string(), "5.1.10".to_string()),
            ("rfc822; erin@missing.test".to_string(), "5.1.2".to_string()),
        ]
    );
    wait_status(&server, &null, "dave@null.test", "bounced");
    wait_status(&server, &missing, "erin@missing.test", "bounced");
    // SERVFAIL is temporary trouble: deferred, never bounced.
    let frank = wait_status(&server, &broken, "frank@broken.test", "deferred");
    assert_eq!(
        frank["last_reply"],
        "451 4.4.3 broken.test: MX lookup failed: MX broken.test.: the server answered Server Failure",
        "{frank}"
    );
    assert_eq!(senders_mx.received().len(), 2);
}

#[test]
fn a_smarthost_route_logs_in_over_starttls_to_another_portcullis() {
    let final_mx = Mx::start("127.0.0.2", &[]);
    let smarthost = Server::start(
        "smarthost",
        Options {
            extra: format!(
                "[delivery]\nretry_seconds = [1]\n{}",
                everything_to(&final_mx)
            ),
            log: Some("info"),
            ..Options::default()
        },
    );
    smarthost.add_account(USER, PASSWORD);
    let password = smarthost.dir.0.join("relay-password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let routes = format!(
        "[[route]]\ndomains = [\"*\"]\nrelay = \"{}\"\ntls = \"encrypt\"\nauth_user = \"{USER}\"\nauth_password_file = \"{}\"\n",
        smarthost.submission,
        password.display()
    );
    let server = server("via-smarthost", &routes);
    let id = submit(&server, &["bob@example.org"]);
    let received = final_mx.wait_for(1, LIMIT);
    assert_eq!(received[0].rcpt_tos, ["bob@example.org"]);
    let bob = wait_status(&server, &id, "bob@example.org", "delivered");
    let relayed = smarthost.queue();
    assert_eq!(relayed.len(), 1);
    let smarthost_id = relayed[0]["id"].as_str().unwrap();
    assert_eq!(
        bob["last_reply"],
        format!("250 2.0.0 OK: queued as {smarthost_id}"),
        "the smarthost's own reply"
    );
    assert_eq!(relayed[0]["auth_user"], USER, "it logged in");
    assert!(
        relayed[0]["tls"]["version"]
            .as_str()
            .unwrap()
            .starts_with("TLS"),
        "{relayed:?}"
    );
}

#[test]
fn kill_9_during_the_delivery_of_thousands_of_messages_loses_none() {
    const COUNT: usize = 2000;
    let mx = Mx::start("127.0.0.2", &[]);
    // Queue them all first, with delivery off, so that the kill falls in the middle of it.
    let mut server = server(
        "kill9-delivery",
        &format!("enabled = false\n{}", everything_to(&mx)),
    );
    let port = server.submission.port().to_string();
    let count = COUNT.to_string();
    let (ok, stdout, stderr) = common::python(&[
        "many",
        "--port",
        &port,
        "--from",
        SENDER,
        "--to",
        "bob@example.org",
        "--count",
        &count,
        "--prefix",
        "kill9",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("\"acked\": {COUNT}")), "{stdout}");
    server.terminate();
    let config = std::fs::read_to_string(&server.config_path).unwrap();
    std::fs::write(
        &server.config_path,
        config.replace("enabled = false", "enabled = true"),
    )
    .unwrap();
    server.launch();
    // Kill it in the middle of delivering, then start it again on the same data.
    assert!(wait_until(LIMIT, || mx.received().len() >= COUNT / 4));
    server.kill();
    let at_kill = mx.received().len();
    server.launch();
    let unique = || {
        let subjects: std::collections::BTreeSet<String> = mx
            .received()
            .iter()
            .filter_map(|m| m.header("Subject"))
            .collect();
        subjects.len()
    };
    let all = wait_until(Duration::from_secs(120), || unique() == COUNT);
    let received = mx.received().len();
    assert!(all, "{} of {COUNT} delivered after the restart", unique());
    let duplicates = received - COUNT;
    println!("kill -9 after {at_kill} deliveries: {COUNT} delivered, {duplicates} duplicate(s)");
    assert!(at_kill < COUNT, "the kill came after the last delivery");
    assert!(
        duplicates <= 200,
        "duplicates only around the kill: {duplicates}"
    );
}
