//! Drives one SMTP session over one connection: reads bytes into the session, carries out its
//! actions (replies, TLS, credential checks, spooling) and applies the timeouts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{ListenerContext, Phase, Shared, phase_reaches};
use crate::accounts::canonical_host;
use crate::auth::FailureReason;
use crate::config::ListenerMode;
use crate::dkim;
use crate::policy::HostDecision;
use crate::policy::hosts;
use crate::policy::logins::Refusal;
use crate::smtp::command::Verb;
use crate::smtp::sasl::Credentials;
use crate::smtp::{
    Action, Allowance, AuthOutcome, HeaderFromDecision, Reply, SenderDecision, Session,
    SpoolOutcome, TlsInfo,
};
use crate::tls;

/// Bytes read per system call. Small on purpose: it is held by every idle connection.
const READ_CHUNK: usize = 4096;

enum Ended<S> {
    Closed,
    StartTls(S),
}

/// Who is on the other end and which listener it reached, for the log.
#[derive(Debug, Clone, Copy)]
struct Peer {
    client: SocketAddr,
    listener: SocketAddr,
}

/// Serves one connection from `client` (its address already canonical), logging its start and
/// its end.
pub(super) async fn serve(
    stream: TcpStream,
    client: SocketAddr,
    context: Arc<ListenerContext>,
    shared: Arc<Shared>,
) {
    let peer = Peer {
        client,
        listener: context.address,
    };
    let started = Instant::now();
    tracing::info!(client = %peer.client, listener = %peer.listener, "connect");
    let session = converse(stream, peer, &context, &shared).await;
    log_disconnect(peer, started.elapsed(), session.as_ref());
}

/// The SMTP conversation, TLS included; the session, if one started.
async fn converse(
    stream: TcpStream,
    peer: Peer,
    context: &ListenerContext,
    shared: &Shared,
) -> Option<Session> {
    let client_ip = peer.client.ip();
    let trusted = context.is_trusted(client_ip);
    let session_config = Arc::clone(&context.session);
    let listener_host = canonical_host(&session_config.hostname);
    match (context.mode, &context.tls) {
        (ListenerMode::Submissions, Some(acceptor)) => {
            let (stream, tls) = implicit_handshake(acceptor, stream, shared, peer).await?;
            context.metrics.tls_handshakes.inc();
            let asked_host = hosts::asked_host(tls.server_name.as_deref(), &listener_host);
            let mut session = Session::new(session_config, client_ip, trusted, Some(tls.info));
            drive(stream, &mut session, shared, peer, &asked_host).await;
            Some(session)
        }
        (ListenerMode::Submissions, None) => None,
        (ListenerMode::Submission, acceptor) => {
            let mut session = Session::new(session_config, client_ip, trusted, None);
            let ended = drive(stream, &mut session, shared, peer, &listener_host).await;
            if let (Ended::StartTls(stream), Some(acceptor)) = (ended, acceptor)
                && let Some((stream, tls)) = handshake(acceptor, stream, shared, peer).await
            {
                context.metrics.tls_handshakes.inc();
                let asked_host = hosts::asked_host(tls.server_name.as_deref(), &listener_host);
                session.tls_established(tls.info);
                drive(stream, &mut session, shared, peer, &asked_host).await;
            }
            Some(session)
        }
    }
}

/// `disconnect client=IP:PORT listener=ADDR [tls=VERSION cipher=SUITE] duration=SECONDS
/// ehlo=N … commands=N`, the counts Postfix style (verbs that never came left out).
fn log_disconnect(peer: Peer, duration: Duration, session: Option<&Session>) {
    let tls = session.and_then(Session::tls);
    let counts = session
        .map(Session::command_counts)
        .cloned()
        .unwrap_or_default();
    let n = |verb: Verb| Some(counts.get(verb)).filter(|&n| n > 0);
    tracing::info!(
        client = %peer.client,
        listener = %peer.listener,
        tls = tls.map(|tls| tracing::field::display(&tls.version)),
        cipher = tls.map(|tls| tracing::field::display(&tls.cipher)),
        duration = format_args!("{:.3}s", duration.as_secs_f64()),
        ehlo = n(Verb::Ehlo),
        helo = n(Verb::Helo),
        starttls = n(Verb::StartTls),
        auth = n(Verb::Auth),
        mail = n(Verb::Mail),
        rcpt = n(Verb::Rcpt),
        data = n(Verb::Data),
        rset = n(Verb::Rset),
        noop = n(Verb::Noop),
        vrfy = n(Verb::Vrfy),
        expn = n(Verb::Expn),
        help = n(Verb::Help),
        quit = n(Verb::Quit),
        unknown = n(Verb::Unknown),
        commands = counts.total(),
        "disconnect"
    );
}

