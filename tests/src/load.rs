//! An SMTP load generator: `messages` messages over `connections` concurrent plain-TCP
//! connections, with per-message latency.
//!
//! ```text
//!   run(spec) ──► C workers, each one connection (reconnects once if it breaks)
//!                   connect → 220 → EHLO (PIPELINING?) ─┐
//!                   ┌───────────────────────────────────┘
//!                   ▼   next index from a shared counter, until all N are taken
//!      t0 ──► MAIL FROM + RCPT TO… + DATA   (one write when pipelining, else one at a time)
//!             ◄── 250, 250…, 354
//!             message (dot-stuffed) + "." ──►
//!      t1 ◄── 250 after the final dot        latency = t1 - t0
//!                   │ (a refusal: RSET, go on; a broken connection: reconnect)
//!                   ▼
//!                 QUIT
//! ```
//!
//! Workers take message numbers from one counter, so a slow connection does not hold back the
//! others and every message gets a distinct number. Every message carries a unique
//! `Message-ID: <load-<index>.<run id>@wasmail-load.test>`, so deliveries can be counted and told
//! apart from those of earlier runs.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::bench::{Outcome, Tally};

/// How long to wait for any one reply (or write) before the connection counts as broken.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest reply line accepted (RFC 5321 allows 512 octets; some servers send more).
const MAX_LINE: u64 = 8192;

/// What to send, where and how.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The SMTP server (plain TCP, no TLS).
    pub addr: SocketAddr,
    /// Concurrent connections, each reused for many transactions.
    pub connections: usize,
    /// Messages in all.
    pub messages: usize,
    /// Size of each message as delivered (headers + body, CRLF line ends, before dot-stuffing).
    /// Messages never come out smaller than their headers (~300 octets).
    pub message_size: usize,
    /// The reverse-path (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// Recipients (`RCPT TO`), without angle brackets: message `i` goes to `to[i % to.len()]`, or
    /// to all of them when `all_recipients` is set.
    pub to: Vec<String>,
    /// Every message to every address in `to` (one transaction, several `RCPT`).
    pub all_recipients: bool,
    /// Send MAIL + RCPT + DATA in one write when the server advertises PIPELINING (RFC 2920).
    pub pipelining: bool,
}

impl LoadSpec {
    /// 5000 messages of 1 KiB over 20 connections to `to`, from `load@wasmail-load.test`, with
    /// pipelining.
    pub fn new(addr: SocketAddr, to: impl Into<String>) -> LoadSpec {
        LoadSpec {
            addr,
            connections: 20,
            messages: 5000,
            message_size: 1024,
            from: "load@wasmail-load.test".to_owned(),
            to: vec![to.into()],
            all_recipients: false,
            pipelining: true,
        }
    }

    /// The recipients of message `index`.
    pub fn recipients(&self, index: usize) -> &[String] {
        if self.all_recipients || self.to.is_empty() {
            &self.to
        } else {
            let i = index % self.to.len();
            &self.to[i..=i]
        }
    }

