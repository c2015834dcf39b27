//! IMAP benchmarks against every target in one run, over the same mail delivered through each
//! target's own SMTP: (1) operations per second of complete sessions
//! (`wasmail_e2e::imap_load::run`), (2) memory per idle connection (`imap_load::hold`).
//!
//! ```text
//! cargo build -p wasmail --release                # benchmark 2 runs this binary (see below)
//! cargo bench -p wasmail-e2e --bench imap         # every target, defaults below
//! cargo bench -p wasmail-e2e --bench imap -- wasmail          # targets whose name has "wasmail"
//! BENCH_IMAP_IDLE=500 BENCH_IMAP_SESSIONS=500 cargo bench -p wasmail-e2e --bench imap
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_IMAP_SESSIONS` | 2000 | sessions per measurement of benchmark 1 (0: skip it) |
//! | `BENCH_IMAP_CONNECTIONS` | 20 | concurrent clients; a list (`20,50`) measures each |
//! | `BENCH_IMAP_MESSAGES` | 50 | messages in every INBOX |
//! | `BENCH_IMAP_SIZE` | 10240 | size of each message as sent, and of each APPEND, in octets |
//! | `BENCH_IMAP_WARMUP` | 200 | sessions run before measuring, not reported |
//! | `BENCH_IMAP_IDLE` | 10000 | connections of benchmark 2 (0: skip it) |
//! | `BENCH_IMAP_IDLE_RATE` | 1000 | connections put in IDLE per second (0: all at once) |
//! | `BENCH_IMAP_IDLE_SETTLE` | 10 | seconds from the last IDLE to measuring (hibernation: 5) |
//! | `WASMAIL_BIN` | `target/<profile>/wasmail` | the `wasmail` binary of benchmark 2 |
//!
//! **Benchmark 1, operations/s.** C clients (`user1`..`userC@example.test`, an INBOX each, at
//! most 100 as the peer has 100 users), each a loop of sessions: LOGIN, SELECT INBOX,
//! `FETCH 1:* (FLAGS ENVELOPE)`, `FETCH n (BODY.PEEK[])` of 3 random messages, `STORE n
//! +FLAGS (\Flagged)` and `-FLAGS`, APPEND of a `BENCH_IMAP_SIZE` message, `UID STORE` it
//! `+FLAGS (\Deleted)` and `UID EXPUNGE` it (the INBOX keeps its size), LOGOUT: 12 operations.
//! Every INBOX gets the same `BENCH_IMAP_MESSAGES` messages through SMTP first (Postfix →
//! Dovecot LMTP for Dovecot, wasmail's own SMTP for wasmail), and measuring starts only when they
//! are all files in the Maildirs. Any NO or BAD, a BODY[] whose octets differ from RFC822.SIZE,
//! or an INBOX of the wrong size fails the session.
//!
//! **Benchmark 2, memory per connection.** `BENCH_IMAP_IDLE` connections (spread over the same
//! users), each logged in with INBOX selected; the server's memory is read before the first
//! connection, with all of them open ("plain"), and after IDLE on all of them and
//! `BENCH_IMAP_IDLE_SETTLE` seconds (then until it stops changing); per connection = (memory −
//! memory before) / connections held. Memory is RSS and PSS from /proc, summed over the Dovecot
//! instance's process tree (master, login, imap, imap-hibernate, auth, ...), or of the wasmail
//! process alone: here wasmail is the real binary started as a process of its own with a config
//! on loopback ports, a data dir under /var/tmp and `[limits] max_connections(_per_ip)` raised.
//! The bench does not build it: it takes `WASMAIL_BIN`, else `wasmail` beside the bench's own
//! target directory (`target/release/wasmail` under `cargo bench`, so build it first with
//! `cargo build -p wasmail --release`); it warns when the binary is older than the sources.
//!
//! A server that refuses a connection ends the opening, and the row says how many it held and
//! why: Dovecot as shipped holds 1024 (its built-in `service imap { process_limit = 1024 }`, one
//! imap process per connection). IDLE is paced (`BENCH_IMAP_IDLE_RATE`): 10,000 clients entering
//! IDLE within 2 s made the tuned Dovecot's imap processes find imap-hibernate's socket backlog
//! full ("Couldn't hibernate imap client: ... Resource temporarily unavailable"), and a third
//! of them stayed unhibernated for good. Each Dovecot imap process in IDLE takes an inotify
//! instance of the mail uid, and without one the tuned Dovecot hibernates nothing: the bench
//! says when `fs.inotify.max_user_instances` (128 by default) is below the connection count,
//! and leaves the setting alone. It raises its own RLIMIT_NOFILE (inherited by the servers it
//! starts) or stops, saying why.
//!
//! Targets: Dovecot's IMAP as shipped (the peer stack, `../shared/peer`, port 10143), the tuned
//! Dovecot (`tuned-start.sh`: login processes in high-performance mode, pre-forked imap
//! processes, imap-hibernate; port 11143, the same users and Maildirs) with
//! `tests/peer/imap-tuned.conf` included for benchmark 2's connection count, and wasmail (in this
//! process for benchmark 1, data under /var/tmp with fsync on; its binary for benchmark 2).
//! The ratios are against the tuned Dovecot, the bar (goal: twice its operations/s). On a
//! machine without the peer stack the Dovecot targets are skipped, saying why (this bench never
//! installs anything).

