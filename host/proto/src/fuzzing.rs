//! What the protocols' fuzz drivers (`smtp::fuzzing`, `pop3::fuzzing`) share: the xorshift
//! generators, the cutting of a client stream into reads, and the generator of pseudo-random
//! client streams from protocol tokens. Deterministic, dependency-free, not cryptographic.

/// Marsaglia's xorshift32 (13, 17, 5): cheap pseudo-random numbers from a small seed.
#[derive(Clone, Debug)]
pub struct Xorshift32(u32);

impl Xorshift32 {
    /// A generator from `seed` (made odd, so never the all-zero state).
    pub fn new(seed: u32) -> Xorshift32 {
        Xorshift32(seed | 1)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Marsaglia's xorshift64 (13, 7, 17).
#[derive(Clone, Debug)]
pub struct Xorshift64(u64);

impl Xorshift64 {
    /// A generator from `seed`, spread by the golden ratio so neighbouring seeds diverge.
    pub fn new(seed: u64) -> Xorshift64 {
        Xorshift64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`: `next_u64() % n` (slightly biased, which tests don't mind). `n`
    /// must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The sizes of the reads a client stream arrives in: 1..=700 octets each.
#[derive(Clone, Debug)]
pub struct Reads(Xorshift32);

impl Reads {
    /// Read sizes seeded by two input bytes.
    pub fn new(high: u8, low: u8) -> Reads {
        Reads(Xorshift32::new(u32::from(high) << 8 | u32::from(low)))
    }

    /// The next piece of `stream` after the first `fed` octets (empty at the end).
    pub fn next_piece<'a>(&mut self, stream: &'a [u8], fed: usize) -> &'a [u8] {
        let piece = 1 + (self.0.next_u32() as usize % 700);
        let end = fed.saturating_add(piece).min(stream.len());
        stream.get(fed..end).unwrap_or_default()
    }
}

/// A fuzz input as the drivers read it: `header` configuration bytes (byte 0 the flags, bytes
/// 2 and 3 the seed of the reads), then the client's stream, fed in [`Reads`] under a step
/// budget that catches a session making no progress.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
    stream: &'a [u8],
    reads: Reads,
    fed: usize,
    steps: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8], header: usize) -> Input<'a> {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        Input {
            data,
            stream: data.get(header..).unwrap_or_default(),
            reads: Reads::new(byte(2), byte(3)),
            fed: 0,
            steps: 0,
        }
    }

    /// Configuration byte `i` (0 past the end).
    pub fn byte(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    /// Bit `bit` of byte 0.
    pub fn flag(&self, bit: u8) -> bool {
        self.byte(0) & (1 << bit) != 0
    }

    /// Counts a call of the session's `next`; panics after 64 per octet of stream (and 64 *
    /// 64 more): no input may keep a session busy without progress.
    pub fn step(&mut self) {
        self.steps += 1;
        assert!(self.steps < 64 * (self.stream.len() + 64), "no progress");
    }

    /// The next read of the stream, None once all of it was fed.
    pub fn next_read(&mut self) -> Option<&'a [u8]> {
        let piece = self.reads.next_piece(self.stream, self.fed);
        self.fed += piece.len();
        (!piece.is_empty()).then_some(piece)
    }
}

/// A pseudo-random client stream from `seed`: `header` random octets (the fuzz drivers read
/// their configuration there), then up to 39 pieces, each a token, a few random octets, or
/// (rarely) a long run of `x` that overflows any command line.
pub fn generate(seed: u64, header: usize, tokens: &[&[u8]]) -> Vec<u8> {
    let mut rng = Xorshift64::new(seed);
    let mut rand = move || rng.next_u64();
    let mut out: Vec<u8> = (0..header).map(|_| rand() as u8).collect();
    let pieces = rand() % 40;
    for _ in 0..pieces {
        match rand() % 10 {
            0 => {
                let n = rand() % 16;
                out.extend((0..n).map(|_| rand() as u8));
            }
            1 if rand() % 8 == 0 => {
                let n = 400 + rand() % 3000;
                out.extend(std::iter::repeat_n(b'x', n as usize));
            }
            _ if tokens.is_empty() => {}
            _ => {
                let i = (rand() % tokens.len() as u64) as usize;
                out.extend_from_slice(tokens.get(i).copied().unwrap_or_default());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_never_stuck_at_zero() {
        let mut a = Xorshift32::new(0);
        assert_ne!(a.next_u32(), 0);
        let mut b = Xorshift64::new(0);
        assert_ne!(b.next_u64(), 0);
        assert_eq!(
            generate(42, 4, &[b"A", b"B"]),
            generate(42, 4, &[b"A", b"B"])
        );
        assert!(generate(42, 4, &[]).len() >= 4);
    }

    #[test]
    fn reads_cover_the_stream_in_order() {
        let stream: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut reads = Reads::new(1, 2);
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            let piece = reads.next_piece(&stream, fed);
            if piece.is_empty() {
                break;
            }
            assert!(piece.len() <= 700);
            out.extend_from_slice(piece);
            fed += piece.len();
        }
        assert_eq!(out, stream);
    }
}
