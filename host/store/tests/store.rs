//! The store's operations, driven through the same traits the protocols use, checked against
//! what is on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use wasmail_store::{FsStore, StoreConfig};
use wasmail_types::mail::{
    FlagOp, Flags, InternalDate, MailboxName, ModSeq, SpecialUse, SystemFlag, Uid,
};
use wasmail_types::{
    ChangeListener, DeliveryTarget, MailStore, Mailbox, MailboxView, StoreError, ViewEvent,
};

fn name(s: &str) -> MailboxName {
    MailboxName::new(s).unwrap()
}

fn open(dir: &Path) -> FsStore {
    FsStore::open(dir, StoreConfig::default()).unwrap()
}

fn account_root(data: &Path, id: &str) -> PathBuf {
    data.join("accounts").join(id)
}

fn append(mb: &dyn Mailbox, body: &str) -> Uid {
    mb.append(&mut body.as_bytes(), &Flags::new(), None)
        .unwrap()
        .1
}

fn seen() -> Flags {
    Flags::from_system(&[SystemFlag::Seen])
}

fn deleted() -> Flags {
    Flags::from_system(&[SystemFlag::Deleted])
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn new_account_has_the_usual_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("Alice@Example.org").unwrap();
    assert_eq!(acct.id(), "alice@example.org");
    let list = acct.list().unwrap();
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    );
    assert!(list.iter().all(|i| i.subscribed && !i.has_children));
    let uses: Vec<Option<SpecialUse>> = list.iter().map(|i| i.special_use).collect();
    assert_eq!(
        uses,
        [
            None,
            Some(SpecialUse::Archive),
            Some(SpecialUse::Drafts),
            Some(SpecialUse::Junk),
            Some(SpecialUse::Sent),
            Some(SpecialUse::Trash)
        ]
    );
    // Standard Maildir++ layout on disk.
    let root = account_root(tmp.path(), "alice@example.org");
    for d in [
        "cur",
        "new",
        "tmp",
        ".Sent/cur",
        ".Sent/new",
        ".Sent/tmp",
        ".Trash/cur",
    ] {
        assert!(root.join(d).is_dir(), "{d}");
    }
}

#[test]
fn hostile_mailbox_names_stay_inside_the_account() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("bob@x").unwrap();
    let hostile = [
        "..",
        "../escape",
        "../../etc/passwd-ish",
        "a/../../b",
        ".hidden",
        "x.y",
        "~",
        "\\",
        "a\\..\\b",
    ];
    for n in hostile {
        acct.create(&name(n), None)
            .unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    // Nothing appeared outside the account directory...
    let outside: Vec<String> = std::fs::read_dir(tmp.path().join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(outside, ["bob@x"]);
    let top: HashSet<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        top,
        HashSet::from(["accounts".to_owned(), "spool".to_owned()])
    );
    // ...every folder is a direct child of the account root whose name starts with a dot...
    let root = account_root(tmp.path(), "bob@x");
    for e in std::fs::read_dir(&root).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            [
                "cur",
                "new",
                "tmp",
                "wasmail-index",
                "wasmail-lock",
                "wasmail-account",
                "wasmail-account.lock"
            ]
            .contains(&n.as_str())
                || (n.starts_with('.') && n.len() > 1 && n != ".."),
            "unexpected entry {n}"
        );
    }
    // ...and each name comes back exactly as created, with the implied parents.
    let listed: HashSet<String> = acct
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.name.to_string())
        .collect();
    for n in hostile {
        assert!(listed.contains(n), "{n} missing from {listed:?}");
    }
    assert!(listed.contains("a/.."), "parent levels are created");
    // Names the type refuses never reach the store.
    for bad in ["", "/abs", "a//b", "nul\0", "cr\r", "star*", "pct%"] {
        assert!(MailboxName::new(bad).is_err(), "{bad:?}");
    }
    // Hostile account ids stay under accounts/.
    for id in ["../evil", "..", "/etc", "a/b"] {
        store.account(id).unwrap();
    }
    let top: HashSet<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        top,
        HashSet::from(["accounts".to_owned(), "spool".to_owned()])
    );
}

