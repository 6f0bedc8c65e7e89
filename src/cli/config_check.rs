//! `portcullis config check`: every problem of a configuration at once, including the ones
//! `serve` would only find at start (TLS files, the data directory, DNS servers), then a
//! summary of what the server would do.

use std::path::Path;

use super::{EX_CONFIG, Failure, Place};
use crate::config::{Config, ListenerMode};
use crate::routing::DnsResolver;

/// Exit 0 with the summary on standard output, or 78 with every problem, one a line.
pub fn run(place: Place) -> Result<u8, Failure> {
    let mut config = match &place.config {
        Some(path) => Config::load_all(path).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Failure::new(EX_CONFIG, lines.join("\nportcullis: "))
        })?,
        None => Config::embedded_default(),
    };
    if let Some(data_dir) = place.data_dir {
        config.data_dir = data_dir;
    }
    let problems = start_problems(&config);
    if !problems.is_empty() {
        return Err(Failure::new(EX_CONFIG, problems.join("\nportcullis: ")));
    }
    print!("{}", summary(&config, place.config.as_deref()));
    Ok(0)
}

/// What `serve` would refuse at start though the file itself is valid.
fn start_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(tls) = &config.tls
        && let Err(reason) = crate::tls::load_certified_key(&tls.certificate, &tls.key)
    {
        problems.push(format!("tls: {reason}"));
    }
    if let Err(reason) = writable_dir(&config.data_dir) {
        problems.push(format!("data_dir: {reason}"));
    }
    if !config.delivery.dns_servers.is_empty()
        && let Err(reason) = DnsResolver::new(&config.delivery.dns_servers)
    {
        problems.push(format!("delivery.dns_servers: cannot set up DNS: {reason}"));
    }
    if let Some(user) = &config.server.user
        && let Err(reason) = crate::privileges::look_up(user, config.server.group.as_deref())
    {
        problems.push(format!("server.user: {reason}"));
    }
    problems
}

/// The data directory, or the nearest directory above it that `serve` would create it in,
/// must be a directory this user may write (checked without creating anything).
fn writable_dir(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|candidate| candidate.exists() || candidate.as_os_str().is_empty())
        .unwrap_or(dir);
    let existing = if existing.as_os_str().is_empty() {
        Path::new(".")
    } else {
        existing
    };
    if !existing.is_dir() {
        return Err(format!("{} is not a directory", existing.display()));
    }
    let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(existing.as_os_str()))
        .map_err(|_| format!("{}: the path contains a NUL byte", existing.display()))?;
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    if unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!("{} is not writable: {error}", existing.display()));
    }
    Ok(())
}

/// "OK" and what the server would do, in the words of the README.
fn summary(config: &Config, file: Option<&Path>) -> String {
    let source = file.map_or_else(
        || "the embedded default".to_owned(),
        |path| path.display().to_string(),
    );
    let mut text = format!("OK: {source}\n  hostname: {}\n", config.hostname);
    for listener in &config.listeners {
        let mode = match (listener.mode, listener.starttls) {
            (ListenerMode::Submission, true) => "submission, STARTTLS then AUTH",
            (ListenerMode::Submission, false) => "submission, plaintext, trusted networks only",
            (ListenerMode::Submissions, _) => "submissions, implicit TLS then AUTH",
        };
        let trusted = match listener.trusted_networks.len() {
            0 => String::new(),
            n => format!(", {n} trusted network(s)"),
        };
        text += &format!("  listener: {} ({mode}{trusted})\n", listener.address);
    }
    text += &match &config.tls {
        Some(tls) => format!(
            "  TLS: {} with key {}\n",
            tls.certificate.display(),
            tls.key.display()
        ),
        None => format!(
            "  TLS: self-signed, generated in {}\n",
            config.data_dir.join("tls").display()
        ),
    };
    if let Some(http) = &config.http {
        let access = match http.token {
            Some(_) => "bearer token from token_file",
            None => "loopback clients only",
        };
        text += &format!("  http: {} (/metrics and /api/; {access})\n", http.address);
    }
    text += &format!("  data dir: {}\n", config.data_dir.display());
    if let Some(user) = &config.server.user {
        text += &format!("  runs as: {user} (after binding the listeners as root)\n");
    }
    let delivery = &config.delivery;
    text += if delivery.enabled {
        "  delivery: on\n"
    } else {
        "  delivery: off (mail is queued, not sent)\n"
    };
    text += &format!("  routes: {}\n", routes(config));
    text
}

fn routes(config: &Config) -> String {
    if config.routes.is_empty() {
        return "none (MX lookup for every domain)".to_owned();
    }
    let described: Vec<String> = config
        .routes
        .iter()
        .map(|route| {
            let via = route
                .relay
                .as_ref()
                .map_or_else(|| "MX".to_owned(), ToString::to_string);
            let domains: Vec<String> = route.domains.iter().map(ToString::to_string).collect();
            format!("{} via {via}", domains.join(" "))
        })
        .collect();
    described.join("; ")
}
