//! The model of the sans-IO SMTP session (`portcullis::smtp::Session`), written once and used by
//! both the property tests (`tests/session_properties.rs`) and the `session` fuzz target (the fuzz
//! crate includes this file by path from `fuzz/src/lib.rs`). Each caller only decides what to
//! feed: proptest builds streams from strategies, the fuzz target decodes a 16-byte header.
//!
//! Every check panics with a message naming the broken rule: proptest turns a panic in a test
//! body into a failing case and shrinks it, libFuzzer reports it as a crash. So the file must not
//! depend on either harness, nor refer to `crate::` (it is a module of two different crates).
//!
//! Checked, for every session:
//! - every reply: a code in 200..=599; an enhanced status code, if any, of the same class, and
//!   none on 3xx (RFC 3463, RFC 2034 §3); on the wire each line carries the code and its
//!   separator, ends with CRLF, has no other CR, is at most 512 octets with its CRLF
//!   (RFC 5321 §4.5.3.1.5) and has no control character but HTAB (RFC 5321 §4.2);
//! - the greeting is one 220; nothing comes after `Action::Close`; `in_data()` agrees with the
//!   replies; at most one reply per CRLF received, besides the greeting and one closing 421;
//! - after each outcome the driver gives (AUTH, sender authorization, spool), the reply with the
//!   code that outcome calls for comes next;
//! - credentials only over TLS, and only once; STARTTLS only after 220 and only in clear;
//! - a message is spooled only after a 354, with exactly the sender that got `250 2.1.0` and the
//!   recipients that got `250 2.1.5` in that transaction, and never without TLS and AUTH unless
//!   the client is trusted; a spooled message starts with our Received:, fits the size limit,
//!   has no bare CR, bare LF or NUL (in both `bare_line_endings` modes: `reject` refuses such a
//!   message, `normalize` stores a bare LF as CRLF and refuses the rest) and no line longer than
//!   `max_text_line` with its CRLF (normalised lines included);
//! - a spooled envelope's DSN parameters (RFC 3461) are well-formed: RET is FULL or HDRS, ENVID
//!   is 1 to 100 graphic ASCII characters, and the per-recipient entries are none at all or one
//!   per recipient (then at least one with a parameter), each NOTIFY readable by the delivery
//!   side and each ORCPT `addr-type;address` in printable ASCII;
//! - `shut_down` and `timed_out` close the session with one `421 4.3.2` / `421 4.4.2`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use portcullis::bounce::Notify;
use portcullis::smtp::budget::MemoryBudget;
use portcullis::smtp::reply;
use portcullis::smtp::{
    Action, Allowance, AuthOutcome, Envelope, Limits, RecipientDsn, Remaining, Reply,
    SenderDecision, Session, SessionConfig, SpoolOutcome, Status, Submission, TlsInfo,
};

const HOSTNAME: &str = "mx.example.test";
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
/// What the account store answers with for a successful login: bit 7 of the outcome byte picks
/// one, so that the account name the session uses need not be the one the client typed.
pub const ACCOUNTS: [&str; 2] = ["alice@example.test", "Bob@Example.TEST"];
/// Our Received: header and the rest of the prefix are far shorter than this.
const MAX_PREFIX: usize = 2048;
/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and the CRLF.
pub const MAX_REPLY_LINE: usize = 512;

/// Known problems whose checks a long fuzz run may switch off (see `fuzz/README.md`), so that it
/// looks for other bugs instead of finding the same one again. The property tests allow none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// A reply line longer than 512 octets.
    LongReplyLines,
    /// A control character (other than HTAB) in a reply's text.
    ControlCharactersInReplies,
}

/// Whether the check for a known problem is switched off.
pub type Allowed = fn(Known) -> bool;

/// What happens after the last byte of the stream.
/// The reply an outcome calls for.
#[derive(Debug, Clone, Copy)]
enum Expected {
    /// Exactly this code and enhanced status.
    Reply(u16, Status),
    /// Some permanent refusal (an AUTH denied by rule: which one depends on the rule).
    Refusal,
}

