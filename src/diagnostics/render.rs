//! Terminal output for `portcullis explain`: labelled, wrapped sections, with ANSI colours only
//! when the caller asks for them (the CLI decides from the terminal and NO_COLOR).

use super::bounce::{BounceExplanation, RecipientExplanation, verdict_label};
use super::explain::{BasicPart, DigitMeaning, EnhancedPart, Explanation};
use super::knowledge::{
    BasicEntry, Combination, Confusion, EnhancedEntry, Knowledge, Retry, RetryAdvice, Side, Verdict,
};
use super::query;
use crate::bounce::parse::Form;

/// Total line width; fits a default 100-column terminal with room to spare.
const WIDTH: usize = 96;
/// Indent of a field's text: two spaces, an 11-column label, one space.
const FIELD_INDENT: usize = 14;

const BOLD: &str = "1";
const HEADING: &str = "1;36";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const CYAN: &str = "36";

pub fn text(explanation: &Explanation, color: bool) -> String {
    let mut out = Out::new(color);
    out.title(&reply_line(explanation));
    if let Some(combination) = &explanation.combination {
        combination_section(&mut out, combination);
    }
    retry_section(&mut out, &explanation.retry);
    // A specific meaning makes the codes' general sections noise (and their generic causes
    // misleading), so they shrink to what each code is, with the command that shows the rest.
    let brief = explanation.combination.is_some();
    if let Some(basic) = &explanation.basic {
        basic_section(&mut out, basic, brief);
    }
    if let Some(enhanced) = &explanation.enhanced {
        enhanced_section(&mut out, enhanced, brief);
    }
    if brief {
        general_pointer(&mut out, explanation);
    }
    if !explanation.notes.is_empty() {
        out.heading("Notes");
        for note in &explanation.notes {
            out.item(YELLOW, "!", note);
        }
    }
    out.finish()
}

/// `explain --bounce`: one section per failed recipient, the verdict first.
pub fn bounce(report: &BounceExplanation, color: bool) -> String {
    let mut out = Out::new(color);
    let form = match report.form {
        Form::Rfc3464 => "a delivery status notification (RFC 3464)",
        Form::Text => "a bounce in free text",
    };
    let from = report
        .reporting_mta
        .as_ref()
        .map(|mta| format!(" from {mta}"))
        .unwrap_or_default();
    let count = report.recipients.len();
    let plural = if count == 1 { "" } else { "s" };
    out.title(&format!(
        "Read as {form}{from}: {count} recipient{plural} not delivered."
    ));
    for recipient in &report.recipients {
        bounced_recipient(&mut out, recipient);
    }
    out.finish()
}

fn bounced_recipient(out: &mut Out, explained: &RecipientExplanation) {
    let recipient = &explained.recipient;
    let colour = match explained.verdict {
        Verdict::RetryLater | Verdict::SlowDown => YELLOW,
        Verdict::ReadReply => CYAN,
        _ => RED,
    };
    out.buf.push('\n');
    let verdict = out.paint(colour, &verdict_label(explained.verdict).to_uppercase());
    let address = out.paint(HEADING, &recipient.address);
    out.line(&format!("{address}: {verdict}"));
    out.paragraph(explained.advice);
    out.field("What", &explained.title);
    let state = [
        recipient.action.clone(),
        recipient.status.clone(),
        recipient
            .remote_mta
            .as_ref()
            .map(|mta| format!("from {mta}")),
    ];
    let state: Vec<String> = state.into_iter().flatten().collect();
    if !state.is_empty() {
        out.field("Status", &state.join(", "));
    }
    if let Some(reply) = &recipient.reply {
        for (index, line) in reply.lines().enumerate() {
            out.field(if index == 0 { "Reply" } else { "" }, line);
        }
    }
    let Some(explanation) = &explained.explanation else {
        return;
    };
    match &explanation.combination {
        Some(combination) => {
            out.field("Means", &combination.means);
            out.list_field("Fix", &combination.fix);
        }
        None => general_meaning(out, explanation),
    }
    out.field("Retry", &explanation.retry.when);
}

