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
use crate::config::Cidr;
use crate::policy::logins::{Failure, LoginGuard, LoginPolicy, Refusal, Ticket};
use crate::timefmt::{rfc3339_unix, unix_seconds};

/// Where the record of logins lives: the embedded default is [`crate::accounts::SqliteStore`].
pub trait LoginJournal: Send + Sync {
    /// Appends events, all in one transaction.
    fn record(&self, events: &[LoginEvent]) -> Result<(), StoreError>;
    /// What rebuilds the guard, oldest first: failures that counted and network unlocks, since
    /// `failures_since`, and the last success of each (user name, network) and (user name,
    /// address), since `successes_since`.
    fn history(
        &self,
        failures_since: u64,
        successes_since: u64,
    ) -> Result<Vec<LoginRecord>, StoreError>;
    /// Unlocks made after the one numbered `after`: the newest number and what was unlocked.
    fn unlocks_after(&self, after: i64) -> Result<(i64, Vec<Unlock>), StoreError>;
    /// Forgets failures before `failures_before` and successes before `successes_before`.
    fn prune(&self, failures_before: u64, successes_before: u64) -> Result<(), StoreError>;
}

/// One login attempt as the record keeps it (never with its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEvent {
    /// Lower-cased and at most [`MAX_RECORDED_NAME`] bytes; not necessarily an account.
    pub username: String,
    pub client: IpAddr,
    /// What it was counted under: the network, such as `192.0.2.0/24`, or for a failure at an
    /// address known for the user name, that address (`192.0.2.7/32`).
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

/// A past event that rebuilds the guard's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRecord {
    Failed {
        username: String,
        client: IpAddr,
        at: u64,
    },
    Succeeded {
        username: String,
        client: IpAddr,
        at: u64,
        /// Counted under the exact address (known before), not the network.
        address_only: bool,
    },
    /// `portcullis accounts unlock --network` lifted the refusals within this network.
    NetworkUnlocked { network: Cidr, at: u64 },
}

/// What `portcullis accounts unlock` cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlock {
    /// A user name's locks and counts, from every network and address.
    User(String),
    /// The refusals of the networks within this one.
    Network(Cidr),
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

/// How long an attempt waits for its turn (see [`Refusal::Busy`]) before it is answered as
/// locked. A clean pair's turn comes after one password check; a burst of guesses sees the pair
/// locked (or the network refused) long before this.
const WAIT_FOR_TURN: Duration = Duration::from_secs(10);

/// The guard shared by every connection of a server.
pub struct LoginProtection {
    guard: Arc<Mutex<LoginGuard>>,
    /// Woken whenever an attempt ends, for the attempts waiting their turn.
    released: tokio::sync::Notify,
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
            released: tokio::sync::Notify::new(),
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
            released: tokio::sync::Notify::new(),
            events: Mutex::new(None),
            writer: Mutex::new(None),
            clock,
        }
    }

    /// Before a password is checked: the attempt to carry out, waiting its turn while the guard
    /// says [`Refusal::Busy`] (at most [`WAIT_FOR_TURN`], then answered as locked), or why it is
    /// refused. `username` as the client sent it.
    pub async fn admit_in_turn(
        &self,
        username: &str,
        client: IpAddr,
    ) -> Result<Attempt<'_>, Refusal> {
        let deadline = tokio::time::Instant::now() + WAIT_FOR_TURN;
        loop {
            // Registered before asking, so a release between the two is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.admit(username, client) {
                Err(Refusal::Busy) => {}
                other => return other,
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                let until = self.now() + WAIT_FOR_TURN.as_secs();
                return Err(self.refused(username, client, Refusal::Locked { until }));
            }
        }
    }

    /// One try: the attempt, or why not (recorded as a failure with reason `locked` or
    /// `network-refused`; [`Refusal::Busy`] is not recorded, the caller tries again, and
    /// neither is [`Refusal::Probe`], which costs nothing by design).
    pub fn admit(&self, username: &str, client: IpAddr) -> Result<Attempt<'_>, Refusal> {
        let recorded = recorded_name(username);
        let admitted = lock(&self.guard).admit(&recorded, client, self.now());
        match admitted {
            Ok(ticket) => Ok(Attempt {
                protection: self,
                ticket: Some(ticket),
                username: recorded,
                client,
            }),
            Err(refusal @ (Refusal::Busy | Refusal::Probe)) => Err(refusal),
            Err(refusal) => Err(self.refused(username, client, refusal)),
        }
    }

    /// Records a refusal as an uncounted failure, and returns it.
    fn refused(&self, username: &str, client: IpAddr, refusal: Refusal) -> Refusal {
        let reason = match refusal {
            Refusal::NetworkRefused { .. } => FailureReason::NetworkRefused,
            Refusal::Locked { .. } | Refusal::Busy | Refusal::Probe => FailureReason::Locked,
        };
        let network = lock(&self.guard).network_of(client).to_string();
        self.record(LoginEvent {
            username: recorded_name(username),
            client,
            network,
            at: self.now(),
            failure: Some(RecordedFailure::uncounted(reason)),
        });
        refusal
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
        log_what_it_caused(&self.username, ticket.network(), &failure);
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
            network: failure.scope.to_string(),
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
                network: ticket.scope().to_string(),
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
            self.protection.released.notify_waiters();
        }
    }
}

