//! Transcript tests of the IMAP session: `C:`/`S:` scripts (several from RFC 3501's and the
//! extension RFCs' examples) replayed with a scripted driver, asserting the exact bytes of every
//! response. The script format and the driver loop are [`crate::testing`]'s.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::session::Completion;
use super::{Command, Event, LoginFailure, Session, SessionConfig};
use crate::fuzzing::Xorshift32;
use crate::testing::{Driver, Transcript, assert_any_split_gives, deref_transcript};
use imap_codec::imap_types::command::CommandBody;

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "imap.example".to_owned(),
        max_line_length: 1000,
        max_command_size: 4096,
        max_append_size: 10_000,
        max_errors: 10,
        starttls: false,
        plaintext_auth: true,
    }
}

const CAPS: &str = "IMAP4REV1 AUTH=PLAIN AUTH=LOGIN SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CONDSTORE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE APPENDLIMIT=10000";
const CAPS_AFTER_LOGIN: &str = "IMAP4REV1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CONDSTORE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE APPENDLIMIT=10000";

/// Logins succeed with the password `secret`; SELECT selects, EXAMINE selects read-only, CLOSE
/// and UNSELECT deselect, IDLE idles; APPEND to `Nope` is refused with TRYCREATE; every other
/// command completes OK. Every event is recorded (APPEND data as its length).
struct Harness {
    t: Transcript<Session>,
    appended: Vec<u8>,
}

deref_transcript!(Harness, Session);

impl Harness {
    fn new(config: SessionConfig) -> Harness {
        let mut session = Session::new(config, false);
        session.greet();
        let mut h = Harness {
            t: Transcript::new(session),
            appended: Vec::new(),
        };
        h.drive();
        h.t.output.clear();
        h
    }

    fn logged_in() -> Harness {
        let mut h = Harness::new(config());
        h.script(&format!(
            "C: a LOGIN alice secret
             S: a OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in"
        ));
        h
    }
}

impl Driver for Harness {
    type Session = Session;

    fn transcript(&mut self) -> &mut Transcript<Session> {
        &mut self.t
    }

    fn answer(&mut self, event: Event) {
        match &event {
            Event::AppendData(chunk) => {
                self.appended.extend_from_slice(chunk);
                self.t.events.push(format!("AppendData({})", chunk.len()));
                return;
            }
            _ => self.t.events.push(format!("{event:?}")),
        }
        let s = &mut self.t.session;
        match event {
            Event::Login { user, secret, .. } => {
                if secret.expose() == "secret" {
                    s.logged_in(user);
                } else {
                    s.login_failed(LoginFailure::Credentials);
                }
            }
            Event::StartTls => s.tls_started(true),
            Event::Command { command, .. } => match command {
                Command::Imap(CommandBody::Select { .. }) => {
                    s.selected(Some(false));
                    s.done(Completion::Ok, None, "SELECT completed");
                }
                Command::Imap(CommandBody::Examine { .. }) => {
                    s.selected(Some(true));
                    s.done(Completion::Ok, None, "EXAMINE completed");
                }
                Command::Imap(CommandBody::Close | CommandBody::Unselect) => {
                    s.selected(None);
                    s.done(Completion::Ok, None, "Closed");
                }
                Command::Imap(CommandBody::Idle) => s.idle(),
                _ => s.done(Completion::Ok, None, "Completed"),
            },
            Event::AppendStart { mailbox, .. } => {
                if format!("{mailbox:?}").contains("Nope") {
                    s.done(
                        Completion::No,
                        Some(imap_codec::imap_types::response::Code::TryCreate),
                        "No such mailbox",
                    );
                } else {
                    s.append_go();
                }
            }
            Event::AppendData(_) => {}
            Event::AppendEnd => s.done(Completion::Ok, None, "APPEND completed"),
        }
    }
}

