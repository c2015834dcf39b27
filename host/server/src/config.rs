//! The server configuration: one TOML file, every key optional.
//!
//! ```text
//!   config.toml ──toml + serde──▶ Config ──validate()──▶ Config the server may start with
//!   (no file)   ──Default──────▶ Config     (the embedded defaults; equal to example.toml)
//! ```
//!
//! Invariants the tests hold:
//! - Every struct rejects unknown keys (`deny_unknown_fields`), and the error names the key, the
//!   file and the line, so a typo never silently falls back to a default.
//! - Every field has a default, so an empty file, no file and [`Config::example`] all give
//!   [`Config::default`].
//! - [`Config::example`] mentions every key (commented out where the default is "absent").
//!
//! Relative paths (data dir, certificates, plugin files) are resolved against the working
//! directory the process starts in, like the default `./wasmail-data`; production configs should
//! use absolute paths.

mod units;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use wasmail_types::Domain;

pub use units::{ByteSize, QuantityError, TimeSpan};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub services: Services,
    pub tls: TlsConfig,
    pub limits: Limits,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub dns: DnsConfig,
    pub pop3: Pop3Config,
    pub auth: AuthConfig,
    /// The plugin chain, in the order the plugins run. Empty means the built-in defaults.
    pub plugins: Vec<PluginConfig>,
}

/// `[server]`: who this server is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// This host's name, used in greetings and `Received:` headers.
    pub hostname: String,
    /// Mailboxes, users, plugin state and the self-signed certificate live here.
    pub data_dir: PathBuf,
    /// Local domains: mail for these is delivered here.
    pub domains: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".to_owned(),
            data_dir: PathBuf::from("./wasmail-data"),
            domains: vec!["localhost".to_owned()],
        }
    }
}

/// `[services.*]`: the listeners, one per protocol role.
///
/// A service table that sets only some keys keeps that service's own defaults for the rest, so
/// `[services.smtp] enabled = false` does not also clear its listen addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawServices")]
pub struct Services {
    /// Inbound MTA (production port 25): no AUTH required, accepts mail for local domains only.
    pub smtp: Service,
    /// Message submission (port 587): STARTTLS and AUTH required.
    pub submission: Service,
    /// Message submission over implicit TLS (port 465).
    pub submissions: Service,
    /// IMAP (port 143), STARTTLS.
    pub imap: Service,
    /// IMAP over implicit TLS (port 993).
    pub imaps: Service,
    /// POP3 (port 110), STLS.
    pub pop3: Service,
    /// POP3 over implicit TLS (port 995).
    pub pop3s: Service,
}

