//! DKIM end to end: keys made with `portcullis domains dkim`, a message submitted to the real
//! binary and relayed to a local aiosmtpd MX, and the signatures it arrived with verified by
//! dkimpy (`tests/clients/dkim_verify.py`), an independent implementation, with the public keys
//! taken from what `portcullis domains dns --json` printed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::mx::Mx;
use common::{Options, Server, TempDir, cli_in, cli_in_ok, signal, smtplib, status, stderr};
use serde_json::Value;

const DOMAIN: &str = "example.test";
const LIMIT: Duration = Duration::from_secs(30);

/// A server trusting loopback that relays everything to `mx` in plaintext.
fn server_relaying_to(name: &str, mx: &Mx) -> Server {
    Server::start(
        name,
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            extra: format!(
                "[delivery]\nhelo_name = \"out.example.test\"\nretry_seconds = [1]\n[[route]]\ndomains = [\"*\"]\nrelay = \"{}\"\ntls = \"none\"\n",
                mx.address()
            ),
            log: Some("info"),
            ..Options::default()
        },
    )
}

/// `domains dns --json`, parsed, and written to `file` for the verifier.
fn published_records(server: &Server, file: &Path) -> Value {
    let json = server.cli_ok(&["domains", "dns", DOMAIN, "--json"], None);
    std::fs::write(file, &json).unwrap();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// dkimpy's verdict on each signature of `message`.
fn verify(message: &[u8], records: &Path, dir: &Path) -> Vec<Value> {
    let path = dir.join("received.eml");
    std::fs::write(&path, message).unwrap();
    let (ok, stdout, stderr) = common::python_script(
        "dkim_verify.py",
        &[path.to_str().unwrap(), records.to_str().unwrap()],
    );
    assert!(ok, "dkim_verify.py failed: {stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn a_relayed_message_carries_rsa_and_ed25519_signatures_that_dkimpy_verifies() {
    let mx = Mx::start("127.0.0.2", &[]);
    let server = server_relaying_to("dkim-signed", &mx);
    server.cli_ok(&["domains", "add", DOMAIN], None);
    let generated = server.cli_ok(&["domains", "dkim", "generate", DOMAIN], None);
    assert!(
        generated.contains("Generated rsa2048 key pc"),
        "{generated}"
    );
    assert!(
        generated.contains("Generated ed25519 key pc"),
        "{generated}"
    );
    // A reload reads the key files at once, instead of within 30 seconds.
    signal(server.child.as_ref().unwrap(), libc::SIGHUP);
    assert!(
        common::wait_until(LIMIT, || server.log().contains("DKIM signing keys loaded")),
        "{}",
        server.log()
    );

    let port = server.submission.port().to_string();
    let report = smtplib(
        &server,
        &[
            "--port",
            &port,
            "--mode",
            "plain",
            "--from",
            "alice@example.test",
            "--to",
            "bob@example.org",
            "--subject",
            "Signed   twice",
        ],
    );
    assert_eq!(report["data"][0], 250, "{report}");
    let received = mx.wait_for(1, LIMIT);
    assert_eq!(received.len(), 1, "{}", server.log());
    let message = &received[0].data;
    assert!(message.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256;"));

    let dir = TempDir::new("dkim-verify");
    let records_file = dir.0.join("records.json");
    published_records(&server, &records_file);
    let results = verify(message, &records_file, &dir.0);
    let algorithms: Vec<&str> = results
        .iter()
        .map(|r| r["algorithm"].as_str().unwrap())
        .collect();
    assert_eq!(algorithms, ["rsa-sha256", "ed25519-sha256"], "{results:?}");
    for result in &results {
        assert_eq!(result["ok"], true, "{result}");
        assert_eq!(result["domain"], DOMAIN);
    }

    // The verifier does check: one changed word in a signed field fails both signatures.
    let text = String::from_utf8_lossy(message).replace("Signed   twice", "Signed thrice");
    let tampered = verify(text.as_bytes(), &records_file, &dir.0);
    assert!(tampered.iter().all(|r| r["ok"] == false), "{tampered:?}");
}

#[test]
fn mail_of_a_domain_without_a_key_goes_out_unsigned() {
    let mx = Mx::start("127.0.0.3", &[]);
    let server = server_relaying_to("dkim-unsigned", &mx);
    let port = server.submission.port().to_string();
    let report = smtplib(
        &server,
        &[
            "--port",
            &port,
            "--mode",
            "plain",
            "--from",
            "carol@other.test",
            "--to",
            "bob@example.org",
        ],
    );
    assert_eq!(report["data"][0], 250, "{report}");
    let received = mx.wait_for(1, LIMIT);
    assert!(
        !received[0].text().contains("DKIM-Signature"),
        "{}",
        received[0].text()
    );
}

#[test]
fn keys_are_generated_rotated_and_removed_with_private_files() {
    let dir = TempDir::new("dkim-cli");
    let data = dir.0.join("data");
    let refused = cli_in(&data, &["domains", "dkim", "generate", DOMAIN], None);
    assert_eq!(status(&refused), 67, "{}", stderr(&refused));
    assert!(stderr(&refused).contains("portcullis domains add example.test"));
    cli_in_ok(&data, &["domains", "add", DOMAIN], None);
    let args = [
        "domains",
        "dkim",
        "generate",
        DOMAIN,
        "--algorithm",
        "ed25519",
    ];
    cli_in_ok(&data, &args, None);
    let again = cli_in(&data, &args, None);
    assert_eq!(status(&again), 73, "{}", stderr(&again));
    assert!(
        stderr(&again).contains("domains dkim rotate"),
        "{}",
        stderr(&again)
    );
    let both = cli_in(
        &data,
        &["domains", "dkim", "generate", DOMAIN, "--selector", "s1"],
        None,
    );
    assert_eq!(status(&both), 64, "{}", stderr(&both));

    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("dkim")), 0o700);
    assert_eq!(mode(&data.join("dkim").join(DOMAIN)), 0o700);
    let list = |data: &Path| cli_in_ok(data, &["domains", "dkim", "list", DOMAIN], None);
    let listed = list(&data);
    let fields: Vec<&str> = listed.trim().split('\t').collect();
    assert_eq!(fields[0], DOMAIN, "{listed}");
    let first = fields[1].to_string();
    assert!(
        first.starts_with("pc2") && first.ends_with("a-ed"),
        "{first}"
    );
    assert_eq!(&fields[2..4], ["ed25519", "active"]);
    assert_eq!(mode(Path::new(fields[5])), 0o600);

    let rotated = cli_in_ok(&data, &["domains", "dkim", "rotate", DOMAIN], None);
    assert!(rotated.contains(&format!("replaces {first}")), "{rotated}");
    let listed = list(&data);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains(&format!("{first}\ted25519\tretired")),
        "{listed}"
    );
    let second = first.replace("a-ed", "b-ed");
    assert!(
        listed.contains(&format!("{second}\ted25519\tactive")),
        "{listed}"
    );

    // The retired key stays published until it is removed.
    let records = |data: &Path| -> Vec<String> {
        let json = cli_in_ok(data, &["domains", "dns", DOMAIN, "--json"], None);
        let value: Value = serde_json::from_str(&json).unwrap();
        value["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(records(&data).contains(&format!("{first}._domainkey.{DOMAIN}")));
    cli_in_ok(&data, &["domains", "dkim", "remove", DOMAIN, &first], None);
    assert!(!records(&data).contains(&format!("{first}._domainkey.{DOMAIN}")));
    let missing = cli_in(&data, &["domains", "dkim", "remove", DOMAIN, &first], None);
    assert_eq!(status(&missing), 67, "{}", stderr(&missing));
}

#[test]
fn domains_dns_prints_every_record_as_zone_lines_and_json() {
    let dir = TempDir::new("dkim-dns");
    let data = dir.0.join("data");
    cli_in_ok(&data, &["domains", "add", DOMAIN], None);
    cli_in_ok(&data, &["domains", "dkim", "generate", DOMAIN], None);
    let args = [
        "domains",
        "dns",
        DOMAIN,
        "--ip",
        "192.0.2.7",
        "--mx",
        "mx1.example.test",
    ];
    let json = cli_in_ok(&data, &[&args[..], &["--json"]].concat(), None);
    let published: Value = serde_json::from_str(&json).unwrap();
    let records = published["records"].as_array().unwrap();
    let by_name = |name: &str| -> &Value {
        records
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {json}"))
    };
    assert_eq!(by_name(DOMAIN)["value"], "v=spf1 ip4:192.0.2.7 ~all");
    assert_eq!(
        by_name("_dmarc.example.test")["value"],
        "v=DMARC1; p=none; rua=mailto:dmarc@example.test"
    );
    assert_eq!(
        by_name("_smtp._tls.example.test")["value"],
        "v=TLSRPTv1; rua=mailto:tlsrpt@example.test"
    );
    assert!(
        by_name("_mta-sts.example.test")["value"]
            .as_str()
            .unwrap()
            .starts_with("v=STSv1; id=")
    );
    let policy = published["mta_sts_policy"]["text"].as_str().unwrap();
    assert!(policy.contains("mx: mx1.example.test\r\n"), "{policy}");
    let dkim: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["name"]
                .as_str()
                .unwrap()
                .ends_with("._domainkey.example.test")
        })
        .collect();
    assert_eq!(dkim.len(), 2, "{json}");
    for record in &dkim {
        assert!(!record["purpose"].as_str().unwrap().is_empty());
        let strings: Vec<&str> = record["strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(strings.iter().all(|s| s.len() <= 255), "{record}");
        assert_eq!(strings.concat(), record["value"].as_str().unwrap());
    }
    let rsa = dkim
        .iter()
        .find(|r| r["value"].as_str().unwrap().contains("k=rsa"))
        .unwrap();
    assert_eq!(rsa["strings"].as_array().unwrap().len(), 2, "{rsa}");

    // The text form: a comment saying what each record is for, then the record as a zone line
    // whose quoted strings are the JSON's.
    let text = cli_in_ok(&data, &args, None);
    let lines: Vec<&str> = text.lines().collect();
    for record in records {
        let name = record["name"].as_str().unwrap();
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{name}. IN TXT ")))
            .unwrap_or_else(|| panic!("no zone line for {name}: {text}"));
        assert!(lines[at - 1].starts_with("; "), "{text}");
        let quoted: Vec<String> = record["strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("\"{}\"", s.as_str().unwrap()))
            .collect();
        assert!(lines[at].ends_with(&quoted.join(" ")), "{}", lines[at]);
    }
}

