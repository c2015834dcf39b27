//! An IMAP load generator on plain `std::net` sockets, one thread per client: [`run`] measures
//! complete sessions, [`hold`] opens many logged-in connections and keeps them (then
//! [`Held::idle`] puts them all in IDLE) so a server's memory per connection can be read.
//!
//! ```text
//!   run(spec) ──► C threads; thread w works on users[w % users.len()]
//!     probe (not timed): LOGIN, SELECT INBOX, FETCH 1:* (RFC822.SIZE), LOGOUT → sizes[1..=N]
//!     ── all threads probed: the clock starts ──
//!     next session from a shared counter, until all are taken:
//!      t0 ──► connect                        ◄── * OK greeting
//!             LOGIN u p                      ◄── OK
//!             SELECT INBOX                   ◄── * N EXISTS …, OK          N = the spec's
//!             FETCH 1:* (FLAGS ENVELOPE)     ◄── N × * n FETCH, OK
//!             FETCH n (BODY.PEEK[])  × 3     ◄── * n FETCH (BODY[] {sizes[n]} …), OK
//!             STORE n +FLAGS (\Flagged)      ◄── * n FETCH (FLAGS (… \Flagged …)), OK
//!             STORE n -FLAGS (\Flagged)      ◄── * n FETCH (FLAGS (…)), OK
//!             APPEND INBOX (\Seen) {size}    ◄── +, then OK [APPENDUID v uid]
//!             UID STORE uid +FLAGS (\Deleted) ◄── OK        (no APPENDUID: STORE N+1 …,
//!             UID EXPUNGE uid                ◄── * k EXPUNGE, OK          then EXPUNGE)
//!             LOGOUT                         ◄── * BYE, OK
//!      t1 ──► close                          session latency = t1 - t0; 12 operations
//! ```
//!
//! Responses are read as the grammar frames them: a line ending in `{n}` is followed by n octets
//! of literal and then the rest of the response, whatever the octets hold. A session succeeds
//! only if every command is answered OK and the answers agree with each other and with the
//! spec: SELECT finds exactly the spec's messages (when every thread has a mailbox of its own),
//! the listing has a FETCH per message, each BODY[] literal is exactly RFC822.SIZE octets, STORE
//! shows the flag set and cleared, and UID EXPUNGE expunges one message — so the mailbox is the
//! same size at the end of every session. A NO or BAD anywhere fails the session.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::bench::{Outcome, Tally};

/// How long to wait for any one read (or write) before the session counts as broken.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// `FETCH n (BODY.PEEK[])` commands per session, each of a random message.
pub const BODY_FETCHES: usize = 3;
/// Commands in one session: LOGIN, SELECT, the listing, the body fetches, two STOREs, APPEND,
/// the `\Deleted` STORE, EXPUNGE and LOGOUT.
pub const OPERATIONS_PER_SESSION: usize = 9 + BODY_FETCHES;
/// The longest response line (between literals) accepted.
const MAX_LINE: u64 = 256 * 1024;
/// The largest literal accepted from a server.
const MAX_LITERAL: u64 = 64 * 1024 * 1024;
/// Read buffer of a session's connection (BODY[] literals of tens of KiB).
const SESSION_BUFFER: usize = 64 * 1024;
/// Read buffer of a held connection (greeting, LOGIN, SELECT, IDLE's continuation).
const HELD_BUFFER: usize = 4 * 1024;

/// Where to connect, as whom, and how much.
#[derive(Debug, Clone)]
pub struct ImapLoadSpec {
    /// The IMAP server (plain TCP, LOGIN without TLS).
    pub addr: SocketAddr,
    /// Concurrent clients (threads), each running one session after another.
    pub connections: usize,
    /// Sessions in all.
    pub sessions: usize,
    /// Login names: thread `w` always logs in as `users[w % users.len()]`.
    pub users: Vec<String>,
    /// Every user's password.
    pub password: String,
    /// Messages every INBOX holds before and after each session (at least 1).
    pub messages: usize,
    /// Size of the message each session appends (and expunges again), in octets.
    pub append_size: usize,
}

impl ImapLoadSpec {
    /// 2000 sessions over 20 connections, every INBOX holding `messages`, appending 10 KiB.
    pub fn new(
        addr: SocketAddr,
        users: Vec<String>,
        password: impl Into<String>,
        messages: usize,
    ) -> ImapLoadSpec {
        ImapLoadSpec {
            addr,
            connections: 20,
            sessions: 2000,
            users,
            password: password.into(),
            messages,
            append_size: 10 * 1024,
        }
    }

    /// Every thread has an INBOX of its own, so its message count can be checked exactly.
    fn exclusive(&self) -> bool {
        self.connections <= self.users.len()
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct ImapReport {
    /// Sessions that did everything, consistently, and got OK to LOGOUT, and those refused at
    /// some step, broken off, inconsistent, or never run; elapsed from the start of the first
    /// session to the end of the last; latency from connect to the OK of LOGOUT.
    pub outcome: Outcome,
    /// Commands of the successful sessions ([`OPERATIONS_PER_SESSION`] each).
    pub operations: usize,
    /// BODY[] octets fetched plus message octets appended, in successful sessions.
    pub octets: u64,
    pub operations_per_second: f64,
    /// Successful sessions per second.
    pub sessions_per_second: f64,
}

impl fmt::Display for ImapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.outcome.write(
            f,
            "sessions ",
            format_args!(
                "{:.1} ops/s, {:.1} sessions/s ({} operations, {} octets)",
                self.operations_per_second, self.sessions_per_second, self.operations, self.octets,
            ),
            "session latency",
        )
    }
}

