//! The DNS records a sending domain publishes (`portcullis domains dns`): SPF, DKIM, DMARC,
//! and for its own inbound mail MTA-STS and TLS-RPT. Sans-IO: what to publish, as zone-file
//! lines or JSON.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::key::Algorithm;

/// One TXT record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The owner name, without the final dot.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The record's value, whole.
    pub value: String,
    /// The value as the character-strings of the record (each at most 255 octets, RFC 1035
    /// §3.3.14); a resolver joins them without a separator.
    pub strings: Vec<String>,
    /// What the record is for, in one line.
    pub purpose: String,
}

/// The MTA-STS policy file (RFC 8461 §3.2), served over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtaStsPolicy {
    pub url: String,
    /// The file's contents, with CRLF line endings.
    pub text: String,
}

/// Everything to publish for a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub domain: String,
    pub records: Vec<Record>,
    pub mta_sts_policy: MtaStsPolicy,
}

/// Who may send for the domain, for SPF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpfSenders {
    /// The addresses of this host name (`a:`): the server's own name, when its outbound
    /// addresses are not given.
    Host(String),
    /// These addresses (`ip4:`, `ip6:`).
    Addresses(Vec<IpAddr>),
}

/// A DKIM key as it is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    pub selector: String,
    pub algorithm: Algorithm,
    pub public_key: Vec<u8>,
    pub active: bool,
}

/// What the domain publishes: SPF, each key's DKIM record, DMARC, MTA-STS and TLS-RPT.
pub fn published(
    domain: &str,
    senders: &SpfSenders,
    keys: &[PublishedKey],
    mx_hosts: &[String],
) -> Published {
    let mut records = vec![spf(domain, senders)];
    records.extend(keys.iter().map(|key| dkim(domain, key)));
    records.push(txt(
        &format!("_dmarc.{domain}"),
        format!("v=DMARC1; p=none; rua=mailto:dmarc@{domain}"),
        "DMARC: receivers check that SPF or DKIM passes for the From: domain and send aggregate reports to the rua address; start at p=none, read the reports, then move to p=quarantine and p=reject",
    ));
    let policy = mta_sts_policy(domain, mx_hosts);
    records.push(txt(
        &format!("_mta-sts.{domain}"),
        format!("v=STSv1; id={}", policy_id(&policy.text)),
        &format!(
            "MTA-STS (for mail TO {domain}): senders fetch the policy from {} and require TLS to the MX hosts it lists; change the id whenever the policy changes",
            policy.url
        ),
    ));
    records.push(txt(
        &format!("_smtp._tls.{domain}"),
        format!("v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"),
        &format!("TLS-RPT (for mail TO {domain}): senders report TLS failures delivering to you, daily, to the rua address"),
    ));
    Published {
        domain: domain.to_string(),
        records,
        mta_sts_policy: policy,
    }
}

fn spf(domain: &str, senders: &SpfSenders) -> Record {
    let mechanisms: Vec<String> = match senders {
        SpfSenders::Host(host) => vec![format!("a:{host}")],
        SpfSenders::Addresses(addresses) => addresses
            .iter()
            .map(|address| match address {
                IpAddr::V4(v4) => format!("ip4:{v4}"),
                IpAddr::V6(v6) => format!("ip6:{v6}"),
            })
            .collect(),
    };
    txt(
        domain,
        format!("v=spf1 {} ~all", mechanisms.join(" ")),
        "SPF: the addresses allowed to send mail from this domain; add your other senders' mechanisms (include:...) to this one record, and make ~all -all once every sender is listed",
    )
}

fn dkim(domain: &str, key: &PublishedKey) -> Record {
    let value = format!(
        "v=DKIM1; k={}; p={}",
        key.algorithm.key_type(),
        STANDARD.encode(&key.public_key)
    );
    let purpose = if key.active {
        format!(
            "DKIM: the public {} key receivers check this server's signatures with (selector {})",
            key.algorithm, key.selector
        )
    } else {
        format!(
            "DKIM, retired key (selector {}): keep it published for a week so mail signed before the rotation still verifies, then `portcullis domains dkim remove {domain} {}` and delete this record",
            key.selector, key.selector
        )
    };
    txt(
        &format!("{}._domainkey.{domain}", key.selector),
        value,
        &purpose,
    )
}

fn mta_sts_policy(domain: &str, mx_hosts: &[String]) -> MtaStsPolicy {
    let mut text = String::from("version: STSv1\r\nmode: testing\r\n");
    for mx in mx_hosts {
        text.push_str(&format!("mx: {mx}\r\n"));
    }
    text.push_str("max_age: 604800\r\n");
    MtaStsPolicy {
        url: format!("https://mta-sts.{domain}/.well-known/mta-sts.txt"),
        text,
    }
}

