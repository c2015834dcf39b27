//! The transcript harness both protocols' tests share: a scripted driver loop, `C:`/`S:`
//! scripts and the split-point property.
//!
//! Script lines: `C: text` is sent with CRLF appended; `R: text` is sent raw (escapes `\r`,
//! `\n`, `\\` are decoded in both); consecutive client lines are fed as ONE read (pipelining).
//! `S: text` lines are the replies expected, all of which must come out — and nothing more —
//! before the session next asks for input (or closes).
//!
//! Each protocol's `Harness` holds a [`Transcript`] (it derefs to it, so tests read
//! `h.session`, `h.events`, `h.output`, `h.closed`) and implements [`Driver::answer`]; the
//! loop, the scripts and the checks are [`Driver`]'s.

use std::fmt::Debug;

use crate::Progress;
use crate::fuzzing::Xorshift32;

/// The driver's side of a session: what the harness loop calls.
pub(crate) trait Session {
    type Event: Debug;
    fn next(&mut self) -> Progress<Self::Event>;
    fn feed(&mut self, bytes: &[u8]);
    fn take_output(&mut self) -> Vec<u8>;
    fn buffered_input(&self) -> usize;
}

macro_rules! session {
    ($session:ty, $event:ty) => {
        impl Session for $session {
            type Event = $event;
            fn next(&mut self) -> Progress<$event> {
                <$session>::next(self)
            }
            fn feed(&mut self, bytes: &[u8]) {
                <$session>::feed(self, bytes)
            }
            fn take_output(&mut self) -> Vec<u8> {
                <$session>::take_output(self)
            }
            fn buffered_input(&self) -> usize {
                <$session>::buffered_input(self)
            }
        }
    };
}
session!(crate::smtp::Session, crate::smtp::Event);
session!(crate::pop3::Session, crate::pop3::Event);
session!(crate::imap::Session, crate::imap::Event);

/// A session and what came out of it.
pub(crate) struct Transcript<S> {
    pub(crate) session: S,
    /// Every event in order (Debug form, as the harness records them).
    pub(crate) events: Vec<String>,
    pub(crate) closed: bool,
    /// Output not yet checked.
    pub(crate) output: Vec<u8>,
}

impl<S: Session> Transcript<S> {
    pub(crate) fn new(session: S) -> Transcript<S> {
        Transcript {
            session,
            events: Vec::new(),
            closed: false,
            output: Vec::new(),
        }
    }

    /// Moves the session's queued output to `output` (a driver flushing).
    pub(crate) fn flush(&mut self) {
        let out = self.session.take_output();
        self.output.extend(out);
    }

    pub(crate) fn has_event(&self, prefix: &str) -> bool {
        self.events.iter().any(|e| e.starts_with(prefix))
    }
}

/// A scripted driver: answers every event its own way; the loop and the scripts are shared.
pub(crate) trait Driver: Sized {
    type Session: Session;

    fn transcript(&mut self) -> &mut Transcript<Self::Session>;

    /// Answers (and records) one event.
    fn answer(&mut self, event: <Self::Session as Session>::Event);

    /// Runs the session until it needs input or closes, answering events.
    fn drive(&mut self) {
        loop {
            match self.transcript().session.next() {
                Progress::NeedInput => break,
                Progress::Close => {
                    self.transcript().closed = true;
                    break;
                }
                Progress::AwaitingAnswer => panic!("AwaitingAnswer in a driver that answers"),
                Progress::Event(event) => self.answer(event),
            }
        }
        self.transcript().flush();
    }

    fn feed(&mut self, bytes: &[u8]) {
        let t = self.transcript();
        assert!(!t.closed, "input after Close");
        t.session.feed(bytes);
        self.drive();
    }

    /// Drives, then feeds the pieces one read each until the session closes.
    fn feed_pieces(&mut self, pieces: &[&[u8]]) {
        self.drive();
        for p in pieces {
            if !self.transcript().closed {
                self.feed(p);
            }
        }
    }

