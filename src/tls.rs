//! TLS set-up: the operator's certificate, or a self-signed one generated on first start and kept
//! in the data directory, as the default; per-domain certificates chosen by SNI ([`sni`]).
//! rustls always gets the ring provider explicitly.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};

use crate::smtp::TlsInfo;

mod inspect;
mod sni;

pub use sni::{DomainCertificates, REFRESH_INTERVAL, SniResolver};

/// Where the certificate came from, for the start-up message.
pub enum Origin {
    Configured,
    Generated(PathBuf),
    Reused(PathBuf),
    /// Generated again, and why (see [`RENEW_BEFORE_SECONDS`]).
    Renewed(PathBuf, String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS set-up. The resolver chooses the certificate by SNI; the server keeps its
/// per-domain certificates up to date with [`DomainCertificates`].
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<SniResolver>,
    pub origin: Origin,
}

/// Builds the server TLS configuration. Its default certificate comes from PEM files, or is the
/// self-signed pair in `data_dir/tls`, generated for `hostname`, `localhost`, 127.0.0.1 and ::1
/// when absent, outdated or about to expire.
pub fn server_config(
    files: Option<(&Path, &Path)>,
    data_dir: &Path,
    hostname: &str,
) -> Result<ServerTls, String> {
    let (default, origin) = default_certificate(files, data_dir, hostname)?;
    let resolver = Arc::new(SniResolver::new(Arc::new(default)));
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    Ok(ServerTls {
        config: Arc::new(config),
        resolver,
        origin,
    })
}

/// The certificate for clients that name no domain of their own: `[tls]`'s files, else the
/// self-signed pair (made again when outdated). Read at start and at each reload, so a
/// certificate renewed in place is served after a SIGHUP.
pub fn default_certificate(
    files: Option<(&Path, &Path)>,
    data_dir: &Path,
    hostname: &str,
) -> Result<(CertifiedKey, Origin), String> {
    let (certificate, key, origin) = match files {
        Some((certificate, key)) => (
            certificate.to_path_buf(),
            key.to_path_buf(),
            Origin::Configured,
        ),
        None => self_signed(data_dir, hostname)?,
    };
    Ok((load_certified_key(&certificate, &key)?, origin))
}

/// Reads a PEM certificate chain (the server's own certificate first) and a PEM private key, and
/// checks that the key belongs to that first certificate.
pub fn load_certified_key(chain: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certificates = CertificateDer::pem_file_iter(chain)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{}: cannot read the certificate chain: {e}",
                chain.display()
            )
        })?;
    if certificates.is_empty() {
        return Err(format!("{}: no certificate found", chain.display()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: cannot read the private key: {e}", key.display()))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| format!("{}: unusable private key: {e}", key.display()))?;
    let certified = CertifiedKey::new(certificates, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(format!(
            "{}: the private key does not match the certificate in {} (its first certificate must be the server's own)",
            key.display(),
            chain.display()
        )),
        Err(e) => Err(format!(
            "{}: cannot check the private key against {}: {e}",
            key.display(),
            chain.display()
        )),
    }
}

/// The names among `names` that the server's own certificate is not valid for: clients asking
/// for them would refuse it.
pub fn names_not_covered<'a>(certified: &CertifiedKey, names: &[&'a str]) -> Vec<&'a str> {
    let leaf = certified
        .end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok());
    names
        .iter()
        .copied()
        .filter(|name| {
            let covered = leaf.as_ref().is_some_and(|leaf| {
                ServerName::try_from(*name)
                    .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok())
            });
            !covered
        })
        .collect()
}

fn self_signed(data_dir: &Path, hostname: &str) -> Result<(PathBuf, PathBuf, Origin), String> {
    let dir = data_dir.join("tls");
    let certificate = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let renewal = if certificate.exists() && key.exists() {
        match renewal_reason(&certificate, hostname, now()) {
            None => return Ok((certificate, key, Origin::Reused(dir))),
            Some(reason) => Some(reason),
        }
    } else {
        None
    };
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let generated = generate(hostname, now())?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes())?;
    fs::write(&certificate, generated.cert.pem())
        .map_err(|e| format!("{}: {e}", certificate.display()))?;
    Ok(match renewal {
        Some(reason) => {
            tracing::info!(dir = %dir.display(), %reason, "renewed the generated certificate");
            (certificate, key, Origin::Renewed(dir, reason))
        }
        None => (certificate, key, Origin::Generated(dir)),
    })
}

