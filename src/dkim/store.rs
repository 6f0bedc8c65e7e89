//! The DKIM keys on disk: `DATA_DIR/dkim/DOMAIN/SELECTOR.ALGORITHM.pem` for an active key,
//! `SELECTOR.ALGORITHM.retired.pem` for one that `rotate` replaced (kept, not used to sign,
//! until `remove`). Directories are 0700 and files 0600: they hold private keys.
//!
//! The state is in the file names, so a rename is the whole of a rotation's change and the
//! server reads nothing but a directory listing and the active files. Files, not the account
//! database, because the keys are secrets an operator backs up, restores and moves on their
//! own, and a PEM file is what every other DKIM tool reads too.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::key::{Algorithm, PrivateKey};
use super::sign::SigningKey;

const ACTIVE_SUFFIX: &str = ".pem";
const RETIRED_SUFFIX: &str = ".retired.pem";

/// One key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    /// False once `rotate` replaced it: still published, no longer signing.
    pub active: bool,
    pub created: SystemTime,
    pub path: PathBuf,
}

impl StoredKey {
    /// The private key, read from its file.
    pub fn load(&self) -> Result<PrivateKey, String> {
        let text =
            fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        PrivateKey::from_pem(&text, self.algorithm)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

/// The key directory of a data directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> KeyStore {
        KeyStore {
            dir: data_dir.join("dkim"),
        }
    }

    /// Every key, or those of one domain, by domain then selector.
    pub fn list(&self, domain: Option<&str>) -> Result<Vec<StoredKey>, String> {
        let domains = match domain {
            Some(domain) => vec![domain.to_string()],
            None => self.domains()?,
        };
        let mut keys = Vec::new();
        for domain in domains {
            keys.extend(self.keys_of(&domain)?);
        }
        keys.sort_by(|a, b| (&a.domain, &a.selector).cmp(&(&b.domain, &b.selector)));
        Ok(keys)
    }

    fn domains(&self) -> Result<Vec<String>, String> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", self.dir.display())),
        };
        let mut domains = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", self.dir.display()))?;
            if entry.path().is_dir() {
                domains.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(domains)
    }

    fn keys_of(&self, domain: &str) -> Result<Vec<StoredKey>, String> {
        let dir = self.dir.join(domain);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Anything else (an editor's backup, a temporary file) is not a key.
            let Some((selector, algorithm, active)) = parse_file_name(&name) else {
                continue;
            };
            let created = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            keys.push(StoredKey {
                domain: domain.to_string(),
                selector,
                algorithm,
                active,
                created,
                path: entry.path(),
            });
        }
        Ok(keys)
    }

    /// Writes a new key for `domain` under `selector`; refuses a selector the domain has
    /// already (whatever its algorithm: one DNS name holds one key).
    pub fn create(
        &self,
        domain: &str,
        selector: &str,
        algorithm: Algorithm,
        pem: &str,
    ) -> Result<StoredKey, CreateError> {
        if self
            .keys_of(domain)
            .map_err(CreateError::Io)?
            .iter()
            .any(|k| k.selector == selector)
        {
            return Err(CreateError::Exists(format!(
                "{domain} has a key with selector {selector} already"
            )));
        }
        let dir = self.dir.join(domain);
        for dir in [&self.dir, &dir] {
            make_private_dir(dir)
                .map_err(|e| CreateError::Io(format!("{}: {e}", dir.display())))?;
        }
        let path = dir.join(format!("{selector}.{}{ACTIVE_SUFFIX}", algorithm.name()));
        write_private_file(&path, pem.as_bytes())
            .map_err(|e| CreateError::Io(format!("{}: {e}", path.display())))?;
        self.keys_of(domain)
            .map_err(CreateError::Io)?
            .into_iter()
            .find(|k| k.selector == selector)
            .ok_or_else(|| CreateError::Io(format!("{} vanished", path.display())))
    }

    /// Marks a key as replaced: it stays (and stays published) but no longer signs.
    pub fn retire(&self, key: &StoredKey) -> Result<(), String> {
        let retired = key.path.with_file_name(format!(
            "{}.{}{RETIRED_SUFFIX}",
            key.selector,
            key.algorithm.name()
        ));
        fs::rename(&key.path, &retired).map_err(|e| format!("{}: {e}", key.path.display()))?;
        sync_dir(&self.dir.join(&key.domain))
    }

    /// Deletes a key's file.
    pub fn remove(&self, key: &StoredKey) -> Result<(), String> {
        fs::remove_file(&key.path).map_err(|e| format!("{}: {e}", key.path.display()))?;
        sync_dir(&self.dir.join(&key.domain))
    }

    /// The active keys of every domain, ready to sign; a key that cannot be read is reported
    /// and left out (the others still sign).
    pub fn signing_keys(&self) -> (Vec<SigningKey>, Vec<String>) {
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        match self.list(None) {
            Ok(stored) => {
                for stored in stored.into_iter().filter(|k| k.active) {
                    match stored.load() {
                        Ok(key) => keys.push(SigningKey {
                            domain: stored.domain,
                            selector: stored.selector,
                            key,
                        }),
                        Err(problem) => problems.push(problem),
                    }
                }
            }
            Err(problem) => problems.push(problem),
        }
        (keys, problems)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    Exists(String),
    Io(String),
}

