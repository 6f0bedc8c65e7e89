//! The steps up to a usable session: TCP connect, greeting, EHLO, STARTTLS or implicit TLS,
//! EHLO again. Wrong-mode mistakes show up here: `--tls` against a plaintext port (the greeting
//! arrives where a ServerHello should) and STARTTLS against an implicit-TLS port (no greeting).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::connection::{ConnectError, NetError, Smtp, tcp_connect};
use super::report::Step;
use super::target::{Mode, SUBMISSION_PORT, SUBMISSIONS_PORT};
use super::{Checker, Session, auth_line, offers, tls};
use crate::client::Reply;

type Connected = Result<(TcpStream, SocketAddr), ConnectError>;

/// How long an unusual port has to greet before it is taken for implicit TLS. Servers greet at
/// once unless they pause on purpose (a "greet pause" of several seconds is rare on submission).
const DETECT_WAIT: Duration = Duration::from_secs(3);

/// A certificate that expires within this many days is a warning.
const EXPIRY_WARNING_DAYS: u64 = 14;

impl Checker {
    pub(super) async fn establish(&mut self) -> Option<Session> {
        let mut stream = self.connect().await?;
        if self.plan.detect_mode {
            stream = self.detect_mode(stream).await?;
        }
        let helo = self.helo_name(&stream);
        let mut smtp = match self.plan.mode {
            Mode::Implicit => self.implicit_tls(stream).await?,
            Mode::StartTls | Mode::Plain => {
                Smtp::plain(stream, self.plan.timeout, self.log.clone())
            }
        };
        self.greeting(&mut smtp).await?;
        let extensions = self.ehlo(&mut smtp, &helo, "ehlo").await?;
        let extensions = match self.plan.mode {
            Mode::StartTls => {
                self.facts.starttls_offered = offers(&extensions, "STARTTLS");
                self.auth_before_tls(&extensions);
                self.starttls(&mut smtp, &extensions).await?;
                self.ehlo(&mut smtp, &helo, "ehlo-after-tls").await?
            }
            Mode::Plain => {
                self.facts.starttls_offered = offers(&extensions, "STARTTLS");
                self.plain_notice();
                extensions
            }
            Mode::Implicit => extensions,
        };
        Some(Session { smtp, extensions })
    }

    /// On an unusual port: a STARTTLS (or plaintext) server greets at once, an implicit-TLS one
    /// waits for the ClientHello. So no byte within [`DETECT_WAIT`] means implicit TLS, and the
    /// check continues on a fresh connection (the first one has seen nothing to spoil).
    async fn detect_mode(&mut self, stream: TcpStream) -> Option<TcpStream> {
        self.plan.detect_mode = false;
        let port = self.plan.port;
        let mut first = [0u8; 1];
        let greeted = matches!(
            tokio::time::timeout(DETECT_WAIT, stream.peek(&mut first)).await,
            Ok(Ok(1..))
        );
        let wait = DETECT_WAIT.as_secs();
        if greeted {
            self.plan.mode_note = Some(format!(
                "port {port} is not a usual submission port; it greeted at once, so this \
                 check uses STARTTLS (give --tls or --plain to choose otherwise)"
            ));
            return Some(stream);
        }
        self.plan.mode = Mode::Implicit;
        self.plan.mode_note = Some(format!(
            "port {port} is not a usual submission port; it sent no greeting within {wait} s, \
             so it expects implicit TLS and this check uses TLS (give --starttls to wait for a \
             greeting instead)"
        ));
        drop(stream);
        self.log.borrow_mut().push(format!(
            "-- no greeting within {wait} s: reconnecting with implicit TLS"
        ));
        let quiet = std::mem::replace(&mut self.quiet, true);
        let stream = self.connect().await;
        self.quiet = quiet;
        stream
    }

    async fn connect(&mut self) -> Option<TcpStream> {
        let plan = &self.plan;
        let mut outcome = tcp_connect(&plan.host, plan.port, plan.timeout).await;
        if outcome.is_err() && std::mem::take(&mut self.plan.try_submissions) {
            outcome = self.try_submissions_port(outcome).await;
        }
        let plan = &self.plan;
        match outcome {
            Ok((stream, address)) => {
                self.log
                    .borrow_mut()
                    .push(format!("-- connected to {address}"));
                self.record(Step::pass("connect", format!("connected to {address}")));
                Some(stream)
            }
            Err(error) => {
                let step = connect_failure(&error, &plan.host, plan.port);
                self.record(step);
                None
            }
        }
    }

