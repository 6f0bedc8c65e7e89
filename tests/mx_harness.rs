//! The receiving side of the delivery tests (`tests/common/mx.rs` around
//! `tests/clients/mx_server.py`), checked on its own with a raw client and with Python's
//! smtplib, without Portcullis: replies by recipient, byte-exact storage, the refusing and
//! misbehaving modes, STARTTLS and AUTH, several hosts on one port.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::mx::Mx;
use common::{Raw, TempDir, wait_until, write_certificate};

const WAIT: Duration = Duration::from_secs(5);

/// A raw client that has been greeted and has said EHLO.
fn connect(mx: &Mx) -> Raw {
    let mut raw = Raw::connect(mx.address());
    raw.set_timeout(WAIT);
    raw.expect("220 ");
    raw.send(b"EHLO client.example\r\n");
    raw.expect("250 ");
    raw
}

/// MAIL, one accepted RCPT and DATA up to the 354.
fn start_message(raw: &mut Raw, from: &str, to: &str) {
    raw.send(format!("MAIL FROM:<{from}>\r\n").as_bytes());
    raw.expect("250 2.1.0");
    raw.send(format!("RCPT TO:<{to}>\r\n").as_bytes());
    raw.expect("250 2.1.5");
    raw.send(b"DATA\r\n");
    raw.expect("354 ");
}

#[test]
fn recipients_get_replies_by_local_part_and_the_data_is_stored_byte_exact() {
    let mx = Mx::start("127.0.0.2", &[]);
    assert_eq!(mx.ip().to_string(), "127.0.0.2");
    let mut raw = connect(&mx);
    raw.send(b"MAIL FROM:<sender@example.org> BODY=8BITMIME\r\n");
    raw.expect("250 2.1.0 Ok");
    let replies = [
        ("accept-1@dest.example", "250 2.1.5 Ok".to_string()),
        (
            "reject-1@dest.example",
            "550 5.1.1 <reject-1@dest.example>: Recipient address rejected: User unknown"
                .to_string(),
        ),
        (
            "tempfail-1@dest.example",
            "451 4.3.0 Temporary failure".to_string(),
        ),
        (
            "greylist-1@dest.example",
            "450 4.2.0 <greylist-1@dest.example>: Recipient address rejected: Greylisted, \
             try again later"
                .to_string(),
        ),
        ("full-1@dest.example", "452 4.2.2 Mailbox full".to_string()),
        ("someone@dest.example", "250 2.1.5 Ok".to_string()),
    ];
    for (recipient, reply) in &replies {
        raw.send(format!("RCPT TO:<{recipient}>\r\n").as_bytes());
        assert_eq!(&raw.reply(), reply, "RCPT TO:<{recipient}>");
    }
    raw.send(b"DATA\r\n");
    raw.expect("354 ");
    raw.send(
        b"Subject: exact\r\n\r\n..starts with a dot\r\n...two\r\n8-bit: caf\xc3\xa9 \xe9\r\n\
          bare\nLF and bare\rCR\r\n\r\nlast line\r\n.\r\n",
    );
    raw.expect("250 2.0.0 Ok: queued as MX000001");

    // The same pair again: greylisting lets it through; a new pair is greylisted.
    raw.send(b"MAIL FROM:<sender@example.org>\r\n");
    raw.expect("250 2.1.0");
    raw.send(b"RCPT TO:<greylist-1@dest.example>\r\n");
    raw.expect("250 2.1.5");
    raw.send(b"RCPT TO:<greylist-2@dest.example>\r\n");
    raw.expect("450 4.2.0 <greylist-2@dest.example>");
    raw.send(b"DATA\r\n");
    raw.expect("354 ");
    raw.send(b"x\r\n.\r\n");
    raw.expect("250 2.0.0 Ok: queued as MX000002");
    // A bounce: the null sender.
    start_message(&mut raw, "", "accept-2@dest.example");
    raw.send(b".\r\n");
    raw.expect("250 2.0.0 Ok: queued as MX000003");
    raw.send(b"QUIT\r\n");
    raw.expect("221 ");

    let received = mx.wait_for(3, WAIT);
    assert_eq!(received.len(), 3, "{received:#?}");
    let first = &received[0];
    assert_eq!(first.file, "000001.json");
    assert_eq!(first.mail_from, "sender@example.org");
    assert_eq!(
        first.rcpt_tos,
        ["accept-1@dest.example", "someone@dest.example"]
    );
    assert_eq!(first.mail_options, ["BODY=8BITMIME"]);
    assert_eq!(
        first.data,
        b"Subject: exact\r\n\r\n.starts with a dot\r\n..two\r\n8-bit: caf\xc3\xa9 \xe9\r\n\
          bare\nLF and bare\rCR\r\n\r\nlast line\r\n"
    );
    assert_eq!(first.header("subject").as_deref(), Some("exact"));
    assert!(first.peer.starts_with("127.0.0.1:"), "{}", first.peer);
    assert_eq!(first.helo, "client.example");
    assert!(!first.closed && !first.tls && first.auth_user.is_none());
    assert_eq!(received[1].rcpt_tos, ["greylist-1@dest.example"]);
    assert_eq!(received[1].data, b"x\r\n");
    assert_eq!(received[2].mail_from, "");
    assert_eq!(received[2].data, b"");
    assert!(received.iter().all(|message| message.connection == 1));

    let ehlo = mx.events_of("ehlo");
    assert_eq!(
        ehlo[0].reply.as_deref(),
        Some("250 mx.example.test PIPELINING SIZE 33554432 8BITMIME SMTPUTF8 HELP")
    );
    let rcpt: Vec<(String, String)> = mx
        .events_of("rcpt")
        .into_iter()
        .take(replies.len())
        .map(|event| (event.argument, event.reply.unwrap()))
        .collect();
    let expected: Vec<(String, String)> = replies
        .iter()
        .map(|(recipient, reply)| (format!("TO:<{recipient}>"), reply.clone()))
        .collect();
    assert_eq!(rcpt, expected);
    assert_eq!(mx.connections(), 1);
}

