//! The embedding API: build a server from config (plus an embedder's own store, native policy
//! components, plugins and sockets), run it until a shutdown future completes.
//!
//! ```text
//!  Server::builder(config) .store(..) .filter(..) .plugin(..) .listener(..) .build()?  (binds,
//!        loads TLS and plugins: every error surfaces here, before anything is served)
//!  server.handle()   ─► ServerHandle: reload plugins, addresses  (cloneable, for other tasks)
//!  server.run(shutdown).await   accept loops per listener; on shutdown: stop accepting, let
//!                               sessions finish their transaction within shutdown_grace, close
//! ```
//! When `run` returns, nothing accepts connections any more; a session still open after the grace
//! period is abandoned (dropped with the runtime). Nothing acknowledged is lost by that: `250`
//! is sent only once a message is durable.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmail_plugin::{FileWatcher, LoadError, PluginHost, PluginSpec, WasmSource};
use wasmail_store::{FsStore, StoreConfig};
use wasmail_types::{Authenticator, DeliveryPolicy, Filter, MailStore};

use crate::auth_cache::AuthCache;
use crate::config::Config;
use crate::imap::{ImapService, ImapSettings};
use crate::net::{self, ConnectionLimiter, Handler, TlsManager};
use crate::policy::{NativePolicy, Policy};
use crate::pop3::{Maildrops, Pop3Service, Pop3Settings};
use crate::queue::OutboundQueue;
use crate::smtp::{self, Role, SmtpService, SmtpSettings};

/// The services a server can offer, as named under `[services]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Smtp,
    Submission,
    Submissions,
    Imap,
    Imaps,
    Pop3,
    Pop3s,
}

impl Service {
    pub const ALL: [Service; 7] = [
        Service::Smtp,
        Service::Submission,
        Service::Submissions,
        Service::Imap,
        Service::Imaps,
        Service::Pop3,
        Service::Pop3s,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Submissions => "submissions",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Pop3 => "pop3",
            Service::Pop3s => "pop3s",
        }
    }

    /// Whether the listener speaks TLS from the first byte.
    pub fn implicit_tls(self) -> bool {
        matches!(self, Service::Submissions | Service::Imaps | Service::Pop3s)
    }

    fn config(self, config: &Config) -> &crate::config::Service {
        let s = &config.services;
        match self {
            Service::Smtp => &s.smtp,
            Service::Submission => &s.submission,
            Service::Submissions => &s.submissions,
            Service::Imap => &s.imap,
            Service::Imaps => &s.imaps,
            Service::Pop3 => &s.pop3,
            Service::Pop3s => &s.pop3s,
        }
    }
}

