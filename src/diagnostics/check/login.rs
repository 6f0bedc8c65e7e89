//! The login with the user's credentials, each attempt on a fresh connection (a server may
//! refuse further attempts on a connection after a failure). After a 535 the other mechanism is
//! tried, then the password without stray whitespace and invisible characters, so the diagnosis
//! can say for certain what is wrong.

use super::probes::{LOCKED_ADVICE, MUST_STARTTLS_ADVICE, authenticate, wants_tls};
use super::report::Step;
use super::{Checker, Session};
use crate::client::Reply;

const STEP: &str = "login";

impl Checker {
    pub(super) async fn login(&mut self, user: &str) -> Option<Session> {
        self.password_step();
        let password = self.plan.password.as_ref()?.bytes.clone();
        let mechanisms = self.facts.mechanisms.clone();
        let Some(&first) = mechanisms.first() else {
            self.record(Step::fail(
                STEP,
                "not attempted: the server offers no AUTH PLAIN or LOGIN here",
            ));
            return None;
        };
        let (session, reply) = self.attempt(first, user, &password).await?;
        if reply.code == 235 {
            self.facts.logged_in = true;
            let step = Step::pass(STEP, format!("credentials accepted (AUTH {first})"));
            self.record(step.reply(&reply));
            return Some(session);
        }
        session.smtp.quit().await;
        if reply.code != 535 {
            self.record(refused(first, &reply));
            return None;
        }
        if let Some(&second) = mechanisms.get(1)
            && let Some(session) = self.other_mechanism(first, second, user, &password).await
        {
            return Some(session);
        }
        if let Some(session) = self.cleaned_password(first, user, &reply).await {
            return Some(session);
        }
        let step = Step::fail(STEP, "wrong credentials (535)").reply(&reply);
        let advice = self.wrong_credentials_advice(user, mechanisms.len() > 1);
        self.record(step.diagnosis(advice));
        None
    }

    fn password_step(&mut self) {
        let Some(password) = &self.plan.password else {
            return;
        };
        let source = &self.plan.password_source;
        let step = if password.issues.is_empty() {
            Step::pass(
                "password",
                format!(
                    "{} octets from {source}, no stray whitespace or invisible characters",
                    password.bytes.len()
                ),
            )
        } else {
            let issues = password.issues.join("; ");
            Step::warn("password", format!("read from {source}: {issues}"))
                .diagnosis(sentence(&issues))
        };
        self.record(step);
    }

    /// A fresh connection and one AUTH; None (with the failure reported) when the connection
    /// could not be made or broke.
    async fn attempt(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &[u8],
    ) -> Option<(Session, Reply)> {
        let mut session = self.reconnect().await?;
        match authenticate(&mut session.smtp, mechanism, user, password).await {
            Ok(reply) => Some((session, reply)),
            Err(error) => {
                let step = Step::fail(STEP, format!("no answer to AUTH {mechanism}: {error}"));
                let advice = "The server dropped the connection during AUTH: it may close \
                              sessions after failed logins or limit them per address.";
                self.record(if error.is_closed() {
                    step.diagnosis(advice)
                } else {
                    step
                });
                None
            }
        }
    }

    /// 535 with the first mechanism: does the second one work with the same credentials?
    async fn other_mechanism(
        &mut self,
        first: &str,
        second: &str,
        user: &str,
        password: &[u8],
    ) -> Option<Session> {
        let (session, reply) = self.attempt(second, user, password).await?;
        if reply.code != 235 {
            session.smtp.quit().await;
            return None;
        }
        self.facts.logged_in = true;
        let step = Step::warn(
            STEP,
            format!("refused with AUTH {first} (535) but accepted with AUTH {second}"),
        )
        .reply(&reply)
        .diagnosis(format!(
            "Mechanism problem: the same user name and password fail with AUTH {first} (535) \
             but work with AUTH {second}. The server's {first} support is broken or set up \
             differently; set the client to use {second}, or fix the server."
        ));
        self.record(step);
        Some(session)
    }

    /// 535: does the password work without its stray characters? If so the cause is certain.
    async fn cleaned_password(
        &mut self,
        mechanism: &str,
        user: &str,
        first_reply: &Reply,
    ) -> Option<Session> {
        let cleaned = self.plan.password.as_ref()?.cleaned.clone()?;
        let (session, reply) = self.attempt(mechanism, user, &cleaned).await?;
        if reply.code != 235 {
            session.smtp.quit().await;
            return None;
        }
        self.facts.logged_in = true;
        let step = Step::fail(
            STEP,
            "535 with the password as given; accepted without the stray characters",
        )
        .reply(first_reply)
        .diagnosis(format!(
            "Certain: the password as given was refused (535), and the same password without \
             the stray characters named above was accepted. Remove them from {}. The remaining \
             steps used the corrected password.",
            self.plan.password_source
        ));
        self.record(step);
        Some(session)
    }

    fn wrong_credentials_advice(&self, user: &str, tried_both: bool) -> String {
        let mut advice = String::from(
            "535 means wrong credentials: the server rejected the user name or the password. \
             Check both; the user name is usually the full email address",
        );
        if !user.contains('@') {
            advice.push_str(&format!(", and {user:?} is not one"));
        }
        advice.push('.');
        if tried_both {
            advice.push_str(
                " AUTH LOGIN and PLAIN were both refused, so it is not a mechanism problem.",
            );
        }
        if let Some(password) = &self.plan.password
            && !password.issues.is_empty()
        {
            advice.push_str(&format!(" Note: {}.", password.issues.join("; ")));
            if password.cleaned.is_some() {
                advice.push_str(" The password without those characters was refused too.");
            }
        }
        advice.push_str(
            " Repeated failures can get the account or your IP address locked for a while.",
        );
        advice
    }
}

/// A login refused with something other than 535.
fn refused(mechanism: &str, reply: &Reply) -> Step {
    let step = |meaning: &str| Step::fail(STEP, meaning.to_string()).reply(reply);
    match reply.code {
        454 | 421 => step("temporary authentication failure").diagnosis(LOCKED_ADVICE),
        _ if wants_tls(reply) => {
            step("the server requires TLS before AUTH").diagnosis(MUST_STARTTLS_ADVICE)
        }
        534 => step("mechanism too weak, or the provider wants another kind of login").diagnosis(
            "534: the server refuses this way of logging in; many providers want an app \
             password or OAuth instead of the account password. Check the provider's settings.",
        ),
        504 => step("mechanism not supported").diagnosis(format!(
            "The server does not accept AUTH {mechanism} although it offers it (504)."
        )),
        _ => step("login refused"),
    }
}

fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    format!("{}{}.", first.unwrap_or_default(), chars.as_str())
}
