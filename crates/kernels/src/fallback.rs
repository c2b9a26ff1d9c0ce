//! The operations out of burn's own primitive ops: what every backend without kernels (and flex
//! where its kernels do not apply) runs, and the reference the kernels are tested against.

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;
use burn::backend::{TensorMetadata, get_or_init_device_settings};
use burn::tensor::Shape;

use crate::Activation;
use crate::backend::{
    AdamStep, AdamUpdate, ConvKind, ConvOperand, Convolution, MatrixProduct, NormKind, NormStats,
    Normalization,
};

/// `act(z)`.
pub fn activation<B: Backend>(z: FloatTensor<B>, activation: Activation) -> FloatTensor<B> {
    match activation {
        Activation::Identity => z,
        Activation::Relu => B::relu(z),
        Activation::LeakyRelu(slope) => B::leaky_relu(z, slope.into()),
        Activation::Silu => B::float_mul(z.clone(), B::sigmoid(z)),
        Activation::Tanh => B::float_tanh(z),
    }
}

/// `grad · act'(z)`, the left derivative at the kinks.
pub fn activation_backward<B: Backend>(
    z: FloatTensor<B>,
    grad: FloatTensor<B>,
    activation: Activation,
) -> FloatTensor<B> {
    let bool_dtype = get_or_init_device_settings::<B>(&z.device()).bool_dtype;
    let at_most_zero = |z| B::float_lower_equal_elem(z, 0f32.into(), bool_dtype);
    match activation {
        Activation::Identity => grad,
        Activation::Relu => B::float_mask_fill(grad, at_most_zero(z), 0f32.into()),
        Activation::LeakyRelu(slope) => {
            let scaled = B::float_mul_scalar(grad.clone(), slope.into());
            B::float_mask_where(grad, at_most_zero(z), scaled)
        }
        Activation::Silu => {
            // σ(z) (1 + z (1 − σ(z)))
            let s = B::sigmoid(z.clone());
            let one_minus = B::float_add_scalar(B::float_neg(s.clone()), 1f32.into());
            let inner = B::float_add_scalar(B::float_mul(z, one_minus), 1f32.into());
            B::float_mul(grad, B::float_mul(s, inner))
        }
        Activation::Tanh => {
            // 1 − tanh²(z)
            let t = B::float_tanh(z);
            let one_minus =
                B::float_add_scalar(B::float_neg(B::float_mul(t.clone(), t)), 1f32.into());
            B::float_mul(grad, one_minus)
        }
    }
}

/// One Adam step in burn's ops, in the order of burn's own Adam.
pub fn adam_step<B: Backend>(
    update: AdamUpdate<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let AdamUpdate {
        param,
        grad,
        moment_1,
        moment_2,
        step,
    } = update;
    let AdamStep {
        learning_rate,
        beta_1,
        beta_2,
        epsilon,
        weight_decay,
        ..
    } = step;
    let grad = if weight_decay == 0.0 {
        grad
    } else {
        B::float_add(
            grad,
            B::float_mul_scalar(param.clone(), weight_decay.into()),
        )
    };
    let moment_1 = B::float_add(
        B::float_mul_scalar(moment_1, beta_1.into()),
        B::float_mul_scalar(grad.clone(), (1.0 - beta_1).into()),
    );
    let moment_2 = B::float_add(
        B::float_mul_scalar(moment_2, beta_2.into()),
        B::float_mul_scalar(B::float_mul(grad.clone(), grad), (1.0 - beta_2).into()),
    );
    let (second, factor) = step.corrections();
    let denominator =
        B::float_add_scalar(B::float_sqrt(moment_2.clone()), (epsilon * second).into());
    let update = B::float_div(
        B::float_mul_scalar(moment_1.clone(), factor.into()),
        denominator,
    );
    let param = B::float_sub(
        param,
        B::float_mul_scalar(update, (learning_rate as f32).into()),
    );
    (param, moment_1, moment_2)
}