impl Expected {
    fn matches(&self, reply: &Reply) -> bool {
        match *self {
            Expected::Reply(code, status) => reply.code() == code && reply.status() == Some(status),
            Expected::Refusal => (500..=599).contains(&reply.code()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Nothing,
    ShutDown,
    TimedOut,
}

/// A session's configuration and the outcomes the driver will give.
#[derive(Debug, Clone)]
pub struct Setup {
    pub trusted: bool,
    pub starttls_available: bool,
    pub implicit_tls: bool,
    pub limits: Limits,
    pub end: End,
    /// Outcome choices, used in turn for each action that needs one; never empty.
    pub outcomes: Vec<u8>,
}

impl Setup {
    fn session(&self) -> Session {
        let config = Arc::new(SessionConfig {
            hostname: HOSTNAME.into(),
            starttls_available: self.starttls_available,
            limits: self.limits.clone(),
            check_header_from: false,
            clock: || UNIX_EPOCH,
            // The property checks are about the protocol; the budget has its own tests.
            memory: MemoryBudget::new(usize::MAX),
            ports: reply::Ports {
                own: 587,
                implicit_tls: Some(465),
            },
        });
        let tls = self.implicit_tls.then(tls_info);
        Session::new(config, CLIENT, self.trusted, tls)
    }
}

/// Runs one session over the stream cut into `pieces`, then ends it as the setup says.
pub fn run<'a, 's>(
    setup: &'a Setup,
    allowed: Allowed,
    pieces: impl IntoIterator<Item = &'s [u8]>,
) -> Checker<'a> {
    let (mut checker, mut session) = Checker::start(setup, allowed);
    for piece in pieces {
        if checker.dropped() {
            break;
        }
        checker.feed(&mut session, piece);
    }
    checker.finish(&mut session);
    checker
}

/// Two runs of the same stream cut differently took the same actions up to the first STARTTLS
/// (after it, what was pipelined in the same read is discarded by design, so they may differ).
pub fn assert_same_until_starttls(a: &[String], b: &[String]) {
    let until_starttls = |log: &[String]| {
        log.iter()
            .position(|entry| entry == "STARTTLS")
            .map_or(log.len(), |at| at + 1)
    };
    assert_eq!(
        a[..until_starttls(a)],
        b[..until_starttls(b)],
        "the session depends on how the bytes were split"
    );
}

struct Transaction {
    sender: String,
    recipients: Vec<String>,
}

/// Follows a session through its actions, answers them, and checks each.
pub struct Checker<'a> {
    setup: &'a Setup,
    allowed: Allowed,
    /// Every action as text, to compare two runs.
    log: Vec<String>,
    /// The session said Close.
    closed: bool,
    /// The handshake "failed": the driver drops the connection.
    dropped: bool,
    outcome_index: usize,
    /// The range of codes of the reply the session must send next, after an outcome.
    expect: Option<Expected>,
    replies: usize,
    /// CRLF sequences received (an upper bound on complete lines).
    line_ends: usize,
    last_byte: u8,
    /// `shut_down` or `timed_out` called: each may add a reply no line asked for.
    events: usize,
    tls: bool,
    auth_user: Option<String>,
    pending_user: Option<String>,
    transaction: Option<Transaction>,
    in_data: bool,
    last_reply: Option<Reply>,
    /// The messages spooled, as stored.
    spooled: Vec<Vec<u8>>,
}

impl<'a> Checker<'a> {
    /// A new session and its checker, after checking the greeting.
    pub fn start(setup: &'a Setup, allowed: Allowed) -> (Checker<'a>, Session) {
        let mut checker = Checker {
            setup,
            allowed,
            log: Vec::new(),
            closed: false,
            dropped: false,
            outcome_index: 0,
            expect: None,
            replies: 0,
            line_ends: 0,
            last_byte: 0,
            events: 0,
            tls: setup.implicit_tls,
            auth_user: None,
            pending_user: None,
            transaction: None,
            in_data: false,
            last_reply: None,
            spooled: Vec::new(),
        };
        let mut session = setup.session();
        let greeting = checker.drain(&mut session);
        assert_eq!(greeting.len(), 1, "not one greeting: {greeting:?}");
        assert_eq!(greeting[0].code(), 220, "greeting");
        (checker, session)
    }

    /// Every action taken, as text.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// The messages spooled, as stored.
    pub fn spooled(&self) -> &[Vec<u8>] {
        &self.spooled
    }

    /// Whether the session is receiving a message, as the replies so far say.
    pub fn in_data(&self) -> bool {
        self.in_data
    }

