//! The real wasmail server (in-process, real sockets, temp data dir) driven by real IMAP
//! clients: Python's `imaplib` for what mail clients do, and a raw `TcpStream` for byte-exact
//! dialogues (sections, literals, concurrent sessions, IDLE, bad input). Mail arrives through the
//! real SMTP service or IMAP APPEND; every assertion is on what came back over the wire or what
//! the store holds (read through the store as another process would). The clients and the
//! response parser are in `wasmail_e2e::imap`.
//!
//! Written against RFC 3501 and the extensions the server advertises (UIDPLUS 4315, MOVE 6851,
//! LITERAL+ 7888, SPECIAL-USE 6154, CONDSTORE 7162, IDLE 2177, NAMESPACE, ID, ENABLE, UNSELECT,
//! CHILDREN, SASL-IR, APPENDLIMIT 7889), not against the implementation.
//!
//! No client socket can hang a test: the raw client has 10 s read/write timeouts and Python's
//! `imaplib` gets `timeout=10`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmail::Service;
use wasmail_e2e::imap::{
    Fetch, Imap, ImapLib, ListEntry, MULTIPART, MULTIPART_PARTS, Reply, Value, deliver, fetch_of,
    folders, imap_date_time, message, quote, sequence_set, split_message, status,
};
use wasmail_e2e::pop3::{Pop3, big_message};
use wasmail_e2e::server::{TestServer, paths_under, without_trace};
use wasmail_e2e::smtp::{
    ALICE, ALICE_PW, BOB, assert_same, base64, non_loopback_ipv4, sample_message, start,
    start_configured,
};
use wasmail_types::mail::{SpecialUse, SystemFlag};

/// Bob's password, as `wasmail_e2e::smtp::with_users` sets it.
const BOB_PW: &str = "bob-Secret-pw2";

/// The capabilities the server must advertise once logged in (the brief of this suite, each an
/// RFC the server implements).
const CAPABILITIES: [&str; 13] = [
    "IMAP4REV1",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "LITERAL+",
    "SPECIAL-USE",
    "CONDSTORE",
    "NAMESPACE",
    "ID",
    "ENABLE",
    "UNSELECT",
    "CHILDREN",
    "SASL-IR",
];

/// Sample messages with these subjects.
fn samples(subjects: &[&str]) -> Vec<Vec<u8>> {
    subjects.iter().map(|s| sample_message(s)).collect()
}

/// The UIDs of alice's `mailbox`, oldest first, as the store has them.
fn uids(server: &TestServer, mailbox: &str) -> Vec<u32> {
    server
        .metas(ALICE, mailbox)
        .iter()
        .map(|m| m.uid.get())
        .collect()
}

/// The flags of each message of alice's `mailbox` as the store has them, spelled as IMAP
/// does and sorted (compare with [`Fetch::flags`]).
fn stored_flags(server: &TestServer, mailbox: &str) -> Vec<Vec<String>> {
    server
        .metas(ALICE, mailbox)
        .iter()
        .map(|m| {
            let mut f: Vec<String> = SystemFlag::ALL
                .iter()
                .filter(|s| m.flags.contains(**s))
                .map(|s| s.as_imap().to_owned())
                .collect();
            f.extend(m.flags.keywords().iter().cloned());
            f.sort();
            f
        })
        .collect()
}

fn strings(words: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    v.sort();
    v
}

/// The words of a CAPABILITY response (or a `[CAPABILITY ...]` code), upper-cased.
fn capability_words(text: &str) -> Vec<String> {
    text.split(' ')
        .map(|w| w.trim_matches(['[', ']']).to_ascii_uppercase())
        .collect()
}

/// Checks that every capability of [`CAPABILITIES`] and an `APPENDLIMIT=<n>` are in `words`;
/// returns the APPENDLIMIT.
fn assert_capabilities(words: &[String]) -> u64 {
    for want in CAPABILITIES {
        assert!(
            words.iter().any(|w| w == want),
            "{want} not advertised: {words:?}"
        );
    }
    let limit = words
        .iter()
        .find_map(|w| w.strip_prefix("APPENDLIMIT="))
        .unwrap_or_else(|| panic!("no APPENDLIMIT=<n> (RFC 7889) in {words:?}"));
    limit
        .parse()
        .unwrap_or_else(|e| panic!("APPENDLIMIT={limit}: {e}"))
}

/// The CAPABILITY command's words (raw client).
fn capabilities(c: &mut Imap) -> Vec<String> {
    let r = c.ok("CAPABILITY");
    let caps = r.all("CAPABILITY");
    assert_eq!(caps.len(), 1, "{r:?}");
    capability_words(&caps[0].rest())
}

/// Simulates untagged EXPUNGE responses (each a sequence number at the time it is sent, RFC
/// 3501 7.4.1) on the UIDs a session had; returns the UIDs left.
fn apply_expunges(mut uids: Vec<u32>, expunged: &[u32]) -> Vec<u32> {
    for &n in expunged {
        assert!(
            n >= 1 && (n as usize) <= uids.len(),
            "EXPUNGE {n} with {} messages",
            uids.len()
        );
        uids.remove(n as usize - 1);
    }
    uids
}

/// The addresses of an ENVELOPE address list as (name, mailbox, host).
fn addresses(v: &Value) -> Vec<(Option<String>, String, String)> {
    match v {
        Value::Nil => Vec::new(),
        Value::List(l) => l
            .iter()
            .map(|a| {
                let a = a.list();
                assert_eq!(a.len(), 4, "address {a:?}");
                (
                    a[0].text(),
                    a[2].text().unwrap_or_default(),
                    a[3].text().unwrap_or_default(),
                )
            })
            .collect(),
        other => panic!("address list {other:?}"),
    }
}

fn eq_ci(v: &Value, want: &str) -> bool {
    v.text().is_some_and(|t| t.eq_ignore_ascii_case(want))
}

/// An IMAP `date-time` with a one-digit day written space-padded (`date-day-fixed`, RFC 3501
/// 9, allows " 1" and "01"; the server writes either), for comparing dates.
fn day_fixed(date: &str) -> String {
    match date.strip_prefix('0') {
        Some(rest) => format!(" {rest}"),
        None => date.to_owned(),
    }
}

/// Lines (CRLF-terminated) in `body`.
fn line_count(body: &[u8]) -> u64 {
    body.iter().filter(|&&b| b == b'\n').count() as u64
}

// ---------------------------------------------------------------------------------------------
// 1. imaplib: capabilities, logins, NOOP, LOGOUT.

#[test]
fn imaplib_capabilities_login_authenticate_noop_and_logout() {
    let server = start();
    let run = ImapLib::new(&server, Service::Imap).run(&[
        &["wrong", "login", ALICE, "not-the-password"],
        &["unknown", "login", "nobody@example.test", "whatever"],
        &["login", "login", ALICE, ALICE_PW],
        &["caps", "capability"],
        &["noop", "noop"],
        &["logout", "logout"],
    ]);
    assert!(run.out("welcome").starts_with("* OK "), "{}", run.output);
    // Before login, on loopback with TLS configured: STARTTLS and the SASL mechanisms.
    let before = run.capabilities("capabilities");
    for want in ["IMAP4REV1", "STARTTLS", "AUTH=PLAIN", "SASL-IR"] {
        assert!(before.iter().any(|w| w == want), "{want}: {before:?}");
    }
    assert!(
        !before.iter().any(|w| w == "LOGINDISABLED"),
        "LOGINDISABLED on loopback: {before:?}"
    );
    // RFC 5530: a wrong password is NO [AUTHENTICATIONFAILED]; an unknown account gets the
    // same answer (no account enumeration).
    let wrong = run.error("wrong");
    assert!(wrong.contains("[AUTHENTICATIONFAILED]"), "{}", run.output);
    assert_eq!(wrong, run.error("unknown"), "{}", run.output);
    run.assert_ok("login");
    run.assert_ok("caps");
    let caps = run.data("caps");
    let after = capability_words(caps.last().unwrap_or(&""));
    let limit = assert_capabilities(&after);
    assert!(limit > 0, "APPENDLIMIT={limit}");
    run.assert_ok("noop");
    // imaplib returns BYE when the server said `* BYE` before the tagged OK.
    assert_eq!(run.status("logout"), "BYE", "{}", run.output);

    // AUTHENTICATE PLAIN (imaplib sends it without an initial response and answers the `+`).
    let run = ImapLib::new(&server, Service::Imap).run(&[
        &["wrong", "authenticate_plain", ALICE, "not-the-password"],
        &["auth", "authenticate_plain", ALICE, ALICE_PW],
        &["select", "select", "INBOX"],
        &["noop", "noop"],
        &["logout", "logout"],
    ]);
    assert!(
        run.error("wrong").contains("[AUTHENTICATIONFAILED]"),
        "{}",
        run.output
    );
    run.assert_ok("auth");
    run.assert_ok("select");
    run.assert_ok("noop");
    assert_eq!(run.status("logout"), "BYE", "{}", run.output);
}

