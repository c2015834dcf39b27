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

struct Bytes(Vec<u8>);

impl MessageContent for Bytes {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.0.get(offset as usize..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

fn message(text: &str) -> Arc<dyn MessageContent> {
    Arc::new(Bytes(text.as_bytes().to_vec()))
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
            while !stop.load(Ordering::SeqCst) {
                let mut session = FilterSession::new(host.current());
                let out = data(&mut session, &env, "Subject: fine\r\n\r\n");
                assert_eq!(out.verdict, Verdict::Continue, "{:?}", out.failures);
                calls.fetch_add(1, Ordering::SeqCst);
            }
        });
        f();
        stop.store(true, Ordering::SeqCst);
    });
    assert!(
        calls.load(Ordering::SeqCst) > 0,
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
    let content: Arc<dyn MessageContent> = Arc::new(Bytes(body.clone()));
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
