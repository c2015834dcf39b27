//! The SMTP server session (RFC 5321 with ESMTP: 1869, 1652, 2920, 3207, 3463, 3030, 3461,
//! 4954, 6152, 6531), without I/O.
//!
//! The driver owns the socket; a [`Session`] owns the dialogue. The driver feeds what it read,
//! calls [`Session::next`] until it answers [`Progress::NeedInput`] or [`Progress::Close`],
//! answers every decision [`Event`] and writes what [`Session::take_output`] hands it:
//!
//! ```text
//! loop {
//!     match session.next() {
//!         Progress::NeedInput => { write(take_output()); feed(read()) }   // flush point (RFC 2920)
//!         Progress::Event(Event::MailFrom { .. }) => session.accept() / session.reply(r),
//!         Progress::Event(Event::MessageChunk(bytes)) => spool(bytes),
//!         Progress::Event(Event::StartTls) => { write(take_output()); handshake(); session.tls_started(..) }
//!         Progress::AwaitingAnswer => unreachable in a correct driver,
//!         Progress::Close => { write(take_output()); close() }
//!     }
//! }
//! ```
//!
//! # The session in SMTP order
//!
//! States are named for what they expect next (the rustls convention); [`Session::state_name`]
//! reports them for logs.
//!
//! 1. **Connect** (`ExpectGreeting`). Nothing is processed until the driver has run its connect
//!    filters and calls [`Session::greet`] (`220 <hostname> ESMTP wasmail`) or
//!    [`Session::refuse`]. A 554 greeting leaves the session in `ExpectQuit`: every command but
//!    QUIT gets `503 5.5.1` (RFC 5321 3.1); a 421 greeting closes at once.
//! 2. **EHLO / HELO** (`ExpectHelo`). [`Event::Helo`]; accepted, EHLO gets the capability list
//!    (PIPELINING, 8BITMIME, SMTPUTF8, SIZE, ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS when
//!    offered, `AUTH PLAIN LOGIN` when offered). A later EHLO drops an open transaction
//!    ([`Event::Reset`]).
//! 3. **STARTTLS** (RFC 3207). `220 2.0.0 Ready to start TLS` is queued, every byte already
//!    buffered after the command is discarded (CVE-2011-0411) and [`Event::StartTls`] asks the
//!    driver for the handshake (`ExpectTlsHandshake`). [`Session::tls_started`] forgets
//!    everything the client said: back to `ExpectHelo`.
//! 4. **AUTH** (RFC 4954, `ExpectAuthResponse` during the challenges). PLAIN and LOGIN, with or
//!    without an initial response, end in [`Event::Auth`], answered with
//!    [`Session::authenticated`] or a refusal.
//! 5. **MAIL FROM** (`ExpectMail`). Path and parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH)
//!    are checked by the session; [`Event::MailFrom`] lets the driver decide. Accepted, it opens
//!    the [`Transaction`].
//! 6. **RCPT TO** (`ExpectRcptOrData`). Parameters NOTIFY and ORCPT (RFC 3461); at most
//!    `max_recipients` (`452 4.5.3`). Each accepted recipient joins the transaction.
//! 7. **DATA / BDAT** (`ExpectMessage` / `ExpectChunk`). [`Event::DataStart`], then the content
//!    as [`Event::MessageChunk`]s (dot-unstuffed for DATA, raw for BDAT), then
//!    [`Event::MessageEnd`], which the driver answers with the final reply once the message is
//!    durable. A message over `max_message_size`, or a DATA message with a bare CR or LF, ends
//!    in [`Event::MessageAborted`] and the session's own refusal. DATA ends only at
//!    `<CRLF>.<CRLF>`: the SMTP smuggling sequences (`<LF>.<LF>`, `<CR>.<CR>`, ...) are
//!    content, never the end.
//! 8. **RSET, NOOP, VRFY, EXPN, HELP, QUIT** are answered by the session itself.
//!
//! Every reply the session generates carries an RFC 3463 enhanced status code (except the
//! greeting, the EHLO/HELO lines and the 334/354 intermediate replies, whose class 3 has none).
//! Every 4xx/5xx reply the session gives for a client mistake counts as an error; at
//! `max_errors` it says `421 4.7.0` and closes.
//!
//! # Limits
//!
//! Command lines are framed by [`crate::line::LineReader`] with `max_line_length`; an over-long
//! line gets `500 5.5.2 Line too long` and is dropped up to its LF without being buffered; after
//! 1 MiB without an LF the session says 421 and closes. Message content is never buffered
//! beyond one chunk ([`CHUNK_SIZE`]) plus one read. No input can make the session panic.

mod auth;
mod bdat;
mod command;
mod data;
mod reply;
mod session;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
#[cfg(test)]
mod tests;

pub use session::Session;

/// The SASL mechanisms offered (`AUTH PLAIN LOGIN`): the ones every protocol shares.
pub use crate::sasl::Mechanism;

use wasmail_types::{ForwardPath, Reply, ReversePath, Secret};

/// Message content is handed to the driver at least every this many octets (and whenever the
/// input runs out), so a message never sits in the session's memory.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// An over-long command line is dropped as it arrives; once this many octets came without any
/// line end the client is cut off with 421 (the same for every protocol).
pub use crate::line::MAX_DISCARD;