#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failure aborts the run"
)]

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use wasmail::Service;
use wasmail_e2e::bench::{
    self, Outcome, PEER_USERS, Row, Settings, deliver, filesystem_type, measure_each, ratio,
};
use wasmail_e2e::imap_load::{self, HoldSpec, ImapLoadSpec, ImapReport, OPERATIONS_PER_SESSION};
use wasmail_e2e::peer::{self, Peer};

const CMD: &str = "cargo bench -p wasmail-e2e --bench imap";
/// Target names, for the filters and the tables.
const DOVECOT: &str = "Dovecot as shipped";
const DOVECOT_TUNED: &str = "Dovecot tuned";
const WASMAIL: &str = "wasmail";
/// Threads opening (and idling) benchmark 2's connections.
const OPENERS: usize = 16;
/// How long one step of opening a held connection may take.
const HOLD_TIMEOUT: Duration = Duration::from_secs(30);
/// Memory counts as settled when two readings this far apart differ by less than 1%.
const SETTLE_STEP: Duration = Duration::from_secs(2);
/// ... or after this long.
const SETTLE_MAX: Duration = Duration::from_secs(90);

/// Benchmark 2's settings (benchmark 1's are the shared [`Settings`]).
struct Idle {
    /// Connections to hold (0: skip benchmark 2).
    connections: usize,
    /// Time between IDLE and the first memory reading.
    settle: Duration,
    /// Connections put in IDLE per second (0: all at once).
    rate: usize,
}

/// Memory of a server: summed over its processes.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kib: u64,
    pss_kib: u64,
    processes: usize,
}

struct MemoryRow {
    target: &'static str,
    held: usize,
    /// Why fewer than asked were held.
    stopped_by: Option<String>,
    before: Memory,
    plain: Memory,
    /// None: IDLE failed on some connection (the reason is in `idle_failure`).
    idle: Option<Memory>,
    idle_failure: Option<String>,
}

impl MemoryRow {
    /// KiB per held connection of `m` over `before`, RSS and PSS.
    fn per_connection(&self, m: &Memory) -> (f64, f64) {
        let per =
            |after: u64, before: u64| (after as f64 - before as f64) / self.held.max(1) as f64;
        (
            per(m.rss_kib, self.before.rss_kib),
            per(m.pss_kib, self.before.pss_kib),
        )
    }
}

