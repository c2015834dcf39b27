//! The POP3 server state machine. See the module docs of [`super`] for the session in POP3
//! order; this file keeps the invariants:
//!
//! - At most one event is outstanding. It waits in `event` until `next` hands it out, and the
//!   state says what answers it (`ExpectMaildrop`, `ExpectMessage`, `ExpectUpdate`,
//!   `ExpectTlsHandshake`); an answer counts only once its event has been handed out.
//! - Input is processed only in `ExpectUser`, `ExpectPass`, `ExpectAuthResponse` and
//!   `Transaction`; while an event is unanswered nothing else happens, so replies go out in
//!   the order of the commands (RFC 2449 PIPELINING). In `ExpectTlsHandshake` and `Closed` fed
//!   bytes are dropped.
//! - The maildrop is non-empty only from `logged_in` on; message number n is `maildrop[n - 1]`
//!   for the whole session, deleted or not (RFC 1939 5).

use super::command::{self, Command};
use super::reply::{self, Response};
use super::{
    Event, Expire, Listing, LoginFailure, MAX_AUTH_LINE, MAX_QUEUED_OUTPUT, Mechanism, Progress,
    SessionConfig,
};
use crate::line::{Line, LineReader, strip_line_end};
use crate::output::{Output, output_methods};
use crate::sanitize_hostname;
use crate::sasl::{self, Step};
use wasmail_types::Secret;

/// RFC 2449 4: commands may be up to 255 octets including CRLF.
const MIN_LINE_LENGTH: usize = 255;

/// What the session waits for.
#[derive(Debug)]
enum State {
    /// Connected; the driver has not called `greet` yet.
    ExpectGreeting,
    /// AUTHORIZATION: USER, AUTH, CAPA, STLS or QUIT.
    ExpectUser,
    /// AUTHORIZATION after USER: PASS (any other command but CAPA starts over).
    ExpectPass { user: String },
    /// A SASL response line.
    ExpectAuthResponse(sasl::Exchange),
    /// Event::Login is out: `logged_in` or `login_failed`.
    ExpectMaildrop,
    /// TRANSACTION.
    Transaction,
    /// Event::Retrieve is out: `message` or `message_unavailable`.
    ExpectMessage { number: usize, lines: Option<u64> },
    /// Event::Update is out: `updated`.
    ExpectUpdate,
    /// `+OK Begin TLS negotiation` was queued; waiting for `tls_started`.
    ExpectTlsHandshake,
    /// Done: `next` says Close.
    Closed,
}

/// One message of the maildrop.
#[derive(Debug)]
struct Message {
    size: u64,
    /// Checked: 1..=70 characters in 0x21..=0x7E.
    uidl: String,
    deleted: bool,
}

