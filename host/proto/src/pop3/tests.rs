//! Transcript tests: `C:`/`S:` scripts (several taken from the RFCs' examples) replayed against
//! a [`Session`] with a scripted driver, asserting the exact bytes of every response and where
//! the flush points (NeedInput) fall. The script format and the driver loop are
//! [`crate::testing`]'s, shared with SMTP.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::fuzzing;
use super::{
    Event, Expire, Listing, LoginFailure, MAX_QUEUED_OUTPUT, Mechanism, Progress, Session,
    SessionConfig,
};
use crate::testing::{Driver, Transcript, assert_any_split_gives, deref_transcript};

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "pop.example".to_owned(),
        max_line_length: 255,
        max_errors: 10,
        stls: false,
        plaintext_auth: true,
        plaintext_needs_tls: false,
        expire: None,
        login_delay: None,
        policy_varies_by_user: false,
    }
}

/// A message of exactly `size` octets (CRLF line ends): a Subject header, a blank line, and
/// body lines of `a`s.
fn sized(subject: &str, size: usize) -> Vec<u8> {
    let mut m = format!("Subject: {subject}\r\n\r\n").into_bytes();
    while m.len() < size {
        let n = (size - m.len()).min(62);
        assert!(n >= 2, "size too small");
        let n = if size - m.len() - n == 1 { n - 1 } else { n };
        m.extend(std::iter::repeat_n(b'a', n - 2));
        m.extend_from_slice(b"\r\n");
    }
    assert_eq!(m.len(), size);
    m
}

/// A scripted driver: a login succeeds when the secret is `password` (the account is the
/// user name) unless `failures` holds an answer for it; messages are served from `messages`.
/// Every event is recorded in order (Debug form).
struct Harness {
    t: Transcript<Session>,
    password: String,
    /// Answers for the next logins, before the password is looked at.
    failures: VecDeque<LoginFailure>,
    messages: Vec<Vec<u8>>,
    uidls: Vec<String>,
    /// Message numbers whose content cannot be read.
    unavailable: Vec<usize>,
    update_ok: bool,
    /// `tls_started` arguments after a StartTls.
    after_tls: (bool, bool),
    /// The account's own EXPIRE and LOGIN-DELAY, given before `logged_in`.
    account_policy: Option<(Option<Expire>, Option<u32>)>,
}

deref_transcript!(Harness, Session);

impl Harness {
    fn new(config: SessionConfig, messages: Vec<Vec<u8>>) -> Harness {
        let mut session = Session::new(config, false);
        session.greet();
        Harness::with_session(session, messages)
    }

    fn with_session(session: Session, messages: Vec<Vec<u8>>) -> Harness {
        let uidls = (1..=messages.len()).map(|i| format!("uid{i}")).collect();
        Harness {
            t: Transcript::new(session),
            password: "secret".to_owned(),
            failures: VecDeque::new(),
            messages,
            uidls,
            unavailable: Vec::new(),
            update_ok: true,
            after_tls: (true, false),
            account_policy: None,
        }
    }

    fn listing(&self) -> Vec<Listing> {
        self.messages
            .iter()
            .zip(&self.uidls)
            .map(|(m, u)| Listing {
                size: m.len() as u64,
                uidl: u.clone(),
            })
            .collect()
    }
}

impl Driver for Harness {
    type Session = Session;

    fn transcript(&mut self) -> &mut Transcript<Session> {
        &mut self.t
    }

    fn answer(&mut self, event: Event) {
        self.t.events.push(format!("{event:?}"));
        match event {
            Event::Login { user, secret, .. } => {
                if let Some(why) = self.failures.pop_front() {
                    self.t.session.login_failed(why);
                } else if *secret.expose() == self.password {
                    if let Some((expire, delay)) = self.account_policy {
                        self.t.session.account_policy(expire, delay);
                    }
                    let listing = self.listing();
                    self.t.session.logged_in(user, listing);
                } else {
                    self.t.session.login_failed(LoginFailure::Credentials);
                }
            }
            Event::Retrieve { number, .. } => {
                match self.messages.get(number - 1) {
                    Some(m) if !self.unavailable.contains(&number) => {
                        let m = m.clone();
                        self.t.session.message(&m);
                    }
                    _ => self.t.session.message_unavailable(),
                };
            }
            Event::Update { .. } => self.t.session.updated(self.update_ok),
            Event::StartTls => {
                self.t.flush();
                let (plain, needs) = self.after_tls;
                self.t.session.tls_started(plain, needs);
            }
        }
    }
}

