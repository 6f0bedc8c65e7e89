//! SMTP replies: a basic code (RFC 5321 §4.2), an optional enhanced status code (RFC 3463 / 2034)
//! and text. Every reply Portcullis sends is built by one of the named constructors below, so the
//! complete catalogue of what the server can say lives in this file.

use std::borrow::Cow;
use std::fmt;

use crate::invisible::invisible;

/// An enhanced status code `class.subject.detail` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8, pub u16, pub u16);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One reply. Multi-line text is separated by `\n`; each line goes out with the code (and the
/// enhanced code, RFC 2034 §3) in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    status: Option<Status>,
    text: Cow<'static, str>,
}

impl Reply {
    const fn fixed(code: u16, status: Status, text: &'static str) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: Cow::Borrowed(text),
        }
    }

    fn owned(code: u16, status: Option<Status>, text: String) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Owned(text),
        }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn status(&self) -> Option<Status> {
        self.status
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends the wire form (with CRLF line endings) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let separator = if lines.peek().is_some() { '-' } else { ' ' };
            // Writing into a Vec cannot fail.
            let _ = match self.status {
                Some(status) => write!(out, "{}{separator}{status} {line}\r\n", self.code),
                None if line.is_empty() => write!(out, "{}{separator}\r\n", self.code),
                None => write!(out, "{}{separator}{line}\r\n", self.code),
            };
        }
    }

    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} {} {}", self.code, status, self.text),
            None => write!(f, "{} {}", self.code, self.text),
        }
    }
}

// ---- Connection-level -------------------------------------------------------------------------

pub fn greeting(hostname: &str) -> Reply {
    // RFC 2034 §3: no enhanced code on the greeting.
    Reply::owned(220, None, format!("{hostname} ESMTP Portcullis ready"))
}

pub fn closing(hostname: &str) -> Reply {
    Reply::owned(
        221,
        Some(Status(2, 0, 0)),
        format!("{hostname} closing connection, goodbye"),
    )
}

pub const TOO_MANY_ERRORS: Reply = Reply::fixed(
    421,
    Status(4, 7, 0),
    "Too many errors in this session; closing. Check the client's settings (TLS mode, user name, password) before reconnecting",
);
pub const IDLE_TIMEOUT: Reply = Reply::fixed(
    421,
    Status(4, 4, 2),
    "Timeout: no command received in time; closing. Reconnect to continue",
);
pub const SHUTTING_DOWN: Reply = Reply::fixed(
    421,
    Status(4, 3, 2),
    "Server is shutting down; nothing you sent without a 250 reply was accepted. Retry in a few minutes",
);
pub const TOO_MANY_CONNECTIONS: Reply = Reply::fixed(
    421,
    Status(4, 7, 0),
    "Too many connections; try again in a few minutes or reuse an open connection",
);
pub const TOO_MANY_CONNECTIONS_FROM_IP: Reply = Reply::fixed(
    421,
    Status(4, 7, 0),
    "Too many connections from your address; close idle connections or send more messages per connection",
);

// ---- Generic command handling ------------------------------------------------------------------

pub const OK: Reply = Reply::fixed(250, Status(2, 0, 0), "OK");
pub const RESET: Reply = Reply::fixed(250, Status(2, 0, 0), "OK, transaction reset");
pub const UNKNOWN_COMMAND: Reply = Reply::fixed(
    500,
    Status(5, 5, 2),
    "Command not recognized; send HELP for the list of commands",
);
pub fn line_too_long(limit: usize) -> Reply {
    Reply::owned(
        500,
        Some(Status(5, 5, 6)),
        format!(
            "Command line too long; this server accepts {limit} octets including CRLF (RFC 5321 §4.5.3.1.4)"
        ),
    )
}
pub const AUTH_LINE_TOO_LONG: Reply = Reply::fixed(
    500,
    Status(5, 5, 6),
    "Authentication exchange line too long; the limit is 12288 octets (RFC 4954 §4)",
);
pub const BARE_LINE_ENDING_IN_COMMAND: Reply = Reply::fixed(
    500,
    Status(5, 5, 2),
    "Bare CR or LF in command; SMTP lines must end with CRLF. Fix the client's line endings",
);

