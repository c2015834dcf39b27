//! Sans-I/O protocol sessions for wasmail: SMTP, IMAP and POP3.
//!
//! A session never touches a socket, a file or a clock. The driver (a thin tokio task in the
//! `wasmail` crate, or a test, or a fuzzer) moves the bytes:
//!
//! ```text
//!   socket ──read──► driver ──feed(bytes)──► Session ──next()──► Progress
//!                                              │                    │
//!                                   line framing with limits        ├─ NeedInput: flush output, read more
//!                                   (line::LineReader), parsing,    ├─ Event: a decision (SMTP: HELO,
//!                                   state machine                   │   MAIL, RCPT, DATA, AUTH, end of
//!                                              ▲                    │   message; POP3: login, retrieve,
//!                                              │                    │   update) or information
//!                                              │                    │   (message chunk, STARTTLS/STLS)
//!        driver answers: accept() / reply(r) / authenticated(a) ◄───┘   ... filters, store, plugins
//!                        logged_in(..) / message(..) / updated(..)
//!                                              │
//!   socket ◄─write── driver ◄──take_output()── replies queued in order
//! ```
//!
//! The session decides everything the protocol decides (syntax, command order, limits, the
//! replies for those); the driver decides everything policy decides (filters, recipients,
//! authentication, delivery, the maildrop) and answers each decision event. Because the session
//! is a plain value, every exchange can be replayed byte for byte in tests and fed arbitrary
//! input by a fuzzer.
//!
//! - [`line`](mod@line): the line framer every line-based protocol shares (hard size limit, constant
//!   memory for over-long lines).
//! - [`sasl`]: the SASL PLAIN and LOGIN exchanges SMTP AUTH and POP3 AUTH share.
//! - [`smtp`]: the SMTP server session.
//! - [`pop3`]: the POP3 server session.
//! - [`imap`]: the IMAP server session and what it computes from messages (FETCH, SEARCH).

pub mod imap;
pub mod line;
mod output;
pub mod pop3;
pub mod sasl;
pub mod smtp;

/// Transcript and split-point test harness both protocols' tests share.
#[cfg(test)]
mod testing;

/// Helpers the protocols' fuzz drivers share (pseudo-random generators). Only compiled for
/// tests and with the `fuzzing` feature.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

/// What a session needs from the driver next (`smtp::Progress`, `pop3::Progress`: the same
/// loop with each protocol's events).
#[derive(Debug)]
pub enum Progress<E> {
    /// Input exhausted: the driver flushes output (this is where pipelined replies go out,
    /// SMTP RFC 2920, POP3 RFC 2449 6.6) and reads more.
    NeedInput,
    /// Something happened; an event that asks for an answer must be answered before `next`
    /// is called again.
    Event(E),
    /// An event is still unanswered (a driver bug; harmless).
    AwaitingAnswer,
    /// Flush output and close the connection (after QUIT, a 421, too many errors,
    /// `disconnect`...). Every later call of `next` says `Close` again.
    Close,
}

/// The hostname as it may appear in replies: no controls or spaces, at most 255 octets (an
/// empty name becomes `localhost`).
pub(crate) fn sanitize_hostname(name: &str) -> String {
    let mut out = String::new();
    for c in name
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
    {
        if out.len() + c.len_utf8() > 255 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}