    /// How many mailbox deliveries the whole run asks for (messages × recipients per message).
    pub fn deliveries(&self) -> usize {
        if self.all_recipients {
            self.messages * self.to.len()
        } else {
            self.messages
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Identifies this run's messages: their Message-IDs end in `.<run_id>@wasmail-load.test`.
    pub run_id: String,
    /// When the run started (also the messages' `Date:`).
    pub started: SystemTime,
    /// Messages whose every step was accepted (MAIL 2xx, each RCPT 2xx, DATA 354, final 2xx),
    /// and those refused at some step, lost with a broken connection, or never sent; elapsed
    /// from the first connect to the last QUIT; latency from writing MAIL to reading the reply
    /// to the final dot.
    pub outcome: Outcome,
    /// Connections opened, reconnections included.
    pub connections_opened: usize,
    /// Server advertised PIPELINING and the spec asked for it (on the first connection).
    pub pipelined: bool,
    /// Accepted messages per second.
    pub per_second: f64,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.outcome.write(
            f,
            "",
            format_args!(
                "{:.1} msg/s{}",
                self.per_second,
                if self.pipelined { " (pipelined)" } else { "" }
            ),
            "latency",
        )
    }
}

/// Why a run could not take place at all. Refused messages are not errors: they are counted in
/// [`LoadReport::outcome`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The spec cannot be run (no connections, no recipients).
    #[error("invalid load spec: {0}")]
    InvalidSpec(&'static str),
    /// Not one connection got as far as a successful EHLO: the server is down, not listening
    /// there, or refusing every client.
    #[error("no connection to {addr} could be opened: {reason}")]
    Connect { addr: SocketAddr, reason: String },
}

/// Sends `spec.messages` messages over `spec.connections` connections and measures them.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    if spec.connections == 0 {
        return Err(LoadError::InvalidSpec("connections must be at least 1"));
    }
    if spec.to.is_empty() {
        return Err(LoadError::InvalidSpec("no recipients"));
    }
    let started = SystemTime::now();
    let shared = Arc::new(Shared {
        spec: spec.clone(),
        run_id: run_id(started),
        date: rfc5322_date(started),
        next: AtomicUsize::new(0),
    });
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.connections.min(spec.messages.max(1)) {
        workers.spawn(worker(Arc::clone(&shared)));
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
        return Err(LoadError::Connect {
            addr: spec.addr,
            reason: total
                .tally
                .failures
                .first()
                .cloned()
                .unwrap_or_else(|| "no worker ran".to_owned()),
        });
    }
    let outcome = total.tally.finish(
        elapsed,
        spec.messages,
        "messages never sent: every connection was lost",
    );
    Ok(LoadReport {
        run_id: shared.run_id.clone(),
        started,
        per_second: outcome.per_second(outcome.ok as f64),
        outcome,
        connections_opened: total.connections_opened,
        pipelined: total.pipelined,
    })
}

/// The Message-ID (without angle brackets) of message `index` of run `run_id`.
pub fn message_id(run_id: &str, index: usize) -> String {
    format!("load-{index}.{run_id}@wasmail-load.test")
}

/// Message `index` of the run `report` describes, as sent (before dot-stuffing): headers with a
/// unique Message-ID, then lines of 76 characters (every eighth starting with `.`, so
/// dot-stuffing is exercised) up to exactly `spec.message_size` octets, CRLF line ends.
pub fn message(spec: &LoadSpec, report: &LoadReport, index: usize) -> Vec<u8> {
    message_dated(spec, &report.run_id, index, &rfc5322_date(report.started))
}

fn message_dated(spec: &LoadSpec, run_id: &str, index: usize, date: &str) -> Vec<u8> {
    let to = spec.recipients(index).join(", ");
    let mut m = format!(
        "From: <{from}>\r\nTo: {to}\r\nSubject: wasmail load message {index}\r\nDate: {date}\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        from = spec.from,
        id = message_id(run_id, index),
    )
    .into_bytes();
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut line = 0usize;
    // Lines of 76 characters and CRLF, the last ones shorter to reach the size exactly (a line
    // takes at least its CRLF, so one that would leave a single octet gives one up).
    while spec.message_size.saturating_sub(m.len()) >= 2 {
        let left = spec.message_size - m.len() - 2;
        let mut room = left.min(76);
        if left - room == 1 {
            room -= 1;
        }
        let start = m.len();
        m.extend((0..room).map(|i| CHARS[(line + i) % CHARS.len()]));
        if room > 0 && line % 8 == 3 {
            m[start] = b'.';
        }
        m.extend_from_slice(b"\r\n");
        line += 1;
    }
    m
}

/// RFC 5321 section 4.5.2 transparency: a `.` is added before every line that starts with one.
/// `message` must end with CRLF (as [`message`]'s output does); add `.\r\n` to end the DATA.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

// ---- the workers --------------------------------------------------------------------------------

struct Shared {
    spec: LoadSpec,
    run_id: String,
    date: String,
    next: AtomicUsize,
}

impl Shared {
    fn take(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.spec.messages).then_some(i)
    }
}

#[derive(Default)]
struct WorkerResult {
    tally: Tally,
    connections_opened: usize,
    pipelined: bool,
}

impl WorkerResult {
    /// Counts message `index` as failed, and why.
    fn fail(&mut self, index: usize, why: String) {
        self.tally.fail(format!("message {index}: {why}"));
    }

