//! `portcullis accounts ...` and `portcullis domains ...`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::prompt;
use super::provisioning;
use super::quota::{self, Limit};
use super::{
    EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_NOINPUT, EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL, EX_USAGE,
    Failure,
};
use crate::accounts::report::{AccountReport, report};
use crate::accounts::{APP_PASSWORD_PREFIX, CertificateFiles, STORE_FILE, SqliteStore};
use crate::auth::{StoreError, canonical_username, password};
use crate::config::{Config, ListenerMode};
use crate::smtp::address;
use crate::timefmt::{self, unix_now};
use crate::tls;

#[derive(Subcommand)]
pub enum Command {
    /// Create an account; without --password-stdin a strong password is generated and shown once
    Add {
        /// The full email address, which is also the login name
        email: String,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
        /// Accept a password the rule refuses (short, one class of characters, or common)
        #[arg(long)]
        allow_weak: bool,
    },
    /// List the accounts
    List,
    /// Show one account: state, last login, aliases, grants, app passwords, locks and recent
    /// failed logins with their reasons
    Show {
        /// The account's email address
        email: String,
        /// Print one JSON object (the same as `GET /api/accounts/EMAIL`)
        #[arg(long)]
        json: bool,
    },
    /// Clear the account's login locks and failure counts, from every network and address; or
    /// with --network, lift the refusal of the networks within CIDR
    Unlock {
        /// The account's email address
        #[arg(required_unless_present = "network", conflicts_with = "network")]
        email: Option<String>,
        /// A network (such as 192.0.2.0/24) or address refused for failing with many user names
        #[arg(long, value_name = "CIDR")]
        network: Option<String>,
    },
    /// Set a new password: typed twice on a terminal, from standard input, or generated
    Passwd {
        /// The account's email address
        email: String,
        /// Read the new password from the first line of standard input
        #[arg(long, conflicts_with = "generate")]
        password_stdin: bool,
        /// Replace the password with a generated one, shown once
        #[arg(long)]
        generate: bool,
        /// Accept a password the rule refuses (short, one class of characters, or common)
        #[arg(long)]
        allow_weak: bool,
    },
    /// Refuse every login of the account (its data is kept)
    Disable {
        /// The account's email address
        email: String,
    },
    /// Allow logins again
    Enable {
        /// The account's email address
        email: String,
    },
    /// Delete an account with its aliases, grants and app passwords
    Remove {
        /// The account's email address
        email: String,
    },
    /// List the login locks and refused networks in force, as the server recorded them
    Locks,
    /// App passwords: separate, revocable passwords for devices and apps
    AppPassword {
        #[command(subcommand)]
        command: AppPasswordCommand,
    },
    /// Aliases: other addresses the account may send as
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Let the account send as any address of a domain (@domain)
    Grant {
        /// The account's email address
        email: String,
        /// The domain, as @DOMAIN
        domain: String,
    },
    /// Take a granted domain back
    Ungrant {
        /// The account's email address
        email: String,
        /// The granted domain, as @DOMAIN
        domain: String,
    },
    /// May this account use ADDRESS as MAIL FROM? Prints the decision and the rule
    CanSend {
        /// The account's email address
        email: String,
        /// The sender address to decide on
        address: String,
    },
    /// Set the account's own sending quotas (a number, 0 for no limit, or "default" for the
    /// server's [quotas]); without options, show them
    Quota {
        /// The account's email address
        email: String,
        /// Messages the account may submit per hour (0: no limit; default: the server's)
        #[arg(long, value_name = "N|default")]
        messages_per_hour: Option<Limit>,
        /// Recipients the account may send to per day (0: no limit; default: the server's)
        #[arg(long, value_name = "N|default")]
        recipients_per_day: Option<Limit>,
    },
    /// Import a provisioning CSV (host,port,username,password): create or update every
    /// account in one transaction, or none if any row is bad
    Import {
        /// The CSV file (see README, "Provisioning CSV")
        file: PathBuf,
        /// Check the file and say what an import would change; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Create the domains that are not known yet (otherwise their rows are errors)
        #[arg(long)]
        create_domains: bool,
        /// Import weak passwords with a warning instead of refusing the file
        #[arg(long)]
        allow_weak: bool,
    },
    /// Create N mailboxes with generated passwords and write them as a provisioning CSV
    Provision {
        /// The domain of the new mailboxes (created if new)
        domain: String,
        /// How many mailboxes
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// The CSV file to write (mode 0600; it holds the passwords)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Host column (default: the domain's configured host, else the server's hostname)
        #[arg(long)]
        host: Option<String>,
        /// Port column: 587, 465, 2587 or 2465 (default: this server's STARTTLS listener's)
        #[arg(long)]
        port: Option<u16>,
        /// Local parts are PREFIX0001, PREFIX0002, ...
        #[arg(long, default_value = "mbox")]
        prefix: String,
        /// Replace FILE if it exists
        #[arg(long)]
        force: bool,
    },
    /// Write host,port,username of the enabled accounts as CSV (no passwords)
    Export {
        /// The CSV file to write; - for standard output
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Only the accounts of this domain
        #[arg(long)]
        domain: Option<String>,
        /// Port column: 587, 465, 2587 or 2465 (default: this server's STARTTLS listener's)
        #[arg(long)]
        port: Option<u16>,
        /// Replace FILE if it exists
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum AppPasswordCommand {
    /// Create an app password with a label (e.g. "phone"); it is shown once
    Add {
        /// The account's email address
        email: String,
        /// The app password's label (e.g. "phone")
        label: String,
    },
    /// List the account's app passwords (never the passwords themselves)
    List {
        /// The account's email address
        email: String,
    },
    /// Revoke one app password; the others keep working
    Revoke {
        /// The account's email address
        email: String,
        /// The app password's label (e.g. "phone")
        label: String,
    },
}

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Let the account send as ALIAS too
    Add {
        /// The account's email address
        email: String,
        /// The other address
        alias: String,
    },
    /// Take the alias back
    Remove {
        /// The account's email address
        email: String,
        /// The other address
        alias: String,
    },
}

#[derive(Subcommand)]
pub enum DomainsCommand {
    /// Add a domain (accounts under a new domain create it too), or change the settings given
    Add {
        /// The domain (e.g. example.com)
        domain: String,
        /// The submission host name that serves this domain (e.g. box.example.com)
        #[arg(long)]
        host: Option<String>,
        /// PEM certificate chain (the server's certificate first) for clients that ask for the
        /// domain or its host by SNI; the file is read again when it changes
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// PEM private key of --cert
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
    },
    /// List the domains
    List,
    /// Manage the domain's DKIM signing keys
    Dkim {
        #[command(subcommand)]
        command: super::dkim::DkimCommand,
    },
    /// Print the DNS records to publish for the domain: SPF, DKIM, DMARC, MTA-STS, TLS-RPT
    Dns {
        /// The domain
        domain: String,
        /// Print JSON: the records with name, type, value, strings and purpose, and the
        /// MTA-STS policy file
        #[arg(long)]
        json: bool,
        /// An address this server sends from, for SPF (repeat for more; default: `a:` of the
        /// configured hostname)
        #[arg(long = "ip", value_name = "ADDRESS")]
        ips: Vec<std::net::IpAddr>,
        /// A host name of the domain's inbound MX, for the MTA-STS policy (repeat for more;
        /// default: the domain's --host, else the configured hostname)
        #[arg(long = "mx", value_name = "HOST")]
        mx: Vec<String>,
    },
}

/// What existed before the account store was opened (which creates it).
struct Fresh {
    /// The data directory did not exist.
    dir: bool,
    /// The account store did not exist.
    store: bool,
}

impl Fresh {
    fn before_opening(data_dir: &Path) -> Fresh {
        Fresh {
            dir: !data_dir.exists(),
            store: !data_dir.join(STORE_FILE).exists(),
        }
    }

