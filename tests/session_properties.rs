//! Property tests of the sans-IO SMTP session (`portcullis::smtp::Session`).
//!
//! Each case is a random session: a byte stream made of valid command lines, message bodies
//! (dots, bare CR and LF, NULs) and arbitrary bytes, cut into random pieces, with random
//! outcomes for the actions the session asks for (TLS handshake, credential check, sender
//! authorization, spooling). The stream is fed twice: in the random pieces, and one byte at a
//! time. The session model, with every rule a reply, an action or a spooled message must follow,
//! is `support/session_checker.rs`, shared with the `session` fuzz target; it panics on a broken
//! rule, which proptest reports as a failing case and shrinks. Checked here besides:
//! - fed one byte at a time, no reply comes before the end of a line, each complete line gets at
//!   most one reply (an EHLO reply is one reply of many lines; a closing 421 may follow the last
//!   error allowed), and each success reply answers the command it belongs to;
//! - fed in pieces, the session does exactly the same up to the first STARTTLS (after it, what
//!   was pipelined behind STARTTLS is discarded by design);
//! - a clean message is spooled as sent, without its dot-stuffing, and the same message with a
//!   bare CR, bare LF or NUL is refused whole, except that with `bare_line_endings = "normalize"`
//!   a bare LF is a line end: that message is spooled as the model (`normalized`) says, every
//!   line ending in CRLF, unstuffed like any other line.

#[path = "support/session_checker.rs"]
mod session_checker;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use portcullis::smtp::data::SMUGGLING_TERMINATORS;
use portcullis::smtp::reply;
use portcullis::smtp::reply::Status;
use portcullis::smtp::{BareLineEndings, Limits, Reply};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use session_checker::{ACCOUNTS, Checker, End, Known, Setup};

/// The account the credential check "finds" for most successful logins (and the one the
/// generated commands use).
const ACCOUNT: &str = ACCOUNTS[0];

/// Property tests switch no check off.
fn nothing_allowed(_: Known) -> bool {
    false
}

/// 256 cases by default (a few seconds in a debug build); `PROPTEST_CASES=N` for a deeper run.
fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        // Failures are not written next to the sources; a real one becomes a named test below.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

// ---- Generators ---------------------------------------------------------------------------

fn b64(text: &str) -> String {
    BASE64.encode(text)
}

fn plain_response() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(b64(&format!("\0{ACCOUNT}\0secret"))),
        Just(b64(&format!("{ACCOUNT}\0{ACCOUNT}\0secret"))),
        Just(b64(&format!("boss@example.test\0{ACCOUNT}\0secret"))),
        Just(b64("no nul bytes")),
        Just("=".to_string()),
        Just("*".to_string()),
        Just("not base64!".to_string()),
        "[A-Za-z0-9+/]{0,12}={0,2}",
    ]
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(ACCOUNT.to_string()),
        Just("ALICE@example.TEST".to_string()),
        Just("bob@example.org".to_string()),
        Just("Postmaster".to_string()),
        Just("\"john doe\"@example.com".to_string()),
        Just("u@[192.0.2.1]".to_string()),
        Just("@relay.example:carol@example.net".to_string()),
        Just("jörg@bücher.example".to_string()),
        Just(String::new()),
        Just("no at sign".to_string()),
        Just("a@".to_string()),
        "[a-z]{1,8}@[a-z]{1,8}\\.example",
        "[ -~]{0,12}",
    ]
}

fn mail_parameters() -> impl Strategy<Value = String> {
    let parameter = prop_oneof![
        Just(" SIZE=100"),
        Just(" SIZE=99999999"),
        Just(" SIZE=x"),
        Just(" BODY=8BITMIME"),
        Just(" BODY=7BIT"),
        Just(" BODY=binary"),
        Just(" SMTPUTF8"),
        Just(" AUTH=<>"),
        Just(" RET=FULL"),
        Just(" ret=hdrs"),
        Just(" RET=ALL"),
        Just(" ENVID=abc+2Bdef"),
        Just(" ENVID=a+2"),
        Just(" ENVID=a+20b"),
    ];
    vec(parameter, 0..3).prop_map(|parameters| parameters.concat())
}

