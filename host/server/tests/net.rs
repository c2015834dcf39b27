//! The network runtime with real sockets on 127.0.0.1:0 and real TLS: tokio-rustls clients talk
//! to `serve_listener` through a small line-echo handler.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmail::config::{SniCertificate, TlsConfig};
use wasmail::net::{
    self, Connection, ConnectionLimiter, Handler, LimitHit, Stream, TlsManager, bind,
    serve_listener,
};

const HANDSHAKE: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The handler under test

#[derive(Clone, Copy)]
enum Mode {
    /// Greets with what it knows of the connection, then echoes lines (prefixed with
    /// "shutdown " once the server is shutting down) until EOF.
    Echo,
    /// Plaintext greeting, waits for STARTTLS, upgrades, then greets and echoes over TLS.
    StartTls,
}

struct TestHandler {
    mode: Mode,
    tls: Option<TlsManager>,
    handled: AtomicUsize,
    /// What the handler observed that the client cannot see (e.g. a refused second upgrade).
    notes: Mutex<Vec<String>>,
}

impl TestHandler {
    fn new(mode: Mode, tls: Option<TlsManager>) -> Arc<Self> {
        Arc::new(Self {
            mode,
            tls,
            handled: AtomicUsize::new(0),
            notes: Mutex::new(Vec::new()),
        })
    }

    fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }

    fn note(&self, note: String) {
        self.notes.lock().expect("notes").push(note);
    }

    async fn run(self: Arc<Self>, conn: Connection) -> io::Result<()> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let Connection {
            stream,
            tls,
            id,
            shutdown,
            permit,
            ..
        } = conn;
        let _permit = permit;
        let (stream, tls) = match self.mode {
            Mode::Echo => (stream, tls),
            Mode::StartTls => {
                let mut lines = BufReader::new(stream);
                lines.write_all(b"220 ready\r\n").await?;
                lines.flush().await?;
                let mut line = String::new();
                lines.read_line(&mut line).await?;
                if line != "STARTTLS\r\n" {
                    lines.write_all(b"500 expected STARTTLS\r\n").await?;
                    return Ok(());
                }
                lines.write_all(b"220 go ahead\r\n").await?;
                lines.flush().await?;
                // Anything buffered after the command is dropped, as a real driver must.
                let stream = lines.into_inner();
                let manager = self.tls.as_ref().expect("STARTTLS needs TLS");
                let (stream, info) = stream.upgrade(&manager.acceptor(), HANDSHAKE).await?;
                assert!(stream.is_tls());
                (stream, Some(info))
            }
        };
        let mut lines = BufReader::new(stream);
        let greeting = match &tls {
            Some(info) => format!(
                "hello {id} {} {} {}\r\n",
                info.protocol,
                info.cipher,
                info.server_name.as_deref().unwrap_or("-")
            ),
            None => format!("hello {id} plain\r\n"),
        };
        lines.write_all(greeting.as_bytes()).await?;
        lines.flush().await?;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                break;
            }
            if shutdown.is_cancelled() {
                lines.write_all(b"shutdown ").await?;
            }
            lines.write_all(line.as_bytes()).await?;
            lines.flush().await?;
            if line == "QUIT\r\n" {
                break;
            }
        }
        let mut stream = lines.into_inner();
        stream.shutdown().await.ok();
        if let (true, Some(manager)) = (stream.is_tls(), self.tls.as_ref()) {
            let error = stream
                .upgrade(&manager.acceptor(), HANDSHAKE)
                .await
                .err()
                .map(|error| error.kind());
            self.note(format!("second upgrade: {error:?}"));
        }
        Ok(())
    }
}

impl Handler for TestHandler {
    fn service(&self) -> &str {
        "test"
    }

    fn refusal(&self, hit: LimitHit) -> Vec<u8> {
        format!("421 refused {hit:?}\r\n").into_bytes()
    }

