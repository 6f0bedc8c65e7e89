//! A DSN from `portcullis::bounce::build` parses with an independent MIME parser: Python's
//! standard `email` package (policy.default), as a multipart/report whose delivery-status part
//! carries the right per-recipient fields (`tests/clients/parse_dsn.py`).

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use portcullis::bounce::{Action, Kind, Orcpt, Recipient, Report, Return, build};

fn parse(dsn: &[u8], name: &str) -> serde_json::Value {
    let path =
        std::env::temp_dir().join(format!("portcullis-dsn-{}-{name}.eml", std::process::id()));
    std::fs::write(&path, dsn).expect("write the DSN");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/parse_dsn.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("run python3");
    let _ = std::fs::remove_file(&path);
    assert!(
        output.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python3 printed JSON")
}

fn recipients(long_reply: &str) -> Vec<Recipient<'_>> {
    vec![
        Recipient {
            final_recipient: "bob@example.com",
            original_recipient: Some(Orcpt {
                addr_type: "rfc822",
                address: "Bob@example.com",
            }),
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
            status: "5.2.2",
            remote_mta: None,
            remote_reply: Some(long_reply),
            last_attempt: None,
            will_retry_until: None,
        },
    ]
}

fn report<'a>(rcpts: &'a [Recipient<'a>], ret: Return) -> Report<'a> {
    Report {
        reporting_mta: "mail.example.org",
        time: UNIX_EPOCH + Duration::from_secs(1_795_346_600),
        arrival: UNIX_EPOCH + Duration::from_secs(1_795_346_000),
        unique: "T1",
        sender: "alice@example.org",
        queue_id: "Q1",
        envid: Some("env-1"),
        kind: Kind::Failure,
        original: b"From: alice@example.org\r\nSubject: Lunch\r\n\r\nSee you at noon.\r\n",
        ret,
        recipients: rcpts,
    }
}

#[test]
fn python_email_parses_the_report() {
    // One word longer than a header line may be: it comes back folded, never over 998 octets.
    let long_reply = format!("552 5.2.2 {} over quota", "z".repeat(3000));
    let rcpts = recipients(&long_reply);
    for (ret, returned) in [
        (Return::Headers, "text/rfc822-headers"),
        (Return::Full, "message/rfc822"),
    ] {
        let dsn = build(&report(&rcpts, ret));
        let parsed = parse(&dsn, returned.replace('/', "-").as_str());
        assert_eq!(parsed["type"], "multipart/report");
        assert_eq!(parsed["report_type"], "delivery-status");
        assert_eq!(parsed["to"], "alice@example.org");
        assert_eq!(parsed["auto"], "auto-replied");
        assert_eq!(
            parsed["parts"],
            serde_json::json!(["text/plain", "message/delivery-status", returned])
        );
        assert_eq!(parsed["defects"], serde_json::json!([]));
        let text = parsed["text"].as_str().expect("text");
        assert!(text.contains("<bob@example.com>: could not be delivered"));
        assert_eq!(
            parsed["per_message"]["Reporting-MTA"],
            "dns; mail.example.org"
        );
        assert_eq!(parsed["per_message"]["Original-Envelope-Id"], "env-1");
        let first = &parsed["recipients"][0];
        assert_eq!(first["Original-Recipient"], "rfc822; Bob@example.com");
        assert_eq!(first["Final-Recipient"], "rfc822; bob@example.com");
        assert_eq!(first["Action"], "failed");
        assert_eq!(first["Status"], "5.1.1");
        assert_eq!(first["Remote-MTA"], "dns; mx.example.com");
        assert_eq!(
            first["Diagnostic-Code"],
            "smtp; 550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 Please check the address."
        );
        let second = &parsed["recipients"][1];
        assert_eq!(second["Final-Recipient"], "rfc822; carol@example.net");
        assert_eq!(second["Status"], "5.2.2");
        let diagnostic = second["Diagnostic-Code"].as_str().expect("diagnostic");
        assert!(diagnostic.starts_with("smtp; 552 5.2.2 zzz"));
        assert!(diagnostic.ends_with("over quota"));
        if ret == Return::Full {
            assert_eq!(parsed["returned_subject"], "Lunch");
        }
    }
}
