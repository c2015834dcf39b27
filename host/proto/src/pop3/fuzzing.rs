//! The driver loop shared by the cargo-fuzz target `pop3_session` (fuzz/) and the crate's own
//! pseudo-random test: arbitrary bytes, fed in arbitrary pieces, into a [`Session`] whose
//! driver answers every event from a fixed maildrop. Only compiled for tests and with the
//! `fuzzing` feature.
//!
//! [`run`] panics when an invariant breaks:
//! - the session never panics (implicitly);
//! - after [`Progress::NeedInput`] it holds less than one line of unprocessed input, and the
//!   output is whole CRLF-terminated lines;
//! - a driver that answers every event never sees [`Progress::AwaitingAnswer`];
//! - [`Event::Retrieve`] names an existing message; [`Event::Update`] lists existing message
//!   numbers, ascending, once each;
//! - the response to a Retrieve is `+OK <n> octets`, dot-stuffed CRLF lines and `.`, the
//!   lines un-stuffed are n octets, and for RETR of CRLF content they are the content;
//! - every call makes progress (no endless loop).

use std::sync::OnceLock;

use super::{
    Event, Expire, Listing, LoginFailure, MAX_AUTH_LINE, Progress, Session, SessionConfig,
};
use crate::fuzzing::Input;

/// The maildrop every login gets (the first `byte(4) % 7` of these), built once.
fn messages() -> &'static [Vec<u8>] {
    static MESSAGES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        let mut big = b"Subject: many lines\r\n\r\n".to_vec();
        for i in 0..200 {
            big.extend_from_slice(format!("line {i}\r\n.{i}\r\n").as_bytes());
        }
        vec![
            b"From: a@b.example\r\nSubject: one\r\n\r\nbody\r\n.\r\n..two\r\n".to_vec(),
            b"Subject: bare LF\n\n.dot\nline\n".to_vec(),
            Vec::new(),
            b"no header end\r\nno final line end".to_vec(),
            b"X: y\r\n\r\n.\r\n\r\n.\r\n".to_vec(),
            big,
            b"Subject: cr\r\n\r\na\rb\r\n\r".to_vec(),
        ]
    })
}

