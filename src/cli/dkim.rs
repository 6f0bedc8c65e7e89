//! `portcullis domains dkim generate|list|rotate|remove` and `portcullis domains dns`.

use std::net::IpAddr;

use clap::{Subcommand, ValueEnum};

use super::accounts::{domain_name, store_failure};
use super::{EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_NOUSER, EX_SOFTWARE, EX_USAGE, Failure};
use crate::accounts::SqliteStore;
use crate::config::Config;
use crate::dkim::records::{self, PublishedKey, SpfSenders};
use crate::dkim::store::{CreateError, StoredKey, valid_selector};
use crate::dkim::{Algorithm, KeyStore, PrivateKey};
use crate::timefmt::{self, unix_now};

#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a signing key for the domain (default: an RSA and an Ed25519 key); a running
    /// server signs the domain's mail with it within 30 seconds
    Generate {
        /// The domain (as `domains add` has it)
        domain: String,
        /// The selector (one DNS label: a-z, 0-9, inner hyphens); default `pcYYYYMMx-rsa` /
        /// `pcYYYYMMx-ed`, with the first letter x not yet used
        #[arg(long)]
        selector: Option<String>,
        /// Only this algorithm (default: both; --selector needs one)
        #[arg(long, value_enum)]
        algorithm: Option<AlgorithmArg>,
    },
    /// List the keys: domain, selector, algorithm, active or retired, creation time, file
    List {
        /// Only this domain's keys
        domain: Option<String>,
    },
    /// Replace each active key of the domain by a new one under a new selector; the old keys
    /// stay (retired: published, no longer signing) until removed
    Rotate {
        /// The domain
        domain: String,
    },
    /// Delete a key (retired after a rotation, or active)
    Remove {
        /// The domain
        domain: String,
        /// The key's selector
        selector: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AlgorithmArg {
    /// Ed25519-SHA256 (RFC 8463): short keys, not yet verified by every receiver
    Ed25519,
    /// RSA-SHA256 with a 2048-bit key: what every receiver verifies
    Rsa2048,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(arg: AlgorithmArg) -> Algorithm {
        match arg {
            AlgorithmArg::Ed25519 => Algorithm::Ed25519,
            AlgorithmArg::Rsa2048 => Algorithm::Rsa2048,
        }
    }
}

/// What `domains dns` was asked to print.
pub struct DnsRequest<'a> {
    pub domain: &'a str,
    pub json: bool,
    pub ips: &'a [IpAddr],
    pub mx: &'a [String],
}

pub fn run(command: DkimCommand, store: &SqliteStore, config: &Config) -> Result<(), Failure> {
    let keys = KeyStore::new(&config.data_dir);
    match command {
        DkimCommand::Generate {
            domain,
            selector,
            algorithm,
        } => {
            let domain = known_domain(store, &domain)?;
            let algorithms = match algorithm {
                Some(one) => vec![Algorithm::from(one)],
                None => Algorithm::ALL.to_vec(),
            };
            generate(&keys, &domain, selector.as_deref(), &algorithms)
        }
        DkimCommand::List { domain } => {
            let domain = domain.as_deref().map(domain_name).transpose()?;
            for key in keys.list(domain.as_deref()).map_err(io_failure)? {
                println!(
                    "{}\t{}\t{}\t{}\tcreated {}\t{}",
                    key.domain,
                    key.selector,
                    key.algorithm,
                    if key.active { "active" } else { "retired" },
                    timefmt::rfc3339(key.created),
                    key.path.display()
                );
            }
            Ok(())
        }
        DkimCommand::Rotate { domain } => rotate(&keys, &domain_name(&domain)?),
        DkimCommand::Remove { domain, selector } => {
            remove(&keys, &domain_name(&domain)?, &selector)
        }
    }
}

/// The domain, which must be one the store knows: keys for a domain nobody sends from would
/// be a typo's.
fn known_domain(store: &SqliteStore, domain: &str) -> Result<String, Failure> {
    let domain = domain_name(domain)?;
    match store.domain(&domain).map_err(store_failure)? {
        Some(_) => Ok(domain),
        None => Err(Failure::new(
            EX_NOUSER,
            format!(
                "no domain {domain}: add it with `portcullis domains add {domain}` (see `portcullis domains list`)"
            ),
        )),
    }
}

