//! A small SMTP client for `portcullis check` and `portcullis bench`: plain TCP, STARTTLS or
//! implicit TLS, EHLO, AUTH PLAIN/LOGIN and message submission with pipelining. It reports what
//! the server said instead of hiding it, because both tools exist to show exactly that.

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::smtp::TlsInfo;
use crate::tls;

/// One server reply: the code and the text of each line (after `code` and the separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The enhanced status code at the start of the last line, if there is one (RFC 2034).
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.last()?.split(' ').next()?;
        let parts: Vec<&str> = first.split('.').collect();
        let numeric = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        numeric.then_some(first)
    }

    /// The reply as one line, for reports: `535 5.7.8 Authentication credentials invalid`.
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.last().map_or("", String::as_str)
        )
    }

    /// EHLO keywords (upper-cased), from the lines after the first.
    pub fn extensions(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .map(|line| line.to_ascii_uppercase())
            .collect()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index + 1 == self.lines.len() {
                ' '
            } else {
                '-'
            };
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}{separator}{line}", self.code)?;
        }
        Ok(())
    }
}

/// Which certificates to trust when connecting with TLS.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only the certificates in this PEM file (for a private CA or a self-signed server).
    CaFile(std::path::PathBuf),
    /// Any certificate (signatures are still checked); for testing self-signed servers.
    Anything,
}

pub fn tls_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let verifier = match trust {
        Trust::Anything => CertificateVerifier::accept_any(),
        Trust::CaFile(path) => CertificateVerifier::new(file_roots(path)?, false),
    };
    config_with_verifier(Arc::new(verifier))
}

/// A client configuration with the ring provider, TLS 1.2 and 1.3, and `verifier`.
pub fn config_with_verifier(
    verifier: Arc<CertificateVerifier>,
) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The operating system's trust store.
pub fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable entries are skipped: one bad file must not disable every other root.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// The certificates of a PEM file, as trust anchors.
pub fn file_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: cannot read certificates: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!("{}: no usable certificate", path.display()));
    }
    Ok(roots)
}

/// Verifies the chain like rustls does and remembers the verdict, so `check` can report a bad
/// certificate and, when told to go on anyway (`check --insecure`, `bench` without `--ca`), let
/// the handshake continue. Handshake signatures are always verified, so the connection is
/// encrypted to whoever holds the presented key.
#[derive(Debug)]
pub struct CertificateVerifier {
    /// `None` when there is nothing to check against: every chain is then untrusted.
    chain: Option<Arc<WebPkiServerVerifier>>,
    accept_any: bool,
    verdict: Mutex<Option<rustls::Error>>,
    provider: Arc<CryptoProvider>,
}

impl CertificateVerifier {
    /// Trusts `roots`; with `accept_any` a chain they do not vouch for is let through too.
    pub fn new(roots: rustls::RootCertStore, accept_any: bool) -> CertificateVerifier {
        CertificateVerifier::with_roots(Arc::new(roots), accept_any)
    }

    /// Like [`CertificateVerifier::new`] with shared roots, so a verifier per connection (as
    /// delivery builds them) does not copy the system trust store each time.
    pub fn with_roots(roots: Arc<rustls::RootCertStore>, accept_any: bool) -> CertificateVerifier {
        // Building fails only without roots; the chain is then reported as untrusted.
        let chain = WebPkiServerVerifier::builder_with_provider(roots, tls::provider())
            .build()
            .ok();
        CertificateVerifier {
            chain,
            accept_any,
            verdict: Mutex::new(None),
            provider: tls::provider(),
        }
    }

    pub fn accept_any() -> CertificateVerifier {
        CertificateVerifier::new(rustls::RootCertStore::empty(), true)
    }

    /// The certificate error of the last handshake (`None`: the chain was trusted).
    pub fn verdict(&self) -> Option<rustls::Error> {
        self.verdict.lock().ok().and_then(|verdict| verdict.clone())
    }
}

