//! A message's MIME structure as IMAP shows it: ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501
//! 7.4.2), the octets of `BODY[section]` (RFC 3501 6.4.5) and `BINARY[section]` (RFC 3516), and
//! the decoded text SEARCH matches against.
//!
//! Everything works on the message octets as stored (CRLF line ends, bare LF tolerated) and
//! never fails: malformed mail (a multipart without a boundary or without a closing delimiter,
//! garbage header lines, absurd nesting) still yields a sane structure, because a client that
//! cannot fetch a message's structure cannot show the message at all.
//!
//! The MIME tree is built here rather than taken from mail-parser's `Message`: every entity is a
//! pair of slices (header, body) of the original octets, so sections are byte-exact and sizes
//! are stored sizes by construction. mail-parser's tree gives offsets into a decoded copy for an
//! encoded message/rfc822 part and debug-asserts on some malformed nestings (a panic in test
//! builds). mail-parser supplies the charset decoders and RFC 2047 encoded-word decoding.

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU32;

use mail_parser::HeaderValue;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;

use super::header_len;
use super::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use super::imap_types::core::{IString, Literal, NString, Quoted, Vec1};
use super::imap_types::envelope::{Address, Envelope};
use super::imap_types::fetch::Section;

/// The deepest nesting of multiparts and encapsulated messages that is described; a multipart or
/// message/rfc822 part deeper than this is shown as an opaque APPLICATION/OCTET-STREAM leaf. This
/// bounds recursion (stack) and the size of a BODYSTRUCTURE (Dovecot's message parser stops at
/// 100 levels).
pub const MAX_NESTING: usize = 64;

/// The most entities described in one message. Once reached, a multipart's remaining content
/// stays inside its last part and deeper containers become opaque, so a message of a million
/// empty parts costs a bounded structure (Dovecot's message parser stops at 10,000 parts).
pub const MAX_PARTS: usize = 10_000;

/// The host of an address that has none: NIL would mark the start of a group (RFC 3501 7.4.2),
/// so some name must stand there; this is the one UW imapd (c-client's BADHOST) sends, which
/// clients recognise (Dovecot sends "MISSING_DOMAIN").
const MISSING_HOST: &[u8] = b".MISSING-HOST-NAME.";

// ---------------------------------------------------------------------------------------------
// Header fields

/// One field of a header section, as stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeaderField<'m> {
    /// The field name without the colon and surrounding whitespace; `None` for a line that has
    /// no colon (garbage, kept so that nothing in a header is lost).
    pub name: Option<&'m [u8]>,
    /// Everything after the colon through the end of the last continuation line, line ends
    /// included (the whole line for a line without a colon).
    pub value: &'m [u8],
    /// The whole field as stored: name, colon, value and continuation lines with their line ends.
    pub raw: &'m [u8],
}

impl HeaderField<'_> {
    /// Whether the field is called `name` (field names are case-insensitive, RFC 5322 1.2.2).
    pub fn is(&self, name: &[u8]) -> bool {
        self.name.is_some_and(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The fields of a header section in message order. Lines starting with SP or HTAB continue the
/// field before them (RFC 5322 2.2.3); the first empty line ends the header.
pub fn header_fields(header: &[u8]) -> Vec<HeaderField<'_>> {
    struct Span {
        start: usize,
        colon: Option<usize>,
        end: usize,
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut pos = 0;
    while pos < header.len() {
        let end = line_end(header, pos);
        let line = &header[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continues = matches!(line.first(), Some(b' ' | b'\t'));
        match spans.last_mut() {
            Some(last) if continues => last.end = end,
            _ => spans.push(Span {
                start: pos,
                colon: line.iter().position(|&b| b == b':').map(|at| pos + at),
                end,
            }),
        }
        pos = end;
    }
    spans
        .iter()
        .map(|span| HeaderField {
            name: span.colon.map(|colon| trim_wsp(&header[span.start..colon])),
            value: span.colon.map_or(&header[span.start..span.end], |colon| {
                &header[colon + 1..span.end]
            }),
            raw: &header[span.start..span.end],
        })
        .collect()
}

/// The index just after the line that starts at `pos` (after its LF, or the end of `bytes`).
fn line_end(bytes: &[u8], pos: usize) -> usize {
    bytes[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |at| pos + at + 1)
}

fn trim_wsp(bytes: &[u8]) -> &[u8] {
    let is_wsp = |b: &u8| matches!(b, b' ' | b'\t');
    let start = bytes.iter().position(|b| !is_wsp(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_wsp(b))
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

/// A field value unfolded (RFC 5322 2.2.3: CR and LF removed, the whitespace after them kept) and
/// trimmed.
fn unfolded(value: &[u8]) -> Vec<u8> {
    let without_breaks: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim_wsp(&without_breaks).to_vec()
}

/// The value of the first field called `name`.
fn field_value<'m>(fields: &[HeaderField<'m>], name: &[u8]) -> Option<&'m [u8]> {
    fields.iter().find(|f| f.is(name)).map(|f| f.value)
}

/// The first field called `name` as an IMAP string, unfolded and otherwise as sent (RFC 2047
/// words stay encoded: clients decode them); NIL when there is no such field.
fn field_nstring(fields: &[HeaderField<'_>], name: &[u8]) -> NString<'static> {
    field_value(fields, name).map_or(NString(None), |value| nstring(unfolded(value)))
}

/// The values of every field called `name`, unfolded, with RFC 2047 encoded words decoded to
/// UTF-8 (undecodable octets become U+FFFD). For SEARCH HEADER/FROM/SUBJECT/...: the caller
/// compares these case-insensitively with the search string.
pub fn decoded_header(header: &[u8], name: &str) -> Vec<String> {
    header_fields(header)
        .iter()
        .filter(|field| field.is(name.as_bytes()))
        .map(|field| decode_words(&unfolded(field.value)))
        .collect()
}

/// An unfolded field value with its RFC 2047 encoded words decoded.
fn decode_words(unfolded: &[u8]) -> String {
    // mail-parser's unstructured-field parser reads up to the line end that ends the field.
    let mut line = Vec::with_capacity(unfolded.len() + 1);
    line.extend_from_slice(unfolded);
    line.push(b'\n');
    match MessageStream::new(&line).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Structured MIME field values (RFC 2045 5.1, with RFC 822 comments and quoted strings)

/// `value *(";" attribute "=" value)`: the main value with whitespace and comments removed, and
/// the parameters as sent (quoted strings unquoted; RFC 2231 `name*0*=` forms kept as they are).
#[derive(Debug, Default)]
struct MimeValue {
    value: Vec<u8>,
    params: Vec<(Vec<u8>, Vec<u8>)>,
}

fn mime_value(raw: &[u8]) -> MimeValue {
    let s: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let mut out = MimeValue::default();
    let mut i = 0;
    while i < s.len() && s[i] != b';' {
        match s[i] {
            b'(' => i = skip_comment(&s, i).0,
            b'"' => {
                let (next, text) = quoted_string(&s, i);
                out.value.extend_from_slice(&text);
                i = next;
            }
            b' ' | b'\t' => i += 1,
            b => {
                out.value.push(b);
                i += 1;
            }
        }
    }
    while i < s.len() {
        // s[i] is the ';' before a parameter.
        i = skip_cfws(&s, i + 1);
        let attribute_start = i;
        while i < s.len() && !matches!(s[i], b'=' | b';' | b' ' | b'\t' | b'(' | b'"') {
            i += 1;
        }
        let attribute = s[attribute_start..i].to_vec();
        i = skip_cfws(&s, i);
        if s.get(i) == Some(&b'=') {
            i = skip_cfws(&s, i + 1);
            let value = if s.get(i) == Some(&b'"') {
                let (next, text) = quoted_string(&s, i);
                i = next;
                text
            } else {
                let start = i;
                while i < s.len() && !matches!(s[i], b';' | b' ' | b'\t' | b'(') {
                    i += 1;
                }
                s[start..i].to_vec()
            };
            if !attribute.is_empty() {
                out.params.push((attribute, value));
            }
        }
        // Whatever follows up to the next ';' is not part of the grammar: skip it.
        while i < s.len() && s[i] != b';' {
            i = match s[i] {
                b'"' => quoted_string(&s, i).0,
                b'(' => skip_comment(&s, i).0,
                _ => i + 1,
            };
        }
    }
    out
}

/// The quoted string starting at `s[start] == '"'`: the index after its closing quote (or the end
/// of `s` when it is unterminated) and its content with quoted-pairs resolved.
fn quoted_string(s: &[u8], start: usize) -> (usize, Vec<u8>) {
    let mut text = Vec::new();
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'"' => return (i + 1, text),
            b'\\' if i + 1 < s.len() => {
                text.push(s[i + 1]);
                i += 2;
            }
            b => {
                text.push(b);
                i += 1;
            }
        }
    }
    (i, text)
}

/// The comment starting at `s[start] == '('` (comments nest, RFC 5322 3.2.2): the index after its
/// closing parenthesis (or the end of `s`) and its content with quoted-pairs resolved.
fn skip_comment(s: &[u8], start: usize) -> (usize, Vec<u8>) {
    let mut text = Vec::new();
    let mut depth = 0usize;
    let mut i = start;
    while i < s.len() {
        match s[i] {
            b'(' => {
                if depth > 0 {
                    text.push(b'(');
                }
                depth += 1;
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return (i + 1, text);
                }
                text.push(b')');
            }
            b'\\' if i + 1 < s.len() => {
                text.push(s[i + 1]);
                i += 1;
            }
            b => text.push(b),
        }
        i += 1;
    }
    (i, text)
}

fn skip_cfws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        match s[i] {
            b' ' | b'\t' => i += 1,
            b'(' => i = skip_comment(s, i).0,
            _ => break,
        }
    }
    i
}