fn main() {
    let s = Settings::from_env("BENCH_IMAP", 50);
    let idle = Idle {
        connections: bench::env_number("BENCH_IMAP_IDLE", 10_000),
        settle: Duration::from_secs(bench::env_number("BENCH_IMAP_IDLE_SETTLE", 10) as u64),
        rate: bench::env_number("BENCH_IMAP_IDLE_RATE", 1000),
    };
    let users = s.users();
    println!(
        "IMAP: {} sessions per measurement, connections {:?}, {} INBOXes of {} messages of {} \
         octets, warm-up {} sessions; {} idle connections — {CMD}",
        s.sessions,
        s.connections,
        users.len(),
        s.messages,
        s.size,
        s.warmup,
        idle.connections
    );
    println!(
        "{} CPUs; a session = LOGIN, SELECT, FETCH 1:* (FLAGS ENVELOPE), 3 × FETCH n \
         (BODY.PEEK[]), STORE ±FLAGS (\\Flagged), APPEND, UID STORE +FLAGS (\\Deleted), UID \
         EXPUNGE, LOGOUT = {OPERATIONS_PER_SESSION} operations",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    if s.shares_users() {
        println!(
            "  note: more than {PEER_USERS} connections share INBOXes (the peer has \
             {PEER_USERS} users); their sizes are then checked loosely"
        );
    }
    if idle.connections > 0 {
        match raise_open_files(idle.connections) {
            Ok(limit) => println!("  open files limit {limit}"),
            Err(why) => {
                eprintln!("BENCH_IMAP_IDLE={}: {why}", idle.connections);
                std::process::exit(1);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ops = Vec::new();
    let mut memory = Vec::new();

    if (s.wants(DOVECOT) || s.wants(DOVECOT_TUNED))
        && let Some(peer) = bench::peer_with_mail(&s, &users, &rt)
    {
        dovecot(&s, &idle, &users, &peer, &mut ops, &mut memory);
        drop(peer);
        println!("Dovecot: peer stack stopped");
    }
    if s.wants(WASMAIL) {
        if s.sessions > 0
            && let Some((w, imap)) = bench::wasmail_with_mail(
                WASMAIL,
                &s,
                &users,
                password_hash(),
                Service::Imap,
                &rt,
                |config, _| {
                    config.services.imap.enabled = true;
                    config.services.imap.listen = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))];
                },
            )
        {
            measure_ops(&s, WASMAIL, imap, &users, &mut ops);
            drop(w);
            println!("{WASMAIL}: stopped");
        }
        if idle.connections > 0 {
            wasmail_process(&s, &idle, &users, &rt, &mut memory);
        }
    }
    print_ops_table(&s, &ops);
    print_memory_table(&idle, &memory);
}

/// Dovecot as shipped, then the tuned Dovecot (started after, stopped before the peer), on the
/// peer's mail.
fn dovecot(
    s: &Settings,
    idle: &Idle,
    users: &[String],
    peer: &Peer,
    ops: &mut Vec<Row<ImapReport>>,
    memory: &mut Vec<MemoryRow>,
) {
    if idle.connections > 0 {
        inotify_note(idle.connections);
    }
    // The master of each instance: `base_dir/master.pid` of its config (the peer's templates).
    let memory_of_instance = |target, addr, instance: &str, memory: &mut Vec<MemoryRow>| {
        if idle.connections == 0 {
            return;
        }
        let file = peer.dir().join(instance).join("run/master.pid");
        match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|pid| pid.trim().parse::<u32>().map_err(|e| e.to_string()))
        {
            Ok(pid) => measure_memory(idle, target, addr, users, pid, memory),
            Err(e) => println!("  {target}: memory: SKIPPED — {}: {e}", file.display()),
        }
    };
    if s.wants(DOVECOT) {
        measure_ops(s, DOVECOT, peer.imap_addr(), users, ops);
        memory_of_instance(DOVECOT, peer.imap_addr(), "dovecot", memory);
    }
    if s.wants(DOVECOT_TUNED) {
        println!("{DOVECOT_TUNED}: starting");
        match include_tuned_settings(peer)
            .and_then(|()| peer.start_tuned().map_err(|e| e.to_string()))
        {
            Ok(tuned) => {
                measure_ops(s, DOVECOT_TUNED, tuned.imap_addr(), users, ops);
                memory_of_instance(DOVECOT_TUNED, tuned.imap_addr(), "dovecot-tuned", memory);
                drop(tuned);
                println!("{DOVECOT_TUNED}: stopped");
            }
            Err(e) => println!("{DOVECOT_TUNED}: SKIPPED — {e}"),
        }
    }
}

