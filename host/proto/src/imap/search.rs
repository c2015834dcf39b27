//! SEARCH (RFC 3501 6.4.4, with RFC 7162 3.1.5's MODSEQ): whether one message matches a search
//! key.
//!
//! Semantics, where RFC 3501 leaves room:
//! - String keys match a case-insensitive substring (Unicode lowercase on both sides) of the
//!   *decoded* text: header fields are unfolded and their RFC 2047 encoded words decoded; BODY
//!   looks at the text of every `text/*` part, transfer encoding undone and converted from its
//!   charset to UTF-8, including the parts of attached messages (`message/rfc822`) and the
//!   decoded header fields of those messages, which are body text of the outer message. Non-text
//!   parts are never searched. TEXT is the header fields (as `name: value` lines) or BODY.
//! - FROM, TO, CC, BCC and SUBJECT look at the header field of that name, like `HEADER name`.
//!   `HEADER name ""` matches every message that has the field (6.4.4).
//! - BEFORE, ON and SINCE compare the calendar date of the internal date in the zone offset it
//!   was given in (APPEND's date-time, or the server's at delivery), "disregarding time and
//!   timezone"; SENTBEFORE, SENTON and SENTSINCE do the same with the first `Date:` field, and a
//!   message without a parseable one matches none of them.
//! - NEW is RECENT and UNSEEN; OLD is NOT RECENT (6.4.4). A sequence set names numbers of this
//!   session; a number beyond the message count names nothing (FETCH-style strictness is
//!   [`sequence::message_positions`]'s, for callers that want it).
//! - MODSEQ n matches a modseq of at least n; the entry name and type (per-flag modseqs) are
//!   accepted and ignored, since wasmail keeps one modseq per message (RFC 7162 3.1.5 allows
//!   this).
//!
//! Reading is lazy and shared within one [`matches`] call: flag, size, date, UID, sequence and
//! MODSEQ keys never touch [`MessageOctets`](crate::imap::MessageOctets); header keys read
//! `header()` once and decode it once; BODY and TEXT read `whole()` once (TEXT takes the header
//! from it unless a header key already decoded it). Inside AND (and OR), keys are evaluated
//! cheapest first: the answer is the same in any order, but a message whose flags already decide
//! it is never read.

use std::cell::OnceCell;
use std::fmt;
use std::io;
use std::sync::LazyLock;

use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, MessageParser, PartType};
use wasmail_types::date::civil_from_days;
use wasmail_types::mail::{SystemFlag, Uid};

use crate::imap::imap_types::core::{AString, Charset};
use crate::imap::imap_types::datetime::NaiveDate;
use crate::imap::imap_types::search::SearchKey;
use crate::imap::{MessageRef, header_len, sequence};

/// What keys naming sets of messages need to know of the session: `*` in a sequence set is the
/// message count, `*` in a UID set the highest UID (RFC 3501 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchContext {
    /// How many messages the session sees.
    pub message_count: u32,
    /// The highest UID among them; `None` when there are none.
    pub highest_uid: Option<Uid>,
}

impl SearchContext {
    /// The context of a session whose messages have `uids` (ascending, so the last is the
    /// highest).
    pub fn new(uids: &[Uid]) -> SearchContext {
        SearchContext {
            message_count: u32::try_from(uids.len()).unwrap_or(u32::MAX),
            highest_uid: uids.last().copied(),
        }
    }
}

/// The charsets SEARCH accepts, as `NO [BADCHARSET (US-ASCII UTF-8)]` lists them (RFC 3501
/// 6.4.4: US-ASCII MUST be supported; UTF-8 is what every client sends otherwise, and search
/// strings are compared as UTF-8).
pub const SUPPORTED_CHARSETS: [&str; 2] = ["US-ASCII", "UTF-8"];

/// A SEARCH named a charset outside [`SUPPORTED_CHARSETS`]; the caller answers
/// `NO [BADCHARSET (US-ASCII UTF-8)]` (RFC 3501 6.4.4, 7.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedCharset(pub String);

impl fmt::Display for UnsupportedCharset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "charset {:?} is not supported", self.0)
    }
}

impl std::error::Error for UnsupportedCharset {}

/// Checks SEARCH's `CHARSET` argument: none, US-ASCII or UTF-8 in any case.
pub fn check_charset(charset: Option<&Charset<'_>>) -> Result<(), UnsupportedCharset> {
    let Some(charset) = charset else {
        return Ok(());
    };
    let name: &str = charset.as_ref();
    if SUPPORTED_CHARSETS
        .iter()
        .any(|supported| supported.eq_ignore_ascii_case(name))
    {
        Ok(())
    } else {
        Err(UnsupportedCharset(name.to_owned()))
    }
}

/// Whether `key` uses MODSEQ anywhere, in which case the SEARCH response ends with
/// `(MODSEQ n)`, the highest modseq of the messages found (RFC 7162 3.1.5).
pub fn mentions_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(mentions_modseq),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::Not(key) => mentions_modseq(key),
        _ => false,
    }
}

/// Whether `message` matches `key`. Errors are the message's octets failing to read, only
/// when the key needs them.
pub fn matches(
    key: &SearchKey<'_>,
    message: &MessageRef<'_>,
    context: &SearchContext,
) -> io::Result<bool> {
    Candidate::new(*message).matches(key, context)
}

/// Whether `message` matches every key of `keys` (a SEARCH command's criteria, which RFC 3501
/// ANDs), reading the message at most once for all of them.
pub fn matches_all(
    keys: &[SearchKey<'_>],
    message: &MessageRef<'_>,
    context: &SearchContext,
) -> io::Result<bool> {
    Candidate::new(*message).matches_all(keys, context)
}

/// What evaluating a key reads, in increasing cost.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Cost {
    /// The index's metadata and the session's numbers.
    Meta,
    /// The header section, decoded.
    Header,
    /// The whole message, MIME-parsed.
    Body,
}

impl Cost {
    const ALL: [Cost; 3] = [Cost::Meta, Cost::Header, Cost::Body];

