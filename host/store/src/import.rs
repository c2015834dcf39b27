//! Bringing an existing Maildir (Dovecot, Courier, mbsync, offlineimap, ...) into an account.
//!
//! Folders are found in both common layouts: Maildir++ (`.Parent.Child/` beside `cur/`, names in
//! modified UTF-7, which is what Dovecot and Courier write) and nested directories (`Parent/Child/`,
//! mbsync's `SubFolders Verbatim`). Flags come from the `:2,` info letters, Dovecot keywords from
//! `dovecot-keywords`, subscriptions from Dovecot's `subscriptions` file. A message keeps its
//! Maildir base name, so running the import again skips what is already there.
//!
//! Files are hard-linked when source and data dir share a filesystem, copied otherwise, and
//! committed in batches made durable by one `syncfs` each.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::SystemTime;

use cap_std::fs::Dir;
use wasmail_types::mail::{Flags, InternalDate, MailboxName};
use wasmail_types::{Account, StoreError, StoreResult};

use crate::layout::{self, split_file_name};
use crate::mailbox::{FsMailbox, Op, Outcome, write_tmp_in};
use crate::{FsStore, StoreConfig};

/// Messages committed per batch (one syncfs, one journal fsync).
const BATCH: usize = 512;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub mailboxes: usize,
    pub messages: u64,
    pub bytes: u64,
    /// Messages already in the account (an earlier import of the same files).
    pub skipped: u64,
}

/// Progress of an import, for a progress bar.
#[derive(Debug)]
pub enum ImportProgress<'a> {
    /// The import found this many messages in all folders.
    Found { messages: u64 },
    /// Starting on a folder.
    Mailbox(&'a MailboxName),
    /// One message done (imported or skipped).
    Message,
}

struct Folder {
    name: MailboxName,
    /// Path of the folder relative to the source root ("." for INBOX).
    path: String,
}

struct SourceMessage {
    path: String,
    base: String,
    flags: Flags,
    size: u64,
    date: InternalDate,
}

impl FsStore {
    /// Imports every folder of the Maildir `source` into `account`.
    pub fn import_maildir(
        &self,
        source: &Dir,
        account: &str,
        progress: &mut dyn FnMut(ImportProgress<'_>),
    ) -> StoreResult<ImportReport> {
        let acct = self.fs_account(account)?;
        let mut folders = Vec::new();
        find_folders(source, ".", None, &mut folders)?;
        let mut listed = Vec::with_capacity(folders.len());
        let mut total = 0;
        for f in folders {
            let messages = list_messages(source, &f.path)?;
            total += messages.len() as u64;
            listed.push((f, messages));
        }
        progress(ImportProgress::Found { messages: total });
        let mut report = ImportReport::default();
        for (folder, messages) in listed {
            progress(ImportProgress::Mailbox(&folder.name));
            match acct.create(&folder.name, None) {
                Ok(()) | Err(StoreError::MailboxExists(_)) => {}
                Err(e) => return Err(e),
            }
            let mailbox = acct.open_mailbox(&folder.name)?;
            import_folder(source, &mailbox, messages, &mut report, progress)?;
            report.mailboxes += 1;
        }
        for name in read_subscriptions(source) {
            if let Err(e) = acct.set_subscribed(&name, true) {
                tracing::warn!(mailbox = %name, error = %e, "could not import subscription");
            }
        }
        Ok(report)
    }
}

fn is_maildir(source: &Dir, path: &str) -> bool {
    source.is_dir(format!("{path}/cur")) || source.is_dir(format!("{path}/new"))
}

fn join(parent: &Option<MailboxName>, level: &str) -> Option<MailboxName> {
    match parent {
        Some(p) => MailboxName::new(&format!("{p}/{level}")).ok(),
        None => MailboxName::new(level).ok(),
    }
}

/// Collects the folders at `path` (a Maildir) and below it.
fn find_folders(
    source: &Dir,
    path: &str,
    name: Option<MailboxName>,
    out: &mut Vec<Folder>,
) -> StoreResult<()> {
    if is_maildir(source, path) {
        out.push(Folder {
            name: name.clone().unwrap_or_else(MailboxName::inbox),
            path: path.to_owned(),
        });
    }
    let entries = match source.read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Io {
                op: "read source maildir",
                source: e,
            });
        }
    };
    let mut dirs: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    dirs.sort();
    for dir in dirs {
        let child = if path == "." {
            dir.clone()
        } else {
            format!("{path}/{dir}")
        };
        if ["cur", "new", "tmp"].contains(&dir.as_str()) {
            continue;
        }
        if dir.starts_with('.') {
            // Maildir++ subfolders live only at the root and carry their full name.
            if path == "." && is_maildir(source, &child) {
                if let Some(n) = layout::mailbox_from_dir(&dir) {
                    out.push(Folder {
                        name: n,
                        path: child,
                    });
                } else {
                    tracing::warn!(dir = %dir, "skipping folder whose name is not valid modified UTF-7");
                }
            }
            continue;
        }
        // Nested layout: the directory name is one level.
        if let Some(n) = join(&name, &dir) {
            find_folders(source, &child, Some(n), out)?;
        }
    }
    Ok(())
}

