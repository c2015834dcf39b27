use std::net::SocketAddr;

use crate::{Address, ReversePath};

/// What the TLS layer established for a connection, as shown in `Received:` and to plugins.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`
    pub protocol: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`
    pub cipher: String,
    /// The SNI name the client asked for, if any.
    pub server_name: Option<String>,
}

/// Who is on the other end of a session. Fixed at connect except `helo`, `tls` and
/// `authenticated`, which the session fills in as the client provides them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ClientInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub helo: Option<String>,
    pub tls: Option<TlsInfo>,
    /// The account that authenticated on this session (SMTP AUTH, IMAP LOGIN, ...).
    pub authenticated: Option<String>,
}

impl ClientInfo {
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        ClientInfo {
            peer,
            local,
            helo: None,
            tls: None,
            authenticated: None,
        }
    }

    /// Loopback peers may use plaintext authentication by default: nothing crosses a network.
    pub fn is_loopback(&self) -> bool {
        self.peer.ip().is_loopback()
    }
}

/// One SMTP transaction's envelope: who sends, to whom, from where.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Envelope {
    pub mail_from: ReversePath,
    pub rcpt_to: Vec<Address>,
    pub client: ClientInfo,
}
