//! What the IMAP end-to-end tests (`tests/tests/imap.rs`, `tests/tests/imap_tools.rs`) share:
//! a raw byte-exact IMAP client over `TcpStream` with a small response parser (atoms, quoted
//! strings, literals, lists: enough to take FETCH, SEARCH, LIST and STATUS responses apart), a
//! Python `imaplib` client for what mail clients do (plain, STARTTLS and implicit TLS, trusting
//! the server's own certificate), and checks on what the store holds.
//!
//! No client socket can hang a test: the raw client has [`TIMEOUT`] read/write timeouts and
//! `imaplib` gets `timeout=10`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmail::Service;
use wasmail_types::mail::{InternalDate, MailboxInfo, MailboxName, MailboxStatus};
use wasmail_types::{Account, MailStore as _};

use crate::python;
use crate::raw::{RawConnection, deref_to_raw, shorten};
use crate::server::TestServer;
use crate::smtp::{py_tls_context, python_mode};

pub use crate::pop3::deliver;
pub use crate::raw::TIMEOUT;

// ---------------------------------------------------------------------------------------------
// The store, read as another process would (for what TestServer does not expose).

/// An account opened through the store.
pub fn account(server: &TestServer, id: &str) -> Arc<dyn Account> {
    let store =
        wasmail_store::FsStore::open(server.data_dir(), wasmail_store::StoreConfig::default())
            .unwrap_or_else(|e| panic!("open store: {e}"));
    store
        .account(id)
        .unwrap_or_else(|e| panic!("account {id}: {e}"))
}

/// A mailbox's status as the store reports it (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ...).
pub fn status(server: &TestServer, id: &str, mailbox: &str) -> MailboxStatus {
    let name = MailboxName::new(mailbox).unwrap_or_else(|e| panic!("name {mailbox:?}: {e}"));
    account(server, id)
        .open(&name)
        .and_then(|m| m.status())
        .unwrap_or_else(|e| panic!("status of {mailbox}: {e}"))
}

/// The account's folders as the store lists them.
pub fn folders(server: &TestServer, id: &str) -> Vec<MailboxInfo> {
    account(server, id)
        .list()
        .unwrap_or_else(|e| panic!("list: {e}"))
}

/// An internal date as IMAP writes it (RFC 3501 `date-time`, without the quotes):
/// `dd-Mon-yyyy hh:mm:ss +zzzz`, the day space-padded, in the zone the date was given in.
pub fn imap_date_time(date: InternalDate) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let offset = i64::from(date.offset_minutes);
    let local = date.unix_seconds + offset * 60;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = wasmail_types::date::civil_from_days(days);
    let sign = if offset < 0 { '-' } else { '+' };
    format!(
        "{d:2}-{}-{y:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        offset.abs() / 60,
        offset.abs() % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// A value in a server response (RFC 3501 9, as far as these tests need it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An atom, number or flag, or a FETCH item name with its section (`BODY[HEADER]<0>`), or a
    /// bracketed response code (`[UIDNEXT 4]`) kept whole.
    Atom(String),
    /// A quoted string or a literal, as octets.
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl Value {
    /// The atom's text (panics on anything else).
    pub fn atom(&self) -> &str {
        match self {
            Value::Atom(a) => a,
            other => panic!("expected an atom, got {other:?}"),
        }
    }

    /// A string's octets (panics on NIL or anything else).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Value::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    /// A string's text (lossy) or an atom's; `None` for NIL.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Value::Atom(a) => Some(a.clone()),
            Value::Nil => None,
            Value::List(_) => panic!("expected a string, got {self:?}"),
        }
    }

    /// A list's elements (panics on anything else).
    pub fn list(&self) -> &[Value] {
        match self {
            Value::List(l) => l,
            other => panic!("expected a list, got {other:?}"),
        }
    }

    /// A number (an atom of digits).
    pub fn number(&self) -> u64 {
        self.atom()
            .parse()
            .unwrap_or_else(|e| panic!("expected a number, got {self:?}: {e}"))
    }
}

