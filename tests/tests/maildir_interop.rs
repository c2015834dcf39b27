//! The store's Maildir as another Maildir implementation (Python's `mailbox`) sees it, and mail
//! that implementation delivers straight into the Maildir as the store sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wasmail_e2e::python;
use wasmail_store::{FsStore, StoreConfig};
use wasmail_types::mail::{FlagOp, Flags, MailboxName, SystemFlag};
use wasmail_types::{DeliveryTarget, MailStore};

const LIST: &str = r#"
import mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in sorted(md.keys(), key=lambda k: md.get_message(k)["Subject"]):
    msg = md.get_message(key)
    print(msg["Subject"], msg.get_subdir(), msg.get_flags() or "-", md.get_bytes(key))
print("folders", ",".join(sorted(md.list_folders())))
"#;

const DELIVER: &str = r#"
import mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
md.add(mailbox.MaildirMessage(b"Subject: dropped by an MDA\n\nhello\n"))
"#;

#[test]
fn python_reads_what_the_store_wrote_and_the_store_adopts_what_python_delivered() {
    let data = tempfile::tempdir().unwrap();
    let store = FsStore::open(data.path(), StoreConfig::default()).unwrap();
    let inbox = DeliveryTarget {
        account: "py@example.org".into(),
        mailbox: MailboxName::inbox(),
        flags: Flags::new(),
    };
    let uids: Vec<_> = [
        "Subject: a\r\n\r\n1\r\n",
        "Subject: b\r\n\r\n2\r\n",
        "Subject: c\r\n\r\n3\r\n",
    ]
    .iter()
    .map(|m| {
        store
            .deliver_bytes(m.as_bytes(), std::slice::from_ref(&inbox))
            .unwrap()[0]
            .uid
    })
    .collect();
    let acct = store.account("py@example.org").unwrap();
    let mb = acct.open(&MailboxName::inbox()).unwrap();
    mb.store_flags(
        &uids[..1],
        FlagOp::Add,
        &Flags::from_system(&[SystemFlag::Seen, SystemFlag::Answered]),
        None,
    )
    .unwrap();
    mb.store_flags(
        &uids[1..2],
        FlagOp::Add,
        &Flags::from_system(&[SystemFlag::Deleted]),
        None,
    )
    .unwrap();
    mb.expunge(None).unwrap();
    acct.create(&MailboxName::new("Lists/Rust").unwrap(), None)
        .unwrap();

    let root = data.path().join("accounts/py@example.org");
    let seen = python(LIST, &[&root]).unwrap();
    assert_eq!(
        seen,
        "a cur RS b'Subject: a\\r\\n\\r\\n1\\r\\n'\n\
         c new - b'Subject: c\\r\\n\\r\\n3\\r\\n'\n\
         folders Archive,Drafts,Junk,Lists,Lists.Rust,Sent,Trash\n"
    );

    // An outside MDA drops a message into new/; the next process to open the mailbox indexes it.
    python(DELIVER, &[&root]).unwrap();
    drop((mb, acct, store));
    let store = FsStore::open(data.path(), StoreConfig::default()).unwrap();
    let mb = store
        .account("py@example.org")
        .unwrap()
        .open(&MailboxName::inbox())
        .unwrap();
    let msgs = mb.messages().unwrap();
    assert_eq!(msgs.len(), 3);
    let newest = msgs.last().unwrap();
    assert!(newest.uid > uids[2]);
    assert_eq!(
        mb.open_message(newest.uid).unwrap().read_all().unwrap(),
        b"Subject: dropped by an MDA\n\nhello\n"
    );
}