    fn of(key: &SearchKey<'_>) -> Cost {
        match key {
            SearchKey::And(keys) => keys
                .as_ref()
                .iter()
                .map(Cost::of)
                .max()
                .unwrap_or(Cost::Meta),
            SearchKey::Or(a, b) => Cost::of(a).max(Cost::of(b)),
            SearchKey::Not(key) => Cost::of(key),
            SearchKey::Bcc(_)
            | SearchKey::Cc(_)
            | SearchKey::From(_)
            | SearchKey::To(_)
            | SearchKey::Subject(_)
            | SearchKey::Header(..)
            | SearchKey::SentBefore(_)
            | SearchKey::SentOn(_)
            | SearchKey::SentSince(_) => Cost::Header,
            SearchKey::Body(_) | SearchKey::Text(_) => Cost::Body,
            _ => Cost::Meta,
        }
    }
}

/// One message being searched: what has been read and decoded of it so far.
struct Candidate<'m> {
    message: MessageRef<'m>,
    header: OnceCell<DecodedHeader>,
    body: OnceCell<Vec<String>>,
}

/// A header section, decoded once for every header key of a search.
struct DecodedHeader {
    /// Each field: name in ASCII lowercase, value unfolded, RFC 2047-decoded and lowercased.
    fields: Vec<(String, String)>,
    /// Every field as a `name: value` line, lowercased (what TEXT searches in the header).
    text: String,
    /// The calendar date of the first `Date:` field, as days since 1970-01-01, if it parses.
    sent_day: Option<i64>,
}

