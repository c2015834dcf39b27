//! Test guest: the data hook never returns. It spins on the host clock so the loop has an
//! observable effect and cannot be optimised away; only the host's epoch deadline stops it.

use wasmail_plugin_sdk::{DataHook, Decision, Envelope, Message, clock};

struct Loop;

impl DataHook for Loop {
    fn on_data(_envelope: Envelope, _message: &Message) -> Decision {
        let start = clock::now_millis();
        loop {
            // A clock that goes backwards by more than a day is the only way out, and never
            // happens; the call keeps the loop alive through any optimisation.
            if clock::now_millis().wrapping_add(86_400_000) < start {
                return Decision::cont();
            }
        }
    }
}

wasmail_plugin_sdk::export!(Loop: DataHook);
