//! burn's `Linear`, `Conv2d`, `ConvTranspose2d`, `BatchNorm` and `GroupNorm` modules run through this crate's
//! kernels: the same parameters, records and results as the modules' own `forward`.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};

use crate::Activation;

/// `layer.forward(x)`, through [`crate::linear`].
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    crate::linear(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|bias| bias.val()),
    )
}

/// `layer.forward(x)`, through [`crate::conv2d`].
pub fn conv2d(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let padding = padding_pairs(
        &layer.padding,
        [height, width],
        layer.kernel_size,
        layer.stride,
    );
    let options =
        ConvOptions::new_with_padding(layer.stride, padding, layer.dilation, layer.groups);
    crate::conv2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|bias| bias.val()),
        options,
    )
}

/// `layer.forward(x)`, through [`crate::conv_transpose2d`].
pub fn conv_transpose2d(layer: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let options = ConvTransposeOptions::new(
        layer.stride,
        layer.padding,
        layer.padding_out,
        layer.dilation,
        layer.groups,
    );
    crate::conv_transpose2d(
        x,
        layer.weight.val(),
        layer.bias.as_ref().map(|bias| bias.val()),
        options,
    )
}

/// `activation(layer.forward(x))`. In training (an autodiff device, the layer not frozen) the
/// normalisation and the activation are one kernel, and the running statistics are updated as
/// burn's `BatchNorm` updates them: `running = (1 − momentum) · running + momentum · batch`.
pub fn batch_norm<const D: usize>(
    layer: &BatchNorm,
    x: Tensor<D>,
    activation: Activation,
) -> Tensor<D> {
    if !(x.device().is_autodiff() && layer.training.is_enabled()) {
        return crate::activate(layer.forward(x), activation);
    }
    let device = x.device();
    let result = crate::batch_norm_train(
        x,
        layer.gamma.val(),
        layer.beta.val(),
        layer.epsilon,
        activation,
    );
    let momentum = layer.momentum;
    let update = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.detach().mul_scalar(momentum))
            .detach()
    };
    layer
        .running_mean
        .update(update(layer.running_mean.value_sync(), result.mean));
    layer
        .running_var
        .update(update(layer.running_var.value_sync(), result.variance));
    result.output
}

/// `activation(layer.forward(x))`, normalisation and activation in one kernel.
pub fn group_norm<const D: usize>(
    layer: &GroupNorm,
    x: Tensor<D>,
    activation: Activation,
) -> Tensor<D> {
    let device = x.device();
    let channels = layer.num_channels;
    let gamma = match &layer.gamma {
        Some(gamma) => gamma.val(),
        None => Tensor::ones([channels], &device),
    };
    let beta = match &layer.beta {
        Some(beta) => beta.val(),
        None => Tensor::zeros([channels], &device),
    };
    crate::group_norm(x, gamma, beta, layer.num_groups, layer.epsilon, activation).output
}

/// The (before, after) zero padding of each axis, as burn's `Conv2d` computes it
/// (`PaddingConfig2d::calculate_padding_2d_pairs` is private to burn-nn): `Same` pads to
/// `ceil(size / stride)` outputs, the extra row or column going after.
fn padding_pairs(
    padding: &PaddingConfig2d,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> [(usize, usize); 2] {
    match *padding {
        PaddingConfig2d::Valid => [(0, 0); 2],
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Same => [0, 1].map(|axis| {
            let outputs = size[axis].div_ceil(stride[axis]);
            let needed = outputs.saturating_sub(1) * stride[axis] + kernel[axis];
            let total = needed.saturating_sub(size[axis]);
            (total / 2, total - total / 2)
        }),
    }
}
