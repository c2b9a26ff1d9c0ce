// ndarray is deprecated upstream but stays one of the project's backends, for comparisons.
#![allow(deprecated)]

//! The operations as a burn backend extension: one trait, a fast implementation on flex
//! ([`crate::flex`]), burn's own composition on every other backend, and hand-written backward
//! passes on `Autodiff` that call the inner backend's gradient operations.

use burn::backend::autodiff::{
    Autodiff, NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::ops::{ConvOptions, ConvTransposeOptions};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, NdArray, backend_extension};

use crate::Activation;
use crate::fallback;

/// The operations of this crate. The default bodies are burn's own ops, so that every backend
/// computes the same numbers; flex overrides them with the kernels of [`crate::flex`].
#[backend_extension(Flex, NdArray, Cube, Autodiff)]
pub trait KernelBackend: Backend {
    /// A 2-D convolution, as `burn::tensor::module::conv2d`.
    fn kernel_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), options)
    }

    /// The gradient of [`kernel_conv2d`](Self::kernel_conv2d) with respect to its input.
    fn kernel_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, options)
    }

    /// The gradient of [`kernel_conv2d`](Self::kernel_conv2d) with respect to its weight.
    fn kernel_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, output_grad, options)
    }

    /// A 2-D transposed convolution, as `burn::tensor::module::conv_transpose2d`.
    fn kernel_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d(x, weight, Some(bias), options)
    }

    /// The gradient of [`kernel_conv_transpose2d`](Self::kernel_conv_transpose2d) with respect
    /// to its input.
    fn kernel_conv_transpose2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d_x_backward(weight, output_grad, options)
    }

    /// The gradient of [`kernel_conv_transpose2d`](Self::kernel_conv_transpose2d) with respect
    /// to its weight.
    fn kernel_conv_transpose2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d_weight_backward(x, weight, output_grad, options)
    }

    /// Batch normalisation with the batch's statistics, then `activation`: returns the output,
    /// the batch mean and the biased batch variance per channel.
    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::batch_norm_train::<Self>(x, gamma, beta, epsilon, activation)
    }

    /// The gradients of [`kernel_batch_norm_train`](Self::kernel_batch_norm_train) with respect
    /// to `x`, `gamma` and `beta`, from its inputs and the statistics it returned.
    #[allow(clippy::too_many_arguments)]
    fn kernel_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::batch_norm_train_backward::<Self>(
            x,
            gamma,
            beta,
            mean,
            variance,
            epsilon,
            activation,
            output_grad,
        )
    }

    /// Group normalisation of `x [batch, channels, ...]` in `groups` groups of channels, then
    /// `activation`: returns the output, and the mean and `1 / √(σ² + ε)` per `[batch, groups]`.
    fn kernel_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::group_norm::<Self>(x, gamma, beta, groups, epsilon, activation)
    }

    /// The gradients of [`kernel_group_norm`](Self::kernel_group_norm) with respect to `x`,
    /// `gamma` and `beta`, from its inputs and the statistics it returned.
    #[allow(clippy::too_many_arguments)]
    fn kernel_group_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        inv_std: FloatTensor<Self>,
        groups: usize,
        activation: Activation,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::group_norm_backward::<Self>(
            x,
            gamma,
            beta,
            mean,
            inv_std,
            groups,
            activation,
            output_grad,
        )
    }
}

// Backends without kernels of their own: burn's ops, through the default bodies.
impl KernelBackend for NdArray {}
impl KernelBackend for Cube {}

/// Which convolution a backward node differentiates.
#[derive(Debug, Clone)]
enum ConvKind {
    Forward(ConvOptions<2>),
    Transposed(ConvTransposeOptions<2>),
}

/// The state both convolution nodes keep: input, weight and the convolution's settings.
type ConvState<B> = (FloatTensor<B>, FloatTensor<B>, ConvKind);

/// Registers the input and weight gradients of a convolution node.
fn register_conv_grads<B: KernelBackend>(
    (x, weight, kind): ConvState<B>,
    grad: &FloatTensor<B>,
    node_x: Option<NodeId>,
    node_weight: Option<NodeId>,
    grads: &mut Gradients,
) {
    if let Some(node) = node_x {
        let dx = match kind.clone() {
            ConvKind::Forward(o) => {
                B::kernel_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), o)
            }
            ConvKind::Transposed(o) => {
                B::kernel_conv_transpose2d_x_backward(weight.clone(), grad.clone(), o)
            }
        };
        grads.register::<B>(node, dx);
    }
    if let Some(node) = node_weight {
        let dw = match kind {
            ConvKind::Forward(o) => B::kernel_conv2d_weight_backward(x, weight, grad.clone(), o),
            ConvKind::Transposed(o) => {
                B::kernel_conv_transpose2d_weight_backward(x, weight, grad.clone(), o)
            }
        };
        grads.register::<B>(node, dw);
    }
}

