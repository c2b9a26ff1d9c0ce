//! Batch and group normalisation in training mode, fused with the activation after them, for
//! contiguous f32 data of shape `[batch, channels, spatial]` (`spatial` = 1 after a linear layer).
//!
//! Both normalise `x` with the mean μ and biased variance σ² of a set of values, then apply a
//! per-channel affine map and the activation: `z = γ_c (x − μ) / √(σ² + ε) + β_c`, `y = act(z)`.
//! BatchNorm (Ioffe & Szegedy, 2015) takes the statistics per channel over the batch and the
//! spatial axes; GroupNorm (Wu & He, 2018) per sample over a group of channels and the spatial
//! axes.
//!
//! Backward, with `x̂ = (x − μ) / √(σ² + ε)`, `g = dy · act'(z)` and `h = γ g`, the means taken
//! over each normalised set of M values:
//! `dβ_c = Σ g`, `dγ_c = Σ g x̂`, `dx = (h − mean(h) − x̂ · mean(h x̂)) / √(σ² + ε)`.
//! `z` is recomputed from `x` (one multiply-add) rather than stored.
//!
//! Sums are taken in f64 over a fixed partition of the data and reduced in a fixed order, so
//! results do not depend on how rayon schedules the work.

use rayon::prelude::*;

use super::activation as act;
use super::filled_in_parallel;
use super::simd::widest;
use crate::Activation;

/// Partial sums per BatchNorm statistic: enough groups to keep both cores busy, few enough that
/// the partial vectors stay small.
const GROUPS: usize = 8;

/// Shape of the data: `[batch, channels, spatial]`.
#[derive(Debug, Clone, Copy)]
pub struct NormShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
}

/// What a normalisation does after taking its statistics: the per-channel scale γ and shift β,
/// the ε added to the variance, and the activation.
#[derive(Debug, Clone, Copy)]
pub struct NormParams<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub epsilon: f64,
    pub activation: Activation,
}

impl NormShape {
    fn sample_len(&self) -> usize {
        self.channels * self.spatial
    }

    fn len(&self) -> usize {
        self.batch * self.sample_len()
    }
}

/// `(Σ a, Σ a·b)` over two equally long slices, in eight f32 lanes reduced in f64: a loop the
/// compiler vectorises, with partial sums short enough to stay exact to f32 rounding.
#[inline(always)]
fn sum_and_dot(a: &[f32], b: &[f32]) -> (f64, f64) {
    const LANES: usize = 8;
    let (mut sum, mut dot) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (mut total, mut total_dot) = (0.0f64, 0.0f64);
    for (block_a, block_b) in a.chunks(LANES * 64).zip(b.chunks(LANES * 64)) {
        let (ca, cb) = (block_a.chunks_exact(LANES), block_b.chunks_exact(LANES));
        let (rest_a, rest_b) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for lane in 0..LANES {
                sum[lane] += x[lane];
                dot[lane] += x[lane] * y[lane];
            }
        }
        for (x, y) in rest_a.iter().zip(rest_b) {
            total += *x as f64;
            total_dot += *x as f64 * *y as f64;
        }
        for lane in 0..LANES {
            total += sum[lane] as f64;
            total_dot += dot[lane] as f64;
        }
        sum = [0.0; LANES];
        dot = [0.0; LANES];
    }
    (total, total_dot)
}

/// Per-channel `(Σ a, Σ a·b)` over the batch and spatial axes of two `[batch, channels,
/// spatial]` arrays; in a fixed order whatever the scheduling.
fn channel_sums(shape: NormShape, a: &[f32], b: &[f32]) -> [Vec<f64>; 2] {
    let NormShape {
        batch,
        channels,
        spatial,
    } = shape;
    let per_group = batch.div_ceil(GROUPS).max(1);
    let partials: Vec<Vec<f64>> = (0..batch.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            widest! {
                let mut acc = vec![0.0f64; 2 * channels];
                let (first, second) = acc.split_at_mut(channels);
                for n in group * per_group..((group + 1) * per_group).min(batch) {
                    let row = n * channels * spatial..(n + 1) * channels * spatial;
                    let (a, b) = (&a[row.clone()], &b[row]);
                    if spatial == 1 {
                        // After a linear layer: one value per channel, a contiguous row per sample.
                        for c in 0..channels {
                            first[c] += a[c] as f64;
                            second[c] += a[c] as f64 * b[c] as f64;
                        }
                        continue;
                    }
                    for c in 0..channels {
                        let range = c * spatial..(c + 1) * spatial;
                        let (sa, sab) = sum_and_dot(&a[range.clone()], &b[range]);
                        first[c] += sa;
                        second[c] += sab;
                    }
                }
                acc
            }
        })
        .collect();
    let mut sums = [vec![0.0f64; channels], vec![0.0f64; channels]];
    for partial in &partials {
        for c in 0..channels {
            sums[0][c] += partial[c];
            sums[1][c] += partial[channels + c];
        }
    }
    sums
}