#[test]
fn close_after_dot_hangs_up_without_a_reply_and_stores_the_message_as_closed() {
    let mx = Mx::start("127.0.0.3", &["--close-after-dot", "1"]);
    let mut raw = connect(&mx);
    start_message(&mut raw, "a@example.org", "accept@dest.example");
    raw.send(b"Subject: once\r\n\r\nbody\r\n.\r\n");
    assert!(raw.closed(), "expected the connection closed after the dot");

    let mut raw = connect(&mx);
    start_message(&mut raw, "a@example.org", "accept@dest.example");
    raw.send(b"Subject: once\r\n\r\nbody\r\n.\r\n");
    raw.expect("250 2.0.0");

    let received = mx.wait_for(2, WAIT);
    let closed: Vec<(bool, u64)> = received.iter().map(|m| (m.closed, m.connection)).collect();
    assert_eq!(closed, [(true, 1), (false, 2)]);
    assert_eq!(received[0].data, received[1].data);
    assert_eq!(mx.connections(), 2);
    let data = mx.events_of("data");
    assert_eq!(data[0].reply, None);
}

#[test]
fn a_421_greeting_refuses_every_connection() {
    let mx = Mx::start(
        "127.0.0.4",
        &["--greeting", "421 4.3.2 Service not available"],
    );
    for _ in 0..2 {
        let mut raw = Raw::connect(mx.address());
        raw.set_timeout(WAIT);
        assert_eq!(raw.reply(), "421 4.3.2 Service not available");
        assert!(raw.closed());
    }
    assert!(wait_until(WAIT, || mx.connections() == 2));
    assert!(mx.received().is_empty());
}

#[test]
fn options_change_the_ehlo_keywords_and_the_replies() {
    let mx = Mx::start(
        "127.0.0.5",
        &[
            "--no-pipelining",
            "--no-8bitmime",
            "--no-smtputf8",
            "--dsn",
            "--size",
            "1000",
            "--data-reply",
            "552 5.3.4 Message too big",
        ],
    );
    let mut raw = connect(&mx);
    assert_eq!(
        mx.events_of("ehlo")[0].reply.as_deref(),
        Some("250 mx.example.test SIZE 1000 DSN HELP")
    );
    raw.send(b"MAIL FROM:<a@example.org> BODY=8BITMIME\r\n");
    raw.expect("555 5.5.4");
    raw.send(b"MAIL FROM:<a@example.org> SMTPUTF8\r\n");
    raw.expect("501 ");
    raw.send(b"MAIL FROM:<a@example.org> SIZE=2000\r\n");
    raw.expect("552 ");
    // Pipelined (against the EHLO reply), with DSN parameters whose case is kept.
    raw.send(
        b"MAIL FROM:<a@example.org> RET=HDRS ENVID=Env-1 SIZE=10\r\n\
          RCPT TO:<b@dest.example> NOTIFY=FAILURE ORCPT=rfc822;B@Dest.Example\r\n\
          DATA\r\n",
    );
    raw.expect("250 2.1.0");
    raw.expect("250 2.1.5");
    raw.expect("354 ");
    raw.send(b"Subject: big\r\n\r\nbody\r\n.\r\n");
    raw.expect("552 5.3.4 Message too big");
    assert!(mx.received().is_empty(), "a refused message is not stored");

    let mail = mx.events_of("mail");
    let last = mail.last().unwrap();
    assert_eq!(
        last.argument,
        "FROM:<a@example.org> RET=HDRS ENVID=Env-1 SIZE=10"
    );
    assert!(last.pipelined && !mail[0].pipelined, "{mail:#?}");
    let rcpt = mx.events_of("rcpt");
    assert_eq!(
        rcpt[0].argument,
        "TO:<b@dest.example> NOTIFY=FAILURE ORCPT=rfc822;B@Dest.Example"
    );
}

