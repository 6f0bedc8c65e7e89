//! `portcullis serve`: assembles spool, accounts, TLS and listeners from the configuration,
//! reloads it on SIGHUP, runs until SIGINT or SIGTERM, then shuts down without losing anything
//! acknowledged.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::accounts::SqliteStore;
use crate::auth::Authenticator;
use crate::auth::guard::LoginProtection;
use crate::config::{Config, ListenerConfig, ListenerMode};
use crate::delivery::Agent;
use crate::delivery::client::{ClientSettings, PlaintextFallback};
use crate::dkim;
use crate::http;
use crate::listener::{Listener, Phase, ServerSettings, Shared};
use crate::policy::{ConnectionLimiter, HostPolicy, QuotaBook, StoreHostPolicy, StoreSenderPolicy};
use crate::privileges;
use crate::queue::driver::{self, QueueManager};
use crate::queue::manager;
use crate::reload;
use crate::routing::{DnsResolver, NoResolver, Resolver, RouteTable, Router};
use crate::sd_notify;
use crate::smtp::Limits;
use crate::smtp::budget::MemoryBudget;
use crate::spool::SegmentLog;
use crate::tls::{self, DomainCertificates};

/// A start-up failure, with the exit status it deserves (sysexits).
pub struct StartError {
    pub status: u8,
    pub message: String,
}

use crate::cli::{EX_CANTCREAT, EX_CONFIG, EX_OSERR};

fn fail(status: u8, message: impl Into<String>) -> StartError {
    StartError {
        status,
        message: message.into(),
    }
}

/// Reads the configuration again (the file and the command line's overrides) for a reload.
pub type Reread = Box<dyn Fn() -> Result<Config, String> + Send>;

pub fn run(config: Config, reread: Reread) -> Result<(), StartError> {
    return_large_allocations_to_the_system();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(EX_OSERR, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(config, reread))
}

