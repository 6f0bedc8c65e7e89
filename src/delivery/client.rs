//! The outbound SMTP client session of delivery: connect to one address of an MX host or relay,
//! greet, negotiate TLS per policy, authenticate to a relay, then run transactions and report
//! one outcome per recipient.
//!
//! It is built on [`client::Connection`], the client core that `check` and `bench` use, so the
//! three speak SMTP the same way. What delivery adds is judgement: every wait is bounded (RFC
//! 5321 §4.5.3.2), every failure becomes a reply with a basic and an enhanced status code (the
//! server's own, or one made here, flagged `remote: false`), and nothing the server sends makes
//! it panic.
//!
//! Conversions are not done: a message needing SMTPUTF8 or 8BITMIME is refused for a server
//! that lacks the extension (RFC 6531 §3.2, RFC 6152) instead of being downgraded, because a
//! downgrade means rewriting MIME structure and addresses, which risks more than a bounce.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::client::{self, CertificateVerifier, Connection, Envelope, Reply};
use crate::routing::{RelayAuth, TlsPolicy};
use crate::smtp::TlsInfo;

#[path = "lines.rs"]
mod lines;

pub use lines::{MAX_LINE, limit_line_length};

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

/// How a delivery client connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Sent with EHLO/HELO: the server's public host name.
    pub helo_name: String,
    pub connect_timeout: Duration,
    /// Greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, each data write, RSET and QUIT.
    pub command_timeout: Duration,
    /// The reply after the final dot (RFC 5321 §4.5.3.2.6: 10 minutes), when the server may be
    /// filtering the message.
    pub data_timeout: Duration,
    /// The trust for [`TlsPolicy::Verify`] (the system roots in production).
    pub verify_roots: Arc<rustls::RootCertStore>,
}

impl ClientSettings {
    /// RFC 5321 §4.5.3.2's limits (5 minutes for commands, 10 for the final dot) and 30
    /// seconds to connect, like Postfix: a host that does not answer SYN in that time is down,
    /// and the next address is worth more than waiting.
    pub fn new(helo_name: &str, verify_roots: Arc<rustls::RootCertStore>) -> ClientSettings {
        ClientSettings {
            helo_name: helo_name.to_string(),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            verify_roots,
        }
    }
}

/// Hosts whose STARTTLS handshake failed under `may`: delivered to in plaintext until the entry
/// expires. Without it a host with a broken TLS set-up would get a failed handshake, then a
/// plaintext reconnect, on every delivery; with it, the broken handshake is retried only once
/// per `remember`, in case it was fixed.
#[derive(Debug)]
pub struct PlaintextFallback {
    remember: Duration,
    failed: Mutex<HashMap<SocketAddr, Instant>>,
}

impl PlaintextFallback {
    pub fn new(remember: Duration) -> Self {
        PlaintextFallback {
            remember,
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a handshake with `address` failed less than `remember` ago.
    pub fn remembers(&self, address: SocketAddr) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, at| at.elapsed() < self.remember);
        failed.contains_key(&address)
    }

    /// Records a failed handshake with `address` (`open` does this itself).
    pub fn remember(&self, address: SocketAddr) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        failed.retain(|_, at| at.elapsed() < self.remember);
        failed.insert(address, Instant::now());
    }
}

/// The extensions a server announced in its EHLO reply that delivery cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    /// `SIZE` was announced: `Some(0)` without a limit (no number, or 0: RFC 1870 §4).
    pub size: Option<u64>,
    pub smtputf8: bool,
    pub eight_bit_mime: bool,
    pub dsn: bool,
    pub starttls: bool,
    /// SASL mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// From an EHLO reply; keywords are case-insensitive, and unknown ones are ignored.
    pub fn parse(ehlo: &Reply) -> Capabilities {
        let mut capabilities = Capabilities::none();
        for line in ehlo.extensions() {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword {
                "PIPELINING" => capabilities.pipelining = true,
                "SIZE" => {
                    let limit = words.next().and_then(|n| n.parse().ok());
                    capabilities.size = Some(limit.unwrap_or(0));
                }
                "SMTPUTF8" => capabilities.smtputf8 = true,
                "8BITMIME" => capabilities.eight_bit_mime = true,
                "DSN" => capabilities.dsn = true,
                "STARTTLS" => capabilities.starttls = true,
                "AUTH" => capabilities.add_mechanisms(words),
                // The pre-RFC 4954 form some servers still send beside (or instead of) AUTH.
                _ => {
                    if let Some(first) = keyword.strip_prefix("AUTH=") {
                        capabilities.add_mechanisms([first].into_iter().chain(words));
                    }
                }
            }
        }
        capabilities
    }

    /// No extensions at all: what a server that only understood HELO offers.
    pub fn none() -> Capabilities {
        Capabilities::default()
    }

    fn add_mechanisms<'a>(&mut self, mechanisms: impl IntoIterator<Item = &'a str>) {
        for mechanism in mechanisms {
            if !mechanism.is_empty() && !self.auth.iter().any(|m| m == mechanism) {
                self.auth.push(mechanism.to_string());
            }
        }
    }
}

