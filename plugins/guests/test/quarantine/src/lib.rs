//! Test guest: quarantines into "Junk" every message larger than config `max` (default 1000).

use wasmail_plugin_sdk::{DataHook, Decision, Envelope, Message, config};

struct Quarantine;

impl DataHook for Quarantine {
    fn on_data(_envelope: Envelope, message: &Message) -> Decision {
        if message.size() > config::parse_or("max", 1000u64) {
            Decision::quarantine("Junk")
        } else {
            Decision::cont()
        }
    }
}

wasmail_plugin_sdk::export!(Quarantine: DataHook);