/// One line per 4xx/5xx reply: `reject client=IP:PORT command=VERB code=N status=X.Y.Z
/// reply="TEXT"`. The command is the session's name for it, never the client's bytes.
pub(super) fn log_refusal(client: SocketAddr, command: &str, reply: &Reply) {
    if reply.code() < 400 {
        return;
    }
    let enhanced = reply.status().map(|s| s.to_string()).unwrap_or_default();
    crate::metrics::global().refused(reply.code(), enhanced);
    tracing::info!(
        %client,
        %command,
        code = reply.code(),
        status = reply.status().map(tracing::field::display),
        reply = reply.text(),
        "reject"
    );
}

/// What the TLS handshake established.
struct Handshake {
    info: TlsInfo,
    /// The host name the client asked for (SNI), if it sent one.
    server_name: Option<String>,
}

/// The handshake on an implicit-TLS listener, after a look at the first bytes so that a
/// plaintext client is named as such in the log.
async fn implicit_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    shared: &Shared,
    peer: Peer,
) -> Option<(TlsStream<TcpStream>, Handshake)> {
    let mut first = [0u8; 2];
    let cause = match tokio::time::timeout(shared.timeouts.tls_handshake, stream.peek(&mut first))
        .await
    {
        Ok(Ok(0)) => Some("closed"),
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE_RECORD => Some(if first[0].is_ascii_alphabetic() {
            "plaintext-on-implicit-tls-port"
        } else {
            "not-tls"
        }),
        Ok(Ok(_)) => None,
        Ok(Err(_)) => Some("read-error"),
        Err(_) => Some("no-client-hello"),
    };
    if let Some(cause) = cause {
        log_tls_failure(peer, cause, None);
        return None;
    }
    handshake(acceptor, stream, shared, peer).await
}

/// The first byte of a TLS handshake record (a ClientHello starts `16 03`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    shared: &Shared,
    peer: Peer,
) -> Option<(TlsStream<TcpStream>, Handshake)> {
    match tokio::time::timeout(shared.timeouts.tls_handshake, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let connection = stream.get_ref().1;
            let handshake = Handshake {
                info: tls::session_info(connection),
                server_name: connection.server_name().map(str::to_string),
            };
            Some((stream, handshake))
        }
        Ok(Err(error)) => {
            log_tls_failure(peer, "handshake-error", Some(&error.to_string()));
            None
        }
        Err(_) => {
            log_tls_failure(peer, "timeout", None);
            None
        }
    }
}

/// `TLS handshake failed client=IP:PORT listener=ADDR cause=CAUSE [error="TEXT"]`. The causes:
/// `plaintext-on-implicit-tls-port` (SMTP text where a ClientHello belongs), `no-client-hello`
/// (silence: a plaintext client waiting for a greeting), `tls-on-starttls-port` (a ClientHello
/// instead of a command), `not-tls`, `closed`, `read-error`, `timeout` and `handshake-error`.
/// A connection closed before sending anything (a port check) is only info; the rest warn.
fn log_tls_failure(peer: Peer, cause: &'static str, error: Option<&str>) {
    let (client, listener) = (peer.client, peer.listener);
    crate::metrics::global().tls_failed(&listener.to_string(), cause);
    if cause == "closed" {
        tracing::info!(%client, %listener, %cause, error, "TLS handshake failed");
    } else {
        tracing::warn!(%client, %listener, %cause, error, "TLS handshake failed");
    }
}

/// A TLS ClientHello sent where a plaintext command belongs.
fn looks_like_client_hello(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == TLS_HANDSHAKE_RECORD && bytes[1] == 0x03
}

