//! Crash test: SIGKILL a process that is delivering, flagging and expunging, at pseudo-random
//! moments, many times over the same data directory, and check after each kill what the store
//! promises:
//!
//! - every delivery that returned `Ok` is there, under the UID and UIDVALIDITY it was given,
//!   byte for byte, exactly once;
//! - every acknowledged expunge stays done, and every acknowledged flag change stays made (a
//!   change in flight at the kill may or may not have happened);
//! - UIDs are unique, ascending, never reused (`UIDNEXT` stays above everything ever seen);
//! - the index reopens and takes new deliveries;
//! - a message that landed but was never acknowledged (its file moved into the mailbox, its index
//!   record not yet written) is adopted under a new UID with its content intact; every file in
//!   `cur/` and `new/` is one the index lists (no orphan left out, no expunged message's file
//!   left behind or brought back).
//!
//! A second test kills the child while it creates its accounts: every default folder must exist
//! afterwards.
//!
//! The test binary runs itself as the child (`crash_child`, a no-op unless `WASMAIL_CRASH_CHILD`
//! is set). The child prints one line per acknowledged operation; the parent replays those lines
//! into a model and compares the reopened store with it. SIGKILL leaves the page cache alone, so
//! this tests the order in which the store changes files and journal, not whether it fsyncs.
//!
//! Reproduce a failure with the seed it prints: `WASMAIL_CRASH_SEED=<seed> cargo +1.95.0 test -p
//! wasmail-store --test crash -- --nocapture`. `WASMAIL_CRASH_ROUNDS` changes the number of
//! rounds (default 30); `WASMAIL_CRASH_KEEP=1` keeps the data directory even when all is well.

#![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmail_store::{FsStore, StoreConfig};
use wasmail_types::mail::{FlagOp, Flags, MailboxName, SystemFlag, Uid};
use wasmail_types::{DeliveryTarget, MailStore, Mailbox, StoreError};

const CHILD_ENV: &str = "WASMAIL_CRASH_CHILD";
const ROUND_ENV: &str = "WASMAIL_CRASH_ROUND";
const CHILD_SEED_ENV: &str = "WASMAIL_CRASH_CHILD_SEED";
/// The four mailboxes the child writes to.
const BOXES: [(&str, &str); 4] = [
    ("a@x", "INBOX"),
    ("a@x", "Archive"),
    ("b@x", "INBOX"),
    ("b@x", "Archive"),
];
const WRITERS: u32 = 4;
/// The "thread" number of the message the parent delivers after each check.
const PARENT_THREAD: u32 = 99;
const DEFAULT_SEED: u64 = 0x5eed_c0ff_ee15_600d;
const DEFAULT_ROUNDS: u32 = 30;
/// A child that was never killed stops on its own after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

// ---- shared by parent and child -----------------------------------------------------------------

