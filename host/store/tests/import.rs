//! Importing an existing Maildir, as Dovecot and mbsync leave them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmail_store::{FsStore, ImportProgress, StoreConfig};
use wasmail_types::MailStore;
use wasmail_types::mail::{MailboxName, SystemFlag};

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn maildir(root: &Path, rel: &str) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(root.join(rel).join(sub)).unwrap();
    }
}

#[test]
fn imports_a_dovecot_maildir_with_folders_flags_keywords_and_subscriptions() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    maildir(s, ".");
    put(
        s,
        "cur/1700000001.M1P1.host,S=20:2,S",
        "Subject: one\r\n\r\n1\r\n",
    );
    put(
        s,
        "cur/1700000002.M1P1.host,S=20:2,RSa",
        "Subject: two\r\n\r\n2\r\n",
    );
    put(s, "new/1700000003.M1P1.host", "Subject: three\r\n\r\n3\r\n");
    put(s, "dovecot-keywords", "0 $Forwarded\n1 Work\n");
    maildir(s, ".Sent");
    put(
        s,
        ".Sent/cur/1600000000.x.host:2,S",
        "Subject: sent\r\n\r\n",
    );
    maildir(s, ".Archive.2024");
    put(
        s,
        ".Archive.2024/cur/1500000000.y.host:2,F",
        "Subject: archived\r\n\r\n",
    );
    maildir(s, ".Entw&APw-rfe");
    put(
        s,
        ".Entw&APw-rfe/cur/1.z.host:2,D",
        "Subject: draft\r\n\r\n",
    );
    // Stuff that is not mail: ignored.
    put(s, "tmp/partial", "half");
    put(s, "dovecot-uidlist", "3 V1 N4\n");
    put(s, "subscriptions", "V\t2\n\nSent\nArchive\t2024\n");

    let data = tempfile::tempdir().unwrap();
    let store = FsStore::open(data.path(), StoreConfig::default()).unwrap();
    let source = Dir::open_ambient_dir(s, ambient_authority()).unwrap();
    let mut found = 0;
    let mut done = 0;
    let report = store
        .import_maildir(&source, "imp@x", &mut |p| match p {
            ImportProgress::Found { messages } => found = messages,
            ImportProgress::Message => done += 1,
            ImportProgress::Mailbox(_) => {}
        })
        .unwrap();
    assert_eq!(
        (report.mailboxes, report.messages, report.skipped),
        (4, 6, 0)
    );
    assert_eq!((found, done), (6, 6));

    let acct = store.account("imp@x").unwrap();
    let inbox = acct.open(&MailboxName::inbox()).unwrap();
    let msgs = inbox.messages().unwrap();
    let subjects: Vec<String> = msgs
        .iter()
        .map(|m| {
            String::from_utf8(
                inbox
                    .open_message(m.uid)
                    .unwrap()
                    .read_range(0, 14)
                    .unwrap(),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        subjects,
        ["Subject: one\r\n", "Subject: two\r\n", "Subject: three"],
        "delivery order kept"
    );
    assert!(
        msgs[0].flags.contains(SystemFlag::Seen) && !msgs[0].flags.contains(SystemFlag::Answered)
    );
    assert!(
        msgs[1].flags.contains(SystemFlag::Answered) && msgs[1].flags.has_keyword("$Forwarded")
    );
    assert!(msgs[2].flags.is_empty());
    assert_eq!(
        msgs[1].internal_date.unix_seconds,
        fs::metadata(s.join("cur/1700000002.M1P1.host,S=20:2,RSa"))
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    );

    let list = acct.list().unwrap();
    let find = |n: &str| {
        list.iter()
            .find(|i| i.name.as_str() == n)
            .unwrap_or_else(|| panic!("{n} in {list:?}"))
    };
    assert!(find("Archive/2024").subscribed && find("Sent").subscribed);
    let drafts = acct.open(&MailboxName::new("Entwürfe").unwrap()).unwrap();
    assert!(
        drafts.messages().unwrap()[0]
            .flags
            .contains(SystemFlag::Draft)
    );
    let archived = acct
        .open(&MailboxName::new("Archive/2024").unwrap())
        .unwrap();
    assert_eq!(
        archived
            .open_message(archived.messages().unwrap()[0].uid)
            .unwrap()
            .read_all()
            .unwrap(),
        b"Subject: archived\r\n\r\n"
    );

    // Source untouched; running again imports nothing twice.
    assert!(s.join("new/1700000003.M1P1.host").exists());
    let again = store.import_maildir(&source, "imp@x", &mut |_| {}).unwrap();
    assert_eq!((again.messages, again.skipped), (0, 6));
    assert_eq!(inbox.messages().unwrap().len(), 3);
}

#[test]
fn imports_nested_folders_as_mbsync_writes_them() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    maildir(s, "INBOX");
    put(s, "INBOX/cur/1.a.h:2,S", "in inbox\r\n");
    maildir(s, "Lists");
    maildir(s, "Lists/rust");
    put(s, "Lists/rust/new/2.b.h", "rust list\r\n");
    let data = tempfile::tempdir().unwrap();
    let store = FsStore::open(data.path(), StoreConfig::default()).unwrap();
    let source = Dir::open_ambient_dir(s, ambient_authority()).unwrap();
    let report = store.import_maildir(&source, "n@x", &mut |_| {}).unwrap();
    assert_eq!(report.messages, 2);
    let acct = store.account("n@x").unwrap();
    assert_eq!(
        acct.open(&MailboxName::inbox())
            .unwrap()
            .status()
            .unwrap()
            .messages,
        1,
        "INBOX/ maps to INBOX"
    );
    assert_eq!(
        acct.open(&MailboxName::new("Lists/rust").unwrap())
            .unwrap()
            .status()
            .unwrap()
            .messages,
        1
    );
}
