//! The provisioning CSV end to end: `accounts provision`, `accounts import`, `accounts export`,
//! and the accounts of a provisioned file logging in with smtplib on another server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{Options, Server, TempDir, cli_in, cli_in_checked, status, stderr, stdout};

const GOOD: &str = "Str0ng-Passw0rd";

fn run(data: &Path, args: &[&str]) -> Output {
    cli_in(data, args, None)
}

fn ok(data: &Path, args: &[&str]) -> Output {
    cli_in_checked(data, args, None)
}

fn accounts(data: &Path) -> Vec<String> {
    stdout(&ok(data, &["accounts", "list"]))
        .lines()
        .map(|line| line.split('\t').next().unwrap().to_string())
        .collect()
}

/// A data directory with example.test served by mail.example.test and one existing account.
fn prepared(dir: &TempDir) -> std::path::PathBuf {
    let data = dir.0.join("data");
    ok(
        &data,
        &[
            "domains",
            "add",
            "example.test",
            "--host",
            "mail.example.test",
        ],
    );
    let added = cli_in(
        &data,
        &["accounts", "add", "keep@example.test", "--password-stdin"],
        Some("Keep-Passw0rd-1\n"),
    );
    assert_eq!(status(&added), 0, "{}", stderr(&added));
    data
}