    fn handle(self: Arc<Self>, conn: Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            // Clients in these tests hang up at will; that is not a failure of the handler.
            let _ = self.run(conn).await;
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A running listener

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    accept_loop: JoinHandle<()>,
}

fn start(
    handler: Arc<TestHandler>,
    tls: Option<TlsManager>,
    limiter: ConnectionLimiter,
    handshake_timeout: Duration,
) -> Running {
    let listener = bind(&["127.0.0.1:0".parse().expect("addr")])
        .expect("bind")
        .remove(0);
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let addr = listener.local_addr().expect("local addr");
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let accept_loop = tokio::spawn(serve_listener(
        listener,
        handler,
        tls.map(|manager| (manager, handshake_timeout)),
        limiter,
        tracker.clone(),
        shutdown.clone(),
    ));
    Running {
        addr,
        shutdown,
        tracker,
        accept_loop,
    }
}

fn unlimited() -> ConnectionLimiter {
    ConnectionLimiter::new(100, 100)
}

// ---------------------------------------------------------------------------------------------
// Certificates and TLS clients

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes a self-signed certificate for `names` and its key, each through a temporary file and
/// a rename (how certbot and friends replace them).
fn write_cert(cert_path: &Path, key_path: &Path, names: &[&str]) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().expect("key");
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    replace_file(cert_path, cert.pem().as_bytes());
    replace_file(key_path, key.serialize_pem().as_bytes());
    cert.der().clone()
}

fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn pem_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("certificate PEM")
}

/// A client that trusts exactly `cert` and speaks only `versions`.
fn trusting(
    cert: &Path,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pem_cert(cert)).expect("trust anchor");
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Accepts any certificate (with valid handshake signatures), so a test can look at which
/// certificate the server chose even when its names do not match.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn any_certificate() -> Arc<ClientConfig> {
    let provider = provider();
    Arc::new(
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

type ClientTls = BufReader<tokio_rustls::client::TlsStream<TcpStream>>;

async fn tls_connect_over(
    tcp: TcpStream,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> io::Result<ClientTls> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(io::Error::other)?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(BufReader::new(tls))
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> io::Result<ClientTls> {
    tls_connect_over(TcpStream::connect(addr).await?, config, server_name).await
}

fn peer_cert(client: &ClientTls) -> CertificateDer<'static> {
    client
        .get_ref()
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
}

async fn read_line<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> String {
    let mut line = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut line))
        .await
        .expect("line in time")
        .expect("read line");
    line
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(reader: &mut BufReader<S>, line: &str) {
    reader.write_all(line.as_bytes()).await.expect("write");
    reader.flush().await.expect("flush");
    assert_eq!(read_line(reader).await, line);
}