/// Why [`open`] gave up on an address.
#[derive(Debug, Clone)]
pub struct OpenFailure {
    pub kind: OpenFailureKind,
    /// The server's reply, or one made here with a basic and an enhanced code.
    pub reply: Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailureKind {
    /// Connect refused, timed out or reset; closed before or at the greeting; a network error
    /// or a timeout later while opening: try the next address.
    Unreachable,
    /// The greeting, EHLO and HELO, or (with 421 "closing") any later step was refused; the
    /// reply is the server's.
    Greeting,
    /// TLS was required (policy `encrypt` or `verify`, or relay credentials to protect) and
    /// STARTTLS was not offered, was refused, failed, or the certificate was not trusted.
    TlsRequired,
    /// The relay refused our credentials, or offers neither PLAIN nor LOGIN.
    AuthFailed,
}

impl fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reply.summary())
    }
}

impl std::error::Error for OpenFailure {}

/// A reply made here: the enhanced code leads the text, so `enhanced()` and `summary()` work on
/// it as on a server's.
fn synthetic(code: u16, enhanced: &str, text: impl fmt::Display) -> Reply {
    Reply {
        code,
        lines: vec![format!("{enhanced} {text}")],
    }
}

fn failure(kind: OpenFailureKind, reply: Reply) -> OpenFailure {
    OpenFailure { kind, reply }
}

/// `mx.example.org[192.0.2.7]:25`, the form of the delivery log.
struct Peer<'a> {
    host: &'a str,
    address: SocketAddr,
}

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]:{}",
            self.host,
            self.address.ip(),
            self.address.port()
        )
    }
}

/// The steps of opening, for the texts of failures.
#[derive(Debug, Clone, Copy)]
enum OpenStep {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
}

impl fmt::Display for OpenStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenStep::Greeting => "waiting for the greeting",
            OpenStep::Ehlo => "after EHLO",
            OpenStep::Helo => "after HELO",
            OpenStep::StartTls => "after STARTTLS",
            OpenStep::Auth => "during AUTH",
        })
    }
}

/// How long a refused connection waits for the answer to a courtesy QUIT: the address has
/// failed already, and a server that refuses and then stalls must not hold a delivery slot.
const COURTESY_QUIT: Duration = Duration::from_secs(10);

/// Connects to `address`, reads the greeting, EHLO (HELO fallback on 5xx to EHLO), STARTTLS
/// per policy (then EHLO again), AUTH when `auth` is given. `host` is the MX/relay name (SNI and
/// verification name; no SNI when it is an IP literal).
///
/// Under `may`, a failed handshake is recorded in `fallback` and the address is connected to
/// again, in plaintext; while `fallback` remembers it, STARTTLS is skipped. Credentials change
/// that: they make TLS mandatory under every policy but `none` (the operator's explicit choice),
/// so the relay password never crosses the network in the clear because of a downgrade.
pub async fn open(
    host: &str,
    address: SocketAddr,
    tls: TlsPolicy,
    auth: Option<&RelayAuth>,
    settings: &ClientSettings,
    fallback: &PlaintextFallback,
) -> Result<Session, OpenFailure> {
    let required = match tls {
        TlsPolicy::None => false,
        TlsPolicy::May => auth.is_some(),
        TlsPolicy::Encrypt | TlsPolicy::Verify => true,
    };
    let opening = Opening {
        peer: Peer { host, address },
        policy: tls,
        required,
        auth,
        settings,
    };
    let starttls = match tls {
        TlsPolicy::None => false,
        TlsPolicy::May => required || !fallback.remembers(address),
        TlsPolicy::Encrypt | TlsPolicy::Verify => true,
    };
    match opening.attempt(starttls).await {
        Err(Refusal::Handshake(error)) => {
            tracing::info!(
                peer = %opening.peer,
                %error,
                "TLS handshake failed; falling back to plaintext"
            );
            fallback.remember(address);
            opening.attempt(false).await.map_err(|r| opening.refusal(r))
        }
        other => other.map_err(|r| opening.refusal(r)),
    }
}

/// Why one attempt at opening ended.
enum Refusal {
    Failed(OpenFailure),
    /// The handshake failed where plaintext is allowed: reconnect without STARTTLS.
    Handshake(io::Error),
}

impl From<OpenFailure> for Refusal {
    fn from(failure: OpenFailure) -> Refusal {
        Refusal::Failed(failure)
    }
}

/// What [`open`] knows while it works.
struct Opening<'a> {
    peer: Peer<'a>,
    policy: TlsPolicy,
    /// TLS is mandatory: the policy demands it, or credentials need protecting.
    required: bool,
    auth: Option<&'a RelayAuth>,
    settings: &'a ClientSettings,
}

