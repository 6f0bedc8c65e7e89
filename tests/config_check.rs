//! `portcullis config check`: a summary for a good file; every section's problem at once and
//! the checks `serve` makes at start (TLS files, data directory), each refused with exit 78.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{BINARY, TempDir, status, stderr, stdout};

fn check(path: &Path) -> Output {
    Command::new(BINARY)
        .args(["config", "check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

fn write(dir: &TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_good_file_gets_ok_and_a_summary() {
    let dir = TempDir::new("config-check");
    let data = dir.0.join("data");
    let path = write(
        &dir,
        "good.toml",
        &format!(
            "hostname = \"mail.example.test\"\ndata_dir = \"{}\"\n\n[[listener]]\naddress = \"127.0.0.1:2587\"\nmode = \"submission\"\ntrusted_networks = [\"192.0.2.0/24\"]\n\n[delivery]\nenabled = false\n\n[[route]]\ndomains = [\"*\"]\nrelay = \"smtp.provider.example:587\"\n",
            data.display()
        ),
    );
    let output = check(&path);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        format!(
            "OK: {}\n  hostname: mail.example.test\n  listener: 127.0.0.1:2587 (submission, STARTTLS then AUTH, 1 trusted network(s))\n  TLS: self-signed, generated in {}\n  data dir: {}\n  delivery: off (mail is queued, not sent)\n  routes: * via smtp.provider.example:587\n",
            path.display(),
            data.join("tls").display(),
            data.display()
        )
    );
    assert!(!data.exists(), "config check creates nothing");
}

#[test]
fn the_http_listener_and_its_access_rule_are_summarized() {
    let dir = TempDir::new("config-check");
    let data = dir.0.join("data");
    write(&dir, "http-token", "scrape-token\n");
    let path = write(
        &dir,
        "http.toml",
        &format!(
            "hostname = \"mail.example.test\"\ndata_dir = \"{}\"\n[http]\naddress = \"127.0.0.1:9599\"\ntoken_file = \"http-token\"\n",
            data.display()
        ),
    );
    let output = check(&path);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(
        stdout(&output).contains(
            "\n  http: 127.0.0.1:9599 (/metrics and /api/; bearer token from token_file)\n"
        ),
        "{}",
        stdout(&output)
    );
    let path = write(&dir, "no-token.toml", "[http]\ntoken_file = \"missing\"\n");
    let output = check(&path);
    assert_eq!(status(&output), 78);
    assert!(
        stderr(&output).contains("http.token_file: cannot read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_section_with_a_problem_is_reported_at_once() {
    let dir = TempDir::new("config-check");
    let path = write(
        &dir,
        "bad.toml",
        "hostname = \"mail.example.test\"\n[limits]\nmax_recipients = 0\n[timeouts]\ncommand_seconds = 0\n",
    );
    let output = check(&path);
    assert_eq!(status(&output), 78);
    let file = path.display();
    assert_eq!(
        stderr(&output),
        format!(
            "portcullis: {file}:3:18: limits.max_recipients: 0 is below the minimum 1\nportcullis: {file}:5:19: timeouts.command_seconds: 0 is below the minimum 1\n"
        )
    );
    assert_eq!(stdout(&output), "");
}

#[test]
fn missing_tls_files_and_an_unusable_data_dir_are_refused_as_serve_would() {
    let dir = TempDir::new("config-check");
    let not_a_dir = write(&dir, "plain-file", "");
    let path = write(
        &dir,
        "start.toml",
        &format!(
            "hostname = \"mail.example.test\"\ndata_dir = \"{}\"\n[tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            not_a_dir.join("data").display(),
            dir.0.join("missing-cert.pem").display(),
            dir.0.join("missing-key.pem").display(),
        ),
    );
    let output = check(&path);
    assert_eq!(status(&output), 78);
    let errors = stderr(&output);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 2, "{errors}");
    assert!(
        lines[0].starts_with(&format!(
            "portcullis: tls: {}: cannot read the certificate chain:",
            dir.0.join("missing-cert.pem").display()
        )),
        "{errors}"
    );
    assert_eq!(
        lines[1],
        format!(
            "portcullis: data_dir: {} is not a directory",
            not_a_dir.display()
        )
    );
    // serve refuses the same file with the same status.
    let serve = Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_ne!(status(&serve), 0, "{}", stderr(&serve));
}
