//! What the POP3 end-to-end tests (`tests/tests/pop3.rs`, `tests/tests/pop3_tools.rs`) share:
//! mail delivered through the real SMTP service, a raw byte-exact POP3 client, a Python `poplib`
//! client, and checks on listings.
//!
//! No client socket can hang a test: the raw client has [`TIMEOUT`] read/write timeouts and
//! `poplib` gets `timeout=10`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmail::Service;

use crate::load::dot_stuff;
use crate::python;
use crate::raw::{RawConnection, deref_to_raw};
use crate::server::{HOSTNAME, TestServer};
use crate::smtp::{Client, SENDER, base64, py_tls_context, python_mode};

pub use crate::raw::TIMEOUT;

// ---------------------------------------------------------------------------------------------
// Mail delivered through SMTP.

/// Delivers each of `messages` (not yet dot-stuffed, CRLF line ends) from [`SENDER`] to `rcpt`
/// through the server's SMTP service, one transaction each, and returns what the store then
/// holds in `rcpt`'s INBOX (trace fields included): what POP3 must serve.
pub fn deliver(server: &TestServer, rcpt: &str, messages: &[impl AsRef<[u8]>]) -> Vec<Vec<u8>> {
    let mut c = Client::ehlo_to(server, Service::Smtp);
    for m in messages {
        c.transaction(SENDER, rcpt, &dot_stuff(m.as_ref()), "250 2.0.0 ");
    }
    c.ok("QUIT", "221");
    server.messages(rcpt, "INBOX")
}