/// Without a specific meaning, the enhanced code's (else the reply code's) own entry.
fn general_meaning(out: &mut Out, explanation: &Explanation) {
    let enhanced = explanation.enhanced.as_ref().and_then(|e| e.entry.as_ref());
    let basic = explanation.basic.as_ref().and_then(|b| b.entry.as_ref());
    if let Some(entry) = enhanced {
        out.field("Means", &entry.meaning);
        out.list_field("Fix", &entry.fix);
    } else if let Some(entry) = basic {
        out.field("Means", &entry.meaning);
        out.list_field("Fix", &entry.fix);
    }
}

/// The reply as understood, without the quotes and prefixes it was pasted with.
fn reply_line(explanation: &Explanation) -> String {
    let reply = &explanation.reply;
    let parts = [
        reply.basic.map(|code| code.to_string()),
        reply.enhanced.clone(),
        reply.text.clone(),
    ];
    parts.into_iter().flatten().collect::<Vec<_>>().join(" ")
}

pub fn list(kb: &Knowledge) -> String {
    let mut lines: Vec<String> = kb
        .basic
        .iter()
        .map(|entry| format!("{:<9}{}", entry.code, entry.title))
        .collect();
    let mut enhanced: Vec<&EnhancedEntry> = kb.enhanced.iter().collect();
    enhanced.sort_by_key(|entry| sort_key(entry));
    for entry in enhanced {
        let vendor = entry
            .vendor
            .as_ref()
            .map(|v| format!(" [{v}; not in the IANA registry]"))
            .unwrap_or_default();
        let deprecated = if entry.deprecated {
            " [deprecated]"
        } else {
            ""
        };
        lines.push(format!(
            "{:<9}{}{vendor}{deprecated}",
            entry.code, entry.title
        ));
    }
    lines.join("\n") + "\n"
}

/// Registered codes first, by subject and detail as numbers (X.1.10 after X.1.9).
fn sort_key(entry: &EnhancedEntry) -> (bool, u16, u16) {
    let code = query::parse(&entry.code).ok().and_then(|q| q.enhanced);
    let (subject, detail) = code.map_or((u16::MAX, u16::MAX), |c| (c.subject, c.detail));
    (!entry.registered(), subject, detail)
}

fn combination_section(out: &mut Out, combination: &Combination) {
    out.heading(&format!("What this reply means: {}", combination.title));
    out.paragraph(&combination.means);
    if let Some(provider) = &combination.provider {
        out.field("Seen from", provider);
    }
    out.list_field("Fix", &combination.fix);
    if let Some(portcullis) = &combination.portcullis {
        out.field("Portcullis", portcullis);
    }
    out.list_field("In the wild", &combination.in_the_wild);
}

fn retry_section(out: &mut Out, retry: &Retry) {
    let (word, colour) = match retry.advice {
        RetryAdvice::NotNeeded => ("Nothing to retry.", GREEN),
        RetryAdvice::Yes => ("Yes, later, unchanged.", YELLOW),
        RetryAdvice::AfterFix => ("Only after fixing the cause.", RED),
        RetryAdvice::No => ("No.", RED),
        RetryAdvice::DependsOnClass => ("Depends on the class (2, 4 or 5).", CYAN),
    };
    out.heading("Retry?");
    let word = out.paint(colour, word);
    out.line(&format!("  {word}"));
    out.paragraph(&retry.when);
}

/// The commands that explain each code of a reply on its own, in full.
fn general_pointer(out: &mut Out, explanation: &Explanation) {
    let commands: Vec<String> = [
        explanation.reply.basic.map(|code| code.to_string()),
        explanation.reply.enhanced.clone(),
    ]
    .into_iter()
    .flatten()
    .map(|code| format!("`portcullis explain {code}`"))
    .collect();
    out.line("");
    out.paragraph(&format!(
        "Each code in general, with its usual causes: {}.",
        commands.join(" and ")
    ));
}

fn basic_section(out: &mut Out, part: &BasicPart, brief: bool) {
    let title = part
        .entry
        .as_ref()
        .map_or("not a defined reply code", |e| &e.title);
    out.heading(&format!("Reply code {}: {title}", part.code));
    match (&part.entry, brief) {
        (Some(entry), true) => {
            out.field("Meaning", &entry.meaning);
            out.field("Defined in", &entry.rfc);
        }
        (Some(entry), false) => {
            digits(out, &part.digits);
            basic_entry(out, entry);
        }
        (None, _) => digits(out, &part.digits),
    }
}

