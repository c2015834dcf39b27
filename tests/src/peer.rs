//! The peer stack (Postfix 3.7 + Dovecot 2.3 from Debian, `../shared/peer`) as a benchmark
//! target: started in a fresh directory, measured, stopped.
//!
//! ```text
//!   Peer::start ── PEER_DIR=/var/tmp/wasmail-peer-XXXX start.sh ──► READY
//!        │   Postfix smtpd 127.0.0.1:10025 ─► queue (fsync) ─► lmtp ─► Dovecot LMTP :10024
//!        │                                               ─► $PEER_DIR/mail/userN/Maildir/new
//!        ├── smtp_addr()          where to send
//!        ├── maildir_count(user)  files in new/ + cur/: delivered to the mailbox, not just queued
//!        ├── pop3_addr()          Dovecot's POP3 as shipped (10110)
//!        ├── imap_addr()          Dovecot's IMAP as shipped (10143)
//!        ├── start_tuned() ── tuned-start.sh ──► a second Dovecot on the same users and mail,
//!        │        login processes in high-performance mode (POP3 11110, IMAP 11143);
//!        │        TunedDovecot's Drop runs tuned-stop.sh
//!        └── Drop ── tuned-stop.sh, stop.sh, then the directory is removed
//! ```
//!
//! The stack listens on fixed ports (10025 SMTP, 10024 LMTP, 10143/10110/10993/10995 for
//! IMAP/POP3), so only one can run at a time on a machine: [`Peer::start`] refuses to start when
//! one of them is taken rather than measure somebody else's instance. Nothing here installs the
//! packages; [`unavailable_reason`] says what is missing (see `../shared/peer/README.md`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The ports the peer stack's templates bind on 127.0.0.1.
pub const PEER_PORTS: [u16; 6] = [10025, 10024, 10143, 10110, 10993, 10995];
/// The ports the tuned Dovecot (`tuned-start.sh`) binds on 127.0.0.1: IMAP, POP3.
pub const TUNED_PORTS: [u16; 2] = [11143, 11110];
/// The password of every peer user (`user1`..`user100`, also as `userN@example.test`).
pub const PASSWORD: &str = "pass";

/// Why the peer stack cannot run here: `None` when it can (the scripts are there, Postfix and
/// Dovecot are installed, and this process is root, which `start.sh` needs).
pub fn unavailable_reason() -> Option<String> {
    let scripts = scripts_dir();
    if !scripts.join("start.sh").is_file() || !scripts.join("stop.sh").is_file() {
        return Some(format!(
            "the peer scripts are not at {} (set WASMAIL_PEER_SCRIPTS)",
            scripts.display()
        ));
    }
    let missing: Vec<&str> = ["postfix", "postmap", "postconf", "dovecot", "openssl"]
        .into_iter()
        .filter(|cmd| which(cmd).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "not installed: {} (apt-get install -y dovecot-imapd dovecot-pop3d dovecot-lmtpd \
             postfix, as {}/README.md says)",
            missing.join(", "),
            scripts.display()
        ));
    }
    // /proc/self belongs to the effective user.
    match std::fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => None,
        Ok(m) => Some(format!(
            "the peer stack must be started as root (this is uid {})",
            m.uid()
        )),
        Err(e) => Some(format!("cannot tell who this process runs as: {e}")),
    }
}

/// Postfix and Dovecot are installed and can be started from here.
pub fn postfix_available() -> bool {
    unavailable_reason().is_none()
}

/// Where the peer scripts are: `$WASMAIL_PEER_SCRIPTS`, else `shared/peer` beside the repository.
pub fn scripts_dir() -> PathBuf {
    std::env::var_os("WASMAIL_PEER_SCRIPTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peer"),
        PathBuf::from,
    )
}

/// Installed versions, e.g. `Postfix 3.7.11, Dovecot 2.3.19.1`.
pub fn versions() -> String {
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let postfix = out("postconf", &["-dh", "mail_version"]);
    let dovecot = out("dovecot", &["--version"]);
    let dovecot = dovecot.split_whitespace().next().unwrap_or("?");
    format!("Postfix {postfix}, Dovecot {dovecot}")
}

