//! `portcullis accounts add|list|passwd|remove`.

use std::io::{BufRead, IsTerminal};

use clap::Subcommand;

use super::{EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL, Failure};
use crate::auth::{FileAccountStore, StoreError, canonical_username, password};
use crate::config::Config;
use crate::smtp::address;
use crate::timefmt;

#[derive(Subcommand)]
pub enum Command {
    /// Create an account; without --password-stdin a strong password is generated and shown once
    Add {
        /// The full email address, which is also the login name
        email: String,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts
    List,
    /// Set a new password; without --password-stdin one is generated and shown once
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account
    Remove { email: String },
}

pub fn run(command: Command, config: &Config) -> Result<(), Failure> {
    let store = FileAccountStore::new(&config.data_dir);
    match command {
        Command::Add {
            email,
            password_stdin,
        } => {
            let email = login_name(&email)?;
            let (password, generated) = obtain_password(password_stdin)?;
            store.add(&email, hash(&password)?).map_err(store_failure)?;
            println!("Added {email}.");
            show_generated(&email, &password, generated);
            println!(
                "Clients log in with user name {email} after STARTTLS (port 587 style) or on implicit TLS (port 465 style)."
            );
            Ok(())
        }
        Command::Passwd {
            email,
            password_stdin,
        } => {
            let email = login_name(&email)?;
            let (password, generated) = obtain_password(password_stdin)?;
            store
                .set_password(&email, hash(&password)?)
                .map_err(store_failure)?;
            println!("Changed the password of {email}.");
            show_generated(&email, &password, generated);
            Ok(())
        }
        Command::Remove { email } => {
            let email = login_name(&email)?;
            store.remove(&email).map_err(store_failure)?;
            println!("Removed {email}.");
            Ok(())
        }
        Command::List => {
            for account in store.accounts().map_err(store_failure)? {
                let created =
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(account.created);
                println!("{}\tcreated {}", account.address, timefmt::rfc3339(created));
            }
            Ok(())
        }
    }
}

/// Accounts are named by a valid email address, matched case-insensitively.
fn login_name(email: &str) -> Result<String, Failure> {
    address::parse_mailbox(email)
        .map(|mailbox| canonical_username(mailbox.as_str()))
        .map_err(|e| {
            Failure::new(
                EX_DATAERR,
                format!("{email:?} is not a valid email address: {}", e.0),
            )
        })
}

fn obtain_password(from_stdin: bool) -> Result<(String, bool), Failure> {
    if !from_stdin {
        return password::generate()
            .map(|p| (p, true))
            .map_err(|e| Failure::new(EX_SOFTWARE, e));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(EX_IOERR, format!("cannot read the password: {e}")))?;
    // Only the line ending is removed; other whitespace may be part of the password, but it is
    // the commonest cause of 535, so say so.
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password).to_string();
    if password.is_empty() {
        return Err(Failure::new(
            EX_DATAERR,
            "the password on standard input is empty",
        ));
    }
    if password.trim() != password {
        eprintln!(
            "warning: the password starts or ends with whitespace; clients must send it exactly"
        );
    }
    Ok((password, false))
}

fn hash(password: &str) -> Result<String, Failure> {
    password::hash(password)
        .map_err(|e| Failure::new(EX_SOFTWARE, format!("cannot hash the password: {e}")))
}

fn show_generated(email: &str, password: &str, generated: bool) {
    if !generated {
        return;
    }
    println!("Password for {email}: {password}");
    if std::io::stdout().is_terminal() {
        println!("It is shown only this once; store it now.");
    }
}

fn store_failure(error: StoreError) -> Failure {
    let status = match &error {
        StoreError::Exists(_) => EX_CANTCREAT,
        StoreError::NoSuchAccount(_) => EX_NOUSER,
        StoreError::Io(_) => EX_TEMPFAIL,
        StoreError::Corrupt(_) => EX_DATAERR,
    };
    Failure::new(status, error.to_string())
}
