//! The SASL exchanges of SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN, as SMTP words them.
//!
//! ```text
//! AUTH PLAIN <ir>              -> credentials
//! AUTH PLAIN        -> 334 ""      <response> -> credentials
//! AUTH LOGIN <user> -> 334 Password:           <password> -> credentials
//! AUTH LOGIN        -> 334 Username: <user> -> 334 Password: <password> -> credentials
//! ```
//! The steps are [`crate::sasl`]'s, shared with POP3; this file maps them to replies. A response
//! `*` cancels (`501 5.0.0`); an initial response `=` is empty; undecodable base64, invalid
//! UTF-8, control characters in a name or a malformed PLAIN message get `501 5.5.2`.

// The tests below (as they were before the move to `crate::sasl`) encode with these.
#[cfg(test)]
use base64::Engine as _;
#[cfg(test)]
use base64::engine::general_purpose::STANDARD;
use wasmail_types::Reply;

pub(crate) use crate::sasl::Credentials;
use crate::sasl::{self, Step};

use super::Mechanism;
use super::reply;

/// An exchange waiting for the client's next response line (`334` was sent).
pub(crate) type AuthExchange = sasl::Exchange;

/// What a step of the exchange leads to.
#[derive(Debug)]
pub(crate) enum AuthStep {
    /// Send this 334 challenge and wait for the next response.
    Challenge(Reply, AuthExchange),
    /// The exchange is complete.
    Done(Credentials),
    /// The exchange failed with this reply; `error`: whether it counts as a client error
    /// (cancelling does not).
    Failed { reply: Reply, error: bool },
}

/// Starts an exchange for `AUTH <mechanism> [initial]`.
pub(crate) fn start(mechanism: Mechanism, initial: Option<&str>) -> AuthStep {
    step(sasl::start(mechanism, initial.map(str::as_bytes)))
}

/// The client's response line (without its line end) to the exchange's challenge.
/// `initial`: it came as the initial response of the AUTH command, where `=` means empty.
pub(crate) fn respond(exchange: AuthExchange, line: &[u8], initial: bool) -> AuthStep {
    step(sasl::respond(exchange, line, initial))
}

fn step(step: Step) -> AuthStep {
    match step {
        Step::Challenge(challenge, exchange) => {
            AuthStep::Challenge(reply::challenge(challenge.base64()), exchange)
        }
        Step::Done(c) => AuthStep::Done(c),
        Step::Cancelled => AuthStep::Failed {
            reply: reply::auth_cancelled(),
            error: false,
        },
        Step::Malformed(why) => AuthStep::Failed {
            reply: reply::bad_auth_response(why),
            error: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::tests::assert_rfc4616_examples;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    fn done(step: AuthStep) -> Credentials {
        match step {
            AuthStep::Done(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn failed_code(step: AuthStep) -> String {
        match step {
            AuthStep::Failed { reply, .. } => {
                format!("{} {}", reply.code(), reply.enhanced().unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_with_initial_response() {
        assert_rfc4616_examples(|ir| done(start(Mechanism::Plain, Some(&b64(ir)))));
        // An authzid equal to the authcid is no separate authorization identity.
        let c = done(start(Mechanism::Plain, Some(&b64(b"kurt\0kurt\0pw"))));
        assert_eq!(c.authzid, None);
    }

    #[test]
    fn plain_without_initial_response() {
        let AuthStep::Challenge(r, ex) = start(Mechanism::Plain, None) else {
            panic!()
        };
        assert_eq!(r.code(), 334);
        let c = done(respond(ex, b64(b"\0user\0pass").as_bytes(), false));
        assert_eq!(c.identity, "user");
    }

    #[test]
    fn login_both_ways() {
        let AuthStep::Challenge(_, ex) = start(Mechanism::Login, None) else {
            panic!()
        };
        let AuthStep::Challenge(r, ex) = respond(ex, b"dXNlcg==", false) else {
            panic!()
        };
        assert_eq!(r.lines(), ["UGFzc3dvcmQ6"]);
        let c = done(respond(ex, b"cGFzcw==", false));
        assert_eq!(
            (c.identity.as_str(), c.secret.expose().as_str()),
            ("user", "pass")
        );
        let AuthStep::Challenge(_, ex) = start(Mechanism::Login, Some("dXNlcg==")) else {
            panic!()
        };
        // An empty password is the authenticator's to refuse.
        let c = done(respond(ex, b"", false));
        assert_eq!(c.secret.expose(), "");
    }

    #[test]
    fn failures() {
        let ex = || AuthExchange::PlainResponse;
        assert_eq!(failed_code(respond(ex(), b"*", false)), "501 5.0.0");
        assert_eq!(failed_code(start(Mechanism::Login, Some("*"))), "501 5.0.0");
        assert_eq!(failed_code(respond(ex(), b"!!!", false)), "501 5.5.2");
        assert_eq!(failed_code(respond(ex(), b"=", false)), "501 5.5.2");
        assert_eq!(failed_code(start(Mechanism::Plain, Some("="))), "501 5.5.2");
        assert_eq!(failed_code(start(Mechanism::Login, Some("="))), "501 5.5.2");
        for bad in [
            &b"user\0pass"[..],
            b"\0\0pass",
            b"\0user\0",
            b"a\0b\0c\0d",
            b"\0us\ner\0pass",
            b"\0\xff\0pass",
            b"\0user\0\xff",
        ] {
            assert_eq!(
                failed_code(respond(ex(), b64(bad).as_bytes(), false)),
                "501 5.5.2",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let c = done(start(Mechanism::Plain, Some(&b64(b"\0tim\0hunter2"))));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
