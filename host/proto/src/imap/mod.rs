//! The IMAP4rev1 server side (RFC 3501 and the extensions wasmail serves), without I/O.
//!
//! The driver owns the socket and the store; a [`Session`] owns the dialogue: framing of command
//! lines and literals with limits, parsing (imap-codec), the connection states of RFC 3501 3,
//! authentication, STARTTLS, IDLE, and the encoding of every response. Same loop as SMTP and
//! POP3:
//!
//! ```text
//! loop {
//!     match session.next() {
//!         Progress::NeedInput => { write(take_output()); feed(read()) }   // while idling, also
//!                                                                         // push mailbox updates
//!         Progress::Event(Event::Login { .. }) => session.logged_in(account) / session.login_failed(why),
//!         Progress::Event(Event::Command { tag, command }) => { session.respond(untagged)*;
//!                                                                session.selected(..)?; session.done(status) }
//!         Progress::Event(Event::AppendStart { .. }) => session.append_go() / session.done(no),
//!         Progress::Event(Event::AppendData(chunk)) => write chunk to the spool (no answer),
//!         Progress::Event(Event::AppendEnd) => { store it; session.done(status) }
//!         Progress::Event(Event::StartTls) => { write(take_output()); handshake(); session.tls_started(..) }
//!         Progress::AwaitingAnswer => unreachable in a correct driver,
//!         Progress::Close => { write(take_output()); close() }
//!     }
//! }
//! ```
//!
//! # What the session decides, and what the driver decides
//!
//! The session answers CAPABILITY, NOOP and LOGOUT before login, STARTTLS, LOGIN and
//! AUTHENTICATE (through [`Event::Login`]), ID, ENABLE, the IDLE exchange, every syntax error
//! (`BAD` with a reason; unknown commands, commands in the wrong state) and every limit. Every
//! other command of the authenticated and selected states reaches the driver as
//! [`Event::Command`], already checked for its state: the driver runs it against the store,
//! sends the untagged responses and the tagged completion, and tells the session when a mailbox
//! is selected or closed. When untagged EXPUNGE may be sent (RFC 3501 7.4.1: not during FETCH,
//! STORE or SEARCH) is the driver's decision, since it owns the mailbox view.
//!
//! # Limits
//!
//! A command line (up to a literal or CRLF) is at most `max_line_length`; a whole command with
//! its literals at most `max_command_size` — except the message of an APPEND, which is never
//! held: it streams to the driver in [`Event::AppendData`] chunks and may be up to
//! `max_append_size` (APPENDLIMIT, RFC 7889). A synchronizing literal over a limit gets `NO
//! [TOOBIG]` instead of the continuation, so the client never sends it; a non-synchronizing one
//! (LITERAL+, RFC 7888) is read and dropped if it is at most [`MAX_DISCARD`] over, otherwise the
//! session says BYE. At `max_errors` BAD responses the session says BYE and closes.
//!
//! - [`mime`]: ENVELOPE, BODYSTRUCTURE and body sections of a message (RFC 3501 6.4.5, 7.4.2).
//! - [`fetch`]: the data items of one FETCH response.
//! - [`search`]: whether a message matches a SEARCH program.
//! - [`sequence`]: sequence sets resolved against a mailbox's numbers or UIDs.
//! - [`names`]: mailbox names on the wire (modified UTF-7, RFC 3501 5.1.3) and LIST patterns.

pub mod fetch;
mod framing;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod mime;
pub mod names;
pub mod search;
pub mod sequence;
mod session;
#[cfg(test)]
mod session_tests;
mod structure;

pub use session::{Completion, Session};
pub use structure::Structure;

use std::io;

pub use imap_codec::imap_types;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use wasmail_types::Secret;
use wasmail_types::mail::MessageMeta;

pub use crate::line::MAX_DISCARD;

/// What the session needs from the driver next: [`crate::Progress`] with IMAP's events.
pub type Progress = crate::Progress<Event>;

/// Fixed per session (except what [`Session::tls_started`] changes); built by the driver from
/// config and the connection.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// In the greeting and BYE. Control characters and spaces are removed.
    pub hostname: String,
    /// One line of a command (up to CRLF or a literal announcement), CRLF included; at least
    /// 1000 (RFC 2683 3.2.1.5 asks servers to take lines of 8000 octets).
    pub max_line_length: usize,
    /// A whole command with its literals, except an APPEND message.
    pub max_command_size: usize,
    /// The largest message APPEND takes (advertised as APPENDLIMIT).
    pub max_append_size: u32,
    /// BAD responses and failed logins; at this count the session says BYE and closes. 0 = no
    /// limit.
    pub max_errors: u32,
    /// Offer STARTTLS (the connection is plain and TLS is configured).
    pub starttls: bool,
    /// LOGIN and AUTHENTICATE are allowed now.
    pub plaintext_auth: bool,
}

/// How the client logged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// The LOGIN command (RFC 3501 6.2.3): a password, like SASL PLAIN without an authzid.
    LoginCommand,
    /// AUTHENTICATE PLAIN (RFC 4616).
    Plain,
    /// AUTHENTICATE LOGIN.
    Login,
}

