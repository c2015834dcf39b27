//! One mailbox: its Maildir directory, its journal, its in-memory state, and group commit.
//!
//! ```text
//!  session A ─┐                       ┌─ leader (whichever waiter finds no flush running):
//!  session B ─┼─ enqueue(op) ─ queue ─┤   flock(dir) · read other processes' records ·
//!  delivery  ─┘      wait ◄───────────┤   plan ops against the state · renames/unlinks ·
//!                                     │   fsync dirs · write records · fdatasync · unflock ·
//!                                     └─  apply to state · wake waiters · tell listeners
//! ```
//!
//! Invariants:
//! - Only the leader (`Inner::flushing`) writes the journal or changes the state, so a plan made
//!   against the state stays valid until it is applied.
//! - The state shows a change only after its record is durable: no session can see (and report
//!   to a client) a UID or MODSEQ that a crash could take back.
//! - Message files are moved into `new/`/`cur/` only by the leader, under the lock, just before
//!   the journal write; so a file in `new/` that the index does not know, seen under the lock, is
//!   a crash leftover (or an outside delivery) and is adopted.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use cap_std::fs::{Dir, File, OpenOptions};
use rustix::fs::{FlockOperation, flock};
use wasmail_types::mail::{
    Changes, FlagOp, Flags, InternalDate, MailboxName, MailboxStatus, MessageMeta, ModSeq,
    SystemFlag, Uid, UidValidity,
};
use wasmail_types::{ChangeListener, FlagUpdate, MessageContent, StoreError, StoreResult};

use crate::StoreConfig;
use crate::cache::Cache;
use crate::journal::{self, Next, Record};
use crate::layout::{self, INDEX_FILE, LOCK_FILE};
use crate::state::{Entry, State};

/// Files in `tmp/` older than this belong to no delivery in progress and are removed.
const TMP_MAX_AGE: Duration = Duration::from_secs(3600);
/// Compact the journal when it holds this many dead records and more dead than live ones.
const COMPACT_AFTER: u64 = 4096;

/// A change queued for the leader.
#[derive(Debug)]
pub(crate) enum Op {
    /// Move `tmp/<tmp>` in as a new message whose Maildir base name is `base`.
    Append {
        tmp: String,
        base: String,
        size: u64,
        flags: Flags,
        internal_date: InternalDate,
    },
    /// Index a file that is already in `new/` (crash leftover or outside delivery).
    Adopt {
        file: String,
        size: u64,
        internal_date: InternalDate,
    },
    Flags {
        uids: Vec<Uid>,
        op: FlagOp,
        flags: Flags,
        unchanged_since: Option<ModSeq>,
    },
    /// Expunge messages flagged \Deleted (`require_deleted`) or just these (`only`).
    Expunge {
        only: Option<Vec<Uid>>,
        require_deleted: bool,
    },
    /// Expunge this message if its file is gone (checked under the lock, so a rename in
    /// progress elsewhere cannot be mistaken for a deletion).
    ExpungeIfMissing(Uid),
    ClaimRecent,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Appended(Uid),
    Flags(FlagUpdate),
    Expunged(Vec<Uid>),
    Recent(Vec<Uid>),
}

struct Inner {
    state: State,
    journal: std::fs::File,
    /// Bytes of the journal already applied to `state`.
    applied: u64,
    journal_id: (u64, u64),
    queue: Vec<(u64, Op)>,
    next_ticket: u64,
    flushing: bool,
    done: HashMap<u64, StoreResult<Outcome>>,
}

pub(crate) struct FsMailbox {
    name: Mutex<MailboxName>,
    dir: Dir,
    lock_file: std::fs::File,
    config: StoreConfig,
    inner: Mutex<Inner>,
    flushed: Condvar,
    listeners: Mutex<Vec<Weak<dyn ChangeListener>>>,
    deleted: AtomicBool,
    /// Derived data protocols keep per message (`cache.rs`), loaded on first use.
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for FsMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsMailbox")
            .field("name", &*lock(&self.name))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a store lock leaves consistent data (state changes are applied
    // record by record), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds the cross-process lock of a mailbox while alive. The lock is `flock` on the mailbox's
/// lock file (not on the directory: cap-std opens directories `O_PATH`, which `flock` refuses;
/// not on the journal: compaction replaces it).
struct MailboxLock<'a>(&'a std::fs::File);

impl<'a> MailboxLock<'a> {
    fn exclusive(file: &'a std::fs::File) -> StoreResult<Self> {
        flock(file, FlockOperation::LockExclusive).map_err(|e| StoreError::Io {
            op: "lock mailbox",
            source: e.into(),
        })?;
        Ok(MailboxLock(file))
    }
}

impl Drop for MailboxLock<'_> {
    fn drop(&mut self) {
        let _ = flock(self.0, FlockOperation::Unlock);
    }
}

fn open_lock_file(dir: &Dir) -> StoreResult<std::fs::File> {
    dir.open_with(LOCK_FILE, OpenOptions::new().write(true).create(true))
        .map(File::into_std)
        .map_err(StoreError::io("open mailbox lock"))
}

