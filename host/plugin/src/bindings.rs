//! Host bindings for the WIT package in `wit/` (the one copy), world `plugin`: every import a
//! plugin may be granted and every export it may have. Which exports a component really has is
//! looked up per interface (`GuestIndices::new`) when it loads.
#![allow(unsafe_code, clippy::all, missing_debug_implementations)]
// Generated code: wasmtime's bindgen emits `unsafe` around typed-function handles it has
// already type-checked.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: trappable },
    with: {
        "wasmail:plugin/message.message": crate::host::MessageHandle,
    },
});