pub fn syntax_error(usage: &'static str) -> Reply {
    Reply::owned(
        501,
        Some(Status(5, 5, 4)),
        format!("Syntax error; usage: {usage}"),
    )
}

/// An EHLO/HELO argument that is neither a domain nor an address literal; `reason` is ASCII
/// text of ours, never the client's input.
pub fn bad_client_name(reason: &'static str) -> Reply {
    Reply::owned(
        501,
        Some(Status(5, 5, 4)),
        format!("Invalid client name: {reason}"),
    )
}

pub const EHLO_FIRST: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Bad sequence of commands: send EHLO first",
);
pub const EHLO_NOT_HELO: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Bad sequence of commands: AUTH needs the session to start with EHLO, not HELO",
);

pub fn parameter_needs_ehlo(parameter: &str) -> Reply {
    Reply::owned(
        555,
        Some(Status(5, 5, 4)),
        format!("Parameter {parameter} needs the session to start with EHLO, not HELO"),
    )
}
pub const AUTH_PARAMETER_NOT_OFFERED: Reply = Reply::fixed(
    555,
    Status(5, 5, 4),
    "MAIL parameter AUTH= is not allowed: this session was not offered AUTH (it needs EHLO after TLS)",
);
pub const EXPN_DISABLED: Reply = Reply::fixed(
    502,
    Status(5, 5, 1),
    "EXPN is not available: this server does not expand mailing lists",
);
pub const VRFY_CANNOT_VERIFY: Reply = Reply::fixed(
    252,
    Status(2, 5, 0),
    "Cannot VRFY users; send the message and this server will attempt delivery",
);

// ---- TLS (RFC 3207) ----------------------------------------------------------------------------

/// The refusal of mail or credentials in clear, naming the ports this server really listens on
/// (a client configured for "587" on a server that listens on 2587 needs the right number).
pub fn must_starttls(ports: Ports) -> Reply {
    let mut text = format!(
        "Must issue a STARTTLS command first. Set the client to use STARTTLS on this port ({})",
        ports.own
    );
    if let Some(implicit) = ports.implicit_tls {
        text.push_str(&format!(", or implicit TLS (SSL/TLS) on port {implicit}"));
    }
    Reply::owned(530, Some(Status(5, 7, 0)), text)
}

/// The ports a session's replies name: its own listener's and the server's implicit-TLS one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub own: u16,
    pub implicit_tls: Option<u16>,
}
pub const READY_FOR_TLS: Reply = Reply::fixed(
    220,
    Status(2, 0, 0),
    "Ready to start TLS; send the TLS ClientHello now",
);
pub const STARTTLS_ARGUMENTS: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: STARTTLS takes no arguments",
);
pub const ALREADY_TLS: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "TLS is already active on this connection; continue with EHLO",
);
pub const TLS_UNAVAILABLE: Reply = Reply::fixed(
    454,
    Status(4, 7, 0),
    "TLS not available on this listener; ask the administrator, or connect to the implicit-TLS port",
);

// ---- AUTH (RFC 4954) ---------------------------------------------------------------------------

