//! The real wasmail server (in-process, real sockets, temp data dir) driven by real POP3
//! clients: Python's `poplib` for what mail clients do, and a raw `TcpStream` for byte-exact
//! dialogues (pipelining, bad input, locking). Mail arrives through the real SMTP service;
//! every assertion is on what came back over the wire or what the store holds. The clients and
//! checks are in `wasmail_e2e::pop3`.
//!
//! No client socket can hang a test: the raw client has 10 s read/write timeouts and Python's
//! `poplib` gets `timeout=10`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmail::Service;
use wasmail::config::{Pop3Expire, TimeSpan};
use wasmail_e2e::pop3::{
    Pop3, PopLib, big_message, deliver, login_when_free, sizes, top_of, unstuff,
};
use wasmail_e2e::python;
use wasmail_e2e::server::{HOSTNAME, TestServer, without_trace};
use wasmail_e2e::smtp::{
    ALICE, ALICE_PW, BOB, assert_same, base64, non_loopback_ipv4, sample_message, start,
    start_configured,
};
use wasmail_types::mail::SystemFlag;

/// Bob's password, as `wasmail_e2e::smtp::with_users` sets it.
const BOB_PW: &str = "bob-Secret-pw2";

/// Sample messages with these subjects (each needs dot-stuffing on the wire).
fn samples(subjects: &[&str]) -> Vec<Vec<u8>> {
    subjects.iter().map(|s| sample_message(s)).collect()
}

/// Checks that `got` are the stored messages, byte for byte, and that those are what was sent
/// once the trace fields are stripped.
fn assert_retrieved(got: &[Vec<u8>], stored: &[Vec<u8>], sent: &[Vec<u8>]) {
    assert_eq!(got.len(), stored.len(), "messages retrieved");
    for (i, ((g, s), m)) in got.iter().zip(stored).zip(sent).enumerate() {
        assert_same(g, s, &format!("message {} as retrieved", i + 1));
        assert_same(without_trace(s), m, &format!("message {} as stored", i + 1));
    }
}

/// Whether each message of alice's INBOX is `\Seen`, as the store says.
fn seen(server: &TestServer) -> Vec<bool> {
    server
        .metas(ALICE, "INBOX")
        .iter()
        .map(|m| m.flags.contains(SystemFlag::Seen))
        .collect()
}

