//! The client connection as the check uses it: every wait bounded by `--timeout`, every line
//! recorded for `--verbose` with credentials replaced, and connection failures told apart (DNS,
//! refused, timed out, unreachable) because each has a different fix.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::{Connection, Reply, dot_stuff};
use crate::smtp::TlsInfo;

/// The transcript shared by every connection of one check (single-threaded runtime, and never
/// borrowed across an await).
pub type Log = Rc<RefCell<Vec<String>>>;

fn note(log: &Log, line: String) {
    log.borrow_mut().push(line);
}

/// A failed read, write or handshake.
#[derive(Debug)]
pub enum NetError {
    Timeout(Duration),
    Io(io::Error),
}

impl NetError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, NetError::Timeout(_))
    }

    /// The rustls error behind a failed handshake, if that is what it was.
    pub fn tls_error(&self) -> Option<&rustls::Error> {
        match self {
            NetError::Io(error) => error.get_ref()?.downcast_ref::<rustls::Error>(),
            NetError::Timeout(_) => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, NetError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ))
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Timeout(limit) => {
                write!(f, "no answer within {} s (--timeout)", limit.as_secs())
            }
            NetError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                f.write_str("the server closed the connection")
            }
            NetError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                f.write_str("the server reset the connection")
            }
            NetError::Io(e) => write!(f, "{e}"),
        }
    }
}

async fn bounded<T>(
    limit: Duration,
    work: impl Future<Output = io::Result<T>>,
) -> Result<T, NetError> {
    match timeout(limit, work).await {
        Ok(result) => result.map_err(NetError::Io),
        Err(_) => Err(NetError::Timeout(limit)),
    }
}

/// Why no TCP connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    Dns(String),
    Refused(SocketAddr),
    TimedOut(SocketAddr),
    Unreachable(SocketAddr, String),
    Other(SocketAddr, String),
}

/// Resolves `host` and connects to each address in turn; the last error is reported when
/// none answers.
pub async fn tcp_connect(
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let addresses: Vec<SocketAddr> =
        match timeout(limit, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(found)) => found.collect(),
            Ok(Err(e)) => return Err(ConnectError::Dns(e.to_string())),
            Err(_) => {
                return Err(ConnectError::Dns(format!(
                    "no answer within {} s",
                    limit.as_secs()
                )));
            }
        };
    let mut last = ConnectError::Dns("the name has no addresses".to_string());
    for address in addresses {
        match timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok((stream, address)),
            Ok(Err(e)) => last = classify(address, &e),
            Err(_) => last = ConnectError::TimedOut(address),
        }
    }
    Err(last)
}

fn classify(address: SocketAddr, error: &io::Error) -> ConnectError {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused(address),
        io::ErrorKind::TimedOut => ConnectError::TimedOut(address),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            ConnectError::Unreachable(address, error.to_string())
        }
        _ => ConnectError::Other(address, error.to_string()),
    }
}

/// One SMTP connection of the check.
pub struct Smtp {
    connection: Connection,
    limit: Duration,
    log: Log,
}

impl Smtp {
    pub fn plain(stream: TcpStream, limit: Duration, log: Log) -> Smtp {
        Smtp {
            connection: Connection::plain(stream),
            limit,
            log,
        }
    }

    pub async fn implicit_tls(
        stream: TcpStream,
        config: Arc<ClientConfig>,
        server_name: &str,
        limit: Duration,
        log: Log,
    ) -> Result<Smtp, NetError> {
        let handshake = Connection::implicit_tls(stream, config, server_name);
        let connection = bounded(limit, handshake).await.inspect_err(|e| {
            note(&log, format!("-- TLS handshake failed: {e}"));
        })?;
        let smtp = Smtp {
            connection,
            limit,
            log,
        };
        smtp.note_tls();
        Ok(smtp)
    }

    /// After a 220 to STARTTLS.
    pub async fn starttls(
        &mut self,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<(), NetError> {
        let handshake = self.connection.handshake(config, server_name);
        let result = bounded(self.limit, handshake).await;
        match &result {
            Ok(()) => self.note_tls(),
            Err(e) => note(&self.log, format!("-- TLS handshake failed: {e}")),
        }
        result
    }

    fn note_tls(&self) {
        if let Some(tls) = &self.connection.tls {
            note(
                &self.log,
                format!("-- TLS established: {} {}", tls.version, tls.cipher),
            );
        }
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.connection.tls.as_ref()
    }

    pub fn leaf_certificate(&self) -> Option<&[u8]> {
        self.connection
            .peer_certificates
            .first()
            .map(|c| c.as_ref())
    }

    pub async fn read_reply(&mut self) -> Result<Reply, NetError> {
        let result = bounded(self.limit, self.connection.read_reply()).await;
        match &result {
            Ok(reply) => {
                for line in reply.to_string().lines() {
                    note(&self.log, format!("S: {line}"));
                }
            }
            Err(e) => note(&self.log, format!("-- {e}")),
        }
        result
    }

    pub async fn command(&mut self, line: &str) -> Result<Reply, NetError> {
        self.secret(line, line).await
    }

    /// Sends `line` but records `shown` in the transcript.
    pub async fn secret(&mut self, line: &str, shown: &str) -> Result<Reply, NetError> {
        note(&self.log, format!("C: {shown}"));
        let bytes = format!("{line}\r\n");
        bounded(self.limit, self.connection.send(bytes.as_bytes())).await?;
        self.read_reply().await
    }

    /// AUTH PLAIN with the initial response; the password may be any bytes.
    pub async fn auth_plain(&mut self, user: &str, password: &[u8]) -> Result<Reply, NetError> {
        let mut response = vec![0];
        response.extend_from_slice(user.as_bytes());
        response.push(0);
        response.extend_from_slice(password);
        let line = format!("AUTH PLAIN {}", BASE64.encode(response));
        self.secret(&line, "AUTH PLAIN <redacted>").await
    }

    /// AUTH LOGIN, answering the user-name and password prompts.
    pub async fn auth_login(&mut self, user: &str, password: &[u8]) -> Result<Reply, NetError> {
        let reply = self.command("AUTH LOGIN").await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        let reply = self
            .secret(&BASE64.encode(user), "<redacted user name>")
            .await?;
        if reply.code != 334 {
            return Ok(reply);
        }
        self.secret(&BASE64.encode(password), "<redacted password>")
            .await
    }

    /// The message after a 354; returns the reply to the final dot.
    pub async fn message(&mut self, message: &[u8]) -> Result<Reply, NetError> {
        let mut body = dot_stuff(message);
        body.extend_from_slice(b".\r\n");
        note(&self.log, format!("C: <message, {} octets>", message.len()));
        note(&self.log, "C: .".to_string());
        bounded(self.limit, self.connection.send(&body)).await?;
        self.read_reply().await
    }

    /// Ends the session politely; the answer does not matter any more.
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(2), self.command("QUIT")).await;
    }
}
