//! Server configuration: the TOML file format, its defaults and its validation.
//!
//! Every problem in a configuration file is reported as `FILE:LINE:COLUMN: KEY: REASON`, so an
//! operator can go straight to the offending text. Parsing happens in two stages:
//!
//! 1. `toml` deserializes the text into private `Raw*` structs that mirror the file. This stage
//!    catches syntax errors, unknown keys, missing keys and wrong types. The toml crate reports
//!    the byte span of the culprit but not a usable key path, so [`locate`] rebuilds the key path
//!    (`listener[1].mode`) from the span.
//! 2. The raw values, which still carry their spans, are checked and converted into [`Config`].
//!    Each check knows its own key path and points at the value it rejects.
//!
//! Listener indexes in key paths count from 0, like TOML array indexes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

const DEFAULT_DATA_DIR: &str = "./portcullis-data";
const FALLBACK_HOSTNAME: &str = "localhost";
const SYSTEM_HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";
const DEFAULT_SUBMISSION: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2587);
const DEFAULT_SUBMISSIONS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2465);
const DEFAULT_HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9587);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Used in the greeting, the EHLO reply and Received: header fields.
    pub hostname: String,
    pub data_dir: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    /// `None`: the server generates a self-signed certificate.
    pub tls: Option<TlsFiles>,
    pub limits: LimitsConfig,
    pub timeouts: Timeouts,
    pub auth: AuthConfig,
    pub policy: PolicyConfig,
    pub quotas: QuotaConfig,
    pub delivery: DeliveryConfig,
    /// `[[route]]`: static routes and smarthosts, in the order written.
    pub routes: Vec<crate::routing::Route>,
    pub log: LogConfig,
    pub server: ServerConfig,
    /// `[http]`: metrics and the read-only API; `None` (no section) keeps it off.
    pub http: Option<HttpConfig>,
}

/// The HTTP listener (`[http]`): Prometheus `/metrics` and the read-only JSON API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub address: SocketAddr,
    /// Read from `token_file` at load: every request must carry `Authorization: Bearer TOKEN`.
    /// `None`: only loopback clients are served.
    pub token: Option<String>,
}

/// Whom the server runs as (`[server]`): started as root, it binds its listeners and then
/// becomes this user (and group) before it reads any file of the data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerConfig {
    pub user: Option<String>,
    /// Default: the user's own group.
    pub group: Option<String>,
}

/// How the server logs (`[log]`); the level comes from `PORTCULLIS_LOG`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// One line per event: `key=value` text, or one JSON object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format: \"text\" or \"json\""
            )),
        }
    }
}

/// Outbound delivery (`[delivery]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryConfig {
    /// `false`: mail is accepted and queued but nothing is delivered until it is `true` again
    /// (maintenance, or a staging server that must not send).
    pub enabled: bool,
    /// Resolvers to ask (`ip:port`); empty means the system's (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// The port of MX hosts: 25, except in tests.
    pub mx_port: u16,
    /// The name sent in EHLO; `None` means [`Config::hostname`].
    pub helo_name: Option<String>,
    /// TLS policy of MX delivery, unless a route says otherwise.
    pub tls: crate::routing::TlsPolicy,
    /// `retry_seconds`, `max_queue_lifetime_seconds`, `delay_warning_seconds`.
    pub retry: crate::queue::schedule::RetryPolicy,
    /// Connections open at once to one destination.
    pub concurrency_per_destination: u32,
    /// Outbound connections open at once in all.
    pub max_connections: u32,
    /// Messages sent over one connection before it is closed.
    pub messages_per_connection: u32,
    /// RCPT commands in one transaction; more recipients for the same destination go in
    /// further transactions.
    pub recipients_per_transaction: usize,
    /// TCP connect, per address.
    pub connect_timeout: Duration,
    /// Greeting and the reply to each command (RFC 5321 §4.5.3.2: 5 minutes).
    pub command_timeout: Duration,
    /// The reply after the final dot (RFC 5321 §4.5.3.2: 10 minutes).
    pub data_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            enabled: true,
            dns_servers: Vec::new(),
            mx_port: 25,
            helo_name: None,
            tls: crate::routing::TlsPolicy::May,
            retry: crate::queue::schedule::RetryPolicy::default(),
            concurrency_per_destination: 10,
            max_connections: 100,
            messages_per_connection: 100,
            recipients_per_transaction: 50,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
        }
    }
}

/// Optional sending rules (`[policy]`), all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The addresses in the message's From: header must be ones the account may send as
    /// (550 5.7.1 after DATA otherwise), like the envelope sender.
    pub check_header_from: bool,
    /// An account may only log in at the host name that serves its domain (the TLS SNI name,
    /// or the listener's hostname without SNI).
    pub require_host_match: bool,
}

/// Default sending quotas of every account (`[quotas]`); 0 means no limit. Accounts may have
/// their own (`portcullis accounts quota`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaConfig {
    pub messages_per_hour: u64,
    pub recipients_per_day: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub mode: ListenerMode,
    /// Clients in these networks may submit without TLS or authentication.
    pub trusted_networks: Vec<Cidr>,
    /// Offer STARTTLS; only meaningful for [`ListenerMode::Submission`].
    pub starttls: bool,
    /// Overrides [`Config::hostname`] for this listener.
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// Plaintext (RFC 6409, port 587); STARTTLS is required before AUTH.
    Submission,
    /// Implicit TLS (RFC 8314, port 465).
    Submissions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub certificate: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_errors: u32,
    pub max_command_line: usize,
    pub max_text_line: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Octets of message data all sessions together may hold; a DATA beyond it gets 452 4.3.1.
    pub max_memory_in_flight: usize,
    /// What a bare LF or CR inside DATA does.
    pub bare_line_endings: crate::smtp::BareLineEndings,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_size: 26_214_400,
            max_recipients: 100,
            max_errors: 20,
            max_command_line: 512,
            max_text_line: 1000,
            max_connections: 1000,
            max_connections_per_ip: 100,
            max_memory_in_flight: default_memory_in_flight(),
            bare_line_endings: crate::smtp::BareLineEndings::Normalize,
        }
    }
}

/// A quarter of physical memory (1 GiB where /proc/meminfo cannot be read): enough for
/// dozens of the largest messages at once while the rest of the machine keeps room.
fn default_memory_in_flight() -> usize {
    const FALLBACK: usize = 1 << 30;
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|meminfo| mem_total_kib(&meminfo));
    total_kib.map_or(FALLBACK, |kib| kib.saturating_mul(1024) / 4)
}

fn mem_total_kib(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    pub command: Duration,
    pub data: Duration,
    /// The whole of one message's DATA, however steadily it trickles in.
    pub message: Duration,
    pub tls_handshake: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
            message: Duration::from_secs(1800),
            tls_handshake: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Brute-force protection (`[auth]`); see [`crate::policy::logins`] for the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub failure_window: Duration,
    pub delay_after_failures: u32,
    pub delay: Duration,
    pub max_delay: Duration,
    pub lock_after_failures: u32,
    pub lock: Duration,
    pub network_refuse_after_accounts: u32,
    pub network_refuse: Duration,
    pub remember_success: Duration,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            failure_window: Duration::from_secs(3600),
            delay_after_failures: 3,
            delay: Duration::from_millis(250),
            max_delay: Duration::from_millis(8000),
            lock_after_failures: 10,
            lock: Duration::from_secs(900),
            network_refuse_after_accounts: 20,
            network_refuse: Duration::from_secs(3600),
            remember_success: Duration::from_secs(30 * DAY as u64),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
        }
    }
}

impl AuthConfig {
    /// The rules as the login guard applies them.
    pub fn login_policy(&self) -> crate::policy::LoginPolicy {
        crate::policy::LoginPolicy {
            failure_window: self.failure_window.as_secs(),
            delay_after_failures: self.delay_after_failures,
            first_delay: self.delay,
            max_delay: self.max_delay,
            lock_after_failures: self.lock_after_failures,
            lock_seconds: self.lock.as_secs(),
            network_refuse_after_accounts: self.network_refuse_after_accounts,
            network_refuse_seconds: self.network_refuse.as_secs(),
            remember_success: self.remember_success.as_secs(),
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            max_pairs: crate::policy::logins::MAX_PAIRS,
            max_networks: crate::policy::logins::MAX_NETWORKS,
        }
    }
}

impl Config {
    /// The configuration used when no file is given.
    pub fn embedded_default() -> Config {
        Config {
            hostname: system_hostname(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listeners: default_listeners(),
            tls: None,
            limits: LimitsConfig::default(),
            timeouts: Timeouts::default(),
            auth: AuthConfig::default(),
            policy: PolicyConfig::default(),
            quotas: QuotaConfig::default(),
            delivery: DeliveryConfig::default(),
            routes: Vec::new(),
            log: LogConfig::default(),
            server: ServerConfig::default(),
            http: None,
        }
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_all(path).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Parses TOML text; `origin` is the file name used in error messages, and its directory is
    /// where relative `auth_password_file` paths are read from.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_all(text, origin).map_err(|mut errors| errors.swap_remove(0))
    }

    /// Like [`Config::parse`], with the first problem of every section (a syntax error, an
    /// unknown key or a wrong type stops there: the rest cannot be read). Never an empty list.
    pub fn parse_all(text: &str, origin: &Path) -> Result<Config, Vec<ConfigError>> {
        let source = Source { text, origin };
        let raw: RawConfig = toml::from_str(text).map_err(|err| vec![source.toml_error(&err)])?;
        source.config(raw)
    }

    /// [`Config::load`] with every problem ([`Config::parse_all`]).
    pub fn load_all(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|err| vec![ConfigError::io(path, err)])?;
        Config::parse_all(&text, path)
    }

    /// A complete, commented example configuration that spells out every default.
    pub fn example() -> &'static str {
        EXAMPLE
    }
}

fn default_listeners() -> Vec<ListenerConfig> {
    let listener = |address, mode| ListenerConfig {
        address,
        mode,
        trusted_networks: Vec::new(),
        starttls: true,
        hostname: None,
    };
    vec![
        listener(DEFAULT_SUBMISSION, ListenerMode::Submission),
        listener(DEFAULT_SUBMISSIONS, ListenerMode::Submissions),
    ]
}

/// The kernel's host name, if it would pass our own validation; a name we would refuse in a file
/// must not slip into the greeting through the default either.
fn system_hostname() -> String {
    std::fs::read_to_string(SYSTEM_HOSTNAME_FILE)
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| hostname_problem(name).is_none())
        .unwrap_or_else(|| FALLBACK_HOSTNAME.to_owned())
}

/// Why `name` is not a plausible domain name (RFC 1035 §2.3.1 letters, digits and hyphens, in
/// dot-separated labels), or `None` if it is.
fn hostname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Some(format!(
            "is {} characters long; a domain name has at most 253",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && *c != '-' && *c != '.')
    {
        return Some(format!(
            "\"{name}\" contains {bad:?}; only letters, digits, hyphens and dots are allowed"
        ));
    }
    name.split('.').find_map(|label| label_problem(name, label))
}

fn label_problem(name: &str, label: &str) -> Option<String> {
    if label.is_empty() {
        Some(format!(
            "\"{name}\" has an empty label (leading, trailing or doubled dot)"
        ))
    } else if label.len() > 63 {
        Some(format!("\"{name}\" has a label longer than 63 characters"))
    } else if label.starts_with('-') || label.ends_with('-') {
        Some(format!(
            "\"{name}\" has a label that starts or ends with a hyphen"
        ))
    } else {
        None
    }
}

/// An IP network: an address with its host bits cleared, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `prefix` bits that `ip` lies in (a prefix beyond the address length means
    /// the address alone).
    pub fn around(ip: IpAddr, prefix: u8) -> Cidr {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.min(max);
        Cidr {
            network: mask(ip, prefix),
            prefix,
        }
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a
    /// dual-stack socket reports for an IPv4 client) also matches as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.matches(ip) {
            return true;
        }
        match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.matches(IpAddr::V4(v4))),
            IpAddr::V4(_) => false,
        }
    }

    /// Whether `other` lies wholly within this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.network)
    }

    fn matches(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

/// `ip` with every bit after the first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Accepts `ADDRESS/PREFIX` or a bare address (a single host). Host bits are cleared rather
    /// than refused, as Postfix does: `10.1.2.3/8` means `10.0.0.0/8`.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| CidrError(format!("\"{address}\" is not an IP address")))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => parse_prefix(prefix, max)?,
            None => max,
        };
        Ok(match address {
            // Written in IPv4-mapped form (`::ffff:192.0.2.0/120`), a network of IPv4 addresses
            // is one: clients are matched by their plain IPv4 address.
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr::around(IpAddr::V4(v4), prefix - 96),
                None => Cidr::around(address, prefix),
            },
            _ => Cidr::around(address, prefix),
        })
    }
}

