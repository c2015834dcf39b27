//! The mail store's data model: what IMAP and POP3 see of a mailbox, independent of how a
//! backend keeps it.

use std::fmt;
use std::num::NonZeroU32;

/// An IMAP UID: unique within one mailbox and one [`UidValidity`], strictly ascending in the order
/// messages were added, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Uid(NonZeroU32);

impl Uid {
    pub const MIN: Uid = Uid(NonZeroU32::MIN);

    pub fn new(value: u32) -> Option<Uid> {
        NonZeroU32::new(value).map(Uid)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The next UID, or `None` when the 32-bit space is exhausted (the mailbox then needs a new
    /// UIDVALIDITY).
    pub fn next(self) -> Option<Uid> {
        self.0.checked_add(1).map(Uid)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Changes whenever UIDs of a mailbox's name can no longer be trusted (the mailbox was recreated).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct UidValidity(NonZeroU32);

impl UidValidity {
    pub fn new(value: u32) -> Option<UidValidity> {
        NonZeroU32::new(value).map(UidValidity)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// RFC 7162 modification sequence: every change to a mailbox gets a larger one than every change
/// before it. 0 means "before any change".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ModSeq(pub u64);

impl fmt::Display for ModSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The RFC 3501 system flags that are stored (`\Recent` is per session, not stored).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum SystemFlag {
    Seen = 1,
    Answered = 2,
    Flagged = 4,
    Deleted = 8,
    Draft = 16,
}

impl SystemFlag {
    pub const ALL: [SystemFlag; 5] = [
        SystemFlag::Seen,
        SystemFlag::Answered,
        SystemFlag::Flagged,
        SystemFlag::Deleted,
        SystemFlag::Draft,
    ];

    /// The IMAP spelling, e.g. `\Seen`.
    pub fn as_imap(self) -> &'static str {
        match self {
            SystemFlag::Seen => "\\Seen",
            SystemFlag::Answered => "\\Answered",
            SystemFlag::Flagged => "\\Flagged",
            SystemFlag::Deleted => "\\Deleted",
            SystemFlag::Draft => "\\Draft",
        }
    }

    /// The Maildir info letter (`:2,` suffix), e.g. `S` for seen. Maildir calls \Answered "R"
    /// (replied) and \Deleted "T" (trashed).
    pub fn maildir_letter(self) -> char {
        match self {
            SystemFlag::Seen => 'S',
            SystemFlag::Answered => 'R',
            SystemFlag::Flagged => 'F',
            SystemFlag::Deleted => 'T',
            SystemFlag::Draft => 'D',
        }
    }
}

/// The longest keyword we store; real clients use short ones ($Junk, $Forwarded, $label1).
pub const MAX_KEYWORD_LEN: usize = 128;
/// A mailbox may define at most this many distinct keywords on one message.
pub const MAX_KEYWORDS_PER_MESSAGE: usize = 64;

/// A message's stored flags: system flags plus keywords.
///
/// Invariant: keywords are valid IMAP atoms (see [`Flags::is_valid_keyword`]), sorted and unique
/// ignoring ASCII case (IMAP flags are case-insensitive; the first spelling seen is kept).
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct Flags {
    system: u8,
    keywords: Vec<String>,
}

/// How a flag update combines with the flags a message has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

impl Flags {
    pub fn new() -> Flags {
        Flags::default()
    }

    pub fn from_system(flags: &[SystemFlag]) -> Flags {
        let mut f = Flags::new();
        for &flag in flags {
            f.insert(flag);
        }
        f
    }

    /// `flag-keyword = atom` (RFC 3501 9): printable ASCII without `( ) { % * " \ ]` and space.
    pub fn is_valid_keyword(keyword: &str) -> bool {
        !keyword.is_empty()
            && keyword.len() <= MAX_KEYWORD_LEN
            && keyword.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
            })
    }

    pub fn contains(&self, flag: SystemFlag) -> bool {
        self.system & flag as u8 != 0
    }

    pub fn insert(&mut self, flag: SystemFlag) {
        self.system |= flag as u8;
    }

    pub fn remove(&mut self, flag: SystemFlag) {
        self.system &= !(flag as u8);
    }

    pub fn system_bits(&self) -> u8 {
        self.system
    }

    /// Rebuilds flags from their stored form; bits outside the five system flags are dropped.
    pub fn from_bits(system: u8) -> Flags {
        Flags {
            system: system & 0x1f,
            keywords: Vec::new(),
        }
    }

    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keyword_index(keyword).is_ok()
    }

    fn keyword_index(&self, keyword: &str) -> Result<usize, usize> {
        let key = keyword.to_ascii_lowercase();
        self.keywords
            .binary_search_by(|k| k.to_ascii_lowercase().cmp(&key))
    }

    /// Adds a keyword; returns false (and changes nothing) if it is not a valid atom or the
    /// message already has the maximum number of keywords.
    pub fn add_keyword(&mut self, keyword: &str) -> bool {
        if !Flags::is_valid_keyword(keyword) {
            return false;
        }
        match self.keyword_index(keyword) {
            Ok(_) => true,
            Err(_) if self.keywords.len() >= MAX_KEYWORDS_PER_MESSAGE => false,
            Err(pos) => {
                self.keywords.insert(pos, keyword.to_owned());
                true
            }
        }
    }

    pub fn remove_keyword(&mut self, keyword: &str) {
        if let Ok(pos) = self.keyword_index(keyword) {
            self.keywords.remove(pos);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords.is_empty()
    }

    /// The flags after applying `op` with `other`.
    pub fn apply(&self, op: FlagOp, other: &Flags) -> Flags {
        match op {
            FlagOp::Replace => other.clone(),
            FlagOp::Add => {
                let mut out = self.clone();
                out.system |= other.system;
                for k in &other.keywords {
                    out.add_keyword(k);
                }
                out
            }
            FlagOp::Remove => {
                let mut out = self.clone();
                out.system &= !other.system;
                for k in &other.keywords {
                    out.remove_keyword(k);
                }
                out
            }
        }
    }

    /// The Maildir info suffix letters in ASCII order, as the Maildir spec requires (`DFRST`).
    pub fn maildir_info(&self) -> String {
        let mut letters: Vec<char> = SystemFlag::ALL
            .iter()
            .filter(|f| self.contains(**f))
            .map(|f| f.maildir_letter())
            .collect();
        letters.sort_unstable();
        letters.into_iter().collect()
    }

    /// Reads Maildir info letters; letters other than the five standard ones are ignored.
    pub fn from_maildir_info(info: &str) -> Flags {
        let mut f = Flags::new();
        for c in info.chars() {
            if let Some(flag) = SystemFlag::ALL.iter().find(|f| f.maildir_letter() == c) {
                f.insert(*flag);
            }
        }
        f
    }
}

/// When the server received a message (IMAP INTERNALDATE): seconds since the Unix epoch plus the
/// zone offset the date was given in, so `APPEND` dates round-trip as the client sent them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct InternalDate {
    pub unix_seconds: i64,
    /// Minutes east of UTC, -1439..=1439.
    pub offset_minutes: i16,
}

impl InternalDate {
    pub fn now() -> InternalDate {
        let unix_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        InternalDate {
            unix_seconds,
            offset_minutes: 0,
        }
    }
}

/// What the index knows of one message without opening its file.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MessageMeta {
    pub uid: Uid,
    pub modseq: ModSeq,
    pub flags: Flags,
    pub internal_date: InternalDate,
    /// Exact size in octets of the stored message (CRLF line ends), = RFC822.SIZE and what POP3
    /// LIST reports.
    pub size: u64,
}

/// The counts IMAP SELECT/STATUS and POP3 STAT report.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MailboxStatus {
    pub messages: u32,
    /// Messages no session has yet been told about as `\Recent`.
    pub recent: u32,
    pub unseen: u32,
    pub uid_next: Uid,
    pub uid_validity: UidValidity,
    pub highest_modseq: ModSeq,
    /// Total octets of all messages.
    pub size: u64,
}

