//! `HOST[:PORT]` and the TLS mode that goes with it.

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext greeting, then STARTTLS (RFC 3207), as on port 587.
    StartTls,
    /// TLS from the first byte (RFC 8314), as on port 465.
    Implicit,
    /// No TLS at all (`--plain`).
    Plain,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::StartTls => "starttls",
            Mode::Implicit => "tls",
            Mode::Plain => "plain",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::StartTls => "STARTTLS",
            Mode::Implicit => "implicit TLS",
            Mode::Plain => "plaintext, no TLS",
        }
    }
}

pub const SUBMISSION_PORT: u16 = 587;
pub const SUBMISSIONS_PORT: u16 = 465;

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address into the host
/// (without IPv6 brackets) and the port, if `target` names one; `check` and `bench` use it.
pub(crate) fn split(target: &str) -> Result<(String, Option<u16>), String> {
    let invalid = |why: &str| format!("{target:?} is not HOST[:PORT]: {why}");
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| invalid("missing ']'"))?;
        let port = match after {
            "" => None,
            _ => Some(
                port(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("junk after ']'"))?,
                )
                .ok_or_else(|| invalid("bad port"))?,
            ),
        };
        return non_empty(host, port).ok_or_else(|| invalid("empty host"));
    }
    // More than one colon without brackets can only be a bare IPv6 address.
    if target.matches(':').count() > 1 {
        return Ok((target.to_string(), None));
    }
    let (host, port) = match target.split_once(':') {
        Some((host, text)) => (host, Some(port(text).ok_or_else(|| invalid("bad port"))?)),
        None => (target, None),
    };
    non_empty(host, port).ok_or_else(|| invalid("empty host"))
}

fn port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|&p| p != 0)
}

fn non_empty(host: &str, port: Option<u16>) -> Option<(String, Option<u16>)> {
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Ports whose mode is known: the standard ones, Portcullis's embedded defaults (2587, 2465)
/// and 2525, the usual alternative STARTTLS port of providers.
const KNOWN_PORTS: [(u16, Mode); 5] = [
    (SUBMISSION_PORT, Mode::StartTls),
    (SUBMISSIONS_PORT, Mode::Implicit),
    (2587, Mode::StartTls),
    (2465, Mode::Implicit),
    (2525, Mode::StartTls),
];

/// How the mode was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// By a flag, or by a port whose mode is known.
    Settled(Mode),
    /// An unusual port and no flag: the server's first move tells (see `establish`).
    Detect,
}

/// The mode from the flags, else from the port.
pub fn mode(starttls: bool, tls: bool, plain: bool, port: u16) -> Choice {
    let flagged = [
        (plain, Mode::Plain),
        (tls, Mode::Implicit),
        (starttls, Mode::StartTls),
    ];
    if let Some((_, mode)) = flagged.into_iter().find(|(on, _)| *on) {
        return Choice::Settled(mode);
    }
    match KNOWN_PORTS.iter().find(|(known, _)| *known == port) {
        Some((_, mode)) => Choice::Settled(*mode),
        None => Choice::Detect,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_forms() {
        assert_eq!(
            split("mail.example.com").unwrap(),
            ("mail.example.com".into(), None)
        );
        assert_eq!(
            split("mail.example.com:465").unwrap(),
            ("mail.example.com".into(), Some(465))
        );
        assert_eq!(split("[::1]:2587").unwrap(), ("::1".into(), Some(2587)));
        assert_eq!(split("[::1]").unwrap(), ("::1".into(), None));
        assert_eq!(split("2001:db8::1").unwrap(), ("2001:db8::1".into(), None));
        for bad in [
            "",
            ":587",
            "host:",
            "host:0",
            "host:70000",
            "host:x",
            "[::1",
            "[::1]x",
        ] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mode_follows_flags_then_port() {
        let settled = Choice::Settled;
        assert_eq!(mode(false, false, false, 587), settled(Mode::StartTls));
        assert_eq!(mode(false, false, false, 465), settled(Mode::Implicit));
        assert_eq!(mode(false, false, false, 2587), settled(Mode::StartTls));
        assert_eq!(mode(false, false, false, 2465), settled(Mode::Implicit));
        assert_eq!(mode(false, true, false, 587), settled(Mode::Implicit));
        assert_eq!(mode(false, false, true, 465), settled(Mode::Plain));
        assert_eq!(mode(true, false, false, 2465), settled(Mode::StartTls));
        assert_eq!(mode(false, false, false, 10025), Choice::Detect);
    }
}