#[test]
fn folder_create_rename_with_children_delete_and_subscriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("c@x").unwrap();
    acct.create(&name("Work/Projects/2024"), None).unwrap();
    assert!(matches!(
        acct.create(&name("Work"), None),
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        acct.create(&name("inbox"), None),
        Err(StoreError::MailboxExists(_))
    ));
    let mb = acct.open(&name("Work/Projects")).unwrap();
    let uid = append(mb.as_ref(), "Subject: kept\r\n\r\nbody\r\n");
    acct.set_subscribed(&name("Work/Projects"), true).unwrap();

    let info = |n: &str| {
        acct.list()
            .unwrap()
            .into_iter()
            .find(|i| i.name.as_str() == n)
    };
    assert!(info("Work").unwrap().has_children && info("Work/Projects").unwrap().has_children);
    assert!(!info("Work/Projects/2024").unwrap().has_children);

    acct.rename(&name("Work"), &name("Job")).unwrap();
    assert!(info("Work").is_none() && info("Work/Projects").is_none());
    assert!(info("Job").is_some() && info("Job/Projects/2024").is_some());
    assert!(
        info("Job/Projects").unwrap().subscribed,
        "subscription follows the rename"
    );
    // The handle opened before the rename still works and shows its new name.
    assert_eq!(mb.name().as_str(), "Job/Projects");
    assert_eq!(mb.messages().unwrap()[0].uid, uid);
    let reopened = acct.open(&name("Job/Projects")).unwrap();
    assert_eq!(
        reopened.open_message(uid).unwrap().read_all().unwrap(),
        b"Subject: kept\r\n\r\nbody\r\n"
    );
    assert!(matches!(
        acct.open(&name("Work/Projects")),
        Err(StoreError::NoSuchMailbox(_))
    ));

    assert!(matches!(
        acct.rename(&name("Job"), &name("Job/Below")),
        Err(StoreError::NotPermitted(_))
    ));
    assert!(matches!(
        acct.rename(&name("Job"), &name("Sent")),
        Err(StoreError::MailboxExists(_))
    ));
    assert!(matches!(
        acct.rename(&name("Nope"), &name("X")),
        Err(StoreError::NoSuchMailbox(_))
    ));

    // Delete removes the mailbox and its messages but not its children.
    acct.delete(&name("Job/Projects")).unwrap();
    assert!(info("Job/Projects").is_none() && info("Job/Projects/2024").is_some());
    assert!(
        matches!(mb.messages(), Err(StoreError::NoSuchMailbox(_))),
        "open handle sees the delete"
    );
    assert!(matches!(
        acct.delete(&name("INBOX")),
        Err(StoreError::NotPermitted(_))
    ));
    let root = account_root(tmp.path(), "c@x");
    assert!(!root.join(".Job.Projects").exists() && root.join(".Job.Projects.2024").exists());
    assert!(files(&root).iter().all(|f| !f.starts_with("wasmail-trash")));

    acct.set_subscribed(&name("Sent"), false).unwrap();
    assert!(!info("Sent").unwrap().subscribed);
    // Special-use follows a rename and survives reopening the store.
    acct.rename(&name("Sent"), &name("Sent Items")).unwrap();
    drop(acct);
    drop(store);
    let store = open(tmp.path());
    let acct = store.account("c@x").unwrap();
    let sent = acct
        .list()
        .unwrap()
        .into_iter()
        .find(|i| i.name.as_str() == "Sent Items")
        .unwrap();
    assert_eq!(sent.special_use, Some(SpecialUse::Sent));
    assert!(!sent.subscribed);
}

#[test]
fn renaming_inbox_moves_its_messages_and_leaves_it_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("d@x").unwrap();
    let inbox = acct.open(&MailboxName::inbox()).unwrap();
    append(inbox.as_ref(), "one\r\n");
    append(inbox.as_ref(), "two\r\n");
    acct.create(&name("INBOX/Child"), None).unwrap();
    acct.rename(&MailboxName::inbox(), &name("Old Mail"))
        .unwrap();
    assert_eq!(inbox.status().unwrap().messages, 0);
    let old = acct.open(&name("Old Mail")).unwrap();
    let bodies: Vec<Vec<u8>> = old
        .messages()
        .unwrap()
        .iter()
        .map(|m| old.open_message(m.uid).unwrap().read_all().unwrap())
        .collect();
    assert_eq!(bodies, [b"one\r\n".to_vec(), b"two\r\n".to_vec()]);
    assert!(
        acct.list()
            .unwrap()
            .iter()
            .any(|i| i.name.as_str() == "INBOX/Child"),
        "INBOX's children stay"
    );
}

