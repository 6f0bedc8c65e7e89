//! The login guard in a running server: the sans-IO [`LoginGuard`] behind a mutex, rebuilt at
//! start from the durable record in the account store, with every failure (and every success
//! worth remembering) handed to a background thread that writes them in batches. No login waits
//! for a disk write; an unlock by `portcullis accounts unlock` (another process) reaches the
//! running server through the same thread, which looks for new unlocks every second.

use std::net::IpAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ring::rand::{SecureRandom, SystemRandom};

use super::{FailureReason, StoreError};
use crate::policy::logins::{Failure, LoginGuard, LoginPolicy, Refusal, Ticket};
use crate::timefmt::unix_seconds;

/// Where the record of logins lives: the embedded default is [`crate::accounts::SqliteStore`].
pub trait LoginJournal: Send + Sync {
    /// Appends events, all in one transaction.
    fn record(&self, events: &[LoginEvent]) -> Result<(), StoreError>;
    /// What rebuilds the guard, oldest first: failures that counted, since `failures_since`,
    /// and the last success of each (user name, network), since `successes_since`.
    fn history(
        &self,
        failures_since: u64,
        successes_since: u64,
    ) -> Result<Vec<LoginRecord>, StoreError>;
    /// Unlocks made after the one numbered `after`: the newest number and the user names.
    fn unlocks_after(&self, after: i64) -> Result<(i64, Vec<String>), StoreError>;
    /// Forgets failures before `failures_before` and successes before `successes_before`.
    fn prune(&self, failures_before: u64, successes_before: u64) -> Result<(), StoreError>;
}

/// One login attempt as the record keeps it (never with its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEvent {
    /// Lower-cased and at most [`MAX_RECORDED_NAME`] bytes; not necessarily an account.
    pub username: String,
    pub client: IpAddr,
    /// The network it was counted under, such as `192.0.2.0/24`.
    pub network: String,
    pub at: u64,
    /// `None` for a success.
    pub failure: Option<RecordedFailure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedFailure {
    pub reason: FailureReason,
    /// Whether it counted towards the limits (and is replayed at start).
    pub counted: bool,
    /// It locked the user name from the network until then.
    pub locked_until: Option<u64>,
    /// It made the network refused until then.
    pub network_refused_until: Option<u64>,
}

impl RecordedFailure {
    /// A failure that changed nothing but its own row.
    pub fn uncounted(reason: FailureReason) -> RecordedFailure {
        RecordedFailure {
            reason,
            counted: false,
            locked_until: None,
            network_refused_until: None,
        }
    }
}

/// A past login that rebuilds the guard's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub username: String,
    pub client: IpAddr,
    pub at: u64,
    pub succeeded: bool,
}

/// User names longer than this (no address is) are cut to it in the record and in the guard.
pub const MAX_RECORDED_NAME: usize = 320;

/// How often the writer looks for unlocks made by the command line.
const UNLOCK_POLL: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Failures stay in the record this long for `accounts show`.
const HISTORY_SECONDS: u64 = 30 * 86_400;
const MAX_BATCH: usize = 1000;
/// Events waiting for the writer. Beyond this (a flood faster than the disk) further events are
/// not recorded rather than piling up in memory; the guard in memory decides regardless.
const MAX_QUEUED: usize = 100_000;

/// The guard shared by every connection of a server.
pub struct LoginProtection {
    guard: Arc<Mutex<LoginGuard>>,
    events: Mutex<Option<mpsc::SyncSender<LoginEvent>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    clock: fn() -> SystemTime,
}

