//! `contrib/systemd/portcullis.service` passes `systemd-analyze verify` (`.ci/run` installs
//! systemd), with its commands pointed at the binary under test.

mod common;

use std::process::Command;

use common::{BINARY, TempDir};

const UNIT: &str = include_str!("../contrib/systemd/portcullis.service");

#[test]
fn the_unit_file_verifies() {
    let probe = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze runs (.ci/run installs systemd)");
    assert!(probe.status.success());
    assert!(UNIT.contains("Type=notify") && UNIT.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let dir = TempDir::new("systemd");
    let path = dir.0.join("portcullis.service");
    // The installed paths do not exist here, and the manual page is not installed.
    let unit = UNIT
        .replace("/usr/local/bin/portcullis", BINARY)
        .replace("Documentation=man:portcullis(1)\n", "");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
}