/// Says so when the kernel's inotify instances per user are fewer than `connections`: each
/// Dovecot imap process in IDLE takes one (all run as the peer's one mail uid), and without them
/// Dovecot falls back to polling and imap-hibernate takes no connection at all (seen with the
/// default 128), which changes what benchmark 2 measures. The bench leaves the setting alone.
fn inotify_note(connections: usize) {
    let path = "/proc/sys/fs/inotify/max_user_instances";
    let Some(limit) = std::fs::read_to_string(path)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return;
    };
    if limit < connections + 100 {
        println!(
            "  NOTE: {path} is {limit}, fewer than {connections} connections: Dovecot's IDLE \
             beyond that polls instead of using inotify and the tuned Dovecot hibernates none \
             (raise it for this run: sysctl -w fs.inotify.max_user_instances={})",
            (connections + 1000).next_power_of_two()
        );
    }
}

/// `tests/peer/imap-tuned.conf` (room for benchmark 2's connections), included at the end of
/// the tuned Dovecot's config that start.sh rendered into the peer directory.
fn include_tuned_settings(peer: &Peer) -> Result<(), String> {
    let extra = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer/imap-tuned.conf");
    if !extra.is_file() {
        return Err(format!("{} is missing", extra.display()));
    }
    let conf = peer.dir().join("dovecot-tuned/dovecot.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    writeln!(f, "\n!include {}", extra.display()).map_err(|e| e.to_string())?;
    println!("  with {}", extra.display());
    Ok(())
}

/// The wasmail binary as a process of its own (benchmark 2).
fn wasmail_process(
    s: &Settings,
    idle: &Idle,
    users: &[String],
    rt: &tokio::runtime::Runtime,
    memory: &mut Vec<MemoryRow>,
) {
    println!("{WASMAIL}: starting the binary");
    let started = wasmail_binary().and_then(|bin| {
        let hash = password_hash()?;
        WasmailProcess::start(&bin, users, &hash, idle.connections)
    });
    let w = match started {
        Ok(w) => w,
        Err(why) => {
            println!("{WASMAIL}: memory: SKIPPED — {why}");
            return;
        }
    };
    let count = |user: &str| peer::count_maildir(&w.data.join("accounts").join(user));
    match rt.block_on(deliver(w.smtp, users, s.messages, s.size, &count)) {
        Ok(took) => {
            println!("  mail delivered through wasmail's SMTP in {took:.2?}");
            measure_memory(idle, WASMAIL, w.imap, users, w.child.id(), memory);
        }
        Err(e) => println!("{WASMAIL}: memory: SKIPPED — delivering the mail: {e}"),
    }
    drop(w);
    println!("{WASMAIL}: stopped");
}

/// The bench users' password hash (wasmail's default argon2id; the login cache, on by default,
/// spares the sessions after the first one per user the hashing).
fn password_hash() -> Result<String, String> {
    wasmail::users::hash_password(&wasmail_types::Secret::new(peer::PASSWORD.to_owned()))
        .map_err(|e| e.to_string())
}

/// Benchmark 1 against one target: a warm-up and a measurement per connection count.
fn measure_ops(
    s: &Settings,
    target: &'static str,
    addr: SocketAddr,
    users: &[String],
    rows: &mut Vec<Row<ImapReport>>,
) {
    if s.sessions == 0 {
        return;
    }
    measure_each(s, target, rows, |connections, sessions| {
        imap_load::run(&ImapLoadSpec {
            connections,
            sessions,
            append_size: s.size,
            ..ImapLoadSpec::new(addr, users.to_vec(), peer::PASSWORD, s.messages)
        })
    });
}

/// Benchmark 2 against the server whose processes descend from `root` (itself included).
fn measure_memory(
    idle: &Idle,
    target: &'static str,
    addr: SocketAddr,
    users: &[String],
    root: u32,
    rows: &mut Vec<MemoryRow>,
) {
    let before = match settled(root, SETTLE_STEP) {
        Ok(m) => m,
        Err(e) => {
            println!("  {target}: memory: FAILED — {e}");
            return;
        }
    };
    let mut held = imap_load::hold(&HoldSpec {
        addr,
        users: users.to_vec(),
        password: peer::PASSWORD.to_owned(),
        connections: idle.connections,
        threads: OPENERS,
        timeout: HOLD_TIMEOUT,
    });
    println!(
        "  {target}: {} of {} connections logged in with INBOX selected in {:.1?}{}",
        held.len(),
        idle.connections,
        held.took,
        held.stopped_by
            .as_deref()
            .map(|why| format!("; opening stopped: {why}"))
            .unwrap_or_default()
    );
    if held.is_empty() {
        return;
    }
    let plain = match settled(root, SETTLE_STEP) {
        Ok(m) => m,
        Err(e) => {
            println!("  {target}: memory: FAILED — {e}");
            return;
        }
    };
    let (in_idle, idle_failure) = match held.idle(OPENERS, idle.rate) {
        Ok(took) => {
            println!(
                "  {target}: all {} in IDLE in {took:.1?}; waiting for the memory to settle",
                held.len()
            );
            match settled(root, idle.settle) {
                Ok(m) => (Some(m), None),
                Err(e) => (None, Some(e)),
            }
        }
        Err(e) => (None, Some(e)),
    };
    let row = MemoryRow {
        target,
        held: held.len(),
        stopped_by: held.stopped_by.take(),
        before,
        plain,
        idle: in_idle,
        idle_failure,
    };
    let (rss, pss) = row.per_connection(&row.plain);
    println!(
        "  {target}: before {} processes, RSS {} KiB, PSS {} KiB; plain {} processes, \
         {rss:.1} KiB RSS / {pss:.1} KiB PSS per connection{}",
        before.processes,
        before.rss_kib,
        before.pss_kib,
        plain.processes,
        match (&row.idle, &row.idle_failure) {
            (Some(m), _) => {
                let (rss, pss) = row.per_connection(m);
                format!(
                    "; IDLE {} processes, {rss:.1} KiB RSS / {pss:.1} KiB PSS per connection",
                    m.processes
                )
            }
            (None, Some(e)) => format!("; IDLE FAILED — {e}"),
            (None, None) => String::new(),
        }
    );
    rows.push(row);
    drop(held);
    // Let the server wind the connections down before the next target runs.
    let start = Instant::now();
    while start.elapsed() < SETTLE_MAX {
        match memory_of(root) {
            Ok(m) if m.processes > before.processes + 8 => {
                std::thread::sleep(Duration::from_millis(500));
            }
            _ => break,
        }
    }
}

/// Waits `at_least`, then until two readings [`SETTLE_STEP`] apart differ by less than 1% of
/// PSS (at most [`SETTLE_MAX`]); returns the last reading.
fn settled(root: u32, at_least: Duration) -> Result<Memory, String> {
    std::thread::sleep(at_least);
    let start = Instant::now();
    let mut last = memory_of(root)?;
    loop {
        std::thread::sleep(SETTLE_STEP);
        let now = memory_of(root)?;
        let moved = now.pss_kib.abs_diff(last.pss_kib) as f64;
        if moved < now.pss_kib as f64 / 100.0 || start.elapsed() > SETTLE_MAX {
            return Ok(now);
        }
        last = now;
    }
}

/// RSS (VmRSS) and PSS (smaps_rollup) summed over `root` and every process descending from it.
fn memory_of(root: u32) -> Result<Memory, String> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let kib = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let mut total = Memory::default();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        todo.extend(children.get(&pid).into_iter().flatten());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"));
        let (Ok(status), Ok(rollup)) = (status, rollup) else {
            if pid == root {
                return Err(format!("process {root} is gone"));
            }
            continue; // exited meanwhile
        };
        total.rss_kib += kib(&status, "VmRSS:").unwrap_or(0);
        total.pss_kib += kib(&rollup, "Pss:").unwrap_or(0);
        total.processes += 1;
    }
    Ok(total)
}

