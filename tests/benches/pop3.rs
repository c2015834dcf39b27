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

use wasmail::Service;
use wasmail_e2e::bench::{self, Outcome, PEER_USERS, Row, Settings, measure_each};
use wasmail_e2e::peer;
use wasmail_e2e::pop3_load::{self, Pop3LoadSpec, Pop3Report};

const CMD: &str = "cargo bench -p wasmail-e2e --bench pop3";
/// Target names, for the filters and the table.
const DOVECOT: &str = "Dovecot as shipped";
const DOVECOT_TUNED: &str = "Dovecot tuned";
const WASMAIL: &str = "wasmail";
/// The same server with the cheapest argon2id hashes (m=8 KiB, t=1): the closest wasmail gets to
/// the peer's `{PLAIN}` passwords, so the comparison measures POP3, not password hashing.
const WASMAIL_CHEAP_HASH: &str = "wasmail, cheap hashes";

fn main() {
    let s = Settings::from_env("BENCH_POP3", 20);
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
    if s.shares_users() {
        println!(
            "  note: more than {PEER_USERS} connections share maildrops (the peer has \
             {PEER_USERS} users); a server that locks maildrops answers some logins -ERR [IN-USE]"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let measure = |target, addr, rows: &mut Vec<Row<Pop3Report>>| {
        measure_each(&s, target, rows, |connections, sessions| {
            rt.block_on(pop3_load::run(&Pop3LoadSpec {
                connections,
                sessions,
                ..Pop3LoadSpec::new(addr, users.clone(), peer::PASSWORD, Some(s.messages))
            }))
        });
    };

    // The mail goes in through Postfix once, then Dovecot as shipped and the tuned Dovecot
    // (started after, stopped before the peer) serve it in turn.
    if (s.wants(DOVECOT) || s.wants(DOVECOT_TUNED))
        && let Some(peer) = bench::peer_with_mail(&s, &users, &rt)
    {
        if s.wants(DOVECOT) {
            measure(DOVECOT, peer.pop3_addr(), &mut rows);
        }
        if s.wants(DOVECOT_TUNED) {
            println!("{DOVECOT_TUNED}: starting");
            match peer.start_tuned() {
                Ok(tuned) => {
                    measure(DOVECOT_TUNED, tuned.pop3_addr(), &mut rows);
                    drop(tuned);
                    println!("{DOVECOT_TUNED}: stopped");
                }
                Err(e) => println!("{DOVECOT_TUNED}: SKIPPED — {e}"),
            }
        }
        drop(peer);
        println!("Dovecot: peer stack stopped");
    }
    for (name, cheap_hashes) in [(WASMAIL, false), (WASMAIL_CHEAP_HASH, true)] {
        if !s.wants(name) {
            continue;
        }
        let hash = password_hash(cheap_hashes);
        if let Some((w, pop3)) =
            bench::wasmail_with_mail(name, &s, &users, hash, Service::Pop3, &rt, |_, _| {})
        {
            measure(name, pop3, &mut rows);
            drop(w);
            println!("{name}: stopped");
        }
    }
    print_table(&s, &rows);
}

/// The bench users' password hash: wasmail's default argon2id, or the cheapest one (m=8 KiB,
/// t=1).
fn password_hash(cheap: bool) -> Result<String, String> {
    if cheap {
        use argon2::PasswordHasher as _;
        let params = argon2::Params::new(8, 1, 1, None).map_err(|e| e.to_string())?;
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(peer::PASSWORD.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    } else {
        wasmail::users::hash_password(&wasmail_types::Secret::new(peer::PASSWORD.to_owned()))
            .map_err(|e| e.to_string())
    }
}

fn print_table(s: &Settings, rows: &[Row<Pop3Report>]) {
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
        "{:<20} {:>5} {:>11} {:>8} {:>10} {}",
        "target",
        "conns",
        "sessions/s",
        "MB/s",
        "KB/session",
        Outcome::HEADER,
    );
    for r in rows {
        let per_session = if r.report.outcome.ok > 0 {
            format!(
                "{:.1}",
                r.report.octets as f64 / r.report.outcome.ok as f64 / 1e3
            )
        } else {
            "-".to_owned()
        };
        println!(
            "{:<20} {:>5} {:>11.1} {:>8.1} {:>10} {}",
            r.target,
            r.connections,
            r.report.sessions_per_second,
            r.report.mb_per_second,
            per_session,
            r.report.outcome.cells(),
        );
        r.report.outcome.print_first_failure();
    }
    // wasmail against the tuned Dovecot (the bar) and Dovecot as shipped; the two Dovecots
    // against each other, for scale.
    bench::print_ratios(
        rows,
        &[
            (WASMAIL, DOVECOT_TUNED, " (goal 2x)"),
            (WASMAIL_CHEAP_HASH, DOVECOT_TUNED, " (goal 2x)"),
            (WASMAIL, DOVECOT, ""),
            (DOVECOT, DOVECOT_TUNED, ""),
        ],
        &[
            ("sessions/s", |r: &Pop3Report| r.sessions_per_second),
            ("MB/s", |r: &Pop3Report| r.mb_per_second),
        ],
    );
}