fn generate(
    keys: &KeyStore,
    domain: &str,
    selector: Option<&str>,
    algorithms: &[Algorithm],
) -> Result<(), Failure> {
    let given = given_selector(selector, algorithms)?;
    let existing = keys.list(Some(domain)).map_err(io_failure)?;
    refuse_second_active_key(&existing, domain, algorithms)?;
    let selectors = match given {
        Some(selectors) => selectors,
        None => dated_selectors(&existing, algorithms)?,
    };
    for (algorithm, selector) in algorithms.iter().zip(&selectors) {
        let key = create(keys, domain, selector, *algorithm)?;
        println!(
            "Generated {algorithm} key {selector} for {domain}: {}",
            key.path.display()
        );
    }
    let (it, record) = if selectors.len() == 1 {
        ("it", "record")
    } else {
        ("them", "records")
    };
    println!(
        "A running server signs {domain}'s mail with {it} within 30 seconds. Publish the DKIM {record} now: `portcullis domains dns {domain}`."
    );
    Ok(())
}

/// The selector given with `--selector`, checked; `None` without one.
fn given_selector(
    selector: Option<&str>,
    algorithms: &[Algorithm],
) -> Result<Option<Vec<String>>, Failure> {
    match selector {
        Some(selector) if algorithms.len() == 1 => {
            if !valid_selector(selector) {
                return Err(Failure::new(
                    EX_DATAERR,
                    format!(
                        "{selector:?} is not a selector: one DNS label of a-z, 0-9 and inner hyphens, up to 63 characters"
                    ),
                ));
            }
            Ok(Some(vec![selector.to_string()]))
        }
        Some(_) => Err(Failure::new(
            EX_USAGE,
            "--selector names one key: give --algorithm rsa2048 or --algorithm ed25519 with it",
        )),
        None => Ok(None),
    }
}

/// One active key per algorithm: a second would sign every message twice for nothing.
fn refuse_second_active_key(
    existing: &[StoredKey],
    domain: &str,
    algorithms: &[Algorithm],
) -> Result<(), Failure> {
    for algorithm in algorithms {
        if let Some(active) = existing
            .iter()
            .find(|k| k.active && k.algorithm == *algorithm)
        {
            return Err(Failure::new(
                EX_CANTCREAT,
                format!(
                    "{domain} has an active {algorithm} key already (selector {}): use `portcullis domains dkim rotate {domain}` to replace it",
                    active.selector
                ),
            ));
        }
    }
    Ok(())
}

fn create(
    keys: &KeyStore,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> Result<StoredKey, Failure> {
    let pem = PrivateKey::generate(algorithm).map_err(|e| Failure::new(EX_SOFTWARE, e))?;
    keys.create(domain, selector, algorithm, &pem)
        .map_err(|error| match error {
            CreateError::Exists(message) => Failure::new(EX_CANTCREAT, message),
            CreateError::Io(message) => Failure::new(EX_IOERR, message),
        })
}

/// `pcYYYYMMx-rsa` and `pcYYYYMMx-ed` with the first letter x that no key of the domain uses
/// (so a pair made together, or rotated together, shares it): dated, so the DNS shows when a
/// key was made and which one is newer.
fn dated_selectors(
    existing: &[StoredKey],
    algorithms: &[Algorithm],
) -> Result<Vec<String>, Failure> {
    let today = timefmt::rfc3339_unix(unix_now());
    let month = format!("pc{}{}", &today[..4], &today[5..7]);
    for letter in 'a'..='z' {
        let prefix = format!("{month}{letter}-");
        if !existing.iter().any(|k| k.selector.starts_with(&prefix)) {
            return Ok(algorithms
                .iter()
                .map(|algorithm| format!("{prefix}{}", short_name(*algorithm)))
                .collect());
        }
    }
    Err(Failure::new(
        EX_CANTCREAT,
        format!("every selector {month}a to {month}z is taken: give one with --selector"),
    ))
}

fn short_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::Ed25519 => "ed",
        Algorithm::Rsa2048 => "rsa",
    }
}

