//! The knowledge base: `codes.toml`, compiled into the binary and parsed (and cross-checked) the
//! first time a code is explained. The data model mirrors the file; see its header for the
//! conventions.

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::query::{self, Enhanced};

const SOURCE: &str = include_str!("codes.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Knowledge {
    pub basic_first_digit: Vec<Digit>,
    pub basic_second_digit: Vec<Digit>,
    pub enhanced_class: Vec<Digit>,
    pub enhanced_subject: Vec<Digit>,
    pub basic: Vec<BasicEntry>,
    pub enhanced: Vec<EnhancedEntry>,
    pub combination: Vec<Combination>,
}

/// What one digit (or number) of a code means in its position.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Digit {
    pub digit: u8,
    pub name: String,
    pub meaning: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc: Option<String>,
}

/// Who sent the reply, which decides whose configuration is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Submission,
    Mx,
    Either,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAdvice {
    NotNeeded,
    Yes,
    AfterFix,
    No,
    /// For a registry pattern (X.7.8) queried without a class.
    DependsOnClass,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub advice: RetryAdvice,
    pub when: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Confusion {
    pub code: String,
    pub difference: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicEntry {
    pub code: u16,
    pub title: String,
    pub meaning: String,
    pub rfc: String,
    pub commands: Vec<String>,
    pub side: Side,
    pub when: String,
    pub causes: Vec<String>,
    pub fix: Vec<String>,
    pub retry: Retry,
    #[serde(default)]
    pub confused_with: Vec<Confusion>,
    #[serde(default)]
    pub in_the_wild: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portcullis: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnhancedEntry {
    /// `X.7.8` for a registered code; a concrete `5.7.139` for a vendor's unregistered one.
    pub code: String,
    /// Set only for codes outside the IANA registry: who sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    pub title: String,
    pub meaning: String,
    pub rfc: String,
    /// The reply codes the IANA registry associates with this code (for a vendor's code: the
    /// ones it is seen with).
    pub registry_basic: Vec<u16>,
    pub side: Side,
    pub when: String,
    pub causes: Vec<String>,
    pub fix: Vec<String>,
    /// Retry advice for this code; the class digit decides the default.
    pub retry: String,
    #[serde(default)]
    pub confused_with: Vec<Confusion>,
    #[serde(default)]
    pub in_the_wild: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portcullis: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
}

impl EnhancedEntry {
    pub fn registered(&self) -> bool {
        self.vendor.is_none()
    }
}

/// What the sender of a bounced message should do about one recipient: the one-word answer
/// `explain --bounce` gives before the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Temporary: the mail system retries by itself; nothing to change.
    RetryLater,
    /// The receiver limits the rate: retry later, and send to it more slowly.
    SlowDown,
    /// Sender authentication (SPF, DKIM, DMARC, reverse DNS) failed: publish or correct records.
    FixDns,
    /// The address does not exist: take it off the list.
    RemoveAddress,
    /// The message is larger than the receiver accepts.
    ShrinkMessage,
    /// The sending IP is on a blocklist: remove the cause, then request delisting.
    GetDelisted,
    /// Refused for the sender's reputation or the content (spam judgement).
    FixReputation,
    /// Nothing known decides it: the reply's text says what to change.
    ReadReply,
}

/// A reply whose meaning is more specific than its basic and enhanced codes taken apart: one of
/// the standard combinations, or a provider's well-known reply recognised by its codes and text.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Combination {
    /// The reply codes it is seen with; one must match.
    #[serde(deserialize_with = "one_or_many")]
    pub basic: Vec<u16>,
    /// Enhanced codes (with their class); when given, one must match.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub enhanced: Vec<String>,
    /// Lower-case fragments; one must occur in the reply text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<String>,
    /// Whose reply this is, for a provider's own wording (Gmail, Microsoft, Yahoo, Spamhaus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub title: String,
    pub means: String,
    pub fix: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// What a bounced sender should do; without it, `explain --bounce` derives it from the codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portcullis: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_the_wild: Vec<String>,
}

/// A field written either as one value or as a list (`basic = 550` or `basic = [550, 554]`).
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(value) => vec![value],
        OneOrMany::Many(values) => values,
    })
}

impl Combination {
    /// How well this combination fits a reply, or None when it does not apply. The text is the
    /// strongest evidence of what happened (530 5.7.0 means two things), then the enhanced code.
    /// A reply known only by its enhanced code and text (a DSN's Status with a diagnostic that
    /// carries no reply code) fits only through its text.
    pub fn score(&self, basic: Option<u16>, enhanced: Option<&Enhanced>, text: &str) -> Option<u8> {
        if basic.is_some_and(|code| !self.basic.contains(&code)) {
            return None;
        }
        let enhanced_matches = match self.enhanced.is_empty() {
            true => false,
            false if enhanced.is_some_and(|e| self.enhanced.contains(&e.to_string())) => true,
            false => return None,
        };
        let text_matches = match self.text.is_empty() {
            true => false,
            false if self.text.iter().any(|t| text.contains(t.as_str())) => true,
            false => return None,
        };
        if basic.is_none() && !text_matches {
            return None;
        }
        Some(2 * u8::from(text_matches) + u8::from(enhanced_matches))
    }
}

/// The parsed knowledge base, or why the embedded file is broken (a bug caught by the tests).
pub(crate) fn get() -> Result<&'static Knowledge, String> {
    static KNOWLEDGE: OnceLock<Result<Knowledge, String>> = OnceLock::new();
    KNOWLEDGE
        .get_or_init(|| parse(SOURCE))
        .as_ref()
        .map_err(Clone::clone)
}

