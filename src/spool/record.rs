//! The on-disk record: a fixed prefix, a JSON header and the raw message.
//!
//! ```text
//! magic "PCM1" | header length u32 LE | body length u64 LE | CRC-32 of header+body u32 LE
//! header (JSON QueuedMessage) | body (the message bytes)
//! ```
//! A record is valid only when it is complete and its checksum matches, so a write torn by a
//! crash is recognised and dropped at recovery.

use std::io::{self, Read};

use super::QueuedMessage;

pub const MAGIC: &[u8; 4] = b"PCM1";
pub const PREFIX_LEN: usize = 20;
/// Headers are small JSON objects; anything larger is corruption, not a header.
const MAX_HEADER_LEN: u32 = 1 << 20;

pub fn encode(header: &QueuedMessage, body: &[u8], out: &mut Vec<u8>) {
    let header = serde_json::to_vec(header).expect("a QueuedMessage always serialises");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(body);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
}

pub struct Decoded {
    pub header: QueuedMessage,
    pub body: Vec<u8>,
    /// Bytes the record takes on disk, prefix included.
    pub len: u64,
}

/// Reads one record. `Ok(None)` means the input ends (cleanly or with a torn or corrupt record);
/// everything from this point on is not a valid record.
pub fn decode(reader: &mut impl Read) -> io::Result<Option<Decoded>> {
    let mut prefix = [0u8; PREFIX_LEN];
    if !read_fully(reader, &mut prefix)? || &prefix[..4] != MAGIC {
        return Ok(None);
    }
    let header_len = u32::from_le_bytes(prefix[4..8].try_into().expect("4 bytes"));
    let body_len = u64::from_le_bytes(prefix[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(prefix[16..20].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Ok(None);
    }
    let mut header = vec![0u8; header_len as usize];
    if !read_fully(reader, &mut header)? {
        return Ok(None);
    }
    let mut body = Vec::new();
    if reader.take(body_len).read_to_end(&mut body)? as u64 != body_len {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    hasher.update(&body);
    if hasher.finalize() != crc {
        return Ok(None);
    }
    match serde_json::from_slice(&header) {
        Ok(header) => Ok(Some(Decoded {
            header,
            body,
            len: PREFIX_LEN as u64 + u64::from(header_len) + body_len,
        })),
        Err(_) => Ok(None),
    }
}

/// Fills `buf`; false if the input ended first.
fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
