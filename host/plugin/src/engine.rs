//! The one wasmtime engine: component model, pooling allocator, epoch interruption, and a cache
//! of compiled components in the data dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::LoadError;

/// How often the epoch advances; the resolution of per-call time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Dirty bytes of a released linear memory that are reset in place (and stay resident, holding
/// the module's initial contents) rather than decommitted. A headers-only filter dirties 8-16 KiB;
/// the cost is at most this much resident memory per pool slot ever used.
const MEMORY_KEEP_RESIDENT: usize = 128 << 10;
/// The same for tables (a component's tables are a few hundred entries).
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

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
            // Releasing a slot with `madvise` costs a TLB shootdown on every CPU and page faults
            // on the next instance: most of a fresh-instance call. So released slots are reset
            // in place instead, and isolation is kept because wasmtime restores every byte the
            // previous instance could have changed before the slot is reused: each written page
            // of a linear memory is copied back from the module's initial image (or zeroed),
            // found with Linux's `PAGEMAP_SCAN` (so only dirty pages are touched, up to
            // `MEMORY_KEEP_RESIDENT`; beyond that the rest is decommitted as before), and a
            // table's used part is zeroed. Without `PAGEMAP_SCAN` (Linux < 6.7) a memory would
            // be reset by zeroing its first bytes, while a guest's dirty pages sit near its
            // stack top (~1 MiB in): that costs more than `madvise`, so memories keep nothing.
            // Measured with `cargo bench -p wasmail-plugin`, headers-only filter on a fresh
            // instance: 25 µs with nothing kept resident, 10 µs with this.
            let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
            pool.pagemap_scan(if pagemap { Enabled::Yes } else { Enabled::No });
            pool.linear_memory_keep_resident(if pagemap { MEMORY_KEEP_RESIDENT } else { 0 });
            pool.table_keep_resident(TABLE_KEEP_RESIDENT);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        } else {
            // Without a pool every instance gets new memory anyway: copying a plugin's small
            // data segments into it is cheaper than mapping the copy-on-write image and taking
            // its page faults (bench: 29 µs → 22 µs per fresh-instance transaction).
            config.memory_init_cow(false);
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store};

    /// A core module: `(memory (export "mem") 2) (data (i32.const 16) "wasmail-image")`.
    const MODULE: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x05, 0x03, 0x01, 0x00, 0x02, // memory: min 2 pages
        0x07, 0x07, 0x01, 0x03, b'm', b'e', b'm', 0x02, 0x00, // export "mem"
        0x0b, 0x13, 0x01, 0x00, 0x41, 0x10, 0x0b, 0x0d, // data at i32.const 16, 13 bytes
        b'w', b'a', b's', b'm', b'a', b'i', b'l', b'-', b'i', b'm', b'a', b'g', b'e',
    ];

    /// Pool slots are reset in place rather than decommitted (`MEMORY_KEEP_RESIDENT`), so prove
    /// what isolation needs: an instance reusing a slot sees exactly the module's initial memory,
    /// whatever the previous one wrote, within the kept-resident budget or far beyond it.
    #[test]
    fn a_reused_pool_slot_holds_nothing_of_the_previous_instance() {
        let engine = PluginEngine::new(EngineOptions {
            max_instances: 1,
            ..EngineOptions::default()
        })
        .unwrap();
        let module = Module::new(&engine.engine, MODULE).unwrap();
        let mut initial = vec![0u8; 2 << 16];
        initial[16..29].copy_from_slice(b"wasmail-image");
        let mut slot = None;
        // Dirty pages to leave behind: a few (reset by copying), then ~20 MiB (mostly decommitted).
        for (round, grow) in [0u64, 300, 0, 300, 0].into_iter().enumerate() {
            let mut store = Store::new(&engine.engine, ());
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let memory = instance.get_memory(&mut store, "mem").unwrap();
            let base = memory.data_ptr(&store) as usize;
            assert_eq!(
                *slot.get_or_insert(base),
                base,
                "round {round}: slot reused"
            );
            assert!(
                memory.data(&store) == initial.as_slice(),
                "round {round}: memory is not the initial image"
            );
            memory.grow(&mut store, grow).unwrap();
            let data = memory.data_mut(&mut store);
            for page in data.chunks_mut(4096) {
                page.fill(0xa5);
            }
        }
    }
}
