//! The SASL exchanges every protocol shares: PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login), mechanism by mechanism, without the protocol around them.
//!
//! SMTP AUTH (RFC 4954, `smtp/auth.rs`) and POP3 AUTH (RFC 5034, `pop3/session.rs`) frame the
//! same steps differently: a challenge is `334 <base64>` in SMTP and `+ <base64>` in POP3, a
//! failure `501` or `-ERR`. This module decides the steps; the protocol words them.
//!
//! ```text
//! start(PLAIN, Some(ir))                                        -> Done(credentials)
//! start(PLAIN, None)  -> Challenge(Empty)    respond(msg)       -> Done(credentials)
//! start(LOGIN, Some(user)) -> Challenge(Password)  respond(pw)  -> Done(credentials)
//! start(LOGIN, None)  -> Challenge(Username) respond(user) -> Challenge(Password) -> ...
//! ```
//!
//! Conventions both protocols share: a response `*` cancels; an initial response `=` is the
//! empty response (RFC 4954 4, RFC 5034 4); anything else is base64. Undecodable base64, invalid
//! UTF-8, control characters in a name or a malformed PLAIN message end the exchange as
//! `Step::Malformed`. The password only ever lives in a [`Secret`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wasmail_types::Secret;

/// The SASL mechanisms offered (SMTP `AUTH PLAIN LOGIN`, POP3 `SASL PLAIN LOGIN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto `LOGIN` (draft-murchison-sasl-login).
    Login,
}

impl Mechanism {
    /// Every mechanism, in the order they are advertised.
    pub const ALL: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

    /// The registered name: `PLAIN` or `LOGIN`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The mechanism a client names (case-insensitive), if it is one of ours.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// What the client proved it knows.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) mechanism: Mechanism,
    /// The authorization identity, when given and different from `identity`.
    pub(crate) authzid: Option<String>,
    /// The authentication identity (authcid).
    pub(crate) identity: String,
    pub(crate) secret: Secret<String>,
}

/// An exchange waiting for the client's next response line.
#[derive(Debug)]
pub(crate) enum Exchange {
    /// The (empty) PLAIN challenge was sent.
    PlainResponse,
    /// LOGIN's `Username:` was sent.
    LoginUsername,
    /// LOGIN's `Password:` was sent; the user name is known.
    LoginPassword { username: String },
}

/// The server challenge to send, which the protocol wraps in its own reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// PLAIN without an initial response: an empty challenge.
    Empty,
    /// LOGIN: `Username:`.
    Username,
    /// LOGIN: `Password:`.
    Password,
}

impl Challenge {
    /// The challenge as it goes on the wire (base64).
    pub(crate) fn base64(self) -> &'static str {
        match self {
            Challenge::Empty => "",
            Challenge::Username => "VXNlcm5hbWU6",
            Challenge::Password => "UGFzc3dvcmQ6",
        }
    }
}

/// What a step of the exchange leads to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this challenge and wait for the next response line.
    Challenge(Challenge, Exchange),
    /// The exchange is complete.
    Done(Credentials),
    /// The client answered `*` (not a client mistake).
    Cancelled,
    /// The response could not be used: why, for the client.
    Malformed(&'static str),
}

/// Starts an exchange for `AUTH <mechanism> [initial-response]`.
pub(crate) fn start(mechanism: Mechanism, initial: Option<&[u8]>) -> Step {
    let exchange = match mechanism {
        Mechanism::Plain => Exchange::PlainResponse,
        Mechanism::Login => Exchange::LoginUsername,
    };
    match (mechanism, initial) {
        (_, Some(ir)) => respond(exchange, ir, true),
        (Mechanism::Plain, None) => Step::Challenge(Challenge::Empty, exchange),
        (Mechanism::Login, None) => Step::Challenge(Challenge::Username, exchange),
    }
}

/// The client's response line (without its line end) to the exchange's challenge.
/// `initial`: it came as the initial response of the AUTH command, where `=` means empty.
pub(crate) fn respond(exchange: Exchange, line: &[u8], initial: bool) -> Step {
    if line == b"*" {
        return Step::Cancelled;
    }
    let decoded = if initial && line == b"=" {
        Vec::new()
    } else {
        match STANDARD.decode(line) {
            Ok(d) => d,
            Err(_) => return Step::Malformed("Invalid base64 in authentication response"),
        }
    };
    match exchange {
        Exchange::PlainResponse => match plain(&decoded) {
            Some(c) => Step::Done(c),
            None => Step::Malformed("Malformed PLAIN response"),
        },
        Exchange::LoginUsername => match name(decoded) {
            Some(username) => {
                Step::Challenge(Challenge::Password, Exchange::LoginPassword { username })
            }
            None => Step::Malformed("Malformed user name"),
        },
        Exchange::LoginPassword { username } => match String::from_utf8(decoded) {
            Ok(password) => Step::Done(Credentials {
                mechanism: Mechanism::Login,
                authzid: None,
                identity: username,
                secret: Secret::new(password),
            }),
            Err(_) => Step::Malformed("Password is not UTF-8"),
        },
    }
}

