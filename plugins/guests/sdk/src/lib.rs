//! # wasmail-plugin-sdk: writing a wasmail plugin in Rust
//!
//! A wasmail plugin is a WebAssembly component built for `wasm32-wasip2` against the WIT package
//! `wasmail:plugin@0.1.0` (the one copy lives in the repository's `wit/`). This crate holds the
//! bindings (`wit_bindgen::generate!` over that directory) and small helpers, so a filter is a
//! few lines:
//!
//! ```ignore
//! use wasmail_plugin_sdk::{config, DataHook, Decision, Envelope, Message};
//!
//! struct NoViagra;
//!
//! impl DataHook for NoViagra {
//!     fn on_data(_envelope: Envelope, message: &Message) -> Decision {
//!         let word = config::get_or("word", "VIAGRA");
//!         if message.header("Subject").iter().any(|s| s.contains(&word)) {
//!             return Decision::reject(550, "5.7.1", "message refused by policy");
//!         }
//!         Decision::cont().with_header("X-Checked", "yes")
//!     }
//! }
//!
//! wasmail_plugin_sdk::export!(NoViagra: DataHook);
//! ```
//!
//! with a `Cargo.toml` of
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmail-plugin-sdk = { path = "…/plugins/guests/sdk" }
//! ```
//!
//! and `cargo build --release --target wasm32-wasip2` produces `target/wasm32-wasip2/release/
//! <crate>.wasm`, which is already a component (no adapter step).
//!
//! ## Exports: exactly the hooks you implement
//!
//! Each thing the host can call is its own WIT interface and, here, its own trait:
//!
//! | trait | WIT interface | called |
//! | --- | --- | --- |
//! | [`ConnectHook`] | `connect-hook` | a client connected |
//! | [`HeloHook`] | `helo-hook` | EHLO/HELO |
//! | [`MailFromHook`] | `mail-from-hook` | MAIL FROM |
//! | [`RcptHook`] | `rcpt-hook` | each RCPT TO |
//! | [`DataHook`] | `data-hook` | the message has arrived |
//! | [`Authenticator`] | `authentication` | SMTP AUTH, IMAP LOGIN, POP3 USER/PASS |
//! | [`DeliveryPolicy`] | `routing` | where mail for a recipient goes |
//!
//! Implement the traits you need on one type (a unit struct: the functions take no `self`, a
//! fresh instance serves each SMTP transaction) and name them in [`export!`]:
//!
//! ```ignore
//! wasmail_plugin_sdk::export!(MyFilter: HeloHook, DataHook);
//! ```
//!
//! The component then exports exactly `wasmail:plugin/helo-hook` and `wasmail:plugin/data-hook`,
//! and the host calls exactly those. A trait you implement but do not name is not exported; a
//! name you list without implementing the trait is a compile error. An authenticator or a
//! delivery policy is the same with `Authenticator` / `DeliveryPolicy`; one component may even be
//! several of these at once.
//!
//! ## Imports: exactly the host functions you call
//!
//! The host functions are the modules [`log`], [`config`], [`kv`], [`clock`] and [`dns`]. The
//! operator grants each one per plugin; a component importing something not granted is refused
//! at load. The built component imports only what the code actually calls (the linker drops the
//! rest), so a filter that never logs does not need `log` granted.
//!
//! Rust's standard library is built on WASI 0.2 and may import a few `wasi:` interfaces of its
//! own: a panic message goes to stderr (`wasi:cli/stderr`, `wasi:io/streams`), `std::fs` uses
//! `wasi:filesystem` (which the host grants only as preopened read-only directories, if at all),
//! `std::time` uses `wasi:clocks`. Prefer [`clock::now_millis`] over `SystemTime`: it is the
//! host's clock, which tests can control.
//!
//! ## Panics
//!
//! A panic traps the instance (on `wasm32-wasip2` the standard library's panic strategy is
//! `abort`, which in WebAssembly is the `unreachable` instruction). The host applies the plugin's
//! `on_error` action (by default: defer, so the sender retries) and logs the panic message.
//!
//! ## Limits
//!
//! Memory (default 64 MiB), time per call, DNS queries per call, log lines per call and KV sizes
//! are bounded by the host; see the WIT docs in `wit/host.wit`.

#[doc(hidden)]
pub mod bindings;

mod helpers;

pub use helpers::MessageReader;

/// Values every hook sees and returns (`wasmail:plugin/types`).
pub mod types {
    pub use crate::bindings::imports::wasmail::plugin::types::{
        Client, Decision, Envelope, Header, Modification, Reply, TlsInfo, Verdict,
    };
}

pub use types::{Client, Decision, Envelope, Header, Modification, Reply, TlsInfo, Verdict};

/// The message resource the data hook reads (`wasmail:plugin/message`).
pub use bindings::imports::wasmail::plugin::message::Message;

/// Log lines tagged with the plugin's name and session id (`wasmail:plugin/log`).
pub mod log {
    pub use crate::bindings::imports::wasmail::plugin::log::{Level, log};

    /// Logs at `trace`.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at `info`.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at `error`.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's own settings, the `[plugins.config]` table of its entry (`wasmail:plugin/config`).
pub mod config {
    pub use crate::bindings::imports::wasmail::plugin::config::{all, get};

    /// The value at `key`, or `default` if absent.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_string())
    }

    /// The value at `key` parsed as `T` (`u64`, `bool`, …); `None` if absent or unparsable.
    pub fn parse<T: std::str::FromStr>(key: &str) -> Option<T> {
        get(key).and_then(|v| v.trim().parse().ok())
    }

    /// The value at `key` parsed as `T`, or `default` if absent or unparsable.
    pub fn parse_or<T: std::str::FromStr>(key: &str, default: T) -> T {
        parse(key).unwrap_or(default)
    }
}