/// A convolution through `ModuleOps`.
pub fn conv<B: Backend>(conv: Convolution<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let Convolution { x, weight, kind } = conv;
    match kind {
        ConvKind::Plain(options) => B::conv2d(x, weight, Some(bias), options),
        ConvKind::Transposed(options) => B::conv_transpose2d(x, weight, Some(bias), options),
    }
}

/// The gradient of a convolution with respect to `wrt`, through `ModuleOps`.
pub fn conv_backward<B: Backend>(
    conv: Convolution<B>,
    output_grad: FloatTensor<B>,
    wrt: ConvOperand,
) -> FloatTensor<B> {
    let Convolution { x, weight, kind } = conv;
    match (kind, wrt) {
        (ConvKind::Plain(o), ConvOperand::Input) => B::conv2d_x_backward(x, weight, output_grad, o),
        (ConvKind::Plain(o), ConvOperand::Weight) => {
            B::conv2d_weight_backward(x, weight, output_grad, o)
        }
        (ConvKind::Transposed(o), ConvOperand::Input) => {
            B::conv_transpose2d_x_backward(weight, output_grad, o)
        }
        (ConvKind::Transposed(o), ConvOperand::Weight) => {
            B::conv_transpose2d_weight_backward(x, weight, output_grad, o)
        }
    }
}

/// The bias gradient of a convolution, as burn's own backward pass takes it.
pub fn conv_bias_backward<B: Backend>(
    conv: Convolution<B>,
    bias: FloatTensor<B>,
    output_grad: FloatTensor<B>,
) -> FloatTensor<B> {
    match conv.kind {
        ConvKind::Plain(_) => B::conv2d_bias_backward(conv.x, bias, output_grad),
        ConvKind::Transposed(_) => B::conv_transpose2d_bias_backward(conv.x, bias, output_grad),
    }
}

/// `op(lhs) · op(rhs)` through `float_matmul`, the transposes as views.
pub fn matmul<B: Backend>(product: MatrixProduct<B>) -> FloatTensor<B> {
    let MatrixProduct {
        lhs,
        rhs,
        transposed,
    } = product;
    let read = |m: FloatTensor<B>, transposed: bool| match transposed {
        true => B::float_transpose(m),
        false => m,
    };
    B::float_matmul(read(lhs, transposed[0]), read(rhs, transposed[1]))
}

/// BatchNorm through `ModuleOps::batch_norm_train`, or GroupNorm as [`group_norm`]; then the
/// activation.
pub fn norm<B: Backend>(norm: Normalization<B>) -> (FloatTensor<B>, NormStats<B>) {
    let (x, gamma, beta) = (norm.x, norm.gamma, norm.beta);
    let (output, stats) = match norm.kind {
        NormKind::Batch { epsilon } => {
            let result = B::batch_norm_train(x, gamma, beta, epsilon);
            let stats = NormStats {
                mean: result.mean,
                spread: result.variance,
            };
            (result.output, stats)
        }
        NormKind::Group { groups, epsilon } => group_norm::<B>(x, gamma, beta, groups, epsilon),
    };
    (activation::<B>(output, norm.activation), stats)
}

/// For BatchNorm, the activation's backward pass at the recomputed pre-activation, then
/// `ModuleOps::batch_norm_train_backward`; for GroupNorm, [`group_norm_backward`].
pub fn norm_backward<B: Backend>(
    norm: Normalization<B>,
    stats: NormStats<B>,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let Normalization {
        x,
        gamma,
        beta,
        kind,
        activation: act,
    } = norm;
    let NormStats { mean, spread } = stats;
    match kind {
        NormKind::Batch { epsilon } => {
            let variance = spread;
            let z = B::batch_norm(
                x.clone(),
                gamma.clone(),
                beta,
                mean.clone(),
                variance.clone(),
                epsilon,
            );
            let grad = activation_backward::<B>(z, output_grad, act);
            let result = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
            (result.x_grad, result.gamma_grad, result.beta_grad)
        }
        NormKind::Group { groups, .. } => {
            group_norm_backward::<B>(x, gamma, beta, mean, spread, groups, act, output_grad)
        }
    }
}

