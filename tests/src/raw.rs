//! The connection under the raw byte-exact clients (SMTP [`crate::smtp::Client`], POP3
//! [`crate::pop3::Pop3`], IMAP [`crate::imap::Imap`]): a `TcpStream` whose every read and write
//! is bounded by [`TIMEOUT`], the octets read but not yet taken, and what the three do alike
//! (send, read more, poll, read until the server closes, flood without a line end). Each client
//! holds one and derefs to it, so a test can write `c.stream`, `c.send(...)` or
//! `c.read_until_closed()` on any of them.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The bound on every read and write of the raw clients.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A connected socket with [`TIMEOUT`] read and write timeouts, and what arrived but was not
/// taken yet.
#[derive(Debug)]
pub struct RawConnection {
    pub stream: TcpStream,
    /// Octets read from `stream` that no response has taken yet.
    pub(crate) pending: Vec<u8>,
}

/// What [`RawConnection::flood_until_closed`] saw.
#[derive(Debug)]
pub struct Flood {
    /// The octets written.
    pub sent: usize,
    /// The write error that ended the flood, if one did (never a timeout).
    pub write_error: Option<std::io::Error>,
    /// What the server said before it closed (lossy UTF-8).
    pub said: String,
    /// How the connection ended: `closed` or `reset` (never `timeout`).
    pub how: &'static str,
}

impl RawConnection {
    /// Connects (within [`TIMEOUT`]) and sets the timeouts; panics on failure.
    pub fn connect(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
            .unwrap_or_else(|e| panic!("socket timeouts: {e}"));
        RawConnection {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes all of `bytes`; panics on failure.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed ({e}); unread: {:?}", self.lossy()));
    }

    /// What is pending, as text for a failure message (lossy, shortened).
    pub(crate) fn lossy(&self) -> String {
        shorten(&String::from_utf8_lossy(&self.pending), 2000)
    }

    /// Reads more from the socket into `pending`; panics on close, timeout or error, naming
    /// what was `wanted`.
    pub(crate) fn fill(&mut self, wanted: &str) {
        let mut buf = vec![0u8; 256 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("connection closed before {wanted}; got {:?}", self.lossy()),
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "no {wanted} within {TIMEOUT:?} (server hung?); got {:?}",
                    self.lossy()
                )
            }
            Err(e) => panic!("read failed: {e}; got {:?}", self.lossy()),
        }
    }

    /// Whether more arrives within `wait` when nothing was asked: `data` (kept for the next
    /// response), `closed`, or `quiet`.
    pub fn poll(&mut self, wait: Duration) -> &'static str {
        if !self.pending.is_empty() {
            return "data";
        }
        let set = |s: &TcpStream, t| {
            s.set_read_timeout(Some(t))
                .unwrap_or_else(|e| panic!("socket timeout: {e}"));
        };
        set(&self.stream, wait);
        let mut buf = [0u8; 64 * 1024];
        let what = match self.stream.read(&mut buf) {
            Ok(0) => "closed",
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                "data"
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => "quiet",
            Err(_) => "closed",
        };
        set(&self.stream, TIMEOUT);
        what
    }

    /// Reads until the server closes (or errors); returns what arrived and how it ended
    /// (`closed`, `timeout` or `reset`). Bounded by [`TIMEOUT`].
    pub fn read_until_closed(&mut self) -> (Vec<u8>, &'static str) {
        let mut out = std::mem::take(&mut self.pending);
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (out, "closed"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return (out, "timeout");
                }
                Err(_) => return (out, "reset"),
            }
        }
    }

    /// After the last command (`after`, e.g. `QUIT`) was answered: nothing more arrives and
    /// the server closes the connection.
    pub fn assert_closed_after(&mut self, after: &str) {
        let (rest, how) = self.read_until_closed();
        assert!(
            rest.is_empty(),
            "after {after}: {:?}",
            String::from_utf8_lossy(&rest)
        );
        assert_eq!(how, "closed", "the server closes after {after}");
    }

    /// Writes 64 KiB blocks of `A` (no line end) until `limit` octets are written or a write
    /// fails; returns what was written and the write error, if one came. A write that timed out
    /// fails the test: the server stopped reading without closing.
    pub fn flood_without_line_end(&mut self, limit: usize) -> (usize, Option<std::io::Error>) {
        let block = vec![b'A'; 64 * 1024];
        let mut sent = 0usize;
        while sent < limit {
            match self.stream.write(&block) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) => {
                    assert!(
                        !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                        "the server stopped reading without closing (a write timed out after \
                         {sent} octets)"
                    );
                    return (sent, Some(e));
                }
            }
        }
        (sent, None)
    }

    /// [`RawConnection::flood_without_line_end`], then reads until the server closes, which it
    /// must do (no timeout); returns what happened.
    pub fn flood_until_closed(&mut self, limit: usize) -> Flood {
        let (sent, write_error) = self.flood_without_line_end(limit);
        let (rest, how) = self.read_until_closed();
        let said = String::from_utf8_lossy(&rest).into_owned();
        assert_ne!(how, "timeout", "still open after {sent} octets: {said:?}");
        Flood {
            sent,
            write_error,
            said,
            how,
        }
    }
}

/// `s` cut to at most `max` octets (on a character boundary), saying how long it was.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...[{} octets]", &s[..end], s.len())
}

/// `Deref` and `DerefMut` to the [`RawConnection`] in a client's `raw` field.
macro_rules! deref_to_raw {
    ($client:ty) => {
        impl std::ops::Deref for $client {
            type Target = $crate::raw::RawConnection;

            fn deref(&self) -> &$crate::raw::RawConnection {
                &self.raw
            }
        }

        impl std::ops::DerefMut for $client {
            fn deref_mut(&mut self) -> &mut $crate::raw::RawConnection {
                &mut self.raw
            }
        }
    };
}
pub(crate) use deref_to_raw;