async fn serve(config: Config, reread: Reread) -> Result<(), StartError> {
    // Before anything can connect: a SIGTERM that arrived before the handlers existed would
    // kill the process outright instead of draining it.
    let mut signals =
        Signals::install().map_err(|e| fail(EX_OSERR, format!("cannot handle signals: {e}")))?;
    // Bound while still root (ports below 1024), before the data directory is touched.
    let mut sockets = Vec::new();
    for listener in &config.listeners {
        let socket = TcpListener::bind(listener.address).await.map_err(|e| {
            fail(
                EX_OSERR,
                format!("cannot listen on {}: {e}", listener.address),
            )
        })?;
        sockets.push(socket);
    }
    let http_socket = match &config.http {
        Some(http) => Some(TcpListener::bind(http.address).await.map_err(|e| {
            fail(
                EX_OSERR,
                format!("http: cannot listen on {}: {e}", http.address),
            )
        })?),
        None => None,
    };
    drop_privileges(&config)?;
    let data_dir = &config.data_dir;
    fs::create_dir_all(data_dir)
        .map_err(|e| fail(EX_CANTCREAT, format!("{}: {e}", data_dir.display())))?;
    let _lock = lock_data_dir(data_dir)?;
    keep_private(data_dir);
    let spool_dir = data_dir.join("spool");
    let (announcer, inbox) = driver::channel();
    let (spool, recovery) = SegmentLog::open_notifying(&spool_dir, Some(announcer.notifier()))
        .map_err(|e| fail(EX_CANTCREAT, format!("{}: {e}", spool_dir.display())))?;
    let spool = Arc::new(spool);
    let mut queue = start_queue(
        &config,
        Arc::clone(&spool),
        recovery.active_segment,
        announcer,
        inbox,
    )?;
    let store =
        Arc::new(SqliteStore::open(data_dir).map_err(|e| fail(EX_CANTCREAT, e.to_string()))?);
    let authenticator = Arc::new(Authenticator::new(store.clone()).map_err(|e| fail(EX_OSERR, e))?);
    // The record of logins gets its own connection: its batched writes (and their fsyncs) never
    // hold up the account look-ups of logins in progress.
    let journal =
        Arc::new(SqliteStore::open(data_dir).map_err(|e| fail(EX_CANTCREAT, e.to_string()))?);
    let logins = Arc::new(
        LoginProtection::start(config.auth.login_policy(), journal)
            .map_err(|e| fail(EX_CANTCREAT, e))?,
    );
    // Quota counters are written once a second on their own connection, for the same reason.
    let quota_store =
        Arc::new(SqliteStore::open(data_dir).map_err(|e| fail(EX_CANTCREAT, e.to_string()))?);
    let quotas = Arc::new(
        QuotaBook::start(config.quotas.clone(), quota_store).map_err(|e| fail(EX_CANTCREAT, e))?,
    );
    let tls_files = config
        .tls
        .as_ref()
        .map(|t| (t.certificate.as_path(), t.key.as_path()));
    let server_tls = tls::server_config(tls_files, data_dir, &config.hostname)
        .map_err(|e| fail(EX_CONFIG, e))?;
    let default_certificate = Arc::clone(&server_tls.resolver);
    let mut certificates = DomainCertificates::new(server_tls.resolver);
    refresh_certificates(&store, &mut certificates);
    let dkim = Arc::new(dkim::Signer::new(data_dir));
    let refresh_now = keep_files_fresh(Arc::clone(&store), certificates, Arc::clone(&dkim))?;
    let acceptor = TlsAcceptor::from(server_tls.config);
    let origin = server_tls.origin;

    let implicit_tls_port = implicit_tls_port(&sockets, &config.listeners);
    let server_settings = server_settings(&config, implicit_tls_port);
    let memory = MemoryBudget::new(config.limits.max_memory_in_flight);
    let mut listeners = Vec::new();
    for (socket, listener) in sockets.into_iter().zip(&config.listeners) {
        let bound = Listener::new(
            socket,
            listener,
            &server_settings,
            Arc::clone(&memory),
            Some(acceptor.clone()),
        )
        .map_err(|e| fail(EX_OSERR, format!("{}: {e}", listener.address)))?;
        listeners.push(bound);
    }
    announce(
        &config,
        &listeners,
        http_socket.as_ref(),
        &origin,
        recovery.messages,
    );

    let (phase_sender, phase) = watch::channel(Phase::Running);
    let limiter = ConnectionLimiter::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    if let Some(socket) = http_socket {
        let api = http::Api {
            data_dir: data_dir.clone(),
            quotas: config.quotas.clone(),
            store: Arc::new(
                SqliteStore::open(data_dir).map_err(|e| fail(EX_CANTCREAT, e.to_string()))?,
            ),
            queue: queue.probe(),
            memory: Arc::clone(&memory),
            limiter: Arc::clone(&limiter),
            token: config.http.as_ref().and_then(|http| http.token.clone()),
            started: std::time::Instant::now(),
        };
        tokio::spawn(http::serve(socket, api, phase.clone()));
    }
    let (shared_sender, shared) = watch::channel(Arc::new(Shared {
        spool: spool.clone(),
        authenticator: Arc::clone(&authenticator),
        logins: Arc::clone(&logins),
        host_policy: config
            .policy
            .require_host_match
            .then(|| Arc::new(StoreHostPolicy(Arc::clone(&store))) as Arc<dyn HostPolicy>),
        sender_policy: Arc::new(StoreSenderPolicy(store)),
        dkim,
        quotas: Arc::clone(&quotas),
        limiter: Arc::clone(&limiter),
        timeouts: config.timeouts.clone(),
        phase,
    }));
    let mut live = Live {
        config,
        implicit_tls_port,
        default_certificate,
        listeners: listeners.iter().map(Listener::settings).collect(),
        shared: shared_sender,
        reread,
    };
    for listener in listeners {
        tokio::spawn(listener.run(shared.clone()));
    }
    sd_notify::ready();

    while signals.next().await == Signal::Reload {
        sd_notify::reloading();
        live.reload();
        // Domain certificates and DKIM keys are files: read them again too.
        let _ = refresh_now.send(());
        sd_notify::ready();
    }
    sd_notify::stopping();
    let config = live.config;
    tracing::info!(
        open = limiter.open_connections(),
        "shutting down: finishing messages in progress"
    );
    let _ = phase_sender.send(Phase::Draining);
    if tokio::time::timeout(config.timeouts.shutdown_grace, limiter.wait_until_idle())
        .await
        .is_err()
    {
        let _ = phase_sender.send(Phase::Aborting);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), limiter.wait_until_idle())
            .await;
    }
    queue.stop();
    spool.close();
    logins.close();
    quotas.close();
    tracing::info!(password_checks = authenticator.verifications(), "stopped");
    Ok(())
}