#[test]
fn append_read_flags_and_status() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("e@x").unwrap();
    let mb = acct.open(&MailboxName::inbox()).unwrap();
    let st0 = mb.status().unwrap();
    assert_eq!(
        (st0.messages, st0.uid_next.get(), st0.highest_modseq),
        (0, 1, ModSeq(0))
    );

    let body = "From: a@x\r\nSubject: hi\r\n\r\nline 1\r\n.line 2\r\n";
    let date = InternalDate {
        unix_seconds: 1_700_000_000,
        offset_minutes: -300,
    };
    let (v, u1) = mb
        .append(&mut body.as_bytes(), &Flags::new(), Some(date))
        .unwrap();
    assert_eq!(v, st0.uid_validity);
    let mut flagged = Flags::from_system(&[SystemFlag::Flagged]);
    assert!(flagged.add_keyword("$Important"));
    let (_, u2) = mb.append(&mut &b"second\r\n"[..], &flagged, None).unwrap();
    assert!(u2 > u1);

    let m1 = mb.message(u1).unwrap();
    assert_eq!((m1.size, m1.internal_date), (body.len() as u64, date));
    let content = mb.open_message(u1).unwrap();
    assert_eq!(content.read_all().unwrap(), body.as_bytes());
    assert_eq!(content.read_range(11, 13).unwrap(), b"Subject: hi\r\n");
    assert_eq!(
        content.read_range(body.len() as u64 - 3, 100).unwrap(),
        b"2\r\n",
        "range clamps at the end"
    );
    assert!(content.read_range(10_000, 5).unwrap().is_empty());

    // A message without flags sits in new/, one with flags in cur/ with Maildir info letters.
    let root = account_root(tmp.path(), "e@x");
    let on_disk = files(&root);
    assert_eq!(on_disk.iter().filter(|f| f.starts_with("new/")).count(), 1);
    assert!(
        on_disk
            .iter()
            .any(|f| f.starts_with("cur/") && f.ends_with(":2,F")),
        "{on_disk:?}"
    );

    let st = mb.status().unwrap();
    assert_eq!(
        (st.messages, st.recent, st.unseen, st.uid_next.get()),
        (2, 2, 2, u2.get() + 1)
    );
    assert_eq!(st.size, body.len() as u64 + 8);

    let before = mb.message(u1).unwrap().modseq;
    let upd = mb
        .store_flags(&[u1, u2], FlagOp::Add, &seen(), None)
        .unwrap();
    assert_eq!(upd.updated.len(), 2);
    assert!(
        upd.updated
            .iter()
            .all(|m| m.flags.contains(SystemFlag::Seen) && m.modseq > before)
    );
    assert!(
        upd.updated[1].flags.has_keyword("$important"),
        "Add keeps other flags"
    );
    assert_eq!(mb.status().unwrap().unseen, 0);
    // The file names follow: u1 moved from new/ to cur/ with S, u2 has FS.
    let on_disk = files(&root);
    assert!(
        on_disk.iter().all(|f| !f.starts_with("new/")),
        "{on_disk:?}"
    );
    assert_eq!(
        on_disk.iter().filter(|f| f.ends_with(":2,S")).count(),
        1,
        "{on_disk:?}"
    );
    assert_eq!(
        on_disk.iter().filter(|f| f.ends_with(":2,FS")).count(),
        1,
        "{on_disk:?}"
    );

    // Replace, Remove, and a no-op that must not bump the modseq.
    let upd = mb
        .store_flags(
            &[u2],
            FlagOp::Replace,
            &Flags::from_system(&[SystemFlag::Answered]),
            None,
        )
        .unwrap();
    assert_eq!(
        upd.updated[0].flags,
        Flags::from_system(&[SystemFlag::Answered])
    );
    let highest = mb.status().unwrap().highest_modseq;
    let upd = mb
        .store_flags(&[u2], FlagOp::Remove, &seen(), None)
        .unwrap();
    assert_eq!(upd.updated[0].modseq, mb.message(u2).unwrap().modseq);
    assert_eq!(
        mb.status().unwrap().highest_modseq,
        highest,
        "no change, no new modseq"
    );

    // CONDSTORE UNCHANGEDSINCE: a message modified after the given modseq is left alone.
    let m2 = mb.message(u2).unwrap().modseq;
    let upd = mb
        .store_flags(&[u1, u2], FlagOp::Add, &deleted(), Some(ModSeq(m2.0 - 1)))
        .unwrap();
    assert_eq!(upd.modified, [u2]);
    assert_eq!(upd.updated.len(), 1);
    assert!(!mb.message(u2).unwrap().flags.contains(SystemFlag::Deleted));

    // Unknown UIDs are skipped; reading one is an error.
    let none = Uid::new(999).unwrap();
    assert!(
        mb.store_flags(&[none], FlagOp::Add, &seen(), None)
            .unwrap()
            .updated
            .is_empty()
    );
    assert!(matches!(
        mb.open_message(none),
        Err(StoreError::NoSuchMessage(_))
    ));
}

