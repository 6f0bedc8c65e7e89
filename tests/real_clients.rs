//! End-to-end submissions by real clients: Python's smtplib and swaks.

mod common;

use common::{Options, Server, assert_reply, smtplib};
use serde_json::Value;

const USER: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";

/// STARTTLS, AUTH PLAIN as USER with `password`, then a message from `from`.
fn starttls_submission(server: &Server, password: &str, from: &str) -> Value {
    let port = server.submission.port().to_string();
    let args = [
        "--port",
        &port,
        "--mode",
        "starttls",
        "--user",
        USER,
        "--password",
        password,
    ];
    smtplib(
        server,
        &[&args[..], &["--from", from, "--to", "bob@example.net"]].concat(),
    )
}

#[test]
fn smtplib_submits_with_starttls_plain_starttls_login_and_implicit_tls() {
    let server = Server::start("smtplib", Options::default());
    server.add_account(USER, PASSWORD);
    let submission = server.submission.port().to_string();
    let submissions = server.submissions.port().to_string();
    let mut ids = Vec::new();
    for (mode, port, mechanism) in [
        ("starttls", &submission, "PLAIN"),
        ("starttls", &submission, "LOGIN"),
        ("ssl", &submissions, "PLAIN"),
    ] {
        let subject = format!("{mode} {mechanism}");
        let result = smtplib(
            &server,
            &[
                "--port",
                port,
                "--mode",
                mode,
                "--user",
                USER,
                "--password",
                PASSWORD,
                "--auth",
                mechanism,
                "--from",
                USER,
                "--to",
                "bob@example.net",
                "--subject",
                &subject,
            ],
        );
        assert_eq!(result["tls"], "TLSv1.3");
        assert_reply(&result["auth"], 235, "2.7.0");
        assert_reply(&result["mail"], 250, "2.1.0");
        assert_reply(&result["rcpt"], 250, "2.1.5");
        assert_reply(&result["data"], 250, "2.0.0 OK: queued as ");
        let text = result["data"][1].as_str().unwrap();
        ids.push((text.rsplit(' ').next().unwrap().to_string(), subject));
    }
    let queue = server.queue();
    assert_eq!(queue.len(), 3);
    for (message, (id, subject)) in queue.iter().zip(&ids) {
        assert_eq!(message["id"], id.as_str());
        assert_eq!(message["from"], USER);
        assert_eq!(message["to"], serde_json::json!(["bob@example.net"]));
        assert_eq!(
            message["recipients"],
            serde_json::json!([{
                "address": "bob@example.net",
                "status": "queued",
                "attempts": 0,
                "last_reply": null,
                "next_attempt_at": null,
            }])
        );
        assert_eq!(message["auth_user"], USER);
        assert_eq!(message["tls"]["version"], "TLSv1.3");
        assert!(message["size"].as_u64().unwrap() > 100);
        assert!(message["received_at"].as_str().unwrap().ends_with('Z'));
        let shown = server.show(id);
        assert!(
            shown.contains(&format!("Subject: {subject}\r\n")),
            "{shown}"
        );
        assert!(shown.contains("with ESMTPSA"), "{shown}");
        assert!(
            shown.contains(&format!("(authenticated as {USER})")),
            "{shown}"
        );
        // smtplib dot-stuffed this line; the spool holds it unstuffed.
        assert!(shown.contains("\r\n.leading dot\r\n"), "{shown}");
    }
}

#[test]
fn refusals_seen_by_smtplib_name_the_cause() {
    let server = Server::start("refusals", Options::default());
    server.add_account(USER, PASSWORD);
    let port = server.submission.port().to_string();
    let base = [
        "--port",
        port.as_str(),
        "--from",
        USER,
        "--to",
        "bob@example.net",
    ];

    let wrong = smtplib(
        &server,
        &[
            &base[..],
            &["--mode", "starttls", "--user", USER, "--password", "wrong"],
        ]
        .concat(),
    );
    assert_reply(
        &wrong["error"],
        535,
        "5.7.8 Authentication credentials invalid",
    );

    let unknown = smtplib(
        &server,
        &[
            &base[..],
            &[
                "--mode",
                "starttls",
                "--user",
                "nobody@example.test",
                "--password",
                PASSWORD,
            ],
        ]
        .concat(),
    );
    assert_eq!(
        unknown["error"], wrong["error"],
        "unknown user and wrong password must look the same"
    );

    let clear = smtplib(
        &server,
        &[
            &base[..],
            &["--mode", "plain", "--user", USER, "--password", PASSWORD],
        ]
        .concat(),
    );
    assert_reply(
        &clear["error"],
        530,
        "5.7.0 Must issue a STARTTLS command first",
    );

    let no_tls = smtplib(&server, &[&base[..], &["--mode", "plain"]].concat());
    assert_reply(
        &no_tls["mail"],
        530,
        "5.7.0 Must issue a STARTTLS command first",
    );

    let no_auth = smtplib(&server, &[&base[..], &["--mode", "starttls"]].concat());
    assert_reply(&no_auth["mail"], 530, "5.7.0 Authentication required");

    assert!(server.queue().is_empty());
}

