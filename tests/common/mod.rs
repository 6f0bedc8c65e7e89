//! Test harness: runs the real `portcullis` binary on loopback with a throw-away data directory.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod dns;
pub mod mx;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_portcullis");

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("portcullis-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test's extra configuration. A test that does not configure delivery gets it switched
/// off: nothing a test submits may leave for a real domain.
fn extra(text: &str) -> String {
    if text.contains("[delivery]") {
        text.to_string()
    } else {
        format!("{text}\n[delivery]\nenabled = false\n")
    }
}

/// Settings of a test server; the listeners bind port 0 and report what they got.
pub struct Options {
    pub trusted_networks: &'static str,
    /// TOML appended to the generated file after its `[[listener]]` tables (for example
    /// `[delivery]` and `[[route]]` tables); start it with a table header, since top-level
    /// keys written here would land in the last listener.
    pub extra: String,
    /// Send the server's log to `server.log` in its directory at this level (read it with
    /// [`Server::log`]) instead of the test's standard error at `warn`.
    pub log: Option<&'static str>,
    /// Extra environment variables of the server process (for example `NOTIFY_SOCKET`).
    pub env: Vec<(&'static str, PathBuf)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            trusted_networks: "[]",
            extra: String::new(),
            log: None,
            env: Vec::new(),
        }
    }
}

pub struct Server {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    /// The `[http]` listener's address, when the configuration has one.
    pub http: Option<SocketAddr>,
    pub config_path: PathBuf,
    log: Option<&'static str>,
    env: Vec<(&'static str, PathBuf)>,
}

impl Server {
    pub fn start(name: &str, options: Options) -> Server {
        let dir = TempDir::new(name);
        let config_path = dir.0.join("portcullis.toml");
        let config = format!(
            r#"hostname = "mail.example.test"
data_dir = "{data}"

[[listener]]
address = "127.0.0.1:0"
mode = "submission"
trusted_networks = {trusted}

[[listener]]
address = "127.0.0.1:0"
mode = "submissions"

{extra}
"#,
            data = dir.0.join("data").display(),
            trusted = options.trusted_networks,
            extra = extra(&options.extra),
        );
        std::fs::write(&config_path, config).unwrap();
        let mut server = Server {
            child: None,
            dir,
            submission: "127.0.0.1:1".parse().unwrap(),
            submissions: "127.0.0.1:1".parse().unwrap(),
            http: None,
            config_path,
            log: options.log,
            env: options.env,
        };
        server.launch();
        server
    }

