//! Persistent key-value storage for plugins, one namespace per plugin (greylisting triplets,
//! rate-limit counters).
//!
//! A namespace is a map in memory plus an append-only file `<dir>/<plugin>.kv` of records
//! `op:u8 | expires_ms:u64 | key_len:u16 | key | value_len:u32 | value`. Loading replays it,
//! dropping what has expired; when dead records outweigh live data the file is rewritten. Writes
//! are not fsync'd: losing the last moments of greylist or rate-limit state in a crash is
//! harmless, and fsyncing on every RCPT would be costly.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

pub const MAX_KEY: usize = 256;
pub const MAX_VALUE: usize = 64 * 1024;
const OP_SET: u8 = 1;
const OP_DELETE: u8 = 2;
const NO_EXPIRY: u64 = u64::MAX;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    TooLarge,
    NotANumber,
    Storage(String),
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_ms: u64,
}

#[derive(Debug)]
struct Inner {
    map: HashMap<String, Entry>,
    file: BufWriter<File>,
    live_bytes: usize,
    file_bytes: u64,
}

/// One plugin's namespace.
#[derive(Debug)]
pub struct Namespace {
    path: PathBuf,
    quota: usize,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

fn record(op: u8, expires_ms: u64, key: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(op);
    out.extend_from_slice(&expires_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Parses records until the data ends or stops making sense (a torn tail is ignored).
fn replay(bytes: &[u8], now: u64, map: &mut HashMap<String, Entry>) {
    let mut pos = 0;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = bytes.get(*pos..*pos + n)?;
        *pos += n;
        Some(s)
    };
    loop {
        let start = pos;
        let parsed = (|| {
            let op = take(&mut pos, 1)?[0];
            let expires = u64::from_le_bytes(take(&mut pos, 8)?.try_into().ok()?);
            let klen = u16::from_le_bytes(take(&mut pos, 2)?.try_into().ok()?) as usize;
            let key = std::str::from_utf8(take(&mut pos, klen)?).ok()?.to_owned();
            let vlen = u32::from_le_bytes(take(&mut pos, 4)?.try_into().ok()?) as usize;
            if vlen > MAX_VALUE {
                return None;
            }
            let value = take(&mut pos, vlen)?.to_vec();
            Some((op, expires, key, value))
        })();
        match parsed {
            Some((OP_SET, expires_ms, key, value)) => {
                if expires_ms > now {
                    map.insert(key, Entry { value, expires_ms });
                } else {
                    map.remove(&key);
                }
            }
            Some((OP_DELETE, _, key, _)) => {
                map.remove(&key);
            }
            _ => {
                if start < bytes.len() {
                    tracing::warn!(
                        offset = start,
                        "plugin kv file ends in an unreadable record; ignoring the rest"
                    );
                }
                return;
            }
        }
    }
}

impl Namespace {
    /// Opens (creating) the namespace file `<dir>/<name>.kv`. `name` must be a plugin name
    /// (`[A-Za-z0-9_-]`), which the caller has validated.
    pub fn open(
        dir: &Path,
        name: &str,
        quota: usize,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Namespace> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid plugin name for kv",
            ));
        }
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{name}.kv"));
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut map = HashMap::new();
        replay(&bytes, clock.now_millis(), &mut map);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let live_bytes = map.iter().map(|(k, e)| k.len() + e.value.len()).sum();
        let ns = Namespace {
            path,
            quota,
            clock,
            inner: Mutex::new(Inner {
                map,
                file: BufWriter::new(file),
                live_bytes,
                file_bytes: bytes.len() as u64,
            }),
        };
        Ok(ns)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = self.clock.now_millis();
        let inner = self.lock();
        inner
            .map
            .get(key)
            .filter(|e| e.expires_ms > now)
            .map(|e| e.value.clone())
    }

    fn expiry(&self, ttl_seconds: Option<u64>) -> u64 {
        ttl_seconds.map_or(NO_EXPIRY, |t| {
            self.clock
                .now_millis()
                .saturating_add(t.saturating_mul(1000))
        })
    }

    pub fn set(&self, key: &str, value: &[u8], ttl_seconds: Option<u64>) -> Result<(), KvError> {
        let expires_ms = self.expiry(ttl_seconds);
        let mut inner = self.lock();
        self.write(&mut inner, key, value.to_vec(), expires_ms)
    }

    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut inner = self.lock();
        if let Some(old) = inner.map.remove(key) {
            inner.live_bytes -= key.len() + old.value.len();
            let mut buf = Vec::new();
            record(OP_DELETE, 0, key, &[], &mut buf);
            self.append(&mut inner, &buf)?;
        }
        Ok(())
    }

    /// Adds `delta` to the decimal number at `key` (absent or expired: 0). A new key gets
    /// `ttl_seconds`; an existing one keeps its expiry.
    pub fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl_seconds: Option<u64>,
    ) -> Result<i64, KvError> {
        let now = self.clock.now_millis();
        let mut inner = self.lock();
        let (current, expires_ms) = match inner.map.get(key).filter(|e| e.expires_ms > now) {
            Some(e) => {
                let n = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or(KvError::NotANumber)?;
                (n, e.expires_ms)
            }
            None => (0, self.expiry(ttl_seconds)),
        };
        let new = current.saturating_add(delta);
        self.write(&mut inner, key, new.to_string().into_bytes(), expires_ms)?;
        Ok(new)
    }

    fn write(
        &self,
        inner: &mut Inner,
        key: &str,
        value: Vec<u8>,
        expires_ms: u64,
    ) -> Result<(), KvError> {
        if key.is_empty() || key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(KvError::TooLarge);
        }
        let old = inner.map.get(key).map_or(0, |e| key.len() + e.value.len());
        let new_live = inner.live_bytes - old + key.len() + value.len();
        if new_live > self.quota {
            return Err(KvError::TooLarge);
        }
        let mut buf = Vec::new();
        record(OP_SET, expires_ms, key, &value, &mut buf);
        self.append(inner, &buf)?;
        inner.live_bytes = new_live;
        inner
            .map
            .insert(key.to_owned(), Entry { value, expires_ms });
        Ok(())
    }

    fn append(&self, inner: &mut Inner, buf: &[u8]) -> Result<(), KvError> {
        inner
            .file
            .write_all(buf)
            .and_then(|()| inner.file.flush())
            .map_err(|e| KvError::Storage(e.to_string()))?;
        inner.file_bytes += buf.len() as u64;
        if inner.file_bytes > 1 << 20
            && inner.file_bytes > 4 * inner.live_bytes as u64
            && let Err(e) = self.compact(inner)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "plugin kv compaction failed");
        }
        Ok(())
    }

    /// Rewrites the file with only live, unexpired entries.
    fn compact(&self, inner: &mut Inner) -> io::Result<()> {
        let now = self.clock.now_millis();
        inner.map.retain(|_, e| e.expires_ms > now);
        let mut buf = Vec::new();
        for (k, e) in &inner.map {
            record(OP_SET, e.expires_ms, k, &e.value, &mut buf);
        }
        let tmp = self.path.with_extension("kv.new");
        std::fs::write(&tmp, &buf)?;
        std::fs::rename(&tmp, &self.path)?;
        inner.file = BufWriter::new(OpenOptions::new().append(true).open(&self.path)?);
        inner.file_bytes = buf.len() as u64;
        inner.live_bytes = inner.map.iter().map(|(k, e)| k.len() + e.value.len()).sum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn set_get_ttl_increment_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let ns = Namespace::open(dir.path(), "greylist", 1 << 20, clock.clone()).unwrap();
        ns.set("a", b"1", None).unwrap();
        ns.set("short", b"x", Some(60)).unwrap();
        assert_eq!(ns.increment("n", 5, Some(10)).unwrap(), 5);
        assert_eq!(ns.increment("n", -2, None).unwrap(), 3);
        assert_eq!(ns.increment("a", 1, None).unwrap(), 2);
        ns.set("text", b"abc", None).unwrap();
        assert_eq!(ns.increment("text", 1, None), Err(KvError::NotANumber));
        clock.advance(11_000);
        assert_eq!(ns.get("n"), None, "expired with the key's original TTL");
        assert_eq!(
            ns.increment("n", 1, None).unwrap(),
            1,
            "an expired counter starts over"
        );
        assert_eq!(ns.get("short"), Some(b"x".to_vec()));
        ns.delete("text").unwrap();
        drop(ns);
        let ns = Namespace::open(dir.path(), "greylist", 1 << 20, clock.clone()).unwrap();
        assert_eq!(ns.get("a"), Some(b"2".to_vec()));
        assert_eq!(ns.get("text"), None);
        assert_eq!(ns.get("short"), Some(b"x".to_vec()));
        clock.advance(60_000);
        let ns = Namespace::open(dir.path(), "greylist", 1 << 20, clock).unwrap();
        assert_eq!(ns.get("short"), None);
    }

    #[test]
    fn limits_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let ns = Namespace::open(dir.path(), "p", 100, clock.clone()).unwrap();
        assert_eq!(
            ns.set(&"k".repeat(MAX_KEY + 1), b"", None),
            Err(KvError::TooLarge)
        );
        assert_eq!(ns.set("", b"v", None), Err(KvError::TooLarge));
        assert_eq!(
            ns.set("k", &[0; 101], None),
            Err(KvError::TooLarge),
            "over the plugin's quota"
        );
        ns.set("k", &[0; 90], None).unwrap();
        assert_eq!(ns.set("j", &[0; 20], None), Err(KvError::TooLarge));
        ns.set("k", &[0; 10], None).unwrap();
        ns.set("j", &[0; 20], None).unwrap();
        for bad in ["", "../x", "a/b", "a.b"] {
            assert!(
                Namespace::open(dir.path(), bad, 100, clock.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn compaction_keeps_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let ns = Namespace::open(dir.path(), "c", 1 << 20, clock.clone()).unwrap();
        for i in 0..30_000 {
            ns.increment("hot", 1, None).unwrap();
            if i % 1000 == 0 {
                ns.set(&format!("k{i}"), b"v", None).unwrap();
            }
        }
        let len = std::fs::metadata(dir.path().join("c.kv")).unwrap().len();
        assert!(len < 1 << 20, "compacted: {len}");
        drop(ns);
        let ns = Namespace::open(dir.path(), "c", 1 << 20, clock).unwrap();
        assert_eq!(ns.get("hot"), Some(b"30000".to_vec()));
        assert_eq!(ns.get("k29000"), Some(b"v".to_vec()));
    }
}
