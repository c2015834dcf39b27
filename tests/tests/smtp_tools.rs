//! The real wasmail server driven by the command-line SMTP tools operators use: `swaks` and
//! `curl smtp://`. A missing tool fails the test, naming the Debian package to install.
//!
//! Every tool run is bounded: `swaks --timeout 10`, `curl --max-time 60`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use tempfile::NamedTempFile;
use wasmail::Service;
use wasmail_e2e::server::{HOSTNAME, TestServer};
use wasmail_e2e::smtp::{
    ALICE, ALICE_PW, AS_ALICE, BOB, ESMTPSA, SENDER, assert_contains, assert_trace, inbox_is,
    only_message, only_message_is, sample_message, start,
};
use wasmail_e2e::{require, run};

/// `message` in a temp file, for a tool to read.
fn message_file(message: &[u8]) -> NamedTempFile {
    let file = NamedTempFile::new().unwrap();
    std::fs::write(file.path(), message).unwrap();
    file
}

/// `swaks` to `service`, mail from `from` to `to` (comma-separated).
fn swaks(server: &TestServer, service: Service, from: &str, to: &str) -> Command {
    require("swaks", "swaks");
    let addr = server.addr(service);
    let mut cmd = Command::new("swaks");
    cmd.args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--helo", "client.example"])
        .args(["--timeout", "10"])
        .args(["--from", from, "--to", to]);
    cmd
}

/// `swaks` from alice to bob over TLS (implicit on submissions, else STARTTLS), verifying the
/// server's certificate, then AUTH `mech` as alice with `password`.
fn swaks_auth(server: &TestServer, service: Service, mech: &str, password: &str) -> Command {
    let tls = if service == Service::Submissions {
        "--tls-on-connect"
    } else {
        "--tls"
    };
    let mut cmd = swaks(server, service, ALICE, BOB);
    cmd.args([tls, "--tls-verify", "--tls-ca-path"])
        .arg(server.certificate())
        .args([
            "--auth",
            mech,
            "--auth-user",
            ALICE,
            "--auth-password",
            password,
        ]);
    cmd
}

/// `curl` sending `file` from `from` to `rcpt` through `service` (`smtps://` on submissions),
/// trusting the server's certificate when TLS is used.
fn curl(server: &TestServer, service: Service, from: &str, rcpt: &str, file: &Path) -> Command {
    require("curl", "curl");
    let scheme = if service == Service::Submissions {
        "smtps"
    } else {
        "smtp"
    };
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--verbose", "--max-time", "60"])
        .arg(format!(
            "{scheme}://{}/client.example",
            server.addr(service)
        ))
        .arg("--cacert")
        .arg(server.certificate())
        .args(["--mail-from", from, "--mail-rcpt", rcpt])
        .arg("--upload-file")
        .arg(file);
    cmd
}

/// curl's `--user` for alice with `password`.
fn alice_login(password: &str) -> [String; 2] {
    ["--user".into(), format!("{ALICE}:{password}")]
}

// ---------------------------------------------------------------------------------------------
// swaks.

#[test]
fn swaks_delivers_byte_exact_over_plain_smtp() {
    let server = start();
    let message = sample_message("swaks plain");
    // swaks always sends CRLF before the terminating dot, so its --data is the message without
    // its last line end (`swaks --dump-mail` shows this).
    let file = message_file(message.strip_suffix(b"\r\n").unwrap());
    let (code, out) = run(swaks(&server, Service::Smtp, SENDER, ALICE)
        .arg("--data")
        .arg(format!("@{}", file.path().display())));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("<~  250 2.0.0 Ok: queued as ")
            || out.contains("<-  250 2.0.0 Ok: queued as "),
        "{out}"
    );
    let stored = only_message_is(&server, ALICE, &message);
    assert_trace(&stored, SENDER, &[" with ESMTP id "]);
}

#[test]
fn swaks_starttls_auth_plain_on_submission() {
    let server = start();
    let (code, out) = run(swaks_auth(&server, Service::Submission, "PLAIN", ALICE_PW)
        .args(["--header", "Subject: swaks starttls"]));
    assert_eq!(code, 0, "{out}");
    assert_contains(
        &out,
        &[
            "<-  220 2.0.0 Ready to start TLS",
            "<~  235 2.7.0 Authentication successful",
        ],
    );
    let stored = only_message(&server, BOB);
    assert_trace(
        &stored,
        ALICE,
        &[ESMTPSA, "(using TLSv1.3 with cipher ", AS_ALICE],
    );
    assert!(String::from_utf8_lossy(&stored).contains("\r\nSubject: swaks starttls\r\n"));
}

#[test]
fn swaks_implicit_tls_auth_login_on_submissions() {
    let server = start();
    let mut swaks = swaks_auth(&server, Service::Submissions, "LOGIN", ALICE_PW);
    let (code, out) = run(&mut swaks);
    assert_eq!(code, 0, "{out}");
    assert_contains(
        &out,
        &[
            "<~  334 VXNlcm5hbWU6",
            "<~  334 UGFzc3dvcmQ6",
            "<~  235 2.7.0",
        ],
    );
    assert_trace(&only_message(&server, BOB), ALICE, &[ESMTPSA, AS_ALICE]);
}

