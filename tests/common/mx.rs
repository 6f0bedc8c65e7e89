//! Receiving servers for the delivery tests: `tests/clients/mx_server.py` (aiosmtpd) on one
//! loopback address each (127.0.0.x: every "host" of a test is a different address), recording
//! every accepted message in a directory of its own.
//!
//! What a recipient gets is chosen by its local part (`accept*` 250, `reject*` 550 5.1.1,
//! `tempfail*` 451 4.3.0, `greylist*` 450 4.2.0 once per sender and recipient then 250, `full*`
//! 452 4.2.2, anything else 250); the script's options (`python3 tests/clients/mx_server.py
//! --help`) change the rest: `--greeting`, `--data-reply`, `--close-after-dot N`,
//! `--delay-data`, `--size`, `--no-pipelining`, `--no-smtputf8`, `--no-8bitmime`, `--dsn`,
//! `--cert`/`--key`, `--require-tls`, `--user`/`--password`, `--auth-required`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use super::{TempDir, python_command};

/// How long the script may take to print its ready line.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One message as the receiving server stored it (`NNNNNN.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The file it was read from (`000001.json`): the order of arrival.
    pub file: String,
    /// The reverse path; empty for the null sender `<>`.
    pub mail_from: String,
    /// The accepted recipients, in the order of their RCPT commands.
    pub rcpt_tos: Vec<String>,
    /// MAIL parameters as sent (`BODY=8BITMIME`, `SIZE=1234`, `RET=HDRS`, ...).
    pub mail_options: Vec<String>,
    /// RCPT parameters as sent, by accepted recipient.
    pub rcpt_options: BTreeMap<String, Vec<String>>,
    /// The message exactly as received, after dot-unstuffing (CRLF line endings kept, bare CR
    /// and LF kept, ends with the CRLF before the final dot).
    pub data: Vec<u8>,
    /// The client's address, `ip:port`.
    pub peer: String,
    /// The name the client gave in EHLO or HELO.
    pub helo: String,
    /// The connection it came over: 1 for the server's first connection, and so on.
    pub connection: u64,
    /// Whether STARTTLS was in effect.
    pub tls: bool,
    /// `TLSv1.3`, `TLSv1.2` with TLS.
    pub tls_version: Option<String>,
    /// The login, when the client authenticated.
    pub auth_user: Option<String>,
    /// The client never got the reply to the final dot (`--close-after-dot`, or it hung up
    /// during `--delay-data`): a message it may well send again.
    pub closed: bool,
}

impl Received {
    /// The data as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first header field called `name` (any case), unfolded, without its name.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let mut found: Option<String> = None;
        for line in text.split("\r\n") {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push_str(line);
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((field, value)) = line.split_once(':')
                && field.eq_ignore_ascii_case(name)
            {
                found = Some(value.trim_start().to_string());
            }
        }
        found
    }
}

#[derive(Deserialize)]
struct Stored {
    mail_from: String,
    rcpt_tos: Vec<String>,
    mail_options: Vec<String>,
    rcpt_options: BTreeMap<String, Vec<String>>,
    data_b64: String,
    peer: String,
    helo: String,
    connection: u64,
    tls: bool,
    tls_version: Option<String>,
    auth_user: Option<String>,
    closed: bool,
}

/// One decision of the server, from its `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// 1 for the server's first connection, and so on.
    pub connection: u64,
    /// `connect`, `ehlo`, `starttls`, `auth`, `mail`, `rcpt`, `data`, `vrfy` or `disconnect`.
    pub event: String,
    /// The command's argument as sent (`FROM:<a@b> BODY=8BITMIME`, `TO:<c@d>`, the EHLO
    /// name, `PLAIN login`); the client's address for `connect`.
    pub argument: String,
    /// The reply: the greeting for `connect`, `250` and the keywords for `ehlo`; none for
    /// `disconnect` and for a `data` the client never got a reply to.
    pub reply: Option<String>,
    /// Whether STARTTLS was in effect.
    pub tls: bool,
    /// For `mail` and `rcpt`: the client's next commands were already waiting (it did not
    /// wait for this reply). A pipelining client is not always caught, but `true` is certain.
    pub pipelined: bool,
}

/// A running `mx_server.py`; stopped on drop (its stdin closed, then killed).
pub struct Mx {
    child: Child,
    stdin: Option<ChildStdin>,
    address: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    // Dropped after the process is gone (fields drop after `Drop::drop`).
    dir: TempDir,
}

impl Mx {
    /// Starts a server on `ip` (a free port) with the script's `args`; panics with the script's
    /// standard error if it does not start within [`START_TIMEOUT`].
    pub fn start(ip: &str, args: &[&str]) -> Mx {
        Mx::start_on(ip, 0, args)
    }

