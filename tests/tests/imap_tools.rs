//! The real wasmail server driven by the IMAP tools people sync and fetch mail with: `mbsync`
//! (Debian package `isync`), which keeps a local Maildir and the account in step both ways, and
//! `curl imap://`. Mail arrives through the real SMTP service; what the tools write locally must
//! be the stored messages byte for byte (with LF line ends where a tool writes local Maildir
//! files), and what they change locally (flags, new messages, deletions) must reach the store.
//!
//! A missing tool fails the test in CI (`CI` set), naming the Debian package; elsewhere the test
//! is skipped with a note saying so.
//!
//! Every tool run is bounded: `timeout 120` around mbsync (which also gets `Timeout 10`),
//! `curl --max-time 60`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use wasmail::Service;
use wasmail_e2e::imap::{deliver, message};
use wasmail_e2e::pop3::{self, lf};
use wasmail_e2e::server::TestServer;
use wasmail_e2e::smtp::{ALICE, ALICE_PW, assert_same, assert_same_set, sample_message, start};
use wasmail_e2e::{require, run};
use wasmail_types::mail::SystemFlag;

/// Whether `tool` is there to test with. Missing: in CI the test fails (naming the package);
/// elsewhere it is skipped, saying so.
fn have(tool: &str, package: &str) -> bool {
    let installed = Command::new(tool).arg("--version").output().is_ok();
    if !installed && std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED: `{tool}` is not installed (Debian package `{package}`; .ci/run installs it)"
        );
        return false;
    }
    require(tool, package);
    true
}

fn samples(subjects: &[&str]) -> Vec<Vec<u8>> {
    subjects.iter().map(|s| sample_message(s)).collect()
}

