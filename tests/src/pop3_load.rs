//! A POP3 load generator: `sessions` complete POP3 sessions over `connections` concurrent
//! clients, each session downloading the whole maildrop and leaving it on the server.
//!
//! ```text
//!   run(spec) ──► C workers; worker w logs in as users[w % users.len()]
//!                   next session from a shared counter, until all N are taken
//!      t0 ──► connect                 ◄── +OK greeting
//!             USER u, PASS p          ◄── +OK, +OK
//!             STAT                    ◄── +OK n octets
//!             UIDL                    ◄── +OK, n lines "k uid", "."
//!             RETR 1 … RETR n         ◄── +OK, the message (dot-stuffed), "."   octets counted
//!             QUIT (no DELE)          ◄── +OK
//!      t1 ──► close                   session latency = t1 - t0
//! ```
//!
//! A POP3 session is a connection (RFC 1939), so every session connects afresh. Servers may lock
//! a maildrop for the length of a session (RFC 1939 section 8; wasmail does, answering a second
//! login `-ERR [IN-USE]`), so each worker keeps to one user: with at least as many users as
//! connections no two sessions share a maildrop. A session counts as successful only if every
//! reply was `+OK`, UIDL listed as many messages as STAT, every RETR was read to its final `.`,
//! and the octets retrieved (dot-stuffing undone, the terminating line not counted) add up to the
//! octets STAT announced.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::bench::{Outcome, Tally};

/// How long to wait for any one read (or write) before the session counts as broken.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest status or UIDL line accepted (RFC 2449 allows 512 octets for a response line).
const MAX_LINE: u64 = 8192;

/// Where to connect, as whom, and how much.
#[derive(Debug, Clone)]
pub struct Pop3LoadSpec {
    /// The POP3 server (plain TCP, no TLS).
    pub addr: SocketAddr,
    /// Concurrent clients, each running one session after another.
    pub connections: usize,
    /// Sessions in all.
    pub sessions: usize,
    /// Login names: worker `w` always logs in as `users[w % users.len()]`.
    pub users: Vec<String>,
    /// Every user's password (USER/PASS).
    pub password: String,
    /// Messages every maildrop must hold: a session whose STAT says otherwise fails. `None`: any.
    pub expect_messages: Option<usize>,
}

impl Pop3LoadSpec {
    /// 2000 sessions over 20 connections, every maildrop checked to hold `expect_messages`.
    pub fn new(
        addr: SocketAddr,
        users: Vec<String>,
        password: impl Into<String>,
        expect_messages: Option<usize>,
    ) -> Pop3LoadSpec {
        Pop3LoadSpec {
            addr,
            connections: 20,
            sessions: 2000,
            users,
            password: password.into(),
            expect_messages,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Pop3Report {
    /// Sessions that did everything and got `+OK` to QUIT, and those refused at some step,
    /// broken off, inconsistent, or never run; elapsed from the start of the first session to
    /// the end of the last; latency from connect to the `+OK` after QUIT.
    pub outcome: Outcome,
    /// TCP connections that were established (one per session attempted).
    pub connections_opened: usize,
    /// Messages retrieved in successful sessions.
    pub messages: usize,
    /// Message octets retrieved in successful sessions (as stored: dot-stuffing undone, the
    /// terminating `.` line not counted).
    pub octets: u64,
    /// Successful sessions per second.
    pub sessions_per_second: f64,
    /// `octets` per second, in MB (10^6 octets).
    pub mb_per_second: f64,
}

impl fmt::Display for Pop3Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.outcome.write(
            f,
            "sessions ",
            format_args!(
                "{:.1} sessions/s, {:.1} MB/s ({} messages, {} octets)",
                self.sessions_per_second, self.mb_per_second, self.messages, self.octets,
            ),
            "session latency",
        )
    }
}

/// Why a run could not take place at all. Failed sessions are not errors: they are counted in
/// [`Pop3Report::outcome`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Pop3LoadError {
    /// The spec cannot be run (no connections, no users).
    #[error("invalid POP3 load spec: {0}")]
    InvalidSpec(&'static str),
    /// Not one connection could be established: the server is down or not listening there.
    #[error("no connection to {addr} could be opened: {reason}")]
    Connect { addr: SocketAddr, reason: String },
}

/// Runs `spec.sessions` sessions over `spec.connections` concurrent clients and measures them.
pub async fn run(spec: &Pop3LoadSpec) -> Result<Pop3Report, Pop3LoadError> {
    if spec.connections == 0 {
        return Err(Pop3LoadError::InvalidSpec("connections must be at least 1"));
    }
    if spec.users.is_empty() {
        return Err(Pop3LoadError::InvalidSpec("no users"));
    }
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        next: AtomicUsize::new(0),
    });
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..spec.connections.min(spec.sessions.max(1)) {
        let user = spec.users[w % spec.users.len()].clone();
        workers.spawn(worker(Arc::clone(&shared), user));
    }
    let mut total = WorkerResult::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(r) => total.merge(r),
            Err(e) => total.tally.note(format!("load worker died: {e}")),
        }
    }
    let elapsed = start.elapsed();
    if total.connections_opened == 0 {
        return Err(Pop3LoadError::Connect {
            addr: spec.addr,
            reason: total
                .tally
                .failures
                .first()
                .cloned()
                .unwrap_or_else(|| "no worker ran".to_owned()),
        });
    }
    let outcome = total
        .tally
        .finish(elapsed, spec.sessions, "sessions never run");
    Ok(Pop3Report {
        sessions_per_second: outcome.per_second(outcome.ok as f64),
        mb_per_second: outcome.per_second(total.octets as f64 / 1e6),
        outcome,
        connections_opened: total.connections_opened,
        messages: total.messages,
        octets: total.octets,
    })
}