/// The `+OK` CAPA list as lines.
fn capa(c: &mut Pop3) -> Vec<String> {
    let (_, body) = c.multi("CAPA");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

// ---------------------------------------------------------------------------------------------
// Python poplib.

#[test]
fn poplib_user_pass_retrieves_byte_exact() {
    let server = start();
    let sent = samples(&["poplib one", "poplib two"]);
    let stored = deliver(&server, ALICE, &sent);
    let run = PopLib::new(&server, Service::Pop3, ALICE, ALICE_PW)
        .run(&["stat", "list", "uidl", "retr:1", "retr:2", "quit"]);
    assert!(
        run.out("welcome").starts_with(&format!("+OK {HOSTNAME} ")),
        "{}",
        run.output
    );
    assert!(run.out("login").starts_with("+OK"), "{}", run.output);
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(run.out("stat"), format!("2 {total}"));
    let list: Vec<String> = sizes(&stored)
        .iter()
        .map(|(n, s)| format!("{n} {s}"))
        .collect();
    assert_eq!(run.out("list"), list.join(","));
    assert_eq!(run.out("uidl").split(',').count(), 2, "{}", run.output);
    let got = [run.retrieved("retr-1"), run.retrieved("retr-2")];
    assert_retrieved(&got, &stored, &sent);
    assert!(run.out("quit").starts_with("+OK"), "{}", run.output);
    // Left on the server (no DELE), now seen.
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
    assert_eq!(seen(&server), [true, true]);
}

#[test]
fn poplib_pop3s_trusting_the_server_certificate() {
    let server = start();
    let sent = samples(&["pop3s"]);
    let stored = deliver(&server, ALICE, &sent);
    let run =
        PopLib::new(&server, Service::Pop3s, ALICE, ALICE_PW).run(&["list", "retr:1", "quit"]);
    assert!(run.out("cipher").starts_with("TLSv1."), "{}", run.output);
    let capa = run.capa("capa");
    assert!(
        !capa.iter().any(|w| w == "STLS"),
        "no STLS inside TLS: {capa:?}"
    );
    assert!(capa.iter().any(|w| w == "USER"), "{capa:?}");
    assert!(run.out("login").starts_with("+OK"), "{}", run.output);
    assert_retrieved(&[run.retrieved("retr-1")], &stored, &sent);
}

#[test]
fn poplib_stls_on_pop3() {
    let server = start();
    let sent = samples(&["stls"]);
    let stored = deliver(&server, ALICE, &sent);
    let mut pop = PopLib::new(&server, Service::Pop3, ALICE, ALICE_PW);
    pop.mode = "stls";
    let run = pop.run(&["retr:1", "quit"]);
    assert!(
        run.capa("capa-before").iter().any(|w| w == "STLS"),
        "{}",
        run.output
    );
    assert!(run.out("stls").starts_with("+OK"), "{}", run.output);
    assert!(run.out("cipher").starts_with("TLSv1."), "{}", run.output);
    assert!(
        !run.capa("capa").iter().any(|w| w == "STLS"),
        "STLS not offered again: {}",
        run.output
    );
    assert!(run.out("login").starts_with("+OK"), "{}", run.output);
    assert_retrieved(&[run.retrieved("retr-1")], &stored, &sent);
}

#[test]
fn poplib_auth_plain_and_login_as_raw_commands() {
    let server = start();
    let sent = samples(&["sasl"]);
    let stored = deliver(&server, ALICE, &sent);
    for mech in ["PLAIN", "LOGIN"] {
        let mut pop = PopLib::new(&server, Service::Pop3, ALICE, ALICE_PW);
        pop.auth = mech;
        let run = pop.run(&["retr:1", "quit"]);
        let capa = run.capa("capa");
        assert!(
            capa.windows(3).any(|w| w == ["SASL", "LOGIN", "PLAIN"])
                || capa.windows(3).any(|w| w == ["SASL", "PLAIN", "LOGIN"]),
            "{capa:?}"
        );
        if mech == "LOGIN" {
            let challenges: Vec<&str> = run
                .output
                .lines()
                .filter_map(|l| l.strip_prefix("challenge "))
                .collect();
            assert_eq!(challenges.len(), 2, "{}", run.output);
            assert!(
                challenges.iter().all(|c| c.starts_with("+ ")),
                "{challenges:?}"
            );
        }
        assert!(
            run.out("login").starts_with("+OK"),
            "{mech}: {}",
            run.output
        );
        assert_retrieved(&[run.retrieved("retr-1")], &stored, &sent);
        assert!(run.out("quit").starts_with("+OK"), "{}", run.output);
    }
    // A wrong password through AUTH PLAIN: [AUTH].
    let mut pop = PopLib::new(&server, Service::Pop3, ALICE, "wrong");
    pop.auth = "PLAIN";
    let run = pop.run(&[]);
    assert!(
        run.out("error").starts_with("-ERR [AUTH] "),
        "{}",
        run.output
    );
}

#[test]
fn poplib_retrieves_a_ten_megabyte_message() {
    let server = start();
    let sent = vec![big_message("ten megabytes, poplib", 10 * 1024 * 1024)];
    let stored = deliver(&server, ALICE, &sent);
    let run = PopLib::new(&server, Service::Pop3, ALICE, ALICE_PW).run(&["retr:1", "quit"]);
    assert_retrieved(&[run.retrieved("retr-1")], &stored, &sent);
}

// ---------------------------------------------------------------------------------------------
// AUTHORIZATION: greeting, CAPA, logins.

#[test]
fn capa_lists_what_the_state_and_connection_allow() {
    let server = start();
    let mut c = Pop3::connect_to(&server);
    let before = capa(&mut c);
    for want in [
        "TOP",
        "USER",
        "UIDL",
        "RESP-CODES",
        "PIPELINING",
        "AUTH-RESP-CODE",
        "STLS",
        "EXPIRE NEVER",
        "IMPLEMENTATION wasmail",
    ] {
        assert!(has(&before, want), "{want}: {before:?}");
    }
    assert!(
        before.iter().any(|l| l.starts_with("SASL ")
            && l.split(' ').any(|w| w == "PLAIN")
            && l.split(' ').any(|w| w == "LOGIN")),
        "{before:?}"
    );
    assert!(
        !before.iter().any(|l| l.starts_with("LOGIN-DELAY")),
        "{before:?}"
    );
    c.login(ALICE, ALICE_PW);
    let after = capa(&mut c);
    for want in ["TOP", "UIDL", "PIPELINING"] {
        assert!(has(&after, want), "{want}: {after:?}");
    }
    c.err("STLS");
    c.quit();

    // On pop3s: no STLS (poplib over implicit TLS).
    let run = PopLib::new(&server, Service::Pop3s, ALICE, ALICE_PW).run(&["capa", "quit"]);
    assert!(
        !run.capa("capa").iter().any(|w| w == "STLS"),
        "{}",
        run.output
    );
}

#[test]
fn auth_variants_as_raw_commands() {
    let server = start();
    deliver(&server, ALICE, &samples(&["auth"]));
    let token = base64(format!("\0{ALICE}\0{ALICE_PW}").as_bytes());

    // AUTH without a mechanism lists them.
    let mut c = Pop3::connect_to(&server);
    let (_, body) = c.multi("AUTH");
    let mechs = String::from_utf8(body).unwrap();
    assert!(mechs.lines().any(|l| l == "PLAIN"), "{mechs:?}");
    assert!(mechs.lines().any(|l| l == "LOGIN"), "{mechs:?}");
    // PLAIN without an initial response: an empty challenge, then the token.
    assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
    assert!(c.cmd(&token).starts_with("+OK"));
    c.quit();

    // Cancelled exchange, then a wrong authorization identity, then PLAIN with the token.
    let mut c = Pop3::connect_to(&server);
    assert!(c.cmd("AUTH LOGIN").starts_with("+ "));
    c.err("*");
    let other = base64(format!("{BOB}\0{ALICE}\0{ALICE_PW}").as_bytes());
    c.expect(&format!("AUTH PLAIN {other}"), "-ERR [AUTH] ");
    c.expect("AUTH CRAM-MD5", "-ERR");
    assert!(c.cmd(&format!("AUTH PLAIN {token}")).starts_with("+OK"));
    assert_eq!(c.list().len(), 1);
    c.quit();
}

#[test]
fn wrong_password_gets_err_auth_and_the_session_goes_on() {
    let server = start();
    deliver(&server, ALICE, &samples(&["wrong password"]));
    let mut c = Pop3::connect_to(&server);
    c.ok(&format!("USER {ALICE}"));
    let wrong = c.expect("PASS not-the-password", "-ERR [AUTH] ");
    // USER must be sent again after a failed login.
    c.err(&format!("PASS {ALICE_PW}"));
    // An unknown account gets the same answer as a wrong password.
    c.ok("USER nobody@example.test");
    let unknown = c.expect("PASS whatever", "-ERR [AUTH] ");
    assert_eq!(wrong, unknown, "no account enumeration");
    let r = c.login(ALICE, ALICE_PW);
    assert!(r.starts_with("+OK"), "{r}");
    c.ok("STAT");
    c.quit();
}

#[test]
fn plaintext_login_is_refused_before_stls_on_a_non_loopback_address() {
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!(
            "NOTE: this machine has no non-loopback IPv4 address; plaintext refusal not tested"
        );
        return;
    };
    let server = start_configured(|c| c.services.pop3.listen = vec![SocketAddr::new(ip, 0)]);
    let addr = server.addr(Service::Pop3);
    assert_eq!(addr.ip(), ip);
    let sent = samples(&["after stls"]);
    let stored = deliver(&server, ALICE, &sent);

    let mut c = Pop3::connect(addr);
    let before = capa(&mut c);
    assert!(has(&before, "STLS"), "{before:?}");
    assert!(!has(&before, "USER"), "USER offered before TLS: {before:?}");
    assert!(
        !before.iter().any(|l| l.starts_with("SASL")),
        "SASL offered before TLS: {before:?}"
    );
    let r = c.cmd(&format!("USER {ALICE}"));
    let r = if r.starts_with("+OK") {
        c.cmd(&format!("PASS {ALICE_PW}"))
    } else {
        r
    };
    assert!(r.starts_with("-ERR [AUTH] "), "{r:?}");
    assert!(r.contains("TLS"), "says why: {r:?}");
    let token = base64(format!("\0{ALICE}\0{ALICE_PW}").as_bytes());
    c.expect(&format!("AUTH PLAIN {token}"), "-ERR [AUTH] ");
    c.err("STAT");
    c.quit();

    // After STLS: USER offered, and the login works.
    let mut pop = PopLib::new(&server, Service::Pop3, ALICE, ALICE_PW);
    pop.mode = "stls";
    let run = pop.run(&["retr:1", "quit"]);
    assert!(
        !run.capa("capa-before").iter().any(|w| w == "USER"),
        "{}",
        run.output
    );
    assert!(
        run.capa("capa").iter().any(|w| w == "USER"),
        "{}",
        run.output
    );
    assert!(run.out("login").starts_with("+OK"), "{}", run.output);
    assert_retrieved(&[run.retrieved("retr-1")], &stored, &sent);
}

