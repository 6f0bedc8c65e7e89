//! The queue manager's core: which recipient is tried when, on which destination's
//! connections, and what each outcome means. Sans-IO: it takes [`Input`]s and the time, and
//! produces [`Record`]s (to make durable first) and [`Effect`]s (to carry out after), so every
//! rule here is a unit test away. [`super::driver`] runs it on a thread of its own.
//!
//! The order that keeps mail safe: the driver appends the records of a batch of inputs to the
//! state log (one `fdatasync`) before it carries out any effect of that batch. So a recipient is
//! `delivered` on disk only after the remote 250 came in, `bounced` only after its DSN was
//! spooled ([`Input::BounceSpooled`]), and nothing acts on a state that a crash could undo.
//!
//! Scheduling (where "when is a deferred message retried" is answered):
//! - a new or recovered recipient is due at once, a deferred one at its `next_attempt_at`
//!   ([`schedule::after_temporary_failure`]: `retry_seconds` with jitter, then expiry);
//! - due recipients wait in their destination's ready queue; a destination (a recipient domain,
//!   or the relay a route names) gets at most `concurrency_per_destination` connections, and
//!   `max_connections` bound them all;
//! - a destination that is unreachable or throttles us is suspended as a whole
//!   ([`schedule::DestinationState`]): everything waiting for it is deferred at once with that
//!   reason, and after the suspension one probe connection decides whether it is back. So a dead
//!   destination costs one connection attempt per suspension, not one per message.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU64;
use std::sync::Arc;

use super::interner::Interner;

use super::schedule::{self, DestinationState, RetryPolicy, TimerId, Timers, Verdict};
use super::state::{self, Event, RecipientState, Record};
use super::table::Table;
use crate::bounce::{Kind, Notify, should_notify};
use crate::spool::QueuedMessage;

/// The knobs of `[delivery]` the scheduler uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[delivery] enabled`: when false, nothing is started; mail waits in the queue.
    pub enabled: bool,
    pub retry: RetryPolicy,
    pub concurrency_per_destination: u32,
    pub max_connections: u32,
    pub messages_per_connection: u32,
    pub recipients_per_transaction: usize,
}

/// Identifies one delivery connection, so its later reports find their way back.
pub type WorkerId = u64;

/// Work for a connection: some recipients of one message, all for its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub destination: String,
    /// The recipients' domain (the same for all of them).
    pub domain: String,
    /// Indexes into the message's recipients.
    pub recipients: Vec<u32>,
}

/// How one recipient's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Temporary,
    Permanent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    pub rcpt: u32,
    pub outcome: Outcome,
    /// The reply on one line (`550 5.1.1 …`): the remote one, or ours.
    pub reply: String,
    /// `host[ip]:port` that gave it, when a server did.
    pub relay: Option<String>,
    /// The next hop took the recipient's DSN request (it offered DSN): a success report is
    /// then its job, not ours (RFC 3461 §6.2.1).
    pub dsn_forwarded: bool,
}

/// What an attempt said about the destination as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A server answered and took part in a transaction.
    Reachable,
    /// No server of the destination could be reached (refused, timed out, 4xx greeting).
    Unreachable,
    /// A server told us to slow down (421, 4.7.x rate limits); the reply text is kept.
    Throttled(String),
    /// Nothing was learnt about the destination (a DNS failure, a local error).
    Unknown,
}

/// One finished transaction (or a failed connection attempt) of a worker.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub worker: WorkerId,
    pub job: Job,
    pub results: Vec<RecipientResult>,
    pub signal: Signal,
    /// The connection can take another message.
    pub reusable: bool,
    /// How long the attempt took, for the log line.
    pub elapsed_ms: u64,
}

/// An operator's command (`portcullis queue …`); `id: None` means every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Retry(Option<String>),
    Hold(String),
    Release(String),
    Delete(String),
    Bounce(String),
}

#[derive(Debug)]
pub enum Input {
    /// Messages made durable by the spool (new ones, and DSNs we spooled ourselves).
    Stored(Vec<QueuedMessage>),
    Attempt(Attempt),
    /// A worker's connection has ended.
    WorkerDone {
        worker: WorkerId,
        destination: String,
    },
    /// The DSN of `BounceJob` `job` is spooled (`ok`) or could not be.
    BounceSpooled {
        job: BounceJob,
        ok: bool,
    },
    Command(Command),
    /// A copy-forward could not be spooled; the message stays where it is.
    CopyFailed {
        id: String,
    },
}

/// A notification to build and spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceJob {
    pub id: String,
    pub kind: Kind,
    pub recipients: Vec<BounceRecipient>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceRecipient {
    pub rcpt: u32,
    /// The enhanced status (`5.1.1`, `4.4.7`).
    pub status: String,
    pub reply: Option<String>,
    pub relay: Option<String>,
    /// Recorded once the DSN is spooled: `Bounced` or `Expired` for a failure, `DelayWarned`
    /// for a delay notice, nothing for a success report.
    pub then: Option<Event>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Open a new connection for `worker` and deliver `job` on it.
    Connect { worker: WorkerId, job: Job },
    /// The answer to a worker's report: its next job on the same connection, or none (close).
    Next { worker: WorkerId, job: Option<Job> },
    /// Build and spool a DSN, then report [`Input::BounceSpooled`].
    Notify(BounceJob),
    /// Every message of this sealed segment is finished: delete the file.
    Reclaim(u32),
    /// Spool a copy of message `id` holding only `recipients` (its unfinished ones), with
    /// `moved_from` set; the copy's [`Input::Stored`] completes the move, or
    /// [`Input::CopyFailed`] reports that it could not be made.
    CopyForward { id: String, recipients: Vec<u32> },
}