impl Opening<'_> {
    /// One connection, from connect to the end of AUTH.
    async fn attempt(&self, starttls: bool) -> Result<Session, Refusal> {
        let mut connection = self.connect().await?;
        connection.set_timeout(Some(self.settings.command_timeout));
        match self.negotiate(&mut connection, starttls).await {
            Ok(capabilities) => Ok(self.session(connection, capabilities)),
            Err(Refusal::Failed(failure))
                if matches!(
                    failure.kind,
                    OpenFailureKind::TlsRequired | OpenFailureKind::AuthFailed
                ) =>
            {
                // We are the ones giving up, on a server that did nothing wrong by SMTP.
                courtesy_quit(&mut connection).await;
                Err(failure.into())
            }
            Err(refusal) => Err(refusal),
        }
    }

    /// Greeting, EHLO, STARTTLS and AUTH: the capabilities to send with.
    async fn negotiate(
        &self,
        connection: &mut Connection,
        starttls: bool,
    ) -> Result<Capabilities, Refusal> {
        self.greeting(connection).await?;
        let mut capabilities = self.hello(connection).await?;
        if starttls && let Some(upgraded) = self.start_tls(connection, &capabilities).await? {
            capabilities = upgraded;
        }
        if let Some(auth) = self.auth {
            self.authenticate(connection, &capabilities, auth).await?;
        }
        Ok(capabilities)
    }

    fn session(&self, connection: Connection, capabilities: Capabilities) -> Session {
        Session {
            tls: connection.tls.clone(),
            connection,
            command_timeout: self.settings.command_timeout,
            data_timeout: self.settings.data_timeout,
            usable: true,
            host: self.peer.host.to_string(),
            address: self.peer.address,
            capabilities,
        }
    }

    fn refusal(&self, refusal: Refusal) -> OpenFailure {
        match refusal {
            Refusal::Failed(failure) => failure,
            // Only reached if a plaintext attempt reported a handshake, which it cannot.
            Refusal::Handshake(error) => self.handshake_failed(&error),
        }
    }

    async fn connect(&self) -> Result<Connection, OpenFailure> {
        let limit = self.settings.connect_timeout;
        let unreachable =
            |text: String| failure(OpenFailureKind::Unreachable, synthetic(451, "4.4.1", text));
        match tokio::time::timeout(limit, TcpStream::connect(self.peer.address)).await {
            Ok(Ok(stream)) => Ok(Connection::plain(stream)),
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                Err(unreachable(format!("Connection to {} refused", self.peer)))
            }
            Ok(Err(error)) => Err(unreachable(format!(
                "Cannot connect to {}: {error}",
                self.peer
            ))),
            Err(_) => Err(unreachable(format!(
                "Connection to {} timed out after {limit:?}",
                self.peer
            ))),
        }
    }

    /// A network failure while opening: `Unreachable`, 4.4.1 for a timeout, else 4.4.2.
    fn lost(&self, step: OpenStep, error: &io::Error) -> OpenFailure {
        let reply = match error.kind() {
            io::ErrorKind::TimedOut => synthetic(
                451,
                "4.4.1",
                format!(
                    "{} timed out {step}: no answer within {:?}",
                    self.peer, self.settings.command_timeout
                ),
            ),
            _ => synthetic(
                451,
                "4.4.2",
                format!("Connection to {} lost {step}: {error}", self.peer),
            ),
        };
        failure(OpenFailureKind::Unreachable, reply)
    }

    /// The server's answer to `line`; a 421 ("closing") at any step is a refusal.
    async fn exchange(
        &self,
        connection: &mut Connection,
        step: OpenStep,
        line: &str,
    ) -> Result<Reply, OpenFailure> {
        let reply = connection
            .command(line)
            .await
            .map_err(|e| self.lost(step, &e))?;
        match reply.code {
            421 => Err(failure(OpenFailureKind::Greeting, reply)),
            _ => Ok(reply),
        }
    }

    async fn greeting(&self, connection: &mut Connection) -> Result<(), OpenFailure> {
        let reply = connection
            .read_reply()
            .await
            .map_err(|e| self.lost(OpenStep::Greeting, &e))?;
        match reply.code {
            220 => Ok(()),
            _ => Err(refused(connection, reply).await),
        }
    }

    /// EHLO, or HELO when the server does not know EHLO (5xx).
    async fn hello(&self, connection: &mut Connection) -> Result<Capabilities, OpenFailure> {
        let name = &self.settings.helo_name;
        let ehlo = self
            .exchange(connection, OpenStep::Ehlo, &format!("EHLO {name}"))
            .await?;
        match ehlo.code {
            200..=299 => return Ok(Capabilities::parse(&ehlo)),
            500..=599 => {}
            _ => return Err(refused(connection, ehlo).await),
        }
        let helo = self
            .exchange(connection, OpenStep::Helo, &format!("HELO {name}"))
            .await?;
        match helo.code {
            200..=299 => Ok(Capabilities::none()),
            _ => Err(refused(connection, helo).await),
        }
    }

    /// STARTTLS and EHLO again: the new capabilities, or `None` to go on in plaintext.
    async fn start_tls(
        &self,
        connection: &mut Connection,
        capabilities: &Capabilities,
    ) -> Result<Option<Capabilities>, Refusal> {
        if !capabilities.starttls {
            return match self.required {
                true => Err(self.tls_refused("does not offer STARTTLS").into()),
                false => Ok(None),
            };
        }
        let reply = self
            .exchange(connection, OpenStep::StartTls, "STARTTLS")
            .await?;
        if reply.code != 220 {
            let text = format!("refused STARTTLS ({})", reply.summary());
            return match self.required {
                true => Err(self.tls_refused(&text).into()),
                false => Ok(None),
            };
        }
        let config = self.tls_config()?;
        let name = self.server_name()?;
        if let Err(error) = connection.handshake(config, &name).await {
            return Err(match self.required {
                true => self.handshake_failed(&error).into(),
                false => Refusal::Handshake(error),
            });
        }
        Ok(Some(self.hello(connection).await?))
    }

    /// 4.7.4 "security features not supported": no usable STARTTLS.
    fn tls_refused(&self, what: &str) -> OpenFailure {
        let why = match (self.auth, self.policy) {
            (Some(_), TlsPolicy::May) => {
                "refusing to send the relay password over plaintext".to_string()
            }
            _ => format!("the TLS policy is {}", self.policy),
        };
        let text = format!("{} {what}, and {why}", self.peer.host);
        failure(OpenFailureKind::TlsRequired, synthetic(451, "4.7.4", text))
    }

    /// 4.7.5 "cryptographic failure": the handshake or the certificate.
    fn handshake_failed(&self, error: &io::Error) -> OpenFailure {
        let text = format!("TLS handshake with {} failed: {error}", self.peer);
        failure(OpenFailureKind::TlsRequired, synthetic(451, "4.7.5", text))
    }

    /// Any certificate for `may` and `encrypt` (RFC 7435: encryption without authentication
    /// still beats plaintext); `verify` checks the chain and the name against `verify_roots`.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, OpenFailure> {
        let verifier = match self.policy {
            TlsPolicy::Verify => {
                CertificateVerifier::with_roots(self.settings.verify_roots.clone(), false)
            }
            _ => CertificateVerifier::accept_any(),
        };
        client::config_with_verifier(Arc::new(verifier)).map_err(|error| {
            let text = format!("TLS with {}: {error}", self.peer);
            failure(OpenFailureKind::TlsRequired, synthetic(451, "4.7.5", text))
        })
    }

    /// The name to present (SNI) and verify: the host, or, when it is no valid name and the
    /// certificate goes unchecked anyway, the address (an IP literal sends no SNI).
    fn server_name(&self) -> Result<String, OpenFailure> {
        let host = self.peer.host;
        if ServerName::try_from(host).is_ok() {
            return Ok(host.to_string());
        }
        match self.policy {
            TlsPolicy::Verify => {
                let text = format!("\"{host}\" is not a name a certificate can be verified for");
                Err(failure(
                    OpenFailureKind::TlsRequired,
                    synthetic(451, "4.7.5", text),
                ))
            }
            _ => Ok(self.peer.address.ip().to_string()),
        }
    }

    /// AUTH PLAIN, else AUTH LOGIN; never over plaintext unless the policy is `none`.
    async fn authenticate(
        &self,
        connection: &mut Connection,
        capabilities: &Capabilities,
        auth: &RelayAuth,
    ) -> Result<(), OpenFailure> {
        if connection.tls.is_none() && self.policy != TlsPolicy::None {
            return Err(self.tls_refused("offers no TLS"));
        }
        let offers = |name: &str| capabilities.auth.iter().any(|m| m == name);
        let result = if offers("PLAIN") {
            connection.auth_plain(&auth.user, &auth.password).await
        } else if offers("LOGIN") {
            connection.auth_login(&auth.user, &auth.password).await
        } else {
            let text = format!("{} offers neither AUTH PLAIN nor LOGIN", self.peer.host);
            return Err(failure(
                OpenFailureKind::AuthFailed,
                synthetic(451, "4.7.0", text),
            ));
        };
        let reply = result.map_err(|e| self.lost(OpenStep::Auth, &e))?;
        match reply.code {
            235 => Ok(()),
            421 => Err(failure(OpenFailureKind::Greeting, reply)),
            _ => Err(failure(OpenFailureKind::AuthFailed, reply)),
        }
    }
}

