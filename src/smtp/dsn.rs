//! The delivery status notification parameters of RFC 3461: `RET` and `ENVID` on MAIL, `NOTIFY`
//! and `ORCPT` on RCPT, and the xtext encoding their values use (§4). Each parser takes the
//! value after `KEYWORD=` (`None` when the keyword came without `=`) and returns it as the
//! envelope stores it, or the 501 reply that says what is wrong with it.

use super::reply::{self, Reply};
use crate::bounce::Notify;

/// RFC 3461 §4.4: an envelope identifier is at most 100 characters.
pub const MAX_ENVID: usize = 100;
/// RFC 3461 §4.2: the original recipient address is at most 500 characters before encoding.
pub const MAX_ORCPT: usize = 500;

/// `RET=FULL` or `RET=HDRS` (§4.3), in any letter case; stored upper-cased.
pub fn ret(value: Option<&str>) -> Result<String, Reply> {
    match value {
        Some(value)
            if ["FULL", "HDRS"]
                .iter()
                .any(|v| value.eq_ignore_ascii_case(v)) =>
        {
            Ok(value.to_ascii_uppercase())
        }
        _ => Err(reply::BAD_RET),
    }
}

/// `ENVID=xtext` (§4.4): decoded, it must be 1 to 100 graphic US-ASCII characters.
pub fn envid(value: Option<&str>) -> Result<String, Reply> {
    let decoded = value
        .and_then(|value| decode_xtext(value, b'!'))
        .filter(|decoded| !decoded.is_empty())
        .ok_or(reply::BAD_ENVID)?;
    if decoded.len() > MAX_ENVID {
        return Err(reply::ENVID_TOO_LONG);
    }
    Ok(decoded)
}

/// `NOTIFY=NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE` and `DELAY` (§4.1), in
/// any letter case and order; stored upper-cased in the client's order. Stricter than
/// [`Notify::parse`], which the delivery side reads it with: a keyword named twice is refused.
pub fn notify(value: Option<&str>) -> Result<String, Reply> {
    let value = value.ok_or(reply::BAD_NOTIFY)?.to_ascii_uppercase();
    let words: Vec<&str> = value.split(',').collect();
    let known = |word: &&str| matches!(*word, "NEVER" | "SUCCESS" | "FAILURE" | "DELAY");
    if !words.iter().all(known) {
        return Err(reply::BAD_NOTIFY);
    }
    let repeated = words
        .iter()
        .enumerate()
        .any(|(at, word)| words[..at].contains(word));
    if repeated {
        return Err(reply::NOTIFY_REPEATED);
    }
    // What is left to refuse is NEVER with another keyword.
    Notify::parse(&value).map_err(|_| reply::NOTIFY_NEVER_COMBINED)?;
    Ok(value)
}

/// `ORCPT=addr-type;xtext` (§4.2): the address type is an atom, kept as given; the address is
/// decoded and must be 1 to 500 printable US-ASCII characters (a space is allowed: it occurs
/// in quoted local parts). Stored as `addr-type;address`.
pub fn orcpt(value: Option<&str>) -> Result<String, Reply> {
    let (addr_type, encoded) = value
        .and_then(|value| value.split_once(';'))
        .filter(|(addr_type, encoded)| is_atom(addr_type) && !encoded.is_empty())
        .ok_or(reply::BAD_ORCPT)?;
    let address = decode_xtext(encoded, b' ').ok_or(reply::BAD_ORCPT_XTEXT)?;
    if address.len() > MAX_ORCPT {
        return Err(reply::ORCPT_TOO_LONG);
    }
    Ok(format!("{addr_type};{address}"))
}

/// An RFC 5322 atom (atext), without the `=` that cannot occur in an ESMTP parameter value
/// (RFC 5321 §4.1.2).
fn is_atom(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~".contains(&b))
}

/// Decodes xtext (RFC 3461 §4): `+` and two upper-case hex digits stand for that octet, any
/// other character from `!` to `~` but `+` and `=` for itself. `None` for anything else, and
/// when a decoded character is outside `lowest..=b'~'` (no control characters, no DEL, no
/// 8-bit octets, so the value can go into a DSN's header fields as it is).
pub fn decode_xtext(text: &str, lowest: u8) -> Option<String> {
    let mut decoded = String::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        let octet = match byte {
            b'+' => hex_digit(bytes.next()?)? << 4 | hex_digit(bytes.next()?)?,
            b'!'..=b'~' if byte != b'=' => byte,
            _ => return None,
        };
        if !(lowest..=b'~').contains(&octet) {
            return None;
        }
        decoded.push(char::from(octet));
    }
    Some(decoded)
}