/// Why the peer stack did not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Packages, scripts or privileges are missing (the reason says which).
    #[error("the peer stack is unavailable: {0}")]
    Unavailable(String),
    /// A port the stack needs is taken, most likely by another peer instance (stop it with
    /// `PEER_DIR=<its dir> stop.sh`; they live in /var/tmp/wasmail-peer*).
    #[error(
        "127.0.0.1:{0} is already in use (another peer stack? stop it with PEER_DIR=<its dir> \
         {1}/stop.sh; see /var/tmp/wasmail-peer*/READY)"
    )]
    PortInUse(u16, String),
    /// Creating or preparing the peer directory failed.
    #[error("peer directory: {0}")]
    Dir(#[from] std::io::Error),
    /// `start.sh` failed; its output and the end of the Postfix log say why.
    #[error("start.sh failed ({status}):\n{output}")]
    Start { status: String, output: String },
    /// `start.sh` succeeded but READY has no usable `smtp=` line.
    #[error("READY in {0} has no smtp port")]
    Ready(PathBuf),
    /// `tuned-start.sh` failed, or its POP3 port never accepted a connection; its output and the
    /// end of the tuned Dovecot's log say why.
    #[error("tuned-start.sh failed ({status}):\n{output}")]
    StartTuned { status: String, output: String },
}

/// A running peer stack in its own directory under /var/tmp; stopped and removed on drop.
#[derive(Debug)]
pub struct Peer {
    dir: tempfile::TempDir,
    smtp: SocketAddr,
    scripts: PathBuf,
    /// Stops the stack if this process dies without dropping the Peer.
    watchdog: Child,
}

impl Peer {
    /// Runs `start.sh` with `PEER_DIR` a new directory under /var/tmp (on disk, so the fsyncs
    /// are real) and waits for it to report READY. Takes a few seconds.
    pub fn start() -> Result<Peer, PeerError> {
        if let Some(why) = unavailable_reason() {
            return Err(PeerError::Unavailable(why));
        }
        let scripts = scripts_dir();
        for port in PEER_PORTS {
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                return Err(PeerError::PortInUse(port, scripts.display().to_string()));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("wasmail-peer-")
            .tempdir_in("/var/tmp")?;
        // Postfix's daemons (user postfix) and Dovecot's (uid 5000) must reach their dirs below.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        // Should this process die without dropping the Peer (killed, aborted), a watchdog
        // stops the stack and removes the directory: it waits for the end of a pipe only this
        // process holds (close-on-exec: start.sh and the daemons do not inherit it), which the
        // kernel closes when the process dies, zombie or not.
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(
                "cat >/dev/null; PEER_DIR=\"$1\" bash \"$3\" >/dev/null 2>&1; \
                 PEER_DIR=\"$1\" bash \"$2\" >/dev/null 2>&1; rm -rf -- \"$1\"",
            )
            .arg("wasmail-peer-watchdog")
            .arg(dir.path())
            .arg(scripts.join("stop.sh"))
            .arg(scripts.join("tuned-stop.sh"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // From here on, dropping `peer` runs stop.sh, whatever start.sh got as far as.
        let mut peer = Peer {
            dir,
            smtp: SocketAddr::from((Ipv4Addr::LOCALHOST, 10025)),
            scripts,
            watchdog,
        };
        // The daemons inherit start.sh's stdout and stderr and keep them open: a file, not a
        // pipe, or reading its output would wait for them to exit.
        let log_path = peer.dir.path().join("start.log");
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new("bash")
            .arg(peer.scripts.join("start.sh"))
            .env("PEER_DIR", peer.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        if !status.success() {
            let maillog = std::fs::read_to_string(peer.dir.path().join("postfix/maillog"))
                .unwrap_or_default();
            let tail: Vec<&str> = maillog.lines().rev().take(10).collect();
            return Err(PeerError::Start {
                status: status.to_string(),
                output: format!(
                    "{}\n(end of the Postfix log:)\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            });
        }
        let ready_path = peer.dir.path().join("READY");
        let ready = std::fs::read_to_string(&ready_path)?;
        let port = ready
            .lines()
            .find_map(|l| l.strip_prefix("smtp="))
            .and_then(|v| v.split_whitespace().next()?.parse::<u16>().ok())
            .ok_or(PeerError::Ready(ready_path))?;
        peer.smtp.set_port(port);
        Ok(peer)
    }

    /// Postfix's SMTP listener (127.0.0.1:10025); it accepts mail for `userN@example.test`,
    /// N in 1..=100.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp
    }

    /// Dovecot's POP3 listener as shipped (127.0.0.1:10110, plaintext USER/PASS allowed): users
    /// `userN` or `userN@example.test`, N in 1..=100, password [`PASSWORD`].
    pub fn pop3_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 10110))
    }

    /// Dovecot's IMAP listener as shipped (127.0.0.1:10143, plaintext LOGIN allowed): the same
    /// users and password as [`Peer::pop3_addr`].
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 10143))
    }