    /// The driver dropped the connection (a failed TLS handshake): feed nothing more.
    pub fn dropped(&self) -> bool {
        self.dropped
    }

    /// Gives the session one piece of the stream; returns the replies it sent.
    pub fn feed(&mut self, session: &mut Session, piece: &[u8]) -> Vec<Reply> {
        for &byte in piece {
            if self.last_byte == b'\r' && byte == b'\n' {
                self.line_ends += 1;
            }
            self.last_byte = byte;
        }
        session.receive(piece);
        self.drain(session)
    }

    fn outcome(&mut self) -> u8 {
        let byte = self.setup.outcomes[self.outcome_index % self.setup.outcomes.len()];
        self.outcome_index += 1;
        byte
    }

    /// Takes every action the session has; returns the replies among them.
    fn drain(&mut self, session: &mut Session) -> Vec<Reply> {
        let mut replies = Vec::new();
        while let Some(action) = session.next_action() {
            assert!(!self.closed, "{action:?} after Close");
            if let Some(expected) = self.expect.take() {
                assert!(
                    matches!(&action, Action::Send(reply) if expected.matches(reply)),
                    "expected {expected:?}, got {action:?}"
                );
            }
            if let Action::Send(reply) = &action {
                replies.push(reply.clone());
            }
            self.action(session, action);
            if self.dropped {
                break;
            }
        }
        self.check_state(session);
        replies
    }

    /// What must hold between two reads.
    fn check_state(&self, session: &mut Session) {
        if self.closed {
            assert!(session.is_closed(), "Close sent but the session is open");
            session.receive(b"NOOP\r\n");
            assert!(session.next_action().is_none(), "an action after Close");
        }
        if !self.dropped {
            assert_eq!(session.in_data(), self.in_data, "in_data()");
        }
        // The greeting, one reply per complete line, one closing 421 (too many errors), and one
        // for each shut_down or timed_out. Outcomes answer lines: they add nothing.
        assert!(
            self.replies <= 1 + self.line_ends + 1 + self.events,
            "{} replies for {} lines",
            self.replies,
            self.line_ends
        );
    }

    fn action(&mut self, session: &mut Session, action: Action) {
        match action {
            Action::Send(reply) => self.reply(reply),
            Action::StartTls => self.start_tls(session),
            Action::Authenticate(credentials) => {
                self.log.push(format!(
                    "AUTH {:?} {:?}",
                    credentials.username, credentials.password
                ));
                self.authenticate(session);
            }
            Action::AuthDenied { username, reason } => {
                // Only for the log; the refusal follows.
                self.log.push(format!("AUTH DENIED {username:?} {reason}"));
                assert!(self.tls, "AUTH handled in clear");
                assert!(!reason.is_empty(), "AUTH denied without a reason");
                self.expect = Some(Expected::Refusal);
            }
            Action::AuthorizeMail { user, sender } => {
                self.log.push(format!("AUTHORIZE {user:?} {sender:?}"));
                assert_eq!(Some(&user), self.auth_user.as_ref(), "AuthorizeMail user");
                self.authorize_mail(session);
            }
            Action::AuthorizeHeaderFrom { .. } => {
                panic!("From: checked although the check is off");
            }
            Action::Spool(submission) => {
                self.spool(&submission);
                let (outcome, expected) = match self.outcome() % 4 {
                    3 => (SpoolOutcome::Failed, (452, Status(4, 3, 1))),
                    n => (
                        SpoolOutcome::Queued(format!("{n:016X}")),
                        (250, Status(2, 0, 0)),
                    ),
                };
                self.expect = Some(Expected::Reply(expected.0, expected.1));
                session.spool_finished(outcome);
            }
            Action::Close => {
                self.log.push("CLOSE".into());
                self.closed = true;
            }
        }
    }

    /// A handshake that succeeds or (one outcome in eight) fails, dropping the connection.
    fn start_tls(&mut self, session: &mut Session) {
        self.log.push("STARTTLS".into());
        assert_eq!(
            self.last_reply,
            Some(reply::READY_FOR_TLS),
            "STARTTLS without 220"
        );
        assert!(!self.tls, "STARTTLS on an encrypted connection");
        if self.outcome() % 8 == 7 {
            self.dropped = true;
            return;
        }
        session.tls_established(tls_info());
        self.tls = true;
        self.auth_user = None;
        self.transaction = None;
    }

