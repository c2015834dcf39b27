//! The network runtime every protocol driver (SMTP, IMAP, POP3) shares: listening sockets,
//! connection limits, TLS (implicit and STARTTLS, certificates chosen by SNI and hot-reloaded),
//! and the accept loop that hands each client to a protocol's [`Handler`].
//!
//! ```text
//!   bind(addrs)                          ConnectionLimiter            TlsManager
//!   std TcpListener ─▶ serve_listener ─▶ try_acquire(ip) ─┬─ refused ─▶ refusal bytes, close
//!   (per service)      (accept loop)     (total, per IP)  │
//!                                                         ▼ permit
//!                                      [implicit TLS: Stream::accept_tls within a timeout]
//!                                                         │
//!                                                         ▼
//!            Connection { stream: Stream (Plain | Tls), peer, local, tls, id, shutdown, permit }
//!                                                         │
//!                                                         ▼
//!                      Handler::handle  (spawned on the TaskTracker, span session{id,service,peer})
//!                        └─ STARTTLS / STLS: Stream::upgrade on the same socket
//! ```
//!
//! Shutdown: cancelling the token stops every accept loop at once; each handler sees its
//! `Connection::shutdown` cancelled and finishes what is in progress; the caller waits on the
//! tracker (with its grace period). A permit lives in the `Connection`, so a slot is released
//! exactly when the connection is dropped.

pub mod limits;
pub mod listen;
pub mod stream;
pub mod tls;

pub use limits::{ConnectionLimiter, ConnectionPermit, LimitHit};
pub use listen::{BindError, Connection, Handler, bind, serve_listener};
pub use stream::Stream;
pub use tls::{TlsError, TlsManager, tls_info};
