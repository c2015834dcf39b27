//! SMTP load benchmark: the same load (`wasmail_e2e::load`) against every target in one run,
//! counting what reached the mailbox, not just what was acknowledged.
//!
//! ```text
//! cargo +1.95.0 bench -p wasmail-e2e --bench smtp                 # every target, defaults below
//! cargo +1.95.0 bench -p wasmail-e2e --bench smtp -- postfix      # targets whose name has "postfix"
//! BENCH_MESSAGES=5000 BENCH_CONNECTIONS=20,8 BENCH_SIZE=1024 cargo +1.95.0 bench -p wasmail-e2e --bench smtp
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_MESSAGES` | 5000 | messages per measurement |
//! | `BENCH_CONNECTIONS` | 20 | concurrent connections; a list (`20,8`) measures each |
//! | `BENCH_SIZE` | 1024 | message size in octets |
//! | `BENCH_PIPELINING` | 1 | 0: one command per round trip even if the server offers PIPELINING |
//! | `BENCH_WARMUP` | 200 | messages sent (and waited for) before measuring, not reported |
//!
//! For each target and connection count: a warm-up, then `run(spec)`; "accepted/s" is messages
//! acknowledged after the final dot per second of the load; "delivered/s" is messages divided by
//! the time from the first connect until the last one is a file in the recipient's Maildir
//! (polled every 20 ms). Each measurement (and the warm-up) uses a mailbox of its own, so every
//! run starts with an empty one. The Postfix target is the peer stack (`../shared/peer`:
//! Postfix → LMTP → Dovecot → Maildir, both fsyncing every message); on a machine without it the
//! target is skipped, saying why (this bench never installs anything).

#![allow(
    clippy::unwrap_used,
    reason = "benchmark code: a failure aborts the run"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmail_e2e::bench::{self, InProcess, Outcome, POLL, STALL, filesystem_type};
use wasmail_e2e::load::{self, LoadReport, LoadSpec};
use wasmail_e2e::peer::{self, Peer};

const CMD: &str = "cargo +1.95.0 bench -p wasmail-e2e --bench smtp";

/// One server under test.
struct Target {
    /// Shown in the table.
    name: String,
    /// Its SMTP listener (plain TCP).
    addr: SocketAddr,
    /// Recipients it delivers to a mailbox of their own: each measurement takes the next one.
    mailboxes: Vec<String>,
    /// Messages in that recipient's mailbox now (files in its Maildir, not acknowledgements).
    /// Owns (and so keeps running) whatever it counts in.
    count_delivered: Box<dyn Fn(&str) -> usize>,
    /// The target the others are compared with (Postfix).
    baseline: bool,
}

/// Starts a target, or says why it is skipped.
type Start = fn() -> Result<Target, String>;

/// Every target, in the order they run. Each is started when its turn comes and stopped (dropped)
/// before the next one starts, so they never compete for the machine.
const TARGETS: &[(&str, Start)] = &[
    ("Postfix", postfix),
    ("wasmail", wasmail_defaults),
    ("wasmail + filter", wasmail_with_filter),
];

/// The built-in plugins only: at every RCPT the delivery policy routes the recipient and the
/// authenticator confirms the account exists (two plugin calls per message).
fn wasmail_defaults() -> Result<Target, String> {
    wasmail(false)
}

/// Also a content filter on every message (filter-rules: a header rule, checked on the data
/// hook, that does not match).
fn wasmail_with_filter() -> Result<Target, String> {
    wasmail(true)
}

/// A wasmail server in this process on 127.0.0.1:0, data dir under /var/tmp (on disk, fsync on),
/// accounts user1..user10@example.test; delivered = files in the account's Maildir.
fn wasmail(filter: bool) -> Result<Target, String> {
    let hash = wasmail::users::hash_password(&wasmail_types::Secret::new("bench".to_owned()))
        .map_err(|e| e.to_string())?;
    let mailboxes: Vec<String> = (1..=10).map(|n| format!("user{n}@example.test")).collect();
    let mut rules = Ok(());
    let server = InProcess::start(&mailboxes, &hash, |_, specs| {
        if filter {
            rules = wasmail::config::Config::parse(
                concat!(
                    "[[plugins]]\nname = \"rules\"\nfile = \"builtin:filter-rules\"\n",
                    "[[plugins.config.rule]]\nheader = \"Subject\"\ncontains = \"lottery\"\n",
                    "action = \"reject\"\n",
                ),
                None,
            )
            .map(|rules| specs.extend(wasmail::plugins::specs(&rules)))
            .map_err(|e| e.to_string());
        }
    })?;
    rules?;
    let addr = server.addr(wasmail::Service::Smtp)?;
    Ok(Target {
        name: if filter {
            "wasmail + filter-rules on DATA".to_owned()
        } else {
            "wasmail (built-in plugins)".to_owned()
        },
        addr,
        mailboxes,
        // Owns the server: dropping the target stops it, then removes the dir.
        count_delivered: Box::new(move |rcpt| peer::count_maildir(&server.maildir(rcpt))),
        baseline: false,
    })
}

fn postfix() -> Result<Target, String> {
    if let Some(why) = peer::unavailable_reason() {
        return Err(why);
    }
    let peer = Arc::new(Peer::start().map_err(|e| e.to_string())?);
    println!(
        "  peer stack in {} ({}), filesystem {}",
        peer.dir().display(),
        peer::versions(),
        filesystem_type(peer.dir())
    );
    Ok(Target {
        name: "Postfix → Dovecot LMTP".to_owned(),
        addr: peer.smtp_addr(),
        mailboxes: (1..=100).map(|n| format!("user{n}@example.test")).collect(),
        count_delivered: Box::new(move |rcpt| peer.maildir_count(rcpt)),
        baseline: true,
    })
}

struct Settings {
    messages: usize,
    connections: Vec<usize>,
    size: usize,
    pipelining: bool,
    warmup: usize,
    /// Arguments not starting with `-` (cargo passes `--bench`): target name filters.
    filters: Vec<String>,
}

struct Row {
    target: String,
    baseline: bool,
    connections: usize,
    report: LoadReport,
    delivered: usize,
    /// From the start of the load to the last delivery seen (None: not all arrived).
    delivered_after: Option<Duration>,
}

impl Row {
    fn delivered_per_second(&self) -> Option<f64> {
        self.delivered_after
            .map(|d| self.delivered as f64 / d.as_secs_f64().max(1e-9))
    }
}

fn main() {
    let s = settings();
    println!(
        "SMTP load: {} messages of {} octets, connections {:?}, pipelining {}, warm-up {} — {CMD}",
        s.messages,
        s.size,
        s.connections,
        if s.pipelining { "on" } else { "off" },
        s.warmup
    );
    println!(
        "{} CPUs; delivered = files in the recipient's Maildir (new/ + cur/), polled every {} ms",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        POLL.as_millis()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut rows = Vec::new();
    for (name, start) in TARGETS {
        if !bench::wanted(&s.filters, name) {
            continue;
        }
        println!("{name}: starting");
        let target = match start() {
            Ok(t) => t,
            Err(why) => {
                println!("{name}: SKIPPED — {why}");
                continue;
            }
        };
        let mut mailboxes = target.mailboxes.iter().cycle();
        for &connections in &s.connections {
            let spec = |messages, rcpt: &String| LoadSpec {
                connections,
                messages,
                message_size: s.size,
                pipelining: s.pipelining,
                ..LoadSpec::new(target.addr, rcpt.clone())
            };
            if s.warmup > 0 {
                let rcpt = mailboxes.next().unwrap();
                match rt.block_on(measure(&target, &spec(s.warmup, rcpt))) {
                    Ok((report, delivered, after)) => println!(
                        "  warm-up, {connections} connections: {report}; {delivered} delivered{}",
                        after.map_or_else(
                            || " (not all)".to_owned(),
                            |d| format!(" in {:.2} s", d.as_secs_f64())
                        )
                    ),
                    Err(e) => {
                        println!("  warm-up, {connections} connections: FAILED — {e}");
                        break;
                    }
                }
            }
            let rcpt = mailboxes.next().unwrap();
            let (report, delivered, delivered_after) =
                match rt.block_on(measure(&target, &spec(s.messages, rcpt))) {
                    Ok(m) => m,
                    Err(e) => {
                        println!("  {connections} connections: FAILED — {e}");
                        break;
                    }
                };
            let row = Row {
                target: target.name.clone(),
                baseline: target.baseline,
                connections,
                report,
                delivered,
                delivered_after,
            };
            println!(
                "  {connections} connections: {}; delivered {}{}",
                row.report,
                row.delivered,
                row.delivered_per_second()
                    .map_or_else(|| " (NOT ALL)".to_owned(), |r| format!(" = {r:.1}/s"))
            );
            rows.push(row);
        }
        drop(target);
        println!("{name}: stopped");
    }
    print_table(&s, &rows);
}

/// Runs the load and waits until the recipient's mailbox has every accepted message (or nothing
/// arrives for [`STALL`]). Returns the load's report, the messages delivered, and when the last
/// one was seen (from the start of the load; None if not all arrived); an error if no connection
/// could be opened.
async fn measure(
    target: &Target,
    spec: &LoadSpec,
) -> Result<(LoadReport, usize, Option<Duration>), load::LoadError> {
    let rcpt = &spec.to[0];
    let before = (target.count_delivered)(rcpt);
    let start = Instant::now();
    let report = load::run(spec).await?;
    let want = report.outcome.ok;
    let (mut seen, mut last_progress) = (0, Instant::now());
    loop {
        let now = (target.count_delivered)(rcpt).saturating_sub(before);
        let at = start.elapsed();
        if now >= want {
            return Ok((report, now, Some(at)));
        }
        if now > seen {
            (seen, last_progress) = (now, Instant::now());
        } else if last_progress.elapsed() > STALL {
            return Ok((report, now, None));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_table(s: &Settings, rows: &[Row]) {
    println!();
    if rows.is_empty() {
        println!("no target was measured");
        return;
    }
    println!(
        "{} messages of {} octets per run{}",
        s.messages,
        s.size,
        if s.pipelining {
            ", pipelined where offered"
        } else {
            ""
        }
    );
    println!(
        "{:<42} {:>5} {:>11} {:>12} {}",
        "target",
        "conns",
        "accepted/s",
        "delivered/s",
        Outcome::HEADER,
    );
    for r in rows {
        println!(
            "{:<42} {:>5} {:>11.1} {:>12} {}",
            r.target,
            r.connections,
            r.report.per_second,
            r.delivered_per_second()
                .map_or_else(|| format!("{} only", r.delivered), |v| format!("{v:.1}")),
            r.report.outcome.cells(),
        );
        r.report.outcome.print_first_failure();
    }
    // Every other target against the baseline at the same connection count.
    for r in rows.iter().filter(|r| !r.baseline) {
        let Some(base) = rows
            .iter()
            .find(|b| b.baseline && b.connections == r.connections)
        else {
            continue;
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => bench::ratio(a, b),
            _ => "n/a".to_owned(),
        };
        println!(
            "{} / {} at {} connections: delivered {} (goal 2x), accepted {}",
            r.target,
            base.target,
            r.connections,
            ratio(r.delivered_per_second(), base.delivered_per_second()),
            ratio(Some(r.report.per_second), Some(base.report.per_second)),
        );
    }
}

fn settings() -> Settings {
    Settings {
        messages: bench::env_number("BENCH_MESSAGES", 5000),
        connections: bench::env_numbers("BENCH_CONNECTIONS", 20),
        size: bench::env_number("BENCH_SIZE", 1024),
        pipelining: std::env::var("BENCH_PIPELINING").map_or(true, |v| v != "0"),
        warmup: bench::env_number("BENCH_WARMUP", 200),
        filters: bench::target_filters(),
    }
}
