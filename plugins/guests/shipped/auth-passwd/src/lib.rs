//! # auth-passwd: wasmail's default authenticator
//!
//! Checks logins (SMTP AUTH, IMAP LOGIN, POP3 USER/PASS) against a users file of argon2 password
//! hashes, in the spirit of Dovecot's `passwd-file`. `wasmail user add|list|remove|passwd` keeps
//! the file; this plugin only reads it. It exports `wasmail:plugin/authentication` and nothing
//! else.
//!
//! ## The users file
//!
//! UTF-8 text, one account per line:
//!
//! ```text
//! # comment lines start with '#'; blank lines are ignored
//! alice@example.org:$argon2id$v=19$m=19456,t=2,p=1$<salt, base64>$<hash, base64>
//! bob@example.org:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>:disabled
//! ```
//!
//! - `ADDRESS:HASH[:FLAGS]`. Surrounding whitespace and a CR before the LF are ignored.
//! - `HASH` is a PHC string of Argon2id (what `wasmail user` writes), Argon2i or Argon2d. The
//!   address ends at the last `:$` of the line: the hash and the flags never contain `:` in
//!   their own text, so an address may (a quoted local part, an IPv6 literal).
//! - `FLAGS` is a comma-separated list. `disabled`: the account cannot log in and
//!   `account-exists` says false (the line stays, so re-enabling keeps the password). Unknown
//!   flags are ignored, so newer files work with older plugins.
//! - A line that is not a comment and has no `:$` is ignored. The first line matching an
//!   identity decides (`wasmail user` never writes two).
//!
//! ## Matching an identity
//!
//! The identity is split at its last `@`. The domain compares case-insensitively (Unicode
//! lowercase, so U-labels too), the local part ASCII-case-insensitively (non-ASCII letters must
//! match exactly): `Alice@Example.ORG` logs in as `alice@example.org`. On success the account
//! name is the address as written in the file, whatever case the client typed. Quoting is not
//! normalised: a client must write a quoted local part the way the file does.
//!
//! ## Config (`[plugins.config]`)
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `users_file` | (required) | absolute path of the users file, e.g. `<data_dir>/auth/users`; its directory must be granted read-only (`grants.read_dirs`) |
//! | `domains` | (absent) | the domains this plugin answers for: an identity not in the file whose domain is not listed gets `not-mine`, so the next authenticator is asked |
//! | `max_failures` | 10 | failed logins per client address within `failure_window` before logins from that address are refused with a temporary failure (0 turns this off) |
//! | `failure_window` | 900 | seconds; the window starts at the first failure |
//! | `max_hash_memory_kib` | 65536 | refuse (temporary failure) to verify hashes with a larger `m` |
//! | `max_hash_time_cost` | 10 | refuse (temporary failure) to verify hashes with a larger `t` |
//!
//! Grants: `config` and `kv` (refused at load without them), and `read_dirs` with the users
//! file's directory. Without the directory the plugin loads but every login gets a temporary
//! failure naming the unreadable file.
//!
//! ## Answers
//!
//! - mechanism other than `PLAIN` or `LOGIN` → `not-mine`;
//! - users file missing or unreadable, or the matching line's hash malformed or too costly →
//!   `temporary-failure` (the host logs the reason; the client may retry);
//! - identity not in the file: `not-mine` if `domains` is set and does not list its domain,
//!   otherwise `invalid-credentials` (after a dummy verification, so the answer takes as long as
//!   a wrong password and does not reveal which accounts exist);
//! - too many failures from the client's address → `temporary-failure("too many failed logins")`
//!   without looking at the password;
//! - wrong password → `invalid-credentials`;
//! - right password, `disabled` flag → `disabled("account disabled")` (the password is checked
//!   first, so only someone who knows it learns the account is disabled);
//! - right password → the account name as written in the file.
//!
//! ## Brute force
//!
//! Each failed login increments `fail:<client>` in the plugin's kv namespace with a TTL of
//! `failure_window` (the host's kv clock applies it; the key keeps the expiry of its first
//! failure). `<client>` is the IPv4 address, or the /64 prefix of an IPv6 address (one host
//! usually owns a whole /64). A successful login does not reset the count: someone holding one
//! valid account could otherwise reset it between guesses at others.
//!
//! ## Cost
//!
//! The host serves every authenticator call from a fresh instance, so nothing can be cached
//! between calls: each call reads the file again, which also means a change (`wasmail user ...`
//! while the server runs) applies to the next login. The lookup scans lines without building a
//! table (a 1,000-account file adds about 1 ms). The verification is the hash's own parameters'
//! work: about 45 ms for the OWASP parameters `wasmail user` writes (60-150 ms on a busy
//! machine), so the plugin's `timeout` must be raised from the 100 ms default; `1s` is a good
//! value. `README.md` beside this crate has the figures.

