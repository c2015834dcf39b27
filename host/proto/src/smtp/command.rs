//! Command lines -> [`Command`] (RFC 5321 4.1 with the ESMTP parameters of RFC 1870, 1652,
//! 6152, 6531, 3461 and 4954).
//!
//! The parser checks syntax only; what depends on the session (order of commands, limits,
//! whether an extension is offered) is the session's business. Errors come back as the reply
//! to send: `500 5.5.2` for an unknown verb, `501 5.5.4` for bad syntax, `501 5.1.7` / `5.1.3`
//! for a bad sender / recipient path, `555 5.5.4` for an unknown or repeated parameter.

use wasmail_types::{ForwardPath, Reply, ReversePath};

use super::reply;
use super::{Body, MailParams, Mechanism, Notify, RcptParams, Ret};

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// EHLO (`extended`) or HELO.
    Helo {
        name: String,
        extended: bool,
    },
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    /// `argument`: something followed the verb (501 when STARTTLS is otherwise possible).
    StartTls {
        argument: bool,
    },
    /// `mechanism` is None for one we do not implement (504 once AUTH itself is possible).
    /// `initial`: the initial response as sent (base64, or `=` for empty).
    Auth {
        mechanism: Option<Mechanism>,
        initial: Option<String>,
    },
}

/// Longest ENVID (RFC 3461 4.4: 100 characters).
const MAX_ENVID: usize = 100;
/// Longest ORCPT address (RFC 3461 4.2: 500 characters).
const MAX_ORCPT: usize = 500;

/// Parses one command line without its line end.
pub(crate) fn parse(line: &[u8]) -> Result<Command, Reply> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (
            line.get(..sp).unwrap_or_default(),
            Some(line.get(sp + 1..).unwrap_or_default()),
        ),
        None => (line, None),
    };
    let verb = verb.to_ascii_uppercase();
    // The arguments as text. Invalid UTF-8 is a syntax error for every command that reads them.
    let args = rest.map(std::str::from_utf8);
    let text = |usage: &str| -> Result<&str, Reply> {
        match args {
            Some(Ok(s)) => Ok(s),
            Some(Err(_)) | None => Err(reply::syntax(usage)),
        }
    };
    let no_args = |cmd: Command, usage: &str| -> Result<Command, Reply> {
        match rest {
            None => Ok(cmd),
            Some(r) if r.iter().all(|&b| b == b' ') => Ok(cmd),
            Some(_) => Err(reply::syntax(usage)),
        }
    };
    match verb.as_slice() {
        b"EHLO" | b"HELO" => {
            let extended = verb.as_slice() == b"EHLO";
            let usage = if extended {
                "EHLO domain"
            } else {
                "HELO domain"
            };
            let mut words = text(usage)?.split(' ').filter(|w| !w.is_empty());
            match (words.next(), words.next()) {
                (Some(name), None) if !name.chars().any(char::is_control) => Ok(Command::Helo {
                    name: name.to_owned(),
                    extended,
                }),
                _ => Err(reply::syntax(usage)),
            }
        }
        b"MAIL" => parse_mail(text(MAIL_USAGE)?),
        b"RCPT" => parse_rcpt(text(RCPT_USAGE)?),
        b"DATA" => no_args(Command::Data, "DATA"),
        b"BDAT" => parse_bdat(text(BDAT_USAGE)?),
        b"RSET" => no_args(Command::Rset, "RSET"),
        b"NOOP" => Ok(Command::Noop),
        b"QUIT" => no_args(Command::Quit, "QUIT"),
        b"VRFY" => match rest {
            Some(r) if r.iter().any(|&b| b != b' ') => Ok(Command::Vrfy),
            _ => Err(reply::syntax("VRFY address")),
        },
        b"EXPN" => match rest {
            Some(r) if r.iter().any(|&b| b != b' ') => Ok(Command::Expn),
            _ => Err(reply::syntax("EXPN list")),
        },
        b"HELP" => Ok(Command::Help),
        b"STARTTLS" => Ok(Command::StartTls {
            argument: rest.is_some_and(|r| r.iter().any(|&b| b != b' ')),
        }),
        b"AUTH" => parse_auth(text(AUTH_USAGE)?),
        _ => Err(reply::not_recognized()),
    }
}

