//! What every protocol driver shares: the socket side (read with an idle timeout and the
//! shutdown signal, write with the same timeout, upgrade to TLS in place for STARTTLS/STLS, one
//! `turn` = flush the session's replies then feed it input) and moving blocking work (plugins,
//! the store) off the async runtime.
//!
//! The drivers (SMTP, IMAP, POP3) are each a loop of `session.next()` over a [`Wire`]; what is
//! the same for all of them lives here, once.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use wasmail_types::{ClientInfo, TlsInfo};

use crate::net::{Connection, ConnectionPermit, Stream, TlsManager};

/// Bytes read per call: also the most a session is fed at once.
const READ_SIZE: usize = 64 * 1024;
/// Bytes read per call on a TLS connection: one TLS record's plaintext at most.
const TLS_READ_SIZE: usize = 16 * 1024;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a read produced.
#[derive(Debug)]
pub enum Input<'a> {
    Data(&'a [u8]),
    /// The client closed its side.
    Closed,
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    /// The server is shutting down (only reported while a shutdown token is passed).
    Shutdown,
    Failed(io::Error),
}

/// A sans-I/O protocol session as the socket side sees it.
pub trait Dialogue {
    fn feed(&mut self, bytes: &[u8]);
    fn has_output(&self) -> bool;
    fn take_output(&mut self) -> Vec<u8>;
    /// The client was just asked for data it sends without waiting for an answer (an IMAP
    /// literal after `+`): acknowledge its segments at once rather than delay the ACK for a
    /// reply, so a client whose Nagle algorithm holds back the literal's last bytes is not
    /// stalled (~40 ms per APPEND otherwise).
    fn expects_data(&self) -> bool {
        false
    }
}

/// Every protocol session offers the same three calls to the socket side.
macro_rules! dialogue {
    ($($session:ty),*) => {$(
        impl Dialogue for $session {
            fn feed(&mut self, bytes: &[u8]) {
                <$session>::feed(self, bytes);
            }
            fn has_output(&self) -> bool {
                <$session>::has_output(self)
            }
            fn take_output(&mut self) -> Vec<u8> {
                <$session>::take_output(self)
            }
        }
    )*};
}
dialogue!(wasmail_proto::smtp::Session, wasmail_proto::pop3::Session);

impl Dialogue for wasmail_proto::imap::Session {
    fn feed(&mut self, bytes: &[u8]) {
        self.feed(bytes);
    }
    fn has_output(&self) -> bool {
        self.has_output()
    }
    fn take_output(&mut self) -> Vec<u8> {
        self.take_output()
    }
    fn expects_data(&self) -> bool {
        self.expects_literal()
    }
}

/// What one turn of the socket (flush the session's output, wait for input) came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Input was fed to the session.
    Fed,
    /// The connection is gone (closed by the client, or a read/write failed): stop.
    Gone,
    IdleTimeout,
    /// The server is shutting down.
    Shutdown,
}

/// One connection's socket.
#[derive(Debug)]
pub struct Wire {
    stream: Option<Stream>,
    /// Allocated for a read and freed once its bytes are fed: a connection waiting for its
    /// client (IMAP IDLE, or between commands) holds no read buffer.
    buf: Vec<u8>,
    idle: Duration,
    /// The connection's slot in the limiter, held as long as the socket.
    _permit: Option<ConnectionPermit>,
}

impl Wire {
    pub fn new(stream: Stream, idle: Duration) -> Wire {
        Wire {
            stream: Some(stream),
            buf: Vec::new(),
            idle,
            _permit: None,
        }
    }

    /// Takes over an accepted connection: its socket (and limiter slot), who is on the other
    /// end as far as the connection tells (address, implicit TLS), and the shutdown signal.
    pub fn open(conn: Connection, idle: Duration) -> (Wire, ClientInfo, CancellationToken) {
        let Connection {
            stream,
            peer,
            local,
            tls,
            shutdown,
            permit,
            ..
        } = conn;
        let mut client = ClientInfo::new(peer, local);
        client.tls = tls;
        let wire = Wire {
            _permit: Some(permit),
            ..Wire::new(stream, idle)
        };
        (wire, client, shutdown)
    }