#[test]
fn login_delay_refuses_a_second_login_too_soon() {
    let server = start_configured(|c| c.pop3.login_delay = TimeSpan::from_secs(2));
    let mut c = Pop3::connect_to(&server);
    assert!(has(&capa(&mut c), "LOGIN-DELAY 2"));
    c.login(ALICE, ALICE_PW);
    // The server noted the login before it answered: 2 s from here are 2 s from there.
    let first = Instant::now();
    c.quit();

    let mut c = Pop3::connect_to(&server);
    c.ok(&format!("USER {ALICE}"));
    c.expect(&format!("PASS {ALICE_PW}"), "-ERR [LOGIN-DELAY] ");
    // Another account is not delayed.
    Pop3::login_to(&server, BOB, BOB_PW).quit();
    // The session goes on; once the delay has passed the login works.
    std::thread::sleep(
        Duration::from_secs(2).saturating_sub(first.elapsed()) + Duration::from_millis(200),
    );
    c.login(ALICE, ALICE_PW);
    c.quit();
}

// ---------------------------------------------------------------------------------------------
// TRANSACTION: LIST, TOP, UIDL, RETR.

#[test]
fn list_sizes_are_the_octets_retr_sends_and_top_returns_n_lines() {
    let server = start();
    let sent = samples(&["sizes one", "sizes two"]);
    let stored = deliver(&server, ALICE, &sent);
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    let total: usize = stored.iter().map(Vec::len).sum();
    assert_eq!(c.ok("STAT"), format!("+OK 2 {total}"));
    assert_eq!(c.list(), sizes(&stored));
    assert_eq!(c.ok("LIST 2"), format!("+OK 2 {}", stored[1].len()));
    for (n, m) in stored.iter().enumerate() {
        let got = c.retr(n + 1);
        assert_same(&got, m, &format!("RETR {}", n + 1));
    }
    // The sample body: "first line", ".starts with a dot", "..starts with two dots", ".", ...
    for lines in [0, 1, 2, 3, 4, 7, 100] {
        let (status, got) = c.multi(&format!("TOP 1 {lines}"));
        assert!(status.starts_with("+OK"), "{status}");
        assert_same(&got, &top_of(&stored[0], lines), &format!("TOP 1 {lines}"));
    }
    assert_same(&c.multi("TOP 2 100").1, &stored[1], "TOP beyond the end");
    c.quit();
}

