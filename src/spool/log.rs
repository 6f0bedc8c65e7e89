//! The embedded spool: numbered append-only segment files with group commit.
//!
//! One writer thread owns the open segment. Sessions hand it finished messages over a channel;
//! it takes every request waiting at that moment, appends them with one `write`, makes them
//! durable with one `fdatasync`, and only then answers each session. While one batch is being
//! synced the next one gathers, so under load each fsync covers many messages: this is where the
//! spool's throughput comes from, without ever acknowledging a message that is not on disk.
//!
//! A queue id names where the record starts: eight hex digits of segment number, eight of
//! offset. Records carry a CRC. At start-up a write torn by a crash is cut off the end of its
//! segment, so a crash leaves every acknowledged message intact and no partial one; damage
//! anywhere else is skipped over (the records after it stay readable) and never deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::record::{self, Decoded, Next};
use super::{QueuedMessage, Receipt, Spool, SpoolError};
use crate::smtp::Submission;

/// A segment is closed and a new one started past this size.
const SEGMENT_TARGET_SIZE: u64 = 64 * 1024 * 1024;
/// One batch stops gathering past this many bytes, so one slow sync never holds too much memory.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// A segment older than this is closed at the next batch, so that on a quiet server the
/// segments of delivered mail are sealed, and reclaimed, within minutes.
const SEGMENT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// Told of every batch of messages once it is durable, before their senders hear 250: the
/// queue manager's way of learning about new mail. Called on the writer thread.
pub type Notifier = Box<dyn Fn(Vec<QueuedMessage>) + Send>;

struct Request {
    submission: Submission,
    done: oneshot::Sender<Result<String, SpoolError>>,
}

pub struct SegmentLog {
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

/// What recovery found at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    pub messages: usize,
    /// Bytes of interrupted writes cut off the ends of segments.
    pub torn_bytes_removed: u64,
    /// Damaged regions skipped (and left in place for inspection).
    pub damaged_regions: usize,
    /// The segment new messages go to; every recovered segment is below it.
    pub active_segment: u32,
}

impl SegmentLog {
    /// Recovers the spool in `dir` (creating it if needed) and starts the writer thread.
    pub fn open(dir: &Path) -> io::Result<(SegmentLog, Recovery)> {
        SegmentLog::open_notifying(dir, None)
    }

    /// Like [`open`](Self::open), telling `notifier` of every message stored.
    pub fn open_notifying(
        dir: &Path,
        notifier: Option<Notifier>,
    ) -> io::Result<(SegmentLog, Recovery)> {
        create_dir_durably(dir)?;
        let (mut recovery, last_segment) = recover(dir)?;
        recovery.active_segment = last_segment + 1;
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            next_number: last_segment + 1,
            segment: None,
            notifier,
        };
        // Fail now, not at the first message, if the directory is not writable.
        writer.ready_segment()?;
        let (sender, receiver) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(receiver))?;
        let log = SegmentLog {
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        };
        Ok((log, recovery))
    }

    /// Stops accepting messages, lets the writer finish what it holds, and waits for it.
    pub fn close(&self) {
        drop(self.sender.lock().map(|mut s| s.take()));
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Spool for SegmentLog {
    fn submit(&self, submission: Submission) -> Receipt {
        let (done, receipt) = oneshot::channel();
        let request = Request { submission, done };
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let refused = match sender {
            Some(sender) => sender.send(request).err().map(|e| e.0),
            None => Some(request),
        };
        if let Some(request) = refused {
            let _ = request.done.send(Err(SpoolError::Closed));
        }
        receipt
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        self.close();
    }
}

struct Segment {
    number: u32,
    file: File,
    len: u64,
    created: std::time::Instant,
}

impl Segment {
    fn create(dir: &Path, number: u32) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(dir, number))?;
        // The new name must be durable before any record in it is acknowledged.
        sync_dir(dir)?;
        Ok(Segment {
            number,
            file,
            len: 0,
            created: std::time::Instant::now(),
        })
    }

    /// Appends the batch with vectored writes and syncs it.
    fn append(&mut self, parts: &mut [IoSlice<'_>]) -> io::Result<u64> {
        let mut parts = &mut parts[..];
        let mut written = 0u64;
        while !parts.is_empty() {
            let n = self.file.write_vectored(parts)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            written += n as u64;
            IoSlice::advance_slices(&mut parts, n);
        }
        self.file.sync_data()?;
        self.len += written;
        Ok(written)
    }

    /// After a failed append: removes what it left and makes that durable, so a refused
    /// message can never come back as queued after a crash.
    fn cut_back(&self) -> io::Result<()> {
        self.file.set_len(self.len)?;
        self.file.sync_all()
    }
}

