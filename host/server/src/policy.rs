//! Policy: the native components an embedder handed over, then the configured WebAssembly plugins,
//! asked as one chain.
//!
//! ```text
//!  Policy (shared) ──session()──► PolicySession (one per SMTP transaction, and one for the stages
//!    native filters, authenticators,        before MAIL): keeps the plugin snapshot it began with,
//!    delivery policies (in given order)     so a reload never changes a transaction half-way
//!    PluginHost (hot-swapped set) ───────►  filter(hook) / authenticate / route / account_exists
//! ```
//!
//! Everything here blocks (WebAssembly calls, password hashing): drivers call it on a blocking
//! thread, never on the async runtime.

use std::sync::Arc;

use crate::auth_cache::AuthCache;
use wasmail_plugin::{AuthOutcome, FilterSession, Hook, PluginHost, PluginSet, RouteOutcome};
use wasmail_types::{
    Address, AuthAnswer, Authenticator, ClientInfo, DeliveryPolicy, Envelope, Filter, FilterAnswer,
    Modification, Route, Secret, Verdict,
};

/// The native (Rust) components, in the order they run.
#[derive(Default, Clone)]
pub struct NativePolicy {
    pub filters: Vec<Arc<dyn Filter>>,
    pub authenticators: Vec<Arc<dyn Authenticator>>,
    pub delivery: Vec<Arc<dyn DeliveryPolicy>>,
}

impl std::fmt::Debug for NativePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePolicy")
            .field(
                "filters",
                &self.filters.iter().map(|x| x.name()).collect::<Vec<_>>(),
            )
            .field(
                "authenticators",
                &self
                    .authenticators
                    .iter()
                    .map(|x| x.name())
                    .collect::<Vec<_>>(),
            )
            .field(
                "delivery",
                &self.delivery.iter().map(|x| x.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Every policy component of a running server.
#[derive(Debug, Clone)]
pub struct Policy {
    native: Arc<NativePolicy>,
    plugins: Arc<PluginHost>,
    logins: Arc<AuthCache>,
}

/// What a filter chain decided at one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The filter whose verdict decided, for the log.
    pub decided_by: Option<String>,
    pub modifications: Vec<Modification>,
}

impl Policy {
    pub fn new(native: NativePolicy, plugins: Arc<PluginHost>, logins: Arc<AuthCache>) -> Policy {
        Policy {
            native: Arc::new(native),
            plugins,
            logins,
        }
    }

    pub fn plugins(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    /// A session on the current plugin set.
    pub fn session(&self) -> PolicySession {
        let set = self.plugins.current();
        PolicySession {
            native: self.native.clone(),
            logins: self.logins.clone(),
            filters: FilterSession::new(set.clone()),
            set,
        }
    }
}

/// The policy of one transaction: the plugin snapshot it began with, and the filter instances made
/// for it (dropped with it, so nothing a filter remembers crosses to the next transaction).
pub struct PolicySession {
    native: Arc<NativePolicy>,
    logins: Arc<AuthCache>,
    set: Arc<PluginSet>,
    filters: FilterSession,
}

impl std::fmt::Debug for PolicySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySession")
            .field("generation", &self.set.generation())
            .finish_non_exhaustive()
    }
}

impl PolicySession {
    /// Runs the native filters, then the plugins, until one says something other than continue.
    /// Modifications accumulate over every filter asked.
    pub fn filter(&mut self, hook: Hook<'_>) -> Decision {
        let mut modifications = Vec::new();
        for filter in &self.native.filters {
            let FilterAnswer {
                verdict,
                modifications: mods,
            } = match &hook {
                Hook::Connect(c) => filter.on_connect(c),
                Hook::Helo(c, h) => filter.on_helo(c, h),
                Hook::MailFrom(e) => filter.on_mail_from(e),
                Hook::Rcpt(e, r) => filter.on_rcpt(e, r),
                Hook::Data(e, m) => filter.on_data(e, m.as_ref()),
            };
            modifications.extend(mods);
            if verdict != Verdict::Continue {
                return Decision {
                    verdict,
                    decided_by: Some(filter.name().to_owned()),
                    modifications,
                };
            }
        }
        let outcome = self.filters.run(hook);
        modifications.extend(outcome.modifications);
        Decision {
            verdict: outcome.verdict,
            decided_by: outcome.decided_by,
            modifications,
        }
    }

    /// A recent success with the same credentials (see `auth_cache.rs`), else native
    /// authenticators first, then the plugins; the first that knows the identity decides.
    pub fn authenticate(
        &self,
        mechanism: &str,
        identity: &str,
        secret: &Secret<String>,
        client: &ClientInfo,
    ) -> AuthAnswer {
        let generation = self.set.generation();
        if let Some(account) = self.logins.get(identity, secret, generation) {
            tracing::debug!(account, "login from the cache");
            return AuthAnswer::Accepted(account);
        }
        let answer = self.ask_authenticators(mechanism, identity, secret, client);
        if let AuthAnswer::Accepted(account) = &answer {
            self.logins.put(identity, secret, generation, account);
        }
        answer
    }

    fn ask_authenticators(
        &self,
        mechanism: &str,
        identity: &str,
        secret: &Secret<String>,
        client: &ClientInfo,
    ) -> AuthAnswer {
        for auth in &self.native.authenticators {
            match auth.authenticate(mechanism, identity, secret, client) {
                AuthAnswer::NotMine => continue,
                answer => return answer,
            }
        }
        match self.set.authenticate(mechanism, identity, secret, client) {
            AuthOutcome::Accepted(account) => AuthAnswer::Accepted(account),
            AuthOutcome::Rejected => AuthAnswer::Rejected,
            AuthOutcome::TemporaryFailure => AuthAnswer::TemporaryFailure,
        }
    }

    /// Whether the account exists: `None` when nobody can tell.
    pub fn account_exists(&self, account: &str) -> Option<bool> {
        let mut answered = false;
        for auth in &self.native.authenticators {
            match auth.account_exists(account) {
                Some(true) => return Some(true),
                Some(false) => answered = true,
                None => {}
            }
        }
        match self.set.account_exists(account) {
            Some(exists) => Some(exists),
            None => answered.then_some(false),
        }
    }

    /// Native delivery policies first, then the plugins; the first that does not pass decides.
    pub fn route(&self, recipient: &Address, envelope: &Envelope) -> Route {
        for policy in &self.native.delivery {
            match policy.route(recipient, envelope) {
                Route::Pass => continue,
                route => return route,
            }
        }
        match self.set.route(recipient, envelope) {
            RouteOutcome::Local(targets) => Route::Local(targets),
            RouteOutcome::Relay => Route::Relay,
            RouteOutcome::Reject(r) => Route::Reject(r),
            RouteOutcome::Defer(r) => Route::Defer(r),
            RouteOutcome::Unrouted => Route::Pass,
        }
    }
}

/// Whether a client may send a password now: over TLS, from loopback (nothing crosses a
/// network), or where the operator allowed plaintext (`[tls] allow_plaintext_auth`).
pub fn passwords_allowed(client: &ClientInfo, allow_plaintext_auth: bool) -> bool {
    client.tls.is_some() || client.is_loopback() || allow_plaintext_auth
}
