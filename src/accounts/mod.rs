//! The account store: accounts, their app passwords, domains, aliases and sender grants, in one
//! SQLite database (`data_dir/accounts.sqlite`).
//!
//! SQLite rather than redb: the server and the `portcullis accounts` commands are separate
//! processes that must use the store at the same time, and SQLite (in WAL mode) lets several
//! processes share one database, where redb holds an exclusive lock on its file. It is also
//! inspectable with the `sqlite3` tool an administrator already knows.

pub mod csv;
pub mod provisioning;
pub mod report;
mod store;

pub use store::{STORE_FILE, SqliteStore, WriteSummary};

/// An account as the CLI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: String,
    pub domain: String,
    pub enabled: bool,
    pub created: u64,
    pub last_login: Option<u64>,
    pub aliases: Vec<String>,
    pub grants: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    pub id: String,
    pub label: String,
    pub created: u64,
    pub revoked: Option<u64>,
}

/// A row of the record of failed logins, as `accounts show` lists it. Attempts that did not
/// count (refused while locked, a repeated password) within a few minutes share one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLogin {
    pub first: u64,
    pub last: u64,
    pub network: String,
    pub client: String,
    pub reason: String,
    pub attempts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub name: String,
    pub host: Option<String>,
    /// Served to clients that ask for the domain or its host by SNI.
    pub certificate: Option<CertificateFiles>,
    pub created: u64,
}

/// A certificate chain and its private key, as PEM files. The paths are kept rather than the
/// contents so that a renewed certificate (certbot replaces the files) is picked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFiles {
    pub chain: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Why a sender address is allowed for an account, or that it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderRule {
    OwnAddress,
    Alias,
    /// Granted a whole domain (`@domain`).
    GrantedDomain(String),
    NotOwned,
}

impl std::fmt::Display for SenderRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SenderRule::OwnAddress => f.write_str("allowed: it is the account's own address"),
            SenderRule::Alias => f.write_str("allowed: it is an alias of the account"),
            SenderRule::GrantedDomain(domain) => {
                write!(f, "allowed: the account was granted @{domain}")
            }
            SenderRule::NotOwned => f.write_str(
                "refused (553 5.7.1): not the account's address, an alias, or in a granted domain",
            ),
        }
    }
}

/// The prefix that marks a generated app password: `pcap_<id>_<secret>`. It lets the server
/// verify exactly one hash per login attempt, whichever password the client used.
pub const APP_PASSWORD_PREFIX: &str = "pcap_";

/// The app password id inside a presented password, if it has the app password form.
pub fn app_password_id(password: &str) -> Option<&str> {
    let rest = password.strip_prefix(APP_PASSWORD_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// The domain part of an address, as written.
pub fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain)
}

/// A host or domain name in the form names are compared in: host names compare
/// case-insensitively, and `name.` is the same name as `name`.
pub fn canonical_host(name: &str) -> String {
    without_final_dot(name).to_ascii_lowercase()
}

/// Whether two host names are the same name (see [`canonical_host`]), without allocating.
pub fn same_host(a: &str, b: &str) -> bool {
    without_final_dot(a).eq_ignore_ascii_case(without_final_dot(b))
}

fn without_final_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}
