//! The resolver behind the `dns` import of plugins granted it.
//!
//! ```text
//!   plugin call (blocking thread, or any std thread)        "wasmail-dns" thread
//!   SystemResolver::txt/ip/mx/ptr ──job over a channel──▶  current-thread tokio runtime
//!        │ waits on a one-shot std channel                  + hickory TokioResolver (cache)
//!        ◀──────────── answer, bounded and converted ────── each job a task with a deadline
//! ```
//!
//! The resolver owns its runtime on a thread of its own, so its methods work wherever they are
//! called from: a `spawn_blocking` thread of the server's runtime, a plain thread in a test, or
//! even (blocking it, but never deadlocking) an async worker; nothing here calls
//! `Handle::block_on`. The thread ends when the last clone of the resolver is dropped.
//!
//! Every lookup is for an absolute name (no search domains: a plugin asking for
//! `example.org` means exactly that) and goes to DNS only (`/etc/hosts` is not consulted). An
//! answer keeps at most [`MAX_RECORDS`] records of the type asked for (CNAMEs on the way are
//! dropped), each string cut to [`MAX_STRING`] octets. Host names come back in ASCII (A-label)
//! form without the final dot.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{IntoName, Name, RData};
use tokio::sync::mpsc;
use wasmail_plugin::{DnsFailure, Resolver};

use crate::config::DnsConfig;

/// How long a lookup may take unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Most records one answer hands to a plugin.
pub const MAX_RECORDS: usize = 64;
/// Longest string (TXT data, host name, address) handed to a plugin, in octets.
pub const MAX_STRING: usize = 4096;

/// How much longer than the lookup deadline a caller waits for the resolver thread before it
/// gives up on it (the deadline itself is enforced on that thread).
const CALLER_GRACE: Duration = Duration::from_secs(1);

/// Why a resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ResolverSetupError {
    /// `/etc/resolv.conf` (or the platform's equivalent) is missing or unusable.
    #[error("cannot read the system's DNS configuration: {0}")]
    SystemConfig(String),
    #[error("no name servers given")]
    NoServers,
    #[error("the DNS timeout must be greater than zero")]
    ZeroTimeout,
    #[error("cannot start the DNS resolver: {0}")]
    Start(String),
}

type Job = Box<dyn FnOnce(&TokioResolver) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A DNS stub resolver (hickory) for plugins: see the module documentation.
#[derive(Debug, Clone)]
pub struct SystemResolver {
    jobs: mpsc::UnboundedSender<Job>,
    timeout: Duration,
}

impl SystemResolver {
    /// The name servers and options of `/etc/resolv.conf`, with [`DEFAULT_TIMEOUT`].
    pub fn from_system() -> Result<Self, ResolverSetupError> {
        Self::from_system_with_timeout(DEFAULT_TIMEOUT)
    }