    /// Keeps a failure reason (the first few only).
    fn note(&mut self, why: String) {
        self.tally.note(why);
    }

    fn merge(&mut self, other: WorkerResult) {
        self.tally.merge(other.tally);
        self.pipelined |= other.pipelined;
        self.connections_opened += other.connections_opened;
    }
}

async fn worker(shared: Arc<Shared>) -> WorkerResult {
    let spec = &shared.spec;
    let mut out = WorkerResult::default();
    let mut conn = match Conn::open(spec.addr, spec.pipelining).await {
        Ok(c) => c,
        Err(e) => {
            out.note(format!("connection: {e}"));
            return out;
        }
    };
    out.connections_opened += 1;
    out.pipelined = conn.pipelining;
    while let Some(index) = shared.take() {
        match conn.transaction(&shared, index).await {
            Ok(latency) => out.tally.latencies.push(latency),
            Err(Step::Refused(why)) => {
                out.fail(index, why);
                // The transaction may be half open (MAIL accepted, every RCPT refused).
                if let Err(e) = conn.rset().await {
                    out.note(format!("RSET: {e}"));
                    match Conn::open(spec.addr, spec.pipelining).await {
                        Ok(c) => {
                            conn = c;
                            out.connections_opened += 1;
                        }
                        Err(e) => {
                            out.note(format!("reconnection: {e}"));
                            return out;
                        }
                    }
                }
            }
            Err(Step::Broken(why)) => {
                out.fail(index, format!("connection broken: {why}"));
                match Conn::open(spec.addr, spec.pipelining).await {
                    Ok(c) => {
                        conn = c;
                        out.connections_opened += 1;
                    }
                    Err(e) => {
                        out.note(format!("reconnection: {e}"));
                        return out;
                    }
                }
            }
        }
    }
    conn.quit().await;
    out
}

/// How a transaction went wrong.
enum Step {
    /// The server refused a step; the connection is still usable.
    Refused(String),
    /// I/O error, timeout, 421, or a reply that is not SMTP: the connection is lost.
    Broken(String),
}

