//! The IMAP server state machine. See the module docs of [`super`] for who decides what; this
//! file keeps the invariants:
//!
//! - At most one event is outstanding. It waits in `event` until `next` hands it out, and the
//!   state says what answers it; an answer counts only once its event has been handed out.
//! - Commands are processed one at a time, in order: while the driver works on one, input
//!   stays buffered, so responses go out in the order of the commands.
//! - A command is gathered whole (lines and literals) before it is parsed, within
//!   `max_command_size`; only an APPEND message bypasses that, streamed in chunks. So a client
//!   can never make the session hold more than the limits plus one read.
//! - Bytes fed while waiting for a TLS handshake, or after Close, are dropped.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::encode::Encoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{IString, NString, Tag, Text, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::response::{Capability, Code, Data, Response, Status};
use imap_codec::{CommandCodec, ResponseCodec};

use super::framing::{self, Announcement};
use super::{Command, Event, LoginFailure, Mechanism, Progress, SessionConfig};
use crate::line::{Line, LineReader, strip_line_end};
use crate::output::{Output, output_methods};
use crate::sanitize_hostname;
use crate::sasl::{self, Step};

/// RFC 2683 3.2.1.5: servers should accept command lines of at least 8000 octets; below 1000
/// nothing real works.
const MIN_LINE_LENGTH: usize = 1000;
/// The longest AUTHENTICATE response line (base64 of a PLAIN message with long names).
pub(crate) const MAX_AUTH_LINE: usize = 16 * 1024;
/// Output waiting to be written beyond which the driver should flush before adding more (it is
/// told through [`Session::output_full`]).
const MAX_QUEUED_OUTPUT: usize = 4 * 1024 * 1024;
/// APPEND message octets handed out per [`Event::AppendData`].
const APPEND_CHUNK: usize = 64 * 1024;

/// The connection state of RFC 3501 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    NotAuthenticated,
    Authenticated,
    /// A mailbox is selected (read-only after EXAMINE).
    Selected {
        read_only: bool,
    },
}

