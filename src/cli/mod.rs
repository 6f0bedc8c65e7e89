//! The command line: `serve`, `accounts`, `queue`, `config`. Exit statuses follow sysexits(3).

mod accounts;
mod config_check;
mod prompt;
mod provisioning;
mod queue;
mod quota;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::server;

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_NOUSER: u8 = 67;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_OSERR: u8 = 71;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A mail submission server that explains every reply and never loses an acknowledged message"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a command finds the server's configuration and data: only the commands that use them
/// take these options (after the command's name, before or after its own arguments).
#[derive(Args, Clone, Default)]
struct Place {
    /// TOML configuration file (default: the embedded configuration, see `config example`)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (spool, accounts, TLS); overrides `data_dir` of the configuration
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on 127.0.0.1:2587 and :2465 without a configuration)
    Serve {
        #[command(flatten)]
        place: Place,
    },
    /// Manage the accounts that may log in and submit mail
    Accounts {
        #[command(flatten)]
        place: Place,
        #[command(subcommand)]
        command: accounts::Command,
    },
    /// Manage the domains accounts live under
    Domains {
        #[command(flatten)]
        place: Place,
        #[command(subcommand)]
        command: accounts::DomainsCommand,
    },
    /// Inspect and steer the messages in the spool
    Queue {
        #[command(flatten)]
        place: Place,
        #[command(subcommand)]
        command: queue::Command,
    },
    /// Explain an SMTP reply code, enhanced status code or pasted reply line
    Explain(crate::diagnostics::explain::ExplainArgs),
    /// Diagnose a submission server: TLS, AUTH, sender, recipient, optionally a test message
    Check(Box<crate::diagnostics::check::CheckArgs>),
    /// Load-test a submission server: throughput, latency, TLS and AUTH times
    Bench(Box<crate::bench::BenchArgs>),
    /// Configuration helpers
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (e.g. `portcullis completions bash > /etc/bash_completion.d/portcullis`)
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page, in roff (`portcullis man | man -l -`)
    Man,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a complete, commented example configuration
    Example,
    /// Check the file given with --config as `serve` would (all problems at once); print a summary
    Check {
        #[command(flatten)]
        place: Place,
    },
}

/// A failed command: the message for standard error and the exit status.
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl Failure {
    pub fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

pub fn main() -> ExitCode {
    // What Portcullis creates (the account store, the spool, keys, the data directory itself)
    // is for the server's user alone; files meant for others are given their mode explicitly.
    // SAFETY: umask only sets the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let status = if error.use_stderr() {
                usage_status()
            } else {
                0
            };
            let _ = error.print();
            return ExitCode::from(status);
        }
    };
    match run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            eprintln!("portcullis: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

/// `check` promises 2 for a usage error, like other diagnostic tools; the rest use sysexits.
/// The subcommand is found by parsing again with errors ignored: an argument that merely equals
/// "check" (`config check --bogus`) must not decide it.
fn usage_status() -> u8 {
    let matches = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(std::env::args_os());
    match matches.as_ref().ok().and_then(ArgMatches::subcommand_name) {
        Some("check") => 2,
        _ => EX_USAGE,
    }
}

/// Logs go to standard error at the level named by PORTCULLIS_LOG (error, warn, info, debug,
/// trace; default info), as text (colours only on a terminal) or one JSON object a line.
fn init_logging(format: LogFormat) {
    let level = std::env::var("PORTCULLIS_LOG")
        .ok()
        .and_then(|name| name.parse::<tracing::level_filters::LevelFilter>().ok())
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Runs a command; `Ok` carries the exit status (0 except for `check`).
fn run(cli: Cli) -> Result<u8, Failure> {
    let done = |result: Result<(), Failure>| result.map(|()| 0);
    // The server logs as its configuration says; every other command as text.
    if !matches!(cli.command, Command::Serve { .. }) {
        die_on_closed_pipe();
        init_logging(LogFormat::Text);
    }
    match cli.command {
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", Config::example());
            Ok(0)
        }
        Command::Config {
            command: ConfigCommand::Check { place },
        } => config_check::run(place),
        Command::Explain(args) => {
            // Colour only on a terminal, and never when NO_COLOR is set.
            let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none();
            let text = crate::diagnostics::explain::run(&args, color)
                .map_err(|message| Failure::new(EX_DATAERR, message))?;
            print!("{text}");
            Ok(0)
        }
        // `check` reports through its own exit statuses (0 pass, 1 a failure, 2 usage).
        Command::Check(args) => Ok(crate::diagnostics::check::run(&args)),
        Command::Serve { place } => {
            let config = settings(place.clone())?;
            init_logging(config.log.format);
            let reread = Box::new(move || settings(place.clone()).map_err(|f| f.message));
            done(server::run(config, reread).map_err(|e| Failure::new(e.status, e.message)))
        }
        Command::Bench(args) => done(bench(*args)),
        Command::Accounts { place, command } => done(accounts::run(command, &settings(place)?)),
        Command::Domains { place, command } => {
            done(accounts::run_domains(command, &settings(place)?))
        }
        Command::Queue { place, command } => done(queue::run(command, &settings(place)?)),
        Command::Completions { shell } => done(completions(shell)),
        Command::Man => done(man_page()),
    }
}

/// A command whose output is cut short (`queue list | head -1`) ends the way coreutils and
/// Postfix do, killed by SIGPIPE (status 141 in the shell), instead of `println!` panicking on
/// EPIPE (exit 101). The Rust runtime ignores SIGPIPE; the server keeps that, so a client that
/// goes away is an error value there, but a one-shot command has nothing left to do.
fn die_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn bench(args: crate::bench::BenchArgs) -> Result<(), Failure> {
    let json = args.json;
    let report = crate::bench::run(args).map_err(|e| Failure::new(EX_USAGE, e))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::new(EX_SOFTWARE, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", crate::bench::render(&report));
    }
    Ok(())
}

/// A completion script for `shell`, generated from the command definitions.
fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "portcullis", &mut script);
    write_stdout(&script)
}