#[derive(Debug)]
struct ConvBackward;

impl<B: KernelBackend> Backward<B, 3> for ConvBackward {
    type State = (ConvState<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (state, bias) = ops.state;
        if let Some(node) = node_bias {
            let (x, _, kind) = &state;
            let db = match kind {
                ConvKind::Forward(_) => B::conv2d_bias_backward(x.clone(), bias, grad.clone()),
                ConvKind::Transposed(_) => {
                    B::conv_transpose2d_bias_backward(x.clone(), bias, grad.clone())
                }
            };
            grads.register::<B>(node.id, db);
        }
        register_conv_grads::<B>(
            state,
            &grad,
            node_x.map(|n| n.id),
            node_weight.map(|n| n.id),
            grads,
        );
    }
}

/// Runs `forward` on the inner backend and records the node that differentiates it. A bias
/// that takes no part in the backward pass (the zeros standing in for a layer without bias)
/// gets no gradient.
fn differentiable_conv<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    kind: ConvKind,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match ConvBackward
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = (
                (x.primitive().clone(), weight.primitive().clone(), kind),
                bias.primitive().clone(),
            );
            prep.finish(
                state,
                forward(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                ),
            )
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        )),
    }
}

/// Which normalisation a backward node differentiates.
#[derive(Debug, Clone, Copy)]
enum NormKind {
    Batch { epsilon: f64 },
    Group { groups: usize, epsilon: f64 },
}

#[derive(Debug)]
struct NormBackward;

impl<B: KernelBackend> Backward<B, 3> for NormBackward {
    /// Input, gamma, beta, the two statistics the forward pass returned, the normalisation and
    /// the activation.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        NormKind,
        Activation,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, gamma, beta, first, second, kind, activation) = ops.state;
        let (dx, dgamma, dbeta) = match kind {
            NormKind::Batch { epsilon } => B::kernel_batch_norm_train_backward(
                x, gamma, beta, first, second, epsilon, activation, grad,
            ),
            NormKind::Group { groups, .. } => B::kernel_group_norm_backward(
                x, gamma, beta, first, second, groups, activation, grad,
            ),
        };
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// Runs a normalisation on the inner backend and records the node that differentiates it; the
/// two statistics come back as constants.
fn differentiable_norm<B: KernelBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    kind: NormKind,
    activation: Activation,
) -> [FloatTensor<Autodiff<B, C>>; 3] {
    let forward = |x, gamma, beta| match kind {
        NormKind::Batch { epsilon } => {
            B::kernel_batch_norm_train(x, gamma, beta, epsilon, activation)
        }
        NormKind::Group { groups, epsilon } => {
            B::kernel_group_norm(x, gamma, beta, groups, epsilon, activation)
        }
    };
    let constant = <FloatTensor<Autodiff<B, C>>>::new;
    match NormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (output, first, second) = forward(
                x.primitive().clone(),
                gamma.primitive().clone(),
                beta.primitive().clone(),
            );
            let state = (
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                first.clone(),
                second.clone(),
                kind,
                activation,
            );
            [
                prep.finish(state, output),
                constant(first),
                constant(second),
            ]
        }
        OpsKind::UnTracked(prep) => {
            let (output, first, second) = forward(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
            );
            [prep.finish(output), constant(first), constant(second)]
        }
    }
}

impl<B: KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn kernel_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let kind = ConvKind::Forward(options.clone());
        differentiable_conv::<B, C>(x, weight, bias, kind, |x, w, b| {
            B::kernel_conv2d(x, w, b, options)
        })
    }

    fn kernel_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        let kind = ConvKind::Transposed(options.clone());
        differentiable_conv::<B, C>(x, weight, bias, kind, |x, w, b| {
            B::kernel_conv_transpose2d(x, w, b, options)
        })
    }

    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [output, mean, variance] =
            differentiable_norm::<B, C>(x, gamma, beta, NormKind::Batch { epsilon }, activation);
        (output, mean, variance)
    }

    fn kernel_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [output, mean, inv_std] = differentiable_norm::<B, C>(
            x,
            gamma,
            beta,
            NormKind::Group { groups, epsilon },
            activation,
        );
        (output, mean, inv_std)
    }
}
