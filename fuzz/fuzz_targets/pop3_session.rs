//! Arbitrary bytes, cut into arbitrary pieces, through a POP3 session whose driver answers
//! every event from a fixed maildrop: no panic, bounded buffering, well-formed message
//! responses (see `wasmail_proto::pop3::fuzzing::run` for the invariants and how the first 5
//! bytes choose the configuration).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmail_proto::pop3::fuzzing::run(data);
});
