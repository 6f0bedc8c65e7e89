//! The queue manager's sans-IO parts: durable per-recipient state and retry scheduling, and
//! the operators' view of the queue.

pub mod driver;
mod interner;
pub mod manager;
pub mod schedule;
pub mod state;
mod table;

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
            next_attempt_at: state
                .next_attempt_at
                .map(|at| crate::timefmt::rfc3339_unix(at.get())),
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
            let (entry, deleted) = entry(message, &state);
            (!deleted).then_some(entry)
        })
        .collect())
}

/// The message, its recipients' state, and whether an operator deleted it.
fn entry(message: QueuedMessage, state: &state::State) -> (Entry, bool) {
    let states = state.message(&message.id, message.envelope.to.len());
    let recipients = message
        .envelope
        .to
        .iter()
        .zip(&states.recipients)
        .map(|(address, state)| RecipientView::new(address, state))
        .collect();
    let entry = Entry {
        message,
        recipients,
    };
    (entry, states.deleted)
}

/// Which messages an operator asks for (`queue list --status/--domain/--account`,
/// `/api/queue?status=&domain=&account=`); what is not given matches everything.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Filter {
    /// A recipient has this status (`queued`, `deferred`, `held`, `delivered`, ...).
    pub status: Option<String>,
    /// A recipient is at this domain (in any case).
    pub domain: Option<String>,
    /// The message was submitted by this account (in any case).
    pub account: Option<String>,
}

impl Filter {
    pub fn matches(&self, entry: &Entry) -> bool {
        let status = self.status.as_deref().is_none_or(|status| {
            entry
                .recipients
                .iter()
                .any(|r| r.status.eq_ignore_ascii_case(status))
        });
        let domain = self.domain.as_deref().is_none_or(|domain| {
            entry
                .recipients
                .iter()
                .any(|r| manager::domain_of(&r.address).eq_ignore_ascii_case(domain))
        });
        let account = self.account.as_deref().is_none_or(|account| {
            entry
                .message
                .envelope
                .auth_user
                .as_deref()
                .is_some_and(|user| user.eq_ignore_ascii_case(account))
        });
        status && domain && account
    }
}

/// One message in full (`queue show`, `/api/queue/ID`): what `queue list` says of it, whether
/// it was deleted, and every state change, oldest first.
#[derive(Debug, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub entry: Entry,
    pub deleted: bool,
    pub history: Vec<HistoryLine>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct HistoryLine {
    /// RFC 3339.
    pub at: String,
    /// `None`: the change is the message's (held, deleted, ...), not one recipient's.
    pub recipient: Option<String>,
    /// As the state log names it: `delivered`, `deferred`, `held`, ...
    pub event: String,
    pub relay: Option<String>,
    pub reply: Option<String>,
}

/// The message `id` (in the spool's spelling) and its bytes as stored, if it is in the spool.
pub fn detail(data_dir: &Path, id: &str) -> io::Result<Option<(Detail, Vec<u8>)>> {
    let Some((message, body)) = log::read(&data_dir.join("spool"), id)? else {
        return Ok(None);
    };
    let replay = state::load(&dir(data_dir))?;
    let history = replay
        .records
        .iter()
        .filter(|r| r.id == message.id)
        .map(|record| history_line(&message, record))
        .collect();
    let (entry, deleted) = entry(message, &replay.state());
    let detail = Detail {
        entry,
        deleted,
        history,
    };
    Ok(Some((detail, body)))
}

fn history_line(message: &QueuedMessage, record: &state::Record) -> HistoryLine {
    let recipient = record
        .rcpt
        .and_then(|i| message.envelope.to.get(i as usize))
        .cloned();
    // The event's name is its serialized tag, the same word the state log holds.
    let event = serde_json::to_value(&record.event)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_default();
    HistoryLine {
        at: crate::timefmt::rfc3339_unix(record.at),
        recipient,
        event,
        relay: record.relay.clone(),
        reply: record.reply.clone(),
    }
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
        let (kept_detail, body) = detail(&data, &kept).unwrap().unwrap();
        assert_eq!(body, b"Subject: x\r\n\r\nx\r\n");
        assert!(!kept_detail.deleted);
        assert_eq!(kept_detail.entry.recipients, entries[0].recipients);
        assert_eq!(
            kept_detail.history[0],
            HistoryLine {
                at: "1970-01-01T00:00:01Z".into(),
                recipient: Some("b@example.org".into()),
                event: "deferred".into(),
                relay: None,
                reply: Some("450 4.2.0 greylisted".into()),
            }
        );
        assert_eq!(kept_detail.history[1].event, "held");
        let (deleted_detail, _) = detail(&data, &deleted).unwrap().unwrap();
        assert!(deleted_detail.deleted);
        assert_eq!(deleted_detail.history[0].recipient, None);
        assert!(detail(&data, "00000009000000FF").unwrap().is_none());
        drop(spool);
        std::fs::remove_dir_all(&data).unwrap();
    }

    fn entry_to(recipients: &[(&str, &'static str)], auth_user: Option<&str>) -> Entry {
        let to = recipients.iter().map(|(a, _)| a.to_string()).collect();
        let message = QueuedMessage {
            id: "0000000100000000".into(),
            envelope: crate::smtp::Envelope {
                from: "a@example.com".into(),
                to,
                auth_user: auth_user.map(String::from),
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
            },
            size: 1,
        };
        let recipients = recipients
            .iter()
            .map(|(address, status)| RecipientView {
                address: address.to_string(),
                status,
                attempts: 0,
                last_reply: None,
                next_attempt_at: None,
            })
            .collect();
        Entry {
            message,
            recipients,
        }
    }

    #[test]
    fn filters_match_any_recipient_and_the_submitting_account() {
        let entry = entry_to(
            &[
                ("b@Example.org", "deferred"),
                ("c@example.net", "delivered"),
            ],
            Some("me@example.com"),
        );
        let filter = |status: Option<&str>, domain: Option<&str>, account: Option<&str>| Filter {
            status: status.map(String::from),
            domain: domain.map(String::from),
            account: account.map(String::from),
        };
        assert!(Filter::default().matches(&entry));
        assert!(filter(Some("deferred"), None, None).matches(&entry));
        assert!(!filter(Some("held"), None, None).matches(&entry));
        assert!(filter(None, Some("example.ORG"), None).matches(&entry));
        assert!(!filter(None, Some("example.com"), None).matches(&entry));
        assert!(filter(None, None, Some("ME@example.com")).matches(&entry));
        assert!(
            filter(
                Some("delivered"),
                Some("example.net"),
                Some("me@example.com")
            )
            .matches(&entry)
        );
        assert!(
            !filter(
                Some("delivered"),
                Some("example.net"),
                Some("you@example.com")
            )
            .matches(&entry)
        );
        // A message from a trusted network has no account: an account filter never matches it.
        let trusted = entry_to(&[("b@example.org", "queued")], None);
        assert!(!filter(None, None, Some("me@example.com")).matches(&trusted));
    }
}
