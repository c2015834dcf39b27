//! Test guest: the connect hook rejects with the host clock's value as the reply text, so a test
//! can prove the plugin sees the host's (controllable) clock.

use wasmail_plugin_sdk::{Client, ConnectHook, Decision, clock};

struct Clock;

impl ConnectHook for Clock {
    fn on_connect(_client: Client) -> Decision {
        Decision::reject(554, "5.7.1", clock::now_millis().to_string())
    }
}

wasmail_plugin_sdk::export!(Clock: ConnectHook);
