//! Where things live on disk, and the encodings that keep every name inside its directory.
//!
//! ```text
//! <data dir>/
//!   spool/                      messages being received (SMTP DATA), not yet delivered
//!   accounts/<account id>/      one cap-std Dir per account = Maildir++ root = INBOX
//!     cur/ new/ tmp/            INBOX's messages
//!     wasmail-index             INBOX's index (journal.rs)
//!     wasmail-lock              flock'd by whoever writes INBOX's index
//!     wasmail-account           subscriptions, special-use, UIDVALIDITY counter (account.rs)
//!     .Sent/  .Archive.2024/    child mailboxes, Maildir++ style: "." + levels joined by "."
//!       cur/ new/ tmp/ wasmail-index
//! ```
//!
//! A mailbox level is written in IMAP modified UTF-7 (RFC 3501 5.1.3, what Dovecot and other
//! Maildir++ tools use on disk) with one addition: `.` is encoded too (`&AC4-`), because `.`
//! separates levels on disk. So an on-disk folder name contains only printable ASCII other than
//! `/`, never has an empty level, and can be neither `.` nor `..`: no mailbox name can reach
//! outside the account, and cap-std refuses anything that tries anyway.

use wasmail_types::mail::MailboxName;

/// File name of a mailbox's index journal, inside the mailbox's Maildir directory.
pub const INDEX_FILE: &str = "wasmail-index";
/// Lock file of a mailbox (cross-process `flock`), beside its index.
pub const LOCK_FILE: &str = "wasmail-lock";
/// File name of the account's metadata, in the account root.
pub const ACCOUNT_FILE: &str = "wasmail-account";
/// Directories being deleted are first renamed to a name starting with this.
pub const TRASH_PREFIX: &str = "wasmail-trash.";
pub const MAILDIR_SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];
/// Longest file name the filesystems we run on accept.
const MAX_FILE_NAME: usize = 255;

/// The directory (relative to the account root) holding a mailbox's Maildir; `.` for INBOX.
pub fn mailbox_dir(name: &MailboxName) -> Result<String, &'static str> {
    if name.is_inbox() {
        return Ok(".".to_owned());
    }
    let mut out = String::new();
    for level in name.levels() {
        out.push('.');
        encode_level(level, &mut out);
    }
    if out.len() > MAX_FILE_NAME {
        return Err("mailbox name is too long once encoded for disk");
    }
    Ok(out)
}

/// The mailbox a Maildir++ folder directory holds, or `None` if the directory is not one of ours
/// (not starting with `.`, or not valid modified UTF-7).
pub fn mailbox_from_dir(dir: &str) -> Option<MailboxName> {
    let rest = dir.strip_prefix('.')?;
    if rest.is_empty() {
        return None;
    }
    let mut levels = Vec::new();
    for level in rest.split('.') {
        levels.push(decode_level(level)?);
    }
    MailboxName::new(&levels.join("/"))
        .ok()
        .filter(|n| !n.is_inbox())
}

/// Modified UTF-7 with `.` also encoded. Printable ASCII except `&` and `.` stands for itself;
/// `&` is `&-`; everything else is UTF-16BE in modified base64 between `&` and `-`.
fn encode_level(level: &str, out: &mut String) {
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&base64_encode(&bytes));
        out.push('-');
        pending.clear();
    };
    for c in level.chars() {
        if c == '&' {
            flush(&mut pending, out);
            out.push_str("&-");
        } else if (' '..='~').contains(&c) && c != '.' {
            flush(&mut pending, out);
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, out);
}

