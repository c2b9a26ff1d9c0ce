//! Fast differentiable operations for genmodels, as a burn backend extension.
//!
//! burn's CPU backend (flex) computes a convolution's gradients through burn's generic
//! definitions (a second convolution over batch/channel-swapped copies for the weight gradient,
//! a transposed convolution for the input gradient) and BatchNorm's statistics and gradients
//! through about a dozen separate tensor passes. This crate gives each of those one kernel:
//!
//! - [`conv2d`] and [`conv_transpose2d`]: forward pass, input gradient and weight gradient each
//!   as one register-blocked AVX-512 loop over the shifted padded images (rows of pixels or
//!   channels-last pixels to a vector), or as GEMMs over them ([`flex::shifted`]), as one GEMM
//!   over a channels-last patch matrix
//!   ([`flex::channels_last`]) or over classic unfolded patches ([`flex::conv`], which has the
//!   algebra and picks the form);
//! - [`matmul`] and [`linear`]: the matrix product and its two gradients as one GEMM each, on
//!   the GEMM the convolutions use;
//! - [`activate`]: ReLU, LeakyReLU, SiLU and tanh in one pass each way;
//! - [`batch_norm_train`] and [`group_norm`]: the normalisation fused with the activation after
//!   it (ReLU, LeakyReLU, SiLU), one pass for the statistics and one for the output, the same
//!   backward ([`flex::norm`]);
//! - [`adam_step`]: Adam's update of a parameter and its two moments in one pass (burn's Adam
//!   takes a dozen, each allocating).
//!
//! On CubeCL's runtimes (wgpu; cuda and rocm where they build) the normalisations and Adam's step
//! are CubeCL kernels of their own ([`cube`]: a cube per row of statistics), and everything else
//! is burn's autotuned, fused kernels. On every other backend (ndarray) the same functions run
//! burn's own ops, so a network computes the same numbers everywhere. On an autodiff device each function is one node
//! of the graph with a hand-written backward pass that calls the inner backend's gradient
//! kernels. [`nn`] applies them to burn's `Linear`, `Conv2d`, `ConvTranspose2d`, `BatchNorm` and
//! `GroupNorm` modules, so that networks keep their modules (and their records) and only change
//! the call.

mod backend;
pub mod cube;
mod fallback;
pub mod flex;
pub mod nn;

use burn::backend::Dispatch;
use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

pub use backend::{
    AdamStep, AdamUpdate, ConvKind, ConvOperand, Convolution, KernelBackend, MatrixProduct,
    NormKind, NormStats, Normalization,
};

/// The activation fused into [`batch_norm_train`] and [`group_norm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// No activation.
    Identity,
    /// `max(z, 0)`.
    Relu,
    /// `z` for `z > 0`, `slope · z` otherwise.
    LeakyRelu(f64),
    /// `z · σ(z)` (SiLU, or swish).
    Silu,
    /// `tanh(z)`, the DCGAN generators' last activation.
    Tanh,
}

impl Activation {
    /// `act(z)`.
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Self::Identity => z,
            Self::Relu => z.max(0.0),
            Self::LeakyRelu(slope) => {
                if z > 0.0 {
                    z
                } else {
                    z * slope as f32
                }
            }
            Self::Silu => z / (1.0 + (-z).exp()),
            Self::Tanh => z.tanh(),
        }
    }

    /// `act'(z)`; at the kink of ReLU and LeakyReLU (z = 0) the left derivative, as burn takes it.
    pub fn derivative(self, z: f32) -> f32 {
        match self {
            Self::Identity => 1.0,
            Self::Relu => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::LeakyRelu(slope) => {
                if z > 0.0 {
                    1.0
                } else {
                    slope as f32
                }
            }
            Self::Silu => {
                let s = 1.0 / (1.0 + (-z).exp());
                s * (1.0 + z * (1.0 - s))
            }
            Self::Tanh => 1.0 - z.tanh().powi(2),
        }
    }
}

/// A 2-D convolution of `x [batch, channels_in, h, w]` by `weight [channels_out, channels_in,
/// kh, kw]`, plus `bias [channels_out]`: the same function as `burn::tensor::module::conv2d`.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    convolve(x, weight, bias, ConvKind::Plain(options))
}

/// A 2-D transposed convolution of `x [batch, channels_in, h, w]` by `weight [channels_in,
/// channels_out, kh, kw]`, plus `bias [channels_out]`: the same function as
/// `burn::tensor::module::conv_transpose2d`.
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvTransposeOptions<2>,
) -> Tensor<4> {
    convolve(x, weight, bias, ConvKind::Transposed(options))
}

/// A convolution through the extension, which routes it to the tensors' backend.
fn convolve(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, kind: ConvKind) -> Tensor<4> {
    // The routing takes no optional tensors, and adding 0 changes no value: without a bias, zeros
    // as long as the output channels (the weight's first axis, its second when transposed).
    let bias = bias.unwrap_or_else(|| {
        let out_channels = match kind {
            ConvKind::Plain(_) => weight.dims()[0],
            ConvKind::Transposed(_) => weight.dims()[1],
        };
        Tensor::zeros([out_channels], &weight.device())
    });
    let conv = Convolution {
        x: x.into_dispatch(),
        weight: weight.into_dispatch(),
        kind,
    };
    Tensor::from_dispatch(Dispatch::kernel_conv(conv, bias.into_dispatch()))
}