#[test]
fn raw_greeting_capability_sasl_ir_and_logout_close() {
    let server = start();
    let (mut c, greeting) = Imap::connect_raw(server.addr(Service::Imap));
    assert!(greeting.starts_with("* OK "), "{greeting:?}");
    let before = capabilities(&mut c);
    assert!(before.iter().any(|w| w == "IMAP4REV1"), "{before:?}");
    // Commands of the authenticated state are refused before login (RFC 3501 6: BAD or NO).
    let r = c.cmd("SELECT INBOX");
    assert!(
        r.status() == "BAD" || r.status() == "NO",
        "SELECT before login: {r:?}"
    );
    // SASL-IR (RFC 4959): the initial response on the command line, no `+` round trip.
    let token = base64(format!("\0{ALICE}\0{ALICE_PW}").as_bytes());
    let r = c.ok(&format!("AUTHENTICATE PLAIN {token}"));
    assert!(
        r.untagged.is_empty() || r.all("CAPABILITY").len() == 1,
        "{r:?}"
    );
    let after = capabilities(&mut c);
    assert_capabilities(&after);
    assert!(
        !after.iter().any(|w| w.starts_with("AUTH=")),
        "AUTH= after login: {after:?}"
    );
    // A second login is refused: already authenticated.
    let r = c.cmd(&format!("LOGIN {} {}", quote(ALICE), quote(ALICE_PW)));
    assert!(r.status() == "BAD" || r.status() == "NO", "{r:?}");
    // ID (RFC 2971) and NAMESPACE (RFC 2342) answer with their untagged data.
    let r = c.ok("ID (\"name\" \"wasmail-e2e\")");
    assert_eq!(r.all("ID").len(), 1, "{r:?}");
    let r = c.ok("NAMESPACE");
    let ns = r.all("NAMESPACE");
    assert_eq!(ns.len(), 1, "{r:?}");
    let personal = &ns[0].values()[2];
    assert_eq!(
        personal.list()[0].list()[1].text().as_deref(),
        Some("/"),
        "the hierarchy delimiter is /: {ns:?}"
    );
    c.ok("NOOP");
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 2. SELECT and EXAMINE.

#[test]
fn select_reports_counts_uidvalidity_uidnext_flags_and_read_write() {
    let server = start();
    deliver(
        &server,
        ALICE,
        &samples(&["select 1", "select 2", "select 3"]),
    );
    let store = status(&server, ALICE, "INBOX");
    let run = ImapLib::new(&server, Service::Imap).run(&[
        &["login", "login", ALICE, ALICE_PW],
        &["select", "select", "INBOX"],
        &["logout", "logout"],
    ]);
    run.assert_ok("select");
    assert_eq!(run.data("select"), ["3"], "{}", run.output);
    assert_eq!(run.untagged("select", "EXISTS"), ["3"], "{}", run.output);
    assert_eq!(run.untagged("select", "RECENT"), ["3"], "{}", run.output);
    assert_eq!(
        run.untagged("select", "UIDVALIDITY"),
        [store.uid_validity.get().to_string()],
        "{}",
        run.output
    );
    assert_eq!(
        run.untagged("select", "UIDNEXT"),
        [store.uid_next.get().to_string()],
        "{}",
        run.output
    );
    assert_eq!(store.uid_next.get(), uids(&server, "INBOX")[2] + 1);
    let flags = run.untagged("select", "FLAGS");
    assert_eq!(flags.len(), 1, "{}", run.output);
    for f in ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"] {
        assert!(flags[0].contains(f), "FLAGS lacks {f}: {}", run.output);
    }
    let permanent = run.untagged("select", "PERMANENTFLAGS");
    assert_eq!(permanent.len(), 1, "{}", run.output);
    assert!(
        permanent[0].contains("\\*"),
        "keywords can be created: {}",
        run.output
    );
    assert_eq!(
        run.untagged("select", "READ-WRITE").len(),
        1,
        "{}",
        run.output
    );

    // Another connection: the same counts, but \Recent went to the first session.
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let r = c.ok("SELECT INBOX");
    assert_eq!(r.count("EXISTS"), Some(3), "{r:?}");
    assert_eq!(r.count("RECENT"), Some(0), "{r:?}");
    assert_eq!(r.code().as_deref(), Some("READ-WRITE"), "{r:?}");
    assert_eq!(
        r.code_arg("UIDVALIDITY"),
        Some(store.uid_validity.get().to_string())
    );

    // EXAMINE: read-only; STORE is refused, and fetching a body does not set \Seen.
    let r = c.ok("EXAMINE INBOX");
    assert_eq!(r.code().as_deref(), Some("READ-ONLY"), "{r:?}");
    assert_eq!(r.count("EXISTS"), Some(3), "{r:?}");
    c.no("STORE 1 +FLAGS (\\Flagged)");
    let f = c.fetch("1", "(BODY[])");
    assert!(!f[0].has("FLAGS"), "{f:?}");
    assert_eq!(
        stored_flags(&server, "INBOX"),
        vec![Vec::<String>::new(); 3],
        "EXAMINE changed nothing"
    );
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 3. FETCH.

#[test]
fn fetch_attributes_match_the_stored_messages() {
    let server = start();
    let sent = samples(&["fetch one", "fetch two", "fetch three"]);
    let stored = deliver(&server, ALICE, &sent);
    let metas = server.metas(ALICE, "INBOX");
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let fetches = c.fetch(
        "1:*",
        "(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE UID)",
    );
    assert_eq!(fetches.len(), 3, "{fetches:?}");
    for (i, (m, meta)) in stored.iter().zip(&metas).enumerate() {
        let f = fetch_of(&fetches, i as u32 + 1);
        assert_eq!(f.uid(), meta.uid.get(), "UID of {}", i + 1);
        assert_eq!(f.number("RFC822.SIZE"), m.len() as u64, "RFC822.SIZE");
        assert_eq!(meta.size, m.len() as u64, "the store's size");
        assert!(f.flags().is_empty(), "{f:?}");
        assert_eq!(
            day_fixed(&f.item("INTERNALDATE").text().unwrap()),
            imap_date_time(meta.internal_date),
            "INTERNALDATE of {}",
            i + 1
        );

        // ENVELOPE (RFC 3501 7.4.2): date, subject, from, sender, reply-to, to, cc, bcc,
        // in-reply-to, message-id; sender and reply-to default to from.
        let env = f.item("ENVELOPE").list();
        assert_eq!(env.len(), 10, "{env:?}");
        assert_eq!(env[0], Value::Nil, "no Date: field");
        let subject = ["fetch one", "fetch two", "fetch three"][i];
        assert_eq!(env[1].text().as_deref(), Some(subject));
        let sender = vec![(
            Some("Sender".to_owned()),
            "sender".to_owned(),
            "remote.example".to_owned(),
        )];
        assert_eq!(addresses(&env[2]), sender, "from");
        assert_eq!(addresses(&env[3]), sender, "sender = from");
        assert_eq!(addresses(&env[4]), sender, "reply-to = from");
        assert_eq!(
            addresses(&env[5]),
            vec![(None, "alice".to_owned(), "example.test".to_owned())],
            "to"
        );
        assert_eq!(env[6], Value::Nil, "cc");
        assert_eq!(env[7], Value::Nil, "bcc");
        assert_eq!(env[8], Value::Nil, "in-reply-to");
        assert_eq!(
            env[9].text(),
            Some(format!("<{}@remote.example>", subject.replace(' ', "-")))
        );

        // BODYSTRUCTURE of a message without MIME headers: text/plain; charset=us-ascii, 7bit
        // (RFC 2045 defaults), its body's size and lines.
        let (_, body) = split_message(m);
        let bs = f.item("BODYSTRUCTURE").list();
        assert!(bs.len() >= 8, "{bs:?}");
        assert!(eq_ci(&bs[0], "TEXT") && eq_ci(&bs[1], "PLAIN"), "{bs:?}");
        let params = bs[2].list();
        assert!(
            eq_ci(&params[0], "CHARSET") && eq_ci(&params[1], "US-ASCII"),
            "{bs:?}"
        );
        assert!(eq_ci(&bs[5], "7BIT"), "{bs:?}");
        assert_eq!(bs[6].number(), body.len() as u64, "body size");
        assert_eq!(bs[7].number(), line_count(body), "body lines");
    }
    c.logout();
}

#[test]
fn body_peek_is_byte_exact_and_leaves_seen_alone_while_body_sets_it() {
    let server = start();
    let sent = samples(&["peek one", "peek two", "peek three"]);
    let stored = deliver(&server, ALICE, &sent);
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let fetches = c.fetch("1:3", "(BODY.PEEK[])");
    assert_eq!(fetches.len(), 3);
    for (i, m) in stored.iter().enumerate() {
        let f = fetch_of(&fetches, i as u32 + 1);
        assert_same(&f.bytes("BODY[]"), m, &format!("BODY.PEEK[] of {}", i + 1));
        assert_same(without_trace(m), &sent[i], "what SMTP delivered");
        assert!(!f.has("FLAGS"), "PEEK changed flags: {f:?}");
    }
    assert_eq!(
        stored_flags(&server, "INBOX"),
        vec![Vec::<String>::new(); 3]
    );

    // BODY[] sets \Seen, and the response says so (RFC 3501 6.4.5).
    let fetches = c.fetch("2", "(BODY[])");
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    assert_same(&fetches[0].bytes("BODY[]"), &stored[1], "BODY[] of 2");
    assert_eq!(fetches[0].flags(), ["\\Seen"], "{fetches:?}");
    assert_eq!(
        stored_flags(&server, "INBOX"),
        [vec![], vec!["\\Seen".to_owned()], vec![]]
    );
    // RFC822 is BODY[] under its old name: the same octets.
    let f = c.fetch("2", "(RFC822)");
    assert_same(&f[0].bytes("RFC822"), &stored[1], "RFC822 of 2");
    // UID FETCH answers with the UID even when not asked (RFC 3501 6.4.8).
    let uid = uids(&server, "INBOX")[2];
    let f = c.fetch(&format!("UID {uid}"), "(BODY.PEEK[])");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].uid(), uid);
    assert_same(&f[0].bytes("BODY[]"), &stored[2], "UID FETCH BODY.PEEK[]");
    c.logout();
}

