//! The DATA receiver: dot-unstuffing and end-of-data detection (RFC 5321 4.1.1.4, 4.5.2).
//!
//! The content ends only at `<CRLF>.<CRLF>`: the dot line must be the first line or follow a
//! line that ended in CRLF, and must itself end in CRLF. A line starting with `.` loses one dot.
//! A CR not followed by LF, or an LF not preceded by CR, is a bare line end (RFC 5321 2.3.8):
//! it is kept in the content, never ends a line for the purpose of end-of-data, and marks the
//! message as refused. So `<LF>.<LF>`, `<LF>.<CRLF>`, `<CR>.<CR>`, `<CRLF>.<LF>` and friends are
//! content, and whatever follows them (a smuggled `MAIL FROM`, CVE-2023-51766 and its family)
//! stays content too.
//!
//! The receiver is a byte-at-a-time state machine with a fast path over line content; it holds
//! no input of its own (at most one pending CR or dot is remembered in its state).

/// Where in the line structure the receiver is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// At the start of a line. `after_crlf`: the previous line ended in CRLF (or this is the
    /// first line), so a `.CRLF` line here ends the data.
    LineStart { after_crlf: bool },
    /// A `.` at the start of a line was read (and not emitted).
    Dot { after_crlf: bool },
    /// `.CR` at the start of a line after CRLF was read: LF ends the data.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR was read (not emitted): LF makes it a line end, anything else a bare CR.
    Cr,
}

/// Receives the content of one DATA command.
#[derive(Debug)]
pub(crate) struct DataReceiver {
    at: At,
    /// Octets of unstuffed content seen so far (counted also while not kept).
    size: u64,
    /// A bare CR or LF was seen.
    bare: bool,
    /// Whether content is appended to the output (false once the message was aborted).
    keep: bool,
}

impl DataReceiver {
    pub(crate) fn new() -> DataReceiver {
        DataReceiver {
            at: At::LineStart { after_crlf: true },
            size: 0,
            bare: false,
            keep: true,
        }
    }

    /// Unstuffed content octets so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Whether a bare CR or LF was seen.
    pub(crate) fn saw_bare_line_end(&self) -> bool {
        self.bare
    }

    /// Stops appending content (the message was aborted); size counting and end detection go
    /// on.
    pub(crate) fn discard(&mut self) {
        self.keep = false;
    }

    /// Consumes `input` until the end of data, appending unstuffed content to `out`. Returns
    /// how many input octets were consumed and whether the end of data was reached (the
    /// terminating `.CRLF` is consumed, and nothing after it).
    pub(crate) fn receive(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.at == At::Text {
                // Fast path: everything up to the next CR or LF is plain content.
                let rest = input.get(i..).unwrap_or_default();
                let n = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(rest.len());
                self.emit(rest.get(..n).unwrap_or_default(), out);
                i += n;
                // The CR or LF (if any) goes through `step` below.
            }
            let Some(&b) = input.get(i) else { break };
            i += 1;
            if self.step(b, out) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// One octet outside the fast path. Returns true at the end of data.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match self.at {
            At::LineStart { after_crlf } => match b {
                b'.' => self.at = At::Dot { after_crlf },
                _ => self.text(b, out),
            },
            At::Dot { after_crlf } => match b {
                // `.CR` after CRLF may be the end; after a bare line end the dot was stuffing.
                b'\r' if after_crlf => self.at = At::DotCr,
                // The dot was stuffing: it is dropped, the octet is content.
                _ => self.text(b, out),
            },
            At::DotCr => match b {
                b'\n' => return true,
                _ => {
                    // `.CR` + something else: the dot was stuffing, the CR is bare.
                    self.bare = true;
                    self.emit(b"\r", out);
                    self.text(b, out);
                }
            },
            At::Cr => match b {
                b'\n' => {
                    self.emit(b"\r\n", out);
                    self.at = At::LineStart { after_crlf: true };
                }
                _ => {
                    self.bare = true;
                    self.emit(b"\r", out);
                    self.text(b, out);
                }
            },
            At::Text => self.text(b, out),
        }
        false
    }

    /// An octet inside a line (or starting one that is not a dot line).
    fn text(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.at = At::Cr,
            b'\n' => {
                // Bare LF: content, and a new line for unstuffing, but never before end-of-data.
                self.bare = true;
                self.emit(b"\n", out);
                self.at = At::LineStart { after_crlf: false };
            }
            _ => {
                self.emit(&[b], out);
                self.at = At::Text;
            }
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if self.keep {
            out.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds all of `input` (in pieces of `step` octets); returns (content, consumed, ended, bare).
    fn run(input: &[u8], step: usize) -> (Vec<u8>, usize, bool, bool) {
        let mut rx = DataReceiver::new();
        let mut out = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(step.max(1)) {
            let (n, done) = rx.receive(piece, &mut out);
            consumed += n;
            if done {
                assert_eq!(rx.size(), out.len() as u64);
                return (out, consumed, true, rx.saw_bare_line_end());
            }
            assert_eq!(n, piece.len());
        }
        (out, consumed, false, rx.saw_bare_line_end())
    }

    #[test]
    fn ends_at_crlf_dot_crlf_and_unstuffs() {
        let table: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"Hi\r\n.\r\n", b"Hi\r\n"),
            (b"..\r\n.\r\n", b".\r\n"),
            (b"...x\r\n.\r\n", b"..x\r\n"),
            (b".x\r\n.\r\n", b"x\r\n"),
            (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (b"\r\n.\r\n", b"\r\n"),
            (b"a.\r\n.\r\n", b"a.\r\n"),
        ];
        for (input, content) in table {
            for step in 1..=input.len() {
                let (out, consumed, ended, bare) = run(input, step);
                assert!(ended, "{input:?}");
                assert!(!bare);
                assert_eq!(&out, content, "{input:?} step {step}");
                assert_eq!(consumed, input.len());
            }
        }
    }

    #[test]
    fn stops_right_after_the_terminator() {
        let mut rx = DataReceiver::new();
        let mut out = Vec::new();
        assert_eq!(rx.receive(b"x\r\n.\r\nQUIT\r\n", &mut out), (6, true));
        assert_eq!(out, b"x\r\n");
    }

    #[test]
    fn smuggling_sequences_are_content_and_flag_bare_line_ends() {
        for seq in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n.\r\r\n",
            b"\n.\r",
        ] {
            let mut input = b"Subject: x\r\n\r\nbody".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\n");
            let (out, _, ended, bare) = run(&input, 1);
            assert!(!ended, "{seq:?} ended the data");
            assert!(bare, "{seq:?} not flagged");
            assert!(
                out.windows(10).any(|w| w == b"MAIL FROM:"),
                "{seq:?}: the smuggled command is content"
            );
        }
    }

    #[test]
    fn a_bare_cr_before_crlf_dot_crlf_still_ends_the_data() {
        // The terminator itself is intact: the data ends, the bare CR refuses the message.
        let (out, _, ended, bare) = run(b"a\rb\r\n.\r\n", 1);
        assert!(ended);
        assert!(bare);
        assert_eq!(out, b"a\rb\r\n");
    }

    #[test]
    fn discard_keeps_counting() {
        let mut rx = DataReceiver::new();
        let mut out = Vec::new();
        rx.receive(b"abc", &mut out);
        rx.discard();
        let (_, done) = rx.receive(b"def\r\n..\r\n.\r\n", &mut out);
        assert!(done);
        assert_eq!(out, b"abc");
        assert_eq!(rx.size(), 3 + 5 + 3);
    }
}