impl Services {
    /// Every service with its key under `[services]`, in a fixed order.
    pub fn all(&self) -> [(&'static str, &Service); 7] {
        [
            ("smtp", &self.smtp),
            ("submission", &self.submission),
            ("submissions", &self.submissions),
            ("imap", &self.imap),
            ("imaps", &self.imaps),
            ("pop3", &self.pop3),
            ("pop3s", &self.pop3s),
        ]
    }
}

impl Services {
    /// Every service, mutable, with its key under `[services]`.
    pub fn all_mut(&mut self) -> [(&'static str, &mut Service); 7] {
        [
            ("smtp", &mut self.smtp),
            ("submission", &mut self.submission),
            ("submissions", &mut self.submissions),
            ("imap", &mut self.imap),
            ("imaps", &mut self.imaps),
            ("pop3", &mut self.pop3),
            ("pop3s", &mut self.pop3s),
        ]
    }
}

impl Default for Services {
    /// Loopback only, on the standard port + 3000 (the test-server convention), so a development
    /// server needs no privileges and never faces the network by accident.
    fn default() -> Self {
        let on = |port: u16| Service {
            enabled: true,
            listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        };
        Self {
            smtp: on(3025),
            submission: on(3587),
            submissions: on(3465),
            imap: on(3143),
            imaps: on(3993),
            pop3: on(3110),
            pop3s: on(3995),
        }
    }
}

/// One listener role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub enabled: bool,
    /// Addresses to listen on; port 0 picks a free port (tests).
    pub listen: Vec<SocketAddr>,
}

/// What `[services]` looks like on disk: every key optional, so missing keys can be filled from
/// the defaults of the service they belong to (see [`Services`]).
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawServices {
    smtp: RawService,
    submission: RawService,
    submissions: RawService,
    imap: RawService,
    imaps: RawService,
    pop3: RawService,
    pop3s: RawService,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawService {
    enabled: Option<bool>,
    #[serde(deserialize_with = "listen_addresses")]
    listen: Option<Vec<SocketAddr>>,
}

impl RawService {
    fn or(self, default: Service) -> Service {
        Service {
            enabled: self.enabled.unwrap_or(default.enabled),
            listen: self.listen.unwrap_or(default.listen),
        }
    }
}

impl From<RawServices> for Services {
    fn from(raw: RawServices) -> Self {
        let default = Services::default();
        Services {
            smtp: raw.smtp.or(default.smtp),
            submission: raw.submission.or(default.submission),
            submissions: raw.submissions.or(default.submissions),
            imap: raw.imap.or(default.imap),
            imaps: raw.imaps.or(default.imaps),
            pop3: raw.pop3.or(default.pop3),
            pop3s: raw.pop3s.or(default.pop3s),
        }
    }
}

/// Parses listen addresses with a message that shows the accepted form; serde's own says only
/// "invalid socket address syntax".
fn listen_addresses<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid listen address {text:?}: expected IP:PORT such as \"0.0.0.0:25\" or \
                     \"[::]:25\" (host names are not accepted)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `[tls]`: certificates for STARTTLS and the implicit-TLS services.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. With `cert` and `key` both absent, a self-signed certificate is
    /// created in the data dir on first start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Allow passwords over unencrypted connections from non-loopback peers.
    pub allow_plaintext_auth: bool,
    /// Further certificates chosen by the name the client asks for (SNI).
    pub sni: Vec<SniCertificate>,
}

/// `[[tls.sni]]`: a certificate served when the client asks for `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// A host name, or `*.` followed by a domain for a wildcard certificate.
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[limits]`: resource limits. The RFC minimums below are what a peer may rely on; values under
/// them are accepted (tests want small limits) but `config check` warns about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message accepted (SMTP SIZE). RFC 5321 4.5.3.1.7: at least 64K octets.
    pub max_message_size: ByteSize,
    /// Concurrent client connections over all services.
    pub max_connections: u32,
    /// Concurrent client connections from one IP address.
    pub max_connections_per_ip: u32,
    /// Recipients in one SMTP transaction. RFC 5321 4.5.3.1.8: at least 100.
    pub max_recipients: u32,
    /// Longest command line accepted from a client, CRLF included, in every protocol. Message
    /// content (SMTP DATA) is streamed and limited only by `max_message_size`: real mail has
    /// longer lines than RFC 5322 allows, and refusing it helps nobody. RFC 5321 4.5.3.1.4
    /// requires 512 octets for commands; RFC 7162 section 4 asks IMAP servers to take 8192.
    pub max_line_length: ByteSize,
    /// RFC 5321 4.5.3.2.7: a server should wait at least 5 minutes for the next command.
    pub smtp_idle_timeout: TimeSpan,
    /// RFC 3501 5.4: the autologout timer must be at least 30 minutes.
    pub imap_idle_timeout: TimeSpan,
    /// RFC 1939 section 3: the autologout timer must be at least 10 minutes.
    pub pop3_idle_timeout: TimeSpan,
    /// On shutdown, how long open sessions may finish before they are closed.
    pub shutdown_grace: TimeSpan,
}

/// RFC minimums that [`Config::warnings`] checks [`Limits`] against.
pub mod rfc_minimum {
    use super::{ByteSize, TimeSpan};

    /// RFC 5321 4.5.3.1.7.
    pub const MESSAGE_SIZE: ByteSize = ByteSize::kib(64);
    /// RFC 5321 4.5.3.1.8.
    pub const RECIPIENTS: u32 = 100;
    /// RFC 5321 4.5.3.1.4 (command line).
    pub const LINE_LENGTH: ByteSize = ByteSize::bytes(512);
    /// RFC 5321 4.5.3.2.7.
    pub const SMTP_IDLE: TimeSpan = TimeSpan::from_mins(5);
    /// RFC 3501 5.4.
    pub const IMAP_IDLE: TimeSpan = TimeSpan::from_mins(30);
    /// RFC 1939 section 3.
    pub const POP3_IDLE: TimeSpan = TimeSpan::from_mins(10);
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: ByteSize::mib(50),
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_recipients: 100,
            max_line_length: ByteSize::kib(8),
            smtp_idle_timeout: TimeSpan::from_mins(5),
            imap_idle_timeout: TimeSpan::from_mins(30),
            pop3_idle_timeout: TimeSpan::from_mins(10),
            shutdown_grace: TimeSpan::from_secs(30),
        }
    }
}

/// `[store]`: the mail store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Flush every delivery to stable storage before answering 250. Off only for throwaway test
    /// data: with it off, a crash can lose mail the sender was told was delivered.
    pub fsync: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { fsync: true }
    }
}

/// `[log]`: where tracing output goes and how much of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `"info"` or `"info,wasmail=debug"`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[auth]`: logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// How long a successful login is remembered (credentials as a salted digest only), so
    /// clients that log in again and again skip the password hash. "0s" turns it off.
    pub cache_ttl: TimeSpan,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            cache_ttl: TimeSpan::from_secs(60),
        }
    }
}

