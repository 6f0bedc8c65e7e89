//! `portcullis accounts import | provision | export`: the provisioning CSV (README,
//! "Provisioning CSV"). The rules live in `crate::accounts::provisioning`; this module reads and
//! writes the files, hashes on every core with a progress bar, and reports.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::accounts::{domain_name, store_failure};
use super::{
    EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_NOINPUT, EX_NOUSER, EX_SOFTWARE, EX_USAGE, Failure,
};
use crate::accounts::provisioning::{
    self, DEFAULT_PORT, Rules, SUBMISSION_PORTS, mailbox_names, parse_address, render,
    render_export,
};
use crate::accounts::{SqliteStore, same_host};
use crate::auth::password;
use crate::config::{Config, ListenerMode};

/// `accounts import FILE [--dry-run] [--create-domains] [--allow-weak]`.
pub fn import(
    store: &SqliteStore,
    file: &Path,
    dry_run: bool,
    rules: &Rules,
) -> Result<(), Failure> {
    let name = file.display();
    let bytes = std::fs::read(file)
        .map_err(|e| Failure::new(EX_NOINPUT, format!("{name}: cannot read: {e}")))?;
    let domains: HashMap<String, Option<String>> = store
        .domains()
        .map_err(store_failure)?
        .into_iter()
        .map(|d| (d.name, d.host))
        .collect();
    let checked = provisioning::check(&bytes, &domains, rules);

    // Errors and warnings in line order, as FILE:LINE: ... like a compiler.
    let mut issues: Vec<(usize, bool, &str)> = checked
        .errors
        .iter()
        .map(|e| (e.line, true, e.message.as_str()))
        .chain(
            checked
                .warnings
                .iter()
                .map(|w| (w.line, false, w.message.as_str())),
        )
        .collect();
    issues.sort_by_key(|(line, _, _)| *line);
    for (line, error, message) in &issues {
        let kind = if *error { "error" } else { "warning" };
        eprintln!("{name}:{line}: {kind}: {message}");
    }
    if !checked.errors.is_empty() {
        // A header or encoding error stops before any row is read: it counts as one.
        let bad = checked.bad_rows.max(1);
        return Err(Failure::new(
            EX_DATAERR,
            format!("{name}: {bad} bad row{}; nothing was imported", plural(bad)),
        ));
    }
    if checked.rows.is_empty() {
        return Err(Failure::new(
            EX_DATAERR,
            format!("{name}: the file has a header but no accounts; nothing was imported"),
        ));
    }

    let addresses: Vec<&str> = checked.rows.iter().map(|r| r.address.as_str()).collect();
    let existing = store.existing_accounts(&addresses).map_err(store_failure)?;
    let domains_note = if checked.new_domains.is_empty() {
        String::new()
    } else {
        format!(
            ", and create the domain{} {}",
            plural(checked.new_domains.len()),
            checked.new_domains.join(", ")
        )
    };
    if dry_run {
        let new = checked.rows.len() - existing.len();
        println!(
            "{name}: {} valid row{}{}; an import would create {new} account{}, replace the \
             password of {}{domains_note}. Nothing was changed (--dry-run).",
            checked.rows.len(),
            plural(checked.rows.len()),
            warned(checked.warnings.len()),
            plural(new),
            existing.len(),
        );
        return Ok(());
    }

    let started = Instant::now();
    let passwords: Vec<&str> = checked.rows.iter().map(|r| r.password.as_str()).collect();
    let hashes = hash_with_progress(&passwords)?;
    let accounts: Vec<(String, String)> = checked
        .rows
        .iter()
        .map(|r| r.address.clone())
        .zip(hashes)
        .collect();
    let summary = store
        .upsert_accounts(&accounts, rules.create_domains)
        .map_err(store_failure)?;
    println!(
        "Imported {} account{} from {name} in {:.1} s: {} created, {} updated (new password){}.",
        accounts.len(),
        plural(accounts.len()),
        started.elapsed().as_secs_f64(),
        summary.created,
        summary.updated,
        warned(checked.warnings.len()),
    );
    if !summary.domains_created.is_empty() {
        println!(
            "Created domain{} {}.",
            plural(summary.domains_created.len()),
            summary.domains_created.join(", ")
        );
    }
    Ok(())
}

