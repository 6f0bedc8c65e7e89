//! Brute-force protection end to end: the real binary, clients on different loopback networks
//! (127.0.0.0/8 is all loopback on Linux, and each /24 of it is a client network of its own).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Options, Server, python_command, python_script, wait_until};
use serde_json::Value;

const USER: &str = "alice@example.test";
const PASSWORD: &str = "correct horse battery";
/// Wrong passwords that cannot occur in a log or a store by chance.
const WRONG: [&str; 3] = [
    "wrong-guess-Qz7vKx1",
    "wrong-guess-Jm4pWr2",
    "wrong-guess-Hb9tLc3",
];
/// The attacker's network, and the real user's (another /24).
const ATTACKER: &str = "127.0.9.9";
const REAL_USER: &str = "127.0.0.2";

fn server(name: &str, auth: &str) -> Server {
    let server = Server::start(
        name,
        Options {
            extra: format!("[auth]\n{auth}"),
            log: Some("info"),
            ..Options::default()
        },
    );
    server.add_account(USER, PASSWORD);
    server
}

fn client(server: &Server, command: &str, source: &str, user: &str, rest: &[&str]) -> Value {
    let port = server.submissions.port().to_string();
    let cafile = server.certificate();
    let mut args = vec![
        command,
        "--port",
        &port,
        "--cafile",
        cafile.to_str().unwrap(),
        "--source",
        source,
        "--user",
        user,
    ];
    args.extend_from_slice(rest);
    let (ok, stdout, stderr) = python_script("brute_force.py", &args);
    assert!(ok, "brute_force.py {command} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout} / {stderr}"))
}

/// One connection from `source`: AUTH PLAIN with each password in turn; the last reply lines.
fn logins(server: &Server, source: &str, user: &str, passwords: &[&str]) -> Value {
    let mut rest = Vec::new();
    for password in passwords {
        rest.extend_from_slice(&["--password", password]);
    }
    client(server, "logins", source, user, &rest)
}

