//! `DataReceiver` fed the same bytes in one piece and in pieces, checked against each other and
//! against a plain model of the DATA rules with `bare_line_endings = "reject"` (the model does
//! not normalise; the normalising mode is covered by the unit and property tests).
//!
//! Input layout: byte 0 picks `max_size`, byte 1 `max_line`, byte 2 the prefix length, byte 3
//! the number of split points (0..=15), then that many bytes of split positions; the rest is
//! what the client sends after `354`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::smtp::data::{BareLineEndings, DataReceiver, Defect, Progress};
use portcullis_fuzz::split_header;

fuzz_target!(|data: &[u8]| {
    let (header, rest) = split_header::<4>(data);
    let max_size = usize::from(header[0]) * 8;
    let max_line = usize::from(header[1]) + 2;
    let prefix = vec![b'P'; usize::from(header[2] % 64)];
    let splits = usize::from(header[3] % 16).min(rest.len());
    let (split_bytes, input) = rest.split_at(splits);

    // In one piece.
    let mut whole = DataReceiver::new(max_size, max_line, BareLineEndings::Reject, prefix.clone());
    let whole_progress = whole.feed(input);
    let whole_end = match whole_progress {
        Progress::NeedMore => None,
        Progress::Complete(used) => {
            assert!(
                (1..=input.len()).contains(&used),
                "Complete({used}) for {} bytes",
                input.len()
            );
            Some(used)
        }
    };

    // In pieces: the split points are positions in the input (sorted, duplicates give empty
    // pieces, which must be harmless).
    let mut cuts: Vec<usize> = split_bytes
        .iter()
        .map(|&b| usize::from(b) * input.len() / 256)
        .collect();
    cuts.sort_unstable();
    cuts.push(input.len());
    let mut pieces = DataReceiver::new(max_size, max_line, BareLineEndings::Reject, prefix.clone());
    let mut start = 0;
    let mut pieces_end = None;
    for &cut in &cuts {
        let piece = &input[start..cut];
        match pieces.feed(piece) {
            Progress::NeedMore => {}
            Progress::Complete(used) => {
                assert!(
                    (1..=piece.len()).contains(&used),
                    "Complete({used}) for a piece of {} bytes",
                    piece.len()
                );
                pieces_end = Some(start + used);
                break;
            }
        }
        start = cut;
    }
    assert_eq!(
        whole_end, pieces_end,
        "the end of data depends on the split"
    );

    // The model: the message ends after the first CRLF "." CRLF, counting the start of the
    // input as the start of a line.
    let model_end = [&b"\r\n"[..], input]
        .concat()
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|at| at + 3);
    assert_eq!(
        whole_end, model_end,
        "the end of data differs from the model"
    );

    let whole_result = whole.finish();
    assert_eq!(
        whole_result,
        pieces.finish(),
        "the result depends on the split"
    );
    let Some(end) = whole_end else {
        return;
    };
    let expected = model_message(&input[..end - 3], max_size, max_line);
    match (&whole_result, &expected) {
        (Ok(message), Some(body)) => {
            assert!(message.starts_with(&prefix), "the prefix is gone");
            assert_eq!(&message[prefix.len()..], &body[..], "unstuffed message");
            assert!(message.len() <= max_size + prefix.len());
        }
        (Err(_), None) => {}
        _ => panic!("receiver says {whole_result:?}, the model {expected:?}"),
    }
    // Size trumps: a clean message that is only too big is refused as such, and TooBig is
    // never claimed for a message that fits (the unstuffed message is never longer than the body).
    let body = &input[..end - 3];
    if let Some(unlimited) = model_message(body, usize::MAX, max_line)
        && unlimited.len() > max_size
    {
        assert_eq!(whole_result, Err(Defect::TooBig));
    }
    if whole_result == Err(Defect::TooBig) {
        assert!(
            body.len() > max_size,
            "TooBig for a body of {} octets",
            body.len()
        );
    }
});

/// The accepted message for a body (the input before the final ".\r\n"), or `None` when the
/// message must be refused: lines must end with CRLF and hold no CR, LF or NUL; a leading dot is
/// removed; each unstuffed line with its CRLF fits `max_line`, the whole fits `max_size`.
fn model_message(body: &[u8], max_size: usize, max_line: usize) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let mut line = &rest[..end];
        rest = &rest[end + 2..];
        if line.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return None;
        }
        if let Some(unstuffed) = line.strip_prefix(b".") {
            line = unstuffed;
        }
        if line.len() + 2 > max_line {
            return None;
        }
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    (message.len() <= max_size).then_some(message)
}