impl From<ConnError> for Step {
    fn from(e: ConnError) -> Step {
        Step::Broken(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply within {}s", REPLY_TIMEOUT.as_secs())]
    Timeout,
    #[error("connection closed by the server")]
    Closed,
    #[error("not an SMTP reply line: {0:?}")]
    Garbage(String),
    #[error("{what}: {reply}")]
    Refused { what: &'static str, reply: Reply },
}

/// One SMTP reply: its code and its lines' text joined with " / ".
#[derive(Debug, Clone)]
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn class(&self) -> u16 {
        self.code / 100
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    pipelining: bool,
    line: Vec<u8>,
}

impl Conn {
    /// Connects, reads the greeting, says EHLO; `pipelining` in the result is set when the
    /// server advertises PIPELINING and `want_pipelining` is.
    async fn open(addr: SocketAddr, want_pipelining: bool) -> Result<Conn, ConnError> {
        let tcp = timed(TcpStream::connect(addr)).await??;
        tcp.set_nodelay(true)?;
        let (r, w) = tcp.into_split();
        let mut c = Conn {
            r: BufReader::with_capacity(16 * 1024, r),
            w,
            pipelining: false,
            line: Vec::with_capacity(512),
        };
        let greeting = c.reply().await?;
        if greeting.code != 220 {
            return Err(ConnError::Refused {
                what: "greeting",
                reply: greeting,
            });
        }
        c.send(b"EHLO load.wasmail-load.test\r\n").await?;
        let (ehlo, lines) = c.reply_lines().await?;
        if ehlo.class() != 2 {
            return Err(ConnError::Refused {
                what: "EHLO",
                reply: ehlo,
            });
        }
        c.pipelining = want_pipelining
            && lines.iter().skip(1).any(|l| {
                l.split_ascii_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("PIPELINING"))
            });
        Ok(c)
    }

    /// One transaction for message `index`; its latency if every step was accepted.
    async fn transaction(&mut self, shared: &Shared, index: usize) -> Result<Duration, Step> {
        let spec = &shared.spec;
        let rcpts = spec.recipients(index);
        let mail = format!("MAIL FROM:<{}>\r\n", spec.from);
        let rcpt_cmds: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
        let mut refused: Option<String> = None;
        let t0 = Instant::now();

        // MAIL, RCPT…, DATA: in one write, or each after the previous reply.
        let data_reply = if self.pipelining {
            let mut batch = mail.clone().into_bytes();
            for r in &rcpt_cmds {
                batch.extend_from_slice(r.as_bytes());
            }
            batch.extend_from_slice(b"DATA\r\n");
            self.send(&batch).await?;
            let reply = self.reply().await?;
            refuse(&mut refused, "MAIL", &reply, 2);
            for (r, _) in rcpts.iter().zip(&rcpt_cmds) {
                let reply = self.reply().await?;
                refuse(&mut refused, &format!("RCPT TO:<{r}>"), &reply, 2);
            }
            self.reply().await?
        } else {
            self.send(mail.as_bytes()).await?;
            let reply = self.reply().await?;
            refuse(&mut refused, "MAIL", &reply, 2);
            if let Some(why) = refused {
                return Err(Step::Refused(why));
            }
            for (r, cmd) in rcpts.iter().zip(&rcpt_cmds) {
                self.send(cmd.as_bytes()).await?;
                let reply = self.reply().await?;
                refuse(&mut refused, &format!("RCPT TO:<{r}>"), &reply, 2);
            }
            if let Some(why) = refused {
                return Err(Step::Refused(why));
            }
            self.send(b"DATA\r\n").await?;
            self.reply().await?
        };
        if data_reply.code != 354 {
            refuse(&mut refused, "DATA", &data_reply, 3);
            return Err(Step::Refused(
                refused.unwrap_or_else(|| format!("DATA: unexpected {data_reply}")),
            ));
        }

        // 354: the message, dot-stuffed, and the final dot in one write.
        let mut body = dot_stuff(&message_dated(spec, &shared.run_id, index, &shared.date));
        body.extend_from_slice(b".\r\n");
        self.send(&body).await?;
        let done = self.reply().await?;
        let latency = t0.elapsed();
        refuse(&mut refused, "end of DATA", &done, 2);
        match refused {
            None => Ok(latency),
            Some(why) => Err(Step::Refused(why)),
        }
    }

    async fn rset(&mut self) -> Result<(), ConnError> {
        self.send(b"RSET\r\n").await?;
        let reply = self.reply().await?;
        if reply.class() == 2 {
            Ok(())
        } else {
            Err(ConnError::Refused {
                what: "RSET",
                reply,
            })
        }
    }

    /// QUIT and wait (briefly) for the 221; errors are of no interest any more.
    async fn quit(mut self) {
        if self.send(b"QUIT\r\n").await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.reply()).await;
        }
        let _ = self.w.shutdown().await;
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        timed(self.w.write_all(bytes)).await??;
        Ok(())
    }

    async fn reply(&mut self) -> Result<Reply, ConnError> {
        Ok(self.reply_lines().await?.0)
    }

    /// Reads one (possibly multi-line) reply: `NNN-text` lines, then `NNN text` or `NNN`.
    async fn reply_lines(&mut self) -> Result<(Reply, Vec<String>), ConnError> {
        let mut lines = Vec::new();
        loop {
            self.line.clear();
            let n = timed(
                (&mut self.r)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut self.line),
            )
            .await??;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            let line = String::from_utf8_lossy(&self.line);
            let line = line.trim_end_matches(['\r', '\n']);
            let b = line.as_bytes();
            let code = (b.len() >= 3 && b[..3].iter().all(u8::is_ascii_digit))
                .then(|| line[..3].parse::<u16>().ok())
                .flatten()
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| ConnError::Garbage(line.to_owned()))?;
            let last = match b.get(3) {
                None | Some(b' ') => true,
                Some(b'-') => false,
                Some(_) => return Err(ConnError::Garbage(line.to_owned())),
            };
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if last {
                let reply = Reply {
                    code,
                    text: lines.join(" / "),
                };
                if code == 421 {
                    // Service closing the channel (RFC 5321 3.8): whatever was asked.
                    return Err(ConnError::Refused { what: "421", reply });
                }
                return Ok((reply, lines));
            }
        }
    }
}

