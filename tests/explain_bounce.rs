//! `portcullis explain --bounce` run as a binary on the sample bounces in `tests/data/bounces/`
//! (an RFC 3464 DSN, Exim carrying Gmail's `550 5.7.26`, Gmail's own notice, a Microsoft 365
//! NDR, a Yahoo notice, a Postfix DSN) and on a DSN that `portcullis::bounce::build` makes, with
//! each failed recipient and its verdict checked in the JSON output and in the text.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use portcullis::bounce::{Action, Kind, Recipient, Report, Return, build};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn sample(name: &str) -> String {
    format!("{}/tests/data/bounces/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("portcullis ran")
}

/// (address, verdict, action or null) of each recipient in the JSON output.
fn verdicts(output: &Output) -> Vec<(String, String, Option<String>)> {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    value["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap_or_default().to_string(),
                r["verdict"].as_str().unwrap_or_default().to_string(),
                r["action"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The recipients a bounce should give: address, verdict, and the DSN's Action (None in text).
type Expected<'a> = &'a [(&'a str, &'a str, Option<&'a str>)];

fn expect(output: &Output, expected: Expected<'_>) {
    let got = verdicts(output);
    let want: Vec<(String, String, Option<String>)> = expected
        .iter()
        .map(|(a, v, act)| (a.to_string(), v.to_string(), act.map(str::to_string)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn each_sample_bounce_gives_each_recipient_and_verdict() {
    let cases: &[(&str, Expected<'_>)] = &[
        (
            "rfc3464.eml",
            &[
                ("nobody@example.com", "remove_address", Some("failed")),
                ("full@example.net", "retry_later", Some("delayed")),
                ("fast@example.net", "slow_down", Some("delayed")),
            ],
        ),
        (
            "gmail-5.7.26.eml",
            &[("bob@gmail.example", "fix_dns", None)],
        ),
        (
            "gmail-address-not-found.eml",
            &[("nobody@example.net", "remove_address", None)],
        ),
        (
            "microsoft-ndr.eml",
            &[
                ("bob@contoso.example", "remove_address", None),
                ("carol@outlook.example", "get_delisted", None),
            ],
        ),
        (
            "yahoo.eml",
            &[
                ("dave@yahoo.example", "remove_address", None),
                ("erin@yahoo.example", "slow_down", None),
            ],
        ),
        (
            "postfix.eml",
            &[
                ("ghost@example.com", "remove_address", Some("failed")),
                ("frank@example.net", "get_delisted", Some("failed")),
                ("grace@example.net", "shrink_message", Some("failed")),
            ],
        ),
    ];
    for (name, expected) in cases {
        let path = sample(name);
        expect(
            &run(&["explain", "--bounce", &path, "--json"], None),
            expected,
        );
    }
}

#[test]
fn the_gmail_dmarc_bounce_reads_as_fix_dns_in_text() {
    let output = run(&["explain", "--bounce", &sample("gmail-5.7.26.eml")], None);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("bob@gmail.example: FIX DNS"), "{text}");
    assert!(text.contains("DMARC policy rejection"), "{text}");
    assert!(text.contains("550-5.7.26 Unauthenticated mail"), "{text}");
    // The returned original's Cc: is no failed recipient.
    assert!(!text.contains("eve@example.com"), "{text}");
}

#[test]
fn a_bounce_is_read_from_standard_input() {
    let message = std::fs::read(sample("postfix.eml")).expect("sample");
    let output = run(&["explain", "--bounce", "-", "--json"], Some(&message));
    assert_eq!(verdicts(&output).len(), 3);
}

#[test]
fn our_own_dsn_is_read_back() {
    let recipients = [
        Recipient {
            final_recipient: "bob@example.com",
            original_recipient: None,
            action: Action::Failed,
            status: "5.1.1",
            remote_mta: Some("mx.example.com"),
            remote_reply: Some(
                "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check the address.",
            ),
            last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_795_346_563)),
            will_retry_until: None,
        },
        Recipient {
            final_recipient: "carol@example.net",
            original_recipient: None,
            action: Action::Failed,
            status: "5.7.26",
            remote_mta: Some("mx.example.net"),
            remote_reply: Some("550 5.7.26 Unauthenticated mail is refused by DMARC policy"),
            last_attempt: None,
            will_retry_until: None,
        },
    ];
    let report = Report {
        reporting_mta: "mail.example.org",
        time: UNIX_EPOCH + Duration::from_secs(1_795_346_600),
        arrival: UNIX_EPOCH + Duration::from_secs(1_795_346_000),
        unique: "T1",
        sender: "alice@example.org",
        queue_id: "Q1",
        envid: None,
        kind: Kind::Failure,
        original: b"From: alice@example.org\r\nTo: bob@example.com, dan@example.com\r\nSubject: Lunch\r\n\r\nSee you at noon.\r\n",
        ret: Return::Headers,
        recipients: &recipients,
    };
    let dsn = build(&report);
    let output = run(&["explain", "--bounce", "-", "--json"], Some(&dsn));
    expect(
        &output,
        &[
            ("bob@example.com", "remove_address", Some("failed")),
            ("carol@example.net", "fix_dns", Some("failed")),
        ],
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(value["form"], "rfc3464");
    assert_eq!(value["reporting_mta"], "mail.example.org");
    // The joined multi-line reply comes back as its two lines.
    assert_eq!(
        value["recipients"][0]["reply"],
        "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 Please check the address."
    );
}

#[test]
fn missing_files_and_messages_that_are_no_bounce_fail_clearly() {
    let missing = run(&["explain", "--bounce", "/nonexistent/bounce.eml"], None);
    assert_eq!(missing.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such file"));
    let letter = b"From: a@example.org\r\nSubject: hi\r\n\r\nHello bob@example.com.\r\n";
    let none = run(&["explain", "--bounce", "-"], Some(letter));
    assert_eq!(none.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no failed recipient found"));
    let both = run(&["explain", "--bounce", "-", "550"], None);
    assert_eq!(both.status.code(), Some(64), "a code and --bounce together");
}