async fn read_to_end(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(bytes)
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A self-signed manager in a fresh data dir.
fn self_signed() -> (tempfile::TempDir, TlsManager) {
    let data = tempfile::tempdir().expect("tempdir");
    let manager =
        TlsManager::load(&TlsConfig::default(), "mail.example.test", data.path()).expect("load");
    (data, manager)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn self_signed_certificate_is_created_once_and_reused() {
    let data = tempfile::tempdir().expect("tempdir");
    let first =
        TlsManager::load(&TlsConfig::default(), "mail.example.test", data.path()).expect("load");
    let cert_path = data.path().join("tls/cert.pem");
    let key_path = data.path().join("tls/key.pem");
    assert_eq!(first.default_cert_path(), cert_path);
    let mode = std::fs::metadata(&key_path)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
    let cert = std::fs::read(&cert_path).expect("cert");
    let key = std::fs::read(&key_path).expect("key");

    let second =
        TlsManager::load(&TlsConfig::default(), "mail.example.test", data.path()).expect("load");
    assert_eq!(second.default_cert_path(), cert_path);
    assert_eq!(
        std::fs::read(&cert_path).expect("cert"),
        cert,
        "cert reused"
    );
    assert_eq!(std::fs::read(&key_path).expect("key"), key, "key reused");
    assert!(!second.reload_if_changed().expect("unchanged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_and_tls12_handshakes_with_the_self_signed_certificate() {
    let (_data, manager) = self_signed();
    let handler = TestHandler::new(Mode::Echo, Some(manager.clone()));
    let server = start(
        handler.clone(),
        Some(manager.clone()),
        unlimited(),
        HANDSHAKE,
    );
    let cert = manager.default_cert_path();

    let mut v13 = tls_connect(
        server.addr,
        trusting(cert, &[&rustls::version::TLS13]),
        "localhost",
    )
    .await
    .expect("TLS 1.3");
    let greeting = read_line(&mut v13).await;
    assert!(
        greeting.contains(" TLSv1.3 TLS13_") && greeting.ends_with(" localhost\r\n"),
        "{greeting:?}"
    );
    exchange(&mut v13, "over TLS 1.3\r\n").await;

    let mut v12 = tls_connect(
        server.addr,
        trusting(cert, &[&rustls::version::TLS12]),
        "mail.example.test",
    )
    .await
    .expect("TLS 1.2");
    let greeting = read_line(&mut v12).await;
    assert!(
        greeting.contains(" TLSv1.2 TLS_ECDHE_ECDSA_WITH_")
            && greeting.contains("mail.example.test"),
        "{greeting:?}"
    );
    exchange(&mut v12, "over TLS 1.2\r\n").await;

    // The certificate also names the loopback addresses (no SNI is sent for an IP).
    let mut by_ip = tls_connect(
        server.addr,
        trusting(cert, &[&rustls::version::TLS13]),
        "127.0.0.1",
    )
    .await
    .expect("by IP");
    assert!(read_line(&mut by_ip).await.ends_with(" -\r\n"));

    // A server-side TLS stream refuses a second upgrade.
    exchange(&mut v13, "QUIT\r\n").await;
    eventually("the handler noted the second upgrade", || {
        !handler.notes.lock().expect("notes").is_empty()
    })
    .await;
    assert_eq!(
        handler.notes.lock().expect("notes")[0],
        "second upgrade: Some(InvalidInput)"
    );
    assert_eq!(handler.handled(), 3);
}

/// A ClientHello as a TLS 1.1 client sends it: legacy version 3.2, no supported_versions.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).expect("len").to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).expect("len").to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls11_client_cannot_connect() {
    let (_data, manager) = self_signed();
    let handler = TestHandler::new(Mode::Echo, None);
    let server = start(handler.clone(), Some(manager), unlimited(), HANDSHAKE);

    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    tcp.write_all(&tls11_client_hello()).await.expect("hello");
    let reply = read_to_end(&mut tcp).await.unwrap_or_default();
    // One fatal alert record (content type 21, level 2: handshake_failure or protocol_version)
    // and EOF -- never a ServerHello.
    assert!(
        matches!(reply.as_slice(), [0x15, 0x03, _, 0x00, 0x02, 0x02, 40 | 70]),
        "server answered a TLS 1.1 hello with {reply:02x?}"
    );
    assert_eq!(handler.handled(), 0, "the handler never ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let (_data, manager) = self_signed();
    let handler = TestHandler::new(Mode::Echo, None);
    let limiter = unlimited();
    let server = start(
        handler.clone(),
        Some(manager),
        limiter.clone(),
        Duration::from_millis(300),
    );
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let started = std::time::Instant::now();
    let reply = read_to_end(&mut tcp).await.expect("closed by the server");
    assert!(reply.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(handler.handled(), 0);
    eventually("permit released", || limiter.active() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let default = write_cert(
        &path("default.crt"),
        &path("default.key"),
        &["default.test"],
    );
    let a = write_cert(&path("a.crt"), &path("a.key"), &["a.test"]);
    let b = write_cert(&path("b.crt"), &path("b.key"), &["b.test"]);
    let wild = write_cert(&path("wild.crt"), &path("wild.key"), &["*.wild.test"]);
    let sni = |name: &str, file: &str| SniCertificate {
        name: name.to_owned(),
        cert: path(&format!("{file}.crt")),
        key: path(&format!("{file}.key")),
    };
    let config = TlsConfig {
        cert: Some(path("default.crt")),
        key: Some(path("default.key")),
        sni: vec![
            sni("a.test", "a"),
            sni("B.Test", "b"),
            sni("*.wild.test", "wild"),
        ],
        ..TlsConfig::default()
    };
    let manager = TlsManager::load(&config, "default.test", dir.path()).expect("load");
    assert!(
        !dir.path().join("tls").exists(),
        "no self-signed cert when one is configured"
    );
    let handler = TestHandler::new(Mode::Echo, None);
    let server = start(handler, Some(manager), unlimited(), HANDSHAKE);

    let cases: [(&str, &CertificateDer<'static>); 7] = [
        ("a.test", &a),
        ("b.test", &b),
        ("imap.wild.test", &wild),
        ("smtp.wild.test", &wild),
        ("deep.imap.wild.test", &default), // a wildcard matches one label only
        ("other.test", &default),
        ("127.0.0.1", &default), // no SNI at all
    ];
    for (name, expected) in cases {
        let mut client = tls_connect(server.addr, any_certificate(), name)
            .await
            .expect(name);
        assert_eq!(&peer_cert(&client), expected, "certificate for {name}");
        let greeting = read_line(&mut client).await;
        let sni = if name == "127.0.0.1" { "-" } else { name };
        assert!(greeting.ends_with(&format!(" {sni}\r\n")), "{greeting:?}");
    }

    // And a client verifying normally accepts the wildcard certificate for its name.
    let mut verified = tls_connect(
        server.addr,
        trusting(&path("wild.crt"), &[&rustls::version::TLS13]),
        "pop.wild.test",
    )
    .await
    .expect("verified wildcard");
    assert!(
        read_line(&mut verified)
            .await
            .ends_with(" pop.wild.test\r\n")
    );
    exchange(&mut verified, "ok\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_certificates_for_new_connections_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert_path: PathBuf = dir.path().join("cert.pem");
    let key_path: PathBuf = dir.path().join("key.pem");
    let old = write_cert(&cert_path, &key_path, &["localhost"]);
    let config = TlsConfig {
        cert: Some(cert_path.clone()),
        key: Some(key_path.clone()),
        ..TlsConfig::default()
    };
    let manager = TlsManager::load(&config, "localhost", dir.path()).expect("load");
    let handler = TestHandler::new(Mode::Echo, None);
    let server = start(handler, Some(manager.clone()), unlimited(), HANDSHAKE);

    let mut before = tls_connect(server.addr, any_certificate(), "localhost")
        .await
        .expect("before");
    assert_eq!(peer_cert(&before), old);
    read_line(&mut before).await;
    assert!(!manager.reload_if_changed().expect("unchanged"));

    let new = write_cert(&cert_path, &key_path, &["localhost"]);
    assert_ne!(new, old);
    assert!(manager.reload_if_changed().expect("reload"), "swapped");
    assert!(!manager.reload_if_changed().expect("again"), "nothing new");

    let mut after = tls_connect(server.addr, any_certificate(), "localhost")
        .await
        .expect("after");
    assert_eq!(
        peer_cert(&after),
        new,
        "a new connection sees the new certificate"
    );
    read_line(&mut after).await;
    exchange(&mut before, "the old connection still works\r\n").await;
    exchange(&mut after, "so does the new one\r\n").await;

    // A broken PEM: an error naming the file, and the new-old certificate keeps serving.
    let text = std::fs::read_to_string(&cert_path).expect("read");
    replace_file(&cert_path, &text.as_bytes()[..text.len() / 2]);
    let error = manager.reload_if_changed().expect_err("broken PEM");
    assert!(error.to_string().contains("cert.pem"), "{error}");
    let mut broken = tls_connect(server.addr, any_certificate(), "localhost")
        .await
        .expect("still serving");
    assert_eq!(peer_cert(&broken), new);
    read_line(&mut broken).await;

    // The watcher picks up a repaired pair by itself.
    let repaired = write_cert(&cert_path, &key_path, &["localhost"]);
    let stop = CancellationToken::new();
    let watcher = manager.spawn_watcher(Duration::from_millis(20), stop.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut client = tls_connect(server.addr, any_certificate(), "localhost")
            .await
            .expect("connect");
        if peer_cert(&client) == repaired {
            read_line(&mut client).await;
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    tokio::time::timeout(WAIT, watcher)
        .await
        .expect("watcher stops")
        .expect("watcher task");
}

async fn connect_from(source: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .expect("bind a loopback source address");
    socket.connect(addr).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_the_handlers_bytes_and_release_on_close() {
    let handler = TestHandler::new(Mode::Echo, None);
    let limiter = ConnectionLimiter::new(2, 1);
    let server = start(handler.clone(), None, limiter.clone(), HANDSHAKE);
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let three = Ipv4Addr::new(127, 0, 0, 3);

    let mut first = BufReader::new(connect_from(one, server.addr).await);
    assert!(read_line(&mut first).await.starts_with("hello "));

    let mut same_ip = connect_from(one, server.addr).await;
    let refused = read_to_end(&mut same_ip).await.expect("refusal then EOF");
    assert_eq!(refused, b"421 refused PerIp\r\n");

    let mut other_ip = BufReader::new(connect_from(two, server.addr).await);
    assert!(read_line(&mut other_ip).await.starts_with("hello "));

    let mut full = connect_from(three, server.addr).await;
    let refused = read_to_end(&mut full).await.expect("refusal then EOF");
    assert_eq!(refused, b"421 refused Total\r\n");
    assert_eq!(limiter.active(), 2);
    assert_eq!(limiter.active_addresses(), 2);
    assert_eq!(
        handler.handled(),
        2,
        "refused clients never reach the handler"
    );

    // Closing one connection releases its slot: the same address gets in again.
    drop(first);
    eventually("the first permit released", || limiter.active() == 1).await;
    let mut again = BufReader::new(connect_from(one, server.addr).await);
    assert!(read_line(&mut again).await.starts_with("hello "));
    exchange(&mut again, "in again\r\n").await;

    drop((again, other_ip));
    eventually("every permit released", || limiter.active() == 0).await;
    assert_eq!(limiter.active_addresses(), 0, "the per-IP map empties");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_client_is_closed_without_plaintext() {
    let (_data, manager) = self_signed();
    let handler = TestHandler::new(Mode::Echo, None);
    let limiter = ConnectionLimiter::new(1, 1);
    let server = start(handler, Some(manager), limiter, HANDSHAKE);
    let mut first = tls_connect(server.addr, any_certificate(), "localhost")
        .await
        .expect("first");
    read_line(&mut first).await;
    let mut refused = TcpStream::connect(server.addr).await.expect("connect");
    let bytes = read_to_end(&mut refused).await.unwrap_or_default();
    assert!(bytes.is_empty(), "{bytes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_upgrades_the_same_socket() {
    let (_data, manager) = self_signed();
    let handler = TestHandler::new(Mode::StartTls, Some(manager.clone()));
    let server = start(handler.clone(), None, unlimited(), HANDSHAKE);

    let mut plain = BufReader::new(TcpStream::connect(server.addr).await.expect("connect"));
    assert_eq!(read_line(&mut plain).await, "220 ready\r\n");
    plain.write_all(b"STARTTLS\r\n").await.expect("write");
    assert_eq!(read_line(&mut plain).await, "220 go ahead\r\n");
    assert!(
        plain.buffer().is_empty(),
        "nothing may follow the go-ahead in plaintext"
    );
    let tcp = plain.into_inner();

    let mut tls = tls_connect_over(
        tcp,
        trusting(manager.default_cert_path(), &[&rustls::version::TLS13]),
        "localhost",
    )
    .await
    .expect("handshake on the same socket");
    let greeting = read_line(&mut tls).await;
    assert!(greeting.contains(" TLSv1.3 TLS13_"), "{greeting:?}");
    assert!(greeting.ends_with(" localhost\r\n"), "{greeting:?}");
    exchange(&mut tls, "secret stuff\r\n").await;
    exchange(&mut tls, "QUIT\r\n").await;
    eventually("the handler finished", || {
        !handler.notes.lock().expect("notes").is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_waits_for_sessions_in_progress() {
    let handler = TestHandler::new(Mode::Echo, None);
    let limiter = unlimited();
    let server = start(handler.clone(), None, limiter.clone(), HANDSHAKE);

    let mut busy = BufReader::new(TcpStream::connect(server.addr).await.expect("connect"));
    assert!(read_line(&mut busy).await.starts_with("hello "));

    server.shutdown.cancel();
    tokio::time::timeout(WAIT, server.accept_loop)
        .await
        .expect("serve_listener returns once cancelled")
        .expect("accept loop task");
    let refused = TcpStream::connect(server.addr).await;
    assert!(refused.is_err(), "a connection was accepted after shutdown");

    server.tracker.close();
    let waited = tokio::time::timeout(Duration::from_millis(300), server.tracker.wait()).await;
    assert!(
        waited.is_err(),
        "the tracker must wait for the open session"
    );

    // The session in progress is still served, and knows the server is stopping.
    busy.write_all(b"last words\r\n").await.expect("write");
    assert_eq!(read_line(&mut busy).await, "shutdown last words\r\n");
    drop(busy);
    tokio::time::timeout(WAIT, server.tracker.wait())
        .await
        .expect("the tracker finishes when the session does");
    assert_eq!(limiter.active(), 0);
    assert_eq!(handler.handled(), 1);
}

#[test]
fn module_reexports_the_driver_api() {
    // The names the protocol drivers import.
    let _: fn(&[SocketAddr]) -> Result<Vec<std::net::TcpListener>, net::BindError> = net::bind;
    let _ = net::tls_info;
    let _: Option<Stream> = None;
}
