//! wasmail's mail store: Maildir message files plus a crash-safe index per mailbox, with every
//! file operation going through a `cap_std::fs::Dir` so that no name can leave its account.
//!
//! ```text
//!  FsStore (data dir)
//!   ├── spool/  ── FsSpoolWriter ─► FsSpooled ─ deliver() ─┐ (one file, hard links, parallel commits)
//!   └── accounts/<id>/ ── FsAccount (folders, metadata)    ▼
//!                           └── FsMailbox (one per folder, shared by all sessions of the process)
//!                                 ├── Maildir files   cur/ new/ tmp/
//!                                 ├── journal         wasmail-index  (journal.rs)
//!                                 └── State in memory (state.rs), group commit (mailbox.rs)
//! ```
//!
//! Guarantees: an operation that adds or changes mail returns only after the message file, its
//! directory entry and the index record are fsync'd; UIDs are never reused, even across a crash
//! (the journal is the only source of UIDs and records become visible only once durable);
//! several processes may share a data dir (the journal is shared under `flock`).

mod account;
mod cache;
mod import;
mod journal;
mod layout;
mod mailbox;
mod spool;
mod state;

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmail_types::mail::{
    Changes, FlagOp, Flags, InternalDate, MailboxName, MailboxStatus, MessageMeta, ModSeq, Uid,
    UidValidity,
};
use wasmail_types::{
    Account, ChangeListener, Delivered, DeliveryTarget, FlagUpdate, MailStore, Mailbox,
    MessageContent, SpoolWriter, StoreError, StoreResult,
};

pub use account::{DEFAULT_FOLDERS, FsAccount};
pub use import::{ImportProgress, ImportReport};
use mailbox::{FsMailbox, Op, Outcome};

/// How the store treats durability.
#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// fsync files, directories and the index before acknowledging. Only benchmarks that
    /// measure the cost of fsync itself turn this off.
    pub fsync: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { fsync: true }
    }
}

/// The filesystem mail store rooted at a data directory.
#[derive(Clone, Debug)]
pub struct FsStore {
    inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    accounts_dir: Dir,
    spool: Dir,
    config: StoreConfig,
    /// Accounts opened by this process. Kept open: an account holds its mailboxes' in-memory
    /// indexes, which every session and delivery shares.
    accounts: Mutex<HashMap<String, Arc<FsAccount>>>,
}

impl std::fmt::Debug for StoreInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreInner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StoreInner {
    pub(crate) fn account(&self, id: &str) -> StoreResult<Arc<FsAccount>> {
        let dir_name =
            layout::account_dir(id).map_err(|_| StoreError::InvalidAccount(id.to_owned()))?;
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = accounts.get(&dir_name) {
            return Ok(a.clone());
        }
        match self.accounts_dir.create_dir(&dir_name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Io {
                    op: "create account",
                    source: e,
                });
            }
        }
        let root = self
            .accounts_dir
            .open_dir(&dir_name)
            .map_err(StoreError::io("open account"))?;
        let account = Arc::new(FsAccount::open(id.to_ascii_lowercase(), root, self.config)?);
        accounts.insert(dir_name, account.clone());
        Ok(account)
    }
}