#[test]
fn body_sections_header_text_fields_and_partial() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["sections"]));
    let m = &stored[0];
    let (header, body) = split_message(m);
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let f = &c.fetch(
        "1",
        "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] \
         BODY.PEEK[]<0.10> BODY.PEEK[]<7.20>)",
    )[0];
    assert_same(&f.bytes("BODY[HEADER]"), header, "BODY[HEADER]");
    assert_same(&f.bytes("BODY[TEXT]"), body, "BODY[TEXT]");
    // The fields asked for, in the message's order, and the blank line (RFC 3501 6.4.5).
    assert_same(
        &f.bytes("BODY[HEADER.FIELDS (SUBJECT FROM)]"),
        b"From: Sender <sender@remote.example>\r\nSubject: sections\r\n\r\n",
        "BODY[HEADER.FIELDS (SUBJECT FROM)]",
    );
    // A partial fetch is named by its origin only (`BODY[]<0>`).
    assert_same(&f.bytes("BODY[]<0>"), &m[..10], "BODY[]<0.10>");
    assert_same(&f.bytes("BODY[]<7>"), &m[7..27], "BODY[]<7.20>");
    assert!(!f.has("FLAGS"), "{f:?}");

    // HEADER.FIELDS.NOT without the trace fields: the header the client sent.
    let f = &c.fetch("1", "(BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED RETURN-PATH)])")[0];
    let (sent_header, _) = split_message(without_trace(m));
    assert_same(
        &f.bytes("BODY[HEADER.FIELDS.NOT (RECEIVED RETURN-PATH)]"),
        sent_header,
        "HEADER.FIELDS.NOT",
    );
    // A partial fetch beyond the end is empty; one running over it is cut.
    let len = m.len();
    let f = &c.fetch("1", &format!("(BODY.PEEK[]<{}.100>)", len - 5))[0];
    assert_same(
        &f.bytes(&format!("BODY[]<{}>", len - 5)),
        &m[len - 5..],
        "partial over the end",
    );
    let f = &c.fetch("1", &format!("(BODY.PEEK[]<{}.10>)", len + 10))[0];
    assert_eq!(f.bytes(&format!("BODY[]<{}>", len + 10)), b"", "{f:?}");
    c.logout();
}

#[test]
fn multipart_parts_by_section_number() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    c.append_ok("INBOX", "", MULTIPART);
    assert_eq!(server.messages(ALICE, "INBOX"), [MULTIPART.to_vec()]);
    c.ok("SELECT INBOX");
    let items: Vec<String> = MULTIPART_PARTS
        .iter()
        .map(|(s, _)| format!("BODY.PEEK[{s}]"))
        .collect();
    let f = &c.fetch(
        "1",
        &format!("(RFC822.SIZE BODYSTRUCTURE {})", items.join(" ")),
    )[0];
    assert_eq!(f.number("RFC822.SIZE"), MULTIPART.len() as u64);
    for (section, want) in MULTIPART_PARTS {
        assert_same(
            &f.bytes(&format!("BODY[{section}]")),
            want,
            &format!("BODY[{section}]"),
        );
    }
    // BODYSTRUCTURE: (part part "MIXED" ...); the parts text/plain (utf-8) and
    // application/octet-stream in base64 of 8 octets.
    let bs = f.item("BODYSTRUCTURE").list();
    assert!(bs.len() >= 3, "{bs:?}");
    let (one, two) = (bs[0].list(), bs[1].list());
    assert!(eq_ci(&bs[2], "MIXED"), "{bs:?}");
    assert!(eq_ci(&one[0], "TEXT") && eq_ci(&one[1], "PLAIN"), "{one:?}");
    assert!(eq_ci(&one[2].list()[1], "utf-8"), "{one:?}");
    assert!(
        eq_ci(&two[0], "APPLICATION") && eq_ci(&two[1], "OCTET-STREAM"),
        "{two:?}"
    );
    assert!(eq_ci(&two[5], "BASE64"), "{two:?}");
    assert_eq!(two[6].number(), 8, "{two:?}");
    // The whole message is still what was appended.
    let f = &c.fetch("1", "(BODY.PEEK[])")[0];
    assert_same(&f.bytes("BODY[]"), MULTIPART, "BODY[]");
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 4. STORE.

#[test]
fn store_flags_keywords_and_silent_reach_the_store() {
    let server = start();
    deliver(&server, ALICE, &samples(&["store 1", "store 2", "store 3"]));
    let uid3 = uids(&server, "INBOX")[2];
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");

    let f = c.ok("STORE 1 +FLAGS (\\Flagged)").fetches();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].flags(), ["\\Flagged"]);
    assert_eq!(stored_flags(&server, "INBOX")[0], ["\\Flagged"]);

    // .SILENT: no FETCH back (RFC 3501 6.4.6), but the store has it.
    let r = c.ok("STORE 1 +FLAGS.SILENT (\\Seen)");
    assert!(r.fetches().is_empty(), "{r:?}");
    assert_eq!(
        stored_flags(&server, "INBOX")[0],
        strings(&["\\Flagged", "\\Seen"])
    );

    let f = c.ok("STORE 1 -FLAGS (\\Flagged)").fetches();
    assert_eq!(f[0].flags(), ["\\Seen"]);
    assert_eq!(stored_flags(&server, "INBOX")[0], ["\\Seen"]);

    // FLAGS replaces, keywords included.
    let f = c.ok("STORE 2 FLAGS (\\Answered $Forwarded)").fetches();
    assert_eq!(f[0].flags(), strings(&["$Forwarded", "\\Answered"]));
    let metas = server.metas(ALICE, "INBOX");
    assert!(metas[1].flags.has_keyword("$Forwarded"), "{metas:?}");
    assert!(metas[1].flags.contains(SystemFlag::Answered), "{metas:?}");

    // UID STORE: the FETCH carries the UID (RFC 3501 6.4.8).
    let f = c
        .ok(&format!("UID STORE {uid3} +FLAGS (\\Draft $Forwarded)"))
        .fetches();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].seq, 3);
    assert_eq!(f[0].uid(), uid3);
    assert_eq!(f[0].flags(), strings(&["$Forwarded", "\\Draft"]));
    assert_eq!(
        stored_flags(&server, "INBOX"),
        [
            strings(&["\\Seen"]),
            strings(&["$Forwarded", "\\Answered"]),
            strings(&["$Forwarded", "\\Draft"]),
        ]
    );

    let r = c.ok("STORE 1:3 -FLAGS.SILENT ($Forwarded)");
    assert!(r.fetches().is_empty(), "{r:?}");
    assert_eq!(
        stored_flags(&server, "INBOX"),
        [
            strings(&["\\Seen"]),
            strings(&["\\Answered"]),
            strings(&["\\Draft"]),
        ]
    );
    c.logout();

    // A new session sees what was stored.
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let f = c.fetch("1:*", "(FLAGS)");
    let flags: Vec<Vec<String>> = (1..=3).map(|n| fetch_of(&f, n).flags()).collect();
    assert_eq!(flags, stored_flags(&server, "INBOX"));
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 5. SEARCH.

/// A message with extra header fields.
fn message_with(fields: &str, from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n{fields}\r\n{body}\r\n"
    )
    .into_bytes()
}