/// RFC 3461 parameters of RCPT, well-formed or not; mostly none.
fn rcpt_parameters() -> impl Strategy<Value = String> {
    let parameter = prop_oneof![
        Just(" NOTIFY=NEVER"),
        Just(" notify=success,failure"),
        Just(" NOTIFY=DELAY,DELAY"),
        Just(" NOTIFY=NEVER,FAILURE"),
        Just(" NOTIFY=SOMETIMES"),
        Just(" ORCPT=rfc822;orig+40example.test"),
        Just(" ORCPT=rfc822;a+2"),
        Just(" ORCPT=nosemicolon"),
        Just(" X-UNKNOWN=1"),
    ];
    prop_oneof![3 => Just(String::new()), 2 => vec(parameter, 1..3).prop_map(|p| p.concat())]
}

/// One command line with its CRLF.
fn command_line() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("client.example"),
        Just("[192.0.2.1]"),
        Just("c"),
        Just("bad name"),
        Just(""),
    ];
    let verb_case = prop_oneof![3 => Just(false), 1 => Just(true)];
    let line = prop_oneof![
        4 => name.clone().prop_map(|name| format!("EHLO {name}")),
        1 => name.prop_map(|name| format!("HELO {name}")),
        6 => (address(), mail_parameters())
            .prop_map(|(address, parameters)| format!("MAIL FROM:<{address}>{parameters}")),
        6 => (address(), rcpt_parameters())
            .prop_map(|(address, parameters)| format!("RCPT TO:<{address}>{parameters}")),
        1 => Just("RCPT TO: <bob@example.org>".to_string()),
        1 => Just("MAIL FROM:bob@example.org".to_string()),
        4 => Just("DATA".to_string()),
        1 => Just("DATA now".to_string()),
        2 => Just("RSET".to_string()),
        2 => Just("NOOP".to_string()),
        1 => Just("QUIT".to_string()),
        1 => Just("VRFY bob".to_string()),
        1 => Just("EXPN list".to_string()),
        1 => prop_oneof![Just(""), Just(" mail"), Just(" frob")]
            .prop_map(|topic| format!("HELP{topic}")),
        3 => Just("STARTTLS".to_string()),
        4 => plain_response().prop_map(|response| format!("AUTH PLAIN {response}")),
        1 => Just("AUTH PLAIN".to_string()),
        2 => Just("AUTH LOGIN".to_string()),
        1 => Just(format!("AUTH LOGIN {}", b64(ACCOUNT))),
        1 => Just("AUTH CRAM-MD5".to_string()),
        // Answers inside an AUTH exchange (or junk outside one).
        3 => prop_oneof![
            plain_response(),
            Just(b64(ACCOUNT)),
            Just(b64("secret")),
        ],
        1 => Just("FROB".to_string()),
    ];
    (line, verb_case).prop_map(|(line, lower)| {
        let line = if lower { line.to_lowercase() } else { line };
        format!("{line}\r\n").into_bytes()
    })
}

/// Lines of a message as sent, dot-stuffed, each with CRLF.
fn body_lines() -> impl Strategy<Value = Vec<String>> {
    let line = prop_oneof![
        6 => "[ -~]{0,30}",
        1 => Just(String::new()),
        1 => Just(".".to_string()),
        1 => "\\.[ -~]{0,10}",
        1 => "[^\r\n\0]{0,20}",
    ];
    vec(line, 0..8).prop_map(|lines| {
        lines
            .into_iter()
            .map(|line| {
                let stuffed = if line.starts_with('.') { "." } else { "" };
                format!("{stuffed}{line}\r\n")
            })
            .collect()
    })
}

