//! The SMTP driver: pumps bytes between the socket and the sans-I/O session, and answers the
//! session's decision events through the policy and the transaction (on blocking threads).

use std::sync::Arc;

use wasmail_proto::smtp::{Event, Progress, Session};
use wasmail_types::{AuthAnswer, ClientInfo, Reply, Verdict};

use super::SmtpService;
use super::transaction::{Answer, Context, Transaction, judge, temporary_failure};
use crate::net::Connection;
use crate::policy::PolicySession;
use crate::wire::{Turn, Wire, blocking};
use wasmail_plugin::Hook;

/// One connection's state beside the protocol session.
struct Conversation {
    service: Arc<SmtpService>,
    session: Session,
    client: ClientInfo,
    /// The policy session for the stages before MAIL (connect, helo).
    early: Option<PolicySession>,
    /// A discard/quarantine verdict given before MAIL: applies to every transaction.
    held: Option<Verdict>,
    tx: Option<Transaction>,
    /// A message write failed: the transaction ends with a temporary failure.
    write_failed: bool,
    /// Shutdown was requested while a transaction was open: close once it ends.
    draining: bool,
    /// The socket is gone (a failed TLS handshake): stop without writing.
    dead: bool,
}

pub(super) async fn run(service: Arc<SmtpService>, conn: Connection) {
    let (mut wire, client, shutdown) = Wire::open(conn, service.settings.idle_timeout);
    let session = Session::new(service.session_config(&client), client.tls.is_some());
    let mut c = Conversation {
        early: Some(service.policy.session()),
        service,
        session,
        client,
        held: None,
        tx: None,
        write_failed: false,
        draining: false,
        dead: false,
    };
    c.connect().await;
    loop {
        match c.session.next() {
            Progress::Event(event) => {
                c.handle(event, &mut wire).await;
                if c.dead {
                    break;
                }
            }
            Progress::NeedInput => {
                let watch = (!c.draining).then_some(&shutdown);
                match wire.turn(&mut c.session, watch).await {
                    Turn::Fed => {}
                    Turn::Gone => break,
                    Turn::IdleTimeout => {
                        c.session
                            .disconnect(c.closing((4, 2), "Timeout, closing connection"));
                    }
                    Turn::Shutdown => {
                        if c.tx.is_some() {
                            c.draining = true;
                        } else {
                            c.session
                                .disconnect(c.closing((3, 2), "Service shutting down"));
                        }
                    }
                }
            }
            Progress::Close => {
                let _ = wire.flush(&mut c.session).await;
                break;
            }
            Progress::AwaitingAnswer => {
                tracing::error!("SMTP session waits for an answer the driver did not give");
                break;
            }
        }
    }
    wire.close().await;
}

impl Conversation {
    /// `421 4.<subject>.<detail> <hostname> text`.
    fn closing(&self, (subject, detail): (u16, u16), text: &str) -> Reply {
        Reply::new(
            421,
            Some(wasmail_types::EnhancedCode::new(4, subject, detail)),
            &format!("{} {text}", self.service.context.hostname),
        )
        .unwrap_or_else(|_| Reply::fixed(421, (4, 3, 0), "Closing connection"))
    }

    async fn connect(&mut self) {
        match self.early_stage(None).await {
            Some(Answer::Accept) => self.session.greet(),
            Some(Answer::Reply(r) | Answer::Disconnect(r)) => self.session.refuse(r),
            None => self
                .session
                .refuse(Reply::fixed(421, (4, 3, 0), "Service not available")),
        }
    }

    /// Runs the connect (no HELO name) or HELO filters on the pre-transaction policy session;
    /// `None` if the policy task failed. A discard or quarantine verdict is held for every
    /// transaction of the session.
    async fn early_stage(&mut self, helo: Option<String>) -> Option<Answer> {
        let Some(mut early) = self.early.take() else {
            return Some(Answer::Accept);
        };
        let stage = if helo.is_some() { "helo" } else { "connect" };
        let client = self.client.clone();
        let (early, decision) = blocking(move || {
            let d = match &helo {
                Some(name) => early.filter(Hook::Helo(&client, name)),
                None => early.filter(Hook::Connect(&client)),
            };
            (early, d)
        })
        .await?;
        self.early = Some(early);
        let (answer, held) = judge(stage, decision.decided_by.as_deref(), decision.verdict);
        if held.is_some() {
            self.held = held;
        }
        Some(answer)
    }

    /// Runs one step of the open transaction on a blocking thread and puts the transaction back;
    /// `None` (the reply already queued) if there is none or the task failed.
    async fn step(
        &mut self,
        step: impl FnOnce(&mut Transaction, &Context) -> Answer + Send + 'static,
    ) -> Option<Answer> {
        let Some(mut tx) = self.tx.take() else {
            self.session
                .reply(Reply::fixed(503, (5, 5, 1), "MAIL first"));
            return None;
        };
        let ctx = self.service.context.clone();
        match blocking(move || {
            let answer = step(&mut tx, &ctx);
            (tx, answer)
        })
        .await
        {
            Some((tx, answer)) => {
                self.tx = Some(tx);
                Some(answer)
            }
            None => {
                self.session.reply(temporary_failure());
                self.transaction_ended();
                None
            }
        }
    }

    fn answer(&mut self, answer: Answer) {
        match answer {
            Answer::Accept => self.session.accept(),
            Answer::Reply(r) => self.session.reply(r),
            Answer::Disconnect(r) => self.session.disconnect(r),
        }
    }

