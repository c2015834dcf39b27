//! Listening sockets and the accept loop every protocol shares.
//!
//! ```text
//!   bind(addrs) ─▶ std TcpListener (SO_REUSEADDR; IPv6 sockets V6ONLY)
//!                     │ tokio::net::TcpListener::from_std
//!                     ▼
//!   serve_listener: accept ─▶ limiter.try_acquire(ip) ── refused ─▶ refusal bytes, FIN, close
//!                     │               │ permit
//!                     │               ▼
//!                     │      tracker.spawn( session span {id, service, peer}:
//!                     │          [TLS handshake within timeout; failure: debug log, close]
//!                     │          ─▶ Handler::handle(Connection) ─▶ "close" log with duration )
//!                     ▼
//!               shutdown cancelled ─▶ stop accepting, return (sessions finish on the tracker)
//! ```
//!
//! Who owns what: the caller owns the listener, the tracker and the shutdown token (the
//! mini-redis shape), so tests bind `127.0.0.1:0` and an embedder decides when to stop. After
//! `serve_listener` returns, the caller closes the tracker and waits for it, with whatever grace
//! period it likes; each `Connection::shutdown` is a child of the token, so handlers see the
//! cancellation and finish what is in progress.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wasmail_types::TlsInfo;

use super::limits::{ConnectionLimiter, ConnectionPermit, LimitHit};
use super::stream::Stream;
use super::tls::TlsManager;

/// Pending connections the kernel queues per listener.
const BACKLOG: i32 = 1024;
/// Pause after an accept error such as EMFILE, so a full descriptor table does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long a refused client gets to read its refusal before the socket is closed.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Refusals being written at once per listener; beyond this, refused clients are closed at once.
const MAX_PENDING_REFUSALS: usize = 64;

/// Why a listen address could not be bound. Every variant names the address.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// EACCES: usually a privileged port.
    #[error("cannot listen on {address}: permission denied{hint}", hint = privileged_hint(*address))]
    PermissionDenied {
        address: SocketAddr,
        source: io::Error,
    },
    /// EADDRINUSE: another server (or another wasmail) listens there.
    #[error("cannot listen on {address}: address in use (another server is listening there)")]
    AddressInUse {
        address: SocketAddr,
        source: io::Error,
    },
    /// EADDRNOTAVAIL: the IP address is not one of this host's.
    #[error("cannot listen on {address}: address not available (not an address of this host)")]
    AddressNotAvailable {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("cannot listen on {address}: {source}")]
    Other {
        address: SocketAddr,
        source: io::Error,
    },
}

fn privileged_hint(address: SocketAddr) -> &'static str {
    if address.port() < 1024 {
        ": ports below 1024 need root or CAP_NET_BIND_SERVICE"
    } else {
        ""
    }
}

impl BindError {
    fn new(address: SocketAddr, source: io::Error) -> Self {
        match source.kind() {
            io::ErrorKind::PermissionDenied => BindError::PermissionDenied { address, source },
            io::ErrorKind::AddrInUse => BindError::AddressInUse { address, source },
            io::ErrorKind::AddrNotAvailable => BindError::AddressNotAvailable { address, source },
            _ => BindError::Other { address, source },
        }
    }

    /// The address that could not be bound.
    pub fn address(&self) -> SocketAddr {
        match self {
            BindError::PermissionDenied { address, .. }
            | BindError::AddressInUse { address, .. }
            | BindError::AddressNotAvailable { address, .. }
            | BindError::Other { address, .. } => *address,
        }
    }
}