/// Parses response octets (literals included) into values. A `[` inside an atom runs to its
/// matching `]`, spaces included, so `BODY[HEADER.FIELDS (FROM)]` and `[PERMANENTFLAGS (\*)]`
/// stay one atom. Stops at the end of the response (CRLF outside a literal) or an unbalanced
/// `)`.
pub fn parse(bytes: &[u8]) -> Vec<Value> {
    let mut p = Parser { b: bytes, i: 0 };
    let mut out = Vec::new();
    while let Some(v) = p.value() {
        out.push(v);
    }
    out
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self) -> Option<Value> {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
        match self.peek()? {
            b'\r' | b'\n' | b')' => None,
            b'(' => {
                self.i += 1;
                let mut items = Vec::new();
                while let Some(v) = self.value() {
                    items.push(v);
                }
                if self.peek() == Some(b')') {
                    self.i += 1;
                }
                Some(Value::List(items))
            }
            b'"' => {
                self.i += 1;
                let mut s = Vec::new();
                while let Some(c) = self.peek() {
                    self.i += 1;
                    match c {
                        b'\\' => {
                            if let Some(e) = self.peek() {
                                s.push(e);
                                self.i += 1;
                            }
                        }
                        b'"' => break,
                        _ => s.push(c),
                    }
                }
                Some(Value::Str(s))
            }
            b'{' => {
                let close = self.b[self.i..].iter().position(|&c| c == b'}')? + self.i;
                let digits = std::str::from_utf8(&self.b[self.i + 1..close])
                    .unwrap_or("")
                    .trim_end_matches('+');
                let n: usize = digits
                    .parse()
                    .unwrap_or_else(|e| panic!("literal length {digits:?}: {e}"));
                // `}` CRLF, then the octets.
                let start = close + 3;
                let end = (start + n).min(self.b.len());
                self.i = end;
                Some(Value::Str(self.b[start.min(end)..end].to_vec()))
            }
            _ => {
                let start = self.i;
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    match c {
                        b'[' => depth += 1,
                        b']' => depth = depth.saturating_sub(1),
                        b' ' | b'(' | b')' if depth == 0 => break,
                        b'\r' | b'\n' => break,
                        _ => {}
                    }
                    self.i += 1;
                }
                let atom = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
                Some(if atom.eq_ignore_ascii_case("NIL") {
                    Value::Nil
                } else {
                    Value::Atom(atom)
                })
            }
        }
    }
}

/// One complete server response: its line(s) with any literals, CRLFs included.
#[derive(Clone, PartialEq, Eq)]
pub struct Response(pub Vec<u8>);

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", shorten(&self.text(), 600))
    }
}

impl Response {
    /// The response as text (lossy), without its final CRLF.
    pub fn text(&self) -> String {
        let b = self.0.strip_suffix(b"\r\n").unwrap_or(&self.0);
        String::from_utf8_lossy(b).into_owned()
    }

    pub fn values(&self) -> Vec<Value> {
        parse(&self.0)
    }

    /// `*`, `+` or the tag.
    pub fn tag(&self) -> String {
        let end = self.0.iter().position(|&b| b == b' ' || b == b'\r');
        String::from_utf8_lossy(&self.0[..end.unwrap_or(self.0.len())]).into_owned()
    }

    /// For a status response (`tag OK|NO|BAD|PREAUTH|BYE [code] text`): the status word.
    pub fn status_word(&self) -> String {
        self.text()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_ascii_uppercase()
    }

    /// The text after the tag (`OK [READ-WRITE] SELECT completed`).
    pub fn rest(&self) -> String {
        let t = self.text();
        t.split_once(' ')
            .map_or(String::new(), |(_, r)| r.to_owned())
    }

    /// The response code of a status response, without brackets (`READ-WRITE`,
    /// `UIDVALIDITY 123`), if it has one.
    pub fn code(&self) -> Option<String> {
        let rest = self.rest();
        let after = rest.split_once(' ')?.1;
        let inner = after.strip_prefix('[')?;
        let mut depth = 0usize;
        for (i, c) in inner.char_indices() {
            match c {
                '[' => depth += 1,
                ']' if depth == 0 => return Some(inner[..i].to_owned()),
                ']' => depth -= 1,
                _ => {}
            }
        }
        None
    }

    /// Whether this is an untagged `* <n> <kind>` or `* <kind> ...` response.
    pub fn is(&self, kind: &str) -> bool {
        if self.tag() != "*" {
            return false;
        }
        let t = self.text();
        let mut words = t.split(' ').skip(1);
        match words.next() {
            Some(w) if w.bytes().all(|b| b.is_ascii_digit()) => {
                words.next().is_some_and(|k| k.eq_ignore_ascii_case(kind))
            }
            Some(w) => w.eq_ignore_ascii_case(kind),
            None => false,
        }
    }