// ---- the workers --------------------------------------------------------------------------------

struct Shared {
    spec: Pop3LoadSpec,
    next: AtomicUsize,
}

impl Shared {
    fn take(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.spec.sessions).then_some(i)
    }
}

#[derive(Default)]
struct WorkerResult {
    tally: Tally,
    connections_opened: usize,
    messages: usize,
    octets: u64,
}

impl WorkerResult {
    fn merge(&mut self, other: WorkerResult) {
        self.tally.merge(other.tally);
        self.connections_opened += other.connections_opened;
        self.messages += other.messages;
        self.octets += other.octets;
    }
}

async fn worker(shared: Arc<Shared>, user: String) -> WorkerResult {
    let spec = &shared.spec;
    let mut out = WorkerResult::default();
    while let Some(index) = shared.take() {
        let t0 = Instant::now();
        let mut conn = match Conn::open(spec.addr).await {
            Ok(c) => c,
            Err(e) => {
                out.tally
                    .fail(format!("session {index} ({user}): connect: {e}"));
                continue;
            }
        };
        out.connections_opened += 1;
        match conn.session(spec, &user).await {
            Ok(got) => {
                out.tally.latencies.push(t0.elapsed());
                out.messages += got.messages;
                out.octets += got.octets;
                conn.close().await;
            }
            Err(e) => {
                out.tally.fail(format!("session {index} ({user}): {e}"));
                if e.connection_usable() {
                    conn.quit_quietly().await;
                }
            }
        }
    }
    out
}

/// What one session retrieved.
struct Retrieved {
    messages: usize,
    octets: u64,
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within {}s", REPLY_TIMEOUT.as_secs())]
    Timeout,
    #[error("connection closed by the server")]
    Closed,
    #[error("not a POP3 response: {0:?}")]
    Garbage(String),
    /// A `-ERR` (the connection can still be QUIT).
    #[error("{what}: {reply}")]
    Refused { what: String, reply: String },
    /// The responses contradict each other or the spec (the connection can still be QUIT).
    #[error("{0}")]
    Inconsistent(String),
}

impl SessionError {
    fn connection_usable(&self) -> bool {
        matches!(
            self,
            SessionError::Refused { .. } | SessionError::Inconsistent(_)
        )
    }
}

struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    line: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, SessionError> {
        let tcp = timed(TcpStream::connect(addr)).await??;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        Ok(Conn {
            r: BufReader::with_capacity(64 * 1024, r),
            w,
            line: Vec::with_capacity(512),
        })
    }

    /// Greeting, USER/PASS, STAT, UIDL, RETR every message, QUIT.
    async fn session(
        &mut self,
        spec: &Pop3LoadSpec,
        user: &str,
    ) -> Result<Retrieved, SessionError> {
        self.ok("greeting").await?;
        self.command(&format!("USER {user}"), "USER").await?;
        self.command(&format!("PASS {}", spec.password), "PASS")
            .await?;
        let stat = self.command("STAT", "STAT").await?;
        let (count, size) =
            parse_stat(&stat).ok_or_else(|| SessionError::Garbage(format!("STAT: +OK {stat}")))?;
        if let Some(want) = spec.expect_messages
            && count != want
        {
            return Err(SessionError::Inconsistent(format!(
                "STAT: {count} messages, expected {want}"
            )));
        }
        self.command("UIDL", "UIDL").await?;
        let listed = self.uidl_listing().await?;
        if listed != count {
            return Err(SessionError::Inconsistent(format!(
                "UIDL listed {listed} messages, STAT {count}"
            )));
        }
        let mut octets = 0u64;
        for n in 1..=count {
            self.command(&format!("RETR {n}"), "RETR").await?;
            octets += self.message_octets().await?;
        }
        if octets != size {
            return Err(SessionError::Inconsistent(format!(
                "RETR delivered {octets} octets in all, STAT announced {size}"
            )));
        }
        self.command("QUIT", "QUIT").await?;
        Ok(Retrieved {
            messages: count,
            octets,
        })
    }

    /// Sends `cmd` and reads a `+OK` status line; returns its text after `+OK `.
    async fn command(&mut self, cmd: &str, what: &str) -> Result<String, SessionError> {
        let mut bytes = Vec::with_capacity(cmd.len() + 2);
        bytes.extend_from_slice(cmd.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        timed(self.w.write_all(&bytes)).await??;
        self.ok(what).await
    }

    /// Reads one status line: its text after `+OK`, or `Refused` with the `-ERR` line.
    async fn ok(&mut self, what: &str) -> Result<String, SessionError> {
        let line = self.read_line().await?;
        if let Some(rest) = line.strip_prefix("+OK") {
            if rest.is_empty() || rest.starts_with(' ') {
                return Ok(rest.trim_start().to_owned());
            }
        } else if line.starts_with("-ERR") {
            return Err(SessionError::Refused {
                what: what.to_owned(),
                reply: line,
            });
        }
        Err(SessionError::Garbage(line))
    }

    /// One line (CRLF or LF removed) of at most [`MAX_LINE`] octets.
    async fn read_line(&mut self) -> Result<String, SessionError> {
        self.line.clear();
        let n = timed(
            (&mut self.r)
                .take(MAX_LINE)
                .read_until(b'\n', &mut self.line),
        )
        .await??;
        if n == 0 {
            return Err(SessionError::Closed);
        }
        if self.line.last() != Some(&b'\n') {
            return Err(SessionError::Garbage(format!(
                "a line longer than {MAX_LINE} octets"
            )));
        }
        let line = String::from_utf8_lossy(&self.line);
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The lines of a UIDL listing up to its `.`: each must be `<k> <uid>` with k counting from 1.
    async fn uidl_listing(&mut self) -> Result<usize, SessionError> {
        let mut listed = 0usize;
        loop {
            let line = self.read_line().await?;
            if line == "." {
                return Ok(listed);
            }
            listed += 1;
            let mut parts = line.split_ascii_whitespace();
            let number = parts.next().and_then(|k| k.parse::<usize>().ok());
            let uid = parts.next();
            if number != Some(listed) || uid.is_none_or(str::is_empty) || parts.next().is_some() {
                return Err(SessionError::Garbage(format!(
                    "UIDL line {listed}: {line:?}"
                )));
            }
        }
    }

    /// Reads a multi-line response body to its terminating `.` line and returns its octets with
    /// the dot-stuffing undone (the terminating line not counted).
    async fn message_octets(&mut self) -> Result<u64, SessionError> {
        let mut body = BodyCounter::default();
        loop {
            let chunk = timed(self.r.fill_buf()).await??;
            if chunk.is_empty() {
                return Err(SessionError::Closed);
            }
            let (used, done) = body.feed(chunk);
            self.r.consume(used);
            if done {
                return Ok(body.octets);
            }
        }
    }

    /// After a successful QUIT: close our side.
    async fn close(mut self) {
        let _ = self.w.shutdown().await;
    }

    /// QUIT after a failure, waiting briefly for the answer, so a maildrop lock is released
    /// before the worker's next session; errors are of no interest any more.
    async fn quit_quietly(mut self) {
        if self.w.write_all(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.read_line()).await;
        }
        let _ = self.w.shutdown().await;
    }
}

/// `<count> <octets>` (RFC 1939 5: the STAT answer; anything after them is ignored).
fn parse_stat(text: &str) -> Option<(usize, u64)> {
    let mut parts = text.split_ascii_whitespace();
    let count = parts.next()?.parse().ok()?;
    let size = parts.next()?.parse().ok()?;
    Some((count, size))
}

