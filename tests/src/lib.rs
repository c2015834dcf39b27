//! Shared helpers for wasmail's end-to-end tests (`tests/tests/*.rs`): real clients and tools,
//! real files in temp dirs.

pub mod bench;
pub mod imap;
pub mod imap_load;
pub mod load;
pub mod peer;
pub mod pop3;
pub mod pop3_load;
pub mod raw;
pub mod server;
pub mod smtp;

use std::path::Path;
use std::process::Command;

/// Runs a Python 3 script with `args` and returns its standard output; an error carries
/// Python's standard error.
pub fn python(script: &str, args: &[&Path]) -> Result<String, String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// Fails the test (never skips) when `tool` is not installed, naming the Debian package.
pub fn require(tool: &str, package: &str) {
    let found = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty());
    assert!(
        found,
        "`{tool}` is not installed: install the Debian package `{package}` \
         (apt-get install {package})"
    );
}

/// Runs a tool; returns (exit code, stdout + stderr).
pub fn run(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
