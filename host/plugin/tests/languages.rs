//! The "any language" proof: the filter of the Rust test guest `test-header-reject` written again
//! in Python (`examples/filter-python`, componentize-py) and JavaScript (`examples/filter-js`,
//! ComponentizeJS), built here from the examples' sources by their own `build.sh`, loaded through
//! `PluginHost` like any plugin, and driven side by side with the Rust guest on the same inputs:
//! all three must answer identically. Then the per-call cost of each (a fresh instance per
//! transaction, as the server runs them) is measured and printed; nothing is asserted about it.
//!
//! The toolchains are a requirement, not an option: without them this test fails saying what to
//! install (`.ci/run` installs both). A test that skipped itself would pass while proving nothing.
//!
//! What it builds is kept under cargo's `target/tmp/wasmail-languages/<lang>-<hash>/`, keyed by a
//! hash of every file the build reads from this repository (the example, and `wit/` through the
//! example's `wit/deps` symlink), with the engine's compiled-component cache beside it, so only the
//! first run after a change pays for building (seconds) and compiling (seconds for 12-18 MB).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmail_plugin::{
    ChainOutcome, EngineOptions, FilterSession, Grants, Hook, HostEnv, LoadError, ManualClock,
    PluginEngine, PluginHost, PluginSpec, WasmSource, inspect,
};
use wasmail_types::{
    Address, ClientInfo, Envelope, MessageContent, Modification, ReversePath, Verdict,
};

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Where this test keeps what it builds (cargo's scratch directory for integration tests).
fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasmail-languages")
}

/// One example: its directory, and what to install when its build says the toolchain is missing.
struct Example {
    lang: &'static str,
    dir: &'static str,
    install: &'static str,
}

const PYTHON: Example = Example {
    lang: "python",
    dir: "examples/filter-python",
    install: "Python 3 with pip, then componentize-py at the pinned version: \
              `pip install -r examples/filter-python/requirements.txt`",
};

const JS: Example = Example {
    lang: "js",
    dir: "examples/filter-js",
    install: "Node.js >= 20.19 with npm, then the pinned \
              ComponentizeJS: `npm ci --prefix examples/filter-js`",
};

