//! The SMTP server state machine. See the module docs of [`super`] for the session in SMTP
//! order; this file keeps the invariants:
//!
//! - At most one decision is outstanding (`pending`); while it is, no input is processed.
//! - Events are delivered in the order they arose (`events`); a decision's answer is applied
//!   only once the decision has actually been handed out.
//! - `txn` is Some exactly in `ExpectRcptOrData`, `ExpectMessage` and a kept `ExpectChunk`
//!   (and while a MessageEnd is pending); the command states are always recomputed from
//!   `helo`/`txn` by [`Session::command_state`], never set by hand.
//! - Input is processed only in the command, message, chunk and auth-response states; in
//!   `ExpectTlsHandshake` and `Closed` fed bytes are dropped.

use std::collections::VecDeque;

use wasmail_types::{ForwardPath, Reply, ReversePath};

use super::auth::{self, AuthExchange, AuthStep};
use super::bdat::{self, AfterDiscard, ChunkReceiver, Fate};
use super::command::{self, Command};
use super::data::DataReceiver;
use super::reply;
use super::{
    CHUNK_SIZE, DataKind, Event, MailParams, Mechanism, Progress, RcptParams, SessionConfig,
    Transaction,
};
use crate::line::{Line, LineReader, strip_line_end};
use crate::output::{Output, output_methods};
use crate::sanitize_hostname;

/// What the session waits for.
#[derive(Debug)]
enum State {
    /// Connected; the driver has not called `greet` or `refuse` yet.
    ExpectGreeting,
    /// After a 554 greeting: only QUIT is answered positively.
    ExpectQuit,
    /// No (accepted) HELO/EHLO yet.
    ExpectHelo,
    /// HELO done, no transaction.
    ExpectMail,
    /// A transaction is open.
    ExpectRcptOrData,
    /// DATA content up to `<CRLF>.<CRLF>`.
    ExpectMessage(DataReceiver),
    /// BDAT octets.
    ExpectChunk(ChunkReceiver),
    /// A SASL response line.
    ExpectAuthResponse(AuthExchange),
    /// `220 Ready to start TLS` was queued; waiting for `tls_started`.
    ExpectTlsHandshake,
    /// Done: `next` says Close.
    Closed,
}

/// A decision handed to the driver, with what its answer needs.
#[derive(Debug)]
enum Pending {
    Helo {
        name: String,
        extended: bool,
    },
    Auth {
        identity: String,
    },
    MailFrom {
        from: ReversePath,
        params: MailParams,
    },
    RcptTo {
        to: ForwardPath,
        params: RcptParams,
    },
    /// DATA: `chunk` is None; BDAT: the first chunk's size and LAST flag.
    DataStart {
        chunk: Option<(u64, bool)>,
    },
    MessageEnd,
}

/// The transaction with the session's own bookkeeping.
#[derive(Debug)]
struct Txn {
    public: Transaction,
    /// BDAT was used (DATA is then out of sequence); set at the first BDAT.
    bdat: bool,
    /// Message octets received so far (BDAT: over all chunks).
    size: u64,
    /// The message failed; this reply goes out at its end.
    aborted: Option<Reply>,
}

