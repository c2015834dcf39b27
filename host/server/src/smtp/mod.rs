//! SMTP: the three services (inbound, submission, submissions) over one driver.
//!
//! ```text
//!  net::serve_listener ──Connection──► SmtpService::handle ──► driver::run
//!     driver: Wire (socket) ⇄ wasmail_proto::smtp::Session (sans I/O)
//!             decision events ──► transaction.rs on a blocking thread (policy, spool, delivery)
//! ```
//!
//! | service | role | TLS | AUTH |
//! |---|---|---|---|
//! | `smtp` (25) | mail from other servers, for local domains | STARTTLS offered | not offered |
//! | `submission` (587) | mail from users' clients, local or relayed | STARTTLS | required; offered only after TLS unless the client is on loopback or `allow_plaintext_auth` |
//! | `submissions` (465) | the same over implicit TLS | implicit | required |

mod driver;
mod trace;
mod transaction;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmail_proto::smtp::SessionConfig;
use wasmail_types::ClientInfo;

use crate::net::{Connection, Handler, LimitHit, TlsManager};
use crate::policy::{Policy, passwords_allowed};
pub use transaction::Context;

/// Which SMTP service a listener provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail for local domains from anyone; no AUTH.
    Inbound,
    /// Port 587: STARTTLS, then AUTH required.
    Submission,
    /// Port 465: implicit TLS, AUTH required.
    Submissions,
}

impl Role {
    pub fn service_name(self) -> &'static str {
        match self {
            Role::Inbound => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }
}

/// Settings of the SMTP sessions of one service.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub max_line_length: usize,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub idle_timeout: Duration,
    pub allow_plaintext_auth: bool,
}

/// One SMTP service: what its sessions share.
#[derive(Debug)]
pub struct SmtpService {
    role: Role,
    settings: SmtpSettings,
    context: Arc<Context>,
    policy: Policy,
    tls: Option<TlsManager>,
}

impl SmtpService {
    pub fn new(
        role: Role,
        settings: SmtpSettings,
        context: Arc<Context>,
        policy: Policy,
        tls: Option<TlsManager>,
    ) -> SmtpService {
        SmtpService {
            role,
            settings,
            context,
            policy,
            tls,
        }
    }

    /// AUTH on this connection now: (offered, refused only for lack of TLS).
    fn auth_offer(&self, client: &ClientInfo) -> (bool, bool) {
        match self.role {
            Role::Inbound => (false, false),
            Role::Submission | Role::Submissions => {
                let secure = passwords_allowed(client, self.settings.allow_plaintext_auth);
                (secure, !secure)
            }
        }
    }

    fn session_config(&self, client: &ClientInfo) -> SessionConfig {
        let (auth, auth_needs_tls) = self.auth_offer(client);
        SessionConfig {
            hostname: self.context.hostname.clone(),
            max_line_length: self.settings.max_line_length,
            max_message_size: self.settings.max_message_size,
            max_recipients: self.settings.max_recipients,
            max_errors: 20,
            starttls: client.tls.is_none() && self.tls.is_some(),
            auth,
            auth_needs_tls,
            require_auth: self.role != Role::Inbound,
            vrfy: false,
        }
    }
}

impl Handler for SmtpService {
    fn service(&self) -> &str {
        self.role.service_name()
    }

    fn refusal(&self, hit: LimitHit) -> Vec<u8> {
        format!(
            "421 4.7.0 {} {}, try again later\r\n",
            self.context.hostname,
            hit.reason()
        )
        .into_bytes()
    }

    fn handle(
        self: Arc<Self>,
        conn: Connection,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(driver::run(self, conn))
    }
}
