//! APPEND (RFC 3501 6.3.11, RFC 4315 APPENDUID): the message streams from the session's
//! [`Event::AppendData`](wasmail_proto::imap::Event) chunks through a bounded channel into the
//! store, which writes it to its own temporary file on a blocking thread. The message is never
//! held whole in memory; if the client goes away (or the command turns out malformed) before
//! the end, the reader fails and the store keeps nothing.

use std::io::{self, Read};
use std::sync::Arc;

use tokio::sync::mpsc;
use wasmail_types::mail::{Flags, InternalDate, Uid, UidValidity};
use wasmail_types::{Mailbox, StoreResult};

/// Chunks in flight between the session and the store: with 64 KiB chunks, at most 512 KiB
/// of a message waits in memory.
const CHANNEL_DEPTH: usize = 8;

enum Chunk {
    Data(Vec<u8>),
    /// The message is complete: the reader reports end of file.
    End,
}

/// An APPEND whose message is being written to the store.
#[derive(Debug)]
pub(super) struct Upload {
    sender: mpsc::Sender<Chunk>,
    writer: tokio::task::JoinHandle<StoreResult<(UidValidity, Uid)>>,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chunk::Data(d) => write!(f, "Data({})", d.len()),
            Chunk::End => f.write_str("End"),
        }
    }
}

impl Upload {
    /// Starts the store's append on a blocking thread; it reads what [`Upload::send`] sends.
    pub(super) fn start(
        mailbox: Arc<dyn Mailbox>,
        flags: Flags,
        date: Option<InternalDate>,
    ) -> Upload {
        let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
        let span = tracing::Span::current();
        let writer = tokio::task::spawn_blocking(move || {
            let _in_span = span.enter();
            let mut reader = ChannelReader {
                receiver,
                chunk: Vec::new(),
                at: 0,
            };
            mailbox.append(&mut reader, &flags, date)
        });
        Upload { sender, writer }
    }

    /// Passes the next octets on (waits while the store is behind: back-pressure).
    pub(super) async fn send(&mut self, chunk: Vec<u8>) {
        // A send fails only if the writer already gave up; `finish` reports its error.
        let _ = self.sender.send(Chunk::Data(chunk)).await;
    }

    /// The message is complete: waits for the store to make it durable.
    pub(super) async fn finish(self) -> StoreResult<(UidValidity, Uid)> {
        let _ = self.sender.send(Chunk::End).await;
        drop(self.sender);
        match self.writer.await {
            Ok(result) => result,
            Err(e) => Err(wasmail_types::StoreError::Io {
                op: "append",
                source: io::Error::other(e.to_string()),
            }),
        }
    }

    /// The message will not be completed: the store discards what it wrote.
    pub(super) async fn abort(self) {
        drop(self.sender);
        let _ = self.writer.await;
    }
}

/// The store's side of the channel: a `Read` that ends at [`Chunk::End`] and fails if the
/// sender goes away first.
struct ChannelReader {
    receiver: mpsc::Receiver<Chunk>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.receiver.blocking_recv() {
                Some(Chunk::Data(data)) => {
                    self.chunk = data;
                    self.at = 0;
                }
                Some(Chunk::End) => return Ok(0),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "APPEND ended before its message was complete",
                    ));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
