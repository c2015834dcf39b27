//! One account: its Maildir++ folders, their metadata, and operations across two folders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use cap_std::fs::{Dir, OpenOptions};
use rustix::fs::{FlockOperation, flock};
use wasmail_types::mail::{MailboxInfo, MailboxName, SpecialUse, Uid, UidValidity, Usage};
use wasmail_types::{Account, CopyResult, Mailbox, StoreError, StoreResult};

use crate::layout::{self, ACCOUNT_FILE, TRASH_PREFIX};
use crate::mailbox::{FsMailbox, Op, Outcome, base_name, sync_dir};
use crate::{FsMailboxHandle, StoreConfig};

/// The folders a new account starts with (RFC 6154 attributes), all subscribed.
pub const DEFAULT_FOLDERS: [(&str, SpecialUse); 5] = [
    ("Drafts", SpecialUse::Drafts),
    ("Sent", SpecialUse::Sent),
    ("Trash", SpecialUse::Trash),
    ("Junk", SpecialUse::Junk),
    ("Archive", SpecialUse::Archive),
];

/// What `wasmail-account` holds. A small text file, rewritten whole (temp file, fsync, rename).
#[derive(Default, Debug, Clone, PartialEq)]
struct Meta {
    /// The last UIDVALIDITY handed out; the next is larger (RFC 3501 2.3.1.1: a recreated
    /// mailbox must not reuse one).
    last_uid_validity: u32,
    /// Written last when an account is created: until it is set, creation is redone (every
    /// step is idempotent), so a crash mid-creation never leaves an account without its
    /// folders.
    initialized: bool,
    subscribed: BTreeSet<MailboxName>,
    special_use: BTreeMap<MailboxName, SpecialUse>,
}

impl Meta {
    fn parse(text: &str) -> Meta {
        let mut meta = Meta::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, '\t');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("initialized"), Some("1"), None) => meta.initialized = true,
                (Some("uidvalidity"), Some(v), None) => {
                    meta.last_uid_validity = v.parse().unwrap_or(0);
                }
                (Some("subscribed"), Some(name), None) => {
                    if let Ok(n) = MailboxName::new(name) {
                        meta.subscribed.insert(n);
                    }
                }
                (Some("special-use"), Some(attr), Some(name)) => {
                    if let (Some(u), Ok(n)) = (SpecialUse::from_imap(attr), MailboxName::new(name))
                    {
                        meta.special_use.insert(n, u);
                    }
                }
                _ => {}
            }
        }
        meta
    }

    fn render(&self) -> String {
        // Mailbox names contain no control characters, so tab and newline delimit safely.
        let mut out = String::from("wasmail-account\t1\n");
        out.push_str(&format!("uidvalidity\t{}\n", self.last_uid_validity));
        if self.initialized {
            out.push_str("initialized\t1\n");
        }
        for n in &self.subscribed {
            out.push_str(&format!("subscribed\t{n}\n"));
        }
        for (n, u) in &self.special_use {
            out.push_str(&format!("special-use\t{}\t{n}\n", u.as_imap()));
        }
        out
    }
}

pub struct FsAccount {
    id: String,
    root: Dir,
    config: StoreConfig,
    /// Open mailboxes, shared by every session of this process. Guarded together with folder
    /// operations so that a rename or delete and an open cannot interleave.
    open: Mutex<HashMap<MailboxName, Arc<FsMailbox>>>,
}

impl std::fmt::Debug for FsAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsAccount")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid(name: &MailboxName, reason: &'static str) -> StoreError {
    StoreError::InvalidName {
        name: name.to_string(),
        reason,
    }
}

impl FsAccount {
    /// Opens the account rooted at `root`, creating INBOX and the default folders the first time.
    pub(crate) fn open(id: String, root: Dir, config: StoreConfig) -> StoreResult<FsAccount> {
        let account = FsAccount {
            id,
            root,
            config,
            open: Mutex::new(HashMap::new()),
        };
        if !account.read_meta()?.initialized {
            account.initialize()?;
        }
        Ok(account)
    }

