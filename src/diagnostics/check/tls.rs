//! TLS for the check. The certificate is always verified (against the system's roots or
//! `--ca`); the verifier records the verdict, so with `--insecure` a bad certificate becomes a
//! warning and the check goes on instead of stopping. Handshake errors are turned into what they
//! mean for the user: wrong mode for the port, untrusted chain, wrong name, expired, old TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::PeerIncompatible;
use rustls::{AlertDescription, CertificateError, ClientConfig, Error, InvalidMessage};

use crate::client::{self, CertificateVerifier};

/// A client configuration and the verifier inside it.
pub struct Tls {
    pub config: Arc<ClientConfig>,
    verifier: Arc<CertificateVerifier>,
    /// Where the trusted roots came from, for the report.
    pub trust: String,
}

impl Tls {
    /// `ca`: a PEM file of trusted certificates instead of the system's roots.
    pub fn new(ca: Option<&Path>, insecure: bool) -> Result<Tls, String> {
        let (roots, trust) = match ca {
            Some(path) => (
                client::file_roots(path).map_err(|e| format!("--ca {e}"))?,
                format!("trusted via --ca {}", path.display()),
            ),
            None => (
                client::system_roots(),
                "trusted by the system's CA store".to_string(),
            ),
        };
        // The verifier always checks and records; --insecure only lets a bad chain through.
        let verifier = Arc::new(CertificateVerifier::new(roots, insecure));
        Ok(Tls {
            config: client::config_with_verifier(verifier.clone())?,
            verifier,
            trust,
        })
    }

    /// The certificate error of the last handshake (`None`: the chain was trusted).
    pub fn certificate_error(&self) -> Option<Error> {
        self.verifier.verdict()
    }
}

/// What went wrong in a handshake: a short meaning and the advice.
pub struct Explained {
    pub meaning: String,
    pub advice: String,
}

fn explained(meaning: impl Into<String>, advice: impl Into<String>) -> Explained {
    Explained {
        meaning: meaning.into(),
        advice: advice.into(),
    }
}

/// True when the peer answered a ClientHello with something that is not TLS at all: bytes like
/// "220 " make rustls complain about the record's content type or version.
pub fn is_plaintext_answer(error: &Error) -> bool {
    matches!(
        error,
        Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion
        )
    )
}

pub fn explain_error(error: &Error, host: &str, insecure_hint: bool) -> Explained {
    match error {
        Error::InvalidCertificate(certificate) => {
            explain_certificate(certificate, host, insecure_hint)
        }
        Error::AlertReceived(AlertDescription::ProtocolVersion)
        | Error::PeerIncompatible(
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig,
        ) => explained(
            "the server offers only TLS older than 1.2",
            "The server supports only TLS 1.0 or 1.1, which are obsolete and refused by current \
             mail clients. The server's TLS configuration must allow TLS 1.2 or 1.3.",
        ),
        Error::AlertReceived(AlertDescription::HandshakeFailure) | Error::PeerIncompatible(_) => {
            explained(
                format!("no common TLS parameters ({error})"),
                "Client and server share no cipher suite or key exchange: the server's TLS \
             configuration is outdated or unusual. It should allow TLS 1.2/1.3 with modern \
             (ECDHE, AES-GCM or ChaCha20) cipher suites.",
            )
        }
        other => explained(
            format!("TLS handshake failed: {other}"),
            "The TLS handshake failed; the --verbose transcript shows where.",
        ),
    }
}

