//! The responses the session composes: status lines (`+OK text`, `-ERR [CODE] text`), SASL
//! continuations (`+ base64`), multi-line bodies (CAPA, LIST, UIDL, AUTH) and the CAPA list.
//!
//! A response is written with its text cleaned: control characters are dropped and the line is
//! cut to 512 octets with CRLF (RFC 1939 3), so nothing a driver passes (a hostname, a
//! disconnect text, a UIDL) can inject a line. Multi-line bodies are dot-stuffed and end with
//! `.`.

use super::{Expire, LoginFailure};

/// RFC 1939 3: a response line is at most 512 octets including CRLF.
const MAX_LINE: usize = 510;

/// Extended response codes (RFC 2449 8, RFC 3206).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// RFC 3206 5: authentication failed because of the credentials.
    Auth,
    /// RFC 2449 8.1.2: the maildrop is locked by another session.
    InUse,
    /// RFC 2449 8.1.1: the last login was too recent.
    LoginDelay,
    /// RFC 3206 4: a temporary server failure.
    SysTemp,
    /// RFC 3206 4: a permanent server failure (or limit).
    SysPerm,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Auth => "AUTH",
            Code::InUse => "IN-USE",
            Code::LoginDelay => "LOGIN-DELAY",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
        }
    }
}

/// One response line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Response {
    /// `+OK text` (`+OK` alone when the text is empty).
    Ok(String),
    /// `-ERR [code] text`.
    Err(Option<Code>, String),
    /// `+ text`: a SASL challenge (RFC 5034 4), base64.
    Continue(&'static str),
    /// A line the driver supplied whole (`disconnect`), already starting with `+OK` or `-ERR`.
    Given(String),
}

impl Response {
    /// Appends the line with CRLF.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let mut line = match self {
            Response::Ok(text) if text.is_empty() => "+OK".to_owned(),
            Response::Ok(text) => format!("+OK {text}"),
            Response::Err(None, text) => format!("-ERR {text}"),
            Response::Err(Some(code), text) => format!("-ERR [{}] {text}", code.as_str()),
            Response::Continue(text) => format!("+ {text}"),
            Response::Given(line) => line.clone(),
        };
        line.retain(|c| !c.is_control());
        write_line(out, line.as_bytes());
    }
}

/// Appends `line` (free of CR and LF), cut to 510 octets at a character boundary, and CRLF.
fn write_line(out: &mut Vec<u8>, line: &[u8]) {
    let mut end = line.len().min(MAX_LINE);
    while end < line.len() && line.get(end).is_some_and(|&b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    out.extend_from_slice(line.get(..end).unwrap_or_default());
    out.extend_from_slice(b"\r\n");
}

/// Appends a multi-line response: the status line, each line dot-stuffed (RFC 1939 3), `.`.
pub(crate) fn write_multiline<S: AsRef<str>>(
    out: &mut Vec<u8>,
    status: &Response,
    lines: impl IntoIterator<Item = S>,
) {
    status.write_to(out);
    for line in lines {
        let mut line = line.as_ref().to_owned();
        line.retain(|c| !c.is_control());
        if line.starts_with('.') {
            out.push(b'.');
        }
        write_line(out, line.as_bytes());
    }
    out.extend_from_slice(b".\r\n");
}

fn ok(text: impl Into<String>) -> Response {
    Response::Ok(text.into())
}

fn err(text: impl Into<String>) -> Response {
    Response::Err(None, text.into())
}

fn err_code(code: Code, text: impl Into<String>) -> Response {
    Response::Err(Some(code), text.into())
}

// Positive responses.

/// `+OK <hostname> POP3 server ready` (no APOP timestamp).
pub(crate) fn greeting(hostname: &str) -> Response {
    ok(format!("{hostname} POP3 server ready"))
}

pub(crate) fn plain_ok() -> Response {
    ok("")
}

pub(crate) fn capa_follows() -> Response {
    ok("Capability list follows")
}

/// What CAPA lists (RFC 2449 5: the AUTHORIZATION capabilities are announced in both states).
pub(crate) fn capabilities(
    plaintext_auth: bool,
    stls: bool,
    expire: Option<Expire>,
    login_delay: Option<u32>,
    varies_by_user: bool,
) -> Vec<String> {
    // RFC 2449 6.5, 6.7: before login, `USER` says an account may have its own value.
    let user = if varies_by_user { " USER" } else { "" };
    let mut lines = vec!["TOP".to_owned()];
    if plaintext_auth {
        lines.push("USER".to_owned());
    }
    lines.extend(["UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"].map(str::to_owned));
    if plaintext_auth {
        lines.push(format!("SASL {}", mechanism_names().join(" ")));
    }
    if stls {
        lines.push("STLS".to_owned());
    }
    lines.push("IMPLEMENTATION wasmail".to_owned());
    match expire {
        Some(Expire::Never) => lines.push(format!("EXPIRE NEVER{user}")),
        Some(Expire::Days(days)) => lines.push(format!("EXPIRE {days}{user}")),
        None => {}
    }
    if let Some(secs) = login_delay {
        lines.push(format!("LOGIN-DELAY {secs}{user}"));
    }
    lines
}

/// The SASL mechanisms, for CAPA and AUTH without an argument.
pub(crate) fn mechanism_names() -> Vec<&'static str> {
    crate::sasl::Mechanism::ALL.map(|m| m.name()).to_vec()
}

