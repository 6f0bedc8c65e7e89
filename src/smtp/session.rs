//! The submission session state machine (RFC 5321, 3207, 4954, 6409), without I/O.
//!
//! The network layer feeds received bytes in with [`Session::receive`] and asks for
//! [`Session::next_action`] until it returns `None` (more input needed). Actions that need the
//! outside world (TLS handshake, credential check, spooling) pause the session until the matching
//! `*_finished` call, so replies to pipelined commands always come out in order.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::address::Mailbox;
use super::budget::{MemoryBudget, Reservation};
use super::command::{self, Body, Command, CommandCounts, MailFrom, RcptTo, Verb};
use super::data::{BareLineEndings, DataReceiver, Defect, Progress};
use super::header_from::{self, HeaderFrom};
use super::reply::{self, Reply};
use super::sasl::{self, Credentials, Step};
use crate::timefmt;

/// Limits of one session. Line limits include the CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub max_command_line: usize,
    pub max_text_line: usize,
    pub max_auth_line: usize,
    /// What a line ending other than CRLF inside DATA does.
    pub bare_line_endings: BareLineEndings,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 20,
            max_command_line: 512, // RFC 5321 §4.5.3.1.4
            max_text_line: 1000,   // §4.5.3.1.6
            max_auth_line: 12_288, // RFC 4954 §4
            bare_line_endings: BareLineEndings::Normalize,
        }
    }
}

/// What MAIL parameters may add to the 512-octet command line: SIZE 26 (RFC 1870 §3), AUTH=
/// 500 (RFC 4954 §3), SMTPUTF8 10 (RFC 6531 §3.4), RET and ENVID 110 (RFC 3461).
const MAIL_PARAMETER_ALLOWANCE: usize = 26 + 500 + 10 + 110;

/// What NOTIFY and ORCPT may add to a RCPT command line (RFC 3461).
const RCPT_PARAMETER_ALLOWANCE: usize = 500;

// The longest line read is a MAIL line; nothing else may be longer.
const _: () = assert!(RCPT_PARAMETER_ALLOWANCE <= MAIL_PARAMETER_ALLOWANCE);

/// Commands that move no mail (Postfix's "junk commands"). Past this many in one session
/// without a MAIL, each further one counts as an error, so a client cannot idle forever on NOOP.
const JUNK_COMMAND_LIMIT: u32 = 100;

/// What a listener tells each of its sessions.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    /// STARTTLS can be offered (the listener has a certificate and is not implicit TLS).
    pub starttls_available: bool,
    pub limits: Limits,
    /// The addresses in From: must be ones the authenticated user may send as (after DATA).
    pub check_header_from: bool,
    pub clock: fn() -> SystemTime,
    /// Shared by all listeners: what every session's message data may occupy together.
    pub memory: Arc<MemoryBudget>,
    /// The ports named in the 530 that asks for STARTTLS.
    pub ports: reply::Ports,
}

/// The negotiated TLS parameters, recorded in the envelope and the Received header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// Everything known about a message besides its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse-path; empty for the null sender `<>`.
    pub from: String,
    pub to: Vec<String>,
    pub auth_user: Option<String>,
    pub client_ip: IpAddr,
    pub client_helo: String,
    pub tls: Option<TlsInfo>,
    pub received_at: String,
    pub smtputf8: bool,
    pub eight_bit_mime: bool,
    /// RFC 3461 `RET=` (`FULL` or `HDRS`), when the client gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// RFC 3461 `ENVID=`, xtext-decoded, when the client gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// RFC 3461 recipient parameters: empty when no recipient had any, else one entry per
    /// recipient of `to`, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dsn: Vec<RecipientDsn>,
    /// Set on a copy the queue manager made of a long-deferred message, so that the space of
    /// the segment holding the original can be reclaimed: the original's queue id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
}

/// A recipient's RFC 3461 parameters as the client gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientDsn {
    /// `NOTIFY=` upper-cased, e.g. `SUCCESS,FAILURE` or `NEVER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
    /// `ORCPT=` xtext-decoded, with its address type: `rfc822;alice@example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// A complete message handed to the spool.
#[derive(Debug)]
pub struct Submission {
    pub envelope: Envelope,
    /// The message as it goes to disk: our Received header, then the client's bytes.
    pub message: Vec<u8>,
}

