//! `portcullis bench`: a load generator for submission servers, with TLS and AUTH (Postfix's
//! smtp-source has neither). It reports throughput, latency from the final dot to its reply,
//! TLS-handshake and AUTH times, and every non-2xx reply by code.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::TcpStream;

use crate::client::{self, Connection, Envelope, Reply, Trust};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server, HOST:PORT
    pub target: String,
    /// Sessions running at once
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Messages to send in all
    #[arg(long, default_value_t = 1000)]
    pub messages: usize,
    /// Message size in octets (headers included)
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Recipients per message
    #[arg(long, default_value_t = 1)]
    pub recipients: usize,
    /// Messages per session before QUIT
    #[arg(long, default_value_t = 1)]
    pub per_connection: usize,
    /// Upgrade with STARTTLS after EHLO
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,
    /// Implicit TLS from the first byte
    #[arg(long)]
    pub tls: bool,
    /// Log in as this user (AUTH after TLS)
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    /// The password of --user (on the command line: a test account's, not a real one)
    #[arg(long)]
    pub password: Option<String>,
    /// SASL mechanism for --user
    #[arg(long, value_parser = ["PLAIN", "LOGIN"], default_value = "PLAIN")]
    pub auth: String,
    /// Sender address for MAIL FROM
    #[arg(long, default_value = "bench@example.test")]
    pub from: String,
    /// Recipient; with --recipients N > 1 a number is put before the @
    #[arg(long, default_value = "sink@example.net")]
    pub to: String,
    /// Trust the certificates in this PEM file (default: accept any certificate)
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not send messages: open this many sessions, EHLO, and hold them (memory tests)
    #[arg(long, value_name = "SESSIONS")]
    pub hold: Option<usize>,
    /// How long --hold keeps its sessions open
    #[arg(long, default_value_t = 10)]
    pub hold_seconds: u64,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Give every message a unique marker (in Subject: and Message-ID:) and append one line per
    /// message to FILE: "QUEUE-ID<TAB>MARKER" for a 250, "-<TAB>MARKER<TAB>CODE ENHANCED" for a
    /// refused message, "?<TAB>MARKER<TAB>ERROR" when the connection failed with the outcome
    /// unknown (the server may or may not have stored it)
    #[arg(long, value_name = "FILE")]
    pub record_ids: Option<PathBuf>,
    /// Markers are PREFIX-N, N counting from 1 (default: bench-PID-UNIXTIME)
    #[arg(long, value_name = "PREFIX", requires = "record_ids")]
    pub marker_prefix: Option<String>,
}

#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub target: String,
    pub mode: String,
    pub concurrency: usize,
    pub messages_requested: usize,
    pub messages_accepted: usize,
    pub seconds: f64,
    pub messages_per_second: f64,
    /// Final dot to reply, milliseconds.
    pub latency_ms: Percentiles,
    pub tls_handshake_ms: Percentiles,
    pub auth_ms: Percentiles,
    /// Non-2xx/3xx replies by "code enhanced-code".
    pub refusals: BTreeMap<String, usize>,
    /// Connection-level failures by description.
    pub errors: BTreeMap<String, usize>,
    pub sessions_held: usize,
}

#[derive(Serialize, Debug, Default, Clone, Copy)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index].as_secs_f64() * 1000.0
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// What all workers record.
#[derive(Default)]
struct Tally {
    accepted: usize,
    latencies: Vec<Duration>,
    handshakes: Vec<Duration>,
    logins: Vec<Duration>,
    refusals: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
}

impl Tally {
    fn refusal(&mut self, reply: &Reply) {
        let key = format!("{} {}", reply.code, reply.enhanced().unwrap_or(""))
            .trim_end()
            .to_string();
        *self.refusals.entry(key).or_default() += 1;
    }

