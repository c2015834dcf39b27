//! The users file: the accounts and password hashes the default authenticator
//! (`plugins/guests/shipped/auth-passwd`) checks logins against, and what `wasmail user`
//! changes.
//!
//! ```text
//!   wasmail user add|passwd ──hash (argon2id, off the lock)──┐
//!   wasmail user remove ─────────────────────────────────────┤
//!                                                            ▼
//!   flock(<data_dir>/auth/users.lock) → read users → change lines → write users.tmp → fsync
//!     → rename over users → fsync auth/ → unlock
//!                                                            │ (renamed atomically: a reader
//!   auth-passwd plugin (every login) ── reads ◄──────────────┘  sees the old or the new file)
//! ```
//!
//! ## Where
//!
//! `<data_dir>/auth/users`, in a directory of its own because a plugin can only be granted
//! whole directories (`grants.read_dirs`): granting `auth/` lets the authenticator read the
//! users file and nothing else of the data dir (no mail, no other plugin's state).
//!
//! ## Format
//!
//! UTF-8, one account per line, `ADDRESS:HASH[:FLAGS]`:
//!
//! ```text
//! # comment lines start with '#'; blank lines are ignored
//! alice@example.org:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! bob@example.org:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>:disabled
//! ```
//!
//! - `ADDRESS` is the account name in RFC 5321 canonical form (as `wasmail_types::Address`
//!   prints it: domain lowercased, local part as given). It ends at the last `:$` of the line.
//! - `HASH` is a PHC string: Argon2id with the OWASP parameters m=19456 KiB, t=2, p=1 and a
//!   random 16-byte salt, as written here; the plugin also accepts Argon2i and Argon2d.
//! - `FLAGS`, comma-separated: `disabled` keeps the account and its password but refuses its
//!   logins. Unknown flags are kept and ignored.
//! - Two addresses are the same account when their domains match case-insensitively and their
//!   local parts ASCII-case-insensitively (how the plugin matches a login), so `add` refuses
//!   `Alice@example.org` when `alice@example.org` exists.
//!
//! Lines this module does not understand (comments, hand-written oddities) are kept as they are.
//!
//! ## Concurrency and crashes
//!
//! Every change holds an exclusive `flock` on `auth/users.lock` from reading the file to
//! renaming the new one over it, so concurrent `wasmail user` runs never lose each other's
//! changes. The new file is written and fsynced under a temporary name, renamed over the old one
//! and the directory is fsynced: after a crash the file is the old or the new one, never a mix.
//! The server needs no signal: the plugin reads the file on every login.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use rustix::fs::{FlockOperation, flock};
use wasmail_types::{Address, Secret};

/// The directory of the users file, below the data dir.
pub const USERS_DIR: &str = "auth";
/// The users file's name in [`USERS_DIR`].
pub const USERS_FILE: &str = "users";
const LOCK_FILE: &str = "users.lock";
const TEMP_FILE: &str = "users.tmp";
/// The first line of a users file this module creates.
const HEADER: &str = "# wasmail users: ADDRESS:ARGON2-PHC-HASH[:FLAGS], one per line. \
                      Change it with `wasmail user`.";

/// Longest password accepted (the plugin refuses longer secrets too).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Argon2id memory cost in KiB (OWASP's first recommended configuration).
pub const HASH_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const HASH_TIME_COST: u32 = 2;
/// Argon2id lanes.
pub const HASH_PARALLELISM: u32 = 1;

/// `<data_dir>/auth`: the directory to grant the authenticator read-only.
pub fn users_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(USERS_DIR)
}

/// `<data_dir>/auth/users`: the authenticator's `users_file`.
pub fn users_file(data_dir: &Path) -> PathBuf {
    users_dir(data_dir).join(USERS_FILE)
}

/// Why a `wasmail user` command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    #[error("{input:?} is not a valid address: {reason}")]
    BadAddress { input: String, reason: String },
    #[error("{0} cannot be stored in the users file: it begins with '#', which marks a comment")]
    Unstorable(String),
    #[error("{address} already exists in {}", path.display())]
    Exists { address: String, path: PathBuf },
    #[error("{address} is not in {}", path.display())]
    Unknown { address: String, path: PathBuf },
    #[error("the password is empty; refused")]
    EmptyPassword,
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes; refused")]
    PasswordTooLong,
    #[error("the password contains a control character (NUL, CR, LF, ...); refused")]
    PasswordControl,
    #[error("the passwords do not match")]
    Mismatch,
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// One account of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The address as the file writes it: the name a successful login acts as.
    pub address: String,
    /// The `disabled` flag is set.
    pub disabled: bool,
}

