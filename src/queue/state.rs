//! The durable per-recipient delivery state log.
//!
//! The spool's segments stay immutable: what happened to each recipient of a message is
//! appended here instead, one line per event (`data_dir/queue/state.log`):
//!
//! ```text
//! CRC32-HEX SP JSON-EVENT LF
//! ```
//!
//! A line is valid only when it ends in LF and its checksum matches, so a write torn by a crash
//! is recognised and cut off at start-up; a damaged line in the middle is skipped (the events
//! after it stay readable). The state of a recipient is the fold of its events over "queued",
//! the state every recipient of a spooled message starts in. Events are made durable (one
//! `fdatasync` per batch) before anything acts on them: a recipient is recorded `delivered`
//! only after the remote 250, and `bounced` only after its bounce is spooled, so a crash can
//! repeat a delivery but never lose one.
//!
//! The log only grows while the server runs; [`StateLog::compact`] rewrites it with the state
//! each unfinished recipient has reached ([`summary`]: one or two records per recipient, however
//! often it was deferred), so a queue deferred for days keeps a log of its size, not its age.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "state.log";
const COMPACT_NAME: &str = "state.log.compact";

/// Where a recipient stands. Every recipient of a spooled message starts `Queued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Queued,
    Deferred,
    Delivered,
    Bounced,
    Expired,
}

impl Status {
    /// Delivered, bounced or expired: nothing more will be tried.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Delivered | Status::Bounced | Status::Expired)
    }
}

/// What happened, to one recipient (`rcpt`: its index in the envelope) or, without `rcpt`,
/// to the whole message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A temporary failure; the next attempt is due at `next_attempt_at` (unix seconds).
    Deferred {
        next_attempt_at: u64,
    },
    /// The remote server accepted the recipient with 250 (or 251).
    Delivered,
    /// A permanent failure whose bounce is already spooled (or that needs none).
    Bounced,
    /// Still undeliverable at the end of the queue lifetime; its bounce is already spooled.
    Expired,
    /// An operator holds it: nothing is tried until it is released.
    Held,
    Released,
    /// An operator asked for an attempt now, whatever the schedule says.
    RetryNow,
    /// The "delayed" notification (RFC 3464 Action: delayed) was spooled; it is sent once.
    DelayWarned,
    /// An operator deleted the message: no attempt, no bounce. Also the end of a message whose
    /// unfinished recipients were copied forward into a new one.
    Deleted,
    /// The recipient's state carried over from the message it was copied from (see
    /// `moved_from` in the envelope): what a fold of that message's events had reached.
    Carried {
        attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_attempt_at: Option<u64>,
        #[serde(default)]
        delay_warned: bool,
        #[serde(default)]
        held: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The message's queue id.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcpt: Option<u32>,
    /// Unix seconds.
    pub at: u64,
    #[serde(flatten)]
    pub event: Event,
    /// The remote reply verbatim on one line, or our own reply when nothing was said remotely
    /// (`451 4.4.3 DNS lookup of example.com timed out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// `host[ip]:port` of the server that gave the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

impl Record {
    /// An event without a reply or relay (an operator's command, a message's end).
    pub fn plain(id: &str, rcpt: Option<u32>, at: u64, event: Event) -> Record {
        Record {
            id: id.to_string(),
            rcpt,
            at,
            event,
            reply: None,
            relay: None,
        }
    }
}

/// One recipient's state: the fold of its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecipientState {
    pub status: Status,
    pub held: bool,
    /// Delivery attempts that ended (deferred, delivered or bounced).
    pub attempts: u32,
    /// Shared, not owned: the queue manager keeps one copy of each reply and relay its
    /// recipients have in common (see `super::interner`).
    pub last_reply: Option<Arc<str>>,
    pub last_relay: Option<Arc<str>>,
    /// `None`: due as soon as possible (queued, retried or released). Never 0 (a time long
    /// past is due now anyway), so that the option costs no extra bytes per recipient.
    pub next_attempt_at: Option<NonZeroU64>,
    pub delay_warned: bool,
}

