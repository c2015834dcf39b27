//! `wasmail serve` as an operator runs it: the real binary, started with no config beyond a data
//! dir and ports, reloaded with `wasmail plugin reload` and SIGHUP, stopped with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WASMAIL: &str = env!("CARGO_BIN_EXE_wasmail");

/// A running `wasmail serve` whose log lines arrive on a channel.
struct Serve {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Serve {
    fn start(config: &Path) -> Serve {
        let mut child = Command::new(WASMAIL)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Serve { child, log }
    }

    /// Waits for a log line containing `text`; returns it.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line containing {text:?}");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wasmail(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(WASMAIL)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with SMTP on an ephemeral port and one file-based filter plugin.
fn write_config(dir: &Path, plugin: &Path) -> std::path::PathBuf {
    let config = dir.join("wasmail.toml");
    let text = format!(
        r#"[server]
data_dir = "{data}"
domains = ["example.test"]

[services.smtp]
listen = ["127.0.0.1:0"]
[services.submission]
enabled = false
[services.submissions]
enabled = false
[services.imap]
enabled = false
[services.imaps]
enabled = false
[services.pop3]
enabled = false
[services.pop3s]
enabled = false

[log]
level = "info"
format = "json"

[[plugins]]
name = "auth"
file = "builtin:auth-passwd"
timeout = "2s"
[plugins.grants]
kv = true
clock = true
read_dirs = ["{data}/auth"]
[plugins.config]
users_file = "{data}/auth/users"

[[plugins]]
name = "local"
file = "builtin:policy-local"
[plugins.config]
domains = ["example.test"]

[[plugins]]
name = "checker"
file = "{plugin}"
"#,
        data = dir.join("data").display(),
        plugin = plugin.display(),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// The port `serve` logged for SMTP.
fn smtp_port(listening_line: &str) -> u16 {
    let addr = listening_line
        .split("127.0.0.1:")
        .nth(1)
        .expect("address in the listening line");
    addr.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn plugin_reload_sighup_and_sigterm_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("checker.wasm");
    std::fs::write(&plugin, wasmail_plugin_artifacts::TEST_HEADER_REJECT).unwrap();
    let config = write_config(dir.path(), &plugin);
    let serve = Serve::start(&config);
    let listening = serve.wait_for(r#""service":"smtp""#);
    let port = smtp_port(&listening);

    // A client connected before the reloads stays connected through them.
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 512];
    let n = client.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"220 "), "{:?}", &greeting[..n]);

    let (ok, stdout, stderr) = wasmail(&config, &["plugin", "reload"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "reloaded: generation 1");

    // A broken plugin file: the reload fails, says why, and the old set keeps serving.
    std::fs::write(&plugin, b"\0asm not really").unwrap();
    let (ok, _, stderr) = wasmail(&config, &["plugin", "reload"]);
    assert!(!ok);
    assert!(stderr.contains("checker"), "{stderr}");
    std::fs::write(&plugin, wasmail_plugin_artifacts::TEST_HEADER_REJECT).unwrap();

    serve.signal("HUP");
    serve.wait_for("SIGHUP: reloading plugins");
    serve.wait_for("plugins reloaded");

    client.write_all(b"NOOP\r\n").unwrap();
    let n = client.read(&mut greeting).unwrap();
    assert_eq!(&greeting[..n], b"250 2.0.0 Ok\r\n");
    drop(client);

    serve.signal("TERM");
    let mut serve = serve;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !dir.path().join("data/control.sock").exists(),
        "control socket left behind"
    );
}

#[test]
fn plugin_reload_without_a_server_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("checker.wasm");
    std::fs::write(&plugin, wasmail_plugin_artifacts::TEST_HEADER_REJECT).unwrap();
    let config = write_config(dir.path(), &plugin);
    let (ok, _, stderr) = wasmail(&config, &["plugin", "reload"]);
    assert!(!ok);
    assert!(stderr.contains("no server is running"), "{stderr}");
}