    /// Removes a store (and directory) that opening created: an import that changed nothing
    /// (refused, or `--dry-run`) leaves no empty store behind in a directory that may be the
    /// wrong one. An existing directory or store is never touched.
    fn undo(self, data_dir: &Path) {
        if !self.store {
            return;
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(data_dir.join(format!("{STORE_FILE}{suffix}")));
        }
        if self.dir {
            // remove_dir removes only an empty directory.
            let _ = std::fs::remove_dir(data_dir);
        }
    }
}

fn open(config: &Config) -> Result<SqliteStore, Failure> {
    SqliteStore::open(&config.data_dir).map_err(store_failure)
}

pub fn run(command: Command, config: &Config) -> Result<(), Failure> {
    let fresh = Fresh::before_opening(&config.data_dir);
    let store = open(config)?;
    match command {
        Command::Add {
            email,
            password_stdin,
            allow_weak,
        } => {
            let source = if password_stdin {
                Source::Stdin
            } else {
                Source::Generate
            };
            add(&store, config, &email, source.checked(allow_weak))
        }
        Command::Passwd {
            email,
            password_stdin,
            generate,
            allow_weak,
        } => {
            let email = login_name(&email)?;
            let source = Source::for_passwd(&email, password_stdin, generate)?;
            let (password, generated) = obtain_password(&source.checked(allow_weak), &email)?;
            store
                .set_password(&email, &hash(&password)?)
                .map_err(store_failure)?;
            println!("Changed the password of {email}.");
            show_generated(&email, &password, generated);
            Ok(())
        }
        Command::Remove { email } => {
            let email = login_name(&email)?;
            store.remove_account(&email).map_err(store_failure)?;
            println!("Removed {email}.");
            Ok(())
        }
        Command::Disable { email } => set_enabled(&store, &email, false),
        Command::Enable { email } => set_enabled(&store, &email, true),
        Command::List => {
            for account in store.accounts().map_err(store_failure)? {
                let state = if account.enabled { "" } else { "\tdisabled" };
                println!(
                    "{}\tcreated {}{state}",
                    account.address,
                    time(account.created)
                );
            }
            Ok(())
        }
        Command::Show { email, json } => show(&store, &login_name(&email)?, config, json),
        Command::Quota {
            email,
            messages_per_hour,
            recipients_per_day,
        } => {
            let email = login_name(&email)?;
            require_account(&store, &email)?;
            match (messages_per_hour, recipients_per_day) {
                (None, None) => quota::show(&store, &email, &config.quotas),
                (messages, recipients) => {
                    quota::set(&store, &email, messages, recipients, &config.quotas)
                }
            }
        }
        Command::Unlock {
            network: Some(network),
            ..
        } => unlock_network(&store, &network),
        Command::Locks => list_locks(&store),
        // clap requires one of the two; kept as a value, not a panic.
        Command::Unlock {
            email: None,
            network: None,
        } => Err(Failure::new(
            EX_USAGE,
            "accounts unlock needs an EMAIL or --network CIDR",
        )),
        Command::Unlock {
            email: Some(email), ..
        } => {
            let email = login_name(&email)?;
            require_account(&store, &email)?;
            let locks = store
                .login_locks(&email, unix_now())
                .map_err(store_failure)?
                .len();
            store.unlock(&email).map_err(store_failure)?;
            println!(
                "Unlocked {email}: cleared {locks} lock(s) and its failure counts. A running server applies this within a second."
            );
            Ok(())
        }
        Command::AppPassword { command } => app_password(&store, command),
        Command::Alias {
            command: AliasCommand::Add { email, alias },
        } => {
            let (email, alias) = (login_name(&email)?, address_of(&alias)?);
            store.add_alias(&email, &alias).map_err(store_failure)?;
            println!("{email} may now send as {alias}.");
            Ok(())
        }
        Command::Alias {
            command: AliasCommand::Remove { email, alias },
        } => {
            let (email, alias) = (login_name(&email)?, address_of(&alias)?);
            store.remove_alias(&email, &alias).map_err(store_failure)?;
            println!("Removed alias {alias} of {email}.");
            Ok(())
        }
        Command::Grant { email, domain } => {
            let (email, domain) = (login_name(&email)?, domain_name(&domain)?);
            store.add_grant(&email, &domain).map_err(store_failure)?;
            println!("{email} may now send as any address @{domain}.");
            Ok(())
        }
        Command::Ungrant { email, domain } => {
            let (email, domain) = (login_name(&email)?, domain_name(&domain)?);
            store.remove_grant(&email, &domain).map_err(store_failure)?;
            println!("{email} may no longer send as addresses @{domain}.");
            Ok(())
        }
        Command::CanSend { email, address } => {
            let (email, address) = (login_name(&email)?, address_of(&address)?);
            require_account(&store, &email)?;
            let rule = store.sender_rule(&email, &address).map_err(store_failure)?;
            println!("{email} sending as {address}: {rule}");
            Ok(())
        }
        Command::Import {
            file,
            dry_run,
            create_domains,
            allow_weak,
        } => {
            let rules = crate::accounts::provisioning::Rules {
                create_domains,
                allow_weak,
            };
            let result = provisioning::import(&store, &file, dry_run, &rules);
            if result.is_err() || dry_run {
                drop(store);
                fresh.undo(&config.data_dir);
            }
            result
        }
        Command::Provision {
            domain,
            count,
            out,
            host,
            port,
            prefix,
            force,
        } => provisioning::provision(
            &store,
            config,
            &provisioning::Provision {
                domain: &domain,
                count: count as usize,
                out: &out,
                host: host.as_deref(),
                port,
                prefix: &prefix,
                force,
            },
        ),
        Command::Export {
            out,
            domain,
            port,
            force,
        } => provisioning::export(
            &store,
            config,
            &provisioning::Export {
                out: &out,
                domain: domain.as_deref(),
                port,
                force,
            },
        ),
    }
}

pub fn run_domains(command: DomainsCommand, config: &Config) -> Result<(), Failure> {
    let store = open(config)?;
    match command {
        DomainsCommand::Add {
            domain,
            host,
            cert,
            key,
        } => add_domain(&store, &domain, host.as_deref(), cert.zip(key)),
        DomainsCommand::List => {
            for domain in store.domains().map_err(store_failure)? {
                let host = domain
                    .host
                    .map(|h| format!("\thost {h}"))
                    .unwrap_or_default();
                let certificate = domain
                    .certificate
                    .map(|c| format!("\tcertificate {}", c.chain.display()))
                    .unwrap_or_default();
                println!(
                    "{}{host}{certificate}\tcreated {}",
                    domain.name,
                    time(domain.created)
                );
            }
            Ok(())
        }
        DomainsCommand::Dkim { command } => super::dkim::run(command, &store, config),
        DomainsCommand::Dns {
            domain,
            json,
            ips,
            mx,
        } => super::dkim::dns(
            &super::dkim::DnsRequest {
                domain: &domain,
                json,
                ips: &ips,
                mx: &mx,
            },
            &store,
            config,
        ),
    }
}

/// Creates the domain or changes the settings given. A certificate is checked before it is
/// stored: refused if it cannot be used, a warning if it does not cover the domain or its host.
fn add_domain(
    store: &SqliteStore,
    domain: &str,
    host: Option<&str>,
    certificate: Option<(PathBuf, PathBuf)>,
) -> Result<(), Failure> {
    let domain = domain_name(domain)?;
    let existing = store.domain(&domain).map_err(store_failure)?;
    let certificate = match certificate {
        Some((chain, key)) => {
            let files = certificate_files(&chain, &key)?;
            let known_host = existing.as_ref().and_then(|d| d.host.as_deref());
            check_certificate(&files, &domain, host.or(known_host))?;
            Some(files)
        }
        None => None,
    };
    let new = store
        .add_domain(&domain, host, certificate.as_ref())
        .map_err(store_failure)?;
    let mut changes = Vec::new();
    if let Some(host) = host {
        changes.push(format!("served by {host}"));
    }
    if let Some(files) = &certificate {
        changes.push(format!(
            "certificate {} (key {})",
            files.chain.display(),
            files.key.display()
        ));
    }
    match (new, changes.is_empty()) {
        (true, true) => println!("Added domain {domain}."),
        (true, false) => println!("Added domain {domain}: {}.", changes.join(", ")),
        (false, true) => println!("Domain {domain} exists already; nothing to change."),
        (false, false) => println!("Updated domain {domain}: {}.", changes.join(", ")),
    }
    if certificate.is_some() {
        println!(
            "A running server serves the certificate within {} seconds, and reads the files again when they change.",
            tls::REFRESH_INTERVAL.as_secs()
        );
    }
    Ok(())
}

/// The files as they will be stored: absolute, but with symbolic links kept (not
/// canonicalized), so that a renewal that points a link at new files (as certbot's `live/`
/// directory does) is picked up.
fn certificate_files(chain: &Path, key: &Path) -> Result<CertificateFiles, Failure> {
    let absolute = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|_| std::path::absolute(path))
            .map_err(|e| Failure::new(EX_NOINPUT, format!("{}: {e}", path.display())))
    };
    Ok(CertificateFiles {
        chain: absolute(chain)?,
        key: absolute(key)?,
    })
}

