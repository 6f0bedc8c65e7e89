//! Tests of the delivery client: the pure parts first, then sessions against scripted servers
//! on 127.0.0.1 (a script is a list of steps: expect a command, send a reply, take the
//! message, do TLS), each bounded in time.

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::*;

// ---------------------------------------------------------------------------------------------
// Pure functions

fn reply(code: u16, lines: &[&str]) -> Reply {
    Reply {
        code,
        lines: lines.iter().map(|l| l.to_string()).collect(),
    }
}

#[test]
fn capabilities_are_parsed_case_insensitively() {
    let ehlo = reply(
        250,
        &[
            "mx.example.com greets client.test",
            "pipelining",
            "SIZE 35882577",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN login",
            "AUTH=LOGIN XOAUTH2",
        ],
    );
    assert_eq!(
        Capabilities::parse(&ehlo),
        Capabilities {
            pipelining: true,
            size: Some(35882577),
            smtputf8: true,
            eight_bit_mime: true,
            dsn: true,
            starttls: true,
            auth: vec!["PLAIN".into(), "LOGIN".into(), "XOAUTH2".into()],
        }
    );
}

#[test]
fn size_without_a_number_is_offered_without_a_limit() {
    let bare = Capabilities::parse(&reply(250, &["mx", "SIZE"]));
    assert_eq!(bare.size, Some(0));
    let garbage = Capabilities::parse(&reply(250, &["mx", "SIZE lots"]));
    assert_eq!(garbage.size, Some(0));
    // The first line is the greeting, never a keyword.
    let greeting_only = Capabilities::parse(&reply(250, &["PIPELINING"]));
    assert_eq!(greeting_only, Capabilities::none());
}

#[test]
fn after_helo_nothing_is_offered() {
    let none = Capabilities::none();
    assert!(!none.pipelining && !none.smtputf8 && !none.eight_bit_mime && !none.dsn);
    assert!(!none.starttls && none.size.is_none() && none.auth.is_empty());
}

#[test]
fn outcomes_follow_the_reply_class() {
    let of = |code| Outcome::of(&reply(code, &["x"]));
    assert_eq!(of(250), Outcome::Delivered);
    assert_eq!(of(251), Outcome::Delivered);
    assert_eq!(of(450), Outcome::Temporary);
    assert_eq!(of(421), Outcome::Temporary);
    assert_eq!(of(550), Outcome::Permanent);
    assert_eq!(of(554), Outcome::Permanent);
    // Nonsense never bounces.
    assert_eq!(of(354), Outcome::Temporary);
    assert_eq!(of(199), Outcome::Temporary);
    assert_eq!(of(999), Outcome::Temporary);
}

#[test]
fn synthetic_replies_have_enhanced_codes() {
    let made = synthetic(451, "4.4.2", "Connection lost");
    assert_eq!(made.enhanced(), Some("4.4.2"));
    assert_eq!(made.summary(), "451 4.4.2 Connection lost");
}

fn message<'a>(recipients: &[&'a str], body: &'a [u8]) -> Outgoing<'a> {
    Outgoing {
        sender: "alice@example.com",
        recipients: recipients
            .iter()
            .map(|&address| OutRecipient {
                address,
                notify: None,
                orcpt: None,
            })
            .collect(),
        message: body,
        smtputf8: false,
        eight_bit_mime: false,
        ret: None,
        envid: None,
    }
}

fn offering(extensions: &[&str]) -> Capabilities {
    let mut lines = vec!["mx.test"];
    lines.extend_from_slice(extensions);
    Capabilities::parse(&reply(250, &lines))
}

#[test]
fn mail_parameters_follow_what_is_offered() {
    let body = b"Subject: x\r\n\r\nhi\r\n";
    let mut outgoing = message(&["b@x.test"], body);
    outgoing.eight_bit_mime = true;
    outgoing.smtputf8 = true;
    outgoing.ret = Some("hdrs");
    outgoing.envid = Some("id+1=2 x");

    let everything = offering(&["SIZE 1000", "8BITMIME", "SMTPUTF8", "DSN"]);
    assert_eq!(
        mail_parameters(&everything, &outgoing, body),
        [
            "SIZE=18",
            "BODY=8BITMIME",
            "SMTPUTF8",
            "RET=HDRS",
            "ENVID=id+2B1+3D2+20x"
        ]
    );
    assert!(mail_parameters(&Capabilities::none(), &outgoing, body).is_empty());
    // SIZE is sent even when the server names no limit.
    assert_eq!(
        mail_parameters(&offering(&["SIZE"]), &outgoing, body),
        ["SIZE=18"]
    );
}

#[test]
fn mail_parameters_declare_what_the_message_needs() {
    let body = "Subject: x\r\n\r\ncafé\r\n".as_bytes();
    let mut outgoing = message(&["dörte@x.test"], body);
    outgoing.ret = Some("bogus");
    let offered = offering(&["8BITMIME", "SMTPUTF8", "DSN"]);
    // 8-bit content and a non-ASCII recipient, though the envelope declared neither; an
    // unknown RET is left out.
    assert_eq!(
        mail_parameters(&offered, &outgoing, body),
        ["BODY=8BITMIME", "SMTPUTF8"]
    );
}

#[test]
fn rcpt_parameters_only_with_dsn() {
    let recipient = OutRecipient {
        address: "bob@x.test",
        notify: Some("success,failure"),
        orcpt: Some("rfc822;bob+tag@x.test"),
    };
    assert_eq!(
        rcpt_parameters(&offering(&["DSN"]), &recipient),
        ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob+2Btag@x.test"]
    );
    assert!(rcpt_parameters(&Capabilities::none(), &recipient).is_empty());
    let odd = OutRecipient {
        notify: Some("NEVER X=1"),
        orcpt: None,
        ..recipient
    };
    assert!(rcpt_parameters(&offering(&["DSN"]), &odd).is_empty());
}

#[test]
fn xtext_encodes_plus_equals_and_everything_outside_printable_ascii() {
    assert_eq!(xtext("plain@example.com"), "plain@example.com");
    assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    assert_eq!(xtext("é\r\n"), "+C3+A9+0D+0A");
    assert_eq!(xtext("~!"), "~!");
}