pub const AUTH_REQUIRED: Reply = Reply::fixed(
    530,
    Status(5, 7, 0),
    "Authentication required. Set the client to log in (SMTP AUTH) with your full email address and password",
);
pub const AUTH_SUCCEEDED: Reply = Reply::fixed(235, Status(2, 7, 0), "Authentication successful");
pub const AUTH_FAILED: Reply = Reply::fixed(
    535,
    Status(5, 7, 8),
    "Authentication credentials invalid. Check the user name (your full email address) and the password; a pasted password may carry a stray space or newline",
);
pub const AUTH_UNAVAILABLE: Reply = Reply::fixed(
    454,
    Status(4, 7, 0),
    "Temporary authentication failure: the server cannot check credentials right now. Retry later; your password was not rejected",
);
/// A (user name, client network) pair locked after too many failed logins; `until` is an
/// RFC 3339 time. The same for unknown user names, so it tells nothing about which exist.
pub fn logins_locked(until: &str) -> Reply {
    Reply::owned(
        454,
        Some(Status(4, 7, 0)),
        format!(
            "Too many failed logins for this account from your network; try again after {until}"
        ),
    )
}
/// A client network that failed logins for many user names: every login from it is refused.
pub const LOGINS_REFUSED_FROM_NETWORK: Reply = Reply::fixed(
    421,
    Status(4, 7, 0),
    "Too many failed logins from your network; closing",
);
/// The password was right, but the account's domain is served by another host name than the
/// one the client connected to (`[policy] require_host_match`). Not 535 5.7.8: the credentials
/// are valid, and "credentials invalid" would send the user hunting for a wrong password.
/// RFC 4954 has no AUTH reply for a refusal by policy; 554 is RFC 5321's generic permanent
/// failure, and 5.7.1 is "not authorized" (RFC 3463).
pub fn served_elsewhere(user: &str, serving: &str, asked: &str) -> Reply {
    let (user, serving, asked) = (echo(user, 120), echo(serving, 100), echo(asked, 100));
    Reply::owned(
        554,
        Some(Status(5, 7, 1)),
        format!("Account <{user}> is served by {serving}, not {asked}: connect to {serving}"),
    )
}
pub const AUTH_MECHANISM_UNKNOWN: Reply = Reply::fixed(
    504,
    Status(5, 5, 4),
    "Unrecognized authentication mechanism; this server offers PLAIN and LOGIN",
);
pub const AUTH_BAD_BASE64: Reply = Reply::fixed(
    501,
    Status(5, 5, 2),
    "Cannot decode the authentication response; it must be valid base64 (RFC 4954)",
);
/// Valid base64 (or `=`, empty) that is not a PLAIN message.
pub const AUTH_BAD_PLAIN: Reply = Reply::fixed(
    501,
    Status(5, 5, 2),
    "The PLAIN response decodes, but is not authzid NUL user NUL password in UTF-8 (RFC 4616)",
);
pub const AUTH_CANCELLED: Reply = Reply::fixed(
    501,
    Status(5, 7, 0),
    "Authentication cancelled by the client",
);
pub const AUTH_ALREADY_DONE: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Already authenticated; AUTH may be used once per session",
);
pub const AUTH_IN_TRANSACTION: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "AUTH is not permitted during a mail transaction; send RSET first",
);

/// A server challenge (`334 <base64>`); RFC 4954 gives it no enhanced code.
pub fn auth_challenge(base64: &'static str) -> Reply {
    Reply {
        code: 334,
        status: None,
        text: Cow::Borrowed(base64),
    }
}

// ---- Mail transaction (RFC 5321 §3.3) ---------------------------------------------------------

pub fn sender_ok(sender: &str) -> Reply {
    Reply::owned(250, Some(Status(2, 1, 0)), format!("Sender <{sender}> OK"))
}

pub fn recipient_ok(recipient: &str) -> Reply {
    Reply::owned(
        250,
        Some(Status(2, 1, 5)),
        format!("Recipient <{recipient}> OK"),
    )
}

pub fn sender_not_owned(sender: &str, user: &str) -> Reply {
    let (sender, user) = (echo(sender, 120), echo(user, 120));
    Reply::owned(
        553,
        Some(Status(5, 7, 1)),
        format!(
            "Sender address <{sender}> not owned by user <{user}>; send from your own address or ask the administrator to add it for you"
        ),
    )
}

/// RFC 6409 §8.1 lets a submission server check the message itself: the From: header, like
/// the envelope sender, must name an address of the user. 550 rather than 553, because the
/// refusal is about the message after DATA, not a mailbox name in a command.
pub fn header_from_not_owned(address: &str, user: &str) -> Reply {
    let (address, user) = (echo(address, 120), echo(user, 120));
    Reply::owned(
        550,
        Some(Status(5, 7, 1)),
        format!(
            "From: header address <{address}> not owned by user <{user}>; put your own address in From: or ask the administrator to add it for you"
        ),
    )
}

pub const HEADER_FROM_UNREADABLE: Reply = Reply::fixed(
    550,
    Status(5, 7, 1),
    "The From: header field cannot be read, so its author cannot be checked; correct the message's From: header",
);

