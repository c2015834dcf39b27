//! The POP3 server session (RFC 1939 with RFC 2449 CAPA, PIPELINING and response codes,
//! RFC 2595 STLS, RFC 5034 SASL AUTH and RFC 3206 AUTH / SYS codes), without I/O.
//!
//! The driver owns the socket and the maildrop; a [`Session`] owns the dialogue. Same loop as
//! SMTP: feed what was read, call [`Session::next`] until it answers [`Progress::NeedInput`] or
//! [`Progress::Close`], answer every [`Event`], write what [`Session::take_output`] hands out:
//!
//! ```text
//! loop {
//!     match session.next() {
//!         Progress::NeedInput => { write(take_output()); feed(read()) }   // flush point (RFC 2449 PIPELINING)
//!         Progress::Event(Event::Login { .. }) => session.logged_in(account, listing) / session.login_failed(why),
//!         Progress::Event(Event::Retrieve { number, .. }) => session.message(&content) / session.message_unavailable(),
//!         Progress::Event(Event::Update { deleted }) => { expunge(deleted); session.updated(ok) }
//!         Progress::Event(Event::StartTls) => { write(take_output()); handshake(); session.tls_started(..) }
//!         Progress::AwaitingAnswer => unreachable in a correct driver,
//!         Progress::Close => { write(take_output()); close() }
//!     }
//! }
//! ```
//!
//! # The session in POP3 order
//!
//! States are named for what they expect next (the rustls convention); [`Session::state_name`]
//! reports them for logs.
//!
//! 1. **Connect** (`ExpectGreeting`). Nothing is processed until the driver calls
//!    [`Session::greet`]: `+OK <hostname> POP3 server ready` (no APOP timestamp: APOP is not
//!    offered).
//! 2. **AUTHORIZATION** (`ExpectUser`; `ExpectPass` after USER; `ExpectAuthResponse` during a
//!    SASL exchange). USER + PASS, or AUTH PLAIN / AUTH LOGIN (RFC 5034: initial response
//!    allowed, challenges `+ <base64>`, `*` cancels) end in [`Event::Login`] (`ExpectMaildrop`).
//!    The driver authenticates, locks and lists the maildrop and answers
//!    [`Session::logged_in`] (`+OK <n> messages (<octets> octets)`, TRANSACTION) or
//!    [`Session::login_failed`] (`-ERR [AUTH]`, `[IN-USE]`, `[SYS/TEMP]` or `[LOGIN-DELAY]`;
//!    back to `ExpectUser`). Plaintext logins are refused while `plaintext_auth` is false
//!    (`-ERR [AUTH] ... (use STLS)` when TLS would allow them). CAPA, STLS and QUIT are valid;
//!    TRANSACTION commands get `-ERR`.
//! 3. **STLS** (RFC 2595, AUTHORIZATION only, when offered). `+OK Begin TLS negotiation` is
//!    queued, every byte buffered after the command is discarded (as SMTP's STARTTLS,
//!    CVE-2011-0411) and [`Event::StartTls`] asks for the handshake (`ExpectTlsHandshake`);
//!    [`Session::tls_started`] goes back to `ExpectUser` without STLS.
//! 4. **TRANSACTION** (`Transaction`). STAT, LIST, UIDL, DELE, RSET, NOOP and CAPA are answered
//!    from the listing given at login; RETR and TOP check the message number and ask for the
//!    content with [`Event::Retrieve`] (`ExpectMessage`), which [`Session::message`] sends
//!    dot-stuffed (TOP: header, blank line and the first n body lines).
//! 5. **UPDATE** (`ExpectUpdate`). QUIT in TRANSACTION hands the deleted message numbers out in
//!    [`Event::Update`]; [`Session::updated`] says `+OK <hostname> signing off` or
//!    `-ERR [SYS/TEMP] some deleted messages not removed`, then Close. A connection that ends
//!    any other way never reaches UPDATE: nothing is deleted (RFC 1939 6).
//!
//! Every `-ERR` the session sends for a client mistake (bad syntax, unknown command, command in
//! the wrong state, bad message number, malformed SASL response) and every failed login counts
//! as an error; at `max_errors` the session says `-ERR [SYS/PERM] Too many errors, closing` and
//! closes.
//!
//! # Limits
//!
//! Command lines are framed by [`crate::line::LineReader`] with `max_line_length` (at least
//! 255 octets, RFC 2449 4); a SASL response line may be up to [`MAX_AUTH_LINE`] (RFC 5034 4:
//! responses may be longer than commands). An over-long line gets `-ERR Line too long` and is
//! dropped up to its LF without being buffered; after [`MAX_DISCARD`] octets without an LF the
//! session says `-ERR [SYS/PERM] Line too long` and closes. Pipelined commands cannot multiply
//! the output without bound: while more than [`MAX_QUEUED_OUTPUT`] octets of replies wait to be
//! written, a command that would add a listing or a message gets `-ERR [SYS/TEMP]` instead (a
//! driver that writes queued output whenever it answers an event never sees this). No input can
//! make the session panic.

mod command;
mod reply;
mod session;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use session::Session;

use wasmail_types::Secret;

/// The longest SASL response line accepted (CRLF included), whatever `max_line_length` says.
pub const MAX_AUTH_LINE: usize = 4096;