/// Why a run could not take place at all. Failed sessions are not errors: they are counted in
/// [`ImapReport::outcome`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ImapLoadError {
    /// The spec cannot be run (no connections, no users, no messages).
    #[error("invalid IMAP load spec: {0}")]
    InvalidSpec(&'static str),
    /// The probe before the clock starts failed: the server is down, refuses the login, or the
    /// mailbox does not hold what the spec says.
    #[error("{user} at {addr}: not ready for the load: {reason}")]
    Setup {
        addr: SocketAddr,
        user: String,
        reason: String,
    },
}

/// Runs `spec.sessions` sessions over `spec.connections` concurrent clients and measures them.
pub fn run(spec: &ImapLoadSpec) -> Result<ImapReport, ImapLoadError> {
    if spec.connections == 0 {
        return Err(ImapLoadError::InvalidSpec("connections must be at least 1"));
    }
    if spec.users.is_empty() {
        return Err(ImapLoadError::InvalidSpec("no users"));
    }
    if spec.messages == 0 {
        return Err(ImapLoadError::InvalidSpec(
            "the mailboxes need at least one message",
        ));
    }
    let workers = spec.connections.min(spec.sessions.max(1));
    let shared = Shared {
        spec,
        next: AtomicUsize::new(0),
        probed: Barrier::new(workers + 1),
        setup_failed: Mutex::new(None),
    };
    let (results, elapsed) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|w| {
                let shared = &shared;
                scope.spawn(move || worker(shared, w))
            })
            .collect();
        shared.probed.wait();
        let start = Instant::now();
        let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
        (results, start.elapsed())
    });
    let setup_failed = shared
        .setup_failed
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((user, reason)) = setup_failed {
        return Err(ImapLoadError::Setup {
            addr: spec.addr,
            user,
            reason,
        });
    }
    let (mut tally, mut octets) = (Tally::default(), 0);
    for r in results {
        match r {
            Ok((t, o)) => {
                tally.merge(t);
                octets += o;
            }
            Err(_) => tally.note("load thread panicked".to_owned()),
        }
    }
    let outcome = tally.finish(elapsed, spec.sessions, "sessions never run");
    let operations = outcome.ok * OPERATIONS_PER_SESSION;
    Ok(ImapReport {
        operations_per_second: outcome.per_second(operations as f64),
        sessions_per_second: outcome.per_second(outcome.ok as f64),
        outcome,
        operations,
        octets,
    })
}

// ---- the sessions -------------------------------------------------------------------------------

struct Shared<'a> {
    spec: &'a ImapLoadSpec,
    next: AtomicUsize,
    /// Every thread and the clock: the load starts when all have probed their mailbox.
    probed: Barrier,
    /// The first probe that failed: (user, why).
    setup_failed: Mutex<Option<(String, String)>>,
}

impl Shared<'_> {
    fn take(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.spec.sessions).then_some(i)
    }
}

/// A thread's sessions, and the octets its successful ones moved.
fn worker(shared: &Shared<'_>, w: usize) -> (Tally, u64) {
    let spec = shared.spec;
    let user = &spec.users[w % spec.users.len()];
    let sizes = probe(spec, user);
    if let Err(e) = &sizes {
        let mut first = shared
            .setup_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| (user.clone(), e.to_string()));
    }
    shared.probed.wait();
    let (mut out, mut moved) = (Tally::default(), 0);
    let Ok(sizes) = sizes else {
        return (out, moved);
    };
    if shared.setup_failed.lock().map_or(true, |f| f.is_some()) {
        return (out, moved);
    }
    let mut rng = Rng::new(w as u64);
    let mut client = Client {
        spec,
        user,
        sizes: &sizes,
        rng: &mut rng,
        id: w,
    };
    while let Some(index) = shared.take() {
        let t0 = Instant::now();
        let mut conn = match Conn::open(spec.addr, REPLY_TIMEOUT, SESSION_BUFFER) {
            Ok(c) => c,
            Err(e) => {
                out.fail(format!("session {index} ({user}): connect: {e}"));
                continue;
            }
        };
        let mut appended = None;
        match client.session(&mut conn, index, &mut appended) {
            Ok(octets) => {
                out.latencies.push(t0.elapsed());
                moved += octets;
            }
            Err(e) => {
                out.fail(format!("session {index} ({user}): {e}"));
                if e.connection_usable() {
                    conn.clean_up(appended);
                }
            }
        }
    }
    (out, moved)
}

/// What the clock does not see: log in, check the INBOX holds the spec's messages, and learn
/// their sizes (RFC822.SIZE, by sequence number).
fn probe(spec: &ImapLoadSpec, user: &str) -> Result<Vec<u64>, SessionError> {
    let mut conn = Conn::open(spec.addr, REPLY_TIMEOUT, SESSION_BUFFER)?;
    conn.login_select(user, &spec.password)?;
    let n = spec.messages;
    let listing = conn.command("FETCH RFC822.SIZE", &format!("FETCH 1:{n} (RFC822.SIZE)"))?;
    let mut sizes = vec![None; n];
    for r in &listing {
        if let Some(k) = r.fetch_number()
            && let Some(slot) = sizes.get_mut((k as usize).wrapping_sub(1))
        {
            *slot = r.number_after(b"RFC822.SIZE ");
        }
    }
    conn.command("LOGOUT", "LOGOUT")?;
    sizes
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.ok_or_else(|| {
                SessionError::Inconsistent(format!(
                    "no RFC822.SIZE for message {} of the {n} expected",
                    i + 1
                ))
            })
        })
        .collect()
}

