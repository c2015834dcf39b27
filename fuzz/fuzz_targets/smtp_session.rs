//! Arbitrary bytes, cut into arbitrary pieces, through an SMTP session whose driver answers
//! every decision: no panic, bounded buffering, bounded chunks (see
//! `wasmail_proto::smtp::fuzzing::run` for the invariants and how the first 4 bytes choose the
//! configuration).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmail_proto::smtp::fuzzing::run(data);
});
