//! Transcript tests: `C:`/`S:` scripts (several taken from the RFCs' examples) replayed against
//! a [`Session`] with a scripted driver, asserting the exact bytes of every reply and where the
//! flush points (NeedInput) fall. The script format and the driver loop are
//! [`crate::testing`]'s, shared with POP3.

use std::collections::HashMap;

use wasmail_types::Reply;

use super::fuzzing;
use super::{Body, CHUNK_SIZE, DataKind, Event, Progress, Session, SessionConfig, Transaction};
use crate::testing::{Driver, Transcript, assert_any_split_gives, deref_transcript};

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example".to_owned(),
        max_line_length: 512,
        max_message_size: 10_000,
        max_recipients: 100,
        max_errors: 10,
        starttls: true,
        auth: false,
        auth_needs_tls: true,
        require_auth: false,
        vrfy: false,
    }
}

type Policy = Box<dyn FnMut(&Event) -> Option<Reply>>;

/// A scripted driver: answers decisions with the policy's reply, or positively by default
/// (Auth: the identity becomes the account; MessageEnd: `250 2.0.0 Ok: queued as 1`).
/// Every event is recorded in order, with consecutive MessageChunks merged into one.
struct Harness {
    t: Transcript<Session>,
    policy: Policy,
    /// The complete messages (chunks concatenated), at each MessageEnd.
    messages: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// The transaction and `with_protocol` as seen at each MessageEnd.
    transactions: Vec<(Transaction, &'static str)>,
    /// Whether each StartTls is answered with a completed handshake.
    auth_after_tls: bool,
}

deref_transcript!(Harness, Session);

impl Harness {
    fn new(config: SessionConfig) -> Harness {
        let mut session = Session::new(config, false);
        session.greet();
        Harness::with_session(session)
    }

    fn with_session(session: Session) -> Harness {
        Harness {
            t: Transcript::new(session),
            policy: Box::new(|_| None),
            messages: Vec::new(),
            current: Vec::new(),
            transactions: Vec::new(),
            auth_after_tls: true,
        }
    }

    fn policy(mut self, policy: impl FnMut(&Event) -> Option<Reply> + 'static) -> Harness {
        self.policy = Box::new(policy);
        self
    }
}

impl Driver for Harness {
    type Session = Session;

    fn transcript(&mut self) -> &mut Transcript<Session> {
        &mut self.t
    }

