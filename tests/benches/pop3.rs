//! POP3 load benchmark: the same sessions (`wasmail_e2e::pop3_load`) against every target in one
//! run, over the same mail, delivered through each target's own SMTP before measuring.
//!
//! ```text
//! cargo bench -p wasmail-e2e --bench pop3                  # every target, defaults below
//! cargo bench -p wasmail-e2e --bench pop3 -- wasmail       # targets whose name has "wasmail"
//! BENCH_POP3_SESSIONS=5000 BENCH_POP3_CONNECTIONS=20,50 cargo bench -p wasmail-e2e --bench pop3
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_POP3_SESSIONS` | 2000 | sessions per measurement |
//! | `BENCH_POP3_CONNECTIONS` | 20 | concurrent clients; a list (`20,50`) measures each |
//! | `BENCH_POP3_MESSAGES` | 20 | messages in every maildrop |
//! | `BENCH_POP3_SIZE` | 10240 | size of each message as sent, in octets |
//! | `BENCH_POP3_WARMUP` | 200 | sessions run before measuring, not reported |
//!
//! A session: connect, USER/PASS, STAT, UIDL, RETR of every message (read to the final dot,
//! octets counted), QUIT, no DELE, so the mail stays for the next one. One maildrop per client
//! (`user1`..`userC@example.test`, C the largest connection count, at most 100 as the peer has
//! 100 users), because a POP3 server may lock a maildrop for a session (RFC 1939 8; wasmail
//! does): every maildrop gets the same `BENCH_POP3_MESSAGES` messages through SMTP (Postfix →
//! Dovecot LMTP for Dovecot, wasmail's own SMTP for wasmail), and measuring starts only when they
//! are all files in the Maildirs. A session whose STAT does not list them all, or whose RETRs do
//! not add up to STAT's octets, counts as failed.
//!
//! Targets: Dovecot's POP3 as shipped (the peer stack, `../shared/peer`, port 10110), the tuned
//! Dovecot (`tuned-start.sh`: login processes in high-performance mode, pre-forked pop3
//! processes; port 11110, the same users and Maildirs), and wasmail in this process (data under
//! /var/tmp). The ratios are against the tuned Dovecot, the bar (goal: twice its rate). On a
//! machine without the peer stack the Dovecot targets are skipped, saying why (this bench never
//! installs anything).

#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failure aborts the run"
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmail_e2e::load::{self, LoadSpec};
use wasmail_e2e::peer::{self, Peer};
use wasmail_e2e::pop3_load::{self, Pop3LoadSpec, Pop3Report};

const CMD: &str = "cargo bench -p wasmail-e2e --bench pop3";
/// Target names, for the filters and the table.
const DOVECOT: &str = "Dovecot as shipped";
const DOVECOT_TUNED: &str = "Dovecot tuned";
const WASMAIL: &str = "wasmail";
/// The same server with the cheapest argon2id hashes (m=8 KiB, t=1): the closest wasmail gets to
/// the peer's `{PLAIN}` passwords, so the comparison measures POP3, not password hashing.
const WASMAIL_CHEAP_HASH: &str = "wasmail, cheap hashes";
/// The peer stack has user1..user100.
const MAX_USERS: usize = 100;
/// How often delivered messages are counted while the mail is being set up.
const POLL: Duration = Duration::from_millis(20);
/// Give up waiting for deliveries after this long without one.
const STALL: Duration = Duration::from_secs(120);

struct Settings {
    sessions: usize,
    connections: Vec<usize>,
    messages: usize,
    size: usize,
    warmup: usize,
    /// Arguments not starting with `-` (cargo passes `--bench`): target name filters.
    filters: Vec<String>,
}

impl Settings {
    fn wants(&self, target: &str) -> bool {
        let lower = target.to_lowercase();
        self.filters.is_empty()
            || self
                .filters
                .iter()
                .any(|f| lower.contains(&f.to_lowercase()))
    }

    /// The login names: one maildrop per client.
    fn users(&self) -> Vec<String> {
        let n = self
            .connections
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .min(MAX_USERS);
        (1..=n).map(|i| format!("user{i}@example.test")).collect()
    }
}

struct Row {
    target: &'static str,
    connections: usize,
    report: Pop3Report,
}

fn main() {
    let s = settings();
    let users = s.users();
    println!(
        "POP3 load: {} sessions, connections {:?}, {} maildrops of {} messages of {} octets, \
         warm-up {} sessions — {CMD}",
        s.sessions,
        s.connections,
        users.len(),
        s.messages,
        s.size,
        s.warmup
    );
    println!(
        "{} CPUs; a session = USER/PASS, STAT, UIDL, RETR 1..{}, QUIT (no DELE); one maildrop per \
         client",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.messages
    );
    if s.connections.iter().any(|&c| c > MAX_USERS) {
        println!(
            "  note: more than {MAX_USERS} connections share maildrops (the peer has {MAX_USERS} \
             users); a server that locks maildrops answers some logins -ERR [IN-USE]"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();

    if s.wants(DOVECOT) || s.wants(DOVECOT_TUNED) {
        dovecot(&s, &users, &rt, &mut rows);
    }
    for (name, cheap_hashes) in [(WASMAIL, false), (WASMAIL_CHEAP_HASH, true)] {
        if !s.wants(name) {
            continue;
        }
        println!("{name}: starting");
        match Wasmail::start(&users, cheap_hashes) {
            Err(why) => println!("{name}: SKIPPED — {why}"),
            Ok(w) => {
                let root = w.dir.path().join("accounts");
                let count = |user: &str| peer::count_maildir(&root.join(user));
                match rt.block_on(deliver(&s, w.smtp, &users, &count)) {
                    Ok(took) => {
                        println!("  mail delivered through wasmail's SMTP in {took:.2?}");
                        measure_all(&s, name, w.pop3, &users, &rt, &mut rows);
                    }
                    Err(e) => println!("{name}: SKIPPED — delivering the mail: {e}"),
                }
                drop(w);
                println!("{name}: stopped");
            }
        }
    }
    print_table(&s, &rows);
}

/// The peer stack: the mail goes in through Postfix once, then Dovecot as shipped and the tuned
/// Dovecot (started after, stopped before the peer) serve it in turn.
fn dovecot(s: &Settings, users: &[String], rt: &tokio::runtime::Runtime, rows: &mut Vec<Row>) {
    println!("Dovecot: starting the peer stack");
    if let Some(why) = peer::unavailable_reason() {
        println!("Dovecot: SKIPPED — {why}");
        return;
    }
    let peer = match Peer::start() {
        Ok(p) => p,
        Err(e) => {
            println!("Dovecot: SKIPPED — {e}");
            return;
        }
    };
    println!(
        "  peer stack in {} ({}), filesystem {}",
        peer.dir().display(),
        peer::versions(),
        filesystem_type(peer.dir())
    );
    let count = |user: &str| peer.maildir_count(user);
    match rt.block_on(deliver(s, peer.smtp_addr(), users, &count)) {
        Ok(took) => println!("  mail delivered through Postfix → Dovecot LMTP in {took:.2?}"),
        Err(e) => {
            println!("Dovecot: SKIPPED — delivering the mail: {e}");
            return;
        }
    }
    if s.wants(DOVECOT) {
        measure_all(s, DOVECOT, peer.pop3_addr(), users, rt, rows);
    }
    if s.wants(DOVECOT_TUNED) {
        println!("{DOVECOT_TUNED}: starting");
        match peer.start_tuned() {
            Ok(tuned) => {
                measure_all(s, DOVECOT_TUNED, tuned.pop3_addr(), users, rt, rows);
                drop(tuned);
                println!("{DOVECOT_TUNED}: stopped");
            }
            Err(e) => println!("{DOVECOT_TUNED}: SKIPPED — {e}"),
        }
    }
    drop(peer);
    println!("Dovecot: peer stack stopped");
}

/// Sends `s.messages` messages to every user (one transaction, all of them as recipients) and
/// waits until each one's Maildir holds them. Returns how long that took.
async fn deliver(
    s: &Settings,
    smtp: SocketAddr,
    users: &[String],
    count: &dyn Fn(&str) -> usize,
) -> Result<Duration, String> {
    let before: Vec<usize> = users.iter().map(|u| count(u)).collect();
    let start = Instant::now();
    let spec = LoadSpec {
        connections: s.messages.clamp(1, 4),
        messages: s.messages,
        message_size: s.size,
        to: users.to_vec(),
        all_recipients: true,
        ..LoadSpec::new(smtp, "unused")
    };
    let report = load::run(&spec).await.map_err(|e| e.to_string())?;
    if report.failed > 0 {
        return Err(format!("SMTP: {report}"));
    }
    let (mut seen, mut last_progress) = (0, Instant::now());
    loop {
        let delivered: usize = users
            .iter()
            .zip(&before)
            .map(|(u, b)| count(u).saturating_sub(*b).min(s.messages))
            .sum();
        if delivered == users.len() * s.messages {
            return Ok(start.elapsed());
        }
        if delivered > seen {
            (seen, last_progress) = (delivered, Instant::now());
        } else if last_progress.elapsed() > STALL {
            return Err(format!(
                "only {delivered} of {} deliveries arrived in the Maildirs",
                users.len() * s.messages
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The warm-up and one measurement per connection count against one target.
fn measure_all(
    s: &Settings,
    target: &'static str,
    addr: SocketAddr,
    users: &[String],
    rt: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
) {
    let spec = |connections: usize, sessions: usize| Pop3LoadSpec {
        connections,
        sessions,
        ..Pop3LoadSpec::new(addr, users.to_vec(), peer::PASSWORD, Some(s.messages))
    };
    for &connections in &s.connections {
        if s.warmup > 0 {
            match rt.block_on(pop3_load::run(&spec(connections, s.warmup))) {
                Ok(r) => println!("  {target}: warm-up, {connections} connections: {r}"),
                Err(e) => {
                    println!("  {target}: warm-up, {connections} connections: FAILED — {e}");
                    return;
                }
            }
        }
        match rt.block_on(pop3_load::run(&spec(connections, s.sessions))) {
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

/// A wasmail server in this process on 127.0.0.1:0 (SMTP and POP3), data dir under /var/tmp (on
/// disk), the bench users with the peer's password; stopped, then removed, on drop.
struct Wasmail {
    smtp: SocketAddr,
    pop3: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    dir: tempfile::TempDir,
}

impl Wasmail {
    fn start(users: &[String], cheap_hashes: bool) -> Result<Wasmail, String> {
        use wasmail::Service;
        let dir = tempfile::Builder::new()
            .prefix("wasmail-bench-")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let mut config = wasmail_e2e::server::test_config(dir.path());
        config.log.level = "error".into();
        config.limits.max_connections_per_ip = 1000;
        let specs = wasmail::plugins::default_specs(&config);
        let accounts = wasmail::users::UsersFile::new(dir.path());
        let hash = if cheap_hashes {
            use argon2::PasswordHasher as _;
            let params = argon2::Params::new(8, 1, 1, None).map_err(|e| e.to_string())?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                .hash_password(peer::PASSWORD.as_bytes())
                .map_err(|e| e.to_string())?
                .to_string()
        } else {
            wasmail::users::hash_password(&wasmail_types::Secret::new(peer::PASSWORD.to_owned()))
                .map_err(|e| e.to_string())?
        };
        for u in users {
            accounts.add(u, &hash).map_err(|e| e.to_string())?;
        }
        let server = wasmail::Server::builder(config)
            .plugins(specs)
            .build()
            .map_err(|e| e.to_string())?;
        let first = |service: Service| {
            server
                .local_addrs(service)
                .first()
                .copied()
                .ok_or_else(|| format!("no {} listener", service.name()))
        };
        let (smtp, pop3) = (first(Service::Smtp)?, first(Service::Pop3)?);
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
        Ok(Wasmail {
            smtp,
            pop3,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        })
    }
}

impl Drop for Wasmail {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(Ok(Err(e))) = self.thread.take().map(|t| t.join()) {
            println!("  wasmail stopped with an error: {e}");
        }
    }
}

fn print_table(s: &Settings, rows: &[Row]) {
    println!();
    if rows.is_empty() {
        println!("no target was measured");
        return;
    }
    println!(
        "{} sessions per run, {} messages of {} octets per maildrop",
        s.sessions, s.messages, s.size
    );
    println!(
        "{:<20} {:>5} {:>11} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "target",
        "conns",
        "sessions/s",
        "MB/s",
        "KB/session",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "failed"
    );
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    for r in rows {
        let per_session = if r.report.sessions_ok > 0 {
            format!(
                "{:.1}",
                r.report.octets as f64 / r.report.sessions_ok as f64 / 1e3
            )
        } else {
            "-".to_owned()
        };
        println!(
            "{:<20} {:>5} {:>11.1} {:>8.1} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7}",
            r.target,
            r.connections,
            r.report.sessions_per_second,
            r.report.mb_per_second,
            per_session,
            ms(r.report.p50),
            ms(r.report.p90),
            ms(r.report.p99),
            ms(r.report.max),
            r.report.failed
        );
        if let Some(f) = r.report.failures.first() {
            println!("    first failure: {f}");
        }
    }
    // wasmail against the tuned Dovecot (the bar) and Dovecot as shipped; the two Dovecots
    // against each other, for scale.
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "n/a".to_owned()
        }
    };
    let pairs = [
        (WASMAIL, DOVECOT_TUNED, " (goal 2x)"),
        (WASMAIL_CHEAP_HASH, DOVECOT_TUNED, " (goal 2x)"),
        (WASMAIL, DOVECOT, ""),
        (DOVECOT, DOVECOT_TUNED, ""),
    ];
    for (name, base_name, goal) in pairs {
        for r in rows.iter().filter(|r| r.target == name) {
            let Some(base) = rows
                .iter()
                .find(|b| b.target == base_name && b.connections == r.connections)
            else {
                continue;
            };
            println!(
                "{} / {} at {} connections: sessions/s {}{goal}, MB/s {}",
                r.target,
                base.target,
                r.connections,
                ratio(
                    r.report.sessions_per_second,
                    base.report.sessions_per_second
                ),
                ratio(r.report.mb_per_second, base.report.mb_per_second),
            );
        }
    }
}

fn settings() -> Settings {
    fn var(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_owned())
    }
    fn number(name: &str, v: &str) -> usize {
        v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{name}: not a number: {v:?}");
            std::process::exit(2)
        })
    }
    let connections: Vec<usize> = var("BENCH_POP3_CONNECTIONS", "20")
        .split(',')
        .map(|v| number("BENCH_POP3_CONNECTIONS", v))
        .collect();
    if connections.contains(&0) {
        eprintln!("BENCH_POP3_CONNECTIONS: 0 connections cannot run a session");
        std::process::exit(2);
    }
    let messages = number("BENCH_POP3_MESSAGES", &var("BENCH_POP3_MESSAGES", "20"));
    if messages == 0 {
        eprintln!("BENCH_POP3_MESSAGES: the maildrops need at least one message");
        std::process::exit(2);
    }
    Settings {
        sessions: number("BENCH_POP3_SESSIONS", &var("BENCH_POP3_SESSIONS", "2000")),
        connections,
        messages,
        size: number("BENCH_POP3_SIZE", &var("BENCH_POP3_SIZE", "10240")),
        warmup: number("BENCH_POP3_WARMUP", &var("BENCH_POP3_WARMUP", "200")),
        filters: std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    }
}

/// The type of the filesystem holding `path` (longest matching mount point in /proc/mounts).
fn filesystem_type(path: &Path) -> String {
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