/// A message of about `size` octets whose body lines (76 octets and CRLF) include lines that
/// start with one or two dots and a line that is a lone dot, so its transfer needs dot-stuffing.
pub fn big_message(subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Sender <sender@remote.example>\r\nTo: alice@example.test\r\n\
         Subject: {subject}\r\n\r\n"
    )
    .into_bytes();
    let mut n = 0u64;
    while m.len() < size {
        let line = match n % 50 {
            7 => ".".to_owned(),
            13 => format!(".{n:075}"),
            29 => format!("..{n:074}"),
            _ => format!("{n:076}"),
        };
        m.extend_from_slice(line.as_bytes());
        m.extend_from_slice(b"\r\n");
        n += 1;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// The raw client.

/// A raw POP3 client: bytes in, responses out, every read and write bounded by [`TIMEOUT`]
/// (its [`RawConnection`] is there too: `stream`, `send`, `poll`, `read_until_closed`...).
#[derive(Debug)]
pub struct Pop3 {
    raw: RawConnection,
}

deref_to_raw!(Pop3);

impl Pop3 {
    /// Connects and returns the client and the greeting line (without CRLF).
    pub fn connect_raw(addr: SocketAddr) -> (Pop3, String) {
        let mut c = Pop3 {
            raw: RawConnection::connect(addr),
        };
        let greeting = c.line();
        (c, greeting)
    }

    /// Connects and checks the greeting: `+OK <hostname> ...`.
    pub fn connect(addr: SocketAddr) -> Pop3 {
        let (c, greeting) = Pop3::connect_raw(addr);
        assert!(
            greeting.starts_with(&format!("+OK {HOSTNAME} ")),
            "greeting: {greeting:?}"
        );
        c
    }

    /// Connects to the server's plain POP3 service.
    pub fn connect_to(server: &TestServer) -> Pop3 {
        Pop3::connect(server.addr(Service::Pop3))
    }

    /// Connects to the server's plain POP3 service and logs in with USER/PASS.
    pub fn login_to(server: &TestServer, user: &str, password: &str) -> Pop3 {
        let mut c = Pop3::connect_to(server);
        c.login(user, password);
        c
    }

    /// Reads one response line; checks it ends with CRLF and returns it without.
    pub fn line(&mut self) -> String {
        loop {
            if let Some(nl) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=nl).collect();
                assert!(
                    line.ends_with(b"\r\n"),
                    "response line without CRLF: {:?}",
                    String::from_utf8_lossy(&line)
                );
                return String::from_utf8(line[..line.len() - 2].to_vec())
                    .unwrap_or_else(|e| panic!("response is not UTF-8: {e}"));
            }
            self.fill("a complete response line");
        }
    }

    /// Reads the body of a multi-line response up to its terminating `.` line and returns it
    /// as sent (still dot-stuffed, CRLFs included, without the terminator).
    pub fn body(&mut self) -> Vec<u8> {
        let mut line_start = 0;
        loop {
            let mut found = None;
            while let Some(nl) = self.pending[line_start..].iter().position(|&b| b == b'\n') {
                let end = line_start + nl + 1;
                if &self.pending[line_start..end] == b".\r\n" {
                    found = Some(line_start);
                    break;
                }
                line_start = end;
            }
            if let Some(at) = found {
                let body: Vec<u8> = self.pending.drain(..at + 3).take(at).collect();
                return body;
            }
            self.fill("the end of a multi-line response");
        }
    }

    /// Sends a command line (CRLF appended) and reads its status line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Sends a command; its response must start with `expected`. Returns the response.
    pub fn expect(&mut self, line: &str, expected: &str) -> String {
        let r = self.cmd(line);
        assert!(
            r.starts_with(expected),
            "{line:?}: expected {expected:?}, got {r:?}"
        );
        r
    }

    /// Sends a command that must succeed (`+OK`); returns the status line.
    pub fn ok(&mut self, line: &str) -> String {
        self.expect(line, "+OK")
    }

    /// Sends a command that must fail with `-ERR` and some text; returns the status line.
    pub fn err(&mut self, line: &str) -> String {
        let r = self.expect(line, "-ERR ");
        assert!(r.len() > "-ERR ".len(), "{line:?}: -ERR without text");
        r
    }

    /// A multi-line command that must succeed: returns its status line and its body with the
    /// dot-stuffing undone.
    pub fn multi(&mut self, line: &str) -> (String, Vec<u8>) {
        let status = self.ok(line);
        let body = unstuff(&self.body());
        (status, body)
    }

    /// USER and PASS, both accepted; the PASS response (`+OK ...`).
    pub fn login(&mut self, user: &str, password: &str) -> String {
        self.ok(&format!("USER {user}"));
        self.ok(&format!("PASS {password}"))
    }

    /// AUTH PLAIN with an initial response; returns the response.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> String {
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        self.cmd(&format!("AUTH PLAIN {token}"))
    }

    /// `LIST` as (message number, size) pairs.
    pub fn list(&mut self) -> Vec<(usize, u64)> {
        let (_, body) = self.multi("LIST");
        pairs(&body)
            .into_iter()
            .map(|(n, s)| (n, s.parse().unwrap_or_else(|e| panic!("size {s:?}: {e}"))))
            .collect()
    }

    /// `UIDL` as (message number, unique id) pairs.
    pub fn uidl(&mut self) -> Vec<(usize, String)> {
        let (_, body) = self.multi("UIDL");
        pairs(&body)
    }

    /// `RETR n`: the message as the client sees it (unstuffed), after checking the status line
    /// says how many octets it has.
    pub fn retr(&mut self, n: usize) -> Vec<u8> {
        let (status, message) = self.multi(&format!("RETR {n}"));
        assert_eq!(
            status,
            format!("+OK {} octets", message.len()),
            "RETR {n} status"
        );
        message
    }

    /// QUIT, which must be answered `+OK` and followed by the server closing the connection.
    pub fn quit(mut self) {
        self.ok("QUIT");
        self.assert_closed_after("QUIT");
    }
}