fn explain_certificate(error: &CertificateError, host: &str, insecure_hint: bool) -> Explained {
    // Only an unknown issuer can be fixed by trusting the certificate with --ca.
    let next = match (insecure_hint, error) {
        (false, _) => "",
        (true, CertificateError::UnknownIssuer) => {
            " To continue the check anyway, give --ca FILE with the certificate (or its CA), or \
             --insecure."
        }
        (true, _) => " To continue the check anyway, give --insecure.",
    };
    match error {
        CertificateError::UnknownIssuer => explained(
            "certificate chain not trusted (unknown issuer)",
            format!(
                "The server's certificate chain does not lead to a trusted CA: the certificate \
                 is self-signed or from a private CA, or the server does not send its \
                 intermediate certificates. Mail clients will refuse it. Use a certificate from a \
                 public CA with the full chain, or make clients trust it explicitly.{next}"
            ),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let presented = match error {
                CertificateError::NotValidForNameContext { presented, .. } => {
                    let names: Vec<&str> = presented.iter().map(|n| bare_name(n)).collect();
                    format!(" (it names: {})", names.join(", "))
                }
                _ => String::new(),
            };
            explained(
                format!("certificate not valid for {host}{presented}"),
                format!(
                    "The certificate does not name {host}{presented}. Connect with the host name \
                     the certificate was issued for, or get a certificate that includes \
                     {host}.{next}"
                ),
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let when = match error {
                CertificateError::ExpiredContext { not_after, .. } => {
                    format!(" on {}", date(not_after.as_secs()))
                }
                _ => String::new(),
            };
            explained(
                format!("certificate expired{when}"),
                format!(
                    "The server's certificate expired{when}. Mail clients will refuse it; the \
                     server needs a renewed certificate (and a reload).{next}"
                ),
            )
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => explained(
            "certificate not valid yet",
            format!(
                "The certificate's validity starts in the future: check the clock of this \
                 machine and of the server.{next}"
            ),
        ),
        other => explained(
            format!("certificate rejected: {other:?}"),
            format!("The server's certificate was rejected ({other:?}).{next}"),
        ),
    }
}

/// rustls presents names as `DnsName("mail.example.com")`; the report wants the name.
fn bare_name(presented: &str) -> &str {
    match (presented.find('"'), presented.rfind('"')) {
        (Some(start), Some(end)) if end > start => &presented[start + 1..end],
        _ => presented,
    }
}

/// `notAfter` of a DER certificate, in seconds since 1970: the verifier accepts a certificate
/// that expires tomorrow, but a doctor should say so. Only the fixed leading fields of
/// TBSCertificate are walked (RFC 5280 §4.1).
pub fn not_after(der: &[u8]) -> Option<u64> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest, 0xa0)?.1; // version
    }
    rest = element(rest, 0x02)?.1; // serialNumber
    rest = element(rest, 0x30)?.1; // signature
    rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let (_, _, after) = any_element(validity)?; // notBefore
    let (tag, time, _) = any_element(after)?;
    parse_time(tag, time)
}

/// One DER element with the expected tag: (contents, rest).
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = any_element(input)?;
    (found == tag).then_some((contents, rest))
}

fn any_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = input.split_at_checked(count)?;
        input = rest;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, rest) = input.split_at_checked(length)?;
    Some((tag, contents, rest))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn parse_time(tag: u8, bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |at: usize| -> Option<i64> { rest.get(at..at + 2)?.parse().ok() };
    let days = crate::timefmt::days_from_civil(year, field(0)?, field(2)?);
    let seconds = days * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?;
    u64::try_from(seconds).ok()
}

/// `2026-05-01`
pub fn date(seconds: u64) -> String {
    let mut date = crate::timefmt::rfc3339_unix(seconds);
    date.truncate(10);
    date
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_after_of_generated_certificates() {
        let mut params = rcgen::CertificateParams::new(vec!["mail.example.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 2);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let seconds = not_after(certificate.der()).unwrap();
        assert_eq!(date(seconds), "2049-12-31");

        // After 2049 the GeneralizedTime form is used.
        let mut params = rcgen::CertificateParams::new(vec!["x.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2051, 3, 1);
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(date(not_after(certificate.der()).unwrap()), "2051-03-01");
    }

    #[test]
    fn garbage_is_not_a_date() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(bare_name("DnsName(\"mx.example.com\")"), "mx.example.com");
        assert_eq!(bare_name("192.0.2.1"), "192.0.2.1");
    }
}