#[test]
fn search_criteria_match_what_the_messages_hold() {
    let server = start();
    let big_body = format!("cherries\r\n{}", "0123456789abcdef\r\n".repeat(1200));
    let sent = vec![
        message(
            "Sender <sender@remote.example>",
            "Hello world",
            "apples and pears",
        ),
        // RFC 2047: "Café crème", matched by its decoded text.
        message(
            "Zoe <zoe@other.example>",
            "=?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=",
            "bananas",
        ),
        message_with(
            "X-Priority: 1\r\n",
            "Sender <sender@remote.example>",
            "Report",
            &big_body,
        ),
    ];
    deliver(&server, ALICE, &sent);
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    // The fourth: appended with an old internal date and an 8-bit UTF-8 body.
    let greetings = "From: Jörg <joerg@example.de>\r\nTo: alice@example.test\r\n\
                     Subject: Greetings\r\nMIME-Version: 1.0\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\
                     Content-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\n";
    let r = c.append(
        "INBOX",
        "\"01-Feb-2020 12:00:00 +0000\"",
        greetings.as_bytes(),
    );
    assert_eq!(r.status(), "OK", "{r:?}");
    c.ok("SELECT INBOX");
    c.fetch("1", "(BODY[])");
    let all = uids(&server, "INBOX");

    for (criteria, want) in [
        ("ALL", vec![1, 2, 3, 4]),
        ("UNSEEN", vec![2, 3, 4]),
        ("SEEN", vec![1]),
        ("FROM zoe", vec![2]),
        ("FROM \"sender@remote\"", vec![1, 3]),
        ("SUBJECT hello", vec![1]),
        ("SUBJECT \"HELLO WORLD\"", vec![1]),
        ("BODY bananas", vec![2]),
        ("BODY cherries", vec![3]),
        ("BODY zoe", vec![]),
        ("TEXT zoe", vec![2]),
        ("TEXT apples", vec![1]),
        ("HEADER X-Priority 1", vec![3]),
        ("HEADER X-Priority \"\"", vec![3]),
        ("LARGER 10000", vec![3]),
        ("SMALLER 10000", vec![1, 2, 4]),
        ("SINCE 1-Jan-2000", vec![1, 2, 3, 4]),
        ("BEFORE 1-Jan-2000", vec![]),
        ("BEFORE 1-Jan-2021", vec![4]),
        ("SINCE 1-Jan-2021", vec![1, 2, 3]),
        ("ON 1-Feb-2020", vec![4]),
        ("OR FROM zoe SUBJECT hello", vec![1, 2]),
        ("NOT FROM zoe", vec![1, 3, 4]),
        ("NOT OR FROM zoe SUBJECT hello", vec![3, 4]),
        ("2:3", vec![2, 3]),
        ("1,4", vec![1, 4]),
        ("2:* NOT 3", vec![2, 4]),
        ("UNSEEN 3:4", vec![3, 4]),
        ("(FROM sender) (SUBJECT report)", vec![3]),
    ] {
        assert_eq!(c.search(criteria), want, "SEARCH {criteria}");
    }

    // UID SEARCH answers with UIDs.
    let r = c.ok("UID SEARCH ALL");
    assert_eq!(r.search(), all, "UID SEARCH ALL");
    let r = c.ok(&format!("UID SEARCH UID {}:{}", all[1], all[2]));
    assert_eq!(r.search(), &all[1..3], "UID SEARCH UID");
    let r = c.ok("UID SEARCH FROM zoe");
    assert_eq!(r.search(), [all[1]], "UID SEARCH FROM");

    // CHARSET UTF-8 with non-ASCII literals: the decoded RFC 2047 subject, the 8-bit body.
    for (key, text, want) in [
        ("SUBJECT", "crème", vec![2]),
        ("BODY", "Grüße", vec![4]),
        ("FROM", "Jörg", vec![4]),
    ] {
        let r = c.cmd_literal(&format!("SEARCH CHARSET UTF-8 {key}"), text.as_bytes(), "");
        assert_eq!(r.status(), "OK", "{r:?}");
        assert_eq!(r.search(), want, "SEARCH CHARSET UTF-8 {key} {text}");
    }
    // A charset the server does not know: NO [BADCHARSET] (RFC 3501 6.4.4).
    let r = c.no("SEARCH CHARSET KOI8-R SUBJECT hello");
    assert!(r.code_arg("BADCHARSET").is_some(), "{r:?}");
    c.ok("NOOP");
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 6. COPY, MOVE, APPEND.

/// The `[COPYUID validity source destination]` of a reply as (validity, source UIDs,
/// destination UIDs).
fn copyuid(r: &Reply) -> (u32, Vec<u32>, Vec<u32>) {
    let code = r
        .code_arg("COPYUID")
        .unwrap_or_else(|| panic!("no [COPYUID] (RFC 4315): {r:?}"));
    let parts: Vec<&str> = code.split(' ').collect();
    assert_eq!(parts.len(), 3, "COPYUID {code:?}");
    (
        parts[0].parse().unwrap(),
        sequence_set(parts[1]),
        sequence_set(parts[2]),
    )
}

#[test]
fn copy_and_uid_copy_answer_copyuid_and_copy_octets_and_flags() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["copy 1", "copy 2", "copy 3"]));
    let inbox = uids(&server, "INBOX");
    let archive = status(&server, ALICE, "Archive").uid_validity.get();
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    c.ok("STORE 1 +FLAGS.SILENT (\\Flagged $Forwarded)");

    let r = c.ok("COPY 1:2 Archive");
    let (validity, from, to) = copyuid(&r);
    assert_eq!(validity, archive, "{r:?}");
    assert_eq!(from, &inbox[..2], "{r:?}");
    assert_eq!(to, uids(&server, "Archive"), "{r:?}");
    assert_eq!(server.messages(ALICE, "Archive"), &stored[..2]);
    assert_eq!(
        stored_flags(&server, "Archive")[0],
        strings(&["$Forwarded", "\\Flagged"]),
        "flags are copied (RFC 3501 6.4.7)"
    );

    let r = c.ok(&format!("UID COPY {} Archive", inbox[2]));
    let (validity, from, to) = copyuid(&r);
    assert_eq!(validity, archive);
    assert_eq!(from, [inbox[2]]);
    assert_eq!(to, [uids(&server, "Archive")[2]]);
    assert_eq!(server.messages(ALICE, "Archive"), stored);
    // The source is untouched.
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
    assert!(c.ok("NOOP").expunged().is_empty());
    // COPY to a missing mailbox: NO [TRYCREATE] (RFC 3501 6.4.7).
    let r = c.no("COPY 1 Nowhere");
    assert_eq!(r.code().as_deref(), Some("TRYCREATE"), "{r:?}");
    c.logout();
}

#[test]
fn move_answers_copyuid_then_expunge() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["move 1", "move 2", "move 3"]));
    let inbox = uids(&server, "INBOX");
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");

    // RFC 6851 4.3: an untagged OK [COPYUID] before the EXPUNGEs.
    let r = c.ok("MOVE 2 Junk");
    let at_copyuid = r
        .untagged
        .iter()
        .position(|u| u.code().is_some_and(|c| c.starts_with("COPYUID ")));
    let at_expunge = r.untagged.iter().position(|u| u.is("EXPUNGE"));
    assert!(
        matches!((at_copyuid, at_expunge), (Some(a), Some(b)) if a < b),
        "COPYUID then EXPUNGE: {r:?}"
    );
    let (validity, from, to) = copyuid(&r);
    assert_eq!(validity, status(&server, ALICE, "Junk").uid_validity.get());
    assert_eq!(from, [inbox[1]]);
    assert_eq!(to, uids(&server, "Junk"));
    assert_eq!(r.expunged(), [2]);
    assert_eq!(server.messages(ALICE, "Junk"), [stored[1].clone()]);
    assert_eq!(
        server.messages(ALICE, "INBOX"),
        [stored[0].clone(), stored[2].clone()]
    );

    // UID MOVE of the last one: now message 2.
    let r = c.ok(&format!("UID MOVE {} Trash", inbox[2]));
    assert_eq!(copyuid(&r).1, [inbox[2]]);
    assert_eq!(r.expunged(), [2]);
    assert_eq!(server.messages(ALICE, "Trash"), [stored[2].clone()]);
    assert_eq!(uids(&server, "INBOX"), [inbox[0]]);
    let f = c.fetch("1:*", "(UID)");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].uid(), inbox[0]);
    c.logout();
}

#[test]
fn append_answers_appenduid_and_stores_the_octets_flags_and_date() {
    let server = start();
    let msg = message("Alice <alice@example.test>", "a draft", "draft body");
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let r = c.append(
        "Drafts",
        "(\\Draft \\Seen) \"01-Feb-2020 12:34:56 +0100\"",
        &msg,
    );
    assert_eq!(r.status(), "OK", "{r:?}");
    let code = r.code_arg("APPENDUID").expect("[APPENDUID] (RFC 4315)");
    let drafts = status(&server, ALICE, "Drafts");
    let metas = server.metas(ALICE, "Drafts");
    assert_eq!(
        code,
        format!("{} {}", drafts.uid_validity.get(), metas[0].uid.get())
    );
    assert_eq!(server.messages(ALICE, "Drafts"), std::slice::from_ref(&msg));
    assert_eq!(
        stored_flags(&server, "Drafts"),
        [strings(&["\\Draft", "\\Seen"])]
    );
    assert_eq!(
        imap_date_time(metas[0].internal_date),
        " 1-Feb-2020 12:34:56 +0100",
        "the internal date as given"
    );
    c.ok("SELECT Drafts");
    let f = &c.fetch("1", "(INTERNALDATE BODY.PEEK[])")[0];
    assert_eq!(
        f.item("INTERNALDATE")
            .text()
            .as_deref()
            .map(day_fixed)
            .as_deref(),
        Some(" 1-Feb-2020 12:34:56 +0100")
    );
    assert_same(&f.bytes("BODY[]"), &msg, "appended message");

    // To a mailbox that does not exist: NO [TRYCREATE], nothing stored anywhere.
    let r = c.append("Missing", "", &msg);
    assert_eq!(r.status(), "NO", "{r:?}");
    assert_eq!(r.code().as_deref(), Some("TRYCREATE"), "{r:?}");
    assert!(server.messages(ALICE, "Missing").is_empty());
    assert_eq!(server.message_files(ALICE).len(), 1);
    // The selected mailbox learns of an APPEND to it (RFC 3501 6.3.11: EXISTS, with the
    // APPEND or at the next command).
    let appended = c.append("Drafts", "", &msg);
    assert_eq!(appended.status(), "OK", "{appended:?}");
    let noop = c.ok("NOOP");
    let exists: Vec<u64> = appended
        .all("EXISTS")
        .iter()
        .chain(noop.all("EXISTS").iter())
        .map(|r| r.number())
        .collect();
    assert_eq!(exists, [2], "APPEND: {appended:?}, NOOP: {noop:?}");
    assert_eq!(uids(&server, "Drafts").len(), 2);
    c.logout();
}

