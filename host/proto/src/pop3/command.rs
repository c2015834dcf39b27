//! Command lines -> [`Command`] (RFC 1939 with CAPA from RFC 2449, STLS from RFC 2595 and AUTH
//! from RFC 5034).
//!
//! The parser checks syntax only; what depends on the session (the state, whether a login is
//! allowed, whether a message number exists) is the session's business. Keywords are
//! case-insensitive; arguments are separated by spaces, any number of them (lenient), except
//! that PASS takes the rest of the line as it is, spaces included (RFC 1939 7). Errors come back
//! as the `-ERR` response to send.

use wasmail_types::Secret;

use super::reply::{self, Response};
use crate::sasl::{self, Mechanism};

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// USER name: non-empty UTF-8 without control characters.
    User(String),
    /// PASS string: the rest of the line after `PASS `, spaces included.
    Pass(Secret<String>),
    /// AUTH without an argument: list the mechanisms.
    AuthList,
    /// AUTH mechanism [initial-response]. `mechanism` is None for one we do not implement;
    /// `initial` as sent (base64, or `=` for empty).
    Auth {
        mechanism: Option<Mechanism>,
        initial: Option<String>,
    },
    /// APOP, which is never offered.
    Apop,
    Capa,
    Stls,
    Quit,
    Stat,
    /// LIST [msg].
    List(Option<usize>),
    /// UIDL [msg].
    Uidl(Option<usize>),
    Retr(usize),
    /// TOP msg n.
    Top(usize, u64),
    Dele(usize),
    Noop,
    Rset,
}

/// Parses one command line without its line end.
pub(crate) fn parse(line: &[u8]) -> Result<Command, Response> {
    let line = trim_start(line);
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (
            line.get(..sp).unwrap_or_default(),
            line.get(sp + 1..).unwrap_or_default(),
        ),
        None => (line, &b""[..]),
    };
    let keyword = keyword.to_ascii_uppercase();
    if keyword.as_slice() == b"PASS" {
        return parse_pass(rest);
    }
    // Every other argument is ASCII or (USER, AUTH) UTF-8.
    let args: Vec<&[u8]> = rest
        .split(|&b| b == b' ')
        .filter(|a| !a.is_empty())
        .collect();
    let none = |cmd: Command, usage: &str| match args.as_slice() {
        [] => Ok(cmd),
        _ => Err(reply::syntax(usage)),
    };
    match keyword.as_slice() {
        b"USER" => match args.as_slice() {
            [name] => sasl::name(name.to_vec())
                .map(Command::User)
                .ok_or_else(|| reply::syntax("USER name")),
            _ => Err(reply::syntax("USER name")),
        },
        b"AUTH" => parse_auth(&args),
        b"APOP" => Ok(Command::Apop),
        b"CAPA" => none(Command::Capa, "CAPA"),
        b"STLS" => none(Command::Stls, "STLS"),
        b"QUIT" => none(Command::Quit, "QUIT"),
        b"STAT" => none(Command::Stat, "STAT"),
        b"NOOP" => none(Command::Noop, "NOOP"),
        b"RSET" => none(Command::Rset, "RSET"),
        b"LIST" => optional_number(&args, "LIST [msg]").map(Command::List),
        b"UIDL" => optional_number(&args, "UIDL [msg]").map(Command::Uidl),
        b"RETR" => one_number(&args, "RETR msg").map(Command::Retr),
        b"DELE" => one_number(&args, "DELE msg").map(Command::Dele),
        b"TOP" => match args.as_slice() {
            [msg, n] => {
                let msg = number(msg)?;
                let n = decimal(n).ok_or_else(|| reply::syntax("TOP msg n"))?;
                Ok(Command::Top(msg, n))
            }
            _ => Err(reply::syntax("TOP msg n")),
        },
        _ => Err(reply::unknown_command()),
    }
}

fn trim_start(mut line: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = line {
        line = rest;
    }
    line
}

/// PASS: everything after the one space that follows the keyword; must be non-empty UTF-8
/// without control characters other than tab.
fn parse_pass(rest: &[u8]) -> Result<Command, Response> {
    match std::str::from_utf8(rest) {
        Ok(p) if !p.is_empty() && !p.chars().any(|c| c.is_control() && c != '\t') => {
            Ok(Command::Pass(Secret::new(p.to_owned())))
        }
        _ => Err(reply::syntax("PASS string")),
    }
}

fn parse_auth(args: &[&[u8]]) -> Result<Command, Response> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let text = |a: &[u8]| {
        std::str::from_utf8(a)
            .map(str::to_owned)
            .map_err(|_| reply::syntax(USAGE))
    };
    match args {
        [] => Ok(Command::AuthList),
        [mechanism] | [mechanism, _] => {
            let mechanism = Mechanism::parse(&text(mechanism)?);
            let initial = match args.get(1) {
                Some(ir) => Some(text(ir)?),
                None => None,
            };
            Ok(Command::Auth { mechanism, initial })
        }
        _ => Err(reply::syntax(USAGE)),
    }
}

/// A decimal number of 1 to 20 digits, saturated at `u64::MAX`.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// A message number: decimal (whether it exists is the session's question; 0 and huge values
/// never do).
fn number(s: &[u8]) -> Result<usize, Response> {
    decimal(s)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .ok_or_else(reply::invalid_number)
}

fn optional_number(args: &[&[u8]], usage: &str) -> Result<Option<usize>, Response> {
    match args {
        [] => Ok(None),
        [msg] => number(msg).map(Some),
        _ => Err(reply::syntax(usage)),
    }
}