/// A message body as it may come after 354: clean or with bare CR, LF and NULs (and maybe one of
/// the smuggling terminators), usually ended by CRLF "." CRLF.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let bare: [&'static [u8]; 3] = [b"\n", b"\r", b"\0"];
    let defect = prop::sample::select([&bare[..], &SMUGGLING_TERMINATORS[..]].concat());
    (
        body_lines(),
        prop::option::weighted(0.3, (defect, any::<Index>())),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(lines, defect, terminated)| {
            let mut body = lines.concat().into_bytes();
            if let Some((defect, at)) = defect {
                let at = at.index(body.len() + 1);
                body.splice(at..at, defect.iter().copied());
            }
            if terminated {
                body.extend_from_slice(b".\r\n");
            }
            body
        })
}

/// A complete transaction, so that many cases reach DATA and the spool.
fn transaction() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(ACCOUNT.to_string()), address()],
        mail_parameters(),
        vec((address(), rcpt_parameters()), 1..4),
        body(),
    )
        .prop_map(|(sender, parameters, recipients, body)| {
            let mut text = format!("MAIL FROM:<{sender}>{parameters}\r\n");
            for (recipient, parameters) in recipients {
                text.push_str(&format!("RCPT TO:<{recipient}>{parameters}\r\n"));
            }
            text.push_str("DATA\r\n");
            [text.into_bytes(), body].concat()
        })
}

/// The usual start of a submission session.
fn opening() -> impl Strategy<Value = Vec<u8>> {
    let login = format!(
        "EHLO c\r\nAUTH PLAIN {}\r\n",
        b64(&format!("\0{ACCOUNT}\0pw"))
    );
    prop_oneof![
        1 => Just(Vec::new()),
        1 => Just(b"EHLO client.example\r\n".to_vec()),
        1 => Just(b"EHLO client.example\r\nSTARTTLS\r\n".to_vec()),
        3 => Just(login.into_bytes()),
    ]
}

fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => command_line(),
        3 => transaction(),
        2 => body(),
        1 => vec(any::<u8>(), 0..40),
        1 => "[ -~]{0,20}\r\n".prop_map(String::into_bytes),
        // Over-long command lines (the limit is 512 + 646 octets for MAIL parameters).
        1 => (500usize..1400).prop_map(|n| [vec![b'X'; n], b"\r\n".to_vec()].concat()),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    // (trusted, implicit TLS): mostly connections that can get as far as DATA.
    let connection = prop_oneof![
        1 => Just((false, false)),
        1 => Just((true, false)),
        2 => any::<bool>().prop_map(|trusted| (trusted, true)),
    ];
    (
        connection,
        any::<bool>(),
        prop_oneof![3 => Just(60u32), 1 => 1u32..6],
        1usize..5,
        prop_oneof![Just(1024usize), Just(4096)],
        prop_oneof![Just(End::Nothing), Just(End::ShutDown), Just(End::TimedOut)],
        vec(any::<u8>(), 1..8),
        bare_line_endings(),
    )
        .prop_map(
            |(
                (trusted, implicit_tls),
                starttls_available,
                max_errors,
                max_recipients,
                max_message_size,
                end,
                outcomes,
                bare_line_endings,
            )| Setup {
                trusted,
                starttls_available,
                implicit_tls,
                limits: Limits {
                    max_errors,
                    max_recipients,
                    max_message_size,
                    bare_line_endings,
                    ..Limits::default()
                },
                end,
                outcomes,
            },
        )
}

fn bare_line_endings() -> impl Strategy<Value = BareLineEndings> {
    prop_oneof![
        Just(BareLineEndings::Normalize),
        Just(BareLineEndings::Reject)
    ]
}

/// The model of a normalised body (the bytes before the final "." CRLF, holding no bare CR and
/// no NUL): every LF ends a line, with or without a CR before it; each line is stored with
/// CRLF and loses a leading dot when more follows it (RFC 5321 §4.5.2). A line of one dot is
/// kept: it cannot have been the end of data, which needs CRLF on both sides.
fn normalized(body: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = match line.strip_prefix(b".") {
            Some(unstuffed) if !unstuffed.is_empty() => unstuffed,
            _ => line,
        };
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message
}

