//! A whole `Session` fed arbitrary bytes in arbitrary pieces, with every action answered by an
//! outcome the input chooses, checked reply by reply; then the same bytes in one piece, which
//! must give the same actions up to the first STARTTLS (after it, what was pipelined in the same
//! read is discarded by design, so the two runs may differ).
//!
//! Input layout (16 header bytes, missing ones are 0, then the client's bytes):
//! - byte 0: bit 0 trusted client, bit 1 STARTTLS available, bit 2 implicit TLS, bits 3-4 what
//!   happens after the last byte (0 nothing, 1 shut down, 2 timeout, 3 nothing);
//! - byte 1: `max_errors` = 1 + bits 0-4, `max_recipients` = 1 + bits 5-7;
//! - byte 2: `max_message_size` = 1024 << bits 0-1; bit 2: `max_command_line` 1024 instead of
//!   512; bit 3: `max_text_line` 2000 instead of 1000;
//! - bytes 3-7: outcome choices, used in turn for each action that needs one;
//! - bytes 8-15: lengths of the pieces the bytes arrive in, used in turn (0 means 4096).

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use portcullis::smtp::reply;
use portcullis::smtp::{
    Action, Allowance, AuthOutcome, Limits, Remaining, Reply, SenderDecision, Session, SessionConfig, SpoolOutcome,
    Submission, TlsInfo,
};
use portcullis_fuzz::{check_clean_message, check_reply, split_header};

const HOSTNAME: &str = "mx.example.test";
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
/// What the account store would answer with for a successful login.
const ACCOUNTS: [&str; 2] = ["alice@example.test", "Bob@Example.TEST"];
/// Received: header and the rest of our prefix: far less than this.
const MAX_PREFIX: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let (header, stream) = split_header::<16>(data);
    let setup = Setup::new(&header);
    let in_pieces = run(&setup, stream, true);
    let in_one_piece = run(&setup, stream, false);
    let until_starttls = |log: &[String]| {
        log.iter()
            .position(|entry| entry == "STARTTLS")
            .map_or(log.len(), |at| at + 1)
    };
    let (a, b) = (until_starttls(&in_pieces), until_starttls(&in_one_piece));
    assert_eq!(
        in_pieces[..a],
        in_one_piece[..b],
        "the actions depend on how the bytes were split"
    );
});

struct Setup {
    config: Arc<SessionConfig>,
    trusted: bool,
    implicit_tls: bool,
    end: u8,
    outcomes: [u8; 5],
    pieces: [u8; 8],
}

