//! A real wasmail server for a test: in this process, on `127.0.0.1:0`, with a temp data dir,
//! the self-signed certificate it makes on first start, and its own tokio runtime on a thread (so
//! tests stay plain synchronous code driving real clients).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use tempfile::TempDir;
use wasmail::config::Config;
use wasmail::{Server, ServerBuilder, ServerHandle, Service};
use wasmail_types::mail::{MailboxName, MessageMeta};
use wasmail_types::{MailStore as _, Mailbox, Secret};

/// The domain the test servers receive mail for.
pub const DOMAIN: &str = "example.test";
/// Their host name (greeting, `Received:`).
pub const HOSTNAME: &str = "mx.example.test";

/// A running server; dropping it shuts the server down and waits for it, then removes its data
/// dir ([`TestServer::shut_down`] keeps the dir).
pub struct TestServer {
    // Declared before `dir`: fields drop in order, so the server stops before its files go.
    running: Running,
    pub dir: TempDir,
    pub handle: ServerHandle,
    addrs: Vec<(Service, SocketAddr)>,
}

/// The server's thread; dropping it shuts the server down and waits for it.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("dir", &self.dir.path())
            .field("addrs", &self.addrs)
            .finish()
    }
}

/// The config of a test server: every service (SMTP, submission(s), IMAP(S), POP3(S)) on an
/// ephemeral loopback port.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.hostname = HOSTNAME.into();
    config.server.domains = vec![DOMAIN.into()];
    config.server.data_dir = data_dir.to_path_buf();
    let any: SocketAddr = "127.0.0.1:0"
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    for service in [
        &mut config.services.smtp,
        &mut config.services.submission,
        &mut config.services.submissions,
        &mut config.services.imap,
        &mut config.services.imaps,
        &mut config.services.pop3,
        &mut config.services.pop3s,
    ] {
        service.listen = vec![any];
    }
    config.log.level = "warn".into();
    config
}

