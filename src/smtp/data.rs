//! The DATA receiver: removes dot-stuffing and finds the end of the message (RFC 5321 §4.1.1.4,
//! §4.5.2), in whatever pieces the bytes arrive.
//!
//! Only `<CRLF>.<CRLF>` ends a message. Every other line-ending variant (`<LF>.<LF>`,
//! `<CR>.<CR>`, `<LF>.<CRLF>`, a NUL before the dot, ...) is message content, and a message
//! that contains a bare CR, a bare LF or a NUL anywhere is refused whole after its real end. That
//! makes SMTP smuggling impossible in both directions: nothing a lenient server downstream might
//! read as an end of data can reach it, and nothing hidden in the body ever becomes a second
//! transaction here.

/// The line-ending variants around a dot that a lenient server might take for the end of DATA
/// (SMTP smuggling): none of them ends a message here, and each taints it. The tests of every
/// layer walk this one list.
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

/// Why a complete message cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    TooBig,
    BareLineEnding,
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    InLine,
    /// Saw CR inside a line.
    Cr,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line.
    DotCr,
}

pub struct DataReceiver {
    state: State,
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
    /// `max_size` bounds the unstuffed message, `max_line` the octets of one line with its CRLF.
    pub fn new(max_size: usize, max_line: usize, prefix: Vec<u8>) -> DataReceiver {
        DataReceiver {
            state: State::LineStart,
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
            (State::LineStart, b'.') => self.state = State::Dot,
            (State::Dot, b'\r') => self.state = State::DotCr,
            (State::DotCr, b'\n') => return true,
            (State::DotCr, _) => {
                // ".<CR>x": a bare CR; the dot was stuffing.
                self.push(b'\r');
                self.mark(Defect::BareLineEnding);
                self.state = State::InLine;
                self.content(byte);
            }
            // A stuffed dot: drop it and read the byte as the start of the line's content.
            (State::Dot, _) => self.content(byte),
            (State::Cr, b'\n') => {
                self.push(b'\n');
                self.state = State::LineStart;
                self.line_length = 0;
            }
            (State::Cr, _) => {
                self.mark(Defect::BareLineEnding);
                self.state = State::InLine;
                self.content(byte);
            }
            (State::LineStart | State::InLine, _) => self.content(byte),
        }
        false
    }

    /// A byte of line content (not part of a CRLF).
    fn content(&mut self, byte: u8) {
        match byte {
            b'\r' => self.state = State::Cr,
            b'\n' | 0 => {
                self.mark(Defect::BareLineEnding);
                self.state = State::InLine;
            }
            _ => self.state = State::InLine,
        }
        self.push(byte);
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

    fn receive(input: &[u8]) -> (Progress, Result<Vec<u8>, Defect>) {
        let mut receiver = DataReceiver::new(1 << 20, 1000, Vec::new());
        let progress = receiver.feed(input);
        (progress, receiver.finish())
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
        let input = b"a\r\n..b\r\n.\r\n";
        let mut receiver = DataReceiver::new(100, 1000, b"X: y\r\n".to_vec());
        for (index, byte) in input.iter().enumerate() {
            let progress = receiver.feed(std::slice::from_ref(byte));
            let expected = if index == input.len() - 1 {
                Progress::Complete(1)
            } else {
                Progress::NeedMore
            };
            assert_eq!(progress, expected);
        }
        assert_eq!(receiver.finish().unwrap(), b"X: y\r\na\r\n.b\r\n");
    }

    #[test]
    fn smuggling_terminators_do_not_end_data_and_taint_the_message() {
        for terminator in SMUGGLING_TERMINATORS {
            let mut input = b"body".to_vec();
            input.extend_from_slice(terminator);
            input.extend_from_slice(
                b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\nsmuggled\r\n.\r\n",
            );
            let (progress, message) = receive(&input);
            assert_eq!(
                progress,
                Progress::Complete(input.len()),
                "{terminator:?} must not end DATA"
            );
            assert_eq!(message, Err(Defect::BareLineEnding), "{terminator:?}");
        }
    }

    #[test]
    fn oversize_is_reported_and_memory_stays_bounded() {
        let mut receiver = DataReceiver::new(10, 1000, Vec::new());
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
}