/// `activation(x)`, element by element, with its gradient in one pass (burn's ReLU and
/// LeakyReLU take three passes each way, through a mask).
pub fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    if activation == Activation::Identity {
        return x;
    }
    Tensor::from_dispatch(Dispatch::kernel_activation(x.into_dispatch(), activation))
}

/// The matrix product `lhs [m, k] · rhs [k, n]`: the same function as `Tensor::matmul` for
/// matrices.
pub fn matmul(lhs: Tensor<2>, rhs: Tensor<2>) -> Tensor<2> {
    let product = MatrixProduct::new(lhs.into_dispatch(), rhs.into_dispatch());
    Tensor::from_dispatch(Dispatch::kernel_matmul(product))
}

/// One Adam step (Kingma & Ba, 2015, Algorithm 1) of `param` with its gradient `grad` and its
/// moments `moment_1`, `moment_2` after `step.time − 1` steps (zeros before the first), with
/// the bias corrections folded into the step size and ε as burn's Adam does:
///
/// ```text
/// g  = grad + λ·param                      (λ: step.weight_decay, the L2 penalty)
/// m  = β₁·m + (1 − β₁)·g
/// v  = β₂·v + (1 − β₂)·g²
/// param − lr · m · c / (√v + ε·√(1 − β₂ᵗ)),   c = √(1 − β₂ᵗ) / (1 − β₁ᵗ)
/// ```
///
/// Returns the parameter and the two moments. Not differentiable: an optimizer's step.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (param, moment_1, moment_2) = Dispatch::kernel_adam_step(AdamUpdate {
        param: param.into_dispatch(),
        grad: grad.into_dispatch(),
        moment_1: moment_1.into_dispatch(),
        moment_2: moment_2.into_dispatch(),
        step,
    });
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(moment_1),
        Tensor::from_dispatch(moment_2),
    )
}

/// `x [..., d_in] · weight [d_in, d_out] + bias [d_out]`: the same function as
/// `burn::tensor::module::linear`, every leading axis of `x` taken as rows of one product.
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let d_out = weight.dims()[1];
    let rows = x.shape().num_elements() / d_in.max(1);
    let y = matmul(x.reshape([rows, d_in]), weight); // [rows, d_out]
    let y = match bias {
        Some(bias) => y + bias.unsqueeze::<2>(), // [rows, d_out]
        None => y,
    };
    dims[D - 1] = d_out;
    y.reshape(dims) // [..., d_out]
}

/// What [`batch_norm_train`] returns.
#[derive(Debug, Clone)]
pub struct BatchNormTrain<const D: usize> {
    /// `activation(γ (x − μ) / √(σ² + ε) + β)`.
    pub output: Tensor<D>,
    /// The batch mean per channel, μ.
    pub mean: Tensor<1>,
    /// The biased batch variance per channel, σ².
    pub variance: Tensor<1>,
}

/// What [`group_norm`] returns.
#[derive(Debug, Clone)]
pub struct GroupNormOutput<const D: usize> {
    /// `activation(γ (x − μ) / √(σ² + ε) + β)`.
    pub output: Tensor<D>,
    /// The mean per `[batch, groups]`.
    pub mean: Tensor<2>,
    /// `1 / √(σ² + ε)` per `[batch, groups]`.
    pub inv_std: Tensor<2>,
}

/// Batch normalisation of `x [batch, channels, ...]` with the statistics of the batch, followed
/// by `activation`: `activation(γ (x − μ) / √(σ² + ε) + β)` with μ and σ² (biased) taken per
/// channel over the batch and every other axis. Differentiable in `x`, `gamma` and `beta`.
pub fn batch_norm_train<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    activation: Activation,
) -> BatchNormTrain<D> {
    let (output, mean, variance) =
        normalize(x, gamma, beta, NormKind::Batch { epsilon }, activation);
    BatchNormTrain {
        output,
        mean,
        variance,
    }
}

/// Group normalisation (Wu & He, 2018) of `x [batch, channels, ...]` followed by `activation`:
/// the channels split into `groups` consecutive groups, μ and σ² (biased) taken per sample over a
/// group's channels and every spatial position, then `activation(γ_c (x − μ) / √(σ² + ε) + β_c)`.
/// Differentiable in `x`, `gamma` and `beta`.
pub fn group_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    groups: usize,
    epsilon: f64,
    activation: Activation,
) -> GroupNormOutput<D> {
    let channels = x.dims()[1];
    assert!(
        groups > 0 && channels.is_multiple_of(groups),
        "{channels} channels do not split into {groups} groups"
    );
    let kind = NormKind::Group { groups, epsilon };
    let (output, mean, inv_std) = normalize(x, gamma, beta, kind, activation);
    GroupNormOutput {
        output,
        mean,
        inv_std,
    }
}

/// A normalisation through the extension, which routes it to the tensors' backend: the output
/// and the two statistics, `S` axes each.
fn normalize<const D: usize, const S: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    kind: NormKind,
    activation: Activation,
) -> (Tensor<D>, Tensor<S>, Tensor<S>) {
    let norm = Normalization {
        x: x.into_dispatch(),
        gamma: gamma.into_dispatch(),
        beta: beta.into_dispatch(),
        kind,
        activation,
    };
    let (output, stats) = Dispatch::kernel_norm(norm);
    (
        Tensor::from_dispatch(output),
        Tensor::from_dispatch(stats.mean),
        Tensor::from_dispatch(stats.spread),
    )
}
