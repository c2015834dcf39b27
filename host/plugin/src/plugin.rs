//! One loaded plugin: its compiled component, what it exports, and how to run it under limits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::bindings::exports::wasmail::plugin::{
    authentication, connect_hook, data_hook, helo_hook, mail_from_hook, rcpt_hook, routing,
};
use crate::bindings::wasmail::plugin as imports;
use crate::clock::Clock;
use crate::engine::{EPOCH_TICK, PluginEngine};
use crate::error::{CallError, LoadError};
use crate::host::{HostState, PluginContext, Resolver};
use crate::kv::Namespace;
use crate::spec::{OnError, PluginSpec, WasmSource};

/// The WIT package's interfaces, by the names components import and export them.
const PACKAGE: &str = "wasmail:plugin/";
const VERSION: &str = "@0.1.0";

/// Which wasmail interfaces a component exports.
#[derive(Default)]
pub(crate) struct Exports {
    pub connect: Option<connect_hook::GuestIndices>,
    pub helo: Option<helo_hook::GuestIndices>,
    pub mail_from: Option<mail_from_hook::GuestIndices>,
    pub rcpt: Option<rcpt_hook::GuestIndices>,
    pub data: Option<data_hook::GuestIndices>,
    pub authentication: Option<authentication::GuestIndices>,
    pub routing: Option<routing::GuestIndices>,
}

