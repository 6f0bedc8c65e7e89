//! Command-line parsing (RFC 5321 §4.1). A line arrives without its CRLF; the verb is recognised
//! here, while MAIL and RCPT arguments are parsed only after the session has checked that the
//! command is allowed at this point (so a client without TLS learns about TLS first, not syntax).

use super::address::{self, Mailbox};
use super::dsn;
use super::reply::{self, Reply};
use super::session::RecipientDsn;

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
        match Verb::of_line(verb.as_bytes()) {
            Verb::Ehlo => client_name(argument, "EHLO <your-hostname>").map(Command::Ehlo),
            Verb::Helo => client_name(argument, "HELO <your-hostname>").map(Command::Helo),
            Verb::Mail => from_prefix(argument, "FROM:", "MAIL FROM:<address> [parameters]")
                .map(Command::Mail),
            Verb::Rcpt => {
                from_prefix(argument, "TO:", "RCPT TO:<address> [parameters]").map(Command::Rcpt)
            }
            Verb::Data => no_argument(Command::Data, "DATA").map_err(|_| reply::DATA_ARGUMENTS),
            Verb::Rset => no_argument(Command::Rset, "RSET"),
            Verb::Noop => Ok(Command::Noop),
            Verb::Quit => Ok(Command::Quit),
            Verb::Vrfy => required(argument, "VRFY <address>").map(|_| Command::Vrfy),
            Verb::Expn => Ok(Command::Expn),
            Verb::Help => Ok(Command::Help(
                (!argument.is_empty()).then(|| argument.to_string()),
            )),
            Verb::StartTls => {
                no_argument(Command::StartTls, "STARTTLS").map_err(|_| reply::STARTTLS_ARGUMENTS)
            }
            Verb::Auth => parse_auth(argument),
            Verb::Unknown => Err(reply::UNKNOWN_COMMAND),
        }
    }
}

/// A command's verb as the session saw it: what the log names (never the client's own bytes)
/// and what the per-connection counts are kept by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Vrfy,
    Expn,
    Help,
    Quit,
    /// Anything else, including a line too long or not text.
    Unknown,
}

impl Verb {
    /// Every verb, in the order the counts are logged.
    pub const ALL: [Verb; 14] = [
        Verb::Ehlo,
        Verb::Helo,
        Verb::StartTls,
        Verb::Auth,
        Verb::Mail,
        Verb::Rcpt,
        Verb::Data,
        Verb::Rset,
        Verb::Noop,
        Verb::Vrfy,
        Verb::Expn,
        Verb::Help,
        Verb::Quit,
        Verb::Unknown,
    ];

    /// The verb of a command line: its first word, in any case.
    pub fn of_line(line: &[u8]) -> Verb {
        let word = line.split(|&b| b == b' ').next().unwrap_or_default();
        Verb::ALL
            .into_iter()
            .find(|verb| {
                *verb != Verb::Unknown && word.eq_ignore_ascii_case(verb.name().as_bytes())
            })
            .unwrap_or(Verb::Unknown)
    }

    /// The upper-case name, as in `command=MAIL`.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Ehlo => "EHLO",
            Verb::Helo => "HELO",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::Quit => "QUIT",
            Verb::Unknown => "UNKNOWN",
        }
    }
}

/// How many commands of each verb a session received, for the disconnect line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandCounts([u32; Verb::ALL.len()]);

impl CommandCounts {
    pub fn record(&mut self, verb: Verb) {
        let slot = &mut self.0[verb as usize];
        *slot = slot.saturating_add(1);
    }

    pub fn get(&self, verb: Verb) -> u32 {
        self.0[verb as usize]
    }

    pub fn total(&self) -> u32 {
        self.0.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }
}