#[test]
fn uidl_is_stable_across_sessions_deletes_and_a_restart() {
    let server = start();
    deliver(&server, ALICE, &samples(&["uidl a", "uidl b", "uidl c"]));
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    let first = c.uidl();
    assert_eq!(first.len(), 3);
    for (n, id) in &first {
        assert!(
            (1..=70).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "RFC 1939 7: {id:?}"
        );
        assert_eq!(c.ok(&format!("UIDL {n}")), format!("+OK {n} {id}"));
    }
    let mut ids: Vec<&String> = first.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "unique: {first:?}");
    c.quit();

    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    assert_eq!(c.uidl(), first, "second session");
    c.ok("DELE 1");
    // A deleted message is not listed (RFC 1939 7).
    assert_eq!(c.uidl(), first[1..]);
    c.quit();

    // Renumbered, same ids.
    let renumbered: Vec<(usize, String)> = first[1..]
        .iter()
        .enumerate()
        .map(|(i, (_, id))| (i + 1, id.clone()))
        .collect();
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    assert_eq!(c.uidl(), renumbered, "after a delete");
    c.quit();

    let server = server.restart_with(|_| {});
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    assert_eq!(c.uidl(), renumbered, "after a restart");
    c.quit();
    // New mail after the restart gets a new id: none is reused.
    deliver(&server, ALICE, &samples(&["uidl d"]));
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    let now = c.uidl();
    assert_eq!(now[..2], renumbered[..]);
    assert!(
        !first.iter().any(|(_, id)| *id == now[2].1),
        "{now:?} vs {first:?}"
    );
    c.quit();
}

