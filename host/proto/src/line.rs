//! Line framing with a hard size limit, shared by every line-based protocol (SMTP, IMAP, POP3).
//!
//! ```text
//!   feed(bytes) ──► [ consumed | unread ........................ ]   buf
//!                               │
//!   next_line() ────────────────┘  Complete(line incl. LF)  the line is consumed
//!                                  TooLong                   no LF within `max_len`: the reader
//!                                                            drops bytes up to and including the
//!                                                            next LF, even those not fed yet
//!                                  Incomplete                wait for more input
//! ```
//!
//! Invariants:
//! - The reader never holds more than `max_len - 1` unread bytes of one line: once `max_len`
//!   bytes without an LF are buffered the line is reported [`Line::TooLong`] and everything up to
//!   the next LF is dropped as it arrives (constant memory), so after [`LineReader::next_line`]
//!   answers [`Line::Incomplete`] the buffer holds less than `max_len` bytes.
//! - A line is reported complete only with its LF; whether a CR precedes it is the protocol's
//!   business (see [`strip_line_end`]).
//! - Raw access ([`LineReader::buffered`] and [`LineReader::consume`]) is for what is not
//!   line-framed: SMTP DATA and BDAT octets, IMAP literals.

/// An over-long line is dropped as it arrives; once this many octets came without any line end
/// the protocols cut the peer off ([`LineReader::discarded_too_much`]).
pub const MAX_DISCARD: u64 = 1024 * 1024;

/// Buffer capacity kept while idle; more is freed once everything buffered has been read.
const RETAINED_CAPACITY: usize = 4096;

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// One complete line including its terminating LF (and the CR before it, if any). It has
    /// been consumed from the reader.
    Complete(&'a [u8]),
    /// The current line has reached the limit without an LF. Reported once per over-long line;
    /// the reader then discards everything up to and including the next LF.
    TooLong,
    /// No complete line is buffered (possibly because the rest of an over-long line is still
    /// being discarded).
    Incomplete,
}

/// A byte buffer that hands out LF-terminated lines of at most `max_len` bytes (LF included).
///
/// Its `Debug` output shows sizes only: buffered input may hold credentials.
pub struct LineReader {
    buf: Vec<u8>,
    /// `buf[..pos]` has been consumed; it is dropped on the next `feed`.
    pos: usize,
    max_len: usize,
    /// `Some(n)` while discarding the rest of an over-long line: `n` bytes dropped so far.
    discarding: Option<u64>,
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("unread", &self.len())
            .field("max_len", &self.max_len)
            .field("discarding", &self.discarding)
            .finish()
    }
}

