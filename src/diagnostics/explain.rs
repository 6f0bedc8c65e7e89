//! `portcullis explain`: what an SMTP reply code, an enhanced status code, or a whole pasted
//! reply line means, why it happens, what to do about it, and whether to retry.

use std::fmt;

use serde::Serialize;

use super::knowledge::{
    self, BasicEntry, Combination, Digit, EnhancedEntry, Knowledge, Retry, RetryAdvice,
};
use super::query::{self, Enhanced, Query};
use super::render;

/// Everything known about one query; serialised as is for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The input as given.
    pub input: String,
    /// The reply as understood: codes and text.
    pub reply: ReplyParts,
    /// The specific meaning of this combination of codes and text, when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combination: Option<Combination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicPart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<EnhancedPart>,
    /// Whether and when to retry, from the most specific source available.
    pub retry: Retry,
    /// False when the enhanced class contradicts the basic code.
    pub consistent: bool,
    /// Warnings: inconsistencies, unregistered or deprecated codes.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplyParts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One digit of a code and what it means in its position.
#[derive(Debug, Clone, Serialize)]
pub struct DigitMeaning {
    pub position: &'static str,
    pub value: String,
    pub name: String,
    pub meaning: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rfc: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BasicPart {
    pub code: u16,
    pub digits: Vec<DigitMeaning>,
    /// None for a well-formed code that no RFC known here defines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<BasicEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnhancedPart {
    pub code: String,
    pub pattern: String,
    /// In the IANA registry (false for unknown details and vendors' own codes).
    pub registered: bool,
    pub digits: Vec<DigitMeaning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<EnhancedEntry>,
}

/// Why a query cannot be explained; the message says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplainError {
    Empty,
    NotACode(String),
    InvalidBasic {
        code: String,
        reason: String,
    },
    InvalidEnhanced {
        code: String,
        reason: &'static str,
    },
    /// `related` names registry entries that pair with the code (523 with X.7.10, ...).
    UnknownBasic {
        code: u16,
        digits: String,
        related: String,
    },
    UnknownEnhanced {
        code: String,
        digits: String,
    },
    /// The embedded knowledge base does not parse: a bug, caught by the unit tests.
    KnowledgeBase(String),
}

const FORMS: &str = "Try 530, 5.7.8, \"530 5.7.0\" or a whole reply line; `portcullis explain --list` lists every code, and `portcullis explain --bounce FILE` reads a whole bounce message";

impl fmt::Display for ExplainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplainError::Empty => write!(f, "nothing to explain. {FORMS}"),
            ExplainError::NotACode(input) => {
                write!(
                    f,
                    "{input:?} is not an SMTP reply code or enhanced status code. {FORMS}"
                )
            }
            ExplainError::InvalidBasic { code, reason } => write!(
                f,
                "{code} is not an SMTP reply code: {reason}; basic codes are 2xx-5xx with a second digit of 0-5 (RFC 5321 §4.2). {FORMS}"
            ),
            ExplainError::InvalidEnhanced { code, reason } => write!(
                f,
                "{code} is not an enhanced status code: {reason} (RFC 3463). {FORMS}"
            ),
            ExplainError::UnknownBasic {
                code,
                digits,
                related,
            } => write!(
                f,
                "{code} is not a reply code defined by RFC 5321 or its AUTH, STARTTLS and null-MX extensions; by its digits: {digits}. Clients act on its first digit alone (RFC 5321 §4.2).{related} {FORMS}"
            ),
            ExplainError::UnknownEnhanced { code, digits } => write!(
                f,
                "{code} is not in the IANA enhanced status code registry (nor a known vendor code); by its numbers: {digits}. {FORMS}"
            ),
            ExplainError::KnowledgeBase(message) => write!(
                f,
                "the built-in knowledge base is damaged ({message}); this is a bug in portcullis"
            ),
        }
    }
}

impl std::error::Error for ExplainError {}

/// Explains a code or a pasted reply line.
pub fn explain(input: &str) -> Result<Explanation, ExplainError> {
    let kb = knowledge::get().map_err(ExplainError::KnowledgeBase)?;
    let query = query::parse(input)?;
    let basic = query.basic.map(|code| basic_part(kb, code));
    let enhanced = query.enhanced.map(|code| enhanced_part(kb, &code));
    require_something_known(kb, basic.as_ref(), enhanced.as_ref())?;
    let text = query.text.as_deref().unwrap_or("");
    let combination = kb
        .combination(query.basic, query.enhanced.as_ref(), text)
        .cloned();
    let mut notes = Vec::new();
    let consistent = check_classes(&query, &mut notes);
    note_unknown_parts(basic.as_ref(), enhanced.as_ref(), &mut notes);
    let retry = retry_advice(
        combination.as_ref(),
        basic.as_ref(),
        enhanced.as_ref(),
        &query,
    );
    Ok(Explanation {
        input: input.trim().to_string(),
        reply: ReplyParts {
            basic: query.basic,
            enhanced: query.enhanced.map(|e| e.to_string()),
            text: query.text.clone(),
        },
        combination,
        basic,
        enhanced,
        retry,
        consistent,
        notes,
    })
}

