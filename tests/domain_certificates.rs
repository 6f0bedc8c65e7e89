//! Per-domain certificates chosen by SNI, and `[policy] require_host_match`, against the real
//! binary, with Python's ssl module as the client (`tests/clients/sni_client.py`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Options, Server, python_script, write_certificate};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// A connection to the listener at `port` asking for `server_name` (`None`: no SNI), logging in
/// with `login` if given.
struct Client<'a> {
    port: u16,
    mode: &'a str,
    trusted: &'a Path,
    server_name: Option<&'a str>,
    login: Option<(&'a str, &'a str)>,
}

impl Client<'_> {
    fn run(&self) -> Value {
        let port = self.port.to_string();
        let mut args = vec![
            "--port",
            &port,
            "--mode",
            self.mode,
            "--cafile",
            self.trusted.to_str().unwrap(),
        ];
        if let Some(name) = self.server_name {
            args.extend(["--server-name", name]);
        }
        if let Some((user, password)) = self.login {
            args.extend(["--user", user, "--password", password]);
        }
        let (ok, stdout, stderr) = python_script("sni_client.py", &args);
        assert!(ok, "sni_client.py failed: {stderr}");
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout} / {stderr}"))
    }

    /// The DNS names of the certificate the server chose.
    fn names(&self) -> Vec<String> {
        let result = self.run();
        let names = result["names"]
            .as_array()
            .unwrap_or_else(|| panic!("no certificate: {result}"));
        names
            .iter()
            .map(|name| name.as_str().unwrap().to_string())
            .collect()
    }

    /// The reply to AUTH PLAIN.
    fn auth(&self) -> Value {
        self.run()["auth"].clone()
    }
}

fn domains_add(server: &Server, args: &[&str]) {
    server.cli_ok(&[&["domains", "add"], args].concat(), None);
}

