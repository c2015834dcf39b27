//! Plugin sets, filter chains, authentication and routing, and hot swap.
//!
//! ```text
//!  PluginHost ── ArcSwap<PluginSet> ──► current set (immutable)
//!     reload(specs): load + check every plugin ──ok──► swap   (err: old set keeps serving)
//!  SMTP transaction: set = host.current(); FilterSession::new(set)  (keeps its set to the end)
//!     run(Hook::Rcpt ..) → each filter exporting that hook, in order, on its own instance
//!                          (made at first use, kept for the transaction) → first non-continue
//!                          verdict decides; modifications accumulate
//! ```

use std::sync::Arc;

use arc_swap::ArcSwap;
use wasmail_types::mail::MailboxName;
use wasmail_types::{
    Address, ClientInfo, Envelope, MessageContent, Modification, Reply, Secret, Verdict,
};

use crate::bindings::exports::wasmail::plugin::{authentication, routing};
use crate::bindings::wasmail::plugin::types as wit;
use crate::engine::PluginEngine;
use crate::error::{CallError, LoadError};
use crate::host::MessageHandle;
use crate::plugin::{HostEnv, Live, LoadedPlugin};
use crate::spec::{OnError, PluginSpec};
use crate::validate::{self, InvalidOutput, ReplyClass};

/// One SMTP stage, with what its filters see.
#[derive(Clone)]
pub enum Hook<'a> {
    Connect(&'a ClientInfo),
    Helo(&'a ClientInfo, &'a str),
    MailFrom(&'a Envelope),
    Rcpt(&'a Envelope, &'a Address),
    Data(&'a Envelope, Arc<dyn MessageContent>),
}

impl std::fmt::Debug for Hook<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook::{}", self.name())
    }
}

impl Hook<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Hook::Connect(_) => "connect",
            Hook::Helo(..) => "helo",
            Hook::MailFrom(_) => "mail-from",
            Hook::Rcpt(..) => "rcpt",
            Hook::Data(..) => "data",
        }
    }
}

/// What a chain decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainOutcome {
    pub verdict: Verdict,
    /// The plugin whose verdict decided (none when every filter continued).
    pub decided_by: Option<String>,
    pub modifications: Vec<Modification>,
    /// Plugins that failed during this run, and how.
    pub failures: Vec<(String, CallError)>,
}

/// The reply a failing plugin's `on_error = "defer"` produces.
pub fn defer_reply() -> Reply {
    Reply::fixed(
        451,
        (4, 3, 0),
        "Temporary local problem, please try again later",
    )
}

fn reject_reply() -> Reply {
    Reply::fixed(550, (5, 3, 0), "Message refused by local policy")
}

/// An immutable, fully loaded set of plugins.
#[derive(Debug)]
pub struct PluginSet {
    plugins: Vec<LoadedPlugin>,
    generation: u64,
}

impl PluginSet {
    fn load(
        engine: &PluginEngine,
        env: &HostEnv,
        specs: &[PluginSpec],
        generation: u64,
    ) -> Result<PluginSet, LoadError> {
        let mut seen = std::collections::HashSet::new();
        let mut plugins = Vec::with_capacity(specs.len());
        for spec in specs {
            if !seen.insert(spec.name.as_str()) {
                return Err(LoadError::Config(format!(
                    "two plugins are named {:?}",
                    spec.name
                )));
            }
            plugins.push(LoadedPlugin::load(engine, env, spec)?);
        }
        Ok(PluginSet {
            plugins,
            generation,
        })
    }

    /// Counts reloads: 0 for the first set.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// (name, exported interfaces) of every plugin, in order.
    pub fn describe(&self) -> Vec<(String, Vec<&'static str>)> {
        self.plugins
            .iter()
            .map(|p| (p.spec.name.clone(), p.exports.names()))
            .collect()
    }