    /// Creates INBOX and the default folders with their special-use attributes and
    /// subscriptions. Safe to run again after a crash at any point: it completes what is missing.
    fn initialize(&self) -> StoreResult<()> {
        if !self.root.exists(layout::INDEX_FILE) {
            let v = self.next_uid_validity()?;
            FsMailbox::create_in(&self.root, v, self.config)?;
        }
        let mut defaults = Vec::new();
        for (name, use_) in DEFAULT_FOLDERS {
            let name = MailboxName::new(name).map_err(|r| StoreError::InvalidName {
                name: name.into(),
                reason: r,
            })?;
            match self.create_impl(&name, None) {
                Ok(()) | Err(StoreError::MailboxExists(_)) => {}
                Err(e) => return Err(e),
            }
            defaults.push((name, use_));
        }
        self.update_meta(|m| {
            m.subscribed.insert(MailboxName::inbox());
            for (name, use_) in &defaults {
                m.subscribed.insert(name.clone());
                m.special_use.entry(name.clone()).or_insert(*use_);
            }
            m.initialized = true;
        })?;
        Ok(())
    }

    fn read_meta(&self) -> StoreResult<Meta> {
        match self.root.read_to_string(ACCOUNT_FILE) {
            Ok(text) => Ok(Meta::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(StoreError::Io {
                op: "read account metadata",
                source: e,
            }),
        }
    }

    /// Read-modify-write of the metadata under a cross-process lock; returns the new metadata.
    fn update_meta(&self, change: impl FnOnce(&mut Meta)) -> StoreResult<Meta> {
        let lock_file = self
            .root
            .open_with(
                format!("{ACCOUNT_FILE}.lock"),
                OpenOptions::new().write(true).create(true),
            )
            .map_err(StoreError::io("lock account metadata"))?;
        flock(&lock_file, FlockOperation::LockExclusive).map_err(|e| StoreError::Io {
            op: "lock account metadata",
            source: e.into(),
        })?;
        let mut meta = self.read_meta()?;
        let before = meta.clone();
        change(&mut meta);
        if meta != before {
            let tmp = format!("{ACCOUNT_FILE}.new");
            let mut f = self
                .root
                .open_with(
                    &tmp,
                    OpenOptions::new().write(true).create(true).truncate(true),
                )
                .map_err(StoreError::io("write account metadata"))?;
            f.write_all(meta.render().as_bytes())
                .map_err(StoreError::io("write account metadata"))?;
            if self.config.fsync {
                f.sync_all()
                    .map_err(StoreError::io("fsync account metadata"))?;
            }
            self.root
                .rename(&tmp, &self.root, ACCOUNT_FILE)
                .map_err(StoreError::io("write account metadata"))?;
            sync_dir(&self.root, ".", self.config)?;
        }
        Ok(meta)
    }

    fn next_uid_validity(&self) -> StoreResult<UidValidity> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
            .unwrap_or(1);
        let meta = self.update_meta(|m| {
            m.last_uid_validity = now.max(m.last_uid_validity.saturating_add(1))
        })?;
        UidValidity::new(meta.last_uid_validity)
            .ok_or(StoreError::Corrupt("UIDVALIDITY counter overflow".into()))
    }

    fn dir_of(name: &MailboxName) -> StoreResult<String> {
        layout::mailbox_dir(name).map_err(|r| invalid(name, r))
    }

    fn exists(&self, name: &MailboxName) -> StoreResult<bool> {
        let dir = Self::dir_of(name)?;
        Ok(self.root.exists(format!("{dir}/{}", layout::INDEX_FILE)))
    }

    /// Every mailbox on disk, INBOX first then by name.
    fn names(&self) -> StoreResult<Vec<MailboxName>> {
        let mut names = vec![MailboxName::inbox()];
        for entry in self
            .root
            .entries()
            .map_err(StoreError::io("list mailboxes"))?
            .flatten()
        {
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = layout::mailbox_from_dir(&file_name) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && self
                    .root
                    .exists(format!("{file_name}/{}", layout::INDEX_FILE))
            {
                names.push(name);
            }
        }
        names[1..].sort();
        Ok(names)
    }

    pub(crate) fn open_mailbox(&self, name: &MailboxName) -> StoreResult<Arc<FsMailbox>> {
        let mut open = lock(&self.open);
        if let Some(m) = open.get(name) {
            return Ok(m.clone());
        }
        let dir_name = Self::dir_of(name)?;
        if !self
            .root
            .exists(format!("{dir_name}/{}", layout::INDEX_FILE))
        {
            return Err(StoreError::NoSuchMailbox(name.clone()));
        }
        let dir = self
            .root
            .open_dir(&dir_name)
            .map_err(StoreError::io("open mailbox"))?;
        let mailbox = Arc::new(FsMailbox::open(name.clone(), dir, self.config)?);
        open.insert(name.clone(), mailbox.clone());
        Ok(mailbox)
    }

