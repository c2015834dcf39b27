//! The real wasmail server driven by the POP3 tools people fetch mail with: `fetchmail`,
//! `getmail` (Debian package `getmail6`) and `curl pop3://`. Mail arrives through the real SMTP
//! service; each tool delivers what it retrieved into local files (an MDA writing one file per
//! message, a Maildir, an mbox), which must be the stored messages byte for byte (with LF line
//! ends where the tool writes local mailbox files). A missing tool fails the test, naming the
//! Debian package to install.
//!
//! Every tool run is bounded: `timeout 120` around fetchmail and getmail (which also get a
//! 10 s socket timeout), `curl --max-time 60`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;
use wasmail::Service;
use wasmail_e2e::pop3::{self, deliver, lf, require, run};
use wasmail_e2e::python;
use wasmail_e2e::server::TestServer;
use wasmail_e2e::smtp::{ALICE, ALICE_PW, assert_same, assert_same_set, sample_message, start};
use wasmail_types::mail::SystemFlag;

/// How a tool reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    /// Plain POP3, no STLS.
    Plain,
    /// Plain POP3 upgraded with STLS.
    Stls,
    /// pop3s.
    Implicit,
}

impl Tls {
    fn service(self) -> Service {
        if self == Tls::Implicit {
            Service::Pop3s
        } else {
            Service::Pop3
        }
    }
}

fn samples(subjects: &[&str]) -> Vec<Vec<u8>> {
    subjects.iter().map(|s| sample_message(s)).collect()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
}

/// The files of a directory, in the numeric order of their names (`0`, `1`, ...).
fn numbered_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().parse().unwrap();
            (n, e.path())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// fetchmail.

/// A fetchmail setup: its home (run control file, UIDL ids) and an MDA that writes each
/// message it gets to `<out>/<n>` (0, 1, ...), unchanged.
struct Fetchmail {
    home: TempDir,
    out: TempDir,
}

impl Fetchmail {
    /// Polls alice's maildrop over `tls`, keeping the mail on the server or not, as `localhost`
    /// (a name the self-signed certificate has: fetchmail does not match IP addresses). `uidl`
    /// (remember what was fetched), `no rewrite` (headers untouched), `no stripcr` (CRLF kept)
    /// and `--invisible` (no Received: of its own): what the MDA gets is what POP3 sent.
    fn new(server: &TestServer, tls: Tls, keep: bool) -> Fetchmail {
        require("fetchmail", "fetchmail");
        let home = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let mda = home.path().join("mda.sh");
        std::fs::write(
            &mda,
            format!(
                "#!/bin/sh\nn=$(ls '{0}' | wc -l)\nexec cat > '{0}/'$n\n",
                out.path().display()
            ),
        )
        .unwrap();
        chmod(&mda, 0o755);
        let cert = server.certificate();
        let tls_options = match tls {
            Tls::Plain => "sslproto ''".to_owned(),
            Tls::Stls => format!(
                "sslproto 'tls1.2+' sslcertck sslcertfile '{}'",
                cert.display()
            ),
            Tls::Implicit => format!("ssl sslcertck sslcertfile '{}'", cert.display()),
        };
        let rc = home.path().join("fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "set no syslog\n\
                 poll localhost with protocol pop3 service {port} timeout 10 uidl\n\
                 \x20 user '{ALICE}' there with password '{ALICE_PW}'\n\
                 \x20 options {keep} no rewrite no stripcr {tls_options}\n\
                 \x20 mda '{mda}'\n",
                port = server.addr(tls.service()).port(),
                keep = if keep { "keep" } else { "no keep" },
                mda = mda.display(),
            ),
        )
        .unwrap();
        // fetchmail refuses a run control file others can read.
        chmod(&rc, 0o600);
        Fetchmail { home, out }
    }

    /// One poll; returns (exit code, output). 0: mail fetched; 1: no new mail.
    fn run(&self) -> (i32, String) {
        run(Command::new("timeout")
            .args(["120", "fetchmail", "--verbose", "--invisible", "--nodetach"])
            // Its own lock file: as root the default is one for the whole machine.
            .arg("--pidfile")
            .arg(self.home.path().join("fetchmail.pid"))
            .env("FETCHMAILHOME", self.home.path())
            .env("HOME", self.home.path()))
    }

    /// What the MDA got, in delivery order.
    fn delivered(&self) -> Vec<Vec<u8>> {
        numbered_files(self.out.path())
    }
}