fn parse_prefix(text: &str, max: u8) -> Result<u8, CidrError> {
    // u8::from_str would also take "+8"; a prefix length is plain digits.
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let prefix = text
        .parse::<u8>()
        .ok()
        .filter(|_| digits)
        .ok_or_else(|| CidrError(format!("prefix length \"{text}\" is not a number")))?;
    if prefix > max {
        return Err(CidrError(format!("prefix length {prefix} exceeds {max}")));
    }
    Ok(prefix)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A configuration that cannot be used, and where the problem is.
#[derive(Debug)]
pub struct ConfigError {
    file: PathBuf,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    Unreadable(std::io::Error),
    Invalid {
        line: usize,
        column: usize,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    /// The file could not be read at all.
    pub fn io(path: &Path, err: std::io::Error) -> ConfigError {
        ConfigError {
            file: path.to_owned(),
            problem: Problem::Unreadable(err),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.problem {
            Problem::Unreadable(err) => write!(f, "{file}: cannot read: {err}"),
            Problem::Invalid {
                line,
                column,
                key,
                reason,
            } => {
                write!(f, "{file}:{line}:{column}: {key}: {reason}")
            }
        }
    }
}

// The io error is part of the message already; returning it from source() too would make error
// reporters print it twice.
impl std::error::Error for ConfigError {}

/// The file as written. Only syntax and types are checked here; every value that needs more
/// checking keeps its span so the check can point at it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<Spanned<String>>,
    data_dir: Option<Spanned<PathBuf>>,
    #[serde(default, deserialize_with = "some_listeners")]
    listener: Option<Vec<RawListener>>,
    tls: Option<RawTls>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    quotas: RawQuotas,
    #[serde(default)]
    delivery: RawDelivery,
    /// Spanned so that a problem with a route as a whole (`RouteTable::new`) can point at it.
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    server: RawServer,
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    address: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    enabled: Option<bool>,
    #[serde(default)]
    dns_servers: Vec<Spanned<String>>,
    mx_port: Option<Spanned<i64>>,
    helo_name: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    /// Spanned as a whole too, so an empty list can be pointed at.
    retry_seconds: Option<Spanned<Vec<Spanned<i64>>>>,
    max_queue_lifetime_seconds: Option<Spanned<i64>>,
    delay_warning_seconds: Option<Spanned<i64>>,
    concurrency_per_destination: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    messages_per_connection: Option<Spanned<i64>>,
    recipients_per_transaction: Option<Spanned<i64>>,
    connect_timeout_seconds: Option<Spanned<i64>>,
    command_timeout_seconds: Option<Spanned<i64>>,
    data_timeout_seconds: Option<Spanned<i64>>,
}

/// One `[[route]]`. `domains` is required: a route without it would match nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    domains: Spanned<Vec<Spanned<String>>>,
    relay: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    auth_user: Option<Spanned<String>>,
    auth_password_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    check_header_from: Option<bool>,
    require_host_match: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuotas {
    messages_per_hour: Option<Spanned<i64>>,
    recipients_per_day: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    mode: ListenerMode,
    #[serde(default)]
    trusted_networks: Vec<Spanned<String>>,
    starttls: Option<Spanned<bool>>,
    hostname: Option<Spanned<String>>,
}

/// Both keys are required: a certificate without its key (or the reverse) is a half-finished
/// edit, not a request for the self-signed default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
}

// Integers are read as i64, TOML's own integer type, so that a negative value gets the same
// "below the minimum" explanation as a small one instead of a serde type error.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_size: Option<Spanned<i64>>,
    max_recipients: Option<Spanned<i64>>,
    max_errors: Option<Spanned<i64>>,
    max_command_line: Option<Spanned<i64>>,
    max_text_line: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_ip: Option<Spanned<i64>>,
    max_memory_in_flight: Option<Spanned<i64>>,
    bare_line_endings: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    command_seconds: Option<Spanned<i64>>,
    data_seconds: Option<Spanned<i64>>,
    message_seconds: Option<Spanned<i64>>,
    tls_handshake_seconds: Option<Spanned<i64>>,
    shutdown_grace_seconds: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    failure_window_seconds: Option<Spanned<i64>>,
    delay_after_failures: Option<Spanned<i64>>,
    delay_milliseconds: Option<Spanned<i64>>,
    max_delay_milliseconds: Option<Spanned<i64>>,
    lock_after_failures: Option<Spanned<i64>>,
    lock_seconds: Option<Spanned<i64>>,
    network_refuse_after_accounts: Option<Spanned<i64>>,
    network_refuse_seconds: Option<Spanned<i64>>,
    remember_success_days: Option<Spanned<i64>>,
    ipv4_prefix: Option<Spanned<i64>>,
    ipv6_prefix: Option<Spanned<i64>>,
}

/// Refuses `listener = []` while deserializing, so the error carries the array's position.
fn some_listeners<'de, D>(deserializer: D) -> Result<Option<Vec<RawListener>>, D::Error>
where
    D: Deserializer<'de>,
{
    let listeners = Vec::<RawListener>::deserialize(deserializer)?;
    if listeners.is_empty() {
        return Err(serde::de::Error::custom(
            "at least one listener is required; leave out `listener` entirely for the defaults",
        ));
    }
    Ok(Some(listeners))
}

/// An integer setting: where it lives in the file and the values it may take.
struct Setting {
    key: &'static str,
    min: i64,
    max: i64,
    /// Why the bounds are what they are, when that is not obvious.
    note: &'static str,
}

const fn setting(key: &'static str, min: i64, max: i64, note: &'static str) -> Setting {
    Setting {
        key,
        min,
        max,
        note,
    }
}

/// No particular upper limit, but small enough for a usize on any supported platform.
const NO_CAP: i64 = u32::MAX as i64;
/// Timeouts end up in `Instant + Duration`, which panics on overflow; a day is plenty.
const DAY: i64 = 86_400;
const RFC_COMMAND_LINE: &str =
    "RFC 5321 §4.5.3.1.4 requires command lines of 512 octets to be accepted";
const RFC_TEXT_LINE: &str = "RFC 5321 §4.5.3.1.6 requires text lines of 1000 octets to be accepted";

const MAX_MESSAGE_SIZE: Setting = setting("limits.max_message_size", 1024, NO_CAP, "");
const MAX_RECIPIENTS: Setting = setting("limits.max_recipients", 1, NO_CAP, "");
const MAX_ERRORS: Setting = setting("limits.max_errors", 1, NO_CAP, "");
const MAX_COMMAND_LINE: Setting = setting("limits.max_command_line", 512, 65_536, RFC_COMMAND_LINE);
const MAX_TEXT_LINE: Setting = setting("limits.max_text_line", 1000, 1_000_000, RFC_TEXT_LINE);
const MAX_CONNECTIONS: Setting = setting("limits.max_connections", 1, NO_CAP, "");
const MAX_PER_IP: Setting = setting("limits.max_connections_per_ip", 1, NO_CAP, "");
const MAX_MEMORY: Setting = setting("limits.max_memory_in_flight", 1024, i64::MAX, "");
const COMMAND_SECONDS: Setting = setting("timeouts.command_seconds", 1, DAY, "");
const DATA_SECONDS: Setting = setting("timeouts.data_seconds", 1, DAY, "");
const MESSAGE_SECONDS: Setting = setting("timeouts.message_seconds", 1, DAY, "");
const TLS_SECONDS: Setting = setting("timeouts.tls_handshake_seconds", 1, DAY, "");
const GRACE_SECONDS: Setting = setting("timeouts.shutdown_grace_seconds", 0, DAY, "");
/// A delay holds the connection (and its slot) while it runs; a minute is already a lot.
const DELAY_NOTE: &str = "a delay keeps the connection waiting";
const MONTH: i64 = 30 * DAY;
const FAILURE_WINDOW: Setting = setting("auth.failure_window_seconds", 60, MONTH, "");
const DELAY_AFTER: Setting = setting("auth.delay_after_failures", 0, 1000, "");
const DELAY_MS: Setting = setting("auth.delay_milliseconds", 0, 60_000, DELAY_NOTE);
const MAX_DELAY_MS: Setting = setting("auth.max_delay_milliseconds", 0, 60_000, DELAY_NOTE);
const LOCK_AFTER: Setting = setting("auth.lock_after_failures", 1, 1000, "");
const LOCK_SECONDS: Setting = setting("auth.lock_seconds", 1, MONTH, "");
const REFUSE_AFTER: Setting = setting("auth.network_refuse_after_accounts", 2, 100_000, "");
const REFUSE_SECONDS: Setting = setting("auth.network_refuse_seconds", 1, MONTH, "");
const MESSAGES_PER_HOUR: Setting = setting("quotas.messages_per_hour", 0, NO_CAP, "");
const RECIPIENTS_PER_DAY: Setting = setting("quotas.recipients_per_day", 0, NO_CAP, "");
const REMEMBER_DAYS: Setting = setting("auth.remember_success_days", 0, 3650, "");
const IPV4_PREFIX: Setting = setting(
    "auth.ipv4_prefix",
    8,
    32,
    "shorter prefixes would lump unrelated customers together",
);
const IPV6_PREFIX: Setting = setting(
    "auth.ipv6_prefix",
    16,
    128,
    "shorter prefixes would lump unrelated customers together",
);

/// Outbound timeouts: an hour is far beyond what RFC 5321 §4.5.3.2 asks for (10 minutes at most).
const HOUR: i64 = 3600;
const MX_PORT: Setting = setting("delivery.mx_port", 1, 65_535, "");
/// The bounds of each element; errors name the element (`delivery.retry_seconds[2]`).
const RETRY_SECONDS: Setting = setting("delivery.retry_seconds", 1, MONTH, "");
const QUEUE_LIFETIME: Setting = setting("delivery.max_queue_lifetime_seconds", 1, MONTH, "");
const DELAY_WARNING: Setting = setting("delivery.delay_warning_seconds", 0, MONTH, "");
const CONCURRENCY: Setting = setting("delivery.concurrency_per_destination", 1, 1000, "");
const OUTBOUND_CONNECTIONS: Setting = setting("delivery.max_connections", 1, 10_000, "");
const MESSAGES_PER_CONNECTION: Setting =
    setting("delivery.messages_per_connection", 1, 100_000, "");
const RECIPIENTS_PER_TRANSACTION: Setting =
    setting("delivery.recipients_per_transaction", 1, 1000, "");
const CONNECT_TIMEOUT: Setting = setting("delivery.connect_timeout_seconds", 1, HOUR, "");
const COMMAND_TIMEOUT: Setting = setting("delivery.command_timeout_seconds", 1, HOUR, "");
const DATA_TIMEOUT: Setting = setting("delivery.data_timeout_seconds", 1, HOUR, "");
/// The port of a DNS server written as a bare address.
const DNS_PORT: u16 = 53;

