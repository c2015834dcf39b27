//! The real wasmail server (in-process, real sockets, temp data dir) driven by real SMTP clients:
//! Python's `smtplib` for what mail clients do, and a raw `TcpStream` for byte-exact dialogues
//! (pipelining, smuggling, over-long input). Every assertion is on what came back over the wire
//! or what sits on disk.
//!
//! No client socket can hang a test: the raw client has 10 s read/write timeouts and Python's
//! `smtplib` gets `timeout=10`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmail::Service;
use wasmail::config::{ByteSize, Config};
use wasmail_e2e::python;
use wasmail_e2e::server::{HOSTNAME, TestServer, without_trace};
use wasmail_plugin::{Grants, PluginSpec, WasmSource};

const TIMEOUT: Duration = Duration::from_secs(10);

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const CAROL: &str = "carol@example.test";
const ALICE_PW: &str = "alice-Secret-pw1";

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A raw SMTP client: bytes in, replies out, every read and write bounded by [`TIMEOUT`].
struct Smtp {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Smtp {
    /// Connects and reads the greeting (which must be 220).
    fn connect(addr: SocketAddr) -> Smtp {
        let mut s = Smtp::connect_raw(addr);
        let greeting = s.reply();
        assert!(
            greeting.starts_with(&format!("220 {HOSTNAME} ")),
            "greeting: {greeting:?}"
        );
        s
    }

    fn connect_raw(addr: SocketAddr) -> Smtp {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Smtp {
            stream,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed ({e}); unread: {:?}", self.lossy()));
    }

    fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Reads one complete (possibly multi-line) reply, CRLFs included.
    fn reply(&mut self) -> String {
        loop {
            if let Some(end) = complete_reply(&self.pending) {
                let reply: Vec<u8> = self.pending.drain(..end).collect();
                return String::from_utf8(reply).expect("reply is UTF-8");
            }
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "connection closed before a complete reply; got {:?}",
                    self.lossy()
                ),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "no complete reply within {TIMEOUT:?} (server hung?); got {:?}",
                        self.lossy()
                    )
                }
                Err(e) => panic!("read failed: {e}; got {:?}", self.lossy()),
            }
        }
    }

    /// `n` replies in order.
    fn replies(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.reply()).collect()
    }

    /// Sends a command line (CRLF appended) and reads its reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a command and checks the reply starts with `expected` (e.g. `"250 2.1.0"`).
    fn ok(&mut self, line: &str, expected: &str) -> String {
        let r = self.cmd(line);
        assert!(
            r.starts_with(expected),
            "{line:?}: expected {expected:?}, got {r:?}"
        );
        r
    }

    fn ehlo(&mut self) -> String {
        let r = self.cmd("EHLO client.example");
        assert!(r.starts_with(&format!("250-{HOSTNAME}\r\n")), "EHLO: {r:?}");
        r
    }

    /// AUTH PLAIN with an initial response; returns the reply.
    fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {token}"))
    }

    /// DATA with `message` (already dot-stuffed, ending in CRLF); returns the final reply.
    fn data(&mut self, message: &[u8]) -> String {
        self.ok("DATA", "354 ");
        self.send(message);
        self.send(b".\r\n");
        self.reply()
    }

    /// Reads until the server closes (or errors); returns what arrived. Bounded by [`TIMEOUT`].
    fn read_until_closed(&mut self) -> (Vec<u8>, &'static str) {
        let mut out = std::mem::take(&mut self.pending);
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return (out, "closed"),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return (out, "timeout");
                }
                Err(_) => return (out, "reset"),
            }
        }
    }
}

/// The end offset of the first complete reply in `buf`, if there is one.
fn complete_reply(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl + 1];
        assert!(
            line.len() >= 5
                && line[..3].iter().all(u8::is_ascii_digit)
                && (line[3] == b' ' || line[3] == b'-' || line[3] == b'\r'),
            "malformed reply line {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(line.ends_with(b"\r\n"), "reply line without CRLF: {line:?}");
        start += nl + 1;
        if line[3] != b'-' {
            return Some(start);
        }
    }
    None
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A server with alice, bob and carol.
fn server_with_users(server: TestServer) -> TestServer {
    server.add_user(ALICE, ALICE_PW);
    server.add_user(BOB, "bob-Secret-pw2");
    server.add_user(CAROL, "carol-Secret-pw3");
    server
}

fn start() -> TestServer {
    server_with_users(TestServer::start())
}

/// A server whose plugin chain is the built-in defaults followed by `extra`.
fn start_with_filters(
    configure: impl FnOnce(&mut Config),
    extra: impl FnOnce() -> Vec<PluginSpec>,
) -> TestServer {
    let seen: RefCell<Option<Config>> = RefCell::new(None);
    let server = TestServer::start_with(
        |c| {
            configure(c);
            *seen.borrow_mut() = Some(c.clone());
        },
        |b| {
            let config = seen.borrow().clone().expect("configure ran first");
            let mut specs = wasmail::plugins::default_specs(&config);
            specs.extend(extra());
            b.plugins(specs)
        },
    );
    server_with_users(server)
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

/// A message whose body has lines that need dot-stuffing, leading/trailing spaces and an empty
/// line: what arrives must be exactly this.
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

/// Dot-stuffs a CRLF message for DATA (RFC 5321 4.5.2).
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

/// The one message in an account's INBOX; also checks it sits in new/ or cur/ of the account,
/// byte for byte.
fn only_message(server: &TestServer, account: &str) -> Vec<u8> {
    let messages = server.messages(account, "INBOX");
    assert_eq!(messages.len(), 1, "{account}: messages in INBOX");
    let files = server.message_files(account);
    assert_eq!(files.len(), 1, "{account}: message files {files:?}");
    let file = &files[0];
    let subdir = file.parent().unwrap().file_name().unwrap();
    assert!(subdir == "new" || subdir == "cur", "{file:?}");
    let account_dir = server
        .data_dir()
        .join("accounts")
        .join(account.to_lowercase());
    assert_eq!(
        file.parent().unwrap().parent().unwrap(),
        account_dir,
        "the file is in the account's own Maildir (INBOX)"
    );
    assert_eq!(
        std::fs::read(file).unwrap(),
        messages[0],
        "the file on disk is the message"
    );
    messages.into_iter().next().unwrap()
}

/// The header block of a stored message (up to the empty line).
fn header_of(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    String::from_utf8_lossy(&message[..end]).into_owned()
}

/// The first `Received:` field of a stored message, unfolded.
fn received(message: &[u8]) -> String {
    let header = header_of(message);
    let start = header.find("Received: ").expect("a Received: field");
    let mut field = String::new();
    for (i, line) in header[start..].split("\r\n").enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        field.push_str(line.trim_start());
        field.push(' ');
    }
    field
}

