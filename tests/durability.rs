//! kill -9 in the middle of a stream of submissions: every message whose 250 reached a client
//! must be in the spool, intact, after a restart; nothing partial may appear.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Options, Server};
use portcullis::spool::log;

const CLIENTS: usize = 8;
const ROUNDS: usize = 4;

/// Sends messages until the connection breaks; records (queue id, marker) for every 250.
fn submit_until_killed(
    address: SocketAddr,
    name: String,
    acknowledged: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(stream) = TcpStream::connect(address) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // The last line of the next reply, or None once the connection is gone.
    let mut reply = || -> Option<String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line);
            }
        }
    };
    if reply().is_none()
        || writer.write_all(b"EHLO durability.example\r\n").is_err()
        || reply().is_none()
    {
        return;
    }
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let marker = format!("{name}-{n}");
        let padding = "x".repeat(900);
        let message = format!(
            "MAIL FROM:<load@example.test>\r\nRCPT TO:<sink@example.net>\r\nDATA\r\nSubject: {marker}\r\n\r\n{padding}\r\nmarker {marker} end\r\n.\r\n"
        );
        if writer.write_all(message.as_bytes()).is_err() {
            return;
        }
        let replies: Option<Vec<String>> = (0..4).map(|_| reply()).collect();
        let Some(replies) = replies else { return };
        if let Some(id) = replies[3].strip_prefix("250 2.0.0 OK: queued as ") {
            acknowledged
                .lock()
                .unwrap()
                .push((id.trim().to_string(), marker));
        }
    }
}

#[test]
fn every_acknowledged_message_survives_kill_9() {
    let mut server = Server::start(
        "kill9",
        Options {
            trusted_networks: r#"["127.0.0.0/8"]"#,
            ..Options::default()
        },
    );
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
                let address = server.submission;
                std::thread::spawn(move || {
                    submit_until_killed(address, format!("r{round}c{c}"), acknowledged, stop)
                })
            })
            .collect();
        // Vary the moment of the kill from round to round.
        std::thread::sleep(Duration::from_millis(150 + 97 * round as u64));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
        server.launch();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > ROUNDS * CLIENTS,
        "the load produced too few messages: {}",
        acknowledged.len()
    );
    let queue = server.queue();
    // The CLI lists the ids; contents are read through the library, thousands at a time.
    let spool = server.data_dir().join("spool");
    let stored: std::collections::HashSet<&str> =
        queue.iter().map(|m| m["id"].as_str().unwrap()).collect();
    for (id, marker) in &acknowledged {
        assert!(
            stored.contains(id.as_str()),
            "acknowledged message {id} ({marker}) was lost"
        );
        let (_, message) = log::read(&spool, id).unwrap().expect("listed, so readable");
        let message = String::from_utf8(message).unwrap();
        assert!(
            message.contains(&format!("Subject: {marker}\r\n"))
                && message.ends_with(&format!("marker {marker} end\r\n")),
            "{id} is damaged"
        );
    }
    // Messages stored but not yet acknowledged when the server died may exist (the client will
    // retry them). What a kill interrupted must be gone: recovery at each restart cuts it off.
    server.kill();
    let output = server.cli(&["queue", "check"], None);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            " {} message(s), 0 damaged region(s), 0 trailing byte(s)",
            queue.len()
        )),
        "{report}"
    );
}