/// A policy id that changes exactly when the policy does: its SHA-256, 20 hex digits (the id
/// is 1 to 32 letters and digits, RFC 8461 §3.1).
fn policy_id(policy: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, policy.as_bytes());
    digest.as_ref()[..10]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn txt(name: &str, value: String, purpose: &str) -> Record {
    Record {
        name: name.to_string(),
        kind: "TXT",
        strings: split_strings(&value),
        value,
        purpose: purpose.to_string(),
    }
}

/// The value cut into character-strings of at most 255 octets (values here are ASCII).
fn split_strings(value: &str) -> Vec<String> {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect()
}

impl Record {
    /// The record as a zone-file line: `NAME. IN TXT "..." "..."`.
    pub fn zone_line(&self) -> String {
        let strings: Vec<String> = self
            .strings
            .iter()
            .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{}. IN {} {}", self.name, self.kind, strings.join(" "))
    }
}

/// The records as text to paste: each with a comment line saying what it is for, then the
/// MTA-STS policy file.
pub fn render(published: &Published) -> String {
    let mut out = String::new();
    for record in &published.records {
        out.push_str(&format!("; {}\n{}\n\n", record.purpose, record.zone_line()));
    }
    out.push_str(&format!(
        "; The MTA-STS policy file, served at {} (text/plain, over HTTPS with a valid certificate for mta-sts.{}):\n",
        published.mta_sts_policy.url, published.domain
    ));
    for line in published.mta_sts_policy.text.lines() {
        out.push_str(&format!(";   {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(selector: &str, algorithm: Algorithm, length: usize, active: bool) -> PublishedKey {
        PublishedKey {
            selector: selector.into(),
            algorithm,
            public_key: vec![7; length],
            active,
        }
    }

    fn example() -> Published {
        published(
            "example.test",
            &SpfSenders::Host("mail.example.test".into()),
            &[
                key("pc202612a-rsa", Algorithm::Rsa2048, 294, true),
                key("pc202612a-ed", Algorithm::Ed25519, 32, true),
                key("old", Algorithm::Ed25519, 32, false),
            ],
            &["mx1.example.test".into()],
        )
    }

    fn record<'a>(published: &'a Published, name: &str) -> &'a Record {
        published
            .records
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no {name} in {published:?}"))
    }

    #[test]
    fn spf_names_the_host_or_the_addresses() {
        assert_eq!(
            record(&example(), "example.test").value,
            "v=spf1 a:mail.example.test ~all"
        );
        let addresses = SpfSenders::Addresses(vec![
            "192.0.2.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]);
        let published = published("example.test", &addresses, &[], &[]);
        assert_eq!(
            published.records[0].value,
            "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 ~all"
        );
    }

    #[test]
    fn an_rsa_key_record_is_split_into_strings_of_255_octets_that_join_to_the_value() {
        let published = example();
        let rsa = record(&published, "pc202612a-rsa._domainkey.example.test");
        assert!(rsa.value.starts_with("v=DKIM1; k=rsa; p="), "{}", rsa.value);
        assert_eq!(rsa.strings.len(), 2);
        assert_eq!(rsa.strings[0].len(), 255);
        assert_eq!(rsa.strings.concat(), rsa.value);
        let line = rsa.zone_line();
        assert!(
            line.starts_with("pc202612a-rsa._domainkey.example.test. IN TXT \"v=DKIM1; k=rsa; p="),
            "{line}"
        );
        let ed = record(&published, "pc202612a-ed._domainkey.example.test");
        assert_eq!(
            ed.value,
            format!("v=DKIM1; k=ed25519; p={}", STANDARD.encode([7; 32]))
        );
        assert_eq!(ed.strings.len(), 1);
        let old = record(&published, "old._domainkey.example.test");
        assert!(old.purpose.contains("retired"), "{}", old.purpose);
    }

    #[test]
    fn dmarc_mta_sts_and_tls_rpt() {
        let published = example();
        assert_eq!(
            record(&published, "_dmarc.example.test").value,
            "v=DMARC1; p=none; rua=mailto:dmarc@example.test"
        );
        assert_eq!(
            record(&published, "_smtp._tls.example.test").value,
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.test"
        );
        let sts = record(&published, "_mta-sts.example.test");
        let id = sts.value.strip_prefix("v=STSv1; id=").unwrap();
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            published.mta_sts_policy.text,
            "version: STSv1\r\nmode: testing\r\nmx: mx1.example.test\r\nmax_age: 604800\r\n"
        );
        assert_eq!(
            published.mta_sts_policy.url,
            "https://mta-sts.example.test/.well-known/mta-sts.txt"
        );
        // Another policy, another id.
        let other = super::published(
            "example.test",
            &SpfSenders::Host("h".into()),
            &[],
            &["mx2.example.test".into()],
        );
        assert_ne!(record(&other, "_mta-sts.example.test").value, sts.value);
    }

    #[test]
    fn the_text_form_has_a_comment_before_every_record() {
        let text = render(&example());
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains(" IN TXT ") {
                assert!(lines[i - 1].starts_with("; "), "{text}");
            }
        }
        assert!(text.contains(";   mode: testing"), "{text}");
    }
}