    fn answer(&mut self, event: Event) {
        match &event {
            Event::MessageChunk(bytes) => {
                assert!(bytes.len() <= CHUNK_SIZE);
                self.current.extend_from_slice(bytes);
                if let Some(last) = self.t.events.last()
                    && last.starts_with("MessageChunk")
                {
                    return;
                }
                self.t.events.push("MessageChunk".to_owned());
                return;
            }
            Event::MessageEnd { .. } => {
                self.messages.push(std::mem::take(&mut self.current));
                self.transactions.push((
                    self.t
                        .session
                        .transaction()
                        .expect("transaction at MessageEnd")
                        .clone(),
                    self.t.session.with_protocol(),
                ));
            }
            Event::MessageAborted { .. } | Event::Reset | Event::DataStart { .. } => {
                self.current.clear();
            }
            _ => {}
        }
        self.t.events.push(format!("{event:?}"));
        if let Event::StartTls = event {
            self.t.flush();
            self.t.session.tls_started(self.auth_after_tls, false);
            return;
        }
        let decision = matches!(
            event,
            Event::Helo { .. }
                | Event::Auth { .. }
                | Event::MailFrom { .. }
                | Event::RcptTo { .. }
                | Event::DataStart { .. }
                | Event::MessageEnd { .. }
        );
        if !decision {
            return;
        }
        match ((self.policy)(&event), event) {
            (Some(reply), _) => self.t.session.reply(reply),
            (None, Event::Auth { identity, .. }) => self.t.session.authenticated(identity),
            (None, Event::MessageEnd { .. }) => {
                self.t
                    .session
                    .reply(Reply::fixed(250, (2, 0, 0), "Ok: queued as 1"))
            }
            (None, _) => self.t.session.accept(),
        }
    }
}

const EHLO_REPLY: &str = "
    S: 250-mx.example
    S: 250-PIPELINING
    S: 250-8BITMIME
    S: 250-SMTPUTF8
    S: 250-SIZE 10000
    S: 250-ENHANCEDSTATUSCODES
    S: 250-CHUNKING
    S: 250-DSN
    S: 250 STARTTLS";

fn ehlo() -> String {
    format!("C: EHLO client.example\n{EHLO_REPLY}")
}

fn refuse_rcpt(local: &'static str, reply: Reply) -> impl FnMut(&Event) -> Option<Reply> {
    move |e| match e {
        Event::RcptTo { to, .. } if to.address().is_some_and(|a| a.local_part() == local) => {
            Some(reply.clone())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// RFC examples.

#[test]
fn rfc5321_d1_a_typical_transaction() {
    let mut c = config();
    c.hostname = "foo.com".to_owned();
    // The appendix shows the message text; on the wire the client dot-stuffs `...etc.`.
    let mut h = Harness::new(c).policy(refuse_rcpt(
        "Green",
        Reply::fixed(550, (5, 1, 1), "No such user here"),
    ));
    h.script(
        "S: 220 foo.com ESMTP wasmail
         C: EHLO bar.com
         S: 250-foo.com
         S: 250-PIPELINING
         S: 250-8BITMIME
         S: 250-SMTPUTF8
         S: 250-SIZE 10000
         S: 250-ENHANCEDSTATUSCODES
         S: 250-CHUNKING
         S: 250-DSN
         S: 250 STARTTLS
         C: MAIL FROM:<Smith@bar.com>
         S: 250 2.1.0 Ok
         C: RCPT TO:<Jones@foo.com>
         S: 250 2.1.5 Ok
         C: RCPT TO:<Green@foo.com>
         S: 550 5.1.1 No such user here
         C: RCPT TO:<Brown@foo.com>
         S: 250 2.1.5 Ok
         C: DATA
         S: 354 End data with <CR><LF>.<CR><LF>
         C: Blah blah blah...
         C: ....etc. etc. etc.
         C: .
         S: 250 2.0.0 Ok: queued as 1
         C: QUIT
         S: 221 2.0.0 Bye",
    );
    assert!(h.closed);
    assert_eq!(
        h.messages,
        [b"Blah blah blah...\r\n...etc. etc. etc.\r\n".to_vec()]
    );
    let (txn, with) = &h.transactions[0];
    assert_eq!(txn.from.to_string(), "<Smith@bar.com>");
    let rcpts: Vec<String> = txn.recipients.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(rcpts, ["<Jones@foo.com>", "<Brown@foo.com>"]);
    assert_eq!(*with, "ESMTP");
    assert_eq!(h.session.helo_name(), Some("bar.com"));
}

#[test]
fn rfc5321_d3_relayed_mail_source_route_is_dropped() {
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<JQP@bar.com>
         S: 250 2.1.0 Ok
         C: RCPT TO:<@foo.com:Jones@XYZ.COM>
         S: 250 2.1.5 Ok
         C: DATA
         S: 354 End data with <CR><LF>.<CR><LF>
         C: Date: Thu, 21 May 1998 05:33:29 -0700
         C: From: John Q. Public <JQP@bar.com>
         C: Subject: The Next Meeting of the Board
         C: To: Jones@xyz.com
         C:
         C: Bill:
         C: The next meeting of the board of directors will be
         C: on Tuesday.
         C: John.
         C: .
         S: 250 2.0.0 Ok: queued as 1
         C: QUIT
         S: 221 2.0.0 Bye",
        ehlo()
    ));
    let (txn, _) = &h.transactions[0];
    assert_eq!(txn.recipients[0].0.to_string(), "<Jones@xyz.com>");
    assert!(h.messages[0].starts_with(b"Date: Thu"));
    assert!(h.messages[0].ends_with(b"\r\n\r\nBill:\r\nThe next meeting of the board of directors will be\r\non Tuesday.\r\nJohn.\r\n"));
}

#[test]
fn rfc2920_pipelined_replies_come_out_together() {
    let mut h = Harness::new(config()).policy(refuse_rcpt(
        "dan",
        Reply::fixed(550, (5, 1, 1), "No such user"),
    ));
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<mrose@dbc.mtview.ca.us>
         C: RCPT TO:<ned@innosoft.com>
         C: RCPT TO:<dan@innosoft.com>
         C: RCPT TO:<kvc@innosoft.com>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 550 5.1.1 No such user
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>
         C: Hello
         C: .
         C: QUIT
         S: 250 2.0.0 Ok: queued as 1
         S: 221 2.0.0 Bye",
        ehlo()
    ));
    assert!(h.closed);
    // All recipients refused: DATA is answered by the session (RFC 2920 3.1).
    let mut h = Harness::new(config()).policy(|e| match e {
        Event::RcptTo { .. } => Some(Reply::fixed(550, (5, 1, 1), "No")),
        _ => None,
    });
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         C: DATA
         C: RSET
         S: 250 2.1.0 Ok
         S: 550 5.1.1 No
         S: 554 5.5.1 No valid recipients
         S: 250 2.0.0 Ok",
        ehlo()
    ));
    assert!(!h.has_event("DataStart"));
}