#[test]
fn an_account_s_mail_is_signed_only_as_addresses_it_may_send_as() {
    let mx = Mx::start("127.0.0.4", &[]);
    let server = server_relaying_to("dkim-accounts", &mx);
    let password = "correct horse battery";
    server.add_account("alice@example.test", password);
    server.cli_ok(
        &[
            "domains",
            "dkim",
            "generate",
            DOMAIN,
            "--algorithm",
            "ed25519",
        ],
        None,
    );
    signal(server.child.as_ref().unwrap(), libc::SIGHUP);
    assert!(common::wait_until(LIMIT, || server
        .log()
        .contains("DKIM signing keys loaded")));
    let port = server.submission.port().to_string();
    let send_as = |header_from: &str| {
        let report = smtplib(
            &server,
            &[
                "--port",
                &port,
                "--mode",
                "starttls",
                "--user",
                "alice@example.test",
                "--password",
                password,
                "--from",
                "alice@example.test",
                "--to",
                "bob@example.org",
                "--header-from",
                header_from,
            ],
        );
        assert_eq!(report["data"][0], 250, "{report}");
    };
    send_as("Alice <alice@example.test>");
    // `[policy] check_header_from` is off, so the message goes out, but not under the
    // domain's signature: the account may not send as the CEO.
    send_as("The Boss <ceo@example.test>");
    let received = mx.wait_for(2, LIMIT);
    let signed = |from: &str| {
        let message = received
            .iter()
            .find(|m| m.header("From").is_some_and(|f| f.contains(from)))
            .unwrap_or_else(|| panic!("no message from {from}"));
        message.text().starts_with("DKIM-Signature: ")
    };
    assert!(signed("alice@example.test"));
    assert!(!signed("ceo@example.test"));
    assert!(
        server
            .log()
            .contains("not DKIM-signed: the account may not send as its From: address"),
        "{}",
        server.log()
    );
}