pub(crate) fn parse(source: &str) -> Result<Knowledge, String> {
    let knowledge: Knowledge = toml::from_str(source).map_err(|e| format!("codes.toml: {e}"))?;
    knowledge.check().map_err(|e| format!("codes.toml: {e}"))?;
    Ok(knowledge)
}

impl Knowledge {
    pub fn basic(&self, code: u16) -> Option<&BasicEntry> {
        self.basic.iter().find(|entry| entry.code == code)
    }

    /// The registry entry for the code's pattern, else a vendor entry for the exact code.
    pub fn enhanced(&self, code: &Enhanced) -> Option<&EnhancedEntry> {
        let pattern = code.pattern();
        let exact = code.to_string();
        let find = |wanted: &str| self.enhanced.iter().find(|entry| entry.code == wanted);
        find(&pattern).or_else(|| code.class.and_then(|_| find(&exact)))
    }

    /// The combination that best fits the reply; ties go to the first in the file.
    pub fn combination(
        &self,
        basic: Option<u16>,
        enhanced: Option<&Enhanced>,
        text: &str,
    ) -> Option<&Combination> {
        let text = text.to_lowercase();
        let mut best: Option<(u8, &Combination)> = None;
        for combination in &self.combination {
            let Some(score) = combination.score(basic, enhanced, &text) else {
                continue;
            };
            if best.is_none_or(|(top, _)| score > top) {
                best = Some((score, combination));
            }
        }
        best.map(|(_, combination)| combination)
    }

    pub fn basic_digit(&self, position: usize, digit: u8) -> Option<&Digit> {
        let table = match position {
            0 => &self.basic_first_digit,
            1 => &self.basic_second_digit,
            _ => return None,
        };
        table.iter().find(|d| d.digit == digit)
    }

    pub fn class(&self, digit: u8) -> Option<&Digit> {
        self.enhanced_class.iter().find(|d| d.digit == digit)
    }

    pub fn subject(&self, digit: u16) -> Option<&Digit> {
        self.enhanced_subject
            .iter()
            .find(|d| u16::from(d.digit) == digit)
    }

    /// Cross-checks that serde cannot express, so that a slip in the file fails the tests
    /// instead of producing a misleading explanation.
    fn check(&self) -> Result<(), String> {
        self.check_unique()?;
        for entry in &self.basic {
            check_filled(&entry.code.to_string(), &entry.causes, &entry.fix)?;
            self.check_references(&entry.code.to_string(), &entry.confused_with)?;
        }
        for entry in &self.enhanced {
            self.check_enhanced(entry)?;
        }
        for combination in &self.combination {
            self.check_combination(combination)?;
        }
        Ok(())
    }

    fn check_unique(&self) -> Result<(), String> {
        let mut basic = HashSet::new();
        if let Some(entry) = self.basic.iter().find(|e| !basic.insert(e.code)) {
            return Err(format!("basic code {} appears twice", entry.code));
        }
        let mut enhanced = HashSet::new();
        match self.enhanced.iter().find(|e| !enhanced.insert(&e.code)) {
            Some(entry) => Err(format!("enhanced code {} appears twice", entry.code)),
            None => Ok(()),
        }
    }

    fn check_enhanced(&self, entry: &EnhancedEntry) -> Result<(), String> {
        let parsed = query::parse(&entry.code).map_err(|e| format!("{}: {e}", entry.code))?;
        let Some(code) = parsed.enhanced.filter(|_| parsed.basic.is_none()) else {
            return Err(format!("{} is not an enhanced status code", entry.code));
        };
        // Registered codes are patterns (X.7.8); only a vendor's code names a class.
        if code.class.is_some() == entry.registered() {
            return Err(format!(
                "{}: registered codes are written X.s.d, vendor codes with a class",
                entry.code
            ));
        }
        check_filled(&entry.code, &entry.causes, &entry.fix)?;
        self.check_references(&entry.code, &entry.confused_with)
    }

    fn check_combination(&self, combination: &Combination) -> Result<(), String> {
        let name = format!(
            "combination {:?} {}: {}",
            combination.basic,
            combination.enhanced.join(","),
            combination.title
        );
        if combination.basic.is_empty() {
            return Err(format!("{name}: needs a reply code"));
        }
        if combination.enhanced.is_empty() && combination.text.is_empty() {
            return Err(format!("{name}: needs an enhanced code or a text"));
        }
        if combination.text.iter().any(|t| *t != t.to_lowercase()) {
            return Err(format!("{name}: text fragments must be lower case"));
        }
        for basic in &combination.basic {
            if combination.enhanced.is_empty() {
                self.check_reference(&name, &basic.to_string())?;
            }
            for enhanced in &combination.enhanced {
                self.check_reference(&name, &format!("{basic} {enhanced}"))?;
            }
        }
        Ok(())
    }

    fn check_references(&self, name: &str, confusions: &[Confusion]) -> Result<(), String> {
        confusions
            .iter()
            .try_for_each(|c| self.check_reference(name, &c.code))
    }

    /// A reference must name codes that this file explains.
    fn check_reference(&self, name: &str, reference: &str) -> Result<(), String> {
        let parsed = query::parse(reference).map_err(|e| format!("{name}: {e}"))?;
        if let Some(basic) = parsed.basic.filter(|&code| self.basic(code).is_none()) {
            return Err(format!("{name}: refers to unknown basic code {basic}"));
        }
        match parsed.enhanced {
            Some(code) if self.enhanced(&code).is_none() => {
                Err(format!("{name}: refers to unknown enhanced code {code}"))
            }
            _ => Ok(()),
        }
    }
}

fn check_filled(name: &str, causes: &[String], fix: &[String]) -> Result<(), String> {
    match causes.is_empty() || fix.is_empty() {
        true => Err(format!("{name}: causes and fix must not be empty")),
        false => Ok(()),
    }
}