impl RecipientState {
    /// Applies one event. Final states stay final: a late event (a duplicate delivery report
    /// after a crash, a hold racing a delivery) changes nothing.
    pub fn apply(&mut self, record: &Record) {
        if self.status.is_final() {
            return;
        }
        let attempt_ended = |state: &mut RecipientState| {
            state.attempts += 1;
            state.last_reply = shared(&record.reply);
            state.last_relay = shared(&record.relay);
        };
        match record.event {
            Event::Deferred { next_attempt_at } => {
                attempt_ended(self);
                self.status = Status::Deferred;
                self.next_attempt_at = NonZeroU64::new(next_attempt_at);
            }
            Event::Delivered | Event::Bounced | Event::Expired => {
                // An expiry is the verdict on earlier attempts, not an attempt of its own.
                if record.event == Event::Expired {
                    if record.reply.is_some() {
                        self.last_reply = shared(&record.reply);
                    }
                } else {
                    attempt_ended(self);
                }
                self.status = match record.event {
                    Event::Delivered => Status::Delivered,
                    Event::Bounced => Status::Bounced,
                    _ => Status::Expired,
                };
                self.next_attempt_at = None;
            }
            Event::Held => self.held = true,
            Event::Released => self.held = false,
            Event::RetryNow => self.next_attempt_at = None,
            Event::DelayWarned => self.delay_warned = true,
            Event::Carried {
                attempts,
                next_attempt_at,
                delay_warned,
                held,
            } => {
                self.status = if attempts > 0 {
                    Status::Deferred
                } else {
                    Status::Queued
                };
                self.attempts = attempts;
                self.next_attempt_at = next_attempt_at.and_then(NonZeroU64::new);
                self.delay_warned = delay_warned;
                self.held = held;
                self.last_reply = shared(&record.reply);
                self.last_relay = shared(&record.relay);
            }
            // Handled at the message level.
            Event::Deleted => {}
        }
    }
}

fn shared(text: &Option<String>) -> Option<Arc<str>> {
    text.as_deref().map(Arc::from)
}

fn owned(text: &Option<Arc<str>>) -> Option<String> {
    text.as_deref().map(String::from)
}

/// The state of one message's recipients, as far as the log knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageState {
    pub recipients: Vec<RecipientState>,
    pub deleted: bool,
}

impl MessageState {
    /// Every recipient final, or the message deleted: its space may be reclaimed.
    pub fn is_finished(&self, recipient_count: usize) -> bool {
        self.deleted
            || (self.recipients.len() >= recipient_count
                && self.recipients.iter().all(|r| r.status.is_final()))
    }
}

/// A message's state while its records are folded. The log does not say how many recipients
/// a message has, so `unseen` is what a recipient without records of its own has reached: the
/// message-level events (hold, release, retry) so far. A recipient first named later starts
/// from it, exactly as if those events had reached it too.
#[derive(Debug, Clone, Default)]
struct Folding {
    state: MessageState,
    unseen: RecipientState,
}

impl Folding {
    fn apply(&mut self, record: &Record) {
        let state = &mut self.state;
        match record.rcpt {
            None if record.event == Event::Deleted => state.deleted = true,
            None => {
                self.unseen.apply(record);
                for recipient in &mut state.recipients {
                    recipient.apply(record);
                }
            }
            Some(index) => {
                let index = index as usize;
                if state.recipients.len() <= index {
                    state
                        .recipients
                        .resize_with(index + 1, || self.unseen.clone());
                }
                state.recipients[index].apply(record);
            }
        }
    }

    fn into_state(mut self, recipient_count: usize) -> MessageState {
        if self.state.recipients.len() < recipient_count {
            let unseen = self.unseen;
            self.state
                .recipients
                .resize_with(recipient_count, || unseen.clone());
        }
        self.state
    }
}

/// Every message's state, keyed by queue id, folded one record at a time. A message the log
/// has never heard of is queued with all its recipients: [`State::message`] gives that default.
#[derive(Debug, Clone, Default)]
pub struct State {
    messages: HashMap<String, Folding>,
}

impl State {
    /// The state of `id`, whose envelope has `recipient_count` recipients.
    pub fn message(&self, id: &str, recipient_count: usize) -> MessageState {
        let folding = self.messages.get(id).cloned().unwrap_or_default();
        folding.into_state(recipient_count)
    }

