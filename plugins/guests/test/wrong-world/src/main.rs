//! Test guest: a plain WASI command (`wasi:cli/run`), a valid component that exports no wasmail
//! interface. The host must refuse to load it as a plugin.

fn main() {
    println!("I am a command, not a wasmail plugin");
}