impl TestServer {
    /// The default server: built-in plugins, domain `example.test`.
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {}, |b| b)
    }

    /// A server whose config and builder the test adjusts first.
    pub fn start_with(
        configure: impl FnOnce(&mut Config),
        build: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        TestServer::start_in(dir, configure, build)
    }

    /// A server on an existing data dir (its accounts, mail and certificate), e.g. one that
    /// [`TestServer::shut_down`] returned; the config and builder are adjusted as in
    /// [`TestServer::start_with`]. The services get new ports.
    pub fn start_in(
        dir: TempDir,
        configure: impl FnOnce(&mut Config),
        build: impl FnOnce(ServerBuilder) -> ServerBuilder,
    ) -> TestServer {
        let mut config = test_config(dir.path());
        configure(&mut config);
        let server = build(Server::builder(config))
            .build()
            .unwrap_or_else(|e| panic!("server did not build: {e}"));
        let handle = server.handle();
        let addrs = Service::ALL
            .iter()
            .flat_map(|s| server.local_addrs(*s).into_iter().map(|a| (*s, a)))
            .collect();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            runtime
                .block_on(server.run(async {
                    let _ = stopped.await;
                }))
                .unwrap_or_else(|e| panic!("server failed: {e}"));
        });
        TestServer {
            running: Running {
                stop: Some(stop),
                thread: Some(thread),
            },
            dir,
            handle,
            addrs,
        }
    }

    /// Shuts the server down (waiting for open sessions, as dropping it does) and hands back
    /// its data dir.
    pub fn shut_down(self) -> TempDir {
        let TestServer { running, dir, .. } = self;
        drop(running);
        dir
    }

    /// Shuts this server down and starts a new one on the same data dir, with `configure`
    /// applied to a fresh test config. The services get new ports.
    pub fn restart_with(self, configure: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_in(self.shut_down(), configure, |b| b)
    }

    /// Where `service` listens.
    pub fn addr(&self, service: Service) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("{} is not listening", service.name()))
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The self-signed certificate the server made (for clients to trust).
    pub fn certificate(&self) -> PathBuf {
        self.handle.certificate_path()
    }

    /// Adds an account with a password (as `wasmail user add` does).
    pub fn add_user(&self, address: &str, password: &str) {
        let users = wasmail::users::UsersFile::new(self.data_dir());
        let hash = wasmail::users::hash_password(&Secret::new(password.to_owned()))
            .unwrap_or_else(|e| panic!("hash: {e}"));
        users
            .add(address, &hash)
            .unwrap_or_else(|e| panic!("add user: {e}"));
    }

    /// An account's mailbox opened through the store (as another process would), if it exists.
    fn mailbox(&self, account: &str, mailbox: &str) -> Option<Arc<dyn Mailbox>> {
        let store =
            wasmail_store::FsStore::open(self.data_dir(), wasmail_store::StoreConfig::default())
                .unwrap_or_else(|e| panic!("open store: {e}"));
        let account = store
            .account(account)
            .unwrap_or_else(|e| panic!("account: {e}"));
        let name = MailboxName::new(mailbox).unwrap_or_else(|e| panic!("name: {e}"));
        account.open(&name).ok()
    }

    /// Every message in an account's mailbox, oldest first, as stored (read through the store).
    pub fn messages(&self, account: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let Some(mailbox) = self.mailbox(account, mailbox) else {
            return Vec::new();
        };
        mailbox
            .messages()
            .unwrap_or_else(|e| panic!("messages: {e}"))
            .iter()
            .map(|m| {
                mailbox
                    .open_message(m.uid)
                    .and_then(|c| c.read_all().map_err(wasmail_types::StoreError::io("read")))
                    .unwrap_or_else(|e| panic!("read: {e}"))
            })
            .collect()
    }

    /// What the store knows of every message in an account's mailbox (UID, flags, size...),
    /// oldest first, read through the store as [`TestServer::messages`] reads the content.
    pub fn metas(&self, account: &str, mailbox: &str) -> Vec<MessageMeta> {
        let Some(mailbox) = self.mailbox(account, mailbox) else {
            return Vec::new();
        };
        mailbox
            .messages()
            .unwrap_or_else(|e| panic!("messages: {e}"))
    }

    /// The message files on disk under an account's directory (new/ and cur/ of every folder).
    pub fn message_files(&self, account: &str) -> Vec<PathBuf> {
        message_files_under(
            &self
                .data_dir()
                .join("accounts")
                .join(account.to_lowercase()),
        )
    }

    /// Every message file of every account (new/ and cur/ of every folder).
    pub fn all_message_files(&self) -> Vec<PathBuf> {
        message_files_under(&self.data_dir().join("accounts"))
    }

    /// Messages waiting in the outbound queue.
    pub fn queued(&self) -> Vec<String> {
        wasmail::queue::OutboundQueue::open(self.data_dir(), false)
            .and_then(|q| q.list())
            .unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The files in a `new/` or `cur/` directory anywhere below `root` (none if `root` is missing).
fn message_files_under(root: &Path) -> Vec<PathBuf> {
    paths_under(root)
        .into_iter()
        .filter(|path| {
            !path.is_dir()
                && path
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|p| p == "new" || p == "cur")
        })
        .collect()
}

/// Every file and directory below `root`, recursively (none if `root` is missing).
pub fn paths_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Strips the trace fields the server prepends (`Return-Path:`, `Received:` with its
/// continuation lines) and returns the rest: what the client sent.
pub fn without_trace(message: &[u8]) -> &[u8] {
    let mut rest = message;
    loop {
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..line_end];
        let is_trace = line.starts_with(b"Return-Path:") || line.starts_with(b"Received:");
        if !is_trace {
            return rest;
        }
        rest = &rest[line_end..];
        while rest.first().is_some_and(|&b| b == b'\t' || b == b' ') {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            rest = &rest[end..];
        }
    }
}
