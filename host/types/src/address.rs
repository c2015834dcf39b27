//! Email addresses as SMTP sees them: RFC 5321 section 4.1.2 (`Mailbox`, `Path`, `Domain`,
//! address literals) extended by RFC 6531 section 3.3 (SMTPUTF8: UTF-8 in local parts and
//! U-labels in domains).
//!
//! Parsing is strict about syntax and lenient only where RFC 5321 asks receivers to be (source
//! routes are accepted and discarded). Everything that parses can be printed back with
//! [`Display`](fmt::Display) in a canonical wire form that parses to an equal value.
//!
//! Size limits (RFC 5321 section 4.5.3.1): local part 64 octets, domain 255 octets, path 256
//! octets including the angle brackets, hence a mailbox of at most 254 octets. RFC 5321 says
//! these are minimum maxima and that implementations SHOULD avoid length limits where possible;
//! we enforce them anyway because they bound the memory one command can make us hold and every
//! widely deployed MTA enforces them too, so longer addresses would not be deliverable anyway.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A mailbox address `local-part@domain` as RFC 5321 defines it (with RFC 6531's UTF-8
/// extension).
///
/// The local part is stored decoded (without quotes or backslash escapes) and compared
/// case-sensitively, as RFC 5321 section 2.4 requires of everyone but the mailbox's own host; the
/// domain is stored ASCII-lowercased and so compares case-insensitively. Every `Address` fits
/// the RFC 5321 size limits, so it can always be written inside a path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    /// Decoded local part: the quoted-string form has had its quotes and escapes removed.
    local: String,
    domain: Domain,
}

impl Address {
    /// Longest local part in octets, measured in wire form (RFC 5321 4.5.3.1.1).
    pub const MAX_LOCAL_PART_LEN: usize = 64;
    /// Longest mailbox (`local@domain`) in octets: a path is at most 256 octets including its
    /// two angle brackets (RFC 5321 4.5.3.1.3).
    pub const MAX_LEN: usize = 254;
    /// Longest reverse- or forward-path in octets, including the angle brackets and any source
    /// route (RFC 5321 4.5.3.1.3).
    pub const MAX_PATH_LEN: usize = 256;

    /// Parses `local-part@domain` (no angle brackets, no surrounding whitespace).
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(AddressError::TooLong {
                part: "address",
                max: Self::MAX_LEN,
            });
        }
        reject_controls(s)?;
        let (address, _rest) = parse_mailbox(s, false)?;
        Ok(address)
    }

    /// Builds an address from a decoded local part (any text without control characters; it is
    /// quoted on output when it is not a valid Dot-string) and a domain.
    ///
    /// The domain is re-validated and normalised (lowercased; an `IPv6` general literal becomes
    /// [`Domain::Ipv6`]), because [`Domain`]'s variants can be built without [`Domain::parse`].
    pub fn new(local_part: &str, domain: Domain) -> Result<Address, AddressError> {
        reject_controls(local_part)?;
        if encoded_local_len(local_part) > Self::MAX_LOCAL_PART_LEN {
            return Err(AddressError::TooLong {
                part: "local part",
                max: Self::MAX_LOCAL_PART_LEN,
            });
        }
        let domain = Domain::parse(&domain.to_string()).map_err(empty_is_bad_domain)?;
        Address::from_parts(local_part.to_owned(), domain)
    }

    /// Checks the size limits on the canonical form; the single place every `Address` is built.
    fn from_parts(local: String, domain: Domain) -> Result<Address, AddressError> {
        let local_len = encoded_local_len(&local);
        if local_len > Self::MAX_LOCAL_PART_LEN {
            return Err(AddressError::TooLong {
                part: "local part",
                max: Self::MAX_LOCAL_PART_LEN,
            });
        }
        if local_len + 1 + domain.to_string().len() > Self::MAX_LEN {
            return Err(AddressError::TooLong {
                part: "address",
                max: Self::MAX_LEN,
            });
        }
        Ok(Address { local, domain })
    }

    /// The decoded local part: for `"a b"@x` it is `a b`, for `"a\"b"@x` it is `a"b`.
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain (lowercased).
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Splits the address into its decoded local part and domain.
    pub fn into_parts(self) -> (String, Domain) {
        (self.local, self.domain)
    }

    /// Whether sending this address requires the SMTPUTF8 extension (RFC 6531): any non-ASCII
    /// character in the local part or the domain.
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// Equality that ignores case in the local part as well (Unicode lowercase mapping, char by
    /// char). For policy code only: delivery must treat local parts as case-sensitive.
    pub fn eq_ignore_local_case(&self, other: &Address) -> bool {
        self.domain == other.domain
            && self
                .local
                .chars()
                .flat_map(char::to_lowercase)
                .eq(other.local.chars().flat_map(char::to_lowercase))
    }

    /// Whether the local part is `postmaster`, which RFC 5321 section 4.5.1 makes
    /// case-insensitive.
    pub fn is_postmaster(&self) -> bool {
        self.local.eq_ignore_ascii_case("postmaster")
    }
}

impl fmt::Display for Address {
    /// Canonical wire form: the local part as a Dot-string when it is one, otherwise as a
    /// Quoted-string escaping only `"` and `\`; then `@` and the domain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_dot_string(&self.local) {
            f.write_str(&self.local)?;
        } else {
            f.write_char('"')?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
            f.write_char('"')?;
        }
        write!(f, "@{}", self.domain)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Address").field(&self.to_string()).finish()
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

/// An RFC 5321 `Domain` or `address-literal`.
///
/// Names are stored ASCII-lowercased (non-ASCII characters of U-labels are kept as given; no
/// IDNA mapping is done). Build values with [`Domain::parse`]: the variants are public for
/// matching, and a hand-built value that breaks the grammar will not print as valid syntax.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Domain {
    /// A domain name: dot-separated LDH labels or (RFC 6531) U-labels, lowercased.
    Name(String),
    /// An IPv4 address literal, `[192.0.2.1]`.
    Ipv4(Ipv4Addr),
    /// An IPv6 address literal, `[IPv6:2001:db8::1]`.
    Ipv6(Ipv6Addr),
    /// A General-address-literal `[tag:content]`; the tag is lowercased, the content kept as
    /// given (its meaning is defined by the tag's registration).
    Literal {
        /// The Standardized-tag (lowercased).
        tag: String,
        /// Everything after the first `:`.
        content: String,
    },
}

impl Domain {
    /// Longest domain in octets, brackets included for address literals (RFC 5321 4.5.3.1.2).
    pub const MAX_LEN: usize = 255;
    /// Longest label in octets (RFC 1035 2.3.4); for U-labels we count UTF-8 octets.
    pub const MAX_LABEL_LEN: usize = 63;