/// `S:` lines for a message as RETR sends it (its lines, dot-stuffed, then `.`).
fn sent(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let mut out = String::new();
    for line in text.split_terminator("\r\n") {
        let stuffed = if line.starts_with('.') { "." } else { "" };
        out.push_str(&format!("S: {stuffed}{line}\n"));
    }
    out.push_str("S: .");
    out
}

const GREETING: &str = "S: +OK pop.example POP3 server ready";

const LOGIN: &str = "
    C: USER mrose
    S: +OK Send PASS
    C: PASS secret";

/// The RFC 1939 10 maildrop: two messages of 120 and 200 octets.
fn rfc_maildrop() -> Vec<Vec<u8>> {
    vec![sized("one", 120), sized("two", 200)]
}

fn logged_in(messages: Vec<Vec<u8>>) -> Harness {
    let n = messages.len();
    let octets: usize = messages.iter().map(Vec::len).sum();
    let mut h = Harness::new(config(), messages);
    h.script(&format!(
        "{GREETING}
         {LOGIN}
         S: +OK {n} messages ({octets} octets)"
    ));
    h
}

// ---------------------------------------------------------------------------------------------
// RFC 1939 examples.

/// RFC 1939 10, with USER/PASS instead of APOP (not offered) and our texts where the RFC's
/// are examples.
#[test]
fn rfc1939_section10_example_session() {
    let mut h = Harness::new(config(), rfc_maildrop());
    let (one, two) = (h.messages[0].clone(), h.messages[1].clone());
    h.script(&format!(
        "{GREETING}
         {LOGIN}
         S: +OK 2 messages (320 octets)
         C: STAT
         S: +OK 2 320
         C: LIST
         S: +OK 2 messages (320 octets)
         S: 1 120
         S: 2 200
         S: .
         C: RETR 1
         S: +OK 120 octets
         {}
         C: DELE 1
         S: +OK message 1 deleted
         C: RETR 2
         S: +OK 200 octets
         {}
         C: DELE 2
         S: +OK message 2 deleted
         C: QUIT
         S: +OK pop.example signing off",
        sent(&one),
        sent(&two)
    ));
    assert!(h.closed);
    assert_eq!(
        h.events,
        [
            "Login { mechanism: User, authzid: None, user: \"mrose\", secret: Secret(..) }",
            "Retrieve { number: 1, lines: None }",
            "Retrieve { number: 2, lines: None }",
            "Update { deleted: [1, 2] }",
        ]
    );
}

/// The examples of RFC 1939 5 and 7, command by command.
#[test]
fn rfc1939_command_examples() {
    let mut h = Harness::new(config(), rfc_maildrop());
    h.uidls = vec![
        "whqtswO00WBw418f9t5JxYwZ".to_owned(),
        "QhdPYR:00WBw1Ph7x7".to_owned(),
    ];
    h.script(&format!(
        "{GREETING}
         {LOGIN}
         S: +OK 2 messages (320 octets)
         C: STAT
         S: +OK 2 320
         C: LIST 2
         S: +OK 2 200
         C: LIST 3
         S: -ERR no such message, only 2 messages in maildrop
         C: UIDL
         S: +OK Unique-ID listing follows
         S: 1 whqtswO00WBw418f9t5JxYwZ
         S: 2 QhdPYR:00WBw1Ph7x7
         S: .
         C: UIDL 2
         S: +OK 2 QhdPYR:00WBw1Ph7x7
         C: UIDL 3
         S: -ERR no such message, only 2 messages in maildrop
         C: NOOP
         S: +OK
         C: DELE 1
         S: +OK message 1 deleted
         C: DELE 1
         S: -ERR message 1 already deleted
         C: LIST
         S: +OK 1 messages (200 octets)
         S: 2 200
         S: .
         C: UIDL
         S: +OK Unique-ID listing follows
         S: 2 QhdPYR:00WBw1Ph7x7
         S: .
         C: STAT
         S: +OK 1 200
         C: RSET
         S: +OK maildrop has 2 messages (320 octets)
         C: TOP 100 3
         S: -ERR no such message, only 2 messages in maildrop"
    ));
    assert_eq!(h.session.errors(), 4);
    // USER / PASS (RFC 1939 7): a refused PASS means USER again.
    let mut h = Harness::new(config(), rfc_maildrop());
    h.failures.push_back(LoginFailure::InUse);
    h.script(&format!(
        "{GREETING}
         C: PASS secret
         S: -ERR Send USER first
         {LOGIN}
         S: -ERR [IN-USE] Maildrop is locked by another session
         C: PASS secret
         S: -ERR Send USER first
         {LOGIN}
         S: +OK 2 messages (320 octets)"
    ));
    assert_eq!(h.session.account(), Some("mrose"));
    assert_eq!(h.session.state_name(), "Transaction");
}