/// Records the first refused step of a transaction: a reply outside `class`xx.
fn refuse(refused: &mut Option<String>, what: &str, reply: &Reply, class: u16) {
    if reply.class() != class && refused.is_none() {
        *refused = Some(format!("{what}: {reply}"));
    }
}

async fn timed<F: Future>(f: F) -> Result<F::Output, ConnError> {
    tokio::time::timeout(REPLY_TIMEOUT, f)
        .await
        .map_err(|_| ConnError::Timeout)
}

/// A run id unique enough to tell runs apart: start time in ns and the process id, base 36.
fn run_id(started: SystemTime) -> String {
    let ns = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}.{}", base36(ns), base36(u128::from(std::process::id())))
}

fn base36(mut n: u128) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// `Thu, 26 Nov 2026 12:05:53 +0000` (RFC 5322 3.3) for `t` in UTC.
fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    wasmail_types::date::rfc5322(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a failure fails the test")]
mod tests {
    //! The client against a small scripted SMTP responder (written here, on tokio): what the
    //! responder sees on the wire is checked, not just the report.

    use super::*;
    use std::sync::Mutex;
    use tokio::net::TcpListener;

    #[derive(Clone, Copy, Default)]
    struct Behaviour {
        advertise_pipelining: bool,
        /// RCPT to an address starting with this gets a multi-line 550.
        refuse: Option<&'static str>,
        /// After this many accepted messages on a connection, the next end of DATA gets 421
        /// and the connection is closed.
        close_after: Option<usize>,
    }

    #[derive(Default)]
    struct Seen {
        /// (recipients, message as received, dot-stuffing undone)
        messages: Vec<(Vec<String>, Vec<u8>)>,
        /// MAIL commands that arrived with more commands behind them in the same read.
        mail_pipelined: usize,
        /// MAIL commands that arrived alone.
        mail_alone: usize,
        rsets: usize,
        quits: usize,
        connections: usize,
    }

    async fn responder(b: Behaviour) -> (SocketAddr, Arc<Mutex<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                s.lock().unwrap().connections += 1;
                tokio::spawn(session(sock, b, Arc::clone(&s)));
            }
        });
        (addr, seen)
    }

    async fn session(sock: TcpStream, b: Behaviour, seen: Arc<Mutex<Seen>>) {
        sock.set_nodelay(true).unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 fake.test ESMTP\r\n").await.unwrap();
        let (mut in_tx, mut rcpts, mut accepted) = (false, Vec::<String>::new(), 0);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap() == 0 {
                return;
            }
            let cmd = line.trim_end().to_owned();
            let upper = cmd.to_ascii_uppercase();
            let reply: Vec<u8> = if upper.starts_with("EHLO ") {
                let mut r = b"250-fake.test\r\n250-SIZE 10000000\r\n".to_vec();
                if b.advertise_pipelining {
                    r.extend_from_slice(b"250-PIPELINING\r\n");
                }
                r.extend_from_slice(b"250 8BITMIME\r\n");
                r
            } else if upper.starts_with("MAIL FROM:") {
                let mut s = seen.lock().unwrap();
                if r.buffer().is_empty() {
                    s.mail_alone += 1;
                } else {
                    s.mail_pipelined += 1;
                }
                if in_tx {
                    b"503 5.5.1 nested MAIL\r\n".to_vec()
                } else {
                    in_tx = true;
                    b"250 2.1.0 ok\r\n".to_vec()
                }
            } else if let Some(to) = upper.strip_prefix("RCPT TO:") {
                let to = to
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_lowercase();
                if !in_tx {
                    b"503 5.5.1 MAIL first\r\n".to_vec()
                } else if b.refuse.is_some_and(|p| to.starts_with(p)) {
                    b"550-5.1.1 no such user\r\n550 5.1.1 really not here\r\n".to_vec()
                } else {
                    rcpts.push(to);
                    b"250 2.1.5 ok\r\n".to_vec()
                }
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    b"554 5.5.1 no valid recipients\r\n".to_vec()
                } else {
                    w.write_all(b"354 go ahead\r\n").await.unwrap();
                    let mut msg = Vec::new();
                    loop {
                        let mut l = Vec::new();
                        r.read_until(b'\n', &mut l).await.unwrap();
                        assert!(l.ends_with(b"\r\n"), "a line without CRLF: {l:?}");
                        if l == b".\r\n" {
                            break;
                        }
                        msg.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                    }
                    in_tx = false;
                    if b.close_after == Some(accepted) {
                        w.write_all(b"421 4.3.2 closing\r\n").await.unwrap();
                        return;
                    }
                    accepted += 1;
                    seen.lock()
                        .unwrap()
                        .messages
                        .push((std::mem::take(&mut rcpts), msg));
                    b"250-2.0.0 queued\r\n250 2.0.0 as 1234\r\n".to_vec()
                }
            } else if upper == "RSET" {
                seen.lock().unwrap().rsets += 1;
                (in_tx, rcpts) = (false, Vec::new());
                b"250 2.0.0 ok\r\n".to_vec()
            } else if upper == "QUIT" {
                seen.lock().unwrap().quits += 1;
                w.write_all(b"221 2.0.0 bye\r\n").await.unwrap();
                return;
            } else {
                b"500 5.5.2 what?\r\n".to_vec()
            };
            w.write_all(&reply).await.unwrap();
        }
    }

    fn spec(addr: SocketAddr, to: &[&str], connections: usize, messages: usize) -> LoadSpec {
        LoadSpec {
            connections,
            messages,
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            ..LoadSpec::new(addr, "unused")
        }
    }

    /// Every message the responder got is one the generator makes, to the right recipients,
    /// each exactly once.
    fn check_delivered(spec: &LoadSpec, report: &LoadReport, seen: &Seen, indexes: &[usize]) {
        let mut got: Vec<(Vec<String>, Vec<u8>)> = seen.messages.clone();
        let mut want: Vec<(Vec<String>, Vec<u8>)> = indexes
            .iter()
            .map(|&i| (spec.recipients(i).to_vec(), message(spec, report, i)))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "the messages received differ from those generated"
        );
    }

    #[tokio::test]
    async fn pipelined_messages_arrive_intact_and_dot_stuffed() {
        let (addr, seen) = responder(Behaviour {
            advertise_pipelining: true,
            ..Behaviour::default()
        })
        .await;
        let spec = spec(addr, &["a@x.test", "b@x.test"], 3, 40);
        let report = run(&spec).await.unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (40, 0),
            "{report}"
        );
        assert!(report.pipelined);
        let l = report.outcome.latency;
        assert!(l.p50 > Duration::ZERO);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);
        assert!(report.per_second > 0.0);
        let seen = seen.lock().unwrap();
        assert_eq!((seen.mail_pipelined, seen.mail_alone), (40, 0));
        assert_eq!((seen.connections, seen.quits, seen.rsets), (3, 3, 0));
        check_delivered(&spec, &report, &seen, &(0..40).collect::<Vec<_>>());
        // The messages do have lines starting with a dot (which went over the wire doubled)...
        let (_, first) = &seen.messages[0];
        assert!(first.windows(2).any(|w| w == b"\n."));
        assert_eq!(first.len(), 1024);
        // ...and distinct Message-IDs.
        let ids: std::collections::HashSet<&[u8]> = seen
            .messages
            .iter()
            .map(|(_, m)| {
                let at = m.windows(12).position(|w| w == b"Message-ID: ").unwrap();
                let end = at + m[at..].iter().position(|&b| b == b'\r').unwrap();
                &m[at..end]
            })
            .collect();
        assert_eq!(ids.len(), 40);
    }

    #[tokio::test]
    async fn without_pipelining_each_command_waits_for_its_reply() {
        // The server does not advertise it...
        let (addr, seen) = responder(Behaviour::default()).await;
        let spec1 = spec(addr, &["a@x.test"], 2, 10);
        let report = run(&spec1).await.unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (10, 0),
            "{report}"
        );
        assert!(!report.pipelined);
        assert_eq!(seen.lock().unwrap().mail_pipelined, 0);
        check_delivered(
            &spec1,
            &report,
            &seen.lock().unwrap(),
            &(0..10).collect::<Vec<_>>(),
        );

        // ...or the spec does not want it.
        let (addr, seen) = responder(Behaviour {
            advertise_pipelining: true,
            ..Behaviour::default()
        })
        .await;
        let spec2 = LoadSpec {
            pipelining: false,
            all_recipients: true,
            ..spec(addr, &["a@x.test", "b@x.test", "c@x.test"], 2, 10)
        };
        let report = run(&spec2).await.unwrap();
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (10, 0),
            "{report}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!((seen.mail_pipelined, seen.mail_alone), (0, 10));
        assert!(seen.messages.iter().all(|(r, _)| r.len() == 3));
        check_delivered(&spec2, &report, &seen, &(0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn refusals_are_counted_with_the_reply_and_the_connection_goes_on() {
        for advertise_pipelining in [true, false] {
            let (addr, seen) = responder(Behaviour {
                advertise_pipelining,
                refuse: Some("nobody"),
                ..Behaviour::default()
            })
            .await;
            let spec = spec(addr, &["a@x.test", "nobody@x.test"], 1, 10);
            let report = run(&spec).await.unwrap();
            assert_eq!(
                (report.outcome.ok, report.outcome.failed),
                (5, 5),
                "{report}"
            );
            assert_eq!(report.connections_opened, 1);
            assert_eq!(report.outcome.failures.len(), crate::bench::KEEP_FAILURES);
            let first = &report.outcome.failures[0];
            assert!(
                first.contains(
                    "RCPT TO:<nobody@x.test>: 550 5.1.1 no such user / 5.1.1 really not here"
                ),
                "{first}"
            );
            assert!(report.to_string().contains("5 ok, 5 failed"), "{report}");
            let seen = seen.lock().unwrap();
            assert_eq!(seen.rsets, 5);
            check_delivered(&spec, &report, &seen, &[0, 2, 4, 6, 8]);
        }
    }

    #[tokio::test]
    async fn a_connection_closed_with_421_is_reopened() {
        let (addr, seen) = responder(Behaviour {
            advertise_pipelining: true,
            close_after: Some(3),
            ..Behaviour::default()
        })
        .await;
        let report = run(&spec(addr, &["a@x.test"], 1, 10)).await.unwrap();
        // 3 accepted and 1 closed on each of the first two connections, 2 on the third.
        assert_eq!(
            (report.outcome.ok, report.outcome.failed),
            (8, 2),
            "{report}"
        );
        assert_eq!(report.connections_opened, 3);
        assert!(
            report.outcome.failures[0].contains("421 4.3.2 closing"),
            "{report}"
        );
        assert_eq!(seen.lock().unwrap().messages.len(), 8);
    }

    #[tokio::test]
    async fn no_server_is_an_error() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let e = run(&spec(addr, &["a@x.test"], 2, 5)).await.unwrap_err();
        assert!(matches!(e, LoadError::Connect { .. }), "{e}");
        let e = run(&spec(addr, &[], 2, 5)).await.unwrap_err();
        assert!(matches!(e, LoadError::InvalidSpec(_)), "{e}");
    }

    #[test]
    fn messages_have_the_exact_size_and_end_with_crlf() {
        let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let spec0 = LoadSpec::new(addr, "a@x.test");
        let header_len = message(
            &LoadSpec {
                message_size: 0,
                ..spec0.clone()
            },
            &fake_report(),
            7,
        )
        .len();
        for size in (header_len + 2)..(header_len + 400) {
            let m = message(
                &LoadSpec {
                    message_size: size,
                    ..spec0.clone()
                },
                &fake_report(),
                7,
            );
            assert_eq!(m.len(), size);
            assert!(m.ends_with(b"\r\n"));
            assert!(m.split(|&b| b == b'\n').all(|l| l.len() <= 78));
        }
    }

    fn fake_report() -> LoadReport {
        LoadReport {
            run_id: "r".to_owned(),
            started: UNIX_EPOCH,
            outcome: Outcome::default(),
            connections_opened: 0,
            pipelined: false,
            per_second: 0.0,
        }
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_only() {
        assert_eq!(
            dot_stuff(b".a\r\nb.c\r\n..\r\n.\r\n"),
            b"..a\r\nb.c\r\n...\r\n..\r\n"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 1 Jan 1970 00:00:00 +0000");
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(
            rfc5322_date(t(1_795_694_753)),
            "Thu, 26 Nov 2026 12:05:53 +0000"
        );
        assert_eq!(
            rfc5322_date(t(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 +0000"
        );
    }
}