/// Every message file under the data dir's accounts (any account, any folder).
fn all_message_files(server: &TestServer) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![server.data_dir().join("accounts")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|p| p == "new" || p == "cur")
            {
                out.push(path);
            }
        }
    }
    out
}

/// The generic smtplib client: prints `key value...` lines.
/// argv: mode (plain|starttls|ssl) host port cert user password mech sender rcpts(comma) file
/// mail-options(comma)
const PY_SEND: &str = r#"
import smtplib, ssl, sys
mode, host, port, cert, user, password, mech, sender, rcpts, path, opts = sys.argv[1:12]
msg = open(path, 'rb').read()
ctx = ssl.create_default_context(cafile=cert)
if host != '127.0.0.1':
    # The self-signed certificate names the host name, localhost and the loopback addresses;
    # the chain is still verified against it (CERT_REQUIRED).
    ctx.check_hostname = False
if mode == 'ssl':
    s = smtplib.SMTP_SSL(host, int(port), local_hostname='client.example', timeout=10, context=ctx)
    print('cipher', s.sock.version(), s.sock.cipher()[0])
else:
    s = smtplib.SMTP(host, int(port), local_hostname='client.example', timeout=10)
s.ehlo()
print('esmtp-before', ' '.join(sorted(s.esmtp_features)))
if mode == 'starttls':
    code, text = s.starttls(context=ctx)
    print('starttls', code, text.decode())
    print('cipher', s.sock.version(), s.sock.cipher()[0])
    s.ehlo()
print('esmtp', ' '.join(sorted(s.esmtp_features)))
try:
    if user != '-':
        s.user, s.password = user, password
        if mech == 'PLAIN':
            code, text = s.auth('PLAIN', s.auth_plain)
        elif mech == 'LOGIN':
            code, text = s.auth('LOGIN', s.auth_login, initial_response_ok=False)
        else:
            code, text = s.login(user, password)
        print('auth', code, text.decode())
    options = [o for o in opts.split(',') if o]
    refused = s.sendmail(sender, rcpts.split(','), msg, mail_options=options)
    for r, (c, t) in refused.items():
        print('refused', r, c, t.decode())
    print('sent')
except smtplib.SMTPRecipientsRefused as e:
    for r, (c, t) in e.recipients.items():
        print('refused', r, c, t.decode())
except smtplib.SMTPResponseException as e:
    print('error', e.smtp_code, e.smtp_error.decode())
print('quit', s.quit()[0])
"#;

/// One smtplib run (see [`PY_SEND`]).
struct Send<'a> {
    mode: &'a str,
    host: IpAddr,
    port: u16,
    auth: Option<(&'a str, &'a str, &'a str)>,
    sender: &'a str,
    rcpts: &'a [&'a str],
    message: &'a [u8],
    options: &'a str,
}

impl<'a> Send<'a> {
    fn new(server: &TestServer, service: Service, message: &'a [u8]) -> Send<'a> {
        let addr = server.addr(service);
        Send {
            mode: if service == Service::Submissions {
                "ssl"
            } else {
                "plain"
            },
            host: addr.ip(),
            port: addr.port(),
            auth: None,
            sender: "sender@remote.example",
            rcpts: &[ALICE],
            message,
            options: "",
        }
    }

    fn run(&self, server: &TestServer) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), self.message).unwrap();
        let port = self.port.to_string();
        let host = self.host.to_string();
        let cert = server.certificate();
        let (user, password, mech) = self.auth.unwrap_or(("-", "-", "-"));
        let rcpts = self.rcpts.join(",");
        let args: Vec<&Path> = [
            self.mode,
            &host,
            &port,
            cert.to_str().unwrap(),
            user,
            password,
            mech,
            self.sender,
            &rcpts,
            file.path().to_str().unwrap(),
            self.options,
        ]
        .into_iter()
        .map(Path::new)
        .collect();
        python(PY_SEND, &args).unwrap_or_else(|e| panic!("smtplib: {e}"))
    }
}

/// The value of the first output line starting with `key ` (panics if absent).
fn out<'o>(output: &'o str, key: &str) -> &'o str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key:?} line in smtplib output:\n{output}"))
}

fn has_line(output: &str, line: &str) -> bool {
    output.lines().any(|l| l == line)
}

/// A local IPv4 address that is not loopback (the UDP-connect trick: no packet is sent).
fn non_loopback_ipv4() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

// ---------------------------------------------------------------------------------------------
// Python smtplib: delivery, TLS, AUTH.