/// What the session waits for.
#[derive(Debug)]
enum State {
    /// Connected; the driver has not called `greet` yet.
    ExpectGreeting,
    /// Gathering the next command: its lines, and `literal` octets of a literal into `command`.
    Ready { literal: u64 },
    /// An AUTHENTICATE response line.
    ExpectSaslResponse {
        tag: Tag<'static>,
        exchange: sasl::Exchange,
    },
    /// Event::Login is out: `logged_in` or `login_failed`.
    ExpectLogin { tag: Tag<'static> },
    /// STARTTLS's OK was queued: `tls_started`.
    ExpectTlsHandshake,
    /// Event::Command is out: `done` (or `idle`).
    ExpectCompletion { tag: Tag<'static> },
    /// Event::AppendStart is out: `append_go` or `done`.
    ExpectAppendGo {
        tag: Tag<'static>,
        length: u64,
        sync: bool,
    },
    /// Streaming the APPEND message to the driver.
    AppendData { tag: Tag<'static>, remaining: u64 },
    /// The APPEND message is complete; the rest of its command line (CRLF) is next.
    AppendLineEnd { tag: Tag<'static> },
    /// Event::AppendEnd is out: `done`.
    ExpectAppendCompletion { tag: Tag<'static> },
    /// Dropping a refused non-synchronizing literal, then the rest of its command.
    DiscardLiteral { remaining: u64 },
    /// Dropping the lines of a refused command after a discarded literal, until one that does
    /// not announce another literal.
    DiscardCommand,
    /// `+ idling` was sent; DONE ends it (RFC 2177).
    Idling { tag: Tag<'static> },
    /// Done: `next` says Close.
    Closed,
}

/// One IMAP server session: bytes in, events and response bytes out. See [`super`].
///
/// Its `Debug` output shows the state, never buffered input (which may hold credentials).
pub struct Session {
    config: SessionConfig,
    hostname: String,
    tls: bool,
    input: LineReader,
    output: Output,
    state: State,
    level: Level,
    /// The command gathered so far (lines and literals).
    command: Vec<u8>,
    /// The event not yet handed out.
    event: Option<Event>,
    account: Option<String>,
    /// RFC 7162 3.1: CONDSTORE was enabled (ENABLE, or a command that implies it).
    condstore: bool,
    errors: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state_name())
            .field("level", &self.level)
            .field("tls", &self.tls)
            .field("account", &self.account)
            .field("errors", &self.errors)
            .field("buffered_input", &self.input.len())
            .field("buffered_output", &self.output.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session for a new connection; `tls`: the connection is already encrypted (implicit
    /// TLS, port 993). Nothing is sent until [`Session::greet`].
    pub fn new(mut config: SessionConfig, tls: bool) -> Session {
        let hostname = sanitize_hostname(&config.hostname);
        config.max_line_length = config.max_line_length.max(MIN_LINE_LENGTH);
        config.max_command_size = config.max_command_size.max(config.max_line_length);
        if tls {
            config.starttls = false;
        }
        Session {
            input: LineReader::new(config.max_line_length),
            config,
            hostname,
            tls,
            output: Output::with_cap(MAX_QUEUED_OUTPUT),
            state: State::ExpectGreeting,
            level: Level::NotAuthenticated,
            command: Vec::new(),
            event: None,
            account: None,
            condstore: false,
            errors: 0,
        }
    }

    /// Queues `* OK [CAPABILITY ...] <hostname> IMAP4rev1 server ready`. Only the first call
    /// counts.
    pub fn greet(&mut self) {
        if matches!(self.state, State::ExpectGreeting) {
            let text = format!("{} IMAP4rev1 server ready", self.hostname);
            let code = Some(Code::Capability(self.capabilities()));
            self.status(Status::ok(None, code, text));
            self.state = State::Ready { literal: 0 };
        }
    }

    /// Appends received bytes (dropped while waiting for a TLS handshake and after Close).
    pub fn feed(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::ExpectTlsHandshake | State::Closed) {
            self.input.feed(bytes);
        }
    }

    /// Processes buffered input until something needs the driver.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Progress {
        loop {
            if matches!(self.state, State::Closed) {
                return Progress::Close;
            }
            if let Some(event) = self.event.take() {
                return Progress::Event(event);
            }
            if self.awaiting_answer() {
                return Progress::AwaitingAnswer;
            }
            if self.input.discarded_too_much() {
                self.bye("Command line too long, closing");
                continue;
            }
            if !self.step() {
                return Progress::NeedInput;
            }
        }
    }

    output_methods!();

    /// More output waits than a driver should let pile up: it writes before adding a large
    /// response (a FETCH of many bodies is answered in slices).
    pub fn output_full(&self) -> bool {
        self.output.is_full()
    }

    // ----- answers -----

    /// Answers [`Event::Login`]: `tag OK [CAPABILITY ...] Logged in`, authenticated state.
    pub fn logged_in(&mut self, account: String) {
        if let State::ExpectLogin { tag } = &self.state
            && self.event.is_none()
        {
            let tag = tag.clone();
            self.level = Level::Authenticated;
            self.account = Some(account);
            let code = Some(Code::Capability(self.capabilities()));
            self.status(Status::ok(Some(tag), code, "Logged in"));
            self.state = State::Ready { literal: 0 };
        }
    }

    /// Answers [`Event::Login`] with `NO [AUTHENTICATIONFAILED]` or `NO [UNAVAILABLE]`.
    pub fn login_failed(&mut self, why: LoginFailure) {
        if let State::ExpectLogin { tag } = &self.state
            && self.event.is_none()
        {
            let tag = tag.clone();
            let (code, text) = match why {
                LoginFailure::Credentials => ("AUTHENTICATIONFAILED", "Authentication failed"),
                LoginFailure::Temporary => {
                    ("UNAVAILABLE", "Authentication temporarily unavailable")
                }
            };
            self.status(Status::no(Some(tag), Some(other_code(code)), text));
            self.state = State::Ready { literal: 0 };
            if why == LoginFailure::Credentials {
                self.count_error();
            }
        }
    }

    /// Answers [`Event::StartTls`]: the connection is encrypted now. `plaintext_auth`: LOGIN
    /// and AUTHENTICATE are allowed from here on.
    pub fn tls_started(&mut self, plaintext_auth: bool) {
        if matches!(self.state, State::ExpectTlsHandshake) && self.event.is_none() {
            self.tls = true;
            self.config.starttls = false;
            self.config.plaintext_auth = plaintext_auth;
            self.state = State::Ready { literal: 0 };
        }
    }

    /// Queues an untagged response (while a command runs, or at any time the driver has news
    /// for the client: RFC 3501 7 lets the server send untagged data whenever).
    pub fn respond(&mut self, data: Data<'_>) {
        if !matches!(self.state, State::Closed | State::ExpectGreeting) {
            self.encode(&Response::Data(data));
        }
    }

    /// Queues an untagged `* OK [code] text` (or NO/BAD: `status` without a tag).
    pub fn respond_status(&mut self, status: Status<'_>) {
        if !matches!(self.state, State::Closed | State::ExpectGreeting) {
            self.encode(&Response::Status(status));
        }
    }

    /// Records a change of the selected mailbox by the command running: `Some(read_only)` after
    /// SELECT/EXAMINE, `None` after CLOSE, UNSELECT or a failed SELECT.
    pub fn selected(&mut self, mailbox: Option<bool>) {
        if self.level != Level::NotAuthenticated {
            self.level = match mailbox {
                Some(read_only) => Level::Selected { read_only },
                None => Level::Authenticated,
            };
        }
    }

    /// Completes the command running ([`Event::Command`], a refused [`Event::AppendStart`],
    /// [`Event::AppendEnd`]) with `tag OK|NO|BAD [code] text`; a BAD counts as an error.
    pub fn done(&mut self, kind: Completion, code: Option<Code<'_>>, text: &str) {
        let tag = match &self.state {
            State::ExpectCompletion { tag }
            | State::ExpectAppendCompletion { tag }
            | State::ExpectAppendGo { tag, .. }
                if self.event.is_none() =>
            {
                tag.clone()
            }
            _ => return,
        };
        let refused_literal = match self.state {
            State::ExpectAppendGo { length, sync, .. } if !sync => Some(length),
            _ => None,
        };
        let text = sanitize_text(text);
        let status = match kind {
            Completion::Ok => Status::ok(Some(tag), code, text),
            Completion::No => Status::no(Some(tag), code, text),
            Completion::Bad => Status::bad(Some(tag), code, text),
        };
        let status = status.map(|s| s.into_static());
        self.status(status);
        self.state = match refused_literal {
            // The client sends a non-synchronizing literal whatever we say: drop it.
            Some(length) => State::DiscardLiteral { remaining: length },
            None => State::Ready { literal: 0 },
        };
        if kind == Completion::Bad {
            self.count_error();
        }
    }

    /// Answers [`Event::AppendStart`]: the message is wanted. A synchronizing literal gets its
    /// continuation request now.
    pub fn append_go(&mut self) {
        if let State::ExpectAppendGo { tag, length, sync } = &self.state
            && self.event.is_none()
        {
            if *sync {
                self.output
                    .buf()
                    .extend_from_slice(b"+ Ready for literal data\r\n");
            }
            self.state = State::AppendData {
                tag: tag.clone(),
                remaining: *length,
            };
        }
    }

    /// Answers [`Event::Command`] for IDLE: `+ idling`; the session waits for DONE and then
    /// completes the command itself. While [`Session::is_idling`], the driver sends mailbox
    /// changes as they happen.
    pub fn idle(&mut self) {
        if let State::ExpectCompletion { tag } = &self.state
            && self.event.is_none()
        {
            self.output.buf().extend_from_slice(b"+ idling\r\n");
            self.state = State::Idling { tag: tag.clone() };
        }
    }

    /// Says `* BYE text` and closes (idle timeout, shutdown).
    pub fn disconnect(&mut self, text: &str) {
        self.bye(text);
    }

    /// Marks CONDSTORE as enabled (RFC 7162 3.1: SELECT (CONDSTORE), FETCH MODSEQ, a SEARCH or
    /// STORE with a modseq enable it implicitly).
    pub fn enable_condstore(&mut self) {
        self.condstore = true;
    }

    // ----- what the driver may ask -----

    /// The client is sending literal data (after `+`, or a non-synchronizing literal).
    pub fn expects_literal(&self) -> bool {
        matches!(
            self.state,
            State::Ready { literal: 1.. } | State::AppendData { .. } | State::DiscardLiteral { .. }
        )
    }

    pub fn is_idling(&self) -> bool {
        matches!(self.state, State::Idling { .. })
    }

    pub fn condstore(&self) -> bool {
        self.condstore
    }

    /// `Some(read_only)` while a mailbox is selected.
    pub fn selection(&self) -> Option<bool> {
        match self.level {
            Level::Selected { read_only } => Some(read_only),
            _ => None,
        }
    }

    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Octets of unprocessed input held.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// The state's name, for logs.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::ExpectGreeting => "ExpectGreeting",
            State::Ready { .. } => match self.level {
                Level::NotAuthenticated => "NotAuthenticated",
                Level::Authenticated => "Authenticated",
                Level::Selected { .. } => "Selected",
            },
            State::ExpectSaslResponse { .. } => "ExpectSaslResponse",
            State::ExpectLogin { .. } => "ExpectLogin",
            State::ExpectTlsHandshake => "ExpectTlsHandshake",
            State::ExpectCompletion { .. } => "ExpectCompletion",
            State::ExpectAppendGo { .. } => "ExpectAppendGo",
            State::AppendData { .. } => "AppendData",
            State::AppendLineEnd { .. } => "AppendLineEnd",
            State::ExpectAppendCompletion { .. } => "ExpectAppendCompletion",
            State::DiscardLiteral { .. } | State::DiscardCommand => "DiscardCommand",
            State::Idling { .. } => "Idling",
            State::Closed => "Closed",
        }
    }

    /// The capabilities as CAPABILITY lists them now.
    pub fn capabilities(&self) -> Vec1<Capability<'static>> {
        let mut caps = vec![Capability::Imap4Rev1];
        if self.config.starttls && self.level == Level::NotAuthenticated {
            caps.push(Capability::StartTls);
        }
        if self.level == Level::NotAuthenticated {
            if self.config.plaintext_auth {
                caps.push(Capability::Auth(AuthMechanism::Plain));
                caps.push(Capability::Auth(AuthMechanism::Login));
            } else {
                caps.push(Capability::LoginDisabled);
            }
        }
        caps.extend([
            Capability::SaslIr,
            Capability::LiteralPlus,
            Capability::Id,
            Capability::Enable,
            Capability::Idle,
            Capability::Namespace,
            Capability::UidPlus,
            Capability::Move,
            Capability::Unselect,
            Capability::CondStore,
        ]);
        for other in ["CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE"] {
            caps.push(other_capability(other));
        }
        caps.push(other_capability(&format!(
            "APPENDLIMIT={}",
            self.config.max_append_size
        )));
        Vec1::unvalidated(caps)
    }

    // ----- input -----

    fn awaiting_answer(&self) -> bool {
        matches!(
            self.state,
            State::ExpectLogin { .. }
                | State::ExpectTlsHandshake
                | State::ExpectCompletion { .. }
                | State::ExpectAppendGo { .. }
                | State::ExpectAppendCompletion { .. }
                | State::ExpectGreeting
        )
    }

    /// One step of input processing; false when more input is needed.
    fn step(&mut self) -> bool {
        match &mut self.state {
            State::Ready { literal } if *literal > 0 => {
                let n = self.input.buffered().len().min(*literal as usize);
                if n == 0 {
                    return false;
                }
                *literal -= n as u64;
                self.command.extend_from_slice(&self.input.buffered()[..n]);
                self.input.consume(n);
                true
            }
            State::AppendData { remaining, .. } => {
                let n = self
                    .input
                    .buffered()
                    .len()
                    .min(*remaining as usize)
                    .min(APPEND_CHUNK);
                if *remaining == 0 {
                    let State::AppendData { tag, .. } =
                        std::mem::replace(&mut self.state, State::Closed)
                    else {
                        return true;
                    };
                    self.state = State::AppendLineEnd { tag };
                    return true;
                }
                if n == 0 {
                    return false;
                }
                *remaining -= n as u64;
                let chunk = self.input.buffered()[..n].to_vec();
                self.input.consume(n);
                self.event = Some(Event::AppendData(chunk));
                true
            }
            State::DiscardLiteral { remaining } => {
                let n = self.input.buffered().len().min(*remaining as usize);
                if *remaining == 0 {
                    self.state = State::DiscardCommand;
                    return true;
                }
                if n == 0 {
                    return false;
                }
                *remaining -= n as u64;
                self.input.consume(n);
                true
            }
            _ => self.line(),
        }
    }

    /// Reads and handles one line in a line-reading state.
    fn line(&mut self) -> bool {
        let limit = match self.state {
            State::ExpectSaslResponse { .. } => MAX_AUTH_LINE,
            _ => self.config.max_line_length,
        };
        self.input.set_max_len(limit);
        let line = match self.input.next_line() {
            Line::Complete(line) => line.to_vec(),
            Line::TooLong => {
                self.too_long();
                return true;
            }
            Line::Incomplete => return false,
        };
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Ready { .. } => self.command_line(&line),
            State::ExpectSaslResponse { tag, exchange } => {
                let step = sasl::respond(exchange, strip_line_end(&line), false);
                self.sasl_step(tag, step);
            }
            State::AppendLineEnd { tag } => {
                self.state = State::ExpectAppendCompletion { tag: tag.clone() };
                if strip_line_end(&line).is_empty() {
                    self.event = Some(Event::AppendEnd);
                } else {
                    // MULTIAPPEND (RFC 3502) is not offered: more after the message is an error.
                    // The driver still gets AppendEnd and must not store the message.
                    self.state = State::Ready { literal: 0 };
                    self.status(Status::bad(
                        Some(tag),
                        None,
                        "Expected CRLF after the APPEND message (MULTIAPPEND is not supported)",
                    ));
                    self.event = Some(Event::AppendData(Vec::new()));
                    self.count_error();
                    self.discard_rest_of(&line);
                }
            }
            State::DiscardCommand => self.discard_rest_of(&line),
            State::Idling { tag } => {
                if strip_line_end(&line).eq_ignore_ascii_case(b"DONE") {
                    self.state = State::Ready { literal: 0 };
                    self.status(Status::ok(Some(tag), None, "IDLE terminated"));
                } else {
                    self.state = State::Ready { literal: 0 };
                    self.status(Status::bad(Some(tag), None, "Expected DONE to end IDLE"));
                    self.count_error();
                }
            }
            other => self.state = other,
        }
        true
    }

    /// While dropping a refused command: a line that announces another literal keeps
    /// dropping; any other line ends the command.
    fn discard_rest_of(&mut self, line: &[u8]) {
        self.state = match framing::announcement(line) {
            Some(a) if !a.sync => State::DiscardLiteral {
                remaining: a.length,
            },
            _ => State::Ready { literal: 0 },
        };
    }

    fn too_long(&mut self) {
        let tag = command_tag(&self.command);
        self.command.clear();
        self.state = State::Ready { literal: 0 };
        self.bad(tag, "Command line too long");
    }

    /// A line of the command being gathered.
    fn command_line(&mut self, line: &[u8]) {
        self.state = State::Ready { literal: 0 };
        if self.command.is_empty() && strip_line_end(line).is_empty() {
            // Blank lines between commands are harmless; ignore them as most servers do.
            return;
        }
        if self.command.len() + line.len() > self.config.max_command_size {
            let tag = command_tag(&[&self.command[..], line].concat());
            self.command.clear();
            self.bad(tag, "Command too long");
            self.discard_rest_of(line);
            return;
        }
        self.command.extend_from_slice(line);
        let Some(announced) = framing::announcement(line) else {
            let command = std::mem::take(&mut self.command);
            self.execute(&command);
            return;
        };
        let at = self.command.len() - line.len() + announced.at;
        if let Some(head) = framing::append_head(&self.command, at) {
            self.command.clear();
            self.append(head, announced);
            return;
        }
        self.literal(announced);
    }

    /// An ordinary literal inside a command.
    fn literal(&mut self, announced: Announcement) {
        let room = self
            .config
            .max_command_size
            .saturating_sub(self.command.len()) as u64;
        if announced.length > room {
            let tag = command_tag(&self.command);
            self.command.clear();
            self.too_big(tag, announced, "Literal too large");
            return;
        }
        if announced.sync {
            // Refuse at once what cannot parse (RFC 3501 7.5: the server may send BAD instead
            // of the continuation request).
            let mut probe = self.command.clone();
            probe.extend_from_slice(b"\r\n");
            if let Err(CommandDecodeError::Failed) = CommandCodec::default().decode(&probe) {
                let command = std::mem::take(&mut self.command);
                let tag = command_tag(&command);
                let reason = self.syntax_error(&command);
                self.bad(tag, &reason);
                return;
            }
            self.output
                .buf()
                .extend_from_slice(b"+ Ready for literal data\r\n");
        }
        self.state = State::Ready {
            literal: announced.length,
        };
    }

    /// A literal the session will not take: `NO [TOOBIG]` (a synchronizing one is then never
    /// sent); a non-synchronizing one arrives anyway and is dropped, unless it is absurd.
    fn too_big(&mut self, tag: Option<Tag<'static>>, announced: Announcement, text: &str) {
        if !announced.sync
            && announced.length > super::MAX_DISCARD + self.config.max_append_size as u64
        {
            self.bye("Literal too large, closing");
            return;
        }
        let status = Status::no(tag, Some(Code::TooBig), sanitize_text(text));
        self.status(status);
        self.count_error();
        if !announced.sync {
            self.state = State::DiscardLiteral {
                remaining: announced.length,
            };
        }
    }

    fn append(&mut self, head: framing::AppendHead, announced: Announcement) {
        if self.level == Level::NotAuthenticated {
            self.wrong_state(Some(head.tag), announced);
            return;
        }
        if announced.length > self.config.max_append_size as u64 {
            self.too_big(Some(head.tag), announced, "Message larger than APPENDLIMIT");
            return;
        }
        self.state = State::ExpectAppendGo {
            tag: head.tag.clone(),
            length: announced.length,
            sync: announced.sync,
        };
        self.event = Some(Event::AppendStart {
            tag: head.tag,
            mailbox: head.mailbox,
            flags: head.flags,
            date: head.date,
            size: announced.length as u32,
        });
    }

    fn wrong_state(&mut self, tag: Option<Tag<'static>>, announced: Announcement) {
        self.bad(tag, "Command not valid in this state");
        if !announced.sync {
            self.state = State::DiscardLiteral {
                remaining: announced.length,
            };
        }
    }

    /// A whole command: parse and run it.
    fn execute(&mut self, command: &[u8]) {
        let parsed = match CommandCodec::default().decode(command) {
            Ok((b"", parsed)) => parsed.into_static(),
            _ => {
                if let Some((tag, mailbox, uses)) = create_special_use(command) {
                    self.dispatch(tag, Command::CreateSpecialUse { mailbox, uses });
                    return;
                }
                let tag = command_tag(command);
                let reason = self.syntax_error(command);
                self.bad(tag, &reason);
                return;
            }
        };
        let tag = parsed.tag;
        match parsed.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.respond(Data::Capability(caps));
                self.status(Status::ok(Some(tag), None, "Capability completed"));
            }
            CommandBody::Logout => {
                self.status(Status::bye(None, "Logging out"));
                self.status(Status::ok(Some(tag), None, "Logout completed"));
                self.state = State::Closed;
            }
            CommandBody::Noop if self.level == Level::NotAuthenticated => {
                self.status(Status::ok(Some(tag), None, "NOOP completed"));
            }
            CommandBody::Id { .. } => {
                let id = [
                    ("name", "wasmail"),
                    ("vendor", "wasmail"),
                    ("version", env!("CARGO_PKG_VERSION")),
                ]
                .into_iter()
                .filter_map(|(k, v)| {
                    Some((
                        IString::try_from(k).ok()?,
                        NString(Some(IString::try_from(v).ok()?)),
                    ))
                })
                .collect();
                self.respond(Data::Id {
                    parameters: Some(id),
                });
                self.status(Status::ok(Some(tag), None, "ID completed"));
            }
            CommandBody::StartTLS => self.starttls(tag),
            CommandBody::Login { username, password } => {
                if self.level != Level::NotAuthenticated {
                    self.bad(Some(tag), "Already logged in");
                } else if !self.config.plaintext_auth {
                    self.privacy_required(tag);
                } else {
                    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                    let secret =
                        String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                    self.state = State::ExpectLogin { tag };
                    self.event = Some(Event::Login {
                        mechanism: Mechanism::LoginCommand,
                        authzid: None,
                        user,
                        secret: wasmail_types::Secret::new(secret),
                    });
                }
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if self.level != Level::NotAuthenticated {
                    self.bad(Some(tag), "Already logged in");
                    return;
                }
                let Some(mech) = sasl::Mechanism::parse(mechanism.as_ref()) else {
                    self.status(Status::no(
                        Some(tag),
                        None,
                        "Unsupported authentication mechanism",
                    ));
                    return;
                };
                if !self.config.plaintext_auth {
                    self.privacy_required(tag);
                    return;
                }
                // imap-codec decoded the initial response; the SASL steps take it as sent.
                let initial = initial_response.map(|ir| {
                    let ir = ir.declassify();
                    if ir.is_empty() {
                        b"=".to_vec()
                    } else {
                        BASE64.encode(ir.as_ref()).into_bytes()
                    }
                });
                let step = sasl::start(mech, initial.as_deref());
                self.sasl_step(tag, step);
            }
            CommandBody::Enable { capabilities } => {
                if self.level != Level::Authenticated {
                    self.bad(Some(tag), "ENABLE is valid only in the authenticated state");
                    return;
                }
                let mut enabled = Vec::new();
                for capability in capabilities.as_ref() {
                    if matches!(capability, CapabilityEnable::CondStore) {
                        self.condstore = true;
                        enabled.push(CapabilityEnable::CondStore);
                    }
                }
                self.respond(Data::Enabled {
                    capabilities: enabled,
                });
                self.status(Status::ok(Some(tag), None, "ENABLE completed"));
            }
            body => {
                let allowed = match allowed_in(&body) {
                    Allowed::Unsupported => {
                        let name = body.name();
                        self.bad(Some(tag), &format!("{name} is not supported"));
                        return;
                    }
                    Allowed::Authenticated => self.level != Level::NotAuthenticated,
                    Allowed::Selected => matches!(self.level, Level::Selected { .. }),
                };
                if !allowed {
                    let text = match self.level {
                        Level::NotAuthenticated => "Not logged in",
                        _ => "No mailbox selected",
                    };
                    self.bad(Some(tag), text);
                    return;
                }
                if let (Level::Selected { read_only: true }, true) = (self.level, writes(&body)) {
                    self.status(Status::no(
                        Some(tag),
                        Some(Code::ReadOnly),
                        "Mailbox is read-only (EXAMINE)",
                    ));
                    return;
                }
                self.dispatch(tag, Command::Imap(body));
            }
        }
    }

    fn dispatch(&mut self, tag: Tag<'static>, command: Command) {
        if self.level == Level::NotAuthenticated {
            self.bad(Some(tag), "Not logged in");
            return;
        }
        self.state = State::ExpectCompletion { tag: tag.clone() };
        self.event = Some(Event::Command { tag, command });
    }

    fn starttls(&mut self, tag: Tag<'static>) {
        if !self.config.starttls || self.level != Level::NotAuthenticated {
            let text = if self.tls {
                "TLS is already active"
            } else {
                "STARTTLS is not available"
            };
            self.bad(Some(tag), text);
            return;
        }
        self.status(Status::ok(Some(tag), None, "Begin TLS negotiation now"));
        // RFC 3501 6.2.1 / CVE-2011-0411: nothing sent before the handshake counts after it.
        self.input.clear();
        self.command.clear();
        self.state = State::ExpectTlsHandshake;
        self.event = Some(Event::StartTls);
    }

    fn privacy_required(&mut self, tag: Tag<'static>) {
        self.status(Status::no(
            Some(tag),
            Some(other_code("PRIVACYREQUIRED")),
            if self.config.starttls {
                "Plaintext authentication disallowed without TLS (use STARTTLS)"
            } else {
                "Plaintext authentication disallowed without TLS"
            },
        ));
        self.count_error();
    }

    fn sasl_step(&mut self, tag: Tag<'static>, step: Step) {
        match step {
            Step::Challenge(challenge, exchange) => {
                let out = self.output.buf();
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(challenge.base64().as_bytes());
                out.extend_from_slice(b"\r\n");
                self.state = State::ExpectSaslResponse { tag, exchange };
            }
            Step::Done(credentials) => {
                self.state = State::ExpectLogin { tag };
                self.event = Some(Event::Login {
                    mechanism: credentials.mechanism.into(),
                    authzid: credentials.authzid,
                    user: credentials.identity,
                    secret: credentials.secret,
                });
            }
            Step::Cancelled => {
                self.state = State::Ready { literal: 0 };
                self.status(Status::bad(Some(tag), None, "Authentication cancelled"));
            }
            Step::Malformed(why) => {
                self.state = State::Ready { literal: 0 };
                self.bad(Some(tag), why);
            }
        }
    }

    // ----- output -----

    fn encode(&mut self, response: &Response<'_>) {
        let bytes = ResponseCodec::default().encode(response).dump();
        self.output.buf().extend_from_slice(&bytes);
    }

    /// Queues a status response; a text that is not valid IMAP text is replaced, never sent.
    fn status<E>(&mut self, status: Result<Status<'_>, E>) {
        match status {
            Ok(status) => self.encode(&Response::Status(status)),
            Err(_) => self
                .output
                .buf()
                .extend_from_slice(b"* BAD Internal error\r\n"),
        }
    }

    fn bad(&mut self, tag: Option<Tag<'static>>, text: &str) {
        let status = Status::bad(tag, None, sanitize_text(text));
        self.status(status);
        self.count_error();
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.config.max_errors > 0 && self.errors >= self.config.max_errors {
            self.bye("Too many errors, closing");
        }
    }

    fn bye(&mut self, text: &str) {
        if !matches!(self.state, State::Closed) {
            self.status(Status::bye(None, sanitize_text(text)));
            self.state = State::Closed;
            self.event = None;
        }
    }

    /// Why `command` did not parse, as specifically as its first words tell.
    fn syntax_error(&self, command: &[u8]) -> String {
        let mut words = command
            .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .filter(|w| !w.is_empty());
        if command_tag(command).is_none() {
            return "Missing or invalid tag".into();
        }
        let _tag = words.next();
        let Some(mut name) = words
            .next()
            .map(|w| String::from_utf8_lossy(w).to_ascii_uppercase())
        else {
            return "Missing command".into();
        };
        if name == "UID"
            && let Some(sub) = words.next()
        {
            name = format!("UID {}", String::from_utf8_lossy(sub).to_ascii_uppercase());
        }
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(40)
            .collect();
        if KNOWN_COMMANDS.contains(&name.as_str()) {
            format!("Invalid arguments to {name}")
        } else {
            format!("Unknown command {name}")
        }
    }
}

