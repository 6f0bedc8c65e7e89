//! SASL PLAIN (RFC 4616) and LOGIN exchanges inside SMTP AUTH (RFC 4954), without any I/O: the
//! session feeds client lines in and gets a challenge, credentials to verify, or a refusal.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::reply::{self, Reply};

/// A user name and password as the client sent them. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the session does next in an AUTH exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this 334 challenge and wait for the client's next line.
    Challenge(Reply),
    /// The exchange is complete: verify these credentials.
    Verify(Credentials),
    /// The exchange failed: send this reply; the session stays unauthenticated.
    Refuse(Reply),
    /// Refused by rule rather than by a malformed exchange: send the reply, and log the reason
    /// (with the user name, when there is one) like any other failed login.
    Deny {
        reply: Reply,
        username: String,
        reason: &'static str,
    },
}

#[derive(Debug)]
pub enum Exchange {
    Plain,
    LoginUsername,
    LoginPassword { username: String },
}

const USERNAME_PROMPT: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6"; // "Password:"

impl Exchange {
    /// Starts an exchange for `AUTH mechanism [initial-response]`. Returns the exchange to keep
    /// (when a challenge was sent) and the first step.
    pub fn start(mechanism: &str, initial_response: Option<&str>) -> (Option<Exchange>, Step) {
        let mut exchange = match mechanism {
            "PLAIN" => Exchange::Plain,
            "LOGIN" => Exchange::LoginUsername,
            _ => {
                let step = Step::Deny {
                    reply: reply::AUTH_MECHANISM_UNKNOWN,
                    username: String::new(),
                    reason: "mechanism-not-allowed",
                };
                return (None, step);
            }
        };
        let step = match initial_response {
            Some(response) => exchange.respond(response.as_bytes()),
            None => exchange.first_challenge(),
        };
        match step {
            Step::Challenge(_) => (Some(exchange), step),
            _ => (None, step),
        }
    }

    fn first_challenge(&self) -> Step {
        match self {
            Exchange::Plain => Step::Challenge(reply::auth_challenge("")),
            _ => Step::Challenge(reply::auth_challenge(USERNAME_PROMPT)),
        }
    }

    /// Feeds one client line (without CRLF) into the exchange.
    pub fn respond(&mut self, line: &[u8]) -> Step {
        if line == b"*" {
            return Step::Refuse(reply::AUTH_CANCELLED);
        }
        let Some(decoded) = decode(line) else {
            return Step::Refuse(reply::AUTH_BAD_BASE64);
        };
        match self {
            Exchange::Plain => plain(&decoded),
            Exchange::LoginUsername => match String::from_utf8(decoded) {
                Ok(username) => {
                    *self = Exchange::LoginPassword { username };
                    Step::Challenge(reply::auth_challenge(PASSWORD_PROMPT))
                }
                Err(_) => Step::Refuse(reply::AUTH_BAD_BASE64),
            },
            Exchange::LoginPassword { username } => match String::from_utf8(decoded) {
                Ok(password) => Step::Verify(Credentials {
                    username: std::mem::take(username),
                    password,
                }),
                Err(_) => Step::Refuse(reply::AUTH_BAD_BASE64),
            },
        }
    }
}

/// RFC 4954 §4: "=" stands for an empty initial response.
fn decode(line: &[u8]) -> Option<Vec<u8>> {
    if line == b"=" {
        return Some(Vec::new());
    }
    BASE64.decode(line).ok()
}

/// `authzid NUL authcid NUL passwd` (RFC 4616 §2).
fn plain(message: &[u8]) -> Step {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Refuse(reply::AUTH_BAD_PLAIN);
    };
    let (Ok(authzid), Ok(username), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return Step::Refuse(reply::AUTH_BAD_PLAIN);
    };
    // Acting as another user is not supported: only an empty authzid or one equal to the user.
    if !authzid.is_empty() && authzid != username {
        return Step::Deny {
            reply: reply::AUTH_FAILED,
            username: username.to_string(),
            reason: "authzid-not-allowed",
        };
    }
    Step::Verify(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        BASE64.encode(text)
    }

    fn verify(username: &str, password: &str) -> Step {
        Step::Verify(Credentials {
            username: username.into(),
            password: password.into(),
        })
    }

    #[test]
    fn plain_with_initial_response() {
        let (exchange, step) = Exchange::start("PLAIN", Some(&b64("\0alice@example.com\0secret")));
        assert!(exchange.is_none());
        assert_eq!(step, verify("alice@example.com", "secret"));
    }

    #[test]
    fn plain_with_matching_authzid() {
        let (_, step) = Exchange::start("PLAIN", Some(&b64("a@b.c\0a@b.c\0pw")));
        assert_eq!(step, verify("a@b.c", "pw"));
    }

    #[test]
    fn plain_with_foreign_authzid_is_535() {
        let (_, step) = Exchange::start("PLAIN", Some(&b64("boss@b.c\0a@b.c\0pw")));
        let denied = Step::Deny {
            reply: reply::AUTH_FAILED,
            username: "a@b.c".into(),
            reason: "authzid-not-allowed",
        };
        assert_eq!(step, denied);
    }

    #[test]
    fn plain_without_initial_response_sends_empty_challenge() {
        let (exchange, step) = Exchange::start("PLAIN", None);
        assert_eq!(step, Step::Challenge(reply::auth_challenge("")));
        let mut exchange = exchange.unwrap();
        assert_eq!(
            exchange.respond(b64("\0u@d.e\0p w ").as_bytes()),
            verify("u@d.e", "p w ")
        );
    }

    #[test]
    fn login_prompts_for_username_then_password() {
        let (exchange, step) = Exchange::start("LOGIN", None);
        assert_eq!(
            step,
            Step::Challenge(reply::auth_challenge(USERNAME_PROMPT))
        );
        let mut exchange = exchange.unwrap();
        assert_eq!(
            exchange.respond(b64("u@d.e").as_bytes()),
            Step::Challenge(reply::auth_challenge(PASSWORD_PROMPT))
        );
        assert_eq!(
            exchange.respond(b64("pw").as_bytes()),
            verify("u@d.e", "pw")
        );
    }

    #[test]
    fn login_with_initial_username() {
        let (exchange, step) = Exchange::start("LOGIN", Some(&b64("u@d.e")));
        assert_eq!(
            step,
            Step::Challenge(reply::auth_challenge(PASSWORD_PROMPT))
        );
        assert!(exchange.is_some());
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Exchange::start("CRAM-MD5", None).1,
            Step::Deny {
                reply: reply::AUTH_MECHANISM_UNKNOWN,
                username: String::new(),
                reason: "mechanism-not-allowed",
            }
        );
        assert_eq!(
            Exchange::start("PLAIN", Some("not base64!")).1,
            Step::Refuse(reply::AUTH_BAD_BASE64)
        );
        assert_eq!(
            Exchange::start("PLAIN", Some(&b64("no nul bytes"))).1,
            Step::Refuse(reply::AUTH_BAD_PLAIN)
        );
        assert_eq!(
            Exchange::start("PLAIN", Some("=")).1,
            Step::Refuse(reply::AUTH_BAD_PLAIN)
        );
        assert_eq!(
            reply::AUTH_BAD_PLAIN.to_string(),
            "501 5.5.2 The PLAIN response decodes, but is not authzid NUL user NUL password in UTF-8 (RFC 4616)"
        );
        let (exchange, _) = Exchange::start("LOGIN", None);
        assert_eq!(
            exchange.unwrap().respond(b"*"),
            Step::Refuse(reply::AUTH_CANCELLED)
        );
    }
}
