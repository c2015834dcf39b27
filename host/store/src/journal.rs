//! The per-mailbox index: an append-only journal of checksummed records.
//!
//! ```text
//! header  "WMIDX001" uidvalidity:u32 crc32(previous 12 bytes):u32
//! record  len:u32 crc32(payload):u32 payload[len]        (repeated; little-endian throughout)
//! ```
//!
//! Why a journal and not an embedded database: the in-memory state of a mailbox is rebuilt by one
//! sequential read, listing 100,000 messages' UIDs and flags is a walk over memory, several
//! processes (the server, `wasmail import`) can share a mailbox under `flock` by each tailing the
//! same file (Dovecot's `dovecot.index.log` works the same way), and group commit is one `write`
//! plus one `fdatasync` for any number of queued changes. A record is applied only if its length
//! and checksum are intact; a torn tail (a crash mid-append) is cut off at the last good record.
//! Nothing in a torn tail was ever acknowledged, because acknowledgement waits for the fsync that
//! follows the write.

use std::fmt;

use wasmail_types::mail::{Flags, InternalDate, ModSeq, Uid, UidValidity};

pub const MAGIC: &[u8; 8] = b"WMIDX001";
pub const HEADER_LEN: usize = 16;
const FRAME_LEN: usize = 8;
/// No record is larger than this; a length field above it means corruption, not a big record.
const MAX_RECORD: usize = 1 << 24;

/// One change to a mailbox, as journaled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Record {
    /// A message was added; its file's base name is `base`.
    Append {
        uid: Uid,
        modseq: ModSeq,
        internal_date: InternalDate,
        size: u64,
        flags: Flags,
        base: String,
    },
    /// These messages now have these flags.
    Flags {
        modseq: ModSeq,
        uid: Uid,
        flags: Flags,
    },
    /// These messages are gone.
    Expunge { modseq: ModSeq, uids: Vec<Uid> },
    /// Every UID below this has been reported as \Recent to some session.
    RecentClaimed { first_recent: u32 },
    /// Counters that messages alone cannot reconstruct; starts a compacted journal.
    Checkpoint {
        uid_next: u32,
        highest_modseq: ModSeq,
        first_recent: u32,
    },
}

const TAG_APPEND: u8 = 1;
const TAG_FLAGS: u8 = 2;
const TAG_EXPUNGE: u8 = 3;
const TAG_RECENT: u8 = 4;
const TAG_CHECKPOINT: u8 = 5;

pub fn encode_header(uid_validity: UidValidity) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&uid_validity.get().to_le_bytes());
    let crc = crc32fast::hash(&h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a journal could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum JournalError {
    BadHeader,
    BadRecord(&'static str),
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::BadHeader => f.write_str("index header is not a wasmail index"),
            JournalError::BadRecord(why) => write!(f, "index record malformed: {why}"),
        }
    }
}

pub fn decode_header(bytes: &[u8]) -> Result<UidValidity, JournalError> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(JournalError::BadHeader);
    }
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if crc != crc32fast::hash(&bytes[..12]) {
        return Err(JournalError::BadHeader);
    }
    let v = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    UidValidity::new(v).ok_or(JournalError::BadHeader)
}