/// Binds every address (SO_REUSEADDR, so a restart does not wait for TIME_WAIT; IPv6 sockets
/// IPV6_V6ONLY, so `[::]:25` can sit beside `0.0.0.0:25`). The listeners are non-blocking, ready
/// for `tokio::net::TcpListener::from_std`. On error, the ones already bound are closed.
pub fn bind(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, BindError> {
    addrs
        .iter()
        .map(|&address| bind_one(address).map_err(|source| BindError::new(address, source)))
        .collect()
}

fn bind_one(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// One accepted client, handed to a protocol's [`Handler`].
#[derive(Debug)]
pub struct Connection {
    pub stream: Stream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Some when the listener is implicit TLS (handshake done before the handler runs).
    pub tls: Option<TlsInfo>,
    /// Unique per process, for logs ("session id").
    pub id: u64,
    /// Cancelled when the server shuts down: the handler finishes what is in progress and closes.
    pub shutdown: CancellationToken,
    /// This connection's slot in the limiter; released when the connection is dropped.
    pub permit: ConnectionPermit,
}

/// A protocol (SMTP, IMAP, POP3) as the accept loop sees it.
pub trait Handler: Send + Sync + 'static {
    /// "smtp", "submission", "imaps", ... for logs.
    fn service(&self) -> &str;
    /// Bytes sent to a client refused by a limit before closing ("421 4.7.0 <host> Too many
    /// connections from your address\r\n", "* BYE ...", "-ERR [SYS/TEMP] ..."). Only plaintext
    /// listeners send them; see [`serve_listener`].
    fn refusal(&self, hit: LimitHit) -> Vec<u8>;
    /// Runs one session to its end. The permit in `conn` is held until the connection is dropped.
    fn handle(self: Arc<Self>, conn: Connection) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// The accept loop of one listener: accept → limiter (refused: write the handler's refusal,
/// close) → TLS handshake within the timeout if `tls` is Some (failure: logged at debug, closed)
/// → the handler, spawned on `tracker` inside a span `session{id, service, peer}` that logs one
/// info line at connect and one at close with the duration.
///
/// Returns as soon as `shutdown` is cancelled, dropping (closing) the listener; sessions already
/// running go on until they finish, tracked by `tracker`. Accept errors (EMFILE, ENFILE...) are
/// logged and retried after a short pause, never fatal.
///
/// A client refused on an implicit-TLS listener is closed without the refusal bytes: a TLS
/// client cannot read plaintext, and a handshake would spend the CPU the limit exists to save.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    handler: Arc<dyn Handler>,
    tls: Option<(TlsManager, Duration)>,
    limiter: ConnectionLimiter,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let service = handler.service().to_owned();
    let listen_address = listener.local_addr().ok();
    // The embedder announces its listeners; this is the accept loop's own view, for debugging.
    tracing::debug!(
        service,
        address = ?listen_address,
        tls = tls.is_some(),
        "accept loop started"
    );
    let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) if is_per_connection(&error) => {
                tracing::debug!(service, %error, "accept: connection gone before it was accepted");
                continue;
            }
            Err(error) => {
                tracing::warn!(service, %error, "accept failed; retrying shortly");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let permit = match limiter.try_acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(hit) => {
                tracing::info!(service, %peer, limit = ?hit, "connection refused: limit reached");
                if tls.is_none() {
                    refuse(tcp, handler.refusal(hit), &refusals);
                }
                continue;
            }
        };
        // Replies are written whole; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok().or(listen_address).unwrap_or(peer);
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        // `account` is recorded by the protocol driver after a successful login, so every later
        // line of the session names it.
        let span = tracing::info_span!(
            "session",
            id,
            service = %service,
            peer = %peer,
            account = tracing::field::Empty
        );
        let session = Session {
            handler: Arc::clone(&handler),
            tcp,
            peer,
            local,
            id,
            tls: tls.clone(),
            shutdown: shutdown.child_token(),
            permit,
        };
        tracker.spawn(session.run().instrument(span));
    }
    tracing::debug!(service, address = ?listen_address, "accept loop stopped");
}