/// RFC 1939 7 QUIT in AUTHORIZATION: no UPDATE.
#[test]
fn quit_before_login_updates_nothing() {
    let mut h = Harness::new(config(), rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: USER mrose
         C: QUIT
         C: STAT
         S: +OK Send PASS
         S: +OK pop.example signing off"
    ));
    assert!(h.closed);
    assert!(h.events.is_empty());
}

// ---------------------------------------------------------------------------------------------
// RETR and TOP.

#[test]
fn retr_dot_stuffs_and_counts_what_list_says() {
    let message =
        b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\nmiddle . dot\r\n...\r\n. \r\n\r\n.\r\n"
            .to_vec();
    let mut h = logged_in(vec![message.clone()]);
    let size = message.len();
    h.script(&format!(
        "C: LIST 1
         S: +OK 1 {size}
         C: RETR 1
         S: +OK {size} octets
         S: Subject: dots
         S: 
         S: ..
         S: ...
         S: ..leading
         S: middle . dot
         S: ....
         S: .. 
         S: 
         S: ..
         S: ."
    ));
    // A client unstuffing the lines gets the message back, octet for octet.
    h.feed(b"RETR 1\r\n");
    let out = std::mem::take(&mut h.output);
    let body = out
        .strip_prefix(format!("+OK {size} octets\r\n").as_bytes())
        .and_then(|b| b.strip_suffix(b".\r\n"))
        .unwrap();
    let unstuffed: Vec<u8> = body
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|line| line.strip_prefix(b".").unwrap_or(line).to_vec())
        .collect();
    assert_eq!(unstuffed, message);
}

#[test]
fn retr_normalises_line_ends() {
    // Bare LF goes out as CRLF; a missing final line end is added; the octet count is what
    // is sent (before stuffing). An empty message is just the terminator.
    let mut h = logged_in(vec![
        b"Subject: lf\n\n.x\nend".to_vec(),
        Vec::new(),
        b"Subject: cr\r\n\r\na\rb\r".to_vec(),
    ]);
    h.script(
        "C: RETR 1
         S: +OK 24 octets
         S: Subject: lf
         S: 
         S: ..x
         S: end
         S: .
         C: RETR 2
         S: +OK 0 octets
         S: .",
    );
    h.feed(b"RETR 3\r\n");
    assert_eq!(
        String::from_utf8_lossy(&std::mem::take(&mut h.output)),
        "+OK 20 octets\r\nSubject: cr\r\n\r\na\rb\r\n.\r\n"
    );
}

#[test]
fn top_sends_the_header_and_n_body_lines() {
    let message = b"From: a@b.example\r\nSubject: top\r\n\r\none\r\n.two\r\nthree\r\n".to_vec();
    let mut h = logged_in(vec![message, b"Only: header\r\nNo: body".to_vec()]);
    h.script(
        "C: TOP 1 0
         S: +OK 35 octets
         S: From: a@b.example
         S: Subject: top
         S: 
         S: .
         C: TOP 1 2
         S: +OK 46 octets
         S: From: a@b.example
         S: Subject: top
         S: 
         S: one
         S: ..two
         S: .
         C: TOP 1 99999999999999999999
         S: +OK 53 octets
         S: From: a@b.example
         S: Subject: top
         S: 
         S: one
         S: ..two
         S: three
         S: .
         C: TOP 2 5
         S: +OK 24 octets
         S: Only: header
         S: No: body
         S: .
         C: TOP 1
         S: -ERR Syntax: TOP msg n
         C: TOP 3 0
         S: -ERR no such message, only 2 messages in maildrop",
    );
    assert!(h.has_event("Retrieve { number: 1, lines: Some(18446744073709551615) }"));
}

#[test]
fn an_unreadable_message_is_a_temporary_failure() {
    let mut h = logged_in(rfc_maildrop());
    h.unavailable = vec![2];
    h.script(
        "C: RETR 2
         C: NOOP
         S: -ERR [SYS/TEMP] message 2 cannot be read now, try again later
         S: +OK",
    );
    assert_eq!(
        h.session.errors(),
        0,
        "the server's failure, not the client's"
    );
}

// ---------------------------------------------------------------------------------------------
// DELE, RSET, STAT, QUIT.

