//! A whole `Session` fed arbitrary bytes in arbitrary pieces, with every action answered by an
//! outcome the input chooses, checked reply by reply; then the same bytes in one piece, which
//! must give the same actions up to the first STARTTLS (after it, what was pipelined in the same
//! read is discarded by design, so the two runs may differ). The session model and its checks
//! are in `tests/support/session_checker.rs`, shared with the property tests; this file only
//! decodes the input.
//!
//! Input layout (16 header bytes, missing ones are 0, then the client's bytes):
//! - byte 0: bit 0 trusted client, bit 1 STARTTLS available, bit 2 implicit TLS, bits 3-4 what
//!   happens after the last byte (0 nothing, 1 shut down, 2 timeout, 3 nothing);
//! - byte 1: `max_errors` = 1 + bits 0-4, `max_recipients` = 1 + bits 5-7;
//! - byte 2: `max_message_size` = 1024 << bits 0-1; bit 2: `max_command_line` 1024 instead of
//!   512; bit 3: `max_text_line` 2000 instead of 1000; bit 4: `bare_line_endings` reject instead
//!   of normalize;
//! - bytes 3-7: outcome choices, used in turn for each action that needs one;
//! - bytes 8-15: lengths of the pieces the bytes arrive in, used in turn (0 means 4096).

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::smtp::{BareLineEndings, Limits};
use portcullis_fuzz::session_checker::{self, End, Setup};
use portcullis_fuzz::{allowed, split_header};

fuzz_target!(|data: &[u8]| {
    let (header, stream) = split_header::<16>(data);
    let setup = setup(&header);
    let in_pieces = session_checker::run(&setup, allowed, pieces(stream, &header[8..16]));
    let in_one_piece = session_checker::run(&setup, allowed, [stream]);
    session_checker::assert_same_until_starttls(in_pieces.log(), in_one_piece.log());
});

/// The session's configuration and outcomes from header bytes 0-7.
fn setup(header: &[u8; 16]) -> Setup {
    let limits = Limits {
        max_errors: 1 + u32::from(header[1] & 31),
        max_recipients: 1 + usize::from(header[1] >> 5),
        max_message_size: 1024 << (header[2] & 3),
        max_command_line: if header[2] & 4 != 0 { 1024 } else { 512 },
        max_text_line: if header[2] & 8 != 0 { 2000 } else { 1000 },
        bare_line_endings: if header[2] & 16 != 0 {
            BareLineEndings::Reject
        } else {
            BareLineEndings::Normalize
        },
        ..Limits::default()
    };
    let end = match (header[0] >> 3) & 3 {
        1 => End::ShutDown,
        2 => End::TimedOut,
        _ => End::Nothing,
    };
    Setup {
        trusted: header[0] & 1 != 0,
        starttls_available: header[0] & 2 != 0,
        implicit_tls: header[0] & 4 != 0,
        limits,
        end,
        outcomes: header[3..8].to_vec(),
    }
}

/// The stream cut into pieces of the lengths given, used in turn (0 means 4096).
fn pieces<'s>(stream: &'s [u8], lengths: &[u8]) -> Vec<&'s [u8]> {
    let mut pieces = Vec::new();
    let mut rest = stream;
    for &length in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let length = if length == 0 {
            4096
        } else {
            usize::from(length)
        };
        let (piece, after) = rest.split_at(length.min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    pieces
}
