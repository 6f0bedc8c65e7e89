//! `[server] user`: started as root, the real binary binds its listeners, gives the data
//! directory to the user and runs as that user (checked in /proc), still serving and reloading.
//! Skipped when the tests do not run as root.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{Options, Raw, Server};

/// `nobody` and `nogroup` exist on Debian and Ubuntu; their ids are 65534.
const NOBODY: u32 = 65534;

fn ids(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap()
        .to_owned();
    line.split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_server_started_as_root_runs_as_the_configured_user() {
    if !portcullis::privileges::is_root() {
        eprintln!("not root: privileges cannot be dropped here");
        return;
    }
    let mut server = Server::start(
        "privileges",
        Options {
            extra: "[server]\nuser = \"nobody\"\ngroup = \"nogroup\"\n".into(),
            log: Some("info"),
            ..Options::default()
        },
    );
    let pid = server.pid();
    let every = format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}");
    assert_eq!(ids(pid, "Uid:"), every);
    assert_eq!(ids(pid, "Gid:"), every);
    assert_eq!(ids(pid, "Groups:"), NOBODY.to_string());
    let data = std::fs::metadata(server.data_dir()).unwrap();
    assert_eq!((data.uid(), data.gid()), (NOBODY, NOBODY));
    let spool = std::fs::metadata(server.data_dir().join("spool")).unwrap();
    assert_eq!(spool.uid(), NOBODY);
    assert!(
        server
            .log()
            .contains("dropped root privileges user=nobody uid=65534 gid=65534"),
        "{}",
        server.log()
    );

    let mut raw = Raw::connect(server.submission);
    raw.expect("220 ");
    raw.send(b"EHLO client.example\r\nQUIT\r\n");
    raw.expect("250 ");
    raw.expect("221 2.0.0");
    assert_eq!(server.terminate().code(), Some(0));
}