impl LineReader {
    /// A reader for lines of at most `max_len` bytes including the line end (at least 1).
    pub fn new(max_len: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            pos: 0,
            max_len: max_len.max(1),
            discarding: None,
        }
    }

    /// The line length limit in bytes, line end included.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Changes the limit (at least 1) for the lines not read yet: a protocol whose lines differ
    /// in kind (POP3: a SASL response may be longer than a command) sets the limit for the line
    /// it expects before each [`LineReader::next_line`]. Lowering it below what is buffered is
    /// safe: the next `next_line` reports the buffered line [`Line::TooLong`].
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len.max(1);
    }

    /// Appends received bytes. While the rest of an over-long line is being discarded, bytes up
    /// to and including the next LF are dropped here and never buffered.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if let Some(dropped) = self.discarding {
            if !self.unread().is_empty() {
                // Cannot happen (discarding starts only when the unread line was dropped), but
                // keep the order of bytes correct if it ever did.
                self.compact();
                self.buf.extend_from_slice(bytes);
                self.drop_discarded();
                return;
            }
            match bytes.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    self.discarding = None;
                    bytes = bytes.get(lf + 1..).unwrap_or_default();
                }
                None => {
                    self.discarding = Some(dropped.saturating_add(bytes.len() as u64));
                    return;
                }
            }
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, or why there is none. See [`Line`].
    pub fn next_line(&mut self) -> Line<'_> {
        self.drop_discarded();
        if self.discarding.is_some() {
            return Line::Incomplete;
        }
        let start = self.pos;
        let unread = self.unread();
        let window = unread.get(..self.max_len).unwrap_or(unread);
        match window.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.pos = start + lf + 1;
                Line::Complete(self.buf.get(start..self.pos).unwrap_or_default())
            }
            None if unread.len() >= self.max_len => {
                self.discarding = Some(0);
                self.drop_discarded();
                Line::TooLong
            }
            None => {
                self.release_if_drained();
                Line::Incomplete
            }
        }
    }

    /// Frees the buffer when nothing unread is left and it grew beyond a command line's size
    /// (a read of a long literal or a message chunk): a session waiting for its client keeps
    /// no large buffer.
    fn release_if_drained(&mut self) {
        if self.unread().is_empty() && self.buf.capacity() > RETAINED_CAPACITY {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// How many bytes of the current over-long line have been dropped so far, while it is being
    /// discarded (a peer sending megabytes without a line end can be cut off on this).
    pub fn discarding(&self) -> Option<u64> {
        self.discarding
    }

    /// Whether more than [`MAX_DISCARD`] octets of the current over-long line were dropped:
    /// the peer is sending without line ends and is to be cut off.
    pub fn discarded_too_much(&self) -> bool {
        self.discarding.is_some_and(|n| n > MAX_DISCARD)
    }

    /// The unread bytes, for protocol parts that are not line-framed (DATA, BDAT, literals).
    pub fn buffered(&self) -> &[u8] {
        self.unread()
    }

    /// Marks `n` unread bytes as consumed (clamped to what is buffered).
    pub fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
    }

    /// Drops every unread byte and stops discarding (STARTTLS: nothing sent before the
    /// handshake may be taken as sent after it).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.discarding = None;
    }

    /// Number of unread bytes held.
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether no unread byte is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Memory held by the buffer (consumed bytes not yet dropped included), for tests that
    /// check the bound.
    pub fn capacity_used(&self) -> usize {
        self.buf.len()
    }

    /// Heap memory the buffer holds (its capacity).
    pub fn allocated(&self) -> usize {
        self.buf.capacity()
    }

    fn unread(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// While discarding, drops unread bytes through the next LF.
    fn drop_discarded(&mut self) {
        let Some(dropped) = self.discarding else {
            return;
        };
        let unread = self.unread();
        match unread.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.pos += lf + 1;
                self.discarding = None;
            }
            None => {
                let n = unread.len();
                self.pos += n;
                self.discarding = Some(dropped.saturating_add(n as u64));
            }
        }
        self.compact();
    }
}