pub(crate) fn mechanisms_follow() -> Response {
    ok("Supported SASL mechanisms follow")
}

/// After USER: the name is not judged before PASS (no account probing).
pub(crate) fn send_pass() -> Response {
    ok("Send PASS")
}

/// After a login (and for LIST without an argument): `+OK <n> messages (<octets> octets)`.
pub(crate) fn maildrop(count: usize, octets: u64) -> Response {
    ok(format!("{count} messages ({octets} octets)"))
}

/// RSET (RFC 1939 5 example).
pub(crate) fn maildrop_has(count: usize, octets: u64) -> Response {
    ok(format!("maildrop has {count} messages ({octets} octets)"))
}

/// STAT: `+OK n s` (RFC 1939 5, exactly this form: clients parse it).
pub(crate) fn stat(count: usize, octets: u64) -> Response {
    ok(format!("{count} {octets}"))
}

/// LIST n / UIDL n: `+OK n value`.
pub(crate) fn one_listing(number: usize, value: &dyn std::fmt::Display) -> Response {
    ok(format!("{number} {value}"))
}

pub(crate) fn uidl_follows() -> Response {
    ok("Unique-ID listing follows")
}

/// RETR / TOP: `+OK <size> octets`.
pub(crate) fn octets(size: u64) -> Response {
    ok(format!("{size} octets"))
}

pub(crate) fn deleted(number: usize) -> Response {
    ok(format!("message {number} deleted"))
}

pub(crate) fn begin_tls() -> Response {
    ok("Begin TLS negotiation")
}

pub(crate) fn signing_off(hostname: &str) -> Response {
    ok(format!("{hostname} signing off"))
}

/// A SASL challenge, `+ <base64>` (`+ ` for an empty one).
pub(crate) fn challenge(base64: &'static str) -> Response {
    Response::Continue(base64)
}

// Refusals of client mistakes (counted).

pub(crate) fn unknown_command() -> Response {
    err("Unknown command")
}

/// `-ERR Syntax: <usage>`.
pub(crate) fn syntax(usage: &str) -> Response {
    err(format!("Syntax: {usage}"))
}

pub(crate) fn invalid_number() -> Response {
    err("Invalid message number")
}

pub(crate) fn line_too_long() -> Response {
    err("Line too long")
}

pub(crate) fn not_in_authorization() -> Response {
    err("Command not valid in AUTHORIZATION state (log in first)")
}

pub(crate) fn not_in_transaction() -> Response {
    err("Command not valid in TRANSACTION state")
}

pub(crate) fn pass_without_user() -> Response {
    err("Send USER first")
}

pub(crate) fn apop() -> Response {
    err("APOP not supported")
}

pub(crate) fn plaintext_needs_tls() -> Response {
    err_code(
        Code::Auth,
        "Plaintext authentication disallowed without TLS (use STLS)",
    )
}

pub(crate) fn plaintext_disallowed() -> Response {
    err_code(Code::Auth, "Plaintext authentication disallowed")
}

pub(crate) fn unknown_mechanism() -> Response {
    err("Unrecognized authentication mechanism")
}

/// A SASL response that cannot be used.
pub(crate) fn bad_auth_response(why: &str) -> Response {
    err(why)
}

pub(crate) fn stls_not_offered() -> Response {
    err("STLS not available")
}

pub(crate) fn already_tls() -> Response {
    err("Command not permitted when TLS active")
}

/// RFC 1939 5 example: `-ERR no such message, only 2 messages in maildrop`.
pub(crate) fn no_such_message(count: usize) -> Response {
    err(format!(
        "no such message, only {count} messages in maildrop"
    ))
}

pub(crate) fn already_deleted(number: usize) -> Response {
    err(format!("message {number} already deleted"))
}

// Other refusals (not counted).

