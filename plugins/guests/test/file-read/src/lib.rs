//! Test guest: the connect hook tries to escape the sandbox through WASI: it reads `/etc/passwd`
//! and lists `/`. If either works it rejects with 554 "read ok" (the test fails: the host granted
//! too much). Otherwise, if config `path` names a file (or a directory, whose first file by name
//! is taken) under a directory the host preopened, it reads that and rejects with 554
//! "read ok: <first line>". Anything denied is a defer 451 "denied: <error kind>".

use std::io;
use std::path::{Path, PathBuf};

use wasmail_plugin_sdk::{Client, ConnectHook, Decision, config};

struct FileRead;

fn denied(e: &io::Error) -> Decision {
    Decision::defer(451, "4.7.1", format!("denied: {:?}", e.kind()))
}

fn first_file(dir: &Path) -> io::Result<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no file in the directory"))
}

fn read_configured(path: &str) -> io::Result<String> {
    let path = Path::new(path);
    let file = if path.is_dir() {
        first_file(path)?
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(file)?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

impl ConnectHook for FileRead {
    fn on_connect(_client: Client) -> Decision {
        let passwd = std::fs::read_to_string("/etc/passwd");
        let root = std::fs::read_dir("/");
        if passwd.is_ok() || root.is_ok() {
            return Decision::reject(554, "5.7.1", "read ok");
        }
        match config::get("path") {
            Some(path) => match read_configured(&path) {
                Ok(first_line) => Decision::reject(554, "5.7.1", format!("read ok: {first_line}")),
                Err(e) => denied(&e),
            },
            None => match passwd {
                Err(e) => denied(&e),
                Ok(_) => Decision::reject(554, "5.7.1", "read ok"),
            },
        }
    }
}

wasmail_plugin_sdk::export!(FileRead: ConnectHook);
