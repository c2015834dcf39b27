//! Shared helpers for wasmail's end-to-end tests (`tests/tests/*.rs`): real clients and tools,
//! real files in temp dirs.

pub mod load;
pub mod peer;
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