    /// Waits for bytes, at most the idle timeout; returns early on shutdown if `shutdown` is given.
    pub async fn read(&mut self, shutdown: Option<&CancellationToken>) -> Input<'_> {
        let Some(stream) = self.stream.as_mut() else {
            return Input::Closed;
        };
        let buf = &mut self.buf;
        let read = async {
            // A plain socket is waited on without a buffer. A TLS one may hold decrypted bytes
            // the socket no longer signals, so it is read at once (into a record-sized buffer).
            let size = if stream.is_tls() {
                TLS_READ_SIZE
            } else {
                stream.tcp().readable().await?;
                READ_SIZE
            };
            buf.resize(size, 0);
            stream.read(buf).await
        };
        let read = tokio::time::timeout(self.idle, read);
        let result = match shutdown {
            Some(token) => tokio::select! {
                r = read => r,
                () = token.cancelled() => return Input::Shutdown,
            },
            None => read.await,
        };
        match result {
            Err(_) => Input::IdleTimeout,
            Ok(Ok(0)) => Input::Closed,
            Ok(Ok(n)) => Input::Data(&self.buf[..n]),
            Ok(Err(e)) => Input::Failed(e),
        }
    }

    /// Leaves TCP's delayed-ACK mode until the next reply (see [`Dialogue::expects_data`]).
    fn quick_ack(&self) {
        if let Some(stream) = self.stream.as_ref() {
            #[cfg(target_os = "linux")]
            let _ = socket2::SockRef::from(stream.tcp()).set_tcp_quickack(true);
            #[cfg(not(target_os = "linux"))]
            let _ = stream;
        }
    }

    /// Frees the read buffer (its bytes have been fed).
    fn release_buffer(&mut self) {
        self.buf = Vec::new();
    }

    /// Writes what the session has queued, then waits for input and feeds it to the session.
    /// This is the flush point of pipelining: replies go out when the session needs more input.
    pub async fn turn(
        &mut self,
        session: &mut impl Dialogue,
        shutdown: Option<&CancellationToken>,
    ) -> Turn {
        if self.flush(session).await.is_err() {
            return Turn::Gone;
        }
        if session.expects_data() {
            self.quick_ack();
        }
        let input = self.read(shutdown).await;
        let turn = deliver(input, session);
        self.release_buffer();
        turn
    }

    /// [`Wire::turn`], or `None` as soon as `wake` completes with no input yet (IMAP IDLE: news
    /// from the mailbox goes out without waiting for the client). Reads are cancel-safe, so
    /// no input is lost when `wake` wins.
    pub async fn turn_until(
        &mut self,
        session: &mut impl Dialogue,
        shutdown: Option<&CancellationToken>,
        wake: impl std::future::Future<Output = ()>,
    ) -> Option<Turn> {
        if self.flush(session).await.is_err() {
            return Some(Turn::Gone);
        }
        let turn = tokio::select! {
            input = self.read(shutdown) => Some(deliver(input, session)),
            () = wake => None,
        };
        self.release_buffer();
        turn
    }

    /// Writes what the session has queued.
    pub async fn flush(&mut self, session: &mut impl Dialogue) -> io::Result<()> {
        if session.has_output() {
            let out = session.take_output();
            if let Err(e) = self.write(&out).await {
                tracing::debug!(error = %e, "write failed");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes everything, or fails if the client does not take it within the idle timeout.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        tokio::time::timeout(self.idle, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"))?
    }

    /// The TLS handshake on this connection (the caller has flushed its "go ahead" reply, and the
    /// session has dropped whatever plaintext it had buffered).
    pub async fn start_tls(&mut self, tls: &TlsManager) -> io::Result<TlsInfo> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let (stream, info) = stream.upgrade(&tls.acceptor(), HANDSHAKE_TIMEOUT).await?;
        self.stream = Some(stream);
        Ok(info)
    }

    /// Closes the connection (TLS close_notify, then FIN).
    pub async fn close(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.shutdown()).await;
        }
    }
}

/// Feeds what a read produced to the session, or says why there is nothing to feed.
fn deliver(input: Input<'_>, session: &mut impl Dialogue) -> Turn {
    match input {
        Input::Data(bytes) => {
            session.feed(bytes);
            Turn::Fed
        }
        Input::Closed => {
            tracing::debug!("client closed the connection");
            Turn::Gone
        }
        Input::Failed(e) => {
            tracing::debug!(error = %e, "read failed");
            Turn::Gone
        }
        Input::IdleTimeout => {
            tracing::info!("idle timeout");
            Turn::IdleTimeout
        }
        Input::Shutdown => Turn::Shutdown,
    }
}

/// Runs `f` on the blocking pool (plugins, password hashing, the store's fsyncs) within the
/// caller's tracing span, so what it logs is attributed to the session; `None` if it panicked
/// (a bug, logged; the session answers with a temporary failure and carries on).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(f)).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "policy or store task failed");
            None
        }
    }
}
