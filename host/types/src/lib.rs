//! The vocabulary every part of wasmail shares, and the seams between the parts.
//!
//! ```text
//!            wasmail (server: drivers, config, CLI, embedding API)
//!             /            |              \
//!   wasmail-proto    wasmail-store    wasmail-plugin
//!             \            |              /
//!                 wasmail-types  (this crate: no dependencies)
//! ```
//!
//! Everything that crosses a crate boundary is defined here: [`Address`] and the SMTP paths,
//! [`Envelope`], the [`Reply`] sent to a peer, the [`Verdict`] a filter returns, [`Secret`] for
//! credentials, the policy seams ([`Filter`], [`Authenticator`], [`DeliveryPolicy`]), and the mail store's data model ([`mail`]) with the [`MailStore`] trait that a
//! protocol session talks to. An embedder needs only this crate and `wasmail`.

mod address;
pub mod date;
mod envelope;
pub mod mail;
mod policy;
mod reply;
mod secret;
mod store;
mod verdict;
mod view;

pub use address::{Address, AddressError, Domain, ForwardPath, ReversePath};
pub use envelope::{ClientInfo, Envelope, TlsInfo};
pub use policy::{AuthAnswer, Authenticator, DeliveryPolicy, Filter, FilterAnswer, Route};
pub use reply::{EnhancedCode, Reply, ReplyError};
pub use secret::Secret;
pub use store::{
    Account, ChangeListener, CopyResult, Delivered, DeliveryTarget, FlagUpdate, MailStore, Mailbox,
    MessageContent, SpoolWriter, SpooledMessage, StoreError, StoreResult,
};
pub use verdict::{Modification, Verdict};
pub use view::{MailboxView, ViewEvent};
