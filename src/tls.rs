//! TLS set-up: the operator's certificate, or a self-signed one generated on first start and kept
//! in the data directory. rustls always gets the ring provider explicitly.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::smtp::TlsInfo;

/// Where the certificate came from, for the start-up message.
pub enum Origin {
    Configured,
    Generated(PathBuf),
    Reused(PathBuf),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server TLS configuration from PEM files, or from the self-signed pair in
/// `data_dir/tls` (generated for `hostname`, `localhost` and 127.0.0.1 when absent).
pub fn server_config(
    files: Option<(&Path, &Path)>,
    data_dir: &Path,
    hostname: &str,
) -> Result<(Arc<ServerConfig>, Origin), String> {
    let (certificate, key, origin) = match files {
        Some((certificate, key)) => (
            certificate.to_path_buf(),
            key.to_path_buf(),
            Origin::Configured,
        ),
        None => self_signed(data_dir, hostname)?,
    };
    let chain = CertificateDer::pem_file_iter(&certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{}: cannot read the certificate chain: {e}",
                certificate.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", certificate.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| format!("{}: cannot read the private key: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{}: certificate and key do not form a usable pair: {e}",
                certificate.display()
            )
        })?;
    Ok((Arc::new(config), origin))
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
        let (_, origin) = server_config(None, &dir, "mail.example.test").unwrap();
        assert!(matches!(origin, Origin::Generated(_)));
        let key_mode = fs::metadata(dir.join("tls/key.pem")).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&key_mode) & 0o777,
            0o600
        );
        let (_, origin) = server_config(None, &dir, "mail.example.test").unwrap();
        assert!(matches!(origin, Origin::Reused(_)));
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
}
