//! The on-disk record: a fixed prefix, a JSON header and the raw message.
//!
//! ```text
//! magic "PCM1" | header length u32 LE | body length u64 LE | CRC-32 of header+body u32 LE
//! header (JSON QueuedMessage) | body (the message bytes)
//! ```
//! A record is valid only when it is complete and its checksum matches, so a write torn by a
//! crash, or bytes damaged later, are recognised and never taken for a message.

use std::io::{self, Read};

use super::QueuedMessage;
use crate::smtp::Envelope;

pub const MAGIC: &[u8; 4] = b"PCM1";
pub const PREFIX_LEN: usize = 20;
/// Headers are small JSON objects; anything larger is corruption, not a header.
const MAX_HEADER_LEN: u32 = 1 << 20;

/// What a record's header holds, borrowed from the submission so that writing it copies
/// nothing; it serialises to the same JSON that [`QueuedMessage`] reads back.
#[derive(serde::Serialize)]
pub struct Header<'a> {
    pub id: &'a str,
    #[serde(flatten)]
    pub envelope: &'a Envelope,
    pub size: u64,
}

/// The prefix and header of a record; the body is written after it as it is, uncopied.
pub fn encode_head(header: &Header<'_>, body: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("an envelope always serialises");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(body);
    let mut head = Vec::with_capacity(PREFIX_LEN + header.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(header.len() as u32).to_le_bytes());
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc.finalize().to_le_bytes());
    head.extend_from_slice(&header);
    head
}

pub struct Decoded {
    pub header: QueuedMessage,
    pub body: Vec<u8>,
    /// Bytes the record takes on disk, prefix included.
    pub len: u64,
}

/// What is at a position in a segment.
pub enum Next {
    Record(Box<Decoded>),
    /// Nothing: the input ends here.
    End,
    /// The input ends inside a record: a write the crash interrupted.
    Torn,
    /// Complete bytes that are not a valid record (wrong magic, bad length, checksum mismatch).
    Corrupt,
}

/// Reads one record from the current position.
pub fn decode(reader: &mut impl Read) -> io::Result<Next> {
    let mut prefix = [0u8; PREFIX_LEN];
    match read_fully(reader, &mut prefix)? {
        0 => return Ok(Next::End),
        n if n < PREFIX_LEN => {
            return Ok(if prefix[..n.min(4)] == MAGIC[..n.min(4)] {
                Next::Torn
            } else {
                Next::Corrupt
            });
        }
        _ => {}
    }
    if &prefix[..4] != MAGIC {
        return Ok(Next::Corrupt);
    }
    let header_len = u32::from_le_bytes(prefix[4..8].try_into().expect("4 bytes"));
    let body_len = u64::from_le_bytes(prefix[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(prefix[16..20].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Ok(Next::Corrupt);
    }
    let mut header = vec![0u8; header_len as usize];
    if read_fully(reader, &mut header)? < header.len() {
        return Ok(Next::Torn);
    }
    let mut body = Vec::new();
    if reader.take(body_len).read_to_end(&mut body)? as u64 != body_len {
        return Ok(Next::Torn);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    hasher.update(&body);
    if hasher.finalize() != crc {
        return Ok(Next::Corrupt);
    }
    match serde_json::from_slice(&header) {
        Ok(header) => Ok(Next::Record(Box::new(Decoded {
            header,
            body,
            len: PREFIX_LEN as u64 + u64::from(header_len) + body_len,
        }))),
        Err(_) => Ok(Next::Corrupt),
    }
}

/// Fills as much of `buf` as the input has; returns how much.
fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