#[test]
fn orcpt_keeps_its_type_and_encodes_the_address() {
    assert_eq!(orcpt_value("rfc822;bob@x.test"), "rfc822;bob@x.test");
    assert_eq!(orcpt_value("RFC822; a=b@x.test"), "RFC822;a+3Db@x.test");
    assert_eq!(orcpt_value("bob@x.test"), "rfc822;bob@x.test");
    assert_eq!(
        orcpt_value("rfc822;dörte@x.test"),
        "utf-8;d\\x{F6}rte@x.test"
    );
    assert_eq!(orcpt_value("bad type;b@x"), "rfc822;bad+20type;b@x");
}

#[test]
fn smtputf8_is_needed_for_non_ascii_addresses_or_a_declared_utf8_header() {
    let ascii = message(&["b@x.test"], b"Subject: x\r\n\r\nhi\r\n");
    assert!(!needs_smtputf8(&ascii));
    assert!(needs_smtputf8(&message(&["dörte@x.test"], b"\r\n")));
    let sender = Outgoing {
        sender: "jörg@example.com",
        ..ascii.clone()
    };
    assert!(needs_smtputf8(&sender));

    let header = "Subject: Grüße\r\n\r\nhi\r\n".as_bytes();
    let declared = Outgoing {
        smtputf8: true,
        ..message(&["b@x.test"], header)
    };
    assert!(needs_smtputf8(&declared));
    // Undeclared, a UTF-8 header is the sender's problem (and 8BITMIME's), not SMTPUTF8's.
    assert!(!needs_smtputf8(&message(&["b@x.test"], header)));
    // In the body only it needs 8BITMIME, not SMTPUTF8.
    let body = "Subject: x\r\n\r\nGrüße\r\n".as_bytes();
    let declared_body = Outgoing {
        smtputf8: true,
        ..message(&["b@x.test"], body)
    };
    assert!(!needs_smtputf8(&declared_body));
}

#[test]
fn header_section_ends_at_the_first_empty_line() {
    assert_eq!(header_section(b"A: b\r\n\r\nbody\r\n"), b"A: b\r\n\r\n");
    assert_eq!(header_section(b"\r\nbody"), b"\r\n");
    assert_eq!(header_section(b"A: b\r\nC: d"), b"A: b\r\nC: d");
    assert!(has_8bit("é".as_bytes()));
    assert!(!has_8bit(b"plain\r\n"));
}

#[test]
fn a_positive_reply_to_data_other_than_354_is_not_a_delivery() {
    let refusal = data_refusal(reply(250, &["ok"]), "mx.test");
    assert_eq!(refusal.code, 451);
    assert_eq!(refusal.enhanced(), Some("4.5.0"));
    let real = data_refusal(reply(554, &["5.5.1 no valid recipients"]), "mx.test");
    assert_eq!(real.code, 554);
}

#[test]
fn the_fallback_forgets_after_its_time() {
    let address: SocketAddr = "192.0.2.1:25".parse().unwrap();
    let other: SocketAddr = "192.0.2.2:25".parse().unwrap();
    let fallback = PlaintextFallback::new(Duration::from_secs(3600));
    assert!(!fallback.remembers(address));
    fallback.remember(address);
    assert!(fallback.remembers(address));
    assert!(!fallback.remembers(other));
    let forgetful = PlaintextFallback::new(Duration::ZERO);
    forgetful.remember(address);
    assert!(!forgetful.remembers(address));
}

#[test]
fn outgoing_from_a_spooled_envelope() {
    let envelope = crate::smtp::Envelope {
        from: "alice@example.com".into(),
        to: vec!["a@x.test".into(), "b@y.test".into(), "c@x.test".into()],
        auth_user: None,
        client_ip: "127.0.0.1".parse().unwrap(),
        client_helo: "client".into(),
        tls: None,
        received_at: "now".into(),
        smtputf8: true,
        eight_bit_mime: false,
        ret: Some("FULL".into()),
        envid: Some("e1".into()),
        dsn: vec![
            crate::smtp::RecipientDsn::default(),
            crate::smtp::RecipientDsn::default(),
            crate::smtp::RecipientDsn {
                notify: Some("NEVER".into()),
                orcpt: Some("rfc822;c@x.test".into()),
            },
        ],
        moved_from: None,
    };
    let outgoing = Outgoing::from_envelope(&envelope, &[0, 2, 7], b"m");
    assert_eq!(outgoing.sender, "alice@example.com");
    assert_eq!(
        outgoing.recipients,
        [
            OutRecipient {
                address: "a@x.test",
                notify: None,
                orcpt: None
            },
            OutRecipient {
                address: "c@x.test",
                notify: Some("NEVER"),
                orcpt: Some("rfc822;c@x.test")
            },
        ]
    );
    assert!(outgoing.smtputf8 && !outgoing.eight_bit_mime);
    assert_eq!((outgoing.ret, outgoing.envid), (Some("FULL"), Some("e1")));
}

// ---------------------------------------------------------------------------------------------
// Scripted servers

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One step of a scripted server.
#[derive(Clone)]
enum Step {
    /// A reply; CRLF is added (use "\r\n" between the lines of a multi-line one).
    Send(String),
    /// The next line starts with this (ASCII case-insensitive).
    Expect(String),
    /// Like `Expect`, and the line had arrived with the previous one (it was pipelined).
    Pipelined(String),
    /// Like `Expect`, and nothing followed it (it was not pipelined).
    Alone(String),
    /// The message, up to the final dot, recorded as received (dot-stuffed).
    Data,
    /// A TLS handshake as the server; a failure ends the script.
    Tls(TlsAcceptor),
    /// Something that is not TLS, then the end of the script.
    Garbage,
    /// Reads and ignores everything until the client closes.
    Stall,
}

fn send(text: &str) -> Step {
    Step::Send(text.to_string())
}

fn expect(prefix: &str) -> Step {
    Step::Expect(prefix.to_string())
}

fn pipelined(prefix: &str) -> Step {
    Step::Pipelined(prefix.to_string())
}

fn alone(prefix: &str) -> Step {
    Step::Alone(prefix.to_string())
}

/// What a scripted server saw on one connection.
#[derive(Debug, Default)]
struct Transcript {
    lines: Vec<String>,
    messages: Vec<Vec<u8>>,
    tls: bool,
    /// The name the client sent (SNI).
    sni: Option<String>,
    tls_error: Option<String>,
}

