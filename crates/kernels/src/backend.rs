// ndarray is deprecated upstream but stays one of the project's backends, for comparisons.
#![allow(deprecated)]

//! The operations as a burn backend extension: one trait, a fast implementation on flex
//! ([`crate::flex`]), burn's own composition on every other backend, and hand-written backward
//! passes on `Autodiff` that call the inner backend's gradient operations.
//!
//! An operation's tensors travel together with its settings in one struct ([`Convolution`],
//! [`Normalization`]), which the extension's routing moves across backends like a tensor: the
//! autodiff node keeps that struct as its state, and the backward pass hands it back unchanged.

use burn::backend::autodiff::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::{ConvOptions, ConvTransposeOptions};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, ExtensionType, NdArray, backend_extension};
use burn::tensor::Shape;

use crate::Activation;
use crate::fallback;

/// Which convolution, with burn's options for it.
#[derive(Debug, Clone)]
pub enum ConvKind {
    Plain(ConvOptions<2>),
    Transposed(ConvTransposeOptions<2>),
}

/// A convolution of `x` by `weight`: what each of its passes takes.
#[derive(ExtensionType, Debug, Clone)]
pub struct Convolution<B: Backend> {
    pub x: FloatTensor<B>,
    pub weight: FloatTensor<B>,
    pub kind: ConvKind,
}

/// The operand a convolution's gradient is taken with respect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvOperand {
    Input,
    Weight,
}

/// Which statistics a normalisation takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// Per channel over the batch and every other axis.
    Batch { epsilon: f64 },
    /// Per sample over each of `groups` groups of consecutive channels and every other axis.
    Group { groups: usize, epsilon: f64 },
}

impl NormKind {
    /// The ε added to the variance.
    pub fn epsilon(self) -> f64 {
        match self {
            Self::Batch { epsilon } | Self::Group { epsilon, .. } => epsilon,
        }
    }
}

/// A normalisation of `x [batch, channels, ...]` with the per-channel scale γ (`gamma`) and
/// shift β (`beta`), followed by `activation`: what its forward and backward passes take.
#[derive(ExtensionType, Debug, Clone)]
#[extension_type(fusion)]
pub struct Normalization<B: Backend> {
    pub x: FloatTensor<B>,
    pub gamma: FloatTensor<B>,
    pub beta: FloatTensor<B>,
    pub kind: NormKind,
    pub activation: Activation,
}

/// A matrix product `op(lhs) · op(rhs)` of two `[rows, cols]` matrices, each operand read as
/// stored or, where `transposed` says so, as its transpose: what the product and its gradients
/// take.
#[derive(ExtensionType, Debug, Clone)]
pub struct MatrixProduct<B: Backend> {
    pub lhs: FloatTensor<B>,
    pub rhs: FloatTensor<B>,
    pub transposed: [bool; 2],
}

impl<B: Backend> MatrixProduct<B> {
    /// The product with both operands as stored.
    pub fn new(lhs: FloatTensor<B>, rhs: FloatTensor<B>) -> Self {
        Self {
            lhs,
            rhs,
            transposed: [false, false],
        }
    }

    /// The product `op(lhs) · op(rhs)` with the operands read as `transposed` says.
    fn with(lhs: FloatTensor<B>, rhs: FloatTensor<B>, transposed: [bool; 2]) -> Self {
        Self {
            lhs,
            rhs,
            transposed,
        }
    }
}

/// The statistics a normalisation returns besides its output, which its backward pass takes:
/// the mean, and the spread as its kernels store it (BatchNorm: the biased variance per channel;
/// GroupNorm: `1 / √(σ² + ε)` per `[batch, group]`).
#[derive(ExtensionType, Debug, Clone)]
#[extension_type(fusion)]
pub struct NormStats<B: Backend> {
    pub mean: FloatTensor<B>,
    pub spread: FloatTensor<B>,
}