    /// Parses a domain name or an address literal in brackets (e.g. a HELO argument, or the part
    /// after `@`).
    pub fn parse(s: &str) -> Result<Domain, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(AddressError::TooLong {
                part: "domain",
                max: Self::MAX_LEN,
            });
        }
        reject_controls(s)?;
        match s.strip_prefix('[') {
            Some(literal) => {
                let inner = literal
                    .strip_suffix(']')
                    .ok_or(AddressError::BadAddressLiteral)?;
                parse_address_literal(inner)
            }
            None => parse_domain_name(s),
        }
    }

    /// The name, if this is a domain name rather than an address literal.
    pub fn as_name(&self) -> Option<&str> {
        match self {
            Domain::Name(name) => Some(name),
            _ => None,
        }
    }

    /// Whether the domain is all ASCII (false only for names with U-labels).
    pub fn is_ascii(&self) -> bool {
        match self {
            Domain::Name(name) => name.is_ascii(),
            Domain::Ipv4(_) | Domain::Ipv6(_) => true,
            Domain::Literal { tag, content } => tag.is_ascii() && content.is_ascii(),
        }
    }

    /// Whether this is an address literal (`[...]`) rather than a name.
    pub fn is_literal(&self) -> bool {
        !matches!(self, Domain::Name(_))
    }
}

impl fmt::Display for Domain {
    /// The name, or `[1.2.3.4]`, `[IPv6:...]`, `[tag:content]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(name) => f.write_str(name),
            Domain::Ipv4(addr) => write!(f, "[{addr}]"),
            Domain::Ipv6(addr) => write!(f, "[IPv6:{addr}]"),
            Domain::Literal { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}

impl FromStr for Domain {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

/// The argument of `MAIL FROM`: the null reverse-path `<>` or an address.
///
/// Source routes (`<@a,@b:x@y>`) are validated and then discarded, as RFC 5321 section 4.1.2
/// and appendix C ask of servers.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ReversePath {
    /// `<>`: bounces and other messages that must not be answered with a bounce.
    Null,
    /// An ordinary sender.
    Address(Address),
}

impl ReversePath {
    /// Parses `<>` or `<local@domain>`; the angle brackets are part of the input.
    pub fn parse(s: &str) -> Result<ReversePath, AddressError> {
        Ok(match parse_path(s)? {
            None => ReversePath::Null,
            Some(address) => ReversePath::Address(address),
        })
    }

    /// The address, unless this is the null path.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ReversePath::Null => None,
            ReversePath::Address(address) => Some(address),
        }
    }

    /// Whether this is the null reverse-path `<>`.
    pub fn is_null(&self) -> bool {
        matches!(self, ReversePath::Null)
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Address(address) => write!(f, "<{address}>"),
        }
    }
}

impl FromStr for ReversePath {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReversePath::parse(s)
    }
}

impl From<Address> for ReversePath {
    fn from(address: Address) -> Self {
        ReversePath::Address(address)
    }
}

/// The argument of `RCPT TO`: the domainless `<Postmaster>` or an address.
///
/// Source routes are validated and discarded as for [`ReversePath`].
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ForwardPath {
    /// `<Postmaster>` with no domain, matched case-insensitively; RFC 5321 section 4.5.1 says
    /// servers MUST accept it and deliver it to the local postmaster. (`<postmaster@domain>` is
    /// an ordinary [`ForwardPath::Address`].)
    Postmaster,
    /// An ordinary recipient.
    Address(Address),
}

impl ForwardPath {
    /// Parses `<Postmaster>` or `<local@domain>`; the angle brackets are part of the input.
    pub fn parse(s: &str) -> Result<ForwardPath, AddressError> {
        let bare_postmaster = s
            .strip_prefix('<')
            .and_then(|rest| rest.strip_suffix('>'))
            .is_some_and(|inner| inner.eq_ignore_ascii_case("postmaster"));
        if bare_postmaster {
            return Ok(ForwardPath::Postmaster);
        }
        match parse_path(s)? {
            None => Err(AddressError::Empty),
            Some(address) => Ok(ForwardPath::Address(address)),
        }
    }

    /// The address, unless this is the domainless `<Postmaster>`.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ForwardPath::Postmaster => None,
            ForwardPath::Address(address) => Some(address),
        }
    }

    /// Whether this is the domainless `<Postmaster>`.
    pub fn is_postmaster(&self) -> bool {
        matches!(self, ForwardPath::Postmaster)
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("<Postmaster>"),
            ForwardPath::Address(address) => write!(f, "<{address}>"),
        }
    }
}

impl FromStr for ForwardPath {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ForwardPath::parse(s)
    }
}

impl From<Address> for ForwardPath {
    fn from(address: Address) -> Self {
        ForwardPath::Address(address)
    }
}

/// Why an address, domain or path was refused. The [`Display`](fmt::Display) text is a short
/// reason fit for an SMTP 501 reply: one line, never echoing the input.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The input was empty, or `<>` was given where a recipient is required. Likely cause: a
    /// client sending `RCPT TO:<>` or a bare `MAIL FROM:`.
    Empty,
    /// `part` (`"local part"`, `"domain"`, `"domain label"`, `"address"` or `"path"`) is longer
    /// than the RFC 5321 limit `max` in octets. Likely cause: abuse or a garbled command.
    TooLong {
        /// Which part was too long.
        part: &'static str,
        /// The limit in octets.
        max: usize,
    },
    /// No `@` after the local part. Likely cause: a bare user name, or `<Postmaster>` where it
    /// is not allowed (in `MAIL FROM` or after a source route).
    MissingAt,
    /// A path was not enclosed in `<` and `>`. Likely cause: a client writing
    /// `MAIL FROM:user@example.com`.
    MissingBrackets,
    /// Something followed the closing `>` of a path. Likely cause: ESMTP parameters not split
    /// off before parsing, or stray text.
    TrailingData,
    /// A control character (C0 including NUL, TAB, CR and LF; DEL; C1) appeared anywhere.
    /// Likely cause: an injection attempt or a broken client.
    ControlCharacter,
    /// The local part is neither a Dot-string nor a Quoted-string. Likely cause: an unquoted
    /// space or special character, a leading, trailing or doubled dot, an empty local part, an
    /// unterminated quote, or text after the closing quote.
    BadLocalPart,
    /// The domain name is malformed. Likely cause: an empty label (leading, trailing or doubled
    /// dot), a label starting or ending with `-`, a character such as `_` or a space, or a
    /// second `@`.
    BadDomain,
    /// An address literal in `[...]` is malformed. Likely cause: an IPv4 octet above 255, an
    /// invalid IPv6 address after `IPv6:`, a missing `]`, or an empty or bad general literal.
    BadAddressLiteral,
    /// The source route (`@a,@b:` before the mailbox) is malformed. Likely cause: a missing
    /// `@`, a bad domain in it, or a missing `:`.
    BadSourceRoute,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressError::Empty => f.write_str("empty address"),
            AddressError::TooLong { part, max } => write!(f, "{part} longer than {max} octets"),
            AddressError::MissingAt => f.write_str("missing @ between local part and domain"),
            AddressError::MissingBrackets => f.write_str("path must be enclosed in <>"),
            AddressError::TrailingData => f.write_str("unexpected text after closing >"),
            AddressError::ControlCharacter => f.write_str("control character in address"),
            AddressError::BadLocalPart => f.write_str("invalid local part"),
            AddressError::BadDomain => f.write_str("invalid domain name"),
            AddressError::BadAddressLiteral => f.write_str("invalid address literal"),
            AddressError::BadSourceRoute => f.write_str("invalid source route"),
        }
    }
}

