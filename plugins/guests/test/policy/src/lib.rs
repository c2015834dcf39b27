//! Test guest: a delivery policy for the local domain example.org, whose accounts are alice and
//! bob. postmaster goes to alice, sales to alice and bob (an alias to two), alice and bob to
//! themselves, any other local part is unknown (550 5.1.1); other domains relay.

use wasmail_plugin_sdk::{DeliveryPolicy, Envelope, Route};

struct Policy;

impl DeliveryPolicy for Policy {
    fn route(recipient: String, _envelope: Envelope) -> Route {
        let lower = recipient.to_ascii_lowercase();
        let Some((local, domain)) = lower.rsplit_once('@') else {
            return Route::reject(550, "5.1.3", "bad recipient address syntax");
        };
        if domain != "example.org" {
            return Route::Relay;
        }
        match local {
            "postmaster" => Route::local(["alice@example.org"]),
            "sales" => Route::local(["alice@example.org", "bob@example.org"]),
            "alice" | "bob" => Route::local([lower.as_str()]),
            _ => Route::reject(550, "5.1.1", "no such user here"),
        }
    }
}

wasmail_plugin_sdk::export!(Policy: DeliveryPolicy);