use std::net::IpAddr;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordVerifier, password_hash};
use wasmail_plugin_sdk::{Authenticator, Client, Denial, config, kv};

struct AuthPasswd;

/// Longest secret verified; longer ones are wrong. `wasmail user` refuses longer passwords.
const MAX_SECRET: usize = 1024;
/// Larger users files are refused rather than read into the instance's bounded memory (100,000
/// accounts take about 12 MB).
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Lanes beyond this are refused: in the guest they run one after another anyway.
const MAX_LANES: u32 = 16;
const DEFAULT_MAX_FAILURES: i64 = 10;
const DEFAULT_FAILURE_WINDOW: u64 = 15 * 60;
const DEFAULT_MAX_MEMORY_KIB: u32 = 64 * 1024;
const DEFAULT_MAX_TIME_COST: u32 = 10;
/// Verified against when the identity is unknown, so that answer costs what a wrong password
/// costs. Parameters as `wasmail user` writes them (argon2id, m=19456, t=2, p=1).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$QhpSXyw3LHdzGMww92jwcw$272sz/r+Urx/fQEmcasz50xvcTp6A/MWz08y91d/hfc";

/// One account line of the users file.
struct Entry<'a> {
    /// 1-based line number, for messages.
    line: usize,
    address: &'a str,
    hash: &'a str,
    disabled: bool,
}

/// Splits `ADDRESS:HASH[:FLAGS]`; `None` for comments, blank and malformed lines.
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

/// The first account line whose address matches `identity`.
fn find<'a>(users: &'a str, identity: &str) -> Option<Entry<'a>> {
    users.lines().enumerate().find_map(|(index, line)| {
        let (address, hash, flags) = parse_line(line)?;
        same_account(address, identity).then(|| Entry {
            line: index + 1,
            address,
            hash,
            disabled: flags.split(',').any(|f| f.trim() == "disabled"),
        })
    })
}

/// `local@domain` split at the last `@`.
fn split(address: &str) -> (&str, Option<&str>) {
    match address.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (address, None),
    }
}