/// Logs in with USER/PASS, retrying while the server answers `-ERR [IN-USE]` (a session that
/// just ended may still hold the maildrop for a moment); panics after [`TIMEOUT`].
pub fn login_when_free(server: &TestServer, user: &str, password: &str) -> Pop3 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut c = Pop3::connect_to(server);
        c.ok(&format!("USER {user}"));
        let r = c.cmd(&format!("PASS {password}"));
        if r.starts_with("+OK") {
            return c;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "PASS: {r:?}");
        assert!(
            Instant::now() < deadline,
            "the maildrop is still locked after {TIMEOUT:?}"
        );
        c.ok("QUIT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Undoes POP3 dot-stuffing (RFC 1939 3): a line starting with `.` loses that dot.
pub fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut at_line_start = true;
    for &b in wire {
        if !(at_line_start && b == b'.') {
            out.push(b);
        }
        at_line_start = b == b'\n';
    }
    out
}

/// The `n rest` lines of a LIST or UIDL body.
pub fn pairs(body: &[u8]) -> Vec<(usize, String)> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| {
            let (n, rest) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("listing line {l:?}"));
            let n = n.parse().unwrap_or_else(|e| panic!("number in {l:?}: {e}"));
            (n, rest.to_owned())
        })
        .collect()
}

/// The sizes `messages` have, numbered from 1: what LIST must say.
pub fn sizes(messages: &[Vec<u8>]) -> Vec<(usize, u64)> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| (i + 1, m.len() as u64))
        .collect()
}

/// What `TOP n lines` must return for `message` (RFC 1939 7): the header, the empty line, and
/// the first `lines` lines of the body (all of it if it has fewer).
pub fn top_of(message: &[u8], lines: usize) -> Vec<u8> {
    let header_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4);
    let mut end = header_end;
    for _ in 0..lines {
        match message[end..].iter().position(|&b| b == b'\n') {
            Some(nl) => end += nl + 1,
            None => {
                end = message.len();
                break;
            }
        }
    }
    message[..end].to_vec()
}

// ---------------------------------------------------------------------------------------------
// Python poplib.

/// The generic poplib client. argv: mode (plain|ssl|stls) host port cert user password
/// auth (USER|PLAIN|LOGIN) outdir commands...; a command is `stat`, `list`, `uidl`, `capa`,
/// `retr:N` (the message written to outdir/retr-N), `top:N:K` (outdir/top-N-K), `dele:N`,
/// `rset`, `noop` or `quit`. Prints `key value...` lines.
const PY_POP: &str = concat!(
    r#"
import base64, os, poplib, ssl, sys
mode, host, port, cert, user, password, auth, outdir = sys.argv[1:9]
"#,
    py_tls_context!(),
    r#"def capa(p):
    return ' '.join(sorted(k + ''.join(' ' + a for a in v) for k, v in p.capa().items()))
if mode == 'ssl':
    p = poplib.POP3_SSL(host, int(port), timeout=10, context=ctx)
    print('cipher', p.sock.version(), p.sock.cipher()[0])
else:
    p = poplib.POP3(host, int(port), timeout=10)
print('welcome', p.getwelcome().decode())
if mode == 'stls':
    print('capa-before', capa(p))
    print('stls', p.stls(context=ctx).decode())
    print('cipher', p.sock.version(), p.sock.cipher()[0])
print('capa', capa(p))
def b64(s):
    return base64.b64encode(s.encode()).decode()
try:
    if auth == 'USER':
        p.user(user)
        print('login', p.pass_(password).decode())
    elif auth == 'PLAIN':
        print('login', p._shortcmd('AUTH PLAIN ' + b64('\0' + user + '\0' + password)).decode())
    elif auth == 'LOGIN':
        print('challenge', p._shortcmd('AUTH LOGIN').decode())
        print('challenge', p._shortcmd(b64(user)).decode())
        print('login', p._shortcmd(b64(password)).decode())
except poplib.error_proto as e:
    print('error', e.args[0].decode())
    p.quit()
    sys.exit(0)
for c in sys.argv[9:]:
    op, *args = c.split(':')
    if op == 'stat':
        print('stat', *p.stat())
    elif op == 'list':
        resp, lines, octets = p.list()
        print('list', ','.join(l.decode() for l in lines))
    elif op == 'uidl':
        resp, lines, octets = p.uidl()
        print('uidl', ','.join(l.decode() for l in lines))
    elif op == 'capa':
        print('capa', capa(p))
    elif op in ('retr', 'top'):
        resp, lines, octets = p.retr(int(args[0])) if op == 'retr' else p.top(int(args[0]), int(args[1]))
        content = b''.join(l + b'\r\n' for l in lines)
        with open(os.path.join(outdir, '-'.join([op] + args)), 'wb') as f:
            f.write(content)
        print(op, resp.decode())
    elif op == 'dele':
        print('dele', p.dele(int(args[0])).decode())
    elif op == 'rset':
        print('rset', p.rset().decode())
    elif op == 'noop':
        print('noop', p.noop().decode())
    elif op == 'quit':
        print('quit', p.quit().decode())
"#
);