struct Remote {
    stream: Option<Box<dyn Io>>,
    buffer: Vec<u8>,
    transcript: Transcript,
}

impl Remote {
    /// Reads more into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn raw_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                return Some(self.buffer.drain(..=end).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn line(&mut self, prefix: &str) -> String {
        let Some(raw) = self.raw_line().await else {
            panic!("expected {prefix:?}, but the client closed the connection");
        };
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        assert!(
            line.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase()),
            "expected {prefix:?}, got {line:?}"
        );
        self.transcript.lines.push(line.clone());
        line
    }

    async fn write(&mut self, bytes: &[u8]) {
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.write_all(bytes).await;
            let _ = stream.flush().await;
        }
    }

    /// Runs one step; false ends the script.
    async fn step(&mut self, step: Step) -> bool {
        match step {
            Step::Send(text) => self.write(format!("{text}\r\n").as_bytes()).await,
            Step::Expect(prefix) => {
                self.line(&prefix).await;
            }
            Step::Pipelined(prefix) => {
                assert!(self.buffer.contains(&b'\n'), "{prefix:?} was not pipelined");
                self.line(&prefix).await;
            }
            Step::Alone(prefix) => {
                self.line(&prefix).await;
                // Give a pipelining client the time to send what it would have sent.
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert!(self.buffer.is_empty(), "something followed {prefix:?}");
            }
            Step::Data => self.data().await,
            Step::Tls(acceptor) => return self.tls(acceptor).await,
            Step::Garbage => {
                self.write(b"this is not TLS at all\r\n").await;
                return false;
            }
            Step::Stall => while self.fill().await {},
        }
        true
    }

    async fn data(&mut self) {
        let mut message = Vec::new();
        loop {
            let Some(line) = self.raw_line().await else {
                panic!("the client closed the connection during the message");
            };
            if line == b".\r\n" {
                break;
            }
            message.extend_from_slice(&line);
        }
        self.transcript.messages.push(message);
    }

    async fn tls(&mut self, acceptor: TlsAcceptor) -> bool {
        assert!(self.buffer.is_empty(), "the client sent data before TLS");
        let Some(stream) = self.stream.take() else {
            return false;
        };
        match acceptor.accept(stream).await {
            Ok(tls) => {
                self.transcript.sni = tls.get_ref().1.server_name().map(String::from);
                self.stream = Some(Box::new(tls));
                self.transcript.tls = true;
                true
            }
            Err(error) => {
                self.transcript.tls_error = Some(error.to_string());
                false
            }
        }
    }
}

/// A server on 127.0.0.1 that runs one script per connection, in order.
struct Scripted {
    address: SocketAddr,
    task: JoinHandle<Vec<Transcript>>,
}

impl Scripted {
    async fn start(scripts: Vec<Vec<Step>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut transcripts = Vec::new();
            for script in scripts {
                let (stream, _) = listener.accept().await.unwrap();
                let mut remote = Remote {
                    stream: Some(Box::new(stream)),
                    buffer: Vec::new(),
                    transcript: Transcript::default(),
                };
                for step in script {
                    if !remote.step(step).await {
                        break;
                    }
                }
                transcripts.push(remote.transcript);
            }
            transcripts
        });
        Scripted { address, task }
    }

    /// The transcripts, once every script has run (a failed expectation fails here).
    async fn finish(self) -> Vec<Transcript> {
        match self.task.await {
            Ok(transcripts) => transcripts,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

/// Every scripted test runs under this bound.
async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("the test took too long")
}

fn settings() -> ClientSettings {
    ClientSettings {
        helo_name: "client.test".into(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        verify_roots: Arc::new(rustls::RootCertStore::empty()),
    }
}

fn fallback() -> PlaintextFallback {
    PlaintextFallback::new(Duration::from_secs(3600))
}

/// `250-mx.test` and one line per extension.
fn ehlo(extensions: &[&str]) -> Step {
    let mut lines = vec!["mx.test".to_string()];
    lines.extend(extensions.iter().map(|e| e.to_string()));
    let last = lines.len() - 1;
    let text: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
        .collect();
    send(&text.join("\r\n"))
}

/// Greeting and EHLO.
fn hello(extensions: &[&str]) -> Vec<Step> {
    vec![
        send("220 mx.test ESMTP"),
        expect("EHLO client.test"),
        ehlo(extensions),
    ]
}

fn quit() -> Vec<Step> {
    vec![expect("QUIT"), send("221 2.0.0 bye")]
}

fn script(parts: Vec<Vec<Step>>) -> Vec<Step> {
    parts.into_iter().flatten().collect()
}

async fn open_with(
    address: SocketAddr,
    tls: TlsPolicy,
    auth: Option<&RelayAuth>,
    settings: &ClientSettings,
) -> Result<Session, OpenFailure> {
    open("mx.test", address, tls, auth, settings, &fallback()).await
}

async fn open_plain(address: SocketAddr) -> Session {
    open_with(address, TlsPolicy::None, None, &settings())
        .await
        .expect("open")
}

const MESSAGE: &[u8] = b"Subject: test\r\n\r\nHello\r\n.a line with a dot\r\n.\r\nend\r\n";
const STUFFED: &[u8] = b"Subject: test\r\n\r\nHello\r\n..a line with a dot\r\n..\r\nend\r\n";

fn codes(outcomes: &[RecipientOutcome]) -> Vec<(Outcome, u16, bool)> {
    outcomes
        .iter()
        .map(|o| (o.outcome, o.reply.code, o.remote))
        .collect()
}

fn text(outcome: &RecipientOutcome) -> String {
    outcome.reply.summary()
}

use Outcome::{Delivered, Permanent, Temporary};

// ---------------------------------------------------------------------------------------------
// Transactions

#[tokio::test]
async fn a_pipelined_transaction_with_mixed_recipients() {
    bounded(async {
        let mail = format!("MAIL FROM:<alice@example.com> SIZE={}", MESSAGE.len());
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING", "SIZE 100000"]),
            vec![
                expect(&mail),
                pipelined("RCPT TO:<a@x.test>"),
                pipelined("RCPT TO:<b@x.test>"),
                pipelined("RCPT TO:<c@x.test>"),
                pipelined("DATA"),
                send("250 2.1.0 sender ok"),
                send("250 2.1.5 a ok"),
                send("450 4.2.0 b is busy"),
                send("550 5.1.1 no such user c"),
                send("354 go ahead"),
                Step::Data,
                send("250 2.0.0 queued as 1234"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        assert!(session.capabilities.pipelining);
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test", "c@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [
                (Delivered, 250, true),
                (Temporary, 450, true),
                (Permanent, 550, true)
            ]
        );
        assert_eq!(text(&outcomes[0]), "250 2.0.0 queued as 1234");
        assert_eq!(text(&outcomes[1]), "450 4.2.0 b is busy");
        assert!(session.usable());
        session.quit().await;
        let transcripts = server.finish().await;
        assert_eq!(transcripts[0].messages, [STUFFED.to_vec()]);
    })
    .await;
}

#[tokio::test]
async fn without_pipelining_one_command_at_a_time() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["8BITMIME"]),
            vec![
                alone("MAIL FROM:<alice@example.com>"),
                send("250 2.1.0 ok"),
                alone("RCPT TO:<a@x.test>"),
                send("250 2.1.5 ok"),
                alone("RCPT TO:<b@x.test>"),
                send("550 5.1.1 unknown"),
                alone("DATA"),
                send("354 go ahead"),
                Step::Data,
                send("250 2.0.0 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Delivered, 250, true), (Permanent, 550, true)]
        );
        session.quit().await;
        let transcripts = server.finish().await;
        assert_eq!(transcripts[0].lines[1], "MAIL FROM:<alice@example.com>");
        assert_eq!(transcripts[0].messages, [STUFFED.to_vec()]);
    })
    .await;
}