fn write(dir: &TempDir, name: &str, content: &str) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn fifty_provisioned_mailboxes_import_into_a_second_data_dir_and_all_log_in_with_smtplib() {
    // Provision on one data directory...
    let first = TempDir::new("provision-origin");
    let origin = first.0.join("data");
    let file = first.0.join("m.csv");
    let file_name = file.to_str().unwrap();
    let provisioned = ok(
        &origin,
        &[
            "accounts",
            "provision",
            "example.test",
            "--count",
            "50",
            "--out",
            file_name,
            "--host",
            "mail.example.test",
        ],
    );
    assert!(
        stdout(&provisioned)
            .contains("Created 50 accounts (mbox0001@example.test ... mbox0050@example.test)"),
        "{}",
        stdout(&provisioned)
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // ...import on a second one, the data directory of a running server...
    let server = Server::start("provision-target", Options::default());
    let target = server.data_dir();
    ok(
        &target,
        &[
            "domains",
            "add",
            "example.test",
            "--host",
            "mail.example.test",
        ],
    );
    let imported = ok(&target, &["accounts", "import", file_name]);
    assert!(
        stdout(&imported).contains("Imported 50 accounts from")
            && stdout(&imported).contains("50 created, 0 updated"),
        "{}",
        stdout(&imported)
    );
    assert_eq!(accounts(&target).len(), 50);

    // ...and every mailbox logs in there with the password from the file.
    let result = login_all(&server, file_name);
    assert_eq!(result["rows"], 50, "{result}");
    assert_eq!(result["failed"], serde_json::json!([]), "{result}");
    assert_eq!(result["ok"], 50, "{result}");
    assert_eq!(result["hosts"], serde_json::json!(["mail.example.test"]));
    // The embedded default's STARTTLS listener is on 2587.
    assert_eq!(result["ports"], serde_json::json!(["2587"]));
}

#[test]
fn import_is_all_or_nothing_when_one_row_is_bad() {
    let dir = TempDir::new("import-atomic");
    let data = prepared(&dir);
    let bad = write(
        &dir,
        "bad.csv",
        &format!(
            "host,port,username,password\r\n\
             mail.example.test,587,a@example.test,{GOOD}\r\n\
             mail.example.test,587,keep@example.test,{GOOD}\r\n\
             mail.example.test,587,b@example.test,weak\r\n\
             mail.example.test,587,c@example.test,{GOOD}\r\n"
        ),
    );
    let refused = run(&data, &["accounts", "import", &bad]);
    assert_eq!(status(&refused), 65, "EX_DATAERR: {}", stderr(&refused));
    let message = stderr(&refused);
    assert!(
        message.contains(&format!(
            "{bad}:4: error: weak password for b@example.test: it has 4 characters"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!("{bad}: 1 bad row; nothing was imported")),
        "{message}"
    );
    assert_eq!(accounts(&data), ["keep@example.test"]);

    let good = write(
        &dir,
        "good.csv",
        &std::fs::read_to_string(&bad)
            .unwrap()
            .replace(",weak", &format!(",{GOOD}")),
    );
    let imported = ok(&data, &["accounts", "import", &good]);
    assert!(
        stdout(&imported).contains("Imported 4 accounts")
            && stdout(&imported).contains("3 created, 1 updated"),
        "{}",
        stdout(&imported)
    );
    assert_eq!(
        accounts(&data),
        [
            "a@example.test",
            "b@example.test",
            "c@example.test",
            "keep@example.test"
        ]
    );
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let dir = TempDir::new("import-dry-run");
    let data = prepared(&dir);
    let file = write(
        &dir,
        "m.csv",
        &format!(
            "\u{FEFF}Username,Password,Host,Port,Plan\n\
             new@example.test,{GOOD},mail.example.test,587,basic\n\
             KEEP@example.test,{GOOD},Mail.Example.Test,465,basic\n\
             x@fresh.test,{GOOD},mail.fresh.test,587,basic\n"
        ),
    );
    // Without --create-domains the unknown domain is an error, also in a dry run.
    let refused = run(&data, &["accounts", "import", "--dry-run", &file]);
    assert_eq!(status(&refused), 65);
    assert!(
        stderr(&refused).contains(&format!(
            "{file}:4: error: domain fresh.test not found; add it with `portcullis domains add fresh.test` or pass --create-domains"
        )),
        "{}",
        stderr(&refused)
    );
    let checked = ok(
        &data,
        &["accounts", "import", "--dry-run", "--create-domains", &file],
    );
    assert!(
        stdout(&checked).contains(
            "3 valid rows; an import would create 2 accounts, replace the password of 1, and create the domain fresh.test. Nothing was changed (--dry-run)."
        ),
        "{}",
        stdout(&checked)
    );
    assert_eq!(accounts(&data), ["keep@example.test"]);
    assert!(!stdout(&ok(&data, &["domains", "list"])).contains("fresh.test"));

    ok(&data, &["accounts", "import", "--create-domains", &file]);
    assert_eq!(
        accounts(&data),
        ["keep@example.test", "new@example.test", "x@fresh.test"]
    );
}

#[test]
fn every_bad_row_is_reported_with_its_line_and_reason() {
    let dir = TempDir::new("import-errors");
    let data = prepared(&dir);
    let file = write(
        &dir,
        "m.csv",
        &format!(
            "host,port,username,password\n\
             mail.example.test,587,no-at-sign,{GOOD}\n\
             mail.example.test,587,a@example.test,{GOOD}\n\
             mail.example.test,587,A@example.test,{GOOD}\n\
             smtp.elsewhere.test,587,b@example.test,{GOOD}\n\
             mail.example.test,25,c@example.test,{GOOD}\n\
             mail.example.test,587,d@example.test,\n\
             mail.example.test,587,e@example.test,abcdefghijklmnopq\n\
             mail.example.test,587,f@example.test,un,quoted,{GOOD}\n\
             mail.example.test,587,g@example.test,\"{GOOD},quoted\"\n"
        ),
    );
    let refused = run(&data, &["accounts", "import", &file]);
    assert_eq!(status(&refused), 65);
    let message = stderr(&refused);
    for (line, reason) in [
        (2, "username \"no-at-sign\" is not a valid email address"),
        (
            4,
            "duplicate row: username a@example.test already appears on line 3",
        ),
        (
            5,
            "host smtp.elsewhere.test does not match mail.example.test, the host configured for domain example.test",
        ),
        (6, "port 25 is not a submission port"),
        (7, "the password of d@example.test is empty"),
        (
            8,
            "weak password for e@example.test: it consists of lower-case letters only",
        ),
        (9, "the row has 6 fields but the header has 4"),
    ] {
        assert!(
            message.contains(&format!("{file}:{line}: error: {reason}")),
            "line {line}: {message}"
        );
    }
    assert!(
        message.contains(&format!("{file}: 7 bad rows; nothing was imported")),
        "{message}"
    );
    assert!(
        !message.contains(":3: error") && !message.contains(":10: error"),
        "{message}"
    );
    assert_eq!(accounts(&data), ["keep@example.test"]);

    let missing = run(
        &data,
        &[
            "accounts",
            "import",
            &dir.0.join("none.csv").to_string_lossy(),
        ],
    );
    assert_eq!(status(&missing), 66, "EX_NOINPUT");
    let headerless = write(
        &dir,
        "h.csv",
        &format!("mail.example.test,587,a@example.test,{GOOD}\n"),
    );
    let refused = run(&data, &["accounts", "import", &headerless]);
    assert_eq!(status(&refused), 65);
    assert!(
        stderr(&refused).contains(&format!(
            "{headerless}:1: error: the header lacks the columns host, port, username, password"
        )),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn passwords_with_whitespace_or_invisible_characters_are_imported_with_a_warning() {
    let server = Server::start("import-warnings", Options::default());
    let data = server.data_dir();
    ok(
        &data,
        &[
            "domains",
            "add",
            "example.test",
            "--host",
            "mail.example.test",
        ],
    );
    let rows = [
        format!("mail.example.test,587,a@example.test,\"{GOOD} \"\r\n"),
        format!("mail.example.test,587,b@example.test,{GOOD}\u{00A0}\r\n"),
        format!("mail.example.test,587,c@example.test,{GOOD}\u{200B}\r\n"),
        format!("mail.example.test,587,d@example.test,{GOOD}\r\r\n"),
        format!("mail.example.test,587,e@example.test,{GOOD}\r\n"),
    ];
    let header = "host,port,username,password\r\n";
    let file = write(&server.dir, "m.csv", &format!("{header}{}", rows.concat()));
    let imported = ok(&data, &["accounts", "import", &file]);
    let message = stderr(&imported);
    for (line, warning) in [
        (2, "the password ends with a space (user a@example.test)"),
        (3, "the password ends with a no-break space (U+00A0"),
        (4, "the password ends with a zero-width space (U+200B"),
        (
            5,
            "the password ends with a carriage return (\\r) (user d@example.test)",
        ),
    ] {
        assert!(
            message.contains(&format!("{file}:{line}: warning: {warning}")),
            "line {line}: {message}"
        );
    }
    assert!(!message.contains(":6:"), "{message}");
    assert!(message.contains("535 5.7.8"), "{message}");
    assert!(
        stdout(&imported).contains("5 created, 0 updated (new password), with 4 warnings"),
        "{}",
        stdout(&imported)
    );

    // The passwords were imported exactly as written: each logs in with its invisible
    // character. (The CR row is left out: Python's csv module reads a lone CR as a line end.)
    let logins = write(
        &server.dir,
        "logins.csv",
        &format!("{header}{}{}{}{}", rows[0], rows[1], rows[2], rows[4]),
    );
    let result = login_all(&server, &logins);
    assert_eq!(result["ok"], 4, "{result}");
}

/// Logs in every mailbox of a CSV with smtplib against `server` (tests/clients/login_all.py).
fn login_all(server: &Server, file: &str) -> serde_json::Value {
    let port = server.submission.port().to_string();
    let cafile = server.certificate();
    let (ok, stdout, stderr) = common::python_script(
        "login_all.py",
        &[
            "--port",
            &port,
            "--cafile",
            cafile.to_str().unwrap(),
            "--csv",
            file,
        ],
    );
    assert!(ok, "login_all.py: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}"))
}

#[test]
fn provision_writes_a_private_file_of_n_rows_and_never_overwrites_by_accident() {
    let dir = TempDir::new("provision");
    let data = prepared(&dir);
    let out = dir.0.join("boxes.csv");
    let out_name = out.to_str().unwrap();
    // The domain's configured host is the default for the host column.
    ok(
        &data,
        &[
            "accounts",
            "provision",
            "example.test",
            "--count",
            "3",
            "--out",
            out_name,
            "--port",
            "465",
        ],
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "host,port,username,password");
    for (n, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(
            fields[..3],
            [
                "mail.example.test",
                "465",
                &format!("mbox{:04}@example.test", n + 1)
            ]
        );
        assert_eq!(fields[3].len(), 24, "{line}");
    }
    assert_eq!(accounts(&data).len(), 4);

    // An existing file is refused before anything is created.
    let refused = run(
        &data,
        &[
            "accounts",
            "provision",
            "example.test",
            "--count",
            "2",
            "--prefix",
            "extra",
            "--out",
            out_name,
        ],
    );
    assert_eq!(status(&refused), 73, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("exists; nothing was done (pass --force to replace it)"));
    assert_eq!(accounts(&data).len(), 4);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

    // Existing accounts are refused too, whole.
    let refused = run(
        &data,
        &[
            "accounts",
            "provision",
            "example.test",
            "--count",
            "5",
            "--out",
            out_name,
            "--force",
        ],
    );
    assert_eq!(status(&refused), 73);
    assert!(stderr(&refused).contains("3 of these accounts exist already (mbox0001@example.test, mbox0002@example.test, mbox0003@example.test)"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);

    // A host that contradicts the domain's configured host would make a file that cannot import.
    let refused = run(
        &data,
        &[
            "accounts",
            "provision",
            "example.test",
            "--count",
            "1",
            "--prefix",
            "x",
            "--host",
            "other.test",
            "--out",
            &dir.0.join("x.csv").to_string_lossy(),
        ],
    );
    assert_eq!(status(&refused), 65);
    assert!(!dir.0.join("x.csv").exists());

    // --force replaces the file, still 0600; a new domain is created and gets the server's name.
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let replaced = ok(
        &data,
        &[
            "accounts",
            "provision",
            "New.test",
            "--count",
            "2",
            "--prefix",
            "team",
            "--out",
            out_name,
            "--force",
        ],
    );
    assert!(
        stdout(&replaced).contains("Created domain new.test."),
        "{}",
        stdout(&replaced)
    );
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(",2587,team0001@new.test,") && text.contains(",2587,team0002@new.test,"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3);
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
}

#[test]
fn export_writes_host_port_username_of_enabled_accounts_without_passwords() {
    let dir = TempDir::new("export");
    let data = prepared(&dir);
    let file = write(
        &dir,
        "m.csv",
        &format!(
            "host,port,username,password\n\
             mail.example.test,587,a@example.test,{GOOD}\n\
             mail.example.test,587,off@example.test,{GOOD}\n\
             anything.test,587,z@plain.test,{GOOD}\n"
        ),
    );
    ok(&data, &["accounts", "import", "--create-domains", &file]);
    ok(&data, &["accounts", "disable", "off@example.test"]);
    let out = dir.0.join("export.csv");
    let out_name = out.to_str().unwrap();
    let exported = ok(&data, &["accounts", "export", "--out", out_name]);
    assert!(
        stdout(&exported).contains("Exported 3 enabled accounts"),
        "{}",
        stdout(&exported)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    // plain.test has no configured host: the server's host name (here the system's) is used.
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    // The port is the embedded default's STARTTLS listener's, 2587.
    assert_eq!(
        lines[..3],
        [
            "host,port,username",
            "mail.example.test,2587,a@example.test",
            "mail.example.test,2587,keep@example.test"
        ],
        "{text}"
    );
    assert!(lines[3].ends_with(",2587,z@plain.test"), "{text}");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(!text.contains(GOOD));

    assert_eq!(
        status(&run(&data, &["accounts", "export", "--out", out_name])),
        73
    );
    let only = ok(
        &data,
        &[
            "accounts",
            "export",
            "--out",
            "-",
            "--domain",
            "example.test",
            "--port",
            "587",
        ],
    );
    assert_eq!(
        stdout(&only),
        "host,port,username\r\nmail.example.test,587,a@example.test\r\nmail.example.test,587,keep@example.test\r\n"
    );
    assert_eq!(
        status(&run(
            &data,
            &["accounts", "export", "--out", "-", "--domain", "nope.test"]
        )),
        67
    );
    let odd_port = run(&data, &["accounts", "export", "--out", "-", "--port", "25"]);
    assert_eq!(status(&odd_port), 64);
    assert!(
        stderr(&odd_port).contains("--port 25 is not a submission port an import accepts"),
        "{}",
        stderr(&odd_port)
    );
}

#[test]
fn a_refused_import_into_a_fresh_data_dir_says_it_once_and_leaves_nothing_behind() {
    let dir = TempDir::new("import-fresh");
    let data = dir.0.join("data");
    let mut text = String::from("host,port,username,password\r\n");
    for n in 1..=200 {
        text.push_str(&format!(
            "mail.example.test,587,m{n}@example.test,{GOOD}\r\n"
        ));
    }
    let file = write(&dir, "m.csv", &text);
    let refused = run(&data, &["accounts", "import", &file]);
    assert_eq!(status(&refused), 65);
    let message = stderr(&refused);
    assert_eq!(
        message.matches("not found").count(),
        1,
        "one line for the domain: {message}"
    );
    assert!(
        message.contains(&format!(
            "{file}:2: error: domain example.test not found (200 rows, the first here)"
        )) && message.contains(&format!("{file}: 200 bad rows; nothing was imported")),
        "{message}"
    );
    assert!(!data.exists(), "the data directory was not created");

    // A dry run leaves nothing either; a real import creates the store.
    let dry = run(
        &data,
        &["accounts", "import", "--dry-run", "--create-domains", &file],
    );
    assert_eq!(status(&dry), 0, "{}", stderr(&dry));
    assert!(!data.exists());
    ok(&data, &["accounts", "import", "--create-domains", &file]);
    assert_eq!(accounts(&data).len(), 200);

    // A semicolon-separated file (a European spreadsheet's "CSV") is named as such.
    let semicolons = write(
        &dir,
        "s.csv",
        &format!("host;port;username;password\r\nmail.example.test;587;a@example.test;{GOOD}\r\n"),
    );
    let refused = run(&data, &["accounts", "import", &semicolons]);
    assert_eq!(status(&refused), 65);
    assert!(
        stderr(&refused).contains("the file is separated by semicolons"),
        "{}",
        stderr(&refused)
    );
}