    /// The credential check's outcome and the code each calls for.
    fn authenticate(&mut self, session: &mut Session) {
        assert!(self.tls, "credentials asked for in clear");
        assert!(self.auth_user.is_none(), "AUTH twice");
        let byte = self.outcome();
        let account = ACCOUNTS[usize::from(byte >> 7)].to_string();
        let (outcome, code, status) = match byte % 8 {
            0..=2 => {
                self.pending_user = Some(account.clone());
                (AuthOutcome::Accepted(account), 235, Status(2, 7, 0))
            }
            3 => {
                let outcome = AuthOutcome::ServedElsewhere {
                    user: account,
                    asked: "box.a.test".to_string(),
                    serving: "box.b.test".to_string(),
                };
                (outcome, 554, Status(5, 7, 1))
            }
            4 => (AuthOutcome::Rejected, 535, Status(5, 7, 8)),
            5 => (AuthOutcome::Unavailable, 454, Status(4, 7, 0)),
            6 => {
                let until = UNIX_EPOCH + Duration::from_secs(u64::from(byte) * 1000);
                (AuthOutcome::Locked(until), 454, Status(4, 7, 0))
            }
            _ => (AuthOutcome::NetworkRefused, 421, Status(4, 7, 0)),
        };
        self.expect = Some(Expected::Reply(code, status));
        session.auth_finished(outcome);
    }

    /// The sender check's outcome (allowed, refused, over its message quota, unavailable) and
    /// the code each calls for.
    fn authorize_mail(&mut self, session: &mut Session) {
        let (decision, allowance, code, status) = match self.outcome() % 5 {
            0 | 1 => (
                SenderDecision::Allowed,
                Allowance::default(),
                250,
                Status(2, 1, 0),
            ),
            2 => (
                SenderDecision::Denied,
                Allowance::default(),
                553,
                Status(5, 7, 1),
            ),
            3 => (
                SenderDecision::Allowed,
                no_messages_left(),
                451,
                Status(4, 7, 1),
            ),
            _ => (
                SenderDecision::Unavailable,
                Allowance::default(),
                451,
                Status(4, 3, 0),
            ),
        };
        self.expect = Some(Expected::Reply(code, status));
        session.mail_checked(decision, allowance);
    }

    fn reply(&mut self, reply: Reply) {
        check_reply(&reply, self.allowed);
        self.log.push(reply.to_wire());
        self.replies += 1;
        let status = reply.status().map(|s| (s.0, s.1, s.2));
        if self.in_data {
            // A message that ends without a Spool action is refused (or the session ends).
            self.in_data = false;
            self.transaction = None;
            assert!(
                matches!(reply.code(), 552 | 554 | 421),
                "a message ended with {reply:?}"
            );
        } else if reply == reply::START_DATA {
            self.start_data();
        } else if reply == reply::AUTH_SUCCEEDED {
            let Some(user) = self.pending_user.take() else {
                panic!("235 without AUTH");
            };
            self.auth_user = Some(user);
        } else if reply == reply::RESET || (reply.code() == 250 && status.is_none()) {
            // RSET, EHLO or HELO: no transaction any more.
            self.transaction = None;
        } else if reply.code() == 250 && status == Some((2, 1, 0)) {
            self.sender_accepted(&reply);
        } else if reply.code() == 250 && status == Some((2, 1, 5)) {
            self.recipient_accepted(&reply);
        }
        self.last_reply = Some(reply);
    }

    fn may_submit(&self) -> bool {
        self.setup.trusted || (self.tls && self.auth_user.is_some())
    }

    fn start_data(&mut self) {
        assert!(self.may_submit(), "354 without TLS and AUTH");
        let Some(transaction) = &self.transaction else {
            panic!("354 outside a transaction");
        };
        assert!(!transaction.recipients.is_empty(), "354 without recipients");
        self.in_data = true;
    }

    fn sender_accepted(&mut self, reply: &Reply) {
        assert!(self.may_submit(), "MAIL accepted without TLS and AUTH");
        let sender = bracketed(reply);
        assert_eq!(reply, &reply::sender_ok(&sender), "250 2.1.0 text");
        self.transaction = Some(Transaction {
            sender,
            recipients: Vec::new(),
        });
    }