/// `message` with LF line ends turned into CRLF: how IMAP carries (and the store keeps) a
/// message a tool read from a local file.
fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 40);
    for (i, &b) in message.iter().enumerate() {
        if b == b'\n' && (i == 0 || message[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// `message` without the `X-TUID:` header field mbsync inserts into every message it
/// propagates (either way), to find it again after an interrupted sync; the rest must be
/// untouched.
fn without_tuid(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut in_header = true;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        if line == b"\n" || line == b"\r\n" {
            in_header = false;
        }
        if !(in_header && line.starts_with(b"X-TUID: ")) {
            out.extend_from_slice(line);
        }
        rest = &rest[end..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// mbsync.

/// How mbsync reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// Plain IMAP on loopback (`SSLType None`).
    None,
    /// imaps, verifying the server's own certificate.
    Implicit,
}

/// An mbsync setup: its home with the config, and the local Maildir tree under `mail/`
/// (`mail/INBOX`, `mail/Sent`, ... one Maildir per folder).
struct Mbsync {
    home: TempDir,
}

impl Mbsync {
    /// Syncs all of alice's folders (`Patterns *`) with a local Maildir tree, both ways:
    /// creating folders on either side, propagating expunges, the sync state kept in the
    /// Maildirs (`SyncState *`). LOGIN as the mechanism (over TLS, or plaintext on loopback).
    fn new(server: &TestServer, tls: Tls) -> Mbsync {
        let home = tempfile::tempdir().unwrap();
        let mail = home.path().join("mail");
        std::fs::create_dir(&mail).unwrap();
        let (service, ssl) = match tls {
            Tls::None => (Service::Imap, "SSLType None".to_owned()),
            Tls::Implicit => (
                Service::Imaps,
                format!(
                    "SSLType IMAPS\nCertificateFile {}",
                    server.certificate().display()
                ),
            ),
        };
        std::fs::write(
            home.path().join("mbsyncrc"),
            format!(
                "IMAPAccount wasmail\n\
                 Host 127.0.0.1\n\
                 Port {port}\n\
                 User {ALICE}\n\
                 Pass {ALICE_PW}\n\
                 {ssl}\n\
                 AuthMechs LOGIN\n\
                 Timeout 10\n\
                 \n\
                 IMAPStore remote\n\
                 Account wasmail\n\
                 \n\
                 MaildirStore local\n\
                 Path {mail}/\n\
                 Inbox {mail}/INBOX\n\
                 SubFolders Verbatim\n\
                 \n\
                 Channel sync\n\
                 Far :remote:\n\
                 Near :local:\n\
                 Patterns *\n\
                 Create Both\n\
                 Expunge Both\n\
                 SyncState *\n",
                port = server.addr(service).port(),
                mail = mail.display(),
            ),
        )
        .unwrap();
        Mbsync { home }
    }

    /// One sync of everything; returns (exit code, output).
    fn run(&self) -> (i32, String) {
        run(Command::new("timeout")
            .args(["120", "mbsync", "--verbose", "--config"])
            .arg(self.home.path().join("mbsyncrc"))
            .arg("--all")
            .env("HOME", self.home.path()))
    }

    /// [`Mbsync::run`], which must succeed.
    fn sync(&self) -> String {
        let (code, out) = self.run();
        assert_eq!(code, 0, "mbsync failed:\n{out}");
        out
    }

    fn folder(&self, name: &str) -> PathBuf {
        self.home.path().join("mail").join(name)
    }

    /// The message files of a local folder (new/ and cur/).
    fn files(&self, folder: &str) -> Vec<PathBuf> {
        let dir = self.folder(folder);
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// The local messages of a folder, mbsync's `X-TUID:` field left out.
    fn contents(&self, folder: &str) -> Vec<Vec<u8>> {
        self.files(folder)
            .iter()
            .map(|p| without_tuid(&std::fs::read(p).unwrap()))
            .collect()
    }

    /// The local file of the message whose content contains `needle`.
    fn file_with(&self, folder: &str, needle: &str) -> PathBuf {
        self.files(folder)
            .into_iter()
            .find(|p| {
                let c = std::fs::read(p).unwrap();
                c.windows(needle.len()).any(|w| w == needle.as_bytes())
            })
            .unwrap_or_else(|| panic!("no local message with {needle:?} in {folder}"))
    }

    /// Adds Maildir flag letters to a local message (as a mail client does): it moves to cur/
    /// with the letters in its `:2,` info, kept in ASCII order.
    fn add_flags(&self, file: &Path, letters: &str) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (base, info) = name.split_once(":2,").unwrap_or((&name, ""));
        let mut flags: Vec<char> = info.chars().chain(letters.chars()).collect();
        flags.sort_unstable();
        flags.dedup();
        let flags: String = flags.into_iter().collect();
        let cur = file.parent().unwrap().parent().unwrap().join("cur");
        std::fs::rename(file, cur.join(format!("{base}:2,{flags}"))).unwrap();
    }
}

fn mbsync_both_ways(tls: Tls) {
    if !have("mbsync", "isync") {
        return;
    }
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["mbsync one", "mbsync two"]));
    let mbsync = Mbsync::new(&server, tls);
    let out = mbsync.sync();

    // Server mail reaches the local Maildir, with LF line ends.
    assert_same_set(
        mbsync.contents("INBOX"),
        stored.iter().map(|m| lf(m)).collect(),
        "local INBOX",
    );
    // Every server folder exists locally (Create Both).
    for folder in ["Drafts", "Sent", "Trash", "Junk", "Archive"] {
        assert!(
            mbsync.folder(folder).join("cur").is_dir(),
            "{folder} not created locally:\n{out}"
        );
    }
    // Fetching did not mark anything \Seen on the server.
    assert!(
        server
            .metas(ALICE, "INBOX")
            .iter()
            .all(|m| m.flags.is_empty()),
        "{:?}",
        server.metas(ALICE, "INBOX")
    );

    // Local changes: one read, one flagged, one new message in new/, a new folder.
    mbsync.add_flags(&mbsync.file_with("INBOX", "Subject: mbsync one"), "S");
    mbsync.add_flags(&mbsync.file_with("INBOX", "Subject: mbsync two"), "F");
    let local_new = lf(&message(
        "Alice <alice@example.test>",
        "written locally",
        "put in new/ by hand",
    ));
    std::fs::write(
        mbsync
            .folder("INBOX")
            .join("new")
            .join("1700000000.e2e.localhost"),
        &local_new,
    )
    .unwrap();
    let projects = mbsync.folder("Projects");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(projects.join(sub)).unwrap();
    }
    std::fs::write(
        projects.join("new").join("1700000001.e2e.localhost"),
        lf(&message(
            "Alice <alice@example.test>",
            "a project",
            "in Projects",
        )),
    )
    .unwrap();
    let out = mbsync.sync();

    let metas = server.metas(ALICE, "INBOX");
    assert_eq!(metas.len(), 3, "the local message was uploaded:\n{out}");
    assert!(
        metas[0].flags.contains(SystemFlag::Seen),
        "{metas:?}\n{out}"
    );
    assert!(!metas[0].flags.contains(SystemFlag::Flagged), "{metas:?}");
    assert!(
        metas[1].flags.contains(SystemFlag::Flagged),
        "{metas:?}\n{out}"
    );
    assert!(!metas[1].flags.contains(SystemFlag::Seen), "{metas:?}");
    let inbox = server.messages(ALICE, "INBOX");
    assert_eq!(&inbox[..2], &stored[..], "the delivered mail is unchanged");
    assert_same(
        &without_tuid(&inbox[2]),
        &crlf(&local_new),
        "the uploaded message",
    );
    let projects = server.messages(ALICE, "Projects");
    assert_eq!(
        projects.len(),
        1,
        "a local folder is created on the server:\n{out}"
    );

    // A local deletion is expunged on the server (Expunge Both); server mail arrives.
    std::fs::remove_file(mbsync.file_with("INBOX", "Subject: mbsync two")).unwrap();
    let later = deliver(&server, ALICE, &samples(&["mbsync three"]));
    let out = mbsync.sync();
    let inbox = server.messages(ALICE, "INBOX");
    assert_eq!(
        inbox,
        [later[0].clone(), later[2].clone(), later[3].clone()],
        "mbsync two expunged:\n{out}"
    );
    assert_same_set(
        mbsync.contents("INBOX"),
        inbox.iter().map(|m| lf(&without_tuid(m))).collect(),
        "local INBOX after the second sync",
    );
    // Nothing to do: a third sync changes nothing.
    mbsync.sync();
    assert_eq!(server.messages(ALICE, "INBOX"), inbox);
    assert_eq!(mbsync.contents("INBOX").len(), 3);
}

#[test]
fn mbsync_plain_syncs_a_local_maildir_both_ways() {
    mbsync_both_ways(Tls::None);
}

#[test]
fn mbsync_over_imaps_syncs_a_local_maildir_both_ways() {
    mbsync_both_ways(Tls::Implicit);
}

// ---------------------------------------------------------------------------------------------
// curl imap://.

/// `curl` on `url_path` of alice's account (`/INBOX;UID=n`: that message) with `password`, over
/// imaps when `imaps` (trusting the server's certificate). Returns (exit code, output, log).
fn curl(
    server: &TestServer,
    imaps: bool,
    password: &str,
    url_path: &str,
) -> (i32, Vec<u8>, String) {
    let service = if imaps { Service::Imaps } else { Service::Imap };
    pop3::curl(server, service, ALICE, password, url_path)
}

fn curl_fetches_by_uid(imaps: bool) {
    if !have("curl", "curl") {
        return;
    }
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["curl 1", "curl 2"]));
    let uids: Vec<u32> = server
        .metas(ALICE, "INBOX")
        .iter()
        .map(|m| m.uid.get())
        .collect();
    for (m, uid) in stored.iter().zip(&uids) {
        let (code, got, log) = curl(&server, imaps, ALICE_PW, &format!("/INBOX;UID={uid}"));
        assert_eq!(code, 0, "{log}");
        assert_same(&got, m, &format!("curl INBOX;UID={uid}"));
    }
    // The listing names INBOX and the default folders.
    let (code, list, log) = curl(&server, imaps, ALICE_PW, "/");
    assert_eq!(code, 0, "{log}");
    let list = String::from_utf8_lossy(&list);
    for folder in ["INBOX", "Sent", "Drafts"] {
        assert!(
            list.lines()
                .any(|l| l.starts_with("* LIST ") && l.ends_with(folder)),
            "{folder} in {list}"
        );
    }
    // Reading changes no message.
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

#[test]
fn curl_imap_fetches_a_message_by_uid_byte_exact() {
    curl_fetches_by_uid(false);
}

#[test]
fn curl_imaps_fetches_a_message_by_uid_byte_exact() {
    curl_fetches_by_uid(true);
}

#[test]
fn curl_wrong_password_fails() {
    if !have("curl", "curl") {
        return;
    }
    let server = start();
    deliver(&server, ALICE, &samples(&["curl wrong password"]));
    let (code, _, log) = curl(&server, false, "wrong", "/INBOX;UID=1");
    // 67: CURLE_LOGIN_DENIED.
    assert_eq!(code, 67, "{log}");
    assert!(log.contains("NO [AUTHENTICATIONFAILED]"), "{log}");
}
