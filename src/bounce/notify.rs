//! RFC 3461 NOTIFY: which delivery status notifications the sender asked for.

use std::fmt;
use std::str::FromStr;

use super::Action;

/// The value of the NOTIFY ESMTP parameter (RFC 3461 §4.1). `parse` never yields `never`
/// together with another flag; if a caller builds such a value by hand, `never` wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// `NEVER` alone, or a comma-separated list of `SUCCESS`, `FAILURE` and `DELAY`, in any
    /// letter case. A repeated keyword is harmless and accepted.
    pub fn parse(value: &str) -> Result<Notify, String> {
        let mut notify = Notify::default();
        for item in value.split(',') {
            match item.to_ascii_uppercase().as_str() {
                "NEVER" => notify.never = true,
                "SUCCESS" => notify.success = true,
                "FAILURE" => notify.failure = true,
                "DELAY" => notify.delay = true,
                "" => {
                    return Err(format!(
                        "NOTIFY={value:?} has an empty item; use NEVER or a comma-separated list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1)"
                    ));
                }
                other => {
                    return Err(format!(
                        "NOTIFY: unknown keyword {other:?}; use NEVER or a comma-separated list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1)"
                    ));
                }
            }
        }
        if notify.never && (notify.success || notify.failure || notify.delay) {
            return Err(format!(
                "NOTIFY={value:?}: NEVER cannot be combined with other keywords (RFC 3461 §4.1)"
            ));
        }
        Ok(notify)
    }
}

impl FromStr for Notify {
    type Err = String;
    fn from_str(value: &str) -> Result<Notify, String> {
        Notify::parse(value)
    }
}

/// The ESMTP parameter value, e.g. `FAILURE,DELAY`, for passing NOTIFY on when relaying.
impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.never {
            return f.write_str("NEVER");
        }
        let words: Vec<&str> = [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect();
        f.write_str(&words.join(","))
    }
}

/// Whether a DSN with this action is to be sent for one recipient.
///
/// - Never for a message with the null sender (`""` or `"<>"`): there is nobody to tell, and
///   answering a bounce with a bounce loops (RFC 5321 §4.5.5, RFC 3461 §6.2).
/// - `notify` is None when the recipient had no NOTIFY parameter: failures and delays only
///   (RFC 3461 §4.1).
/// - `relayed` and `expanded` are reported as successes (RFC 3461 §6.2.1, §6.2.4).
pub fn should_notify(envelope_sender: &str, notify: Option<Notify>, action: Action) -> bool {
    let sender = envelope_sender.trim();
    if sender.is_empty() || sender == "<>" {
        return false;
    }
    let notify = notify.unwrap_or(Notify {
        never: false,
        success: false,
        failure: true,
        delay: true,
    });
    if notify.never {
        return false;
    }
    match action {
        Action::Failed => notify.failure,
        Action::Delayed => notify.delay,
        Action::Delivered | Action::Relayed | Action::Expanded => notify.success,
    }
}
