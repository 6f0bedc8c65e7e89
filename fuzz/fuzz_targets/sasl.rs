//! `sasl::Exchange::start` and a sequence of `respond` calls, as the session makes them.
//!
//! Input layout: byte 0 picks the mechanism (PLAIN, LOGIN, or the first word of the first line),
//! byte 1 whether the first line is the initial response; the rest is split at CRLF into client
//! lines, as the session splits them (so a line may hold a bare CR or LF).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::smtp::reply::AUTH_CANCELLED;
use portcullis::smtp::sasl::{Exchange, Step};
use portcullis_fuzz::{check_reply, split_header};

fuzz_target!(|data: &[u8]| {
    let (header, rest) = split_header::<2>(data);
    let mut lines = split_crlf(rest);
    let first = lines.next().unwrap_or_default();
    let Ok(first) = std::str::from_utf8(first) else {
        return;
    };
    // The session upper-cases the mechanism and passes a non-empty word without spaces as the
    // initial response.
    let mut words = first.split(' ').filter(|w| !w.is_empty());
    let mechanism = match header[0] % 3 {
        0 => "PLAIN".to_string(),
        1 => "LOGIN".to_string(),
        _ => words.next().unwrap_or("X").to_ascii_uppercase(),
    };
    let initial_response = if header[1] & 1 == 1 {
        words.next()
    } else {
        None
    };

    let (mut exchange, mut step) = Exchange::start(&mechanism, initial_response);
    let mut challenges = 0;
    loop {
        match &step {
            Step::Challenge(reply) => {
                check_reply(reply);
                assert_eq!(reply.code(), 334, "{reply:?}");
                assert!(reply.status().is_none());
                assert!(exchange.is_some(), "a challenge without an exchange");
                challenges += 1;
                assert!(challenges <= 2, "more than two challenges");
            }
            Step::Refuse(reply) => {
                check_reply(reply);
                assert!((500..=599).contains(&reply.code()), "{reply:?}");
                assert!(
                    challenges > 0 || exchange.is_none(),
                    "an exchange kept after a refusal at start"
                );
                break;
            }
            Step::Deny {
                reply,
                username,
                reason,
            } => {
                check_reply(reply);
                assert!((500..=599).contains(&reply.code()), "{reply:?}");
                assert!(!reason.is_empty());
                if mechanism == "PLAIN" {
                    assert!(!username.contains('\0'));
                }
                break;
            }
            Step::Verify(credentials) => {
                if mechanism == "PLAIN" {
                    assert!(!credentials.username.contains('\0'));
                    assert!(!credentials.password.contains('\0'));
                }
                // Debug never shows the password.
                assert_eq!(
                    format!("{credentials:?}"),
                    format!(
                        "Credentials {{ username: {:?}, password: \"<redacted>\" }}",
                        credentials.username
                    )
                );
                break;
            }
        }
        let Some(line) = lines.next() else {
            break;
        };
        let exchange = exchange.as_mut().expect("checked above");
        step = exchange.respond(line);
        if line == b"*" {
            assert!(
                matches!(&step, Step::Refuse(reply) if *reply == AUTH_CANCELLED),
                "* must cancel the exchange"
            );
        }
    }
});

/// Splits at CRLF (a final piece without CRLF is dropped, as the session would wait for it).
fn split_crlf(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        Some(line)
    })
}