/// The account's messages-per-hour quota is used up. Temporary: the same message will go
/// through once the window resets.
pub fn message_quota_reached(user: &str, limit: u64, resets: &str) -> Reply {
    let user = echo(user, 120);
    Reply::owned(
        451,
        Some(Status(4, 7, 1)),
        format!(
            "Account <{user}> reached its quota of {limit} messages per hour; it resets at {resets}, send the rest then"
        ),
    )
}

/// The account's recipients-per-day quota would be exceeded by this recipient.
pub fn recipient_quota_reached(user: &str, limit: u64, resets: &str) -> Reply {
    let user = echo(user, 120);
    Reply::owned(
        451,
        Some(Status(4, 7, 1)),
        format!(
            "Account <{user}> reached its quota of {limit} recipients per day; it resets at {resets}, send to the rest then"
        ),
    )
}

/// Client text quoted in a reply: control and invisible characters (see [`invisible`]) become
/// `?` and it is cut to `limit` characters, so a reply stays printable, shows what is there and
/// stays within RFC 5321's 512 octets a line.
fn echo(text: &str, limit: usize) -> String {
    quote(text, limit, |c| c.is_control() || invisible(c).is_some())
}

/// Like [`echo`], for text that is not an address (a parameter, a HELP topic): nothing but
/// printable ASCII belongs there, so anything else becomes `?`.
fn echo_ascii(text: &str, limit: usize) -> String {
    quote(text, limit, |c| !(' '..='~').contains(&c))
}

fn quote(text: &str, limit: usize, hidden: impl Fn(char) -> bool) -> String {
    let mut echoed: String = text
        .chars()
        .take(limit)
        .map(|c| if hidden(c) { '?' } else { c })
        .collect();
    if text.chars().count() > limit {
        echoed.push_str("...");
    }
    echoed
}

pub const SENDER_CHECK_UNAVAILABLE: Reply = Reply::fixed(
    451,
    Status(4, 3, 0),
    "Cannot check the sender address right now; retry later",
);

pub const NESTED_MAIL: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Bad sequence of commands: a transaction is already open; finish it with DATA or send RSET",
);
pub const RCPT_BEFORE_MAIL: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Bad sequence of commands: send MAIL FROM before RCPT TO",
);
pub const DATA_BEFORE_MAIL: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Bad sequence of commands: send MAIL FROM and RCPT TO before DATA",
);
pub const DATA_WITHOUT_RECIPIENTS: Reply = Reply::fixed(
    503,
    Status(5, 5, 1),
    "Bad sequence of commands: no valid recipients yet; send RCPT TO before DATA",
);
pub const DATA_ARGUMENTS: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: DATA takes no arguments",
);
pub const START_DATA: Reply = Reply {
    code: 354,
    status: None,
    text: Cow::Borrowed("Start mail input; end with <CRLF>.<CRLF>"),
};

pub fn bad_sender(reason: &str) -> Reply {
    Reply::owned(
        501,
        Some(Status(5, 1, 7)),
        format!("Bad sender address syntax: {reason}. Use MAIL FROM:<you@example.com>"),
    )
}

pub fn bad_recipient(reason: &str) -> Reply {
    Reply::owned(
        501,
        Some(Status(5, 1, 3)),
        format!("Bad recipient address syntax: {reason}. Use RCPT TO:<someone@example.com>"),
    )
}

pub fn unknown_parameter(parameter: &str) -> Reply {
    Reply::owned(
        555,
        Some(Status(5, 5, 4)),
        format!(
            "Parameter {} not recognized or not implemented",
            echo_ascii(parameter, 64)
        ),
    )
}

// ---- Delivery status notification parameters (RFC 3461) ---------------------------------------
//
// Malformed values of RET, ENVID (MAIL) and NOTIFY, ORCPT (RCPT): 501 5.5.4, like the other bad
// parameter values; no client text is echoed.

