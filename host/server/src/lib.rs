//! wasmail: a mail server (SMTP, IMAP, POP3) whose policy runs in sandboxed WebAssembly plugins.
//!
//! This crate is the host around the sans-I/O pieces: it reads the configuration, sets up
//! logging, and (as the work proceeds) runs the network drivers and offers the embedding API.
//! The `wasmail` binary is a thin command line over it.
//!
//! ```text
//!   operator: `wasmail` binary               embedder: a Rust program
//!   (main.rs, cli.rs)                        (uses this crate + wasmail-types)
//!            \                                /
//!   +--------------------- wasmail (this crate) ----------------------+
//!   | config   TOML file --> Config (validated; defaults when absent) |
//!   | logging  tracing subscriber, human or JSON, to stderr           |
//!   | import   an existing Maildir --> the mail store                 |
//!   | users    `wasmail user` --> <data dir>/auth/users (argon2id),   |
//!   |          read by the default authenticator plugin at each login |
//!   | server   Server::builder: store, policy, plugins, listeners     |
//!   | net      listeners, limits, TLS (rustls), shutdown              |
//!   | smtp     driver: socket <-> wasmail-proto session; transaction: |
//!   |          policy (native + plugins) -> spool -> store / queue    |
//!   +-----------------------------------------------------------------+
//!        |                  |                   |
//!   wasmail-proto     wasmail-store      wasmail-plugin      all --> wasmail-types
//!   (SMTP/IMAP/POP3   (Maildir + index)  (wasmtime host)
//!    sans I/O)
//! ```

pub mod auth_cache;
pub mod config;
pub mod control;
pub mod dns;
pub mod imap;
pub mod import;
pub mod logging;
mod login;
pub mod net;
pub mod plugins;
pub mod policy;
pub mod pop3;
pub mod queue;
mod server;
pub mod smtp;
pub mod users;
mod wire;

pub use server::{Server, ServerBuilder, ServerError, ServerHandle, Service};
