//! What the load benchmarks (`benches/smtp.rs`, `pop3.rs`, `imap.rs`) and their load generators
//! (`load.rs`, `pop3_load.rs`, `imap_load.rs`) share: latency percentiles, the failures a report
//! keeps, settings from the environment, table cells and ratios, mail set up through a target's
//! own SMTP, and a wasmail server in this process.
//!
//! ```text
//!   generator: each worker's Tally (latencies, failures) ─merge─► finish ─► report.outcome
//!              (ok, failed, first failures, elapsed, Latency p50 p90 p99 max); Outcome::write
//!   bench:     Settings::from_env("BENCH_POP3", …) (env_number, env_numbers, target_filters)
//!              peer_with_mail / wasmail_with_mail (InProcess::start) ──► deliver(smtp, users,
//!                n, size, count): every Maildir holds its n messages before measuring
//!              measure_each(settings, target, rows, run) ──► Row { target, connections, report }
//!              Latency::HEADER / cells(), print_ratios, ratio, filesystem_type ──► the table
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmail::Service;
use wasmail::config::Config;
use wasmail_plugin::PluginSpec;

use crate::load::{self, LoadSpec};
use crate::peer::{self, Peer};

/// How many failure reasons a report keeps.
pub const KEEP_FAILURES: usize = 5;
/// How often delivered messages are counted while mail is being set up.
pub const POLL: Duration = Duration::from_millis(20);
/// Give up waiting for deliveries after this long without one.
pub const STALL: Duration = Duration::from_secs(120);

/// Keeps a failure reason, the first [`KEEP_FAILURES`] only.
pub fn keep(failures: &mut Vec<String>, why: String) {
    if failures.len() < KEEP_FAILURES {
        failures.push(why);
    }
}

/// What a load worker (a task or thread with its connection) counts as it goes; the workers'
/// tallies are merged into the run's, which [`Tally::finish`] turns into its [`Outcome`].
#[derive(Debug, Default)]
pub struct Tally {
    /// Latency of each successful operation (message, session).
    pub latencies: Vec<Duration>,
    pub failed: usize,
    /// The first few failure reasons.
    pub failures: Vec<String>,
}

impl Tally {
    /// Counts an operation as failed, and why.
    pub fn fail(&mut self, why: String) {
        self.failed += 1;
        self.note(why);
    }

    /// Keeps a failure reason (the first few only) without counting a failure.
    pub fn note(&mut self, why: String) {
        keep(&mut self.failures, why);
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.failed += other.failed;
        for f in other.failures {
            self.note(f);
        }
    }

    /// The outcome of a run of `elapsed` that was to do `wanted` operations: those neither
    /// successful nor failed count as failed, with the reason `"<n> <never_done>"`.
    pub fn finish(mut self, elapsed: Duration, wanted: usize, never_done: &str) -> Outcome {
        let attempted = self.latencies.len() + self.failed;
        if attempted < wanted {
            let missing = wanted - attempted;
            self.failed += missing;
            self.note(format!("{missing} {never_done}"));
        }
        Outcome {
            ok: self.latencies.len(),
            failed: self.failed,
            failures: self.failures,
            elapsed,
            latency: Latency::of(self.latencies),
        }
    }
}

/// What every load report holds: the operations (messages, sessions) that succeeded and failed,
/// why the first few failed, how long the run took, and the latency of the successful ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ok: usize,
    /// Refused, broken off, inconsistent, or never done.
    pub failed: usize,
    /// The first few failures: the step and the server's answer (or the I/O error).
    pub failures: Vec<String>,
    /// From the first connect to the end of the last operation.
    pub elapsed: Duration,
    pub latency: Latency,
}

impl Outcome {
    /// The table header of [`Outcome::cells`].
    pub const HEADER: &str = "  p50 ms   p90 ms   p99 ms   max ms  failed";

    /// The latency in milliseconds and the failures, right-aligned under [`Outcome::HEADER`].
    pub fn cells(&self) -> String {
        format!("{} {:>7}", self.latency.cells(), self.failed)
    }

    /// Prints the first failure, if any, as the line under a table row.
    pub fn print_first_failure(&self) {
        if let Some(f) = self.failures.first() {
            println!("    first failure: {f}");
        }
    }