/// `SELECTOR.ALGORITHM.pem` or `SELECTOR.ALGORITHM.retired.pem`.
fn parse_file_name(name: &str) -> Option<(String, Algorithm, bool)> {
    let (stem, active) = match name.strip_suffix(RETIRED_SUFFIX) {
        Some(stem) => (stem, false),
        None => (name.strip_suffix(ACTIVE_SUFFIX)?, true),
    };
    let (selector, algorithm) = stem.split_once('.')?;
    let algorithm = Algorithm::from_name(algorithm)?;
    valid_selector(selector).then(|| (selector.to_string(), algorithm, active))
}

/// Selectors are one DNS label of lower-case letters, digits and inner hyphens: the name goes
/// into `SELECTOR._domainkey.DOMAIN` and into a file name, and must be the same in both.
pub fn valid_selector(selector: &str) -> bool {
    (1..=63).contains(&selector.len())
        && selector
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !selector.starts_with('-')
        && !selector.ends_with('-')
}

/// Creates `dir` (mode 0700) if missing, owned like the data directory above it: keys made by
/// root for a server that runs as `[server] user` must be readable by that user.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    // The umask may have taken bits away, never added them; set the mode exactly.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    own_like_parent(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Writes a new file of mode 0600, durably (file and directory synced).
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    own_like_parent(path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// As root, gives `path` to the owner of its directory (nothing to do otherwise).
fn own_like_parent(path: &Path) -> std::io::Result<()> {
    if !crate::privileges::is_root() {
        return Ok(());
    }
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let owner = fs::metadata(parent)?;
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
}

fn sync_dir(dir: &Path) -> Result<(), String> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portcullis-dkim-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn file_names_carry_selector_algorithm_and_state() {
        assert_eq!(
            parse_file_name("pc202612a-rsa.rsa2048.pem"),
            Some(("pc202612a-rsa".into(), Algorithm::Rsa2048, true))
        );
        assert_eq!(
            parse_file_name("s1.ed25519.retired.pem"),
            Some(("s1".into(), Algorithm::Ed25519, false))
        );
        assert_eq!(parse_file_name("s1.ed25519.pem~"), None);
        assert_eq!(parse_file_name("s1.dsa.pem"), None);
        assert_eq!(parse_file_name("S1.ed25519.pem"), None);
    }

    #[test]
    fn selectors_are_one_lower_case_label() {
        assert!(valid_selector("pc202612a-ed"));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!valid_selector(bad), "{bad}");
        }
    }

    #[test]
    fn create_retire_remove_with_private_modes() {
        let data = temp("lifecycle");
        let store = KeyStore::new(&data);
        let pem = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let key = store
            .create("example.test", "s1", Algorithm::Ed25519, &pem)
            .unwrap();
        assert!(key.active);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key.path), 0o600);
        assert_eq!(mode(&data.join("dkim")), 0o700);
        assert_eq!(mode(&data.join("dkim/example.test")), 0o700);
        let again = store.create("example.test", "s1", Algorithm::Rsa2048, &pem);
        assert!(matches!(again, Err(CreateError::Exists(_))), "{again:?}");
        assert_eq!(store.signing_keys().0.len(), 1);

        store.retire(&key).unwrap();
        let listed = store.list(Some("example.test")).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].active);
        assert!(store.signing_keys().0.is_empty());
        store.remove(&listed[0]).unwrap();
        assert!(store.list(None).unwrap().is_empty());
        fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn an_unreadable_key_is_reported_and_the_others_still_sign() {
        let data = temp("broken");
        let store = KeyStore::new(&data);
        let pem = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        store
            .create("a.test", "good", Algorithm::Ed25519, &pem)
            .unwrap();
        store
            .create("b.test", "bad", Algorithm::Ed25519, "not a key")
            .unwrap();
        let (keys, problems) = store.signing_keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].domain, "a.test");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("bad.ed25519.pem"), "{problems:?}");
        fs::remove_dir_all(&data).unwrap();
    }
}
