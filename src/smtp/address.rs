//! Mailbox and path syntax of RFC 5321 §4.1.2, with the UTF-8 extension of RFC 6531.

use std::fmt;

use crate::invisible::invisible;

/// A syntactically valid mailbox `local@domain`, kept as the client wrote it (minus any source
/// route, which RFC 5321 §4.1.1.3 says to ignore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    address: String,
    at: usize,
}

impl Mailbox {
    pub fn as_str(&self) -> &str {
        &self.address
    }

    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }

    pub fn is_ascii(&self) -> bool {
        self.address.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// Why an address was refused; the text goes into the 501 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError(pub &'static str);

const MAX_LOCAL_PART: usize = 64; // RFC 5321 §4.5.3.1.1
const MAX_DOMAIN: usize = 255; // §4.5.3.1.2
/// §4.5.3.1.3: 256 octets including the angle brackets.
const MAX_PATH: usize = 254;

/// Splits `<path> [params]` into the path (without angle brackets) and the parameter text.
/// Tolerates one space after the colon, which many clients send.
pub fn split_path(argument: &str) -> Result<(&str, &str), AddressError> {
    let argument = argument.trim_start_matches(' ');
    let rest = argument
        .strip_prefix('<')
        .ok_or(AddressError("the address must be enclosed in <>"))?;
    let end = find_unquoted(rest, b'>').ok_or(AddressError("missing closing >"))?;
    let params = &rest[end + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(AddressError(
            "expected a space between > and the parameters",
        ));
    }
    Ok((&rest[..end], params.trim_matches(' ')))
}

/// The byte index of the first ASCII `target` outside a quoted string (a quoted local part or
/// display name may hold any character, escaped quotes included).
pub(super) fn find_unquoted(text: &str, target: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if byte == target && !quoted => return Some(index),
            _ => {}
        }
    }
    None
}

/// Parses the inside of `<...>` as a mailbox, dropping a source route (`@a,@b:`).
pub fn parse_mailbox(path: &str) -> Result<Mailbox, AddressError> {
    if path.len() > MAX_PATH {
        return Err(AddressError("the address is longer than 254 octets"));
    }
    let path = strip_source_route(path)?;
    let at = local_part_end(path)?;
    let (local, domain) = (&path[..at], &path[at + 1..]);
    if local.len() > MAX_LOCAL_PART {
        return Err(AddressError("the local part is longer than 64 octets"));
    }
    validate_domain(domain)?;
    Ok(Mailbox {
        address: path.to_string(),
        at,
    })
}

fn strip_source_route(path: &str) -> Result<&str, AddressError> {
    if !path.starts_with('@') {
        return Ok(path);
    }
    let colon = path
        .find(':')
        .ok_or(AddressError("malformed source route"))?;
    for hop in path[..colon].split(',') {
        let domain = hop
            .strip_prefix('@')
            .ok_or(AddressError("malformed source route"))?;
        validate_domain(domain)?;
    }
    Ok(&path[colon + 1..])
}

/// Validates the local part (dot-string or quoted-string) and returns the index of the `@`.
fn local_part_end(path: &str) -> Result<usize, AddressError> {
    if path.starts_with('"') {
        let close = quoted_string_end(path)?;
        return match path.as_bytes().get(close + 1) {
            Some(b'@') => Ok(close + 1),
            _ => Err(AddressError("expected @domain after the quoted local part")),
        };
    }
    let at = path
        .rfind('@')
        .ok_or(AddressError("the address has no @domain"))?;
    let local = &path[..at];
    refuse_invisible(local)?;
    let valid = !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
    if valid {
        Ok(at)
    } else {
        Err(AddressError("invalid characters or dots in the local part"))
    }
}

/// A local part with a character that looks like nothing or reorders the text (U+200B, U+202E,
/// U+2028, U+FEFF...) would be a second mailbox that looks like the first, and would show as
/// something else in replies, logs and `queue list`: RFC 6531 allows UTF-8, not deception.
fn refuse_invisible(local: &str) -> Result<(), AddressError> {
    if local
        .chars()
        .any(|c| !c.is_ascii() && invisible(c).is_some())
    {
        return Err(AddressError(
            "the local part contains an invisible or text-direction character (such as U+200B, \
             U+202E, U+2028 or U+FEFF); type the address again instead of pasting it",
        ));
    }
    Ok(())
}