    /// Feeds megabytes without a line end, 64 KiB a read, until the session closes (it must
    /// do so within 2 MiB and never buffer `limit` octets); returns the output after what the
    /// driver had before.
    fn flood_without_line_end(&mut self, limit: usize) -> String {
        self.drive();
        self.transcript().output.clear();
        let mut sent = 0;
        while !self.transcript().closed {
            self.feed(&[b'z'; 65536]);
            sent += 65536;
            assert!(self.transcript().session.buffered_input() < limit);
            assert!(sent < 2 << 20, "still open after {sent} octets");
        }
        String::from_utf8_lossy(&self.transcript().output).into_owned()
    }

    /// Plays a script (see the module docs) and checks every reply block.
    fn script(&mut self, script: &str) -> &mut Self {
        self.drive();
        let mut client: Vec<u8> = Vec::new();
        let mut expected = String::new();
        for line in script
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.is_empty())
        {
            let (tag, text) = line.split_at(2.min(line.len()));
            let text = text.strip_prefix(' ').unwrap_or(text);
            match tag {
                "C:" | "R:" => {
                    if !expected.is_empty() {
                        self.expect(&expected);
                        expected.clear();
                    }
                    client.extend(unescape(text));
                    if tag == "C:" {
                        client.extend_from_slice(b"\r\n");
                    }
                }
                "S:" => {
                    self.send_client(&mut client);
                    expected.push_str(text);
                    expected.push_str("\r\n");
                }
                _ => panic!("bad script line {line:?}"),
            }
        }
        self.send_client(&mut client);
        self.expect(&expected);
        self
    }

    /// Feeds a block of client lines as one read; replies to earlier blocks must have been
    /// checked already.
    fn send_client(&mut self, client: &mut Vec<u8>) {
        if !client.is_empty() {
            assert_eq!(
                String::from_utf8_lossy(&self.transcript().output),
                "",
                "unexpected output before client block"
            );
            self.feed(client);
            client.clear();
        }
    }

    fn expect(&mut self, expected: &str) {
        let t = self.transcript();
        let got = String::from_utf8_lossy(&std::mem::take(&mut t.output)).into_owned();
        assert_eq!(got, expected, "\nevents so far: {:#?}", t.events);
    }
}

/// `\r`, `\n` and `\\` decoded.
pub(crate) fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('r') => out.push(b'\r'),
                Some('n') => out.push(b'\n'),
                Some('\\') => out.push(b'\\'),
                other => panic!("bad escape {other:?}"),
            }
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// The split-point property: `stream` cut in two at every possible point, into single
/// octets, and 200 times into pseudo-random pieces of 0..20 octets, gives `whole` (what
/// `run` gave for the stream in one piece).
pub(crate) fn assert_any_split_gives<R: PartialEq + Debug>(
    stream: &[u8],
    run: impl Fn(&[&[u8]]) -> R,
    whole: &R,
) {
    for i in 0..=stream.len() {
        let (a, b) = stream.split_at(i);
        assert_eq!(&run(&[a, b]), whole, "split at {i}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(&run(&bytes), whole, "one octet at a time");
    let mut rng = Xorshift32::new(7);
    for _ in 0..200 {
        let mut pieces = Vec::new();
        let mut rest: &[u8] = stream;
        while !rest.is_empty() {
            let (p, r) = rest.split_at((rng.next_u32() as usize % 20).min(rest.len()));
            pieces.push(p);
            rest = r;
        }
        assert_eq!(&run(&pieces), whole);
    }
}

/// `Deref` from a harness to its [`Transcript`] field `t`.
macro_rules! deref_transcript {
    ($harness:ty, $session:ty) => {
        impl std::ops::Deref for $harness {
            type Target = $crate::testing::Transcript<$session>;
            fn deref(&self) -> &Self::Target {
                &self.t
            }
        }
        impl std::ops::DerefMut for $harness {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.t
            }
        }
    };
}
pub(crate) use deref_transcript;
