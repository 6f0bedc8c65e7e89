//! Authentication: the account store behind a small trait, and the verifier that checks SMTP
//! AUTH credentials against it.

pub mod guard;
pub mod password;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::SystemRandom;
use tokio::sync::oneshot;

use crate::smtp::AuthOutcome;
use crate::smtp::sasl::Credentials;

/// Where credentials live. The embedded default is [`crate::accounts::SqliteStore`].
pub trait AccountStore: Send + Sync {
    /// What is needed to check `password` for `username`: the account's hash, whether it is
    /// enabled, and the app password the presented password names (if it has that form).
    /// `None` when there is no such account.
    fn login(&self, username: &str, password: &str) -> Result<Option<StoredLogin>, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLogin {
    pub password_hash: String,
    pub enabled: bool,
    pub app_password: Option<AppPasswordHash>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPasswordHash {
    pub id: String,
    pub hash: String,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    Io(String),
    Exists(String),
    NoSuchAccount(String),
    Invalid(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(reason) => write!(f, "account store unavailable: {reason}"),
            StoreError::Exists(what) => write!(f, "{what} already exists"),
            StoreError::NoSuchAccount(what) => write!(f, "no {what}"),
            StoreError::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// Why a login failed. Logged on the server and kept in the record of failed logins; the client
/// gets the same 535 for the first four, and never learns which of them it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    UnknownUser,
    WrongPassword,
    Disabled,
    AppPasswordRevoked,
    /// Refused without a check: too many failures of this user name from this network (454).
    Locked,
    /// Refused without a check: this network failed for too many user names (421).
    NetworkRefused,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::UnknownUser => "unknown-user",
            FailureReason::WrongPassword => "wrong-password",
            FailureReason::Disabled => "disabled",
            FailureReason::AppPasswordRevoked => "app-password-revoked",
            FailureReason::Locked => "locked",
            FailureReason::NetworkRefused => "network-refused",
        }
    }
}

impl std::error::Error for StoreError {}

/// User names are email addresses and are matched case-insensitively, as users expect.
pub fn canonical_username(username: &str) -> String {
    username.to_lowercase()
}

/// How long a verified login stays in the cache (Dovecot's auth_cache_ttl default is 1 hour).
const CACHE_TTL: Duration = Duration::from_secs(3600);
const CACHE_CAPACITY: usize = 100_000;

/// Checks credentials. Unknown users cost exactly what a wrong password costs: both run one
/// argon2id verification with the same parameters, so timing tells nothing about which users
/// exist. Successful logins are remembered so that a client that logs in for every message does
/// not pay argon2 each time.
pub struct Authenticator {
    store: Arc<dyn AccountStore>,
    cache: VerifiedCache,
    /// A hash of a random password nobody knows, verified against for unknown users.
    decoy_hash: String,
    verifier: VerifierPool,
}

impl Authenticator {
    pub fn new(store: Arc<dyn AccountStore>) -> Result<Authenticator, String> {
        let decoy_hash = password::hash(&password::generate()?)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Authenticator {
            store,
            cache: VerifiedCache::new()?,
            decoy_hash,
            verifier: VerifierPool::new(threads)?,
        })
    }

    /// How many argon2id verifications have run.
    pub fn verifications(&self) -> u64 {
        self.verifier.started.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub async fn verify(&self, credentials: Credentials) -> AuthOutcome {
        self.verify_explained(credentials).await.0
    }

    /// Checks credentials; a failure comes with its reason for the log. Every attempt that is
    /// not answered from the cache costs exactly one argon2id run, whatever the reason.
    pub async fn verify_explained(
        &self,
        credentials: Credentials,
    ) -> (AuthOutcome, Option<FailureReason>) {
        let username = canonical_username(&credentials.username);
        let stored = match self.store.login(&username, &credentials.password) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::error!(%error, "cannot check credentials");
                return (AuthOutcome::Unavailable, None);
            }
        };
        let (hash, refusal) = self.hash_to_check(stored.as_ref());
        if refusal.is_none() && self.cache.contains(&username, &credentials.password, &hash) {
            return (AuthOutcome::Accepted(username), None);
        }
        let Some(matches) = self
            .verifier
            .verify(hash.clone(), credentials.password.clone())
            .await
        else {
            return (AuthOutcome::Unavailable, None);
        };
        match refusal {
            Some(reason) => (AuthOutcome::Rejected, Some(reason)),
            None if !matches => (AuthOutcome::Rejected, Some(FailureReason::WrongPassword)),
            None => {
                self.cache.insert(&username, &credentials.password, &hash);
                (AuthOutcome::Accepted(username), None)
            }
        }
    }

    /// The one hash to verify against, and the refusal already decided (verified anyway, against
    /// the decoy, so that it costs the same time).
    fn hash_to_check(&self, stored: Option<&StoredLogin>) -> (String, Option<FailureReason>) {
        let decoy = |reason| (self.decoy_hash.clone(), Some(reason));
        match stored {
            None => decoy(FailureReason::UnknownUser),
            Some(login) if !login.enabled => decoy(FailureReason::Disabled),
            Some(StoredLogin {
                app_password: Some(app),
                ..
            }) if app.revoked => decoy(FailureReason::AppPasswordRevoked),
            Some(StoredLogin {
                app_password: Some(app),
                ..
            }) => (app.hash.clone(), None),
            Some(login) => (login.password_hash.clone(), None),
        }
    }
}

