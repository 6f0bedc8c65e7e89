//! Runs the queue manager's core ([`super::manager::Queue`]) on a thread of its own: gathers
//! inputs (new mail from the spool writer, reports from delivery connections, operators'
//! commands), makes each batch's state records durable with one `fdatasync`, and only then
//! carries out the batch's effects — starting connections, spooling DSNs, deleting segments.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::manager::{
    Attempt, BounceJob, Command, DestinationOf, Effect, Input, Job, Queue, Settings, WorkerId,
};
use super::state::{self, Record, StateLog};
use crate::bounce;
use crate::smtp::{Envelope, Submission};
use crate::spool::{QueuedMessage, Spool, log};
use crate::timefmt;

/// Operators' commands wait here as files until a running server applies them.
const CONTROL_DIR: &str = "control";
/// How often the control directory is looked at: "applied within a second".
const CONTROL_POLL: Duration = Duration::from_millis(250);
/// The state log is rewritten with only the live messages' records past this size (and past
/// twice its size after the last rewrite).
const COMPACT_AT_BYTES: u64 = 16 * 1024 * 1024;
/// Inputs taken in one batch at most, so a flood of reports still lets timers fire.
const MAX_BATCH: usize = 10_000;

enum Message {
    Input(Input),
    /// A worker's report and where to send its next job.
    Attempt(Attempt, oneshot::Sender<Option<Job>>),
    /// A scrape of `/metrics` asks what the queue holds.
    Census(oneshot::Sender<crate::metrics::Census>),
    Shutdown,
}

/// Starts delivery connections. The production one is [`crate::delivery::Agent`]; tests can
/// substitute their own.
pub trait Transport: Send + Sync + 'static {
    /// Runs one connection: delivers `job`, reports each attempt through `link` (which answers
    /// with the next job for the same connection), and drops `link` when the connection ends.
    fn start(&self, job: Job, link: Link);
}

/// A delivery connection's line to the queue manager. Dropping it tells the manager that the
/// connection has ended, whatever the reason (even a panic), so its slot is never lost.
pub struct Link {
    worker: WorkerId,
    destination: String,
    sender: mpsc::Sender<Message>,
}

impl Link {
    /// Reports an attempt; resolves to the connection's next job, or `None` to close it.
    pub async fn report(&self, attempt: Attempt) -> Option<Job> {
        let (reply, next) = oneshot::channel();
        debug_assert_eq!(
            attempt.worker, self.worker,
            "a link reports its own attempts"
        );
        self.sender.send(Message::Attempt(attempt, reply)).ok()?;
        next.await.ok().flatten()
    }

    pub fn worker(&self) -> WorkerId {
        self.worker
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Input(Input::WorkerDone {
            worker: self.worker,
            destination: std::mem::take(&mut self.destination),
        }));
    }
}

/// The running queue manager.
pub struct QueueManager {
    sender: mpsc::Sender<Message>,
    thread: Option<thread::JoinHandle<()>>,
}

/// Where new mail is announced: give it to the spool writer ([`crate::spool::SegmentLog`]).
pub fn channel() -> (Announcer, Inbox) {
    let (sender, receiver) = mpsc::channel();
    (Announcer(sender), Inbox(receiver))
}

#[derive(Clone)]
pub struct Announcer(mpsc::Sender<Message>);

impl Announcer {
    pub fn notifier(&self) -> log::Notifier {
        let sender = self.0.clone();
        Box::new(move |messages| {
            let _ = sender.send(Message::Input(Input::Stored(messages)));
        })
    }
}

pub struct Inbox(mpsc::Receiver<Message>);

/// What the manager needs from the rest of the server.
pub struct Context {
    pub data_dir: PathBuf,
    pub hostname: String,
    pub settings: Settings,
    pub destination_of: DestinationOf,
    pub spool: Arc<dyn Spool>,
    pub transport: Arc<dyn Transport>,
    pub runtime: tokio::runtime::Handle,
    /// The first segment the spool writer appends to (see [`log::Recovery`]).
    pub active_segment: u32,
}