#[test]
fn append_of_five_megabytes_is_byte_exact() {
    let server = start();
    let big = big_message("five megabytes", 5 * 1024 * 1024);
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let uid = c.append_ok("INBOX", "", &big);
    let stored = server.messages(ALICE, "INBOX");
    assert_eq!(stored.len(), 1);
    assert_same(&stored[0], &big, "the stored message");
    c.ok("SELECT INBOX");
    let f = &c.fetch("1", "(UID RFC822.SIZE BODY.PEEK[])")[0];
    assert_eq!(f.uid(), uid);
    assert_eq!(f.number("RFC822.SIZE"), big.len() as u64);
    assert_same(&f.bytes("BODY[]"), &big, "BODY.PEEK[] of 5 MB");
    c.logout();
}

#[test]
fn imaplib_append_copy_and_uid_fetch() {
    let server = start();
    let msg = message(
        "Alice <alice@example.test>",
        "imaplib append",
        "appended by imaplib",
    );
    let run = ImapLib::new(&server, Service::Imap).file("m", &msg).run(&[
        &["login", "login", ALICE, ALICE_PW],
        &["append", "append", "INBOX", "(\\Flagged)", "", "m"],
        &["select", "select", "INBOX"],
        &["fetch", "uid", "FETCH", "1:*", "(FLAGS BODY.PEEK[])"],
        &["copy", "copy", "1", "Archive"],
        &["logout", "logout"],
    ]);
    run.assert_ok("append");
    let appended = run.untagged("append", "APPENDUID");
    let uid = uids(&server, "INBOX")[0];
    assert_eq!(
        appended,
        [format!(
            "{} {uid}",
            status(&server, ALICE, "INBOX").uid_validity.get()
        )],
        "{}",
        run.output
    );
    run.assert_ok("fetch");
    let (_, body) = run.literal("fetch", 0);
    assert_same(&body, &msg, "imaplib UID FETCH");
    // The other items, before or after the literal.
    let mut around = run.values("fetch", "literal").join(" ");
    around.push_str(&run.data("fetch").join(" "));
    assert!(around.contains(&format!("UID {uid}")), "{}", run.output);
    assert!(around.contains("\\Flagged"), "{}", run.output);
    run.assert_ok("copy");
    assert_eq!(run.untagged("copy", "COPYUID").len(), 1, "{}", run.output);
    assert_eq!(server.messages(ALICE, "Archive"), [msg]);
}

// ---------------------------------------------------------------------------------------------
// 7. EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT.

#[test]
fn expunge_reports_each_removed_message_and_uid_expunge_only_the_given_uids() {
    let server = start();
    let subjects: Vec<String> = (1..=6).map(|i| format!("expunge {i}")).collect();
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    deliver(&server, ALICE, &samples(&subjects));
    let all = uids(&server, "INBOX");
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    c.ok("STORE 2,4,5 +FLAGS.SILENT (\\Deleted)");
    let r = c.ok("EXPUNGE");
    assert_eq!(r.expunged().len(), 3, "{r:?}");
    let left = apply_expunges(all.clone(), &r.expunged());
    assert_eq!(left, [all[0], all[2], all[5]], "{r:?}");
    assert_eq!(uids(&server, "INBOX"), left);

    // UID EXPUNGE (RFC 4315 2.1): only the UIDs given, though all are \Deleted.
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)");
    let r = c.ok(&format!("UID EXPUNGE {}", all[2]));
    assert_eq!(r.expunged(), [2], "{r:?}");
    assert_eq!(uids(&server, "INBOX"), [all[0], all[5]]);
    assert_eq!(
        stored_flags(&server, "INBOX"),
        [vec!["\\Deleted".to_owned()], vec!["\\Deleted".to_owned()]]
    );
    // The session's numbers follow: 2 messages, the second is the sixth delivered.
    let f = c.fetch("1:*", "(UID)");
    assert_eq!(
        f.iter().map(Fetch::uid).collect::<Vec<_>>(),
        [all[0], all[5]]
    );
    c.logout();
}

#[test]
fn close_expunges_silently_and_unselect_and_examine_close_do_not() {
    let server = start();
    deliver(&server, ALICE, &samples(&["close 1", "close 2", "close 3"]));
    let all = uids(&server, "INBOX");
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    // UNSELECT (RFC 3691): leaves the mailbox without expunging.
    let r = c.ok("UNSELECT");
    assert!(r.untagged.is_empty(), "{r:?}");
    assert_eq!(uids(&server, "INBOX"), all);
    // No mailbox selected now.
    c.bad("FETCH 1 (UID)");

    // CLOSE after EXAMINE removes nothing (RFC 3501 6.4.2).
    c.ok("EXAMINE INBOX");
    let r = c.ok("CLOSE");
    assert!(r.untagged.is_empty(), "{r:?}");
    assert_eq!(uids(&server, "INBOX"), all);

    // CLOSE after SELECT expunges every \Deleted message, without untagged EXPUNGE.
    c.ok("SELECT INBOX");
    c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    let r = c.ok("CLOSE");
    assert!(r.expunged().is_empty(), "CLOSE sends no EXPUNGE: {r:?}");
    assert_eq!(uids(&server, "INBOX"), [all[2]]);
    c.bad("FETCH 1 (UID)");
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 8. Mailboxes.

fn names(entries: &[ListEntry]) -> BTreeSet<String> {
    entries.iter().map(|e| e.name.clone()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// The folders a new account has (RFC 6154 attributes, as the store creates them).
const DEFAULT_FOLDERS: [(&str, &str); 5] = [
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

#[test]
fn list_shows_the_default_folders_with_their_special_use() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let r = c.ok("LIST \"\" \"*\"");
    let list = r.list("LIST");
    let mut want = set(&["INBOX"]);
    want.extend(DEFAULT_FOLDERS.iter().map(|(n, _)| (*n).to_owned()));
    assert_eq!(names(&list), want, "{r:?}");
    for e in &list {
        assert_eq!(e.delimiter.as_deref(), Some("/"), "{e:?}");
        assert!(e.has("\\HasNoChildren"), "CHILDREN: {e:?}");
        let special = DEFAULT_FOLDERS.iter().find(|(n, _)| *n == e.name);
        if let Some((_, attr)) = special {
            assert!(e.has(attr), "{attr} on {e:?}");
        }
    }
    // LIST "" "" gives the delimiter and the root (RFC 3501 6.3.8).
    let r = c.ok("LIST \"\" \"\"");
    let root = r.list("LIST");
    assert_eq!(root.len(), 1, "{r:?}");
    assert_eq!(root[0].delimiter.as_deref(), Some("/"));
    assert!(root[0].has("\\Noselect"), "{r:?}");

    // CREATE with a special use (RFC 6154 5.3, CREATE-SPECIAL-USE).
    c.ok("CREATE Receipts (USE (\\Drafts))");
    let r = c.ok("LIST \"\" Receipts");
    let list = r.list("LIST");
    assert_eq!(list.len(), 1, "{r:?}");
    assert!(list[0].has("\\Drafts"), "{r:?}");
    let stored = folders(&server, ALICE);
    let receipts = stored
        .iter()
        .find(|f| f.name.as_str() == "Receipts")
        .expect("Receipts in the store");
    assert_eq!(receipts.special_use, Some(SpecialUse::Drafts));
    c.logout();
}

#[test]
fn create_list_lsub_rename_and_delete_a_hierarchy() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    c.ok("CREATE a/b/c");
    // The superior levels exist too (RFC 3501 6.3.3).
    let r = c.ok("LIST \"\" \"*\"");
    let list = r.list("LIST");
    for n in ["a", "a/b", "a/b/c"] {
        assert!(list.iter().any(|e| e.name == n), "{n} in {r:?}");
    }
    let entry = |list: &[ListEntry], n: &str| list.iter().find(|e| e.name == n).cloned().unwrap();
    assert!(entry(&list, "a").has("\\HasChildren"), "{r:?}");
    assert!(entry(&list, "a/b/c").has("\\HasNoChildren"), "{r:?}");

    // % does not cross the delimiter.
    let r = c.ok("LIST \"\" \"%\"");
    let top = names(&r.list("LIST"));
    assert!(top.contains("a") && top.contains("INBOX"), "{r:?}");
    assert!(!top.iter().any(|n| n.contains('/')), "{r:?}");
    let r = c.ok("LIST \"\" \"a/%\"");
    assert_eq!(names(&r.list("LIST")), set(&["a/b"]), "{r:?}");
    let r = c.ok("LIST \"a/\" \"%\"");
    assert_eq!(
        names(&r.list("LIST")),
        set(&["a/b"]),
        "reference + pattern: {r:?}"
    );

    // Subscriptions: the default folders are subscribed; a/b/c once SUBSCRIBEd.
    let r = c.ok("LSUB \"\" \"*\"");
    let subscribed = names(&r.list("LSUB"));
    for (n, _) in DEFAULT_FOLDERS {
        assert!(subscribed.contains(n), "{n} subscribed: {r:?}");
    }
    assert!(!subscribed.contains("a/b/c"), "{r:?}");
    c.ok("SUBSCRIBE a/b/c");
    let r = c.ok("LSUB \"\" \"*\"");
    assert!(names(&r.list("LSUB")).contains("a/b/c"), "{r:?}");
    assert!(
        folders(&server, ALICE)
            .iter()
            .any(|f| f.name.as_str() == "a/b/c" && f.subscribed),
        "the store keeps the subscription"
    );
    c.ok("UNSUBSCRIBE a/b/c");
    let r = c.ok("LSUB \"\" \"*\"");
    assert!(!names(&r.list("LSUB")).contains("a/b/c"), "{r:?}");

    // RENAME carries the messages along.
    let msg = message("Alice <alice@example.test>", "in a/b/c", "moved by rename");
    c.append_ok("a/b/c", "", &msg);
    c.ok("RENAME a/b/c x/y");
    let r = c.ok("LIST \"\" \"*\"");
    let all = names(&r.list("LIST"));
    assert!(all.contains("x/y") && !all.contains("a/b/c"), "{r:?}");
    assert_eq!(server.messages(ALICE, "x/y"), [msg]);
    assert!(server.messages(ALICE, "a/b/c").is_empty());
    let r = c.ok("SELECT x/y");
    assert_eq!(r.count("EXISTS"), Some(1), "{r:?}");
    c.ok("UNSELECT");

    // DELETE.
    c.ok("DELETE x/y");
    let r = c.ok("LIST \"\" \"*\"");
    assert!(!names(&r.list("LIST")).contains("x/y"), "{r:?}");
    assert!(
        !folders(&server, ALICE)
            .iter()
            .any(|f| f.name.as_str() == "x/y"),
        "deleted from the store"
    );

    // Errors with their RFC 5530 codes.
    let r = c.no("CREATE Archive");
    assert_eq!(r.code().as_deref(), Some("ALREADYEXISTS"), "{r:?}");
    let r = c.no("SELECT Nonexistent");
    assert_eq!(r.code().as_deref(), Some("NONEXISTENT"), "{r:?}");
    c.no("DELETE INBOX");
    c.no("DELETE Nonexistent");
    c.no("RENAME Nonexistent Other");
    c.no("RENAME Sent Archive");
    c.logout();
}

#[test]
fn rename_inbox_moves_the_messages_and_leaves_an_empty_inbox() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["rename 1", "rename 2"]));
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    c.ok("RENAME INBOX Old");
    assert_eq!(server.messages(ALICE, "Old"), stored);
    assert!(server.messages(ALICE, "INBOX").is_empty());
    let r = c.ok("LIST \"\" \"*\"");
    let all = names(&r.list("LIST"));
    assert!(all.contains("INBOX") && all.contains("Old"), "{r:?}");
    let r = c.ok("SELECT INBOX");
    assert_eq!(r.count("EXISTS"), Some(0), "{r:?}");
    let r = c.ok("SELECT Old");
    assert_eq!(r.count("EXISTS"), Some(2), "{r:?}");
    let f = c.fetch("1:2", "(BODY.PEEK[])");
    for (i, m) in stored.iter().enumerate() {
        assert_same(&fetch_of(&f, i as u32 + 1).bytes("BODY[]"), m, "in Old");
    }
    // New mail still goes to INBOX.
    let later = deliver(&server, ALICE, &samples(&["after rename"]));
    assert_eq!(later.len(), 1, "INBOX holds only the new message");
    assert_eq!(server.messages(ALICE, "Old"), stored);
    c.logout();
}

