//! Mailbox names on the wire: modified UTF-7 (RFC 3501 5.1.3) and LIST/LSUB patterns (RFC 3501
//! 6.3.8).
//!
//! Inside wasmail a mailbox name is UTF-8 with `/` between levels
//! ([`wasmail_types::mail::MailboxName`]); IMAP4rev1 clients send and receive names in modified
//! UTF-7, which is printable US-ASCII: printable characters except `&` stand for themselves, `&`
//! is `&-`, and every other run of characters is `&`, their UTF-16 code units in BASE64 with `,`
//! for `/` and without padding, then `-`.

use crate::imap::imap_types::core::{AString, Quoted};
use crate::imap::imap_types::mailbox::Mailbox;

/// The hierarchy separator of every name wasmail serves.
const SEPARATOR: u8 = b'/';

/// The UTF-8 name a client means by `wire`.
///
/// INBOX in any case is `"INBOX"` (RFC 3501 5.1). Anything that is not modified UTF-7 as RFC
/// 3501 5.1.3 defines it is refused with the reason, including the non-canonical spellings it
/// rules out, so that every name has exactly one wire form and two different wire names can
/// never reach the same mailbox: octets outside printable US-ASCII, a `&` without its `-`,
/// characters outside the BASE64 alphabet, printable US-ASCII (or `&`) written in BASE64,
/// padding bits that are not zero or make up a whole BASE64 character, an unpaired UTF-16
/// surrogate, and a BASE64 run that directly follows another (`-&` inside, a "null shift").
pub fn decode(wire: &Mailbox<'_>) -> Result<String, &'static str> {
    let bytes = match wire {
        Mailbox::Inbox => return Ok("INBOX".to_owned()),
        Mailbox::Other(other) => other.inner().as_ref(),
    };
    let name = decode_utf7(bytes)?;
    Ok(if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_owned()
    } else {
        name
    })
}

/// The wire form of the UTF-8 name `name`: modified UTF-7, as an atom where IMAP allows one and
/// a quoted string otherwise; `INBOX` in any case is [`Mailbox::Inbox`].
pub fn encode(name: &str) -> Mailbox<'static> {
    let wire = encode_utf7(name);
    if wire.eq_ignore_ascii_case("INBOX") {
        return Mailbox::Inbox;
    }
    // Modified UTF-7 is printable US-ASCII, which is always a valid atom or quoted string, so
    // the fallback (the same text, quoted) is never taken; it only keeps this total.
    let astring = AString::try_from(wire.clone())
        .unwrap_or_else(|_| AString::from(Quoted::unvalidated(wire)));
    Mailbox::from(astring)
}

/// The modified BASE64 alphabet (RFC 3501 5.1.3: RFC 2045's with `,` instead of `/`).
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn base64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    } as u32)
}

/// Characters that stand for themselves in modified UTF-7 (and must: RFC 3501 5.1.3 forbids
/// writing them in BASE64). `&` is among them but is written `&-`.
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

fn decode_utf7(wire: &[u8]) -> Result<String, &'static str> {
    let mut name = String::with_capacity(wire.len());
    let mut i = 0;
    // True right after a BASE64 run: another run may not start there (null shift).
    let mut after_run = false;
    while let Some(&b) = wire.get(i) {
        match b {
            b'&' => {
                let run_start = i + 1;
                let run_len = wire[run_start..]
                    .iter()
                    .position(|&c| c == b'-')
                    .ok_or("a \"&\" is not closed by \"-\"")?;
                i = run_start + run_len + 1;
                if run_len == 0 {
                    name.push('&');
                    after_run = false;
                    continue;
                }
                if after_run {
                    return Err("two BASE64 runs follow each other (a null shift)");
                }
                decode_run(&wire[run_start..run_start + run_len], &mut name)?;
                after_run = true;
            }
            0x20..=0x7e => {
                name.push(char::from(b));
                after_run = false;
                i += 1;
            }
            0x80..=0xff => return Err("an 8-bit octet is not modified UTF-7"),
            _ => return Err("a control character must be written in BASE64"),
        }
    }
    Ok(name)
}