/// A session's setup, its byte stream and where to cut it.
fn scenario() -> impl Strategy<Value = (Setup, Vec<u8>, Vec<usize>)> {
    (
        setup(),
        opening(),
        vec(piece(), 0..24),
        vec(any::<Index>(), 0..12),
    )
        .prop_map(|(setup, opening, pieces, cuts)| {
            let stream = [opening, pieces.concat()].concat();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            (setup, stream, cuts)
        })
}

// ---- Runs ---------------------------------------------------------------------------------

/// Feeds the stream in the pieces between the cuts (sorted positions in the stream).
fn run_in_pieces<'a>(setup: &'a Setup, stream: &[u8], cuts: &[usize]) -> Checker<'a> {
    let ends = cuts.iter().copied().chain([stream.len()]);
    let starts = [0].into_iter().chain(cuts.iter().copied());
    let pieces = starts.zip(ends).map(|(start, end)| &stream[start..end]);
    session_checker::run(setup, nothing_allowed, pieces)
}

/// Feeds the stream one byte at a time and checks that each line gets at most one reply, which
/// answers that line.
fn run_byte_by_byte<'a>(setup: &'a Setup, stream: &[u8]) -> Checker<'a> {
    let (mut checker, mut session) = Checker::start(setup, nothing_allowed);
    let mut line = Vec::new();
    for (at, &byte) in stream.iter().enumerate() {
        if checker.dropped() {
            break;
        }
        let in_data = checker.in_data();
        let replies = checker.feed(&mut session, &[byte]);
        let line_end = byte == b'\n' && at > 0 && stream[at - 1] == b'\r';
        if !line_end {
            assert!(replies.is_empty(), "a reply before the end of a line");
            line.push(byte);
            continue;
        }
        line.pop(); // its CR
        check_replies_to_line(&replies, &line, in_data);
        line.clear();
    }
    checker.finish(&mut session);
    checker
}

/// At most one reply per line, plus 421 when that reply was the last error allowed; a success
/// reply answers the command it belongs to.
fn check_replies_to_line(replies: &[Reply], line: &[u8], in_data: bool) {
    let closing = replies.len() == 2 && replies[1] == reply::TOO_MANY_ERRORS;
    assert!(
        replies.len() <= 1 || closing,
        "{} replies to {:?}",
        replies.len(),
        String::from_utf8_lossy(line)
    );
    if let Some(reply) = replies.first() {
        check_answers(reply, line, in_data);
    }
}

/// A success reply answers the command it belongs to.
fn check_answers(reply: &Reply, line: &[u8], in_data: bool) {
    let text = String::from_utf8_lossy(line).to_ascii_uppercase();
    let status = reply.status().map(|s| (s.0, s.1, s.2));
    let expected_verb = match (reply.code(), status) {
        _ if in_data => {
            assert_eq!(line, b".", "the message ended elsewhere: {reply:?}");
            return;
        }
        (250, Some((2, 1, 0))) => "MAIL FROM:",
        (250, Some((2, 1, 5))) => "RCPT TO:",
        (250, None) => "HELO ",
        (354, _) => "DATA",
        (221, _) => "QUIT",
        (220, _) => "STARTTLS",
        _ => return,
    };
    let matches = if expected_verb == "HELO " {
        text.starts_with("HELO ") || text.starts_with("EHLO ")
    } else {
        text.starts_with(expected_verb)
    };
    assert!(matches, "{reply:?} in answer to {text:?}");
}

