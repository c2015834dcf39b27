//! `wasmail plugin check` on a good component, a wrong-world one, and a file that is not
//! WebAssembly.

use std::process::{Command, Output};

use wasmail_plugin_artifacts as guests;

fn check(path: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmail"))
        .args(["plugin", "check", path])
        .output()
        .expect("run wasmail")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_filter_is_described_with_the_grants_it_needs() {
    let out = check(guests::TEST_KV_COUNTER_PATH);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(": a wasmail plugin\nexports: rcpt-hook\nneeds grants: config, kv\n"),
        "{stdout}"
    );

    let out = check(guests::TEST_HEADER_REJECT_PATH);
    assert!(text(&out.stdout).contains("exports: helo-hook, data-hook\nneeds grants: config\n"));
    let out = check(guests::TEST_AUTHENTICATOR_PATH);
    assert!(text(&out.stdout).contains("exports: authentication\nneeds grants: none\n"));
}

#[test]
fn what_is_not_a_plugin_is_refused_with_the_reason() {
    let out = check(guests::TEST_WRONG_WORLD_PATH);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("not a wasmail plugin")
            && err.contains("exports none of the wasmail interfaces"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0garbage").expect("write");
    let out = check(junk.to_str().expect("utf-8"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a valid WebAssembly component"),
        "{}",
        text(&out.stderr)
    );

    let out = check("/nonexistent.wasm");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read /nonexistent.wasm"));
}