    fn error(&mut self, error: impl ToString) {
        *self.errors.entry(error.to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.accepted += other.accepted;
        self.latencies.extend(other.latencies);
        self.handshakes.extend(other.handshakes);
        self.logins.extend(other.logins);
        for (key, count) in other.refusals {
            *self.refusals.entry(key).or_default() += count;
        }
        for (key, count) in other.errors {
            *self.errors.entry(key).or_default() += count;
        }
    }
}

struct Plan {
    args: BenchArgs,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The host of HOST:PORT (without IPv6 brackets), for SNI and certificate checks.
    host: String,
    port: u16,
    recipients: Vec<String>,
    /// MAIL, RCPT and DATA as sent in every transaction.
    envelope: Envelope,
    /// The message without --record-ids.
    message: Message,
    /// The filler lines every message's body takes its full lines from.
    filler: Vec<u8>,
    /// Messages not yet claimed by a worker.
    remaining: AtomicUsize,
    /// With --record-ids: the file, the marker prefix and the last marker number used.
    record: Option<Record>,
}

struct Record {
    file: Mutex<std::fs::File>,
    prefix: String,
    counter: AtomicUsize,
}

impl Record {
    fn open(path: &std::path::Path, prefix: Option<String>) -> Result<Record, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let prefix = prefix.unwrap_or_else(|| {
            let now = crate::timefmt::unix_now();
            format!("bench-{}-{now}", std::process::id())
        });
        Ok(Record {
            file: Mutex::new(file),
            prefix,
            counter: AtomicUsize::new(0),
        })
    }

    fn next_marker(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.prefix)
    }

    /// One line per message, written at once so that lines never interleave.
    fn write(&self, fields: &[&str]) {
        let line = format!("{}\n", fields.join("\t"));
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// Runs the benchmark (or, with --hold, holds idle sessions) and returns the report.
pub fn run(args: BenchArgs) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(bench(args))
}

async fn bench(args: BenchArgs) -> Result<Report, String> {
    let plan = Arc::new(plan(args)?);
    if let Some(sessions) = plan.args.hold {
        return hold(plan, sessions).await;
    }
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let progress = tokio::spawn(show_progress(Arc::clone(&plan), Arc::clone(&tally)));
    let workers: Vec<_> = (0..plan.args.concurrency.max(1))
        .map(|_| tokio::spawn(worker(Arc::clone(&plan), Arc::clone(&tally))))
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    progress.abort();
    let seconds = started.elapsed().as_secs_f64();
    let tally = std::mem::take(&mut *tally.lock().map_err(|_| "a worker panicked")?);
    Ok(report(&plan, tally, seconds))
}

fn plan(args: BenchArgs) -> Result<Plan, String> {
    let tls = if args.tls || args.starttls {
        let trust = args.ca.clone().map_or(Trust::Anything, Trust::CaFile);
        Some(client::tls_config(&trust)?)
    } else {
        None
    };
    let (host, port) = address(&args.target)?;
    let recipients = recipients(&args.to, args.recipients);
    let envelope = Envelope::new(&args.from, &recipients);
    let message = message(&args.from, &recipients, args.size, None);
    let filler = filler(args.size);
    let record = match &args.record_ids {
        Some(path) => Some(Record::open(path, args.marker_prefix.clone())?),
        None => None,
    };
    Ok(Plan {
        remaining: AtomicUsize::new(args.messages),
        args,
        tls,
        host,
        port,
        recipients,
        envelope,
        message,
        filler,
        record,
    })
}

/// HOST:PORT as `check` reads HOST[:PORT], except that the port is required: a load test
/// must not pick a port on the user's behalf.
fn address(target: &str) -> Result<(String, u16), String> {
    match crate::diagnostics::check::target::split(target)? {
        (host, Some(port)) => Ok((host, port)),
        (_, None) => Err(format!("{target:?} is not HOST:PORT: the port is missing")),
    }
}

fn recipients(to: &str, count: usize) -> Vec<String> {
    if count <= 1 {
        return vec![to.to_string()];
    }
    let (local, domain) = to.split_once('@').unwrap_or((to, "example.net"));
    (1..=count)
        .map(|n| format!("{local}{n}@{domain}"))
        .collect()
}

/// One line of filler: 74 octets of text and CRLF.
const LINE: &[u8] =
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n";
const END: &[u8] = b"end\r\n";