const MAIL_USAGE: &str = "MAIL FROM:<address> [parameters]";
const RCPT_USAGE: &str = "RCPT TO:<address> [parameters]";
const BDAT_USAGE: &str = "BDAT size [LAST]";
const AUTH_USAGE: &str = "AUTH mechanism [initial-response]";

/// Splits `FROM:<path> params` after the verb: the keyword (case-insensitive), the colon, any
/// spaces (common in the wild though not in the grammar), the path with its brackets (a quoted
/// local part may contain `>` and spaces), then the space-separated parameters.
fn split_path<'a>(
    args: &'a str,
    keyword: &str,
    usage: &str,
    bad_path: fn(&dyn std::fmt::Display) -> Reply,
) -> Result<(&'a str, Vec<&'a str>), Reply> {
    let head = args
        .get(..keyword.len())
        .ok_or_else(|| reply::syntax(usage))?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(reply::syntax(usage));
    }
    let rest = args
        .get(keyword.len()..)
        .unwrap_or_default()
        .trim_start_matches(' ');
    if !rest.starts_with('<') {
        return Err(reply::syntax(usage));
    }
    let end = path_end(rest).ok_or_else(|| bad_path(&"missing closing >"))?;
    let (path, params) = rest.split_at(end + 1);
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(bad_path(&"unexpected text after closing >"));
    }
    Ok((path, params.split(' ').filter(|p| !p.is_empty()).collect()))
}

/// Byte index of the `>` closing the path that starts at index 0, skipping quoted strings.
fn path_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == '>' && !quoted {
            return Some(i);
        }
    }
    None
}

/// `key[=value]` with the RFC 5321 4.1.2 grammar: esmtp-keyword is alphanumeric and `-`
/// starting alphanumeric; esmtp-value is non-empty printable without `=` (UTF-8 allowed,
/// RFC 6531).
fn split_param(param: &str) -> Result<(String, Option<&str>), Reply> {
    let (key, value) = match param.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (param, None),
    };
    let key_ok = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !key_ok {
        return Err(reply::bad_value("Malformed parameter"));
    }
    if let Some(v) = value {
        let value_ok = !v.is_empty() && v.chars().all(|c| !c.is_control() && c != '=' && c != ' ');
        if !value_ok {
            return Err(reply::bad_value("Malformed parameter value"));
        }
    }
    Ok((key.to_ascii_uppercase(), value))
}

fn parse_mail(args: &str) -> Result<Command, Reply> {
    let (path, raw_params) = split_path(args, "FROM:", MAIL_USAGE, reply::bad_sender)?;
    let from = ReversePath::parse(path).map_err(|e| reply::bad_sender(&e))?;
    let mut params = MailParams::default();
    let mut seen: Vec<String> = Vec::new();
    for raw in raw_params {
        let (key, value) = split_param(raw)?;
        if seen.contains(&key) {
            return Err(reply::bad_parameter("Repeated parameter"));
        }
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => params.size = Some(parse_size(v)?),
            ("BODY", Some(v)) => {
                params.body = match v.to_ascii_uppercase().as_str() {
                    "7BIT" => Body::SevenBit,
                    "8BITMIME" => Body::EightBitMime,
                    "BINARYMIME" => {
                        return Err(reply::bad_parameter("BODY=BINARYMIME not supported"));
                    }
                    _ => return Err(reply::bad_value("BODY must be 7BIT or 8BITMIME")),
                }
            }
            ("SMTPUTF8", None) => params.smtputf8 = true,
            ("RET", Some(v)) => {
                params.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Headers,
                    _ => return Err(reply::bad_value("RET must be FULL or HDRS")),
                })
            }
            ("ENVID", Some(v)) => {
                let envid = xtext_decode(v).ok_or_else(|| reply::bad_value("Malformed ENVID"))?;
                if envid.chars().count() > MAX_ENVID {
                    return Err(reply::bad_value("ENVID too long"));
                }
                params.envid = Some(envid);
            }
            ("AUTH", Some(v)) => {
                params.auth =
                    Some(xtext_decode(v).ok_or_else(|| reply::bad_value("Malformed AUTH"))?);
            }
            ("SIZE" | "BODY" | "RET" | "ENVID" | "AUTH", None) => {
                return Err(reply::bad_value("Parameter needs a value"));
            }
            ("SMTPUTF8", Some(_)) => return Err(reply::bad_value("SMTPUTF8 takes no value")),
            _ => return Err(reply::bad_parameter("Unsupported parameter")),
        }
        seen.push(key);
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, Reply> {
    let (path, raw_params) = split_path(args, "TO:", RCPT_USAGE, reply::bad_recipient)?;
    let to = ForwardPath::parse(path).map_err(|e| reply::bad_recipient(&e))?;
    let mut params = RcptParams::default();
    let mut seen: Vec<String> = Vec::new();
    for raw in raw_params {
        let (key, value) = split_param(raw)?;
        if seen.contains(&key) {
            return Err(reply::bad_parameter("Repeated parameter"));
        }
        match (key.as_str(), value) {
            ("NOTIFY", Some(v)) => params.notify = Some(parse_notify(v)?),
            ("ORCPT", Some(v)) => params.orcpt = Some(parse_orcpt(v)?),
            ("NOTIFY" | "ORCPT", None) => {
                return Err(reply::bad_value("Parameter needs a value"));
            }
            _ => return Err(reply::bad_parameter("Unsupported parameter")),
        }
        seen.push(key);
    }
    Ok(Command::Rcpt { to, params })
}