impl FsStore {
    /// Opens (creating if needed) the store in `data_dir`. This is the only place the store uses
    /// ambient authority; everything below goes through the opened directory.
    pub fn open(data_dir: &Path, config: StoreConfig) -> StoreResult<FsStore> {
        std::fs::create_dir_all(data_dir).map_err(StoreError::io("create data dir"))?;
        let data = Dir::open_ambient_dir(data_dir, ambient_authority())
            .map_err(StoreError::io("open data dir"))?;
        match data.create_dir("accounts") {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Io {
                    op: "create accounts dir",
                    source: e,
                });
            }
        }
        let accounts_dir = data
            .open_dir("accounts")
            .map_err(StoreError::io("open accounts dir"))?;
        let spool = spool::open_spool(&data)?;
        Ok(FsStore {
            inner: Arc::new(StoreInner {
                accounts_dir,
                spool,
                config,
                accounts: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The concrete account (for operations beyond the [`Account`] trait, such as import).
    pub fn fs_account(&self, id: &str) -> StoreResult<Arc<FsAccount>> {
        self.inner.account(id)
    }

    /// Delivers `content` (read once per call of `content`) to every target; see
    /// [`wasmail_types::SpooledMessage::deliver`].
    pub fn deliver_bytes(
        &self,
        message: &[u8],
        targets: &[DeliveryTarget],
    ) -> StoreResult<Vec<Delivered>> {
        spool::deliver(&self.inner, &[], &mut || Box::new(message), targets)
    }
}

impl MailStore for FsStore {
    fn account(&self, id: &str) -> StoreResult<Arc<dyn Account>> {
        Ok(self.inner.account(id)?)
    }

    fn spool(&self) -> StoreResult<Box<dyn SpoolWriter>> {
        Ok(Box::new(spool::FsSpoolWriter::create(self.inner.clone())?))
    }
}

impl FsAccount {
    /// Indexes message files that appeared in a mailbox's `new/` and `cur/` without going through
    /// the store (another Maildir tool, a copy into the directory). Returns how many.
    pub fn rescan(&self, name: &MailboxName) -> StoreResult<usize> {
        self.open_mailbox(name)?.adopt_orphans(true)
    }
}

/// The [`Mailbox`] trait object handed to sessions.
#[derive(Debug)]
pub(crate) struct FsMailboxHandle(pub(crate) Arc<FsMailbox>);

fn single<T>(
    mut results: Vec<StoreResult<Outcome>>,
    pick: impl FnOnce(Outcome) -> Option<T>,
) -> StoreResult<T> {
    match results.pop() {
        Some(Ok(o)) => pick(o).ok_or(StoreError::Corrupt(
            "commit returned the wrong outcome".into(),
        )),
        Some(Err(e)) => Err(e),
        None => Err(StoreError::Corrupt("commit returned nothing".into())),
    }
}

impl Mailbox for FsMailboxHandle {
    fn name(&self) -> MailboxName {
        self.0.name()
    }

    fn status(&self) -> StoreResult<MailboxStatus> {
        self.0.status()
    }

    fn messages(&self) -> StoreResult<Vec<MessageMeta>> {
        self.0.messages()
    }

    fn message(&self, uid: Uid) -> StoreResult<MessageMeta> {
        Ok(self.0.entry(uid)?.meta)
    }

    fn changes_since(&self, since: ModSeq) -> StoreResult<Option<Changes>> {
        self.0.changes_since(since)
    }

    fn refresh(&self) -> StoreResult<()> {
        self.0.refresh()
    }

    fn claim_recent(&self) -> StoreResult<Vec<Uid>> {
        single(self.0.commit(vec![Op::ClaimRecent]), |o| match o {
            Outcome::Recent(u) => Some(u),
            _ => None,
        })
    }

    fn subscribe(&self, listener: Weak<dyn ChangeListener>) {
        self.0.subscribe(listener);
    }

    fn open_message(&self, uid: Uid) -> StoreResult<Box<dyn MessageContent>> {
        self.0.open_content(uid)
    }

    fn append(
        &self,
        content: &mut dyn io::Read,
        flags: &Flags,
        internal_date: Option<InternalDate>,
    ) -> StoreResult<(UidValidity, Uid)> {
        let (tmp, size) = self.0.write_tmp(&[], content)?;
        let op = Op::Append {
            base: mailbox::base_name(&tmp, size),
            tmp,
            size,
            flags: flags.clone(),
            internal_date: internal_date.unwrap_or_else(InternalDate::now),
        };
        let uid = single(self.0.commit(vec![op]), |o| match o {
            Outcome::Appended(u) => Some(u),
            _ => None,
        })?;
        Ok((self.0.uid_validity()?, uid))
    }

    fn store_flags(
        &self,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> StoreResult<FlagUpdate> {
        let op = Op::Flags {
            uids: uids.to_vec(),
            op,
            flags: flags.clone(),
            unchanged_since,
        };
        single(self.0.commit(vec![op]), |o| match o {
            Outcome::Flags(f) => Some(f),
            _ => None,
        })
    }

    fn cached(&self, uid: Uid) -> Option<Arc<[u8]>> {
        self.0.cached(uid)
    }

    fn set_cached(&self, uid: Uid, data: &[u8]) {
        self.0.set_cached(uid, data);
    }

    fn expunge(&self, uids: Option<&[Uid]>) -> StoreResult<Vec<Uid>> {
        let op = Op::Expunge {
            only: uids.map(<[Uid]>::to_vec),
            require_deleted: true,
        };
        single(self.0.commit(vec![op]), |o| match o {
            Outcome::Expunged(u) => Some(u),
            _ => None,
        })
    }
}