/// Dovecot's `dovecot-keywords`: lines `<index> <keyword>`; letter `a` + index in the info.
fn read_keywords(source: &Dir, path: &str) -> HashMap<char, String> {
    let Ok(text) = source.read_to_string(format!("{path}/dovecot-keywords")) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (i, k) = l.split_once(' ')?;
            let i: u8 = i.parse().ok()?;
            (i < 26).then(|| ((b'a' + i) as char, k.to_owned()))
        })
        .collect()
}

fn list_messages(source: &Dir, path: &str) -> StoreResult<Vec<SourceMessage>> {
    let keywords = read_keywords(source, path);
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let dir = format!("{path}/{sub}");
        let entries = match source.read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(StoreError::Io {
                    op: "read source maildir",
                    source: e,
                });
            }
        };
        for e in entries.flatten() {
            let Ok(file_name) = e.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            if file_name.starts_with('.') || !meta.is_file() {
                continue;
            }
            let (base, info) = split_file_name(&file_name);
            let mut flags = Flags::from_maildir_info(info);
            for c in info.chars().filter(char::is_ascii_lowercase) {
                if let Some(k) = keywords.get(&c) {
                    flags.add_keyword(k);
                }
            }
            let date = meta
                .modified()
                .ok()
                .and_then(|t| t.into_std().duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or_else(InternalDate::now, |d| InternalDate {
                    unix_seconds: d.as_secs() as i64,
                    offset_minutes: 0,
                });
            out.push(SourceMessage {
                path: format!("{dir}/{file_name}"),
                base: base.to_owned(),
                flags,
                size: meta.len(),
                date,
            });
        }
    }
    // Maildir base names start with the delivery time: sorting keeps the original order.
    out.sort_by(|a, b| {
        natural_key(&a.base)
            .cmp(&natural_key(&b.base))
            .then_with(|| a.base.cmp(&b.base))
    });
    Ok(out)
}

/// Sort key: the leading number of a base name (seconds), then the rest.
fn natural_key(base: &str) -> (u64, &str) {
    let digits = base.bytes().take_while(u8::is_ascii_digit).count();
    (base[..digits].parse().unwrap_or(u64::MAX), &base[digits..])
}

fn import_folder(
    source: &Dir,
    mailbox: &FsMailbox,
    messages: Vec<SourceMessage>,
    report: &mut ImportReport,
    progress: &mut dyn FnMut(ImportProgress<'_>),
) -> StoreResult<()> {
    let known: HashSet<Box<str>> =
        mailbox.with_state(|s| s.messages.iter().map(|e| e.base.clone()).collect())?;
    let no_fsync = StoreConfig { fsync: false };
    for batch in messages.chunks(BATCH) {
        let mut ops = Vec::with_capacity(batch.len());
        for m in batch {
            if known.contains(m.base.as_str()) {
                report.skipped += 1;
                progress(ImportProgress::Message);
                continue;
            }
            let tmp = format!("{}.import", layout::unique_base(0).trim_end_matches(",S=0"));
            let size = match source.hard_link(&m.path, mailbox.dir(), format!("tmp/{tmp}")) {
                Ok(()) => m.size,
                Err(_) => {
                    let mut file = source
                        .open(&m.path)
                        .map_err(StoreError::io("read source message"))?
                        .into_std();
                    let (copied, size) = write_tmp_in(mailbox.dir(), &[], &mut file, no_fsync)?;
                    mailbox
                        .dir()
                        .rename(format!("tmp/{copied}"), mailbox.dir(), format!("tmp/{tmp}"))
                        .map_err(StoreError::io("stage message"))?;
                    size
                }
            };
            ops.push(Op::Append {
                tmp,
                base: m.base.clone(),
                size,
                flags: m.flags.clone(),
                internal_date: m.date,
            });
            report.bytes += size;
        }
        // One syncfs makes every staged file durable; the commit then fsyncs the directories
        // and the journal.
        mailbox.sync_filesystem()?;
        for r in mailbox.commit(ops) {
            if let Outcome::Appended(_) = r? {
                report.messages += 1;
                progress(ImportProgress::Message);
            }
        }
    }
    Ok(())
}

/// Dovecot's `subscriptions` file: one name per line (version 1), or after a `V\t2` header one
/// name per line with levels separated by tabs.
fn read_subscriptions(source: &Dir) -> Vec<MailboxName> {
    let Ok(text) = source.read_to_string("subscriptions") else {
        return Vec::new();
    };
    let mut lines = text.lines().peekable();
    let v2 = lines.peek().is_some_and(|l| l.starts_with("V\t"));
    if v2 {
        lines.next();
    }
    lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            MailboxName::new(&if v2 {
                l.replace('\t', "/")
            } else {
                l.replace('.', "/")
            })
            .ok()
        })
        .collect()
}