// ---- Properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn sessions_keep_their_invariants((setup, stream, cuts) in scenario()) {
        let one_byte = run_byte_by_byte(&setup, &stream);
        let in_pieces = run_in_pieces(&setup, &stream, &cuts);
        session_checker::assert_same_until_starttls(one_byte.log(), in_pieces.log());
    }

    #[test]
    fn a_message_with_a_bare_line_ending_or_nul_is_refused_or_normalized(
        mode in bare_line_endings(),
        lines in body_lines(),
        defect in prop_oneof![Just(b'\n'), Just(b'\r'), Just(0u8)],
        at in any::<Index>(),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let clean = lines.concat().into_bytes();
        let mut tainted = clean.clone();
        // One byte inserted anywhere cannot make a CRLF "." CRLF out of dot-stuffed lines (but
        // it can hide the one that follows: a bare LF before it, so a CRLF follows the body).
        let at = at.index(tainted.len() + 1);
        tainted.insert(at, defect);
        tainted.extend_from_slice(b"\r\n");

        let setup = Setup {
            trusted: false,
            starttls_available: false,
            implicit_tls: true,
            limits: Limits {
                max_message_size: 4096,
                bare_line_endings: mode,
                ..Limits::default()
            },
            end: End::Nothing,
            outcomes: vec![0],
        };
        let stream = |body: &[u8]| {
            let head = format!(
                "EHLO c\r\nAUTH PLAIN {}\r\nMAIL FROM:<{ACCOUNT}>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
                b64(&format!("\0{ACCOUNT}\0pw"))
            );
            [head.as_bytes(), body, b".\r\nQUIT\r\n"].concat()
        };
        let cut_at = |stream: &[u8]| {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.sort_unstable();
            cuts
        };

        // The clean message is spooled as sent, without its dot-stuffing...
        let clean_stream = stream(&clean);
        let checker = run_in_pieces(&setup, &clean_stream, &cut_at(&clean_stream));
        prop_assert_eq!(checker.spooled().len(), 1);
        let unstuffed: String = lines.iter().map(|line| line.strip_prefix('.').unwrap_or(line)).collect();
        let message = &checker.spooled()[0];
        prop_assert!(message.ends_with(unstuffed.as_bytes()));
        let header = &message[..message.len() - unstuffed.len()];
        prop_assert!(header.starts_with(b"Received: ") && header.ends_with(b"\r\n"));
        let authenticated = format!("(authenticated as {ACCOUNT})");
        prop_assert!(String::from_utf8_lossy(header).contains(&authenticated));

        // ... and the same message with one bare CR, bare LF or NUL is refused whole, or, for a
        // bare LF when normalising, spooled as the model says.
        let tainted_stream = stream(&tainted);
        let checker = run_in_pieces(&setup, &tainted_stream, &cut_at(&tainted_stream));
        // A NUL between the CR and the LF of a line end leaves a bare CR before it.
        let splits_crlf = at > 0 && clean[at - 1] == b'\r';
        let refusal = match (defect, mode) {
            (0, _) if !splits_crlf => Some(reply::NUL_IN_DATA),
            (b'\n', BareLineEndings::Normalize) => None,
            (_, BareLineEndings::Normalize) => Some(reply::BARE_CR_IN_DATA),
            (_, BareLineEndings::Reject) => Some(reply::BARE_LINE_ENDING_IN_DATA),
        };
        match refusal {
            Some(refusal) => {
                prop_assert!(checker.spooled().is_empty());
                prop_assert!(checker.log().contains(&refusal.to_wire()), "{:?}", checker.log());
            }
            None => {
                prop_assert_eq!(checker.spooled().len(), 1);
                let expected = normalized(&tainted);
                let message = &checker.spooled()[0];
                prop_assert!(
                    message.ends_with(&expected),
                    "{:?} does not end with {:?}",
                    String::from_utf8_lossy(message),
                    String::from_utf8_lossy(&expected)
                );
                prop_assert_eq!(&message[..message.len() - expected.len()], header);
            }
        }
        prop_assert_eq!(checker.log().last().map(String::as_str), Some("CLOSE"));
    }
}

// ---- Regression cases ---------------------------------------------------------------------

/// Runs one stream through a trusted plaintext session and returns the replies to it (the
/// greeting is checked by `Checker::start`).
fn replies_to(stream: &[u8]) -> Vec<Reply> {
    let setup = Setup {
        trusted: true,
        starttls_available: true,
        implicit_tls: false,
        limits: Limits::default(),
        end: End::Nothing,
        outcomes: vec![0],
    };
    let (mut checker, mut session) = Checker::start(&setup, nothing_allowed);
    checker.feed(&mut session, stream)
}