/// A refusal at the greeting or EHLO/HELO, after a courtesy QUIT (RFC 5321 §3.1: a client
/// refused with 554 should still QUIT). Not after 421: the server is closing already.
async fn refused(connection: &mut Connection, reply: Reply) -> OpenFailure {
    if reply.code != 421 {
        courtesy_quit(connection).await;
    }
    failure(OpenFailureKind::Greeting, reply)
}

/// QUIT on a connection being given up, its answer awaited briefly and ignored.
async fn courtesy_quit(connection: &mut Connection) {
    let _ = tokio::time::timeout(COURTESY_QUIT, connection.command("QUIT")).await;
}

/// One message as delivery hands it to a session.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// `""` is the null sender `<>`.
    pub sender: &'a str,
    pub recipients: Vec<OutRecipient<'a>>,
    /// As spooled: CRLF lines, not dot-stuffed.
    pub message: &'a [u8],
    pub smtputf8: bool,
    pub eight_bit_mime: bool,
    /// `FULL` or `HDRS` (RFC 3461 §4.3).
    pub ret: Option<&'a str>,
    /// Decoded; xtext-encoded when sent.
    pub envid: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecipient<'a> {
    pub address: &'a str,
    /// `NOTIFY=` as the client gave it, e.g. `SUCCESS,FAILURE` or `NEVER`.
    pub notify: Option<&'a str>,
    /// `rfc822;addr`, decoded.
    pub orcpt: Option<&'a str>,
}

