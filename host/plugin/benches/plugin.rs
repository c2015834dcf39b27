//! Cost of plugin calls, against a native Rust implementation of the same filter measured in the
//! same run. `cargo bench -p wasmail-plugin` (set WASMAIL_BENCH_QUICK=1 for a short run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmail_plugin::{
    EngineOptions, FilterSession, Grants, Hook, HostEnv, PluginEngine, PluginHost, PluginSpec,
    SystemClock, WasmSource,
};
use wasmail_plugin_artifacts as guests;
use wasmail_types::{Address, ClientInfo, Envelope, MessageContent, ReversePath, Verdict};

fn envelope() -> Envelope {
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    Envelope {
        mail_from: ReversePath::parse("<a@example.net>").unwrap(),
        rcpt_to: vec![Address::parse("b@example.org").unwrap()],
        client: ClientInfo::new(peer, "127.0.0.1:25".parse().unwrap()),
    }
}

fn message(body_len: usize) -> Arc<dyn MessageContent> {
    let mut m = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: quarterly report\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x@example.net>\r\n\r\n".to_vec();
    m.extend((0..body_len).map(|i| b"abcdefghijklmnopqrstuvwxyz\r\n"[i % 28]));
    Arc::new(m)
}

fn host(pooling: bool, specs: &[PluginSpec]) -> PluginHost {
    let engine = PluginEngine::new(EngineOptions {
        pooling,
        max_instances: 64,
        ..Default::default()
    })
    .unwrap();
    PluginHost::new(
        engine,
        HostEnv::new(None, Arc::new(SystemClock), None),
        specs,
    )
    .unwrap()
}

fn header_rule() -> PluginSpec {
    let mut s = PluginSpec::new(
        "rules",
        WasmSource::Bytes(Arc::from(guests::TEST_HEADER_REJECT)),
    );
    s.grants = Grants {
        config: true,
        ..Grants::default()
    };
    s.config = toml::from_str("word = \"lottery\"").unwrap();
    s
}

fn body_hash() -> PluginSpec {
    PluginSpec::new("hash", WasmSource::Bytes(Arc::from(guests::TEST_READ_BODY)))
}

/// Median and p99 of `n` timed runs of `f`.
fn measure(n: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..n.min(50) {
        f();
    }
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[n / 2], t[(n * 99 / 100).min(n - 1)])
}

/// The same decision as the header-reject guest, natively: parse the header section, look at
/// Subject, build the verdict.
fn native_header_rule(content: &dyn MessageContent) -> Verdict {
    let header = content.read_header().unwrap();
    let text = String::from_utf8_lossy(&header);
    let subject_hit = text
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .any(|(n, v)| n.eq_ignore_ascii_case("Subject") && v.contains("lottery"));
    if subject_hit {
        Verdict::Discard
    } else {
        Verdict::Continue
    }
}

fn native_body_hash(content: &dyn MessageContent) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    let mut off = 0;
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = content.read_at(off, &mut buf).unwrap();
        if n == 0 {
            break h;
        }
        for b in &buf[..n] {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        off += n as u64;
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let quick = std::env::var_os("WASMAIL_BENCH_QUICK").is_some();
    let n = if quick { 300 } else { 3000 };
    let env = envelope();
    println!(
        "wasmail plugin runtime, {} CPUs; reproduce: cargo bench -p wasmail-plugin",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "{:<58} {:>12} {:>12} {:>10}",
        "filter call (1 KiB message)", "p50", "p99", "vs native"
    );

    let small = message(1024);
    let (native, native99) = measure(n * 10, || {
        black_box(native_header_rule(small.as_ref()));
    });
    println!(
        "{:<58} {:>12} {:>12} {:>10}",
        "native Rust: header rule",
        us(native),
        us(native99),
        "1.0x"
    );

    let pooled = host(true, &[header_rule()]);
    let (fresh, fresh99) = measure(n, || {
        let mut s = FilterSession::new(pooled.current());
        black_box(s.run(Hook::Data(&env, small.clone())));
    });
    println!(
        "{:<58} {:>12} {:>12} {:>9.0}x",
        "wasm header rule, fresh instance (pooling): per transaction",
        us(fresh),
        us(fresh99),
        fresh.as_secs_f64() / native.as_secs_f64()
    );
    let mut session = FilterSession::new(pooled.current());
    session.run(Hook::Data(&env, small.clone()));
    let (reused, reused99) = measure(n, || {
        black_box(session.run(Hook::Data(&env, small.clone())));
    });
    println!(
        "{:<58} {:>12} {:>12} {:>9.0}x",
        "wasm header rule, instance reused within a transaction",
        us(reused),
        us(reused99),
        reused.as_secs_f64() / native.as_secs_f64()
    );
    let unpooled = host(false, &[header_rule()]);
    let (fresh_np, fresh_np99) = measure(n, || {
        let mut s = FilterSession::new(unpooled.current());
        black_box(s.run(Hook::Data(&env, small.clone())));
    });
    println!(
        "{:<58} {:>12} {:>12} {:>9.0}x",
        "wasm header rule, fresh instance WITHOUT pooling",
        us(fresh_np),
        us(fresh_np99),
        fresh_np.as_secs_f64() / native.as_secs_f64()
    );

    println!();
    println!(
        "{:<58} {:>12} {:>12} {:>10}",
        "full body read (1 MiB message)", "p50", "p99", "vs native"
    );
    let big = message(1 << 20);
    let m = if quick { 30 } else { 200 };
    let (native_big, native_big99) = measure(m, || {
        black_box(native_body_hash(big.as_ref()));
    });
    println!(
        "{:<58} {:>12} {:>12} {:>10}",
        "native Rust: FNV-1a over the message",
        us(native_big),
        us(native_big99),
        "1.0x"
    );
    let hasher = host(true, &[body_hash()]);
    let (wasm_big, wasm_big99) = measure(m, || {
        let mut s = FilterSession::new(hasher.current());
        black_box(s.run(Hook::Data(&env, big.clone())));
    });
    println!(
        "{:<58} {:>12} {:>12} {:>9.1}x",
        "wasm: message.read in 64 KiB chunks + FNV-1a, fresh instance",
        us(wasm_big),
        us(wasm_big99),
        wasm_big.as_secs_f64() / native_big.as_secs_f64()
    );

    println!();
    let specs = [header_rule(), body_hash()];
    let cache = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(EngineOptions {
        cache_dir: Some(cache.path().to_owned()),
        max_instances: 64,
        ..Default::default()
    })
    .unwrap();
    let t = Instant::now();
    let reloadable = PluginHost::new(
        engine,
        HostEnv::new(None, Arc::new(SystemClock), None),
        &specs,
    )
    .unwrap();
    let first = t.elapsed();
    let r = if quick { 5 } else { 30 };
    let (reload, reload99) = measure(r, || {
        reloadable.reload(&specs).unwrap();
    });
    println!(
        "{:<58} {:>12}",
        "load 2 plugins, compiling (cold cache)",
        format!("{:.1} ms", first.as_secs_f64() * 1e3)
    );
    println!(
        "{:<58} {:>12} {:>12}",
        "reload 2 plugins (compiled cache, checks, swap)",
        format!("{:.2} ms", reload.as_secs_f64() * 1e3),
        format!("{:.2} ms", reload99.as_secs_f64() * 1e3)
    );
}
