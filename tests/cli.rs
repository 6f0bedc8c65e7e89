//! The command line: accounts, queue, config, and exit statuses (sysexits).

mod common;

use std::path::Path;

use common::{
    BINARY, Options, Server, TempDir, cli_in, cli_in_ok, status, stderr, stdout, write_certificate,
};

#[test]
fn accounts_lifecycle_and_exit_statuses() {
    let dir = TempDir::new("accounts");
    let data = dir.0.join("data");
    let added = cli_in(&data, &["accounts", "add", "Alice@Example.test"], None);
    assert_eq!(status(&added), 0, "{}", stderr(&added));
    let text = stdout(&added);
    let password = text
        .lines()
        .find_map(|line| line.strip_prefix("Password for alice@example.test: "))
        .unwrap_or_else(|| panic!("a generated password is printed: {text}"));
    assert!(password.len() >= 20);
    assert!(
        text.contains("STARTTLS on port 2587 or SSL/TLS on port 2465"),
        "the embedded default's ports: {text}"
    );

    let listed = cli_in(&data, &["accounts", "list"], None);
    assert!(
        stdout(&listed).starts_with("alice@example.test\tcreated "),
        "{}",
        stdout(&listed)
    );
    let stored = String::from_utf8_lossy(&std::fs::read(data.join("accounts.sqlite")).unwrap())
        .into_owned()
        + &String::from_utf8_lossy(
            &std::fs::read(data.join("accounts.sqlite-wal")).unwrap_or_default(),
        );
    assert!(stored.contains("$argon2id$") && !stored.contains(password));

    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "add", "alice@example.test"],
            None
        )),
        73,
        "exists: EX_CANTCREAT"
    );
    assert_eq!(
        status(&cli_in(&data, &["accounts", "add", "not an address"], None)),
        65,
        "bad address: EX_DATAERR"
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "add", "b@example.test", "--password-stdin"],
            Some("\n")
        )),
        65,
        "empty password"
    );
    let passwd = cli_in(
        &data,
        &[
            "accounts",
            "passwd",
            "alice@example.test",
            "--password-stdin",
        ],
        Some("new secret 2026\n"),
    );
    assert_eq!(status(&passwd), 0, "{}", stderr(&passwd));
    // The rule of `accounts import`, for `add` and `passwd` too.
    let weak = cli_in(
        &data,
        &[
            "accounts",
            "passwd",
            "alice@example.test",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(status(&weak), 65, "{}", stderr(&weak));
    assert!(
        stderr(&weak).contains("too weak: it has 5 characters; at least 12 are required"),
        "{}",
        stderr(&weak)
    );
    // From a script, a forgotten --password-stdin leaves the password alone.
    let unasked = cli_in(&data, &["accounts", "passwd", "alice@example.test"], None);
    assert_eq!(status(&unasked), 64, "{}", stderr(&unasked));
    assert!(
        stderr(&unasked).contains("--generate to replace it"),
        "{}",
        stderr(&unasked)
    );
    let generated = cli_in(
        &data,
        &["accounts", "passwd", "alice@example.test", "--generate"],
        None,
    );
    assert_eq!(status(&generated), 0, "{}", stderr(&generated));
    assert!(stdout(&generated).contains("Password for alice@example.test: "));
    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "passwd", "zed@example.test", "--password-stdin"],
            Some("Str0ng-Passw0rd\n")
        )),
        67,
        "EX_NOUSER"
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "remove", "alice@example.test"],
            None
        )),
        0
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "remove", "alice@example.test"],
            None
        )),
        67
    );
    assert_eq!(cli_in_ok(&data, &["accounts", "list"], None), "");
}