/// Counts the octets of a dot-stuffed multi-line body as it arrives in chunks of any size
/// (RFC 1939 3): a line starting with `.` loses that `.`, and `.` CRLF (or a bare `.` LF) ends it.
#[derive(Debug, Default)]
struct BodyCounter {
    at: BodyAt,
    octets: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum BodyAt {
    /// At the start of a line.
    #[default]
    LineStart,
    /// After a `.` at the start of a line (not counted: stuffing, or the terminator).
    Dot,
    /// After `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Inside,
}

impl BodyCounter {
    /// Takes the bytes of `chunk` up to the end of the body: how many it used, and whether the
    /// body ended (the rest of the chunk is the next response's).
    fn feed(&mut self, chunk: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            i += 1;
            self.at = match self.at {
                BodyAt::Inside => {
                    // The rest of the line in one step.
                    match chunk[i - 1..].iter().position(|&c| c == b'\n') {
                        Some(nl) => {
                            self.octets += nl as u64 + 1;
                            i += nl;
                            BodyAt::LineStart
                        }
                        None => {
                            self.octets += (chunk.len() - (i - 1)) as u64;
                            i = chunk.len();
                            BodyAt::Inside
                        }
                    }
                }
                BodyAt::LineStart if b == b'.' => BodyAt::Dot,
                BodyAt::LineStart | BodyAt::Dot => {
                    if self.at == BodyAt::Dot && b == b'\r' {
                        BodyAt::DotCr
                    } else if self.at == BodyAt::Dot && b == b'\n' {
                        return (i, true);
                    } else {
                        self.octets += 1;
                        if b == b'\n' {
                            BodyAt::LineStart
                        } else {
                            BodyAt::Inside
                        }
                    }
                }
                BodyAt::DotCr if b == b'\n' => return (i, true),
                BodyAt::DotCr => {
                    // `.` CR and more: the dot was stuffing, the CR is content.
                    self.octets += 2;
                    BodyAt::Inside
                }
            };
        }
        (i, false)
    }
}