#[test]
fn rfc3030_chunking_examples() {
    // 4.1: a simple chunking example.
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<Sam@Random.com>
         S: 250 2.1.0 Ok
         C: RCPT TO:<Susan@Random.com>
         S: 250 2.1.5 Ok
         C: BDAT 86 LAST
         C: To: Susan@random.com
         C: From: Sam@random.com
         R: Subject: This is a bodyless test message\\r\\n
         S: 250 2.0.0 Ok: queued as 1
         C: QUIT
         S: 221 2.0.0 Bye",
        ehlo()
    ));
    assert_eq!(h.messages[0].len(), 86);
    assert!(h.has_event("DataStart { kind: Bdat }"));

    // 4.2-style: pipelined BDATs, octets in the same read as the commands, bare LF allowed.
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<Sam@Random.com> BODY=8BITMIME
         C: RCPT TO:<Susan@Random.com>
         C: RCPT TO:<Harry@Random.com>
         R: BDAT 12\\r\\nline one\\nx\\r.BDAT 0\\r\\nBDAT 6 LAST\\r\\n\\n.\\n.\\r\\nQUIT\\r\\n
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 12 octets received
         S: 250 2.0.0 0 octets received
         S: 250 2.0.0 Ok: queued as 1
         S: 221 2.0.0 Bye",
        ehlo()
    ));
    assert_eq!(h.messages, [b"line one\nx\r.\n.\n.\r\n".to_vec()]);
    assert_eq!(h.transactions[0].0.params.body, Body::EightBitMime);
    assert_eq!(
        h.events
            .iter()
            .filter(|e| e.starts_with("DataStart"))
            .count(),
        1
    );
}

#[test]
fn bdat_sequence_errors_and_refusals_consume_the_octets() {
    let mut h = Harness::new(config()).policy(|e| match e {
        Event::DataStart { .. } => Some(Reply::fixed(554, (5, 7, 1), "Not from you")),
        _ => None,
    });
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         R: BDAT 6\\r\\nNOOP\\r\\n
         S: 503 5.5.1 Need MAIL command
         {}
         C: MAIL FROM:<a@b.example>
         R: BDAT 4 LAST\\r\\nRSET
         S: 250 2.1.0 Ok
         S: 554 5.5.1 No valid recipients
         C: RCPT TO:<c@d.example>
         R: BDAT 4\\r\\nRSETBDAT 6 LAST\\r\\nQUIT\\r\\nNOOP\\r\\n
         S: 250 2.1.5 Ok
         S: 554 5.7.1 Not from you
         S: 503 5.5.1 Need MAIL command
         S: 250 2.0.0 Ok",
        ehlo()
    ));
    assert!(h.session.transaction().is_none());
    assert_eq!(
        h.events
            .iter()
            .filter(|e| e.starts_with("DataStart"))
            .count(),
        1
    );

    // DATA after BDAT in one transaction.
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         R: BDAT 3\\r\\nabcDATA\\r\\nBDAT 1 LAST\\r\\nd
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 3 octets received
         S: 503 5.5.1 DATA after BDAT
         S: 250 2.0.0 Ok: queued as 1",
        ehlo()
    ));
    assert_eq!(h.messages, [b"abcd".to_vec()]);
}

#[test]
fn bdat_over_the_size_limit() {
    let mut c = config();
    c.max_message_size = 10;
    let mut h = Harness::new(c);
    let ehlo10 = ehlo().replace("SIZE 10000", "SIZE 10");
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {ehlo10}
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         R: BDAT 11 LAST\\r\\n01234567890
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 552 5.3.4 Message size exceeds fixed maximum message size
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         R: BDAT 6\\r\\n012345BDAT 6\\r\\n012345BDAT 1 LAST\\r\\nx
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 250 2.0.0 6 octets received
         S: 552 5.3.4 Message size exceeds fixed maximum message size
         S: 503 5.5.1 Need MAIL command
         C: BDAT 18446744073709551615 LAST",
    ));
    assert!(h.has_event("MessageAborted"));
    assert!(h.messages.is_empty());
    assert_eq!(h.session.state_name(), "ExpectChunk");
    // The announced octets are swallowed without being stored.
    h.feed(&vec![b'x'; 1 << 20]);
    assert!(h.session.buffered_input() == 0 && h.output.is_empty());
}

// ---------------------------------------------------------------------------------------------
// AUTH (RFC 4954).

fn auth_config() -> SessionConfig {
    let mut c = config();
    c.auth = true;
    c.auth_needs_tls = false;
    c
}

fn auth_ehlo() -> String {
    format!(
        "{}\n S: 250 AUTH PLAIN LOGIN",
        ehlo().replace("250 STARTTLS", "250-STARTTLS")
    )
}