#[test]
fn password_with_surrounding_whitespace_is_accepted_with_a_warning() {
    let dir = TempDir::new("whitespace");
    let output = cli_in(
        &dir.0,
        &["accounts", "add", "a@example.test", "--password-stdin"],
        Some(" padded-Passw0rd \r\n"),
    );
    assert_eq!(status(&output), 0);
    let warnings = stderr(&output);
    for expected in [
        "starts with a space",
        "ends with a space",
        "send it exactly",
    ] {
        assert!(warnings.contains(expected), "{expected:?} in {warnings}");
    }
    // Invisible characters inside the password are named too, for `passwd` as for `add`.
    let output = cli_in(
        &dir.0,
        &["accounts", "passwd", "a@example.test", "--password-stdin"],
        Some("pass\u{200B}word-123\n"),
    );
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("zero-width space (U+200B"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_64() {
    let output = std::process::Command::new(BINARY)
        .args(["frobnicate"])
        .output()
        .unwrap();
    assert_eq!(status(&output), 64);
    // "check" as the argument of another command is not the `check` command (status 2).
    for (args, unexpected) in [
        (&["config", "check", "--bogus"][..], "'--bogus'"),
        (&["queue", "check", "--bogus"], "'--bogus'"),
        (&["serve", "--config", "check", "-x"], "'-x'"),
    ] {
        let output = std::process::Command::new(BINARY)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(status(&output), 64, "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(unexpected), "{}", stderr(&output));
    }
    let output = std::process::Command::new(BINARY)
        .args(["--help"])
        .output()
        .unwrap();
    assert_eq!(status(&output), 0);
    assert!(stdout(&output).contains("serve"));
}

#[test]
fn config_example_is_valid_and_bad_config_is_refused_with_file_and_line() {
    let dir = TempDir::new("config");
    let example = std::process::Command::new(BINARY)
        .args(["config", "example"])
        .output()
        .unwrap();
    assert_eq!(status(&example), 0);
    let path = dir.0.join("example.toml");
    std::fs::write(&path, &example.stdout).unwrap();
    let check = std::process::Command::new(BINARY)
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(status(&check), 0, "{}", stderr(&check));

    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        "hostname = \"mail.example.test\"\n\n[limits]\nmax_recipients = 10\nmax_rcpt = 5\n",
    )
    .unwrap();
    let refused = std::process::Command::new(BINARY)
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(status(&refused), 78, "EX_CONFIG");
    let message = stderr(&refused);
    assert!(
        message.contains(&format!("{}:5:", bad.display())),
        "{message}"
    );
    assert!(message.contains("max_rcpt"), "{message}");
}

#[test]
fn queue_on_an_empty_spool_and_a_missing_message() {
    let dir = TempDir::new("queue");
    let listed = cli_in(&dir.0, &["queue", "list", "--json"], None);
    assert_eq!(status(&listed), 0);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(),
        serde_json::json!([])
    );
    let missing = cli_in(&dir.0, &["queue", "show", "0000000100000000"], None);
    assert_eq!(status(&missing), 66, "EX_NOINPUT");
    for verb in ["show", "hold", "release", "retry", "delete", "bounce"] {
        let missing = cli_in(&dir.0, &["queue", verb, "00000001000000ab"], None);
        assert_eq!(status(&missing), 66, "{verb}: {}", stderr(&missing));
        let malformed = cli_in(&dir.0, &["queue", verb, "12345"], None);
        assert_eq!(status(&malformed), 65, "{verb}: EX_DATAERR");
        assert!(
            stderr(&malformed).contains("a queue id is 16 hex digits"),
            "{verb}: {}",
            stderr(&malformed)
        );
    }
}

#[test]
fn a_missing_account_is_named_with_where_to_look() {
    let dir = TempDir::new("ghost");
    let data = dir.0.join("data");
    cli_in_ok(
        &data,
        &["accounts", "add", "alice@example.com", "--password-stdin"],
        Some("pw-123456789\n"),
    );
    let disabled = cli_in(&data, &["accounts", "disable", "ghost@example.com"], None);
    assert_eq!(status(&disabled), 67, "EX_NOUSER");
    assert_eq!(
        stderr(&disabled).trim_end(),
        "portcullis: no account ghost@example.com (see `portcullis accounts list`)"
    );
}

#[test]
fn diagnostic_commands_do_not_offer_server_options() {
    for command in ["explain", "check", "bench", "completions", "man"] {
        let help = std::process::Command::new(BINARY)
            .args(["help", command])
            .output()
            .unwrap();
        assert_eq!(status(&help), 0, "{command}");
        let text = stdout(&help);
        assert!(
            !text.contains("--config") && !text.contains("--data-dir"),
            "{command}: {text}"
        );
    }
    let refused = std::process::Command::new(BINARY)
        .args(["explain", "535", "--config", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(status(&refused), 64, "{}", stderr(&refused));
    for command in [
        &["serve"][..],
        &["queue", "list"],
        &["config", "check"],
        &["domains", "list"],
    ] {
        let help = std::process::Command::new(BINARY)
            .arg("help")
            .args(command)
            .output()
            .unwrap();
        assert!(
            stdout(&help).contains("--data-dir <DIR>"),
            "{command:?}: {}",
            stdout(&help)
        );
    }
}

#[test]
fn completions_are_generated_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = std::process::Command::new(BINARY)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(status(&output), 0, "{shell}: {}", stderr(&output));
        let script = stdout(&output);
        for name in ["serve", "accounts", "queue", "explain", "completions"] {
            assert!(script.contains(name), "{shell} lacks {name}");
        }
    }
    let bash = stdout(
        &std::process::Command::new(BINARY)
            .args(["completions", "bash"])
            .output()
            .unwrap(),
    );
    assert!(bash.contains("complete -F _portcullis"), "{bash}");
    let unknown = std::process::Command::new(BINARY)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(status(&unknown), 64);
}

#[test]
fn the_man_page_is_roff_with_every_command_and_the_exit_statuses() {
    let output = std::process::Command::new(BINARY)
        .arg("man")
        .output()
        .unwrap();
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.starts_with(".TH"), "{page}");
    for text in [
        "serve",
        "accounts",
        "queue",
        "EXIT STATUS",
        "\\fB71\\fR\noperating system error",
    ] {
        assert!(page.contains(text), "the page lacks {text}");
    }
    // Rendered by man(1) when it is installed, without a warning.
    let Ok(mut man) = std::process::Command::new("man")
        .args(["--warnings", "-l", "-"])
        .env("MANWIDTH", "80")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        return;
    };
    std::io::Write::write_all(&mut man.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let rendered = man.wait_with_output().unwrap();
    assert_eq!(status(&rendered), 0, "{}", stderr(&rendered));
    assert_eq!(stderr(&rendered), "", "man warns");
    assert!(stdout(&rendered).contains("serve"));
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let server = Server::start("lock", Options::default());
    let second = std::process::Command::new(BINARY)
        .args(["serve", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert_eq!(status(&second), 73, "{}", stderr(&second));
    assert!(stderr(&second).contains("in use by another running portcullis"));
}

#[test]
fn aliases_grants_and_can_send_explain_every_rule() {
    let dir = TempDir::new("can-send");
    let data = dir.0.join("data");
    let add = cli_in(
        &data,
        &["accounts", "add", "alice@example.test", "--password-stdin"],
        Some("pw-123456789\n"),
    );
    assert!(
        stdout(&add).contains("Created domain example.test for it."),
        "{}",
        stdout(&add)
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "alias",
                "add",
                "alice@example.test",
                "sales@example.test"
            ],
            None
        )),
        0
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "grant",
                "alice@example.test",
                "@news.example.test"
            ],
            None
        )),
        0
    );
    let decide = |address: &str| {
        stdout(&cli_in(
            &data,
            &["accounts", "can-send", "alice@example.test", address],
            None,
        ))
    };
    assert!(decide("Alice@Example.test").contains("allowed: it is the account's own address"));
    assert!(decide("sales@example.test").contains("allowed: it is an alias of the account"));
    assert!(
        decide("anyone@news.example.test")
            .contains("allowed: the account was granted @news.example.test")
    );
    assert!(decide("ceo@example.test").contains("refused (553 5.7.1)"));
    let show = cli_in_ok(&data, &["accounts", "show", "alice@example.test"], None);
    assert!(
        show.contains("aliases: sales@example.test")
            && show.contains("granted domains: @news.example.test"),
        "{show}"
    );
    assert!(show.contains("last login: never"), "{show}");
    assert!(show.contains("recent failed logins: none"), "{show}");
    assert!(!show.contains("locked:"), "{show}");
    // Unlocking an account without locks is harmless; an unknown account is 67.
    let unlocked = cli_in_ok(&data, &["accounts", "unlock", "alice@example.test"], None);
    assert!(unlocked.contains("cleared 0 lock(s)"), "{unlocked}");
    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "unlock", "nobody@example.test"],
            None
        )),
        67
    );
    // An alias belongs to one account only.
    cli_in_ok(
        &data,
        &["accounts", "add", "bob@example.test", "--password-stdin"],
        Some("pw-654321987\n"),
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "alias",
                "add",
                "bob@example.test",
                "sales@example.test"
            ],
            None
        )),
        73
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "can-send",
                "nobody@example.test",
                "x@example.test"
            ],
            None
        )),
        67
    );
    let domains = cli_in_ok(&data, &["domains", "list"], None);
    assert!(domains.starts_with("example.test\tcreated "), "{domains}");
    assert_eq!(
        status(&cli_in(
            &data,
            &["domains", "add", "other.test", "--host", "box.other.test"],
            None
        )),
        0
    );
    assert!(
        cli_in_ok(&data, &["domains", "list"], None).contains("other.test\thost box.other.test")
    );
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn domains_add_checks_a_certificate_before_storing_its_paths() {
    let dir = TempDir::new("domain-certificates");
    let data = dir.0.join("data");
    let (chain, key) = write_certificate(&dir.0, "a", &["a.test", "box.a.test"]);
    let (_, other_key) = write_certificate(&dir.0, "other", &["other.test"]);
    let add = |args: &[&str]| cli_in(&data, &[&["domains", "add"], args].concat(), None);

    let mismatched = add(&["a.test", "--cert", text(&chain), "--key", text(&other_key)]);
    assert_eq!(status(&mismatched), 65, "{}", stderr(&mismatched));
    assert_eq!(
        stderr(&mismatched),
        format!(
            "portcullis: {}: the private key does not match the certificate in {} (its first certificate must be the server's own)\n",
            text(&other_key),
            text(&chain)
        )
    );
    let missing = dir.0.join("missing.pem");
    let absent = add(&["a.test", "--cert", text(&missing), "--key", text(&key)]);
    assert_eq!(status(&absent), 66, "{}", stderr(&absent));
    assert!(
        stderr(&absent).starts_with(&format!("portcullis: {}: ", text(&missing))),
        "{}",
        stderr(&absent)
    );
    assert_eq!(status(&add(&["a.test", "--cert", text(&chain)])), 64);
    assert_eq!(cli_in_ok(&data, &["domains", "list"], None), "");

    // Stored as given when absolute, symbolic links kept: a renewal that repoints the link
    // (certbot's live/ directory) is followed.
    let link = dir.0.join("live.pem");
    std::os::unix::fs::symlink(&chain, &link).unwrap();
    let added = add(&[
        "a.test",
        "--host",
        "box.a.test",
        "--cert",
        text(&link),
        "--key",
        text(&key),
    ]);
    assert_eq!(status(&added), 0, "{}", stderr(&added));
    assert_eq!(stderr(&added), "");
    assert!(
        stdout(&added).starts_with(&format!(
            "Added domain a.test: served by box.a.test, certificate {} (key {}).\n",
            text(&link),
            text(&key)
        )),
        "{}",
        stdout(&added)
    );
    assert!(
        cli_in_ok(&data, &["domains", "list"], None).starts_with(&format!(
            "a.test\thost box.a.test\tcertificate {}\tcreated ",
            text(&link)
        ))
    );

    // Names the certificate does not cover (the domain, the host it already has): warnings.
    assert_eq!(status(&add(&["b.test", "--host", "box.b.test"])), 0);
    let uncovered = add(&["b.test", "--cert", text(&chain), "--key", text(&key)]);
    assert_eq!(status(&uncovered), 0, "{}", stderr(&uncovered));
    let warning = |name: &str| {
        format!(
            "warning: {} is not valid for {name}: clients that connect to {name} will refuse it\n",
            text(&chain)
        )
    };
    assert_eq!(
        stderr(&uncovered),
        warning("b.test") + &warning("box.b.test")
    );
    assert!(
        stdout(&uncovered).starts_with(&format!(
            "Updated domain b.test: certificate {} (key {}).\n",
            text(&chain),
            text(&key)
        )),
        "{}",
        stdout(&uncovered)
    );
    assert_eq!(
        stdout(&add(&["b.test"])),
        "Domain b.test exists already; nothing to change.\n"
    );
}

