//! The DKIM-Signature field (RFC 6376 §3.5, §5): which header fields are signed, the data the
//! signature covers, and the folded field. relaxed/relaxed always: simple breaks at the first
//! re-folded header or trailing blank a relay adds, and gains nothing in return.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::canon::{self, Field};
use super::key::PrivateKey;

/// The fields signed when present, in this order (RFC 6376 §5.4.1's advice: those that make
/// up what the reader sees and what replies and list software act on). From is signed once
/// more than it occurs ("oversigned"), so a second From: added on the way breaks the signature
/// instead of being shown to the reader.
pub const SIGNED_FIELDS: [&str; 14] = [
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
];

/// A key and the names it signs under: `d=` and `s=`.
#[derive(Debug)]
pub struct SigningKey {
    pub domain: String,
    pub selector: String,
    pub key: PrivateKey,
}

/// The DKIM-Signature fields for `message` (CRLF line endings), one per key, each ending with
/// CRLF, to be put before the message. The body is hashed once for all keys.
pub fn sign(message: &[u8], keys: &[&SigningKey], timestamp: u64) -> Result<Vec<u8>, String> {
    let (fields, body) = canon::split(message);
    let names = signed_names(&fields);
    let name_bytes: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    let headers = selected_headers(&fields, &name_bytes);
    let body_hash = STANDARD.encode(canon::relaxed_body_hash(body));
    let mut out = Vec::new();
    for key in keys {
        let unsigned = unsigned_field(key, timestamp, &names, &body_hash);
        let signature = key.key.sign(&signed_data(&headers, unsigned.as_bytes()))?;
        out.extend_from_slice(unsigned.as_bytes());
        out.extend_from_slice(fold_base64(&STANDARD.encode(signature)).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The `h=` list: each field of [`SIGNED_FIELDS`] as many times as it occurs, and From once
/// more.
fn signed_names(fields: &[Field]) -> Vec<&'static str> {
    let mut names = Vec::new();
    for name in SIGNED_FIELDS {
        let count = fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
            .count();
        names.extend(std::iter::repeat_n(name, count));
    }
    names.push("from");
    names
}

/// The canonical header fields `names` select (RFC 6376 §5.4.2: repeated names take the
/// instances from the bottom up; a name with no instance left selects nothing), each with
/// CRLF.
pub fn selected_headers(fields: &[Field], names: &[&[u8]]) -> Vec<u8> {
    let mut used = vec![false; fields.len()];
    let mut out = Vec::new();
    for name in names {
        let name = trim(name);
        let found = (0..fields.len())
            .rev()
            .find(|&i| !used[i] && fields[i].name.eq_ignore_ascii_case(name));
        if let Some(i) = found {
            used[i] = true;
            canon::relaxed_header(fields[i].raw, &mut out);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

/// What the signature covers: the selected header fields, then the DKIM-Signature field
/// itself with an empty `b=`, canonicalized, without its CRLF (RFC 6376 §3.7).
pub fn signed_data(headers: &[u8], unsigned_field: &[u8]) -> Vec<u8> {
    let mut data = headers.to_vec();
    canon::relaxed_header(unsigned_field, &mut data);
    data
}

/// The DKIM-Signature field up to and including `b=`, folded to lines of under 80 octets
/// (a long domain or selector may make the first longer, never near 998).
fn unsigned_field(key: &SigningKey, timestamp: u64, names: &[&str], body_hash: &str) -> String {
    let mut field = format!(
        "DKIM-Signature: v=1; a={}; c=relaxed/relaxed;\r\n\td={}; s={}; t={timestamp}; h=",
        key.key.algorithm().tag(),
        key.domain,
        key.selector,
    );
    let mut line_length = field.len() - field.rfind('\n').unwrap_or(0);
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            field.push(':');
            line_length += 1;
        }
        if line_length + name.len() > 76 {
            field.push_str("\r\n\t");
            line_length = 1;
        }
        field.push_str(name);
        line_length += name.len();
    }
    field.push_str(&format!(";\r\n\tbh={body_hash};\r\n\tb="));
    field
}

/// The signature in lines of 72 characters: a verifier removes the blanks in `b=`.
fn fold_base64(text: &str) -> String {
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(72)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    lines.join("\r\n\t")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::key::Algorithm;
    use ring::signature::{self, Ed25519KeyPair, UnparsedPublicKey};

    /// RFC 8463 Appendix A.3, the signed example, as published (CRLF line endings).
    const RFC8463_MESSAGE: &str = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r
 d=football.example.com; i=@football.example.com;\r
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r
 subject : date : message-id : from : subject : date;\r
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r
 d=football.example.com; i=@football.example.com;\r
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r
 date : message-id : from : subject : date;\r
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r
From: Joe SixPack <joe@football.example.com>\r
To: Suzie Q <suzie@shopping.example.net>\r
Subject: Is dinner ready?\r
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r
Message-ID: <20030712040037.46341.5F8J@football.example.com>\r
\r
Hi.\r
\r
We lost the game.  Are you hungry yet?\r
\r
Joe.\r
\r
";
    /// RFC 8463 Appendix A.2: the Ed25519 private key (its seed) and the RSA public key.
    const RFC8463_ED25519_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    const RFC8463_ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
    const RFC8463_RSA_PUBLIC: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

    /// The example's signature field `index`: the data it covers (computed here) and its `b=`.
    fn rfc8463_signature(index: usize) -> (Vec<u8>, Vec<u8>) {
        let (fields, _) = canon::split(RFC8463_MESSAGE.as_bytes());
        let raw = std::str::from_utf8(fields[index].raw).unwrap();
        let b_at = raw.rfind(" b=").unwrap() + " b=".len();
        let (unsigned, b) = raw.split_at(b_at);
        let h_start = unsigned.find("h=").unwrap() + 2;
        let h_end = h_start + unsigned[h_start..].find(';').unwrap();
        let names: Vec<&[u8]> = unsigned[h_start..h_end]
            .split(':')
            .map(str::as_bytes)
            .collect();
        let data = signed_data(&selected_headers(&fields, &names), unsigned.as_bytes());
        let b: String = b.chars().filter(|c| !c.is_whitespace()).collect();
        (data, STANDARD.decode(b).unwrap())
    }

    #[test]
    fn the_rfc_8463_ed25519_signature_is_reproduced_from_its_key() {
        let seed = STANDARD.decode(RFC8463_ED25519_SEED).unwrap();
        let public = STANDARD.decode(RFC8463_ED25519_PUBLIC).unwrap();
        let pair = Ed25519KeyPair::from_seed_and_public_key(&seed, &public).unwrap();
        let key = PrivateKey::Ed25519(pair);
        let (data, published) = rfc8463_signature(0);
        // Ed25519 is deterministic: the same data gives the published signature, octet for
        // octet, so header selection and canonicalization match the RFC's.
        assert_eq!(key.sign(&data).unwrap(), published);
    }

    #[test]
    fn the_rfc_8463_rsa_signature_verifies_over_the_data_computed_here() {
        let spki = STANDARD.decode(RFC8463_RSA_PUBLIC).unwrap();
        // The example key is 1024 bits (too short to sign with today), and its SPKI ends with
        // the PKCS#1 key ring verifies with: 22 octets of algorithm and bit string header.
        let (data, published) = rfc8463_signature(1);
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            &spki[22..],
        )
        .verify(&data, &published)
        .unwrap();
    }

    fn generated(algorithm: Algorithm) -> SigningKey {
        let pem = PrivateKey::generate(algorithm).unwrap();
        SigningKey {
            domain: "example.test".into(),
            selector: "pc202612a".into(),
            key: PrivateKey::from_pem(&pem, algorithm).unwrap(),
        }
    }

    const MESSAGE: &[u8] = b"Received: from client by us\r\nFrom: Alice <alice@example.test>\r\nTo: bob@example.org\r\nSubject: Hello\r\n  again\r\nX-Mailer: not signed\r\n\r\nHi Bob.\r\n";

    /// The tags of a produced field, unfolded, by name.
    fn tags(field: &str) -> std::collections::BTreeMap<String, String> {
        let value = field.split_once(':').unwrap().1;
        value
            .split(';')
            .filter_map(|tag| tag.split_once('='))
            .map(|(k, v)| {
                let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                (k.trim().to_string(), v)
            })
            .collect()
    }

    #[test]
    fn a_signature_lists_the_fields_present_with_from_oversigned_and_verifies() {
        let key = generated(Algorithm::Ed25519);
        let fields = sign(MESSAGE, &[&key], 1_764_000_000).unwrap();
        let text = String::from_utf8(fields.clone()).unwrap();
        assert!(text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"));
        assert!(text.lines().all(|line| line.len() < 80), "{text}");
        let tags = tags(&text);
        assert_eq!(tags["h"], "from:to:subject:from");
        assert_eq!(tags["c"], "relaxed/relaxed");
        assert_eq!(tags["d"], "example.test");
        assert_eq!(tags["s"], "pc202612a");
        assert_eq!(tags["t"], "1764000000");
        // Verify the way a receiver does: the signed message's own fields, b= emptied.
        let mut signed = fields.clone();
        signed.extend_from_slice(MESSAGE);
        let (all, _) = canon::split(&signed);
        let raw = std::str::from_utf8(all[0].raw).unwrap();
        let unsigned = &raw[..raw.rfind("b=").unwrap() + 2];
        let names: Vec<&[u8]> = tags["h"].split(':').map(str::as_bytes).collect();
        let data = signed_data(&selected_headers(&all, &names), unsigned.as_bytes());
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let signature = STANDARD.decode(&tags["b"]).unwrap();
        UnparsedPublicKey::new(&signature::ED25519, key.key.public_key())
            .verify(digest.as_ref(), &signature)
            .unwrap();
    }

    #[test]
    fn two_keys_give_two_fields_with_one_body_hash() {
        let (ed, rsa) = (generated(Algorithm::Ed25519), generated(Algorithm::Rsa2048));
        let text = String::from_utf8(sign(MESSAGE, &[&rsa, &ed], 1).unwrap()).unwrap();
        let fields: Vec<&str> = text
            .split("DKIM-Signature:")
            .filter(|f| !f.is_empty())
            .collect();
        assert_eq!(fields.len(), 2, "{text}");
        let (first, second) = (
            tags(&format!("x:{}", fields[0])),
            tags(&format!("x:{}", fields[1])),
        );
        assert_eq!(first["a"], "rsa-sha256");
        assert_eq!(second["a"], "ed25519-sha256");
        assert_eq!(first["bh"], second["bh"]);
        assert_eq!(STANDARD.decode(&first["b"]).unwrap().len(), 256);
    }

    #[test]
    fn repeated_fields_are_each_signed_and_taken_from_the_bottom_up() {
        let message = b"From: a@example.test\r\nTo: one@x\r\nTo: two@x\r\n\r\n";
        let (fields, _) = canon::split(message);
        assert_eq!(signed_names(&fields), ["from", "to", "to", "from"]);
        let names: Vec<&[u8]> = vec![b"to", b"to", b"from", b"from"];
        assert_eq!(
            selected_headers(&fields, &names),
            b"to:two@x\r\nto:one@x\r\nfrom:a@example.test\r\n"
        );
    }

    #[test]
    fn a_long_header_list_is_folded_between_names() {
        let mut message = String::new();
        for name in SIGNED_FIELDS {
            message.push_str(&format!("{name}: x\r\n"));
        }
        message.push_str("\r\n");
        let key = generated(Algorithm::Ed25519);
        let text = String::from_utf8(sign(message.as_bytes(), &[&key], 1).unwrap()).unwrap();
        assert!(text.lines().all(|line| line.len() < 80), "{text}");
        let expected = format!("{}:from", SIGNED_FIELDS.join(":"));
        assert_eq!(tags(&text)["h"], expected);
    }
}