    /// [`Mx::start`] on a given port (0: a free one).
    pub fn start_on(ip: &str, port: u16, args: &[&str]) -> Mx {
        Mx::try_start(ip, port, args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Servers on several addresses sharing one port, as MX hosts do (`[delivery] mx_port`):
    /// each `(ip, args)` in turn, the first on a free port. Retries with another port when one
    /// of the later addresses has it taken.
    pub fn start_group(hosts: &[(&str, &[&str])]) -> Vec<Mx> {
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut group: Vec<Mx> = Vec::new();
            let mut failed = false;
            for (ip, args) in hosts {
                let port = group.first().map_or(0, Mx::port);
                match Mx::try_start(ip, port, args) {
                    Ok(mx) => group.push(mx),
                    Err(error) if error.contains("in use") && port != 0 => {
                        last_error = error;
                        failed = true;
                        break;
                    }
                    Err(error) => panic!("{error}"),
                }
            }
            if !failed {
                return group;
            }
        }
        panic!("no port free on every address: {last_error}")
    }

    /// [`Mx::start_on`] that returns what went wrong instead of panicking.
    pub fn try_start(ip: &str, port: u16, args: &[&str]) -> Result<Mx, String> {
        let ip_address: IpAddr = ip
            .parse()
            .map_err(|error| format!("not an IP address: {ip:?}: {error}"))?;
        let dir = TempDir::new(&format!("mx-{ip}"));
        let port_text = port.to_string();
        let mut child = python_command("mx_server.py")
            .args(["--host", ip, "--port", &port_text, "--out"])
            .arg(&dir.0)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run python3: {error}"))?;
        let stdin = child.stdin.take();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = drain(child.stderr.take().unwrap(), Arc::clone(&stderr));

        // Lines of stdout through a channel, so that the wait is bounded; the reader keeps
        // draining after the ready line.
        let (lines_sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_sender.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let failure = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line.trim().strip_prefix("listening on ") {
                        match port.parse::<u16>() {
                            Ok(port) => {
                                return Ok(Mx {
                                    child,
                                    stdin,
                                    address: SocketAddr::new(ip_address, port),
                                    stderr,
                                    dir,
                                });
                            }
                            Err(_) => break format!("a bad ready line {line:?}"),
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    break format!("no ready line within {START_TIMEOUT:?}");
                }
                Err(RecvTimeoutError::Disconnected) => break "it exited".to_string(),
            }
        };
        drop(stdin);
        let _ = child.kill();
        let status = child.wait();
        let _ = stderr_thread.join();
        let stderr = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        Err(format!(
            "mx_server.py on {ip}:{port} {args:?} did not start: {failure} ({status:?}); \
             is aiosmtpd installed (python3 -m pip install aiosmtpd)?\n{stderr}"
        ))
    }

    pub fn ip(&self) -> IpAddr {
        self.address.ip()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The directory of the stored messages and of `events.jsonl`.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// The messages stored so far, in the order they arrived.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir())
            .expect("the server's directory")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir().join(&name)).unwrap();
                let stored: Stored = serde_json::from_str(&text)
                    .unwrap_or_else(|error| panic!("{name}: {error}: {text}"));
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&stored.data_b64)
                    .unwrap_or_else(|error| panic!("{name}: data_b64: {error}"));
                Received {
                    file: name,
                    mail_from: stored.mail_from,
                    rcpt_tos: stored.rcpt_tos,
                    mail_options: stored.mail_options,
                    rcpt_options: stored.rcpt_options,
                    data,
                    peer: stored.peer,
                    helo: stored.helo,
                    connection: stored.connection,
                    tls: stored.tls,
                    tls_version: stored.tls_version,
                    auth_user: stored.auth_user,
                    closed: stored.closed,
                }
            })
            .collect()
    }

    /// Waits until at least `count` messages arrived; all of them. Panics with what did
    /// arrive, the server's events and its standard error after `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "expected {count} message(s) at {} within {timeout:?}, got {}: \
                     {received:#?}\nevents:\n{}\nstderr:\n{}",
                    self.address,
                    received.len(),
                    self.events_text(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's decisions so far, in order (a line still being written is left out).
    pub fn events(&self) -> Vec<Event> {
        let text = self.events_text();
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))
            })
            .collect()
    }

    /// The events of one kind (`rcpt`, `connect`, ...).
    pub fn events_of(&self, kind: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|event| event.event == kind)
            .collect()
    }

    /// How many connections the server has seen (refused ones included).
    pub fn connections(&self) -> usize {
        self.events_of("connect").len()
    }

    fn events_text(&self) -> String {
        std::fs::read_to_string(self.dir().join("events.jsonl")).unwrap_or_default()
    }

    /// What the script wrote to its standard error so far: a line per transaction, and
    /// aiosmtpd's errors.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for Mx {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a pipe into `buffer` until it closes, so that the script never blocks on it.
fn drain(mut pipe: impl Read + Send + 'static, buffer: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buffer.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}