    fn recipient_accepted(&mut self, reply: &Reply) {
        assert!(self.may_submit(), "RCPT accepted without TLS and AUTH");
        let recipient = bracketed(reply);
        assert_eq!(reply, &reply::recipient_ok(&recipient), "250 2.1.5 text");
        let max_recipients = self.setup.limits.max_recipients;
        let Some(transaction) = &mut self.transaction else {
            panic!("recipient accepted outside a transaction");
        };
        assert!(
            transaction.recipients.len() < max_recipients,
            "more than {max_recipients} recipients"
        );
        transaction.recipients.push(recipient);
    }

    fn spool(&mut self, submission: &Submission) {
        let envelope = &submission.envelope;
        self.log
            .push(format!("SPOOL {envelope:?} {:?}", submission.message));
        assert!(self.in_data, "Spool without 354");
        self.in_data = false;
        self.spooled.push(submission.message.clone());
        let Some(transaction) = self.transaction.take() else {
            panic!("Spool outside a transaction");
        };
        let limits = &self.setup.limits;
        assert_eq!(
            envelope.from, transaction.sender,
            "sender is not the one of 250 2.1.0"
        );
        assert_eq!(
            envelope.to, transaction.recipients,
            "the envelope's recipients are not the ones that got 250 2.1.5"
        );
        assert!(
            !envelope.to.is_empty() && envelope.to.len() <= limits.max_recipients,
            "{} recipients",
            envelope.to.len()
        );
        assert_eq!(envelope.auth_user, self.auth_user, "envelope's auth_user");
        assert_eq!(envelope.tls.is_some(), self.tls, "envelope's tls");
        assert_eq!(envelope.client_ip, CLIENT, "envelope's client_ip");
        if !self.setup.trusted {
            assert!(
                envelope.tls.is_some() && envelope.auth_user.is_some(),
                "spooled without TLS and AUTH"
            );
        }
        check_dsn(envelope);
        let message = &submission.message;
        assert!(
            message.starts_with(b"Received: from "),
            "no Received: first"
        );
        assert!(
            message.len() <= limits.max_message_size + MAX_PREFIX,
            "a message of {} octets was accepted",
            message.len()
        );
        check_clean_message(message, limits.max_text_line);
    }

    /// The end of the stream: maybe a shutdown or a timeout, which must close the session.
    pub fn finish(&mut self, session: &mut Session) {
        if self.dropped {
            return;
        }
        let was_closed = self.closed;
        let status = match self.setup.end {
            End::Nothing => None,
            End::ShutDown => {
                session.shut_down();
                Some(Status(4, 3, 2))
            }
            End::TimedOut => {
                session.timed_out();
                Some(Status(4, 4, 2))
            }
        };
        self.events += usize::from(status.is_some());
        let replies = self.drain(session);
        let Some(status) = status else {
            return;
        };
        assert!(self.closed, "still open after shut_down/timed_out");
        if !was_closed {
            assert_eq!(
                replies.len(),
                1,
                "replies to shut_down/timed_out: {replies:?}"
            );
            let closing = &replies[0];
            assert_eq!((closing.code(), closing.status()), (421, Some(status)));
            assert!(
                self.log.ends_with(&[closing.to_wire(), "CLOSE".into()]),
                "421 not followed by Close: {:?}",
                self.log
            );
        }
    }
}

/// An account that used up its messages of the hour (recipient quotas are not modelled).
fn no_messages_left() -> Allowance {
    Allowance {
        messages: Some(Remaining {
            left: 0,
            limit: 10,
            resets: UNIX_EPOCH + Duration::from_secs(3600),
        }),
        recipients: None,
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1_3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    }
}

/// The address between the first `<` and the last `>` of a reply's text.
fn bracketed(reply: &Reply) -> String {
    let text = reply.text();
    match (text.find('<'), text.rfind('>')) {
        (Some(start), Some(end)) if start < end => text[start + 1..end].to_string(),
        _ => panic!("no <address> in {reply:?}"),
    }
}

/// Checks one reply on its own: the code, the class of the enhanced status, the wire form.
/// `allowed` may switch off the checks of known problems.
pub fn check_reply(reply: &Reply, allowed: Allowed) {
    let code = reply.code();
    assert!(
        (200..=599).contains(&code),
        "reply code out of range: {reply:?}"
    );
    if let Some(Status(class, _, _)) = reply.status() {
        assert!(
            code / 100 != 3,
            "3xx reply with an enhanced status: {reply:?}"
        );
        assert_eq!(
            u16::from(class),
            code / 100,
            "enhanced status class differs from the code: {reply:?}"
        );
    }
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    assert_eq!(
        reply.to_wire().as_bytes(),
        &wire[..],
        "to_wire and write_to differ (invalid UTF-8?): {reply:?}"
    );
    assert!(
        wire.ends_with(b"\r\n"),
        "reply does not end with CRLF: {reply:?}"
    );
    let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let last = index + 1 == lines.len();
        check_reply_line(reply, index, line, last, allowed);
    }
}

