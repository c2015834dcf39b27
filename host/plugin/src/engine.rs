//! The one wasmtime engine: component model, pooling allocator, epoch interruption, and a cache
//! of compiled components in the data dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::LoadError;

/// How often the epoch advances; the resolution of per-call time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Instances that may exist at once (SMTP transactions in flight × filters). Beyond it an
    /// instantiation fails and the plugin's `on_error` applies.
    pub max_instances: u32,
    /// The largest memory limit any plugin may be given.
    pub max_memory: u64,
    /// Where compiled components are kept between runs; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (fast instantiation). Off only where virtual memory is scarce.
    pub pooling: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_instances: 1000,
            max_memory: 256 << 20,
            cache_dir: None,
            pooling: true,
        }
    }
}

#[derive(Debug)]
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) options: EngineOptions,
    stop: Arc<AtomicBool>,
}

impl PluginEngine {
    pub fn new(options: EngineOptions) -> Result<PluginEngine, LoadError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(512 << 10);
        if options.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(options.max_instances);
            pool.total_core_instances(options.max_instances * 4);
            pool.total_memories(options.max_instances * 2);
            pool.total_tables(options.max_instances * 4);
            pool.max_memory_size(options.max_memory as usize);
            pool.max_memories_per_component(4);
            pool.max_tables_per_component(8);
            pool.max_core_instances_per_component(32);
            // Nothing kept resident: zeroing a kept-resident region on every release cost more
            // than the page faults it saves for our short-lived instances (measured with
            // `cargo bench -p wasmail-plugin`: 1 MiB resident 41 µs per fresh-instance
            // transaction, none 23 µs).
            pool.linear_memory_keep_resident(0);
            pool.table_keep_resident(0);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("wasmail-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match ticker_engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| LoadError::Engine(format!("epoch thread: {e}")))?;
        Ok(PluginEngine {
            engine,
            options,
            stop,
        })
    }

    /// Compiles a component, or loads its compiled form from the cache.
    pub(crate) fn compile(&self, wasm: &[u8]) -> Result<Component, LoadError> {
        let Some(dir) = &self.options.cache_dir else {
            return Component::new(&self.engine, wasm)
                .map_err(|e| LoadError::Compile(format!("{e:#}")));
        };
        let mut hasher = Sha256::new();
        hasher.update(wasm);
        // The compatibility hash changes with the wasmtime version and the engine settings, so a
        // cached artifact from another build is never loaded.
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut compat);
        hasher.update(std::hash::Hasher::finish(&compat).to_le_bytes());
        let key: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = dir.join(format!("{key}.cwasm"));
        if path.exists() {
            // SAFETY: the file is an artifact this program wrote into its own data dir under a
            // name derived from the component's hash and this engine's compatibility hash, and
            // wasmtime checks its header against the engine. Anyone able to replace it can
            // already replace the plugins themselves.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.engine, &path) };
            match loaded {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unusable compiled-plugin cache entry; recompiling")
                }
            }
        }
        let component =
            Component::new(&self.engine, wasm).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            let tmp = dir.join(format!("{key}.tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), error = %e, "could not cache a compiled plugin");
        }
        Ok(component)
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
