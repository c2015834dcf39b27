//! The `wit_bindgen::generate!` invocations, one per exportable interface plus one for the
//! imports. Everything here is `#[doc(hidden)]` plumbing; the crate root re-exports what a guest
//! author uses.
//!
//! Why one `generate!` per hook: `wit-component` requires a component to export every interface
//! of the world described by the `component-type` custom sections in the core module, and
//! `wit-bindgen` writes the section describing a world's exports from the world's `export!`
//! macro, in the crate that calls it. So each hook gets a one-export world (written inline, on
//! top of the one copy of the WIT in `wit/`), and a guest that calls the export macro of hooks A
//! and B carries exactly the sections for A and B; `wit-component` merges them. Imports come from
//! a separate world whose section lists every host import: `wit-component` keeps only the imports
//! the core module actually calls.

/// Types, the message resource and the host imports (log, config, kv, clock, dns).
pub mod imports {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-imports;
            world imports {
                include wasmail:plugin/host@0.1.0;
                import wasmail:plugin/types@0.1.0;
                import wasmail:plugin/message@0.1.0;
            }
        ",
        path: "../../../wit",
        generate_all,
        additional_derives: [PartialEq, Eq],
    });
}

/// Exports `wasmail:plugin/connect-hook`.
pub mod connect_hook {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-connect-hook;
            world only-connect-hook {
                export wasmail:plugin/connect-hook@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::connect_hook",
    });
}

/// Exports `wasmail:plugin/helo-hook`.
pub mod helo_hook {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-helo-hook;
            world only-helo-hook {
                export wasmail:plugin/helo-hook@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::helo_hook",
    });
}

/// Exports `wasmail:plugin/mail-from-hook`.
pub mod mail_from_hook {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-mail-from-hook;
            world only-mail-from-hook {
                export wasmail:plugin/mail-from-hook@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::mail_from_hook",
    });
}

/// Exports `wasmail:plugin/rcpt-hook`.
pub mod rcpt_hook {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-rcpt-hook;
            world only-rcpt-hook {
                export wasmail:plugin/rcpt-hook@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::rcpt_hook",
    });
}

/// Exports `wasmail:plugin/data-hook`.
pub mod data_hook {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-data-hook;
            world only-data-hook {
                export wasmail:plugin/data-hook@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
            "wasmail:plugin/message@0.1.0": crate::bindings::imports::wasmail::plugin::message,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::data_hook",
    });
}

/// Exports `wasmail:plugin/authentication`.
pub mod authentication {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-authentication;
            world only-authentication {
                export wasmail:plugin/authentication@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
        },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::authentication",
    });
}

/// Exports `wasmail:plugin/routing`.
pub mod routing {
    wit_bindgen::generate!({
        inline: "
            package wasmail:sdk-routing;
            world only-routing {
                export wasmail:plugin/routing@0.1.0;
            }
        ",
        path: "../../../wit",
        with: {
            "wasmail:plugin/types@0.1.0": crate::bindings::imports::wasmail::plugin::types,
        },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "$crate::bindings::routing",
    });
}