/// A recipient as the scheduler holds it; the message body never enters memory here.
#[derive(Debug)]
struct Recipient {
    address: Box<str>,
    destination: Arc<str>,
    notify: Option<Notify>,
    state: RecipientState,
    /// In a ready queue, on a connection, or waiting for its DSN to be spooled.
    busy: bool,
}

#[derive(Debug)]
struct Message {
    sender: Arc<str>,
    received_at: u64,
    recipients: Box<[Recipient]>,
    retry_timer: Option<TimerId>,
    /// Being copied forward: nothing is tried until the copy takes over (or fails).
    moving: bool,
}

impl Message {
    fn finished(&self) -> bool {
        self.recipients.iter().all(|r| r.state.status.is_final())
    }
}

#[derive(Debug, Default)]
struct Destination {
    ready: VecDeque<Ready>,
    state: DestinationState,
    resume_timer: Option<TimerId>,
}

/// Work waiting in a destination's ready queue: which message and which of its recipients.
/// The [`Job`] (its id, destination and domain as strings) is made when a connection takes it,
/// so a million waiting recipients cost 24 bytes each here, not four allocations.
#[derive(Debug)]
struct Ready {
    message: u64,
    recipients: Indexes,
}

/// Recipient indexes, without an allocation for the common single one.
#[derive(Debug)]
enum Indexes {
    One(u32),
    Many(Box<[u32]>),
}

impl Indexes {
    fn of(indexes: &[u32]) -> Indexes {
        match indexes {
            [one] => Indexes::One(*one),
            many => Indexes::Many(many.into()),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            Indexes::One(one) => std::slice::from_ref(one),
            Indexes::Many(many) => many,
        }
    }
}

impl Ready {
    /// The job for a connection to `destination`; the domain is the first recipient's (all
    /// of a job's recipients share it).
    fn job(&self, messages: &Table<Message>, destination: &str) -> Job {
        let recipients = self.recipients.as_slice();
        let domain = messages
            .get(&self.message)
            .and_then(|message| message.recipients.get(*recipients.first()? as usize))
            .map(|recipient| domain_of(&recipient.address).to_ascii_lowercase())
            .unwrap_or_default();
        Job {
            id: queue_id(self.message),
            destination: destination.to_string(),
            domain,
            recipients: recipients.to_vec(),
        }
    }
}

/// A spool segment as the manager sees it.
#[derive(Debug, Default)]
struct Segment {
    /// Unfinished messages in it.
    live: usize,
    /// Messages it holds, finished or not.
    total: usize,
    /// Since when the spool writer has been past it.
    sealed_at: Option<u64>,
}

/// Copy-forward looks for segments to empty this often (seconds) ...
const COPY_SCAN_INTERVAL: u64 = 60;
/// ... among those sealed this long ago, at least three quarters finished.
const COPY_FORWARD_AFTER: u64 = 600;
/// Copies being spooled at once, so a big segment is moved in steps.
const MAX_COPIES_IN_FLIGHT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    Retry(u64),
    /// Boxed: one timer per deferred message is the common case, and a `String` here would
    /// make every entry of the timer tree 8 bytes bigger.
    Resume(Box<str>),
}

/// How a recipient's domain maps to a destination (a relay shared by many domains is one).
pub type DestinationOf = Box<dyn Fn(&str) -> String + Send>;

pub struct Queue {
    settings: Settings,
    destination_of: DestinationOf,
    /// Keyed by the queue id's two numbers packed in one ([`key`]): no string per message.
    messages: Table<Message>,
    destinations: HashMap<String, Destination>,
    timers: Timers<Timer>,
    /// What each spool segment holds, for reclaiming and copying forward.
    segments: BTreeMap<u32, Segment>,
    /// When copy-forward last looked for segments to empty.
    last_copy_scan: u64,
    /// Segments below this number get no new messages: the spool writer has moved past them.
    sealed_below: u32,
    connections: u32,
    next_worker: WorkerId,
    /// Jobs per open connection, for `messages_per_connection`.
    worker_jobs: HashMap<WorkerId, u32>,
    records: Vec<Record>,
    effects: Vec<Effect>,
    /// One copy of each destination, reply and relay that recipients share.
    strings: Interner,
}

impl Queue {
    /// `sealed_below`: the first segment the spool writer uses after start-up; every recovered
    /// segment is below it.
    pub fn new(settings: Settings, destination_of: DestinationOf, sealed_below: u32) -> Queue {
        Queue {
            settings,
            destination_of,
            messages: Table::default(),
            destinations: HashMap::new(),
            timers: Timers::new(),
            segments: BTreeMap::new(),
            last_copy_scan: 0,
            sealed_below,
            connections: 0,
            next_worker: 1,
            worker_jobs: HashMap::new(),
            records: Vec::new(),
            effects: Vec::new(),
            strings: Interner::default(),
        }
    }