/// `[pop3]`: what POP3 clients may do with the mail they download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// RFC 2449 EXPIRE: how long mail a POP3 client has downloaded stays on the server.
    pub expire: Pop3Expire,
    /// RFC 2449 LOGIN-DELAY: the least time between two POP3 logins to one account.
    pub login_delay: TimeSpan,
    /// Per-account exceptions (`[pop3.accounts."alice@example.org"]`), keyed by account address.
    pub accounts: std::collections::BTreeMap<String, Pop3AccountPolicy>,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Self {
            expire: Pop3Expire::Never,
            login_delay: TimeSpan::ZERO,
            accounts: std::collections::BTreeMap::new(),
        }
    }
}

impl Pop3Config {
    /// The policy for one account: its exceptions over the defaults above.
    pub fn for_account(&self, account: &str) -> (Pop3Expire, TimeSpan) {
        let exception = self
            .accounts
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(account))
            .map(|(_, p)| p);
        (
            exception.and_then(|p| p.expire).unwrap_or(self.expire),
            exception
                .and_then(|p| p.login_delay)
                .unwrap_or(self.login_delay),
        )
    }
}

/// One account's exceptions to the `[pop3]` policy; what it leaves out follows `[pop3]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3AccountPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire: Option<Pop3Expire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_delay: Option<TimeSpan>,
}

/// `expire = "never"` or a number of days (`0`: downloaded mail is removed when the session
/// that downloaded it ends, so "leave on server" is not available).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop3Expire {
    Never,
    Days(u32),
}

impl Serialize for Pop3Expire {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Pop3Expire::Never => serializer.serialize_str("never"),
            Pop3Expire::Days(d) => serializer.serialize_u32(*d),
        }
    }
}

impl<'de> Deserialize<'de> for Pop3Expire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Days(u32),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Days(d) => Ok(Pop3Expire::Days(d)),
            Raw::Text(t) if t == "never" => Ok(Pop3Expire::Never),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected \"never\" or a number of days, found {t:?}"
            ))),
        }
    }
}

/// `[dns]`: the resolver behind the `dns` import of plugins granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers, asked over UDP with TCP for long answers. Empty means those of
    /// `/etc/resolv.conf`.
    #[serde(deserialize_with = "name_servers")]
    pub servers: Vec<SocketAddr>,
    /// How long one lookup may take before the plugin is told it failed.
    pub timeout: TimeSpan,
}

impl DnsConfig {
    pub const DEFAULT_TIMEOUT: TimeSpan = TimeSpan::from_secs(2);
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Name server addresses: `IP:PORT`, or a bare IP for port 53.
fn name_servers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SocketAddr>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse::<SocketAddr>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "invalid name server {text:?}: expected IP or IP:PORT such as \
                         \"192.0.2.53\", \"192.0.2.53:53\" or \"[2001:db8::53]:53\""
                    ))
                })
        })
        .collect()
}