/// The manual page, generated from the definitions, with an EXIT STATUS section.
fn man_page() -> Result<(), Failure> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| Failure::new(EX_SOFTWARE, format!("cannot render the manual page: {e}")))?;
    write_stdout(with_exit_statuses(&String::from_utf8_lossy(&page)).as_bytes())
}

/// clap_mangen's page with `.TH` first (its string definition after it, once) and the exit
/// statuses before VERSION.
fn with_exit_statuses(page: &str) -> String {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let body = page.replace(PREAMBLE, "");
    let (title, rest) = body.split_once('\n').unwrap_or((&body, ""));
    let rest = match rest.find(".SH VERSION") {
        Some(at) => format!("{}{EXIT_STATUS_SECTION}{}", &rest[..at], &rest[at..]),
        None => format!("{rest}{EXIT_STATUS_SECTION}"),
    };
    format!("{title}\n{PREAMBLE}{rest}")
}

/// The exit statuses, as README's "Command line" lists them.
const EXIT_STATUS_SECTION: &str = r#".SH "EXIT STATUS"
Statuses follow sysexits(3).
.TP
\fB0\fR
success
.TP
\fB64\fR
usage error
.TP
\fB65\fR
bad input (a malformed queue id, address, password or file)
.TP
\fB66\fR
no such message, or an input file is missing
.TP
\fB67\fR
no such account
.TP
\fB70\fR
internal error
.TP
\fB71\fR
operating system error: a listener cannot be bound, the runtime or the signal handlers cannot start
.TP
\fB73\fR
already exists, or the data directory is in use by another server
.TP
\fB74\fR
I/O error
.TP
\fB75\fR
temporary failure; try again
.TP
\fB78\fR
bad configuration
.PP
\fBcheck\fR exits 0 when every step passes, 1 on a failure and 2 on a usage error.
.PP
A command whose standard output is closed before it is done is ended by SIGPIPE (status 141 in the shell), as coreutils are.
.PP
Each command has its own help: \fBportcullis help COMMAND\fR.
"#;

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .map_err(|e| Failure::new(EX_IOERR, format!("standard output: {e}")))
}

/// The configuration in effect: the file (or the embedded default), then command-line overrides.
fn settings(place: Place) -> Result<Config, Failure> {
    let mut config = match place.config {
        Some(path) => Config::load(&path).map_err(|e| Failure::new(EX_CONFIG, e.to_string()))?,
        None => Config::embedded_default(),
    };
    if let Some(data_dir) = place.data_dir {
        config.data_dir = data_dir;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command, argument and option of `command` and below that has no help text, by path.
    fn undocumented(command: &clap::Command, path: &str) -> Vec<String> {
        let path = format!("{path} {}", command.get_name());
        let mut missing: Vec<String> = command
            .get_arguments()
            .filter(|arg| arg.get_help().is_none() && arg.get_long_help().is_none())
            .map(|arg| format!("{path} {}", arg.get_id()))
            .collect();
        for sub in command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
        {
            if sub.get_about().is_none() {
                missing.push(format!("{path} {}", sub.get_name()));
            }
            missing.extend(undocumented(sub, &path));
        }
        missing
    }

    #[test]
    fn every_command_and_option_has_help() {
        let mut command = Cli::command();
        command.build();
        assert_eq!(undocumented(&command, ""), Vec::<String>::new());
    }

    #[test]
    fn only_the_commands_that_read_the_data_directory_take_config_and_data_dir() {
        let mut command = Cli::command();
        command.build();
        for name in ["explain", "check", "bench", "completions", "man"] {
            let sub = command.find_subcommand(name).unwrap();
            let ids: Vec<&str> = sub.get_arguments().map(|a| a.get_id().as_str()).collect();
            assert!(
                !ids.contains(&"config") && !ids.contains(&"data_dir"),
                "{name}: {ids:?}"
            );
        }
        for path in [
            &["serve"][..],
            &["accounts", "add"],
            &["queue", "show"],
            &["config", "check"],
        ] {
            let sub = path
                .iter()
                .fold(&command, |c, name| c.find_subcommand(name).unwrap());
            let ids: Vec<&str> = sub.get_arguments().map(|a| a.get_id().as_str()).collect();
            assert!(
                ids.contains(&"config") && ids.contains(&"data_dir"),
                "{path:?}: {ids:?}"
            );
        }
    }
}
