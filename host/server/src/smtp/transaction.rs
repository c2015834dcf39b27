//! One SMTP transaction's policy and delivery: MAIL to the final reply after the message.
//!
//! Everything here blocks (plugins, the store's fsyncs); the driver runs it on a blocking thread.
//!
//! ```text
//!  begin (MAIL)     filters ─► sender accepted, or the verdict's reply
//!  recipient (RCPT) delivery policy ─► local targets (accounts that exist) | relay (authenticated
//!                   senders only, whatever the policy says) | refusal; then the filters
//!  start_data       a spool file;  write: the octets as they arrive
//!  finish (end)     filters see the message ─► verdict + modifications ─► local copies (store,
//!                   fsync'd) and the relay copy (outbound queue, fsync'd) ─► 250 only when all
//!                   are durable; if any fails, none is kept and the client gets 451
//! ```

use std::io::Read;
use std::sync::Arc;

use wasmail_proto::smtp::{MailParams, RcptParams, Ret};
use wasmail_types::mail::{Flags, MailboxName};
use wasmail_types::{
    Address, ClientInfo, Delivered, DeliveryTarget, Envelope, ForwardPath, MailStore,
    MessageContent, Modification, Reply, ReversePath, Route, SpoolWriter, SpooledMessage,
    StoreError, Verdict,
};

use super::trace::{Received, return_path};
use crate::policy::{Decision, PolicySession};
use crate::queue::{OutboundQueue, QueuedEnvelope, QueuedRecipient};
use wasmail_plugin::Hook;

/// What the server around a transaction provides.
pub struct Context {
    pub hostname: String,
    /// Local domains (lowercase), for recipients no delivery policy routed.
    pub domains: Vec<String>,
    pub store: Arc<dyn MailStore>,
    pub queue: Arc<OutboundQueue>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("hostname", &self.hostname)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

/// How the session should answer the command at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Reply(Reply),
    /// Send this reply and close the connection.
    Disconnect(Reply),
}

/// What a filter verdict means for the command at hand: continue, refuse, or close; a discard or
/// quarantine verdict lets the command proceed and is returned to be held for the message.
pub(super) fn judge(stage: &str, by: Option<&str>, verdict: Verdict) -> (Answer, Option<Verdict>) {
    let by = by.unwrap_or("-");
    match verdict {
        Verdict::Continue | Verdict::Accept => (Answer::Accept, None),
        Verdict::Reject(r) | Verdict::Defer(r) => {
            tracing::info!(stage, filter = by, code = r.code(), "refused by filter");
            (Answer::Reply(r), None)
        }
        Verdict::Disconnect(r) => {
            tracing::info!(
                stage,
                filter = by,
                code = r.code(),
                "disconnected by filter"
            );
            (Answer::Disconnect(r), None)
        }
        held @ (Verdict::Discard | Verdict::Quarantine(_)) => {
            tracing::info!(stage, filter = by, verdict = ?held, "held for the message");
            (Answer::Accept, Some(held))
        }
    }
}

/// What happens to the message when it is complete, as decided by the filters so far.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disposition {
    Deliver,
    Quarantine(String),
    Discard,
}

/// An accepted recipient.
#[derive(Debug)]
struct Recipient {
    address: Address,
    params: RcptParams,
    route: Accepted,
}

#[derive(Debug, Clone)]
enum Accepted {
    Local(Vec<(String, MailboxName)>),
    Relay,
}

/// One transaction in progress.
pub struct Transaction {
    policy: PolicySession,
    envelope: Envelope,
    params: MailParams,
    recipients: Vec<Recipient>,
    disposition: Disposition,
    modifications: Vec<Modification>,
    spool: Option<Box<dyn SpoolWriter>>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("from", &self.envelope.mail_from)
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

/// `451 4.3.0`: something on our side failed; the client keeps the message and retries.
pub(super) fn temporary_failure() -> Reply {
    Reply::fixed(
        451,
        (4, 3, 0),
        "Local error in processing, please try again later",
    )
}

impl Transaction {
    /// MAIL FROM: runs the mail-from filters on a fresh policy session.
    pub fn begin(
        mut policy: PolicySession,
        client: ClientInfo,
        from: ReversePath,
        params: MailParams,
    ) -> (Option<Transaction>, Answer) {
        let envelope = Envelope {
            mail_from: from,
            rcpt_to: Vec::new(),
            client,
        };
        let decision = policy.filter(Hook::MailFrom(&envelope));
        let mut tx = Transaction {
            policy,
            envelope,
            params,
            recipients: Vec::new(),
            disposition: Disposition::Deliver,
            modifications: Vec::new(),
            spool: None,
        };
        match tx.apply("mail-from", decision) {
            Answer::Accept => (Some(tx), Answer::Accept),
            refused => (None, refused),
        }
    }