    /// Like [`State::message`], but hands the state over instead of copying it (recovery
    /// takes each message once).
    pub fn take(&mut self, id: &str, recipient_count: usize) -> MessageState {
        let folding = self.messages.remove(id).unwrap_or_default();
        folding.into_state(recipient_count)
    }

    pub fn apply(&mut self, record: &Record) {
        match self.messages.get_mut(&record.id) {
            Some(folding) => folding.apply(record),
            None => {
                let mut folding = Folding::default();
                folding.apply(record);
                self.messages.insert(record.id.clone(), folding);
            }
        }
    }
}

/// What was wrong with the log when it was read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Damaged lines skipped (kept in the file until the next compaction).
    pub damaged_lines: usize,
    /// Bytes of an interrupted write cut off the end.
    pub torn_bytes: u64,
}

/// The whole log, for the CLI (`queue list`, `queue show`'s history).
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<Record>,
    pub damage: Damage,
}

impl Replay {
    pub fn state(&self) -> State {
        let mut state = State::default();
        for record in &self.records {
            state.apply(record);
        }
        state
    }
}

/// The open log: appends and syncs batches of records.
pub struct StateLog {
    dir: PathBuf,
    file: File,
}

impl StateLog {
    /// Opens (creating) the log in `dir`, cutting off a torn tail, and hands each valid record
    /// to `each`, one at a time: the server folds them as they come, never holding the log.
    pub fn open(dir: &Path, each: impl FnMut(Record)) -> io::Result<(StateLog, Damage)> {
        crate::spool::log::create_dir_durably(dir)?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let (damage, valid_len) = parse(BufReader::new(&file), each)?;
        if damage.torn_bytes > 0 {
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        Ok((
            StateLog {
                dir: dir.to_path_buf(),
                file,
            },
            damage,
        ))
    }

    /// Appends `records` with one write and makes them durable with one `fdatasync`.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(records.len() * 128);
        for record in records {
            encode(record, &mut bytes);
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()
    }

    /// Rewrites the log as `current` (each unfinished message's state, see [`summary`]) plus
    /// the records of the log for which `keep_verbatim` holds (finished messages whose
    /// segment still exists: without their records they would look queued again after a
    /// restart). Written and synced under a temporary name, then renamed over the log, so a
    /// crash leaves one of the two whole. Both sides stream: neither the old log nor the new
    /// one is held in memory.
    pub fn compact(
        &mut self,
        current: impl Iterator<Item = Record>,
        keep_verbatim: impl Fn(&Record) -> bool,
    ) -> io::Result<()> {
        let temporary = self.dir.join(COMPACT_NAME);
        let mut out = BufWriter::new(File::create(&temporary)?);
        let mut old = BufReader::new(File::open(self.dir.join(FILE_NAME))?);
        let mut line = Vec::new();
        while old.read_until(b'\n', &mut line)? > 0 {
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            if decode(body).is_some_and(|record| keep_verbatim(&record)) {
                out.write_all(&line)?;
            }
            line.clear();
        }
        let mut bytes = Vec::with_capacity(256);
        for record in current {
            bytes.clear();
            encode(&record, &mut bytes);
            out.write_all(&bytes)?;
        }
        let file = out.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        fs::rename(&temporary, self.dir.join(FILE_NAME))?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(FILE_NAME))?;
        Ok(())
    }

    /// Bytes in the log now, to decide when compacting is worth it.
    pub fn size_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

/// Reads the log without changing it (for the CLI, while a server may be appending: a line
/// still being written is simply not there yet).
pub fn load(dir: &Path) -> io::Result<Replay> {
    let file = match File::open(dir.join(FILE_NAME)) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Replay::default()),
        Err(error) => return Err(error),
    };
    let mut records = Vec::new();
    let (damage, _) = parse(BufReader::new(file), |record| records.push(record))?;
    Ok(Replay { records, damage })
}

