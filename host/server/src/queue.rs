//! The outbound queue: mail accepted for relay waits here, durably, until outbound delivery exists.
//!
//! ```text
//!  <data>/queue/<id>.eml        the message as it will be sent (trace headers first)
//!  <data>/queue/<id>.envelope   TOML: sender, recipients with their DSN parameters, arrival
//!  <data>/queue/tmp/            both are written here, fsync'd, then renamed in: message first,
//!                               envelope last, then the directory is fsync'd
//! ```
//! Invariant: an `.envelope` file exists only beside its complete `.eml`, so a crash leaves at
//! most an `.eml` without an envelope (never acknowledged to the client) or debris in `tmp/`;
//! [`OutboundQueue::open`] removes both.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A queued message's envelope, as stored beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedEnvelope {
    /// The reverse path without brackets; empty for the null sender `<>`.
    pub mail_from: String,
    pub recipients: Vec<QueuedRecipient>,
    /// RFC 3461 RET (`FULL` or `HDRS`).
    pub ret: Option<String>,
    /// RFC 3461 ENVID, decoded.
    pub envid: Option<String>,
    /// Unix seconds.
    pub received_at: i64,
    /// The client that handed it over, and the account it authenticated as.
    pub client: String,
    pub account: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecipient {
    pub address: String,
    /// RFC 3461 NOTIFY, e.g. `FAILURE,DELAY`.
    pub notify: Option<String>,
    /// RFC 3461 ORCPT as `addr-type;address`.
    pub orcpt: Option<String>,
}

/// The queue directory.
#[derive(Debug)]
pub struct OutboundQueue {
    dir: PathBuf,
    fsync: bool,
    counter: AtomicU64,
}

/// A message written to the queue. Dropping it without [`Queued::keep`] removes it again (the
/// transaction failed elsewhere and the client will retry).
#[derive(Debug)]
pub struct Queued<'q> {
    queue: &'q OutboundQueue,
    id: String,
    kept: bool,
}

impl Queued<'_> {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if !self.kept {
            // Envelope first: without it the message file is debris, never a queued message.
            let _ = fs::remove_file(self.queue.envelope_path(&self.id));
            let _ = fs::remove_file(self.queue.message_path(&self.id));
        }
    }
}

impl OutboundQueue {
    /// Opens (creating) `<data_dir>/queue` and removes what a crash left half-written.
    pub fn open(data_dir: &Path, fsync: bool) -> io::Result<OutboundQueue> {
        let dir = data_dir.join("queue");
        fs::create_dir_all(dir.join("tmp"))?;
        for entry in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "eml")
                && !path.with_extension("envelope").exists()
            {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(OutboundQueue {
            dir,
            fsync,
            counter: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn envelope_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.envelope"))
    }

    /// Writes `prefix` + `content` and the envelope; durable when it returns.
    pub fn enqueue(
        &self,
        prefix: &[u8],
        content: &mut dyn Read,
        envelope: &QueuedEnvelope,
    ) -> io::Result<Queued<'_>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let id = format!(
            "{}.{:06}.{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let envelope_text = toml::to_string(envelope).map_err(io::Error::other)?;
        let tmp_message = self.dir.join("tmp").join(format!("{id}.eml"));
        let tmp_envelope = self.dir.join("tmp").join(format!("{id}.envelope"));
        let result = (|| {
            let mut file = File::create_new(&tmp_message)?;
            file.write_all(prefix)?;
            io::copy(content, &mut file)?;
            self.sync(&file)?;
            let mut file = File::create_new(&tmp_envelope)?;
            file.write_all(envelope_text.as_bytes())?;
            self.sync(&file)?;
            fs::rename(&tmp_message, self.message_path(&id))?;
            fs::rename(&tmp_envelope, self.envelope_path(&id))?;
            if self.fsync {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(Queued {
                queue: self,
                id,
                kept: false,
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp_message);
                let _ = fs::remove_file(&tmp_envelope);
                let _ = fs::remove_file(self.envelope_path(&id));
                let _ = fs::remove_file(self.message_path(&id));
                Err(e)
            }
        }
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        if self.fsync { file.sync_data() } else { Ok(()) }
    }

    /// The ids of the messages waiting, oldest first.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".envelope")) {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    pub fn read_envelope(&self, id: &str) -> io::Result<QueuedEnvelope> {
        let text = fs::read_to_string(self.envelope_path(id))?;
        toml::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    pub fn read_message(&self, id: &str) -> io::Result<Vec<u8>> {
        fs::read(self.message_path(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> QueuedEnvelope {
        QueuedEnvelope {
            mail_from: "a@example.org".into(),
            recipients: vec![QueuedRecipient {
                address: "b@example.net".into(),
                notify: Some("FAILURE".into()),
                orcpt: Some("rfc822;b@example.net".into()),
            }],
            ret: Some("HDRS".into()),
            envid: Some("id-1".into()),
            received_at: 1_700_000_000,
            client: "127.0.0.1:1234".into(),
            account: Some("a@example.org".into()),
        }
    }

    #[test]
    fn a_kept_message_is_listed_with_its_envelope_and_a_dropped_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let queue = OutboundQueue::open(dir.path(), true).unwrap();
        let q = queue
            .enqueue(
                b"Received: x\r\n",
                &mut &b"Subject: s\r\n\r\nbody\r\n"[..],
                &envelope(),
            )
            .unwrap();
        let id = q.id().to_owned();
        q.keep();
        let dropped = queue.enqueue(b"", &mut &b"other"[..], &envelope()).unwrap();
        drop(dropped);
        assert_eq!(queue.list().unwrap(), vec![id.clone()]);
        assert_eq!(queue.read_envelope(&id).unwrap(), envelope());
        assert_eq!(
            queue.read_message(&id).unwrap(),
            b"Received: x\r\nSubject: s\r\n\r\nbody\r\n"
        );
        assert_eq!(
            fs::read_dir(queue.dir()).unwrap().count(),
            3,
            "eml, envelope, tmp/"
        );
    }

    #[test]
    fn open_removes_half_written_messages() {
        let dir = tempfile::tempdir().unwrap();
        let queue = OutboundQueue::open(dir.path(), false).unwrap();
        let id = {
            let q = queue.enqueue(b"", &mut &b"m"[..], &envelope()).unwrap();
            let id = q.id().to_owned();
            q.keep();
            id
        };
        fs::write(queue.dir().join("tmp/x.eml"), b"partial").unwrap();
        fs::write(queue.dir().join("orphan.eml"), b"no envelope").unwrap();
        let queue = OutboundQueue::open(dir.path(), false).unwrap();
        assert_eq!(queue.list().unwrap(), vec![id]);
        assert!(!queue.dir().join("orphan.eml").exists());
        assert_eq!(fs::read_dir(queue.dir().join("tmp")).unwrap().count(), 0);
    }
}
