//! A session's view of a mailbox: the message sequence numbers it has told its client about.
//!
//! RFC 3501 2.3.1.2 and 7.4.1: sequence numbers change only when the server tells the client
//! (EXPUNGE shifts later numbers down, EXISTS adds at the end), and EXPUNGE must not be sent while
//! a command that uses sequence numbers runs. So each session keeps its own list of UIDs and moves
//! it forward only in [`MailboxView::sync`], which returns the events to report, in order.
//! Other sessions' expunges leave this view untouched until then: the message keeps its number,
//! and reading it may fail ("expunged by another session"), as RFC 3501 allows.

use crate::mail::{MessageMeta, ModSeq, Uid};
use crate::{Mailbox, StoreResult};

/// What a sync tells the client, in the order to tell it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ViewEvent {
    /// The message at this sequence number is gone; later numbers have moved down by one.
    Expunge(u32),
    /// The mailbox now has this many messages.
    Exists(u32),
    /// This message's flags (or modseq) changed.
    Changed { seq: u32, meta: MessageMeta },
}

///
/// Memory: 12 octets per message (a UID and the modseq last reported), so thousands of idle
/// sessions on large mailboxes stay cheap.
#[derive(Clone, Debug)]
pub struct MailboxView {
    /// Ascending; index + 1 is the sequence number.
    uids: Vec<Uid>,
    /// `reported[i]`: the modseq of `uids[i]` as last reported, to tell real changes from
    /// echoes of our own (every flag change raises a message's modseq).
    reported: Vec<ModSeq>,
    /// Everything up to this modseq has been reported.
    seen: ModSeq,
}

impl MailboxView {
    /// The view of a mailbox as it is now.
    pub fn open(mailbox: &dyn Mailbox) -> StoreResult<MailboxView> {
        mailbox.refresh()?;
        let status = mailbox.status()?;
        let messages = mailbox.messages()?;
        Ok(MailboxView::of(&messages, status.highest_modseq))
    }

    /// The view of `messages` (ascending by UID, as [`Mailbox::messages`] lists them), all
    /// reported up to `highest`.
    pub fn of(messages: &[MessageMeta], highest: ModSeq) -> MailboxView {
        MailboxView {
            uids: messages.iter().map(|m| m.uid).collect(),
            reported: messages.iter().map(|m| m.modseq).collect(),
            seen: highest,
        }
    }

    pub fn len(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }

    pub fn uids(&self) -> &[Uid] {
        &self.uids
    }

    /// The UID at a 1-based sequence number.
    pub fn uid(&self, seq: u32) -> Option<Uid> {
        self.uids.get((seq as usize).checked_sub(1)?).copied()
    }

    /// The 1-based sequence number of a UID.
    pub fn seq(&self, uid: Uid) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Records that the client has been told about `meta` (e.g. in a FETCH response after its
    /// own STORE), so the next sync does not report it again.
    pub fn note(&mut self, meta: &MessageMeta) {
        if let Some(seq) = self.seq(meta.uid) {
            let at = seq as usize - 1;
            self.reported[at] = self.reported[at].max(meta.modseq);
        }
    }

    /// Brings the view up to date and returns what to tell the client. With `allow_expunge`
    /// false (a sequence-number command is running) expunges stay pending: the view keeps those
    /// numbers and reports only additions and flag changes.
    pub fn sync(
        &mut self,
        mailbox: &dyn Mailbox,
        allow_expunge: bool,
    ) -> StoreResult<Vec<ViewEvent>> {
        mailbox.refresh()?;
        let (expunged, changed, highest) = match mailbox.changes_since(self.seen)? {
            Some(c) => (c.expunged, c.changed, c.highest_modseq),
            None => {
                // History lost (compaction, restart): compare the whole lists.
                let status = mailbox.status()?;
                let now = mailbox.messages()?;
                let present: std::collections::HashSet<Uid> = now.iter().map(|m| m.uid).collect();
                let gone = self
                    .uids
                    .iter()
                    .copied()
                    .filter(|u| !present.contains(u))
                    .collect();
                (gone, now, status.highest_modseq)
            }
        };
        let mut events = Vec::new();
        let mut pending_expunge = false;
        if allow_expunge {
            // Highest UID first: removing it does not shift the numbers still to be reported.
            let mut gone: Vec<Uid> = expunged
                .into_iter()
                .filter(|u| self.seq(*u).is_some())
                .collect();
            gone.sort_unstable();
            for uid in gone.into_iter().rev() {
                if let Some(seq) = self.seq(uid) {
                    self.uids.remove(seq as usize - 1);
                    self.reported.remove(seq as usize - 1);
                    events.push(ViewEvent::Expunge(seq));
                }
            }
        } else {
            pending_expunge = expunged.iter().any(|u| self.seq(*u).is_some());
        }
        let last = self.uids.last().copied();
        let mut added = false;
        for meta in changed {
            if last.is_none_or(|l| meta.uid > l) {
                self.uids.push(meta.uid);
                self.reported.push(meta.modseq);
                added = true;
            } else if let Some(seq) = self.seq(meta.uid) {
                let at = seq as usize - 1;
                if meta.modseq > self.reported[at] {
                    self.reported[at] = meta.modseq;
                    events.push(ViewEvent::Changed { seq, meta });
                }
            }
        }
        if added {
            events.push(ViewEvent::Exists(self.len()));
        }
        // With expunges held back, `seen` must stay put so they are found again next time.
        if !pending_expunge {
            self.seen = highest;
        }
        Ok(events)
    }
}