/// One line of a reply on the wire, with its CRLF.
fn check_reply_line(reply: &Reply, index: usize, line: &[u8], last: bool, allowed: Allowed) {
    let Some(line) = line.strip_suffix(b"\r\n") else {
        panic!("reply line {index} does not end with CRLF: {reply:?}");
    };
    assert!(
        !line.contains(&b'\r'),
        "bare CR inside reply line {index}: {reply:?}"
    );
    let separator = if last { b' ' } else { b'-' };
    assert!(
        line.starts_with(reply.code().to_string().as_bytes()) && line.get(3) == Some(&separator),
        "reply line {index} lacks its code and separator: {reply:?}"
    );
    if !allowed(Known::LongReplyLines) {
        assert!(
            line.len() + 2 <= MAX_REPLY_LINE,
            "reply line of {} octets (RFC 5321 §4.5.3.1.5 allows 512): {:?}",
            line.len() + 2,
            String::from_utf8_lossy(line)
        );
    }
    if !allowed(Known::ControlCharactersInReplies) {
        assert!(
            !line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "control character in reply line {index}: {reply:?}"
        );
    }
}

/// The RFC 3461 parameters of a spooled envelope are ones the session may have accepted.
fn check_dsn(envelope: &Envelope) {
    let graphic = |text: &str, lowest: u8| text.bytes().all(|b| (lowest..=b'~').contains(&b));
    assert!(
        matches!(envelope.ret.as_deref(), None | Some("FULL" | "HDRS")),
        "RET {:?}",
        envelope.ret
    );
    if let Some(envid) = &envelope.envid {
        assert!(
            (1..=100).contains(&envid.len()) && graphic(envid, b'!'),
            "ENVID {envid:?}"
        );
    }
    let dsn = &envelope.dsn;
    assert!(
        dsn.is_empty() || dsn.len() == envelope.to.len(),
        "{} DSN entries for {} recipients",
        dsn.len(),
        envelope.to.len()
    );
    assert!(
        dsn.is_empty() || dsn.iter().any(|entry| *entry != RecipientDsn::default()),
        "DSN entries without any parameter"
    );
    for entry in dsn {
        if let Some(notify) = &entry.notify {
            assert!(
                notify == &notify.to_ascii_uppercase() && Notify::parse(notify).is_ok(),
                "NOTIFY {notify:?}"
            );
        }
        if let Some(orcpt) = &entry.orcpt {
            let address = orcpt.split_once(';').map(|(_, address)| address);
            assert!(
                address.is_some_and(|a| !a.is_empty() && a.len() <= 500 && graphic(a, b' ')),
                "ORCPT {orcpt:?}"
            );
        }
    }
}

/// Checks the bytes of a spooled message: every CR is followed by LF, every LF follows a CR,
/// there is no NUL, it ends with CRLF and each line with its CRLF fits `max_line`.
fn check_clean_message(message: &[u8], max_line: usize) {
    for line in message.split_inclusive(|&b| b == b'\n') {
        assert!(
            line.len() <= max_line,
            "a spooled line of {} octets, over {max_line}",
            line.len()
        );
    }
    for (index, &byte) in message.iter().enumerate() {
        match byte {
            0 => panic!("NUL at {index} in a spooled message"),
            b'\r' => assert_eq!(
                message.get(index + 1),
                Some(&b'\n'),
                "bare CR at {index} in a spooled message"
            ),
            b'\n' => assert!(
                index > 0 && message[index - 1] == b'\r',
                "bare LF at {index} in a spooled message"
            ),
            _ => {}
        }
    }
    assert!(
        message.ends_with(b"\r\n"),
        "spooled message does not end with CRLF"
    );
}
