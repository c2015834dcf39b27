//! Everything a guest returns is untrusted input. These checks turn guest values into
//! `wasmail-types` values or say why not; a plugin that returns something invalid is treated
//! like one that trapped (its `on_error` applies), so it can never inject CR/LF into the SMTP
//! dialogue or the message, or add a recipient that is not an address.

use std::fmt;

use wasmail_types::mail::MailboxName;
use wasmail_types::{Address, EnhancedCode, Reply};

/// Longest header field name and value a plugin may add (RFC 5322 2.1.1 limits a line to 998).
const MAX_HEADER_NAME: usize = 76;
const MAX_HEADER_VALUE: usize = 900;
/// Most modifications one call may return.
pub const MAX_MODIFICATIONS: usize = 64;

/// Why a guest's output was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOutput(pub String);

impl fmt::Display for InvalidOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid plugin output: {}", self.0)
    }
}

impl std::error::Error for InvalidOutput {}

fn bad(what: impl Into<String>) -> InvalidOutput {
    InvalidOutput(what.into())
}

/// Which reply codes a verdict allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyClass {
    /// 4xx
    Transient,
    /// 5xx
    Permanent,
    /// 4xx or 5xx (disconnect)
    Failure,
}

pub fn reply(
    code: u16,
    enhanced: Option<&str>,
    text: &str,
    class: ReplyClass,
) -> Result<Reply, InvalidOutput> {
    let fits = match class {
        ReplyClass::Transient => (400..500).contains(&code),
        ReplyClass::Permanent => (500..600).contains(&code),
        ReplyClass::Failure => (400..600).contains(&code),
    };
    if !fits {
        return Err(bad(format!("reply code {code} does not fit the verdict")));
    }
    let enhanced = enhanced
        .map(EnhancedCode::parse)
        .transpose()
        .map_err(|e| bad(format!("enhanced status code: {e}")))?;
    Reply::new(code, enhanced, text).map_err(|e| bad(format!("reply: {e}")))
}

/// An RFC 5322 field name: printable ASCII except `:`, at most 76 octets.
pub fn header_name(name: &str) -> Result<&str, InvalidOutput> {
    if name.is_empty()
        || name.len() > MAX_HEADER_NAME
        || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
    {
        return Err(bad("header name is not an RFC 5322 field name"));
    }
    Ok(name)
}

/// A header value: no CR, LF, NUL or other control characters except tab; bounded.
pub fn header_value(value: &str) -> Result<&str, InvalidOutput> {
    if value.len() > MAX_HEADER_VALUE {
        return Err(bad("header value too long"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(bad("header value contains a control character"));
    }
    Ok(value)
}

pub fn address(s: &str) -> Result<Address, InvalidOutput> {
    Address::parse(s).map_err(|e| bad(format!("recipient address: {e}")))
}

pub fn folder(s: &str) -> Result<MailboxName, InvalidOutput> {
    MailboxName::new(s).map_err(|e| bad(format!("folder: {e}")))
}

pub fn account(s: &str) -> Result<String, InvalidOutput> {
    if s.is_empty() || s.len() > 320 || s.chars().any(char::is_control) {
        return Err(bad(
            "account name is empty, too long or has control characters",
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_must_fit_their_verdict_and_be_clean() {
        assert!(reply(550, Some("5.7.1"), "no", ReplyClass::Permanent).is_ok());
        assert!(reply(451, Some("4.7.1"), "later", ReplyClass::Transient).is_ok());
        assert!(reply(250, None, "ok", ReplyClass::Permanent).is_err());
        assert!(reply(550, None, "no", ReplyClass::Transient).is_err());
        assert!(reply(421, None, "bye", ReplyClass::Failure).is_ok());
        assert!(reply(550, Some("4.7.1"), "class mismatch", ReplyClass::Permanent).is_err());
        assert!(reply(550, Some("5.7"), "short code", ReplyClass::Permanent).is_err());
        assert!(reply(550, None, "injected\r\n250 OK", ReplyClass::Permanent).is_err());
        assert!(reply(550, None, "nul\0", ReplyClass::Permanent).is_err());
        assert!(reply(550, None, &"x".repeat(2000), ReplyClass::Permanent).is_err());
    }

    #[test]
    fn headers_and_addresses() {
        assert!(header_name("X-Spam-Score").is_ok());
        for n in ["", "With Space", "Colon:", "Ünicode", &"x".repeat(77)] {
            assert!(header_name(n).is_err(), "{n}");
        }
        assert!(header_value("5.1 (tab\tok)").is_ok());
        assert!(header_value("a\r\nBcc: victim@example.org").is_err());
        assert!(header_value("a\nb").is_err());
        assert!(address("user@example.org").is_ok());
        assert!(address("not an address").is_err());
        assert!(folder("Junk").is_ok() && folder("a//b").is_err());
    }
}
