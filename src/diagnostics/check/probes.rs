//! The server's policy, probed without the user's credentials: which AUTH mechanisms it offers,
//! whether it takes mail without a login (an open relay), and whether it refuses made-up
//! credentials.

use super::connection::Smtp;
use super::report::Step;
use super::target::Mode;
use super::{Checker, Session, auth_line, random_hex};
use crate::client::Reply;
use crate::policy::logins::CHECK_PROBE_USER;

/// Used for probes when no --from/--to is given; nothing is ever sent to them.
const PROBE_SENDER: &str = "portcullis-check@example.com";
const PROBE_RECIPIENT: &str = "postmaster@example.com";

pub(super) const MUST_STARTTLS_ADVICE: &str = "530 \"Must issue a STARTTLS command first\": the client \
     skipped TLS, and this server accepts logins and mail only after STARTTLS. Use --starttls \
     (port 587) or --tls (port 465), and set the mail client to STARTTLS or SSL/TLS.";

pub(super) const LOCKED_ADVICE: &str = "A temporary authentication failure (454) or a closed \
     connection (421) after failed logins usually means the server has locked the account or \
     your IP address for a while after too many failures (or cannot reach its account \
     database). Wait, often 15 to 60 minutes, then retry once with the correct password; \
     retrying meanwhile can extend the lock.";

/// A 530 (or 538) that asks for TLS rather than for a login.
pub(super) fn wants_tls(reply: &Reply) -> bool {
    let text = reply.summary().to_ascii_lowercase();
    matches!(reply.code, 530 | 538) && (text.contains("tls") || text.contains("encrypt"))
}

/// `550 5.7.1 relaying denied`, `554 relay access denied` and the like.
pub(super) fn relay_denied(reply: &Reply) -> bool {
    let text = reply.summary().to_ascii_lowercase();
    reply.code >= 500 && (text.contains("relay") || reply.enhanced() == Some("5.7.1"))
}

impl Checker {
    pub(super) async fn probe(&mut self, mut session: Session) {
        self.mechanisms_step(&session.extensions);
        if self.unauthenticated_mail(&mut session.smtp).await {
            self.random_credentials(&mut session.smtp).await;
        }
        session.smtp.quit().await;
    }

    fn mechanisms_step(&mut self, extensions: &[String]) {
        const STEP: &str = "auth-mechanisms";
        let offered = auth_line(extensions);
        self.facts.auth_offered = Some(offered.is_some());
        let mut usable = Vec::new();
        for mechanism in ["PLAIN", "LOGIN"] {
            if offered.iter().flatten().any(|m| m == mechanism) {
                usable.push(mechanism);
            }
        }
        self.facts.mechanisms = usable.clone();
        let needed = self.plan.user.is_some();
        let problem = |meaning: String| {
            if needed {
                Step::fail(STEP, meaning)
            } else {
                Step::warn(STEP, meaning)
            }
        };
        let step = match offered {
            Some(all) if !usable.is_empty() => {
                Step::pass(STEP, format!("AUTH {} offered", all.join(" ")))
            }
            Some(all) => problem(format!("only AUTH {} offered", all.join(" "))).diagnosis(format!(
                "The server offers only AUTH {}; this check logs in with PLAIN or LOGIN. Clients \
                 that support those mechanisms may still log in.",
                all.join(" ")
            )),
            None if self.plan.mode == Mode::Plain && self.facts.starttls_offered => problem(
                "no AUTH on the unencrypted connection; the server offers STARTTLS".to_string(),
            )
            .diagnosis(
                "The server offers AUTH only after STARTTLS (as it should), so a client that \
                 skips TLS cannot log in. Use --starttls (port 587) or --tls (port 465).",
            ),
            None => problem("no AUTH offered".to_string()).diagnosis(
                "A submission server offers AUTH (after TLS) so that users can log in; this one \
                 offers none. That is typical of a server for incoming mail (an MX) or of a \
                 relay that serves only trusted networks. Check that this is the outgoing \
                 (submission) server and port.",
            ),
        };
        self.record(step);
    }