/// A media type (RFC 2045 5.1) as BODYSTRUCTURE shows it: type, subtype and parameter names in
/// upper case (as RFC 3501's examples show them: "TEXT" "PLAIN" ("CHARSET" "US-ASCII")),
/// parameter values as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MediaType {
    kind: Vec<u8>,
    subtype: Vec<u8>,
    params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl MediaType {
    /// The RFC 2045 5.2 default: no Content-Type (or an invalid one) means text/plain in US-ASCII.
    fn text_plain() -> MediaType {
        MediaType {
            kind: b"TEXT".to_vec(),
            subtype: b"PLAIN".to_vec(),
            params: vec![(b"CHARSET".to_vec(), b"US-ASCII".to_vec())],
        }
    }

    /// The default inside multipart/digest (RFC 2046 5.1.5).
    fn message_rfc822() -> MediaType {
        MediaType {
            kind: b"MESSAGE".to_vec(),
            subtype: b"RFC822".to_vec(),
            params: Vec::new(),
        }
    }

    /// What a part we do not look into is shown as (RFC 2046 4.5.1: uninterpreted octets).
    fn opaque() -> MediaType {
        MediaType {
            kind: b"APPLICATION".to_vec(),
            subtype: b"OCTET-STREAM".to_vec(),
            params: Vec::new(),
        }
    }

    /// Parses a Content-Type value; `None` when it has no `type/subtype`.
    fn parse(value: &[u8]) -> Option<MediaType> {
        let parsed = mime_value(value);
        let slash = parsed.value.iter().position(|&b| b == b'/')?;
        let (kind, subtype) = (&parsed.value[..slash], &parsed.value[slash + 1..]);
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        Some(MediaType {
            kind: kind.to_ascii_uppercase(),
            subtype: subtype.to_ascii_uppercase(),
            params: upper_names(parsed.params),
        })
    }

    fn is(&self, kind: &[u8], subtype: &[u8]) -> bool {
        self.kind == kind && self.subtype == subtype
    }

    fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

fn upper_names(params: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    params
        .into_iter()
        .map(|(name, value)| (name.to_ascii_uppercase(), value))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The MIME tree

/// One entity (RFC 2045 2.4): the message, a body part of a multipart, or the message
/// encapsulated in a message/rfc822 part. Invariant: `header` and `body` are adjacent slices of
/// the original octets.
#[derive(Debug)]
struct Entity<'m> {
    /// The header section including the blank line that ends it (when there is one).
    header: &'m [u8],
    body: &'m [u8],
    media: MediaType,
    /// Content-Transfer-Encoding in upper case, "7BIT" when absent (RFC 2045 6.1).
    encoding: Vec<u8>,
    kind: Kind<'m>,
}

#[derive(Debug)]
enum Kind<'m> {
    /// A leaf. Invariant: its media type is neither multipart nor message/rfc822.
    Single,
    /// Invariant: never empty.
    Multipart(Vec<Entity<'m>>),
    /// A message/rfc822 part and the message it encapsulates.
    Message(Box<Entity<'m>>),
}

/// What an entity without a Content-Type is.
#[derive(Clone, Copy)]
enum DefaultType {
    TextPlain,
    MessageRfc822,
}

struct TreeBuilder {
    entities_left: usize,
}

impl TreeBuilder {
    fn entity<'m>(&mut self, octets: &'m [u8], default: DefaultType, depth: usize) -> Entity<'m> {
        self.entities_left = self.entities_left.saturating_sub(1);
        let (header, body) = octets.split_at(header_len(octets));
        let fields = header_fields(header);
        let encoding = field_value(&fields, b"Content-Transfer-Encoding")
            .map(|value| mime_value(value).value.to_ascii_uppercase())
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| b"7BIT".to_vec());
        let mut media = field_value(&fields, b"Content-Type")
            .and_then(MediaType::parse)
            .unwrap_or_else(|| match default {
                DefaultType::TextPlain => MediaType::text_plain(),
                DefaultType::MessageRfc822 => MediaType::message_rfc822(),
            });
        let may_nest = depth < MAX_NESTING && self.entities_left > 0;

        let kind = if media.kind == b"MULTIPART" {
            let parts = match media.param(b"BOUNDARY") {
                Some(boundary) if may_nest && !boundary.is_empty() => {
                    split_multipart(body, boundary, self.entities_left)
                }
                _ => Vec::new(),
            };
            if parts.is_empty() {
                // RFC 2046 5.1.1 requires at least one body part; without one (no boundary, no
                // delimiter line) the content is shown as the text it most likely is. Beyond
                // the nesting limit it is opaque.
                media = if may_nest {
                    MediaType::text_plain()
                } else {
                    MediaType::opaque()
                };
                Kind::Single
            } else {
                let child_default = if media.subtype == b"DIGEST" {
                    DefaultType::MessageRfc822
                } else {
                    DefaultType::TextPlain
                };
                Kind::Multipart(
                    parts
                        .into_iter()
                        .map(|part| self.entity(part, child_default, depth + 1))
                        .collect(),
                )
            }
        } else if media.is(b"MESSAGE", b"RFC822") {
            // RFC 2046 5.2.1: only 7bit, 8bit and binary are allowed, so the body is the
            // message's octets; an encoded one (or one too deep) is shown as opaque, because
            // BODYSTRUCTURE's message/rfc822 form needs the encapsulated envelope and structure.
            if may_nest && is_identity_encoding(&encoding) {
                Kind::Message(Box::new(self.entity(
                    body,
                    DefaultType::TextPlain,
                    depth + 1,
                )))
            } else {
                media = MediaType::opaque();
                Kind::Single
            }
        } else {
            Kind::Single
        };
        Entity {
            header,
            body,
            media,
            encoding,
            kind,
        }
    }
}

fn is_identity_encoding(encoding: &[u8]) -> bool {
    matches!(encoding, b"7BIT" | b"8BIT" | b"BINARY")
}

/// The body parts of a multipart body (RFC 2046 5.1.1), at most `limit` (>= 1) of them: the last
/// one then keeps the rest of the content. A delimiter line is `--boundary` followed only by
/// whitespace, or `--boundary--` (the close delimiter; what follows it is the epilogue). The line
/// break before a delimiter belongs to the delimiter, not to the part. Without a close delimiter
/// the last part runs to the end of the body.
fn split_multipart<'m>(body: &'m [u8], boundary: &[u8], limit: usize) -> Vec<&'m [u8]> {
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut line_start = 0;
    while line_start < body.len() {
        let next_line = line_end(body, line_start);
        if let Some(close) = delimiter(&body[line_start..next_line], boundary) {
            let full = parts.len() + 1 >= limit;
            match part_start {
                Some(_) if full && !close => {}
                Some(start) => {
                    let end = content_end(body, line_start).max(start);
                    parts.push(&body[start..end]);
                    if close {
                        return parts;
                    }
                    part_start = Some(next_line);
                }
                None if close => return parts,
                None => part_start = Some(next_line),
            }
        }
        line_start = next_line;
    }
    if let Some(start) = part_start {
        parts.push(&body[start..]);
    }
    parts
}

/// `Some(is_close)` when `line` is a delimiter line for `boundary`.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    if rest.starts_with(b"--") {
        return Some(true);
    }
    // Transport padding (RFC 2046 5.1.1) only; anything else means `boundary` is merely a prefix
    // of this line's boundary (a nested multipart's, say).
    rest.iter()
        .all(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .then_some(false)
}

