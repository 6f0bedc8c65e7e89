//! The author addresses of a message: every mailbox in its From: header fields (RFC 5322
//! §3.6.2), for the optional check that a user sends only as itself.
//!
//! Written here rather than taken from a MIME parser: only the header section is read, only
//! one field matters, and what is needed is the addresses, not decoded display names. The
//! address list grammar (§3.4) is followed with its comments, quoted strings, angle brackets
//! and groups, plus the obsolete route syntax (§4.4). Anything that does not make sense as a
//! list of addresses is `Unreadable`, never guessed at: the check must not be fooled into
//! approving an address it misread.

use super::address::find_unquoted;

/// More authors than this in one message is not mail a person writes; it is refused as
/// unreadable rather than looked up one by one.
const MAX_ADDRESSES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFrom {
    /// The message has no From: field.
    Absent,
    /// The addresses of all From: fields, in order, without duplicates.
    Addresses(Vec<String>),
    Unreadable,
}

/// The From: addresses of `message` (CRLF line endings, as the DATA receiver delivers it).
pub fn addresses(message: &[u8]) -> HeaderFrom {
    let mut found: Option<Vec<String>> = None;
    // Seen addresses in a set: a From: field folded over megabytes must not cost a quadratic
    // number of comparisons.
    let mut seen = std::collections::HashSet::new();
    for field in header_fields(message) {
        let Some(body) = field_body(&field, b"from") else {
            continue;
        };
        let Some(list) = std::str::from_utf8(&body).ok().and_then(address_list) else {
            return HeaderFrom::Unreadable;
        };
        let all = found.get_or_insert_with(Vec::new);
        for address in list {
            if seen.insert(address.clone()) {
                all.push(address);
                if all.len() > MAX_ADDRESSES {
                    return HeaderFrom::Unreadable;
                }
            }
        }
    }
    match found {
        None => HeaderFrom::Absent,
        Some(addresses) if addresses.is_empty() => HeaderFrom::Unreadable,
        Some(addresses) => HeaderFrom::Addresses(addresses),
    }
}

/// The unfolded fields of the header section, which ends at the first empty line.
fn header_fields(message: &[u8]) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        match (line[0], fields.last_mut()) {
            // A continuation line: unfolding removes only the line break (§2.2.3).
            (b' ' | b'\t', Some(field)) => field.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    fields
}

/// The body of `field` if its name is `name` (case-insensitive; blanks before the colon are
/// the obsolete syntax of §4.5).
fn field_body(field: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let colon = field.iter().position(|&b| b == b':')?;
    let field_name = field[..colon].trim_ascii_end();
    field_name
        .eq_ignore_ascii_case(name)
        .then(|| field[colon + 1..].to_vec())
}

/// The addresses of an address list; `None` if it is not one.
fn address_list(body: &str) -> Option<Vec<String>> {
    let mut addresses = Vec::new();
    for mailbox in split_mailboxes(body)? {
        let mailbox = mailbox.trim();
        if !mailbox.is_empty() {
            addresses.push(address_of(mailbox)?);
        }
    }
    Some(addresses)
}

/// Splits an address list into mailboxes, with comments removed and group names dropped:
/// commas separate mailboxes and `name:` ... `;` encloses a group, except inside quoted
/// strings and angle brackets.
fn split_mailboxes(body: &str) -> Option<Vec<String>> {
    let mut mailboxes = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut in_literal, mut in_angle, mut in_group) = (false, false, false, false);
    let mut comment_depth = 0usize;
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if comment_depth > 0 {
            match c {
                '\\' => {
                    chars.next()?;
                }
                '(' => comment_depth += 1,
                ')' => comment_depth -= 1,
                _ => {}
            }
            continue;
        }
        if quoted || in_literal {
            current.push(c);
            match c {
                '\\' => current.push(chars.next()?),
                '"' if quoted => quoted = false,
                ']' if in_literal => in_literal = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                current.push(c);
            }
            // A domain literal such as [IPv6:2001:db8::1] holds colons of its own.
            '[' => {
                in_literal = true;
                current.push(c);
            }
            '(' => {
                comment_depth = 1;
                current.push(' ');
            }
            // Inside angle brackets only the closing one matters (a route has , and :).
            '>' if in_angle => {
                in_angle = false;
                current.push(c);
            }
            '<' if in_angle => return None,
            _ if in_angle => current.push(c),
            '<' => {
                in_angle = true;
                current.push(c);
            }
            ',' => mailboxes.push(std::mem::take(&mut current)),
            ':' if !in_group => {
                // The group's display name is not an address.
                in_group = true;
                current.clear();
            }
            ';' if in_group => {
                in_group = false;
                mailboxes.push(std::mem::take(&mut current));
            }
            '>' | ':' | ';' => return None,
            _ => current.push(c),
        }
    }
    if quoted || in_literal || in_angle || in_group || comment_depth > 0 {
        return None;
    }
    mailboxes.push(current);
    Some(mailboxes)
}