impl Exports {
    fn find(pre: &InstancePre<HostState>) -> Exports {
        Exports {
            connect: connect_hook::GuestIndices::new(pre).ok(),
            helo: helo_hook::GuestIndices::new(pre).ok(),
            mail_from: mail_from_hook::GuestIndices::new(pre).ok(),
            rcpt: rcpt_hook::GuestIndices::new(pre).ok(),
            data: data_hook::GuestIndices::new(pre).ok(),
            authentication: authentication::GuestIndices::new(pre).ok(),
            routing: routing::GuestIndices::new(pre).ok(),
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (present, name) in [
            (self.connect.is_some(), "connect-hook"),
            (self.helo.is_some(), "helo-hook"),
            (self.mail_from.is_some(), "mail-from-hook"),
            (self.rcpt.is_some(), "rcpt-hook"),
            (self.data.is_some(), "data-hook"),
            (self.authentication.is_some(), "authentication"),
            (self.routing.is_some(), "routing"),
        ] {
            if present {
                out.push(name);
            }
        }
        out
    }

    /// Instantiating type-checks every export the indices found: a component exporting an
    /// interface of the right name but the wrong shape is refused here, at load.
    fn check(&self, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<()> {
        if let Some(i) = &self.connect {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.helo {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.mail_from {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.rcpt {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.data {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.authentication {
            i.load(&mut *store, instance)?;
        }
        if let Some(i) = &self.routing {
            i.load(&mut *store, instance)?;
        }
        Ok(())
    }
}

/// Per-plugin counters for metrics.
#[derive(Debug, Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    pub nanos: AtomicU64,
}

/// What a plugin set's plugins share with the host: where kv lives, the clock, the resolver.
#[derive(Debug)]
pub struct HostEnv {
    pub kv_dir: Option<std::path::PathBuf>,
    pub clock: Arc<dyn Clock>,
    pub resolver: Option<Arc<dyn Resolver>>,
    /// One namespace per plugin name, shared by every set that plugin is in, so an old set still
    /// finishing transactions and the new one write through the same object.
    namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
}

impl HostEnv {
    pub fn new(
        kv_dir: Option<std::path::PathBuf>,
        clock: Arc<dyn Clock>,
        resolver: Option<Arc<dyn Resolver>>,
    ) -> HostEnv {
        HostEnv {
            kv_dir,
            clock,
            resolver,
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    fn namespace(&self, spec: &PluginSpec) -> Result<Arc<Namespace>, LoadError> {
        let mut map = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ns) = map.get(&spec.name) {
            return Ok(ns.clone());
        }
        let dir = self.kv_dir.as_ref().ok_or_else(|| {
            LoadError::Config(format!(
                "plugin {} is granted kv but no kv directory is configured",
                spec.name
            ))
        })?;
        let ns = Namespace::open(dir, &spec.name, spec.limits.kv_bytes, self.clock.clone())
            .map_err(|e| LoadError::Config(format!("plugin {}: kv: {e}", spec.name)))?;
        let ns = Arc::new(ns);
        map.insert(spec.name.clone(), ns.clone());
        Ok(ns)
    }
}

pub(crate) struct LoadedPlugin {
    pub spec: PluginSpec,
    pub exports: Exports,
    pre: InstancePre<HostState>,
    engine: wasmtime::Engine,
    context: Arc<PluginContext>,
    pub stats: PluginStats,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.spec.name)
            .field("exports", &self.exports.names())
            .finish_non_exhaustive()
    }
}

/// Memory and table growth within the plugin's limit; a denied growth is remembered so the
/// resulting trap is reported as a memory-limit breach.
pub(crate) struct Limiter {
    memory: usize,
    pub denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.denied = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.memory
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Reads the component bytes a spec names.
pub(crate) fn read_wasm(spec: &PluginSpec) -> Result<Arc<[u8]>, LoadError> {
    match &spec.wasm {
        WasmSource::Bytes(b) => Ok(b.clone()),
        WasmSource::File(path) => std::fs::read(path)
            .map(Arc::from)
            .map_err(|e| LoadError::Read {
                plugin: spec.name.clone(),
                reason: format!("{}: {e}", path.display()),
            }),
    }
}

/// What a component imports, split into wasmail interfaces (by short name) and others.
pub(crate) fn imports_of(
    engine: &wasmtime::Engine,
    component: &Component,
) -> (Vec<String>, Vec<String>) {
    let mut wasmail = Vec::new();
    let mut other = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            other.push(name.to_owned());
            continue;
        }
        match name
            .strip_prefix(PACKAGE)
            .and_then(|n| n.strip_suffix(VERSION))
        {
            Some(short) => wasmail.push(short.to_owned()),
            None => other.push(name.to_owned()),
        }
    }
    (wasmail, other)
}

impl LoadedPlugin {
    pub fn load(
        engine: &PluginEngine,
        env: &HostEnv,
        spec: &PluginSpec,
    ) -> Result<LoadedPlugin, LoadError> {
        if !PluginSpec::valid_name(&spec.name) {
            return Err(LoadError::Config(format!(
                "plugin name {:?} must be 1-64 of A-Z a-z 0-9 - _",
                spec.name
            )));
        }
        if spec.limits.memory > engine.options.max_memory {
            return Err(LoadError::Config(format!(
                "plugin {}: memory limit {} exceeds the engine's maximum {}",
                spec.name, spec.limits.memory, engine.options.max_memory
            )));
        }
        let wasm = read_wasm(spec)?;
        let component = engine.compile(&wasm).map_err(|e| match e {
            LoadError::Compile(why) => LoadError::NotAPlugin {
                plugin: spec.name.clone(),
                reason: why,
            },
            other => other,
        })?;
        let grants = &spec.grants;
        let (wasmail, other) = imports_of(&engine.engine, &component);
        for import in &wasmail {
            let granted = match import.as_str() {
                "types" | "message" => true,
                "log" => grants.log,
                "config" => grants.config,
                "kv" => grants.kv,
                "clock" => grants.clock,
                "dns" => grants.dns,
                _ => {
                    return Err(LoadError::NotAPlugin {
                        plugin: spec.name.clone(),
                        reason: format!("imports unknown interface {PACKAGE}{import}"),
                    });
                }
            };
            if !granted {
                return Err(LoadError::NotGranted {
                    plugin: spec.name.clone(),
                    import: format!("{PACKAGE}{import}"),
                });
            }
        }
        if let Some(unknown) = other.iter().find(|n| !n.starts_with("wasi:")) {
            return Err(LoadError::NotAPlugin {
                plugin: spec.name.clone(),
                reason: format!("imports {unknown}, which wasmail does not provide"),
            });
        }
        if grants.dns && wasmail.iter().any(|i| i == "dns") && env.resolver.is_none() {
            return Err(LoadError::Config(format!(
                "plugin {} uses dns but this host has no resolver",
                spec.name
            )));
        }

        let mut linker: Linker<HostState> = Linker::new(&engine.engine);
        let add = |r: wasmtime::Result<()>| {
            r.map_err(|e| LoadError::Engine(format!("linking host imports: {e}")))
        };
        add(wasmtime_wasi::p2::add_to_linker_sync(&mut linker))?;
        add(imports::types::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s))?;
        add(imports::message::add_to_linker::<
            HostState,
            HasSelf<HostState>,
        >(&mut linker, |s| s))?;
        if grants.log {
            add(imports::log::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s))?;
        }
        if grants.config {
            add(imports::config::add_to_linker::<
                HostState,
                HasSelf<HostState>,
            >(&mut linker, |s| s))?;
        }
        if grants.kv {
            add(imports::kv::add_to_linker::<HostState, HasSelf<HostState>>(
                &mut linker,
                |s| s,
            ))?;
        }
        if grants.clock {
            add(
                imports::clock::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s),
            )?;
        }
        if grants.dns {
            add(imports::dns::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s))?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::NotAPlugin {
                plugin: spec.name.clone(),
                reason: format!("{e:#}"),
            })?;
        let exports = Exports::find(&pre);
        if exports.names().is_empty() {
            return Err(LoadError::NotAPlugin {
                plugin: spec.name.clone(),
                reason: "exports none of the wasmail interfaces (hooks, authentication, routing)"
                    .into(),
            });
        }
        let kv = if grants.kv {
            Some(env.namespace(spec)?)
        } else {
            None
        };
        let context = Arc::new(PluginContext {
            name: spec.name.clone(),
            config: spec.config.clone(),
            kv,
            clock: env.clock.clone(),
            resolver: if grants.dns {
                env.resolver.clone()
            } else {
                None
            },
        });
        let plugin = LoadedPlugin {
            spec: spec.clone(),
            exports,
            pre,
            engine: engine.engine.clone(),
            context,
            stats: PluginStats::default(),
        };
        // One trial instance: start functions run and every export is type-checked now rather
        // than on the first message.
        let mut live = plugin.instantiate().map_err(|e| LoadError::NotAPlugin {
            plugin: spec.name.clone(),
            reason: e.to_string(),
        })?;
        plugin
            .exports
            .check(&mut live.store, &live.instance)
            .map_err(|e| LoadError::NotAPlugin {
                plugin: spec.name.clone(),
                reason: format!("{e:#}"),
            })?;
        Ok(plugin)
    }