/// The writer thread's state. `segment` is `None` after a failure: nothing is ever appended
/// after bytes whose fate is uncertain, and a new segment is tried for the next batch.
struct Writer {
    dir: PathBuf,
    next_number: u32,
    segment: Option<Segment>,
    notifier: Option<Notifier>,
}

impl Writer {
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let batch = gather(first, &requests);
            self.write(batch);
        }
    }

    fn ready_segment(&mut self) -> io::Result<&mut Segment> {
        if self.segment.as_ref().is_none_or(|s| {
            s.len >= SEGMENT_TARGET_SIZE || (s.len > 0 && s.created.elapsed() >= SEGMENT_MAX_AGE)
        }) {
            let segment = Segment::create(&self.dir, self.next_number)?;
            self.next_number += 1;
            self.segment = Some(segment);
        }
        Ok(self.segment.as_mut().expect("just ensured"))
    }

    fn write(&mut self, batch: Vec<Request>) {
        let segment = match self.ready_segment() {
            Ok(segment) => segment,
            Err(error) => {
                tracing::error!(%error, "cannot start a spool segment; messages refused with 452");
                return fail(batch, &error);
            }
        };
        let (heads, ids) = encode_batch(segment, &batch);
        let mut parts: Vec<IoSlice<'_>> = heads
            .iter()
            .zip(&batch)
            .flat_map(|(head, request)| {
                [
                    IoSlice::new(head),
                    IoSlice::new(&request.submission.message),
                ]
            })
            .collect();
        let started = std::time::Instant::now();
        match segment.append(&mut parts) {
            Ok(_) => {
                drop(parts);
                crate::metrics::global().spool_synced(started.elapsed(), batch.len());
                let (answers, stored) = stored(batch, &ids);
                if let Some(notify) = &self.notifier {
                    notify(stored);
                }
                for (done, id) in answers.into_iter().zip(ids) {
                    let _ = done.send(Ok(id));
                }
            }
            Err(error) => {
                drop(parts);
                let number = segment.number;
                tracing::error!(%error, segment = number, "spool write failed; messages refused with 452");
                let cut = segment.cut_back();
                if let Err(cut) = &cut {
                    tracing::error!(error = %cut, segment = number, "cannot remove the failed write; refused messages may be delivered anyway");
                }
                // A segment that holds nothing and was cut back to empty (and synced) has no
                // uncertain tail: keep using it, so that a full disk does not create a new file
                // for every refused batch. Any other failed segment is never appended to again.
                if cut.is_err() || segment.len > 0 {
                    self.segment = None;
                }
                fail(batch, &error);
            }
        }
    }
}

/// Each request's answer channel, and what the queue manager is told: the envelopes move
/// there (the message bytes are on disk and dropped here), so nothing is copied per message.
fn stored(
    batch: Vec<Request>,
    ids: &[String],
) -> (
    Vec<oneshot::Sender<Result<String, SpoolError>>>,
    Vec<QueuedMessage>,
) {
    batch
        .into_iter()
        .zip(ids)
        .map(|(request, id)| {
            let size = request.submission.message.len() as u64;
            let stored = QueuedMessage {
                id: id.clone(),
                envelope: request.submission.envelope,
                size,
            };
            (request.done, stored)
        })
        .unzip()
}