#[test]
fn app_passwords_are_shown_once_listed_without_secrets_and_revocable() {
    let dir = TempDir::new("app-passwords");
    let data = dir.0.join("data");
    cli_in_ok(
        &data,
        &["accounts", "add", "alice@example.test", "--password-stdin"],
        Some("pw-123456789\n"),
    );
    let added = cli_in_ok(
        &data,
        &[
            "accounts",
            "app-password",
            "add",
            "alice@example.test",
            "phone",
        ],
        None,
    );
    let secret = added
        .split_whitespace()
        .find(|w| w.starts_with("pcap_"))
        .unwrap_or_else(|| panic!("{added}"));
    let listed = stdout(&cli_in(
        &data,
        &["accounts", "app-password", "list", "alice@example.test"],
        None,
    ));
    assert!(
        listed.starts_with("phone\tcreated ")
            && listed.contains("active")
            && !listed.contains(secret),
        "{listed}"
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "app-password",
                "add",
                "alice@example.test",
                "phone"
            ],
            None
        )),
        73
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "app-password",
                "revoke",
                "alice@example.test",
                "phone"
            ],
            None
        )),
        0
    );
    assert!(
        stdout(&cli_in(
            &data,
            &["accounts", "app-password", "list", "alice@example.test"],
            None
        ))
        .contains("revoked")
    );
    assert_eq!(
        status(&cli_in(
            &data,
            &[
                "accounts",
                "app-password",
                "revoke",
                "alice@example.test",
                "phone"
            ],
            None
        )),
        67
    );
}