#[test]
fn greeting_capability_and_logout() {
    let mut session = Session::new(config(), false);
    session.greet();
    let mut h = Harness {
        t: Transcript::new(session),
        appended: Vec::new(),
    };
    h.script(&format!(
        "S: * OK [CAPABILITY {CAPS}] imap.example IMAP4rev1 server ready
         C: abcd CAPABILITY
         S: * CAPABILITY {CAPS}
         S: abcd OK Capability completed
         C: a002 NOOP
         S: a002 OK NOOP completed
         C: A023 LOGOUT
         S: * BYE Logging out
         S: A023 OK Logout completed"
    ));
    assert!(h.closed);
}

#[test]
fn login_and_the_states_of_rfc_3501() {
    let mut h = Harness::new(config());
    h.script(
        "C: a1 SELECT INBOX
         S: a1 BAD Not logged in
         C: a2 FETCH 1 FLAGS
         S: a2 BAD Not logged in
         C: a3 LOGIN alice wrong
         S: a3 NO [AUTHENTICATIONFAILED] Authentication failed",
    );
    h.script(&format!(
        "C: a4 LOGIN alice secret
         S: a4 OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in
         C: a5 LOGIN alice secret
         S: a5 BAD Already logged in
         C: a6 FETCH 1 FLAGS
         S: a6 BAD No mailbox selected
         C: a7 SELECT INBOX
         S: a7 OK SELECT completed
         C: a8 FETCH 1 FLAGS
         S: a8 OK Completed
         C: a9 CLOSE
         S: a9 OK Closed
         C: a10 STORE 1 +FLAGS (\\\\Seen)
         S: a10 BAD No mailbox selected"
    ));
    assert_eq!(h.session.account(), Some("alice"));
}

#[test]
fn examine_is_read_only() {
    let mut h = Harness::logged_in();
    h.script(
        "C: a EXAMINE INBOX
         S: a OK EXAMINE completed
         C: b STORE 1 +FLAGS (\\\\Deleted)
         S: b NO [READ-ONLY] Mailbox is read-only (EXAMINE)
         C: c EXPUNGE
         S: c NO [READ-ONLY] Mailbox is read-only (EXAMINE)
         C: d COPY 1 Archive
         S: d OK Completed",
    );
}

#[test]
fn no_plaintext_login_without_tls() {
    let mut h = Harness::new(SessionConfig {
        plaintext_auth: false,
        starttls: true,
        ..config()
    });
    h.script(
        "C: a CAPABILITY
         S: * CAPABILITY IMAP4REV1 STARTTLS LOGINDISABLED SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CONDSTORE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE APPENDLIMIT=10000
         S: a OK Capability completed
         C: b LOGIN alice secret
         S: b NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS (use STARTTLS)
         C: c AUTHENTICATE PLAIN
         S: c NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS (use STARTTLS)",
    );
    // STARTTLS drops what was pipelined behind it (CVE-2011-0411).
    h.script(
        "C: d STARTTLS
         C: e LOGIN alice secret
         S: d OK Begin TLS negotiation now",
    );
    assert!(h.has_event("StartTls"));
    assert!(!h.has_event("Login"));
    h.script(&format!(
        "C: f CAPABILITY
         S: * CAPABILITY {CAPS}
         S: f OK Capability completed
         C: g STARTTLS
         S: g BAD TLS is already active"
    ));
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let ir = STANDARD.encode(b"\0alice\0secret");
    let mut h = Harness::new(config());
    h.script(&format!(
        "C: a AUTHENTICATE PLAIN {ir}
         S: a OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in"
    ));
    let mut h = Harness::new(config());
    h.script(&format!(
        "C: a AUTHENTICATE PLAIN
         S: + 
         C: {ir}
         S: a OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in"
    ));
    let mut h = Harness::new(config());
    h.script(
        "C: a AUTHENTICATE LOGIN
         S: + VXNlcm5hbWU6
         C: *
         S: a BAD Authentication cancelled
         C: b AUTHENTICATE CRAM-MD5
         S: b NO Unsupported authentication mechanism
         C: c AUTHENTICATE PLAIN
         S: + 
         C: !!!notbase64
         S: c BAD Invalid base64 in authentication response",
    );
}