    /// Takes in a message recovered at start-up with its recipients' state from the log.
    /// Finished ones only count towards their segment, so an all-finished segment is reclaimed.
    pub fn recover(&mut self, message: &QueuedMessage, states: Vec<RecipientState>, now: u64) {
        let segment = segment_of(&message.id);
        let entry = self.message_entry(message, states);
        let info = self.segments.entry(segment).or_default();
        info.total += 1;
        if entry.finished() {
            return;
        }
        info.live += 1;
        // make_ready queues what is due and arms the retry timer for the rest.
        self.messages.insert(key(&message.id), entry);
        self.make_ready(&message.id, now);
    }

    /// After recovery: every recovered segment is sealed now; those that hold nothing
    /// unfinished are reclaimed.
    pub fn recovered(&mut self, now: u64) {
        for info in self.segments.values_mut() {
            info.sealed_at.get_or_insert(now);
        }
        self.reclaim_sealed();
    }

    pub fn handle(&mut self, input: Input, now: u64) {
        match input {
            Input::Stored(messages) => {
                for message in messages {
                    self.store(&message, now);
                }
            }
            Input::Attempt(attempt) => self.attempt(attempt, now),
            Input::WorkerDone {
                worker,
                destination,
            } => self.worker_done(worker, &destination, now),
            Input::BounceSpooled { job, ok } => self.bounce_spooled(job, ok, now),
            Input::Command(command) => self.command(command, now),
            Input::CopyFailed { id } => self.copy_failed(&id, now),
        }
    }

    /// Fires the timers that are due and starts the connections the limits allow.
    pub fn tick(&mut self, now: u64) {
        // Before the timers: a message about to be moved is tried from its copy.
        if now >= self.last_copy_scan + COPY_SCAN_INTERVAL {
            self.last_copy_scan = now;
            self.copy_forward(now);
        }
        for timer in self.timers.pop_due(now) {
            match timer {
                Timer::Retry(message_key) => {
                    if let Some(message) = self.messages.get_mut(&message_key) {
                        message.retry_timer = None;
                        self.make_ready(&queue_id(message_key), now);
                    }
                }
                Timer::Resume(destination) => {
                    if let Some(entry) = self.destinations.get_mut(&*destination) {
                        entry.resume_timer = None;
                    }
                }
            }
        }
        self.dispatch(now);
    }