impl QueueManager {
    /// Recovers the queue from the spool and the state log, then runs it on its own thread.
    pub fn start(
        mut context: Context,
        announcer: Announcer,
        inbox: Inbox,
    ) -> io::Result<QueueManager> {
        let spool_dir = context.data_dir.join("spool");
        let mut folded = state::State::default();
        let (mut log, damage) =
            StateLog::open(&super::dir(&context.data_dir), |r| folded.apply(&r))?;
        if damage != state::Damage::default() {
            tracing::warn!(
                damaged_lines = damage.damaged_lines,
                torn_bytes = damage.torn_bytes,
                "the queue state log was damaged; the damaged lines are skipped"
            );
        }
        let now = timefmt::unix_now();
        // The core owns the routing function; the context keeps a placeholder.
        let destination_of =
            std::mem::replace(&mut context.destination_of, Box::new(|d| d.to_string()));
        let mut queue = Queue::new(
            context.settings.clone(),
            destination_of,
            context.active_segment,
        );
        // One segment at a time, each message's state handed over from the fold: recovery
        // never holds the whole spool's envelopes, nor two copies of the states.
        let mut abandoned_copies = Vec::new();
        log::for_each_message(&spool_dir, |message| {
            let state = folded.take(&message.id, message.envelope.to.len());
            // A copy-forward interrupted before it took over: the original (older, so
            // already recovered) still counts, so the copy goes (its recipients would
            // otherwise be tried twice).
            let abandoned = !state.deleted
                && message
                    .envelope
                    .moved_from
                    .as_deref()
                    .is_some_and(|original| queue.is_live(original));
            if abandoned {
                abandoned_copies.push(Record::plain(&message.id, None, now, state::Event::Deleted));
            }
            if state.deleted || abandoned {
                queue.recover(&message, recipients_all_final(&message), now);
            } else {
                queue.recover(&message, state.recipients, now);
            }
        })?;
        drop(folded);
        release_freed_memory();
        log.append(&abandoned_copies)?;
        queue.recovered(now);
        tracing::info!(
            messages = queue.queued_messages(),
            "queue recovered; delivery starts"
        );
        let sender = announcer.0.clone();
        let compact_at = COMPACT_AT_BYTES.max(log.size_bytes()? * 2);
        let mut runner = Runner {
            context,
            queue,
            log,
            sender: sender.clone(),
            replies: HashMap::new(),
            compact_at,
        };
        let thread = thread::Builder::new()
            .name("queue-manager".into())
            .spawn(move || runner.run(inbox.0))?;
        Ok(QueueManager {
            sender,
            thread: Some(thread),
        })
    }

    /// A handle that asks the running manager for its [`Queue::census`].
    pub fn probe(&self) -> QueueProbe {
        QueueProbe(self.sender.clone())
    }

