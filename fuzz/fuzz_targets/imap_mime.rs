//! See `wasmail_proto::imap::fuzzing::mime` for what this target checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmail_proto::imap::fuzzing::mime(data);
});