#[test]
fn retr_marks_seen_and_top_does_not() {
    let server = start();
    deliver(&server, ALICE, &samples(&["seen one", "seen two"]));
    assert_eq!(seen(&server), [false, false]);
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.multi("TOP 2 5");
    c.retr(1);
    // Already in the store while the session is open.
    assert_eq!(seen(&server), [true, false]);
    c.quit();
    assert_eq!(seen(&server), [true, false]);
}

// ---------------------------------------------------------------------------------------------
// DELE, RSET, QUIT and the UPDATE state.

#[test]
fn dele_then_rset_keeps_and_dele_then_quit_removes() {
    let server = start();
    let sent = samples(&["dele a", "dele b", "dele c"]);
    let stored = deliver(&server, ALICE, &sent);
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.ok("DELE 2");
    let without_2 = stored[0].len() + stored[2].len();
    assert_eq!(c.ok("STAT"), format!("+OK 2 {without_2}"));
    assert_eq!(
        c.list(),
        [(1, stored[0].len() as u64), (3, stored[2].len() as u64)]
    );
    c.err("RETR 2");
    c.ok("RSET");
    assert_eq!(c.list(), sizes(&stored));
    c.quit();
    assert_eq!(server.messages(ALICE, "INBOX"), stored, "RSET kept all");

    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.ok("DELE 1");
    c.ok("DELE 3");
    // Not removed before QUIT.
    assert_eq!(server.messages(ALICE, "INBOX").len(), 3);
    c.quit();
    assert_eq!(server.messages(ALICE, "INBOX"), [stored[1].clone()]);
    assert_eq!(server.message_files(ALICE).len(), 1);

    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    assert_eq!(c.list(), [(1, stored[1].len() as u64)]);
    assert_same(&c.retr(1), &stored[1], "the one left");
    c.quit();
}

#[test]
fn a_connection_dropped_without_quit_removes_nothing() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["drop a", "drop b"]));
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.retr(1);
    c.ok("DELE 1");
    c.ok("DELE 2");
    c.stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(c);
    let mut c = login_when_free(&server, ALICE, ALICE_PW);
    assert_eq!(c.list(), sizes(&stored));
    c.quit();
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

#[test]
fn expire_zero_removes_retrieved_mail_at_quit() {
    let server = start_configured(|c| c.pop3.expire = Pop3Expire::Days(0));
    let stored = deliver(
        &server,
        ALICE,
        &samples(&["expire a", "expire b", "expire c"]),
    );
    let mut c = Pop3::connect_to(&server);
    assert!(has(&capa(&mut c), "EXPIRE 0"));
    c.login(ALICE, ALICE_PW);
    c.retr(1);
    c.multi("TOP 2 1");
    c.quit();
    assert_eq!(
        server.messages(ALICE, "INBOX"),
        stored[1..],
        "RETR'd mail expired"
    );

    // Retrieved, but the connection dropped without QUIT: nothing removed.
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.retr(1);
    c.stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(c);
    login_when_free(&server, ALICE, ALICE_PW).quit();
    assert_eq!(server.messages(ALICE, "INBOX"), stored[1..]);
}

// ---------------------------------------------------------------------------------------------
// The maildrop lock.

