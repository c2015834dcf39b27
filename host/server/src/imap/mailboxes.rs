//! The authenticated state's commands (RFC 3501 6.3): SELECT/EXAMINE, CREATE, DELETE, RENAME,
//! SUBSCRIBE/UNSUBSCRIBE, LIST/LSUB, STATUS, and NAMESPACE (RFC 2342).

use std::collections::BTreeMap;

use wasmail_proto::imap::imap_types::core::{Atom, IString, QuotedChar};
use wasmail_proto::imap::imap_types::extensions::namespace::Namespace;
use wasmail_proto::imap::imap_types::flag::FlagNameAttribute;
use wasmail_proto::imap::imap_types::mailbox::{ListMailbox, Mailbox as WireName};
use wasmail_proto::imap::imap_types::response::Data;
use wasmail_proto::imap::imap_types::status::{StatusDataItem, StatusDataItemName};
use wasmail_proto::imap::names;
use wasmail_types::mail::{HIERARCHY_SEPARATOR, MailboxName, SpecialUse};

use super::commands::{AccountState, Replies};
use super::convert::{mailbox_name, wire_name};
use super::selected::{Selected, code};

/// Parses the client's name or answers the command with why it is not one.
macro_rules! name_or_answer {
    ($r:expr, $wire:expr) => {
        match mailbox_name($wire) {
            Ok(name) => name,
            Err(why) => {
                $r.no(Some(code("CANNOT")), &why);
                return;
            }
        }
    };
}

pub(super) fn select(
    state: &mut AccountState,
    r: &mut Replies,
    wire: &WireName<'_>,
    read_only: bool,
    condstore: bool,
) {
    // RFC 3501 6.3.1: a SELECT, failed or not, first deselects.
    state.selected = None;
    r.selected = Some(None);
    let name = name_or_answer!(r, wire);
    match Selected::open(&state.account, name, read_only, &state.wake, r) {
        Ok(selected) => {
            state.selected = Some(selected);
            r.selected = Some(Some(read_only));
            r.condstore |= condstore;
            let (c, verb) = if read_only {
                ("READ-ONLY", "EXAMINE")
            } else {
                ("READ-WRITE", "SELECT")
            };
            r.ok(Some(code(c)), &format!("{verb} completed"));
        }
        Err(e) => r.store_error(&e),
    }
}

pub(super) fn create(
    state: &mut AccountState,
    r: &mut Replies,
    wire: &WireName<'_>,
    uses: &[String],
) {
    let name = name_or_answer!(r, wire);
    if name.is_inbox() {
        r.no(Some(code("ALREADYEXISTS")), "INBOX always exists");
        return;
    }
    let special_use = match uses {
        [] => None,
        [one] => match SpecialUse::from_imap(one) {
            Some(u) => Some(u),
            None => {
                r.no(
                    Some(code("USEATTR")),
                    &format!("Unsupported special-use attribute {one}"),
                );
                return;
            }
        },
        _ => {
            r.no(
                Some(code("USEATTR")),
                "One special-use attribute per mailbox",
            );
            return;
        }
    };
    match state.account.create(&name, special_use) {
        Ok(()) => r.ok(None, "CREATE completed"),
        Err(e) => r.store_error(&e),
    }
}

pub(super) fn delete(state: &mut AccountState, r: &mut Replies, wire: &WireName<'_>) {
    let name = name_or_answer!(r, wire);
    if name.is_inbox() {
        r.no(Some(code("CANNOT")), "INBOX cannot be deleted");
        return;
    }
    if state.selected.as_ref().is_some_and(|s| s.name == name) {
        // The store deletes the files under a selected mailbox; deselect it first, as a
        // client that deletes its selected mailbox expects to be told.
        state.selected = None;
        r.selected = Some(None);
    }
    match state.account.delete(&name) {
        Ok(()) => r.ok(None, "DELETE completed"),
        Err(e) => r.store_error(&e),
    }
}

pub(super) fn rename(
    state: &mut AccountState,
    r: &mut Replies,
    from: &WireName<'_>,
    to: &WireName<'_>,
) {
    let from = name_or_answer!(r, from);
    let to = name_or_answer!(r, to);
    if to.is_inbox() {
        r.no(Some(code("CANNOT")), "Cannot rename to INBOX");
        return;
    }
    match state.account.rename(&from, &to) {
        Ok(()) => r.ok(None, "RENAME completed"),
        Err(e) => r.store_error(&e),
    }
}

pub(super) fn subscribe(state: &mut AccountState, r: &mut Replies, wire: &WireName<'_>, on: bool) {
    let name = name_or_answer!(r, wire);
    match state.account.set_subscribed(&name, on) {
        Ok(()) if on => r.ok(None, "SUBSCRIBE completed"),
        Ok(()) => r.ok(None, "UNSUBSCRIBE completed"),
        Err(e) => r.store_error(&e),
    }
}

