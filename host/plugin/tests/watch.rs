//! A plugin file that changes on disk is reloaded while calls go on; a broken new file leaves
//! the old version serving.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmail_plugin::{
    EngineOptions, FileWatcher, Grants, HostEnv, LoadError, PluginEngine, PluginHost, PluginSpec,
    SystemClock, WasmSource,
};
use wasmail_plugin_artifacts as guests;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_changed_plugin_file_is_reloaded_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("filter.wasm");
    std::fs::write(&path, guests::TEST_QUARANTINE).unwrap();
    let mut spec = PluginSpec::new("filter", WasmSource::File(path.clone()));
    spec.grants = Grants {
        config: true,
        ..Grants::default()
    };
    let engine = PluginEngine::new(EngineOptions {
        max_instances: 16,
        ..Default::default()
    })
    .unwrap();
    let host = Arc::new(
        PluginHost::new(
            engine,
            HostEnv::new(None, Arc::new(SystemClock), None),
            std::slice::from_ref(&spec),
        )
        .unwrap(),
    );
    let watcher = FileWatcher::start(host.clone(), vec![spec], Duration::from_millis(20));
    assert_eq!(host.current().describe()[0].1, ["data-hook"]);

    // A deploy replaces the file (write elsewhere, rename over).
    let staged = dir.path().join("filter.wasm.new");
    std::fs::write(&staged, guests::TEST_HEADER_REJECT).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    wait_for("the new version", || host.current().generation() == 1);
    assert_eq!(host.current().describe()[0].1, ["helo-hook", "data-hook"]);
    assert!(watcher.last_error().is_none());

    // A broken file: the reload fails, the old set keeps serving, the error is kept.
    std::fs::write(&path, b"not a component").unwrap();
    wait_for("the failed reload", || watcher.last_error().is_some());
    assert!(matches!(
        watcher.last_error(),
        Some(LoadError::NotAPlugin { .. })
    ));
    assert_eq!(host.current().generation(), 1);
    assert_eq!(host.current().describe()[0].1, ["helo-hook", "data-hook"]);
}
