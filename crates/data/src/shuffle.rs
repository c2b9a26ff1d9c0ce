//! Deterministic shuffling.
//!
//! The order of the converted data set and of the training batches must never change, whatever
//! the version of a random-number crate. So this module spells out its algorithms:
//!
//! - [`SplitMix64`], Sebastiano Vigna's generator (public domain, used to seed xoshiro): a 64-bit
//!   counter advanced by the golden-ratio constant `0x9E3779B97F4A7C15`, passed through a
//!   fixed mixing function.
//! - [`shuffle`], the Fisher-Yates shuffle (Durstenfeld's version): for `i` from the last
//!   position down to 1, swap element `i` with an element drawn uniformly from `0..=i`.
//!   The draw maps a 64-bit output `x` to `(x * (i + 1)) >> 64` (Lemire's multiply-shift). Its
//!   bias, at most `(i + 1) / 2^64`, is far below anything measurable for data-set sizes.

/// The SplitMix64 pseudo-random generator. Fast, tiny, and good enough for shuffling; not
/// suitable for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator starting from `seed`. Every seed, including 0, is fine.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator for one of several independent streams derived from `seed`, such as one per
    /// epoch. Scrambling `stream` before combining it keeps the streams of `seed` and `seed + 1`
    /// (or streams `k` and `k + 1`) from being shifted copies of each other.
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        SplitMix64::new(mix(seed ^ mix(stream.wrapping_add(GOLDEN_GAMMA))))
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// A number in `0..bound` (`bound > 0`), by multiply-shift.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// The SplitMix64 output function (a variant of the MurmurHash3 finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Shuffles `items` in place with the Fisher-Yates algorithm described in the module docs.
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// The numbers `0..len` in a pseudo-random order determined by `rng`.
pub fn permutation(len: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    shuffle(&mut order, rng);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_outputs() {
        // First outputs of the reference C implementation seeded with 1234567.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        assert_eq!(rng.next_u64(), 9817491932198370423);
    }

    #[test]
    fn permutation_holds_every_index_once() {
        let mut order = permutation(1000, &mut SplitMix64::new(7));
        assert_ne!(order, (0..1000).collect::<Vec<_>>());
        order.sort_unstable();
        assert_eq!(order, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(3);
        for bound in [1, 2, 3, 10, 60000] {
            for _ in 0..1000 {
                assert!(rng.below(bound) < bound);
            }
        }
    }
}