    /// `n` per second of the run.
    pub fn per_second(&self, n: f64) -> f64 {
        n / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Writes `<ok> <what>ok, <failed> failed in <s> s: <rates>; <latency_of> p50 … max …`
    /// and the first failure, if any: the one-line summary of every report.
    pub fn write(
        &self,
        f: &mut fmt::Formatter<'_>,
        what: &str,
        rates: fmt::Arguments<'_>,
        latency_of: &str,
    ) -> fmt::Result {
        write!(
            f,
            "{} {what}ok, {} failed in {:.2} s: {rates}; {latency_of} {}",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.latency
        )?;
        if let Some(first) = self.failures.first() {
            write!(f, "; first failure: {first}")?;
        }
        Ok(())
    }
}

/// The latency of the successful operations of a run (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// The table header of [`Latency::cells`].
    pub const HEADER: &str = "  p50 ms   p90 ms   p99 ms   max ms";

    /// The percentiles of `samples` (all zero when there are none).
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        Latency {
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// The four values in milliseconds, right-aligned under [`Latency::HEADER`].
    pub fn cells(&self) -> String {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        format!(
            "{:>8} {:>8} {:>8} {:>8}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {} p90 {} p99 {} max {}",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Nearest-rank percentile of sorted values (zero when there are none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `a / b` as `1.23x`, or `n/a` when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".to_owned()
    }
}

/// The peer stack has user1..user100.
pub const PEER_USERS: usize = 100;

/// What a mailbox benchmark (POP3, IMAP) reads from the environment: `<PREFIX>_SESSIONS`
/// (default 2000), `_CONNECTIONS` (20; a list such as `20,50` measures each), `_MESSAGES`,
/// `_SIZE` (10240), `_WARMUP` (200), and its target filters.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sessions per measurement.
    pub sessions: usize,
    /// Concurrent clients; one measurement each.
    pub connections: Vec<usize>,
    /// Messages in every mailbox.
    pub messages: usize,
    /// Size of each message as sent, in octets.
    pub size: usize,
    /// Sessions run before measuring, not reported.
    pub warmup: usize,
    /// See [`target_filters`].
    pub filters: Vec<String>,
}

impl Settings {
    /// Reads `<prefix>_…`; `messages` is the default message count. Exits with 2 on a value
    /// that is not a number, and when there would be no message.
    pub fn from_env(prefix: &str, messages: usize) -> Settings {
        let var = |name: &str| format!("{prefix}_{name}");
        let messages = env_number(&var("MESSAGES"), messages);
        if messages == 0 {
            eprintln!(
                "{}: the mailboxes need at least one message",
                var("MESSAGES")
            );
            std::process::exit(2);
        }
        Settings {
            sessions: env_number(&var("SESSIONS"), 2000),
            connections: env_numbers(&var("CONNECTIONS"), 20),
            messages,
            size: env_number(&var("SIZE"), 10240),
            warmup: env_number(&var("WARMUP"), 200),
            filters: target_filters(),
        }
    }

    pub fn wants(&self, target: &str) -> bool {
        wanted(&self.filters, target)
    }

    /// The login names, one mailbox per client: `user1@example.test`..`userC`, C the largest
    /// connection count (at most [`PEER_USERS`]).
    pub fn users(&self) -> Vec<String> {
        let n = self.connections.iter().copied().max().unwrap_or(1);
        (1..=n.min(PEER_USERS))
            .map(|i| format!("user{i}@example.test"))
            .collect()
    }

    /// More clients than users: some share a mailbox.
    pub fn shares_users(&self) -> bool {
        self.connections.iter().any(|&c| c > PEER_USERS)
    }
}

/// A ratio's label and how to get its value from a report.
pub type RatioOf<R> = (&'static str, fn(&R) -> f64);

/// One measurement: a target at a connection count.
#[derive(Debug)]
pub struct Row<R> {
    pub target: &'static str,
    pub connections: usize,
    pub report: R,
}

/// For each connection count of `s`, a warm-up of `s.warmup` sessions then a measurement of
/// `s.sessions`, both printed, the measurement kept in `rows`; `run(connections, sessions)` does
/// one. A run that cannot take place ends the target's measurements.
pub fn measure_each<R: fmt::Display, E: fmt::Display>(
    s: &Settings,
    target: &'static str,
    rows: &mut Vec<Row<R>>,
    mut run: impl FnMut(usize, usize) -> Result<R, E>,
) {
    for &connections in &s.connections {
        if s.warmup > 0 {
            match run(connections, s.warmup) {
                Ok(r) => println!("  {target}: warm-up, {connections} connections: {r}"),
                Err(e) => {
                    println!("  {target}: warm-up, {connections} connections: FAILED — {e}");
                    return;
                }
            }
        }
        match run(connections, s.sessions) {
            Ok(report) => {
                println!("  {target}: {connections} connections: {report}");
                rows.push(Row {
                    target,
                    connections,
                    report,
                });
            }
            Err(e) => {
                println!("  {target}: {connections} connections: FAILED — {e}");
                return;
            }
        }
    }
}

/// For each `(name, base, goal)`, and each row of `name` that has a row of `base` at the same
/// connection count: `<name> / <base> at <c> connections: <label> <ratio><goal>, <label>
/// <ratio>…` for every `(label, value)` of `values` (`goal` after the first).
pub fn print_ratios<R>(rows: &[Row<R>], pairs: &[(&str, &str, &str)], values: &[RatioOf<R>]) {
    for &(name, base_name, goal) in pairs {
        for r in rows.iter().filter(|r| r.target == name) {
            let Some(base) = rows
                .iter()
                .find(|b| b.target == base_name && b.connections == r.connections)
            else {
                continue;
            };
            let ratios: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, (label, value))| {
                    let goal = if i == 0 { goal } else { "" };
                    format!(
                        "{label} {}{goal}",
                        ratio(value(&r.report), value(&base.report))
                    )
                })
                .collect();
            println!(
                "{} / {} at {} connections: {}",
                r.target,
                base.target,
                r.connections,
                ratios.join(", ")
            );
        }
    }
}

/// The number in the environment variable `name`, else `default`; exits with 2 (a usage error)
/// when it is not a number.
pub fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => number(name, &v),
        Err(_) => default,
    }
}