/// Refuses a pair the server could not use; warns about names the certificate does not cover.
fn check_certificate(
    files: &CertificateFiles,
    domain: &str,
    host: Option<&str>,
) -> Result<(), Failure> {
    let certified = tls::load_certified_key(&files.chain, &files.key)
        .map_err(|reason| Failure::new(EX_DATAERR, reason))?;
    let names: Vec<&str> = std::iter::once(domain).chain(host).collect();
    for name in tls::names_not_covered(&certified, &names) {
        eprintln!(
            "warning: {} is not valid for {name}: clients that connect to {name} will refuse it",
            files.chain.display()
        );
    }
    Ok(())
}

fn add(
    store: &SqliteStore,
    config: &Config,
    email: &str,
    source: NewPassword,
) -> Result<(), Failure> {
    let email = login_name(email)?;
    let (password, generated) = obtain_password(&source, &email)?;
    let new_domain = store
        .add_account(&email, &hash(&password)?)
        .map_err(store_failure)?;
    println!("Added {email}.");
    if new_domain {
        println!(
            "Created domain {} for it.",
            crate::accounts::domain_of(&email).unwrap_or_default()
        );
    }
    show_generated(&email, &password, generated);
    println!(
        "Clients log in with user name {email} at {}: {}.",
        config.hostname,
        client_ports(config)
    );
    Ok(())
}

