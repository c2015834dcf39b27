//! The real wasmail server driven by the command-line SMTP tools operators use: `swaks` and
//! `curl smtp://`. A missing tool fails the test, naming the Debian package to install.
//!
//! Every tool run is bounded: `swaks --timeout 10`, `curl --max-time 60`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use wasmail::Service;
use wasmail_e2e::server::{HOSTNAME, TestServer, without_trace};

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const ALICE_PW: &str = "alice-Secret-pw1";

fn start() -> TestServer {
    let server = TestServer::start();
    server.add_user(ALICE, ALICE_PW);
    server.add_user(BOB, "bob-Secret-pw2");
    server
}

/// Fails the test (never skips) when `tool` is not installed.
fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    assert!(
        found,
        "`{tool}` is not installed: install the Debian package `{package}` \
         (apt-get install {package})"
    );
}

/// Runs a tool; returns (exit code, stdout + stderr).
fn run(cmd: &mut Command) -> (i32, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&stderr));
    (status.code().unwrap_or(-1), text)
}

/// A message with lines that need dot-stuffing; what arrives must be exactly this.
fn sample_message(subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@remote.example>\r\n\
         To: alice@example.test\r\n\
         Subject: {subject}\r\n\
         Message-ID: <{}@remote.example>\r\n\
         \r\n\
         first line\r\n\
         .starts with a dot\r\n\
         ..starts with two dots\r\n\
         .\r\n\
         \x20leading space and trailing spaces   \r\n\
         \r\n\
         last line\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

/// The one message in an account's INBOX, which must also be a file in new/ or cur/.
fn only_message(server: &TestServer, account: &str) -> Vec<u8> {
    let messages = server.messages(account, "INBOX");
    assert_eq!(messages.len(), 1, "{account}: messages in INBOX");
    let files = server.message_files(account);
    assert_eq!(files.len(), 1, "{files:?}");
    let subdir = files[0].parent().unwrap().file_name().unwrap();
    assert!(subdir == "new" || subdir == "cur", "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), messages[0]);
    messages.into_iter().next().unwrap()
}

/// The first `Received:` field, unfolded.
fn received(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let start = text.find("Received: ").expect("a Received: field");
    let mut field = String::new();
    for (i, line) in text[start..].split("\r\n").enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        field.push_str(line.trim_start());
        field.push(' ');
    }
    field
}

fn message_file(dir: &Path, message: &[u8]) -> std::path::PathBuf {
    let path = dir.join("message.eml");
    std::fs::write(&path, message).unwrap();
    path
}

fn swaks(server: &TestServer, service: Service) -> Command {
    require("swaks", "swaks");
    let addr = server.addr(service);
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--helo", "client.example"])
        .args(["--timeout", "10"]);
    cmd
}

fn curl() -> Command {
    require("curl", "curl");
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--verbose", "--max-time", "60"]);
    cmd
}

// ---------------------------------------------------------------------------------------------
// swaks.

#[test]
fn swaks_delivers_byte_exact_over_plain_smtp() {
    let server = start();
    let tmp = tempfile::tempdir().unwrap();
    let message = sample_message("swaks plain");
    // swaks always sends CRLF before the terminating dot, so its --data is the message without
    // its last line end (`swaks --dump-mail` shows this).
    let file = message_file(tmp.path(), message.strip_suffix(b"\r\n").unwrap());
    let (code, out) = run(swaks(&server, Service::Smtp)
        .args(["--from", "sender@remote.example", "--to", ALICE])
        .arg("--data")
        .arg(format!("@{}", file.display())));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("<~  250 2.0.0 Ok: queued as ")
            || out.contains("<-  250 2.0.0 Ok: queued as "),
        "{out}"
    );
    let stored = only_message(&server, ALICE);
    assert_eq!(
        String::from_utf8_lossy(without_trace(&stored)),
        String::from_utf8_lossy(&message)
    );
    assert!(stored.starts_with(b"Return-Path: <sender@remote.example>\r\n"));
    assert!(received(&stored).contains(" with ESMTP id "));
}