pub const BAD_RET: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: RET takes FULL or HDRS; send RET=FULL to get the whole message back in a bounce, RET=HDRS for its header only (RFC 3461 §4.3)",
);
pub const BAD_ENVID: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: ENVID must be xtext of printable ASCII, with + written +2B and = written +3D (upper-case hex), e.g. ENVID=QQ314159 (RFC 3461 §4.4)",
);
pub const ENVID_TOO_LONG: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: ENVID is longer than 100 characters once decoded; send a shorter envelope identifier (RFC 3461 §4.4)",
);
pub const BAD_NOTIFY: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: NOTIFY takes NEVER or a comma-separated list of SUCCESS, FAILURE and DELAY, e.g. NOTIFY=SUCCESS,FAILURE (RFC 3461 §4.1)",
);
pub const NOTIFY_NEVER_COMBINED: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY; send NEVER alone or a list without it (RFC 3461 §4.1)",
);
pub const NOTIFY_REPEATED: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: NOTIFY names a keyword twice; name each of SUCCESS, FAILURE and DELAY at most once (RFC 3461 §4.1)",
);
pub const BAD_ORCPT: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: ORCPT must be an address type, a semicolon and the address, e.g. ORCPT=rfc822;alice@example.com (RFC 3461 §4.2)",
);
pub const BAD_ORCPT_XTEXT: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: the ORCPT address must be xtext of printable ASCII, with + written +2B, = written +3D and a space +20 (upper-case hex) (RFC 3461 §4.2)",
);
pub const ORCPT_TOO_LONG: Reply = Reply::fixed(
    501,
    Status(5, 5, 4),
    "Syntax error: the ORCPT address is longer than 500 characters once decoded; send the original recipient's address only (RFC 3461 §4.2)",
);

pub const NON_ASCII_WITHOUT_SMTPUTF8: Reply = Reply::fixed(
    553,
    Status(5, 6, 7),
    "Address contains non-ASCII characters; the client must send SMTPUTF8 on MAIL FROM to use it",
);

pub fn too_many_recipients(limit: usize) -> Reply {
    Reply::owned(
        452,
        Some(Status(4, 5, 3)),
        format!(
            "Too many recipients; at most {limit} per message. The recipients accepted so far are kept; send the rest in another message"
        ),
    )
}

pub fn message_too_big(limit: u64) -> Reply {
    Reply::owned(
        552,
        Some(Status(5, 3, 4)),
        format!(
            "Message size exceeds the limit of {limit} octets; send a smaller message or a link"
        ),
    )
}

/// With `bare_line_endings = "reject"`. Says how to fix the usual culprits (`curl -T` of a
/// file with Unix line endings, scripts writing "\n"), and echoes nothing the client sent.
pub const BARE_LINE_ENDING_IN_DATA: Reply = Reply::fixed(
    554,
    Status(5, 6, 0),
    "Message refused: it contains a bare CR or LF; nothing was queued. Send CRLF line endings: curl --crlf, or set the client's line ending to CRLF",
);

/// With `bare_line_endings = "normalize"`: a bare LF is a line end, a bare CR is not.
pub const BARE_CR_IN_DATA: Reply = Reply::fixed(
    554,
    Status(5, 6, 0),
    "Message refused: it contains a bare CR (a CR not followed by LF); nothing was queued. End lines with CRLF or LF, never CR alone",
);

pub const NUL_IN_DATA: Reply = Reply::fixed(
    554,
    Status(5, 6, 0),
    "Message refused: it contains a NUL octet; nothing was queued. Encode binary content (base64)",
);

pub fn text_line_too_long(limit: usize) -> Reply {
    Reply::owned(
        554,
        Some(Status(5, 6, 0)),
        format!(
            "Message refused: a line is longer than {} octets (RFC 5321 §4.5.3.1.6); encode the body (quoted-printable or base64)",
            limit - 2
        ),
    )
}

pub fn queued(id: &str) -> Reply {
    Reply::owned(250, Some(Status(2, 0, 0)), format!("OK: queued as {id}"))
}

/// DATA refused because the server's `max_memory_in_flight` is taken by other sessions' messages.
pub const MEMORY_BUDGET_EXHAUSTED: Reply = Reply::fixed(
    452,
    Status(4, 3, 1),
    "Too much mail in flight on this server: send DATA again in a minute",
);