/// An over-long command line is dropped as it arrives; once this many octets came without any
/// line end the client is cut off (the same for every protocol).
pub use crate::line::MAX_DISCARD;

/// Replies waiting to be written beyond which a command that would add a listing (LIST, UIDL)
/// or a message (RETR, TOP) is refused with `-ERR [SYS/TEMP]` until the driver has flushed.
pub const MAX_QUEUED_OUTPUT: usize = 16 * 1024 * 1024;

/// Fixed per session (except what [`Session::tls_started`] changes); built by the driver from
/// config and the connection.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// In the greeting and the sign-off. Control characters and spaces are removed (an empty
    /// name becomes `localhost`).
    pub hostname: String,
    /// Command lines incl. CRLF; values below 255 (RFC 2449 4) are raised to 255. Longer lines
    /// get `-ERR Line too long` and are discarded up to their LF.
    pub max_line_length: usize,
    /// Bad commands and failed logins; at this count: `-ERR [SYS/PERM] Too many errors,
    /// closing` and Close. 0 = no limit.
    pub max_errors: u32,
    /// Offer STLS (the connection is plain and TLS is configured).
    pub stls: bool,
    /// USER/PASS and AUTH PLAIN/LOGIN are allowed now (and CAPA lists USER and SASL).
    pub plaintext_auth: bool,
    /// Plaintext logins are not allowed only because TLS is missing: USER, PASS and AUTH get
    /// `-ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)`.
    pub plaintext_needs_tls: bool,
    /// CAPA `EXPIRE NEVER` / `EXPIRE <days>` (RFC 2449 6.7); None: not listed.
    pub expire: Option<Expire>,
    /// CAPA `LOGIN-DELAY <seconds>` (RFC 2449 6.5); None: not listed.
    pub login_delay: Option<u32>,
    /// Some accounts have their own EXPIRE or LOGIN-DELAY: before login CAPA adds `USER` to
    /// them; after login it lists the account's own (see [`Session::account_policy`]).
    pub policy_varies_by_user: bool,
}

/// The server's retention policy as CAPA announces it (RFC 2449 6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expire {
    /// Messages are kept until the client deletes them.
    Never,
    /// Messages may be deleted this many days after they were retrieved (0: right after).
    Days(u32),
}

/// One message of the maildrop as the driver lists it at login; message number n is entry
/// n - 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The exact size in octets as RETR sends it (CRLF line ends, before dot-stuffing).
    pub size: u64,
    /// The unique-id: 1 to 70 characters in 0x21..=0x7E (RFC 1939 7), the same in every
    /// session. (Anything else is a driver bug; the session then sends each character outside
    /// the range as `_` and at most 70, so no reply can be broken by it.)
    pub uidl: String,
}

/// Why the driver refused a login (the reply's RFC 2449 / RFC 3206 response code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    /// `-ERR [AUTH] Authentication failed`: wrong name or password.
    Credentials,
    /// `-ERR [IN-USE] ...`: another session holds the maildrop lock.
    InUse,
    /// `-ERR [SYS/TEMP] ...`: the authenticator or the store failed.
    Temporary,
    /// `-ERR [LOGIN-DELAY] ...`: the last login was too recent.
    LoginDelay,
}

/// How the client logged in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// USER and PASS (RFC 1939 7): a password, like SASL PLAIN without an authzid.
    User,
    /// AUTH PLAIN (RFC 4616).
    Plain,
    /// AUTH LOGIN.
    Login,
}

impl Mechanism {
    /// The SASL mechanism the credentials are checked as (USER/PASS is PLAIN's password
    /// check).
    pub fn sasl_name(self) -> &'static str {
        match self {
            Mechanism::User | Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// `USER`, `PLAIN` or `LOGIN`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::User => "USER",
            Mechanism::Plain => "PLAIN",
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

/// What the session needs from the driver next: [`crate::Progress`] with POP3's events.
pub type Progress = crate::Progress<Event>;

/// What the session reports. Each one must be answered with the methods its doc names.
#[derive(Debug)]
pub enum Event {
    /// USER + PASS (mechanism [`Mechanism::User`]) or a completed AUTH PLAIN / AUTH LOGIN.
    /// `user` is the authentication identity, `authzid` the authorization identity when given
    /// and different. Answer: [`Session::logged_in`] or [`Session::login_failed`].
    Login {
        mechanism: Mechanism,
        authzid: Option<String>,
        user: String,
        secret: Secret<String>,
    },
    /// RETR n (`lines` None) or TOP n k (`lines` Some(k)). The session checked that message n
    /// (1-based) exists and is not deleted. Answer: [`Session::message`] with the whole stored
    /// message, or [`Session::message_unavailable`].
    Retrieve { number: usize, lines: Option<u64> },
    /// QUIT in TRANSACTION: the messages marked deleted (1-based, ascending). The driver
    /// expunges them (and whatever its retention policy says), then answers
    /// [`Session::updated`].
    Update { deleted: Vec<usize> },
    /// `+OK Begin TLS negotiation` is queued and input after the STLS line discarded: flush,
    /// handshake, then [`Session::tls_started`]. Until then `next` says
    /// [`Progress::AwaitingAnswer`] and fed bytes are dropped.
    StartTls,
}
