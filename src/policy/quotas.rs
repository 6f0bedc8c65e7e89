//! Sending quotas per account: messages per hour and recipients per day.
//!
//! A window starts with the first message counted in it and lasts an hour (messages) or a day
//! (recipients); when it has passed, the next message starts a new one. Only messages that were
//! accepted (250 after DATA) for an authenticated account count, under that account's name.
//!
//! The counters and the accounts' own limits live in memory, where every check reads them. A
//! background thread writes the changed counters to the account store once a second and
//! re-reads the limits when the store changed, so a message never waits for the store. A restart reloads them; a crash
//! (kill -9) can forget the last second of counting, never an accepted message.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use crate::auth::StoreError;
use crate::config::QuotaConfig;
use crate::smtp::{Allowance, Remaining};

pub const HOUR: u64 = 3600;
pub const DAY: u64 = 86_400;

/// Where quota overrides and counters are kept: the embedded default is
/// [`crate::accounts::SqliteStore`].
pub trait QuotaStore: Send + Sync {
    /// The accounts that have limits of their own, with them.
    fn quota_overrides(&self) -> Result<Vec<(String, QuotaOverrides)>, StoreError>;
    /// Every account's counters.
    fn quota_usage(&self) -> Result<Vec<(String, Usage)>, StoreError>;
    /// Replaces the stored counters of these accounts, in one transaction.
    fn save_quota_usage(&self, usage: &[(String, Usage)]) -> Result<(), StoreError>;
    /// A number that changes whenever someone else (`portcullis accounts quota`) changed the
    /// store, so that the limits are read again only then.
    fn version(&self) -> Result<i64, StoreError>;
}

/// An account's own limits. `None`: the server's default applies; `Some(0)`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaOverrides {
    pub messages_per_hour: Option<u64>,
    pub recipients_per_day: Option<u64>,
}

/// How much of one quota is used in its current window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Unix time of the first message counted in it.
    pub start: u64,
    pub used: u64,
}

impl Window {
    /// What is used at `now`: nothing once the window has passed.
    pub fn used_at(&self, now: u64, length: u64) -> u64 {
        if self.is_over(now, length) {
            0
        } else {
            self.used
        }
    }

    /// A window that counted nothing has not started.
    fn is_over(&self, now: u64, length: u64) -> bool {
        self.used == 0 || now >= self.start.saturating_add(length)
    }

    fn add(&mut self, amount: u64, now: u64, length: u64) {
        if self.is_over(now, length) {
            *self = Window {
                start: now,
                used: 0,
            };
        }
        self.used = self.used.saturating_add(amount);
    }

    /// When a window in force at `now` ends; a window not yet started would end a full length
    /// after `now`.
    pub fn resets_at(&self, now: u64, length: u64) -> u64 {
        if self.is_over(now, length) {
            now + length
        } else {
            self.start + length
        }
    }

    /// What is left of `limit` at `now`; `None` for no limit (0).
    fn remaining(&self, limit: u64, now: u64, length: u64) -> Option<Remaining> {
        (limit > 0).then(|| Remaining {
            left: limit.saturating_sub(self.used_at(now, length)),
            limit,
            resets: UNIX_EPOCH + Duration::from_secs(self.resets_at(now, length)),
        })
    }
}

/// An account's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub messages: Window,
    pub recipients: Window,
}

impl Usage {
    /// Counts one accepted message with `recipients` recipients.
    pub fn charge(&mut self, recipients: u64, now: u64) {
        self.messages.add(1, now, HOUR);
        self.recipients.add(recipients, now, DAY);
    }
}

/// The limits that apply to an account: its own, else the server's defaults.
pub fn effective_limits(defaults: &QuotaConfig, own: QuotaOverrides) -> QuotaConfig {
    QuotaConfig {
        messages_per_hour: own.messages_per_hour.unwrap_or(defaults.messages_per_hour),
        recipients_per_day: own
            .recipients_per_day
            .unwrap_or(defaults.recipients_per_day),
    }
}

/// What an account with `usage` may still send under `limits` at `now`.
pub fn allowance(limits: &QuotaConfig, usage: &Usage, now: u64) -> Allowance {
    Allowance {
        messages: usage
            .messages
            .remaining(limits.messages_per_hour, now, HOUR),
        recipients: usage
            .recipients
            .remaining(limits.recipients_per_day, now, DAY),
    }
}

