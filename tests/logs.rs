//! The log an admin reads: one line per connection and its end, per refusal, per accepted
//! message and per TLS failure, from the real binary; and the fail2ban filter in
//! contrib/fail2ban run by the real `fail2ban-regex` over that log.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Options, Raw, Server, smtplib, wait_until};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";

fn server() -> Server {
    let server = Server::start(
        "logs",
        Options {
            log: Some("info"),
            ..Options::default()
        },
    );
    server.add_account(USER, PASSWORD);
    server
}

/// The log lines naming `client=ADDRESS` (followed by a space or the end of the line).
fn lines_of(log: &str, client: SocketAddr) -> Vec<String> {
    let field = format!("client={client}");
    log.lines()
        .filter(|line| line.split(' ').any(|word| word == field))
        .map(str::to_string)
        .collect()
}

/// Waits until the connection from `client` has its disconnect line; returns its lines.
fn finished(server: &Server, client: SocketAddr) -> Vec<String> {
    let done = wait_until(Duration::from_secs(10), || {
        lines_of(&server.log(), client)
            .iter()
            .any(|line| line.contains(" disconnect "))
    });
    assert!(done, "no disconnect line for {client}:\n{}", server.log());
    lines_of(&server.log(), client)
}

/// The line containing `needle`, which must be there.
fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
}

fn local(raw: &Raw) -> SocketAddr {
    raw.writer().local_addr().unwrap()
}