/// As root with `[server] user`: gives the data directory to the user and becomes it. As root
/// without one: a loud warning (a service manager may have confined the process already).
fn drop_privileges(config: &Config) -> Result<(), StartError> {
    let Some(user) = &config.server.user else {
        if privileges::is_root() {
            tracing::warn!(
                "running as root: set [server] user so that a flaw in the server does not give away the machine"
            );
        }
        return Ok(());
    };
    let identity = privileges::look_up(user, config.server.group.as_deref())
        .map_err(|e| fail(EX_CONFIG, format!("server.user: {e}")))?;
    if !privileges::is_root() {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        if uid != identity.uid {
            tracing::warn!(%user, uid, "not started as root: [server] user is ignored");
        }
        return Ok(());
    }
    privileges::give_data_dir(&config.data_dir, &identity).map_err(|e| {
        fail(
            EX_CANTCREAT,
            format!("cannot give {} to {user}: {e}", config.data_dir.display()),
        )
    })?;
    privileges::become_user(&identity).map_err(|e| fail(EX_OSERR, e))?;
    tracing::info!(%user, uid = identity.uid, gid = identity.gid, "dropped root privileges");
    Ok(())
}

/// Starts outbound delivery: the router (static routes, then DNS), the delivery agent and the
/// queue manager, which recovers what the spool and the state log hold.
fn start_queue(
    config: &Config,
    spool: Arc<SegmentLog>,
    active_segment: u32,
    announcer: driver::Announcer,
    inbox: driver::Inbox,
) -> Result<QueueManager, StartError> {
    let delivery = &config.delivery;
    let resolver: Arc<dyn Resolver> = match DnsResolver::new(&delivery.dns_servers) {
        Ok(resolver) => Arc::new(resolver),
        // Configured servers that cannot be used are the operator's mistake; a machine without
        // a resolver configuration should still accept mail (and defer it, saying why).
        Err(error) if delivery.dns_servers.is_empty() => {
            tracing::warn!(%error, "no DNS: mail is deferred until [delivery] dns_servers is set or the system has a resolver");
            Arc::new(NoResolver(error))
        }
        Err(error) => {
            return Err(fail(
                EX_CONFIG,
                format!("delivery: cannot set up DNS: {error}"),
            ));
        }
    };
    let table = RouteTable::new(config.routes.clone()).map_err(|e| fail(EX_CONFIG, e))?;
    let destinations = table.clone();
    let router = Router::new(table, resolver, delivery.mx_port, delivery.tls);
    let settings = ClientSettings {
        helo_name: delivery
            .helo_name
            .clone()
            .unwrap_or_else(|| config.hostname.clone()),
        connect_timeout: delivery.connect_timeout,
        command_timeout: delivery.command_timeout,
        data_timeout: delivery.data_timeout,
        verify_roots: Arc::new(crate::client::system_roots()),
    };
    let runtime = tokio::runtime::Handle::current();
    let spool_dir = config.data_dir.join("spool");
    let agent = Agent::new(
        router,
        settings,
        PlaintextFallback::new(PLAINTEXT_FALLBACK_MEMORY),
        spool_dir,
        runtime.clone(),
    );
    let context = driver::Context {
        data_dir: config.data_dir.clone(),
        hostname: config.hostname.clone(),
        settings: manager::Settings {
            enabled: delivery.enabled,
            retry: delivery.retry.clone(),
            concurrency_per_destination: delivery.concurrency_per_destination,
            max_connections: delivery.max_connections,
            messages_per_connection: delivery.messages_per_connection,
            recipients_per_transaction: delivery.recipients_per_transaction,
        },
        destination_of: Box::new(move |domain| destination_of(&destinations, domain)),
        spool,
        transport: Arc::new(agent),
        runtime,
        active_segment,
    };
    QueueManager::start(context, announcer, inbox)
        .map_err(|e| fail(EX_CANTCREAT, format!("cannot start the queue: {e}")))
}

/// How long a host whose STARTTLS handshake failed gets plaintext under `tls = "may"`.
const PLAINTEXT_FALLBACK_MEMORY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The queue's unit of concurrency and back-off: the relay a route names (shared by all the
/// domains routed there), else the recipient's domain.
fn destination_of(table: &RouteTable, domain: &str) -> String {
    match table
        .route_for(domain)
        .and_then(|route| route.relay.as_ref())
    {
        Some(relay) => format!("[{relay}]"),
        None => crate::routing::normalize(domain),
    }
}