/// Why a server could not be built or run.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    // Each variant's text includes its cause, so none is also a `source` (it would print twice).
    #[error("mail store: {0}")]
    Store(wasmail_types::StoreError),
    #[error("TLS: {0}")]
    Tls(net::TlsError),
    #[error("plugins: {0}")]
    Plugins(LoadError),
    #[error("{0}")]
    Bind(net::BindError),
    #[error("listener: {0}")]
    Listener(std::io::Error),
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    config: Config,
    store: Option<Arc<dyn MailStore>>,
    native: NativePolicy,
    plugins: Option<Vec<PluginSpec>>,
    listeners: Vec<(Service, std::net::TcpListener)>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("native", &self.native)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A store other than the Maildir store in the data dir.
    pub fn store(mut self, store: Arc<dyn MailStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A native filter; native filters run before the plugins, in the order added.
    pub fn filter(mut self, filter: Arc<dyn Filter>) -> Self {
        self.native.filters.push(filter);
        self
    }

    /// A native authenticator, asked before the plugins.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.native.authenticators.push(authenticator);
        self
    }

    /// A native delivery policy, asked before the plugins.
    pub fn delivery_policy(mut self, policy: Arc<dyn DeliveryPolicy>) -> Self {
        self.native.delivery.push(policy);
        self
    }

    /// Replaces the plugin chain from config (and the built-in defaults) with these.
    pub fn plugins(mut self, specs: Vec<PluginSpec>) -> Self {
        self.plugins = Some(specs);
        self
    }

    /// A listener the caller bound; a service given at least one is not bound from config.
    pub fn listener(mut self, service: Service, listener: std::net::TcpListener) -> Self {
        self.listeners.push((service, listener));
        self
    }

    /// Opens the store, loads TLS and the plugins, binds the listeners.
    pub fn build(self) -> Result<Server, ServerError> {
        let config = self.config;
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| ServerError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        let store: Arc<dyn MailStore> = match self.store {
            Some(s) => s,
            None => Arc::new(
                FsStore::open(
                    &data_dir,
                    StoreConfig {
                        fsync: config.store.fsync,
                    },
                )
                .map_err(ServerError::Store)?,
            ),
        };
        let queue = OutboundQueue::open(&data_dir, config.store.fsync).map_err(|source| {
            ServerError::DataDir {
                path: data_dir.join("queue"),
                source,
            }
        })?;
        let tls = TlsManager::load(&config.tls, &config.server.hostname, &data_dir)
            .map_err(ServerError::Tls)?;
        // The default authenticator reads this directory (granted read-only); it must exist even
        // before the first `wasmail user add`.
        let users_dir = crate::users::users_dir(&data_dir);
        std::fs::create_dir_all(&users_dir).map_err(|source| ServerError::DataDir {
            path: users_dir,
            source,
        })?;
        let specs = self
            .plugins
            .unwrap_or_else(|| crate::plugins::specs(&config));
        let plugin_host =
            Arc::new(crate::plugins::host(&config, &specs).map_err(ServerError::Plugins)?);

        let mut given: BTreeMap<Service, Vec<std::net::TcpListener>> = BTreeMap::new();
        for (service, listener) in self.listeners {
            given.entry(service).or_default().push(listener);
        }
        let mut listeners = Vec::new();
        for service in Service::ALL {
            let bound = match given.remove(&service) {
                Some(l) => l,
                None => {
                    let c = service.config(&config);
                    if !c.enabled || c.listen.is_empty() {
                        continue;
                    }
                    net::bind(&c.listen).map_err(ServerError::Bind)?
                }
            };
            for l in bound {
                l.set_nonblocking(true).map_err(ServerError::Listener)?;
                listeners.push((service, l));
            }
        }
        let context = Arc::new(smtp::Context {
            hostname: config.server.hostname.clone(),
            domains: config
                .server
                .domains
                .iter()
                .map(|d| d.to_lowercase())
                .collect(),
            store,
            queue: Arc::new(queue),
        });
        let logins = Arc::new(AuthCache::new(config.auth.cache_ttl.as_duration()));
        Ok(Server {
            policy: Policy::new(self.native, plugin_host.clone(), logins.clone()),
            handle: ServerHandle {
                logins,
                plugins: plugin_host,
                specs: Arc::new(std::sync::Mutex::new(specs)),
                config: Arc::new(config),
                tls: tls.clone(),
            },
            context,
            tls,
            listeners,
        })
    }
}

/// A built server, its sockets bound.
pub struct Server {
    handle: ServerHandle,
    policy: Policy,
    context: Arc<smtp::Context>,
    tls: TlsManager,
    listeners: Vec<(Service, std::net::TcpListener)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

/// Controls a server from elsewhere (another task, a signal handler, the control socket).
#[derive(Clone, Debug)]
pub struct ServerHandle {
    logins: Arc<AuthCache>,
    plugins: Arc<PluginHost>,
    specs: Arc<std::sync::Mutex<Vec<PluginSpec>>>,
    config: Arc<Config>,
    tls: TlsManager,
}

impl ServerHandle {
    /// Loads the plugin chain again (files re-read) and swaps it in; on any error the running set
    /// keeps serving and the error is returned. Returns the new set's generation.
    pub fn reload_plugins(&self) -> Result<u64, LoadError> {
        let specs = self.specs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let result = self.plugins.reload(&specs);
        match &result {
            Ok(generation) => tracing::info!(generation, "plugins reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "plugin reload failed; the previous plugins keep serving")
            }
        }
        result
    }

    /// Forgets every remembered login (after a password change or an account removal).
    pub fn flush_login_cache(&self) {
        self.logins.flush();
        tracing::info!("login cache flushed");
    }