fn one_number(args: &[&[u8]], usage: &str) -> Result<usize, Response> {
    match args {
        [msg] => number(msg),
        _ => Err(reply::syntax(usage)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap().trim_end().to_owned()
    }

    #[test]
    fn commands() {
        let table: &[(&[u8], Command)] = &[
            (b"USER mrose", Command::User("mrose".into())),
            (
                b"user  m\xc3\xbcller@example.org ",
                Command::User("müller@example.org".into()),
            ),
            (b"PASS secret", Command::Pass(Secret::new("secret".into()))),
            // RFC 1939 7: spaces may be part of the password.
            (
                b"pass  two words ",
                Command::Pass(Secret::new(" two words ".into())),
            ),
            (b"AUTH", Command::AuthList),
            (
                b"AUTH PLAIN",
                Command::Auth {
                    mechanism: Some(Mechanism::Plain),
                    initial: None,
                },
            ),
            (
                b"auth login dXNlcg==",
                Command::Auth {
                    mechanism: Some(Mechanism::Login),
                    initial: Some("dXNlcg==".into()),
                },
            ),
            (
                b"AUTH PLAIN =",
                Command::Auth {
                    mechanism: Some(Mechanism::Plain),
                    initial: Some("=".into()),
                },
            ),
            (
                b"AUTH CRAM-MD5",
                Command::Auth {
                    mechanism: None,
                    initial: None,
                },
            ),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop,
            ),
            (b"CAPA", Command::Capa),
            (b"capa ", Command::Capa),
            (b"STLS", Command::Stls),
            (b"QUIT", Command::Quit),
            (b"Stat", Command::Stat),
            (b"NOOP", Command::Noop),
            (b"RSET", Command::Rset),
            (b"LIST", Command::List(None)),
            (b"LIST 2", Command::List(Some(2))),
            (b" LIST   2  ", Command::List(Some(2))),
            (b"LIST 0", Command::List(Some(0))),
            (b"LIST 007", Command::List(Some(7))),
            (b"UIDL", Command::Uidl(None)),
            (b"uidl 1", Command::Uidl(Some(1))),
            (b"RETR 1", Command::Retr(1)),
            (b"RETR 99999999999999999999", Command::Retr(usize::MAX)),
            (b"DELE 1", Command::Dele(1)),
            (b"TOP 1 10", Command::Top(1, 10)),
            (b"top 1 0", Command::Top(1, 0)),
            (b"TOP 1 99999999999999999999", Command::Top(1, u64::MAX)),
        ];
        for (line, expected) in table {
            match parse(line) {
                Ok(c) => assert_eq!(&c, expected, "{}", String::from_utf8_lossy(line)),
                Err(r) => panic!("{} -> {}", String::from_utf8_lossy(line), wire(&r)),
            }
        }
    }

    #[test]
    fn errors() {
        let table: &[(&[u8], &str)] = &[
            (b"", "-ERR Unknown command"),
            (b"FOO", "-ERR Unknown command"),
            (b"STATX", "-ERR Unknown command"),
            (b"\xff\xfe", "-ERR Unknown command"),
            (b"STAT\t", "-ERR Unknown command"),
            (b"USER", "-ERR Syntax: USER name"),
            (b"USER a b", "-ERR Syntax: USER name"),
            (b"USER \xff", "-ERR Syntax: USER name"),
            (b"USER a\x01b", "-ERR Syntax: USER name"),
            (b"PASS", "-ERR Syntax: PASS string"),
            (b"PASS ", "-ERR Syntax: PASS string"),
            (b"PASS \xff", "-ERR Syntax: PASS string"),
            (b"PASS a\rb", "-ERR Syntax: PASS string"),
            (
                b"AUTH PLAIN a b",
                "-ERR Syntax: AUTH mechanism [initial-response]",
            ),
            (
                b"AUTH \xff",
                "-ERR Syntax: AUTH mechanism [initial-response]",
            ),
            (b"CAPA x", "-ERR Syntax: CAPA"),
            (b"STLS now", "-ERR Syntax: STLS"),
            (b"QUIT now", "-ERR Syntax: QUIT"),
            (b"STAT 1", "-ERR Syntax: STAT"),
            (b"NOOP x", "-ERR Syntax: NOOP"),
            (b"RSET 1", "-ERR Syntax: RSET"),
            (b"LIST 1 2", "-ERR Syntax: LIST [msg]"),
            (b"LIST x", "-ERR Invalid message number"),
            (b"LIST -1", "-ERR Invalid message number"),
            (b"LIST +1", "-ERR Invalid message number"),
            (b"UIDL 1 2", "-ERR Syntax: UIDL [msg]"),
            (b"RETR", "-ERR Syntax: RETR msg"),
            (b"RETR 1 2", "-ERR Syntax: RETR msg"),
            (b"RETR one", "-ERR Invalid message number"),
            (b"DELE", "-ERR Syntax: DELE msg"),
            (b"DELE 1.5", "-ERR Invalid message number"),
            (b"TOP 1", "-ERR Syntax: TOP msg n"),
            (b"TOP 1 -1", "-ERR Syntax: TOP msg n"),
            (b"TOP x 1", "-ERR Invalid message number"),
            (b"TOP 1 2 3", "-ERR Syntax: TOP msg n"),
        ];
        for (line, expected) in table {
            match parse(line) {
                Ok(c) => panic!("{} parsed as {c:?}", String::from_utf8_lossy(line)),
                Err(r) => assert_eq!(&wire(&r), expected, "{}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let c = parse(b"PASS hunter2").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