#[test]
fn dele_rset_stat_and_quit_reports_the_deleted_numbers() {
    let messages = vec![
        sized("1", 100),
        sized("2", 200),
        sized("3", 300),
        sized("4", 400),
    ];
    let mut h = logged_in(messages);
    h.script(
        "C: DELE 3
         C: DELE 1
         C: STAT
         C: RETR 3
         C: LIST 1
         C: DELE 0
         C: DELE 5
         S: +OK message 3 deleted
         S: +OK message 1 deleted
         S: +OK 2 600
         S: -ERR message 3 already deleted
         S: -ERR message 1 already deleted
         S: -ERR no such message, only 4 messages in maildrop
         S: -ERR no such message, only 4 messages in maildrop
         C: RSET
         C: STAT
         C: DELE 4
         C: DELE 2
         C: DELE 1
         C: LIST
         S: +OK maildrop has 4 messages (1000 octets)
         S: +OK 4 1000
         S: +OK message 4 deleted
         S: +OK message 2 deleted
         S: +OK message 1 deleted
         S: +OK 1 messages (300 octets)
         S: 3 300
         S: .",
    );
    assert_eq!(h.session.state_name(), "Transaction");
    h.script(
        "C: QUIT
         S: +OK pop.example signing off",
    );
    assert_eq!(h.events.last().unwrap(), "Update { deleted: [1, 2, 4] }");
    assert!(h.closed);
}

#[test]
fn a_failed_update_is_reported_and_closes() {
    let mut h = logged_in(rfc_maildrop());
    h.update_ok = false;
    h.script(
        "C: DELE 2
         C: QUIT
         C: NOOP
         S: +OK message 2 deleted
         S: -ERR [SYS/TEMP] some deleted messages not removed",
    );
    assert!(h.closed);
    assert_eq!(h.events.last().unwrap(), "Update { deleted: [2] }");
    // QUIT without deletions still asks (the driver's retention policy may expunge).
    let mut h = logged_in(vec![]);
    h.script(
        "C: STAT
         C: LIST
         C: QUIT
         S: +OK 0 0
         S: +OK 0 messages (0 octets)
         S: .
         S: +OK pop.example signing off",
    );
    assert_eq!(h.events.last().unwrap(), "Update { deleted: [] }");
}

// ---------------------------------------------------------------------------------------------
// CAPA (RFC 2449).

#[test]
fn capa_in_each_state() {
    let mut c = config();
    c.stls = true;
    c.plaintext_auth = false;
    c.plaintext_needs_tls = true;
    c.expire = Some(Expire::Days(30));
    c.login_delay = Some(900);
    let mut h = Harness::new(c, rfc_maildrop());
    // Plain connection, plaintext logins only after STLS: no USER, no SASL.
    h.script(&format!(
        "{GREETING}
         C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: UIDL
         S: RESP-CODES
         S: PIPELINING
         S: AUTH-RESP-CODE
         S: STLS
         S: IMPLEMENTATION wasmail
         S: EXPIRE 30
         S: LOGIN-DELAY 900
         S: .
         C: STLS
         S: +OK Begin TLS negotiation
         C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: USER
         S: UIDL
         S: RESP-CODES
         S: PIPELINING
         S: AUTH-RESP-CODE
         S: SASL PLAIN LOGIN
         S: IMPLEMENTATION wasmail
         S: EXPIRE 30
         S: LOGIN-DELAY 900
         S: .
         {LOGIN}
         S: +OK 2 messages (320 octets)
         C: capa
         S: +OK Capability list follows
         S: TOP
         S: USER
         S: UIDL
         S: RESP-CODES
         S: PIPELINING
         S: AUTH-RESP-CODE
         S: SASL PLAIN LOGIN
         S: IMPLEMENTATION wasmail
         S: EXPIRE 30
         S: LOGIN-DELAY 900
         S: ."
    ));
    // Implicit TLS, EXPIRE NEVER, no LOGIN-DELAY; CAPA between USER and PASS keeps the user.
    let mut c = config();
    c.stls = true;
    c.expire = Some(Expire::Never);
    let mut h = Harness::with_session(Session::new(c, true), rfc_maildrop());
    h.session.greet();
    h.script(&format!(
        "{GREETING}
         C: USER mrose
         C: CAPA
         C: PASS secret
         S: +OK Send PASS
         S: +OK Capability list follows
         S: TOP
         S: USER
         S: UIDL
         S: RESP-CODES
         S: PIPELINING
         S: AUTH-RESP-CODE
         S: SASL PLAIN LOGIN
         S: IMPLEMENTATION wasmail
         S: EXPIRE NEVER
         S: .
         S: +OK 2 messages (320 octets)"
    ));
    assert!(h.session.is_tls());
}