/// What `accounts provision` was asked for.
pub struct Provision<'a> {
    pub domain: &'a str,
    pub count: usize,
    pub out: &'a Path,
    pub host: Option<&'a str>,
    pub port: Option<u16>,
    pub prefix: &'a str,
    pub force: bool,
}

/// What `accounts export` was asked for.
pub struct Export<'a> {
    pub out: &'a Path,
    pub domain: Option<&'a str>,
    pub port: Option<u16>,
    pub force: bool,
}

/// The port column: the one asked for, else the port clients of this server use for STARTTLS
/// (its first STARTTLS listener's, else its implicit-TLS one's), when an import accepts it.
fn port_column(config: &Config, asked: Option<u16>) -> Result<u16, Failure> {
    if let Some(port) = asked {
        if SUBMISSION_PORTS.contains(&port) {
            return Ok(port);
        }
        return Err(Failure::new(
            EX_USAGE,
            format!(
                "--port {port} is not a submission port an import accepts; use 587 (STARTTLS) \
                 or 465 (implicit TLS) (2587 and 2465 are accepted too)"
            ),
        ));
    }
    let listening = |mode: ListenerMode| {
        config
            .listeners
            .iter()
            // A STARTTLS listener that does not offer STARTTLS is no port to hand out.
            .filter(|listener| {
                listener.mode == mode && (listener.starttls || mode != ListenerMode::Submission)
            })
            .map(|listener| listener.address.port())
            .find(|port| SUBMISSION_PORTS.contains(port))
    };
    Ok(listening(ListenerMode::Submission)
        .or_else(|| listening(ListenerMode::Submissions))
        .unwrap_or(DEFAULT_PORT))
}

