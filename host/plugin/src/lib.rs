//! wasmail's WebAssembly plugin host.
//!
//! ```text
//!  PluginSpec (name, wasm, grants, limits, on_error, config)
//!        │ load: compile (cached) → imports ⊆ grants? → linker with granted imports only
//!        │       → InstancePre → which wasmail exports? → trial instance type-checks them
//!        ▼
//!  LoadedPlugin ──► PluginSet (immutable) ──► PluginHost: ArcSwap, reload = build then swap
//!                      │
//!          FilterSession::run(Hook)   authenticate()   route()
//!                      │
//!   fresh instance (pooling allocator) · memory limiter · epoch deadline (DNS waits excluded)
//!   trap / timeout / memory / invalid output → CallError → the plugin's on_error
//! ```
//!
//! Everything a guest returns is validated (`validate.rs`) before it reaches SMTP or a message.

mod bindings;
mod chain;
mod clock;
mod engine;
mod error;
mod host;
mod kv;
mod plugin;
mod spec;
mod validate;
mod watch;

pub use chain::{
    AuthOutcome, ChainOutcome, FilterSession, Hook, PluginHost, PluginSet, RouteOutcome,
    defer_reply,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{EngineOptions, PluginEngine};
pub use error::{CallError, LoadError};
pub use host::{DnsFailure, Resolver};
pub use plugin::{HostEnv, Inspection, inspect};
pub use spec::{Grants, Limits, OnError, PluginSpec, WasmSource};
pub use watch::FileWatcher;