/// Runs the session over `stream` until it closes or starts TLS. `asked_host` is the host name
/// the client connected to, for the host policy.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    session: &mut Session,
    shared: &Shared,
    peer: Peer,
    asked_host: &str,
) -> Ended<S> {
    // Only the first bytes of a plaintext session can be a misplaced TLS handshake.
    let mut first_read = session.tls().is_none();
    let mut output = Vec::with_capacity(512);
    let mut input = vec![0u8; READ_CHUNK];
    let mut phase = shared.phase.clone();
    let mut deadline = Instant::now() + shared.timeouts.command;
    let mut message_deadline = None;
    loop {
        let mut progressed = false;
        while let Some(action) = session.next_action() {
            progressed = true;
            match action {
                Action::Send(reply) => {
                    log_refusal(peer.client, session.answering(), &reply);
                    reply.write_to(&mut output);
                }
                Action::StartTls => {
                    return match flush(&mut stream, &mut output, shared).await {
                        Ok(()) => Ended::StartTls(stream),
                        Err(_) => Ended::Closed,
                    };
                }
                Action::Authenticate(credentials) => {
                    let client_ip = session.client_ip();
                    let outcome = authenticate(shared, client_ip, asked_host, credentials).await;
                    session.auth_finished(outcome);
                }
                Action::AuthDenied { username, reason } => {
                    log_failure(session.client_ip(), &username, reason);
                    crate::metrics::global().auth(reason);
                }
                Action::AuthorizeMail { user, sender } => {
                    let (decision, allowance) =
                        authorize_mail(shared, session.client_ip(), &user, &sender);
                    session.mail_checked(decision, allowance);
                }
                Action::AuthorizeHeaderFrom { user, addresses } => {
                    let decision =
                        authorize_header_from(shared, session.client_ip(), &user, &addresses);
                    session.header_from_checked(decision);
                }
                Action::Spool(submission) => {
                    let outcome = spool(shared, peer, *submission).await;
                    session.spool_finished(outcome);
                }
                Action::Close => {
                    let _ = flush(&mut stream, &mut output, shared).await;
                    let _ = tokio::time::timeout(shared.timeouts.command, stream.shutdown()).await;
                    return Ended::Closed;
                }
            }
        }
        if flush(&mut stream, &mut output, shared).await.is_err() {
            return Ended::Closed;
        }
        // A complete command (or a data block) restarts the clock; partial lines do not, so a
        // client trickling bytes cannot hold a session open forever. A message as a whole must
        // also finish within its own limit, however steadily its bytes arrive.
        let in_data = session.in_data();
        match (in_data, message_deadline) {
            (true, None) => message_deadline = Some(Instant::now() + shared.timeouts.message),
            (false, Some(_)) => message_deadline = None,
            _ => {}
        }
        if progressed {
            deadline = next_deadline(session, shared, message_deadline);
        }
        let stop = phase_reaches(&mut phase, |p| match p {
            Phase::Running => false,
            Phase::Draining => !in_data,
            Phase::Aborting => true,
        });
        tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read(&mut input)) => match read {
                Err(_) => session.timed_out(),
                Ok(Ok(0)) | Ok(Err(_)) => return Ended::Closed,
                Ok(Ok(n)) => {
                    if std::mem::take(&mut first_read) && looks_like_client_hello(&input[..n]) {
                        log_tls_failure(peer, "tls-on-starttls-port", None);
                        return Ended::Closed;
                    }
                    session.receive(&input[..n]);
                    if session.in_data() {
                        deadline = next_deadline(session, shared, message_deadline);
                    }
                }
            },
            _ = stop => session.shut_down(),
        }
    }
}

/// Checks credentials under the brute-force guard, then the host policy, and logs the outcome
/// with the client address. A locked (user name, network) or a refused network is answered
/// without a password check, the same way whether the account exists or not; a failure is
/// answered after the guard's delay. The reason for a failure is for the log only.
async fn authenticate(
    shared: &Shared,
    client_ip: IpAddr,
    asked_host: &str,
    credentials: Credentials,
) -> AuthOutcome {
    let username = credentials.username.clone();
    let mut attempt = match shared.logins.admit_in_turn(&username, client_ip).await {
        Ok(attempt) => attempt,
        Err(Refusal::Locked { until }) => {
            log_failure(client_ip, &username, FailureReason::Locked.as_str());
            crate::metrics::global().auth(FailureReason::Locked.as_str());
            return AuthOutcome::Locked(UNIX_EPOCH + Duration::from_secs(until));
        }
        // `admit_in_turn` waits `Busy` out; were one passed on, it would be a refusal for now.
        Err(Refusal::Busy) => {
            log_failure(client_ip, &username, FailureReason::Locked.as_str());
            return AuthOutcome::Locked(SystemTime::now());
        }
        // `portcullis check`'s made-up login: a 535 like any wrong password, at no cost.
        Err(Refusal::Probe) => {
            log_failure(client_ip, &username, "check-probe");
            return AuthOutcome::Rejected;
        }
        Err(Refusal::NetworkRefused { .. }) => {
            log_failure(client_ip, &username, FailureReason::NetworkRefused.as_str());
            crate::metrics::global().auth(FailureReason::NetworkRefused.as_str());
            return AuthOutcome::NetworkRefused;
        }
    };
    let password = credentials.password.clone();
    let (outcome, reason) = shared.authenticator.verify_explained(credentials).await;
    let outcome = match outcome {
        AuthOutcome::Accepted(user) => {
            // The password was right: a success for the guard, whatever the host policy says.
            attempt.succeeded();
            served_here(shared, user, asked_host)
        }
        other => other,
    };
    crate::metrics::global().auth(auth_label(&outcome, reason));
    match &outcome {
        AuthOutcome::Accepted(user) => {
            tracing::info!(client = %client_ip, %user, "authenticated");
        }
        AuthOutcome::Rejected => {
            let reason = reason.unwrap_or(FailureReason::WrongPassword);
            let failure = attempt.failed(&password, reason);
            log_failure(client_ip, &username, reason.as_str());
            // The attempt stays in progress while it waits, so parallel connections cannot
            // skip the delay.
            tokio::time::sleep(failure.delay).await;
        }
        AuthOutcome::Unavailable => {
            tracing::error!(client = %client_ip, user = username.as_str(), "authentication unavailable")
        }
        AuthOutcome::ServedElsewhere {
            user,
            asked,
            serving,
        } => {
            // One fixed line, like failed logins: `login refused: wrong host client=IP
            // user="NAME" asked=HOST serving=HOST`.
            tracing::warn!(client = %client_ip, user = user.as_str(), %asked, %serving, "login refused: wrong host");
        }
        AuthOutcome::Locked(_) | AuthOutcome::NetworkRefused => {}
    }
    drop(attempt);
    outcome
}