impl<'a> Outgoing<'a> {
    /// The spooled message `message` of `envelope` to the recipients at `indices` (positions in
    /// `envelope.to`; others are skipped), with their DSN parameters.
    pub fn from_envelope(
        envelope: &'a crate::smtp::Envelope,
        indices: &[usize],
        message: &'a [u8],
    ) -> Outgoing<'a> {
        let recipients = indices
            .iter()
            .filter_map(|&i| {
                let dsn = envelope.dsn.get(i);
                Some(OutRecipient {
                    address: envelope.to.get(i)?,
                    notify: dsn.and_then(|d| d.notify.as_deref()),
                    orcpt: dsn.and_then(|d| d.orcpt.as_deref()),
                })
            })
            .collect();
        Outgoing {
            sender: &envelope.from,
            recipients,
            message,
            smtputf8: envelope.smtputf8,
            eight_bit_mime: envelope.eight_bit_mime,
            ret: envelope.ret.as_deref(),
            envid: envelope.envid.as_deref(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Temporary,
    Permanent,
}

impl Outcome {
    /// 2xx delivered, 5xx permanent; 4xx and anything unexpected (1xx, 3xx where a final reply
    /// belongs, codes beyond 5xx) temporary, so a confused server never causes a bounce.
    pub fn of(reply: &Reply) -> Outcome {
        match reply.code {
            200..=299 => Outcome::Delivered,
            500..=599 => Outcome::Permanent,
            _ => Outcome::Temporary,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    pub outcome: Outcome,
    pub reply: Reply,
    /// False when the reply was made here (a lost connection, a size or SMTPUTF8 refusal).
    pub remote: bool,
}

impl RecipientOutcome {
    fn new(reply: Reply, remote: bool) -> RecipientOutcome {
        RecipientOutcome {
            outcome: Outcome::of(&reply),
            reply,
            remote,
        }
    }
}

/// An open connection, greeted, with TLS and AUTH done as the policy asked.
pub struct Session {
    connection: Connection,
    command_timeout: Duration,
    data_timeout: Duration,
    usable: bool,
    pub host: String,
    pub address: SocketAddr,
    pub capabilities: Capabilities,
    pub tls: Option<TlsInfo>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("address", &self.address)
            .field("capabilities", &self.capabilities)
            .field("tls", &self.tls)
            .field("usable", &self.usable)
            .finish()
    }
}

/// Where a transaction was when the connection failed, for the text of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mail,
    Rcpt,
    Data,
    Message,
    /// The final dot is being or has been sent: the server may have taken the message.
    EndOfData,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Mail => "at MAIL FROM",
            Stage::Rcpt => "at RCPT TO",
            Stage::Data => "at DATA",
            Stage::Message => "while sending the message",
            Stage::EndOfData => "after the final dot",
        })
    }
}

/// Why a transaction stopped early.
enum Broken {
    Lost(Stage, io::Error),
    /// 421: the server is closing the connection.
    Closing(Reply),
}

/// How a transaction that did not break ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// 2xx after the final dot: the server is ready for the next one.
    Completed,
    /// Refused somewhere or not sent: RSET before the next one.
    Unfinished,
}

/// The size of each data write, each bounded by the command timeout.
const WRITE_CHUNK: usize = 64 * 1024;

impl Session {
    /// One transaction; returns exactly one outcome per recipient, in order. Never panics on
    /// anything the server sends. After it, [`Session::usable`] says whether another
    /// transaction may follow.
    ///
    /// Before anything is sent, the message is checked against what the server announced
    /// (SIZE, SMTPUTF8, 8BITMIME) and refused here when it cannot be delivered as it is. Long
    /// lines are limited ([`limit_line_length`]) and the message dot-stuffed on the way.
    pub async fn send(&mut self, message: &Outgoing<'_>) -> Vec<RecipientOutcome> {
        if message.recipients.is_empty() {
            return Vec::new();
        }
        let mut tally = Tally::new(message.recipients.len());
        if !self.usable {
            let text = format!("The connection to {} is no longer usable", self.peer());
            tally.fill(synthetic(451, "4.4.2", text), false);
            return tally.finish();
        }
        let body = limit_line_length(message.message);
        if let Some(reply) = self.unsendable(message, &body) {
            tally.fill(reply, false);
            return tally.finish();
        }
        let commands = self.commands(message, &body, &mut tally);
        if commands.indices.is_empty() {
            return tally.finish();
        }
        let result = match self.capabilities.pipelining {
            true => self.pipelined(&commands, &body, &mut tally).await,
            false => self.stepwise(&commands, &body, &mut tally).await,
        };
        self.conclude(result, &mut tally).await;
        tally.finish()
    }

