//! Listeners: bind the configured addresses, admit connections within the caps, and hand each
//! one to [`connection`], which drives an SMTP [`Session`](crate::smtp::Session) over it.

mod connection;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
use crate::auth::guard::LoginProtection;
use crate::config::{Cidr, ListenerConfig, ListenerMode, Timeouts};
use crate::metrics::{self, ListenerMetrics};
use crate::policy::{self, ConnectionLimiter, HostPolicy, QuotaBook, Refusal, SenderPolicy};
use crate::smtp::budget::MemoryBudget;
use crate::smtp::{Limits, SessionConfig, reply};
use crate::spool::Spool;

/// The server's life cycle, watched by every listener and connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// No new connections; sessions close at their next command; messages in DATA finish.
    Draining,
    /// The grace period is over: everything closes now, DATA included (with 421).
    Aborting,
}

/// What every connection shares. A reload replaces it (with new timeouts) for the
/// connections accepted afterwards.
#[derive(Clone)]
pub struct Shared {
    pub spool: Arc<dyn Spool>,
    pub authenticator: Arc<Authenticator>,
    pub logins: Arc<LoginProtection>,
    /// Only with `[policy] require_host_match`.
    pub host_policy: Option<Arc<dyn HostPolicy>>,
    pub sender_policy: Arc<dyn SenderPolicy>,
    /// The active DKIM keys, refreshed from their files by the server.
    pub dkim: Arc<crate::dkim::Signer>,
    pub quotas: Arc<QuotaBook>,
    pub limiter: Arc<ConnectionLimiter>,
    pub timeouts: Timeouts,
    pub phase: watch::Receiver<Phase>,
}

/// One bound listening socket and what its sessions need to know.
pub struct Listener {
    tcp: TcpListener,
    context: watch::Receiver<Arc<ListenerContext>>,
    settings: Settings,
}

/// Changes the settings of a listener's future sessions (a reload); sessions in progress keep
/// the ones they started with.
pub struct Settings {
    sender: watch::Sender<Arc<ListenerContext>>,
}

struct ListenerContext {
    /// The bound address, for the log.
    address: SocketAddr,
    mode: ListenerMode,
    trusted_networks: Vec<Cidr>,
    session: Arc<SessionConfig>,
    tls: Option<TlsAcceptor>,
    metrics: ListenerMetrics,
}

impl Listener {
    /// A listener on `tcp`, bound beforehand to `config.address` (as root, before privileges
    /// are dropped).
    pub fn new(
        tcp: TcpListener,
        config: &ListenerConfig,
        server: &ServerSettings,
        memory: Arc<MemoryBudget>,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<Listener> {
        let context = ListenerContext::new(tcp.local_addr()?, config, server, memory, tls);
        let (sender, context) = watch::channel(Arc::new(context));
        Ok(Listener {
            tcp,
            context,
            settings: Settings { sender },
        })
    }

    /// The handle that changes this listener's settings; keep it before [`Listener::run`].
    pub fn settings(&self) -> Settings {
        Settings {
            sender: self.settings.sender.clone(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn mode(&self) -> ListenerMode {
        self.context.borrow().mode
    }

    /// Accepts connections until the server leaves the running phase; each connection gets
    /// the shared state and settings current when it was accepted.
    pub async fn run(self, shared: watch::Receiver<Arc<Shared>>) {
        let mut phase = shared.borrow().phase.clone();
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let current = Arc::clone(&shared.borrow());
                        self.admit(stream, peer, current);
                    }
                    Err(error) => {
                        // Usually EMFILE: back off instead of spinning on the error.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = phase_reaches(&mut phase, |p| p != Phase::Running) => return,
            }
        }
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
        let _ = stream.set_nodelay(true);
        let client_ip = policy::canonical(peer.ip());
        let client = SocketAddr::new(client_ip, peer.port());
        let context = Arc::clone(&self.context.borrow());
        match shared.limiter.admit(client_ip) {
            Ok(slot) => {
                let counters = context.metrics.clone();
                counters.accepted.inc();
                counters.open.inc();
                tokio::spawn(async move {
                    connection::serve(stream, client, context, shared).await;
                    counters.open.dec();
                    drop(slot);
                });
            }
            Err(refusal) if context.mode == ListenerMode::Submission => {
                tokio::spawn(refuse(stream, client, refusal));
            }
            // An implicit-TLS client could not read a reply: it is only logged.
            Err(refusal) => {
                tracing::info!(%client_ip, ?refusal, "connection refused");
            }
        }
    }
}

/// Resolves once the phase satisfies `condition` (or the server is gone). Returns nothing, so
/// that no borrow of the watched value is held across an await.
async fn phase_reaches(phase: &mut watch::Receiver<Phase>, condition: impl Fn(Phase) -> bool) {
    let _ = phase.wait_for(|p| condition(*p)).await;
}

/// The settings every listener gives its sessions, from the server's configuration.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub hostname: String,
    pub limits: Limits,
    pub check_header_from: bool,
    /// The implicit-TLS listener's port, which STARTTLS listeners name in their 530.
    pub implicit_tls_port: Option<u16>,
}

impl Settings {
    /// Future sessions use `config`'s host name and trusted networks and `server`'s settings;
    /// the socket, its mode and TLS stay as they are.
    pub fn update(&self, config: &ListenerConfig, server: &ServerSettings) {
        self.sender.send_modify(|context| {
            *context = Arc::new(ListenerContext::new(
                context.address,
                config,
                server,
                // One budget for the server's life: a reload keeps the reservations in force.
                Arc::clone(&context.session.memory),
                context.tls.clone(),
            ));
        });
    }
}

impl ListenerContext {
    fn new(
        address: SocketAddr,
        config: &ListenerConfig,
        server: &ServerSettings,
        memory: Arc<MemoryBudget>,
        tls: Option<TlsAcceptor>,
    ) -> ListenerContext {
        let starttls_available =
            config.mode == ListenerMode::Submission && config.starttls && tls.is_some();
        let session = SessionConfig {
            hostname: config
                .hostname
                .clone()
                .unwrap_or_else(|| server.hostname.clone()),
            starttls_available,
            limits: server.limits.clone(),
            check_header_from: server.check_header_from,
            clock: std::time::SystemTime::now,
            memory,
            ports: reply::Ports {
                own: address.port(),
                implicit_tls: server.implicit_tls_port,
            },
        };
        ListenerContext {
            address,
            mode: config.mode,
            trusted_networks: config.trusted_networks.clone(),
            session: Arc::new(session),
            tls: tls.filter(|_| starttls_available || config.mode == ListenerMode::Submissions),
            // The same counters again after a reload: they are the address's.
            metrics: metrics::global().listener(&address.to_string()),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_networks
            .iter()
            .any(|network| network.contains(ip))
    }
}

/// Tells a plaintext client why it is turned away (an implicit-TLS client cannot read it).
async fn refuse(mut stream: TcpStream, client: SocketAddr, refusal: Refusal) {
    let reply = match refusal {
        Refusal::TooManyInTotal => reply::TOO_MANY_CONNECTIONS,
        Refusal::TooManyFromAddress => reply::TOO_MANY_CONNECTIONS_FROM_IP,
    };
    connection::log_refusal(client, "CONNECT", &reply);
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&wire)).await;
    let _ = stream.shutdown().await;
}
