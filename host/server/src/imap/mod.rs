//! IMAP: the `imap` (143 role, STARTTLS) and `imaps` (993 role, implicit TLS) services.
//!
//! ```text
//!  net::serve_listener ──Connection──► ImapService::handle ──► driver::run
//!     driver: Wire (socket) ⇄ wasmail_proto::imap::Session (sans I/O)
//!             Login        ─► authenticator chain, then the account (store)
//!             Command      ─► commands::execute on the blocking pool: mailboxes.rs (the
//!                             authenticated state), selected.rs (the selected mailbox, its
//!                             MailboxView and FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE)
//!             AppendStart/Data/End ─► append.rs: the message streams into the store
//!             IDLE         ─► the mailbox's change feed wakes the driver; updates go out at once
//! ```
//! Commands produce [`Replies`] (untagged responses, the completion, selection changes) on a
//! blocking thread; the driver hands them to the session, which encodes them in order.

mod append;
mod commands;
mod convert;
mod driver;
mod mailboxes;
mod selected;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmail_proto::imap::SessionConfig;
use wasmail_types::{ClientInfo, MailStore};

use crate::net::{Connection, Handler, LimitHit, TlsManager};
use crate::policy::{Policy, passwords_allowed};

/// Settings of the IMAP sessions.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub hostname: String,
    pub max_line_length: usize,
    pub max_append_size: u32,
    pub idle_timeout: Duration,
    pub allow_plaintext_auth: bool,
}

/// One IMAP service (plain with STARTTLS, or implicit TLS).
pub struct ImapService {
    name: &'static str,
    settings: ImapSettings,
    store: Arc<dyn MailStore>,
    policy: Policy,
    tls: Option<TlsManager>,
}

impl std::fmt::Debug for ImapService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapService")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ImapService {
    pub fn new(
        name: &'static str,
        settings: ImapSettings,
        store: Arc<dyn MailStore>,
        policy: Policy,
        tls: Option<TlsManager>,
    ) -> ImapService {
        ImapService {
            name,
            settings,
            store,
            policy,
            tls,
        }
    }

    fn session_config(&self, client: &ClientInfo) -> SessionConfig {
        SessionConfig {
            hostname: self.settings.hostname.clone(),
            max_line_length: self.settings.max_line_length,
            // A command with its literals (APPEND messages excluded): a search for a long text
            // or a login with long literals fits; more is not a command.
            max_command_size: self.settings.max_line_length.max(64 * 1024),
            max_append_size: self.settings.max_append_size,
            max_errors: 20,
            starttls: client.tls.is_none() && self.tls.is_some(),
            plaintext_auth: passwords_allowed(client, self.settings.allow_plaintext_auth),
        }
    }
}

impl Handler for ImapService {
    fn service(&self) -> &str {
        self.name
    }

    fn refusal(&self, hit: LimitHit) -> Vec<u8> {
        format!("* BYE [UNAVAILABLE] {}, try again later\r\n", hit.reason()).into_bytes()
    }

    fn handle(
        self: Arc<Self>,
        conn: Connection,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(driver::run(self, conn))
    }
}
