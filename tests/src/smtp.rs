//! What the SMTP end-to-end tests (`tests/tests/smtp.rs`, `tests/tests/smtp_tools.rs`) share:
//! the test accounts, a sample message, checks on what was stored, a raw byte-exact SMTP client
//! and a Python `smtplib` client.
//!
//! No client socket can hang a test: the raw client has [`TIMEOUT`] read/write timeouts and
//! `smtplib` gets `timeout=10`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use wasmail::Service;
use wasmail::config::Config;

use crate::python;
use crate::raw::{RawConnection, deref_to_raw};
use crate::server::{HOSTNAME, TestServer, without_trace};

pub use crate::raw::TIMEOUT;

pub const ALICE: &str = "alice@example.test";
pub const BOB: &str = "bob@example.test";
pub const CAROL: &str = "carol@example.test";
pub const ALICE_PW: &str = "alice-Secret-pw1";
/// The envelope sender of mail from outside.
pub const SENDER: &str = "sender@remote.example";

/// What the first `Received:` field says of a session that authenticated (and used TLS).
pub const ESMTPSA: &str = " with ESMTPSA id ";
/// What the first `Received:` field says of alice's authenticated sessions.
pub const AS_ALICE: &str = "(authenticated as alice@example.test)";

// ---------------------------------------------------------------------------------------------
// Servers and messages.

/// `server` with the accounts alice, bob and carol.
pub fn with_users(server: TestServer) -> TestServer {
    server.add_user(ALICE, ALICE_PW);
    server.add_user(BOB, "bob-Secret-pw2");
    server.add_user(CAROL, "carol-Secret-pw3");
    server
}

/// The default server with alice, bob and carol.
pub fn start() -> TestServer {
    with_users(TestServer::start())
}

/// A server whose config the test adjusts first, with alice, bob and carol.
pub fn start_configured(configure: impl FnOnce(&mut Config)) -> TestServer {
    with_users(TestServer::start_with(configure, |b| b))
}

/// A message whose body has lines that need dot-stuffing, leading/trailing spaces and an empty
/// line: what arrives must be exactly this.
pub fn sample_message(subject: &str) -> Vec<u8> {
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

/// Base64 (RFC 4648, padded) of `input`.
pub fn base64(input: &[u8]) -> String {
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

/// A local IPv4 address that is not loopback (the UDP-connect trick: no packet is sent), for
/// tests of what a server allows only on loopback; `None` on a machine without one.
pub fn non_loopback_ipv4() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

// ---------------------------------------------------------------------------------------------
// Checks on what was stored.

/// The one message in an account's INBOX; also checks it sits in new/ or cur/ of the account's
/// own Maildir, byte for byte.
pub fn only_message(server: &TestServer, account: &str) -> Vec<u8> {
    let messages = server.messages(account, "INBOX");
    assert_eq!(messages.len(), 1, "{account}: messages in INBOX");
    let files = server.message_files(account);
    assert_eq!(files.len(), 1, "{account}: message files {files:?}");
    let file = &files[0];
    let subdir = file.parent().and_then(Path::file_name);
    assert!(subdir.is_some_and(|d| d == "new" || d == "cur"), "{file:?}");
    let account_dir = server
        .data_dir()
        .join("accounts")
        .join(account.to_lowercase());
    assert_eq!(
        file.parent().and_then(Path::parent),
        Some(account_dir.as_path()),
        "the file is in the account's own Maildir (INBOX)"
    );
    let on_disk = std::fs::read(file).unwrap_or_else(|e| panic!("read {file:?}: {e}"));
    assert_eq!(on_disk, messages[0], "the file on disk is the message");
    messages.into_iter().next().unwrap_or_default()
}

/// Checks that `got` is `want`, byte for byte; a failure shows where they part and the start of
/// both (a whole message may be megabytes).
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).take_while(|(g, w)| g == w).count();
        let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(2000)]).into_owned();
        panic!(
            "{what}: content differs at octet {at} ({} octets, expected {}):\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            show(got),
            show(want)
        );
    }
}