/// xorshift64: small, seedable, good enough to pick delays and targets reproducibly.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Avoid the all-zero state and spread small seeds.
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A 64-bit checksum. `DefaultHasher::new()` hashes alike in every instance of one binary (the
/// parent and the child are the same binary), and std's optimised code keeps it fast in a debug
/// build of this test.
fn checksum(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// Which delivery a message came from: (round, thread, counter).
type MsgId = (u32, u32, u64);

/// The exact octets of message `id`: headers naming it, a checksum of the body, and a body whose
/// length and text follow from the id (a few are over 64 KiB).
fn message(id: MsgId) -> Vec<u8> {
    let (round, thread, counter) = id;
    let mut rng = XorShift::new(u64::from(round) << 40 ^ u64::from(thread) << 32 ^ counter);
    let len = if counter % 40 == 7 {
        64 * 1024 + rng.below(8192)
    } else {
        100 + rng.below(3000)
    } as usize;
    let mut body = Vec::with_capacity(len + 100);
    while body.len() < len {
        // Lines of 16 to 80 letters, eight letters per random number.
        for _ in 0..2 + rng.below(9) {
            let word = rng.next().to_le_bytes().map(|b| b'a' + b % 26);
            body.extend_from_slice(&word);
        }
        body.extend_from_slice(b"\r\n");
    }
    let mut out = format!(
        "Message-ID: <r{round}.t{thread}.c{counter}@crash.test>\r\nSubject: crash r{round} t{thread} c{counter}\r\n\
         X-Crash-Id: {round} {thread} {counter}\r\nX-Crash-Sum: {:016x} {}\r\n\r\n",
        checksum(&body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Reads the id of a stored message and checks its body against the checksum in its header.
fn parse_message(bytes: &[u8]) -> Result<MsgId, String> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of header")?;
    let head = std::str::from_utf8(&bytes[..split]).map_err(|_| "header not UTF-8")?;
    let body = &bytes[split + 4..];
    let field = |name: &str| -> Result<Vec<&str>, String> {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect())
            .ok_or(format!("no {name} header"))
    };
    let id = field("X-Crash-Id: ")?;
    let sum = field("X-Crash-Sum: ")?;
    let bad = |what: &str| format!("bad {what} in {head:?}");
    let id: MsgId = match id[..] {
        [r, t, c] => (
            r.parse().map_err(|_| bad("id"))?,
            t.parse().map_err(|_| bad("id"))?,
            c.parse().map_err(|_| bad("id"))?,
        ),
        _ => return Err(bad("id")),
    };
    let [sum, len] = sum[..] else {
        return Err(bad("checksum"));
    };
    if len != body.len().to_string() {
        return Err(format!(
            "message {id:?}: body is {} octets, header says {len}",
            body.len()
        ));
    }
    if sum != format!("{:016x}", checksum(body)) {
        return Err(format!("message {id:?}: body checksum mismatch"));
    }
    Ok(id)
}

fn mailbox_name(name: &str) -> MailboxName {
    MailboxName::new(name).expect("test mailbox names are valid")
}

fn box_index(account: &str, mailbox: &str) -> Option<usize> {
    BOXES
        .iter()
        .position(|&(a, m)| a == account && m == mailbox)
}

// ---- the child -------------------------------------------------------------------------------------

/// Writes `text` (whole lines) to stdout at once and flushes, so a kill never splits a line that
/// the parent would then believe.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn uid_list(uids: &[Uid]) -> String {
    uids.iter()
        .map(|u| u.get().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The child: four writers and one flag/expunge thread, forever (until SIGKILL).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let round: u32 = std::env::var(ROUND_ENV)
        .expect("round")
        .parse()
        .expect("round number");
    let seed: u64 = std::env::var(CHILD_SEED_ENV)
        .expect("seed")
        .parse()
        .expect("seed number");
    let deadline = Instant::now() + CHILD_LIFETIME;
    // libtest may have written "test crash_child ... " without a newline.
    emit("\nSTART\n");
    let store = match FsStore::open(Path::new(&dir), StoreConfig { fsync: true }) {
        Ok(s) => s,
        Err(e) => {
            emit(&format!("ERR open store: {e}\n"));
            return;
        }
    };
    std::thread::scope(|s| {
        for thread in 0..WRITERS {
            let store = &store;
            s.spawn(move || writer(store, round, thread, seed ^ u64::from(thread + 1), deadline));
        }
        s.spawn(|| flagger(&store, seed.rotate_left(17), deadline));
    });
    emit("DONE\n");
}

fn writer(store: &FsStore, round: u32, thread: u32, seed: u64, deadline: Instant) {
    let mut rng = XorShift::new(seed);
    let mut counter = 0u64;
    while Instant::now() < deadline {
        counter += 1;
        let content = message((round, thread, counter));
        let mut order = [0usize, 1, 2, 3];
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let n = 1 + rng.below(3) as usize;
        let targets: Vec<DeliveryTarget> = order[..n]
            .iter()
            .map(|&b| DeliveryTarget {
                account: BOXES[b].0.to_owned(),
                mailbox: mailbox_name(BOXES[b].1),
                // Flagged deliveries go straight to cur/, the rest to new/.
                flags: match rng.below(8) {
                    0 => Flags::from_system(&[SystemFlag::Seen]),
                    1 => Flags::from_system(&[SystemFlag::Seen, SystemFlag::Flagged]),
                    _ => Flags::new(),
                },
            })
            .collect();
        match store.deliver_bytes(&content, &targets) {
            Ok(delivered) => {
                let mut text = String::new();
                for d in &delivered {
                    let flags = targets
                        .iter()
                        .find(|t| t.account == d.account && t.mailbox == d.mailbox)
                        .map_or(255, |t| t.flags.system_bits());
                    let _ = writeln!(
                        text,
                        "ACK {} {} {} {} {thread} {counter} {flags}",
                        d.account,
                        d.mailbox.as_str(),
                        d.uid,
                        d.uid_validity
                    );
                }
                if delivered.len() != targets.len() {
                    let _ = writeln!(
                        text,
                        "ERR delivery t{thread} c{counter}: {} targets, {} delivered",
                        targets.len(),
                        delivered.len()
                    );
                }
                emit(&text);
            }
            Err(e) => emit(&format!("ERR deliver t{thread} c{counter}: {e}\n")),
        }
    }
}

/// Sets and clears flags on runs of older messages, deletes and expunges a few, claims \Recent:
/// every kind of journal record (compaction adds checkpoints once enough flag records pile up).
fn flagger(store: &FsStore, seed: u64, deadline: Instant) {
    let mut rng = XorShift::new(seed);
    let mut boxes: Vec<(&str, &str, Arc<dyn Mailbox>)> = Vec::new();
    for (account, name) in BOXES {
        match store
            .account(account)
            .and_then(|a| a.open(&mailbox_name(name)))
        {
            Ok(m) => boxes.push((account, name, m)),
            Err(e) => {
                emit(&format!("ERR flagger open {account} {name}: {e}\n"));
                return;
            }
        }
    }
    while Instant::now() < deadline {
        let (account, name, mailbox) = &boxes[rng.below(4) as usize];
        let messages = match mailbox.messages() {
            Ok(m) => m,
            Err(e) => {
                emit(&format!("ERR messages {account} {name}: {e}\n"));
                continue;
            }
        };
        if messages.len() < 8 {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let older = &messages[..messages.len() * 3 / 4];
        match rng.below(10) {
            0..=5 => {
                let start = rng.below(older.len() as u64) as usize;
                let end = (start + 1 + rng.below(48) as usize).min(older.len());
                let uids: Vec<Uid> = older[start..end].iter().map(|m| m.uid).collect();
                let bits = rng.below(32) as u8 & !(SystemFlag::Deleted as u8);
                emit(&format!(
                    "FREQ {account} {name} R {bits} {}\n",
                    uid_list(&uids)
                ));
                match mailbox.store_flags(&uids, FlagOp::Replace, &Flags::from_bits(bits), None) {
                    Ok(u) => {
                        let done: Vec<Uid> = u.updated.iter().map(|m| m.uid).collect();
                        emit(&format!(
                            "FLG {account} {name} R {bits} {}\n",
                            uid_list(&done)
                        ));
                    }
                    Err(e) => emit(&format!("ERR store_flags {account} {name}: {e}\n")),
                }
            }
            6..=8 => {
                let mut uids: Vec<Uid> = (0..1 + rng.below(4))
                    .map(|_| older[rng.below(older.len() as u64) as usize].uid)
                    .collect();
                // Now and then the newest message too: UIDNEXT must not fall back to the
                // highest UID left.
                if rng.below(4) == 0 {
                    uids.extend(messages.last().map(|m| m.uid));
                }
                uids.sort_unstable();
                uids.dedup();
                let deleted = SystemFlag::Deleted as u8;
                emit(&format!(
                    "FREQ {account} {name} A {deleted} {}\n",
                    uid_list(&uids)
                ));
                match mailbox.store_flags(&uids, FlagOp::Add, &Flags::from_bits(deleted), None) {
                    Ok(u) => {
                        let done: Vec<Uid> = u.updated.iter().map(|m| m.uid).collect();
                        emit(&format!(
                            "FLG {account} {name} A {deleted} {}\n",
                            uid_list(&done)
                        ));
                    }
                    Err(e) => {
                        emit(&format!("ERR store_flags {account} {name}: {e}\n"));
                        continue;
                    }
                }
                emit(&format!("XREQ {account} {name} {}\n", uid_list(&uids)));
                match mailbox.expunge(Some(&uids)) {
                    Ok(gone) => {
                        let text: String = gone
                            .iter()
                            .map(|u| format!("EXP {account} {name} {u}\n"))
                            .collect();
                        emit(&text);
                    }
                    Err(e) => emit(&format!("ERR expunge {account} {name}: {e}\n")),
                }
            }
            _ => {
                if let Err(e) = mailbox.claim_recent().and_then(|_| mailbox.refresh()) {
                    emit(&format!("ERR claim_recent {account} {name}: {e}\n"));
                }
            }
        }
    }
}

// ---- the parent ------------------------------------------------------------------------------------

/// A message the parent knows must be in a mailbox.
#[derive(Debug)]
struct Known {
    id: MsgId,
    /// Acknowledged by a delivery (else: found at a check, e.g. adopted after a crash).
    acked: bool,
    flags: u8,
    /// Flags of a change that was asked for but not acknowledged when the child died.
    pending_flags: Option<u8>,
    /// An expunge was asked for but not acknowledged when the child died.
    expunge_pending: bool,
    /// Checksum of the content once compared byte for byte, so that later checks need not
    /// regenerate it.
    verified: Option<u64>,
}

#[derive(Debug, Default)]
struct BoxModel {
    uid_validity: Option<u32>,
    msgs: BTreeMap<u32, Known>,
    /// UIDs whose expunge was acknowledged: they must never be listed again.
    expunged: HashSet<u32>,
    /// UIDNEXT at the last check: every UID assigned since is at least this.
    uid_floor: u32,
    /// The highest UID ever acknowledged or listed.
    max_uid: u32,
    /// Messages (by id) that were expunged from this mailbox.
    gone_ids: HashSet<MsgId>,
    /// Message id of each file name seen in cur/ and new/ (files are renamed, never rewritten).
    file_ids: HashMap<PathBuf, Option<MsgId>>,
}

#[derive(Debug, Default)]
struct Stats {
    acks: u64,
    expunges: u64,
    flag_changes: u64,
    adopted: u64,
    rounds_adopted: u32,
    ack_line_lost: u64,
    rounds_torn: u32,
    torn_bytes: u64,
    inflight_expunge_done: u64,
    /// In-flight expunges whose file was gone but whose UID was still listed after the kill.
    inflight_flags_done: u64,
    /// Message files in cur/ and new/ beyond what the index lists, at the last check.
    unindexed_files: u64,
    record_kinds: [u64; 6],
    rounds_without_acks: u32,
    max_messages: usize,
    verify_time: Duration,
}

fn journal_path(data: &Path, account: &str, mailbox: &str) -> PathBuf {
    let root = data.join("accounts").join(account);
    if mailbox == "INBOX" {
        root.join("wasmail-index")
    } else {
        root.join(format!(".{mailbox}")).join("wasmail-index")
    }
}

struct JournalInfo {
    /// Records by tag (1 append, 2 flags, 3 expunge, 4 recent, 5 checkpoint).
    kinds: [u64; 6],
    /// Bytes at the end that are not a complete, checksummed record.
    torn_bytes: u64,
    max_append_uid: u32,
}

/// Walks a journal's frames (format in journal.rs) without the store's code.
fn inspect_journal(path: &Path) -> JournalInfo {
    let mut info = JournalInfo {
        kinds: [0; 6],
        torn_bytes: 0,
        max_append_uid: 0,
    };
    let Ok(bytes) = std::fs::read(path) else {
        return info;
    };
    let mut pos = 16;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 8 {
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(payload) = rest.get(8..8 + len) else {
            break;
        };
        if len == 0 || crc32fast::hash(payload) != crc {
            break;
        }
        info.kinds[usize::from(payload[0]).min(5)] += 1;
        if payload[0] == 1 && payload.len() >= 5 {
            let uid = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
            info.max_append_uid = info.max_append_uid.max(uid);
        }
        pos += 8 + len;
    }
    info.torn_bytes = bytes.len().saturating_sub(pos) as u64;
    info
}

/// Names of the message files in a mailbox's `cur/` and `new/`, and how many files are in `tmp/`.
fn message_files(data: &Path, account: &str, mailbox: &str) -> (Vec<PathBuf>, usize) {
    let dir = journal_path(data, account, mailbox)
        .parent()
        .expect("journal has a parent")
        .to_owned();
    let list = |sub: &str| -> Vec<PathBuf> {
        std::fs::read_dir(dir.join(sub))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut files = list("cur");
    files.extend(list("new"));
    (files, list("tmp").len())
}

struct Round<'a> {
    round: u32,
    data: &'a Path,
    failures: Vec<String>,
}

impl Round<'_> {
    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }
}

fn parse_uids(s: &str) -> Vec<u32> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .filter_map(|x| x.parse().ok())
        .collect()
}

fn apply_flags(op: &str, bits: u8, current: u8) -> u8 {
    match op {
        "A" => current | bits,
        _ => bits,
    }
}

/// Replays the child's output into the model.
fn replay(
    r: &mut Round<'_>,
    model: &mut [BoxModel; 4],
    stats: &mut Stats,
    lines: &[String],
) -> u64 {
    let mut acks = 0u64;
    // Acknowledged deliveries first: their ACK line may come after a flag change or expunge of
    // the same message (the writer prints after `deliver` returns), and the flags a message was
    // delivered with come before any change anyway.
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        if f[0] != "ACK" {
            continue;
        }
        let parsed = (|| {
            let b = box_index(f.get(1)?, f.get(2)?)?;
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            Some((
                b,
                n(3)? as u32,
                n(4)? as u32,
                n(5)? as u32,
                n(6)?,
                n(7)? as u8,
            ))
        })();
        let Some((b, uid, uidv, thread, counter, flags)) = parsed else {
            r.fail(format!("unparsable child line {line:?}"));
            continue;
        };
        acks += 1;
        let m = &mut model[b];
        if *m.uid_validity.get_or_insert(uidv) != uidv {
            r.fail(format!(
                "{line:?}: UIDVALIDITY changed from {:?}",
                m.uid_validity
            ));
        }
        if uid < m.uid_floor {
            r.fail(format!(
                "{line:?}: UID {uid} is below UIDNEXT {} seen at the last check (reused)",
                m.uid_floor
            ));
        }
        if let Some(k) = m.msgs.get(&uid) {
            r.fail(format!("{line:?}: UID {uid} already holds {:?}", k.id));
        }
        m.max_uid = m.max_uid.max(uid);
        m.msgs.insert(
            uid,
            Known {
                id: (r.round, thread, counter),
                acked: true,
                flags,
                pending_flags: None,
                expunge_pending: false,
                verified: None,
            },
        );
    }
    stats.acks += acks;
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "ACK" | "START" | "DONE" => {}
            "ERR" => r.fail(format!("child reported an error: {line}")),
            "FREQ" | "FLG" if f.len() == 6 => {
                let Some(b) = box_index(f[1], f[2]) else {
                    continue;
                };
                let Ok(bits) = f[4].parse::<u8>() else {
                    continue;
                };
                for uid in parse_uids(f[5]) {
                    // Messages the parent does not know yet (unacknowledged) are checked only for
                    // content at the next check.
                    let Some(k) = model[b].msgs.get_mut(&uid) else {
                        continue;
                    };
                    let new = apply_flags(f[3], bits, k.flags);
                    if f[0] == "FREQ" {
                        k.pending_flags = Some(new);
                    } else {
                        k.flags = new;
                        k.pending_flags = None;
                        stats.flag_changes += 1;
                    }
                }
            }
            "XREQ" if f.len() == 4 => {
                let Some(b) = box_index(f[1], f[2]) else {
                    continue;
                };
                for uid in parse_uids(f[3]) {
                    if let Some(k) = model[b].msgs.get_mut(&uid) {
                        k.expunge_pending = true;
                    }
                }
            }
            "EXP" if f.len() == 4 => {
                let (Some(b), Ok(uid)) = (box_index(f[1], f[2]), f[3].parse::<u32>()) else {
                    continue;
                };
                if let Some(k) = model[b].msgs.remove(&uid) {
                    model[b].gone_ids.insert(k.id);
                }
                model[b].expunged.insert(uid);
                stats.expunges += 1;
            }
            // Anything else is libtest chatter ("running 1 test", "test crash_child ... ").
            _ if line.contains("ACK ") || line.contains("EXP ") || line.contains("FLG ") => {
                r.fail(format!("child line mangled: {line:?}"));
            }
            _ => {}
        }
    }
    acks
}