#[test]
fn a_second_login_is_in_use_while_the_first_session_is_open() {
    let server = start();
    let sent = samples(&["lock one", "lock two"]);
    let first = deliver(&server, ALICE, &sent[..1]);
    let mut a = Pop3::login_to(&server, ALICE, ALICE_PW);
    assert_eq!(a.list(), sizes(&first));

    // A second POP3 login to the account: [IN-USE]; its session goes on.
    let mut b = Pop3::connect_to(&server);
    b.ok(&format!("USER {ALICE}"));
    b.expect(&format!("PASS {ALICE_PW}"), "-ERR [IN-USE] ");
    b.ok("CAPA");
    b.body();
    // Another account is not locked.
    Pop3::login_to(&server, BOB, BOB_PW).quit();

    // SMTP delivers to the locked account; the open session's listing does not change.
    let both = deliver(&server, ALICE, &sent[1..]);
    assert_eq!(both.len(), 2);
    assert_eq!(a.list(), sizes(&first));
    assert_eq!(a.ok("STAT"), format!("+OK 1 {}", first[0].len()));
    a.err("RETR 2");
    a.quit();

    // Free again at once after QUIT; the next session lists the new mail.
    b.login(ALICE, ALICE_PW);
    assert_eq!(b.list(), sizes(&both));
    assert_same(&b.retr(2), &both[1], "the mail delivered while locked");
    b.quit();
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[test]
fn bad_commands_get_err_with_text_and_the_session_goes_on() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["bad a", "bad b"]));
    // AUTHORIZATION: wrong state, PASS without USER, unknown, bad arguments.
    let mut c = Pop3::connect_to(&server);
    for line in ["STAT", "RETR 1", "PASS x", "FROB", "USER", "NOOP"] {
        c.err(line);
    }
    c.quit();

    // TRANSACTION: unknown command, argument counts, message numbers (9 errors: one short of
    // the limit of 10).
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    for line in [
        "FROB",
        "RETR",
        "RETR 1 2",
        "TOP 1",
        "LIST 0",
        "RETR 3",
        "DELE 99999999999999999999999",
        "RETR abc",
    ] {
        c.err(line);
        c.ok("NOOP");
    }
    c.ok("DELE 1");
    let r = c.err("DELE 1");
    assert!(r.contains("deleted"), "{r:?}");
    c.ok("NOOP");
    c.ok("RSET");
    c.quit();

    // More: already deleted, and commands of the wrong state.
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.ok("DELE 2");
    for line in [
        "RETR 2",
        "TOP 2 0",
        "LIST 2",
        "UIDL 2",
        "USER alice",
        "PASS x",
        "STLS",
        "AUTH PLAIN",
    ] {
        c.err(line);
        c.ok("NOOP");
    }
    assert_eq!(c.list(), [(1, stored[0].len() as u64)]);
    c.ok("RSET");
    c.quit();
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

/// Sends `lines` in turn (each after the previous answer) until the server closes; returns how
/// many `-ERR` answers came before the closing `-ERR [SYS/PERM]`.
fn errors_until_closed(c: &mut Pop3, lines: &[String]) -> usize {
    let mut errors = 0;
    for line in lines {
        c.send(format!("{line}\r\n").as_bytes());
        loop {
            let r = c.line();
            if r.starts_with("-ERR [SYS/PERM]") {
                let (rest, how) = c.read_until_closed();
                assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
                assert_eq!(how, "closed", "closed after {r:?}");
                return errors;
            }
            if r.starts_with("-ERR ") {
                errors += 1;
            } else {
                assert!(r.starts_with("+OK"), "{line}: {r:?}");
            }
            // The answer to the error may be followed by the closing line.
            match c.poll(Duration::from_millis(200)) {
                "data" => continue,
                "closed" => panic!("closed without -ERR [SYS/PERM] after {errors} errors"),
                _ => break,
            }
        }
    }
    panic!("still open after {errors} errors");
}

