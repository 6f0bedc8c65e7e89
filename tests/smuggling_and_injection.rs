//! SMTP smuggling and STARTTLS command injection, attempted over real connections.

mod common;

use common::{Options, Raw, Server, python};

use portcullis::smtp::data::SMUGGLING_TERMINATORS as TERMINATORS;

/// `[limits]` for one `bare_line_endings` mode.
fn limits(mode: &str) -> String {
    format!("[limits]\nbare_line_endings = \"{mode}\"\n")
}

/// Whether normalising accepts the terminator as content: it has no NUL and no CR without an
/// LF after it (what follows it in the test is a letter).
fn normalizable(terminator: &[u8]) -> bool {
    let bare_cr = terminator
        .iter()
        .enumerate()
        .any(|(at, &byte)| byte == b'\r' && terminator.get(at + 1) != Some(&b'\n'));
    !bare_cr && !terminator.contains(&0)
}

/// One write per terminator: a message with the smuggling attempt inside, its real end, then
/// a complete second transaction. The attempt never becomes a transaction of its own: the first
/// message is refused whole (`554 5.6.0`) or, normalised, stored with the attempt as its text.
fn no_terminator_smuggles_a_message(mode: &str) {
    let server = Server::start(
        &format!("smuggling-{mode}"),
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            extra: limits(mode),
            ..Options::default()
        },
    );
    let mut expected = Vec::new();
    for (index, terminator) in TERMINATORS.iter().enumerate() {
        let accepted = mode == "normalize" && normalizable(terminator);
        let mut client = Raw::connect(server.submission);
        client.expect("220 ");
        client.send(format!("EHLO client.example\r\nMAIL FROM:<sender@example.test>\r\nRCPT TO:<first-{index}@example.net>\r\nDATA\r\n").as_bytes());
        client.expect("250 ");
        client.expect("250 2.1.0");
        client.expect("250 2.1.5");
        client.expect("354");
        let mut write = b"Subject: first\r\n\r\nbody".to_vec();
        write.extend_from_slice(terminator);
        write.extend_from_slice(b"MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n");
        write.extend_from_slice(format!("MAIL FROM:<sender@example.test>\r\nRCPT TO:<second-{index}@example.net>\r\nDATA\r\nSubject: second\r\n\r\nlegitimate\r\n.\r\nQUIT\r\n").as_bytes());
        client.send(&write);
        if accepted {
            client.expect("250 2.0.0 OK: queued as ");
            expected.push(format!("first-{index}@example.net"));
        } else {
            client.expect("554 5.6.0");
        }
        client.expect("250 2.1.0");
        client.expect("250 2.1.5");
        client.expect("354");
        client.expect("250 2.0.0 OK: queued as ");
        client.expect("221 2.0.0");
        expected.push(format!("second-{index}@example.net"));
    }
    let queue = server.queue();
    let recipients: Vec<String> = queue
        .iter()
        .map(|m| m["to"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recipients, expected, "{mode}: the messages spooled");
    for message in &queue {
        assert_eq!(message["from"], "sender@example.test", "{message}");
        assert_eq!(message["to"].as_array().unwrap().len(), 1, "{message}");
        let shown = server.show(message["id"].as_str().unwrap());
        let first = message["to"][0].as_str().unwrap().starts_with("first-");
        assert_eq!(shown.contains("smuggled"), first, "{shown}");
        if first {
            // The attempt as text of the first message, after an ordinary "." line.
            assert!(shown.contains("\r\nbody\r\n.\r\nMAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"), "{shown:?}");
        }
    }
}

#[test]
fn no_smuggling_terminator_smuggles_a_message_when_normalizing() {
    no_terminator_smuggles_a_message("normalize");
}

#[test]
fn no_smuggling_terminator_smuggles_a_message_when_rejecting() {
    no_terminator_smuggles_a_message("reject");
}

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let server = Server::start("injection", Options::default());
    let cafile = server.certificate();
    let port = server.submission.port().to_string();
    let (ok, stdout, stderr) = python(&[
        "injection",
        "--port",
        &port,
        "--cafile",
        cafile.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        result["starttls"][0]
            .as_str()
            .unwrap()
            .starts_with("220 2.0.0"),
        "{result}"
    );
    assert_eq!(
        result["after_handshake"], "",
        "the injected EHLO must get no reply: {result}"
    );
    let ehlo = result["ehlo_over_tls"].as_str().unwrap();
    assert!(
        ehlo.starts_with("250-mail.example.test greets client.example"),
        "{ehlo}"
    );
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
}
