//! Certificates chosen by the name the client asks for (SNI, RFC 6066 §3): a domain with a
//! certificate of its own gets it for its name and for its host's, and everything else (no
//! SNI, an unknown name, a domain whose files cannot be loaded) gets the default certificate.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::accounts::{CertificateFiles, Domain, canonical_host};

/// How often a running server looks for changed domains and certificate files: `domains add
/// --cert` and renewed files take effect within this time, without a restart.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct SniResolver {
    /// Replaced by a reload.
    default: RwLock<Arc<CertifiedKey>>,
    /// Lower-cased names without a final dot. Replaced whole by each refresh.
    by_name: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl SniResolver {
    pub fn new(default: Arc<CertifiedKey>) -> SniResolver {
        SniResolver {
            default: RwLock::new(default),
            by_name: RwLock::new(HashMap::new()),
        }
    }

    /// Serves `default` from the next handshake on (handshakes in progress keep theirs).
    pub fn replace_default(&self, default: Arc<CertifiedKey>) {
        *self.default.write().unwrap_or_else(PoisonError::into_inner) = default;
    }

    fn default(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.default.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The certificate for a client that asked for `server_name` (`None`: it sent no SNI).
    pub fn certificate_for(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let found = server_name.and_then(|name| {
            let by_name = self.by_name.read().unwrap_or_else(PoisonError::into_inner);
            by_name.get(&canonical_host(name)).map(Arc::clone)
        });
        found.unwrap_or_else(|| self.default())
    }

    fn replace(&self, names: HashMap<String, Arc<CertifiedKey>>) {
        *self.by_name.write().unwrap_or_else(PoisonError::into_inner) = names;
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certificate_for(client_hello.server_name()))
    }
}

/// Keeps a resolver's per-domain certificates in step with the domains and their files. A file
/// is read again only when it changed (another file at the path, another size or modification
/// time), so a refresh every few seconds costs a few `stat`s.
pub struct DomainCertificates {
    resolver: Arc<SniResolver>,
    loaded: HashMap<CertificateFiles, Loaded>,
}