pub fn render_text(explanation: &Explanation, color: bool) -> String {
    render::text(explanation, color)
}

pub fn render_json(explanation: &Explanation) -> String {
    // Serialising plain data cannot fail; the fallback keeps the output valid JSON regardless.
    serde_json::to_string_pretty(explanation)
        .map(|json| json + "\n")
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}\n", e.to_string()))
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// CODE or a pasted reply line (several words are joined with spaces)
    #[arg(value_name = "CODE")]
    pub code: Vec<String>,
    /// Print the explanation as JSON
    #[arg(long)]
    pub json: bool,
    /// List every known code with a short title
    #[arg(long, conflicts_with = "bounce")]
    pub list: bool,
    /// Read a bounce message (a DSN or a provider's notice; - for standard input) and explain
    /// each failed recipient: retry, fix DNS, remove the address...
    #[arg(long, value_name = "FILE|-", conflicts_with = "code")]
    pub bounce: Option<String>,
}

/// Runs the command; returns the text to print on stdout, or an error message (the CLI maps Err
/// to exit status 65). The text ends with a newline (print it with `print!`); the message has none.
pub fn run(args: &ExplainArgs, color: bool) -> Result<String, String> {
    if args.list {
        let kb = knowledge::get().map_err(|m| ExplainError::KnowledgeBase(m).to_string())?;
        return Ok(render::list(kb));
    }
    let input = args.code.join(" ");
    let explanation = explain(&input).map_err(|e| e.to_string())?;
    Ok(match args.json {
        true => render_json(&explanation),
        false => render_text(&explanation, color),
    })
}

fn basic_part(kb: &Knowledge, code: u16) -> BasicPart {
    BasicPart {
        code,
        digits: basic_digits(kb, code),
        entry: kb.basic(code).cloned(),
    }
}

fn basic_digits(kb: &Knowledge, code: u16) -> Vec<DigitMeaning> {
    let digits = [code / 100, code / 10 % 10, code % 10];
    let mut out = Vec::new();
    for (position, name) in ["first", "second"].into_iter().enumerate() {
        if let Some(digit) = kb.basic_digit(position, digits[position] as u8) {
            out.push(digit_meaning(name, digits[position].to_string(), digit));
        }
    }
    out.push(DigitMeaning {
        position: "third",
        value: digits[2].to_string(),
        name: "detail".into(),
        meaning: "A finer distinction within the category given by the first two digits.".into(),
        rfc: None,
    });
    out
}

fn enhanced_part(kb: &Knowledge, code: &Enhanced) -> EnhancedPart {
    let entry = kb.enhanced(code).cloned();
    EnhancedPart {
        code: code.to_string(),
        pattern: code.pattern(),
        registered: entry.as_ref().is_some_and(EnhancedEntry::registered),
        digits: enhanced_digits(kb, code),
        entry,
    }
}

fn enhanced_digits(kb: &Knowledge, code: &Enhanced) -> Vec<DigitMeaning> {
    let mut out = Vec::new();
    match code.class.and_then(|class| kb.class(class)) {
        Some(class) => out.push(digit_meaning("class", class.digit.to_string(), class)),
        None => out.push(DigitMeaning {
            position: "class",
            value: "X".into(),
            name: "any class".into(),
            meaning: "The registry writes X: the code is used with class 2 (success), 4 (temporary failure) or 5 (permanent failure), matching the reply code's first digit.".into(),
            rfc: Some("RFC 3463 §2".into()),
        }),
    }
    if let Some(subject) = kb.subject(code.subject) {
        out.push(digit_meaning("subject", code.subject.to_string(), subject));
    }
    out.push(DigitMeaning {
        position: "detail",
        value: code.detail.to_string(),
        name: "detail".into(),
        meaning: "Which condition within the subject; see the meaning below.".into(),
        rfc: None,
    });
    out
}

fn digit_meaning(position: &'static str, value: String, digit: &Digit) -> DigitMeaning {
    DigitMeaning {
        position,
        value,
        name: digit.name.clone(),
        meaning: digit.meaning.clone(),
        rfc: digit.rfc.clone(),
    }
}

