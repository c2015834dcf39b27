//! The `wasmail` binary as an operator meets it: exit codes, stdout and stderr.

use std::io::Write as _;
use std::process::{Command, Output};

use wasmail::config::Config;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn wasmail(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_wasmail"))
        .args(args)
        .output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_example_prints_a_config_equal_to_the_defaults() -> TestResult {
    let output = wasmail(&["config", "example"])?;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let printed = String::from_utf8(output.stdout)?;
    assert_eq!(Config::parse(&printed, None)?, Config::default());
    Ok(())
}

#[test]
fn config_check_accepts_the_defaults_and_a_valid_file() -> TestResult {
    let output = wasmail(&["config", "check"])?;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "ok\n");

    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(Config::example().as_bytes())?;
    let path = file.path().to_str().ok_or("temp path is not UTF-8")?;
    let output = wasmail(&["config", "check", "--config", path])?;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "ok\n");
    assert_eq!(text(&output.stderr), "");
    Ok(())
}

#[test]
fn config_check_names_an_unknown_key_and_its_line() -> TestResult {
    let mut file = tempfile::NamedTempFile::new()?;
    write!(
        file,
        "[server]\nhostname = \"mx.example.org\"\n\n[limits]\nmax_mesage_size = \"10 MiB\"\n"
    )?;
    let path = file.path().to_str().ok_or("temp path is not UTF-8")?;
    let output = wasmail(&["config", "check", "--config", path])?;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "wasmail: error: {path}, line 5, column 1: unknown field `max_mesage_size`"
        )),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn config_check_reports_validation_problems_and_warnings() -> TestResult {
    let mut file = tempfile::NamedTempFile::new()?;
    write!(file, "[store]\nfsync = false\n")?;
    let path = file.path().to_str().ok_or("temp path is not UTF-8")?;
    let output = wasmail(&["config", "check", "--config", path])?;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout), "ok\n");
    assert!(
        text(&output.stderr).starts_with("wasmail: warning: store.fsync: false"),
        "{}",
        text(&output.stderr)
    );

    let mut file = tempfile::NamedTempFile::new()?;
    write!(file, "[server]\ndomains = []\n")?;
    let path = file.path().to_str().ok_or("temp path is not UTF-8")?;
    let output = wasmail(&[
        "config",
        "check",
        "--config",
        path,
        "--data-dir",
        "/srv/mail",
    ])?;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "wasmail: error: {path}: server.domains: is empty: at least one local domain is needed\n"
        )
    );
    Ok(())
}

#[test]
fn config_check_reports_a_missing_file_with_its_cause() -> TestResult {
    let output = wasmail(&["config", "check", "--config", "/nonexistent/wasmail.toml"])?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("wasmail: error: cannot read config file /nonexistent/wasmail.toml: "),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn help_lists_the_subcommands_and_global_options() -> TestResult {
    let output = wasmail(&["--help"])?;
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    for expected in ["config", "--config <FILE>", "--data-dir <DIR>"] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from:\n{help}"
        );
    }
    let output = wasmail(&["config", "--help"])?;
    let help = text(&output.stdout);
    for expected in ["example", "check", "--config <FILE>"] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from:\n{help}"
        );
    }
    Ok(())
}

#[test]
fn usage_errors_exit_with_2() -> TestResult {
    for args in [
        &["config", "frobnicate"][..],
        &["--no-such-option"][..],
        &[][..],
    ] {
        let output = wasmail(args)?;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    Ok(())
}