/// How this server's listeners are reached, as a mail client's settings call it.
fn client_ports(config: &Config) -> String {
    let ports: Vec<String> = config
        .listeners
        .iter()
        .filter_map(|listener| {
            let port = listener.address.port();
            match listener.mode {
                ListenerMode::Submission if listener.starttls => {
                    Some(format!("STARTTLS on port {port}"))
                }
                ListenerMode::Submission => None,
                ListenerMode::Submissions => Some(format!("SSL/TLS on port {port}")),
            }
        })
        .collect();
    if ports.is_empty() {
        return "no listener offers TLS, so only trusted networks can submit".to_string();
    }
    ports.join(" or ")
}

fn set_enabled(store: &SqliteStore, email: &str, enabled: bool) -> Result<(), Failure> {
    let email = login_name(email)?;
    store.set_enabled(&email, enabled).map_err(store_failure)?;
    println!("{} {email}.", if enabled { "Enabled" } else { "Disabled" });
    Ok(())
}

fn require_account(store: &SqliteStore, email: &str) -> Result<(), Failure> {
    match store.account(email).map_err(store_failure)? {
        Some(_) => Ok(()),
        None => Err(store_failure(StoreError::NoSuchAccount(format!(
            "account {email}"
        )))),
    }
}

/// `accounts unlock --network CIDR`.
fn unlock_network(store: &SqliteStore, network: &str) -> Result<(), Failure> {
    let within: crate::config::Cidr = network.parse().map_err(|error| {
        Failure::new(
            EX_DATAERR,
            format!("{network:?} is not a network or an address ({error}); give one such as 192.0.2.0/24"),
        )
    })?;
    let lifted = store
        .unlock_network(within, unix_now())
        .map_err(store_failure)?;
    let lifted = match lifted.is_empty() {
        true => "no network was refused there".to_string(),
        false => format!("lifted the refusal of {}", lifted.join(", ")),
    };
    println!(
        "Unlocked logins from {within}: {lifted}, and its failed user names no longer count. A running server applies this within a second."
    );
    Ok(())
}