/// `accounts provision DOMAIN --count N --out FILE [--host HOST] [--prefix P] [--force]`.
pub fn provision(store: &SqliteStore, config: &Config, request: &Provision) -> Result<(), Failure> {
    let domain = domain_name(request.domain)?;
    let port = port_column(config, request.port)?;
    let out = request.out;
    refuse_overwrite(out, request.force)?;
    let configured = store
        .domain(&domain)
        .map_err(store_failure)?
        .and_then(|d| d.host);
    let host = match (request.host, configured.as_deref()) {
        (Some(asked), Some(configured)) if !same_host(asked, configured) => {
            return Err(Failure::new(
                EX_DATAERR,
                format!(
                    "domain {domain} is served by {configured} (its configured host), so a file \
                     naming {asked} would not import; change the domain's host with \
                     `portcullis domains add {domain} --host {asked}` or leave out --host"
                ),
            ));
        }
        (Some(asked), _) => asked.to_string(),
        (None, Some(configured)) => configured.to_string(),
        (None, None) => config.hostname.clone(),
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err(Failure::new(
            EX_DATAERR,
            format!("{host:?} is not a host name"),
        ));
    }
    let addresses = mailbox_names(request.prefix, &domain, request.count)
        .iter()
        .map(|a| parse_address(a))
        .collect::<Result<Vec<String>, String>>()
        .map_err(|e| {
            Failure::new(
                EX_DATAERR,
                format!(
                    "--prefix {:?} does not make valid addresses: {e}",
                    request.prefix
                ),
            )
        })?;
    let wanted: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let mut existing: Vec<String> = store
        .existing_accounts(&wanted)
        .map_err(store_failure)?
        .into_iter()
        .collect();
    if !existing.is_empty() {
        existing.sort();
        return Err(Failure::new(
            EX_CANTCREAT,
            format!(
                "{} of these accounts exist already ({}{}); nothing was created: choose another \
                 --prefix",
                existing.len(),
                existing[..existing.len().min(3)].join(", "),
                if existing.len() > 3 { ", ..." } else { "" }
            ),
        ));
    }

    let passwords = (0..request.count)
        .map(|_| strong_password())
        .collect::<Result<Vec<String>, Failure>>()?;
    let refs: Vec<&str> = passwords.iter().map(String::as_str).collect();
    let hashes = hash_with_progress(&refs)?;
    let text = render(
        &addresses
            .iter()
            .zip(&passwords)
            .map(|(a, p)| (host.clone(), port, a.clone(), p.clone()))
            .collect::<Vec<_>>(),
    );
    // The file is complete on disk before the accounts exist, and it only takes its name once
    // they do: no accounts without their passwords, no file naming accounts that do not exist.
    let temporary = write_new(out, text.as_bytes(), 0o600)?;
    let accounts: Vec<(String, String)> = addresses.iter().cloned().zip(hashes).collect();
    let summary = match store.create_accounts(&accounts, true) {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(store_failure(error));
        }
    };
    put_in_place(&temporary, out, request.force).map_err(|e| {
        Failure::new(
            EX_IOERR,
            format!(
                "the accounts were created, but {} could not be put in place ({e}); their \
                 passwords are in {}",
                out.display(),
                temporary.display()
            ),
        )
    })?;
    if !summary.domains_created.is_empty() {
        println!("Created domain {domain}.");
    }
    println!(
        "Created {} account{} ({} ... {}) and wrote them with their passwords to {} (mode 0600): \
         host {host}, port {port}.",
        accounts.len(),
        plural(accounts.len()),
        addresses[0],
        addresses[addresses.len() - 1],
        out.display()
    );
    println!("Hand the file to the sending platform over a secure channel, then delete it.");
    Ok(())
}

/// `accounts export --out FILE [--domain D] [--port P] [--force]`; `--out -` writes to standard
/// output.
pub fn export(store: &SqliteStore, config: &Config, request: &Export) -> Result<(), Failure> {
    let (out, force) = (request.out, request.force);
    let port = port_column(config, request.port)?;
    let domain = request.domain.map(domain_name).transpose()?;
    if let Some(domain) = &domain
        && store.domain(domain).map_err(store_failure)?.is_none()
    {
        return Err(Failure::new(EX_NOUSER, format!("no domain {domain}")));
    }
    let rows: Vec<(String, u16, String)> = store
        .enabled_accounts_with_hosts(domain.as_deref())
        .map_err(store_failure)?
        .into_iter()
        .map(|(address, host)| {
            (
                host.unwrap_or_else(|| config.hostname.clone()),
                port,
                address,
            )
        })
        .collect();
    let text = render_export(&rows);
    if out == Path::new("-") {
        io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| Failure::new(EX_IOERR, format!("standard output: {e}")))?;
        return Ok(());
    }
    refuse_overwrite(out, force)?;
    let temporary = write_new(out, text.as_bytes(), 0o644)?;
    put_in_place(&temporary, out, force)
        .map_err(|e| Failure::new(EX_IOERR, format!("{}: {e}", out.display())))?;
    println!(
        "Exported {} enabled account{} to {} (host,port,username; no passwords).",
        rows.len(),
        plural(rows.len()),
        out.display()
    );
    Ok(())
}

/// A generated password that passes the import rules (a generated one almost always does).
fn strong_password() -> Result<String, Failure> {
    loop {
        let candidate = password::generate().map_err(|e| Failure::new(EX_SOFTWARE, e))?;
        if password::weakness(&candidate).is_none() {
            return Ok(candidate);
        }
    }
}