/// One load thread's view: its user, the sizes of its messages, its random numbers.
struct Client<'a> {
    spec: &'a ImapLoadSpec,
    user: &'a str,
    sizes: &'a [u64],
    rng: &'a mut Rng,
    id: usize,
}

impl Client<'_> {
    /// One session on an open connection (greeting read); returns the octets fetched and
    /// appended. `appended` is the UID of the message appended, until it is expunged.
    fn session(
        &mut self,
        conn: &mut Conn,
        index: usize,
        appended: &mut Option<u32>,
    ) -> Result<u64, SessionError> {
        let spec = self.spec;
        let exists = conn.login_select(self.user, &spec.password)?;
        if exists < spec.messages || (spec.exclusive() && exists != spec.messages) {
            return Err(SessionError::Inconsistent(format!(
                "SELECT: {exists} messages, expected {}",
                spec.messages
            )));
        }
        let listing = conn.command("FETCH (FLAGS ENVELOPE)", "FETCH 1:* (FLAGS ENVELOPE)")?;
        let listed = listing
            .iter()
            .filter(|r| r.fetch_number().is_some() && r.contains(b"ENVELOPE"))
            .count();
        if listed != exists {
            return Err(SessionError::Inconsistent(format!(
                "FETCH 1:* (FLAGS ENVELOPE) listed {listed} messages of {exists}"
            )));
        }
        let mut octets = 0;
        for _ in 0..BODY_FETCHES {
            let n = self.message();
            let got = conn.command("FETCH BODY.PEEK[]", &format!("FETCH {n} (BODY.PEEK[])"))?;
            let body = got
                .iter()
                .filter(|r| r.fetch_number() == Some(n))
                .find_map(|r| r.literals.first())
                .ok_or_else(|| {
                    SessionError::Inconsistent(format!("FETCH {n} (BODY.PEEK[]): no literal"))
                })?;
            let want = self.sizes[n as usize - 1];
            if body.len() as u64 != want {
                return Err(SessionError::Inconsistent(format!(
                    "FETCH {n} (BODY.PEEK[]): {} octets, RFC822.SIZE {want}",
                    body.len()
                )));
            }
            octets += want;
        }
        let n = self.message();
        for (sign, set) in [('+', true), ('-', false)] {
            let what = if set { "STORE +FLAGS" } else { "STORE -FLAGS" };
            let got = conn.command(what, &format!("STORE {n} {sign}FLAGS (\\Flagged)"))?;
            let flagged = got
                .iter()
                .filter(|r| r.fetch_number() == Some(n))
                .map(|r| r.contains(b"\\Flagged"))
                .next_back();
            if flagged != Some(set) {
                return Err(SessionError::Inconsistent(format!(
                    "{what}: FETCH FLAGS of {n} {}",
                    match flagged {
                        None => "missing",
                        Some(true) => "still has \\Flagged",
                        Some(false) => "lacks \\Flagged",
                    }
                )));
            }
        }
        let message = append_message(spec.append_size, self.user, self.id, index);
        let (untagged, done) = conn.append(&message)?;
        octets += message.len() as u64;
        match appended_uid(&done) {
            Some(uid) => {
                *appended = Some(uid);
                conn.command(
                    "UID STORE +FLAGS (\\Deleted)",
                    &format!("UID STORE {uid} +FLAGS (\\Deleted)"),
                )?;
                let gone = conn.command("UID EXPUNGE", &format!("UID EXPUNGE {uid}"))?;
                expunged_one(&gone, "UID EXPUNGE")?;
            }
            None => {
                // No UIDPLUS: the new message is the last one (RFC 3501 6.3.11 has the server
                // announce it with EXISTS before the OK).
                let last = untagged
                    .iter()
                    .filter_map(|r| r.number_of(b"EXISTS"))
                    .next_back()
                    .ok_or_else(|| {
                        SessionError::Inconsistent(
                            "APPEND: neither APPENDUID nor EXISTS in the answer".to_owned(),
                        )
                    })?;
                conn.command(
                    "STORE +FLAGS (\\Deleted)",
                    &format!("STORE {last} +FLAGS (\\Deleted)"),
                )?;
                let gone = conn.command("EXPUNGE", "EXPUNGE")?;
                expunged_one(&gone, "EXPUNGE")?;
            }
        }
        *appended = None;
        conn.command("LOGOUT", "LOGOUT")?;
        Ok(octets)
    }

    /// A random sequence number among the spec's messages.
    fn message(&mut self) -> u32 {
        (self.rng.below(self.spec.messages as u64) + 1) as u32
    }
}

fn expunged_one(answer: &[Response], what: &str) -> Result<(), SessionError> {
    let expunged = answer
        .iter()
        .filter(|r| r.number_of(b"EXPUNGE").is_some())
        .count();
    if expunged == 1 {
        Ok(())
    } else {
        Err(SessionError::Inconsistent(format!(
            "{what}: {expunged} messages expunged, expected 1"
        )))
    }
}

/// The UID in `[APPENDUID <validity> <uid>]` (RFC 4315) of an APPEND's completion.
fn appended_uid(completion: &str) -> Option<u32> {
    let at = completion.find("[APPENDUID ")?;
    let mut words = completion[at + 11..].split([' ', ']']);
    words.next()?.parse::<u32>().ok()?;
    words.next()?.parse().ok()
}

