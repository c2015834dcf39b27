//! A POP3 maildrop: the account's INBOX as it was at login, locked against a second POP3 session.
//!
//! RFC 1939 says the server locks the maildrop for the session: here the lock is per account
//! and only against POP3 (IMAP sessions and deliveries carry on; new mail appears in the next
//! POP3 session, since the listing is a snapshot). Message numbers map to UIDs through the
//! snapshot, so mail expunged meanwhile by IMAP is simply reported unavailable.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmail_proto::pop3::Listing;
use wasmail_types::mail::{FlagOp, Flags, MailboxName, MessageMeta, SystemFlag, Uid, UidValidity};
use wasmail_types::{MailStore, Mailbox, StoreResult};

use crate::config::Pop3Expire;

/// Who holds a maildrop now, and when each account last logged in (RFC 2449 LOGIN-DELAY).
#[derive(Debug, Default)]
pub struct Maildrops {
    locked: Mutex<HashSet<String>>,
    last_login: Mutex<HashMap<String, Instant>>,
}

/// Why a maildrop could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another POP3 session has it.
    InUse,
    /// The account logged in less than LOGIN-DELAY ago.
    TooSoon,
    Store(wasmail_types::StoreError),
}

impl Maildrops {
    /// Locks and lists the account's INBOX.
    pub fn open(
        self: &Arc<Self>,
        store: &dyn MailStore,
        account: &str,
        login_delay: Duration,
    ) -> Result<Maildrop, OpenError> {
        let key = account.to_lowercase();
        if !login_delay.is_zero() {
            let mut last = self.last_login.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if last
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < login_delay)
            {
                return Err(OpenError::TooSoon);
            }
            // Forget logins older than the delay, so the map holds only recent ones.
            last.retain(|_, at| now.duration_since(*at) < login_delay);
            last.insert(key.clone(), now);
        }
        if !self
            .locked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return Err(OpenError::InUse);
        }
        let lock = Lock {
            maildrops: self.clone(),
            key,
        };
        let listed = (|| {
            let mailbox = store.account(account)?.open(&MailboxName::inbox())?;
            mailbox.refresh()?;
            let status = mailbox.status()?;
            let messages = mailbox.messages()?;
            Ok::<_, wasmail_types::StoreError>((mailbox, status.uid_validity, messages))
        })();
        let (mailbox, uid_validity, messages) = listed.map_err(OpenError::Store)?;
        Ok(Maildrop {
            mailbox,
            uid_validity,
            messages,
            retrieved: HashSet::new(),
            _lock: lock,
        })
    }
}

/// Held while a session has the maildrop.
#[derive(Debug)]
struct Lock {
    maildrops: Arc<Maildrops>,
    key: String,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.maildrops
            .locked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// One session's view of its maildrop.
pub struct Maildrop {
    mailbox: Arc<dyn Mailbox>,
    uid_validity: UidValidity,
    /// The snapshot taken at login; message number n is `messages[n - 1]`.
    messages: Vec<MessageMeta>,
    /// Message numbers sent in full with RETR in this session.
    retrieved: HashSet<usize>,
    _lock: Lock,
}

impl std::fmt::Debug for Maildrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maildrop")
            .field("messages", &self.messages.len())
            .finish_non_exhaustive()
    }
}

impl Maildrop {
    /// What the session lists: sizes as stored (what RETR sends, CRLF line ends) and UIDLs that
    /// never change for a message: UIDVALIDITY and UID, as IMAP knows it.
    pub fn listing(&self) -> Vec<Listing> {
        self.messages
            .iter()
            .map(|m| Listing {
                size: m.size,
                uidl: format!("{}.{}", self.uid_validity.get(), m.uid.get()),
            })
            .collect()
    }

    fn uid(&self, number: usize) -> Option<Uid> {
        number
            .checked_sub(1)
            .and_then(|i| self.messages.get(i))
            .map(|m| m.uid)
    }

    /// The stored message. A full retrieval (RETR, not TOP) marks it `\Seen`, as IMAP users of
    /// the account then see.
    pub fn read(&mut self, number: usize, full: bool) -> StoreResult<Vec<u8>> {
        let uid = self
            .uid(number)
            .ok_or(wasmail_types::StoreError::NotPermitted("no such message"))?;
        let content = self
            .mailbox
            .open_message(uid)?
            .read_all()
            .map_err(wasmail_types::StoreError::io("read message"))?;
        if full {
            self.retrieved.insert(number);
            let seen = Flags::from_system(&[SystemFlag::Seen]);
            self.mailbox.store_flags(&[uid], FlagOp::Add, &seen, None)?;
        }
        Ok(content)
    }

    /// The UPDATE state (RFC 1939 6): removes the messages the client deleted, plus what the
    /// EXPIRE policy says: with `0`, every message retrieved in this session; with a number of
    /// days, every seen message that arrived longer ago than that. Other sessions (IMAP) see
    /// the expunges.
    pub fn update(&self, deleted: &[usize], expire: Pop3Expire, now_unix: i64) -> StoreResult<()> {
        let mut uids: Vec<Uid> = deleted.iter().filter_map(|n| self.uid(*n)).collect();
        self.mailbox.refresh()?;
        let current = self.mailbox.messages()?;
        match expire {
            Pop3Expire::Never => {}
            Pop3Expire::Days(0) => uids.extend(self.retrieved.iter().filter_map(|n| self.uid(*n))),
            Pop3Expire::Days(days) => {
                let cutoff = now_unix - i64::from(days) * 86_400;
                uids.extend(
                    current
                        .iter()
                        .filter(|m| {
                            m.flags.contains(SystemFlag::Seen)
                                && m.internal_date.unix_seconds < cutoff
                        })
                        .map(|m| m.uid),
                );
            }
        }
        // Messages another session expunged meanwhile are gone already: not an error.
        let present: HashSet<Uid> = current.iter().map(|m| m.uid).collect();
        uids.retain(|u| present.contains(u));
        uids.sort_unstable();
        uids.dedup();
        if uids.is_empty() {
            return Ok(());
        }
        let deleted_flag = Flags::from_system(&[SystemFlag::Deleted]);
        self.mailbox
            .store_flags(&uids, FlagOp::Add, &deleted_flag, None)?;
        self.mailbox.expunge(Some(&uids))?;
        Ok(())
    }
}