fn gather(first: Request, requests: &mpsc::Receiver<Request>) -> Vec<Request> {
    let mut size = first.submission.message.len();
    let mut batch = vec![first];
    while size < MAX_BATCH_BYTES {
        match requests.try_recv() {
            Ok(request) => {
                size += request.submission.message.len();
                batch.push(request);
            }
            Err(_) => break,
        }
    }
    batch
}

/// Each record's prefix and header, and its queue id.
fn encode_batch(segment: &Segment, batch: &[Request]) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut offset = segment.len;
    let mut heads = Vec::with_capacity(batch.len());
    let mut ids = Vec::with_capacity(batch.len());
    for request in batch {
        let id = queue_id(segment.number, offset);
        let message = &request.submission.message;
        let header = record::Header {
            id: &id,
            envelope: &request.submission.envelope,
            size: message.len() as u64,
        };
        let head = record::encode_head(&header, message);
        offset += (head.len() + message.len()) as u64;
        heads.push(head);
        ids.push(id);
    }
    (heads, ids)
}

fn fail(batch: Vec<Request>, error: &io::Error) {
    let reason = spool_error(error);
    for request in batch {
        let _ = request.done.send(Err(reason.clone()));
    }
}

fn spool_error(error: &io::Error) -> SpoolError {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => SpoolError::Full,
        _ => SpoolError::Io(error.to_string()),
    }
}

pub fn queue_id(segment: u32, offset: u64) -> String {
    format!("{segment:08X}{offset:08X}")
}

/// The segment number and offset a queue id names.
pub fn parse_queue_id(id: &str) -> Option<(u32, u64)> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let segment = u32::from_str_radix(&id[..8], 16).ok()?;
    let offset = u64::from_str_radix(&id[8..], 16).ok()?;
    Some((segment, offset))
}

fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("segment-{number:08}.log"))
}

/// Segment numbers present in `dir`, in order.
fn segment_numbers(dir: &Path) -> io::Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok());
        numbers.extend(number);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The segment files in `dir` and their total size, for `/metrics`.
pub fn usage(dir: &Path) -> io::Result<crate::metrics::SpoolUsage> {
    let mut usage = crate::metrics::SpoolUsage::default();
    for number in segment_numbers(dir)? {
        // A segment reclaimed since the listing is simply no longer counted.
        if let Ok(metadata) = fs::metadata(segment_path(dir, number)) {
            usage.segments += 1;
            usage.bytes += metadata.len();
        }
    }
    Ok(usage)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) so that the new names survive a crash.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    fs::create_dir_all(dir)?;
    for created in missing {
        sync_dir(
            created
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
    }
    Ok(())
}

/// Cuts interrupted writes off the ends of segments and removes empty segments. Returns what
/// was found and the highest segment number in use.
fn recover(dir: &Path) -> io::Result<(Recovery, u32)> {
    let mut recovery = Recovery::default();
    let mut last = 0;
    for number in segment_numbers(dir)? {
        last = number;
        let path = segment_path(dir, number);
        let bytes = fs::read(&path)?;
        let scan = scan(&bytes, |_, _| {});
        recovery.messages += scan.records;
        recovery.damaged_regions += scan.damaged.len();
        for region in &scan.damaged {
            tracing::warn!(segment = %path.display(), start = region.start, end = region.end, "damaged spool bytes skipped and kept");
        }
        if let Some(torn_at) = scan.torn_tail {
            let file = OpenOptions::new().write(true).open(&path)?;
            file.set_len(torn_at as u64)?;
            file.sync_all()?;
            recovery.torn_bytes_removed += (bytes.len() - torn_at) as u64;
        }
        if scan.torn_tail == Some(0) || bytes.is_empty() {
            fs::remove_file(&path)?;
        }
    }
    sync_dir(dir)?;
    Ok((recovery, last))
}

/// What one segment holds.
struct Scan {
    records: usize,
    /// Complete but invalid regions, skipped.
    damaged: Vec<std::ops::Range<usize>>,
    /// Where an interrupted write starts, when the segment ends with one: a record cut short by
    /// the end of the file, or bytes after the last record that hold no record start at all.
    torn_tail: Option<usize>,
}

