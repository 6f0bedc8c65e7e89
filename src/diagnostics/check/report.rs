//! The result of a check: one entry per step, the diagnosis, and both renderings (a text report
//! for people, JSON for scripts).

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// A stable name, for scripts: `connect`, `greeting`, `tls`, `login`, ...
    pub step: String,
    pub status: Status,
    /// The server's reply (last line), when there was one.
    pub reply: Option<String>,
    /// What the outcome means, in a few words.
    pub meaning: String,
    /// What to do about it, for failures and warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
}

impl Step {
    pub fn new(step: &str, status: Status, meaning: impl Into<String>) -> Step {
        Step {
            step: step.to_string(),
            status,
            reply: None,
            meaning: meaning.into(),
            diagnosis: None,
        }
    }

    pub fn pass(step: &str, meaning: impl Into<String>) -> Step {
        Step::new(step, Status::Pass, meaning)
    }

    pub fn warn(step: &str, meaning: impl Into<String>) -> Step {
        Step::new(step, Status::Warn, meaning)
    }

    pub fn fail(step: &str, meaning: impl Into<String>) -> Step {
        Step::new(step, Status::Fail, meaning)
    }

    pub fn skip(step: &str, meaning: impl Into<String>) -> Step {
        Step::new(step, Status::Skip, meaning)
    }

    pub fn reply(mut self, reply: &crate::client::Reply) -> Step {
        self.reply = Some(reply.summary());
        self
    }

    pub fn diagnosis(mut self, text: impl Into<String>) -> Step {
        self.diagnosis = Some(text.into());
        self
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub host: String,
    pub port: u16,
    pub mode: &'static str,
    #[serde(skip)]
    pub mode_label: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode_note: Option<String>,
    pub steps: Vec<Step>,
    /// Every step's diagnosis in order, then conclusions drawn from several steps.
    pub diagnosis: Vec<String>,
    pub overall: Status,
    pub exit_status: u8,
    /// The SMTP dialogue with credentials redacted (`--verbose`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<Vec<String>>,
}

impl Report {
    /// Fills in the diagnosis and the overall result once all steps are in.
    pub fn finish(&mut self, conclusions: Vec<String>, all_good: &str) {
        let mut diagnosis: Vec<String> = Vec::new();
        let from_steps = self.steps.iter().filter_map(|s| s.diagnosis.clone());
        for text in from_steps.chain(conclusions) {
            if !diagnosis.contains(&text) {
                diagnosis.push(text);
            }
        }
        let has = |status| self.steps.iter().any(|s| s.status == status);
        self.overall = if has(Status::Fail) {
            Status::Fail
        } else if has(Status::Warn) {
            Status::Warn
        } else {
            Status::Pass
        };
        if diagnosis.is_empty() {
            diagnosis.push(all_good.to_string());
        }
        self.diagnosis = diagnosis;
        self.exit_status = u8::from(self.overall == Status::Fail);
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(transcript) = &self.transcript {
            out.push_str("Transcript (credentials redacted):\n");
            for line in transcript {
                let _ = writeln!(out, "  {line}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "portcullis check {} ({})",
            self.target, self.mode_label
        );
        if let Some(note) = &self.mode_note {
            let _ = writeln!(out, "note: {note}");
        }
        let width = self.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
        for step in &self.steps {
            let _ = write!(out, "{}  {:width$}  ", step.status.label(), step.step);
            if let Some(reply) = &step.reply {
                let _ = write!(out, "{reply} -- ");
            }
            let _ = writeln!(out, "{}", step.meaning);
        }
        out.push_str("\nDiagnosis:\n");
        for text in &self.diagnosis {
            let _ = writeln!(out, "  - {text}");
        }
        let _ = writeln!(
            out,
            "\nResult: {} (exit status {})",
            self.overall.label(),
            self.exit_status
        );
        out
    }
}