/// How `/metrics` counts a checked login: `accepted`, the failure's reason (as logged),
/// `unavailable` or `wrong-host`.
fn auth_label(outcome: &AuthOutcome, reason: Option<FailureReason>) -> &'static str {
    match outcome {
        AuthOutcome::Accepted(_) => "accepted",
        AuthOutcome::Rejected => reason.unwrap_or(FailureReason::WrongPassword).as_str(),
        AuthOutcome::Unavailable => "unavailable",
        AuthOutcome::ServedElsewhere { .. } => "wrong-host",
        AuthOutcome::Locked(_) => FailureReason::Locked.as_str(),
        AuthOutcome::NetworkRefused => FailureReason::NetworkRefused.as_str(),
    }
}

/// The outcome for `user`, whose password was right, at `asked_host`: accepted unless the host
/// policy (when configured) names another host for the account's domain.
fn served_here(shared: &Shared, user: String, asked_host: &str) -> AuthOutcome {
    let Some(policy) = &shared.host_policy else {
        return AuthOutcome::Accepted(user);
    };
    match policy.check(&user, asked_host) {
        HostDecision::Allowed => AuthOutcome::Accepted(user),
        HostDecision::ServedElsewhere(serving) => AuthOutcome::ServedElsewhere {
            user,
            asked: asked_host.to_string(),
            serving,
        },
        HostDecision::Unavailable => AuthOutcome::Unavailable,
    }
}

/// One fixed line per failed login, with the address first, for fail2ban-style tools:
/// `authentication failed client=IP user="NAME" reason=REASON`. The user name is quoted and
/// escaped so it cannot forge a line.
fn log_failure(client_ip: IpAddr, username: &str, reason: &str) {
    tracing::warn!(client = %client_ip, user = username, %reason, "authentication failed");
}

/// The sender policy's decision on MAIL FROM and, for an allowed sender, what the account may
/// still send under its quotas.
fn authorize_mail(
    shared: &Shared,
    client: IpAddr,
    user: &str,
    sender: &str,
) -> (SenderDecision, Allowance) {
    let decision = if sender.is_empty() {
        SenderDecision::Allowed
    } else {
        shared.sender_policy.authorize(user, sender)
    };
    if decision != SenderDecision::Allowed {
        if decision == SenderDecision::Denied {
            tracing::warn!(%client, %user, sender, "sender address refused");
        }
        return (decision, Allowance::default());
    }
    let allowance = shared.quotas.allowance(user);
    if allowance.messages.is_some_and(|quota| quota.left == 0) {
        tracing::warn!(%client, %user, "message quota reached");
    }
    (decision, allowance)
}

