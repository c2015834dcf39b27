//! The real wasmail server (in-process, real sockets, temp data dir) driven by real SMTP clients:
//! Python's `smtplib` for what mail clients do, and a raw `TcpStream` for byte-exact dialogues
//! (pipelining, smuggling, over-long input). Every assertion is on what came back over the wire
//! or what sits on disk. The clients and checks are in `wasmail_e2e::smtp`.
//!
//! No client socket can hang a test: the raw client has 10 s read/write timeouts and Python's
//! `smtplib` gets `timeout=10`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmail::Service;
use wasmail::config::{ByteSize, Config};
use wasmail_e2e::load::dot_stuff;
use wasmail_e2e::python;
use wasmail_e2e::raw::Flood;
use wasmail_e2e::server::{HOSTNAME, TestServer, without_trace};
use wasmail_e2e::smtp::{
    ALICE, ALICE_PW, AS_ALICE, BOB, CAROL, Client, ESMTPSA, SENDER, Send, assert_contains,
    assert_still_serves, assert_trace, base64, has_line, has_word, header_of, inbox_is, mailbox_is,
    non_loopback_ipv4, only_message_is, out, received, sample_message, start, start_configured,
    with_users,
};
use wasmail_plugin::{Grants, PluginSpec, WasmSource};

/// How much the flood tests send without a line end.
const FLOOD: usize = 100 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A server whose plugin chain is the built-in defaults followed by `extra`.
fn start_with_filters(extra: Vec<PluginSpec>) -> TestServer {
    let seen: RefCell<Option<Config>> = RefCell::new(None);
    let server = TestServer::start_with(
        |c| *seen.borrow_mut() = Some(c.clone()),
        |b| {
            let config = seen.borrow().clone().expect("configure ran first");
            let mut specs = wasmail::plugins::default_specs(&config);
            specs.extend(extra);
            b.plugins(specs)
        },
    );
    with_users(server)
}

/// A test guest as a filter plugin (config and log granted, defaults otherwise).
fn guest_filter(name: &str, wasm: &'static [u8]) -> PluginSpec {
    let mut spec = PluginSpec::new(name, WasmSource::Bytes(Arc::from(wasm)));
    spec.grants = Grants {
        log: true,
        config: true,
        ..Grants::default()
    };
    spec
}

/// Alice submits one sample message per `(mech, subject)` to bob through `service` with smtplib
/// (TLS, then AUTH with `mech`). Checks each run and what bob got: every message byte-exact, in
/// order, with alice's authenticated trace; `check` gets each run's output and the `Received:`
/// field of its message.
fn alice_submits_to_bob(service: Service, runs: &[(&str, &str)], check: impl Fn(&str, &str)) {
    let server = start();
    let mut expected = Vec::new();
    for &(mech, subject) in runs {
        let message = sample_message(subject);
        let output = Send::alice_to_bob(&server, service, &message, mech).sent();
        assert!(
            out(&output, "auth").starts_with("235 2.7.0"),
            "{mech}: {output}"
        );
        expected.push(message);
        let stored = inbox_is(&server, BOB, &expected);
        let rcvd = assert_trace(&stored[stored.len() - 1], ALICE, &[ESMTPSA, AS_ALICE]);
        check(&output, &rcvd);
    }
}

// ---------------------------------------------------------------------------------------------
// Python smtplib: delivery, TLS, AUTH.

#[test]
fn smtplib_plain_delivery_is_byte_exact_with_trace_fields() {
    let server = start();
    let message = sample_message("plain delivery");
    let output = Send::new(&server, Service::Smtp, &message).sent();
    assert_eq!(out(&output, "quit"), "221");
    for ext in ["pipelining", "8bitmime", "smtputf8", "starttls", "size"] {
        assert!(has_word(&output, "esmtp", ext), "{ext}: {output}");
    }
    assert!(
        !has_word(&output, "esmtp", "auth"),
        "no AUTH on port 25: {output}"
    );

    let stored = only_message_is(&server, ALICE, &message);
    assert!(
        stored.starts_with(b"Return-Path: <sender@remote.example>\r\nReceived: from client.example ([127.0.0.1] port "),
        "{}",
        header_of(&stored)
    );
    let rcvd = received(&stored);
    assert_contains(
        &rcvd,
        &[
            &format!("by {HOSTNAME} (wasmail) with ESMTP id "),
            "for <alice@example.test>;",
        ],
    );
    assert!(!rcvd.contains("using"), "no TLS: {rcvd}");
    assert!(!rcvd.contains("authenticated"), "{rcvd}");
}

