//! `wasmail import maildir`: an existing Maildir into an account, with a progress bar.

use std::error::Error;
use std::fmt;
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use indicatif::{ProgressBar, ProgressStyle};
use wasmail_store::{FsStore, ImportProgress, ImportReport, StoreConfig};
use wasmail_types::{Address, StoreError};

use crate::config::Config;

/// Why an import failed.
#[non_exhaustive]
#[derive(Debug)]
pub enum ImportError {
    /// The account is not a valid address (`user@domain`).
    BadAccount(String),
    /// The source directory cannot be opened (missing, not a directory, no permission).
    Source {
        path: String,
        source: std::io::Error,
    },
    /// The store refused: the data dir is unusable or a message could not be stored.
    Store(StoreError),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::BadAccount(why) => write!(f, "bad account address: {why}"),
            ImportError::Source { path, .. } => write!(f, "cannot open the Maildir {path}"),
            ImportError::Store(_) => f.write_str("the mail store refused the import"),
        }
    }
}

impl Error for ImportError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ImportError::BadAccount(_) => None,
            ImportError::Source { source, .. } => Some(source),
            ImportError::Store(e) => Some(e),
        }
    }
}

/// Imports the Maildir at `path` (and its subfolders) into `account`, in the store of
/// `config.server.data_dir`. Safe to run while the server runs, and to run again.
pub fn import_maildir(
    config: &Config,
    path: &Path,
    account: &str,
    show_progress: bool,
) -> Result<ImportReport, ImportError> {
    let address = Address::parse(account).map_err(|e| ImportError::BadAccount(e.to_string()))?;
    let source =
        Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| ImportError::Source {
            path: path.display().to_string(),
            source: e,
        })?;
    let store = FsStore::open(
        &config.server.data_dir,
        StoreConfig {
            fsync: config.store.fsync,
        },
    )
    .map_err(ImportError::Store)?;

    let bar = if show_progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg:20!} [{bar:40}] {pos}/{len} messages ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = store
        .import_maildir(&source, &address.to_string(), &mut |p| match p {
            ImportProgress::Found { messages } => bar.set_length(messages),
            ImportProgress::Mailbox(name) => bar.set_message(name.to_string()),
            ImportProgress::Message => bar.inc(1),
        })
        .map_err(ImportError::Store)?;
    bar.finish_and_clear();
    println!(
        "imported {} messages ({} bytes) into {} mailboxes of {address}; {} already present",
        report.messages, report.bytes, report.mailboxes, report.skipped
    );
    Ok(report)
}