    /// Applies a discard or quarantine verdict given before this transaction (at connect or
    /// HELO), which holds for every message of the session.
    pub fn hold(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::Discard => self.disposition = Disposition::Discard,
            Verdict::Quarantine(folder) => {
                self.disposition = Disposition::Quarantine(folder.clone());
            }
            _ => {}
        }
    }

    /// Applies a filter decision: modifications are kept for the end of the message; a discard
    /// or quarantine verdict is held for it (a discard is not undone by a later quarantine).
    fn apply(&mut self, stage: &str, decision: Decision) -> Answer {
        self.modifications.extend(decision.modifications);
        let (answer, held) = judge(stage, decision.decided_by.as_deref(), decision.verdict);
        if let Some(verdict) = held
            && self.disposition != Disposition::Discard
        {
            self.hold(&verdict);
        }
        answer
    }

    /// RCPT TO: routes the recipient, then runs the rcpt filters.
    pub fn add_recipient(&mut self, ctx: &Context, to: ForwardPath, params: RcptParams) -> Answer {
        let address = match to {
            ForwardPath::Address(a) => a,
            ForwardPath::Postmaster => match postmaster(ctx) {
                Some(a) => a,
                None => return Answer::Reply(unknown_user("postmaster")),
            },
        };
        let route = match self.route(ctx, &address) {
            Ok(route) => route,
            Err(reply) => return Answer::Reply(reply),
        };
        let decision = self.policy.filter(Hook::Rcpt(&self.envelope, &address));
        let answer = self.apply("rcpt", decision);
        if answer == Answer::Accept {
            self.envelope.rcpt_to.push(address.clone());
            self.recipients.push(Recipient {
                address,
                params,
                route,
            });
        }
        answer
    }

    /// Where a recipient's mail goes, or the reply refusing it.
    fn route(&self, ctx: &Context, address: &Address) -> Result<Accepted, Reply> {
        let route = match self.policy.route(address, &self.envelope) {
            Route::Pass => default_route(ctx, address),
            route => route,
        };
        match route {
            Route::Local(targets) => {
                let existing: Vec<_> = targets
                    .into_iter()
                    .filter(|(account, _)| self.policy.account_exists(account) != Some(false))
                    .collect();
                if existing.is_empty() {
                    Err(unknown_user(&address.to_string()))
                } else {
                    Ok(Accepted::Local(existing))
                }
            }
            // Whatever a policy says, only an authenticated client may relay: never an open relay.
            Route::Relay if self.envelope.client.authenticated.is_some() => Ok(Accepted::Relay),
            Route::Relay | Route::Pass => Err(Reply::fixed(550, (5, 7, 1), "Relaying denied")),
            Route::Reject(r) | Route::Defer(r) => Err(r),
        }
    }

    /// DATA/BDAT: opens the spool file the message is written to.
    pub fn start_data(&mut self, ctx: &Context) -> Answer {
        match ctx.store.spool() {
            Ok(writer) => {
                self.spool = Some(writer);
                Answer::Accept
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open a spool file");
                Answer::Reply(temporary_failure())
            }
        }
    }