/// `[[plugins]]`: one WebAssembly component in the plugin chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique; names the plugin in logs and namespaces its key-value store.
    pub name: String,
    /// Path to the `.wasm` component, or `builtin:NAME` for a plugin compiled into wasmail.
    pub file: PathBuf,
    /// What a trap, timeout or limit breach in this plugin does to the mail at hand.
    #[serde(default)]
    pub on_error: OnError,
    /// Linear memory the plugin may grow to.
    #[serde(default = "PluginConfig::default_memory")]
    pub memory: ByteSize,
    /// Time one call into the plugin may take.
    #[serde(default = "PluginConfig::default_timeout")]
    pub timeout: TimeSpan,
    /// Host capabilities the plugin may use.
    #[serde(default)]
    pub grants: Grants,
    /// The plugin's own settings, handed to it unread.
    #[serde(default)]
    pub config: toml::Table,
}

impl PluginConfig {
    pub const DEFAULT_MEMORY: ByteSize = ByteSize::mib(64);
    pub const DEFAULT_TIMEOUT: TimeSpan = TimeSpan::from_millis(100);

    /// A plugin with every optional setting at its default.
    pub fn new(name: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            file: file.into(),
            on_error: OnError::default(),
            memory: Self::DEFAULT_MEMORY,
            timeout: Self::DEFAULT_TIMEOUT,
            grants: Grants::default(),
            config: toml::Table::new(),
        }
    }

    fn default_memory() -> ByteSize {
        Self::DEFAULT_MEMORY
    }

    fn default_timeout() -> TimeSpan {
        Self::DEFAULT_TIMEOUT
    }
}

/// A plugin failure's effect on the mail being processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer with a temporary failure so the sender retries: nothing is lost (fail closed, softly).
    #[default]
    Defer,
    /// Skip the plugin as if it had said "continue" (fail open).
    Continue,
    /// Answer with a permanent failure (fail closed).
    Reject,
}

/// `[plugins.grants]`: the host imports one plugin may call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    pub log: bool,
    /// The plugin's own `[plugins.config]` table. On by default: it is the plugin's own data.
    pub config: bool,
    /// Persistent key-value store with TTL, namespaced per plugin.
    pub kv: bool,
    pub clock: bool,
    /// DNS lookups through the host's resolver.
    pub dns: bool,
    /// Directories preopened read-only for the plugin.
    pub read_dirs: Vec<PathBuf>,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            log: true,
            config: true,
            kv: false,
            clock: false,
            dns: false,
            read_dirs: Vec::new(),
        }
    }
}

/// One finding about a config value: the key it concerns (dotted path, with `[i]` for array
/// elements) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: String,
    pub message: String,
}

impl Finding {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A config file that is not valid TOML or does not fit the schema, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file, or `None` for text that did not come from a file.
    pub path: Option<PathBuf>,
    /// 1-based line and column of the offending text, when the parser knows it.
    pub position: Option<(usize, usize)>,
    /// What is wrong; for an unknown key: "unknown field `name`, expected one of ...".
    pub message: String,
    /// The offending line with a marker under the offending text; empty when unknown.
    pub excerpt: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Origin(self.path.as_deref()))?;
        if let Some((line, column)) = self.position {
            write!(f, ", line {line}, column {column}")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.excerpt.is_empty() {
            write!(f, "\n{}", self.excerpt)?;
        }
        Ok(())
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is missing, unreadable, or not UTF-8.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key (usually a typo), or a value of the wrong type or form.
    #[error("{0}")]
    Parse(Box<ParseError>),
    /// Well-formed, but some values cannot work together or at all.
    #[error("{}", render_findings(path.as_deref(), findings))]
    Invalid {
        path: Option<PathBuf>,
        findings: Vec<Finding>,
    },
}

struct Origin<'p>(Option<&'p Path>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}", path.display()),
            None => f.write_str("config"),
        }
    }
}

fn render_findings(path: Option<&Path>, findings: &[Finding]) -> String {
    match findings {
        [one] => format!("{}: {one}", Origin(path)),
        many => {
            let mut text = format!("{}: {} problems:", Origin(path), many.len());
            for finding in many {
                text.push_str("\n  ");
                text.push_str(&finding.to_string());
            }
            text
        }
    }
}