/// `[batch, channels, ...]` as `(batch, channels, product of the rest)`.
fn split_shape(shape: &Shape) -> (usize, usize, usize) {
    let (batch, channels) = (shape[0], shape[1]);
    (batch, channels, shape.num_elements() / (batch * channels))
}

/// `γ_c x̂ + β_c` for `x̂ [batch, channels, spatial]`.
fn affine<B: Backend>(
    xhat: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    channels: usize,
) -> FloatTensor<B> {
    let per_channel = Shape::new([1, channels, 1]);
    let gamma = B::float_reshape(gamma, per_channel.clone());
    B::float_add(
        B::float_mul(xhat, gamma),
        B::float_reshape(beta, per_channel),
    )
}

/// GroupNorm as burn's `GroupNorm` module computes it (statistics per sample over
/// `[channels / groups, ...]`), before the activation; also returns the mean and
/// `1 / √(σ² + ε)`.
fn group_norm<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    groups: usize,
    epsilon: f64,
) -> (FloatTensor<B>, NormStats<B>) {
    let shape = x.shape();
    let (batch, channels, spatial) = split_shape(&shape);
    let grouped = B::float_reshape(x, Shape::new([batch, groups, channels / groups * spatial]));
    let mean = B::float_mean_dim(grouped.clone(), 2);
    let centred = B::float_sub(grouped, mean.clone());
    let variance = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 2);
    let inv_std = B::float_recip(B::float_sqrt(B::float_add_scalar(variance, epsilon.into())));
    let xhat = B::float_reshape(
        B::float_mul(centred, inv_std.clone()),
        Shape::new([batch, channels, spatial]),
    );
    let output = affine::<B>(xhat, gamma, beta, channels);
    let per_group = Shape::new([batch, groups]);
    let stats = NormStats {
        mean: B::float_reshape(mean, per_group.clone()),
        spread: B::float_reshape(inv_std, per_group),
    };
    (B::float_reshape(output, shape), stats)
}

/// The gradients of [`group_norm`]: `dβ = Σg`, `dγ = Σ g x̂` over batch and space, and
/// `dx = (h − mean(h) − x̂ mean(h x̂)) / σ` per group, with `g = dy · act'(z)`, `h = γ g`.
#[allow(clippy::too_many_arguments)]
fn group_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    inv_std: FloatTensor<B>,
    groups: usize,
    act: Activation,
    output_grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let (batch, channels, spatial) = split_shape(&shape);
    let grouped_shape = Shape::new([batch, groups, channels / groups * spatial]);
    let flat = Shape::new([batch, channels, spatial]);
    let stats = Shape::new([batch, groups, 1]);
    let inv_std = B::float_reshape(inv_std, stats.clone());
    let grouped = B::float_reshape(x, grouped_shape.clone());
    let xhat_grouped = B::float_mul(
        B::float_sub(grouped, B::float_reshape(mean, stats)),
        inv_std.clone(),
    );
    let xhat = B::float_reshape(xhat_grouped.clone(), flat.clone());
    let z = affine::<B>(xhat.clone(), gamma.clone(), beta, channels);
    let g = activation_backward::<B>(z, B::float_reshape(output_grad, flat), act);
    let sum_over_batch_and_space = |t: FloatTensor<B>| {
        B::float_reshape(
            B::float_sum_dim(B::float_sum_dim(t, 2), 0),
            Shape::new([channels]),
        )
    };
    let beta_grad = sum_over_batch_and_space(g.clone());
    let gamma_grad = sum_over_batch_and_space(B::float_mul(g.clone(), xhat));
    let h = B::float_mul(g, B::float_reshape(gamma, Shape::new([1, channels, 1])));
    let h = B::float_reshape(h, grouped_shape);
    let mean_h = B::float_mean_dim(h.clone(), 2);
    let mean_hx = B::float_mean_dim(B::float_mul(h.clone(), xhat_grouped.clone()), 2);
    let dx = B::float_sub(B::float_sub(h, mean_h), B::float_mul(xhat_grouped, mean_hx));
    let dx = B::float_mul(dx, inv_std);
    (B::float_reshape(dx, shape), gamma_grad, beta_grad)
}
