//! Reading bounces that other mail systems (and this one) send: which recipients failed, and
//! what the receiving server replied for each. Sans-IO: bytes in, data out.
//!
//! Two forms are understood:
//! - An RFC 3464 delivery status notification: a MIME message with a `message/delivery-status`
//!   part (RFC 6522's multipart/report, as Postfix, Exim, Gmail, Microsoft 365 and Portcullis
//!   send), or `message/global-delivery-status` (RFC 6533). Its per-recipient blocks give the
//!   address, Action, Status, Remote-MTA and Diagnostic-Code.
//! - Free text, for bounces without that part, or pasted from a mail client: each failed
//!   address is found from the lines that name it (`Your message wasn't delivered to ADDR`,
//!   `<ADDR>:`, a line holding only the address) and the reply from the next line that starts
//!   a reply code (after `Remote Server returned '`, `Remote host said:`, `... said:`).
//!
//! Decisions:
//! - Only recipients whose Action is `failed` or `delayed` are reported; a DSN that reports only
//!   deliveries has nothing to explain and is an error that says so.
//! - The returned original (`message/rfc822`, `text/rfc822-headers`) is never read, so the
//!   addresses in its header fields are not mistaken for failed recipients. In a message without
//!   MIME structure the text ends at the first line that starts the copy of the original.
//! - A reply that a DSN joined into one line (`550-5.1.1 a 550 5.1.1 b`) is split back into its
//!   lines, so that its text reads as one sentence.
//! - Text is read as UTF-8 (invalid sequences replaced); quoted-printable and base64 parts are
//!   decoded; HTML-only text is stripped of its tags.

use base64::Engine;
use serde::Serialize;

/// What the bounce was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// A `message/delivery-status` part (RFC 3464).
    Rfc3464,
    /// Free text: a provider's own wording, or a pasted bounce.
    Text,
}

/// One recipient the bounce reports as failed or delayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BouncedRecipient {
    pub address: String,
    /// `failed` or `delayed` (lower case); None in free text, which reports failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The enhanced status code from the DSN's Status field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_mta: Option<String>,
    /// The remote server's reply (lines separated by LF), or the DSN's diagnostic text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    pub form: Form,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_mta: Option<String>,
    pub recipients: Vec<BouncedRecipient>,
}

/// Why nothing could be explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A DSN whose recipients were all delivered, relayed or expanded.
    NoFailures { reported: usize },
    /// Neither a delivery-status part nor a failed address with a reply in the text.
    NothingFound,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NoFailures { reported } => write!(
                f,
                "this delivery status notification reports {reported} recipient(s), none failed or delayed: there is nothing to fix"
            ),
            ParseError::NothingFound => write!(
                f,
                "no failed recipient found: the message has no message/delivery-status part (RFC 3464) and its text names no address with a reply code. Give the whole bounce as received (with its headers), or explain a single reply with `portcullis explain \"550 5.1.1 ...\"`"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads a bounce message.
pub fn parse(message: &[u8]) -> Result<Bounce, ParseError> {
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    let mut parts = Parts::default();
    collect(&text, &mut parts, 0);
    let mut texts = parts.text;
    if texts.is_empty() {
        texts = parts.html.iter().map(|html| strip_tags(html)).collect();
    }
    let from_text = read_text(&texts.join("\n"));
    match parts.status.first() {
        Some(status) => from_dsn(status, &from_text),
        None if from_text.is_empty() => Err(ParseError::NothingFound),
        None => Ok(Bounce {
            form: Form::Text,
            reporting_mta: None,
            recipients: from_text,
        }),
    }
}

// ---- MIME ---------------------------------------------------------------------------------------

/// The parts worth reading, decoded.
#[derive(Default)]
struct Parts {
    status: Vec<String>,
    text: Vec<String>,
    html: Vec<String>,
}

/// Nested multiparts deeper than this are not followed (a bounce nests two or three levels).
const MAX_DEPTH: usize = 8;

/// Sorts one entity (headers and body, LF line ends) into `parts`, descending into multiparts.
fn collect(entity: &str, parts: &mut Parts, depth: usize) {
    let (head, body) = split_entity(entity);
    let fields = header_fields(head);
    let content_type = field(&fields, "content-type").unwrap_or("text/plain");
    let (mime_type, params) = media_type(content_type);
    let encoding = field(&fields, "content-transfer-encoding").unwrap_or("7bit");
    match mime_type.as_str() {
        t if t.starts_with("multipart/") && depth < MAX_DEPTH => {
            if let Some(boundary) = param(&params, "boundary") {
                for part in multipart_bodies(body, &boundary) {
                    collect(part, parts, depth + 1);
                }
            }
        }
        "message/delivery-status" | "message/global-delivery-status" => {
            parts.status.push(decode(body, encoding))
        }
        "text/plain" => parts.text.push(decode(body, encoding)),
        "text/html" => parts.html.push(decode(body, encoding)),
        // The returned original (message/rfc822, text/rfc822-headers) and attachments.
        _ => {}
    }
}

/// Headers and body; a message without a blank line is all headers, unless its first line is no
/// header at all (pasted text), which makes it all body.
fn split_entity(entity: &str) -> (&str, &str) {
    if let Some(at) = entity.find("\n\n") {
        let head = &entity[..at];
        if head.lines().next().is_some_and(is_header_line) {
            return (head, &entity[at + 2..]);
        }
        return ("", entity);
    }
    match entity.lines().next().is_some_and(is_header_line) {
        true => (entity, ""),
        false => ("", entity),
    }
}

fn is_header_line(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        None => false,
    }
}

