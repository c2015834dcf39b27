use std::fmt;

/// The longest reply text we accept from anywhere (a plugin, config) for one line. RFC 5321
/// 4.5.3.1.5 caps a reply line at 512 octets including the code and CRLF.
const MAX_LINE_TEXT: usize = 512 - "250-2.0.0 ".len() - 2;
/// A reply has at most this many lines; more is a peer-hostile wall of text.
const MAX_LINES: usize = 32;

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `5.1.1`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// Parses `x.y.z` with the RFC 3463 ranges: class 2, 4 or 5; subject and detail 0..=999.
    pub fn parse(s: &str) -> Result<Self, ReplyError> {
        let mut parts = s.split('.');
        let (Some(c), Some(sub), Some(det), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ReplyError::BadEnhancedCode);
        };
        let num = |p: &str, max_digits: usize| -> Result<u16, ReplyError> {
            if p.is_empty() || p.len() > max_digits || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReplyError::BadEnhancedCode);
            }
            p.parse().map_err(|_| ReplyError::BadEnhancedCode)
        };
        let class = num(c, 1)? as u8;
        if !matches!(class, 2 | 4 | 5) {
            return Err(ReplyError::BadEnhancedCode);
        }
        Ok(EnhancedCode {
            class,
            subject: num(sub, 3)?,
            detail: num(det, 3)?,
        })
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// What an SMTP server sends back: a three-digit code, an optional enhanced status code, and one
/// or more lines of text.
///
/// Invariants, enforced by [`Reply::new`] because reply text can come from plugins: the code is
/// 200..=599, the enhanced code's class matches the code's first digit, and no line contains CR,
/// LF, NUL or other control characters (so a reply can never inject a second reply or a command
/// into the dialogue) or exceeds the RFC 5321 line limit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

/// Why a reply was refused.
#[non_exhaustive]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyError {
    /// The code is not in 200..=599.
    BadCode,
    /// The enhanced code is malformed or its class differs from the reply code's first digit.
    BadEnhancedCode,
    /// A line contains a control character (CR, LF, NUL, ...), usually an injection attempt.
    ControlCharacter,
    /// A line is longer than SMTP allows, or there are too many lines.
    TooLong,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplyError::BadCode => "reply code must be 200..=599",
            ReplyError::BadEnhancedCode => "enhanced status code malformed or of the wrong class",
            ReplyError::ControlCharacter => "reply text contains a control character",
            ReplyError::TooLong => "reply text too long",
        })
    }
}

impl std::error::Error for ReplyError {}

impl Reply {
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: &str) -> Result<Self, ReplyError> {
        if !(200..=599).contains(&code) {
            return Err(ReplyError::BadCode);
        }
        if let Some(e) = enhanced
            && (u16::from(e.class) != code / 100 || e.subject > 999 || e.detail > 999)
        {
            return Err(ReplyError::BadEnhancedCode);
        }
        let lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
        if lines.len() > MAX_LINES {
            return Err(ReplyError::TooLong);
        }
        for line in &lines {
            if line.chars().any(char::is_control) {
                return Err(ReplyError::ControlCharacter);
            }
            if line.len() > MAX_LINE_TEXT {
                return Err(ReplyError::TooLong);
            }
        }
        Ok(Reply {
            code,
            enhanced,
            lines,
        })
    }

    /// A reply built from constants in the code base; the constants are checked by tests.
    ///
    /// # Panics
    /// If the arguments break the invariants of [`Reply::new`]; never call it with text that
    /// came from outside.
    #[allow(clippy::expect_used)]
    pub fn fixed(code: u16, enhanced: (u8, u16, u16), text: &str) -> Self {
        let (c, s, d) = enhanced;
        Reply::new(code, Some(EnhancedCode::new(c, s, d)), text).expect("constant reply is valid")
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (RFC 5321 4.2.1: `code-text` for every line but the last,
    /// `code text` for the last, each ending in CRLF).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(e.to_string().as_bytes());
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write_to(&mut out);
        f.write_str(String::from_utf8_lossy(&out).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_wire_form() {
        let r = Reply::fixed(250, (2, 1, 0), "Sender OK");
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(out, b"250 2.1.0 Sender OK\r\n");

        let r = Reply::new(250, None, "mail.example\nPIPELINING\nSIZE 1000").unwrap();
        let mut out = Vec::new();
        r.write_to(&mut out);
        assert_eq!(
            out,
            b"250-mail.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
        );
    }

    #[test]
    fn refuses_what_could_corrupt_the_dialogue() {
        assert_eq!(Reply::new(199, None, "x"), Err(ReplyError::BadCode));
        assert_eq!(Reply::new(600, None, "x"), Err(ReplyError::BadCode));
        assert_eq!(
            Reply::new(550, Some(EnhancedCode::new(4, 7, 1)), "x"),
            Err(ReplyError::BadEnhancedCode)
        );
        assert_eq!(
            Reply::new(550, None, "bad\r\n250 ok"),
            Err(ReplyError::ControlCharacter)
        );
        assert_eq!(
            Reply::new(550, None, "nul\0"),
            Err(ReplyError::ControlCharacter)
        );
        assert_eq!(
            Reply::new(550, None, &"x".repeat(600)),
            Err(ReplyError::TooLong)
        );
        assert_eq!(
            Reply::new(550, None, &"x\n".repeat(40)),
            Err(ReplyError::TooLong)
        );
    }

    #[test]
    fn enhanced_code_parsing() {
        assert_eq!(EnhancedCode::parse("5.1.1"), Ok(EnhancedCode::new(5, 1, 1)));
        assert_eq!(
            EnhancedCode::parse("4.7.999"),
            Ok(EnhancedCode::new(4, 7, 999))
        );
        for bad in [
            "3.1.1", "5.1", "5.1.1.1", "5.1000.1", "5..1", "a.b.c", "55.1.1", "",
        ] {
            assert!(EnhancedCode::parse(bad).is_err(), "{bad}");
        }
    }
}