/// An account's usage, kept by the index so that quota checks cost nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Usage {
    pub messages: u64,
    pub bytes: u64,
}

/// What changed in a mailbox since a given [`ModSeq`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Changes {
    /// UIDs expunged since then, ascending.
    pub expunged: Vec<Uid>,
    /// Messages added or whose flags changed since then, ascending by UID.
    pub changed: Vec<MessageMeta>,
    pub highest_modseq: ModSeq,
}

/// RFC 6154 special-use attributes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 7] = [
        SpecialUse::All,
        SpecialUse::Archive,
        SpecialUse::Drafts,
        SpecialUse::Flagged,
        SpecialUse::Junk,
        SpecialUse::Sent,
        SpecialUse::Trash,
    ];

    pub fn as_imap(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    /// Parses the IMAP spelling, case-insensitively.
    pub fn from_imap(s: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|u| u.as_imap().eq_ignore_ascii_case(s))
    }
}

/// The hierarchy separator of mailbox names, as IMAP LIST reports it.
pub const HIERARCHY_SEPARATOR: char = '/';
/// Longest mailbox name in octets (UTF-8).
pub const MAX_MAILBOX_NAME_LEN: usize = 255;

/// A valid mailbox name: UTF-8 with `/` separating hierarchy levels.
///
/// Invariants: not empty, at most [`MAX_MAILBOX_NAME_LEN`] octets, no empty level (so no
/// leading, trailing or doubled `/`), no control characters, no `*` or `%` (IMAP LIST wildcards),
/// and a top level spelled `inbox` in any case is stored as `INBOX` (RFC 3501 5.1: INBOX is
/// case-insensitive). How a name maps to disk is the backend's business; the filesystem store
/// encodes every level so that no name can leave the account's directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct MailboxName(String);

impl MailboxName {
    pub fn inbox() -> MailboxName {
        MailboxName("INBOX".to_owned())
    }

