//! The delivery agent: one task per outbound connection. It plans the route of its first job
//! (MX lookup or a static route), tries each host and address in order until one answers,
//! then delivers job after job over that connection for as long as the queue manager has work
//! for the same destination. Every outcome goes back to the manager, which decides what it
//! means for the recipient and the destination.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::client::{self, ClientSettings, OpenFailureKind, Outgoing, PlaintextFallback, Session};
use crate::client::Reply;
use crate::queue::driver::{Link, Transport};
use crate::queue::manager::{Attempt, Job, Outcome, RecipientResult, Signal};
use crate::queue::schedule::is_throttling_reply;
use crate::routing::{Plan, Router, seeded_shuffle};
use crate::spool::{QueuedMessage, log};

/// Starts delivery connections on the runtime.
pub struct Agent {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
}

struct Inner {
    router: Router,
    settings: ClientSettings,
    fallback: PlaintextFallback,
    spool_dir: PathBuf,
}

impl Agent {
    pub fn new(
        router: Router,
        settings: ClientSettings,
        fallback: PlaintextFallback,
        spool_dir: PathBuf,
        runtime: tokio::runtime::Handle,
    ) -> Agent {
        Agent {
            inner: Arc::new(Inner {
                router,
                settings,
                fallback,
                spool_dir,
            }),
            runtime,
        }
    }
}

impl Transport for Agent {
    fn start(&self, job: Job, link: Link) {
        self.runtime
            .spawn(run_connection(Arc::clone(&self.inner), job, link));
    }
}

/// A connection attempt that found no server to talk to.
struct NoSession {
    outcome: Outcome,
    reply: String,
    relay: Option<String>,
    signal: Signal,
}

async fn run_connection(inner: Arc<Inner>, mut job: Job, link: Link) {
    let mut session: Option<Session> = None;
    loop {
        let started = Instant::now();
        let (results, signal, reusable) = match load(&inner, &job.id).await {
            None => (
                every(
                    &job,
                    Outcome::Temporary,
                    "451 4.3.0 The message could not be read from the spool",
                    None,
                ),
                Signal::Unknown,
                session.is_some(),
            ),
            Some((message, body)) => {
                if session.is_none() {
                    match connect(&inner, &job.domain).await {
                        Ok(opened) => session = Some(opened),
                        Err(failed) => {
                            let results =
                                every(&job, failed.outcome, &failed.reply, failed.relay.as_deref());
                            let attempt =
                                attempt(&link, &job, results, failed.signal, false, started);
                            link.report(attempt).await;
                            return;
                        }
                    }
                }
                let open = session.as_mut().expect("just connected");
                let (results, signal) = transaction(open, &job, &message, &body).await;
                (results, signal, open.usable())
            }
        };
        let attempt = attempt(&link, &job, results, signal, reusable, started);
        match link.report(attempt).await {
            Some(next) => job = next,
            None => break,
        }
    }
    if let Some(open) = session {
        open.quit().await;
    }
}

fn attempt(
    link: &Link,
    job: &Job,
    results: Vec<RecipientResult>,
    signal: Signal,
    reusable: bool,
    started: Instant,
) -> Attempt {
    Attempt {
        worker: link.worker(),
        job: job.clone(),
        results,
        signal,
        reusable,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}

async fn load(inner: &Inner, id: &str) -> Option<(QueuedMessage, Vec<u8>)> {
    log::read_async(&inner.spool_dir, id)
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, id, "cannot read a queued message");
            None
        })
}

/// Plans the route and opens a session with the first host and address that accepts us: the
/// next address, then the next MX, as RFC 5321 §5.1 asks.
async fn connect(inner: &Inner, domain: &str) -> Result<Session, NoSession> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let mut shuffle = seeded_shuffle(seed);
    let plan: Plan = inner
        .router
        .plan(domain, &mut shuffle)
        .await
        .map_err(|error| {
            let (code, enhanced) = error.status();
            NoSession {
                outcome: if error.is_permanent() {
                    Outcome::Permanent
                } else {
                    Outcome::Temporary
                },
                reply: format!("{code} {enhanced} {error}"),
                relay: None,
                signal: Signal::Unknown,
            }
        })?;
    let mut last: Option<(OpenFailureKind, Reply, String)> = None;
    let mut all_unreachable = true;
    for hop in &plan.hops {
        for &address in &hop.addresses {
            match client::open(
                &hop.name,
                address,
                plan.tls,
                plan.auth.as_ref(),
                &inner.settings,
                &inner.fallback,
            )
            .await
            {
                Ok(session) => return Ok(session),
                Err(failure) => {
                    tracing::debug!(host = %hop.name, %address, reply = %failure.reply.summary(), "could not open a session");
                    all_unreachable &= matches!(failure.kind, OpenFailureKind::Unreachable);
                    last = Some((failure.kind, failure.reply, relay_name(&hop.name, address)));
                }
            }
        }
    }
    Err(no_session(domain, last, all_unreachable))
}

fn no_session(
    domain: &str,
    last: Option<(OpenFailureKind, Reply, String)>,
    all_unreachable: bool,
) -> NoSession {
    let Some((kind, reply, relay)) = last else {
        return NoSession {
            outcome: Outcome::Temporary,
            reply: format!("451 4.4.4 No address to deliver to for {domain}"),
            relay: None,
            signal: Signal::Unknown,
        };
    };
    let text = reply.summary();
    let signal = match kind {
        _ if all_unreachable => Signal::Unreachable,
        OpenFailureKind::Greeting if is_throttling_reply(reply.code, reply.enhanced(), &text) => {
            Signal::Throttled(text.clone())
        }
        OpenFailureKind::Greeting => Signal::Unreachable,
        _ => Signal::Unknown,
    };
    let reply = if all_unreachable {
        format!("451 4.4.1 No mail server for {domain} answered; the last said: {text}")
    } else {
        text
    };
    NoSession {
        outcome: Outcome::Temporary,
        reply,
        relay: Some(relay),
        signal,
    }
}