#[test]
fn auth_plain_with_initial_response() {
    let mut h = Harness::new(auth_config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=
         S: 235 2.7.0 Authentication successful
         C: AUTH PLAIN dGVzdAB0ZXN0ADEyMzQ=
         S: 503 5.5.1 Already authenticated
         C: MAIL FROM:<test@b.example>
         C: RCPT TO:<c@d.example>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>
         C: .
         S: 250 2.0.0 Ok: queued as 1",
        auth_ehlo()
    ));
    assert!(h.has_event(
        "Auth { mechanism: Plain, authzid: None, identity: \"test\", secret: Secret(..) }"
    ));
    assert!(!h.events.iter().any(|e| e.contains("1234")));
    assert_eq!(h.session.account(), Some("test"));
    assert_eq!(h.transactions[0].1, "ESMTPA");
}

#[test]
fn auth_plain_without_initial_response_and_login() {
    let mut h = Harness::new(auth_config()).policy(|e| match e {
        Event::Auth { secret, .. } if secret.expose() != "right" => Some(Reply::fixed(
            535,
            (5, 7, 8),
            "Authentication credentials invalid",
        )),
        _ => None,
    });
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: AUTH PLAIN
         S: 334 
         C: AHVzZXIAd3Jvbmc=
         S: 535 5.7.8 Authentication credentials invalid
         C: AUTH LOGIN
         S: 334 VXNlcm5hbWU6
         C: dXNlcg==
         S: 334 UGFzc3dvcmQ6
         C: *
         S: 501 5.0.0 Authentication cancelled
         C: AUTH LOGIN dXNlcg==
         S: 334 UGFzc3dvcmQ6
         C: not base64!
         S: 501 5.5.2 Invalid base64 in authentication response
         C: auth login dXNlcg==
         S: 334 UGFzc3dvcmQ6
         C: cmlnaHQ=
         S: 235 2.7.0 Authentication successful",
        auth_ehlo()
    ));
    assert_eq!(h.session.account(), Some("user"));
    assert!(h.has_event("Auth { mechanism: Login"));
    assert_eq!(h.session.with_protocol(), "ESMTPA");
}

#[test]
fn auth_refusals() {
    // Not offered because TLS is missing: 538; not offered at all: 502.
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: AUTH PLAIN AHVzZXIAcGFzcw==
         S: 538 5.7.11 Encryption required for requested authentication mechanism",
        ehlo()
    ));
    let mut c = config();
    c.auth_needs_tls = false;
    let mut h = Harness::new(c);
    h.script(
        "S: 220 mx.example ESMTP wasmail
         C: AUTH LOGIN
         S: 502 5.5.1 AUTH not available",
    );
    let mut h = Harness::new(auth_config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         C: AUTH PLAIN
         S: 503 5.5.1 Send EHLO first
         {}
         C: AUTH CRAM-MD5
         S: 504 5.5.4 Unrecognized authentication mechanism
         C: AUTH PLAIN =
         S: 501 5.5.2 Malformed PLAIN response
         C: MAIL FROM:<a@b.example>
         S: 250 2.1.0 Ok
         C: AUTH PLAIN AHVzZXIAcGFzcw==
         S: 503 5.5.1 AUTH not allowed during a mail transaction",
        auth_ehlo()
    ));
    assert!(!h.has_event("Auth"));
}

#[test]
fn submission_requires_auth_before_mail() {
    let mut c = auth_config();
    c.require_auth = true;
    let mut h = Harness::new(c);
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<a@b.example>
         S: 530 5.7.0 Authentication required
         C: AUTH PLAIN AGEAYg==
         S: 235 2.7.0 Authentication successful
         C: MAIL FROM:<a@b.example> AUTH=<>
         S: 250 2.1.0 Ok",
        auth_ehlo()
    ));
    assert_eq!(
        h.session.transaction().unwrap().params.auth.as_deref(),
        Some("<>")
    );
}

#[test]
fn an_unfinished_auth_line_never_shows_in_debug_output() {
    let mut c = auth_config();
    c.hostname = "mx".to_owned();
    let mut s = Session::new(c, false);
    s.greet();
    s.feed(b"EHLO x\r\nAUTH PLAIN AHVzZXIAaHVudGVyMg=");
    while let Progress::Event(_) = s.next() {
        s.accept();
    }
    let debug = format!("{s:?}");
    assert!(!debug.contains("AHVzZXIAaHVudGVyMg"), "{debug}");
    assert!(debug.contains("ExpectMail"), "{debug}");
}

// ---------------------------------------------------------------------------------------------
// STARTTLS (RFC 3207).

