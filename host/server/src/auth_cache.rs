//! Successful logins remembered for a short time, so a client that logs in every minute (POP3
//! polling, IMAP reconnects, SMTP submission) does not pay for a password hash each time.
//!
//! Invariants:
//! - Only successes are cached. A wrong password always reaches the authenticators, so their
//!   failure counting (brute-force delays) sees every attempt.
//! - Neither identity nor password is kept: an entry's key is SHA-256 over a per-process random
//!   salt, the identity (lowercase) and the password; its value is the account and its expiry.
//! - An entry is valid only for the plugin set it was made under (a reload starts afresh), and
//!   only until `ttl`; `flush` (sent by `wasmail user passwd|remove` through the control socket)
//!   forgets everything at once, so a changed password takes effect immediately.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmail_types::Secret;

/// More entries than this and the cache starts over (it is a cache: the cost is a hash each).
const MAX_ENTRIES: usize = 100_000;

/// The cache of one server.
pub struct AuthCache {
    ttl: Duration,
    salt: Option<[u8; 32]>,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

struct Entry {
    account: String,
    generation: u64,
    expires: Instant,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AuthCache {
    /// A cache keeping successes for `ttl` (zero: off). Off as well if the system cannot give
    /// a random salt.
    pub fn new(ttl: Duration) -> AuthCache {
        let salt = (!ttl.is_zero()).then(random_salt).flatten();
        if !ttl.is_zero() && salt.is_none() {
            tracing::warn!("no random salt from /dev/urandom: login cache off");
        }
        AuthCache {
            ttl,
            salt,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, identity: &str, secret: &Secret<String>) -> Option<[u8; 32]> {
        let salt = self.salt?;
        let mut hasher = Sha256::new();
        hasher.update(salt);
        hasher.update(identity.to_lowercase().as_bytes());
        hasher.update([0]);
        hasher.update(secret.expose().as_bytes());
        Some(hasher.finalize().into())
    }

    /// The account these credentials logged in as, if they did recently under this plugin set.
    pub fn get(&self, identity: &str, secret: &Secret<String>, generation: u64) -> Option<String> {
        let key = self.key(identity, secret)?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key) {
            Some(e) if e.generation == generation && e.expires > Instant::now() => {
                Some(e.account.clone())
            }
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful login.
    pub fn put(&self, identity: &str, secret: &Secret<String>, generation: u64, account: &str) {
        let Some(key) = self.key(identity, secret) else {
            return;
        };
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                account: account.to_owned(),
                generation,
                expires: now + self.ttl,
            },
        );
    }

    /// Forgets every login (a password changed, an account was removed).
    pub fn flush(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

fn random_salt() -> Option<[u8; 32]> {
    use std::io::Read;
    let mut salt = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .ok()?;
    Some(salt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret<String> {
        Secret::new(s.to_owned())
    }

    #[test]
    fn remembers_successes_per_password_generation_and_time() {
        let cache = AuthCache::new(Duration::from_millis(200));
        assert_eq!(cache.get("Alice@x", &secret("pw"), 0), None);
        cache.put("Alice@x", &secret("pw"), 0, "alice@x");
        assert_eq!(
            cache.get("alice@X", &secret("pw"), 0).as_deref(),
            Some("alice@x")
        );
        assert_eq!(
            cache.get("alice@x", &secret("other"), 0),
            None,
            "another password"
        );
        assert_eq!(
            cache.get("bob@x", &secret("pw"), 0),
            None,
            "another identity"
        );
        assert_eq!(
            cache.get("alice@x", &secret("pw"), 1),
            None,
            "after a reload"
        );
        cache.put("alice@x", &secret("pw"), 1, "alice@x");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get("alice@x", &secret("pw"), 1), None, "expired");
        cache.put("alice@x", &secret("pw"), 1, "alice@x");
        cache.flush();
        assert_eq!(cache.get("alice@x", &secret("pw"), 1), None, "flushed");
    }

    #[test]
    fn off_when_the_ttl_is_zero() {
        let cache = AuthCache::new(Duration::ZERO);
        cache.put("alice@x", &secret("pw"), 0, "alice@x");
        assert_eq!(cache.get("alice@x", &secret("pw"), 0), None);
    }
}