#[test]
fn recent_is_claimed_by_exactly_one_session() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mb = store
        .account("f@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let a = append(mb.as_ref(), "a\r\n");
    let b = append(mb.as_ref(), "b\r\n");
    assert_eq!(mb.status().unwrap().recent, 2);
    assert_eq!(mb.claim_recent().unwrap(), [a, b]);
    assert!(mb.claim_recent().unwrap().is_empty());
    assert_eq!(mb.status().unwrap().recent, 0);
    let c = append(mb.as_ref(), "c\r\n");
    assert_eq!(mb.status().unwrap().recent, 1);
    // Survives a restart.
    drop(mb);
    drop(store);
    let mb = open(tmp.path())
        .account("f@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    assert_eq!(mb.claim_recent().unwrap(), [c]);
}

#[test]
fn expunge_copy_move_and_uids_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("g@x").unwrap();
    let inbox = acct.open(&MailboxName::inbox()).unwrap();
    let uids: Vec<Uid> = (0..5)
        .map(|i| append(inbox.as_ref(), &format!("message {i}\r\n")))
        .collect();
    inbox
        .store_flags(
            &uids[1..3],
            FlagOp::Add,
            &Flags::from_system(&[SystemFlag::Deleted, SystemFlag::Seen]),
            None,
        )
        .unwrap();

    // UID EXPUNGE semantics: only the listed ones, and only if \Deleted.
    assert_eq!(inbox.expunge(Some(&[uids[0], uids[1]])).unwrap(), [uids[1]]);
    assert_eq!(inbox.expunge(None).unwrap(), [uids[2]]);
    let left: Vec<Uid> = inbox.messages().unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(left, [uids[0], uids[3], uids[4]]);
    let root = account_root(tmp.path(), "g@x");
    assert_eq!(
        files(&root)
            .iter()
            .filter(|f| f.starts_with("new/") || f.starts_with("cur/"))
            .count(),
        3,
        "expunged files are gone"
    );

    // COPY keeps content, flags and internal date; new UIDs in the destination.
    inbox
        .store_flags(&[uids[3]], FlagOp::Add, &seen(), None)
        .unwrap();
    let copied = acct
        .copy(
            &MailboxName::inbox(),
            &[uids[4], uids[3], uids[1]],
            &name("Archive"),
        )
        .unwrap();
    let archive = acct.open(&name("Archive")).unwrap();
    assert_eq!(copied.uid_validity, archive.status().unwrap().uid_validity);
    assert_eq!(copied.pairs.len(), 2, "expunged source UIDs are skipped");
    assert_eq!(copied.pairs[0].0, uids[3]);
    for (src, dst) in &copied.pairs {
        let s = inbox.message(*src).unwrap();
        let d = archive.message(*dst).unwrap();
        assert_eq!(
            (s.flags, s.internal_date, s.size),
            (d.flags, d.internal_date, d.size)
        );
        assert_eq!(
            inbox.open_message(*src).unwrap().read_all().unwrap(),
            archive.open_message(*dst).unwrap().read_all().unwrap()
        );
    }
    // Copies are hard links where possible: same inode, no second write of the data.
    {
        use std::os::unix::fs::MetadataExt;
        let ino = |dir: &Path| -> HashSet<u64> {
            files(dir)
                .iter()
                .filter(|f| f.starts_with("cur/") || f.starts_with("new/"))
                .map(|f| std::fs::metadata(dir.join(f)).unwrap().ino())
                .collect()
        };
        assert!(ino(&root.join(".Archive")).is_subset(&ino(&root)));
    }
    // Changing flags in one mailbox does not touch the other's copy.
    archive
        .store_flags(
            &[copied.pairs[0].1],
            FlagOp::Add,
            &Flags::from_system(&[SystemFlag::Flagged]),
            None,
        )
        .unwrap();
    assert!(
        !inbox
            .message(uids[3])
            .unwrap()
            .flags
            .contains(SystemFlag::Flagged)
    );

    // MOVE: copy then expunge from the source, regardless of \Deleted.
    let moved = acct
        .move_messages(&MailboxName::inbox(), &[uids[0]], &name("Trash"))
        .unwrap();
    assert_eq!(moved.pairs.len(), 1);
    assert!(inbox.message(uids[0]).is_err());
    let trash = acct.open(&name("Trash")).unwrap();
    assert_eq!(
        trash
            .open_message(moved.pairs[0].1)
            .unwrap()
            .read_all()
            .unwrap(),
        b"message 0\r\n"
    );

    // Expunge the highest UID, restart, append: the UID is not reused.
    let highest = *uids.last().unwrap();
    inbox
        .store_flags(&[highest], FlagOp::Add, &deleted(), None)
        .unwrap();
    inbox.expunge(None).unwrap();
    drop((inbox, archive, trash, acct, store));
    let store = open(tmp.path());
    let inbox = store
        .account("g@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let next = append(inbox.as_ref(), "after restart\r\n");
    assert!(next > highest, "{next} must be above {highest}");
}

#[test]
fn recreated_mailbox_gets_a_new_uidvalidity() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("h@x").unwrap();
    acct.create(&name("Tmp"), None).unwrap();
    let v1 = acct
        .open(&name("Tmp"))
        .unwrap()
        .status()
        .unwrap()
        .uid_validity;
    acct.delete(&name("Tmp")).unwrap();
    acct.create(&name("Tmp"), None).unwrap();
    let v2 = acct
        .open(&name("Tmp"))
        .unwrap()
        .status()
        .unwrap()
        .uid_validity;
    assert!(v2 > v1, "{v2} > {v1}");
}