/// Postfix style: `ehlo=1 starttls=1 mail=1 commands=3`, verbs that never came left out.
impl std::fmt::Display for CommandCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for verb in Verb::ALL {
            let n = self.get(verb);
            if n > 0 {
                write!(f, "{}={n} ", verb.name().to_ascii_lowercase())?;
            }
        }
        write!(f, "commands={}", self.total())
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
/// An EHLO/HELO argument: a domain (RFC 5321 §4.1.2, ASCII only, so an IDN must come in its
/// A-label form per RFC 6531 §3.7.1) or an IPv4 / `IPv6:` address literal (§4.1.3). Underscores
/// are allowed in labels because Windows clients send their NetBIOS name (`DESKTOP_7Q`).
/// Anything else is refused with the reason, so nothing malformed reaches Received:.
fn client_name(argument: &str, usage: &'static str) -> Result<String, Reply> {
    let problem = if argument.is_empty() {
        None
    } else if let Some(literal) = argument.strip_prefix('[') {
        address_literal_problem(literal)
    } else {
        domain_problem(argument)
    };
    match (argument.is_empty(), problem) {
        (true, _) => Err(reply::syntax_error(usage)),
        (false, None) => Ok(argument.to_string()),
        (false, Some(reason)) => Err(reply::bad_client_name(reason)),
    }
}

/// Why `literal` (after its `[`) is not an IPv4 or `IPv6:` address literal, if it is not.
fn address_literal_problem(literal: &str) -> Option<&'static str> {
    let Some(inside) = literal.strip_suffix(']') else {
        return Some("an address literal ends with ]");
    };
    let valid = match inside.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inside[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inside.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    (!valid).then_some("an address literal is [IPv4] or [IPv6:address]")
}

/// Why `name` is not a domain, if it is not.
fn domain_problem(name: &str) -> Option<&'static str> {
    if !name.is_ascii() {
        return Some("write an internationalized domain name in its A-label (xn--) form");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let valid = name.len() <= 255 && name.split('.').all(label_ok);
    (!valid).then_some("a domain is letters, digits and hyphens in dot-separated labels")
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
    /// `AUTH=` was given (RFC 4954 §5); its value is not used, the session's login is recorded.
    pub auth: bool,
    /// RFC 3461 `RET=`, upper-cased: `FULL` or `HDRS`.
    pub ret: Option<String>,
    /// RFC 3461 `ENVID=`, xtext-decoded.
    pub envid: Option<String>,
}

impl MailFrom {
    /// The first parameter given that needs an extension of EHLO (RFC 5321 §4.1.1.1); `AUTH=`
    /// is not one: the session checks it against AUTH being offered (RFC 4954 §5).
    pub fn extension_parameter(&self) -> Option<&'static str> {
        [
            (self.declared_size.is_some(), "SIZE"),
            (self.body == Body::EightBitMime, "BODY"),
            (self.smtputf8, "SMTPUTF8"),
            (self.ret.is_some(), "RET"),
            (self.envid.is_some(), "ENVID"),
        ]
        .into_iter()
        .find_map(|(given, keyword)| given.then_some(keyword))
    }
}

/// The parsed argument of `RCPT TO:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub mailbox: Mailbox,
    /// `NOTIFY=` and `ORCPT=` (RFC 3461 §4.1, §4.2); both `None` when not given.
    pub dsn: RecipientDsn,
}

impl RcptTo {
    /// The first parameter given that needs an extension of EHLO.
    pub fn extension_parameter(&self) -> Option<&'static str> {
        match (&self.dsn.notify, &self.dsn.orcpt) {
            (Some(_), _) => Some("NOTIFY"),
            (None, Some(_)) => Some("ORCPT"),
            (None, None) => None,
        }
    }
}

/// One `keyword[=value]` parameter after the path, its keyword upper-cased.
struct Parameter<'a> {
    keyword: String,
    value: Option<&'a str>,
    /// As the client wrote it, for the reply to an unknown one.
    text: &'a str,
}

/// Hands each parameter after a path (RFC 5321 §4.1.2) to `handle`, in order, stopping at the
/// first refusal; a keyword given twice is refused with `repeated` as the usage.
fn each_parameter(
    params: &str,
    repeated: &'static str,
    mut handle: impl FnMut(&Parameter<'_>) -> Result<(), Reply>,
) -> Result<(), Reply> {
    let mut seen: Vec<String> = Vec::new();
    for text in params.split(' ').filter(|p| !p.is_empty()) {
        let (keyword, value) = match text.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (text, None),
        };
        let param = Parameter {
            keyword: keyword.to_ascii_uppercase(),
            value,
            text,
        };
        if seen.contains(&param.keyword) {
            return Err(reply::syntax_error(repeated));
        }
        handle(&param)?;
        seen.push(param.keyword);
    }
    Ok(())
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
    each_parameter(params, "each MAIL parameter at most once", |param| {
        mail_parameter(&mut mail, param)
    })?;
    Ok(mail)
}

