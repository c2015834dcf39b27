//! The IMAP driver: pumps bytes between the socket and the sans-I/O session, runs commands on
//! the blocking pool, streams APPEND messages into the store, and while a client IDLEs, wakes
//! on the selected mailbox's change feed to send what changed at once.
//!
//! Memory: thousands of connections mostly wait for their client, so the connection's future
//! is kept to what waiting needs; the larger steps (login, a command, the TLS handshake,
//! finishing an APPEND) are boxed and exist only while they run.

use std::sync::{Arc, Mutex};

use wasmail_proto::imap::imap_types::response::{Code, Response};
use wasmail_proto::imap::{Command, Completion, Event, LoginFailure, Progress, Session};

use super::ImapService;
use super::append::Upload;
use super::commands::{self, AccountState, Replies, Wake};
use super::convert;
use super::selected::code;
use crate::login::{self, Login};
use crate::net::Connection;
use crate::wire::{Turn, Wire, blocking};

pub(super) async fn run(service: Arc<ImapService>, conn: Connection) {
    let (mut wire, mut client, shutdown) = Wire::open(conn, service.settings.idle_timeout);
    let mut session = Session::new(service.session_config(&client), client.tls.is_some());
    // From login on: the account and the selected mailbox (moved to blocking threads and back
    // through the mutex; only this connection uses it).
    let mut state: Option<Arc<Mutex<AccountState>>> = None;
    let wake = Arc::new(Wake::default());
    let mut upload: Option<Upload> = None;
    session.greet();
    loop {
        match session.next() {
            Progress::NeedInput if session.is_idling() => {
                let turn = wire
                    .turn_until(&mut session, Some(&shutdown), wake.0.notified())
                    .await;
                match turn {
                    None => {
                        // The mailbox changed: tell the idling client now (RFC 2177).
                        report_changes(&mut session, state.as_ref()).await;
                    }
                    Some(turn) => {
                        if !on_turn(&mut session, turn) {
                            break;
                        }
                    }
                }
            }
            Progress::NeedInput => {
                let turn = wire.turn(&mut session, Some(&shutdown)).await;
                if !on_turn(&mut session, turn) {
                    break;
                }
            }
            Progress::Close => {
                let _ = wire.flush(&mut session).await;
                break;
            }
            Progress::AwaitingAnswer => {
                tracing::error!("IMAP session waits for an answer the driver did not give");
                break;
            }
            Progress::Event(Event::Login {
                mechanism,
                authzid,
                user,
                secret,
            }) => {
                let login = login::check(
                    &service.policy,
                    mechanism.sasl_name(),
                    authzid,
                    user,
                    secret,
                    &client,
                );
                let account = match Box::pin(login).await {
                    Login::Accepted(account) => account,
                    Login::Refused => {
                        session.login_failed(LoginFailure::Credentials);
                        continue;
                    }
                    Login::Unavailable => {
                        session.login_failed(LoginFailure::Temporary);
                        continue;
                    }
                };
                let s = service.clone();
                let name = account.clone();
                match blocking(move || s.store.account(&name)).await {
                    Some(Ok(opened)) => {
                        tracing::Span::current().record("account", account.as_str());
                        tracing::info!("logged in");
                        state = Some(Arc::new(Mutex::new(AccountState {
                            account: opened,
                            selected: None,
                            wake: wake.clone(),
                        })));
                        session.logged_in(account);
                    }
                    Some(Err(e)) => {
                        tracing::error!(account, error = %e, "cannot open the account");
                        session.login_failed(LoginFailure::Temporary);
                    }
                    None => session.login_failed(LoginFailure::Temporary),
                }
            }
            Progress::Event(Event::StartTls) => {
                let Some(tls) = service.tls.clone() else {
                    break;
                };
                if wire.flush(&mut session).await.is_err() {
                    break;
                }
                match Box::pin(wire.start_tls(&tls)).await {
                    Ok(info) => {
                        tracing::info!(protocol = info.protocol, cipher = info.cipher, "STARTTLS");
                        client.tls = Some(info);
                        let plain = crate::policy::passwords_allowed(
                            &client,
                            service.settings.allow_plaintext_auth,
                        );
                        session.tls_started(plain);
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "TLS handshake failed");
                        break;
                    }
                }
            }
            Progress::Event(Event::Command { command, .. }) => {
                let Some(st) = state.clone() else {
                    session.done(Completion::No, None, "Not logged in");
                    continue;
                };
                if !Box::pin(run_command(&mut wire, &mut session, st, command)).await {
                    break;
                }
            }
            Progress::Event(Event::AppendStart {
                mailbox,
                flags,
                date,
                ..
            }) => {
                let Some(st) = state.clone() else {
                    session.done(Completion::No, None, "Not logged in");
                    continue;
                };
                let opened = blocking(move || {
                    let name = convert::mailbox_name(&mailbox)?;
                    let flags = convert::flags_from_wire(&flags)?;
                    let st = st.lock().unwrap_or_else(|p| p.into_inner());
                    st.account
                        .open(&name)
                        .map(|m| (m, flags))
                        .map_err(|e| match e {
                            wasmail_types::StoreError::NoSuchMailbox(_) => String::new(),
                            e => e.to_string(),
                        })
                })
                .await;
                match opened {
                    Some(Ok((mailbox, flags))) => {
                        let date = date.as_ref().map(convert::internal_date);
                        upload = Some(Upload::start(mailbox, flags, date));
                        session.append_go();
                    }
                    Some(Err(why)) if why.is_empty() => session.done(
                        Completion::No,
                        Some(Code::TryCreate),
                        "No such mailbox; create it first",
                    ),
                    Some(Err(why)) => session.done(Completion::No, Some(code("CANNOT")), &why),
                    None => session.done(Completion::No, Some(code("SERVERBUG")), "Internal error"),
                }
            }
            Progress::Event(Event::AppendData(chunk)) => {
                if chunk.is_empty() {
                    // The command was malformed after the message: nothing is stored.
                    if let Some(u) = upload.take() {
                        u.abort().await;
                    }
                } else if let Some(u) = upload.as_mut() {
                    u.send(chunk).await;
                }
            }
            Progress::Event(Event::AppendEnd) => {
                let Some(u) = upload.take() else {
                    session.done(Completion::No, Some(code("SERVERBUG")), "Internal error");
                    continue;
                };
                match Box::pin(u.finish()).await {
                    Ok((validity, uid)) => {
                        // The new message shows in the selected mailbox before the OK.
                        report_changes(&mut session, state.as_ref()).await;
                        let code = std::num::NonZeroU32::new(validity.get())
                            .zip(std::num::NonZeroU32::new(uid.get()))
                            .map(|(uid_validity, uid)| Code::AppendUid { uid_validity, uid });
                        session.done(Completion::Ok, code, "APPEND completed");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "APPEND failed");
                        let mut r = Replies::default();
                        r.store_error(&e);
                        finish(&mut session, r);
                    }
                }
            }
        }
    }
    if let Some(u) = upload.take() {
        u.abort().await;
    }
    wire.close().await;
}

