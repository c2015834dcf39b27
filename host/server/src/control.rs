//! The control socket: how `wasmail plugin reload` reaches a running `wasmail serve`.
//!
//! `<data_dir>/control.sock`, a Unix socket (mode 0600: only the server's user may use it). One
//! request line per connection, one reply line: `reload` → `ok generation N` or `error: ...`,
//! so the operator who asked sees why a reload failed; `flush-login-cache` → `ok` (sent by
//! `wasmail user passwd|remove`, so a changed password applies at once).

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::server::ServerHandle;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves control requests until `stop` is cancelled; removes the socket file then.
pub async fn serve(path: PathBuf, handle: ServerHandle, stop: CancellationToken) -> io::Result<()> {
    // A socket file left by a server that was killed: nobody listens on it any more.
    if std::os::unix::net::UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(read.take(1024));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match line.trim() {
                "reload" => {
                    match tokio::task::spawn_blocking(move || handle.reload_plugins()).await {
                        Ok(Ok(generation)) => format!("ok generation {generation}\n"),
                        Ok(Err(e)) => format!("error: {e}\n"),
                        Err(e) => format!("error: {e}\n"),
                    }
                }
                "flush-login-cache" => {
                    handle.flush_login_cache();
                    "ok\n".to_owned()
                }
                other => format!("error: unknown request {other:?}\n"),
            };
            let _ = write
                .write_all(reply.replace('\n', " ").trim_end().as_bytes())
                .await;
            let _ = write.write_all(b"\n").await;
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Sends one request to the server of `data_dir` and returns its reply line.
pub fn request(data_dir: &Path, request: &str) -> io::Result<String> {
    use std::io::{BufRead, Write};
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no server is running on {} ({e})", data_dir.display()),
        )
    })?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut reply = String::new();
    io::BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}