#[test]
fn delivery_to_several_accounts_writes_once_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let message = b"Subject: to many\r\n\r\nhello\r\n";
    let targets: Vec<DeliveryTarget> = ["p@x", "q@x", "r@y"]
        .iter()
        .map(|a| DeliveryTarget {
            account: (*a).into(),
            mailbox: MailboxName::inbox(),
            flags: Flags::new(),
        })
        .chain([DeliveryTarget {
            account: "p@x".into(),
            mailbox: name("Junk"),
            flags: seen(),
        }])
        .collect();
    let delivered = store.deliver_bytes(message, &targets).unwrap();
    assert_eq!(delivered.len(), 4);
    let mut inodes = HashSet::new();
    for d in &delivered {
        let acct = store.account(&d.account).unwrap();
        let mb = acct.open(&d.mailbox).unwrap();
        assert_eq!(mb.open_message(d.uid).unwrap().read_all().unwrap(), message);
        let dir = account_root(tmp.path(), &d.account).join(if d.mailbox.is_inbox() {
            ".".to_owned()
        } else {
            format!(".{}", d.mailbox)
        });
        for f in files(&dir)
            .iter()
            .filter(|f| f.starts_with("new/") || f.starts_with("cur/"))
        {
            use std::os::unix::fs::MetadataExt;
            inodes.insert(std::fs::metadata(dir.join(f)).unwrap().ino());
        }
    }
    assert_eq!(inodes.len(), 1, "one file, hard-linked four times");
    assert!(
        store
            .account("p@x")
            .unwrap()
            .open(&name("Junk"))
            .unwrap()
            .message(delivered[3].uid)
            .unwrap()
            .flags
            .contains(SystemFlag::Seen)
    );

    // A target that does not exist fails the whole delivery before anything lands.
    let bad = [
        DeliveryTarget {
            account: "p@x".into(),
            mailbox: MailboxName::inbox(),
            flags: Flags::new(),
        },
        DeliveryTarget {
            account: "p@x".into(),
            mailbox: name("Nope"),
            flags: Flags::new(),
        },
    ];
    let before = store
        .account("p@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap()
        .status()
        .unwrap()
        .messages;
    assert!(matches!(
        store.deliver_bytes(message, &bad),
        Err(StoreError::NoSuchMailbox(_))
    ));
    assert_eq!(
        store
            .account("p@x")
            .unwrap()
            .open(&MailboxName::inbox())
            .unwrap()
            .status()
            .unwrap()
            .messages,
        before
    );
    assert!(
        files(&account_root(tmp.path(), "p@x"))
            .iter()
            .all(|f| !f.starts_with("tmp/")),
        "no leftovers in tmp/"
    );
}

#[test]
fn spool_then_deliver_with_trace_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mut w = store.spool().unwrap();
    std::io::Write::write_all(&mut w, b"Subject: spooled\r\n\r\nbody\r\n").unwrap();
    let spooled = w.finish().unwrap();
    assert_eq!(spooled.read_range(0, 8).unwrap(), b"Subject:");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("spool")).unwrap().count(),
        1
    );
    let t = [DeliveryTarget {
        account: "s@x".into(),
        mailbox: MailboxName::inbox(),
        flags: Flags::new(),
    }];
    let d = spooled.deliver(b"Return-Path: <a@b>\r\n", &t).unwrap();
    let mb = store
        .account("s@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    assert_eq!(
        mb.open_message(d[0].uid).unwrap().read_all().unwrap(),
        b"Return-Path: <a@b>\r\nSubject: spooled\r\n\r\nbody\r\n"
    );
    assert_eq!(mb.message(d[0].uid).unwrap().size, 46);
    drop(spooled);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("spool")).unwrap().count(),
        0,
        "dropping the spooled message removes it"
    );
}

#[derive(Default)]
struct Counter(AtomicUsize);