impl std::error::Error for AddressError {}

/// Rejects C0 controls (NUL, TAB, CR, LF, ...), DEL and C1 controls anywhere.
fn reject_controls(s: &str) -> Result<(), AddressError> {
    if s.chars().any(char::is_control) {
        Err(AddressError::ControlCharacter)
    } else {
        Ok(())
    }
}

fn empty_is_bad_domain(e: AddressError) -> AddressError {
    if e == AddressError::Empty {
        AddressError::BadDomain
    } else {
        e
    }
}

/// RFC 5322 `atext`, plus RFC 6531's UTF8-non-ascii.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control())
}

/// RFC 5321 `qtextSMTP` (%d32-33 / %d35-91 / %d93-126), plus RFC 6531's UTF8-non-ascii.
fn is_qtext(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~') || (!c.is_ascii() && !c.is_control())
}

/// `Dot-string = Atom *("." Atom)`, `Atom = 1*atext`.
fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Octets of the canonical wire form of a decoded local part (see `Display for Address`).
fn encoded_local_len(local: &str) -> usize {
    if is_dot_string(local) {
        local.len()
    } else {
        let escapes = local.chars().filter(|&c| c == '"' || c == '\\').count();
        local.len() + escapes + 2
    }
}

/// Parses a `Mailbox` at the start of `s` and returns it with the unparsed rest.
///
/// Outside a path the domain is everything after the `@`. Inside a path a domain name ends at
/// the first `>` and an address literal at the first `]`, and the caller checks the rest.
/// Assumes `s` has already been length-bounded and checked for control characters.
fn parse_mailbox(s: &str, in_path: bool) -> Result<(Address, &str), AddressError> {
    let (local, after_local) = parse_local_part(s)?;
    let Some(rest) = after_local.strip_prefix('@') else {
        return Err(if after_local.is_empty() || after_local.starts_with('>') {
            AddressError::MissingAt
        } else {
            AddressError::BadLocalPart
        });
    };
    let domain_len = if !in_path {
        rest.len()
    } else if rest.starts_with('[') {
        rest.find(']').map_or(rest.len(), |i| i + 1)
    } else {
        rest.find('>').unwrap_or(rest.len())
    };
    let (domain, rest) = rest.split_at(domain_len);
    let domain = Domain::parse(domain).map_err(empty_is_bad_domain)?;
    Ok((Address::from_parts(local, domain)?, rest))
}

/// Parses `Local-part = Dot-string / Quoted-string` at the start of `s`; returns the decoded
/// local part and the rest, which starts at the `@` for a Dot-string.
fn parse_local_part(s: &str) -> Result<(String, &str), AddressError> {
    let too_long = AddressError::TooLong {
        part: "local part",
        max: Address::MAX_LOCAL_PART_LEN,
    };
    let Some(body) = s.strip_prefix('"') else {
        let at = s.find('@').ok_or(AddressError::MissingAt)?;
        let (raw, rest) = s.split_at(at);
        if raw.len() > Address::MAX_LOCAL_PART_LEN {
            return Err(too_long);
        }
        if !is_dot_string(raw) {
            return Err(AddressError::BadLocalPart);
        }
        return Ok((raw.to_owned(), rest));
    };
    let mut decoded = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                // `i` octets of content plus the two quotes.
                if i + 2 > Address::MAX_LOCAL_PART_LEN {
                    return Err(too_long);
                }
                return Ok((decoded, &body[i + 1..]));
            }
            // quoted-pairSMTP = "\" %d32-126 (RFC 6531 does not extend it to UTF-8).
            '\\' => match chars.next() {
                Some((_, escaped)) if matches!(escaped, ' '..='~') => decoded.push(escaped),
                Some((_, escaped)) if escaped.is_control() => {
                    return Err(AddressError::ControlCharacter);
                }
                _ => return Err(AddressError::BadLocalPart),
            },
            c if is_qtext(c) => decoded.push(c),
            c if c.is_control() => return Err(AddressError::ControlCharacter),
            _ => return Err(AddressError::BadLocalPart),
        }
    }
    // Unterminated quoted string.
    Err(AddressError::BadLocalPart)
}

/// Parses a path `"<" [ A-d-l ":" ] Mailbox ">"` or `<>`; `None` means `<>`.
fn parse_path(s: &str) -> Result<Option<Address>, AddressError> {
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if s.len() > Address::MAX_PATH_LEN {
        return Err(AddressError::TooLong {
            part: "path",
            max: Address::MAX_PATH_LEN,
        });
    }
    reject_controls(s)?;
    let inner = s.strip_prefix('<').ok_or(AddressError::MissingBrackets)?;
    if let Some(after) = inner.strip_prefix('>') {
        return if after.is_empty() {
            Ok(None)
        } else {
            Err(AddressError::TrailingData)
        };
    }
    let mailbox = if inner.starts_with('@') {
        skip_source_route(inner)?
    } else {
        inner
    };
    let (address, rest) = parse_mailbox(mailbox, true)?;
    match rest.strip_prefix('>') {
        Some("") => Ok(Some(address)),
        Some(_) => Err(AddressError::TrailingData),
        None if rest.is_empty() => Err(AddressError::MissingBrackets),
        // Only reachable after an address literal: `[...]` followed by junk.
        None => Err(AddressError::BadAddressLiteral),
    }
}