/// `(lower-case name, unfolded value)` for each header field.
fn header_fields(head: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// `type/subtype` in lower case and the `name=value` parameters (names in lower case).
fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let mime_type = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = pieces
        .filter_map(|piece| piece.split_once('='))
        .map(|(name, value)| {
            let value = value.trim().trim_matches('"');
            (name.trim().to_ascii_lowercase(), value.to_string())
        })
        .collect();
    (mime_type, params)
}

fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// The bodies between `--boundary` lines, up to `--boundary--` (RFC 2046 §5.1.1).
fn multipart_bodies<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut bodies = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed.starts_with(&delimiter) {
            if let Some(from) = start {
                bodies.push(body[from..offset].trim_end_matches('\n'));
            }
            if trimmed[delimiter.len()..].starts_with("--") {
                return bodies;
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    // A message cut short still yields the parts that were complete.
    if let Some(from) = start {
        bodies.push(&body[from..]);
    }
    bodies
}

fn decode(body: &str, encoding: &str) -> String {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "quoted-printable" => quoted_printable(body),
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
                // Undecodable base64 is shown as it came: still better than nothing.
                Err(_) => body.to_string(),
            }
        }
        _ => body.to_string(),
    }
}

/// RFC 2045 §6.7: `=XX` octets and `=` soft line breaks.
fn quoted_printable(body: &str) -> String {
    let mut bytes = Vec::with_capacity(body.len());
    for line in body.split('\n') {
        let (line, soft) = match line.trim_end().strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line.trim_end(), false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'=', Some(octet)) => {
                    bytes.push(octet);
                    i += 3;
                }
                (byte, _) => {
                    bytes.push(byte);
                    i += 1;
                }
            }
        }
        if !soft {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// HTML as lines of text: block tags end lines, other tags vanish, common entities decoded.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].to_ascii_lowercase();
        let name = tag.trim_start_matches('/');
        if ["br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"]
            .iter()
            .any(|block| name.starts_with(block))
        {
            out.push('\n');
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

// ---- RFC 3464 -----------------------------------------------------------------------------------

fn from_dsn(status: &str, from_text: &[BouncedRecipient]) -> Result<Bounce, ParseError> {
    let mut blocks = status
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty());
    let per_message = header_fields(blocks.next().unwrap_or(""));
    let mut reported = 0;
    let mut recipients = Vec::new();
    for block in blocks {
        let fields = header_fields(block);
        let Some(address) = field(&fields, "final-recipient")
            .or_else(|| field(&fields, "original-recipient"))
            .map(typed_value)
            .map(|a| decode_utf8_addr(bare(&a)))
        else {
            continue;
        };
        reported += 1;
        let action = field(&fields, "action").map(|a| a.trim().to_ascii_lowercase());
        if !matches!(action.as_deref(), Some("failed" | "delayed")) {
            continue;
        }
        let reply = field(&fields, "diagnostic-code")
            .map(|d| split_joined_reply(&typed_value(d)))
            .or_else(|| reply_from_text(&address, from_text));
        recipients.push(BouncedRecipient {
            address,
            action,
            status: field(&fields, "status")
                .and_then(|s| s.split_whitespace().next().map(str::to_string)),
            remote_mta: field(&fields, "remote-mta").map(typed_value),
            reply,
        });
    }
    if recipients.is_empty() {
        return Err(ParseError::NoFailures { reported });
    }
    Ok(Bounce {
        form: Form::Rfc3464,
        reporting_mta: field(&per_message, "reporting-mta").map(typed_value),
        recipients,
    })
}

/// The value after an RFC 3464 type (`rfc822; bob@example.com`, `dns; mx.example.com`,
/// `smtp; 550 ...`); a value without a type as it is.
fn typed_value(value: &str) -> String {
    let value = value.trim();
    let typed = value.split_once(';').filter(|(kind, _)| {
        !kind.is_empty()
            && kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    });
    match typed {
        Some((_, rest)) => rest.trim().to_string(),
        None => value.to_string(),
    }
}

fn bare(address: &str) -> &str {
    address.trim().trim_start_matches('<').trim_end_matches('>')
}

/// RFC 6533 §3 utf-8-addr-xtext: `\x{HEX}` stands for one character.
fn decode_utf8_addr(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    let mut rest = address;
    while let Some(at) = rest.find("\\x{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let decoded = after.find('}').and_then(|end| {
            let c = u32::from_str_radix(&after[..end], 16)
                .ok()
                .and_then(char::from_u32)?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("\\x{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn reply_from_text(address: &str, from_text: &[BouncedRecipient]) -> Option<String> {
    from_text
        .iter()
        .find(|r| r.address.eq_ignore_ascii_case(address))
        .and_then(|r| r.reply.clone())
}

/// `550-5.1.1 The account 550 5.1.1 does not exist` back into its two lines: a multi-line
/// reply repeats its code (and enhanced code) on every line, which is where it was joined.
fn split_joined_reply(reply: &str) -> String {
    let Some(prefix) = reply_prefix(reply) else {
        return reply.to_string();
    };
    let (code, enhanced) = prefix;
    let markers = [format!(" {code}-{enhanced}"), format!(" {code} {enhanced}")];
    let mut lines = Vec::new();
    let mut rest = reply;
    loop {
        let next = markers
            .iter()
            .filter_map(|m| rest[1..].find(m.as_str()).map(|at| at + 1))
            .min();
        match next {
            Some(at) => {
                lines.push(rest[..at].trim());
                rest = rest[at..].trim_start();
            }
            None => {
                lines.push(rest.trim());
                break;
            }
        }
    }
    lines.join("\n")
}

/// The reply code and enhanced code a reply starts with (`550`, `5.1.1`).
fn reply_prefix(reply: &str) -> Option<(&str, &str)> {
    let code = reply.get(..3).filter(|c| is_reply_code(c))?;
    let after = reply.get(4..)?;
    let enhanced = after.split_whitespace().next()?;
    let is_enhanced = enhanced.split('.').count() == 3
        && enhanced.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    is_enhanced.then_some((code, enhanced))
}

fn is_reply_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 3 && matches!(bytes[0], b'4' | b'5') && bytes.iter().all(u8::is_ascii_digit)
}

// ---- Free text ----------------------------------------------------------------------------------

/// Lines that start the copy of the original message in a bounce without MIME structure.
const ORIGINAL_STARTS: &[&str] = &[
    "original message headers",
    "----- original message",
    "------ this is a copy of the message",
    "--- below this line is a copy of the message",
    "----- the header of the original message",
    "received:",
    "return-path:",
];

/// Phrases that name the failed recipient right after them.
const RECIPIENT_PHRASES: &[&str] = &[
    "delivered to ",
    "deliver your message to ",
    "delivery to ",
    "deliver to ",
    "failed recipient: ",
];

/// Text that may stand before a reply on its line.
const REPLY_LEADS: &[&str] = &[
    "remote server returned '",
    "remote server returned \"",
    "remote server returned ",
    "remote host said: ",
    "the response was: ",
    "the response from the remote server was: ",
    "said: ",
];

/// The failed recipients of a free-text bounce, each with the reply that follows its name.
fn read_text(text: &str) -> Vec<BouncedRecipient> {
    let mut found: Vec<BouncedRecipient> = Vec::new();
    let mut current: Option<usize> = None;
    // Exim names the server on the line before the reply: `host mx.example.com [192.0.2.1]`.
    let mut host_line: Option<String> = None;
    let mut lines = text.lines().peekable();
    while let Some(raw) = lines.next() {
        let line = raw.trim();
        let lower = line.to_ascii_lowercase();
        if ORIGINAL_STARTS.iter().any(|s| lower.starts_with(s)) {
            break;
        }
        if let Some(start) = reply_start(line) {
            let wrapped = lower.contains(" said: ");
            let mut pieces = vec![line[start..].to_string()];
            while let Some(next) = lines
                .peek()
                .filter(|next| continues(&pieces, next.trim(), wrapped.then_some(*next)))
            {
                pieces.push(next.trim().to_string());
                lines.next();
            }
            // Postfix wraps one reply line; a multi-line reply keeps its lines.
            let reply = clean_reply(&pieces.join(if wrapped { " " } else { "\n" }));
            let named = addresses(&line[..start]).or_else(|| addresses(&line[start..]));
            let host = remote_host(line).or_else(|| host_line.take());
            attach(&mut found, &mut current, named, reply, host);
        } else if let Some(address) = recipient_named(line, &lower) {
            current = Some(index_of(&mut found, &address));
        } else if let Some(host) = lower.strip_prefix("host ") {
            host_line = host
                .split_whitespace()
                .next()
                .filter(|name| name.contains('.'))
                .map(str::to_string);
        }
    }
    found.retain(|r| r.reply.is_some());
    found
}

/// Gives a reply to the recipient named last, unless it has one: then to the address the
/// reply's own line names.
fn attach(
    found: &mut Vec<BouncedRecipient>,
    current: &mut Option<usize>,
    named: Option<String>,
    reply: String,
    host: Option<String>,
) {
    let target = match (*current, named) {
        (Some(index), _) if found[index].reply.is_none() => Some(index),
        (_, Some(address)) => Some(index_of(found, &address)),
        _ => None,
    };
    let Some(index) = target else { return };
    let recipient = &mut found[index];
    recipient.reply = Some(reply);
    recipient.remote_mta = host;
    *current = Some(index);
}

fn index_of(found: &mut Vec<BouncedRecipient>, address: &str) -> usize {
    if let Some(index) = found
        .iter()
        .position(|r| r.address.eq_ignore_ascii_case(address))
    {
        return index;
    }
    found.push(BouncedRecipient {
        address: address.to_string(),
        action: None,
        status: None,
        remote_mta: None,
        reply: None,
    });
    found.len() - 1
}

/// Where in the line a reply starts: a 4xx/5xx code at the start (after a known lead such as
/// `Remote Server returned '`), or anywhere when an enhanced code follows it.
fn reply_start(line: &str) -> Option<usize> {
    let lower = line.to_ascii_lowercase();
    for lead in REPLY_LEADS {
        if let Some(at) = lower.find(lead) {
            let start = at + lead.len();
            if starts_reply(&line[start..], false) {
                return Some(start);
            }
        }
    }
    if starts_reply(line, false) {
        return Some(0);
    }
    (1..line.len()).find(|&at| {
        line.is_char_boundary(at)
            && line[..at].ends_with([' ', '\'', '"', '(', '[', ':'])
            && starts_reply(&line[at..], true)
    })
}

/// `550 text`, `550-text`, `550: text` (Yahoo), or `550 5.1.1` when an enhanced code is required.
fn starts_reply(text: &str, need_enhanced: bool) -> bool {
    let Some(code) = text.get(..3).filter(|c| is_reply_code(c)) else {
        return false;
    };
    let rest = &text[code.len()..];
    if !(rest.is_empty() || rest.starts_with([' ', '-', ':'])) {
        return false;
    }
    let word = rest
        .trim_start_matches([' ', '-', ':'])
        .split_whitespace()
        .next()
        .unwrap_or("");
    let enhanced = word.split('.').count() == 3
        && word
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    enhanced || (!need_enhanced && !word.is_empty())
}

/// A following line belongs to the reply when it repeats the code of a reply line that ended
/// with a hyphen (a multi-line reply), or, after Postfix's `said:`, when it is indented (Postfix
/// wraps the reply onto indented lines).
fn continues(reply: &[String], next: &str, raw_after_said: Option<&str>) -> bool {
    if raw_after_said.is_some_and(|raw| raw.starts_with([' ', '\t']) && !raw.trim().is_empty()) {
        return true;
    }
    let Some(code) = reply.first().and_then(|first| first.get(..3)) else {
        return false;
    };
    next.get(..3) == Some(code)
        && next.get(3..4).is_some_and(|s| s == " " || s == "-")
        && reply.last().is_some_and(|last| last.get(3..4) == Some("-"))
}

/// The reply without what bounce writers put around it.
fn clean_reply(reply: &str) -> String {
    let reply = reply.trim();
    let reply = reply
        .strip_suffix("(in reply to RCPT TO command)")
        .or_else(|| reply.strip_suffix("(in reply to end of DATA command)"))
        .or_else(|| reply.strip_suffix("(in reply to MAIL FROM command)"))
        .unwrap_or(reply);
    let reply = reply.trim().trim_end_matches(['\'', '"']).trim_end();
    // `(reason: 550 5.1.1 User unknown)`: the reply began inside the parenthesis.
    match reply.strip_suffix(')') {
        Some(inner) if !inner.contains('(') => inner.to_string(),
        _ => reply.to_string(),
    }
}

/// Postfix writes `host mx.example.com[192.0.2.1] said:`.
fn remote_host(line: &str) -> Option<String> {
    let after = &line[line.find("host ")? + 5..];
    let name = after.split(['[', ' ']).next()?;
    let looks_like_host = name.contains('.') && line.contains(" said:");
    looks_like_host.then(|| name.to_string())
}

/// The address a line names as a failed recipient: after a phrase such as `delivered to`, or as
/// the line's only content (`<bob@example.com>:`, `Bob (bob@example.com)`).
fn recipient_named(line: &str, lower: &str) -> Option<String> {
    for phrase in RECIPIENT_PHRASES {
        if let Some(at) = lower.find(phrase) {
            let after = &line[at + phrase.len()..];
            if let Some(address) = after.split_whitespace().next().and_then(address_in) {
                return Some(address);
            }
        }
    }
    // Header-like lines (From:, To:, Sender:) name other people.
    if is_header_line(line) && !line.starts_with('<') {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let found: Vec<String> = words.iter().filter_map(|w| address_in(w)).collect();
    let single = found
        .first()
        .filter(|first| found.iter().all(|a| a.eq_ignore_ascii_case(first)));
    match (single, words.len()) {
        (Some(address), 1..=4) => Some(address.clone()),
        _ => None,
    }
}

/// The first address in some text.
fn addresses(text: &str) -> Option<String> {
    text.split_whitespace().find_map(address_in)
}

/// `bob@example.com` out of a word such as `<bob@example.com>:` or `(bob@example.com)`.
fn address_in(word: &str) -> Option<String> {
    let word = word.trim_matches(|c: char| "<>()[]\"',:;.".contains(c));
    let word = word.strip_prefix("mailto:").unwrap_or(word);
    let (local, domain) = word.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && !local.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '"', ' ']);
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    (local_ok && domain_ok).then(|| word.to_string())
}

#[cfg(test)]
mod tests;
