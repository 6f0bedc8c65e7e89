//! Invariants shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every check panics with a message naming the broken rule, which libFuzzer reports as a crash.
//! Checks for bugs that are known and not fixed yet can be switched off with the environment
//! variable `PORTCULLIS_FUZZ_ALLOW` (a comma-separated list of the names below), so that a long
//! run can look for other bugs instead of finding the same one again.

use std::sync::OnceLock;

use portcullis::smtp::{Reply, Status};

/// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and the CRLF.
pub const MAX_REPLY_LINE: usize = 512;

/// Known problems that `PORTCULLIS_FUZZ_ALLOW` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// A reply line longer than 512 octets.
    LongReplyLines,
    /// A control character (other than HTAB) in a reply's text.
    ControlCharactersInReplies,
}

impl Known {
    const ALL: [(Known, &'static str); 2] = [
        (Known::LongReplyLines, "long-reply-lines"),
        (Known::ControlCharactersInReplies, "control-characters"),
    ];
}

/// Whether the check for `known` is switched off for this run.
pub fn allowed(known: Known) -> bool {
    static ALLOWED: OnceLock<Vec<Known>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            let setting = std::env::var("PORTCULLIS_FUZZ_ALLOW").unwrap_or_default();
            setting
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    Known::ALL
                        .iter()
                        .find(|(_, known_name)| *known_name == name)
                        .map(|(known, _)| *known)
                        .unwrap_or_else(|| panic!("PORTCULLIS_FUZZ_ALLOW: unknown name {name:?}"))
                })
                .collect()
        })
        .contains(&known)
}

/// Checks one reply: its code is 200..=599; an enhanced status code, if any, has the class of the
/// basic code, and 3xx replies have none (RFC 3463, RFC 2034 §3); on the wire every line carries
/// the code, ends with CRLF, has no other CR or LF and is at most 512 octets.
pub fn check_reply(reply: &Reply) {
    let code = reply.code();
    assert!(
        (200..=599).contains(&code),
        "reply code out of range: {reply:?}"
    );
    let class = code / 100;
    if let Some(Status(status_class, _, _)) = reply.status() {
        assert!(class != 3, "3xx reply with an enhanced status: {reply:?}");
        assert_eq!(
            u16::from(status_class),
            class,
            "enhanced status class differs from the code: {reply:?}"
        );
    }
    let mut wire = Vec::new();
    reply.write_to(&mut wire);
    assert_eq!(
        reply.to_wire().as_bytes(),
        &wire[..],
        "to_wire and write_to differ (invalid UTF-8?): {reply:?}"
    );
    assert!(
        wire.ends_with(b"\r\n"),
        "reply does not end with CRLF: {wire:?}"
    );
    let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
    let code_text = code.to_string();
    for (index, line) in lines.iter().enumerate() {
        let line = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
            panic!("reply line {index} does not end with CRLF: {reply:?}");
        });
        assert!(
            !line.contains(&b'\r'),
            "bare CR inside reply line {index}: {reply:?}"
        );
        let last = index + 1 == lines.len();
        let separator = if last { b' ' } else { b'-' };
        assert!(
            line.starts_with(code_text.as_bytes()) && line.get(3) == Some(&separator),
            "reply line {index} lacks its code and separator: {reply:?}"
        );
        if !allowed(Known::LongReplyLines) {
            assert!(
                line.len() + 2 <= MAX_REPLY_LINE,
                "reply line of {} octets (RFC 5321 §4.5.3.1.5 allows 512): {:?}",
                line.len() + 2,
                String::from_utf8_lossy(line)
            );
        }
        if !allowed(Known::ControlCharactersInReplies) {
            assert!(
                !line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
                "control character in reply line {index}: {reply:?}"
            );
        }
    }
}

/// Checks the bytes of an accepted message: every CR is followed by LF, every LF follows a CR,
/// there is no NUL, and the message ends with CRLF or is empty.
pub fn check_clean_message(message: &[u8]) {
    for (index, &byte) in message.iter().enumerate() {
        match byte {
            0 => panic!("NUL at {index} in an accepted message"),
            b'\r' => assert_eq!(
                message.get(index + 1),
                Some(&b'\n'),
                "bare CR at {index} in an accepted message"
            ),
            b'\n' => assert!(
                index > 0 && message[index - 1] == b'\r',
                "bare LF at {index} in an accepted message"
            ),
            _ => {}
        }
    }
    assert!(
        message.is_empty() || message.ends_with(b"\r\n"),
        "accepted message does not end with CRLF"
    );
}

/// Reads fuzz input from the front: a fixed-size header, then the rest.
pub fn split_header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut header = [0u8; N];
    let take = data.len().min(N);
    header[..take].copy_from_slice(&data[..take]);
    (header, &data[take..])
}