fn fetchmail_keep(tls: Tls) {
    let server = start();
    let mut stored = deliver(&server, ALICE, &samples(&["fetchmail 1", "fetchmail 2"]));
    let fetchmail = Fetchmail::new(&server, tls, true);
    let (code, out) = fetchmail.run();
    assert_eq!(code, 0, "{out}");
    assert_same_set(fetchmail.delivered(), stored.clone(), "fetchmail --keep");
    assert_eq!(
        server.messages(ALICE, "INBOX"),
        stored,
        "kept on the server"
    );

    // Nothing new: fetched nothing (the UIDLs are remembered), still kept.
    let (code, out) = fetchmail.run();
    assert_eq!(code, 1, "1: no mail\n{out}");
    assert_eq!(fetchmail.delivered().len(), 2);

    // New mail: only it is fetched.
    stored = deliver(&server, ALICE, &samples(&["fetchmail 3"]));
    let (code, out) = fetchmail.run();
    assert_eq!(code, 0, "{out}");
    let delivered = fetchmail.delivered();
    assert_eq!(delivered.len(), 3, "{out}");
    assert_same(&delivered[2], &stored[2], "the new message");
    assert_eq!(server.messages(ALICE, "INBOX").len(), 3);
}

fn fetchmail_deletes(tls: Tls) {
    let server = start();
    let stored = deliver(
        &server,
        ALICE,
        &samples(&["fetch+delete 1", "fetch+delete 2"]),
    );
    let fetchmail = Fetchmail::new(&server, tls, false);
    let (code, out) = fetchmail.run();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("POP3> DELE 1") && out.contains("POP3> DELE 2"),
        "{out}"
    );
    assert_same_set(fetchmail.delivered(), stored, "fetchmail");
    assert!(
        server.messages(ALICE, "INBOX").is_empty(),
        "removed from the server"
    );
    assert!(server.message_files(ALICE).is_empty());
}

#[test]
fn fetchmail_keep_plain_leaves_the_mail_and_fetches_only_new_mail() {
    fetchmail_keep(Tls::Plain);
}

#[test]
fn fetchmail_keep_over_stls() {
    fetchmail_keep(Tls::Stls);
}

#[test]
fn fetchmail_default_deletes_what_it_fetched_over_stls() {
    fetchmail_deletes(Tls::Stls);
}

#[test]
fn fetchmail_default_deletes_what_it_fetched_over_pop3s() {
    fetchmail_deletes(Tls::Implicit);
}

// ---------------------------------------------------------------------------------------------
// getmail.

/// Where getmail delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Destination {
    Maildir,
    /// An mbox in the mboxrd format (`>From ` quoting).
    Mboxrd,
}

/// A getmail setup: its directory (getmailrc, the record of what it fetched) and the
/// destination inside it.
struct Getmail {
    dir: TempDir,
    destination: Destination,
}

impl Getmail {
    /// Retrieves alice's mail over plain POP3 or pop3s (`tls`), deleting it or not. Neither
    /// `Delivered-To:` nor `Received:` is added. getmail refuses to deliver as root: as root it
    /// delivers as `nobody` into directories anyone may write.
    fn new(server: &TestServer, tls: Tls, delete: bool, destination: Destination) -> Getmail {
        require("getmail", "getmail6");
        assert_ne!(tls, Tls::Stls, "getmail: plain or pop3s");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        chmod(root, 0o755);
        let path = match destination {
            Destination::Maildir => {
                let maildir = root.join("Maildir");
                for sub in ["", "new", "cur", "tmp"] {
                    std::fs::create_dir_all(maildir.join(sub)).unwrap();
                    chmod(&maildir.join(sub), 0o777);
                }
                format!("{}/", maildir.display())
            }
            Destination::Mboxrd => {
                let mbox = root.join("mbox");
                std::fs::write(&mbox, b"").unwrap();
                chmod(&mbox, 0o666);
                mbox.display().to_string()
            }
        };
        let retriever = match tls {
            Tls::Implicit => format!(
                "SimplePOP3SSLRetriever\nca_certs = {}",
                server.certificate().display()
            ),
            _ => "SimplePOP3Retriever".to_owned(),
        };
        let user = if is_root() { "user = nobody\n" } else { "" };
        std::fs::write(
            root.join("getmailrc"),
            format!(
                "[retriever]\n\
                 type = {retriever}\n\
                 server = 127.0.0.1\n\
                 port = {port}\n\
                 username = {ALICE}\n\
                 password = {ALICE_PW}\n\
                 timeout = 10\n\
                 \n\
                 [destination]\n\
                 type = {destination:?}\n\
                 path = {path}\n\
                 {user}\
                 \n\
                 [options]\n\
                 read_all = true\n\
                 delete = {delete}\n\
                 delivered_to = false\n\
                 received = false\n\
                 verbose = 2\n",
                port = server.addr(tls.service()).port(),
            ),
        )
        .unwrap();
        Getmail { dir, destination }
    }

    /// One run; returns (exit code, output).
    fn run(&self) -> (i32, String) {
        let dir = self.dir.path();
        run(Command::new("timeout")
            .args(["120", "getmail", "--getmaildir"])
            .arg(dir)
            .arg("--rcfile")
            .arg(dir.join("getmailrc")))
    }