/// Found by the `session` fuzz target: `HELP <topic>` and unknown MAIL/RCPT parameters used to
/// echo client text into reply lines longer than the 512 octets of RFC 5321 §4.5.3.1.5.
#[test]
fn echoed_client_text_keeps_reply_lines_within_512_octets() {
    for stream in [
        format!("HELP {}\r\n", "x".repeat(500)).into_bytes(),
        [&b"HELP "[..], &[0x1d; 90], b"\r\n"].concat(),
        format!("EHLO c\r\nMAIL FROM:<a@b.example> {}\r\n", "X".repeat(600)).into_bytes(),
    ] {
        for reply in replies_to(&stream) {
            for line in reply.to_wire().split_inclusive('\n') {
                assert!(
                    line.len() <= 512,
                    "reply line of {} octets: {line:?}",
                    line.len()
                );
            }
        }
    }
}

/// Found by the `command_parser` fuzz target: an unknown MAIL or RCPT parameter used to be
/// echoed raw, control characters included; reply text must be printable (RFC 5321 §4.2).
#[test]
fn unknown_parameters_are_echoed_without_control_characters() {
    let replies = replies_to(b"EHLO c\r\nMAIL FROM:<a@b.example> X\x1b[2J\x00\r\n");
    let refusal = replies.last().unwrap();
    assert_eq!(
        (refusal.code(), refusal.status()),
        (555, Some(Status(5, 5, 4)))
    );
    assert!(
        !refusal.text().chars().any(|c| c.is_control()),
        "{refusal:?}"
    );
}

/// The inputs the fuzz targets were seeded with, as plain sessions, still pass every check.
#[test]
fn a_complete_submission_passes_the_checks() {
    let setup = Setup {
        trusted: false,
        starttls_available: true,
        implicit_tls: false,
        limits: Limits::default(),
        end: End::Nothing,
        outcomes: vec![0],
    };
    let stream = format!(
        "EHLO client.example\r\nSTARTTLS\r\nEHLO client.example\r\nAUTH PLAIN {}\r\n\
         MAIL FROM:<{ACCOUNT}> SIZE=100\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<Postmaster>\r\n\
         DATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
        b64(&format!("\0{ACCOUNT}\0pw"))
    );
    let checker = run_byte_by_byte(&setup, stream.as_bytes());
    assert_eq!(checker.spooled().len(), 1);
    let spool = checker
        .log()
        .iter()
        .find(|e| e.starts_with("SPOOL"))
        .unwrap();
    assert!(spool.contains("postmaster@mx.example.test"), "{spool}");
    assert_eq!(checker.log().last().unwrap(), "CLOSE");
}

/// What `curl -T message.eml` sends for a file with Unix line endings: LF lines (the first one
/// dot-stuffed by curl, the others not), then CRLF "." CRLF. Normalised, it is spooled with CRLF
/// line ends; rejected, it gets the reply that says how to fix the client.
#[test]
fn an_lf_only_message_is_normalized_or_refused_with_advice() {
    for mode in [BareLineEndings::Normalize, BareLineEndings::Reject] {
        let setup = Setup {
            trusted: true,
            starttls_available: false,
            implicit_tls: false,
            limits: Limits {
                bare_line_endings: mode,
                ..Limits::default()
            },
            end: End::Nothing,
            outcomes: vec![0],
        };
        let stream = b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n\
            Subject: hi\n\nline\n.\n..two\n\r\n.\r\nQUIT\r\n";
        let checker = run_byte_by_byte(&setup, stream);
        match mode {
            BareLineEndings::Normalize => {
                assert_eq!(checker.spooled().len(), 1);
                let message = &checker.spooled()[0];
                assert!(
                    message.ends_with(b"\r\nSubject: hi\r\n\r\nline\r\n.\r\n.two\r\n\r\n"),
                    "{:?}",
                    String::from_utf8_lossy(message)
                );
            }
            BareLineEndings::Reject => {
                assert!(checker.spooled().is_empty());
                let refusal = reply::BARE_LINE_ENDING_IN_DATA.to_wire();
                assert!(checker.log().contains(&refusal), "{:?}", checker.log());
                assert!(refusal.contains("curl --crlf"), "{refusal}");
            }
        }
    }
}
