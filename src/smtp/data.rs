//! The DATA receiver: removes dot-stuffing and finds the end of the message (RFC 5321 §4.1.1.4,
//! §4.5.2), in whatever pieces the bytes arrive.
//!
//! Only `<CRLF>.<CRLF>` ends a message. Every other line-ending variant (`<LF>.<LF>`,
//! `<CR>.<CR>`, `<LF>.<CRLF>`, a NUL before the dot, ...) is message content. What happens to
//! content with a line ending other than CRLF depends on [`BareLineEndings`]:
//! - `Reject`: a message with a bare CR or a bare LF anywhere is refused whole after its real end;
//! - `Normalize`: a bare LF ends a line, stored as CRLF; a bare CR still refuses the message.
//!
//! A NUL refuses the message in both modes. Either way the stored message holds only CRLF line
//! endings, so SMTP smuggling is impossible in both directions: nothing a lenient server
//! downstream might read as an end of data can reach it (a `.` line that survives normalisation
//! is dot-stuffed again when relayed), and nothing hidden in the body ever becomes a second
//! transaction here.

use std::fmt;
use std::str::FromStr;

/// The line-ending variants around a dot that a lenient server might take for the end of DATA
/// (SMTP smuggling): none of them ends a message here. The tests of every layer walk this one
/// list.
pub const SMUGGLING_TERMINATORS: [&[u8]; 9] = [
    b"\n.\n",
    b"\r.\r",
    b"\r.\n",
    b"\n.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r\n\x00.\r\n",
];

/// What a line ending other than CRLF inside DATA does (`[limits] bare_line_endings`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BareLineEndings {
    /// A bare LF ends a line and is stored as CRLF (what Unix tools such as `curl -T` send); a
    /// bare CR refuses the message, since no current system ends lines with it and `<CR>.<CR>`
    /// is a smuggling pattern.
    #[default]
    Normalize,
    /// A bare CR or a bare LF refuses the message.
    Reject,
}

impl FromStr for BareLineEndings {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "normalize" => Ok(BareLineEndings::Normalize),
            "reject" => Ok(BareLineEndings::Reject),
            _ => Err(format!(
                "\"{text}\" is not a bare line ending policy: use normalize or reject"
            )),
        }
    }
}

impl fmt::Display for BareLineEndings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BareLineEndings::Normalize => "normalize",
            BareLineEndings::Reject => "reject",
        })
    }
}

/// Why a complete message cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    TooBig,
    /// A bare CR or LF, with `BareLineEndings::Reject`.
    BareLineEnding,
    /// A CR not followed by LF, with `BareLineEndings::Normalize`.
    BareCr,
    Nul,
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line; `crlf`: the line before ended with a real CRLF (or there was
    /// none), so a `.` line here may be the end of data.
    LineStart { crlf: bool },
    /// Inside a line.
    InLine,
    /// Saw CR inside a line.
    Cr,
    /// Saw `.` at the start of a line.
    Dot { crlf: bool },
    /// Saw `.` CR at the start of a line.
    DotCr { crlf: bool },
}

pub struct DataReceiver {
    state: State,
    mode: BareLineEndings,
    message: Vec<u8>,
    max_size: usize,
    max_line: usize,
    line_length: usize,
    size: usize,
    defect: Option<Defect>,
}

/// Result of feeding bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// All bytes were consumed; the message goes on.
    NeedMore,
    /// The terminator ended at this many bytes into the input; the rest belongs to the next command.
    Complete(usize),
}

impl DataReceiver {
    /// `max_size` bounds the unstuffed message as stored (normalised line ends count as CRLF),
    /// `max_line` the octets of one line with its CRLF.
    pub fn new(
        max_size: usize,
        max_line: usize,
        mode: BareLineEndings,
        prefix: Vec<u8>,
    ) -> DataReceiver {
        DataReceiver {
            state: State::LineStart { crlf: true },
            mode,
            size: 0,
            message: prefix,
            max_size,
            max_line,
            line_length: 0,
            defect: None,
        }
    }

    pub fn feed(&mut self, input: &[u8]) -> Progress {
        for (index, &byte) in input.iter().enumerate() {
            if self.step(byte) {
                return Progress::Complete(index + 1);
            }
        }
        Progress::NeedMore
    }