fn replies(result: &Value) -> Vec<String> {
    result["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// The reply codes, with the start of the text where it tells replies apart.
fn codes(result: &Value) -> Vec<String> {
    replies(result)
        .iter()
        .map(|line| line.chars().take(9).collect())
        .collect()
}

fn log_lines<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|line| line.contains(needle)).collect()
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn ten_thousand_wrong_passwords_from_one_network_never_stop_the_real_user() {
    let started = Instant::now();
    // Short delays keep the test quick; the lock is what stops the attack.
    let mut server = server(
        "10k",
        "delay_milliseconds = 10\nmax_delay_milliseconds = 50\n",
    );
    // The real user's network has logged in before the attack starts.
    let first = client(
        &server,
        "user",
        REAL_USER,
        USER,
        &["--password", PASSWORD, "--rounds", "1"],
    );
    assert_eq!(first["failures"], serde_json::json!([]), "{first}");
    let rss_start = vm_rss_kib(server.pid());

    // From now on the real user logs in and sends, again and again, until the attack is over.
    let stop = server.dir.0.join("stop-real-user");
    let port = server.submissions.port().to_string();
    let real_user = python_command("brute_force.py")
        .args(["user", "--port", &port, "--cafile"])
        .arg(server.certificate())
        .args([
            "--source",
            REAL_USER,
            "--user",
            USER,
            "--password",
            PASSWORD,
        ])
        .arg("--stop-file")
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Smaller attacks from other networks first, alongside the real user, so that the
    // allocator has seen this load (each attack runs argon2 ten times, 19 MiB each, and glibc
    // takes a few rounds of that to settle) before memory is measured.
    for warm_up in ["127.0.5.5", "127.0.6.6", "127.0.7.7"] {
        let result = client(&server, "attack", warm_up, USER, &["--attempts", "100"]);
        assert_eq!(result["answered"]["535 5.7.8"], 10, "{result}");
    }
    let rss_before = vm_rss_kib(server.pid());

    // The attack, in two parts to look at memory in between: the ten checked guesses are in the
    // first part; the second is refusals only.
    let attack_started = Instant::now();
    let first_part = client(&server, "attack", ATTACKER, USER, &["--attempts", "2000"]);
    let rss_middle = vm_rss_kib(server.pid());
    let second_part = client(
        &server,
        "attack",
        ATTACKER,
        USER,
        &["--attempts", "8000", "--offset", "2000"],
    );
    let attack_seconds = attack_started.elapsed().as_secs_f64();
    let rss_after = vm_rss_kib(server.pid());
    std::fs::write(&stop, "").unwrap();
    let output = real_user.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let real: Value = serde_json::from_slice(&output.stdout).unwrap();

    // Ten guesses were checked; everything after them was refused unchecked with 454.
    let answered = &first_part["answered"];
    assert_eq!(answered["535 5.7.8"], 10, "{first_part}");
    assert_eq!(answered["454 4.7.0"], 1990, "{first_part}");
    assert_eq!(answered.as_object().unwrap().len(), 2, "{first_part}");
    assert_eq!(
        second_part["answered"],
        serde_json::json!({"454 4.7.0": 8000}),
        "{second_part}"
    );
    // The real user never noticed.
    assert_eq!(real["failures"], serde_json::json!([]), "{real}");
    let rounds = real["rounds"].as_u64().unwrap();
    assert!(rounds >= 3, "{real}");
    assert_eq!(server.queue().len() as u64, rounds + 1);
    // Memory stays flat: generous slack over the whole attack (about one more argon2 block),
    // and little over the 8000 refusals.
    assert!(
        rss_after <= rss_before + 24 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(
        rss_after <= rss_middle + 4 * 1024,
        "VmRSS grew from {rss_middle} KiB to {rss_after} KiB during 8000 refused attempts"
    );

    server.terminate();
    let log = server.log();
    let checks: u64 = log_lines(&log, "stopped")
        .last()
        .and_then(|line| line.split("password_checks=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no password_checks in the log:\n{log}"));
    // One for the real user (then its cache), thirty for the warm-ups, ten for the attack.
    assert_eq!(checks, 41, "password checks");
    let locked = log_lines(
        &log,
        &format!("authentication failed client={ATTACKER} user=\"{USER}\" reason=locked"),
    );
    assert_eq!(locked.len(), 9990);
    eprintln!(
        "10k attack: {attack_seconds:.1} s; password checks in total {checks}; VmRSS \
         {rss_start} KiB at start, {rss_before} KiB before the attack, {rss_middle} KiB after \
         2000 attempts, {rss_after} KiB after 10000; the real user sent {rounds} messages \
         meanwhile; whole test {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_lock_refuses_even_the_right_password_survives_a_restart_and_unlock_ends_it() {
    let mut server = server(
        "lock",
        "lock_after_failures = 3\ndelay_after_failures = 5\n",
    );
    // Distinctive wrong passwords, to look for in the log and the store at the end.
    let tried = [WRONG[0], WRONG[1], WRONG[2], PASSWORD];
    let wrong = logins(&server, ATTACKER, USER, &tried);
    let replies = replies(&wrong);
    assert_eq!(codes(&wrong)[..3], ["535 5.7.8", "535 5.7.8", "535 5.7.8"]);
    assert!(
        replies[3].starts_with(
            "454 4.7.0 Too many failed logins for this account from your network; try again after 20"
        ) && replies[3].ends_with('Z'),
        "{wrong}"
    );
    // Another address of the same /24 is the same network; another /24 is not.
    assert_eq!(
        codes(&logins(&server, "127.0.9.200", USER, &[PASSWORD])),
        ["454 4.7.0"]
    );
    assert_eq!(
        codes(&logins(&server, REAL_USER, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );

    let shown = server.cli_ok(&["accounts", "show", USER], None);
    assert!(
        shown.contains("locked: logins from 127.0.9.0/24 until 20"),
        "{shown}"
    );
    assert!(
        shown.contains("from 127.0.9.0/24 (127.0.9.9): wrong-password"),
        "{shown}"
    );
    // The two refusals share a row (with the latest address).
    assert!(
        shown.contains("from 127.0.9.0/24 (127.0.9.200): locked, 2 attempts until"),
        "{shown}"
    );

    // The lock is in the store: a restarted server still refuses.
    server.terminate();
    server.launch();
    assert_eq!(
        codes(&logins(&server, ATTACKER, USER, &[PASSWORD])),
        ["454 4.7.0"]
    );

    let unlocked = server.cli_ok(&["accounts", "unlock", USER], None);
    assert!(unlocked.contains("cleared 1 lock(s)"), "{unlocked}");
    assert!(
        wait_until(Duration::from_secs(10), || codes(&logins(
            &server,
            ATTACKER,
            USER,
            &[PASSWORD]
        )) == ["235 2.7.0"]),
        "still locked after unlock"
    );
    let shown = server.cli_ok(&["accounts", "show", USER], None);
    assert!(!shown.contains("locked: logins from"), "{shown}");
    assert!(shown.contains("wrong-password"), "{shown}");

    let log = server.log();
    assert_eq!(
        log_lines(
            &log,
            &format!(
                "authentication failed client={ATTACKER} user=\"{USER}\" reason=wrong-password"
            )
        )
        .len(),
        3,
        "{log}"
    );
    assert!(!log_lines(&log, "reason=locked").is_empty(), "{log}");
    // Nothing in the log or the store holds a tried password.
    let mut store = Vec::new();
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("accounts.sqlite") {
            store.push((name, std::fs::read(&path).unwrap()));
        }
    }
    assert!(
        store.iter().any(|(name, _)| name == "accounts.sqlite"),
        "no store in {}",
        server.data_dir().display()
    );
    for password in tried {
        assert!(!log.contains(password), "{password:?} in the log:\n{log}");
        for (name, bytes) in &store {
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|window| window == password.as_bytes()),
                "{password:?} in {name}"
            );
        }
    }
}

#[test]
fn unknown_user_names_get_the_same_replies_delays_and_locks() {
    let server = server(
        "unknown",
        "lock_after_failures = 4\ndelay_after_failures = 2\ndelay_milliseconds = 300\nmax_delay_milliseconds = 300\n",
    );
    let attempts = ["a", "b", "c", "d", PASSWORD];
    let known = logins(&server, "127.0.1.1", USER, &attempts);
    let unknown = logins(&server, "127.0.2.1", "nobody@example.test", &attempts);
    assert_eq!(codes(&known), codes(&unknown));
    assert_eq!(
        codes(&known),
        [
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "535 5.7.8",
            "454 4.7.0"
        ]
    );
    // The third and fourth failures wait; the first two do not; the refusal is immediate.
    for result in [&known, &unknown] {
        let seconds: Vec<f64> = result["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert!(seconds[2] >= 0.3 && seconds[3] >= 0.3, "{result}");
        assert!(seconds[0] < 0.3 && seconds[4] < 0.3, "{result}");
    }
    let log = server.log();
    assert_eq!(log_lines(&log, "reason=wrong-password").len(), 4, "{log}");
    assert_eq!(log_lines(&log, "reason=unknown-user").len(), 4, "{log}");
    assert_eq!(log_lines(&log, "reason=locked").len(), 2, "{log}");
}

#[test]
fn a_network_spraying_many_user_names_is_refused_with_421_whatever_the_name() {
    let server = server("spray", "network_refuse_after_accounts = 3\n");
    for user in ["a@example.test", "b@example.test", "c@example.test"] {
        assert_eq!(
            codes(&logins(&server, ATTACKER, user, &["123456"])),
            ["535 5.7.8"]
        );
    }
    // Even a real account with its right password, from any address of that network.
    let refused = logins(&server, "127.0.9.10", USER, &[PASSWORD]);
    assert_eq!(
        replies(&refused),
        ["421 4.7.0 Too many failed logins from your network; closing"]
    );
    assert_eq!(refused["closed"], true, "{refused}");
    assert_eq!(
        codes(&logins(&server, REAL_USER, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );
    let log = server.log();
    assert!(
        log.contains("authentication failed client=127.0.9.10 user=\"alice@example.test\" reason=network-refused"),
        "{log}"
    );
}

#[test]
fn the_same_wrong_password_again_counts_once_and_other_reasons_are_logged() {
    let server = server("repeat", "lock_after_failures = 3\n");
    let old = ["old password"; 8];
    assert_eq!(
        codes(&logins(&server, ATTACKER, USER, &old)),
        ["535 5.7.8"; 8]
    );
    assert_eq!(
        codes(&logins(&server, ATTACKER, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );
    // A mechanism the server does not offer and acting as another user: refused, and logged.
    let denied = client(
        &server,
        "logins",
        ATTACKER,
        USER,
        &[
            "--command",
            "AUTH CRAM-MD5",
            "--command",
            "AUTH PLAIN Ym9zc0BleGFtcGxlLnRlc3QAYWxpY2VAZXhhbXBsZS50ZXN0AHB3",
        ],
    );
    assert_eq!(denied["commands"][0].as_str().unwrap()[..9], *"504 5.5.4");
    assert_eq!(denied["commands"][1].as_str().unwrap()[..9], *"535 5.7.8");
    server.cli_ok(&["accounts", "disable", USER], None);
    assert_eq!(
        codes(&logins(&server, REAL_USER, USER, &[PASSWORD])),
        ["535 5.7.8"]
    );
    let log = server.log();
    for reason in [
        "reason=mechanism-not-allowed",
        "reason=authzid-not-allowed",
        "reason=disabled",
    ] {
        assert_eq!(log_lines(&log, reason).len(), 1, "{reason}: {log}");
    }
    assert_eq!(log_lines(&log, "reason=wrong-password").len(), 8, "{log}");
    // `accounts show` lists the failures with their reasons; the repeats share a row.
    let shown = server.cli_ok(&["accounts", "show", USER], None);
    assert!(
        shown.contains("from 127.0.0.0/24 (127.0.0.2): disabled"),
        "{shown}"
    );
    assert!(
        shown.contains("from 127.0.9.0/24 (127.0.9.9): wrong-password, 7 attempts until"),
        "{shown}"
    );
}

/// `sessions` connections from the /24 of `source`, all sending AUTH at the same instant (for
/// `USER`, or a name of their own each with `names`); the count of each reply.
fn burst(server: &Server, source: &str, sessions: usize, names: bool, offset: usize) -> Value {
    let (sessions, offset) = (sessions.to_string(), offset.to_string());
    let mut rest = vec!["--sessions", &sessions, "--offset", &offset];
    if names {
        rest.push("--names");
    }
    client(server, "burst", source, USER, &rest)["answered"].clone()
}

/// The password checks the server made in its life, from its last log line.
fn password_checks(log: &str) -> u64 {
    log_lines(log, "stopped")
        .last()
        .and_then(|line| line.split("password_checks=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no password_checks in the log:\n{log}"))
}

#[test]
fn simultaneous_logins_cost_at_most_the_limits_in_password_checks() {
    // No early delay, so that the burst is stopped by the lock itself, not by the delays.
    let mut server = server("burst", "delay_after_failures = 10\nlock_seconds = 2\n");
    let started = Instant::now();
    let first = burst(&server, ATTACKER, 250, false, 0);
    let first_seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        first,
        serde_json::json!({"535 5.7.8": 10, "454 4.7.0": 240}),
        "250 at once for one account"
    );
    // The lock expires; the failures are still in the window, so one check locks it again.
    std::thread::sleep(Duration::from_millis(2500));
    let again = burst(&server, ATTACKER, 250, false, 250);
    assert_eq!(
        again,
        serde_json::json!({"535 5.7.8": 1, "454 4.7.0": 249}),
        "250 at once after the lock expired"
    );
    // 100 different names at once from another /24: checked up to the spraying limit only.
    let sprayed = burst(&server, "127.0.8.1", 100, true, 0);
    assert_eq!(
        sprayed,
        serde_json::json!({"535 5.7.8": 20, "421 4.7.0": 80}),
        "100 names at once"
    );
    // The real user's network is untouched.
    assert_eq!(
        codes(&logins(&server, REAL_USER, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );
    server.terminate();
    let log = server.log();
    assert_eq!(password_checks(&log), 10 + 1 + 20 + 1, "password checks");
    // One line when the pair is locked (twice) and when the network is refused.
    assert_eq!(
        log_lines(&log, "login locked").len(),
        2,
        "{}",
        log_lines(&log, "locked").join("\n")
    );
    assert_eq!(log_lines(&log, "network refused").len(), 1);
    eprintln!("250 simultaneous logins answered in {first_seconds:.1} s");
}

#[test]
fn a_neighbour_cannot_lock_out_a_known_address_and_a_refused_network_can_be_unlocked() {
    let mut server = server(
        "neighbour",
        "lock_after_failures = 3\ndelay_after_failures = 5\nnetwork_refuse_after_accounts = 3\n",
    );
    // Behind one NAT'd /24: the user's own address, a neighbour, and an address never seen.
    const KNOWN: &str = "127.41.1.200";
    const NEIGHBOUR: &str = "127.41.1.66";
    const OTHER: &str = "127.41.1.67";
    assert_eq!(
        codes(&logins(&server, KNOWN, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );
    // The neighbour guesses the user's password: the network is locked for that name ...
    assert_eq!(
        codes(&logins(&server, NEIGHBOUR, USER, &WRONG)),
        ["535 5.7.8"; 3]
    );
    assert_eq!(
        codes(&logins(&server, OTHER, USER, &[PASSWORD])),
        ["454 4.7.0"]
    );
    // ... but the user's own address keeps logging in while the neighbour keeps failing, and
    // the user's logins do not give the neighbour a fresh start.
    for round in 0..3 {
        let guess = format!("wrong-guess-round-{round}");
        assert_eq!(
            codes(&logins(&server, NEIGHBOUR, USER, &[&guess])),
            ["454 4.7.0"]
        );
        assert_eq!(
            codes(&logins(&server, KNOWN, USER, &[PASSWORD])),
            ["235 2.7.0"]
        );
    }
    // The neighbour sprays user names: the network is refused, except for the name known there.
    for user in ["a@example.test", "b@example.test", "c@example.test"] {
        assert_eq!(
            codes(&logins(&server, NEIGHBOUR, user, &["123456"])),
            ["535 5.7.8"]
        );
    }
    assert_eq!(
        codes(&logins(&server, OTHER, "d@example.test", &["123456"])),
        ["421 4.7.0"]
    );
    assert_eq!(
        codes(&logins(&server, KNOWN, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );
    let locks = server.cli_ok(&["accounts", "locks"], None);
    assert!(
        locks.contains("locked: \"alice@example.test\" from 127.41.1.0/24 until 20"),
        "{locks}"
    );
    assert!(
        locks.contains("refused network: every login from 127.41.1.0/24 until 20"),
        "{locks}"
    );

    // All of it survives a restart.
    server.terminate();
    server.launch();
    assert_eq!(
        codes(&logins(&server, KNOWN, USER, &[PASSWORD])),
        ["235 2.7.0"]
    );
    assert_eq!(
        codes(&logins(&server, OTHER, USER, &[PASSWORD])),
        ["454 4.7.0"]
    );
    assert_eq!(
        codes(&logins(&server, OTHER, "d@example.test", &["123456"])),
        ["421 4.7.0"]
    );

    // The administrator lifts the refusal; the lock of the name stays until its own unlock.
    let unlocked = server.cli_ok(&["accounts", "unlock", "--network", "127.41.1.0/24"], None);
    assert!(
        unlocked.contains("lifted the refusal of 127.41.1.0/24"),
        "{unlocked}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || codes(&logins(
            &server,
            OTHER,
            "d@example.test",
            &["123456"]
        )) == ["535 5.7.8"]),
        "still refused after unlock --network"
    );
    assert_eq!(
        codes(&logins(&server, OTHER, USER, &[PASSWORD])),
        ["454 4.7.0"]
    );
    let locks = server.cli_ok(&["accounts", "locks"], None);
    assert!(!locks.contains("refused network"), "{locks}");
    server.cli_ok(&["accounts", "unlock", USER], None);
    assert!(
        wait_until(Duration::from_secs(10), || codes(&logins(
            &server,
            OTHER,
            USER,
            &[PASSWORD]
        )) == ["235 2.7.0"]),
        "still locked after unlock"
    );
    assert_eq!(
        server.cli_ok(&["accounts", "locks"], None).trim(),
        "No login is locked and no network refused."
    );
    // Restarted again, the lifted refusal stays lifted.
    server.terminate();
    server.launch();
    assert_eq!(
        codes(&logins(&server, OTHER, "e@example.test", &["123456"])),
        ["535 5.7.8"]
    );
}