#[test]
fn smtplib_plain_delivery_is_byte_exact_with_trace_fields() {
    let server = start();
    let message = sample_message("plain delivery");
    let output = Send::new(&server, Service::Smtp, &message).run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    assert_eq!(out(&output, "quit"), "221");
    let esmtp = out(&output, "esmtp");
    for ext in ["pipelining", "8bitmime", "smtputf8", "starttls", "size"] {
        assert!(esmtp.split(' ').any(|e| e == ext), "{ext} in {esmtp}");
    }
    assert!(
        !esmtp.split(' ').any(|e| e == "auth"),
        "no AUTH on port 25: {esmtp}"
    );

    let stored = only_message(&server, ALICE);
    assert_eq!(
        String::from_utf8_lossy(without_trace(&stored)),
        String::from_utf8_lossy(&message)
    );
    assert_eq!(without_trace(&stored), &message[..]);
    assert!(
        stored.starts_with(b"Return-Path: <sender@remote.example>\r\nReceived: from client.example ([127.0.0.1] port "),
        "{}",
        header_of(&stored)
    );
    let rcvd = received(&stored);
    assert!(
        rcvd.contains(&format!("by {HOSTNAME} (wasmail) with ESMTP id ")),
        "{rcvd}"
    );
    assert!(rcvd.contains("for <alice@example.test>;"), "{rcvd}");
    assert!(!rcvd.contains("using"), "no TLS: {rcvd}");
    assert!(!rcvd.contains("authenticated"), "{rcvd}");
}

#[test]
fn smtplib_starttls_on_port_25_records_tls_in_received() {
    let server = start();
    let message = sample_message("starttls");
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.mode = "starttls";
    let output = send.run(&server);
    assert!(
        out(&output, "starttls").starts_with("220 2.0.0"),
        "{output}"
    );
    assert!(has_line(&output, "sent"), "{output}");
    let (version, cipher) = out(&output, "cipher").split_once(' ').unwrap();
    assert!(
        !out(&output, "esmtp").contains("starttls"),
        "STARTTLS not offered again: {output}"
    );

    let stored = only_message(&server, ALICE);
    assert_eq!(without_trace(&stored), &message[..]);
    let rcvd = received(&stored);
    assert!(rcvd.contains(" with ESMTPS id "), "{rcvd}");
    // Python names TLS 1.3 `TLSv1.3` and the cipher `TLS_AES_256_GCM_SHA384`; rustls says
    // `TLS13_AES_256_GCM_SHA384`.
    assert!(
        rcvd.contains(&format!("(using {version} with cipher ")),
        "{rcvd}"
    );
    let suite = cipher.trim_start_matches("TLS_");
    assert!(rcvd.contains(suite), "{suite} in {rcvd}");
    assert!(stored.starts_with(b"Return-Path: <sender@remote.example>\r\n"));
}

#[test]
fn smtplib_submission_starttls_auth_plain_and_login() {
    let server = start();
    for (mech, subject) in [("PLAIN", "auth plain"), ("LOGIN", "auth login")] {
        let message = sample_message(subject);
        let mut send = Send::new(&server, Service::Submission, &message);
        send.mode = "starttls";
        send.sender = ALICE;
        send.rcpts = &[BOB];
        send.auth = Some((ALICE, ALICE_PW, mech));
        let output = send.run(&server);
        assert!(
            out(&output, "auth").starts_with("235 2.7.0"),
            "{mech}: {output}"
        );
        assert!(has_line(&output, "sent"), "{mech}: {output}");
        assert!(
            out(&output, "esmtp").split(' ').any(|e| e == "auth"),
            "{output}"
        );
    }
    let stored = server.messages(BOB, "INBOX");
    assert_eq!(stored.len(), 2);
    for (m, subject) in stored.iter().zip(["auth plain", "auth login"]) {
        assert_eq!(without_trace(m), &sample_message(subject)[..]);
        assert!(m.starts_with(b"Return-Path: <alice@example.test>\r\n"));
        let rcvd = received(m);
        assert!(rcvd.contains(" with ESMTPSA id "), "{rcvd}");
        assert!(rcvd.contains("(using TLSv1."), "{rcvd}");
        assert!(
            rcvd.contains("(authenticated as alice@example.test)"),
            "{rcvd}"
        );
    }
}

#[test]
fn smtplib_submission_requires_auth() {
    let server = start();
    let message = sample_message("no auth");
    let mut send = Send::new(&server, Service::Submission, &message);
    send.mode = "starttls";
    send.rcpts = &[BOB];
    let output = send.run(&server);
    let error = out(&output, "error");
    assert!(error.starts_with("530 5.7.0"), "{output}");
    assert!(server.messages(BOB, "INBOX").is_empty());
}