#[test]
fn a_client_that_leaves_during_delay_data_leaves_a_closed_message() {
    let mx = Mx::start("127.0.0.6", &["--delay-data", "1"]);
    let mut raw = connect(&mx);
    start_message(&mut raw, "a@example.org", "accept@dest.example");
    let sent = Instant::now();
    raw.send(b"one\r\n.\r\n");
    raw.expect("250 2.0.0");
    assert!(sent.elapsed() >= Duration::from_millis(900));

    start_message(&mut raw, "a@example.org", "accept@dest.example");
    raw.send(b"two\r\n.\r\n");
    // Stored before the reply is due; the client then gives up.
    let received = mx.wait_for(2, WAIT);
    assert!(!received[1].closed);
    drop(raw);
    assert!(
        wait_until(WAIT, || mx.received()[1].closed),
        "{:#?}",
        mx.received()
    );
    assert!(!mx.received()[0].closed);
}

#[test]
fn several_hosts_share_one_port_on_different_loopback_addresses() {
    let accept: &[&str] = &[];
    let refuse: &[&str] = &["--greeting", "421 4.3.2 Service not available"];
    let group = Mx::start_group(&[("127.0.0.7", accept), ("127.0.0.8", refuse)]);
    assert_eq!(group[0].port(), group[1].port());
    let mut raw = Raw::connect(group[0].address());
    raw.expect("220 mx.example.test");
    let mut raw = Raw::connect(group[1].address());
    raw.expect("421 4.3.2");
}

/// STARTTLS (checked against the certificate), a failed then a good login, one message.
const SMTPLIB_TLS_AUTH: &str = r#"
import smtplib, ssl, sys
host, port, cafile, user, password = sys.argv[1:6]
client = smtplib.SMTP(host, int(port), timeout=5)
client.starttls(context=ssl.create_default_context(cafile=cafile))
try:
    client.login(user, "wrong")
    sys.exit("a wrong password was accepted")
except smtplib.SMTPAuthenticationError as error:
    assert error.smtp_code == 535, error
client.login(user, password)
client.sendmail("a@example.org", ["accept@dest.example"], b"Subject: tls\r\n\r\nbody\r\n")
client.quit()
"#;

#[test]
fn starttls_and_auth_are_required_and_recorded() {
    let dir = TempDir::new("mx-tls");
    let (cert, key) = write_certificate(&dir.0, "mx", &["127.0.0.9"]);
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mx = Mx::start(
        "127.0.0.9",
        &[
            "--cert",
            cert,
            "--key",
            key,
            "--require-tls",
            "--user",
            "relay-user",
            "--password",
            "relay-secret",
            "--auth-required",
        ],
    );
    let mut raw = connect(&mx);
    raw.send(b"MAIL FROM:<a@example.org>\r\n");
    raw.expect("530 5.7.0 Must issue a STARTTLS command first");
    drop(raw);

    let port = mx.port().to_string();
    let output = Command::new("python3")
        .args(["-c", SMTPLIB_TLS_AUTH, "127.0.0.9", &port, cert])
        .args(["relay-user", "relay-secret"])
        .output()
        .expect("python3 is installed");
    assert!(
        output.status.success(),
        "smtplib: {}\nserver: {}",
        String::from_utf8_lossy(&output.stderr),
        mx.stderr()
    );
    let received = mx.wait_for(1, WAIT);
    assert!(received[0].tls);
    assert!(received[0].tls_version.is_some());
    assert_eq!(received[0].auth_user.as_deref(), Some("relay-user"));
    // smtplib sends SIZE in lower case: parameters are recorded as sent.
    let size = format!("size={}", received[0].data.len());
    assert_eq!(received[0].mail_options, [size]);
    let auth: Vec<String> = mx
        .events_of("auth")
        .into_iter()
        .map(|event| event.reply.unwrap())
        .collect();
    // smtplib tries each offered mechanism (PLAIN, then LOGIN) with the wrong password.
    let (last, failed) = auth.split_last().unwrap();
    assert!(last.starts_with("235 2.7.0"), "{auth:?}");
    assert!(
        !failed.is_empty() && failed.iter().all(|reply| reply.starts_with("535 5.7.8")),
        "{auth:?}"
    );
    assert_eq!(mx.events_of("starttls").len(), 1);
}