    /// The name servers and options of `/etc/resolv.conf`, lookups bounded by `timeout`.
    pub fn from_system_with_timeout(timeout: Duration) -> Result<Self, ResolverSetupError> {
        let (config, options) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| ResolverSetupError::SystemConfig(e.to_string()))?;
        if config.name_servers().is_empty() {
            return Err(ResolverSetupError::SystemConfig(
                "it names no name server".to_owned(),
            ));
        }
        Self::start(config, options, timeout)
    }

    /// These name servers, each asked over UDP and, for truncated answers, TCP.
    pub fn with_servers(
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Self, ResolverSetupError> {
        if servers.is_empty() {
            return Err(ResolverSetupError::NoServers);
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        Self::start(config, ResolverOpts::default(), timeout)
    }

    /// What `[dns]` asks for: its servers, or the system's when it lists none.
    pub fn from_config(config: &DnsConfig) -> Result<Self, ResolverSetupError> {
        let timeout = config.timeout.as_duration();
        if config.servers.is_empty() {
            Self::from_system_with_timeout(timeout)
        } else {
            Self::with_servers(&config.servers, timeout)
        }
    }

    /// The deadline of one lookup.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn start(
        config: ResolverConfig,
        mut options: ResolverOpts,
        timeout: Duration,
    ) -> Result<Self, ResolverSetupError> {
        if timeout.is_zero() {
            return Err(ResolverSetupError::ZeroTimeout);
        }
        // Each attempt may use the whole deadline; a further attempt only happens when one
        // fails fast (refused, unreachable). The deadline on the thread bounds them all.
        options.timeout = timeout;
        options.use_hosts_file = ResolveHosts::Never;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ResolverSetupError::Start(e.to_string()))?;
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let (ready, started) = std_mpsc::sync_channel::<Result<(), String>>(1);
        std::thread::Builder::new()
            .name("wasmail-dns".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    // Built inside the runtime: its connections spawn their drivers on it.
                    let mut builder =
                        TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
                    *builder.options_mut() = options;
                    let resolver = match builder.build() {
                        Ok(resolver) => {
                            let _ = ready.send(Ok(()));
                            resolver
                        }
                        Err(error) => {
                            let _ = ready.send(Err(error.to_string()));
                            return;
                        }
                    };
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job(&resolver));
                    }
                });
                // Dropping the runtime cancels lookups still in flight; their callers have
                // gone (every sender was dropped), so nobody waits for them.
            })
            .map_err(|e| ResolverSetupError::Start(e.to_string()))?;
        match started.recv() {
            Ok(Ok(())) => Ok(SystemResolver { jobs, timeout }),
            Ok(Err(error)) => Err(ResolverSetupError::Start(error)),
            Err(_) => Err(ResolverSetupError::Start(
                "the resolver thread ended".to_owned(),
            )),
        }
    }

    /// Runs `lookup` on the resolver thread under the deadline and waits for its answer.
    fn run<T, F, Fut>(&self, lookup: F) -> Result<T, DnsFailure>
    where
        T: Send + 'static,
        F: FnOnce(TokioResolver) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, NetError>> + Send + 'static,
    {
        let timeout = self.timeout;
        let (reply, answer) = std_mpsc::sync_channel::<Result<T, DnsFailure>>(1);
        let job: Job = Box::new(move |resolver: &TokioResolver| {
            let lookup = lookup(resolver.clone());
            Box::pin(async move {
                let result = match tokio::time::timeout(timeout, lookup).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(error)) => Err(failure(&error)),
                    Err(_) => Err(timed_out(timeout)),
                };
                // The caller may have given up already.
                let _ = reply.try_send(result);
            })
        });
        if self.jobs.send(job).is_err() {
            return Err(DnsFailure::Failure("the resolver has stopped".to_owned()));
        }
        match answer.recv_timeout(timeout + CALLER_GRACE) {
            Ok(result) => result,
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(timed_out(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                Err(DnsFailure::Failure("the resolver has stopped".to_owned()))
            }
        }
    }

    /// Records of one type for `name`, each converted by `convert` (which skips the records
    /// of other types that an answer may carry, such as CNAMEs).
    fn lookup<T, C>(
        &self,
        name: &str,
        record_type: hickory_resolver::proto::rr::RecordType,
        convert: C,
    ) -> Result<Vec<T>, DnsFailure>
    where
        T: Send + 'static,
        C: Fn(&RData) -> Option<T> + Send + 'static,
    {
        let name = absolute_name(name)?;
        self.run(move |resolver| async move {
            let lookup = resolver.lookup(name, record_type).await?;
            Ok(collect(&lookup, convert))
        })
    }
}

impl Resolver for SystemResolver {
    fn txt(&self, name: &str) -> Result<Vec<String>, DnsFailure> {
        use hickory_resolver::proto::rr::RecordType;
        self.lookup(name, RecordType::TXT, |data| match data {
            RData::TXT(txt) => {
                // One record's character-strings joined, as SPF and DKIM read them; stop
                // copying once the string is long enough to be cut anyway.
                let mut bytes = Vec::new();
                for part in txt.txt_data.iter() {
                    bytes.extend_from_slice(part);
                    if bytes.len() > MAX_STRING {
                        break;
                    }
                }
                Some(bounded(String::from_utf8_lossy(&bytes).into_owned()))
            }
            _ => None,
        })
    }

    fn ip(&self, name: &str) -> Result<Vec<String>, DnsFailure> {
        let name = absolute_name(name)?;
        self.run(move |resolver| async move {
            let lookup = resolver.lookup_ip(name).await?;
            Ok(collect(lookup.as_lookup(), |data| match data {
                RData::A(a) => Some(a.0.to_string()),
                RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
                _ => None,
            }))
        })
    }

    fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, DnsFailure> {
        use hickory_resolver::proto::rr::RecordType;
        self.lookup(name, RecordType::MX, |data| match data {
            RData::MX(mx) => Some((mx.preference, host_name(&mx.exchange))),
            _ => None,
        })
    }

    fn ptr(&self, address: &str) -> Result<Vec<String>, DnsFailure> {
        use hickory_resolver::proto::rr::RecordType;
        let ip: IpAddr = address.trim().parse().map_err(|_| {
            DnsFailure::Failure(format!(
                "{:?} is not an IP address",
                bounded(address.to_owned())
            ))
        })?;
        let mut name = Name::from(ip);
        name.set_fqdn(true);
        self.run(move |resolver| async move {
            let lookup = resolver.lookup(name, RecordType::PTR).await?;
            Ok(collect(&lookup, |data| match data {
                RData::PTR(ptr) => Some(host_name(&ptr.0)),
                _ => None,
            }))
        })
    }
}

/// `name` as an absolute DNS name: a final dot is implied, search domains never apply.
fn absolute_name(name: &str) -> Result<Name, DnsFailure> {
    let trimmed = name.trim();
    let invalid = |why: String| {
        DnsFailure::Failure(format!(
            "{:?} is not a domain name: {why}",
            bounded(name.to_owned())
        ))
    };
    if trimmed.is_empty() || trimmed == "." {
        return Err(invalid("it is empty".to_owned()));
    }
    let mut parsed = trimmed.into_name().map_err(|e| invalid(e.to_string()))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// The records of `lookup` that `convert` accepts, at most [`MAX_RECORDS`] of them.
fn collect<T>(lookup: &Lookup, convert: impl Fn(&RData) -> Option<T>) -> Vec<T> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| convert(&record.data))
        .take(MAX_RECORDS)
        .collect()
}

/// A host name as mail software writes it: ASCII, no final dot.
fn host_name(name: &Name) -> String {
    let mut text = name.to_ascii();
    if text.len() > 1 && text.ends_with('.') {
        text.pop();
    }
    bounded(text)
}

/// `text` cut to at most [`MAX_STRING`] octets, on a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_STRING {
        let mut end = MAX_STRING;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn failure(error: &NetError) -> DnsFailure {
    if error.is_no_records_found() {
        DnsFailure::NotFound
    } else {
        DnsFailure::Failure(bounded(error.to_string()))
    }
}

fn timed_out(timeout: Duration) -> DnsFailure {
    DnsFailure::Failure(format!("no answer within {timeout:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_absolute_and_checked() {
        assert!(absolute_name("example.org").is_ok_and(|n| n.is_fqdn()));
        assert!(absolute_name("example.org.").is_ok_and(|n| n.is_fqdn()));
        assert!(matches!(absolute_name(""), Err(DnsFailure::Failure(_))));
        assert!(matches!(absolute_name("."), Err(DnsFailure::Failure(_))));
        let long_label = format!("{}.org", "a".repeat(70));
        assert!(matches!(
            absolute_name(&long_label),
            Err(DnsFailure::Failure(_))
        ));
    }

    #[test]
    fn strings_are_cut_on_a_character_boundary() {
        assert_eq!(bounded("short".to_owned()), "short");
        let cut = bounded("é".repeat(MAX_STRING));
        assert!(cut.len() <= MAX_STRING && cut.len() >= MAX_STRING - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn host_names_lose_the_final_dot() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(
            host_name(&Name::from_ascii("mx.example.org.")?),
            "mx.example.org"
        );
        assert_eq!(host_name(&Name::root()), ".");
        Ok(())
    }

    #[test]
    fn setup_refuses_a_zero_timeout_and_no_servers() {
        assert!(matches!(
            SystemResolver::with_servers(&[], DEFAULT_TIMEOUT),
            Err(ResolverSetupError::NoServers)
        ));
        let server = SocketAddr::from(([127, 0, 0, 1], 53));
        assert!(matches!(
            SystemResolver::with_servers(&[server], Duration::ZERO),
            Err(ResolverSetupError::ZeroTimeout)
        ));
    }
}