/// LIST and LSUB (RFC 3501 6.3.8, 6.3.9) with RFC 3348 CHILDREN and RFC 6154 special-use
/// attributes. Patterns are matched against names in their wire form (modified UTF-7), where
/// `*` and `%` mean the same as on the decoded names: the encoded runs contain no separator.
pub(super) fn list(
    state: &mut AccountState,
    r: &mut Replies,
    reference: &WireName<'_>,
    pattern: &ListMailbox<'_>,
    subscribed_only: bool,
) {
    let verb = if subscribed_only { "LSUB" } else { "LIST" };
    let pattern = match pattern {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
    };
    let reference = wire_str(reference);
    if pattern.is_empty() {
        // RFC 3501 6.3.8: the hierarchy delimiter and the root of the reference.
        if !subscribed_only {
            let root = reference
                .split_inclusive(HIERARCHY_SEPARATOR)
                .next()
                .unwrap_or("");
            let root = names::encode(root);
            r.data(Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter: separator(),
                mailbox: root,
            });
        }
        r.ok(None, &format!("{verb} completed"));
        return;
    }
    let pattern = names::join_reference(&reference, &pattern);
    let infos = match state.account.list() {
        Ok(infos) => infos,
        Err(e) => {
            r.store_error(&e);
            return;
        }
    };
    // Every listed name, plus the levels above them that do not exist (\Noselect), in order.
    let mut entries: BTreeMap<String, (Vec<FlagNameAttribute<'static>>, MailboxName)> =
        BTreeMap::new();
    for info in &infos {
        if subscribed_only && !info.subscribed {
            continue;
        }
        let mut attrs = vec![attribute(if info.has_children {
            "HasChildren"
        } else {
            "HasNoChildren"
        })];
        if let Some(u) = info.special_use
            && !subscribed_only
        {
            attrs.push(attribute(u.as_imap().trim_start_matches('\\')));
        }
        entries.insert(info.name.as_str().to_string(), (attrs, info.name.clone()));
    }
    let existing: std::collections::HashSet<&MailboxName> = infos.iter().map(|i| &i.name).collect();
    for info in &infos {
        if subscribed_only && !info.subscribed {
            continue;
        }
        let mut parent = info.name.parent();
        while let Some(p) = parent {
            parent = p.parent();
            if !existing.contains(&p) || subscribed_only {
                entries.entry(p.as_str().to_string()).or_insert_with(|| {
                    (
                        vec![FlagNameAttribute::Noselect, attribute("HasChildren")],
                        p.clone(),
                    )
                });
            }
        }
    }
    for (attrs, name) in entries.into_values() {
        let wire = wire_name(&name);
        let wire_text = wire_str(&wire);
        if !names::list_matches(&pattern, &wire_text) {
            continue;
        }
        let item = if subscribed_only {
            Data::Lsub {
                items: attrs,
                delimiter: separator(),
                mailbox: wire,
            }
        } else {
            Data::List {
                items: attrs,
                delimiter: separator(),
                mailbox: wire,
            }
        };
        r.data(item);
    }
    r.ok(None, &format!("{verb} completed"));
}

pub(super) fn status(
    state: &mut AccountState,
    r: &mut Replies,
    wire: &WireName<'_>,
    items: &[StatusDataItemName],
) {
    let name = name_or_answer!(r, wire);
    let status = match state.account.open(&name).and_then(|m| {
        m.refresh()?;
        m.status()
    }) {
        Ok(s) => s,
        Err(e) => {
            r.store_error(&e);
            return;
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            StatusDataItemName::Messages => out.push(StatusDataItem::Messages(status.messages)),
            StatusDataItemName::Recent => out.push(StatusDataItem::Recent(status.recent)),
            StatusDataItemName::UidNext => {
                if let Some(n) = std::num::NonZeroU32::new(status.uid_next.get()) {
                    out.push(StatusDataItem::UidNext(n));
                }
            }
            StatusDataItemName::UidValidity => {
                if let Some(n) = std::num::NonZeroU32::new(status.uid_validity.get()) {
                    out.push(StatusDataItem::UidValidity(n));
                }
            }
            StatusDataItemName::Unseen => out.push(StatusDataItem::Unseen(status.unseen)),
            StatusDataItemName::HighestModSeq => {
                out.push(StatusDataItem::HighestModSeq(status.highest_modseq.0));
                r.condstore = true;
            }
            StatusDataItemName::Deleted | StatusDataItemName::DeletedStorage => {
                r.bad("STATUS DELETED is not supported");
                return;
            }
        }
    }
    r.data(Data::Status {
        mailbox: wire_name(&name),
        items: out.into(),
    });
    r.ok(None, "STATUS completed");
}

/// RFC 2342: one personal namespace, the whole account, `/` separated; no shared folders.
pub(super) fn namespace(r: &mut Replies) {
    let personal = IString::try_from("").map(|prefix| vec![Namespace::new(prefix, separator())]);
    r.data(Data::Namespace {
        personal: personal.unwrap_or_default(),
        other: Vec::new(),
        shared: Vec::new(),
    });
    r.ok(None, "NAMESPACE completed");
}

fn separator() -> Option<QuotedChar> {
    QuotedChar::try_from(HIERARCHY_SEPARATOR).ok()
}

fn attribute(name: &str) -> FlagNameAttribute<'static> {
    match Atom::try_from(name.to_string()) {
        Ok(atom) => FlagNameAttribute::from(atom),
        Err(_) => FlagNameAttribute::Noselect,
    }
}

/// A mailbox name as it was on the wire (modified UTF-7 not decoded).
pub(super) fn wire_str(name: &WireName<'_>) -> String {
    match name {
        WireName::Inbox => "INBOX".to_string(),
        WireName::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}
