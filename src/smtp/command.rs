//! Command-line parsing (RFC 5321 §4.1). A line arrives without its CRLF; the verb is recognised
//! here, while MAIL and RCPT arguments are parsed only after the session has checked that the
//! command is allowed at this point (so a client without TLS learns about TLS first, not syntax).

use super::address::{self, Mailbox};
use super::reply::{self, Reply};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(String),
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help(Option<String>),
    StartTls,
    Auth {
        mechanism: String,
        initial_response: Option<String>,
    },
}

impl Command {
    pub fn parse(line: &[u8]) -> Result<Command, Reply> {
        if line.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Err(reply::BARE_LINE_ENDING_IN_COMMAND);
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| reply::syntax_error("commands must be ASCII or UTF-8"))?;
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb, argument.trim_matches(' ')),
            None => (line, ""),
        };
        let no_argument = |command: Command, usage: &'static str| {
            if argument.is_empty() {
                Ok(command)
            } else {
                Err(reply::syntax_error(usage))
            }
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => client_name(argument, "EHLO <your-hostname>").map(Command::Ehlo),
            "HELO" => client_name(argument, "HELO <your-hostname>").map(Command::Helo),
            "MAIL" => from_prefix(argument, "FROM:", "MAIL FROM:<address> [parameters]")
                .map(Command::Mail),
            "RCPT" => from_prefix(argument, "TO:", "RCPT TO:<address>").map(Command::Rcpt),
            "DATA" => no_argument(Command::Data, "DATA").map_err(|_| reply::DATA_ARGUMENTS),
            "RSET" => no_argument(Command::Rset, "RSET"),
            "NOOP" => Ok(Command::Noop),
            "QUIT" => Ok(Command::Quit),
            "VRFY" => required(argument, "VRFY <address>").map(|_| Command::Vrfy),
            "EXPN" => Ok(Command::Expn),
            "HELP" => Ok(Command::Help(
                (!argument.is_empty()).then(|| argument.to_string()),
            )),
            "STARTTLS" => {
                no_argument(Command::StartTls, "STARTTLS").map_err(|_| reply::STARTTLS_ARGUMENTS)
            }
            "AUTH" => parse_auth(argument),
            _ => Err(reply::UNKNOWN_COMMAND),
        }
    }
}

fn required(argument: &str, usage: &'static str) -> Result<String, Reply> {
    if argument.is_empty() {
        Err(reply::syntax_error(usage))
    } else {
        Ok(argument.to_string())
    }
}

/// The name a client gives in EHLO/HELO: a host name or an address literal (RFC 5321
/// §4.1.1.1). Underscores and unqualified names are tolerated because real clients send them;
/// anything else (spaces, parentheses, control characters) is refused, since the name goes
/// into the Received: header.
fn client_name(argument: &str, usage: &'static str) -> Result<String, Reply> {
    let plausible = !argument.is_empty()
        && argument.len() <= 255
        && argument
            .chars()
            .all(|c| c.is_alphanumeric() || "-._[]:".contains(c));
    if plausible {
        Ok(argument.to_string())
    } else {
        Err(reply::syntax_error(usage))
    }
}

fn from_prefix(argument: &str, prefix: &str, usage: &'static str) -> Result<String, Reply> {
    match argument.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => {
            Ok(argument[prefix.len()..].trim_start_matches(' ').to_string())
        }
        _ => Err(reply::syntax_error(usage)),
    }
}

fn parse_auth(argument: &str) -> Result<Command, Reply> {
    let mut words = argument.split(' ').filter(|word| !word.is_empty());
    let usage = "AUTH <mechanism> [initial-response]";
    let mechanism = words.next().ok_or_else(|| reply::syntax_error(usage))?;
    let initial_response = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(reply::syntax_error(usage));
    }
    Ok(Command::Auth {
        mechanism: mechanism.to_ascii_uppercase(),
        initial_response,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// The parsed argument of `MAIL FROM:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// `None` is the null reverse-path `<>`.
    pub sender: Option<Mailbox>,
    pub declared_size: Option<u64>,
    pub body: Body,
    pub smtputf8: bool,
}

pub fn parse_mail_from(argument: &str) -> Result<MailFrom, Reply> {
    let (path, params) = address::split_path(argument).map_err(|e| reply::bad_sender(e.0))?;
    let sender = if path.is_empty() {
        None
    } else {
        Some(address::parse_mailbox(path).map_err(|e| reply::bad_sender(e.0))?)
    };
    let mut mail = MailFrom {
        sender,
        ..MailFrom::default()
    };
    let mut seen = Vec::new();
    for param in params.split(' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match param.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (param, None),
        };
        let keyword = keyword.to_ascii_uppercase();
        if seen.contains(&keyword) {
            return Err(reply::syntax_error("each MAIL parameter at most once"));
        }
        match (keyword.as_str(), value) {
            ("SIZE", value) => mail.declared_size = Some(parse_size(value)?),
            ("BODY", Some(value)) if value.eq_ignore_ascii_case("7BIT") => {
                mail.body = Body::SevenBit
            }
            ("BODY", Some(value)) if value.eq_ignore_ascii_case("8BITMIME") => {
                mail.body = Body::EightBitMime
            }
            ("BODY", _) => return Err(reply::syntax_error("BODY=7BIT or BODY=8BITMIME")),
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            // RFC 4954 §5: AUTH= on MAIL is allowed; this server records the login instead.
            ("AUTH", Some(_)) => {}
            _ => return Err(reply::unknown_parameter(param)),
        }
        seen.push(keyword);
    }
    Ok(mail)
}

