use std::fmt;

/// Why a plugin (or a whole plugin set) could not be loaded. The old set keeps serving.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The wasmtime engine could not be set up (e.g. not enough virtual memory for the pool).
    Engine(String),
    /// The plugin's file could not be read.
    Read { plugin: String, reason: String },
    /// Not a valid component for this engine.
    Compile(String),
    /// A valid component that is not a wasmail plugin, or not of the role it was configured for.
    NotAPlugin { plugin: String, reason: String },
    /// The component imports something its configuration does not grant.
    NotGranted { plugin: String, import: String },
    /// The configuration is wrong (duplicate name, bad name, limit above the engine's maximum).
    Config(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Engine(e) => write!(f, "plugin engine: {e}"),
            LoadError::Read { plugin, reason } => {
                write!(f, "plugin {plugin}: cannot read: {reason}")
            }
            LoadError::Compile(e) => write!(f, "not a valid WebAssembly component: {e}"),
            LoadError::NotAPlugin { plugin, reason } => {
                write!(f, "plugin {plugin}: not a wasmail plugin: {reason}")
            }
            LoadError::NotGranted { plugin, import } => {
                write!(
                    f,
                    "plugin {plugin}: imports {import}, which its configuration does not grant"
                )
            }
            LoadError::Config(e) => write!(f, "plugin configuration: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// How a plugin call failed. What the mail sees is decided by the plugin's `on_error`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The call ran past its time limit.
    Timeout,
    /// The guest tried to grow memory past its limit.
    Memory,
    /// The guest trapped (panic, unreachable, out-of-bounds...).
    Trap(String),
    /// The guest returned something invalid (see `validate.rs`).
    InvalidOutput(String),
    /// No instance could be made (pool exhausted, instantiation trapped).
    Instantiate(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("time limit exceeded"),
            CallError::Memory => f.write_str("memory limit exceeded"),
            CallError::Trap(t) => write!(f, "trapped: {t}"),
            CallError::InvalidOutput(e) => write!(f, "invalid output: {e}"),
            CallError::Instantiate(e) => write!(f, "could not instantiate: {e}"),
        }
    }
}

impl std::error::Error for CallError {}