/// A message of exactly `size` octets (when `size` exceeds its header), CRLF line ends.
fn append_message(size: usize, user: &str, thread: usize, index: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <load@wasmail-load.test>\r\nTo: <{user}>\r\nSubject: IMAP load append {index}\r\n\
         Date: Thu, 26 Nov 2026 12:00:00 +0000\r\n\
         Message-ID: <imap-{index}.{thread}@wasmail-load.test>\r\n\r\n"
    )
    .into_bytes();
    // Lines of up to 76 octets and CRLF; a line never leaves exactly one octet over.
    while size.saturating_sub(m.len()) >= 2 {
        let left = size - m.len() - 2;
        let take = match left.min(76) {
            t if left - t == 1 => t - 1,
            t => t,
        };
        m.extend(std::iter::repeat_n(b'i', take));
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// xorshift64*: enough randomness to pick messages, without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

// ---- held connections ---------------------------------------------------------------------------

/// Many logged-in connections, each with INBOX selected, to measure a server's memory.
#[derive(Debug, Clone)]
pub struct HoldSpec {
    pub addr: SocketAddr,
    /// Connection `i` logs in as `users[i % users.len()]`.
    pub users: Vec<String>,
    pub password: String,
    /// How many connections to open.
    pub connections: usize,
    /// Threads opening them (and sending IDLE on them) in parallel.
    pub threads: usize,
    /// How long any one step may take.
    pub timeout: Duration,
}

/// The connections [`hold`] opened; closed when dropped.
pub struct Held {
    conns: Vec<Conn>,
    /// Why opening stopped before all were open: the first failure.
    pub stopped_by: Option<String>,
    /// How long opening them took.
    pub took: Duration,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("connections", &self.conns.len())
            .field("stopped_by", &self.stopped_by)
            .finish()
    }
}

/// Opens up to `spec.connections` connections (LOGIN, SELECT INBOX) and keeps them. Stops at
/// the first one that fails (a server at its limit), saying why in [`Held::stopped_by`].
pub fn hold(spec: &HoldSpec) -> Held {
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let stopped_by = Mutex::new(None);
    let conns = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..spec.threads.clamp(1, spec.connections.max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= spec.connections {
                            break;
                        }
                        let user = &spec.users[i % spec.users.len().max(1)];
                        let opened = Conn::open(spec.addr, spec.timeout, HELD_BUFFER)
                            .and_then(|mut c| c.login_select(user, &spec.password).map(|_| c));
                        match opened {
                            Ok(c) => mine.push(c),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                let mut first =
                                    stopped_by.lock().unwrap_or_else(|p| p.into_inner());
                                first.get_or_insert_with(|| {
                                    format!("connection {} ({user}): {e}", i + 1)
                                });
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    });
    Held {
        conns,
        stopped_by: stopped_by.into_inner().unwrap_or_else(|p| p.into_inner()),
        took: start.elapsed(),
    }
}

impl Held {
    /// Connections open, logged in and with INBOX selected.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Sends IDLE on every connection from `threads` threads, at most `per_second` of them a
    /// second (0: as fast as they go), and waits for each continuation (`+ idling`). Returns
    /// how long that took, or how many failed and the first reason.
    pub fn idle(&mut self, threads: usize, per_second: usize) -> Result<Duration, String> {
        let start = Instant::now();
        let total = self.conns.len();
        let threads = threads.clamp(1, total.max(1));
        // Thread k takes connections k, k + threads, ...: in the order of their start times.
        let mut parts: Vec<Vec<(usize, &mut Conn)>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, c) in self.conns.iter_mut().enumerate() {
            parts[i % threads].push((i, c));
        }
        let failures: Vec<String> = std::thread::scope(|scope| {
            let running: Vec<_> = parts
                .into_iter()
                .map(|part| {
                    scope.spawn(move || {
                        let mut failed = Vec::new();
                        for (i, c) in part {
                            if per_second > 0 {
                                let due =
                                    start + Duration::from_secs_f64(i as f64 / per_second as f64);
                                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                            }
                            if let Err(e) = c.start_idle() {
                                failed.push(e.to_string());
                            }
                        }
                        failed
                    })
                })
                .collect();
            running
                .into_iter()
                .flat_map(|t| t.join().unwrap_or_else(|_| vec!["thread panicked".into()]))
                .collect()
        });
        match failures.first() {
            None => Ok(start.elapsed()),
            Some(first) => Err(format!(
                "{} of {total} connections did not enter IDLE; first: {first}",
                failures.len()
            )),
        }
    }
}

// ---- the wire -----------------------------------------------------------------------------------

/// Why a session (or a held connection) failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Io(io::Error),
    #[error("no answer within the timeout")]
    Timeout,
    /// With the server's `* BYE` line, if it sent one.
    #[error("connection closed by the server{}", in_parentheses(.0))]
    Closed(Option<String>),
    #[error("not an IMAP response: {0:?}")]
    Garbage(String),
    /// A NO or BAD (the connection can still LOGOUT).
    #[error("{what}: {answer}")]
    Refused { what: String, answer: String },
    /// The answers contradict each other or the spec (the connection can still LOGOUT).
    #[error("{0}")]
    Inconsistent(String),
}

fn in_parentheses(text: &Option<String>) -> String {
    text.as_deref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default()
}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> SessionError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => SessionError::Timeout,
            io::ErrorKind::UnexpectedEof => SessionError::Closed(None),
            _ => SessionError::Io(e),
        }
    }
}