#[derive(Debug)]
pub enum Action {
    Send(Reply),
    /// Flush the replies, then run the TLS handshake and call [`Session::tls_established`].
    StartTls,
    /// Check the credentials and call [`Session::auth_finished`].
    Authenticate(Credentials),
    /// An AUTH refused by rule before any credentials check (a mechanism not offered, acting as
    /// another user): nothing to do but log it like other failed logins. The reply follows.
    AuthDenied {
        username: String,
        reason: &'static str,
    },
    /// May this authenticated user start a message from this sender (empty: the null sender,
    /// which needs no approval), and what may it still send under its quotas? Call
    /// [`Session::mail_checked`].
    AuthorizeMail {
        user: String,
        sender: String,
    },
    /// May this authenticated user send a message whose From: header holds these addresses?
    /// Call [`Session::header_from_checked`].
    AuthorizeHeaderFrom {
        user: String,
        addresses: Vec<String>,
    },
    /// Store durably and call [`Session::spool_finished`].
    Spool(Box<Submission>),
    /// Flush the replies and close the connection.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated; carries the canonical account name.
    Accepted(String),
    Rejected,
    Unavailable,
    /// Too many failed logins for this user name from the client's network: refused without a
    /// password check until then.
    Locked(SystemTime),
    /// Too many failed logins from the client's network for many user names: refused, and the
    /// session is closed.
    NetworkRefused,
    /// The password was right, but the account's domain is served by the host name `serving`,
    /// not by `asked`, the one the client connected to. The session stays unauthenticated.
    ServedElsewhere {
        user: String,
        asked: String,
        serving: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderDecision {
    Allowed,
    Denied,
    /// The policy's data could not be read; the client should retry later.
    Unavailable,
}

/// What is left of one quota of the authenticated account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    pub left: u64,
    pub limit: u64,
    /// When the quota's window ends and the whole limit is available again.
    pub resets: SystemTime,
}

/// What the authenticated account may still send; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allowance {
    /// Messages this hour.
    pub messages: Option<Remaining>,
    /// Recipients today.
    pub recipients: Option<Remaining>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFromDecision {
    Allowed,
    /// This address of the From: header is not one the user may send as.
    Denied(String),
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolOutcome {
    Queued(String),
    Failed,
}

enum Mode {
    Command,
    /// MAIL FROM waiting for the sender policy's decision.
    AuthorizingMail(Box<MailFrom>),
    /// A received message waiting for the decision on its From: header.
    AuthorizingHeaderFrom(Box<Submission>),
    Auth(sasl::Exchange),
    Data(Box<DataReceiver>),
    /// Waiting for the outcome of an action; input stays buffered.
    Paused,
    Closed,
}

struct Transaction {
    mail: MailFrom,
    recipients: Vec<Mailbox>,
    /// The RFC 3461 parameters of each recipient, in the order of `recipients`.
    recipient_dsn: Vec<RecipientDsn>,
    /// Recipients the account may still send to today.
    recipient_quota: Option<Remaining>,
    /// Held from DATA until the message is spooled or refused, with the transaction.
    memory: Option<Reservation>,
}

pub struct Session {
    config: Arc<SessionConfig>,
    client_ip: IpAddr,
    /// Extra trust for clients in the listener's trusted networks: they may submit without TLS
    /// and without AUTH (but never send AUTH in clear).
    trusted: bool,
    input: Vec<u8>,
    consumed: usize,
    /// Inside an over-long line: dropping bytes until its CRLF.
    discarding_line: bool,
    outbox: VecDeque<Action>,
    mode: Mode,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<TlsInfo>,
    auth_user: Option<String>,
    transaction: Option<Transaction>,
    errors: u32,
    junk_commands: u32,
    counts: CommandCounts,
    /// What the replies being sent answer, for the log: a command's verb, or `CONNECT`,
    /// `TIMEOUT` and `SHUTDOWN` for the replies the server sends unasked.
    answering: &'static str,
}

impl Session {
    /// A new session; `tls` is `Some` on an implicit-TLS listener. The greeting is the first action.
    pub fn new(
        config: Arc<SessionConfig>,
        client_ip: IpAddr,
        trusted: bool,
        tls: Option<TlsInfo>,
    ) -> Session {
        let mut session = Session {
            client_ip,
            trusted,
            input: Vec::new(),
            consumed: 0,
            discarding_line: false,
            outbox: VecDeque::new(),
            mode: Mode::Command,
            helo: None,
            esmtp: false,
            tls,
            auth_user: None,
            transaction: None,
            errors: 0,
            junk_commands: 0,
            counts: CommandCounts::default(),
            answering: "CONNECT",
            config,
        };
        session.send(reply::greeting(&session.config.hostname));
        session
    }

    /// Appends bytes read from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        if matches!(self.mode, Mode::Closed) {
            return;
        }
        self.input.drain(..self.consumed);
        self.consumed = 0;
        self.input.extend_from_slice(bytes);
    }