    pub fn new(name: &str) -> Result<MailboxName, &'static str> {
        if name.is_empty() {
            return Err("mailbox name is empty");
        }
        if name.len() > MAX_MAILBOX_NAME_LEN {
            return Err("mailbox name is too long");
        }
        if name.chars().any(char::is_control) {
            return Err("mailbox name contains a control character");
        }
        if name.contains(['*', '%']) {
            return Err("mailbox name contains a wildcard character");
        }
        if name.split(HIERARCHY_SEPARATOR).any(str::is_empty) {
            return Err("mailbox name has an empty hierarchy level");
        }
        let (top, rest) = match name.split_once(HIERARCHY_SEPARATOR) {
            Some((top, rest)) => (top, Some(rest)),
            None => (name, None),
        };
        if top.eq_ignore_ascii_case("INBOX") {
            return Ok(MailboxName(match rest {
                Some(rest) => format!("INBOX{HIERARCHY_SEPARATOR}{rest}"),
                None => "INBOX".to_owned(),
            }));
        }
        Ok(MailboxName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    /// The hierarchy levels, e.g. `["Archive", "2024"]`.
    pub fn levels(&self) -> impl Iterator<Item = &str> {
        self.0.split(HIERARCHY_SEPARATOR)
    }

    /// The name one level up, if any.
    pub fn parent(&self) -> Option<MailboxName> {
        self.0
            .rsplit_once(HIERARCHY_SEPARATOR)
            .map(|(p, _)| MailboxName(p.to_owned()))
    }

    /// True if `self` is strictly below `ancestor` in the hierarchy.
    pub fn is_below(&self, ancestor: &MailboxName) -> bool {
        self.0.len() > ancestor.0.len()
            && self.0.starts_with(&ancestor.0)
            && self.0[ancestor.0.len()..].starts_with(HIERARCHY_SEPARATOR)
    }

    /// `self` with the prefix `from` replaced by `to` (for renaming a subtree).
    pub fn rebase(&self, from: &MailboxName, to: &MailboxName) -> Option<MailboxName> {
        if self == from {
            return Some(to.clone());
        }
        if !self.is_below(from) {
            return None;
        }
        MailboxName::new(&format!("{}{}", to.0, &self.0[from.0.len()..])).ok()
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of an account's folder list.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MailboxInfo {
    pub name: MailboxName,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    /// Another mailbox exists below this one.
    pub has_children: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names() {
        assert_eq!(MailboxName::new("inbox").unwrap().as_str(), "INBOX");
        assert_eq!(MailboxName::new("InBoX/Sub").unwrap().as_str(), "INBOX/Sub");
        assert_eq!(MailboxName::new("Inboxes").unwrap().as_str(), "Inboxes");
        assert_eq!(
            MailboxName::new("Ärchiv/2024").unwrap().as_str(),
            "Ärchiv/2024"
        );
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a\0b",
            "a\nb",
            "a*",
            "a%b",
            &"x".repeat(256),
        ] {
            assert!(MailboxName::new(bad).is_err(), "{bad:?}");
        }
        // Dots and `..` are ordinary characters here; the store encodes them on disk.
        assert!(MailboxName::new("../x").is_ok());
    }

    #[test]
    fn hierarchy() {
        let a = MailboxName::new("A").unwrap();
        let ab = MailboxName::new("A/B").unwrap();
        let abc = MailboxName::new("A/B/C").unwrap();
        let ax = MailboxName::new("AX").unwrap();
        assert!(ab.is_below(&a) && abc.is_below(&a) && !ax.is_below(&a) && !a.is_below(&a));
        assert_eq!(abc.parent(), Some(ab.clone()));
        let z = MailboxName::new("Z").unwrap();
        assert_eq!(abc.rebase(&a, &z).unwrap().as_str(), "Z/B/C");
        assert_eq!(ax.rebase(&a, &z), None);
    }

    #[test]
    fn flags_apply_and_maildir_info() {
        let mut f = Flags::from_system(&[SystemFlag::Seen, SystemFlag::Flagged]);
        assert!(f.add_keyword("$Junk"));
        assert!(
            f.add_keyword("$junk"),
            "duplicate ignoring case is accepted and not added"
        );
        assert_eq!(f.keywords(), ["$Junk"]);
        assert!(!f.add_keyword("bad keyword"));
        assert!(!f.add_keyword("\\Seen"));
        assert_eq!(f.maildir_info(), "FS");
        let removed = f.apply(FlagOp::Remove, &Flags::from_system(&[SystemFlag::Seen]));
        assert_eq!(removed.maildir_info(), "F");
        assert!(removed.has_keyword("$JUNK"));
        let added = removed.apply(FlagOp::Add, &Flags::from_system(&[SystemFlag::Deleted]));
        assert_eq!(added.maildir_info(), "FT");
        assert_eq!(Flags::from_maildir_info("DRSTFx"), {
            let mut all = Flags::new();
            SystemFlag::ALL.iter().for_each(|f| all.insert(*f));
            all
        });
    }
}