/// The settings of one step of [`crate::adam_step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub learning_rate: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// The L2 penalty λ added to the gradient as `λ · param` (0 for none).
    pub weight_decay: f32,
    /// The number of this step, from 1.
    pub time: usize,
}

/// One Adam step of `param`: its gradient and its two moments before the step, all of `param`'s
/// shape, with the step's settings.
#[derive(ExtensionType, Debug, Clone)]
#[extension_type(fusion)]
pub struct AdamUpdate<B: Backend> {
    pub param: FloatTensor<B>,
    pub grad: FloatTensor<B>,
    pub moment_1: FloatTensor<B>,
    pub moment_2: FloatTensor<B>,
    pub step: AdamStep,
}

impl AdamStep {
    /// `(√(1 − β₂ᵗ), √(1 − β₂ᵗ) / (1 − β₁ᵗ))`: the square root of the second moment's bias
    /// correction, and the factor of the first moment that carries both corrections.
    pub fn corrections(&self) -> (f32, f32) {
        let time = self.time as i32;
        let second = (1.0 - self.beta_2.powi(time)).sqrt();
        (second, second / (1.0 - self.beta_1.powi(time)))
    }
}

/// The shapes of a normalisation's output and statistics, for burn's fusion, which records the
/// operation now and runs it later.
fn norm_shapes(norm: &NormalizationMetadata) -> (TensorSpec, NormStatsMetadata) {
    let shape = &norm.x.shape;
    let stats = match norm.kind {
        NormKind::Batch { .. } => Shape::new([shape[1]]),
        NormKind::Group { groups, .. } => Shape::new([shape[0], groups]),
    };
    let stats = TensorSpec::new(stats, norm.x.dtype);
    let stats = NormStatsMetadata {
        mean: stats.clone(),
        spread: stats,
    };
    (norm.x.clone(), stats)
}

/// The shapes of a normalisation's three gradients: those of `x`, `gamma` and `beta`.
fn norm_backward_shapes(
    norm: &NormalizationMetadata,
    _: &NormStatsMetadata,
    _: &TensorSpec,
) -> (TensorSpec, TensorSpec, TensorSpec) {
    (norm.x.clone(), norm.gamma.clone(), norm.beta.clone())
}

/// The shapes of an Adam step's three results: the parameter's.
fn adam_shapes(update: &AdamUpdateMetadata) -> (TensorSpec, TensorSpec, TensorSpec) {
    let param = update.param.clone();
    (param.clone(), param.clone(), param)
}

/// The operations of this crate. The default bodies are burn's own ops, so that every backend
/// computes the same numbers; flex overrides them with the kernels of [`crate::flex`], CubeCL's
/// runtimes (wgpu, cuda) the normalisations and Adam's step with those of [`crate::cube`]. Under
/// burn's fusion, the composed operations stay composed (`#[fusion(default)]`: fusion sees burn's
/// ops) and the kernels run as one recorded operation each.
#[backend_extension(Flex, NdArray, Cube, Autodiff, Fusion)]
pub trait KernelBackend: Backend {
    /// A 2-D convolution plus `bias`, as `burn::tensor::module::conv2d` (or `conv_transpose2d`).
    #[fusion(default)]
    fn kernel_conv(
        #[extension_type] conv: Convolution<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback::conv::<Self>(conv, bias)
    }

    /// The gradient of [`kernel_conv`](Self::kernel_conv) with respect to `wrt`, from the
    /// gradient of its output.
    #[fusion(default)]
    fn kernel_conv_backward(
        #[extension_type] conv: Convolution<Self>,
        output_grad: FloatTensor<Self>,
        wrt: ConvOperand,
    ) -> FloatTensor<Self> {
        fallback::conv_backward::<Self>(conv, output_grad, wrt)
    }

    /// The gradient of the bias of [`kernel_conv`](Self::kernel_conv), `Σ dY` over every axis
    /// of the output gradient but the channels, shaped as `bias`.
    #[fusion(default)]
    fn kernel_conv_bias_backward(
        #[extension_type] conv: Convolution<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback::conv_bias_backward::<Self>(conv, bias, output_grad)
    }

