//! Where IMAP's literals are (RFC 3501 4.3, RFC 7888 LITERAL+): a command line that ends in
//! `{n}` or `{n+}` is followed by n octets of data and then the rest of the command. The session
//! gathers a command line by line and literal by literal before imap-codec parses it whole; this
//! module finds the announcements and recognises the one literal that is never gathered: the
//! message of an APPEND, which streams to the driver.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

/// A literal announced at the end of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// Octets that follow the line.
    pub(crate) length: u64,
    /// `{n}`: the client waits for a continuation request; `{n+}`: it does not (LITERAL+).
    pub(crate) sync: bool,
    /// Where the `{` is in the line.
    pub(crate) at: usize,
}

/// The literal announced at the end of `line` (which includes its line end), if any. A quoted
/// string or an atom cannot end in `}` right before the line end (`{` and `}` are not atom
/// characters, and a quoted string ends in `"`), so a trailing `{digits}` is always a literal.
pub(crate) fn announcement(line: &[u8]) -> Option<Announcement> {
    let line = crate::line::strip_line_end(line);
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let inner = &body[open + 1..];
    let (digits, sync) = match inner.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (inner, true),
    };
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let length = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(Announcement {
        length,
        sync,
        at: open,
    })
}

/// The arguments of an APPEND whose message literal is about to follow.
#[derive(Debug)]
pub(crate) struct AppendHead {
    pub(crate) tag: Tag<'static>,
    pub(crate) mailbox: Mailbox<'static>,
    pub(crate) flags: Vec<Flag<'static>>,
    pub(crate) date: Option<DateTime>,
}

/// If `command` (everything gathered so far, the last line included) is an APPEND and the
/// literal announced at `announced_at` is its message, the APPEND's other arguments.
///
/// The check is a parse of the command with the message replaced by an empty literal: it
/// succeeds only when the announced literal is in the message's place (not, say, a mailbox
/// name sent as a literal).
pub(crate) fn append_head(command: &[u8], announced_at: usize) -> Option<AppendHead> {
    if !is_append(command) {
        return None;
    }
    let mut probe = Vec::with_capacity(announced_at + 7);
    probe.extend_from_slice(command.get(..announced_at)?);
    probe.extend_from_slice(b"{0}\r\n\r\n");
    let (rest, parsed) = CommandCodec::default().decode(&probe).ok()?;
    if !rest.is_empty() {
        return None;
    }
    match parsed.body {
        CommandBody::Append {
            mailbox,
            flags,
            date,
            ..
        } => Some(AppendHead {
            tag: parsed.tag.into_static(),
            mailbox: mailbox.into_static(),
            flags: flags.into_iter().map(IntoStatic::into_static).collect(),
            date,
        }),
        _ => None,
    }
}

/// `tag SP "APPEND" SP ...`, case-insensitively.
fn is_append(command: &[u8]) -> bool {
    let mut words = command.splitn(3, |&b| b == b' ');
    let _tag = words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements() {
        let a = announcement(b"A1 LOGIN {5}\r\n").expect("literal");
        assert_eq!((a.length, a.sync, a.at), (5, true, 9));
        let a = announcement(b"A1 APPEND INBOX {310+}\r\n").expect("literal");
        assert_eq!((a.length, a.sync), (310, false));
        assert_eq!(announcement(b"A1 LOGIN {5}x\r\n"), None);
        assert_eq!(announcement(b"A1 LOGIN \"{5}\"\r\n"), None);
        assert_eq!(announcement(b"A1 LOGIN {}\r\n"), None);
        assert_eq!(announcement(b"A1 LOGIN {+}\r\n"), None);
        assert_eq!(announcement(b"A1 LOGIN {99999999999}\r\n"), None);
        assert_eq!(announcement(b"A1 LOGIN {-5}\r\n"), None);
        assert!(announcement(b"A1 LOGIN {5}\n").is_some());
    }

    #[test]
    fn the_message_literal_of_an_append_is_recognised() {
        let line = b"A1 APPEND Sent (\\Seen) \"05-Jan-2024 10:00:00 +0100\" {310}\r\n";
        let at = announcement(line).expect("literal").at;
        let head = append_head(line, at).expect("append");
        assert_eq!(head.tag.as_ref(), "A1");
        assert_eq!(head.flags, vec![Flag::Seen]);
        assert!(head.date.is_some());
        // A mailbox name sent as a literal is an ordinary literal.
        let line = b"A1 APPEND {4}\r\n";
        assert!(append_head(line, announcement(line).expect("literal").at).is_none());
        // The message after a literal mailbox name is the message.
        let cmd = b"A1 append {4}\r\nSent {3+}\r\n";
        let at = 15 + announcement(b"Sent {3+}\r\n").expect("literal").at;
        assert!(append_head(cmd, at).is_some());
        let line = b"A1 SEARCH TEXT {4}\r\n";
        assert!(append_head(line, announcement(line).expect("literal").at).is_none());
        let line = b"A1 APPEND INBOX (\\Bogus\\) {4}\r\n";
        assert!(append_head(line, announcement(line).expect("literal").at).is_none());
    }
}