/// The line without its line end: a trailing CRLF, or a bare LF (lenient, as most servers are
/// for command lines; message content is judged separately).
pub fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_reader_gives_its_large_buffer_back() {
        let mut r = LineReader::new(100);
        r.feed(&vec![b'x'; 64 * 1024]);
        r.consume(64 * 1024);
        assert!(r.allocated() >= 64 * 1024);
        assert_eq!(r.next_line(), Line::Incomplete);
        assert_eq!(r.allocated(), 0);
        // A partial line stays buffered, whatever its size.
        r.feed(b"abc");
        assert_eq!(r.next_line(), Line::Incomplete);
        assert_eq!(r.buffered(), b"abc");
    }

    fn lines(reader: &mut LineReader) -> Vec<Result<Vec<u8>, &'static str>> {
        let mut out = Vec::new();
        loop {
            match reader.next_line() {
                Line::Complete(l) => out.push(Ok(l.to_vec())),
                Line::TooLong => out.push(Err("too long")),
                Line::Incomplete => return out,
            }
        }
    }

    #[test]
    fn splits_lines_and_keeps_the_partial_one() {
        let mut r = LineReader::new(16);
        r.feed(b"NOOP\r\nRSET\nQU");
        assert_eq!(
            lines(&mut r),
            vec![Ok(b"NOOP\r\n".to_vec()), Ok(b"RSET\n".to_vec())]
        );
        assert_eq!(r.buffered(), b"QU");
        r.feed(b"IT\r\n");
        assert_eq!(lines(&mut r), vec![Ok(b"QUIT\r\n".to_vec())]);
        assert!(r.is_empty());
    }

    #[test]
    fn limit_counts_the_line_end() {
        // 8 bytes including CRLF fit a limit of 8; 9 do not.
        let mut r = LineReader::new(8);
        r.feed(b"123456\r\n1234567\r\nok\r\n");
        assert_eq!(
            lines(&mut r),
            vec![
                Ok(b"123456\r\n".to_vec()),
                Err("too long"),
                Ok(b"ok\r\n".to_vec())
            ]
        );
    }

    #[test]
    fn too_long_is_reported_before_the_line_ends_and_the_rest_is_dropped() {
        let mut r = LineReader::new(4);
        r.feed(b"abcdef");
        assert_eq!(lines(&mut r), vec![Err("too long")]);
        assert_eq!(r.discarding(), Some(6));
        assert_eq!(r.capacity_used(), 0);
        for _ in 0..1000 {
            r.feed(&[b'x'; 1000]);
            assert_eq!(lines(&mut r), vec![]);
            assert_eq!(r.capacity_used(), 0, "constant memory while discarding");
        }
        assert_eq!(r.discarding(), Some(1_000_006));
        r.feed(b"yy\nok\n");
        assert_eq!(lines(&mut r), vec![Ok(b"ok\n".to_vec())]);
        assert_eq!(r.discarding(), None);
    }

    #[test]
    fn too_long_line_ending_in_the_same_buffer() {
        let mut r = LineReader::new(4);
        r.feed(b"abcdefgh\r\nab\r\n");
        assert_eq!(lines(&mut r), vec![Err("too long"), Ok(b"ab\r\n".to_vec())]);
    }

    #[test]
    fn raw_access_consume_and_clear() {
        let mut r = LineReader::new(100);
        r.feed(b"BDAT 3\r\nabcNOOP\r\n");
        assert_eq!(lines(&mut r).len(), 2);
        let mut r = LineReader::new(100);
        r.feed(b"BDAT 3\r\nabcNOOP\r\n");
        assert_eq!(r.next_line(), Line::Complete(b"BDAT 3\r\n"));
        assert_eq!(r.buffered(), b"abcNOOP\r\n");
        r.consume(3);
        assert_eq!(r.next_line(), Line::Complete(b"NOOP\r\n"));
        r.consume(1000);
        assert!(r.is_empty());
        r.feed(b"STARTTLS\r\nRSET\r\n");
        assert_eq!(r.next_line(), Line::Complete(b"STARTTLS\r\n"));
        r.clear();
        assert_eq!(r.next_line(), Line::Incomplete);
    }

    #[test]
    fn memory_stays_below_limit_plus_one_feed() {
        let mut r = LineReader::new(512);
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let len = (seed % 700) as usize;
            let lf = seed.is_multiple_of(3);
            let mut chunk = vec![b'a'; len];
            if lf && len > 0 {
                chunk[len / 2] = b'\n';
            }
            r.feed(&chunk);
            assert!(r.capacity_used() <= 511 + len);
            lines(&mut r);
            assert!(r.len() < 512);
        }
    }

    #[test]
    fn the_limit_can_change_between_lines() {
        let mut r = LineReader::new(8);
        r.feed(b"0123456789\r\nabc\r\n0123456789abc");
        r.set_max_len(100);
        assert_eq!(r.next_line(), Line::Complete(b"0123456789\r\n"));
        r.set_max_len(8);
        assert_eq!(r.next_line(), Line::Complete(b"abc\r\n"));
        // Lowered below what is buffered: reported too long, then dropped up to the LF.
        assert_eq!(r.next_line(), Line::TooLong);
        r.feed(b"\nok\n");
        assert_eq!(r.next_line(), Line::Complete(b"ok\n"));
        r.set_max_len(0);
        assert_eq!(r.max_len(), 1);
    }

    #[test]
    fn strips_crlf_or_lf() {
        assert_eq!(strip_line_end(b"NOOP\r\n"), b"NOOP");
        assert_eq!(strip_line_end(b"NOOP\n"), b"NOOP");
        assert_eq!(strip_line_end(b"NOOP\r"), b"NOOP");
        assert_eq!(strip_line_end(b"NOOP\r\r\n"), b"NOOP\r");
    }
}