    /// The normalisation and its activation: the output and the statistics.
    #[fusion(meta = norm_shapes)]
    fn kernel_norm(
        #[extension_type] norm: Normalization<Self>,
    ) -> (FloatTensor<Self>, NormStats<Self>) {
        fallback::norm::<Self>(norm)
    }

    /// The gradients of [`kernel_norm`](Self::kernel_norm) with respect to `x`, `gamma` and
    /// `beta`, from the statistics it returned and the gradient of its output.
    #[fusion(meta = norm_backward_shapes)]
    fn kernel_norm_backward(
        #[extension_type] norm: Normalization<Self>,
        #[extension_type] stats: NormStats<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::norm_backward::<Self>(norm, stats, output_grad)
    }

    /// `activation(x)`, element by element.
    #[fusion(default)]
    fn kernel_activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self> {
        fallback::activation::<Self>(x, activation)
    }

    /// `output_grad · activation'(x)`: the gradient of [`kernel_activation`](Self::kernel_activation)
    /// at `x`.
    #[fusion(default)]
    fn kernel_activation_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        activation: Activation,
    ) -> FloatTensor<Self> {
        fallback::activation_backward::<Self>(x, output_grad, activation)
    }

    /// The matrix product, as `float_matmul` of the operands (transposed where asked).
    #[fusion(default)]
    fn kernel_matmul(#[extension_type] product: MatrixProduct<Self>) -> FloatTensor<Self> {
        fallback::matmul::<Self>(product)
    }

    /// One Adam step: the parameter and its two moments after it ([`crate::adam_step`]).
    #[fusion(meta = adam_shapes)]
    fn kernel_adam_step(
        #[extension_type] update: AdamUpdate<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::adam_step::<Self>(update)
    }
}

// ndarray has no kernels of its own: burn's ops, through the default bodies. (`Cube`, fused,
// gets the implementation `#[backend_extension]` writes for `Fusion`, over [`crate::cube`]'s.)
impl KernelBackend for NdArray {}

#[derive(Debug)]
struct ConvBackward;

impl<B: KernelBackend> Backward<B, 3> for ConvBackward {
    /// The convolution and its bias.
    type State = (Convolution<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (conv, bias) = ops.state;
        if let Some(node) = node_bias {
            let db = B::kernel_conv_bias_backward(conv.clone(), bias, grad.clone());
            grads.register::<B>(node.id, db);
        }
        for (node, wrt) in [
            (node_x, ConvOperand::Input),
            (node_weight, ConvOperand::Weight),
        ] {
            if let Some(node) = node {
                let d = B::kernel_conv_backward(conv.clone(), grad.clone(), wrt);
                grads.register::<B>(node.id, d);
            }
        }
    }
}

#[derive(Debug)]
struct NormBackward;

impl<B: KernelBackend> Backward<B, 3> for NormBackward {
    /// The normalisation and the statistics its forward pass returned.
    type State = (Normalization<B>, NormStats<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (norm, stats) = ops.state;
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (dx, dgamma, dbeta) = B::kernel_norm_backward(norm, stats, grad);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

#[derive(Debug)]
struct ActivationBackward;

impl<B: KernelBackend> Backward<B, 1> for ActivationBackward {
    /// The input and the activation.
    type State = (FloatTensor<B>, Activation);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, activation) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::kernel_activation_backward(x, grad, activation));
        }
    }
}

#[derive(Debug)]
struct MatmulBackward;

impl<B: KernelBackend> Backward<B, 2> for MatmulBackward {
    /// The product.
    type State = MatrixProduct<B>;