/// A plain-text message of `size` octets with 76-octet lines, split where messages differ so
/// that only the header and the last line are made per message: the header (dot-stuffed; a
/// marker goes into Subject: and Message-ID:), `lines` full lines taken from the shared filler,
/// then a short line and "end" that make the size exact (unless the header alone is about that
/// long).
struct Message {
    header: Vec<u8>,
    lines: usize,
    tail: Vec<u8>,
}

impl Message {
    /// The message as sent, in parts: `filler` must come from `filler(size)`.
    fn parts<'a>(&'a self, filler: &'a [u8]) -> [&'a [u8]; 3] {
        // Never more lines than the filler has: they were counted from a smaller budget.
        let body = filler.get(..self.lines * LINE.len()).unwrap_or(filler);
        [&self.header, body, &self.tail]
    }
}

fn message(from: &str, to: &[String], size: usize, marker: Option<&str>) -> Message {
    let header = match marker {
        Some(marker) => format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: portcullis bench {marker}\r\nMessage-ID: <{marker}@portcullis.bench>\r\n\r\n",
            to[0]
        ),
        None => format!(
            "From: <{from}>\r\nTo: <{}>\r\nSubject: portcullis bench\r\nMessage-ID: <bench@portcullis>\r\n\r\n",
            to[0]
        ),
    };
    // The addresses come from the command line: stuff the header in case one holds a line break.
    let header = client::dot_stuff(header.as_bytes());
    let budget = size.saturating_sub(header.len() + END.len());
    let mut tail = Vec::new();
    let mut lines = 0;
    if budget >= 3 {
        lines = (budget - 3) / LINE.len();
        let rest = budget - lines * LINE.len();
        tail.resize(rest - 2, b'x');
        tail.extend_from_slice(b"\r\n");
    }
    // Filler and tail are lines of 'x' and "end": nothing in them needs dot-stuffing.
    tail.extend_from_slice(END);
    Message {
        header,
        lines,
        tail,
    }
}

/// As many full lines as a message of `size` octets can hold, made once for every message.
fn filler(size: usize) -> Vec<u8> {
    LINE.repeat(size / LINE.len())
}

