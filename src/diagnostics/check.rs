//! `portcullis check HOST[:PORT]`: the submission doctor. It walks through what a mail client
//! does (connect, greeting, EHLO, TLS, AUTH, MAIL, RCPT, optionally DATA), judges each step
//! PASS/WARN/FAIL/SKIP with the server's own reply, and says in plain words what a failure
//! means and what to change. It works against any SMTP server, not only Portcullis.
//!
//! Two connections are used when logging in: the first probes the server's policy (AUTH before
//! TLS, MAIL without login, made-up credentials), the second logs in with the real credentials,
//! because some servers refuse further logins on a connection after a failed one.

mod connection;
mod establish;
mod login;
mod password;
mod probes;
mod report;
mod submit;
pub(crate) mod target;
mod tls;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use clap::Args;

use crate::client::Reply;
use connection::{Log, Smtp};
use password::Password;
use report::{Report, Status, Step};
use target::{Choice, Mode};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Options of `portcullis check`.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// The server: HOST, HOST:PORT, [IPv6]:PORT (default port 587)
    #[arg(value_name = "HOST[:PORT]")]
    pub target: String,
    /// Plaintext connection upgraded with STARTTLS (default for port 587 and unusual ports)
    #[arg(long)]
    pub starttls: bool,
    /// Implicit TLS from the first byte (default for port 465)
    #[arg(long)]
    pub tls: bool,
    /// No TLS at all (credentials would travel in clear)
    #[arg(long)]
    pub plain: bool,
    /// User name to log in with (usually the full email address)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from standard input (one trailing newline is removed)
    #[arg(long)]
    pub password_stdin: bool,
    /// Read the password from FILE (every byte counts, a trailing newline too)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Sender address for MAIL FROM (default: --user when it is an email address)
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Recipient address for RCPT TO
    #[arg(long, value_name = "ADDRESS")]
    pub to: Option<String>,
    /// Actually submit a small test message to --to
    #[arg(long)]
    pub send: bool,
    /// Trust the certificates in this PEM file instead of the system's CAs
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Continue when the certificate fails verification (reported as a warning)
    #[arg(long)]
    pub insecure: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Include the SMTP transcript (credentials redacted)
    #[arg(long, short)]
    pub verbose: bool,
    /// Name for EHLO (default: this host's name if fully qualified, else its address literal)
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// Seconds to wait for each connection, handshake and reply
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
}