    /// (calls, errors, total nanoseconds) per plugin, for metrics.
    pub fn stats(&self) -> Vec<(String, u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.plugins
            .iter()
            .map(|p| {
                (
                    p.spec.name.clone(),
                    p.stats.calls.load(Relaxed),
                    p.stats.errors.load(Relaxed),
                    p.stats.nanos.load(Relaxed),
                )
            })
            .collect()
    }

    /// Asks the authenticators in order; the first that does not answer `not-mine` decides.
    pub fn authenticate(
        &self,
        mechanism: &str,
        identity: &str,
        secret: &Secret<String>,
        client: &ClientInfo,
    ) -> AuthOutcome {
        let wit_client = wit_client(client);
        for plugin in self
            .plugins
            .iter()
            .filter(|p| p.exports.authentication.is_some())
        {
            let result = run_once(plugin, |live, indices: &authentication::GuestIndices| {
                let guest = indices.load(&mut live.store, &live.instance)?;
                guest.call_authenticate(
                    &mut live.store,
                    mechanism,
                    identity,
                    secret.expose(),
                    &wit_client,
                )
            });
            let answer: Result<(), CallError> = match result {
                Ok(Ok(account)) => match validate::account(&account) {
                    Ok(a) => return AuthOutcome::Accepted(a),
                    Err(e) => Err(CallError::InvalidOutput(e.0)),
                },
                Ok(Err(authentication::Denial::NotMine)) => continue,
                Ok(Err(authentication::Denial::InvalidCredentials)) => {
                    return AuthOutcome::Rejected;
                }
                Ok(Err(authentication::Denial::Disabled(why))) => {
                    tracing::info!(plugin = %plugin.spec.name, identity, reason = %why, "login refused: account disabled");
                    return AuthOutcome::Rejected;
                }
                Ok(Err(authentication::Denial::TemporaryFailure(why))) => {
                    tracing::warn!(plugin = %plugin.spec.name, reason = %why, "authenticator temporarily failed");
                    return AuthOutcome::TemporaryFailure;
                }
                Err(e) => Err(e),
            };
            if let Err(e) = answer {
                tracing::error!(plugin = %plugin.spec.name, error = %e, "authenticator failed");
                match plugin.on_error() {
                    OnError::Continue => continue,
                    OnError::Defer => return AuthOutcome::TemporaryFailure,
                    OnError::Reject => return AuthOutcome::Rejected,
                }
            }
        }
        AuthOutcome::Rejected
    }

    /// Whether an account exists, by the authenticators: `Some(true)` as soon as one says so,
    /// `Some(false)` when every authenticator answered no, `None` when there is no authenticator
    /// or one failed (the caller then cannot tell, and should not refuse mail for it).
    pub fn account_exists(&self, account: &str) -> Option<bool> {
        let mut answered = false;
        for plugin in self
            .plugins
            .iter()
            .filter(|p| p.exports.authentication.is_some())
        {
            let result = run_once(plugin, |live, indices: &authentication::GuestIndices| {
                let guest = indices.load(&mut live.store, &live.instance)?;
                guest.call_account_exists(&mut live.store, account)
            });
            match result {
                Ok(true) => return Some(true),
                Ok(false) => answered = true,
                Err(e) => {
                    tracing::error!(plugin = %plugin.spec.name, error = %e, "account lookup failed");
                    return None;
                }
            }
        }
        answered.then_some(false)
    }

    /// Asks the delivery policies in order; the first that does not `pass` decides.
    pub fn route(&self, recipient: &Address, envelope: &Envelope) -> RouteOutcome {
        let wit_env = wit_envelope(envelope);
        let rcpt = recipient.to_string();
        for plugin in self.plugins.iter().filter(|p| p.exports.routing.is_some()) {
            let result = run_once(plugin, |live, indices: &routing::GuestIndices| {
                let guest = indices.load(&mut live.store, &live.instance)?;
                guest.call_route(&mut live.store, &rcpt, &wit_env)
            });
            let decided =
                result.and_then(|d| route_from_guest(d).map_err(|e| CallError::InvalidOutput(e.0)));
            match decided {
                Ok(None) => continue,
                Ok(Some(outcome)) => return outcome,
                Err(e) => {
                    tracing::error!(plugin = %plugin.spec.name, error = %e, "delivery policy failed");
                    match plugin.on_error() {
                        OnError::Continue => continue,
                        OnError::Defer => return RouteOutcome::Defer(defer_reply()),
                        OnError::Reject => return RouteOutcome::Reject(reject_reply()),
                    }
                }
            }
        }
        RouteOutcome::Unrouted
    }
}

