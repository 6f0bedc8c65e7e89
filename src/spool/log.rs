//! The embedded spool: numbered append-only segment files with group commit.
//!
//! One writer thread owns the open segment. Sessions hand it finished messages over a channel;
//! it takes every request waiting at that moment, appends them with one `write`, makes them
//! durable with one `fdatasync`, and only then answers each session. While one batch is being
//! synced the next one gathers, so under load each fsync covers many messages: this is where the
//! spool's throughput comes from, without ever acknowledging a message that is not on disk.
//!
//! A queue id names where the record starts: eight hex digits of segment number, eight of
//! offset. Records carry a CRC; at start-up each segment is cut back to its last complete
//! record, so a crash leaves every acknowledged message intact and no partial one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use super::record::{self, Decoded};
use super::{QueuedMessage, Receipt, Spool, SpoolError};
use crate::smtp::Submission;

/// A segment is closed and a new one started past this size.
const SEGMENT_TARGET_SIZE: u64 = 64 * 1024 * 1024;
/// One batch stops gathering past this many bytes, so one slow sync never holds too much memory.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

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
    pub torn_bytes_removed: u64,
}

impl SegmentLog {
    /// Recovers the spool in `dir` (creating it if needed) and starts the writer thread.
    pub fn open(dir: &Path) -> io::Result<(SegmentLog, Recovery)> {
        fs::create_dir_all(dir)?;
        let (recovery, last_segment) = recover(dir)?;
        let segment = Segment::create(dir, last_segment + 1)?;
        let (sender, receiver) = mpsc::channel();
        let writer = thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || write_loop(segment, receiver))?;
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
    dir: PathBuf,
    number: u32,
    file: File,
    len: u64,
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
            dir: dir.to_path_buf(),
            number,
            file,
            len: 0,
        })
    }

    fn next(&self) -> io::Result<Segment> {
        Segment::create(&self.dir, self.number + 1)
    }

    /// Appends the batch and syncs it. On failure the segment is cut back to where it was.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                let _ = self.file.set_len(self.len);
                Err(error)
            }
        }
    }
}

fn write_loop(mut segment: Segment, requests: mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let batch = gather(first, &requests);
        if segment.len >= SEGMENT_TARGET_SIZE {
            match segment.next() {
                Ok(next) => segment = next,
                Err(error) => {
                    fail(batch, &error);
                    continue;
                }
            }
        }
        let (bytes, ids) = encode_batch(&segment, &batch);
        match segment.append(&bytes) {
            Ok(()) => {
                for (request, id) in batch.into_iter().zip(ids) {
                    let _ = request.done.send(Ok(id));
                }
            }
            Err(error) => {
                tracing::error!(%error, segment = segment.number, "spool write failed; messages refused with 452");
                fail(batch, &error);
                // After a failed write or sync the file's tail is uncertain (the kernel may have
                // dropped dirty pages). Never append after it: continue in a fresh segment.
                if let Ok(next) = segment.next() {
                    segment = next;
                }
            }
        }
    }
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

fn encode_batch(segment: &Segment, batch: &[Request]) -> (Vec<u8>, Vec<String>) {
    let mut bytes =
        Vec::with_capacity(batch.iter().map(|r| r.submission.message.len() + 512).sum());
    let mut ids = Vec::with_capacity(batch.len());
    for request in batch {
        let offset = segment.len + bytes.len() as u64;
        let id = queue_id(segment.number, offset);
        let header = QueuedMessage {
            id: id.clone(),
            envelope: request.submission.envelope.clone(),
            size: request.submission.message.len() as u64,
        };
        record::encode(&header, &request.submission.message, &mut bytes);
        ids.push(id);
    }
    (bytes, ids)
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

fn queue_id(segment: u32, offset: u64) -> String {
    format!("{segment:08X}{offset:08X}")
}

fn parse_queue_id(id: &str) -> Option<(u32, u64)> {
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Cuts every segment back to its last valid record and removes empty ones. Returns what was
/// found and the highest segment number in use.
fn recover(dir: &Path) -> io::Result<(Recovery, u32)> {
    let mut recovery = Recovery::default();
    let mut last = 0;
    for number in segment_numbers(dir)? {
        last = number;
        let path = segment_path(dir, number);
        let (messages, valid_len) = scan(&path, |_| {})?;
        let file = OpenOptions::new().write(true).open(&path)?;
        let len = file.metadata()?.len();
        if valid_len < len {
            file.set_len(valid_len)?;
            file.sync_all()?;
            recovery.torn_bytes_removed += len - valid_len;
        }
        if messages == 0 {
            fs::remove_file(&path)?;
        }
        recovery.messages += messages;
    }
    sync_dir(dir)?;
    Ok((recovery, last))
}

/// Calls `visit` for each valid record of one segment; returns the count and the valid length.
fn scan(path: &Path, mut visit: impl FnMut(Decoded)) -> io::Result<(usize, u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let (mut count, mut valid_len) = (0, 0);
    while let Some(decoded) = record::decode(&mut reader)? {
        valid_len += decoded.len;
        count += 1;
        visit(decoded);
    }
    Ok((count, valid_len))
}

/// Every complete message in the spool, oldest first. Safe to call while a server writes.
pub fn list(dir: &Path) -> io::Result<Vec<QueuedMessage>> {
    let mut messages = Vec::new();
    if !dir.exists() {
        return Ok(messages);
    }
    for number in segment_numbers(dir)? {
        scan(&segment_path(dir, number), |decoded| {
            messages.push(decoded.header)
        })?;
    }
    Ok(messages)
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
    let found = record::decode(&mut BufReader::new(file))?;
    Ok(found
        .filter(|decoded| decoded.header.id.eq_ignore_ascii_case(id))
        .map(|decoded| (decoded.header, decoded.body)))
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
        assert_eq!(recovery, Recovery::default());
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

    #[test]
    fn corrupt_bytes_are_not_a_message() {
        let dir = temp_dir("corrupt");
        let (log, _) = SegmentLog::open(&dir).unwrap();
        let id = submit(&log, "hello\r\n");
        drop(log);
        let path = segment_path(&dir, 1);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
        assert!(read(&dir, &id).unwrap().is_none());
        assert!(list(&dir).unwrap().is_empty());
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