async fn transaction(
    session: &mut Session,
    job: &Job,
    message: &QueuedMessage,
    body: &[u8],
) -> (Vec<RecipientResult>, Signal) {
    // Indexes come from the same envelope, so every one is in range and outcomes line up.
    let indices: Vec<usize> = job.recipients.iter().map(|&i| i as usize).collect();
    let outgoing = Outgoing::from_envelope(&message.envelope, &indices, body);
    let relay = relay_name(&session.host, session.address);
    let dsn_forwarded = session.capabilities.dsn;
    let outcomes = session.send(&outgoing).await;
    let signal = signal_of(&outcomes);
    let results = job
        .recipients
        .iter()
        .zip(outcomes)
        .map(|(&rcpt, outcome)| RecipientResult {
            rcpt,
            outcome: match outcome.outcome {
                client::Outcome::Delivered => Outcome::Delivered,
                client::Outcome::Temporary => Outcome::Temporary,
                client::Outcome::Permanent => Outcome::Permanent,
            },
            reply: one_line(&outcome.reply),
            relay: Some(relay.clone()),
            dsn_forwarded,
        })
        .collect();
    (results, signal)
}

/// A throttling reply to any recipient slows the whole destination down.
fn signal_of(outcomes: &[client::RecipientOutcome]) -> Signal {
    outcomes
        .iter()
        .map(|outcome| &outcome.reply)
        .find(|reply| {
            (400..500).contains(&reply.code)
                && is_throttling_reply(reply.code, reply.enhanced(), &reply.summary())
        })
        .map_or(Signal::Reachable, |reply| {
            Signal::Throttled(one_line(reply))
        })
}

/// A multi-line reply on one line, as the state log and the DSN's Diagnostic-Code keep it.
fn one_line(reply: &Reply) -> String {
    let text: Vec<&str> = reply.lines.iter().map(String::as_str).collect();
    format!("{} {}", reply.code, text.join(" "))
}

/// `mx.example.org[192.0.2.1]:25`, Postfix's way of naming where a reply came from.
fn relay_name(host: &str, address: SocketAddr) -> String {
    format!("{host}[{}]:{}", address.ip(), address.port())
}

fn every(job: &Job, outcome: Outcome, reply: &str, relay: Option<&str>) -> Vec<RecipientResult> {
    job.recipients
        .iter()
        .map(|&rcpt| RecipientResult {
            rcpt,
            outcome,
            reply: reply.to_string(),
            relay: relay.map(String::from),
            dsn_forwarded: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_names_and_one_line_replies() {
        assert_eq!(
            relay_name("mx.example.org", "[2001:db8::1]:25".parse().unwrap()),
            "mx.example.org[2001:db8::1]:25"
        );
        let reply = Reply {
            code: 550,
            lines: vec!["5.1.1 <b@example.org>:".into(), "User unknown".into()],
        };
        assert_eq!(one_line(&reply), "550 5.1.1 <b@example.org>: User unknown");
    }

    #[test]
    fn a_rate_limit_reply_throttles_the_destination() {
        let outcome = |code, line: &str| client::RecipientOutcome {
            outcome: client::Outcome::of(&Reply {
                code,
                lines: vec![line.into()],
            }),
            reply: Reply {
                code,
                lines: vec![line.into()],
            },
            remote: true,
        };
        assert_eq!(signal_of(&[outcome(250, "2.0.0 ok")]), Signal::Reachable);
        let gmail = "4.7.28 Our system has detected an unusual rate of unsolicited mail";
        assert_eq!(
            signal_of(&[outcome(250, "2.0.0 ok"), outcome(421, gmail)]),
            Signal::Throttled(format!("421 {gmail}"))
        );
        assert_eq!(
            signal_of(&[outcome(450, "4.2.0 Greylisted")]),
            Signal::Reachable
        );
    }

    #[test]
    fn when_nothing_answers_the_destination_is_unreachable_and_the_mail_deferred_4_4_1() {
        let refused = Reply {
            code: 451,
            lines: vec!["4.4.1 connect to 127.0.0.9:25: Connection refused".into()],
        };
        let failed = no_session(
            "example.org",
            Some((
                OpenFailureKind::Unreachable,
                refused,
                "mx[127.0.0.9]:25".into(),
            )),
            true,
        );
        assert_eq!(failed.outcome, Outcome::Temporary);
        assert_eq!(failed.signal, Signal::Unreachable);
        assert!(
            failed
                .reply
                .starts_with("451 4.4.1 No mail server for example.org answered")
        );
        let throttled = Reply {
            code: 421,
            lines: vec!["4.7.0 Too many connections, slow down".into()],
        };
        let failed = no_session(
            "example.org",
            Some((
                OpenFailureKind::Greeting,
                throttled,
                "mx[127.0.0.9]:25".into(),
            )),
            false,
        );
        assert!(matches!(failed.signal, Signal::Throttled(_)));
        assert_eq!(failed.reply, "421 4.7.0 Too many connections, slow down");
    }
}