    /// The generation of the plugin set serving now (0 for the first).
    pub fn plugin_generation(&self) -> u64 {
        self.plugins.current().generation()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The certificate served when the client names no host (self-signed on a default setup).
    pub fn certificate_path(&self) -> PathBuf {
        self.tls.default_cert_path().to_path_buf()
    }
}

impl Server {
    pub fn builder(config: Config) -> ServerBuilder {
        ServerBuilder {
            config,
            store: None,
            native: NativePolicy::default(),
            plugins: None,
            listeners: Vec::new(),
        }
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Where a service listens (several addresses possible; empty if it is off).
    pub fn local_addrs(&self, service: Service) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(s, _)| *s == service)
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting and gives open sessions
    /// `[limits] shutdown_grace` to finish the transaction in progress.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let config = self.handle.config.clone();
        let limits = &config.limits;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let limiter = ConnectionLimiter::new(limits.max_connections, limits.max_connections_per_ip);
        let settings = SmtpSettings {
            max_line_length: limits.max_line_length.as_u64() as usize,
            max_message_size: limits.max_message_size.as_u64(),
            max_recipients: limits.max_recipients as usize,
            idle_timeout: limits.smtp_idle_timeout.as_duration(),
            allow_plaintext_auth: config.tls.allow_plaintext_auth,
        };
        let background = [self
            .tls
            .spawn_watcher(Duration::from_secs(10), stop.clone())];
        let file_specs: Vec<PluginSpec> = self
            .handle
            .specs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let watcher = file_specs
            .iter()
            .any(|s| matches!(s.wasm, WasmSource::File(_)))
            .then(|| {
                FileWatcher::start(
                    self.handle.plugins.clone(),
                    file_specs.clone(),
                    Duration::from_secs(2),
                )
            });

        let mut accept_loops = Vec::new();
        let maildrops = Arc::new(Maildrops::default());
        let pop3 = Pop3Settings {
            hostname: config.server.hostname.clone(),
            max_line_length: limits.max_line_length.as_u64() as usize,
            idle_timeout: limits.pop3_idle_timeout.as_duration(),
            allow_plaintext_auth: config.tls.allow_plaintext_auth,
            policy: config.pop3.clone(),
        };
        let imap = ImapSettings {
            hostname: config.server.hostname.clone(),
            max_line_length: limits.max_line_length.as_u64() as usize,
            max_append_size: u32::try_from(limits.max_message_size.as_u64()).unwrap_or(u32::MAX),
            idle_timeout: limits.imap_idle_timeout.as_duration(),
            allow_plaintext_auth: config.tls.allow_plaintext_auth,
        };
        for (service, listener) in self.listeners {
            let smtp = |role| -> Arc<dyn Handler> {
                Arc::new(SmtpService::new(
                    role,
                    settings.clone(),
                    self.context.clone(),
                    self.policy.clone(),
                    Some(self.tls.clone()),
                ))
            };
            let handler: Arc<dyn Handler> = match service {
                Service::Smtp => smtp(Role::Inbound),
                Service::Submission => smtp(Role::Submission),
                Service::Submissions => smtp(Role::Submissions),
                Service::Pop3 | Service::Pop3s => Arc::new(Pop3Service::new(
                    service.name(),
                    pop3.clone(),
                    self.context.store.clone(),
                    self.policy.clone(),
                    Some(self.tls.clone()),
                    maildrops.clone(),
                )),
                Service::Imap | Service::Imaps => Arc::new(ImapService::new(
                    service.name(),
                    imap.clone(),
                    self.context.store.clone(),
                    self.policy.clone(),
                    Some(self.tls.clone()),
                )),
            };
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(ServerError::Listener)?;
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(service = service.name(), %addr, "listening");
            }
            let tls = service
                .implicit_tls()
                .then(|| (self.tls.clone(), crate::wire::HANDSHAKE_TIMEOUT));
            accept_loops.push(tokio::spawn(net::serve_listener(
                listener,
                handler,
                tls,
                limiter.clone(),
                tracker.clone(),
                stop.clone(),
            )));
        }

        shutdown.await;
        tracing::info!("shutting down: no new connections; open sessions may finish");
        stop.cancel();
        for l in accept_loops {
            let _ = l.await;
        }
        tracker.close();
        let grace = limits.shutdown_grace.as_duration();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                sessions = tracker.len(),
                "shutdown grace period over; closing the remaining sessions"
            );
        }
        drop(watcher);
        for b in background {
            b.abort();
        }
        Ok(())
    }
}
