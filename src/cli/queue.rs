//! `portcullis queue list|show|retry|hold|release|delete|bounce|check`.

use std::io::Write;

use clap::Subcommand;

use super::{EX_DATAERR, EX_IOERR, EX_NOINPUT, EX_TEMPFAIL, EX_USAGE, Failure};
use crate::config::Config;
use crate::invisible::escaped;
use crate::queue::{self, Entry, HistoryLine, driver};
use crate::spool::{QueuedMessage, log};

#[derive(Subcommand)]
pub enum Command {
    /// List the messages in the spool, oldest first
    List {
        /// Print a JSON array (id, from, to, size, received_at, auth_user, client_ip, tls, ...,
        /// and recipients: address, status, attempts, last_reply, next_attempt_at)
        #[arg(long)]
        json: bool,
        /// Only messages with a recipient in this status (queued, deferred, held, delivered,
        /// bounced, expired)
        #[arg(long)]
        status: Option<String>,
        /// Only messages with a recipient at this domain
        #[arg(long)]
        domain: Option<String>,
        /// Only messages submitted by this account
        #[arg(long)]
        account: Option<String>,
    },
    /// Print one message: its envelope and delivery history, a blank line, then the message
    /// as stored
    Show {
        /// The queue id (16 hex digits, as `queue list` shows)
        id: String,
        /// Print one JSON object instead (what `queue list --json` says of the message, and
        /// its history; not the message itself), the same as `GET /api/queue/ID`
        #[arg(long)]
        json: bool,
    },
    /// Try a message's waiting recipients now, whatever their schedule (and lift the back-off
    /// of their destinations)
    Retry {
        /// The queue id; omit it with --all
        id: Option<String>,
        /// Every message in the queue
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Stop trying a message until it is released
    Hold {
        /// The queue id (16 hex digits, as `queue list` shows)
        id: String,
    },
    /// Undo `hold`: the message is tried at once
    Release {
        /// The queue id (16 hex digits, as `queue list` shows)
        id: String,
    },
    /// Remove a message from the queue without notifying its sender
    Delete {
        /// The queue id (16 hex digits, as `queue list` shows)
        id: String,
    },
    /// Give up on a message's waiting recipients and send its sender a bounce
    Bounce {
        /// The queue id (16 hex digits, as `queue list` shows)
        id: String,
    },
    /// Read the whole spool and report damaged or partial records (changes nothing)
    Check,
}

pub fn run(command: Command, config: &Config) -> Result<(), Failure> {
    let spool_dir = config.data_dir.join("spool");
    let io_failure =
        |e: std::io::Error| Failure::new(EX_IOERR, format!("{}: {e}", spool_dir.display()));
    match command {
        Command::List {
            json,
            status,
            domain,
            account,
        } => {
            let filter = queue::Filter {
                status,
                domain,
                account,
            };
            let mut messages = queue::entries(&config.data_dir).map_err(io_failure)?;
            messages.retain(|entry| filter.matches(entry));
            if json {
                let text = serde_json::to_string_pretty(&messages)
                    .map_err(|e| Failure::new(EX_IOERR, e.to_string()))?;
                println!("{text}");
            } else {
                print_table(&messages);
            }
            Ok(())
        }
        Command::Retry { id, all } => {
            if id.is_none() && !all {
                return Err(Failure::new(EX_USAGE, "give a queue id, or --all"));
            }
            steer(config, "retry", id.as_deref())
        }
        Command::Hold { id } => steer(config, "hold", Some(&id)),
        Command::Release { id } => steer(config, "release", Some(&id)),
        Command::Delete { id } => steer(config, "delete", Some(&id)),
        Command::Bounce { id } => steer(config, "bounce", Some(&id)),
        Command::Check => {
            let health = log::check(&spool_dir).map_err(io_failure)?;
            println!(
                "{} segment(s), {} message(s), {} damaged region(s), {} trailing byte(s)",
                health.segments, health.messages, health.damaged_regions, health.trailing_bytes
            );
            if health.damaged_regions > 0 {
                return Err(Failure::new(
                    EX_DATAERR,
                    "the spool has damaged records; they are skipped and kept for inspection",
                ));
            }
            Ok(())
        }
        Command::Show { id, json } => {
            let id = queue_id(&id)?;
            let (detail, body) = queue::detail(&config.data_dir, &id)
                .map_err(io_failure)?
                .ok_or_else(|| not_in_spool(&id))?;
            if json {
                let text = serde_json::to_string_pretty(&detail)
                    .map_err(|e| Failure::new(EX_IOERR, e.to_string()))?;
                println!("{text}");
                return Ok(());
            }
            print_envelope(&detail.entry.message);
            print_history(&detail.history);
            println!();
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&body)
                .map_err(|e| Failure::new(EX_IOERR, e.to_string()))
        }
    }
}