/// A comma-separated list of numbers (`20,50`) in the environment variable `name`, else
/// `default`; exits with 2 when one is not a number or is 0.
pub fn env_numbers(name: &str, default: usize) -> Vec<usize> {
    let Ok(v) = std::env::var(name) else {
        return vec![default];
    };
    let list: Vec<usize> = v.split(',').map(|n| number(name, n)).collect();
    if list.contains(&0) {
        eprintln!("{name}: 0 is not a usable value");
        std::process::exit(2);
    }
    list
}

fn number(name: &str, v: &str) -> usize {
    v.trim().parse().unwrap_or_else(|_| {
        eprintln!("{name}: not a number: {v:?}");
        std::process::exit(2)
    })
}

/// The bench's arguments that do not start with `-` (cargo passes `--bench`): target name
/// filters, see [`wanted`].
pub fn target_filters() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect()
}

/// No filters, or `target` contains one of them (case-insensitive).
pub fn wanted(filters: &[String], target: &str) -> bool {
    let lower = target.to_lowercase();
    filters.is_empty() || filters.iter().any(|f| lower.contains(&f.to_lowercase()))
}

/// The type of the filesystem holding `path` (longest matching mount point in /proc/mounts).
pub fn filesystem_type(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mount, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fs.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}

/// Sends `messages` messages of `size` octets to every one of `users` through `smtp` (one
/// transaction each, all of them as recipients) and waits until `count(user)` (messages in the
/// user's Maildir) has grown by `messages` for every user. Returns how long that took.
pub async fn deliver(
    smtp: SocketAddr,
    users: &[String],
    messages: usize,
    size: usize,
    count: &dyn Fn(&str) -> usize,
) -> Result<Duration, String> {
    let before: Vec<usize> = users.iter().map(|u| count(u)).collect();
    let start = Instant::now();
    let spec = LoadSpec {
        connections: messages.clamp(1, 4),
        messages,
        message_size: size,
        to: users.to_vec(),
        all_recipients: true,
        ..LoadSpec::new(smtp, "unused")
    };
    let report = load::run(&spec).await.map_err(|e| e.to_string())?;
    if report.outcome.failed > 0 {
        return Err(format!("SMTP: {report}"));
    }
    let (mut seen, mut last_progress) = (0, Instant::now());
    loop {
        let delivered: usize = users
            .iter()
            .zip(&before)
            .map(|(u, b)| count(u).saturating_sub(*b).min(messages))
            .sum();
        if delivered == users.len() * messages {
            return Ok(start.elapsed());
        }
        if delivered > seen {
            (seen, last_progress) = (delivered, Instant::now());
        } else if last_progress.elapsed() > STALL {
            return Err(format!(
                "only {delivered} of {} deliveries arrived in the Maildirs",
                users.len() * messages
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The peer stack (`../shared/peer`), started, with `s.messages` messages delivered to each of
/// `users` through Postfix → Dovecot LMTP; None, having said why (SKIPPED), when it cannot be.
pub fn peer_with_mail(
    s: &Settings,
    users: &[String],
    rt: &tokio::runtime::Runtime,
) -> Option<Peer> {
    println!("Dovecot: starting the peer stack");
    if let Some(why) = peer::unavailable_reason() {
        println!("Dovecot: SKIPPED — {why}");
        return None;
    }
    let peer = Peer::start()
        .inspect_err(|e| println!("Dovecot: SKIPPED — {e}"))
        .ok()?;
    println!(
        "  peer stack in {} ({}), filesystem {}",
        peer.dir().display(),
        peer::versions(),
        filesystem_type(peer.dir())
    );
    let count = |user: &str| peer.maildir_count(user);
    match rt.block_on(deliver(peer.smtp_addr(), users, s.messages, s.size, &count)) {
        Ok(took) => println!("  mail delivered through Postfix → Dovecot LMTP in {took:.2?}"),
        Err(e) => {
            println!("Dovecot: SKIPPED — delivering the mail: {e}");
            return None;
        }
    }
    Some(peer)
}

/// wasmail in this process ([`InProcess::start`] with `users`, `hash` and `configure`), with
/// `s.messages` messages delivered to each user through its own SMTP, and the address of its
/// `service` listener; None, having said why (SKIPPED), when it cannot be.
pub fn wasmail_with_mail(
    name: &str,
    s: &Settings,
    users: &[String],
    hash: Result<String, String>,
    service: Service,
    rt: &tokio::runtime::Runtime,
    configure: impl FnOnce(&mut Config, &mut Vec<PluginSpec>),
) -> Option<(InProcess, SocketAddr)> {
    println!("{name}: starting in this process");
    let started = hash.and_then(|hash| {
        let w = InProcess::start(users, &hash, configure)?;
        let addrs = (w.addr(Service::Smtp)?, w.addr(service)?);
        Ok((w, addrs))
    });
    let (w, (smtp, addr)) = started
        .inspect_err(|why| println!("{name}: SKIPPED — {why}"))
        .ok()?;
    let count = |user: &str| peer::count_maildir(&w.maildir(user));
    match rt.block_on(deliver(smtp, users, s.messages, s.size, &count)) {
        Ok(took) => println!("  mail delivered through wasmail's SMTP in {took:.2?}"),
        Err(e) => {
            println!("{name}: SKIPPED — delivering the mail: {e}");
            return None;
        }
    }
    Some((w, addr))
}

/// A wasmail server in this process on 127.0.0.1:0 (every service of
/// [`crate::server::test_config`]), data dir under /var/tmp (on disk, so the fsyncs are real),
/// log level `error`, up to 1000 connections per IP; stopped, then its directory removed, on
/// drop.
pub struct InProcess {
    addrs: Vec<(Service, SocketAddr)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    // After `stop` and `thread` (see Drop): the server stops before its files go.
    dir: tempfile::TempDir,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcess")
            .field("dir", &self.dir.path())
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// Starts the server with `users`, each with the password hash `hash` (a PHC string, e.g.
    /// from `wasmail::users::hash_password`); `configure` may change the config and add to the
    /// default plugins before the server is built.
    pub fn start(
        users: &[String],
        hash: &str,
        configure: impl FnOnce(&mut Config, &mut Vec<PluginSpec>),
    ) -> Result<InProcess, String> {
        let dir = tempfile::Builder::new()
            .prefix("wasmail-bench-")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let mut config = crate::server::test_config(dir.path());
        config.log.level = "error".into();
        config.limits.max_connections_per_ip = 1000;
        let mut specs = wasmail::plugins::default_specs(&config);
        configure(&mut config, &mut specs);
        let accounts = wasmail::users::UsersFile::new(dir.path());
        for u in users {
            accounts.add(u, hash).map_err(|e| e.to_string())?;
        }
        let server = wasmail::Server::builder(config)
            .plugins(specs)
            .build()
            .map_err(|e| e.to_string())?;
        let addrs = Service::ALL
            .iter()
            .flat_map(|s| server.local_addrs(*s).into_iter().map(|a| (*s, a)))
            .collect();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(server.run(async {
                let _ = stopped.await;
            }))
            .map_err(|e| e.to_string())
        });
        println!(
            "  wasmail data dir {}, filesystem {}",
            dir.path().display(),
            filesystem_type(dir.path())
        );
        Ok(InProcess {
            addrs,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        })
    }

    /// The first listener of `service`.
    pub fn addr(&self, service: Service) -> Result<SocketAddr, String> {
        self.addrs
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, a)| *a)
            .ok_or_else(|| format!("no {} listener", service.name()))
    }

    /// `user`'s INBOX, a Maildir (for [`crate::peer::count_maildir`]).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("accounts").join(user)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(Ok(Err(e))) = self.thread.take().map(|t| t.join()) {
            println!("  wasmail stopped with an error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_cells() {
        let v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::of(v);
        assert_eq!(
            (l.p50, l.p90, l.p99, l.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(90),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        assert_eq!(
            percentile(&[Duration::from_millis(1)], 99.0),
            Duration::from_millis(1)
        );
        assert_eq!(Latency::of(Vec::new()), Latency::default());
        assert_eq!(l.cells().len(), Latency::HEADER.len());
        let o = Outcome {
            failed: 3,
            latency: l,
            ..Outcome::default()
        };
        assert_eq!(o.cells().len(), Outcome::HEADER.len());
        assert!(Outcome::HEADER.starts_with(Latency::HEADER));
        assert_eq!(
            l.to_string(),
            "p50 50.00 ms p90 90.00 ms p99 99.00 ms max 100.00 ms"
        );
        assert_eq!(
            (ratio(3.0, 2.0).as_str(), ratio(1.0, 0.0).as_str()),
            ("1.50x", "n/a")
        );
    }

    #[test]
    fn tallies_keep_a_few_failures_and_count_what_never_ran() {
        let mut f = Vec::new();
        for i in 0..10 {
            keep(&mut f, i.to_string());
        }
        assert_eq!(f, ["0", "1", "2", "3", "4"]);
        let (mut a, mut b) = (Tally::default(), Tally::default());
        a.latencies.push(Duration::from_millis(3));
        a.fail("refused".to_owned());
        b.latencies.push(Duration::from_millis(5));
        b.note("reconnected".to_owned());
        a.merge(b);
        let o = a.finish(Duration::from_secs(2), 5, "never sent");
        assert_eq!((o.ok, o.failed), (2, 3));
        assert_eq!(o.failures, ["refused", "reconnected", "2 never sent"]);
        assert_eq!(o.latency.max, Duration::from_millis(5));
        assert_eq!(o.per_second(o.ok as f64), 1.0);
        struct Shown(Outcome);
        impl fmt::Display for Shown {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0
                    .write(f, "sessions ", format_args!("{} x/s", 7), "session latency")
            }
        }
        assert_eq!(
            Shown(o).to_string(),
            "2 sessions ok, 3 failed in 2.00 s: 7 x/s; session latency p50 3.00 ms p90 5.00 ms \
             p99 5.00 ms max 5.00 ms; first failure: refused"
        );
    }

    #[test]
    fn filters_match_case_insensitively() {
        let f = vec!["dovecot".to_owned()];
        assert!(wanted(&f, "Dovecot tuned"));
        assert!(!wanted(&f, "wasmail"));
        assert!(wanted(&[], "wasmail"));
    }
}