/// Fixed per session; built by the driver from config and the connection.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// In the greeting, the EHLO reply and 421 replies. Control characters and spaces are
    /// removed (an empty name becomes `localhost`).
    pub hostname: String,
    /// Command lines incl. CRLF; values below 512 (RFC 5321 4.5.3.1.4) are raised to 512. DATA
    /// lines are NOT limited.
    pub max_line_length: usize,
    /// SIZE announced and enforced; 0 = no limit (SIZE without number).
    pub max_message_size: u64,
    /// More RCPTs get `452 4.5.3 Too many recipients`; 0 = no limit.
    pub max_recipients: usize,
    /// After this many error replies: `421 4.7.0` and close; 0 = no limit.
    pub max_errors: u32,
    /// Offer STARTTLS (the connection is plain and TLS is configured).
    pub starttls: bool,
    /// Offer `AUTH PLAIN LOGIN` now (the driver computes: the service allows AUTH and (TLS or
    /// loopback or plaintext allowed)).
    pub auth: bool,
    /// AUTH is not offered now only because TLS is missing: AUTH gets `538 5.7.11`.
    pub auth_needs_tls: bool,
    /// MAIL before AUTH gets `530 5.7.0 Authentication required` (submission).
    pub require_auth: bool,
    /// VRFY verification. Only the `false` behaviour exists today: VRFY always gets
    /// `252 2.5.0` (RFC 5321 3.5.3), whatever this says.
    pub vrfy: bool,
}

/// What the session needs from the driver next: [`crate::Progress`] with SMTP's events.
pub type Progress = crate::Progress<Event>;

/// What the session reports. Decisions must be answered with [`Session::accept`],
/// [`Session::reply`] or [`Session::authenticated`]; information needs no answer.
#[derive(Debug)]
pub enum Event {
    /// Decision: EHLO (`extended`) or HELO with the client's name (one token, no spaces or
    /// controls; otherwise unchecked). Accepted: 250 with the capabilities.
    Helo { name: String, extended: bool },
    /// Decision: the client completed a SASL exchange. `identity` is the authentication
    /// identity (authcid), `authzid` the authorization identity when given and different.
    /// Answer with [`Session::authenticated`] or a refusal (535 5.7.8 / 454 4.7.0).
    Auth {
        mechanism: Mechanism,
        authzid: Option<String>,
        identity: String,
        secret: Secret<String>,
    },
    /// Decision: MAIL FROM with syntactically valid path and parameters, within SIZE, SMTPUTF8
    /// present when the address needs it, authenticated if required.
    MailFrom {
        from: ReversePath,
        params: MailParams,
    },
    /// Decision: RCPT TO within `max_recipients`. Accepted, the recipient joins the transaction.
    RcptTo { to: ForwardPath, params: RcptParams },
    /// Decision: DATA or the first BDAT of a transaction with >= 1 accepted recipient (with
    /// none, the session answers DATA itself: `554 5.5.1 No valid recipients`, RFC 2920 3.1 /
    /// 5321 3.3).
    DataStart { kind: DataKind },
    /// Decision: the end of a message that was received completely and within the limits: the
    /// driver delivers, then [`Session::reply`]s (250 only once durable). The transaction is
    /// still readable through [`Session::transaction`] until then.
    MessageEnd { size: u64 },
    /// Message octets in order (dot-unstuffed for DATA; CRLF line ends as received). Never
    /// includes the terminating `.CRLF`. At most [`CHUNK_SIZE`] octets.
    MessageChunk(Vec<u8>),
    /// The message failed (too big: `552 5.3.4 Message size exceeds fixed maximum message
    /// size`; bare CR or LF in DATA: `550 5.6.11`). Emitted once, as soon as the failure is
    /// known; no chunk follows. The session consumes the rest of the message, then queues
    /// `reply` itself and drops the transaction ([`Event::Reset`]); the driver drops what it
    /// spooled.
    MessageAborted { reply: Reply },
    /// `220 2.0.0 Ready to start TLS` is queued and input after the STARTTLS line discarded
    /// (CVE-2011-0411): flush, handshake, then [`Session::tls_started`]. Until then `next`
    /// says [`Progress::AwaitingAnswer`] and fed bytes are dropped.
    StartTls,
    /// The session dropped an open transaction on its own: RSET, a new EHLO/HELO, the end of
    /// an aborted message, an over-size BDAT. The driver forgets per-transaction state (filter
    /// session, spool). The session already replied. (Transactions the driver ends itself —
    /// its reply to MessageEnd or a refused DataStart, `tls_started`, `disconnect` — are not
    /// announced.)
    Reset,
}

/// How the message content is transferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// DATA: dot-stuffed lines up to `<CRLF>.<CRLF>`.
    Data,
    /// BDAT (RFC 3030 CHUNKING): counted octets.
    Bdat,
}

/// `BODY=` (RFC 1652 / 6152).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Body {
    #[default]
    SevenBit,
    EightBitMime,
}

/// `RET=` (RFC 3461 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

/// The ESMTP parameters of MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870); a number too large for u64 is kept as `u64::MAX`.
    pub size: Option<u64>,
    pub body: Body,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// `ENVID=` (RFC 3461 4.4), xtext-decoded.
    pub envid: Option<String>,
    /// `AUTH=` (RFC 4954 5), xtext-decoded: recorded, not trusted.
    pub auth: Option<String>,
}

/// The ESMTP parameters of RCPT TO (RFC 3461).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RcptParams {
    pub notify: Option<Notify>,
    /// `ORCPT=addr-type;xtext`: the address type (e.g. `rfc822`) and the xtext-decoded address.
    pub orcpt: Option<(String, String)>,
}

/// `NOTIFY=` (RFC 3461 4.1): NEVER, or any of SUCCESS, FAILURE, DELAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// The current mail transaction: opened by an accepted MAIL FROM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub from: ReversePath,
    pub params: MailParams,
    /// The accepted recipients, in order.
    pub recipients: Vec<(ForwardPath, RcptParams)>,
}