/// Checks that `got` are `expected` in any order (Maildir names do not keep it), each byte for
/// byte.
pub fn assert_same_set(mut got: Vec<Vec<u8>>, mut expected: Vec<Vec<u8>>, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: messages");
    got.sort();
    expected.sort();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_same(g, e, &format!("{what}: message {i}"));
    }
}

/// [`only_message`], which must be `expected` once the trace fields are stripped.
pub fn only_message_is(server: &TestServer, account: &str, expected: &[u8]) -> Vec<u8> {
    let stored = only_message(server, account);
    assert_same(without_trace(&stored), expected, account);
    stored
}

/// Checks that `mailbox` of `account` holds exactly `expected`, in order, each byte for byte
/// once the trace fields are stripped; returns the stored messages.
pub fn mailbox_is(
    server: &TestServer,
    account: &str,
    mailbox: &str,
    expected: &[impl AsRef<[u8]>],
) -> Vec<Vec<u8>> {
    let stored = server.messages(account, mailbox);
    assert_eq!(
        stored.len(),
        expected.len(),
        "{account}: messages in {mailbox}"
    );
    for (i, (m, want)) in stored.iter().zip(expected).enumerate() {
        assert_same(
            without_trace(m),
            want.as_ref(),
            &format!("{account} {mailbox} message {i}"),
        );
    }
    stored
}

/// [`mailbox_is`] for the INBOX.
pub fn inbox_is(server: &TestServer, account: &str, expected: &[impl AsRef<[u8]>]) -> Vec<Vec<u8>> {
    mailbox_is(server, account, "INBOX", expected)
}

/// The header block of a stored message (up to the empty line).
pub fn header_of(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 2);
    String::from_utf8_lossy(&message[..end]).into_owned()
}

/// The first `Received:` field of a stored message, unfolded.
pub fn received(message: &[u8]) -> String {
    let header = header_of(message);
    let start = header
        .find("Received: ")
        .unwrap_or_else(|| panic!("no Received: field in {header:?}"));
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

/// Checks that `text` contains every one of `parts`.
pub fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} in {text}");
    }
}

/// Checks a stored message's trace: it starts with `Return-Path: <return_path>` and its first
/// `Received:` field contains every one of `received_has`. Returns that field.
pub fn assert_trace(message: &[u8], return_path: &str, received_has: &[&str]) -> String {
    assert!(
        message.starts_with(format!("Return-Path: <{return_path}>\r\n").as_bytes()),
        "Return-Path <{return_path}>: {}",
        header_of(message)
    );
    let rcvd = received(message);
    assert_contains(&rcvd, received_has);
    rcvd
}

// ---------------------------------------------------------------------------------------------
// The raw client.

/// A raw SMTP client: bytes in, replies out, every read and write bounded by [`TIMEOUT`]
/// (its [`RawConnection`] is there too: `stream`, `send`, `read_until_closed`, the floods...).
#[derive(Debug)]
pub struct Client {
    raw: RawConnection,
}

deref_to_raw!(Client);

impl Client {
    /// Connects and reads the greeting (which must be 220).
    pub fn connect(addr: SocketAddr) -> Client {
        let mut c = Client {
            raw: RawConnection::connect(addr),
        };
        let greeting = c.reply();
        assert!(
            greeting.starts_with(&format!("220 {HOSTNAME} ")),
            "greeting: {greeting:?}"
        );
        c
    }

    /// Connects to `service` of `server` and says EHLO.
    pub fn ehlo_to(server: &TestServer, service: Service) -> Client {
        let mut c = Client::connect(server.addr(service));
        c.ehlo();
        c
    }

    /// Reads one complete (possibly multi-line) reply, CRLFs included.
    pub fn reply(&mut self) -> String {
        loop {
            if let Some(end) = complete_reply(&self.pending) {
                let reply: Vec<u8> = self.pending.drain(..end).collect();
                return String::from_utf8(reply)
                    .unwrap_or_else(|e| panic!("reply is not UTF-8: {e}"));
            }
            self.fill("a complete reply");
        }
    }