#[test]
fn swaks_wrong_password_gets_535() {
    let server = start();
    let mut swaks = swaks_auth(&server, Service::Submission, "PLAIN", "wrong");
    let (code, out) = run(&mut swaks);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("<~* 535 5.7.8 "), "{out}");
    assert!(server.messages(BOB, "INBOX").is_empty());
}

#[test]
fn swaks_pipelining_with_an_unknown_recipient() {
    let server = start();
    let to = "alice@example.test,nobody@example.test,bob@example.test";
    let (code, out) = run(swaks(&server, Service::Smtp, SENDER, to).arg("--pipeline"));
    assert_eq!(code, 0, "{out}");
    assert_contains(
        &out,
        &[
            "<-  250-PIPELINING",
            "<** 550 5.1.1 ",
            "<-  250 2.0.0 Ok: queued as ",
        ],
    );
    assert_eq!(server.messages(ALICE, "INBOX").len(), 1);
    assert_eq!(server.messages(BOB, "INBOX").len(), 1);
}

#[test]
fn swaks_relay_without_auth_is_denied() {
    let server = start();
    let to = "someone@elsewhere.example";
    let (code, out) = run(&mut swaks(&server, Service::Smtp, ALICE, to));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("<** 550 5.7.1 "), "{out}");
    assert!(server.queued().is_empty());
}

// ---------------------------------------------------------------------------------------------
// curl smtp://.

#[test]
fn curl_delivers_byte_exact_over_plain_smtp() {
    let server = start();
    let message = sample_message("curl plain");
    let file = message_file(&message);
    let (code, out) = run(&mut curl(
        &server,
        Service::Smtp,
        SENDER,
        ALICE,
        file.path(),
    ));
    assert_eq!(code, 0, "{out}");
    assert_contains(
        &out,
        &[
            &format!("< 220 {HOSTNAME} ESMTP wasmail"),
            "< 250 2.0.0 Ok: queued as ",
        ],
    );
    let stored = only_message_is(&server, ALICE, &message);
    assert_trace(
        &stored,
        SENDER,
        &["Received: from client.example ([127.0.0.1] port "],
    );
}

#[test]
fn curl_starttls_on_port_25() {
    let server = start();
    let message = sample_message("curl starttls");
    let file = message_file(&message);
    let (code, out) =
        run(curl(&server, Service::Smtp, SENDER, ALICE, file.path()).arg("--ssl-reqd"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("> STARTTLS"), "{out}");
    let stored = only_message_is(&server, ALICE, &message);
    assert_trace(
        &stored,
        SENDER,
        &[" with ESMTPS id ", "(using TLSv1.3 with cipher "],
    );
}

#[test]
fn curl_smtps_auth_plain_and_login() {
    let server = start();
    let mut sent = Vec::new();
    for mech in ["PLAIN", "LOGIN"] {
        let message = sample_message(&format!("curl smtps {mech}"));
        let file = message_file(&message);
        let (code, out) = run(curl(&server, Service::Submissions, ALICE, BOB, file.path())
            .args(alice_login(ALICE_PW))
            .args(["--login-options", &format!("AUTH={mech}")]));
        assert_eq!(code, 0, "{mech}: {out}");
        assert_contains(&out, &[&format!("> AUTH {mech}"), "< 235 2.7.0"]);
        sent.push(message);
    }
    for stored in inbox_is(&server, BOB, &sent) {
        assert_trace(&stored, ALICE, &[ESMTPSA, AS_ALICE]);
    }
}

#[test]
fn curl_submission_relay_is_queued() {
    let server = start();
    let file = message_file(&sample_message("curl relay"));
    let to = "someone@elsewhere.example";
    let (code, out) = run(curl(&server, Service::Submission, ALICE, to, file.path())
        .arg("--ssl-reqd")
        .args(alice_login(ALICE_PW)));
    assert_eq!(code, 0, "{out}");
    assert_eq!(server.queued().len(), 1, "{out}");
    assert!(server.message_files(ALICE).is_empty());
}

#[test]
fn curl_unknown_recipient_and_wrong_password_fail() {
    let server = start();
    let file = message_file(&sample_message("curl refused"));
    let to = "nobody@example.test";
    let (code, out) = run(&mut curl(&server, Service::Smtp, SENDER, to, file.path()));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("< 550 5.1.1 "), "{out}");

    let (code, out) = run(
        curl(&server, Service::Submissions, ALICE, BOB, file.path()).args(alice_login("wrong"))
    );
    // 67: CURLE_LOGIN_DENIED.
    assert_eq!(code, 67, "{out}");
    assert!(out.contains("< 535 5.7.8 "), "{out}");
    assert!(server.messages(BOB, "INBOX").is_empty());
    assert!(server.message_files(ALICE).is_empty());
}
