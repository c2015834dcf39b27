//! One type for a client connection, plain or TLS, so a protocol driver is written once.
//!
//! ```text
//!   TcpStream ──Stream::Plain──▶ driver ──STARTTLS / STLS──▶ upgrade() ──▶ Stream::Tls
//!   TcpStream ──accept_tls() (465/993/995, before the driver runs)──────▶ Stream::Tls
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use wasmail_types::TlsInfo;

use super::tls::tls_info;

/// A client connection, plain or TLS, as one `AsyncRead + AsyncWrite` type.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and most of a server's streams start plain.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Implicit TLS (465/993/995): the handshake, within `timeout` (then `ErrorKind::TimedOut`).
    pub async fn accept_tls(
        tcp: TcpStream,
        acceptor: &TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<(Stream, TlsInfo)> {
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake not finished within {timeout:?}"),
                )
            })??;
        let info = tls_info(tls.get_ref().1);
        Ok((Stream::Tls(Box::new(tls)), info))
    }

    /// STARTTLS / STLS: the caller has already flushed its plaintext "ready" reply and dropped
    /// every byte it had buffered (anything a client sent before the handshake must not be read
    /// as if it came over TLS); this performs the handshake on the same socket. An error of kind
    /// `InvalidInput` if the stream is already TLS.
    pub async fn upgrade(
        self,
        acceptor: &TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<(Stream, TlsInfo)> {
        match self {
            Stream::Plain(tcp) => Stream::accept_tls(tcp, acceptor, timeout).await,
            Stream::Tls(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the connection is already using TLS",
            )),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The TCP socket underneath (addresses, socket options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    /// Plain: FIN. TLS: close_notify, then FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