impl LoginProtection {
    /// Rebuilds the guard from `journal` and starts the thread that writes to it.
    pub fn start(
        policy: LoginPolicy,
        journal: Arc<dyn LoginJournal>,
    ) -> Result<LoginProtection, String> {
        let clock = SystemTime::now;
        let mut guard = new_guard(policy)?;
        replay(&mut guard, journal.as_ref(), unix_seconds(clock()))
            .map_err(|e| format!("cannot read the record of failed logins: {e}"))?;
        let (last_unlock, _) = journal
            .unlocks_after(i64::MAX)
            .map_err(|e| format!("cannot read the record of unlocks: {e}"))?;
        let guard = Arc::new(Mutex::new(guard));
        let (sender, receiver) = mpsc::sync_channel(MAX_QUEUED);
        let writer = {
            let guard = Arc::clone(&guard);
            let horizon = horizons(lock(&guard).policy());
            std::thread::Builder::new()
                .name("login-record".into())
                .spawn(move || write_loop(receiver, journal, guard, last_unlock, horizon, clock))
                .map_err(|e| format!("cannot start the login record thread: {e}"))?
        };
        Ok(LoginProtection {
            guard,
            events: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            clock,
        })
    }

    /// A guard that records nothing.
    #[cfg(test)]
    pub fn in_memory(policy: LoginPolicy, clock: fn() -> SystemTime) -> LoginProtection {
        let guard = new_guard(policy).expect("the system random number generator works");
        LoginProtection {
            guard: Arc::new(Mutex::new(guard)),
            events: Mutex::new(None),
            writer: Mutex::new(None),
            clock,
        }
    }

    /// Before a password is checked: the attempt to carry out, or why it is refused (recorded
    /// as a failure with reason `locked` or `network-refused`). `username` as the client sent it.
    pub fn admit(&self, username: &str, client: IpAddr) -> Result<Attempt<'_>, Refusal> {
        let username = recorded_name(username);
        let now = self.now();
        let admitted = lock(&self.guard).admit(&username, client, now);
        match admitted {
            Ok(ticket) => Ok(Attempt {
                protection: self,
                ticket: Some(ticket),
                username,
                client,
            }),
            Err(refusal) => {
                let reason = match refusal {
                    Refusal::Locked { .. } => FailureReason::Locked,
                    Refusal::NetworkRefused { .. } => FailureReason::NetworkRefused,
                };
                let network = lock(&self.guard).network_of(client).to_string();
                self.record(LoginEvent {
                    username,
                    client,
                    network,
                    at: now,
                    failure: Some(RecordedFailure::uncounted(reason)),
                });
                Err(refusal)
            }
        }
    }

    /// Writes what is still queued and stops the writer (at shutdown).
    pub fn close(&self) {
        drop(
            self.events
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
        );
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    fn now(&self) -> u64 {
        unix_seconds((self.clock)())
    }

    fn record(&self, event: LoginEvent) {
        let events = self
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = events.as_ref() {
            let _ = sender.try_send(event);
        }
    }
}

impl Drop for LoginProtection {
    fn drop(&mut self) {
        self.close();
    }
}

/// An attempt let through to the password check. Dropping it ends it: until then, further
/// attempts for a suspicious (user name, network) wait their turn.
pub struct Attempt<'a> {
    protection: &'a LoginProtection,
    ticket: Option<Ticket>,
    username: String,
    client: IpAddr,
}

impl Attempt<'_> {
    /// The login failed for `reason`; the outcome carries the delay to apply before answering.
    pub fn failed(&mut self, password: &str, reason: FailureReason) -> Failure {
        let now = self.protection.now();
        let ticket = self.ticket.as_ref().expect("a ticket until dropped");
        let failure = lock(&self.protection.guard).failed(ticket, password, now);
        let metrics = crate::metrics::global();
        if failure.locked_until.is_some() {
            metrics.login_locked();
        }
        if failure.network_refused_until.is_some() {
            metrics.network_refused();
        }
        self.protection.record(LoginEvent {
            username: self.username.clone(),
            client: self.client,
            network: ticket.network().to_string(),
            at: now,
            failure: Some(RecordedFailure {
                reason,
                counted: failure.counted,
                locked_until: failure.locked_until,
                network_refused_until: failure.network_refused_until,
            }),
        });
        failure
    }

    pub fn succeeded(&mut self) {
        let now = self.protection.now();
        let ticket = self.ticket.as_ref().expect("a ticket until dropped");
        if lock(&self.protection.guard).succeeded(ticket, now) {
            self.protection.record(LoginEvent {
                username: self.username.clone(),
                client: self.client,
                network: ticket.network().to_string(),
                at: now,
                failure: None,
            });
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            lock(&self.protection.guard).release(ticket);
        }
    }
}

