//! Certificates for every TLS listener and STARTTLS: loading, choosing by SNI, hot reload.
//!
//! ```text
//!   [tls] cert/key ─┐                         ┌─ exact name  "mail.example.org" ─▶ its cert
//!   [[tls.sni]] ────┼─▶ Sources ──build()──▶  SniResolver ─ "*.example.org" (one label) ─▶ its cert
//!   (neither: self- │   (paths + stamps)      └─ no SNI / no match ─▶ the default cert
//!    signed in      │                │
//!    <data>/tls/)  ─┘                ▼
//!                        ArcSwap<ServerConfig> ──acceptor()──▶ TlsAcceptor (one per handshake)
//!                                 ▲
//!        reload_if_changed(): stamps (dev, inode, len, mtime, ctime) differ? build all, then swap
//! ```
//!
//! Invariants:
//! - A reload builds the complete new configuration before swapping it in; any error leaves the
//!   old one serving. A handshake uses the configuration it started with, so connections that
//!   are already open are never touched by a reload.
//! - Only TLS 1.2 and 1.3 are offered, with the `ring` provider's cipher suites.
//! - The stamps recorded for a configuration are taken *before* its files are read, so a file
//!   replaced while it is being read is seen as changed at the next poll.

mod self_signed;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig, ServerConnection};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use wasmail_types::TlsInfo;

use crate::config::TlsConfig;

/// The server's TLS configuration, shared by every listener and swapped atomically on reload.
///
/// Cloning is cheap (one `Arc`); all clones see the same certificates.
#[derive(Clone)]
pub struct TlsManager {
    inner: Arc<Inner>,
}