/// A query is explained when at least one of its codes is known; an unknown code on its own is
/// an error whose message still says what its digits mean.
fn require_something_known(
    kb: &Knowledge,
    basic: Option<&BasicPart>,
    enhanced: Option<&EnhancedPart>,
) -> Result<(), ExplainError> {
    let basic_known = basic.is_some_and(|b| b.entry.is_some());
    let enhanced_known = enhanced.is_some_and(|e| e.entry.is_some());
    if basic_known || enhanced_known {
        return Ok(());
    }
    if let Some(part) = basic {
        return Err(ExplainError::UnknownBasic {
            code: part.code,
            digits: describe_digits(&part.digits),
            related: registry_pairings(kb, part.code),
        });
    }
    match enhanced {
        Some(part) => Err(ExplainError::UnknownEnhanced {
            code: part.code.clone(),
            digits: describe_digits(&part.digits),
        }),
        None => Err(ExplainError::Empty),
    }
}

/// Some servers use reply codes that only the enhanced-code registry mentions (523, 525, ...).
fn registry_pairings(kb: &Knowledge, code: u16) -> String {
    let entries: Vec<String> = kb
        .enhanced
        .iter()
        .filter(|entry| entry.registry_basic.contains(&code))
        .map(|entry| format!("{} ({})", entry.code, entry.title))
        .collect();
    match entries.is_empty() {
        true => String::new(),
        false => format!(
            " The IANA enhanced-code registry pairs it with {}.",
            entries.join(", ")
        ),
    }
}

fn describe_digits(digits: &[DigitMeaning]) -> String {
    digits
        .iter()
        .filter(|d| d.name != "detail")
        .map(|d| format!("{} {} = {}", d.position, d.value, d.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 2034 §4: the enhanced class agrees with the reply code's first digit, and 3xx replies
/// carry no enhanced code.
fn check_classes(query: &Query, notes: &mut Vec<String>) -> bool {
    let (
        Some(basic),
        Some(Enhanced {
            class: Some(class), ..
        }),
    ) = (query.basic, query.enhanced)
    else {
        return true;
    };
    let first = basic / 100;
    if first == 3 {
        notes.push(format!(
            "Unusual: {basic} is an intermediate reply, and enhanced status codes are not used with 3xx replies (RFC 2034 §4)."
        ));
        return false;
    }
    if u16::from(class) == first {
        return true;
    }
    notes.push(format!(
        "Inconsistent: the enhanced class {class} ({}) contradicts reply code {basic} ({}). The enhanced code's class must agree with the reply code's first digit (RFC 2034 §4). Clients act on the reply code (RFC 5321 §4.2), so treat this as {}, and report the inconsistency to the server's operator.",
        class_word(u16::from(class)),
        class_word(first),
        class_word(first),
    ));
    false
}

fn class_word(digit: u16) -> &'static str {
    match digit {
        2 => "success",
        3 => "waiting for more",
        4 => "a temporary failure",
        _ => "a permanent failure",
    }
}

fn note_unknown_parts(
    basic: Option<&BasicPart>,
    enhanced: Option<&EnhancedPart>,
    notes: &mut Vec<String>,
) {
    if let Some(part) = basic.filter(|b| b.entry.is_none()) {
        notes.push(format!(
            "{} is not a reply code defined by RFC 5321 or its AUTH, STARTTLS and null-MX extensions; only its digits can be read: {}.",
            part.code,
            describe_digits(&part.digits)
        ));
    }
    let Some(part) = enhanced else { return };
    match &part.entry {
        None => notes.push(format!(
            "{} is not in the IANA enhanced status code registry; only its class and subject can be read: {}.",
            part.code,
            describe_digits(&part.digits)
        )),
        Some(entry) if entry.deprecated => notes.push(format!(
            "{} is deprecated in the IANA registry: {}",
            entry.code, entry.meaning
        )),
        Some(entry) => {
            if let Some(vendor) = &entry.vendor {
                notes.push(format!(
                    "{} is not in the IANA registry: it is {vendor}'s own code, seen in the wild, not standard.",
                    part.code
                ));
            }
        }
    }
}

/// The most specific advice wins: the combination, then the reply code, then the enhanced
/// class (with the code's own retry note).
fn retry_advice(
    combination: Option<&Combination>,
    basic: Option<&BasicPart>,
    enhanced: Option<&EnhancedPart>,
    query: &Query,
) -> Retry {
    if let Some(retry) = combination.and_then(|c| c.retry.clone()) {
        return retry;
    }
    if let Some(entry) = basic.and_then(|b| b.entry.as_ref()) {
        return entry.retry.clone();
    }
    let class = query
        .basic
        .map(|b| (b / 100) as u8)
        .or_else(|| query.enhanced.and_then(|e| e.class));
    let advice = match class {
        Some(2) | Some(3) => RetryAdvice::NotNeeded,
        Some(4) => RetryAdvice::Yes,
        Some(_) => RetryAdvice::AfterFix,
        None => RetryAdvice::DependsOnClass,
    };
    let when = enhanced
        .and_then(|e| e.entry.as_ref())
        .map(|entry| entry.retry.clone())
        .unwrap_or_else(|| {
            "As the class says: 2 nothing to do, 4 retry later, 5 change something first.".into()
        });
    Retry { advice, when }
}