/// `accounts locks`: every lock and refusal in force.
fn list_locks(store: &SqliteStore) -> Result<(), Failure> {
    let now = unix_now();
    let locks = store.all_login_locks(now).map_err(store_failure)?;
    let refused = store.refused_networks(now).map_err(store_failure)?;
    if locks.is_empty() && refused.is_empty() {
        println!("No login is locked and no network refused.");
    }
    for (username, scope, until) in locks {
        println!("locked: {username:?} from {scope} until {}", time(until));
    }
    for (network, until) in refused {
        println!(
            "refused network: every login from {network} until {} (failed for many user names)",
            time(until)
        );
    }
    Ok(())
}

/// `accounts show`: the account's [`report`], as text or JSON.
fn show(store: &SqliteStore, email: &str, config: &Config, json: bool) -> Result<(), Failure> {
    let report = report(store, email, &config.quotas, unix_now())
        .map_err(store_failure)?
        .ok_or_else(|| store_failure(StoreError::NoSuchAccount(format!("account {email}"))))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::new(EX_SOFTWARE, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    print_account(&report);
    quota::print(&report.quotas);
    print_logins(&report);
    Ok(())
}

fn print_account(report: &AccountReport) {
    let listed = |items: &[String]| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(", ")
        }
    };
    println!("account: {}", report.address);
    println!("domain: {}", report.domain);
    println!(
        "state: {}",
        if report.enabled {
            "enabled"
        } else {
            "disabled"
        }
    );
    println!("created: {}", report.created);
    println!(
        "last login: {}",
        report.last_login.as_deref().unwrap_or("never")
    );
    println!("aliases: {}", listed(&report.aliases));
    let grants: Vec<String> = report
        .granted_domains
        .iter()
        .map(|d| format!("@{d}"))
        .collect();
    println!("granted domains: {}", listed(&grants));
    for app in &report.app_passwords {
        let state = app
            .revoked
            .as_ref()
            .map_or_else(|| "active".to_string(), |t| format!("revoked {t}"));
        println!(
            "app password: {} (created {}, {state})",
            app.label, app.created
        );
    }
}