#[test]
fn literals_synchronizing_and_not() {
    let mut h = Harness::new(config());
    // RFC 3501 7.5's example of a synchronizing literal, then LITERAL+ (RFC 7888).
    h.script("C: A001 LOGIN {5}\n S: + Ready for literal data");
    h.script("C: alice {6}\n S: + Ready for literal data");
    h.script(&format!(
        "C: secret
         S: A001 OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in"
    ));
    let mut h = Harness::new(config());
    h.script(&format!(
        "C: A001 LOGIN {{5+}}
         C: alice {{6+}}
         C: secret
         S: A001 OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in"
    ));
    // A literal in a command that cannot parse gets BAD instead of the continuation.
    h.script("C: b FROB {5}\n S: b BAD Unknown command FROB");
    // Too large: NO [TOOBIG] instead of the continuation; a non-synchronizing one is dropped.
    h.script(
        "C: c SEARCH TEXT {5000}
         S: c NO [TOOBIG] Literal too large",
    );
    let mut big = String::from("d SEARCH TEXT {5000+}\r\n");
    big.push_str(&"x".repeat(5000));
    big.push_str("\r\ne NOOP\r\n");
    h.feed(big.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&std::mem::take(&mut h.output)),
        "d NO [TOOBIG] Literal too large\r\ne OK Completed\r\n"
    );
    assert!(h.events.last().is_some_and(|e| e.contains("Noop")));
}

#[test]
fn append_streams_the_message() {
    let mut h = Harness::logged_in();
    let message = "Subject: hi\r\n\r\n".to_string() + &"body line\r\n".repeat(300);
    h.script(&format!(
        "C: A003 APPEND saved-messages (\\\\Seen) \"05-Jan-2024 10:00:00 +0100\" {{{}}}
         S: + Ready for literal data",
        message.len()
    ));
    h.feed(message.as_bytes());
    assert!(h.output.is_empty());
    h.script("C: \n S: A003 OK APPEND completed");
    assert_eq!(h.appended, message.as_bytes());
    assert!(h.has_event("AppendStart"));
    assert!(h.events.iter().any(|e| e == "AppendEnd"));
    // The literal never joins a gathered command: the session held at most one read.
    // TRYCREATE before the continuation: the client never sends the synchronizing literal.
    h.script(
        "C: b APPEND Nope {5}
         S: b NO [TRYCREATE] No such mailbox
         C: c NOOP
         S: c OK Completed",
    );
    // A refused non-synchronizing literal is read and dropped.
    h.script(
        "C: d APPEND Nope {5+}\\r\\nhello
         C: e NOOP
         S: d NO [TRYCREATE] No such mailbox
         S: e OK Completed",
    );
    // Over APPENDLIMIT.
    h.script("C: f APPEND INBOX {20000}\n S: f NO [TOOBIG] Message larger than APPENDLIMIT");
    // The mailbox name may itself be a literal.
    h.appended.clear();
    h.script("C: g APPEND {5}\n S: + Ready for literal data");
    h.script("C: INBOX {3}\n S: + Ready for literal data");
    h.script("R: abc\\r\\n\n S: g OK APPEND completed");
    assert_eq!(h.appended, b"abc");
}

#[test]
fn append_before_login_is_refused_and_its_literal_dropped() {
    let mut h = Harness::new(config());
    h.script(
        "C: a APPEND INBOX {3+}\\r\\nabc
         C: b NOOP
         S: a BAD Command not valid in this state
         S: b OK NOOP completed",
    );
}

