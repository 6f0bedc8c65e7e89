use std::time::{Duration, UNIX_EPOCH};

use super::*;

const ORIGINAL: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Hello\r\n\r\nBody line one\r\nBody line two\r\n";

fn recipient<'a>(reply: Option<&'a str>) -> Recipient<'a> {
    Recipient {
        final_recipient: "bob@example.com",
        original_recipient: Some(Orcpt {
            addr_type: "rfc822",
            address: "Bob@Example.com",
        }),
        action: Action::Failed,
        status: "5.1.1",
        remote_mta: Some("mx.example.com"),
        remote_reply: reply,
        last_attempt: Some(UNIX_EPOCH + Duration::from_secs(1_795_346_563)),
        will_retry_until: None,
    }
}

fn report<'a>(recipients: &'a [Recipient<'a>]) -> Report<'a> {
    Report {
        reporting_mta: "mail.example.org",
        time: UNIX_EPOCH + Duration::from_secs(1_795_346_600),
        arrival: UNIX_EPOCH + Duration::from_secs(1_795_346_000),
        unique: "20261122.Q1",
        sender: "alice@example.org",
        queue_id: "Q1",
        envid: Some("env-42"),
        kind: Kind::Failure,
        original: ORIGINAL,
        ret: Return::Headers,
        recipients,
    }
}

fn text(report: &Report<'_>) -> String {
    String::from_utf8(build(report)).expect("the test inputs are UTF-8")
}

/// The top-level header section, unfolded.
fn top_headers(message: &str) -> Vec<String> {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    head.replace("\r\n ", " ")
        .split("\r\n")
        .map(str::to_string)
        .collect()
}

/// The delivery-status part's body, unfolded.
fn status_part(message: &str) -> String {
    let start = message
        .find("Content-Type: message/delivery-status\r\n\r\n")
        .expect("a delivery-status part")
        + "Content-Type: message/delivery-status\r\n\r\n".len();
    let rest = &message[start..];
    let end = rest.find("\r\n--=_dsn_").expect("a closing boundary");
    rest[..end].replace("\r\n ", " ")
}

fn assert_well_formed(message: &[u8]) {
    for line in message.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && message[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(message.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}

#[test]
fn header_fields_are_exact() {
    let rcpts = [recipient(Some("550 5.1.1 <bob@example.com>: user unknown"))];
    let message = text(&report(&rcpts));
    let headers = top_headers(&message);
    let expected = [
        "From: Mail Delivery System <MAILER-DAEMON@mail.example.org>",
        "To: <alice@example.org>",
        "Subject: Undelivered Mail Returned to Sender",
        "Date: Sun, 22 Nov 2026 11:23:20 +0000",
        "Message-ID: <20261122.Q1@mail.example.org>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"=_dsn_20261122.Q1_0\"",
    ];
    assert_eq!(headers, expected);
    assert_well_formed(message.as_bytes());
    assert!(message.ends_with("\r\n--=_dsn_20261122.Q1_0--\r\n"));
}

#[test]
fn subjects_follow_the_kind() {
    let rcpts = [recipient(None)];
    for (kind, subject) in [
        (Kind::Delay, "Subject: Delayed Mail (still being retried)"),
        (Kind::Success, "Subject: Successful Mail Delivery Report"),
    ] {
        let message = text(&Report {
            kind,
            ..report(&rcpts)
        });
        assert!(top_headers(&message).iter().any(|h| h == subject));
    }
}

#[test]
fn per_message_and_per_recipient_fields() {
    let rcpts = [recipient(Some("550 5.1.1 <bob@example.com>: user unknown"))];
    let message = text(&report(&rcpts));
    let status = status_part(&message);
    let expected = "Reporting-MTA: dns; mail.example.org\r\n\
        Original-Envelope-Id: env-42\r\n\
        X-Portcullis-Queue-ID: Q1\r\n\
        Arrival-Date: Sun, 22 Nov 2026 11:13:20 +0000\r\n\
        \r\n\
        Original-Recipient: rfc822; Bob@Example.com\r\n\
        Final-Recipient: rfc822; bob@example.com\r\n\
        Action: failed\r\n\
        Status: 5.1.1\r\n\
        Remote-MTA: dns; mx.example.com\r\n\
        Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: user unknown\r\n\
        Last-Attempt-Date: Sun, 22 Nov 2026 11:22:43 +0000\r\n";
    assert_eq!(status, expected);
}

#[test]
fn delays_say_until_when() {
    let mut rcpt = recipient(Some("451 4.3.0 try later"));
    rcpt.action = Action::Delayed;
    rcpt.status = "4.3.0";
    rcpt.original_recipient = None;
    rcpt.will_retry_until = Some(UNIX_EPOCH + Duration::from_secs(1_795_778_563));
    let rcpts = [rcpt];
    let message = text(&Report {
        kind: Kind::Delay,
        envid: None,
        ..report(&rcpts)
    });
    let status = status_part(&message);
    assert!(status.contains("Action: delayed\r\nStatus: 4.3.0\r\n"));
    assert!(status.contains("Will-Retry-Until: Fri, 27 Nov 2026 11:22:43 +0000\r\n"));
    assert!(!status.contains("Original-Recipient"));
    assert!(!status.contains("Original-Envelope-Id"));
}

#[test]
fn invalid_status_falls_back_to_the_class() {
    let mut rcpt = recipient(None);
    rcpt.status = "5.1.1\r\nX-Evil: 1";
    let rcpts = [rcpt];
    let status = status_part(&text(&report(&rcpts)));
    assert!(status.contains("Status: 5.0.0\r\n"));
    assert!(!status.contains("X-Evil"));
}

#[test]
fn multi_line_reply_is_joined_on_one_field() {
    let reply = "550-5.1.1 The email account that you tried to reach does not exist.\r\n550-5.1.1 Please try double-checking the recipient's email address.\r\n550 5.1.1 https://support.example.com/?p=NoSuchUser x";
    let rcpts = [recipient(Some(reply))];
    let message = text(&report(&rcpts));
    assert_well_formed(message.as_bytes());
    let status = status_part(&message);
    assert!(status.contains(
        "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550-5.1.1 Please try double-checking the recipient's email address. 550 5.1.1 https://support.example.com/?p=NoSuchUser x\r\n"
    ));
}

#[test]
fn huge_reply_keeps_lines_under_998() {
    let huge = format!("550 5.1.1 {} {}", "x".repeat(5000), "word ".repeat(2000));
    let rcpts = [recipient(Some(&huge))];
    let bytes = build(&report(&rcpts));
    assert_well_formed(&bytes);
    let message = String::from_utf8(bytes).expect("UTF-8");
    let status = status_part(&message);
    let diagnostic = status
        .lines()
        .find(|l| l.starts_with("Diagnostic-Code:"))
        .expect("a Diagnostic-Code field");
    assert!(diagnostic.len() <= MAX_DIAGNOSTIC + 100);
}

#[test]
fn reply_cannot_inject_header_lines() {
    let evil = "550 5.1.1 no\r\nBcc: victim@example.net\r\n\r\nX-Injected: yes\rZ: 1\n\u{7f}\u{85}";
    let mut rcpt = recipient(Some(evil));
    rcpt.final_recipient = "bob@example.com\r\nX-Injected: addr";
    rcpt.remote_mta = Some("mx.example.com\r\nX-Injected: mta");
    let rcpts = [rcpt];
    let bytes = build(&Report {
        sender: "alice@example.org>\r\nBcc: victim@example.net",
        envid: Some("e\r\nX-Injected: envid"),
        ..report(&rcpts)
    });
    assert_well_formed(&bytes);
    let message = String::from_utf8(bytes).expect("UTF-8");
    for line in message.split("\r\n") {
        assert!(!line.starts_with("Bcc:"), "injected: {line}");
        assert!(!line.starts_with("X-Injected:"), "injected: {line}");
        assert!(!line.starts_with("Z:"), "injected: {line}");
    }
    let status = status_part(&message);
    assert!(status.contains("Final-Recipient: rfc822; bob@example.com X-Injected: addr\r\n"));
    assert!(status.contains("Remote-MTA: dns; mx.example.comX-Injected:mta\r\n"));
}

#[test]
fn headers_only_by_default_and_full_on_request() {
    let rcpts = [recipient(None)];
    let hdrs = text(&report(&rcpts));
    assert!(hdrs.contains("Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Hello\r\n\r\n--=_dsn_"));
    assert!(!hdrs.contains("Body line one"));

    let full = text(&Report {
        ret: Return::Full,
        ..report(&rcpts)
    });
    assert!(full.contains(
        "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: Alice"
    ));
    assert!(full.contains("Body line one\r\nBody line two\r\n\r\n--=_dsn_"));
}

#[test]
fn full_falls_back_to_headers_when_too_large() {
    let mut big = ORIGINAL.to_vec();
    big.extend(std::iter::repeat_n(b"0123456789abcdef\n".as_slice(), FULL_LIMIT / 16).flatten());
    let rcpts = [recipient(None)];
    let bytes = build(&Report {
        ret: Return::Full,
        original: &big,
        ..report(&rcpts)
    });
    assert_well_formed(&bytes);
    let message = String::from_utf8(bytes).expect("UTF-8");
    assert!(message.contains("Content-Type: text/rfc822-headers"));
    assert!(!message.contains("0123456789abcdef"));
    assert!(message.contains("Only the header section"));
}

#[test]
fn bare_line_ends_and_long_header_lines_of_the_original_are_repaired() {
    let original = format!("Subject: {}\nX-A: b\r\rX-C: d\n\nbody\n", "s".repeat(2500));
    let rcpts = [recipient(None)];
    let bytes = build(&Report {
        original: original.as_bytes(),
        ..report(&rcpts)
    });
    assert_well_formed(&bytes);
    let message = String::from_utf8(bytes).expect("UTF-8");
    assert!(message.contains("\r\nX-A: b\r\n\r\n--=_dsn_"));
    assert!(!message.contains("X-C: d"));
}

#[test]
fn boundary_avoids_the_returned_content() {
    let original = b"Subject: x\r\n\r\n--=_dsn_20261122.Q1_0\r\n";
    let rcpts = [recipient(None)];
    let message = text(&Report {
        ret: Return::Full,
        original,
        ..report(&rcpts)
    });
    assert!(message.contains("boundary=\"=_dsn_20261122.Q1_1\""));
}

/// Quoted-printable decoding, enough for the tests.
fn qp_decode(encoded: &str) -> String {
    let joined = encoded.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8").replace("\r\n", "\n")
}

fn explanation(message: &str) -> String {
    let marker = "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    let start = message.find(marker).expect("a text part") + marker.len();
    let rest = &message[start..];
    let end = rest.find("\r\n--=_dsn_").expect("a boundary");
    qp_decode(&rest[..end])
}

#[test]
fn explanation_uses_the_knowledge_base() {
    let reply = "550 5.1.1 <bob@example.com>: user unknown";
    let rcpts = [recipient(Some(reply))];
    let message = text(&report(&rcpts));
    let plain = explanation(&message);
    let found = explain::explain(reply).expect("550 5.1.1 is known");
    let combination = found.combination.expect("550 5.1.1 has a combination");
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = words(&plain);
    assert!(flat.contains("<bob@example.com>: could not be delivered (status 5.1.1)."));
    assert!(
        flat.contains(
            "The server mx.example.com replied: 550 5.1.1 <bob@example.com>: user unknown"
        )
    );
    assert!(flat.contains(&words(&combination.means)));
    assert!(flat.contains(&words(&combination.fix.join(" "))));
    assert!(flat.contains(&words(&found.retry.when)));
    // 7-bit and short lines.
    for line in message.split("\r\n") {
        assert!(line.is_ascii() && line.len() <= 998);
    }
}

#[test]
fn non_ascii_addresses_use_utf8_type() {
    let mut rcpt = recipient(Some("550 5.1.1 unknown user \u{e9}"));
    rcpt.final_recipient = "j\u{f6}rg@b\u{fc}cher.example";
    rcpt.original_recipient = Some(Orcpt {
        addr_type: "utf-8",
        address: "j\u{f6}rg+x@b\u{fc}cher.example",
    });
    let rcpts = [rcpt];
    let message = text(&report(&rcpts));
    let status = status_part(&message);
    assert!(status.contains("Final-Recipient: utf-8; j\\x{F6}rg@b\\x{FC}cher.example\r\n"));
    assert!(
        status.contains("Original-Recipient: utf-8; j\\x{F6}rg\\x{2B}x@b\\x{FC}cher.example\r\n")
    );
    assert!(status.contains("Diagnostic-Code: smtp; 550 5.1.1 unknown user ?\r\n"));
    assert!(status.is_ascii());
    assert!(explanation(&message).contains("j\u{f6}rg@b\u{fc}cher.example"));
}

#[test]
fn notify_rules() {
    let all = [
        Action::Failed,
        Action::Delayed,
        Action::Delivered,
        Action::Relayed,
        Action::Expanded,
    ];
    for action in all {
        assert!(!should_notify("", None, action));
        assert!(!should_notify(
            "<>",
            Notify::parse("SUCCESS,FAILURE,DELAY").ok(),
            action
        ));
        assert!(!should_notify("a@b", Notify::parse("NEVER").ok(), action));
    }
    let default = |a| should_notify("a@b", None, a);
    assert!(default(Action::Failed) && default(Action::Delayed));
    assert!(!default(Action::Delivered) && !default(Action::Relayed));
    let success = Notify::parse("success").ok();
    assert!(should_notify("a@b", success, Action::Delivered));
    assert!(should_notify("a@b", success, Action::Relayed));
    assert!(should_notify("a@b", success, Action::Expanded));
    assert!(!should_notify("a@b", success, Action::Failed));
    assert!(!should_notify("a@b", success, Action::Delayed));
    let failure = Notify::parse("FAILURE").ok();
    assert!(should_notify("a@b", failure, Action::Failed));
    assert!(!should_notify("a@b", failure, Action::Delayed));
}

#[test]
fn notify_parsing() {
    assert_eq!(
        Notify::parse("never"),
        Ok(Notify {
            never: true,
            ..Notify::default()
        })
    );
    let n = Notify::parse("Delay,SUCCESS,failure").expect("valid");
    assert!(n.success && n.failure && n.delay && !n.never);
    assert_eq!(n.to_string(), "SUCCESS,FAILURE,DELAY");
    assert_eq!(
        "DELAY".parse::<Notify>().map(|n| n.to_string()),
        Ok("DELAY".into())
    );
    for bad in [
        "",
        "NEVER,SUCCESS",
        "FAILURE,never",
        "SUCCESS,,DELAY",
        "ALWAYS",
        " SUCCESS",
    ] {
        let err = Notify::parse(bad).expect_err(bad);
        assert!(err.contains("NOTIFY"), "{bad}: {err}");
    }
    assert!(
        Notify::parse("NEVER,SUCCESS")
            .expect_err("mixed")
            .contains("NEVER cannot")
    );
}
