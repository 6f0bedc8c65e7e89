//! SMTP smuggling and STARTTLS command injection, attempted over real connections.

mod common;

use common::{Options, Raw, Server, python};

use portcullis::smtp::data::SMUGGLING_TERMINATORS as TERMINATORS;

#[test]
fn no_smuggling_terminator_ends_data_or_smuggles_a_message() {
    let server = Server::start(
        "smuggling",
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            ..Options::default()
        },
    );
    for (index, terminator) in TERMINATORS.iter().enumerate() {
        let mut client = Raw::connect(server.submission);
        client.expect("220 ");
        client.send(b"EHLO client.example\r\nMAIL FROM:<sender@example.test>\r\nRCPT TO:<first@example.net>\r\nDATA\r\n");
        client.expect("250 ");
        client.expect("250 2.1.0");
        client.expect("250 2.1.5");
        client.expect("354");
        // One write: the first message with the smuggling attempt inside, the real end, then a
        // complete second transaction.
        let mut write = b"Subject: first\r\n\r\nbody".to_vec();
        write.extend_from_slice(terminator);
        write.extend_from_slice(b"MAIL FROM:<smuggler@evil.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n");
        write.extend_from_slice(format!("MAIL FROM:<sender@example.test>\r\nRCPT TO:<second-{index}@example.net>\r\nDATA\r\nSubject: second\r\n\r\nlegitimate\r\n.\r\nQUIT\r\n").as_bytes());
        client.send(&write);
        client.expect("554 5.6.0");
        client.expect("250 2.1.0");
        client.expect("250 2.1.5");
        client.expect("354");
        client.expect("250 2.0.0 OK: queued as ");
        client.expect("221 2.0.0");
    }
    let queue = server.queue();
    let recipients: Vec<String> = queue
        .iter()
        .map(|m| m["to"][0].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..TERMINATORS.len())
        .map(|i| format!("second-{i}@example.net"))
        .collect();
    assert_eq!(
        recipients, expected,
        "exactly the legitimate second messages are spooled"
    );
    for message in &queue {
        let shown = server.show(message["id"].as_str().unwrap());
        assert!(
            !shown.contains("smuggled") && !shown.contains("victim"),
            "{shown}"
        );
    }
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