impl ChangeListener for Counter {
    fn changed(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn change_feed_and_session_views() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let acct = store.account("v@x").unwrap();
    let mb = acct.open(&MailboxName::inbox()).unwrap();
    let u: Vec<Uid> = (0..4)
        .map(|i| append(mb.as_ref(), &format!("m{i}\r\n")))
        .collect();

    // Two sessions, each with its own view.
    let mut a = MailboxView::open(mb.as_ref()).unwrap();
    let mut b = MailboxView::open(mb.as_ref()).unwrap();
    let counter = Arc::new(Counter::default());
    let weak: Weak<dyn ChangeListener> =
        Arc::downgrade(&(counter.clone() as Arc<dyn ChangeListener>));
    mb.subscribe(weak);

    // B deletes message 2 and expunges; a delivery adds one.
    mb.store_flags(&[u[1]], FlagOp::Add, &deleted(), None)
        .unwrap();
    mb.expunge(None).unwrap();
    let u5 = store
        .deliver_bytes(
            b"new\r\n",
            &[DeliveryTarget {
                account: "v@x".into(),
                mailbox: MailboxName::inbox(),
                flags: Flags::new(),
            }],
        )
        .unwrap()[0]
        .uid;
    assert!(
        counter.0.load(Ordering::SeqCst) >= 3,
        "listener told of each change"
    );

    // A has not been told: message 2 still has sequence number 2.
    assert_eq!(a.uid(2), Some(u[1]));
    // During a sequence-number command, expunges stay pending; the addition is reported.
    let events = a.sync(mb.as_ref(), false).unwrap();
    assert_eq!(a.uid(2), Some(u[1]));
    assert!(events.contains(&ViewEvent::Exists(5)), "{events:?}");
    // At a point where expunges may be sent, they are, with the right numbers.
    let events = a.sync(mb.as_ref(), true).unwrap();
    assert_eq!(events.first(), Some(&ViewEvent::Expunge(2)), "{events:?}");
    assert_eq!(a.uids(), [u[0], u[2], u[3], u5]);
    assert_eq!(a.seq(u5), Some(4));

    // B sees the flag change (\Deleted), then the expunge, then the new message.
    let events = b.sync(mb.as_ref(), true).unwrap();
    assert_eq!(events, [ViewEvent::Expunge(2), ViewEvent::Exists(4)]);
    assert_eq!(b.uids(), a.uids());

    // Flag changes from elsewhere arrive as Changed; our own noted changes do not echo.
    let upd = mb.store_flags(&[u[2]], FlagOp::Add, &seen(), None).unwrap();
    for m in upd.updated {
        a.note(&m);
    }
    assert!(a.sync(mb.as_ref(), true).unwrap().is_empty());
    match b.sync(mb.as_ref(), true).unwrap().as_slice() {
        [ViewEvent::Changed { seq: 2, meta }] => assert!(meta.flags.contains(SystemFlag::Seen)),
        other => panic!("{other:?}"),
    }

    // changes_since answers incrementally.
    let m = mb.status().unwrap().highest_modseq;
    mb.store_flags(&[u[3]], FlagOp::Add, &seen(), None).unwrap();
    let changes = mb.changes_since(m).unwrap().unwrap();
    assert_eq!(
        changes.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [u[3]]
    );
    assert!(changes.expunged.is_empty());
}

#[test]
fn two_processes_share_a_mailbox() {
    // Two FsStore instances on one data dir behave like two processes: separate in-memory
    // indexes, separate file descriptions for flock.
    let tmp = tempfile::tempdir().unwrap();
    let one = open(tmp.path());
    let two = open(tmp.path());
    let mb1 = one
        .account("w@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let mb2 = two
        .account("w@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let a = append(mb1.as_ref(), "from one\r\n");
    let b = append(mb2.as_ref(), "from two\r\n");
    assert!(b > a, "the second writer caught up before assigning a UID");
    mb1.refresh().unwrap();
    assert_eq!(mb1.messages().unwrap().len(), 2);
    assert_eq!(
        mb1.open_message(b).unwrap().read_all().unwrap(),
        b"from two\r\n"
    );

    // Many writers from both sides at once: unique ascending UIDs, nothing lost.
    std::thread::scope(|s| {
        for t in 0..4 {
            let mb = if t % 2 == 0 { mb1.clone() } else { mb2.clone() };
            s.spawn(move || {
                for i in 0..25 {
                    append(mb.as_ref(), &format!("t{t} i{i}\r\n"));
                }
            });
        }
    });
    for mb in [&mb1, &mb2] {
        mb.refresh().unwrap();
        let uids: Vec<Uid> = mb.messages().unwrap().iter().map(|m| m.uid).collect();
        assert_eq!(uids.len(), 102);
        assert!(uids.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn compaction_keeps_state_and_other_processes_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let one = open(tmp.path());
    let two = open(tmp.path());
    let mb1 = one
        .account("z@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let mb2 = two
        .account("z@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let uids: Vec<Uid> = (0..20)
        .map(|i| append(mb1.as_ref(), &format!("{i}\r\n")))
        .collect();
    let index = account_root(tmp.path(), "z@x").join("wasmail-index");
    // Enough flag flips to trigger compaction (thousands of dead records).
    for i in 0..2200 {
        let op = if i % 2 == 0 {
            FlagOp::Add
        } else {
            FlagOp::Remove
        };
        mb1.store_flags(&uids[..2], op, &seen(), None).unwrap();
    }
    let len = std::fs::metadata(&index).unwrap().len();
    assert!(len < 20_000, "journal was compacted (now {len} bytes)");
    mb1.store_flags(&[uids[5]], FlagOp::Add, &deleted(), None)
        .unwrap();
    mb1.expunge(None).unwrap();
    let before = mb1.status().unwrap();
    mb2.refresh().unwrap();
    let after = mb2.status().unwrap();
    assert_eq!(
        (before.messages, before.uid_next, before.highest_modseq),
        (after.messages, after.uid_next, after.highest_modseq)
    );
    assert_eq!(mb1.messages().unwrap(), mb2.messages().unwrap());
    let next = append(mb2.as_ref(), "after compaction\r\n");
    assert!(next > *uids.last().unwrap());
}

#[test]
fn torn_index_tail_and_orphans_are_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let root = account_root(tmp.path(), "t@x");
    let (u1, u2) = {
        let store = open(tmp.path());
        let mb = store
            .account("t@x")
            .unwrap()
            .open(&MailboxName::inbox())
            .unwrap();
        (
            append(mb.as_ref(), "kept 1\r\n"),
            append(mb.as_ref(), "kept 2\r\n"),
        )
    };
    let index = root.join("wasmail-index");
    let good_len = std::fs::metadata(&index).unwrap().len();
    // A crash mid-append: half a record at the end.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&index)
            .unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]).unwrap();
    }
    // A crash after the file was moved into new/ but before its index record was durable.
    std::fs::write(
        root.join("new/1700000000.M1P1Q1.crashed,S=9"),
        b"orphan\r\n\r\n",
    )
    .unwrap();
    // A stale unfinished delivery in tmp/.
    let stale = root.join("tmp/1600000000.M1P1Q1.stale");
    std::fs::write(&stale, b"partial").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = root.join("tmp/fresh-in-progress");
    std::fs::write(&fresh, b"being written").unwrap();

    let store = open(tmp.path());
    let mb = store
        .account("t@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let msgs = mb.messages().unwrap();
    let uids: Vec<Uid> = msgs.iter().map(|m| m.uid).collect();
    assert_eq!(&uids[..2], [u1, u2]);
    assert_eq!(uids.len(), 3, "the orphan was adopted");
    assert!(uids[2] > u2);
    assert_eq!(
        mb.open_message(uids[2]).unwrap().read_all().unwrap(),
        b"orphan\r\n\r\n"
    );
    assert!(
        std::fs::metadata(&index).unwrap().len() > good_len,
        "torn bytes cut, adoption appended"
    );
    assert!(!stale.exists(), "stale tmp file removed");
    assert!(
        fresh.exists(),
        "a young tmp file may belong to a delivery in progress"
    );
    let u4 = append(mb.as_ref(), "after recovery\r\n");
    assert!(u4 > uids[2]);

    // A rescan adopts files an outside tool put into cur/, flags from the name.
    std::fs::write(
        root.join("cur/1700000001.M2P2Q2.tool:2,FS"),
        b"dropped in by mutt\r\n",
    )
    .unwrap();
    assert_eq!(
        store
            .fs_account("t@x")
            .unwrap()
            .rescan(&MailboxName::inbox())
            .unwrap(),
        1
    );
    let last = mb.messages().unwrap().pop().unwrap();
    assert_eq!(
        last.flags,
        Flags::from_system(&[SystemFlag::Flagged, SystemFlag::Seen])
    );
}

#[test]
fn listing_reads_the_index_not_the_message_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mb = store
        .account("l@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    for i in 0..50 {
        append(mb.as_ref(), &format!("{i}\r\n"));
    }
    // Take the message files away: listing, status and flags still work from the index alone.
    let root = account_root(tmp.path(), "l@x");
    for f in files(&root).iter().filter(|f| f.starts_with("new/")) {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    drop(mb);
    drop(store);
    let store = open(tmp.path());
    let mb = store
        .account("l@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    assert_eq!(mb.messages().unwrap().len(), 50);
    assert_eq!(mb.status().unwrap().messages, 50);
    assert!(matches!(
        mb.open_message(mb.messages().unwrap()[0].uid),
        Err(StoreError::NoSuchMessage(_))
    ));
}

#[test]
fn concurrent_deliveries_get_unique_ascending_uids_and_quota_adds_up() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let target = [DeliveryTarget {
        account: "k@x".into(),
        mailbox: MailboxName::inbox(),
        flags: Flags::new(),
    }];
    let all: Vec<Uid> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = &store;
                let target = &target;
                s.spawn(move || {
                    (0..20)
                        .map(|i| {
                            store
                                .deliver_bytes(format!("{t}:{i}\r\n").as_bytes(), target)
                                .unwrap()[0]
                                .uid
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let unique: HashSet<Uid> = all.iter().copied().collect();
    assert_eq!(unique.len(), 160);
    let acct = store.account("k@x").unwrap();
    let mb = acct.open(&MailboxName::inbox()).unwrap();
    let listed: Vec<Uid> = mb.messages().unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(listed.len(), 160);
    assert!(listed.windows(2).all(|w| w[0] < w[1]));
    let usage = acct.usage().unwrap();
    let bytes: u64 = mb.messages().unwrap().iter().map(|m| m.size).sum();
    assert_eq!((usage.messages, usage.bytes), (160, bytes));
}

#[test]
fn an_interrupted_account_creation_is_completed_on_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = open(tmp.path());
        store.account("i@x").unwrap();
    }
    // What a kill during creation leaves: INBOX exists, some folders do not, the metadata
    // lacks the marker written last.
    let root = account_root(tmp.path(), "i@x");
    std::fs::remove_dir_all(root.join(".Sent")).unwrap();
    std::fs::remove_dir_all(root.join(".Trash/cur")).unwrap();
    std::fs::remove_file(root.join(".Trash/wasmail-index")).unwrap();
    std::fs::write(
        root.join("wasmail-account"),
        "wasmail-account\t1\nuidvalidity\t5\n",
    )
    .unwrap();
    let store = open(tmp.path());
    let list = store.account("i@x").unwrap().list().unwrap();
    for (n, u) in [
        ("Sent", SpecialUse::Sent),
        ("Trash", SpecialUse::Trash),
        ("Drafts", SpecialUse::Drafts),
    ] {
        let info = list
            .iter()
            .find(|i| i.name.as_str() == n)
            .unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(info.special_use, Some(u));
        assert!(info.subscribed);
    }
    assert!(
        std::fs::read_to_string(root.join("wasmail-account"))
            .unwrap()
            .contains("initialized\t1")
    );
}

#[test]
fn an_expunge_batched_with_a_flag_change_removes_the_file() {
    // A flag change and an expunge of the same message that land in one group commit: the
    // unlink must hit the name the file really has, or the later rename brings it back.
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mb = store
        .account("r@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    // Already in cur/ under a name (`:2,S`) that the flag change will alter.
    let uids: Vec<Uid> = (0..60)
        .map(|i| {
            mb.append(&mut format!("m{i}\r\n").as_bytes(), &seen(), None)
                .unwrap()
                .1
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Keeps a leader busy in fsync so that the two ops below queue up together.
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                append(mb.as_ref(), "filler\r\n");
            }
        });
        for uid in &uids {
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (b2, mb2) = (barrier.clone(), mb.clone());
            s.spawn(move || {
                b2.wait();
                let mb = mb2;
                mb.store_flags(
                    &[*uid],
                    FlagOp::Add,
                    &Flags::from_system(&[SystemFlag::Deleted, SystemFlag::Seen]),
                    None,
                )
                .unwrap();
            });
            barrier.wait();
            while mb.expunge(Some(&[*uid])).unwrap().is_empty() {}
        }
        stop.store(true, Ordering::SeqCst);
    });
    let root = account_root(tmp.path(), "r@x");
    let on_disk: Vec<String> = files(&root)
        .into_iter()
        .filter(|f| f.starts_with("cur/") || f.starts_with("new/"))
        .collect();
    let msgs = mb.messages().unwrap();
    assert!(msgs.iter().all(|m| !uids.contains(&m.uid)));
    assert_eq!(
        on_disk.len(),
        msgs.len(),
        "one file per message, none resurrected: {:?}",
        on_disk
            .iter()
            .filter(|f| f.contains(":2,ST"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_message_whose_file_vanished_is_expunged_when_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let mb = store
        .account("gone@x")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let a = append(mb.as_ref(), "a\r\n");
    let b = append(mb.as_ref(), "b\r\n");
    let mut view = MailboxView::open(mb.as_ref()).unwrap();
    let root = account_root(tmp.path(), "gone@x");
    for f in files(&root).iter().filter(|f| f.starts_with("new/")) {
        if std::fs::read(root.join(f)).unwrap() == b"a\r\n" {
            std::fs::remove_file(root.join(f)).unwrap();
        }
    }
    assert!(matches!(
        mb.open_message(a),
        Err(StoreError::NoSuchMessage(_))
    ));
    assert_eq!(
        mb.messages()
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect::<Vec<_>>(),
        [b]
    );
    assert_eq!(
        view.sync(mb.as_ref(), true).unwrap(),
        [ViewEvent::Expunge(1)]
    );
    assert_eq!(mb.open_message(b).unwrap().read_all().unwrap(), b"b\r\n");
}