#[test]
fn smtplib_starttls_on_port_25_records_tls_in_received() {
    let server = start();
    let message = sample_message("starttls");
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.mode = "starttls";
    let output = send.sent();
    assert!(
        out(&output, "starttls").starts_with("220 2.0.0"),
        "{output}"
    );
    let (version, cipher) = out(&output, "cipher").split_once(' ').unwrap();
    assert!(
        !out(&output, "esmtp").contains("starttls"),
        "STARTTLS not offered again: {output}"
    );

    let stored = only_message_is(&server, ALICE, &message);
    // Python names TLS 1.3 `TLSv1.3` and the cipher `TLS_AES_256_GCM_SHA384`; rustls says
    // `TLS13_AES_256_GCM_SHA384`.
    let using = format!("(using {version} with cipher ");
    let suite = cipher.trim_start_matches("TLS_");
    assert_trace(&stored, SENDER, &[" with ESMTPS id ", &using, suite]);
}

#[test]
fn smtplib_submission_starttls_auth_plain_and_login() {
    let runs = [("PLAIN", "auth plain"), ("LOGIN", "auth login")];
    alice_submits_to_bob(Service::Submission, &runs, |output, rcvd| {
        assert!(has_word(output, "esmtp", "auth"), "{output}");
        assert_contains(rcvd, &["(using TLSv1."]);
    });
}

#[test]
fn smtplib_submission_requires_auth() {
    let server = start();
    let message = sample_message("no auth");
    let mut send = Send::new(&server, Service::Submission, &message);
    send.mode = "starttls";
    send.rcpts = &[BOB];
    let output = send.run();
    assert!(out(&output, "error").starts_with("530 5.7.0"), "{output}");
    assert!(server.messages(BOB, "INBOX").is_empty());
}

#[test]
fn smtplib_submissions_implicit_tls_auth_plain_and_login() {
    // `login()` picks PLAIN (the first of smtplib's preferences the server offers); LOGIN is
    // driven through its challenges.
    let runs = [
        ("login()", "implicit tls plain"),
        ("LOGIN", "implicit tls login"),
    ];
    alice_submits_to_bob(Service::Submissions, &runs, |output, rcvd| {
        assert!(
            !out(output, "esmtp").contains("starttls"),
            "no STARTTLS inside TLS: {output}"
        );
        let version = out(output, "cipher").split(' ').next().unwrap();
        assert_contains(rcvd, &[&format!("(using {version} with cipher ")]);
    });
}

/// Commands pipelined after STARTTLS in plaintext are discarded, not run inside TLS
/// (CVE-2011-0411, RFC 3207 4.2).
const PY_STARTTLS_INJECTION: &str = r#"
import socket, ssl, sys
port, cert = int(sys.argv[1]), sys.argv[2]
def reply(sock):
    data = b''
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode() + '<closed>'
        data += chunk
        lines = data.split(b'\r\n')
        if any(len(l) >= 4 and l[3:4] == b' ' for l in lines[:-1]):
            return data.decode()
sock = socket.create_connection(('127.0.0.1', port), timeout=10)
print('greeting', repr(reply(sock)))
sock.sendall(b'EHLO client.example\r\n')
reply(sock)
sock.sendall(b'STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n')
print('starttls', repr(reply(sock)))
ctx = ssl.create_default_context(cafile=cert)
tls = ctx.wrap_socket(sock, server_hostname='127.0.0.1')
tls.sendall(b'RCPT TO:<alice@example.test>\r\n')
print('rcpt', repr(reply(tls)))
tls.sendall(b'EHLO client.example\r\n')
print('ehlo', repr(reply(tls)))
tls.sendall(b'RCPT TO:<alice@example.test>\r\n')
print('rcpt2', repr(reply(tls)))
tls.sendall(b'QUIT\r\n')
print('quit', repr(reply(tls)))
"#;

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let server = start();
    let port = server.addr(Service::Smtp).port().to_string();
    let cert = server.certificate();
    let output =
        python(PY_STARTTLS_INJECTION, &[Path::new(&port), &cert]).unwrap_or_else(|e| panic!("{e}"));
    // Nothing from before TLS counts: no HELO yet (`rcpt`), and no MAIL was run (`rcpt2`).
    for (key, want) in [
        ("starttls", "'220 2.0.0 "),
        ("rcpt", "'503 5.5.1 "),
        ("ehlo", "'250-"),
        ("rcpt2", "'503 5.5.1 "),
        ("quit", "'221 2.0.0"),
    ] {
        assert!(out(&output, key).starts_with(want), "{key}: {output}");
    }
}