/// Where the content before the line at `line_start` ends: before its CRLF (or bare LF).
fn content_end(body: &[u8], line_start: usize) -> usize {
    let mut end = line_start;
    if end > 0 && body[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// The number of lines of `body` (RFC 3501 body-fld-lines): its line ends, plus a last line
/// without one.
fn count_lines(body: &[u8]) -> u32 {
    let breaks = body.iter().filter(|&&b| b == b'\n').count();
    let partial = usize::from(body.last().is_some_and(|&b| b != b'\n'));
    saturating_u32(breaks + partial)
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A message parsed into its MIME tree once, to answer any number of FETCH items about it.
#[derive(Debug)]
pub struct MimeMessage<'m> {
    octets: &'m [u8],
    root: Entity<'m>,
}

impl<'m> MimeMessage<'m> {
    pub fn parse(message: &'m [u8]) -> MimeMessage<'m> {
        let mut builder = TreeBuilder {
            entities_left: MAX_PARTS,
        };
        MimeMessage {
            octets: message,
            root: builder.entity(message, DefaultType::TextPlain, 0),
        }
    }

    /// BODYSTRUCTURE (`extended`: with every extension field) or BODY.
    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        structure(&self.root, extended)
    }

    pub fn envelope(&self) -> Envelope<'static> {
        envelope(self.root.header)
    }

    /// The octets of `BODY[section]` (RFC 3501 6.4.5); `None` is `BODY[]`, the whole message.
    /// A part that does not exist, or HEADER/TEXT of a part that is not message/rfc822, is the
    /// empty string (as Dovecot and Cyrus answer), never an error.
    pub fn section(&self, section: Option<&Section<'_>>) -> Cow<'m, [u8]> {
        let root = &self.root;
        let found: Option<Cow<'m, [u8]>> = match section {
            None => Some(Cow::Borrowed(self.octets)),
            Some(Section::Part(part)) => locate(root, part.0.as_ref()).map(|e| e.body.into()),
            Some(Section::Mime(part)) => locate(root, part.0.as_ref()).map(|e| e.header.into()),
            Some(Section::Header(part)) => {
                message_at(root, part.as_ref().map(|p| p.0.as_ref())).map(|m| m.header.into())
            }
            Some(Section::Text(part)) => {
                message_at(root, part.as_ref().map(|p| p.0.as_ref())).map(|m| m.body.into())
            }
            Some(Section::HeaderFields(part, names)) => {
                message_at(root, part.as_ref().map(|p| p.0.as_ref()))
                    .map(|m| select_fields(m.header, names.as_ref(), true).into())
            }
            Some(Section::HeaderFieldsNot(part, names)) => {
                message_at(root, part.as_ref().map(|p| p.0.as_ref()))
                    .map(|m| select_fields(m.header, names.as_ref(), false).into())
            }
        };
        found.unwrap_or(Cow::Borrowed(&[]))
    }

    /// The octets of `BINARY[part]` (RFC 3516 4.2): a leaf part's body with its
    /// Content-Transfer-Encoding removed; an empty `part` is the whole message, and a multipart
    /// or message part is returned as stored (their encoding is an identity, RFC 2046 5). A part
    /// that does not exist is empty, like BODY.
    pub fn binary(&self, part: &[NonZeroU32]) -> Result<Cow<'m, [u8]>, UnknownCte> {
        if part.is_empty() {
            return Ok(Cow::Borrowed(self.octets));
        }
        let Some(entity) = locate(&self.root, part) else {
            return Ok(Cow::Borrowed(&[]));
        };
        match entity.kind {
            Kind::Single => decode_transfer(entity.body, &entity.encoding).ok_or(UnknownCte),
            Kind::Multipart(_) | Kind::Message(_) => Ok(Cow::Borrowed(entity.body)),
        }
    }

    /// See [`decoded_text`].
    pub fn decoded_text(&self) -> String {
        let mut out = String::new();
        collect_text(&self.root, &mut out);
        out
    }
}

/// A BINARY fetch of a part whose Content-Transfer-Encoding the server cannot decode: RFC 3516
/// 4.3 answers it with `NO [UNKNOWN-CTE]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnknownCte;

impl fmt::Display for UnknownCte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown Content-Transfer-Encoding")
    }
}

impl std::error::Error for UnknownCte {}

/// The part `path` names (RFC 3501 6.4.5 part numbering): the parts of a multipart are numbered
/// from 1; a message/rfc822 part's subparts are those of the message it encapsulates; a message
/// that is not multipart has exactly one part, its body (part 1 is then the message entity
/// itself: its BODY is the body, its MIME header the message header).
fn locate<'e, 'm>(root: &'e Entity<'m>, path: &[NonZeroU32]) -> Option<&'e Entity<'m>> {
    let (first, rest) = path.split_first()?;
    let mut at = subpart_of_message(root, *first)?;
    for &number in rest {
        at = match &at.kind {
            Kind::Multipart(parts) => parts.get(index(number)?)?,
            Kind::Message(inner) => subpart_of_message(inner, number)?,
            Kind::Single => return None,
        };
    }
    Some(at)
}

fn subpart_of_message<'e, 'm>(
    message: &'e Entity<'m>,
    number: NonZeroU32,
) -> Option<&'e Entity<'m>> {
    match &message.kind {
        Kind::Multipart(parts) => parts.get(index(number)?),
        _ if number.get() == 1 => Some(message),
        _ => None,
    }
}

fn index(number: NonZeroU32) -> Option<usize> {
    usize::try_from(number.get() - 1).ok()
}

/// The message HEADER/TEXT/HEADER.FIELDS refer to: the top message, or the message encapsulated
/// in the message/rfc822 part `path`.
fn message_at<'e, 'm>(root: &'e Entity<'m>, path: Option<&[NonZeroU32]>) -> Option<&'e Entity<'m>> {
    match path {
        None => Some(root),
        Some(path) => match &locate(root, path)?.kind {
            Kind::Message(inner) => Some(inner),
            _ => None,
        },
    }
}

/// HEADER.FIELDS (`keep_listed`) or HEADER.FIELDS.NOT: the selected fields' original octets,
/// continuation lines included, in message order, then the blank line (RFC 3501 6.4.5).
fn select_fields<N: AsRef<[u8]>>(header: &[u8], names: &[N], keep_listed: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in header_fields(header) {
        let listed = names.iter().any(|name| field.is(name.as_ref()));
        if listed == keep_listed {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

// ---------------------------------------------------------------------------------------------
// BODYSTRUCTURE

/// BODYSTRUCTURE (`extended`) or BODY of `message` (RFC 3501 7.4.2).
pub fn body_structure(message: &[u8], extended: bool) -> BodyStructure<'static> {
    MimeMessage::parse(message).body_structure(extended)
}

fn structure(entity: &Entity<'_>, extended: bool) -> BodyStructure<'static> {
    let fields = header_fields(entity.header);
    if let Kind::Multipart(parts) = &entity.kind {
        let bodies: Vec<_> = parts.iter().map(|part| structure(part, extended)).collect();
        // Never empty (Kind::Multipart's invariant); the fallback below describes it as a leaf.
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return BodyStructure::Multi {
                bodies,
                subtype: istring(entity.media.subtype.clone()),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: parameter_list(&entity.media.params),
                    tail: Some(disposition(&fields)),
                }),
            };
        }
    }
    let basic = BasicFields {
        parameter_list: parameter_list(&entity.media.params),
        id: field_nstring(&fields, b"Content-ID"),
        description: field_nstring(&fields, b"Content-Description"),
        content_transfer_encoding: istring(entity.encoding.clone()),
        size: saturating_u32(entity.body.len()),
    };
    let specific = match &entity.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope(inner.header)),
            body_structure: Box::new(structure(inner, extended)),
            number_of_lines: count_lines(entity.body),
        },
        _ if entity.media.kind == b"TEXT" => SpecificFields::Text {
            subtype: istring(entity.media.subtype.clone()),
            number_of_lines: count_lines(entity.body),
        },
        _ => SpecificFields::Basic {
            r#type: istring(entity.media.kind.clone()),
            subtype: istring(entity.media.subtype.clone()),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: extended.then(|| SinglePartExtensionData {
            // body-fld-md5: the Content-MD5 field (RFC 1864) when the part has one.
            md5: field_nstring(&fields, b"Content-MD5"),
            tail: Some(disposition(&fields)),
        }),
    }
}

fn parameter_list(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<(IString<'static>, IString<'static>)> {
    params
        .iter()
        .map(|(name, value)| (istring(name.clone()), istring(value.clone())))
        .collect()
}

/// body-fld-dsp, body-fld-lang and body-fld-loc (RFC 3501 7.4.2; RFC 2183, 3282, 2557).
fn disposition(fields: &[HeaderField<'_>]) -> Disposition<'static> {
    let disposition = field_value(fields, b"Content-Disposition")
        .map(mime_value)
        .filter(|value| !value.value.is_empty())
        .map(|value| {
            (
                istring(value.value.to_ascii_uppercase()),
                parameter_list(&upper_names(value.params)),
            )
        });
    let language = field_value(fields, b"Content-Language")
        .map(language_tags)
        .unwrap_or_default();
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: field_nstring(fields, b"Content-Location"),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// Content-Language: a comma-separated list of language tags (RFC 3282 2), comments dropped.
fn language_tags(value: &[u8]) -> Vec<IString<'static>> {
    let text = unfolded(value);
    let mut tags = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'(' => {
                i = skip_comment(&text, i).0;
                continue;
            }
            b',' | b' ' | b'\t' => {
                if !current.is_empty() {
                    tags.push(istring(std::mem::take(&mut current)));
                }
            }
            b => current.push(b),
        }
        i += 1;
    }
    if !current.is_empty() {
        tags.push(istring(current));
    }
    tags
}

// ---------------------------------------------------------------------------------------------
// ENVELOPE

/// ENVELOPE (RFC 3501 7.4.2) of a header section: date, subject, in-reply-to and message-id as
/// sent (unfolded; RFC 2047 words stay encoded), the address lists parsed. Sender and Reply-To
/// default to From when absent or empty, as the RFC requires.
pub fn envelope(header: &[u8]) -> Envelope<'static> {
    let fields = header_fields(header);
    let addresses = |name: &[u8]| {
        field_value(&fields, name)
            .map(address_list)
            .unwrap_or_default()
    };
    let from = addresses(b"From");
    let or_from = |list: Vec<Address<'static>>| {
        if list.is_empty() { from.clone() } else { list }
    };
    Envelope {
        date: field_nstring(&fields, b"Date"),
        subject: field_nstring(&fields, b"Subject"),
        sender: or_from(addresses(b"Sender")),
        reply_to: or_from(addresses(b"Reply-To")),
        to: addresses(b"To"),
        cc: addresses(b"Cc"),
        bcc: addresses(b"Bcc"),
        in_reply_to: field_nstring(&fields, b"In-Reply-To"),
        message_id: field_nstring(&fields, b"Message-ID"),
        from,
    }
}