#[test]
fn starttls_discards_injected_commands_and_forgets_the_session() {
    let mut h = Harness::new(config());
    h.auth_after_tls = true;
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: STARTTLS extra
         S: 501 5.5.4 Syntax: STARTTLS
         R: STARTTLS\\r\\nMAIL FROM:<evil@attacker.example>\\r\\n
         S: 220 2.0.0 Ready to start TLS
         C: MAIL FROM:<a@b.example>
         S: 503 5.5.1 Send HELO/EHLO first
         C: EHLO client.example
         S: 250-mx.example
         S: 250-PIPELINING
         S: 250-8BITMIME
         S: 250-SMTPUTF8
         S: 250-SIZE 10000
         S: 250-ENHANCEDSTATUSCODES
         S: 250-CHUNKING
         S: 250-DSN
         S: 250 AUTH PLAIN LOGIN
         C: STARTTLS
         S: 503 5.5.1 Already using TLS
         C: MAIL FROM:<a@b.example>
         S: 250 2.1.0 Ok",
        ehlo()
    ));
    assert!(!h.events.iter().any(|e| e.contains("evil")));
    assert_eq!(h.session.with_protocol(), "ESMTPS");
    assert!(h.session.is_tls());

    let mut c = config();
    c.starttls = false;
    let mut h = Harness::new(c);
    h.script(
        "S: 220 mx.example ESMTP wasmail
         C: STARTTLS
         S: 502 5.5.1 STARTTLS not available",
    );
}

#[test]
fn starttls_waits_for_the_handshake() {
    let mut s = Session::new(config(), false);
    s.greet();
    s.feed(b"EHLO x\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::Helo { .. })));
    s.accept();
    s.feed(b"STARTTLS\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::StartTls)));
    assert_eq!(s.state_name(), "ExpectTlsHandshake");
    s.feed(b"NOOP\r\n");
    assert!(matches!(s.next(), Progress::AwaitingAnswer));
    s.tls_started(false, false);
    assert!(matches!(s.next(), Progress::NeedInput));
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("220 2.0.0 Ready to start TLS\r\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Greeting modes, errors, limits.

#[test]
fn a_554_greeting_allows_only_quit() {
    let mut s = Session::new(config(), false);
    s.refuse(Reply::fixed(554, (5, 3, 2), "No SMTP service here"));
    let mut h = Harness::with_session(s);
    h.script(
        "S: 554 5.3.2 No SMTP service here
         C: EHLO client.example
         C: MAIL FROM:<a@b.example>
         C: bogus
         S: 503 5.5.1 Service not available, send QUIT
         S: 503 5.5.1 Service not available, send QUIT
         S: 503 5.5.1 Service not available, send QUIT
         C: QUIT
         S: 221 2.0.0 Bye",
    );
    assert!(h.closed);
    assert!(h.events.is_empty());

    let mut s = Session::new(config(), false);
    s.refuse(Reply::fixed(421, (4, 3, 2), "Try later"));
    assert!(matches!(s.next(), Progress::Close));
    assert_eq!(s.take_output(), b"421 4.3.2 Try later\r\n");
}

#[test]
fn too_many_errors_close_the_connection() {
    let mut c = config();
    c.max_errors = 3;
    let mut h = Harness::new(c);
    h.script(
        "S: 220 mx.example ESMTP wasmail
         C: FOO
         C: MAIL FROM:<a@b.example>
         C: NOOP
         C: EHLO
         C: NOOP
         S: 500 5.5.2 Command not recognized
         S: 503 5.5.1 Send HELO/EHLO first
         S: 250 2.0.0 Ok
         S: 501 5.5.4 Syntax: EHLO domain
         S: 421 4.7.0 mx.example Too many errors, closing connection",
    );
    assert!(h.closed);
    assert_eq!(h.session.errors(), 3);
    assert!(matches!(h.session.next(), Progress::Close));
}

#[test]
fn long_lines() {
    let mut h = Harness::new(config());
    let long = "x".repeat(600);
    // Exactly 512 octets with CRLF are fine.
    let fits = format!("NOOP {}", "y".repeat(512 - 7));
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         C: {long}
         C: NOOP
         S: 500 5.5.2 Line too long
         S: 250 2.0.0 Ok
         C: {fits}
         S: 250 2.0.0 Ok
         C: {fits}y
         S: 500 5.5.2 Line too long"
    ));
    // A client sending megabytes without a line end is cut off.
    let mut h = Harness::new(config());
    assert_eq!(
        h.flood_without_line_end(512),
        "500 5.5.2 Line too long\r\n421 4.7.0 mx.example Line too long, closing connection\r\n"
    );
}

#[test]
fn sequence_errors_and_simple_commands() {
    let mut c = config();
    c.max_recipients = 2;
    c.max_errors = 100;
    let mut h = Harness::new(c);
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         C: MAIL FROM:<a@b.example>
         S: 503 5.5.1 Send HELO/EHLO first
         C: RCPT TO:<a@b.example>
         S: 503 5.5.1 Need MAIL command
         C: DATA
         S: 503 5.5.1 Need MAIL command
         C: HELO client.example
         S: 250 mx.example
         C: RCPT TO:<a@b.example>
         S: 503 5.5.1 Need MAIL command
         C: MAIL FROM:<a@b.example>
         S: 250 2.1.0 Ok
         C: MAIL FROM:<a@b.example>
         S: 503 5.5.1 Nested MAIL command
         C: DATA
         S: 554 5.5.1 No valid recipients
         C: RCPT TO:<1@b.example>
         C: RCPT TO:<2@b.example>
         C: RCPT TO:<3@b.example>
         S: 250 2.1.5 Ok
         S: 250 2.1.5 Ok
         S: 452 4.5.3 Too many recipients
         C: RCPT TO:<δοκιμή@b.example>
         S: 553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter
         C: DATA x
         S: 501 5.5.4 Syntax: DATA
         C: RSET
         S: 250 2.0.0 Ok
         C: MAIL FROM:<δοκιμή@b.example>
         S: 553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter
         C: MAIL FROM:<a@b.example> SIZE=10001
         S: 552 5.3.4 Message size exceeds fixed maximum message size
         C: MAIL FROM:<a@b.example> SIZE=999999999999999999999
         S: 552 5.3.4 Message size exceeds fixed maximum message size
         C: MAIL FROM:<a@b.example> BODY=BINARYMIME
         S: 555 5.5.4 BODY=BINARYMIME not supported
         C: MAIL FROM:<a@b.example> X-FOO=1
         S: 555 5.5.4 Unsupported parameter
         C: MAIL FROM:a@b.example
         S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
         C: MAIL FROM:<a@b..example>
         S: 501 5.1.7 Bad sender address syntax: invalid domain name
         C: MAIL FROM:<δοκιμή@b.example> SMTPUTF8 SIZE=10000
         S: 250 2.1.0 Ok
         C: RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>
         S: 250 2.1.5 Ok
         C: RCPT TO:<>
         S: 501 5.1.3 Bad recipient address syntax: empty address
         C: VRFY postmaster
         S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
         C: EXPN staff
         S: 502 5.5.1 EXPN not available
         C: HELP
         S: 214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH
         C: NOOP hello
         S: 250 2.0.0 Ok
         C: frobnicate
         S: 500 5.5.2 Command not recognized
         {}
         C: QUIT now
         S: 501 5.5.4 Syntax: QUIT",
        ehlo()
    ));
    // The second EHLO dropped the SMTPUTF8 transaction and said so.
    assert_eq!(h.events.iter().filter(|e| *e == "Reset").count(), 2);
    assert!(h.session.transaction().is_none());
    assert_eq!(h.session.with_protocol(), "ESMTP");
}