#[test]
fn wrong_password_gets_535_and_the_session_goes_on() {
    let server = start();
    // smtplib.
    let message = sample_message("wrong password");
    let mut send = Send::new(&server, Service::Submissions, &message);
    send.auth = Some((ALICE, "not-the-password", "PLAIN"));
    let output = send.run();
    assert!(out(&output, "error").starts_with("535 5.7.8"), "{output}");
    assert!(!has_line(&output, "sent"));

    // Raw: wrong, then an unknown user (the same answer), then right on the same connection.
    let mut c = Client::ehlo_to(&server, Service::Submission);
    for (user, password, want) in [
        (ALICE, "wrong", "535 5.7.8 "),
        ("nobody@example.test", "whatever", "535 5.7.8 "),
        (ALICE, ALICE_PW, "235 2.7.0 "),
    ] {
        let r = c.auth_plain(user, password);
        assert!(r.starts_with(want), "{user}: {r:?}");
    }
    c.ok("QUIT", "221 2.0.0");
    assert!(server.messages(ALICE, "INBOX").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Content: SMTPUTF8, 8BITMIME, size.

#[test]
fn smtputf8_address_is_delivered() {
    let server = start();
    const UTF8_USER: &str = "jösé@example.test";
    server.add_user(UTF8_USER, "jose-Secret-pw4");
    let message = "From: Jörg <jörg@remote.example>\r\nTo: jösé@example.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße aus Köln.\r\n"
        .as_bytes()
        .to_vec();
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.sender = "jörg@remote.example";
    send.rcpts = &[UTF8_USER];
    send.options = "SMTPUTF8,BODY=8BITMIME";
    send.sent();

    let stored = only_message_is(&server, UTF8_USER, &message);
    assert_trace(
        &stored,
        "jörg@remote.example",
        &[" with UTF8SMTP id ", "for <jösé@example.test>"],
    );
}

#[test]
fn utf8_address_without_smtputf8_is_refused_553() {
    let server = start();
    server.add_user("jösé@example.test", "jose-Secret-pw4");
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.ok("MAIL FROM:<jörg@remote.example>", "553 5.6.7 ");
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<jösé@example.test>", "553 5.6.7 ");
    c.ok("RSET", "250 2.0.0");
    // The same addresses with SMTPUTF8 work on the same connection.
    c.ok("MAIL FROM:<jörg@remote.example> SMTPUTF8", "250 2.1.0");
    c.ok("RCPT TO:<jösé@example.test>", "250 2.1.5");
    let message = b"Subject: ok\r\n\r\nnow with SMTPUTF8\r\n";
    c.data(message, "250 2.0.0 ");
    c.ok("QUIT", "221");
    only_message_is(&server, "jösé@example.test", message);
}

#[test]
fn eight_bit_body_is_stored_byte_exact() {
    let server = start();
    let mut message = b"Subject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    // Every octet 0x80..=0xFF, in lines, plus UTF-8 text.
    for row in (0x80u8..=0xFF).collect::<Vec<_>>().chunks(32) {
        message.extend_from_slice(row);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice("café naïve — ünïcödé\r\n".as_bytes());
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.options = "BODY=8BITMIME";
    send.sent();
    only_message_is(&server, ALICE, &message);
}

/// A MIME message with a base64 attachment of `size` deterministic pseudo-random octets.
fn message_with_attachment(size: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut m = b"From: sender@remote.example\r\nTo: alice@example.test\r\nSubject: big attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n--b0undary\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n--b0undary\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\r\n".to_vec();
    let encoded = base64(&data);
    for line in encoded.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b0undary--\r\n");
    m
}

#[test]
fn ten_megabyte_attachment_is_delivered_intact() {
    let server = start();
    let message = message_with_attachment(10 * 1024 * 1024);
    assert!(message.len() > 13_000_000);
    Send::new(&server, Service::Smtp, &message).sent();
    only_message_is(&server, ALICE, &message);
}

#[test]
fn oversize_message_gets_552_and_the_session_goes_on() {
    let server = start_configured(|c| c.limits.max_message_size = ByteSize::kib(64));
    let mut c = Client::connect(server.addr(Service::Smtp));
    let ehlo = c.ehlo();
    assert!(ehlo.contains("250-SIZE 65536\r\n"), "{ehlo:?}");
    // Announced too big: refused at MAIL.
    c.ok(
        "MAIL FROM:<sender@remote.example> SIZE=100000",
        "552 5.3.4 ",
    );
    // Not announced: refused after the data.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..1000 {
        big.extend_from_slice(&[b'x'; 98]);
        big.extend_from_slice(b"\r\n");
    }
    c.transaction(SENDER, ALICE, &big, "552 5.3.4 ");
    assert!(server.messages(ALICE, "INBOX").is_empty());
    // The session goes on: a small message is delivered.
    c.ok("NOOP", "250 2.0.0");
    c.ok("MAIL FROM:<sender@remote.example> SIZE=100", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let small = b"Subject: small\r\n\r\nfits\r\n";
    c.data(small, "250 2.0.0 ");
    c.ok("QUIT", "221");
    only_message_is(&server, ALICE, small);
}

// ---------------------------------------------------------------------------------------------
// Raw dialogues: pipelining, recipients, malformed input, smuggling.

#[test]
fn pipelined_transactions_get_every_reply_in_order() {
    let server = start();
    let mut c = Client::connect(server.addr(Service::Smtp));
    let ehlo = c.ehlo();
    assert!(ehlo.contains("250-PIPELINING\r\n"), "{ehlo:?}");
    assert!(ehlo.contains("CHUNKING"), "{ehlo:?}");

    // Group 1: MAIL, three RCPTs (one unknown), DATA.
    c.send(
        b"MAIL FROM:<one@remote.example>\r\n\
          RCPT TO:<alice@example.test>\r\n\
          RCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<bob@example.test>\r\n\
          DATA\r\n",
    );
    c.replies(&["250 2.1.0", "250 2.1.5", "550 5.1.1 ", "250 2.1.5", "354 "]);

    // Group 2 (content may open a group, RFC 2920 3.1): message 1, then transaction 2's
    // commands up to DATA; the relay recipient is refused (550 5.7.1).
    let m1 = sample_message("pipelined one");
    let mut group = dot_stuff(&m1);
    group.extend_from_slice(
        b".\r\n\
          MAIL FROM:<two@remote.example>\r\n\
          RCPT TO:<carol@example.test>\r\n\
          RCPT TO:<elsewhere@remote.example>\r\n\
          DATA\r\n",
    );
    c.send(&group);
    c.replies(&[
        "250 2.0.0 Ok: queued as ",
        "250 2.1.0",
        "250 2.1.5",
        "550 5.7.1 ",
        "354 ",
    ]);

    // Group 3: message 2, then two whole BDAT transactions (RFC 3030) and QUIT, one write.
    let m2 = sample_message("pipelined two");
    let m3 = b"Subject: pipelined three\r\n\r\n.a dot line, not stuffed in BDAT\r\n".to_vec();
    let m4 = b"Subject: pipelined four\r\n\r\nfour\r\n".to_vec();
    let mut group = dot_stuff(&m2);
    group.extend_from_slice(
        b".\r\nMAIL FROM:<three@remote.example>\r\nRCPT TO:<alice@example.test>\r\n",
    );
    group.extend_from_slice(format!("BDAT {} LAST\r\n", m3.len()).as_bytes());
    group.extend_from_slice(&m3);
    group.extend_from_slice(b"MAIL FROM:<four@remote.example>\r\nRCPT TO:<bob@example.test>\r\n");
    let (a, b) = m4.split_at(10);
    group.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    group.extend_from_slice(a);
    group.extend_from_slice(format!("BDAT {} LAST\r\n", b.len()).as_bytes());
    group.extend_from_slice(b);
    group.extend_from_slice(b"QUIT\r\n");
    c.send(&group);
    c.replies(&[
        "250 2.0.0 Ok: queued as ",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.0.0 Ok: queued as ",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.0.0 10 octets received",
        "250 2.0.0 Ok: queued as ",
        "221 2.0.0",
    ]);
    let (rest, how) = c.read_until_closed();
    assert!(rest.is_empty(), "nothing after 221: {rest:?}");
    assert_eq!(how, "closed");

    inbox_is(&server, ALICE, &[&m1, &m3]);
    inbox_is(&server, BOB, &[&m1, &m4]);
    let carol = inbox_is(&server, CAROL, &[&m2]);
    assert_contains(&received(&carol[0]), &[" with ESMTP id "]);
}

#[test]
fn three_local_recipients_get_one_copy_each() {
    let server = start();
    let message = sample_message("three recipients");
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.rcpts = &[ALICE, BOB, CAROL];
    send.sent();
    for account in [ALICE, BOB, CAROL] {
        let rcvd = received(&only_message_is(&server, account, &message));
        assert!(!rcvd.contains(" for <"), "no recipient named: {rcvd}");
    }
}

#[test]
fn unknown_local_user_gets_550_5_1_1() {
    let server = start();
    let message = sample_message("unknown user");
    let mut send = Send::new(&server, Service::Smtp, &message);
    // Alone, then mixed: the known recipient still gets it.
    for rcpts in [
        &["nobody@example.test"][..],
        &["nobody@example.test", ALICE],
    ] {
        send.rcpts = rcpts;
        let output = send.run();
        assert!(
            out(&output, "refused").starts_with("nobody@example.test 550 5.1.1 "),
            "{output}"
        );
        assert_eq!(has_line(&output, "sent"), rcpts.len() > 1, "{output}");
        if rcpts.len() == 1 {
            assert!(server.all_message_files().is_empty());
        }
    }
    only_message_is(&server, ALICE, &message);
}

#[test]
fn relay_without_auth_is_denied_550_5_7_1() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.ok("MAIL FROM:<alice@example.test>", "250 2.1.0");
    c.ok("RCPT TO:<someone@elsewhere.example>", "550 5.7.1 ");
    c.ok("DATA", "554 5.5.1 ");
    c.ok("QUIT", "221");
    assert!(server.queued().is_empty(), "{:?}", server.queued());
    assert!(server.all_message_files().is_empty());
}

#[test]
fn relay_with_auth_is_queued_not_delivered_locally() {
    let server = start();
    let message = sample_message("relay me");
    let mut send = Send::alice_to_bob(&server, Service::Submission, &message, "PLAIN");
    send.rcpts = &["someone@elsewhere.example"];
    let output = send.sent();
    assert!(!output.contains("refused"), "{output}");
    let queued = server.queued();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let files = server.all_message_files();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn data_with_no_valid_recipients_gets_554() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.send(
        b"MAIL FROM:<sender@remote.example>\r\n\
          RCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<elsewhere@remote.example>\r\n\
          DATA\r\n",
    );
    c.replies(&["250 2.1.0", "550 5.1.1 ", "550 5.7.1 ", "554 5.5.1 "]);
    // No 354 came, so this line is a command (an unknown one), not content.
    c.ok("Subject: not a message", "500 5.5.2");
    c.ok("NOOP", "250 2.0.0");
    c.ok("QUIT", "221");
    assert!(server.all_message_files().is_empty());
}

#[test]
fn too_many_recipients_get_452_4_5_3() {
    let server = start_configured(|c| c.limits.max_recipients = 2);
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.send(
        b"MAIL FROM:<sender@remote.example>\r\n\
          RCPT TO:<alice@example.test>\r\n\
          RCPT TO:<bob@example.test>\r\n\
          RCPT TO:<carol@example.test>\r\n\
          RCPT TO:<carol@example.test>\r\n\
          DATA\r\n",
    );
    c.replies(&[
        "250 2.1.0",
        "250 2.1.5",
        "250 2.1.5",
        "452 4.5.3 ",
        "452 4.5.3 ",
        "354 ",
    ]);
    let m = sample_message("two of three");
    let r = c.end_data(&dot_stuff(&m));
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    only_message_is(&server, ALICE, &m);
    only_message_is(&server, BOB, &m);
    assert!(server.messages(CAROL, "INBOX").is_empty());
}

#[test]
fn malformed_commands_get_500_501_and_the_session_goes_on() {
    let server = start();
    let mut c = Client::connect(server.addr(Service::Smtp));
    for (line, want) in [
        ("HELLO there", "500 5.5.2"),
        ("EHLO", "501 5.5.4"),
        ("\u{1}\u{2}garbage", "500 5.5.2"),
    ] {
        c.ok(line, want);
    }
    c.ehlo();
    for (line, want) in [
        ("MAIL FROM:<no-at-sign>", "501 5.1.7"),
        ("MAIL FROM:alice@example.test", "501 "),
        ("MAIL FROM:<a@remote.example> BODY=9BIT", "501 5.5.4"),
        ("MAIL FROM:<a@remote.example> NOSUCH=1", "555 5.5.4"),
        ("MAIL TO:<a@remote.example>", "501 "),
        ("RCPT TO:<alice@example.test>", "503 5.5.1"),
        ("DATA", "503 5.5.1"),
        ("BDAT x", "501 "),
        ("MAIL FROM:<a@remote.example>", "250 2.1.0"),
        ("RCPT TO:<alice@example.test", "501 5.1.3"),
        ("RCPT TO:<alice@example.test> NOTIFY=SOMETIMES", "501 5.5.4"),
        ("MAIL FROM:<b@remote.example>", "503 5.5.1"),
        // After all that, a transaction works.
        ("RCPT TO:<alice@example.test>", "250 2.1.5"),
    ] {
        c.ok(line, want);
    }
    let message = b"Subject: after errors\r\n\r\nstill fine\r\n";
    c.data(message, "250 2.0.0 ");
    c.ok("QUIT", "221");
    only_message_is(&server, ALICE, message);
}

#[test]
fn hundred_megabytes_without_a_line_end_are_cut_off() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    let Flood {
        sent,
        write_error,
        said: text,
        how,
    } = c.flood_until_closed(FLOOD);
    assert!(
        text.is_empty() || text.starts_with("421 4.") || text.starts_with("500 5.5.2"),
        "{text:?}"
    );
    if !text.is_empty() {
        assert!(text.contains("421 4."), "{text:?}");
    }
    assert!(write_error.is_some() || sent == FLOOD, "sent {sent}");
    eprintln!(
        "cut off after {sent} octets ({how}, write error: {write_error:?}); server said {text:?}"
    );
    assert_still_serves(
        &server,
        Service::Smtp,
        b"Subject: after the flood\r\n\r\nok\r\n",
    );
}

#[test]
fn hundred_megabytes_without_a_line_end_inside_data_are_refused() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.open_data(SENDER, ALICE);
    c.send(b"Subject: one long line\r\n\r\n");
    let (sent, write_error) = c.flood_without_line_end(FLOOD);
    if write_error.is_some() {
        // Cut off while sending: it must have said why (or just closed).
        let (rest, how) = c.read_until_closed();
        let text = String::from_utf8_lossy(&rest);
        assert_ne!(how, "timeout", "{text:?}");
        assert!(
            text.is_empty() || text.contains("421 4.") || text.contains("552 5.3.4"),
            "{text:?}"
        );
    } else {
        // All of it was read: the end of the data gets 552 (over the 50 MiB default limit).
        let r = c.end_data(b"\r\n");
        assert!(
            r.starts_with("552 5.3.4 ") || r.starts_with("500 5.5.2 "),
            "{r:?}"
        );
        c.ok("NOOP", "250 2.0.0");
        c.ok("QUIT", "221");
    }
    eprintln!("sent {sent} octets, write error {write_error:?}");
    assert!(server.all_message_files().is_empty());
    assert_still_serves(
        &server,
        Service::Smtp,
        b"Subject: after the long line\r\n\r\nok\r\n",
    );
}