#[test]
fn smtplib_submissions_implicit_tls_auth_plain_and_login() {
    let server = start();
    // `login()` picks PLAIN (the first of smtplib's preferences the server offers); LOGIN is
    // driven through its challenges.
    let runs = [
        ("login()", "implicit tls plain"),
        ("LOGIN", "implicit tls login"),
    ];
    let mut version = String::new();
    for (mech, subject) in runs {
        let message = sample_message(subject);
        let mut send = Send::new(&server, Service::Submissions, &message);
        send.sender = ALICE;
        send.rcpts = &[BOB];
        send.auth = Some((ALICE, ALICE_PW, mech));
        let output = send.run(&server);
        assert!(out(&output, "auth").starts_with("235 2.7.0"), "{output}");
        assert!(has_line(&output, "sent"), "{output}");
        assert!(
            !out(&output, "esmtp").contains("starttls"),
            "no STARTTLS inside TLS: {output}"
        );
        out(&output, "cipher")
            .split(' ')
            .next()
            .unwrap()
            .clone_into(&mut version);
    }
    let stored = server.messages(BOB, "INBOX");
    assert_eq!(stored.len(), 2);
    for (m, (_, subject)) in stored.iter().zip(runs) {
        assert_eq!(without_trace(m), &sample_message(subject)[..]);
        let rcvd = received(m);
        assert!(rcvd.contains(" with ESMTPSA id "), "{rcvd}");
        assert!(
            rcvd.contains(&format!("(using {version} with cipher ")),
            "{rcvd}"
        );
        assert!(
            rcvd.contains("(authenticated as alice@example.test)"),
            "{rcvd}"
        );
        assert!(m.starts_with(b"Return-Path: <alice@example.test>\r\n"));
    }
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
    assert!(
        out(&output, "starttls").starts_with("'220 2.0.0 "),
        "{output}"
    );
    // Nothing from before TLS counts: no HELO yet, and no MAIL was run.
    assert!(out(&output, "rcpt").starts_with("'503 5.5.1 "), "{output}");
    assert!(out(&output, "ehlo").starts_with("'250-"), "{output}");
    assert!(out(&output, "rcpt2").starts_with("'503 5.5.1 "), "{output}");
    assert!(out(&output, "quit").starts_with("'221 2.0.0"), "{output}");
}

#[test]
fn wrong_password_gets_535_and_the_session_goes_on() {
    let server = start();
    // smtplib.
    let message = sample_message("wrong password");
    let mut send = Send::new(&server, Service::Submissions, &message);
    send.auth = Some((ALICE, "not-the-password", "PLAIN"));
    let output = send.run(&server);
    assert!(out(&output, "error").starts_with("535 5.7.8"), "{output}");
    assert!(!has_line(&output, "sent"));

    // Raw: wrong, then right on the same connection.
    let mut c = Smtp::connect(server.addr(Service::Submission));
    c.ehlo();
    let r = c.auth_plain(ALICE, "wrong");
    assert!(r.starts_with("535 5.7.8 "), "{r:?}");
    let r = c.auth_plain("nobody@example.test", "whatever");
    assert!(
        r.starts_with("535 5.7.8 "),
        "unknown user, same answer: {r:?}"
    );
    let r = c.auth_plain(ALICE, ALICE_PW);
    assert!(r.starts_with("235 2.7.0 "), "{r:?}");
    c.ok("QUIT", "221 2.0.0");
    assert!(server.messages(ALICE, "INBOX").is_empty());
}

// ---------------------------------------------------------------------------------------------
// Content: SMTPUTF8, 8BITMIME, size.

#[test]
fn smtputf8_address_is_delivered() {
    let server = start();
    const UTF8_USER: &str = "jösé@example.test";
    let utf8_user = UTF8_USER;
    server.add_user(utf8_user, "jose-Secret-pw4");
    let message = "From: Jörg <jörg@remote.example>\r\nTo: jösé@example.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße aus Köln.\r\n"
        .as_bytes()
        .to_vec();
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.sender = "jörg@remote.example";
    send.rcpts = &[UTF8_USER];
    send.options = "SMTPUTF8,BODY=8BITMIME";
    let output = send.run(&server);
    assert!(has_line(&output, "sent"), "{output}");

    let stored = only_message(&server, utf8_user);
    assert_eq!(without_trace(&stored), &message[..]);
    assert!(
        stored.starts_with("Return-Path: <jörg@remote.example>\r\n".as_bytes()),
        "{}",
        header_of(&stored)
    );
    let rcvd = received(&stored);
    assert!(rcvd.contains(" with UTF8SMTP id "), "{rcvd}");
    assert!(rcvd.contains("for <jösé@example.test>"), "{rcvd}");
}

