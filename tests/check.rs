//! `portcullis check` end to end: the real binary against a local Portcullis (every diagnosis
//! that Portcullis can provoke) and against an aiosmtpd server (tests/clients/check_server.py)
//! for what Portcullis never does: no STARTTLS, an open relay, sender refusals, a broken
//! mechanism, lockouts, relay denial like an MX, bad certificates.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{BINARY, Options, Server, TempDir};
use serde_json::Value;

const USER: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";

/// Exit status, standard output and standard error of `portcullis check ARGS`.
fn run_check(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(BINARY)
        .arg("check")
        .args(args)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis check");
    let mut input = child.stdin.take().unwrap();
    // The check may exit (usage error) before reading; a broken pipe is fine then.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Exit status and everything printed.
fn check(args: &[&str], stdin: &[u8]) -> (i32, String) {
    let (status, stdout, stderr) = run_check(args, stdin);
    (status, format!("{stdout}{stderr}"))
}

fn assert_contains(output: &str, expected: &[&str]) {
    for text in expected {
        assert!(output.contains(text), "expected {text:?} in:\n{output}");
    }
}

/// The report line of one step: `STATUS  name  ...`.
fn step_line<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find(|line| {
            line.get(6..)
                .is_some_and(|rest| rest.split_whitespace().next() == Some(name))
        })
        .unwrap_or_else(|| panic!("no step {name} in:\n{output}"))
}

fn assert_step(output: &str, name: &str, status: &str, texts: &[&str]) {
    let line = step_line(output, name);
    assert!(
        line.starts_with(status),
        "{name} should be {status}: {line}\n{output}"
    );
    for text in texts {
        assert!(
            line.contains(text),
            "expected {text:?} in {line:?}\n{output}"
        );
    }
}

fn portcullis() -> Server {
    let server = Server::start("check", Options::default());
    server.add_account(USER, PASSWORD);
    server
}

fn address(server: &Server, implicit: bool) -> String {
    let address = if implicit {
        server.submissions
    } else {
        server.submission
    };
    address.to_string()
}

// ---- against Portcullis --------------------------------------------------------------------

#[test]
fn good_credentials_pass_and_the_test_message_is_queued() {
    let server = portcullis();
    let cert = server.certificate();
    let target = address(&server, false);
    let mut args = login_args(&target, &cert, USER);
    args.extend(["--send", "--verbose"]);
    let (status, output) = check(&args, format!("{PASSWORD}\n").as_bytes());
    assert_eq!(status, 0, "{output}");
    assert_step(&output, "auth-before-tls", "PASS", &[]);
    assert_step(&output, "tls", "PASS", &["TLSv1.3", "trusted via --ca"]);
    assert_step(&output, "mail-without-auth", "PASS", &["530 5.7.0"]);
    assert_step(&output, "random-credentials", "PASS", &["535 5.7.8"]);
    assert_step(&output, "login", "PASS", &["235 2.7.0"]);
    assert_step(&output, "mail-from", "PASS", &["250 2.1.0"]);
    assert_step(&output, "rcpt-to", "PASS", &["250 2.1.5"]);
    let queue = server.queue();
    assert_eq!(queue.len(), 1);
    let id = queue[0]["id"].as_str().unwrap();
    assert_step(&output, "data", "PASS", &[&format!("queue id {id}")]);
    assert_eq!(queue[0]["auth_user"], USER);
    assert_contains(&output, &["Result: PASS (exit status 0)", "note: port"]);
    // The transcript is there, with the credentials redacted.
    assert_contains(
        &output,
        &["C: AUTH PLAIN <redacted>", "S: 235 2.7.0", "C: STARTTLS"],
    );
    assert!(!output.contains(PASSWORD), "{output}");
    assert!(!output.contains("AHBhc3N3b3Jk"), "{output}");
}

#[test]
fn foreign_sender_address_explains_the_553() {
    let server = portcullis();
    let cert = server.certificate();
    let target = address(&server, false);
    let (status, output) = check(
        &login_args(&target, &cert, "ceo@example.test"),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "login", "PASS", &["235 2.7.0"]);
    assert_step(
        &output,
        "mail-from",
        "FAIL",
        &["553 5.7.1 Sender address <ceo@example.test> not owned by user <alice@example.test>"],
    );
    assert_contains(
        &output,
        &[
            "the sender address is not allowed for this user",
            "Use your own address with --from",
        ],
    );
    assert!(server.queue().is_empty());
}