#[test]
fn data_terminator_split_across_reads_and_chunk_boundaries() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.stream.set_nodelay(true).unwrap();
    let mut expected = Vec::new();
    // 1. The terminator and a stuffed dot arrive one octet per read.
    c.open_data(SENDER, ALICE);
    let m = b"Subject: trickle\r\n\r\n.dot\r\nend\r\n".to_vec();
    for &b in dot_stuff(&m).iter().chain(b".\r\n") {
        c.send(&[b]);
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    expected.push(m);
    // 2. The end of data straddles the server's 64 KiB chunk size, at every offset around it.
    for shift in 0..6usize {
        c.open_data(SENDER, ALICE);
        let mut m = format!("Subject: boundary {shift}\r\n\r\n").into_bytes();
        let target = 64 * 1024 - 3 + shift;
        while m.len() + 100 < target {
            m.extend_from_slice(&[b'y'; 98]);
            m.extend_from_slice(b"\r\n");
        }
        let fill = target - m.len() - 2;
        m.extend(std::iter::repeat_n(b'z', fill));
        m.extend_from_slice(b"\r\n");
        let r = c.end_data(&dot_stuff(&m));
        assert!(r.starts_with("250 2.0.0 "), "shift {shift}: {r:?}");
        expected.push(m);
    }
    c.ok("QUIT", "221");
    inbox_is(&server, ALICE, &expected);
}

