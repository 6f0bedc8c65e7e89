//! `curl -T message.eml` with a file that has Unix line endings, against a trusted listener in
//! both `bare_line_endings` modes: normalised, the message is stored with CRLF line ends;
//! rejected, curl gets the `554 5.6.0` that says how to fix it.

mod common;

use std::process::{Command, Output};

use common::{Options, Server, TempDir};

/// LF line ends only, a line of one dot among them (curl dot-stuffs only after CRLF, so it
/// sends that line as `<LF>.<LF>`, which must not end the message).
const MESSAGE: &str = "From: <sender@example.test>\nTo: <rcpt@example.net>\nSubject: unix\n\nline one\n.\nlast line\n";

fn server(mode: &str) -> Server {
    Server::start(
        &format!("curl-{mode}"),
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            extra: format!("[limits]\nbare_line_endings = \"{mode}\"\n"),
            ..Options::default()
        },
    )
}

/// `curl -v -T FILE smtp://...` over plain SMTP, with `extra` arguments; curl's verbose output
/// is on standard error.
fn curl_upload(server: &Server, extra: &[&str]) -> Output {
    let dir = TempDir::new("curl-message");
    let file = dir.0.join("message.eml");
    std::fs::write(&file, MESSAGE).unwrap();
    Command::new("curl")
        .args(["-sS", "-v", "--max-time", "20"])
        .arg(format!("smtp://127.0.0.1:{}", server.submission.port()))
        .args(["--mail-from", "sender@example.test"])
        .args(["--mail-rcpt", "rcpt@example.net"])
        .args(extra)
        .arg("-T")
        .arg(&file)
        .output()
        .expect("curl is installed")
}

#[test]
fn curl_with_unix_line_endings_is_stored_with_crlf_when_normalizing() {
    let server = server("normalize");
    let output = curl_upload(&server, &[]);
    let verbose = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{verbose}");
    assert!(verbose.contains("< 250 2.0.0 OK: queued as "), "{verbose}");
    let queue = server.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["to"][0], "rcpt@example.net");
    let shown = server.show(queue[0]["id"].as_str().unwrap());
    // curl ends a body that does not end with CRLF with CRLF "." CRLF: one empty line more.
    let stored = "\r\nFrom: <sender@example.test>\r\nTo: <rcpt@example.net>\r\nSubject: unix\r\n\r\nline one\r\n.\r\nlast line\r\n\r\n";
    assert!(shown.ends_with(stored), "{shown:?}");
    let message = &shown[shown.find("Received: ").expect("our Received: header")..];
    assert!(
        !message.replace("\r\n", "").contains(['\r', '\n']),
        "a bare line end is stored: {message:?}"
    );
}

#[test]
fn curl_with_unix_line_endings_gets_advice_when_rejecting() {
    let server = server("reject");
    let output = curl_upload(&server, &[]);
    let verbose = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{verbose}");
    let refusal = "< 554 5.6.0 Message refused: it contains a bare CR or LF; nothing was queued. Send CRLF line endings: curl --crlf, or set the client's line ending to CRLF";
    assert!(verbose.contains(refusal), "{verbose}");
    assert!(server.queue().is_empty());
    // The advice works.
    let output = curl_upload(&server, &["--crlf"]);
    let verbose = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{verbose}");
    assert_eq!(server.queue().len(), 1);
}
