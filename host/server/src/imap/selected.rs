//! The selected state (RFC 3501 6.4): one mailbox, this session's view of its sequence numbers
//! ([`MailboxView`]), the messages this session holds as `\Recent`, and the commands on them.
//!
//! Invariants: the view changes only in [`Selected::sync`] (and through the view's `note` for
//! flags the client was just told), so sequence numbers change only when the client is told;
//! every FETCH/STORE/SEARCH works from a fresh snapshot of the index, so what it reports is
//! what the store holds now.

use std::cell::OnceCell;
use std::collections::HashSet;
use std::io;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::Arc;

use wasmail_proto::imap::fetch::{self, FetchOptions};
use wasmail_proto::imap::imap_types::command::CommandBody;
use wasmail_proto::imap::imap_types::command::{FetchModifier, StoreModifier};
use wasmail_proto::imap::imap_types::core::Vec1;
use wasmail_proto::imap::imap_types::fetch::{MessageDataItem, MessageDataItemName};
use wasmail_proto::imap::imap_types::flag::{Flag, FlagPerm, StoreResponse, StoreType};
use wasmail_proto::imap::imap_types::response::{Code, CodeOther, Data};
use wasmail_proto::imap::imap_types::search::SearchKey;
use wasmail_proto::imap::imap_types::sequence::SequenceSet;
use wasmail_proto::imap::search::{self, SearchContext};
use wasmail_proto::imap::{MessageOctets, MessageRef, Structure, header_len, sequence};
use wasmail_types::mail::{FlagOp, Flags, MailboxName, MessageMeta, ModSeq, SystemFlag, Uid};
use wasmail_types::{Account, Mailbox, MailboxView, MessageContent, StoreResult, ViewEvent};

use super::commands::{Replies, Wake};
use super::convert::{self, flags_to_wire};

/// Messages per FETCH slice: the driver writes each slice's output before the next is read,
/// so a FETCH of a whole large mailbox never holds more than a slice in memory.
const FETCH_SLICE: usize = 200;
/// Literal octets per FETCH slice, whichever limit comes first.
const FETCH_SLICE_OCTETS: u64 = 8 * 1024 * 1024;

/// A response code imap-types has no variant for (RFC 5530 and others).
pub(super) fn code(name: &str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes().to_vec()))
}

pub(super) struct Selected {
    pub(super) name: MailboxName,
    mailbox: Arc<dyn Mailbox>,
    view: MailboxView,
    read_only: bool,
    /// Messages this session reports as `\Recent` (RFC 3501 2.3.2: exactly one session does).
    recent: HashSet<Uid>,
}

