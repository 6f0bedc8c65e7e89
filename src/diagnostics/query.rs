//! Reading what the user pasted: `530`, `5.7.0`, `X.7.8`, `530 5.7.8`, or a whole reply line,
//! possibly quoted, with a swaks prefix (`<-`, `<~`, `<**`, `<~*`) or a continuation hyphen
//! (`250-2.0.0 ...`). Form errors are reported here; whether a well-formed code is known is the
//! knowledge base's business.

use std::fmt;

use super::explain::ExplainError;

/// An enhanced status code `class.subject.detail`; `class` is None for the registry's `X`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced {
    pub class: Option<u8>,
    pub subject: u16,
    pub detail: u16,
}

impl Enhanced {
    /// The registry's way of writing it: `X.7.8`.
    pub fn pattern(&self) -> String {
        format!("X.{}.{}", self.subject, self.detail)
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class {
            Some(class) => write!(f, "{class}.{}.{}", self.subject, self.detail),
            None => f.write_str(&self.pattern()),
        }
    }
}

/// The parts of a reply line; at least one of the two codes is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub basic: Option<u16>,
    pub enhanced: Option<Enhanced>,
    pub text: Option<String>,
}

pub fn parse(input: &str) -> Result<Query, ExplainError> {
    let mut lines = input
        .lines()
        .map(strip_decoration)
        .filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return Err(ExplainError::Empty);
    };
    let mut query = parse_line(first)?;
    // A pasted multi-line reply repeats the code on every line; its text runs on.
    for line in lines {
        match parse_line(line) {
            Ok(next) if next.basic.is_some() && next.basic == query.basic => {
                query.text = join(query.text, next.text);
            }
            _ => break,
        }
    }
    Ok(query)
}

fn join(first: Option<String>, second: Option<String>) -> Option<String> {
    match (first, second) {
        (Some(a), Some(b)) => Some(format!("{a} {b}")),
        (a, b) => a.or(b),
    }
}

/// Removes surrounding whitespace and quotes and a leading swaks direction marker.
fn strip_decoration(line: &str) -> &str {
    let line = trim_quotes(line);
    let after_marker = line
        .strip_prefix('<')
        .map(|rest| rest.trim_start_matches(['-', '~', '*']))
        .filter(|rest| rest.len() + 1 < line.len());
    trim_quotes(after_marker.unwrap_or(line))
}

fn trim_quotes(text: &str) -> &str {
    text.trim()
        .trim_matches(['"', '\'', '`', '\u{201c}', '\u{201d}'])
        .trim()
}

fn parse_line(line: &str) -> Result<Query, ExplainError> {
    let (basic, rest) = split_basic(line)?;
    let (enhanced, rest) = split_enhanced(rest, basic.is_some())?;
    if basic.is_none() && enhanced.is_none() {
        return Err(ExplainError::NotACode(line.to_string()));
    }
    let text = Some(rest.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(Query {
        basic,
        enhanced,
        text,
    })
}

/// A leading three-digit reply code, and what follows it (after a space or a hyphen).
fn split_basic(line: &str) -> Result<(Option<u16>, &str), ExplainError> {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = &line[digits..];
    if digits == 0 || rest.starts_with('.') {
        return Ok((None, line));
    }
    let word = first_word(line);
    if digits != 3 || !(rest.is_empty() || rest.starts_with([' ', '\t', '-'])) {
        return Err(ExplainError::NotACode(word.to_string()));
    }
    let code = &line[..3];
    check_basic(code)?;
    let value = code
        .parse()
        .map_err(|_| ExplainError::NotACode(word.to_string()))?;
    Ok((Some(value), rest.get(1..).unwrap_or("")))
}

/// RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39.
fn check_basic(code: &str) -> Result<(), ExplainError> {
    let bytes = code.as_bytes();
    let (first, second) = (char::from(bytes[0]), char::from(bytes[1]));
    let reason = if !('2'..='5').contains(&first) {
        format!(
            "its first digit, {first}, is not 2 (success), 3 (send more), 4 (temporary failure) or 5 (permanent failure)"
        )
    } else if !('0'..='5').contains(&second) {
        format!("its second digit, {second}, is not 0-5")
    } else {
        return Ok(());
    };
    Err(ExplainError::InvalidBasic {
        code: code.to_string(),
        reason,
    })
}

/// A leading `class.subject.detail`; with a basic code in front, anything else is reply text.
fn split_enhanced(rest: &str, after_basic: bool) -> Result<(Option<Enhanced>, &str), ExplainError> {
    let rest = rest.trim_start();
    let word = first_word(rest);
    let token = word.trim_end_matches([',', ';', ':']);
    let parts: Vec<&str> = token.split('.').collect();
    let looks_enhanced = parts.len() >= 2
        && parts[0].len() == 1
        && parts[0].starts_with(|c: char| c.is_ascii_digit() || c == 'X' || c == 'x');
    if !looks_enhanced || (after_basic && parts.len() != 3) {
        return Ok((None, rest));
    }
    let code = parse_enhanced(token, &parts)?;
    Ok((Some(code), &rest[word.len()..]))
}

fn parse_enhanced(token: &str, parts: &[&str]) -> Result<Enhanced, ExplainError> {
    let invalid = |reason| ExplainError::InvalidEnhanced {
        code: token.to_string(),
        reason,
    };
    let [class, subject, detail] = parts else {
        return Err(invalid(
            "an enhanced status code has three numbers: class.subject.detail",
        ));
    };
    let number =
        |part: &str| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    if !number(subject) || !number(detail) {
        return Err(invalid(
            "the subject and the detail are numbers of one to three digits",
        ));
    }
    let class = match *class {
        "X" | "x" => None,
        "2" => Some(2),
        "4" => Some(4),
        "5" => Some(5),
        _ => {
            return Err(invalid(
                "the class must be 2 (success), 4 (temporary failure) or 5 (permanent failure)",
            ));
        }
    };
    let subject: u16 = subject
        .parse()
        .map_err(|_| invalid("the subject is not a number"))?;
    if subject > 7 {
        return Err(invalid(
            "the subject (middle number) must be 0 to 7: 0 other, 1 addressing, 2 mailbox, 3 mail system, 4 network and routing, 5 protocol, 6 content, 7 security or policy",
        ));
    }
    let detail = detail
        .parse()
        .map_err(|_| invalid("the detail is not a number"))?;
    Ok(Enhanced {
        class,
        subject,
        detail,
    })
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("")
}
