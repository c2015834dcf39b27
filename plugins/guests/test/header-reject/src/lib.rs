//! Test guest: rejects a message whose Subject contains a configured word, defers a HELO.

use wasmail_plugin_sdk::{Client, DataHook, Decision, Envelope, HeloHook, Message, config};

struct HeaderReject;

impl DataHook for HeaderReject {
    fn on_data(_envelope: Envelope, message: &Message) -> Decision {
        let word = config::get_or("word", "VIAGRA");
        if message.header("Subject").iter().any(|s| s.contains(&word)) {
            return Decision::reject(550, "5.7.1", "message refused by policy");
        }
        Decision::cont().with_header("X-Wasmail-Checked", "yes")
    }
}

impl HeloHook for HeaderReject {
    fn on_helo(_client: Client, helo: String) -> Decision {
        if helo == "defer.me" {
            return Decision::defer(451, "4.7.1", "greeting deferred");
        }
        Decision::cont()
    }
}

wasmail_plugin_sdk::export!(HeaderReject: DataHook, HeloHook);