    /// When `tick` next has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// The records to make durable before the effects are carried out.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// The effects, with the notifications of one message and kind merged: failures known at
    /// the same moment share one DSN.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        let mut effects: Vec<Effect> = Vec::with_capacity(self.effects.len());
        // Where each message's notification of each kind already is, so merging stays linear
        // however many recipients fail in one batch.
        let mut notices: HashMap<(String, Kind), usize> = HashMap::new();
        for effect in std::mem::take(&mut self.effects) {
            if let Effect::Notify(job) = &effect {
                match notices.entry((job.id.clone(), job.kind)) {
                    Entry::Occupied(at) => {
                        if let Effect::Notify(earlier) = &mut effects[*at.get()] {
                            earlier.recipients.extend(job.recipients.iter().cloned());
                        }
                        continue;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(effects.len());
                    }
                }
            }
            effects.push(effect);
        }
        effects
    }

    /// What a compacted state log holds for the unfinished messages: each recipient's state
    /// as it stands, in the fewest records ([`state::summary`]).
    pub fn state_summary(&self, now: u64) -> impl Iterator<Item = Record> + '_ {
        self.messages
            .iter()
            .flat_map(move |(&message_key, message)| {
                let id = queue_id(message_key);
                message
                    .recipients
                    .iter()
                    .enumerate()
                    .flat_map(move |(rcpt, r)| state::summary(&id, rcpt as u32, now, &r.state))
            })
    }

    /// A finished message whose segment is still on disk: a compacted log keeps its records,
    /// or a restart would find it queued again.
    pub fn finished_but_spooled(&self, id: &str) -> bool {
        !self.messages.contains_key(&key(id)) && self.segments.contains_key(&segment_of(id))
    }

    /// The message is unfinished.
    pub fn is_live(&self, id: &str) -> bool {
        self.messages.contains_key(&key(id))
    }

    pub fn queued_messages(&self) -> usize {
        self.messages.len()
    }

    /// The unfinished messages and their recipients by status, for `/metrics`.
    pub fn census(&self) -> crate::metrics::Census {
        let mut by_status: BTreeMap<&'static str, u64> = BTreeMap::new();
        for recipient in self.messages.values().flat_map(|m| m.recipients.iter()) {
            *by_status
                .entry(super::status_name(&recipient.state))
                .or_default() += 1;
        }
        crate::metrics::Census {
            messages: self.messages.len() as u64,
            recipients: by_status.into_iter().collect(),
        }
    }

    fn store(&mut self, message: &QueuedMessage, now: u64) {
        let segment = segment_of(&message.id);
        if segment > self.sealed_below {
            // Messages arrive in spool order: every segment before this one is complete.
            self.sealed_below = segment;
            for (_, info) in self.segments.range_mut(..segment) {
                info.sealed_at.get_or_insert(now);
            }
            self.reclaim_sealed();
        }
        if self.messages.contains_key(&key(&message.id)) {
            return;
        }
        self.segments.entry(segment).or_default().total += 1;
        if let Some(original) = &message.envelope.moved_from {
            self.complete_move(original, message, now);
            return;
        }
        let states = vec![RecipientState::default(); message.envelope.to.len()];
        let entry = self.message_entry(message, states);
        self.segments.entry(segment).or_default().live += 1;
        self.messages.insert(key(&message.id), entry);
        self.make_ready(&message.id, now);
    }

    /// Looks for sealed segments kept alive by a few unfinished messages, and copies those
    /// forward: a message deferred for days must not keep 64 MiB of delivered mail on disk.
    fn copy_forward(&mut self, now: u64) {
        let sealed_below = self.sealed_below;
        let worth_emptying: Vec<u32> = self
            .segments
            .range(..sealed_below)
            .filter(|(_, info)| {
                info.live > 0
                    && info.live * 4 <= info.total
                    && info
                        .sealed_at
                        .is_some_and(|at| at + COPY_FORWARD_AFTER <= now)
            })
            .map(|(segment, _)| *segment)
            .collect();
        if worth_emptying.is_empty() {
            return;
        }
        let mut started = self.messages.values().filter(|m| m.moving).count();
        for (&message_key, message) in self.messages.iter_mut() {
            if started >= MAX_COPIES_IN_FLIGHT {
                break;
            }
            let idle = message.recipients.iter().all(|r| !r.busy);
            let segment = (message_key >> 32) as u32;
            if message.moving || !idle || !worth_emptying.contains(&segment) {
                continue;
            }
            message.moving = true;
            let mut recipients = Vec::new();
            for (index, recipient) in message.recipients.iter_mut().enumerate() {
                if !recipient.state.status.is_final() {
                    recipient.busy = true;
                    recipients.push(index as u32);
                }
            }
            if let Some(timer) = message.retry_timer.take() {
                self.timers.cancel(timer);
            }
            started += 1;
            self.effects.push(Effect::CopyForward {
                id: queue_id(message_key),
                recipients,
            });
        }
    }

    /// The copy of `original` is spooled: its recipients take over the original's state (the
    /// copy's recipients are the original's unfinished ones, in order), and the original ends.
    /// A copy whose original is gone (deleted meanwhile) or was not being moved is dropped.
    fn complete_move(&mut self, original: &str, copy: &QueuedMessage, now: u64) {
        let moving = self.messages.get(&key(original)).is_some_and(|m| m.moving);
        if !moving {
            self.records
                .push(Record::plain(&copy.id, None, now, Event::Deleted));
            self.reclaim_sealed();
            return;
        }
        let carried: Vec<RecipientState> = self.messages[&key(original)]
            .recipients
            .iter()
            .filter(|r| !r.state.status.is_final())
            .map(|r| r.state.clone())
            .collect();
        for (rcpt, state) in carried.iter().enumerate() {
            self.records
                .push(state::carried(&copy.id, rcpt as u32, now, state));
        }
        // Last, so that a crash between the two leaves the original whole.
        self.records
            .push(Record::plain(original, None, now, Event::Deleted));
        self.remove(original);
        tracing::info!(id = original, to = %copy.id, "copied forward to free its spool segment");
        let entry = self.message_entry(copy, carried);
        self.segments.entry(segment_of(&copy.id)).or_default().live += 1;
        self.messages.insert(key(&copy.id), entry);
        self.make_ready(&copy.id, now);
    }

    fn copy_failed(&mut self, id: &str, now: u64) {
        let Some(message) = self.messages.get_mut(&key(id)) else {
            return;
        };
        message.moving = false;
        for recipient in &mut message.recipients {
            recipient.busy = false;
        }
        self.make_ready(id, now);
    }

    fn message_entry(&mut self, message: &QueuedMessage, states: Vec<RecipientState>) -> Message {
        let envelope = &message.envelope;
        let recipients = envelope
            .to
            .iter()
            .zip(states)
            .enumerate()
            .map(|(index, (address, mut state))| Recipient {
                address: address.as_str().into(),
                destination: self
                    .strings
                    .intern(&(self.destination_of)(domain_of(address))),
                notify: envelope
                    .dsn
                    .get(index)
                    .and_then(|dsn| dsn.notify.as_deref())
                    .and_then(|notify| Notify::parse(notify).ok()),
                state: {
                    self.strings.share(&mut state.last_reply);
                    self.strings.share(&mut state.last_relay);
                    state
                },
                busy: false,
            })
            .collect();
        Message {
            sender: self.strings.intern(&envelope.from),
            received_at: crate::timefmt::parse_rfc3339(&envelope.received_at).unwrap_or(0),
            recipients,
            retry_timer: None,
            moving: false,
        }
    }

    /// Puts every recipient of `id` that is due and idle into its destination's ready queue,
    /// in jobs of at most `recipients_per_transaction`.
    fn make_ready(&mut self, id: &str, now: u64) {
        let Some(message) = self.messages.get_mut(&key(id)) else {
            return;
        };
        let mut groups: BTreeMap<(Arc<str>, String), Vec<u32>> = BTreeMap::new();
        for (index, recipient) in message.recipients.iter_mut().enumerate() {
            let state = &recipient.state;
            let due = state.next_attempt_at.is_none_or(|at| at.get() <= now);
            if recipient.busy || state.held || state.status.is_final() || !due {
                continue;
            }
            recipient.busy = true;
            let domain = domain_of(&recipient.address).to_ascii_lowercase();
            groups
                .entry((recipient.destination.clone(), domain))
                .or_default()
                .push(index as u32);
        }
        // Grouped by domain too, so that a job's recipients share one (its Job names it).
        for ((destination, _domain), recipients) in groups {
            let queue = self
                .destinations
                .entry(destination.to_string())
                .or_default();
            for chunk in recipients.chunks(self.settings.recipients_per_transaction.max(1)) {
                queue.ready.push_back(Ready {
                    message: key(id),
                    recipients: Indexes::of(chunk),
                });
            }
        }
        self.schedule_retry(id, now);
    }

    /// Starts connections while a destination has ready work and the limits allow. A
    /// suspended destination's waiting work is deferred at once rather than left to wait
    /// unexplained.
    fn dispatch(&mut self, now: u64) {
        if !self.settings.enabled {
            return;
        }
        let names: Vec<String> = self
            .destinations
            .iter()
            .filter(|(_, d)| !d.ready.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            let suspended = self.destinations[&name].state.suspended_until();
            if suspended.is_some_and(|until| until > now) {
                self.defer_waiting(&name, now);
                continue;
            }
            while self.connections < self.settings.max_connections {
                let entry = self.destinations.get_mut(&name).expect("listed above");
                if entry.ready.is_empty()
                    || !entry
                        .state
                        .try_start(now, self.settings.concurrency_per_destination)
                {
                    break;
                }
                let job = entry
                    .ready
                    .pop_front()
                    .expect("not empty")
                    .job(&self.messages, &name);
                let worker = self.next_worker;
                self.next_worker += 1;
                self.connections += 1;
                self.worker_jobs.insert(worker, 1);
                self.effects.push(Effect::Connect { worker, job });
            }
        }
        // An idle destination with nothing to remember is forgotten, so the map grows with the
        // destinations in use, not with every domain ever mailed.
        self.destinations.retain(|_, d| {
            !d.ready.is_empty()
                || d.state.in_flight() > 0
                || d.state.consecutive_failures() > 0
                || d.state.suspended_until().is_some_and(|until| until > now)
        });
    }

    fn attempt(&mut self, attempt: Attempt, now: u64) {
        let destination = attempt.job.destination.clone();
        let entry = self.destinations.entry(destination.clone()).or_default();
        match &attempt.signal {
            Signal::Reachable => entry.state.on_success(now),
            Signal::Unreachable => entry.state.on_unreachable(now),
            Signal::Throttled(text) => entry.state.on_throttled(now, text),
            Signal::Unknown => {}
        }
        if let Some(until) = entry.state.suspended_until().filter(|until| *until > now)
            && entry.resume_timer.is_none()
        {
            let timer = Timer::Resume(destination.into_boxed_str());
            entry.resume_timer = Some(self.timers.schedule(until, timer));
        }
        for result in &attempt.results {
            let (id, destination) = (&attempt.job.id, &attempt.job.destination);
            self.recipient_result(id, destination, result, attempt.elapsed_ms, now, now);
        }
        self.schedule_retry(&attempt.job.id, now);
        self.finish_if_done(&attempt.job.id);
        let next = if attempt.reusable {
            self.next_job_for(attempt.worker, &attempt.job.destination, now)
        } else {
            None
        };
        self.effects.push(Effect::Next {
            worker: attempt.worker,
            job: next,
        });
    }

    /// The next job for a connection that can take one, within `messages_per_connection`.
    fn next_job_for(&mut self, worker: WorkerId, destination: &str, now: u64) -> Option<Job> {
        let sent = self.worker_jobs.get(&worker).copied().unwrap_or(0);
        if sent >= self.settings.messages_per_connection {
            return None;
        }
        let entry = self.destinations.get_mut(destination)?;
        if !entry.state.ready(now) {
            return None;
        }
        let job = entry.ready.pop_front()?.job(&self.messages, destination);
        self.worker_jobs.insert(worker, sent + 1);
        Some(job)
    }

    fn worker_done(&mut self, worker: WorkerId, destination: &str, now: u64) {
        if self.worker_jobs.remove(&worker).is_some() {
            self.connections = self.connections.saturating_sub(1);
            if let Some(entry) = self.destinations.get_mut(destination) {
                entry.state.finish();
            }
        }
        self.dispatch(now);
    }

    /// Records one recipient's outcome. A deferred recipient is not retried before
    /// `not_before` (the end of its destination's suspension).
    fn recipient_result(
        &mut self,
        id: &str,
        destination: &str,
        result: &RecipientResult,
        elapsed_ms: u64,
        now: u64,
        not_before: u64,
    ) {
        let policy = self.settings.retry.clone();
        let Some(message) = self.messages.get_mut(&key(id)) else {
            return;
        };
        let (received_at, seed, sender) =
            (message.received_at, seed_of(id), message.sender.clone());
        let Some(recipient) = message.recipients.get_mut(result.rcpt as usize) else {
            return;
        };
        recipient.busy = false;
        if recipient.state.status.is_final() {
            return;
        }
        let attempt = recipient.state.attempts + 1;
        let retry = schedule::after_temporary_failure(&policy, received_at, attempt, now, seed);
        let verdict = match (result.outcome, retry) {
            (Outcome::Delivered, _) => "sent",
            (Outcome::Permanent, _) => "bounced",
            (Outcome::Temporary, Verdict::Expire) => "expired",
            (Outcome::Temporary, Verdict::RetryAt(_)) => "deferred",
        };
        count_attempt(verdict, destination, now.saturating_sub(received_at));
        log_attempt(
            id,
            &recipient.address,
            result,
            received_at,
            now,
            elapsed_ms,
            attempt,
            verdict,
        );
        let notify = recipient.notify;
        match (result.outcome, retry) {
            (Outcome::Delivered, _) => {
                let record = result_record(id, now, Event::Delivered, result);
                self.apply(record);
                // We only ever relay: the success we can report is "relayed", and only when the
                // next hop could not be asked to report delivery itself.
                if !result.dsn_forwarded
                    && should_notify(&sender, notify, crate::bounce::Action::Relayed)
                {
                    self.effects.push(Effect::Notify(BounceJob {
                        id: id.to_string(),
                        kind: Kind::Success,
                        recipients: vec![bounce_recipient(result, "2.0.0", None)],
                    }));
                }
            }
            (Outcome::Temporary, Verdict::RetryAt(at)) => {
                let deadline = policy.deadline(received_at);
                let next_attempt_at = at.max(not_before).min(deadline.max(at));
                let event = Event::Deferred { next_attempt_at };
                let record = result_record(id, now, event, result);
                self.apply(record);
                self.maybe_warn_delay(id, result, now);
            }
            (Outcome::Temporary, Verdict::Expire) => {
                self.fail(id, result, Event::Expired, "4.4.7".into(), now);
            }
            (Outcome::Permanent, _) => {
                let status = enhanced_of(&result.reply, "5.0.0");
                self.fail(id, result, Event::Bounced, status, now);
            }
        }
    }

    /// A permanent failure or expiry: the DSN first, the final record after it is spooled.
    /// Without anyone to notify, the record is written at once.
    fn fail(&mut self, id: &str, result: &RecipientResult, event: Event, status: String, now: u64) {
        let message = &self.messages[&key(id)];
        let recipient = &message.recipients[result.rcpt as usize];
        let wanted = should_notify(
            &message.sender,
            recipient.notify,
            crate::bounce::Action::Failed,
        );
        if !wanted {
            let record = result_record(id, now, event, result);
            self.apply(record);
            return;
        }
        self.mark_busy(id, result.rcpt, true);
        self.effects.push(Effect::Notify(BounceJob {
            id: id.to_string(),
            kind: Kind::Failure,
            recipients: vec![bounce_recipient(result, &status, Some(event))],
        }));
    }

    fn maybe_warn_delay(&mut self, id: &str, result: &RecipientResult, now: u64) {
        let policy = &self.settings.retry;
        let message = &self.messages[&key(id)];
        let recipient = &message.recipients[result.rcpt as usize];
        if !schedule::delay_warning_due(
            policy,
            message.received_at,
            recipient.state.delay_warned,
            now,
        ) || !should_notify(
            &message.sender,
            recipient.notify,
            crate::bounce::Action::Delayed,
        ) {
            return;
        }
        let status = enhanced_of(&result.reply, "4.0.0");
        self.effects.push(Effect::Notify(BounceJob {
            id: id.to_string(),
            kind: Kind::Delay,
            recipients: vec![bounce_recipient(result, &status, Some(Event::DelayWarned))],
        }));
    }

    fn bounce_spooled(&mut self, job: BounceJob, ok: bool, now: u64) {
        if ok {
            let kind = match job.kind {
                Kind::Failure => "failure",
                Kind::Delay => "delay",
                Kind::Success => "success",
            };
            crate::metrics::global().notified(kind);
        }
        for recipient in &job.recipients {
            let Some(event) = recipient.then.clone() else {
                continue;
            };
            let record = Record {
                id: job.id.clone(),
                rcpt: Some(recipient.rcpt),
                at: now,
                event: if ok {
                    event.clone()
                } else {
                    // The DSN could not be spooled (a full disk): keep the recipient and try it
                    // again later, which fails again and bounces then.
                    Event::Deferred {
                        next_attempt_at: now + schedule::RetryPolicy::default().retry_seconds[0],
                    }
                },
                reply: recipient.reply.clone(),
                relay: recipient.relay.clone(),
            };
            if event == Event::DelayWarned {
                // A notice only: the recipient goes on as it was (perhaps on a connection).
                if ok {
                    self.apply(record);
                }
                continue;
            }
            self.mark_busy(&job.id, recipient.rcpt, false);
            self.apply(record);
        }
        self.schedule_retry(&job.id, now);
        self.finish_if_done(&job.id);
    }

    fn command(&mut self, command: Command, now: u64) {
        match command {
            Command::Retry(None) => {
                let ids: Vec<String> = self.messages.keys().map(|&k| queue_id(k)).collect();
                for destination in self.destinations.values_mut() {
                    destination.state = DestinationState::default();
                }
                for id in ids {
                    self.retry_now(&id, now);
                }
            }
            Command::Retry(Some(id)) => {
                let destinations: Vec<String> = self
                    .messages
                    .get(&key(&id))
                    .map(|m| {
                        m.recipients
                            .iter()
                            .map(|r| r.destination.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                for destination in destinations {
                    if let Some(entry) = self.destinations.get_mut(&*destination) {
                        entry.state.on_success(now);
                    }
                }
                self.retry_now(&id, now);
            }
            Command::Hold(id) => self.message_event(&id, Event::Held, now),
            Command::Release(id) => {
                self.message_event(&id, Event::Released, now);
                self.make_ready(&id, now);
            }
            Command::Delete(id) => {
                if self.messages.contains_key(&key(&id)) {
                    self.records
                        .push(Record::plain(&id, None, now, Event::Deleted));
                    self.remove(&id);
                }
            }
            Command::Bounce(id) => self.operator_bounce(&id, now),
        }
        self.dispatch(now);
    }

    fn retry_now(&mut self, id: &str, now: u64) {
        self.message_event(id, Event::RetryNow, now);
        self.make_ready(id, now);
    }

    /// Records a message-level event for each unfinished recipient.
    fn message_event(&mut self, id: &str, event: Event, now: u64) {
        let Some(message) = self.messages.get(&key(id)) else {
            return;
        };
        let indexes: Vec<u32> = (0..message.recipients.len() as u32)
            .filter(|&i| !message.recipients[i as usize].state.status.is_final())
            .collect();
        for rcpt in indexes {
            self.apply(Record::plain(id, Some(rcpt), now, event.clone()));
        }
        if event == Event::Held {
            self.unqueue(id);
        }
    }

    /// Takes a message's jobs out of the ready queues (they are not on a connection yet).
    fn unqueue(&mut self, id: &str) {
        let mut freed = Vec::new();
        let message = key(id);
        for destination in self.destinations.values_mut() {
            destination.ready.retain(|ready| {
                let keep = ready.message != message;
                if !keep {
                    freed.extend(ready.recipients.as_slice().iter().copied());
                }
                keep
            });
        }
        for rcpt in freed {
            self.mark_busy(id, rcpt, false);
        }
    }

    fn operator_bounce(&mut self, id: &str, now: u64) {
        if !self.messages.contains_key(&key(id)) {
            return;
        }
        self.unqueue(id);
        let message = &self.messages[&key(id)];
        let pending: Vec<u32> = (0..message.recipients.len() as u32)
            .filter(|&i| {
                let r = &message.recipients[i as usize];
                !r.state.status.is_final() && !r.busy
            })
            .collect();
        for rcpt in pending {
            let result = RecipientResult {
                rcpt,
                outcome: Outcome::Permanent,
                reply: "550 5.0.0 Returned to the sender by the mail server's administrator".into(),
                relay: None,
                dsn_forwarded: false,
            };
            self.fail(id, &result, Event::Bounced, "5.0.0".into(), now);
        }
        self.finish_if_done(id);
    }

    /// Defers everything waiting for a suspended destination, with its reason.
    fn defer_waiting(&mut self, destination: &str, now: u64) {
        let Some(entry) = self.destinations.get_mut(destination) else {
            return;
        };
        let until = entry.state.suspended_until().unwrap_or(now);
        let reason = entry
            .state
            .throttle_reply()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "451 4.4.1 Delivery to {destination} is suspended: it did not answer recently"
                )
            });
        // Taken, not drained: a queue that held a burst gives its capacity back.
        let waiting = std::mem::take(&mut entry.ready);
        for ready in waiting {
            let id = queue_id(ready.message);
            for &rcpt in ready.recipients.as_slice() {
                let result = RecipientResult {
                    rcpt,
                    outcome: Outcome::Temporary,
                    reply: reason.clone(),
                    relay: None,
                    dsn_forwarded: false,
                };
                self.recipient_result(&id, destination, &result, 0, now, until);
            }
            self.schedule_retry(&id, now);
            self.finish_if_done(&id);
        }
    }

    /// Arms the message's retry timer at its earliest deferred recipient.
    fn schedule_retry(&mut self, id: &str, now: u64) {
        let Some(message) = self.messages.get_mut(&key(id)) else {
            return;
        };
        let due = message
            .recipients
            .iter()
            .filter(|r| !r.busy && !r.state.held && !r.state.status.is_final())
            .filter_map(|r| r.state.next_attempt_at)
            .map(NonZeroU64::get)
            .min();
        if let Some(timer) = message.retry_timer.take() {
            self.timers.cancel(timer);
        }
        if let Some(at) = due {
            message.retry_timer = Some(self.timers.schedule(at.max(now), Timer::Retry(key(id))));
        }
    }

    fn finish_if_done(&mut self, id: &str) {
        if self.messages.get(&key(id)).is_some_and(Message::finished) {
            self.remove(id);
        }
    }

    /// Forgets a finished or deleted message (which has no job waiting: a finished one has
    /// nothing left to try, a deleted one was unqueued); a sealed segment left without live
    /// messages is reclaimed.
    fn remove(&mut self, id: &str) {
        let Some(message) = self.messages.remove(&key(id)) else {
            return;
        };
        if let Some(timer) = message.retry_timer {
            self.timers.cancel(timer);
        }
        if let Some(info) = self.segments.get_mut(&segment_of(id)) {
            info.live = info.live.saturating_sub(1);
        }
        self.reclaim_sealed();
    }

    fn reclaim_sealed(&mut self) {
        let sealed_below = self.sealed_below;
        let empty: Vec<u32> = self
            .segments
            .range(..sealed_below)
            .filter(|(_, info)| info.live == 0)
            .map(|(segment, _)| *segment)
            .collect();
        for segment in empty {
            self.segments.remove(&segment);
            self.effects.push(Effect::Reclaim(segment));
        }
    }

    fn mark_busy(&mut self, id: &str, rcpt: u32, busy: bool) {
        if let Some(recipient) = self
            .messages
            .get_mut(&key(id))
            .and_then(|m| m.recipients.get_mut(rcpt as usize))
        {
            recipient.busy = busy;
        }
    }

    /// Queues `record` for the log and folds it into the recipient's state.
    fn apply(&mut self, record: Record) {
        if let (Some(message), Some(rcpt)) = (self.messages.get_mut(&key(&record.id)), record.rcpt)
            && let Some(recipient) = message.recipients.get_mut(rcpt as usize)
        {
            recipient.state.apply(&record);
            self.strings.share(&mut recipient.state.last_reply);
            self.strings.share(&mut recipient.state.last_relay);
        }
        self.records.push(record);
    }
}

