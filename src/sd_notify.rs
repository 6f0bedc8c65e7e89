//! systemd's service notifications (sd_notify(3)): one datagram to the unix socket named by
//! `NOTIFY_SOCKET`, so that `Type=notify` knows when the server is ready, reloading or
//! stopping. Without the variable (not under systemd) nothing is sent. Written here rather than
//! taken from a crate: it is one `sendto`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// The listeners are bound and the server accepts connections (also sent after a reload).
pub fn ready() {
    notify("READY=1\nSTATUS=accepting connections");
}

/// A SIGHUP is being handled; systemd waits for the next `READY=1`.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// SIGTERM or SIGINT: the server drains and exits.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=finishing messages in progress");
}

fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = send(&path, state.as_bytes()) {
        // Failing to notify is no reason to stop serving; systemd will say it timed out.
        tracing::warn!(socket = %path.display(), %error, "cannot notify systemd");
    }
}

fn send(path: &OsStr, state: &[u8]) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match path.as_bytes().strip_prefix(b"@") {
        // systemd may name a socket in the abstract namespace.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state, &address)?;
        }
        None => {
            socket.send_to(state, path)?;
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, which systemd wants with RELOADING=1 to tell reloads apart.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1000).unwrap_or(0);
    seconds * 1_000_000 + micros
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_socket_on_a_path() {
        let dir = std::env::temp_dir().join(format!("portcullis-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), b"READY=1").unwrap();
        let mut buffer = [0; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("portcullis-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        send(OsStr::new(&format!("@{name}")), b"STOPPING=1").unwrap();
        let mut buffer = [0; 64];
        let n = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"STOPPING=1");
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let first = monotonic_usec();
        assert!(first > 0);
        assert!(monotonic_usec() >= first);
    }
}
