//! The POP3 driver: pumps bytes between the socket and the sans-I/O session, and answers its
//! events through the authenticators and the maildrop (on blocking threads).

use std::sync::Arc;

use wasmail_proto::pop3::{Event, LoginFailure, Progress, Session};

use super::Pop3Service;
use super::maildrop::{Maildrop, OpenError};
use crate::login::{self, Login};
use crate::net::Connection;
use crate::wire::{Turn, Wire, blocking};

pub(super) async fn run(service: Arc<Pop3Service>, conn: Connection) {
    let (mut wire, mut client, shutdown) = Wire::open(conn, service.settings.idle_timeout);
    let mut session = Session::new(service.session_config(&client), client.tls.is_some());
    // Held from login to the end of the session (the POP3 lock goes with it).
    let mut maildrop: Option<Maildrop> = None;
    // The account's EXPIRE policy, known from its login.
    let mut expire = service.settings.policy.expire;
    session.greet();
    loop {
        match session.next() {
            Progress::NeedInput => match wire.turn(&mut session, Some(&shutdown)).await {
                Turn::Fed => {}
                Turn::Gone => break,
                Turn::IdleTimeout => session.disconnect("Timeout, closing connection"),
                // POP3 has no transaction to finish: a session left mid-way keeps its mail
                // (RFC 1939: no UPDATE without QUIT).
                Turn::Shutdown => session.disconnect("Server shutting down"),
            },
            Progress::Close => {
                let _ = wire.flush(&mut session).await;
                break;
            }
            Progress::AwaitingAnswer => {
                tracing::error!("POP3 session waits for an answer the driver did not give");
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
                let account = match login.await {
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
                let opened = blocking(move || {
                    let (expire, delay) = s.settings.policy.for_account(&name);
                    s.maildrops
                        .open(s.store.as_ref(), &name, delay.as_duration())
                        .map(|d| (d, expire, delay))
                })
                .await;
                match opened {
                    Some(Ok((drop, account_expire, delay))) => {
                        session.account_policy(
                            Some(super::capa_expire(account_expire)),
                            super::capa_login_delay(delay),
                        );
                        tracing::Span::current().record("account", account.as_str());
                        tracing::info!(messages = drop.listing().len(), "logged in");
                        session.logged_in(account, drop.listing());
                        maildrop = Some(drop);
                        expire = account_expire;
                    }
                    Some(Err(e)) => {
                        let failure = match e {
                            OpenError::InUse => LoginFailure::InUse,
                            OpenError::TooSoon => LoginFailure::LoginDelay,
                            OpenError::Store(e) => {
                                tracing::error!(account, error = %e, "cannot open the maildrop");
                                LoginFailure::Temporary
                            }
                        };
                        tracing::info!(account, ?failure, "maildrop not opened");
                        session.login_failed(failure);
                    }
                    None => session.login_failed(LoginFailure::Temporary),
                }
            }
            Progress::Event(Event::Retrieve { number, lines }) => {
                let Some(mut drop) = maildrop.take() else {
                    session.message_unavailable();
                    continue;
                };
                let result = blocking(move || {
                    let r = drop.read(number, lines.is_none());
                    (drop, r)
                })
                .await;
                match result {
                    Some((drop, Ok(content))) => {
                        maildrop = Some(drop);
                        session.message(&content);
                        // A message is sent as soon as it is read, not held for the rest of a
                        // pipelined batch: queued output stays one message big.
                        if wire.flush(&mut session).await.is_err() {
                            break;
                        }
                    }
                    Some((drop, Err(e))) => {
                        maildrop = Some(drop);
                        tracing::info!(number, error = %e, "message unavailable");
                        session.message_unavailable();
                    }
                    None => session.message_unavailable(),
                }
            }
            Progress::Event(Event::Update { deleted }) => {
                let Some(drop) = maildrop.take() else {
                    session.updated(true);
                    continue;
                };
                let count = deleted.len();
                let ok = blocking(move || {
                    let now = wasmail_types::mail::InternalDate::now().unix_seconds;
                    // The maildrop (and with it the POP3 lock) is released after the update.
                    drop.update(&deleted, expire, now)
                })
                .await;
                match ok {
                    Some(Ok(())) => {
                        tracing::info!(deleted = count, "update done");
                        session.updated(true);
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "update failed");
                        session.updated(false);
                    }
                    None => session.updated(false),
                }
            }
            Progress::Event(Event::StartTls) => {
                let Some(tls) = service.tls.clone() else {
                    break;
                };
                if wire.flush(&mut session).await.is_err() {
                    break;
                }
                match wire.start_tls(&tls).await {
                    Ok(info) => {
                        tracing::info!(protocol = info.protocol, cipher = info.cipher, "STLS");
                        client.tls = Some(info);
                        let (plain, needs_tls) = service.plaintext_auth(&client);
                        session.tls_started(plain, needs_tls);
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "TLS handshake failed");
                        break;
                    }
                }
            }
        }
    }
    // The POP3 lock goes before the socket closes: a client that sees the close can log in
    // again at once.
    drop(maildrop);
    wire.close().await;
}
