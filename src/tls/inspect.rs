//! Just enough DER reading to tell whether a generated certificate is still the one Portcullis
//! would make today: its subject CN, its validity and whether it says it is for a TLS server.
//! Nothing here verifies a signature; webpki does that where it matters.

use time::{Date, Month, PrimitiveDateTime, Time};

/// What start-up needs to know about a certificate it generated earlier.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub common_name: Option<String>,
    /// Seconds since the UNIX epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Whether the extended key usage names id-kp-serverAuth.
    pub server_auth: bool,
}

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// Reads an X.509 certificate's DER, or says which part is malformed.
pub fn summarize(der: &[u8]) -> Result<Summary, String> {
    let (certificate, _) = expect(der, 0x30, "certificate")?;
    let (tbs, _) = expect(certificate, 0x30, "TBSCertificate")?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for part in ["serial number", "signature algorithm", "issuer"] {
        rest = element(rest).map_err(|e| format!("{part}: {e}"))?.2;
    }
    let (validity, rest) = expect(rest, 0x30, "validity")?;
    let (subject, rest) = expect(rest, 0x30, "subject")?;
    let (not_before, validity) = time_of(validity)?;
    let (not_after, _) = time_of(validity)?;
    Ok(Summary {
        common_name: common_name(subject)?,
        not_before,
        not_after,
        server_auth: server_auth(rest)?,
    })
}

/// One TLV: (tag, contents, what follows it).
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let truncated = || "truncated DER".to_string();
    let (&tag, input) = input.split_first().ok_or_else(truncated)?;
    let (&first, mut input) = input.split_first().ok_or_else(truncated)?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return Err("unsupported DER length".into());
        }
        let (bytes, after) = input.split_at(count);
        input = after;
        bytes.iter().fold(0, |n, &b| (n << 8) | usize::from(b))
    };
    if input.len() < length {
        return Err(truncated());
    }
    let (contents, rest) = input.split_at(length);
    Ok((tag, contents, rest))
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    match element(input) {
        Ok((found, contents, rest)) if found == tag => Ok((contents, rest)),
        Ok((found, _, _)) => Err(format!("{what}: tag {found:#04x}, not {tag:#04x}")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// A UTCTime or GeneralizedTime in UTC ("Z"), as UNIX seconds.
fn time_of(input: &[u8]) -> Result<(i64, &[u8]), String> {
    let (tag, contents, rest) = element(input)?;
    let text = std::str::from_utf8(contents).map_err(|_| "a time that is not ASCII")?;
    let digits = text
        .strip_suffix('Z')
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("time {text:?} is not in UTC"))?;
    let full = match (tag, digits.len()) {
        (0x17, 12) if digits[..2] < *"50" => format!("20{digits}"),
        (0x17, 12) => format!("19{digits}"),
        (0x18, 14) => digits.to_string(),
        _ => return Err(format!("unsupported time {text:?}")),
    };
    Ok((unix_seconds(&full)?, rest))
}

/// "YYYYMMDDHHMMSS" as UNIX seconds.
fn unix_seconds(digits: &str) -> Result<i64, String> {
    let field = |range: std::ops::Range<usize>| digits[range].parse::<u16>().unwrap_or(u16::MAX);
    let bad = |e: time::error::ComponentRange| format!("time {digits}: {e}");
    let month = Month::try_from(u8::try_from(field(4..6)).unwrap_or(0)).map_err(bad)?;
    let date =
        Date::from_calendar_date(i32::from(field(0..4)), month, byte(field(6..8))).map_err(bad)?;
    let time = Time::from_hms(byte(field(8..10)), byte(field(10..12)), byte(field(12..14)))
        .map_err(bad)?;
    Ok(PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp())
}

fn byte(n: u16) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// The first CN in a Name (a SEQUENCE of SETs of {OID, value}).
fn common_name(mut name: &[u8]) -> Result<Option<String>, String> {
    while !name.is_empty() {
        let (set, rest) = expect(name, 0x31, "name")?;
        name = rest;
        let (attribute, _) = expect(set, 0x30, "name attribute")?;
        let (oid, value) = expect(attribute, 0x06, "attribute type")?;
        if oid == OID_COMMON_NAME {
            let (_, text, _) = element(value)?;
            return Ok(Some(String::from_utf8_lossy(text).into_owned()));
        }
    }
    Ok(None)
}

/// Whether the extensions ([3], after the key) include an EKU naming serverAuth.
fn server_auth(mut rest: &[u8]) -> Result<bool, String> {
    while !rest.is_empty() {
        let (tag, contents, after) = element(rest)?;
        rest = after;
        if tag == 0xa3 {
            let (mut extensions, _) = expect(contents, 0x30, "extensions")?;
            while !extensions.is_empty() {
                let (extension, after) = expect(extensions, 0x30, "extension")?;
                extensions = after;
                if let Some(usages) = extended_key_usages(extension)? {
                    return eku_has_server_auth(usages);
                }
            }
        }
    }
    Ok(false)
}

/// The EKU extension's value, if this extension is one.
fn extended_key_usages(extension: &[u8]) -> Result<Option<&[u8]>, String> {
    let (oid, mut rest) = expect(extension, 0x06, "extension id")?;
    if oid != OID_EXT_KEY_USAGE {
        return Ok(None);
    }
    if rest.first() == Some(&0x01) {
        rest = element(rest)?.2;
    }
    Ok(Some(expect(rest, 0x04, "extension value")?.0))
}

fn eku_has_server_auth(value: &[u8]) -> Result<bool, String> {
    let (mut purposes, _) = expect(value, 0x30, "extended key usage")?;
    while !purposes.is_empty() {
        let (oid, after) = expect(purposes, 0x06, "key purpose")?;
        if oid == OID_SERVER_AUTH {
            return Ok(true);
        }
        purposes = after;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_style_certificates_have_no_server_usage_and_the_rcgen_name() {
        let old = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let summary = summarize(old.cert.der()).unwrap();
        assert_eq!(
            summary.common_name.as_deref(),
            Some("rcgen self signed cert")
        );
        assert!(!summary.server_auth);
        assert_eq!(summary.not_before, unix_seconds("19750101000000").unwrap());
        assert_eq!(summary.not_after, unix_seconds("40960101000000").unwrap());
    }

    #[test]
    fn times_are_utc_seconds() {
        assert_eq!(unix_seconds("19700101000000").unwrap(), 0);
        assert_eq!(unix_seconds("20000301000001").unwrap(), 951_868_801);
        assert!(unix_seconds("20001301000000").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x85\x00",
            b"\x30\x02\x30\x05",
            b"\x04\x00",
        ] {
            assert!(summarize(input).is_err(), "{input:?}");
        }
    }
}