fn file_id(file: &impl std::os::fd::AsFd) -> StoreResult<(u64, u64)> {
    let st = rustix::fs::fstat(file).map_err(|e| StoreError::Io {
        op: "stat index",
        source: e.into(),
    })?;
    Ok((st.st_dev, st.st_ino))
}

/// The Maildir base name for a file staged as `tmp/<tmp>` (adds the Maildir++ size field).
pub(crate) fn base_name(tmp: &str, size: u64) -> String {
    format!("{tmp},S={size}")
}

impl FsMailbox {
    /// Creates the Maildir directories and an empty index in `dir` (which must exist).
    pub(crate) fn create_in(
        dir: &Dir,
        uid_validity: UidValidity,
        config: StoreConfig,
    ) -> StoreResult<()> {
        for sub in layout::MAILDIR_SUBDIRS {
            match dir.create_dir(sub) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        op: "create maildir",
                        source: e,
                    });
                }
            }
        }
        let lock_file = open_lock_file(dir)?;
        let _lock = MailboxLock::exclusive(&lock_file)?;
        if dir.exists(INDEX_FILE) {
            return Ok(());
        }
        let tmp = format!("{INDEX_FILE}.new");
        let mut f = dir
            .open_with(
                &tmp,
                OpenOptions::new().write(true).create(true).truncate(true),
            )
            .map_err(StoreError::io("create index"))?;
        f.write_all(&journal::encode_header(uid_validity))
            .map_err(StoreError::io("write index"))?;
        if config.fsync {
            f.sync_all().map_err(StoreError::io("fsync index"))?;
        }
        dir.rename(&tmp, dir, INDEX_FILE)
            .map_err(StoreError::io("create index"))?;
        sync_dir(dir, ".", config)?;
        Ok(())
    }

    /// Opens a mailbox whose directory and index exist; recovers from a crash if needed.
    pub(crate) fn open(name: MailboxName, dir: Dir, config: StoreConfig) -> StoreResult<FsMailbox> {
        let lock_file = open_lock_file(&dir)?;
        let inner = {
            let _lock = MailboxLock::exclusive(&lock_file)?;
            let (journal, state, applied, journal_id) = load(&dir, config)?;
            recover_expunging(&dir, &state);
            clean_tmp(&dir);
            Inner {
                state,
                journal,
                applied,
                journal_id,
                queue: Vec::new(),
                next_ticket: 0,
                flushing: false,
                done: HashMap::new(),
            }
        };
        let mailbox = FsMailbox {
            name: Mutex::new(name),
            dir,
            lock_file,
            config,
            inner: Mutex::new(inner),
            flushed: Condvar::new(),
            listeners: Mutex::new(Vec::new()),
            deleted: AtomicBool::new(false),
            cache: Mutex::new(Cache::default()),
        };
        mailbox.adopt_orphans(false)?;
        Ok(mailbox)
    }

    /// Makes everything written to this filesystem durable with one call (`syncfs`): how a bulk
    /// writer commits thousands of files without an fsync each.
    pub(crate) fn sync_filesystem(&self) -> StoreResult<()> {
        if self.config.fsync {
            rustix::fs::syncfs(&self.lock_file).map_err(|e| StoreError::Io {
                op: "syncfs",
                source: e.into(),
            })?;
        }
        Ok(())
    }

    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    pub(crate) fn name(&self) -> MailboxName {
        lock(&self.name).clone()
    }

    pub(crate) fn set_name(&self, name: MailboxName) {
        *lock(&self.name) = name;
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::SeqCst);
    }

    fn check_alive(&self) -> StoreResult<()> {
        if self.deleted.load(Ordering::SeqCst) {
            return Err(StoreError::NoSuchMailbox(self.name()));
        }
        Ok(())
    }

    /// Indexes files in `new/` (and `cur/` if `include_cur`) that the index does not know.
    pub(crate) fn adopt_orphans(&self, include_cur: bool) -> StoreResult<usize> {
        let known: HashSet<Box<str>> = lock(&self.inner)
            .state
            .messages
            .iter()
            .map(|e| e.base.clone())
            .collect();
        let mut ops = Vec::new();
        let subdirs: &[&str] = if include_cur {
            &["new", "cur"]
        } else {
            &["new"]
        };
        for sub in subdirs {
            let entries = match self.dir.read_dir(sub) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(StoreError::Io {
                        op: "scan maildir",
                        source: e,
                    });
                }
            };
            for entry in entries.flatten() {
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue;
                };
                if file_name.starts_with('.')
                    || known.contains(layout::split_file_name(&file_name).0)
                {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let internal_date = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.into_std().duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| InternalDate {
                        unix_seconds: d.as_secs() as i64,
                        offset_minutes: 0,
                    })
                    .unwrap_or_else(InternalDate::now);
                ops.push(Op::Adopt {
                    file: format!("{sub}/{file_name}"),
                    size: meta.len(),
                    internal_date,
                });
            }
        }
        if ops.is_empty() {
            return Ok(0);
        }
        tracing::info!(mailbox = %self.name(), count = ops.len(), "adopting message files the index did not know");
        let n = ops.len();
        for r in self.commit(ops) {
            r?;
        }
        Ok(n)
    }

    // ---- reads -------------------------------------------------------------------------------

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> StoreResult<R> {
        self.check_alive()?;
        Ok(f(&lock(&self.inner).state))
    }

    pub(crate) fn uid_validity(&self) -> StoreResult<UidValidity> {
        self.with_state(|s| s.uid_validity)
    }

    pub(crate) fn status(&self) -> StoreResult<MailboxStatus> {
        self.with_state(State::status)
    }

    pub(crate) fn messages(&self) -> StoreResult<Vec<MessageMeta>> {
        self.with_state(|s| s.messages.iter().map(|e| e.meta.clone()).collect())
    }

    /// See [`wasmail_types::Mailbox::cached`].
    pub(crate) fn cached(&self, uid: Uid) -> Option<Arc<[u8]>> {
        let validity = self.uid_validity().ok()?;
        let live = |u: Uid| self.with_state(|s| s.get(u).is_some()).unwrap_or(false);
        lock(&self.cache).get(&self.dir, validity, uid, live)
    }

    /// See [`wasmail_types::Mailbox::set_cached`].
    pub(crate) fn set_cached(&self, uid: Uid, data: &[u8]) {
        let Ok(validity) = self.uid_validity() else {
            return;
        };
        if self.entry(uid).is_err() {
            return;
        }
        let live = |u: Uid| self.with_state(|s| s.get(u).is_some()).unwrap_or(false);
        lock(&self.cache).put(&self.dir, validity, uid, data, live);
    }

    pub(crate) fn entry(&self, uid: Uid) -> StoreResult<Entry> {
        self.with_state(|s| s.get(uid).cloned())?
            .ok_or(StoreError::NoSuchMessage(uid))
    }

    pub(crate) fn changes_since(&self, since: ModSeq) -> StoreResult<Option<Changes>> {
        self.with_state(|s| s.changes_since(since))
    }

    pub(crate) fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        let mut l = lock(&self.listeners);
        l.retain(|w| w.strong_count() > 0);
        l.push(listener);
    }

    fn notify(&self) {
        let listeners: Vec<_> = lock(&self.listeners)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for l in listeners {
            l.changed();
        }
    }

    /// Applies records other processes appended. Skipped while a flush runs: the leader catches
    /// up itself, and reading its own unapplied records here would apply them twice.
    pub(crate) fn refresh(&self) -> StoreResult<()> {
        self.check_alive()?;
        let changed = {
            let mut inner = lock(&self.inner);
            if inner.flushing {
                return Ok(());
            }
            let before = inner.state.highest_modseq;
            catch_up(&self.dir, &mut inner, self.config, false)?;
            inner.state.highest_modseq != before
        };
        if changed {
            self.notify();
        }
        Ok(())
    }

    /// Opens the message file: `cur/<base>:2,<info>`, else `new/<base>`, else any `cur/<base>:*`
    /// (the name lags behind the flags after a crash between journal write and rename).
    /// Opens a message's file. Names change only under the mailbox lock, but a reader does not
    /// take it, so a lookup can race with a rename: it is retried. A file that is really gone
    /// (deleted by hand, or a crash between the unlink and the journal write of an expunge) is
    /// expunged from the index, as the user or the interrupted expunge wanted.
    pub(crate) fn open_file(&self, entry: &Entry) -> StoreResult<File> {
        let uid = entry.meta.uid;
        for _ in 0..3 {
            if let Some(path) = self.locate(entry) {
                match self.dir.open(&path) {
                    Ok(f) => return Ok(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(StoreError::Io {
                            op: "open message",
                            source: e,
                        });
                    }
                }
            }
        }
        for r in self.commit(vec![Op::ExpungeIfMissing(uid)]) {
            r?;
        }
        // If the check under the lock found the file after all, it was a race: open it there.
        match self.with_state(|s| s.get(uid).cloned())? {
            Some(current) => {
                let path = self
                    .locate(&current)
                    .ok_or(StoreError::NoSuchMessage(uid))?;
                self.dir.open(&path).map_err(StoreError::io("open message"))
            }
            None => Err(StoreError::NoSuchMessage(uid)),
        }
    }

    pub(crate) fn open_content(&self, uid: Uid) -> StoreResult<Box<dyn MessageContent>> {
        let entry = self.entry(uid)?;
        let file = self.open_file(&entry)?;
        Ok(Box::new(FileContent {
            file: file.into_std(),
            size: entry.meta.size,
        }))
    }

    pub(crate) fn locate(&self, entry: &Entry) -> Option<String> {
        locate_in(&self.dir, &entry.base, &entry.meta.flags)
    }

    // ---- writes ------------------------------------------------------------------------------

    /// Writes `prefix` then `content` into a new file in `tmp/`, fsyncs it, and returns its name
    /// and size. The caller queues an [`Op::Append`] for it.
    pub(crate) fn write_tmp(
        &self,
        prefix: &[u8],
        content: &mut dyn Read,
    ) -> StoreResult<(String, u64)> {
        self.check_alive()?;
        write_tmp_in(&self.dir, prefix, content, self.config)
    }

    /// Queues `ops`, waits until they are durable, and returns one result per op, in order.
    pub(crate) fn commit(&self, ops: Vec<Op>) -> Vec<StoreResult<Outcome>> {
        if let Err(e) = self.check_alive() {
            let name = match e {
                StoreError::NoSuchMailbox(n) => n,
                _ => self.name(),
            };
            return ops
                .iter()
                .map(|_| Err(StoreError::NoSuchMailbox(name.clone())))
                .collect();
        }
        let mut inner = lock(&self.inner);
        let first = inner.next_ticket;
        let n = ops.len() as u64;
        inner.next_ticket += n;
        inner.queue.extend((first..).zip(ops));
        loop {
            if (first..first + n).all(|t| inner.done.contains_key(&t)) {
                return (first..first + n)
                    .filter_map(|t| inner.done.remove(&t))
                    .collect();
            }
            if inner.flushing {
                inner = self.flushed.wait(inner).unwrap_or_else(|p| p.into_inner());
            } else {
                inner = self.lead(inner);
            }
        }
    }

    /// Runs one flush of everything queued. Called with the state lock held and `flushing`
    /// false; returns with the lock held again.
    fn lead<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        inner.flushing = true;
        let batch = std::mem::take(&mut inner.queue);
        drop(inner);

        let result = self.flush(batch);

        let mut inner = lock(&self.inner);
        match result {
            Ok((records, bytes, outcomes)) => {
                for r in &records {
                    inner.state.apply(r);
                }
                inner.applied += bytes;
                inner.done.extend(outcomes);
                inner.flushing = false;
                self.flushed.notify_all();
                drop(inner);
                if !records.is_empty() {
                    self.notify();
                }
                self.maybe_compact();
                lock(&self.inner)
            }
            Err((tickets, e)) => {
                tracing::error!(mailbox = %self.name(), error = %e, "commit failed");
                let kind = match &e {
                    StoreError::Io { source, .. } => source.kind(),
                    _ => io::ErrorKind::Other,
                };
                let text = e.to_string();
                for t in tickets {
                    inner.done.insert(
                        t,
                        Err(StoreError::Io {
                            op: "commit",
                            source: io::Error::new(kind, text.clone()),
                        }),
                    );
                }
                inner.flushing = false;
                self.flushed.notify_all();
                inner
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn flush(
        &self,
        batch: Vec<(u64, Op)>,
    ) -> Result<(Vec<Record>, u64, Vec<(u64, StoreResult<Outcome>)>), (Vec<u64>, StoreError)> {
        let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
        let fail = |e| (tickets.clone(), e);
        let _lock = MailboxLock::exclusive(&self.lock_file).map_err(fail)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut plan = {
            let mut inner = lock(&self.inner);
            catch_up(&self.dir, &mut inner, self.config, true).map_err(fail)?;
            let mut plan = Plan::new(&inner.state);
            for (ticket, op) in batch {
                outcomes.push((ticket, plan.add(&inner.state, &self.dir, op)));
            }
            plan
        };
        // File moves first, then their directories' fsync, then the journal: a durable record
        // always points at a durable file.
        if let Err(e) = plan.before_journal(&self.dir, self.config) {
            plan.undo_moves(&self.dir);
            return Err(fail(e));
        }
        let mut bytes = Vec::new();
        for r in &plan.records {
            journal::encode(r, &mut bytes);
        }
        if !bytes.is_empty() {
            let inner = lock(&self.inner);
            let write = inner
                .journal
                .write_all_at(&bytes, inner.applied)
                .and_then(|()| {
                    if self.config.fsync {
                        inner.journal.sync_data()
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = write {
                let _ = inner.journal.set_len(inner.applied);
                drop(inner);
                plan.undo_moves(&self.dir);
                return Err(fail(StoreError::Io {
                    op: "write index",
                    source: e,
                }));
            }
        }
        plan.after_journal(&self.dir);
        Ok((plan.records, bytes.len() as u64, outcomes))
    }

    fn maybe_compact(&self) {
        let needed = {
            let inner = lock(&self.inner);
            inner.state.dead_records > COMPACT_AFTER
                && inner.state.dead_records > inner.state.messages.len() as u64
        };
        if !needed {
            return;
        }
        let mut inner = lock(&self.inner);
        if inner.flushing {
            return;
        }
        inner.flushing = true;
        drop(inner);
        let r = self.compact();
        let mut inner = lock(&self.inner);
        inner.flushing = false;
        self.flushed.notify_all();
        drop(inner);
        if let Err(e) = r {
            tracing::warn!(mailbox = %self.name(), error = %e, "index compaction failed; the journal keeps growing");
        }
    }

    /// Rewrites the journal as a snapshot of the state; other processes notice the new inode.
    fn compact(&self) -> StoreResult<()> {
        let _lock = MailboxLock::exclusive(&self.lock_file)?;
        let mut inner = lock(&self.inner);
        catch_up(&self.dir, &mut inner, self.config, true)?;
        let mut bytes = journal::encode_header(inner.state.uid_validity).to_vec();
        for r in inner.state.snapshot_records() {
            journal::encode(&r, &mut bytes);
        }
        let tmp = format!("{INDEX_FILE}.new");
        let mut f = self
            .dir
            .open_with(
                &tmp,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true),
            )
            .map_err(StoreError::io("compact index"))?;
        f.write_all(&bytes)
            .map_err(StoreError::io("compact index"))?;
        if self.config.fsync {
            f.sync_all().map_err(StoreError::io("compact index"))?;
        }
        self.dir
            .rename(&tmp, &self.dir, INDEX_FILE)
            .map_err(StoreError::io("compact index"))?;
        sync_dir(&self.dir, ".", self.config)?;
        inner.journal_id = file_id(&f)?;
        inner.journal = f.into_std();
        inner.applied = bytes.len() as u64;
        inner.state.dead_records = 0;
        Ok(())
    }
}

/// A message whose file must end up named for its final flags once the journal is written.
struct Touched {
    /// Where the file is now (before this flush's post-journal renames).
    from: String,
    base: String,
    flags: Flags,
}

/// What one flush will do, in this order, all under the mailbox lock:
/// 1. `moves`: staged files `tmp/ → new/`, and files of expunged messages (at the names they
///    really have) `→ tmp/<base>.expunging`; then fsync the directories touched;
/// 2. write and fdatasync the journal records;
/// 3. unlink the `.expunging` files, and rename `touched` messages to `cur/<base>:2,<flags>`.
///
/// A crash between 1 and 2 leaves `.expunging` files of messages the index still lists: the
/// next open puts them back. After 2 it leaves ones the index no longer lists: deleted then.
///
/// Files enter `new/` only in step 1 and `cur/` only in step 3, and every name change happens
/// under the lock: so a file in `new/` the index does not know is a crash leftover (adopted at
/// the next open), `cur/` never holds one, and an unlink never misses a file that a concurrent
/// rename is moving.
struct Plan {
    uid_next: u32,
    modseq: ModSeq,
    records: Vec<Record>,
    /// (from, to) moved before the journal write; undone if the flush fails.
    moves: Vec<(String, String)>,
    /// `tmp/<base>.expunging` files to delete once the journal is durable.
    doomed: Vec<String>,
    dirty_dirs: HashSet<&'static str>,
    touched: HashMap<Uid, Touched>,
    /// Flags as planned in this batch, for ops later in the same batch.
    pending_flags: HashMap<Uid, (Flags, ModSeq)>,
    expunged: HashSet<Uid>,
    first_recent: u32,
    /// Base names in the mailbox, built on the first adoption of a batch.
    known_bases: Option<HashSet<Box<str>>>,
}

impl Plan {
    fn new(state: &State) -> Plan {
        Plan {
            uid_next: state.uid_next,
            modseq: state.highest_modseq,
            records: Vec::new(),
            moves: Vec::new(),
            doomed: Vec::new(),
            dirty_dirs: HashSet::new(),
            touched: HashMap::new(),
            pending_flags: HashMap::new(),
            expunged: HashSet::new(),
            first_recent: state.first_recent,
            known_bases: None,
        }
    }

    fn next_modseq(&mut self) -> ModSeq {
        self.modseq = ModSeq(self.modseq.0 + 1);
        self.modseq
    }

    fn next_uid(&mut self) -> StoreResult<Uid> {
        let uid = Uid::new(self.uid_next).ok_or(StoreError::UidsExhausted)?;
        self.uid_next = self
            .uid_next
            .checked_add(1)
            .ok_or(StoreError::UidsExhausted)?;
        Ok(uid)
    }

    fn current<'s>(&'s self, state: &'s State, uid: Uid) -> Option<(&'s Flags, ModSeq, &'s Entry)> {
        if self.expunged.contains(&uid) {
            return None;
        }
        let entry = state.get(uid)?;
        Some(match self.pending_flags.get(&uid) {
            Some((f, m)) => (f, *m, entry),
            None => (&entry.meta.flags, entry.meta.modseq, entry),
        })
    }

    /// Where a message's file is right now: as planned earlier in this batch, else on disk.
    fn path_now(&self, dir: &Dir, entry: &Entry) -> Option<String> {
        match self.touched.get(&entry.meta.uid) {
            Some(t) => Some(t.from.clone()),
            None => locate_in(dir, &entry.base, &entry.meta.flags),
        }
    }

    fn add(&mut self, state: &State, dir: &Dir, op: Op) -> StoreResult<Outcome> {
        match op {
            Op::Append {
                tmp,
                base,
                size,
                flags,
                internal_date,
            } => {
                let uid = self.next_uid()?;
                self.moves
                    .push((format!("tmp/{tmp}"), format!("new/{base}")));
                self.dirty_dirs.insert("new");
                if !flags.is_empty() {
                    self.touched.insert(
                        uid,
                        Touched {
                            from: format!("new/{base}"),
                            base: base.clone(),
                            flags: flags.clone(),
                        },
                    );
                }
                let modseq = self.next_modseq();
                self.records.push(Record::Append {
                    uid,
                    modseq,
                    internal_date,
                    size,
                    flags,
                    base,
                });
                Ok(Outcome::Appended(uid))
            }
            Op::Adopt {
                file,
                size,
                internal_date,
            } => {
                let (base, info) =
                    layout::split_file_name(file.split_once('/').map_or(&file[..], |(_, n)| n));
                let known = self
                    .known_bases
                    .get_or_insert_with(|| state.messages.iter().map(|e| e.base.clone()).collect());
                if !known.insert(base.into()) {
                    return Ok(Outcome::Appended(Uid::MIN)); // adopted by another process meanwhile
                }
                let uid = self.next_uid()?;
                let modseq = self.next_modseq();
                self.records.push(Record::Append {
                    uid,
                    modseq,
                    internal_date,
                    size,
                    flags: Flags::from_maildir_info(info),
                    base: base.to_owned(),
                });
                Ok(Outcome::Appended(uid))
            }
            Op::Flags {
                uids,
                op,
                flags,
                unchanged_since,
            } => {
                let mut update = FlagUpdate::default();
                let mut changed = Vec::new();
                for uid in uids {
                    let Some((current, modseq, entry)) = self.current(state, uid) else {
                        continue;
                    };
                    if unchanged_since.is_some_and(|u| modseq > u) {
                        update.modified.push(uid);
                        continue;
                    }
                    let new = current.apply(op, &flags);
                    let mut meta = entry.meta.clone();
                    meta.modseq = modseq;
                    if &new == current {
                        meta.flags = new;
                        update.updated.push(meta);
                    } else {
                        meta.flags = new;
                        changed.push((meta, entry.clone()));
                    }
                }
                if !changed.is_empty() {
                    let modseq = self.next_modseq();
                    for (mut meta, entry) in changed {
                        meta.modseq = modseq;
                        let from = self.path_now(dir, &entry);
                        match (self.touched.get_mut(&meta.uid), from) {
                            (Some(t), _) => t.flags = meta.flags.clone(),
                            (None, Some(from)) => {
                                self.touched.insert(
                                    meta.uid,
                                    Touched {
                                        from,
                                        base: entry.base.to_string(),
                                        flags: meta.flags.clone(),
                                    },
                                );
                            }
                            // No file: the name cannot follow, the index still records the flags.
                            (None, None) => {}
                        }
                        self.records.push(Record::Flags {
                            modseq,
                            uid: meta.uid,
                            flags: meta.flags.clone(),
                        });
                        self.pending_flags
                            .insert(meta.uid, (meta.flags.clone(), modseq));
                        update.updated.push(meta);
                    }
                }
                update.updated.sort_by_key(|m| m.uid);
                Ok(Outcome::Flags(update))
            }
            Op::Expunge {
                only,
                require_deleted,
            } => {
                let candidates: Vec<Uid> = match &only {
                    Some(uids) => uids.clone(),
                    None => state.messages.iter().map(|e| e.meta.uid).collect(),
                };
                let mut gone = Vec::new();
                for uid in candidates {
                    let Some((flags, _, entry)) = self.current(state, uid) else {
                        continue;
                    };
                    if require_deleted && !flags.contains(SystemFlag::Deleted) {
                        continue;
                    }
                    let entry = entry.clone();
                    if let Some(path) = self.path_now(dir, &entry) {
                        self.dirty_dirs.insert(if path.starts_with("new/") {
                            "new"
                        } else {
                            "cur"
                        });
                        self.dirty_dirs.insert("tmp");
                        let holding = expunging_name(&entry.base);
                        self.moves.push((path, holding.clone()));
                        self.doomed.push(holding);
                    }
                    self.touched.remove(&uid);
                    gone.push(uid);
                }
                gone.sort_unstable();
                gone.dedup();
                if !gone.is_empty() {
                    self.expunged.extend(gone.iter().copied());
                    let modseq = self.next_modseq();
                    self.records.push(Record::Expunge {
                        modseq,
                        uids: gone.clone(),
                    });
                }
                Ok(Outcome::Expunged(gone))
            }
            Op::ExpungeIfMissing(uid) => {
                let Some((_, _, entry)) = self.current(state, uid) else {
                    return Ok(Outcome::Expunged(Vec::new()));
                };
                if self.path_now(dir, entry).is_some() {
                    return Ok(Outcome::Expunged(Vec::new()));
                }
                tracing::warn!(uid = %uid, base = %entry.base, "message file has disappeared; expunging it from the index");
                self.expunged.insert(uid);
                self.touched.remove(&uid);
                let modseq = self.next_modseq();
                self.records.push(Record::Expunge {
                    modseq,
                    uids: vec![uid],
                });
                Ok(Outcome::Expunged(vec![uid]))
            }
            Op::ClaimRecent => {
                let claimed: Vec<Uid> = state
                    .messages
                    .iter()
                    .map(|e| e.meta.uid)
                    .filter(|u| u.get() >= self.first_recent && !self.expunged.contains(u))
                    .collect();
                if self.uid_next > self.first_recent {
                    self.first_recent = self.uid_next;
                    self.records.push(Record::RecentClaimed {
                        first_recent: self.uid_next,
                    });
                }
                Ok(Outcome::Recent(claimed))
            }
        }
    }

    /// Step 1: moves and unlinks, then fsync of the directories they changed.
    fn before_journal(&mut self, dir: &Dir, config: StoreConfig) -> StoreResult<()> {
        let mut done = Vec::new();
        for (from, to) in &self.moves {
            if let Err(e) = dir.rename(from, dir, to) {
                self.moves = done;
                return Err(StoreError::Io {
                    op: "move message into mailbox",
                    source: e,
                });
            }
            done.push((from.clone(), to.clone()));
        }
        for sub in &self.dirty_dirs {
            sync_dir(dir, sub, config)?;
        }
        Ok(())
    }

    fn undo_moves(&self, dir: &Dir) {
        for (from, to) in self.moves.iter().rev() {
            let _ = dir.rename(to, dir, from);
        }
    }

    /// Step 3: file names follow the flags (for other Maildir tools; the journal is the truth,
    /// so a failure here only leaves a name that `locate` still finds).
    fn after_journal(&self, dir: &Dir) {
        for path in &self.doomed {
            if let Err(e) = dir.remove_file(path) {
                tracing::warn!(%path, error = %e, "could not delete an expunged message file; the next open will");
            }
        }
        for t in self.touched.values() {
            let to = format!("cur/{}:2,{}", t.base, t.flags.maildir_info());
            if t.from != to
                && let Err(e) = dir.rename(&t.from, dir, &to)
            {
                tracing::debug!(from = %t.from, %to, error = %e, "flag rename failed; the file keeps its old name");
            }
        }
    }
}

/// Where an expunged message's file waits between the decision and the durable record.
fn expunging_name(base: &str) -> String {
    format!("tmp/{base}{EXPUNGING}")
}

const EXPUNGING: &str = ".expunging";

/// Resolves `.expunging` files a crash left in `tmp/`: the index still lists the message (the
/// expunge never became durable) → back into the mailbox; it does not → delete. Runs at open,
/// under the lock.
fn recover_expunging(dir: &Dir, state: &State) {
    let Ok(entries) = dir.read_dir("tmp") else {
        return;
    };
    let pending: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(EXPUNGING))
        .collect();
    if pending.is_empty() {
        return;
    }
    let listed: HashMap<&str, &Entry> = state.messages.iter().map(|e| (&*e.base, e)).collect();
    for name in pending {
        let base = &name[..name.len() - EXPUNGING.len()];
        let from = format!("tmp/{name}");
        let result = match listed.get(base) {
            Some(entry) => {
                let info = entry.meta.flags.maildir_info();
                let to = if info.is_empty() {
                    format!("new/{base}")
                } else {
                    format!("cur/{base}:2,{info}")
                };
                tracing::info!(file = %name, "an interrupted expunge is undone: the message stays");
                dir.rename(&from, dir, &to)
            }
            None => dir.remove_file(&from),
        };
        if let Err(e) = result {
            tracing::warn!(file = %name, error = %e, "could not resolve an interrupted expunge");
        }
    }
}

/// Where a message's file is: `cur/<base>:2,<info>`, else `new/<base>`, else any
/// `cur/<base>:*` (a name that lags behind the index after a crash).
pub(crate) fn locate_in(dir: &Dir, base: &str, flags: &Flags) -> Option<String> {
    let cur = format!("cur/{base}:2,{}", flags.maildir_info());
    if dir.exists(&cur) {
        return Some(cur);
    }
    let new = format!("new/{base}");
    if dir.exists(&new) {
        return Some(new);
    }
    let prefix = format!("{base}:");
    dir.read_dir("cur").ok()?.flatten().find_map(|e| {
        let n = e.file_name().into_string().ok()?;
        n.starts_with(&prefix).then(|| format!("cur/{n}"))
    })
}

/// Reads the journal from scratch.
fn load(dir: &Dir, config: StoreConfig) -> StoreResult<(std::fs::File, State, u64, (u64, u64))> {
    let journal = dir
        .open_with(INDEX_FILE, OpenOptions::new().read(true).write(true))
        .map_err(StoreError::io("open index"))?
        .into_std();
    let mut header = [0u8; journal::HEADER_LEN];
    journal
        .read_exact_at(&mut header, 0)
        .map_err(|_| StoreError::Corrupt(format!("{INDEX_FILE}: short header")))?;
    let uid_validity = journal::decode_header(&header)
        .map_err(|e| StoreError::Corrupt(format!("{INDEX_FILE}: {e}")))?;
    let journal_id = file_id(&journal)?;
    let mut inner = Inner {
        state: State::new(uid_validity),
        journal,
        applied: journal::HEADER_LEN as u64,
        journal_id,
        queue: Vec::new(),
        next_ticket: 0,
        flushing: false,
        done: HashMap::new(),
    };
    catch_up(dir, &mut inner, config, true)?;
    inner.state.forget_history();
    Ok((inner.journal, inner.state, inner.applied, inner.journal_id))
}

/// Applies journal records past `inner.applied`. With `locked` (we hold the exclusive lock, so
/// no writer is mid-append) a torn tail is a crashed writer's and is cut off; without it, reading
/// stops there and tries again later.
fn catch_up(dir: &Dir, inner: &mut Inner, config: StoreConfig, locked: bool) -> StoreResult<()> {
    // Compaction in another process replaces the file: start over from the new one.
    if let Ok(current) = dir.open(INDEX_FILE) {
        let id = file_id(&current)?;
        if id != inner.journal_id {
            let (journal, state, applied, journal_id) = load(dir, config)?;
            inner.journal = journal;
            inner.state = state;
            inner.applied = applied;
            inner.journal_id = journal_id;
            return Ok(());
        }
    }
    let len = inner
        .journal
        .metadata()
        .map_err(StoreError::io("stat index"))?
        .len();
    if len <= inner.applied {
        return Ok(());
    }
    let mut buf = vec![0u8; (len - inner.applied) as usize];
    inner
        .journal
        .read_exact_at(&mut buf, inner.applied)
        .map_err(StoreError::io("read index"))?;
    let mut pos = 0;
    loop {
        match journal::decode_next(&buf[pos..]) {
            Next::Record(r, n) => {
                inner.state.apply(&r);
                pos += n;
            }
            Next::Incomplete if pos == buf.len() => break,
            Next::Incomplete | Next::Torn => {
                if locked {
                    tracing::warn!(
                        offset = inner.applied + pos as u64,
                        discarded = buf.len() - pos,
                        "index ends in a torn record (a crash during a write); cutting it off"
                    );
                    inner
                        .journal
                        .set_len(inner.applied + pos as u64)
                        .map_err(StoreError::io("truncate index"))?;
                    if config.fsync {
                        inner
                            .journal
                            .sync_data()
                            .map_err(StoreError::io("fsync index"))?;
                    }
                }
                break;
            }
        }
    }
    inner.applied += pos as u64;
    Ok(())
}

/// Removes stale files from `tmp/` (Maildir: a file there for long is a failed delivery).
fn clean_tmp(dir: &Dir) {
    let Ok(entries) = dir.read_dir("tmp") else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m.into_std()).ok())
            .is_some_and(|age| age > TMP_MAX_AGE);
        if old {
            let name = entry.file_name();
            tracing::warn!(file = ?name, "removing stale unacknowledged file from tmp/");
            let _ = entry.remove_file();
        }
    }
}