#[tokio::test]
async fn without_pipelining_no_data_when_no_recipient_is_accepted() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM:<alice@example.com>"),
                send("250 2.1.0 ok"),
                expect("RCPT TO:<a@x.test>"),
                send("550 5.1.1 unknown"),
                expect("RCPT TO:<b@x.test>"),
                send("451 4.3.0 try later"),
                expect("RSET"),
                send("250 2.0.0 reset"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Permanent, 550, true), (Temporary, 451, true)]
        );
        assert!(session.usable());
        session.quit().await;
        let transcripts = server.finish().await;
        assert!(transcripts[0].messages.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_pipelined_data_accepted_without_recipients_is_ended_empty() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING"]),
            vec![
                expect("MAIL FROM"),
                expect("RCPT TO:<a@x.test>"),
                expect("DATA"),
                send("250 2.1.0 ok"),
                send("550 5.1.1 unknown"),
                send("354 go ahead"),
                Step::Data,
                send("554 5.5.1 no valid recipients"),
                expect("RSET"),
                send("250 2.0.0 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&outcomes), [(Permanent, 550, true)]);
        assert!(session.usable());
        session.quit().await;
        let transcripts = server.finish().await;
        assert_eq!(transcripts[0].messages, [Vec::<u8>::new()]);
    })
    .await;
}

