use crate::{Address, Reply};

/// What a filter decides at one stage of an SMTP session (Haraka's vocabulary, the MTA hooks
/// draft's actions). The first verdict in a chain that is not [`Verdict::Continue`] decides.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// No objection; ask the next filter.
    Continue,
    /// Accept now; later filters at this stage are not asked.
    Accept,
    /// Refuse permanently with this 5xx reply.
    Reject(Reply),
    /// Refuse temporarily with this 4xx reply; the sender retries.
    Defer(Reply),
    /// Accept and drop the message (logged, never delivered).
    Discard,
    /// Accept and deliver into this folder of each recipient instead of the usual one.
    Quarantine(String),
    /// Send this reply and close the connection.
    Disconnect(Reply),
}

/// A change a filter asks for alongside its verdict. Modifications from every filter in the chain
/// accumulate and are applied once, after the chain has decided.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Modification {
    AddHeader {
        name: String,
        value: String,
    },
    /// Removes every header field with this name (case-insensitive).
    RemoveHeader {
        name: String,
    },
    AddRecipient(Address),
    RemoveRecipient(Address),
}