pub(crate) fn sync_dir(dir: &Dir, sub: &str, config: StoreConfig) -> StoreResult<()> {
    if !config.fsync {
        return Ok(());
    }
    let d = if sub == "." {
        dir.open(".")
    } else {
        dir.open(sub)
    };
    d.and_then(|f| f.sync_all())
        .map_err(StoreError::io("fsync directory"))
}

/// See [`FsMailbox::write_tmp`].
pub(crate) fn write_tmp_in(
    dir: &Dir,
    prefix: &[u8],
    content: &mut dyn Read,
    config: StoreConfig,
) -> StoreResult<(String, u64)> {
    let name = layout::unique_base(0);
    let name = name.trim_end_matches(",S=0").to_owned();
    let path = format!("tmp/{name}");
    let mut file = dir
        .open_with(&path, OpenOptions::new().write(true).create_new(true))
        .map_err(StoreError::io("create message file"))?;
    let result = (|| {
        file.write_all(prefix)?;
        let mut std_file = file.try_clone()?.into_std();
        let n = io::copy(content, &mut std_file)?;
        if config.fsync {
            file.sync_data()?;
        }
        Ok::<u64, io::Error>(prefix.len() as u64 + n)
    })();
    match result {
        Ok(size) => Ok((name, size)),
        Err(e) => {
            let _ = dir.remove_file(&path);
            Err(StoreError::Io {
                op: "write message file",
                source: e,
            })
        }
    }
}

/// A message file opened for reading.
pub(crate) struct FileContent {
    pub(crate) file: std::fs::File,
    pub(crate) size: u64,
}

impl MessageContent for FileContent {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let max = ((self.size - offset) as usize).min(buf.len());
        self.file.read_at(&mut buf[..max], offset)
    }
}
