//! `wasmail user add|list|remove|passwd` run as the real binary, and the file it writes checked
//! by the auth-passwd plugin through the plugin host (the CLI writes, the guest verifies).

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier as _};
use wasmail_plugin::{
    AuthOutcome, EngineOptions, Grants, HostEnv, PluginEngine, PluginHost, PluginSpec, SystemClock,
    WasmSource,
};
use wasmail_types::{ClientInfo, Secret};

const WASMAIL: &str = env!("CARGO_BIN_EXE_wasmail");

/// A data dir and every byte the binary printed while working on it, to check that no password
/// ever shows up.
struct Data {
    dir: tempfile::TempDir,
    printed: std::sync::Mutex<String>,
}

impl Data {
    fn new() -> Data {
        Data {
            dir: tempfile::tempdir().unwrap(),
            printed: std::sync::Mutex::new(String::new()),
        }
    }

    fn data_dir(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn users(&self) -> PathBuf {
        self.dir.path().join("auth").join("users")
    }

    fn record(&self, out: Output) -> Output {
        let mut printed = self.printed.lock().unwrap();
        printed.push_str(&String::from_utf8_lossy(&out.stdout));
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    /// `wasmail user ARGS --data-dir DIR` with `stdin` (none: /dev/null).
    fn user(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(WASMAIL)
            .arg("user")
            .args(args)
            .args(["--data-dir", self.data_dir()])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            // A run that fails before reading (a bad address) may close the pipe first.
            let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        }
        self.record(child.wait_with_output().unwrap())
    }

    fn add(&self, address: &str, password: &str) -> Output {
        self.user(
            &["add", address, "--password-stdin"],
            Some(&format!("{password}\n")),
        )
    }

    fn list(&self) -> String {
        let out = self.user(&["list"], None);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The hash the file holds for `address`.
    fn hash_of(&self, address: &str) -> String {
        let users = std::fs::read_to_string(self.users()).unwrap();
        users
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{address}:")))
            .unwrap_or_else(|| panic!("{address} in {users}"))
            .to_owned()
    }

    fn assert_never_printed(&self, passwords: &[&str]) {
        let printed = self.printed.lock().unwrap();
        for p in passwords {
            assert!(!printed.contains(p), "{p:?} was printed:\n{printed}");
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn verifies(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), &PasswordHash::new(hash).unwrap())
        .is_ok()
}

fn fails_with(out: &Output, message: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).starts_with("wasmail: error: ") && text(&out.stderr).contains(message),
        "{:?} should say {message:?}",
        text(&out.stderr)
    );
}

#[test]
fn add_list_passwd_remove() {
    let d = Data::new();
    assert_eq!(d.list(), "", "no users file yet: no accounts");

    let started = Instant::now();
    let out = d.add("alice@Example.ORG", "correct horse battery");
    eprintln!(
        "wasmail user add (argon2id m=19456,t=2,p=1, this build): {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "added alice@example.org\n");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(d.list(), "alice@example.org\n");
    let first = d.hash_of("alice@example.org");
    assert!(
        first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{first}"
    );
    assert!(verifies("correct horse battery", &first));
    let started = Instant::now();
    assert!(!verifies("correct horse batteries", &first));
    eprintln!(
        "argon2id m=19456,t=2,p=1 verification on the host (test build): {:?}",
        started.elapsed()
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(d.users()).unwrap().permissions().mode() & 0o777,
        0o600,
        "password hashes are for the owner only"
    );

    // The same account again, in any case: refused, file unchanged.
    fails_with(
        &d.add("ALICE@example.org", "other password"),
        "alice@example.org already exists in",
    );
    assert_eq!(d.hash_of("alice@example.org"), first);

    // passwd: a new salt and hash; the old password stops working, the new one works.
    let out = d.user(
        &["passwd", "Alice@example.org", "--password-stdin"],
        Some("new secret words\r\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "changed the password of alice@example.org\n"
    );
    let second = d.hash_of("alice@example.org");
    assert_ne!(second, first);
    assert!(!verifies("correct horse battery", &second));
    assert!(verifies("new secret words", &second), "CRLF is a line end");

    // Unknown accounts, bad addresses, empty or missing passwords: exit 1, nothing changes.
    let before = std::fs::read_to_string(d.users()).unwrap();
    fails_with(
        &d.user(
            &["passwd", "bob@example.org", "--password-stdin"],
            Some("x\n"),
        ),
        "bob@example.org is not in",
    );
    fails_with(
        &d.user(&["remove", "bob@example.org"], None),
        "bob@example.org is not in",
    );
    fails_with(
        &d.add("not an address", "pw"),
        "\"not an address\" is not a valid address",
    );
    fails_with(&d.add("bob@", "pw"), "is not a valid address");
    fails_with(
        &d.user(&["remove", "bob@@example.org"], None),
        "is not a valid address",
    );
    fails_with(&d.add("bob@example.org", ""), "the password is empty");
    fails_with(
        &d.user(&["add", "bob@example.org", "--password-stdin"], Some("")),
        "the password is empty",
    );
    fails_with(
        &d.add("bob@example.org", &"x".repeat(1025)),
        "longer than 1024 bytes",
    );
    fails_with(
        &d.add("bob@example.org", "nul\0inside"),
        "control character",
    );
    assert_eq!(std::fs::read_to_string(d.users()).unwrap(), before);

    // A password that just fits is taken whole.
    let long = "y".repeat(1024);
    assert_eq!(d.add("bob@example.org", &long).status.code(), Some(0));
    assert!(verifies(&long, &d.hash_of("bob@example.org")));
    assert_eq!(d.list(), "alice@example.org\nbob@example.org\n");

    // A disabled flag written by hand is shown by list and kept by passwd.
    let users = std::fs::read_to_string(d.users()).unwrap();
    std::fs::write(
        d.users(),
        users.replace(
            &format!("bob@example.org:{}", d.hash_of("bob@example.org")),
            &format!("bob@example.org:{}:disabled", d.hash_of("bob@example.org")),
        ),
    )
    .unwrap();
    assert_eq!(d.list(), "alice@example.org\nbob@example.org (disabled)\n");
    let out = d.user(
        &["passwd", "bob@example.org", "--password-stdin"],
        Some("bob two\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(d.hash_of("bob@example.org").ends_with(":disabled"));

    // remove, then remove again.
    let out = d.user(&["remove", "ALICE@EXAMPLE.ORG"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "removed alice@example.org\n");
    assert_eq!(d.list(), "bob@example.org (disabled)\n");
    fails_with(
        &d.user(&["remove", "alice@example.org"], None),
        "alice@example.org is not in",
    );
    let auth: Vec<String> = std::fs::read_dir(d.dir.path().join("auth"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !auth.iter().any(|n| n.contains("tmp")),
        "no temporary file left: {auth:?}"
    );

    d.assert_never_printed(&[
        "correct horse battery",
        "other password",
        "new secret words",
        &long,
        "bob two",
    ]);
}

#[test]
fn the_data_dir_comes_from_the_config_unless_overridden() {
    let d = Data::new();
    let config = d.dir.path().join("wasmail.toml");
    let from_config = d.dir.path().join("configured");
    std::fs::write(
        &config,
        format!("[server]\ndata_dir = {:?}\n", from_config.to_str().unwrap()),
    )
    .unwrap();
    let mut child = Command::new(WASMAIL)
        .args(["user", "add", "carol@example.org", "--password-stdin"])
        .args(["--config", config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(from_config.join("auth").join("users").is_file());
    // --data-dir (what `Data::user` passes) wins over the config's data_dir.
    assert_eq!(d.list(), "");
}

#[test]
fn concurrent_adds_all_land() {
    let d = Data::new();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let d = &d;
        for i in 0..8 {
            scope.spawn(move || {
                let out = d.add(&format!("user{i}@example.org"), &format!("password {i}"));
                assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            });
        }
    });
    eprintln!("8 concurrent user adds: {:?}", started.elapsed());
    let mut listed: Vec<String> = d.list().lines().map(str::to_owned).collect();
    listed.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("user{i}@example.org")).collect();
    assert_eq!(listed, expected);
    for i in 0..8 {
        assert!(verifies(
            &format!("password {i}"),
            &d.hash_of(&format!("user{i}@example.org"))
        ));
    }
}

#[test]
fn without_a_terminal_the_password_must_come_from_stdin() {
    // `setsid` starts the binary in a new session with no controlling terminal, so a run from
    // an interactive shell cannot hang on the prompt.
    if Command::new("setsid").arg("--version").output().is_err() {
        eprintln!("skipped: no setsid");
        return;
    }
    let d = Data::new();
    let out = d.record(
        Command::new("setsid")
            .args(["-w", WASMAIL, "user", "add", "dan@example.org"])
            .args(["--data-dir", d.data_dir()])
            .stdin(Stdio::null())
            .output()
            .unwrap(),
    );
    fails_with(&out, "use --password-stdin");
    assert_eq!(d.list(), "");
}

/// Runs `wasmail user ARGS` on a pseudo-terminal (util-linux `script`), answering each prompt
/// with the next reply once it appears; returns everything the terminal showed.
fn on_a_terminal(d: &Data, args: &[&str], replies: &[&str]) -> Option<String> {
    let command = format!(
        "{WASMAIL} user {} --data-dir {}",
        args.join(" "),
        d.data_dir()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = String::new();
    let mut stdin = child.stdin.take().unwrap();
    let wait_for = |needle: &str, screen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !screen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => screen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => return false,
            }
        }
        true
    };
    for (i, reply) in replies.iter().enumerate() {
        let prompt = if i == 0 { "New password for" } else { "Retype" };
        assert!(
            wait_for(prompt, &mut screen),
            "no prompt {prompt:?}: {screen:?}"
        );
        // The prompt is printed just before echo is turned off.
        std::thread::sleep(Duration::from_millis(200));
        stdin.write_all(format!("{reply}\n").as_bytes()).unwrap();
    }
    drop(stdin);
    child.wait().unwrap();
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(5)) {
        screen.push_str(&String::from_utf8_lossy(&bytes));
    }
    d.printed.lock().unwrap().push_str(&screen);
    Some(screen)
}

#[test]
fn on_a_terminal_the_password_is_asked_twice_without_echo() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no util-linux script");
        return;
    }
    let d = Data::new();
    let screen = on_a_terminal(
        &d,
        &["add", "erin@example.org"],
        &["typed secret", "typed secret"],
    )
    .unwrap();
    assert!(
        screen.contains("New password for erin@example.org: "),
        "{screen:?}"
    );
    assert!(screen.contains("Retype the password: "), "{screen:?}");
    assert!(screen.contains("added erin@example.org"), "{screen:?}");
    assert!(verifies("typed secret", &d.hash_of("erin@example.org")));

    let screen = on_a_terminal(&d, &["passwd", "erin@example.org"], &["one", "two"]).unwrap();
    assert!(screen.contains("the passwords do not match"), "{screen:?}");
    assert!(verifies("typed secret", &d.hash_of("erin@example.org")));
    d.assert_never_printed(&["typed secret", "one\r", "two\r"]);
}

fn plugin_host(dir: &Path, users_dir: &Path, users_file: &Path) -> PluginHost {
    let engine = PluginEngine::new(EngineOptions {
        max_instances: 8,
        max_memory: 64 << 20,
        cache_dir: None,
        pooling: true,
    })
    .unwrap();
    let mut spec = PluginSpec::new(
        "passwd",
        WasmSource::Bytes(Arc::from(wasmail_plugin_artifacts::AUTH_PASSWD)),
    );
    spec.grants = Grants {
        config: true,
        kv: true,
        read_dirs: vec![users_dir.to_path_buf()],
        ..Grants::default()
    };
    // argon2id m=19456,t=2,p=1 takes ~50-100 ms in the guest; leave room for a busy machine.
    spec.limits.timeout = Duration::from_secs(5);
    spec.config =
        toml::from_str(&format!("users_file = {:?}", users_file.to_str().unwrap())).unwrap();
    PluginHost::new(
        engine,
        HostEnv::new(Some(dir.join("kv")), Arc::new(SystemClock), None),
        &[spec],
    )
    .unwrap()
}

#[test]
fn users_written_by_the_cli_log_in_through_the_plugin() {
    let d = Data::new();
    assert_eq!(
        d.add("frank@Example.org", "frank's pass").status.code(),
        Some(0)
    );
    let host = plugin_host(
        d.dir.path(),
        &wasmail::users::users_dir(d.dir.path()),
        &wasmail::users::users_file(d.dir.path()),
    );
    let client = ClientInfo::new(
        "192.0.2.44:5000".parse().unwrap(),
        "127.0.0.1:587".parse().unwrap(),
    );
    let login = |identity: &str, password: &str| {
        host.current().authenticate(
            "PLAIN",
            identity,
            &Secret::new(password.to_owned()),
            &client,
        )
    };
    let started = Instant::now();
    assert_eq!(
        login("FRANK@example.org", "frank's pass"),
        AuthOutcome::Accepted("frank@example.org".into())
    );
    eprintln!("one login through the plugin: {:?}", started.elapsed());
    assert_eq!(
        login("frank@example.org", "franks pass"),
        AuthOutcome::Rejected
    );

    // While the "server" runs: passwd, add and remove apply to the next login.
    let out = d.user(
        &["passwd", "frank@example.org", "--password-stdin"],
        Some("frank's new pass\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        login("frank@example.org", "frank's pass"),
        AuthOutcome::Rejected
    );
    assert_eq!(
        login("frank@example.org", "frank's new pass"),
        AuthOutcome::Accepted("frank@example.org".into())
    );
    assert_eq!(
        d.add("grace@example.org", "grace pw").status.code(),
        Some(0)
    );
    assert_eq!(
        login("grace@example.org", "grace pw"),
        AuthOutcome::Accepted("grace@example.org".into())
    );
    assert_eq!(
        d.user(&["remove", "frank@example.org"], None).status.code(),
        Some(0)
    );
    assert_eq!(
        login("frank@example.org", "frank's new pass"),
        AuthOutcome::Rejected
    );
    d.assert_never_printed(&["frank's pass", "frank's new pass", "grace pw"]);
}