#[test]
fn status_reports_what_the_store_holds() {
    let server = start();
    deliver(
        &server,
        ALICE,
        &samples(&["status 1", "status 2", "status 3"]),
    );
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let items = "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)";
    let check = |c: &mut Imap, mailbox: &str, recent: u64, unseen: u64| {
        let store = status(&server, ALICE, mailbox);
        let r = c.ok(&format!("STATUS {mailbox} {items}"));
        let (name, got) = r.status_items();
        assert_eq!(name, mailbox, "{r:?}");
        let want: Vec<(String, u64)> = [
            ("MESSAGES", u64::from(store.messages)),
            ("RECENT", recent),
            ("UIDNEXT", u64::from(store.uid_next.get())),
            ("UIDVALIDITY", u64::from(store.uid_validity.get())),
            ("UNSEEN", unseen),
            ("HIGHESTMODSEQ", store.highest_modseq.0),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
        assert_eq!(got, want, "{r:?}");
    };
    check(&mut c, "INBOX", 3, 3);
    check(&mut c, "Archive", 0, 0);
    assert_eq!(status(&server, ALICE, "INBOX").messages, 3);

    // Another session reads one message and claims \Recent; the counts follow.
    let mut other = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    other.fetch("1", "(BODY[])");
    check(&mut c, "INBOX", 0, 2);
    other.logout();
    let r = c.no("STATUS Nonexistent (MESSAGES)");
    assert_eq!(r.code().as_deref(), Some("NONEXISTENT"), "{r:?}");
    c.logout();
}

#[test]
fn a_non_ascii_folder_name_round_trips_in_modified_utf7() {
    let server = start();
    // "Données/日本" in modified UTF-7 (RFC 3501 5.1.3): imaplib sends it as given.
    let encoded = "Donn&AOk-es/&ZeVnLA-";
    let msg = message("Alice <alice@example.test>", "non-ascii folder", "body");
    let run = ImapLib::new(&server, Service::Imap).file("m", &msg).run(&[
        &["login", "login", ALICE, ALICE_PW],
        &["create", "create", encoded],
        &["list", "list", "\"\"", "Donn*"],
        &["append", "append", encoded, "", "", "m"],
        &["select", "select", encoded],
        &["logout", "logout"],
    ]);
    run.assert_ok("create");
    run.assert_ok("list");
    let list = run.data("list");
    assert!(
        list.iter().any(|l| l.ends_with(&format!("\"/\" {encoded}"))
            || l.ends_with(&format!("\"/\" \"{encoded}\""))),
        "{}",
        run.output
    );
    run.assert_ok("append");
    run.assert_ok("select");
    assert_eq!(run.data("select"), ["1"], "{}", run.output);
    // The store has the decoded name; on disk it is the Maildir++ folder of both levels.
    let stored = folders(&server, ALICE);
    assert!(
        stored.iter().any(|f| f.name.as_str() == "Données/日本"),
        "{stored:?}"
    );
    assert_eq!(server.messages(ALICE, "Données/日本"), [msg]);
    let dir = server
        .data_dir()
        .join("accounts")
        .join(ALICE)
        .join(".Donn&AOk-es.&ZeVnLA-");
    assert!(dir.join("cur").is_dir(), "{dir:?}");
}

/// Every path below `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    paths_under(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

#[test]
fn mailbox_names_cannot_escape_the_account_directory() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    c.ok("LIST \"\" \"*\"");
    let data = server.data_dir().to_path_buf();
    let account_dir = data.join("accounts").join(ALICE);
    let outside = |t: &BTreeSet<PathBuf>| -> BTreeSet<PathBuf> {
        t.iter()
            .filter(|p| !data.join(p).starts_with(&account_dir))
            .cloned()
            .collect()
    };
    let before = tree(&data);
    let hostile = [
        "..",
        "../escape",
        "../../etc/passwd-ish",
        "a/../../b",
        "x/..",
        "./dot",
        ".hidden",
        "...",
        "a.b",
        "/abs",
        "trailing/",
        "back\\slash",
        "~root",
    ];
    let mut created = Vec::new();
    for name in hostile {
        let r = c.cmd(&format!("CREATE {}", quote(name)));
        match r.status().as_str() {
            "OK" => created.push(name),
            "NO" | "BAD" => {}
            other => panic!("CREATE {name:?}: {other} {r:?}"),
        }
    }
    let after = tree(&data);
    assert_eq!(
        outside(&before),
        outside(&after),
        "nothing changed outside the account directory"
    );
    // Inside it, every folder is a direct child whose name starts with `.` and is neither `.`
    // nor `..`; nothing nests deeper than folder/{cur,new,tmp}/file.
    for p in after.iter().map(|p| data.join(p)) {
        let Ok(rel) = p.strip_prefix(&account_dir) else {
            continue;
        };
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        assert!(parts.len() <= 3, "too deep: {rel:?}");
        for part in &parts {
            assert!(part != "." && part != ".." && !part.is_empty(), "{rel:?}");
        }
    }
    // What was created lists under the name given, and is usable.
    let r = c.ok("LIST \"\" \"*\"");
    let listed = names(&r.list("LIST"));
    for name in &created {
        // A trailing delimiter only declares the intent to create names below (RFC 3501
        // 6.3.3): `trailing/` creates `trailing`.
        let name = name.strip_suffix('/').unwrap_or(name);
        assert!(
            listed.contains(name),
            "{name:?} created but listed as {listed:?}"
        );
        c.append_ok(name, "", &message("A <a@example.test>", "hostile", "x"));
        assert_eq!(server.messages(ALICE, name).len(), 1, "{name}");
    }
    assert_eq!(outside(&before), outside(&tree(&data)));
    // The account's messages are all inside its directory.
    assert!(
        server
            .all_message_files()
            .iter()
            .all(|f| f.starts_with(&account_dir)),
        "{:?}",
        server.all_message_files()
    );
    // Renaming onto hostile names: the same.
    c.ok("CREATE plain");
    for name in ["../renamed", "../../renamed"] {
        let r = c.cmd(&format!("RENAME plain {}", quote(name)));
        if r.status() == "OK" {
            c.ok(&format!("RENAME {} plain", quote(name)));
        }
    }
    assert_eq!(outside(&before), outside(&tree(&data)));
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 9. Concurrent sessions: IDLE, expunges and flag changes seen by another session.

#[test]
fn idle_reports_new_mail_delivered_by_smtp() {
    let server = start();
    deliver(&server, ALICE, &samples(&["idle 1", "idle 2", "idle 3"]));
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let tag = c.tag();
    c.send(format!("{tag} IDLE\r\n").as_bytes());
    let go = c.response();
    assert!(go.text().starts_with("+ "), "IDLE continuation: {go:?}");
    assert_eq!(
        c.poll(Duration::from_millis(200)),
        "quiet",
        "nothing new yet"
    );

    let stored = deliver(&server, ALICE, &samples(&["idle 4"]));
    // Read until `* 4 EXISTS` arrives (each read bounded by the 10 s timeout).
    let seen = c.untagged_until("EXISTS");
    assert_eq!(seen.last().unwrap().text(), "* 4 EXISTS", "{seen:?}");
    c.send(b"DONE\r\n");
    let r = c.reply_to(&tag, "IDLE");
    assert_eq!(r.status(), "OK", "{r:?}");
    let f = c.fetch("4", "(BODY.PEEK[])");
    assert_same(&f[0].bytes("BODY[]"), &stored[3], "the new message");

    // A second IDLE sees an expunge by another session.
    let tag = c.tag();
    c.send(format!("{tag} IDLE\r\n").as_bytes());
    assert!(c.response().text().starts_with("+ "));
    let mut other = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    other.ok("EXPUNGE");
    let seen = c.untagged_until("EXPUNGE");
    assert_eq!(seen.last().unwrap().text(), "* 1 EXPUNGE", "{seen:?}");
    c.send(b"DONE\r\n");
    assert_eq!(c.reply_to(&tag, "IDLE").status(), "OK");
    other.logout();
    c.logout();
}

#[test]
fn expunges_and_flag_changes_reach_the_other_session_at_its_next_command() {
    let server = start();
    deliver(&server, ALICE, &samples(&["sync 1", "sync 2", "sync 3"]));
    let all = uids(&server, "INBOX");
    let mut a = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let mut b = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");

    // Flags set by a reach b as FETCH FLAGS at b's NOOP.
    a.ok("STORE 1 +FLAGS (\\Flagged)");
    a.ok("STORE 3 +FLAGS ($Forwarded)");
    let r = b.ok("NOOP");
    let f = r.fetches();
    assert_eq!(fetch_of(&f, 1).flags(), ["\\Flagged"], "{r:?}");
    assert_eq!(fetch_of(&f, 3).flags(), ["$Forwarded"], "{r:?}");
    assert!(
        f.iter().all(|f| f.seq != 2),
        "message 2 did not change: {r:?}"
    );

    // a expunges message 2; b hears of it at its NOOP, not before.
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)");
    let r = a.ok("EXPUNGE");
    assert_eq!(r.expunged(), [2]);
    let r = b.ok("NOOP");
    assert_eq!(r.expunged(), [2], "{r:?}");
    let f = b.fetch("1:*", "(UID FLAGS)");
    assert_eq!(
        f.iter().map(Fetch::uid).collect::<Vec<_>>(),
        [all[0], all[2]]
    );
    assert_eq!(fetch_of(&f, 2).flags(), ["$Forwarded"]);

    // New mail reaches b as EXISTS at its NOOP.
    deliver(&server, ALICE, &samples(&["sync 4"]));
    let r = b.ok("NOOP");
    assert_eq!(r.count("EXISTS"), Some(3), "{r:?}");
    let r = a.ok("NOOP");
    assert_eq!(r.count("EXISTS"), Some(3), "{r:?}");
    a.logout();
    b.logout();
}