/// The first bytes of the input choose the configuration and the driver's behaviour; the rest
/// is the client's byte stream.
///
/// - byte 0: flags — no error limit, STLS offered, plaintext auth allowed, plaintext needs
///   TLS, implicit TLS, EXPIRE listed, LOGIN-DELAY listed, long lines (1000) allowed;
/// - byte 1: if the low bit is set, the driver refuses the n-th event when
///   `(n * 31 + byte) % 5 == 0` (login_failed with a reason chosen by n, message_unavailable,
///   updated(false));
/// - byte 2, 3: the seed of the pieces the stream is cut into;
/// - byte 4: the maildrop has `byte % 7` messages.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data, 5);
    let config = SessionConfig {
        hostname: "pop.example".to_owned(),
        max_line_length: if input.flag(7) { 1000 } else { 0 },
        max_errors: if input.flag(0) { 0 } else { 25 },
        stls: input.flag(1),
        plaintext_auth: input.flag(2),
        plaintext_needs_tls: input.flag(3),
        expire: input
            .flag(5)
            .then_some(Expire::Days(u32::from(input.byte(1)))),
        login_delay: input.flag(6).then_some(900),
        policy_varies_by_user: input.flag(6),
    };
    let line_limit = config.max_line_length.max(255);
    let refuse = input.byte(1);
    let contents = messages()
        .get(..usize::from(input.byte(4) % 7))
        .unwrap_or_default();
    let listing: Vec<Listing> = contents
        .iter()
        .enumerate()
        .map(|(i, c)| Listing {
            size: c.len() as u64,
            uidl: if i == 3 {
                "not valid\r\n".to_owned()
            } else {
                format!("uid-{i}")
            },
        })
        .collect();

    let mut session = Session::new(config, input.flag(4));
    session.greet();
    let mut events = 0u32;
    let mut pending_output: Vec<u8> = Vec::new();
    loop {
        input.step();
        match session.next() {
            Progress::NeedInput => {
                pending_output.extend(session.take_output());
                assert!(
                    pending_output.is_empty() || pending_output.ends_with(b"\r\n"),
                    "output ends inside a line"
                );
                pending_output.clear();
                let limit = if session.state_name() == "ExpectAuthResponse" {
                    line_limit.max(MAX_AUTH_LINE)
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
            Progress::Close => break,
            Progress::AwaitingAnswer => panic!("AwaitingAnswer with every event answered"),
            Progress::Event(event) => {
                events += 1;
                let refused = refuse & 1 == 1
                    && (events.wrapping_mul(31).wrapping_add(u32::from(refuse))) % 5 == 0;
                // A good driver flushes whenever it answers an event.
                pending_output.extend(session.take_output());
                match event {
                    Event::Login { user, .. } => {
                        if refused {
                            let why = match events % 4 {
                                0 => LoginFailure::Credentials,
                                1 => LoginFailure::InUse,
                                2 => LoginFailure::Temporary,
                                _ => LoginFailure::LoginDelay,
                            };
                            session.login_failed(why);
                        } else {
                            session.logged_in(user, listing.clone());
                        }
                    }
                    Event::Retrieve { number, lines } => {
                        let content = number
                            .checked_sub(1)
                            .and_then(|i| contents.get(i))
                            .expect("Retrieve names an existing message");
                        if refused {
                            session.message_unavailable();
                        } else {
                            session.message(content);
                            check_message_response(&session.take_output(), content, lines);
                        }
                    }
                    Event::Update { deleted } => {
                        assert!(deleted.windows(2).all(|w| w[0] < w[1]), "{deleted:?}");
                        assert!(deleted.iter().all(|&n| (1..=contents.len()).contains(&n)));
                        session.updated(!refused);
                    }
                    Event::StartTls => {
                        session.tls_started(input.flag(2) || input.flag(3), false);
                    }
                }
            }
        }
    }
}

/// Checks one RETR/TOP response (see the module docs).
fn check_message_response(out: &[u8], content: &[u8], lines: Option<u64>) {
    let status_end = out
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("a status line");
    let status = std::str::from_utf8(&out[..status_end]).expect("ASCII status");
    let octets: u64 = status
        .strip_prefix("+OK ")
        .and_then(|s| s.strip_suffix(" octets"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad status {status:?}"));
    let mut body = &out[status_end + 2..];
    let mut unstuffed = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("the response ends with a CRLF line");
        let line = &body[..end];
        body = &body[end + 2..];
        if line == b"." {
            assert!(body.is_empty(), "data after the terminating dot");
            break;
        }
        let line = match line.strip_prefix(b".") {
            Some(rest) => {
                assert!(rest.starts_with(b"."), "unstuffed dot line {line:?}");
                rest
            }
            None => line,
        };
        unstuffed.extend_from_slice(line);
        unstuffed.extend_from_slice(b"\r\n");
    }
    assert_eq!(unstuffed.len() as u64, octets, "{status}");
    let crlf_only = content.ends_with(b"\r\n")
        && content.iter().enumerate().all(|(i, &b)| match b {
            b'\n' => i > 0 && content[i - 1] == b'\r',
            b'\r' => content.get(i + 1) == Some(&b'\n'),
            _ => true,
        });
    if lines.is_none() && crlf_only {
        assert_eq!(unstuffed, content);
    }
}

/// Pieces of POP3 the generator strings together, so random inputs reach deep states.
const TOKENS: &[&[u8]] = &[
    b"USER mrose\r\n",
    b"PASS secret\r\n",
    b"PASS two words\r\n",
    b"AUTH\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH LOGIN dXNlcg==\r\n",
    b"AUTH CRAM-MD5\r\n",
    b"AHVzZXIAcGFzcw==\r\n",
    b"dXNlcg==\r\n",
    b"*\r\n",
    b"=\r\n",
    b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
    b"CAPA\r\n",
    b"STLS\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 1\r\n",
    b"LIST 0\r\n",
    b"UIDL\r\n",
    b"UIDL 4\r\n",
    b"RETR 1\r\n",
    b"RETR 2\r\n",
    b"RETR 6\r\n",
    b"RETR 99999999999999999999999\r\n",
    b"TOP 1 0\r\n",
    b"TOP 6 3\r\n",
    b"TOP 2 18446744073709551615\r\n",
    b"DELE 1\r\n",
    b"DELE 3\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"list  2 \r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"1",
    b".",
];

/// A pseudo-random client stream (with the 5 configuration bytes [`run`] reads first) from
/// `seed`: POP3 tokens, random bytes and occasional long runs ([`crate::fuzzing::generate`]).
pub fn generate(seed: u64) -> Vec<u8> {
    crate::fuzzing::generate(seed, 5, TOKENS)
}