    /// After a transaction ends: close if the server is shutting down.
    fn transaction_ended(&mut self) {
        self.tx = None;
        self.write_failed = false;
        if self.draining {
            let r = self.closing((3, 2), "Service shutting down");
            self.session.disconnect(r);
        }
    }

    async fn handle(&mut self, event: Event, wire: &mut Wire) {
        match event {
            Event::Helo { name, .. } => self.helo(name).await,
            Event::Auth {
                mechanism,
                authzid,
                identity,
                secret,
            } => {
                if authzid.as_ref().is_some_and(|z| *z != identity) {
                    tracing::info!(identity, "login refused: authorization identity differs");
                    self.session.reply(auth_failed());
                    return;
                }
                let policy = self.service.policy.session();
                let client = self.client.clone();
                let mech = match mechanism {
                    wasmail_proto::smtp::Mechanism::Plain => "PLAIN",
                    wasmail_proto::smtp::Mechanism::Login => "LOGIN",
                };
                let who = identity.clone();
                let answer =
                    blocking(move || policy.authenticate(mech, &who, &secret, &client)).await;
                match answer {
                    Some(AuthAnswer::Accepted(account)) => {
                        tracing::Span::current().record("account", account.as_str());
                        tracing::info!("authenticated");
                        self.client.authenticated = Some(account.clone());
                        self.session.authenticated(account);
                    }
                    Some(AuthAnswer::Rejected | AuthAnswer::NotMine) => {
                        tracing::info!(identity, "login failed");
                        self.session.reply(auth_failed());
                    }
                    Some(AuthAnswer::TemporaryFailure) | None => {
                        self.session.reply(Reply::fixed(
                            454,
                            (4, 7, 0),
                            "Temporary authentication failure",
                        ));
                    }
                }
            }
            Event::MailFrom { from, params } => {
                let policy = self.service.policy.session();
                let client = self.client.clone();
                let held = self.held.clone();
                let result = blocking(move || {
                    let (tx, answer) = Transaction::begin(policy, client, from, params);
                    (
                        tx.map(|mut tx| {
                            if let Some(v) = &held {
                                tx.hold(v);
                            }
                            tx
                        }),
                        answer,
                    )
                })
                .await;
                match result {
                    Some((tx, answer)) => {
                        self.tx = tx;
                        self.answer(answer);
                    }
                    None => self.session.reply(temporary_failure()),
                }
            }
            Event::RcptTo { to, params } => {
                if let Some(answer) = self
                    .step(move |tx, ctx| tx.add_recipient(ctx, to, params))
                    .await
                {
                    self.answer(answer);
                }
            }
            Event::DataStart { .. } => match self.step(|tx, ctx| tx.start_data(ctx)).await {
                Some(Answer::Accept) => self.session.accept(),
                Some(answer) => {
                    self.answer(answer);
                    self.transaction_ended();
                }
                None => {}
            },
            Event::MessageChunk(bytes) => {
                if self.write_failed {
                    return;
                }
                // Page-cache writes: short enough for the async thread; the fsync happens at
                // delivery, on a blocking thread.
                if let Some(tx) = self.tx.as_mut()
                    && let Err(e) = tx.write(&bytes)
                {
                    tracing::error!(error = %e, "spool write failed");
                    self.write_failed = true;
                }
            }
            Event::MessageEnd { size } => {
                let tx = self.tx.take();
                let failed = std::mem::take(&mut self.write_failed);
                match tx {
                    Some(tx) if !failed => {
                        let ctx = self.service.context.clone();
                        let with = self.session.with_protocol();
                        tracing::debug!(size, "message received");
                        match blocking(move || tx.finish(&ctx, with)).await {
                            Some(answer) => self.answer(answer),
                            None => self.session.reply(temporary_failure()),
                        }
                    }
                    _ => self.session.reply(temporary_failure()),
                }
                self.transaction_ended();
            }
            Event::MessageAborted { reply } => {
                tracing::info!(code = reply.code(), "message refused while receiving");
                self.transaction_ended();
            }
            Event::StartTls => {
                let Some(tls) = self.service.tls.clone() else {
                    return;
                };
                if wire.flush(&mut self.session).await.is_err() {
                    self.session.disconnect(self.closing((3, 0), "TLS failed"));
                    return;
                }
                match wire.start_tls(&tls).await {
                    Ok(info) => {
                        tracing::info!(protocol = info.protocol, cipher = info.cipher, "STARTTLS");
                        // RFC 3207 4.2: everything learnt before TLS is forgotten.
                        self.client.tls = Some(info);
                        self.client.helo = None;
                        self.client.authenticated = None;
                        self.tx = None;
                        let (auth, needs_tls) = self.service.auth_offer(&self.client);
                        self.session.tls_started(auth, needs_tls);
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "TLS handshake failed");
                        self.dead = true;
                    }
                }
            }
            Event::Reset => self.transaction_ended(),
        }
    }

    async fn helo(&mut self, name: String) {
        self.client.helo = Some(name.clone());
        match self.early_stage(Some(name)).await {
            Some(answer) => self.answer(answer),
            None => self.session.reply(temporary_failure()),
        }
    }
}

fn auth_failed() -> Reply {
    Reply::fixed(535, (5, 7, 8), "Authentication credentials invalid")
}