    /// The number of a `* <n> <kind>` response.
    pub fn number(&self) -> u64 {
        let t = self.text();
        t.split(' ')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a numbered response: {t:?}"))
    }
}

/// What a command got: the untagged responses in order, and the tagged completion.
#[derive(Clone, Debug)]
pub struct Reply {
    pub command: String,
    pub untagged: Vec<Response>,
    pub tagged: Response,
}

impl Reply {
    /// `OK`, `NO` or `BAD`.
    pub fn status(&self) -> String {
        self.tagged.status_word()
    }

    /// The tagged completion after its tag.
    pub fn completion(&self) -> String {
        self.tagged.rest()
    }

    /// The response code of the tagged completion.
    pub fn code(&self) -> Option<String> {
        self.tagged.code()
    }

    /// The untagged responses of one kind (`EXISTS`, `FETCH`, `LIST`, `OK`...).
    pub fn all(&self, kind: &str) -> Vec<&Response> {
        self.untagged.iter().filter(|r| r.is(kind)).collect()
    }

    /// The untagged responses as text lines.
    pub fn lines(&self) -> Vec<String> {
        self.untagged.iter().map(Response::text).collect()
    }

    /// The number of the one `* <n> <kind>` response (EXISTS, RECENT), if there is one;
    /// panics if there are several.
    pub fn count(&self, kind: &str) -> Option<u64> {
        let all = self.all(kind);
        assert!(all.len() <= 1, "{}: several {kind}: {all:?}", self.command);
        all.first().map(|r| r.number())
    }

    /// The argument of response code `name` in an untagged status or the tagged completion
    /// (`code_arg("UIDNEXT")` of `* OK [UIDNEXT 4] ...` is `4`); `Some("")` for a code without
    /// one.
    pub fn code_arg(&self, name: &str) -> Option<String> {
        self.untagged
            .iter()
            .chain(std::iter::once(&self.tagged))
            .filter_map(Response::code)
            .find_map(|c| {
                let (n, arg) = c.split_once(' ').unwrap_or((&c, ""));
                n.eq_ignore_ascii_case(name).then(|| arg.to_owned())
            })
    }

    /// The FETCH responses.
    pub fn fetches(&self) -> Vec<Fetch> {
        self.all("FETCH").into_iter().map(Fetch::from).collect()
    }

    /// The numbers of the `* SEARCH` response (a CONDSTORE `(MODSEQ n)` is left out).
    pub fn search(&self) -> Vec<u32> {
        let all = self.all("SEARCH");
        assert_eq!(all.len(), 1, "{}: SEARCH responses: {all:?}", self.command);
        all[0]
            .values()
            .iter()
            .skip(2)
            .filter_map(|v| match v {
                Value::Atom(a) => Some(
                    a.parse()
                        .unwrap_or_else(|e| panic!("SEARCH number {a:?}: {e}")),
                ),
                _ => None,
            })
            .collect()
    }

    /// The `* n EXPUNGE` numbers, in order.
    pub fn expunged(&self) -> Vec<u32> {
        self.all("EXPUNGE")
            .iter()
            .map(|r| r.number() as u32)
            .collect()
    }

    /// The LIST (or LSUB) entries.
    pub fn list(&self, kind: &str) -> Vec<ListEntry> {
        self.all(kind)
            .iter()
            .map(|r| {
                let v = r.values();
                assert!(v.len() == 5, "{kind} response: {r:?}");
                ListEntry {
                    attributes: v[2].list().iter().map(|a| a.atom().to_owned()).collect(),
                    delimiter: v[3].text(),
                    name: v[4]
                        .text()
                        .unwrap_or_else(|| panic!("{kind} without a name: {r:?}")),
                }
            })
            .collect()
    }

    /// The `* STATUS name (item value ...)` response as (name, [(item, value)]).
    pub fn status_items(&self) -> (String, Vec<(String, u64)>) {
        let all = self.all("STATUS");
        assert_eq!(all.len(), 1, "{}: STATUS responses {all:?}", self.command);
        let v = all[0].values();
        let name = v[2].text().unwrap_or_default();
        let items = v[3]
            .list()
            .chunks(2)
            .map(|kv| (kv[0].atom().to_ascii_uppercase(), kv[1].number()))
            .collect();
        (name, items)
    }
}

/// One LIST or LSUB entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    pub attributes: Vec<String>,
    pub delimiter: Option<String>,
    /// As on the wire (modified UTF-7 for non-ASCII names).
    pub name: String,
}