    /// Whether another transaction may follow on this connection.
    pub fn usable(&self) -> bool {
        self.usable
    }

    /// QUIT, bounded by the command timeout, errors ignored: the mail is delivered or not by
    /// now, and a server that does not answer QUIT changes nothing.
    pub async fn quit(mut self) {
        let limit = self.command_timeout;
        let _ = tokio::time::timeout(limit, async {
            let _ = self.connection.command("QUIT").await;
            let _ = self.connection.shutdown().await;
        })
        .await;
    }

    fn peer(&self) -> Peer<'_> {
        Peer {
            host: &self.host,
            address: self.address,
        }
    }

    /// The refusal, made here, of a message this server cannot take as it is.
    fn unsendable(&self, message: &Outgoing<'_>, body: &[u8]) -> Option<Reply> {
        let capabilities = &self.capabilities;
        let host = &self.host;
        if let Some(limit) = capabilities.size.filter(|&n| n > 0)
            && body.len() as u64 > limit
        {
            let text =
                format!("Message size exceeds the limit of {limit} bytes that {host} announced");
            return Some(synthetic(552, "5.3.4", text));
        }
        if !valid_address(message.sender) {
            let text = "The sender address contains control characters";
            return Some(synthetic(553, "5.1.7", text));
        }
        if needs_smtputf8(message) && !capabilities.smtputf8 {
            let text = format!(
                "{host} does not support SMTPUTF8, which the message needs for its \
                 non-ASCII addresses or header fields"
            );
            return Some(synthetic(553, "5.6.7", text));
        }
        if has_8bit(body) && !capabilities.eight_bit_mime {
            let text = format!(
                "The message has 8-bit content and {host} does not offer 8BITMIME: \
                 conversion required but not supported"
            );
            return Some(synthetic(554, "5.6.3", text));
        }
        None
    }

    /// MAIL and the RCPT commands, with the positions of their recipients; unsendable
    /// addresses get a permanent outcome here.
    fn commands(&self, message: &Outgoing<'_>, body: &[u8], tally: &mut Tally) -> Commands {
        let parameters = mail_parameters(&self.capabilities, message, body);
        let mut commands = Commands {
            mail: client::mail_command(message.sender, &parameters),
            rcpts: Vec::new(),
            indices: Vec::new(),
        };
        for (index, recipient) in message.recipients.iter().enumerate() {
            if recipient.address.is_empty() || !valid_address(recipient.address) {
                let text = "The recipient address is empty or contains control characters";
                tally.set(index, synthetic(553, "5.1.3", text), false);
                continue;
            }
            let parameters = rcpt_parameters(&self.capabilities, recipient);
            commands
                .rcpts
                .push(client::rcpt_command(recipient.address, &parameters));
            commands.indices.push(index);
        }
        commands
    }

    /// RFC 2920: MAIL, every RCPT and DATA in one write, then their replies in order.
    async fn pipelined(
        &mut self,
        commands: &Commands,
        body: &[u8],
        tally: &mut Tally,
    ) -> Result<Ended, Broken> {
        let envelope = Envelope::from_commands(&commands.mail, &commands.rcpts);
        self.write(envelope.batch(), Stage::Mail).await?;
        let mail_accepted = tally.mail(self.reply(Stage::Mail).await?);
        for &index in &commands.indices {
            let reply = self.reply(Stage::Rcpt).await?;
            // After a refused MAIL the RCPT replies are 503s that say nothing new.
            if mail_accepted {
                tally.rcpt(index, reply);
            }
        }
        let data = self.reply(Stage::Data).await?;
        self.data(data, body, tally).await
    }

    /// Without pipelining: one command at a time, stopping as soon as the outcome is known.
    async fn stepwise(
        &mut self,
        commands: &Commands,
        body: &[u8],
        tally: &mut Tally,
    ) -> Result<Ended, Broken> {
        let reply = self.command(&commands.mail, Stage::Mail).await?;
        if !tally.mail(reply) {
            return Ok(Ended::Unfinished);
        }
        for (&index, rcpt) in commands.indices.iter().zip(&commands.rcpts) {
            let reply = self.command(rcpt, Stage::Rcpt).await?;
            tally.rcpt(index, reply);
        }
        if tally.accepted == 0 {
            return Ok(Ended::Unfinished);
        }
        let data = self.command("DATA", Stage::Data).await?;
        self.data(data, body, tally).await
    }

    /// After the reply to DATA: the message and the reply to its final dot.
    async fn data(
        &mut self,
        reply: Reply,
        body: &[u8],
        tally: &mut Tally,
    ) -> Result<Ended, Broken> {
        if reply.code != 354 {
            tally.fill(data_refusal(reply, &self.host), true);
            return Ok(Ended::Unfinished);
        }
        if tally.accepted == 0 {
            // RFC 2920 §3.1: DATA was pipelined and accepted though no RCPT was. End the empty
            // message; whatever the server says to it, no recipient would get it.
            self.write(b".\r\n", Stage::Data).await?;
            self.reply(Stage::Data).await?;
            return Ok(Ended::Unfinished);
        }
        for part in client::dot_stuffed_parts(body) {
            for chunk in part.chunks(WRITE_CHUNK) {
                self.write(chunk, Stage::Message).await?;
            }
        }
        // A failure while writing the dot counts as after it: part of it may have arrived, and
        // claiming "not delivered" is the one answer that could be wrong in the costly way.
        self.write(b".\r\n", Stage::EndOfData).await?;
        self.connection.set_timeout(Some(self.data_timeout));
        let reply = self.reply(Stage::EndOfData).await;
        self.connection.set_timeout(Some(self.command_timeout));
        let reply = reply?;
        let ended = match reply.code {
            200..=299 => Ended::Completed,
            _ => Ended::Unfinished,
        };
        tally.fill(reply, true);
        Ok(ended)
    }

    /// Records how the transaction ended, and makes the session ready for the next one (RSET
    /// after anything but a completed delivery) or marks it unusable.
    async fn conclude(&mut self, result: Result<Ended, Broken>, tally: &mut Tally) {
        match result {
            Ok(Ended::Completed) => {}
            Ok(Ended::Unfinished) => self.reset().await,
            Err(Broken::Closing(reply)) => {
                tally.fill(reply, true);
                self.usable = false;
            }
            Err(Broken::Lost(stage, error)) => {
                tally.fill(self.lost(stage, &error), false);
                self.usable = false;
            }
        }
    }

    async fn reset(&mut self) {
        let reset = self.connection.command("RSET").await;
        if !matches!(reset, Ok(ref reply) if (200..=299).contains(&reply.code)) {
            self.usable = false;
        }
    }

    /// The synthetic reply for a connection lost (or timed out) during a transaction.
    fn lost(&self, stage: Stage, error: &io::Error) -> Reply {
        let peer = self.peer();
        let text = match stage {
            Stage::EndOfData => format!(
                "Connection lost with {peer} after the final dot, before its reply ({error}): \
                 the message may have been delivered, and a retry may duplicate it"
            ),
            _ => format!(
                "Connection lost with {peer} {stage} ({error}): the message was not delivered"
            ),
        };
        synthetic(451, "4.4.2", text)
    }

    async fn write(&mut self, bytes: &[u8], stage: Stage) -> Result<(), Broken> {
        self.connection
            .send(bytes)
            .await
            .map_err(|e| Broken::Lost(stage, e))
    }

    /// The next reply; 421 breaks the transaction.
    async fn reply(&mut self, stage: Stage) -> Result<Reply, Broken> {
        let reply = self
            .connection
            .read_reply()
            .await
            .map_err(|e| Broken::Lost(stage, e))?;
        match reply.code {
            421 => Err(Broken::Closing(reply)),
            _ => Ok(reply),
        }
    }

    async fn command(&mut self, line: &str, stage: Stage) -> Result<Reply, Broken> {
        self.write(format!("{line}\r\n").as_bytes(), stage).await?;
        self.reply(stage).await
    }
}