/// A generated certificate is renewed this long before it expires.
pub const RENEW_BEFORE_SECONDS: i64 = 30 * DAY;
const DAY: i64 = 24 * 60 * 60;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Why the certificate generated earlier should be made again, or `None` to keep it: it expires
/// within [`RENEW_BEFORE_SECONDS`], names another host, or was made by an older Portcullis.
fn renewal_reason(certificate: &Path, hostname: &str, now: i64) -> Option<String> {
    let summary = match CertificateDer::from_pem_file(certificate)
        .map_err(|e| e.to_string())
        .and_then(|der| inspect::summarize(&der))
    {
        Ok(summary) => summary,
        Err(e) => return Some(format!("it cannot be read ({e})")),
    };
    let left = summary.not_after - now;
    if left < RENEW_BEFORE_SECONDS {
        return Some(match left {
            ..0 => "it has expired".to_string(),
            _ => format!("it expires in {} day(s)", left / DAY),
        });
    }
    if summary.common_name.as_deref() != Some(hostname) {
        let name = summary.common_name.unwrap_or_default();
        return Some(format!(
            "it was made for {name:?}, the hostname is {hostname:?}"
        ));
    }
    if !summary.server_auth {
        return Some("it was made by an older version (no TLS server key usage)".to_string());
    }
    None
}

/// The names a generated certificate covers: the hostname, `localhost`, 127.0.0.1 and ::1, each
/// once.
fn subject_names(hostname: &str) -> Vec<String> {
    let mut names = vec![hostname.to_string()];
    for name in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_string());
        }
    }
    names
}

