//! The login step POP3 and IMAP share: credentials checked through the policy's
//! authenticators (and its login cache) on the blocking pool, an authorization identity other
//! than the authenticated one refused, and every refusal answered only after a delay.

use std::time::Duration;

use wasmail_types::{AuthAnswer, ClientInfo, Secret};

use crate::policy::Policy;
use crate::wire::blocking;

/// How long a refused login waits before its answer: brute force gets slow, people do not
/// notice.
pub(crate) const FAILED_LOGIN_DELAY: Duration = Duration::from_millis(500);

/// What a login came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// The credentials name this account.
    Accepted(String),
    /// Wrong name or password (the delay has passed).
    Refused,
    /// An authenticator could not decide; the client may retry.
    Unavailable,
}

/// Checks a login. `mechanism` is the SASL name the authenticators know (`PLAIN`, `LOGIN`; a
/// protocol's plain password command counts as PLAIN).
pub(crate) async fn check(
    policy: &Policy,
    mechanism: &'static str,
    authzid: Option<String>,
    user: String,
    secret: Secret<String>,
    client: &ClientInfo,
) -> Login {
    if authzid.as_ref().is_some_and(|z| *z != user) {
        tracing::info!(
            identity = user,
            "login refused: authorization identity differs"
        );
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        return Login::Refused;
    }
    let policy = policy.clone();
    let who = client.clone();
    let answer = blocking(move || {
        let answer = policy
            .session()
            .authenticate(mechanism, &user, &secret, &who);
        if matches!(answer, AuthAnswer::Rejected | AuthAnswer::NotMine) {
            tracing::info!(identity = user, "login failed");
        }
        answer
    })
    .await;
    match answer {
        Some(AuthAnswer::Accepted(account)) => Login::Accepted(account),
        Some(AuthAnswer::Rejected | AuthAnswer::NotMine) => {
            tokio::time::sleep(FAILED_LOGIN_DELAY).await;
            Login::Refused
        }
        Some(AuthAnswer::TemporaryFailure) | None => Login::Unavailable,
    }
}