async fn timed<F: Future>(f: F) -> Result<F::Output, SessionError> {
    tokio::time::timeout(REPLY_TIMEOUT, f)
        .await
        .map_err(|_| SessionError::Timeout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure fails the test")]
mod tests {
    //! The client against a small scripted POP3 responder (written here, on tokio) that keeps a
    //! maildrop per user, locks it per session as RFC 1939 asks, and records what it was sent.

    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    /// The maildrop every user has: lines starting with a dot, a line that is only a dot, an
    /// empty body, and a message of 60 lines.
    fn maildrop() -> Vec<Vec<u8>> {
        let big: Vec<u8> = (0..60)
            .flat_map(|i| {
                format!("line {i:03} of a longer message, some text to fill it\r\n").into_bytes()
            })
            .collect();
        vec![
            b"Subject: one\r\n\r\n.starts with a dot\r\n.\r\n..two dots\r\nend\r\n".to_vec(),
            b"Subject: empty body\r\n\r\n".to_vec(),
            [b"Subject: big\r\n\r\n".as_slice(), &big].concat(),
        ]
    }

    #[derive(Clone, Default)]
    struct Behaviour {
        /// Users whose password is not "secret".
        wrong_password: HashSet<&'static str>,
        /// STAT announces this many octets more than there are.
        stat_lies_by: u64,
        /// The connection is closed halfway through RETR of this message number.
        close_in_retr: Option<usize>,
    }

    #[derive(Default)]
    struct Seen {
        sessions: usize,
        commands: HashMap<String, usize>,
        /// Logins refused because the maildrop was locked by another session.
        in_use: usize,
        locked: HashSet<String>,
    }

    async fn responder(b: Behaviour) -> (SocketAddr, Arc<Mutex<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                s.lock().unwrap().sessions += 1;
                tokio::spawn(session(sock, b.clone(), Arc::clone(&s)));
            }
        });
        (addr, seen)
    }

    fn stuffed(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                out.push(b'.');
            }
            out.extend_from_slice(line);
        }
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    async fn session(sock: TcpStream, b: Behaviour, seen: Arc<Mutex<Seen>>) {
        sock.set_nodelay(true).unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        let mails = maildrop();
        let total: usize = mails.iter().map(Vec::len).sum();
        w.write_all(b"+OK fake POP3 ready\r\n").await.unwrap();
        let (mut user, mut locked) = (None::<String>, None::<String>);
        let mut line = String::new();
        let unlock = |locked: &mut Option<String>| {
            if let Some(u) = locked.take() {
                seen.lock().unwrap().locked.remove(&u);
            }
        };
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap() == 0 {
                unlock(&mut locked);
                return;
            }
            let mut words = line.split_ascii_whitespace();
            let cmd = words.next().unwrap_or("").to_ascii_uppercase();
            let arg = words.next().unwrap_or("").to_owned();
            *seen
                .lock()
                .unwrap()
                .commands
                .entry(cmd.clone())
                .or_default() += 1;
            let reply: Vec<u8> = match cmd.as_str() {
                "USER" => {
                    user = Some(arg);
                    b"+OK\r\n".to_vec()
                }
                "PASS" => {
                    let u = user.clone().unwrap();
                    let mut s = seen.lock().unwrap();
                    if b.wrong_password.contains(u.as_str()) || arg != "secret" {
                        b"-ERR [AUTH] Authentication failed\r\n".to_vec()
                    } else if !s.locked.insert(u.clone()) {
                        s.in_use += 1;
                        b"-ERR [IN-USE] Mailbox locked by another session\r\n".to_vec()
                    } else {
                        locked = Some(u);
                        format!("+OK Logged in, {} messages\r\n", mails.len()).into_bytes()
                    }
                }
                "STAT" => format!("+OK {} {}\r\n", mails.len(), total as u64 + b.stat_lies_by)
                    .into_bytes(),
                "UIDL" => {
                    let mut out = b"+OK\r\n".to_vec();
                    for i in 1..=mails.len() {
                        out.extend_from_slice(format!("{i} uid-{i:04}\r\n").as_bytes());
                    }
                    out.extend_from_slice(b".\r\n");
                    out
                }
                "RETR" => {
                    let n: usize = arg.parse().unwrap();
                    let m = &mails[n - 1];
                    let body = stuffed(m);
                    if b.close_in_retr == Some(n) {
                        w.write_all(b"+OK\r\n").await.unwrap();
                        w.write_all(&body[..body.len() / 2]).await.unwrap();
                        unlock(&mut locked);
                        return;
                    }
                    // In pieces, so the client sees the body cut at odd places.
                    w.write_all(format!("+OK {} octets\r\n", m.len()).as_bytes())
                        .await
                        .unwrap();
                    for piece in body.chunks(333) {
                        w.write_all(piece).await.unwrap();
                    }
                    continue;
                }
                "QUIT" => {
                    unlock(&mut locked);
                    w.write_all(b"+OK bye\r\n").await.unwrap();
                    return;
                }
                _ => b"-ERR unknown command\r\n".to_vec(),
            };
            w.write_all(&reply).await.unwrap();
        }
    }

    fn spec(addr: SocketAddr, users: &[&str], connections: usize, sessions: usize) -> Pop3LoadSpec {
        Pop3LoadSpec {
            connections,
            sessions,
            ..Pop3LoadSpec::new(
                addr,
                users.iter().map(|u| (*u).to_owned()).collect(),
                "secret",
                Some(3),
            )
        }
    }

    fn count(seen: &Seen, cmd: &str) -> usize {
        seen.commands.get(cmd).copied().unwrap_or(0)
    }

    #[tokio::test]
    async fn sessions_retrieve_every_message_and_leave_it() {
        let (addr, seen) = responder(Behaviour::default()).await;
        let report = run(&spec(addr, &["a", "b", "c", "d"], 4, 40))
            .await
            .unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (40, 0),
            "{report}"
        );
        let per_session: usize = maildrop().iter().map(Vec::len).sum();
        assert_eq!(report.messages, 40 * 3);
        assert_eq!(report.octets, 40 * per_session as u64);
        assert_eq!(report.connections_opened, 40);
        let l = report.outcome.latency;
        assert!(l.p50 > Duration::ZERO);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);
        assert!(report.sessions_per_second > 0.0 && report.mb_per_second > 0.0);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.sessions, 40);
        // One user per connection: no session ever found its maildrop locked.
        assert_eq!(seen.in_use, 0);
        for (cmd, n) in [("USER", 40), ("PASS", 40), ("STAT", 40), ("UIDL", 40)] {
            assert_eq!(count(&seen, cmd), n, "{cmd}");
        }
        assert_eq!(count(&seen, "RETR"), 120);
        assert_eq!(count(&seen, "QUIT"), 40);
        assert_eq!(count(&seen, "DELE"), 0);
        assert!(report.to_string().contains("40 sessions ok, 0 failed"));
    }

    #[tokio::test]
    async fn refusals_and_inconsistencies_fail_the_session_with_the_reason() {
        // A wrong password for one of two users: half the sessions fail, with the reply.
        let (addr, seen) = responder(Behaviour {
            wrong_password: ["bad"].into(),
            ..Behaviour::default()
        })
        .await;
        let report = run(&spec(addr, &["good", "bad"], 2, 20)).await.unwrap();
        assert_eq!(report.outcome.ok + report.outcome.failed, 20, "{report}");
        assert!(report.outcome.failed >= 1, "{report}");
        assert_eq!(report.messages, report.outcome.ok * 3);
        assert!(
            report.outcome.failures[0].contains("(bad): PASS: -ERR [AUTH] Authentication failed"),
            "{report}"
        );
        // Every failed session still said QUIT.
        assert_eq!(count(&seen.lock().unwrap(), "QUIT"), 20);

        // STAT promising more octets than RETR delivers.
        let (addr, _) = responder(Behaviour {
            stat_lies_by: 7,
            ..Behaviour::default()
        })
        .await;
        let report = run(&spec(addr, &["a"], 1, 3)).await.unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (0, 3),
            "{report}"
        );
        assert!(
            report.outcome.failures[0].contains("STAT announced"),
            "{report}"
        );
        assert_eq!(report.octets, 0);

        // Fewer messages than expected.
        let (addr, _) = responder(Behaviour::default()).await;
        let report = run(&Pop3LoadSpec {
            expect_messages: Some(20),
            ..spec(addr, &["a"], 1, 2)
        })
        .await
        .unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (0, 2),
            "{report}"
        );
        assert!(
            report.outcome.failures[0].contains("STAT: 3 messages, expected 20"),
            "{report}"
        );

        // The server going away in the middle of a message.
        let (addr, _) = responder(Behaviour {
            close_in_retr: Some(3),
            ..Behaviour::default()
        })
        .await;
        let report = run(&spec(addr, &["a"], 1, 2)).await.unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (0, 2),
            "{report}"
        );
        assert!(
            report.outcome.failures[0].contains("connection closed"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn no_server_is_an_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let e = run(&spec(addr, &["a"], 2, 5)).await.unwrap_err();
        assert!(matches!(e, Pop3LoadError::Connect { .. }), "{e}");
        let e = run(&spec(addr, &[], 2, 5)).await.unwrap_err();
        assert!(matches!(e, Pop3LoadError::InvalidSpec(_)), "{e}");
    }

    #[test]
    fn bodies_are_counted_wherever_the_chunks_end() {
        let next = b"+OK next response\r\n";
        for message in maildrop() {
            let wire = [stuffed(&message).as_slice(), next].concat();
            let body_len = wire.len() - next.len();
            let want = message.len() as u64 + u64::from(!message.ends_with(b"\r\n")) * 2;
            // Cut once at every place, and fed one byte at a time.
            for cut in 0..=wire.len() {
                let mut c = BodyCounter::default();
                let (used, done) = c.feed(&wire[..cut]);
                let (used, done) = if done {
                    (used, done)
                } else {
                    assert_eq!(used, cut);
                    let (more, done) = c.feed(&wire[cut..]);
                    (cut + more, done)
                };
                assert!(done);
                assert_eq!((used, c.octets), (body_len, want), "cut at {cut}");
            }
            let mut c = BodyCounter::default();
            let mut used = 0;
            while !c.feed(&wire[used..=used]).1 {
                used += 1;
            }
            assert_eq!((used + 1, c.octets), (body_len, want));
        }
        // A bare LF after the terminating dot ends the body too.
        let mut c = BodyCounter::default();
        assert_eq!(c.feed(b"a\n.\nrest"), (4, true));
        assert_eq!(c.octets, 2);
    }

    #[test]
    fn stat() {
        assert_eq!(parse_stat("3 1234"), Some((3, 1234)));
        assert_eq!(parse_stat("3 1234 extra"), Some((3, 1234)));
        assert_eq!(parse_stat("3"), None);
        assert_eq!(parse_stat("x 1"), None);
    }
}
