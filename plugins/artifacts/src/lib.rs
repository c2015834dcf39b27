//! The WebAssembly components of `plugins/guests`, built for `wasm32-wasip2` by this crate's
//! build script (a nested `cargo build --release` with its own target dir under `OUT_DIR`).
//!
//! For every guest there is a byte constant and a path constant named after the component file:
//! `plugins/guests/test/header-reject` (crate `test-header-reject`) builds
//! `test_header_reject.wasm`, which gives [`TEST_HEADER_REJECT`] and [`TEST_HEADER_REJECT_PATH`].
//! [`ALL`] and [`ALL_PATHS`] list every guest, and [`foreach_guest!`] calls a macro once per guest
//! so a test suite can prove at compile time that every guest has a test:
//!
//! ```ignore
//! // In the host's tests: one #[test] fn per guest, named like the guest.
//! macro_rules! assert_tested {
//!     ($name:ident) => {
//!         let _: fn() = $name;
//!     };
//! }
//! #[test]
//! fn every_guest_has_a_test() {
//!     wasmail_plugin_artifacts::foreach_guest!(assert_tested);
//! }
//! ```
//!
//! A crate added under `plugins/guests/test/` appears here with no edit to this crate.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The component bytes of the guest named `name` (e.g. `"test_header_reject"`).
pub fn get(name: &str) -> Option<&'static [u8]> {
    ALL.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The component file of the guest named `name`.
pub fn path(name: &str) -> Option<&'static str> {
    ALL_PATHS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_guest_is_a_component() {
        assert!(!ALL.is_empty());
        for (name, bytes) in ALL {
            assert_eq!(&bytes[..4], b"\0asm", "{name}: not WebAssembly");
            // Version 0x0d, layer 1: a component, not a core module (version 1, layer 0).
            assert_eq!(
                &bytes[4..8],
                &[0x0d, 0x00, 0x01, 0x00],
                "{name}: not a component"
            );
            let on_disk = std::fs::read(path(name).unwrap()).unwrap();
            assert_eq!(&on_disk[..], *bytes, "{name}: path and bytes differ");
        }
    }

    #[test]
    fn foreach_guest_names_every_guest() {
        let mut names = Vec::new();
        macro_rules! collect {
            ($name:ident) => {
                names.push(stringify!($name));
            };
        }
        foreach_guest!(collect);
        let all: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, all);
        assert_eq!(get("test_header_reject"), Some(TEST_HEADER_REJECT));
        assert_eq!(path("test_header_reject"), Some(TEST_HEADER_REJECT_PATH));
        assert_eq!(get("no_such_guest"), None);
    }
}
