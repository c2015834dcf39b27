//! The driver loops shared by the cargo-fuzz targets `imap_session`, `imap_command` and
//! `imap_mime` (fuzz/) and the crate's own pseudo-random tests. Only compiled for tests and
//! with the `fuzzing` feature.
//!
//! [`run`] panics when an invariant of the session breaks:
//! - the session never panics (implicitly) and every call makes progress;
//! - after [`Progress::NeedInput`] it holds less than one line of unprocessed input;
//! - everything it writes is a sequence of well-formed responses: the greeting, then responses
//!   imap-codec's own decoder accepts, each ending in CRLF;
//! - a driver that answers every event never sees [`Progress::AwaitingAnswer`];
//! - the octets of an APPEND message handed out are exactly as many as were announced.
//!
//! [`command_roundtrip`] checks the grammar: a command that parses, encoded again, parses to
//! the same command. [`mime`] checks the MIME code: any octets give a BODYSTRUCTURE, an
//! ENVELOPE and sections without panicking, and the FETCH response holding them encodes to
//! bytes imap-codec decodes back to the same response.

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::{MessageDataItem, Section};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::{CommandCodec, GreetingCodec, ResponseCodec};

use super::session::MAX_AUTH_LINE;
use super::{Command, Completion, Event, LoginFailure, Progress, Session, SessionConfig};
use crate::fuzzing::Input;

/// The first bytes choose the configuration and the driver's behaviour; the rest is the
/// client's byte stream.
///
/// - byte 0: flags — no error limit, STARTTLS offered, plaintext auth allowed, implicit TLS,
///   small limits (a 1000-octet line, 2000-octet command, 500-octet APPEND);
/// - byte 1: if the low bit is set, the driver refuses the n-th event when
///   `(n * 31 + byte) % 5 == 0` (login failed, command NO, APPEND refused);
/// - byte 2, 3: the seed of the pieces the stream is cut into.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data, 4);
    let small = input.flag(4);
    let config = SessionConfig {
        hostname: "imap.example".to_owned(),
        max_line_length: if small { 1000 } else { 8192 },
        max_command_size: if small { 2000 } else { 65536 },
        max_append_size: if small { 500 } else { 100_000 },
        max_errors: if input.flag(0) { 0 } else { 25 },
        starttls: input.flag(1),
        plaintext_auth: input.flag(2),
    };
    let line_limit = config.max_line_length.max(1000);
    let refuse = input.byte(1);
    let mut session = Session::new(config, input.flag(3));
    session.greet();
    let mut output = Output::default();
    let mut events = 0u32;
    let mut append: Option<(u32, u64)> = None;
    loop {
        input.step();
        match session.next() {
            Progress::NeedInput => {
                output.check(session.take_output());
                let limit = if session.state_name() == "ExpectSaslResponse" {
                    MAX_AUTH_LINE
                } else {
                    line_limit
                };
                assert!(
                    session.buffered_input() < limit,
                    "{} octets buffered in {}",
                    session.buffered_input(),
                    session.state_name()
                );
                let Some(piece) = input.next_read() else {
                    break;
                };
                session.feed(piece);
            }
            Progress::Close => {
                output.check(session.take_output());
                break;
            }
            Progress::AwaitingAnswer => panic!("AwaitingAnswer with every event answered"),
            Progress::Event(event) => {
                events += 1;
                let refused = refuse & 1 == 1
                    && (events.wrapping_mul(31).wrapping_add(u32::from(refuse))) % 5 == 0;
                output.check(session.take_output());
                match event {
                    Event::Login { user, .. } => {
                        if refused {
                            session.login_failed(LoginFailure::Credentials);
                        } else {
                            session.logged_in(user);
                        }
                    }
                    Event::StartTls => session.tls_started(true),
                    Event::Command { command, .. } => answer(&mut session, command, refused),
                    Event::AppendStart { size, .. } => {
                        if refused {
                            session.done(Completion::No, None, "refused");
                        } else {
                            append = Some((size, 0));
                            session.append_go();
                        }
                    }
                    Event::AppendData(chunk) => {
                        if let Some((_, got)) = append.as_mut() {
                            *got += chunk.len() as u64;
                        }
                    }
                    Event::AppendEnd => {
                        let (size, got) = append.take().expect("AppendEnd after AppendStart");
                        assert_eq!(u64::from(size), got, "APPEND octets");
                        session.done(Completion::Ok, None, "APPEND completed");
                    }
                }
            }
        }
    }
}

/// The driver's answer to a command: selection changes as a real driver makes them, IDLE
/// idles, everything else completes (with a little untagged data, to exercise encoding).
fn answer(session: &mut Session, command: Command, refused: bool) {
    if refused {
        session.done(Completion::No, None, "refused");
        return;
    }
    match command {
        Command::Imap(CommandBody::Select { .. }) => {
            session.respond(Data::Exists(3));
            session.selected(Some(false));
            session.done(Completion::Ok, None, "SELECT completed");
        }
        Command::Imap(CommandBody::Examine { .. }) => {
            session.selected(Some(true));
            session.done(Completion::Ok, None, "EXAMINE completed");
        }
        Command::Imap(CommandBody::Close | CommandBody::Unselect) => {
            session.selected(None);
            session.done(Completion::Ok, None, "closed");
        }
        Command::Imap(CommandBody::Idle) => session.idle(),
        _ => session.done(Completion::Ok, None, "completed"),
    }
}