#[test]
fn swaks_starttls_auth_plain_on_submission() {
    let server = start();
    let cert = server.certificate();
    let (code, out) = run(swaks(&server, Service::Submission)
        .args(["--from", ALICE, "--to", BOB])
        .args(["--tls", "--tls-verify", "--tls-ca-path"])
        .arg(&cert)
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            ALICE_PW,
        ])
        .args(["--header", "Subject: swaks starttls"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(
        out.contains("<~  235 2.7.0 Authentication successful"),
        "{out}"
    );
    let stored = only_message(&server, BOB);
    let rcvd = received(&stored);
    assert!(rcvd.contains(" with ESMTPSA id "), "{rcvd}");
    assert!(rcvd.contains("(using TLSv1.3 with cipher "), "{rcvd}");
    assert!(
        rcvd.contains("(authenticated as alice@example.test)"),
        "{rcvd}"
    );
    assert!(stored.starts_with(b"Return-Path: <alice@example.test>\r\n"));
    assert!(String::from_utf8_lossy(&stored).contains("\r\nSubject: swaks starttls\r\n"));
}

#[test]
fn swaks_implicit_tls_auth_login_on_submissions() {
    let server = start();
    let cert = server.certificate();
    let (code, out) = run(swaks(&server, Service::Submissions)
        .args(["--from", ALICE, "--to", BOB])
        .args(["--tls-on-connect", "--tls-verify", "--tls-ca-path"])
        .arg(&cert)
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            ALICE_PW,
        ]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<~  334 VXNlcm5hbWU6"), "{out}");
    assert!(out.contains("<~  334 UGFzc3dvcmQ6"), "{out}");
    assert!(out.contains("<~  235 2.7.0"), "{out}");
    let rcvd = received(&only_message(&server, BOB));
    assert!(rcvd.contains(" with ESMTPSA id "), "{rcvd}");
    assert!(
        rcvd.contains("(authenticated as alice@example.test)"),
        "{rcvd}"
    );
}

#[test]
fn swaks_wrong_password_gets_535() {
    let server = start();
    let cert = server.certificate();
    let (code, out) = run(swaks(&server, Service::Submission)
        .args(["--from", ALICE, "--to", BOB])
        .args(["--tls", "--tls-verify", "--tls-ca-path"])
        .arg(&cert)
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            "wrong",
        ]));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("<~* 535 5.7.8 "), "{out}");
    assert!(server.messages(BOB, "INBOX").is_empty());
}

#[test]
fn swaks_pipelining_with_an_unknown_recipient() {
    let server = start();
    let (code, out) = run(swaks(&server, Service::Smtp)
        .args(["--from", "sender@remote.example"])
        .args([
            "--to",
            "alice@example.test,nobody@example.test,bob@example.test",
        ])
        .arg("--pipeline"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("<-  250-PIPELINING"), "{out}");
    assert!(out.contains("<** 550 5.1.1 "), "{out}");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as "), "{out}");
    assert_eq!(server.messages(ALICE, "INBOX").len(), 1);
    assert_eq!(server.messages(BOB, "INBOX").len(), 1);
}

#[test]
fn swaks_relay_without_auth_is_denied() {
    let server = start();
    let (code, out) = run(swaks(&server, Service::Smtp).args([
        "--from",
        ALICE,
        "--to",
        "someone@elsewhere.example",
    ]));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("<** 550 5.7.1 "), "{out}");
    assert!(server.queued().is_empty());
}

// ---------------------------------------------------------------------------------------------
// curl smtp://.

#[test]
fn curl_delivers_byte_exact_over_plain_smtp() {
    let server = start();
    let tmp = tempfile::tempdir().unwrap();
    let message = sample_message("curl plain");
    let file = message_file(tmp.path(), &message);
    let addr = server.addr(Service::Smtp);
    let (code, out) = run(curl()
        .arg(format!("smtp://{addr}/client.example"))
        .args(["--mail-from", "sender@remote.example", "--mail-rcpt", ALICE])
        .arg("--upload-file")
        .arg(&file));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("< 220 {HOSTNAME} ESMTP wasmail")),
        "{out}"
    );
    assert!(out.contains("< 250 2.0.0 Ok: queued as "), "{out}");
    let stored = only_message(&server, ALICE);
    assert_eq!(
        String::from_utf8_lossy(without_trace(&stored)),
        String::from_utf8_lossy(&message)
    );
    assert!(stored.starts_with(b"Return-Path: <sender@remote.example>\r\n"));
    assert!(received(&stored).contains("Received: from client.example ([127.0.0.1] port "));
}