/// A lexical token of an address field (RFC 5322 3.2).
#[derive(Debug)]
enum Token<'v> {
    /// An atom, or any other run of bytes that are neither specials nor whitespace (8-bit
    /// octets included: RFC 6532 allows UTF-8).
    Word(&'v [u8]),
    /// A quoted string: as sent (quotes and quoted-pairs included) and its content.
    Quoted {
        raw: &'v [u8],
        text: Vec<u8>,
    },
    /// A comment's content.
    Comment(Vec<u8>),
    /// A domain literal `[...]` as sent.
    DomainLiteral(&'v [u8]),
    Special(u8),
}

#[derive(Debug)]
struct Lexeme<'v> {
    token: Token<'v>,
    /// Whitespace separates it from the token before.
    spaced: bool,
}

impl Lexeme<'_> {
    fn is(&self, special: u8) -> bool {
        matches!(self.token, Token::Special(s) if s == special)
    }
}

fn tokenize(text: &[u8]) -> Vec<Lexeme<'_>> {
    const SPECIALS: &[u8] = b"()<>[]:;@,.\"";
    let mut out = Vec::new();
    let mut spaced = false;
    let mut i = 0;
    while i < text.len() {
        let start = i;
        let token = match text[i] {
            b' ' | b'\t' => {
                spaced = true;
                i += 1;
                continue;
            }
            b'"' => {
                let (next, content) = quoted_string(text, i);
                i = next;
                Token::Quoted {
                    raw: &text[start..next],
                    text: content,
                }
            }
            b'(' => {
                let (next, content) = skip_comment(text, i);
                i = next;
                Token::Comment(content)
            }
            b'[' => {
                i = text[i..]
                    .iter()
                    .position(|&b| b == b']')
                    .map_or(text.len(), |at| i + at + 1);
                Token::DomainLiteral(&text[start..i])
            }
            b if SPECIALS.contains(&b) => {
                i += 1;
                Token::Special(b)
            }
            _ => {
                while i < text.len()
                    && !SPECIALS.contains(&text[i])
                    && !matches!(text[i], b' ' | b'\t')
                {
                    i += 1;
                }
                Token::Word(&text[start..i])
            }
        };
        out.push(Lexeme { token, spaced });
        spaced = false;
    }
    out
}

/// An address list (RFC 5322 3.4) as ENVELOPE addresses, best effort: whatever the field holds,
/// every mailbox that can be made out is kept and the list is well-formed (every group start has
/// its group end).
fn address_list(value: &[u8]) -> Vec<Address<'static>> {
    let text = unfolded(value);
    let lexemes = tokenize(&text);
    let mut out = Vec::new();
    let mut entry: Vec<&Lexeme<'_>> = Vec::new();
    let mut angle_depth = 0usize;
    let mut in_group = false;
    for lexeme in &lexemes {
        match lexeme.token {
            Token::Special(b'<') => {
                angle_depth += 1;
                entry.push(lexeme);
            }
            Token::Special(b'>') => {
                angle_depth = angle_depth.saturating_sub(1);
                entry.push(lexeme);
            }
            // A comma inside angle brackets belongs to an obs-route ("<@a,@b:x@y>"); any other
            // one ends the entry, so that an unclosed '<' swallows one address, not the rest.
            Token::Special(b',') if angle_depth == 0 || !in_route(&entry) => {
                out.extend(mailbox(&entry));
                entry.clear();
                angle_depth = 0;
            }
            Token::Special(b':')
                if angle_depth == 0
                    && !in_group
                    && !entry.iter().any(|l| l.is(b'@') || l.is(b'<')) =>
            {
                // RFC 3501 7.4.2: a group starts with (NIL NIL "name" NIL).
                out.push(Address {
                    name: NString(None),
                    adl: NString(None),
                    mailbox: nstring(phrase(&entry)),
                    host: NString(None),
                });
                entry.clear();
                in_group = true;
            }
            Token::Special(b';') if angle_depth == 0 => {
                out.extend(mailbox(&entry));
                entry.clear();
                if in_group {
                    out.push(group_end());
                    in_group = false;
                }
            }
            _ => entry.push(lexeme),
        }
    }
    out.extend(mailbox(&entry));
    if in_group {
        out.push(group_end());
    }
    out
}

/// Whether `entry` ends inside the route of an angle address: `<@domain` with no ':' yet.
fn in_route(entry: &[&Lexeme<'_>]) -> bool {
    entry.iter().rposition(|l| l.is(b'<')).is_some_and(|open| {
        let inner = &entry[open + 1..];
        inner.first().is_some_and(|l| l.is(b'@')) && !inner.iter().any(|l| l.is(b':'))
    })
}

/// RFC 3501 7.4.2: a group ends with (NIL NIL NIL NIL).
fn group_end() -> Address<'static> {
    Address {
        name: NString(None),
        adl: NString(None),
        mailbox: NString(None),
        host: NString(None),
    }
}

