//! Delivery status notifications (RFC 3464) built as pure functions.
//!
//! [`build`] turns a [`Report`] into a complete `multipart/report` message (RFC 6522): a plain
//! explanation for people (with the meaning of each reply from the `explain` knowledge base),
//! the machine-readable `message/delivery-status` part, and the original message or its header
//! section. Everything that came from outside (addresses, remote replies, the original message)
//! is cleaned so it cannot add header lines or break the 998-octet line limit (RFC 5322 §2.1.1).
//!
//! Decisions:
//! - Line ends are CRLF; header fields are folded at spaces near 78 columns, and a run of more
//!   than [`MAX_WORD`] octets without a space is split with a fold (this inserts a space).
//! - Control characters (CR, LF, tab, DEL, C1) in outside values become spaces and runs of
//!   spaces collapse to one, so no value can start a new header line.
//! - An address with non-ASCII characters (SMTPUTF8) is written with the `utf-8` address type
//!   and the 7-bit `utf-8-addr-xtext` form (RFC 6533 §3), so the delivery-status part stays
//!   ASCII; ASCII addresses use `rfc822`. The DSN's `To:` carries the sender's address as is (a
//!   non-ASCII sender can only be reached with SMTPUTF8 anyway, RFC 6532).
//! - Non-ASCII in a remote reply becomes `?` in `Diagnostic-Code` (the field is ASCII text); the
//!   explanation part shows it verbatim (UTF-8, quoted-printable, so the part is 7-bit).
//! - Remote replies longer than [`MAX_DIAGNOSTIC`] octets are cut and marked.
//! - RET=FULL returns the whole message only when it is at most [`FULL_LIMIT`] octets and has no
//!   line over 998 octets; otherwise, and by default, only its header section.

mod notify;
pub mod parse;

#[cfg(test)]
mod tests;

use std::time::SystemTime;

use crate::diagnostics::explain;
use crate::timefmt;

pub use notify::{Notify, should_notify};

/// Largest original returned whole for RET=FULL. Postfix's bounce_size_limit is 50 000; a
/// little more lets an ordinary message with a small attachment come back whole, while a bounce
/// never carries a large attachment back to a sender who already has it.
pub const FULL_LIMIT: usize = 128 * 1024;

/// Longest remote reply kept in `Diagnostic-Code` (and in the explanation); real replies are a
/// few hundred octets, so more is noise or an attack.
pub const MAX_DIAGNOSTIC: usize = 4096;

/// Longest run without a space in a header field before it is split with a fold.
pub const MAX_WORD: usize = 900;

/// Which report this is; decides the subject and the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Failure,
    /// A warning that delivery is late and still being retried.
    Delay,
    /// Delivered, reported because the sender asked with NOTIFY=SUCCESS.
    Success,
}

/// The per-recipient `Action` (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }

    /// The status class to use when the given status is not a valid one.
    fn default_status(self) -> &'static str {
        match self {
            Action::Failed => "5.0.0",
            Action::Delayed => "4.0.0",
            Action::Delivered | Action::Relayed | Action::Expanded => "2.0.0",
        }
    }
}

/// RET (RFC 3461 §4.3): what of the original to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Return {
    /// RET=HDRS, and the default when the sender did not say.
    #[default]
    Headers,
    Full,
}

/// ORCPT (RFC 3461 §4.2): the address type and the address, already xtext-decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orcpt<'a> {
    pub addr_type: &'a str,
    pub address: &'a str,
}

/// One recipient the report is about.
#[derive(Debug, Clone)]
pub struct Recipient<'a> {
    /// The address delivery was attempted to (without angle brackets).
    pub final_recipient: &'a str,
    pub original_recipient: Option<Orcpt<'a>>,
    pub action: Action,
    /// Enhanced status code, e.g. `5.1.1`; an invalid one is replaced by the action's class
    /// (`5.0.0`, `4.0.0`, `2.0.0`).
    pub status: &'a str,
    /// Host name of the server that replied.
    pub remote_mta: Option<&'a str>,
    /// The remote reply verbatim; lines of a multi-line reply separated by LF or CRLF.
    pub remote_reply: Option<&'a str>,
    pub last_attempt: Option<SystemTime>,
    /// For delays: when the mail system gives up.
    pub will_retry_until: Option<SystemTime>,
}