#[test]
fn utf8_address_without_smtputf8_is_refused_553() {
    let server = start();
    server.add_user("jösé@example.test", "jose-Secret-pw4");
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    let r = c.cmd("MAIL FROM:<jörg@remote.example>");
    assert!(r.starts_with("553 5.6.7 "), "{r:?}");
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    let r = c.cmd("RCPT TO:<jösé@example.test>");
    assert!(r.starts_with("553 5.6.7 "), "{r:?}");
    c.ok("RSET", "250 2.0.0");
    // The same addresses with SMTPUTF8 work on the same connection.
    c.ok("MAIL FROM:<jörg@remote.example> SMTPUTF8", "250 2.1.0");
    c.ok("RCPT TO:<jösé@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: ok\r\n\r\nnow with SMTPUTF8\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    let stored = only_message(&server, "jösé@example.test");
    assert_eq!(
        without_trace(&stored),
        b"Subject: ok\r\n\r\nnow with SMTPUTF8\r\n"
    );
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
    let output = send.run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    let stored = only_message(&server, ALICE);
    assert_eq!(without_trace(&stored), &message[..]);
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
    let output = Send::new(&server, Service::Smtp, &message).run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    let stored = only_message(&server, ALICE);
    assert!(without_trace(&stored) == &message[..], "content differs");
}

#[test]
fn oversize_message_gets_552_and_the_session_goes_on() {
    let server = server_with_users(TestServer::start_with(
        |c| c.limits.max_message_size = ByteSize::kib(64),
        |b| b,
    ));
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    let ehlo = c.ehlo();
    assert!(ehlo.contains("250-SIZE 65536\r\n"), "{ehlo:?}");
    // Announced too big: refused at MAIL.
    let r = c.cmd("MAIL FROM:<sender@remote.example> SIZE=100000");
    assert!(r.starts_with("552 5.3.4 "), "{r:?}");
    // Not announced: refused after the data.
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..1000 {
        big.extend_from_slice(&[b'x'; 98]);
        big.extend_from_slice(b"\r\n");
    }
    let r = c.data(&big);
    assert!(r.starts_with("552 5.3.4 "), "{r:?}");
    assert!(server.messages(ALICE, "INBOX").is_empty());
    // The session goes on: a small message is delivered.
    c.ok("NOOP", "250 2.0.0");
    c.ok("MAIL FROM:<sender@remote.example> SIZE=100", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: small\r\n\r\nfits\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    let stored = only_message(&server, ALICE);
    assert_eq!(without_trace(&stored), b"Subject: small\r\n\r\nfits\r\n");
}

// ---------------------------------------------------------------------------------------------
// Raw dialogues: pipelining, recipients, malformed input, smuggling.

#[test]
fn pipelined_transactions_get_every_reply_in_order() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
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
    let r = c.replies(5);
    assert!(r[0].starts_with("250 2.1.0"), "{r:?}");
    assert!(r[1].starts_with("250 2.1.5"), "{r:?}");
    assert!(r[2].starts_with("550 5.1.1 "), "{r:?}");
    assert!(r[3].starts_with("250 2.1.5"), "{r:?}");
    assert!(r[4].starts_with("354 "), "{r:?}");

    // Group 2 (content may open a group, RFC 2920 3.1): message 1, then transaction 2's
    // commands up to DATA.
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
    let r = c.replies(5);
    assert!(r[0].starts_with("250 2.0.0 Ok: queued as "), "{r:?}");
    assert!(r[1].starts_with("250 2.1.0"), "{r:?}");
    assert!(r[2].starts_with("250 2.1.5"), "{r:?}");
    assert!(r[3].starts_with("550 5.7.1 "), "relay refused: {r:?}");
    assert!(r[4].starts_with("354 "), "{r:?}");

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
    let r = c.replies(9);
    let expected = [
        "250 2.0.0 Ok: queued as ",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.0.0 Ok: queued as ",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.0.0 10 octets received",
        "250 2.0.0 Ok: queued as ",
        "221 2.0.0",
    ];
    for (reply, want) in r.iter().zip(expected) {
        assert!(
            reply.starts_with(want),
            "expected {want:?}: all replies {r:?}"
        );
    }
    let (rest, how) = c.read_until_closed();
    assert!(rest.is_empty(), "nothing after 221: {rest:?}");
    assert_eq!(how, "closed");

    let alice = server.messages(ALICE, "INBOX");
    assert_eq!(alice.len(), 2);
    assert_eq!(without_trace(&alice[0]), &m1[..]);
    assert_eq!(without_trace(&alice[1]), &m3[..]);
    let bob = server.messages(BOB, "INBOX");
    assert_eq!(bob.len(), 2);
    assert_eq!(without_trace(&bob[0]), &m1[..]);
    assert_eq!(without_trace(&bob[1]), &m4[..]);
    let carol = server.messages(CAROL, "INBOX");
    assert_eq!(carol.len(), 1);
    assert_eq!(without_trace(&carol[0]), &m2[..]);
    assert!(
        received(&carol[0]).contains(" with ESMTP id "),
        "{}",
        received(&carol[0])
    );
}

#[test]
fn three_local_recipients_get_one_copy_each() {
    let server = start();
    let message = sample_message("three recipients");
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.rcpts = &[ALICE, BOB, CAROL];
    let output = send.run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    for account in [ALICE, BOB, CAROL] {
        let stored = only_message(&server, account);
        assert_eq!(without_trace(&stored), &message[..], "{account}");
        let rcvd = received(&stored);
        assert!(!rcvd.contains(" for <"), "no recipient named: {rcvd}");
    }
}

#[test]
fn unknown_local_user_gets_550_5_1_1() {
    let server = start();
    let message = sample_message("unknown user");
    let mut send = Send::new(&server, Service::Smtp, &message);
    send.rcpts = &["nobody@example.test"];
    let output = send.run(&server);
    assert!(
        out(&output, "refused").starts_with("nobody@example.test 550 5.1.1 "),
        "{output}"
    );
    assert!(all_message_files(&server).is_empty());
    // Mixed: the known recipient still gets it.
    send.rcpts = &["nobody@example.test", ALICE];
    let output = send.run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    assert!(
        out(&output, "refused").starts_with("nobody@example.test 550 5.1.1 "),
        "{output}"
    );
    assert_eq!(without_trace(&only_message(&server, ALICE)), &message[..]);
}

#[test]
fn relay_without_auth_is_denied_550_5_7_1() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<alice@example.test>", "250 2.1.0");
    let r = c.cmd("RCPT TO:<someone@elsewhere.example>");
    assert!(r.starts_with("550 5.7.1 "), "{r:?}");
    let r = c.cmd("DATA");
    assert!(r.starts_with("554 5.5.1 "), "{r:?}");
    c.ok("QUIT", "221");
    assert!(server.queued().is_empty(), "{:?}", server.queued());
    assert!(all_message_files(&server).is_empty());
}

#[test]
fn relay_with_auth_is_queued_not_delivered_locally() {
    let server = start();
    let message = sample_message("relay me");
    let mut send = Send::new(&server, Service::Submission, &message);
    send.mode = "starttls";
    send.sender = ALICE;
    send.rcpts = &["someone@elsewhere.example"];
    send.auth = Some((ALICE, ALICE_PW, "PLAIN"));
    let output = send.run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    assert!(!output.contains("refused"), "{output}");
    let queued = server.queued();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(
        all_message_files(&server).is_empty(),
        "{:?}",
        all_message_files(&server)
    );
}