/// An upper-case hexadecimal digit's value (xtext does not allow lower case).
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ret_is_full_or_hdrs_in_any_case() {
        assert_eq!(ret(Some("full")), Ok("FULL".into()));
        assert_eq!(ret(Some("Hdrs")), Ok("HDRS".into()));
        for bad in [None, Some(""), Some("HEADERS"), Some("FULL,HDRS")] {
            assert_eq!(ret(bad), Err(reply::BAD_RET), "{bad:?}");
        }
    }

    #[test]
    fn xtext_decodes_hexchars_and_refuses_everything_else() {
        assert_eq!(decode_xtext("abc+2Bdef", b'!').as_deref(), Some("abc+def"));
        assert_eq!(decode_xtext("+3D+2B+41", b'!').as_deref(), Some("=+A"));
        assert_eq!(decode_xtext("", b'!').as_deref(), Some(""));
        assert_eq!(decode_xtext("a+20b", b' ').as_deref(), Some("a b"));
        for bad in [
            "a+2b",  // lower-case hex
            "a+2",   // one digit
            "a+",    // no digits
            "a+G0",  // not hex
            "a=b",   // = must be encoded
            "a b",   // space must be encoded
            "a+20b", // space not allowed here
            "a+0Db", // CR
            "a+00b", // NUL
            "a+7Fb", // DEL
            "a+C3b", // 8-bit
            "jörg",  // raw non-ASCII
            "a\tb",
        ] {
            assert_eq!(decode_xtext(bad, b'!'), None, "{bad:?}");
        }
        assert_eq!(decode_xtext("a+1Fb", b' '), None);
    }

    #[test]
    fn envid_is_decoded_and_at_most_100_characters() {
        assert_eq!(envid(Some("abc+2Bdef")), Ok("abc+def".into()));
        assert_eq!(envid(Some(&"x".repeat(100))), Ok("x".repeat(100)));
        // The limit is on the decoded value: 100 encoded "+2B" are 300 octets on the wire.
        assert_eq!(envid(Some(&"+2B".repeat(100))), Ok("+".repeat(100)));
        assert_eq!(envid(Some(&"x".repeat(101))), Err(reply::ENVID_TOO_LONG));
        for bad in [None, Some(""), Some("a+2"), Some("a+20b"), Some("a=b")] {
            assert_eq!(envid(bad), Err(reply::BAD_ENVID), "{bad:?}");
        }
    }

    #[test]
    fn notify_is_never_alone_or_a_list_without_repeats() {
        assert_eq!(notify(Some("never")), Ok("NEVER".into()));
        assert_eq!(notify(Some("success")), Ok("SUCCESS".into()));
        assert_eq!(
            notify(Some("Delay,success,FAILURE")),
            Ok("DELAY,SUCCESS,FAILURE".into())
        );
        for combined in ["NEVER,SUCCESS", "FAILURE,NEVER", "never,delay"] {
            assert_eq!(
                notify(Some(combined)),
                Err(reply::NOTIFY_NEVER_COMBINED),
                "{combined}"
            );
        }
        for repeated in ["SUCCESS,SUCCESS", "never,NEVER", "DELAY,FAILURE,delay"] {
            assert_eq!(
                notify(Some(repeated)),
                Err(reply::NOTIFY_REPEATED),
                "{repeated}"
            );
        }
        for bad in [
            None,
            Some(""),
            Some("ALWAYS"),
            Some("SUCCESS,"),
            Some(",FAILURE"),
            Some("SUCCESS FAILURE"),
            Some("SUCCESS,,FAILURE"),
            Some("NEVER,NEVER,BOGUS"),
        ] {
            assert_eq!(notify(bad), Err(reply::BAD_NOTIFY), "{bad:?}");
        }
    }

    #[test]
    fn notify_values_stored_are_ones_the_delivery_side_reads() {
        for value in ["NEVER", "SUCCESS,FAILURE", "DELAY"] {
            let stored = notify(Some(value)).unwrap();
            assert!(Notify::parse(&stored).is_ok(), "{stored}");
        }
    }

    #[test]
    fn orcpt_keeps_the_address_type_and_decodes_the_address() {
        assert_eq!(
            orcpt(Some("rfc822;orig+40example.test")),
            Ok("rfc822;orig@example.test".into())
        );
        assert_eq!(
            orcpt(Some("RFC822;+22john+20doe+22@example.com")),
            Ok("RFC822;\"john doe\"@example.com".into())
        );
        assert_eq!(
            orcpt(Some("utf-8;a;b@example.com")),
            Ok("utf-8;a;b@example.com".into())
        );
        let longest = format!("rfc822;{}", "a".repeat(500));
        assert_eq!(orcpt(Some(&longest)).map(|v| v.len()), Ok(507));
        let encoded_longest = format!("rfc822;{}", "+2B".repeat(500));
        assert!(orcpt(Some(&encoded_longest)).is_ok());
        assert_eq!(
            orcpt(Some(&format!("rfc822;{}", "a".repeat(501)))),
            Err(reply::ORCPT_TOO_LONG)
        );
        for bad in [
            None,
            Some(""),
            Some("rfc822"),
            Some("rfc822;"),
            Some(";a@b.c"),
            Some("rfc 822;a@b.c"),
            Some("rfc\"822;a@b.c"),
            Some("rfc(822);a@b.c"),
        ] {
            assert_eq!(orcpt(bad), Err(reply::BAD_ORCPT), "{bad:?}");
        }
        for bad in [
            "rfc822;a+2",
            "rfc822;a=b@c.d",
            "rfc822;a+0Ab@c.d",
            "rfc822;ü@c.d",
        ] {
            assert_eq!(orcpt(Some(bad)), Err(reply::BAD_ORCPT_XTEXT), "{bad:?}");
        }
    }
}
