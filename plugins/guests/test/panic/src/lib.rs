//! Test guest: the data hook panics. On wasm32-wasip2 a panic prints its message to stderr and
//! then traps (`unreachable`); the host must survive and apply the plugin's `on_error` action.

use wasmail_plugin_sdk::{DataHook, Decision, Envelope, Message};

struct Panic;

impl DataHook for Panic {
    fn on_data(envelope: Envelope, _message: &Message) -> Decision {
        panic!(
            "test-panic: deliberate panic in on-data ({} recipients)",
            envelope.rcpt_to.len()
        );
    }
}

wasmail_plugin_sdk::export!(Panic: DataHook);
