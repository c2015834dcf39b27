//! Messages received but not yet delivered, and delivery to several mailboxes at once.

use std::io::{self, Write};
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptions};
use wasmail_types::mail::InternalDate;
use wasmail_types::{
    Delivered, DeliveryTarget, MessageContent, SpoolWriter, SpooledMessage, StoreError, StoreResult,
};

/// A spool file untouched this long belongs to no session.
const STALE_SPOOL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

use crate::mailbox::{FileContent, FsMailbox, Op, Outcome, base_name, write_tmp_in};
use crate::{StoreInner, layout};

pub(crate) struct FsSpoolWriter {
    pub(crate) store: Arc<StoreInner>,
    pub(crate) name: String,
    pub(crate) file: Option<std::fs::File>,
    pub(crate) written: u64,
}

impl FsSpoolWriter {
    pub(crate) fn create(store: Arc<StoreInner>) -> StoreResult<FsSpoolWriter> {
        let name = layout::unique_base(0).trim_end_matches(",S=0").to_owned();
        let file = store
            .spool
            .open_with(
                &name,
                OpenOptions::new().read(true).write(true).create_new(true),
            )
            .map_err(StoreError::io("create spool file"))?
            .into_std();
        Ok(FsSpoolWriter {
            store,
            name,
            file: Some(file),
            written: 0,
        })
    }
}

impl Write for FsSpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("spool writer finished"))?;
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for FsSpoolWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = self.store.spool.remove_file(&self.name);
        }
    }
}

impl SpoolWriter for FsSpoolWriter {
    fn finish(mut self: Box<Self>) -> StoreResult<Box<dyn SpooledMessage>> {
        let file = self
            .file
            .take()
            .ok_or(StoreError::NotPermitted("spool writer finished twice"))?;
        Ok(Box::new(FsSpooled {
            store: self.store.clone(),
            name: std::mem::take(&mut self.name),
            content: FileContent {
                file,
                size: self.written,
            },
        }))
    }
}

/// A spooled message. The spool file need not be durable: nothing has been acknowledged yet.
/// Delivery makes each copy durable before it returns.
pub(crate) struct FsSpooled {
    store: Arc<StoreInner>,
    name: String,
    content: FileContent,
}

impl Drop for FsSpooled {
    fn drop(&mut self) {
        let _ = self.store.spool.remove_file(&self.name);
    }
}

impl MessageContent for FsSpooled {
    fn size(&self) -> u64 {
        self.content.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.content.read_at(offset, buf)
    }
}

struct Reader<'a> {
    spooled: &'a FsSpooled,
    pos: u64,
}

impl io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.spooled.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl SpooledMessage for FsSpooled {
    fn deliver(&self, prefix: &[u8], targets: &[DeliveryTarget]) -> StoreResult<Vec<Delivered>> {
        deliver(
            &self.store,
            prefix,
            &mut || {
                Box::new(Reader {
                    spooled: self,
                    pos: 0,
                })
            },
            targets,
        )
    }
}

/// Writes the message once, hard-links it into every other target's `tmp/`, commits each target
/// mailbox (in parallel: their fsyncs overlap), and on any failure expunges the copies that did
/// land, so the caller can answer 4xx with nothing half-delivered.
pub(crate) fn deliver<'c>(
    store: &StoreInner,
    prefix: &[u8],
    content: &mut dyn FnMut() -> Box<dyn io::Read + 'c>,
    targets: &[DeliveryTarget],
) -> StoreResult<Vec<Delivered>> {
    let mut mailboxes: Vec<Arc<FsMailbox>> = Vec::with_capacity(targets.len());
    for t in targets {
        mailboxes.push(store.account(&t.account)?.open_mailbox(&t.mailbox)?);
    }
    let date = InternalDate::now();
    // Stage a copy in each target's tmp/.
    let mut staged: Vec<(String, u64)> = Vec::with_capacity(targets.len());
    let result = (|| {
        for mailbox in &mailboxes {
            let linked = staged.first().and_then(|(first, size)| {
                let name = layout::unique_base(0).trim_end_matches(",S=0").to_owned();
                mailboxes[0]
                    .dir()
                    .hard_link(format!("tmp/{first}"), mailbox.dir(), format!("tmp/{name}"))
                    .ok()
                    .map(|()| (name, *size))
            });
            let copy = match linked {
                Some(c) => c,
                None => write_tmp_in(mailbox.dir(), prefix, &mut content(), store.config)?,
            };
            staged.push(copy);
        }
        Ok::<(), StoreError>(())
    })();
    if let Err(e) = result {
        remove_staged(&mailboxes, &staged);
        return Err(e);
    }
    // Hard links made after the first file was fsynced need only their directory entries made
    // durable, which the commit does.
    let outcomes: Vec<StoreResult<Outcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = mailboxes
            .iter()
            .zip(&staged)
            .zip(targets)
            .map(|((mailbox, (tmp, size)), target)| {
                let op = Op::Append {
                    tmp: tmp.clone(),
                    base: base_name(tmp, *size),
                    size: *size,
                    flags: target.flags.clone(),
                    internal_date: date,
                };
                scope.spawn(move || {
                    mailbox
                        .commit(vec![op])
                        .pop()
                        .unwrap_or(Err(StoreError::NotPermitted("empty commit")))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(StoreError::NotPermitted("delivery thread panicked")))
            })
            .collect()
    });
    let mut delivered = Vec::new();
    let mut failure = None;
    for ((outcome, mailbox), target) in outcomes.into_iter().zip(&mailboxes).zip(targets) {
        match outcome {
            Ok(Outcome::Appended(uid)) => delivered.push((
                mailbox.clone(),
                Delivered {
                    account: target.account.clone(),
                    mailbox: target.mailbox.clone(),
                    uid_validity: mailbox.uid_validity()?,
                    uid,
                },
            )),
            Ok(_) => {}
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        for (mailbox, d) in &delivered {
            for r in mailbox.commit(vec![Op::Expunge {
                only: Some(vec![d.uid]),
                require_deleted: false,
            }]) {
                if let Err(undo) = r {
                    tracing::error!(account = %d.account, uid = %d.uid, error = %undo, "could not take back a partial delivery");
                }
            }
        }
        return Err(e);
    }
    Ok(delivered.into_iter().map(|(_, d)| d).collect())
}

fn remove_staged(mailboxes: &[Arc<FsMailbox>], staged: &[(String, u64)]) {
    for (m, (name, _)) in mailboxes.iter().zip(staged) {
        let _ = m.dir().remove_file(format!("tmp/{name}"));
    }
}

/// The spool directory of a data dir, created if needed.
pub(crate) fn open_spool(data: &Dir) -> StoreResult<Dir> {
    match data.create_dir("spool") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(StoreError::Io {
                op: "create spool",
                source: e,
            });
        }
    }
    let spool = data
        .open_dir("spool")
        .map_err(StoreError::io("open spool"))?;
    // Spool files were never acknowledged (delivery acknowledges). Old ones are a crashed run's;
    // young ones may belong to another process sharing the data dir (`wasmail import`).
    let now = std::time::SystemTime::now();
    if let Ok(entries) = spool.entries() {
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| now.duration_since(m.into_std()).ok())
                .is_some_and(|age| age > STALE_SPOOL);
            if stale {
                let _ = e.remove_file();
            }
        }
    }
    Ok(spool)
}