/// A file with every certificate the server may present (its default and `chains`), for the
/// client to verify against.
fn trust(server: &Server, chains: &[&Path]) -> PathBuf {
    let mut bundle = std::fs::read_to_string(server.certificate()).unwrap();
    for chain in chains {
        bundle.push_str(&std::fs::read_to_string(chain).unwrap());
    }
    let path = server.dir.0.join("trusted.pem");
    std::fs::write(&path, bundle).unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn sni_chooses_the_domains_certificate_and_no_sni_gets_the_default() {
    let mut server = Server::start("sni", Options::default());
    let dir = server.dir.0.clone();
    let (a_chain, a_key) = write_certificate(&dir, "a", &["a.test", "box.a.test"]);
    let (b_chain, b_key) = write_certificate(&dir, "b", &["b.test", "box.b.test"]);
    domains_add(
        &server,
        &[
            "a.test",
            "--host",
            "box.a.test",
            "--cert",
            text(&a_chain),
            "--key",
            text(&a_key),
        ],
    );
    domains_add(
        &server,
        &["b.test", "--cert", text(&b_chain), "--key", text(&b_key)],
    );
    server.add_account("u@b.test", PASSWORD);
    // Certificates are read at start, then every 30 seconds: restart to have them at once.
    server.terminate();
    server.launch();
    let trusted = trust(&server, &[&a_chain, &b_chain]);
    let client = |server_name| Client {
        port: server.submissions.port(),
        mode: "ssl",
        trusted: &trusted,
        server_name,
        login: None,
    };
    assert_eq!(client(Some("a.test")).names(), ["a.test", "box.a.test"]);
    assert_eq!(client(Some("box.a.test")).names(), ["a.test", "box.a.test"]);
    assert_eq!(client(Some("B.TEST")).names(), ["b.test", "box.b.test"]);
    let default = client(None).names();
    assert!(
        default.contains(&"mail.example.test".to_string()),
        "{default:?}"
    );
    assert_eq!(client(Some("unknown.test")).names(), default);
    // b.test has no host: box.b.test is an unknown name.
    assert_eq!(client(Some("box.b.test")).names(), default);

    let after_starttls = Client {
        port: server.submission.port(),
        mode: "starttls",
        server_name: Some("a.test"),
        ..client(None)
    };
    assert_eq!(after_starttls.names(), ["a.test", "box.a.test"]);

    // Without require_host_match an account logs in at any host name.
    let elsewhere = Client {
        login: Some(("u@b.test", PASSWORD)),
        ..client(Some("box.a.test"))
    };
    assert_eq!(
        elsewhere.auth(),
        json!([235, "2.7.0 Authentication successful"])
    );
}

#[test]
fn a_certificate_added_while_the_server_runs_is_served_within_the_refresh_interval() {
    let server = Server::start("sni-refresh", Options::default());
    let (chain, key) = write_certificate(&server.dir.0, "c", &["c.test"]);
    domains_add(
        &server,
        &["c.test", "--cert", text(&chain), "--key", text(&key)],
    );
    let trusted = trust(&server, &[&chain]);
    let client = Client {
        port: server.submissions.port(),
        mode: "ssl",
        trusted: &trusted,
        server_name: Some("c.test"),
        login: None,
    };
    // The refresh runs every 30 seconds; one connection a second until it has.
    let served = (0..45).any(|_| {
        let served = client.names() == ["c.test"];
        if !served {
            std::thread::sleep(Duration::from_secs(1));
        }
        served
    });
    assert!(served, "c.test's certificate was not served within 45 s");
}

#[test]
fn with_require_host_match_a_correct_login_at_another_host_is_554_naming_the_right_one() {
    let server = Server::start(
        "host-match",
        Options {
            extra: "[policy]\nrequire_host_match = true\n".into(),
            log: Some("info"),
            ..Options::default()
        },
    );
    domains_add(&server, &["b.test", "--host", "box.b.test"]);
    server.add_account("u@b.test", PASSWORD);
    // c.test has no host: its accounts may log in at any name.
    server.add_account("v@c.test", PASSWORD);
    let trusted = server.certificate();
    let login = |server_name, user, password| {
        Client {
            port: server.submissions.port(),
            mode: "ssl",
            trusted: &trusted,
            server_name,
            login: Some((user, password)),
        }
        .auth()
    };
    assert_eq!(
        login(Some("box.a.test"), "u@b.test", PASSWORD),
        json!([
            554,
            "5.7.1 Account <u@b.test> is served by box.b.test, not box.a.test: connect to box.b.test"
        ])
    );
    // A wrong password is 535 at any host: the rule tells nothing without the password.
    assert_eq!(
        login(Some("box.a.test"), "u@b.test", "wrong"),
        json!([
            535,
            "5.7.8 Authentication credentials invalid. Check the user name (your full email address) and the password; a pasted password may carry a stray space or newline"
        ])
    );
    assert_eq!(
        login(Some("BOX.B.TEST"), "u@b.test", PASSWORD),
        json!([235, "2.7.0 Authentication successful"])
    );
    // Without SNI, the host asked for is the listener's host name.
    assert_eq!(
        login(None, "u@b.test", PASSWORD),
        json!([
            554,
            "5.7.1 Account <u@b.test> is served by box.b.test, not mail.example.test: connect to box.b.test"
        ])
    );
    assert_eq!(
        login(Some("box.a.test"), "v@c.test", PASSWORD),
        json!([235, "2.7.0 Authentication successful"])
    );

    let after_starttls = Client {
        port: server.submission.port(),
        mode: "starttls",
        trusted: &trusted,
        server_name: Some("box.b.test"),
        login: Some(("u@b.test", PASSWORD)),
    };
    assert_eq!(
        after_starttls.auth(),
        json!([235, "2.7.0 Authentication successful"])
    );

    let log = server.log();
    assert!(
        log.contains(
            r#"login refused: wrong host client=127.0.0.1 user="u@b.test" asked=box.a.test serving=box.b.test"#
        ),
        "{log}"
    );
}
