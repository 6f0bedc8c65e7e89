//! `portcullis bench` against a real server: what it reports must match what the spool holds.

mod common;

use common::{BINARY, Options, Server};

fn bench(args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new(BINARY)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn plain_and_starttls_auth_runs_report_what_was_stored() {
    let server = Server::start(
        "bench",
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            ..Options::default()
        },
    );
    server.add_account("load@example.test", "bench password");
    let target = server.submission.to_string();
    let plain = bench(&[
        &target,
        "--concurrency",
        "4",
        "--messages",
        "40",
        "--recipients",
        "2",
    ]);
    assert_eq!(plain["messages_accepted"], 40);
    assert_eq!(plain["latency_ms"]["count"], 40);
    assert_eq!(plain["mode"], "plain");

    let cert = server.certificate();
    let implicit = server.submissions.to_string();
    let tls = bench(&[
        &implicit,
        "--tls",
        "--ca",
        cert.to_str().unwrap(),
        "--user",
        "load@example.test",
        "--password",
        "bench password",
        "--auth",
        "LOGIN",
        "--from",
        "load@example.test",
        "--concurrency",
        "3",
        "--messages",
        "30",
        "--per-connection",
        "10",
    ]);
    assert_eq!(tls["messages_accepted"], 30);
    // Each session logs in once; a session may end early when others took the last messages.
    let sessions = tls["tls_handshake_ms"]["count"].as_u64().unwrap();
    assert!((3..=30).contains(&sessions), "{tls}");
    assert_eq!(tls["auth_ms"]["count"], sessions);

    let queue = server.queue();
    assert_eq!(queue.len(), 70);
    assert_eq!(queue[0]["to"].as_array().unwrap().len(), 2);
    assert_eq!(queue[69]["auth_user"], "load@example.test");
}

#[test]
fn refusals_are_counted_by_code() {
    let server = Server::start("bench-refusals", Options::default());
    let target = server.submission.to_string();
    // No TLS, no AUTH on a submission port: the pipelined MAIL, RCPT and DATA of each of the
    // six transactions are all refused.
    let report = bench(&[&target, "--concurrency", "2", "--messages", "6"]);
    assert_eq!(report["messages_accepted"], 0);
    assert_eq!(report["refusals"]["530 5.7.0"], 18);
}

#[test]
fn hold_keeps_sessions_open() {
    let server = Server::start(
        "bench-hold",
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            ..Options::default()
        },
    );
    let report = bench(&[
        &server.submission.to_string(),
        "--hold",
        "20",
        "--hold-seconds",
        "1",
    ]);
    assert_eq!(report["sessions_held"], 20);
}