// ---------------------------------------------------------------------------------------------
// 10. CONDSTORE.

#[test]
fn condstore_modseqs_changedsince_and_unchangedsince() {
    let server = start();
    deliver(
        &server,
        ALICE,
        &samples(&["modseq 1", "modseq 2", "modseq 3"]),
    );
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let r = c.ok("ENABLE CONDSTORE");
    let enabled = r.all("ENABLED");
    assert_eq!(enabled.len(), 1, "{r:?}");
    assert!(
        enabled[0].text().to_ascii_uppercase().contains("CONDSTORE"),
        "{r:?}"
    );
    let r = c.ok("SELECT INBOX");
    let highest: u64 = r
        .code_arg("HIGHESTMODSEQ")
        .unwrap_or_else(|| panic!("SELECT without HIGHESTMODSEQ: {r:?}"))
        .parse()
        .unwrap();
    assert_eq!(highest, status(&server, ALICE, "INBOX").highest_modseq.0);

    // FETCH MODSEQ: each message's as the store has it.
    let metas = server.metas(ALICE, "INBOX");
    let f = c.fetch("1:*", "(MODSEQ)");
    for (i, meta) in metas.iter().enumerate() {
        assert_eq!(fetch_of(&f, i as u32 + 1).number("MODSEQ"), meta.modseq.0);
    }
    assert_eq!(metas.iter().map(|m| m.modseq.0).max(), Some(highest));

    // A change gets a higher modseq, reported with the FETCH (RFC 7162 3.2).
    let f = c.ok("STORE 1 +FLAGS (\\Flagged)").fetches();
    let m1 = f[0].number("MODSEQ");
    assert!(m1 > highest, "{f:?}");
    assert_eq!(server.metas(ALICE, "INBOX")[0].modseq.0, m1);

    // CHANGEDSINCE: only what changed after `highest`, with its MODSEQ.
    let f = c.fetch("1:*", &format!("(FLAGS) (CHANGEDSINCE {highest})"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].seq, 1);
    assert_eq!(f[0].flags(), ["\\Flagged"]);
    assert_eq!(f[0].number("MODSEQ"), m1);
    assert!(
        c.fetch("1:*", &format!("(FLAGS) (CHANGEDSINCE {m1})"))
            .is_empty()
    );

    // UNCHANGEDSINCE: allowed while current, refused with [MODIFIED] once stale.
    let m2 = metas[1].modseq.0;
    let f = c
        .ok(&format!("STORE 2 (UNCHANGEDSINCE {m2}) +FLAGS (\\Seen)"))
        .fetches();
    assert_eq!(f[0].flags(), ["\\Seen"]);
    let r = c.ok(&format!(
        "STORE 2 (UNCHANGEDSINCE {m2}) +FLAGS (\\Answered)"
    ));
    assert_eq!(r.code().as_deref(), Some("MODIFIED 2"), "{r:?}");
    assert_eq!(stored_flags(&server, "INBOX")[1], ["\\Seen"]);

    // HIGHESTMODSEQ in STATUS from another session.
    let mut other = Imap::login_to(&server, ALICE, ALICE_PW);
    let r = other.ok("STATUS INBOX (HIGHESTMODSEQ)");
    let (_, items) = r.status_items();
    assert_eq!(
        items,
        [(
            "HIGHESTMODSEQ".to_owned(),
            status(&server, ALICE, "INBOX").highest_modseq.0
        )]
    );
    other.logout();
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 11. TLS.

#[test]
fn imaps_trusting_the_server_certificate() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["imaps"]));
    let run = ImapLib::new(&server, Service::Imaps).run(&[
        &["login", "login", ALICE, ALICE_PW],
        &["select", "select", "INBOX"],
        &["fetch", "fetch", "1", "(BODY.PEEK[])"],
        &["logout", "logout"],
    ]);
    assert!(run.out("cipher").starts_with("TLSv1."), "{}", run.output);
    let caps = run.capabilities("capabilities");
    assert!(
        !caps.iter().any(|w| w == "STARTTLS"),
        "no STARTTLS inside TLS: {caps:?}"
    );
    assert!(caps.iter().any(|w| w == "AUTH=PLAIN"), "{caps:?}");
    run.assert_ok("login");
    run.assert_ok("select");
    assert_same(&run.literal("fetch", 0).1, &stored[0], "over imaps");
}

#[test]
fn starttls_on_the_plain_port_then_login() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["starttls"]));
    let run = ImapLib::new(&server, Service::Imap).run(&[
        &["starttls", "starttls"],
        &["login", "login", ALICE, ALICE_PW],
        &["select", "select", "INBOX"],
        &["body", "fetch", "1", "(BODY.PEEK[])"],
        &["logout", "logout"],
    ]);
    assert!(
        run.capabilities("capabilities")
            .iter()
            .any(|w| w == "STARTTLS"),
        "{}",
        run.output
    );
    run.assert_ok("starttls");
    assert!(
        run.values("starttls", "cipher")
            .first()
            .is_some_and(|c| c.starts_with("TLSv1.")),
        "{}",
        run.output
    );
    assert!(
        !run.capabilities("starttls").iter().any(|w| w == "STARTTLS"),
        "STARTTLS not offered again: {}",
        run.output
    );
    run.assert_ok("login");
    assert_same(&run.literal("body", 0).1, &stored[0], "after STARTTLS");
}