fn same_domain(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// Domain case-insensitive (Unicode), local part ASCII-case-insensitive.
fn same_account(listed: &str, identity: &str) -> bool {
    let (local_a, domain_a) = split(listed);
    let (local_b, domain_b) = split(identity);
    local_a.eq_ignore_ascii_case(local_b)
        && match (domain_a, domain_b) {
            (Some(a), Some(b)) => same_domain(a, b),
            (None, None) => true,
            _ => false,
        }
}

/// Config `domains`: a TOML array of strings (the host hands it over as TOML text) or one
/// string, possibly comma-separated. `None` when absent.
fn configured_domains() -> Option<Vec<String>> {
    let text = config::get("domains")?;
    let inner = text.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(inner);
    Some(
        inner
            .split(',')
            .map(|d| d.trim().trim_matches(|c| c == '"' || c == '\'').trim())
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Whether an identity nobody listed belongs to another authenticator.
fn foreign(identity: &str) -> bool {
    let Some(domains) = configured_domains() else {
        return false;
    };
    match split(identity).1 {
        Some(domain) => !domains.iter().any(|d| same_domain(d, domain)),
        None => true,
    }
}

/// The users file as text, or why it cannot be read.
fn read_users() -> Result<String, Denial> {
    let Some(path) = config::get("users_file").filter(|p| !p.is_empty()) else {
        return Err(Denial::TemporaryFailure(
            "config users_file is not set".into(),
        ));
    };
    let unreadable =
        |e: std::io::Error| Denial::TemporaryFailure(format!("cannot read users file {path}: {e}"));
    let size = std::fs::metadata(&path).map_err(unreadable)?.len();
    if size > MAX_FILE_BYTES {
        return Err(Denial::TemporaryFailure(format!(
            "users file {path} is larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    std::fs::read_to_string(&path).map_err(unreadable)
}

/// Whether `secret` matches the PHC string `hash`. `Err` when the hash cannot be checked: not
/// an argon2 PHC string, or parameters above the configured bounds.
fn verify(hash: &str, secret: &[u8]) -> Result<bool, String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string: {e}"))?;
    Algorithm::try_from(parsed.algorithm.as_str())
        .map_err(|_| format!("{} is not an argon2 variant", parsed.algorithm))?;
    let params = Params::try_from(&parsed).map_err(|e| format!("bad parameters: {e}"))?;
    let max_memory = config::parse_or("max_hash_memory_kib", DEFAULT_MAX_MEMORY_KIB);
    let max_time = config::parse_or("max_hash_time_cost", DEFAULT_MAX_TIME_COST);
    if params.m_cost() > max_memory || params.t_cost() > max_time || params.p_cost() > MAX_LANES {
        return Err(format!(
            "parameters m={},t={},p={} exceed this plugin's bounds (m<={max_memory}, t<={max_time}, p<={MAX_LANES})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    // `verify_password` takes algorithm, version and parameters from the hash itself.
    match Argon2::default().verify_password(secret, &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(format!("cannot verify: {e}")),
    }
}

/// The kv key counting failures from this client: its IPv4 address or its IPv6 /64.
fn failure_key(client: &Client) -> String {
    let who = match client.address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => client.address.chars().take(64).collect(),
    };
    format!("fail:{who}")
}

/// Failure counting: `None` when turned off (`max_failures = 0`).
struct Throttle {
    key: String,
    max: i64,
    window: u64,
}

impl Throttle {
    fn new(client: &Client) -> Option<Throttle> {
        let max = config::parse_or("max_failures", DEFAULT_MAX_FAILURES);
        (max > 0).then(|| Throttle {
            key: failure_key(client),
            max,
            window: config::parse_or("failure_window", DEFAULT_FAILURE_WINDOW).max(1),
        })
    }

    fn locked(&self) -> bool {
        kv::get(&self.key)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|failures| failures >= self.max)
    }

    fn failed(&self) {
        // A full kv (quota) only means failures stop being counted; the login is refused anyway.
        let _ = kv::increment(&self.key, 1, Some(self.window));
    }
}

impl Authenticator for AuthPasswd {
    fn authenticate(
        mechanism: String,
        identity: String,
        secret: String,
        client: Client,
    ) -> Result<String, Denial> {
        if !mechanism.eq_ignore_ascii_case("PLAIN") && !mechanism.eq_ignore_ascii_case("LOGIN") {
            return Err(Denial::NotMine);
        }
        let users = read_users()?;
        let entry = find(&users, &identity);
        if entry.is_none() && foreign(&identity) {
            return Err(Denial::NotMine);
        }
        let throttle = Throttle::new(&client);
        if throttle.as_ref().is_some_and(Throttle::locked) {
            return Err(Denial::TemporaryFailure("too many failed logins".into()));
        }
        let good = match &entry {
            _ if secret.is_empty() || secret.len() > MAX_SECRET => false,
            Some(entry) => verify(entry.hash, secret.as_bytes()).map_err(|why| {
                Denial::TemporaryFailure(format!(
                    "users file line {} ({}): {why}",
                    entry.line, entry.address
                ))
            })?,
            None => {
                // Same work as a wrong password, so timing does not tell who has an account.
                let _ = verify(DUMMY_HASH, secret.as_bytes());
                false
            }
        };
        match entry {
            Some(entry) if good => {
                if entry.disabled {
                    Err(Denial::Disabled("account disabled".into()))
                } else {
                    Ok(entry.address.to_owned())
                }
            }
            _ => {
                if let Some(t) = &throttle {
                    t.failed();
                }
                Err(Denial::InvalidCredentials)
            }
        }
    }

    fn account_exists(account: String) -> bool {
        read_users()
            .ok()
            .and_then(|users| find(&users, &account).map(|e| !e.disabled))
            .unwrap_or(false)
    }
}

wasmail_plugin_sdk::export!(AuthPasswd: Authenticator);