impl<'m> Candidate<'m> {
    fn new(message: MessageRef<'m>) -> Candidate<'m> {
        Candidate {
            message,
            header: OnceCell::new(),
            body: OnceCell::new(),
        }
    }

    fn matches_all(&self, keys: &[SearchKey<'_>], context: &SearchContext) -> io::Result<bool> {
        for cost in Cost::ALL {
            for key in keys.iter().filter(|key| Cost::of(key) == cost) {
                if !self.matches(key, context)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn matches(&self, key: &SearchKey<'_>, context: &SearchContext) -> io::Result<bool> {
        let meta = self.message.meta;
        let flag = |flag| meta.flags.contains(flag);
        Ok(match key {
            SearchKey::All => true,
            SearchKey::And(keys) => return self.matches_all(keys.as_ref(), context),
            SearchKey::Or(a, b) => {
                let (first, second) = if Cost::of(a) <= Cost::of(b) {
                    (a, b)
                } else {
                    (b, a)
                };
                self.matches(first, context)? || self.matches(second, context)?
            }
            SearchKey::Not(key) => !self.matches(key, context)?,

            SearchKey::SequenceSet(set) => {
                sequence::contains_message(set, self.message.seq, context.message_count)
            }
            SearchKey::Uid(set) => sequence::contains_uid(set, meta.uid, context.highest_uid),
            SearchKey::ModSequence { modseq, .. } => meta.modseq.0 >= *modseq,

            SearchKey::Answered => flag(SystemFlag::Answered),
            SearchKey::Deleted => flag(SystemFlag::Deleted),
            SearchKey::Draft => flag(SystemFlag::Draft),
            SearchKey::Flagged => flag(SystemFlag::Flagged),
            SearchKey::Seen => flag(SystemFlag::Seen),
            SearchKey::Unanswered => !flag(SystemFlag::Answered),
            SearchKey::Undeleted => !flag(SystemFlag::Deleted),
            SearchKey::Undraft => !flag(SystemFlag::Draft),
            SearchKey::Unflagged => !flag(SystemFlag::Flagged),
            SearchKey::Unseen => !flag(SystemFlag::Seen),
            SearchKey::Keyword(keyword) => meta.flags.has_keyword(keyword.as_ref()),
            SearchKey::Unkeyword(keyword) => !meta.flags.has_keyword(keyword.as_ref()),
            SearchKey::Recent => self.message.recent,
            SearchKey::New => self.message.recent && !flag(SystemFlag::Seen),
            SearchKey::Old => !self.message.recent,

            SearchKey::Larger(size) => meta.size > u64::from(*size),
            SearchKey::Smaller(size) => meta.size < u64::from(*size),

            SearchKey::Before(date) => self.internal_day() < day_number(date),
            SearchKey::On(date) => self.internal_day() == day_number(date),
            SearchKey::Since(date) => self.internal_day() >= day_number(date),
            SearchKey::SentBefore(date) => self
                .header()?
                .sent_day
                .is_some_and(|day| day < day_number(date)),
            SearchKey::SentOn(date) => self
                .header()?
                .sent_day
                .is_some_and(|day| day == day_number(date)),
            SearchKey::SentSince(date) => self
                .header()?
                .sent_day
                .is_some_and(|day| day >= day_number(date)),

            SearchKey::Bcc(needle) => self.field_contains("bcc", needle)?,
            SearchKey::Cc(needle) => self.field_contains("cc", needle)?,
            SearchKey::From(needle) => self.field_contains("from", needle)?,
            SearchKey::To(needle) => self.field_contains("to", needle)?,
            SearchKey::Subject(needle) => self.field_contains("subject", needle)?,
            SearchKey::Header(name, needle) => {
                let name = String::from_utf8_lossy(name.as_ref()).to_ascii_lowercase();
                self.field_contains(&name, needle)?
            }
            SearchKey::Body(needle) => self.body_contains(&search_text(needle))?,
            SearchKey::Text(needle) => {
                let needle = search_text(needle);
                self.header_of_whole()?.text.contains(&needle) || self.body_contains(&needle)?
            }
        })
    }

    /// The internal date's calendar day in its own zone offset, as days since 1970-01-01.
    fn internal_day(&self) -> i64 {
        let date = self.message.meta.internal_date;
        (date.unix_seconds + i64::from(date.offset_minutes) * 60).div_euclid(86_400)
    }

    fn header(&self) -> io::Result<&DecodedHeader> {
        if let Some(header) = self.header.get() {
            return Ok(header);
        }
        let header = DecodedHeader::new(self.message.octets.header()?);
        Ok(self.header.get_or_init(|| header))
    }

    /// The decoded header, taken from `whole()` if it has not been read yet: TEXT needs the
    /// whole message anyway, so it reads the octets once.
    fn header_of_whole(&self) -> io::Result<&DecodedHeader> {
        if let Some(header) = self.header.get() {
            return Ok(header);
        }
        let whole = self.message.octets.whole()?;
        let header = DecodedHeader::new(&whole[..header_len(whole)]);
        Ok(self.header.get_or_init(|| header))
    }

    /// Whether a field named `name` (ASCII lowercase) contains `needle`; an empty needle
    /// matches any message with the field (RFC 3501 6.4.4, HEADER).
    fn field_contains(&self, name: &str, needle: &AString<'_>) -> io::Result<bool> {
        let needle = search_text(needle);
        Ok(self
            .header()?
            .fields
            .iter()
            .any(|(field, value)| field == name && value.contains(&needle)))
    }

    fn body_contains(&self, needle: &str) -> io::Result<bool> {
        let texts = match self.body.get() {
            Some(texts) => texts,
            None => {
                let texts = body_texts(self.message.octets.whole()?);
                self.body.get_or_init(|| texts)
            }
        };
        Ok(texts.iter().any(|text| text.contains(needle)))
    }
}

/// A search string as it is compared: UTF-8 (US-ASCII is a subset; invalid octets become
/// U+FFFD, which decoded text can contain too), lowercased.
fn search_text(needle: &AString<'_>) -> String {
    String::from_utf8_lossy(needle.as_ref()).to_lowercase()
}

/// A search key's date as days since 1970-01-01.
fn day_number(date: &NaiveDate) -> i64 {
    i64::from(date.as_ref().to_epoch_days())
}

/// Days since 1970-01-01 of a proleptic Gregorian date, or `None` if the date does not exist
/// (31 Feb). Inverse of [`civil_from_days`] (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // A day past the end of its month lands in the next month: not a date.
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

impl DecodedHeader {
    fn new(header: &[u8]) -> DecodedHeader {
        let mut fields = Vec::new();
        let mut text = String::new();
        let mut sent_day = None;
        for (name, value) in header_fields(header) {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if name == "date" && fields.iter().all(|(n, _)| n != "date") {
                sent_day = date_field_day(value);
            }
            let value = decode_field_value(value).to_lowercase();
            text.push_str(&name);
            text.push_str(": ");
            text.push_str(&value);
            text.push('\n');
            fields.push((name, value));
        }
        DecodedHeader {
            fields,
            text,
            sent_day,
        }
    }
}

/// The fields of a header section as (name, raw value): the value is everything after the
/// colon through the end of the field's last line, folding included.
///
/// RFC 5322 2.2 and 3.6.8: a field starts on a line with a name of printable characters other
/// than `:` (obs-field allows white space before the colon); lines starting with a space or tab
/// continue it; the first empty line ends the section. A line that is neither (no colon, a name
/// with a space) is not a field, and its continuation lines go with it.
fn header_fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
    // The field being read: name, and where its value starts.
    let mut current: Option<(&[u8], usize)> = None;
    let mut start = 0;
    while start < header.len() {
        let end = header[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(header.len(), |nl| start + nl + 1);
        let line = &header[start..end];
        if matches!(line.first(), Some(b' ' | b'\t')) {
            start = end;
            continue;
        }
        if let Some((name, value_start)) = current.take() {
            fields.push((name, &header[value_start..start]));
        }
        if line == b"\r\n" || line == b"\n" {
            return fields;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = line[..colon].trim_ascii_end();
            if !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic()) {
                current = Some((name, start + colon + 1));
            }
        }
        start = end;
    }
    if let Some((name, value_start)) = current {
        fields.push((name, &header[value_start..]));
    }
    fields
}

/// A field value unfolded, with RFC 2047 encoded words decoded to UTF-8 (mail-parser's
/// unstructured-text decoder, which also takes encoded words where RFC 2047 5 would not, such
/// as inside quoted display names: better for a search) and other octets read as UTF-8
/// (RFC 6532 allows it in headers; anything else becomes U+FFFD).
fn decode_field_value(value: &[u8]) -> String {
    // The decoder ends a value at a line end not followed by white space and returns nothing
    // without one, so a last field cut off at the end of the message gets one.
    let owned;
    let value = if value.ends_with(b"\n") {
        value
    } else {
        owned = [value, b"\n"].concat();
        &owned
    };
    match MessageStream::new(value).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        _ => String::new(),
    }
}

/// The calendar date a `Date:` field gives, in its own zone, as days since 1970-01-01.
///
/// Only `[day-of-week ","] day month year` is read (RFC 5322 3.3), since SENT* keys disregard
/// time and zone; with 4.3's obsolete forms: comments and folding anywhere, two-digit years
/// (00-49 are 2000-2049, 50-99 are 1950-1999) and three-digit years (+1900). A day the month
/// does not have makes the field unparseable.
fn date_field_day(value: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let mut words = date_words(value).into_iter();
    let mut word = words.next()?;
    if word.first().is_some_and(u8::is_ascii_alphabetic) {
        word = words.next()?; // the day of the week
    }
    let day = decimal(word).filter(|_| word.len() <= 2)?;
    let month_word = words.next()?;
    let month = MONTHS
        .iter()
        .position(|name| name.eq_ignore_ascii_case(month_word))?;
    let year_word = words.next()?;
    let year = decimal(year_word)?;
    let year = match year_word.len() {
        0 | 1 => return None,
        2 if year < 50 => year + 2000,
        2 | 3 => year + 1900,
        _ => year,
    };
    days_from_civil(i64::from(year), month as u32 + 1, day)
}

/// The words of a date field: runs of characters between white space, commas and comments
/// (RFC 5322 3.2.2, nested).
fn date_words(value: &[u8]) -> Vec<&[u8]> {
    let mut words = Vec::new();
    let mut comment_depth = 0u32;
    let mut word_start = None;
    for (i, &b) in value.iter().enumerate() {
        let in_word =
            comment_depth == 0 && !(b.is_ascii_whitespace() || matches!(b, b',' | b'(' | b')'));
        match b {
            b'(' => comment_depth += 1,
            b')' => comment_depth = comment_depth.saturating_sub(1),
            _ => {}
        }
        match (in_word, word_start) {
            (true, None) => word_start = Some(i),
            (false, Some(start)) => {
                words.push(&value[start..i]);
                word_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = word_start {
        words.push(&value[start..]);
    }
    words
}

/// An unsigned decimal number of at most 9 digits.
fn decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
}

/// mail-parser set up for the body: only the MIME fields, which decide the structure, transfer
/// encodings and charsets, are parsed; other fields are skipped (a nested message's header is
/// decoded by [`header_fields`] like the outer one).
static BODY_PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .default_header_ignore()
});

/// The searchable text of a message's body, lowercased, one entry per text part or attached
/// message header, in MIME order.
fn body_texts(whole: &[u8]) -> Vec<String> {
    let mut texts = Vec::new();
    match BODY_PARSER.parse(whole) {
        Some(message) => collect_texts(&message, &mut texts),
        // mail-parser found no header at all: the message is one text/plain body.
        None => texts.push(String::from_utf8_lossy(&whole[header_len(whole)..]).to_lowercase()),
    }
    texts
}

fn collect_texts(message: &mail_parser::Message<'_>, texts: &mut Vec<String>) {
    for part in &message.parts {
        match &part.body {
            PartType::Text(text) | PartType::Html(text) => texts.push(text.to_lowercase()),
            PartType::Message(nested) => {
                let header = nested.parts.first().and_then(|root| {
                    nested
                        .raw_message
                        .get(root.offset_header as usize..root.offset_body as usize)
                });
                if let Some(header) = header {
                    texts.push(DecodedHeader::new(header).text);
                }
                collect_texts(nested, texts);
            }
            PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::Xorshift64;
    use crate::imap::MessageOctets;
    use crate::imap::imap_types::command::CommandBody;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use wasmail_types::mail::{Flags, InternalDate, MessageMeta, ModSeq};

    /// `criteria` with every atom or quoted string that holds non-ASCII characters sent as a
    /// literal, the only form IMAP4rev1 allows for 8-bit strings (RFC 3501 4.3).
    fn as_literals(criteria: &str) -> String {
        let mut out = String::new();
        let mut rest = criteria;
        while let Some(c) = rest.chars().next() {
            let token_len = if c == '"' {
                rest[1..].find('"').map_or(rest.len(), |end| end + 2)
            } else if c == ' ' || c == '(' || c == ')' {
                c.len_utf8()
            } else {
                rest.find([' ', '(', ')']).unwrap_or(rest.len())
            };
            let (token, tail) = rest.split_at(token_len);
            if token.is_ascii() {
                out.push_str(token);
            } else {
                let text = token.trim_matches('"');
                out.push_str(&format!("{{{}}}\r\n{text}", text.len()));
            }
            rest = tail;
        }
        out
    }

    /// The criteria of `SEARCH <criteria>` as imap-codec parses them, ANDed into one key.
    fn key(criteria: &str) -> SearchKey<'static> {
        let line = format!("A SEARCH {}\r\n", as_literals(criteria));
        let (rest, command) = CommandCodec::default()
            .decode_static(line.as_bytes())
            .unwrap_or_else(|e| panic!("{criteria:?}: {e:?}"));
        assert!(rest.is_empty(), "{criteria:?}");
        let CommandBody::Search { criteria, .. } = command.body else {
            panic!("{criteria:?} is not a SEARCH")
        };
        let mut keys = criteria.into_inner();
        if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys.try_into().expect("not empty"))
        }
    }

    fn charset_of(command: &str) -> Option<Charset<'static>> {
        let line = format!("A {command}\r\n");
        let (_, command) = CommandCodec::default()
            .decode_static(line.as_bytes())
            .unwrap_or_else(|e| panic!("{command:?}: {e:?}"));
        let CommandBody::Search { charset, .. } = command.body else {
            panic!("not a SEARCH")
        };
        charset
    }

    /// Days since the epoch of 2024-03-15 00:00 UTC.
    const MARCH_15: i64 = 19_797;

    fn meta(uid: u32) -> MessageMeta {
        MessageMeta {
            uid: Uid::new(uid).unwrap(),
            modseq: ModSeq(12),
            flags: Flags::new(),
            internal_date: InternalDate {
                // 2024-03-15 23:30 at +0000.
                unix_seconds: MARCH_15 * 86_400 + 23 * 3600 + 1800,
                offset_minutes: 0,
            },
            size: 2_000,
        }
    }

    const SAMPLE: &[u8] = b"Return-Path: <alice@example.org>\r\n\
Date: Thu, 14 Mar 2024 22:10:00 -0700 (PDT)\r\n\
From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n\
To: Bob <bob@example.com>,\r\n\
\x20Carol <carol@example.net>\r\n\
Cc: dave@example.com\r\n\
Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus\r\n\
\t=?UTF-8?B?S8O2bG4=?=\r\n\
X-Empty:\r\n\
X-Spam-Flag: NO\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble is not searched as text\r\n\
--b1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Sch=F6ne Gr=FC=DFe vom Rhein\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
PHA+SGVsbG8gPGI+V29ybGQ8L2I+PC9wPg==\r\n\
--b1\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
c2VjcmV0IGJpbmFyeSBuZWVkbGU=\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.org\r\n\
Subject: Forwarded =?UTF-8?Q?caf=C3=A9?=\r\n\
\r\n\
Inner body words\r\n\
--b1--\r\n";

    /// Octets that must never be read: the key under test is answered from metadata.
    struct Unreadable;

    impl MessageOctets for Unreadable {
        fn header(&self) -> io::Result<&[u8]> {
            Err(io::Error::other("header read"))
        }
        fn whole(&self) -> io::Result<&[u8]> {
            Err(io::Error::other("whole read"))
        }
    }

    /// A message held in memory. (`[u8]` implements `MessageOctets`, but a `&dyn` needs a
    /// sized value.)
    struct Stored<'a>(&'a [u8]);

