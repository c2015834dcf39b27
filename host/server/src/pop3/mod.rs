//! POP3: the `pop3` (110 role, STLS) and `pop3s` (995 role, implicit TLS) services.
//!
//! ```text
//!  net::serve_listener ──Connection──► Pop3Service::handle ──► driver::run
//!     driver: Wire (socket) ⇄ wasmail_proto::pop3::Session (sans I/O)
//!             Login    ─► authenticator chain, then the maildrop (INBOX snapshot, POP3 lock)
//!             Retrieve ─► the stored message (RETR marks it \Seen)
//!             Update   ─► DELE'd messages (and EXPIRE policy) expunged through the store
//! ```
//! The same store serves IMAP: what POP3 deletes, IMAP sessions see expunged; what it
//! downloads, IMAP shows as seen.

mod driver;
mod maildrop;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmail_proto::pop3::{Expire, SessionConfig};
use wasmail_types::{ClientInfo, MailStore};

use crate::config::{Pop3Config, Pop3Expire, TimeSpan};
use crate::net::{Connection, Handler, LimitHit, TlsManager};
use crate::policy::{Policy, passwords_allowed};
pub use maildrop::Maildrops;

/// Settings of the POP3 sessions.
#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub hostname: String,
    pub max_line_length: usize,
    pub idle_timeout: Duration,
    pub allow_plaintext_auth: bool,
    /// `[pop3]`: EXPIRE and LOGIN-DELAY, with per-account exceptions.
    pub policy: Pop3Config,
}

/// One POP3 service (plain with STLS, or implicit TLS).
pub struct Pop3Service {
    name: &'static str,
    settings: Pop3Settings,
    store: Arc<dyn MailStore>,
    policy: Policy,
    tls: Option<TlsManager>,
    maildrops: Arc<Maildrops>,
}

impl std::fmt::Debug for Pop3Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Service")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Pop3Service {
    /// `maildrops` is shared by every POP3 service of a server: the lock is per account.
    pub fn new(
        name: &'static str,
        settings: Pop3Settings,
        store: Arc<dyn MailStore>,
        policy: Policy,
        tls: Option<TlsManager>,
        maildrops: Arc<Maildrops>,
    ) -> Pop3Service {
        Pop3Service {
            name,
            settings,
            store,
            policy,
            tls,
            maildrops,
        }
    }

    /// Passwords on this connection now: (allowed, refused only for lack of TLS).
    fn plaintext_auth(&self, client: &ClientInfo) -> (bool, bool) {
        let secure = passwords_allowed(client, self.settings.allow_plaintext_auth);
        (secure, !secure)
    }

    fn session_config(&self, client: &ClientInfo) -> SessionConfig {
        let (plaintext_auth, plaintext_needs_tls) = self.plaintext_auth(client);
        SessionConfig {
            hostname: self.settings.hostname.clone(),
            max_line_length: self.settings.max_line_length,
            max_errors: 10,
            stls: client.tls.is_none() && self.tls.is_some(),
            plaintext_auth,
            plaintext_needs_tls,
            // Before login CAPA announces the server-wide values (with USER when some account
            // has its own); after login, the account's (`driver.rs`).
            expire: Some(capa_expire(self.settings.policy.expire)),
            login_delay: capa_login_delay(self.settings.policy.login_delay),
            policy_varies_by_user: !self.settings.policy.accounts.is_empty(),
        }
    }
}

/// A retention policy as CAPA words it.
fn capa_expire(expire: Pop3Expire) -> Expire {
    match expire {
        Pop3Expire::Never => Expire::Never,
        Pop3Expire::Days(d) => Expire::Days(d),
    }
}

/// A login delay as CAPA words it (whole seconds; none when zero).
fn capa_login_delay(delay: TimeSpan) -> Option<u32> {
    (!delay.is_zero()).then(|| u32::try_from(delay.as_millis() / 1000).unwrap_or(u32::MAX))
}

impl Handler for Pop3Service {
    fn service(&self) -> &str {
        self.name
    }

    fn refusal(&self, hit: LimitHit) -> Vec<u8> {
        format!("-ERR [SYS/TEMP] {}, try again later\r\n", hit.reason()).into_bytes()
    }

    fn handle(
        self: Arc<Self>,
        conn: Connection,
    ) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(driver::run(self, conn))
    }
}