    /// Starts (or restarts) the binary and waits for it to report its listeners.
    pub fn launch(&mut self) {
        let stderr = match self.log {
            Some(_) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                    .unwrap(),
            ),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(BINARY)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("PORTCULLIS_LOG", self.log.unwrap_or("warn"))
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start portcullis");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut found = Vec::new();
        // The announcement ends with how to stop the server.
        loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if line.starts_with("Stop with") {
                break;
            }
            if let Some(rest) = line.trim().strip_prefix("http on ") {
                let address = rest.split(':').take(2).collect::<Vec<_>>().join(":");
                self.http = Some(address.parse().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("listening on ") {
                let address = rest
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .unwrap();
                found.push((address, rest.contains("(submissions")));
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        for (address, implicit) in found {
            if implicit {
                self.submissions = address;
            } else {
                self.submission = address;
            }
        }
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("server.log")
    }

    /// What the server logged so far (with [`Options::log`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// Runs a command of the binary with the server's configuration, as an administrator would.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let config = self.config_path.to_str().unwrap();
        cli_in(
            &self.data_dir(),
            &[args, &["--config", config]].concat(),
            stdin,
        )
    }

    /// [`Server::cli`] that must succeed (its standard error in the panic if not).
    pub fn cli_checked(&self, args: &[&str], stdin: Option<&str>) -> Output {
        assert_success(args, self.cli(args, stdin))
    }

    /// [`Server::cli`] that must succeed; its standard output.
    pub fn cli_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        stdout(&self.cli_checked(args, stdin))
    }

    pub fn add_account(&self, email: &str, password: &str) {
        self.cli_ok(
            &["accounts", "add", email, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
    }

    pub fn queue(&self) -> Vec<serde_json::Value> {
        let output = self.cli_checked(&["queue", "list", "--json"], None);
        serde_json::from_slice(&output.stdout).expect("queue list --json prints JSON")
    }

    pub fn show(&self, id: &str) -> String {
        self.cli_ok(&["queue", "show", id], None)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        sigterm(&child);
        child.wait().unwrap()
    }

    pub fn certificate(&self) -> PathBuf {
        self.data_dir().join("tls/cert.pem")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to a child process; panics if it cannot be sent (a wait would then hang).
pub fn sigterm(child: &Child) {
    signal(child, libc::SIGTERM);
}

/// Sends `signal` to a child process; panics if it cannot be sent.
pub fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) takes no pointers; the pid is our own child, not yet waited for.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill -{signal} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

pub fn cli_in(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// [`cli_in`] that must succeed (its standard error in the panic if not).
pub fn cli_in_checked(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    assert_success(args, cli_in(data_dir, args, stdin))
}

/// [`cli_in`] that must succeed; its standard output.
pub fn cli_in_ok(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    stdout(&cli_in_checked(data_dir, args, stdin))
}

/// Panics, with the command's exit status and standard error, unless it succeeded.
pub fn assert_success(args: &[&str], output: Output) -> Output {
    assert!(
        output.status.success(),
        "portcullis {args:?} failed ({}): {}",
        output.status,
        stderr(&output)
    );
    output
}

/// The exit code of a command that exited (not killed by a signal).
pub fn status(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A raw SMTP client over plain TCP, for exact control of the bytes.
pub struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(address: SocketAddr) -> Raw {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Raw {
            reader: BufReader::new(stream),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// Reads one (possibly multi-line) reply and returns its last line.
    pub fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed while waiting for a reply");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    /// Reads a reply and checks that it starts with `expected` (for example "250 2.0.0").
    pub fn expect(&mut self, expected: &str) -> String {
        let reply = self.reply();
        assert!(
            reply.starts_with(expected),
            "expected {expected:?}, got {reply:?}"
        );
        reply
    }

    /// True when the server closes the connection within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }

    /// A second handle for writing while this one reads.
    pub fn writer(&self) -> TcpStream {
        self.reader.get_ref().try_clone().unwrap()
    }

    pub fn set_timeout(&mut self, timeout: Duration) {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .unwrap();
    }
}

/// Runs the Python client script with arguments; returns (exit status success, stdout, stderr).
pub fn python(args: &[&str]) -> (bool, String, String) {
    python_script("smtp_client.py", args)
}

/// Sends with `smtp_client.py send` (TLS checked against the server's certificate) and
/// returns its JSON report: the reply to each step as `[code, text]`.
pub fn smtplib(server: &Server, args: &[&str]) -> serde_json::Value {
    let cafile = server.certificate();
    let mut full = vec!["send", "--cafile", cafile.to_str().unwrap()];
    full.extend_from_slice(args);
    let (ok, stdout, stderr) = python(&full);
    assert!(ok, "smtp_client.py failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout} / {stderr}"))
}

/// Asserts a `[code, text]` reply from [`smtplib`]: the code, and the start of the text.
pub fn assert_reply(value: &serde_json::Value, code: u64, status_and_text: &str) {
    assert_eq!(value[0], code, "{value}");
    let text = value[1].as_str().unwrap();
    assert!(
        text.starts_with(status_and_text),
        "expected {code} {status_and_text}..., got {value}"
    );
}

/// The command that runs `tests/clients/SCRIPT` (to spawn it in the background).
pub fn python_command(script: &str) -> Command {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut command = Command::new("python3");
    command.arg(path);
    command
}

/// Runs `tests/clients/SCRIPT` with arguments; returns (exit status success, stdout, stderr).
pub fn python_script(script: &str, args: &[&str]) -> (bool, String, String) {
    let output = python_command(script)
        .args(args)
        .output()
        .expect("python3 is installed");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A self-signed certificate for `names`, written as `DIR/STEM.pem` (the chain) and
/// `DIR/STEM.key`; returns their paths. Its subject is the first name, so that clients can tell
/// it from the others in one trust file (they find an issuer by its name).
pub fn write_certificate(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let subject_alt_names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(subject_alt_names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key_pair).unwrap();
    let (chain, key) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&chain, certificate.pem()).unwrap();
    std::fs::write(&key, key_pair.serialize_pem()).unwrap();
    (chain, key)
}