/// Opens the store afresh and compares every mailbox with the model.
/// `journal_max`: the highest UID each journal held before this process opened it; a UID above
/// it was given at this open, to an adopted orphan.
fn check(
    r: &mut Round<'_>,
    store: &FsStore,
    model: &mut [BoxModel; 4],
    stats: &mut Stats,
    journal_max: &[u32; 4],
) {
    stats.unindexed_files = 0;
    for (b, &(account, name)) in BOXES.iter().enumerate() {
        let m = &mut model[b];
        let mailbox = match store
            .account(account)
            .and_then(|a| a.open(&mailbox_name(name)))
        {
            Ok(mb) => mb,
            Err(e) => {
                r.fail(format!(
                    "{account} {name}: cannot open after the crash: {e}"
                ));
                continue;
            }
        };
        let (status, list) = match (mailbox.status(), mailbox.messages()) {
            (Ok(s), Ok(l)) => (s, l),
            (Err(e), _) | (_, Err(e)) => {
                r.fail(format!("{account} {name}: status/messages failed: {e}"));
                continue;
            }
        };
        stats.max_messages = stats.max_messages.max(list.len());
        let uidv = status.uid_validity.get();
        if *m.uid_validity.get_or_insert(uidv) != uidv {
            r.fail(format!(
                "{account} {name}: UIDVALIDITY is {uidv}, was {:?}",
                m.uid_validity
            ));
        }
        if let Some(w) = list.windows(2).find(|w| w[0].uid >= w[1].uid) {
            r.fail(format!(
                "{account} {name}: UIDs not strictly ascending: {} then {}",
                w[0].uid, w[1].uid
            ));
        }
        if status.messages as usize != list.len() {
            r.fail(format!(
                "{account} {name}: status says {} messages, listing has {}",
                status.messages,
                list.len()
            ));
        }
        let uid_next = status.uid_next.get();
        let last = list.last().map_or(0, |x| x.uid.get());
        if uid_next <= last || uid_next <= m.max_uid || uid_next < m.uid_floor {
            r.fail(format!(
                "{account} {name}: UIDNEXT {uid_next} not above last UID {last} / highest UID ever seen {} / previous UIDNEXT {}",
                m.max_uid, m.uid_floor
            ));
        }
        let listed: HashSet<u32> = list.iter().map(|x| x.uid.get()).collect();
        // Everything the model holds must still be there, unless its expunge was in flight.
        let missing: Vec<u32> = m
            .msgs
            .keys()
            .copied()
            .filter(|u| !listed.contains(u))
            .collect();
        for uid in missing {
            let k = &m.msgs[&uid];
            if k.expunge_pending {
                stats.inflight_expunge_done += 1;
                m.gone_ids.insert(k.id);
                m.msgs.remove(&uid);
            } else {
                r.fail(format!(
                    "{account} {name}: UID {uid} ({}, id {:?}) is gone (no expunge was asked for)",
                    if k.acked {
                        "acknowledged delivery"
                    } else {
                        "seen at an earlier check"
                    },
                    k.id
                ));
            }
        }
        let mut ids: HashMap<MsgId, u32> = HashMap::new();
        for meta in &list {
            let uid = meta.uid.get();
            if m.expunged.contains(&uid) {
                r.fail(format!(
                    "{account} {name}: UID {uid} is listed again after an acknowledged expunge"
                ));
            }
            let content = match mailbox.open_message(meta.uid).map(|c| c.read_all()) {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    r.fail(format!("{account} {name}: UID {uid}: read failed: {e}"));
                    continue;
                }
                Err(e) => {
                    // An interrupted expunge is resolved at open (the file is put back or
                    // deleted with its record), so a listed message always has its file.
                    let gone_now =
                        matches!(mailbox.message(meta.uid), Err(StoreError::NoSuchMessage(_)));
                    r.fail(format!(
                        "{account} {name}: UID {uid} is listed but its file cannot be opened: {e} (model: {:?}; \
                         still listed after the failed open: {}; files in cur/ and new/: {})",
                        m.msgs.get(&uid),
                        !gone_now,
                        m_files_hint(r.data, account, name)
                    ));
                    continue;
                }
            };
            if meta.size != content.len() as u64 {
                r.fail(format!(
                    "{account} {name}: UID {uid}: index size {} but content is {} octets",
                    meta.size,
                    content.len()
                ));
            }
            let id = match parse_message(&content) {
                Ok(id) => id,
                Err(e) => {
                    r.fail(format!("{account} {name}: UID {uid}: content damaged: {e}"));
                    continue;
                }
            };
            if let Some(other) = ids.insert(id, uid) {
                r.fail(format!(
                    "{account} {name}: message {id:?} is stored twice, UIDs {other} and {uid}"
                ));
            }
            let bits = meta.flags.system_bits();
            if !meta.flags.keywords().is_empty() {
                r.fail(format!(
                    "{account} {name}: UID {uid} has keywords {:?}; none were set",
                    meta.flags.keywords()
                ));
            }
            match m.msgs.get_mut(&uid) {
                Some(k) => {
                    if k.id != id {
                        r.fail(format!(
                            "{account} {name}: UID {uid} holds {id:?}, expected {:?}",
                            k.id
                        ));
                    } else if let Some(sum) = k.verified {
                        if sum != checksum(&content) {
                            r.fail(format!("{account} {name}: UID {uid} ({id:?}): content changed since the last check"));
                        }
                    } else if k.acked && content != message(id) {
                        r.fail(format!("{account} {name}: UID {uid} ({id:?}): content differs from what was delivered"));
                    } else {
                        k.verified = Some(checksum(&content));
                    }
                    if bits != k.flags {
                        if k.pending_flags == Some(bits) {
                            stats.inflight_flags_done += 1;
                        } else {
                            r.fail(format!(
                                "{account} {name}: UID {uid} ({id:?}) has flags {bits}, acknowledged {} (in flight: {:?})",
                                k.flags, k.pending_flags
                            ));
                        }
                    }
                    k.flags = bits;
                    k.pending_flags = None;
                    k.expunge_pending = false;
                }
                None => {
                    // Never acknowledged: the ACK line died with the child, or a file in new/ was
                    // adopted after the crash. Either way it must carry a fresh UID.
                    if uid < m.uid_floor {
                        r.fail(format!(
                            "{account} {name}: unacknowledged UID {uid} ({id:?}) is below UIDNEXT {} of the last check",
                            m.uid_floor
                        ));
                    }
                    if m.gone_ids.contains(&id) {
                        r.fail(format!(
                            "{account} {name}: expunged message {id:?} came back as UID {uid}"
                        ));
                    } else if id.0 != r.round {
                        r.fail(format!("{account} {name}: UID {uid} holds {id:?} from an earlier round, first seen now"));
                    }
                    if content != message(id) {
                        r.fail(format!("{account} {name}: unacknowledged UID {uid} ({id:?}): content is not what was sent"));
                    }
                    if uid > journal_max[b] {
                        stats.adopted += 1;
                    } else {
                        stats.ack_line_lost += 1;
                    }
                    m.msgs.insert(
                        uid,
                        Known {
                            id,
                            acked: false,
                            flags: bits,
                            pending_flags: None,
                            expunge_pending: false,
                            verified: Some(checksum(&content)),
                        },
                    );
                }
            }
            m.max_uid = m.max_uid.max(uid);
        }
        m.uid_floor = uid_next;
        // Every message file in cur/ and new/ must be one the index lists: an orphan is adopted
        // at open (or removed), an expunged message's file is removed.
        let (files, _) = message_files(r.data, account, name);
        if files.len() > list.len() {
            stats.unindexed_files += (files.len() - list.len()) as u64;
            let mut left_behind = Vec::new();
            let mut not_adopted = Vec::new();
            for file in files {
                let id = *m
                    .file_ids
                    .entry(file.clone())
                    .or_insert_with(|| header_id(&file));
                let Some(id) = id else {
                    r.fail(format!(
                        "{account} {name}: {} is not a message of this test",
                        file.display()
                    ));
                    continue;
                };
                if ids.contains_key(&id) {
                    continue;
                }
                if m.gone_ids.contains(&id) {
                    left_behind.push(format!("{} {id:?}", file.display()));
                } else {
                    not_adopted.push(format!("{} {id:?}", file.display()));
                }
            }
            if !not_adopted.is_empty() {
                r.fail(format!(
                    "{account} {name}: {} message file(s) in the mailbox that the index never took in (not adopted), e.g. {:?}",
                    not_adopted.len(),
                    &not_adopted[..not_adopted.len().min(3)]
                ));
            }
            if !left_behind.is_empty() {
                r.fail(format!(
                    "{account} {name}: {} file(s) of expunged messages left behind, e.g. {:?}",
                    left_behind.len(),
                    &left_behind[..left_behind.len().min(3)]
                ));
            }
        }
    }
}

