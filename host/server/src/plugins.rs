//! The plugin chain a server runs: `[[plugins]]` from config, or the built-in defaults compiled
//! into this binary when config lists none.
//!
//! | built-in | world | configured from |
//! |---|---|---|
//! | `auth-passwd` | authenticator | `<data_dir>/auth/users` (kept by `wasmail user`), read-only grant of its directory |
//! | `policy-local` | delivery-policy | `[server] domains` |

use std::sync::Arc;
use std::time::Duration;

use wasmail_plugin::{
    EngineOptions, Grants, HostEnv, Limits, LoadError, OnError, PluginEngine, PluginHost,
    PluginSpec, Resolver, SystemClock, WasmSource,
};

use crate::config::{self, Config};
use crate::dns::SystemResolver;

/// The built-in plugins, by name: their components are part of this binary.
pub const BUILTIN: &[(&str, &[u8])] = &[
    ("auth-passwd", wasmail_plugin_artifacts::AUTH_PASSWD),
    ("policy-local", wasmail_plugin_artifacts::POLICY_LOCAL),
    ("filter-rules", wasmail_plugin_artifacts::FILTER_RULES),
    ("filter-greylist", wasmail_plugin_artifacts::FILTER_GREYLIST),
    (
        "filter-ratelimit",
        wasmail_plugin_artifacts::FILTER_RATELIMIT,
    ),
];

/// A built-in component by name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The plugins config asks for; the defaults when it asks for none.
pub fn specs(config: &Config) -> Vec<PluginSpec> {
    if config.plugins.is_empty() {
        default_specs(config)
    } else {
        config.plugins.iter().map(spec_from_config).collect()
    }
}

fn spec_from_config(p: &config::PluginConfig) -> PluginSpec {
    let wasm = match p.file.to_str().and_then(|f| f.strip_prefix("builtin:")) {
        Some(name) => match builtin(name) {
            Some(bytes) => WasmSource::Bytes(Arc::from(bytes)),
            // Config validation names the unknown built-in; a file of that name fails to load.
            None => WasmSource::File(p.file.clone()),
        },
        None => WasmSource::File(p.file.clone()),
    };
    PluginSpec {
        name: p.name.clone(),
        wasm,
        on_error: match p.on_error {
            config::OnError::Defer => OnError::Defer,
            config::OnError::Continue => OnError::Continue,
            config::OnError::Reject => OnError::Reject,
        },
        limits: Limits {
            memory: p.memory.as_u64(),
            timeout: p.timeout.as_duration(),
            ..Limits::default()
        },
        grants: Grants {
            log: p.grants.log,
            config: p.grants.config,
            kv: p.grants.kv,
            clock: p.grants.clock,
            dns: p.grants.dns,
            read_dirs: p.grants.read_dirs.clone(),
        },
        config: p.config.clone(),
    }
}

/// `auth-passwd` on the data dir's users file, then `policy-local` for the configured domains.
pub fn default_specs(config: &Config) -> Vec<PluginSpec> {
    let data_dir = &config.server.data_dir;
    let users_dir = crate::users::users_dir(data_dir);
    let mut auth = PluginSpec::new(
        "auth-passwd",
        WasmSource::Bytes(Arc::from(wasmail_plugin_artifacts::AUTH_PASSWD)),
    );
    auth.grants = Grants {
        log: true,
        config: true,
        kv: true,
        clock: true,
        dns: false,
        read_dirs: vec![users_dir],
    };
    // Verifying an argon2id hash takes tens of milliseconds: far beyond a filter's budget.
    auth.limits.timeout = Duration::from_secs(2);
    auth.config.insert(
        "users_file".into(),
        toml::Value::String(crate::users::users_file(data_dir).display().to_string()),
    );

    let mut local = PluginSpec::new(
        "policy-local",
        WasmSource::Bytes(Arc::from(wasmail_plugin_artifacts::POLICY_LOCAL)),
    );
    local.grants = Grants {
        log: true,
        config: true,
        ..Grants::default()
    };
    local.config.insert(
        "domains".into(),
        toml::Value::Array(
            config
                .server
                .domains
                .iter()
                .map(|d| toml::Value::String(d.clone()))
                .collect(),
        ),
    );
    vec![auth, local]
}

/// The plugin host for a server configured by `config`: compiled components cached under
/// `<data_dir>/plugins/cache`, kv under `<data_dir>/plugins/kv`, DNS through the resolver of
/// `[dns]`. Without a usable resolver (no servers configured and no `/etc/resolv.conf`) the host
/// has none, and plugins that import `dns` are refused at load.
pub fn host(config: &Config, specs: &[PluginSpec]) -> Result<PluginHost, LoadError> {
    let data_dir = &config.server.data_dir;
    let engine = PluginEngine::new(EngineOptions {
        cache_dir: Some(data_dir.join("plugins").join("cache")),
        ..EngineOptions::default()
    })?;
    let env = HostEnv::new(
        Some(data_dir.join("plugins").join("kv")),
        Arc::new(SystemClock),
        resolver(config, specs),
    );
    PluginHost::new(engine, env, specs)
}

/// The resolver for plugins granted `dns`. Built even when no plugin is granted it yet, since a
/// reload may bring one; its failure is only worth a warning when one is.
fn resolver(config: &Config, specs: &[PluginSpec]) -> Option<Arc<dyn Resolver>> {
    match SystemResolver::from_config(&config.dns) {
        Ok(resolver) => Some(Arc::new(resolver)),
        Err(error) => {
            if specs.iter().any(|spec| spec.grants.dns) {
                tracing::warn!(%error, "no DNS for plugins: those that use dns will not load");
            } else {
                tracing::info!(%error, "no DNS for plugins");
            }
            None
        }
    }
}