impl ListEntry {
    /// Whether it has `attribute` (case-insensitive, RFC 3501 flags are).
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

/// One `* n FETCH (...)` response taken apart.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub seq: u32,
    /// (item name in upper case, value), in the order sent.
    pub items: Vec<(String, Value)>,
}

impl From<&Response> for Fetch {
    fn from(r: &Response) -> Fetch {
        let v = r.values();
        assert!(
            v.len() == 4 && matches!(v[3], Value::List(_)),
            "FETCH response: {r:?}"
        );
        let items = v[3]
            .list()
            .chunks(2)
            .map(|kv| {
                assert!(kv.len() == 2, "FETCH item without a value: {r:?}");
                (kv[0].atom().to_ascii_uppercase(), kv[1].clone())
            })
            .collect();
        Fetch {
            seq: v[1].number() as u32,
            items,
        }
    }
}

impl Fetch {
    /// The value of item `name` (case-insensitive; for a section, as the server names it, e.g.
    /// `BODY[]<0>`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.items
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// [`Fetch::get`], which must be there.
    pub fn item(&self, name: &str) -> &Value {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name} in FETCH {}: {:?}", self.seq, self.items))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A body section or other string item's octets.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        self.item(name).bytes().to_vec()
    }

    /// A number item (UID, RFC822.SIZE) or MODSEQ's `(n)`.
    pub fn number(&self, name: &str) -> u64 {
        match self.item(name) {
            Value::List(l) if l.len() == 1 => l[0].number(),
            v => v.number(),
        }
    }

    pub fn uid(&self) -> u32 {
        self.number("UID") as u32
    }

    /// The FLAGS item, `\Recent` left out (it says which session saw the message first, not
    /// what the store holds).
    pub fn flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = self
            .item("FLAGS")
            .list()
            .iter()
            .map(|f| f.atom().to_owned())
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .collect();
        flags.sort();
        flags
    }
}

/// The FETCH response for message `seq` among `fetches` (panics if absent).
pub fn fetch_of(fetches: &[Fetch], seq: u32) -> &Fetch {
    fetches
        .iter()
        .find(|f| f.seq == seq)
        .unwrap_or_else(|| panic!("no FETCH for message {seq}: {fetches:?}"))
}

/// The numbers of an IMAP sequence set like `1:3,7` (no `*`), in the order written.
pub fn sequence_set(set: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        let num = |s: &str| -> u32 {
            s.parse()
                .unwrap_or_else(|e| panic!("sequence set {set:?}: {e}"))
        };
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (num(a), num(b));
                if a <= b {
                    out.extend(a..=b);
                } else {
                    out.extend((b..=a).rev());
                }
            }
            None => out.push(num(part)),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The raw client.

/// A raw IMAP client: bytes in, responses out, every read and write bounded by [`TIMEOUT`]
/// (its [`RawConnection`] is there too: `stream`, `send`, `poll`, `read_until_closed`...).
/// Tags are `a1`, `a2`, ...
#[derive(Debug)]
pub struct Imap {
    raw: RawConnection,
    tags: u32,
}

deref_to_raw!(Imap);

impl Imap {
    /// Connects and returns the client and the greeting (without CRLF).
    pub fn connect_raw(addr: SocketAddr) -> (Imap, String) {
        let mut c = Imap {
            raw: RawConnection::connect(addr),
            tags: 0,
        };
        let greeting = c.response().text();
        (c, greeting)
    }

    /// Connects and checks the greeting: `* OK ...` (RFC 3501 7.1.1).
    pub fn connect(addr: SocketAddr) -> Imap {
        let (c, greeting) = Imap::connect_raw(addr);
        assert!(greeting.starts_with("* OK "), "greeting: {greeting:?}");
        c
    }

    /// Connects to the server's plain IMAP service.
    pub fn connect_to(server: &TestServer) -> Imap {
        Imap::connect(server.addr(Service::Imap))
    }

    /// Connects to the plain IMAP service and logs in with LOGIN.
    pub fn login_to(server: &TestServer, user: &str, password: &str) -> Imap {
        let mut c = Imap::connect_to(server);
        c.login(user, password);
        c
    }

    /// [`Imap::login_to`], then SELECT `mailbox` (which must succeed).
    pub fn select_in(server: &TestServer, user: &str, password: &str, mailbox: &str) -> Imap {
        let mut c = Imap::login_to(server, user, password);
        c.ok(&format!("SELECT {}", quote(mailbox)));
        c
    }