/// Claims one message from the shared budget.
fn claim(plan: &Plan) -> bool {
    plan.remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

async fn worker(plan: Arc<Plan>, shared: Arc<Mutex<Tally>>) {
    let mut tally = Tally::default();
    while claim(&plan) {
        // The claimed message is sent first; the session then claims up to per_connection - 1 more.
        if let Err(error) = session(&plan, &mut tally).await {
            tally.error(error);
        }
    }
    if let Ok(mut shared) = shared.lock() {
        shared.merge(tally);
    }
}

/// One session: connect, EHLO, TLS, AUTH, then messages until per_connection or the budget ends.
async fn session(plan: &Plan, tally: &mut Tally) -> Result<(), String> {
    let mut connection = open(plan, tally).await?;
    for sent in 0..plan.args.per_connection {
        if sent > 0 && !claim(plan) {
            break;
        }
        let marked = plan.record.as_ref().map(|record| {
            let marker = record.next_marker();
            let message = message(
                &plan.args.from,
                &plan.recipients,
                plan.args.size,
                Some(&marker),
            );
            (record, marker, message)
        });
        let message = marked.as_ref().map_or(&plan.message, |(_, _, m)| m);
        let transaction = match connection
            .transaction(&plan.envelope, &message.parts(&plan.filler))
            .await
        {
            Ok(transaction) => transaction,
            Err(e) => {
                let error = format!("during a transaction: {}", e.kind());
                if let Some((record, marker, _)) = &marked {
                    record.write(&["?", marker, &error]);
                }
                return Err(error);
            }
        };
        for reply in transaction.all_replies().filter(|r| r.code >= 400) {
            tally.refusal(reply);
        }
        match (&transaction.end_of_data, transaction.end_of_data_latency) {
            (Some(reply), Some(latency)) if reply.code == 250 => {
                tally.accepted += 1;
                tally.latencies.push(latency);
                if let Some((record, marker, _)) = &marked {
                    let id = reply
                        .lines
                        .last()
                        .and_then(|line| line.split_whitespace().last())
                        .unwrap_or("");
                    record.write(&[id, marker]);
                }
            }
            _ => {
                if let Some((record, marker, _)) = &marked {
                    // The first failed MAIL, RCPT or DATA, or the final reply.
                    let refusal = transaction.all_replies().find(|r| r.code >= 400).map_or(
                        "no reply".to_string(),
                        |r| {
                            format!("{} {}", r.code, r.enhanced().unwrap_or(""))
                                .trim_end()
                                .to_string()
                        },
                    );
                    record.write(&["-", marker, &refusal]);
                }
                let _ = connection.command("RSET").await;
            }
        }
    }
    let _ = connection.command("QUIT").await;
    Ok(())
}

/// Connects and gets a session ready for MAIL: greeting, EHLO, TLS, EHLO again, AUTH.
async fn open(plan: &Plan, tally: &mut Tally) -> Result<Connection, String> {
    let tcp = TcpStream::connect((plan.host.as_str(), plan.port))
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let mut connection = if plan.args.tls {
        let started = Instant::now();
        let config = plan.tls.clone().ok_or("no TLS configuration")?;
        let connection = Connection::implicit_tls(tcp, config, &plan.host)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        tally.handshakes.push(started.elapsed());
        connection
    } else {
        Connection::plain(tcp)
    };
    expect(&mut connection, None, 220, tally).await?;
    expect(&mut connection, Some("EHLO bench.example"), 250, tally).await?;
    if plan.args.starttls {
        expect(&mut connection, Some("STARTTLS"), 220, tally).await?;
        let started = Instant::now();
        let config = plan.tls.clone().ok_or("no TLS configuration")?;
        connection
            .handshake(config, &plan.host)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        tally.handshakes.push(started.elapsed());
        expect(&mut connection, Some("EHLO bench.example"), 250, tally).await?;
    }
    if let (Some(user), Some(password)) = (&plan.args.user, &plan.args.password) {
        let started = Instant::now();
        let reply = match plan.args.auth.as_str() {
            "LOGIN" => connection.auth_login(user, password).await,
            _ => connection.auth_plain(user, password).await,
        }
        .map_err(|e| format!("AUTH: {}", e.kind()))?;
        if reply.code != 235 {
            tally.refusal(&reply);
            return Err(format!("AUTH refused: {}", reply.summary()));
        }
        tally.logins.push(started.elapsed());
    }
    Ok(connection)
}

/// Sends `command` (or just reads, for the greeting) and requires the `expected` code.
async fn expect(
    connection: &mut Connection,
    command: Option<&str>,
    expected: u16,
    tally: &mut Tally,
) -> Result<Reply, String> {
    let reply = match command {
        Some(command) => connection.command(command).await,
        None => connection.read_reply().await,
    }
    .map_err(|e| format!("{}: {}", command.unwrap_or("greeting"), e.kind()))?;
    if reply.code != expected {
        tally.refusal(&reply);
        return Err(format!(
            "{} refused: {}",
            command.unwrap_or("greeting"),
            reply.summary()
        ));
    }
    Ok(reply)
}

/// Opens `sessions` connections, takes each to EHLO (and TLS/AUTH if asked), holds them.
async fn hold(plan: Arc<Plan>, sessions: usize) -> Result<Report, String> {
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut open_sessions = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        match open(&plan, &mut tally).await {
            Ok(connection) => open_sessions.push(connection),
            Err(error) => tally.error(error),
        }
    }
    let held = open_sessions.len();
    eprintln!("holding {held} sessions for {} s", plan.args.hold_seconds);
    tokio::time::sleep(Duration::from_secs(plan.args.hold_seconds)).await;
    drop(open_sessions);
    let mut report = report(&plan, tally, started.elapsed().as_secs_f64());
    report.sessions_held = held;
    Ok(report)
}

async fn show_progress(plan: Arc<Plan>, tally: Arc<Mutex<Tally>>) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let started = Instant::now();
    let total = plan.args.messages;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let claimed = total - plan.remaining.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let rate = claimed as f64 / elapsed.max(0.001);
        let eta = (total - claimed) as f64 / rate.max(0.001);
        let errors = tally.lock().map_or(0, |t| t.errors.values().sum::<usize>());
        eprint!("\r{claimed}/{total} messages  {rate:.0}/s  ETA {eta:.0} s  errors {errors}   ");
        let _ = std::io::stderr().flush();
    }
}