/// How often the keeper thread writes changed counters and looks for changed limits.
const KEEP_EVERY: Duration = Duration::from_secs(1);

/// What every check reads and the keeper thread keeps in step with the store.
#[derive(Default)]
struct Book {
    usage: HashMap<String, Usage>,
    /// Accounts whose counters changed since the last write.
    changed: HashSet<String>,
    /// The accounts that have limits of their own.
    overrides: HashMap<String, QuotaOverrides>,
}

/// The quotas of a running server. Checks and charges touch memory only: a MAIL FROM costs a
/// map look-up, not a query, and an accepted message an update. A keeper thread writes the
/// changed counters once a second and re-reads the accounts' own limits when they may have
/// changed.
pub struct QuotaBook {
    defaults: QuotaConfig,
    book: Arc<Mutex<Book>>,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

impl QuotaBook {
    /// Loads the counters and limits from `store` and starts the thread that keeps them.
    pub fn start(defaults: QuotaConfig, store: Arc<dyn QuotaStore>) -> Result<QuotaBook, String> {
        let usage = store
            .quota_usage()
            .map_err(|e| format!("cannot read the quota counters: {e}"))?;
        // Taken before the limits are read: a change in between is read again at once.
        let version = store.version().ok();
        let overrides = store
            .quota_overrides()
            .map_err(|e| format!("cannot read the accounts' quotas: {e}"))?;
        let book = Arc::new(Mutex::new(Book {
            usage: usage.into_iter().collect(),
            changed: HashSet::new(),
            overrides: overrides.into_iter().collect(),
        }));
        let (stop, stopped) = mpsc::channel();
        let keeper = {
            let book = Arc::clone(&book);
            std::thread::Builder::new()
                .name("quota-keeper".into())
                .spawn(move || keep(&book, store.as_ref(), version, &stopped))
                .map_err(|e| format!("cannot start the quota keeper thread: {e}"))?
        };
        Ok(QuotaBook {
            defaults,
            book,
            stop: Mutex::new(Some(stop)),
            keeper: Mutex::new(Some(keeper)),
        })
    }

    /// What `account` may still send now.
    pub fn allowance(&self, account: &str) -> Allowance {
        let book = lock(&self.book);
        let own = book.overrides.get(account).copied().unwrap_or_default();
        let limits = effective_limits(&self.defaults, own);
        if limits.messages_per_hour == 0 && limits.recipients_per_day == 0 {
            return Allowance::default();
        }
        let usage = book.usage.get(account).copied().unwrap_or_default();
        allowance(&limits, &usage, crate::timefmt::unix_now())
    }

    /// Counts a message accepted for `account`. Every account is counted, limited or not, so
    /// that a quota set later applies to what was already sent in its window.
    pub fn charge(&self, account: &str, recipients: usize) {
        let now = crate::timefmt::unix_now();
        let mut book = lock(&self.book);
        match book.usage.get_mut(account) {
            Some(usage) => usage.charge(recipients as u64, now),
            None => {
                let mut usage = Usage::default();
                usage.charge(recipients as u64, now);
                book.usage.insert(account.to_string(), usage);
            }
        }
        if !book.changed.contains(account) {
            book.changed.insert(account.to_string());
        }
    }

