//! The seam between protocol sessions and mail storage.
//!
//! IMAP, POP3 and SMTP delivery talk to `dyn MailStore` / `dyn Account` / `dyn Mailbox` only, so a
//! backend other than the filesystem one (say, metadata in PostgreSQL and blobs in object storage)
//! can serve several hosts without the protocols changing.
//!
//! Durability contract for every implementation: a method that adds or changes mail returns `Ok`
//! only once the change is on stable storage; UIDs are never reused within one UIDVALIDITY, even
//! across crashes.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::mail::{
    Changes, FlagOp, Flags, InternalDate, MailboxInfo, MailboxName, MailboxStatus, MessageMeta,
    ModSeq, SpecialUse, Uid, UidValidity, Usage,
};

/// What went wrong in a store operation.
#[non_exhaustive]
#[derive(Debug)]
pub enum StoreError {
    /// The account identifier cannot name an account (empty, too long, control characters).
    InvalidAccount(String),
    /// The mailbox name is not acceptable; the reason says why.
    InvalidName {
        name: String,
        reason: &'static str,
    },
    NoSuchMailbox(MailboxName),
    MailboxExists(MailboxName),
    /// The UID is not (or no longer) in the mailbox.
    NoSuchMessage(Uid),
    /// The operation is not allowed on this mailbox (e.g. deleting INBOX).
    NotPermitted(&'static str),
    /// Data on disk is not what the store wrote; the text names the file and the problem.
    Corrupt(String),
    /// The mailbox ran out of UIDs; it needs a new UIDVALIDITY.
    UidsExhausted,
    /// The operating system refused; `op` names what the store was doing.
    Io {
        op: &'static str,
        source: io::Error,
    },
}

impl StoreError {
    pub fn io(op: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| StoreError::Io { op, source }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::InvalidAccount(a) => write!(f, "invalid account name {a:?}"),
            StoreError::InvalidName { name, reason } => write!(f, "{reason}: {name:?}"),
            StoreError::NoSuchMailbox(n) => write!(f, "no mailbox named {:?}", n.as_str()),
            StoreError::MailboxExists(n) => write!(f, "mailbox {:?} already exists", n.as_str()),
            StoreError::NoSuchMessage(u) => write!(f, "no message with UID {u}"),
            StoreError::NotPermitted(why) => f.write_str(why),
            StoreError::Corrupt(what) => write!(f, "store data corrupt: {what}"),
            StoreError::UidsExhausted => f.write_str("mailbox has used all 2^32-1 UIDs"),
            StoreError::Io { op, source } => write!(f, "{op}: {source}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Random access to one stored message's octets, so that a header fetch or a byte range never
/// reads the whole message.
pub trait MessageContent: Send + Sync {
    fn size(&self) -> u64;
    /// Reads up to `buf.len()` octets at `offset`; returns 0 only at the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Reads `offset..offset+len`, clamped to the message.
    fn read_range(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size());
        let mut out = vec![0; end.saturating_sub(offset) as usize];
        let mut done = 0;
        while done < out.len() {
            let n = self.read_at(offset + done as u64, &mut out[done..])?;
            if n == 0 {
                out.truncate(done);
                break;
            }
            done += n;
        }
        Ok(out)
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        self.read_range(0, self.size())
    }

    /// The header section including the blank line that ends it (RFC 5322 2.1), read in chunks
    /// so the body is not read. A message without a blank line is all header.
    fn read_header(&self) -> io::Result<Vec<u8>> {
        const CHUNK: u64 = 8192;
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let chunk = self.read_range(offset, CHUNK)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            // Search from a little before the new chunk, for a terminator split across chunks.
            let from = out.len().saturating_sub(3);
            out.extend_from_slice(&chunk);
            offset += chunk.len() as u64;
            if let Some(end) = header_end(&out[from..]) {
                out.truncate(from + end);
                return Ok(out);
            }
        }
    }
}

/// A message held in memory (tests, embedders that receive mail from elsewhere).
impl MessageContent for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|o| self.get(o..))
            .unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// The length of the header section at the start of `bytes` (CRLF CRLF, or bare LF LF, ends it).
fn header_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            match bytes.get(i + 1) {
                Some(b'\n') => return Some(i + 2),
                Some(b'\r') if bytes.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Told when a mailbox changes (in this process at once; other processes' changes when the
/// mailbox next refreshes). Must be cheap and must not call back into the store.
pub trait ChangeListener: Send + Sync {
    fn changed(&self);
}

/// The outcome of a flag update.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct FlagUpdate {
    /// Messages whose flags are now as requested, with their new state (unchanged messages
    /// included, so a session can send FETCH responses for all of them).
    pub updated: Vec<MessageMeta>,
    /// Messages left alone because they changed after the `unchanged_since` modseq (RFC 7162).
    pub modified: Vec<Uid>,
}

/// UIDs given to copied or moved messages (RFC 4315 COPYUID).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CopyResult {
    pub uid_validity: UidValidity,
    /// (source UID, destination UID), ascending by source UID.
    pub pairs: Vec<(Uid, Uid)>,
}

/// Where one copy of a delivered message goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeliveryTarget {
    pub account: String,
    pub mailbox: MailboxName,
    pub flags: Flags,
}

/// Where a delivered copy landed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delivered {
    pub account: String,
    pub mailbox: MailboxName,
    pub uid_validity: UidValidity,
    pub uid: Uid,
}