/// One line at the moment a pair is locked or a network refused (each refused attempt after it
/// has its own `authentication failed` line).
fn log_what_it_caused(username: &str, network: Cidr, failure: &Failure) {
    if let Some(until) = failure.locked_until {
        let scope = failure.scope;
        tracing::warn!(user = username, %scope, until = %rfc3339_unix(until), "login locked");
    }
    if let Some(until) = failure.network_refused_until {
        tracing::warn!(%network, until = %rfc3339_unix(until), "network refused");
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
        match record {
            LoginRecord::Failed {
                username,
                client,
                at,
            } => guard.restore_failure(&username, client, at),
            LoginRecord::Succeeded {
                username,
                client,
                at,
                address_only,
            } => guard.restore_success(&username, client, at, address_only),
            LoginRecord::NetworkUnlocked { network, at } => {
                guard.unlock_network(network, at);
            }
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
                Ok((newest, unlocks)) => {
                    last_unlock = newest;
                    let now = unix_seconds(clock());
                    let mut guard = lock(&guard);
                    for unlock in unlocks {
                        apply_unlock(&mut guard, unlock, now);
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

fn apply_unlock(guard: &mut LoginGuard, unlock: Unlock, now: u64) {
    match unlock {
        Unlock::User(username) => {
            let cleared = guard.unlock(&username);
            tracing::info!(user = ?username, cleared, "logins unlocked");
        }
        Unlock::Network(network) => {
            let lifted = guard.unlock_network(network, now);
            tracing::info!(%network, lifted, "network unlocked");
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
        unlocks: Mutex<Vec<Unlock>>,
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
                .map(|e| {
                    let (username, client, at) = (e.username.clone(), e.client, e.at);
                    match e.failure {
                        None => LoginRecord::Succeeded {
                            address_only: e.network.ends_with("/32"),
                            username,
                            client,
                            at,
                        },
                        Some(_) => LoginRecord::Failed {
                            username,
                            client,
                            at,
                        },
                    }
                })
                .collect())
        }

        fn unlocks_after(&self, after: i64) -> Result<(i64, Vec<Unlock>), StoreError> {
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
            .push(Unlock::User("alice@example.test".into()));
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

    #[tokio::test]
    async fn a_second_attempt_waits_for_the_first_then_meets_its_outcome() {
        let protection = LoginProtection::in_memory(
            LoginPolicy {
                lock_after_failures: 1,
                ..policy()
            },
            SystemTime::now,
        );
        let mut first = protection.admit_in_turn("a@b.c", client()).await.unwrap();
        let second = protection.admit_in_turn("a@b.c", client());
        tokio::pin!(second);
        // Waiting while the first is in flight.
        let waited = tokio::time::timeout(Duration::from_millis(100), second.as_mut()).await;
        assert!(waited.is_err());
        // The first fails and locks the pair; the second is then refused without a check.
        first.failed("wrong", FailureReason::WrongPassword);
        drop(first);
        let outcome = tokio::time::timeout(Duration::from_secs(5), second).await;
        assert!(matches!(outcome, Ok(Err(Refusal::Locked { .. }))));
    }

    #[test]
    fn very_long_user_names_are_cut() {
        let name = "é".repeat(400);
        let cut = recorded_name(&name);
        assert!(cut.len() <= MAX_RECORDED_NAME && cut.len() >= MAX_RECORDED_NAME - 1);
        assert!(name.starts_with(&cut));
    }
}
