//! Store benchmarks: delivery throughput against the filesystem's own limit, and a 100,000-message
//! mailbox (listing, status, cold open, reading).
//!
//! ```text
//! cargo +1.95.0 bench -p wasmail-store                 # everything (about 1-2 minutes)
//! cargo +1.95.0 bench -p wasmail-store -- baseline     # only the raw filesystem loop
//! cargo +1.95.0 bench -p wasmail-store -- deliver      # only deliver_bytes
//! cargo +1.95.0 bench -p wasmail-store -- bigbox       # only the 100,000-message mailbox
//! WASMAIL_BENCH_QUICK=1 cargo +1.95.0 bench -p wasmail-store   # 10,000 messages, short runs
//! WASMAIL_BENCH_DIR=/some/dir cargo +1.95.0 bench -p wasmail-store   # another filesystem
//! ```
//!
//! Everything runs in a temporary directory under `target/tmp` (or `WASMAIL_BENCH_DIR`): on the
//! disk, not on tmpfs, where fsync costs nothing and the figures would mean nothing.

#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failure aborts the run"
)]

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmail_store::{FsStore, StoreConfig};
use wasmail_types::mail::{Flags, MailboxName, SystemFlag, Uid};
use wasmail_types::{DeliveryTarget, MailStore};

const CMD: &str = "cargo +1.95.0 bench -p wasmail-store";

struct Settings {
    quick: bool,
    /// How long each throughput figure runs.
    run: Duration,
    /// Messages in the big mailbox.
    big: u64,
    base: PathBuf,
    sections: Vec<String>,
}