/// Refreshes the per-domain certificates and the DKIM keys from a thread of its own: it reads
/// the store and files, which must not hold up the runtime's threads. It refreshes every
/// [`tls::REFRESH_INTERVAL`] and whenever the returned sender says so (a reload).
fn keep_files_fresh(
    store: Arc<SqliteStore>,
    mut certificates: DomainCertificates,
    dkim: Arc<dkim::Signer>,
) -> Result<std::sync::mpsc::Sender<()>, StartError> {
    use std::sync::mpsc::RecvTimeoutError;
    let (refresh_now, asked) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("refresh-files".into())
        .spawn(move || {
            while let Ok(()) | Err(RecvTimeoutError::Timeout) =
                asked.recv_timeout(tls::REFRESH_INTERVAL)
            {
                refresh_certificates(&store, &mut certificates);
                dkim.refresh();
            }
        })
        .map(|_| refresh_now)
        .map_err(|e| {
            fail(
                EX_OSERR,
                format!("cannot start the certificate and DKIM key refresh: {e}"),
            )
        })
}

fn refresh_certificates(store: &SqliteStore, certificates: &mut DomainCertificates) {
    match store.domains() {
        Ok(domains) => certificates.refresh(&domains),
        Err(error) => {
            tracing::error!(%error, "cannot read the domains; their certificates stay as they were")
        }
    }
}

/// Makes every allocation of 1 MiB or more a separate mapping that goes back to the system when
/// freed. Without this, glibc raises its mmap threshold after the first large free and later
/// 19 MiB argon2 blocks (and large messages) stay in per-thread arenas: measured, 216 MiB of
/// resident memory after 20 logins instead of the ~40 MiB the verification threads need.
fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn server_settings(config: &Config, implicit_tls_port: Option<u16>) -> ServerSettings {
    ServerSettings {
        hostname: config.hostname.clone(),
        limits: session_limits(config),
        check_header_from: config.policy.check_header_from,
        implicit_tls_port,
    }
}

/// The port clients reach implicit TLS on, as bound (the configuration may say port 0).
fn implicit_tls_port(sockets: &[TcpListener], listeners: &[ListenerConfig]) -> Option<u16> {
    sockets
        .iter()
        .zip(listeners)
        .find(|(_, listener)| listener.mode == ListenerMode::Submissions)
        .and_then(|(socket, _)| socket.local_addr().ok())
        .map(|address| address.port())
}

fn session_limits(config: &Config) -> Limits {
    let limits = &config.limits;
    Limits {
        max_message_size: limits.max_message_size,
        max_recipients: limits.max_recipients,
        max_errors: limits.max_errors,
        max_command_line: limits.max_command_line,
        max_text_line: limits.max_text_line,
        bare_line_endings: limits.bare_line_endings,
        ..Limits::default()
    }
}

/// Whether a server holds the data directory's lock (for the CLI: commands for the queue are
/// applied by a running server, or at the next start).
pub fn is_running(data_dir: &Path) -> bool {
    let Ok(file) = OpenOptions::new()
        .write(true)
        .open(data_dir.join("portcullis.lock"))
    else {
        return false;
    };
    file.try_lock().is_err()
}

/// Two servers on one data directory would interleave spool writes: refuse the second.
/// The data directory holds password hashes and every message: only the server's user may
/// enter it. New files are private already (the umask, see `cli::main`); a directory made by an
/// older version or by hand is tightened once, saying so.
fn keep_private(data_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = fs::metadata(data_dir) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    match fs::set_permissions(data_dir, fs::Permissions::from_mode(mode & 0o700)) {
        Ok(()) => tracing::warn!(
            data_dir = %data_dir.display(),
            was = format!("{mode:o}"),
            "the data directory was open to other users; it is now {:o}",
            mode & 0o700
        ),
        Err(error) => tracing::warn!(
            data_dir = %data_dir.display(),
            %error,
            "the data directory is open to other users and cannot be made private"
        ),
    }
}

fn lock_data_dir(data_dir: &Path) -> Result<File, StartError> {
    let path = data_dir.join("portcullis.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fail(EX_CANTCREAT, format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => Err(fail(
            EX_CANTCREAT,
            format!(
                "{} is in use by another running portcullis; stop it or choose another --data-dir",
                data_dir.display()
            ),
        )),
    }
}