/// A transaction's command lines (without CRLF); `indices[i]` is the recipient of `rcpts[i]`.
struct Commands {
    mail: String,
    rcpts: Vec<String>,
    indices: Vec<usize>,
}

/// The outcomes of one transaction as they become known. A recipient without an outcome is
/// either accepted by RCPT (counted in `accepted`) or not yet answered; both get whatever ends
/// the transaction.
struct Tally {
    outcomes: Vec<Option<RecipientOutcome>>,
    accepted: usize,
}

impl Tally {
    fn new(recipients: usize) -> Tally {
        Tally {
            outcomes: vec![None; recipients],
            accepted: 0,
        }
    }

    fn set(&mut self, index: usize, reply: Reply, remote: bool) {
        if let Some(slot) = self.outcomes.get_mut(index) {
            *slot = Some(RecipientOutcome::new(reply, remote));
        }
    }

    /// Gives `reply` to every recipient still without an outcome.
    fn fill(&mut self, reply: Reply, remote: bool) {
        for slot in self.outcomes.iter_mut().filter(|slot| slot.is_none()) {
            *slot = Some(RecipientOutcome::new(reply.clone(), remote));
        }
    }

    /// The reply to MAIL: true when accepted, else every recipient gets it.
    fn mail(&mut self, reply: Reply) -> bool {
        let accepted = Outcome::of(&reply) == Outcome::Delivered;
        if !accepted {
            self.fill(reply, true);
        }
        accepted
    }

    fn rcpt(&mut self, index: usize, reply: Reply) {
        match Outcome::of(&reply) {
            Outcome::Delivered => self.accepted += 1,
            _ => self.set(index, reply, true),
        }
    }