/// A user name: non-empty UTF-8 without control characters (it will be logged).
pub(crate) fn name(decoded: Vec<u8>) -> Option<String> {
    String::from_utf8(decoded)
        .ok()
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8, authcid and passwd non-empty. An
/// authzid equal to the authcid is no separate authorization identity.
fn plain(decoded: &[u8]) -> Option<Credentials> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let identity = name(authcid.to_vec())?;
    let authzid = match authzid {
        [] => None,
        z => Some(name(z.to_vec())?).filter(|z| *z != identity),
    };
    let password = std::str::from_utf8(passwd).ok().filter(|p| !p.is_empty())?;
    Some(Credentials {
        mechanism: Mechanism::Plain,
        authzid,
        identity,
        secret: Secret::new(password.to_owned()),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 4616 4's examples as initial responses (not yet base64) through `plain`, which
    /// returns the credentials (SMTP's AUTH tests use it too).
    pub(crate) fn assert_rfc4616_examples(plain: impl Fn(&[u8]) -> Credentials) {
        let examples: [(&[u8], _, _, _); 2] = [
            (b"\0tim\0tanstaaftanstaaf", None, "tim", "tanstaaftanstaaf"),
            (
                b"Ursel\0Kurt\0xipj3plmq",
                Some("Ursel"),
                "Kurt",
                "xipj3plmq",
            ),
        ];
        for (message, authzid, identity, secret) in examples {
            let c = plain(message);
            assert_eq!(
                (
                    c.authzid.as_deref(),
                    c.identity.as_str(),
                    c.secret.expose().as_str()
                ),
                (authzid, identity, secret)
            );
        }
    }

    fn b64(s: &[u8]) -> Vec<u8> {
        STANDARD.encode(s).into_bytes()
    }

    fn done(step: Step) -> Credentials {
        match step {
            Step::Done(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
        assert_eq!(Mechanism::parse(""), None);
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        assert_rfc4616_examples(|ir| done(start(Mechanism::Plain, Some(&b64(ir)))));
        let Step::Challenge(Challenge::Empty, ex) = start(Mechanism::Plain, None) else {
            panic!()
        };
        assert_eq!(done(respond(ex, &b64(b"\0u\0p"), false)).identity, "u");
    }

    #[test]
    fn login_two_steps() {
        let Step::Challenge(Challenge::Username, ex) = start(Mechanism::Login, None) else {
            panic!()
        };
        let Step::Challenge(Challenge::Password, ex) = respond(ex, b"dXNlcg==", false) else {
            panic!()
        };
        let c = done(respond(ex, b"cGFzcw==", false));
        assert_eq!(
            (c.mechanism, c.identity.as_str(), c.secret.expose().as_str()),
            (Mechanism::Login, "user", "pass")
        );
    }

    #[test]
    fn cancel_empty_and_malformed() {
        assert!(matches!(
            respond(Exchange::PlainResponse, b"*", false),
            Step::Cancelled
        ));
        assert!(matches!(
            start(Mechanism::Login, Some(b"*")),
            Step::Cancelled
        ));
        // `=` is the empty initial response, which neither mechanism accepts; after a
        // challenge it is merely invalid base64.
        for step in [
            start(Mechanism::Plain, Some(b"=")),
            start(Mechanism::Login, Some(b"=")),
            respond(Exchange::PlainResponse, b"=", false),
            respond(Exchange::PlainResponse, b"!!!", false),
            respond(Exchange::PlainResponse, &b64(b"a\0b\0c\0d"), false),
            respond(Exchange::LoginUsername, &b64(b"a\rb"), false),
            respond(
                Exchange::LoginPassword {
                    username: "u".into(),
                },
                &b64(b"\xff"),
                false,
            ),
        ] {
            assert!(matches!(step, Step::Malformed(_)), "{step:?}");
        }
        assert_eq!(Challenge::Password.base64(), "UGFzc3dvcmQ6");
    }
}