/// One POP3 server session: bytes in, events and response bytes out. See [`super`].
///
/// Its `Debug` output shows the state, never buffered input (which may hold credentials).
pub struct Session {
    config: SessionConfig,
    /// `config.hostname` made safe for responses.
    hostname: String,
    /// `config.max_line_length`, at least 255.
    line_limit: usize,
    tls: bool,
    input: LineReader,
    output: Output,
    state: State,
    /// The event not yet handed out.
    event: Option<Event>,
    account: Option<String>,
    maildrop: Vec<Message>,
    errors: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state_name())
            .field("tls", &self.tls)
            .field("account", &self.account)
            .field("messages", &self.maildrop.len())
            .field(
                "deleted",
                &self.maildrop.iter().filter(|m| m.deleted).count(),
            )
            .field("errors", &self.errors)
            .field("buffered_input", &self.input.len())
            .field("buffered_output", &self.output.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for a new connection; `tls`: the connection is already encrypted (implicit
    /// TLS, port 995). Nothing is sent until [`Session::greet`].
    pub fn new(config: SessionConfig, tls: bool) -> Session {
        let hostname = sanitize_hostname(&config.hostname);
        let line_limit = config.max_line_length.max(MIN_LINE_LENGTH);
        Session {
            config,
            hostname,
            line_limit,
            tls,
            input: LineReader::new(line_limit),
            output: Output::with_cap(MAX_QUEUED_OUTPUT),
            state: State::ExpectGreeting,
            event: None,
            account: None,
            maildrop: Vec::new(),
            errors: 0,
        }
    }

    /// Queues `+OK <hostname> POP3 server ready` (no APOP timestamp: APOP is not offered).
    /// Only the first call counts.
    pub fn greet(&mut self) {
        if matches!(self.state, State::ExpectGreeting) {
            self.send(reply::greeting(&self.hostname));
            self.state = State::ExpectUser;
        }
    }

    /// Appends received bytes. While framing commands the session never holds more than
    /// `max_line_length` (a SASL response: [`MAX_AUTH_LINE`]) plus what one call feeds. Bytes
    /// fed while waiting for a TLS handshake or after Close are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::ExpectTlsHandshake | State::Closed) {
            self.input.feed(bytes);
        }
    }

    /// Processes buffered input until something needs the driver. With an event unanswered it
    /// returns [`Progress::AwaitingAnswer`] and does nothing else.
    // Not an Iterator: `next` never ends (Close repeats) and must not be driven by adapters
    // while events are unanswered. The name is the sans-I/O convention (imap-next, rustls).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Progress {
        loop {
            if let Some(event) = self.event.take() {
                return Progress::Event(event);
            }
            match self.state {
                State::Closed => return Progress::Close,
                State::ExpectGreeting => return Progress::NeedInput,
                State::ExpectMaildrop
                | State::ExpectMessage { .. }
                | State::ExpectUpdate
                | State::ExpectTlsHandshake => return Progress::AwaitingAnswer,
                State::ExpectUser
                | State::ExpectPass { .. }
                | State::ExpectAuthResponse(_)
                | State::Transaction => {
                    if let Some(progress) = self.receive_line() {
                        return progress;
                    }
                }
            }
        }
    }

    /// The EXPIRE and LOGIN-DELAY of the account logging in, which CAPA lists from now on
    /// (RFC 2449 6.5, 6.7); the driver calls it before [`Session::logged_in`].
    pub fn account_policy(&mut self, expire: Option<Expire>, login_delay: Option<u32>) {
        self.config.expire = expire;
        self.config.login_delay = login_delay;
    }

    /// Answers [`Event::Login`]: the account's maildrop is locked and listed (index i is
    /// message number i + 1). Queues `+OK <n> messages (<octets> octets)`; TRANSACTION.
    /// Without an unanswered Login it does nothing.
    pub fn logged_in(&mut self, account: String, maildrop: Vec<Listing>) {
        if !self.answering(|s| matches!(s, State::ExpectMaildrop)) {
            return;
        }
        self.account = Some(account);
        self.maildrop = maildrop
            .into_iter()
            .map(|l| Message {
                size: l.size,
                uidl: safe_uidl(&l.uidl),
                deleted: false,
            })
            .collect();
        let (count, octets) = self.totals();
        self.send(reply::maildrop(count, octets));
        self.state = State::Transaction;
    }

    /// Answers [`Event::Login`] negatively: `-ERR [AUTH] Authentication failed`,
    /// `-ERR [IN-USE] ...`, `-ERR [SYS/TEMP] ...` or `-ERR [LOGIN-DELAY] ...`. Back to
    /// AUTHORIZATION (USER must be sent again); it counts as an error. Without an unanswered
    /// Login it does nothing.
    pub fn login_failed(&mut self, why: LoginFailure) {
        if !self.answering(|s| matches!(s, State::ExpectMaildrop)) {
            return;
        }
        self.state = State::ExpectUser;
        self.error(reply::login_failed(why));
    }

    /// Answers [`Event::Retrieve`] with the whole stored message (CRLF line ends). Queues
    /// `+OK <size> octets`, the content dot-stuffed (TOP: the header, the blank line and the
    /// first n body lines), a final CRLF if it lacks one, then `.`. A bare LF in the content
    /// goes out as CRLF; `<size>` counts the octets that follow before dot-stuffing, so for
    /// RETR of CRLF content it is the content's length (what LIST said). Without an unanswered
    /// Retrieve it does nothing.
    pub fn message(&mut self, content: &[u8]) {
        if !self.answering(|s| matches!(s, State::ExpectMessage { .. })) {
            return;
        }
        let State::ExpectMessage { lines, .. } =
            std::mem::replace(&mut self.state, State::Transaction)
        else {
            return;
        };
        let mut size = 0u64;
        for_each_line(content, lines, |line| {
            size = size.saturating_add(line.len() as u64 + 2);
        });
        self.send(reply::octets(size));
        let out = self.output.buf();
        out.reserve(usize::try_from(size).unwrap_or(0).saturating_add(3));
        for_each_line(content, lines, |line| {
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        });
        out.extend_from_slice(b".\r\n");
    }

    /// Answers [`Event::Retrieve`] when the message cannot be read:
    /// `-ERR [SYS/TEMP] message n cannot be read now, try again later` (not counted as an
    /// error). Without an unanswered Retrieve it does nothing.
    pub fn message_unavailable(&mut self) {
        if !self.answering(|s| matches!(s, State::ExpectMessage { .. })) {
            return;
        }
        if let State::ExpectMessage { number, .. } =
            std::mem::replace(&mut self.state, State::Transaction)
        {
            self.send(reply::message_unavailable(number));
        }
    }

    /// Answers [`Event::Update`]: `+OK <hostname> signing off` (`ok`) or `-ERR [SYS/TEMP] some
    /// deleted messages not removed` (RFC 1939 6), then Close either way. Without an
    /// unanswered Update it does nothing.
    pub fn updated(&mut self, ok: bool) {
        if !self.answering(|s| matches!(s, State::ExpectUpdate)) {
            return;
        }
        self.send(if ok {
            reply::signing_off(&self.hostname)
        } else {
            reply::update_failed()
        });
        self.close();
    }

    /// After [`Event::StartTls`] the driver did the handshake: back to AUTHORIZATION
    /// (`ExpectUser`), STLS no longer offered, plaintext logins allowed according to the new
    /// values. Without an unanswered StartTls it does nothing.
    pub fn tls_started(&mut self, plaintext_auth: bool, plaintext_needs_tls: bool) {
        if !self.answering(|s| matches!(s, State::ExpectTlsHandshake)) {
            return;
        }
        self.tls = true;
        self.config.plaintext_auth = plaintext_auth;
        self.config.plaintext_needs_tls = plaintext_needs_tls;
        self.input.clear();
        self.state = State::ExpectUser;
    }

    /// Queues `-ERR [SYS/TEMP] <text>` (or `text` itself when it is a whole status line,
    /// starting with `+OK` or `-ERR`), then [`Progress::Close`]: shutdown, idle timeout. Usable
    /// at any time, with or without an unanswered event; nothing after Close. Nothing is
    /// deleted: a session that does not QUIT never reaches UPDATE.
    pub fn disconnect(&mut self, text: &str) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.send(reply::closing(text));
        self.close();
    }

    output_methods!(
        /// It may do so at any time, and should whenever it answers an event (a pipelined
        /// RETR after a large message would otherwise find more than [`MAX_QUEUED_OUTPUT`]
        /// octets waiting).
    );

    /// Received octets not yet processed.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// The account logged in (from `logged_in` on).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Error responses (and failed logins) so far: the count that `max_errors` limits.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The state's name for logs: `ExpectGreeting`, `ExpectUser`, `ExpectPass`,
    /// `ExpectAuthResponse`, `ExpectMaildrop`, `Transaction`, `ExpectMessage`, `ExpectUpdate`,
    /// `ExpectTlsHandshake` or `Closed`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::ExpectGreeting => "ExpectGreeting",
            State::ExpectUser => "ExpectUser",
            State::ExpectPass { .. } => "ExpectPass",
            State::ExpectAuthResponse(_) => "ExpectAuthResponse",
            State::ExpectMaildrop => "ExpectMaildrop",
            State::Transaction => "Transaction",
            State::ExpectMessage { .. } => "ExpectMessage",
            State::ExpectUpdate => "ExpectUpdate",
            State::ExpectTlsHandshake => "ExpectTlsHandshake",
            State::Closed => "Closed",
        }
    }

    // ---------------------------------------------------------------------------------------
    // Output, errors, state bookkeeping.

    fn send(&mut self, response: Response) {
        response.write_to(self.output.buf());
    }

    fn send_multiline<S: AsRef<str>>(
        &mut self,
        status: Response,
        lines: impl IntoIterator<Item = S>,
    ) {
        reply::write_multiline(self.output.buf(), &status, lines);
    }

    /// Sends a response to a client mistake (or a failed login) and counts it; at
    /// `max_errors`, `-ERR [SYS/PERM] Too many errors, closing` and close.
    fn error(&mut self, response: Response) {
        self.send(response);
        self.errors = self.errors.saturating_add(1);
        if self.config.max_errors != 0 && self.errors >= self.config.max_errors {
            self.send(reply::too_many_errors());
            self.close();
        }
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.event = None;
        self.input.clear();
    }

    /// Whether the driver's answer applies now: the state is the one `expected` names and
    /// its event has been handed out.
    fn answering(&self, expected: impl Fn(&State) -> bool) -> bool {
        self.event.is_none() && expected(&self.state)
    }

    /// Messages not marked deleted and their total size.
    fn totals(&self) -> (usize, u64) {
        self.maildrop
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0u64), |(n, octets), m| {
                (n + 1, octets.saturating_add(m.size))
            })
    }

    /// Whether so much output waits that a listing or a message must not be added now.
    fn output_full(&self) -> bool {
        self.output.is_full()
    }

    /// Why plaintext logins are refused now, if they are.
    fn plaintext_refusal(&self) -> Option<Response> {
        if self.config.plaintext_auth {
            None
        } else if self.config.plaintext_needs_tls {
            Some(reply::plaintext_needs_tls())
        } else {
            Some(reply::plaintext_disallowed())
        }
    }

    fn stls_offered(&self) -> bool {
        self.config.stls && !self.tls
    }

    // ---------------------------------------------------------------------------------------
    // Input.

    /// One command (or SASL response) line.
    fn receive_line(&mut self) -> Option<Progress> {
        let auth_response = matches!(self.state, State::ExpectAuthResponse(_));
        self.input.set_max_len(if auth_response {
            self.line_limit.max(MAX_AUTH_LINE)
        } else {
            self.line_limit
        });
        let line = match self.input.next_line() {
            Line::Complete(line) => strip_line_end(line).to_vec(),
            Line::TooLong => {
                if auth_response {
                    // The exchange is over (RFC 5034 4: the AUTH command failed).
                    self.state = State::ExpectUser;
                }
                self.error(reply::line_too_long());
                return None;
            }
            Line::Incomplete => {
                if self.input.discarded_too_much() {
                    self.send(reply::line_too_long_closing());
                    self.close();
                    return None;
                }
                return Some(Progress::NeedInput);
            }
        };
        if auth_response {
            if let State::ExpectAuthResponse(exchange) =
                std::mem::replace(&mut self.state, State::ExpectUser)
            {
                self.sasl_step(sasl::respond(exchange, &line, false));
            }
            return None;
        }
        match command::parse(&line) {
            Ok(cmd) if matches!(self.state, State::Transaction) => self.transaction(cmd),
            Ok(cmd) => self.authorization(cmd),
            Err(response) => self.error(response),
        }
        None
    }

    // ---------------------------------------------------------------------------------------
    // AUTHORIZATION.

    fn authorization(&mut self, cmd: Command) {
        // After USER only PASS continues the login; CAPA keeps it; anything else starts over.
        let user = match std::mem::replace(&mut self.state, State::ExpectUser) {
            State::ExpectPass { user } => Some(user),
            _ => None,
        };
        let login = matches!(
            cmd,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::AuthList
        );
        if login && let Some(refusal) = self.plaintext_refusal() {
            return self.error(refusal);
        }
        match cmd {
            Command::User(name) => {
                self.send(reply::send_pass());
                self.state = State::ExpectPass { user: name };
            }
            Command::Pass(secret) => match user {
                Some(user) => self.login(Mechanism::User, None, user, secret),
                None => self.error(reply::pass_without_user()),
            },
            Command::AuthList => {
                self.send_multiline(reply::mechanisms_follow(), reply::mechanism_names());
            }
            Command::Auth {
                mechanism: None, ..
            } => self.error(reply::unknown_mechanism()),
            Command::Auth {
                mechanism: Some(mechanism),
                initial,
            } => self.sasl_step(sasl::start(
                mechanism,
                initial.as_deref().map(str::as_bytes),
            )),
            Command::Capa => {
                if let Some(user) = user {
                    self.state = State::ExpectPass { user };
                }
                self.capa();
            }
            Command::Stls => self.stls(),
            Command::Quit => {
                self.send(reply::signing_off(&self.hostname));
                self.close();
            }
            Command::Apop => self.error(reply::apop()),
            Command::Stat
            | Command::List(_)
            | Command::Uidl(_)
            | Command::Retr(_)
            | Command::Top(..)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset => self.error(reply::not_in_authorization()),
        }
    }

    fn sasl_step(&mut self, step: Step) {
        match step {
            Step::Challenge(challenge, exchange) => {
                self.send(reply::challenge(challenge.base64()));
                self.state = State::ExpectAuthResponse(exchange);
            }
            Step::Done(c) => self.login(c.mechanism.into(), c.authzid, c.identity, c.secret),
            // RFC 5034 4: the AUTH command fails; cancelling is no mistake.
            Step::Cancelled => self.send(reply::auth_cancelled()),
            Step::Malformed(why) => self.error(reply::bad_auth_response(why)),
        }
    }

    fn login(
        &mut self,
        mechanism: Mechanism,
        authzid: Option<String>,
        user: String,
        secret: Secret<String>,
    ) {
        self.state = State::ExpectMaildrop;
        self.event = Some(Event::Login {
            mechanism,
            authzid,
            user,
            secret,
        });
    }

    fn stls(&mut self) {
        if self.tls {
            return self.error(reply::already_tls());
        }
        if !self.config.stls {
            return self.error(reply::stls_not_offered());
        }
        self.send(reply::begin_tls());
        // Nothing sent in plaintext after STLS may count as sent over TLS (CVE-2011-0411).
        self.input.clear();
        self.state = State::ExpectTlsHandshake;
        self.event = Some(Event::StartTls);
    }

    fn capa(&mut self) {
        let lines = reply::capabilities(
            self.config.plaintext_auth,
            self.stls_offered(),
            self.config.expire,
            self.config.login_delay,
            self.config.policy_varies_by_user && self.account.is_none(),
        );
        self.send_multiline(reply::capa_follows(), lines);
    }

    // ---------------------------------------------------------------------------------------
    // TRANSACTION.

    fn transaction(&mut self, cmd: Command) {
        match cmd {
            Command::Capa => self.capa(),
            Command::Noop => self.send(reply::plain_ok()),
            Command::Stat => {
                let (count, octets) = self.totals();
                self.send(reply::stat(count, octets));
            }
            Command::List(None) | Command::Uidl(None) if self.output_full() => {
                self.send(reply::output_full());
            }
            Command::List(None) => {
                let (count, octets) = self.totals();
                let lines = listed(&self.maildrop, |m| m.size.to_string());
                reply::write_multiline(self.output.buf(), &reply::maildrop(count, octets), lines);
            }
            Command::Uidl(None) => {
                let lines = listed(&self.maildrop, |m| m.uidl.clone());
                reply::write_multiline(self.output.buf(), &reply::uidl_follows(), lines);
            }
            Command::List(Some(number)) => match self.check(number) {
                Ok(m) => {
                    let size = m.size;
                    self.send(reply::one_listing(number, &size));
                }
                Err(response) => self.error(response),
            },
            Command::Uidl(Some(number)) => match self.check(number) {
                Ok(m) => {
                    let response = reply::one_listing(number, &m.uidl);
                    self.send(response);
                }
                Err(response) => self.error(response),
            },
            Command::Retr(number) => self.retrieve(number, None),
            Command::Top(number, lines) => self.retrieve(number, Some(lines)),
            Command::Dele(number) => match self.check_mut(number) {
                Ok(m) => {
                    m.deleted = true;
                    self.send(reply::deleted(number));
                }
                Err(response) => self.error(response),
            },
            Command::Rset => {
                for m in &mut self.maildrop {
                    m.deleted = false;
                }
                let (count, octets) = self.totals();
                self.send(reply::maildrop_has(count, octets));
            }
            Command::Quit => {
                let deleted = self
                    .maildrop
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.deleted)
                    .map(|(i, _)| i + 1)
                    .collect();
                self.state = State::ExpectUpdate;
                self.event = Some(Event::Update { deleted });
            }
            Command::User(_)
            | Command::Pass(_)
            | Command::AuthList
            | Command::Auth { .. }
            | Command::Apop
            | Command::Stls => self.error(reply::not_in_transaction()),
        }
    }

    fn retrieve(&mut self, number: usize, lines: Option<u64>) {
        if let Err(response) = self.check(number) {
            return self.error(response);
        }
        if self.output_full() {
            return self.send(reply::output_full());
        }
        self.state = State::ExpectMessage { number, lines };
        self.event = Some(Event::Retrieve { number, lines });
    }

    /// Message `number` (1-based) if it exists and is not deleted, else the `-ERR` to send.
    fn check(&self, number: usize) -> Result<&Message, Response> {
        let count = self.maildrop.len();
        match number.checked_sub(1).and_then(|i| self.maildrop.get(i)) {
            None => Err(reply::no_such_message(count)),
            Some(m) if m.deleted => Err(reply::already_deleted(number)),
            Some(m) => Ok(m),
        }
    }

    fn check_mut(&mut self, number: usize) -> Result<&mut Message, Response> {
        self.check(number)?;
        number
            .checked_sub(1)
            .and_then(|i| self.maildrop.get_mut(i))
            .ok_or_else(|| reply::no_such_message(0))
    }
}