/// `*` in a SASL exchange (RFC 5034 4: the server rejects the AUTH command).
pub(crate) fn auth_cancelled() -> Response {
    err("Authentication cancelled")
}

pub(crate) fn login_failed(why: LoginFailure) -> Response {
    match why {
        LoginFailure::Credentials => err_code(Code::Auth, "Authentication failed"),
        LoginFailure::InUse => err_code(Code::InUse, "Maildrop is locked by another session"),
        LoginFailure::Temporary => err_code(
            Code::SysTemp,
            "Temporary authentication failure, try again later",
        ),
        LoginFailure::LoginDelay => {
            err_code(Code::LoginDelay, "Logged in too recently, try again later")
        }
    }
}

pub(crate) fn message_unavailable(number: usize) -> Response {
    err_code(
        Code::SysTemp,
        format!("message {number} cannot be read now, try again later"),
    )
}

/// More than [`super::MAX_QUEUED_OUTPUT`] octets of replies are waiting to be written.
pub(crate) fn output_full() -> Response {
    err_code(
        Code::SysTemp,
        "Too much output waiting, read the replies and send the command again",
    )
}

/// RFC 1939 6: the UPDATE state failed.
pub(crate) fn update_failed() -> Response {
    err_code(Code::SysTemp, "some deleted messages not removed")
}

pub(crate) fn too_many_errors() -> Response {
    err_code(Code::SysPerm, "Too many errors, closing")
}

/// After [`super::MAX_DISCARD`] octets without a line end.
pub(crate) fn line_too_long_closing() -> Response {
    err_code(Code::SysPerm, "Line too long")
}

/// `disconnect(text)`: `-ERR [SYS/TEMP] <text>`, or `text` itself when it is a whole status
/// line (starts with `+OK` or `-ERR`).
pub(crate) fn closing(text: &str) -> Response {
    if text.starts_with("+OK") || text.starts_with("-ERR") {
        Response::Given(text.to_owned())
    } else {
        err_code(Code::SysTemp, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Response) -> String {
        let mut out = Vec::new();
        r.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn wire_forms() {
        assert_eq!(wire(&plain_ok()), "+OK\r\n");
        assert_eq!(wire(&stat(2, 320)), "+OK 2 320\r\n");
        assert_eq!(wire(&challenge("")), "+ \r\n");
        assert_eq!(wire(&challenge("VXNlcm5hbWU6")), "+ VXNlcm5hbWU6\r\n");
        assert_eq!(
            wire(&login_failed(LoginFailure::InUse)),
            "-ERR [IN-USE] Maildrop is locked by another session\r\n"
        );
        assert_eq!(
            wire(&closing("Server shutting down")),
            "-ERR [SYS/TEMP] Server shutting down\r\n"
        );
        assert_eq!(wire(&closing("+OK bye")), "+OK bye\r\n");
    }

    #[test]
    fn nothing_can_break_a_line() {
        assert_eq!(
            wire(&closing("bye\r\n+OK injected\r\n")),
            "-ERR [SYS/TEMP] bye+OK injected\r\n"
        );
        assert_eq!(
            wire(&Response::Given("-ERR a\nb".to_owned())),
            "-ERR ab\r\n"
        );
        let long = wire(&closing(&"é".repeat(600)));
        assert!(long.len() <= 512, "{}", long.len());
        assert!(long.ends_with("é\r\n"));
        let mut out = Vec::new();
        write_multiline(&mut out, &capa_follows(), [".hidden", "a\rb", ".", ""]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+OK Capability list follows\r\n..hidden\r\nab\r\n..\r\n\r\n.\r\n"
        );
    }

    #[test]
    fn capability_lists() {
        assert_eq!(
            capabilities(true, true, Some(Expire::Days(30)), Some(900), false),
            [
                "TOP",
                "USER",
                "UIDL",
                "RESP-CODES",
                "PIPELINING",
                "AUTH-RESP-CODE",
                "SASL PLAIN LOGIN",
                "STLS",
                "IMPLEMENTATION wasmail",
                "EXPIRE 30",
                "LOGIN-DELAY 900",
            ]
        );
        assert_eq!(
            capabilities(false, false, Some(Expire::Never), None, false),
            [
                "TOP",
                "UIDL",
                "RESP-CODES",
                "PIPELINING",
                "AUTH-RESP-CODE",
                "IMPLEMENTATION wasmail",
                "EXPIRE NEVER",
            ]
        );
        let per_user = capabilities(false, false, Some(Expire::Days(0)), Some(60), true);
        assert_eq!(
            per_user[per_user.len() - 2..],
            ["EXPIRE 0 USER", "LOGIN-DELAY 60 USER"]
        );
    }
}