/// `SIZE=<digits>` (RFC 1870 §3): no sign, no other characters.
fn parse_size(value: Option<&str>) -> Result<u64, Reply> {
    let usage = || reply::syntax_error("SIZE=<number of octets>");
    let digits = value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(usage)?;
    digits.parse().map_err(|_| usage())
}

pub fn parse_rcpt_to(argument: &str, hostname: &str) -> Result<Mailbox, Reply> {
    let (path, params) = address::split_path(argument).map_err(|e| reply::bad_recipient(e.0))?;
    if let Some(param) = params.split(' ').find(|p| !p.is_empty()) {
        return Err(reply::unknown_parameter(param));
    }
    // RFC 5321 §4.5.1: <Postmaster> without a domain must be accepted; it means this host's.
    if path.eq_ignore_ascii_case("postmaster") {
        let qualified = format!("postmaster@{hostname}");
        return address::parse_mailbox(&qualified).map_err(|e| reply::bad_recipient(e.0));
    }
    address::parse_mailbox(path).map_err(|e| reply::bad_recipient(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::Status;

    fn code(reply: &Reply) -> (u16, Option<Status>) {
        (reply.code(), reply.status())
    }

    #[test]
    fn parses_verbs_case_insensitively() {
        assert_eq!(
            Command::parse(b"ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            Command::parse(b"Mail From:<a@b.c>"),
            Ok(Command::Mail("<a@b.c>".into()))
        );
        assert_eq!(
            Command::parse(b"RCPT TO: <a@b.c>"),
            Ok(Command::Rcpt("<a@b.c>".into()))
        );
        assert_eq!(Command::parse(b"quit"), Ok(Command::Quit));
        assert_eq!(
            Command::parse(b"HELP mail"),
            Ok(Command::Help(Some("mail".into())))
        );
        assert_eq!(
            Command::parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: Some("AGEAYg==".into())
            })
        );
    }

    #[test]
    fn client_names_must_be_host_names_or_literals() {
        for name in [
            "client.example",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "DESKTOP_7Q",
            "localhost",
            "bücher.example",
        ] {
            assert_eq!(
                Command::parse(format!("EHLO {name}").as_bytes()),
                Ok(Command::Ehlo(name.into()))
            );
        }
        for name in ["evil (by mx.google.com)", "a\x00b", "x;y", "\x1b[2J"] {
            let reply = Command::parse(format!("HELO {name}").as_bytes()).unwrap_err();
            assert_eq!(code(&reply), (501, Some(Status(5, 5, 4))), "{name:?}");
        }
    }

    #[test]
    fn unknown_command_is_500_5_5_2() {
        assert_eq!(
            code(&Command::parse(b"FROB").unwrap_err()),
            (500, Some(Status(5, 5, 2)))
        );
    }

    #[test]
    fn syntax_errors_are_501_5_5_4() {
        for line in [
            &b"EHLO"[..],
            b"HELO",
            b"MAIL TO:<a@b.c>",
            b"RCPT FROM:<a@b.c>",
            b"DATA now",
            b"RSET x",
            b"AUTH",
            b"AUTH PLAIN a b",
            b"VRFY",
        ] {
            let reply = Command::parse(line).unwrap_err();
            assert_eq!(
                code(&reply),
                (501, Some(Status(5, 5, 4))),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn starttls_with_arguments_is_501_5_5_4() {
        assert_eq!(
            Command::parse(b"STARTTLS now").unwrap_err(),
            reply::STARTTLS_ARGUMENTS
        );
        assert_eq!(
            code(&reply::STARTTLS_ARGUMENTS),
            (501, Some(Status(5, 5, 4)))
        );
    }

    #[test]
    fn bare_line_endings_inside_a_command_are_refused() {
        let reply = Command::parse(b"MAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>").unwrap_err();
        assert_eq!(code(&reply), (500, Some(Status(5, 5, 2))));
    }

    #[test]
    fn mail_parameters() {
        let mail = parse_mail_from("<a@b.c> SIZE=1000 BODY=8BITMIME SMTPUTF8 AUTH=<>").unwrap();
        assert_eq!(mail.sender.unwrap().as_str(), "a@b.c");
        assert_eq!(mail.declared_size, Some(1000));
        assert_eq!(mail.body, Body::EightBitMime);
        assert!(mail.smtputf8);
        assert_eq!(parse_mail_from("<>").unwrap().sender, None);
    }

    #[test]
    fn bad_mail_arguments() {
        assert_eq!(
            code(&parse_mail_from("<not an address>").unwrap_err()),
            (501, Some(Status(5, 1, 7)))
        );
        assert_eq!(
            code(&parse_mail_from("a@b.c").unwrap_err()),
            (501, Some(Status(5, 1, 7)))
        );
        assert_eq!(
            code(&parse_mail_from("<a@b.c> SIZE=big").unwrap_err()),
            (501, Some(Status(5, 5, 4)))
        );
        assert_eq!(
            code(&parse_mail_from("<a@b.c> RET=FULL").unwrap_err()),
            (555, Some(Status(5, 5, 4)))
        );
    }

    #[test]
    fn rcpt_arguments() {
        assert_eq!(
            parse_rcpt_to("<x@y.z>", "h.example").unwrap().as_str(),
            "x@y.z"
        );
        assert_eq!(
            parse_rcpt_to("<Postmaster>", "h.example").unwrap().as_str(),
            "postmaster@h.example"
        );
        assert_eq!(
            code(&parse_rcpt_to("<x@>", "h").unwrap_err()),
            (501, Some(Status(5, 1, 3)))
        );
        assert_eq!(
            code(&parse_rcpt_to("<x@y.z> NOTIFY=NEVER", "h").unwrap_err()),
            (555, Some(Status(5, 5, 4)))
        );
    }
}