/// The record of an attempt's outcome for one recipient, with the reply and relay.
/// One recipient's attempt for `/metrics`; a delivery's latency counts from acceptance.
fn count_attempt(verdict: &str, destination: &str, since_accepted: u64) {
    let metrics = crate::metrics::global();
    let outcome = match verdict {
        "sent" => {
            metrics.delivered_after(since_accepted);
            "delivered"
        }
        "bounced" => "bounced",
        "expired" => "expired",
        _ => "deferred",
    };
    metrics.delivery_attempt(outcome, destination);
}

fn result_record(id: &str, now: u64, event: Event, result: &RecipientResult) -> Record {
    Record {
        reply: Some(result.reply.clone()),
        relay: result.relay.clone(),
        ..Record::plain(id, Some(result.rcpt), now, event)
    }
}

fn bounce_recipient(
    result: &RecipientResult,
    status: &str,
    then: Option<Event>,
) -> BounceRecipient {
    BounceRecipient {
        rcpt: result.rcpt,
        status: status.to_string(),
        reply: Some(result.reply.clone()),
        relay: result.relay.clone(),
        then,
    }
}

/// The enhanced status code of a one-line reply (`550 5.1.1 …`), or `fallback` (a server
/// that sends none still gets a well-formed DSN: its class from the basic code).
pub fn enhanced_of(reply: &str, fallback: &str) -> String {
    let (basic, text) = reply.split_once(' ').unwrap_or((reply, ""));
    // One reader of enhanced codes: the client's, on the reply's text.
    let parsed = crate::client::Reply {
        code: 0,
        lines: vec![text.to_string()],
    };
    if let Some(enhanced) = parsed.enhanced().filter(|e| e.starts_with(['2', '4', '5'])) {
        return enhanced.to_string();
    }
    match basic.as_bytes().first() {
        Some(b'2') => "2.0.0".into(),
        Some(b'4') => "4.0.0".into(),
        Some(b'5') => "5.0.0".into(),
        _ => fallback.into(),
    }
}

