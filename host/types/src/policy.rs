//! The policy seams as Rust traits: what a filter, an authenticator and a delivery policy are.
//!
//! The server asks these at each SMTP stage. WebAssembly plugins are one implementation (the
//! `wasmail-plugin` crate runs them); an embedder can hand the server native implementations of the
//! same traits, which run before the configured plugins, in the order given.

use crate::mail::MailboxName;
use crate::{Address, ClientInfo, Envelope, MessageContent, Modification, Reply, Secret, Verdict};

/// What a filter says at one stage: a verdict plus the changes it asks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FilterAnswer {
    pub verdict: Verdict,
    pub modifications: Vec<Modification>,
}

impl FilterAnswer {
    /// No objection and no change.
    pub fn pass() -> FilterAnswer {
        FilterAnswer {
            verdict: Verdict::Continue,
            modifications: Vec::new(),
        }
    }

    pub fn verdict(verdict: Verdict) -> FilterAnswer {
        FilterAnswer {
            verdict,
            modifications: Vec::new(),
        }
    }
}

/// A filter over the SMTP timeline (Haraka's hooks). Every hook defaults to "continue", so an
/// implementation overrides only the stages it cares about. Hooks run on a blocking thread: they
/// may do I/O, but slow work delays the client's reply.
pub trait Filter: Send + Sync {
    /// Names the filter in logs.
    fn name(&self) -> &str;

    /// A client connected; nothing has been said yet.
    fn on_connect(&self, _client: &ClientInfo) -> FilterAnswer {
        FilterAnswer::pass()
    }

    /// EHLO or HELO with this name.
    fn on_helo(&self, _client: &ClientInfo, _helo: &str) -> FilterAnswer {
        FilterAnswer::pass()
    }

    /// MAIL FROM; `envelope.rcpt_to` is empty.
    fn on_mail_from(&self, _envelope: &Envelope) -> FilterAnswer {
        FilterAnswer::pass()
    }

    /// One RCPT TO; `envelope.rcpt_to` holds the recipients accepted before it.
    fn on_rcpt(&self, _envelope: &Envelope, _recipient: &Address) -> FilterAnswer {
        FilterAnswer::pass()
    }

    /// The whole message has arrived (before any trace header is added).
    fn on_data(&self, _envelope: &Envelope, _message: &dyn MessageContent) -> FilterAnswer {
        FilterAnswer::pass()
    }
}

/// An authenticator's answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AuthAnswer {
    /// The credentials are good; the session acts as this account.
    Accepted(String),
    /// Wrong credentials, or the account may not log in.
    Rejected,
    /// Not an identity this authenticator knows: ask the next one.
    NotMine,
    /// Cannot decide now (a backend is down); the client may retry.
    TemporaryFailure,
}

/// Checks credentials (SMTP AUTH, IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS).
pub trait Authenticator: Send + Sync {
    fn name(&self) -> &str;

    /// `mechanism` is the SASL name (`PLAIN`, `LOGIN`); `identity` the authentication identity.
    fn authenticate(
        &self,
        mechanism: &str,
        identity: &str,
        secret: &Secret<String>,
        client: &ClientInfo,
    ) -> AuthAnswer;

    /// Whether an account of this name exists: `None` when this authenticator does not know.
    fn account_exists(&self, _account: &str) -> Option<bool> {
        None
    }
}

/// Where one recipient's mail goes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Route {
    /// Deliver into these (account, folder) mailboxes.
    Local(Vec<(String, MailboxName)>),
    /// Send it on to another server.
    Relay,
    /// Refuse the recipient (5xx).
    Reject(Reply),
    /// Refuse the recipient for now (4xx).
    Defer(Reply),
    /// No opinion: ask the next policy.
    Pass,
}

/// Decides per recipient: local delivery, relay, or refusal.
pub trait DeliveryPolicy: Send + Sync {
    fn name(&self) -> &str;
    fn route(&self, recipient: &Address, envelope: &Envelope) -> Route;
}