#[test]
fn capa_says_user_before_login_and_the_accounts_own_policy_after() {
    // RFC 2449 6.5, 6.7: when accounts differ, AUTHORIZATION lists the defaults with USER;
    // TRANSACTION lists the logged-in account's values.
    let mut c = config();
    c.expire = Some(Expire::Days(30));
    c.login_delay = Some(900);
    c.policy_varies_by_user = true;
    let mut h = Harness::new(c, rfc_maildrop());
    h.account_policy = Some((Some(Expire::Days(0)), None));
    h.script(&format!(
        "{GREETING}
         C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: USER
         S: UIDL
         S: RESP-CODES
         S: PIPELINING
         S: AUTH-RESP-CODE
         S: SASL PLAIN LOGIN
         S: IMPLEMENTATION wasmail
         S: EXPIRE 30 USER
         S: LOGIN-DELAY 900 USER
         S: .
         {LOGIN}
         S: +OK 2 messages (320 octets)
         C: CAPA
         S: +OK Capability list follows
         S: TOP
         S: USER
         S: UIDL
         S: RESP-CODES
         S: PIPELINING
         S: AUTH-RESP-CODE
         S: SASL PLAIN LOGIN
         S: IMPLEMENTATION wasmail
         S: EXPIRE 0
         S: ."
    ));
}

// ---------------------------------------------------------------------------------------------
// AUTH (RFC 5034) and plaintext policy.

fn b64(s: &[u8]) -> String {
    STANDARD.encode(s)
}

#[test]
fn rfc5034_auth_plain_with_and_without_initial_response() {
    let mut h = Harness::new(config(), rfc_maildrop());
    h.password = "test".to_owned();
    h.script(&format!(
        "{GREETING}
         C: AUTH
         S: +OK Supported SASL mechanisms follow
         S: PLAIN
         S: LOGIN
         S: .
         C: AUTH PLAIN
         S: + 
         C: dGVzdAB0ZXN0AHRlc3Q=
         S: +OK 2 messages (320 octets)"
    ));
    assert_eq!(
        h.events,
        ["Login { mechanism: Plain, authzid: None, user: \"test\", secret: Secret(..) }"]
    );
    let mut h = Harness::new(config(), rfc_maildrop());
    h.password = "test".to_owned();
    h.script(&format!(
        "{GREETING}
         C: AUTH PLAIN {}
         S: -ERR [AUTH] Authentication failed
         C: AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=
         S: +OK 2 messages (320 octets)",
        b64(b"admin\0test\0wrong")
    ));
    assert!(h.has_event("Login { mechanism: Plain, authzid: Some(\"admin\"), user: \"test\""));
    assert_eq!(h.session.errors(), 1, "a failed login counts");
}

#[test]
fn auth_login_cancel_and_malformed_responses() {
    let mut h = Harness::new(config(), rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: AUTH LOGIN
         S: + VXNlcm5hbWU6
         C: bXJvc2U=
         S: + UGFzc3dvcmQ6
         C: *
         S: -ERR Authentication cancelled
         C: AUTH LOGIN bXJvc2U=
         S: + UGFzc3dvcmQ6
         C: not base64!
         S: -ERR Invalid base64 in authentication response
         C: AUTH PLAIN =
         S: -ERR Malformed PLAIN response
         C: AUTH CRAM-MD5
         S: -ERR Unrecognized authentication mechanism
         C: AUTH PLAIN a b
         S: -ERR Syntax: AUTH mechanism [initial-response]
         C: auth login bXJvc2U=
         S: + UGFzc3dvcmQ6
         C: c2VjcmV0
         S: +OK 2 messages (320 octets)
         C: AUTH PLAIN
         S: -ERR Command not valid in TRANSACTION state"
    ));
    assert_eq!(h.session.errors(), 5, "cancelling is no mistake");
    assert!(h.has_event("Login { mechanism: Login, authzid: None, user: \"mrose\""));
    assert_eq!(Mechanism::Login.name(), "LOGIN");
}

#[test]
fn a_sasl_response_may_be_longer_than_a_command() {
    let password = "p".repeat(700);
    let response = b64(format!("\0mrose\0{password}").as_bytes());
    assert!(response.len() > 255);
    let mut h = Harness::new(config(), rfc_maildrop());
    h.password = password;
    h.script(&format!(
        "{GREETING}
         C: AUTH PLAIN {response}
         S: -ERR Line too long
         C: AUTH PLAIN
         S: + 
         C: {response}
         S: +OK 2 messages (320 octets)
         C: NOOP {}
         S: -ERR Line too long",
        "x".repeat(300)
    ));
    // Longer than MAX_AUTH_LINE: the exchange ends.
    let mut h = Harness::new(config(), rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: AUTH LOGIN
         S: + VXNlcm5hbWU6
         C: {}
         S: -ERR Line too long
         C: NOOP
         S: -ERR Command not valid in AUTHORIZATION state (log in first)",
        "A".repeat(5000)
    ));
    assert_eq!(h.session.state_name(), "ExpectUser");
}