/// Every address of the From: header must be one the user may send as.
fn authorize_header_from(
    shared: &Shared,
    client: IpAddr,
    user: &str,
    addresses: &[String],
) -> HeaderFromDecision {
    for address in addresses {
        match shared.sender_policy.authorize(user, address) {
            SenderDecision::Allowed => {}
            SenderDecision::Denied => {
                tracing::warn!(%client, %user, from = address.as_str(), "From: header address refused");
                return HeaderFromDecision::Denied(address.clone());
            }
            SenderDecision::Unavailable => return HeaderFromDecision::Unavailable,
        }
    }
    HeaderFromDecision::Allowed
}

fn next_deadline(session: &Session, shared: &Shared, message_deadline: Option<Instant>) -> Instant {
    let now = Instant::now();
    match message_deadline {
        Some(limit) if session.in_data() => (now + shared.timeouts.data).min(limit),
        _ => now + shared.timeouts.command,
    }
}

/// Stores the message; logs `queued id=ID client=IP:PORT [user="NAME"] from="ADDRESS"
/// recipients=N size=BYTES [tls=VERSION cipher=SUITE]` once it is.
async fn spool(shared: &Shared, peer: Peer, submission: crate::smtp::Submission) -> SpoolOutcome {
    let Some(submission) = dkim_sign(shared, peer, submission).await else {
        return SpoolOutcome::Failed;
    };
    let envelope = &submission.envelope;
    let (from, recipients, size) = (
        envelope.from.clone(),
        envelope.to.len(),
        submission.message.len(),
    );
    let (user, tls) = (envelope.auth_user.clone(), envelope.tls.clone());
    match shared.spool.submit(submission).await {
        Ok(Ok(id)) => {
            tracing::info!(
                %id,
                client = %peer.client,
                user = user.as_deref(),
                from = from.as_str(),
                recipients,
                size,
                tls = tls.as_ref().map(|tls| tracing::field::display(&tls.version)),
                cipher = tls.as_ref().map(|tls| tracing::field::display(&tls.cipher)),
                "queued"
            );
            if let Some(user) = &user {
                shared.quotas.charge(user, recipients);
            }
            crate::metrics::global().accepted(recipients, size);
            SpoolOutcome::Queued(id)
        }
        Ok(Err(error)) => {
            tracing::error!(%error, client = %peer.client, "message refused with 452: not stored");
            SpoolOutcome::Failed
        }
        Err(_) => SpoolOutcome::Failed,
    }
}

/// Puts the DKIM-Signature fields before the message when its From: domain has active keys
/// and the sender may use that From: address: an account's mail is signed only as addresses
/// it may send as (whether or not `check_header_from` refuses the others); a trusted-network
/// client has no account and is trusted. Signing runs off the runtime's threads, since an RSA
/// signature and the body hash of a large message take milliseconds. `None` only if the
/// signing task died, taking the message with it: the client gets 452 and sends it again.
async fn dkim_sign(
    shared: &Shared,
    peer: Peer,
    mut submission: crate::smtp::Submission,
) -> Option<crate::smtp::Submission> {
    let Some((domain, address)) = dkim::signing_domain(&submission.message) else {
        return Some(submission);
    };
    let keys = shared.dkim.keys_for(&domain);
    if keys.is_empty() {
        return Some(submission);
    }
    if let Some(user) = &submission.envelope.auth_user
        && shared.sender_policy.authorize(user, &address) != SenderDecision::Allowed
    {
        tracing::warn!(client = %peer.client, %user, from = address.as_str(), "not DKIM-signed: the account may not send as its From: address");
        return Some(submission);
    }
    let message = std::mem::take(&mut submission.message);
    let now = crate::timefmt::unix_now();
    let signing = tokio::task::spawn_blocking(move || {
        let keys: Vec<&dkim::SigningKey> = keys.iter().map(AsRef::as_ref).collect();
        let signed = dkim::signed_message(&message, &keys, now);
        (message, signed)
    });
    match signing.await {
        Ok((_, Ok(signed))) => submission.message = signed,
        Ok((message, Err(error))) => {
            tracing::error!(%error, client = %peer.client, %domain, "cannot DKIM-sign: the message is queued unsigned");
            submission.message = message;
        }
        Err(error) => {
            tracing::error!(%error, client = %peer.client, "DKIM signing failed: message refused with 452: not stored");
            return None;
        }
    }
    Some(submission)
}

/// Writes the pending replies. A client that stops reading gets the command timeout to take
/// them, then the connection is dropped: otherwise it could hold its slot forever.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    output: &mut Vec<u8>,
    shared: &Shared,
) -> std::io::Result<()> {
    if output.is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(output).await?;
        stream.flush().await
    };
    match tokio::time::timeout(shared.timeouts.command, write).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client stopped reading",
            ));
        }
    }
    output.clear();
    Ok(())
}