#[test]
fn utf8_transactions_are_reported_for_received_headers() {
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<δοκιμή@b.example> SMTPUTF8
         C: RCPT TO:<c@d.example> NOTIFY=FAILURE ORCPT=rfc822;c+40d.example
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>
         C: x
         C: .
         S: 250 2.0.0 Ok: queued as 1",
        ehlo()
    ));
    let (txn, with) = &h.transactions[0];
    assert_eq!(*with, "UTF8SMTP");
    assert_eq!(
        txn.recipients[0].1.orcpt,
        Some(("rfc822".to_owned(), "c@d.example".to_owned()))
    );
    let mut s = Session::new(config(), true);
    s.greet();
    assert_eq!(s.with_protocol(), "SMTP");
}

#[test]
fn refusals_from_the_driver() {
    let mut h = Harness::new(config()).policy(|e| match e {
        Event::Helo { name, .. } if name == "bad" => Some(Reply::fixed(550, (5, 7, 1), "Go away")),
        Event::MailFrom { from, .. } if from.is_null() => {
            Some(Reply::fixed(550, (5, 7, 1), "No bounces"))
        }
        Event::DataStart {
            kind: DataKind::Data,
        } => Some(Reply::fixed(451, (4, 3, 0), "Try later")),
        _ => None,
    });
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         C: EHLO bad
         S: 550 5.7.1 Go away
         C: MAIL FROM:<a@b.example>
         S: 503 5.5.1 Send HELO/EHLO first
         {}
         C: MAIL FROM:<>
         S: 550 5.7.1 No bounces
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 451 4.3.0 Try later
         C: RCPT TO:<c@d.example>
         S: 503 5.5.1 Need MAIL command",
        ehlo()
    ));
    // Driver refusals are not client errors.
    assert_eq!(h.session.errors(), 2);
}

