//! Embedding wasmail: a mail server inside your own program, with policy written in Rust.
//!
//! ```text
//! cargo run -p wasmail-embed-example -- [DATA_DIR]
//! ```
//! Receives mail for `example.test` on 127.0.0.1:2525 (inbound) and 127.0.0.1:2587
//! (submission), stores it under DATA_DIR (default `./embed-data`), and stops on ctrl-c. The
//! native filter below tags every message it sees and refuses mail from one sender; the native
//! authenticator accepts `demo@example.test` / `demo`. Try it:
//!
//! ```text
//! swaks --server 127.0.0.1:2525 --to demo@example.test --from someone@example.org
//! ```

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmail::Service;
use wasmail::config::Config;
use wasmail_types::{
    AuthAnswer, Authenticator, ClientInfo, Envelope, Filter, FilterAnswer, MessageContent,
    Modification, Reply, Secret, Verdict,
};

/// Adds `X-Seen-By: embed-example (n)` to every message and refuses one sender outright.
#[derive(Debug, Default)]
struct TagFilter {
    seen: AtomicU64,
}

impl Filter for TagFilter {
    fn name(&self) -> &str {
        "tag"
    }

    fn on_mail_from(&self, envelope: &Envelope) -> FilterAnswer {
        let blocked = envelope
            .mail_from
            .address()
            .is_some_and(|a| a.to_string().eq_ignore_ascii_case("spammer@example.org"));
        if blocked {
            return FilterAnswer::verdict(Verdict::Reject(Reply::fixed(
                550,
                (5, 7, 1),
                "Sender refused by the embedding program",
            )));
        }
        FilterAnswer::pass()
    }

    fn on_data(&self, _envelope: &Envelope, message: &dyn MessageContent) -> FilterAnswer {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        FilterAnswer {
            verdict: Verdict::Continue,
            modifications: vec![Modification::AddHeader {
                name: "X-Seen-By".into(),
                value: format!("embed-example ({n}, {} octets)", message.size()),
            }],
        }
    }
}

/// One fixed account; everything else is left to the next authenticator.
#[derive(Debug)]
struct DemoAccount;

impl Authenticator for DemoAccount {
    fn name(&self) -> &str {
        "demo-account"
    }

    fn authenticate(
        &self,
        _mechanism: &str,
        identity: &str,
        secret: &Secret<String>,
        _client: &ClientInfo,
    ) -> AuthAnswer {
        if !identity.eq_ignore_ascii_case("demo@example.test") {
            return AuthAnswer::NotMine;
        }
        if secret.expose() == "demo" {
            AuthAnswer::Accepted("demo@example.test".into())
        } else {
            AuthAnswer::Rejected
        }
    }

    fn account_exists(&self, account: &str) -> Option<bool> {
        account
            .eq_ignore_ascii_case("demo@example.test")
            .then_some(true)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "embed-data".into());
    let mut config = Config::default();
    config.server.hostname = "embed.example.test".into();
    config.server.domains = vec!["example.test".into()];
    config.server.data_dir = data_dir.into();
    // Only the services handed over as sockets below are served.
    for (_, service) in config.services.all_mut() {
        service.enabled = false;
    }

    // The embedder binds (it could equally receive sockets from systemd or a test harness).
    let inbound = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 2525)))?;
    let submission = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 2587)))?;

    let server = wasmail::Server::builder(config)
        .filter(Arc::new(TagFilter::default()))
        .authenticator(Arc::new(DemoAccount))
        .listener(Service::Smtp, inbound)
        .listener(Service::Submission, submission)
        .build()?;
    for service in [Service::Smtp, Service::Submission] {
        for addr in server.local_addrs(service) {
            println!("{} on {addr}", service.name());
        }
    }
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