/// Persistent key-value storage with TTLs, namespaced per plugin (`wasmail:plugin/kv`).
pub mod kv {
    pub use crate::bindings::imports::wasmail::plugin::kv::{KvError, delete, get, increment, set};

    /// The longest key the host accepts.
    pub const MAX_KEY: usize = 256;

    /// `prefix:id` as a kv key, or `prefix#<128-bit FNV-1a of id>` when that would be longer than
    /// the host accepts (an address triplet can be).
    pub fn bounded_key(prefix: &str, id: &str) -> String {
        let key = format!("{prefix}:{id}");
        if key.len() <= MAX_KEY {
            return key;
        }
        const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        let hash = id
            .bytes()
            .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
        format!("{prefix}#{hash:032x}")
    }
}

/// Matching helpers the shipped filters share.
pub mod matching {
    /// A case-insensitive whole-string glob: `*` any run of characters, `?` one character.
    #[derive(Debug)]
    pub struct Glob(Vec<char>);

    impl Glob {
        pub fn new(pattern: &str) -> Glob {
            Glob(pattern.to_lowercase().chars().collect())
        }

        pub fn matches(&self, text: &str) -> bool {
            let text: Vec<char> = text.to_lowercase().chars().collect();
            let pattern = &self.0;
            let (mut p, mut t) = (0, 0);
            // Where the last `*` was, and the text position it currently stands for up to.
            let mut backtrack: Option<(usize, usize)> = None;
            while t < text.len() {
                match pattern.get(p) {
                    Some(&'*') => {
                        backtrack = Some((p, t));
                        p += 1;
                    }
                    Some(&c) if c == '?' || c == text[t] => {
                        p += 1;
                        t += 1;
                    }
                    _ => match backtrack {
                        Some((star, from)) => {
                            backtrack = Some((star, from + 1));
                            p = star + 1;
                            t = from + 1;
                        }
                        None => return false,
                    },
                }
            }
            pattern[p..].iter().all(|&c| c == '*')
        }
    }
}

/// The host's clock, which tests can control (`wasmail:plugin/clock`).
pub mod clock {
    pub use crate::bindings::imports::wasmail::plugin::clock::now_millis;
}

/// DNS through the host's resolver (`wasmail:plugin/dns`).
pub mod dns {
    pub use crate::bindings::imports::wasmail::plugin::dns::{DnsError, ip, mx, ptr, txt};
}

/// Who is this user: `wasmail:plugin/authentication`.
pub use bindings::authentication::exports::wasmail::plugin::authentication::Guest as Authenticator;
/// A client connected: `wasmail:plugin/connect-hook`.
pub use bindings::connect_hook::exports::wasmail::plugin::connect_hook::Guest as ConnectHook;
/// The message has arrived: `wasmail:plugin/data-hook`.
pub use bindings::data_hook::exports::wasmail::plugin::data_hook::Guest as DataHook;
/// EHLO/HELO: `wasmail:plugin/helo-hook`.
pub use bindings::helo_hook::exports::wasmail::plugin::helo_hook::Guest as HeloHook;
/// MAIL FROM: `wasmail:plugin/mail-from-hook`.
pub use bindings::mail_from_hook::exports::wasmail::plugin::mail_from_hook::Guest as MailFromHook;
/// One RCPT TO: `wasmail:plugin/rcpt-hook`.
pub use bindings::rcpt_hook::exports::wasmail::plugin::rcpt_hook::Guest as RcptHook;
/// Where mail for a recipient goes: `wasmail:plugin/routing`.
pub use bindings::routing::exports::wasmail::plugin::routing::Guest as DeliveryPolicy;

/// Types of the [`Authenticator`] interface.
pub mod authentication {
    pub use crate::bindings::authentication::exports::wasmail::plugin::authentication::Denial;
}
pub use authentication::Denial;

/// Types of the [`DeliveryPolicy`] interface.
pub mod routing {
    pub use crate::bindings::routing::exports::wasmail::plugin::routing::{
        Destination as Route, LocalTarget,
    };
}
pub use routing::{LocalTarget, Route};

/// Exports the named hooks of a type: `export!(MyFilter: HeloHook, DataHook);`.
///
/// The names are the SDK's traits: `ConnectHook`, `HeloHook`, `MailFromHook`, `RcptHook`,
/// `DataHook`, `Authenticator`, `DeliveryPolicy`. The type must be a plain identifier in scope
/// and must implement each named trait. Call it once per component, at the crate root or in any
/// module.
#[macro_export]
macro_rules! export {
    ($ty:ident : $($hook:ident),+ $(,)?) => {
        $( $crate::__export_hook!($hook $ty); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_hook {
    (ConnectHook $ty:ident) => {
        $crate::bindings::connect_hook::export!($ty);
    };
    (HeloHook $ty:ident) => {
        $crate::bindings::helo_hook::export!($ty);
    };
    (MailFromHook $ty:ident) => {
        $crate::bindings::mail_from_hook::export!($ty);
    };
    (RcptHook $ty:ident) => {
        $crate::bindings::rcpt_hook::export!($ty);
    };
    (DataHook $ty:ident) => {
        $crate::bindings::data_hook::export!($ty);
    };
    (Authenticator $ty:ident) => {
        $crate::bindings::authentication::export!($ty);
    };
    (DeliveryPolicy $ty:ident) => {
        $crate::bindings::routing::export!($ty);
    };
    ($other:ident $ty:ident) => {
        ::core::compile_error!(::core::concat!(
            "wasmail_plugin_sdk::export!: unknown hook `",
            ::core::stringify!($other),
            "`; expected ConnectHook, HeloHook, MailFromHook, RcptHook, DataHook, ",
            "Authenticator or DeliveryPolicy",
        ));
    };
}
