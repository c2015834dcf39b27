//! The plugin runtime driven with real guest components (built by `plugins/artifacts`). Every
//! guest has a test named after it; `every_guest_has_a_test` makes a missing one a compile error.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmail_plugin::{
    AuthOutcome, CallError, EngineOptions, FilterSession, Grants, Hook, HostEnv, LoadError,
    ManualClock, OnError, PluginEngine, PluginHost, PluginSpec, RouteOutcome, SystemClock,
    WasmSource, inspect,
};
use wasmail_plugin_artifacts as guests;
use wasmail_types::mail::MailboxName;
use wasmail_types::{
    Address, ClientInfo, Envelope, MessageContent, Modification, ReversePath, Secret, Verdict,
};

macro_rules! assert_tested {
    ($name:ident) => {
        let _: fn() = $name;
    };
}

/// Captures the log events (fields as `name=value`) of whatever runs on this thread inside
/// `Logs::capture`: plugin log lines arrive as `plugin=<name> message="<text>"`, and the reasons
/// the host logs for temporary failures and disabled accounts are only visible this way.
mod log_capture {
    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub struct Logs(Arc<Mutex<Vec<String>>>);

    impl Logs {
        pub fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
            let logs = Logs::default();
            let r = tracing::subscriber::with_default(logs.clone(), f);
            let text = logs.0.lock().unwrap().join("\n");
            (r, text)
        }
    }

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl tracing::Subscriber for Logs {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
}

#[test]
fn every_guest_has_a_test() {
    guests::foreach_guest!(assert_tested);
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        }
    }

    fn engine(&self) -> PluginEngine {
        PluginEngine::new(EngineOptions {
            max_instances: 64,
            max_memory: 64 << 20,
            cache_dir: Some(self.dir.path().join("cache")),
            pooling: true,
        })
        .unwrap()
    }

    fn env(&self) -> HostEnv {
        HostEnv::new(Some(self.dir.path().join("kv")), self.clock.clone(), None)
    }

    fn host(&self, specs: &[PluginSpec]) -> Result<PluginHost, LoadError> {
        PluginHost::new(self.engine(), self.env(), specs)
    }
}

fn spec(name: &str, wasm: &'static [u8], grants: Grants) -> PluginSpec {
    let mut s = PluginSpec::new(name, WasmSource::Bytes(Arc::from(wasm)));
    s.grants = grants;
    s
}

fn granted(log: bool, config: bool, kv: bool, clock: bool) -> Grants {
    Grants {
        log,
        config,
        kv,
        clock,
        dns: false,
        read_dirs: Vec::new(),
    }
}

fn client() -> ClientInfo {
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
    let mut c = ClientInfo::new(peer, local);
    c.helo = Some("client.example".into());
    c
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        mail_from: ReversePath::parse("<sender@example.net>").unwrap(),
        rcpt_to: rcpts.iter().map(|r| Address::parse(r).unwrap()).collect(),
        client: client(),
    }
}

fn message(text: &str) -> Arc<dyn MessageContent> {
    Arc::new(text.as_bytes().to_vec())
}

fn data(session: &mut FilterSession, env: &Envelope, text: &str) -> wasmail_plugin::ChainOutcome {
    session.run(Hook::Data(env, message(text)))
}