impl ServerCertVerifier for CertificateVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match &self.chain {
            Some(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        if let Ok(mut verdict) = self.verdict.lock() {
            *verdict = result.as_ref().err().cloned();
        }
        match result {
            Err(_) if self.accept_any => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// After a failed TLS handshake.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

/// An SMTP client connection.
pub struct Connection {
    stream: Stream,
    buffer: Vec<u8>,
    /// Set once TLS is up.
    pub tls: Option<TlsInfo>,
    /// The server's certificate chain, once TLS is up.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// Bounds each reply read, `send` and handshake (see [`Connection::set_timeout`]).
    timeout: Option<Duration>,
}

/// Longest reply line accepted from a server; a longer one is an error, not a memory sink.
const MAX_REPLY_LINE: usize = 64 * 1024;
const MAX_REPLY_LINES: usize = 1000;

impl Connection {
    pub fn plain(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection {
            stream: Stream::Plain(stream),
            buffer: Vec::new(),
            tls: None,
            peer_certificates: Vec::new(),
            timeout: None,
        }
    }

    /// Bounds each later reply read, each [`Connection::send`] and each TLS handshake by
    /// `limit`; expiry is an error of kind `TimedOut`. `None` (the default) waits for ever,
    /// which suits the interactive tools; delivery must not let a silent server hold a
    /// connection, so it sets RFC 5321 §4.5.3.2 limits. An expired read or write leaves the
    /// connection in an unknown state: drop it.
    pub fn set_timeout(&mut self, limit: Option<Duration>) {
        self.timeout = limit;
    }

    /// Implicit TLS (port 465): the handshake comes first.
    pub async fn implicit_tls(
        stream: TcpStream,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<Connection> {
        let _ = stream.set_nodelay(true);
        let mut connection = Connection::plain(stream);
        connection.handshake(config, server_name).await?;
        Ok(connection)
    }

    /// Upgrades after a `220` reply to STARTTLS. Anything the server sent after its 220 and
    /// before the handshake is an error (it would be a STARTTLS injection on the server side).
    pub async fn handshake(
        &mut self,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<()> {
        if !self.buffer.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server sent data before the TLS handshake",
            ));
        }
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{server_name:?} is not a valid server name"),
            )
        })?;
        // On failure the connection stays closed: after a failed handshake it is unusable anyway.
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let stream = bounded(self.timeout, TlsConnector::from(config).connect(name, tcp)).await?;
        let (_, connection) = stream.get_ref();
        self.tls = Some(tls::session_info(connection));
        self.peer_certificates = connection
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    /// Reads one complete (possibly multi-line) reply.
    pub async fn read_reply(&mut self) -> io::Result<Reply> {
        bounded(self.timeout, self.read_unbounded_reply()).await
    }

    async fn read_unbounded_reply(&mut self) -> io::Result<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let malformed = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: {line:?}"),
                )
            };
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(malformed)?;
            let more = match line.as_bytes().get(3) {
                Some(b'-') => true,
                Some(b' ') | None => false,
                Some(_) => return Err(malformed()),
            };
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply has too many lines",
                ));
            }
        }
    }

    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
            if self.buffer.len() > MAX_REPLY_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply line too long",
                ));
            }
            let mut chunk = [0u8; 4096];
            let n = self.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                ));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let limit = self.timeout;
        bounded(limit, async {
            self.write_all(bytes).await?;
            self.flush().await
        })
        .await
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> io::Result<Reply> {
        self.send(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply().await
    }

    /// AUTH PLAIN with the initial response.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> io::Result<Reply> {
        let response = BASE64.encode(format!("\0{user}\0{password}"));
        self.command(&format!("AUTH PLAIN {response}")).await
    }

    /// AUTH LOGIN, answering the username and password prompts.
    pub async fn auth_login(&mut self, user: &str, password: &str) -> io::Result<Reply> {
        let reply = self.command("AUTH LOGIN").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let reply = self.command(&BASE64.encode(user)).await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        self.command(&BASE64.encode(password)).await
    }

    /// A whole transaction: the envelope in one write (RFC 2920 pipelining), then, after 354,
    /// `message`: dot-stuffed parts, each ending in CRLF, sent in order. Returns the replies to
    /// MAIL, each RCPT and DATA, then the reply after the final dot (absent when DATA was
    /// refused).
    pub async fn transaction(
        &mut self,
        envelope: &Envelope,
        message: &[&[u8]],
    ) -> io::Result<Transaction> {
        self.send(&envelope.batch).await?;
        let mut replies = Vec::with_capacity(envelope.commands);
        for _ in 0..envelope.commands {
            replies.push(self.read_reply().await?);
        }
        let data_started = replies.last().is_some_and(|r| r.code == 354);
        let mut transaction = Transaction {
            replies,
            end_of_data: None,
            end_of_data_latency: None,
        };
        if data_started {
            for part in message {
                self.write_all(part).await?;
            }
            let sent = std::time::Instant::now();
            self.send(b".\r\n").await?;
            transaction.end_of_data = Some(self.read_reply().await?);
            transaction.end_of_data_latency = Some(sent.elapsed());
        }
        Ok(transaction)
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Closed => Err(closed()),
        }
    }
}

/// `work`, failing with `TimedOut` when `limit` passes first.
async fn bounded<T>(
    limit: Option<Duration>,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let Some(limit) = limit else {
        return work.await;
    };
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("timed out after {limit:?}"),
        )),
    }
}

/// `MAIL FROM:<from>` with its ESMTP parameters (`SIZE=1234`, `BODY=8BITMIME`, ...), which the
/// caller has already encoded; no CRLF.
pub fn mail_command(from: &str, parameters: &[String]) -> String {
    with_parameters(format!("MAIL FROM:<{from}>"), parameters)
}

/// `RCPT TO:<to>` with its ESMTP parameters (`NOTIFY=NEVER`, ...); no CRLF.
pub fn rcpt_command(to: &str, parameters: &[String]) -> String {
    with_parameters(format!("RCPT TO:<{to}>"), parameters)
}

fn with_parameters(mut command: String, parameters: &[String]) -> String {
    for parameter in parameters {
        command.push(' ');
        command.push_str(parameter);
    }
    command
}