#[test]
fn syntax_errors_get_bad_with_a_reason_and_the_session_goes_on() {
    let mut h = Harness::logged_in();
    h.script(
        "C: a FROBNICATE
         S: a BAD Unknown command FROBNICATE
         C: b SELECT
         S: b BAD Invalid arguments to SELECT
         C: c UID FETCH x FLAGS
         S: c BAD Invalid arguments to UID FETCH
         C: d SORT (DATE) UTF-8 ALL
         S: d BAD SORT is not supported
         C: (bad-tag NOOP
         S: * BAD Missing or invalid tag
         C: e NOOP
         S: e OK Completed",
    );
}

#[test]
fn too_many_errors_end_the_session() {
    let mut h = Harness::new(SessionConfig {
        max_errors: 3,
        ..config()
    });
    h.script(
        "C: a X
         S: a BAD Unknown command X
         C: b X
         S: b BAD Unknown command X
         C: c X
         S: c BAD Unknown command X
         S: * BYE Too many errors, closing",
    );
    assert!(h.closed);
}

#[test]
fn over_long_lines_and_floods() {
    let mut h = Harness::logged_in();
    let long = format!("a NOOP {}\r\nb NOOP\r\n", "x".repeat(2000));
    h.feed(long.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&std::mem::take(&mut h.output)),
        "* BAD Command line too long\r\nb OK Completed\r\n"
    );
    let out = h.flood_without_line_end(1000);
    assert!(
        out.ends_with("* BYE Command line too long, closing\r\n"),
        "{out}"
    );
}

#[test]
fn idle_until_done() {
    let mut h = Harness::logged_in();
    h.script(
        "C: a SELECT INBOX
         S: a OK SELECT completed
         C: b IDLE
         S: + idling",
    );
    assert!(h.session.is_idling());
    h.session
        .respond(imap_codec::imap_types::response::Data::Exists(4));
    h.script(
        "S: * 4 EXISTS
         C: DONE
         S: b OK IDLE terminated
         C: c IDLE
         S: + idling
         C: NOPE
         S: c BAD Expected DONE to end IDLE",
    );
}