#[test]
fn too_many_bad_commands_end_the_session() {
    let server = start();
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    let frobs = vec!["FROB".to_owned(); 20];
    let errors = errors_until_closed(&mut c, &frobs);
    assert!((2..=10).contains(&errors), "closed after {errors} errors");

    // Failed logins count too.
    let mut c = Pop3::connect_to(&server);
    let logins: Vec<String> = (0..20)
        .flat_map(|_| [format!("USER {ALICE}"), "PASS wrong".to_owned()])
        .collect();
    let errors = errors_until_closed(&mut c, &logins);
    assert!(
        (2..=10).contains(&errors),
        "closed after {errors} failed logins"
    );
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["pipe a", "pipe b"]));
    let mut c = Pop3::connect_to(&server);
    c.send(
        format!(
            "CAPA\r\nUSER {ALICE}\r\nPASS {ALICE_PW}\r\nSTAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\n\
             TOP 2 0\r\nDELE 2\r\nFROB\r\nSTAT\r\nRETR 2\r\nRSET\r\nLIST 2\r\nQUIT\r\n"
        )
        .as_bytes(),
    );
    assert!(c.line().starts_with("+OK"));
    let capa = String::from_utf8(c.body()).unwrap();
    assert!(capa.lines().any(|l| l == "PIPELINING"), "{capa}");
    assert!(c.line().starts_with("+OK"), "USER");
    assert!(c.line().starts_with("+OK"), "PASS");
    let total = stored[0].len() + stored[1].len();
    assert_eq!(c.line(), format!("+OK 2 {total}"));
    assert!(c.line().starts_with("+OK"));
    let list: Vec<u8> = sizes(&stored)
        .iter()
        .flat_map(|(n, s)| format!("{n} {s}\r\n").into_bytes())
        .collect();
    assert_eq!(c.body(), list);
    assert!(c.line().starts_with("+OK 1 "), "UIDL 1");
    assert_eq!(c.line(), format!("+OK {} octets", stored[0].len()));
    assert_same(&unstuff(&c.body()), &stored[0], "RETR 1");
    assert!(c.line().starts_with("+OK"), "TOP");
    assert_same(&unstuff(&c.body()), &top_of(&stored[1], 0), "TOP 2 0");
    assert!(c.line().starts_with("+OK"), "DELE");
    assert!(c.line().starts_with("-ERR "), "FROB");
    assert_eq!(c.line(), format!("+OK 1 {}", stored[0].len()));
    assert!(c.line().starts_with("-ERR "), "RETR 2 deleted");
    assert!(c.line().starts_with("+OK"), "RSET");
    assert_eq!(c.line(), format!("+OK 2 {}", stored[1].len()));
    assert!(c.line().starts_with("+OK"), "QUIT");
    let (rest, how) = c.read_until_closed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert_eq!(how, "closed");
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

// ---------------------------------------------------------------------------------------------
// Size.

#[test]
fn a_ten_megabyte_message_is_retrieved_intact() {
    let server = start();
    let sent = vec![big_message("ten megabytes", 10 * 1024 * 1024)];
    let stored = deliver(&server, ALICE, &sent);
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    assert_eq!(c.list(), sizes(&stored));
    let got = c.retr(1);
    assert_retrieved(&[got], &stored, &sent);
    c.quit();
}

/// POP3's CVE-2011-0411 check: a login pipelined after STLS in plaintext is discarded, not run
/// inside TLS (RFC 2595 4: the client must discard cached information, and so must the server).
const PY_STLS_INJECTION: &str = r#"
import socket, ssl, sys
port, cert, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def line(sock):
    data = b''
    while not data.endswith(b'\r\n'):
        chunk = sock.recv(1)
        if not chunk:
            return data.decode() + '<closed>'
        data += chunk
    return data.decode().rstrip('\r\n')
sock = socket.create_connection(('127.0.0.1', port), timeout=10)
print('greeting', line(sock))
sock.sendall(('STLS\r\nUSER %s\r\nPASS %s\r\n' % (user, password)).encode())
print('stls', line(sock))
ctx = ssl.create_default_context(cafile=cert)
tls = ctx.wrap_socket(sock, server_hostname='127.0.0.1')
tls.sendall(b'STAT\r\n')
print('stat', line(tls))
tls.sendall(('PASS %s\r\n' % password).encode())
print('pass', line(tls))
tls.sendall(('USER %s\r\n' % user).encode())
print('user', line(tls))
tls.sendall(('PASS %s\r\n' % password).encode())
print('login', line(tls))
tls.sendall(b'QUIT\r\n')
print('quit', line(tls))
"#;

#[test]
fn a_login_pipelined_after_stls_is_discarded() {
    let server = start();
    let port = server.addr(Service::Pop3).port().to_string();
    let cert = server.certificate();
    let args = [
        Path::new(&port),
        &cert,
        Path::new(ALICE),
        Path::new(ALICE_PW),
    ];
    let output = python(PY_STLS_INJECTION, &args).unwrap_or_else(|e| panic!("{e}"));
    let out = |key: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {key}: {output}"))
            .to_owned()
    };
    // Neither the USER nor the PASS sent with STLS counts: still AUTHORIZATION, no USER given.
    for (key, want) in [
        ("stls", "+OK"),
        ("stat", "-ERR "),
        ("pass", "-ERR "),
        ("user", "+OK"),
        ("login", "+OK"),
        ("quit", "+OK"),
    ] {
        assert!(out(key).starts_with(want), "{key}: {output}");
    }
}

