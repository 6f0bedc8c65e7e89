//! Invariants shared by the fuzz targets in `fuzz_targets/`.
//!
//! Every check panics with a message naming the broken rule, which libFuzzer reports as a crash.
//! Checks for bugs that are known and not fixed yet can be switched off with the environment
//! variable `PORTCULLIS_FUZZ_ALLOW` (a comma-separated list of the names below), so that a long
//! run can look for other bugs instead of finding the same one again.

use std::sync::OnceLock;

use portcullis::smtp::Reply;

/// The model of the SMTP session, shared with `tests/session_properties.rs` (the top-level
/// crate's property tests): one file, so that each rule is written once. It also holds the reply
/// checks every target uses.
#[path = "../../tests/support/session_checker.rs"]
pub mod session_checker;

pub use session_checker::Known;

/// The names `PORTCULLIS_FUZZ_ALLOW` may list.
const KNOWN_NAMES: [(Known, &str); 2] = [
    (Known::LongReplyLines, "long-reply-lines"),
    (Known::ControlCharactersInReplies, "control-characters"),
];

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
                    KNOWN_NAMES
                        .iter()
                        .find(|(_, known_name)| *known_name == name)
                        .map(|(known, _)| *known)
                        .unwrap_or_else(|| panic!("PORTCULLIS_FUZZ_ALLOW: unknown name {name:?}"))
                })
                .collect()
        })
        .contains(&known)
}

/// Checks one reply (see `session_checker::check_reply`), with the checks of the problems
/// `PORTCULLIS_FUZZ_ALLOW` names switched off.
pub fn check_reply(reply: &Reply) {
    session_checker::check_reply(reply, allowed);
}

/// Reads fuzz input from the front: a fixed-size header, then the rest.
pub fn split_header<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut header = [0u8; N];
    let take = data.len().min(N);
    header[..take].copy_from_slice(&data[..take]);
    (header, &data[take..])
}