/// Walks a segment's bytes, calling `visit` with each valid record and its offset. After a
/// damaged region it resumes at the next record start, so one bad record never hides the rest.
fn scan(bytes: &[u8], mut visit: impl FnMut(usize, Decoded)) -> Scan {
    let mut result = Scan {
        records: 0,
        damaged: Vec::new(),
        torn_tail: None,
    };
    let mut offset = 0;
    while offset < bytes.len() {
        let mut rest = &bytes[offset..];
        let next = record::decode(&mut rest).unwrap_or(Next::Corrupt);
        match next {
            Next::Record(decoded) => {
                let len = decoded.len as usize;
                result.records += 1;
                visit(offset, *decoded);
                offset += len;
            }
            Next::End => break,
            // A record that claims more bytes than follow is an interrupted write only if no
            // valid record follows it: a damaged length field in the middle of a segment reads
            // the same, and cutting there would delete the acknowledged records behind it.
            Next::Torn => match next_valid_record(bytes, offset + 1) {
                Some(resume) => {
                    result.damaged.push(offset..resume);
                    offset = resume;
                }
                None => {
                    result.torn_tail = Some(offset);
                    break;
                }
            },
            Next::Corrupt => match find_magic(bytes, offset + 1) {
                Some(resume) => {
                    result.damaged.push(offset..resume);
                    offset = resume;
                }
                // Nothing record-like follows: the remains of an interrupted write.
                None => {
                    result.torn_tail = Some(offset);
                    break;
                }
            },
        }
    }
    result
}

/// The start of the first complete, valid record at or after `from` (a record start inside a
/// message body is not one: its checksum fails).
fn next_valid_record(bytes: &[u8], from: usize) -> Option<usize> {
    let mut candidate = find_magic(bytes, from)?;
    loop {
        let mut rest = &bytes[candidate..];
        if let Ok(Next::Record(_)) = record::decode(&mut rest) {
            return Some(candidate);
        }
        candidate = find_magic(bytes, candidate + 1)?;
    }
}

fn find_magic(bytes: &[u8], from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(record::MAGIC.len())
        .position(|w| w == record::MAGIC)
        .map(|p| from + p)
}

/// Deletes a segment whose messages are all finished (the queue manager decides that; the
/// writer never appends to a segment below its current one). The removal is made durable.
pub fn remove_segment(dir: &Path, number: u32) -> io::Result<()> {
    match fs::remove_file(segment_path(dir, number)) {
        Ok(()) => sync_dir(dir),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// What a read-only pass over the spool found: the same numbers recovery works from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Health {
    pub segments: usize,
    pub messages: usize,
    pub damaged_regions: usize,
    /// Bytes after the last record of a segment that are not a record (an interrupted write,
    /// or one still being written if a server is running).
    pub trailing_bytes: u64,
}

/// Checks every segment without changing anything.
pub fn check(dir: &Path) -> io::Result<Health> {
    let mut health = Health::default();
    if !dir.exists() {
        return Ok(health);
    }
    for number in segment_numbers(dir)? {
        let bytes = fs::read(segment_path(dir, number))?;
        let scan = scan(&bytes, |_, _| {});
        health.segments += 1;
        health.messages += scan.records;
        health.damaged_regions += scan.damaged.len();
        health.trailing_bytes += scan.torn_tail.map_or(0, |at| (bytes.len() - at) as u64);
    }
    Ok(health)
}

/// Every complete message in the spool, oldest first. Safe to call while a server writes.
pub fn list(dir: &Path) -> io::Result<Vec<QueuedMessage>> {
    let mut messages = Vec::new();
    for_each_message(dir, |message| messages.push(message))?;
    Ok(messages)
}

/// Hands every complete message in the spool to `each`, oldest first, reading one segment at
/// a time.
pub fn for_each_message(dir: &Path, mut each: impl FnMut(QueuedMessage)) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for number in segment_numbers(dir)? {
        let bytes = fs::read(segment_path(dir, number))?;
        scan(&bytes, |_, decoded| each(decoded.header));
    }
    Ok(())
}