/// The text being parsed, for turning spans into `FILE:LINE:COLUMN` errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: &str, reason: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError {
            file: self.origin.to_owned(),
            problem: Problem::Invalid {
                line,
                column,
                key: key.to_owned(),
                reason: reason.into(),
            },
        }
    }

    fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        // Without a span there is nothing better to point at than the start of the file.
        let span = err.span().unwrap_or(0..0);
        let key = match locate::key_path(self.text, &span) {
            // Not TOML at all, so there are no keys to speak of.
            None => "syntax".to_owned(),
            Some(path) if path.is_empty() => "(top level)".to_owned(),
            Some(path) => path,
        };
        self.error(span, &key, plain_words(err.message()))
    }

    /// Every section is checked even when an earlier one failed, so that `config check` can
    /// report each section's first problem at once.
    fn config(&self, raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let hostname = keep(
            &mut errors,
            match &raw.hostname {
                Some(name) => self.hostname(name, "hostname"),
                None => Ok(system_hostname()),
            },
        );
        let data_dir = keep(
            &mut errors,
            match &raw.data_dir {
                Some(dir) => self.path(dir, "data_dir"),
                None => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
            },
        );
        let listeners = keep(
            &mut errors,
            match &raw.listener {
                Some(listeners) => self.listeners(listeners),
                None => Ok(default_listeners()),
            },
        );
        let tls = keep(
            &mut errors,
            raw.tls.as_ref().map(|tls| self.tls(tls)).transpose(),
        );
        let limits = keep(&mut errors, self.limits(&raw.limits));
        let timeouts = keep(&mut errors, self.timeouts(&raw.timeouts));
        let auth = keep(&mut errors, self.auth(&raw.auth));
        let policy = PolicyConfig {
            check_header_from: raw.policy.check_header_from.unwrap_or(false),
            require_host_match: raw.policy.require_host_match.unwrap_or(false),
        };
        let quotas = keep(&mut errors, self.quotas(&raw.quotas));
        let delivery = keep(&mut errors, self.delivery(&raw.delivery));
        let routes = keep(&mut errors, self.routes(&raw.route));
        let log = keep(&mut errors, self.log(&raw.log));
        let server = keep(&mut errors, self.server(&raw.server));
        let http = keep(
            &mut errors,
            raw.http.as_ref().map(|http| self.http(http)).transpose(),
        );
        match (
            hostname, data_dir, listeners, tls, limits, timeouts, auth, quotas, delivery, routes,
            log, server, http,
        ) {
            (
                Some(hostname),
                Some(data_dir),
                Some(listeners),
                Some(tls),
                Some(limits),
                Some(timeouts),
                Some(auth),
                Some(quotas),
                Some(delivery),
                Some(routes),
                Some(log),
                Some(server),
                Some(http),
            ) => Ok(Config {
                hostname,
                data_dir,
                listeners,
                tls,
                limits,
                timeouts,
                auth,
                policy,
                quotas,
                delivery,
                routes,
                log,
                server,
                http,
            }),
            _ => Err(errors),
        }
    }

    fn server(&self, raw: &RawServer) -> Result<ServerConfig, ConfigError> {
        let name = |value: &Option<Spanned<String>>, key: &str| match value {
            Some(name) if name.get_ref().is_empty() || name.get_ref().contains('\0') => {
                Err(self.error(name.span(), key, "must be a user or group name, not empty"))
            }
            other => Ok(other.as_ref().map(|name| name.get_ref().clone())),
        };
        let user = name(&raw.user, "server.user")?;
        let group = name(&raw.group, "server.group")?;
        if let (None, Some(group)) = (&user, &raw.group) {
            return Err(self.error(
                group.span(),
                "server.group",
                "a group is only used with server.user; set the user too",
            ));
        }
        Ok(ServerConfig { user, group })
    }

    fn http(&self, raw: &RawHttp) -> Result<HttpConfig, ConfigError> {
        let address = match &raw.address {
            Some(text) => self.socket_address(text, "http.address")?,
            None => DEFAULT_HTTP,
        };
        let token = raw
            .token_file
            .as_ref()
            .map(|file| self.first_line(file, "http.token_file", "the token"))
            .transpose()?;
        Ok(HttpConfig { address, token })
    }

    fn quotas(&self, raw: &RawQuotas) -> Result<QuotaConfig, ConfigError> {
        Ok(QuotaConfig {
            messages_per_hour: self.int(&raw.messages_per_hour, &MESSAGES_PER_HOUR, 0)?,
            recipients_per_day: self.int(&raw.recipients_per_day, &RECIPIENTS_PER_DAY, 0)?,
        })
    }

    fn log(&self, raw: &RawLog) -> Result<LogConfig, ConfigError> {
        let format = match &raw.format {
            None => LogFormat::default(),
            Some(text) => text
                .get_ref()
                .parse()
                .map_err(|reason: String| self.error(text.span(), "log.format", reason))?,
        };
        Ok(LogConfig { format })
    }

    fn hostname(&self, name: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        match hostname_problem(name.get_ref()) {
            Some(reason) => Err(self.error(name.span(), key, reason)),
            None => Ok(name.get_ref().clone()),
        }
    }

    fn path(&self, path: &Spanned<PathBuf>, key: &str) -> Result<PathBuf, ConfigError> {
        if path.get_ref().as_os_str().is_empty() {
            return Err(self.error(path.span(), key, "must not be empty"));
        }
        Ok(path.get_ref().clone())
    }

    fn tls(&self, tls: &RawTls) -> Result<TlsFiles, ConfigError> {
        Ok(TlsFiles {
            certificate: self.path(&tls.certificate, "tls.certificate")?,
            key: self.path(&tls.key, "tls.key")?,
        })
    }

    fn listeners(&self, raw: &[RawListener]) -> Result<Vec<ListenerConfig>, ConfigError> {
        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.len());
        for (index, raw_listener) in raw.iter().enumerate() {
            let listener = self.listener(index, raw_listener)?;
            // Port 0 asks the system for any free port, so it can never clash.
            let clash = listeners
                .iter()
                .position(|earlier| earlier.address == listener.address)
                .filter(|_| listener.address.port() != 0);
            if let Some(earlier) = clash {
                let (line, _) = line_column(self.text, raw[earlier].address.span().start);
                let reason = format!(
                    "{} is already used by listener[{earlier}] (line {line})",
                    listener.address
                );
                let key = format!("listener[{index}].address");
                return Err(self.error(raw_listener.address.span(), &key, reason));
            }
            listeners.push(listener);
        }
        Ok(listeners)
    }

    fn listener(&self, index: usize, raw: &RawListener) -> Result<ListenerConfig, ConfigError> {
        let key = |name: &str| format!("listener[{index}].{name}");
        let trusted_networks: Vec<Cidr> = raw
            .trusted_networks
            .iter()
            .enumerate()
            .map(|(n, network)| self.cidr(network, &key(&format!("trusted_networks[{n}]"))))
            .collect::<Result<_, _>>()?;
        let hostname = match &raw.hostname {
            Some(name) => Some(self.hostname(name, &key("hostname"))?),
            None => None,
        };
        let starttls = raw.starttls.as_ref().is_none_or(|s| *s.get_ref());
        self.check_reachable(raw, &trusted_networks, &key("starttls"))?;
        Ok(ListenerConfig {
            address: self.socket_address(&raw.address, &key("address"))?,
            mode: raw.mode,
            trusted_networks,
            starttls,
            hostname,
        })
    }

    /// Without STARTTLS a submission listener can take mail only from trusted networks, so
    /// it needs some: otherwise it would accept nothing from anyone.
    fn check_reachable(
        &self,
        raw: &RawListener,
        trusted: &[Cidr],
        key: &str,
    ) -> Result<(), ConfigError> {
        match &raw.starttls {
            Some(starttls) if !*starttls.get_ref() && raw.mode == ListenerMode::Submission && trusted.is_empty() => Err(self.error(
                starttls.span(),
                key,
                "a submission listener without STARTTLS accepts mail only from trusted_networks, and none are set",
            )),
            _ => Ok(()),
        }
    }

    fn socket_address(&self, text: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        text.get_ref().parse().map_err(|_| {
            let reason = format!(
                "\"{}\" is not a socket address; expected IP:PORT such as 127.0.0.1:587 or [::1]:587",
                text.get_ref()
            );
            self.error(text.span(), key, reason)
        })
    }

    fn cidr(&self, text: &Spanned<String>, key: &str) -> Result<Cidr, ConfigError> {
        text.get_ref().parse().map_err(|err: CidrError| {
            let reason = format!("\"{}\" is not a network: {err}", text.get_ref());
            self.error(text.span(), key, reason)
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<LimitsConfig, ConfigError> {
        let default = LimitsConfig::default();
        let limits = LimitsConfig {
            max_message_size: self.int(
                &raw.max_message_size,
                &MAX_MESSAGE_SIZE,
                default.max_message_size,
            )?,
            max_recipients: self.int(
                &raw.max_recipients,
                &MAX_RECIPIENTS,
                default.max_recipients,
            )?,
            max_errors: self.int(&raw.max_errors, &MAX_ERRORS, default.max_errors)?,
            max_command_line: self.int(
                &raw.max_command_line,
                &MAX_COMMAND_LINE,
                default.max_command_line,
            )?,
            max_text_line: self.int(&raw.max_text_line, &MAX_TEXT_LINE, default.max_text_line)?,
            max_connections: self.int(
                &raw.max_connections,
                &MAX_CONNECTIONS,
                default.max_connections,
            )?,
            max_connections_per_ip: self.int(
                &raw.max_connections_per_ip,
                &MAX_PER_IP,
                default.max_connections_per_ip,
            )?,
            max_memory_in_flight: self.int(
                &raw.max_memory_in_flight,
                &MAX_MEMORY,
                default.max_memory_in_flight,
            )?,
            bare_line_endings: match &raw.bare_line_endings {
                Some(policy) => self.bare_line_endings(policy)?,
                None => default.bare_line_endings,
            },
        };
        self.check_part_within_whole(
            (
                limits.max_connections_per_ip as u64,
                &raw.max_connections_per_ip,
                &MAX_PER_IP,
            ),
            (
                limits.max_connections as u64,
                &raw.max_connections,
                &MAX_CONNECTIONS,
            ),
        )?;
        // A budget below one message would refuse every DATA.
        self.check_part_within_whole(
            (
                limits.max_message_size as u64,
                &raw.max_message_size,
                &MAX_MESSAGE_SIZE,
            ),
            (
                limits.max_memory_in_flight as u64,
                &raw.max_memory_in_flight,
                &MAX_MEMORY,
            ),
        )?;
        Ok(limits)
    }

    /// A part's cap above its whole's (per IP above all connections, per destination above
    /// all outbound ones) would be silently meaningless, which usually means one of the two was
    /// mistyped. Blame the part when it was written, else the whole. Each value comes with what
    /// was written for it and its setting.
    fn check_part_within_whole(
        &self,
        (part, part_raw, part_setting): (u64, &Option<Spanned<i64>>, &Setting),
        (whole, whole_raw, whole_setting): (u64, &Option<Spanned<i64>>, &Setting),
    ) -> Result<(), ConfigError> {
        if part <= whole {
            return Ok(());
        }
        if let Some(value) = part_raw {
            let reason = format!("{part} exceeds {} ({whole})", whole_setting.key);
            return Err(self.error(value.span(), part_setting.key, reason));
        }
        // The defaults are consistent, so the whole was written if the part was not.
        let span = whole_raw.as_ref().map_or(0..0, |value| value.span());
        let reason = format!(
            "{whole} is below {} ({part}, the default)",
            part_setting.key
        );
        Err(self.error(span, whole_setting.key, reason))
    }

    fn timeouts(&self, raw: &RawTimeouts) -> Result<Timeouts, ConfigError> {
        let default = Timeouts::default();
        let seconds = |value, setting, default: Duration| {
            self.int(value, setting, default.as_secs())
                .map(Duration::from_secs)
        };
        Ok(Timeouts {
            command: seconds(&raw.command_seconds, &COMMAND_SECONDS, default.command)?,
            data: seconds(&raw.data_seconds, &DATA_SECONDS, default.data)?,
            message: seconds(&raw.message_seconds, &MESSAGE_SECONDS, default.message)?,
            tls_handshake: seconds(
                &raw.tls_handshake_seconds,
                &TLS_SECONDS,
                default.tls_handshake,
            )?,
            shutdown_grace: seconds(
                &raw.shutdown_grace_seconds,
                &GRACE_SECONDS,
                default.shutdown_grace,
            )?,
        })
    }

    fn auth(&self, raw: &RawAuth) -> Result<AuthConfig, ConfigError> {
        let default = AuthConfig::default();
        let seconds = |value, setting, default: Duration| {
            self.int(value, setting, default.as_secs())
                .map(Duration::from_secs)
        };
        let millis = |value, setting, default: Duration| {
            self.int(value, setting, default.as_millis() as u64)
                .map(Duration::from_millis)
        };
        let days = self.int(
            &raw.remember_success_days,
            &REMEMBER_DAYS,
            default.remember_success.as_secs() / DAY as u64,
        )?;
        Ok(AuthConfig {
            failure_window: seconds(
                &raw.failure_window_seconds,
                &FAILURE_WINDOW,
                default.failure_window,
            )?,
            delay_after_failures: self.int(
                &raw.delay_after_failures,
                &DELAY_AFTER,
                default.delay_after_failures,
            )?,
            delay: millis(&raw.delay_milliseconds, &DELAY_MS, default.delay)?,
            max_delay: millis(
                &raw.max_delay_milliseconds,
                &MAX_DELAY_MS,
                default.max_delay,
            )?,
            lock_after_failures: self.int(
                &raw.lock_after_failures,
                &LOCK_AFTER,
                default.lock_after_failures,
            )?,
            lock: seconds(&raw.lock_seconds, &LOCK_SECONDS, default.lock)?,
            network_refuse_after_accounts: self.int(
                &raw.network_refuse_after_accounts,
                &REFUSE_AFTER,
                default.network_refuse_after_accounts,
            )?,
            network_refuse: seconds(
                &raw.network_refuse_seconds,
                &REFUSE_SECONDS,
                default.network_refuse,
            )?,
            remember_success: Duration::from_secs(days * DAY as u64),
            ipv4_prefix: self.int(&raw.ipv4_prefix, &IPV4_PREFIX, default.ipv4_prefix)?,
            ipv6_prefix: self.int(&raw.ipv6_prefix, &IPV6_PREFIX, default.ipv6_prefix)?,
        })
    }

    fn delivery(&self, raw: &RawDelivery) -> Result<DeliveryConfig, ConfigError> {
        let default = DeliveryConfig::default();
        let seconds = |value, setting, default: Duration| {
            self.int(value, setting, default.as_secs())
                .map(Duration::from_secs)
        };
        let dns_servers = raw
            .dns_servers
            .iter()
            .enumerate()
            .map(|(n, server)| self.dns_server(server, &format!("delivery.dns_servers[{n}]")))
            .collect::<Result<_, _>>()?;
        let helo_name = match &raw.helo_name {
            Some(name) => Some(self.hostname(name, "delivery.helo_name")?),
            None => None,
        };
        let tls = match &raw.tls {
            Some(policy) => self.tls_policy(policy, "delivery.tls")?,
            None => default.tls,
        };
        let delivery = DeliveryConfig {
            enabled: raw.enabled.unwrap_or(default.enabled),
            dns_servers,
            mx_port: self.int(&raw.mx_port, &MX_PORT, default.mx_port)?,
            helo_name,
            tls,
            retry: self.retry(raw)?,
            concurrency_per_destination: self.int(
                &raw.concurrency_per_destination,
                &CONCURRENCY,
                default.concurrency_per_destination,
            )?,
            max_connections: self.int(
                &raw.max_connections,
                &OUTBOUND_CONNECTIONS,
                default.max_connections,
            )?,
            messages_per_connection: self.int(
                &raw.messages_per_connection,
                &MESSAGES_PER_CONNECTION,
                default.messages_per_connection,
            )?,
            recipients_per_transaction: self.int(
                &raw.recipients_per_transaction,
                &RECIPIENTS_PER_TRANSACTION,
                default.recipients_per_transaction,
            )?,
            connect_timeout: seconds(
                &raw.connect_timeout_seconds,
                &CONNECT_TIMEOUT,
                default.connect_timeout,
            )?,
            command_timeout: seconds(
                &raw.command_timeout_seconds,
                &COMMAND_TIMEOUT,
                default.command_timeout,
            )?,
            data_timeout: seconds(
                &raw.data_timeout_seconds,
                &DATA_TIMEOUT,
                default.data_timeout,
            )?,
        };
        self.check_part_within_whole(
            (
                delivery.concurrency_per_destination.into(),
                &raw.concurrency_per_destination,
                &CONCURRENCY,
            ),
            (
                delivery.max_connections.into(),
                &raw.max_connections,
                &OUTBOUND_CONNECTIONS,
            ),
        )?;
        Ok(delivery)
    }

    /// `IP:PORT`, `[IPv6]:PORT`, or a bare address (`192.0.2.53`, `2001:db8::53`, `[::1]`)
    /// meaning port 53, the way resolv.conf names servers.
    fn dns_server(&self, text: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        let written = text.get_ref().trim();
        let bracketed = written
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'));
        let address = match bracketed {
            // Brackets hold an IPv6 address by definition; "[192.0.2.1]" is a typo.
            Some(v6) => v6
                .parse::<Ipv6Addr>()
                .ok()
                .map(|ip| SocketAddr::new(IpAddr::V6(ip), DNS_PORT)),
            None => match written.parse::<IpAddr>() {
                Ok(ip) => Some(SocketAddr::new(ip, DNS_PORT)),
                Err(_) => written.parse::<SocketAddr>().ok(),
            },
        };
        match address {
            Some(address) if address.port() != 0 => Ok(address),
            Some(_) => Err(self.error(
                text.span(),
                key,
                format!("\"{written}\": port 0 cannot be asked; leave the port out for 53"),
            )),
            None => Err(self.error(
                text.span(),
                key,
                format!(
                    "\"{written}\" is not a DNS server address; expected IP, IP:PORT or [IPv6]:PORT such as 192.0.2.53 or [2001:db8::53]:5353"
                ),
            )),
        }
    }

    fn bare_line_endings(
        &self,
        text: &Spanned<String>,
    ) -> Result<crate::smtp::BareLineEndings, ConfigError> {
        text.get_ref()
            .parse()
            .map_err(|reason: String| self.error(text.span(), "limits.bare_line_endings", reason))
    }

    fn tls_policy(
        &self,
        text: &Spanned<String>,
        key: &str,
    ) -> Result<crate::routing::TlsPolicy, ConfigError> {
        text.get_ref()
            .parse()
            .map_err(|reason: String| self.error(text.span(), key, reason))
    }

    fn retry(&self, raw: &RawDelivery) -> Result<crate::queue::schedule::RetryPolicy, ConfigError> {
        let default = crate::queue::schedule::RetryPolicy::default();
        let retry_seconds = match &raw.retry_seconds {
            None => default.retry_seconds,
            Some(list) if list.get_ref().is_empty() => {
                return Err(self.error(
                    list.span(),
                    RETRY_SECONDS.key,
                    "must list at least one delay; the last one repeats for every later retry",
                ));
            }
            Some(list) => list
                .get_ref()
                .iter()
                .enumerate()
                .map(|(n, value)| {
                    let key = format!("{}[{n}]", RETRY_SECONDS.key);
                    self.bounded(value, &key, &RETRY_SECONDS)
                })
                .collect::<Result<_, _>>()?,
        };
        let lifetime: u64 = self.int(
            &raw.max_queue_lifetime_seconds,
            &QUEUE_LIFETIME,
            default.max_queue_lifetime,
        )?;
        let warning: u64 = self.int(&raw.delay_warning_seconds, &DELAY_WARNING, 0)?;
        // At or after the lifetime the sender gets the bounce instead, so such a warning would
        // never be sent: the operator meant something else.
        if let Some(value) = &raw.delay_warning_seconds
            && warning >= lifetime
        {
            let written = if raw.max_queue_lifetime_seconds.is_some() {
                ""
            } else {
                ", the default"
            };
            let reason = format!(
                "{warning} is not below delivery.max_queue_lifetime_seconds ({lifetime}{written}); the message would bounce before the warning is due"
            );
            return Err(self.error(value.span(), DELAY_WARNING.key, reason));
        }
        Ok(crate::queue::schedule::RetryPolicy {
            retry_seconds,
            max_queue_lifetime: lifetime,
            delay_warning: (warning > 0).then_some(warning),
            ..default
        })
    }

    fn routes(&self, raw: &[Spanned<RawRoute>]) -> Result<Vec<crate::routing::Route>, ConfigError> {
        let routes: Vec<crate::routing::Route> = raw
            .iter()
            .enumerate()
            .map(|(index, route)| self.route(index, route.get_ref()))
            .collect::<Result<_, _>>()?;
        let Err(message) = crate::routing::RouteTable::new(routes.clone()) else {
            return Ok(routes);
        };
        // RouteTable numbers routes from 1 ("route 2: ..."), key paths from 0 ("route[1]").
        let located = message
            .strip_prefix("route ")
            .and_then(|rest| rest.split_once(": "))
            .and_then(|(number, reason)| {
                let index = number.parse::<usize>().ok()?.checked_sub(1)?;
                raw.get(index).map(|route| (index, route, reason))
            });
        Err(match located {
            Some((index, route, reason)) => {
                self.error(route.span(), &format!("route[{index}]"), reason)
            }
            // Not about one route: point at the first, where the list starts.
            None => self.error(raw.first().map_or(0..0, |r| r.span()), "route", message),
        })
    }

    fn route(&self, index: usize, raw: &RawRoute) -> Result<crate::routing::Route, ConfigError> {
        let key = |name: &str| format!("route[{index}].{name}");
        let domains = raw
            .domains
            .get_ref()
            .iter()
            .enumerate()
            .map(|(n, pattern)| {
                crate::routing::DomainPattern::parse(pattern.get_ref()).map_err(|reason| {
                    self.error(pattern.span(), &key(&format!("domains[{n}]")), reason)
                })
            })
            .collect::<Result<_, _>>()?;
        let relay = raw
            .relay
            .as_ref()
            .map(|relay| {
                crate::routing::Relay::parse(relay.get_ref())
                    .map_err(|reason| self.error(relay.span(), &key("relay"), reason))
            })
            .transpose()?;
        let tls = raw
            .tls
            .as_ref()
            .map(|policy| self.tls_policy(policy, &key("tls")))
            .transpose()?;
        Ok(crate::routing::Route {
            domains,
            relay,
            tls,
            auth: self.relay_auth(index, raw)?,
        })
    }

    /// `auth_user` and `auth_password_file` go together: one without the other is a
    /// half-finished edit, and sending a user name without a password (or the reverse) would
    /// only fail at the relay, long after the configuration was accepted.
    fn relay_auth(
        &self,
        index: usize,
        raw: &RawRoute,
    ) -> Result<Option<crate::routing::RelayAuth>, ConfigError> {
        let key = |name: &str| format!("route[{index}].{name}");
        match (&raw.auth_user, &raw.auth_password_file) {
            (None, None) => Ok(None),
            (Some(user), None) => Err(self.error(
                user.span(),
                &key("auth_user"),
                "needs auth_password_file as well (the file holding the relay password)",
            )),
            (None, Some(file)) => Err(self.error(
                file.span(),
                &key("auth_password_file"),
                "needs auth_user as well (the user name to log in to the relay as)",
            )),
            (Some(user), Some(file)) => {
                if user.get_ref().is_empty() {
                    return Err(self.error(user.span(), &key("auth_user"), "must not be empty"));
                }
                let password = self.password(file, &key("auth_password_file"))?;
                Ok(Some(crate::routing::RelayAuth {
                    user: user.get_ref().clone(),
                    password,
                }))
            }
        }
    }

    /// The first line of the password file, read now so that a missing or unreadable file is
    /// a configuration error at start-up rather than a failed login at the first delivery.
    /// The password stays out of the configuration file itself, which is often world-readable
    /// or kept in version control.
    fn password(&self, file: &Spanned<PathBuf>, key: &str) -> Result<String, ConfigError> {
        self.first_line(file, key, "the password")
    }

    /// The first line of a secret's file (`what` it holds), relative to the configuration file.
    fn first_line(
        &self,
        file: &Spanned<PathBuf>,
        key: &str,
        what: &str,
    ) -> Result<String, ConfigError> {
        let written = self.path(file, key)?;
        // Relative to the configuration file, so that the pair can be moved together.
        let path = self
            .origin
            .parent()
            .map_or_else(|| written.clone(), |dir| dir.join(&written));
        let text = std::fs::read_to_string(&path).map_err(|err| {
            let reason = format!("cannot read {}: {err}", path.display());
            self.error(file.span(), key, reason)
        })?;
        match text.lines().next() {
            Some(password) if !password.is_empty() => Ok(password.to_owned()),
            _ => Err(self.error(
                file.span(),
                key,
                format!("{} is empty; its first line must be {what}", path.display()),
            )),
        }
    }

    /// An integer setting, or `default` when it is absent.
    fn int<T: TryFrom<i64>>(
        &self,
        value: &Option<Spanned<i64>>,
        setting: &Setting,
        default: T,
    ) -> Result<T, ConfigError> {
        match value {
            Some(value) => self.bounded(value, setting.key, setting),
            None => Ok(default),
        }
    }

    /// An integer within `setting`'s bounds, reported under `key` (which names an array
    /// element where `setting.key` names the array).
    fn bounded<T: TryFrom<i64>>(
        &self,
        value: &Spanned<i64>,
        key: &str,
        setting: &Setting,
    ) -> Result<T, ConfigError> {
        let n = *value.get_ref();
        let reason = if n < setting.min {
            format!("{n} is below the minimum {}", setting.min)
        } else if n > setting.max {
            format!("{n} is above the maximum {}", setting.max)
        } else {
            match T::try_from(n) {
                Ok(n) => return Ok(n),
                // Only reachable if T is narrower than the bounds allow for.
                Err(_) => format!("{n} is too large for this platform"),
            }
        };
        let reason = match setting.note {
            "" => reason,
            note => format!("{reason} ({note})"),
        };
        Err(self.error(value.span(), key, reason))
    }
}

/// A toml/serde message in the file's own terms: TOML has keys, tables and arrays, not fields,
/// maps and sequences. Syntax errors can span several lines; the report stays on one.
fn plain_words(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("unknown field", "unknown key"),
        ("missing field", "missing key"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: sequence", "invalid type: array"),
        ("expected a sequence", "expected an array"),
        ("expected i64", "expected an integer"),
    ];
    let message = message.trim().replace('\n', "; ");
    WORDS.iter().fold(message, |message, (serde, toml)| {
        message.replace(serde, toml)
    })
}

/// The value, or `None` with its problem added to `errors`.
fn keep<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Maps a byte span reported by the toml crate back to the key path it belongs to.
///
/// The document is deserialized a second time into a tree that records the span of every key and
/// value; the path to the innermost node containing the span is the answer.
/// Finds which key of the document a byte range of the text belongs to, so that errors from
/// the toml crate (which know only the range) can name the key.
mod locate {
    use std::ops::Range;

    use toml_edit::{ImDocument, Item, Table, Value};

    enum Step<'a> {
        Key(&'a str),
        Index(usize),
    }

    /// A path such as `listener[1].trusted_networks[0]` to the innermost key or value whose text
    /// contains `span`; `None` when the text is not TOML at all.
    pub(super) fn key_path(text: &str, span: &Range<usize>) -> Option<String> {
        let document = ImDocument::parse(text).ok()?;
        let mut steps = Vec::new();
        in_table(document.as_table(), span, &mut steps);
        let mut path = String::new();
        for step in steps {
            match step {
                Step::Index(index) => path.push_str(&format!("[{index}]")),
                Step::Key(name) if path.is_empty() => path.push_str(name),
                Step::Key(name) => path.push_str(&format!(".{name}")),
            }
        }
        Some(path)
    }

    fn covers(outer: Option<Range<usize>>, inner: &Range<usize>) -> bool {
        outer.is_some_and(|outer| outer.start <= inner.start && inner.end <= outer.end)
    }

    /// Tries `inside` with `step` pushed; keeps the step only if it leads to `span`.
    fn descend<'a>(
        steps: &mut Vec<Step<'a>>,
        step: Step<'a>,
        inside: impl FnOnce(&mut Vec<Step<'a>>) -> bool,
    ) -> bool {
        steps.push(step);
        let found = inside(steps);
        if !found {
            steps.pop();
        }
        found
    }

    // Children are searched even when a table has no span of its own (tables made implicitly
    // by dotted keys or [a.b] headers), and a key's own span counts: an unknown key is reported
    // at the key.
    fn in_table<'a>(table: &'a Table, span: &Range<usize>, steps: &mut Vec<Step<'a>>) -> bool {
        table.iter().any(|(name, item)| {
            let key_span = table.key(name).and_then(|key| key.span());
            descend(steps, Step::Key(name), |steps| {
                covers(key_span, span) || in_item(item, span, steps)
            })
        })
    }

    fn in_item<'a>(item: &'a Item, span: &Range<usize>, steps: &mut Vec<Step<'a>>) -> bool {
        match item {
            Item::Table(table) => in_table(table, span, steps) || covers(table.span(), span),
            Item::ArrayOfTables(tables) => tables.iter().enumerate().any(|(index, table)| {
                descend(steps, Step::Index(index), |steps| {
                    in_table(table, span, steps) || covers(table.span(), span)
                })
            }),
            Item::Value(value) => in_value(value, span, steps),
            Item::None => false,
        }
    }

    fn in_value<'a>(value: &'a Value, span: &Range<usize>, steps: &mut Vec<Step<'a>>) -> bool {
        let inner = match value {
            Value::Array(array) => array.iter().enumerate().any(|(index, item)| {
                descend(steps, Step::Index(index), |steps| {
                    in_value(item, span, steps)
                })
            }),
            Value::InlineTable(table) => table.iter().any(|(name, item)| {
                let key_span = table.key(name).and_then(|key| key.span());
                descend(steps, Step::Key(name), |steps| {
                    covers(key_span, span) || in_value(item, span, steps)
                })
            }),
            _ => false,
        };
        inner || covers(value.span(), span)
    }
}