/// Raises this process's RLIMIT_NOFILE to hold `connections` client sockets with room to spare
/// (up to the hard limit; a process without the privilege cannot go beyond it). The servers this
/// bench starts inherit it: each of them (wasmail, Dovecot's imap-hibernate) holds the other
/// ends in a file table of its own, so the same limit serves them.
fn raise_open_files(connections: usize) -> Result<u64, String> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let want = connections as u64 + 1024;
    let now = getrlimit(Resource::Nofile);
    let (soft, hard) = (now.current.unwrap_or(u64::MAX), now.maximum);
    if soft >= want {
        return Ok(soft);
    }
    let raised = Rlimit {
        current: Some(want),
        maximum: Some(hard.unwrap_or(u64::MAX).max(want)),
    };
    setrlimit(Resource::Nofile, raised).map_err(|e| {
        format!(
            "cannot raise the open files limit from {soft} (hard {}) to {want}: {e}; raise it \
             (ulimit -n) or lower BENCH_IMAP_IDLE",
            hard.map_or("unlimited".to_owned(), |h| h.to_string())
        )
    })?;
    Ok(want)
}

/// `WASMAIL_BIN`, else `wasmail` in the directory of the bench's own profile
/// (`target/release/deps/imap-…` → `target/release/wasmail`).
fn wasmail_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("WASMAIL_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot tell the target directory")?;
    let bin = profile.join("wasmail");
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return Err(format!(
            "no wasmail binary at {}: build it first with `cargo build -p wasmail --release` \
             (or set WASMAIL_BIN)",
            bin.display()
        ));
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = ["host", "plugins/guests", "wit"]
        .iter()
        .filter_map(|d| newest_source(&repo.join(d)))
        .max();
    if let Some((changed, path)) = newest
        && changed > built
    {
        println!(
            "  WARNING: {} is older than {} — rebuild it with `cargo build -p wasmail --release`",
            bin.display(),
            path.display()
        );
    }
    println!("  binary {}", bin.display());
    Ok(bin)
}

