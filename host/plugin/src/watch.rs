//! Reload when a plugin file changes.
//!
//! Polling, not inotify: a plugin file is typically replaced by a deploy (rename over the old
//! one) or rewritten in place, and comparing (mtime, size, inode) every interval catches both
//! with no platform dependency. A change is reloaded only once the file has been stable for one
//! interval, so a half-written file is not loaded mid-copy.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::chain::PluginHost;
use crate::error::LoadError;
use crate::spec::{PluginSpec, WasmSource};

type Identity = Option<(SystemTime, u64, u64)>;

fn identity(path: &PathBuf) -> Identity {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Watches the files of a plugin configuration and reloads the host when one changes. Stops
/// when dropped.
#[derive(Debug)]
pub struct FileWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    last_error: Arc<Mutex<Option<LoadError>>>,
}

impl FileWatcher {
    pub fn start(host: Arc<PluginHost>, specs: Vec<PluginSpec>, interval: Duration) -> FileWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None));
        let paths: Vec<PathBuf> = specs
            .iter()
            .filter_map(|s| match &s.wasm {
                WasmSource::File(p) => Some(p.clone()),
                WasmSource::Bytes(_) => None,
            })
            .collect();
        // The baseline is taken now, not in the thread: a change made right after `start`
        // returns must count as a change.
        let mut seen: Vec<Identity> = paths.iter().map(identity).collect();
        let thread = {
            let stop = stop.clone();
            let last_error = last_error.clone();
            std::thread::Builder::new()
                .name("wasmail-plugin-watch".into())
                .spawn(move || {
                    let mut pending: Option<Vec<Identity>> = None;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(interval);
                        let now: Vec<Identity> = paths.iter().map(identity).collect();
                        if now == seen {
                            pending = None;
                            continue;
                        }
                        // Changed: wait until it stays the same for one more interval.
                        if pending.as_ref() != Some(&now) {
                            pending = Some(now);
                            continue;
                        }
                        seen = now;
                        pending = None;
                        let result = host.reload(&specs);
                        match &result {
                            Ok(generation) => tracing::info!(generation, "plugin file changed; reloaded"),
                            Err(e) => tracing::error!(error = %e, "plugin file changed but the new set failed to load; the old one keeps serving"),
                        }
                        *last_error.lock().unwrap_or_else(|p| p.into_inner()) = result.err();
                    }
                })
                .ok()
        };
        FileWatcher {
            stop,
            thread,
            last_error,
        }
    }

    /// Why the last reload triggered by a file change failed, if it did.
    pub fn last_error(&self) -> Option<LoadError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