fn encode(record: &Record, out: &mut Vec<u8>) {
    let json = serde_json::to_vec(record).expect("a record always serialises");
    out.extend_from_slice(format!("{:08x} ", crc32fast::hash(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
}

/// Hands each valid record to `each`; returns what was damaged and the length of the log up
/// to the end of its last complete line.
fn parse(mut reader: impl BufRead, mut each: impl FnMut(Record)) -> io::Result<(Damage, u64)> {
    let mut damage = Damage::default();
    let mut valid_len = 0u64;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        let Some(body) = line.strip_suffix(b"\n") else {
            // No line end: the write that a crash interrupted (or the end of the log).
            damage.torn_bytes = read as u64;
            return Ok((damage, valid_len));
        };
        match decode(body) {
            Some(record) => each(record),
            None => damage.damaged_lines += 1,
        }
        valid_len += read as u64;
    }
}

fn decode(line: &[u8]) -> Option<Record> {
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if line.get(8) != Some(&b' ') || crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The record that carries a recipient's state over as it stands (into a copied-forward
/// message, or into a compacted log).
pub fn carried(id: &str, rcpt: u32, at: u64, state: &RecipientState) -> Record {
    Record {
        id: id.to_string(),
        rcpt: Some(rcpt),
        at,
        event: Event::Carried {
            attempts: state.attempts,
            next_attempt_at: state.next_attempt_at.map(NonZeroU64::get),
            delay_warned: state.delay_warned,
            held: state.held,
        },
        reply: owned(&state.last_reply),
        relay: owned(&state.last_relay),
    }
}

/// The fewest records that fold back into `state`: none for a recipient still untouched,
/// one `carried` for an unfinished one, and for a finished one its final event (after a
/// `carried` with the earlier attempts, so the count survives). The history of attempts is
/// what a compaction gives up.
pub fn summary(id: &str, rcpt: u32, at: u64, state: &RecipientState) -> Vec<Record> {
    let final_event = match state.status {
        Status::Queued | Status::Deferred => {
            if *state == RecipientState::default() {
                return Vec::new();
            }
            return vec![carried(id, rcpt, at, state)];
        }
        Status::Delivered => Event::Delivered,
        Status::Bounced => Event::Bounced,
        Status::Expired => Event::Expired,
    };
    // Expiry is not an attempt of its own; delivery and bounce count one.
    let earlier = state.attempts - u32::from(final_event != Event::Expired).min(state.attempts);
    let mut records = Vec::with_capacity(2);
    if earlier > 0 {
        let before = RecipientState {
            attempts: earlier,
            ..state.clone()
        };
        records.push(carried(id, rcpt, at, &before));
    }
    records.push(Record {
        reply: owned(&state.last_reply),
        relay: owned(&state.last_relay),
        ..Record::plain(id, Some(rcpt), at, final_event)
    });
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portcullis-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn record(id: &str, rcpt: Option<u32>, at: u64, event: Event, reply: Option<&str>) -> Record {
        Record {
            id: id.into(),
            rcpt,
            at,
            event,
            reply: reply.map(String::from),
            relay: reply.map(|_| "mx.example.com[192.0.2.1]:25".into()),
        }
    }

    const ID: &str = "0000000100000000";
    const LIVE: &str = "0000000100000100";

    #[test]
    fn recipients_fold_from_queued_through_deferred_to_final() {
        let mut state = State::default();
        let greylisted = record(
            ID,
            Some(0),
            10,
            Event::Deferred {
                next_attempt_at: 310,
            },
            Some("450 4.2.0 greylisted"),
        );
        state.apply(&greylisted);
        state.apply(&record(
            ID,
            Some(1),
            10,
            Event::Bounced,
            Some("550 5.1.1 no such user"),
        ));
        let message = state.message(ID, 2);
        assert_eq!(message.recipients[0].status, Status::Deferred);
        assert_eq!(message.recipients[0].next_attempt_at, NonZeroU64::new(310));
        assert_eq!(message.recipients[0].attempts, 1);
        assert_eq!(message.recipients[1].status, Status::Bounced);
        assert!(!message.is_finished(2));
        state.apply(&record(
            ID,
            Some(0),
            320,
            Event::Delivered,
            Some("250 2.0.0 ok"),
        ));
        let message = state.message(ID, 2);
        assert_eq!(
            (
                message.recipients[0].status,
                message.recipients[0].attempts,
                message.recipients[0].last_reply.as_deref()
            ),
            (Status::Delivered, 2, Some("250 2.0.0 ok"))
        );
        assert!(message.is_finished(2));
    }

    #[test]
    fn a_message_the_log_never_mentioned_is_queued_whole() {
        let message = State::default().message(ID, 3);
        assert_eq!(message.recipients.len(), 3);
        assert!(
            message
                .recipients
                .iter()
                .all(|r| r.status == Status::Queued && r.next_attempt_at.is_none())
        );
        assert!(!message.is_finished(3));
    }

    #[test]
    fn final_states_ignore_late_events() {
        let mut state = State::default();
        state.apply(&record(ID, Some(0), 1, Event::Delivered, Some("250 ok")));
        state.apply(&record(
            ID,
            Some(0),
            2,
            Event::Deferred { next_attempt_at: 9 },
            Some("421 x"),
        ));
        state.apply(&record(ID, None, 3, Event::Held, None));
        let recipient = &state.message(ID, 1).recipients[0];
        assert_eq!(
            (recipient.status, recipient.held, recipient.attempts),
            (Status::Delivered, false, 1)
        );
    }

    #[test]
    fn message_level_hold_release_retry_and_delete() {
        let mut state = State::default();
        let deferred = Event::Deferred {
            next_attempt_at: 500,
        };
        state.apply(&record(ID, Some(1), 1, deferred, Some("451 4.4.1 x")));
        state.apply(&record(ID, None, 2, Event::Held, None));
        assert!(state.message(ID, 2).recipients.iter().all(|r| r.held));
        state.apply(&record(ID, None, 3, Event::Released, None));
        state.apply(&record(ID, None, 4, Event::RetryNow, None));
        let message = state.message(ID, 2);
        assert!(message.recipients.iter().all(|r| !r.held));
        assert_eq!(message.recipients[1].next_attempt_at, None);
        assert_eq!(message.recipients[1].status, Status::Deferred);
        state.apply(&record(ID, None, 5, Event::Deleted, None));
        assert!(state.message(ID, 2).is_finished(2));
    }

    #[test]
    fn a_recipient_without_records_has_the_message_level_events() {
        let mut state = State::default();
        state.apply(&record(ID, None, 1, Event::Held, None));
        state.apply(&record(ID, Some(0), 2, Event::Delivered, Some("250 ok")));
        let message = state.take(ID, 3);
        assert_eq!(message.recipients[0].status, Status::Delivered);
        assert!(message.recipients[1..].iter().all(|r| r.held));
        assert_eq!(
            state.message(ID, 1),
            MessageState {
                recipients: vec![RecipientState::default()],
                deleted: false
            }
        );
    }

    #[test]
    fn expiry_keeps_the_attempt_count_and_the_last_remote_reply() {
        let mut state = State::default();
        let deferred = Event::Deferred {
            next_attempt_at: 100,
        };
        state.apply(&record(ID, Some(0), 1, deferred, Some("451 4.4.1 down")));
        state.apply(&record(ID, Some(0), 100, Event::Expired, None));
        let recipient = &state.message(ID, 1).recipients[0];
        assert_eq!(
            (
                recipient.status,
                recipient.attempts,
                recipient.last_reply.as_deref()
            ),
            (Status::Expired, 1, Some("451 4.4.1 down"))
        );
    }

    #[test]
    fn appended_records_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = temp_dir("reopen");
        let (mut log, damage) = StateLog::open(&dir, |_| panic!("a new log is empty")).unwrap();
        assert_eq!(damage, Damage::default());
        let records = vec![
            record(ID, Some(0), 5, Event::Delivered, Some("250 2.0.0 ok")),
            record(ID, None, 6, Event::Held, None),
        ];
        log.append(&records).unwrap();
        drop(log);
        let path = dir.join(FILE_NAME);
        let whole = fs::metadata(&path).unwrap().len();
        // A crash in the middle of the next write.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"0badc0de {\"id\":\"00")
            .unwrap();
        assert_eq!(load(&dir).unwrap().records, records);
        let mut replayed = Vec::new();
        let (mut log, damage) = StateLog::open(&dir, |r| replayed.push(r)).unwrap();
        assert_eq!(replayed, records);
        assert_eq!(damage.torn_bytes, 18);
        assert_eq!(fs::metadata(&path).unwrap().len(), whole);
        let after = record(ID, None, 7, Event::Released, None);
        log.append(std::slice::from_ref(&after)).unwrap();
        assert_eq!(load(&dir).unwrap().records.last(), Some(&after));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_line_is_skipped_and_the_rest_kept() {
        let dir = temp_dir("damaged");
        let (mut log, _) = StateLog::open(&dir, |_| {}).unwrap();
        let first = record(ID, Some(0), 1, Event::Bounced, Some("550 5.1.1 x"));
        let second = record(ID, Some(1), 2, Event::Delivered, Some("250 ok"));
        log.append(&[first, second.clone()]).unwrap();
        drop(log);
        let path = dir.join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let mut replayed = Vec::new();
        let (_, damage) = StateLog::open(&dir, |r| replayed.push(r)).unwrap();
        assert_eq!((replayed, damage.damaged_lines), (vec![second], 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compaction_keeps_summaries_and_the_records_asked_for() {
        let dir = temp_dir("compact");
        let (mut log, _) = StateLog::open(&dir, |_| {}).unwrap();
        let finished = record("0000000100000000", Some(0), 1, Event::Delivered, None);
        let dropped = record("0000000200000000", Some(0), 1, Event::Delivered, None);
        let deferred = |at| {
            record(
                LIVE,
                Some(0),
                at,
                Event::Deferred {
                    next_attempt_at: at + 60,
                },
                Some("451 4.4.1 x"),
            )
        };
        log.append(&[
            finished.clone(),
            dropped,
            deferred(1),
            deferred(2),
            deferred(3),
        ])
        .unwrap();
        let mut live = State::default();
        for record in load(&dir).unwrap().records.iter().filter(|r| r.id == LIVE) {
            live.apply(record);
        }
        let state = live.message(LIVE, 1).recipients[0].clone();
        log.compact(summary(LIVE, 0, 5, &state).into_iter(), |r| {
            r.id == finished.id
        })
        .unwrap();
        let after = record(LIVE, None, 6, Event::Held, None);
        log.append(std::slice::from_ref(&after)).unwrap();
        let records = load(&dir).unwrap().records;
        assert_eq!(records[0], finished);
        assert_eq!(records.len(), 3, "{records:?}");
        let mut replayed = State::default();
        for record in &records[1..2] {
            replayed.apply(record);
        }
        assert_eq!(replayed.message(LIVE, 1).recipients[0], state);
        assert_eq!(state.attempts, 3);
        assert!(!dir.join(COMPACT_NAME).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_summary_folds_back_into_the_state_it_summarises() {
        let events = [
            vec![],
            vec![(Event::Held, None)],
            vec![
                (
                    Event::Deferred {
                        next_attempt_at: 70,
                    },
                    Some("451 4.4.1 a"),
                ),
                (Event::DelayWarned, None),
            ],
            vec![
                (
                    Event::Deferred {
                        next_attempt_at: 70,
                    },
                    Some("450 4.2.0 a"),
                ),
                (Event::Delivered, Some("250 ok")),
            ],
            vec![(Event::Bounced, Some("550 5.1.1 no"))],
            vec![
                (
                    Event::Deferred {
                        next_attempt_at: 70,
                    },
                    Some("451 4.4.1 a"),
                ),
                (Event::Expired, None),
            ],
        ];
        for history in events {
            let mut state = RecipientState::default();
            for (event, reply) in &history {
                state.apply(&record(ID, Some(0), 1, event.clone(), *reply));
            }
            let mut folded = RecipientState::default();
            for record in summary(ID, 0, 9, &state) {
                folded.apply(&record);
            }
            assert_eq!(folded, state, "{history:?}");
        }
    }

    #[test]
    fn records_are_one_line_of_crc_and_json() {
        let mut bytes = Vec::new();
        encode(
            &record(
                ID,
                Some(2),
                7,
                Event::Deferred { next_attempt_at: 8 },
                Some("451 a\r\nb"),
            ),
            &mut bytes,
        );
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(text.ends_with('\n'));
        assert!(text[9..].starts_with(
            r#"{"id":"0000000100000000","rcpt":2,"at":7,"event":"deferred","next_attempt_at":8,"#
        ));
    }
}