    /// MAIL (and, if that is accepted, RCPT) without a login. Returns whether the connection
    /// is still usable.
    async fn unauthenticated_mail(&mut self, smtp: &mut Smtp) -> bool {
        const STEP: &str = "mail-without-auth";
        let from = self.plan.from.clone();
        let from = from.as_deref().unwrap_or(PROBE_SENDER);
        let Some(reply) = self.ask(smtp, STEP, &format!("MAIL FROM:<{from}>")).await else {
            return false;
        };
        let step = match reply.code {
            250 => return self.unauthenticated_rcpt(smtp).await,
            530 if wants_tls(&reply) && self.plan.mode == Mode::Plain => {
                Step::warn(STEP, "refused: the server requires STARTTLS first")
                    .diagnosis(MUST_STARTTLS_ADVICE)
            }
            530 => Step::pass(STEP, "refused with 530: a login is required before MAIL"),
            421 => Step::warn(STEP, "the server closed the session"),
            400..=499 => Step::warn(STEP, "temporarily refused; the policy could not be checked"),
            code => Step::pass(
                STEP,
                format!("refused ({code}, not 530): mail without a login is not accepted"),
            ),
        };
        self.record(step.reply(&reply));
        reply.code != 421 && self.reset(smtp).await
    }

    async fn unauthenticated_rcpt(&mut self, smtp: &mut Smtp) -> bool {
        const STEP: &str = "mail-without-auth";
        let to = self.plan.to.clone();
        let to = to.as_deref().unwrap_or(PROBE_RECIPIENT);
        let Some(reply) = self.ask(smtp, STEP, &format!("RCPT TO:<{to}>")).await else {
            return false;
        };
        // Only 250/251 accept a recipient; any other code (even an odd 354) is no relaying.
        let step = if matches!(reply.code, 250 | 251) {
            Step::fail(
                STEP,
                format!("MAIL and RCPT to <{to}> accepted without a login"),
            )
            .diagnosis(
                "Open relay: the server accepts mail for an outside recipient without \
                     authentication, so anyone can send through it, and spammers will. Require \
                     AUTH (after TLS) before MAIL or RCPT. (If your address is deliberately \
                     trusted, such as a private network, this is expected.)",
            )
        } else {
            Step::pass(
                STEP,
                "MAIL accepted, but RCPT refused without a login: unauthenticated relaying is \
                 refused",
            )
        };
        self.record(step.reply(&reply));
        self.reset(smtp).await
    }

    /// RSET after a probe transaction; false when the connection is gone.
    async fn reset(&mut self, smtp: &mut Smtp) -> bool {
        smtp.command("RSET").await.is_ok()
    }

    async fn random_credentials(&mut self, smtp: &mut Smtp) {
        const STEP: &str = "random-credentials";
        let Some(&mechanism) = self.facts.mechanisms.first() else {
            self.record(Step::skip(
                STEP,
                "no AUTH PLAIN or LOGIN offered; nothing to test",
            ));
            return;
        };
        // A fixed name that Portcullis never counts towards its locks (other servers count it
        // like any failure, no more than a random one); a random password.
        let password = random_hex(12);
        let reply = match authenticate(smtp, mechanism, CHECK_PROBE_USER, password.as_bytes()).await
        {
            Ok(reply) => reply,
            Err(error) => {
                self.record(Step::warn(STEP, format!("no answer to AUTH: {error}")));
                return;
            }
        };
        let step = match reply.code {
            535 => Step::pass(
                STEP,
                "made-up credentials refused with 535, as they should be",
            ),
            235 => Step::fail(STEP, "made-up credentials were ACCEPTED").diagnosis(
                "The server accepted a random user name and password: anyone can log in and \
                 send mail through it. Its authentication back end accepts everything.",
            ),
            454 | 421 => {
                Step::warn(STEP, "temporary authentication failure").diagnosis(LOCKED_ADVICE)
            }
            _ if wants_tls(&reply) => {
                Step::warn(STEP, "AUTH refused: TLS required").diagnosis(MUST_STARTTLS_ADVICE)
            }
            _ => Step::warn(STEP, "unexpected answer to made-up credentials"),
        };
        self.record(step.reply(&reply));
    }
}

/// AUTH with `mechanism` (PLAIN or LOGIN).
pub(super) async fn authenticate(
    smtp: &mut Smtp,
    mechanism: &str,
    user: &str,
    password: &[u8],
) -> Result<Reply, super::connection::NetError> {
    if mechanism == "PLAIN" {
        smtp.auth_plain(user, password).await
    } else {
        smtp.auth_login(user, password).await
    }
}