impl Settings {
    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

fn main() {
    let quick = std::env::var_os("WASMAIL_BENCH_QUICK").is_some_and(|v| v != "0");
    let base = std::env::var_os("WASMAIL_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&base).expect("create the bench directory");
    let settings = Settings {
        quick,
        run: Duration::from_millis(if quick { 500 } else { 2500 }),
        big: if quick { 10_000 } else { 100_000 },
        base,
        // cargo passes `--bench`; anything not starting with `-` picks sections.
        sections: std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    };

    let fs_type = filesystem_type(&settings.base);
    println!(
        "wasmail-store benchmarks: {CMD}{}",
        if quick {
            "  (WASMAIL_BENCH_QUICK=1)"
        } else {
            ""
        }
    );
    println!(
        "data in {} (filesystem: {fs_type}), {} CPUs, fsync ON unless a line says otherwise",
        settings.base.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if matches!(fs_type.as_str(), "tmpfs" | "ramfs") {
        println!(
            "WARNING: {fs_type} ignores fsync; set WASMAIL_BENCH_DIR to a directory on a disk"
        );
    }

    let start = Instant::now();
    let mut baseline = Baseline::default();
    if settings.wants("baseline") || settings.wants("deliver") {
        baseline = raw_baseline(&settings);
        eprintln!("[baseline done at {}]", human(start.elapsed()));
    }
    if settings.wants("deliver") {
        deliveries(&settings, &baseline);
        eprintln!("[deliver done at {}]", human(start.elapsed()));
    }
    if settings.wants("bigbox") {
        big_mailbox(&settings);
        eprintln!("[bigbox done at {}]", human(start.elapsed()));
    }
}

// ---- helpers -------------------------------------------------------------------------------------

/// The type of the filesystem holding `path` (longest matching mount point in /proc/mounts).
fn filesystem_type(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
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

fn tempdir(settings: &Settings, prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&settings.base)
        .expect("create a temp dir")
}

/// A message of about `size` octets: a few headers and lines of text.
fn message(size: usize, n: u64) -> Vec<u8> {
    let mut m = format!(
        "From: Bench <bench@example.org>\r\nTo: user@example.org\r\nSubject: message {n}\r\n\
         Message-ID: <{n}@bench.example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let line =
        b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m.resize(size.max(m.len()), b'.');
    m
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile(&mut self, p: usize) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        self.0[(self.0.len() * p / 100).min(self.0.len() - 1)]
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Runs `threads` copies of `op` (given the thread number and a sequence number) for `run`;
/// returns operations per second and every operation's latency.
fn throughput(threads: usize, run: Duration, op: impl Fn(usize, u64) + Sync) -> (f64, Latencies) {
    let start = Instant::now();
    let deadline = start + run;
    let all: Vec<Vec<Duration>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut n = 0;
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        op(t, n);
                        lat.push(t0.elapsed());
                        n += 1;
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let elapsed = start.elapsed();
    let lat: Vec<Duration> = all.into_iter().flatten().collect();
    (lat.len() as f64 / elapsed.as_secs_f64(), Latencies(lat))
}

/// This process's I/O counters from /proc/self/io: (read syscalls, bytes read by them).
fn io_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("syscr:"), field("rchar:"))
}

// ---- 1. the filesystem's own limit ---------------------------------------------------------------

#[derive(Default)]
struct Baseline {
    one: f64,
    eight_shared: f64,
    eight_separate: f64,
}

fn raw_baseline(settings: &Settings) -> Baseline {
    println!();
    println!(
        "== 1. Filesystem baseline: create tmp/<f>, write 1 KiB, fsync, rename to new/<f>, fsync new/ =="
    );
    println!("   reproduce: {CMD} -- baseline");
    println!(
        "   {:<8} {:<22} {:>12} {:>8} {:>8}",
        "threads", "directories", "ops/s", "p50 ms", "p99 ms"
    );
    let payload = vec![b'x'; 1024];
    let run = |threads: usize, shared: bool| -> f64 {
        let dir = tempdir(settings, "bench-raw-");
        let dirs: Vec<PathBuf> = (0..threads)
            .map(|t| {
                let d = dir.path().join(if shared {
                    "shared".to_owned()
                } else {
                    format!("t{t}")
                });
                std::fs::create_dir_all(d.join("tmp")).expect("mkdir tmp");
                std::fs::create_dir_all(d.join("new")).expect("mkdir new");
                d
            })
            .collect();
        let (rate, mut lat) = throughput(threads, settings.run, |t, n| {
            let d = &dirs[t];
            let name = format!("{t}.{n}");
            let tmp = d.join("tmp").join(&name);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .expect("create");
            f.write_all(&payload).expect("write");
            f.sync_all().expect("fsync file");
            drop(f);
            std::fs::rename(&tmp, d.join("new").join(&name)).expect("rename");
            File::open(d.join("new"))
                .and_then(|f| f.sync_all())
                .expect("fsync dir");
        });
        let layout = match (threads, shared) {
            (1, _) => "one",
            (_, true) => "one, shared",
            (_, false) => "one per thread",
        };
        println!(
            "   {:<8} {:<22} {:>12.0} {:>8} {:>8}",
            threads,
            layout,
            rate,
            ms(lat.percentile(50)),
            ms(lat.percentile(99))
        );
        rate
    };
    Baseline {
        one: run(1, true),
        eight_shared: run(8, true),
        eight_separate: run(8, false),
    }
}

// ---- 2. deliveries -------------------------------------------------------------------------------

fn deliveries(settings: &Settings, baseline: &Baseline) {
    println!();
    println!(
        "== 2. FsStore::deliver_bytes, fsync on (message file + new/ + index record durable before Ok) =="
    );
    println!("   reproduce: {CMD} -- deliver");
    println!(
        "   {:<8} {:<8} {:<26} {:>12} {:>8} {:>8} {:>8}  vs baseline (same threads)",
        "size", "writers", "target", "deliveries/s", "MB/s", "p50 ms", "p99 ms",
    );
    let inbox = MailboxName::inbox();
    for size in [1024usize, 100 * 1024] {
        for (writers, separate) in [(1usize, false), (8, false), (8, true)] {
            let dir = tempdir(settings, "bench-deliver-");
            let store = FsStore::open(dir.path(), StoreConfig { fsync: true }).expect("open store");
            let accounts: Vec<String> = (0..if separate { writers } else { 1 })
                .map(|i| format!("user{i}@bench"))
                .collect();
            let content = message(size, 0);
            // Create the accounts and open their INBOX before the clock starts.
            for a in &accounts {
                let t = [DeliveryTarget {
                    account: a.clone(),
                    mailbox: inbox.clone(),
                    flags: Flags::new(),
                }];
                store.deliver_bytes(&content, &t).expect("warm-up delivery");
            }
            let targets: Vec<[DeliveryTarget; 1]> = (0..writers)
                .map(|w| {
                    [DeliveryTarget {
                        account: accounts[w % accounts.len()].clone(),
                        mailbox: inbox.clone(),
                        flags: Flags::new(),
                    }]
                })
                .collect();
            let (rate, mut lat) = throughput(writers, settings.run, |w, _| {
                store.deliver_bytes(&content, &targets[w]).expect("deliver");
            });
            let (target, base, base_name) = match (writers, separate) {
                (1, _) => ("1 account, INBOX", baseline.one, "1 thread"),
                (_, false) => (
                    "1 account, same INBOX",
                    baseline.eight_shared,
                    "8 threads, shared dir",
                ),
                (_, true) => (
                    "8 accounts, one INBOX each",
                    baseline.eight_separate,
                    "8 threads, dir each",
                ),
            };
            let ratio = if base > 0.0 {
                format!("{:.2}x of {base:.0}/s ({base_name})", rate / base)
            } else {
                "-".to_owned()
            };
            println!(
                "   {:<8} {:<8} {:<26} {:>12.0} {:>8.1} {:>8} {:>8}  {}",
                if size == 1024 { "1 KiB" } else { "100 KiB" },
                writers,
                target,
                rate,
                rate * size as f64 / 1e6,
                ms(lat.percentile(50)),
                ms(lat.percentile(99)),
                ratio
            );
        }
    }
}

// ---- 3. a big mailbox ----------------------------------------------------------------------------

fn big_mailbox(settings: &Settings) {
    let n = settings.big;
    println!();
    println!("== 3. A {n}-message INBOX ==");
    println!(
        "   reproduce: {CMD} -- bigbox{}",
        if settings.quick {
            "   (with WASMAIL_BENCH_QUICK=1)"
        } else {
            ""
        }
    );
    let dir = tempdir(settings, "bench-big-");
    let account = "big@bench";
    let inbox = MailboxName::inbox();

    // Fill fast: fsync off, 4 writers; 1-2 KiB messages, 9 in 10 delivered \Seen (into cur/), the
    // rest unseen (new/), as in a real INBOX.
    let fill_start = Instant::now();
    {
        let store = FsStore::open(dir.path(), StoreConfig { fsync: false }).expect("open store");
        store.account(account).expect("create account");
        let next = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let flags = if i.is_multiple_of(10) {
                            Flags::new()
                        } else {
                            Flags::from_system(&[SystemFlag::Seen])
                        };
                        let t = [DeliveryTarget {
                            account: account.to_owned(),
                            mailbox: inbox.clone(),
                            flags,
                        }];
                        store
                            .deliver_bytes(&message(1024 + (i as usize * 7919) % 1024, i), &t)
                            .expect("fill");
                    }
                });
            }
        });
    }
    let fill = fill_start.elapsed();
    // Write everything back now, so that writeback does not run during the measurements.
    let sync_start = Instant::now();
    let _ = File::open(dir.path()).map(|f| rustix::fs::syncfs(&f));
    let sync = sync_start.elapsed();
    let account_dir = dir.path().join("accounts").join(account);
    let journal = std::fs::metadata(account_dir.join("wasmail-index")).map_or(0, |m| m.len());
    println!(
        "   fill: {n} deliveries with fsync OFF, 4 threads: {} ({:.0}/s), then syncfs {}; index {:.1} MB ({} bytes/message)",
        human(fill),
        n as f64 / fill.as_secs_f64(),
        human(sync),
        journal as f64 / 1e6,
        journal / n.max(1)
    );

    println!("   {:<58} {:>12} {:>12}", "operation", "median", "min");
    let row = |what: &str, mut samples: Vec<Duration>| {
        samples.sort_unstable();
        println!(
            "   {:<58} {:>12} {:>12}",
            what,
            human(samples[samples.len() / 2]),
            human(samples[0])
        );
    };

    // Cold open: a fresh FsStore replays the journal and scans new/ for orphans.
    let mut opens = Vec::new();
    let mut mailbox = None;
    for _ in 0..5 {
        let t = Instant::now();
        let store = FsStore::open(dir.path(), StoreConfig { fsync: true }).expect("open store");
        let mb = store
            .account(account)
            .and_then(|a| a.open(&inbox))
            .expect("open INBOX");
        opens.push(t.elapsed());
        mailbox = Some(mb);
    }
    row(
        "cold open (new FsStore, account, INBOX: journal replay)",
        opens,
    );
    let mb = mailbox.expect("opened");

    // Reading /proc/self/io is itself a read: measure that overhead and take it off.
    let (c0, b0) = io_counters();
    let (c1, b1) = io_counters();
    let (calls_before, bytes_before) = io_counters();
    let mut lists = Vec::new();
    let mut count = 0;
    for _ in 0..10 {
        let t = Instant::now();
        count = mb.messages().expect("messages").len();
        lists.push(t.elapsed());
    }
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let st = mb.status().expect("status");
        statuses.push(t.elapsed());
        assert_eq!(u64::from(st.messages), n);
    }
    let (calls_after, bytes_after) = io_counters();
    assert_eq!(count as u64, n);
    let list_median = {
        let mut l = lists.clone();
        l.sort_unstable();
        l[l.len() / 2]
    };
    row("messages(): all UIDs + flags", lists);
    row("status()", statuses);

    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut random_uid = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Uid::new((rng % n) as u32 + 1).expect("UIDs start at 1")
    };
    let reads: Vec<Duration> = (0..1000)
        .map(|_| {
            let uid = random_uid();
            let t = Instant::now();
            let bytes = mb
                .open_message(uid)
                .and_then(|c| c.read_all().map_err(wasmail_types::StoreError::io("read")))
                .expect("read message");
            let d = t.elapsed();
            assert!(bytes.len() >= 1024);
            d
        })
        .collect();
    row("open_message(uid).read_all() (1-2 KiB, random UIDs)", reads);
    let ranges: Vec<Duration> = (0..1000)
        .map(|_| {
            let uid = random_uid();
            let t = Instant::now();
            let bytes = mb
                .open_message(uid)
                .and_then(|c| {
                    c.read_range(300, 100)
                        .map_err(wasmail_types::StoreError::io("read"))
                })
                .expect("read range");
            let d = t.elapsed();
            assert_eq!(bytes.len(), 100);
            d
        })
        .collect();
    row("open_message(uid).read_range(300, 100)", ranges);

    // What listing would cost if it opened the files: open + read 1,000 message files, x100.
    let files: Vec<PathBuf> = std::fs::read_dir(account_dir.join("cur"))
        .expect("read cur/")
        .flatten()
        .take(1000)
        .map(|e| e.path())
        .collect();
    let t = Instant::now();
    let mut total = 0;
    for f in &files {
        total += std::fs::read(f).expect("read file").len();
    }
    let per_file = t.elapsed() / files.len().max(1) as u32;
    assert!(total > 0);
    let all_files = per_file * n as u32;
    println!();
    println!(
        "   listing reads no message file: {} read syscalls, {} bytes read during 10x messages() + 100x status() (/proc/self/io)",
        (calls_after - calls_before).saturating_sub(c1 - c0),
        (bytes_after - bytes_before).saturating_sub(b1 - b0)
    );
    println!(
        "   messages() on {n}: {}  vs  open+read of {} files (page cache warm) x{}: {}  ({:.0}x faster)",
        human(list_median),
        files.len(),
        n / files.len().max(1) as u64,
        human(all_files),
        all_files.as_secs_f64() / list_median.as_secs_f64().max(1e-9)
    );
}
