//! Lines too long for SMTP. RFC 5321 §4.5.3.1.6 allows 1000 octets per line, CRLF included;
//! a submission server accepts longer ones (we are liberal in what we take), so delivery has to
//! shorten them or a strict receiver refuses the message. Postfix does the same with
//! `smtp_line_length_limit`: header lines are folded, body lines are broken.

use std::borrow::Cow;

/// The longest line sent, CRLF excluded.
pub const MAX_LINE: usize = 998;

/// A whitespace run longer than this is cut down to one space in an over-long header line:
/// folding needs every line to hold something besides whitespace (RFC 5322 §3.2.2).
const MAX_WHITESPACE_RUN: usize = MAX_LINE / 2;

/// The message with no line longer than 998 octets (excluding CRLF), borrowed when nothing
/// changes.
///
/// Header lines (up to the first empty line) are folded: a CRLF is inserted before existing
/// whitespace where there is some, so unfolding gives the field back unchanged; where there is
/// none, CRLF and a space are inserted. An over-long header line also loses its trailing
/// whitespace, and whitespace runs longer than 499 octets become one space, since no folding
/// could keep them without a whitespace-only line. Body lines are broken with a bare CRLF:
/// removing the inserted CRLFs gives the input back. Breaks avoid splitting a UTF-8 sequence.
pub fn limit_line_length(message: &[u8]) -> Cow<'_, [u8]> {
    if lines(message).all(|line| content(line).0.len() <= MAX_LINE) {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / MAX_LINE * 3 + 3);
    let mut in_header = true;
    for line in lines(message) {
        let (text, ending) = content(line);
        if text.is_empty() {
            in_header = false;
        }
        if text.len() <= MAX_LINE {
            out.extend_from_slice(line);
        } else if in_header {
            fold_header_line(&tidy(text), &mut out);
            out.extend_from_slice(ending);
        } else {
            break_body_line(text, &mut out);
            out.extend_from_slice(ending);
        }
    }
    Cow::Owned(out)
}

/// The lines of `message`, each with its LF (the last one perhaps without).
fn lines(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    message.split_inclusive(|&b| b == b'\n')
}

/// A line split into its text and its ending (CRLF, LF or nothing).
fn content(line: &[u8]) -> (&[u8], &[u8]) {
    let cut = if line.ends_with(b"\r\n") {
        line.len() - 2
    } else if line.ends_with(b"\n") {
        line.len() - 1
    } else {
        line.len()
    };
    line.split_at(cut)
}

fn is_wsp(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// Where to cut `bytes` (longer than `max`) at most `max` octets in: `max`, or up to three
/// octets earlier when that would split a UTF-8 sequence.
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let continuation = |i: usize| bytes[i] & 0xC0 == 0x80;
    (max.saturating_sub(3).max(1)..=max)
        .rev()
        .find(|&cut| !continuation(cut))
        .unwrap_or(max)
}

/// Breaks a body line into pieces of at most [`MAX_LINE`] octets joined by CRLF.
fn break_body_line(mut rest: &[u8], out: &mut Vec<u8>) {
    while rest.len() > MAX_LINE {
        let cut = char_boundary(rest, MAX_LINE);
        out.extend_from_slice(&rest[..cut]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[cut..];
    }
    out.extend_from_slice(rest);
}

/// Without trailing whitespace and with over-long whitespace runs cut to one space, so every
/// piece of a fold holds more than whitespace.
fn tidy(text: &[u8]) -> Cow<'_, [u8]> {
    let end = text.iter().rposition(|&b| !is_wsp(b)).map_or(0, |i| i + 1);
    let text = &text[..end];
    let mut runs = text.chunk_by(|a, b| is_wsp(*a) == is_wsp(*b));
    if !runs.any(|run| is_wsp(run[0]) && run.len() > MAX_WHITESPACE_RUN) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len());
    for run in text.chunk_by(|a, b| is_wsp(*a) == is_wsp(*b)) {
        match is_wsp(run[0]) && run.len() > MAX_WHITESPACE_RUN {
            true => out.push(b' '),
            false => out.extend_from_slice(run),
        }
    }
    Cow::Owned(out)
}