    fn create_impl(&self, name: &MailboxName, special_use: Option<SpecialUse>) -> StoreResult<()> {
        let dir_name = Self::dir_of(name)?;
        if name.is_inbox() || self.exists(name)? {
            return Err(StoreError::MailboxExists(name.clone()));
        }
        match self.root.create_dir(&dir_name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Io {
                    op: "create mailbox",
                    source: e,
                });
            }
        }
        let dir = self
            .root
            .open_dir(&dir_name)
            .map_err(StoreError::io("create mailbox"))?;
        let v = self.next_uid_validity()?;
        FsMailbox::create_in(&dir, v, self.config)?;
        sync_dir(&self.root, ".", self.config)?;
        if let Some(u) = special_use {
            self.update_meta(|m| {
                m.special_use.insert(name.clone(), u);
            })?;
        }
        Ok(())
    }

    /// Copies messages into `to` as new messages (hard links where the filesystem allows).
    fn copy_impl(&self, src: &FsMailbox, uids: &[Uid], dst: &FsMailbox) -> StoreResult<CopyResult> {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let mut ops = Vec::new();
        let mut sources = Vec::new();
        for uid in uids {
            let Ok(entry) = src.entry(uid) else { continue };
            let tmp = match link_or_copy(src, &entry, dst) {
                Ok(tmp) => tmp,
                Err(StoreError::NoSuchMessage(_)) => continue,
                Err(e) => return Err(e),
            };
            ops.push(Op::Append {
                base: base_name(&tmp, entry.meta.size),
                tmp,
                size: entry.meta.size,
                flags: entry.meta.flags.clone(),
                internal_date: entry.meta.internal_date,
            });
            sources.push(uid);
        }
        let mut pairs = Vec::new();
        for (src_uid, r) in sources.into_iter().zip(dst.commit(ops)) {
            if let Outcome::Appended(new) = r? {
                pairs.push((src_uid, new));
            }
        }
        Ok(CopyResult {
            uid_validity: dst.uid_validity()?,
            pairs,
        })
    }
}

/// Puts a copy of a message file into `dst`'s `tmp/` and returns its name there: a hard link
/// to the file where it is, or, if that fails (another filesystem, a name that moved), a copy
/// read through `open_file`, which also copes with a file that vanished.
fn link_or_copy(
    src: &FsMailbox,
    entry: &crate::state::Entry,
    dst: &FsMailbox,
) -> StoreResult<String> {
    let name = layout::unique_base(0).trim_end_matches(",S=0").to_owned();
    if let Some(from) = src.locate(entry)
        && src
            .dir()
            .hard_link(&from, dst.dir(), format!("tmp/{name}"))
            .is_ok()
    {
        return Ok(name);
    }
    let mut reader = src.open_file(entry)?.into_std();
    let (name, _) = dst.write_tmp(&[], &mut reader)?;
    Ok(name)
}

impl Account for FsAccount {
    fn id(&self) -> &str {
        &self.id
    }

    fn list(&self) -> StoreResult<Vec<MailboxInfo>> {
        let names = self.names()?;
        let meta = self.read_meta()?;
        let infos = names
            .iter()
            .map(|n| MailboxInfo {
                name: n.clone(),
                special_use: meta.special_use.get(n).copied(),
                subscribed: meta.subscribed.contains(n),
                has_children: names.iter().any(|c| c.is_below(n)),
            })
            .collect();
        Ok(infos)
    }

    fn create(&self, name: &MailboxName, special_use: Option<SpecialUse>) -> StoreResult<()> {
        let _guard = lock(&self.open);
        // RFC 3501 6.3.3: create missing superior levels too.
        let mut ancestors = Vec::new();
        let mut p = name.parent();
        while let Some(parent) = p {
            p = parent.parent();
            ancestors.push(parent);
        }
        for a in ancestors.into_iter().rev() {
            if !a.is_inbox() && !self.exists(&a)? {
                self.create_impl(&a, None)?;
            }
        }
        self.create_impl(name, special_use)
    }

    fn delete(&self, name: &MailboxName) -> StoreResult<()> {
        if name.is_inbox() {
            return Err(StoreError::NotPermitted("INBOX cannot be deleted"));
        }
        let mut open = lock(&self.open);
        if !self.exists(name)? {
            return Err(StoreError::NoSuchMailbox(name.clone()));
        }
        let dir_name = Self::dir_of(name)?;
        // Make it vanish atomically, then remove at leisure.
        let trash = format!(
            "{TRASH_PREFIX}{}",
            layout::unique_base(0).trim_end_matches(",S=0")
        );
        self.root
            .rename(&dir_name, &self.root, &trash)
            .map_err(StoreError::io("delete mailbox"))?;
        sync_dir(&self.root, ".", self.config)?;
        if let Some(m) = open.remove(name) {
            m.mark_deleted();
        }
        drop(open);
        if let Err(e) = self.root.remove_dir_all(&trash) {
            tracing::warn!(account = %self.id, dir = %trash, error = %e, "could not remove deleted mailbox's files");
        }
        self.update_meta(|m| {
            m.special_use.remove(name);
        })?;
        Ok(())
    }