    /// Reads one reply per entry of `expected` and checks each starts with its entry; returns
    /// the replies.
    pub fn replies(&mut self, expected: &[&str]) -> Vec<String> {
        let replies: Vec<String> = expected.iter().map(|_| self.reply()).collect();
        for (reply, want) in replies.iter().zip(expected) {
            assert!(
                reply.starts_with(want),
                "expected {want:?}: all replies {replies:?}"
            );
        }
        replies
    }

    /// Sends a command line (CRLF appended) and reads its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a command and checks the reply starts with `expected` (e.g. `"250 2.1.0"`).
    pub fn ok(&mut self, line: &str, expected: &str) -> String {
        let r = self.cmd(line);
        assert!(
            r.starts_with(expected),
            "{line:?}: expected {expected:?}, got {r:?}"
        );
        r
    }

    /// EHLO as `client.example`; the reply must be the server's 250 with its host name.
    pub fn ehlo(&mut self) -> String {
        let r = self.cmd("EHLO client.example");
        assert!(r.starts_with(&format!("250-{HOSTNAME}\r\n")), "EHLO: {r:?}");
        r
    }

    /// AUTH PLAIN with an initial response; returns the reply.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {token}"))
    }

    /// MAIL FROM `from` and RCPT TO `to`, both accepted.
    pub fn envelope(&mut self, from: &str, to: &str) {
        self.ok(&format!("MAIL FROM:<{from}>"), "250 2.1.0");
        self.ok(&format!("RCPT TO:<{to}>"), "250 2.1.5");
    }

    /// [`Client::envelope`], then DATA, answered 354: what is sent next is content.
    pub fn open_data(&mut self, from: &str, to: &str) {
        self.envelope(from, to);
        self.ok("DATA", "354 ");
    }

    /// DATA with `message` (already dot-stuffed, ending in CRLF); checks the final reply starts
    /// with `expected` and returns it.
    pub fn data(&mut self, message: &[u8], expected: &str) -> String {
        self.ok("DATA", "354 ");
        let r = self.end_data(message);
        assert!(r.starts_with(expected), "expected {expected:?}, got {r:?}");
        r
    }

    /// Sends the rest of the content and the terminating dot; returns the final reply.
    pub fn end_data(&mut self, rest: &[u8]) -> String {
        self.send(rest);
        self.send(b".\r\n");
        self.reply()
    }

    /// A whole transaction (`message` already dot-stuffed); checks the final reply starts with
    /// `expected` and returns it.
    pub fn transaction(&mut self, from: &str, to: &str, message: &[u8], expected: &str) -> String {
        self.envelope(from, to);
        self.data(message, expected)
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

/// Checks that `service` of `server` still delivers: a new connection, one message from
/// [`SENDER`] to alice, QUIT.
pub fn assert_still_serves(server: &TestServer, service: Service, message: &[u8]) {
    let mut c = Client::ehlo_to(server, service);
    c.transaction(SENDER, ALICE, message, "250 2.0.0 ");
    c.ok("QUIT", "221");
}

// ---------------------------------------------------------------------------------------------
// Python smtplib.

/// The Python clients' TLS context `ctx` (their scripts' `host` and `cert` set first): it trusts
/// the server's own certificate `cert` only, and checks the host name except on 127.0.0.1.
macro_rules! py_tls_context {
    () => {
        r#"ctx = ssl.create_default_context(cafile=cert)
if host != '127.0.0.1':
    # The self-signed certificate names the host name, localhost and the loopback addresses;
    # the chain is still verified against it (CERT_REQUIRED).
    ctx.check_hostname = False
"#
    };
}
pub(crate) use py_tls_context;

/// The generic smtplib client: prints `key value...` lines.
/// argv: mode (plain|starttls|ssl) host port cert user password mech sender rcpts(comma) file
/// mail-options(comma)
const PY_SEND: &str = concat!(
    r#"
import smtplib, ssl, sys
mode, host, port, cert, user, password, mech, sender, rcpts, path, opts = sys.argv[1:12]
msg = open(path, 'rb').read()
"#,
    py_tls_context!(),
    r#"if mode == 'ssl':
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
"#
);

/// How the Python clients (`smtplib`, `poplib`, `imaplib`) reach `service`: `ssl` on the
/// implicit-TLS services (submissions, pop3s, imaps), else `plain`.
pub fn python_mode(service: Service) -> &'static str {
    if matches!(
        service,
        Service::Submissions | Service::Pop3s | Service::Imaps
    ) {
        "ssl"
    } else {
        "plain"
    }
}

