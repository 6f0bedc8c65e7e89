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

mod sni;

pub use sni::{DomainCertificates, REFRESH_INTERVAL, SniResolver};

/// Where the certificate came from, for the start-up message.
pub enum Origin {
    Configured,
    Generated(PathBuf),
    Reused(PathBuf),
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
/// self-signed pair in `data_dir/tls` (generated for `hostname`, `localhost` and 127.0.0.1 when
/// absent).
pub fn server_config(
    files: Option<(&Path, &Path)>,
    data_dir: &Path,
    hostname: &str,
) -> Result<ServerTls, String> {
    let (certificate, key, origin) = match files {
        Some((certificate, key)) => (
            certificate.to_path_buf(),
            key.to_path_buf(),
            Origin::Configured,
        ),
        None => self_signed(data_dir, hostname)?,
    };
    let default = load_certified_key(&certificate, &key)?;
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
    if certificate.exists() && key.exists() {
        return Ok((certificate, key, Origin::Reused(dir)));
    }
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names = vec![
        hostname.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a certificate: {e}"))?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes())?;
    fs::write(&certificate, generated.cert.pem())
        .map_err(|e| format!("{}: {e}", certificate.display()))?;
    Ok((certificate, key, Origin::Generated(dir)))
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
}
