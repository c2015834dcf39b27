//! What protocols derive from a message and want to keep (IMAP: its ENVELOPE and
//! BODYSTRUCTURE), so a later FETCH does not read and parse the message again.
//!
//! One file per mailbox, `wasmail-cache`, append-only records
//! `uid:u32 le, uid_validity:u32 le, len:u32 le, crc32:u32 le, data[len]` (the CRC covers the
//! first three fields and the data). It is a cache, not the index: nothing in it is needed for
//! correctness, so it is written without fsync and read leniently — a record that is torn
//! (crash), fails its CRC or belongs to another UIDVALIDITY ends or is skipped, and the data is
//! computed again. Loaded on first use; rewritten without dead records when they outnumber the
//! live ones.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptions};
use wasmail_types::mail::{Uid, UidValidity};

pub(crate) const CACHE_FILE: &str = "wasmail-cache";
/// Larger values are not kept (a structure that big is rare and cheap to recompute by
/// comparison with its message).
pub(crate) const MAX_RECORD: usize = 64 * 1024;
const HEADER: usize = 16;

#[derive(Default)]
pub(crate) struct Cache {
    /// None until loaded.
    entries: Option<HashMap<Uid, Arc<[u8]>>>,
    file: Option<cap_std::fs::File>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.entries.as_ref().map(HashMap::len))
            .finish()
    }
}

impl Cache {
    /// The data kept for `uid`; `is_live` says whether a UID is still in the mailbox (for
    /// deciding to compact when loading).
    pub(crate) fn get(
        &mut self,
        dir: &Dir,
        validity: UidValidity,
        uid: Uid,
        is_live: impl Fn(Uid) -> bool,
    ) -> Option<Arc<[u8]>> {
        self.load(dir, validity, is_live);
        self.entries.as_ref()?.get(&uid).cloned()
    }

    /// Keeps `data` for `uid` (once: the first value stays).
    pub(crate) fn put(
        &mut self,
        dir: &Dir,
        validity: UidValidity,
        uid: Uid,
        data: &[u8],
        is_live: impl Fn(Uid) -> bool,
    ) {
        if data.len() > MAX_RECORD {
            return;
        }
        self.load(dir, validity, is_live);
        let Some(entries) = self.entries.as_mut() else {
            return;
        };
        if entries.contains_key(&uid) {
            return;
        }
        entries.insert(uid, Arc::from(data));
        if self.file.is_none() {
            self.file = dir
                .open_with(CACHE_FILE, OpenOptions::new().append(true).create(true))
                .ok();
        }
        if let Some(file) = self.file.as_mut() {
            // One write per record: appends from several handles never interleave inside one.
            if let Err(e) = file.write_all(&record(uid, validity, data)) {
                tracing::debug!(error = %e, "cache write failed");
                self.file = None;
            }
        }
    }

    fn load(&mut self, dir: &Dir, validity: UidValidity, is_live: impl Fn(Uid) -> bool) {
        if self.entries.is_some() {
            return;
        }
        let mut bytes = Vec::new();
        if let Ok(mut f) = dir.open(CACHE_FILE) {
            let _ = f.read_to_end(&mut bytes);
        }
        let mut entries = HashMap::new();
        let mut dead = 0usize;
        let mut at = 0;
        while let Some((uid, v, data, next)) = parse(&bytes, at) {
            at = next;
            match (uid, v == validity.get()) {
                (Some(uid), true) if is_live(uid) => {
                    entries.entry(uid).or_insert_with(|| Arc::from(data));
                }
                _ => dead += 1,
            }
        }
        let torn = at < bytes.len();
        if torn || (dead > entries.len() && dead > 64) {
            rewrite(dir, validity, &entries);
        }
        self.entries = Some(entries);
    }
}

fn record(uid: Uid, validity: UidValidity, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + data.len());
    out.extend_from_slice(&uid.get().to_le_bytes());
    out.extend_from_slice(&validity.get().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The record at `at`: (uid, uid_validity, data, offset of the next record); None at the end
/// or at a torn or corrupt record (everything after it is dropped).
fn parse(bytes: &[u8], at: usize) -> Option<(Option<Uid>, u32, &[u8], usize)> {
    let head = bytes.get(at..at + HEADER)?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (uid, validity, len, crc) = (word(0), word(4), word(8) as usize, word(12));
    if len > MAX_RECORD {
        return None;
    }
    let data = bytes.get(at + HEADER..at + HEADER + len)?;
    let mut check = crc32fast::Hasher::new();
    check.update(&head[..12]);
    check.update(data);
    if check.finalize() != crc {
        return None;
    }
    Some((Uid::new(uid), validity, data, at + HEADER + len))
}

/// Replaces the file with the live records (tmp + rename; a crash leaves one or the other).
fn rewrite(dir: &Dir, validity: UidValidity, entries: &HashMap<Uid, Arc<[u8]>>) {
    let tmp = format!("{CACHE_FILE}.new");
    let mut out = Vec::new();
    let mut uids: Vec<&Uid> = entries.keys().collect();
    uids.sort_unstable();
    for uid in uids {
        out.extend(record(*uid, validity, &entries[uid]));
    }
    if dir.write(&tmp, &out).is_ok() {
        let _ = dir.rename(&tmp, dir, CACHE_FILE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(n: u32) -> Uid {
        Uid::new(n).expect("nonzero")
    }

    #[test]
    fn kept_across_loads_torn_tail_and_other_validity_dropped() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).expect("dir");
        let v = UidValidity::new(7).expect("nonzero");
        let mut c = Cache::default();
        c.put(&dir, v, uid(1), b"one", |_| true);
        c.put(&dir, v, uid(2), b"two", |_| true);
        c.put(&dir, v, uid(2), b"second value ignored", |_| true);
        assert_eq!(
            c.get(&dir, v, uid(2), |_| true).as_deref(),
            Some(&b"two"[..])
        );
        // A torn record at the end (a crash mid-write) is dropped, the rest kept.
        let mut bytes = dir.read(CACHE_FILE).expect("file");
        bytes.extend_from_slice(&record(uid(3), v, b"three")[..10]);
        dir.write(CACHE_FILE, &bytes).expect("write");
        let mut again = Cache::default();
        assert_eq!(
            again.get(&dir, v, uid(1), |_| true).as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(again.get(&dir, v, uid(3), |_| true), None);
        // After the rewrite the file holds whole records only.
        let len = dir.read(CACHE_FILE).expect("file").len();
        assert_eq!(len, 2 * HEADER + 6);
        // Another UIDVALIDITY sees nothing; expunged UIDs are not served.
        let other = UidValidity::new(8).expect("nonzero");
        assert_eq!(Cache::default().get(&dir, other, uid(1), |_| true), None);
        assert_eq!(Cache::default().get(&dir, v, uid(1), |u| u != uid(1)), None);
        // A flipped bit ends the file there.
        let mut bytes = dir.read(CACHE_FILE).expect("file");
        bytes[HEADER + 1] ^= 1;
        dir.write(CACHE_FILE, &bytes).expect("write");
        assert_eq!(Cache::default().get(&dir, v, uid(2), |_| true), None);
    }
}
