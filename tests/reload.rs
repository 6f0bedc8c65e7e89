//! SIGHUP reloads the configuration of the real binary without dropping a session; a broken
//! file or a change that needs a restart is refused and logged; SIGTERM exits 0. Under
//! systemd (`NOTIFY_SOCKET`) each step is notified.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Options, Raw, Server, TempDir, signal, wait_until};

const SENDER: &str = "MAIL FROM:<app@example.com> SIZE=5000\r\n";

fn trusted(log: Option<&'static str>, env: Vec<(&'static str, std::path::PathBuf)>) -> Server {
    Server::start(
        "reload",
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            log,
            env,
            ..Options::default()
        },
    )
}

/// A session past EHLO on the submission listener.
fn session(server: &Server) -> Raw {
    let mut raw = Raw::connect(server.submission);
    raw.expect("220 ");
    raw.send(b"EHLO client.example\r\n");
    raw.expect("250 ");
    raw
}

/// The server's file with `[limits]` appended (the generated file has no such table).
fn rewrite(server: &Server, original: &str, extra: &str) {
    std::fs::write(&server.config_path, format!("{original}\n{extra}")).unwrap();
}

fn reload_and_wait_for(server: &Server, line: &str) -> String {
    let before = server.log().matches(line).count();
    signal(server.child.as_ref().unwrap(), libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || server
            .log()
            .matches(line)
            .count()
            > before),
        "no {line:?} in the log:\n{}",
        server.log()
    );
    server.log()
}

#[test]
fn sighup_applies_a_changed_limit_and_refuses_a_broken_file() {
    let mut server = trusted(Some("info"), Vec::new());
    let original = std::fs::read_to_string(&server.config_path).unwrap();
    let mut before = session(&server);

    rewrite(&server, &original, "[limits]\nmax_message_size = 4000\n");
    let log = reload_and_wait_for(&server, "reloaded the configuration");
    assert!(log.contains("changed=limits"), "{log}");

    let mut after = session(&server);
    after.send(SENDER.as_bytes());
    after.expect(
        "552 5.3.4 Message size exceeds the limit of 4000 octets; send a smaller message or a link",
    );
    // The session that started before the reload continues, with the limit it started with.
    before.send(SENDER.as_bytes());
    before.expect("250 2.1.0");
    before.send(b"QUIT\r\n");
    before.expect("221 2.0.0");

    rewrite(&server, &original, "[limits]\nmax_message_size = -1\n");
    let log = reload_and_wait_for(&server, "reload refused");
    let config = server.config_path.display().to_string();
    assert!(
        log.contains(&format!("{config}:")) && log.contains("limits.max_message_size"),
        "the refusal names the file, line and key:\n{log}"
    );
    // Still serving, with the configuration before the broken file.
    let mut still = session(&server);
    still.send(SENDER.as_bytes());
    still.expect("552 5.3.4 Message size exceeds the limit of 4000 octets");

    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn sighup_refuses_a_listener_change_and_keeps_everything_as_it_was() {
    let mut server = trusted(Some("info"), Vec::new());
    let original = std::fs::read_to_string(&server.config_path).unwrap();
    let moved = original.replacen("127.0.0.1:0", "127.0.0.2:0", 1);
    std::fs::write(
        &server.config_path,
        format!("{moved}\n[limits]\nmax_message_size = 4000\n"),
    )
    .unwrap();
    let log = reload_and_wait_for(&server, "reload refused");
    assert!(
        log.contains("needs_restart=\"listener (addresses, modes, starttls)\""),
        "{log}"
    );
    // The limit in the same file was not applied either.
    let mut raw = session(&server);
    raw.send(SENDER.as_bytes());
    raw.expect("250 2.1.0");
    assert_eq!(server.terminate().code(), Some(0));
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let path = dir.0.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let next = || {
        let mut buffer = [0; 256];
        let n = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let mut server = trusted(None, vec![("NOTIFY_SOCKET", path.clone())]);
    assert!(next().starts_with("READY=1\n"));

    signal(server.child.as_ref().unwrap(), libc::SIGHUP);
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert!(next().starts_with("READY=1\n"));

    let child = server.child.take().unwrap();
    signal(&child, libc::SIGTERM);
    assert!(next().starts_with("STOPPING=1\n"));
    let mut child = child;
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The SHA-256 of the certificate the implicit-TLS listener serves, as Python's ssl sees it.
fn served_certificate(server: &Server) -> String {
    fingerprint(&format!(
        "ssl.get_server_certificate(('127.0.0.1', {}))",
        server.submissions.port()
    ))
}

fn file_certificate(path: &std::path::Path) -> String {
    fingerprint(&format!("open({:?}).read()", path.display().to_string()))
}

fn fingerprint(pem_expression: &str) -> String {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import hashlib, ssl; \
                 print(hashlib.sha256(ssl.PEM_cert_to_DER_cert({pem_expression})).hexdigest())"
            ),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn sighup_serves_a_certificate_renewed_in_place_and_refuses_a_broken_one() {
    let dir = TempDir::new("reload-tls");
    let (chain, key) = common::write_certificate(&dir.0, "server", &["first.test"]);
    let mut server = Server::start(
        "reload-tls",
        Options {
            extra: format!(
                "[tls]\ncertificate = {:?}\nkey = {:?}\n",
                chain.display().to_string(),
                key.display().to_string()
            ),
            log: Some("info"),
            ..Options::default()
        },
    );
    assert_eq!(served_certificate(&server), file_certificate(&chain));

    // Renewed in place, as certbot does, then SIGHUP: the next handshake gets the new one.
    let renewed = TempDir::new("reload-tls-renewed");
    let (new_chain, new_key) = common::write_certificate(&renewed.0, "server", &["second.test"]);
    std::fs::copy(&new_chain, &chain).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    reload_and_wait_for(&server, "reloaded the configuration");
    assert_eq!(served_certificate(&server), file_certificate(&new_chain));

    // A key that does not match refuses the reload; the renewed certificate stays in service.
    let other = TempDir::new("reload-tls-other");
    let (_, other_key) = common::write_certificate(&other.0, "server", &["third.test"]);
    std::fs::copy(&other_key, &key).unwrap();
    let log = reload_and_wait_for(&server, "reload refused");
    assert!(
        log.contains("the private key does not match the certificate"),
        "{log}"
    );
    assert_eq!(served_certificate(&server), file_certificate(&new_chain));
    assert_eq!(server.terminate().code(), Some(0));
}