impl SessionError {
    fn connection_usable(&self) -> bool {
        matches!(
            self,
            SessionError::Refused { .. } | SessionError::Inconsistent(_)
        )
    }
}

/// One response: its text (every line, the literals left out where their `{n}` announces
/// them) and its literals in order.
#[derive(Debug, Default)]
struct Response {
    text: Vec<u8>,
    literals: Vec<Vec<u8>>,
}

impl Response {
    /// `n` of `* n FETCH ...`.
    fn fetch_number(&self) -> Option<u32> {
        self.number_of(b"FETCH")
    }

    /// `n` of `* n <keyword>...` (EXISTS, EXPUNGE, FETCH).
    fn number_of(&self, keyword: &[u8]) -> Option<u32> {
        let rest = self.text.strip_prefix(b"* ")?;
        let space = rest.iter().position(|&b| b == b' ')?;
        let after = &rest[space + 1..];
        let word_end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
        if !after[..word_end].eq_ignore_ascii_case(keyword) {
            return None;
        }
        std::str::from_utf8(&rest[..space]).ok()?.parse().ok()
    }

    /// The number after `prefix` in the text (`RFC822.SIZE 1234`).
    fn number_after(&self, prefix: &[u8]) -> Option<u64> {
        let at = self.text.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
        let digits = self.text[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        std::str::from_utf8(&self.text[at..at + digits])
            .ok()?
            .parse()
            .ok()
    }

    fn contains(&self, needle: &[u8]) -> bool {
        self.text.windows(needle.len()).any(|w| w == needle)
    }

    /// A status response (`+`, a tagged completion, `* OK|NO|BAD|BYE|PREAUTH`): its text is free
    /// form and carries no literal.
    fn is_status(&self) -> bool {
        let Some(rest) = self.text.strip_prefix(b"* ") else {
            return true;
        };
        let word = rest.split(|&b| b == b' ').next().unwrap_or_default();
        [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
            .iter()
            .any(|s| word.eq_ignore_ascii_case(s))
    }
}

/// One connection: a single socket (one file descriptor: 10,000 held connections must fit in
/// the open files limit), read through a buffer, written directly.
struct Conn {
    r: BufReader<TcpStream>,
    tag: u32,
    line: Vec<u8>,
}

impl Conn {
    /// Connects and reads the greeting (`* OK`).
    fn open(addr: SocketAddr, timeout: Duration, buffer: usize) -> Result<Conn, SessionError> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let mut c = Conn {
            r: BufReader::with_capacity(buffer, tcp),
            tag: 0,
            line: Vec::with_capacity(256),
        };
        let greeting = c.response()?;
        if !greeting.text.starts_with(b"* OK") {
            return Err(SessionError::Refused {
                what: "greeting".to_owned(),
                answer: String::from_utf8_lossy(&greeting.text).into_owned(),
            });
        }
        Ok(c)
    }

    /// LOGIN and SELECT INBOX; returns the EXISTS count.
    fn login_select(&mut self, user: &str, password: &str) -> Result<usize, SessionError> {
        self.command(
            "LOGIN",
            &format!(
                "LOGIN {} {}",
                crate::imap::quote(user),
                crate::imap::quote(password)
            ),
        )?;
        let selected = self.command("SELECT", "SELECT INBOX")?;
        selected
            .iter()
            .find_map(|r| r.number_of(b"EXISTS"))
            .map(|n| n as usize)
            .ok_or_else(|| SessionError::Garbage("SELECT without EXISTS".to_owned()))
    }

    /// Writes `bytes` to the socket (past the read buffer).
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.r.get_mut().write_all(bytes)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    /// Sends `tag command` and reads up to its completion; OK: the untagged responses.
    fn command(&mut self, what: &str, command: &str) -> Result<Vec<Response>, SessionError> {
        let tag = self.next_tag();
        self.send(format!("{tag} {command}\r\n").as_bytes())?;
        self.complete(&tag, what).map(|(untagged, _)| untagged)
    }

    /// `APPEND INBOX (\Seen) {n}`, the message after the continuation; OK: the untagged
    /// responses and the completion's text.
    fn append(&mut self, message: &[u8]) -> Result<(Vec<Response>, String), SessionError> {
        let tag = self.next_tag();
        let len = message.len();
        self.send(format!("{tag} APPEND INBOX (\\Seen) {{{len}}}\r\n").as_bytes())?;
        let mut untagged = self.until_continuation(&tag, "APPEND")?;
        self.send(message)?;
        self.send(b"\r\n")?;
        let (more, done) = self.complete(&tag, "APPEND")?;
        untagged.extend(more);
        Ok((untagged, done))
    }

    /// IDLE, up to the server's continuation.
    fn start_idle(&mut self) -> Result<(), SessionError> {
        let tag = self.next_tag();
        self.send(format!("{tag} IDLE\r\n").as_bytes())?;
        self.until_continuation(&tag, "IDLE").map(|_| ())
    }

    /// Reads responses up to a `+` continuation; a completion of `tag` instead is a refusal.
    fn until_continuation(&mut self, tag: &str, what: &str) -> Result<Vec<Response>, SessionError> {
        let mut untagged = Vec::new();
        loop {
            let r = self.response()?;
            if r.text.starts_with(b"+") {
                return Ok(untagged);
            }
            if r.text.starts_with(tag.as_bytes()) && r.text.get(tag.len()) == Some(&b' ') {
                return Err(SessionError::Refused {
                    what: what.to_owned(),
                    answer: String::from_utf8_lossy(&r.text).into_owned(),
                });
            }
            untagged.push(r);
        }
    }

    /// Reads responses up to the completion of `tag`: OK gives the untagged responses before it
    /// and its text, NO or BAD a refusal.
    fn complete(&mut self, tag: &str, what: &str) -> Result<(Vec<Response>, String), SessionError> {
        let mut untagged = Vec::new();
        let mut bye = None;
        loop {
            let r = match self.response() {
                Ok(r) => r,
                Err(SessionError::Closed(None)) => return Err(SessionError::Closed(bye)),
                Err(e) => return Err(e),
            };
            let Some(rest) = r
                .text
                .strip_prefix(tag.as_bytes())
                .and_then(|t| t.strip_prefix(b" "))
            else {
                if r.text.starts_with(b"* BYE") {
                    bye = Some(String::from_utf8_lossy(&r.text).into_owned());
                }
                untagged.push(r);
                continue;
            };
            let text = String::from_utf8_lossy(rest).into_owned();
            let status = text.split(' ').next().unwrap_or_default();
            return if status.eq_ignore_ascii_case("OK") {
                Ok((untagged, text))
            } else {
                Err(SessionError::Refused {
                    what: what.to_owned(),
                    answer: text,
                })
            };
        }
    }

    /// One response, with the literals it announces.
    fn response(&mut self) -> Result<Response, SessionError> {
        let mut r = Response::default();
        loop {
            self.line.clear();
            let n = (&mut self.r)
                .take(MAX_LINE)
                .read_until(b'\n', &mut self.line)?;
            if n == 0 {
                return Err(SessionError::Closed(None));
            }
            if self.line.last() != Some(&b'\n') {
                return Err(SessionError::Garbage(format!(
                    "a line longer than {MAX_LINE} octets"
                )));
            }
            let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            r.text.extend_from_slice(line);
            let literal = if r.is_status() {
                None
            } else {
                crate::imap::literal_announcement(line).map(|n| n as u64)
            };
            let Some(len) = literal else {
                return Ok(r);
            };
            if len > MAX_LITERAL {
                return Err(SessionError::Garbage(format!("a literal of {len} octets")));
            }
            let mut literal = Vec::with_capacity(len as usize);
            (&mut self.r).take(len).read_to_end(&mut literal)?;
            if literal.len() as u64 != len {
                return Err(SessionError::Closed(None));
            }
            r.literals.push(literal);
        }
    }

    /// After a failed session: expunge what it appended, LOGOUT, briefly; errors are of no
    /// interest any more.
    fn clean_up(mut self, appended: Option<u32>) {
        let _ = self
            .r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)));
        if let Some(uid) = appended {
            let _ = self.command("", &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
            let _ = self.command("", &format!("UID EXPUNGE {uid}"));
        }
        let _ = self.command("", "LOGOUT");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure fails the test")]
mod tests {
    //! The client against a small scripted IMAP responder (written here, on threads) that keeps
    //! a mailbox per user and records what it was sent.

    use super::*;
    use std::collections::HashMap;
    use std::net::TcpListener;
    use std::sync::Arc;

    fn mailbox() -> Vec<Vec<u8>> {
        (0..5)
            .map(|i| {
                let body: String = (0..i * 40).map(|k| format!("line {k}\r\n")).collect();
                format!("Subject: message {i}\r\n\r\n{body}").into_bytes()
            })
            .collect()
    }

    #[derive(Clone, Copy, Default)]
    struct Behaviour {
        /// BODY[] of this message is one octet shorter than RFC822.SIZE.
        short_body: Option<usize>,
        /// LOGIN is refused with NO.
        refuse_login: bool,
        /// No APPENDUID (the client falls back on EXISTS and EXPUNGE).
        no_uidplus: bool,
        /// Holds at most this many logged-in connections; the next gets BYE.
        limit: Option<usize>,
    }

    #[derive(Default)]
    struct Seen {
        commands: HashMap<String, usize>,
        appended: Vec<usize>,
        logged_in: usize,
        idling: usize,
    }

    fn responder(b: Behaviour) -> (SocketAddr, Arc<Mutex<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let boxes = Arc::new(Mutex::new(HashMap::<String, Vec<(u32, Vec<u8>)>>::new()));
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let (s, boxes) = (Arc::clone(&s), Arc::clone(&boxes));
                std::thread::spawn(move || {
                    let _ = session(sock.unwrap(), b, &s, &boxes);
                });
            }
        });
        (addr, seen)
    }

    type Boxes = Mutex<HashMap<String, Vec<(u32, Vec<u8>)>>>;

    fn session(sock: TcpStream, b: Behaviour, seen: &Mutex<Seen>, boxes: &Boxes) -> io::Result<()> {
        let mut r = BufReader::new(sock.try_clone()?);
        let mut w = sock;
        w.write_all(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS IDLE] fake ready\r\n")?;
        let mut user = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let words: Vec<&str> = line.trim_end().splitn(3, ' ').collect();
            let (tag, cmd) = (words[0], words.get(1).copied().unwrap_or(""));
            let arg = words.get(2).copied().unwrap_or("");
            let cmd = if cmd.eq_ignore_ascii_case("UID") {
                let (sub, rest) = arg.split_once(' ').unwrap();
                (format!("UID {sub}"), rest.to_owned())
            } else {
                (cmd.to_ascii_uppercase(), arg.to_owned())
            };
            let (cmd, arg) = (cmd.0, cmd.1);
            *seen
                .lock()
                .unwrap()
                .commands
                .entry(cmd.clone())
                .or_default() += 1;
            let mut out: Vec<u8> = Vec::new();
            let mut boxes_now = boxes.lock().unwrap();
            match cmd.as_str() {
                "LOGIN" => {
                    let mut s = seen.lock().unwrap();
                    if b.refuse_login {
                        out.extend(format!("{tag} NO [AUTHENTICATIONFAILED] no\r\n").bytes());
                    } else if b.limit.is_some_and(|l| s.logged_in >= l) {
                        w.write_all(b"* BYE too many\r\n")?;
                        return Ok(());
                    } else {
                        s.logged_in += 1;
                        user = arg.split(' ').next().unwrap().trim_matches('"').to_owned();
                        boxes_now.entry(user.clone()).or_insert_with(|| {
                            mailbox()
                                .into_iter()
                                .zip(1..)
                                .map(|(m, u)| (u, m))
                                .collect()
                        });
                        out.extend(format!("{tag} OK logged in\r\n").bytes());
                    }
                }
                "SELECT" => {
                    let n = boxes_now[&user].len();
                    out.extend(format!("* {n} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n").bytes());
                    out.extend(format!("{tag} OK [READ-WRITE] selected\r\n").bytes());
                }
                "FETCH" => {
                    let mbox = &boxes_now[&user];
                    let (set, items) = arg.split_once(' ').unwrap();
                    let range: Vec<usize> = match set {
                        "1:*" => (1..=mbox.len()).collect(),
                        s if s.starts_with("1:") => (1..=s[2..].parse().unwrap()).collect(),
                        s => vec![s.parse().unwrap()],
                    };
                    for n in range.into_iter().filter(|&n| n <= mbox.len()) {
                        let m = &mbox[n - 1].1;
                        if items.contains("ENVELOPE") {
                            // A subject as a literal, as servers send 8-bit or long ones.
                            out.extend(
                                format!(
                                    "* {n} FETCH (FLAGS () ENVELOPE (NIL {{9}}\r\nsubject {n} \
                                     NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
                                )
                                .bytes(),
                            );
                        } else if items.contains("RFC822.SIZE") {
                            out.extend(
                                format!("* {n} FETCH (RFC822.SIZE {})\r\n", m.len()).bytes(),
                            );
                        } else {
                            let cut = usize::from(b.short_body == Some(n));
                            let body = &m[..m.len() - cut];
                            out.extend(
                                format!("* {n} FETCH (BODY[] {{{}}}\r\n", body.len()).bytes(),
                            );
                            out.extend_from_slice(body);
                            out.extend_from_slice(b")\r\n");
                        }
                    }
                    out.extend(format!("{tag} OK done\r\n").bytes());
                }
                "STORE" | "UID STORE" => {
                    let (n, rest) = arg.split_once(' ').unwrap();
                    let n: u32 = n.parse().unwrap();
                    let seq = if cmd == "STORE" {
                        n
                    } else {
                        boxes_now[&user].iter().position(|(u, _)| *u == n).unwrap() as u32 + 1
                    };
                    let flags = if rest.starts_with('+') {
                        rest.split_once('(').unwrap().1.trim_end_matches(')')
                    } else {
                        ""
                    };
                    out.extend(format!("* {seq} FETCH (FLAGS ({flags}))\r\n").bytes());
                    out.extend(format!("{tag} OK stored\r\n").bytes());
                }
                "APPEND" => {
                    let len: usize = crate::imap::literal_announcement(arg.as_bytes()).unwrap();
                    w.write_all(b"+ go\r\n")?;
                    let mut m = vec![0; len + 2];
                    r.read_exact(&mut m)?;
                    m.truncate(len);
                    let mbox = boxes_now.get_mut(&user).unwrap();
                    let uid = mbox.last().map_or(1, |(u, _)| u + 1);
                    mbox.push((uid, m));
                    seen.lock().unwrap().appended.push(len);
                    out.extend(format!("* {} EXISTS\r\n", mbox.len()).bytes());
                    if b.no_uidplus {
                        out.extend(format!("{tag} OK appended\r\n").bytes());
                    } else {
                        out.extend(format!("{tag} OK [APPENDUID 7 {uid}] appended\r\n").bytes());
                    }
                }
                "UID EXPUNGE" | "EXPUNGE" => {
                    let mbox = boxes_now.get_mut(&user).unwrap();
                    let seq = mbox.len();
                    mbox.pop();
                    out.extend(format!("* {seq} EXPUNGE\r\n{tag} OK expunged\r\n").bytes());
                }
                "IDLE" => {
                    seen.lock().unwrap().idling += 1;
                    out.extend_from_slice(b"+ idling\r\n");
                }
                "LOGOUT" => {
                    w.write_all(format!("* BYE bye\r\n{tag} OK done\r\n").as_bytes())?;
                    return Ok(());
                }
                _ => out.extend(format!("{tag} BAD what\r\n").bytes()),
            }
            drop(boxes_now);
            // In pieces, so the client sees responses and literals cut at odd places.
            for piece in out.chunks(37) {
                w.write_all(piece)?;
            }
        }
    }

    fn spec(addr: SocketAddr, users: &[&str], connections: usize, sessions: usize) -> ImapLoadSpec {
        ImapLoadSpec {
            connections,
            sessions,
            append_size: 1000,
            ..ImapLoadSpec::new(
                addr,
                users.iter().map(|u| (*u).to_owned()).collect(),
                "pw",
                5,
            )
        }
    }

    fn count(seen: &Seen, cmd: &str) -> usize {
        seen.commands.get(cmd).copied().unwrap_or(0)
    }

    #[test]
    fn sessions_run_every_command_and_leave_the_mailbox_as_it_was() {
        let (addr, seen) = responder(Behaviour::default());
        let report = run(&spec(addr, &["a", "b", "c"], 3, 30)).unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (30, 0),
            "{report}"
        );
        assert_eq!(report.operations, 30 * OPERATIONS_PER_SESSION);
        let l = report.outcome.latency;
        assert!(l.p50 > Duration::ZERO && l.p50 <= l.p99 && l.p99 <= l.max);
        let seen = seen.lock().unwrap();
        // 3 probes + 30 sessions.
        assert_eq!(count(&seen, "LOGIN"), 33);
        assert_eq!(count(&seen, "FETCH"), 3 + 30 * (1 + BODY_FETCHES));
        assert_eq!(count(&seen, "STORE"), 60);
        assert_eq!(
            (count(&seen, "UID STORE"), count(&seen, "UID EXPUNGE")),
            (30, 30)
        );
        assert_eq!(seen.appended, vec![1000; 30]);
        assert!(report.to_string().contains("30 sessions ok, 0 failed"));
    }

    #[test]
    fn without_uidplus_the_last_message_is_expunged() {
        let (addr, seen) = responder(Behaviour {
            no_uidplus: true,
            ..Behaviour::default()
        });
        let report = run(&spec(addr, &["a"], 1, 4)).unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (4, 0),
            "{report}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!((count(&seen, "STORE"), count(&seen, "EXPUNGE")), (12, 4));
    }

    #[test]
    fn a_wrong_body_size_fails_the_session() {
        let (addr, _) = responder(Behaviour {
            short_body: Some(3),
            ..Behaviour::default()
        });
        let report = run(&spec(addr, &["a"], 1, 20)).unwrap();
        assert!(report.outcome.failed > 0, "{report}");
        assert_eq!(report.outcome.ok + report.outcome.failed, 20);
        let size = mailbox()[2].len();
        let want = format!(
            "FETCH 3 (BODY.PEEK[]): {} octets, RFC822.SIZE {size}",
            size - 1
        );
        assert!(report.outcome.failures[0].contains(&want), "{report}");
    }

    #[test]
    fn a_refused_login_or_no_server_is_a_setup_error() {
        let (addr, _) = responder(Behaviour {
            refuse_login: true,
            ..Behaviour::default()
        });
        let e = run(&spec(addr, &["a"], 2, 5)).unwrap_err();
        assert!(
            e.to_string().contains("LOGIN: NO [AUTHENTICATIONFAILED]"),
            "{e}"
        );
        let (addr, _) = responder(Behaviour::default());
        let e = run(&ImapLoadSpec {
            messages: 9,
            ..spec(addr, &["a"], 1, 5)
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("no RFC822.SIZE for message 6"),
            "{e}"
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            run(&spec(closed, &["a"], 1, 1)),
            Err(ImapLoadError::Setup { .. })
        ));
        assert!(matches!(
            run(&spec(closed, &[], 1, 1)),
            Err(ImapLoadError::InvalidSpec(_))
        ));
    }

    #[test]
    fn held_connections_stop_at_the_servers_limit_and_idle() {
        let (addr, seen) = responder(Behaviour {
            limit: Some(7),
            ..Behaviour::default()
        });
        let mut held = hold(&HoldSpec {
            addr,
            users: vec!["a".into(), "b".into()],
            password: "pw".into(),
            connections: 10,
            threads: 3,
            timeout: Duration::from_secs(10),
        });
        assert_eq!(held.len(), 7);
        assert!(
            held.stopped_by.as_deref().unwrap().contains("too many"),
            "{held:?}"
        );
        let took = held.idle(3, 100).unwrap();
        assert_eq!(seen.lock().unwrap().idling, 7);
        // Paced: the seventh starts 60 ms after the first.
        assert!(took >= Duration::from_millis(60), "{took:?}");
    }

    #[test]
    fn literals_and_status_lines() {
        assert_eq!(
            crate::imap::literal_announcement(b"* 1 FETCH (BODY[] {12}"),
            Some(12)
        );
        assert_eq!(
            crate::imap::literal_announcement(b"a APPEND x {5+}"),
            Some(5)
        );
        assert_eq!(crate::imap::literal_announcement(b"* 1 FETCH (X {})"), None);
        assert_eq!(crate::imap::literal_announcement(b"{x}"), None);
        let status = |t: &[u8]| Response {
            text: t.to_vec(),
            literals: Vec::new(),
        };
        assert!(status(b"* OK text {5}").is_status());
        assert!(status(b"a1 OK done {5}").is_status());
        assert!(!status(b"* 3 FETCH (BODY[] {5}").is_status());
        assert_eq!(status(b"* 3 EXISTS").number_of(b"EXISTS"), Some(3));
        assert_eq!(status(b"* 3 EXPUNGE").number_of(b"EXISTS"), None);
        assert_eq!(status(b"* OK [UIDNEXT 4]").number_of(b"EXISTS"), None);
        assert_eq!(
            appended_uid("OK [APPENDUID 38505 3955] APPEND done"),
            Some(3955)
        );
        assert_eq!(appended_uid("OK APPEND done"), None);
        for size in [0, 200, 201, 202, 10240] {
            let m = append_message(size, "u@x.test", 1, 2);
            assert!(m.len() == size || size < 200, "{size}: {}", m.len());
            assert!(m.ends_with(b"\r\n"));
        }
    }
}