/// Validates `A-d-l ":"` (`A-d-l = At-domain *( "," At-domain )`, `At-domain = "@" Domain`) at
/// the start of `s` and returns what follows the `:`.
fn skip_source_route(s: &str) -> Result<&str, AddressError> {
    let mut rest = s;
    loop {
        let at_domain = rest.strip_prefix('@').ok_or(AddressError::BadSourceRoute)?;
        let len = if at_domain.starts_with('[') {
            at_domain.find(']').map_or(at_domain.len(), |i| i + 1)
        } else {
            at_domain.find([',', ':', '>']).unwrap_or(at_domain.len())
        };
        let (domain, after) = at_domain.split_at(len);
        Domain::parse(domain).map_err(|_| AddressError::BadSourceRoute)?;
        if let Some(next) = after.strip_prefix(',') {
            rest = next;
        } else if let Some(mailbox) = after.strip_prefix(':') {
            return Ok(mailbox);
        } else {
            return Err(AddressError::BadSourceRoute);
        }
    }
}

/// Parses the inside of `[...]`.
fn parse_address_literal(inner: &str) -> Result<Domain, AddressError> {
    let Some((tag, content)) = inner.split_once(':') else {
        return parse_ipv4_literal(inner)
            .map(Domain::Ipv4)
            .ok_or(AddressError::BadAddressLiteral);
    };
    if tag.eq_ignore_ascii_case("IPv6") {
        return content
            .parse::<Ipv6Addr>()
            .map(Domain::Ipv6)
            .map_err(|_| AddressError::BadAddressLiteral);
    }
    // General-address-literal = Standardized-tag ":" 1*dcontent;
    // Standardized-tag = Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig;
    // dcontent = %d33-90 / %d94-126 (printable ASCII except `[`, `\`, `]`).
    let tag_ok = !tag.is_empty()
        && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !tag.ends_with('-');
    let content_ok =
        !content.is_empty() && content.bytes().all(|b| matches!(b, 33..=90 | 94..=126));
    if tag_ok && content_ok {
        Ok(Domain::Literal {
            tag: tag.to_ascii_lowercase(),
            content: content.to_owned(),
        })
    } else {
        Err(AddressError::BadAddressLiteral)
    }
}

/// `IPv4-address-literal = Snum 3("." Snum)`, `Snum = 1*3DIGIT` with a value 0-255. Unlike
/// `Ipv4Addr::from_str` this accepts leading zeros, as the grammar does.
fn parse_ipv4_literal(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    match parts.next() {
        Some(_) => None,
        None => Some(Ipv4Addr::from(octets)),
    }
}

/// `Domain = sub-domain *("." sub-domain)`; returns it lowercased.
fn parse_domain_name(s: &str) -> Result<Domain, AddressError> {
    for label in s.split('.') {
        if label.is_empty() {
            return Err(AddressError::BadDomain);
        }
        if label.len() > Domain::MAX_LABEL_LEN {
            return Err(AddressError::TooLong {
                part: "domain label",
                max: Domain::MAX_LABEL_LEN,
            });
        }
        if !is_label(label) {
            return Err(AddressError::BadDomain);
        }
    }
    Ok(Domain::Name(s.to_ascii_lowercase()))
}