/// Runs the check; prints the report to stdout itself; returns the process exit status (0: no
/// failure, warnings allowed; 1: a step failed; 2: usage error).
pub fn run(args: &CheckArgs) -> u8 {
    let plan = match Plan::new(args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("portcullis check: {message}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("portcullis check: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let report = runtime.block_on(Checker::new(plan).run());
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    report.exit_status
}

/// The validated options.
struct Plan {
    target: String,
    host: String,
    port: u16,
    mode: Mode,
    /// The port says nothing about the mode: the first connection finds out.
    detect_mode: bool,
    /// No port was given: if 587 cannot be reached, 465 (implicit TLS) is tried.
    try_submissions: bool,
    /// How the mode was detected, for the report.
    mode_note: Option<String>,
    /// Absent with --plain.
    tls: Option<tls::Tls>,
    insecure: bool,
    user: Option<String>,
    password: Option<Password>,
    password_source: String,
    from: Option<String>,
    to: Option<String>,
    send: bool,
    helo: Option<String>,
    timeout: Duration,
    verbose: bool,
}

impl Plan {
    fn new(args: &CheckArgs) -> Result<Plan, String> {
        let (host, given_port) = target::split(&args.target)?;
        let port = given_port.unwrap_or(target::SUBMISSION_PORT);
        check_combinations(args)?;
        let choice = target::mode(args.starttls, args.tls, args.plain, port);
        // Detection starts as STARTTLS: the server's greeting is what it waits for.
        let (mode, detect_mode) = match choice {
            Choice::Settled(mode) => (mode, false),
            Choice::Detect => (Mode::StartTls, true),
        };
        // Without a port or a mode, 465 is the alternative when 587 does not answer.
        let try_submissions = given_port.is_none() && !(args.starttls || args.tls || args.plain);
        let from = args
            .from
            .clone()
            .or_else(|| args.user.clone().filter(|user| user.contains('@')));
        if args.send && (from.is_none() || args.to.is_none()) {
            return Err(
                "--send needs --to and a sender (--from, or a --user that is an address)".into(),
            );
        }
        let tls = match mode {
            Mode::Plain => None,
            Mode::StartTls | Mode::Implicit => {
                Some(tls::Tls::new(args.ca.as_deref(), args.insecure)?)
            }
        };
        let (password, password_source) = read_password(args)?;
        Ok(Plan {
            target: args.target.clone(),
            host,
            port,
            mode,
            detect_mode,
            try_submissions,
            mode_note: None,
            tls,
            insecure: args.insecure,
            user: args.user.clone(),
            password,
            password_source,
            from,
            to: args.to.clone(),
            send: args.send,
            helo: args.helo.clone(),
            timeout: Duration::from_secs(args.timeout),
            verbose: args.verbose,
        })
    }
}

fn check_combinations(args: &CheckArgs) -> Result<(), String> {
    let modes = [args.starttls, args.tls, args.plain];
    if modes.iter().filter(|&&on| on).count() > 1 {
        return Err("give at most one of --starttls, --tls and --plain".into());
    }
    if args.password_stdin && args.password_file.is_some() {
        return Err("give either --password-stdin or --password-file, not both".into());
    }
    let has_password = args.password_stdin || args.password_file.is_some();
    if args.user.is_some() && !has_password {
        return Err("--user needs --password-stdin or --password-file".into());
    }
    if has_password && args.user.is_none() {
        return Err("a password needs --user".into());
    }
    if args.timeout == 0 {
        return Err("--timeout must be at least 1 second".into());
    }
    Ok(())
}

fn read_password(args: &CheckArgs) -> Result<(Option<Password>, String), String> {
    if args.password_stdin {
        return Ok((Some(Password::from_stdin()?), "standard input".to_string()));
    }
    match &args.password_file {
        Some(path) => Ok((
            Some(Password::from_file(path)?),
            format!("the password file {}", path.display()),
        )),
        None => Ok((None, String::new())),
    }
}

/// What earlier steps found out, for later steps and for conclusions across steps.
#[derive(Default)]
struct Facts {
    /// The EHLO offered STARTTLS (before TLS).
    starttls_offered: bool,
    /// Whether an AUTH line was in the EHLO used for logging in (None: not seen yet).
    auth_offered: Option<bool>,
    /// AUTH mechanisms this check can use, in the order to try them.
    mechanisms: Vec<&'static str>,
    logged_in: bool,
    relay_denied: bool,
    queue_id: Option<String>,
}

/// An open connection ready for AUTH or MAIL: greeting read, EHLO answered (after TLS, where
/// there is TLS).
struct Session {
    smtp: Smtp,
    extensions: Vec<String>,
}

struct Checker {
    plan: Plan,
    log: Log,
    steps: Vec<Step>,
    facts: Facts,
    /// While re-opening a connection for the login, only failures are reported: the steps
    /// already passed once.
    quiet: bool,
}

impl Checker {
    fn new(plan: Plan) -> Checker {
        Checker {
            plan,
            log: Rc::new(RefCell::new(Vec::new())),
            steps: Vec::new(),
            facts: Facts::default(),
            quiet: false,
        }
    }

    async fn run(mut self) -> Report {
        if let Some(session) = self.establish().await {
            self.probe(session).await;
            self.transaction().await;
        }
        self.finish()
    }

    fn record(&mut self, mut step: Step) {
        if self.quiet {
            if matches!(step.status, Status::Pass | Status::Warn | Status::Skip) {
                return;
            }
            step.step = format!("{} (reconnect)", step.step);
        }
        self.steps.push(step);
    }

    /// Sends `line`; when no reply comes, records `step` as failed ("no answer to VERB") and
    /// returns `None`.
    async fn ask(&mut self, smtp: &mut Smtp, step: &str, line: &str) -> Option<Reply> {
        let verb = line.split([' ', ':']).next().unwrap_or(line);
        match smtp.command(line).await {
            Ok(reply) => Some(reply),
            Err(error) => {
                self.record(Step::fail(step, format!("no answer to {verb}: {error}")));
                None
            }
        }
    }

    /// A fresh connection up to the point where AUTH or MAIL can be sent.
    async fn reconnect(&mut self) -> Option<Session> {
        self.quiet = true;
        let session = self.establish().await;
        self.quiet = false;
        session
    }

    fn finish(self) -> Report {
        let conclusions = self.conclusions();
        let all_good = self.all_good();
        let transcript = self.plan.verbose.then(|| self.log.take());
        let mut report = Report {
            target: self.plan.target,
            host: self.plan.host,
            port: self.plan.port,
            mode: self.plan.mode.name(),
            mode_label: self.plan.mode.label(),
            mode_note: self.plan.mode_note,
            steps: self.steps,
            diagnosis: Vec::new(),
            overall: Status::Pass,
            exit_status: 0,
            transcript,
        };
        report.finish(conclusions, &all_good);
        report
    }

    /// Conclusions no single step can draw: a host that looks like an MX rather than a
    /// submission server.
    fn conclusions(&self) -> Vec<String> {
        let failed = self.steps.iter().any(|s| s.status == Status::Fail);
        let mut signs = Vec::new();
        if self.plan.port == 25 {
            signs.push("port 25 is the port for mail between servers");
        }
        let tls_expected = self.plan.mode != Mode::Plain || !self.facts.starttls_offered;
        if self.facts.auth_offered == Some(false) && tls_expected {
            signs.push("it offers no AUTH");
        }
        if self.facts.relay_denied {
            signs.push("it refused to relay to an external domain");
        }
        if !failed || signs.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "This host looks like a server for incoming mail (an MX) rather than a submission \
             server: {}. Submission servers listen on port 587 (STARTTLS) or 465 (implicit \
             TLS), offer AUTH after TLS and relay for logged-in users. Check the outgoing \
             (SMTP) server name and port in the client's settings.",
            signs.join("; ")
        )]
    }

    fn all_good(&self) -> String {
        let mut text = String::from("No problems found.");
        if let Some(id) = &self.facts.queue_id {
            text.push_str(&format!(" The test message was accepted (queue id {id})."));
        }
        if self.steps.iter().any(|s| s.status == Status::Skip) {
            text.push_str(
                " Some steps were skipped: give --user with a password, --from, --to and \
                 --send to check a complete submission.",
            );
        }
        text
    }
}

