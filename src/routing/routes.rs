//! Static routes: which recipient domains go through a relay, or with which TLS policy.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use super::normalize;

/// Which recipient domains a route applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    /// Exactly this domain (lower case, no final dot).
    Exact(String),
    /// Written ".example.com": every subdomain of example.com, not example.com itself (held
    /// without the leading dot).
    Suffix(String),
    /// Written "*": every domain.
    Any,
}

impl DomainPattern {
    pub fn parse(text: &str) -> Result<DomainPattern, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a domain pattern must not be empty".to_string());
        }
        if text == "*" {
            return Ok(DomainPattern::Any);
        }
        // One spelling per meaning: "*.example.com" would invite the question whether it
        // includes example.com, which ".example.com" (subdomains only) does not raise.
        if let Some(rest) = text.strip_prefix("*.") {
            return Err(format!(
                "\"{text}\": write \".{rest}\" for the subdomains of {rest}, or \"*\" for every domain"
            ));
        }
        match text.strip_prefix('.') {
            Some(rest) => Ok(DomainPattern::Suffix(check_domain(rest)?)),
            None => Ok(DomainPattern::Exact(check_domain(text)?)),
        }
    }

    /// How specific a match is, or None when `domain` (normalized) does not match: exact beats
    /// any suffix, a longer suffix beats a shorter one, and any suffix beats "*".
    fn rank(&self, domain: &str) -> Option<(u8, usize)> {
        match self {
            DomainPattern::Exact(name) => (name == domain).then_some((2, 0)),
            DomainPattern::Suffix(suffix) => {
                let subdomain = domain.len() > suffix.len()
                    && domain.ends_with(suffix.as_str())
                    && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.';
                subdomain.then_some((1, suffix.len()))
            }
            DomainPattern::Any => Some((0, 0)),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(name) => f.write_str(name),
            DomainPattern::Suffix(suffix) => write!(f, ".{suffix}"),
            DomainPattern::Any => f.write_str("*"),
        }
    }
}

/// A host name in A-label form (RFC 1035 letters, digits and hyphens; RFC 5890 for "xn--"),
/// returned normalized. Routes are configuration, so UTF-8 names are refused with a hint rather
/// than converted: no IDNA library is linked.
fn check_domain(text: &str) -> Result<String, String> {
    let name = normalize(text);
    if name.is_empty() {
        return Err(format!("\"{text}\" is not a domain name"));
    }
    if !name.is_ascii() {
        return Err(format!(
            "\"{text}\": write internationalized domain names in their A-label (xn--) form"
        ));
    }
    if name.len() > 253 {
        return Err(format!("\"{text}\" is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "\"{text}\" has an empty label (two dots in a row?)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "\"{text}\": the label \"{label}\" is longer than 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "\"{text}\": the label \"{label}\" may hold only letters, digits and hyphens"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "\"{text}\": the label \"{label}\" must not start or end with a hyphen"
            ));
        }
    }
    Ok(name)
}

/// A smarthost: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// A host name (normalized) or an IP address; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
}

impl Relay {
    /// "host:port", "192.0.2.1:587" or "[2001:db8::1]:587". The port is required: submission
    /// relays listen on 587 or 465 as often as on 25, and a silent default would pick wrongly.
    pub fn parse(text: &str) -> Result<Relay, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (address, port) = rest
                .split_once(']')
                .ok_or_else(|| format!("\"{text}\": the \"[\" of an IPv6 address has no \"]\""))?;
            let address: Ipv6Addr = address
                .parse()
                .map_err(|_| format!("\"{text}\": \"{address}\" is not an IPv6 address"))?;
            let port = port.strip_prefix(':').ok_or_else(|| {
                format!("\"{text}\": a port must follow, as in \"[{address}]:587\"")
            })?;
            (address.to_string(), port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| {
                format!("\"{text}\": write the relay as host:port, e.g. smtp.example.com:587")
            })?;
            if host.contains(':') {
                return Err(format!(
                    "\"{text}\": put an IPv6 address in brackets, as in \"[2001:db8::1]:587\""
                ));
            }
            let host = match host.parse::<IpAddr>() {
                Ok(address) => address.to_string(),
                Err(_) => check_domain(host)?,
            };
            (host, port)
        };
        let port = match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => {
                return Err(format!(
                    "\"{text}\": the port must be a number from 1 to 65535"
                ));
            }
        };
        Ok(Relay { host, port })
    }

    /// The relay's address when its host is an IP literal, which needs no lookup.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(address)) => write!(f, "[{address}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Credentials for a relay (AUTH PLAIN/LOGIN).
#[derive(Clone, PartialEq, Eq)]
pub struct RelayAuth {
    pub user: String,
    pub password: String,
}

// Plans and routes end up in logs; the password must not.
impl fmt::Debug for RelayAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayAuth")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// How much TLS an outbound connection insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, any certificate, plaintext otherwise (opportunistic, RFC 7435).
    #[default]
    May,
    /// TLS required, any certificate.
    Encrypt,
    /// TLS required and the certificate must match the host name.
    Verify,
}

impl FromStr for TlsPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(TlsPolicy::None),
            "may" => Ok(TlsPolicy::May),
            "encrypt" => Ok(TlsPolicy::Encrypt),
            "verify" => Ok(TlsPolicy::Verify),
            _ => Err(format!(
                "\"{text}\" is not a TLS policy: use none, may, encrypt or verify"
            )),
        }
    }
}

impl fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsPolicy::None => "none",
            TlsPolicy::May => "may",
            TlsPolicy::Encrypt => "encrypt",
            TlsPolicy::Verify => "verify",
        })
    }
}

/// One static route. Without a relay it only changes the TLS policy of MX delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub domains: Vec<DomainPattern>,
    pub relay: Option<Relay>,
    pub tls: Option<TlsPolicy>,
    pub auth: Option<RelayAuth>,
}

/// The routes in the order configured.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Refuses a route that matches nothing, and credentials without a relay: they would go to
    /// whatever host a recipient domain's MX names, i.e. to anyone who owns a domain.
    pub fn new(routes: Vec<Route>) -> Result<RouteTable, String> {
        for (index, route) in routes.iter().enumerate() {
            if route.domains.is_empty() {
                return Err(format!("route {}: no domains", index + 1));
            }
            if route.auth.is_some() && route.relay.is_none() {
                return Err(format!(
                    "route {}: credentials are only sent to a relay, and this route has none",
                    index + 1
                ));
            }
        }
        Ok(RouteTable { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route for `domain`; among equally specific ones, the first listed.
    pub fn route_for(&self, domain: &str) -> Option<&Route> {
        let domain = normalize(domain);
        let mut best: Option<((u8, usize), &Route)> = None;
        for route in &self.routes {
            let rank = route.domains.iter().filter_map(|p| p.rank(&domain)).max();
            if let Some(rank) = rank {
                // Strictly greater, so an earlier route keeps a tie.
                if best.is_none_or(|(best_rank, _)| rank > best_rank) {
                    best = Some((rank, route));
                }
            }
        }
        best.map(|(_, route)| route)
    }
}