const EXAMPLE: &str = r##"# Portcullis configuration. Every key is optional; the values below are the defaults.
# Lines starting with "#" directly followed by a key are optional settings without a default.

# Name used in the greeting, the EHLO reply and Received: header fields.
# Default: this machine's host name (/proc/sys/kernel/hostname), or "localhost".
hostname = "mail.example.test"

# Where the spool and the account store live; a relative path is relative to the working directory.
data_dir = "./portcullis-data"

# Each [[listener]] opens one socket. With no [[listener]] at all, these two are used.
[[listener]]
# IP address and port; IPv6 as "[::1]:587".
address = "127.0.0.1:2587"
# "submission": plaintext with STARTTLS, TLS required before AUTH (RFC 6409, usually port 587).
mode = "submission"
# Client networks (CIDR, e.g. "192.0.2.0/24" or "::1/128") that may submit without TLS or AUTH.
trusted_networks = []
# Offer STARTTLS (submission mode only).
starttls = true
# Name announced on this listener instead of the global hostname.
#hostname = "submit.example.test"

[[listener]]
address = "127.0.0.1:2465"
# "submissions": TLS from the first byte (RFC 8314, usually port 465).
mode = "submissions"
trusted_networks = []
starttls = true

# Certificate chain and private key, both PEM. Without [tls] a self-signed certificate is generated.
# It is the default: a domain may have its own, served to clients that ask for the domain or its
# host by SNI (`portcullis domains add DOMAIN --cert FILE --key FILE`).
#[tls]
#certificate = "/etc/portcullis/fullchain.pem"
#key = "/etc/portcullis/key.pem"