    /// Starts the second, tuned Dovecot (`tuned-start.sh`: login processes in high-performance
    /// mode, pre-forked imap/pop3 processes) on the same users and Maildirs, and waits until its
    /// POP3 port accepts connections. Stopped when the returned guard is dropped (and by the
    /// peer's own drop or watchdog, should the guard be leaked). Refuses to start when one of
    /// [`TUNED_PORTS`] is taken.
    pub fn start_tuned(&self) -> Result<TunedDovecot<'_>, PeerError> {
        let start = self.scripts.join("tuned-start.sh");
        if !start.is_file() || !self.scripts.join("tuned-stop.sh").is_file() {
            return Err(PeerError::Unavailable(format!(
                "tuned-start.sh / tuned-stop.sh are not in {}",
                self.scripts.display()
            )));
        }
        for port in TUNED_PORTS {
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
                return Err(PeerError::PortInUse(
                    port,
                    self.scripts.display().to_string(),
                ));
            }
        }
        // From here on, dropping `tuned` runs tuned-stop.sh.
        let tuned = TunedDovecot { peer: self };
        let log_path = self.dir.path().join("tuned-start.log");
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new("bash")
            .arg(start)
            .env("PEER_DIR", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        // The script waits up to 10 s per port but does not fail when one never listens.
        let listening = (0..50).any(|i| {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            std::net::TcpStream::connect(tuned.pop3_addr()).is_ok()
        });
        if !status.success() || !listening {
            let log = std::fs::read_to_string(self.dir.path().join("dovecot-tuned/dovecot.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            return Err(PeerError::StartTuned {
                status: if listening {
                    status.to_string()
                } else {
                    format!("{status}, POP3 port {} not listening", TUNED_PORTS[1])
                },
                output: format!(
                    "{}\n(end of the tuned Dovecot's log:)\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            });
        }
        Ok(tuned)
    }

    /// The peer directory (config, queue, logs, mail).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `user`'s Maildir (`user1` or `user1@example.test`).
    pub fn maildir(&self, user: &str) -> PathBuf {
        let local = user.split('@').next().unwrap_or(user);
        self.dir.path().join("mail").join(local).join("Maildir")
    }

    /// Messages delivered into `user`'s INBOX: files in its Maildir's `new/` and `cur/` (Dovecot
    /// writes to `tmp/` and renames, so each one counted is complete and fsynced).
    pub fn maildir_count(&self, user: &str) -> usize {
        count_maildir(&self.maildir(user))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The watchdog is not needed any more (its `cat` ends when the pipe closes with us).
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        // A tuned Dovecot whose guard was leaked (it says "not running" otherwise).
        if self
            .dir
            .path()
            .join("dovecot-tuned/run/master.pid")
            .exists()
        {
            stop_tuned(&self.scripts, self.dir.path());
        }
        let stop = Command::new("bash")
            .arg(self.scripts.join("stop.sh"))
            .env("PEER_DIR", self.dir.path())
            .stdin(Stdio::null())
            .output();
        match stop {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "peer stop.sh failed ({}): {}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run the peer's stop.sh: {e}"),
        }
    }
}

/// The tuned Dovecot of a [`Peer`] (`tuned-start.sh`), on the peer's users and Maildirs;
/// stopped (`tuned-stop.sh`) on drop.
#[derive(Debug)]
pub struct TunedDovecot<'a> {
    peer: &'a Peer,
}

impl TunedDovecot<'_> {
    /// Its POP3 listener (127.0.0.1:11110): the peer's users and password.
    pub fn pop3_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, TUNED_PORTS[1]))
    }

    /// Its IMAP listener (127.0.0.1:11143): the peer's users and password.
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, TUNED_PORTS[0]))
    }
}

impl Drop for TunedDovecot<'_> {
    fn drop(&mut self) {
        stop_tuned(&self.peer.scripts, self.peer.dir.path());
    }
}

/// Runs `tuned-stop.sh` for the peer in `dir` (by PID; "not running" when it is not).
fn stop_tuned(scripts: &Path, dir: &Path) {
    let stop = Command::new("bash")
        .arg(scripts.join("tuned-stop.sh"))
        .env("PEER_DIR", dir)
        .stdin(Stdio::null())
        .output();
    match stop {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "peer tuned-stop.sh failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("cannot run the peer's tuned-stop.sh: {e}"),
    }
}

/// Message files in a Maildir's `new/` and `cur/` (names starting with `.` skipped; a missing
/// directory counts as empty). Also fits wasmail's own store, whose mailboxes are Maildirs.
pub fn count_maildir(maildir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .count()
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}