    /// The end of the first complete response in `pending`, if there is one: lines that end in
    /// a literal announcement `{n}` are followed by n octets and go on.
    fn complete_response(&self) -> Option<usize> {
        let mut at = 0;
        loop {
            let nl = self.pending[at..].iter().position(|&b| b == b'\n')? + at;
            let line = &self.pending[at..=nl];
            assert!(
                line.ends_with(b"\r\n"),
                "response line without CRLF: {:?}",
                String::from_utf8_lossy(line)
            );
            let body = &line[..line.len() - 2];
            match literal_announcement(body) {
                Some(n) => {
                    let end = nl + 1 + n;
                    if self.pending.len() < end {
                        return None;
                    }
                    at = end;
                }
                None => return Some(nl + 1),
            }
        }
    }

    /// Reads one complete response (a continuation request `+ ...` counts as one).
    pub fn response(&mut self) -> Response {
        loop {
            if let Some(end) = self.complete_response() {
                return Response(self.pending.drain(..end).collect());
            }
            self.fill("a complete response");
        }
    }

    /// Reads untagged responses (while idling, say) up to the first that is a `kind` response;
    /// returns them all, that one last. Anything tagged fails the test.
    pub fn untagged_until(&mut self, kind: &str) -> Vec<Response> {
        let mut seen = Vec::new();
        loop {
            let r = self.response();
            assert_eq!(r.tag(), "*", "while idling: {r:?} after {seen:?}");
            let done = r.is(kind);
            seen.push(r);
            if done {
                return seen;
            }
        }
    }

    /// The next tag.
    pub fn tag(&mut self) -> String {
        self.tags += 1;
        format!("a{}", self.tags)
    }

    /// Reads responses up to the tagged completion of `tag`.
    pub fn reply_to(&mut self, tag: &str, command: &str) -> Reply {
        let mut untagged = Vec::new();
        loop {
            let r = self.response();
            let t = r.tag();
            if t == tag {
                return Reply {
                    command: command.to_owned(),
                    untagged,
                    tagged: r,
                };
            }
            assert!(
                t == "*",
                "{command:?}: unexpected {r:?} (untagged so far: {untagged:?})"
            );
            untagged.push(r);
        }
    }

    /// Sends `tag command` CRLF and reads the responses up to its completion.
    pub fn cmd(&mut self, command: &str) -> Reply {
        let tag = self.tag();
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.reply_to(&tag, command)
    }

    /// Sends a command whose completion must be `status` (`OK`, `NO`, `BAD`); returns the
    /// reply.
    pub fn expect(&mut self, command: &str, status: &str) -> Reply {
        let r = self.cmd(command);
        assert_eq!(
            r.status(),
            status,
            "{command:?}: {:?} (untagged: {:?})",
            r.tagged,
            r.untagged
        );
        r
    }

    pub fn ok(&mut self, command: &str) -> Reply {
        self.expect(command, "OK")
    }

    pub fn no(&mut self, command: &str) -> Reply {
        self.expect(command, "NO")
    }

    pub fn bad(&mut self, command: &str) -> Reply {
        self.expect(command, "BAD")
    }

    /// LOGIN with quoted strings, which must succeed.
    pub fn login(&mut self, user: &str, password: &str) -> Reply {
        self.ok(&format!("LOGIN {} {}", quote(user), quote(password)))
    }

    /// `tag command {n}` (synchronizing literal): waits for the continuation request; if the
    /// server answers with a completion instead (`NO [TOOBIG]`, `NO [TRYCREATE]`), returns that
    /// without sending the literal. Otherwise sends `literal`, then `after` and CRLF, and
    /// returns the reply.
    pub fn cmd_literal(&mut self, command: &str, literal: &[u8], after: &str) -> Reply {
        let tag = self.tag();
        self.send(format!("{tag} {command} {{{}}}\r\n", literal.len()).as_bytes());
        let mut untagged = Vec::new();
        loop {
            let r = self.response();
            match r.tag().as_str() {
                "+" => break,
                "*" => untagged.push(r),
                t if t == tag => {
                    return Reply {
                        command: command.to_owned(),
                        untagged,
                        tagged: r,
                    };
                }
                _ => panic!("{command:?}: unexpected {r:?}"),
            }
        }
        self.send(literal);
        self.send(format!("{after}\r\n").as_bytes());
        let mut reply = self.reply_to(&tag, command);
        untagged.append(&mut reply.untagged);
        reply.untagged = untagged;
        reply
    }