    /// Advances by one byte; true when the terminator is complete.
    fn step(&mut self, byte: u8) -> bool {
        match (self.state, byte) {
            (State::LineStart { crlf }, b'.') => self.state = State::Dot { crlf },
            (State::Dot { crlf }, b'\r') => self.state = State::DotCr { crlf },
            (State::DotCr { crlf: true }, b'\n') => return true,
            // "<LF>.<CRLF>": a line of one dot that is not the end of data, kept as it is.
            (State::DotCr { crlf: false }, b'\n') => {
                self.push(b'.');
                self.push(b'\r');
                self.end_line(true);
            }
            (State::DotCr { .. }, _) => {
                // ".<CR>x": a bare CR; the dot was stuffing.
                self.push(b'\r');
                self.bare_cr();
                self.state = State::InLine;
                self.content(byte);
            }
            // "<CRLF>.<LF>" or "<LF>.<LF>": a line of one dot that is not the end of data; when
            // normalised it is kept (a dot-stuffing client would have doubled it).
            (State::Dot { .. }, b'\n') if self.mode == BareLineEndings::Normalize => {
                self.push(b'.');
                self.push(b'\r');
                self.end_line(false);
            }
            // A stuffed dot: drop it and read the byte as the start of the line's content.
            (State::Dot { .. }, _) => self.content(byte),
            (State::Cr, b'\n') => self.end_line(true),
            (State::Cr, _) => {
                self.bare_cr();
                self.state = State::InLine;
                self.content(byte);
            }
            (State::LineStart { .. } | State::InLine, _) => self.content(byte),
        }
        false
    }

    /// A byte of line content (not part of a CRLF).
    fn content(&mut self, byte: u8) {
        match byte {
            b'\r' => {
                self.state = State::Cr;
                self.push(byte);
            }
            b'\n' if self.mode == BareLineEndings::Normalize => {
                self.push(b'\r');
                self.end_line(false);
            }
            b'\n' => {
                self.mark(Defect::BareLineEnding);
                self.state = State::InLine;
                self.push(byte);
            }
            0 => {
                self.mark(Defect::Nul);
                self.state = State::InLine;
                self.push(byte);
            }
            _ => {
                self.state = State::InLine;
                self.push(byte);
            }
        }
    }

    /// Stores the LF that ends a line (its CR is stored already); `crlf`: the client sent CRLF.
    fn end_line(&mut self, crlf: bool) {
        self.push(b'\n');
        self.state = State::LineStart { crlf };
        self.line_length = 0;
    }

    /// A CR not followed by LF refuses the message in either mode.
    fn bare_cr(&mut self) {
        self.mark(match self.mode {
            BareLineEndings::Normalize => Defect::BareCr,
            BareLineEndings::Reject => Defect::BareLineEnding,
        });
    }

    fn push(&mut self, byte: u8) {
        self.size += 1;
        if byte != b'\r' && byte != b'\n' {
            self.line_length += 1;
            // The limit counts the CRLF too (RFC 5321 §4.5.3.1.6).
            if self.line_length + 2 > self.max_line {
                self.mark(Defect::LineTooLong);
            }
        }
        if self.size > self.max_size {
            self.mark(Defect::TooBig);
            return;
        }
        self.message.push(byte);
    }

    /// Remembers the first defect only, except that size trumps: an oversize message is always
    /// reported as such, because that is what the client can act on first.
    fn mark(&mut self, defect: Defect) {
        if self.defect.is_none() || defect == Defect::TooBig {
            self.defect = Some(defect);
        }
    }

