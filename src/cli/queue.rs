//! `portcullis queue list|show`.

use std::io::Write;

use clap::Subcommand;

use super::{EX_DATAERR, EX_IOERR, EX_NOINPUT, Failure};
use crate::config::Config;
use crate::queue::{self, Entry};
use crate::spool::{QueuedMessage, log};

#[derive(Subcommand)]
pub enum Command {
    /// List the messages in the spool, oldest first
    List {
        /// Print a JSON array (id, from, to, size, received_at, auth_user, client_ip, tls, ...,
        /// and recipients: address, status, attempts, last_reply, next_attempt_at)
        #[arg(long)]
        json: bool,
    },
    /// Print one message: its envelope, a blank line, then the message as stored
    Show { id: String },
    /// Read the whole spool and report damaged or partial records (changes nothing)
    Check,
}

pub fn run(command: Command, config: &Config) -> Result<(), Failure> {
    let spool_dir = config.data_dir.join("spool");
    let io_failure =
        |e: std::io::Error| Failure::new(EX_IOERR, format!("{}: {e}", spool_dir.display()));
    match command {
        Command::List { json } => {
            let messages = queue::entries(&config.data_dir).map_err(io_failure)?;
            if json {
                let text = serde_json::to_string_pretty(&messages)
                    .map_err(|e| Failure::new(EX_IOERR, e.to_string()))?;
                println!("{text}");
            } else {
                print_table(&messages);
            }
            Ok(())
        }
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
        Command::Show { id } => {
            let (message, body) = log::read(&spool_dir, &id)
                .map_err(io_failure)?
                .ok_or_else(|| Failure::new(EX_NOINPUT, format!("no message {id} in the spool")))?;
            print_envelope(&message);
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
            "<>"
        } else {
            &envelope.from
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
            "queued" => r.address.clone(),
            status => format!("{} ({status})", r.address),
        })
        .collect();
    described.join(", ")
}

fn print_envelope(message: &QueuedMessage) {
    let envelope = &message.envelope;
    println!("id: {}", message.id);
    println!("received_at: {}", envelope.received_at);
    println!("from: <{}>", envelope.from);
    for recipient in &envelope.to {
        println!("to: <{recipient}>");
    }
    println!(
        "auth_user: {}",
        envelope
            .auth_user
            .as_deref()
            .unwrap_or("(none: trusted network)")
    );
    println!(
        "client: {} (EHLO {})",
        envelope.client_ip, envelope.client_helo
    );
    match &envelope.tls {
        Some(tls) => println!("tls: {} {}", tls.version, tls.cipher),
        None => println!("tls: none"),
    }
    println!("size: {}", message.size);
    println!();
}