    /// Message octets as they arrive.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.spool.as_mut() {
            Some(w) => w.write_all(bytes),
            None => Err(std::io::Error::other("no message in progress")),
        }
    }

    /// The message is complete: filters, modifications, delivery. The reply is the one the
    /// client gets; `250` means every copy is durable.
    pub fn finish(mut self, ctx: &Context, with: &str) -> Answer {
        let Some(writer) = self.spool.take() else {
            return Answer::Reply(temporary_failure());
        };
        let spooled: Arc<dyn SpooledMessage> = match writer.finish() {
            Ok(s) => Arc::from(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot finish the spool file");
                return Answer::Reply(temporary_failure());
            }
        };
        let content: Arc<dyn MessageContent> = spooled.clone();
        let decision = self.policy.filter(Hook::Data(&self.envelope, content));
        match self.apply("data", decision) {
            Answer::Accept => {}
            other => return other,
        }
        let id = spool_id();
        match std::mem::replace(&mut self.disposition, Disposition::Deliver) {
            Disposition::Discard => {
                tracing::info!(id, size = spooled.size(), "message discarded by filter");
                return Answer::Reply(Reply::fixed(250, (2, 0, 0), "Ok"));
            }
            Disposition::Quarantine(folder) => self.quarantine(&folder),
            Disposition::Deliver => {}
        }
        self.apply_recipient_changes(ctx);
        if self.recipients.is_empty() {
            tracing::info!(id, "every recipient removed by filters; message dropped");
            return Answer::Reply(Reply::fixed(250, (2, 0, 0), "Ok"));
        }
        match self.deliver(ctx, &id, with, spooled) {
            Ok(summary) => {
                tracing::info!(id, %summary, "message accepted");
                Answer::Reply(Reply::fixed(250, (2, 0, 0), &format!("Ok: queued as {id}")))
            }
            Err(e) => {
                tracing::error!(id, error = %e, "delivery failed; nothing kept, client told to retry");
                Answer::Reply(temporary_failure())
            }
        }
    }

    /// Local copies go to `folder` instead; the message is held, so it is not relayed.
    fn quarantine(&mut self, folder: &str) {
        let Ok(folder) = MailboxName::new(folder) else {
            return;
        };
        self.recipients.retain(|r| match &r.route {
            Accepted::Local(_) => true,
            Accepted::Relay => {
                tracing::info!(recipient = %r.address, "quarantined message not relayed");
                false
            }
        });
        for r in &mut self.recipients {
            if let Accepted::Local(targets) = &mut r.route {
                for (_, mailbox) in targets.iter_mut() {
                    *mailbox = folder.clone();
                }
            }
        }
    }

    /// Recipients added or removed by filters.
    fn apply_recipient_changes(&mut self, ctx: &Context) {
        let mods = std::mem::take(&mut self.modifications);
        for m in &mods {
            match m {
                Modification::RemoveRecipient(a) => {
                    self.recipients
                        .retain(|r| !r.address.eq_ignore_local_case(a));
                }
                Modification::AddRecipient(a) => {
                    if self
                        .recipients
                        .iter()
                        .any(|r| r.address.eq_ignore_local_case(a))
                    {
                        continue;
                    }
                    match self.route(ctx, a) {
                        Ok(route) => self.recipients.push(Recipient {
                            address: a.clone(),
                            params: RcptParams::default(),
                            route,
                        }),
                        Err(reply) => {
                            tracing::warn!(recipient = %a, code = reply.code(), "recipient added by a filter cannot be routed; ignored");
                        }
                    }
                }
                Modification::AddHeader { .. } | Modification::RemoveHeader { .. } => {}
            }
        }
        self.modifications = mods;
    }

    fn deliver(
        &self,
        ctx: &Context,
        id: &str,
        with: &str,
        spooled: Arc<dyn SpooledMessage>,
    ) -> Result<String, String> {
        let now = wasmail_types::mail::InternalDate::now().unix_seconds;
        let single = match self.recipients.as_slice() {
            [one] => Some(one.address.to_string()),
            _ => None,
        };
        let received = Received {
            client: &self.envelope.client,
            hostname: &ctx.hostname,
            with,
            id,
            single_recipient: single.as_deref(),
            unix_seconds: now,
        }
        .render();
        let mut added = String::new();
        for m in &self.modifications {
            if let Modification::AddHeader { name, value } = m {
                added.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        let removed: Vec<&str> = self
            .modifications
            .iter()
            .filter_map(|m| match m {
                Modification::RemoveHeader { name } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        let spooled = if removed.is_empty() {
            spooled
        } else {
            without_headers(ctx, spooled.as_ref(), &removed).map_err(|e| e.to_string())?
        };

        // Relay copy first: it is the one a later failure must take back.
        let relay: Vec<&Recipient> = self
            .recipients
            .iter()
            .filter(|r| matches!(r.route, Accepted::Relay))
            .collect();
        let queued = if relay.is_empty() {
            None
        } else {
            let prefix = format!("{received}{added}");
            let envelope = self.queued_envelope(&relay, now);
            let mut reader = ContentReader::new(spooled.as_ref());
            Some(
                ctx.queue
                    .enqueue(prefix.as_bytes(), &mut reader, &envelope)
                    .map_err(|e| format!("outbound queue: {e}"))?,
            )
        };

        let mut targets: Vec<DeliveryTarget> = Vec::new();
        for r in &self.recipients {
            if let Accepted::Local(list) = &r.route {
                for (account, mailbox) in list {
                    if !targets
                        .iter()
                        .any(|t| t.account == *account && t.mailbox == *mailbox)
                    {
                        targets.push(DeliveryTarget {
                            account: account.clone(),
                            mailbox: mailbox.clone(),
                            flags: Flags::new(),
                        });
                    }
                }
            }
        }
        let mut delivered: Vec<Delivered> = Vec::new();
        if !targets.is_empty() {
            let prefix = format!("{}{received}{added}", return_path(&self.envelope.mail_from));
            delivered =
                deliver_creating_folders(ctx, spooled.as_ref(), prefix.as_bytes(), &targets)
                    .map_err(|e| format!("local delivery: {e}"))?;
        }
        let mut summary = format!("{} local", delivered.len());
        if let Some(q) = queued {
            summary.push_str(&format!(
                ", queued for relay as {} ({} recipients)",
                q.id(),
                relay.len()
            ));
            q.keep();
        }
        Ok(summary)
    }

    fn queued_envelope(&self, relay: &[&Recipient], now: i64) -> QueuedEnvelope {
        QueuedEnvelope {
            mail_from: self
                .envelope
                .mail_from
                .address()
                .map(ToString::to_string)
                .unwrap_or_default(),
            recipients: relay
                .iter()
                .map(|r| QueuedRecipient {
                    address: r.address.to_string(),
                    notify: r.params.notify.map(|n| {
                        let mut parts = Vec::new();
                        if n.never {
                            parts.push("NEVER");
                        }
                        if n.success {
                            parts.push("SUCCESS");
                        }
                        if n.failure {
                            parts.push("FAILURE");
                        }
                        if n.delay {
                            parts.push("DELAY");
                        }
                        parts.join(",")
                    }),
                    orcpt: r.params.orcpt.as_ref().map(|(t, a)| format!("{t};{a}")),
                })
                .collect(),
            ret: self.params.ret.map(|r| match r {
                Ret::Full => "FULL".to_owned(),
                Ret::Headers => "HDRS".to_owned(),
            }),
            envid: self.params.envid.clone(),
            received_at: now,
            client: self.envelope.client.peer.to_string(),
            account: self.envelope.client.authenticated.clone(),
        }
    }
}

/// Delivers; a target folder that does not exist (a quarantine folder, a policy's folder) is
/// created and the delivery tried once more.
fn deliver_creating_folders(
    ctx: &Context,
    spooled: &dyn SpooledMessage,
    prefix: &[u8],
    targets: &[DeliveryTarget],
) -> Result<Vec<Delivered>, StoreError> {
    match spooled.deliver(prefix, targets) {
        Err(StoreError::NoSuchMailbox(_)) => {
            for t in targets {
                let account = ctx.store.account(&t.account)?;
                match account.create(&t.mailbox, None) {
                    Ok(()) | Err(StoreError::MailboxExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            spooled.deliver(prefix, targets)
        }
        other => other,
    }
}

/// A new spool file holding the message without the named header fields (with their
/// continuation lines).
fn without_headers(
    ctx: &Context,
    message: &dyn SpooledMessage,
    names: &[&str],
) -> Result<Arc<dyn SpooledMessage>, StoreError> {
    let header = message
        .read_header()
        .map_err(StoreError::io("read spool"))?;
    let mut kept = Vec::with_capacity(header.len());
    let mut skipping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name = line.split(|&b| b == b':').next().unwrap_or(&[]);
            skipping = line.contains(&b':')
                && names
                    .iter()
                    .any(|n| n.as_bytes().eq_ignore_ascii_case(name.trim_ascii_end()));
        }
        if !skipping {
            kept.extend_from_slice(line);
        }
    }
    let mut writer = ctx.store.spool()?;
    writer
        .write_all(&kept)
        .map_err(StoreError::io("write spool"))?;
    let mut reader = ContentReader::new(message);
    reader.offset = header.len() as u64;
    std::io::copy(&mut reader, &mut writer).map_err(StoreError::io("write spool"))?;
    Ok(Arc::from(writer.finish()?))
}

/// Reads a stored message sequentially.
struct ContentReader<'a> {
    content: &'a dyn MessageContent,
    offset: u64,
}

impl<'a> ContentReader<'a> {
    fn new(content: &'a dyn MessageContent) -> Self {
        ContentReader { content, offset: 0 }
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.content.read_at(self.offset, buf)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Routing when no delivery policy decided: local domains go to the account named by the address
/// (lowercase), everything else is relay.
fn default_route(ctx: &Context, address: &Address) -> Route {
    let domain = address.domain().to_string().to_lowercase();
    if ctx.domains.contains(&domain) {
        Route::Local(vec![(
            address.to_string().to_lowercase(),
            MailboxName::inbox(),
        )])
    } else {
        Route::Relay
    }
}

fn postmaster(ctx: &Context) -> Option<Address> {
    Address::parse(&format!("postmaster@{}", ctx.domains.first()?)).ok()
}

fn unknown_user(address: &str) -> Reply {
    Reply::new(
        550,
        Some(wasmail_types::EnhancedCode::new(5, 1, 1)),
        &format!("<{address}>: Recipient address rejected: User unknown"),
    )
    .unwrap_or_else(|_| Reply::fixed(550, (5, 1, 1), "Recipient address rejected: User unknown"))
}

/// A unique id for logs and the `Received:` field.
fn spool_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:x}{:05x}{:04x}",
        now.as_secs(),
        now.subsec_micros(),
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}