fn decode_level(level: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = level;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let end = after.find('-')?;
        if end == 0 {
            out.push('&');
        } else {
            let bytes = base64_decode(&after[..end])?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (!out.is_empty() && !out.contains('/')).then_some(out)
}

/// Modified base64 (RFC 3501 5.1.3): `,` instead of `/`, no padding.
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The directory name (under `accounts/`) of an account. Account ids are case-insensitive
/// (ASCII); `/`, `%`, control characters and a leading `.` are percent-encoded, so an id can
/// never name a path outside `accounts/` or a hidden directory.
pub fn account_dir(id: &str) -> Result<String, &'static str> {
    if id.is_empty() {
        return Err("account name is empty");
    }
    if id.len() > 320 {
        return Err("account name is too long");
    }
    let mut out = String::new();
    for (i, c) in id.to_ascii_lowercase().chars().enumerate() {
        if c == '/' || c == '%' || c == '\\' || c.is_control() || (i == 0 && c == '.') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.len() > MAX_FILE_NAME {
        return Err("account name is too long once encoded for disk");
    }
    Ok(out)
}

/// Maildir file names: `<base>:2,<info>` in `cur/`, `<base>` in `new/`. The base is unique:
/// `<seconds>.M<micros>P<pid>Q<counter>.<host>,S=<size>` (the `S=` size field is the Maildir++
/// and Dovecot convention that lets tools skip a stat).
pub fn unique_base(size: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let q = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{}.{},S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        q,
        hostname(),
        size
    )
}

/// The base of a Maildir file name (the part before `:2,`), and its info letters.
pub fn split_file_name(name: &str) -> (&str, &str) {
    match name.split_once(":2,") {
        Some((base, info)) => (base, info),
        None => (name.split_once(':').map_or(name, |(b, _)| b), ""),
    }
}

/// The host name for unique names, with `/` and `:` replaced as the Maildir spec asks.
fn hostname() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
            .replace('/', "\\057")
            .replace(':', "\\072")
            .replace(',', "\\054")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> MailboxName {
        MailboxName::new(s).unwrap()
    }

    #[test]
    fn mailbox_dirs_round_trip_and_stay_inside() {
        let cases = [
            ("INBOX", "."),
            ("Sent", ".Sent"),
            ("Archive/2024", ".Archive.2024"),
            ("a.b", ".a&AC4-b"),
            ("..", ".&AC4ALg-"),
            ("../../etc", ".&AC4ALg-.&AC4ALg-.etc"),
            ("Tom & Jerry", ".Tom &- Jerry"),
            ("Entwürfe", ".Entw&APw-rfe"),
            ("台北", ".&U,BTFw-"),
            ("INBOX/Sub", ".INBOX.Sub"),
            ("a\\b", ".a\\b"),
        ];
        for (mailbox, dir) in cases {
            let encoded = mailbox_dir(&name(mailbox)).unwrap();
            assert_eq!(encoded, dir, "{mailbox}");
            if mailbox != "INBOX" {
                assert_eq!(mailbox_from_dir(&encoded), Some(name(mailbox)));
                assert!(!encoded.contains('/') && !encoded[1..].split('.').any(|l| l.is_empty()));
            }
        }
    }

    #[test]
    fn foreign_directories_are_not_mailboxes() {
        for dir in [
            "cur",
            "new",
            "tmp",
            ".",
            "..",
            ".a..b",
            ".&bad",
            ".&AC4",
            "wasmail-trash.1",
        ] {
            assert_eq!(mailbox_from_dir(dir), None, "{dir}");
        }
    }

    #[test]
    fn account_dirs() {
        assert_eq!(account_dir("User@Example.COM").unwrap(), "user@example.com");
        assert_eq!(account_dir("..").unwrap(), "%2E.");
        assert_eq!(account_dir("a/../../b").unwrap(), "a%2F..%2F..%2Fb");
        assert_eq!(account_dir("x\0y").unwrap(), "x%00y");
        assert!(account_dir("").is_err());
    }

    #[test]
    fn file_names() {
        let base = unique_base(42);
        assert!(base.ends_with(",S=42") && !base.contains(':') && !base.contains('/'));
        assert_ne!(unique_base(1), unique_base(1));
        assert_eq!(split_file_name("123.M4.h,S=9:2,FS"), ("123.M4.h,S=9", "FS"));
        assert_eq!(split_file_name("123.M4.h,S=9"), ("123.M4.h,S=9", ""));
    }
}