/// New keys first, then the old ones retired: the domain is never without a signing key.
fn rotate(keys: &KeyStore, domain: &str) -> Result<(), Failure> {
    let existing = keys.list(Some(domain)).map_err(io_failure)?;
    let active: Vec<&StoredKey> = existing.iter().filter(|k| k.active).collect();
    if active.is_empty() {
        return Err(Failure::new(
            EX_NOUSER,
            format!(
                "{domain} has no active DKIM key to rotate: make one with `portcullis domains dkim generate {domain}`"
            ),
        ));
    }
    let algorithms: Vec<Algorithm> = active.iter().map(|k| k.algorithm).collect();
    let selectors = dated_selectors(&existing, &algorithms)?;
    for (old, selector) in active.iter().zip(&selectors) {
        let new = create(keys, domain, selector, old.algorithm)?;
        keys.retire(old).map_err(io_failure)?;
        println!(
            "{domain}: {} key {selector} replaces {} ({}), which is retired but kept.",
            old.algorithm,
            old.selector,
            new.path.display()
        );
    }
    println!(
        "Publish the new records now (`portcullis domains dns {domain}`): a running server signs with the new keys within 30 seconds. Keep the retired keys' records a week, then `portcullis domains dkim remove {domain} SELECTOR`."
    );
    Ok(())
}

fn remove(keys: &KeyStore, domain: &str, selector: &str) -> Result<(), Failure> {
    let existing = keys.list(Some(domain)).map_err(io_failure)?;
    let Some(key) = existing.iter().find(|k| k.selector == selector) else {
        return Err(Failure::new(
            EX_NOUSER,
            format!(
                "{domain} has no DKIM key {selector} (see `portcullis domains dkim list {domain}`)"
            ),
        ));
    };
    keys.remove(key).map_err(io_failure)?;
    println!("Removed {} key {selector} of {domain}.", key.algorithm);
    if key.active {
        println!(
            "It was active: within 30 seconds {domain}'s mail is no longer signed with {}. Delete {selector}._domainkey.{domain} from the DNS once mail signed with it has been read.",
            key.algorithm
        );
    } else {
        println!("Delete {selector}._domainkey.{domain} from the DNS too.");
    }
    Ok(())
}

/// `domains dns`: the records to publish, as zone-file lines with comments, or JSON.
pub fn dns(request: &DnsRequest, store: &SqliteStore, config: &Config) -> Result<(), Failure> {
    let domain = known_domain(store, request.domain)?;
    let host = store
        .domain(&domain)
        .map_err(store_failure)?
        .and_then(|d| d.host);
    let senders = if request.ips.is_empty() {
        SpfSenders::Host(config.hostname.clone())
    } else {
        SpfSenders::Addresses(request.ips.to_vec())
    };
    let mx = if request.mx.is_empty() {
        vec![host.unwrap_or_else(|| config.hostname.clone())]
    } else {
        request.mx.to_vec()
    };
    let mut published_keys = Vec::new();
    for key in KeyStore::new(&config.data_dir)
        .list(Some(&domain))
        .map_err(io_failure)?
    {
        let private = key.load().map_err(|e| Failure::new(EX_DATAERR, e))?;
        published_keys.push(PublishedKey {
            selector: key.selector,
            algorithm: key.algorithm,
            public_key: private.public_key(),
            active: key.active,
        });
    }
    let published = records::published(&domain, &senders, &published_keys, &mx);
    if request.json {
        let text = serde_json::to_string_pretty(&published)
            .map_err(|e| Failure::new(EX_SOFTWARE, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!("; DNS records for {domain}, in zone-file syntax (the TTL is your zone's default)");
    if published_keys.is_empty() {
        println!(
            "; No DKIM key yet: make one with `portcullis domains dkim generate {domain}`, then run this again"
        );
    }
    println!();
    print!("{}", records::render(&published));
    Ok(())
}

fn io_failure(message: String) -> Failure {
    Failure::new(EX_IOERR, message)
}