    /// APPEND `message` to `mailbox` with `flags` (e.g. `(\Seen)`, or empty) through a
    /// synchronizing literal.
    pub fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> Reply {
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" {flags}")
        };
        self.cmd_literal(&format!("APPEND {}{flags}", quote(mailbox)), message, "")
    }

    /// [`Imap::append`], which must succeed with `[APPENDUID validity uid]`; returns the UID.
    pub fn append_ok(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> u32 {
        let r = self.append(mailbox, flags, message);
        assert_eq!(r.status(), "OK", "APPEND: {r:?}");
        let code = r
            .code_arg("APPENDUID")
            .unwrap_or_else(|| panic!("APPEND without [APPENDUID]: {r:?}"));
        code.split(' ')
            .nth(1)
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("APPENDUID {code:?}"))
    }

    /// `FETCH set items` (or `UID FETCH` when `set` starts with `UID `), which must succeed;
    /// returns the FETCH responses.
    pub fn fetch(&mut self, set: &str, items: &str) -> Vec<Fetch> {
        let command = match set.strip_prefix("UID ") {
            Some(uids) => format!("UID FETCH {uids} {items}"),
            None => format!("FETCH {set} {items}"),
        };
        self.ok(&command).fetches()
    }

    /// `SEARCH criteria`, which must succeed; returns the numbers found.
    pub fn search(&mut self, criteria: &str) -> Vec<u32> {
        let r = self.ok(&format!("SEARCH {criteria}"));
        r.search()
    }

    /// LOGOUT: `* BYE`, the tagged OK, then the server closes (RFC 3501 6.1.3).
    pub fn logout(mut self) {
        let r = self.ok("LOGOUT");
        assert!(
            r.all("BYE").len() == 1,
            "LOGOUT without one untagged BYE: {r:?}"
        );
        self.assert_closed_after("LOGOUT");
    }
}

/// The length a line (without CRLF) announces as a literal at its end: `{n}` or `{n+}`.
pub fn literal_announcement(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `s` as an IMAP quoted string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---------------------------------------------------------------------------------------------
// Python imaplib.

/// The generic imaplib client. argv: mode (plain|ssl) host port cert dir commands...; a command
/// is tab-separated: `key op args...`. Ops: any `IMAP4` method (`login`, `select`, `fetch`,
/// `uid`, `store`, `search`, `list`, `status`, `create`, `expunge`, `logout`...) called with
/// the args; `starttls`; `authenticate_plain user password`; `append mailbox flags date file`
/// (file in dir, empty flags/date: none); `literal text` (the next command's last argument is
/// sent as a synchronizing literal of the UTF-8 text); `raw NAME args...` (any command, e.g.
/// MOVE or ID). Prints, per command: `key status TYP`, `key data TEXT` per data line,
/// `key literal N PREFIX` per literal (its octets in dir/key.N), `key untagged NAME TEXT` per
/// untagged response collected (then forgotten), or `key error TEXT` when imaplib raised.
/// First: `welcome`, `capabilities`; after STARTTLS or on implicit TLS: `cipher`.
const PY_IMAP: &str = concat!(
    r#"
import imaplib, os, ssl, sys
mode, host, port, cert, outdir = sys.argv[1:6]
"#,
    py_tls_context!(),
    r#"def text(b):
    if isinstance(b, bytes):
        b = b.decode('utf-8', 'backslashreplace')
    return str(b).replace('\r', '\\r').replace('\n', '\\n')
if mode == 'ssl':
    M = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=10)
    print('cipher', M.sock.version(), M.sock.cipher()[0])
else:
    M = imaplib.IMAP4(host, int(port), timeout=10)
print('welcome', text(M.welcome))
print('capabilities', ' '.join(M.capabilities))
def show(key, data):
    n = 0
    for d in data or []:
        if isinstance(d, tuple):
            with open(os.path.join(outdir, '%s.%d' % (key, n)), 'wb') as f:
                f.write(d[1])
            print(key, 'literal', n, text(d[0]))
            n += 1
        elif d is not None:
            print(key, 'data', text(d))
def untagged(key):
    for name, values in M.untagged_responses.items():
        for v in values:
            if isinstance(v, tuple):
                v = v[0]
            print(key, 'untagged', name, text(v))
    M.untagged_responses.clear()
for c in sys.argv[6:]:
    key, op, *args = c.split('\t')
    try:
        if op == 'starttls':
            typ, data = M.starttls(ssl_context=ctx)
            print(key, 'cipher', M.sock.version(), M.sock.cipher()[0])
            print(key, 'capabilities', ' '.join(M.capabilities))
        elif op == 'authenticate_plain':
            user, password = args
            typ, data = M.authenticate('PLAIN', lambda _: ('\0%s\0%s' % (user, password)).encode())
        elif op == 'append':
            mailbox, flags, date, name = args
            with open(os.path.join(outdir, name), 'rb') as f:
                message = f.read()
            typ, data = M.append(mailbox, flags or None, date or None, message)
        elif op == 'literal':
            M.literal = args[0].encode('utf-8')
            print(key, 'status', 'set')
            continue
        elif op == 'raw':
            if args[0] not in imaplib.Commands:
                imaplib.Commands[args[0]] = ('NONAUTH', 'AUTH', 'SELECTED')
            typ, data = M._simple_command(*args)
        elif op == 'capability':
            typ, data = M.capability()
            # A capability response replaces what imaplib knew (RFC 3501 7.2.1).
            M.capabilities = tuple(data[-1].decode().upper().split())
        else:
            typ, data = getattr(M, op)(*args)
        print(key, 'status', typ)
        show(key, data)
        untagged(key)
    except imaplib.IMAP4.abort as e:
        print(key, 'error', text(str(e)))
        break
    except imaplib.IMAP4.error as e:
        print(key, 'error', text(str(e)))
        untagged(key)
"#
);