/// One poplib run (see [`PY_POP`]).
#[derive(Debug)]
pub struct PopLib<'a> {
    /// `plain`, `stls` or `ssl` (implicit TLS).
    pub mode: &'a str,
    pub addr: SocketAddr,
    /// The certificate the client trusts: the server's own.
    pub cert: PathBuf,
    pub user: &'a str,
    pub password: &'a str,
    /// `USER` (USER/PASS), `PLAIN` or `LOGIN` (AUTH, sent as raw commands).
    pub auth: &'a str,
}

/// What a poplib run printed and retrieved.
#[derive(Debug)]
pub struct PopRun {
    pub output: String,
    dir: tempfile::TempDir,
}

impl PopRun {
    /// The value of the first output line starting with `key ` (panics if absent).
    pub fn out(&self, key: &str) -> &str {
        self.output
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {key:?} line in poplib output:\n{}", self.output))
    }

    /// The words of the `capa` (or `capa-before`) line.
    pub fn capa(&self, key: &str) -> Vec<String> {
        self.out(key).split(' ').map(str::to_owned).collect()
    }

    /// What poplib returned for `retr:N` / `top:N:K` (by file name `retr-N`, `top-N-K`):
    /// its lines, each with CRLF put back.
    pub fn retrieved(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.output))
    }
}

impl<'a> PopLib<'a> {
    /// USER/PASS as `user` on plain POP3 (implicit TLS on pop3s).
    pub fn new(server: &TestServer, service: Service, user: &'a str, password: &'a str) -> Self {
        PopLib {
            mode: python_mode(service),
            addr: server.addr(service),
            cert: server.certificate(),
            user,
            password,
            auth: "USER",
        }
    }

    /// Runs poplib with `commands` after the login.
    pub fn run(&self, commands: &[&str]) -> PopRun {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let host = self.addr.ip().to_string();
        let port = self.addr.port().to_string();
        let mut args: Vec<&Path> = vec![
            Path::new(self.mode),
            Path::new(&host),
            Path::new(&port),
            &self.cert,
            Path::new(self.user),
            Path::new(self.password),
            Path::new(self.auth),
            dir.path(),
        ];
        args.extend(commands.iter().map(Path::new));
        let output = python(PY_POP, &args).unwrap_or_else(|e| panic!("poplib: {e}"));
        PopRun { output, dir }
    }
}

// ---------------------------------------------------------------------------------------------
// Command-line tools.

pub use crate::{require, run};

/// `curl` on `url_path` of `service` (its name is the URL scheme: `pop3`, `pop3s`, `imap`,
/// `imaps`) as `user` with `password`, trusting the server's certificate, bounded by
/// `--max-time 60`. Returns (exit code, output, log).
pub fn curl(
    server: &TestServer,
    service: Service,
    user: &str,
    password: &str,
    url_path: &str,
) -> (i32, Vec<u8>, String) {
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--verbose", "--max-time", "60"])
        .arg(format!(
            "{}://{}{url_path}",
            service.name(),
            server.addr(service)
        ))
        .arg("--cacert")
        .arg(server.certificate())
        .args(["--user", &format!("{user}:{password}")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `message` with CRLF line ends turned into LF: how tools that write local mailbox files
/// (Maildir, mbox) store mail.
pub fn lf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for (i, &b) in message.iter().enumerate() {
        if !(b == b'\r' && message.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}
