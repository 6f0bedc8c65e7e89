//! The queue manager's sans-IO parts: durable per-recipient state and retry scheduling, and
//! the operators' view of the queue.

pub mod driver;
mod interner;
pub mod manager;
pub mod schedule;
pub mod state;

use std::io;
use std::path::Path;

use serde::Serialize;

use crate::spool::{QueuedMessage, log};
use state::{RecipientState, Status};

/// Where the state log lives, beside the spool.
pub fn dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("queue")
}

/// One message as operators see it (`queue list --json`): the spooled envelope and size, and
/// what has happened to each recipient.
#[derive(Debug, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub message: QueuedMessage,
    pub recipients: Vec<RecipientView>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RecipientView {
    pub address: String,
    /// `queued`, `deferred`, `delivered`, `bounced`, `expired`, or `held` (an operator holds a
    /// recipient that is not final).
    pub status: &'static str,
    pub attempts: u32,
    pub last_reply: Option<String>,
    /// RFC 3339; `null` when the recipient is due now (queued, released or retried) or final.
    pub next_attempt_at: Option<String>,
}

impl RecipientView {
    fn new(address: &str, state: &RecipientState) -> RecipientView {
        RecipientView {
            address: address.to_string(),
            status: status_name(state),
            attempts: state.attempts,
            last_reply: state.last_reply.as_deref().map(String::from),
            next_attempt_at: state.next_attempt_at.map(crate::timefmt::rfc3339_unix),
        }
    }
}

/// A recipient's status as operators see it (`queue list`, `/metrics`).
pub fn status_name(state: &RecipientState) -> &'static str {
    match state.status {
        status if state.held && !status.is_final() => "held",
        Status::Queued => "queued",
        Status::Deferred => "deferred",
        Status::Delivered => "delivered",
        Status::Bounced => "bounced",
        Status::Expired => "expired",
    }
}

/// Every message in the spool that an operator has not deleted, oldest first, with its
/// recipients' state from the state log.
pub fn entries(data_dir: &Path) -> io::Result<Vec<Entry>> {
    let messages = log::list(&data_dir.join("spool"))?;
    let replay = state::load(&dir(data_dir))?;
    let state = replay.state();
    Ok(messages
        .into_iter()
        .filter_map(|message| {
            let recipients = state.message(&message.id, message.envelope.to.len());
            if recipients.deleted {
                return None;
            }
            let recipients = message
                .envelope
                .to
                .iter()
                .zip(&recipients.recipients)
                .map(|(address, state)| RecipientView::new(address, state))
                .collect();
            Some(Entry {
                message,
                recipients,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::{Event, Record, StateLog};

    #[test]
    fn entries_join_the_spool_and_the_state_log() {
        let data = std::env::temp_dir().join(format!("portcullis-queue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let (spool, _) = crate::spool::SegmentLog::open(&data.join("spool")).unwrap();
        let submit = |to: Vec<String>| {
            let envelope = crate::smtp::Envelope {
                from: "a@example.com".into(),
                to,
                auth_user: None,
                client_ip: "127.0.0.1".parse().unwrap(),
                client_helo: "c".into(),
                tls: None,
                received_at: "2026-12-02T10:00:00Z".into(),
                smtputf8: false,
                eight_bit_mime: false,
                ret: None,
                envid: None,
                dsn: Vec::new(),
                moved_from: None,
            };
            let submission = crate::smtp::Submission {
                envelope,
                message: b"Subject: x\r\n\r\nx\r\n".to_vec(),
            };
            use crate::spool::Spool;
            spool.submit(submission).blocking_recv().unwrap().unwrap()
        };
        let kept = submit(vec!["b@example.org".into(), "c@example.org".into()]);
        let deleted = submit(vec!["d@example.org".into()]);
        let (mut log, _) = StateLog::open(&dir(&data), |_| {}).unwrap();
        let record = |id: &str, rcpt, event, reply: Option<&str>| Record {
            id: id.to_string(),
            rcpt,
            at: 1,
            event,
            reply: reply.map(String::from),
            relay: None,
        };
        log.append(&[
            record(
                &kept,
                Some(0),
                Event::Deferred {
                    next_attempt_at: 1_796_205_600,
                },
                Some("450 4.2.0 greylisted"),
            ),
            record(&kept, Some(1), Event::Held, None),
            record(&deleted, None, Event::Deleted, None),
        ])
        .unwrap();
        let entries = entries(&data).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].message.id, kept);
        assert_eq!(
            entries[0].recipients,
            [
                RecipientView {
                    address: "b@example.org".into(),
                    status: "deferred",
                    attempts: 1,
                    last_reply: Some("450 4.2.0 greylisted".into()),
                    next_attempt_at: Some("2026-12-02T10:00:00Z".into()),
                },
                RecipientView {
                    address: "c@example.org".into(),
                    status: "held",
                    attempts: 0,
                    last_reply: None,
                    next_attempt_at: None,
                },
            ]
        );
        drop(spool);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
