//! The embedded account store: one text file, `accounts` in the data directory, with one line
//! per account: `address<TAB>argon2id PHC hash<TAB>created (Unix time)`.
//!
//! The server re-reads the file when it changes, so `portcullis accounts ...` takes effect
//! without a restart. Every change is written to a temporary file, synced and renamed over the
//! old one, so a crash leaves either the old or the new file, never a mix.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{AccountStore, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub address: String,
    pub password_hash: String,
    pub created: u64,
}

pub struct FileAccountStore {
    path: PathBuf,
    cache: RwLock<Option<Snapshot>>,
}

struct Snapshot {
    stamp: Option<(SystemTime, u64, u64)>,
    accounts: BTreeMap<String, Account>,
}

const HEADER: &str = "# Portcullis accounts: address, argon2id hash, created (Unix time). Change with `portcullis accounts`.\n";

impl FileAccountStore {
    pub fn new(data_dir: &Path) -> FileAccountStore {
        FileAccountStore {
            path: data_dir.join("accounts"),
            cache: RwLock::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All accounts, sorted by address.
    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.with_accounts(|accounts| accounts.values().cloned().collect())
    }

    /// Adds an account; fails if it exists.
    pub fn add(&self, address: &str, password_hash: String) -> Result<(), StoreError> {
        self.modify(|accounts| {
            if accounts.contains_key(address) {
                return Err(StoreError::Exists(address.to_string()));
            }
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            accounts.insert(
                address.to_string(),
                Account {
                    address: address.to_string(),
                    password_hash,
                    created,
                },
            );
            Ok(())
        })
    }

    pub fn set_password(&self, address: &str, password_hash: String) -> Result<(), StoreError> {
        self.modify(|accounts| match accounts.get_mut(address) {
            Some(account) => {
                account.password_hash = password_hash;
                Ok(())
            }
            None => Err(StoreError::NoSuchAccount(address.to_string())),
        })
    }

    pub fn remove(&self, address: &str) -> Result<(), StoreError> {
        self.modify(|accounts| match accounts.remove(address) {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchAccount(address.to_string())),
        })
    }

    /// Read-modify-write under an exclusive lock, so two CLI invocations cannot lose a change.
    fn modify(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Account>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let io = |e: io::Error| StoreError::Io(format!("{}: {e}", self.path.display()));
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("accounts.lock"))
            .map_err(io)?;
        lock.lock().map_err(io)?;
        let mut accounts = self.read_file()?;
        change(&mut accounts)?;
        self.write_file(&accounts).map_err(io)
    }

    fn write_file(&self, accounts: &BTreeMap<String, Account>) -> io::Result<()> {
        let mut text = String::from(HEADER);
        for account in accounts.values() {
            text.push_str(&format!(
                "{}\t{}\t{}\n",
                account.address, account.password_hash, account.created
            ));
        }
        let temporary = self.path.with_extension("tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        File::open(self.path.parent().unwrap_or(Path::new(".")))?.sync_all()
    }

    /// Runs `read` on the accounts, re-reading the file only when it changed since the last look.
    fn with_accounts<R>(
        &self,
        read: impl FnOnce(&BTreeMap<String, Account>) -> R,
    ) -> Result<R, StoreError> {
        let stamp = self.stamp()?;
        let poisoned = || StoreError::Io("account cache lock poisoned".into());
        {
            let cache = self.cache.read().map_err(|_| poisoned())?;
            if let Some(snapshot) = cache.as_ref().filter(|s| s.stamp == stamp) {
                return Ok(read(&snapshot.accounts));
            }
        }
        let accounts = self.read_file()?;
        let result = read(&accounts);
        *self.cache.write().map_err(|_| poisoned())? = Some(Snapshot { stamp, accounts });
        Ok(result)
    }

    fn stamp(&self) -> Result<Option<(SystemTime, u64, u64)>, StoreError> {
        // The inode changes on every rename-over, so even a same-size edit in the same clock tick shows.
        match fs::metadata(&self.path) {
            Ok(meta) => Ok(Some((
                meta.modified().unwrap_or(UNIX_EPOCH),
                meta.len(),
                meta.ino(),
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io(format!("{}: {e}", self.path.display()))),
        }
    }

    fn read_file(&self) -> Result<BTreeMap<String, Account>, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(StoreError::Io(format!("{}: {e}", self.path.display()))),
        };
        parse(&text).map_err(|(line, reason)| {
            StoreError::Corrupt(format!("{}:{line}: {reason}", self.path.display()))
        })
    }
}

fn parse(text: &str) -> Result<BTreeMap<String, Account>, (usize, &'static str)> {
    let mut accounts = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(address), Some(hash), Some(created), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err((index + 1, "expected three tab-separated fields"));
        };
        if !hash.starts_with("$argon2") {
            return Err((index + 1, "the password hash is not an argon2 PHC string"));
        }
        let created = created
            .parse()
            .map_err(|_| (index + 1, "the creation time is not a number"))?;
        let account = Account {
            address: address.to_string(),
            password_hash: hash.to_string(),
            created,
        };
        accounts.insert(address.to_string(), account);
    }
    Ok(accounts)
}

impl AccountStore for FileAccountStore {
    fn password_hash(&self, username: &str) -> Result<Option<String>, StoreError> {
        self.with_accounts(|accounts| accounts.get(username).map(|a| a.password_hash.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> (FileAccountStore, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("portcullis-accounts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        (FileAccountStore::new(&dir), dir)
    }

    #[test]
    fn add_change_remove() {
        let (store, dir) = store("crud");
        assert_eq!(store.password_hash("a@b.c").unwrap(), None);
        store.add("a@b.c", "$argon2id$one".into()).unwrap();
        assert_eq!(
            store.add("a@b.c", "$argon2id$x".into()),
            Err(StoreError::Exists("a@b.c".into()))
        );
        assert_eq!(
            store.password_hash("a@b.c").unwrap().as_deref(),
            Some("$argon2id$one")
        );
        store.set_password("a@b.c", "$argon2id$two".into()).unwrap();
        // A second handle (the running server) sees the change without a restart.
        let other = FileAccountStore::new(&dir);
        assert_eq!(
            other.password_hash("a@b.c").unwrap().as_deref(),
            Some("$argon2id$two")
        );
        store.remove("a@b.c").unwrap();
        assert_eq!(other.password_hash("a@b.c").unwrap(), None);
        assert_eq!(
            store.remove("a@b.c"),
            Err(StoreError::NoSuchAccount("a@b.c".into()))
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_file_names_the_line() {
        let (store, dir) = store("corrupt");
        fs::create_dir_all(&dir).unwrap();
        fs::write(store.path(), "# header\nbroken line\n").unwrap();
        let error = store.password_hash("a@b.c").unwrap_err();
        assert!(
            matches!(&error, StoreError::Corrupt(text) if text.ends_with("accounts:2: expected three tab-separated fields")),
            "{error:?}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