/// The session's output so far, checked response by response.
#[derive(Default)]
struct Output {
    greeted: bool,
    pending: Vec<u8>,
}

impl Output {
    fn check(&mut self, bytes: Vec<u8>) {
        self.pending.extend(bytes);
        if !self.greeted && !self.pending.is_empty() {
            let (rest, _) = GreetingCodec::default()
                .decode(&self.pending)
                .unwrap_or_else(|e| panic!("bad greeting {e:?}"));
            let n = self.pending.len() - rest.len();
            self.pending.drain(..n);
            self.greeted = true;
        }
        while !self.pending.is_empty() {
            let rest = match ResponseCodec::default().decode(&self.pending) {
                Ok((rest, _)) => rest.len(),
                Err(e) => panic!(
                    "malformed response {e:?}: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            };
            let n = self.pending.len() - rest;
            self.pending.drain(..n);
        }
    }
}

/// A command that parses encodes to bytes that parse to the same command.
pub fn command_roundtrip(data: &[u8]) {
    let Ok((_, command)) = CommandCodec::default().decode(data) else {
        return;
    };
    let encoded = CommandCodec::default().encode(&command).dump();
    let (rest, again) = CommandCodec::default()
        .decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded command does not parse: {e:?} {encoded:?}"));
    assert!(rest.is_empty());
    assert_eq!(command, again);
}

/// Any octets as a message: structure, envelope and a few sections, in a FETCH response that
/// must encode and decode back to the same response.
pub fn mime(data: &[u8]) {
    let message = super::mime::MimeMessage::parse(data);
    let items = vec![
        MessageDataItem::BodyStructure(message.body_structure(true)),
        MessageDataItem::Body(message.body_structure(false)),
        MessageDataItem::Envelope(message.envelope()),
    ];
    for section in [
        None,
        Some(Section::Text(None)),
        Some(Section::Header(None)),
        Some(Section::Part(part(&[1]))),
        Some(Section::Part(part(&[1, 2]))),
        Some(Section::Mime(part(&[2]))),
        Some(Section::Text(Some(part(&[1])))),
    ] {
        let octets = message.section(section.as_ref());
        assert!(
            octets.len() <= data.len(),
            "a section is part of the message"
        );
        if section.is_none() {
            assert_eq!(octets.as_ref(), data, "BODY[] is the message");
        }
    }
    let Ok(items) = Vec1::try_from(items) else {
        return;
    };
    let response = Response::Data(Data::Fetch {
        seq: std::num::NonZeroU32::MIN,
        items,
    });
    let bytes = ResponseCodec::default().encode(&response).dump();
    // imap-codec's decoder stops at 8 levels of nested bodies (its own recursion guard), which
    // our structures may exceed: only a shallow structure must come back.
    if let Ok((rest, decoded)) = ResponseCodec::default().decode(&bytes) {
        assert!(rest.is_empty());
        assert_eq!(ResponseCodec::default().encode(&decoded).dump(), bytes);
    }
}

fn part(numbers: &[u32]) -> imap_codec::imap_types::fetch::Part {
    let numbers: Vec<std::num::NonZeroU32> = numbers
        .iter()
        .filter_map(|n| std::num::NonZeroU32::new(*n))
        .collect();
    imap_codec::imap_types::fetch::Part(Vec1::unvalidated(numbers))
}

/// Pieces of IMAP the generator strings together, so random inputs reach deep states.
const TOKENS: &[&[u8]] = &[
    b"a LOGIN alice secret\r\n",
    b"a LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
    b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
    b"b AUTHENTICATE PLAIN\r\n",
    b"b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    b"b AUTHENTICATE LOGIN\r\n",
    b"AGFsaWNlAHNlY3JldA==\r\n",
    b"*\r\n",
    b"c CAPABILITY\r\n",
    b"c STARTTLS\r\n",
    b"d SELECT INBOX\r\n",
    b"d EXAMINE \"Sent Items\"\r\n",
    b"e FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10>)\r\n",
    b"e UID FETCH 1:* ALL (CHANGEDSINCE 3)\r\n",
    b"f STORE 1 +FLAGS.SILENT (\\Seen $Junk)\r\n",
    b"f UID STORE 2 FLAGS (\\Deleted) (UNCHANGEDSINCE 9)\r\n",
    b"g SEARCH CHARSET UTF-8 TEXT {4}\r\n\xc3\xa9t\xc3\r\n",
    b"g UID SEARCH OR FROM x NOT SEEN\r\n",
    b"h APPEND INBOX (\\Seen) {10}\r\n",
    b"h APPEND INBOX {3+}\r\nabc\r\n",
    b"h APPEND Drafts \"05-Jan-2024 10:00:00 +0100\" {600+}\r\n",
    b"i IDLE\r\n",
    b"DONE\r\n",
    b"j CREATE x (USE (\\Drafts))\r\n",
    b"j LIST \"\" %\r\n",
    b"k ENABLE CONDSTORE\r\n",
    b"k ID NIL\r\n",
    b"l CLOSE\r\n",
    b"l UNSELECT\r\n",
    b"m LOGOUT\r\n",
    b"{99999999}\r\n",
    b"\r\n",
    b"\n",
    b" ",
    b"(",
    b"\"",
];

/// A pseudo-random client stream (with the 4 configuration bytes [`run`] reads first) from
/// `seed`: IMAP tokens, random bytes and occasional long runs.
pub fn generate(seed: u64) -> Vec<u8> {
    crate::fuzzing::generate(seed, 4, TOKENS)
}
