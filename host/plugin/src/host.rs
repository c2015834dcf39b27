//! What a plugin instance's store holds, and the host imports it may call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmail_types::MessageContent;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::wasmail::plugin::{clock, config, dns, kv, log, message, types};
use crate::clock::Clock;
use crate::kv::{KvError, Namespace};

/// Log lines one call may write, and their length.
const MAX_LOG_LINES: u32 = 64;
const MAX_LOG_LINE: usize = 4096;
/// DNS queries one call may make.
const MAX_DNS_QUERIES: u32 = 16;
/// Most octets one `message.read` returns.
const MAX_READ: u32 = 1 << 20;

/// DNS lookups for plugins, provided by the embedder (the server uses its resolver). Errors are
/// plain text for the plugin.
pub trait Resolver: Send + Sync + std::fmt::Debug {
    fn txt(&self, name: &str) -> Result<Vec<String>, DnsFailure>;
    fn ip(&self, name: &str) -> Result<Vec<String>, DnsFailure>;
    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, DnsFailure>;
    fn ptr(&self, address: &str) -> Result<Vec<String>, DnsFailure>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    NotFound,
    Failure(String),
}

/// What every instance of one plugin shares.
#[derive(Debug)]
pub(crate) struct PluginContext {
    pub name: String,
    pub config: toml::Table,
    pub kv: Option<Arc<Namespace>>,
    pub clock: Arc<dyn Clock>,
    pub resolver: Option<Arc<dyn Resolver>>,
}

/// A message handed to a data hook.
pub struct MessageHandle {
    content: Arc<dyn MessageContent>,
    headers: Option<Vec<(String, String)>>,
}

impl MessageHandle {
    pub(crate) fn new(content: Arc<dyn MessageContent>) -> MessageHandle {
        MessageHandle {
            content,
            headers: None,
        }
    }

    fn headers(&mut self) -> &[(String, String)] {
        let content = &self.content;
        self.headers
            .get_or_insert_with(|| parse_headers(&content.read_header().unwrap_or_default()))
    }
}

/// Header fields as (name, unfolded value). Lines that are neither a field nor a continuation
/// are skipped, as MTAs do with broken headers.
pub(crate) fn parse_headers(header: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(header);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim_end();
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
    }
    fields
}

/// One instance's store data.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: crate::plugin::Limiter,
    pub plugin: Arc<PluginContext>,
    pub timeout: Duration,
    /// When the current call started, and how long it waited on the host (DNS): the difference
    /// is what counts against `timeout`.
    pub call_started: Instant,
    pub host_wait: Duration,
    pub log_lines: u32,
    pub dns_queries: u32,
}

impl HostState {
    pub fn begin_call(&mut self) {
        self.call_started = Instant::now();
        self.host_wait = Duration::ZERO;
        self.log_lines = 0;
        self.dns_queries = 0;
    }

    /// Guest time used by the current call.
    pub fn guest_time(&self) -> Duration {
        self.call_started.elapsed().saturating_sub(self.host_wait)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl message::Host for HostState {}

impl message::HostMessage for HostState {
    fn size(&mut self, this: Resource<MessageHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&this)?.content.size())
    }

    fn header(
        &mut self,
        this: Resource<MessageHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        let m = self.table.get_mut(&this)?;
        Ok(m.headers()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn headers(
        &mut self,
        this: Resource<MessageHandle>,
    ) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.table.get_mut(&this)?.headers().to_vec())
    }

    fn read(
        &mut self,
        this: Resource<MessageHandle>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let m = self.table.get(&this)?;
        Ok(m.content.read_range(offset, u64::from(len.min(MAX_READ)))?)
    }

    fn drop(&mut self, this: Resource<MessageHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin.name, "plugin log limit reached for this call; dropping lines");
            }
            return Ok(());
        }
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        // Debug formatting escapes control characters: a plugin cannot forge log lines.
        let text = &message[..end];
        let plugin = &self.plugin.name;
        match level {
            log::Level::Trace => tracing::trace!(plugin = %plugin, message = ?text),
            log::Level::Debug => tracing::debug!(plugin = %plugin, message = ?text),
            log::Level::Info => tracing::info!(plugin = %plugin, message = ?text),
            log::Level::Warn => tracing::warn!(plugin = %plugin, message = ?text),
            log::Level::Error => tracing::error!(plugin = %plugin, message = ?text),
        }
        Ok(())
    }
}