/// Appends the characters of one BASE64 run (the text between `&` and `-`, not empty).
fn decode_run(run: &[u8], name: &mut String) -> Result<(), &'static str> {
    let mut units = Vec::with_capacity(run.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for &c in run {
        let value = base64_value(c).ok_or("a character outside modified BASE64")?;
        bits = (bits << 6) | value;
        bit_count += 6;
        if bit_count >= 16 {
            bit_count -= 16;
            units.push((bits >> bit_count) as u16);
            bits &= (1 << bit_count) - 1;
        }
    }
    // The encoder stops as soon as the last code unit is out: what is left is under one BASE64
    // character and all zero.
    if bit_count >= 6 || bits != 0 {
        return Err("a BASE64 run ends with stray bits");
    }
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| "an unpaired UTF-16 surrogate")?;
        if is_direct(c) {
            return Err("printable US-ASCII written in BASE64");
        }
        name.push(c);
    }
    Ok(())
}

fn encode_utf7(name: &str) -> String {
    let mut wire = String::with_capacity(name.len() + 8);
    let mut units: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_run(&mut units, &mut wire);
            if c == '&' {
                wire.push_str("&-");
            } else {
                wire.push(c);
            }
        } else {
            units.extend_from_slice(c.encode_utf16(&mut [0; 2]));
        }
    }
    flush_run(&mut units, &mut wire);
    wire
}

/// Writes the pending code units as one `&...-` run (canonical: as few BASE64 characters as
/// hold the bits, zero-padded) and clears them.
fn flush_run(units: &mut Vec<u16>, wire: &mut String) {
    if units.is_empty() {
        return;
    }
    wire.push('&');
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for &unit in units.iter() {
        bits = (bits << 16) | u32::from(unit);
        bit_count += 16;
        while bit_count >= 6 {
            bit_count -= 6;
            wire.push(char::from(BASE64[((bits >> bit_count) & 0x3f) as usize]));
        }
        bits &= (1 << bit_count) - 1;
    }
    if bit_count > 0 {
        wire.push(char::from(
            BASE64[((bits << (6 - bit_count)) & 0x3f) as usize],
        ));
    }
    wire.push('-');
    units.clear();
}

/// The pattern a LIST or LSUB with reference `reference` and mailbox argument `pattern` matches
/// against (both already decoded to UTF-8).
///
/// RFC 3501 6.3.8 leaves the interpretation to the server; this is the one its examples show: an
/// empty reference changes nothing, a pattern that starts with the hierarchy separator is
/// absolute and ignores the reference (`~smith/Mail/` + `/usr/doc/foo` = `/usr/doc/foo`, which
/// matches nothing here, since no name starts with `/`), otherwise the two are concatenated as
/// they are (`archive/` + `%` = `archive/%`; a reference without its trailing separator is a name
/// prefix, as in UW-IMAP and Dovecot). The empty pattern (`LIST ref ""`, asking for the
/// separator) is the caller's case and is not joined.
pub fn join_reference(reference: &str, pattern: &str) -> String {
    if reference.is_empty() || pattern.as_bytes().first() == Some(&SEPARATOR) {
        pattern.to_owned()
    } else {
        format!("{reference}{pattern}")
    }
}