fn swaks(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn swaks_submits_with_starttls_and_with_implicit_tls() {
    let server = Server::start("swaks", Options::default());
    server.add_account(USER, PASSWORD);
    let common = [
        "--auth",
        "PLAIN",
        "--auth-user",
        USER,
        "--auth-password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "carol@example.net",
        "--helo",
        "swaks.example",
    ];
    let starttls = format!("127.0.0.1:{}", server.submission.port());
    let (ok, transcript) = swaks(&[&["--server", &starttls, "--tls"], &common[..]].concat());
    assert!(ok, "{transcript}");
    assert!(transcript.contains("~  235 2.7.0"), "{transcript}");
    assert!(
        transcript.contains("~  250 2.0.0 OK: queued as "),
        "{transcript}"
    );
    let implicit = format!("127.0.0.1:{}", server.submissions.port());
    let (ok, transcript) =
        swaks(&[&["--server", &implicit, "--tls-on-connect"], &common[..]].concat());
    assert!(ok, "{transcript}");
    assert!(
        transcript.contains("~  250 2.0.0 OK: queued as "),
        "{transcript}"
    );
    let queue = server.queue();
    assert_eq!(queue.len(), 2);
    assert!(
        queue
            .iter()
            .all(|m| m["auth_user"] == USER && m["to"][0] == "carol@example.net")
    );
}

#[test]
fn swaks_wrong_password_is_535_and_no_tls_is_530() {
    let server = Server::start("swaks-refusals", Options::default());
    server.add_account(USER, PASSWORD);
    let target = format!("127.0.0.1:{}", server.submission.port());
    let (ok, transcript) = swaks(&[
        "--server",
        &target,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        USER,
        "--auth-password",
        "nope",
        "--from",
        USER,
        "--to",
        "x@example.net",
    ]);
    assert!(!ok);
    assert!(
        transcript.contains("* 535 5.7.8 Authentication credentials invalid"),
        "{transcript}"
    );
    let (ok, transcript) = swaks(&["--server", &target, "--from", USER, "--to", "x@example.net"]);
    assert!(!ok);
    assert!(
        transcript.contains("<** 530 5.7.0 Must issue a STARTTLS command first"),
        "{transcript}"
    );
}

#[test]
fn a_foreign_sender_address_is_553_5_7_1() {
    let server = Server::start("foreign-sender", Options::default());
    server.add_account(USER, PASSWORD);
    let result = starttls_submission(&server, PASSWORD, "ceo@example.test");
    assert_reply(
        &result["mail"],
        553,
        "5.7.1 Sender address <ceo@example.test> not owned by user <alice@example.test>",
    );
    // The own address is matched case-insensitively, like the login.
    let upper = USER.to_uppercase();
    let own = starttls_submission(&server, PASSWORD, &upper);
    assert_reply(&own["data"], 250, "2.0.0");
}

#[test]
fn app_passwords_log_in_until_revoked_and_disabled_accounts_cannot() {
    let server = Server::start("app-password-login", Options::default());
    server.add_account(USER, PASSWORD);
    let text = server.cli_ok(&["accounts", "app-password", "add", USER, "laptop"], None);
    let app = text
        .split_whitespace()
        .find(|w| w.starts_with("pcap_"))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let login = |password: &str| starttls_submission(&server, password, USER);
    assert_reply(&login(&app)["auth"], 235, "2.7.0");
    assert_reply(&login(PASSWORD)["auth"], 235, "2.7.0");
    server.cli_ok(
        &["accounts", "app-password", "revoke", USER, "laptop"],
        None,
    );
    assert_reply(&login(&app)["error"], 535, "5.7.8");
    assert_reply(&login(PASSWORD)["auth"], 235, "2.7.0");
    server.cli_ok(&["accounts", "disable", USER], None);
    assert_reply(&login(PASSWORD)["error"], 535, "5.7.8");
    server.cli_ok(&["accounts", "enable", USER], None);
    assert_reply(&login(PASSWORD)["auth"], 235, "2.7.0");
    // A time (RFC 3339, so it starts with the year), not "never". It is written with the
    // batched record of logins, so it may take a moment.
    let last_login_shown = || {
        let shown = server.cli_ok(&["accounts", "show", USER], None);
        shown.lines().any(|line| line.starts_with("last login: 20"))
    };
    assert!(
        common::wait_until(std::time::Duration::from_secs(10), last_login_shown),
        "{}",
        server.cli_ok(&["accounts", "show", USER], None)
    );
}

#[test]
fn aliases_and_granted_domains_may_be_used_as_sender() {
    let server = Server::start("aliases", Options::default());
    server.add_account(USER, PASSWORD);
    server.cli_ok(
        &["accounts", "alias", "add", USER, "sales@example.test"],
        None,
    );
    server.cli_ok(&["accounts", "grant", USER, "@news.example.test"], None);
    let send_as = |from: &str| starttls_submission(&server, PASSWORD, from);
    assert_reply(&send_as("sales@example.test")["data"], 250, "2.0.0");
    assert_reply(&send_as("letters@news.example.test")["data"], 250, "2.0.0");
    assert_reply(&send_as("ceo@example.test")["mail"], 553, "5.7.1");
}

/// RFC 3461 parameters sent by smtplib are stored with the message: RET, ENVID xtext-decoded,
/// and NOTIFY and ORCPT as one entry per recipient; a message without them stores none.
#[test]
fn smtplib_dsn_parameters_are_stored_with_the_message() {
    let server = Server::start("dsn-parameters", Options::default());
    server.add_account(USER, PASSWORD);
    let port = server.submission.port().to_string();
    let login = [
        "--port",
        port.as_str(),
        "--mode",
        "starttls",
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--from",
        USER,
        "--to",
        "bob@example.net",
    ];
    let dsn = [
        "--ehlo-features",
        "--mail-option",
        "RET=HDRS",
        "--mail-option",
        "ENVID=abc+2Bdef",
        "--rcpt-option",
        "NOTIFY=SUCCESS,FAILURE",
        "--rcpt-option",
        "ORCPT=rfc822;orig+40example.test",
    ];
    let result = smtplib(&server, &[&login[..], &dsn[..]].concat());
    assert!(
        result["features"]
            .as_array()
            .is_some_and(|features| features.contains(&serde_json::json!("dsn"))),
        "{result}"
    );
    assert_reply(&result["mail"], 250, "2.1.0");
    assert_reply(&result["rcpt"], 250, "2.1.5");
    assert_reply(&result["data"], 250, "2.0.0 OK: queued as ");
    let plain = smtplib(&server, &login);
    assert_reply(&plain["data"], 250, "2.0.0 OK: queued as ");

    let queue = server.queue();
    assert_eq!(queue.len(), 2);
    let (with, without) = (&queue[0], &queue[1]);
    assert_eq!(with["ret"], "HDRS");
    assert_eq!(with["envid"], "abc+def");
    assert_eq!(
        with["dsn"],
        serde_json::json!([{"notify": "SUCCESS,FAILURE", "orcpt": "rfc822;orig@example.test"}])
    );
    for field in ["ret", "envid", "dsn"] {
        assert!(without.get(field).is_none(), "{field} in {without}");
    }
}

#[test]
fn malformed_dsn_parameters_seen_by_smtplib_say_what_to_send() {
    let server = Server::start("dsn-refusals", Options::default());
    server.add_account(USER, PASSWORD);
    let port = server.submission.port().to_string();
    let send = |option: &str, value: &str| {
        smtplib(
            &server,
            &[
                "--port",
                &port,
                "--mode",
                "starttls",
                "--user",
                USER,
                "--password",
                PASSWORD,
                "--from",
                USER,
                "--to",
                "bob@example.net",
                option,
                value,
            ],
        )
    };
    let ret = send("--mail-option", "RET=EVERYTHING");
    assert_reply(
        &ret["mail"],
        501,
        "5.5.4 Syntax error: RET takes FULL or HDRS; send RET=FULL",
    );
    let never = send("--rcpt-option", "NOTIFY=NEVER,SUCCESS");
    assert_reply(
        &never["rcpt"],
        501,
        "5.5.4 Syntax error: NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY",
    );
    assert!(server.queue().is_empty());
}