/// The spool segment of a queue id (0 for what is not one: nothing the spool made).
/// A queue id as one number: segment and offset. An id that is not ours (a typo in an
/// operator's command) maps to one no message has.
fn key(id: &str) -> u64 {
    crate::spool::log::parse_queue_id(id).map_or(u64::MAX, |(segment, offset)| {
        (u64::from(segment) << 32) | offset
    })
}

/// The message's own jitter seed, so its retries spread the same way after a restart.
fn seed_of(id: &str) -> u64 {
    u64::from(crc32fast::hash(id.as_bytes()))
}

fn queue_id(key: u64) -> String {
    crate::spool::log::queue_id((key >> 32) as u32, key & 0xffff_ffff)
}

pub fn segment_of(id: &str) -> u32 {
    crate::spool::log::parse_queue_id(id).map_or(0, |(segment, _)| segment)
}

pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// The one line per attempt per recipient an operator greps for, like Postfix's
/// `to=<…>, relay=…, delay=…, dsn=…, status=…`.
#[allow(clippy::too_many_arguments)]
fn log_attempt(
    id: &str,
    address: &str,
    result: &RecipientResult,
    received_at: u64,
    now: u64,
    elapsed_ms: u64,
    attempt: u32,
    status: &str,
) {
    tracing::info!(
        target: "portcullis::delivery",
        id,
        to = address,
        relay = result.relay.as_deref().unwrap_or("none"),
        delay = now.saturating_sub(received_at),
        attempt_ms = elapsed_ms,
        attempt,
        dsn = enhanced_of(&result.reply, "4.0.0"),
        status,
        reply = result.reply.as_str(),
        "delivery"
    );
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