#[test]
fn a_decision_must_be_answered_before_anything_else_happens() {
    let mut s = Session::new(config(), false);
    s.greet();
    s.feed(b"EHLO a\r\nNOOP\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::Helo { .. })));
    assert!(matches!(s.next(), Progress::AwaitingAnswer));
    assert!(matches!(s.next(), Progress::AwaitingAnswer));
    s.accept();
    assert!(matches!(s.next(), Progress::NeedInput));
    // Answers without a pending decision are ignored.
    s.accept();
    s.reply(Reply::fixed(550, (5, 0, 0), "x"));
    s.authenticated("nobody".to_owned());
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("250 STARTTLS\r\n250 2.0.0 Ok\r\n")
    );
    assert_eq!(s.account(), None);
}

#[test]
fn disconnect_at_any_time() {
    let mut s = Session::new(config(), false);
    s.greet();
    s.feed(b"EHLO a\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::Helo { .. })));
    s.disconnect(Reply::fixed(421, (4, 3, 2), "mx.example Shutting down"));
    assert!(matches!(s.next(), Progress::Close));
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("421 4.3.2 mx.example Shutting down\r\n")
    );
    s.feed(b"NOOP\r\n");
    assert!(matches!(s.next(), Progress::Close));
    assert!(!s.has_output());
}

#[test]
fn the_hostname_cannot_inject_replies() {
    let mut c = config();
    c.hostname = "mx\r\n250 injected".to_owned();
    let mut s = Session::new(c, false);
    s.greet();
    assert_eq!(s.take_output(), b"220 mx250injected ESMTP wasmail\r\n");
}

// ---------------------------------------------------------------------------------------------
// DATA: smuggling, dot-stuffing, size.

/// Every variant of a fake end-of-data that some server once accepted: none ends the data,
/// the smuggled transaction never becomes commands, and the message is refused at its real end.
#[test]
fn smtp_smuggling_variants_are_content() {
    for variant in [
        "\\n.\\n",
        "\\n.\\r\\n",
        "\\r.\\r",
        "\\r\\n.\\n",
        "\\r\\n.\\r",
        "\\r.\\r\\n",
        "\\n.\\r",
        "\\r\\n.\\r\\r\\n",
        "\\r\\n\\x00.\\r\\n",
    ] {
        let variant = variant.replace("\\x00", "\u{0}");
        let mut h = Harness::new(config());
        h.script(&format!(
            "S: 220 mx.example ESMTP wasmail
             {}
             C: MAIL FROM:<a@b.example>
             C: RCPT TO:<c@d.example>
             C: DATA
             S: 250 2.1.0 Ok
             S: 250 2.1.5 Ok
             S: 354 End data with <CR><LF>.<CR><LF>
             R: Subject: hi\\r\\n\\r\\nbody{variant}MAIL FROM:<admin@bank.example>\\r\\nRCPT TO:<victim@d.example>\\r\\nDATA\\r\\nFrom: admin@bank.example\\r\\n\\r\\nsmuggled\\r\\n
             C: .
             S: {}
             C: NOOP
             S: 250 2.0.0 Ok",
            ehlo(),
            if variant.contains('\0') {
                // A NUL is not a line end: this one is a clean message with odd content.
                "250 2.0.0 Ok: queued as 1"
            } else {
                "550 5.6.11 Bare CR or LF not allowed (RFC 5321 2.3.8)"
            }
        ));
        assert!(
            !h.events
                .iter()
                .any(|e| e.contains("admin@bank") || e.contains("victim")),
            "{variant:?}: {:#?}",
            h.events
        );
        assert_eq!(
            h.events
                .iter()
                .filter(|e| e.starts_with("MailFrom"))
                .count(),
            1
        );
        if !variant.contains('\0') {
            assert!(h.has_event("MessageAborted"), "{variant:?}");
            assert!(h.messages.is_empty());
            assert_eq!(h.events.last().map(String::as_str), Some("Reset"));
        }
    }
}

/// Dot-stuffs a message the way a client does (RFC 5321 4.5.2).
fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line_start = true;
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[test]
fn dot_stuffing_round_trip() {
    let message = b".\r\n..\r\n.leading dot\r\nmiddle . dot\r\n...\r\n. \r\n\r\n.\r\n".to_vec();
    let mut h = Harness::new(config());
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>",
        ehlo()
    ));
    h.feed(&stuff(&message));
    h.expect("250 2.0.0 Ok: queued as 1\r\n");
    assert_eq!(h.messages, [message]);
}