/// `sub-domain = Let-dig [Ldh-str]` for ASCII labels. A label with non-ASCII characters is
/// taken as an RFC 6531 U-label: the same rule with any non-ASCII character allowed except
/// controls, whitespace and the full stops IDNA treats as label separators. No IDNA2008
/// validation is done (that needs Unicode tables, and this crate has no dependencies).
fn is_label(label: &str) -> bool {
    let char_ok = |c: char| {
        c.is_ascii_alphanumeric()
            || c == '-'
            || (!c.is_ascii()
                && !c.is_control()
                && !c.is_whitespace()
                && !matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}'))
    };
    label.chars().all(char_ok) && !label.starts_with('-') && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn dom(s: &str) -> Domain {
        Domain::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// parse(display(a)) == a, also inside a path.
    fn assert_round_trip(a: &Address) {
        let text = a.to_string();
        assert!(text.len() <= Address::MAX_LEN, "{text:?} too long");
        assert_eq!(
            Address::parse(&text).as_ref(),
            Ok(a),
            "round trip of {text:?}"
        );
        let path = ReversePath::Address(a.clone());
        assert_eq!(ReversePath::parse(&path.to_string()), Ok(path.clone()));
        let path = ForwardPath::Address(a.clone());
        assert_eq!(ForwardPath::parse(&path.to_string()), Ok(path.clone()));
        assert_eq!(
            Address::new(a.local_part(), a.domain().clone()).as_ref(),
            Ok(a)
        );
    }

    // (input, decoded local part, domain as displayed, canonical display)
    #[rustfmt::skip]
    const VALID: &[(&str, &str, &str, &str)] = &[
        ("user@example.com", "user", "example.com", "user@example.com"),
        ("first.last@example.com", "first.last", "example.com", "first.last@example.com"),
        ("user+tag@example.com", "user+tag", "example.com", "user+tag@example.com"),
        ("a.b.c.d@x", "a.b.c.d", "x", "a.b.c.d@x"),
        ("!#$%&'*+-/=?^_`{|}~@x.y", "!#$%&'*+-/=?^_`{|}~", "x.y", "!#$%&'*+-/=?^_`{|}~@x.y"),
        ("a.!#$.%&'*+-/=?^_`{|}~.z@x", "a.!#$.%&'*+-/=?^_`{|}~.z", "x", "a.!#$.%&'*+-/=?^_`{|}~.z@x"),
        ("\"a b\"@x", "a b", "x", "\"a b\"@x"),
        ("\" \"@x", " ", "x", "\" \"@x"),
        ("\"a\\\"b\"@x", "a\"b", "x", "\"a\\\"b\"@x"),
        ("\"a\\\\b\"@x", "a\\b", "x", "\"a\\\\b\"@x"),
        ("\"a\\ b\"@x", "a b", "x", "\"a b\"@x"),
        ("\"\"@x", "", "x", "\"\"@x"),
        ("\"abc\"@x", "abc", "x", "abc@x"),
        ("\"\\a\\b\"@x", "ab", "x", "ab@x"),
        ("\"a.b\"@x", "a.b", "x", "a.b@x"),
        ("\"a..b\"@x", "a..b", "x", "\"a..b\"@x"),
        ("\".a\"@x", ".a", "x", "\".a\"@x"),
        ("\"a.\"@x", "a.", "x", "\"a.\"@x"),
        ("\"a@b\"@x", "a@b", "x", "\"a@b\"@x"),
        ("\"(c),[d];<e>:f\"@x", "(c),[d];<e>:f", "x", "\"(c),[d];<e>:f\"@x"),
        ("\"用 户\"@x", "用 户", "x", "\"用 户\"@x"),
        ("user@[192.0.2.1]", "user", "[192.0.2.1]", "user@[192.0.2.1]"),
        ("user@[001.02.255.0]", "user", "[1.2.255.0]", "user@[1.2.255.0]"),
        ("user@[IPv6:2001:db8::1]", "user", "[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"),
        ("user@[ipv6:2001:DB8:0:0:0:0:0:1]", "user", "[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"),
        ("u@[IPv6:::]", "u", "[IPv6:::]", "u@[IPv6:::]"),
        ("u@[IPv6:::ffff:192.0.2.1]", "u", "[IPv6:::ffff:192.0.2.1]", "u@[IPv6:::ffff:192.0.2.1]"),
        ("u@[x-tag:Some!content~]", "u", "[x-tag:Some!content~]", "u@[x-tag:Some!content~]"),
        ("u@[X-TAG:a:b>c]", "u", "[x-tag:a:b>c]", "u@[x-tag:a:b>c]"),
        ("u@[IPv4:1.2.3.4]", "u", "[ipv4:1.2.3.4]", "u@[ipv4:1.2.3.4]"),
        ("用户@例子.广告", "用户", "例子.广告", "用户@例子.广告"),
        ("δοκιμή@παράδειγμα.δοκιμή", "δοκιμή", "παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή"),
        ("ü@Ä-b.EXAMPLE", "ü", "Ä-b.example", "ü@Ä-b.example"),
        ("User@EXAMPLE.COM", "User", "example.com", "User@example.com"),
        ("a@localhost", "a", "localhost", "a@localhost"),
        ("a@1.2.3.4", "a", "1.2.3.4", "a@1.2.3.4"),
        ("a@a-b.c--d.e", "a", "a-b.c--d.e", "a@a-b.c--d.e"),
        ("a@xn--bcher-kva.example", "a", "xn--bcher-kva.example", "a@xn--bcher-kva.example"),
        ("a@9", "a", "9", "a@9"),
    ];

    #[test]
    fn valid_addresses() {
        for &(input, local, domain, display) in VALID {
            let a = addr(input);
            assert_eq!(a.local_part(), local, "local part of {input:?}");
            assert_eq!(a.domain().to_string(), domain, "domain of {input:?}");
            assert_eq!(a.to_string(), display, "display of {input:?}");
            assert_eq!(input.parse::<Address>().as_ref(), Ok(&a));
            assert_round_trip(&a);
        }
    }

    #[test]
    fn boundary_lengths_are_accepted() {
        let label63 = "b".repeat(63);
        let a = addr(&format!("a@{label63}.com"));
        assert_round_trip(&a);
        let local64 = "a".repeat(64);
        let a = addr(&format!("{local64}@x"));
        assert_eq!(a.local_part(), local64);
        assert_round_trip(&a);
        // Quoted form counts quotes: 62 characters + 2 quotes = 64.
        let a = addr(&format!("\"{}\"@x", " ".repeat(62)));
        assert_round_trip(&a);
        // A mailbox of exactly 254 octets: 64 + 1 + 189.
        let domain = format!("{}.{}.{}", "c".repeat(63), "d".repeat(63), "e".repeat(61));
        assert_eq!(domain.len(), 189);
        let a = addr(&format!("{local64}@{domain}"));
        assert_eq!(a.to_string().len(), 254);
        assert_round_trip(&a);
        // Domain::parse alone allows 255 octets.
        let domain255 = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63)
        );
        assert_eq!(domain255.len(), 255);
        assert!(Domain::parse(&domain255).is_ok());
    }

    const INVALID: &[(&str, AddressError)] = &[
        ("", AddressError::Empty),
        ("userexample.com", AddressError::MissingAt),
        ("\"a@b\"", AddressError::MissingAt),
        ("a@b@c", AddressError::BadDomain),
        ("a@@b", AddressError::BadDomain),
        ("@example.com", AddressError::BadLocalPart),
        (".a@x", AddressError::BadLocalPart),
        ("a.@x", AddressError::BadLocalPart),
        ("a..b@x", AddressError::BadLocalPart),
        (".@x", AddressError::BadLocalPart),
        ("a b@x", AddressError::BadLocalPart),
        (" a@x", AddressError::BadLocalPart),
        ("a\"b@x", AddressError::BadLocalPart),
        ("a\\b@x", AddressError::BadLocalPart),
        ("a(b)@x", AddressError::BadLocalPart),
        ("a,b@x", AddressError::BadLocalPart),
        ("a:b@x", AddressError::BadLocalPart),
        ("a;b@x", AddressError::BadLocalPart),
        ("a<b@x", AddressError::BadLocalPart),
        ("a>b@x", AddressError::BadLocalPart),
        ("a[b]@x", AddressError::BadLocalPart),
        ("<a@x>", AddressError::BadLocalPart),
        ("\"abc@x", AddressError::BadLocalPart),
        ("\"a\"b@x", AddressError::BadLocalPart),
        ("\"a\"\"b\"@x", AddressError::BadLocalPart),
        ("a\"b\"@x", AddressError::BadLocalPart),
        ("\"a\\é\"@x", AddressError::BadLocalPart),
        ("\"a\\\"@x", AddressError::BadLocalPart),
        ("a\0b@x", AddressError::ControlCharacter),
        ("a\rb@x", AddressError::ControlCharacter),
        ("a\nb@x", AddressError::ControlCharacter),
        ("a\tb@x", AddressError::ControlCharacter),
        ("a\u{7f}b@x", AddressError::ControlCharacter),
        ("a\u{85}b@x", AddressError::ControlCharacter),
        ("a\u{9f}b@x", AddressError::ControlCharacter),
        ("\"a\rb\"@x", AddressError::ControlCharacter),
        ("\"a\\\0\"@x", AddressError::ControlCharacter),
        ("\"a\\\n\"@x", AddressError::ControlCharacter),
        ("a@x\r\n", AddressError::ControlCharacter),
        ("a@x\0", AddressError::ControlCharacter),
        ("a@", AddressError::BadDomain),
        ("a@-b.com", AddressError::BadDomain),
        ("a@b-.com", AddressError::BadDomain),
        ("a@b.-c", AddressError::BadDomain),
        ("a@-", AddressError::BadDomain),
        ("a@b..com", AddressError::BadDomain),
        ("a@.b.com", AddressError::BadDomain),
        ("a@b.com.", AddressError::BadDomain),
        ("a@.", AddressError::BadDomain),
        ("a@b_c.com", AddressError::BadDomain),
        ("a@b c", AddressError::BadDomain),
        ("a@b>", AddressError::BadDomain),
        ("a@b]", AddressError::BadDomain),
        ("a@b,c", AddressError::BadDomain),
        ("a@例子。广告", AddressError::BadDomain),
        ("a@例子．广告", AddressError::BadDomain),
        ("a@-例子.广告", AddressError::BadDomain),
        ("a@例子-.广告", AddressError::BadDomain),
        ("a@例\u{3000}子", AddressError::BadDomain),
        ("a@[1.2.3.256]", AddressError::BadAddressLiteral),
        ("a@[1.2.3]", AddressError::BadAddressLiteral),
        ("a@[1.2.3.4.5]", AddressError::BadAddressLiteral),
        ("a@[1..3.4]", AddressError::BadAddressLiteral),
        ("a@[1.2.3.0004]", AddressError::BadAddressLiteral),
        ("a@[1.2.3.-4]", AddressError::BadAddressLiteral),
        ("a@[1.2.3.4", AddressError::BadAddressLiteral),
        ("a@[1.2.3.4]x", AddressError::BadAddressLiteral),
        ("a@[1.2.3.4]]", AddressError::BadAddressLiteral),
        ("a@[ 1.2.3.4]", AddressError::BadAddressLiteral),
        ("a@[]", AddressError::BadAddressLiteral),
        ("a@[", AddressError::BadAddressLiteral),
        ("a@[IPv6:zz::1]", AddressError::BadAddressLiteral),
        ("a@[IPv6:1::2::3]", AddressError::BadAddressLiteral),
        ("a@[IPv6:1.2.3.4]", AddressError::BadAddressLiteral),
        ("a@[IPv6:]", AddressError::BadAddressLiteral),
        ("a@[IPv6:::1%eth0]", AddressError::BadAddressLiteral),
        ("a@[::1]", AddressError::BadAddressLiteral),
        ("a@[tag:]", AddressError::BadAddressLiteral),
        ("a@[:content]", AddressError::BadAddressLiteral),
        ("a@[tag-:x]", AddressError::BadAddressLiteral),
        ("a@[t_g:x]", AddressError::BadAddressLiteral),
        ("a@[tag:a b]", AddressError::BadAddressLiteral),
        ("a@[tag:a[b]", AddressError::BadAddressLiteral),
        ("a@[tag:a\\b]", AddressError::BadAddressLiteral),
        ("a@[tag:é]", AddressError::BadAddressLiteral),
    ];

    #[test]
    fn invalid_addresses() {
        for (input, expected) in INVALID {
            assert_eq!(Address::parse(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    fn too_long(part: &'static str, max: usize) -> AddressError {
        AddressError::TooLong { part, max }
    }

    #[test]
    fn overlong_parts_are_rejected() {
        let cases = [
            (format!("{}@x", "a".repeat(65)), too_long("local part", 64)),
            (
                format!("\"{}\"@x", "a".repeat(63)),
                too_long("local part", 64),
            ),
            (
                format!("a@{}.com", "b".repeat(64)),
                too_long("domain label", 63),
            ),
            (
                format!("a@{}.com", "é".repeat(32)),
                too_long("domain label", 63),
            ),
            (
                format!("{}@{}", "a".repeat(64), "b.".repeat(95) + "cc"),
                too_long("address", 254),
            ),
            (
                format!("a@{}", "b.".repeat(127) + "cc"),
                too_long("address", 254),
            ),
        ];
        for (input, expected) in &cases {
            assert_eq!(Address::parse(input).as_ref(), Err(expected), "{input:?}");
        }
        let long_domain = "b.".repeat(127) + "cc";
        assert_eq!(long_domain.len(), 256);
        assert_eq!(Domain::parse(&long_domain), Err(too_long("domain", 255)));
        let long_path = format!("<{}@{}cc>", "a".repeat(60), "b.".repeat(96));
        assert!(long_path.len() > 256);
        assert_eq!(ReversePath::parse(&long_path), Err(too_long("path", 256)));
        assert_eq!(ForwardPath::parse(&long_path), Err(too_long("path", 256)));
        // A source route counts toward the path limit.
        let routed = format!("<@{}:a@b>", "r".repeat(250));
        assert_eq!(ReversePath::parse(&routed), Err(too_long("path", 256)));
    }

    #[test]
    fn reverse_paths() {
        let cases: &[(&str, Option<&str>)] = &[
            ("<>", None),
            ("<a@b>", Some("a@b")),
            ("<a@B.C>", Some("a@b.c")),
            ("<@a,@b:x@y>", Some("x@y")),
            ("<@a.example:x@y>", Some("x@y")),
            ("<@[1.2.3.4]:x@y>", Some("x@y")),
            ("<@[IPv6:::1],@c.d:x@y>", Some("x@y")),
            ("<\"a>b\"@c>", Some("\"a>b\"@c")),
            ("<\"a b\"@[1.2.3.4]>", Some("\"a b\"@[1.2.3.4]")),
            ("<a@[x:a>b]>", Some("a@[x:a>b]")),
            ("<用户@例子.广告>", Some("用户@例子.广告")),
            ("<Postmaster@Example.com>", Some("Postmaster@example.com")),
        ];
        for &(input, expected) in cases {
            let path = ReversePath::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            match expected {
                None => assert_eq!(path, ReversePath::Null),
                Some(a) => assert_eq!(path.address().map(Address::to_string).as_deref(), Some(a)),
            }
            let shown = path.to_string();
            assert_eq!(shown, format!("<{}>", expected.unwrap_or("")));
            assert_eq!(ReversePath::parse(&shown), Ok(path.clone()));
            assert_eq!(input.parse::<ReversePath>(), Ok(path));
        }
        assert!(ReversePath::parse("<>").is_ok_and(|p| p.is_null()));
    }

    #[test]
    fn forward_paths() {
        for input in [
            "<Postmaster>",
            "<POSTMASTER>",
            "<postmaster>",
            "<pOsTmAsTeR>",
        ] {
            let path = ForwardPath::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(path, ForwardPath::Postmaster);
            assert!(path.is_postmaster() && path.address().is_none());
            assert_eq!(path.to_string(), "<Postmaster>");
        }
        let path = ForwardPath::parse("<postmaster@Example.COM>").unwrap_or_else(|e| panic!("{e}"));
        let a = path
            .address()
            .unwrap_or_else(|| panic!("should be an address"));
        assert_eq!(a.local_part(), "postmaster");
        assert_eq!(a.domain(), &Domain::Name("example.com".into()));
        assert!(a.is_postmaster());
        assert_eq!(
            ForwardPath::parse("<@a,@b:x@y>"),
            Ok(ForwardPath::Address(addr("x@y")))
        );
        assert_eq!(
            "<x@y>".parse::<ForwardPath>(),
            Ok(ForwardPath::from(addr("x@y")))
        );
    }

    #[test]
    fn invalid_paths() {
        use AddressError as E;
        let both: &[(&str, AddressError)] = &[
            ("", E::Empty),
            ("a@b", E::MissingBrackets),
            ("a@b>", E::MissingBrackets),
            ("<a@b", E::MissingBrackets),
            ("<\"a>b\"@c", E::MissingBrackets),
            ("<a@[1.2.3.4]", E::MissingBrackets),
            (" <a@b>", E::MissingBrackets),
            ("<a@b> trailing", E::TrailingData),
            ("<a@b> SIZE=100", E::TrailingData),
            ("<a@b>>", E::TrailingData),
            ("<a@b> ", E::TrailingData),
            ("<a@[1.2.3.4]>x", E::TrailingData),
            ("<a@[1.2.3.4]x>", E::BadAddressLiteral),
            ("<a@[1.2.3.256]>", E::BadAddressLiteral),
            ("<<a@b>>", E::BadLocalPart),
            ("< a@b>", E::BadLocalPart),
            ("<a@b >", E::BadDomain),
            ("<a@-b>", E::BadDomain),
            ("<a@>", E::BadDomain),
            ("<a>", E::MissingAt),
            ("<\"a\">", E::MissingAt),
            ("<a@b\r\n>", E::ControlCharacter),
            ("<a@b>\r\n", E::ControlCharacter),
            ("<@a,b:x@y>", E::BadSourceRoute),
            ("<@:x@y>", E::BadSourceRoute),
            ("<@a;x@y>", E::BadSourceRoute),
            ("<@a,@-b:x@y>", E::BadSourceRoute),
            ("<@a,:x@y>", E::BadSourceRoute),
            ("<@a>", E::BadSourceRoute),
            ("<@a x@y>", E::BadSourceRoute),
            ("<@[1.2.3.256]:x@y>", E::BadSourceRoute),
            ("<@[1.2.3.4]x:x@y>", E::BadSourceRoute),
            ("<@a:>", E::MissingAt),
            ("<@a:@b>", E::BadLocalPart),
            ("<:x@y>", E::BadLocalPart),
        ];
        for (input, expected) in both {
            assert_eq!(
                ReversePath::parse(input).as_ref(),
                Err(expected),
                "reverse {input:?}"
            );
            assert_eq!(
                ForwardPath::parse(input).as_ref(),
                Err(expected),
                "forward {input:?}"
            );
        }
        assert_eq!(ReversePath::parse("<> x"), Err(E::TrailingData));
        assert_eq!(ReversePath::parse("<>>"), Err(E::TrailingData));
        assert_eq!(ReversePath::parse("<Postmaster>"), Err(E::MissingAt));
        assert_eq!(ForwardPath::parse("<>"), Err(E::Empty));
        assert_eq!(ForwardPath::parse("<@a:Postmaster>"), Err(E::MissingAt));
        assert_eq!(ForwardPath::parse("<Postmaster> "), Err(E::MissingAt));
        assert_eq!(ForwardPath::parse("<\"Postmaster\">"), Err(E::MissingAt));
        assert_eq!(ForwardPath::parse("Postmaster"), Err(E::MissingBrackets));
    }

    #[test]
    fn domains() {
        assert_eq!(dom("Example.COM"), Domain::Name("example.com".into()));
        assert_eq!(
            dom("[192.0.2.1]"),
            Domain::Ipv4(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert_eq!(dom("[IPv6:::1]"), Domain::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            dom("[Foo-1:Bar]"),
            Domain::Literal {
                tag: "foo-1".into(),
                content: "Bar".into()
            }
        );
        assert_eq!(dom("Example.COM").as_name(), Some("example.com"));
        assert_eq!(dom("[1.2.3.4]").as_name(), None);
        assert!(dom("[1.2.3.4]").is_literal() && !dom("a.b").is_literal());
        assert!(dom("example.com").is_ascii());
        assert!(!dom("例子.广告").is_ascii());
        assert!(dom("[IPv6:::1]").is_ascii());
        assert_eq!(Domain::parse(""), Err(AddressError::Empty));
        assert_eq!("a.B".parse::<Domain>(), Ok(Domain::Name("a.b".into())));
        for s in [
            "a",
            "a.b",
            "[1.2.3.4]",
            "[IPv6:2001:db8::]",
            "[t:x]",
            "例子.广告",
        ] {
            let d = dom(s);
            assert_eq!(Domain::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn new_validates_and_quotes() {
        let x = dom("x");
        let cases: &[(&str, &str)] = &[
            ("plain", "plain@x"),
            ("a b", "\"a b\"@x"),
            ("", "\"\"@x"),
            ("a\"b\\c", "\"a\\\"b\\\\c\"@x"),
            ("a..b", "\"a..b\"@x"),
            (".a", "\".a\"@x"),
            ("a.", "\"a.\"@x"),
            ("a@b", "\"a@b\"@x"),
            ("用户", "用户@x"),
        ];
        for &(local, shown) in cases {
            let a = Address::new(local, x.clone()).unwrap_or_else(|e| panic!("{local:?}: {e}"));
            assert_eq!(a.local_part(), local);
            assert_eq!(a.to_string(), shown);
            assert_round_trip(&a);
        }
        assert_eq!(
            Address::new("a\rb", x.clone()),
            Err(AddressError::ControlCharacter)
        );
        assert_eq!(
            Address::new("\0", x.clone()),
            Err(AddressError::ControlCharacter)
        );
        assert_eq!(
            Address::new(&"a".repeat(65), x.clone()),
            Err(too_long("local part", 64))
        );
        // 62 characters plus one `"` needs quoting and an escape: 2 + 63 + 1 = 66 octets.
        let needs_escape = format!("{}\"", "a".repeat(62));
        assert_eq!(
            Address::new(&needs_escape, x.clone()),
            Err(too_long("local part", 64))
        );
        assert_eq!(
            Address::new("a", Domain::Name("bad domain".into())),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            Address::new("a", Domain::Name(String::new())),
            Err(AddressError::BadDomain)
        );
        assert_eq!(
            Address::new(
                "a",
                Domain::Literal {
                    tag: "IPv6".into(),
                    content: "zz".into()
                }
            ),
            Err(AddressError::BadAddressLiteral)
        );
        // Hand-built domains are normalised.
        let a =
            Address::new("a", Domain::Name("EXAMPLE.com".into())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.domain(), &Domain::Name("example.com".into()));
        let a = Address::new(
            "a",
            Domain::Literal {
                tag: "IPv6".into(),
                content: "::1".into(),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.domain(), &Domain::Ipv6(Ipv6Addr::LOCALHOST));
        let long_domain = dom(&format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63)
        ));
        assert_eq!(
            Address::new("a", long_domain),
            Err(too_long("address", 254))
        );
    }

    #[test]
    fn equality_and_case() {
        assert_ne!(addr("User@x"), addr("user@x"));
        assert_eq!(addr("user@EXAMPLE.com"), addr("user@example.com"));
        assert_eq!(addr("\"user\"@x"), addr("user@x"));
        assert_eq!(addr("\"a\\b\"@x"), addr("ab@x"));
        assert!(addr("User@X").eq_ignore_local_case(&addr("uSER@x")));
        assert!(addr("ÄB@x").eq_ignore_local_case(&addr("äb@x")));
        assert!(!addr("User@x").eq_ignore_local_case(&addr("User@y")));
        assert!(!addr("ab@x").eq_ignore_local_case(&addr("abc@x")));
        let set: HashSet<Address> = ["a@X", "a@x", "\"a\"@x", "A@x"]
            .iter()
            .map(|s| addr(s))
            .collect();
        assert_eq!(set.len(), 2);
        assert!(addr("a@x") < addr("b@a"));
        let (local, domain) = addr("\"a b\"@X").into_parts();
        assert_eq!((local.as_str(), domain), ("a b", Domain::Name("x".into())));
    }

    #[test]
    fn smtputf8_detection() {
        assert!(!addr("user@example.com").needs_smtputf8());
        assert!(!addr("\"a b\"@[IPv6:::1]").needs_smtputf8());
        assert!(addr("用户@example.com").needs_smtputf8());
        assert!(addr("user@例子.广告").needs_smtputf8());
        assert!(addr("δοκιμή@παράδειγμα.δοκιμή").needs_smtputf8());
        assert!(addr("\"é\"@x").needs_smtputf8());
    }

    #[test]
    fn debug_and_error_messages() {
        assert_eq!(
            format!("{:?}", addr("\"a b\"@X")),
            "Address(\"\\\"a b\\\"@x\")"
        );
        assert_eq!(format!("{:?}", addr("a@b")), "Address(\"a@b\")");
        let errors = INVALID.iter().map(|(_, e)| e.clone()).chain([
            AddressError::MissingBrackets,
            AddressError::TrailingData,
            AddressError::BadSourceRoute,
            too_long("path", 256),
        ]);
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && text.len() < 60, "{text:?}");
            assert!(!text.contains(['\r', '\n']), "{text:?}");
            let _: &dyn std::error::Error = &e;
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn string(&mut self, pieces: &[&str], max_pieces: usize) -> String {
            let n = self.below(max_pieces + 1);
            (0..n).map(|_| pieces[self.below(pieces.len())]).collect()
        }
    }

    /// Anything goes: structure characters, controls, non-ASCII, fragments of literals.
    #[rustfmt::skip]
    const PIECES: &[&str] = &[
        "a", "Z", "0", "-", ".", "@", "\"", "\\", " ", "<", ">", "[", "]", ":", ",", "!", "~",
        "(", "_", "\0", "\r", "\n", "\t", "\u{7f}", "\u{85}", "é", "用", "。", "IPv6:", "::1",
        "1.2.3.4", "255", "Postmaster", "x.y", "\\\"", "\"\"", "@[", "]>", "<@", ":", "..",
    ];
    /// Mostly valid in a local part, with a few troublemakers.
    #[rustfmt::skip]
    const LOCAL_PIECES: &[&str] = &[
        "a", "B", "0", ".", "+", "-", "=", "é", "用", "!", "~", "'", "\"", "\\", " ", "@", "..",
    ];
    /// Mostly valid in a domain, with a few troublemakers.
    #[rustfmt::skip]
    const DOMAIN_PIECES: &[&str] = &[
        "a", "B", "0", "x", ".", "-", "é", "用", "[1.2.3.4]", "[IPv6:::1]", "[t:v]", "_", "..",
    ];

    #[test]
    fn generated_inputs_never_panic_and_round_trip() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (mut ok_addresses, mut ok_domains, mut ok_paths) = (0, 0, 0);
        let check_error = |e: &AddressError| {
            let text = e.to_string();
            assert!(text.len() < 60 && !text.contains(['\r', '\n']), "{text:?}");
        };
        for i in 0..12_000 {
            let input = match i % 6 {
                0 => rng.string(PIECES, 16),
                1 => format!("{}@{}", rng.string(PIECES, 6), rng.string(PIECES, 5)),
                2 => format!("<{}@{}>", rng.string(PIECES, 6), rng.string(PIECES, 5)),
                3 => rng.string(DOMAIN_PIECES, 8),
                4 => format!(
                    "\"{}\"@{}",
                    rng.string(PIECES, 8),
                    rng.string(DOMAIN_PIECES, 4)
                ),
                _ => {
                    // Mostly draw from the clean start of each list so that many are valid.
                    let (local_pieces, domain_pieces) = if rng.below(4) == 0 {
                        (LOCAL_PIECES, DOMAIN_PIECES)
                    } else {
                        (&LOCAL_PIECES[..12], &DOMAIN_PIECES[..5])
                    };
                    let local = rng.string(local_pieces, 8);
                    let domain = rng.string(domain_pieces, 5);
                    match rng.below(3) {
                        0 => format!("{local}@{domain}"),
                        1 => format!("<{local}@{domain}>"),
                        _ => format!("<@{}:{local}@{domain}>", rng.string(DOMAIN_PIECES, 3)),
                    }
                }
            };
            match Address::parse(&input) {
                Ok(a) => {
                    ok_addresses += 1;
                    assert_round_trip(&a);
                }
                Err(e) => check_error(&e),
            }
            match Domain::parse(&input) {
                Ok(d) => {
                    ok_domains += 1;
                    assert_eq!(Domain::parse(&d.to_string()).as_ref(), Ok(&d), "{input:?}");
                }
                Err(e) => check_error(&e),
            }
            match ReversePath::parse(&input) {
                Ok(p) => {
                    ok_paths += 1;
                    assert_eq!(
                        ReversePath::parse(&p.to_string()).as_ref(),
                        Ok(&p),
                        "{input:?}"
                    );
                }
                Err(e) => check_error(&e),
            }
            match ForwardPath::parse(&input) {
                Ok(p) => assert_eq!(
                    ForwardPath::parse(&p.to_string()).as_ref(),
                    Ok(&p),
                    "{input:?}"
                ),
                Err(e) => check_error(&e),
            }
            // Any text is either refused or quoted so that it round-trips.
            match Address::new(&input, Domain::Name("x".into())) {
                Ok(a) => {
                    assert_eq!(a.local_part(), input);
                    assert_round_trip(&a);
                }
                Err(e) => check_error(&e),
            }
        }
        // Guard against a generator that never produces anything valid.
        assert!(
            ok_addresses > 100,
            "only {ok_addresses} valid addresses generated"
        );
        assert!(
            ok_domains > 100,
            "only {ok_domains} valid domains generated"
        );
        assert!(ok_paths > 200, "only {ok_paths} valid paths generated");
    }
}
