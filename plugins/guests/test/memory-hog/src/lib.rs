//! Test guest: the data hook allocates 1 MiB blocks without bound and touches every page, so the
//! memory is really committed; only the host's memory limit stops it (a trap on failed growth).

use std::hint::black_box;

use wasmail_plugin_sdk::{DataHook, Decision, Envelope, Message};

struct MemoryHog;

const BLOCK: usize = 1024 * 1024;

impl DataHook for MemoryHog {
    fn on_data(_envelope: Envelope, _message: &Message) -> Decision {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = vec![0u8; BLOCK];
            for (i, page) in block.chunks_mut(4096).enumerate() {
                page[0] = i as u8;
            }
            blocks.push(black_box(block));
            if black_box(blocks.len()) == usize::MAX {
                return Decision::cont();
            }
        }
    }
}

wasmail_plugin_sdk::export!(MemoryHog: DataHook);