/// Sends the client what changed in its selected mailbox (outside any command: while it
/// IDLEs, and after APPEND before the OK).
async fn report_changes(session: &mut Session, state: Option<&Arc<Mutex<AccountState>>>) {
    let Some(st) = state.cloned() else {
        return;
    };
    let condstore = session.condstore();
    let replies = blocking(move || {
        let mut r = Replies::default();
        let mut st = st.lock().unwrap_or_else(|p| p.into_inner());
        commands::sync(&mut st, &mut r, true, condstore);
        r
    })
    .await;
    if let Some(r) = replies {
        apply_untagged(session, r.untagged);
    }
}

/// What a turn of the socket means for the session; false: stop.
fn on_turn(session: &mut Session, turn: Turn) -> bool {
    match turn {
        Turn::Fed => true,
        Turn::Gone => false,
        Turn::IdleTimeout => {
            session.disconnect("Autologout; idle for too long");
            true
        }
        Turn::Shutdown => {
            session.disconnect("Server shutting down");
            true
        }
    }
}

/// Runs one command, slice by slice for a long FETCH (writing each slice's output before
/// reading the next); false if the connection is gone.
async fn run_command(
    wire: &mut Wire,
    session: &mut Session,
    st: Arc<Mutex<AccountState>>,
    command: Command,
) -> bool {
    let condstore = session.condstore();
    let task = st.clone();
    let mut replies = blocking(move || {
        let mut st = task.lock().unwrap_or_else(|p| p.into_inner());
        commands::execute(&mut st, command, condstore)
    })
    .await;
    loop {
        let Some(mut r) = replies else {
            session.done(Completion::No, Some(code("SERVERBUG")), "Internal error");
            return true;
        };
        let Some(job) = r.more.take() else {
            finish(session, r);
            return true;
        };
        apply_untagged(session, std::mem::take(&mut r.untagged));
        if r.condstore {
            session.enable_condstore();
        }
        if wire.flush(session).await.is_err() {
            return false;
        }
        let task = st.clone();
        replies = blocking(move || {
            let mut r = Replies::default();
            let mut st = task.lock().unwrap_or_else(|p| p.into_inner());
            match st.selected.as_mut() {
                Some(selected) => job.resume(selected, &mut r),
                None => r.no(None, "Mailbox closed"),
            }
            if r.more.is_none() {
                commands::sync(&mut st, &mut r, false, condstore);
            }
            r
        })
        .await;
    }
}

fn apply_untagged(session: &mut Session, untagged: Vec<Response<'static>>) {
    for response in untagged {
        match response {
            Response::Data(data) => session.respond(data),
            Response::Status(status) => session.respond_status(status),
            Response::CommandContinuationRequest(_) => {}
        }
    }
}

/// Hands a command's replies to the session and completes it.
fn finish(session: &mut Session, r: Replies) {
    apply_untagged(session, r.untagged);
    if let Some(selection) = r.selected {
        session.selected(selection);
    }
    if r.condstore {
        session.enable_condstore();
    }
    if r.idle {
        session.idle();
        return;
    }
    match r.completion {
        Some((kind, code, text)) => session.done(kind, code, &text),
        None => session.done(Completion::Ok, None, "Completed"),
    }
}