fn reply_text(v: &Verdict) -> String {
    match v {
        Verdict::Reject(r) | Verdict::Defer(r) | Verdict::Disconnect(r) => r.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn test_header_reject() {
    let f = Fixture::new();
    let mut s = spec(
        "rules",
        guests::TEST_HEADER_REJECT,
        granted(false, true, false, false),
    );
    s.config = toml::from_str("word = \"lottery\"").unwrap();
    let host = f.host(&[s.clone()]).unwrap();
    assert_eq!(
        host.current().describe(),
        [("rules".to_owned(), vec!["helo-hook", "data-hook"])]
    );
    let env = envelope(&["rcpt@example.org"]);

    let mut session = FilterSession::new(host.current());
    let out = data(
        &mut session,
        &env,
        "Subject: you won the lottery\r\n\r\nbody\r\n",
    );
    assert_eq!(
        reply_text(&out.verdict),
        "550 5.7.1 message refused by policy"
    );
    assert_eq!(out.decided_by.as_deref(), Some("rules"));

    let out = data(
        &mut session,
        &env,
        "Subject: hello\r\n\r\nlottery in the body does not count\r\n",
    );
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(
        out.modifications,
        [Modification::AddHeader {
            name: "X-Wasmail-Checked".into(),
            value: "yes".into()
        }]
    );

    let c = client();
    assert_eq!(
        reply_text(&session.run(Hook::Helo(&c, "defer.me")).verdict),
        "451 4.7.1 greeting deferred"
    );
    assert_eq!(
        session.run(Hook::Helo(&c, "fine.example")).verdict,
        Verdict::Continue
    );
    // Hooks it does not export are not called.
    assert_eq!(session.run(Hook::Connect(&c)).verdict, Verdict::Continue);

    // Without the config grant the component is refused at load, naming the import.
    s.grants.config = false;
    match f.host(&[s]) {
        Err(LoadError::NotGranted { plugin, import }) => assert_eq!(
            (plugin.as_str(), import.as_str()),
            ("rules", "wasmail:plugin/config")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn test_quarantine() {
    let f = Fixture::new();
    let mut s = spec(
        "big",
        guests::TEST_QUARANTINE,
        granted(false, true, false, false),
    );
    s.config = toml::from_str("max = 100").unwrap();
    let host = f.host(&[s]).unwrap();
    let env = envelope(&["a@example.org"]);
    let mut session = FilterSession::new(host.current());
    assert_eq!(
        data(&mut session, &env, "Subject: small\r\n\r\nx\r\n").verdict,
        Verdict::Continue
    );
    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(200));
    assert_eq!(
        data(&mut session, &env, &big).verdict,
        Verdict::Quarantine("Junk".into())
    );
}

/// A second plugin host keeps answering while `f` runs: one stuck or crashing plugin does not
/// hold up others.
fn with_neighbour_calls(f: impl FnOnce()) {
    let fx = Fixture::new();
    let mut s = spec(
        "neighbour",
        guests::TEST_HEADER_REJECT,
        granted(false, true, false, false),
    );
    s.config = toml::from_str("word = \"x\"").unwrap();
    let host = fx.host(&[s]).unwrap();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let env = envelope(&["a@example.org"]);
            // Checked after each call, so the call in flight when `f` ends still completes.
            loop {
                let mut session = FilterSession::new(host.current());
                let out = data(&mut session, &env, "Subject: fine\r\n\r\n");
                assert_eq!(out.verdict, Verdict::Continue, "{:?}", out.failures);
                calls.fetch_add(1, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        // The neighbour is serving before `f` starts, and is still serving while it runs.
        let deadline = Instant::now() + Duration::from_secs(30);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the neighbouring plugin never answered"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        f();
        stop.store(true, Ordering::SeqCst);
    });
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the neighbouring plugin kept serving"
    );
}

#[test]
fn test_loop() {
    with_neighbour_calls(|| {
        let f = Fixture::new();
        let mut s = spec(
            "looper",
            guests::TEST_LOOP,
            granted(false, false, false, true),
        );
        s.limits.timeout = Duration::from_millis(100);
        let host = f.host(&[s]).unwrap();
        let env = envelope(&["a@example.org"]);
        let mut session = FilterSession::new(host.current());
        let started = Instant::now();
        let out = data(&mut session, &env, "Subject: x\r\n\r\n");
        let took = started.elapsed();
        eprintln!("infinite loop stopped after {took:?} (limit 100ms)");
        assert_eq!(out.failures, [("looper".to_owned(), CallError::Timeout)]);
        // Default on_error = defer: the sender retries, nothing is lost.
        assert_eq!(
            reply_text(&out.verdict),
            "451 4.3.0 Temporary local problem, please try again later"
        );
        assert!(
            took < Duration::from_secs(10),
            "the loop was stopped at all"
        );
        // The failed instance is dropped; the next call gets a fresh one (and is stopped again).
        assert_eq!(
            data(&mut session, &env, "Subject: y\r\n\r\n")
                .failures
                .len(),
            1
        );
        let stats = host.current().stats();
        assert_eq!((stats[0].1, stats[0].2), (2, 2), "calls and errors counted");
    });
}

#[test]
fn test_memory_hog() {
    with_neighbour_calls(|| {
        let f = Fixture::new();
        let mut s = spec("hog", guests::TEST_MEMORY_HOG, Grants::default());
        s.limits.memory = 16 << 20;
        s.on_error = OnError::Reject;
        let host = f.host(&[s]).unwrap();
        let env = envelope(&["a@example.org"]);
        let out = data(
            &mut FilterSession::new(host.current()),
            &env,
            "Subject: x\r\n\r\n",
        );
        assert_eq!(out.failures, [("hog".to_owned(), CallError::Memory)]);
        assert_eq!(
            reply_text(&out.verdict),
            "550 5.3.0 Message refused by local policy"
        );
    });
}

#[test]
fn test_panic() {
    with_neighbour_calls(|| {
        let f = Fixture::new();
        let mut s = spec("panicky", guests::TEST_PANIC, Grants::default());
        s.on_error = OnError::Continue;
        let mut next = spec(
            "rules",
            guests::TEST_HEADER_REJECT,
            granted(false, true, false, false),
        );
        next.config = toml::from_str("word = \"spam\"").unwrap();
        let host = f.host(&[s, next]).unwrap();
        let env = envelope(&["a@example.org"]);
        let out = data(
            &mut FilterSession::new(host.current()),
            &env,
            "Subject: spam\r\n\r\n",
        );
        assert!(
            matches!(&out.failures[..], [(name, CallError::Trap(_))] if name == "panicky"),
            "{:?}",
            out.failures
        );
        // on_error = continue: the chain went on to the next filter, which decided.
        assert_eq!(out.decided_by.as_deref(), Some("rules"));
    });
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

#[test]
fn test_read_body() {
    let f = Fixture::new();
    let host = f
        .host(&[spec("hasher", guests::TEST_READ_BODY, Grants::default())])
        .unwrap();
    let env = envelope(&["a@example.org"]);
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    body.extend((0..(1 << 20)).map(|i: u32| (i % 251) as u8));
    let content: Arc<dyn MessageContent> = Arc::new(body.clone());
    let out = FilterSession::new(host.current()).run(Hook::Data(&env, content));
    assert_eq!(out.verdict, Verdict::Continue);
    let header = |n: &str| {
        out.modifications
            .iter()
            .find_map(|m| match m {
                Modification::AddHeader { name, value } if name == n => Some(value.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{n} in {:?}", out.modifications))
    };
    assert_eq!(header("X-Body-Size"), body.len().to_string());
    assert_eq!(header("X-Body-Hash"), format!("{:016x}", fnv1a64(&body)));
}

#[test]
fn test_kv_counter() {
    let f = Fixture::new();
    let mut s = spec(
        "ratelimit",
        guests::TEST_KV_COUNTER,
        granted(false, true, true, false),
    );
    s.config = toml::from_str("limit = 3").unwrap();
    let host = f.host(&[s.clone()]).unwrap();
    let env = envelope(&[]);
    let rcpt = Address::parse("busy@example.org").unwrap();
    let run = |host: &PluginHost| {
        FilterSession::new(host.current())
            .run(Hook::Rcpt(&env, &rcpt))
            .verdict
    };
    for _ in 0..3 {
        assert_eq!(run(&host), Verdict::Continue);
    }
    assert!(
        matches!(run(&host), Verdict::Defer(_)),
        "the fourth is over the limit"
    );
    // The count survives a reload (same namespace) and a restart (new host, same kv dir).
    host.reload(&[s.clone()]).unwrap();
    assert!(matches!(run(&host), Verdict::Defer(_)));
    drop(host);
    let host = f.host(&[s.clone()]).unwrap();
    assert!(matches!(run(&host), Verdict::Defer(_)));
    // Another plugin name is another namespace.
    let mut other = s.clone();
    other.name = "other".into();
    let host = f.host(&[other]).unwrap();
    assert_eq!(run(&host), Verdict::Continue);
    // Counters expire with the clock: an hour later the limit starts over.
    f.clock.advance(3_601_000);
    let host = f.host(&[s.clone()]).unwrap();
    assert_eq!(run(&host), Verdict::Continue);
    // Without the kv grant: refused at load.
    s.grants.kv = false;
    assert!(
        matches!(f.host(&[s]), Err(LoadError::NotGranted { import, .. }) if import == "wasmail:plugin/kv")
    );
}

#[test]
fn test_clock() {
    let f = Fixture::new();
    let host = f
        .host(&[spec(
            "clock",
            guests::TEST_CLOCK,
            granted(false, false, false, true),
        )])
        .unwrap();
    let c = client();
    assert_eq!(
        reply_text(
            &FilterSession::new(host.current())
                .run(Hook::Connect(&c))
                .verdict
        ),
        "554 5.7.1 1700000000000"
    );
    f.clock.advance(1234);
    assert_eq!(
        reply_text(
            &FilterSession::new(host.current())
                .run(Hook::Connect(&c))
                .verdict
        ),
        "554 5.7.1 1700000001234"
    );
}

#[test]
fn test_file_read() {
    let f = Fixture::new();
    let c = client();
    // Nothing granted: no file anywhere is readable.
    let mut s = spec(
        "reader",
        guests::TEST_FILE_READ,
        granted(false, true, false, false),
    );
    let host = f.host(&[s.clone()]).unwrap();
    let out = FilterSession::new(host.current())
        .run(Hook::Connect(&c))
        .verdict;
    assert!(
        reply_text(&out).starts_with("451 4.7.1 denied: "),
        "{out:?}"
    );

    // A read-only directory grant: that directory (and nothing else) is readable.
    let shared = f.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(
        shared.join("users"),
        "alice@example.org:hash\nbob@example.org:hash\n",
    )
    .unwrap();
    s.grants.read_dirs = vec![shared.clone()];
    s.config = toml::from_str(&format!(
        "path = {:?}",
        shared.join("users").to_str().unwrap()
    ))
    .unwrap();
    let host = f.host(&[s.clone()]).unwrap();
    let out = FilterSession::new(host.current())
        .run(Hook::Connect(&c))
        .verdict;
    assert_eq!(
        reply_text(&out),
        "554 5.7.1 read ok: alice@example.org:hash"
    );

    // A path outside the granted directory stays denied.
    s.config = toml::from_str("path = \"/etc/hostname\"").unwrap();
    let host = f.host(&[s]).unwrap();
    let out = FilterSession::new(host.current())
        .run(Hook::Connect(&c))
        .verdict;
    assert!(
        reply_text(&out).starts_with("451 4.7.1 denied: "),
        "{out:?}"
    );
}

#[test]
fn test_authenticator() {
    let f = Fixture::new();
    let host = f
        .host(&[spec("auth", guests::TEST_AUTHENTICATOR, Grants::default())])
        .unwrap();
    let set = host.current();
    let c = client();
    let good = Secret::new("correct horse".to_owned());
    let bad = Secret::new("battery staple".to_owned());
    assert_eq!(
        set.authenticate("PLAIN", "alice@example.org", &good, &c),
        AuthOutcome::Accepted("alice@example.org".into())
    );
    assert_eq!(
        set.authenticate("PLAIN", "alice@example.org", &bad, &c),
        AuthOutcome::Rejected
    );
    // not-mine from every authenticator: rejected.
    assert_eq!(
        set.authenticate("PLAIN", "mallory@elsewhere.example", &good, &c),
        AuthOutcome::Rejected
    );
}

#[test]
fn test_policy() {
    let f = Fixture::new();
    let host = f
        .host(&[spec("policy", guests::TEST_POLICY, Grants::default())])
        .unwrap();
    let set = host.current();
    let env = envelope(&[]);
    let route = |a: &str| set.route(&Address::parse(a).unwrap(), &env);
    let inbox = MailboxName::inbox();
    assert_eq!(
        route("postmaster@example.org"),
        RouteOutcome::Local(vec![("alice@example.org".into(), inbox.clone())])
    );
    assert_eq!(
        route("sales@example.org"),
        RouteOutcome::Local(vec![
            ("alice@example.org".into(), inbox.clone()),
            ("bob@example.org".into(), inbox)
        ])
    );
    assert!(
        matches!(route("nobody@example.org"), RouteOutcome::Reject(r) if r.to_string().starts_with("550 5.1.1"))
    );
    assert_eq!(route("someone@elsewhere.example"), RouteOutcome::Relay);
}

#[test]
fn test_wrong_world() {
    let f = Fixture::new();
    match f.host(&[spec(
        "wrong",
        guests::TEST_WRONG_WORLD,
        Grants::all_imports(),
    )]) {
        Err(LoadError::NotAPlugin { plugin, reason }) => {
            assert_eq!(plugin, "wrong");
            assert!(
                reason.contains("exports none of the wasmail interfaces"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    let engine = f.engine();
    assert!(matches!(
        inspect(&engine, guests::TEST_WRONG_WORLD),
        Err(LoadError::NotAPlugin { .. })
    ));
    assert!(matches!(
        inspect(&engine, b"not wasm at all"),
        Err(LoadError::Compile(_))
    ));
    let i = inspect(&engine, guests::TEST_KV_COUNTER).unwrap();
    assert_eq!(i.exports, ["rcpt-hook"]);
    assert_eq!(i.imports, ["config", "kv"]);
}

#[test]
fn hot_swap_under_load_never_fails_a_call() {
    let f = Fixture::new();
    let version = |word: &str| {
        let mut s = spec(
            "rules",
            guests::TEST_HEADER_REJECT,
            granted(false, true, false, false),
        );
        s.config = toml::from_str(&format!("word = {word:?}")).unwrap();
        s
    };
    let host = f.host(&[version("alpha")]).unwrap();
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let env = envelope(&["a@example.org"]);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let mut session = FilterSession::new(host.current());
                    let word = if session.set().generation().is_multiple_of(2) {
                        "alpha"
                    } else {
                        "beta"
                    };
                    // The session keeps its set: both hooks see the same version even if a
                    // swap happens in between.
                    let out = data(&mut session, &env, &format!("Subject: {word}\r\n\r\n"));
                    assert!(out.failures.is_empty(), "{:?}", out.failures);
                    assert!(
                        matches!(out.verdict, Verdict::Reject(_)),
                        "generation {} rejects {word}",
                        session.set().generation()
                    );
                    let out = data(&mut session, &env, "Subject: neither\r\n\r\n");
                    assert_eq!(out.verdict, Verdict::Continue);
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        for i in 1..=60u64 {
            let word = if i % 2 == 0 { "alpha" } else { "beta" };
            assert_eq!(host.reload(&[version(word)]).unwrap(), i);
            // A broken version is refused and the old one keeps serving.
            if i % 10 == 0 {
                let mut broken = version("gamma");
                broken.wasm = WasmSource::Bytes(Arc::from(&b"\0asm garbage"[..]));
                assert!(host.reload(&[broken]).is_err());
                assert_eq!(host.current().generation(), i);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::SeqCst);
    });
    eprintln!(
        "{} transactions during 60 swaps",
        calls.load(Ordering::SeqCst)
    );
    assert!(calls.load(Ordering::SeqCst) >= 60);
    // New transactions see the newest version.
    let mut session = FilterSession::new(host.current());
    assert!(matches!(
        data(&mut session, &env, "Subject: alpha\r\n\r\n").verdict,
        Verdict::Reject(_)
    ));
}

#[test]
fn reload_from_files_and_the_compiled_cache() {
    let f = Fixture::new();
    let path = f.dir.path().join("rules.wasm");
    std::fs::write(&path, guests::TEST_QUARANTINE).unwrap();
    let s = PluginSpec {
        grants: granted(false, true, false, false),
        ..PluginSpec::new("rules", WasmSource::File(path.clone()))
    };
    let host = f.host(std::slice::from_ref(&s)).unwrap();
    assert_eq!(host.current().describe()[0].1, ["data-hook"]);
    let cached: Vec<_> = std::fs::read_dir(f.dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1, "compiled artifact cached");
    // A new file version is picked up on reload; a missing file is an error that keeps the old.
    std::fs::write(&path, guests::TEST_HEADER_REJECT).unwrap();
    host.reload(std::slice::from_ref(&s)).unwrap();
    assert_eq!(host.current().describe()[0].1, ["helo-hook", "data-hook"]);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(host.reload(&[s]), Err(LoadError::Read { .. })));
    assert_eq!(host.current().describe()[0].1, ["helo-hook", "data-hook"]);
    // A restart loads from the cache (same result, no second cache entry).
    let _host2 = PluginHost::new(
        f.engine(),
        HostEnv::new(None, Arc::new(SystemClock), None),
        &[spec(
            "q",
            guests::TEST_QUARANTINE,
            granted(false, true, false, false),
        )],
    )
    .unwrap();
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("cache"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn duplicate_names_and_bad_limits_are_config_errors() {
    let f = Fixture::new();
    let a = spec("same", guests::TEST_PANIC, Grants::default());
    assert!(matches!(
        f.host(&[a.clone(), a.clone()]),
        Err(LoadError::Config(_))
    ));
    let mut big = a.clone();
    big.limits.memory = 1 << 30;
    assert!(matches!(f.host(&[big]), Err(LoadError::Config(_))));
    let mut bad = a;
    bad.name = "../evil".into();
    assert!(matches!(f.host(&[bad]), Err(LoadError::Config(_))));
}

// ---- auth-passwd (plugins/guests/shipped/auth-passwd): the default authenticator ----------------

/// PHC strings made once with the argon2 crate (argon2 0.6, random salts). ALICE has the OWASP
/// parameters `wasmail user` writes; the others are cheap so the test stays quick.
mod auth_passwd_support {
    use super::*;

    /// "correct horse battery", argon2id m=19456 t=2 p=1.
    pub const ALICE: &str = "$argon2id$v=19$m=19456,t=2,p=1$apZY1imaoWERvyz0vFJm8Q$wiiLOLQ0qyuzCKf+aF99wPPwUB5r4p/Qq0++xezBhTA";
    /// "bob secret", argon2i m=64 t=1 p=1.
    pub const BOB: &str = "$argon2i$v=19$m=64,t=1,p=1$yHa04e7jLvPEEf2YyYR2gw$JSUOnAGrTwqpu/rfsdSH+1a9sn1IlVcGbmShuyAw/0E";
    /// "carol secret", argon2d m=64 t=1 p=1.
    pub const CAROL: &str = "$argon2d$v=19$m=64,t=1,p=1$fgZMP8wNgLjTzuewJG9Tpw$KDlxPSGQwXbZ4FNuKuvZeT5xmRbgstrfZWB8BShNpWA";
    /// "dave secret", argon2id m=64 t=1 p=1.
    pub const DAVE: &str = "$argon2id$v=19$m=64,t=1,p=1$jzB+gWdR7k/JtUhr786PGw$y0+JvFIIq1miDJtWCRKu8fsdB5LCN06TiSu6SYyUCqw";

    /// The users file of most checks: a comment, a blank line, three accounts (one disabled).
    pub fn users_text() -> String {
        format!(
            "# wasmail users\n\nalice@example.org:{ALICE}\nbob@example.org:{BOB}\n\
             carol@example.org:{CAROL}:disabled\n"
        )
    }

    /// A spec for auth-passwd reading `users` (granting its directory when `grant_dir`), with
    /// extra config lines, a timeout that leaves room for argon2 on busy test machines.
    pub fn passwd_spec(users: &std::path::Path, grant_dir: bool, extra_config: &str) -> PluginSpec {
        let mut s = PluginSpec::new("passwd", WasmSource::Bytes(Arc::from(guests::AUTH_PASSWD)));
        s.grants = Grants {
            config: true,
            kv: true,
            read_dirs: if grant_dir {
                vec![users.parent().unwrap().to_path_buf()]
            } else {
                Vec::new()
            },
            ..Grants::default()
        };
        s.limits.timeout = TIMEOUT;
        s.config = toml::from_str(&format!(
            "users_file = {:?}\n{extra_config}",
            users.to_str().unwrap()
        ))
        .unwrap();
        s
    }

    /// A plugin with no grants (the fallback authenticator of the not-mine checks).
    pub fn plain_spec(name: &str, wasm: &'static [u8]) -> PluginSpec {
        super::spec(name, wasm, Grants::default())
    }

    pub const TIMEOUT: Duration = Duration::from_secs(5);

    pub fn secret(s: &str) -> Secret<String> {
        Secret::new(s.to_owned())
    }

    pub fn client_at(peer: &str) -> ClientInfo {
        ClientInfo::new(peer.parse().unwrap(), "127.0.0.1:587".parse().unwrap())
    }

    pub use super::log_capture::Logs;

    /// The median of `n` timed runs of `f`.
    pub fn median(n: usize, mut f: impl FnMut()) -> Duration {
        let mut times: Vec<Duration> = (0..n)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed()
            })
            .collect();
        times.sort();
        times[n / 2]
    }
}

#[test]
fn auth_passwd() {
    use AuthOutcome::{Accepted, Rejected, TemporaryFailure};
    use auth_passwd_support::*;

    let f = Fixture::new();
    let dir = f.dir.path().join("auth");
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users");
    std::fs::write(&users, users_text()).unwrap();
    let accepted = |a: &str| Accepted(a.to_owned());

    let host = f
        .host(&[passwd_spec(&users, true, "domains = [\"example.org\"]")])
        .unwrap();
    assert_eq!(
        host.current().describe(),
        [("passwd".to_owned(), vec!["authentication"])]
    );
    // Failures from this client count towards the lockout (8 by the end of this test, under the
    // default limit of 10; the lockout has its own test below).
    let c = client();
    let auth = |mechanism: &str, identity: &str, password: &str| {
        host.current()
            .authenticate(mechanism, identity, &secret(password), &c)
    };

    // The right password: the account name as the file writes it, whatever case was typed
    // (domain case-insensitive, local part ASCII-case-insensitive).
    assert_eq!(
        auth("PLAIN", "alice@example.org", "correct horse battery"),
        accepted("alice@example.org")
    );
    assert_eq!(
        auth("login", "ALICE@Example.ORG", "correct horse battery"),
        accepted("alice@example.org")
    );
    // argon2i and argon2d hashes verify too.
    assert_eq!(
        auth("PLAIN", "bob@example.org", "bob secret"),
        accepted("bob@example.org")
    );
    // Wrong password, unknown user of a listed domain, empty password: invalid credentials.
    assert_eq!(
        auth("PLAIN", "alice@example.org", "Correct horse battery"),
        Rejected
    );
    assert_eq!(auth("PLAIN", "nobody@example.org", "bob secret"), Rejected);
    assert_eq!(auth("PLAIN", "bob@example.org", ""), Rejected);
    // The disabled account: rejected with the right password, and the host logs why.
    let (out, logs) = Logs::capture(|| auth("PLAIN", "carol@example.org", "carol secret"));
    assert_eq!(out, Rejected);
    assert!(
        logs.contains("login refused: account disabled") && logs.contains("account disabled"),
        "{logs}"
    );
    // With a wrong password it is just invalid (nothing tells the guesser it is disabled).
    let (out, logs) = Logs::capture(|| auth("PLAIN", "carol@example.org", "guess"));
    assert_eq!(out, Rejected);
    assert!(!logs.contains("disabled"), "{logs}");

    // Per-login cost with the parameters `wasmail user` writes (argon2id m=19456 t=2 p=1).
    let per_login = median(5, || {
        assert_eq!(
            auth("PLAIN", "alice@example.org", "correct horse battery"),
            accepted("alice@example.org")
        );
    });
    eprintln!(
        "auth-passwd: one login with argon2id m=19456,t=2,p=1 takes {per_login:?} (limit {TIMEOUT:?})"
    );

    // The file changes between calls: a user added while the plugin is loaded logs in at once.
    assert_eq!(auth("PLAIN", "dave@example.org", "dave secret"), Rejected);
    std::fs::write(&users, format!("{}dave@example.org:{DAVE}\n", users_text())).unwrap();
    assert_eq!(
        auth("PLAIN", "dave@example.org", "dave secret"),
        accepted("dave@example.org")
    );
    // ... and one removed is gone at once.
    std::fs::write(&users, format!("dave@example.org:{DAVE}\n")).unwrap();
    assert_eq!(
        auth("PLAIN", "alice@example.org", "correct horse battery"),
        Rejected
    );

    // A hash that cannot be checked is the operator's problem, not a wrong password: a
    // temporary failure naming the line. Parameters above the plugin's bounds are refused
    // without running them.
    let costly = DAVE.replace("m=64,t=1", "m=4194304,t=1");
    std::fs::write(
        &users,
        format!("eve@example.org:$argon2id$garbage\nmallory@example.org:{costly}\n"),
    )
    .unwrap();
    let (out, logs) = Logs::capture(|| auth("PLAIN", "eve@example.org", "x"));
    assert_eq!(out, TemporaryFailure);
    assert!(
        logs.contains("users file line 1 (eve@example.org): not a PHC string"),
        "{logs}"
    );
    let (out, logs) = Logs::capture(|| auth("PLAIN", "mallory@example.org", "x"));
    assert_eq!(out, TemporaryFailure);
    assert!(logs.contains("exceed this plugin's bounds"), "{logs}");
    std::fs::write(&users, users_text()).unwrap();

    // A missing file: temporary failure, never "invalid" (the client keeps its password).
    std::fs::rename(&users, dir.join("users.moved")).unwrap();
    let (out, logs) = Logs::capture(|| auth("PLAIN", "bob@example.org", "bob secret"));
    assert_eq!(out, TemporaryFailure);
    assert!(logs.contains("cannot read users file"), "{logs}");
    std::fs::rename(dir.join("users.moved"), &users).unwrap();
    drop(host);

    // not-mine: for other mechanisms, and for unknown identities outside `domains`; the next
    // authenticator (test-authenticator knows alice@example.org / "correct horse") decides.
    let net_users = dir.join("net-users");
    std::fs::write(&net_users, format!("bob@example.net:{BOB}\n")).unwrap();
    let chain = |domains: &str| {
        f.host(&[
            passwd_spec(&net_users, true, domains),
            plain_spec("fallback", guests::TEST_AUTHENTICATOR),
        ])
        .unwrap()
    };
    let host = chain("domains = [\"example.net\"]");
    let set = host.current();
    assert_eq!(
        set.authenticate("PLAIN", "alice@example.org", &secret("correct horse"), &c),
        accepted("alice@example.org"),
        "example.org is not in domains: not-mine, the fallback decides"
    );
    assert_eq!(
        set.authenticate("PLAIN", "bob@example.net", &secret("bob secret"), &c),
        accepted("bob@example.net")
    );
    assert_eq!(
        set.authenticate("XOAUTH2", "bob@example.net", &secret("bob secret"), &c),
        Rejected,
        "another mechanism: not-mine; the fallback does not know bob"
    );
    // With the domain listed (or no `domains` at all) an unknown identity is invalid here.
    for domains in ["domains = [\"example.net\", \"Example.ORG\"]", ""] {
        let host = chain(domains);
        assert_eq!(
            host.current()
                .authenticate("PLAIN", "alice@example.org", &secret("correct horse"), &c),
            Rejected,
            "{domains}"
        );
    }

    // No directory granted: the plugin loads, every login is a temporary failure.
    let host = f.host(&[passwd_spec(&users, false, "")]).unwrap();
    let (out, logs) = Logs::capture(|| {
        host.current()
            .authenticate("PLAIN", "bob@example.org", &secret("bob secret"), &c)
    });
    assert_eq!(out, TemporaryFailure);
    assert!(logs.contains("cannot read users file"), "{logs}");
    // Without the kv grant it is refused at load (it counts failures in kv).
    let mut no_kv = passwd_spec(&users, true, "");
    no_kv.grants.kv = false;
    assert!(
        matches!(f.host(&[no_kv]), Err(LoadError::NotGranted { import, .. }) if import == "wasmail:plugin/kv")
    );
}

#[test]
fn auth_passwd_locks_out_brute_force_per_client_address() {
    use AuthOutcome::{Accepted, Rejected, TemporaryFailure};
    use auth_passwd_support::*;

    let f = Fixture::new();
    let dir = f.dir.path().join("auth");
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users");
    std::fs::write(&users, users_text()).unwrap();
    let host = f
        .host(&[passwd_spec(
            &users,
            true,
            "max_failures = 3\nfailure_window = 600",
        )])
        .unwrap();
    let auth = |identity: &str, password: &str, peer: &str| {
        host.current()
            .authenticate("PLAIN", identity, &secret(password), &client_at(peer))
    };
    let attacker = "198.51.100.9:5000";
    for guess in ["a", "b", "c"] {
        assert_eq!(auth("bob@example.org", guess, attacker), Rejected);
    }
    // At the limit: refused before the password is looked at, even the right one.
    let (out, logs) = Logs::capture(|| auth("bob@example.org", "bob secret", attacker));
    assert_eq!(out, TemporaryFailure);
    assert!(logs.contains("too many failed logins"), "{logs}");
    // Another address is not affected; a success does not reset the attacker's count.
    assert_eq!(
        auth("bob@example.org", "bob secret", "203.0.113.5:6000"),
        Accepted("bob@example.org".into())
    );
    // The window expires with the host's clock.
    f.clock.advance(599_000);
    assert_eq!(
        auth("bob@example.org", "bob secret", attacker),
        TemporaryFailure
    );
    f.clock.advance(2_000);
    assert_eq!(
        auth("bob@example.org", "bob secret", attacker),
        Accepted("bob@example.org".into())
    );
    // IPv6: one /64 is one client.
    for peer in [
        "[2001:db8:1:2::5]:1",
        "[2001:db8:1:2::6]:1",
        "[2001:db8:1:2::7]:1",
    ] {
        assert_eq!(auth("bob@example.org", "wrong", peer), Rejected);
    }
    assert_eq!(
        auth("bob@example.org", "bob secret", "[2001:db8:1:2:ffff::1]:1"),
        TemporaryFailure
    );
    assert_eq!(
        auth("bob@example.org", "bob secret", "[2001:db8:1:3::1]:1"),
        Accepted("bob@example.org".into())
    );
    // The count survives a reload (same kv namespace).
    host.reload(&[passwd_spec(&users, true, "max_failures = 3")])
        .unwrap();
    assert_eq!(
        auth("bob@example.org", "bob secret", "[2001:db8:1:2::8]:1"),
        TemporaryFailure
    );
    // Unknown users count as failures too (and cost a dummy verification).
    let other = "192.0.2.200:1";
    for _ in 0..3 {
        assert_eq!(auth("nobody@example.org", "x", other), Rejected);
    }
    assert_eq!(
        auth("bob@example.org", "bob secret", other),
        TemporaryFailure
    );
}

#[test]
fn auth_passwd_reads_a_thousand_user_file_quickly() {
    use auth_passwd_support::*;

    let f = Fixture::new();
    let dir = f.dir.path().join("auth");
    std::fs::create_dir_all(&dir).unwrap();
    let small = dir.join("small");
    let big = dir.join("big");
    std::fs::write(&small, format!("user999@example.org:{DAVE}\n")).unwrap();
    let mut text = String::from("# 1,000 accounts\n");
    for i in 0..1000 {
        text.push_str(&format!("user{i}@example.org:{DAVE}\n"));
    }
    std::fs::write(&big, &text).unwrap();
    let c = client();
    let time = |users: &std::path::Path| {
        let host = f
            .host(&[passwd_spec(users, true, "max_failures = 0")])
            .unwrap();
        median(21, || {
            assert_eq!(
                host.current().authenticate(
                    "PLAIN",
                    "user999@example.org",
                    &secret("dave secret"),
                    &c
                ),
                AuthOutcome::Accepted("user999@example.org".into())
            );
        })
    };
    let one = time(&small);
    let thousand = time(&big);
    eprintln!(
        "auth-passwd with a cheap hash (m=64,t=1): 1-user file {one:?}, 1,000-user file \
         ({} KiB, last line matches) {thousand:?} per login",
        text.len() / 1024
    );
    assert!(
        thousand < one + Duration::from_millis(50),
        "reading 1,000 lines costs little next to a login"
    );
}

// ---- shipped filters and delivery policy (plugins/guests/shipped/{filter-*,policy-local}) ------

mod shipped_support {
    use super::*;

    /// A shipped plugin with these grants and this config (TOML text).
    pub fn shipped(name: &str, wasm: &'static [u8], grants: Grants, config: &str) -> PluginSpec {
        let mut s = spec(name, wasm, grants);
        s.config = toml::from_str(config).unwrap();
        s
    }

    /// A client at `peer` ("192.0.2.7", "2001:db8::1"), authenticated as `account` if given.
    pub fn client_at(peer: &str, account: Option<&str>) -> ClientInfo {
        let ip: std::net::IpAddr = peer.parse().unwrap();
        let mut c = ClientInfo::new(SocketAddr::new(ip, 40000), "127.0.0.1:25".parse().unwrap());
        c.helo = Some("client.example".into());
        c.authenticated = account.map(str::to_owned);
        c
    }

    /// An envelope from `client`, MAIL FROM `from` ("" for `<>`), with these recipients.
    pub fn envelope_of(client: ClientInfo, from: &str, rcpts: &[&str]) -> Envelope {
        Envelope {
            mail_from: ReversePath::parse(&format!("<{from}>")).unwrap(),
            rcpt_to: rcpts.iter().map(|r| Address::parse(r).unwrap()).collect(),
            client,
        }
    }

    /// One RCPT TO in a transaction of its own (a fresh instance), as a retrying sender does.
    pub fn rcpt_once(
        host: &PluginHost,
        env: &Envelope,
        rcpt: &str,
    ) -> wasmail_plugin::ChainOutcome {
        let rcpt = Address::parse(rcpt).unwrap();
        let out = FilterSession::new(host.current()).run(Hook::Rcpt(env, &rcpt));
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        out
    }

    pub fn header(name: &str, value: &str) -> Modification {
        Modification::AddHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    pub use super::log_capture::Logs;

    /// The wasmail host interfaces a component imports, sorted.
    pub fn imports_of(f: &Fixture, wasm: &[u8]) -> Vec<String> {
        let mut i = inspect(&f.engine(), wasm).unwrap().imports;
        i.sort();
        i
    }
}

#[test]
fn filter_rules() {
    use shipped_support::*;

    const RULES: &str = r#"
colour = "blue"                       # not a setting: reported, ignored

[[rule]]                              # 1
header = "Subject"
contains = "lottery"
action = "reject"
reply = "550 5.7.1 Message refused by content rule"

[[rule]]                              # 2: bad, unknown key
header = "Subject"
contans = "hello"
action = "reject"

[[rule]]                              # 3: bad, a 4xx reply for reject
mail_from = "*@x.example"
action = "reject"
reply = "451 4.7.1 wrong class"

[[rule]]                              # 4: bad, unknown action (would match every client)
client = "*"
action = "explode"

[[rule]]                              # 5: bad, no condition (would discard everything)
action = "discard"

[[rule]]                              # 6: bad, invalid folder
header = "X-Spam-Flag"
action = "quarantine"
folder = "a//b"

[[rule]]                              # 7: bad, header field name with a space
header = "X Bad"
action = "accept"

[[rule]]                              # 8
header = "X-Spam-Flag"
equals = "yes"
action = "quarantine"
folder = "Junk/Spam"

[[rule]]                              # 9
header = "From"
glob = ["*@spam.example>", "*@spam.example"]
action = "discard"

[[rule]]                              # 10: envelope-only, but add-header acts on the message
rcpt = "abuse@*"
action = "add-header"
add = { name = "X-Abuse", value = "yes" }

[[rule]]                              # 11
header = "Subject"
contains = "newsletter"
action = "add-header"
add = { name = "X-Rule", value = "newsletter" }

[[rule]]                              # 12
header = "List-Id"
action = "quarantine"
folder = "Lists"

[[rule]]                              # 13
mail_from = ["*@bad.example", "*@worse.example"]
action = "defer"
reply = "451 4.7.1 Try later"

[[rule]]                              # 14: the default reply
rcpt = "honeypot@*"
action = "reject"

[[rule]]                              # 15
helo = "*.dynamic.example"
action = "reject"
reply = "550 5.7.1 No dynamic hosts"

[[rule]]                              # 16
client = "198.51.100.*"
action = "reject"
reply = "554 5.7.1 Go away"

[[rule]]                              # 17
client = "192.0.2.99"
action = "accept"

[[rule]]                              # 18: both conditions must hold
mail_from = "boss@example.net"
helo = "trusted.example"
action = "accept"
"#;

    let f = Fixture::new();
    let rules = shipped(
        "rules",
        guests::FILTER_RULES,
        granted(true, true, false, false),
        RULES,
    );
    // A second filter behind it: rejects "newsletter" subjects (and tags what it lets through).
    let mut next = spec(
        "words",
        guests::TEST_HEADER_REJECT,
        granted(false, true, false, false),
    );
    next.config = toml::from_str("word = \"newsletter\"").unwrap();
    let host = f.host(&[rules.clone(), next]).unwrap();
    assert_eq!(
        host.current().describe()[0],
        (
            "rules".to_owned(),
            vec![
                "connect-hook",
                "helo-hook",
                "mail-from-hook",
                "rcpt-hook",
                "data-hook"
            ]
        )
    );
    assert_eq!(imports_of(&f, guests::FILTER_RULES), ["config", "log"]);

    let c = client();
    let env = envelope(&["rcpt@example.org"]);
    // Each check is a transaction of its own; bad rules are logged in each.
    let session = || FilterSession::new(host.current());
    let on_data = |env: &Envelope, text: &str| {
        let out = data(&mut session(), env, text);
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        out
    };

    // Header reject with the configured reply (case-insensitive substring).
    let out = on_data(&env, "Subject: You won the LOTTERY!\r\n\r\nbody\r\n");
    assert_eq!(
        reply_text(&out.verdict),
        "550 5.7.1 Message refused by content rule"
    );
    assert_eq!(out.decided_by.as_deref(), Some("rules"));
    // Quarantine into a folder (equals ignores case and surrounding spaces).
    let out = on_data(&env, "X-Spam-Flag:  YES \r\nSubject: hi\r\n\r\n");
    assert_eq!(out.verdict, Verdict::Quarantine("Junk/Spam".into()));
    // A glob on a header value; discard.
    let out = on_data(&env, "From: Winner <prize@SPAM.example>\r\n\r\n");
    assert_eq!(out.verdict, Verdict::Discard);
    // add-header goes on to the next rule ...
    let out = on_data(
        &env,
        "Subject: our newsletter\r\nList-Id: <news.example>\r\n\r\n",
    );
    assert_eq!(out.verdict, Verdict::Quarantine("Lists".into()));
    assert_eq!(out.modifications, [header("X-Rule", "newsletter")]);
    // ... and on to the next filter of the chain, which decides here.
    let out = on_data(&env, "Subject: our newsletter\r\n\r\n");
    assert_eq!(out.decided_by.as_deref(), Some("words"));
    assert_eq!(
        reply_text(&out.verdict),
        "550 5.7.1 message refused by policy"
    );
    assert_eq!(out.modifications, [header("X-Rule", "newsletter")]);
    // An envelope rule with add-header runs after DATA, against every recipient.
    let abuse = envelope(&["someone@example.org", "Abuse@example.org"]);
    let out = on_data(&abuse, "Subject: report\r\n\r\n");
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(
        out.modifications,
        [header("X-Abuse", "yes"), header("X-Wasmail-Checked", "yes")]
    );
    // Nothing matches: continue, with no trace of the bad rules (5 would discard this).
    let out = on_data(&env, "Subject: hello\r\n\r\nlottery only in the body\r\n");
    assert_eq!(out.verdict, Verdict::Continue);
    assert_eq!(out.decided_by, None);

    // Envelope rules at their own hooks. MAIL FROM:
    let from = |sender: &str, helo: &str| {
        let mut c = client();
        c.helo = Some(helo.into());
        let env = Envelope {
            mail_from: ReversePath::parse(sender).unwrap(),
            rcpt_to: Vec::new(),
            client: c,
        };
        session().run(Hook::MailFrom(&env)).verdict
    };
    assert_eq!(
        reply_text(&from("<spammer@Bad.Example>", "client.example")),
        "451 4.7.1 Try later"
    );
    assert_eq!(
        reply_text(&from("<a@worse.example>", "client.example")),
        "451 4.7.1 Try later"
    );
    assert_eq!(
        from("<a@good.example>", "client.example"),
        Verdict::Continue
    );
    assert_eq!(from("<>", "client.example"), Verdict::Continue);
    // Rule 3 (bad) is not applied: this would have been rejected.
    assert_eq!(from("<a@x.example>", "client.example"), Verdict::Continue);
    // Two conditions: both must hold.
    assert_eq!(
        from("<boss@example.net>", "trusted.example"),
        Verdict::Accept
    );
    assert_eq!(
        from("<boss@example.net>", "other.example"),
        Verdict::Continue
    );
    // RCPT TO: the recipient at hand, not those before it.
    let rcpt = |to: &str| {
        let env = envelope(&["honeypot@example.org"]);
        let to = Address::parse(to).unwrap();
        session().run(Hook::Rcpt(&env, &to)).verdict
    };
    assert_eq!(
        reply_text(&rcpt("honeypot@example.net")),
        "550 5.7.1 Refused by local policy rule"
    );
    assert_eq!(rcpt("friend@example.org"), Verdict::Continue);
    assert_eq!(
        rcpt("abuse@example.org"),
        Verdict::Continue,
        "add-header rules wait for the message"
    );
    // EHLO:
    assert_eq!(
        reply_text(
            &session()
                .run(Hook::Helo(&c, "host-1.Dynamic.Example"))
                .verdict
        ),
        "550 5.7.1 No dynamic hosts"
    );
    assert_eq!(
        session().run(Hook::Helo(&c, "mail.example")).verdict,
        Verdict::Continue
    );
    // Connect: by client address (rule 4, "client = *" with a bad action, is not applied).
    let connect = |ip: &str| session().run(Hook::Connect(&client_at(ip, None))).verdict;
    assert_eq!(reply_text(&connect("198.51.100.23")), "554 5.7.1 Go away");
    assert_eq!(connect("192.0.2.99"), Verdict::Accept);
    assert_eq!(connect("192.0.2.7"), Verdict::Continue);

    // Every bad rule and the unknown setting were logged, with its number and why; no trap.
    let (out, logs) = Logs::capture(|| session().run(Hook::Connect(&c)));
    assert_eq!(out.verdict, Verdict::Continue);
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    for expected in [
        r#"unknown setting \"colour\""#,
        r#"rule 2 ignored: unknown key \"contans\""#,
        "rule 3 ignored: reply",
        "the code must be 5xx for this action",
        r#"rule 4 ignored: unknown action \"explode\""#,
        "rule 5 ignored: a rule needs a condition",
        r#"rule 6 ignored: \"a//b\" is not a valid folder name"#,
        r#"rule 7 ignored: \"X Bad\" is not a header field name"#,
    ] {
        assert!(logs.contains(expected), "{expected} in:\n{logs}");
    }
    assert!(!logs.contains("rule 1 ignored") && !logs.contains("rule 8 ignored"));

    // A config that is no rule list at all: logged, nothing applies, nothing traps.
    for config in [
        "rule = \"reject everything\"",
        "rule = [1, 2]",
        "[rule]\nheader = 5",
    ] {
        let s = shipped(
            "broken",
            guests::FILTER_RULES,
            granted(true, true, false, false),
            config,
        );
        let host = f.host(&[s]).unwrap();
        let out = data(
            &mut FilterSession::new(host.current()),
            &env,
            "Subject: lottery\r\n\r\n",
        );
        assert_eq!(out.verdict, Verdict::Continue, "{config}");
        assert!(out.failures.is_empty(), "{config}: {:?}", out.failures);
    }
    // No config at all: no rules.
    let host = f
        .host(&[shipped(
            "empty",
            guests::FILTER_RULES,
            granted(true, true, false, false),
            "",
        )])
        .unwrap();
    assert_eq!(
        data(
            &mut FilterSession::new(host.current()),
            &env,
            "Subject: x\r\n\r\n"
        )
        .verdict,
        Verdict::Continue
    );
}

#[test]
fn filter_greylist() {
    use shipped_support::*;

    let f = Fixture::new();
    let s = shipped(
        "greylist",
        guests::FILTER_GREYLIST,
        granted(true, true, true, true),
        r#"
delay = 300
exempt_clients = ["203.0.113.*", "2001:db8:ffff::/48"]
"#,
    );
    let host = f.host(std::slice::from_ref(&s)).unwrap();
    assert_eq!(host.current().describe()[0].1, ["rcpt-hook"]);
    assert_eq!(
        imports_of(&f, guests::FILTER_GREYLIST),
        ["clock", "config", "kv", "log"]
    );
    const GREYLISTED: &str = "451 4.7.1 Greylisted, please try again later";
    let try_rcpt = |host: &PluginHost, ip: &str, account: Option<&str>, from: &str, to: &str| {
        let env = envelope_of(client_at(ip, account), from, &[]);
        rcpt_once(host, &env, to).verdict
    };
    let attempt = |ip: &str, to: &str| try_rcpt(&host, ip, None, "sender@example.net", to);
    let minute = 60_000;

    // First sighting: deferred. A retry before the delay: still deferred.
    assert_eq!(
        reply_text(&attempt("192.0.2.7", "rcpt@example.org")),
        GREYLISTED
    );
    f.clock.advance(minute);
    assert_eq!(
        reply_text(&attempt("192.0.2.7", "rcpt@example.org")),
        GREYLISTED
    );
    // After the delay (counted from the first attempt): passes, as `continue`.
    f.clock.advance(4 * minute + 1_000);
    assert_eq!(attempt("192.0.2.7", "rcpt@example.org"), Verdict::Continue);
    // Then whitelisted: a new message with the same triplet passes at once, from any host of
    // the same /24, with the addresses in any case.
    assert_eq!(attempt("192.0.2.7", "rcpt@example.org"), Verdict::Continue);
    assert_eq!(
        attempt("192.0.2.200", "RCPT@example.org"),
        Verdict::Continue
    );
    // A different /24 is a new triplet; so is another recipient, or another sender.
    assert_eq!(
        reply_text(&attempt("192.0.3.7", "rcpt@example.org")),
        GREYLISTED
    );
    assert_eq!(
        reply_text(&attempt("192.0.2.7", "other@example.org")),
        GREYLISTED
    );
    assert_eq!(
        reply_text(&try_rcpt(&host, "192.0.2.7", None, "", "rcpt@example.org")),
        GREYLISTED,
        "the null sender is greylisted too"
    );
    // Authenticated clients and exempt clients always pass.
    assert_eq!(
        try_rcpt(
            &host,
            "198.51.100.1",
            Some("alice@example.org"),
            "alice@example.org",
            "x@example.com"
        ),
        Verdict::Continue
    );
    assert_eq!(
        attempt("203.0.113.50", "rcpt@example.org"),
        Verdict::Continue
    );
    assert_eq!(
        attempt("2001:db8:ffff:1::5", "rcpt@example.org"),
        Verdict::Continue
    );
    // IPv6: the /64 is the client.
    assert_eq!(
        reply_text(&attempt("2001:db8:1:2::1", "rcpt@example.org")),
        GREYLISTED
    );
    f.clock.advance(5 * minute);
    assert_eq!(
        attempt("2001:db8:1:2::ffff", "rcpt@example.org"),
        Verdict::Continue
    );
    assert_eq!(
        reply_text(&attempt("2001:db8:1:3::1", "rcpt@example.org")),
        GREYLISTED
    );

    // The state survives a restart (kv is persistent).
    drop(host);
    let host = f.host(std::slice::from_ref(&s)).unwrap();
    let attempt = |ip: &str, to: &str| try_rcpt(&host, ip, None, "sender@example.net", to);
    assert_eq!(attempt("192.0.2.7", "rcpt@example.org"), Verdict::Continue);

    // A retry after the retry window (24 h) starts over.
    let day = 24 * 60 * minute;
    assert_eq!(
        reply_text(&attempt("192.0.2.9", "late@example.org")),
        GREYLISTED
    );
    f.clock.advance(day + minute);
    assert_eq!(
        reply_text(&attempt("192.0.2.9", "late@example.org")),
        GREYLISTED
    );
    f.clock.advance(5 * minute);
    assert_eq!(attempt("192.0.2.9", "late@example.org"), Verdict::Continue);

    // The lifetime (36 days) counts from the last time the triplet passed ...
    f.clock.advance(30 * day);
    assert_eq!(attempt("192.0.2.7", "rcpt@example.org"), Verdict::Continue);
    f.clock.advance(30 * day);
    assert_eq!(attempt("192.0.2.7", "rcpt@example.org"), Verdict::Continue);
    // ... and a triplet unseen for longer expires: greylisted again.
    f.clock.advance(36 * day + minute);
    assert_eq!(
        reply_text(&attempt("192.0.2.7", "rcpt@example.org")),
        GREYLISTED
    );

    // Defaults (no config): a 300 s delay.
    let plain = shipped(
        "greylist2",
        guests::FILTER_GREYLIST,
        granted(true, true, true, true),
        "",
    );
    let host = f.host(&[plain]).unwrap();
    let attempt = |ip: &str| try_rcpt(&host, ip, None, "a@example.net", "b@example.org");
    assert_eq!(reply_text(&attempt("192.0.2.7")), GREYLISTED);
    f.clock.advance(299_000);
    assert_eq!(reply_text(&attempt("192.0.2.7")), GREYLISTED);
    f.clock.advance(1_000);
    assert_eq!(attempt("192.0.2.7"), Verdict::Continue);

    // Bad settings fall back to the defaults, logged; no trap.
    let bad = shipped(
        "greylist3",
        guests::FILTER_GREYLIST,
        granted(true, true, true, true),
        "delay = \"5m\"\nexempt_clients = [\"10.0.0.0/99\", 7]\ncolour = 1",
    );
    let host = f.host(&[bad]).unwrap();
    let (out, logs) =
        Logs::capture(|| try_rcpt(&host, "192.0.2.7", None, "a@b.example", "c@example.org"));
    assert_eq!(reply_text(&out), GREYLISTED);
    for expected in [
        "`delay` must be a number of seconds",
        "is neither a glob nor a CIDR network",
        "entries must be strings, not integer",
        r#"unknown setting \"colour\""#,
    ] {
        assert!(logs.contains(expected), "{expected} in:\n{logs}");
    }

    // Without the clock grant (or kv): refused at load.
    let mut no_clock = s;
    no_clock.grants.clock = false;
    assert!(
        matches!(f.host(&[no_clock]), Err(LoadError::NotGranted { import, .. }) if import == "wasmail:plugin/clock")
    );
}

#[test]
fn filter_ratelimit() {
    use shipped_support::*;

    let f = Fixture::new();
    let config = r#"
per_client = { limit = 3, window = 60 }
per_account = { limit = 5, window = 3600 }
"#;
    let s = shipped(
        "ratelimit",
        guests::FILTER_RATELIMIT,
        granted(true, true, true, false),
        config,
    );
    let host = f.host(std::slice::from_ref(&s)).unwrap();
    assert_eq!(host.current().describe()[0].1, ["rcpt-hook"]);
    assert_eq!(
        imports_of(&f, guests::FILTER_RATELIMIT),
        ["config", "kv", "log"]
    );
    const OVER: &str = "451 4.7.0 Rate limit exceeded, try again later";
    // `n` recipients in one transaction; the verdict of each.
    let send = |host: &PluginHost, ip: &str, account: Option<&str>, n: usize| -> Vec<String> {
        let env = envelope_of(client_at(ip, account), "sender@example.net", &[]);
        let mut session = FilterSession::new(host.current());
        (0..n)
            .map(|i| {
                let rcpt = Address::parse(&format!("r{i}@example.org")).unwrap();
                let out = session.run(Hook::Rcpt(&env, &rcpt));
                assert!(out.failures.is_empty(), "{:?}", out.failures);
                reply_text(&out.verdict)
            })
            .collect()
    };
    let ok = "Continue";
    let over = OVER;

    // Each recipient counts one; the limit+1-th is deferred, and so is the next transaction.
    assert_eq!(send(&host, "192.0.2.7", None, 4), [ok, ok, ok, over]);
    assert_eq!(send(&host, "192.0.2.7", None, 1), [over]);
    // Per address: a neighbour has its own count; an IPv6 /64 is one client.
    assert_eq!(send(&host, "192.0.2.8", None, 3), [ok, ok, ok]);
    assert_eq!(send(&host, "2001:db8::1", None, 2), [ok, ok]);
    assert_eq!(send(&host, "2001:db8::2", None, 2), [ok, over]);
    // The window ends with the clock: counting starts over.
    f.clock.advance(61_000);
    assert_eq!(send(&host, "192.0.2.7", None, 1), [ok]);

    // Authenticated: counted per account (limit 5), not per address, whatever case the account.
    assert_eq!(
        send(&host, "192.0.2.7", None, 3)[2],
        over,
        "the address is over again"
    );
    assert_eq!(
        send(&host, "192.0.2.7", Some("alice@example.org"), 3),
        [ok, ok, ok]
    );
    assert_eq!(
        send(&host, "198.51.100.9", Some("Alice@Example.org"), 3),
        [ok, ok, over]
    );
    assert_eq!(send(&host, "192.0.2.7", Some("bob@example.org"), 1), [ok]);
    // The account window is an hour: still over after a minute, free after the hour.
    f.clock.advance(61_000);
    assert_eq!(
        send(&host, "192.0.2.50", Some("alice@example.org"), 1),
        [over]
    );
    assert_eq!(send(&host, "192.0.2.7", None, 1), [ok]);
    f.clock.advance(3_600_000);
    assert_eq!(
        send(&host, "192.0.2.50", Some("alice@example.org"), 1),
        [ok]
    );

    // Another plugin entry is another kv namespace: its counts start at zero.
    assert_eq!(send(&host, "192.0.2.99", None, 4)[3], over);
    let mut other = s.clone();
    other.name = "ratelimit-b".into();
    let host_b = f.host(&[other]).unwrap();
    assert_eq!(send(&host_b, "192.0.2.99", None, 3), [ok, ok, ok]);
    assert_eq!(send(&host, "192.0.2.99", None, 1), [over]);

    // Defaults: 100 per client; `limit = 0` turns a counter off.
    let defaults = shipped(
        "rl-defaults",
        guests::FILTER_RATELIMIT,
        granted(true, true, true, false),
        "per_account = { limit = 0 }",
    );
    let host = f.host(&[defaults]).unwrap();
    let out = send(&host, "192.0.2.1", None, 101);
    assert!(
        out[..100].iter().all(|v| *v == ok) && out[100] == over,
        "{out:?}"
    );
    assert!(
        send(&host, "192.0.2.1", Some("carol@example.org"), 600)
            .iter()
            .all(|v| *v == ok)
    );

    // Bad settings: logged, defaults used, no trap.
    let bad = shipped(
        "rl-bad",
        guests::FILTER_RATELIMIT,
        granted(true, true, true, false),
        "per_client = { limit = \"many\", window = -5, burst = 1 }\nper_account = 7\nper_clinet = 3",
    );
    let host = f.host(&[bad]).unwrap();
    let (out, logs) = Logs::capture(|| send(&host, "192.0.2.1", None, 100));
    assert!(out.iter().all(|v| *v == ok), "the default limit of 100");
    for expected in [
        "`per_client.limit` must be a whole number of at least 0; using 100",
        "`per_client.window` must be a whole number of at least 1; using 3600",
        r#"unknown key \"burst\" in `per_client`"#,
        "`per_account` must be a table",
        r#"unknown setting \"per_clinet\""#,
    ] {
        assert!(logs.contains(expected), "{expected} in:\n{logs}");
    }
}

#[test]
fn policy_local() {
    use shipped_support::*;

    // deep0 -> deep1 -> ... -> deep7 -> alice: 8 levels of aliases, the most that is followed;
    // deeper0 -> ... -> deeper8 -> alice: 9 levels.
    let mut chains = String::new();
    for i in 0..8 {
        let next = if i == 7 {
            "alice".to_owned()
        } else {
            format!("deep{}", i + 1)
        };
        chains.push_str(&format!(
            "\"deep{i}@example.org\" = \"{next}@example.org\"\n"
        ));
    }
    for i in 0..9 {
        let next = if i == 8 {
            "alice".to_owned()
        } else {
            format!("deeper{}", i + 1)
        };
        chains.push_str(&format!(
            "\"deeper{i}@example.org\" = \"{next}@example.org\"\n"
        ));
    }
    let config = format!(
        r#"
domains = ["example.org", "Example.NET"]
accounts = ["alice@example.org", "Bob@example.org", "carol@example.net", "dave@example.org"]
plus_folders = true

[aliases]
"postmaster@example.org" = "alice@example.org"
"Sales@example.org" = ["alice@example.org", "bob@example.org"]
"team@example.org" = ["sales@example.org", "bob@example.org", "ghost@example.org"]
"dave@example.org" = ["dave@example.org", "alice@example.org"]
"outside@example.org" = ["someone@elsewhere.example", "bob@example.org"]
"nobody-home@example.org" = ["ghost@example.org"]
"loop-a@example.org" = "loop-b@example.org"
"loop-b@example.org" = ["alice@example.org", "loop-a@example.org"]
{chains}
[catch_all]
"example.net" = "carol@example.net"

[folders]
"alice+lists@example.org" = "Lists"
"#
    );
    let f = Fixture::new();
    let s = shipped(
        "local",
        guests::POLICY_LOCAL,
        granted(true, true, false, false),
        &config,
    );
    let host = f.host(&[s]).unwrap();
    assert_eq!(
        host.current().describe(),
        [("local".to_owned(), vec!["routing"])]
    );
    assert_eq!(imports_of(&f, guests::POLICY_LOCAL), ["config", "log"]);

    let set = host.current();
    let anonymous = envelope_of(client_at("192.0.2.7", None), "sender@example.net", &[]);
    let authenticated = envelope_of(
        client_at("192.0.2.7", Some("alice@example.org")),
        "alice@example.org",
        &[],
    );
    let route = |a: &str| set.route(&Address::parse(a).unwrap(), &anonymous);
    let inbox = |account: &str| (account.to_owned(), MailboxName::inbox());
    let folder = |account: &str, f: &str| (account.to_owned(), MailboxName::new(f).unwrap());
    let local = |targets: &[(String, MailboxName)]| RouteOutcome::Local(targets.to_vec());
    let rejected = |a: &str| match route(a) {
        RouteOutcome::Reject(r) => r.to_string(),
        other => panic!("{a}: {other:?}"),
    };

    // Local accounts, any case.
    assert_eq!(
        route("alice@example.org"),
        local(&[inbox("alice@example.org")])
    );
    assert_eq!(
        route("ALICE@Example.ORG"),
        local(&[inbox("alice@example.org")])
    );
    assert_eq!(route("bob@example.org"), local(&[inbox("bob@example.org")]));
    // Aliases: to one, to two, nested (delivered once each), to itself plus another.
    assert_eq!(
        route("postmaster@example.org"),
        local(&[inbox("alice@example.org")])
    );
    assert_eq!(
        route("sales@example.org"),
        local(&[inbox("alice@example.org"), inbox("bob@example.org")])
    );
    assert_eq!(
        route("team@example.org"),
        local(&[inbox("alice@example.org"), inbox("bob@example.org")]),
        "nested, deduplicated, the unknown target skipped"
    );
    assert_eq!(
        route("dave@example.org"),
        local(&[inbox("dave@example.org"), inbox("alice@example.org")])
    );
    assert_eq!(
        route("outside@example.org"),
        local(&[inbox("bob@example.org")]),
        "a non-local target cannot be forwarded: skipped"
    );
    // Subaddressing: a configured folder, else the tag (plus_folders), else INBOX.
    assert_eq!(
        route("alice+lists@example.org"),
        local(&[folder("alice@example.org", "Lists")])
    );
    assert_eq!(
        route("alice+Work@example.org"),
        local(&[folder("alice@example.org", "Work")])
    );
    assert_eq!(
        route("alice+@example.org"),
        local(&[inbox("alice@example.org")])
    );
    assert_eq!(
        route("alice+INBOX@example.org"),
        local(&[inbox("alice@example.org")])
    );
    assert_eq!(
        route("alice+a%b@example.org"),
        local(&[inbox("alice@example.org")]),
        "a tag that is not a plain name goes to INBOX"
    );
    assert_eq!(
        route("sales+q3@example.org"),
        local(&[inbox("alice@example.org"), inbox("bob@example.org")])
    );
    // Catch-all for a domain that has one; unknown users elsewhere.
    assert_eq!(
        route("anyone@example.net"),
        local(&[inbox("carol@example.net")])
    );
    assert_eq!(
        rejected("nobody@example.org"),
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
    );
    assert_eq!(
        route("bob+x@example.org"),
        local(&[folder("bob@example.org", "x")])
    );
    assert_eq!(
        rejected("nobody-home@example.org"),
        "550 5.1.1 <nobody-home@example.org>: Recipient address rejected: User unknown",
        "an alias whose only target is unknown"
    );
    // Alias loops and chains terminate: 8 levels are followed, a loop or a 9th level rejects.
    assert_eq!(
        route("deep0@example.org"),
        local(&[inbox("alice@example.org")])
    );
    let started = Instant::now();
    let (out, logs) = Logs::capture(|| route("loop-a@example.org"));
    assert!(
        matches!(&out, RouteOutcome::Reject(r) if r.to_string() == "550 5.4.6 <loop-a@example.org>: Alias expansion loop"),
        "{out:?}"
    );
    assert!(
        logs.contains("loop-a@example.org -> loop-b@example.org -> loop-a@example.org"),
        "{logs}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        rejected("deeper0@example.org"),
        "550 5.4.6 <deeper0@example.org>: Alias expansion loop"
    );
    // Skipped targets are logged.
    let (_, logs) = Logs::capture(|| route("team@example.org"));
    assert!(
        logs.contains(r#"\"team@example.org\" -> \"ghost@example.org\": no such account; skipped"#),
        "{logs}"
    );

    // Other domains: relay for authenticated clients only, never an open relay.
    assert_eq!(
        rejected("someone@elsewhere.example"),
        "550 5.7.1 Relaying denied"
    );
    assert_eq!(
        set.route(
            &Address::parse("someone@elsewhere.example").unwrap(),
            &authenticated
        ),
        RouteOutcome::Relay
    );
    // Authenticated senders to local recipients are routed the same way.
    assert_eq!(
        set.route(
            &Address::parse("sales@example.org").unwrap(),
            &authenticated
        ),
        local(&[inbox("alice@example.org"), inbox("bob@example.org")])
    );

    // Without `accounts`, every address at a local domain is an account (and catch_all has
    // nothing to catch); plus_folders off: subaddresses go to INBOX.
    let open = shipped(
        "open",
        guests::POLICY_LOCAL,
        granted(true, true, false, false),
        r#"
domains = ["example.org"]
catch_all = { "example.org" = "alice@example.org" }
folders = { "bob+lists@example.org" = "Lists" }
"#,
    );
    let host = f.host(&[open]).unwrap();
    let set = host.current();
    let route = |a: &str| set.route(&Address::parse(a).unwrap(), &anonymous);
    assert_eq!(
        route("anybody@example.org"),
        local(&[inbox("anybody@example.org")])
    );
    assert_eq!(
        route("alice+work@example.org"),
        local(&[inbox("alice@example.org")])
    );
    assert_eq!(
        route("bob+lists@example.org"),
        local(&[folder("bob@example.org", "Lists")])
    );
    assert!(
        matches!(route("x@example.net"), RouteOutcome::Reject(r) if r.to_string() == "550 5.7.1 Relaying denied")
    );

    // No settings at all: no local domain, so nothing is local and nothing relays for
    // strangers (fail closed); bad settings are logged, never a trap.
    let empty = shipped(
        "empty",
        guests::POLICY_LOCAL,
        granted(true, true, false, false),
        "",
    );
    let host = f.host(&[empty]).unwrap();
    let (out, logs) = Logs::capture(|| {
        host.current()
            .route(&Address::parse("alice@example.org").unwrap(), &anonymous)
    });
    assert!(matches!(out, RouteOutcome::Reject(r) if r.to_string() == "550 5.7.1 Relaying denied"));
    assert!(logs.contains("no local domains configured"), "{logs}");
    let bad = shipped(
        "bad",
        guests::POLICY_LOCAL,
        granted(true, true, false, false),
        r#"
domains = "example.org"
accounts = [1]
plus_folders = "yes"
colour = "blue"
aliases = { "a@example.org" = 5, "b@example.org" = "alice@example.org" }
folders = { "alice+x@example.org" = "a//b" }
"#,
    );
    let host = f.host(&[bad]).unwrap();
    let (out, logs) = Logs::capture(|| {
        let set = host.current();
        let route = |a: &str| set.route(&Address::parse(a).unwrap(), &anonymous);
        (route("b@example.org"), route("alice+x@example.org"))
    });
    assert_eq!(
        out,
        (
            local(&[inbox("alice@example.org")]),
            local(&[inbox("alice@example.org")])
        ),
        "a single domain string is accepted; the bad entries are ignored"
    );
    for expected in [
        "`accounts` must hold only strings",
        "plus_folders must be true or false",
        r#"unknown setting \"colour\""#,
        "must be a string or an array of strings",
        "must be a valid folder name",
    ] {
        assert!(logs.contains(expected), "{expected} in:\n{logs}");
    }
}