/// Decimal digits; a value beyond u64 is kept as `u64::MAX` (it exceeds any limit anyway).
fn parse_size(v: &str) -> Result<u64, Reply> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reply::bad_value("SIZE must be a number"));
    }
    Ok(v.parse().unwrap_or(u64::MAX))
}

fn parse_notify(v: &str) -> Result<Notify, Reply> {
    let mut n = Notify {
        never: false,
        success: false,
        failure: false,
        delay: false,
    };
    for item in v.split(',') {
        match item.to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            _ => {
                return Err(reply::bad_value(
                    "NOTIFY must be NEVER or SUCCESS,FAILURE,DELAY",
                ));
            }
        }
    }
    if n.never && (n.success || n.failure || n.delay) {
        return Err(reply::bad_value("NOTIFY=NEVER cannot be combined"));
    }
    Ok(n)
}

fn parse_orcpt(v: &str) -> Result<(String, String), Reply> {
    let bad = || reply::bad_value("ORCPT must be addr-type;address");
    let (addr_type, xtext) = v.split_once(';').ok_or_else(bad)?;
    let type_ok = !addr_type.is_empty()
        && addr_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !type_ok {
        return Err(bad());
    }
    let address = xtext_decode(xtext).ok_or_else(bad)?;
    if address.is_empty() || address.chars().count() > MAX_ORCPT {
        return Err(bad());
    }
    Ok((addr_type.to_owned(), address))
}