pub const SPOOL_FAILED: Reply = Reply::fixed(
    452,
    Status(4, 3, 1),
    "Insufficient system storage: the message was NOT accepted. Retry later",
);

// ---- HELP (RFC 5321 §4.1.1.8) -----------------------------------------------------------------

pub fn help(topic: Option<&str>) -> Reply {
    let Some(topic) = topic else {
        return Reply::owned(
            214,
            Some(Status(2, 0, 0)),
            "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP QUIT VRFY EXPN HELP\nSend HELP <command> for its usage; see RFC 5321 and RFC 6409".into(),
        );
    };
    match help_topic(topic) {
        Some(usage) => Reply::owned(214, Some(Status(2, 0, 0)), usage.to_string()),
        None => Reply::owned(
            504,
            Some(Status(5, 5, 4)),
            format!(
                "No help for \"{}\"; send HELP for the list of commands",
                echo_ascii(topic, 64)
            ),
        ),
    }
}

fn help_topic(topic: &str) -> Option<&'static str> {
    let usage = match topic.to_ascii_uppercase().as_str() {
        "EHLO" => "EHLO <your-hostname> - start a session and list extensions",
        "HELO" => "HELO <your-hostname> - start a session without extensions",
        "STARTTLS" => "STARTTLS - upgrade this connection to TLS; send EHLO again afterwards",
        "AUTH" => "AUTH PLAIN [initial-response] | AUTH LOGIN [username] - log in (after STARTTLS)",
        "MAIL" => {
            "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=FULL|HDRS] [ENVID=xtext]"
        }
        "RCPT" => "RCPT TO:<address> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=rfc822;xtext]",
        "DATA" => "DATA - then the message, ended by a line with a single dot",
        "RSET" => "RSET - abort the current transaction",
        "NOOP" => "NOOP - do nothing",
        "QUIT" => "QUIT - close the session",
        "VRFY" => "VRFY <address> - answered with 252; users are never disclosed",
        "EXPN" => "EXPN <list> - not available here",
        "HELP" => "HELP [command]",
        _ => return None,
    };
    Some(usage)
}

/// The EHLO reply: the greeting line then one extension per line (RFC 2034 §3: no enhanced codes).
pub fn ehlo(hostname: &str, client: &str, extensions: &[String]) -> Reply {
    let mut text = format!("{hostname} greets {client}");
    for extension in extensions {
        text.push('\n');
        text.push_str(extension);
    }
    Reply::owned(250, None, text)
}

pub fn helo(hostname: &str, client: &str) -> Reply {
    Reply::owned(250, None, format!("{hostname} greets {client}"))
}

