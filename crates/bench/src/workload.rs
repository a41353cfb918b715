//! What each request is: which operation and which key, drawn from a seeded generator so a run's
//! requests depend only on its flags.

use crate::stats::Op;

/// xorshift64*: tiny, fast, and good enough to spread keys uniformly; not for anything secret.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator per connection: the run's seed mixed with the connection's number (never zero).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mixed = (seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Rng(mixed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..bound` (bound > 0), by multiply-shift, without modulo bias worth caring about here.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// Chooses the next request of one connection.
#[derive(Clone, Debug)]
pub struct Chooser {
    rng: Rng,
    get_percent: u32,
    keyspace: u64,
}

impl Chooser {
    pub fn new(seed: u64, stream: u64, get_percent: u32, keyspace: u64) -> Chooser {
        assert!(keyspace > 0 && get_percent <= 100, "validated by BenchArgs::validate");
        Chooser { rng: Rng::new(seed, stream), get_percent, keyspace }
    }

    /// The next operation and the number of its key.
    pub fn next(&mut self) -> (Op, u64) {
        let op = if (self.rng.below(100) as u32) < self.get_percent { Op::Get } else { Op::Set };
        (op, self.rng.below(self.keyspace))
    }
}

/// Keys have one fixed width so every request of a run has the same size: `key:0000000042`.
pub fn key_name(number: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    write!(out, "key:{number:010}").expect("writing to a Vec cannot fail");
}

/// The value every write sends: `size` bytes of 'x'.
pub fn value_of_size(size: usize) -> bytes::Bytes {
    bytes::Bytes::from(vec![b'x'; size])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_stream_give_the_same_requests() {
        let draw = |seed, stream| {
            let mut chooser = Chooser::new(seed, stream, 50, 1000);
            (0..100).map(|_| chooser.next()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(7, 4), "connections draw different keys");
    }

    #[test]
    fn keys_stay_in_the_keyspace_and_reads_follow_the_percentage() {
        let mut chooser = Chooser::new(1, 0, 30, 10);
        let draws: Vec<(Op, u64)> = (0..10_000).map(|_| chooser.next()).collect();
        assert!(draws.iter().all(|&(_, key)| key < 10));
        assert!((0..10).all(|k| draws.iter().any(|&(_, key)| key == k)), "every key is drawn");
        let gets = draws.iter().filter(|(op, _)| *op == Op::Get).count();
        assert!((2_700..3_300).contains(&gets), "about 30% reads, got {gets} of 10000");
        let mut writes_only = Chooser::new(1, 0, 0, 10);
        assert!((0..1000).all(|_| writes_only.next().0 == Op::Set));
    }

    #[test]
    fn key_names_have_one_width() {
        let mut key = Vec::new();
        key_name(42, &mut key);
        assert_eq!(key, b"key:0000000042");
        key_name(u32::MAX as u64, &mut key);
        assert_eq!(key.len(), 14);
    }
}