impl Config {
    /// Reads and validates the file at `path`; with no path, the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parses and validates config text; `path` only labels error messages.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|error| ConfigError::Parse(Box::new(parse_error(text, path, &error))))?;
        config.validate().map_err(|error| match error {
            ConfigError::Invalid { findings, .. } => ConfigError::Invalid {
                path: path.map(Path::to_owned),
                findings,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// A complete, commented config file that sets every key to its default.
    pub fn example() -> &'static str {
        include_str!("config/example.toml")
    }

    /// Checks what the types alone cannot: names, uniqueness, non-zero limits, pairs of keys
    /// that only make sense together. Reports every problem at once; touches no files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut findings = Vec::new();
        self.validate_server(&mut findings);
        self.validate_services(&mut findings);
        self.validate_tls(&mut findings);
        self.validate_limits(&mut findings);
        self.validate_log(&mut findings);
        self.validate_dns(&mut findings);
        self.validate_plugins(&mut findings);
        if findings.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                path: None,
                findings,
            })
        }
    }

    /// Settings that work but that an operator should know about: values under an RFC minimum,
    /// safety switches turned off, nothing to listen on.
    pub fn warnings(&self) -> Vec<Finding> {
        let mut warnings = Vec::new();
        let limits = &self.limits;
        let mut below = |key: &str,
                         value: &dyn fmt::Display,
                         minimum: &dyn fmt::Display,
                         rfc: &str| {
            warnings.push(Finding::new(
                format!("limits.{key}"),
                format!("{value} is below the minimum of {minimum} that {rfc} lets peers rely on"),
            ));
        };
        if limits.max_message_size < rfc_minimum::MESSAGE_SIZE {
            below(
                "max_message_size",
                &limits.max_message_size,
                &rfc_minimum::MESSAGE_SIZE,
                "RFC 5321 4.5.3.1.7",
            );
        }
        if limits.max_recipients < rfc_minimum::RECIPIENTS {
            below(
                "max_recipients",
                &limits.max_recipients,
                &rfc_minimum::RECIPIENTS,
                "RFC 5321 4.5.3.1.8",
            );
        }
        if limits.max_line_length < rfc_minimum::LINE_LENGTH {
            below(
                "max_line_length",
                &limits.max_line_length,
                &rfc_minimum::LINE_LENGTH,
                "RFC 5321 4.5.3.1.4",
            );
        }
        if limits.smtp_idle_timeout < rfc_minimum::SMTP_IDLE {
            below(
                "smtp_idle_timeout",
                &limits.smtp_idle_timeout,
                &rfc_minimum::SMTP_IDLE,
                "RFC 5321 4.5.3.2.7",
            );
        }
        if limits.imap_idle_timeout < rfc_minimum::IMAP_IDLE {
            below(
                "imap_idle_timeout",
                &limits.imap_idle_timeout,
                &rfc_minimum::IMAP_IDLE,
                "RFC 3501 5.4",
            );
        }
        if limits.pop3_idle_timeout < rfc_minimum::POP3_IDLE {
            below(
                "pop3_idle_timeout",
                &limits.pop3_idle_timeout,
                &rfc_minimum::POP3_IDLE,
                "RFC 1939 section 3",
            );
        }
        if !self.store.fsync {
            warnings.push(Finding::new(
                "store.fsync",
                "false: a crash can lose mail that was already acknowledged with 250",
            ));
        }
        if self.tls.allow_plaintext_auth {
            warnings.push(Finding::new(
                "tls.allow_plaintext_auth",
                "true: passwords may cross the network unencrypted",
            ));
        }
        if self
            .services
            .all()
            .iter()
            .all(|(_, service)| !service.enabled)
        {
            warnings.push(Finding::new("services", "no service is enabled"));
        }
        warnings
    }

    fn validate_server(&self, findings: &mut Vec<Finding>) {
        let server = &self.server;
        if let Err(problem) = check_host_name(&server.hostname) {
            findings.push(Finding::new("server.hostname", problem));
        }
        if server.data_dir.as_os_str().is_empty() {
            findings.push(Finding::new("server.data_dir", "is empty"));
        }
        if server.domains.is_empty() {
            findings.push(Finding::new(
                "server.domains",
                "is empty: at least one local domain is needed",
            ));
        }
        let mut seen = HashSet::new();
        for (index, domain) in server.domains.iter().enumerate() {
            let key = format!("server.domains[{index}]");
            if let Err(problem) = check_host_name(domain) {
                findings.push(Finding::new(key, problem));
            } else if !seen.insert(domain.to_ascii_lowercase()) {
                findings.push(Finding::new(key, format!("{domain:?} is listed twice")));
            }
        }
    }

    fn validate_services(&self, findings: &mut Vec<Finding>) {
        // Two listeners conflict when they would bind the same port: the same address, or an
        // unspecified address (0.0.0.0 / [::]) and any address of the same family. Port 0 asks
        // the OS for a free port and never conflicts. IPv4 and IPv6 listeners do not conflict:
        // the server binds IPv6 sockets v6-only so "0.0.0.0:25" and "[::]:25" can coexist.
        let mut bound: Vec<(SocketAddr, String)> = Vec::new();
        for (name, service) in self.services.all() {
            let key = format!("services.{name}.listen");
            if !service.enabled {
                continue;
            }
            if service.listen.is_empty() {
                findings.push(Finding::new(
                    &key,
                    "is empty while the service is enabled (set enabled = false to turn it off)",
                ));
            }
            for address in &service.listen {
                if address.port() == 0 {
                    continue;
                }
                let clash = bound.iter().find(|(other, _)| {
                    other.port() == address.port()
                        && other.is_ipv4() == address.is_ipv4()
                        && (other.ip() == address.ip()
                            || other.ip().is_unspecified()
                            || address.ip().is_unspecified())
                });
                if let Some((other, other_key)) = clash {
                    findings.push(Finding::new(
                        &key,
                        format!("{address} overlaps {other} in {other_key}"),
                    ));
                } else {
                    bound.push((*address, key.clone()));
                }
            }
        }
    }

    fn validate_tls(&self, findings: &mut Vec<Finding>) {
        let tls = &self.tls;
        match (&tls.cert, &tls.key) {
            (Some(_), None) => {
                findings.push(Finding::new("tls.key", "is missing: tls.cert is set"))
            }
            (None, Some(_)) => {
                findings.push(Finding::new("tls.cert", "is missing: tls.key is set"))
            }
            _ => {}
        }
        let mut seen = HashSet::new();
        for (index, entry) in tls.sni.iter().enumerate() {
            let key = format!("tls.sni[{index}].name");
            let host = entry.name.strip_prefix("*.").unwrap_or(&entry.name);
            if let Err(problem) = check_host_name(host) {
                findings.push(Finding::new(key, problem));
            } else if !seen.insert(entry.name.to_ascii_lowercase()) {
                findings.push(Finding::new(
                    key,
                    format!("{:?} is listed twice", entry.name),
                ));
            }
        }
    }

    fn validate_limits(&self, findings: &mut Vec<Finding>) {
        let limits = &self.limits;
        let mut must_be_positive = |key: &str, is_zero: bool| {
            if is_zero {
                findings.push(Finding::new(
                    format!("limits.{key}"),
                    "must be greater than zero",
                ));
            }
        };
        must_be_positive("max_message_size", limits.max_message_size.as_u64() == 0);
        must_be_positive("max_connections", limits.max_connections == 0);
        must_be_positive("max_connections_per_ip", limits.max_connections_per_ip == 0);
        must_be_positive("max_recipients", limits.max_recipients == 0);
        must_be_positive("max_line_length", limits.max_line_length.as_u64() == 0);
        must_be_positive("smtp_idle_timeout", limits.smtp_idle_timeout.is_zero());
        must_be_positive("imap_idle_timeout", limits.imap_idle_timeout.is_zero());
        must_be_positive("pop3_idle_timeout", limits.pop3_idle_timeout.is_zero());
        // shutdown_grace may be zero: close every session at once.
    }

    fn validate_log(&self, findings: &mut Vec<Finding>) {
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            findings.push(Finding::new(
                "log.level",
                format!(
                    "{:?} is not a tracing filter directive: {error}",
                    self.log.level
                ),
            ));
        }
    }

    fn validate_dns(&self, findings: &mut Vec<Finding>) {
        for (index, server) in self.dns.servers.iter().enumerate() {
            if server.port() == 0 || server.ip().is_unspecified() {
                findings.push(Finding::new(
                    format!("dns.servers[{index}]"),
                    format!("{server} is not an address a name server can answer on"),
                ));
            }
        }
        if self.dns.timeout.is_zero() {
            findings.push(Finding::new("dns.timeout", "must be greater than zero"));
        }
    }

    fn validate_plugins(&self, findings: &mut Vec<Finding>) {
        let mut first_index_of_name: HashMap<&str, usize> = HashMap::new();
        for (index, plugin) in self.plugins.iter().enumerate() {
            let key = |field: &str| format!("plugins[{index}].{field}");
            if let Err(problem) = check_plugin_name(&plugin.name) {
                findings.push(Finding::new(key("name"), problem));
            } else if let Some(first) = first_index_of_name.get(plugin.name.as_str()) {
                findings.push(Finding::new(
                    key("name"),
                    format!("{:?} is already the name of plugins[{first}]", plugin.name),
                ));
            } else {
                first_index_of_name.insert(&plugin.name, index);
            }
            if plugin.file.as_os_str().is_empty() {
                findings.push(Finding::new(key("file"), "is empty"));
            }
            if let Some(name) = plugin
                .file
                .to_str()
                .and_then(|f| f.strip_prefix("builtin:"))
                && crate::plugins::builtin(name).is_none()
            {
                let known: Vec<&str> = crate::plugins::BUILTIN.iter().map(|(n, _)| *n).collect();
                findings.push(Finding::new(
                    key("file"),
                    format!(
                        "there is no built-in plugin {name:?} (built in: {})",
                        known.join(", ")
                    ),
                ));
            }
            // One WebAssembly page; a component cannot start with less.
            const WASM_PAGE: ByteSize = ByteSize::kib(64);
            if plugin.memory < WASM_PAGE {
                findings.push(Finding::new(
                    key("memory"),
                    format!(
                        "{} is less than one WebAssembly page ({WASM_PAGE})",
                        plugin.memory
                    ),
                ));
            }
            if plugin.timeout.is_zero() {
                findings.push(Finding::new(key("timeout"), "must be greater than zero"));
            }
        }
    }
}