/// Every file under `dir` (following symlinks), skipping what installs and builds leave there, and
/// documentation.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "node_modules"
            || name == "__pycache__"
            || name.starts_with("filter.wasm")
            || name.ends_with(".md")
        {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A hash of everything the example's build reads from this repository: its own files and,
/// through `wit/deps/wasmail-plugin`, the WIT package. The toolchains are pinned by those files
/// (`requirements.txt`, `package-lock.json`; each `build.sh` checks its tool is there).
fn source_hash(example: &Example) -> String {
    let dir = root().join(example.dir);
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    paths.sort();
    let mut h = Sha256::new();
    for p in &paths {
        h.update(p.strip_prefix(&dir).unwrap().to_string_lossy().as_bytes());
        let bytes = std::fs::read(p).unwrap();
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A component built from an example, and where its compiled form is cached.
struct Built {
    wasm: Vec<u8>,
    dir: PathBuf,
    /// How long `build.sh` took; `None` when the build cache had it.
    took: Option<Duration>,
}

/// The example's component: from the cache if its sources have not changed, else built by its
/// `build.sh`. Fails with the install instructions if the toolchain is missing.
fn build(example: &Example) -> Result<Built, String> {
    let hash = source_hash(example);
    let dir = scratch().join(format!("{}-{hash}", example.lang));
    if let Ok(wasm) = std::fs::read(dir.join("filter.wasm")) {
        return Ok(Built {
            wasm,
            dir,
            took: None,
        });
    }
    // Build into a fresh directory, then rename, so a concurrent or interrupted run never leaves
    // a half-written component under the final name.
    let tmp = scratch().join(format!(
        "{}-{hash}.building-{}",
        example.lang,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let script = root().join(example.dir).join("build.sh");
    let started = Instant::now();
    let result = Command::new("bash").arg(&script).arg(&tmp).output();
    let took = started.elapsed();
    let output = result.map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        // build.sh exits with 3 when its toolchain is missing or not the pinned version.
        let hint = if output.status.code() == Some(3) {
            format!(
                "The {} example's toolchain is missing. Install {}. (.ci/run does.)",
                example.lang, example.install
            )
        } else {
            String::new()
        };
        return Err(format!(
            "{} failed ({}):\n{}{}\n{hint}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    // Earlier builds of this example (and their compiled forms) are of no further use.
    for e in std::fs::read_dir(scratch()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{}-", example.lang)) && e.path() != tmp {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    std::fs::rename(&tmp, &dir).unwrap();
    Ok(Built {
        wasm: std::fs::read(dir.join("filter.wasm")).unwrap(),
        dir,
        took: Some(took),
    })
}

/// One implementation of the filter.
struct Impl {
    lang: &'static str,
    wasm: Arc<[u8]>,
    /// The engine's compiled-component cache for this component.
    compiled: PathBuf,
}

impl Impl {
    /// The engine of guests.rs's fixtures, with this component's compiled cache.
    fn engine(&self) -> PluginEngine {
        PluginEngine::new(EngineOptions {
            max_instances: 64,
            max_memory: 64 << 20,
            cache_dir: Some(self.compiled.clone()),
            pooling: true,
        })
        .unwrap()
    }

    /// The plugin as an operator would configure it: named "rules", granted `config` only.
    fn spec(&self, config: &str) -> PluginSpec {
        let mut s = PluginSpec::new("rules", WasmSource::Bytes(self.wasm.clone()));
        s.grants = Grants {
            config: true,
            ..Grants::default()
        };
        s.config = toml::from_str(config).unwrap();
        s
    }

    fn host(&self, config: &str) -> Result<PluginHost, LoadError> {
        PluginHost::new(self.engine(), env(), &[self.spec(config)])
    }
}

fn env() -> HostEnv {
    HostEnv::new(None, Arc::new(ManualClock::new(1_700_000_000_000)), None)
}

fn client() -> ClientInfo {
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
    let mut c = ClientInfo::new(peer, local);
    c.helo = Some("client.example".into());
    c
}

fn envelope() -> Envelope {
    Envelope {
        mail_from: ReversePath::parse("<sender@example.net>").unwrap(),
        rcpt_to: vec![Address::parse("rcpt@example.org").unwrap()],
        client: client(),
    }
}

fn message(text: &str) -> Arc<dyn MessageContent> {
    Arc::new(text.as_bytes().to_vec())
}

/// One SMTP stage's input.
enum Input {
    Data(&'static str),
    Helo(&'static str),
    Connect,
}

/// What the filter must answer.
enum Expect {
    /// 550 5.7.1 message refused by policy.
    Reject,
    /// 451 4.7.1 greeting deferred.
    Defer,
    /// Continue, adding `X-Wasmail-Checked: yes`.
    Checked,
    /// Continue, no modifications.
    Continue,
}

/// Inputs and answers with `word = "lottery"` configured.
const WITH_WORD: &[(Input, Expect)] = &[
    (
        Input::Data("Subject: you won the lottery\r\n\r\nbody\r\n"),
        Expect::Reject,
    ),
    (
        Input::Data("Subject: hello\r\n\r\nlottery in the body does not count\r\n"),
        Expect::Checked,
    ),
    // The word in a second Subject field only; in a folded one; among non-ASCII text.
    (
        Input::Data("Subject: first\r\nSubject: lottery again\r\n\r\nx\r\n"),
        Expect::Reject,
    ),
    (
        Input::Data("Subject: you have\r\n\twon the lottery\r\n\r\nx\r\n"),
        Expect::Reject,
    ),
    (
        Input::Data("Subject: Gr\u{fc}\u{df}e, lottery \u{1f600}\r\n\r\nx\r\n"),
        Expect::Reject,
    ),
    // Case-sensitive, like Rust's `str::contains`; other fields do not count; nor does no Subject.
    (
        Input::Data("Subject: LOTTERY\r\n\r\nx\r\n"),
        Expect::Checked,
    ),
    (
        Input::Data("X-Subject: lottery\r\nFrom: lottery@example.net\r\n\r\nx\r\n"),
        Expect::Checked,
    ),
    (Input::Data("From: a@example.net\r\n\r\n"), Expect::Checked),
    (Input::Helo("defer.me"), Expect::Defer),
    (Input::Helo("fine.example"), Expect::Continue),
    (Input::Helo("DEFER.ME"), Expect::Continue),
    // A hook the filter does not export is not called.
    (Input::Connect, Expect::Continue),
];

/// Inputs and answers with no config: the default word "VIAGRA" applies.
const DEFAULT_WORD: &[(Input, Expect)] = &[
    (
        Input::Data("Subject: cheap VIAGRA here\r\n\r\nx\r\n"),
        Expect::Reject,
    ),
    (
        Input::Data("Subject: you won the lottery\r\n\r\nx\r\n"),
        Expect::Checked,
    ),
    (Input::Helo("defer.me"), Expect::Defer),
];

fn run(session: &mut FilterSession, input: &Input) -> ChainOutcome {
    let c = client();
    let env = envelope();
    match input {
        Input::Data(text) => session.run(Hook::Data(&env, message(text))),
        Input::Helo(helo) => session.run(Hook::Helo(&c, helo)),
        Input::Connect => session.run(Hook::Connect(&c)),
    }
}

fn reply_text(v: &Verdict) -> String {
    match v {
        Verdict::Reject(r) | Verdict::Defer(r) | Verdict::Disconnect(r) => r.to_string(),
        other => format!("{other:?}"),
    }
}

fn check(lang: &str, input: usize, out: &ChainOutcome, expect: &Expect) {
    let at = format!("{lang}, input {input}: {out:?}");
    assert!(out.failures.is_empty(), "{at}");
    match expect {
        Expect::Reject | Expect::Defer => {
            let text = match expect {
                Expect::Reject => "550 5.7.1 message refused by policy",
                _ => "451 4.7.1 greeting deferred",
            };
            assert_eq!(reply_text(&out.verdict), text, "{at}");
            assert_eq!(out.decided_by.as_deref(), Some("rules"), "{at}");
            assert!(out.modifications.is_empty(), "{at}");
        }
        Expect::Checked => {
            assert_eq!(out.verdict, Verdict::Continue, "{at}");
            assert_eq!(
                out.modifications,
                [Modification::AddHeader {
                    name: "X-Wasmail-Checked".into(),
                    value: "yes".into()
                }],
                "{at}"
            );
        }
        Expect::Continue => {
            assert_eq!(out.verdict, Verdict::Continue, "{at}");
            assert!(out.modifications.is_empty(), "{at}");
        }
    }
}

/// The median of `n` timed runs of `f`.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
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

/// The files in `dir` (0 if it does not exist yet).
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn the_header_reject_filter_in_rust_python_and_javascript() {
    // Build both examples (or take them from the cache) before asserting anything, so a machine
    // missing both toolchains hears about both at once.
    let mut impls = vec![Impl {
        lang: "rust",
        wasm: Arc::from(wasmail_plugin_artifacts::TEST_HEADER_REJECT),
        compiled: scratch().join("rust-compiled"),
    }];
    let mut errors = Vec::new();
    for example in [&PYTHON, &JS] {
        match build(example) {
            Ok(built) => {
                eprintln!(
                    "[languages] {:>6}: {} bytes, {}",
                    example.lang,
                    built.wasm.len(),
                    match built.took {
                        Some(t) => format!(
                            "built by {}/build.sh in {:.1} s",
                            example.dir,
                            t.as_secs_f64()
                        ),
                        None => "from the build cache".into(),
                    }
                );
                impls.push(Impl {
                    lang: example.lang,
                    wasm: Arc::from(built.wasm),
                    compiled: built.dir.join("compiled"),
                });
            }
            Err(e) => errors.push(e),
        }
    }
    assert!(errors.is_empty(), "\n{}", errors.join("\n\n"));

    // Loading: exactly the two hooks; of the host's imports only `config`, and refused without it.
    let mut hosts = Vec::new();
    for l in &impls {
        let was_cached = count(&l.compiled) > 0;
        let started = Instant::now();
        let host = l
            .host("word = \"lottery\"")
            .unwrap_or_else(|e| panic!("{}: {e}", l.lang));
        eprintln!(
            "[languages] {:>6}: loaded in {:.0} ms ({})",
            l.lang,
            started.elapsed().as_secs_f64() * 1000.0,
            if was_cached {
                "from the compiled cache"
            } else {
                "compiled now: first run"
            }
        );
        assert_eq!(
            host.current().describe(),
            [("rules".to_owned(), vec!["helo-hook", "data-hook"])],
            "{}",
            l.lang
        );
        let seen = inspect(&l.engine(), &l.wasm).unwrap();
        assert_eq!(seen.exports, ["helo-hook", "data-hook"], "{}", l.lang);
        assert_eq!(seen.imports, ["config"], "{}", l.lang);
        eprintln!(
            "[languages] {:>6}: exports {:?}; imports {:?} and {} WASI interfaces",
            l.lang,
            seen.exports,
            seen.imports,
            seen.wasi_imports.len()
        );
        let mut ungranted = l.spec("");
        ungranted.grants.config = false;
        match PluginHost::new(l.engine(), env(), &[ungranted]) {
            Err(LoadError::NotGranted { plugin, import }) => assert_eq!(
                (plugin.as_str(), import.as_str()),
                ("rules", "wasmail:plugin/config"),
                "{}",
                l.lang
            ),
            other => panic!("{}: {other:?}", l.lang),
        }
        hosts.push(host);
    }

    // The same inputs through each: every answer as expected, and the three outcomes identical
    // (verdict, reply, deciding plugin, modifications).
    for (config, cases) in [("word = \"lottery\"", WITH_WORD), ("", DEFAULT_WORD)] {
        let configured: Vec<PluginHost> = impls.iter().map(|l| l.host(config).unwrap()).collect();
        for (i, (input, expect)) in cases.iter().enumerate() {
            let outs: Vec<ChainOutcome> = impls
                .iter()
                .zip(&configured)
                .map(|(l, host)| {
                    let out = run(&mut FilterSession::new(host.current()), input);
                    check(l.lang, i, &out, expect);
                    out
                })
                .collect();
            for (l, out) in impls.iter().zip(&outs).skip(1) {
                assert_eq!(out, &outs[0], "{} and rust differ on input {i}", l.lang);
            }
        }
        // All of them in one transaction too: one instance serving several hooks and messages.
        for (l, host) in impls.iter().zip(&configured) {
            let mut session = FilterSession::new(host.current());
            for (i, (input, expect)) in cases.iter().enumerate() {
                check(l.lang, i, &run(&mut session, input), expect);
            }
        }
    }

    // Per-call cost of the data hook: a fresh instance per transaction (what the server does),
    // and for comparison a further call on the instance a transaction already has.
    const N: usize = 200;
    if cfg!(debug_assertions) {
        eprintln!(
            "[languages] timings below are of a dev build (the host's own code unoptimised); \
             `cargo test --release -p wasmail-plugin --test languages` for release figures"
        );
    }
    let env = envelope();
    let spam = "Subject: you won the lottery\r\nFrom: a@example.net\r\n\r\nbody\r\n";
    for (l, host) in impls.iter().zip(&hosts) {
        let fresh = median(N, || {
            let mut session = FilterSession::new(host.current());
            let out = session.run(Hook::Data(&env, message(spam)));
            assert!(matches!(out.verdict, Verdict::Reject(_)), "{out:?}");
        });
        let mut session = FilterSession::new(host.current());
        let reused = median(N, || {
            let out = session.run(Hook::Data(&env, message(spam)));
            assert!(matches!(out.verdict, Verdict::Reject(_)), "{out:?}");
        });
        eprintln!(
            "[languages] {:>6}: data hook, p50 of {N}: fresh instance {:>7.1} µs, reused instance {:>6.1} µs",
            l.lang,
            fresh.as_secs_f64() * 1e6,
            reused.as_secs_f64() * 1e6
        );
    }
}