/// `openssl x509 -text` of a PEM file, or `None` without openssl.
fn x509_text(certificate: &Path) -> Option<String> {
    let output = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(certificate)
        .output()
        .ok()?;
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    // OpenSSL 1.1 and 3 write "CN = NAME", older ones "CN=NAME".
    Some(stdout(&output).replace("CN = ", "CN="))
}

#[test]
fn the_default_server_generates_a_certificate_for_a_tls_server_and_renews_an_old_one() {
    let mut server = Server::start(
        "generated-cert",
        Options {
            log: Some("info"),
            ..Options::default()
        },
    );
    let pem = std::fs::read_to_string(server.certificate()).unwrap();
    if let Some(text) = x509_text(&server.certificate()) {
        for expected in [
            "Subject: CN=mail.example.test",
            "DNS:mail.example.test, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            "Digital Signature",
            "TLS Web Server Authentication",
            "CA:FALSE",
            "id-ecPublicKey",
        ] {
            assert!(text.contains(expected), "no {expected:?} in\n{text}");
        }
        assert_eq!(text.matches("DNS:localhost").count(), 1, "{text}");
    }
    // Kept across a restart; an old-style certificate (rcgen's defaults) is replaced, with why.
    server.kill();
    server.launch();
    assert_eq!(std::fs::read_to_string(server.certificate()).unwrap(), pem);
    server.kill();
    let old = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).unwrap();
    std::fs::write(server.certificate(), old.cert.pem()).unwrap();
    std::fs::write(
        server.data_dir().join("tls/key.pem"),
        old.key_pair.serialize_pem(),
    )
    .unwrap();
    server.launch();
    let log = server.log();
    assert!(
        log.contains("renewed the generated certificate")
            && log.contains("made for \"rcgen self signed cert\""),
        "{log}"
    );
    let renewed = std::fs::read_to_string(server.certificate()).unwrap();
    assert_ne!(renewed, old.cert.pem());
    if let Some(text) = x509_text(&server.certificate()) {
        assert!(text.contains("Subject: CN=mail.example.test"), "{text}");
    }
}

/// `portcullis ARGS` with its standard output a pipe whose reader is already gone, as when
/// `head -1` has read its line and exited: the exit status and standard error.
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(BINARY)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (output.status, stderr(&output))
}

#[test]
fn a_closed_pipe_ends_every_command_by_sigpipe_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("sigpipe");
    let data = dir.0.join("data");
    cli_in_ok(
        &data,
        &["accounts", "add", "alice@example.com", "--password-stdin"],
        Some("pw-123456789\n"),
    );
    let data = data.to_str().unwrap();
    for args in [
        &["queue", "list", "--data-dir", data][..],
        &["queue", "list", "--json", "--data-dir", data],
        &["accounts", "show", "alice@example.com", "--data-dir", data],
        &["accounts", "list", "--data-dir", data],
        &["config", "example"],
        &["man"],
    ] {
        let (status, stderr) = with_closed_stdout(args);
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {status} {stderr}"
        );
        assert_eq!(stderr, "", "{args:?}");
    }
}