/// The address as the users file stores it: parsed with [`Address::parse`] and printed in
/// canonical form.
pub fn canonical_address(input: &str) -> Result<String, UserError> {
    let address = Address::parse(input).map_err(|e| UserError::BadAddress {
        input: input.to_owned(),
        reason: e.to_string(),
    })?;
    let text = address.to_string();
    if text.starts_with('#') {
        return Err(UserError::Unstorable(text));
    }
    Ok(text)
}

/// Refuses passwords the authenticator could never accept: empty, too long, or with control
/// characters (SASL PLAIN separates its fields with NUL; a line break cannot be typed at a
/// login prompt).
pub fn check_password(password: &Secret<String>) -> Result<(), UserError> {
    let p = password.expose();
    if p.is_empty() {
        Err(UserError::EmptyPassword)
    } else if p.len() > MAX_PASSWORD_LEN {
        Err(UserError::PasswordTooLong)
    } else if p.chars().any(char::is_control) {
        Err(UserError::PasswordControl)
    } else {
        Ok(())
    }
}

/// An Argon2id PHC string for `password` with a random salt (the system's CSPRNG through
/// `getrandom`) and the parameters above.
pub fn hash_password(password: &Secret<String>) -> Result<String, UserError> {
    check_password(password)?;
    let params = Params::new(HASH_MEMORY_KIB, HASH_TIME_COST, HASH_PARALLELISM, None)
        .map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.expose().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (any Argon2 variant, the hash's own
/// parameters). A malformed hash matches nothing.
pub fn verify_password(password: &Secret<String>, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok()
    })
}

/// An account line split into address, hash and flags; `None` for comments, blank lines and
/// lines without a `:$` (the same rule as the plugin's).
fn parse_line(line: &str) -> Option<(&str, &str, &str)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let at = line.rfind(":$")?;
    let (address, rest) = (&line[..at], &line[at + 1..]);
    if address.is_empty() {
        return None;
    }
    let (hash, flags) = rest.split_once(':').unwrap_or((rest, ""));
    Some((address, hash, flags))
}

/// Whether two addresses name the same account: domains case-insensitively (Unicode lowercase),
/// local parts ASCII-case-insensitively. The plugin matches logins the same way.
pub fn same_account(a: &str, b: &str) -> bool {
    fn split(s: &str) -> (&str, Option<&str>) {
        match s.rsplit_once('@') {
            Some((local, domain)) => (local, Some(domain)),
            None => (s, None),
        }
    }
    let ((local_a, domain_a), (local_b, domain_b)) = (split(a), split(b));
    local_a.eq_ignore_ascii_case(local_b)
        && match (domain_a, domain_b) {
            (Some(x), Some(y)) => x
                .chars()
                .flat_map(char::to_lowercase)
                .eq(y.chars().flat_map(char::to_lowercase)),
            (None, None) => true,
            _ => false,
        }
}

/// What [`UsersFile::list`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub accounts: Vec<Account>,
    /// 1-based numbers of lines that are neither comments, blank nor accounts (ignored by the
    /// plugin too). Their text is not returned: a hand-written line might hold a plaintext
    /// password.
    pub ignored_lines: Vec<usize>,
}

/// The users file of one data dir.
#[derive(Debug, Clone)]
pub struct UsersFile {
    dir: PathBuf,
}

impl UsersFile {
    /// The users file of `data_dir` (nothing is touched until a method runs).
    pub fn new(data_dir: &Path) -> UsersFile {
        UsersFile {
            dir: users_dir(data_dir),
        }
    }