fn basic_entry(out: &mut Out, entry: &BasicEntry) {
    out.field("Meaning", &entry.meaning);
    out.field("Defined in", &entry.rfc);
    out.field("Sent by", side(entry.side));
    out.field("Reply to", &entry.commands.join(", "));
    out.field("When", &entry.when);
    out.list_field("Causes", &entry.causes);
    out.list_field("Fix", &entry.fix);
    out.field("Retry", &entry.retry.when);
    if let Some(portcullis) = &entry.portcullis {
        out.field("Portcullis", portcullis);
    }
    confusions(out, &entry.confused_with);
    out.list_field("In the wild", &entry.in_the_wild);
}

fn enhanced_section(out: &mut Out, part: &EnhancedPart, brief: bool) {
    let title = part
        .entry
        .as_ref()
        .map_or("not in the IANA registry", |e| &e.title);
    // A vendor's code has no registry pattern; naming one would suggest it is registered.
    let code = match part.code == part.pattern || !part.registered {
        true => part.code.clone(),
        false => format!("{} ({})", part.code, part.pattern),
    };
    out.heading(&format!("Enhanced status code {code}: {title}"));
    match (&part.entry, brief) {
        (Some(entry), true) => {
            out.field("Meaning", &entry.meaning);
            out.field("Defined in", &entry.rfc);
            if let Some(vendor) = &entry.vendor {
                out.field(
                    "Vendor",
                    &format!("{vendor}; not in the IANA registry, not standard"),
                );
            }
        }
        (Some(entry), false) => {
            digits(out, &part.digits);
            enhanced_entry(out, entry);
        }
        (None, _) => digits(out, &part.digits),
    }
}

fn enhanced_entry(out: &mut Out, entry: &EnhancedEntry) {
    out.field("Meaning", &entry.meaning);
    out.field("Defined in", &entry.rfc);
    if let Some(vendor) = &entry.vendor {
        out.field(
            "Vendor",
            &format!("{vendor}; not in the IANA registry, not standard"),
        );
    }
    if !entry.registry_basic.is_empty() {
        let codes: Vec<String> = entry.registry_basic.iter().map(u16::to_string).collect();
        let source = match entry.registered() {
            true => " (per the IANA registry)",
            false => "",
        };
        out.field("Paired with", &format!("{}{source}", codes.join(", ")));
    }
    out.field("Sent by", side(entry.side));
    out.field("When", &entry.when);
    out.list_field("Causes", &entry.causes);
    out.list_field("Fix", &entry.fix);
    out.field("Retry", &entry.retry);
    if let Some(portcullis) = &entry.portcullis {
        out.field("Portcullis", portcullis);
    }
    confusions(out, &entry.confused_with);
    out.list_field("In the wild", &entry.in_the_wild);
}

fn digits(out: &mut Out, digits: &[DigitMeaning]) {
    for digit in digits {
        let colour = match digit.value.as_str() {
            _ if digit.position != "first" && digit.position != "class" => BOLD,
            "2" => GREEN,
            "3" => CYAN,
            "4" => YELLOW,
            "5" => RED,
            _ => BOLD,
        };
        let rfc = digit
            .rfc
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let label = format!("{} {}", digit.position, digit.value);
        let text = format!("{}: {}{rfc}", digit.name, digit.meaning);
        out.painted_field(colour, &label, &text);
    }
}

fn confusions(out: &mut Out, confusions: &[Confusion]) {
    if confusions.is_empty() {
        return;
    }
    let heading = out.paint(BOLD, "Not to be confused with");
    out.line(&format!("  {heading}"));
    for confusion in confusions {
        out.painted_field(
            BOLD,
            &format!("  {}", confusion.code),
            &confusion.difference,
        );
    }
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Submission => {
            "your own submission server (port 587 with STARTTLS, or 465 with implicit TLS)"
        }
        Side::Mx => "a receiving mail exchanger (port 25); you usually see it in a bounce",
        Side::Either => "any SMTP server: your submission server (587/465) or a receiving MX (25)",
    }
}