/// One imaplib run (see [`PY_IMAP`]).
#[derive(Debug)]
pub struct ImapLib {
    /// `plain` (STARTTLS is a command) or `ssl` (implicit TLS).
    pub mode: &'static str,
    pub addr: SocketAddr,
    /// The certificate the client trusts: the server's own.
    pub cert: PathBuf,
    /// Holds the files `append` reads and the literals FETCH returns.
    dir: tempfile::TempDir,
}

/// What an imaplib run printed and fetched.
#[derive(Debug)]
pub struct ImapRun {
    pub output: String,
    dir: tempfile::TempDir,
}

impl ImapLib {
    /// A client of `service` (implicit TLS on imaps).
    pub fn new(server: &TestServer, service: Service) -> ImapLib {
        ImapLib {
            mode: python_mode(service),
            addr: server.addr(service),
            cert: server.certificate(),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}")),
        }
    }

    /// A client of the plain IMAP service at `addr` (e.g. a non-loopback listener).
    pub fn at(server: &TestServer, addr: SocketAddr) -> ImapLib {
        ImapLib {
            addr,
            ..ImapLib::new(server, Service::Imap)
        }
    }

    /// Puts `content` in the file `name` for an `append` command.
    pub fn file(self, name: &str, content: &[u8]) -> ImapLib {
        std::fs::write(self.dir.path().join(name), content)
            .unwrap_or_else(|e| panic!("write {name}: {e}"));
        self
    }

    /// Runs imaplib with `commands` (each `[key, op, args...]`).
    pub fn run(self, commands: &[&[&str]]) -> ImapRun {
        let host = self.addr.ip().to_string();
        let port = self.addr.port().to_string();
        let joined: Vec<String> = commands
            .iter()
            .map(|c| {
                assert!(
                    c.len() >= 2 && !c[0].contains(' '),
                    "a command is [key, op, args...]: {c:?}"
                );
                c.join("\t")
            })
            .collect();
        let mut args: Vec<&Path> = vec![
            Path::new(self.mode),
            Path::new(&host),
            Path::new(&port),
            &self.cert,
            self.dir.path(),
        ];
        args.extend(joined.iter().map(Path::new));
        let output = python(PY_IMAP, &args).unwrap_or_else(|e| panic!("imaplib: {e}"));
        ImapRun {
            output,
            dir: self.dir,
        }
    }
}