/// Locks, refused networks and the latest failed logins, as the server recorded them.
fn print_logins(report: &AccountReport) {
    for lock in &report.locks {
        println!("locked: logins from {} until {}", lock.network, lock.until);
    }
    for refused in &report.refused_networks {
        println!(
            "refused network: every login from {} until {} (failed for many user names)",
            refused.network, refused.until
        );
    }
    if report.recent_failures.is_empty() {
        println!("recent failed logins: none");
    }
    for failure in &report.recent_failures {
        let repeated = if failure.attempts > 1 {
            format!(", {} attempts until {}", failure.attempts, failure.last)
        } else {
            String::new()
        };
        println!(
            "failed login: {} from {} ({}): {}{repeated}",
            failure.first, failure.network, failure.client, failure.reason
        );
    }
}

fn app_password(store: &SqliteStore, command: AppPasswordCommand) -> Result<(), Failure> {
    match command {
        AppPasswordCommand::Add { email, label } => {
            let email = login_name(&email)?;
            let id =
                password::generate().map_err(|e| Failure::new(EX_SOFTWARE, e))?[..8].to_lowercase();
            let secret = password::generate().map_err(|e| Failure::new(EX_SOFTWARE, e))?;
            let app_password = format!("{APP_PASSWORD_PREFIX}{id}_{secret}");
            store
                .add_app_password(&email, &id, &label, &hash(&app_password)?)
                .map_err(store_failure)?;
            println!("App password {label:?} for {email}: {app_password}");
            println!(
                "Use it instead of the account password in that one device or app; revoke it with `portcullis accounts app-password revoke {email} {label}`."
            );
            Ok(())
        }
        AppPasswordCommand::List { email } => {
            for app in store
                .app_passwords(&login_name(&email)?)
                .map_err(store_failure)?
            {
                let state = app
                    .revoked
                    .map_or_else(|| "active".to_string(), |t| format!("revoked {}", time(t)));
                println!("{}\tcreated {}\t{state}", app.label, time(app.created));
            }
            Ok(())
        }
        AppPasswordCommand::Revoke { email, label } => {
            let email = login_name(&email)?;
            store
                .revoke_app_password(&email, &label)
                .map_err(store_failure)?;
            println!("Revoked app password {label:?} of {email}; its next login gets 535.");
            Ok(())
        }
    }
}

pub(super) use timefmt::rfc3339_unix as time;

/// Accounts are named by a valid email address, matched case-insensitively.
fn login_name(email: &str) -> Result<String, Failure> {
    address_of(email)
}

fn address_of(text: &str) -> Result<String, Failure> {
    address::parse_mailbox(text)
        .map(|mailbox| canonical_username(mailbox.as_str()))
        .map_err(|e| {
            Failure::new(
                EX_DATAERR,
                format!("{text:?} is not a valid email address: {}", e.0),
            )
        })
}

/// `example.com` or `@example.com`, checked as the domain of an address.
pub(super) fn domain_name(text: &str) -> Result<String, Failure> {
    let domain = text.trim_start_matches('@');
    address::parse_mailbox(&format!("postmaster@{domain}"))
        .map(|mailbox| mailbox.domain().to_lowercase())
        .map_err(|e| {
            Failure::new(
                EX_DATAERR,
                format!("{text:?} is not a valid domain: {}", e.0),
            )
        })
}

