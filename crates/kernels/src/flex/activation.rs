//! The activations over whole slices, in branch-free loops that the compiler turns into SIMD
//! code. `f32::exp` and `f32::tanh` are calls into libm for every value, which no loop around
//! them can vectorise; SiLU and tanh therefore use [`exp`] and [`tanh`] below, Cephes'
//! polynomials, within a few ulp of libm's (no crate offers vectorisable f32 versions on stable
//! Rust).

use super::simd::widest;
use crate::Activation;

/// `e^x` for f32, as Cephes' `expf` computes it: `n = round(x log₂e)`, `r = x − n ln 2` with
/// ln 2 split in two constants so that `r` is exact, `e^r` from a minimax polynomial on
/// |r| ≤ ln 2 / 2, times `2^n` built from its exponent bits. Inputs are clamped to [-87, 88],
/// where the result stays a normal float. Every step is plain float or integer arithmetic on
/// bits (no float-to-int cast, which the vectoriser leaves scalar), so loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Adding 1.5 · 2^23 rounds to the nearest integer n, which then sits in the low mantissa
    // bits: the float's bits are those of 1.5 · 2^23 plus n.
    const ROUND: f32 = 12_582_912.0;
    const ROUND_BITS: u32 = 0x4B40_0000;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2^n: the biased exponent n + 127 in the exponent field.
    let biased = shifted.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127);
    let two_to_n = f32::from_bits(biased << 23);
    e_r * two_to_n
}

/// `tanh x` for f32, as Cephes' `tanhf` computes it: for |x| ≤ 0.625 the odd minimax polynomial
/// `x + x³ P(x²)`, above it `1 − 2 / (e^{2|x|} + 1)` with the sign of `x` (no cancellation
/// there, since the result is above 0.55). Both are computed and one is selected, so that loops
/// over it vectorise; beyond |x| = 44 the clamped exponential gives exactly ±1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let magnitude = x.abs();
    let large = (1.0 - 2.0 / (exp(2.0 * magnitude) + 1.0)).copysign(x);
    let z = x * x;
    let p = -5.704_988_7e-3;
    let p = p * z + 2.063_909e-2;
    let p = p * z - 5.373_971_6e-2;
    let p = p * z + 1.333_144_2e-1;
    let p = p * z - 3.333_328e-1;
    let small = p * z * x + x;
    if magnitude > 0.625 { large } else { small }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `z ← act(z)` for every value.
#[inline(always)]
pub fn apply(activation: Activation, values: &mut [f32]) {
    widest! { apply_here(activation, values) }
}

#[inline(always)]
fn apply_here(activation: Activation, values: &mut [f32]) {
    match activation {
        Activation::Identity => {}
        Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::LeakyRelu(slope) => {
            let slope = slope as f32;
            values
                .iter_mut()
                .for_each(|v| *v = if *v > 0.0 { *v } else { *v * slope });
        }
        Activation::Silu => values.iter_mut().for_each(|v| *v *= sigmoid(*v)),
        Activation::Tanh => values.iter_mut().for_each(|v| *v = tanh(*v)),
    }
}

/// `z ← grad · act'(z)` for every value: the gradient at the pre-activation `z`.
#[inline(always)]
pub fn backward(activation: Activation, values: &mut [f32], grad: &[f32]) {
    widest! { backward_here(activation, values, grad) }
}

#[inline(always)]
fn backward_here(activation: Activation, values: &mut [f32], grad: &[f32]) {
    let pairs = values.iter_mut().zip(grad);
    match activation {
        Activation::Identity => values.copy_from_slice(grad),
        Activation::Relu => pairs.for_each(|(z, g)| *z = if *z > 0.0 { *g } else { 0.0 }),
        Activation::LeakyRelu(slope) => {
            let slope = slope as f32;
            pairs.for_each(|(z, g)| *z = if *z > 0.0 { *g } else { *g * slope });
        }
        Activation::Silu => pairs.for_each(|(z, g)| {
            let s = sigmoid(*z);
            *z = g * s * (1.0 + *z * (1.0 - s));
        }),
        Activation::Tanh => pairs.for_each(|(z, g)| {
            let t = tanh(*z);
            *z = g * (1.0 - t * t);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0.0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (ours, libm) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max((ours - libm).abs() / libm);
        }
        assert!(worst < 5e-7, "worst relative error {worst:.2e}");
    }

    /// Within 3e-7 of libm's (f64) relative to it, from 1e-30 through the switch between the two
    /// forms at 0.625 to where tanh is 1 in f32, on both signs.
    #[test]
    fn tanh_matches_libm() {
        let mut worst = 0.0f64;
        let tiny = (0..300).map(|i| 1e-30f32 * 1.25f32.powi(i));
        let grid = (0..=5000).map(|i| i as f32 / 100.0);
        let near_switch = (-100..=100).map(|i| 0.625 + i as f32 * 1e-5);
        for x in tiny.chain(grid).chain(near_switch) {
            for x in [x, -x] {
                let (ours, libm) = (tanh(x) as f64, (x as f64).tanh());
                let error = if libm == 0.0 {
                    ours.abs()
                } else {
                    ((ours - libm) / libm).abs()
                };
                worst = worst.max(error);
            }
        }
        assert!(worst < 3e-7, "worst relative error {worst:.2e}");
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    #[test]
    fn slices_match_the_scalar_definitions() {
        let z: Vec<f32> = (0..200).map(|i| (i as f32 - 100.0) / 9.0).collect();
        let grad: Vec<f32> = (0..200)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0)
            .collect();
        for activation in [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::Silu,
            Activation::Tanh,
        ] {
            let mut forward = z.clone();
            apply(activation, &mut forward);
            let mut backward_values = z.clone();
            backward(activation, &mut backward_values, &grad);
            for i in 0..z.len() {
                let (y, d) = (
                    activation.apply(z[i]),
                    grad[i] * activation.derivative(z[i]),
                );
                assert!(
                    (forward[i] - y).abs() <= 1e-6 * (1.0 + y.abs()),
                    "{activation:?} y"
                );
                assert!(
                    (backward_values[i] - d).abs() <= 1e-6 * (1.0 + d.abs()),
                    "{activation:?} d"
                );
            }
        }
    }
}