/// The tag at the start of a command, if it is a valid tag.
fn command_tag(command: &[u8]) -> Option<Tag<'static>> {
    let word = command
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .next()?;
    Tag::try_from(word.to_vec()).ok()
}

/// How a command was completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Ok,
    No,
    Bad,
}

/// Every command name the session knows (for "Invalid arguments" vs "Unknown command").
const KNOWN_COMMANDS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID FETCH",
    "UID STORE",
    "UID COPY",
    "UID MOVE",
    "UID SEARCH",
    "UID EXPUNGE",
    "IDLE",
    "ENABLE",
    "ID",
    "NAMESPACE",
    "UNSELECT",
];

/// Where a command of the authenticated or selected state may run.
enum Allowed {
    Authenticated,
    Selected,
    Unsupported,
}

fn allowed_in(body: &CommandBody<'_>) -> Allowed {
    use CommandBody as C;
    match body {
        C::Noop
        | C::Select { .. }
        | C::Examine { .. }
        | C::Create { .. }
        | C::Delete { .. }
        | C::Rename { .. }
        | C::Subscribe { .. }
        | C::Unsubscribe { .. }
        | C::List { .. }
        | C::Lsub { .. }
        | C::Status { .. }
        | C::Append { .. }
        | C::Idle
        | C::Namespace => Allowed::Authenticated,
        C::Check
        | C::Close
        | C::Unselect
        | C::Expunge
        | C::ExpungeUid { .. }
        | C::Search { .. }
        | C::Fetch { .. }
        | C::Store { .. }
        | C::Copy { .. }
        | C::Move { .. } => Allowed::Selected,
        _ => Allowed::Unsupported,
    }
}