/// One of every reply this server can send, with sample arguments. `explain` is tested
/// against this list, so a new reply belongs here as soon as it is written.
pub fn catalogue() -> Vec<Reply> {
    vec![
        greeting("mail.example.test"),
        closing("mail.example.test"),
        TOO_MANY_ERRORS,
        IDLE_TIMEOUT,
        SHUTTING_DOWN,
        TOO_MANY_CONNECTIONS,
        TOO_MANY_CONNECTIONS_FROM_IP,
        OK,
        RESET,
        UNKNOWN_COMMAND,
        line_too_long(512),
        AUTH_LINE_TOO_LONG,
        BARE_LINE_ENDING_IN_COMMAND,
        syntax_error("MAIL FROM:<address>"),
        EHLO_FIRST,
        EHLO_NOT_HELO,
        parameter_needs_ehlo("SIZE"),
        EXPN_DISABLED,
        VRFY_CANNOT_VERIFY,
        must_starttls(Ports {
            own: 587,
            implicit_tls: Some(465),
        }),
        READY_FOR_TLS,
        STARTTLS_ARGUMENTS,
        ALREADY_TLS,
        TLS_UNAVAILABLE,
        AUTH_REQUIRED,
        AUTH_SUCCEEDED,
        AUTH_FAILED,
        AUTH_UNAVAILABLE,
        logins_locked("2030-01-01T12:15:00Z"),
        LOGINS_REFUSED_FROM_NETWORK,
        served_elsewhere("u@b.test", "box.b.test", "box.a.test"),
        AUTH_MECHANISM_UNKNOWN,
        AUTH_BAD_BASE64,
        AUTH_CANCELLED,
        AUTH_ALREADY_DONE,
        AUTH_IN_TRANSACTION,
        auth_challenge("VXNlcm5hbWU6"),
        sender_ok("me@example.com"),
        recipient_ok("you@example.org"),
        sender_not_owned("ceo@example.com", "me@example.com"),
        SENDER_CHECK_UNAVAILABLE,
        header_from_not_owned("ceo@example.com", "me@example.com"),
        HEADER_FROM_UNREADABLE,
        message_quota_reached("me@example.com", 100, "2030-01-01T13:00:00Z"),
        recipient_quota_reached("me@example.com", 1000, "2030-01-02T12:00:00Z"),
        NESTED_MAIL,
        RCPT_BEFORE_MAIL,
        DATA_BEFORE_MAIL,
        DATA_WITHOUT_RECIPIENTS,
        DATA_ARGUMENTS,
        START_DATA,
        bad_sender("missing @"),
        bad_recipient("missing @"),
        unknown_parameter("FOO=BAR"),
        BAD_RET,
        BAD_ENVID,
        ENVID_TOO_LONG,
        BAD_NOTIFY,
        NOTIFY_NEVER_COMBINED,
        NOTIFY_REPEATED,
        BAD_ORCPT,
        BAD_ORCPT_XTEXT,
        ORCPT_TOO_LONG,
        NON_ASCII_WITHOUT_SMTPUTF8,
        too_many_recipients(100),
        message_too_big(26_214_400),
        BARE_LINE_ENDING_IN_DATA,
        BARE_CR_IN_DATA,
        NUL_IN_DATA,
        text_line_too_long(1000),
        queued("0000000100000000"),
        SPOOL_FAILED,
        help(None),
        help(Some("MAIL")),
        help(Some("FOO")),
        ehlo(
            "mail.example.test",
            "client.example",
            &["PIPELINING".to_string()],
        ),
        helo("mail.example.test", "client.example"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_has_code_status_and_crlf() {
        assert_eq!(
            AUTH_SUCCEEDED.to_wire(),
            "235 2.7.0 Authentication successful\r\n"
        );
    }

    #[test]
    fn multi_line_uses_dash_continuations_and_repeats_status() {
        let wire = help(None).to_wire();
        let lines: Vec<&str> = wire.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("214-2.0.0 Commands:"));
        assert!(lines[1].starts_with("214 2.0.0 Send HELP"));
    }

    #[test]
    fn replies_without_enhanced_codes() {
        assert_eq!(auth_challenge("").to_wire(), "334 \r\n");
        assert_eq!(
            auth_challenge("VXNlcm5hbWU6").to_wire(),
            "334 VXNlcm5hbWU6\r\n"
        );
        assert!(START_DATA.to_wire().starts_with("354 Start"));
        assert_eq!(
            ehlo("h", "c", &["SIZE 10".into()]).to_wire(),
            "250-h greets c\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn client_text_in_replies_is_printable_and_bounded() {
        let long = unknown_parameter(&"X".repeat(600)).to_wire();
        assert!(long.len() < 200, "{long}");
        assert!(
            !unknown_parameter("X\u{1b}[2J\0")
                .text()
                .chars()
                .any(char::is_control)
        );
        let owned = sender_not_owned(&"a".repeat(254), &"b".repeat(254)).to_wire();
        assert!(owned.len() <= 512, "{}", owned.len());
        let host = "h".repeat(253);
        let elsewhere = served_elsewhere(&"u".repeat(254), &host, &host).to_wire();
        assert!(elsewhere.len() <= 512, "{}", elsewhere.len());
    }

    #[test]
    fn help_for_a_command_and_for_an_unknown_topic() {
        assert_eq!(
            help(Some("rcpt")).to_wire(),
            "214 2.0.0 RCPT TO:<address> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=rfc822;xtext]\r\n"
        );
        let unknown = help(Some("FOO"));
        assert_eq!(
            (unknown.code(), unknown.status()),
            (504, Some(Status(5, 5, 4)))
        );
    }
}