#[test]
fn bare_lf_smuggling_is_refused_and_the_smuggled_mail_never_runs() {
    let server = start();
    for seq in [
        &b"\n.\r\n"[..],
        b"\n.\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r\n.\r",
    ] {
        let mut c = Client::ehlo_to(&server, Service::Smtp);
        c.open_data(SENDER, ALICE);
        let mut payload = b"Subject: innocent\r\n\r\nhello".to_vec();
        payload.extend_from_slice(seq);
        payload.extend_from_slice(
            b"MAIL FROM:<evil@attacker.example>\r\n\
              RCPT TO:<bob@example.test>\r\n\
              DATA\r\n\
              Subject: smuggled\r\n\
              \r\n\
              owned\r\n\
              .\r\n",
        );
        c.send(&payload);
        let r = c.reply();
        assert!(r.starts_with("550 5.6.11 "), "{seq:?}: {r:?}");
        // No reply to any smuggled command follows: the next reply is NOOP's, and no
        // transaction is open.
        c.ok("NOOP", "250 2.0.0 Ok");
        c.ok("RCPT TO:<bob@example.test>", "503 5.5.1");
        c.ok("QUIT", "221");
        let (rest, _) = c.read_until_closed();
        assert!(rest.is_empty(), "{seq:?}: {rest:?}");
    }
    assert!(server.messages(ALICE, "INBOX").is_empty());
    assert!(server.messages(BOB, "INBOX").is_empty());
    assert!(server.all_message_files().is_empty());
}