/// Rebuilds `guard` from the record, as of `now`.
pub fn replay(
    guard: &mut LoginGuard,
    journal: &dyn LoginJournal,
    now: u64,
) -> Result<(), StoreError> {
    let (failures_since, successes_since) = horizons(guard.policy()).since(now);
    for record in journal.history(failures_since, successes_since)? {
        if record.succeeded {
            guard.restore_success(&record.username, record.client, record.at);
        } else {
            guard.restore_failure(&record.username, record.client, record.at);
        }
    }
    Ok(())
}

/// A guard with a fresh random key (user names and passwords are hashed under it).
pub fn new_guard(policy: LoginPolicy) -> Result<LoginGuard, String> {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| "the system random number generator failed".to_string())?;
    Ok(LoginGuard::new(policy, &secret))
}

/// The name a user name is counted and recorded under.
pub fn recorded_name(username: &str) -> String {
    let mut name = super::canonical_username(username);
    if name.len() > MAX_RECORDED_NAME {
        let mut end = MAX_RECORDED_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// How far back the record matters.
#[derive(Debug, Clone, Copy)]
struct Horizons {
    /// Failures older than this cannot affect any lock or refusal still in force.
    failures: u64,
    successes: u64,
}

impl Horizons {
    fn since(self, now: u64) -> (u64, u64) {
        (
            now.saturating_sub(self.failures),
            now.saturating_sub(self.successes),
        )
    }
}

fn horizons(policy: &LoginPolicy) -> Horizons {
    Horizons {
        failures: policy.failure_window + policy.lock_seconds.max(policy.network_refuse_seconds),
        successes: policy.remember_success,
    }
}

fn write_loop(
    receiver: mpsc::Receiver<LoginEvent>,
    journal: Arc<dyn LoginJournal>,
    guard: Arc<Mutex<LoginGuard>>,
    mut last_unlock: i64,
    horizon: Horizons,
    clock: fn() -> SystemTime,
) {
    let mut batch = Vec::new();
    let mut last_poll = Instant::now();
    let mut last_prune: Option<Instant> = None;
    loop {
        let open = match receiver.recv_timeout(UNLOCK_POLL) {
            Ok(event) => {
                batch.push(event);
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        if !batch.is_empty() {
            if let Err(error) = journal.record(&batch) {
                tracing::warn!(%error, events = batch.len(), "cannot record logins");
            }
            batch.clear();
        }
        if last_poll.elapsed() >= UNLOCK_POLL {
            last_poll = Instant::now();
            match journal.unlocks_after(last_unlock) {
                Ok((newest, usernames)) => {
                    last_unlock = newest;
                    let mut guard = lock(&guard);
                    for username in usernames {
                        let cleared = guard.unlock(&username);
                        tracing::info!(user = ?username, cleared, "logins unlocked");
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot read unlocks"),
            }
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let now = unix_seconds(clock());
            let (failures_since, successes_since) = horizon.since(now);
            let failures_before = failures_since.min(now.saturating_sub(HISTORY_SECONDS));
            if let Err(error) = journal.prune(failures_before, successes_since) {
                tracing::warn!(%error, "cannot prune the record of logins");
            }
        }
        if !open {
            return;
        }
    }
}

fn lock(guard: &Mutex<LoginGuard>) -> MutexGuard<'_, LoginGuard> {
    guard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal in memory that keeps what it is given.
    #[derive(Default)]
    struct Memory {
        events: Mutex<Vec<LoginEvent>>,
        unlocks: Mutex<Vec<String>>,
    }

    impl LoginJournal for Memory {
        fn record(&self, events: &[LoginEvent]) -> Result<(), StoreError> {
            self.events.lock().unwrap().extend_from_slice(events);
            Ok(())
        }

        fn history(&self, since: u64, _: u64) -> Result<Vec<LoginRecord>, StoreError> {
            let events = self.events.lock().unwrap();
            Ok(events
                .iter()
                .filter(|e| e.at >= since && e.failure.is_none_or(|f| f.counted))
                .map(|e| LoginRecord {
                    username: e.username.clone(),
                    client: e.client,
                    at: e.at,
                    succeeded: e.failure.is_none(),
                })
                .collect())
        }

        fn unlocks_after(&self, after: i64) -> Result<(i64, Vec<String>), StoreError> {
            let unlocks = self.unlocks.lock().unwrap();
            let newest = unlocks.len() as i64;
            let start = usize::try_from(after.clamp(0, newest)).unwrap();
            Ok((newest, unlocks[start..].to_vec()))
        }

        fn prune(&self, _: u64, _: u64) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn policy() -> LoginPolicy {
        LoginPolicy {
            lock_after_failures: 3,
            delay_after_failures: 10,
            ..crate::config::AuthConfig::default().login_policy()
        }
    }

    fn client() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    #[test]
    fn failures_are_recorded_with_their_reasons_and_survive_a_restart() {
        let journal = Arc::new(Memory::default());
        let protection = LoginProtection::start(policy(), journal.clone()).unwrap();
        for n in 0..3 {
            let mut attempt = protection.admit("Alice@Example.test", client()).unwrap();
            attempt.failed(&format!("guess{n}"), FailureReason::WrongPassword);
        }
        assert!(matches!(
            protection.admit("alice@example.test", client()),
            Err(Refusal::Locked { .. })
        ));
        protection.close();
        let events = journal.events.lock().unwrap().clone();
        let reasons: Vec<(&str, &str, bool)> = events
            .iter()
            .map(|e| {
                let failure = e.failure.unwrap();
                (e.network.as_str(), failure.reason.as_str(), failure.counted)
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("192.0.2.0/24", "wrong-password", true),
                ("192.0.2.0/24", "wrong-password", true),
                ("192.0.2.0/24", "wrong-password", true),
                ("192.0.2.0/24", "locked", false),
            ]
        );
        assert!(events.iter().all(|e| e.username == "alice@example.test"));
        // A new server on the same record: still locked.
        let restarted = LoginProtection::start(policy(), journal.clone()).unwrap();
        assert!(matches!(
            restarted.admit("alice@example.test", client()),
            Err(Refusal::Locked { .. })
        ));
        // An unlock recorded by the command line reaches the running server.
        journal
            .unlocks
            .lock()
            .unwrap()
            .push("alice@example.test".into());
        let start = Instant::now();
        while restarted.admit("alice@example.test", client()).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "never unlocked");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn an_attempt_in_progress_ends_when_dropped() {
        let protection = LoginProtection::in_memory(
            LoginPolicy {
                delay_after_failures: 1,
                ..policy()
            },
            SystemTime::now,
        );
        let mut attempt = protection.admit("a@b.c", client()).unwrap();
        attempt.failed("x", FailureReason::UnknownUser);
        drop(attempt);
        let held = protection.admit("a@b.c", client()).unwrap();
        assert!(protection.admit("a@b.c", client()).is_err());
        drop(held);
        assert!(protection.admit("a@b.c", client()).is_ok());
    }

    #[test]
    fn very_long_user_names_are_cut() {
        let name = "é".repeat(400);
        let cut = recorded_name(&name);
        assert!(cut.len() <= MAX_RECORDED_NAME && cut.len() >= MAX_RECORDED_NAME - 1);
        assert!(name.starts_with(&cut));
    }
}