[limits]
# Largest message accepted, in octets (announced with SIZE); at least 1024.
max_message_size = 26214400
# Recipients per message; RFC 5321 asks servers to accept at least 100.
max_recipients = 100
# Failed commands tolerated before the connection is closed.
max_errors = 20
# Longest command line in octets, CRLF included; 512 to 65536 (RFC 5321 minimum 512).
max_command_line = 512
# Longest message text line in octets, CRLF included; 1000 to 1000000 (RFC 5321 minimum 1000).
max_text_line = 1000
# Simultaneous connections over all listeners.
max_connections = 1000
# Simultaneous connections from one client address; at most max_connections.
max_connections_per_ip = 100
# Octets of message data all sessions may hold at once; at least max_message_size. Each DATA
# reserves max_message_size until its message is spooled; past the budget DATA gets 452 4.3.1.
# The default is a quarter of physical memory.
#max_memory_in_flight = 2147483648
# A line ending other than CRLF inside DATA. "normalize": a bare LF ends a line and is stored as
# CRLF (Unix tools such as `curl -T` send those); "reject": refused with 554 5.6.0. Either way
# only CRLF.CRLF ends a message, and a bare CR or a NUL is refused (SMTP smuggling).
bare_line_endings = "normalize"

[timeouts]
# Wait for the next command; RFC 5321 asks for at least 5 minutes. 1 to 86400.
command_seconds = 300
# Wait for more message data during DATA. 1 to 86400.
data_seconds = 180
# The whole of one message's DATA, so a steady trickle cannot hold a session. 1 to 86400.
message_seconds = 1800
# Complete a TLS handshake. 1 to 86400.
tls_handshake_seconds = 30
# On shutdown, time open sessions get to finish before they are cut off; 0 cuts at once.
shutdown_grace_seconds = 30

# Brute-force protection. Failed logins are counted per (user name, client network) and per
# client network; unknown user names are counted exactly like accounts. Reasons are logged as
# "authentication failed client=IP user=... reason=...", never told to the client.
[auth]
# How long a failed login counts, in seconds. 60 to 2592000 (30 days).
failure_window_seconds = 3600
# Failures of a user name from one network answered at once; later ones wait. 0 to 1000.
delay_after_failures = 3
# The first wait before answering a failure, in milliseconds; it doubles each time. 0 to 60000.
delay_milliseconds = 250
# The longest wait, in milliseconds. 0 to 60000.
max_delay_milliseconds = 8000
# Failures of a user name from one network that lock it there ("454 4.7.0"); other networks,
# and an address the user logged in from (counted apart), keep working. The same wrong
# password again counts once. 1 to 1000.
lock_after_failures = 10
# How long such a lock lasts; `portcullis accounts unlock EMAIL` ends it early. 1 to 2592000.
lock_seconds = 900
# Different user names failing from one network before every login from it is refused
# ("421 4.7.0", then close). 2 to 100000.
network_refuse_after_accounts = 20
# How long such a refusal lasts; `portcullis accounts unlock --network CIDR` ends it early.
# 1 to 2592000.
network_refuse_seconds = 3600
# A network that logged in as a user within this many days is known for that user: its
# failures for it are mistakes, not spraying, and its refusal does not apply to that user; the
# exact address is known too, with a count and lock of its own. 0 to 3650.
remember_success_days = 30
# What a client network is: the address's first 24 bits (IPv4, 8 to 32) or 64 bits (IPv6, 16 to 128).
ipv4_prefix = 24
ipv6_prefix = 64

# Optional sending rules; an authenticated account may always use its own address, its aliases
# and its granted domains as the envelope sender (553 5.7.1 otherwise).
[policy]
# The addresses in the message's From: header must be allowed too; refused with 550 5.7.1
# after DATA otherwise.
check_header_from = false
# An account may only log in at the host name serving its domain (`portcullis domains add
# DOMAIN --host NAME`): the TLS SNI name, or the listener's hostname without SNI. Domains
# without a host may log in anywhere.
require_host_match = false

# Sending quotas of each account, overridable per account (`portcullis accounts quota`).
# 0 means no limit. Over a quota the client gets "451 4.7.1" with the time the window resets;
# a window starts with the first message counted in it. Counters survive a restart.
[quotas]
# Messages accepted per hour.
messages_per_hour = 0
# Recipients accepted per day, over all messages.
recipients_per_day = 0

# Whom the server runs as. Started as root with a user, it binds the listeners, gives the data
# directory to that user and becomes it (and the group) before anything else; without a user,
# a server started as root warns and keeps running as root.
[server]
#user = "portcullis"
# Default: the user's own group.
#group = "portcullis"

# Logs go to standard error, at the level PORTCULLIS_LOG names (error, warn, info, debug,
# trace; default info). The lines are listed in the README ("Logs").
[log]
# "text": a timestamp, the level, the event and key=value fields, one line each.
# "json": one JSON object a line (timestamp, level, fields), for log collectors.
format = "text"

# The HTTP listener: Prometheus metrics at /metrics and a read-only JSON API under /api/ (see
# the README, "Operations"). Off unless this section is present. Plain HTTP: keep it on
# loopback or a management network.
#[http]
# IP:PORT to listen on.
#address = "127.0.0.1:9587"
# Without a token only loopback clients are served (others get 403). With one, every request
# needs "Authorization: Bearer TOKEN" (401 otherwise), from any address. The token is the first
# line of the file; a relative path is relative to this file's directory.
#token_file = "http-token"

# Outbound delivery: how queued mail leaves for the recipients' mail exchangers (MX).
[delivery]
# false: accept and queue mail, deliver none of it (maintenance, a staging server); the queue
# is delivered once this is true again.
enabled = true
# Resolvers to ask: "IP" (port 53), "IP:PORT" or "[IPv6]:PORT". Empty means the system's
# (/etc/resolv.conf).
dns_servers = []
# Port of the MX hosts; 25 except in tests. 1 to 65535.
mx_port = 25
# Name sent in EHLO. Default: the global hostname.
#helo_name = "mail.example.test"
# TLS of MX delivery, unless a route says otherwise: "none" (never STARTTLS), "may" (STARTTLS
# when offered, any certificate), "encrypt" (TLS required, any certificate) or "verify" (TLS
# required, and the certificate must match the host name).
tls = "may"
# Seconds before the 1st, 2nd, ... retry of a temporarily failing recipient; the last one
# repeats. At least one, each 1 to 2592000.
retry_seconds = [300, 900, 1800, 3600, 7200, 14400]
# A recipient still failing temporarily this long after the message arrived is bounced.
# 1 to 2592000 (30 days); the default is 5 days.
max_queue_lifetime_seconds = 432000
# Tell the sender once that the message is delayed, this long after it arrived; 0 never does.
# Less than max_queue_lifetime_seconds.
delay_warning_seconds = 0
# Connections open at once to one destination (a recipient domain, or a relay). 1 to 1000,
# at most max_connections.
concurrency_per_destination = 10
# Outbound connections open at once in all. 1 to 10000.
max_connections = 100
# Messages sent over one connection before it is closed. 1 to 100000.
messages_per_connection = 100
# Recipients per transaction; more for the same destination go in further ones. 1 to 1000.
recipients_per_transaction = 50
# TCP connect, per address, in seconds. 1 to 3600.
connect_timeout_seconds = 30
# The greeting and the reply to each command; RFC 5321 asks for 5 minutes. 1 to 3600.
command_timeout_seconds = 300
# The reply after the message's final dot; RFC 5321 asks for 10 minutes. 1 to 3600.
data_timeout_seconds = 600