// ---------------------------------------------------------------------------------------------
// AUTH and TLS on a non-loopback address.

#[test]
fn auth_before_tls_is_refused_on_a_non_loopback_address() {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!(
            "NOTE: this machine has no non-loopback IPv4 address; only the allow_plaintext_auth \
             config path is tested (see auth_in_plaintext_when_allowed_by_config)"
        );
        return;
    };
    let server = start_configured(|c| c.services.submission.listen = vec![SocketAddr::new(ip, 0)]);
    let addr = server.addr(Service::Submission);
    assert_eq!(addr.ip(), ip);
    let mut c = Client::connect(addr);
    let ehlo = c.ehlo();
    assert!(ehlo.contains("STARTTLS"), "{ehlo:?}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo:?}");
    let r = c.auth_plain(ALICE, ALICE_PW);
    assert!(r.starts_with("538 5.7.11 "), "{r:?}");
    c.ok("AUTH LOGIN", "538 5.7.11 ");
    c.ok("MAIL FROM:<alice@example.test>", "530 5.7.0 ");
    c.ok("QUIT", "221");

    // After STARTTLS, AUTH is offered and works.
    let message = sample_message("after starttls");
    let output = Send::alice_to_bob(&server, Service::Submission, &message, "PLAIN").sent();
    assert!(!has_word(&output, "esmtp-before", "auth"), "{output}");
    assert!(has_word(&output, "esmtp", "auth"), "{output}");
    assert!(out(&output, "auth").starts_with("235 2.7.0"), "{output}");
    let stored = only_message_is(&server, BOB, &message);
    assert_trace(
        &stored,
        ALICE,
        &[&format!("([{ip}] port "), ESMTPSA, AS_ALICE],
    );
}