#[test]
fn login_is_disabled_before_starttls_on_a_non_loopback_address() {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("NOTE: this machine has no non-loopback IPv4 address; LOGINDISABLED not tested");
        return;
    };
    let server = start_configured(|c| c.services.imap.listen = vec![SocketAddr::new(ip, 0)]);
    let addr = server.addr(Service::Imap);
    assert_eq!(addr.ip(), ip);
    let stored = deliver(&server, ALICE, &samples(&["after starttls"]));

    // Plaintext: LOGINDISABLED, no AUTH=, logins refused (RFC 3501 6.2.3; RFC 2595 3.2).
    let mut c = Imap::connect(addr);
    let before = capabilities(&mut c);
    assert!(before.iter().any(|w| w == "STARTTLS"), "{before:?}");
    assert!(before.iter().any(|w| w == "LOGINDISABLED"), "{before:?}");
    assert!(
        !before.iter().any(|w| w.starts_with("AUTH=")),
        "AUTH= offered before TLS: {before:?}"
    );
    let r = c.cmd(&format!("LOGIN {} {}", quote(ALICE), quote(ALICE_PW)));
    assert!(r.status() == "NO" || r.status() == "BAD", "{r:?}");
    let token = base64(format!("\0{ALICE}\0{ALICE_PW}").as_bytes());
    let r = c.cmd(&format!("AUTHENTICATE PLAIN {token}"));
    assert!(r.status() == "NO" || r.status() == "BAD", "{r:?}");
    let r = c.cmd("SELECT INBOX");
    assert!(r.status() != "OK", "not logged in: {r:?}");
    c.logout();

    // After STARTTLS: LOGIN works.
    let run = ImapLib::at(&server, addr).run(&[
        &["starttls", "starttls"],
        &["login", "login", ALICE, ALICE_PW],
        &["select", "select", "INBOX"],
        &["fetch", "fetch", "1", "(BODY.PEEK[])"],
        &["logout", "logout"],
    ]);
    run.assert_ok("starttls");
    let after = run.capabilities("starttls");
    assert!(!after.iter().any(|w| w == "LOGINDISABLED"), "{after:?}");
    assert!(after.iter().any(|w| w == "AUTH=PLAIN"), "{after:?}");
    run.assert_ok("login");
    assert_same(&run.literal("fetch", 0).1, &stored[0], "after STARTTLS");
}

// ---------------------------------------------------------------------------------------------
// 12. Bad input.

#[test]
fn unknown_and_malformed_commands_get_bad_and_the_session_goes_on() {
    let server = start();
    let mut c = Imap::connect_to(&server);
    c.bad("FROB");
    c.ok("NOOP");
    c.bad("LOGIN");
    c.ok("NOOP");
    c.login(ALICE, ALICE_PW);
    c.bad("FROB twice");
    c.bad("FETCH 1 (UID)");
    c.bad("SELECT");
    c.ok("SELECT INBOX");
    c.bad("FETCH x (UID)");
    c.bad("STORE 1 +FLAGS");
    c.ok("NOOP");
    // A line without a tag: untagged BAD.
    c.send(b"\r\n");
    c.send(b"NOTAG\r\n");
    let r = c.response();
    assert_eq!(r.status_word(), "BAD", "{r:?}");
    c.ok("NOOP");
    c.logout();
}

#[test]
fn a_100_kb_line_gets_bad_and_the_session_goes_on() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let tag = c.tag();
    c.send(format!("{tag} NOOP {}\r\n", "x".repeat(100 * 1024)).as_bytes());
    let r = c.response();
    assert_eq!(r.status_word(), "BAD", "{r:?}");
    assert!(r.tag() == tag || r.tag() == "*", "{r:?}");
    c.ok("NOOP");
    c.ok("SELECT INBOX");
    c.logout();
}

#[test]
fn synchronizing_and_non_synchronizing_literals() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["literals"]));
    let mut c = Imap::connect_to(&server);
    // `{n}`: the server asks for the octets with a continuation request.
    let tag = c.tag();
    c.send(format!("{tag} LOGIN {{{}}}\r\n", ALICE.len()).as_bytes());
    let go = c.response();
    assert!(go.text().starts_with("+"), "{go:?}");
    c.send(format!("{ALICE} {{{}}}\r\n", ALICE_PW.len()).as_bytes());
    let go = c.response();
    assert!(go.text().starts_with("+"), "{go:?}");
    c.send(format!("{ALICE_PW}\r\n").as_bytes());
    assert_eq!(c.reply_to(&tag, "LOGIN").status(), "OK");
    // `{n+}` (LITERAL+, RFC 7888): no continuation request; the reply comes at once.
    let tag = c.tag();
    c.send(format!("{tag} SELECT {{5+}}\r\nINBOX\r\n").as_bytes());
    let r = c.reply_to(&tag, "SELECT {5+}");
    assert_eq!(r.status(), "OK", "{r:?}");
    assert_eq!(r.count("EXISTS"), Some(1), "{r:?}");
    // An APPEND through LITERAL+.
    let msg = message("A <a@example.test>", "literal plus", "appended");
    let tag = c.tag();
    c.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes());
    c.send(&msg);
    c.send(b"\r\n");
    let r = c.reply_to(&tag, "APPEND {n+}");
    assert_eq!(r.status(), "OK", "{r:?}");
    assert_eq!(server.messages(ALICE, "INBOX"), [stored[0].clone(), msg]);
    c.logout();
}

#[test]
fn a_literal_in_a_fetch_section_comes_back_as_a_plain_field_name() {
    let server = start();
    deliver(&server, ALICE, &samples(&["literals"]));
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    // A header field name sent as a LITERAL+ literal (an astring may be one).
    let tag = c.tag();
    c.send(format!("{tag} FETCH 1 (BODY.PEEK[HEADER.FIELDS ({{7+}}\r\nSUBJECT)])\r\n").as_bytes());
    let r = c.reply_to(&tag, "FETCH with a literal");
    assert_eq!(r.status(), "OK", "{r:?}");
    // The response names the section in plain form; a non-synchronizing literal is never
    // allowed from server to client (RFC 9051 9, `literal`; RFC 7888 is client-to-server).
    assert!(
        !r.untagged.iter().any(|u| u.text().contains("+}")),
        "a LITERAL+ literal in a server response: {r:?}"
    );
    assert_same(
        &r.fetches()[0].bytes("BODY[HEADER.FIELDS (SUBJECT)]"),
        b"Subject: literals\r\n\r\n",
        "fetched header field",
    );
    c.logout();
}

#[test]
fn a_literal_over_the_limit_gets_no_toobig_without_a_continuation() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let limit = assert_capabilities(&capabilities(&mut c));
    // APPEND one octet over APPENDLIMIT (RFC 7889): refused before the octets are sent.
    let tag = c.tag();
    c.send(format!("{tag} APPEND INBOX {{{}}}\r\n", limit + 1).as_bytes());
    let r = c.reply_to(&tag, "APPEND over APPENDLIMIT");
    assert_eq!(r.status(), "NO", "{r:?}");
    assert_eq!(r.code().as_deref(), Some("TOOBIG"), "{r:?}");
    c.ok("NOOP");
    // A literal of 1 GB in an ordinary command: the same.
    let tag = c.tag();
    c.send(format!("{tag} SELECT {{1000000000}}\r\n").as_bytes());
    let r = c.reply_to(&tag, "SELECT with a 1 GB literal");
    assert_eq!(r.status(), "NO", "{r:?}");
    assert_eq!(r.code().as_deref(), Some("TOOBIG"), "{r:?}");
    c.ok("NOOP");
    c.ok("SELECT INBOX");
    assert!(server.messages(ALICE, "INBOX").is_empty());
    c.logout();
}

#[test]
fn ten_megabytes_without_a_line_end_close_the_connection_and_the_server_goes_on() {
    let server = start();
    let mut c = Imap::login_to(&server, ALICE, ALICE_PW);
    let text = c.flood_until_closed(10 * 1024 * 1024).said;
    assert!(
        text.is_empty() || text.contains("BYE") || text.contains("BAD"),
        "{text:?}"
    );
    // The server still serves.
    let mut c = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    c.ok("NOOP");
    c.logout();
}

// ---------------------------------------------------------------------------------------------
// 13. POP3 and IMAP on the same mailbox.

#[test]
fn a_pop3_delete_is_an_expunge_for_an_imap_session() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["shared 1", "shared 2"]));
    let all = uids(&server, "INBOX");
    let mut imap = Imap::select_in(&server, ALICE, ALICE_PW, "INBOX");
    let mut pop = Pop3::login_to(&server, ALICE, ALICE_PW);
    pop.ok("DELE 1");
    pop.quit();
    assert_eq!(server.messages(ALICE, "INBOX"), [stored[1].clone()]);
    let r = imap.ok("NOOP");
    assert_eq!(r.expunged(), [1], "{r:?}");
    let f = imap.fetch("1:*", "(UID BODY.PEEK[])");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].uid(), all[1]);
    assert_same(&f[0].bytes("BODY[]"), &stored[1], "what is left");
    imap.logout();
}

#[test]
fn another_account_sees_nothing_of_alice() {
    let server = start();
    deliver(&server, ALICE, &samples(&["private"]));
    let mut c = Imap::login_to(&server, BOB, BOB_PW);
    let r = c.ok("SELECT INBOX");
    assert_eq!(r.count("EXISTS"), Some(0), "{r:?}");
    let r = c.ok("LIST \"\" \"*\"");
    assert!(!r.lines().iter().any(|l| l.contains("alice")), "{r:?}");
    c.logout();
}
