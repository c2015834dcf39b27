//! Test guest: an authenticator for `@example.org` that knows one user, alice, with the secret
//! "correct horse".

use wasmail_plugin_sdk::{Authenticator, Client, Denial};

struct Auth;

const ALICE: &str = "alice@example.org";

impl Authenticator for Auth {
    fn authenticate(
        _mechanism: String,
        identity: String,
        secret: String,
        _client: Client,
    ) -> Result<String, Denial> {
        if !identity.ends_with("@example.org") {
            Err(Denial::NotMine)
        } else if identity == ALICE && secret == "correct horse" {
            Ok(identity)
        } else {
            Err(Denial::InvalidCredentials)
        }
    }

    fn account_exists(account: String) -> bool {
        account == ALICE
    }
}

wasmail_plugin_sdk::export!(Auth: Authenticator);