fn mail_parameter(mail: &mut MailFrom, param: &Parameter<'_>) -> Result<(), Reply> {
    match (param.keyword.as_str(), param.value) {
        ("SIZE", value) => mail.declared_size = Some(parse_size(value)?),
        ("BODY", Some(value)) if value.eq_ignore_ascii_case("7BIT") => mail.body = Body::SevenBit,
        ("BODY", Some(value)) if value.eq_ignore_ascii_case("8BITMIME") => {
            mail.body = Body::EightBitMime
        }
        ("BODY", _) => return Err(reply::syntax_error("BODY=7BIT or BODY=8BITMIME")),
        ("SMTPUTF8", None) => mail.smtputf8 = true,
        // RFC 4954 §5: AUTH= on MAIL is allowed; this server records the login instead.
        ("AUTH", Some(_)) => mail.auth = true,
        ("RET", value) => mail.ret = Some(dsn::ret(value)?),
        ("ENVID", value) => mail.envid = Some(dsn::envid(value)?),
        _ => return Err(reply::unknown_parameter(param.text)),
    }
    Ok(())
}

/// `SIZE=<digits>` (RFC 1870 §3): no sign, no other characters.
fn parse_size(value: Option<&str>) -> Result<u64, Reply> {
    let usage = || reply::syntax_error("SIZE=<number of octets>");
    let digits = value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(usage)?;
    digits.parse().map_err(|_| usage())
}

pub fn parse_rcpt_to(argument: &str, hostname: &str) -> Result<RcptTo, Reply> {
    let (path, params) = address::split_path(argument).map_err(|e| reply::bad_recipient(e.0))?;
    let mailbox = recipient_mailbox(path, hostname)?;
    let mut requested = RecipientDsn::default();
    each_parameter(params, "each RCPT parameter at most once", |param| {
        match param.keyword.as_str() {
            "NOTIFY" => requested.notify = Some(dsn::notify(param.value)?),
            "ORCPT" => requested.orcpt = Some(dsn::orcpt(param.value)?),
            _ => return Err(reply::unknown_parameter(param.text)),
        }
        Ok(())
    })?;
    Ok(RcptTo {
        mailbox,
        dsn: requested,
    })
}