/// Hashes on every core; on a terminal, a progress bar with an ETA on standard error.
fn hash_with_progress(passwords: &[&str]) -> Result<Vec<String>, Failure> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let terminal = io::stderr().is_terminal();
    let started = Instant::now();
    let total = passwords.len();
    let result = password::hash_many(passwords, threads, |done| {
        if terminal {
            eprint!("\r{}", progress_line(done, total, started.elapsed()));
            let _ = io::stderr().flush();
        }
    });
    if terminal {
        eprintln!();
    }
    result.map_err(|e| Failure::new(EX_SOFTWARE, format!("cannot hash the passwords: {e}")))
}

/// `hashing passwords [#######-------]  512/1000  51%  ETA 0:07`.
pub fn progress_line(done: usize, total: usize, elapsed: Duration) -> String {
    const WIDTH: usize = 30;
    let total = total.max(1);
    let filled = done.min(total) * WIDTH / total;
    let eta = if done == 0 {
        "-:--".to_string()
    } else if done >= total {
        "0:00".to_string()
    } else {
        clock(elapsed.as_secs_f64() * (total - done) as f64 / done as f64)
    };
    format!(
        "hashing passwords [{}{}] {done:>width$}/{total} {:>3}%  ETA {eta} ",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        done * 100 / total,
        width = total.to_string().len(),
    )
}

/// `m:ss`, or `h:mm:ss` from an hour on.
fn clock(seconds: f64) -> String {
    let seconds = seconds.ceil() as u64;
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn refuse_overwrite(out: &Path, force: bool) -> Result<(), Failure> {
    if !force && out.symlink_metadata().is_ok() {
        return Err(Failure::new(
            EX_CANTCREAT,
            format!(
                "{} exists; nothing was done (pass --force to replace it)",
                out.display()
            ),
        ));
    }
    Ok(())
}

/// Writes `content` to a new temporary file beside `out` with `mode`, synced; returns its path.
fn write_new(out: &Path, content: &[u8], mode: u32) -> Result<PathBuf, Failure> {
    let file_name = out.file_name().ok_or_else(|| {
        Failure::new(
            EX_CANTCREAT,
            format!("{} is not a file name", out.display()),
        )
    })?;
    let temporary = out.with_file_name(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let failed = |e: io::Error| Failure::new(EX_CANTCREAT, format!("{}: {e}", temporary.display()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(failed)?;
    let written = file
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(content))
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(error));
    }
    Ok(temporary)
}

/// Gives the temporary file its final name: replacing an existing file only with `force`
/// (without it, a hard link fails rather than replace a file that appeared meanwhile).
fn put_in_place(temporary: &Path, out: &Path, force: bool) -> io::Result<()> {
    if force {
        std::fs::rename(temporary, out)?;
    } else {
        match std::fs::hard_link(temporary, out) {
            Ok(()) => std::fs::remove_file(temporary)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Err(error),
            // A file system without hard links: check, then rename.
            Err(_) if out.symlink_metadata().is_err() => std::fs::rename(temporary, out)?,
            Err(error) => return Err(error),
        }
    }
    let directory = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(directory)?.sync_all()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn warned(warnings: usize) -> String {
    match warnings {
        0 => String::new(),
        n => format!(", with {n} warning{} (see above)", plural(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_count_percentage_and_eta() {
        let line = progress_line(250, 1000, Duration::from_secs(10));
        assert_eq!(
            line,
            format!(
                "hashing passwords [{}{}]  250/1000  25%  ETA 0:30 ",
                "#".repeat(7),
                "-".repeat(23)
            )
        );
        assert!(progress_line(0, 5, Duration::ZERO).contains("0/5   0%  ETA -:-- "));
        assert!(
            progress_line(5, 5, Duration::from_secs(3))
                .contains(&format!("[{}] 5/5 100%  ETA 0:00", "#".repeat(30)))
        );
        assert!(progress_line(1, 10_000, Duration::from_secs(2)).ends_with("ETA 5:33:18 "));
    }
}