/// One message by queue id, with its raw content.
pub fn read(dir: &Path, id: &str) -> io::Result<Option<(QueuedMessage, Vec<u8>)>> {
    let Some((segment, offset)) = parse_queue_id(&id.to_ascii_uppercase()) else {
        return Ok(None);
    };
    let mut file = match File::open(segment_path(dir, segment)) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    file.seek(SeekFrom::Start(offset))?;
    match record::decode(&mut BufReader::new(file))? {
        Next::Record(decoded) if decoded.header.id.eq_ignore_ascii_case(id) => {
            Ok(Some((decoded.header, decoded.body)))
        }
        _ => Ok(None),
    }
}

/// [`read`] on tokio's blocking pool, for async callers (delivery, DSNs, copy-forward).
pub async fn read_async(dir: &Path, id: &str) -> io::Result<Option<(QueuedMessage, Vec<u8>)>> {
    let (dir, id) = (dir.to_path_buf(), id.to_string());
    tokio::task::spawn_blocking(move || read(&dir, &id))
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::Envelope;

    fn submission(body: &str) -> Submission {
        Submission {
            envelope: Envelope {
                from: "a@b.c".into(),
                to: vec!["d@e.f".into()],
                auth_user: Some("a@b.c".into()),
                client_ip: "127.0.0.1".parse().unwrap(),
                client_helo: "c".into(),
                tls: None,
                received_at: "2026-11-22T11:22:43Z".into(),
                smtputf8: false,
                eight_bit_mime: false,
                ret: None,
                envid: None,
                dsn: Vec::new(),
                moved_from: None,
            },
            message: body.as_bytes().to_vec(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("portcullis-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn submit(log: &SegmentLog, body: &str) -> String {
        log.submit(submission(body))
            .blocking_recv()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn stores_lists_and_reads_back() {
        let dir = temp_dir("roundtrip");
        let (log, recovery) = SegmentLog::open(&dir).unwrap();
        let empty = Recovery {
            active_segment: 1,
            ..Recovery::default()
        };
        assert_eq!(recovery, empty);
        let first = submit(&log, "one\r\n");
        let second = submit(&log, "two\r\n");
        assert_ne!(first, second);
        let listed = list(&dir).unwrap();
        assert_eq!(
            listed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            [&first, &second]
        );
        assert_eq!(listed[0].size, 5);
        let (header, body) = read(&dir, &second).unwrap().unwrap();
        assert_eq!((header.id, body), (second, b"two\r\n".to_vec()));
        assert!(read(&dir, "0000000100000001").unwrap().is_none());
        assert!(read(&dir, "nonsense").unwrap().is_none());
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_submissions_are_all_acknowledged_and_stored() {
        let dir = temp_dir("concurrent");
        let (log, _) = SegmentLog::open(&dir).unwrap();
        let receipts: Vec<_> = (0..200)
            .map(|i| log.submit(submission(&format!("m{i}\r\n"))))
            .collect();
        let ids: Vec<String> = receipts
            .into_iter()
            .map(|r| r.blocking_recv().unwrap().unwrap())
            .collect();
        let listed: Vec<String> = list(&dir).unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(listed, ids);
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recovery_drops_a_torn_tail_and_keeps_complete_records() {
        let dir = temp_dir("torn");
        let (log, _) = SegmentLog::open(&dir).unwrap();
        let kept = submit(&log, "kept\r\n");
        submit(&log, "torn\r\n");
        drop(log);
        // Simulate a crash in the middle of writing the second record.
        let path = segment_path(&dir, 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (log, recovery) = SegmentLog::open(&dir).unwrap();
        assert_eq!(recovery.messages, 1);
        assert!(recovery.torn_bytes_removed > 0);
        let after = submit(&log, "after\r\n");
        let ids: Vec<String> = list(&dir).unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, [kept, after]);
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Three records, one byte of the first flipped (at `at`, given the first and second
    /// records' offsets), then a recovery: it must skip exactly the first record as damage,
    /// keep the other two, and leave the segment's bytes as they were.
    fn damage_first_of_three(name: &str, at: impl FnOnce(usize, usize) -> usize) {
        let dir = temp_dir(name);
        let (log, _) = SegmentLog::open(&dir).unwrap();
        let damaged = submit(&log, "first\r\n");
        let second = submit(&log, "second\r\n");
        let third = submit(&log, "third\r\n");
        drop(log);
        let path = segment_path(&dir, 1);
        let mut bytes = fs::read(&path).unwrap();
        let offset = |id: &str| parse_queue_id(id).unwrap().1 as usize;
        bytes[at(offset(&damaged), offset(&second))] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert!(read(&dir, &damaged).unwrap().is_none());
        let (log, recovery) = SegmentLog::open(&dir).unwrap();
        assert_eq!(
            (
                recovery.messages,
                recovery.damaged_regions,
                recovery.torn_bytes_removed
            ),
            (2, 1, 0)
        );
        drop(log);
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "the damaged segment is left as it was"
        );
        let ids: Vec<String> = list(&dir).unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, [second, third]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_in_the_middle_hides_nothing_else_and_is_never_deleted() {
        // The last body byte of the first record: its checksum fails.
        damage_first_of_three("corrupt", |_, second| second - 3);
    }

    #[test]
    fn a_damaged_length_in_the_middle_is_not_mistaken_for_a_torn_tail() {
        // The highest byte of the first record's body length: it claims far more bytes than
        // the segment holds, which reads like a write cut short.
        damage_first_of_three("damaged-length", |first, _| first + 15);
    }

    #[test]
    fn zeros_after_the_last_record_are_an_interrupted_write() {
        let dir = temp_dir("zeros");
        let (log, _) = SegmentLog::open(&dir).unwrap();
        let kept = submit(&log, "kept\r\n");
        drop(log);
        let path = segment_path(&dir, 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0u8; 4096])
            .unwrap();
        let (log, recovery) = SegmentLog::open(&dir).unwrap();
        assert_eq!((recovery.messages, recovery.torn_bytes_removed), (1, 4096));
        drop(log);
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        assert_eq!(list(&dir).unwrap()[0].id, kept);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_is_refused_cut_back_and_followed_by_a_new_segment() {
        let dir = temp_dir("failure");
        let (log, _) = SegmentLog::open(&dir).unwrap();
        let before = submit(&log, "before\r\n");
        // /dev/full fails every write with ENOSPC: swap it in as the open segment's file.
        let mut writer = Writer {
            dir: dir.clone(),
            next_number: 9,
            segment: None,
            notifier: None,
        };
        writer.segment = Some(Segment {
            number: 8,
            file: OpenOptions::new().write(true).open("/dev/full").unwrap(),
            len: 0,
            created: std::time::Instant::now(),
        });
        let (done, receipt) = oneshot::channel();
        writer.write(vec![Request {
            submission: submission("refused\r\n"),
            done,
        }]);
        assert_eq!(receipt.blocking_recv().unwrap(), Err(SpoolError::Full));
        assert!(writer.segment.is_none(), "never appends after a failure");
        let (done, receipt) = oneshot::channel();
        writer.write(vec![Request {
            submission: submission("after\r\n"),
            done,
        }]);
        let after = receipt.blocking_recv().unwrap().unwrap();
        assert!(after.starts_with("00000009"), "{after}");
        drop(log);
        let ids: Vec<String> = list(&dir).unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, [before, after]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn closed_spool_refuses() {
        let dir = temp_dir("closed");
        let (log, _) = SegmentLog::open(&dir).unwrap();
        log.close();
        assert_eq!(
            log.submit(submission("x")).blocking_recv().unwrap(),
            Err(SpoolError::Closed)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn queue_ids_round_trip() {
        assert_eq!(queue_id(1, 0x2A), "000000010000002A");
        assert_eq!(parse_queue_id("000000010000002A"), Some((1, 0x2A)));
        assert_eq!(parse_queue_id("xyz"), None);
    }
}
