//! Builds every guest crate of the `plugins/guests` workspace for `wasm32-wasip2` with a nested
//! `cargo build --release`, then writes `$OUT_DIR/guests.rs` with a byte constant, a path
//! constant, the `ALL` list and the `foreach_guest!` macro for each component the build produced.
//!
//! The nested build:
//! - uses the same cargo (`$CARGO`) and, through `RUSTC`/`RUSTUP_TOOLCHAIN`, the same rustc;
//! - has its own target dir under `$OUT_DIR` (sharing the outer one deadlocks on its lock);
//! - gets none of the outer build's flags, target or profile overrides from the environment;
//! - reports its artifacts as JSON, so the guest list is exactly what the guests workspace
//!   builds: a new crate under `plugins/guests/test/` shows up here with no edit.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const TARGET: &str = "wasm32-wasip2";

/// Environment variables the outer cargo sets or honours that would configure the nested build
/// the way the outer one is configured (flags, target, target dir, profile, a workspace wrapper
/// such as clippy-driver). Exact names; prefixes are in `LEAKY_PREFIXES`.
const LEAKY: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_INCREMENTAL",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PRIMARY_PACKAGE",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];
const LEAKY_PREFIXES: &[&str] = &[
    "CARGO_PROFILE_",
    "CARGO_TARGET_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_BIN_",
    "DEP_",
    "__CARGO",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("plugins/artifacts lives two levels below the repository root");
    let guests = repo.join("plugins").join("guests");
    let wit = repo.join("wit");

    rerun_if_changed(&guests, &wit);

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out_dir.join("guests");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests)
        .arg("build")
        .arg("--release")
        .args(["--target", TARGET])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--message-format", "json-render-diagnostics"])
        .stdin(Stdio::null());
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if LEAKY.contains(&name) || LEAKY_PREFIXES.iter().any(|p| name.starts_with(p)) {
            cmd.env_remove(name);
        }
    }
    // `CARGO`, `RUSTC`, `RUSTC_WRAPPER`, `RUSTUP_TOOLCHAIN`, `CARGO_HOME`, `CARGO_MAKEFLAGS` (the
    // jobserver, so the nested build shares the outer one's job slots) pass through unchanged.

    let started = Instant::now();
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run the nested cargo for plugins/guests: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let non_json: String = stdout
            .lines()
            .filter(|l| !l.starts_with('{'))
            .map(|l| format!("{l}\n"))
            .collect();
        fail(&format!(
            "building the guests failed ({status}):\n\
             cargo build --release --target {TARGET} --manifest-path {manifest} --target-dir {target}\n\
             {stderr}{non_json}",
            status = output.status,
            manifest = guests.join("Cargo.toml").display(),
            target = target_dir.display(),
        ));
    }

    // Fresh each run, so a guest removed from the workspace leaves no file behind.
    let wasm_dir = out_dir.join("wasm");
    let _ = fs::remove_dir_all(&wasm_dir);
    fs::create_dir_all(&wasm_dir).expect("create $OUT_DIR/wasm");
    let mut found: BTreeMap<String, Guest> = BTreeMap::new();
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !kinds.iter().any(|k| k == "cdylib" || k == "bin") {
            continue;
        }
        let manifest = msg["manifest_path"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for file in msg["filenames"].as_array().into_iter().flatten() {
            let Some(file) = file.as_str().map(PathBuf::from) else {
                continue;
            };
            if file.extension().is_none_or(|e| e != "wasm") {
                continue;
            }
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a .wasm file name is UTF-8")
                .replace('-', "_");
            assert!(
                stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && stem.starts_with(|c: char| c.is_ascii_alphabetic()),
                "guest artifact {} does not name a Rust identifier",
                file.display()
            );
            let copy = wasm_dir.join(format!("{stem}.wasm"));
            fs::copy(&file, &copy)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", file.display(), copy.display()));
            if let Some(previous) = found.get(&stem) {
                panic!(
                    "two guests build {stem}.wasm: {} and {manifest}",
                    previous.manifest
                );
            }
            found.insert(
                stem,
                Guest {
                    manifest: manifest.clone(),
                    path: copy,
                },
            );
        }
    }
    assert!(
        !found.is_empty(),
        "the guests workspace built no .wasm component; cargo said:\n{stderr}"
    );

    fs::write(out_dir.join("guests.rs"), generate(&found, &guests))
        .expect("write $OUT_DIR/guests.rs");
    // How long the nested build took, for whoever wonders why the build script is slow.
    let _ = fs::write(
        out_dir.join("guests-build-time.txt"),
        format!("{:.1?}\n", started.elapsed()),
    );
}

/// Ends the build script with `message` on stderr (cargo shows it) and no backtrace.
fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1);
}

#[derive(Debug)]
struct Guest {
    manifest: String,
    path: PathBuf,
}

fn generate(found: &BTreeMap<String, Guest>, guests: &Path) -> String {
    let mut src = String::from("// Generated by plugins/artifacts/build.rs. Do not edit.\n\n");
    for (stem, guest) in found {
        let konst = stem.to_ascii_uppercase();
        let path = guest.path.to_str().expect("OUT_DIR is UTF-8");
        let manifest = Path::new(&guest.manifest);
        let manifest = manifest.strip_prefix(guests).unwrap_or(manifest).display();
        let _ = write!(
            src,
            "/// The component built from `plugins/guests/{manifest}`.\n\
             pub const {konst}: &[u8] = include_bytes!({path:?});\n\
             /// The file of [`{konst}`].\n\
             pub const {konst}_PATH: &str = {path:?};\n\n",
        );
    }
    src.push_str(
        "/// Every guest as (name, component bytes), sorted by name; the name is the `.wasm` file\n\
         /// stem, e.g. `test_header_reject`.\n\
         pub const ALL: &[(&str, &[u8])] = &[\n",
    );
    for stem in found.keys() {
        let _ = writeln!(src, "    ({stem:?}, {}),", stem.to_ascii_uppercase());
    }
    src.push_str("];\n\n/// Every guest as (name, path of the component file), sorted by name.\n");
    src.push_str("pub const ALL_PATHS: &[(&str, &str)] = &[\n");
    for stem in found.keys() {
        let _ = writeln!(src, "    ({stem:?}, {}_PATH),", stem.to_ascii_uppercase());
    }
    src.push_str(
        "];\n\n\
         /// Calls `$m!(name)` once for every guest, e.g. `$m!(test_header_reject)`. A test module\n\
         /// that defines `macro_rules! assert_tested { ($name:ident) => { let _ = $name; } }` over\n\
         /// functions named after the guests fails to compile when a guest has no test.\n\
         #[macro_export]\n\
         macro_rules! foreach_guest {\n    ($m:ident) => {\n",
    );
    for stem in found.keys() {
        let _ = writeln!(src, "        $m!({stem});");
    }
    src.push_str("    };\n}\n");
    src
}

/// Reruns when anything that goes into a guest changes: the WIT and every file of the guests
/// workspace except a `target/` directory someone may have left there by building in place
/// (cargo scans a directory named here recursively, so the workspace directory itself is not
/// named: its entries are). A new guest lands under `test/`, which is watched.
fn rerun_if_changed(guests: &Path, wit: &Path) {
    println!("cargo:rerun-if-changed={}", wit.display());
    let entries = fs::read_dir(guests).unwrap_or_else(|e| panic!("read {}: {e}", guests.display()));
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
}