impl Mechanism {
    /// The SASL mechanism the credentials are checked as (LOGIN is PLAIN's password check).
    pub fn sasl_name(self) -> &'static str {
        match self {
            Mechanism::LoginCommand | Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

impl From<crate::sasl::Mechanism> for Mechanism {
    fn from(m: crate::sasl::Mechanism) -> Mechanism {
        match m {
            crate::sasl::Mechanism::Plain => Mechanism::Plain,
            crate::sasl::Mechanism::Login => Mechanism::Login,
        }
    }
}

/// Why the driver refused a login (RFC 5530 response codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    /// `NO [AUTHENTICATIONFAILED]`: wrong name or password.
    Credentials,
    /// `NO [UNAVAILABLE]`: the authenticator or the store failed.
    Temporary,
}

/// What the session reports. Each one must be answered with the methods its doc names.
#[derive(Debug)]
pub enum Event {
    /// LOGIN or a completed AUTHENTICATE. `user` is the authentication identity, `authzid` the
    /// authorization identity when given and different. Answer: [`Session::logged_in`] or
    /// [`Session::login_failed`].
    Login {
        mechanism: Mechanism,
        authzid: Option<String>,
        user: String,
        secret: Secret<String>,
    },
    /// `tag OK Begin TLS negotiation now` is queued and input after the command discarded
    /// (RFC 3501 6.2.1): flush, handshake, then [`Session::tls_started`].
    StartTls,
    /// A command of the authenticated or selected state (allowed in the current one). Answer:
    /// any number of [`Session::respond`], [`Session::selected`] when the selection changes,
    /// then [`Session::done`] (IDLE: [`Session::idle`], and the session completes it on DONE).
    Command { tag: Tag<'static>, command: Command },
    /// APPEND's message literal is announced. The driver checks the mailbox (and quota) and
    /// answers [`Session::append_go`] to receive the octets, or [`Session::done`] with a `NO`
    /// (`[TRYCREATE]`, `[TOOBIG]`, `[OVERQUOTA]`): a synchronizing literal is then never sent,
    /// a non-synchronizing one is dropped by the session.
    AppendStart {
        tag: Tag<'static>,
        mailbox: Mailbox<'static>,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        size: u32,
    },
    /// The next octets of the APPEND message (no answer).
    AppendData(Vec<u8>),
    /// The APPEND message and its command line are complete. Answer: [`Session::done`].
    AppendEnd,
}

/// A command the driver runs.
#[derive(Debug)]
pub enum Command {
    /// As imap-codec parsed it.
    Imap(imap_types::command::CommandBody<'static>),
    /// `CREATE name (USE (attrs))` (RFC 6154 3, CREATE-SPECIAL-USE), which imap-codec does not
    /// parse: the attributes as sent (e.g. `\Drafts`).
    CreateSpecialUse {
        mailbox: Mailbox<'static>,
        uses: Vec<String>,
    },
}

/// A message's octets, read only as far as a FETCH or SEARCH needs them: a FETCH of FLAGS or a
/// SEARCH on flags reads nothing, a header fetch reads the header only.
pub trait MessageOctets {
    /// The header section including the blank line that ends it (all of the message if it has
    /// no blank line).
    fn header(&self) -> io::Result<&[u8]>;
    /// The whole message as stored.
    fn whole(&self) -> io::Result<&[u8]>;

    /// The message's ENVELOPE and BODYSTRUCTURE if known without reading it (kept by the
    /// store); FETCH then neither reads nor parses the message for them.
    fn structure(&self) -> Option<Structure> {
        None
    }

    /// FETCH computed the structure: an implementation may keep it for [`Self::structure`].
    fn computed(&self, _structure: &Structure) {}
}

/// A message held in memory.
impl MessageOctets for [u8] {
    fn header(&self) -> io::Result<&[u8]> {
        Ok(&self[..header_len(self)])
    }
    fn whole(&self) -> io::Result<&[u8]> {
        Ok(self)
    }
}

/// One message of the selected mailbox as FETCH and SEARCH see it.
#[derive(Clone, Copy)]
pub struct MessageRef<'a> {
    /// Its message sequence number in this session.
    pub seq: u32,
    /// What the index knows (UID, flags, internal date, size, modseq).
    pub meta: &'a MessageMeta,
    /// This session holds it as `\Recent`.
    pub recent: bool,
    pub octets: &'a dyn MessageOctets,
}

impl std::fmt::Debug for MessageRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageRef")
            .field("seq", &self.seq)
            .field("meta", &self.meta)
            .field("recent", &self.recent)
            .finish_non_exhaustive()
    }
}

/// The length of the header section at the start of `message`: through the first empty line
/// (CRLF CRLF, or bare LF LF), or all of it when there is none.
pub fn header_len(message: &[u8]) -> usize {
    // A message that starts with its blank line has an empty header.
    if message.starts_with(b"\r\n") {
        return 2;
    }
    if message.starts_with(b"\n") {
        return 1;
    }
    let mut i = 0;
    while let Some(nl) = message[i..].iter().position(|&b| b == b'\n') {
        let at = i + nl;
        match message.get(at + 1) {
            Some(b'\n') => return at + 2,
            Some(b'\r') if message.get(at + 2) == Some(&b'\n') => return at + 3,
            _ => {}
        }
        i = at + 1;
    }
    message.len()
}

#[cfg(test)]
mod tests {
    use super::header_len;

    #[test]
    fn header_ends_at_the_first_blank_line() {
        assert_eq!(header_len(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), 14);
        assert_eq!(header_len(b"A: 1\n\nbody"), 6);
        assert_eq!(header_len(b"\r\nbody"), 2);
        assert_eq!(header_len(b"\r\nA: 1\r\n\r\n"), 2);
        assert_eq!(header_len(b"A: 1\r\n"), 6);
        assert_eq!(header_len(b""), 0);
    }
}