impl ImapRun {
    /// The values of the output lines `key what VALUE`, in order.
    pub fn values(&self, key: &str, what: &str) -> Vec<&str> {
        self.output
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(key)?.strip_prefix(' ')?;
                let rest = rest.strip_prefix(what)?;
                if rest.is_empty() {
                    Some(rest)
                } else {
                    rest.strip_prefix(' ')
                }
            })
            .collect()
    }

    /// The value of the first line `key VALUE` (for `welcome`, `capabilities`, `cipher`);
    /// panics if absent.
    pub fn out(&self, key: &str) -> &str {
        self.output
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {key:?} line in imaplib output:\n{}", self.output))
    }

    /// The status imaplib returned for command `key` (`OK`, `NO`, `BAD`), or `error` if it
    /// raised (see [`ImapRun::error`]).
    pub fn status(&self, key: &str) -> &str {
        if !self.values(key, "error").is_empty() {
            return "error";
        }
        self.values(key, "status")
            .first()
            .copied()
            .unwrap_or_else(|| panic!("no status for {key:?} in imaplib output:\n{}", self.output))
    }

    /// Checks that command `key` returned OK.
    pub fn assert_ok(&self, key: &str) {
        assert_eq!(self.status(key), "OK", "{key}:\n{}", self.output);
    }

    /// The exception text imaplib raised for command `key` (panics if it did not raise).
    pub fn error(&self, key: &str) -> &str {
        self.values(key, "error")
            .first()
            .copied()
            .unwrap_or_else(|| panic!("{key:?} did not fail:\n{}", self.output))
    }

    /// The data lines imaplib returned for command `key`.
    pub fn data(&self, key: &str) -> Vec<&str> {
        self.values(key, "data")
    }

    /// The untagged responses of kind `name` collected during command `key`.
    pub fn untagged(&self, key: &str, name: &str) -> Vec<&str> {
        self.values(key, "untagged")
            .into_iter()
            .filter_map(|v| v.strip_prefix(name)?.strip_prefix(' '))
            .collect()
    }

    /// The `n`th literal command `key` returned (e.g. a FETCHed body), and the response text
    /// before it (`1 (UID 1 BODY[] {123}`).
    pub fn literal(&self, key: &str, n: usize) -> (String, Vec<u8>) {
        let prefix = self
            .values(key, "literal")
            .into_iter()
            .find_map(|v| v.strip_prefix(&format!("{n} ")).map(str::to_owned))
            .unwrap_or_else(|| panic!("no literal {n} for {key:?}:\n{}", self.output));
        let path = self.dir.path().join(format!("{key}.{n}"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        (prefix, bytes)
    }

    /// The words of the capabilities imaplib knew at the start (or after `key`'s STARTTLS).
    pub fn capabilities(&self, key: &str) -> Vec<String> {
        let line = if key == "capabilities" {
            self.out("capabilities").to_owned()
        } else {
            self.values(key, "capabilities")
                .first()
                .map(|s| (*s).to_owned())
                .unwrap_or_else(|| panic!("no capabilities after {key}:\n{}", self.output))
        };
        line.split(' ').map(str::to_owned).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// A two-part `multipart/mixed` message (text, then a base64 attachment) with a preamble and
/// an epilogue: FETCH must find its parts. See [`MULTIPART_PARTS`].
pub const MULTIPART: &[u8] = b"From: Alice <alice@example.test>\r\n\
To: Bob <bob@example.test>\r\n\
Subject: multipart\r\n\
Date: Tue, 01 Apr 2025 10:00:00 +0200\r\n\
Message-ID: <multipart@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XyZ\"\r\n\
\r\n\
This is the preamble.\r\n\
--XyZ\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
part one\r\n\
second line\r\n\
--XyZ\r\n\
Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQF\r\n\
--XyZ--\r\n\
epilogue\r\n";

/// What `BODY[1]`, `BODY[1.MIME]`, `BODY[2]`, `BODY[2.MIME]` of [`MULTIPART`] are (RFC 3501
/// 6.4.5, RFC 2046 5.1.1: the CRLF before a boundary belongs to the boundary).
pub const MULTIPART_PARTS: [(&str, &[u8]); 4] = [
    ("1", b"part one\r\nsecond line"),
    ("1.MIME", b"Content-Type: text/plain; charset=utf-8\r\n\r\n"),
    ("2", b"AAECAwQF"),
    (
        "2.MIME",
        b"Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n",
    ),
];

/// A simple message (LF-free, CRLF line ends) with this subject, sender and body.
pub fn message(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@test>\r\n\r\n{body}\r\n",
        subject
            .bytes()
            .filter(u8::is_ascii_alphanumeric)
            .map(char::from)
            .collect::<String>()
    )
    .into_bytes()
}

/// The header section of `message` (through the blank line) and the body after it.
pub fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    let at = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4);
    message.split_at(at)
}

pub use crate::{require, run};