/// A self-signed ECDSA P-256 certificate for a TLS server named `hostname`, valid from a day
/// before `now` for a year.
fn generate(hostname: &str, now: i64) -> Result<rcgen::CertifiedKey, String> {
    let failed = |e: rcgen::Error| format!("cannot generate a certificate: {e}");
    let at = |seconds: i64| {
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|e| format!("cannot generate a certificate: {e}"))
    };
    let mut params = rcgen::CertificateParams::new(subject_names(hostname)).map_err(failed)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params.not_before = at(now - DAY)?;
    params.not_after = at(now + 365 * DAY)?;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let cert = params.self_signed(&key_pair).map_err(failed)?;
    Ok(rcgen::CertifiedKey { cert, key_pair })
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The negotiated version and cipher suite, in the names operators know.
pub fn session_info(connection: &rustls::CommonState) -> TlsInfo {
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let cipher = connection.negotiated_cipher_suite().map_or_else(
        || "unknown".to_string(),
        |suite| format!("{:?}", suite.suite()),
    );
    TlsInfo { version, cipher }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let tls = server_config(None, &dir, "mail.example.test").unwrap();
        assert!(matches!(tls.origin, Origin::Generated(_)));
        let key_mode = fs::metadata(dir.join("tls/key.pem")).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777,
            0o600
        );
        let tls = server_config(None, &dir, "mail.example.test").unwrap();
        assert!(matches!(tls.origin, Origin::Reused(_)));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let error = server_config(
            Some((
                Path::new("/nonexistent/cert.pem"),
                Path::new("/nonexistent/key.pem"),
            )),
            Path::new("/tmp"),
            "h",
        )
        .err()
        .unwrap();
        assert!(
            error.starts_with("/nonexistent/cert.pem: cannot read"),
            "{error}"
        );
    }

    /// A self-signed pair for `names` in a fresh directory: (directory, chain file, key file).
    fn pair(name: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("portcullis-pair-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let (chain, key) = (dir.join("chain.pem"), dir.join("key.pem"));
        fs::write(&chain, generated.cert.pem()).unwrap();
        fs::write(&key, generated.key_pair.serialize_pem()).unwrap();
        (dir, chain, key)
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_with_the_reason() {
        let (a_dir, a_chain, _) = pair("mismatch-a", &["a.test"]);
        let (b_dir, _, b_key) = pair("mismatch-b", &["b.test"]);
        let error = load_certified_key(&a_chain, &b_key).err().unwrap();
        assert_eq!(
            error,
            format!(
                "{}: the private key does not match the certificate in {} (its first certificate must be the server's own)",
                b_key.display(),
                a_chain.display()
            )
        );
        fs::remove_dir_all(a_dir).unwrap();
        fs::remove_dir_all(b_dir).unwrap();
    }

    #[test]
    fn swapped_or_missing_files_are_refused_naming_the_file() {
        let (dir, chain, key) = pair("swapped", &["a.test"]);
        let error = load_certified_key(&key, &chain).err().unwrap();
        assert_eq!(error, format!("{}: no certificate found", key.display()));
        let error = load_certified_key(&chain, &chain).err().unwrap();
        assert!(
            error.starts_with(&format!("{}: cannot read the private key", chain.display())),
            "{error}"
        );
        let missing = dir.join("missing.pem");
        let error = load_certified_key(&chain, &missing).err().unwrap();
        assert!(
            error.starts_with(&format!(
                "{}: cannot read the private key",
                missing.display()
            )),
            "{error}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_the_certificate_does_not_cover_are_reported() {
        let (dir, chain, key) = pair("names", &["a.test", "*.a.test"]);
        let certified = load_certified_key(&chain, &key).unwrap();
        assert_eq!(
            names_not_covered(
                &certified,
                &["a.test", "box.a.test", "box.b.test", "b.test"]
            ),
            ["box.b.test", "b.test"]
        );
        fs::remove_dir_all(dir).unwrap();
    }

    fn fresh_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portcullis-renew-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tls")).unwrap();
        dir
    }

    fn write_pair(dir: &Path, generated: &rcgen::CertifiedKey) {
        fs::write(dir.join("tls/cert.pem"), generated.cert.pem()).unwrap();
        fs::write(dir.join("tls/key.pem"), generated.key_pair.serialize_pem()).unwrap();
    }

    fn summary_of(dir: &Path) -> inspect::Summary {
        let der = CertificateDer::from_pem_file(dir.join("tls/cert.pem")).unwrap();
        inspect::summarize(&der).unwrap()
    }

    #[test]
    fn the_generated_certificate_is_for_a_tls_server_named_by_the_hostname() {
        let before = now();
        let generated = generate("mail.example.test", before).unwrap();
        let leaf = webpki::EndEntityCert::try_from(generated.cert.der()).unwrap();
        for name in ["mail.example.test", "localhost", "127.0.0.1", "::1"] {
            let name = ServerName::try_from(name).unwrap();
            assert!(
                leaf.verify_is_valid_for_subject_name(&name).is_ok(),
                "{name:?}"
            );
        }
        let other = ServerName::try_from("other.example.test").unwrap();
        assert!(leaf.verify_is_valid_for_subject_name(&other).is_err());
        let summary = inspect::summarize(generated.cert.der()).unwrap();
        assert_eq!(summary.common_name.as_deref(), Some("mail.example.test"));
        assert!(summary.server_auth);
        assert_eq!(summary.not_before, before - DAY);
        assert_eq!(summary.not_after, before + 365 * DAY);
        assert_eq!(
            generated.key_pair.algorithm(),
            &rcgen::PKCS_ECDSA_P256_SHA256
        );
    }

    #[test]
    fn subject_names_are_listed_once_each() {
        assert_eq!(
            subject_names("mail.example.test"),
            ["mail.example.test", "localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            subject_names("localhost"),
            ["localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(
            subject_names("LOCALHOST"),
            ["LOCALHOST", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn a_certificate_from_the_old_code_is_renewed_with_the_reason() {
        let dir = fresh_dir("old");
        let old = rcgen::generate_simple_self_signed(vec!["mail.example.test".into()]).unwrap();
        write_pair(&dir, &old);
        let tls = server_config(None, &dir, "mail.example.test").unwrap();
        let Origin::Renewed(_, reason) = tls.origin else {
            panic!("not renewed")
        };
        assert!(reason.contains("\"rcgen self signed cert\""), "{reason}");
        assert!(summary_of(&dir).server_auth);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_certificate_near_its_end_or_for_another_host_is_renewed() {
        let dir = fresh_dir("near");
        write_pair(
            &dir,
            &generate("mail.example.test", now() - 340 * DAY - 3600).unwrap(),
        );
        let tls = server_config(None, &dir, "mail.example.test").unwrap();
        assert!(
            matches!(&tls.origin, Origin::Renewed(_, reason) if reason == "it expires in 24 day(s)")
        );
        assert!(summary_of(&dir).not_after > now() + 364 * DAY);
        let tls = server_config(None, &dir, "mail.example.test").unwrap();
        assert!(matches!(tls.origin, Origin::Reused(_)));
        let tls = server_config(None, &dir, "smtp.example.test").unwrap();
        assert!(
            matches!(&tls.origin, Origin::Renewed(_, reason) if reason.contains("smtp.example.test"))
        );
        assert_eq!(
            summary_of(&dir).common_name.as_deref(),
            Some("smtp.example.test")
        );
        write_pair(
            &dir,
            &generate("smtp.example.test", now() - 400 * DAY).unwrap(),
        );
        let tls = server_config(None, &dir, "smtp.example.test").unwrap();
        assert!(matches!(&tls.origin, Origin::Renewed(_, reason) if reason == "it has expired"));
        fs::remove_dir_all(dir).unwrap();
    }
}
