//! Test guest: reads the whole message through `message.read` in 64 KiB chunks and reports its
//! FNV-1a 64 hash and size in headers `X-Body-Hash` (16 lowercase hex digits) and `X-Body-Size`.

use wasmail_plugin_sdk::{DataHook, Decision, Envelope, Message};

struct ReadBody;

const CHUNK: u32 = 64 * 1024;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl DataHook for ReadBody {
    fn on_data(_envelope: Envelope, message: &Message) -> Decision {
        let mut hash = FNV_OFFSET;
        let mut reader = message.reader(CHUNK);
        loop {
            let chunk = reader.next_chunk();
            if chunk.is_empty() {
                break;
            }
            for byte in chunk {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(FNV_PRIME);
            }
        }
        Decision::cont()
            .with_header("X-Body-Hash", format!("{hash:016x}"))
            .with_header("X-Body-Size", reader.position().to_string())
    }
}

wasmail_plugin_sdk::export!(ReadBody: DataHook);