/// Runs one call on a fresh instance (authenticators and routers: one call each).
fn run_once<I, R>(
    plugin: &LoadedPlugin,
    f: impl FnOnce(&mut Live, &I) -> wasmtime::Result<R>,
) -> Result<R, CallError>
where
    LoadedPlugin: Indices<I>,
{
    let indices = plugin
        .indices()
        .ok_or_else(|| CallError::Trap("export vanished".into()))?;
    let mut live = plugin.instantiate()?;
    plugin.call(&mut live, |live| f(live, indices))
}

/// Access to one kind of export's indices.
trait Indices<I> {
    fn indices(&self) -> Option<&I>;
}

impl Indices<authentication::GuestIndices> for LoadedPlugin {
    fn indices(&self) -> Option<&authentication::GuestIndices> {
        self.exports.authentication.as_ref()
    }
}

impl Indices<routing::GuestIndices> for LoadedPlugin {
    fn indices(&self) -> Option<&routing::GuestIndices> {
        self.exports.routing.as_ref()
    }
}

/// What the authenticators said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials are good; the session acts as this account.
    Accepted(String),
    Rejected,
    /// Try again later (a backend is down, or a plugin failed with `on_error = "defer"`).
    TemporaryFailure,
}

/// What the delivery policies said about one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Deliver into these (account, folder) mailboxes.
    Local(Vec<(String, MailboxName)>),
    Relay,
    Reject(Reply),
    Defer(Reply),
    /// No policy decided.
    Unrouted,
}

fn route_from_guest(d: routing::Destination) -> Result<Option<RouteOutcome>, InvalidOutput> {
    Ok(Some(match d {
        routing::Destination::Pass => return Ok(None),
        routing::Destination::Relay => RouteOutcome::Relay,
        routing::Destination::Reject(r) => {
            RouteOutcome::Reject(guest_reply(&r, ReplyClass::Permanent)?)
        }
        routing::Destination::Defer(r) => {
            RouteOutcome::Defer(guest_reply(&r, ReplyClass::Transient)?)
        }
        routing::Destination::Local(targets) => {
            if targets.is_empty() || targets.len() > 100 {
                return Err(InvalidOutput("local route needs 1 to 100 targets".into()));
            }
            let mut out = Vec::with_capacity(targets.len());
            for t in targets {
                let folder = match &t.folder {
                    Some(f) => validate::folder(f)?,
                    None => MailboxName::inbox(),
                };
                out.push((validate::account(&t.account)?, folder));
            }
            RouteOutcome::Local(out)
        }
    }))
}

fn guest_reply(r: &wit::Reply, class: ReplyClass) -> Result<Reply, InvalidOutput> {
    validate::reply(r.code, r.enhanced.as_deref(), &r.text, class)
}

fn wit_client(c: &ClientInfo) -> wit::Client {
    wit::Client {
        address: c.peer.ip().to_string(),
        port: c.peer.port(),
        helo: c.helo.clone(),
        tls: c.tls.as_ref().map(|t| wit::TlsInfo {
            protocol: t.protocol.clone(),
            cipher: t.cipher.clone(),
            server_name: t.server_name.clone(),
        }),
        account: c.authenticated.clone(),
    }
}

fn wit_envelope(e: &Envelope) -> wit::Envelope {
    wit::Envelope {
        mail_from: e.mail_from.address().map(ToString::to_string),
        rcpt_to: e.rcpt_to.iter().map(ToString::to_string).collect(),
        client: wit_client(&e.client),
    }
}

