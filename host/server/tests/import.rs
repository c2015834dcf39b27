//! `wasmail import maildir` against a Maildir written by another implementation (Python's
//! `mailbox` module), and the result read back by that same implementation.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn wasmail(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_wasmail"))
        .args(args)
        .output()
}

fn python(script: &str, args: &[&Path]) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("python failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

const WRITE_SOURCE: &str = r#"
import mailbox, sys
md = mailbox.Maildir(sys.argv[1], create=True)
m = mailbox.MaildirMessage(b"From: a@example.org\r\nSubject: read and answered\r\n\r\nbody one\r\n.dot line\r\n")
m.set_subdir("cur"); m.set_flags("RS")
md.add(m)
m = mailbox.MaildirMessage(b"Subject: unread\r\n\r\nbody two\r\n")
md.add(m)
sent = md.add_folder("Sent")
m = mailbox.MaildirMessage(b"Subject: sent one\r\n\r\nhi\r\n")
m.set_subdir("cur"); m.set_flags("S")
sent.add(m)
"#;

const READ_BACK: &str = r#"
import mailbox, sys, hashlib
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
def dump(name, box):
    for key in sorted(box.keys(), key=lambda k: box.get_message(k)["Subject"]):
        msg = box.get_message(key)
        data = box.get_bytes(key)
        print(name, msg["Subject"], msg.get_subdir(), msg.get_flags(), len(data), hashlib.sha256(data).hexdigest()[:16])
dump("INBOX", md)
print("folders", ",".join(sorted(md.list_folders())))
dump("Sent", md.get_folder("Sent"))
"#;

#[test]
fn imports_a_maildir_written_by_python_and_python_reads_the_result() -> TestResult {
    let src = tempfile::tempdir()?;
    let src = src.path().join("Maildir");
    let data = tempfile::tempdir()?;
    python(WRITE_SOURCE, &[&src])?;
    let data_dir = data.path().to_str().ok_or("utf-8")?;
    let src_dir = src.to_str().ok_or("utf-8")?;

    let out = wasmail(&[
        "import",
        "maildir",
        src_dir,
        "--account",
        "User@Example.org",
        "--no-progress",
        "--data-dir",
        data_dir,
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported 3 messages"), "{stdout}");
    assert!(stdout.contains("0 already present"), "{stdout}");

    // The account is a Maildir another tool can read: folders, flags and sizes as imported.
    let account = data.path().join("accounts/user@example.org");
    let seen = python(READ_BACK, &[&account])?;
    // Python sees the same messages, subdirs, flags and byte counts in our account as in the
    // Maildir it wrote; only the folder list differs (the account's default folders).
    let original = python(READ_BACK, &[&src])?;
    assert_eq!(
        original.replace("folders Sent", "folders Archive,Drafts,Junk,Sent,Trash"),
        seen
    );
    let expected = seen.clone();
    assert!(
        seen.starts_with("INBOX read and answered cur RS "),
        "{seen}"
    );
    assert!(seen.contains("INBOX unread new  "), "{seen}");

    // Again: nothing imported twice.
    let out = wasmail(&[
        "import",
        "maildir",
        src_dir,
        "--account",
        "user@example.org",
        "--no-progress",
        "--data-dir",
        data_dir,
    ])?;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        "imported 0 messages (0 bytes) into 2 mailboxes of user@example.org; 3 already present"
    ));
    assert_eq!(python(READ_BACK, &[&account])?, expected);
    Ok(())
}

#[test]
fn import_errors_are_reported_not_panicked() -> TestResult {
    let data = tempfile::tempdir()?;
    let data_dir = data.path().to_str().ok_or("utf-8")?;
    let out = wasmail(&[
        "import",
        "maildir",
        "/nonexistent/maildir",
        "--account",
        "a@b",
        "--data-dir",
        data_dir,
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("wasmail: error: cannot open the Maildir /nonexistent/maildir: "),
        "{err}"
    );

    let out = wasmail(&[
        "import",
        "maildir",
        data_dir,
        "--account",
        "not an address",
        "--data-dir",
        data_dir,
    ])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad account address"));

    let out = wasmail(&["import", "maildir", data_dir])?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --account is a usage error"
    );
    Ok(())
}
