//! What Portcullis writes is private to the server's user: the data directory 0700, the account
//! store and the spool 0600, however permissive the umask it was started with.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Options, Server, TempDir, cli_in_checked};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_store_spool_and_data_dir_are_private_to_the_server() {
    // SAFETY: umask only sets this test process's mask, inherited by the commands it starts.
    unsafe {
        libc::umask(0o022);
    }
    let dir = TempDir::new("modes-cli");
    let data = dir.0.join("data");
    cli_in_checked(
        &data,
        &["accounts", "add", "a@example.test", "--password-stdin"],
        Some("correct horse battery\n"),
    );
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("accounts.sqlite")), 0o600);

    let server = Server::start("modes", Options::default());
    server.add_account("u@example.test", "correct horse battery");
    let data = server.data_dir();
    assert_eq!(mode(&data), 0o700);
    for entry in std::fs::read_dir(data.join("spool")).unwrap() {
        let path = entry.unwrap().path();
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
    }
    assert_eq!(mode(&data.join("accounts.sqlite")), 0o600);
    assert_eq!(mode(&data.join("tls").join("key.pem")), 0o600);
}

#[test]
fn a_data_dir_open_to_others_is_made_private_at_start() {
    let mut server = Server::start(
        "modes-open",
        Options {
            log: Some("warn"),
            ..Options::default()
        },
    );
    let data = server.data_dir();
    server.terminate();
    // As an older version, or an administrator's mkdir, left it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    server.launch();
    assert_eq!(mode(&data), 0o700);
    assert!(
        server
            .log()
            .contains("the data directory was open to other users; it is now 700"),
        "{}",
        server.log()
    );
}