/// Everything a report needs; `build` reads nothing else (no clock, no randomness).
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Our host name: `Reporting-MTA` and the domain of `From:` and `Message-ID`.
    pub reporting_mta: &'a str,
    /// When the report is made: the `Date:` field.
    pub time: SystemTime,
    /// When the original message was received: `Arrival-Date`.
    pub arrival: SystemTime,
    /// Unique per report: makes the Message-ID and the MIME boundary.
    pub unique: &'a str,
    /// The original envelope sender; the report goes to it.
    pub sender: &'a str,
    pub queue_id: &'a str,
    /// ENVID (RFC 3461 §4.4), already xtext-decoded.
    pub envid: Option<&'a str>,
    pub kind: Kind,
    pub original: &'a [u8],
    pub ret: Return,
    pub recipients: &'a [Recipient<'a>],
}

/// The complete message, CRLF line ends, to be spooled with the null sender.
pub fn build(input: &Report<'_>) -> Vec<u8> {
    let host = token(input.reporting_mta, "localhost");
    let unique = token(input.unique, "dsn");
    let (returned, full) = returned_part(input);
    let text = qp_encode(&explanation_text(input, &host, full));
    let status = delivery_status(input, &host);
    let boundary = pick_boundary(&unique, &[&text, status.as_bytes(), &returned]);

    let mut out = Vec::with_capacity(text.len() + status.len() + returned.len() + 2048);
    let mut field = |name: &str, value: &str| out.extend_from_slice(fold(name, value).as_bytes());
    field(
        "From",
        &format!("Mail Delivery System <MAILER-DAEMON@{host}>"),
    );
    field("To", &format!("<{}>", clean(bare_address(input.sender))));
    field(
        "Subject",
        match input.kind {
            Kind::Failure => "Undelivered Mail Returned to Sender",
            Kind::Delay => "Delayed Mail (still being retried)",
            Kind::Success => "Successful Mail Delivery Report",
        },
    );
    field("Date", &timefmt::rfc5322(input.time));
    field("Message-ID", &format!("<{unique}@{host}>"));
    field("Auto-Submitted", "auto-replied");
    field("MIME-Version", "1.0");
    field(
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    out.extend_from_slice(b"\r\nThis is a MIME-encapsulated delivery status notification.\r\n");

    let part = |out: &mut Vec<u8>, headers: &[(&str, &str)], body: &[u8]| {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        for (name, value) in headers {
            out.extend_from_slice(fold(name, value).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        if !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    };
    part(
        &mut out,
        &[
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", "quoted-printable"),
        ],
        &text,
    );
    part(
        &mut out,
        &[("Content-Type", "message/delivery-status")],
        status.as_bytes(),
    );
    let encoding = if returned.is_ascii() { "7bit" } else { "8bit" };
    let content_type = if full {
        "message/rfc822"
    } else {
        "text/rfc822-headers"
    };
    part(
        &mut out,
        &[
            ("Content-Type", content_type),
            ("Content-Transfer-Encoding", encoding),
        ],
        &returned,
    );
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The per-message block, then one block per recipient (RFC 3464 §2.2, §2.3).
fn delivery_status(input: &Report<'_>, host: &str) -> String {
    let mut out = fold("Reporting-MTA", &format!("dns; {host}"));
    if let Some(envid) = input.envid {
        out += &fold("Original-Envelope-Id", &clean(envid));
    }
    out += &fold("X-Portcullis-Queue-ID", &token(input.queue_id, "unknown"));
    out += &fold("Arrival-Date", &timefmt::rfc5322(input.arrival));
    for rcpt in input.recipients {
        out += "\r\n";
        if let Some(orcpt) = rcpt.original_recipient {
            out += &fold("Original-Recipient", &orcpt_value(orcpt));
        }
        out += &fold("Final-Recipient", &typed_address(rcpt.final_recipient));
        out += &fold("Action", rcpt.action.as_str());
        out += &fold("Status", status_code(rcpt));
        if let Some(mta) = rcpt.remote_mta {
            out += &fold("Remote-MTA", &format!("dns; {}", token(mta, "unknown")));
        }
        if let Some(reply) = rcpt.remote_reply {
            let ascii: String = joined_reply(reply)
                .chars()
                .map(|c| if c.is_ascii() { c } else { '?' })
                .collect();
            out += &fold("Diagnostic-Code", &format!("smtp; {ascii}"));
        }
        if let Some(last) = rcpt.last_attempt {
            out += &fold("Last-Attempt-Date", &timefmt::rfc5322(last));
        }
        if let (Action::Delayed, Some(until)) = (rcpt.action, rcpt.will_retry_until) {
            out += &fold("Will-Retry-Until", &timefmt::rfc5322(until));
        }
    }
    out
}

/// The explanation for people, as plain text with LF line ends (encoded afterwards).
fn explanation_text(input: &Report<'_>, host: &str, full: bool) -> String {
    let mut out = format!("This is the mail system at {host}.\n\n");
    let intro = match input.kind {
        Kind::Failure => {
            "Your message could not be delivered to one or more recipients. Each is listed below with the receiving server's reply and what it means."
        }
        Kind::Delay => {
            "Your message has not yet been delivered to one or more recipients. The mail system is still trying; you need do nothing now. You will be told if it gives up."
        }
        Kind::Success => {
            "Your message was delivered to the recipients below; you asked to be told (NOTIFY=SUCCESS)."
        }
    };
    wrap(&mut out, "", intro);
    let returned = match (full, input.ret) {
        (true, _) => "The message is attached at the end.".to_string(),
        (false, Return::Full) => format!(
            "Only the header section of the message is attached: the message is larger than {FULL_LIMIT} octets or has lines too long to return."
        ),
        (false, Return::Headers) => {
            "The header section of the message is attached at the end.".to_string()
        }
    };
    wrap(
        &mut out,
        "",
        &format!("{returned} Queue id: {}.", token(input.queue_id, "unknown")),
    );
    for rcpt in input.recipients {
        out.push('\n');
        let what = match rcpt.action {
            Action::Failed => "could not be delivered",
            Action::Delayed => "delivery is delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "passed on to a server that sends no reports",
            Action::Expanded => "delivered to a list or alias, which passed it on",
        };
        wrap(
            &mut out,
            "",
            &format!(
                "<{}>: {what} (status {}).",
                clean(bare_address(rcpt.final_recipient)),
                status_code(rcpt)
            ),
        );
        if let Some(reply) = rcpt.remote_reply {
            let server = rcpt.remote_mta.map(|m| token(m, "unknown"));
            let said = match server {
                Some(server) => format!("The server {server} replied:"),
                None => "The reply was:".to_string(),
            };
            wrap(&mut out, "    ", &said);
            wrap(&mut out, "        ", &joined_reply(reply));
        }
        if let Some(until) = rcpt
            .will_retry_until
            .filter(|_| rcpt.action == Action::Delayed)
        {
            wrap(
                &mut out,
                "    ",
                &format!("Retrying until: {}.", timefmt::rfc5322(until)),
            );
        }
        if matches!(rcpt.action, Action::Failed | Action::Delayed) {
            explain_into(&mut out, rcpt);
        }
    }
    out
}

/// What the reply (or, without one, the status code) means and what to do, from the `explain`
/// knowledge base; nothing when the knowledge base does not know the code.
fn explain_into(out: &mut String, rcpt: &Recipient<'_>) {
    let query = match rcpt.remote_reply {
        Some(reply) => truncated(reply).to_string(),
        None => status_code(rcpt).to_string(),
    };
    let Ok(found) = explain::explain(&query) else {
        return;
    };
    let combination = found.combination.as_ref();
    let enhanced = found.enhanced.as_ref().and_then(|e| e.entry.as_ref());
    let basic = found.basic.as_ref().and_then(|b| b.entry.as_ref());
    let meaning = combination
        .map(|c| format!("{}: {}", c.title, c.means))
        .or_else(|| enhanced.map(|e| format!("{}: {}", e.title, e.meaning)))
        .or_else(|| basic.map(|b| format!("{}: {}", b.title, b.meaning)));
    let fix = combination
        .map(|c| &c.fix)
        .filter(|f| !f.is_empty())
        .or_else(|| enhanced.map(|e| &e.fix).filter(|f| !f.is_empty()))
        .or_else(|| basic.map(|b| &b.fix));
    if let Some(meaning) = meaning {
        wrap(out, "    ", &format!("What it means: {meaning}"));
    }
    if let Some(fix) = fix.filter(|f| !f.is_empty()) {
        wrap(out, "    ", &format!("What to do: {}", fix.join(" ")));
    }
    wrap(out, "    ", &format!("Retrying: {}", found.retry.when));
}

/// The returned content, CRLF line ends, and whether it is the whole message.
fn returned_part(input: &Report<'_>) -> (Vec<u8>, bool) {
    let original = input.original;
    let lines = split_lines(original);
    if input.ret == Return::Full
        && original.len() <= FULL_LIMIT
        && lines.iter().all(|l| l.len() <= 998)
    {
        let mut out = Vec::with_capacity(original.len() + lines.len());
        for line in &lines {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        return (out, true);
    }
    let mut out = Vec::new();
    for line in lines.iter().take_while(|l| !l.is_empty()) {
        // A header line too long to pass on is folded: the rest goes on continuation lines.
        let mut rest: &[u8] = line;
        let mut first = true;
        while !rest.is_empty() {
            let room = if first { 998 } else { 997 };
            let (now, later) = rest.split_at(rest.len().min(room));
            if !first {
                out.push(b' ');
            }
            out.extend_from_slice(now);
            out.extend_from_slice(b"\r\n");
            rest = later;
            first = false;
        }
    }
    (out, false)
}

/// Lines without their ends; CRLF, a bare LF and a bare CR each end a line. A final line end
/// does not make an empty last line.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' | b'\n' => {
                lines.push(&data[start..i]);
                if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < data.len() {
        lines.push(&data[start..]);
    }
    lines
}

/// A boundary that occurs in none of the parts (RFC 2046 §5.1.1).
fn pick_boundary(unique: &str, parts: &[&[u8]]) -> String {
    let mut n = 0u32;
    loop {
        let boundary = format!("=_dsn_{unique}_{n}");
        let needle = format!("--{boundary}");
        let found = parts
            .iter()
            .any(|p| p.windows(needle.len()).any(|w| w == needle.as_bytes()));
        if !found {
            return boundary;
        }
        n += 1;
    }
}

fn status_code<'a>(rcpt: &Recipient<'a>) -> &'a str {
    let parts: Vec<&str> = rcpt.status.trim().split('.').collect();
    let valid = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    match valid {
        true => rcpt.status.trim(),
        false => rcpt.action.default_status(),
    }
}

/// A multi-line reply on one line: its lines joined with a space (RFC 3464 §2.3.6 keeps the
/// reply text; folding is left to the header writer), cleaned and cut to size.
fn joined_reply(reply: &str) -> String {
    clean(truncated(reply))
}

fn truncated(reply: &str) -> &str {
    if reply.len() <= MAX_DIAGNOSTIC {
        return reply;
    }
    let mut end = MAX_DIAGNOSTIC;
    // Cut on a character boundary; 0 is always one, so the loop ends.
    while !reply.is_char_boundary(end) {
        end -= 1;
    }
    &reply[..end]
}

/// Controls (CR, LF, tab, DEL, C1) become spaces; runs of spaces collapse; ends are trimmed.
fn clean(value: &str) -> String {
    let spaced: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A host name, queue id or seed: only the characters such tokens have, else the fallback.
fn token(value: &str, fallback: &str) -> String {
    let kept: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
        .collect();
    match kept.is_empty() {
        true => fallback.to_string(),
        false => kept,
    }
}

fn bare_address(address: &str) -> &str {
    let trimmed = address.trim();
    trimmed
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(trimmed)
}

/// `rfc822; a@b`, or `utf-8; ...` in utf-8-addr-xtext form for a non-ASCII address.
fn typed_address(address: &str) -> String {
    let address = clean(bare_address(address));
    match address.is_ascii() {
        true => format!("rfc822; {address}"),
        false => format!("utf-8; {}", utf8_addr_xtext(&address)),
    }
}

fn orcpt_value(orcpt: Orcpt<'_>) -> String {
    let addr_type = token(orcpt.addr_type, "rfc822");
    let address = clean(bare_address(orcpt.address));
    match (address.is_ascii(), addr_type.eq_ignore_ascii_case("utf-8")) {
        (true, false) => format!("{addr_type}; {address}"),
        _ => format!("utf-8; {}", utf8_addr_xtext(&address)),
    }
}

/// RFC 6533 §3: non-ASCII, `\`, `+`, `=` and controls as `\x{HEX}`; the rest as is.
fn utf8_addr_xtext(address: &str) -> String {
    let mut out = String::new();
    for c in address.chars() {
        match c {
            '!'..='~' if !matches!(c, '\\' | '+' | '=') => out.push(c),
            _ => out.push_str(&format!("\\x{{{:X}}}", c as u32)),
        }
    }
    out
}

/// `Name: value` folded at spaces to about 78 columns, never over 998 octets, ending in CRLF.
/// The value is cleaned here as well, so no caller can let a CR or LF through.
fn fold(name: &str, value: &str) -> String {
    let value = clean(value);
    let mut out = format!("{name}:");
    let mut line_len = out.len();
    // Nothing but the name or a fold's space yet: folding again would leave an empty line.
    let mut line_has_word = false;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        for piece in chunks(word, MAX_WORD) {
            if line_len + 1 + piece.len() > 78 && line_has_word {
                out.push_str("\r\n");
                line_len = 0;
            }
            out.push(' ');
            out.push_str(piece);
            line_len += 1 + piece.len();
            line_has_word = true;
        }
    }
    out.push_str("\r\n");
    out
}

/// Pieces of at most `max` octets, cut on character boundaries.
fn chunks(word: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = word;
    while rest.len() > max {
        let mut end = max;
        // A UTF-8 character is at most 4 octets, so this stops well above 0.
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, later) = rest.split_at(end);
        pieces.push(piece);
        rest = later;
    }
    pieces.push(rest);
    pieces
}

/// Appends `text` wrapped to 76 columns, each line starting with `indent`.
fn wrap(out: &mut String, indent: &str, text: &str) {
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.chars().count() + 1 + word.chars().count() > 76 {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        out.push_str(&line);
        out.push('\n');
    }
}

/// Quoted-printable (RFC 2045 §6.7) of LF-separated text, with CRLF line ends and soft line
/// breaks so no encoded line exceeds 76 octets.
fn qp_encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    for line in text.split('\n') {
        let bytes = line.as_bytes();
        let mut len = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let literal = matches!(b, b'!'..=b'<' | b'>'..=b'~') || (b == b' ' && !last);
            let encoded = match literal {
                true => vec![b],
                false => format!("={b:02X}").into_bytes(),
            };
            // Keep room for the soft break's `=` within 76.
            if len + encoded.len() > 75 {
                out.extend_from_slice(b"=\r\n");
                len = 0;
            }
            out.extend_from_slice(&encoded);
            len += encoded.len();
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}