    /// Stops scheduling and waits for the manager's last records to be on disk. Connections
    /// still running are abandoned: what they did not report stays queued and is tried again
    /// after the restart (at worst a message is delivered twice, never lost).
    pub fn stop(&mut self) {
        let _ = self.sender.send(Message::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks the queue manager what it holds, from another thread (the HTTP listener).
#[derive(Clone)]
pub struct QueueProbe(mpsc::Sender<Message>);

impl QueueProbe {
    /// The census, or `None` when the manager has stopped or takes longer than `patience`
    /// (a batch with a slow disk sync in progress).
    pub async fn census(&self, patience: Duration) -> Option<crate::metrics::Census> {
        let (reply, answer) = oneshot::channel();
        self.0.send(Message::Census(reply)).ok()?;
        tokio::time::timeout(patience, answer).await.ok()?.ok()
    }
}

/// Recovery frees as much as it keeps (the fold of the log, each segment's bytes), scattered
/// between what the queue holds; glibc keeps such memory mapped. Handing it back makes the
/// resident size after a restart the queue's, not the recovery's peak.
/// Records in one batch past which their memory is handed back to the system once written.
const LARGE_BATCH: usize = 10_000;

fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A deleted message is recovered as finished, so only its segment's accounting sees it.
fn recipients_all_final(message: &QueuedMessage) -> Vec<state::RecipientState> {
    let done = state::RecipientState {
        status: state::Status::Delivered,
        ..Default::default()
    };
    vec![done; message.envelope.to.len()]
}

struct Runner {
    context: Context,
    queue: Queue,
    log: StateLog,
    sender: mpsc::Sender<Message>,
    replies: HashMap<WorkerId, oneshot::Sender<Option<Job>>>,
    compact_at: u64,
}

impl Runner {
    fn run(&mut self, inbox: mpsc::Receiver<Message>) {
        let mut last_control = Instant::now() - CONTROL_POLL;
        loop {
            let now = timefmt::unix_now();
            let wait = self
                .queue
                .next_deadline()
                .map_or(CONTROL_POLL, |at| {
                    Duration::from_secs(at.saturating_sub(now))
                })
                .min(CONTROL_POLL);
            let mut batch = Vec::new();
            match inbox.recv_timeout(wait) {
                Ok(first) => batch.push(first),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let now = timefmt::unix_now();
            let mut stop = false;
            for message in batch {
                match message {
                    Message::Input(input) => self.queue.handle(input, now),
                    Message::Attempt(attempt, reply) => {
                        self.replies.insert(attempt.worker, reply);
                        self.queue.handle(Input::Attempt(attempt), now);
                    }
                    Message::Census(reply) => {
                        let _ = reply.send(self.queue.census());
                    }
                    Message::Shutdown => stop = true,
                }
            }
            let mut applied = Vec::new();
            if last_control.elapsed() >= CONTROL_POLL {
                last_control = Instant::now();
                applied = self.read_commands(now);
            }
            if !stop {
                self.queue.tick(now);
            }
            self.write_records();
            for file in applied {
                let _ = fs::remove_file(file);
            }
            if stop {
                return;
            }
            for effect in self.queue.take_effects() {
                self.carry_out(effect);
            }
            self.compact_if_due();
        }
    }

    /// Appends the batch's records. Nothing may act on them before they are durable, so a
    /// failing disk stops the queue here (and retries) rather than delivering on a state that
    /// would be forgotten.
    fn write_records(&mut self) {
        let records = self.queue.take_records();
        let mut delay = Duration::from_millis(100);
        while let Err(error) = self.log.append(&records) {
            tracing::error!(%error, "cannot write the queue state log; delivery waits until it can");
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        // A wave (a suspended destination deferring everything it held, say) makes a record
        // per recipient at once; once written they are freed, and the pages go back.
        if records.len() >= LARGE_BATCH {
            drop(records);
            release_freed_memory();
        }
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Connect { worker, job } => {
                let link = Link {
                    worker,
                    destination: job.destination.clone(),
                    sender: self.sender.clone(),
                };
                self.context.transport.start(job, link);
            }
            Effect::Next { worker, job } => {
                if let Some(reply) = self.replies.remove(&worker) {
                    let _ = reply.send(job);
                }
            }
            Effect::Notify(job) => self.notify(job),
            Effect::CopyForward { id, recipients } => self.copy_forward(id, recipients),
            Effect::Reclaim(segment) => {
                let spool_dir = self.context.data_dir.join("spool");
                match log::remove_segment(&spool_dir, segment) {
                    Ok(()) => tracing::info!(
                        segment,
                        "spool segment reclaimed: all its messages are finished"
                    ),
                    Err(error) => {
                        tracing::error!(%error, segment, "cannot remove a finished spool segment")
                    }
                }
            }
        }
    }

    /// Builds and spools a DSN on the runtime; its outcome comes back as an input.
    fn notify(&self, job: BounceJob) {
        let sender = self.sender.clone();
        let spool = Arc::clone(&self.context.spool);
        let spool_dir = self.context.data_dir.join("spool");
        let hostname = self.context.hostname.clone();
        let retry = self.context.settings.retry.clone();
        self.context.runtime.spawn(async move {
            let ok = spool_notification(&job, &spool, &spool_dir, &hostname, &retry).await;
            let _ = sender.send(Message::Input(Input::BounceSpooled { job, ok }));
        });
    }

    /// Spools the copy on the runtime; the spool's notification of it completes the move.
    fn copy_forward(&self, id: String, recipients: Vec<u32>) {
        let sender = self.sender.clone();
        let spool = Arc::clone(&self.context.spool);
        let spool_dir = self.context.data_dir.join("spool");
        self.context.runtime.spawn(async move {
            if !spool_copy(&id, &recipients, &spool, &spool_dir).await {
                let _ = sender.send(Message::Input(Input::CopyFailed { id }));
            }
        });
    }

    /// Turns command files into inputs; returns the files to remove once their records are
    /// durable (the CLI waits for that removal).
    fn read_commands(&mut self, now: u64) -> Vec<PathBuf> {
        let dir = super::dir(&self.context.data_dir).join(CONTROL_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cmd"))
            .collect();
        files.sort();
        for file in &files {
            match fs::read_to_string(file).map(|text| parse_command(&text)) {
                Ok(Some(command)) => {
                    tracing::info!(?command, "operator command");
                    self.queue.handle(Input::Command(command), now);
                }
                Ok(None) => {
                    tracing::warn!(file = %file.display(), "unreadable queue command ignored")
                }
                Err(error) => {
                    tracing::warn!(%error, file = %file.display(), "cannot read a queue command")
                }
            }
        }
        files
    }

    fn compact_if_due(&mut self) {
        let Ok(size) = self.log.size_bytes() else {
            return;
        };
        if size < self.compact_at {
            return;
        }
        let now = timefmt::unix_now();
        let result = self.log.compact(self.queue.state_summary(now), |record| {
            self.queue.finished_but_spooled(&record.id)
        });
        match result {
            Ok(()) => {
                let after = self.log.size_bytes().unwrap_or(0);
                tracing::info!(before = size, after, "queue state log compacted");
                self.compact_at = COMPACT_AT_BYTES.max(after * 2);
            }
            Err(error) => {
                tracing::error!(%error, "cannot compact the queue state log");
                self.compact_at = size * 2;
            }
        }
    }
}

/// `retry ID`, `retry *`, `hold ID`, `release ID`, `delete ID`, `bounce ID`: one line, the
/// format [`write_command`] produces.
fn parse_command(text: &str) -> Option<Command> {
    let (verb, id) = text.trim().split_once(' ')?;
    let id = id.trim().to_ascii_uppercase();
    Some(match verb {
        "retry" if id == "*" => Command::Retry(None),
        "retry" => Command::Retry(Some(id)),
        "hold" => Command::Hold(id),
        "release" => Command::Release(id),
        "delete" => Command::Delete(id),
        "bounce" => Command::Bounce(id),
        _ => return None,
    })
}

/// Leaves a command for the running server; returns the file, which the server removes once the
/// command's records are durable.
pub fn write_command(data_dir: &Path, verb: &str, id: &str) -> io::Result<PathBuf> {
    let dir = super::dir(data_dir).join(CONTROL_DIR);
    fs::create_dir_all(&dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("{nanos:032}-{}", std::process::id());
    let temporary = dir.join(format!("{name}.tmp"));
    fs::write(&temporary, format!("{verb} {id}\n"))?;
    let path = dir.join(format!("{name}.cmd"));
    fs::rename(&temporary, &path)?;
    Ok(path)
}

/// Spools a copy of `id` with only `recipients` (and their DSN parameters), pointing back at
/// the original with `moved_from`.
async fn spool_copy(
    id: &str,
    recipients: &[u32],
    spool: &Arc<dyn Spool>,
    spool_dir: &Path,
) -> bool {
    let Ok(Some((message, body))) = log::read_async(spool_dir, id).await else {
        tracing::error!(id, "cannot read a message to copy forward");
        return false;
    };
    let mut envelope = message.envelope;
    envelope.to = pick(&envelope.to, recipients);
    if !envelope.dsn.is_empty() {
        envelope.dsn = pick(&envelope.dsn, recipients);
    }
    envelope.moved_from = Some(id.to_string());
    let submission = Submission {
        envelope,
        message: body,
    };
    match spool.submit(submission).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::error!(%error, id, "cannot copy a message forward; it stays where it is");
            false
        }
        Err(_) => false,
    }
}

/// The entries of `list` at `indexes`, in that order.
fn pick<T: Clone>(list: &[T], indexes: &[u32]) -> Vec<T> {
    indexes
        .iter()
        .filter_map(|&i| list.get(i as usize).cloned())
        .collect()
}

/// Builds the DSN for `job` from the spooled original and spools it with the null sender.
async fn spool_notification(
    job: &BounceJob,
    spool: &Arc<dyn Spool>,
    spool_dir: &Path,
    hostname: &str,
    retry: &super::schedule::RetryPolicy,
) -> bool {
    let (message, body) = match log::read_async(spool_dir, &job.id).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            // The original is gone (deleted by an operator): nothing to report on.
            tracing::warn!(id = %job.id, "the message of a notification is no longer spooled");
            return true;
        }
        Err(error) => {
            tracing::error!(%error, id = %job.id, "cannot read a message to report on");
            return false;
        }
    };
    let now = SystemTime::now();
    let dsn = build_notification(job, &message, &body, hostname, now, retry);
    let submission = Submission {
        envelope: notification_envelope(&message.envelope.from, hostname, now),
        message: dsn,
    };
    match spool.submit(submission).await {
        Ok(Ok(dsn_id)) => {
            tracing::info!(id = %job.id, dsn = %dsn_id, kind = ?job.kind, to = %message.envelope.from, "delivery status notification spooled");
            true
        }
        Ok(Err(error)) => {
            tracing::error!(%error, id = %job.id, "cannot spool a delivery status notification");
            false
        }
        Err(_) => false,
    }
}

fn build_notification(
    job: &BounceJob,
    message: &QueuedMessage,
    body: &[u8],
    hostname: &str,
    now: SystemTime,
    retry: &super::schedule::RetryPolicy,
) -> Vec<u8> {
    let envelope = &message.envelope;
    let arrival = timefmt::parse_rfc3339(&envelope.received_at).unwrap_or(0);
    let arrival = UNIX_EPOCH + Duration::from_secs(arrival);
    let until = UNIX_EPOCH + Duration::from_secs(retry.deadline(timefmt::unix_seconds(arrival)));
    let action = match job.kind {
        bounce::Kind::Failure => bounce::Action::Failed,
        bounce::Kind::Delay => bounce::Action::Delayed,
        bounce::Kind::Success => bounce::Action::Relayed,
    };
    let hosts: Vec<Option<String>> = job
        .recipients
        .iter()
        .map(|r| r.relay.as_deref().map(relay_host))
        .collect();
    let recipients: Vec<bounce::Recipient<'_>> = job
        .recipients
        .iter()
        .zip(&hosts)
        .map(|(r, host)| bounce::Recipient {
            final_recipient: envelope.to.get(r.rcpt as usize).map_or("", String::as_str),
            original_recipient: envelope
                .dsn
                .get(r.rcpt as usize)
                .and_then(|d| d.orcpt.as_deref())
                .and_then(|o| o.split_once(';'))
                .map(|(addr_type, address)| bounce::Orcpt { addr_type, address }),
            action,
            status: &r.status,
            remote_mta: host.as_deref(),
            remote_reply: r.reply.as_deref(),
            last_attempt: Some(now),
            will_retry_until: (job.kind == bounce::Kind::Delay).then_some(until),
        })
        .collect();
    let unique = format!(
        "{}.{}.{}",
        message.id,
        match job.kind {
            bounce::Kind::Failure => "failure",
            bounce::Kind::Delay => "delay",
            bounce::Kind::Success => "success",
        },
        timefmt::unix_seconds(now)
    );
    bounce::build(&bounce::Report {
        reporting_mta: hostname,
        time: now,
        arrival,
        unique: &unique,
        sender: &envelope.from,
        queue_id: &message.id,
        envid: envelope.envid.as_deref(),
        kind: job.kind,
        original: body,
        ret: match envelope.ret.as_deref() {
            Some("FULL") => bounce::Return::Full,
            _ => bounce::Return::Headers,
        },
        recipients: &recipients,
    })
}

/// `mx.example.org` of `mx.example.org[192.0.2.1]:25`.
fn relay_host(relay: &str) -> String {
    relay.split('[').next().unwrap_or(relay).to_string()
}

/// A DSN's envelope: from the null sender (so it can never cause another), to the original
/// sender, submitted by this server itself.
fn notification_envelope(to: &str, hostname: &str, now: SystemTime) -> Envelope {
    Envelope {
        from: String::new(),
        to: vec![to.to_string()],
        auth_user: None,
        client_ip: std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        client_helo: hostname.to_string(),
        tls: None,
        received_at: timefmt::rfc3339(now),
        smtputf8: !to.is_ascii(),
        eight_bit_mime: false,
        ret: None,
        envid: None,
        dsn: Vec::new(),
        moved_from: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_files() {
        assert_eq!(parse_command("retry *\n"), Some(Command::Retry(None)));
        assert_eq!(
            parse_command("hold 0000000100000000"),
            Some(Command::Hold("0000000100000000".into()))
        );
        assert_eq!(
            parse_command("bounce 00000001000000ab"),
            Some(Command::Bounce("00000001000000AB".into()))
        );
        assert_eq!(parse_command("explode 1"), None);
        assert_eq!(parse_command(""), None);
        assert_eq!(relay_host("mx.example.org[192.0.2.1]:25"), "mx.example.org");
    }
}