    /// The next thing to do, or `None` when the session needs more input (or an outcome).
    pub fn next_action(&mut self) -> Option<Action> {
        while self.outbox.is_empty() && self.process_input() {}
        self.outbox.pop_front()
    }

    /// Whether the client is in the middle of sending a message (timeouts and shutdown differ).
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data(_))
    }

    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }

    /// The commands received so far, by verb (a STARTTLS does not reset them).
    pub fn command_counts(&self) -> &CommandCounts {
        &self.counts
    }

    /// What the replies now being sent answer: the verb of the command that produced them, or
    /// `CONNECT`, `TIMEOUT` or `SHUTDOWN`. Read it as each reply is taken from
    /// [`Session::next_action`].
    pub fn answering(&self) -> &'static str {
        self.answering
    }

    /// The TLS parameters, once TLS is established.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The handshake after STARTTLS succeeded: RFC 3207 §4.2 says to forget everything learned
    /// before it.
    pub fn tls_established(&mut self, tls: TlsInfo) {
        self.tls = Some(tls);
        self.helo = None;
        self.esmtp = false;
        self.auth_user = None;
        self.transaction = None;
        self.mode = Mode::Command;
    }

    pub fn auth_finished(&mut self, outcome: AuthOutcome) {
        self.mode = Mode::Command;
        match outcome {
            AuthOutcome::Accepted(user) => {
                self.auth_user = Some(user);
                self.send(reply::AUTH_SUCCEEDED);
            }
            AuthOutcome::Rejected => self.send(reply::AUTH_FAILED),
            AuthOutcome::Unavailable => self.send(reply::AUTH_UNAVAILABLE),
            AuthOutcome::Locked(until) => {
                self.send(reply::logins_locked(&timefmt::rfc3339(until)));
                // A temporary reply, but a client hammering a locked login must not keep its
                // connection forever: it counts towards the error limit like a 535.
                self.count_error();
            }
            AuthOutcome::NetworkRefused => self.close_with(reply::LOGINS_REFUSED_FROM_NETWORK),
            AuthOutcome::ServedElsewhere {
                user,
                asked,
                serving,
            } => self.send(reply::served_elsewhere(&user, &serving, &asked)),
        }
    }

    pub fn spool_finished(&mut self, outcome: SpoolOutcome) {
        self.mode = Mode::Command;
        self.transaction = None;
        match outcome {
            SpoolOutcome::Queued(id) => self.send(reply::queued(&id)),
            SpoolOutcome::Failed => self.send(reply::SPOOL_FAILED),
        }
    }

    /// No complete command arrived in time.
    pub fn timed_out(&mut self) {
        self.answering = "TIMEOUT";
        self.close_with(reply::IDLE_TIMEOUT);
    }

    /// The server is stopping; called between commands, never in the middle of DATA.
    pub fn shut_down(&mut self) {
        self.answering = "SHUTDOWN";
        self.close_with(reply::SHUTTING_DOWN);
    }

    fn close_with(&mut self, reply: Reply) {
        if !self.is_closed() {
            self.outbox.push_back(Action::Send(reply));
            self.close();
        }
    }

    fn close(&mut self) {
        self.outbox.push_back(Action::Close);
        self.mode = Mode::Closed;
        self.input.clear();
        self.consumed = 0;
    }

    /// Queues a reply, counting 5xx replies towards the error limit.
    fn send(&mut self, reply: Reply) {
        let permanent_error = reply.code() >= 500;
        self.outbox.push_back(Action::Send(reply));
        if permanent_error {
            self.count_error();
        }
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.config.limits.max_errors {
            self.close_with(reply::TOO_MANY_ERRORS);
        }
    }

    /// Handles one unit of buffered input; false when nothing more can be done without input.
    fn process_input(&mut self) -> bool {
        match self.mode {
            Mode::Command | Mode::Auth(_) => self.process_line(),
            Mode::Data(_) => self.process_data(),
            Mode::AuthorizingMail(_)
            | Mode::AuthorizingHeaderFrom(_)
            | Mode::Paused
            | Mode::Closed => false,
        }
    }

    fn process_line(&mut self) -> bool {
        let in_auth = matches!(self.mode, Mode::Auth(_));
        let limit = if in_auth {
            self.config.limits.max_auth_line
        } else {
            self.config.limits.max_command_line + MAIL_PARAMETER_ALLOWANCE
        };
        let pending = &self.input[self.consumed..];
        let Some(end) = pending.windows(2).position(|w| w == b"\r\n") else {
            if pending.len() >= limit {
                // Keep a trailing CR: its LF may come in the next read.
                let keep = usize::from(pending.last() == Some(&b'\r'));
                self.consumed = self.input.len() - keep;
                self.discarding_line = true;
            }
            return false;
        };
        let line_start = self.consumed;
        self.consumed += end + 2;
        let line = line_start..line_start + end;
        if !in_auth {
            let verb = if self.discarding_line {
                Verb::Unknown
            } else {
                Verb::of_line(&self.input[line.clone()])
            };
            self.counts.record(verb);
            self.answering = verb.name();
        }
        // Only MAIL and RCPT get a parameter allowance; the limit the client is told is the
        // command line limit itself.
        let over_command_limit = !in_auth
            && end + 2
                > self.config.limits.max_command_line
                    + parameter_allowance(&self.input[line.clone()]);
        if std::mem::take(&mut self.discarding_line) || end + 2 > limit || over_command_limit {
            self.line_too_long(in_auth);
            return true;
        }
        // Parsing yields owned values, so the line is read in place rather than copied.
        match std::mem::replace(&mut self.mode, Mode::Command) {
            Mode::Auth(mut exchange) => {
                let step = exchange.respond(&self.input[line]);
                self.auth_step(Some(exchange), step);
            }
            _ => match Command::parse(&self.input[line]) {
                Ok(command) => self.handle(command),
                Err(reply) => self.send(reply),
            },
        }
        true
    }

    fn line_too_long(&mut self, in_auth: bool) {
        if in_auth {
            self.mode = Mode::Command;
            self.send(reply::AUTH_LINE_TOO_LONG);
        } else {
            self.send(reply::line_too_long(self.config.limits.max_command_line));
        }
    }

    fn process_data(&mut self) -> bool {
        let Mode::Data(receiver) = &mut self.mode else {
            return false;
        };
        match receiver.feed(&self.input[self.consumed..]) {
            Progress::NeedMore => {
                self.consumed = self.input.len();
                false
            }
            Progress::Complete(used) => {
                self.consumed += used;
                let Mode::Data(receiver) = std::mem::replace(&mut self.mode, Mode::Command) else {
                    unreachable!("matched Data above");
                };
                self.end_of_data(receiver.finish());
                true
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let junk = matches!(
            command,
            Command::Noop | Command::Rset | Command::Vrfy | Command::Expn | Command::Help(_)
        );
        if junk && self.junk_ends_session() {
            return;
        }
        match command {
            Command::Ehlo(client) => self.ehlo(client),
            Command::Helo(client) => self.helo(client),
            Command::StartTls => self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(&mechanism, initial_response.as_deref()),
            Command::Mail(argument) => self.mail(&argument),
            Command::Rcpt(argument) => self.rcpt(&argument),
            Command::Data => self.data(),
            Command::Rset => {
                self.transaction = None;
                self.send(reply::RESET);
            }
            Command::Noop => self.send(reply::OK),
            Command::Quit => {
                let goodbye = reply::closing(&self.config.hostname);
                self.close_with(goodbye);
            }
            Command::Vrfy => self.vrfy(),
            Command::Expn => self.send(reply::EXPN_DISABLED),
            Command::Help(topic) => self.send(reply::help(topic.as_deref())),
        }
    }

    /// Counts a junk command; true when that reached the error limit and closed the session.
    fn junk_ends_session(&mut self) -> bool {
        self.junk_commands += 1;
        if self.junk_commands > JUNK_COMMAND_LIMIT {
            self.count_error();
        }
        self.is_closed()
    }

    fn ehlo(&mut self, client: String) {
        let limits = &self.config.limits;
        let mut extensions = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", limits.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "DSN".to_string(),
            "HELP".to_string(),
        ];
        if self.tls.is_none() && self.config.starttls_available {
            extensions.push("STARTTLS".to_string());
        }
        if self.tls.is_some() {
            // Keep in step with `auth_offered`.
            extensions.push("AUTH PLAIN LOGIN".to_string());
        }
        let reply = reply::ehlo(&self.config.hostname, &client, &extensions);
        self.transaction = None;
        self.helo = Some(client);
        self.esmtp = true;
        self.send(reply);
    }

    /// EHLO advertised AUTH on this session: after EHLO (not HELO), once TLS is on.
    fn auth_offered(&self) -> bool {
        self.esmtp && self.tls.is_some()
    }

    fn helo(&mut self, client: String) {
        let reply = reply::helo(&self.config.hostname, &client);
        self.transaction = None;
        self.helo = Some(client);
        self.esmtp = false;
        self.send(reply);
    }

    fn starttls(&mut self) {
        if self.tls.is_some() {
            return self.send(reply::ALREADY_TLS);
        }
        if !self.config.starttls_available {
            return self.send(reply::TLS_UNAVAILABLE);
        }
        self.send(reply::READY_FOR_TLS);
        // RFC 3207 §5 (and CVE-2011-0411): whatever the client pipelined after STARTTLS was
        // sent in clear and must never be read as if it came over TLS.
        self.input.clear();
        self.consumed = 0;
        self.mode = Mode::Paused;
        self.outbox.push_back(Action::StartTls);
    }

    /// Commands that carry mail or credentials need TLS on a submission listener (RFC 3207 §4).
    fn needs_tls(&self) -> bool {
        self.tls.is_none() && !self.trusted
    }

    fn needs_auth(&self) -> bool {
        self.auth_user.is_none() && !self.trusted
    }

    /// The refusal of a command that needs TLS and a login, if one is missing.
    fn access_refusal(&self) -> Option<Reply> {
        if self.needs_tls() {
            Some(reply::must_starttls(self.config.ports))
        } else if self.needs_auth() {
            Some(reply::AUTH_REQUIRED)
        } else {
            None
        }
    }

    fn auth(&mut self, mechanism: &str, initial_response: Option<&str>) {
        let refusal = if self.tls.is_none() {
            Some(reply::must_starttls(self.config.ports))
        } else if self.helo.is_none() {
            Some(reply::EHLO_FIRST)
        } else if !self.esmtp {
            Some(reply::EHLO_NOT_HELO)
        } else if self.auth_user.is_some() {
            Some(reply::AUTH_ALREADY_DONE)
        } else if self.transaction.is_some() {
            Some(reply::AUTH_IN_TRANSACTION)
        } else {
            None
        };
        if let Some(reply) = refusal {
            return self.send(reply);
        }
        let (exchange, step) = sasl::Exchange::start(mechanism, initial_response);
        self.auth_step(exchange, step);
    }

    fn auth_step(&mut self, exchange: Option<sasl::Exchange>, step: Step) {
        match (step, exchange) {
            (Step::Challenge(challenge), Some(exchange)) => {
                self.mode = Mode::Auth(exchange);
                self.send(challenge);
            }
            (Step::Verify(credentials), _) => {
                self.mode = Mode::Paused;
                self.outbox.push_back(Action::Authenticate(credentials));
            }
            (Step::Refuse(reply), _) => self.send(reply),
            (
                Step::Deny {
                    reply,
                    username,
                    reason,
                },
                _,
            ) => {
                self.outbox
                    .push_back(Action::AuthDenied { username, reason });
                self.send(reply);
            }
            (Step::Challenge(_), None) => unreachable!("a challenge always keeps its exchange"),
        }
    }

    fn mail(&mut self, argument: &str) {
        let refusal = if self.needs_tls() {
            Some(reply::must_starttls(self.config.ports))
        } else if self.helo.is_none() {
            Some(reply::EHLO_FIRST)
        } else if self.needs_auth() {
            Some(reply::AUTH_REQUIRED)
        } else if self.transaction.is_some() {
            Some(reply::NESTED_MAIL)
        } else {
            None
        };
        if let Some(reply) = refusal {
            return self.send(reply);
        }
        let mail = match command::parse_mail_from(argument) {
            Ok(mail) => mail,
            Err(reply) => return self.send(reply),
        };
        if let Some(parameter) = mail.extension_parameter().filter(|_| !self.esmtp) {
            return self.send(reply::parameter_needs_ehlo(parameter));
        }
        // RFC 4954 §5: AUTH= is ignored only where AUTH is supported; elsewhere it is 555.
        if mail.auth && !self.auth_offered() {
            return self.send(reply::AUTH_PARAMETER_NOT_OFFERED);
        }
        if !mail.smtputf8 && mail.sender.as_ref().is_some_and(|s| !s.is_ascii()) {
            return self.send(reply::NON_ASCII_WITHOUT_SMTPUTF8);
        }
        let limit = self.config.limits.max_message_size;
        if mail.declared_size.is_some_and(|size| size > limit as u64) {
            return self.send(reply::message_too_big(limit as u64));
        }
        match &self.auth_user {
            // RFC 6409 §6.1: an authenticated user's sender address needs the policy's approval,
            // and its quotas decide whether it may send at all right now.
            Some(user) => {
                let user = user.clone();
                let sender = mail.sender.as_ref().map_or("", Mailbox::as_str).to_string();
                self.mode = Mode::AuthorizingMail(Box::new(mail));
                self.outbox
                    .push_back(Action::AuthorizeMail { user, sender });
            }
            None => self.open_transaction(mail, None),
        }
    }

    /// The outcome of [`Action::AuthorizeMail`]. The allowance matters only for an allowed
    /// sender.
    pub fn mail_checked(&mut self, decision: SenderDecision, allowance: Allowance) {
        let Mode::AuthorizingMail(mail) = std::mem::replace(&mut self.mode, Mode::Command) else {
            return;
        };
        let user = self.auth_user.as_deref().unwrap_or("");
        let refusal = match decision {
            SenderDecision::Allowed => match allowance.messages {
                Some(quota) if quota.left == 0 => {
                    crate::metrics::global().quota_refused("messages_per_hour");
                    reply::message_quota_reached(user, quota.limit, &timefmt::rfc3339(quota.resets))
                }
                _ => return self.open_transaction(*mail, allowance.recipients),
            },
            SenderDecision::Denied => {
                let sender = mail.sender.as_ref().map_or("", Mailbox::as_str);
                reply::sender_not_owned(sender, user)
            }
            SenderDecision::Unavailable => reply::SENDER_CHECK_UNAVAILABLE,
        };
        self.send(refusal);
    }

    fn open_transaction(&mut self, mail: MailFrom, recipient_quota: Option<Remaining>) {
        let reply = reply::sender_ok(mail.sender.as_ref().map_or("", Mailbox::as_str));
        self.transaction = Some(Transaction {
            mail,
            recipients: Vec::new(),
            recipient_dsn: Vec::new(),
            recipient_quota,
            memory: None,
        });
        self.junk_commands = 0;
        self.send(reply);
    }

    fn rcpt(&mut self, argument: &str) {
        if let Some(refusal) = self.access_refusal() {
            return self.send(refusal);
        }
        if self.transaction.is_none() {
            return self.send(reply::RCPT_BEFORE_MAIL);
        }
        let reply = match command::parse_rcpt_to(argument, &self.config.hostname) {
            Ok(rcpt) => self.add_recipient(rcpt),
            Err(reply) => reply,
        };
        self.send(reply);
    }

    /// The reply to a well-formed RCPT, which adds the recipient unless a rule refuses it.
    fn add_recipient(&mut self, rcpt: RcptTo) -> Reply {
        let max_recipients = self.config.limits.max_recipients;
        let Some(transaction) = &mut self.transaction else {
            return reply::RCPT_BEFORE_MAIL;
        };
        // Service extensions exist only after EHLO (RFC 5321 §4.1.1.1).
        if let Some(parameter) = rcpt.extension_parameter().filter(|_| !self.esmtp) {
            return reply::parameter_needs_ehlo(parameter);
        }
        if !rcpt.mailbox.is_ascii() && !transaction.mail.smtputf8 {
            return reply::NON_ASCII_WITHOUT_SMTPUTF8;
        }
        if transaction.recipients.len() >= max_recipients {
            return reply::too_many_recipients(max_recipients);
        }
        if let Some(quota) = exhausted_recipient_quota(transaction) {
            crate::metrics::global().quota_refused("recipients_per_day");
            return reply::recipient_quota_reached(
                self.auth_user.as_deref().unwrap_or(""),
                quota.limit,
                &timefmt::rfc3339(quota.resets),
            );
        }
        let reply = reply::recipient_ok(rcpt.mailbox.as_str());
        transaction.recipients.push(rcpt.mailbox);
        transaction.recipient_dsn.push(rcpt.dsn);
        reply
    }

    fn data(&mut self) {
        let transaction_refusal = match &self.transaction {
            None => Some(reply::DATA_BEFORE_MAIL),
            Some(t) if t.recipients.is_empty() => Some(reply::DATA_WITHOUT_RECIPIENTS),
            Some(_) => None,
        };
        let refusal = self.access_refusal().or(transaction_refusal);
        if let Some(reply) = refusal {
            return self.send(reply);
        }
        let limits = &self.config.limits;
        let received = self.received_header((self.config.clock)());
        // The most the receiver can hold: the trace header and the largest message allowed.
        let Some(memory) =
            (self.config.memory).try_reserve(received.len() + limits.max_message_size)
        else {
            return self.send(reply::MEMORY_BUDGET_EXHAUSTED);
        };
        if let Some(transaction) = &mut self.transaction {
            transaction.memory = Some(memory);
        }
        let receiver = DataReceiver::new(
            limits.max_message_size,
            limits.max_text_line,
            limits.bare_line_endings,
            received.into_bytes(),
        );
        self.mode = Mode::Data(Box::new(receiver));
        self.send(reply::START_DATA);
    }

    fn vrfy(&mut self) {
        let reply = self.access_refusal().unwrap_or(reply::VRFY_CANNOT_VERIFY);
        self.send(reply);
    }

    fn end_of_data(&mut self, message: Result<Vec<u8>, Defect>) {
        let limits = &self.config.limits;
        let refusal = match message {
            Ok(message) => {
                let submission = Box::new(Submission {
                    envelope: self.envelope(),
                    message,
                });
                return self.check_header_from(submission);
            }
            Err(Defect::TooBig) => reply::message_too_big(limits.max_message_size as u64),
            Err(Defect::BareLineEnding) => reply::BARE_LINE_ENDING_IN_DATA,
            Err(Defect::BareCr) => reply::BARE_CR_IN_DATA,
            Err(Defect::Nul) => reply::NUL_IN_DATA,
            Err(Defect::LineTooLong) => reply::text_line_too_long(limits.max_text_line),
        };
        self.transaction = None;
        self.send(refusal);
    }

    /// With `check_header_from`, an authenticated user's message goes to the spool only once
    /// the addresses of its From: header are approved. A message without From: has no author
    /// to check (and will not get far anywhere); one whose From: cannot be read is refused.
    fn check_header_from(&mut self, submission: Box<Submission>) {
        let user = match &self.auth_user {
            Some(user) if self.config.check_header_from => user.clone(),
            _ => return self.spool(submission),
        };
        match header_from::addresses(&submission.message) {
            HeaderFrom::Absent => self.spool(submission),
            HeaderFrom::Unreadable => {
                self.transaction = None;
                self.send(reply::HEADER_FROM_UNREADABLE);
            }
            HeaderFrom::Addresses(addresses) => {
                self.mode = Mode::AuthorizingHeaderFrom(submission);
                self.outbox
                    .push_back(Action::AuthorizeHeaderFrom { user, addresses });
            }
        }
    }

    /// The outcome of [`Action::AuthorizeHeaderFrom`].
    pub fn header_from_checked(&mut self, decision: HeaderFromDecision) {
        let Mode::AuthorizingHeaderFrom(submission) =
            std::mem::replace(&mut self.mode, Mode::Command)
        else {
            return;
        };
        let refusal = match decision {
            HeaderFromDecision::Allowed => return self.spool(submission),
            HeaderFromDecision::Denied(address) => {
                reply::header_from_not_owned(&address, self.auth_user.as_deref().unwrap_or(""))
            }
            HeaderFromDecision::Unavailable => reply::SENDER_CHECK_UNAVAILABLE,
        };
        self.transaction = None;
        self.send(refusal);
    }

    fn spool(&mut self, submission: Box<Submission>) {
        self.mode = Mode::Paused;
        self.outbox.push_back(Action::Spool(submission));
    }

    fn envelope(&self) -> Envelope {
        let transaction = self
            .transaction
            .as_ref()
            .expect("DATA only starts inside a transaction");
        Envelope {
            from: transaction
                .mail
                .sender
                .as_ref()
                .map_or(String::new(), |s| s.to_string()),
            to: transaction
                .recipients
                .iter()
                .map(Mailbox::to_string)
                .collect(),
            auth_user: self.auth_user.clone(),
            client_ip: self.client_ip,
            client_helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls.clone(),
            received_at: timefmt::rfc3339((self.config.clock)()),
            smtputf8: transaction.mail.smtputf8,
            eight_bit_mime: transaction.mail.body == Body::EightBitMime,
            ret: transaction.mail.ret.clone(),
            envid: transaction.mail.envid.clone(),
            dsn: requested_dsn(&transaction.recipient_dsn),
            moved_from: None,
        }
    }

    /// The trace header of RFC 5321 §4.4, with the protocol name of RFC 3848 / 6531 and the
    /// authenticated identity (RFC 4954 §7). The recipient is named only when there is exactly
    /// one, so that Bcc recipients are not disclosed to each other.
    fn received_header(&self, now: SystemTime) -> String {
        let utf8 = self.transaction.as_ref().is_some_and(|t| t.mail.smtputf8);
        let base = match (self.esmtp, utf8) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "UTF8SMTP", // RFC 6531 §3.7.3
        };
        let suffix = match (self.tls.is_some(), self.auth_user.is_some()) {
            (_, _) if !self.esmtp => "",
            (false, false) => "",
            (true, false) => "S",
            (false, true) => "A",
            (true, true) => "SA",
        };
        let protocol = format!("{base}{suffix}");
        let mut header = format!(
            "Received: from {} ([{}])\r\n\tby {} (Portcullis) with {protocol}",
            self.helo.as_deref().unwrap_or("unknown"),
            self.client_ip,
            self.config.hostname
        );
        if let Some(tls) = &self.tls {
            header.push_str(&format!(
                "\r\n\t(version={} cipher={})",
                tls.version, tls.cipher
            ));
        }
        if let Some(user) = &self.auth_user {
            header.push_str(&format!("\r\n\t(authenticated as {user})"));
        }
        if let Some([recipient]) = self.transaction.as_ref().map(|t| t.recipients.as_slice()) {
            header.push_str(&format!("\r\n\tfor <{recipient}>"));
        }
        header.push_str(&format!(";\r\n\t{}\r\n", timefmt::rfc5322(now)));
        header
    }
}

/// What a command line's parameters may add to the command line limit: only MAIL and RCPT
/// have any.
fn parameter_allowance(line: &[u8]) -> usize {
    match line.get(..5) {
        Some(verb) if verb.eq_ignore_ascii_case(b"MAIL ") => MAIL_PARAMETER_ALLOWANCE,
        Some(verb) if verb.eq_ignore_ascii_case(b"RCPT ") => RCPT_PARAMETER_ALLOWANCE,
        _ => 0,
    }
}

/// The envelope's per-recipient DSN parameters: none when no recipient had any, else one entry
/// for each recipient (RFC 3461 parameters are per recipient, and most have none).
fn requested_dsn(recipient_dsn: &[RecipientDsn]) -> Vec<RecipientDsn> {
    if recipient_dsn
        .iter()
        .all(|dsn| *dsn == RecipientDsn::default())
    {
        Vec::new()
    } else {
        recipient_dsn.to_vec()
    }
}

/// The recipients-per-day quota, if one more recipient would exceed it.
fn exhausted_recipient_quota(transaction: &Transaction) -> Option<Remaining> {
    transaction
        .recipient_quota
        .filter(|quota| transaction.recipients.len() as u64 >= quota.left)
}

#[cfg(test)]
mod tests;
