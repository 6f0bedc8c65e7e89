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
        Some("new secret\n"),
    );
    assert_eq!(status(&passwd), 0, "{}", stderr(&passwd));
    assert_eq!(
        status(&cli_in(
            &data,
            &["accounts", "passwd", "zed@example.test", "--password-stdin"],
            Some("x\n")
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
        Some(" padded \r\n"),
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
        Some("pass\u{200B}word-1\n"),
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
        (&["--config", "check", "serve", "-x"], "'-x'"),
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
        Some("pw-123456\n"),
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
        Some("pw-654321\n"),
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
        Some("pw-123456\n"),
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