#[test]
fn auth_in_plaintext_when_allowed_by_config() {
    let ip = non_loopback_ipv4();
    let server = start_configured(|c| {
        c.tls.allow_plaintext_auth = true;
        if let Some(ip) = ip {
            c.services.submission.listen = vec![SocketAddr::new(ip, 0)];
        }
    });
    let mut c = Client::connect(server.addr(Service::Submission));
    let ehlo = c.ehlo();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo:?}");
    let r = c.auth_plain(ALICE, ALICE_PW);
    assert!(r.starts_with("235 2.7.0 "), "{r:?}");
    let message = b"Subject: plaintext auth\r\n\r\nallowed by config\r\n";
    c.transaction(ALICE, BOB, message, "250 2.0.0 ");
    c.ok("QUIT", "221");
    let stored = only_message_is(&server, BOB, message);
    let rcvd = assert_trace(&stored, ALICE, &[" with ESMTPA id ", AS_ALICE]);
    assert!(!rcvd.contains("using"), "{rcvd}");
}

// ---------------------------------------------------------------------------------------------
// WASM filters.

#[test]
fn wasm_filter_rejects_by_header() {
    let server = start_with_filters(vec![guest_filter(
        "header-reject",
        wasmail_plugin_artifacts::TEST_HEADER_REJECT,
    )]);
    let mut c = Client::connect(server.addr(Service::Smtp));
    // Its HELO hook defers one name.
    c.ok("EHLO defer.me", "451 4.7.1 greeting deferred");
    c.ehlo();
    let spam = b"Subject: cheap VIAGRA here\r\n\r\nbuy\r\n";
    let r = c.transaction(SENDER, ALICE, spam, "550 ");
    assert_eq!(r, "550 5.7.1 message refused by policy\r\n");
    assert!(server.all_message_files().is_empty());
    // Another message on the same connection passes, tagged by the filter.
    let m = sample_message("clean");
    c.transaction(SENDER, ALICE, &dot_stuff(&m), "250 2.0.0 ");
    c.ok("QUIT", "221");
    let mut expected = b"X-Wasmail-Checked: yes\r\n".to_vec();
    expected.extend_from_slice(&m);
    only_message_is(&server, ALICE, &expected);
}

#[test]
fn wasm_filter_quarantines_into_junk() {
    let server = start_with_filters(vec![guest_filter(
        "quarantine",
        wasmail_plugin_artifacts::TEST_QUARANTINE,
    )]);
    // Over the guest's default 1000 octets: Junk.
    let big = message_with_attachment(2000);
    Send::new(&server, Service::Smtp, &big).sent();
    assert!(server.messages(ALICE, "INBOX").is_empty());
    mailbox_is(&server, ALICE, "Junk", &[&big]);
    let files = server.message_files(ALICE);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .ends_with(".Junk"),
        "{files:?}"
    );
    // A small message goes to INBOX.
    let small = b"Subject: small\r\n\r\nhi\r\n".to_vec();
    Send::new(&server, Service::Smtp, &small).sent();
    inbox_is(&server, ALICE, &[&small]);
    mailbox_is(&server, ALICE, "Junk", &[&big]);
}