/// An output buffer that knows the layout and whether to colour.
struct Out {
    buf: String,
    color: bool,
}

impl Out {
    fn new(color: bool) -> Out {
        Out {
            buf: String::new(),
            color,
        }
    }

    fn finish(self) -> String {
        self.buf
    }

    fn paint(&self, code: &str, text: &str) -> String {
        match self.color {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text.to_string(),
        }
    }

    fn line(&mut self, text: &str) {
        self.buf.push_str(text.trim_end());
        self.buf.push('\n');
    }

    fn title(&mut self, text: &str) {
        let title = self.paint(BOLD, text);
        self.line(&title);
    }

    fn heading(&mut self, text: &str) {
        self.buf.push('\n');
        for (index, line) in wrap(text, WIDTH - 2).into_iter().enumerate() {
            let indent = if index == 0 { "" } else { "  " };
            let heading = self.paint(HEADING, &line);
            self.line(&format!("{indent}{heading}"));
        }
    }

    fn paragraph(&mut self, text: &str) {
        for line in wrap(text, WIDTH - 2) {
            self.line(&format!("  {line}"));
        }
    }

    fn field(&mut self, label: &str, text: &str) {
        self.painted_field(BOLD, label, text);
    }

    /// `  Label      text that wraps under itself`; a label too long for the column gets a
    /// line of its own.
    fn painted_field(&mut self, code: &str, label: &str, text: &str) {
        let lines = wrap(text, WIDTH - FIELD_INDENT);
        let padded = format!("{label:<width$}", width = FIELD_INDENT - 3);
        let label = self.paint(code, &padded);
        let indent = " ".repeat(FIELD_INDENT);
        let mut lines = lines.into_iter();
        if padded.chars().count() > FIELD_INDENT - 3 {
            self.line(&format!("  {label}"));
        } else if let Some(first) = lines.next() {
            self.line(&format!("  {label} {first}"));
        }
        for line in lines {
            self.line(&format!("{indent}{line}"));
        }
    }

    fn list_field(&mut self, label: &str, items: &[String]) {
        let Some((first, rest)) = items.split_first() else {
            return;
        };
        self.field(label, &format!("- {first}"));
        for item in rest {
            self.field("", &format!("- {item}"));
        }
    }

    fn item(&mut self, code: &str, marker: &str, text: &str) {
        let mut lines = wrap(text, WIDTH - 4).into_iter();
        let marker = self.paint(code, marker);
        if let Some(first) = lines.next() {
            self.line(&format!("  {marker} {first}"));
        }
        for line in lines {
            self.line(&format!("    {line}"));
        }
    }
}

/// Greedy word wrap; a word longer than the width stays whole on its own line. List items
/// (`- ...`) continue two columns further in, under their text.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let hang = if text.starts_with("- ") { "  " } else { "" };
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in words(text) {
        if current.is_empty() {
            current.push_str(&word);
        } else if current.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::replace(&mut current, format!("{hang}{word}")));
        } else {
            current.push(' ');
            current.push_str(&word);
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

/// The words of a text, keeping a short `quoted reply` in one piece so that a code and its
/// enhanced code are never split across lines.
fn words(text: &str) -> Vec<String> {
    const SHORT_QUOTE: usize = 32;
    let mut words: Vec<String> = Vec::new();
    let mut open: Option<String> = None;
    for word in text.split_whitespace() {
        let joined = match open.take() {
            Some(mut quote) => {
                quote.push(' ');
                quote.push_str(word);
                quote
            }
            None => word.to_string(),
        };
        let inside = joined.starts_with('`') && joined.matches('`').count() % 2 == 1;
        if inside && joined.chars().count() < SHORT_QUOTE {
            open = Some(joined);
        } else {
            words.extend(split_long_quote(joined, SHORT_QUOTE));
        }
    }
    words.extend(open);
    words
}

/// A quote that grew too long goes back to being separate words.
fn split_long_quote(joined: String, limit: usize) -> Vec<String> {
    match joined.chars().count() < limit || !joined.contains(' ') {
        true => vec![joined],
        false => joined.split(' ').map(str::to_string).collect(),
    }
}