    /// `<data_dir>/auth/users`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(USERS_FILE)
    }

    /// Every account, in file order (a missing file has none), and the numbers of lines that
    /// are neither comments nor accounts, so the caller can warn about them.
    pub fn list(&self) -> Result<Listing, UserError> {
        let mut listing = Listing::default();
        for (index, line) in self.read()?.iter().enumerate() {
            match parse_line(line) {
                Some((address, _, flags)) => listing.accounts.push(Account {
                    address: address.to_owned(),
                    disabled: flags.split(',').any(|f| f.trim() == "disabled"),
                }),
                None if line.trim().is_empty() || line.trim_start().starts_with('#') => {}
                None => listing.ignored_lines.push(index + 1),
            }
        }
        Ok(listing)
    }

    /// The listed address of `address`'s account, if there is one (read without the lock: the
    /// file is only ever replaced whole).
    pub fn find(&self, address: &str) -> Result<Option<String>, UserError> {
        Ok(self
            .read()?
            .iter()
            .filter_map(|line| parse_line(line))
            .find(|(listed, _, _)| same_account(listed, address))
            .map(|(listed, _, _)| listed.to_owned()))
    }

    /// Adds `address` with the PHC string `hash`; refuses an existing account. Returns the
    /// address as stored.
    pub fn add(&self, address: &str, hash: &str) -> Result<String, UserError> {
        let address = canonical_address(address)?;
        check_hash(hash)?;
        let path = self.path();
        self.update(|lines| {
            if let Some(existing) = find_lines(lines, &address).next() {
                let listed = parse_line(&lines[existing]).map_or("", |(a, _, _)| a);
                return Err(UserError::Exists {
                    address: listed.to_owned(),
                    path,
                });
            }
            if lines.is_empty() {
                lines.push(HEADER.to_owned());
            }
            lines.push(format!("{address}:{hash}"));
            Ok(address)
        })
    }

    /// Replaces the hash of `address`'s account (keeping its flags). Returns the address as
    /// listed.
    pub fn set_hash(&self, address: &str, hash: &str) -> Result<String, UserError> {
        check_hash(hash)?;
        let path = self.path();
        self.update(|lines| {
            let (found, listed) = listed_lines(lines, address, path)?;
            for index in found {
                if let Some((listed, _, flags)) = parse_line(&lines[index]) {
                    lines[index] = if flags.is_empty() {
                        format!("{listed}:{hash}")
                    } else {
                        format!("{listed}:{hash}:{flags}")
                    };
                }
            }
            Ok(listed)
        })
    }

    /// Removes `address`'s account (every line of it). Returns the address as it was listed.
    pub fn remove(&self, address: &str) -> Result<String, UserError> {
        let path = self.path();
        self.update(|lines| {
            let (found, listed) = listed_lines(lines, address, path)?;
            for index in found.into_iter().rev() {
                lines.remove(index);
            }
            Ok(listed)
        })
    }

    /// The file's lines; none when it does not exist.
    fn read(&self) -> Result<Vec<String>, UserError> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(UserError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Read, change and atomically replace the file under the lock. `change` returning an error
    /// leaves the file untouched.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut Vec<String>) -> Result<T, UserError>,
    ) -> Result<T, UserError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| UserError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| io("lock", &lock_path)(e.into()))?;

        let mut lines = self.read()?;
        let result = change(&mut lines)?;

        let path = self.path();
        let temp = self.dir.join(TEMP_FILE);
        // A new file is readable by its owner only (it holds password hashes); a replaced one
        // keeps its mode and, where we may set it (root), its owner and group, so running
        // `wasmail user` as root does not lock out a server running as another user.
        let old = fs::metadata(&path).ok();
        let mode = old
            .as_ref()
            .map_or(0o600, |m| m.permissions().mode() & 0o7777);
        let _ = fs::remove_file(&temp);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io("create", &temp))?;
        if let Some(old) = &old {
            let _ = rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(old.uid())),
                Some(rustix::fs::Gid::from_raw(old.gid())),
            );
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("set permissions of", &temp))?;
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write", &temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io("replace", &path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", &self.dir))?;
        drop(lock);
        Ok(result)
    }
}

/// Indices of the account lines of `address`.
fn find_lines<'a>(lines: &'a [String], address: &'a str) -> impl Iterator<Item = usize> + 'a {
    lines.iter().enumerate().filter_map(move |(index, line)| {
        parse_line(line)
            .filter(|(listed, _, _)| same_account(listed, address))
            .map(|_| index)
    })
}