/// The built-in filter-rules plugin, from config text: `accept` (later filters skipped) when the
/// Subject contains "harmless".
fn accept_harmless_rule() -> Vec<PluginSpec> {
    let text = r#"
[[plugins]]
name = "rules"
file = "builtin:filter-rules"
grants = { log = true, config = true }

[[plugins.config.rule]]
header = "Subject"
contains = "harmless"
action = "accept"
"#;
    let config = Config::parse(text, None).unwrap_or_else(|e| panic!("rules config: {e}"));
    wasmail::plugins::specs(&config)
}

#[test]
fn wasm_filter_trap_defers_and_the_server_keeps_serving() {
    // The panic guest traps on every message it sees; a filter-rules `accept` in front of it
    // lets messages with "harmless" in the Subject skip it. So the trigger is any other
    // Subject.
    let mut filters = accept_harmless_rule();
    filters.push(guest_filter(
        "panicky",
        wasmail_plugin_artifacts::TEST_PANIC,
    ));
    let server = start_with_filters(filters);
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    let trap = b"Subject: trap now\r\n\r\nboom\r\n";
    c.transaction(SENDER, ALICE, trap, "451 4.3.0 ");
    assert!(server.all_message_files().is_empty());
    // Same connection, no trigger: delivered.
    let harmless = b"Subject: harmless one\r\n\r\nfine\r\n";
    c.transaction(SENDER, ALICE, harmless, "250 2.0.0 ");
    // The trap again, then a new connection still works.
    let trap = b"Subject: trap again\r\n\r\nboom\r\n";
    c.transaction(SENDER, ALICE, trap, "451 4.3.0 ");
    c.ok("QUIT", "221");
    let message = sample_message("harmless two");
    Send::new(&server, Service::Smtp, &message).sent();
    inbox_is(&server, ALICE, &[&harmless[..], &message]);
}

#[test]
fn hot_reload_between_two_transactions_on_one_connection() {
    let server = start_with_filters(vec![guest_filter(
        "header-reject",
        wasmail_plugin_artifacts::TEST_HEADER_REJECT,
    )]);
    assert_eq!(server.handle.plugin_generation(), 0);
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    let before = b"Subject: before reload\r\n\r\none\r\n";
    c.transaction(SENDER, ALICE, before, "250 2.0.0 ");

    let generation = server.handle.reload_plugins().unwrap();
    assert_eq!(generation, 1);
    assert_eq!(server.handle.plugin_generation(), 1);

    let after = b"Subject: after reload\r\n\r\ntwo\r\n";
    c.transaction(SENDER, ALICE, after, "250 2.0.0 ");
    // The reloaded filter still works on this connection.
    let spam = b"Subject: VIAGRA after reload\r\n\r\nthree\r\n";
    c.transaction(SENDER, ALICE, spam, "550 5.7.1 ");
    c.ok("QUIT", "221");
    inbox_is(
        &server,
        ALICE,
        &[
            &b"X-Wasmail-Checked: yes\r\nSubject: before reload\r\n\r\none\r\n"[..],
            b"X-Wasmail-Checked: yes\r\nSubject: after reload\r\n\r\ntwo\r\n",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[test]
fn graceful_shutdown_sends_421_4_3_2_between_commands() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.ok("NOOP", "250 2.0.0");
    drop(server);
    let (rest, how) = c.read_until_closed();
    let text = String::from_utf8_lossy(&rest);
    assert_eq!(
        text,
        format!("421 4.3.2 {HOSTNAME} Service shutting down\r\n"),
        "{how}"
    );
    assert_eq!(how, "closed");
}

#[test]
fn graceful_shutdown_lets_the_open_transaction_finish() {
    let server = start();
    let mut c = Client::ehlo_to(&server, Service::Smtp);
    c.open_data(SENDER, ALICE);
    c.send(b"Subject: in flight\r\n\r\nstarted before shutdown\r\n");
    // Shut down, keeping the data dir to look at afterwards.
    let stopper = std::thread::spawn(move || server.shut_down());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !stopper.is_finished(),
        "the server waits for the transaction"
    );
    let r = c.end_data(b"finished after\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    let r = c.reply();
    assert_eq!(r, format!("421 4.3.2 {HOSTNAME} Service shutting down\r\n"));
    let (rest, how) = c.read_until_closed();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(how, "closed");
    let data = stopper.join().unwrap();
    let new = data.path().join("accounts").join(ALICE).join("new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{new:?}");
    let stored = std::fs::read(files[0].path()).unwrap();
    assert_eq!(
        without_trace(&stored),
        b"Subject: in flight\r\n\r\nstarted before shutdown\r\nfinished after\r\n"
    );
}