/// Where a new password comes from.
enum Source {
    Stdin,
    Generate,
    /// Typed twice on the terminal, without echo.
    Prompt,
}

/// A source with the rule its password must pass.
struct NewPassword {
    source: Source,
    allow_weak: bool,
}

impl Source {
    fn checked(self, allow_weak: bool) -> NewPassword {
        NewPassword {
            source: self,
            allow_weak,
        }
    }

    /// `passwd` replaces a working password, so without a flag it asks on a terminal and
    /// refuses elsewhere: a script that forgot --password-stdin changes nothing.
    fn for_passwd(email: &str, stdin: bool, generate: bool) -> Result<Source, Failure> {
        match (stdin, generate) {
            (true, _) => Ok(Source::Stdin),
            (_, true) => Ok(Source::Generate),
            _ if std::io::stdin().is_terminal() => Ok(Source::Prompt),
            _ => Err(Failure::new(
                EX_USAGE,
                format!(
                    "standard input is not a terminal, so the password of {email} is left as \
                     it is: give --password-stdin to set it from standard input, or --generate \
                     to replace it with a generated one"
                ),
            )),
        }
    }
}

fn obtain_password(wanted: &NewPassword, email: &str) -> Result<(String, bool), Failure> {
    let password = match wanted.source {
        Source::Generate => {
            return password::generate()
                .map(|p| (p, true))
                .map_err(|e| Failure::new(EX_SOFTWARE, e));
        }
        Source::Stdin => stdin_line()?,
        Source::Prompt => typed_twice(email)?,
    };
    if password.is_empty() {
        return Err(Failure::new(EX_DATAERR, "the password is empty"));
    }
    // The rule `accounts import` applies: one policy, whichever way a password arrives.
    match password::weakness(&password) {
        Some(weakness) if !wanted.allow_weak => {
            return Err(Failure::new(
                EX_DATAERR,
                format!("the password is too weak: {weakness} (--allow-weak accepts it anyway)"),
            ));
        }
        Some(weakness) => eprintln!("warning: weak password accepted (--allow-weak): {weakness}"),
        None => {}
    }
    // Whitespace or invisible characters may be part of the password, but they are the
    // commonest cause of 535, so name each one.
    for issue in password::inspect(password.as_bytes()) {
        eprintln!("warning: {issue}; it is stored exactly, and clients must send it exactly");
    }
    Ok((password, false))
}

/// The first line of standard input; only the line ending is removed.
fn stdin_line() -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(EX_IOERR, format!("cannot read the password: {e}")))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_string())
}

fn typed_twice(email: &str) -> Result<String, Failure> {
    let read = |prompt: &str| {
        prompt::hidden_line(prompt)
            .map_err(|e| Failure::new(EX_IOERR, format!("cannot read the password: {e}")))
    };
    let first = read(&format!("New password for {email}: "))?;
    if first.is_empty() {
        return Err(Failure::new(
            EX_DATAERR,
            "the password is empty; nothing was changed (--generate makes one)",
        ));
    }
    if read("Again: ")? != first {
        return Err(Failure::new(
            EX_DATAERR,
            "the two passwords differ; nothing was changed",
        ));
    }
    Ok(first)
}

fn hash(password: &str) -> Result<String, Failure> {
    password::hash(password)
        .map_err(|e| Failure::new(EX_SOFTWARE, format!("cannot hash the password: {e}")))
}

fn show_generated(email: &str, password: &str, generated: bool) {
    if !generated {
        return;
    }
    println!("Password for {email}: {password}");
    if std::io::stdout().is_terminal() {
        println!("It is shown only this once; store it now.");
    }
}

pub(super) fn store_failure(error: StoreError) -> Failure {
    let status = match &error {
        StoreError::Exists(_) => EX_CANTCREAT,
        StoreError::NoSuchAccount(_) => EX_NOUSER,
        StoreError::Io(_) => EX_TEMPFAIL,
        StoreError::Invalid(_) => EX_DATAERR,
    };
    let message = match error {
        // A bare address: say what was looked for and where to see what exists.
        StoreError::NoSuchAccount(what) if !what.contains(' ') => {
            format!("no account {what} (see `portcullis accounts list`)")
        }
        error => error.to_string(),
    };
    Failure::new(status, message)
}
