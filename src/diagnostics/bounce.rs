//! `portcullis explain --bounce`: every failed (or delayed) recipient of a bounce message, with
//! the receiving server's reply explained from the knowledge base and one verdict: retry, fix
//! DNS, remove the address, and so on. Sans-IO: the CLI reads the message.

use serde::Serialize;

use super::explain::{self, Explanation};
use super::knowledge::Verdict;
use super::query::{self, Enhanced};
use super::render;
use crate::bounce::parse::{self, BouncedRecipient, Form, ParseError};

/// Everything `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BounceExplanation {
    pub form: Form,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporting_mta: Option<String>,
    pub recipients: Vec<RecipientExplanation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipientExplanation {
    #[serde(flatten)]
    pub recipient: BouncedRecipient,
    pub verdict: Verdict,
    /// The verdict in a sentence.
    pub advice: &'static str,
    /// What happened, in a few words.
    pub title: String,
    /// The full explanation of the reply (or of the Status code when there is no reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// Reads a bounce and explains each failed recipient.
pub fn explain_bounce(message: &[u8]) -> Result<BounceExplanation, ParseError> {
    let bounce = parse::parse(message)?;
    let recipients = bounce
        .recipients
        .into_iter()
        .map(explain_recipient)
        .collect();
    Ok(BounceExplanation {
        form: bounce.form,
        reporting_mta: bounce.reporting_mta,
        recipients,
    })
}

pub fn render_text(report: &BounceExplanation, color: bool) -> String {
    render::bounce(report, color)
}

pub fn render_json(report: &BounceExplanation) -> String {
    // Serialising plain data cannot fail; the fallback keeps the output valid JSON regardless.
    serde_json::to_string_pretty(report)
        .map(|json| json + "\n")
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}\n", e.to_string()))
}

fn explain_recipient(recipient: BouncedRecipient) -> RecipientExplanation {
    let explanation = explanation_of(&recipient);
    let verdict = verdict(&recipient, explanation.as_ref());
    RecipientExplanation {
        title: title(explanation.as_ref()),
        advice: advice(verdict),
        verdict,
        explanation,
        recipient,
    }
}

/// The reply as given; else the Status code with the diagnostic text (a diagnostic that is no
/// SMTP reply, such as Postfix's `X-Postfix; mail forwarding loop`); else the Status alone.
fn explanation_of(recipient: &BouncedRecipient) -> Option<Explanation> {
    let reply = recipient.reply.as_deref();
    let status = recipient.status.as_deref();
    let with_status = status.zip(reply).map(|(s, r)| format!("{s} {r}"));
    [
        reply.map(str::to_string),
        with_status,
        status.map(str::to_string),
    ]
    .into_iter()
    .flatten()
    .find_map(|input| explain::explain(&input).ok())
}

fn title(explanation: Option<&Explanation>) -> String {
    let Some(explanation) = explanation else {
        return "No reply code to explain".to_string();
    };
    let combination = explanation.combination.as_ref().map(|c| c.title.clone());
    let enhanced = explanation
        .enhanced
        .as_ref()
        .and_then(|e| e.entry.as_ref())
        .map(|e| e.title.clone());
    let basic = explanation
        .basic
        .as_ref()
        .and_then(|b| b.entry.as_ref())
        .map(|b| b.title.clone());
    combination
        .or(enhanced)
        .or(basic)
        .unwrap_or_else(|| "Unknown reply".to_string())
}

/// The knowledge base's verdict for the reply, else one read from the enhanced code, else from
/// whether the failure is temporary.
fn verdict(recipient: &BouncedRecipient, explanation: Option<&Explanation>) -> Verdict {
    if let Some(verdict) = explanation
        .and_then(|e| e.combination.as_ref())
        .and_then(|c| c.verdict)
    {
        return verdict;
    }
    let enhanced = explanation
        .and_then(|e| e.reply.enhanced.clone())
        .or_else(|| recipient.status.clone())
        .and_then(|code| query::parse(&code).ok())
        .and_then(|q| q.enhanced);
    if let Some(verdict) = enhanced.and_then(verdict_of_code) {
        return verdict;
    }
    let basic_class = explanation.and_then(|e| e.reply.basic).map(|b| b / 100);
    let temporary = recipient.action.as_deref() == Some("delayed")
        || basic_class == Some(4)
        || (basic_class.is_none() && enhanced.and_then(|e| e.class) == Some(4));
    match temporary {
        true => Verdict::RetryLater,
        false => Verdict::ReadReply,
    }
}

/// RFC 3463 / RFC 7372 codes whose meaning decides the verdict by itself.
fn verdict_of_code(code: Enhanced) -> Option<Verdict> {
    match (code.class, code.subject, code.detail) {
        // Bad mailbox, bad destination domain, bad syntax, moved, domain accepts no mail.
        (Some(5), 1, 1 | 2 | 3 | 6 | 10) => Some(Verdict::RemoveAddress),
        (_, 2, 2) => Some(Verdict::RetryLater),
        (_, 2, 3) | (_, 3, 4) => Some(Verdict::ShrinkMessage),
        (_, 7, 20..=26) => Some(Verdict::FixDns),
        _ => None,
    }
}

