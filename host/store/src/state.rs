//! A mailbox's index in memory: what the journal says, applied in order.

use wasmail_types::mail::{
    Changes, MailboxStatus, MessageMeta, ModSeq, SystemFlag, Uid, UidValidity,
};

use crate::journal::Record;

/// How many expunged UIDs are remembered for [`State::changes_since`]; older expunges are
/// answered with `None` (callers then compare full UID lists).
const MAX_TOMBSTONES: usize = 100_000;

#[derive(Clone, Debug)]
pub struct Entry {
    pub meta: MessageMeta,
    /// Maildir base name of the message file.
    pub base: Box<str>,
}

#[derive(Debug)]
pub struct State {
    pub uid_validity: UidValidity,
    /// Next UID to assign; never decreases.
    pub uid_next: u32,
    pub highest_modseq: ModSeq,
    /// UIDs at or above this are \Recent (not yet reported to any session).
    pub first_recent: u32,
    /// Ascending by UID.
    pub messages: Vec<Entry>,
    pub total_size: u64,
    /// (modseq, uid) of expunges, ascending by modseq.
    tombstones: Vec<(ModSeq, Uid)>,
    /// `changes_since(m)` is exact for every `m >= remembered_since`.
    remembered_since: ModSeq,
    /// Records in the journal that no longer describe live state (compaction input).
    pub dead_records: u64,
}

impl State {
    pub fn new(uid_validity: UidValidity) -> State {
        State {
            uid_validity,
            uid_next: 1,
            highest_modseq: ModSeq(0),
            first_recent: 1,
            messages: Vec::new(),
            total_size: 0,
            tombstones: Vec::new(),
            remembered_since: ModSeq(0),
            dead_records: 0,
        }
    }

    pub fn position(&self, uid: Uid) -> Option<usize> {
        self.messages
            .binary_search_by_key(&uid, |e| e.meta.uid)
            .ok()
    }

    pub fn get(&self, uid: Uid) -> Option<&Entry> {
        self.position(uid).map(|i| &self.messages[i])
    }

    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Append {
                uid,
                modseq,
                internal_date,
                size,
                flags,
                base,
            } => {
                self.bump(*modseq);
                if uid.get() < self.uid_next {
                    // Already known (a record replayed twice can only be a bug elsewhere; the
                    // first copy wins and UIDs stay unique).
                    self.dead_records += 1;
                    return;
                }
                self.uid_next = uid.get().saturating_add(1);
                self.total_size += size;
                self.messages.push(Entry {
                    meta: MessageMeta {
                        uid: *uid,
                        modseq: *modseq,
                        flags: flags.clone(),
                        internal_date: *internal_date,
                        size: *size,
                    },
                    base: base.as_str().into(),
                });
            }
            Record::Flags { modseq, uid, flags } => {
                self.bump(*modseq);
                self.dead_records += 1;
                if let Some(i) = self.position(*uid) {
                    let meta = &mut self.messages[i].meta;
                    meta.flags = flags.clone();
                    meta.modseq = *modseq;
                }
            }
            Record::Expunge { modseq, uids } => {
                self.bump(*modseq);
                self.dead_records += 1 + uids.len() as u64;
                let mut gone = uids.clone();
                gone.sort_unstable();
                let total = &mut self.total_size;
                self.messages.retain(|e| {
                    let keep = gone.binary_search(&e.meta.uid).is_err();
                    if !keep {
                        *total -= e.meta.size;
                    }
                    keep
                });
                self.tombstones.extend(gone.iter().map(|u| (*modseq, *u)));
                if self.tombstones.len() > MAX_TOMBSTONES {
                    let cut = self.tombstones.len() - MAX_TOMBSTONES / 2;
                    self.remembered_since = self.tombstones[cut - 1].0;
                    self.tombstones.drain(..cut);
                }
            }
            Record::RecentClaimed { first_recent } => {
                self.dead_records += 1;
                self.first_recent = self.first_recent.max(*first_recent);
            }
            Record::Checkpoint {
                uid_next,
                highest_modseq,
                first_recent,
            } => {
                self.uid_next = self.uid_next.max(*uid_next);
                self.bump(*highest_modseq);
                self.first_recent = self.first_recent.max(*first_recent);
                // A compacted journal forgets old expunges.
                self.remembered_since = self.remembered_since.max(*highest_modseq);
            }
        }
    }

    fn bump(&mut self, modseq: ModSeq) {
        self.highest_modseq = self.highest_modseq.max(modseq);
    }

    /// Forget expunge history up to now (after loading a journal whose history we did not see).
    pub fn forget_history(&mut self) {
        self.tombstones.clear();
        self.remembered_since = self.highest_modseq;
    }

    pub fn status(&self) -> MailboxStatus {
        let unseen = self
            .messages
            .iter()
            .filter(|e| !e.meta.flags.contains(SystemFlag::Seen))
            .count();
        let recent = self.messages.len()
            - self
                .messages
                .partition_point(|e| e.meta.uid.get() < self.first_recent);
        MailboxStatus {
            messages: self.messages.len() as u32,
            recent: recent as u32,
            unseen: unseen as u32,
            uid_next: Uid::new(self.uid_next).unwrap_or(Uid::MIN),
            uid_validity: self.uid_validity,
            highest_modseq: self.highest_modseq,
            size: self.total_size,
        }
    }

    pub fn changes_since(&self, since: ModSeq) -> Option<Changes> {
        if since < self.remembered_since {
            return None;
        }
        let first = self.tombstones.partition_point(|(m, _)| *m <= since);
        let mut expunged: Vec<Uid> = self.tombstones[first..].iter().map(|(_, u)| *u).collect();
        expunged.sort_unstable();
        let changed = self
            .messages
            .iter()
            .filter(|e| e.meta.modseq > since)
            .map(|e| e.meta.clone())
            .collect();
        Some(Changes {
            expunged,
            changed,
            highest_modseq: self.highest_modseq,
        })
    }

    /// Records that recreate this state from scratch (for compaction).
    pub fn snapshot_records(&self) -> Vec<Record> {
        // Appends first: an Append below `uid_next` is ignored, so the checkpoint must come last.
        let mut out: Vec<Record> = self
            .messages
            .iter()
            .map(|e| Record::Append {
                uid: e.meta.uid,
                modseq: e.meta.modseq,
                internal_date: e.meta.internal_date,
                size: e.meta.size,
                flags: e.meta.flags.clone(),
                base: e.base.to_string(),
            })
            .collect();
        out.push(Record::Checkpoint {
            uid_next: self.uid_next,
            highest_modseq: self.highest_modseq,
            first_recent: self.first_recent,
        });
        out
    }
}