    /// The message as received (after any prefix given at creation), or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, Defect> {
        match self.defect {
            Some(defect) => Err(defect),
            None => Ok(self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BareLineEndings::{Normalize, Reject};

    const MODES: [BareLineEndings; 2] = [Normalize, Reject];

    fn receive_in(mode: BareLineEndings, input: &[u8]) -> (Progress, Result<Vec<u8>, Defect>) {
        let mut receiver = DataReceiver::new(1 << 20, 1000, mode, Vec::new());
        let progress = receiver.feed(input);
        (progress, receiver.finish())
    }

    /// The same outcome in both modes (input with CRLF line endings only).
    fn receive(input: &[u8]) -> (Progress, Result<Vec<u8>, Defect>) {
        let normalized = receive_in(Normalize, input);
        assert_eq!(normalized, receive_in(Reject, input), "{input:?}");
        normalized
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_leaves_the_rest() {
        let input = b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
        let (progress, message) = receive(input);
        assert_eq!(progress, Progress::Complete(input.len() - 6));
        assert_eq!(message.unwrap(), b"Subject: x\r\n\r\nhello\r\n");
    }

    #[test]
    fn empty_message() {
        assert_eq!(receive(b".\r\n"), (Progress::Complete(3), Ok(Vec::new())));
    }

    #[test]
    fn removes_dot_stuffing() {
        let (_, message) = receive(b"..leading\r\n...\r\n.\r\n");
        assert_eq!(message.unwrap(), b".leading\r\n..\r\n");
    }

    #[test]
    fn works_byte_by_byte() {
        for (mode, input) in [
            (Reject, &b"a\r\n..b\r\n.\r\n"[..]),
            (Normalize, b"a\n..b\n\r\n.\r\n"),
        ] {
            let mut receiver = DataReceiver::new(100, 1000, mode, b"X: y\r\n".to_vec());
            for (index, byte) in input.iter().enumerate() {
                let progress = receiver.feed(std::slice::from_ref(byte));
                let expected = if index == input.len() - 1 {
                    Progress::Complete(1)
                } else {
                    Progress::NeedMore
                };
                assert_eq!(progress, expected);
            }
            let expected: &[u8] = match mode {
                Reject => b"X: y\r\na\r\n.b\r\n",
                Normalize => b"X: y\r\na\r\n.b\r\n\r\n",
            };
            assert_eq!(receiver.finish().unwrap(), expected);
        }
    }

    /// A body with a smuggling attempt after `body`, then the real end.
    fn smuggling_input(terminator: &[u8]) -> Vec<u8> {
        let mut input = b"body".to_vec();
        input.extend_from_slice(terminator);
        input.extend_from_slice(
            b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nsmuggled\r\n.\r\n",
        );
        input
    }

    #[test]
    fn smuggling_terminators_do_not_end_data_in_either_mode() {
        for mode in MODES {
            for terminator in SMUGGLING_TERMINATORS {
                let input = smuggling_input(terminator);
                let (progress, _) = receive_in(mode, &input);
                assert_eq!(
                    progress,
                    Progress::Complete(input.len()),
                    "{terminator:?} must not end DATA ({mode})"
                );
            }
        }
    }

    #[test]
    fn rejecting_refuses_every_smuggling_terminator() {
        for terminator in SMUGGLING_TERMINATORS {
            let expected = match terminator.contains(&0) {
                true => Defect::Nul,
                false => Defect::BareLineEnding,
            };
            let (_, message) = receive_in(Reject, &smuggling_input(terminator));
            assert_eq!(message, Err(expected), "{terminator:?}");
        }
    }

    /// Normalised, a dot line around a bare LF is an ordinary line "."; the text after it is
    /// content of the same message.
    #[test]
    fn normalizing_keeps_lf_dot_lines_as_content_and_refuses_bare_cr_and_nul() {
        let kept: &[u8] =
            b"body\r\n.\r\nMAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nsmuggled\r\n";
        for terminator in SMUGGLING_TERMINATORS {
            let expected = match terminator {
                b"\n.\n" | b"\n.\r\n" | b"\r\n.\n" => Ok(kept.to_vec()),
                t if t.contains(&0) => Err(Defect::Nul),
                _ => Err(Defect::BareCr),
            };
            let (_, message) = receive_in(Normalize, &smuggling_input(terminator));
            assert_eq!(message, expected, "{terminator:?}");
        }
    }

    #[test]
    fn normalizing_stores_bare_lf_as_crlf() {
        let input = b"Subject: x\n\nline\r\nmixed\n\r\n.\r\nQUIT\r\n";
        let (progress, message) = receive_in(Normalize, input);
        assert_eq!(progress, Progress::Complete(input.len() - 6));
        assert_eq!(message.unwrap(), b"Subject: x\r\n\r\nline\r\nmixed\r\n\r\n");
    }

    /// Only CRLF "." CRLF ends data: a dot line after a bare LF is content even when it ends
    /// with CRLF, and the one after it (now after a real CRLF) is the end.
    #[test]
    fn a_dot_line_after_a_bare_lf_is_content() {
        let (progress, message) = receive_in(Normalize, b"a\n.\r\n.\n.\r\n");
        assert_eq!(progress, Progress::NeedMore);
        drop(message);
        let input = b"a\n.\r\n.\r\n";
        let (progress, message) = receive_in(Normalize, input);
        assert_eq!(progress, Progress::Complete(input.len()));
        assert_eq!(message.unwrap(), b"a\r\n.\r\n");
    }

    /// RFC 5321 §4.5.2 applies to every line, however it ended: a leading dot with more after
    /// it is removed.
    #[test]
    fn normalizing_unstuffs_lines_after_a_bare_lf() {
        let (_, message) = receive_in(Normalize, b"x\n..y\n.z\n...\n\r\n.\r\n");
        assert_eq!(message.unwrap(), b"x\r\n.y\r\nz\r\n..\r\n\r\n");
    }

    #[test]
    fn a_nul_is_refused_in_both_modes() {
        assert_eq!(receive(b"a\x00b\r\n.\r\n").1, Err(Defect::Nul));
        assert_eq!(receive(b"\x00\r\n.\r\n").1, Err(Defect::Nul));
    }

    #[test]
    fn a_bare_cr_is_refused_in_both_modes() {
        for input in [&b"a\rb\r\n.\r\n"[..], b"a\r\r\n.\r\n", b".\rx\r\n.\r\n"] {
            assert_eq!(
                receive_in(Normalize, input).1,
                Err(Defect::BareCr),
                "{input:?}"
            );
            assert_eq!(
                receive_in(Reject, input).1,
                Err(Defect::BareLineEnding),
                "{input:?}"
            );
        }
    }

    #[test]
    fn oversize_is_reported_and_memory_stays_bounded() {
        let mut receiver = DataReceiver::new(10, 1000, Normalize, Vec::new());
        receiver.feed(&[b'a'; 500]);
        assert_eq!(receiver.feed(b"\r\n.\r\n"), Progress::Complete(5));
        assert_eq!(receiver.message.len(), 10);
        assert_eq!(receiver.finish(), Err(Defect::TooBig));
    }

    #[test]
    fn line_limit_counts_the_crlf() {
        let fits = [vec![b'a'; 998], b"\r\n.\r\n".to_vec()].concat();
        assert!(receive(&fits).1.is_ok());
        let too_long = [vec![b'a'; 999], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(receive(&too_long).1, Err(Defect::LineTooLong));
    }

    /// A line ended by a bare LF is stored with CRLF, so it gets the same limit.
    #[test]
    fn line_limit_applies_to_normalized_lines() {
        let fits = [vec![b'a'; 998], b"\n\r\n.\r\n".to_vec()].concat();
        assert!(receive_in(Normalize, &fits).1.is_ok());
        let too_long = [vec![b'a'; 999], b"\n\r\n.\r\n".to_vec()].concat();
        assert_eq!(receive_in(Normalize, &too_long).1, Err(Defect::LineTooLong));
        let second = [b"x\n".to_vec(), vec![b'a'; 999], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(receive_in(Normalize, &second).1, Err(Defect::LineTooLong));
    }

    /// What a normalised message becomes on the way out: the delivery client's line limit and
    /// dot-stuffing, then the final dot. It has CRLF line ends only, and read back by a strict
    /// receiver it ends exactly at that final dot and gives the stored message back: no "."
    /// line inside can end it downstream.
    #[test]
    fn normalized_messages_relay_unchanged_and_end_only_at_the_final_dot() {
        let mut inputs: Vec<Vec<u8>> = SMUGGLING_TERMINATORS
            .iter()
            .map(|terminator| smuggling_input(terminator))
            .collect();
        inputs.push(b".\n..\n.\r\n...x\n\n.\n\r\n.\r\n".to_vec());
        for input in inputs {
            let Ok(stored) = receive_in(Normalize, &input).1 else {
                continue;
            };
            let body = crate::delivery::client::limit_line_length(&stored);
            let mut wire = crate::client::dot_stuff(&body);
            wire.extend_from_slice(b".\r\n");
            // Only CRLF line ends: none of the lenient terminators can be read out of it.
            let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
            assert!(
                lines
                    .iter()
                    .all(|line| line.ends_with(b"\r\n") && !line[..line.len() - 2].contains(&b'\r')),
                "{wire:?}"
            );
            let (progress, relayed) = receive_in(Reject, &wire);
            assert_eq!(progress, Progress::Complete(wire.len()), "{wire:?}");
            assert_eq!(relayed.unwrap(), stored);
        }
    }
}
