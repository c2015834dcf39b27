//! The SASL exchanges of SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN.
//!
//! ```text
//! AUTH PLAIN <ir>              -> credentials
//! AUTH PLAIN        -> 334 ""      <response> -> credentials
//! AUTH LOGIN <user> -> 334 Password:           <password> -> credentials
//! AUTH LOGIN        -> 334 Username: <user> -> 334 Password: <password> -> credentials
//! ```
//! A response `*` cancels (`501 5.0.0`); an initial response `=` is empty; undecodable base64,
//! invalid UTF-8, control characters in a name or a malformed PLAIN message get `501 5.5.2`.
//! The password only ever lives in a [`Secret`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use wasmail_types::{Reply, Secret};

use super::Mechanism;
use super::reply;

/// What the client proved it knows, for [`super::Event::Auth`].
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) mechanism: Mechanism,
    pub(crate) authzid: Option<String>,
    pub(crate) identity: String,
    pub(crate) secret: Secret<String>,
}

/// An exchange waiting for the client's next response line.
#[derive(Debug)]
pub(crate) enum AuthExchange {
    /// `334 ` was sent for PLAIN.
    PlainResponse,
    /// `334 VXNlcm5hbWU6` was sent.
    LoginUsername,
    /// `334 UGFzc3dvcmQ6` was sent; the user name is known.
    LoginPassword { username: String },
}

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
    match (mechanism, initial) {
        (Mechanism::Plain, None) => {
            AuthStep::Challenge(reply::challenge(""), AuthExchange::PlainResponse)
        }
        (Mechanism::Login, None) => {
            AuthStep::Challenge(reply::challenge_username(), AuthExchange::LoginUsername)
        }
        (_, Some(ir)) => {
            let exchange = match mechanism {
                Mechanism::Plain => AuthExchange::PlainResponse,
                Mechanism::Login => AuthExchange::LoginUsername,
            };
            respond(exchange, ir.as_bytes(), true)
        }
    }
}

/// The client's response line (without its line end) to the exchange's challenge.
/// `initial`: it came as the initial response of the AUTH command, where `=` means empty.
pub(crate) fn respond(exchange: AuthExchange, line: &[u8], initial: bool) -> AuthStep {
    if line == b"*" {
        return AuthStep::Failed {
            reply: reply::auth_cancelled(),
            error: false,
        };
    }
    let decoded = if initial && line == b"=" {
        Ok(Vec::new())
    } else {
        STANDARD
            .decode(line)
            .map_err(|_| failed("Invalid base64 in authentication response"))
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(f) => return f,
    };
    match exchange {
        AuthExchange::PlainResponse => match plain(&decoded) {
            Ok(c) => AuthStep::Done(c),
            Err(f) => f,
        },
        AuthExchange::LoginUsername => match name(decoded) {
            Ok(username) => AuthStep::Challenge(
                reply::challenge_password(),
                AuthExchange::LoginPassword { username },
            ),
            Err(f) => f,
        },
        AuthExchange::LoginPassword { username } => match String::from_utf8(decoded) {
            Ok(password) => AuthStep::Done(Credentials {
                mechanism: Mechanism::Login,
                authzid: None,
                identity: username,
                secret: Secret::new(password),
            }),
            Err(_) => failed("Password is not UTF-8"),
        },
    }
}

fn failed(why: &str) -> AuthStep {
    AuthStep::Failed {
        reply: reply::bad_auth_response(why),
        error: true,
    }
}

/// A user name: non-empty UTF-8 without control characters (it will be logged).
fn name(decoded: Vec<u8>) -> Result<String, AuthStep> {
    match String::from_utf8(decoded) {
        Ok(s) if !s.is_empty() && !s.chars().any(char::is_control) => Ok(s),
        _ => Err(failed("Malformed user name")),
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`, UTF-8, authcid and passwd non-empty.
fn plain(decoded: &[u8]) -> Result<Credentials, AuthStep> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(failed("Malformed PLAIN response"));
    };
    let identity = name(authcid.to_vec())?;
    let authzid = match authzid {
        [] => None,
        z => Some(name(z.to_vec())?).filter(|z| *z != identity),
    };
    let password = match std::str::from_utf8(passwd) {
        Ok(p) if !p.is_empty() => p.to_owned(),
        _ => return Err(failed("Malformed PLAIN response")),
    };
    Ok(Credentials {
        mechanism: Mechanism::Plain,
        authzid,
        identity,
        secret: Secret::new(password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = done(start(
            Mechanism::Plain,
            Some(&b64(b"\0tim\0tanstaaftanstaaf")),
        ));
        assert_eq!(c.identity, "tim");
        assert_eq!(c.authzid, None);
        assert_eq!(c.secret.expose(), "tanstaaftanstaaf");
        let c = done(start(
            Mechanism::Plain,
            Some(&b64(b"Ursel\0Kurt\0xipj3plmq")),
        ));
        assert_eq!(
            (c.authzid.as_deref(), c.identity.as_str()),
            (Some("Ursel"), "Kurt")
        );
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
