//! Timeouts, caps, error limits and shutdown, over real connections.

mod common;

use std::time::Duration;

use common::{Options, Raw, Server};

fn trusted(extra: &str) -> Options {
    Options {
        trusted_networks: r#"["127.0.0.0/8"]"#,
        extra: extra.to_string(),
        ..Options::default()
    }
}

#[test]
fn idle_client_gets_421_4_4_2_and_is_closed() {
    let server = Server::start("idle", trusted("[timeouts]\ncommand_seconds = 1\n"));
    let mut client = Raw::connect(server.submission);
    client.expect("220 ");
    client.expect("421 4.4.2");
    assert!(client.closed());
}

#[test]
fn trickling_bytes_does_not_extend_the_command_timeout() {
    let server = Server::start("trickle", trusted("[timeouts]\ncommand_seconds = 2\n"));
    let mut client = Raw::connect(server.submission);
    client.expect("220 ");
    let started = std::time::Instant::now();
    // One byte every 250 ms for 6 s (three timeouts), never a complete line: a server that
    // restarted its timer on every byte would not answer before the writer stops (~8 s).
    let writer = client.writer();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for byte in b"NOOP".iter().cycle().take(24) {
            if std::io::Write::write_all(&mut writer, &[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    client.expect("421 4.4.2");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn connections_over_the_per_address_cap_get_421_4_7_0() {
    let server = Server::start("caps", trusted("[limits]\nmax_connections_per_ip = 2\n"));
    let mut first = Raw::connect(server.submission);
    let mut second = Raw::connect(server.submission);
    first.expect("220 ");
    second.expect("220 ");
    let mut third = Raw::connect(server.submission);
    third.expect("421 4.7.0");
    assert!(third.closed());
    drop(first);
    assert!(common::wait_until(Duration::from_secs(5), || {
        let mut again = Raw::connect(server.submission);
        again.reply().starts_with("220 ")
    }));
}

#[test]
fn too_many_errors_end_the_session_with_421_4_7_0() {
    let server = Server::start("errors", trusted("[limits]\nmax_errors = 3\n"));
    let mut client = Raw::connect(server.submission);
    client.expect("220 ");
    client.send(b"BAD\r\nBAD\r\nBAD\r\n");
    client.expect("500 5.5.2");
    client.expect("500 5.5.2");
    client.expect("500 5.5.2");
    client.expect("421 4.7.0");
    assert!(client.closed());
}

#[test]
fn over_long_command_line_is_500_5_5_6_and_the_session_goes_on() {
    let server = Server::start("longline", trusted(""));
    let mut client = Raw::connect(server.submission);
    client.expect("220 ");
    client.send(format!("NOOP {}\r\nNOOP\r\n", "x".repeat(100_000)).as_bytes());
    client.expect("500 5.5.6");
    client.expect("250 2.0.0");
}

#[test]
fn sigterm_lets_data_in_progress_finish_then_closes_with_421() {
    let mut server = Server::start("shutdown", trusted(""));
    let mut idle = Raw::connect(server.submission);
    idle.expect("220 ");
    let mut sending = Raw::connect(server.submission);
    sending.expect("220 ");
    sending.send(
        b"EHLO c.example\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
    );
    sending.expect("250 ");
    sending.expect("250 2.1.0");
    sending.expect("250 2.1.5");
    sending.expect("354");
    sending.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    let child = server.child.take().unwrap();
    common::sigterm(&child);
    idle.expect("421 4.3.2");
    assert!(idle.closed());
    sending.send(b"second half\r\n.\r\n");
    sending.expect("250 2.0.0 OK: queued as ");
    sending.expect("421 4.3.2");
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "{status}");
    let queue = server.queue();
    assert_eq!(queue.len(), 1);
    assert!(
        server
            .show(queue[0]["id"].as_str().unwrap())
            .ends_with("first half\r\nsecond half\r\n")
    );
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_command_timeout() {
    let server = Server::start("noread", trusted("[timeouts]\ncommand_seconds = 2\n"));
    let mut stream = std::net::TcpStream::connect(server.submission).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    // EHLO is neither an error nor a junk command: only the write timeout can end this.
    let burst = "EHLO c.example\r\n".repeat(4096);
    let mut failed = false;
    while started.elapsed() < Duration::from_secs(20) {
        if std::io::Write::write_all(&mut stream, burst.as_bytes()).is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "the server kept the connection of a client that never reads"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_message_trickled_in_forever_is_cut_off_with_421_4_4_2() {
    let server = Server::start(
        "trickle-data",
        trusted("[timeouts]\ndata_seconds = 10\nmessage_seconds = 2\n"),
    );
    let mut client = Raw::connect(server.submission);
    client.expect("220 ");
    client.send(
        b"EHLO c.example\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n",
    );
    client.expect("250 ");
    client.expect("250 2.1.0");
    client.expect("250 2.1.5");
    client.expect("354");
    let started = std::time::Instant::now();
    let writer = client.writer();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..40 {
            if std::io::Write::write_all(&mut writer, b"more\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    client.expect("421 4.4.2");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    trickle.join().unwrap();
    assert!(server.queue().is_empty());
}
