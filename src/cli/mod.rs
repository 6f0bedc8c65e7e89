//! The command line: `serve`, `accounts`, `queue`, `config`. Exit statuses follow sysexits(3).

mod accounts;
mod provisioning;
mod queue;
mod quota;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::server;

pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_NOINPUT: u8 = 66;
pub const EX_NOUSER: u8 = 67;
pub const EX_SOFTWARE: u8 = 70;
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
    /// TOML configuration file (default: the embedded configuration, see `config example`)
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (spool, accounts, TLS); overrides `data_dir` of the configuration
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on 127.0.0.1:2587 and :2465 without a configuration)
    Serve,
    /// Manage the accounts that may log in and submit mail
    Accounts {
        #[command(subcommand)]
        command: accounts::Command,
    },
    /// Manage the domains accounts live under
    Domains {
        #[command(subcommand)]
        command: accounts::DomainsCommand,
    },
    /// Inspect the messages in the spool
    Queue {
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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a complete, commented example configuration
    Example,
    /// Check the file given with --config and print the settings in effect
    Check,
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
    if !matches!(cli.command, Command::Serve) {
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
            command: ConfigCommand::Check,
        } => {
            let config = settings(cli.config, cli.data_dir)?;
            println!("{config:#?}");
            Ok(0)
        }
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
        Command::Serve => {
            let config = settings(cli.config, cli.data_dir)?;
            init_logging(config.log.format);
            done(server::run(config).map_err(|e| Failure::new(e.status, e.message)))
        }
        Command::Bench(args) => done(bench(*args)),
        Command::Accounts { command } => {
            done(accounts::run(command, &settings(cli.config, cli.data_dir)?))
        }
        Command::Domains { command } => done(accounts::run_domains(
            command,
            &settings(cli.config, cli.data_dir)?,
        )),
        Command::Queue { command } => {
            done(queue::run(command, &settings(cli.config, cli.data_dir)?))
        }
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

/// The configuration in effect: the file (or the embedded default), then command-line overrides.
fn settings(file: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Config, Failure> {
    let mut config = match file {
        Some(path) => Config::load(&path).map_err(|e| Failure::new(EX_CONFIG, e.to_string()))?,
        None => Config::embedded_default(),
    };
    if let Some(data_dir) = data_dir {
        config.data_dir = data_dir;
    }
    Ok(config)
}