#[test]
fn oversize_message_is_consumed_then_refused() {
    let mut c = config();
    c.max_message_size = 100;
    let mut h = Harness::new(c);
    h.script(&format!(
        "S: 220 mx.example ESMTP wasmail
         {}
         C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>",
        ehlo().replace("SIZE 10000", "SIZE 100")
    ));
    for _ in 0..10 {
        h.feed(b"0123456789012345678901234567890123456789\r\n");
    }
    assert!(h.output.is_empty(), "no reply before the end of data");
    h.feed(b".\r\nNOOP\r\n");
    h.expect("552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n");
    assert_eq!(
        h.events
            .iter()
            .filter(|e| e.starts_with("MessageAborted"))
            .count(),
        1
    );
    assert!(h.messages.is_empty());
    assert!(!h.has_event("MessageEnd"));
    // Exactly at the limit is fine.
    h.script(
        "C: MAIL FROM:<a@b.example>
         C: RCPT TO:<c@d.example>
         C: DATA
         S: 250 2.1.0 Ok
         S: 250 2.1.5 Ok
         S: 354 End data with <CR><LF>.<CR><LF>",
    );
    h.feed(&stuff(&[b"x".repeat(98), b"\r\n".to_vec()].concat()));
    h.expect("250 2.0.0 Ok: queued as 1\r\n");
    assert_eq!(h.messages[0].len(), 100);
}

#[test]
fn big_messages_stream_in_bounded_chunks() {
    let mut c = config();
    c.max_message_size = 0;
    let mut s = Session::new(c, false);
    s.greet();
    s.feed(b"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
    let mut received = 0usize;
    let mut pump = |s: &mut Session| loop {
        match s.next() {
            Progress::NeedInput => return None,
            Progress::Event(Event::MessageChunk(c)) => {
                assert!(c.len() <= CHUNK_SIZE);
                received += c.len();
            }
            Progress::Event(Event::MessageEnd { size }) => return Some(size),
            Progress::Event(_) => s.accept(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(pump(&mut s), None);
    // One 8 MiB line (DATA lines are not limited), fed 100,000 octets at a time.
    let line = vec![b'a'; 8 << 20];
    for piece in line.chunks(100_000) {
        s.feed(piece);
        assert_eq!(pump(&mut s), None);
        assert_eq!(s.buffered_input(), 0);
    }
    s.feed(b"\r\n.\r\n");
    assert_eq!(pump(&mut s), Some((8 << 20) + 2));
    assert_eq!(received, (8 << 20) + 2);
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// The same client stream cut into pieces at every possible point (and into single octets)
/// gives the same events, messages and output.
#[test]
fn any_split_of_the_input_gives_the_same_result() {
    let stream = b"EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=50\r\nRCPT TO:<c@d.example>\r\n\
RCPT TO:<e@d.example>\r\nDATA\r\n.x\r\n..\r\nline\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n\
BDAT 5\r\nab\r\ncBDAT 2 LAST\r\n\n.RSET\r\nNOOP\r\nQUIT\r\n";
    let run = |pieces: &[&[u8]]| {
        let mut h =
            Harness::new(config()).policy(refuse_rcpt("e", Reply::fixed(550, (5, 1, 1), "No")));
        h.feed_pieces(pieces);
        let t = h.t;
        (
            t.events,
            h.messages,
            String::from_utf8(t.output).unwrap(),
            t.closed,
        )
    };
    let whole = run(&[stream]);
    assert!(whole.3, "QUIT reached");
    assert_eq!(
        whole.1,
        [b"x\r\n.\r\nline\r\n".to_vec(), b"ab\r\nc\n.".to_vec()]
    );
    assert_any_split_gives(stream, run, &whole);
}

/// 20,000 pseudo-random client streams through the fuzz target's driver loop.
#[test]
fn pseudo_random_inputs_never_break_the_session() {
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for seed in 0..20_000u64 {
        let input = fuzzing::generate(seed);
        fuzzing::run(&input);
        seen.entry(if input.windows(4).any(|w| w == b"BDAT") {
            "bdat"
        } else {
            "other"
        })
        .and_modify(|n| *n += 1)
        .or_insert(1);
    }
    assert!(seen.get("bdat").copied().unwrap_or(0) > 1000);
}

#[test]
fn partial_writes_and_default_answers() {
    let mut s = Session::new(config(), false);
    s.greet();
    assert_eq!(s.output(), b"220 mx.example ESMTP wasmail\r\n");
    s.consume_output(4);
    assert_eq!(s.output(), b"mx.example ESMTP wasmail\r\n");
    s.consume_output(usize::MAX);
    assert!(!s.has_output());
    s.feed(b"HELO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n");
    while let Progress::Event(_) = s.next() {
        s.accept();
    }
    s.feed(b"x\r\n.\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::MessageChunk(_))));
    assert!(matches!(
        s.next(),
        Progress::Event(Event::MessageEnd { size: 3 })
    ));
    // `accept` on a MessageEnd is the default positive reply.
    s.accept();
    assert!(matches!(s.next(), Progress::NeedInput));
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued\r\n")
    );
    assert_eq!(s.with_protocol(), "SMTP");
    assert_eq!(s.state_name(), "ExpectMail");
}