/// MAIL FROM, every RCPT TO and DATA, formatted once for any number of transactions.
pub struct Envelope {
    batch: Vec<u8>,
    commands: usize,
}

impl Envelope {
    pub fn new(from: &str, to: &[String]) -> Envelope {
        let recipients: Vec<String> = to.iter().map(|r| rcpt_command(r, &[])).collect();
        Envelope::from_commands(&mail_command(from, &[]), &recipients)
    }

    /// From command lines made by [`mail_command`] and [`rcpt_command`] (without CRLF).
    pub fn from_commands(mail: &str, recipients: &[String]) -> Envelope {
        let mut batch = format!("{mail}\r\n");
        for recipient in recipients {
            batch.push_str(recipient);
            batch.push_str("\r\n");
        }
        batch.push_str("DATA\r\n");
        Envelope {
            batch: batch.into_bytes(),
            commands: recipients.len() + 2,
        }
    }

    /// The bytes to write in one go (RFC 2920 pipelining).
    pub fn batch(&self) -> &[u8] {
        &self.batch
    }

    /// How many replies the batch calls for: MAIL, each RCPT, DATA.
    pub fn commands(&self) -> usize {
        self.commands
    }
}

/// The replies of one transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    pub replies: Vec<Reply>,
    pub end_of_data: Option<Reply>,
    /// From the final dot leaving to its reply arriving: how long the server took to store it.
    pub end_of_data_latency: Option<std::time::Duration>,
}

impl Transaction {
    /// Every reply of the transaction, in order.
    pub fn all_replies(&self) -> impl Iterator<Item = &Reply> {
        self.replies.iter().chain(&self.end_of_data)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

/// Doubles a dot at the start of every line (RFC 5321 §4.5.2) and makes sure the message ends
/// with CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    dot_stuffed_parts(message).concat()
}

/// [`dot_stuff`] as slices of the message itself, to be written in order: a part ends after
/// each dot that starts a line and the next part starts at that dot again, so the dot goes out
/// twice and nothing is copied (delivery sends every message this way).
pub fn dot_stuffed_parts(message: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut line_start = true;
    for (index, &byte) in message.iter().enumerate() {
        if line_start && byte == b'.' {
            parts.push(&message[start..=index]);
            start = index;
        }
        line_start = byte == b'\n';
    }
    if start < message.len() {
        parts.push(&message[start..]);
    }
    if !message.ends_with(b"\r\n") {
        parts.push(b"\r\n");
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_one_batch_of_mail_rcpt_and_data() {
        let envelope = Envelope::new("a@b.c", &["d@e.f".to_string(), "g@h.i".to_string()]);
        assert_eq!(
            envelope.batch,
            b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<g@h.i>\r\nDATA\r\n"
        );
        assert_eq!(envelope.commands, 4);
    }

    #[test]
    fn commands_carry_their_parameters() {
        let mail = mail_command("a@b.c", &["SIZE=10".into(), "BODY=8BITMIME".into()]);
        assert_eq!(mail, "MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME");
        assert_eq!(rcpt_command("d@e.f", &[]), "RCPT TO:<d@e.f>");
        let rcpt = rcpt_command("d@e.f", &["NOTIFY=NEVER".into()]);
        let envelope = Envelope::from_commands(&mail, &[rcpt]);
        assert_eq!(
            envelope.batch(),
            b"MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<d@e.f> NOTIFY=NEVER\r\nDATA\r\n"
        );
        assert_eq!(envelope.commands(), 3);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { listener.accept().await });
        let mut connection = Connection::plain(TcpStream::connect(address).await.unwrap());
        connection.set_timeout(Some(Duration::from_millis(50)));
        let error = connection.read_reply().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(server);
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_crlf() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..c"), b"..a\r\nb\r\n...c\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n");
        assert_eq!(
            dot_stuffed_parts(b"a\r\n.b\r\n"),
            [&b"a\r\n."[..], b".b\r\n"],
            "slices of the message, the dot at the seam of two"
        );
        assert_eq!(dot_stuffed_parts(b"plain\r\n"), [&b"plain\r\n"[..]]);
    }

    #[test]
    fn reply_helpers() {
        let reply = Reply {
            code: 250,
            lines: vec![
                "mx greets you".into(),
                "size 1000".into(),
                "AUTH PLAIN LOGIN".into(),
            ],
        };
        assert_eq!(reply.extensions(), ["SIZE 1000", "AUTH PLAIN LOGIN"]);
        assert_eq!(reply.enhanced(), None);
        assert_eq!(
            reply.to_string(),
            "250-mx greets you\n250-size 1000\n250 AUTH PLAIN LOGIN"
        );
        let refused = Reply {
            code: 535,
            lines: vec!["5.7.8 Authentication credentials invalid".into()],
        };
        assert_eq!(refused.enhanced(), Some("5.7.8"));
        assert_eq!(
            refused.summary(),
            "535 5.7.8 Authentication credentials invalid"
        );
        assert!(!refused.is_positive());
    }
}
