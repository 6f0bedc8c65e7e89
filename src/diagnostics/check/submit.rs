//! The submission itself on a fresh connection: login, MAIL FROM, RCPT TO and, with `--send`,
//! DATA through the 250 that carries the queue id.

use std::time::SystemTime;

use super::connection::Smtp;
use super::probes::{MUST_STARTTLS_ADVICE, relay_denied, wants_tls};
use super::report::Step;
use super::{Checker, random_hex};
use crate::client::Reply;

const LATER_STEPS: [&str; 4] = ["login", "mail-from", "rcpt-to", "data"];

impl Checker {
    pub(super) async fn transaction(&mut self) {
        if self.plan.user.is_none() && self.plan.from.is_none() {
            self.skip_from("login", "no --user or --from given");
            return;
        }
        let session = match self.plan.user.clone() {
            Some(user) => self.login(&user).await,
            None => {
                self.record(Step::skip(
                    "login",
                    "no --user given; trying without a login",
                ));
                self.reconnect().await
            }
        };
        let Some(mut session) = session else {
            self.skip_from("mail-from", "not attempted after the failure above");
            return;
        };
        if !self.mail_from(&mut session.smtp).await {
            self.skip_from("rcpt-to", "not attempted after the failure above");
        } else if !self.rcpt_to(&mut session.smtp).await {
            self.skip_from("data", "not attempted after the failure above");
        } else {
            self.data(&mut session.smtp).await;
        }
        session.smtp.quit().await;
    }

    /// Marks `first` and every later step as skipped, so the report always lists them.
    fn skip_from(&mut self, first: &str, why: &str) {
        let start = LATER_STEPS.iter().position(|s| *s == first).unwrap_or(0);
        for step in &LATER_STEPS[start..] {
            self.record(Step::skip(step, why));
        }
    }

    async fn mail_from(&mut self, smtp: &mut Smtp) -> bool {
        const STEP: &str = "mail-from";
        let Some(from) = self.plan.from.clone() else {
            self.record(Step::skip(
                STEP,
                "no --from given (and --user is not an address)",
            ));
            return false;
        };
        let Some(reply) = self.ask(smtp, STEP, &format!("MAIL FROM:<{from}>")).await else {
            return false;
        };
        let accepted = reply.code == 250;
        let step = if accepted {
            Step::pass(STEP, format!("sender <{from}> accepted"))
        } else {
            self.mail_refused(&from, &reply)
        };
        self.record(step.reply(&reply));
        accepted
    }

    fn mail_refused(&self, from: &str, reply: &Reply) -> Step {
        const STEP: &str = "mail-from";
        let user = self.plan.user.as_deref().unwrap_or("");
        let logged_in = self.facts.logged_in;
        match reply.code {
            550 | 553 if logged_in => Step::fail(
                STEP,
                format!("sender <{from}> not allowed for {user}"),
            )
            .diagnosis(format!(
                "{} at MAIL FROM after a successful login: the sender address is not allowed for \
                 this user. The server lets {user} send only as addresses that belong to the \
                 account. Use your own address with --from (and as the From/identity in the mail \
                 client), or ask the administrator to allow <{from}> for {user}.",
                reply.code
            )),
            530 if wants_tls(reply) => Step::fail(STEP, "the server requires STARTTLS first")
                .diagnosis(MUST_STARTTLS_ADVICE),
            530 if logged_in => {
                Step::fail(STEP, "authentication required although the login succeeded").diagnosis(
                    "530 at MAIL after a successful AUTH: the server accepted the login (235) but \
                     still demands authentication, so it wants a different identity for this \
                     sender, or this port does not accept logins for submission (a port for \
                     incoming mail?). Check that --from belongs to --user and that you use the \
                     submission port (587 or 465).",
                )
            }
            530 => Step::fail(STEP, "authentication required").diagnosis(
                "The server requires a login before MAIL (530): give --user with \
                 --password-stdin or --password-file, and set the client to log in (SMTP AUTH).",
            ),
            501 | 553 => {
                Step::fail(STEP, format!("sender address <{from}> refused")).diagnosis(format!(
                    "The server refuses <{from}> as a sender address ({}): check its spelling; \
                 without a login many servers refuse every sender.",
                    reply.code
                ))
            }
            code => self.refused_generic(STEP, code),
        }
    }

    async fn rcpt_to(&mut self, smtp: &mut Smtp) -> bool {
        const STEP: &str = "rcpt-to";
        let Some(to) = self.plan.to.clone() else {
            self.record(Step::skip(STEP, "no --to given"));
            return false;
        };
        let Some(reply) = self.ask(smtp, STEP, &format!("RCPT TO:<{to}>")).await else {
            return false;
        };
        // Only 250/251 accept a recipient; another positive code (354, 334) is a broken server.
        let accepted = matches!(reply.code, 250 | 251);
        let step = if accepted {
            Step::pass(STEP, format!("recipient <{to}> accepted"))
        } else {
            self.rcpt_refused(&to, &reply)
        };
        self.record(step.reply(&reply));
        accepted
    }