    /// For `Y = op(A) · op(B)`: `d op(A) = dY · op(B)ᵀ` and `d op(B) = op(A)ᵀ · dY`, each
    /// transposed back where its operand was read transposed, all as products of the stored
    /// matrices with transpose flags (no copy).
    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_lhs, node_rhs] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let MatrixProduct {
            lhs,
            rhs,
            transposed: [lhs_t, rhs_t],
        } = ops.state;
        if let Some(node) = node_lhs {
            let product = match lhs_t {
                false => MatrixProduct::with(dy.clone(), rhs, [false, !rhs_t]),
                true => MatrixProduct::with(rhs, dy.clone(), [rhs_t, true]),
            };
            grads.register::<B>(node.id, B::kernel_matmul(product));
        }
        if let Some(node) = node_rhs {
            let product = match rhs_t {
                false => MatrixProduct::with(lhs, dy, [!lhs_t, false]),
                true => MatrixProduct::with(dy, lhs, [true, lhs_t]),
            };
            grads.register::<B>(node.id, B::kernel_matmul(product));
        }
    }
}

/// Each operation runs on the inner backend and records the node that differentiates it.
impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    /// A bias that takes no part in the backward pass (the zeros standing in for a layer without
    /// bias) gets no gradient.
    fn kernel_conv(conv: Convolution<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = ConvBackward
            .prepare::<C>([conv.x.node(), conv.weight.node(), bias.node()])
            .compute_bound()
            .stateful();
        let conv = Convolution {
            x: conv.x.into_primitive(),
            weight: conv.weight.into_primitive(),
            kind: conv.kind,
        };
        let bias = bias.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let state = (conv.clone(), bias.clone());
                prep.finish(state, B::kernel_conv(conv, bias))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::kernel_conv(conv, bias)),
        }
    }

    /// The statistics come back as constants.
    fn kernel_norm(norm: Normalization<Self>) -> (FloatTensor<Self>, NormStats<Self>) {
        let prep = NormBackward
            .prepare::<C>([norm.x.node(), norm.gamma.node(), norm.beta.node()])
            .compute_bound()
            .stateful();
        let norm = Normalization {
            x: norm.x.into_primitive(),
            gamma: norm.gamma.into_primitive(),
            beta: norm.beta.into_primitive(),
            kind: norm.kind,
            activation: norm.activation,
        };
        let (output, stats) = match prep {
            OpsKind::Tracked(prep) => {
                let (output, stats) = B::kernel_norm(norm.clone());
                (prep.finish((norm, stats.clone()), output), stats)
            }
            OpsKind::UnTracked(prep) => {
                let (output, stats) = B::kernel_norm(norm);
                (prep.finish(output), stats)
            }
        };
        let constant = <FloatTensor<Self>>::new;
        let stats = NormStats {
            mean: constant(stats.mean),
            spread: constant(stats.spread),
        };
        (output, stats)
    }

    fn kernel_activation(x: FloatTensor<Self>, activation: Activation) -> FloatTensor<Self> {
        let prep = ActivationBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::kernel_activation(x.clone(), activation);
                prep.finish((x, activation), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::kernel_activation(x, activation)),
        }
    }

    /// An optimizer's step, outside the graph: the results are constants.
    fn kernel_adam_step(
        update: AdamUpdate<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (param, moment_1, moment_2) = B::kernel_adam_step(AdamUpdate {
            param: update.param.into_primitive(),
            grad: update.grad.into_primitive(),
            moment_1: update.moment_1.into_primitive(),
            moment_2: update.moment_2.into_primitive(),
            step: update.step,
        });
        let constant = <FloatTensor<Self>>::new;
        (constant(param), constant(moment_1), constant(moment_2))
    }

    fn kernel_matmul(product: MatrixProduct<Self>) -> FloatTensor<Self> {
        let prep = MatmulBackward
            .prepare::<C>([product.lhs.node(), product.rhs.node()])
            .compute_bound()
            .stateful();
        let product = MatrixProduct::with(
            product.lhs.into_primitive(),
            product.rhs.into_primitive(),
            product.transposed,
        );
        match prep {
            OpsKind::Tracked(prep) => prep.finish(product.clone(), B::kernel_matmul(product)),
            OpsKind::UnTracked(prep) => prep.finish(B::kernel_matmul(product)),
        }
    }
}
