//! `Command::parse` on one command line, then `parse_mail_from` / `parse_rcpt_to` on the MAIL
//! and RCPT arguments (and on the whole input, when it could be an argument).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::smtp::address::{self, Mailbox};
use portcullis::smtp::command::{self, Command};
use portcullis::smtp::reply::Reply;
use portcullis_fuzz::check_reply;

const HOSTNAME: &str = "mx.example.test";

/// The longest line the session hands to `Command::parse` with the default limits: 512 octets
/// plus the MAIL parameter allowance (646), without the CRLF.
const LONGEST_LINE: usize = 512 + 646 - 2;

fuzz_target!(|data: &[u8]| {
    let line = &data[..data.len().min(LONGEST_LINE)];
    match Command::parse(line) {
        Err(reply) => check_refusal(&reply),
        Ok(command) => check_command(line, command),
    }
    // The argument parsers on their own, with anything the session could pass them: the text of
    // a command line after the verb, which never holds CR or LF.
    if let Ok(text) = std::str::from_utf8(line)
        && !text.contains(['\r', '\n'])
    {
        check_mail(text);
        check_rcpt(text);
    }
});

fn check_refusal(reply: &Reply) {
    check_reply(reply);
    assert!(
        (500..=599).contains(&reply.code()),
        "a syntax refusal must be permanent: {reply:?}"
    );
}

fn check_command(line: &[u8], command: Command) {
    let text = std::str::from_utf8(line).expect("a parsed command is UTF-8");
    assert!(
        !text.contains(['\r', '\n']),
        "a command with CR or LF was accepted"
    );
    match command {
        Command::Ehlo(name) | Command::Helo(name) => {
            assert!(
                !name.is_empty() && name.len() <= 255,
                "client name {name:?}"
            );
            assert!(
                name.chars()
                    .all(|c| c.is_alphanumeric() || "-._[]:".contains(c)),
                "client name {name:?} would go into Received: as is"
            );
        }
        Command::Mail(argument) => check_mail(&argument),
        Command::Rcpt(argument) => check_rcpt(&argument),
        Command::Auth {
            mechanism,
            initial_response,
        } => {
            assert!(!mechanism.is_empty() && !mechanism.contains(' '));
            assert_eq!(mechanism, mechanism.to_ascii_uppercase());
            if let Some(response) = initial_response {
                assert!(!response.is_empty() && !response.contains(' '));
            }
        }
        Command::Help(Some(topic)) => assert!(!topic.is_empty()),
        Command::Help(None)
        | Command::Data
        | Command::Rset
        | Command::Noop
        | Command::Quit
        | Command::Vrfy
        | Command::Expn
        | Command::StartTls => {}
    }
}

fn check_mail(argument: &str) {
    match command::parse_mail_from(argument) {
        Ok(mail) => {
            if let Some(sender) = &mail.sender {
                check_mailbox(sender);
            }
        }
        Err(reply) => check_refusal(&reply),
    }
}

fn check_rcpt(argument: &str) {
    match command::parse_rcpt_to(argument, HOSTNAME) {
        Ok(recipient) => check_mailbox(&recipient.mailbox),
        Err(reply) => check_refusal(&reply),
    }
}

/// A parsed mailbox is `local@domain` within the RFC 5321 lengths, and parsing it again gives
/// the same mailbox (the source route, if any, is gone).
fn check_mailbox(mailbox: &Mailbox) {
    let text = mailbox.as_str();
    assert_eq!(
        text,
        format!("{}@{}", mailbox.local_part(), mailbox.domain())
    );
    assert!(text.len() <= 254, "mailbox of {} octets", text.len());
    assert!(mailbox.local_part().len() <= 64);
    assert!(!mailbox.domain().is_empty() && mailbox.domain().len() <= 255);
    assert!(!text.contains(['\r', '\n', '\0']), "{text:?}");
    assert_eq!(mailbox.is_ascii(), text.is_ascii());
    assert_eq!(
        address::parse_mailbox(text).as_ref(),
        Ok(mailbox),
        "parsing {text:?} again differs"
    );
}