impl Setup {
    fn new(header: &[u8; 16]) -> Setup {
        let limits = Limits {
            max_errors: 1 + u32::from(header[1] & 31),
            max_recipients: 1 + usize::from(header[1] >> 5),
            max_message_size: 1024 << (header[2] & 3),
            max_command_line: if header[2] & 4 != 0 { 1024 } else { 512 },
            max_text_line: if header[2] & 8 != 0 { 2000 } else { 1000 },
            ..Limits::default()
        };
        Setup {
            config: Arc::new(SessionConfig {
                hostname: HOSTNAME.into(),
                starttls_available: header[0] & 2 != 0,
                limits,
                check_header_from: false,
            clock: || UNIX_EPOCH,
            }),
            trusted: header[0] & 1 != 0,
            implicit_tls: header[0] & 4 != 0,
            end: (header[0] >> 3) & 3,
            outcomes: header[3..8].try_into().unwrap(),
            pieces: header[8..16].try_into().unwrap(),
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

/// Runs one session; returns the actions as text.
fn run(setup: &Setup, stream: &[u8], in_pieces: bool) -> Vec<String> {
    let tls = setup.implicit_tls.then(tls_info);
    let mut session = Session::new(setup.config.clone(), CLIENT, setup.trusted, tls.clone());
    let mut checker = Checker::new(setup, tls.is_some());
    checker.drain(&mut session);
    let mut rest = stream;
    let mut piece_index = 0;
    while !rest.is_empty() && !checker.dropped {
        let length = if in_pieces {
            match setup.pieces[piece_index % setup.pieces.len()] {
                0 => 4096,
                n => usize::from(n),
            }
        } else {
            rest.len()
        };
        piece_index += 1;
        let (piece, after) = rest.split_at(length.min(rest.len()));
        rest = after;
        checker.received(piece);
        session.receive(piece);
        checker.drain(&mut session);
    }
    if !checker.dropped {
        match setup.end {
            1 => {
                checker.extra_replies += 1;
                session.shut_down();
            }
            2 => {
                checker.extra_replies += 1;
                session.timed_out();
            }
            _ => {}
        }
        let closed_before = checker.closed;
        checker.drain(&mut session);
        if setup.end == 1 || setup.end == 2 {
            assert!(checker.closed, "shut_down/timed_out must close");
            if !closed_before {
                let n = checker.log.len();
                assert!(
                    checker.log[n - 2].starts_with("421 4."),
                    "{:?}",
                    checker.log
                );
            }
        }
    }
    checker.log
}

struct Transaction {
    sender: String,
    recipients: Vec<String>,
}

struct Checker<'a> {
    setup: &'a Setup,
    log: Vec<String>,
    /// The session said Close.
    closed: bool,
    /// The handshake "failed": the driver drops the connection.
    dropped: bool,
    outcome_index: usize,
    /// The range of codes of the reply the session must send next, after an outcome.
    expect: Option<(u16, u16)>,
    replies: usize,
    /// CRLF sequences received (an upper bound on complete lines).
    line_ends: usize,
    last_byte: u8,
    /// Replies that answer an outcome or an event rather than a line.
    extra_replies: usize,
    tls: bool,
    auth_user: Option<String>,
    pending_user: Option<String>,
    transaction: Option<Transaction>,
    in_data: bool,
    last_reply: Option<Reply>,
}

impl<'a> Checker<'a> {
    fn new(setup: &'a Setup, tls: bool) -> Checker<'a> {
        Checker {
            setup,
            log: Vec::new(),
            closed: false,
            dropped: false,
            outcome_index: 0,
            expect: None,
            replies: 0,
            line_ends: 0,
            last_byte: 0,
            extra_replies: 0,
            tls,
            auth_user: None,
            pending_user: None,
            transaction: None,
            in_data: false,
            last_reply: None,
        }
    }

    fn received(&mut self, piece: &[u8]) {
        for &byte in piece {
            if self.last_byte == b'\r' && byte == b'\n' {
                self.line_ends += 1;
            }
            self.last_byte = byte;
        }
    }

    fn outcome(&mut self) -> u8 {
        let byte = self.setup.outcomes[self.outcome_index % self.setup.outcomes.len()];
        self.outcome_index += 1;
        byte
    }

    fn drain(&mut self, session: &mut Session) {
        while let Some(action) = session.next_action() {
            assert!(!self.closed, "{action:?} after Close");
            if let Some((low, high)) = self.expect.take() {
                assert!(
                    matches!(&action, Action::Send(reply) if (low..=high).contains(&reply.code())),
                    "expected a reply in {low}..={high}, got {action:?}"
                );
            }
            self.action(session, action);
            if self.dropped {
                return;
            }
        }
        if self.closed {
            assert!(session.is_closed());
            session.receive(b"NOOP\r\n");
            assert!(session.next_action().is_none(), "an action after Close");
        }
        assert_eq!(session.in_data(), self.in_data, "in_data()");
        assert!(
            self.replies <= 1 + self.line_ends + self.extra_replies + 1,
            "{} replies for {} lines and {} outcomes",
            self.replies,
            self.line_ends,
            self.extra_replies
        );
    }

    fn action(&mut self, session: &mut Session, action: Action) {
        match action {
            Action::Send(reply) => self.reply(reply),
            Action::StartTls => {
                self.log.push("STARTTLS".into());
                assert_eq!(self.last_reply, Some(reply::READY_FOR_TLS));
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
            Action::Authenticate(credentials) => {
                self.log.push(format!(
                    "AUTH {:?} {:?}",
                    credentials.username, credentials.password
                ));
                assert!(self.tls, "credentials in clear");
                assert!(self.auth_user.is_none(), "AUTH twice");
                let byte = self.outcome();
                let (outcome, code) = match byte % 8 {
                    0..=2 => {
                        let user = ACCOUNTS[usize::from(byte >> 7)].to_string();
                        self.pending_user = Some(user.clone());
                        (AuthOutcome::Accepted(user), 235)
                    }
                    3 => {
                        let outcome = AuthOutcome::ServedElsewhere {
                            user: ACCOUNTS[usize::from(byte >> 7)].to_string(),
                            asked: "box.a.test".to_string(),
                            serving: "box.b.test".to_string(),
                        };
                        (outcome, 554)
                    }
                    4 => (AuthOutcome::Rejected, 535),
                    5 => (AuthOutcome::Unavailable, 454),
                    6 => {
                        let until = UNIX_EPOCH + Duration::from_secs(u64::from(byte) * 1000);
                        (AuthOutcome::Locked(until), 454)
                    }
                    _ => (AuthOutcome::NetworkRefused, 421),
                };
                self.expect = Some((code, code));
                self.extra_replies += 1;
                session.auth_finished(outcome);
            }
            Action::AuthDenied { username, reason } => {
                // Only for the log; the refusal follows.
                self.log.push(format!("AUTH DENIED {username:?} {reason}"));
                assert!(self.tls, "AUTH handled in clear");
                assert!(!reason.is_empty());
                self.expect = Some((500, 599));
            }
            Action::AuthorizeMail { user, sender } => {
                self.log.push(format!("AUTHORIZE {user:?} {sender:?}"));
                assert_eq!(Some(&user), self.auth_user.as_ref());
                let (decision, allowance, code) = match self.outcome() % 5 {
                    0 | 1 => (SenderDecision::Allowed, Allowance::default(), 250),
                    2 => (SenderDecision::Denied, Allowance::default(), 553),
                    3 => (SenderDecision::Allowed, no_messages_left(), 451),
                    _ => (SenderDecision::Unavailable, Allowance::default(), 451),
                };
                self.expect = Some((code, code));
                self.extra_replies += 1;
                session.mail_checked(decision, allowance);
            }
            Action::AuthorizeHeaderFrom { .. } => {
                panic!("From: checked although the check is off");
            }
            Action::Spool(submission) => {
                self.spool(&submission);
                let (outcome, code) = match self.outcome() % 4 {
                    3 => (SpoolOutcome::Failed, 452),
                    n => (SpoolOutcome::Queued(format!("{n:016X}")), 250),
                };
                self.expect = Some((code, code));
                self.extra_replies += 1;
                session.spool_finished(outcome);
            }
            Action::Close => {
                self.log.push("CLOSE".into());
                self.closed = true;
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        check_reply(&reply);
        self.log.push(reply.to_wire());
        self.replies += 1;
        let limits = &self.setup.config.limits;
        let may_submit = self.setup.trusted || (self.tls && self.auth_user.is_some());
        let status = reply.status().map(|s| (s.0, s.1, s.2));
        if self.in_data {
            // The end of a message without a Spool action: a refusal (or the session ends).
            self.in_data = false;
            self.transaction = None;
            assert!(
                matches!(reply.code(), 552 | 554 | 421),
                "a message ended with {reply:?}"
            );
        } else if reply == reply::START_DATA {
            assert!(may_submit, "354 without TLS and AUTH");
            let transaction = self
                .transaction
                .as_ref()
                .expect("354 outside a transaction");
            assert!(!transaction.recipients.is_empty(), "354 without recipients");
            self.in_data = true;
        } else if reply == reply::AUTH_SUCCEEDED {
            self.auth_user = Some(self.pending_user.take().expect("235 without AUTH"));
        } else if reply == reply::RESET {
            self.transaction = None;
        } else if reply.code() == 250 && status.is_none() {
            // EHLO or HELO: a new session state, no transaction.
            self.transaction = None;
        } else if reply.code() == 250 && status == Some((2, 1, 0)) {
            assert!(may_submit, "MAIL accepted without TLS and AUTH");
            let sender = bracketed(&reply);
            assert_eq!(reply, reply::sender_ok(&sender));
            self.transaction = Some(Transaction {
                sender,
                recipients: Vec::new(),
            });
        } else if reply.code() == 250 && status == Some((2, 1, 5)) {
            assert!(may_submit, "RCPT accepted without TLS and AUTH");
            let recipient = bracketed(&reply);
            assert_eq!(reply, reply::recipient_ok(&recipient));
            let transaction = self
                .transaction
                .as_mut()
                .expect("recipient accepted outside a transaction");
            assert!(
                transaction.recipients.len() < limits.max_recipients,
                "more than {} recipients",
                limits.max_recipients
            );
            transaction.recipients.push(recipient);
        }
        self.last_reply = Some(reply);
    }

    fn spool(&mut self, submission: &Submission) {
        let limits = &self.setup.config.limits;
        let envelope = &submission.envelope;
        self.log
            .push(format!("SPOOL {envelope:?} {:?}", submission.message));
        assert!(self.in_data, "Spool without 354");
        self.in_data = false;
        let transaction = self
            .transaction
            .take()
            .expect("Spool outside a transaction");
        assert_eq!(envelope.from, transaction.sender);
        assert_eq!(
            envelope.to, transaction.recipients,
            "the envelope's recipients are not the ones that got 250 2.1.5"
        );
        assert!(!envelope.to.is_empty() && envelope.to.len() <= limits.max_recipients);
        assert_eq!(envelope.auth_user, self.auth_user);
        assert_eq!(envelope.tls.is_some(), self.tls);
        assert_eq!(envelope.client_ip, CLIENT);
        if !self.setup.trusted {
            assert!(envelope.tls.is_some() && envelope.auth_user.is_some());
        }
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
        check_clean_message(message);
    }
}

/// The address between the first `<` and the last `>` of a reply's text.
fn bracketed(reply: &Reply) -> String {
    let text = reply.text();
    let start = text.find('<').expect("no <") + 1;
    let end = text.rfind('>').expect("no >");
    text[start..end].to_string()
}