/// A hash must be a PHC string that fits a line: no `:` (it would end the field), no controls.
fn check_hash(hash: &str) -> Result<(), UserError> {
    if !hash.starts_with('$') || hash.contains(':') || hash.chars().any(char::is_control) {
        return Err(UserError::Hash(
            "not a PHC string that fits the users file".into(),
        ));
    }
    PasswordHash::new(hash)
        .map(|_| ())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// The lines of `address`'s account and the address as the file lists it, or `Unknown`.
fn listed_lines(
    lines: &[String],
    address: &str,
    path: PathBuf,
) -> Result<(Vec<usize>, String), UserError> {
    let found: Vec<usize> = find_lines(lines, address).collect();
    let Some(&first) = found.first() else {
        return Err(UserError::Unknown {
            address: address.to_owned(),
            path,
        });
    };
    let listed = parse_line(&lines[first])
        .map_or("", |(a, _, _)| a)
        .to_owned();
    Ok((found, listed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn secret(s: &str) -> Secret<String> {
        Secret::new(s.to_owned())
    }

    #[test]
    fn lines_split_at_the_last_colon_dollar() {
        assert_eq!(
            parse_line("a@x:$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA"),
            Some(("a@x", "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA", ""))
        );
        assert_eq!(
            parse_line("  \"a:$b\"@[IPv6:2001:db8::1]:$argon2i$h:disabled,x \r"),
            Some(("\"a:$b\"@[IPv6:2001:db8::1]", "$argon2i$h", "disabled,x"))
        );
        assert_eq!(parse_line("# a@x:$argon2id$h"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("a@x:plaintext"), None);
        assert_eq!(parse_line(":$argon2id$h"), None);
    }

    #[test]
    fn accounts_match_like_the_plugin() {
        assert!(same_account("alice@example.org", "ALICE@Example.ORG"));
        assert!(same_account("jörg@bücher.example", "jörg@BÜCHER.example"));
        assert!(!same_account("jörg@example.org", "JÖRG@example.org"));
        assert!(!same_account("alice@example.org", "alice@example.net"));
        assert!(!same_account("alice@example.org", "alice"));
    }

    #[test]
    fn addresses_are_canonical_and_storable() {
        assert_eq!(
            canonical_address("Alice@EXAMPLE.org").unwrap(),
            "Alice@example.org"
        );
        assert_eq!(
            canonical_address("\"alice\"@example.org").unwrap(),
            "alice@example.org"
        );
        assert!(matches!(
            canonical_address("not an address"),
            Err(UserError::BadAddress { .. })
        ));
        assert!(matches!(
            canonical_address("#x@example.org"),
            Err(UserError::Unstorable(_))
        ));
    }

    #[test]
    fn passwords_are_checked_hashed_and_verified() {
        assert!(matches!(
            hash_password(&secret("")),
            Err(UserError::EmptyPassword)
        ));
        assert!(matches!(
            check_password(&secret(&"x".repeat(MAX_PASSWORD_LEN + 1))),
            Err(UserError::PasswordTooLong)
        ));
        assert!(matches!(
            check_password(&secret("a\0b")),
            Err(UserError::PasswordControl)
        ));
        let hash = hash_password(&secret("correct horse")).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&secret("correct horse"), &hash));
        assert!(!verify_password(&secret("correct horsE"), &hash));
        assert!(!verify_password(&secret("correct horse"), "$argon2id$junk"));
        // A fresh salt every time.
        assert_ne!(hash, hash_password(&secret("correct horse")).unwrap());
    }

    #[test]
    fn changes_keep_other_lines_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let users = UsersFile::new(dir.path());
        assert_eq!(users.list().unwrap(), Listing::default());
        let h1 = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
        let h2 = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$b3RoZXJvdGhlcm90aGVyIQ";
        assert_eq!(
            users.add("alice@Example.org", h1).unwrap(),
            "alice@example.org"
        );
        assert!(matches!(
            users.add("ALICE@example.org", h1),
            Err(UserError::Exists { address, .. }) if address == "alice@example.org"
        ));
        // Hand edits: a comment, a disabled account, a line we do not understand.
        let path = users.path();
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "# bob left\nbob@example.org:{h1}:disabled\nodd line\n"
        ));
        fs::write(&path, text).unwrap();

        assert_eq!(
            users.set_hash("BOB@example.org", h2).unwrap(),
            "bob@example.org"
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(&format!("bob@example.org:{h2}:disabled\n")),
            "{text}"
        );
        assert!(text.contains("# bob left\n") && text.contains("odd line\n"));
        let listing = users.list().unwrap();
        assert_eq!(
            listing.accounts,
            [
                Account {
                    address: "alice@example.org".into(),
                    disabled: false
                },
                Account {
                    address: "bob@example.org".into(),
                    disabled: true
                }
            ]
        );
        assert_eq!(listing.ignored_lines, [5]);
        assert_eq!(
            users.remove("alice@example.org").unwrap(),
            "alice@example.org"
        );
        assert!(matches!(
            users.remove("alice@example.org"),
            Err(UserError::Unknown { .. })
        ));
        assert!(matches!(
            users.set_hash("carol@example.org", h1),
            Err(UserError::Unknown { .. })
        ));
        assert_eq!(
            users.find("Bob@EXAMPLE.org").unwrap().as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!users.dir.join(TEMP_FILE).exists());
        assert!(matches!(
            users.add("carol@example.org", "plain"),
            Err(UserError::Hash(_))
        ));
    }
}