    fn finish(self) -> Vec<RecipientOutcome> {
        self.outcomes
            .into_iter()
            .map(|outcome| {
                // Every path fills the remaining slots; this only guards the invariant.
                outcome.unwrap_or_else(|| {
                    let text = "The transaction ended without a reply for this recipient";
                    RecipientOutcome::new(synthetic(451, "4.3.0", text), false)
                })
            })
            .collect()
    }
}

/// The outcome of a refused DATA for the accepted recipients: the reply itself, unless it is a
/// positive one other than 354, which would read as delivered though nothing was sent.
fn data_refusal(reply: Reply, host: &str) -> Reply {
    match reply.code {
        400..=599 => reply,
        _ => {
            let text = format!(
                "{host} answered DATA with \"{}\" instead of 354: the message was not sent",
                reply.summary()
            );
            synthetic(451, "4.5.0", text)
        }
    }
}

/// MAIL FROM's parameters: SIZE whenever offered (RFC 1870), BODY=8BITMIME when the message is
/// 8-bit or was declared so (RFC 6152), SMTPUTF8 when declared or needed (RFC 6531), RET and
/// ENVID only to a server that offers DSN (RFC 3461 §4: otherwise it would refuse MAIL).
fn mail_parameters(
    capabilities: &Capabilities,
    message: &Outgoing<'_>,
    body: &[u8],
) -> Vec<String> {
    let mut parameters = Vec::new();
    if capabilities.size.is_some() {
        parameters.push(format!("SIZE={}", body.len()));
    }
    if capabilities.eight_bit_mime && (message.eight_bit_mime || has_8bit(body)) {
        parameters.push("BODY=8BITMIME".to_string());
    }
    if capabilities.smtputf8 && (message.smtputf8 || needs_smtputf8(message)) {
        parameters.push("SMTPUTF8".to_string());
    }
    if capabilities.dsn {
        if let Some(ret) = message
            .ret
            .filter(|r| ["FULL", "HDRS"].iter().any(|k| r.eq_ignore_ascii_case(k)))
        {
            parameters.push(format!("RET={}", ret.to_ascii_uppercase()));
        }
        if let Some(envid) = message.envid {
            parameters.push(format!("ENVID={}", xtext(envid)));
        }
    }
    parameters
}

/// RCPT TO's parameters: NOTIFY and ORCPT, only to a server that offers DSN.
fn rcpt_parameters(capabilities: &Capabilities, recipient: &OutRecipient<'_>) -> Vec<String> {
    let mut parameters = Vec::new();
    if !capabilities.dsn {
        return parameters;
    }
    let keywords =
        |n: &&str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphabetic() || b == b',');
    if let Some(notify) = recipient.notify.filter(keywords) {
        parameters.push(format!("NOTIFY={}", notify.to_ascii_uppercase()));
    }
    if let Some(orcpt) = recipient.orcpt {
        parameters.push(format!("ORCPT={}", orcpt_value(orcpt)));
    }
    parameters
}

/// `addr-type;xtext` (RFC 3461 §4.2). A non-ASCII address goes as `utf-8;` in
/// utf-8-addr-xtext form (RFC 6533 §3), which stays 7-bit for any server.
fn orcpt_value(orcpt: &str) -> String {
    let (addr_type, address) = match orcpt.split_once(';') {
        Some((kind, address))
            if !kind.trim().is_empty()
                && kind
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            (kind.trim(), address.trim())
        }
        _ => ("rfc822", orcpt.trim()),
    };
    match address.is_ascii() {
        true => format!("{addr_type};{}", xtext(address)),
        false => format!("utf-8;{}", utf8_addr_xtext(address)),
    }
}

/// RFC 3461 §4: `+` followed by two upper-case hex digits for `+`, `=` and every octet outside
/// `!` to `~`.
fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'!'..=b'~' if byte != b'+' && byte != b'=' => out.push(char::from(byte)),
            _ => out.push_str(&format!("+{byte:02X}")),
        }
    }
    out
}

/// RFC 6533 §3: non-ASCII characters, `\`, `+`, `=` and controls as `\x{HEX}`.
fn utf8_addr_xtext(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        match c {
            '!'..='~' if !matches!(c, '\\' | '+' | '=') => out.push(c),
            _ => out.push_str(&format!("\\x{{{:X}}}", u32::from(c))),
        }
    }
    out
}

/// RFC 6531 §3.2: the sender or a recipient is non-ASCII, or the message was submitted with
/// SMTPUTF8 and its header section holds non-ASCII octets.
fn needs_smtputf8(message: &Outgoing<'_>) -> bool {
    !message.sender.is_ascii()
        || message.recipients.iter().any(|r| !r.address.is_ascii())
        || (message.smtputf8 && !header_section(message.message).is_ascii())
}

/// Up to and including the empty line that ends the header section (all of it when none does).
fn header_section(message: &[u8]) -> &[u8] {
    let mut end = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        end += line.len();
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    &message[..end]
}

fn has_8bit(message: &[u8]) -> bool {
    !message.is_ascii()
}

/// No control characters: a CR or LF in an address would end the command early and let the
/// rest be read as another one.
fn valid_address(address: &str) -> bool {
    !address.bytes().any(|b| b < 0x20 || b == 0x7f)
}
