//! The "relaxed" canonicalizations of RFC 6376 §3.4.2 (header fields) and §3.4.4 (body), and
//! the split of a message into its header fields and body. Messages come from the spool path,
//! so every line ends with CRLF (the DATA receiver guarantees it).

use ring::digest::{Context, SHA256};

/// One header field as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, as written (no trailing blanks).
    pub name: &'a [u8],
    /// The whole field, folded lines included, without its final CRLF.
    pub raw: &'a [u8],
}

/// The header fields of `message`, in order, and its body (after the empty line; empty when
/// there is none).
pub fn split(message: &[u8]) -> (Vec<Field<'_>>, &[u8]) {
    let mut fields: Vec<Field> = Vec::new();
    // Where the field being read starts: a folded line extends it.
    let mut field_start = 0;
    let mut at = 0;
    while at < message.len() {
        let end = find_crlf(message, at).unwrap_or(message.len());
        if end == at {
            // The empty line: the body follows it.
            return (fields, &message[(at + 2).min(message.len())..]);
        }
        let continues = matches!(message[at], b' ' | b'\t');
        match fields.last_mut() {
            Some(last) if continues => last.raw = &message[field_start..end],
            _ => {
                field_start = at;
                let line = &message[at..end];
                let name = line.split(|&b| b == b':').next().unwrap_or(line);
                fields.push(Field {
                    name: trim_end(name),
                    raw: line,
                });
            }
        }
        at = end + 2;
    }
    (fields, &[])
}

fn find_crlf(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .map(|at| from + at)
}

fn is_wsp(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let keep = bytes.iter().rposition(|&b| !is_wsp(b)).map_or(0, |i| i + 1);
    &bytes[..keep]
}

/// Appends the relaxed form of a header field, `name:value` without CRLF: the name in lower
/// case, the value unfolded, each run of blanks one space, none at its ends.
pub fn relaxed_header(raw: &[u8], out: &mut Vec<u8>) {
    let colon = raw.iter().position(|&b| b == b':').unwrap_or(raw.len());
    out.extend(trim_end(&raw[..colon]).iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let value = raw.get(colon + 1..).unwrap_or_default();
    let unfolded = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n');
    let mut pending_space = false;
    let mut started = false;
    for byte in unfolded {
        if is_wsp(byte) {
            pending_space = started;
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        out.push(byte);
        started = true;
    }
}

/// The SHA-256 of the body in relaxed form: blanks at line ends removed, other runs of blanks
/// one space, empty lines at the end removed, and a CRLF after the last line.
pub fn relaxed_body_hash(body: &[u8]) -> [u8; 32] {
    /// Canonical lines are gathered into chunks this big before hashing: one digest update per
    /// line of 80 octets costs more than the hashing itself.
    const CHUNK: usize = 64 * 1024;
    let mut context = Context::new(&SHA256);
    let mut chunk = Vec::with_capacity(CHUNK + 1000);
    let mut empty_lines = 0usize;
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    for raw in body.split(|&b| b == b'\n') {
        let start = chunk.len();
        relaxed_line(raw.strip_suffix(b"\r").unwrap_or(raw), &mut chunk);
        if chunk.len() == start {
            // Kept back: written only if a line with content follows.
            empty_lines += 1;
            continue;
        }
        if empty_lines > 0 {
            let kept_back = std::iter::repeat_n(*b"\r\n", empty_lines).flatten();
            chunk.splice(start..start, kept_back);
            empty_lines = 0;
        }
        chunk.extend_from_slice(b"\r\n");
        if chunk.len() >= CHUNK {
            context.update(&chunk);
            chunk.clear();
        }
    }
    context.update(&chunk);
    let mut hash = [0; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// Appends one body line in relaxed form (without its CRLF) to `out`.
fn relaxed_line(raw: &[u8], out: &mut Vec<u8>) {
    let mut pending_space = false;
    for &byte in raw {
        if is_wsp(byte) {
            pending_space = true;
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        out.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn relaxed(raw: &[u8]) -> String {
        let mut out = Vec::new();
        relaxed_header(raw, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn body_hash(body: &[u8]) -> String {
        STANDARD.encode(relaxed_body_hash(body))
    }

    #[test]
    fn the_relaxed_header_example_of_rfc_6376_section_3_4_5() {
        // "A: X", "B : Y\t\r\n\tZ  " become "a:X" and "b:Y Z".
        assert_eq!(relaxed(b"A: X"), "a:X");
        assert_eq!(relaxed(b"B : Y\t\r\n\tZ  "), "b:Y Z");
    }

    #[test]
    fn header_values_lose_blanks_at_their_ends_and_keep_one_between_words() {
        assert_eq!(
            relaxed(b"Subject:   Is \t dinner  ready?\t"),
            "subject:Is dinner ready?"
        );
        assert_eq!(relaxed(b"X-Empty:   "), "x-empty:");
        assert_eq!(relaxed(b"To: a,\r\n b"), "to:a, b");
    }

    #[test]
    fn the_relaxed_body_example_of_rfc_6376_section_3_4_5() {
        // " C \r\nD \t E\r\n\r\n\r\n" becomes " C\r\nD E\r\n".
        let expected = STANDARD.encode(ring::digest::digest(&SHA256, b" C\r\nD E\r\n"));
        assert_eq!(body_hash(b" C \r\nD \t E\r\n\r\n\r\n"), expected);
    }

    #[test]
    fn the_body_hash_of_the_rfc_8463_example() {
        let body = b"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n\r\n";
        assert_eq!(
            body_hash(body),
            "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
        );
    }

    #[test]
    fn an_empty_body_and_one_of_blank_lines_hash_as_nothing() {
        // RFC 6376 erratum 3871: the relaxed empty body is empty, not a CRLF.
        let nothing = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert_eq!(body_hash(b""), nothing);
        assert_eq!(body_hash(b"\r\n\r\n \t\r\n"), nothing);
    }

    #[test]
    fn a_last_line_without_crlf_gets_one() {
        assert_eq!(body_hash(b"Joe."), body_hash(b"Joe.\r\n"));
    }

    #[test]
    fn split_finds_folded_fields_and_the_body() {
        let message = b"From: a@b\r\nSubject: one\r\n two\r\nTo : c@d\r\n\r\nbody\r\n";
        let (fields, body) = split(message);
        let names: Vec<&[u8]> = fields.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b"From"[..], b"Subject", b"To"]);
        assert_eq!(fields[1].raw, b"Subject: one\r\n two");
        assert_eq!(body, b"body\r\n");
    }

    #[test]
    fn a_message_without_an_empty_line_is_all_header() {
        let (fields, body) = split(b"From: a@b\r\n");
        assert_eq!(fields.len(), 1);
        assert!(body.is_empty());
        let (fields, body) = split(b"From: a@b\r\n\r\n");
        assert_eq!(fields.len(), 1);
        assert!(body.is_empty());
    }
}
