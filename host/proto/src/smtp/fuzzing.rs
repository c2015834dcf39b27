//! The driver loop shared by the cargo-fuzz target `smtp_session` (fuzz/) and the crate's own
//! pseudo-random test: arbitrary bytes, fed in arbitrary pieces, into a [`Session`] whose
//! driver answers every decision. Only compiled for tests and with the `fuzzing` feature.
//!
//! [`run`] panics when an invariant breaks:
//! - the session never panics (implicitly);
//! - after [`Progress::NeedInput`] it holds less than one command line of unprocessed input;
//! - no [`Event::MessageChunk`] exceeds [`CHUNK_SIZE`], and no message hands out more than
//!   `max_message_size` octets;
//! - a driver that answers every decision never sees [`Progress::AwaitingAnswer`];
//! - every call makes progress (no endless event loop).

use wasmail_types::Reply;

use super::{CHUNK_SIZE, Event, Progress, Session, SessionConfig};
use crate::fuzzing::Input;

/// The first bytes of the input choose the configuration and the driver's behaviour; the
/// rest is the client's byte stream.
///
/// - byte 0: flags — no size limit, no error limit, STARTTLS offered, AUTH offered, AUTH needs
///   TLS, AUTH required, implicit TLS, 554 greeting;
/// - byte 1: the driver refuses a decision when `(n * 31 + byte) % 7 == 0` for the n-th
///   decision, if the low bit is set;
/// - byte 2, 3: the seed of the pieces the stream is cut into.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data, 4);
    let config = SessionConfig {
        hostname: "mx.example".to_owned(),
        max_line_length: 512,
        max_message_size: if input.flag(0) { 0 } else { 3000 },
        max_recipients: 3,
        max_errors: if input.flag(1) { 0 } else { 25 },
        starttls: input.flag(2),
        auth: input.flag(3),
        auth_needs_tls: input.flag(4),
        require_auth: input.flag(5),
        vrfy: false,
    };
    let refuse = input.byte(1);
    let max_message = config.max_message_size;
    let line_limit = config.max_line_length;

    let mut session = Session::new(config, input.flag(6));
    if input.flag(7) {
        session.refuse(Reply::fixed(554, (5, 3, 2), "No service"));
    } else {
        session.greet();
    }
    let mut decisions = 0u32;
    let mut message = 0u64;
    loop {
        input.step();
        match session.next() {
            Progress::NeedInput => {
                session.take_output();
                assert!(
                    session.buffered_input() < line_limit,
                    "{} octets buffered",
                    session.buffered_input()
                );
                let Some(piece) = input.next_read() else {
                    break;
                };
                session.feed(piece);
            }
            Progress::Close => break,
            Progress::AwaitingAnswer => panic!("AwaitingAnswer with every decision answered"),
            Progress::Event(event) => {
                let decision = matches!(
                    event,
                    Event::Helo { .. }
                        | Event::Auth { .. }
                        | Event::MailFrom { .. }
                        | Event::RcptTo { .. }
                        | Event::DataStart { .. }
                        | Event::MessageEnd { .. }
                );
                match &event {
                    Event::MessageChunk(bytes) => {
                        assert!(bytes.len() <= CHUNK_SIZE);
                        assert!(!bytes.is_empty());
                        message += bytes.len() as u64;
                        assert!(max_message == 0 || message <= max_message);
                    }
                    Event::DataStart { .. } | Event::MessageAborted { .. } | Event::Reset => {
                        message = 0;
                    }
                    Event::MessageEnd { size } => {
                        assert_eq!(*size, message);
                        message = 0;
                    }
                    Event::StartTls => {
                        session.take_output();
                        session.tls_started(input.flag(3), false);
                    }
                    _ => {}
                }
                if decision {
                    decisions += 1;
                    let refused = refuse & 1 == 1
                        && (decisions.wrapping_mul(31).wrapping_add(u32::from(refuse))) % 7 == 0;
                    if refused {
                        session.reply(Reply::fixed(550, (5, 7, 1), "Refused"));
                    } else if let Event::Auth { identity, .. } = event {
                        session.authenticated(identity);
                    } else if matches!(event, Event::MessageEnd { .. }) {
                        session.reply(Reply::fixed(250, (2, 0, 0), "Queued"));
                    } else {
                        session.accept();
                    }
                }
            }
        }
    }
}

/// Pieces of SMTP the generator strings together, so random inputs reach deep states.
const TOKENS: &[&[u8]] = &[
    b"EHLO client.example\r\n",
    b"HELO x\r\n",
    b"MAIL FROM:<a@b.example>\r\n",
    b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
    b"MAIL FROM:<\xc3\xa9@b.example> SMTPUTF8\r\n",
    b"MAIL FROM:<a@b.example> SIZE=999999999999999999999\r\n",
    b"RCPT TO:<c@d.example>\r\n",
    b"RCPT TO:<e@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;e@d.example\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 10\r\n",
    b"BDAT 5 LAST\r\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 18446744073709551615\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"VRFY x\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH LOGIN\r\n",
    b"dXNlcg==\r\n",
    b"*\r\n",
    b"Subject: hi\r\n\r\nbody\r\n",
    b"..stuffed\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r\n",
    b"\n",
    b"\r",
    b".",
    b"0123456789",
];

/// A pseudo-random client stream (with the 4 configuration bytes [`run`] reads first) from
/// `seed`: SMTP tokens, random bytes and occasional long runs ([`crate::fuzzing::generate`]).
pub fn generate(seed: u64) -> Vec<u8> {
    crate::fuzzing::generate(seed, 4, TOKENS)
}