fn recipient_mailbox(path: &str, hostname: &str) -> Result<Mailbox, Reply> {
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
    fn the_verb_is_the_first_word_in_any_case_and_never_the_clients_bytes() {
        assert_eq!(Verb::of_line(b"mail FROM:<a@b.c>"), Verb::Mail);
        assert_eq!(Verb::of_line(b"StartTLS"), Verb::StartTls);
        assert_eq!(Verb::of_line(b"MAILX FROM:<a@b.c>"), Verb::Unknown);
        assert_eq!(Verb::of_line(b"\x16\x03\x01"), Verb::Unknown);
        assert_eq!(Verb::of_line(b""), Verb::Unknown);
        assert_eq!(Verb::of_line(b"UNKNOWN"), Verb::Unknown);
        let mut counts = CommandCounts::default();
        assert_eq!(counts.to_string(), "commands=0");
        counts.record(Verb::Rcpt);
        counts.record(Verb::Ehlo);
        counts.record(Verb::Rcpt);
        assert_eq!(counts.to_string(), "ehlo=1 rcpt=2 commands=3");
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
            "xn--bcher-kva.example",
        ] {
            assert_eq!(
                Command::parse(format!("EHLO {name}").as_bytes()),
                Ok(Command::Ehlo(name.into()))
            );
        }
        for (name, reason) in [
            (
                "evil (by mx.google.com)",
                "a domain is letters, digits and hyphens in dot-separated labels",
            ),
            (
                "a\x00b",
                "a domain is letters, digits and hyphens in dot-separated labels",
            ),
            (
                "x;y",
                "a domain is letters, digits and hyphens in dot-separated labels",
            ),
            (
                "a..example",
                "a domain is letters, digits and hyphens in dot-separated labels",
            ),
            (
                "-a.example",
                "a domain is letters, digits and hyphens in dot-separated labels",
            ),
            (
                "\x1b[2J",
                "a domain is letters, digits and hyphens in dot-separated labels",
            ),
            (
                "é.example",
                "write an internationalized domain name in its A-label (xn--) form",
            ),
            ("[", "an address literal ends with ]"),
            (
                "[999.1.1.1]",
                "an address literal is [IPv4] or [IPv6:address]",
            ),
            (
                "[IPv6:2001:db8::g]",
                "an address literal is [IPv4] or [IPv6:address]",
            ),
        ] {
            let reply = Command::parse(format!("HELO {name}").as_bytes()).unwrap_err();
            assert_eq!(
                reply.to_string(),
                format!("501 5.5.4 Invalid client name: {reason}"),
                "{name:?}"
            );
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
            code(&parse_mail_from("<a@b.c> FROB=1").unwrap_err()),
            (555, Some(Status(5, 5, 4)))
        );
    }

    /// The reply line a refused MAIL or RCPT argument gets.
    fn refusal<T: std::fmt::Debug>(result: Result<T, Reply>) -> String {
        result.unwrap_err().to_wire()
    }

    #[test]
    fn mail_dsn_parameters_are_stored_upper_cased_and_decoded() {
        let mail = parse_mail_from("<a@b.c> ret=hdrs EnvId=abc+2Bdef").unwrap();
        assert_eq!(mail.ret.as_deref(), Some("HDRS"));
        assert_eq!(mail.envid.as_deref(), Some("abc+def"));
        let mail = parse_mail_from("<> RET=FULL").unwrap();
        assert_eq!((mail.ret.as_deref(), mail.envid), (Some("FULL"), None));
        let plain = parse_mail_from("<a@b.c> SIZE=10").unwrap();
        assert_eq!((plain.ret, plain.envid), (None, None));
    }

    #[test]
    fn bad_mail_dsn_parameters_are_501_5_5_4_saying_what_to_send() {
        let bad_ret = "501 5.5.4 Syntax error: RET takes FULL or HDRS; send RET=FULL to get the whole message back in a bounce, RET=HDRS for its header only (RFC 3461 §4.3)\r\n";
        for argument in ["<a@b.c> RET=HEADERS", "<a@b.c> RET", "<a@b.c> RET="] {
            assert_eq!(refusal(parse_mail_from(argument)), bad_ret, "{argument}");
        }
        let bad_envid = "501 5.5.4 Syntax error: ENVID must be xtext of printable ASCII, with + written +2B and = written +3D (upper-case hex), e.g. ENVID=QQ314159 (RFC 3461 §4.4)\r\n";
        for argument in [
            "<a@b.c> ENVID=",
            "<a@b.c> ENVID",
            "<a@b.c> ENVID=a+2b",
            "<a@b.c> ENVID=a+2",
            "<a@b.c> ENVID=a+",
            "<a@b.c> ENVID=a=b",
            "<a@b.c> ENVID=a+20b",
            "<a@b.c> ENVID=a+0D+0Ab",
        ] {
            assert_eq!(refusal(parse_mail_from(argument)), bad_envid, "{argument}");
        }
        let long = format!("<a@b.c> ENVID={}", "x".repeat(101));
        assert_eq!(
            refusal(parse_mail_from(&long)),
            "501 5.5.4 Syntax error: ENVID is longer than 100 characters once decoded; send a shorter envelope identifier (RFC 3461 §4.4)\r\n"
        );
        let repeated = "501 5.5.4 Syntax error; usage: each MAIL parameter at most once\r\n";
        for argument in ["<a@b.c> RET=FULL RET=HDRS", "<a@b.c> ENVID=x envid=x"] {
            assert_eq!(refusal(parse_mail_from(argument)), repeated, "{argument}");
        }
    }

    #[test]
    fn rcpt_dsn_parameters_are_stored_upper_cased_and_decoded() {
        let rcpt = parse_rcpt_to(
            "<x@y.z> notify=success,Failure ORCPT=rfc822;orig+40example.test",
            "h",
        )
        .unwrap();
        assert_eq!(rcpt.mailbox.as_str(), "x@y.z");
        assert_eq!(rcpt.dsn.notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(rcpt.dsn.orcpt.as_deref(), Some("rfc822;orig@example.test"));
        let never = parse_rcpt_to("<x@y.z> NOTIFY=never", "h").unwrap();
        assert_eq!(never.dsn.notify.as_deref(), Some("NEVER"));
        assert_eq!(never.dsn.orcpt, None);
        let plain = parse_rcpt_to("<x@y.z>", "h").unwrap();
        assert_eq!(plain.dsn, RecipientDsn::default());
    }

    #[test]
    fn bad_rcpt_dsn_parameters_are_501_5_5_4_saying_what_to_send() {
        let cases = [
            (
                "NOTIFY=ALWAYS",
                "Syntax error: NOTIFY takes NEVER or a comma-separated list of SUCCESS, FAILURE and DELAY, e.g. NOTIFY=SUCCESS,FAILURE (RFC 3461 §4.1)",
            ),
            (
                "NOTIFY",
                "Syntax error: NOTIFY takes NEVER or a comma-separated list of SUCCESS, FAILURE and DELAY, e.g. NOTIFY=SUCCESS,FAILURE (RFC 3461 §4.1)",
            ),
            (
                "NOTIFY=SUCCESS,",
                "Syntax error: NOTIFY takes NEVER or a comma-separated list of SUCCESS, FAILURE and DELAY, e.g. NOTIFY=SUCCESS,FAILURE (RFC 3461 §4.1)",
            ),
            (
                "NOTIFY=NEVER,FAILURE",
                "Syntax error: NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY; send NEVER alone or a list without it (RFC 3461 §4.1)",
            ),
            (
                "NOTIFY=FAILURE,failure",
                "Syntax error: NOTIFY names a keyword twice; name each of SUCCESS, FAILURE and DELAY at most once (RFC 3461 §4.1)",
            ),
            (
                "ORCPT=alice@example.com",
                "Syntax error: ORCPT must be an address type, a semicolon and the address, e.g. ORCPT=rfc822;alice@example.com (RFC 3461 §4.2)",
            ),
            (
                "ORCPT=rfc822;",
                "Syntax error: ORCPT must be an address type, a semicolon and the address, e.g. ORCPT=rfc822;alice@example.com (RFC 3461 §4.2)",
            ),
            (
                "ORCPT=rfc822;a+4x@b.c",
                "Syntax error: the ORCPT address must be xtext of printable ASCII, with + written +2B, = written +3D and a space +20 (upper-case hex) (RFC 3461 §4.2)",
            ),
            (
                "NOTIFY=NEVER NOTIFY=NEVER",
                "Syntax error; usage: each RCPT parameter at most once",
            ),
            (
                "ORCPT=rfc822;a@b.c orcpt=rfc822;a@b.c",
                "Syntax error; usage: each RCPT parameter at most once",
            ),
        ];
        for (parameter, text) in cases {
            assert_eq!(
                refusal(parse_rcpt_to(&format!("<x@y.z> {parameter}"), "h")),
                format!("501 5.5.4 {text}\r\n"),
                "{parameter}"
            );
        }
        let long = format!("<x@y.z> ORCPT=rfc822;{}@b.c", "a".repeat(497));
        assert_eq!(
            refusal(parse_rcpt_to(&long, "h")),
            "501 5.5.4 Syntax error: the ORCPT address is longer than 500 characters once decoded; send the original recipient's address only (RFC 3461 §4.2)\r\n"
        );
        assert_eq!(
            refusal(parse_rcpt_to("<x@y.z> RET=FULL", "h")),
            "555 5.5.4 Parameter RET=FULL not recognized or not implemented\r\n"
        );
    }

    #[test]
    fn rcpt_arguments() {
        assert_eq!(
            parse_rcpt_to("<x@y.z>", "h.example")
                .unwrap()
                .mailbox
                .as_str(),
            "x@y.z"
        );
        assert_eq!(
            parse_rcpt_to("<Postmaster>", "h.example")
                .unwrap()
                .mailbox
                .as_str(),
            "postmaster@h.example"
        );
        assert_eq!(
            code(&parse_rcpt_to("<x@>", "h").unwrap_err()),
            (501, Some(Status(5, 1, 3)))
        );
        assert_eq!(
            code(&parse_rcpt_to("<x@y.z> FROB", "h").unwrap_err()),
            (555, Some(Status(5, 5, 4)))
        );
    }
}