/// The AUTH mechanisms an EHLO reply offers (`AUTH PLAIN LOGIN` or the old `AUTH=PLAIN`).
fn auth_line(extensions: &[String]) -> Option<Vec<String>> {
    extensions.iter().find_map(|line| {
        let rest = line
            .strip_prefix("AUTH ")
            .or_else(|| line.strip_prefix("AUTH="))?;
        let mechanisms: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
        // An AUTH keyword without mechanisms offers nothing.
        (!mechanisms.is_empty()).then_some(mechanisms)
    })
}

fn offers(extensions: &[String], keyword: &str) -> bool {
    extensions
        .iter()
        .any(|line| line.split_whitespace().next() == Some(keyword))
}

/// Random lowercase hex, for made-up credentials and the Message-ID.
fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buffer = vec![0u8; bytes];
    // A failing system RNG only makes the probe less random, never wrong.
    let _ = ring::rand::SystemRandom::new().fill(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_line_in_both_forms() {
        let ext = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        assert_eq!(
            auth_line(&ext(&["PIPELINING", "AUTH PLAIN LOGIN"])),
            Some(vec!["PLAIN".to_string(), "LOGIN".to_string()])
        );
        assert_eq!(
            auth_line(&ext(&["AUTH=LOGIN"])),
            Some(vec!["LOGIN".to_string()])
        );
        assert_eq!(auth_line(&ext(&["STARTTLS", "SIZE 100"])), None);
        assert!(offers(&ext(&["STARTTLS"]), "STARTTLS"));
        assert!(!offers(&ext(&["XSTARTTLS"]), "STARTTLS"));
    }

    #[test]
    fn random_hex_has_the_right_length() {
        let a = random_hex(8);
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_hex(8));
    }
}
