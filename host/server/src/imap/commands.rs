//! Running one command of the authenticated or selected state against the store (on a
//! blocking thread): what it answers is collected in [`Replies`], which the driver hands to the
//! session in order.

use std::sync::Arc;

use tokio::sync::Notify;
use wasmail_proto::imap::Command;
use wasmail_proto::imap::Completion;
use wasmail_proto::imap::imap_types::command::CommandBody;
use wasmail_proto::imap::imap_types::response::{Code, Data, Response, Status};
use wasmail_types::{Account, ChangeListener, StoreError};

use super::mailboxes;
use super::selected::{FetchJob, Selected};
use wasmail_proto::imap::imap_types::IntoStatic;

/// What one command (or one slice of a long FETCH) answers.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    /// Untagged responses, in order.
    pub(super) untagged: Vec<Response<'static>>,
    /// The tagged completion; None while `more` is set (or when `idle`).
    pub(super) completion: Option<(Completion, Option<Code<'static>>, String)>,
    /// The selection changed: `Some(read_only)` selected, `None` deselected.
    pub(super) selected: Option<Option<bool>>,
    /// The command enabled CONDSTORE (RFC 7162 3.1).
    pub(super) condstore: bool,
    /// IDLE: the driver answers with `Session::idle`.
    pub(super) idle: bool,
    /// A FETCH that stopped to let its output be written; resumed by the driver.
    pub(super) more: Option<FetchJob>,
}

impl Replies {
    pub(super) fn data(&mut self, data: Data<'_>) {
        self.untagged.push(Response::Data(data.into_static()));
    }

    /// An untagged `* OK [code] text`.
    pub(super) fn untagged_ok(&mut self, code: Option<Code<'_>>, text: &str) {
        if let Ok(status) = Status::ok(None, code.map(IntoStatic::into_static), text.to_string()) {
            self.untagged.push(Response::Status(status.into_static()));
        }
    }

    pub(super) fn ok(&mut self, code: Option<Code<'_>>, text: &str) {
        self.finish(Completion::Ok, code, text);
    }

    pub(super) fn no(&mut self, code: Option<Code<'_>>, text: &str) {
        self.finish(Completion::No, code, text);
    }

    pub(super) fn bad(&mut self, text: &str) {
        self.finish(Completion::Bad, None, text);
    }

    fn finish(&mut self, kind: Completion, code: Option<Code<'_>>, text: &str) {
        self.completion = Some((kind, code.map(IntoStatic::into_static), text.to_string()));
    }

    /// A store failure as the client hears it (RFC 5530 codes).
    pub(super) fn store_error(&mut self, error: &StoreError) {
        let (code, text) = match error {
            StoreError::NoSuchMailbox(_) => ("NONEXISTENT", error.to_string()),
            StoreError::MailboxExists(_) => ("ALREADYEXISTS", error.to_string()),
            StoreError::InvalidName { .. } | StoreError::NotPermitted(_) => {
                ("CANNOT", error.to_string())
            }
            StoreError::NoSuchMessage(_) => ("EXPUNGEISSUED", error.to_string()),
            StoreError::UidsExhausted => ("LIMIT", error.to_string()),
            _ => {
                tracing::error!(error = %error, "store failed");
                (
                    "SERVERBUG",
                    "Internal error; the problem has been logged".to_string(),
                )
            }
        };
        self.no(Some(super::selected::code(code)), &text);
    }
}

/// Wakes an IDLE-ing driver when the selected mailbox changes.
#[derive(Debug, Default)]
pub(crate) struct Wake(pub(super) Notify);

impl ChangeListener for Wake {
    fn changed(&self) {
        self.0.notify_one();
    }
}

/// A logged-in connection's side of the store.
pub(super) struct AccountState {
    pub(super) account: Arc<dyn Account>,
    pub(super) selected: Option<Selected>,
    pub(super) wake: Arc<Wake>,
}

impl std::fmt::Debug for AccountState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountState")
            .field("account", &self.account.id())
            .field(
                "selected",
                &self.selected.as_ref().map(|s| s.name.as_str().to_string()),
            )
            .finish()
    }
}

/// Runs `command`; `condstore`: the session has CONDSTORE enabled.
pub(super) fn execute(state: &mut AccountState, command: Command, condstore: bool) -> Replies {
    let mut r = Replies::default();
    let body = match command {
        Command::CreateSpecialUse { mailbox, uses } => {
            mailboxes::create(state, &mut r, &mailbox, &uses);
            sync(state, &mut r, true, condstore);
            return r;
        }
        Command::Imap(body) => body,
    };
    // RFC 3501 7.4.1: no EXPUNGE while FETCH, STORE, SEARCH (or COPY) by sequence number run.
    let allow_expunge = !matches!(
        body,
        CommandBody::Fetch { uid: false, .. }
            | CommandBody::Store { uid: false, .. }
            | CommandBody::Search { uid: false, .. }
            | CommandBody::Copy { uid: false, .. }
    );
    match body {
        CommandBody::Select {
            mailbox,
            parameters,
        } => mailboxes::select(
            state,
            &mut r,
            &mailbox,
            false,
            !parameters.is_empty() || condstore,
        ),
        CommandBody::Examine {
            mailbox,
            parameters,
        } => mailboxes::select(
            state,
            &mut r,
            &mailbox,
            true,
            !parameters.is_empty() || condstore,
        ),
        CommandBody::Create { mailbox } => mailboxes::create(state, &mut r, &mailbox, &[]),
        CommandBody::Delete { mailbox } => mailboxes::delete(state, &mut r, &mailbox),
        CommandBody::Rename { from, to } => mailboxes::rename(state, &mut r, &from, &to),
        CommandBody::Subscribe { mailbox } => mailboxes::subscribe(state, &mut r, &mailbox, true),
        CommandBody::Unsubscribe { mailbox } => {
            mailboxes::subscribe(state, &mut r, &mailbox, false)
        }
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => mailboxes::list(state, &mut r, &reference, &mailbox_wildcard, false),
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => mailboxes::list(state, &mut r, &reference, &mailbox_wildcard, true),
        CommandBody::Status {
            mailbox,
            item_names,
        } => mailboxes::status(state, &mut r, &mailbox, &item_names),
        CommandBody::Namespace => mailboxes::namespace(&mut r),
        CommandBody::Noop | CommandBody::Check => r.ok(None, "Completed"),
        CommandBody::Idle => r.idle = true,
        body => match state.selected.as_mut() {
            Some(selected) => selected.execute(&state.account, &mut r, body, condstore),
            None => r.bad("No mailbox selected"),
        },
    }
    if r.selected == Some(None) {
        // CLOSE, UNSELECT, a failed SELECT or a DELETE of the selected mailbox: nothing more
        // is reported about it (RFC 3501 6.4.2: CLOSE sends no EXPUNGE).
        state.selected = None;
    }
    if r.more.is_none() {
        let condstore = condstore || r.condstore;
        sync(state, &mut r, allow_expunge, condstore);
    }
    r
}

/// Reports what changed in the selected mailbox since the client last heard (untagged EXPUNGE,
/// EXISTS, RECENT, FETCH FLAGS), before the command's completion.
pub(super) fn sync(
    state: &mut AccountState,
    r: &mut Replies,
    allow_expunge: bool,
    condstore: bool,
) {
    if let Some(selected) = state.selected.as_mut()
        && let Err(e) = selected.sync(r, allow_expunge, condstore)
    {
        tracing::warn!(error = %e, "mailbox sync failed");
    }
}
