//! Deriving independent, reproducible random streams from one run seed.
//!
//! A whole simulation is a pure function of its `u64` seed (TigerBeetle's VOPR rule). Every consumer of
//! randomness — the fault settings, the network, each node's election timer, each client, each disk — gets
//! its own stream derived from the run seed and a purpose label, so that adding a draw in one place never
//! shifts the draws of another (which would make a regression seed mean something else after a change).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64's finaliser: a bijective mix, so distinct inputs give distinct, well-spread outputs.
pub fn mix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// The seed of the stream named by `purpose` and `index` (e.g. `("node", 3)`) within run `run_seed`.
pub fn derive_seed(run_seed: u64, purpose: &str, index: u64) -> u64 {
    let mut value = mix64(run_seed);
    for byte in purpose.bytes() {
        value = mix64(value ^ u64::from(byte));
    }
    mix64(value ^ mix64(index))
}

/// A reproducible RNG for one purpose within one run.
pub fn derive_rng(run_seed: u64, purpose: &str, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(run_seed, purpose, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        assert_eq!(derive_seed(7, "node", 1), derive_seed(7, "node", 1));
        assert_ne!(derive_seed(7, "node", 1), derive_seed(7, "node", 2));
        assert_ne!(derive_seed(7, "node", 1), derive_seed(8, "node", 1));
        assert_ne!(derive_seed(7, "node", 1), derive_seed(7, "disk", 1));
    }
}
