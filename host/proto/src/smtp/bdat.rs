//! The BDAT receiver (RFC 3030 CHUNKING): exactly the announced number of octets, taken raw.
//!
//! BDAT content is binary-clean and counted, so there is no dot handling and nothing to
//! smuggle: bare CR and LF are content like any other octet. The octets of a chunk may arrive
//! in the same read as the BDAT line and be followed by pipelined commands; the receiver takes
//! exactly its count and leaves the rest for the command framer.
//!
//! A chunk the session cannot accept (no transaction, no recipients, over the size limit, a
//! refused first chunk) is still consumed — otherwise its octets would be read as commands —
//! and its refusal is sent once it has been.

use wasmail_types::Reply;

/// What happens to the octets of the chunk being received.
#[derive(Debug)]
pub(crate) enum Fate {
    /// Part of the message: handed to the driver as chunks.
    Keep,
    /// Dropped; `reply` goes out once the last octet has been consumed.
    Discard {
        reply: Reply,
        /// Whether the reply counts as a client error.
        error: bool,
        /// What becomes of the transaction afterwards.
        then: AfterDiscard,
    },
}

/// The transaction after a discarded chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterDiscard {
    /// Unchanged (no transaction, or no recipients yet).
    Unchanged,
    /// Dropped; `announce`: emit [`super::Event::Reset`] (the session decided, not the driver).
    Drop { announce: bool },
}

/// One BDAT chunk being received.
#[derive(Debug)]
pub(crate) struct ChunkReceiver {
    remaining: u64,
    size: u64,
    last: bool,
    pub(crate) fate: Fate,
}

impl ChunkReceiver {
    pub(crate) fn new(size: u64, last: bool, fate: Fate) -> ChunkReceiver {
        ChunkReceiver {
            remaining: size,
            size,
            last,
            fate,
        }
    }

    /// How many of `available` octets belong to this chunk (and are consumed now).
    pub(crate) fn take(&mut self, available: usize) -> usize {
        let n = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
        self.remaining -= n as u64;
        n
    }

    /// Whether every octet of the chunk has been consumed.
    pub(crate) fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// The announced size.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Whether this is the `LAST` chunk.
    pub(crate) fn is_last(&self) -> bool {
        self.last
    }
}

/// Whether a message of `so_far` octets plus a chunk of `chunk` octets stays within `max`
/// (0 = no limit). An overflowing sum exceeds every limit.
pub(crate) fn fits(so_far: u64, chunk: u64, max: u64) -> bool {
    match so_far.checked_add(chunk) {
        Some(total) => max == 0 || total <= max,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_exactly_the_announced_octets() {
        let mut rx = ChunkReceiver::new(10, false, Fate::Keep);
        assert_eq!(rx.take(4), 4);
        assert!(!rx.is_complete());
        assert_eq!(rx.take(100), 6);
        assert!(rx.is_complete());
        assert_eq!(rx.take(100), 0);
        assert_eq!(rx.size(), 10);
        assert!(!rx.is_last());
    }

    #[test]
    fn huge_announcements_do_not_overflow() {
        let mut rx = ChunkReceiver::new(u64::MAX, true, Fate::Keep);
        assert_eq!(rx.take(usize::MAX), usize::MAX);
        assert!(!rx.is_complete() || usize::BITS == 64);
        assert!(fits(0, u64::MAX, 0) && !fits(1, u64::MAX, 0));
        assert!(fits(5, 5, 10) && !fits(5, 6, 10) && !fits(u64::MAX, 1, 0));
    }
}
