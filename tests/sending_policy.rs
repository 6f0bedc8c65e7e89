//! Sending quotas and the From: header check, end to end with Python's smtplib against the
//! real binary.

mod common;

use std::time::Duration;

use common::{Options, Server, assert_reply, smtplib, wait_until};
use serde_json::Value;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const PASSWORD: &str = "correct horse battery";

/// STARTTLS, AUTH PLAIN as `user`, then one message from the user's own address to `to`;
/// `extra` adds options of `smtp_client.py send`.
fn send(server: &Server, user: &str, to: &[&str], extra: &[&str]) -> Value {
    let port = server.submission.port().to_string();
    let mut args = vec![
        "--port",
        &port,
        "--mode",
        "starttls",
        "--user",
        user,
        "--password",
        PASSWORD,
        "--from",
        user,
    ];
    for recipient in to {
        args.extend(["--to", recipient]);
    }
    args.extend_from_slice(extra);
    smtplib(server, &args)
}

fn with_accounts(name: &str, extra: &str) -> Server {
    let server = Server::start(
        name,
        Options {
            extra: extra.to_string(),
            ..Options::default()
        },
    );
    server.add_account(ALICE, PASSWORD);
    server.add_account(BOB, PASSWORD);
    server
}

/// `accounts quota USER ARGS...`, then the time a running server takes to read it (it reloads
/// the accounts' own quotas every second).
fn set_quota(server: &Server, user: &str, args: &[&str]) -> String {
    let output = server.cli_ok(&[&["accounts", "quota", user], args].concat(), None);
    std::thread::sleep(Duration::from_millis(2500));
    output
}

fn show(server: &Server, user: &str) -> String {
    server.cli_ok(&["accounts", "show", user], None)
}

#[test]
fn the_hourly_message_quota_is_451_4_7_1_per_account_and_survives_a_kill() {
    let mut server = with_accounts("message-quota", "[quotas]\nmessages_per_hour = 2\n");
    for _ in 0..2 {
        assert_reply(
            &send(&server, ALICE, &["x@example.net"], &[])["data"],
            250,
            "2.0.0",
        );
    }
    let refused = send(&server, ALICE, &["x@example.net"], &[]);
    assert_reply(
        &refused["mail"],
        451,
        "4.7.1 Account <alice@example.test> reached its quota of 2 messages per hour; it resets at ",
    );
    // Only what alice sent counts against alice.
    assert_reply(
        &send(&server, BOB, &["x@example.net"], &[])["data"],
        250,
        "2.0.0",
    );

    // The counters reach the store within about a second; then even kill -9 keeps them.
    for (user, used) in [(ALICE, "2 of 2"), (BOB, "1 of 2")] {
        let expected = format!("quota: messages per hour: {used} used, resets ");
        assert!(
            wait_until(Duration::from_secs(10), || show(&server, user)
                .contains(&expected)),
            "{}",
            show(&server, user)
        );
    }
    server.kill();
    server.launch();
    assert_reply(
        &send(&server, ALICE, &["x@example.net"], &[])["mail"],
        451,
        "4.7.1",
    );

    // An account's own quota replaces the default; 0 lifts it.
    let text = set_quota(&server, ALICE, &["--messages-per-hour", "0"]);
    assert!(
        text.contains("messages per hour: no limit (the account's own); 2 used"),
        "{text}"
    );
    assert_reply(
        &send(&server, ALICE, &["x@example.net"], &[])["data"],
        250,
        "2.0.0",
    );
    let shown = show(&server, BOB);
    assert!(
        shown.contains("quota: messages per hour: 1 of 2 used")
            && shown.contains("(server default)"),
        "{shown}"
    );
    assert_eq!(server.queue().len(), 4);
}

#[test]
fn recipients_beyond_the_daily_quota_are_451_4_7_1_and_the_rest_is_sent() {
    let server = with_accounts("recipient-quota", "");
    set_quota(&server, ALICE, &["--recipients-per-day", "3"]);
    let first = send(&server, ALICE, &["a@example.net", "b@example.net"], &[]);
    assert_reply(&first["data"], 250, "2.0.0");
    let second = send(&server, ALICE, &["c@example.net", "d@example.net"], &[]);
    assert_reply(&second["rcpts"][0], 250, "2.1.5");
    assert_reply(
        &second["rcpts"][1],
        451,
        "4.7.1 Account <alice@example.test> reached its quota of 3 recipients per day; it resets at ",
    );
    assert_reply(&second["data"], 250, "2.0.0");
    let queued: Vec<Value> = server.queue();
    let recipients: Vec<&Value> = queued.iter().map(|m| &m["to"]).collect();
    assert_eq!(
        recipients,
        [
            &serde_json::json!(["a@example.net", "b@example.net"]),
            &serde_json::json!(["c@example.net"])
        ]
    );
    // Unlimited by default, so bob is not affected; "default" puts alice back on it.
    set_quota(&server, ALICE, &["--recipients-per-day", "default"]);
    assert_reply(
        &send(&server, ALICE, &["e@example.net", "f@example.net"], &[])["data"],
        250,
        "2.0.0",
    );
}

#[test]
fn a_foreign_from_header_is_550_5_7_1_when_checked() {
    let server = with_accounts("header-from", "[policy]\ncheck_header_from = true\n");
    server.cli_ok(
        &["accounts", "alias", "add", ALICE, "sales@example.test"],
        None,
    );
    let forged = send(
        &server,
        ALICE,
        &["x@example.net"],
        &["--header-from", "The Boss <ceo@example.test>"],
    );
    assert_reply(&forged["mail"], 250, "2.1.0");
    assert_reply(
        &forged["data"],
        550,
        "5.7.1 From: header address <ceo@example.test> not owned by user <alice@example.test>",
    );
    let garbled = send(
        &server,
        ALICE,
        &["x@example.net"],
        &["--header-from", "Alice"],
    );
    assert_reply(
        &garbled["data"],
        550,
        "5.7.1 The From: header field cannot be read",
    );
    let alias = send(
        &server,
        ALICE,
        &["x@example.net"],
        &["--header-from", "\"Sales, ACME\" <sales@example.test>"],
    );
    assert_reply(&alias["data"], 250, "2.0.0");
    assert_eq!(
        server.queue().len(),
        1,
        "only the allowed message is stored"
    );
}

#[test]
fn without_the_check_the_from_header_is_the_users_business() {
    let server = with_accounts("header-from-off", "");
    let other = send(
        &server,
        ALICE,
        &["x@example.net"],
        &["--header-from", "ceo@example.test"],
    );
    assert_reply(&other["data"], 250, "2.0.0");
}