struct Inner {
    /// What new handshakes use.
    current: ArcSwap<ServerConfig>,
    /// Where the certificates come from.
    sources: Sources,
    /// The stamps of `sources` that `current` was built from. Held while reloading, so two
    /// reloads never race.
    loaded: Mutex<Vec<Stamp>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for TlsManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = &self.inner.sources;
        f.debug_struct("TlsManager")
            .field("cert", &sources.default.cert)
            .field("key", &sources.default.key)
            .field(
                "sni",
                &sources
                    .sni
                    .iter()
                    .map(|(name, _)| name.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why certificates could not be loaded, reloaded or created. Each variant names the file.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.cert` is set without `tls.key` (config validation normally catches this first).
    #[error("tls.cert is set ({cert}) but tls.key is not: both are needed")]
    KeyNotConfigured { cert: PathBuf },
    /// `tls.key` is set without `tls.cert`.
    #[error("tls.key is set ({key}) but tls.cert is not: both are needed")]
    CertNotConfigured { key: PathBuf },
    /// The file could not be opened or read: missing, unreadable by this user, a directory.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The file is not well-formed PEM (a truncated copy, a DER file, a stray edit).
    #[error("{path} is not valid PEM: {source}")]
    Pem { path: PathBuf, source: pem::Error },
    /// The certificate file has no `CERTIFICATE` section (perhaps the key file was given).
    #[error("{path} contains no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    /// The key file has no private key section (perhaps the certificate file was given).
    #[error("{path} contains no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoPrivateKey { path: PathBuf },
    /// The private key parsed but cannot sign (an unsupported algorithm or curve).
    #[error("the private key in {path} cannot be used: {source}")]
    UnusableKey {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The first certificate could not be parsed.
    #[error("the certificate in {path} cannot be used: {source}")]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The key does not belong to the certificate: often the files were replaced one at a time
    /// and only one of them is new yet.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// A `[[tls.sni]]` name is not a host name or `*.` followed by one.
    #[error("tls.sni name {name:?} is not a host name or \"*.\" followed by one")]
    SniName { name: String },
    /// Creating the self-signed certificate failed.
    #[error("cannot create a self-signed certificate for {hostname:?}: {source}")]
    Generate {
        hostname: String,
        source: rcgen::Error,
    },
    /// Writing the self-signed certificate or its key failed.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// rustls refused the configuration (should not happen with the versions used here).
    #[error("TLS configuration refused: {0}")]
    Config(rustls::Error),
}

impl TlsManager {
    /// From `[tls]`: cert/key PEM files plus `[[tls.sni]]` entries (a resolver choosing by SNI
    /// name, `*.example.org` matching exactly one label; the default cert when there is no SNI
    /// or no match). When neither cert nor key is configured, `<data_dir>/tls/cert.pem` and
    /// `key.pem` are used, created on first start as a self-signed certificate for `hostname`,
    /// `localhost`, 127.0.0.1 and ::1 (key file mode 0600, written to a temporary file and
    /// renamed, so a crash never leaves half a key). TLS 1.2 and 1.3 only.
    pub fn load(
        config: &TlsConfig,
        hostname: &str,
        data_dir: &Path,
    ) -> Result<TlsManager, TlsError> {
        let default = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => PemPair {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None) => self_signed::ensure(&data_dir.join("tls"), hostname)?,
            (Some(cert), None) => return Err(TlsError::KeyNotConfigured { cert: cert.clone() }),
            (None, Some(key)) => return Err(TlsError::CertNotConfigured { key: key.clone() }),
        };
        let sni = config
            .sni
            .iter()
            .map(|entry| {
                let name = SniName::parse(&entry.name)?;
                let pair = PemPair {
                    cert: entry.cert.clone(),
                    key: entry.key.clone(),
                };
                Ok((name, pair))
            })
            .collect::<Result<Vec<_>, TlsError>>()?;
        let sources = Sources { default, sni };
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let stamps = sources.stamps();
        let server_config = sources.build(&provider)?;
        Ok(TlsManager {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(server_config),
                sources,
                loaded: Mutex::new(stamps),
                provider,
            }),
        })
    }

    /// An acceptor with the current certificates. Cheap (an atomic load); call it per handshake
    /// so a reload takes effect for the next client.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.inner.current.load_full())
    }

    /// Re-reads the PEM files if any of them changed (device, inode, length, mtime or ctime):
    /// `Ok(true)` if a new configuration was swapped in, `Ok(false)` if nothing changed. On error
    /// the old configuration keeps serving, the error is returned, and the next call tries again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let mut loaded = self
            .inner
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stamps = self.inner.sources.stamps();
        if stamps == *loaded {
            return Ok(false);
        }
        let server_config = self.inner.sources.build(&self.inner.provider)?;
        self.inner.current.store(Arc::new(server_config));
        *loaded = stamps;
        Ok(true)
    }

    /// Polls [`reload_if_changed`](Self::reload_if_changed) every `interval` (file reads run on
    /// the blocking pool) until `shutdown` is cancelled. A reload is logged at info; a failure at
    /// warn, once until the error changes (the old certificates keep serving meanwhile).
    ///
    /// Must be called inside a tokio runtime.
    pub fn spawn_watcher(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let manager = self.clone();
        let interval = interval.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick completes at once; the configuration was loaded just now.
            ticks.tick().await;
            let mut last_error: Option<String> = None;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let worker = manager.clone();
                let outcome = tokio::task::spawn_blocking(move || worker.reload_if_changed()).await;
                match outcome {
                    Ok(Ok(true)) => {
                        last_error = None;
                        tracing::info!(
                            cert = %manager.default_cert_path().display(),
                            "TLS certificates reloaded"
                        );
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => {
                        let text = error.to_string();
                        if last_error.as_deref() != Some(text.as_str()) {
                            tracing::warn!(
                                error = %text,
                                "TLS certificates changed but cannot be loaded; \
                                 the previous ones keep serving"
                            );
                            last_error = Some(text);
                        }
                    }
                    Err(join_error) => {
                        tracing::warn!(error = %join_error, "TLS reload task failed");
                    }
                }
            }
        })
    }

    /// Path of the default certificate (configured, or the self-signed one a test client trusts).
    pub fn default_cert_path(&self) -> &Path {
        &self.inner.sources.default.cert
    }
}

/// What a handshake established, for `Received:` headers and plugins: protocol `TLSv1.3`,
/// cipher `TLS13_AES_256_GCM_SHA384`, and the SNI name the client asked for.
pub fn tls_info(conn: &ServerConnection) -> TlsInfo {
    let protocol = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_owned(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|suite| {
            let suite = suite.suite();
            suite
                .as_str()
                .map_or_else(|| format!("{suite:?}"), str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    TlsInfo {
        protocol,
        cipher,
        server_name: conn.server_name().map(str::to_owned),
    }
}

/// A certificate chain file and its private key file.
#[derive(Debug, Clone)]
struct PemPair {
    cert: PathBuf,
    key: PathBuf,
}

/// Every file the configuration is built from.
#[derive(Debug)]
struct Sources {
    default: PemPair,
    sni: Vec<(SniName, PemPair)>,
}

/// What identifies one version of a file; `None` when it cannot be examined (then the build
/// reports why).
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ))
}

impl Sources {
    fn pairs(&self) -> impl Iterator<Item = &PemPair> {
        std::iter::once(&self.default).chain(self.sni.iter().map(|(_, pair)| pair))
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.pairs()
            .flat_map(|pair| [stamp(&pair.cert), stamp(&pair.key)])
            .collect()
    }

    /// Reads every file and builds a complete server configuration.
    fn build(&self, provider: &Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
        let default = Arc::new(load_certified_key(&self.default, provider)?);
        let mut table = SniTable::new(default);
        for (name, pair) in &self.sni {
            table.insert(name.clone(), Arc::new(load_certified_key(pair, provider)?));
        }
        let mut config = ServerConfig::builder_with_provider(Arc::clone(provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { table }));
        // No 0-RTT: replayable early data has no place in mail protocols.
        config.max_early_data_size = 0;
        Ok(config)
    }
}

fn load_certified_key(pair: &PemPair, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let pem_error = |path: &Path, error: pem::Error| match error {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        source => TlsError::Pem {
            path: path.to_owned(),
            source,
        },
    };
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|error| pem_error(&pair.cert, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(&pair.cert, error))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: pair.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: pair.key.clone(),
        },
        other => pem_error(&pair.key, other),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnusableKey {
            path: pair.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type whose public half rustls cannot derive is not a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: pair.cert.clone(),
            key: pair.key.clone(),
        }),
        Err(source) => Err(TlsError::BadCertificate {
            path: pair.cert.clone(),
            source,
        }),
    }
}

/// A `[[tls.sni]]` name, lowercased, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SniName {
    Exact(String),
    /// `*.example.org`, stored as `example.org`.
    Wildcard(String),
}

impl SniName {
    fn parse(name: &str) -> Result<SniName, TlsError> {
        let invalid = || TlsError::SniName {
            name: name.to_owned(),
        };
        let lower = normalize(name);
        let (wildcard, host) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower),
        };
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
            return Err(invalid());
        }
        Ok(if wildcard {
            SniName::Wildcard(host)
        } else {
            SniName::Exact(host)
        })
    }
}

impl fmt::Display for SniName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SniName::Exact(name) => f.write_str(name),
            SniName::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Lowercase, without a trailing dot: how names are compared.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Chooses a value by SNI name: exact names first, then `*.suffix` for names with exactly one
/// more label, then the default.
#[derive(Debug)]
struct SniTable<T> {
    default: T,
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
}

impl<T> SniTable<T> {
    fn new(default: T) -> Self {
        Self {
            default,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    fn insert(&mut self, name: SniName, value: T) {
        match name {
            SniName::Exact(name) => self.exact.insert(name, value),
            SniName::Wildcard(suffix) => self.wildcard.insert(suffix, value),
        };
    }

    fn choose(&self, server_name: Option<&str>) -> &T {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = normalize(name);
        if let Some(value) = self.exact.get(&name) {
            return value;
        }
        if let Some((label, suffix)) = name.split_once('.')
            && !label.is_empty()
            && let Some(value) = self.wildcard.get(suffix)
        {
            return value;
        }
        &self.default
    }
}

#[derive(Debug)]
struct SniResolver {
    table: SniTable<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.table.choose(client_hello.server_name())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_names_parse_and_normalize() {
        assert_eq!(
            SniName::parse("Mail.Example.ORG.").ok(),
            Some(SniName::Exact("mail.example.org".into()))
        );
        assert_eq!(
            SniName::parse("*.example.org").ok(),
            Some(SniName::Wildcard("example.org".into()))
        );
        for bad in [
            "",
            "*.",
            "*",
            "a..b",
            "*.*.example.org",
            "a b.org",
            "ex*ample.org",
        ] {
            assert!(
                matches!(SniName::parse(bad), Err(TlsError::SniName { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn sni_table_prefers_exact_then_one_label_wildcard_then_default() {
        let mut table = SniTable::new("default");
        table.insert(SniName::Exact("mail.example.org".into()), "exact");
        table.insert(SniName::Wildcard("example.org".into()), "wild");
        table.insert(SniName::Exact("other.test".into()), "other");
        assert_eq!(*table.choose(None), "default");
        assert_eq!(*table.choose(Some("mail.example.org")), "exact");
        assert_eq!(*table.choose(Some("MAIL.example.org.")), "exact");
        assert_eq!(*table.choose(Some("imap.example.org")), "wild");
        // One label only, and not the bare domain.
        assert_eq!(*table.choose(Some("a.b.example.org")), "default");
        assert_eq!(*table.choose(Some("example.org")), "default");
        assert_eq!(*table.choose(Some("other.test")), "other");
        assert_eq!(*table.choose(Some("unknown.test")), "default");
    }

    fn write_pair(dir: &Path, name: &str) -> PemPair {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let pair = PemPair {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }

    #[test]
    fn load_errors_name_the_file_and_the_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let provider = rustls::crypto::ring::default_provider();
        let a = write_pair(dir.path(), "a.test");
        let b = write_pair(dir.path(), "b.test");
        assert!(load_certified_key(&a, &provider).is_ok());

        let mismatch = PemPair {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let error = load_certified_key(&mismatch, &provider).expect_err("mismatch");
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
        assert!(error.to_string().contains("b.test.key"), "{error}");

        let swapped = PemPair {
            cert: a.key.clone(),
            key: a.cert.clone(),
        };
        let error = load_certified_key(&swapped, &provider).expect_err("swapped");
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");

        let missing = PemPair {
            cert: dir.path().join("missing.crt"),
            key: a.key.clone(),
        };
        let error = load_certified_key(&missing, &provider).expect_err("missing");
        assert!(matches!(error, TlsError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.crt"), "{error}");

        let truncated = dir.path().join("truncated.crt");
        let text = std::fs::read_to_string(&a.cert).expect("read");
        std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
        let broken = PemPair {
            cert: truncated,
            key: a.key.clone(),
        };
        let error = load_certified_key(&broken, &provider).expect_err("truncated");
        assert!(matches!(error, TlsError::Pem { .. }), "{error:?}");
    }

    #[test]
    fn cert_without_key_is_refused() {
        let config = TlsConfig {
            cert: Some("/nonexistent/cert.pem".into()),
            ..TlsConfig::default()
        };
        let error =
            TlsManager::load(&config, "localhost", Path::new("/nonexistent")).expect_err("no key");
        assert!(matches!(error, TlsError::KeyNotConfigured { .. }));
    }
}