#[test]
fn enable_id_and_create_special_use() {
    let mut h = Harness::logged_in();
    h.script(
        "C: a ENABLE CONDSTORE
         S: * ENABLED CONDSTORE
         S: a OK ENABLE completed
         C: b ID (\"name\" \"mutt\")
         S: * ID (\"name\" \"wasmail\" \"vendor\" \"wasmail\" \"version\" \"0.1.0\")
         S: b OK ID completed
         C: c CREATE MyDrafts (USE (\\\\Drafts))
         S: c OK Completed",
    );
    assert!(h.session.condstore());
    assert!(
        h.events
            .iter()
            .any(|e| e.contains("CreateSpecialUse") && e.contains("Drafts"))
    );
    h.script(
        "C: d CREATE x (USE (Drafts))
         S: d BAD Invalid arguments to CREATE",
    );
}

#[test]
fn any_split_of_a_session_gives_the_same_transcript() {
    let stream = b"a LOGIN {5+}\r\nalice secret\r\nb SELECT INBOX\r\nc APPEND INBOX {3+}\r\nxyz\r\nd FETCH 1:* (FLAGS)\r\ne LOGOUT\r\n";
    let run = |pieces: &[&[u8]]| {
        let mut h = Harness::new(config());
        h.feed_pieces(pieces);
        (
            String::from_utf8_lossy(&h.output).into_owned(),
            h.events
                .iter()
                .filter(|e| !e.starts_with("AppendData"))
                .cloned()
                .collect::<Vec<_>>(),
            h.appended.clone(),
        )
    };
    let whole = run(&[stream]);
    assert!(
        whole.0.ends_with("e OK Logout completed\r\n"),
        "{}",
        whole.0
    );
    assert_eq!(whole.2, b"xyz");
    assert_any_split_gives(stream, run, &whole);
}

#[test]
fn random_input_never_panics_and_memory_stays_bounded() {
    let mut rng = Xorshift32::new(42);
    let words: &[&[u8]] = &[
        b"a",
        b" ",
        b"\r\n",
        b"{5}",
        b"{3+}",
        b"LOGIN",
        b"APPEND",
        b"INBOX",
        b"(",
        b")",
        b"\"",
        b"FETCH",
        b"1:*",
        b"UID",
        b"IDLE",
        b"DONE",
        b"AUTHENTICATE PLAIN",
        b"*",
        b"STARTTLS",
        b"SELECT",
        b"\\Seen",
        b"BODY[]",
        b"{0}",
        b"\n",
        b"%",
        b"~{2}",
    ];
    for round in 0..2000 {
        let mut h = Harness::new(SessionConfig {
            max_errors: 0,
            ..config()
        });
        if round % 2 == 0 {
            h.feed(b"x LOGIN alice secret\r\n");
        }
        for _ in 0..40 {
            if h.closed {
                break;
            }
            let mut chunk = Vec::new();
            for _ in 0..(rng.next_u32() % 8) {
                chunk.extend_from_slice(words[rng.next_u32() as usize % words.len()]);
            }
            if rng.next_u32().is_multiple_of(5) {
                chunk.push(rng.next_u32() as u8);
            }
            h.feed(&chunk);
            assert!(h.session.buffered_input() < 8192);
            h.output.clear();
        }
    }
}

#[test]
fn generated_streams_keep_every_invariant() {
    for seed in 0..3000 {
        super::fuzzing::run(&super::fuzzing::generate(seed));
    }
}

#[test]
fn generated_commands_round_trip_and_random_messages_give_structures() {
    for seed in 0..3000 {
        let stream = super::fuzzing::generate(seed);
        super::fuzzing::command_roundtrip(&stream[4..]);
        super::fuzzing::mime(&stream[4..]);
    }
}

#[test]
fn extension_rfc_examples() {
    // RFC 5161 3.1: only what the server knows is enabled.
    let mut h = Harness::logged_in();
    h.script(
        "C: t2 ENABLE CONDSTORE X-GOOD-IDEA
         S: * ENABLED CONDSTORE
         S: t2 OK ENABLE completed",
    );
    // RFC 5161 3.2: ENABLE is for the authenticated state only.
    h.script(
        "C: s SELECT INBOX
         S: s OK SELECT completed
         C: t3 ENABLE CONDSTORE
         S: t3 BAD ENABLE is valid only in the authenticated state",
    );
    // RFC 2177 3: IDLE, an update while idling, DONE.
    h.script("C: A002 IDLE\n S: + idling");
    h.session
        .respond(imap_codec::imap_types::response::Data::Exists(4));
    h.script(
        "S: * 4 EXISTS
         C: DONE
         S: A002 OK IDLE terminated",
    );
    // RFC 4959 3: SASL-IR, authzid = authcid ("test").
    let mut h = Harness::new(config());
    h.script(&format!(
        "C: a01 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHNlY3JldA==
         S: a01 OK [CAPABILITY {CAPS_AFTER_LOGIN}] Logged in"
    ));
    assert!(h.has_event("Login { mechanism: Plain, authzid: None, user: \"test\""));
    // RFC 2971 3.1: ID before login.
    let mut h = Harness::new(config());
    h.script(
        "C: a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" \"Pink Floyd Music Limited\")
         S: * ID (\"name\" \"wasmail\" \"vendor\" \"wasmail\" \"version\" \"0.1.0\")
         S: a023 OK ID completed",
    );
}

#[test]
fn the_driver_is_told_while_literal_data_is_expected() {
    let mut h = Harness::new(config());
    assert!(!h.session.expects_literal());
    h.script("C: A001 LOGIN {5}\n S: + Ready for literal data");
    assert!(h.session.expects_literal());
    h.feed(b"alice {6+}\r\nsec");
    assert!(h.session.expects_literal());
    h.feed(b"ret\r\n");
    assert!(!h.session.expects_literal());
    let mut h = Harness::logged_in();
    h.script("C: b APPEND INBOX {3}\n S: + Ready for literal data");
    assert!(h.session.expects_literal());
    h.feed(b"abc\r\n");
    assert!(!h.session.expects_literal());
}