/// The value at a dotted path of a TOML table.
fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(lookup(&self.plugin.config, &key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }

    fn all(&mut self) -> wasmtime::Result<String> {
        Ok(toml::to_string(&self.plugin.config).unwrap_or_default())
    }
}

fn kv_ns(state: &HostState) -> wasmtime::Result<&Namespace> {
    state
        .plugin
        .kv
        .as_deref()
        .ok_or_else(|| wasmtime::format_err!("kv used without a namespace"))
}

fn kv_error(e: KvError) -> kv::KvError {
    match e {
        KvError::TooLarge => kv::KvError::TooLarge,
        KvError::NotANumber => kv::KvError::NotANumber,
        KvError::Storage(s) => kv::KvError::Storage(s),
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(kv_ns(self)?.get(&key))
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Result<(), kv::KvError>> {
        Ok(kv_ns(self)?.set(&key, &value, ttl).map_err(kv_error))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        if let Err(e) = kv_ns(self)?.delete(&key) {
            tracing::warn!(plugin = %self.plugin.name, error = ?e, "kv delete failed");
        }
        Ok(())
    }

    fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl: Option<u64>,
    ) -> wasmtime::Result<Result<i64, kv::KvError>> {
        Ok(kv_ns(self)?.increment(&key, delta, ttl).map_err(kv_error))
    }
}

impl clock::Host for HostState {
    fn now_millis(&mut self) -> wasmtime::Result<u64> {
        Ok(self.plugin.clock.now_millis())
    }
}

impl HostState {
    /// Runs a DNS lookup, counted against the per-call limit, its wait excluded from the budget.
    fn dns<T>(
        &mut self,
        f: impl FnOnce(&dyn Resolver) -> Result<T, DnsFailure>,
    ) -> wasmtime::Result<Result<T, dns::DnsError>> {
        self.dns_queries += 1;
        if self.dns_queries > MAX_DNS_QUERIES {
            return Ok(Err(dns::DnsError::Limit));
        }
        let resolver = self
            .plugin
            .resolver
            .clone()
            .ok_or_else(|| wasmtime::format_err!("dns used without a resolver"))?;
        let started = Instant::now();
        let result = f(resolver.as_ref());
        self.host_wait += started.elapsed();
        Ok(result.map_err(|e| match e {
            DnsFailure::NotFound => dns::DnsError::NotFound,
            DnsFailure::Failure(s) => dns::DnsError::Failure(s),
        }))
    }
}

impl dns::Host for HostState {
    fn txt(&mut self, name: String) -> wasmtime::Result<Result<Vec<String>, dns::DnsError>> {
        self.dns(|r| r.txt(&name))
    }

    fn ip(&mut self, name: String) -> wasmtime::Result<Result<Vec<String>, dns::DnsError>> {
        self.dns(|r| r.ip(&name))
    }

    fn mx(&mut self, name: String) -> wasmtime::Result<Result<Vec<(u16, String)>, dns::DnsError>> {
        self.dns(|r| r.mx(&name))
    }

    fn ptr(&mut self, address: String) -> wasmtime::Result<Result<Vec<String>, dns::DnsError>> {
        self.dns(|r| r.ptr(&address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded_and_broken_lines_skipped() {
        let h = b"Subject: hello\r\n  world\r\nFrom: a@b\r\nnot a header line\r\nX-Empty:\r\n\r\nbody: no";
        let parsed = parse_headers(h);
        assert_eq!(
            parsed,
            [
                ("Subject".to_owned(), "hello  world".to_owned()),
                ("From".to_owned(), "a@b".to_owned()),
                ("X-Empty".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn config_lookup_by_dotted_path() {
        let t: toml::Table = toml::from_str("word = \"x\"\n[limits]\nper-hour = 5\n").unwrap();
        assert_eq!(lookup(&t, "word").and_then(|v| v.as_str()), Some("x"));
        assert_eq!(
            lookup(&t, "limits.per-hour").map(|v| v.to_string()),
            Some("5".to_owned())
        );
        assert!(lookup(&t, "limits.none").is_none() && lookup(&t, "word.x").is_none());
    }
}
