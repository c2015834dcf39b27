//! Between the store's model (wasmail-types) and IMAP's wire types (imap-types).

use std::num::NonZeroU32;

use wasmail_proto::imap::imap_types::core::{Atom, Vec1};
use wasmail_proto::imap::imap_types::datetime::DateTime;
use wasmail_proto::imap::imap_types::extensions::uidplus::{UidElement, UidSet};
use wasmail_proto::imap::imap_types::flag::{Flag, FlagFetch};
use wasmail_proto::imap::imap_types::mailbox::Mailbox as WireName;
use wasmail_proto::imap::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use wasmail_proto::imap::names;
use wasmail_types::mail::{Flags, InternalDate, MailboxName, SystemFlag};

/// A mailbox name as the client sent it, as the store names it. A trailing separator is
/// dropped (RFC 3501 6.3.3: `CREATE foo/` creates `foo`).
pub(super) fn mailbox_name(wire: &WireName<'_>) -> Result<MailboxName, String> {
    let decoded = names::decode(wire).map_err(|why| format!("Invalid mailbox name: {why}"))?;
    let trimmed = decoded.strip_suffix('/').unwrap_or(&decoded);
    MailboxName::new(trimmed).map_err(|why| format!("Invalid mailbox name: {why}"))
}

/// The wire form of a stored name.
pub(super) fn wire_name(name: &MailboxName) -> WireName<'static> {
    names::encode(name.as_str())
}

/// Flags a client asks to store. `\Recent` and unknown `\`-flags cannot be stored.
pub(super) fn flags_from_wire(wire: &[Flag<'_>]) -> Result<Flags, String> {
    let mut flags = Flags::new();
    for flag in wire {
        match flag {
            Flag::Seen => flags.insert(SystemFlag::Seen),
            Flag::Answered => flags.insert(SystemFlag::Answered),
            Flag::Flagged => flags.insert(SystemFlag::Flagged),
            Flag::Deleted => flags.insert(SystemFlag::Deleted),
            Flag::Draft => flags.insert(SystemFlag::Draft),
            Flag::Keyword(atom) => {
                if !flags.add_keyword(atom.as_ref()) {
                    return Err(format!("Cannot store keyword {}", atom.as_ref()));
                }
            }
            Flag::Extension(_) => return Err(format!("Cannot store flag {flag}")),
        }
    }
    Ok(flags)
}

/// A message's flags for a FETCH response (`\Recent` when this session holds it as recent).
pub(super) fn flags_to_wire(flags: &Flags, recent: bool) -> Vec<FlagFetch<'static>> {
    let mut out: Vec<FlagFetch<'static>> = system_flags(flags).map(FlagFetch::Flag).collect();
    out.extend(
        flags
            .keywords()
            .iter()
            .filter_map(|k| keyword(k))
            .map(FlagFetch::Flag),
    );
    if recent {
        out.push(FlagFetch::Recent);
    }
    out
}

/// The system flags set in `flags`, in RFC 3501 order.
pub(super) fn system_flags(flags: &Flags) -> impl Iterator<Item = Flag<'static>> + '_ {
    [
        (SystemFlag::Answered, Flag::Answered),
        (SystemFlag::Flagged, Flag::Flagged),
        (SystemFlag::Deleted, Flag::Deleted),
        (SystemFlag::Seen, Flag::Seen),
        (SystemFlag::Draft, Flag::Draft),
    ]
    .into_iter()
    .filter(|(s, _)| flags.contains(*s))
    .map(|(_, f)| f)
}

pub(super) fn keyword(name: &str) -> Option<Flag<'static>> {
    Atom::try_from(name.to_string()).ok().map(Flag::Keyword)
}

/// An APPEND date as the store keeps it.
pub(super) fn internal_date(date: &DateTime) -> InternalDate {
    let inner = date.as_ref();
    InternalDate {
        unix_seconds: inner.timestamp(),
        offset_minutes: (inner.offset().local_minus_utc() / 60) as i16,
    }
}

/// Ascending numbers as a compact set (`1:3,7`), for COPYUID and MODIFIED.
pub(super) fn uid_set(values: impl IntoIterator<Item = u32>) -> Option<UidSet> {
    let mut elements: Vec<UidElement> = Vec::new();
    for v in values {
        let Some(v) = NonZeroU32::new(v) else {
            continue;
        };
        match elements.last_mut() {
            Some(UidElement::Single(a)) if a.get().checked_add(1) == Some(v.get()) => {
                *elements.last_mut()? = UidElement::Range(*a, v);
            }
            Some(UidElement::Range(_, b)) if b.get().checked_add(1) == Some(v.get()) => *b = v,
            _ => elements.push(UidElement::Single(v)),
        }
    }
    Vec1::try_from(elements).ok().map(UidSet)
}

/// The same, as a sequence set (RFC 7162 MODIFIED).
pub(super) fn sequence_set(values: impl IntoIterator<Item = u32>) -> Option<SequenceSet> {
    let set = uid_set(values)?;
    let seqs: Vec<Sequence> = set
        .0
        .as_ref()
        .iter()
        .map(|e| match e {
            UidElement::Single(v) => Sequence::Single(SeqOrUid::Value(*v)),
            UidElement::Range(a, b) => Sequence::Range(SeqOrUid::Value(*a), SeqOrUid::Value(*b)),
        })
        .collect();
    Vec1::try_from(seqs).ok().map(SequenceSet)
}