pub fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::RetryLater => "retry later",
        Verdict::SlowDown => "retry later, more slowly",
        Verdict::FixDns => "fix DNS",
        Verdict::RemoveAddress => "remove the address",
        Verdict::ShrinkMessage => "send it smaller",
        Verdict::GetDelisted => "get delisted",
        Verdict::FixReputation => "fix your sending reputation",
        Verdict::ReadReply => "read the reply",
    }
}

fn advice(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::RetryLater => {
            "Temporary: nothing to change. A mail queue retries by itself; resend by hand only if it gave up."
        }
        Verdict::SlowDown => {
            "The receiver limits how much it takes from you: let the queue retry, and send to this provider at a lower rate for a while."
        }
        Verdict::FixDns => {
            "Sender authentication failed: publish or correct the DNS records named below (SPF, DKIM, DMARC or reverse DNS), then resend."
        }
        Verdict::RemoveAddress => {
            "The address does not exist: remove it from your lists and do not resend; repeated attempts hurt your reputation."
        }
        Verdict::ShrinkMessage => {
            "The message is too big for the receiver: resend it smaller (a link instead of the attachment)."
        }
        Verdict::GetDelisted => {
            "Your sending IP (or a domain in the message) is on a blocklist: remove the cause, request delisting, then resend."
        }
        Verdict::FixReputation => {
            "Refused for your reputation or the content: fix what the reply points at before resending; retrying unchanged fails again."
        }
        Verdict::ReadReply => {
            "No known cause decides it: read the reply below and change what it names before resending."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> BounceExplanation {
        let path = format!("{}/tests/data/bounces/{name}", env!("CARGO_MANIFEST_DIR"));
        let message = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        explain_bounce(&message).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn verdicts(report: &BounceExplanation) -> Vec<(&str, Verdict)> {
        report
            .recipients
            .iter()
            .map(|r| (r.recipient.address.as_str(), r.verdict))
            .collect()
    }

    #[test]
    fn every_sample_gets_the_right_verdict_per_recipient() {
        let cases: &[(&str, &[(&str, Verdict)])] = &[
            (
                "rfc3464.eml",
                &[
                    ("nobody@example.com", Verdict::RemoveAddress),
                    ("full@example.net", Verdict::RetryLater),
                    ("fast@example.net", Verdict::SlowDown),
                ],
            ),
            (
                "gmail-5.7.26.eml",
                &[("bob@gmail.example", Verdict::FixDns)],
            ),
            (
                "gmail-address-not-found.eml",
                &[("nobody@example.net", Verdict::RemoveAddress)],
            ),
            (
                "microsoft-ndr.eml",
                &[
                    ("bob@contoso.example", Verdict::RemoveAddress),
                    ("carol@outlook.example", Verdict::GetDelisted),
                ],
            ),
            (
                "yahoo.eml",
                &[
                    ("dave@yahoo.example", Verdict::RemoveAddress),
                    ("erin@yahoo.example", Verdict::SlowDown),
                ],
            ),
            (
                "postfix.eml",
                &[
                    ("ghost@example.com", Verdict::RemoveAddress),
                    ("frank@example.net", Verdict::GetDelisted),
                    ("grace@example.net", Verdict::ShrinkMessage),
                ],
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(verdicts(&sample(name)), *expected, "{name}");
        }
    }

    #[test]
    fn the_gmail_dmarc_reply_is_named_as_such() {
        let report = sample("gmail-5.7.26.eml");
        assert_eq!(
            report.recipients[0].title,
            "DMARC policy rejection (Gmail and others)"
        );
    }

    #[test]
    fn a_code_decides_when_no_combination_does() {
        assert_eq!(
            verdict_of_code(query::parse("5.1.2").unwrap().enhanced.unwrap()),
            Some(Verdict::RemoveAddress)
        );
        assert_eq!(
            verdict_of_code(query::parse("4.1.1").unwrap().enhanced.unwrap()),
            None
        );
        let delayed = BouncedRecipient {
            address: "x@example.com".into(),
            action: Some("delayed".into()),
            status: Some("4.4.1".into()),
            remote_mta: None,
            reply: None,
        };
        assert_eq!(explain_recipient(delayed).verdict, Verdict::RetryLater);
    }

    #[test]
    fn a_diagnostic_without_reply_code_is_explained_by_its_status() {
        let looped = BouncedRecipient {
            address: "x@example.com".into(),
            action: Some("failed".into()),
            status: Some("5.4.6".into()),
            remote_mta: None,
            reply: Some("mail forwarding loop for x@example.com".into()),
        };
        let explained = explain_recipient(looped);
        let explanation = explained.explanation.expect("explained by its status");
        assert_eq!(explanation.reply.enhanced.as_deref(), Some("5.4.6"));
        assert_eq!(explained.verdict, Verdict::ReadReply);
    }

    #[test]
    fn json_names_each_recipient_with_its_verdict() {
        let json = render_json(&sample("postfix.eml"));
        let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(value["form"], "rfc3464");
        assert_eq!(value["recipients"][1]["address"], "frank@example.net");
        assert_eq!(value["recipients"][1]["verdict"], "get_delisted");
        assert_eq!(
            value["recipients"][1]["explanation"]["combination"]["provider"],
            "Spamhaus"
        );
    }
}