impl Selected {
    /// SELECT/EXAMINE: opens the mailbox and queues the responses RFC 3501 6.3.1 requires
    /// (FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY) and RFC 7162's
    /// HIGHESTMODSEQ.
    pub(super) fn open(
        account: &Arc<dyn Account>,
        name: MailboxName,
        read_only: bool,
        wake: &Arc<Wake>,
        r: &mut Replies,
    ) -> StoreResult<Selected> {
        let mailbox = account.open(&name)?;
        let listener: Arc<dyn wasmail_types::ChangeListener> = wake.clone();
        mailbox.subscribe(Arc::downgrade(&listener));
        mailbox.refresh()?;
        let status = mailbox.status()?;
        let messages = mailbox.messages()?;
        let view = MailboxView::of(&messages, status.highest_modseq);
        // EXAMINE must not change per-user state (RFC 3501 6.3.2): it leaves \Recent alone.
        let recent: HashSet<Uid> = if read_only {
            HashSet::new()
        } else {
            mailbox.claim_recent()?.into_iter().collect()
        };
        let recent_count = if read_only {
            status.recent
        } else {
            recent.len() as u32
        };
        let mut keywords: Vec<String> = Vec::new();
        let mut first_unseen = None;
        for (i, meta) in messages.iter().enumerate() {
            for k in meta.flags.keywords() {
                if !keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    keywords.push(k.clone());
                }
            }
            if first_unseen.is_none() && !meta.flags.contains(SystemFlag::Seen) {
                first_unseen = Some(i as u32 + 1);
            }
        }
        let mut flags: Vec<Flag<'static>> = vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ];
        flags.extend(keywords.iter().filter_map(|k| convert::keyword(k)));
        r.data(Data::Flags(flags.clone()));
        let permanent: Vec<FlagPerm<'static>> = if read_only {
            Vec::new()
        } else {
            let mut p: Vec<FlagPerm<'static>> = flags.into_iter().map(FlagPerm::Flag).collect();
            p.push(FlagPerm::Asterisk);
            p
        };
        r.untagged_ok(Some(Code::PermanentFlags(permanent)), "Flags permitted");
        r.data(Data::Exists(view.len()));
        r.data(Data::Recent(recent_count));
        if let Some(seq) = first_unseen.and_then(NonZeroU32::new) {
            r.untagged_ok(Some(Code::Unseen(seq)), "First unseen");
        }
        if let Some(v) = NonZeroU32::new(status.uid_validity.get()) {
            r.untagged_ok(Some(Code::UidValidity(v)), "UIDs valid");
        }
        if let Some(n) = NonZeroU32::new(status.uid_next.get()) {
            r.untagged_ok(Some(Code::UidNext(n)), "Predicted next UID");
        }
        match NonZeroU64::new(status.highest_modseq.0) {
            Some(m) => r.untagged_ok(Some(Code::HighestModSeq(m)), "Highest"),
            None => r.untagged_ok(Some(Code::NoModSeq), "No modseqs yet"),
        }
        Ok(Selected {
            name,
            mailbox,
            view,
            read_only,
            recent,
        })
    }

    /// Brings the view up to date and queues what the client must hear; see
    /// [`MailboxView::sync`] for `allow_expunge`.
    pub(super) fn sync(
        &mut self,
        r: &mut Replies,
        allow_expunge: bool,
        condstore: bool,
    ) -> StoreResult<()> {
        let events = self.view.sync(self.mailbox.as_ref(), allow_expunge)?;
        let mut grew = false;
        for event in events {
            match event {
                ViewEvent::Expunge(seq) => {
                    if let Some(seq) = NonZeroU32::new(seq) {
                        r.data(Data::Expunge(seq));
                    }
                }
                ViewEvent::Exists(n) => {
                    r.data(Data::Exists(n));
                    grew = true;
                }
                ViewEvent::Changed { seq, meta } => {
                    let items = self.flag_items(&meta, true, condstore);
                    self.push_fetch(r, seq, items);
                }
            }
        }
        if grew {
            if !self.read_only {
                self.recent.extend(self.mailbox.claim_recent()?);
            }
            let recent = self
                .view
                .uids()
                .iter()
                .filter(|u| self.recent.contains(u))
                .count();
            r.data(Data::Recent(recent as u32));
        }
        Ok(())
    }

    /// A command of the selected state.
    pub(super) fn execute(
        &mut self,
        account: &Arc<dyn Account>,
        r: &mut Replies,
        body: CommandBody<'static>,
        condstore: bool,
    ) {
        match body {
            CommandBody::Close => {
                if !self.read_only
                    && let Err(e) = self.mailbox.expunge(None)
                {
                    tracing::warn!(error = %e, "CLOSE could not expunge");
                }
                r.selected = Some(None);
                r.ok(None, "CLOSE completed");
            }
            CommandBody::Unselect => {
                r.selected = Some(None);
                r.ok(None, "UNSELECT completed");
            }
            CommandBody::Expunge => match self.mailbox.expunge(None) {
                Ok(_) => r.ok(None, "EXPUNGE completed"),
                Err(e) => r.store_error(&e),
            },
            CommandBody::ExpungeUid { sequence_set } => {
                let uids = self.uids_of(&sequence_set, true).unwrap_or_default();
                match self.mailbox.expunge(Some(&uids)) {
                    Ok(_) => r.ok(None, "UID EXPUNGE completed"),
                    Err(e) => r.store_error(&e),
                }
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                let positions = match self.positions(&sequence_set, uid) {
                    Ok(p) => p,
                    Err(why) => return r.bad(&why),
                };
                let mut changed_since = None;
                for m in &modifiers {
                    match m {
                        FetchModifier::ChangedSince(n) => changed_since = Some(ModSeq(n.get())),
                        FetchModifier::Vanished => return r.bad("VANISHED needs QRESYNC"),
                    }
                }
                let mut items = fetch::expand(&macro_or_item_names)
                    .into_iter()
                    .map(wasmail_proto::imap::imap_types::IntoStatic::into_static)
                    .collect::<Vec<MessageDataItemName<'static>>>();
                let asks_modseq = items
                    .iter()
                    .any(|i| matches!(i, MessageDataItemName::ModSeq));
                if changed_since.is_some()
                    && !items
                        .iter()
                        .any(|i| matches!(i, MessageDataItemName::Flags))
                {
                    items.push(MessageDataItemName::Flags);
                }
                let condstore = condstore || asks_modseq || changed_since.is_some();
                r.condstore |= condstore;
                let job = FetchJob {
                    positions,
                    next: 0,
                    set_seen: fetch::sets_seen(&items) && !self.read_only,
                    items,
                    options: FetchOptions {
                        uid,
                        modseq: condstore && changed_since.is_some(),
                    },
                    changed_since,
                    condstore,
                    missing: false,
                };
                job.resume(self, r);
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => self.store(
                r,
                &sequence_set,
                kind,
                response,
                &flags,
                uid,
                &modifiers,
                condstore,
            ),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                if let Err(e) = search::check_charset(charset.as_ref()) {
                    let allowed = search::SUPPORTED_CHARSETS
                        .iter()
                        .filter_map(|c| {
                            wasmail_proto::imap::imap_types::core::Charset::try_from(*c).ok()
                        })
                        .collect();
                    r.no(
                        Some(Code::BadCharset { allowed }),
                        &format!("Unsupported charset {}", e.0),
                    );
                    return;
                }
                self.search(r, criteria.as_ref(), uid);
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(account, r, &sequence_set, &mailbox, uid, false),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(account, r, &sequence_set, &mailbox, uid, true),
            other => r.bad(&format!("{} is not valid here", other.name())),
        }
    }

    /// Positions in the view that `set` names (UIDs or sequence numbers).
    fn positions(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, String> {
        if uid {
            Ok(sequence::uid_positions(set, self.view.uids()))
        } else {
            sequence::message_positions(set, self.view.len()).map_err(|e| e.to_string())
        }
    }

    fn uids_of(&self, set: &SequenceSet, uid: bool) -> Result<Vec<Uid>, String> {
        Ok(self
            .positions(set, uid)?
            .into_iter()
            .filter_map(|p| self.view.uids().get(p).copied())
            .collect())
    }

    /// FLAGS (and UID, MODSEQ) of a message, as untagged FETCH reports flag changes.
    fn flag_items(
        &self,
        meta: &MessageMeta,
        uid: bool,
        condstore: bool,
    ) -> Vec<MessageDataItem<'static>> {
        let mut items = vec![MessageDataItem::Flags(flags_to_wire(
            &meta.flags,
            self.recent.contains(&meta.uid),
        ))];
        if uid && let Some(u) = NonZeroU32::new(meta.uid.get()) {
            items.push(MessageDataItem::Uid(u));
        }
        if condstore && let Some(m) = NonZeroU64::new(meta.modseq.0) {
            items.push(MessageDataItem::ModSeq(m));
        }
        items
    }

    fn push_fetch(&self, r: &mut Replies, seq: u32, items: Vec<MessageDataItem<'static>>) {
        if let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(items)) {
            r.data(Data::Fetch { seq, items });
        }
    }

    /// The index's current entries for `uids` (ascending), missing ones left out.
    fn metas(&self, uids: &[Uid]) -> StoreResult<Vec<MessageMeta>> {
        if uids.len() <= 16 {
            let mut out = Vec::new();
            for uid in uids {
                match self.mailbox.message(*uid) {
                    Ok(m) => out.push(m),
                    Err(wasmail_types::StoreError::NoSuchMessage(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(out);
        }
        let wanted: HashSet<Uid> = uids.iter().copied().collect();
        Ok(self
            .mailbox
            .messages()?
            .into_iter()
            .filter(|m| wanted.contains(&m.uid))
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        r: &mut Replies,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        wire_flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        condstore: bool,
    ) {
        let uids = match self.uids_of(set, uid) {
            Ok(u) => u,
            Err(why) => return r.bad(&why),
        };
        let flags = match convert::flags_from_wire(wire_flags) {
            Ok(f) => f,
            Err(why) => return r.bad(&why),
        };
        let mut unchanged_since = None;
        for m in modifiers {
            let StoreModifier::UnchangedSince(n) = m;
            unchanged_since = Some(ModSeq(*n));
        }
        let condstore = condstore || unchanged_since.is_some();
        r.condstore |= condstore;
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let update = match self.mailbox.store_flags(&uids, op, &flags, unchanged_since) {
            Ok(u) => u,
            Err(e) => return r.store_error(&e),
        };
        for meta in update.updated {
            let Some(seq) = self.view.seq(meta.uid) else {
                continue;
            };
            // RFC 7162 3.2: with CONDSTORE the new MODSEQ is reported even for .SILENT.
            if response == StoreResponse::Answer || condstore {
                let mut items = if response == StoreResponse::Answer {
                    self.flag_items(&meta, uid, condstore)
                } else {
                    let mut items = Vec::new();
                    if let Some(u) = NonZeroU32::new(meta.uid.get())
                        && uid
                    {
                        items.push(MessageDataItem::Uid(u));
                    }
                    if let Some(m) = NonZeroU64::new(meta.modseq.0) {
                        items.push(MessageDataItem::ModSeq(m));
                    }
                    items
                };
                items.dedup();
                self.push_fetch(r, seq, items);
            }
            self.view.note(&meta);
        }
        if update.modified.is_empty() {
            r.ok(None, "STORE completed");
            return;
        }
        let numbers: Vec<u32> = if uid {
            update.modified.iter().map(|u| u.get()).collect()
        } else {
            let mut s: Vec<u32> = update
                .modified
                .iter()
                .filter_map(|u| self.view.seq(*u))
                .collect();
            s.sort_unstable();
            s
        };
        match convert::sequence_set(numbers) {
            Some(set) => r.ok(
                Some(Code::Modified(set)),
                "Conditional STORE failed for some messages",
            ),
            None => r.ok(None, "STORE completed"),
        }
    }

    fn search(&mut self, r: &mut Replies, criteria: &[SearchKey<'_>], uid: bool) {
        let metas = match self.mailbox.messages() {
            Ok(m) => m,
            Err(e) => return r.store_error(&e),
        };
        let context = SearchContext::new(self.view.uids());
        let with_modseq = criteria.iter().any(search::mentions_modseq);
        let mut found = Vec::new();
        let mut highest = 0u64;
        for (i, uid_here) in self.view.uids().iter().enumerate() {
            let Ok(at) = metas.binary_search_by_key(uid_here, |m| m.uid) else {
                continue; // expunged by another session since the client last heard
            };
            let meta = &metas[at];
            let octets = LazyMessage::new(self.mailbox.as_ref(), meta.uid);
            let message = MessageRef {
                seq: i as u32 + 1,
                meta,
                recent: self.recent.contains(uid_here),
                octets: &octets,
            };
            match search::matches_all(criteria, &message, &context) {
                Ok(true) => {
                    let n = if uid { uid_here.get() } else { i as u32 + 1 };
                    if let Some(n) = NonZeroU32::new(n) {
                        found.push(n);
                    }
                    highest = highest.max(meta.modseq.0);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(uid = %uid_here, error = %e, "message unreadable in SEARCH")
                }
            }
        }
        let modseq = with_modseq.then(|| NonZeroU64::new(highest)).flatten();
        if with_modseq {
            r.condstore = true;
        }
        r.data(Data::Search(found, modseq));
        r.ok(None, "SEARCH completed");
    }

    fn copy(
        &mut self,
        account: &Arc<dyn Account>,
        r: &mut Replies,
        set: &SequenceSet,
        wire: &wasmail_proto::imap::imap_types::mailbox::Mailbox<'_>,
        uid: bool,
        moving: bool,
    ) {
        let verb = if moving { "MOVE" } else { "COPY" };
        if moving && self.read_only {
            return r.no(Some(Code::ReadOnly), "Mailbox is read-only");
        }
        let uids = match self.uids_of(set, uid) {
            Ok(u) => u,
            Err(why) => return r.bad(&why),
        };
        let to = match convert::mailbox_name(wire) {
            Ok(n) => n,
            Err(why) => return r.no(Some(code("CANNOT")), &why),
        };
        if uids.is_empty() {
            return r.ok(None, &format!("{verb} completed (no messages)"));
        }
        if let Err(e) = account.open(&to) {
            return match e {
                wasmail_types::StoreError::NoSuchMailbox(_) => {
                    r.no(Some(Code::TryCreate), "No such mailbox; create it first")
                }
                e => r.store_error(&e),
            };
        }
        let result = if moving {
            account.move_messages(&self.name, &uids, &to)
        } else {
            account.copy(&self.name, &uids, &to)
        };
        let copied = match result {
            Ok(c) => c,
            Err(e) => return r.store_error(&e),
        };
        let code = match (
            NonZeroU32::new(copied.uid_validity.get()),
            convert::uid_set(copied.pairs.iter().map(|p| p.0.get())),
            convert::uid_set(copied.pairs.iter().map(|p| p.1.get())),
        ) {
            (Some(uid_validity), Some(source), Some(destination)) => Some(Code::CopyUid {
                uid_validity,
                source,
                destination,
            }),
            _ => None,
        };
        if moving {
            // RFC 6851 4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
            r.untagged_ok(code, "Moved UIDs");
            if let Err(e) = self.sync(r, true, false) {
                tracing::warn!(error = %e, "sync after MOVE failed");
            }
            r.ok(None, "MOVE completed");
        } else {
            r.ok(code, "COPY completed");
        }
    }
}

/// A FETCH in progress: the messages it names and how far it got.
#[derive(Debug)]
pub(crate) struct FetchJob {
    positions: Vec<usize>,
    next: usize,
    items: Vec<MessageDataItemName<'static>>,
    options: FetchOptions,
    set_seen: bool,
    changed_since: Option<ModSeq>,
    condstore: bool,
    /// A message was expunged by another session before it could be read.
    missing: bool,
}

impl FetchJob {
    /// Fetches the next slice; leaves itself in `r.more` if messages remain, otherwise
    /// completes the command.
    pub(super) fn resume(mut self, selected: &mut Selected, r: &mut Replies) {
        let end = (self.next + FETCH_SLICE).min(self.positions.len());
        // Metas are read for the window; a slice may stop early on the octet budget.
        let uids: Vec<Uid> = self.positions[self.next..end]
            .iter()
            .filter_map(|p| selected.view.uids().get(*p).copied())
            .collect();
        let mut metas = match selected.metas(&uids) {
            Ok(m) => m,
            Err(e) => return r.store_error(&e),
        };
        if let Some(since) = self.changed_since {
            metas.retain(|m| m.modseq > since);
        }
        self.missing |= metas.len() < uids.len() && self.changed_since.is_none();
        // Messages this FETCH marks \Seen: their new FLAGS go out with the data.
        let mut newly_seen: HashSet<Uid> = HashSet::new();
        if self.set_seen {
            let unseen: Vec<Uid> = metas
                .iter()
                .filter(|m| !m.flags.contains(SystemFlag::Seen))
                .map(|m| m.uid)
                .collect();
            if !unseen.is_empty() {
                match selected.mailbox.store_flags(
                    &unseen,
                    FlagOp::Add,
                    &Flags::from_system(&[SystemFlag::Seen]),
                    None,
                ) {
                    Ok(update) => {
                        newly_seen.extend(unseen.iter().copied());
                        for fresh in update.updated {
                            if let Ok(i) = metas.binary_search_by_key(&fresh.uid, |m| m.uid) {
                                metas[i] = fresh;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not set \\Seen"),
                }
            }
        }
        let mut octets_out = 0u64;
        let window: Vec<Uid> = uids;
        let start = self.next;
        for (k, uid) in window.iter().enumerate() {
            self.next = start + k + 1;
            let Ok(at) = metas.binary_search_by_key(uid, |m| m.uid) else {
                continue;
            };
            let meta = &metas[at];
            let Some(seq) = selected.view.seq(meta.uid) else {
                continue;
            };
            let octets = LazyMessage::new(selected.mailbox.as_ref(), meta.uid);
            let message = MessageRef {
                seq,
                meta,
                recent: selected.recent.contains(&meta.uid),
                octets: &octets,
            };
            let was_seen = !newly_seen.contains(&meta.uid);
            match fetch::fetch(&message, &self.items, &self.options) {
                Ok(mut items) => {
                    // \Seen just set: the client hears the new FLAGS (RFC 3501 6.4.5).
                    let flags_asked = items.iter().any(|i| matches!(i, MessageDataItem::Flags(_)));
                    if self.set_seen && !was_seen && !flags_asked {
                        items.push(MessageDataItem::Flags(flags_to_wire(
                            &meta.flags,
                            message.recent,
                        )));
                    }
                    if self.condstore
                        && !items
                            .iter()
                            .any(|i| matches!(i, MessageDataItem::ModSeq(_)))
                        && (self.changed_since.is_some() || self.set_seen && !was_seen)
                        && let Some(m) = NonZeroU64::new(meta.modseq.0)
                    {
                        items.push(MessageDataItem::ModSeq(m));
                    }
                    octets_out += literal_octets(&items);
                    selected.push_fetch(r, seq, items);
                    if self.set_seen
                        || self
                            .items
                            .iter()
                            .any(|i| matches!(i, MessageDataItemName::Flags))
                    {
                        selected.view.note(meta);
                    }
                }
                Err(e) => {
                    tracing::debug!(uid = %meta.uid, error = %e, "message unreadable in FETCH");
                    self.missing = true;
                }
            }
            if octets_out >= FETCH_SLICE_OCTETS {
                break;
            }
        }
        if self.next < self.positions.len() {
            r.more = Some(self);
            return;
        }
        // RFC 3501 6.4.8: a UID FETCH leaves out what no longer exists; a FETCH by sequence
        // number says NO for messages expunged by another session (RFC 2180 4.1.2).
        if self.missing && !self.options.uid {
            r.no(
                Some(code("EXPUNGEISSUED")),
                "Some messages were expunged by another session before they could be fetched",
            );
        } else {
            r.ok(None, "FETCH completed");
        }
    }
}

/// Octets of literal data in FETCH items (what the slice budget counts).
fn literal_octets(items: &[MessageDataItem<'_>]) -> u64 {
    items
        .iter()
        .map(|i| match i {
            MessageDataItem::BodyExt { data, .. } => {
                data.0.as_ref().map_or(0, |d| d.as_ref().len())
            }
            MessageDataItem::Rfc822(d)
            | MessageDataItem::Rfc822Text(d)
            | MessageDataItem::Rfc822Header(d) => d.0.as_ref().map_or(0, |d| d.as_ref().len()),
            _ => 0,
        } as u64)
        .sum()
}

/// A stored message read only as far as asked: the header alone for header items, the whole
/// message once for anything else.
struct LazyMessage<'a> {
    mailbox: &'a dyn Mailbox,
    uid: Uid,
    content: OnceCell<Box<dyn MessageContent>>,
    header: OnceCell<Vec<u8>>,
    whole: OnceCell<Vec<u8>>,
}

impl<'a> LazyMessage<'a> {
    fn new(mailbox: &'a dyn Mailbox, uid: Uid) -> LazyMessage<'a> {
        LazyMessage {
            mailbox,
            uid,
            content: OnceCell::new(),
            header: OnceCell::new(),
            whole: OnceCell::new(),
        }
    }

    fn content(&self) -> io::Result<&dyn MessageContent> {
        if self.content.get().is_none() {
            let opened = self
                .mailbox
                .open_message(self.uid)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let _ = self.content.set(opened);
        }
        self.content
            .get()
            .map(|c| c.as_ref())
            .ok_or_else(|| io::Error::other("message not open"))
    }
}

impl MessageOctets for LazyMessage<'_> {
    fn header(&self) -> io::Result<&[u8]> {
        if let Some(whole) = self.whole.get() {
            return Ok(&whole[..header_len(whole)]);
        }
        if self.header.get().is_none() {
            let header = self.content()?.read_header()?;
            let _ = self.header.set(header);
        }
        Ok(self.header.get().map(Vec::as_slice).unwrap_or_default())
    }

    fn whole(&self) -> io::Result<&[u8]> {
        if self.whole.get().is_none() {
            let whole = self.content()?.read_all()?;
            let _ = self.whole.set(whole);
        }
        Ok(self.whole.get().map(Vec::as_slice).unwrap_or_default())
    }

    fn structure(&self) -> Option<Structure> {
        Structure::from_bytes(&self.mailbox.cached(self.uid)?)
    }

    fn computed(&self, structure: &Structure) {
        if let Some(bytes) = structure.to_bytes() {
            self.mailbox.set_cached(self.uid, &bytes);
        }
    }
}