/// A guest decision as host values, or why it is invalid.
fn decision(d: wit::Decision) -> Result<(Verdict, Vec<Modification>), InvalidOutput> {
    let verdict = match d.verdict {
        wit::Verdict::Continue => Verdict::Continue,
        wit::Verdict::Accept => Verdict::Accept,
        wit::Verdict::Discard => Verdict::Discard,
        wit::Verdict::Reject(r) => Verdict::Reject(guest_reply(&r, ReplyClass::Permanent)?),
        wit::Verdict::Defer(r) => Verdict::Defer(guest_reply(&r, ReplyClass::Transient)?),
        wit::Verdict::Disconnect(r) => Verdict::Disconnect(guest_reply(&r, ReplyClass::Failure)?),
        wit::Verdict::Quarantine(folder) => {
            Verdict::Quarantine(validate::folder(&folder)?.to_string())
        }
    };
    if d.modifications.len() > validate::MAX_MODIFICATIONS {
        return Err(InvalidOutput("too many modifications".into()));
    }
    let mut mods = Vec::with_capacity(d.modifications.len());
    for m in d.modifications {
        mods.push(match m {
            wit::Modification::AddHeader(h) => Modification::AddHeader {
                name: validate::header_name(&h.name)?.to_owned(),
                value: validate::header_value(&h.value)?.to_owned(),
            },
            wit::Modification::RemoveHeader(name) => Modification::RemoveHeader {
                name: validate::header_name(&name)?.to_owned(),
            },
            wit::Modification::AddRecipient(a) => {
                Modification::AddRecipient(validate::address(&a)?)
            }
            wit::Modification::RemoveRecipient(a) => {
                Modification::RemoveRecipient(validate::address(&a)?)
            }
        });
    }
    Ok((verdict, mods))
}

/// The filters of one SMTP transaction (or of the connection's pre-transaction stages). Each
/// filter gets its own instance at its first hook, kept until the session is dropped, so no
/// state crosses transactions except through kv.
pub struct FilterSession {
    set: Arc<PluginSet>,
    instances: Vec<Option<Live>>,
}

impl std::fmt::Debug for FilterSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterSession")
            .field("generation", &self.set.generation)
            .finish_non_exhaustive()
    }
}

impl FilterSession {
    pub fn new(set: Arc<PluginSet>) -> FilterSession {
        let instances = set.plugins.iter().map(|_| None).collect();
        FilterSession { set, instances }
    }

    pub fn set(&self) -> &Arc<PluginSet> {
        &self.set
    }

    /// Runs the chain for one hook.
    pub fn run(&mut self, hook: Hook<'_>) -> ChainOutcome {
        let mut outcome = ChainOutcome {
            verdict: Verdict::Continue,
            decided_by: None,
            modifications: Vec::new(),
            failures: Vec::new(),
        };
        let set = self.set.clone();
        for (i, plugin) in set.plugins.iter().enumerate() {
            if !exports_hook(plugin, &hook) {
                continue;
            }
            let result = self
                .call_hook(i, plugin, &hook)
                .and_then(|d| decision(d).map_err(|e| CallError::InvalidOutput(e.0)));
            let (verdict, mods) = match result {
                Ok(v) => v,
                Err(e) => {
                    // A failed instance is never reused.
                    self.instances[i] = None;
                    tracing::error!(plugin = %plugin.spec.name, hook = hook.name(), error = %e, "filter failed");
                    outcome.failures.push((plugin.spec.name.clone(), e));
                    match plugin.on_error() {
                        OnError::Continue => continue,
                        OnError::Defer => (Verdict::Defer(defer_reply()), Vec::new()),
                        OnError::Reject => (Verdict::Reject(reject_reply()), Vec::new()),
                    }
                }
            };
            outcome.modifications.extend(mods);
            if verdict != Verdict::Continue {
                tracing::info!(plugin = %plugin.spec.name, hook = hook.name(), verdict = ?verdict, "filter decided");
                outcome.verdict = verdict;
                outcome.decided_by = Some(plugin.spec.name.clone());
                break;
            }
        }
        outcome
    }