/// One SMTP server session: bytes in, events and reply bytes out. See [`super`].
///
/// Its `Debug` output shows the state, never buffered input (which may hold credentials).
pub struct Session {
    config: SessionConfig,
    /// `config.hostname` made safe for replies.
    hostname: String,
    tls: bool,
    input: LineReader,
    output: Output,
    /// Events not yet handed out; a decision carries what its answer needs.
    events: VecDeque<(Event, Option<Pending>)>,
    state: State,
    /// The decision handed out and not yet answered.
    pending: Option<Pending>,
    /// After a 554 greeting.
    quit_only: bool,
    helo: Option<(String, bool)>,
    account: Option<String>,
    txn: Option<Txn>,
    errors: u32,
    /// Message octets not yet handed out (at most [`CHUNK_SIZE`]).
    chunk: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state_name())
            .field("tls", &self.tls)
            .field("helo", &self.helo)
            .field("account", &self.account)
            .field("transaction", &self.transaction())
            .field("errors", &self.errors)
            .field("buffered_input", &self.input.len())
            .field("buffered_output", &self.output.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for a new connection; `tls`: the connection is already encrypted (implicit
    /// TLS). Nothing is sent until [`Session::greet`] or [`Session::refuse`].
    pub fn new(config: SessionConfig, tls: bool) -> Session {
        let hostname = sanitize_hostname(&config.hostname);
        let max_line = config.max_line_length.max(512);
        Session {
            config,
            hostname,
            tls,
            input: LineReader::new(max_line),
            output: Output::new(),
            events: VecDeque::new(),
            state: State::ExpectGreeting,
            pending: None,
            quit_only: false,
            helo: None,
            account: None,
            txn: None,
            errors: 0,
            chunk: Vec::new(),
        }
    }

    /// Queues `220 <hostname> ESMTP wasmail` (the driver calls it after the connect filters
    /// continue). Only the first `greet`/`refuse` counts.
    pub fn greet(&mut self) {
        if matches!(self.state, State::ExpectGreeting) {
            self.send(reply::greeting(&self.hostname));
            self.state = State::ExpectHelo;
        }
    }

    /// Queues this greeting instead. 554 (RFC 5321 3.1): then every command but QUIT gets
    /// `503 5.5.1` and QUIT gets 221 + Close. A 4xx greeting (421): Close right away.
    pub fn refuse(&mut self, reply: Reply) {
        if !matches!(self.state, State::ExpectGreeting) {
            return;
        }
        let transient = reply.is_transient();
        self.send(reply);
        if transient {
            self.close();
        } else {
            self.quit_only = true;
            self.state = State::ExpectQuit;
        }
    }

    /// Appends received bytes. While framing commands the session never holds more than
    /// `max_line_length` plus what one call feeds; message content is handed out in chunks.
    /// Bytes fed while waiting for a TLS handshake or after Close are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::ExpectTlsHandshake | State::Closed) {
            self.input.feed(bytes);
        }
    }

    /// Processes buffered input until something needs the driver. With a decision unanswered
    /// it returns [`Progress::AwaitingAnswer`] and does nothing else.
    // Not an Iterator: `next` never ends (Close repeats) and must not be driven by adapters
    // while decisions are pending. The name is the sans-I/O convention (imap-next, rustls).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Progress {
        loop {
            if let Some((event, pending)) = self.events.pop_front() {
                if pending.is_some() {
                    self.pending = pending;
                }
                return Progress::Event(event);
            }
            if self.pending.is_some() {
                return Progress::AwaitingAnswer;
            }
            let progress = match self.state {
                State::Closed => return Progress::Close,
                State::ExpectGreeting => return Progress::NeedInput,
                State::ExpectTlsHandshake => return Progress::AwaitingAnswer,
                State::ExpectMessage(_) => self.receive_data(),
                State::ExpectChunk(_) => self.receive_chunk(),
                State::ExpectAuthResponse(_)
                | State::ExpectQuit
                | State::ExpectHelo
                | State::ExpectMail
                | State::ExpectRcptOrData => self.receive_line(),
            };
            if let Some(progress) = progress {
                return progress;
            }
        }
    }

    /// Answers the pending decision positively: Helo -> 250 (EHLO: the capability list);
    /// MailFrom -> `250 2.1.0 Ok`; RcptTo -> `250 2.1.5 Ok` (the recipient joins the
    /// transaction); DataStart -> DATA: `354 End data with <CR><LF>.<CR><LF>`, BDAT: start
    /// taking the chunk. Auth is meant to be answered with [`Session::authenticated`]; `accept`
    /// authenticates as the identity. MessageEnd is meant to get [`Session::reply`]; `accept`
    /// sends `250 2.0.0 Ok: queued`. Without a pending decision it does nothing.
    pub fn accept(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        match pending {
            Pending::Helo { name, extended } => {
                let r = if extended {
                    reply::ehlo(
                        &self.hostname,
                        self.config.max_message_size,
                        self.config.starttls && !self.tls,
                        self.config.auth,
                    )
                } else {
                    reply::helo(&self.hostname)
                };
                self.helo = Some((name, extended));
                self.send(r);
                self.settle();
            }
            Pending::Auth { identity } => self.authenticated_as(identity),
            Pending::MailFrom { from, params } => {
                self.txn = Some(Txn {
                    public: Transaction {
                        from,
                        params,
                        recipients: Vec::new(),
                    },
                    bdat: false,
                    size: 0,
                    aborted: None,
                });
                self.send(reply::mail_ok());
                self.settle();
            }
            Pending::RcptTo { to, params } => {
                if let Some(txn) = &mut self.txn {
                    txn.public.recipients.push((to, params));
                    self.send(reply::rcpt_ok());
                }
            }
            Pending::DataStart { chunk: None } => {
                self.send(reply::start_data());
                self.state = State::ExpectMessage(DataReceiver::new());
            }
            Pending::DataStart {
                chunk: Some((size, last)),
            } => {
                self.state = State::ExpectChunk(ChunkReceiver::new(size, last, Fate::Keep));
            }
            Pending::MessageEnd => self.end_transaction(reply::message_ok()),
        }
    }

    /// Answers the pending decision with this reply: a refusal for Helo/MailFrom/RcptTo/
    /// DataStart/Auth; the final reply, positive or not, for MessageEnd. After MessageEnd or a
    /// refused DataStart the transaction is reset (RFC 5321 4.1.4); HELO and AUTH state stay.
    /// A refused first BDAT: its octets are still consumed (discarded), this reply is sent
    /// after them, and later BDATs get `503 5.5.1` until a new MAIL. A 421 reply also closes
    /// the session. Without a pending decision it does nothing.
    pub fn reply(&mut self, reply: Reply) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let closing = reply.code() == 421;
        match pending {
            Pending::Helo { .. }
            | Pending::Auth { .. }
            | Pending::MailFrom { .. }
            | Pending::RcptTo { .. } => self.send(reply),
            Pending::DataStart { chunk: None } => {
                self.txn = None;
                self.send(reply);
                self.settle();
            }
            Pending::DataStart {
                chunk: Some((size, last)),
            } if !closing => {
                let fate = Fate::Discard {
                    reply,
                    error: false,
                    then: AfterDiscard::Drop { announce: false },
                };
                self.state = State::ExpectChunk(ChunkReceiver::new(size, last, fate));
            }
            Pending::DataStart { chunk: Some(_) } => {
                self.txn = None;
                self.send(reply);
            }
            Pending::MessageEnd => self.end_transaction(reply),
        }
        if closing {
            self.close();
        }
    }

    /// Answers a pending Auth: `235 2.7.0 Authentication successful`, remembers the account.
    /// Without a pending Auth it does nothing.
    pub fn authenticated(&mut self, account: String) {
        if matches!(self.pending, Some(Pending::Auth { .. })) {
            self.pending = None;
            self.authenticated_as(account);
        }
    }

    /// Queues the reply, then [`Progress::Close`] (filter verdict `disconnect`, shutdown, idle
    /// timeout: 421). Usable at any time, with or without a pending decision; events not yet
    /// handed out are dropped.
    pub fn disconnect(&mut self, reply: Reply) {
        self.send(reply);
        self.close();
    }

    /// After [`Event::StartTls`] the driver did the handshake: forget everything the client
    /// said (RFC 3207 4.2: back to ExpectHelo, no auth), STARTTLS is no longer offered
    /// (`503 5.5.1`), and AUTH is offered according to the new values.
    pub fn tls_started(&mut self, auth: bool, auth_needs_tls: bool) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.tls = true;
        self.config.auth = auth;
        self.config.auth_needs_tls = auth_needs_tls;
        self.helo = None;
        self.account = None;
        self.txn = None;
        self.pending = None;
        self.events.clear();
        self.chunk.clear();
        self.input.clear();
        self.state = State::ExpectHelo;
    }

    output_methods!();

    /// Received octets not yet processed.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// The current transaction (after MAIL was accepted): reverse path, params, accepted
    /// recipients. Still available while MessageEnd is pending.
    pub fn transaction(&self) -> Option<&Transaction> {
        self.txn.as_ref().map(|t| &t.public)
    }

    /// For `Received: ... with X` (RFC 3848 / RFC 6531): "SMTP" after HELO; "ESMTP" plus "S"
    /// for TLS and "A" for an authenticated client after EHLO; "UTF8SMTP..." when the
    /// transaction uses SMTPUTF8.
    pub fn with_protocol(&self) -> &'static str {
        if !self.helo.as_ref().is_some_and(|(_, extended)| *extended) {
            return "SMTP";
        }
        let utf8 = self.txn.as_ref().is_some_and(|t| t.public.params.smtputf8);
        match (utf8, self.tls, self.account.is_some()) {
            (false, false, false) => "ESMTP",
            (false, true, false) => "ESMTPS",
            (false, false, true) => "ESMTPA",
            (false, true, true) => "ESMTPSA",
            (true, false, false) => "UTF8SMTP",
            (true, true, false) => "UTF8SMTPS",
            (true, false, true) => "UTF8SMTPA",
            (true, true, true) => "UTF8SMTPSA",
        }
    }

    /// The accepted HELO/EHLO name.
    pub fn helo_name(&self) -> Option<&str> {
        self.helo.as_ref().map(|(name, _)| name.as_str())
    }

    /// The authenticated account.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn is_authenticated(&self) -> bool {
        self.account.is_some()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Error replies sent so far (the count that `max_errors` limits).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// The state's name for logs: `ExpectHelo`, `ExpectMail`, `ExpectRcptOrData`,
    /// `ExpectMessage`, `ExpectChunk`, `ExpectAuthResponse`, `ExpectTlsHandshake`,
    /// `ExpectGreeting`, `ExpectQuit` or `Closed`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::ExpectGreeting => "ExpectGreeting",
            State::ExpectQuit => "ExpectQuit",
            State::ExpectHelo => "ExpectHelo",
            State::ExpectMail => "ExpectMail",
            State::ExpectRcptOrData => "ExpectRcptOrData",
            State::ExpectMessage(_) => "ExpectMessage",
            State::ExpectChunk(_) => "ExpectChunk",
            State::ExpectAuthResponse(_) => "ExpectAuthResponse",
            State::ExpectTlsHandshake => "ExpectTlsHandshake",
            State::Closed => "Closed",
        }
    }

    // ---------------------------------------------------------------------------------------
    // Output, errors, state bookkeeping.

    fn send(&mut self, reply: Reply) {
        reply.write_to(self.output.buf());
    }

    /// Sends a reply to a client mistake and counts it; at `max_errors`, 421 and close.
    fn error(&mut self, reply: Reply) {
        self.send(reply);
        self.errors = self.errors.saturating_add(1);
        if self.config.max_errors != 0 && self.errors >= self.config.max_errors {
            self.send(reply::closing(&self.hostname, "Too many errors"));
            self.close();
        }
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.pending = None;
        self.events.clear();
        self.chunk.clear();
        self.input.clear();
    }

    /// The command state that `helo` and `txn` imply.
    fn command_state(&self) -> State {
        if self.quit_only {
            State::ExpectQuit
        } else if self.helo.is_none() {
            State::ExpectHelo
        } else if self.txn.is_some() {
            State::ExpectRcptOrData
        } else {
            State::ExpectMail
        }
    }

    /// Returns to the command state that `helo` and `txn` imply (unless closed).
    fn settle(&mut self) {
        if !matches!(self.state, State::Closed) {
            self.state = self.command_state();
        }
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back((event, None));
    }

    fn decide(&mut self, event: Event, pending: Pending) {
        self.events.push_back((event, Some(pending)));
    }

    /// Drops an open transaction on the session's own account, announcing it.
    fn reset_transaction(&mut self) {
        if self.txn.take().is_some() {
            self.emit(Event::Reset);
        }
    }

    /// The end of a transaction's message: the final reply, then a fresh start (4.1.4).
    fn end_transaction(&mut self, reply: Reply) {
        self.txn = None;
        self.send(reply);
        self.settle();
    }

    fn authenticated_as(&mut self, account: String) {
        self.account = Some(account);
        self.send(reply::authenticated());
    }

    /// Hands out the buffered message octets as one chunk event.
    fn flush_chunk(&mut self) {
        if !self.chunk.is_empty() {
            let chunk = std::mem::take(&mut self.chunk);
            self.emit(Event::MessageChunk(chunk));
        }
    }

    /// The message failed: no more chunks, the driver drops what it has, `reply` at the end.
    fn abort_message(&mut self, reply: Reply) {
        let Some(txn) = &mut self.txn else { return };
        if txn.aborted.is_some() {
            return;
        }
        txn.aborted = Some(reply.clone());
        self.chunk.clear();
        match &mut self.state {
            State::ExpectMessage(rx) => rx.discard(),
            State::ExpectChunk(rx) => {
                rx.fate = Fate::Discard {
                    reply: reply.clone(),
                    error: true,
                    then: AfterDiscard::Drop { announce: true },
                };
            }
            _ => {}
        }
        self.emit(Event::MessageAborted { reply });
    }

    // ---------------------------------------------------------------------------------------
    // Input.

    /// One command (or SASL response) line.
    fn receive_line(&mut self) -> Option<Progress> {
        let line = match self.input.next_line() {
            Line::Complete(line) => strip_line_end(line).to_vec(),
            Line::TooLong => {
                if matches!(self.state, State::ExpectAuthResponse(_)) {
                    self.settle();
                }
                self.error(reply::line_too_long());
                return None;
            }
            Line::Incomplete => {
                if self.input.discarded_too_much() {
                    self.send(reply::closing(&self.hostname, "Line too long"));
                    self.close();
                    return None;
                }
                return Some(Progress::NeedInput);
            }
        };
        if matches!(self.state, State::ExpectAuthResponse(_)) {
            let State::ExpectAuthResponse(exchange) =
                std::mem::replace(&mut self.state, State::ExpectMail)
            else {
                return None;
            };
            self.settle();
            self.auth_step(auth::respond(exchange, &line, false));
            return None;
        }
        match command::parse(&line) {
            Ok(cmd) => self.command(cmd),
            Err(_) if self.quit_only => self.error(quit_only()),
            Err(reply) => self.error(reply),
        }
        None
    }

    /// DATA content.
    fn receive_data(&mut self) -> Option<Progress> {
        if self.chunk.len() >= CHUNK_SIZE {
            self.flush_chunk();
            return None;
        }
        let Session {
            state,
            input,
            chunk,
            ..
        } = self;
        let State::ExpectMessage(rx) = state else {
            return None;
        };
        let buffered = input.buffered();
        if buffered.is_empty() {
            if chunk.is_empty() {
                return Some(Progress::NeedInput);
            }
            self.flush_chunk();
            return None;
        }
        let room = CHUNK_SIZE - chunk.len();
        let (used, done) = rx.receive(buffered.get(..room).unwrap_or(buffered), chunk);
        let (size, bare) = (rx.size(), rx.saw_bare_line_end());
        input.consume(used);
        if let Some(txn) = &mut self.txn {
            txn.size = size;
        }
        let max = self.config.max_message_size;
        if max != 0 && size > max {
            self.abort_message(reply::too_big());
        } else if bare {
            self.abort_message(reply::bare_line_end());
        }
        if done {
            self.flush_chunk();
            self.message_complete();
        }
        None
    }

    /// BDAT octets.
    fn receive_chunk(&mut self) -> Option<Progress> {
        if self.chunk.len() >= CHUNK_SIZE {
            self.flush_chunk();
            return None;
        }
        let Session {
            state,
            input,
            chunk,
            txn,
            ..
        } = self;
        let State::ExpectChunk(rx) = state else {
            return None;
        };
        if !rx.is_complete() {
            let buffered = input.buffered();
            if buffered.is_empty() {
                if chunk.is_empty() {
                    return Some(Progress::NeedInput);
                }
                self.flush_chunk();
                return None;
            }
            let room = CHUNK_SIZE - chunk.len();
            let n = rx.take(buffered.len().min(room));
            if matches!(rx.fate, Fate::Keep) {
                chunk.extend_from_slice(buffered.get(..n).unwrap_or_default());
                if let Some(txn) = txn {
                    txn.size = txn.size.saturating_add(n as u64);
                }
            }
            input.consume(n);
            if !rx.is_complete() {
                return None;
            }
        }
        // The chunk is complete.
        self.flush_chunk();
        let State::ExpectChunk(rx) = std::mem::replace(&mut self.state, State::ExpectMail) else {
            return None;
        };
        match rx.fate {
            Fate::Keep if rx.is_last() => {
                self.state = State::ExpectRcptOrData;
                self.message_complete();
            }
            Fate::Keep => {
                self.settle();
                self.send(reply::chunk_ok(rx.size()));
            }
            Fate::Discard { reply, error, then } => {
                match then {
                    AfterDiscard::Unchanged => {}
                    AfterDiscard::Drop { announce: true } => self.reset_transaction(),
                    AfterDiscard::Drop { announce: false } => self.txn = None,
                }
                self.settle();
                if error {
                    self.error(reply);
                } else {
                    self.send(reply);
                }
            }
        }
        None
    }

    /// The whole message (DATA or the LAST chunk) is in: MessageEnd, or the abort reply.
    fn message_complete(&mut self) {
        let Some(txn) = &mut self.txn else {
            self.settle();
            return;
        };
        match txn.aborted.take() {
            Some(reply) => {
                self.reset_transaction();
                self.settle();
                self.error(reply);
            }
            None => {
                let size = txn.size;
                self.state = State::ExpectRcptOrData;
                self.decide(Event::MessageEnd { size }, Pending::MessageEnd);
            }
        }
    }

    fn auth_step(&mut self, step: AuthStep) {
        match step {
            AuthStep::Challenge(r, exchange) => {
                self.send(r);
                self.state = State::ExpectAuthResponse(exchange);
            }
            AuthStep::Done(c) => self.decide(
                Event::Auth {
                    mechanism: c.mechanism,
                    authzid: c.authzid,
                    identity: c.identity.clone(),
                    secret: c.secret,
                },
                Pending::Auth {
                    identity: c.identity,
                },
            ),
            AuthStep::Failed { reply, error: true } => self.error(reply),
            AuthStep::Failed {
                reply,
                error: false,
            } => self.send(reply),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Commands.

    fn command(&mut self, cmd: Command) {
        if self.quit_only {
            match cmd {
                Command::Quit => {
                    self.send(reply::bye());
                    self.close();
                }
                Command::Bdat { size, last } => {
                    self.discard_chunk(size, last, quit_only(), true, AfterDiscard::Unchanged)
                }
                _ => self.error(quit_only()),
            }
            return;
        }
        match cmd {
            Command::Helo { name, extended } => {
                self.reset_transaction();
                self.settle();
                self.decide(
                    Event::Helo {
                        name: name.clone(),
                        extended,
                    },
                    Pending::Helo { name, extended },
                );
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => self.data(),
            Command::Bdat { size, last } => self.bdat(size, last),
            Command::Rset => {
                self.reset_transaction();
                self.settle();
                self.send(reply::ok());
            }
            Command::Noop => self.send(reply::ok()),
            Command::Quit => {
                self.send(reply::bye());
                self.close();
            }
            // `config.vrfy` (real verification) is not implemented: always 252.
            Command::Vrfy => self.send(reply::vrfy()),
            Command::Expn => self.error(reply::expn()),
            Command::Help => self.send(reply::help()),
            Command::StartTls { argument } => self.starttls(argument),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) {
        if self.helo.is_none() {
            return self.error(reply::bad_sequence("Send HELO/EHLO first"));
        }
        if self.txn.is_some() {
            return self.error(reply::bad_sequence("Nested MAIL command"));
        }
        if self.config.require_auth && self.account.is_none() {
            return self.error(reply::auth_required());
        }
        if from.address().is_some_and(|a| a.needs_smtputf8()) && !params.smtputf8 {
            return self.error(reply::smtputf8_required());
        }
        let max = self.config.max_message_size;
        if max != 0 && params.size.is_some_and(|s| s > max) {
            return self.error(reply::too_big());
        }
        self.decide(
            Event::MailFrom {
                from: from.clone(),
                params: params.clone(),
            },
            Pending::MailFrom { from, params },
        );
    }

    fn rcpt(&mut self, to: ForwardPath, params: RcptParams) {
        let Some(txn) = &self.txn else {
            return self.error(reply::bad_sequence("Need MAIL command"));
        };
        if to.address().is_some_and(|a| a.needs_smtputf8()) && !txn.public.params.smtputf8 {
            return self.error(reply::smtputf8_required());
        }
        let max = self.config.max_recipients;
        if max != 0 && txn.public.recipients.len() >= max {
            // A limit the client must expect (RFC 5321 4.5.3.1.10), not a mistake: not counted.
            return self.send(reply::too_many_recipients());
        }
        self.decide(
            Event::RcptTo {
                to: to.clone(),
                params: params.clone(),
            },
            Pending::RcptTo { to, params },
        );
    }

    fn data(&mut self) {
        let Some(txn) = &self.txn else {
            return self.error(reply::bad_sequence("Need MAIL command"));
        };
        if txn.bdat {
            return self.error(reply::bad_sequence("DATA after BDAT"));
        }
        if txn.public.recipients.is_empty() {
            // Normal after pipelined recipients that were all refused: not counted.
            return self.send(reply::no_valid_recipients());
        }
        self.decide(
            Event::DataStart {
                kind: DataKind::Data,
            },
            Pending::DataStart { chunk: None },
        );
    }

    fn bdat(&mut self, size: u64, last: bool) {
        let max = self.config.max_message_size;
        let Some(txn) = &mut self.txn else {
            let r = reply::bad_sequence("Need MAIL command");
            return self.discard_chunk(size, last, r, true, AfterDiscard::Unchanged);
        };
        if txn.public.recipients.is_empty() {
            let r = reply::no_valid_recipients();
            return self.discard_chunk(size, last, r, false, AfterDiscard::Unchanged);
        }
        if !bdat::fits(txn.size, size, max) {
            if txn.bdat {
                // The message is under way: the driver drops what it spooled.
                self.state = State::ExpectChunk(ChunkReceiver::new(size, last, Fate::Keep));
                self.abort_message(reply::too_big());
                return;
            }
            let then = AfterDiscard::Drop { announce: true };
            return self.discard_chunk(size, last, reply::too_big(), true, then);
        }
        if txn.bdat {
            self.state = State::ExpectChunk(ChunkReceiver::new(size, last, Fate::Keep));
            return;
        }
        txn.bdat = true;
        self.decide(
            Event::DataStart {
                kind: DataKind::Bdat,
            },
            Pending::DataStart {
                chunk: Some((size, last)),
            },
        );
    }

    fn discard_chunk(
        &mut self,
        size: u64,
        last: bool,
        reply: Reply,
        error: bool,
        then: AfterDiscard,
    ) {
        let fate = Fate::Discard { reply, error, then };
        self.state = State::ExpectChunk(ChunkReceiver::new(size, last, fate));
    }

    fn starttls(&mut self, argument: bool) {
        if self.tls {
            return self.error(reply::bad_sequence("Already using TLS"));
        }
        if !self.config.starttls {
            return self.error(reply::not_available("STARTTLS"));
        }
        if argument {
            return self.error(reply::syntax("STARTTLS"));
        }
        if self.txn.is_some() {
            return self.error(reply::bad_sequence("MAIL transaction in progress"));
        }
        self.send(reply::ready_for_tls());
        // CVE-2011-0411: nothing sent in plaintext after STARTTLS may count as sent over TLS.
        self.input.clear();
        self.state = State::ExpectTlsHandshake;
        self.emit(Event::StartTls);
    }

    fn auth(&mut self, mechanism: Option<Mechanism>, initial: Option<String>) {
        if !self.config.auth {
            return self.error(if self.config.auth_needs_tls {
                reply::encryption_required()
            } else {
                reply::not_available("AUTH")
            });
        }
        if self.helo.is_none() {
            return self.error(reply::bad_sequence("Send EHLO first"));
        }
        if self.account.is_some() {
            return self.error(reply::bad_sequence("Already authenticated"));
        }
        if self.txn.is_some() {
            return self.error(reply::bad_sequence(
                "AUTH not allowed during a mail transaction",
            ));
        }
        let Some(mechanism) = mechanism else {
            return self.error(reply::unknown_mechanism());
        };
        self.auth_step(auth::start(mechanism, initial.as_deref()));
    }
}

/// The reply to everything but QUIT after a 554 greeting.
fn quit_only() -> Reply {
    reply::bad_sequence("Service not available, send QUIT")
}