/// Commands that change the selected mailbox, refused after EXAMINE (RFC 3501 6.3.2). COPY and
/// a FETCH that would set \Seen are fine (the driver leaves \Seen alone when read-only).
fn writes(body: &CommandBody<'_>) -> bool {
    matches!(
        body,
        CommandBody::Store { .. }
            | CommandBody::Expunge
            | CommandBody::ExpungeUid { .. }
            | CommandBody::Move { .. }
    )
}

/// `tag CREATE mailbox (USE (attr ...))` (RFC 6154 3): imap-codec parses CREATE without the
/// USE list, so the list is split off and the rest parsed as a plain CREATE.
fn create_special_use(
    command: &[u8],
) -> Option<(
    Tag<'static>,
    imap_codec::imap_types::mailbox::Mailbox<'static>,
    Vec<String>,
)> {
    let line = strip_line_end(command);
    let upper = line.to_ascii_uppercase();
    let at = find_last(&upper, b" (USE (")?;
    let list = line.get(at + 7..)?.strip_suffix(b"))")?;
    let uses: Vec<String> = list
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if uses.is_empty() || uses.iter().any(|u| !u.starts_with('\\') || u.len() < 2) {
        return None;
    }
    let mut plain = line.get(..at)?.to_vec();
    plain.extend_from_slice(b"\r\n");
    let (rest, parsed) = CommandCodec::default().decode(&plain).ok()?;
    match parsed.body {
        CommandBody::Create { mailbox } if rest.is_empty() => {
            Some((parsed.tag.into_static(), mailbox.into_static(), uses))
        }
        _ => None,
    }
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Text safe for a response: no CR or LF, not empty.
fn sanitize_text(text: &str) -> Text<'static> {
    let clean: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let clean = if clean.trim().is_empty() {
        "Completed".to_string()
    } else {
        clean
    };
    Text::unvalidated(clean)
}

/// A capability imap-types has no variant for.
fn other_capability(name: &str) -> Capability<'static> {
    Capability::try_from(name.to_string()).unwrap_or(Capability::Imap4Rev1)
}

/// A response code imap-types has no variant for (RFC 5530 codes).
pub(crate) fn other_code(name: &str) -> Code<'static> {
    Code::Other(imap_codec::imap_types::response::CodeOther::unvalidated(
        name.as_bytes().to_vec(),
    ))
}