/// The most recently modified `.rs`, `.toml` or `.wit` file below `dir` that goes into the
/// binary (target, tests and benches dirs and `tests.rs` files skipped).
fn newest_source(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let found = if kind.is_dir() {
            if ["target", "tests", "benches"]
                .iter()
                .any(|d| entry.file_name() == *d)
            {
                continue;
            }
            newest_source(&path)
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "toml" || e == "wit")
            && !path.ends_with("tests.rs")
        {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        } else {
            None
        };
        if let Some(f) = found
            && newest.as_ref().is_none_or(|n| f.0 > n.0)
        {
            newest = Some(f);
        }
    }
    newest
}

/// `wasmail serve` as a child process: SMTP and IMAP on free loopback ports, data dir under
/// /var/tmp, room for `connections` connections from 127.0.0.1; stopped (SIGTERM), then its
/// directory removed, on drop.
struct WasmailProcess {
    child: Child,
    smtp: SocketAddr,
    imap: SocketAddr,
    data: PathBuf,
    // Last: removed after the child has stopped.
    _dir: tempfile::TempDir,
}

impl WasmailProcess {
    fn start(
        bin: &Path,
        users: &[String],
        hash: &str,
        connections: usize,
    ) -> Result<WasmailProcess, String> {
        let dir = tempfile::Builder::new()
            .prefix("wasmail-bench-")
            .tempdir_in("/var/tmp")
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        let accounts = wasmail::users::UsersFile::new(&data);
        for u in users {
            accounts.add(u, hash).map_err(|e| e.to_string())?;
        }
        let (smtp, imap) = (free_port()?, free_port()?);
        let limit = connections + 100;
        let config = format!(
            "[server]\nhostname = \"mx.example.test\"\ndata_dir = \"{data}\"\n\
             domains = [\"example.test\"]\n\
             [services.smtp]\nlisten = [\"{smtp}\"]\n[services.imap]\nlisten = [\"{imap}\"]\n\
             [services.submission]\nenabled = false\n[services.submissions]\nenabled = false\n\
             [services.imaps]\nenabled = false\n[services.pop3]\nenabled = false\n\
             [services.pop3s]\nenabled = false\n\
             [limits]\nmax_connections = {limit}\nmax_connections_per_ip = {limit}\n\
             shutdown_grace = \"1s\"\n[log]\nlevel = \"warn\"\n",
            data = data.display(),
        );
        let config_path = dir.path().join("wasmail.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("wasmail.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut w = WasmailProcess {
            child,
            smtp,
            imap,
            data,
            _dir: dir,
        };
        // The first start compiles the built-in plugins: allow it time.
        let start = Instant::now();
        while TcpStream::connect(imap).is_err() {
            if let Ok(Some(status)) = w.child.try_wait() {
                return Err(format!(
                    "wasmail exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!("wasmail does not listen on {imap} after 120 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "  wasmail pid {}, IMAP {imap}, data dir {}, filesystem {}, log {}",
            w.child.id(),
            w.data.display(),
            filesystem_type(&w.data),
            log_path.display()
        );
        Ok(w)
    }
}

impl Drop for WasmailProcess {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process};
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                if !status.success() {
                    println!("  wasmail exited: {status}");
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("  wasmail did not stop within 15 s of SIGTERM: killed");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())
}

fn print_ops_table(s: &Settings, rows: &[Row<ImapReport>]) {
    println!();
    if s.sessions == 0 {
        return;
    }
    if rows.is_empty() {
        println!("benchmark 1: no target was measured");
        return;
    }
    println!(
        "benchmark 1: {} sessions per run of {OPERATIONS_PER_SESSION} operations, {} messages of \
         {} octets per INBOX",
        s.sessions, s.messages, s.size
    );
    println!(
        "{:<20} {:>5} {:>9} {:>11} {}",
        "target",
        "conns",
        "ops/s",
        "sessions/s",
        Outcome::HEADER,
    );
    for r in rows {
        println!(
            "{:<20} {:>5} {:>9.1} {:>11.1} {}",
            r.target,
            r.connections,
            r.report.operations_per_second,
            r.report.sessions_per_second,
            r.report.outcome.cells(),
        );
        r.report.outcome.print_first_failure();
    }
    bench::print_ratios(
        rows,
        &[
            (WASMAIL, DOVECOT_TUNED, " (goal 2x)"),
            (WASMAIL, DOVECOT, ""),
            (DOVECOT, DOVECOT_TUNED, ""),
        ],
        &[
            ("ops/s", |r: &ImapReport| r.operations_per_second),
            ("p50 latency", |r: &ImapReport| {
                r.outcome.latency.p50.as_secs_f64()
            }),
        ],
    );
}

fn print_memory_table(idle: &Idle, rows: &[MemoryRow]) {
    if idle.connections == 0 {
        return;
    }
    println!();
    if rows.is_empty() {
        println!("benchmark 2: no target was measured");
        return;
    }
    println!(
        "benchmark 2: {} connections asked, each logged in with INBOX selected (plain), then all \
         in IDLE; KiB per connection = (memory − memory before the first) / connections held",
        idle.connections
    );
    println!(
        "{:<20} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>15}",
        "target",
        "held",
        "before MiB",
        "plain RSS",
        "plain PSS",
        "IDLE RSS",
        "IDLE PSS",
        "processes",
    );
    let kib = |v: f64| format!("{v:.1}");
    for r in rows {
        let (plain_rss, plain_pss) = r.per_connection(&r.plain);
        let (idle_rss, idle_pss) = r
            .idle
            .as_ref()
            .map(|m| r.per_connection(m))
            .map_or(("-".to_owned(), "-".to_owned()), |(a, b)| (kib(a), kib(b)));
        println!(
            "{:<20} {:>6} {:>10.1} {:>10} {:>10} {:>10} {:>10} {:>15}",
            r.target,
            r.held,
            r.before.pss_kib as f64 / 1024.0,
            kib(plain_rss),
            kib(plain_pss),
            idle_rss,
            idle_pss,
            format!(
                "{}/{}/{}",
                r.before.processes,
                r.plain.processes,
                r.idle.map_or("-".to_owned(), |m| m.processes.to_string())
            ),
        );
        if let Some(why) = &r.stopped_by {
            println!("    held fewer than asked: {why}");
        }
        if let Some(why) = &r.idle_failure {
            println!("    IDLE: {why}");
        }
    }
    println!("(before MiB: PSS; processes: before/plain/IDLE)");
    let pss = |r: &MemoryRow, m: Option<&Memory>| m.map(|m| r.per_connection(m).1);
    for (name, base_name) in [
        (WASMAIL, DOVECOT_TUNED),
        (WASMAIL, DOVECOT),
        (DOVECOT, DOVECOT_TUNED),
    ] {
        let (Some(r), Some(base)) = (
            rows.iter().find(|r| r.target == name),
            rows.iter().find(|b| b.target == base_name),
        ) else {
            continue;
        };
        let both = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "n/a".to_owned(),
        };
        println!(
            "{} / {}: PSS per connection plain {}, IDLE {} (lower is better)",
            r.target,
            base.target,
            both(pss(r, Some(&r.plain)), pss(base, Some(&base.plain))),
            both(pss(r, r.idle.as_ref()), pss(base, base.idle.as_ref())),
        );
    }
}