    /// A fresh, isolated instance.
    pub fn instantiate(&self) -> Result<Live, CallError> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for dir in &self.spec.grants.read_dirs {
            let guest = dir.to_string_lossy().into_owned();
            wasi.preopened_dir(dir, &guest, FsPerms::ReadOnly)
                .map_err(|e| CallError::Instantiate(format!("read dir {}: {e}", dir.display())))?;
        }
        let state = HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory: self.spec.limits.memory as usize,
                denied: false,
            },
            plugin: self.context.clone(),
            timeout: self.spec.limits.timeout,
            call_started: Instant::now(),
            host_wait: Duration::ZERO,
            log_lines: 0,
            dns_queries: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            let used = state.guest_time();
            if used >= state.timeout {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Continue(ticks(state.timeout - used)))
        });
        store.data_mut().begin_call();
        store.set_epoch_deadline(ticks(self.spec.limits.timeout));
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e))?;
        Ok(Live { store, instance })
    }

    /// Runs `f` against a live instance with the call's limits, timing and counting it.
    pub fn call<R>(
        &self,
        live: &mut Live,
        f: impl FnOnce(&mut Live) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let started = Instant::now();
        live.store.data_mut().begin_call();
        live.store
            .set_epoch_deadline(ticks(self.spec.limits.timeout));
        let result = f(live).map_err(|e| classify(&live.store, e));
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats
            .nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    pub fn on_error(&self) -> OnError {
        self.spec.on_error
    }
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros() / EPOCH_TICK.as_micros()) as u64 + 1
}

fn classify(store: &Store<HostState>, e: wasmtime::Error) -> CallError {
    if store.data().limiter.denied {
        return CallError::Memory;
    }
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return CallError::Timeout;
    }
    let mut text = format!("{e:#}");
    text.truncate(500);
    CallError::Trap(text)
}

/// An instance and its store.
pub(crate) struct Live {
    pub store: Store<HostState>,
    pub instance: Instance,
}

/// What `wasmail plugin check` reports about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// wasmail interfaces it exports ("data-hook", "authentication", ...).
    pub exports: Vec<&'static str>,
    /// wasmail host interfaces it imports ("kv", "log", ...): the grants it needs.
    pub imports: Vec<String>,
    /// Other imports (WASI), all provided sandboxed.
    pub wasi_imports: Vec<String>,
}

/// Checks a component the way loading does, with every import granted, and says what it is.
pub fn inspect(engine: &PluginEngine, wasm: &[u8]) -> Result<Inspection, LoadError> {
    let mut spec = PluginSpec::new("check", WasmSource::Bytes(Arc::from(wasm)));
    spec.grants = crate::spec::Grants::all_imports();
    let env = HostEnv::new(
        None,
        Arc::new(crate::clock::SystemClock),
        Some(Arc::new(NoDns)),
    );
    let component = engine.compile(wasm)?;
    let (wasmail, other) = imports_of(&engine.engine, &component);
    // kv needs a namespace; a throwaway directory keeps `check` free of side effects.
    let tmp = std::env::temp_dir().join(format!("wasmail-check-{}", std::process::id()));
    let env = HostEnv {
        kv_dir: Some(tmp.clone()),
        ..env
    };
    let loaded = LoadedPlugin::load(engine, &env, &spec);
    let _ = std::fs::remove_dir_all(&tmp);
    let loaded = loaded.map_err(|e| match e {
        LoadError::NotAPlugin { reason, .. } => LoadError::NotAPlugin {
            plugin: "component".into(),
            reason,
        },
        other => other,
    })?;
    let imports = wasmail
        .into_iter()
        .filter(|i| i != "types" && i != "message")
        .collect();
    Ok(Inspection {
        exports: loaded.exports.names(),
        imports,
        wasi_imports: other,
    })
}

/// A resolver that knows nothing (for `inspect`, which never calls a plugin).
#[derive(Debug)]
struct NoDns;

impl Resolver for NoDns {
    fn txt(&self, _: &str) -> Result<Vec<String>, crate::host::DnsFailure> {
        Err(crate::host::DnsFailure::NotFound)
    }
    fn ip(&self, _: &str) -> Result<Vec<String>, crate::host::DnsFailure> {
        Err(crate::host::DnsFailure::NotFound)
    }
    fn mx(&self, _: &str) -> Result<Vec<(u16, String)>, crate::host::DnsFailure> {
        Err(crate::host::DnsFailure::NotFound)
    }
    fn ptr(&self, _: &str) -> Result<Vec<String>, crate::host::DnsFailure> {
        Err(crate::host::DnsFailure::NotFound)
    }
}
