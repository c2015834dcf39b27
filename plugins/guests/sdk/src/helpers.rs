//! Constructors and conveniences on the generated types.

use crate::{Decision, Denial, LocalTarget, Message, Modification, Reply, Route, Verdict};

impl Reply {
    /// A reply: `Reply::new(550, "5.7.1", "message refused")`; pass `None` for no enhanced code.
    pub fn new<'a>(
        code: u16,
        enhanced: impl Into<Option<&'a str>>,
        text: impl Into<String>,
    ) -> Reply {
        Reply {
            code,
            enhanced: enhanced.into().map(str::to_string),
            text: text.into(),
        }
    }
}

impl From<Verdict> for Decision {
    fn from(verdict: Verdict) -> Decision {
        Decision {
            verdict,
            modifications: Vec::new(),
        }
    }
}

impl Decision {
    /// No objection: ask the next filter.
    pub fn cont() -> Decision {
        Verdict::Continue.into()
    }

    /// Accept now; later filters at this stage are skipped.
    pub fn accept() -> Decision {
        Verdict::Accept.into()
    }

    /// Refuse permanently: `Decision::reject(550, "5.7.1", "message refused by policy")`. The code
    /// must be 5xx.
    pub fn reject<'a>(
        code: u16,
        enhanced: impl Into<Option<&'a str>>,
        text: impl Into<String>,
    ) -> Decision {
        Verdict::Reject(Reply::new(code, enhanced, text)).into()
    }

    /// Refuse temporarily: `Decision::defer(451, "4.7.1", "try again later")`. The code must be
    /// 4xx.
    pub fn defer<'a>(
        code: u16,
        enhanced: impl Into<Option<&'a str>>,
        text: impl Into<String>,
    ) -> Decision {
        Verdict::Defer(Reply::new(code, enhanced, text)).into()
    }

    /// Accept the message and drop it (data hook only).
    pub fn discard() -> Decision {
        Verdict::Discard.into()
    }

    /// Accept and deliver into `folder` of each local recipient (data hook only).
    pub fn quarantine(folder: impl Into<String>) -> Decision {
        Verdict::Quarantine(folder.into()).into()
    }

    /// Send this reply and close the connection.
    pub fn disconnect<'a>(
        code: u16,
        enhanced: impl Into<Option<&'a str>>,
        text: impl Into<String>,
    ) -> Decision {
        Verdict::Disconnect(Reply::new(code, enhanced, text)).into()
    }

    /// Adds a modification.
    pub fn with(mut self, modification: Modification) -> Decision {
        self.modifications.push(modification);
        self
    }

    /// Adds a header field to the message (data hook only).
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Decision {
        self.with(Modification::AddHeader(crate::Header {
            name: name.into(),
            value: value.into(),
        }))
    }

    /// Removes every header field of this name (data hook only).
    pub fn without_header(self, name: impl Into<String>) -> Decision {
        self.with(Modification::RemoveHeader(name.into()))
    }

    /// Adds a recipient to the envelope.
    pub fn with_recipient(self, address: impl Into<String>) -> Decision {
        self.with(Modification::AddRecipient(address.into()))
    }

    /// Removes a recipient from the envelope.
    pub fn without_recipient(self, address: impl Into<String>) -> Decision {
        self.with(Modification::RemoveRecipient(address.into()))
    }

    /// Whether the verdict is `continue`.
    pub fn is_continue(&self) -> bool {
        matches!(self.verdict, Verdict::Continue)
    }
}

impl LocalTarget {
    /// The INBOX of `account`.
    pub fn inbox(account: impl Into<String>) -> LocalTarget {
        LocalTarget {
            account: account.into(),
            folder: None,
        }
    }

    /// `folder` of `account`.
    pub fn folder(account: impl Into<String>, folder: impl Into<String>) -> LocalTarget {
        LocalTarget {
            account: account.into(),
            folder: Some(folder.into()),
        }
    }
}

impl Route {
    /// Deliver to the INBOX of each account: `Route::local(["alice@example.org"])`.
    pub fn local<S: Into<String>>(accounts: impl IntoIterator<Item = S>) -> Route {
        Route::Local(accounts.into_iter().map(LocalTarget::inbox).collect())
    }

    /// Refuse this recipient permanently: `Route::reject(550, "5.1.1", "no such user")`.
    pub fn reject<'a>(
        code: u16,
        enhanced: impl Into<Option<&'a str>>,
        text: impl Into<String>,
    ) -> Route {
        Route::Reject(Reply::new(code, enhanced, text))
    }

    /// Refuse this recipient temporarily.
    pub fn defer<'a>(
        code: u16,
        enhanced: impl Into<Option<&'a str>>,
        text: impl Into<String>,
    ) -> Route {
        Route::Defer(Reply::new(code, enhanced, text))
    }
}

impl Denial {
    /// Whether this denial hands the decision to the next authenticator.
    pub fn is_not_mine(&self) -> bool {
        matches!(self, Denial::NotMine)
    }
}

/// The largest `len` the host honours in one `Message::read` call.
pub const MAX_READ: u32 = 1024 * 1024;

impl Message {
    /// The first value of a header field (case-insensitive name), if any.
    pub fn first_header(&self, name: &str) -> Option<String> {
        self.header(name).into_iter().next()
    }

    /// A [`std::io::Read`] over the whole message (headers and body, CRLF line ends, as
    /// received), reading through the host in chunks of at most `chunk` octets (capped at 1 MiB).
    pub fn reader(&self, chunk: u32) -> MessageReader<'_> {
        MessageReader {
            message: self,
            offset: 0,
            chunk: chunk.clamp(1, MAX_READ),
        }
    }

    /// The whole message in guest memory. Prefer [`Message::reader`] or [`Message::header`] for
    /// large messages: this copies everything into the plugin's (bounded) memory.
    pub fn read_all(&self) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let chunk = self.read(all.len() as u64, MAX_READ);
            if chunk.is_empty() {
                return all;
            }
            all.extend_from_slice(&chunk);
        }
    }
}

/// Reads a [`Message`] through the host, one bounded chunk per call. See [`Message::reader`].
#[derive(Debug)]
pub struct MessageReader<'a> {
    message: &'a Message,
    offset: u64,
    chunk: u32,
}

impl MessageReader<'_> {
    /// The next chunk (at most the reader's chunk size); empty at the end.
    pub fn next_chunk(&mut self) -> Vec<u8> {
        let data = self.message.read(self.offset, self.chunk);
        self.offset += data.len() as u64;
        data
    }

    /// How many octets have been read so far.
    pub fn position(&self) -> u64 {
        self.offset
    }
}

impl std::io::Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = u32::try_from(buf.len()).unwrap_or(u32::MAX).min(self.chunk);
        let data = self.message.read(self.offset, want);
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.offset += n as u64;
        Ok(n)
    }
}