/// RFC 3461 4: xtext, `+XX` hex escapes for everything outside `!`..`~` and for `+` and `=`.
/// Lowercase hex and literal non-ASCII UTF-8 (RFC 6533 style) are tolerated. None if malformed
/// or if the decoded octets are not UTF-8.
fn xtext_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => {
                let hi = hex(bytes.next()?)?;
                let lo = hex(bytes.next()?)?;
                out.push(hi << 4 | lo);
            }
            b'=' => return None,
            0..=32 | 127 => return None,
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn parse_bdat(args: &str) -> Result<Command, Reply> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or_else(|| reply::syntax(BDAT_USAGE))?;
    if !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(reply::syntax(BDAT_USAGE));
    }
    // Up to u64::MAX octets can be announced; more cannot be counted, so that is a syntax error
    // (the octets that follow will then be read as commands and refused).
    let size: u64 = size.parse().map_err(|_| reply::syntax(BDAT_USAGE))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(reply::syntax(BDAT_USAGE)),
    };
    if words.next().is_some() {
        return Err(reply::syntax(BDAT_USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: &str) -> Result<Command, Reply> {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or_else(|| reply::syntax(AUTH_USAGE))?;
    let initial = words.next().map(str::to_owned);
    if words.next().is_some() {
        return Err(reply::syntax(AUTH_USAGE));
    }
    let mechanism = Mechanism::parse(mechanism);
    Ok(Command::Auth { mechanism, initial })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmail_types::Address;

    fn wire(r: &Reply) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap().trim_end().to_owned()
    }

    fn ok(line: &str) -> Command {
        match parse(line.as_bytes()) {
            Ok(c) => c,
            Err(r) => panic!("{line:?} -> {}", wire(&r)),
        }
    }

    /// The reply's code and enhanced code, e.g. `501 5.5.4`.
    fn err(line: &[u8]) -> String {
        match parse(line) {
            Ok(c) => panic!("{:?} parsed as {c:?}", String::from_utf8_lossy(line)),
            Err(r) => wire(&r).get(..9).unwrap().to_owned(),
        }
    }

    fn rp(s: &str) -> ReversePath {
        ReversePath::parse(s).unwrap()
    }

    fn fp(s: &str) -> ForwardPath {
        ForwardPath::parse(s).unwrap()
    }

    #[test]
    fn simple_commands() {
        let table: &[(&str, Command)] = &[
            (
                "EHLO client.example",
                Command::Helo {
                    name: "client.example".into(),
                    extended: true,
                },
            ),
            (
                "helo [192.0.2.1]",
                Command::Helo {
                    name: "[192.0.2.1]".into(),
                    extended: false,
                },
            ),
            (
                "Ehlo  bücher.example ",
                Command::Helo {
                    name: "bücher.example".into(),
                    extended: true,
                },
            ),
            ("DATA", Command::Data),
            ("data", Command::Data),
            ("RSET", Command::Rset),
            ("NOOP", Command::Noop),
            ("NOOP anything at all", Command::Noop),
            ("QUIT", Command::Quit),
            ("VRFY postmaster", Command::Vrfy),
            ("EXPN staff", Command::Expn),
            ("HELP", Command::Help),
            ("HELP MAIL", Command::Help),
            ("STARTTLS", Command::StartTls { argument: false }),
            ("starttls now", Command::StartTls { argument: true }),
            (
                "BDAT 0 LAST",
                Command::Bdat {
                    size: 0,
                    last: true,
                },
            ),
            (
                "bdat 86 last",
                Command::Bdat {
                    size: 86,
                    last: true,
                },
            ),
            (
                "BDAT 18446744073709551615",
                Command::Bdat {
                    size: u64::MAX,
                    last: false,
                },
            ),
            (
                "AUTH PLAIN",
                Command::Auth {
                    mechanism: Some(Mechanism::Plain),
                    initial: None,
                },
            ),
            (
                "auth login dXNlcg==",
                Command::Auth {
                    mechanism: Some(Mechanism::Login),
                    initial: Some("dXNlcg==".into()),
                },
            ),
            (
                "AUTH CRAM-MD5",
                Command::Auth {
                    mechanism: None,
                    initial: None,
                },
            ),
            (
                "AUTH PLAIN =",
                Command::Auth {
                    mechanism: Some(Mechanism::Plain),
                    initial: Some("=".into()),
                },
            ),
        ];
        for (line, expected) in table {
            assert_eq!(&ok(line), expected, "{line}");
        }
    }

    #[test]
    fn mail_and_rcpt_paths() {
        let table: &[(&str, Command)] = &[
            (
                "MAIL FROM:<Smith@bar.com>",
                Command::Mail {
                    from: rp("<Smith@bar.com>"),
                    params: MailParams::default(),
                },
            ),
            (
                "mail from:<>",
                Command::Mail {
                    from: ReversePath::Null,
                    params: MailParams::default(),
                },
            ),
            (
                "MAIL FROM: <a@b.example>",
                Command::Mail {
                    from: rp("<a@b.example>"),
                    params: MailParams::default(),
                },
            ),
            (
                "MAIL FROM:<\"a> b\"@b.example> SIZE=10",
                Command::Mail {
                    from: ReversePath::Address(
                        Address::new("a> b", "b.example".parse().unwrap()).unwrap(),
                    ),
                    params: MailParams {
                        size: Some(10),
                        ..MailParams::default()
                    },
                },
            ),
            (
                "MAIL FROM:<@relay.example:a@b.example>",
                Command::Mail {
                    from: rp("<a@b.example>"),
                    params: MailParams::default(),
                },
            ),
            (
                "RCPT TO:<Jones@foo.com>",
                Command::Rcpt {
                    to: fp("<Jones@foo.com>"),
                    params: RcptParams::default(),
                },
            ),
            (
                "RCPT TO:<postmaster>",
                Command::Rcpt {
                    to: ForwardPath::Postmaster,
                    params: RcptParams::default(),
                },
            ),
            (
                "rcpt to: <δοκιμή@παράδειγμα.δοκιμή>",
                Command::Rcpt {
                    to: fp("<δοκιμή@παράδειγμα.δοκιμή>"),
                    params: RcptParams::default(),
                },
            ),
        ];
        for (line, expected) in table {
            assert_eq!(&ok(line), expected, "{line}");
        }
    }

    #[test]
    fn mail_parameters() {
        let Command::Mail { params, .. } = ok(
            "MAIL FROM:<a@b.example> size=12345 BODY=8bitmime SMTPUTF8 RET=HDRS ENVID=QQ+2B314 AUTH=<>",
        ) else {
            panic!()
        };
        assert_eq!(
            params,
            MailParams {
                size: Some(12345),
                body: Body::EightBitMime,
                smtputf8: true,
                ret: Some(Ret::Headers),
                envid: Some("QQ+314".into()),
                auth: Some("<>".into()),
            }
        );
        let Command::Mail { params, .. } = ok(
            "MAIL FROM:<a@b.example> SIZE=999999999999999999999 BODY=7BIT RET=full AUTH=e+3Dmc2@example.com",
        ) else {
            panic!()
        };
        assert_eq!(params.size, Some(u64::MAX));
        assert_eq!(params.body, Body::SevenBit);
        assert_eq!(params.ret, Some(Ret::Full));
        assert_eq!(params.auth.as_deref(), Some("e=mc2@example.com"));
    }

    #[test]
    fn rcpt_parameters() {
        let Command::Rcpt { params, .. } =
            ok("RCPT TO:<a@b.example> NOTIFY=SUCCESS,delay ORCPT=rfc822;a+2Bx@b.example")
        else {
            panic!()
        };
        assert_eq!(
            params,
            RcptParams {
                notify: Some(Notify {
                    never: false,
                    success: true,
                    failure: false,
                    delay: true
                }),
                orcpt: Some(("rfc822".into(), "a+x@b.example".into())),
            }
        );
        let Command::Rcpt { params, .. } = ok("RCPT TO:<a@b.example> NOTIFY=NEVER") else {
            panic!()
        };
        assert!(params.notify.unwrap().never);
    }

    #[test]
    fn errors() {
        let table: &[(&[u8], &str)] = &[
            // Unknown commands.
            (b"", "500 5.5.2"),
            (b"FOO", "500 5.5.2"),
            (b"MAIL\tFROM:<a@b.example>", "500 5.5.2"),
            (b"\0EHLO x", "500 5.5.2"),
            // EHLO/HELO need exactly one argument without controls.
            (b"EHLO", "501 5.5.4"),
            (b"EHLO ", "501 5.5.4"),
            (b"HELO a b", "501 5.5.4"),
            (b"EHLO a\tb", "501 5.5.4"),
            (b"EHLO a\rb", "501 5.5.4"),
            (b"EHLO \xff\xfe", "501 5.5.4"),
            // Commands that take no argument.
            (b"DATA x", "501 5.5.4"),
            (b"RSET x", "501 5.5.4"),
            (b"QUIT now", "501 5.5.4"),
            (b"VRFY", "501 5.5.4"),
            (b"EXPN", "501 5.5.4"),
            // MAIL/RCPT syntax.
            (b"MAIL", "501 5.5.4"),
            (b"MAIL FROM:", "501 5.5.4"),
            (b"MAIL TO:<a@b.example>", "501 5.5.4"),
            (b"MAIL FROM:a@b.example", "501 5.5.4"),
            (b"MAIL FROM <a@b.example>", "501 5.5.4"),
            (b"RCPT TO:a@b.example", "501 5.5.4"),
            (b"RCPT FROM:<a@b.example>", "501 5.5.4"),
            (b"MAIL FROM:<a@b.example", "501 5.1.7"),
            (b"MAIL FROM:<a@@b.example>", "501 5.1.7"),
            (b"MAIL FROM:<a b@b.example>", "501 5.1.7"),
            (b"MAIL FROM:<a@b.example>x", "501 5.1.7"),
            (b"MAIL FROM:<a\x01@b.example>", "501 5.1.7"),
            (b"MAIL FROM:<\xff@b.example>", "501 5.5.4"),
            (b"RCPT TO:<>", "501 5.1.3"),
            (b"RCPT TO:<a@-b.example>", "501 5.1.3"),
            (b"RCPT TO:<\"unterminated@b.example>", "501 5.1.3"),
            // Parameters: unknown / repeated / unsupported -> 555; malformed -> 501.
            (b"MAIL FROM:<> FOO=bar", "555 5.5.4"),
            (b"MAIL FROM:<> NOTIFY=NEVER", "555 5.5.4"),
            (b"MAIL FROM:<> SIZE=1 SIZE=2", "555 5.5.4"),
            (b"MAIL FROM:<> size=1 SIZE=1", "555 5.5.4"),
            (b"MAIL FROM:<> BODY=BINARYMIME", "555 5.5.4"),
            (b"RCPT TO:<a@b.example> SIZE=1", "555 5.5.4"),
            (
                b"RCPT TO:<a@b.example> NOTIFY=NEVER NOTIFY=NEVER",
                "555 5.5.4",
            ),
            (b"MAIL FROM:<> SIZE", "501 5.5.4"),
            (b"MAIL FROM:<> SIZE=", "501 5.5.4"),
            (b"MAIL FROM:<> SIZE=-1", "501 5.5.4"),
            (b"MAIL FROM:<> SIZE=1k", "501 5.5.4"),
            (b"MAIL FROM:<> BODY=8BIT", "501 5.5.4"),
            (b"MAIL FROM:<> SMTPUTF8=yes", "501 5.5.4"),
            (b"MAIL FROM:<> RET=ALL", "501 5.5.4"),
            (b"MAIL FROM:<> ENVID=a+2", "501 5.5.4"),
            (b"MAIL FROM:<> ENVID=a+zz", "501 5.5.4"),
            (b"MAIL FROM:<> ENVID=a=b", "501 5.5.4"),
            (b"MAIL FROM:<> ENVID=+FF", "501 5.5.4"),
            (b"MAIL FROM:<> =x", "501 5.5.4"),
            (b"MAIL FROM:<> -X=1", "501 5.5.4"),
            (b"MAIL FROM:<> X\x01=1", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> NOTIFY=", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> NOTIFY=SOMETIMES", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> NOTIFY=SUCCESS,,DELAY", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> ORCPT=a@b.example", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> ORCPT=;a@b.example", "501 5.5.4"),
            (b"RCPT TO:<a@b.example> ORCPT=rfc822;", "501 5.5.4"),
            // BDAT.
            (b"BDAT", "501 5.5.4"),
            (b"BDAT x", "501 5.5.4"),
            (b"BDAT -1", "501 5.5.4"),
            (b"BDAT 1 FIRST", "501 5.5.4"),
            (b"BDAT 1 LAST x", "501 5.5.4"),
            (b"BDAT 18446744073709551616 LAST", "501 5.5.4"),
            // AUTH.
            (b"AUTH", "501 5.5.4"),
            (b"AUTH PLAIN a b", "501 5.5.4"),
        ];
        for (line, expected) in table {
            assert_eq!(err(line), *expected, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn xtext() {
        assert_eq!(xtext_decode("abc").as_deref(), Some("abc"));
        assert_eq!(xtext_decode("a+2Bb+3d").as_deref(), Some("a+b="));
        assert_eq!(xtext_decode("+C3+A9").as_deref(), Some("é"));
        assert_eq!(xtext_decode("é").as_deref(), Some("é"));
        assert_eq!(xtext_decode("a+"), None);
        assert_eq!(xtext_decode("a+4"), None);
        assert_eq!(xtext_decode("+C3"), None);
    }
}
