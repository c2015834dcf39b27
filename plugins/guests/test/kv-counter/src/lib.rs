//! Test guest: counts each recipient in kv (`rcpt:<address>`, one-hour TTL) and defers once the
//! count exceeds config `limit` (default 3).

use wasmail_plugin_sdk::{Decision, Envelope, RcptHook, config, kv};

struct KvCounter;

impl RcptHook for KvCounter {
    fn on_rcpt(_envelope: Envelope, recipient: String) -> Decision {
        let limit = config::parse_or("limit", 3i64);
        match kv::increment(&format!("rcpt:{recipient}"), 1, Some(3600)) {
            Ok(count) if count > limit => {
                Decision::defer(451, "4.7.1", format!("too many messages for {recipient}"))
            }
            Ok(_) => Decision::cont(),
            Err(e) => Decision::defer(451, "4.3.0", format!("kv error: {e:?}")),
        }
    }
}

wasmail_plugin_sdk::export!(KvCounter: RcptHook);