#[test]
fn data_with_no_valid_recipients_gets_554() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.send(
        b"MAIL FROM:<sender@remote.example>\r\n\
          RCPT TO:<nobody@example.test>\r\n\
          RCPT TO:<elsewhere@remote.example>\r\n\
          DATA\r\n",
    );
    let r = c.replies(4);
    assert!(r[0].starts_with("250 2.1.0"), "{r:?}");
    assert!(r[1].starts_with("550 5.1.1 "), "{r:?}");
    assert!(r[2].starts_with("550 5.7.1 "), "{r:?}");
    assert!(r[3].starts_with("554 5.5.1 "), "{r:?}");
    // No 354 came, so this line is a command (an unknown one), not content.
    let r = c.cmd("Subject: not a message");
    assert!(r.starts_with("500 5.5.2"), "{r:?}");
    c.ok("NOOP", "250 2.0.0");
    c.ok("QUIT", "221");
    assert!(all_message_files(&server).is_empty());
}

#[test]
fn too_many_recipients_get_452_4_5_3() {
    let server = server_with_users(TestServer::start_with(
        |c| c.limits.max_recipients = 2,
        |b| b,
    ));
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.send(
        b"MAIL FROM:<sender@remote.example>\r\n\
          RCPT TO:<alice@example.test>\r\n\
          RCPT TO:<bob@example.test>\r\n\
          RCPT TO:<carol@example.test>\r\n\
          RCPT TO:<carol@example.test>\r\n\
          DATA\r\n",
    );
    let r = c.replies(6);
    assert!(r[0].starts_with("250 2.1.0"), "{r:?}");
    assert!(r[1].starts_with("250 2.1.5"), "{r:?}");
    assert!(r[2].starts_with("250 2.1.5"), "{r:?}");
    assert!(r[3].starts_with("452 4.5.3 "), "{r:?}");
    assert!(r[4].starts_with("452 4.5.3 "), "{r:?}");
    assert!(r[5].starts_with("354 "), "{r:?}");
    let m = sample_message("two of three");
    c.send(&dot_stuff(&m));
    c.send(b".\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    assert_eq!(without_trace(&only_message(&server, ALICE)), &m[..]);
    assert_eq!(without_trace(&only_message(&server, BOB)), &m[..]);
    assert!(server.messages(CAROL, "INBOX").is_empty());
}

#[test]
fn malformed_commands_get_500_501_and_the_session_goes_on() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    let cases: &[(&str, &str)] = &[
        ("HELLO there", "500 5.5.2"),
        ("EHLO", "501 5.5.4"),
        ("\u{1}\u{2}garbage", "500 5.5.2"),
    ];
    for (line, want) in cases {
        c.ok(line, want);
    }
    c.ehlo();
    let cases: &[(&str, &str)] = &[
        ("MAIL FROM:<no-at-sign>", "501 5.1.7"),
        ("MAIL FROM:alice@example.test", "501 "),
        ("MAIL FROM:<a@remote.example> BODY=9BIT", "501 5.5.4"),
        ("MAIL FROM:<a@remote.example> NOSUCH=1", "555 5.5.4"),
        ("MAIL TO:<a@remote.example>", "501 "),
        ("RCPT TO:<alice@example.test>", "503 5.5.1"),
        ("DATA", "503 5.5.1"),
        ("BDAT x", "501 "),
    ];
    for (line, want) in cases {
        c.ok(line, want);
    }
    c.ok("MAIL FROM:<a@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test", "501 5.1.3");
    c.ok("RCPT TO:<alice@example.test> NOTIFY=SOMETIMES", "501 5.5.4");
    c.ok("MAIL FROM:<b@remote.example>", "503 5.5.1");
    // After all that, a transaction works.
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: after errors\r\n\r\nstill fine\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    assert_eq!(
        without_trace(&only_message(&server, ALICE)),
        b"Subject: after errors\r\n\r\nstill fine\r\n"
    );
}

#[test]
fn hundred_megabytes_without_a_line_end_are_cut_off() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    let block = vec![b'A'; 1024 * 1024];
    let mut sent = 0usize;
    let mut write_error = None;
    while sent < 100 * 1024 * 1024 {
        match c.stream.write(&block) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    if let Some(e) = &write_error {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the server stopped reading without closing (write timed out after {sent} octets)"
        );
    }
    let (rest, how) = c.read_until_closed();
    let text = String::from_utf8_lossy(&rest);
    assert_ne!(
        how, "timeout",
        "connection still open after {sent} octets: {text:?}"
    );
    assert!(
        text.is_empty() || text.starts_with("421 4.") || text.starts_with("500 5.5.2"),
        "{text:?}"
    );
    if !text.is_empty() {
        assert!(text.contains("421 4."), "{text:?}");
    }
    assert!(
        write_error.is_some() || sent == 100 * 1024 * 1024,
        "sent {sent}"
    );
    eprintln!(
        "cut off after {sent} octets ({how}, write error: {write_error:?}); server said {text:?}"
    );

    // The server still serves.
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: after the flood\r\n\r\nok\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
}