/// One smtplib run (see [`PY_SEND`]); its output is `key value...` lines (see [`out`]).
#[derive(Debug)]
pub struct Send<'a> {
    /// `plain`, `starttls` or `ssl` (implicit TLS).
    pub mode: &'a str,
    pub addr: SocketAddr,
    /// The certificate the client trusts: the server's own.
    pub cert: PathBuf,
    /// (user, password, mechanism): `PLAIN`, `LOGIN`, or `login()` for smtplib's own choice.
    pub auth: Option<(&'a str, &'a str, &'a str)>,
    pub sender: &'a str,
    pub rcpts: &'a [&'a str],
    pub message: &'a [u8],
    /// MAIL parameters, comma-separated.
    pub options: &'a str,
}

impl<'a> Send<'a> {
    /// Mail from [`SENDER`] to alice, without AUTH, in plaintext (implicit TLS on
    /// submissions).
    pub fn new(server: &TestServer, service: Service, message: &'a [u8]) -> Send<'a> {
        Send {
            mode: python_mode(service),
            addr: server.addr(service),
            cert: server.certificate(),
            auth: None,
            sender: SENDER,
            rcpts: &[ALICE],
            message,
            options: "",
        }
    }

    /// Alice submits to bob: TLS (STARTTLS, or implicit on submissions), then AUTH with `mech`.
    pub fn alice_to_bob(
        server: &TestServer,
        service: Service,
        message: &'a [u8],
        mech: &'a str,
    ) -> Send<'a> {
        let mut send = Send::new(server, service, message);
        if service != Service::Submissions {
            send.mode = "starttls";
        }
        send.sender = ALICE;
        send.rcpts = &[BOB];
        send.auth = Some((ALICE, ALICE_PW, mech));
        send
    }

    /// Runs smtplib; returns its output.
    pub fn run(&self) -> String {
        let file = tempfile::NamedTempFile::new().unwrap_or_else(|e| panic!("temp file: {e}"));
        std::fs::write(file.path(), self.message).unwrap_or_else(|e| panic!("write: {e}"));
        let host = self.addr.ip().to_string();
        let port = self.addr.port().to_string();
        let (user, password, mech) = self.auth.unwrap_or(("-", "-", "-"));
        let rcpts = self.rcpts.join(",");
        let args = [
            Path::new(self.mode),
            Path::new(&host),
            Path::new(&port),
            &self.cert,
            Path::new(user),
            Path::new(password),
            Path::new(mech),
            Path::new(self.sender),
            Path::new(&rcpts),
            file.path(),
            Path::new(self.options),
        ];
        python(PY_SEND, &args).unwrap_or_else(|e| panic!("smtplib: {e}"))
    }

    /// [`Send::run`], which must have sent the message; returns the output.
    pub fn sent(&self) -> String {
        let output = self.run();
        assert!(has_line(&output, "sent"), "{output}");
        output
    }
}

/// The value of the first output line starting with `key ` (panics if absent).
pub fn out<'o>(output: &'o str, key: &str) -> &'o str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key:?} line in smtplib output:\n{output}"))
}

pub fn has_line(output: &str, line: &str) -> bool {
    output.lines().any(|l| l == line)
}

/// Whether the `key` line of the output has `word` among its space-separated words (e.g. an
/// EHLO keyword in `esmtp`).
pub fn has_word(output: &str, key: &str, word: &str) -> bool {
    out(output, key).split(' ').any(|w| w == word)
}