/// Returns the index of the closing quote of a quoted-string starting at index 0.
fn quoted_string_end(path: &str) -> Result<usize, AddressError> {
    refuse_invisible(path)?;
    let mut escaped = false;
    for (index, ch) in path.char_indices().skip(1) {
        if escaped {
            if !(' '..='~').contains(&ch) {
                return Err(AddressError("invalid escape in the quoted local part"));
            }
            escaped = false;
            continue;
        }
        match ch {
            '\\' => escaped = true,
            '"' => return Ok(index),
            c if c.is_control() => return Err(AddressError("control character in the address")),
            _ => {}
        }
    }
    Err(AddressError("unterminated quoted local part"))
}

/// RFC 5322 atext, widened to any non-ASCII character for SMTPUTF8 (RFC 6531 §3.3); whether
/// non-ASCII is allowed in this transaction is the session's decision.
fn is_atext(ch: char) -> bool {
    ch.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(ch)
        || (!ch.is_ascii() && !ch.is_control())
}

fn validate_domain(domain: &str) -> Result<(), AddressError> {
    if domain.is_empty() {
        return Err(AddressError("the domain is empty"));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError("the domain is longer than 255 octets"));
    }
    if let Some(literal) = domain.strip_prefix('[') {
        return validate_address_literal(literal);
    }
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| {
                c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
            })
    });
    if labels_ok {
        Ok(())
    } else {
        Err(AddressError("invalid domain name"))
    }
}

fn validate_address_literal(literal: &str) -> Result<(), AddressError> {
    let inner = literal
        .strip_suffix(']')
        .ok_or(AddressError("unterminated address literal"))?;
    let valid = match inner.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    if valid {
        Ok(())
    } else {
        Err(AddressError("invalid address literal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_path_and_parameters() {
        assert_eq!(split_path("<a@b.c> SIZE=10"), Ok(("a@b.c", "SIZE=10")));
        assert_eq!(split_path(" <a@b.c>"), Ok(("a@b.c", "")));
        assert_eq!(split_path("<>"), Ok(("", "")));
        assert_eq!(split_path(r#"<"a>b"@c.d>"#), Ok((r#""a>b"@c.d"#, "")));
        assert!(split_path("a@b.c").is_err());
        assert!(split_path("<a@b.c").is_err());
        assert!(split_path("<a@b.c>SIZE=1").is_err());
    }

    #[test]
    fn accepts_valid_mailboxes() {
        for address in [
            "user@example.com",
            "first.last+tag@sub.example.co.uk",
            "\"john doe\"@example.com",
            "u@[192.0.2.1]",
            "u@[IPv6:2001:db8::1]",
            "jörg@bücher.example",
        ] {
            let mailbox = parse_mailbox(address).unwrap_or_else(|e| panic!("{address}: {e:?}"));
            assert_eq!(mailbox.as_str(), address);
        }
    }

    #[test]
    fn drops_source_routes() {
        let mailbox = parse_mailbox("@relay.example,@b.example:user@example.com").unwrap();
        assert_eq!(mailbox.as_str(), "user@example.com");
        assert_eq!(mailbox.local_part(), "user");
        assert_eq!(mailbox.domain(), "example.com");
    }

    #[test]
    fn refuses_invisible_and_reordering_characters_in_the_local_part() {
        for address in [
            "ad\u{202E}nim@example.com",
            "a\u{2028}b@example.com",
            "a\u{200B}@example.com",
            "\u{FEFF}a@example.com",
            "\"a\u{2066}b\"@example.com",
        ] {
            let error = parse_mailbox(address).unwrap_err();
            assert!(
                error.0.contains("invisible or text-direction"),
                "{address:?}"
            );
        }
        assert!(parse_mailbox("jürgen@example.com").is_ok());
        assert!(parse_mailbox("用户@例子.广告").is_ok());
    }

    #[test]
    fn refuses_invalid_mailboxes() {
        for address in [
            "",
            "user",
            "user@",
            "@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "user@-bad.example",
            "user@exa_mple.com",
            "user@[300.1.1.1]",
            "\"open@example.com",
        ] {
            assert!(
                parse_mailbox(address).is_err(),
                "{address} should be refused"
            );
        }
        assert!(parse_mailbox(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(parse_mailbox(&format!("a@{}.com", "b".repeat(300))).is_err());
        let longest = format!(
            "{}@{}.{}.{}.example",
            "a".repeat(64),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(59)
        );
        assert_eq!(longest.len(), 254);
        assert!(parse_mailbox(&longest).is_ok());
        assert!(parse_mailbox(&format!("x{longest}")).is_err());
    }

    #[test]
    fn reports_non_ascii() {
        assert!(parse_mailbox("a@example.com").unwrap().is_ascii());
        assert!(!parse_mailbox("ü@example.com").unwrap().is_ascii());
    }
}