#[test]
fn hundred_megabytes_without_a_line_end_inside_data_are_refused() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    c.ok("DATA", "354 ");
    c.send(b"Subject: one long line\r\n\r\n");
    let block = vec![b'A'; 1024 * 1024];
    let mut sent = 0usize;
    let mut write_error = None;
    while sent < 100 * 1024 * 1024 {
        match c.stream.write(&block) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    match &write_error {
        // Cut off while sending: it must have said why (or just closed).
        Some(e) => {
            assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "the server stopped reading without closing (after {sent} octets)"
            );
            let (rest, how) = c.read_until_closed();
            let text = String::from_utf8_lossy(&rest);
            assert_ne!(how, "timeout", "{text:?}");
            assert!(
                text.is_empty() || text.contains("421 4.") || text.contains("552 5.3.4"),
                "{text:?}"
            );
        }
        // All of it was read: the end of the data gets 552 (over the 50 MiB default limit).
        None => {
            c.send(b"\r\n.\r\n");
            let r = c.reply();
            assert!(
                r.starts_with("552 5.3.4 ") || r.starts_with("500 5.5.2 "),
                "{r:?}"
            );
            c.ok("NOOP", "250 2.0.0");
            c.ok("QUIT", "221");
        }
    }
    eprintln!("sent {sent} octets, write error {write_error:?}");
    assert!(all_message_files(&server).is_empty());
    // The server still serves.
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: after the long line\r\n\r\nok\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
}

#[test]
fn data_terminator_split_across_reads_and_chunk_boundaries() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.stream.set_nodelay(true).unwrap();
    c.ehlo();
    let mut expected = Vec::new();
    // 1. The terminator and a stuffed dot arrive one octet per read.
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    c.ok("DATA", "354 ");
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
        c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
        c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
        c.ok("DATA", "354 ");
        let mut m = format!("Subject: boundary {shift}\r\n\r\n").into_bytes();
        let target = 64 * 1024 - 3 + shift;
        while m.len() + 100 < target {
            m.extend_from_slice(&[b'y'; 98]);
            m.extend_from_slice(b"\r\n");
        }
        let fill = target - m.len() - 2;
        m.extend(std::iter::repeat_n(b'z', fill));
        m.extend_from_slice(b"\r\n");
        let mut wire = dot_stuff(&m);
        wire.extend_from_slice(b".\r\n");
        c.send(&wire);
        let r = c.reply();
        assert!(r.starts_with("250 2.0.0 "), "shift {shift}: {r:?}");
        expected.push(m);
    }
    c.ok("QUIT", "221");
    let inbox = server.messages(ALICE, "INBOX");
    assert_eq!(inbox.len(), expected.len());
    for (stored, sent) in inbox.iter().zip(&expected) {
        assert!(without_trace(stored) == &sent[..], "content differs");
    }
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
        let mut c = Smtp::connect(server.addr(Service::Smtp));
        c.ehlo();
        c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
        c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
        c.ok("DATA", "354 ");
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
    assert!(all_message_files(&server).is_empty());
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
    let server = server_with_users(TestServer::start_with(
        |c| c.services.submission.listen = vec![SocketAddr::new(ip, 0)],
        |b| b,
    ));
    let addr = server.addr(Service::Submission);
    assert_eq!(addr.ip(), ip);
    let mut c = Smtp::connect(addr);
    let ehlo = c.ehlo();
    assert!(ehlo.contains("STARTTLS"), "{ehlo:?}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo:?}");
    let r = c.auth_plain(ALICE, ALICE_PW);
    assert!(r.starts_with("538 5.7.11 "), "{r:?}");
    let r = c.cmd("AUTH LOGIN");
    assert!(r.starts_with("538 5.7.11 "), "{r:?}");
    let r = c.cmd("MAIL FROM:<alice@example.test>");
    assert!(r.starts_with("530 5.7.0 "), "{r:?}");
    c.ok("QUIT", "221");

    // After STARTTLS, AUTH is offered and works.
    let message = sample_message("after starttls");
    let mut send = Send::new(&server, Service::Submission, &message);
    send.mode = "starttls";
    send.sender = ALICE;
    send.rcpts = &[BOB];
    send.auth = Some((ALICE, ALICE_PW, "PLAIN"));
    let output = send.run(&server);
    assert!(
        !out(&output, "esmtp-before").split(' ').any(|e| e == "auth"),
        "{output}"
    );
    assert!(
        out(&output, "esmtp").split(' ').any(|e| e == "auth"),
        "{output}"
    );
    assert!(out(&output, "auth").starts_with("235 2.7.0"), "{output}");
    assert!(has_line(&output, "sent"), "{output}");
    let stored = only_message(&server, BOB);
    let rcvd = received(&stored);
    assert!(rcvd.contains(&format!("([{ip}] port ")), "{rcvd}");
    assert!(rcvd.contains(" with ESMTPSA id "), "{rcvd}");
}

#[test]
fn auth_in_plaintext_when_allowed_by_config() {
    let ip = non_loopback_ipv4();
    let server = server_with_users(TestServer::start_with(
        |c| {
            c.tls.allow_plaintext_auth = true;
            if let Some(ip) = ip {
                c.services.submission.listen = vec![SocketAddr::new(ip, 0)];
            }
        },
        |b| b,
    ));
    let mut c = Smtp::connect(server.addr(Service::Submission));
    let ehlo = c.ehlo();
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo:?}");
    let r = c.auth_plain(ALICE, ALICE_PW);
    assert!(r.starts_with("235 2.7.0 "), "{r:?}");
    c.ok("MAIL FROM:<alice@example.test>", "250 2.1.0");
    c.ok("RCPT TO:<bob@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: plaintext auth\r\n\r\nallowed by config\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    let stored = only_message(&server, BOB);
    let rcvd = received(&stored);
    assert!(rcvd.contains(" with ESMTPA id "), "{rcvd}");
    assert!(
        rcvd.contains("(authenticated as alice@example.test)"),
        "{rcvd}"
    );
    assert!(!rcvd.contains("using"), "{rcvd}");
}

// ---------------------------------------------------------------------------------------------
// WASM filters.

