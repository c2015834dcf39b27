//! What the operator says about a plugin: where its code is, what it may use, its limits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a plugin's component comes from.
#[derive(Clone, Debug)]
pub enum WasmSource {
    /// Bytes compiled into the binary or handed over by an embedder.
    Bytes(Arc<[u8]>),
    /// A file, re-read on every reload.
    File(PathBuf),
}

/// What a plugin failure (trap, timeout, memory limit, invalid output) does to the mail at hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// Temporary failure (451 4.3.0): the sender retries, nothing is lost.
    #[default]
    Defer,
    /// Skip the plugin (fail open).
    Continue,
    /// Permanent failure (550 5.3.0) (fail closed).
    Reject,
}

/// Host imports a plugin may use. Anything not granted is absent: a component importing it is
/// refused at load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub log: bool,
    pub config: bool,
    pub kv: bool,
    pub clock: bool,
    pub dns: bool,
    /// Host directories visible read-only to the plugin, each at the same path inside.
    pub read_dirs: Vec<PathBuf>,
}

impl Grants {
    /// Every host import, no directories: what the built-in plugins get.
    pub fn all_imports() -> Grants {
        Grants {
            log: true,
            config: true,
            kv: true,
            clock: true,
            dns: true,
            read_dirs: Vec::new(),
        }
    }
}

/// Hard limits per plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory of one instance, in bytes.
    pub memory: u64,
    /// Wall-clock time one call may run guest code (time waiting on host DNS lookups is not
    /// counted).
    pub timeout: Duration,
    /// Bytes of persistent kv storage.
    pub kv_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            timeout: Duration::from_millis(100),
            kv_bytes: 16 << 20,
        }
    }
}

/// One plugin as configured.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// Unique, `[A-Za-z0-9_-]{1,64}`; names logs, metrics and the kv namespace.
    pub name: String,
    pub wasm: WasmSource,
    pub on_error: OnError,
    pub limits: Limits,
    pub grants: Grants,
    /// The plugin's own settings (`[plugins.config]`), readable through the `config` import.
    pub config: toml::Table,
}

impl PluginSpec {
    pub fn new(name: &str, wasm: WasmSource) -> PluginSpec {
        PluginSpec {
            name: name.to_owned(),
            wasm,
            on_error: OnError::default(),
            limits: Limits::default(),
            grants: Grants::default(),
            config: toml::Table::new(),
        }
    }

    pub fn valid_name(name: &str) -> bool {
        (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}