/// Errors about one connection that died in the queue, not about the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Writes the refusal, sends FIN, and reads until the client closes (or `REFUSAL_TIME` passes):
/// closing with unread input would send a RST, which can destroy the refusal before the client
/// reads it.
fn refuse(tcp: TcpStream, refusal: Vec<u8>, refusals: &Arc<Semaphore>) {
    let Ok(slot) = Arc::clone(refusals).try_acquire_owned() else {
        return; // too many refusals in flight: just close
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut tcp = tcp;
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            tcp.write_all(&refusal).await?;
            tcp.shutdown().await?;
            let mut sink = [0u8; 512];
            while tcp.read(&mut sink).await? != 0 {}
            Ok::<(), io::Error>(())
        })
        .await;
    });
}

/// Everything one accepted connection's task needs.
struct Session {
    handler: Arc<dyn Handler>,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    tls: Option<(TlsManager, Duration)>,
    shutdown: CancellationToken,
    permit: ConnectionPermit,
}

impl Session {
    async fn run(self) {
        let started = Instant::now();
        tracing::info!(local = %self.local, "connect");
        let (stream, tls) = match &self.tls {
            Some((manager, timeout)) => {
                match Stream::accept_tls(self.tcp, &manager.acceptor(), *timeout).await {
                    Ok((stream, info)) => {
                        tracing::debug!(
                            protocol = %info.protocol,
                            cipher = %info.cipher,
                            sni = ?info.server_name,
                            "TLS established"
                        );
                        (stream, Some(info))
                    }
                    Err(error) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        tracing::info!(
                            duration_ms = millis(started),
                            "close (TLS handshake failed)"
                        );
                        return;
                    }
                }
            }
            None => (Stream::Plain(self.tcp), None),
        };
        let conn = Connection {
            stream,
            peer: self.peer,
            local: self.local,
            tls,
            id: self.id,
            shutdown: self.shutdown,
            permit: self.permit,
        };
        // The handler runs in its own task so that a panic in it is logged as the session's end
        // rather than silently unwinding this one.
        let handled = tokio::spawn(
            self.handler
                .handle(conn)
                .instrument(tracing::Span::current()),
        )
        .await;
        match handled {
            Ok(()) => tracing::info!(duration_ms = millis(started), "close"),
            Err(error) => tracing::error!(
                duration_ms = millis(started),
                %error,
                "close: the session handler failed"
            ),
        }
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_say_what_happened_plainly() {
        let low: SocketAddr = "0.0.0.0:25".parse().expect("addr");
        let error = BindError::new(low, io::ErrorKind::PermissionDenied.into());
        assert_eq!(
            error.to_string(),
            "cannot listen on 0.0.0.0:25: permission denied: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE"
        );
        let high: SocketAddr = "[::1]:3025".parse().expect("addr");
        let error = BindError::new(high, io::ErrorKind::PermissionDenied.into());
        assert_eq!(
            error.to_string(),
            "cannot listen on [::1]:3025: permission denied"
        );
        assert_eq!(error.address(), high);
    }

    #[test]
    fn address_in_use_is_reported_with_the_address() {
        let first = bind(&["127.0.0.1:0".parse().expect("addr")]).expect("bind");
        let taken = first[0].local_addr().expect("local");
        let error = bind(&[taken]).expect_err("second bind");
        assert!(matches!(error, BindError::AddressInUse { .. }), "{error:?}");
        assert!(error.to_string().contains(&taken.to_string()), "{error}");
        assert!(error.to_string().contains("address in use"), "{error}");
    }

    #[test]
    fn ipv6_wildcard_sits_beside_ipv4_wildcard() {
        let v4 = bind(&["0.0.0.0:0".parse().expect("addr")]).expect("bind v4");
        let port = v4[0].local_addr().expect("local").port();
        let v6: SocketAddr = format!("[::]:{port}").parse().expect("addr");
        match bind(&[v6]) {
            Ok(listeners) => assert_eq!(listeners.len(), 1),
            // A host without IPv6 cannot test this.
            Err(
                BindError::Other { source, .. } | BindError::AddressNotAvailable { source, .. },
            ) if source.raw_os_error() == Some(97)
                || source.kind() == io::ErrorKind::AddrNotAvailable => {}
            Err(error) => panic!("[::]:{port} beside 0.0.0.0:{port}: {error}"),
        }
    }
}