/// One mailbox (`[display-name] <[route] addr-spec>` or `addr-spec [(comment)]`) as
/// (name adl mailbox host); `None` when the entry holds nothing at all.
fn mailbox(entry: &[&Lexeme<'_>]) -> Option<Address<'static>> {
    let (display, address, route) = match entry.iter().position(|l| l.is(b'<')) {
        Some(open) => {
            let inner = &entry[open + 1..];
            let inner = &inner[..inner.iter().position(|l| l.is(b'>')).unwrap_or(inner.len())];
            // obs-route (RFC 5322 4.4): "@a,@b:" before the addr-spec, IMAP's adl.
            match inner.iter().position(|l| l.is(b':')) {
                Some(colon) if inner.first().is_some_and(|l| l.is(b'@')) => {
                    (&entry[..open], &inner[colon + 1..], Some(&inner[..colon]))
                }
                _ => (&entry[..open], inner, None),
            }
        }
        None => (&entry[..0], entry, None),
    };
    let mut name = phrase(display);
    if name.is_empty() {
        // `addr-spec (Real Name)`: the comment is the only name there is.
        if let Some(comment) = entry.iter().find_map(|l| match &l.token {
            Token::Comment(text) => Some(text),
            _ => None,
        }) {
            name = trim_wsp(comment).to_vec();
        }
    }
    let (local, domain) = match address.iter().rposition(|l| l.is(b'@')) {
        Some(at) => (addr_text(&address[..at]), addr_text(&address[at + 1..])),
        None => (addr_text(address), Vec::new()),
    };
    if name.is_empty() && local.is_empty() && domain.is_empty() {
        return None;
    }
    Some(Address {
        name: if name.is_empty() {
            NString(None)
        } else {
            nstring(name)
        },
        adl: route.map_or(NString(None), |route| nstring(addr_text(route))),
        mailbox: nstring(local),
        host: nstring(if domain.is_empty() {
            MISSING_HOST.to_vec()
        } else {
            domain
        }),
    })
}

/// A display name: words and quoted strings (unquoted) joined as they were spaced; comments
/// dropped. RFC 2047 encoded words stay as sent.
fn phrase(lexemes: &[&Lexeme<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for lexeme in lexemes {
        let text: &[u8] = match &lexeme.token {
            Token::Word(word) => word,
            Token::Quoted { text, .. } => text,
            Token::DomainLiteral(raw) => raw,
            Token::Special(special) => std::slice::from_ref(special),
            Token::Comment(_) => continue,
        };
        if lexeme.spaced && !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(text);
    }
    out
}

/// A local part, domain or route as sent, quoted strings kept quoted (so that `mailbox@host`
/// rebuilds the address); whitespace only between two words, never around dots (obs-local-part).
fn addr_text(lexemes: &[&Lexeme<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut previous_dot = true;
    for lexeme in lexemes {
        let text: &[u8] = match &lexeme.token {
            Token::Word(word) => word,
            Token::Quoted { raw, .. } => raw,
            Token::DomainLiteral(raw) => raw,
            Token::Special(special) => std::slice::from_ref(special),
            Token::Comment(_) => continue,
        };
        let dot = lexeme.is(b'.');
        if lexeme.spaced && !previous_dot && !dot && !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(text);
        previous_dot = dot;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Decoded text for SEARCH

/// The text SEARCH BODY and TEXT match against (RFC 3501 6.4.4): every text/* part decoded from
/// its Content-Transfer-Encoding and charset to UTF-8, plus the header fields (RFC 2047 decoded)
/// of encapsulated message/rfc822 messages, each piece ending with a line break. The top-level
/// header is not included (use [`decoded_header`] or the raw header for it). Undecodable octets
/// become U+FFFD; unknown encodings and charsets are taken as they are.
pub fn decoded_text(message: &[u8]) -> String {
    MimeMessage::parse(message).decoded_text()
}

fn collect_text(entity: &Entity<'_>, out: &mut String) {
    match &entity.kind {
        Kind::Multipart(parts) => {
            for part in parts {
                collect_text(part, out);
            }
        }
        Kind::Message(inner) => {
            for field in header_fields(inner.header) {
                if let Some(name) = field.name {
                    out.push_str(&String::from_utf8_lossy(name));
                    out.push_str(": ");
                    out.push_str(&decode_words(&unfolded(field.value)));
                    out.push('\n');
                }
            }
            collect_text(inner, out);
        }
        Kind::Single if entity.media.kind == b"TEXT" => {
            let octets = decode_transfer(entity.body, &entity.encoding)
                .unwrap_or(Cow::Borrowed(entity.body));
            out.push_str(&decode_charset(&octets, entity.media.param(b"CHARSET")));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        Kind::Single => {}
    }
}

/// `octets` in `charset` as UTF-8. UTF-8 labelled US-ASCII (or not labelled) is common and is
/// read as UTF-8; an unknown charset is read as UTF-8 too.
fn decode_charset(octets: &[u8], charset: Option<&[u8]>) -> String {
    let ascii_label = charset
        .is_none_or(|c| c.eq_ignore_ascii_case(b"us-ascii") || c.eq_ignore_ascii_case(b"ascii"));
    if ascii_label && let Ok(text) = std::str::from_utf8(octets) {
        return text.to_owned();
    }
    match charset.and_then(charset_decoder) {
        Some(decode) => decode(octets),
        None => String::from_utf8_lossy(octets).into_owned(),
    }
}

/// `body` with its Content-Transfer-Encoding removed (RFC 2045 6); `None` for an encoding this
/// server does not know.
fn decode_transfer<'m>(body: &'m [u8], encoding: &[u8]) -> Option<Cow<'m, [u8]>> {
    match encoding {
        b"7BIT" | b"8BIT" | b"BINARY" => Some(Cow::Borrowed(body)),
        b"BASE64" => Some(Cow::Owned(decode_base64(body))),
        b"QUOTED-PRINTABLE" => Some(Cow::Owned(decode_quoted_printable(body))),
        _ => None,
    }
}

/// Base64 (RFC 2045 6.8), leniently: characters outside the alphabet (line breaks, garbage) are
/// ignored as the RFC says, padding ends nothing, and a trailing incomplete group is dropped.
fn decode_base64(encoded: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() / 4 * 3);
    let mut bits = 0u32;
    let mut count = 0u32;
    for &byte in encoded {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// Quoted-printable (RFC 2045 6.7), leniently: `=XX` (either case) is an octet, `=` at a line end
/// a soft line break, trailing whitespace on a line is dropped (rule 3), and a malformed `=`
/// stays as it is (the RFC's suggested handling).
fn decode_quoted_printable(encoded: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        match encoded[i] {
            b'=' => {
                let after = &encoded[i + 1..];
                let padding = after
                    .iter()
                    .take_while(|&&b| matches!(b, b' ' | b'\t'))
                    .count();
                match after.get(padding..) {
                    Some([b'\r', b'\n', ..]) => i += 1 + padding + 2,
                    Some([b'\n', ..]) => i += 1 + padding + 1,
                    Some([]) => i = encoded.len(),
                    _ => match (
                        after.first().and_then(|&b| hex(b)),
                        after.get(1).and_then(|&b| hex(b)),
                    ) {
                        (Some(high), Some(low)) => {
                            out.push((high << 4) | low);
                            i += 3;
                        }
                        _ => {
                            out.push(b'=');
                            i += 1;
                        }
                    },
                }
            }
            b'\r' | b'\n' => {
                trim_trailing_wsp(&mut out);
                out.push(encoded[i]);
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    // The end of the body ends a line too.
    trim_trailing_wsp(&mut out);
    out
}

fn trim_trailing_wsp(out: &mut Vec<u8>) {
    while out.last().is_some_and(|&b| matches!(b, b' ' | b'\t')) {
        out.pop();
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP strings

/// `bytes` as an IMAP string: quoted when RFC 3501 allows it (TEXT-CHARs only: 7-bit, no CR, LF
/// or NUL), a literal otherwise, so encoding never fails. NUL can be sent in neither form
/// (RFC 3501 9: CHAR8 excludes it) and becomes 0x80, as Dovecot does.
pub(crate) fn istring(bytes: Vec<u8>) -> IString<'static> {
    let bytes = without_nul(bytes);
    match String::from_utf8(bytes) {
        Ok(text) if Quoted::validate(text.as_bytes()).is_ok() => {
            IString::Quoted(Quoted::unvalidated(text))
        }
        Ok(text) => IString::Literal(Literal::unvalidated(text.into_bytes())),
        Err(not_utf8) => IString::Literal(Literal::unvalidated(not_utf8.into_bytes())),
    }
}

pub(crate) fn nstring(bytes: Vec<u8>) -> NString<'static> {
    NString(Some(istring(bytes)))
}

/// `bytes` as a literal whatever they hold (message octets: BODY[], RFC822...), NUL replaced by
/// 0x80 as in [`istring`].
pub(crate) fn literal(bytes: Vec<u8>) -> Literal<'static> {
    // Valid: a literal is any octets but NUL (RFC 3501 9, CHAR8), and there is none left.
    Literal::unvalidated(without_nul(bytes))
}

fn without_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    for byte in &mut bytes {
        if *byte == 0 {
            *byte = 0x80;
        }
    }
    bytes
}

/// The octets of `BODY[section]` of `message` (see [`MimeMessage::section`]).
pub fn section<'m>(message: &'m [u8], section: Option<&Section<'_>>) -> Cow<'m, [u8]> {
    MimeMessage::parse(message).section(section)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::num::NonZeroU32;

    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder;
    use imap_codec::encode::Encoder;

    use super::*;
    use crate::fuzzing::Xorshift64;
    use crate::imap::imap_types::core::AString;
    use crate::imap::imap_types::fetch::{MessageDataItem, Part};
    use crate::imap::imap_types::response::{Data, Response};

    /// `text` with every LF made CRLF, as messages are stored.
    pub(crate) fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    /// `item` as the one item of `* 1 FETCH (...)`, encoded.
    fn encoded(item: MessageDataItem<'static>) -> String {
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(item),
        });
        String::from_utf8_lossy(&ResponseCodec::new().encode(&response).dump()).into_owned()
    }

    fn bodystructure(message: &[u8]) -> String {
        encoded(MessageDataItem::BodyStructure(body_structure(
            message, true,
        )))
    }

    fn envelope_of(header: &str) -> String {
        encoded(MessageDataItem::Envelope(envelope(&crlf(header))))
    }

    fn part(numbers: &[u32]) -> Part {
        let numbers: Vec<NonZeroU32> = numbers.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
        Part(Vec1::try_from(numbers).expect("a part number"))
    }

    fn names(list: &[&'static str]) -> Vec1<AString<'static>> {
        let list: Vec<AString<'static>> = list
            .iter()
            .map(|&n| AString::try_from(n).expect("a field name"))
            .collect();
        Vec1::try_from(list).expect("a name")
    }

    fn text(section_octets: Cow<'_, [u8]>) -> String {
        String::from_utf8_lossy(&section_octets).into_owned()
    }

    #[test]
    fn header_fields_keep_folds_garbage_and_bare_lf() {
        let header =
            b"Subject: a\r\n  folded\r\nX-Empty:\r\ngarbage line\r\nTo : b\nCc: c\r\n\r\nBody: no";
        let fields = header_fields(header);
        let names: Vec<Option<&[u8]>> = fields.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                Some(&b"Subject"[..]),
                Some(b"X-Empty"),
                None,
                Some(b"To"),
                Some(b"Cc")
            ]
        );
        assert_eq!(fields[0].raw, b"Subject: a\r\n  folded\r\n");
        assert_eq!(fields[0].value, b" a\r\n  folded\r\n");
        assert_eq!(fields[2].raw, b"garbage line\r\n");
        assert_eq!(fields[3].raw, b"To : b\n");
        // A last field without a line end, and a continuation with nothing before it.
        let fields = header_fields(b" lead\r\nA: 1");
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].raw, b"A: 1");
        assert!(header_fields(b"").is_empty());
    }

    #[test]
    fn decoded_header_unfolds_and_decodes_words() {
        let header = crlf(
            "Subject: =?utf-8?q?R=C3=A9sum=C3=A9?=\n =?iso-8859-1?q?_caf=E9?= ok\nsubject: second\nX: y\n\n",
        );
        assert_eq!(
            decoded_header(&header, "SUBJECT"),
            ["Résumé café ok", "second"]
        );
        assert_eq!(decoded_header(&header, "X"), ["y"]);
        assert!(decoded_header(&header, "Missing").is_empty());
        assert_eq!(
            decoded_header(b"Subject: \xff raw\r\n", "subject"),
            ["\u{fffd} raw"]
        );
    }

    #[test]
    fn envelope_follows_rfc_3501() {
        // Sender and Reply-To default to From; names keep RFC 2047 words; groups; routes;
        // comments as names; quoted local parts stay quoted.
        assert_eq!(
            envelope_of(
                "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n\
                 From: =?utf-8?q?J=C3=B6rg?= Smith <jorg@example.org>\n\
                 Sender:\n\
                 To: Team: ann@example.org, \"Bob \\\"B\\\" Jr.\" <bob@Example.ORG>;, carol@example.org (Carol C)\n\
                 cc: undisclosed-recipients:;\n\
                 Bcc: <@relay.example,@other.example:\"john doe\"@example.com>\n\
                 In-Reply-To: <a@b>\n\
                 Subject:  folded\n  subject \n\
                 Message-ID: <x@y>\n\n"
            ),
            "* 1 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"folded  subject\" \
             ((\"=?utf-8?q?J=C3=B6rg?= Smith\" NIL \"jorg\" \"example.org\")) \
             ((\"=?utf-8?q?J=C3=B6rg?= Smith\" NIL \"jorg\" \"example.org\")) \
             ((\"=?utf-8?q?J=C3=B6rg?= Smith\" NIL \"jorg\" \"example.org\")) \
             ((NIL NIL \"Team\" NIL)(NIL NIL \"ann\" \"example.org\")\
             (\"Bob \\\"B\\\" Jr.\" NIL \"bob\" \"Example.ORG\")(NIL NIL NIL NIL)\
             (\"Carol C\" NIL \"carol\" \"example.org\")) \
             ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
             ((NIL \"@relay.example,@other.example\" \"\\\"john doe\\\"\" \"example.com\")) \
             \"<a@b>\" \"<x@y>\"))\r\n"
        );
    }

    #[test]
    fn envelope_of_nothing_and_of_garbage() {
        assert_eq!(
            envelope_of(""),
            "* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
        );
        // No domain, an unclosed group, an unclosed angle, stray specials: best effort, and
        // every group start has its end.
        assert_eq!(
            envelope_of("To: Undisclosed recipients, list: a@b, , ;;, <c@d, @, Name <>\n"),
            "* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL \
             ((NIL NIL \"Undisclosed recipients\" \".MISSING-HOST-NAME.\")\
             (NIL NIL \"list\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)\
             (NIL NIL \"c\" \"d\")(\"Name\" NIL \"\" \".MISSING-HOST-NAME.\")) \
             NIL NIL NIL NIL))\r\n"
        );
        assert_eq!(
            envelope_of("From: g: x@y\n"),
            "* 1 FETCH (ENVELOPE (NIL NIL \
             ((NIL NIL \"g\" NIL)(NIL NIL \"x\" \"y\")(NIL NIL NIL NIL)) \
             ((NIL NIL \"g\" NIL)(NIL NIL \"x\" \"y\")(NIL NIL NIL NIL)) \
             ((NIL NIL \"g\" NIL)(NIL NIL \"x\" \"y\")(NIL NIL NIL NIL)) \
             NIL NIL NIL NIL NIL))\r\n"
        );
    }

    #[test]
    fn envelope_strings_that_cannot_be_quoted_are_literals() {
        // 8-bit (RFC 6532) and NUL: literals, NUL as 0x80.
        let header = "Subject: Gr\u{fc}\u{df}e\nFrom: J\u{f6}rg <j\u{f6}rg@example.org>\n\n";
        assert_eq!(
            envelope_of(header),
            "* 1 FETCH (ENVELOPE (NIL {7}\r\nGr\u{fc}\u{df}e \
             (({5}\r\nJ\u{f6}rg NIL {5}\r\nj\u{f6}rg \"example.org\")) \
             (({5}\r\nJ\u{f6}rg NIL {5}\r\nj\u{f6}rg \"example.org\")) \
             (({5}\r\nJ\u{f6}rg NIL {5}\r\nj\u{f6}rg \"example.org\")) \
             NIL NIL NIL NIL NIL))\r\n"
        );
        let item = MessageDataItem::Envelope(envelope(b"Subject: a\0b\r\n\r\n"));
        let response = Response::Data(Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(item),
        });
        assert_eq!(
            ResponseCodec::new().encode(&response).dump(),
            b"* 1 FETCH (ENVELOPE (NIL {3}\r\na\x80b NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
        );
    }

    /// The message of RFC 3501 6.4.5's part-numbering example, built to check every section.
    fn rfc3501_example() -> Vec<u8> {
        crlf(
            "Subject: top\n\
             Content-Type: MULTIPART/MIXED; boundary=\"A\"\n\
             \n\
             --A\n\
             \n\
             part 1\n\
             --A\n\
             Content-Type: APPLICATION/OCTET-STREAM\n\
             \n\
             part 2\n\
             --A\n\
             Content-Type: MESSAGE/RFC822\n\
             \n\
             Subject: three\n\
             Content-Type: MULTIPART/MIXED; boundary=B\n\
             \n\
             --B\n\
             \n\
             part 3.1\n\
             --B\n\
             Content-Type: APPLICATION/OCTET-STREAM\n\
             \n\
             part 3.2\n\
             --B--\n\
             --A\n\
             Content-Type: MULTIPART/MIXED; boundary=C\n\
             \n\
             --C\n\
             Content-Type: IMAGE/GIF\n\
             \n\
             part 4.1\n\
             --C\n\
             Content-Type: MESSAGE/RFC822\n\
             \n\
             Subject: four-two\n\
             X-Other: yes\n\
             Content-Type: MULTIPART/MIXED; boundary=D\n\
             \n\
             --D\n\
             \n\
             part 4.2.1\n\
             --D\n\
             Content-Type: MULTIPART/ALTERNATIVE; boundary=E\n\
             \n\
             --E\n\
             \n\
             part 4.2.2.1\n\
             --E\n\
             Content-Type: TEXT/RICHTEXT\n\
             \n\
             part 4.2.2.2\n\
             --E--\n\
             --D--\n\
             --C--\n\
             --A--\n",
        )
    }

    #[test]
    fn sections_follow_rfc_3501_part_numbering() {
        let message = rfc3501_example();
        let parsed = MimeMessage::parse(&message);
        let body = |numbers: &[u32]| text(parsed.section(Some(&Section::Part(part(numbers)))));
        assert_eq!(body(&[1]), "part 1");
        assert_eq!(body(&[2]), "part 2");
        assert!(body(&[3]).starts_with("Subject: three\r\n"));
        assert!(body(&[3]).ends_with("part 3.2\r\n--B--"));
        assert_eq!(body(&[3, 1]), "part 3.1");
        assert_eq!(body(&[3, 2]), "part 3.2");
        assert!(body(&[4]).starts_with("--C\r\n"));
        assert_eq!(body(&[4, 1]), "part 4.1");
        assert_eq!(body(&[4, 2, 1]), "part 4.2.1");
        assert_eq!(body(&[4, 2, 2, 1]), "part 4.2.2.1");
        assert_eq!(body(&[4, 2, 2, 2]), "part 4.2.2.2");
        // Parts that do not exist are empty.
        for missing in [
            &[5][..],
            &[1, 1],
            &[3, 3],
            &[4, 2, 2, 3],
            &[4, 2, 2, 1, 1],
            &[9, 9],
        ] {
            assert_eq!(body(missing), "", "{missing:?}");
        }

        let get = |section: Section<'_>| text(parsed.section(Some(&section)));
        assert_eq!(
            get(Section::Header(None)),
            "Subject: top\r\nContent-Type: MULTIPART/MIXED; boundary=\"A\"\r\n\r\n"
        );
        assert!(get(Section::Text(None)).starts_with("--A\r\n\r\npart 1\r\n"));
        assert_eq!(
            get(Section::Header(Some(part(&[3])))),
            "Subject: three\r\nContent-Type: MULTIPART/MIXED; boundary=B\r\n\r\n"
        );
        assert!(get(Section::Text(Some(part(&[3])))).starts_with("--B\r\n\r\npart 3.1"));
        assert_eq!(
            get(Section::Mime(part(&[4, 1]))),
            "Content-Type: IMAGE/GIF\r\n\r\n"
        );
        assert_eq!(get(Section::Mime(part(&[1]))), "\r\n");
        assert_eq!(
            get(Section::HeaderFields(
                Some(part(&[4, 2])),
                names(&["x-other", "SUBJECT"])
            )),
            "Subject: four-two\r\nX-Other: yes\r\n\r\n"
        );
        assert_eq!(
            get(Section::HeaderFieldsNot(
                Some(part(&[4, 2])),
                names(&["x-other", "SUBJECT"])
            )),
            "Content-Type: MULTIPART/MIXED; boundary=D\r\n\r\n"
        );
        // HEADER and TEXT of a part that is not message/rfc822: empty.
        assert_eq!(get(Section::Header(Some(part(&[1])))), "");
        assert_eq!(get(Section::Text(Some(part(&[4])))), "");
        assert_eq!(
            get(Section::HeaderFields(Some(part(&[2])), names(&["subject"]))),
            ""
        );
        assert_eq!(parsed.section(None).as_ref(), message.as_slice());
    }

    #[test]
    fn a_message_that_is_not_multipart_has_part_one() {
        let message = crlf("Subject: s\nContent-Type: text/plain\n\nbody\n");
        let parsed = MimeMessage::parse(&message);
        let get = |section: Section<'_>| text(parsed.section(Some(&section)));
        assert_eq!(get(Section::Part(part(&[1]))), "body\r\n");
        assert_eq!(get(Section::Part(part(&[2]))), "");
        assert_eq!(get(Section::Part(part(&[1, 1]))), "");
        assert_eq!(get(Section::Text(None)), "body\r\n");
        assert_eq!(
            get(Section::Mime(part(&[1]))),
            "Subject: s\r\nContent-Type: text/plain\r\n\r\n"
        );

        // A top-level message/rfc822: part 1 is the encapsulated message, 1.1 its body.
        let message = crlf("Content-Type: message/rfc822\n\nSubject: in\n\ninner\n");
        let parsed = MimeMessage::parse(&message);
        let get = |section: Section<'_>| text(parsed.section(Some(&section)));
        assert_eq!(
            get(Section::Part(part(&[1]))),
            "Subject: in\r\n\r\ninner\r\n"
        );
        assert_eq!(get(Section::Part(part(&[1, 1]))), "inner\r\n");
        assert_eq!(
            get(Section::Header(Some(part(&[1])))),
            "Subject: in\r\n\r\n"
        );
        assert_eq!(get(Section::Text(Some(part(&[1])))), "inner\r\n");
    }

    #[test]
    fn header_fields_selection_is_exact() {
        let message = crlf(
            "Received: one\n\tfolded\nSubject: s\nreceived: two\nX-Garbage no colon\nTo: t\n\nbody\n",
        );
        let get = |section: Section<'_>| text(super::section(&message, Some(&section)));
        assert_eq!(
            get(Section::HeaderFields(
                None,
                names(&["RECEIVED", "to", "absent"])
            )),
            "Received: one\r\n\tfolded\r\nreceived: two\r\nTo: t\r\n\r\n"
        );
        assert_eq!(
            get(Section::HeaderFieldsNot(None, names(&["received"]))),
            "Subject: s\r\nX-Garbage no colon\r\nTo: t\r\n\r\n"
        );
        assert_eq!(get(Section::HeaderFields(None, names(&["absent"]))), "\r\n");
        // A header without a blank line, the last field without a line end.
        let get = |section: Section<'_>| text(super::section(b"A: 1\nB: 2", Some(&section)));
        assert_eq!(
            get(Section::HeaderFields(None, names(&["b", "a"]))),
            "A: 1\nB: 2\r\n\r\n"
        );
        assert_eq!(get(Section::Header(None)), "A: 1\nB: 2");
        assert_eq!(get(Section::Text(None)), "");
    }

    #[test]
    fn multipart_boundaries_are_whole_lines() {
        // "--b1x" is not a delimiter for boundary "b1"; transport padding after one is; the CRLF
        // before a delimiter belongs to it; a preamble and an epilogue are no parts.
        let message = crlf(
            "Content-Type: multipart/mixed; boundary=b1\n\npre\n--b1 \t\n\nA\n--b1x\nB\n\n--b1\n\n--b1--junk\nepilogue\n--b1\nnot a part\n",
        );
        let parsed = MimeMessage::parse(&message);
        let body = |numbers: &[u32]| text(parsed.section(Some(&Section::Part(part(numbers)))));
        assert_eq!(body(&[1]), "A\r\n--b1x\r\nB\r\n");
        assert_eq!(body(&[2]), "");
        assert_eq!(body(&[3]), "");
        assert_eq!(
            bodystructure(&message),
            "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 13 3 NIL NIL NIL NIL)\
             (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL) \
             \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL))\r\n"
        );
    }

    #[test]
    fn broken_multiparts_still_have_a_structure() {
        let plain = |size: usize, lines: u32| {
            format!(
                "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {size} {lines} NIL NIL NIL NIL))\r\n"
            )
        };
        // No boundary parameter; a boundary that never appears; only a close delimiter.
        assert_eq!(
            bodystructure(&crlf("Content-Type: multipart/mixed\n\n--x\n\nhi\n--x--\n")),
            plain(18, 4)
        );
        assert_eq!(
            bodystructure(&crlf(
                "Content-Type: multipart/mixed; boundary=y\n\n--x\n\nhi\n"
            )),
            plain(11, 3)
        );
        assert_eq!(
            bodystructure(&crlf(
                "Content-Type: multipart/mixed; boundary=x\n\n--x--\n"
            )),
            plain(7, 1)
        );
        // No close delimiter: the last part runs to the end of the message.
        let message =
            crlf("Content-Type: multipart/mixed; boundary=x\n\n--x\n\nA\n--x\n\nB\nmore\n");
        assert_eq!(
            text(section(&message, Some(&Section::Part(part(&[2]))))),
            "B\r\nmore\r\n"
        );
        // An unterminated inner multipart ends where its outer part ends.
        let message = crlf(
            "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed; boundary=i\n\n--i\n\nin\n--o\n\nnext\n--o--\n",
        );
        assert_eq!(
            text(section(&message, Some(&Section::Part(part(&[1, 1]))))),
            "in"
        );
        assert_eq!(
            text(section(&message, Some(&Section::Part(part(&[2]))))),
            "next"
        );
        // Garbage header lines and an invalid Content-Type fall back to the defaults.
        assert_eq!(
            bodystructure(b"\x01\x02garbage\r\nContent-Type: nonsense\r\n\r\nx"),
            plain(1, 1)
        );
    }

    #[test]
    fn bare_lf_messages_are_understood() {
        let message = b"Subject: lf\nContent-Type: multipart/alternative; boundary=\"q\"\n\n--q\nContent-Type: text/plain\n\none\ntwo\n--q\nContent-Type: text/html\n\n<b>x</b>\n--q--\n";
        assert_eq!(
            text(section(message, Some(&Section::Part(part(&[1]))))),
            "one\ntwo"
        );
        assert_eq!(
            text(section(message, Some(&Section::Mime(part(&[2]))))),
            "Content-Type: text/html\n\n"
        );
        assert_eq!(
            bodystructure(message),
            "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 7 2 NIL NIL NIL NIL)\
             (\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 8 1 NIL NIL NIL NIL) \
             \"ALTERNATIVE\" (\"BOUNDARY\" \"q\") NIL NIL NIL))\r\n"
        );
    }

    #[test]
    fn digest_parts_default_to_message_rfc822() {
        let message = crlf(
            "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nfirst\n--d\nContent-Type: text/plain\n\nplain\n--d--\n",
        );
        assert_eq!(
            encoded(MessageDataItem::Body(body_structure(&message, false))),
            "* 1 FETCH (BODY ((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 21 \
             (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) \
             (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1) 3)\
             (\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 5 1) \"DIGEST\"))\r\n"
        );
    }

    #[test]
    fn extension_fields_are_parsed_from_their_headers() {
        let message = crlf(
            "Content-Type: Application/X-Thing; Name=\"a \\\"b\\\".txt\" ; (comment) charset = x ; bad\n\
             Content-Disposition: Attachment (why); Filename*=utf-8''%E2%82%AC.txt; size=3\n\
             Content-Language: en-GB, (comment) de\n\
             Content-Location: http://example.org/\n a\n\
             Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n\
             Content-Transfer-Encoding: Base64 (comment)\n\
             Content-ID: <id@x>\n\
             Content-Description: a thing\n\
             \n\
             AAAA\n",
        );
        assert_eq!(
            bodystructure(&message),
            "* 1 FETCH (BODYSTRUCTURE (\"APPLICATION\" \"X-THING\" (\"NAME\" \"a \\\"b\\\".txt\" \"CHARSET\" \"x\") \
             \"<id@x>\" \"a thing\" \"BASE64\" 6 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" \
             (\"ATTACHMENT\" (\"FILENAME*\" \"utf-8''%E2%82%AC.txt\" \"SIZE\" \"3\")) (\"en-GB\" \"de\") \
             \"http://example.org/ a\"))\r\n"
        );
    }

    #[test]
    fn encoded_or_too_deep_containers_are_opaque() {
        // message/rfc822 may not be encoded (RFC 2046 5.2.1): shown as opaque octets.
        let message = crlf(
            "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeQo=\n",
        );
        assert_eq!(
            encoded(MessageDataItem::Body(body_structure(&message, false))),
            "* 1 FETCH (BODY (\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 22))\r\n"
        );

        // 200 nested multiparts: the first MAX_NESTING are described, the rest is opaque.
        let mut message = Vec::new();
        for level in 0..200 {
            message.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n")
                    .as_bytes(),
            );
        }
        message.extend_from_slice(b"\r\ninnermost\r\n");
        let mut depth = 0;
        let mut at = &body_structure(&message, true);
        while let BodyStructure::Multi { bodies, .. } = at {
            depth += 1;
            at = bodies.as_ref().first().expect("a part");
        }
        assert_eq!(depth, MAX_NESTING);
        let BodyStructure::Single { body, .. } = at else {
            panic!("a leaf");
        };
        assert_eq!(
            body.specific,
            SpecificFields::Basic {
                r#type: istring(b"APPLICATION".to_vec()),
                subtype: istring(b"OCTET-STREAM".to_vec()),
            }
        );
        let path = part(&[1; MAX_NESTING]);
        let get = |section: Section<'_>| text(super::section(&message, Some(&section)));
        assert_eq!(
            get(Section::Mime(path.clone())),
            "Content-Type: multipart/mixed; boundary=b64\r\n\r\n"
        );
        assert!(get(Section::Part(path)).starts_with("--b64\r\n"));

        // Nested message/rfc822 parts count too.
        let mut message = b"x\r\n".to_vec();
        for _ in 0..100 {
            let mut outer = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
            outer.extend_from_slice(&message);
            message = outer;
        }
        let mut depth = 0;
        let mut at = &body_structure(&message, false);
        while let BodyStructure::Single {
            body:
                Body {
                    specific: SpecificFields::Message { body_structure, .. },
                    ..
                },
            ..
        } = at
        {
            depth += 1;
            at = body_structure;
        }
        assert_eq!(depth, MAX_NESTING);
    }

    #[test]
    fn the_number_of_parts_is_bounded() {
        let mut message = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n".to_vec();
        for _ in 0..MAX_PARTS + 500 {
            message.extend_from_slice(b"--x\r\n\r\np\r\n");
        }
        message.extend_from_slice(b"--x--\r\n");
        let BodyStructure::Multi { bodies, .. } = body_structure(&message, false) else {
            panic!("a multipart");
        };
        assert_eq!(bodies.as_ref().len(), MAX_PARTS - 1);
        // The last part keeps the rest of the content.
        let last = u32::try_from(MAX_PARTS - 1).expect("fits");
        let rest = text(section(&message, Some(&Section::Part(part(&[last])))));
        assert_eq!(rest.matches("--x\r\n").count(), 501);
    }

    #[test]
    fn decoded_text_decodes_every_text_part() {
        let message = crlf(
            "Subject: outer\n\
             Content-Type: multipart/mixed; boundary=m\n\
             \n\
             --m\n\
             Content-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: quoted-printable\n\
             \n\
             caf=E9 soft=\n\
             break=3d =ZZ trailing   \n\
             --m\n\
             Content-Type: text/html; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             PGI+aMOpPC9i\n\
             Pg==\n\
             --m\n\
             Content-Type: image/png\n\
             Content-Transfer-Encoding: base64\n\
             \n\
             iVBORw0KGgo=\n\
             --m\n\
             Content-Type: message/rfc822\n\
             \n\
             Subject: =?utf-8?q?inn=C3=A9r?=\n\
             \n\
             inner text\n\
             --m--\n",
        );
        assert_eq!(
            decoded_text(&message),
            "café softbreak= =ZZ trailing\n<b>hé</b>\nSubject: innér\ninner text\n"
        );
        assert_eq!(decoded_text(b""), "\n");
    }

    #[test]
    fn binary_removes_the_transfer_encoding() {
        let message = crlf(
            "Content-Type: multipart/mixed; boundary=m\n\n--m\nContent-Transfer-Encoding: base64\n\nAAEC\n--m\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n--m\n\nplain\n--m--\n",
        );
        let parsed = MimeMessage::parse(&message);
        let one = |n| [NonZeroU32::new(n).expect("non-zero")];
        assert_eq!(parsed.binary(&one(1)).as_deref(), Ok(&[0u8, 1, 2][..]));
        assert_eq!(parsed.binary(&one(2)), Err(UnknownCte));
        assert_eq!(parsed.binary(&one(3)).as_deref(), Ok(&b"plain"[..]));
        assert_eq!(parsed.binary(&one(4)).as_deref(), Ok(&b""[..]));
        assert_eq!(parsed.binary(&[]).as_deref(), Ok(message.as_slice()));
    }

    #[test]
    fn transfer_decoders_are_lenient() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=\r\n"), b"hello");
        assert_eq!(decode_base64(b"a G\x00V*s=bG8"), b"hello");
        assert_eq!(decode_base64(b"aGVsbA"), b"hell");
        assert_eq!(
            decode_quoted_printable(b"a=3D=3db  \r\nc=\r\nd=\n=4"),
            b"a==b\r\ncd=4"
        );
        assert_eq!(decode_quoted_printable(b"x=  \r\ny="), b"xy");
        assert_eq!(decode_quoted_printable(b"=C3=A9\n"), "é\n".as_bytes());
    }

    /// Pseudo-random messages: arbitrary bytes, and MIME messages cut and spliced with MIME
    /// tokens (boundaries, headers, line ends) so that the odd structures are reached.
    pub(crate) fn hostile_messages(count: usize) -> Vec<Vec<u8>> {
        const TOKENS: [&[u8]; 16] = [
            b"\r\n",
            b"\n",
            b"--A\r\n",
            b"--B--",
            b"--A--\r\n",
            b"Content-Type: message/rfc822\r\n",
            b"Content-Type: multipart/mixed; boundary=A\r\n",
            b"Content-Type: multipart/digest; boundary=B\r\n\r\n",
            b"Content-Transfer-Encoding: base64\r\n",
            b"\r\n\r\n",
            b":",
            b"\"",
            b"(",
            b"To: g: <a@b>, (c) \"d\" <@e:f@g>;\r\n",
            b"=?utf-8?q?=C3?=",
            b"\0",
        ];
        let seeds = [
            rfc3501_example(),
            crlf("From: a@b\nTo: c@d\n\nbody\n"),
            Vec::new(),
        ];
        let mut random = Xorshift64::new(3501);
        let mut out = Vec::with_capacity(count);
        for n in 0..count {
            let pick = random.next_u64();
            let mut message = if n % 4 == 0 {
                let len = (pick % 300) as usize;
                (0..len).map(|_| random.next_u64() as u8).collect()
            } else {
                seeds[(pick % 3) as usize].clone()
            };
            for _ in 0..random.next_u64() % 12 {
                let r = random.next_u64();
                let at = if message.is_empty() {
                    0
                } else {
                    (r >> 8) as usize % (message.len() + 1)
                };
                match r % 4 {
                    0 => {
                        let token = TOKENS[(r >> 40) as usize % TOKENS.len()];
                        message.splice(at..at, token.iter().copied());
                    }
                    1 => {
                        let end = (at + (r >> 48) as usize % 24).min(message.len());
                        message.drain(at..end);
                    }
                    2 if at < message.len() => message[at] = (r >> 32) as u8,
                    _ => message.truncate(at),
                }
            }
            out.push(message);
        }
        out
    }

    #[test]
    fn hostile_messages_never_panic_and_always_encode_parseably() {
        let sections = [
            None,
            Some(Section::Part(part(&[1]))),
            Some(Section::Part(part(&[1, 2, 1]))),
            Some(Section::Part(part(&[3, 1]))),
            Some(Section::Mime(part(&[2]))),
            Some(Section::Header(Some(part(&[3])))),
            Some(Section::Text(Some(part(&[1])))),
            Some(Section::HeaderFields(None, names(&["to", "subject"]))),
            Some(Section::HeaderFieldsNot(
                Some(part(&[3])),
                names(&["content-type"]),
            )),
        ];
        for message in hostile_messages(3000) {
            let parsed = MimeMessage::parse(&message);
            for section in &sections {
                match (section, parsed.section(section.as_ref())) {
                    (Some(Section::HeaderFields(..) | Section::HeaderFieldsNot(..)), fields) => {
                        assert!(fields.is_empty() || fields.ends_with(b"\r\n"));
                    }
                    // Every other section is a slice of the message itself (or empty).
                    (_, Cow::Borrowed(slice)) => {
                        let range = message.as_ptr_range();
                        let inside = range.start <= slice.as_ptr_range().start
                            && slice.as_ptr_range().end <= range.end;
                        assert!(slice.is_empty() || inside, "{section:?}");
                    }
                    (_, Cow::Owned(_)) => panic!("{section:?} copied"),
                }
            }
            let _ = parsed.binary(&[NonZeroU32::MIN]);
            let _ = decoded_text(&message);
            let _ = decoded_header(&message, "to");
            let items = vec![
                MessageDataItem::Envelope(envelope(&message[..header_len(&message)])),
                MessageDataItem::BodyStructure(parsed.body_structure(true)),
                MessageDataItem::Body(parsed.body_structure(false)),
                MessageDataItem::BodyExt {
                    section: None,
                    origin: None,
                    data: NString::from(literal(message.clone())),
                },
            ];
            let response = Response::Data(Data::Fetch {
                seq: NonZeroU32::MIN,
                items: Vec1::try_from(items).expect("items"),
            });
            let bytes = ResponseCodec::new().encode(&response).dump();
            match ResponseCodec::new().decode(&bytes) {
                Ok((rest, decoded)) => {
                    assert!(rest.is_empty());
                    assert_eq!(ResponseCodec::new().encode(&decoded).dump(), bytes);
                }
                Err(error) => panic!(
                    "{error:?} decoding {:?}\nfrom {:?}",
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(&message)
                ),
            }
        }
    }
}