fn report(plan: &Plan, tally: Tally, seconds: f64) -> Report {
    let args = &plan.args;
    let mode = match (args.tls, args.starttls, args.user.is_some()) {
        (true, _, auth) => format!("implicit TLS{}", if auth { " + AUTH" } else { "" }),
        (_, true, auth) => format!("STARTTLS{}", if auth { " + AUTH" } else { "" }),
        (_, _, auth) => format!("plain{}", if auth { " + AUTH" } else { "" }),
    };
    Report {
        target: args.target.clone(),
        mode,
        concurrency: args.concurrency,
        messages_requested: args.messages,
        messages_accepted: tally.accepted,
        seconds,
        messages_per_second: tally.accepted as f64 / seconds.max(f64::EPSILON),
        latency_ms: Percentiles::of(tally.latencies),
        tls_handshake_ms: Percentiles::of(tally.handshakes),
        auth_ms: Percentiles::of(tally.logins),
        refusals: tally.refusals,
        errors: tally.errors,
        sessions_held: 0,
    }
}

/// The report for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "{} ({}), {} sessions at once\n",
        report.target, report.mode, report.concurrency
    );
    out.push_str(&format!(
        "accepted {}/{} messages in {:.2} s: {:.1} messages/s\n",
        report.messages_accepted,
        report.messages_requested,
        report.seconds,
        report.messages_per_second
    ));
    for (name, p) in [
        ("final dot to reply", report.latency_ms),
        ("TLS handshake", report.tls_handshake_ms),
        ("AUTH", report.auth_ms),
    ] {
        if p.count > 0 {
            out.push_str(&format!(
                "{name:<19} ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (n={})\n",
                p.p50, p.p90, p.p99, p.max, p.count
            ));
        }
    }
    if report.sessions_held > 0 {
        out.push_str(&format!("sessions held: {}\n", report.sessions_held));
    }
    for (code, count) in &report.refusals {
        out.push_str(&format!("reply {code}: {count}\n"));
    }
    for (error, count) in &report.errors {
        out.push_str(&format!("error {error}: {count}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!(
            (p.count, p.p50, p.p90, p.p99, p.max),
            (100, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(Vec::new()).count, 0);
    }

    #[test]
    fn message_has_the_requested_size_and_crlf_lines() {
        let markers = (0..80).map(|n| format!("m-{}", "9".repeat(n)));
        for marker in std::iter::once(None).chain(markers.map(Some)) {
            for size in [300, 1024, 4096] {
                let message = message("a@b.c", &["d@e.f".to_string()], size, marker.as_deref());
                let message = message.parts(&filler(size)).concat();
                assert_eq!(message.len(), size, "{marker:?}");
                assert!(message.ends_with(b"\r\nend\r\n"));
                assert!(!message.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
            }
        }
        let marked = message("a@b.c", &["d@e.f".to_string()], 1024, Some("m-7"));
        let text = String::from_utf8(marked.parts(&filler(1024)).concat()).unwrap();
        assert!(text.contains("Subject: portcullis bench m-7\r\n"));
        assert!(text.contains("Message-ID: <m-7@portcullis.bench>\r\n"));
    }

    #[test]
    fn numbered_recipients_and_address() {
        assert_eq!(recipients("sink@x.y", 2), ["sink1@x.y", "sink2@x.y"]);
        assert_eq!(recipients("sink@x.y", 1), ["sink@x.y"]);
        let address = |target| address(target).unwrap();
        assert_eq!(address("127.0.0.1:2587"), ("127.0.0.1".into(), 2587));
        assert_eq!(address("[::1]:25"), ("::1".into(), 25));
        assert_eq!(
            address("mail.example.test:587"),
            ("mail.example.test".into(), 587)
        );
        for bad in ["mail.example.test", "[::1]", "::1", "host:0", ":25"] {
            assert!(super::address(bad).is_err(), "{bad:?}");
        }
    }
}