/// A host name in ASCII (A-label) form, by RFC 5321's domain grammar (`wasmail_types::Domain`).
/// Address literals are refused because these names are announced and matched as names; U-labels
/// because matching them against A-labels would need IDNA mapping, which nothing here does.
fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    match Domain::parse(name) {
        Ok(domain) if domain.is_literal() => Err(format!(
            "{name:?} is an address literal; a host name is needed"
        )),
        Ok(domain) if !domain.is_ascii() => Err(format!(
            "{name:?} is not ASCII: write an internationalized name in its A-label (xn--) form"
        )),
        Ok(_) => Ok(()),
        Err(error) => Err(format!("{name:?} is not a valid host name: {error}")),
    }
}

/// Plugin names become log targets and the plugin's key-value namespace (a directory name), so
/// they are kept to characters that are safe in both.
fn check_plugin_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1-64 ASCII letters, digits, '-' or '_'"
        ))
    }
}

fn parse_error(text: &str, path: Option<&Path>, error: &toml::de::Error) -> ParseError {
    let located = error.span().map(|span| locate(text, span));
    match located {
        Some((line, column, excerpt)) => ParseError {
            path: path.map(Path::to_owned),
            position: Some((line, column)),
            message: error.message().trim_end().to_owned(),
            excerpt,
        },
        // Without a span toml's own rendering is the most informative: it names the key path.
        None => ParseError {
            path: path.map(Path::to_owned),
            position: None,
            message: error.to_string().trim_end().to_owned(),
            excerpt: String::new(),
        },
    }
}

/// 1-based line and column (in characters) of `span.start`, and an excerpt that underlines the
/// span on its line:
/// ```text
///   |
/// 3 | smpt = 1
///   | ^^^^
/// ```
fn locate(text: &str, span: std::ops::Range<usize>) -> (usize, usize, String) {
    let start = floor_char_boundary(text, span.start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let end = floor_char_boundary(text, span.end.clamp(start, line_start + line_text.len()));
    let width = text[start..end].chars().count().max(1);

    let gutter = " ".repeat(line.to_string().len());
    let excerpt = format!(
        "{gutter} |\n{line} | {line_text}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(width)
    );
    (line, column, excerpt)
}

fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests;