/// Per-channel `Σ a` over the batch and spatial axes of a `[batch, channels, spatial]` array.
pub fn channel_totals(shape: NormShape, a: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), shape.len(), "array size");
    to_f32(&channel_sums(shape, a, a)[0])
}

fn to_f32(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

/// BatchNorm forward: `(y, batch mean, biased batch variance)` per channel.
pub fn batch_norm_forward(
    x: &[f32],
    shape: NormShape,
    params: NormParams,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len(), "input size");
    let [sum, sum_sq] = channel_sums(shape, x, x);
    let count = (shape.batch * shape.spatial) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let variance: Vec<f64> = sum_sq
        .iter()
        .zip(&mean)
        .map(|(s, m)| (s / count - m * m).max(0.0))
        .collect();
    let affine = per_channel_affine(params, &mean, &variance);
    let spatial = shape.spatial;
    let (y, _) = filled_in_parallel(x.len(), shape.sample_len(), |index, out| {
        let sample = &x[index * shape.sample_len()..][..shape.sample_len()];
        widest! {
            pre_activation(out, sample, &affine, spatial);
            act::apply(params.activation, out);
        }
    });
    (y, to_f32(&mean), to_f32(&variance))
}

/// `out = a_c x + b_c` over one sample `[channels, spatial]`.
#[inline(always)]
fn pre_activation(out: &mut [f32], sample: &[f32], affine: &[(f32, f32)], spatial: usize) {
    if spatial == 1 {
        for ((o, v), &(a, b)) in out.iter_mut().zip(sample).zip(affine) {
            *o = v * a + b;
        }
        return;
    }
    for (c, &(a, b)) in affine.iter().enumerate() {
        let range = c * spatial..(c + 1) * spatial;
        for (o, v) in out[range.clone()].iter_mut().zip(&sample[range]) {
            *o = v * a + b;
        }
    }
}

/// `z = a_c x + b_c` with `a = γ / √(σ² + ε)` and `b = β − μ a`, per channel.
fn per_channel_affine(params: NormParams, mean: &[f64], variance: &[f64]) -> Vec<(f32, f32)> {
    (0..params.gamma.len())
        .map(|c| {
            let a = params.gamma[c] as f64 / (variance[c] + params.epsilon).sqrt();
            (a as f32, (params.beta[c] as f64 - mean[c] * a) as f32)
        })
        .collect()
}