struct Loaded {
    /// The chain's and the key's, as they were just before they were read.
    stamps: [Option<FileStamp>; 2],
    certificate: Result<Arc<CertifiedKey>, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// `None` when the file cannot be examined; loading it then fails with the reason.
    fn of(path: &Path) -> Option<FileStamp> {
        let metadata = fs::metadata(path).ok()?;
        Some(FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

impl DomainCertificates {
    pub fn new(resolver: Arc<SniResolver>) -> DomainCertificates {
        DomainCertificates {
            resolver,
            loaded: HashMap::new(),
        }
    }

    /// Loads what changed since the last refresh and gives the resolver the names of `domains`.
    /// A domain whose files cannot be loaded is logged once per change of its files and served
    /// the default certificate; the other domains are not affected.
    pub fn refresh(&mut self, domains: &[Domain]) {
        let mut previous = std::mem::take(&mut self.loaded);
        for domain in domains {
            let Some(files) = &domain.certificate else {
                continue;
            };
            if !self.loaded.contains_key(files) {
                let loaded = reuse_or_load(previous.remove(files), files, &domain.name);
                self.loaded.insert(files.clone(), loaded);
            }
        }
        self.resolver.replace(self.names(domains));
    }

    fn names(&self, domains: &[Domain]) -> HashMap<String, Arc<CertifiedKey>> {
        let mut names = HashMap::new();
        for domain in domains {
            if let Some(certificate) = self.certificate_of(domain) {
                names.insert(canonical_host(&domain.name), certificate);
            }
        }
        // Hosts after all domain names: a host shared by several domains gets the certificate
        // of the first of them (by name), and never hides a domain of the same name.
        for domain in domains {
            if let (Some(host), Some(certificate)) = (&domain.host, self.certificate_of(domain)) {
                names.entry(canonical_host(host)).or_insert(certificate);
            }
        }
        names
    }

    fn certificate_of(&self, domain: &Domain) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.get(domain.certificate.as_ref()?)?;
        loaded.certificate.as_ref().ok().map(Arc::clone)
    }
}

fn reuse_or_load(previous: Option<Loaded>, files: &CertificateFiles, domain: &str) -> Loaded {
    let stamps = [FileStamp::of(&files.chain), FileStamp::of(&files.key)];
    match previous {
        Some(loaded) if loaded.stamps == stamps => loaded,
        _ => load(files, domain, stamps),
    }
}

fn load(files: &CertificateFiles, domain: &str, stamps: [Option<FileStamp>; 2]) -> Loaded {
    let certificate = super::load_certified_key(&files.chain, &files.key).map(Arc::new);
    match &certificate {
        Ok(_) => tracing::info!(
            domain,
            certificate = %files.chain.display(),
            "loaded the domain's certificate"
        ),
        Err(reason) => tracing::error!(
            domain,
            certificate = %files.chain.display(),
            key = %files.key.display(),
            %reason,
            "cannot load the domain's certificate; its clients get the default certificate"
        ),
    }
    Loaded {
        stamps,
        certificate,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let path =
                std::env::temp_dir().join(format!("portcullis-sni-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes a new self-signed pair for `names` as `dir/stem.pem` and `dir/stem.key`, each
    /// through a rename (as certbot and most tools replace them); returns the files and the
    /// certificate's DER.
    fn write_pair(dir: &Dir, stem: &str, names: &[&str]) -> (CertificateFiles, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let generated = rcgen::generate_simple_self_signed(names).unwrap();
        let files = CertificateFiles {
            chain: dir.0.join(format!("{stem}.pem")),
            key: dir.0.join(format!("{stem}.key")),
        };
        replace(&files.chain, generated.cert.pem().as_bytes());
        replace(&files.key, generated.key_pair.serialize_pem().as_bytes());
        (files, generated.cert.der().to_vec())
    }

    fn replace(path: &Path, contents: &[u8]) {
        let temporary = path.with_extension("new");
        fs::write(&temporary, contents).unwrap();
        fs::rename(&temporary, path).unwrap();
    }

    fn domain(name: &str, host: Option<&str>, certificate: Option<&CertificateFiles>) -> Domain {
        Domain {
            name: name.into(),
            host: host.map(str::to_string),
            certificate: certificate.cloned(),
            created: 0,
        }
    }

    fn resolver(dir: &Dir) -> (Arc<SniResolver>, Vec<u8>) {
        let (files, der) = write_pair(dir, "default", &["mail.example.test"]);
        let default = crate::tls::load_certified_key(&files.chain, &files.key).unwrap();
        (Arc::new(SniResolver::new(Arc::new(default))), der)
    }

    fn served(resolver: &SniResolver, name: Option<&str>) -> Vec<u8> {
        resolver.certificate_for(name).cert[0].to_vec()
    }

    #[test]
    fn sni_picks_the_domains_certificate_for_its_name_and_its_host() {
        let dir = Dir::new("pick");
        let (resolver, default) = resolver(&dir);
        let (a_files, a) = write_pair(&dir, "a", &["a.test", "box.a.test"]);
        let (b_files, b) = write_pair(&dir, "b", &["b.test"]);
        let mut certificates = DomainCertificates::new(Arc::clone(&resolver));
        certificates.refresh(&[
            domain("a.test", Some("box.a.test"), Some(&a_files)),
            domain("b.test", None, Some(&b_files)),
            domain("c.test", Some("box.c.test"), None),
        ]);
        assert_eq!(served(&resolver, Some("a.test")), a);
        assert_eq!(served(&resolver, Some("BOX.A.TEST.")), a);
        assert_eq!(served(&resolver, Some("b.test")), b);
        assert_eq!(served(&resolver, Some("box.c.test")), default);
        assert_eq!(served(&resolver, Some("unknown.test")), default);
        assert_eq!(served(&resolver, None), default);
    }

    #[test]
    fn a_changed_file_is_read_again_and_an_unchanged_one_is_not() {
        let dir = Dir::new("reload");
        let (resolver, _) = resolver(&dir);
        let (files, first) = write_pair(&dir, "a", &["a.test"]);
        let domains = [domain("a.test", None, Some(&files))];
        let mut certificates = DomainCertificates::new(Arc::clone(&resolver));
        certificates.refresh(&domains);
        let before = resolver.certificate_for(Some("a.test"));
        assert_eq!(before.cert[0].to_vec(), first);
        certificates.refresh(&domains);
        assert!(Arc::ptr_eq(
            &before,
            &resolver.certificate_for(Some("a.test"))
        ));

        let (_, renewed) = write_pair(&dir, "a", &["a.test"]);
        assert_ne!(renewed, first);
        certificates.refresh(&domains);
        assert_eq!(served(&resolver, Some("a.test")), renewed);
    }

    #[test]
    fn a_broken_certificate_gets_the_default_and_leaves_the_others_alone() {
        let dir = Dir::new("broken");
        let (resolver, default) = resolver(&dir);
        let (a_files, _) = write_pair(&dir, "a", &["a.test"]);
        let (b_files, b) = write_pair(&dir, "b", &["b.test"]);
        let (c_files, _) = write_pair(&dir, "c", &["c.test"]);
        let mismatched = CertificateFiles {
            chain: c_files.chain.clone(),
            key: b_files.key.clone(),
        };
        let missing = CertificateFiles {
            chain: dir.0.join("missing.pem"),
            key: dir.0.join("missing.key"),
        };
        let domains = [
            domain("a.test", None, Some(&a_files)),
            domain("b.test", None, Some(&b_files)),
            domain("c.test", None, Some(&mismatched)),
            domain("d.test", None, Some(&missing)),
        ];
        replace(&a_files.chain, b"not a certificate");
        let mut certificates = DomainCertificates::new(Arc::clone(&resolver));
        certificates.refresh(&domains);
        assert_eq!(served(&resolver, Some("a.test")), default);
        assert_eq!(served(&resolver, Some("b.test")), b);
        assert_eq!(served(&resolver, Some("c.test")), default);
        assert_eq!(served(&resolver, Some("d.test")), default);

        // Repaired: the next refresh serves it.
        let (_, a) = write_pair(&dir, "a", &["a.test"]);
        certificates.refresh(&domains);
        assert_eq!(served(&resolver, Some("a.test")), a);
    }

    #[test]
    fn a_shared_host_never_hides_a_domain_of_that_name() {
        let dir = Dir::new("shared");
        let (resolver, _) = resolver(&dir);
        let (a_files, a) = write_pair(&dir, "a", &["a.test", "box.test"]);
        let (box_files, own) = write_pair(&dir, "box", &["box.test"]);
        let mut certificates = DomainCertificates::new(Arc::clone(&resolver));
        certificates.refresh(&[
            domain("a.test", Some("box.test"), Some(&a_files)),
            domain("box.test", None, Some(&box_files)),
        ]);
        assert_eq!(served(&resolver, Some("a.test")), a);
        assert_eq!(served(&resolver, Some("box.test")), own);
    }
}