/// True when the server ends the connection (EOF, or a reset when it left bytes unread) within
/// the read timeout, having sent nothing more.
fn gone(raw: &Raw) -> bool {
    use std::io::Read;
    let mut stream = raw.writer();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_session_refused_with_530_logs_connect_refusal_and_disconnect() {
    let server = server();
    let mut raw = Raw::connect(server.submission);
    let client = local(&raw);
    raw.expect("220 ");
    raw.send(b"EHLO client.example\r\n");
    raw.expect("250 ");
    raw.send(b"MAIL FROM:<alice@example.test>\r\n");
    raw.expect("530 5.7.0");
    raw.send(b"QUIT\r\n");
    raw.expect("221 ");
    assert!(raw.closed());

    let lines = finished(&server, client);
    let listener = format!("listener={}", server.submission);
    let connect = line_with(&lines, " INFO connect ");
    assert!(
        connect.ends_with(&format!("connect client={client} {listener}")),
        "{connect}"
    );
    let reject = line_with(&lines, " reject ");
    assert!(
        reject.contains(&format!(
            " INFO reject client={client} command=MAIL code=530 status=5.7.0 \
             reply=\"Must issue a STARTTLS command first"
        )),
        "{reject}"
    );
    let disconnect = line_with(&lines, " disconnect ");
    assert!(
        disconnect.contains(&format!(
            " INFO disconnect client={client} {listener} duration="
        )),
        "{disconnect}"
    );
    assert!(
        disconnect.ends_with("s ehlo=1 mail=1 quit=1 commands=3"),
        "{disconnect}"
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");
}

#[test]
fn an_accepted_message_logs_its_queue_id_sender_size_user_and_tls() {
    let server = server();
    let port = server.submission.port().to_string();
    let report = smtplib(
        &server,
        &[
            "--port",
            &port,
            "--mode",
            "starttls",
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--from",
            USER,
            "--to",
            "bob@example.org",
            "--to",
            "carol@example.org",
        ],
    );
    assert_eq!(report["data"][0], 250, "{report}");
    let text = report["data"][1].as_str().unwrap();
    let id = text.rsplit(' ').next().unwrap();

    wait_until(Duration::from_secs(10), || {
        server.log().contains(" disconnect ") && server.log().contains(" queued ")
    });
    let log = server.log();
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    let queued = line_with(&lines, " queued ");
    assert!(
        queued.contains(&format!(" INFO queued id={id} client=127.0.0.1:")),
        "{queued}"
    );
    assert!(
        queued.contains(&format!(
            " user=\"{USER}\" from=\"{USER}\" recipients=2 size="
        )),
        "{queued}"
    );
    assert!(queued.contains(" tls=TLSv1.3 cipher=TLS13_"), "{queued}");
    let disconnect = line_with(&lines, " disconnect ");
    assert!(
        disconnect.contains(" tls=TLSv1.3 cipher=TLS13_"),
        "{disconnect}"
    );
    assert!(
        disconnect.ends_with("s ehlo=2 starttls=1 auth=1 mail=1 rcpt=2 data=1 quit=1 commands=9"),
        "{disconnect}"
    );
}

#[test]
fn tls_failures_name_the_client_and_the_likely_cause() {
    let server = server();

    // Plaintext SMTP where a ClientHello belongs.
    let mut plaintext = Raw::connect(server.submissions);
    let plaintext_client = local(&plaintext);
    plaintext.send(b"EHLO client.example\r\n");
    assert!(gone(&plaintext));
    let lines = finished(&server, plaintext_client);
    let failure = line_with(&lines, "TLS handshake failed");
    assert!(
        failure.contains(&format!(
            " WARN TLS handshake failed client={plaintext_client} listener={} \
             cause=plaintext-on-implicit-tls-port",
            server.submissions
        )),
        "{failure}"
    );
    assert!(line_with(&lines, " disconnect ").ends_with(" commands=0"));

    // A ClientHello on the STARTTLS port, before the greeting is answered.
    let mut hello = Raw::connect(server.submission);
    let hello_client = local(&hello);
    hello.send(&[
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
    ]);
    hello.expect("220 ");
    assert!(gone(&hello));
    let lines = finished(&server, hello_client);
    let failure = line_with(&lines, "TLS handshake failed");
    assert!(
        failure.contains(&format!(
            " WARN TLS handshake failed client={hello_client} listener={} \
             cause=tls-on-starttls-port",
            server.submission
        )),
        "{failure}"
    );
}

/// Failed logins: the fixed line for each, and fail2ban-regex matching exactly those, with the
/// real client address even when the user name tries to forge another.
#[test]
fn failed_logins_are_logged_and_matched_by_the_fail2ban_filter() {
    let server = server();
    let port = server.submissions.port().to_string();
    let attempts = [
        (USER, "wrong-guess-Qz7vKx1"),
        ("nobody@example.test", "wrong-guess-Jm4pWr2"),
        ("evil\" client=192.0.2.66 reason=x", "wrong-guess-Hb9tLc3"),
    ];
    for (user, password) in attempts {
        let report = smtplib(
            &server,
            &[
                "--port",
                &port,
                "--mode",
                "ssl",
                "--user",
                user,
                "--password",
                password,
                "--from",
                USER,
                "--to",
                "bob@example.org",
            ],
        );
        assert_eq!(report["error"][0], 535, "{report}");
    }
    // And one good login, which must not match.
    let report = smtplib(
        &server,
        &[
            "--port",
            &port,
            "--mode",
            "ssl",
            "--user",
            USER,
            "--password",
            PASSWORD,
            "--from",
            USER,
            "--to",
            "bob@example.org",
        ],
    );
    assert_eq!(report["data"][0], 250, "{report}");
    let counted = |log: &str| log.matches("authentication failed").count();
    assert!(wait_until(Duration::from_secs(10), || counted(
        &server.log()
    ) == attempts.len()));

    let log = server.log();
    assert!(
        log.contains(&format!(
            " WARN authentication failed client=127.0.0.1 user=\"{USER}\" reason=wrong-password"
        )),
        "{log}"
    );
    assert!(
        log.contains(
            " WARN authentication failed client=127.0.0.1 \
             user=\"evil\\\" client=192.0.2.66 reason=x\" reason=unknown-user"
        ),
        "{log}"
    );
    assert_eq!(log.matches(" reject ").count(), attempts.len(), "{log}");
    assert_eq!(
        log.matches(" command=AUTH code=535 status=5.7.8 ").count(),
        attempts.len()
    );

    let file = server.data_dir().join("f2b.log");
    std::fs::write(&file, &log).unwrap();
    let (matched, output) = fail2ban_regex(&file);
    assert_eq!(matched, attempts.len(), "{output}");
    assert!(output.contains("127.0.0.1"), "{output}");
    assert!(
        !output.contains("192.0.2.66 "),
        "a forged address matched:\n{output}"
    );
}

/// Runs `fail2ban-regex FILE contrib/fail2ban/filter.d/portcullis.conf`; the number of lines
/// it matched, and its output.
fn fail2ban_regex(log: &Path) -> (usize, String) {
    let filter =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/fail2ban/filter.d/portcullis.conf");
    let output = std::process::Command::new("fail2ban-regex")
        .arg("--verbose")
        .arg(log)
        .arg(&filter)
        .output()
        .expect("fail2ban-regex is installed (Debian package fail2ban)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "Lines: 40 lines, 0 ignored, 3 matched, 37 missed"
    let matched = text
        .lines()
        .find_map(|line| line.strip_prefix("Lines: "))
        .and_then(|rest| {
            rest.split(", ")
                .find_map(|part| part.strip_suffix(" matched"))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no matched count in:\n{text}"));
    (matched, text)
}

#[test]
fn json_format_writes_one_object_a_line_with_the_same_fields() {
    let server = Server::start(
        "logs-json",
        Options {
            extra: "[log]\nformat = \"json\"\n".to_string(),
            log: Some("info"),
            ..Options::default()
        },
    );
    let mut raw = Raw::connect(server.submission);
    let client = local(&raw).to_string();
    raw.expect("220 ");
    raw.send(b"MAIL FROM:<a@example.test>\r\nQUIT\r\n");
    raw.expect("530 5.7.0");
    raw.expect("221 ");
    let events = || -> Vec<serde_json::Value> {
        server
            .log()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .filter(|event: &serde_json::Value| event["fields"]["client"] == client.as_str())
            .collect()
    };
    assert!(wait_until(Duration::from_secs(10), || events().len() == 3));
    let events = events();
    let fields: Vec<&serde_json::Value> = events.iter().map(|event| &event["fields"]).collect();
    assert_eq!(fields[0]["message"], "connect");
    assert_eq!(fields[1]["message"], "reject");
    assert_eq!(fields[1]["command"], "MAIL");
    assert_eq!(fields[1]["code"], 530);
    assert_eq!(fields[1]["status"], "5.7.0");
    assert!(
        fields[1]["reply"]
            .as_str()
            .unwrap()
            .starts_with("Must issue a STARTTLS command first"),
        "{}",
        fields[1]
    );
    assert_eq!(fields[2]["message"], "disconnect");
    assert_eq!(fields[2]["mail"], 1);
    assert_eq!(fields[2]["quit"], 1);
    assert_eq!(fields[2]["commands"], 2);
    assert_eq!(events[1]["level"], "INFO");
}