    impl MessageOctets for Stored<'_> {
        fn header(&self) -> io::Result<&[u8]> {
            self.0.header()
        }
        fn whole(&self) -> io::Result<&[u8]> {
            self.0.whole()
        }
    }

    /// Octets whose header can be read but not the rest.
    struct HeaderOnly(&'static [u8]);

    impl MessageOctets for HeaderOnly {
        fn header(&self) -> io::Result<&[u8]> {
            Ok(&self.0[..header_len(self.0)])
        }
        fn whole(&self) -> io::Result<&[u8]> {
            Err(io::Error::other("whole read"))
        }
    }

    /// Octets that can only be read whole.
    struct WholeOnly(&'static [u8]);

    impl MessageOctets for WholeOnly {
        fn header(&self) -> io::Result<&[u8]> {
            Err(io::Error::other("header read"))
        }
        fn whole(&self) -> io::Result<&[u8]> {
            Ok(self.0)
        }
    }

    fn context() -> SearchContext {
        SearchContext {
            message_count: 10,
            highest_uid: Uid::new(90),
        }
    }

    fn check(cases: &[(&str, bool)], message: &MessageRef<'_>) {
        for &(criteria, expected) in cases {
            let key = key(criteria);
            assert_eq!(
                matches(&key, message, &context()).unwrap_or_else(|e| panic!("{criteria}: {e}")),
                expected,
                "{criteria}"
            );
        }
    }

    #[test]
    fn string_keys_search_decoded_text() {
        let meta = meta(42);
        let message = MessageRef {
            seq: 4,
            meta: &meta,
            recent: false,
            octets: &Stored(SAMPLE),
        };
        check(
            &[
                // RFC 2047 in FROM (Q, UTF-8), case-insensitive, also on non-ASCII letters.
                ("FROM \"Jörg\"", true),
                ("FROM \"JÖRG MÜLLER\"", true),
                ("FROM joerg@EXAMPLE.org", true),
                ("FROM bob", false),
                ("FROM =?UTF-8?Q?J=C3=B6rg", false),
                // A folded TO: both lines are the field.
                ("TO carol@example.net", true),
                ("TO bob", true),
                ("TO dave", false),
                ("CC DAVE", true),
                ("BCC dave", false),
                // SUBJECT: ISO-8859-1 Q and UTF-8 B words, folded.
                ("SUBJECT \"grüße aus\"", true),
                ("SUBJECT \"Grüße aus Köln\"", true),
                ("SUBJECT köln", true),
                ("SUBJECT rhein", false),
                // HEADER: any field, name case-insensitive; "" = the field exists.
                ("HEADER x-spam-flag no", true),
                ("HEADER X-SPAM-FLAG yes", false),
                ("HEADER X-Empty \"\"", true),
                ("HEADER X-Missing \"\"", false),
                ("HEADER Return-Path alice", true),
                ("HEADER Content-Type multipart", true),
                ("HEADER Subject köln", true),
                // BODY: decoded text/* parts (quoted-printable ISO-8859-1, base64 UTF-8 HTML),
                // not the header, not binary parts, not the preamble.
                ("BODY \"schöne grüße\"", true),
                ("BODY SCH=F6NE", false),
                ("BODY \"<b>world</b>\"", true),
                ("BODY needle", false),
                ("BODY preamble", false),
                ("BODY joerg", false),
                // The attached message: its header fields and its text.
                ("BODY \"inner body\"", true),
                ("BODY café", true),
                ("BODY inner@example.org", true),
                // TEXT: header fields or body.
                ("TEXT joerg", true),
                ("TEXT \"subject: grüße\"", true),
                ("TEXT rhein", true),
                ("TEXT needle", false),
                ("TEXT \"\"", true),
                ("BODY \"\"", true),
                // With a charset (the string is sent as a literal, see `as_literals`).
                ("CHARSET UTF-8 SUBJECT köln", true),
                ("CHARSET UTF-8 SUBJECT KÖLN", true),
            ],
            &message,
        );
    }

    #[test]
    fn flag_size_number_and_modseq_keys() {
        let mut meta = meta(42);
        meta.flags = Flags::from_system(&[SystemFlag::Seen, SystemFlag::Flagged]);
        assert!(meta.flags.add_keyword("$Junk"));
        let message = MessageRef {
            seq: 4,
            meta: &meta,
            recent: true,
            octets: &Unreadable,
        };
        check(
            &[
                ("ALL", true),
                ("SEEN", true),
                ("UNSEEN", false),
                ("FLAGGED", true),
                ("UNFLAGGED", false),
                ("ANSWERED", false),
                ("UNANSWERED", true),
                ("DELETED", false),
                ("UNDELETED", true),
                ("DRAFT", false),
                ("UNDRAFT", true),
                ("KEYWORD $junk", true),
                ("KEYWORD $JUNK", true),
                ("KEYWORD $NotJunk", false),
                ("UNKEYWORD $Junk", false),
                ("UNKEYWORD $Label1", true),
                ("RECENT", true),
                // NEW = RECENT UNSEEN; OLD = NOT RECENT.
                ("NEW", false),
                ("OLD", false),
                ("LARGER 1999", true),
                ("LARGER 2000", false),
                ("SMALLER 2001", true),
                ("SMALLER 2000", false),
                ("4", true),
                ("1:3,5:*", false),
                ("2:4", true),
                ("*", false),
                ("4:*", true),
                ("11", false),
                ("UID 42", true),
                ("UID 1:41,43:*", false),
                ("UID *", false),
                ("UID 50:40", true),
                ("MODSEQ 12", true),
                ("MODSEQ 13", false),
                ("MODSEQ 1", true),
                ("MODSEQ \"/flags/\\\\Seen\" all 12", true),
                ("MODSEQ \"/flags/\\\\Seen\" priv 13", false),
                ("NOT SEEN", false),
                ("NOT NOT SEEN", true),
                ("OR ANSWERED DELETED", false),
                ("OR ANSWERED FLAGGED", true),
                ("OR (ANSWERED DRAFT) (SEEN FLAGGED)", true),
                ("(SEEN FLAGGED KEYWORD $Junk)", true),
                ("SEEN FLAGGED DELETED", false),
                ("NOT (SEEN DELETED)", true),
            ],
            &message,
        );
        let unseen_meta = MessageMeta {
            flags: Flags::new(),
            ..meta.clone()
        };
        let recent_unseen = MessageRef {
            meta: &unseen_meta,
            ..message
        };
        check(&[("NEW", true), ("OLD", false)], &recent_unseen);
        let old = MessageRef {
            recent: false,
            ..recent_unseen
        };
        check(&[("NEW", false), ("OLD", true), ("RECENT", false)], &old);
    }

    #[test]
    fn uid_star_is_the_highest_uid() {
        let meta = meta(90);
        let message = MessageRef {
            seq: 10,
            meta: &meta,
            recent: false,
            octets: &Unreadable,
        };
        // RFC 3501 6.4.8: `n:*` with n above the highest UID still names the last message.
        check(
            &[
                ("UID *", true),
                ("UID 100:*", true),
                ("UID 100", false),
                ("*", true),
            ],
            &message,
        );
        let empty = SearchContext::new(&[]);
        assert_eq!(
            empty,
            SearchContext {
                message_count: 0,
                highest_uid: None
            }
        );
        assert!(!matches(&key("UID 1:*"), &message, &empty).unwrap());
        assert!(!matches(&key("1:*"), &message, &empty).unwrap());
        let uids: Vec<Uid> = [3, 7, 90].iter().map(|&u| Uid::new(u).unwrap()).collect();
        assert_eq!(
            SearchContext::new(&uids),
            SearchContext {
                message_count: 3,
                highest_uid: Uid::new(90)
            }
        );
    }

    #[test]
    fn internal_dates_compare_calendar_days_in_their_own_zone() {
        // 2024-03-15 23:30 +0000 is the 15th; the same instant given at +0100 is the 16th, and
        // 2024-03-16 00:30 +0100 is the 16th although it is the 15th in UTC.
        let utc = meta(1);
        let ahead = MessageMeta {
            internal_date: InternalDate {
                offset_minutes: 60,
                ..utc.internal_date
            },
            ..utc.clone()
        };
        let behind = MessageMeta {
            internal_date: InternalDate {
                // 2024-03-15 00:30 UTC at -0100: still the 14th.
                unix_seconds: MARCH_15 * 86_400 + 1800,
                offset_minutes: -60,
            },
            ..utc.clone()
        };
        let cases: &[(&MessageMeta, &str, bool)] = &[
            (&utc, "ON 15-Mar-2024", true),
            (&utc, "ON 16-Mar-2024", false),
            (&utc, "SINCE 15-Mar-2024", true),
            (&utc, "SINCE 16-Mar-2024", false),
            (&utc, "BEFORE 15-Mar-2024", false),
            (&utc, "BEFORE 16-Mar-2024", true),
            (&utc, "SINCE 1-Jan-2024 BEFORE 1-Apr-2024", true),
            (&ahead, "ON 16-Mar-2024", true),
            (&ahead, "BEFORE 16-Mar-2024", false),
            (&behind, "ON 14-Mar-2024", true),
            (&behind, "SINCE 15-Mar-2024", false),
        ];
        for &(meta, criteria, expected) in cases {
            let message = MessageRef {
                seq: 1,
                meta,
                recent: false,
                octets: &Unreadable,
            };
            assert_eq!(
                matches(&key(criteria), &message, &context()).unwrap(),
                expected,
                "{criteria} at offset {}",
                meta.internal_date.offset_minutes
            );
        }
    }

    #[test]
    fn sent_dates_use_the_date_field_in_its_own_zone() {
        // SAMPLE's Date: is 14 Mar 2024 22:10 -0700 (the 15th in UTC): the 14th counts.
        let meta = meta(1);
        let message = MessageRef {
            seq: 1,
            meta: &meta,
            recent: false,
            octets: &HeaderOnly(SAMPLE),
        };
        check(
            &[
                ("SENTON 14-Mar-2024", true),
                ("SENTON 15-Mar-2024", false),
                ("SENTBEFORE 15-Mar-2024", true),
                ("SENTBEFORE 14-Mar-2024", false),
                ("SENTSINCE 14-Mar-2024", true),
                ("SENTSINCE 15-Mar-2024", false),
                ("NOT SENTSINCE 15-Mar-2024", true),
            ],
            &message,
        );
        // No Date:, or one that does not parse: no SENT* key matches, even negated ones
        // stay consistent (NOT of a non-match is a match).
        for header in [
            &b"Subject: undated\r\n\r\nbody\r\n"[..],
            b"Date: sometime last week\r\n\r\n",
            b"Date: 31 Feb 2024 10:00:00 +0000\r\n\r\n",
        ] {
            let message = MessageRef {
                seq: 1,
                meta: &meta,
                recent: false,
                octets: &Stored(header),
            };
            for criteria in [
                "SENTON 14-Mar-2024",
                "SENTBEFORE 1-Jan-3000",
                "SENTSINCE 1-Jan-1900",
            ] {
                assert!(
                    !matches(&key(criteria), &message, &context()).unwrap(),
                    "{criteria} on {:?}",
                    String::from_utf8_lossy(header)
                );
            }
            assert!(matches(&key("NOT SENTON 14-Mar-2024"), &message, &context()).unwrap());
        }
        // Obsolete forms (RFC 5322 4.3): two-digit year, no day of week, zone names.
        let obsolete: &[u8] = b"Date: 5 Jan 99 23:59 EST\r\n\r\n";
        let message = MessageRef {
            seq: 1,
            meta: &meta,
            recent: false,
            octets: &Stored(obsolete),
        };
        assert!(matches(&key("SENTON 5-Jan-1999"), &message, &context()).unwrap());
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days));
        }
        assert_eq!(days_from_civil(2024, 2, 30), None);
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(2024, 13, 1), None);
        assert_eq!(days_from_civil(2024, 1, 0), None);
    }

    #[test]
    fn reading_is_lazy_and_cheap_keys_go_first() {
        let meta = meta(42); // no flags
        let unreadable = MessageRef {
            seq: 4,
            meta: &meta,
            recent: false,
            octets: &Unreadable,
        };
        // Decided by metadata wherever the expensive key stands.
        for criteria in [
            "DELETED BODY x",
            "BODY x DELETED",
            "SUBJECT x TEXT y DELETED",
            "(FROM x) (BODY y) (SEEN)",
        ] {
            assert!(
                !matches(&key(criteria), &unreadable, &context()).unwrap(),
                "{criteria}"
            );
        }
        for criteria in [
            "OR BODY x UNSEEN",
            "OR SUBJECT x ALL",
            "NOT (BODY x DELETED)",
        ] {
            assert!(
                matches(&key(criteria), &unreadable, &context()).unwrap(),
                "{criteria}"
            );
        }
        // A key that needs octets it cannot read reports the error.
        assert!(matches(&key("BODY x"), &unreadable, &context()).is_err());
        assert!(matches(&key("SUBJECT x"), &unreadable, &context()).is_err());
        assert!(matches(&key("SENTON 1-Jan-2024"), &unreadable, &context()).is_err());

        // Header keys read the header only; BODY and TEXT need the whole message.
        let header_only = MessageRef {
            octets: &HeaderOnly(SAMPLE),
            ..unreadable
        };
        check(
            &[
                ("SUBJECT köln", true),
                ("HEADER x-spam-flag \"\"", true),
                ("FROM jörg TO bob UNSEEN", true),
                ("SUBJECT nothing BODY rhein", false),
            ],
            &header_only,
        );
        assert!(matches(&key("BODY rhein"), &header_only, &context()).is_err());
        // TEXT reads the message once, whole, header included.
        let whole_only = MessageRef {
            octets: &WholeOnly(SAMPLE),
            ..unreadable
        };
        check(
            &[
                ("TEXT joerg", true),
                ("TEXT rhein", true),
                ("TEXT nowhere", false),
            ],
            &whole_only,
        );
        assert!(matches(&key("SUBJECT köln"), &whole_only, &context()).is_err());
        assert!(matches(&key("SUBJECT köln BODY rhein"), &header_only, &context()).is_err());
    }

    #[test]
    fn criteria_lists_are_anded() {
        let meta = meta(42);
        let message = MessageRef {
            seq: 4,
            meta: &meta,
            recent: false,
            octets: &Stored(SAMPLE),
        };
        let keys = [key("SUBJECT köln"), key("UNSEEN"), key("BODY rhein")];
        assert!(matches_all(&keys, &message, &context()).unwrap());
        let keys = [key("SUBJECT köln"), key("SEEN")];
        assert!(!matches_all(&keys, &message, &context()).unwrap());
        assert!(matches_all(&[], &message, &context()).unwrap());
    }

    #[test]
    fn header_fields_are_split_like_rfc_5322() {
        let header = b"A: 1\r\nB : two\r\n\tlines\r\nno colon here\r\n continued junk\r\nBad Name: x\r\nC:\r\n\r\nBody: no\r\n";
        let fields: Vec<(String, String)> = header_fields(header)
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let expected = [("A", " 1\r\n"), ("B", " two\r\n\tlines\r\n"), ("C", "\r\n")];
        assert_eq!(
            fields,
            expected.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );
        // A header cut off without its line end, with bare LF line ends.
        let fields = header_fields(b"X: 1\nSubject: =?utf-8?q?a=C3=A4?=");
        assert_eq!(fields.len(), 2);
        assert_eq!(decode_field_value(fields[1].1), "aä");
        // Encoded words: adjacent ones join without their white space (RFC 2047 6.2).
        assert_eq!(
            decode_field_value(b" =?utf-8?q?a?= =?utf-8?q?b?= c\r\n"),
            "ab c"
        );
        assert_eq!(
            decode_field_value(b" plain\r\n  folded\r\n"),
            "plain folded"
        );
        assert_eq!(decode_field_value(b"\r\n"), "");
        // Raw UTF-8 (RFC 6532) passes through.
        assert_eq!(decode_field_value(" Grüße\r\n".as_bytes()), "Grüße");
    }

    const BASE64_ATTACHED: &[u8] = b"Subject: fwd\r\n\
Content-Type: multipart/mixed; boundary=x\r\n\
\r\n\
--x\r\n\
Content-Type: message/rfc822\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
U3ViamVjdDogPT91dGYtOD9xP3o9QzM9QkNyaWNoPz0NCkZyb206IHhAeQ0KDQpuZXN0ZWQgdGV4dCDDpA0K\r\n\
--x--\r\n";

    #[test]
    fn bodies_of_simple_and_odd_messages() {
        let meta = meta(1);
        let cases: &[(&[u8], &str, bool)] = &[
            // No Content-Type: text/plain, US-ASCII.
            (b"Subject: x\r\n\r\nHello World\r\n", "BODY \"hello world\"", true),
            (b"Subject: x\r\n\r\nHello World\r\n", "BODY subject", false),
            // Single-part base64 UTF-8.
            (
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ==\r\n",
                "BODY GRÜSSE",
                false,
            ),
            (
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ==\r\n",
                "BODY grüße",
                true,
            ),
            // A non-text single part is not searched.
            (
                b"Content-Type: image/png\r\n\r\nPNG hello\r\n",
                "BODY hello",
                false,
            ),
            // An attached message in base64: its header fields and text are decoded.
            (BASE64_ATTACHED, "BODY zürich", true),
            (BASE64_ATTACHED, "BODY \"nested text ä\"", true),
            (BASE64_ATTACHED, "BODY U3ViamVjdDog", false),
            (BASE64_ATTACHED, "SUBJECT zürich", false),
            (BASE64_ATTACHED, "TEXT zürich", true),
            // A message that is all header, and one with an empty header.
            (b"Subject: only\r\n", "BODY only", false),
            (b"Subject: only\r\n", "TEXT only", true),
            (b"\r\nJust a body\r\n", "BODY \"just a body\"", true),
            (b"", "TEXT x", false),
            (b"", "BODY \"\"", true),
        ];
        for &(octets, criteria, expected) in cases {
            let message = MessageRef {
                seq: 1,
                meta: &meta,
                recent: false,
                octets: &Stored(octets),
            };
            assert_eq!(
                matches(&key(criteria), &message, &context()).unwrap(),
                expected,
                "{criteria} in {:?}",
                String::from_utf8_lossy(octets)
            );
        }
    }

    #[test]
    fn charsets() {
        assert_eq!(check_charset(None), Ok(()));
        for command in [
            "SEARCH CHARSET UTF-8 ALL",
            "SEARCH CHARSET utf-8 ALL",
            "SEARCH CHARSET US-ASCII ALL",
            "SEARCH CHARSET \"us-ascii\" ALL",
        ] {
            assert_eq!(
                check_charset(charset_of(command).as_ref()),
                Ok(()),
                "{command}"
            );
        }
        for (command, name) in [
            ("SEARCH CHARSET ISO-8859-1 ALL", "ISO-8859-1"),
            ("SEARCH CHARSET UTF-16 ALL", "UTF-16"),
            ("SEARCH CHARSET \"UTF-8 \" ALL", "UTF-8 "),
        ] {
            let error = check_charset(charset_of(command).as_ref()).unwrap_err();
            assert_eq!(error, UnsupportedCharset(name.to_owned()), "{command}");
        }
        assert_eq!(
            UnsupportedCharset("KOI8-R".to_owned()).to_string(),
            "charset \"KOI8-R\" is not supported"
        );
    }

    #[test]
    fn modseq_mentions() {
        let cases = [
            ("MODSEQ 5", true),
            ("SEEN MODSEQ 5", true),
            ("OR SEEN (NOT MODSEQ 5)", true),
            ("OR SEEN DELETED", false),
            ("NOT SEEN", false),
            ("UID 1:* SUBJECT modseq", false),
        ];
        for (criteria, expected) in cases {
            assert_eq!(mentions_modseq(&key(criteria)), expected, "{criteria}");
        }
    }

    /// A random search program over flags, numbers and strings, as SEARCH syntax.
    fn random_program(rng: &mut Xorshift64, depth: u32) -> String {
        let leaves = [
            "SEEN",
            "UNSEEN",
            "FLAGGED",
            "DELETED",
            "RECENT",
            "NEW",
            "OLD",
            "ALL",
            "KEYWORD $a",
            "UNKEYWORD $a",
            "LARGER 100",
            "SMALLER 100",
            "UID 2:3",
            "1,3",
            "SUBJECT hello",
            "FROM bob",
            "BODY world",
            "TEXT hello",
            "MODSEQ 5",
            "SINCE 2-Jan-1970",
            "SENTON 1-Jan-1970",
        ];
        match (depth, rng.below(6)) {
            (0, _) | (_, 0..=2) => leaves[rng.below(leaves.len() as u64) as usize].to_owned(),
            (_, 3) => format!("NOT {}", random_program(rng, depth - 1)),
            (_, 4) => format!(
                "OR {} {}",
                random_program(rng, depth - 1),
                random_program(rng, depth - 1)
            ),
            _ => format!(
                "({} {})",
                random_program(rng, depth - 1),
                random_program(rng, depth - 1)
            ),
        }
    }

    /// Evaluation in written order, without reordering or sharing: the reference the
    /// cost-ordered evaluation must agree with.
    fn in_order(key: &SearchKey<'_>, message: &MessageRef<'_>, context: &SearchContext) -> bool {
        match key {
            SearchKey::And(keys) => keys.as_ref().iter().all(|k| in_order(k, message, context)),
            SearchKey::Or(a, b) => in_order(a, message, context) || in_order(b, message, context),
            SearchKey::Not(k) => !in_order(k, message, context),
            leaf => matches(leaf, message, context).unwrap(),
        }
    }

    #[test]
    fn random_programs_agree_with_in_order_evaluation() {
        let mut rng = Xorshift64::new(0x0bad_cafe_1234_5678);
        let octets: &[&[u8]] = &[
            b"Subject: Hello\r\nFrom: Bob <bob@x>\r\nDate: 1 Jan 1970 00:00 +0000\r\n\r\nworld\r\n",
            b"Subject: other\r\n\r\nhello\r\n",
            b"\r\n",
        ];
        for _ in 0..3_000 {
            let mut meta = meta(rng.below(4) as u32 + 1);
            meta.size = rng.below(200);
            meta.modseq = ModSeq(rng.below(10));
            meta.internal_date.unix_seconds = rng.below(3) as i64 * 86_400;
            for flag in SystemFlag::ALL {
                if rng.below(2) == 0 {
                    meta.flags.insert(flag);
                }
            }
            if rng.below(2) == 0 {
                meta.flags.add_keyword("$a");
            }
            let message = MessageRef {
                seq: rng.below(4) as u32 + 1,
                meta: &meta,
                recent: rng.below(2) == 0,
                octets: &Stored(octets[rng.below(octets.len() as u64) as usize]),
            };
            let program = random_program(&mut rng, 4);
            let key = key(&program);
            let context = SearchContext {
                message_count: 4,
                highest_uid: Uid::new(4),
            };
            assert_eq!(
                matches(&key, &message, &context).unwrap(),
                in_order(&key, &message, &context),
                "{program}"
            );
        }
    }
}