    fn rename(&self, from: &MailboxName, to: &MailboxName) -> StoreResult<()> {
        if to.is_inbox() {
            return Err(StoreError::MailboxExists(to.clone()));
        }
        if from.is_inbox() {
            // RFC 3501 6.3.5: move INBOX's messages to a new mailbox; INBOX stays, empty, and its
            // inferior names are unaffected.
            self.create(to, None)?;
            let src = self.open_mailbox(from)?;
            let dst = self.open_mailbox(to)?;
            let uids: Vec<Uid> = src.messages()?.iter().map(|m| m.uid).collect();
            self.copy_impl(&src, &uids, &dst)?;
            for r in src.commit(vec![Op::Expunge {
                only: Some(uids),
                require_deleted: false,
            }]) {
                r?;
            }
            return Ok(());
        }
        if to.is_below(from) {
            return Err(StoreError::NotPermitted(
                "a mailbox cannot be moved below itself",
            ));
        }
        let mut open = lock(&self.open);
        if !self.exists(from)? {
            return Err(StoreError::NoSuchMailbox(from.clone()));
        }
        let moving: Vec<(MailboxName, MailboxName)> = self
            .names()?
            .into_iter()
            .filter_map(|n| n.rebase(from, to).map(|t| (n, t)))
            .collect();
        for (_, target) in &moving {
            Self::dir_of(target)?;
            if self.exists(target)? {
                return Err(StoreError::MailboxExists(target.clone()));
            }
        }
        for (old, new) in &moving {
            self.root
                .rename(Self::dir_of(old)?, &self.root, Self::dir_of(new)?)
                .map_err(StoreError::io("rename mailbox"))?;
            if let Some(m) = open.remove(old) {
                m.set_name(new.clone());
                open.insert(new.clone(), m);
            }
        }
        sync_dir(&self.root, ".", self.config)?;
        drop(open);
        self.update_meta(|m| {
            for (old, new) in &moving {
                if let Some(u) = m.special_use.remove(old) {
                    m.special_use.insert(new.clone(), u);
                }
                if m.subscribed.remove(old) {
                    m.subscribed.insert(new.clone());
                }
            }
        })?;
        Ok(())
    }

    fn set_subscribed(&self, name: &MailboxName, subscribed: bool) -> StoreResult<()> {
        Self::dir_of(name)?;
        self.update_meta(|m| {
            if subscribed {
                m.subscribed.insert(name.clone());
            } else {
                m.subscribed.remove(name);
            }
        })?;
        Ok(())
    }

    fn open(&self, name: &MailboxName) -> StoreResult<Arc<dyn Mailbox>> {
        Ok(Arc::new(FsMailboxHandle(self.open_mailbox(name)?)))
    }

    fn copy(&self, from: &MailboxName, uids: &[Uid], to: &MailboxName) -> StoreResult<CopyResult> {
        let src = self.open_mailbox(from)?;
        let dst = self.open_mailbox(to)?;
        self.copy_impl(&src, uids, &dst)
    }

    fn move_messages(
        &self,
        from: &MailboxName,
        uids: &[Uid],
        to: &MailboxName,
    ) -> StoreResult<CopyResult> {
        let src = self.open_mailbox(from)?;
        let dst = self.open_mailbox(to)?;
        let result = self.copy_impl(&src, uids, &dst)?;
        let moved: Vec<Uid> = result.pairs.iter().map(|(s, _)| *s).collect();
        for r in src.commit(vec![Op::Expunge {
            only: Some(moved),
            require_deleted: false,
        }]) {
            r?;
        }
        Ok(result)
    }

    fn usage(&self) -> StoreResult<Usage> {
        let mut usage = Usage::default();
        for name in self.names()? {
            let (messages, bytes) = self
                .open_mailbox(&name)?
                .with_state(|s| (s.messages.len() as u64, s.total_size))?;
            usage.messages += messages;
            usage.bytes += bytes;
        }
        Ok(usage)
    }
}