/// Whether the LIST pattern `pattern` (joined with its reference) matches the mailbox name
/// `name` (RFC 3501 6.3.8): `*` matches any run of characters, `%` any run without the hierarchy
/// separator `/`, everything else itself, case-sensitively except for the `INBOX` that begins a
/// name (RFC 3501 5.1: INBOX is case-insensitive; `inbox/%` lists `INBOX/Drafts`).
///
/// Cost is O(pattern × name) time and O(name) space whatever the wildcards (dynamic programming
/// over the name's prefixes, not backtracking), so `*%*%*%*%*%a` is as cheap as any pattern.
pub fn list_matches(pattern: &str, name: &str) -> bool {
    let name = name.as_bytes();
    // Wildcards and `/` are ASCII and UTF-8 never uses ASCII bytes inside a multi-byte
    // character, so matching bytes is matching characters: a literal pattern character starts
    // on a character boundary and can only match one in the name.
    let begins_with_inbox = name.len() >= 5
        && name[..5].eq_ignore_ascii_case(b"INBOX")
        && matches!(name.get(5), None | Some(&SEPARATOR));
    let inbox_len = if begins_with_inbox { 5 } else { 0 };
    // matched[j]: the pattern read so far matches the name's first j bytes.
    let mut matched = vec![false; name.len() + 1];
    let mut next = vec![false; name.len() + 1];
    matched[0] = true;
    for &p in pattern.as_bytes() {
        match p {
            b'*' => {
                next[0] = matched[0];
                for j in 1..=name.len() {
                    next[j] = matched[j] || next[j - 1];
                }
            }
            b'%' => {
                next[0] = matched[0];
                for j in 1..=name.len() {
                    next[j] = matched[j] || (next[j - 1] && name[j - 1] != SEPARATOR);
                }
            }
            literal => {
                next[0] = false;
                for j in 1..=name.len() {
                    let c = name[j - 1];
                    let same = if j - 1 < inbox_len {
                        c.eq_ignore_ascii_case(&literal)
                    } else {
                        c == literal
                    };
                    next[j] = matched[j - 1] && same;
                }
            }
        }
        std::mem::swap(&mut matched, &mut next);
        if !matched.contains(&true) {
            return false;
        }
    }
    matched[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::Xorshift64;

    fn wire(s: &str) -> Mailbox<'static> {
        Mailbox::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn rfc_3501_example() {
        // RFC 3501 5.1.3.
        let utf7 = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let utf8 = "~peter/mail/台北/日本語";
        assert_eq!(decode(&wire(utf7)), Ok(utf8.to_owned()));
        assert_eq!(encode(utf8), wire(utf7));
    }

    #[test]
    fn encodings() {
        // (UTF-8, modified UTF-7)
        let cases = [
            ("Sent", "Sent"),
            ("", ""),
            ("&", "&-"),
            ("A&B", "A&-B"),
            ("&&", "&-&-"),
            ("-&-", "-&--"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("ü", "&APw-"),
            ("üü", "&APwA,A-"),
            ("üüü", "&APwA,AD8-"),
            ("Ärchiv/2024", "&AMQ-rchiv/2024"),
            ("日本語", "&ZeVnLIqe-"),
            // Characters above the BMP are surrogate pairs (U+1F600 = D83D DE00).
            ("😀", "&2D3eAA-"),
            ("a😀b", "a&2D3eAA-b"),
            // Controls and DEL are not printable, so they are encoded.
            ("a\tb", "a&AAk-b"),
            ("\u{7f}", "&AH8-"),
            // A run ends at the first printable character, `&` included.
            ("ü&ü", "&APw-&-&APw-"),
            ("ü ü", "&APw- &APw-"),
            ("Отправленные", "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
        ];
        for (utf8, utf7) in cases {
            assert_eq!(encode_utf7(utf8), utf7, "encode {utf8:?}");
            assert_eq!(
                decode_utf7(utf7.as_bytes()),
                Ok(utf8.to_owned()),
                "decode {utf7:?}"
            );
        }
    }

    #[test]
    fn inbox_in_any_case() {
        for s in ["INBOX", "inbox", "InBoX"] {
            assert_eq!(decode(&wire(s)), Ok("INBOX".to_owned()));
            assert_eq!(encode(s), Mailbox::Inbox);
        }
        assert_eq!(decode(&Mailbox::Inbox), Ok("INBOX".to_owned()));
        assert_eq!(decode(&wire("INBOX/Sub")), Ok("INBOX/Sub".to_owned()));
        assert_eq!(decode(&wire("Inboxes")), Ok("Inboxes".to_owned()));
    }

    #[test]
    fn encoded_names_are_atoms_where_possible() {
        use crate::imap::imap_types::core::AString;
        let Mailbox::Other(sent) = encode("Sent") else {
            panic!("not INBOX")
        };
        assert!(matches!(sent.inner(), AString::Atom(_)));
        let Mailbox::Other(spaced) = encode("My Mail") else {
            panic!("not INBOX")
        };
        assert!(matches!(spaced.inner(), AString::String(_)));
        assert_eq!(spaced.inner().as_ref(), b"My Mail");
    }

    #[test]
    fn invalid_modified_utf7_is_refused() {
        let cases: &[&[u8]] = &[
            b"&",           // `&` at the end
            b"a&b",         // `&` without `-`
            b"&U,BTFw",     // run without `-`
            b"caf\xc3\xa9", // 8-bit octets (raw UTF-8)
            b"\xff",        //
            b"a\x01b",      // a control character as itself
            b"&AGE-",       // `a` (printable) in BASE64
            b"&ACY-",       // `&` in BASE64 instead of `&-`
            b"&ACA-",       // space in BASE64
            b"&APw-&APw-",  // null shift: two runs back to back
            b"&U/BTFw-",    // `/` is not modified BASE64 (`,` is)
            b"&U=-",        // padding
            b"&A-",         // 6 bits: no code unit
            b"&APx-",       // stray non-zero bits (ü is &APw-)
            b"&APwA-",      // a whole extra BASE64 character
            b"&2D0-",       // a lone high surrogate (D83D)
            b"&3gA-",       // a lone low surrogate (DE00)
            b"&2D3YPQ-",    // high surrogate followed by a high surrogate
            b"& -",         // space inside a run
        ];
        for &case in cases {
            let mailbox = Mailbox::try_from(case.to_vec()).unwrap();
            assert!(
                decode(&mailbox).is_err(),
                "{:?} must be refused",
                String::from_utf8_lossy(case)
            );
        }
        // Adjacent runs are fine when something printable separates them.
        assert_eq!(decode_utf7(b"&APw-&-&APw-"), Ok("ü&ü".to_owned()));
    }

    /// A character from a mix of the ranges that matter: printable ASCII (with `&`, `-` and
    /// `/` often), controls, Latin, CJK, and above the BMP.
    fn random_char(rng: &mut Xorshift64) -> char {
        let code = match rng.below(7) {
            0 => return ['&', '-', '/', '~', ' '][rng.below(5) as usize],
            1 => 0x20 + rng.below(0x5f),
            2 => rng.below(0x20),
            3 => 0x80 + rng.below(0x780),
            4 => 0x4e00 + rng.below(0x5200),
            5 => 0x1_0000 + rng.below(0x10_0000),
            _ => rng.below(0x11_0000),
        };
        char::from_u32(code as u32).unwrap_or('\u{fffd}')
    }

    #[test]
    fn random_names_round_trip() {
        let mut rng = Xorshift64::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let len = rng.below(12);
            let name: String = (0..len).map(|_| random_char(&mut rng)).collect();
            let utf7 = encode_utf7(&name);
            assert!(utf7.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{utf7:?}");
            assert_eq!(decode_utf7(utf7.as_bytes()), Ok(name.clone()), "{utf7:?}");
            let expected = if name.eq_ignore_ascii_case("INBOX") {
                "INBOX".to_owned()
            } else {
                name
            };
            assert_eq!(decode(&encode(&expected)), Ok(expected));
        }
    }

    #[test]
    fn decoding_is_canonical() {
        // Whatever decodes, re-encodes to the same octets: no two wire names mean one name.
        let mut rng = Xorshift64::new(0xdead_beef_cafe_f00d);
        let alphabet = b"&-&-AAPwZeVU,BT+/ab09";
        let mut decoded = 0;
        for _ in 0..50_000 {
            let len = rng.below(10) as usize;
            let wire: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
            if let Ok(name) = decode_utf7(&wire) {
                decoded += 1;
                assert_eq!(encode_utf7(&name).as_bytes(), wire, "{name:?}");
            }
        }
        assert!(
            decoded > 1_000,
            "the generator must reach valid names ({decoded})"
        );
    }

    #[test]
    fn references() {
        // RFC 3501 6.3.8's examples, with `/` as the separator.
        let cases = [
            ("~smith/Mail/", "foo.*", "~smith/Mail/foo.*"),
            ("archive/", "%", "archive/%"),
            ("#news.", "comp.mail.*", "#news.comp.mail.*"),
            ("~smith/Mail/", "/usr/doc/foo", "/usr/doc/foo"),
            ("", "*", "*"),
            ("", "INBOX", "INBOX"),
            ("Archive", "%", "Archive%"),
        ];
        for (reference, pattern, joined) in cases {
            assert_eq!(
                join_reference(reference, pattern),
                joined,
                "{reference:?} {pattern:?}"
            );
        }
    }

    #[test]
    fn patterns() {
        // (pattern, name, matches)
        let cases = [
            ("*", "INBOX", true),
            ("*", "a/b/c", true),
            ("%", "a", true),
            ("%", "a/b", false),
            ("%/%", "a/b", true),
            ("%/%", "a/b/c", false),
            ("a/%", "a/b", true),
            ("a/%", "a", false),
            ("a/*", "a/b/c", true),
            ("a*", "a", true),
            ("a*", "ab/c", true),
            ("a%", "ab/c", false),
            ("a%", "ab", true),
            ("%a", "xa", true),
            ("%a", "x/a", false),
            ("*a", "x/a", true),
            ("a", "a", true),
            ("a", "A", false),
            ("a", "ab", false),
            ("ab", "a", false),
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("**", "a/b", true),
            ("%%", "ab", true),
            ("*%", "a/b", true),
            ("%*", "a/b", true),
            ("a%b%c", "axbyc", true),
            ("a%b%c", "ax/byc", false),
            ("a*b*c", "ax/by/c", true),
            ("*/Sent", "Work/Sent", true),
            ("*/Sent", "Sent", false),
            // RFC 3501 6.3.8: "foo*" matches "foo", "foobar", "foo/bar"...; "foo%" not the last.
            ("foo*", "foo", true),
            ("foo*", "foo/bar", true),
            ("foo%", "foobar", true),
            ("foo%", "foo/bar", false),
            // INBOX is case-insensitive, and only INBOX.
            ("inbox", "INBOX", true),
            ("InBox", "INBOX", true),
            ("inbox/%", "INBOX/Drafts", true),
            ("inbox/drafts", "INBOX/Drafts", false),
            ("inb*", "INBOX", true),
            ("INBOX*", "INBOX/x", true),
            ("inbox", "INBOXES", false),
            ("inboxes", "Inboxes", false),
            ("INBOXES", "INBOXES", true),
            ("sent", "Sent", false),
            // Multi-byte characters.
            ("台*", "台北", true),
            ("%/日本語", "台北/日本語", true),
            ("%語", "台北/日本語", false),
            ("*語", "台北/日本語", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                list_matches(pattern, name),
                expected,
                "{pattern:?} vs {name:?}"
            );
        }
    }

    /// The definition, by backtracking (exponential; only for small inputs).
    fn naive(pattern: &[u8], name: &[u8]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|k| naive(rest, &name[k..])),
            Some((b'%', rest)) => (0..=name.len())
                .take_while(|&k| !name[..k].contains(&b'/'))
                .any(|k| naive(rest, &name[k..])),
            Some((&c, rest)) => name.first() == Some(&c) && naive(rest, &name[1..]),
        }
    }

    #[test]
    fn random_patterns_match_the_definition() {
        let mut rng = Xorshift64::new(0x1234_5678_9abc_def1);
        let pattern_chars = b"ab/*%";
        let name_chars = b"ab/";
        for _ in 0..20_000 {
            let pattern: String = (0..rng.below(8))
                .map(|_| char::from(pattern_chars[rng.below(5) as usize]))
                .collect();
            let name: String = (0..rng.below(8))
                .map(|_| char::from(name_chars[rng.below(3) as usize]))
                .collect();
            assert_eq!(
                list_matches(&pattern, &name),
                naive(pattern.as_bytes(), name.as_bytes()),
                "{pattern:?} vs {name:?}"
            );
        }
    }

    #[test]
    fn wildcard_heavy_patterns_are_not_exponential() {
        let name = "x".repeat(255);
        let pattern = "*%".repeat(200) + "a";
        let started = std::time::Instant::now();
        assert!(!list_matches(&pattern, &name));
        assert!(list_matches(&("*%".repeat(200) + "x"), &name));
        let deep = "a/".repeat(127) + "b";
        assert!(!list_matches(&("%/".repeat(60) + "%a"), &deep));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
}