# Each [[route]] sends mail for some recipient domains its own way; without one, every domain
# goes to its MX hosts. The most specific route wins: an exact domain, then the longest
# ".suffix", then "*". A route without relay only sets the TLS policy of MX delivery.
# This one sends all mail through a smarthost, logging in over TLS with a verified certificate.
#[[route]]
# "example.com" (just it), ".example.com" (its subdomains, not itself) or "*" (every domain).
#domains = ["*"]
# HOST:PORT; the port is required.
#relay = "smtp.provider.test:587"
#tls = "verify"
# Both or neither, and only with a relay. The password is the first line of the file; a
# relative path is relative to this file's directory.
#auth_user = "portcullis@example.test"
#auth_password_file = "relay-password"
"##;

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/portcullis.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(FILE))
    }

    /// The error message for `text`, which must be refused.
    fn refused(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// Asserts the `FILE:LINE:COLUMN: KEY: ` prefix and that the reason mentions `reason`.
    fn assert_refused(text: &str, line: usize, column: usize, key: &str, reason: &str) {
        assert_refused_at(Path::new(FILE), text, line, column, key, reason);
    }

    /// [`assert_refused`] for a file at `origin`.
    fn assert_refused_at(
        origin: &Path,
        text: &str,
        line: usize,
        column: usize,
        key: &str,
        reason: &str,
    ) -> String {
        let message = match Config::parse(text, origin) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(err) => err.to_string(),
        };
        let prefix = format!("{}:{line}:{column}: {key}: ", origin.display());
        assert!(
            message.starts_with(&prefix),
            "{message:?} does not start with {prefix:?}"
        );
        assert!(
            message.contains(reason),
            "{message:?} does not mention {reason:?}"
        );
        message
    }

    /// A fresh directory for a configuration file and the files it names; removed on drop.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(name: &str) -> TestDir {
            let path = std::env::temp_dir()
                .join(format!("portcullis-config-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TestDir(path)
        }

        /// Where the configuration file would be.
        fn origin(&self) -> PathBuf {
            self.0.join("portcullis.toml")
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The example with its optional settings ("#key = ...", "#[table]") switched on.
    fn example_uncommented() -> String {
        let uncomment = |line: &str| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => {
                rest.to_owned()
            }
            _ => line.to_owned(),
        };
        Config::example()
            .lines()
            .map(uncomment)
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn embedded_default_values() {
        let config = Config::embedded_default();
        assert!(
            hostname_problem(&config.hostname).is_none(),
            "{:?}",
            config.hostname
        );
        assert_eq!(config.data_dir, PathBuf::from("./portcullis-data"));
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(
            config.listeners[0].address,
            "127.0.0.1:2587".parse().unwrap()
        );
        assert_eq!(config.listeners[0].mode, ListenerMode::Submission);
        assert_eq!(
            config.listeners[1].address,
            "127.0.0.1:2465".parse().unwrap()
        );
        assert_eq!(config.listeners[1].mode, ListenerMode::Submissions);
        assert!(
            config
                .listeners
                .iter()
                .all(|l| l.starttls && l.trusted_networks.is_empty())
        );
        assert!(config.listeners.iter().all(|l| l.hostname.is_none()));
        assert_eq!(config.tls, None);
        let limits = &config.limits;
        assert_eq!(limits.max_message_size, 26_214_400);
        assert_eq!(limits.max_recipients, 100);
        assert_eq!(limits.max_errors, 20);
        assert_eq!(limits.max_command_line, 512);
        assert_eq!(limits.max_text_line, 1000);
        assert_eq!(limits.max_connections, 1000);
        assert_eq!(limits.max_connections_per_ip, 100);
        assert_eq!(config.timeouts.command, Duration::from_secs(300));
        assert_eq!(config.timeouts.data, Duration::from_secs(180));
        assert_eq!(config.timeouts.tls_handshake, Duration::from_secs(30));
        assert_eq!(config.timeouts.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        assert_eq!(parse("").unwrap(), Config::embedded_default());
    }

    #[test]
    fn the_default_memory_budget_is_a_quarter_of_physical_memory() {
        let meminfo = "MemTotal:        8000000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(8_000_000));
        assert_eq!(mem_total_kib("MemFree: 1 kB\n"), None);
        let limits = parse("[limits]\nmax_memory_in_flight = 50000000\n")
            .unwrap()
            .limits;
        assert_eq!(limits.max_memory_in_flight, 50_000_000);
    }

    #[test]
    fn server_user_and_group_are_read_and_a_group_alone_is_refused() {
        let config = Config::parse(
            "[server]\nuser = \"portcullis\"\ngroup = \"mail\"\n",
            Path::new(FILE),
        )
        .unwrap();
        assert_eq!(
            config.server,
            ServerConfig {
                user: Some("portcullis".into()),
                group: Some("mail".into()),
            }
        );
        assert_refused(
            "[server]\ngroup = \"mail\"\n",
            2,
            9,
            "server.group",
            "a group is only used with server.user; set the user too",
        );
        assert_refused(
            "[server]\nuser = \"\"\n",
            2,
            8,
            "server.user",
            "must be a user or group name, not empty",
        );
    }

    #[test]
    fn every_section_reports_its_first_problem() {
        let text = "[limits]\nmax_recipients = 0\n[server]\ngroup = \"mail\"\n";
        let errors = Config::parse_all(text, Path::new(FILE)).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                format!("{FILE}:2:18: limits.max_recipients: 0 is below the minimum 1"),
                format!(
                    "{FILE}:4:9: server.group: a group is only used with server.user; set the user too"
                ),
            ]
        );
    }

    #[test]
    fn an_http_section_turns_the_listener_on_at_its_default_address() {
        assert_eq!(parse("").unwrap().http, None);
        let config = parse("[http]\n").unwrap();
        let expected = HttpConfig {
            address: DEFAULT_HTTP,
            token: None,
        };
        assert_eq!(config.http, Some(expected));
        let config = parse("[http]\naddress = \"127.0.0.2:8080\"\n").unwrap();
        assert_eq!(
            config.http.unwrap().address,
            "127.0.0.2:8080".parse().unwrap()
        );
        assert_refused(
            "[http]\naddress = \"localhost\"\n",
            2,
            11,
            "http.address",
            "\"localhost\" is not a socket address; expected IP:PORT such as 127.0.0.1:587 or [::1]:587",
        );
    }

    #[test]
    fn an_http_token_file_must_be_readable_and_not_empty() {
        let dir = TestDir::new("http-token");
        dir.write("empty-token", "\n");
        let refused = Config::parse("[http]\ntoken_file = \"empty-token\"\n", &dir.origin())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("http.token_file")
                && refused.contains("its first line must be the token"),
            "{refused}"
        );
        let refused = Config::parse("[http]\ntoken_file = \"missing\"\n", &dir.origin())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("cannot read"), "{refused}");
    }

    #[test]
    fn example_parses_to_the_defaults() {
        let config = parse(Config::example()).unwrap();
        let expected = Config {
            hostname: "mail.example.test".to_owned(),
            ..Config::embedded_default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn example_optional_settings_parse() {
        let dir = TestDir::new("example");
        dir.write("relay-password", "example secret\n");
        dir.write("http-token", "scrape secret\n");
        let config = Config::parse(&example_uncommented(), &dir.origin()).unwrap();
        let http = HttpConfig {
            address: DEFAULT_HTTP,
            token: Some("scrape secret".to_owned()),
        };
        assert_eq!(config.http, Some(http));
        assert_eq!(
            config.delivery.helo_name.as_deref(),
            Some("mail.example.test")
        );
        let route = crate::routing::Route {
            domains: vec![crate::routing::DomainPattern::Any],
            relay: Some(crate::routing::Relay::parse("smtp.provider.test:587").unwrap()),
            tls: Some(crate::routing::TlsPolicy::Verify),
            auth: Some(crate::routing::RelayAuth {
                user: "portcullis@example.test".to_owned(),
                password: "example secret".to_owned(),
            }),
        };
        assert_eq!(config.routes, vec![route]);
        assert_eq!(
            config.listeners[0].hostname.as_deref(),
            Some("submit.example.test")
        );
        let tls = config.tls.unwrap();
        assert_eq!(
            tls.certificate,
            PathBuf::from("/etc/portcullis/fullchain.pem")
        );
        assert_eq!(tls.key, PathBuf::from("/etc/portcullis/key.pem"));
    }

    #[test]
    fn example_documents_every_key() {
        let example = example_uncommented();
        let keys = [
            "hostname",
            "data_dir",
            "[[listener]]",
            "address",
            "mode",
            "trusted_networks",
            "starttls",
            "[tls]",
            "certificate",
            "key",
            "[limits]",
            "max_message_size",
            "max_recipients",
            "max_errors",
            "max_command_line",
            "max_text_line",
            "max_connections",
            "max_connections_per_ip",
            "bare_line_endings",
            "[timeouts]",
            "command_seconds",
            "data_seconds",
            "message_seconds",
            "tls_handshake_seconds",
            "shutdown_grace_seconds",
            "[auth]",
            "failure_window_seconds",
            "delay_after_failures",
            "delay_milliseconds",
            "max_delay_milliseconds",
            "lock_after_failures",
            "lock_seconds",
            "network_refuse_after_accounts",
            "network_refuse_seconds",
            "remember_success_days",
            "ipv4_prefix",
            "ipv6_prefix",
            "[policy]",
            "check_header_from",
            "require_host_match",
            "[quotas]",
            "messages_per_hour",
            "recipients_per_day",
            "[delivery]",
            "dns_servers",
            "mx_port",
            "helo_name",
            "tls",
            "retry_seconds",
            "max_queue_lifetime_seconds",
            "delay_warning_seconds",
            "concurrency_per_destination",
            "max_connections",
            "messages_per_connection",
            "recipients_per_transaction",
            "connect_timeout_seconds",
            "command_timeout_seconds",
            "data_timeout_seconds",
            "[[route]]",
            "domains",
            "relay",
            "auth_user",
            "auth_password_file",
            "[log]",
            "format",
            "[server]",
            "user",
            "group",
            "[http]",
            "token_file",
        ];
        for key in keys {
            assert!(
                example.lines().any(|line| line.starts_with(key)),
                "{key} is missing"
            );
        }
    }

    #[test]
    fn full_file_is_read_as_written() {
        let text = r#"
hostname = "mx.example.org"
data_dir = "relative/data"

[[listener]]
address = "[::1]:587"
mode = "submission"
trusted_networks = ["10.1.2.3/8", "::1"]
starttls = false
hostname = "submit.example.org"

[tls]
certificate = "cert.pem"
key = "key.pem"

[limits]
max_message_size = 1024
max_connections = 10
max_connections_per_ip = 10

[timeouts]
command_seconds = 600
shutdown_grace_seconds = 0
"#;
        let config = parse(text).unwrap();
        assert_eq!(config.hostname, "mx.example.org");
        assert_eq!(config.data_dir, PathBuf::from("relative/data"));
        let expected = ListenerConfig {
            address: "[::1]:587".parse().unwrap(),
            mode: ListenerMode::Submission,
            trusted_networks: vec![cidr("10.0.0.0/8"), cidr("::1/128")],
            starttls: false,
            hostname: Some("submit.example.org".to_owned()),
        };
        assert_eq!(config.listeners, vec![expected]);
        let tls = TlsFiles {
            certificate: "cert.pem".into(),
            key: "key.pem".into(),
        };
        assert_eq!(config.tls, Some(tls));
        assert_eq!(config.limits.max_message_size, 1024);
        assert_eq!(config.limits.max_recipients, 100);
        assert_eq!(config.limits.max_connections, 10);
        assert_eq!(config.timeouts.command, Duration::from_secs(600));
        assert_eq!(config.timeouts.data, Duration::from_secs(180));
        assert_eq!(config.timeouts.shutdown_grace, Duration::ZERO);
    }

    #[test]
    fn auth_table_is_read_as_written() {
        let text = "[auth]\nfailure_window_seconds = 600\ndelay_after_failures = 0\n\
                    delay_milliseconds = 10\nmax_delay_milliseconds = 40\nlock_after_failures = 5\n\
                    lock_seconds = 60\nnetwork_refuse_after_accounts = 3\n\
                    network_refuse_seconds = 120\nremember_success_days = 0\n\
                    ipv4_prefix = 32\nipv6_prefix = 128\n";
        let auth = parse(text).unwrap().auth;
        let expected = AuthConfig {
            failure_window: Duration::from_secs(600),
            delay_after_failures: 0,
            delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            lock_after_failures: 5,
            lock: Duration::from_secs(60),
            network_refuse_after_accounts: 3,
            network_refuse: Duration::from_secs(120),
            remember_success: Duration::ZERO,
            ipv4_prefix: 32,
            ipv6_prefix: 128,
        };
        assert_eq!(auth, expected);
        let policy = auth.login_policy();
        assert_eq!(
            (policy.lock_seconds, policy.first_delay, policy.ipv4_prefix),
            (60, Duration::from_millis(10), 32)
        );
    }

    #[test]
    fn log_format_is_text_or_json() {
        let config = parse("[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        let error = parse("[log]\nformat = \"syslog\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("log.format"), "{error}");
        assert!(error.contains("not a log format"), "{error}");
    }

    #[test]
    fn policy_and_quota_tables_are_read_as_written() {
        let text = "[policy]\ncheck_header_from = true\nrequire_host_match = true\n\
                    [quotas]\nmessages_per_hour = 200\nrecipients_per_day = 2000\n";
        let config = parse(text).unwrap();
        assert_eq!(
            config.policy,
            PolicyConfig {
                check_header_from: true,
                require_host_match: true
            }
        );
        assert_eq!(
            config.quotas,
            QuotaConfig {
                messages_per_hour: 200,
                recipients_per_day: 2000
            }
        );
        assert_refused(
            "[quotas]\nmessages_per_hour = -1\n",
            2,
            21,
            "quotas.messages_per_hour",
            "-1 is below the minimum 0",
        );
        assert_refused(
            "[policy]\ncheck_header_form = true\n",
            2,
            1,
            "policy.check_header_form",
            "unknown",
        );
    }

    #[test]
    fn auth_values_out_of_range_and_unknown_keys() {
        assert_refused(
            "[auth]\nlock_after_failures = 0\n",
            2,
            23,
            "auth.lock_after_failures",
            "minimum 1",
        );
        assert_refused(
            "[auth]\nipv4_prefix = 4\n",
            2,
            15,
            "auth.ipv4_prefix",
            "lump unrelated customers",
        );
        assert_refused(
            "[auth]\nipv6_prefix = 129\n",
            2,
            15,
            "auth.ipv6_prefix",
            "maximum 128",
        );
        assert_refused(
            "\n[auth]\nmax_delay_milliseconds = 61000\n",
            3,
            26,
            "auth.max_delay_milliseconds",
            "keeps the connection waiting",
        );
        assert_refused(
            "[auth]\nlock_minutes = 5\n",
            2,
            1,
            "auth.lock_minutes",
            "unknown key",
        );
    }

    #[test]
    fn dotted_keys_are_ordinary_tables() {
        let config = parse("limits.max_errors = 3\ntimeouts = { data_seconds = 7 }\n").unwrap();
        assert_eq!(config.limits.max_errors, 3);
        assert_eq!(config.timeouts.data, Duration::from_secs(7));
    }

    #[test]
    fn port_zero_may_repeat() {
        let text = "[[listener]]\naddress = \"127.0.0.1:0\"\nmode = \"submission\"\n\
                    [[listener]]\naddress = \"127.0.0.1:0\"\nmode = \"submissions\"\n";
        assert_eq!(parse(text).unwrap().listeners.len(), 2);
    }

    #[test]
    fn unreadable_file() {
        let path = Path::new("/nonexistent/portcullis.toml");
        let message = Config::load(path).unwrap_err().to_string();
        assert!(
            message.starts_with("/nonexistent/portcullis.toml: cannot read: "),
            "{message}"
        );
    }

    #[test]
    fn load_reads_a_file() {
        let path =
            std::env::temp_dir().join(format!("portcullis-config-{}.toml", std::process::id()));
        std::fs::write(&path, "hostname = \"file.example\"\n").unwrap();
        let loaded = Config::load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap().hostname, "file.example");
    }

    #[test]
    fn unknown_key_at_top_level() {
        assert_refused(
            "hostname = \"a.b\"\nhost_name = \"x\"\n",
            2,
            1,
            "host_name",
            "unknown key",
        );
    }

    #[test]
    fn unknown_key_in_listener() {
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"submission\"\n\n\
                    [[listener]]\naddress = \"127.0.0.1:2\"\nmode = \"submission\"\nstarttsl = true\n";
        assert_refused(text, 8, 1, "listener[1].starttsl", "unknown key `starttsl`");
    }

    #[test]
    fn unknown_key_in_tables() {
        assert_refused(
            "[limits]\nmax_size = 5\n",
            2,
            1,
            "limits.max_size",
            "unknown key",
        );
        assert_refused(
            "[timeouts]\ncommand = 5\n",
            2,
            1,
            "timeouts.command",
            "unknown key",
        );
        let tls = "[tls]\ncertificate = \"c\"\nkey = \"k\"\nchain = \"x\"\n";
        assert_refused(tls, 4, 1, "tls.chain", "unknown key");
        assert_refused("[smtp]\nport = 25\n", 1, 2, "smtp", "unknown key");
    }

    #[test]
    fn unknown_key_written_as_dotted_key() {
        assert_refused("\nlimits.bogus = 1\n", 2, 8, "limits.bogus", "unknown key");
    }

    #[test]
    fn wrong_types() {
        assert_refused("hostname = 5\n", 1, 12, "hostname", "invalid type");
        assert_refused(
            "[limits]\nmax_errors = \"20\"\n",
            2,
            14,
            "limits.max_errors",
            "invalid type",
        );
        let listener =
            "[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"submission\"\nstarttls = \"yes\"\n";
        assert_refused(listener, 4, 12, "listener[0].starttls", "invalid type");
        assert_refused("listener = 5\n", 1, 12, "listener", "invalid type");
        assert_refused(
            "[limits]\nmax_errors = 1979-05-27\n",
            2,
            14,
            "limits.max_errors",
            "invalid type",
        );
    }

    #[test]
    fn unknown_listener_mode() {
        let text = "hostname = \"a.b\"\n\n[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"submission\"\n\n\
                    [[listener]]\naddress = \"127.0.0.1:2\"\nmode = \"smtp\"\n";
        assert_refused(text, 9, 8, "listener[1].mode", "unknown variant `smtp`");
    }

    #[test]
    fn missing_listener_keys() {
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"submission\"\n\n\
                    [[listener]]\naddress = \"127.0.0.1:2\"\n";
        assert_refused(text, 5, 1, "listener[1]", "missing key `mode`");
    }

    #[test]
    fn bad_socket_address() {
        let text = "[[listener]]\naddress = \"localhost:587\"\nmode = \"submission\"\n";
        assert_refused(text, 2, 11, "listener[0].address", "not a socket address");
        let text = "[[listener]]\naddress = \"127.0.0.1\"\nmode = \"submission\"\n";
        assert_refused(text, 2, 11, "listener[0].address", "IP:PORT");
    }

    #[test]
    fn bad_cidr_points_at_the_element() {
        let text = "[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"submission\"\n\
                    trusted_networks = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n";
        assert_refused(
            text,
            6,
            3,
            "listener[0].trusted_networks[1]",
            "prefix length 33 exceeds 32",
        );
    }

    #[test]
    fn bare_line_endings_is_normalize_or_reject() {
        use crate::smtp::BareLineEndings;
        let policy = |text: &str| parse(&format!("[limits]\n{text}\n")).unwrap().limits;
        assert_eq!(policy("").bare_line_endings, BareLineEndings::Normalize);
        assert_eq!(
            policy("bare_line_endings = \"reject\"").bare_line_endings,
            BareLineEndings::Reject
        );
        assert_eq!(
            policy("bare_line_endings = \"Normalize\"").bare_line_endings,
            BareLineEndings::Normalize
        );
        assert_refused(
            "[limits]\nbare_line_endings = \"strip\"\n",
            2,
            21,
            "limits.bare_line_endings",
            "use normalize or reject",
        );
    }

    #[test]
    fn value_out_of_range() {
        assert_refused(
            "[limits]\nmax_command_line = 100\n",
            2,
            20,
            "limits.max_command_line",
            "512",
        );
        assert_refused(
            "[limits]\nmax_text_line = 999\n",
            2,
            17,
            "limits.max_text_line",
            "RFC 5321",
        );
        assert_refused(
            "[limits]\nmax_message_size = 10\n",
            2,
            20,
            "limits.max_message_size",
            "1024",
        );
        assert_refused(
            "[limits]\nmax_memory_in_flight = 100000\n",
            2,
            24,
            "limits.max_memory_in_flight",
            "is below limits.max_message_size",
        );
        assert_refused(
            "[limits]\nmax_recipients = 0\n",
            2,
            18,
            "limits.max_recipients",
            "minimum 1",
        );
        assert_refused(
            "[limits]\nmax_errors = -1\n",
            2,
            14,
            "limits.max_errors",
            "-1 is below",
        );
        assert_refused(
            "[limits]\nmax_command_line = 70000\n",
            2,
            20,
            "limits.max_command_line",
            "maximum",
        );
        assert_refused(
            "[timeouts]\ndata_seconds = 0\n",
            2,
            16,
            "timeouts.data_seconds",
            "minimum 1",
        );
        let grace = "[timeouts]\nshutdown_grace_seconds = 90000\n";
        assert_refused(
            grace,
            2,
            26,
            "timeouts.shutdown_grace_seconds",
            "maximum 86400",
        );
    }

    #[test]
    fn syntax_error() {
        assert_refused(
            "hostname = \"a.b\"\ndata_dir = \"x\n",
            2,
            14,
            "syntax",
            "string",
        );
        let message = refused("[limits\nmax_errors = 1\n");
        assert!(message.starts_with(&format!("{FILE}:1:")), "{message}");
        assert!(!message.contains('\n'), "{message:?}");
    }

    #[test]
    fn duplicate_key_is_a_syntax_error() {
        assert_refused(
            "hostname = \"a.b\"\nhostname = \"c.d\"\n",
            2,
            1,
            "syntax",
            "duplicate key",
        );
    }

    #[test]
    fn duplicate_listener_addresses() {
        let text = "[[listener]]\naddress = \"127.0.0.1:587\"\nmode = \"submission\"\n\n\
                    [[listener]]\naddress = \"127.0.0.1:587\"\nmode = \"submissions\"\n";
        assert_refused(
            text,
            6,
            11,
            "listener[1].address",
            "already used by listener[0] (line 2)",
        );
    }

    #[test]
    fn tls_needs_both_files() {
        let text = "hostname = \"a.b\"\n\n[tls]\ncertificate = \"/c.pem\"\n";
        assert_refused(text, 3, 1, "tls", "missing key `key`");
        assert_refused(
            "[tls]\nkey = \"/k.pem\"\n",
            1,
            1,
            "tls",
            "missing key `certificate`",
        );
        assert_refused(
            "[tls]\ncertificate = \"\"\nkey = \"k\"\n",
            2,
            15,
            "tls.certificate",
            "empty",
        );
    }

    #[test]
    fn listener_without_starttls_needs_trusted_networks() {
        let text =
            "[[listener]]\naddress = \"127.0.0.1:25\"\nmode = \"submission\"\nstarttls = false\n";
        assert_refused(text, 4, 12, "listener[0].starttls", "trusted_networks");
        let trusted = format!("{text}trusted_networks = [\"10.0.0.0/8\"]\n");
        assert!(!parse(&trusted).unwrap().listeners[0].starttls);
    }

    #[test]
    fn zero_listeners() {
        assert_refused(
            "hostname = \"a.b\"\nlistener = []\n",
            2,
            12,
            "listener",
            "at least one listener",
        );
    }

    #[test]
    fn bad_hostnames() {
        assert_refused("hostname = \"\"\n", 1, 12, "hostname", "must not be empty");
        assert_refused(
            "\nhostname = \"mail_1.example\"\n",
            2,
            12,
            "hostname",
            "'_'",
        );
        assert_refused("hostname = \"a..b\"\n", 1, 12, "hostname", "empty label");
        assert_refused("hostname = \"-a.b\"\n", 1, 12, "hostname", "hyphen");
        let listener =
            "[[listener]]\naddress = \"127.0.0.1:1\"\nmode = \"submission\"\nhostname = \"a b\"\n";
        assert_refused(listener, 4, 12, "listener[0].hostname", "' '");
    }

    #[test]
    fn hostname_syntax() {
        assert!(hostname_problem("mail.example.test").is_none());
        assert!(hostname_problem("localhost").is_none());
        assert!(hostname_problem("xn--bcher-kva.example").is_none());
        assert!(hostname_problem("example.test.").is_some());
        assert!(hostname_problem(&"a".repeat(64)).is_some());
        assert!(hostname_problem(&["a"; 128].join(".")).is_some());
    }

    #[test]
    fn empty_data_dir() {
        assert_refused("data_dir = \"\"\n", 1, 12, "data_dir", "must not be empty");
    }

    #[test]
    fn per_ip_cap_above_total() {
        let text = "[limits]\nmax_connections = 10\nmax_connections_per_ip = 11\n";
        assert_refused(
            text,
            3,
            26,
            "limits.max_connections_per_ip",
            "exceeds limits.max_connections (10)",
        );
        // Only the total written: the default per-IP cap of 100 no longer fits under it.
        assert_refused(
            "[limits]\nmax_connections = 50\n",
            2,
            19,
            "limits.max_connections",
            "100",
        );
    }

    #[test]
    fn error_columns_count_characters() {
        assert_refused("# é\nhostname = \"é\"\n", 2, 12, "hostname", "'é'");
    }

    #[test]
    fn delivery_table_is_read_as_written() {
        let text = r#"
[delivery]
enabled = false
dns_servers = ["127.0.0.1:5353", "192.0.2.53"]
mx_port = 2525
helo_name = "out.example.org"
tls = "verify"
retry_seconds = [60, 120]
max_queue_lifetime_seconds = 86400
delay_warning_seconds = 3600
concurrency_per_destination = 2
max_connections = 20
messages_per_connection = 7
recipients_per_transaction = 5
connect_timeout_seconds = 3
command_timeout_seconds = 4
data_timeout_seconds = 5
"#;
        let expected = DeliveryConfig {
            enabled: false,
            dns_servers: vec![
                "127.0.0.1:5353".parse().unwrap(),
                "192.0.2.53:53".parse().unwrap(),
            ],
            mx_port: 2525,
            helo_name: Some("out.example.org".to_owned()),
            tls: crate::routing::TlsPolicy::Verify,
            retry: crate::queue::schedule::RetryPolicy {
                retry_seconds: vec![60, 120],
                max_queue_lifetime: 86400,
                delay_warning: Some(3600),
                jitter_percent: crate::queue::schedule::RetryPolicy::default().jitter_percent,
            },
            concurrency_per_destination: 2,
            max_connections: 20,
            messages_per_connection: 7,
            recipients_per_transaction: 5,
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(4),
            data_timeout: Duration::from_secs(5),
        };
        assert_eq!(parse(text).unwrap().delivery, expected);
    }

    #[test]
    fn delivery_keys_alone_keep_the_other_defaults() {
        let delivery = |text: &str| parse(&format!("[delivery]\n{text}\n")).unwrap().delivery;
        let default = DeliveryConfig::default();
        assert_eq!(delivery(""), default);
        assert_eq!(delivery("mx_port = 1").mx_port, 1);
        assert_eq!(delivery("mx_port = 65535").mx_port, 65535);
        assert_eq!(
            delivery("tls = \"none\"").tls,
            crate::routing::TlsPolicy::None
        );
        assert_eq!(
            delivery("tls = \"Encrypt\"").tls,
            crate::routing::TlsPolicy::Encrypt
        );
        assert_eq!(
            delivery("tls = \"may\"").tls,
            crate::routing::TlsPolicy::May
        );
        assert_eq!(
            delivery("helo_name = \"localhost\"").helo_name.as_deref(),
            Some("localhost")
        );
        assert_eq!(
            delivery("retry_seconds = [2592000]").retry.retry_seconds,
            [2_592_000]
        );
        let lifetime = delivery("max_queue_lifetime_seconds = 2592000").retry;
        assert_eq!(lifetime.max_queue_lifetime, 2_592_000);
        assert_eq!(lifetime.retry_seconds, default.retry.retry_seconds);
        assert_eq!(
            delivery("delay_warning_seconds = 0").retry.delay_warning,
            None
        );
        let warning = delivery("delay_warning_seconds = 431999").retry;
        assert_eq!(warning.delay_warning, Some(431_999));
        assert_eq!(warning.max_queue_lifetime, default.retry.max_queue_lifetime);
        let c = delivery("concurrency_per_destination = 1000\nmax_connections = 10000");
        assert_eq!(
            (c.concurrency_per_destination, c.max_connections),
            (1000, 10_000)
        );
        assert_eq!(
            delivery("messages_per_connection = 100000").messages_per_connection,
            100_000
        );
        assert_eq!(
            delivery("recipients_per_transaction = 1000").recipients_per_transaction,
            1000
        );
        let t = delivery(
            "connect_timeout_seconds = 3600\ncommand_timeout_seconds = 1\n\
                          data_timeout_seconds = 3600",
        );
        assert_eq!(
            (t.connect_timeout, t.command_timeout, t.data_timeout),
            (
                Duration::from_secs(3600),
                Duration::from_secs(1),
                Duration::from_secs(3600)
            )
        );
        // Dotted keys and inline tables are the same table.
        assert_eq!(
            parse("delivery.mx_port = 26\n").unwrap().delivery.mx_port,
            26
        );
    }

    #[test]
    fn dns_server_forms() {
        let servers = |list: &str| {
            parse(&format!("[delivery]\ndns_servers = {list}\n"))
                .unwrap()
                .delivery
                .dns_servers
        };
        let addresses = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        assert_eq!(servers("[]"), []);
        assert_eq!(
            servers(r#"["127.0.0.1:5353", "192.0.2.53", " 192.0.2.54 "]"#),
            addresses(&["127.0.0.1:5353", "192.0.2.53:53", "192.0.2.54:53"])
        );
        assert_eq!(
            servers(r#"["[2001:db8::53]:5353", "2001:db8::53", "[::1]"]"#),
            addresses(&["[2001:db8::53]:5353", "[2001:db8::53]:53", "[::1]:53"])
        );
        let refuse = |value: &str, reason: &str| {
            let text = format!("[delivery]\ndns_servers = [\"::1\", {value}]\n");
            assert_refused(&text, 2, 23, "delivery.dns_servers[1]", reason);
        };
        refuse(
            "\"localhost:53\"",
            "\"localhost:53\" is not a DNS server address",
        );
        refuse("\"[192.0.2.1]\"", "not a DNS server address");
        refuse("\"192.0.2.1:99999\"", "not a DNS server address");
        refuse("\"\"", "not a DNS server address");
        refuse("\"192.0.2.1:0\"", "port 0");
        assert_refused(
            "[delivery]\ndns_servers = \"192.0.2.53\"\n",
            2,
            15,
            "delivery.dns_servers",
            "invalid type",
        );
    }

    #[test]
    fn delivery_values_out_of_range() {
        let refuse = |setting: &str, value: &str, reason: &str| {
            let text = format!("[delivery]\n{setting} = {value}\n");
            let column = setting.chars().count() + 4;
            assert_refused(&text, 2, column, &format!("delivery.{setting}"), reason);
        };
        refuse("mx_port", "0", "0 is below the minimum 1");
        refuse("mx_port", "65536", "65536 is above the maximum 65535");
        refuse("max_queue_lifetime_seconds", "0", "below the minimum 1");
        refuse(
            "max_queue_lifetime_seconds",
            "2592001",
            "above the maximum 2592000",
        );
        refuse("delay_warning_seconds", "-1", "below the minimum 0");
        refuse("concurrency_per_destination", "0", "below the minimum 1");
        refuse(
            "concurrency_per_destination",
            "1001",
            "above the maximum 1000",
        );
        refuse("max_connections", "0", "below the minimum 1");
        refuse("max_connections", "10001", "above the maximum 10000");
        refuse("messages_per_connection", "0", "below the minimum 1");
        refuse(
            "messages_per_connection",
            "100001",
            "above the maximum 100000",
        );
        refuse("recipients_per_transaction", "0", "below the minimum 1");
        refuse(
            "recipients_per_transaction",
            "1001",
            "above the maximum 1000",
        );
        for timeout in [
            "connect_timeout_seconds",
            "command_timeout_seconds",
            "data_timeout_seconds",
        ] {
            refuse(timeout, "0", "below the minimum 1");
            refuse(timeout, "3601", "above the maximum 3600");
        }
        refuse("tls", "\"dane\"", "\"dane\" is not a TLS policy");
        refuse("helo_name", "\"out_1.example\"", "'_'");
        refuse("helo_name", "\"\"", "must not be empty");
        refuse("mx_port", "\"25\"", "invalid type");
    }

    #[test]
    fn retry_seconds_must_be_a_list_of_delays() {
        assert_refused(
            "[delivery]\nretry_seconds = []\n",
            2,
            17,
            "delivery.retry_seconds",
            "at least one delay",
        );
        assert_refused(
            "[delivery]\nretry_seconds = [300, 0]\n",
            2,
            23,
            "delivery.retry_seconds[1]",
            "0 is below the minimum 1",
        );
        assert_refused(
            "[delivery]\nretry_seconds = [\n  2592001,\n]\n",
            3,
            3,
            "delivery.retry_seconds[0]",
            "above the maximum 2592000",
        );
        assert_refused(
            "[delivery]\nretry_seconds = 300\n",
            2,
            17,
            "delivery.retry_seconds",
            "invalid type",
        );
    }

    #[test]
    fn delay_warning_must_come_before_the_lifetime() {
        let text = "[delivery]\nmax_queue_lifetime_seconds = 3600\ndelay_warning_seconds = 3600\n";
        assert_refused(
            text,
            3,
            25,
            "delivery.delay_warning_seconds",
            "3600 is not below delivery.max_queue_lifetime_seconds (3600)",
        );
        assert_refused(
            "[delivery]\ndelay_warning_seconds = 432000\n",
            2,
            25,
            "delivery.delay_warning_seconds",
            "(432000, the default)",
        );
        // Off is always fine, however short the lifetime.
        let off = "[delivery]\nmax_queue_lifetime_seconds = 1\ndelay_warning_seconds = 0\n";
        assert_eq!(parse(off).unwrap().delivery.retry.delay_warning, None);
    }

    #[test]
    fn concurrency_above_max_connections() {
        let text = "[delivery]\nmax_connections = 4\nconcurrency_per_destination = 5\n";
        assert_refused(
            text,
            3,
            31,
            "delivery.concurrency_per_destination",
            "5 exceeds delivery.max_connections (4)",
        );
        assert_refused(
            "[delivery]\nmax_connections = 9\n",
            2,
            19,
            "delivery.max_connections",
            "9 is below delivery.concurrency_per_destination (10, the default)",
        );
    }

    #[test]
    fn unknown_key_in_delivery_and_route() {
        assert_refused(
            "[delivery]\nmx_port = 25\nretries = [1]\n",
            3,
            1,
            "delivery.retries",
            "unknown key `retries`",
        );
        let text = "[[route]]\ndomains = [\"*\"]\n\n[[route]]\ndomains = [\"a.test\"]\nsmarthost = \"x:25\"\n";
        assert_refused(text, 6, 1, "route[1].smarthost", "unknown key `smarthost`");
        assert_refused(
            "[[route]]\nrelay = \"x.test:25\"\n",
            1,
            1,
            "route[0]",
            "missing key `domains`",
        );
    }

    #[test]
    fn routes_are_read_in_order() {
        use crate::routing::{DomainPattern, Relay, Route, TlsPolicy};
        let text = r#"
[[route]]
domains = ["example.com", ".example.org", "*"]
relay = "smtp.provider.test:587"
tls = "encrypt"

[[route]]
domains = ["Strict.Example"]
tls = "verify"

[[route]]
domains = ["ip.example"]
relay = "[2001:db8::25]:25"
"#;
        let routes = parse(text).unwrap().routes;
        let expected = vec![
            Route {
                domains: vec![
                    DomainPattern::Exact("example.com".to_owned()),
                    DomainPattern::Suffix("example.org".to_owned()),
                    DomainPattern::Any,
                ],
                relay: Some(Relay {
                    host: "smtp.provider.test".to_owned(),
                    port: 587,
                }),
                tls: Some(TlsPolicy::Encrypt),
                auth: None,
            },
            Route {
                domains: vec![DomainPattern::Exact("strict.example".to_owned())],
                relay: None,
                tls: Some(TlsPolicy::Verify),
                auth: None,
            },
            Route {
                domains: vec![DomainPattern::Exact("ip.example".to_owned())],
                relay: Some(Relay {
                    host: "2001:db8::25".to_owned(),
                    port: 25,
                }),
                tls: None,
                auth: None,
            },
        ];
        assert_eq!(routes, expected);
        assert_eq!(parse("route = []\n").unwrap().routes, []);
    }

    #[test]
    fn route_values_are_checked() {
        let route = |body: &str| format!("[[route]]\ndomains = [\"a.test\"]\n{body}\n");
        assert_refused(
            "[[route]]\ndomains = [\"a.test\", \"*.b.test\"]\n",
            2,
            22,
            "route[0].domains[1]",
            "write \".b.test\"",
        );
        assert_refused(
            &route("relay = \"smtp.provider.test\""),
            3,
            9,
            "route[0].relay",
            "host:port",
        );
        assert_refused(
            &route("tls = \"always\""),
            3,
            7,
            "route[0].tls",
            "not a TLS policy",
        );
        // RouteTable::new's own check, pointed at the route it names.
        assert_refused(
            "[[route]]\ndomains = [\"a.test\"]\n\n[[route]]\ndomains = []\n",
            4,
            1,
            "route[1]",
            "no domains",
        );
    }

    #[test]
    fn relay_password_file_is_relative_to_the_configuration() {
        let dir = TestDir::new("password");
        std::fs::create_dir(dir.0.join("secrets")).unwrap();
        dir.write("secrets/relay", "s3cret pass\r\nignored second line\n");
        let absolute = dir.write("absolute", "no newline at all");
        let text = format!(
            "[[route]]\ndomains = [\"*\"]\nrelay = \"smtp.provider.test:587\"\n\
             auth_user = \"me@example.test\"\nauth_password_file = \"secrets/relay\"\n\n\
             [[route]]\ndomains = [\"other.test\"]\nrelay = \"192.0.2.1:25\"\n\
             auth_user = \"other\"\nauth_password_file = \"{}\"\n",
            absolute.display()
        );
        let routes = Config::parse(&text, &dir.origin()).unwrap().routes;
        let auth = |user: &str, password: &str| {
            Some(crate::routing::RelayAuth {
                user: user.to_owned(),
                password: password.to_owned(),
            })
        };
        assert_eq!(routes[0].auth, auth("me@example.test", "s3cret pass"));
        assert_eq!(routes[1].auth, auth("other", "no newline at all"));
        // Config::load resolves it the same way.
        std::fs::write(dir.origin(), &text).unwrap();
        assert_eq!(Config::load(&dir.origin()).unwrap().routes, routes);
    }

    #[test]
    fn relay_password_file_problems() {
        let dir = TestDir::new("password-problems");
        let origin = dir.origin();
        let route = |file: &str| {
            format!(
                "[[route]]\ndomains = [\"*\"]\nrelay = \"smtp.provider.test:587\"\n\
                 auth_user = \"me\"\nauth_password_file = \"{file}\"\n"
            )
        };
        let missing = dir.0.join("missing");
        let message = assert_refused_at(
            &origin,
            &route("missing"),
            5,
            22,
            "route[0].auth_password_file",
            &format!("cannot read {}: ", missing.display()),
        );
        assert!(message.contains("No such file or directory"), "{message}");
        dir.write("empty", "");
        assert_refused_at(
            &origin,
            &route("empty"),
            5,
            22,
            "route[0].auth_password_file",
            "empty; its first line must be the password",
        );
        dir.write("blank-first-line", "\nsecond\n");
        assert_refused_at(
            &origin,
            &route("blank-first-line"),
            5,
            22,
            "route[0].auth_password_file",
            "empty",
        );
        assert_refused_at(
            &origin,
            &route(""),
            5,
            22,
            "route[0].auth_password_file",
            "must not be empty",
        );
        // A directory cannot be read as a file either.
        std::fs::create_dir(dir.0.join("dir")).unwrap();
        assert_refused_at(
            &origin,
            &route("dir"),
            5,
            22,
            "route[0].auth_password_file",
            "cannot read",
        );
    }

    #[test]
    fn relay_credentials_go_together() {
        let relay = "[[route]]\ndomains = [\"*\"]\nrelay = \"smtp.provider.test:587\"\n";
        assert_refused(
            &format!("{relay}auth_user = \"me\"\n"),
            4,
            13,
            "route[0].auth_user",
            "needs auth_password_file",
        );
        assert_refused(
            &format!("{relay}auth_password_file = \"/p\"\n"),
            4,
            22,
            "route[0].auth_password_file",
            "needs auth_user",
        );
        let dir = TestDir::new("credentials");
        dir.write("password", "pw\n");
        assert_refused_at(
            &dir.origin(),
            &format!("{relay}auth_user = \"\"\nauth_password_file = \"password\"\n"),
            4,
            13,
            "route[0].auth_user",
            "must not be empty",
        );
    }

    #[test]
    fn credentials_without_relay() {
        let dir = TestDir::new("no-relay");
        dir.write("password", "pw\n");
        let text = "[[route]]\ndomains = [\"a.test\"]\n\n\
                    [[route]]\ndomains = [\"b.test\"]\ntls = \"verify\"\n\
                    auth_user = \"me\"\nauth_password_file = \"password\"\n";
        assert_refused_at(
            &dir.origin(),
            text,
            4,
            1,
            "route[1]",
            "credentials are only sent to a relay, and this route has none",
        );
    }

    #[test]
    fn cidr_v4() {
        let net = cidr("127.0.0.0/8");
        assert_eq!(net.to_string(), "127.0.0.0/8");
        assert!(net.contains(ip("127.255.0.1")));
        assert!(!net.contains(ip("128.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    }

    #[test]
    fn cidr_v6() {
        let net = cidr("2001:db8::/32");
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!(!net.contains(ip("32.1.13.184")));
        assert!(cidr("::/0").contains(ip("::1")));
    }

    #[test]
    fn cidr_bare_address_is_one_host() {
        assert_eq!(cidr("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert!(cidr("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!cidr("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(cidr("::1").contains(ip("::1")));
    }

    #[test]
    fn cidr_masks_host_bits() {
        assert_eq!(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("2001:db8::1/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn cidr_matches_mapped_ipv4_clients() {
        assert!(cidr("192.0.2.0/24").contains(ip("::ffff:192.0.2.7")));
        assert!(!cidr("192.0.2.0/24").contains(ip("::ffff:198.51.100.7")));
        assert!(cidr("::ffff:0:0/96").contains(ip("::ffff:192.0.2.7")));
    }

    #[test]
    fn cidr_in_mapped_form_matches_plain_ipv4_clients() {
        // The listener hands policies plain IPv4 addresses, whatever the socket reported.
        assert_eq!(cidr("::ffff:192.0.2.0/120"), cidr("192.0.2.0/24"));
        assert!(cidr("::ffff:192.0.2.0/120").contains(ip("192.0.2.7")));
        assert!(!cidr("::ffff:192.0.2.0/120").contains(ip("198.51.100.7")));
        assert!(cidr("::ffff:192.0.2.7").contains(ip("192.0.2.7")));
        assert!(cidr("::ffff:0:0/96").contains(ip("203.0.113.9")));
        assert!(!cidr("::/64").contains(ip("192.0.2.7")));
    }

    #[test]
    fn cidr_rejects_nonsense() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "foo",
            "1.2.3.4/x",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
        let err = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert_eq!(err.to_string(), "prefix length 33 exceeds 32");
    }
}