    fn rcpt_refused(&mut self, to: &str, reply: &Reply) -> Step {
        const STEP: &str = "rcpt-to";
        let domain = to.rsplit_once('@').map_or(to, |(_, domain)| domain);
        let text = reply.summary().to_ascii_lowercase();
        if relay_denied(reply) {
            self.facts.relay_denied = true;
            let advice = if self.facts.logged_in {
                format!(
                    "Relaying denied: the server refuses to pass mail on to {domain} although the \
                     login succeeded. This host looks like a server for incoming mail (MX) that \
                     accepts mail only for its own domains, or the account may not send to outside \
                     addresses. Use the provider's submission server (port 587 or 465)."
                )
            } else {
                format!(
                    "Relaying denied: the server passes mail on to other domains such as {domain} \
                     only for logged-in users. Give --user, or check that this is a submission \
                     server and not one for incoming mail (MX)."
                )
            };
            return Step::fail(STEP, format!("relaying to {domain} denied")).diagnosis(advice);
        }
        let unknown = reply.enhanced() == Some("5.1.1")
            || ["unknown", "does not exist", "no such"]
                .iter()
                .any(|t| text.contains(t));
        match reply.code {
            550..=559 if unknown => Step::fail(STEP, format!("recipient <{to}> does not exist"))
                .diagnosis(format!(
                    "The server says <{to}> does not exist: check the recipient address."
                )),
            530 if wants_tls(reply) => Step::fail(STEP, "the server requires STARTTLS first")
                .diagnosis(MUST_STARTTLS_ADVICE),
            530 => Step::fail(STEP, "authentication required").diagnosis(
                "The server requires a login before RCPT (530): give --user with a password.",
            ),
            code => self.refused_generic(STEP, code),
        }
    }

    async fn data(&mut self, smtp: &mut Smtp) {
        const STEP: &str = "data";
        if !self.plan.send {
            self.record(Step::skip(
                STEP,
                "no message sent (add --send to submit a test message)",
            ));
            let _ = smtp.command("RSET").await;
            return;
        }
        let Some(reply) = self.ask(smtp, STEP, "DATA").await else {
            return;
        };
        let step = if reply.code == 354 {
            self.message(smtp).await
        } else {
            self.refused_generic(STEP, reply.code).reply(&reply)
        };
        self.record(step);
    }

    async fn message(&mut self, smtp: &mut Smtp) -> Step {
        const STEP: &str = "data";
        let message = self.test_message();
        let reply = match smtp.message(&message).await {
            Ok(reply) => reply,
            Err(error) => return Step::fail(STEP, format!("no answer after the message: {error}")),
        };
        if reply.code != 250 {
            return self.refused_generic(STEP, reply.code).reply(&reply);
        }
        let meaning = match queue_id(&reply) {
            Some(id) => {
                let meaning = format!("message accepted, queue id {id}");
                self.facts.queue_id = Some(id);
                meaning
            }
            None => "message accepted (the reply names no queue id)".to_string(),
        };
        Step::pass(STEP, meaning).reply(&reply)
    }

    fn test_message(&self) -> Vec<u8> {
        let from = self.plan.from.as_deref().unwrap_or_default();
        let to = self.plan.to.as_deref().unwrap_or_default();
        let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
        format!(
            "Date: {date}\r\nFrom: <{from}>\r\nTo: <{to}>\r\n\
             Subject: portcullis check test message\r\n\
             Message-ID: <{id}.check@{domain}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n\
             This message was sent by `portcullis check` to test mail submission.\r\n\
             It can be deleted.\r\n",
            date = crate::timefmt::rfc5322(SystemTime::now()),
            id = random_hex(8),
        )
        .into_bytes()
    }

    /// The meaning of a refusal by its code alone.
    fn refused_generic(&self, step: &str, code: u16) -> Step {
        let (meaning, advice) = match code {
            421 => (
                "the server closed the session",
                "The server is shutting down or limits sessions (421); retry later.",
            ),
            450 | 451 => (
                "temporarily refused",
                "A temporary refusal (greylisting, a busy server or a failed lookup); a client retries later, and so can you.",
            ),
            452 => (
                "insufficient storage or too many recipients",
                "The server is short of space or got too many recipients (452); retry later or with fewer recipients.",
            ),
            552 => (
                "message too large",
                "The message exceeds the server's size limit (552).",
            ),
            554 => (
                "refused by policy",
                "The server refused this for policy reasons (554); the reply text says why.",
            ),
            500..=504 => (
                "command not accepted",
                "The server did not accept the command as sent; the --verbose transcript shows it.",
            ),
            _ => (
                "refused",
                "The server refused this step; the reply text says why.",
            ),
        };
        Step::fail(step, meaning).diagnosis(format!("{step}: {advice}"))
    }
}

/// The queue id in a 250 after DATA: `queued as ID` (Portcullis, Postfix) or `id=ID` (Exim).
fn queue_id(reply: &Reply) -> Option<String> {
    let text = reply.lines.last()?;
    let lower = text.to_ascii_lowercase();
    let start = lower
        .find("queued as ")
        .map(|at| at + "queued as ".len())
        .or_else(|| lower.find("id=").map(|at| at + "id=".len()))?;
    let id = text.get(start..)?.split_whitespace().next()?;
    let id = id.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_string()],
        }
    }

    #[test]
    fn queue_ids_of_common_servers() {
        let id = |text| queue_id(&reply(250, text));
        assert_eq!(
            id("2.0.0 OK: queued as 0000000100000000").as_deref(),
            Some("0000000100000000")
        );
        assert_eq!(
            id("2.0.0 Ok: queued as 4Xk2Lp1zQz").as_deref(),
            Some("4Xk2Lp1zQz")
        );
        assert_eq!(
            id("OK id=1tXyZ-000abc-Q1").as_deref(),
            Some("1tXyZ-000abc-Q1")
        );
        assert_eq!(id("Message accepted for delivery"), None);
    }

    #[test]
    fn relay_and_tls_refusals_are_recognised() {
        assert!(relay_denied(&reply(
            554,
            "5.7.1 <x@example.net>: Relay access denied"
        )));
        assert!(relay_denied(&reply(550, "5.7.1 relaying denied")));
        assert!(!relay_denied(&reply(550, "5.1.1 user unknown")));
        assert!(wants_tls(&reply(
            530,
            "5.7.0 Must issue a STARTTLS command first"
        )));
        assert!(!wants_tls(&reply(530, "5.7.0 Authentication required")));
    }
}