    fn call_hook(
        &mut self,
        i: usize,
        plugin: &LoadedPlugin,
        hook: &Hook<'_>,
    ) -> Result<wit::Decision, CallError> {
        if self.instances[i].is_none() {
            self.instances[i] = Some(plugin.instantiate()?);
        }
        let Some(live) = self.instances[i].as_mut() else {
            return Err(CallError::Instantiate("instance missing".into()));
        };
        let e = &plugin.exports;
        plugin.call(live, |live| {
            let store = &mut live.store;
            let instance = &live.instance;
            match hook {
                Hook::Connect(c) => match &e.connect {
                    Some(ix) => ix
                        .load(&mut *store, instance)?
                        .call_on_connect(&mut *store, &wit_client(c)),
                    None => Err(wasmtime::format_err!("no connect hook")),
                },
                Hook::Helo(c, helo) => match &e.helo {
                    Some(ix) => ix.load(&mut *store, instance)?.call_on_helo(
                        &mut *store,
                        &wit_client(c),
                        helo,
                    ),
                    None => Err(wasmtime::format_err!("no helo hook")),
                },
                Hook::MailFrom(env) => match &e.mail_from {
                    Some(ix) => ix
                        .load(&mut *store, instance)?
                        .call_on_mail_from(&mut *store, &wit_envelope(env)),
                    None => Err(wasmtime::format_err!("no mail-from hook")),
                },
                Hook::Rcpt(env, rcpt) => match &e.rcpt {
                    Some(ix) => ix.load(&mut *store, instance)?.call_on_rcpt(
                        &mut *store,
                        &wit_envelope(env),
                        &rcpt.to_string(),
                    ),
                    None => Err(wasmtime::format_err!("no rcpt hook")),
                },
                Hook::Data(env, content) => match &e.data {
                    Some(ix) => {
                        let guest = ix.load(&mut *store, instance)?;
                        let handle = store
                            .data_mut()
                            .table
                            .push(MessageHandle::new(content.clone()))?;
                        let borrowed = wasmtime::component::Resource::new_borrow(handle.rep());
                        let r = guest.call_on_data(&mut *store, &wit_envelope(env), borrowed);
                        store.data_mut().table.delete(handle)?;
                        r
                    }
                    None => Err(wasmtime::format_err!("no data hook")),
                },
            }
        })
    }
}

fn exports_hook(plugin: &LoadedPlugin, hook: &Hook<'_>) -> bool {
    let e = &plugin.exports;
    match hook {
        Hook::Connect(_) => e.connect.is_some(),
        Hook::Helo(..) => e.helo.is_some(),
        Hook::MailFrom(_) => e.mail_from.is_some(),
        Hook::Rcpt(..) => e.rcpt.is_some(),
        Hook::Data(..) => e.data.is_some(),
    }
}

/// The running plugin set and how to replace it.
#[derive(Debug)]
pub struct PluginHost {
    engine: PluginEngine,
    env: HostEnv,
    current: ArcSwap<PluginSet>,
    /// Serializes reloads (not calls): two reloads at once would race on the generation.
    reloading: std::sync::Mutex<()>,
}

impl PluginHost {
    pub fn new(
        engine: PluginEngine,
        env: HostEnv,
        specs: &[PluginSpec],
    ) -> Result<PluginHost, LoadError> {
        let set = PluginSet::load(&engine, &env, specs, 0)?;
        Ok(PluginHost {
            engine,
            env,
            current: ArcSwap::from_pointee(set),
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The set new transactions should use. Callers keep it for the whole transaction.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.load_full()
    }

    /// Loads and checks `specs` completely, then swaps them in atomically. On error the current
    /// set stays and the error says why.
    pub fn reload(&self, specs: &[PluginSpec]) -> Result<u64, LoadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.current.load().generation + 1;
        let set = PluginSet::load(&self.engine, &self.env, specs, generation)?;
        self.current.store(Arc::new(set));
        tracing::info!(generation, plugins = specs.len(), "plugins reloaded");
        Ok(generation)
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }
}