    /// The messages delivered: the Maildir's files, or the mbox's messages (read with Python's
    /// `mailbox.mbox`, the mboxrd `>From ` quoting undone).
    fn delivered(&self) -> Vec<Vec<u8>> {
        let dir = self.dir.path();
        match self.destination {
            Destination::Maildir => ["new", "cur"]
                .iter()
                .flat_map(|sub| std::fs::read_dir(dir.join("Maildir").join(sub)).unwrap())
                .flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect(),
            Destination::Mboxrd => {
                let out = dir.join("split");
                std::fs::create_dir(&out).unwrap();
                python(PY_MBOXRD, &[&dir.join("mbox"), &out])
                    .unwrap_or_else(|e| panic!("mailbox.mbox: {e}"));
                numbered_files(&out)
            }
        }
    }
}

/// argv: mbox outdir. Writes each message of the mbox to outdir/<n>, mboxrd quoting undone.
const PY_MBOXRD: &str = r#"
import mailbox, os, re, sys
box = mailbox.mbox(sys.argv[1], create=False)
for i, key in enumerate(box.keys()):
    data = re.sub(rb'(?m)^>(>*From )', rb'\1', box.get_bytes(key))
    with open(os.path.join(sys.argv[2], str(i)), 'wb') as f:
        f.write(data)
"#;

fn getmail(tls: Tls, delete: bool, destination: Destination) {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["getmail 1", "getmail 2"]));
    let getmail = Getmail::new(&server, tls, delete, destination);
    let (code, out) = getmail.run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 messages"), "{out}");
    let expected: Vec<Vec<u8>> = stored.iter().map(|m| lf(m)).collect();
    assert_same_set(getmail.delivered(), expected, "getmail");
    let left = server.messages(ALICE, "INBOX");
    if delete {
        assert!(left.is_empty(), "delete = true: removed from the server");
        assert!(server.message_files(ALICE).is_empty());
    } else {
        assert_eq!(left, stored, "delete = false: kept on the server");
        // getmail retrieves with RETR: the mail is \Seen.
        let seen = server
            .metas(ALICE, "INBOX")
            .iter()
            .all(|m| m.flags.contains(SystemFlag::Seen));
        assert!(seen, "RETR marks \\Seen");
    }
}

#[test]
fn getmail_keeps_the_mail_with_delete_false_into_a_maildir() {
    getmail(Tls::Plain, false, Destination::Maildir);
}

#[test]
fn getmail_removes_the_mail_with_delete_true_into_an_mbox() {
    getmail(Tls::Plain, true, Destination::Mboxrd);
}

#[test]
fn getmail_over_pop3s_into_a_maildir() {
    getmail(Tls::Implicit, true, Destination::Maildir);
}

// ---------------------------------------------------------------------------------------------
// curl pop3://.

/// `curl` on `url_path` of alice's maildrop (`/`: LIST; `/N`: RETR N) with `password`, over
/// pop3s when `tls` is `Implicit` (trusting the server's certificate). Returns (exit code,
/// output, log).
fn curl(server: &TestServer, tls: Tls, password: &str, url_path: &str) -> (i32, Vec<u8>, String) {
    require("curl", "curl");
    pop3::curl(server, tls.service(), ALICE, password, url_path)
}

fn curl_list_and_retr(tls: Tls) {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["curl 1", "curl 2"]));
    let (code, list, log) = curl(&server, tls, ALICE_PW, "/");
    assert_eq!(code, 0, "{log}");
    let want: String = stored
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}\r\n", i + 1, m.len()))
        .collect();
    assert_eq!(String::from_utf8_lossy(&list), want, "{log}");
    for (i, m) in stored.iter().enumerate() {
        let (code, got, log) = curl(&server, tls, ALICE_PW, &format!("/{}", i + 1));
        assert_eq!(code, 0, "{log}");
        assert!(log.contains(&format!("> RETR {}", i + 1)), "{log}");
        assert_same(&got, m, &format!("curl RETR {}", i + 1));
    }
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

#[test]
fn curl_pop3_list_and_retr() {
    curl_list_and_retr(Tls::Plain);
}

#[test]
fn curl_pop3s_list_and_retr() {
    curl_list_and_retr(Tls::Implicit);
}

#[test]
fn curl_wrong_password_fails() {
    let server = start();
    deliver(&server, ALICE, &samples(&["curl wrong password"]));
    let (code, _, log) = curl(&server, Tls::Plain, "wrong", "/");
    // 67: CURLE_LOGIN_DENIED.
    assert_eq!(code, 67, "{log}");
    assert!(log.contains("< -ERR [AUTH] "), "{log}");
}