    /// Writes what changed and stops the keeper (at shutdown).
    pub fn close(&self) {
        drop(
            self.stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let keeper = self
            .keeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(keeper) = keeper {
            let _ = keeper.join();
        }
    }
}

impl Drop for QuotaBook {
    fn drop(&mut self) {
        self.close();
    }
}

/// The book stays consistent whatever panicked while it was held: every update is complete
/// in itself.
fn lock(book: &Mutex<Book>) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Once a second: the changed counters to the store, in one transaction (one write and fsync a
/// second at most, however busy the server, so the counters never compete with the spool for
/// the disk), and the accounts' own limits from it. Ends, after a last write, when `stopped`
/// is dropped.
fn keep(
    book: &Mutex<Book>,
    store: &dyn QuotaStore,
    mut version: Option<i64>,
    stopped: &mpsc::Receiver<()>,
) {
    loop {
        let stopping = !matches!(
            stopped.recv_timeout(KEEP_EVERY),
            Err(RecvTimeoutError::Timeout)
        );
        write_changed(book, store);
        if stopping {
            return;
        }
        let now = store.version().ok();
        if now.is_none() || now != version {
            reload_overrides(book, store);
            version = now;
        }
    }
}

/// Writes the changed counters; after a failure they stay marked for the next attempt.
fn write_changed(book: &Mutex<Book>, store: &dyn QuotaStore) {
    let batch: Vec<(String, Usage)> = {
        let mut book = lock(book);
        let changed = std::mem::take(&mut book.changed);
        changed
            .into_iter()
            .filter_map(|account| book.usage.get(&account).map(|usage| (account, *usage)))
            .collect()
    };
    if batch.is_empty() {
        return;
    }
    if let Err(error) = store.save_quota_usage(&batch) {
        tracing::error!(%error, "cannot save the quota counters; will retry");
        lock(book)
            .changed
            .extend(batch.into_iter().map(|(account, _)| account));
    }
}

/// Picks up `portcullis accounts quota` changes; on a read error the limits known stay.
fn reload_overrides(book: &Mutex<Book>, store: &dyn QuotaStore) {
    match store.quota_overrides() {
        Ok(overrides) => lock(book).overrides = overrides.into_iter().collect(),
        Err(error) => tracing::error!(%error, "cannot read the accounts' quotas"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn limits(messages_per_hour: u64, recipients_per_day: u64) -> QuotaConfig {
        QuotaConfig {
            messages_per_hour,
            recipients_per_day,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn no_limits_means_no_allowance_to_check() {
        let mut usage = Usage::default();
        usage.charge(1000, 10);
        assert_eq!(allowance(&limits(0, 0), &usage, 20), Allowance::default());
    }

    #[test]
    fn the_hour_starts_with_the_first_message_and_resets_after_it() {
        let limits = limits(2, 0);
        let mut usage = Usage::default();
        usage.charge(1, 1000);
        let messages = allowance(&limits, &usage, 1500).messages.unwrap();
        assert_eq!((messages.left, messages.limit), (1, 2));
        assert_eq!(messages.resets, at(1000 + HOUR));
        usage.charge(1, 2000);
        let messages = allowance(&limits, &usage, 4599).messages.unwrap();
        assert_eq!(messages.left, 0);
        assert_eq!(
            messages.resets,
            at(4600),
            "the window is the first message's"
        );
        // At the reset the whole limit is back, and the next message starts a new window.
        assert_eq!(allowance(&limits, &usage, 4600).messages.unwrap().left, 2);
        usage.charge(1, 5000);
        let messages = allowance(&limits, &usage, 5000).messages.unwrap();
        assert_eq!((messages.left, messages.resets), (1, at(5000 + HOUR)));
    }

    #[test]
    fn recipients_add_up_over_the_day() {
        let limits = limits(0, 10);
        let mut usage = Usage::default();
        usage.charge(4, 0);
        usage.charge(5, DAY - 1);
        let allowance = allowance(&limits, &usage, DAY - 1);
        assert_eq!(allowance.messages, None);
        let recipients = allowance.recipients.unwrap();
        assert_eq!((recipients.left, recipients.resets), (1, at(DAY)));
        assert_eq!(
            super::allowance(&limits, &usage, DAY)
                .recipients
                .unwrap()
                .left,
            10
        );
    }

    #[test]
    fn an_unused_quota_resets_a_full_window_from_now() {
        let remaining = allowance(&limits(5, 0), &Usage::default(), 100)
            .messages
            .unwrap();
        assert_eq!((remaining.left, remaining.resets), (5, at(100 + HOUR)));
    }

    #[test]
    fn own_limits_replace_the_defaults_and_zero_lifts_them() {
        let defaults = limits(100, 1000);
        let own = QuotaOverrides {
            messages_per_hour: Some(0),
            recipients_per_day: Some(50),
        };
        assert_eq!(effective_limits(&defaults, own), limits(0, 50));
        assert_eq!(
            effective_limits(&defaults, QuotaOverrides::default()),
            defaults
        );
    }

    /// A store in memory that remembers what was written.
    #[derive(Default)]
    struct MemoryStore {
        overrides: Mutex<HashMap<String, QuotaOverrides>>,
        saved: Mutex<HashMap<String, Usage>>,
        /// Bumped by a test that changes `overrides` "from another process".
        version: std::sync::atomic::AtomicI64,
        reloads: std::sync::atomic::AtomicUsize,
    }

    impl QuotaStore for MemoryStore {
        fn quota_overrides(&self) -> Result<Vec<(String, QuotaOverrides)>, StoreError> {
            self.reloads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let overrides = self.overrides.lock().unwrap();
            Ok(overrides.iter().map(|(a, o)| (a.clone(), *o)).collect())
        }
        fn quota_usage(&self) -> Result<Vec<(String, Usage)>, StoreError> {
            let saved = self.saved.lock().unwrap();
            Ok(saved.iter().map(|(a, u)| (a.clone(), *u)).collect())
        }
        fn save_quota_usage(&self, usage: &[(String, Usage)]) -> Result<(), StoreError> {
            self.saved.lock().unwrap().extend(usage.iter().cloned());
            Ok(())
        }
        fn version(&self) -> Result<i64, StoreError> {
            Ok(self.version.load(std::sync::atomic::Ordering::SeqCst))
        }
    }

    /// Messages the account may still send this hour.
    fn messages_left(book: &QuotaBook, account: &str) -> u64 {
        let allowance = book.allowance(account);
        allowance.messages.map_or(u64::MAX, |quota| quota.left)
    }

    #[test]
    fn counters_are_written_behind_and_survive_a_restart() {
        let store = Arc::new(MemoryStore::default());
        let book = QuotaBook::start(limits(3, 0), store.clone()).unwrap();
        book.charge("a@example.test", 2);
        book.charge("a@example.test", 1);
        book.charge("b@example.test", 7);
        assert_eq!(messages_left(&book, "a@example.test"), 1);
        book.close();
        let saved = store.saved.lock().unwrap().clone();
        assert_eq!(saved["a@example.test"].messages.used, 2);
        assert_eq!(saved["a@example.test"].recipients.used, 3);
        assert_eq!(saved["b@example.test"].recipients.used, 7);

        let book = QuotaBook::start(limits(3, 0), store.clone()).unwrap();
        assert_eq!(messages_left(&book, "a@example.test"), 1);
        assert_eq!(messages_left(&book, "b@example.test"), 2);
        assert_eq!(messages_left(&book, "c@example.test"), 3);
    }

    #[test]
    fn an_accounts_own_limit_applies_from_the_next_reload() {
        let store = Arc::new(MemoryStore::default());
        let book = QuotaBook::start(limits(0, 0), store.clone()).unwrap();
        book.charge("a@example.test", 1);
        assert_eq!(book.allowance("a@example.test"), Allowance::default());
        store.overrides.lock().unwrap().insert(
            "a@example.test".into(),
            QuotaOverrides {
                messages_per_hour: Some(1),
                recipients_per_day: None,
            },
        );
        reload_overrides(&book.book, store.as_ref());
        let allowance = book.allowance("a@example.test");
        assert_eq!(
            allowance.messages.unwrap().left,
            0,
            "the earlier message counts"
        );
        assert_eq!(allowance.recipients, None);
    }

    #[test]
    fn the_keeper_reloads_the_accounts_own_limits_when_the_store_changed() {
        use std::sync::atomic::Ordering;
        let store = Arc::new(MemoryStore::default());
        let book = QuotaBook::start(limits(0, 0), store.clone()).unwrap();
        // Unchanged: the limits read at the start are not read again.
        std::thread::sleep(KEEP_EVERY * 2 + Duration::from_millis(200));
        assert_eq!(store.reloads.load(Ordering::SeqCst), 1);
        store.version.fetch_add(1, Ordering::SeqCst);
        store.overrides.lock().unwrap().insert(
            "a@example.test".into(),
            QuotaOverrides {
                messages_per_hour: None,
                recipients_per_day: Some(7),
            },
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while book.allowance("a@example.test").recipients.is_none() {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(book.allowance("a@example.test").recipients.unwrap().left, 7);
    }
}