/// The id in a message file's header, without checking the body.
fn header_id(path: &Path) -> Option<MsgId> {
    let mut head = vec![0; 512];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    let head = String::from_utf8_lossy(&head[..n]);
    let id = head.lines().find_map(|l| l.strip_prefix("X-Crash-Id: "))?;
    let mut parts = id.split_whitespace();
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

fn m_files_hint(data: &Path, account: &str, name: &str) -> usize {
    message_files(data, account, name).0.len()
}

/// The parent delivers one message itself: the store must still work, with a fresh UID.
fn deliver_after(r: &mut Round<'_>, store: &FsStore, model: &mut [BoxModel; 4], stats: &mut Stats) {
    let id = (r.round, PARENT_THREAD, 0);
    let targets: Vec<DeliveryTarget> = BOXES
        .iter()
        .map(|&(a, m)| DeliveryTarget {
            account: a.to_owned(),
            mailbox: mailbox_name(m),
            flags: Flags::new(),
        })
        .collect();
    match store.deliver_bytes(&message(id), &targets) {
        Ok(delivered) => {
            for d in delivered {
                let Some(b) = box_index(&d.account, d.mailbox.as_str()) else {
                    continue;
                };
                let m = &mut model[b];
                let uid = d.uid.get();
                if uid < m.uid_floor
                    || uid <= m.max_uid
                    || Some(d.uid_validity.get()) != m.uid_validity
                {
                    r.fail(format!(
                        "{} {}: delivery after recovery got UID {uid} (UIDVALIDITY {}), highest seen {}, UIDNEXT {} ({:?})",
                        d.account, d.mailbox, d.uid_validity, m.max_uid, m.uid_floor, m.uid_validity
                    ));
                }
                m.max_uid = m.max_uid.max(uid);
                m.uid_floor = m.uid_floor.max(uid + 1);
                m.msgs.insert(
                    uid,
                    Known {
                        id,
                        acked: true,
                        flags: 0,
                        pending_flags: None,
                        expunge_pending: false,
                        verified: None,
                    },
                );
                stats.acks += 1;
            }
        }
        Err(e) => r.fail(format!("delivery after recovery failed: {e}")),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn acknowledged_mail_survives_sigkill() {
    let seed: u64 = env_or("WASMAIL_CRASH_SEED", DEFAULT_SEED);
    let rounds: u32 = env_or("WASMAIL_CRASH_ROUNDS", DEFAULT_ROUNDS);
    let dir = tempfile::Builder::new()
        .prefix("crash-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create data dir under target/tmp");
    let data = dir.path().to_owned();
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = XorShift::new(seed);
    let mut model: [BoxModel; 4] = Default::default();
    let mut stats = Stats::default();
    let started = Instant::now();
    println!(
        "crash test: seed {seed}, {rounds} rounds, data dir {}",
        data.display()
    );

    for round in 1..=rounds {
        let delay = Duration::from_millis(20 + rng.below(381));
        let child_seed = rng.next();
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &data)
            .env(ROUND_ENV, round.to_string())
            .env(CHILD_SEED_ENV, child_seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let out_reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            // Only complete lines count: a line cut by the kill was never meant to be read.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(l) = line.strip_suffix('\n') {
                    lines.push(l.to_owned());
                }
                line.clear();
            }
            lines
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait for child");
        let lines = out_reader.join().expect("stdout reader");
        let stderr_text = err_reader.join().expect("stderr reader");

        let mut r = Round {
            round,
            data: &data,
            failures: Vec::new(),
        };
        if status.signal() != Some(9) {
            r.fail(format!(
                "child was not killed but ended by itself: {status}; stdout tail {:?}",
                lines.iter().rev().take(5).collect::<Vec<_>>()
            ));
        }
        if stderr_text.contains("panicked") {
            r.fail(format!("child panicked:\n{stderr_text}"));
        }
        let acks = replay(&mut r, &mut model, &mut stats, &lines);
        if acks == 0 {
            stats.rounds_without_acks += 1;
        }

        // Before the store opens (and cuts torn tails): what the journals look like.
        let mut torn = 0;
        let mut journal_max = [0u32; 4];
        for (b, (account, name)) in BOXES.into_iter().enumerate() {
            let j = inspect_journal(&journal_path(&data, account, name));
            torn += j.torn_bytes;
            journal_max[b] = j.max_append_uid;
        }
        if torn > 0 {
            stats.rounds_torn += 1;
            stats.torn_bytes += torn;
        }

        let t = Instant::now();
        match FsStore::open(&data, StoreConfig { fsync: true }) {
            Ok(store) => {
                let adopted_before = stats.adopted;
                check(&mut r, &store, &mut model, &mut stats, &journal_max);
                if stats.adopted > adopted_before {
                    stats.rounds_adopted += 1;
                }
                deliver_after(&mut r, &store, &mut model, &mut stats);
            }
            Err(e) => r.fail(format!("store does not open after the crash: {e}")),
        }
        stats.verify_time += t.elapsed();

        if !r.failures.is_empty() {
            let kept = dir.keep();
            panic!(
                "crash test failed in round {round} (seed {seed}, kill after {delay:?}, {acks} ACKs this round; \
                 rerun with WASMAIL_CRASH_SEED={seed}); data dir kept at {}:\n  - {}",
                kept.display(),
                r.failures.join("\n  - ")
            );
        }
    }

    for (account, name) in BOXES {
        let j = inspect_journal(&journal_path(&data, account, name));
        for (total, k) in stats.record_kinds.iter_mut().zip(j.kinds) {
            *total += k;
        }
        let (_, tmp) = message_files(&data, account, name);
        if tmp > 0 {
            println!(
                "  {account} {name}: {tmp} file(s) left in tmp/ (younger than the 1 h clean-up age)"
            );
        }
    }
    println!(
        "crash test: {rounds} rounds in {:.1?} (checks {:.1?}); {} deliveries acknowledged, {} flag changes, {} expunges; \
         largest mailbox {} messages",
        started.elapsed(),
        stats.verify_time,
        stats.acks,
        stats.flag_changes,
        stats.expunges,
        stats.max_messages
    );
    println!(
        "  unacknowledged messages found: {} adopted orphans (in {} rounds), {} indexed but their ACK line cut by the kill",
        stats.adopted, stats.rounds_adopted, stats.ack_line_lost
    );
    println!(
        "  in flight at the kill and done after it: {} expunges, {} flag changes",
        stats.inflight_expunge_done, stats.inflight_flags_done
    );
    println!(
        "  torn index tails: {} rounds ({} bytes); rounds without an ACK: {}; unindexed files in cur/ and new/: {}",
        stats.rounds_torn, stats.torn_bytes, stats.rounds_without_acks, stats.unindexed_files
    );
    let [_, append, flags, expunge, recent, checkpoint] = stats.record_kinds;
    println!(
        "  journal records now: {append} append, {flags} flags, {expunge} expunge, {recent} recent, {checkpoint} checkpoint"
    );
    assert!(stats.acks > 0, "the child never acknowledged a delivery");
    if std::env::var_os("WASMAIL_CRASH_KEEP").is_some() {
        println!("  data dir kept at {}", dir.keep().display());
    }
}

/// Killing the child in its first moments, while it creates its two accounts on a fresh data dir,
/// must not leave a half-made account: afterwards every default folder opens and takes mail.
#[test]
fn account_creation_survives_sigkill() {
    let seed: u64 = env_or("WASMAIL_CRASH_SEED", DEFAULT_SEED) ^ 0xacc0_u64;
    let tries: u32 = env_or("WASMAIL_CRASH_CREATE_TRIES", 16);
    let exe = std::env::current_exe().expect("test binary path");
    let mut rng = XorShift::new(seed);
    let mut outcomes = Vec::new();
    for attempt in 1..=tries {
        let dir = tempfile::Builder::new()
            .prefix("crash-create-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create data dir under target/tmp");
        let data = dir.path();
        let delay = Duration::from_millis(2 + rng.below(60));
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, data)
            .env(ROUND_ENV, "1")
            .env(CHILD_SEED_ENV, rng.next().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().expect("wait for child");

        // How far the child got: accounts whose directory exists, and their folders.
        let mut seen = Vec::new();
        for (account, _) in [BOXES[0], BOXES[2]] {
            let root = data.join("accounts").join(account);
            if root.exists() {
                let folders = std::fs::read_dir(&root)
                    .map(|rd| {
                        rd.flatten()
                            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                            .count()
                    })
                    .unwrap_or(0);
                seen.push(format!("{account}: {folders} folder dirs"));
            }
        }
        outcomes.push(format!("{delay:?} -> [{}]", seen.join(", ")));

        let mut failures = Vec::new();
        match FsStore::open(data, StoreConfig { fsync: true }) {
            Ok(store) => {
                for (account, _) in [BOXES[0], BOXES[2]] {
                    let acc = match store.account(account) {
                        Ok(a) => a,
                        Err(e) => {
                            failures.push(format!("{account}: account does not open: {e}"));
                            continue;
                        }
                    };
                    let names = std::iter::once("INBOX")
                        .chain(wasmail_store::DEFAULT_FOLDERS.iter().map(|(n, _)| *n));
                    for name in names {
                        if let Err(e) = acc.open(&mailbox_name(name)) {
                            failures.push(format!("{account}: folder {name} does not open: {e}"));
                        }
                    }
                }
                let targets: Vec<DeliveryTarget> = BOXES
                    .iter()
                    .map(|&(a, m)| DeliveryTarget {
                        account: a.to_owned(),
                        mailbox: mailbox_name(m),
                        flags: Flags::new(),
                    })
                    .collect();
                if let Err(e) = store.deliver_bytes(&message((0, PARENT_THREAD, 0)), &targets) {
                    failures.push(format!("delivery after the crash failed: {e}"));
                }
            }
            Err(e) => failures.push(format!("store does not open: {e}")),
        }
        if !failures.is_empty() {
            let mut listing = String::new();
            for (account, _) in [BOXES[0], BOXES[2]] {
                let root = data.join("accounts").join(account);
                let mut names: Vec<String> = std::fs::read_dir(&root)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                let meta =
                    std::fs::read_to_string(root.join("wasmail-account")).unwrap_or_default();
                let _ = write!(
                    listing,
                    "\n  accounts/{account}/: {names:?}\n  wasmail-account: {meta:?}"
                );
            }
            let kept = dir.keep();
            panic!(
                "attempt {attempt} (seed {seed}, kill after {delay:?}; rerun with WASMAIL_CRASH_SEED={}): data dir kept at {}:\n  - {}{listing}",
                seed ^ 0xacc0,
                kept.display(),
                failures.join("\n  - ")
            );
        }
    }
    println!("account creation kills: {}", outcomes.join("; "));
}