    /// No port was given and 587 did not answer: a server may offer only implicit TLS on 465.
    /// If 465 answers, the check goes on there; if not, the failure on 587 is the one reported.
    async fn try_submissions_port(&mut self, on_submission: Connected) -> Connected {
        let plan = &self.plan;
        let Ok(found) = tcp_connect(&plan.host, SUBMISSIONS_PORT, plan.timeout).await else {
            return on_submission;
        };
        let why = match &on_submission {
            Err(ConnectError::Refused(_)) => "refused the connection",
            Err(ConnectError::TimedOut(_)) => "did not answer",
            _ => "could not be reached",
        };
        self.plan.port = SUBMISSIONS_PORT;
        self.plan.mode = Mode::Implicit;
        self.plan.detect_mode = false;
        self.plan.mode_note = Some(format!(
            "no port was given and port {SUBMISSION_PORT} {why}; port {SUBMISSIONS_PORT} \
             answered, so this check uses implicit TLS there"
        ));
        Ok(found)
    }

    /// `--helo`, else this host's name when it is fully qualified, else the address literal
    /// of the local end (RFC 5321 §4.1.4: the literal is right when there is no usable name).
    fn helo_name(&self, stream: &TcpStream) -> String {
        if let Some(name) = &self.plan.helo {
            return name.clone();
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_default();
        if hostname.contains('.') && !hostname.ends_with('.') {
            return hostname;
        }
        match stream.local_addr() {
            Ok(SocketAddr::V4(local)) => format!("[{}]", local.ip()),
            Ok(SocketAddr::V6(local)) => format!("[IPv6:{}]", local.ip()),
            Err(_) => "localhost".to_string(),
        }
    }

    async fn implicit_tls(&mut self, stream: TcpStream) -> Option<Smtp> {
        let config = self.plan.tls.as_ref()?.config.clone();
        let (host, limit) = (self.plan.host.clone(), self.plan.timeout);
        match Smtp::implicit_tls(stream, config, &host, limit, self.log.clone()).await {
            Ok(smtp) => {
                let step = self.tls_step(&smtp);
                self.record(step);
                Some(smtp)
            }
            Err(error) => {
                let step = self.handshake_failure(&error);
                self.record(step);
                None
            }
        }
    }

    async fn greeting(&mut self, smtp: &mut Smtp) -> Option<()> {
        let step = match smtp.read_reply().await {
            Ok(reply) if reply.code == 220 => {
                self.record(Step::pass("greeting", "the server is ready").reply(&reply));
                return Some(());
            }
            Ok(reply) => greeting_refused(&reply),
            Err(error) => self.greeting_failure(&error),
        };
        self.record(step);
        None
    }

    fn greeting_failure(&self, error: &NetError) -> Step {
        let implicit = self.plan.mode == Mode::Implicit;
        let flag = if self.plan.mode == Mode::Plain {
            "--plain"
        } else {
            "--starttls"
        };
        if error.is_timeout() && !implicit {
            return Step::fail("greeting", format!("no greeting: {error}")).diagnosis(format!(
                "Wrong mode for the port: the connection was accepted but no greeting came, so \
                 the server waits for a TLS handshake (implicit TLS, as on port 465); use --tls \
                 instead of {flag}."
            ));
        }
        let hint = if implicit {
            ""
        } else {
            " If this port expects implicit TLS (like 465), use --tls."
        };
        let advice = if error.is_timeout() {
            "The TLS handshake worked but no SMTP greeting followed: the service behind this \
             port may be overloaded or not SMTP."
                .to_string()
        } else if error.is_closed() {
            format!(
                "The server closed the connection before greeting: it may refuse connections \
                 from your address or limit them.{hint}"
            )
        } else {
            format!("The first bytes from the server are not an SMTP greeting.{hint}")
        };
        Step::fail("greeting", format!("no greeting: {error}")).diagnosis(advice)
    }

    async fn ehlo(&mut self, smtp: &mut Smtp, helo: &str, name: &str) -> Option<Vec<String>> {
        let step = match smtp.command(&format!("EHLO {helo}")).await {
            Ok(reply) if reply.code == 250 => {
                let extensions = reply.extensions();
                let list = if extensions.is_empty() {
                    "no extensions".to_string()
                } else {
                    format!("extensions: {}", extensions.join(", "))
                };
                self.record(Step::pass(name, list));
                return Some(extensions);
            }
            Ok(reply) => Step::fail(name, format!("EHLO {helo} refused"))
                .reply(&reply)
                .diagnosis(format!(
                    "The server refused EHLO {helo}. Some servers insist on a fully-qualified \
                     host name: try --helo with this machine's real host name."
                )),
            Err(error) => Step::fail(name, format!("no answer to EHLO: {error}")),
        };
        self.record(step);
        None
    }

    /// Checked on the plaintext EHLO: AUTH offered there invites clients to send passwords
    /// unencrypted.
    fn auth_before_tls(&mut self, extensions: &[String]) {
        let step = match auth_line(extensions) {
            Some(mechanisms) => Step::warn(
                "auth-before-tls",
                format!("AUTH {} is offered before TLS", mechanisms.join(" ")),
            )
            .diagnosis(
                "The server offers AUTH on the unencrypted connection, before STARTTLS: \
                 credentials could travel in clear, since a client configured without TLS would \
                 send its password unencrypted. The server should offer AUTH only after TLS.",
            ),
            None => Step::pass(
                "auth-before-tls",
                "AUTH is not offered on the unencrypted connection, so passwords cannot travel \
                 in clear",
            ),
        };
        self.record(step);
    }

    async fn starttls(&mut self, smtp: &mut Smtp, extensions: &[String]) -> Option<()> {
        if !offers(extensions, "STARTTLS") {
            let step = Step::fail("starttls", "the server does not offer STARTTLS")
                .diagnosis(no_starttls_advice(extensions));
            self.record(step);
            return None;
        }
        let reply = match smtp.command("STARTTLS").await {
            Ok(reply) if reply.code == 220 => reply,
            Ok(reply) => {
                self.record(starttls_refused(&reply));
                return None;
            }
            Err(error) => {
                self.record(Step::fail("starttls", format!("no answer: {error}")));
                return None;
            }
        };
        self.record(Step::pass("starttls", "ready to start TLS").reply(&reply));
        let config = self.plan.tls.as_ref()?.config.clone();
        let host = self.plan.host.clone();
        let step = match smtp.starttls(config, &host).await {
            Ok(()) => self.tls_step(smtp),
            Err(error) => self.handshake_failure(&error),
        };
        let established = smtp.tls().is_some();
        self.record(step);
        established.then_some(())
    }

    /// The TLS step after a completed handshake: version, certificate verdict, expiry.
    fn tls_step(&self, smtp: &Smtp) -> Step {
        let (Some(info), Some(tls)) = (smtp.tls(), self.plan.tls.as_ref()) else {
            return Step::fail("tls", "no TLS session");
        };
        let session = format!("{} {}", info.version, info.cipher);
        let host = &self.plan.host;
        if let Some(error) = tls.certificate_error() {
            let explained = tls::explain_error(&error, host, false);
            return Step::warn(
                "tls",
                format!("{session}; {} (continuing: --insecure)", explained.meaning),
            )
            .diagnosis(format!(
                "{} The check went on only because of --insecure.",
                explained.advice
            ));
        }
        let Some(expiry) = smtp.leaf_certificate().and_then(tls::not_after) else {
            return Step::pass(
                "tls",
                format!("{session}; certificate for {host} {}", tls.trust),
            );
        };
        let days_left = expiry.saturating_sub(crate::timefmt::unix_now()) / 86_400;
        let until = tls::date(expiry);
        if days_left < EXPIRY_WARNING_DAYS {
            return Step::warn(
                "tls",
                format!("{session}; certificate expires on {until} (in {days_left} days)"),
            )
            .diagnosis(format!(
                "The server's certificate expires on {until}: renew it now, or clients will \
                 refuse to connect from then on."
            ));
        }
        Step::pass(
            "tls",
            format!(
                "{session}; certificate for {host} valid until {until}, {}",
                tls.trust
            ),
        )
    }

    fn handshake_failure(&self, error: &NetError) -> Step {
        let implicit = self.plan.mode == Mode::Implicit;
        let port_hint = if self.plan.port == SUBMISSION_PORT {
            " (port 587 is the STARTTLS port; implicit TLS is on 465)"
        } else {
            ""
        };
        if let Some(tls_error) = error.tls_error() {
            if implicit && tls::is_plaintext_answer(tls_error) {
                return Step::fail("tls", "the server answered the TLS handshake in plaintext")
                    .diagnosis(format!(
                        "Wrong mode for the port: this port speaks plaintext SMTP (its greeting \
                         arrived where a TLS ServerHello was expected), so --tls does not fit. \
                         Use --starttls{port_hint}."
                    ));
            }
            let explained = tls::explain_error(tls_error, &self.plan.host, !self.plan.insecure);
            return Step::fail("tls", explained.meaning).diagnosis(explained.advice);
        }
        let advice = if implicit && error.is_closed() {
            format!(
                "The server closed the connection during the TLS handshake. If this port \
                 expects plaintext SMTP with STARTTLS, use --starttls{port_hint}."
            )
        } else {
            "The TLS handshake did not complete; the --verbose transcript shows where.".to_string()
        };
        Step::fail("tls", format!("TLS handshake failed: {error}")).diagnosis(advice)
    }

    fn plain_notice(&mut self) {
        let step = if self.facts.starttls_offered {
            Step::warn(
                "tls",
                "no TLS (--plain), although the server offers STARTTLS",
            )
            .diagnosis(
                "--plain keeps the connection unencrypted although the server offers STARTTLS: \
                 passwords and mail would travel in clear. Use --starttls.",
            )
        } else {
            Step::warn(
                "tls",
                "no TLS (--plain); the server does not offer STARTTLS",
            )
            .diagnosis(
                "The connection is unencrypted and the server offers no STARTTLS: anything \
                 sent, passwords included, travels in clear.",
            )
        };
        self.record(step);
    }
}

fn connect_failure(error: &ConnectError, host: &str, port: u16) -> Step {
    let ports = "Submission uses port 587 (STARTTLS) or 465 (implicit TLS).";
    match error {
        ConnectError::Dns(why) => {
            Step::fail("connect", format!("DNS lookup of {host} failed: {why}")).diagnosis(format!(
                "DNS failure: the name {host} does not resolve. Check the spelling of the \
                 outgoing (SMTP) server name and this machine's DNS settings."
            ))
        }
        ConnectError::Refused(address) => {
            let local = if address.ip().is_loopback() {
                format!(
                    " Portcullis's embedded default listens on 2587 (STARTTLS) and 2465 \
                     (implicit TLS): try `portcullis check {host}:2587`."
                )
            } else {
                String::new()
            };
            Step::fail("connect", format!("connection refused by {address}")).diagnosis(format!(
                "Connection refused: nothing accepts connections on port {port} at {address}. \
                 The server is not running, listens on another port, or a firewall rejects \
                 the connection. {ports}{local}"
            ))
        }
        ConnectError::TimedOut(address) => {
            Step::fail("connect", format!("connection to {address} timed out")).diagnosis(format!(
                "Connection timed out: no answer from {address} on port {port}. A firewall drops \
             the connection or the host is down; many networks block outgoing mail ports. \
             {ports}"
            ))
        }
        ConnectError::Unreachable(address, why) => {
            Step::fail("connect", format!("{address} unreachable: {why}")).diagnosis(format!(
                "The network cannot reach {address}: check this machine's connection and routes."
            ))
        }
        ConnectError::Other(address, why) => {
            Step::fail("connect", format!("cannot connect to {address}: {why}"))
        }
    }
}

fn greeting_refused(reply: &Reply) -> Step {
    let step = Step::fail("greeting", "the server refuses this session").reply(reply);
    match reply.code {
        554 => step.diagnosis(
            "The server answered the connection with 554: it does not accept sessions from \
             your address (a block list or a policy); the reply text may say why.",
        ),
        421 => step.diagnosis(
            "Service not available (421): the server is busy, shutting down or limits \
             connections. Retry in a few minutes.",
        ),
        _ => step.diagnosis("The greeting is not 220: this may not be an SMTP server."),
    }
}

fn starttls_refused(reply: &Reply) -> Step {
    let step = Step::fail("starttls", "STARTTLS refused").reply(reply);
    match reply.code {
        454 => step.diagnosis(
            "The server advertises STARTTLS but cannot start TLS now (454): its certificate or \
             TLS set-up is broken, or the problem is temporary. Ask the administrator, or try the \
             implicit-TLS port with --tls.",
        ),
        _ => step.diagnosis("The server refused the STARTTLS command although it offers it."),
    }
}

fn no_starttls_advice(extensions: &[String]) -> String {
    let mut advice = format!(
        "Without STARTTLS this connection stays unencrypted, so a password would travel in \
         clear, and clients set to STARTTLS stop here. If the server has an implicit-TLS port, \
         use --tls (usually port {SUBMISSIONS_PORT}); otherwise TLS must be enabled on the \
         server."
    );
    if auth_line(extensions).is_none() {
        advice.push_str(
            " It offers no AUTH either, which is typical of a server for incoming mail (an \
             MX), not a submission server.",
        );
    }
    advice
}