#[test]
fn plaintext_logins_are_refused_without_tls() {
    let mut c = config();
    c.stls = true;
    c.plaintext_auth = false;
    c.plaintext_needs_tls = true;
    let mut h = Harness::new(c.clone(), rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: USER mrose
         C: PASS secret
         C: AUTH
         C: AUTH PLAIN {}
         S: -ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)
         S: -ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)
         S: -ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)
         S: -ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)",
        b64(b"\0mrose\0secret")
    ));
    assert!(h.events.is_empty());
    c.plaintext_needs_tls = false;
    let mut h = Harness::new(c, rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: USER mrose
         S: -ERR [AUTH] Plaintext authentication disallowed
         C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
         S: -ERR APOP not supported"
    ));
}

// ---------------------------------------------------------------------------------------------
// Login failures and the error limit.

#[test]
fn login_failures_carry_their_response_codes() {
    let mut h = Harness::new(config(), rfc_maildrop());
    h.failures = [
        LoginFailure::InUse,
        LoginFailure::Temporary,
        LoginFailure::LoginDelay,
        LoginFailure::Credentials,
    ]
    .into();
    h.script(&format!(
        "{GREETING}
         {LOGIN}
         S: -ERR [IN-USE] Maildrop is locked by another session
         {LOGIN}
         S: -ERR [SYS/TEMP] Temporary authentication failure, try again later
         {LOGIN}
         S: -ERR [LOGIN-DELAY] Logged in too recently, try again later
         {LOGIN}
         S: -ERR [AUTH] Authentication failed
         {LOGIN}
         S: +OK 2 messages (320 octets)"
    ));
    assert_eq!(h.session.errors(), 4);
}

#[test]
fn too_many_errors_close_the_connection() {
    let mut c = config();
    c.max_errors = 4;
    let mut h = Harness::new(c, rfc_maildrop());
    h.password = "right".to_owned();
    h.script(&format!(
        "{GREETING}
         C: FOO
         C: STAT
         C: CAPA x
         C: USER mrose
         C: PASS wrong
         C: NOOP
         S: -ERR Unknown command
         S: -ERR Command not valid in AUTHORIZATION state (log in first)
         S: -ERR Syntax: CAPA
         S: +OK Send PASS
         S: -ERR [AUTH] Authentication failed
         S: -ERR [SYS/PERM] Too many errors, closing"
    ));
    assert!(h.closed);
    assert_eq!(h.session.errors(), 4);
    assert!(matches!(h.session.next(), Progress::Close));
    // In TRANSACTION as well.
    let mut c = config();
    c.max_errors = 2;
    let mut h = Harness::new(c, rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         {LOGIN}
         S: +OK 2 messages (320 octets)
         C: RETR 9
         C: STLS
         C: NOOP
         S: -ERR no such message, only 2 messages in maildrop
         S: -ERR Command not valid in TRANSACTION state
         S: -ERR [SYS/PERM] Too many errors, closing"
    ));
    assert!(h.closed);
    assert!(!h.has_event("Update"), "no UPDATE without QUIT");
}

// ---------------------------------------------------------------------------------------------
// STLS (RFC 2595).

#[test]
fn stls_discards_pipelined_input_and_starts_over() {
    let mut c = config();
    c.stls = true;
    c.plaintext_auth = false;
    c.plaintext_needs_tls = true;
    let mut h = Harness::new(c, rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: STLS now
         S: -ERR Syntax: STLS
         C: USER mrose
         S: -ERR [AUTH] Plaintext authentication disallowed without TLS (use STLS)
         R: STLS\\r\\nUSER mrose\\r\\nPASS secret\\r\\n
         S: +OK Begin TLS negotiation
         C: STLS
         S: -ERR Command not permitted when TLS active
         C: PASS secret
         S: -ERR Send USER first
         {LOGIN}
         S: +OK 2 messages (320 octets)"
    ));
    assert_eq!(h.events[0], "StartTls");
    assert_eq!(
        h.events.iter().filter(|e| e.starts_with("Login")).count(),
        1,
        "the injected login never ran"
    );
    // Not offered: -ERR (in TRANSACTION: see too_many_errors_close_the_connection).
    let mut h = Harness::new(config(), rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: STLS
         S: -ERR STLS not available"
    ));
}