/// BatchNorm backward: `(dx, dγ, dβ)` from the input, the parameters, the statistics the forward
/// pass returned and the output gradient.
pub fn batch_norm_backward(
    x: &[f32],
    shape: NormShape,
    params: NormParams,
    (mean, variance): (&[f32], &[f32]),
    output_grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let channels = shape.channels;
    assert_eq!(x.len(), shape.len(), "input size");
    assert_eq!(output_grad.len(), shape.len(), "gradient size");
    let mean64: Vec<f64> = mean.iter().map(|&m| m as f64).collect();
    let var64: Vec<f64> = variance.iter().map(|&v| v as f64).collect();
    let affine = per_channel_affine(params, &mean64, &var64);
    let spatial = shape.spatial;
    // g = dy · act'(z), written where dx will go.
    let (mut dx, _) = filled_in_parallel(x.len(), shape.sample_len(), |index, g| {
        let sample = &x[index * shape.sample_len()..][..shape.sample_len()];
        let dy = &output_grad[index * shape.sample_len()..][..shape.sample_len()];
        widest! {
            pre_activation(g, sample, &affine, spatial);
            act::backward(params.activation, g, dy);
        }
    });
    // Σg and Σg·x per channel; then Σg·x̂ = (Σg·x − μ Σg) / σ.
    let [sum_g, sum_gx] = channel_sums(shape, &dx, x);
    let inv_std: Vec<f64> = var64
        .iter()
        .map(|v| 1.0 / (v + params.epsilon).sqrt())
        .collect();
    let gamma_grad: Vec<f64> = (0..channels)
        .map(|c| (sum_gx[c] - mean64[c] * sum_g[c]) * inv_std[c])
        .collect();
    let count = (shape.batch * shape.spatial) as f64;
    // dx = p·g + q·x + r per channel, with p = γ/σ, q = −p·dγ/(M σ), r = −p·dβ/M − q·μ.
    let coefficients: Vec<[f32; 3]> = (0..channels)
        .map(|c| {
            let p = params.gamma[c] as f64 * inv_std[c];
            let q = -p * gamma_grad[c] * inv_std[c] / count;
            let r = -p * sum_g[c] / count - q * mean64[c];
            [p as f32, q as f32, r as f32]
        })
        .collect();
    dx.par_chunks_mut(shape.sample_len())
        .zip(x.par_chunks(shape.sample_len()))
        .for_each(|(out, sample)| {
            widest! {
                for (c, &[p, q, r]) in coefficients.iter().enumerate() {
                    let range = c * spatial..(c + 1) * spatial;
                    for (o, v) in out[range.clone()].iter_mut().zip(&sample[range]) {
                        *o = p * *o + q * v + r;
                    }
                }
            }
        });
    (dx, to_f32(&gamma_grad), to_f32(&sum_g))
}

/// GroupNorm forward: `(y, mean, 1 / √(σ² + ε))`, the statistics per `[sample, group]`.
pub fn group_norm_forward(
    x: &[f32],
    shape: NormShape,
    groups: usize,
    params: NormParams,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len(), "input size");
    assert_eq!(shape.channels % groups, 0, "channels split into groups");
    let per_group = shape.channels / groups;
    let group_len = per_group * shape.spatial;
    let (y, stats) = filled_in_parallel(x.len(), group_len, |index, out| {
        let values = &x[index * group_len..][..group_len];
        widest! {
            // Σx and Σx², then the variance with the mean removed in f64.
            let (sum, sum_sq) = sum_and_dot(values, values);
            let mean = sum / group_len as f64;
            let variance = (sum_sq / group_len as f64 - mean * mean).max(0.0);
            let inv_std = 1.0 / (variance + params.epsilon).sqrt();
            let first_channel = (index % groups) * per_group;
            group_pre_activation(out, values, params, first_channel, (mean, inv_std), shape.spatial);
            act::apply(params.activation, out);
            (mean as f32, inv_std as f32)
        }
    });
    let (mean, inv_std) = stats.into_iter().unzip();
    (y, mean, inv_std)
}

/// `out = a_c x + b_c` over the channels of one group (`values`, `[channels of the group,
/// spatial]`, the first being `first_channel`), with `a = γ / √(σ² + ε)` and `b = β − μ a` from the
/// group's `(μ, 1 / √(σ² + ε))`.
#[inline(always)]
fn group_pre_activation(
    out: &mut [f32],
    values: &[f32],
    params: NormParams,
    first_channel: usize,
    (mean, inv_std): (f64, f64),
    spatial: usize,
) {
    let (gamma, beta) = (
        &params.gamma[first_channel..],
        &params.beta[first_channel..],
    );
    for (k, (out, values)) in out
        .chunks_mut(spatial)
        .zip(values.chunks(spatial))
        .enumerate()
    {
        let a = (gamma[k] as f64 * inv_std) as f32;
        let b = (beta[k] as f64 - mean * gamma[k] as f64 * inv_std) as f32;
        for (o, v) in out.iter_mut().zip(values) {
            *o = v * a + b;
        }
    }
}