#[test]
fn wasm_filter_rejects_by_header() {
    let server = start_with_filters(
        |_| {},
        || {
            vec![guest_filter(
                "header-reject",
                wasmail_plugin_artifacts::TEST_HEADER_REJECT,
            )]
        },
    );
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    // Its HELO hook defers one name.
    c.ok("EHLO defer.me", "451 4.7.1 greeting deferred");
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: cheap VIAGRA here\r\n\r\nbuy\r\n");
    assert_eq!(r, "550 5.7.1 message refused by policy\r\n");
    assert!(all_message_files(&server).is_empty());
    // Another message on the same connection passes, tagged by the filter.
    let m = sample_message("clean");
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(&dot_stuff(&m));
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    c.ok("QUIT", "221");
    let stored = only_message(&server, ALICE);
    let mut expected = b"X-Wasmail-Checked: yes\r\n".to_vec();
    expected.extend_from_slice(&m);
    assert_eq!(without_trace(&stored), &expected[..]);
}

#[test]
fn wasm_filter_quarantines_into_junk() {
    let server = start_with_filters(
        |_| {},
        || {
            vec![guest_filter(
                "quarantine",
                wasmail_plugin_artifacts::TEST_QUARANTINE,
            )]
        },
    );
    // Over the guest's default 1000 octets: Junk.
    let big = message_with_attachment(2000);
    let output = Send::new(&server, Service::Smtp, &big).run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    assert!(server.messages(ALICE, "INBOX").is_empty());
    let junk = server.messages(ALICE, "Junk");
    assert_eq!(junk.len(), 1);
    assert_eq!(without_trace(&junk[0]), &big[..]);
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
    let output = Send::new(&server, Service::Smtp, &small).run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    let inbox = server.messages(ALICE, "INBOX");
    assert_eq!(inbox.len(), 1);
    assert_eq!(without_trace(&inbox[0]), &small[..]);
    assert_eq!(server.messages(ALICE, "Junk").len(), 1);
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
    let server = start_with_filters(
        |_| {},
        || {
            let mut specs = accept_harmless_rule();
            specs.push(guest_filter(
                "panicky",
                wasmail_plugin_artifacts::TEST_PANIC,
            ));
            specs
        },
    );
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: trap now\r\n\r\nboom\r\n");
    assert!(r.starts_with("451 4.3.0 "), "{r:?}");
    assert!(all_message_files(&server).is_empty());
    // Same connection, no trigger: delivered.
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: harmless one\r\n\r\nfine\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    // The trap again, then a new connection still works.
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: trap again\r\n\r\nboom\r\n");
    assert!(r.starts_with("451 4.3.0 "), "{r:?}");
    c.ok("QUIT", "221");
    let message = sample_message("harmless two");
    let output = Send::new(&server, Service::Smtp, &message).run(&server);
    assert!(has_line(&output, "sent"), "{output}");
    let inbox = server.messages(ALICE, "INBOX");
    assert_eq!(inbox.len(), 2);
    assert_eq!(
        without_trace(&inbox[0]),
        b"Subject: harmless one\r\n\r\nfine\r\n"
    );
    assert_eq!(without_trace(&inbox[1]), &message[..]);
}

#[test]
fn hot_reload_between_two_transactions_on_one_connection() {
    let server = start_with_filters(
        |_| {},
        || {
            vec![guest_filter(
                "header-reject",
                wasmail_plugin_artifacts::TEST_HEADER_REJECT,
            )]
        },
    );
    assert_eq!(server.handle.plugin_generation(), 0);
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: before reload\r\n\r\none\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");

    let generation = server.handle.reload_plugins().unwrap();
    assert_eq!(generation, 1);
    assert_eq!(server.handle.plugin_generation(), 1);

    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: after reload\r\n\r\ntwo\r\n");
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    // The reloaded filter still works on this connection.
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    let r = c.data(b"Subject: VIAGRA after reload\r\n\r\nthree\r\n");
    assert!(r.starts_with("550 5.7.1 "), "{r:?}");
    c.ok("QUIT", "221");
    let inbox = server.messages(ALICE, "INBOX");
    assert_eq!(inbox.len(), 2);
    assert_eq!(
        without_trace(&inbox[0]),
        b"X-Wasmail-Checked: yes\r\nSubject: before reload\r\n\r\none\r\n"
    );
    assert_eq!(
        without_trace(&inbox[1]),
        b"X-Wasmail-Checked: yes\r\nSubject: after reload\r\n\r\ntwo\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Shutdown.

#[test]
fn graceful_shutdown_sends_421_4_3_2_between_commands() {
    let server = start();
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
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
    let mut server = start();
    // Keep the data dir past the server's drop, to look at it afterwards.
    let data = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let mut c = Smtp::connect(server.addr(Service::Smtp));
    c.ehlo();
    c.ok("MAIL FROM:<sender@remote.example>", "250 2.1.0");
    c.ok("RCPT TO:<alice@example.test>", "250 2.1.5");
    c.ok("DATA", "354 ");
    c.send(b"Subject: in flight\r\n\r\nstarted before shutdown\r\n");
    let stopper = std::thread::spawn(move || drop(server));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !stopper.is_finished(),
        "the server waits for the transaction"
    );
    c.send(b"finished after\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 "), "{r:?}");
    let r = c.reply();
    assert_eq!(r, format!("421 4.3.2 {HOSTNAME} Service shutting down\r\n"));
    let (rest, how) = c.read_until_closed();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(how, "closed");
    stopper.join().unwrap();
    let new = data.path().join("accounts").join(ALICE).join("new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{new:?}");
    let stored = std::fs::read(files[0].path()).unwrap();
    assert_eq!(
        without_trace(&stored),
        b"Subject: in flight\r\n\r\nstarted before shutdown\r\nfinished after\r\n"
    );
}