#[test]
fn stls_waits_for_the_handshake() {
    let mut c = config();
    c.stls = true;
    let mut s = Session::new(c, false);
    s.greet();
    s.feed(b"STLS\r\nCAPA\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::StartTls)));
    assert!(matches!(s.next(), Progress::AwaitingAnswer));
    s.feed(b"USER injected\r\n");
    assert_eq!(
        s.buffered_input(),
        0,
        "dropped while waiting for the handshake"
    );
    assert_eq!(s.state_name(), "ExpectTlsHandshake");
    s.tls_started(true, false);
    assert!(s.is_tls());
    assert!(matches!(s.next(), Progress::NeedInput));
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "+OK pop.example POP3 server ready\r\n+OK Begin TLS negotiation\r\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Framing, pipelining, limits.

#[test]
fn pipelined_commands_are_answered_in_order_in_one_flush() {
    let mut h = Harness::new(config(), rfc_maildrop());
    h.drive();
    h.output.clear();
    // One read; the harness takes output only when the session needs input.
    h.feed(b"USER mrose\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nDELE 1\r\nSTAT\r\nRETR 1\r\nQUIT\r\n");
    assert!(h.closed);
    assert_eq!(
        String::from_utf8_lossy(&h.output),
        "+OK Send PASS\r\n+OK 2 messages (320 octets)\r\n+OK 2 320\r\n+OK 1 120\r\n\
         +OK message 1 deleted\r\n+OK 1 200\r\n-ERR message 1 already deleted\r\n\
         +OK pop.example signing off\r\n"
    );
    assert_eq!(h.events.last().unwrap(), "Update { deleted: [1] }");
}

#[test]
fn long_lines() {
    let mut h = Harness::new(config(), rfc_maildrop());
    // Exactly 255 octets with CRLF are fine.
    let fits = format!("USER {}", "u".repeat(255 - 7));
    h.script(&format!(
        "{GREETING}
         C: {fits}
         S: +OK Send PASS
         C: {fits}u
         C: QUIT
         S: -ERR Line too long
         S: +OK pop.example signing off"
    ));
    // A larger configured limit is honoured.
    let mut c = config();
    c.max_line_length = 1000;
    let mut h = Harness::new(c, rfc_maildrop());
    h.script(&format!(
        "{GREETING}
         C: USER {}
         S: +OK Send PASS",
        "u".repeat(900)
    ));
    // A client sending megabytes without a line end is cut off.
    let mut h = Harness::new(config(), rfc_maildrop());
    assert_eq!(
        h.flood_without_line_end(255),
        "-ERR Line too long\r\n-ERR [SYS/PERM] Line too long\r\n"
    );
}

#[test]
fn lenient_spacing_and_case() {
    let mut h = logged_in(rfc_maildrop());
    h.script(
        "C: list  2
         S: +OK 2 200
         C:  Stat 
         S: +OK 2 320
         R: noop\\n
         S: +OK
         C: LIST x
         S: -ERR Invalid message number
         C: XTND XMIT
         S: -ERR Unknown command",
    );
}

#[test]
fn pipelined_output_is_bounded() {
    // One message bigger than the output bound, a driver that does not flush between events:
    // later listings and messages in the same batch are refused until the client has read.
    let big = sized("big", MAX_QUEUED_OUTPUT + 1000);
    let mut h = logged_in(vec![big, sized("small", 100)]);
    h.feed(b"RETR 1\r\nRETR 2\r\nLIST\r\nUIDL\r\nSTAT\r\nRETR 7\r\n");
    let out = std::mem::take(&mut h.output);
    let tail = String::from_utf8_lossy(&out[out.len() - 600..]).into_owned();
    let full =
        "-ERR [SYS/TEMP] Too much output waiting, read the replies and send the command again\r\n";
    assert!(
        tail.ends_with(&format!(
            "\r\n.\r\n{full}{full}{full}+OK 2 {}\r\n-ERR no such message, only 2 messages in maildrop\r\n",
            MAX_QUEUED_OUTPUT + 1100
        )),
        "{tail}"
    );
    assert_eq!(h.session.errors(), 1, "the bound is no client mistake");
    h.script(
        "C: RETR 2
         S: +OK 100 octets
         S: Subject: small
         S: 
         S: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
         S: aaaaaaaaaaaaaaaaaa
         S: .",
    );
}

// ---------------------------------------------------------------------------------------------
// The driver side.

#[test]
fn an_event_must_be_answered_before_anything_else_happens() {
    let mut s = Session::new(config(), false);
    assert!(
        matches!(s.next(), Progress::NeedInput),
        "nothing before greet"
    );
    assert!(!s.has_output());
    s.greet();
    s.greet();
    s.feed(b"USER a\r\nPASS b\r\nSTAT\r\n");
    // Answers before the event is handed out are ignored.
    s.logged_in("early".to_owned(), Vec::new());
    assert!(matches!(s.next(), Progress::Event(Event::Login { .. })));
    assert_eq!(s.state_name(), "ExpectMaildrop");
    assert!(matches!(s.next(), Progress::AwaitingAnswer));
    assert!(matches!(s.next(), Progress::AwaitingAnswer));
    // Answers to other events are ignored too.
    s.message(b"x");
    s.message_unavailable();
    s.updated(true);
    s.tls_started(true, false);
    assert_eq!(s.state_name(), "ExpectMaildrop");
    s.logged_in(
        "a".to_owned(),
        vec![Listing {
            size: 3,
            uidl: "bad uidl\r\n-ERR injected".to_owned(),
        }],
    );
    s.logged_in("twice".to_owned(), Vec::new());
    assert_eq!(s.account(), Some("a"));
    assert!(matches!(s.next(), Progress::NeedInput));
    s.feed(b"UIDL\r\n");
    assert!(matches!(s.next(), Progress::NeedInput));
    assert_eq!(
        String::from_utf8(s.take_output()).unwrap(),
        "+OK pop.example POP3 server ready\r\n+OK Send PASS\r\n+OK 1 messages (3 octets)\r\n\
         +OK 1 3\r\n+OK Unique-ID listing follows\r\n1 bad_uidl__-ERR_injected\r\n.\r\n"
    );
}

#[test]
fn disconnect_at_any_time() {
    let mut s = Session::new(config(), false);
    s.greet();
    s.feed(b"USER a\r\nPASS b\r\n");
    assert!(matches!(s.next(), Progress::Event(Event::Login { .. })));
    s.disconnect("Server shutting down");
    s.disconnect("again");
    assert!(matches!(s.next(), Progress::Close));
    s.feed(b"QUIT\r\n");
    assert_eq!(s.buffered_input(), 0);
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("+OK Send PASS\r\n-ERR [SYS/TEMP] Server shutting down\r\n")
    );
    let mut s = Session::new(config(), false);
    s.greet();
    s.disconnect("-ERR [SYS/PERM] Go away\r\n+OK injected");
    assert!(
        String::from_utf8(s.take_output())
            .unwrap()
            .ends_with("\r\n-ERR [SYS/PERM] Go away+OK injected\r\n")
    );
}

#[test]
fn the_hostname_cannot_inject_responses() {
    let mut c = config();
    c.hostname = "evil\r\n+OK injected".to_owned();
    let mut s = Session::new(c, false);
    s.greet();
    assert_eq!(
        s.take_output(),
        b"+OK evil+OKinjected POP3 server ready\r\n"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let mut s = Session::new(config(), false);
    s.greet();
    s.feed(b"USER mrose\r\nPASS hunter2\r\nAUTH PLAIN AG1yb3NlAGh1bnRlcjI=");
    let Progress::Event(event) = s.next() else {
        panic!()
    };
    assert!(!format!("{event:?}").contains("hunter2"));
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("AG1yb3NlAGh1bnRlcjI"),
        "{debug}"
    );
    assert!(debug.contains("ExpectMaildrop"), "{debug}");
}

#[test]
fn partial_writes() {
    let mut s = Session::new(config(), false);
    s.greet();
    assert_eq!(s.output(), b"+OK pop.example POP3 server ready\r\n");
    s.consume_output(4);
    assert_eq!(s.output(), b"pop.example POP3 server ready\r\n");
    s.consume_output(usize::MAX);
    assert!(!s.has_output());
    assert!(!s.is_tls());
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// The same client stream cut into pieces at every possible point (and into single octets)
/// gives the same events and output.
#[test]
fn any_split_of_the_input_gives_the_same_result() {
    let stream = format!(
        "CAPA\r\nUSER mrose\r\nPASS wrong\r\nAUTH LOGIN\r\nbXJvc2U=\r\nc2VjcmV0\r\nSTAT\r\n\
         LIST\r\nUIDL 2\r\nRETR 1\r\nTOP 2 0\r\nDELE 2\r\nLIST 2\r\nFOO\r\n{}\r\nRSET\r\n\
         DELE 1\nNOOP\r\nQUIT\r\n",
        "x".repeat(300)
    );
    let stream = stream.as_bytes();
    let run = |pieces: &[&[u8]]| {
        let mut h = Harness::new(config(), rfc_maildrop());
        h.feed_pieces(pieces);
        let t = h.t;
        (t.events, String::from_utf8(t.output).unwrap(), t.closed)
    };
    let whole = run(&[stream]);
    assert!(whole.2, "QUIT reached");
    assert_eq!(whole.0.last().unwrap(), "Update { deleted: [1] }");
    assert_any_split_gives(stream, run, &whole);
}

/// 20,000 pseudo-random client streams through the fuzz target's driver loop.
#[test]
fn pseudo_random_inputs_never_break_the_session() {
    let mut deep = 0;
    for seed in 0..20_000u64 {
        let input = fuzzing::generate(seed);
        fuzzing::run(&input);
        if input.windows(4).any(|w| w == b"RETR" || w == b"TOP ") {
            deep += 1;
        }
    }
    assert!(deep > 5000, "{deep}");
}