#[test]
fn curl_starttls_on_port_25() {
    let server = start();
    let tmp = tempfile::tempdir().unwrap();
    let message = sample_message("curl starttls");
    let file = message_file(tmp.path(), &message);
    let addr = server.addr(Service::Smtp);
    let (code, out) = run(curl()
        .arg(format!("smtp://{addr}/client.example"))
        .arg("--ssl-reqd")
        .arg("--cacert")
        .arg(server.certificate())
        .args(["--mail-from", "sender@remote.example", "--mail-rcpt", ALICE])
        .arg("--upload-file")
        .arg(&file));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("> STARTTLS"), "{out}");
    let stored = only_message(&server, ALICE);
    assert_eq!(without_trace(&stored), &message[..]);
    let rcvd = received(&stored);
    assert!(rcvd.contains(" with ESMTPS id "), "{rcvd}");
    assert!(rcvd.contains("(using TLSv1.3 with cipher "), "{rcvd}");
}

#[test]
fn curl_smtps_auth_plain_and_login() {
    let server = start();
    let tmp = tempfile::tempdir().unwrap();
    let addr = server.addr(Service::Submissions);
    for mech in ["PLAIN", "LOGIN"] {
        let message = sample_message(&format!("curl smtps {mech}"));
        let file = message_file(tmp.path(), &message);
        let (code, out) = run(curl()
            .arg(format!("smtps://{addr}/client.example"))
            .arg("--cacert")
            .arg(server.certificate())
            .args(["--user", &format!("{ALICE}:{ALICE_PW}")])
            .args(["--login-options", &format!("AUTH={mech}")])
            .args(["--mail-from", ALICE, "--mail-rcpt", BOB])
            .arg("--upload-file")
            .arg(&file));
        assert_eq!(code, 0, "{mech}: {out}");
        assert!(out.contains(&format!("> AUTH {mech}")), "{out}");
        assert!(out.contains("< 235 2.7.0"), "{out}");
    }
    let stored = server.messages(BOB, "INBOX");
    assert_eq!(stored.len(), 2);
    for (m, mech) in stored.iter().zip(["PLAIN", "LOGIN"]) {
        assert_eq!(
            without_trace(m),
            &sample_message(&format!("curl smtps {mech}"))[..]
        );
        let rcvd = received(m);
        assert!(rcvd.contains(" with ESMTPSA id "), "{rcvd}");
        assert!(
            rcvd.contains("(authenticated as alice@example.test)"),
            "{rcvd}"
        );
    }
}

#[test]
fn curl_submission_relay_is_queued() {
    let server = start();
    let tmp = tempfile::tempdir().unwrap();
    let file = message_file(tmp.path(), &sample_message("curl relay"));
    let addr = server.addr(Service::Submission);
    let (code, out) = run(curl()
        .arg(format!("smtp://{addr}/client.example"))
        .arg("--ssl-reqd")
        .arg("--cacert")
        .arg(server.certificate())
        .args(["--user", &format!("{ALICE}:{ALICE_PW}")])
        .args([
            "--mail-from",
            ALICE,
            "--mail-rcpt",
            "someone@elsewhere.example",
        ])
        .arg("--upload-file")
        .arg(&file));
    assert_eq!(code, 0, "{out}");
    assert_eq!(server.queued().len(), 1, "{out}");
    assert!(server.message_files(ALICE).is_empty());
}

#[test]
fn curl_unknown_recipient_and_wrong_password_fail() {
    let server = start();
    let tmp = tempfile::tempdir().unwrap();
    let file = message_file(tmp.path(), &sample_message("curl refused"));
    let (code, out) = run(curl()
        .arg(format!(
            "smtp://{}/client.example",
            server.addr(Service::Smtp)
        ))
        .args(["--mail-from", "sender@remote.example"])
        .args(["--mail-rcpt", "nobody@example.test"])
        .arg("--upload-file")
        .arg(&file));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("< 550 5.1.1 "), "{out}");

    let (code, out) = run(curl()
        .arg(format!(
            "smtps://{}/client.example",
            server.addr(Service::Submissions)
        ))
        .arg("--cacert")
        .arg(server.certificate())
        .args(["--user", &format!("{ALICE}:wrong")])
        .args(["--mail-from", ALICE, "--mail-rcpt", BOB])
        .arg("--upload-file")
        .arg(&file));
    // 67: CURLE_LOGIN_DENIED.
    assert_eq!(code, 67, "{out}");
    assert!(out.contains("< 535 5.7.8 "), "{out}");
    assert!(server.messages(BOB, "INBOX").is_empty());
    assert!(server.message_files(ALICE).is_empty());
}
