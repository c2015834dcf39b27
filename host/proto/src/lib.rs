//! Sans-I/O protocol sessions for wasmail: SMTP now, IMAP and POP3 to come.
//!
//! A session never touches a socket, a file or a clock. The driver (a thin tokio task in the
//! `wasmail` crate, or a test, or a fuzzer) moves the bytes:
//!
//! ```text
//!   socket ──read──► driver ──feed(bytes)──► Session ──next()──► Progress
//!                                              │                    │
//!                                   line framing with limits        ├─ NeedInput: flush output, read more
//!                                   (line::LineReader), parsing,    ├─ Event: a decision (HELO, MAIL,
//!                                   state machine                   │   RCPT, DATA, AUTH, end of message)
//!                                              ▲                    │   or information (message chunk,
//!                                              │                    │   STARTTLS, reset)
//!        driver answers: accept() / reply(r) / authenticated(a) ◄───┘   ... filters, store, plugins
//!                                              │
//!   socket ◄─write── driver ◄──take_output()── replies queued in order
//! ```
//!
//! The session decides everything the protocol decides (syntax, command order, limits, the
//! replies for those); the driver decides everything policy decides (filters, recipients,
//! authentication, delivery) and answers each decision event. Because the session is a plain
//! value, every exchange can be replayed byte for byte in tests and fed arbitrary input by a
//! fuzzer.
//!
//! - [`line`](mod@line): the line framer every line-based protocol shares (hard size limit, constant
//!   memory for over-long lines).
//! - [`smtp`]: the SMTP server session.

pub mod line;
pub mod smtp;