/// Appends the framed encoding of `record` to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    let mut w = Writer(out);
    match record {
        Record::Append {
            uid,
            modseq,
            internal_date,
            size,
            flags,
            base,
        } => {
            w.u8(TAG_APPEND);
            w.u32(uid.get());
            w.u64(modseq.0);
            w.u64(internal_date.unix_seconds as u64);
            w.u16(internal_date.offset_minutes as u16);
            w.u64(*size);
            w.flags(flags);
            w.str16(base);
        }
        Record::Flags { modseq, uid, flags } => {
            w.u8(TAG_FLAGS);
            w.u64(modseq.0);
            w.u32(uid.get());
            w.flags(flags);
        }
        Record::Expunge { modseq, uids } => {
            w.u8(TAG_EXPUNGE);
            w.u64(modseq.0);
            w.u32(uids.len() as u32);
            for uid in uids {
                w.u32(uid.get());
            }
        }
        Record::RecentClaimed { first_recent } => {
            w.u8(TAG_RECENT);
            w.u32(*first_recent);
        }
        Record::Checkpoint {
            uid_next,
            highest_modseq,
            first_recent,
        } => {
            w.u8(TAG_CHECKPOINT);
            w.u32(*uid_next);
            w.u64(highest_modseq.0);
            w.u32(*first_recent);
        }
    }
    let payload_len = out.len() - start - FRAME_LEN;
    let crc = crc32fast::hash(&out[start + FRAME_LEN..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Outcome of decoding the next frame of a journal.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A record and the number of bytes it took.
    Record(Record, usize),
    /// The buffer ends inside a frame (or exactly at its end: `0` bytes left): more may come.
    Incomplete,
    /// The frame's length or checksum is wrong: a torn write or corruption.
    Torn,
}

pub fn decode_next(buf: &[u8]) -> Next {
    if buf.len() < FRAME_LEN {
        return Next::Incomplete;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_RECORD {
        return Next::Torn;
    }
    let Some(payload) = buf.get(FRAME_LEN..FRAME_LEN + len) else {
        return Next::Incomplete;
    };
    if crc32fast::hash(payload) != crc {
        return Next::Torn;
    }
    match decode_payload(payload) {
        Ok(record) => Next::Record(record, FRAME_LEN + len),
        // A checksummed record we cannot read was written by a newer version or is corrupt in a
        // way the checksum missed; either way nothing after it can be trusted.
        Err(_) => Next::Torn,
    }
}

fn decode_payload(payload: &[u8]) -> Result<Record, JournalError> {
    let mut r = Reader(payload);
    let record = match r.u8()? {
        TAG_APPEND => Record::Append {
            uid: r.uid()?,
            modseq: ModSeq(r.u64()?),
            internal_date: InternalDate {
                unix_seconds: r.u64()? as i64,
                offset_minutes: r.u16()? as i16,
            },
            size: r.u64()?,
            flags: r.flags()?,
            base: r.str16()?,
        },
        TAG_FLAGS => Record::Flags {
            modseq: ModSeq(r.u64()?),
            uid: r.uid()?,
            flags: r.flags()?,
        },
        TAG_EXPUNGE => {
            let modseq = ModSeq(r.u64()?);
            let n = r.u32()? as usize;
            if n > r.0.len() / 4 {
                return Err(JournalError::BadRecord("expunge count"));
            }
            let uids = (0..n).map(|_| r.uid()).collect::<Result<_, _>>()?;
            Record::Expunge { modseq, uids }
        }
        TAG_RECENT => Record::RecentClaimed {
            first_recent: r.u32()?,
        },
        TAG_CHECKPOINT => Record::Checkpoint {
            uid_next: r.u32()?,
            highest_modseq: ModSeq(r.u64()?),
            first_recent: r.u32()?,
        },
        _ => return Err(JournalError::BadRecord("unknown tag")),
    };
    if !r.0.is_empty() {
        return Err(JournalError::BadRecord("trailing bytes"));
    }
    Ok(record)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str16(&mut self, s: &str) {
        // Base names and keywords are bounded far below 64 KiB by construction.
        let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        self.u16(bytes.len() as u16);
        self.0.extend_from_slice(bytes);
    }
    fn flags(&mut self, flags: &Flags) {
        self.u8(flags.system_bits());
        self.u8(flags.keywords().len() as u8);
        for k in flags.keywords() {
            self.str16(k);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], JournalError> {
        if self.0.len() < n {
            return Err(JournalError::BadRecord("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, JournalError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, JournalError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, JournalError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn uid(&mut self) -> Result<Uid, JournalError> {
        Uid::new(self.u32()?).ok_or(JournalError::BadRecord("UID 0"))
    }
    fn str16(&mut self) -> Result<String, JournalError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| JournalError::BadRecord("utf-8"))
    }
    fn flags(&mut self) -> Result<Flags, JournalError> {
        let mut flags = Flags::from_bits(self.u8()?);
        for _ in 0..self.u8()? {
            let k = self.str16()?;
            if !flags.add_keyword(&k) {
                return Err(JournalError::BadRecord("keyword"));
            }
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmail_types::mail::SystemFlag;

    fn samples() -> Vec<Record> {
        let mut flags = Flags::from_system(&[SystemFlag::Seen, SystemFlag::Draft]);
        flags.add_keyword("$Forwarded");
        vec![
            Record::Append {
                uid: Uid::new(7).unwrap(),
                modseq: ModSeq(9),
                internal_date: InternalDate {
                    unix_seconds: -5,
                    offset_minutes: -480,
                },
                size: 1 << 40,
                flags: flags.clone(),
                base: "1.M2P3Q4.host,S=5".into(),
            },
            Record::Flags {
                modseq: ModSeq(10),
                uid: Uid::new(7).unwrap(),
                flags,
            },
            Record::Expunge {
                modseq: ModSeq(11),
                uids: vec![Uid::MIN, Uid::new(7).unwrap()],
            },
            Record::RecentClaimed { first_recent: 8 },
            Record::Checkpoint {
                uid_next: 8,
                highest_modseq: ModSeq(11),
                first_recent: 8,
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        for r in samples() {
            encode(&r, &mut buf);
        }
        let mut pos = 0;
        for expected in samples() {
            match decode_next(&buf[pos..]) {
                Next::Record(r, n) => {
                    assert_eq!(r, expected);
                    pos += n;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(decode_next(&buf[pos..]), Next::Incomplete);
    }

    #[test]
    fn every_truncation_is_incomplete_and_every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&samples()[0], &mut buf);
        for cut in 0..buf.len() {
            assert_eq!(decode_next(&buf[..cut]), Next::Incomplete, "cut at {cut}");
        }
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    !matches!(decode_next(&bad), Next::Record(..)),
                    "flip {byte}:{bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn header() {
        let v = UidValidity::new(1_700_000_000).unwrap();
        let h = encode_header(v);
        assert_eq!(decode_header(&h), Ok(v));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(decode_header(&bad), Err(JournalError::BadHeader));
    }
}