#[test]
fn wrong_password_fails_at_login_and_explains_535() {
    let server = portcullis();
    let cert = server.certificate();
    // No --from is the same: the sender defaults to --user.
    let (status, output) = check(
        &login_args(&address(&server, false), &cert, USER),
        b"not the password\n",
    );
    assert_eq!(status, 1, "{output}");
    assert_step(
        &output,
        "login",
        "FAIL",
        &["535 5.7.8", "wrong credentials"],
    );
    assert_step(&output, "mail-from", "SKIP", &[]);
    assert_contains(
        &output,
        &["535 means wrong credentials", "not a mechanism problem"],
    );
}

#[test]
fn stray_characters_in_the_password_are_named_and_the_cleaned_password_tried() {
    let server = portcullis();
    let dir = TempDir::new("check-password");
    let cert = server.certificate();
    let target = address(&server, false);
    let common_args = |source: &[&'static str]| {
        let mut args: Vec<String> = vec![
            target.clone(),
            "--ca".into(),
            cert.to_str().unwrap().into(),
            "--user".into(),
            USER.into(),
            "--to".into(),
            "x@example.net".into(),
        ];
        args.extend(source.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: &[String], stdin: &[u8]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check(&args, stdin)
    };

    // A password file that ends with a newline: nothing is stripped silently.
    let file = dir.0.join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let mut args = common_args(&["--password-file"]);
    args.push(file.to_str().unwrap().to_string());
    let (status, output) = run(&args, b"");
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "password", "WARN", &["ends with a newline"]);
    assert_step(
        &output,
        "login",
        "FAIL",
        &["535 5.7.8", "accepted without the stray characters"],
    );
    assert_contains(
        &output,
        &[
            "the password file ends with a newline; if that is not part of the password",
            "Certain: the password as given was refused (535)",
        ],
    );
    // The rest of the check went on with the corrected password.
    assert_step(&output, "rcpt-to", "PASS", &[]);

    // A CRLF on standard input: one "\n" is the line terminator, the "\r" is reported.
    let (status, output) = run(
        &common_args(&["--password-stdin"]),
        format!("{PASSWORD}\r\n").as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_contains(&output, &["carriage return", "Certain:"]);

    // An invisible zero-width space inside the password.
    let (status, output) = run(
        &common_args(&["--password-stdin"]),
        "correct horse\u{200B} battery\n".as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_contains(&output, &["zero-width space (U+200B", "Certain:"]);

    // A plain stdin line with the right password is fine.
    let (status, output) = run(
        &common_args(&["--password-stdin"]),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 0, "{output}");
    assert_step(&output, "password", "PASS", &[]);
}

#[test]
fn plain_against_the_starttls_listener_explains_the_530() {
    let server = portcullis();
    let (status, output) = check(
        &[
            &address(&server, false),
            "--plain",
            "--user",
            USER,
            "--password-stdin",
            "--to",
            "x@example.net",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_step(
        &output,
        "mail-without-auth",
        "WARN",
        &["530 5.7.0 Must issue a STARTTLS command first"],
    );
    assert_step(
        &output,
        "auth-mechanisms",
        "FAIL",
        &["server offers STARTTLS"],
    );
    assert_contains(
        &output,
        &["the client skipped TLS", "Use --starttls (port 587)"],
    );
    // No credentials went out over the unencrypted connection.
    assert_step(&output, "login", "FAIL", &["not attempted"]);
}

#[test]
fn tls_mode_that_does_not_fit_the_port_is_named() {
    let server = portcullis();
    let cert = server.certificate();
    let cert = cert.to_str().unwrap();

    let (status, output) = check(&[&address(&server, false), "--tls", "--ca", cert], b"");
    assert_eq!(status, 1, "{output}");
    assert_step(
        &output,
        "tls",
        "FAIL",
        &["answered the TLS handshake in plaintext"],
    );
    assert_contains(
        &output,
        &["this port speaks plaintext SMTP", "Use --starttls"],
    );

    let (status, output) = check(
        &[
            &address(&server, true),
            "--starttls",
            "--ca",
            cert,
            "--timeout",
            "2",
        ],
        b"",
    );
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "greeting", "FAIL", &["no answer within 2 s"]);
    assert_contains(
        &output,
        &["the server waits for a TLS handshake", "use --tls"],
    );
}

#[test]
fn an_unusual_port_that_waits_for_a_handshake_is_checked_with_tls() {
    let server = portcullis();
    let cert = server.certificate();
    let target = address(&server, true);
    let (status, output) = check(&[&target, "--ca", cert.to_str().unwrap()], b"");
    assert_eq!(status, 0, "{output}");
    assert_contains(
        &output,
        &["sent no greeting within 3 s, so it expects implicit TLS"],
    );
    assert_step(&output, "tls", "PASS", &[]);
}

/// Without a port, 587 comes first; a host that answers only on 465 is checked there.
#[test]
fn without_a_port_465_is_tried_when_587_does_not_answer() {
    let server = Server::start(
        "check-465",
        Options {
            // A privileged port: the tests run as root, as .ci/run does.
            extra: "[[listener]]\naddress = \"127.0.0.77:465\"\nmode = \"submissions\"\n".into(),
            ..Options::default()
        },
    );
    server.add_account(USER, PASSWORD);
    let (status, output) = check(
        &[
            "127.0.0.77",
            "--insecure",
            "--user",
            USER,
            "--password-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 0, "{output}");
    assert_contains(
        &output,
        &[
            "no port was given and port 587 refused the connection; port 465 answered, so this \
             check uses implicit TLS there",
        ],
    );
    assert_step(&output, "login", "PASS", &[]);
}

/// The 530 names the ports this server listens on, not the textbook 587 and 465.
#[test]
fn the_530_names_the_ports_the_server_listens_on() {
    let server = portcullis();
    let (_, output) = check(
        &[&address(&server, false), "--plain", "--to", "x@example.net"],
        b"",
    );
    let expected = format!(
        "530 5.7.0 Must issue a STARTTLS command first. Set the client to use STARTTLS on this \
         port ({}), or implicit TLS (SSL/TLS) on port {}",
        server.submission.port(),
        server.submissions.port()
    );
    assert_contains(&output, &[&expected]);
}

#[test]
fn self_signed_certificate_needs_ca_or_insecure() {
    let server = portcullis();
    let target = address(&server, true);
    let (status, output) = check(&[&target, "--tls"], b"");
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "tls", "FAIL", &["certificate chain not trusted"]);
    assert_contains(&output, &["self-signed", "--ca FILE", "--insecure"]);

    let (status, output) = check(
        &[
            &target,
            "--tls",
            "--insecure",
            "--user",
            USER,
            "--password-stdin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 0, "{output}");
    assert_step(&output, "tls", "WARN", &["not trusted", "--insecure"]);
    assert_step(&output, "login", "PASS", &["235 2.7.0"]);
}

#[test]
fn closed_port_is_reported_as_connection_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (status, output) = check(&[&format!("127.0.0.1:{port}"), "--timeout", "5"], b"");
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "connect", "FAIL", &["connection refused"]);
    assert_contains(
        &output,
        &[
            "Connection refused: nothing accepts connections",
            "embedded default listens on 2587 (STARTTLS) and 2465",
            "try `portcullis check 127.0.0.1:2587`",
        ],
    );
}

#[test]
fn json_report_parses_and_lists_every_step() {
    let server = portcullis();
    let cert = server.certificate();
    let target = address(&server, false);
    let run = |password: &str| {
        let mut args = login_args(&target, &cert, USER);
        args.push("--json");
        let (status, output, _) = run_check(&args, format!("{password}\n").as_bytes());
        let json: Value =
            serde_json::from_str(&output).unwrap_or_else(|e| panic!("{e}: not JSON:\n{output}"));
        (status, json)
    };
    let (status, json) = run(PASSWORD);
    assert_eq!(status, 0, "{json:#}");
    assert_eq!(json["overall"], "pass");
    assert_eq!(json["exit_status"], 0);
    assert_eq!(json["mode"], "starttls");
    let names: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "connect",
            "greeting",
            "ehlo",
            "auth-before-tls",
            "starttls",
            "tls",
            "ehlo-after-tls",
            "auth-mechanisms",
            "mail-without-auth",
            "random-credentials",
            "password",
            "login",
            "mail-from",
            "rcpt-to",
            "data"
        ]
    );
    let login = &json["steps"][11];
    assert_eq!(login["status"], "pass");
    assert_eq!(login["reply"], "235 2.7.0 Authentication successful");
    assert_eq!(json["steps"][14]["status"], "skip");
    assert!(
        json["diagnosis"][0]
            .as_str()
            .unwrap()
            .starts_with("No problems found")
    );
    assert!(json.get("transcript").is_none());

    let (status, json) = run("wrong");
    assert_eq!(status, 1);
    assert_eq!(json["overall"], "fail");
    assert_eq!(json["steps"][11]["status"], "fail");
    assert!(
        json["steps"][11]["diagnosis"]
            .as_str()
            .unwrap()
            .contains("535 means wrong credentials")
    );
}

#[test]
fn usage_errors_exit_with_status_2() {
    for args in [
        &["127.0.0.1:99999"][..],
        &["127.0.0.1", "--tls", "--plain"],
        &["127.0.0.1", "--user", USER],
        &["127.0.0.1", "--password-stdin"],
        &["127.0.0.1", "--send", "--from", USER],
        &["127.0.0.1", "--ca", "/nonexistent/ca.pem"],
        &["127.0.0.1", "--timeout", "0"],
    ] {
        let (status, output) = check(args, b"");
        assert_eq!(status, 2, "{args:?}: {output}");
        assert!(output.contains("portcullis check: "), "{args:?}: {output}");
    }
}

#[test]
fn argument_errors_found_by_the_parser_exit_with_status_2() {
    for args in [&["127.0.0.1", "--bogus"][..], &[]] {
        let (status, output) = check(args, b"");
        assert_eq!(status, 2, "{args:?}: {output}");
        assert!(
            output.contains("Usage: portcullis check"),
            "{args:?}: {output}"
        );
    }
}

// ---- against aiosmtpd ----------------------------------------------------------------------

/// tests/clients/check_server.py, stopped on drop (and by its standard input closing, should
/// the test process die first).
struct Aiosmtpd {
    child: Child,
    port: u16,
}

impl Aiosmtpd {
    fn start(args: &[&str]) -> Aiosmtpd {
        let mut child = common::python_command("check_server.py")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is installed");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("check_server.py did not start (is aiosmtpd installed?): {line:?}")
            });
        Aiosmtpd { child, port }
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate and key for aiosmtpd's STARTTLS, written into `dir`.
fn certificate(dir: &TempDir, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.0.join(format!("{}-cert.pem", names[0]));
    let key_path = dir.0.join(format!("{}-key.pem", names[0]));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// aiosmtpd with STARTTLS (a certificate for 127.0.0.1), one account and `extra` behaviour.
fn tls_server(dir: &TempDir, extra: &[&str]) -> (Aiosmtpd, PathBuf) {
    let (cert, key) = certificate(dir, &["localhost", "127.0.0.1"], false);
    let mut args = vec![
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--user",
        USER,
        "--password",
        PASSWORD,
        "--auth-required",
    ];
    args.extend_from_slice(extra);
    (Aiosmtpd::start(&args), cert)
}

fn login_args<'a>(server: &'a str, cert: &'a Path, from: &'a str) -> Vec<&'a str> {
    vec![
        server,
        "--ca",
        cert.to_str().unwrap(),
        "--user",
        USER,
        "--password-stdin",
        "--from",
        from,
        "--to",
        "x@example.net",
    ]
}

#[test]
fn aiosmtpd_without_starttls_fails_and_open_relay_is_named() {
    let server = Aiosmtpd::start(&[]);
    let (status, output) = check(&[&server.target()], b"");
    assert_eq!(status, 1, "{output}");
    assert_contains(
        &output,
        &[
            "it greeted at once, so this check uses STARTTLS",
            "Python SMTP",
        ],
    );
    assert_step(&output, "starttls", "FAIL", &["does not offer STARTTLS"]);
    assert_contains(
        &output,
        &[
            "a password would travel in clear",
            "It offers no AUTH either",
        ],
    );

    let (status, output) = check(
        &[
            &server.target(),
            "--plain",
            "--from",
            "a@b.example",
            "--to",
            "x@example.net",
        ],
        b"",
    );
    assert_eq!(status, 1, "{output}");
    assert_step(
        &output,
        "mail-without-auth",
        "FAIL",
        &["accepted without a login"],
    );
    assert_contains(&output, &["Open relay"]);
}

#[test]
fn aiosmtpd_refusing_the_sender_gets_the_sender_not_allowed_diagnosis() {
    let dir = TempDir::new("check-aiosmtpd-sender");
    let (server, cert) = tls_server(
        &dir,
        &[
            "--reject-sender",
            "boss@example.org",
            "--mail-530",
            "other@example.org",
        ],
    );
    let target = server.target();
    let password = format!("{PASSWORD}\n");

    let (status, output) = check(
        &login_args(&target, &cert, "boss@example.org"),
        password.as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "mail-without-auth", "PASS", &["530 5.7.0"]);
    assert_step(&output, "login", "PASS", &["235 2.7.0"]);
    assert_step(
        &output,
        "mail-from",
        "FAIL",
        &["553 5.7.1", "not allowed for"],
    );
    assert_contains(
        &output,
        &[
            "the sender address is not allowed for this user",
            "Use your own address with --from",
        ],
    );

    let (status, output) = check(
        &login_args(&target, &cert, "other@example.org"),
        password.as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_step(
        &output,
        "mail-from",
        "FAIL",
        &["530 5.7.0", "although the login succeeded"],
    );
    assert_contains(&output, &["wants a different identity", "submission port"]);

    // The same server with an allowed sender: another server's queue id is found too.
    let mut args = login_args(&target, &cert, USER);
    args.push("--send");
    let (status, output) = check(&args, password.as_bytes());
    assert_eq!(status, 0, "{output}");
    assert_step(&output, "data", "PASS", &["queue id AIOSMTPD42"]);
}

#[test]
fn aiosmtpd_plain_failing_where_login_works_is_a_mechanism_problem() {
    let dir = TempDir::new("check-aiosmtpd-mechanism");
    let (server, cert) = tls_server(&dir, &["--mechanisms", "LOGIN"]);
    let target = server.target();
    let (status, output) = check(
        &login_args(&target, &cert, USER),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 0, "{output}");
    assert_step(
        &output,
        "login",
        "WARN",
        &["refused with AUTH PLAIN (535) but accepted with AUTH LOGIN"],
    );
    assert_contains(
        &output,
        &["Mechanism problem", "set the client to use LOGIN"],
    );
    assert_step(&output, "rcpt-to", "PASS", &[]);
}

#[test]
fn aiosmtpd_locking_logins_after_a_failure_is_explained() {
    let dir = TempDir::new("check-aiosmtpd-lock");
    let (server, cert) = tls_server(&dir, &["--lock-after", "1"]);
    let target = server.target();
    let (status, output) = check(
        &login_args(&target, &cert, USER),
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "random-credentials", "PASS", &["535 5.7.8"]);
    assert_step(
        &output,
        "login",
        "FAIL",
        &["454 4.7.0", "temporary authentication failure"],
    );
    assert_contains(&output, &["locked the account or your IP address", "Wait"]);
}

#[test]
fn aiosmtpd_denying_relay_without_auth_looks_like_an_mx() {
    let dir = TempDir::new("check-aiosmtpd-mx");
    let (cert, key) = certificate(&dir, &["localhost", "127.0.0.1"], false);
    let server = Aiosmtpd::start(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--no-auth",
        "--local-domain",
        "mx.example.test",
    ]);
    let (status, output) = check(
        &[
            &server.target(),
            "--ca",
            cert.to_str().unwrap(),
            "--from",
            "a@mx.example.test",
            "--to",
            "x@example.net",
        ],
        b"",
    );
    assert_eq!(status, 1, "{output}");
    assert_step(&output, "auth-mechanisms", "WARN", &["no AUTH offered"]);
    assert_step(
        &output,
        "rcpt-to",
        "FAIL",
        &["554 5.7.1", "relaying to example.net denied"],
    );
    assert_contains(
        &output,
        &["looks like a server for incoming mail (an MX) rather than a submission server"],
    );
}

#[test]
fn aiosmtpd_certificate_with_the_wrong_name_or_expired() {
    let dir = TempDir::new("check-aiosmtpd-certs");
    for (names, expired, explanation) in [
        (
            &["other.example.test"][..],
            false,
            "certificate not valid for 127.0.0.1",
        ),
        (
            &["127.0.0.1"][..],
            true,
            "certificate expired on 2021-01-01",
        ),
    ] {
        let (cert, key) = certificate(&dir, names, expired);
        let server = Aiosmtpd::start(&[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--auth-required",
        ]);
        let ca = cert.to_str().unwrap();
        let (status, output) = check(&[&server.target(), "--ca", ca], b"");
        assert_eq!(status, 1, "{output}");
        assert_step(&output, "tls", "FAIL", &[explanation]);

        // --insecure: the same verdict as a warning, and the check goes on.
        let (status, output) = check(&[&server.target(), "--ca", ca, "--insecure"], b"");
        assert_eq!(status, 0, "{output}");
        assert_step(&output, "tls", "WARN", &[explanation, "--insecure"]);
        assert_step(&output, "ehlo-after-tls", "PASS", &["AUTH"]);
    }
}