#[test]
fn commands_are_case_insensitive() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["case"]));
    let mut c = Pop3::connect_to(&server);
    c.ok(&format!("user {ALICE}"));
    c.ok(&format!("pAsS {ALICE_PW}"));
    assert_eq!(c.ok("stat"), format!("+OK 1 {}", stored[0].len()));
    let (status, got) = c.multi("Retr 1");
    assert_eq!(status, format!("+OK {} octets", stored[0].len()));
    assert_same(&got, &stored[0], "retr");
    c.ok("noop");
    c.ok("quit");
}

#[test]
fn an_overlong_line_is_refused_and_a_flood_without_line_end_closes() {
    let server = start();
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    // Over the 8 KiB line limit: refused, and the session goes on.
    c.err(&format!("NOOP {}", "x".repeat(10_000)));
    c.ok("NOOP");
    c.ok("STAT");
    // 4 MiB without a line end: the server gives up (RFC 2449: commands are at most 255
    // octets) rather than buffer it.
    let text = c.flood_until_closed(4 * 1024 * 1024).said;
    assert!(
        text.is_empty() || text.contains("-ERR [SYS/PERM] "),
        "{text:?}"
    );
    // The server still serves.
    Pop3::login_to(&server, ALICE, ALICE_PW).quit();
}

#[test]
fn a_shutdown_mid_session_removes_nothing() {
    let server = start();
    let stored = deliver(&server, ALICE, &samples(&["shutdown a", "shutdown b"]));
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.ok("DELE 1");
    c.retr(2);
    // Shut down (and start again on the same data): the session is told and closed, with no
    // UPDATE (RFC 1939 6: only QUIT enters it).
    let server = server.restart_with(|config| config.pop3.expire = Pop3Expire::Days(0));
    let (rest, how) = c.read_until_closed();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("-ERR [SYS/TEMP] "), "{text:?}");
    assert_eq!(how, "closed", "{text:?}");
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

#[test]
fn expire_in_days_keeps_recent_mail() {
    let server = start_configured(|c| c.pop3.expire = Pop3Expire::Days(1));
    let stored = deliver(&server, ALICE, &samples(&["expire 1 day"]));
    let mut c = Pop3::connect_to(&server);
    assert!(has(&capa(&mut c), "EXPIRE 1"));
    c.login(ALICE, ALICE_PW);
    c.retr(1);
    c.quit();
    assert_eq!(
        server.messages(ALICE, "INBOX"),
        stored,
        "seen, but not a day old"
    );
    assert_eq!(seen(&server), [true]);
}

#[test]
fn the_idle_timeout_closes_the_session_without_update() {
    let server = start_configured(|c| c.limits.pop3_idle_timeout = TimeSpan::from_millis(500));
    let stored = deliver(&server, ALICE, &samples(&["idle"]));
    let mut c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.ok("DELE 1");
    let (rest, how) = c.read_until_closed();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("-ERR [SYS/TEMP] "), "{text:?}");
    assert_eq!(how, "closed", "{text:?}");
    login_when_free(&server, ALICE, ALICE_PW).quit();
    assert_eq!(server.messages(ALICE, "INBOX"), stored);
}

#[test]
fn remembered_logins_never_outlive_a_password_change_and_never_admit_a_wrong_password() {
    let server = start();
    let c = Pop3::login_to(&server, ALICE, ALICE_PW);
    c.quit();
    // A wrong password right after a remembered success still reaches the authenticator.
    let mut c = Pop3::connect_to(&server);
    c.ok(&format!("USER {ALICE}"));
    c.expect("PASS not-the-password", "-ERR [AUTH] ");
    c.quit();

    // The password changes (as `wasmail user passwd` does, which then tells the server).
    let new_password = "a brand new password 42";
    let hash = wasmail::users::hash_password(&wasmail_types::Secret::new(new_password.to_owned()))
        .unwrap();
    wasmail::users::UsersFile::new(server.data_dir())
        .set_hash(ALICE, &hash)
        .unwrap();
    server.handle.flush_login_cache();

    let mut c = Pop3::connect_to(&server);
    c.ok(&format!("USER {ALICE}"));
    c.expect(&format!("PASS {ALICE_PW}"), "-ERR [AUTH] ");
    let r = c.login(ALICE, new_password);
    assert!(r.starts_with("+OK"), "{r}");
    c.quit();
}