fn print_table(messages: &[Entry]) {
    if messages.is_empty() {
        println!("The spool is empty.");
        return;
    }
    println!(
        "{:<16}  {:<20}  {:>9}  {:<30}  recipients",
        "id", "received", "size", "from"
    );
    for entry in messages {
        let message = &entry.message;
        let envelope = &message.envelope;
        let from = if envelope.from.is_empty() {
            "<>".into()
        } else {
            escaped(&envelope.from)
        };
        println!(
            "{:<16}  {:<20}  {:>9}  {:<30}  {}",
            message.id,
            envelope.received_at,
            message.size,
            from,
            recipients(entry)
        );
    }
    println!("{} message(s)", messages.len());
}

/// The recipients, each with its status unless it is still simply queued.
fn recipients(entry: &Entry) -> String {
    let described: Vec<String> = entry
        .recipients
        .iter()
        .map(|r| match r.status {
            "queued" => escaped(&r.address).into_owned(),
            status => format!("{} ({status})", escaped(&r.address)),
        })
        .collect();
    described.join(", ")
}

fn print_envelope(message: &QueuedMessage) {
    let envelope = &message.envelope;
    println!("id: {}", message.id);
    println!("received_at: {}", envelope.received_at);
    println!("from: <{}>", escaped(&envelope.from));
    for recipient in &envelope.to {
        println!("to: <{}>", escaped(recipient));
    }
    println!(
        "auth_user: {}",
        escaped(
            envelope
                .auth_user
                .as_deref()
                .unwrap_or("(none: trusted network)")
        )
    );
    println!(
        "client: {} (EHLO {})",
        envelope.client_ip,
        escaped(&envelope.client_helo)
    );
    match &envelope.tls {
        Some(tls) => println!("tls: {} {}", tls.version, tls.cipher),
        None => println!("tls: none"),
    }
    println!("size: {}", message.size);
}

/// Every state change of the message, oldest first: the attempt history.
fn print_history(history: &[HistoryLine]) {
    for change in history {
        let recipient = change
            .recipient
            .as_ref()
            .map_or("(message)".to_string(), |a| format!("<{}>", escaped(a)));
        let mut line = format!("history: {} {recipient} {}", change.at, change.event);
        if let Some(relay) = &change.relay {
            line.push_str(&format!(" relay={}", escaped(relay)));
        }
        if let Some(reply) = &change.reply {
            line.push_str(&format!(" reply=\"{}\"", escaped(reply)));
        }
        println!("{line}");
    }
}

/// A well-formed queue id (16 hex digits, in either case) in the spool's spelling; anything else
/// is bad input (65), told apart from a well-formed id that is not in the spool (66).
fn queue_id(id: &str) -> Result<String, Failure> {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(id.to_ascii_uppercase());
    }
    Err(Failure::new(
        EX_DATAERR,
        format!(
            "{id:?} is not a queue id: a queue id is 16 hex digits, e.g. 0000000100000000 (see `portcullis queue list`)"
        ),
    ))
}

/// Hands an operator's command to the running server and waits until it is applied; without a
/// server it waits in the queue directory and is applied at the next start.
/// The message `id` names: 65 for what is not a queue id, 66 for one not in the spool.
fn spooled(config: &Config, id: &str) -> Result<(QueuedMessage, Vec<u8>), Failure> {
    let id = queue_id(id)?;
    let spool_dir = config.data_dir.join("spool");
    log::read(&spool_dir, &id)
        .map_err(|e| Failure::new(EX_IOERR, format!("{}: {e}", spool_dir.display())))?
        .ok_or_else(|| not_in_spool(&id))
}

fn not_in_spool(id: &str) -> Failure {
    Failure::new(
        EX_NOINPUT,
        format!("no message {id} in the spool (see `portcullis queue list`)"),
    )
}

fn steer(config: &Config, verb: &str, id: Option<&str>) -> Result<(), Failure> {
    let id = match id {
        Some(id) => spooled(config, id)?.0.id,
        None => "*".to_string(),
    };
    let file = driver::write_command(&config.data_dir, verb, &id)
        .map_err(|e| Failure::new(EX_IOERR, format!("cannot write the command: {e}")))?;
    if !crate::server::is_running(&config.data_dir) {
        println!(
            "{verb} {id}: no server is running on {}; it is applied when the server starts",
            config.data_dir.display()
        );
        return Ok(());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while file.exists() {
        if std::time::Instant::now() > deadline {
            return Err(Failure::new(
                EX_TEMPFAIL,
                format!(
                    "{verb} {id}: the server has not applied it within 5 s; it stays in {}",
                    file.display()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("{verb} {id}: applied");
    Ok(())
}
