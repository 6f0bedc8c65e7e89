//! A real DNS server for tests: dnsmasq on loopback, answering from a list of records.
//!
//! What it answers (each checked by tests/dns_resolver.rs):
//! - the records given, with TTL 0 (`--mx-host`, `--host-record`);
//! - NODATA (NOERROR, no records) for a type a known name lacks, e.g. MX of a name with only an
//!   A record;
//! - NXDOMAIN for unknown names under the top-level domains of the records, and under `.test`,
//!   `.example` and `.invalid` (`--local=/TLD/`: answer from local data only);
//! - REFUSED for names anywhere else (there is no upstream server), and for `Record::Refused`;
//! - SERVFAIL for `Record::ServFail`: dnsmasq forwards those names to a responder in this
//!   process that answers SERVFAIL, and passes the answer on.
//!
//! Needs dnsmasq (Debian: `apt-get install dnsmasq-base`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Top-level domains always answered locally, so NXDOMAIN needs no record under them.
const LOCAL_ZONES: [&str; 3] = ["test", "example", "invalid"];
const RCODE_SERVFAIL: u8 = 2;
const RCODE_REFUSED: u8 = 5;

/// One thing the server knows. Names are written without the final dot.
#[derive(Debug, Clone)]
pub enum Record {
    Mx {
        domain: String,
        host: String,
        preference: u16,
    },
    A {
        host: String,
        ip: Ipv4Addr,
    },
    Aaaa {
        host: String,
        ip: Ipv6Addr,
    },
    /// RFC 7505: `domain MX 0 .`
    NullMx {
        domain: String,
    },
    /// Every question about `domain` or its subdomains answers SERVFAIL.
    ServFail {
        domain: String,
    },
    /// Every question about `domain` or its subdomains answers REFUSED.
    Refused {
        domain: String,
    },
}

impl Record {
    pub fn mx(domain: &str, host: &str, preference: u16) -> Record {
        Record::Mx {
            domain: domain.to_string(),
            host: host.to_string(),
            preference,
        }
    }

    pub fn a(host: &str, ip: &str) -> Record {
        Record::A {
            host: host.to_string(),
            ip: ip.parse().expect("an IPv4 address"),
        }
    }

    pub fn aaaa(host: &str, ip: &str) -> Record {
        Record::Aaaa {
            host: host.to_string(),
            ip: ip.parse().expect("an IPv6 address"),
        }
    }

    pub fn null_mx(domain: &str) -> Record {
        Record::NullMx {
            domain: domain.to_string(),
        }
    }

    pub fn servfail(domain: &str) -> Record {
        Record::ServFail {
            domain: domain.to_string(),
        }
    }

    pub fn refused(domain: &str) -> Record {
        Record::Refused {
            domain: domain.to_string(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Record::Mx { domain, .. }
            | Record::NullMx { domain }
            | Record::ServFail { domain }
            | Record::Refused { domain } => domain,
            Record::A { host, .. } | Record::Aaaa { host, .. } => host,
        }
    }
}

/// A running dnsmasq, killed on drop.
pub struct Dns {
    child: Child,
    address: SocketAddr,
    log: PathBuf,
    _responders: Vec<Responder>,
}

impl Dns {
    /// Starts dnsmasq with `records` on a free loopback port (UDP and TCP) and returns once it
    /// answers. Panics with dnsmasq's own words if it cannot start.
    pub fn start(records: &[Record]) -> Dns {
        let binary = dnsmasq();
        let servfail = records
            .iter()
            .any(|r| matches!(r, Record::ServFail { .. }))
            .then(|| Responder::start(RCODE_SERVFAIL));
        let refused = records
            .iter()
            .any(|r| matches!(r, Record::Refused { .. }))
            .then(|| Responder::start(RCODE_REFUSED));
        let mut arguments = Vec::new();
        let mut zones: Vec<&str> = LOCAL_ZONES.to_vec();
        for record in records {
            let tld = record.name().rsplit('.').next().unwrap_or_default();
            if !tld.is_empty() && !zones.contains(&tld) {
                zones.push(tld);
            }
            arguments.push(match record {
                Record::Mx {
                    domain,
                    host,
                    preference,
                } => format!("--mx-host={domain},{host},{preference}"),
                Record::A { host, ip } => format!("--host-record={host},{ip}"),
                Record::Aaaa { host, ip } => format!("--host-record={host},{ip}"),
                // dnsmasq writes the target "." as the root name: RDATA 00 00 00.
                Record::NullMx { domain } => format!("--mx-host={domain},.,0"),
                Record::ServFail { domain } => {
                    let port = servfail.as_ref().map_or(0, |r| r.port);
                    format!("--server=/{domain}/127.0.0.1#{port}")
                }
                Record::Refused { domain } => {
                    let port = refused.as_ref().map_or(0, |r| r.port);
                    format!("--server=/{domain}/127.0.0.1#{port}")
                }
            });
        }
        arguments.extend(zones.iter().map(|zone| format!("--local=/{zone}/")));

        let responders = servfail.into_iter().chain(refused).collect();
        // Another process may take the port between our check and dnsmasq's bind; try again
        // on a fresh one then.
        let mut failure = String::new();
        for _ in 0..5 {
            match launch(&binary, &arguments) {
                Ok((child, address, log)) => {
                    return Dns {
                        child,
                        address,
                        log,
                        _responders: responders,
                    };
                }
                Err(why) => failure = why,
            }
        }
        panic!("dnsmasq did not start: {failure}");
    }