/// The address of one mailbox: the part in angle brackets (without an obsolete route), or the
/// whole of a bare addr-spec.
fn address_of(mailbox: &str) -> Option<String> {
    let spec = match find_unquoted(mailbox, b'<') {
        Some(open) => {
            let close = open + mailbox[open..].find('>')?;
            if !mailbox[close + 1..].trim().is_empty() {
                return None;
            }
            let inside = &mailbox[open + 1..close];
            // `<@relay1,@relay2:user@example.com>` (RFC 5322 §4.4).
            match inside.rsplit_once(':') {
                Some((route, address)) if route.trim_start().starts_with('@') => address,
                _ => inside,
            }
        }
        None => mailbox,
    };
    addr_spec(spec)
}

/// `local@domain` with the blanks the obsolete syntax allows around its parts removed;
/// `None` unless both parts are there and free of blanks inside.
fn addr_spec(text: &str) -> Option<String> {
    let (local, domain) = text.trim().rsplit_once('@')?;
    let (local, domain) = (local.trim(), domain.trim());
    let has_blank_inside =
        |part: &str| !part.starts_with('"') && part.contains(char::is_whitespace);
    if local.is_empty() || domain.is_empty() || has_blank_inside(local) || has_blank_inside(domain)
    {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(headers: &str) -> HeaderFrom {
        addresses(format!("{headers}\r\n\r\nFrom: body@example.com\r\n").as_bytes())
    }

    fn found(list: &[&str]) -> HeaderFrom {
        HeaderFrom::Addresses(list.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn the_common_forms() {
        assert_eq!(from("From: a@example.com"), found(&["a@example.com"]));
        assert_eq!(
            from("from:Alice <alice@example.com>"),
            found(&["alice@example.com"])
        );
        assert_eq!(
            from("From: \"Smith, John\" <john@example.com>, bob@example.org"),
            found(&["john@example.com", "bob@example.org"])
        );
        assert_eq!(
            from("From: =?UTF-8?B?w4lsaXNl?= <elise@example.com>"),
            found(&["elise@example.com"])
        );
        assert_eq!(
            from("From: jdoe@example.com (John Doe, \"the boss\")"),
            found(&["jdoe@example.com"])
        );
    }

    #[test]
    fn folded_repeated_and_grouped_fields() {
        let headers = "Received: from x\r\nFrom: Alice\r\n <alice@example.com>,\r\n\tbob@example.com\r\nSubject: hi\r\nFROM : Team: carol@example.com, alice@example.com;";
        assert_eq!(
            from(headers),
            found(&["alice@example.com", "bob@example.com", "carol@example.com"])
        );
    }

    #[test]
    fn tricky_display_names_do_not_hide_or_invent_addresses() {
        // An address-looking display name is not the address.
        assert_eq!(
            from("From: \"ceo@bank.example\" <me@example.com>"),
            found(&["me@example.com"])
        );
        assert_eq!(
            from("From: \"a <ceo@bank.example>\" <me@example.com>"),
            found(&["me@example.com"])
        );
        assert_eq!(
            from("From: me@example.com (<ceo@bank.example>)"),
            found(&["me@example.com"])
        );
        assert_eq!(
            from("From: <@relay.example:me@example.com>"),
            found(&["me@example.com"])
        );
        assert_eq!(
            from("From: me@[IPv6:2001:db8::1], <you@[192.0.2.1]>"),
            found(&["me@[IPv6:2001:db8::1]", "you@[192.0.2.1]"])
        );
        assert_eq!(
            from("From: \"quoted local\"@example.com"),
            found(&["\"quoted local\"@example.com"])
        );
    }

    #[test]
    fn absent_and_unreadable() {
        assert_eq!(from("Subject: no author"), HeaderFrom::Absent);
        assert_eq!(addresses(b""), HeaderFrom::Absent);
        for broken in [
            "From: John Smith",
            "From:",
            "From: undisclosed:;",
            "From: <a@example.com",
            "From: \"unterminated <a@example.com>",
            "From: a@example.com (open comment",
            "From: <a@example.com> trailing",
            "From: a@exam ple.com",
            "From: a@example.com; b@example.com",
            "From: a@b.example\r\nFrom: nobody",
        ] {
            assert_eq!(from(broken), HeaderFrom::Unreadable, "{broken:?}");
        }
        let many: Vec<String> = (0..=MAX_ADDRESSES)
            .map(|i| format!("u{i}@example.com"))
            .collect();
        assert_eq!(
            from(&format!("From: {}", many.join(", "))),
            HeaderFrom::Unreadable
        );
    }

    #[test]
    fn only_the_header_section_counts() {
        assert_eq!(
            addresses(b"Subject: x\r\n\r\nFrom: a@example.com\r\n"),
            HeaderFrom::Absent
        );
        assert_eq!(
            addresses("From: Zoë <zoë@exämple.com>\r\n".as_bytes()),
            found(&["zoë@exämple.com"])
        );
        assert_eq!(
            addresses(b"From: \xff@example.com\r\n"),
            HeaderFrom::Unreadable
        );
    }
}