/// GroupNorm backward: `(dx, dγ, dβ)` from the input, the parameters, the statistics the
/// forward pass returned and the output gradient.
pub fn group_norm_backward(
    x: &[f32],
    shape: NormShape,
    groups: usize,
    params: NormParams,
    (mean, inv_std): (&[f32], &[f32]),
    output_grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), shape.len(), "input size");
    assert_eq!(output_grad.len(), shape.len(), "gradient size");
    let channels = shape.channels;
    let per_group = channels / groups;
    let spatial = shape.spatial;
    let group_len = per_group * spatial;
    // Each [sample, group] task also returns its channels' Σg and Σg·x̂, reduced in order below.
    let (dx, partials) = filled_in_parallel(x.len(), group_len, |index, out| {
        widest! {
            let (mu, rstd) = (mean[index] as f64, inv_std[index] as f64);
            let values = &x[index * group_len..][..group_len];
            let dy = &output_grad[index * group_len..][..group_len];
            let first_channel = (index % groups) * per_group;
            // g = dy · act'(z) into `out`.
            group_pre_activation(out, values, params, first_channel, (mu, rstd), spatial);
            act::backward(params.activation, out, dy);
            // Per channel Σg and Σg·x̂ = (Σg·x − μ Σg)·rstd; over the group Σh and Σh·x̂, h = γ g.
            let mut channel_sums = Vec::with_capacity(per_group);
            let (mut sum_h, mut sum_hx) = (0.0f64, 0.0f64);
            for k in 0..per_group {
                let gc = params.gamma[first_channel + k] as f64;
                let range = k * spatial..(k + 1) * spatial;
                let (sum_g, sum_gx) = sum_and_dot(&out[range.clone()], &values[range]);
                let sum_g_xhat = (sum_gx - mu * sum_g) * rstd;
                channel_sums.push((sum_g, sum_g_xhat));
                sum_h += gc * sum_g;
                sum_hx += gc * sum_g_xhat;
            }
            // dx = (h − mean(h) − x̂ mean(h x̂))·rstd = A g + B x + C per channel.
            let (mean_h, mean_hx) = (sum_h / group_len as f64, sum_hx / group_len as f64);
            let b = (-mean_hx * rstd * rstd) as f32;
            let c0 = (-rstd * mean_h + mean_hx * rstd * rstd * mu) as f32;
            for k in 0..per_group {
                let a = (params.gamma[first_channel + k] as f64 * rstd) as f32;
                let range = k * spatial..(k + 1) * spatial;
                for (o, v) in out[range.clone()].iter_mut().zip(&values[range]) {
                    *o = a * *o + b * v + c0;
                }
            }
            channel_sums
        }
    });
    let mut gamma_grad = vec![0.0f64; channels];
    let mut beta_grad = vec![0.0f64; channels];
    for (index, sums) in partials.iter().enumerate() {
        let first_channel = (index % groups) * per_group;
        for (k, &(sum_g, sum_gx)) in sums.iter().enumerate() {
            beta_grad[first_channel + k] += sum_g;
            gamma_grad[first_channel + k] += sum_gx;
        }
    }
    (dx, to_f32(&gamma_grad), to_f32(&beta_grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVATIONS: [Activation; 5] = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Silu,
        Activation::Tanh,
    ];

    fn norm_params<'a>(
        gamma: &'a [f32],
        beta: &'a [f32],
        activation: Activation,
    ) -> NormParams<'a> {
        NormParams {
            gamma,
            beta,
            epsilon: 1e-5,
            activation,
        }
    }

    fn data(shape: NormShape, seed: usize) -> Vec<f32> {
        (0..shape.len())
            .map(|i| (((i + seed) * 37 % 23) as f32 - 11.0) / 4.0)
            .collect()
    }

    /// The textbook formulas in f64 over explicit index sets: the statistics, the output and
    /// every gradient of one normalised set (`indices`, with the channel of each index).
    #[allow(clippy::too_many_arguments)]
    fn check_set(
        indices: &[(usize, usize)],
        x: &[f32],
        dy: &[f32],
        gamma: &[f32],
        beta: &[f32],
        activation: Activation,
        y: &[f32],
        dx: &[f32],
    ) {
        let eps = 1e-5;
        let m = indices.len() as f64;
        let mu = indices.iter().map(|&(i, _)| x[i] as f64).sum::<f64>() / m;
        let var = indices
            .iter()
            .map(|&(i, _)| (x[i] as f64 - mu).powi(2))
            .sum::<f64>()
            / m;
        let sd = (var + eps).sqrt();
        let xhat = |i: usize| (x[i] as f64 - mu) / sd;
        let z = |i: usize, c: usize| gamma[c] as f64 * xhat(i) + beta[c] as f64;
        let h: Vec<f64> = indices
            .iter()
            .map(|&(i, c)| {
                gamma[c] as f64 * dy[i] as f64 * activation.derivative(z(i, c) as f32) as f64
            })
            .collect();
        let mean_h = h.iter().sum::<f64>() / m;
        let mean_hx = indices
            .iter()
            .zip(&h)
            .map(|(&(i, _), h)| h * xhat(i))
            .sum::<f64>()
            / m;
        for (k, &(i, c)) in indices.iter().enumerate() {
            let expected_y = activation.apply(z(i, c) as f32) as f64;
            assert!((y[i] as f64 - expected_y).abs() < 1e-5, "y[{i}]");
            let expected = (h[k] - mean_h - xhat(i) * mean_hx) / sd;
            assert!(
                (dx[i] as f64 - expected).abs() < 1e-4 * (1.0 + expected.abs()),
                "dx[{i}]"
            );
        }
    }

    #[test]
    fn batch_norm_matches_the_formulas() {
        let shape = NormShape {
            batch: 5,
            channels: 3,
            spatial: 4,
        };
        let (x, dy) = (data(shape, 0), data(shape, 7));
        let gamma = [0.5f32, 1.5, -2.0];
        let beta = [0.1f32, -0.3, 0.7];
        for activation in ACTIVATIONS {
            let params = norm_params(&gamma, &beta, activation);
            let (y, mean, var) = batch_norm_forward(&x, shape, params);
            let (dx, dgamma, dbeta) = batch_norm_backward(&x, shape, params, (&mean, &var), &dy);
            for c in 0..shape.channels {
                let indices: Vec<(usize, usize)> = (0..shape.batch)
                    .flat_map(|n| (0..shape.spatial).map(move |s| ((n * 3 + c) * 4 + s, c)))
                    .collect();
                check_set(&indices, &x, &dy, &gamma, &beta, activation, &y, &dx);
                let sd = (var[c] as f64 + 1e-5).sqrt();
                let (mut db, mut dg) = (0.0f64, 0.0f64);
                for &(i, _) in &indices {
                    let xhat = (x[i] as f64 - mean[c] as f64) / sd;
                    let z = gamma[c] as f64 * xhat + beta[c] as f64;
                    let g = dy[i] as f64 * activation.derivative(z as f32) as f64;
                    db += g;
                    dg += g * xhat;
                }
                assert!(
                    (dbeta[c] as f64 - db).abs() < 1e-4 && (dgamma[c] as f64 - dg).abs() < 1e-4
                );
            }
        }
    }

    #[test]
    fn group_norm_matches_the_formulas() {
        let shape = NormShape {
            batch: 2,
            channels: 6,
            spatial: 5,
        };
        let groups = 3;
        let (x, dy) = (data(shape, 3), data(shape, 11));
        let gamma = [0.5f32, 1.5, -2.0, 1.0, 0.8, -0.4];
        let beta = [0.1f32, -0.3, 0.7, 0.0, 0.2, 0.5];
        for activation in ACTIVATIONS {
            let params = norm_params(&gamma, &beta, activation);
            let (y, mean, inv_std) = group_norm_forward(&x, shape, groups, params);
            let (dx, dgamma, _) =
                group_norm_backward(&x, shape, groups, params, (&mean, &inv_std), &dy);
            for n in 0..shape.batch {
                for g in 0..groups {
                    let indices: Vec<(usize, usize)> = (2 * g..2 * g + 2)
                        .flat_map(|c| (0..5).map(move |s| ((n * 6 + c) * 5 + s, c)))
                        .collect();
                    check_set(&indices, &x, &dy, &gamma, &beta, activation, &y, &dx);
                }
            }
            // dγ_c sums g·x̂ over both samples.
            let c = 3;
            let mut expected = 0.0f64;
            for n in 0..shape.batch {
                let index = n * groups + c / 2;
                for s in 0..5 {
                    let i = (n * 6 + c) * 5 + s;
                    let xhat = (x[i] - mean[index]) as f64 * inv_std[index] as f64;
                    let z = gamma[c] as f64 * xhat + beta[c] as f64;
                    expected += dy[i] as f64 * activation.derivative(z as f32) as f64 * xhat;
                }
            }
            assert!((dgamma[c] as f64 - expected).abs() < 1e-4);
        }
    }
}