/// Folds one header line (without its ending) into lines of at most [`MAX_LINE`] octets.
fn fold_header_line(text: &[u8], out: &mut Vec<u8>) {
    let mut rest = text;
    // Whether the current output line starts with a space of ours, which counts against it.
    let mut inserted_space = false;
    loop {
        let budget = MAX_LINE - usize::from(inserted_space);
        if rest.len() <= budget {
            out.extend_from_slice(rest);
            return;
        }
        match whitespace_cut(rest, budget) {
            Some(cut) => {
                out.extend_from_slice(&rest[..cut]);
                out.extend_from_slice(b"\r\n");
                rest = &rest[cut..];
                inserted_space = false;
            }
            None => {
                let cut = char_boundary(rest, budget);
                out.extend_from_slice(&rest[..cut]);
                out.extend_from_slice(b"\r\n ");
                rest = &rest[cut..];
                inserted_space = true;
            }
        }
    }
}

/// The last whitespace within `budget` octets that has something besides whitespace before it:
/// folding there (CRLF before the whitespace) loses nothing when the field is unfolded.
fn whitespace_cut(rest: &[u8], budget: usize) -> Option<usize> {
    let first_word = rest.iter().position(|&b| !is_wsp(b))?;
    (first_word + 1..=budget).rev().find(|&i| is_wsp(rest[i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line_lengths(message: &[u8]) -> Vec<usize> {
        lines(message).map(|line| content(line).0.len()).collect()
    }

    #[test]
    fn short_lines_are_borrowed() {
        let message = b"Subject: hi\r\n\r\nbody\r\n";
        assert!(matches!(limit_line_length(message), Cow::Borrowed(_)));
        let exact = [b"a".repeat(998), b"\r\n".to_vec()].concat();
        assert!(matches!(limit_line_length(&exact), Cow::Borrowed(_)));
    }

    #[test]
    fn a_long_body_line_is_broken_with_crlf() {
        let message = [
            b"A: b\r\n\r\n".to_vec(),
            b"x".repeat(2500),
            b"\r\nend\r\n".to_vec(),
        ]
        .concat();
        let limited = limit_line_length(&message);
        assert_eq!(line_lengths(&limited), [4, 0, 998, 998, 504, 3]);
        let expected = [
            b"A: b\r\n\r\n".to_vec(),
            b"x".repeat(998),
            b"\r\n".to_vec(),
            b"x".repeat(998),
            b"\r\n".to_vec(),
            b"x".repeat(504),
            b"\r\nend\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(&*limited, &expected[..]);
    }

    #[test]
    fn a_body_break_does_not_split_a_utf8_character() {
        let body = [b"x".repeat(997), "é".repeat(10).into_bytes()].concat();
        let message = [b"\r\n".to_vec(), body.clone()].concat();
        let limited = limit_line_length(&message);
        assert_eq!(line_lengths(&limited), [0, 997, 20]);
        for line in lines(&limited) {
            assert!(std::str::from_utf8(line).is_ok());
        }
    }

    #[test]
    fn a_long_header_is_folded_before_existing_whitespace() {
        let words: Vec<String> = (0..400).map(|i| format!("w{i:03}")).collect();
        let header = format!("Subject: {}", words.join(" "));
        let message = format!("{header}\r\nTo: a@b.c\r\n\r\nbody\r\n");
        let limited = limit_line_length(message.as_bytes());
        let text = std::str::from_utf8(&limited).unwrap();
        assert!(line_lengths(&limited).iter().all(|&n| n <= MAX_LINE));
        // Unfolding (RFC 5322 §2.2.3: remove each CRLF followed by whitespace) restores it.
        assert_eq!(text.replace("\r\n ", " "), message);
        assert!(text.starts_with("Subject: w000 "));
        assert_eq!(text.lines().filter(|l| l.starts_with(' ')).count(), 2);
    }

    #[test]
    fn a_header_without_whitespace_gets_crlf_and_a_space() {
        let header = format!("X-Long: {}", "y".repeat(2000));
        let message = format!("{header}\r\n\r\nb\r\n");
        let limited = limit_line_length(message.as_bytes());
        let lines: Vec<&str> = std::str::from_utf8(&limited)
            .unwrap()
            .split("\r\n")
            .collect();
        assert_eq!(lines[0], "X-Long:");
        assert_eq!(lines[1], format!(" {}", "y".repeat(997)));
        assert_eq!(lines[2], format!(" {}", "y".repeat(997)));
        assert_eq!(lines[3], format!(" {}", "y".repeat(6)));
        assert_eq!(&lines[4..], ["", "b", ""]);
    }

    #[test]
    fn no_header_piece_is_only_whitespace() {
        let header = format!(
            "X: {}{}a{}",
            "z".repeat(990),
            " ".repeat(1200),
            " ".repeat(30)
        );
        let message = format!("{header}\r\n\r\n");
        let limited = limit_line_length(message.as_bytes());
        for line in std::str::from_utf8(&limited).unwrap().split("\r\n") {
            assert!(line.len() <= MAX_LINE);
            assert!(line.is_empty() || line.trim() != "", "{line:?}");
        }
    }

    #[test]
    fn a_message_without_body_or_final_crlf_is_limited_too() {
        let message = "a".repeat(1500);
        let limited = limit_line_length(message.as_bytes());
        assert_eq!(line_lengths(&limited), [998, 503]);
        assert_eq!(&limited[998..1001], b"\r\n ");
    }

    fn non_whitespace(bytes: &[u8]) -> Vec<u8> {
        bytes
            .iter()
            .copied()
            .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .collect()
    }

    fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
        let mut end = 0;
        for line in lines(message) {
            end += line.len();
            if line == b"\r\n" {
                break;
            }
        }
        message.split_at(end)
    }

    /// The body lines each made from the output's lines: a piece ends where an input line
    /// ends, so removing the CRLFs in between must give the input line.
    fn check_body(input: &[u8], output: &[u8]) -> Result<(), TestCaseError> {
        let mut pieces = output
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        for line in input
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        {
            let mut joined = Vec::new();
            loop {
                let piece = pieces.next();
                prop_assert!(piece.is_some(), "output ended early");
                let piece = piece.unwrap_or_default();
                joined.extend_from_slice(piece);
                if joined.len() >= line.len() {
                    break;
                }
                prop_assert!(piece.len() >= MAX_LINE - 3, "a break before the limit");
            }
            prop_assert_eq!(&joined[..], line);
        }
        prop_assert!(pieces.next().is_none());
        Ok(())
    }

    fn header_line() -> impl Strategy<Value = Vec<u8>> {
        let word = proptest::collection::vec(0x21u8..0x7f, 0..1500);
        let space = proptest::collection::vec(prop_oneof![Just(b' '), Just(b'\t')], 1..40);
        proptest::collection::vec((word, space), 0..6).prop_map(|parts| {
            let mut line = b"X-Test:".to_vec();
            for (word, space) in parts {
                line.extend(space);
                line.extend(word);
            }
            line
        })
    }

    fn body_line() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_map(|b| if b == b'\n' { b'n' } else { b }),
            0..3000,
        )
        .prop_map(|mut line| {
            // A CR at the end would read as part of the CRLF.
            while line.last() == Some(&b'\r') {
                line.pop();
            }
            line
        })
    }

    proptest! {
        #[test]
        fn limited_lines_fit_and_body_lines_come_back(
            headers in proptest::collection::vec(header_line(), 0..4),
            body in proptest::collection::vec(body_line(), 1..5),
        ) {
            let header: Vec<u8> =
                headers.iter().flat_map(|h| [&h[..], b"\r\n"].concat()).collect();
            let body: Vec<u8> = body.join(&b"\r\n"[..]);
            let message = [&header[..], b"\r\n", &body[..]].concat();
            let limited = limit_line_length(&message);
            prop_assert!(line_lengths(&limited).iter().all(|&n| n <= MAX_LINE));
            let (out_header, out_body) = split_message(&limited);
            let (in_header, in_body) = split_message(&message);
            check_body(in_body, out_body)?;
            prop_assert_eq!(non_whitespace(out_header), non_whitespace(in_header));
            let fields = |h: &[u8]| {
                h.split(|&b| b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .filter(|l| !l.is_empty() && !is_wsp(l[0]))
                    .count()
            };
            prop_assert_eq!(fields(out_header), fields(in_header));
            for line in out_header.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                prop_assert!(line.is_empty() || line.iter().any(|&b| !is_wsp(b)));
            }
        }

        #[test]
        fn any_bytes_come_out_with_short_lines(
            message in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let limited = limit_line_length(&message);
            prop_assert!(line_lengths(&limited).iter().all(|&n| n <= MAX_LINE));
        }
    }
}