/// A fixed set of threads for argon2id. Each verification needs 19 MiB; on a few long-lived
/// threads that memory is reused, whereas on tokio's blocking pool every new thread would keep
/// its own allocator arena full of freed 19 MiB blocks. It also bounds how many run at once.
struct VerifierPool {
    jobs: mpsc::Sender<VerifyJob>,
    /// Verifications started, for the tests that check unknown users cost what known ones do.
    started: AtomicU64,
}

struct VerifyJob {
    hash: String,
    password: String,
    done: oneshot::Sender<bool>,
}

impl VerifierPool {
    fn new(threads: usize) -> Result<VerifierPool, String> {
        let (sender, receiver) = mpsc::channel::<VerifyJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    // The lock is held only while taking a job, not while hashing.
                    let next = || receiver.lock().ok()?.recv().ok();
                    while let Some(job) = next() {
                        let _ = job.done.send(password::verify(&job.hash, &job.password));
                    }
                })
                .map_err(|e| format!("cannot start a password verification thread: {e}"))?;
        }
        Ok(VerifierPool {
            jobs: sender,
            started: AtomicU64::new(0),
        })
    }

    /// `None` when the pool is gone (never while the server runs).
    async fn verify(&self, hash: String, password: String) -> Option<bool> {
        let (done, result) = oneshot::channel();
        self.started.fetch_add(1, Ordering::Relaxed);
        self.jobs
            .send(VerifyJob {
                hash,
                password,
                done,
            })
            .ok()?;
        result.await.ok()
    }
}

/// Remembers verified (user, password, stored hash) triples as HMAC tags under a key that exists
/// only in this process's memory. A tag is useless to present to the server, nothing is ever
/// written to disk, and a changed password (a new stored hash) no longer matches its old tag.
struct VerifiedCache {
    key: hmac::Key,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    fn new() -> Result<VerifiedCache, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .map_err(|_| "the system random number generator failed".to_string())?;
        Ok(VerifiedCache {
            key,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn tag(&self, username: &str, password: &str, hash: &str) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [username, password, hash] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part.as_bytes());
        }
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    fn contains(&self, username: &str, password: &str, hash: &str) -> bool {
        let tag = self.tag(username, password, hash);
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        entries
            .get(&tag)
            .is_some_and(|added| added.elapsed() < CACHE_TTL)
    }

    fn insert(&self, username: &str, password: &str, hash: &str) {
        let tag = self.tag(username, password, hash);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CACHE_CAPACITY {
            entries.retain(|_, added| added.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(tag, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct MemoryStore(Mutex<HashMap<String, String>>);

    impl AccountStore for MemoryStore {
        fn login(
            &self,
            username: &str,
            _password: &str,
        ) -> Result<Option<StoredLogin>, StoreError> {
            let hash = self.0.lock().unwrap().get(username).cloned();
            Ok(hash.map(|password_hash| StoredLogin {
                password_hash,
                enabled: true,
                app_password: None,
            }))
        }
    }

    struct BrokenStore;

    impl AccountStore for BrokenStore {
        fn login(&self, _: &str, _: &str) -> Result<Option<StoredLogin>, StoreError> {
            Err(StoreError::Io("disk on fire".into()))
        }
    }

    fn credentials(username: &str, password: &str) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    #[tokio::test]
    async fn accepts_the_right_password_case_insensitively_and_rejects_the_rest() {
        let store = Arc::new(MemoryStore(Mutex::new(HashMap::new())));
        store
            .0
            .lock()
            .unwrap()
            .insert("alice@example.test".into(), password::hash("pw").unwrap());
        let auth = Authenticator::new(store.clone()).unwrap();
        let alice = AuthOutcome::Accepted("alice@example.test".into());
        assert_eq!(
            auth.verify(credentials("Alice@Example.TEST", "pw")).await,
            alice
        );
        // Second time from the cache.
        assert_eq!(
            auth.verify(credentials("alice@example.test", "pw")).await,
            alice
        );
        assert_eq!(
            auth.verify(credentials("alice@example.test", "PW")).await,
            AuthOutcome::Rejected
        );
        assert_eq!(
            auth.verify(credentials("nobody@example.test", "pw")).await,
            AuthOutcome::Rejected
        );
        // A password change invalidates the cached login.
        store
            .0
            .lock()
            .unwrap()
            .insert("alice@example.test".into(), password::hash("new").unwrap());
        assert_eq!(
            auth.verify(credentials("alice@example.test", "pw")).await,
            AuthOutcome::Rejected
        );
        assert_eq!(
            auth.verify(credentials("alice@example.test", "new")).await,
            alice
        );
    }

    #[tokio::test]
    async fn every_attempt_not_in_the_cache_costs_one_check_known_or_unknown() {
        let store = Arc::new(MemoryStore(Mutex::new(HashMap::new())));
        store
            .0
            .lock()
            .unwrap()
            .insert("alice@example.test".into(), password::hash("pw").unwrap());
        let auth = Authenticator::new(store).unwrap();
        auth.verify(credentials("alice@example.test", "wrong"))
            .await;
        assert_eq!(auth.verifications(), 1);
        auth.verify(credentials("nobody@example.test", "wrong"))
            .await;
        assert_eq!(auth.verifications(), 2);
        auth.verify(credentials("alice@example.test", "pw")).await;
        auth.verify(credentials("alice@example.test", "pw")).await;
        assert_eq!(auth.verifications(), 3, "the second success is cached");
    }

    #[tokio::test]
    async fn store_failure_is_unavailable_not_rejected() {
        let auth = Authenticator::new(Arc::new(BrokenStore)).unwrap();
        assert_eq!(
            auth.verify(credentials("a@b.c", "pw")).await,
            AuthOutcome::Unavailable
        );
    }
}
