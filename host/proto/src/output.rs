//! The reply queue every session shares: replies are appended in order, the driver takes or
//! writes them ([`Output::take`], or [`Output::bytes`] then [`Output::consume`] for partial
//! writes), and an optional cap tells the session when so much waits that it must not add a
//! large reply (a listing, a message) before the driver has flushed.
//!
//! The sessions' public `take_output`, `output`, `consume_output` and `has_output` come from
//! [`output_methods!`], so every protocol offers the driver the same four calls.

/// Queued output octets, oldest first.
#[derive(Debug)]
pub(crate) struct Output {
    bytes: Vec<u8>,
    /// [`Output::is_full`] beyond this many octets.
    cap: usize,
}

impl Output {
    /// A queue without a cap: [`Output::is_full`] is never true.
    pub(crate) fn new() -> Output {
        Output::with_cap(usize::MAX)
    }

    /// A queue that [`Output::is_full`] once more than `cap` octets wait.
    pub(crate) fn with_cap(cap: usize) -> Output {
        Output {
            bytes: Vec::new(),
            cap,
        }
    }

    /// The buffer replies are written into (appended at the end).
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Everything queued; the queue is empty afterwards.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// Everything queued, left in the queue.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Drops the first `n` queued octets (all of them if fewer are queued).
    pub(crate) fn consume(&mut self, n: usize) {
        self.bytes.drain(..n.min(self.bytes.len()));
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether more than the cap waits to be written.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes.len() > self.cap
    }
}

/// The driver's four output calls, for a session type with a field `output: Output`. Extra
/// doc lines for `take_output` may be given as attributes.
macro_rules! output_methods {
    ($(#[$take_doc:meta])*) => {
        /// Output queued so far; the driver writes all of it.
        $(#[$take_doc])*
        pub fn take_output(&mut self) -> Vec<u8> {
            self.output.take()
        }

        /// Output queued so far, for a driver that writes part of it and then calls
        /// [`Session::consume_output`].
        pub fn output(&self) -> &[u8] {
            self.output.bytes()
        }

        /// Drops the first `n` queued output octets (those written).
        pub fn consume_output(&mut self, n: usize) {
            self.output.consume(n);
        }

        pub fn has_output(&self) -> bool {
            !self.output.is_empty()
        }
    };
}
pub(crate) use output_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_consume_and_the_cap() {
        let mut o = Output::with_cap(4);
        o.buf().extend_from_slice(b"abcd");
        assert!(!o.is_full());
        assert_eq!(o.len(), 4);
        o.buf().push(b'e');
        assert!(o.is_full());
        o.consume(2);
        assert_eq!(o.bytes(), b"cde");
        assert_eq!(o.take(), b"cde");
        assert!(o.is_empty());
        o.consume(usize::MAX);
        assert!(o.is_empty() && !Output::new().is_full());
    }
}