/// One mailbox, shared by every session that has it open.
pub trait Mailbox: Send + Sync {
    fn name(&self) -> MailboxName;
    fn status(&self) -> StoreResult<MailboxStatus>;
    /// Every message, ascending by UID, from the index alone (no message file is read).
    fn messages(&self) -> StoreResult<Vec<MessageMeta>>;
    fn message(&self, uid: Uid) -> StoreResult<MessageMeta>;
    /// What changed after `since`; `None` if the store no longer remembers that far back (the
    /// caller then compares [`Mailbox::messages`] with what it knows).
    fn changes_since(&self, since: ModSeq) -> StoreResult<Option<Changes>>;
    /// Picks up changes made by other processes. Cheap when there are none.
    fn refresh(&self) -> StoreResult<()>;
    /// Marks every message as no longer recent and returns the UIDs that were (RFC 3501: exactly
    /// one session sees a message as \Recent).
    fn claim_recent(&self) -> StoreResult<Vec<Uid>>;
    fn subscribe(&self, listener: std::sync::Weak<dyn ChangeListener>);

    fn open_message(&self, uid: Uid) -> StoreResult<Box<dyn MessageContent>>;
    /// Stores a message read to its end from `content`; durable when it returns.
    fn append(
        &self,
        content: &mut dyn io::Read,
        flags: &Flags,
        internal_date: Option<InternalDate>,
    ) -> StoreResult<(UidValidity, Uid)>;
    fn store_flags(
        &self,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> StoreResult<FlagUpdate>;
    /// Removes messages flagged `\Deleted` (only those in `uids` if given); returns what went.
    fn expunge(&self, uids: Option<&[Uid]>) -> StoreResult<Vec<Uid>>;

    /// What a protocol derived from a message and asked the store to keep
    /// ([`Mailbox::set_cached`]; IMAP: its ENVELOPE and BODYSTRUCTURE), so it need not read and
    /// parse the message again. A cache: a store may forget (or never keep) it.
    fn cached(&self, _uid: Uid) -> Option<Arc<[u8]>> {
        None
    }

    /// Offers derived data for [`Mailbox::cached`]; the first value kept for a UID stays (a
    /// message never changes).
    fn set_cached(&self, _uid: Uid, _data: &[u8]) {}
}

/// One account: its folders and the operations that span two of them.
pub trait Account: Send + Sync {
    fn id(&self) -> &str;
    fn list(&self) -> StoreResult<Vec<MailboxInfo>>;
    fn create(&self, name: &MailboxName, special_use: Option<SpecialUse>) -> StoreResult<()>;
    /// Deletes a mailbox and its messages (not its children). INBOX cannot be deleted.
    fn delete(&self, name: &MailboxName) -> StoreResult<()>;
    /// Renames a mailbox with its children. Renaming INBOX moves its messages to a new mailbox
    /// and leaves INBOX empty (RFC 3501 6.3.5).
    fn rename(&self, from: &MailboxName, to: &MailboxName) -> StoreResult<()>;
    fn set_subscribed(&self, name: &MailboxName, subscribed: bool) -> StoreResult<()>;
    fn open(&self, name: &MailboxName) -> StoreResult<Arc<dyn Mailbox>>;
    fn copy(&self, from: &MailboxName, uids: &[Uid], to: &MailboxName) -> StoreResult<CopyResult>;
    /// Copy, then expunge from the source: atomic as the client sees it (RFC 6851).
    fn move_messages(
        &self,
        from: &MailboxName,
        uids: &[Uid],
        to: &MailboxName,
    ) -> StoreResult<CopyResult>;
    fn usage(&self) -> StoreResult<Usage>;
}

/// A message received but not yet delivered (the SMTP DATA phase writes it here, filters read
/// it, then it is delivered or dropped). Dropping it deletes it.
pub trait SpooledMessage: MessageContent {
    /// Writes `prefix` (trace headers) followed by the spooled octets into every target; returns
    /// when all copies are durable. On error no target keeps a copy.
    fn deliver(&self, prefix: &[u8], targets: &[DeliveryTarget]) -> StoreResult<Vec<Delivered>>;
}

/// Receives a message's octets as they arrive.
pub trait SpoolWriter: io::Write + Send {
    /// Makes the written octets a [`SpooledMessage`].
    fn finish(self: Box<Self>) -> StoreResult<Box<dyn SpooledMessage>>;
}

/// The whole store: accounts and the spool.
pub trait MailStore: Send + Sync {
    /// Opens an account, creating it (with the usual folders) on first use.
    fn account(&self, id: &str) -> StoreResult<Arc<dyn Account>>;
    fn spool(&self) -> StoreResult<Box<dyn SpoolWriter>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bytes(Vec<u8>);

    impl MessageContent for Bytes {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
            let rest = self.0.get(offset as usize..).unwrap_or(&[]);
            let n = rest.len().min(buf.len()).min(7); // short reads, as files may give
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        }
    }

    #[test]
    fn header_is_read_up_to_and_including_the_blank_line() {
        let m = Bytes(b"Subject: x\r\nFrom: y\r\n\r\nbody\r\n\r\nmore\r\n".to_vec());
        assert_eq!(m.read_header().unwrap(), b"Subject: x\r\nFrom: y\r\n\r\n");
        let lf = Bytes(b"A: 1\nB: 2\n\nbody\n".to_vec());
        assert_eq!(lf.read_header().unwrap(), b"A: 1\nB: 2\n\n");
        let no_body = Bytes(b"A: 1\r\n".to_vec());
        assert_eq!(no_body.read_header().unwrap(), b"A: 1\r\n");
        // The terminator straddles the 8 KiB chunk boundary.
        let mut long = vec![b'X'; 8190];
        long.extend_from_slice(b"\r\n\r\nbody");
        assert_eq!(Bytes(long.clone()).read_header().unwrap(), long[..8194]);
        assert_eq!(m.read_range(0, 7).unwrap(), b"Subject");
    }
}