fn announce(
    config: &Config,
    listeners: &[Listener],
    http: Option<&TcpListener>,
    origin: &tls::Origin,
    recovered: usize,
) {
    println!(
        "Portcullis {} as {} (data in {})",
        env!("CARGO_PKG_VERSION"),
        config.hostname,
        config.data_dir.display()
    );
    for listener in listeners {
        let address = listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let mode = match listener.mode() {
            ListenerMode::Submission => "submission: STARTTLS, then AUTH",
            ListenerMode::Submissions => "submissions: implicit TLS, then AUTH",
        };
        println!("  listening on {address} ({mode})");
    }
    if let Some(http) = http {
        let address = http
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let access = match config.http.as_ref().and_then(|h| h.token.as_ref()) {
            Some(_) => "bearer token required",
            None => "loopback clients only",
        };
        println!("  http on {address}: /metrics and /api/ ({access})");
    }
    match origin {
        tls::Origin::Configured => println!("  TLS: configured certificate"),
        tls::Origin::Generated(dir) => println!(
            "  TLS: generated a self-signed certificate in {} (clients must trust it or skip verification)",
            dir.display()
        ),
        tls::Origin::Renewed(dir, reason) => println!(
            "  TLS: generated a new self-signed certificate in {} because {reason}",
            dir.display()
        ),
        tls::Origin::Reused(dir) => {
            println!("  TLS: self-signed certificate from {}", dir.display())
        }
    }
    println!("  spool: {recovered} message(s) on disk");
    println!(
        "Add an account:  portcullis accounts add you@example.com --data-dir {}",
        config.data_dir.display()
    );
    println!("Stop with Ctrl-C (SIGINT) or SIGTERM.");
}

/// What the running server can change on a reload, and how to read the file again.
struct Live {
    config: Config,
    /// A reload keeps the listeners, so the port to name stays the one bound at start.
    implicit_tls_port: Option<u16>,
    /// Serves `[tls]`'s certificate (or the generated one), read again at each reload.
    default_certificate: Arc<tls::SniResolver>,
    listeners: Vec<crate::listener::Settings>,
    shared: watch::Sender<Arc<Shared>>,
    reread: Reread,
}

impl Live {
    /// Applies the file as it is now, or keeps the running configuration and says why; one
    /// log line either way. A bad file never stops the server.
    fn reload(&mut self) {
        let new = match (self.reread)() {
            Ok(new) => new,
            Err(reason) => {
                tracing::error!(%reason, "reload refused: the running configuration is kept");
                return;
            }
        };
        match reload::plan(&self.config, &new) {
            reload::Plan::NeedsRestart(keys) => tracing::error!(
                needs_restart = keys.join(", "),
                "reload refused: these change only with a restart; the running configuration is kept"
            ),
            reload::Plan::Apply(changed) => {
                // Read first: a certificate that cannot be used refuses the whole reload.
                if let Err(reason) = self.reread_certificate(&new) {
                    tracing::error!(%reason, "reload refused: the running configuration and certificate are kept");
                    return;
                }
                self.apply(new);
                let changed = if changed.is_empty() {
                    "nothing".to_owned()
                } else {
                    changed.join(", ")
                };
                tracing::info!(%changed, "reloaded the configuration");
            }
        }
    }

    /// Reads `new`'s default certificate (the same files renewed in place, or others) and
    /// serves it from the next handshake on.
    fn reread_certificate(&self, new: &Config) -> Result<(), String> {
        let files = new
            .tls
            .as_ref()
            .map(|t| (t.certificate.as_path(), t.key.as_path()));
        let (certificate, _) = tls::default_certificate(files, &new.data_dir, &new.hostname)?;
        self.default_certificate
            .replace_default(Arc::new(certificate));
        Ok(())
    }

    /// New sessions get `new`'s settings; sessions in progress keep theirs.
    fn apply(&mut self, new: Config) {
        let server = server_settings(&new, self.implicit_tls_port);
        for (settings, listener) in self.listeners.iter().zip(&new.listeners) {
            settings.update(listener, &server);
        }
        self.shared.send_modify(|shared| {
            *shared = Arc::new(Shared {
                timeouts: new.timeouts.clone(),
                ..Shared::clone(shared)
            });
        });
        self.config = new;
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGHUP.
    Reload,
    /// SIGINT or SIGTERM.
    Stop,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}