    /// Where to send questions (UDP or TCP).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// What dnsmasq logged so far, every query included (`--log-queries`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The dnsmasq binary: on PATH, or in the sbin directories a non-root PATH often lacks.
fn dnsmasq() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("dnsmasq"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq is not installed, and the DNS tests run a real DNS server with it \
                 (Debian/Ubuntu: apt-get install dnsmasq-base)"
            )
        })
}

/// One attempt: a free port, dnsmasq on it, and its first answer.
fn launch(binary: &Path, records: &[String]) -> Result<(Child, SocketAddr, PathBuf), String> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let address = free_port()?;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let log =
        std::env::temp_dir().join(format!("portcullis-dnsmasq-{}-{n}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).map_err(|err| format!("{}: {err}", log.display()))?;
    let child = Command::new(binary)
        .args([
            // In the foreground, logging to standard error.
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            &format!("--port={}", address.port()),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            // Only what is given here: no /etc/resolv.conf, /etc/hosts or /etc/dnsmasq.conf.
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--cache-size=0",
        ])
        .args(records)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|err| format!("cannot run {}: {err}", binary.display()))?;
    let mut child = child;
    match wait_until_answering(&mut child, address) {
        Ok(()) => Ok((child, address, log)),
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            Err(format!("{why}; dnsmasq said: {}", said.trim()))
        }
    }
}

/// A loopback port free for both UDP and TCP, as dnsmasq binds both.
fn free_port() -> Result<SocketAddr, String> {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").map_err(|err| format!("UDP bind: {err}"))?;
        let address = udp.local_addr().map_err(|err| err.to_string())?;
        if TcpListener::bind(address).is_ok() {
            return Ok(address);
        }
    }
    Err("no loopback port free for both UDP and TCP".to_string())
}

/// Asks until dnsmasq answers anything at all (here REFUSED or NXDOMAIN), or gives up.
fn wait_until_answering(child: &mut Child, address: SocketAddr) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|err| err.to_string())?;
    let id: u16 = 0x5043;
    let query = question(id, "ready.invalid", 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("dnsmasq exited at start ({status})"));
        }
        let _ = socket.send_to(&query, address);
        if let Ok((n, from)) = socket.recv_from(&mut buffer)
            && from == address
            && n >= 12
            && buffer[..2] == id.to_be_bytes()
        {
            return Ok(());
        }
    }
    Err(format!("no answer from {address} within 10 seconds"))
}

/// A DNS query for `name` and `qtype` (class IN), recursion desired.
fn question(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet
}

/// Where the (single) question of `packet` ends.
fn question_end(packet: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let length = usize::from(*packet.get(at)?);
        at += 1;
        if length == 0 {
            break;
        }
        at += length;
    }
    let end = at + 4;
    (end <= packet.len()).then_some(end)
}

/// An upstream for dnsmasq that answers every question with one response code, on UDP (all
/// dnsmasq forwards over, the answer having no records to truncate).
struct Responder {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Responder {
    fn start(rcode: u8) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP socket");
        let port = socket.local_addr().unwrap().port();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while !stopped.load(Ordering::SeqCst) {
                let Ok((n, from)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                let Some(end) = question_end(&buffer[..n]) else {
                    continue;
                };
                // The header and the question; the query's EDNS record is not echoed.
                let mut answer = buffer[..end].to_vec();
                // QR set, opcode and RD kept, RA set, the response code; no records at all.
                answer[2] = 0x80 | (buffer[2] & 0x79);
                answer[3] = 0x80 | rcode;
                answer[6..12].fill(0);
                let _ = socket.send_to(&answer, from);
            }
        });
        Responder {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