/// `n value` for every message not deleted (the lines of LIST and UIDL).
fn listed<'a>(
    maildrop: &'a [Message],
    value: impl Fn(&Message) -> String + 'a,
) -> impl Iterator<Item = String> + 'a {
    maildrop
        .iter()
        .enumerate()
        .filter(|(_, m)| !m.deleted)
        .map(move |(i, m)| format!("{} {}", i + 1, value(m)))
}

/// A unique-id as RFC 1939 7 allows it: 1 to 70 characters in 0x21..=0x7E. The driver
/// promises one; should it break the promise, characters outside the range become `_`.
fn safe_uidl(uidl: &str) -> String {
    let mut out: String = uidl
        .chars()
        .take(70)
        .map(|c| if ('!'..='~').contains(&c) { c } else { '_' })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Calls `f` with every line of `content` as it goes out, without its line end: lines end at
/// LF (a CR before it is part of the line end), the last line whether or not it has one. For
/// TOP (`top` Some(n)): the header lines, the blank line that ends the header, then at most n
/// body lines (a message without a blank line is all header).
fn for_each_line(content: &[u8], top: Option<u64>, mut f: impl FnMut(&[u8])) {
    // Some(lines sent) once in the body of a TOP.
    let mut body: Option<u64> = None;
    let mut rest = content;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (
                rest.get(..lf).unwrap_or_default(),
                rest.get(lf + 1..).unwrap_or_default(),
            ),
            None => (rest, &b""[..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match (top, body) {
            (None, _) => f(line),
            (Some(_), None) => {
                f(line);
                if line.is_empty() {
                    body = Some(0);
                }
            }
            (Some(max), Some(sent)) if sent < max => {
                f(line);
                body = Some(sent + 1);
            }
            (Some(_), Some(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(content: &[u8], top: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        for_each_line(content, top, |l| {
            out.push(String::from_utf8_lossy(l).into_owned())
        });
        out
    }

    #[test]
    fn lines_of_a_message() {
        let m = b"A: 1\r\nB: 2\r\n\r\none\r\ntwo\nthree\r\n";
        assert_eq!(lines(m, None), ["A: 1", "B: 2", "", "one", "two", "three"]);
        assert_eq!(lines(m, Some(0)), ["A: 1", "B: 2", ""]);
        assert_eq!(lines(m, Some(2)), ["A: 1", "B: 2", "", "one", "two"]);
        assert_eq!(lines(m, Some(u64::MAX)), lines(m, None));
        // No final line end; a bare CR stays inside its line; no blank line: all header.
        assert_eq!(lines(b"a\rb\r\nc", None), ["a\rb", "c"]);
        assert_eq!(lines(b"a\r", None), ["a"]);
        assert_eq!(lines(b"A: 1\r\nB: 2", Some(0)), ["A: 1", "B: 2"]);
        assert!(lines(b"", Some(3)).is_empty());
        assert_eq!(lines(b"\r\n", None), [""]);
    }

    #[test]
    fn uidls_cannot_break_a_line() {
        assert_eq!(
            safe_uidl("whqtswO00WBw418f9t5JxYwZ"),
            "whqtswO00WBw418f9t5JxYwZ"
        );
        assert_eq!(safe_uidl("a b\r\nc"), "a_b__c");
        assert_eq!(safe_uidl(""), "_");
        assert_eq!(safe_uidl(&"x".repeat(100)).len(), 70);
        assert_eq!(safe_uidl("é"), "_");
    }
}