#[tokio::test]
async fn a_refused_sender_refuses_every_recipient() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING"]),
            vec![
                expect("MAIL FROM"),
                expect("RCPT TO"),
                expect("RCPT TO"),
                expect("DATA"),
                send("550 5.7.1 sender rejected"),
                send("503 5.5.1 sender first"),
                send("503 5.5.1 sender first"),
                send("503 5.5.1 no valid recipients"),
                expect("RSET"),
                send("250 2.0.0 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Permanent, 550, true), (Permanent, 550, true)]
        );
        assert_eq!(text(&outcomes[1]), "550 5.7.1 sender rejected");
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_data_goes_to_the_accepted_recipients() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("250 2.1.0 ok"),
                expect("RCPT TO:<a@x.test>"),
                send("250 2.1.5 ok"),
                expect("RCPT TO:<b@x.test>"),
                send("550 5.1.1 unknown"),
                expect("DATA"),
                send("451 4.3.0 not now"),
                expect("RSET"),
                send("250 2.0.0 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Temporary, 451, true), (Permanent, 550, true)]
        );
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn two_transactions_with_rset_after_the_failed_one() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING"]),
            vec![
                expect("MAIL FROM"),
                expect("RCPT TO:<a@x.test>"),
                expect("DATA"),
                send("250 2.1.0 ok"),
                send("550 5.1.1 unknown"),
                send("503 5.5.1 no valid recipients"),
                expect("RSET"),
                send("250 2.0.0 ok"),
                expect("MAIL FROM"),
                expect("RCPT TO:<b@x.test>"),
                expect("DATA"),
                send("250 2.1.0 ok"),
                send("250 2.1.5 ok"),
                send("354 go ahead"),
                Step::Data,
                send("250 2.0.0 queued"),
                // No RSET after a completed transaction.
                expect("MAIL FROM"),
                expect("RCPT TO:<c@x.test>"),
                expect("DATA"),
                send("250 2.1.0 ok"),
                send("250 2.1.5 ok"),
                send("354 go ahead"),
                Step::Data,
                send("250 2.0.0 queued"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let first = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&first), [(Permanent, 550, true)]);
        assert!(session.usable());
        let second = session.send(&message(&["b@x.test"], MESSAGE)).await;
        assert_eq!(codes(&second), [(Delivered, 250, true)]);
        let third = session.send(&message(&["c@x.test"], MESSAGE)).await;
        assert_eq!(codes(&third), [(Delivered, 250, true)]);
        session.quit().await;
        assert_eq!(server.finish().await[0].messages.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_refused_rset_makes_the_session_unusable() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("451 4.3.0 not now"),
                expect("RSET"),
                send("500 5.5.1 what"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let first = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&first), [(Temporary, 451, true)]);
        assert!(!session.usable());
        let second = session.send(&message(&["b@x.test"], MESSAGE)).await;
        assert_eq!(codes(&second), [(Temporary, 451, false)]);
        assert_eq!(second[0].reply.enhanced(), Some("4.4.2"));
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_421_makes_the_affected_recipients_temporary() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING"]),
            vec![
                expect("MAIL FROM"),
                expect("RCPT TO"),
                expect("RCPT TO"),
                expect("RCPT TO"),
                expect("DATA"),
                send("250 2.1.0 ok"),
                send("550 5.1.1 unknown"),
                send("250 2.1.5 ok"),
                send("421 4.3.2 shutting down"),
            ],
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test", "c@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [
                (Permanent, 550, true),
                (Temporary, 421, true),
                (Temporary, 421, true)
            ]
        );
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_421_after_the_final_dot_is_temporary() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("250 2.1.0 ok"),
                expect("RCPT TO"),
                send("250 2.1.5 ok"),
                expect("DATA"),
                send("354 go ahead"),
                Step::Data,
                send("421 4.3.0 out of disk"),
            ],
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&outcomes), [(Temporary, 421, true)]);
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn the_server_closing_after_the_final_dot_may_have_delivered() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("250 2.1.0 ok"),
                expect("RCPT TO"),
                send("250 2.1.5 ok"),
                expect("DATA"),
                send("354 go ahead"),
                Step::Data,
            ],
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&outcomes), [(Temporary, 451, false)]);
        let summary = text(&outcomes[0]);
        assert!(
            summary.starts_with("451 4.4.2 Connection lost"),
            "{summary}"
        );
        assert!(summary.contains("may have been delivered"), "{summary}");
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn no_reply_to_the_final_dot_within_the_data_timeout() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("250 2.1.0 ok"),
                expect("RCPT TO"),
                send("250 2.1.5 ok"),
                expect("DATA"),
                send("354 go ahead"),
                Step::Data,
                Step::Stall,
            ],
        ])])
        .await;
        let settings = ClientSettings {
            data_timeout: Duration::from_millis(300),
            ..settings()
        };
        let mut session = open_with(server.address, TlsPolicy::None, None, &settings)
            .await
            .unwrap();
        let started = Instant::now();
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        // The data timeout, not the (longer) command timeout.
        assert!(started.elapsed() < Duration::from_secs(3));
        let summary = text(&outcomes[0]);
        assert_eq!(codes(&outcomes), [(Temporary, 451, false)]);
        assert!(summary.contains("timed out"), "{summary}");
        assert!(summary.contains("may have been delivered"), "{summary}");
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_connection_lost_before_the_dot_says_where() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("250 2.1.0 ok"),
                expect("RCPT TO:<a@x.test>"),
                send("250 2.1.5 ok"),
                expect("RCPT TO:<b@x.test>"),
            ],
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Temporary, 451, false), (Temporary, 451, false)]
        );
        let summary = text(&outcomes[0]);
        assert!(
            summary.starts_with("451 4.4.2 Connection lost with mx.test[127.0.0.1]"),
            "{summary}"
        );
        assert!(summary.contains("at RCPT TO"), "{summary}");
        assert!(summary.contains("not delivered"), "{summary}");
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out_before_the_dot() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![expect("MAIL FROM"), Step::Stall],
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        // Shortened after opening, so only the transaction feels it.
        session
            .connection
            .set_timeout(Some(Duration::from_millis(200)));
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&outcomes), [(Temporary, 451, false)]);
        let summary = text(&outcomes[0]);
        assert!(summary.contains("at MAIL FROM (timed out"), "{summary}");
        assert!(summary.contains("not delivered"), "{summary}");
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_reply_that_is_not_smtp_breaks_the_session_without_panic() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![expect("MAIL FROM"), send("hello there, friend")],
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&outcomes), [(Temporary, 451, false)]);
        assert!(text(&outcomes[0]).contains("not an SMTP reply"));
        assert!(!session.usable());
        drop(session);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_message_too_big_for_the_announced_size_is_not_sent() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["SIZE 20", "PIPELINING"]),
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Permanent, 552, false), (Permanent, 552, false)]
        );
        assert_eq!(
            text(&outcomes[0]),
            "552 5.3.4 Message size exceeds the limit of 20 bytes that mx.test announced"
        );
        assert!(session.usable());
        session.quit().await;
        // QUIT came right after EHLO: nothing else was sent.
        assert_eq!(server.finish().await[0].lines.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn smtputf8_needed_and_not_offered_is_refused_here() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![hello(&["8BITMIME"]), quit()])]).await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["dörte@x.test", "b@x.test"], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [(Permanent, 553, false), (Permanent, 553, false)]
        );
        assert_eq!(outcomes[0].reply.enhanced(), Some("5.6.7"));
        session.quit().await;
        assert_eq!(server.finish().await[0].lines.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn eight_bit_content_without_8bitmime_is_refused_here() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![hello(&["SMTPUTF8"]), quit()])]).await;
        let mut session = open_plain(server.address).await;
        let body = "Subject: x\r\n\r\ncafé\r\n".as_bytes();
        let outcomes = session.send(&message(&["a@x.test"], body)).await;
        assert_eq!(codes(&outcomes), [(Permanent, 554, false)]);
        assert_eq!(outcomes[0].reply.enhanced(), Some("5.6.3"));
        assert!(text(&outcomes[0]).contains("conversion required but not supported"));
        session.quit().await;
        assert_eq!(server.finish().await[0].lines.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn extension_parameters_go_on_the_wire() {
    bounded(async {
        let body = "Subject: Grüße\r\n\r\ncafé\r\n".as_bytes();
        let mail = format!(
            "MAIL FROM:<jörg@example.com> SIZE={} BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=env+2B1",
            body.len()
        );
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING", "SIZE 0", "8BITMIME", "SMTPUTF8", "DSN"]),
            vec![
                expect(&mail),
                expect(
                    "RCPT TO:<dörte@x.test> NOTIFY=FAILURE,DELAY ORCPT=utf-8;d\\x{F6}rte@x.test",
                ),
                expect("DATA"),
                send("250 ok"),
                send("250 ok"),
                send("354 go"),
                Step::Data,
                send("250 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outgoing = Outgoing {
            sender: "jörg@example.com",
            recipients: vec![OutRecipient {
                address: "dörte@x.test",
                notify: Some("FAILURE,DELAY"),
                orcpt: Some("rfc822;dörte@x.test"),
            }],
            message: body,
            smtputf8: true,
            eight_bit_mime: true,
            ret: Some("FULL"),
            envid: Some("env+1"),
        };
        let outcomes = session.send(&outgoing).await;
        assert_eq!(codes(&outcomes), [(Delivered, 250, true)]);
        session.quit().await;
        assert_eq!(server.finish().await[0].messages, [body.to_vec()]);
    })
    .await;
}

#[tokio::test]
async fn long_lines_are_limited_on_the_way() {
    bounded(async {
        let body = [
            b"Subject: x\r\n\r\n".to_vec(),
            b"y".repeat(2000),
            b"\r\n".to_vec(),
        ]
        .concat();
        let server = Scripted::start(vec![script(vec![
            hello(&["PIPELINING", "SIZE 100000"]),
            vec![
                expect("MAIL FROM:<alice@example.com> SIZE=2020"),
                expect("RCPT TO"),
                expect("DATA"),
                send("250 ok"),
                send("250 ok"),
                send("354 go"),
                Step::Data,
                send("250 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session.send(&message(&["a@x.test"], &body)).await;
        assert_eq!(codes(&outcomes), [(Delivered, 250, true)]);
        session.quit().await;
        let received = &server.finish().await[0].messages[0];
        let expected = limit_line_length(&body);
        assert_eq!(received, &expected.into_owned());
        assert!(received.split(|&b| b == b'\n').all(|l| l.len() <= 999));
    })
    .await;
}

#[tokio::test]
async fn an_address_with_a_line_break_is_never_sent() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&[]),
            vec![
                expect("MAIL FROM"),
                send("250 ok"),
                expect("RCPT TO:<b@x.test>"),
                send("250 ok"),
                expect("DATA"),
                send("354 go"),
                Step::Data,
                send("250 ok"),
            ],
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        let outcomes = session
            .send(&message(&["a@x.test>\r\nRSET", "b@x.test", ""], MESSAGE))
            .await;
        assert_eq!(
            codes(&outcomes),
            [
                (Permanent, 553, false),
                (Delivered, 250, true),
                (Permanent, 553, false)
            ]
        );
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn no_recipients_means_no_transaction() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![hello(&[]), quit()])]).await;
        let mut session = open_plain(server.address).await;
        assert!(session.send(&message(&[], MESSAGE)).await.is_empty());
        session.quit().await;
        server.finish().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Opening

#[tokio::test]
async fn helo_when_ehlo_is_not_understood() {
    bounded(async {
        let server = Scripted::start(vec![vec![
            send("220 old.test SMTP"),
            expect("EHLO client.test"),
            send("502 5.5.2 command not recognized"),
            expect("HELO client.test"),
            send("250 old.test"),
            alone("MAIL FROM:<alice@example.com>"),
            send("250 ok"),
            alone("RCPT TO:<a@x.test>"),
            send("250 ok"),
            alone("DATA"),
            send("354 go"),
            Step::Data,
            send("250 ok"),
            expect("QUIT"),
            send("221 bye"),
        ]])
        .await;
        let mut session = open_plain(server.address).await;
        assert_eq!(session.capabilities, Capabilities::none());
        let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
        assert_eq!(codes(&outcomes), [(Delivered, 250, true)]);
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_helo_is_a_greeting_failure() {
    bounded(async {
        let server = Scripted::start(vec![vec![
            send("220 mx.test"),
            expect("EHLO"),
            send("500 5.5.1 no"),
            expect("HELO"),
            send("550 5.7.1 not you"),
            expect("QUIT"),
            send("221 bye"),
        ]])
        .await;
        let failure = open_with(server.address, TlsPolicy::None, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Greeting);
        assert_eq!(failure.reply.summary(), "550 5.7.1 not you");
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_421_greeting_is_a_greeting_failure() {
    bounded(async {
        let server = Scripted::start(vec![vec![send("421 4.3.2 too busy, come back later")]]).await;
        let failure = open_with(server.address, TlsPolicy::May, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Greeting);
        assert_eq!(failure.reply.code, 421);
        assert_eq!(failure.reply.enhanced(), Some("4.3.2"));
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_554_greeting_is_read_whole_and_answered_with_quit() {
    bounded(async {
        let server = Scripted::start(vec![vec![
            send("554-mx.test does not want you\r\n554 5.7.1 listed at a blocklist"),
            expect("QUIT"),
            send("221 bye"),
        ]])
        .await;
        let failure = open_with(server.address, TlsPolicy::May, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Greeting);
        assert_eq!(failure.reply.lines.len(), 2);
        assert_eq!(failure.reply.enhanced(), Some("5.7.1"));
        assert_eq!(server.finish().await[0].lines, ["QUIT"]);
    })
    .await;
}

#[tokio::test]
async fn a_421_to_ehlo_is_a_greeting_failure() {
    bounded(async {
        let server = Scripted::start(vec![vec![
            send("220 mx.test"),
            expect("EHLO"),
            send("421 4.7.0 try again later"),
        ]])
        .await;
        let failure = open_with(server.address, TlsPolicy::May, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Greeting);
        assert_eq!(failure.reply.code, 421);
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let failure = open_with(address, TlsPolicy::May, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Unreachable);
        assert_eq!(failure.reply.code, 451);
        assert_eq!(failure.reply.enhanced(), Some("4.4.1"));
        assert!(failure.reply.summary().contains("refused"));
    })
    .await;
}

#[tokio::test]
async fn a_server_closing_before_the_greeting_is_unreachable() {
    bounded(async {
        let server = Scripted::start(vec![vec![]]).await;
        let failure = open_with(server.address, TlsPolicy::May, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Unreachable);
        assert_eq!(failure.reply.enhanced(), Some("4.4.2"));
        assert!(failure.reply.summary().contains("greeting"));
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out_at_the_greeting() {
    bounded(async {
        let server = Scripted::start(vec![vec![Step::Stall]]).await;
        let settings = ClientSettings {
            command_timeout: Duration::from_millis(200),
            ..settings()
        };
        let failure = open_with(server.address, TlsPolicy::May, None, &settings)
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::Unreachable);
        assert_eq!(failure.reply.enhanced(), Some("4.4.1"));
        assert!(
            failure
                .reply
                .summary()
                .contains("timed out waiting for the greeting")
        );
        server.finish().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A TLS server with a self-signed certificate for `names`, and that certificate.
fn tls_server(names: &[&str]) -> (TlsAcceptor, CertificateDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = certificate.der().clone();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], private)
        .unwrap();
    (TlsAcceptor::from(Arc::new(config)), der)
}

/// STARTTLS accepted, the handshake, and EHLO again with `extensions`.
fn starttls(acceptor: &TlsAcceptor, extensions: &[&str]) -> Vec<Step> {
    vec![
        expect("STARTTLS"),
        send("220 2.0.0 ready"),
        Step::Tls(acceptor.clone()),
        expect("EHLO client.test"),
        ehlo(extensions),
    ]
}

/// One message to a@x.test, pipelined, accepted.
fn delivery() -> Vec<Step> {
    vec![
        expect("MAIL FROM"),
        expect("RCPT TO"),
        expect("DATA"),
        send("250 ok"),
        send("250 ok"),
        send("354 go"),
        Step::Data,
        send("250 2.0.0 ok"),
    ]
}

async fn deliver_one(session: &mut Session) {
    let outcomes = session.send(&message(&["a@x.test"], MESSAGE)).await;
    assert_eq!(codes(&outcomes), [(Delivered, 250, true)]);
}

#[tokio::test]
async fn starttls_under_may_and_encrypt() {
    bounded(async {
        let (acceptor, _) = tls_server(&["mx.test"]);
        for policy in [TlsPolicy::May, TlsPolicy::Encrypt] {
            let server = Scripted::start(vec![script(vec![
                hello(&["STARTTLS", "PIPELINING"]),
                starttls(&acceptor, &["PIPELINING", "8BITMIME"]),
                delivery(),
                quit(),
            ])])
            .await;
            let mut session = open_with(server.address, policy, None, &settings())
                .await
                .unwrap();
            assert!(session.tls.is_some(), "{policy}");
            // The capabilities are those announced after TLS.
            assert!(session.capabilities.eight_bit_mime && !session.capabilities.starttls);
            deliver_one(&mut session).await;
            session.quit().await;
            let transcripts = server.finish().await;
            assert!(transcripts[0].tls);
            assert_eq!(transcripts[0].sni.as_deref(), Some("mx.test"));
            assert_eq!(transcripts[0].messages, [STUFFED.to_vec()]);
        }
    })
    .await;
}

#[tokio::test]
async fn an_ip_literal_host_sends_no_sni() {
    bounded(async {
        let (acceptor, _) = tls_server(&["mx.test"]);
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            starttls(&acceptor, &[]),
            quit(),
        ])])
        .await;
        let session = open(
            "127.0.0.1",
            server.address,
            TlsPolicy::Encrypt,
            None,
            &settings(),
            &fallback(),
        )
        .await
        .unwrap();
        assert!(session.tls.is_some());
        session.quit().await;
        let transcripts = server.finish().await;
        assert!(transcripts[0].tls);
        assert_eq!(transcripts[0].sni, None);
    })
    .await;
}

#[tokio::test]
async fn encrypt_without_starttls_offered_is_tls_required() {
    bounded(async {
        let server = Scripted::start(vec![hello(&["PIPELINING"])]).await;
        let failure = open_with(server.address, TlsPolicy::Encrypt, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::TlsRequired);
        assert_eq!(failure.reply.code, 451);
        assert_eq!(failure.reply.enhanced(), Some("4.7.4"));
        let summary = failure.reply.summary();
        assert!(summary.contains("does not offer STARTTLS"), "{summary}");
        assert!(summary.contains("encrypt"), "{summary}");
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn encrypt_with_starttls_refused_is_tls_required() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            vec![expect("STARTTLS"), send("454 4.7.0 TLS not available")],
        ])])
        .await;
        let failure = open_with(server.address, TlsPolicy::Encrypt, None, &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::TlsRequired);
        assert_eq!(failure.reply.enhanced(), Some("4.7.4"));
        assert!(failure.reply.summary().contains("454 4.7.0"));
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn may_goes_on_in_plaintext_when_starttls_is_absent_or_refused() {
    bounded(async {
        let server = Scripted::start(vec![
            script(vec![hello(&["PIPELINING"]), delivery(), quit()]),
            script(vec![
                hello(&["PIPELINING", "STARTTLS"]),
                vec![expect("STARTTLS"), send("454 4.7.0 TLS not available")],
                delivery(),
                quit(),
            ]),
        ])
        .await;
        for _ in 0..2 {
            let mut session = open_with(server.address, TlsPolicy::May, None, &settings())
                .await
                .unwrap();
            assert!(session.tls.is_none());
            deliver_one(&mut session).await;
            session.quit().await;
        }
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn none_never_starts_tls() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS", "PIPELINING"]),
            delivery(),
            quit(),
        ])])
        .await;
        let mut session = open_plain(server.address).await;
        assert!(session.tls.is_none());
        deliver_one(&mut session).await;
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_handshake_under_may_falls_back_to_plaintext_and_is_remembered() {
    bounded(async {
        let server = Scripted::start(vec![
            script(vec![
                hello(&["STARTTLS", "PIPELINING"]),
                vec![expect("STARTTLS"), send("220 go ahead"), Step::Garbage],
            ]),
            // The reconnect: STARTTLS is still offered, and not used.
            script(vec![hello(&["STARTTLS", "PIPELINING"]), delivery(), quit()]),
            // The next delivery skips STARTTLS from the start.
            script(vec![hello(&["STARTTLS"]), quit()]),
        ])
        .await;
        let (fallback, settings) = (fallback(), settings());
        let open_may = || {
            open(
                "mx.test",
                server.address,
                TlsPolicy::May,
                None,
                &settings,
                &fallback,
            )
        };
        let mut session = open_may().await.unwrap();
        assert!(session.tls.is_none());
        assert!(fallback.remembers(server.address));
        deliver_one(&mut session).await;
        session.quit().await;
        let again = open_may().await.unwrap();
        assert!(again.tls.is_none());
        again.quit().await;
        let transcripts = server.finish().await;
        assert_eq!(transcripts[1].messages, [STUFFED.to_vec()]);
    })
    .await;
}

#[tokio::test]
async fn a_failed_handshake_under_encrypt_is_tls_required() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            vec![expect("STARTTLS"), send("220 go ahead"), Step::Garbage],
        ])])
        .await;
        let fallback = fallback();
        let failure = open(
            "mx.test",
            server.address,
            TlsPolicy::Encrypt,
            None,
            &settings(),
            &fallback,
        )
        .await
        .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::TlsRequired);
        assert_eq!(failure.reply.enhanced(), Some("4.7.5"));
        assert!(!fallback.remembers(server.address));
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn verify_accepts_a_trusted_certificate_for_the_host() {
    bounded(async {
        let (acceptor, certificate) = tls_server(&["mx.test"]);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate).unwrap();
        let settings = ClientSettings {
            verify_roots: Arc::new(roots),
            ..settings()
        };
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            starttls(&acceptor, &["PIPELINING"]),
            delivery(),
            quit(),
        ])])
        .await;
        let mut session = open_with(server.address, TlsPolicy::Verify, None, &settings)
            .await
            .unwrap();
        assert!(session.tls.is_some());
        deliver_one(&mut session).await;
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn verify_refuses_a_certificate_for_another_name_or_from_no_trusted_issuer() {
    bounded(async {
        let (acceptor, certificate) = tls_server(&["other.test"]);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate).unwrap();
        let trusting = ClientSettings {
            verify_roots: Arc::new(roots),
            ..settings()
        };
        let handshake = vec![
            hello(&["STARTTLS"]),
            vec![
                expect("STARTTLS"),
                send("220 go"),
                Step::Tls(acceptor.clone()),
            ],
        ];
        let server = Scripted::start(vec![script(handshake.clone()), script(handshake)]).await;
        for settings in [trusting, settings()] {
            let failure = open_with(server.address, TlsPolicy::Verify, None, &settings)
                .await
                .unwrap_err();
            assert_eq!(failure.kind, OpenFailureKind::TlsRequired);
            assert_eq!(failure.reply.enhanced(), Some("4.7.5"));
            let summary = failure.reply.summary();
            assert!(summary.contains("certificate"), "{summary}");
        }
        let transcripts = server.finish().await;
        assert!(transcripts.iter().all(|t| t.tls_error.is_some()));
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// AUTH

fn credentials() -> RelayAuth {
    RelayAuth {
        user: "user".into(),
        password: "secret".into(),
    }
}

fn plain_response() -> String {
    format!("AUTH PLAIN {}", BASE64.encode("\0user\0secret"))
}

#[tokio::test]
async fn auth_plain_over_tls() {
    bounded(async {
        let (acceptor, _) = tls_server(&["mx.test"]);
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            starttls(&acceptor, &["AUTH LOGIN PLAIN", "PIPELINING"]),
            vec![expect(&plain_response()), send("235 2.7.0 welcome")],
            delivery(),
            quit(),
        ])])
        .await;
        let auth = credentials();
        // A remembered handshake failure does not lead to plaintext when there is a password.
        let fallback = fallback();
        fallback.remember(server.address);
        let mut session = open(
            "mx.test",
            server.address,
            TlsPolicy::May,
            Some(&auth),
            &settings(),
            &fallback,
        )
        .await
        .unwrap();
        deliver_one(&mut session).await;
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn refused_credentials_are_auth_failed() {
    bounded(async {
        let (acceptor, _) = tls_server(&["mx.test"]);
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            starttls(&acceptor, &["AUTH PLAIN"]),
            vec![
                expect(&plain_response()),
                send("535 5.7.8 Authentication credentials invalid"),
            ],
        ])])
        .await;
        let auth = credentials();
        let failure = open_with(server.address, TlsPolicy::Encrypt, Some(&auth), &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::AuthFailed);
        assert_eq!(
            failure.reply.summary(),
            "535 5.7.8 Authentication credentials invalid"
        );
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn auth_login_when_plain_is_not_offered() {
    bounded(async {
        let (acceptor, _) = tls_server(&["mx.test"]);
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            starttls(&acceptor, &["AUTH LOGIN"]),
            vec![
                expect("AUTH LOGIN"),
                send("334 VXNlcm5hbWU6"),
                expect(&BASE64.encode("user")),
                send("334 UGFzc3dvcmQ6"),
                expect(&BASE64.encode("secret")),
                send("235 2.7.0 ok"),
            ],
            quit(),
        ])])
        .await;
        let auth = credentials();
        let session = open_with(server.address, TlsPolicy::Encrypt, Some(&auth), &settings())
            .await
            .unwrap();
        session.quit().await;
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn no_usable_mechanism_is_auth_failed() {
    bounded(async {
        let (acceptor, _) = tls_server(&["mx.test"]);
        let server = Scripted::start(vec![script(vec![
            hello(&["STARTTLS"]),
            starttls(&acceptor, &["AUTH CRAM-MD5 XOAUTH2"]),
        ])])
        .await;
        let auth = credentials();
        let failure = open_with(server.address, TlsPolicy::May, Some(&auth), &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::AuthFailed);
        assert_eq!(
            failure.reply.summary(),
            "451 4.7.0 mx.test offers neither AUTH PLAIN nor LOGIN"
        );
        server.finish().await;
    })
    .await;
}

#[tokio::test]
async fn the_password_never_goes_over_plaintext_under_may() {
    bounded(async {
        let server = Scripted::start(vec![hello(&["AUTH PLAIN LOGIN"])]).await;
        let auth = credentials();
        let failure = open_with(server.address, TlsPolicy::May, Some(&auth), &settings())
            .await
            .unwrap_err();
        assert_eq!(failure.kind, OpenFailureKind::TlsRequired);
        assert_eq!(failure.reply.enhanced(), Some("4.7.4"));
        assert!(
            failure
                .reply
                .summary()
                .contains("refusing to send the relay password over plaintext")
        );
        // Only EHLO was sent.
        assert_eq!(server.finish().await[0].lines, ["EHLO client.test"]);
    })
    .await;
}

#[tokio::test]
async fn under_none_the_operator_may_send_credentials_in_plaintext() {
    bounded(async {
        let server = Scripted::start(vec![script(vec![
            hello(&["AUTH PLAIN", "STARTTLS"]),
            vec![expect(&plain_response()), send("235 2.7.0 ok")],
            quit(),
        ])])
        .await;
        let auth = credentials();
        let session = open_with(server.address, TlsPolicy::None, Some(&auth), &settings())
            .await
            .unwrap();
        assert!(session.tls.is_none());
        session.quit().await;
        server.finish().await;
    })
    .await;
}
