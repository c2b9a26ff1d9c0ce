//! The kernels on burn's CPU backend (flex), for f32 tensors. Anything they do not cover (other
//! dtypes, grouped or dilated convolutions) goes to burn's own ops, like every other backend.

pub mod activation;
pub mod conv;
pub mod norm;
pub mod shifted;
mod simd;

use burn::backend::Flex;
use burn::backend::ops::{ConvOptions, ConvTransposeOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};

use crate::Activation;
use crate::backend::KernelBackend;
use crate::fallback;
use conv::ConvGeometry;
use norm::NormShape;

/// A contiguous f32 copy of `tensor` (the tensor itself when it already is one), or `None` for
/// another dtype.
fn f32_data(tensor: &FlexTensor) -> Option<FlexTensor> {
    (tensor.dtype() == DType::F32).then(|| tensor.to_contiguous())
}

fn dims<const N: usize>(tensor: &FlexTensor) -> [usize; N] {
    tensor.layout().shape().dims::<N>()
}

fn from_vec(data: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

/// Values and the shape they take.
type Shaped<'a> = (Vec<f32>, &'a [usize]);

/// The three results of a normalisation (or of its backward pass) as tensors of their shapes.
fn three((a, b, c): (Shaped<'_>, Shaped<'_>, Shaped<'_>)) -> (FlexTensor, FlexTensor, FlexTensor) {
    (from_vec(a.0, a.1), from_vec(b.0, b.1), from_vec(c.0, c.1))
}

/// The geometry of a convolution of `x` by `weight`, when the kernels handle it.
fn conv_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<ConvGeometry> {
    let [_, channels, h, w] = dims::<4>(x);
    let [_, weight_channels, kh, kw] = dims::<4>(weight);
    if options.groups != 1 || options.dilation != [1, 1] || weight_channels != channels {
        return None;
    }
    let [(top, bottom), (left, right)] = options.padding;
    let out = |size: usize, before: usize, after: usize, k: usize, s: usize| {
        (size + before + after)
            .checked_sub(k)
            .map(|span| span / s + 1)
    };
    Some(ConvGeometry {
        channels,
        image: [h, w],
        kernel: [kh, kw],
        stride: options.stride,
        padding: [top, left],
        output: [
            out(h, top, bottom, kh, options.stride[0])?,
            out(w, left, right, kw, options.stride[1])?,
        ],
    })
}

/// The geometry of a transposed convolution of `x` by `weight`, seen from its output (the
/// image side of the convolution it transposes), when the kernels handle it.
fn transposed_geometry(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvTransposeOptions<2>,
) -> Option<ConvGeometry> {
    let [_, channels_in, h, w] = dims::<4>(x);
    let [weight_in, channels_out, kh, kw] = dims::<4>(weight);
    if options.groups != 1 || options.dilation != [1, 1] || weight_in != channels_in {
        return None;
    }
    let size = |input: usize, axis: usize, k: usize| {
        ((input - 1) * options.stride[axis] + k + options.padding_out[axis])
            .checked_sub(2 * options.padding[axis])
    };
    let geometry = ConvGeometry {
        channels: channels_out,
        image: [size(h, 0, kh)?, size(w, 1, kw)?],
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding,
        output: [h, w],
    };
    // The convolution over that output must land back on the input grid (padding_out < stride).
    let back = |axis: usize| {
        (geometry.image[axis] + 2 * geometry.padding[axis])
            .checked_sub(geometry.kernel[axis])
            .map(|span| span / geometry.stride[axis] + 1)
    };
    (back(0) == Some(h) && back(1) == Some(w)).then_some(geometry)
}

impl KernelBackend for Flex {
    fn kernel_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let fast = conv_geometry(&x, &weight, &options)
            .zip(f32_data(&x))
            .zip(f32_data(&weight));
        let bias_ok = bias.dtype() == DType::F32;
        match fast {
            Some(((g, x), w)) if bias_ok => {
                let bias_data = f32_data(&bias);
                let [batch, ..] = dims::<4>(&x);
                let m = dims::<4>(&w)[0];
                let y = conv::forward(
                    &g,
                    batch,
                    x.storage(),
                    w.storage(),
                    m,
                    bias_data.as_ref().map(|b| b.storage()),
                );
                from_vec(y, &[batch, m, g.output[0], g.output[1]])
            }
            _ => Flex::conv2d(x, weight, Some(bias), options),
        }
    }

    fn kernel_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let fast = conv_geometry(&x, &weight, &options)
            .zip(f32_data(&weight))
            .zip(f32_data(&output_grad));
        match fast {
            Some(((g, w), dy)) => {
                let [batch, ..] = dims::<4>(&x);
                let m = dims::<4>(&w)[0];
                let dx = conv::image_grad(&g, batch, w.storage(), m, dy.storage(), None);
                from_vec(dx, &[batch, g.channels, g.image[0], g.image[1]])
            }
            None => Flex::conv2d_x_backward(x, weight, output_grad, options),
        }
    }

    fn kernel_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let fast = conv_geometry(&x, &weight, &options)
            .zip(f32_data(&x))
            .zip(f32_data(&output_grad));
        match fast {
            Some(((g, x_data), dy)) => {
                let [batch, ..] = dims::<4>(&x_data);
                let weight_dims = dims::<4>(&weight);
                let dw =
                    conv::weight_grad(&g, batch, x_data.storage(), dy.storage(), weight_dims[0]);
                from_vec(dw, &weight_dims)
            }
            None => Flex::conv2d_weight_backward(x, weight, output_grad, options),
        }
    }

    fn kernel_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        let fast = transposed_geometry(&x, &weight, &options)
            .zip(f32_data(&x))
            .zip(f32_data(&weight));
        let bias_ok = bias.dtype() == DType::F32;
        match fast {
            Some(((g, x), w)) if bias_ok => {
                let bias_data = f32_data(&bias);
                let [batch, channels_in, ..] = dims::<4>(&x);
                let y = conv::image_grad(
                    &g,
                    batch,
                    w.storage(),
                    channels_in,
                    x.storage(),
                    bias_data.as_ref().map(|b| b.storage()),
                );
                from_vec(y, &[batch, g.channels, g.image[0], g.image[1]])
            }
            _ => Flex::conv_transpose2d(x, weight, Some(bias), options),
        }
    }

    fn kernel_conv_transpose2d_x_backward(
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        // The geometry is read off the output gradient, whose grid is the transposed output.
        let fast = transposed_geometry_from_output(&output_grad, &weight, &options)
            .zip(f32_data(&weight))
            .zip(f32_data(&output_grad));
        match fast {
            Some(((g, w), dy)) => {
                let [batch, ..] = dims::<4>(&dy);
                let m = dims::<4>(&w)[0];
                let dx = conv::forward(&g, batch, dy.storage(), w.storage(), m, None);
                from_vec(dx, &[batch, m, g.output[0], g.output[1]])
            }
            None => Flex::conv_transpose2d_x_backward(weight, output_grad, options),
        }
    }

    fn kernel_conv_transpose2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        options: ConvTransposeOptions<2>,
    ) -> FloatTensor<Self> {
        let fast = transposed_geometry(&x, &weight, &options)
            .zip(f32_data(&x))
            .zip(f32_data(&output_grad));
        match fast {
            Some(((g, x_data), dy)) => {
                let [batch, channels_in, ..] = dims::<4>(&x_data);
                let weight_dims = dims::<4>(&weight);
                let dw = conv::weight_grad(&g, batch, dy.storage(), x_data.storage(), channels_in);
                from_vec(dw, &weight_dims)
            }
            None => Flex::conv_transpose2d_weight_backward(x, weight, output_grad, options),
        }
    }

    fn kernel_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [Some(data), Some(g), Some(b)] = [&x, &gamma, &beta].map(f32_data) else {
            return fallback::batch_norm_train::<Flex>(x, gamma, beta, epsilon, activation);
        };
        let (dims, shape) = norm_shape(&data);
        let (y, mean, variance) = norm::batch_norm_forward(
            data.storage(),
            shape,
            g.storage(),
            b.storage(),
            epsilon,
            activation,
        );
        three((
            (y, &dims),
            (mean, &[shape.channels]),
            (variance, &[shape.channels]),
        ))
    }

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
        let all = [&x, &gamma, &beta, &mean, &variance, &output_grad].map(f32_data);
        let [Some(data), Some(g), Some(b), Some(m), Some(v), Some(dy)] = all else {
            return fallback::batch_norm_train_backward::<Flex>(
                x,
                gamma,
                beta,
                mean,
                variance,
                epsilon,
                activation,
                output_grad,
            );
        };
        let (dims, shape) = norm_shape(&data);
        let (dx, dgamma, dbeta) = norm::batch_norm_backward(
            data.storage(),
            shape,
            g.storage(),
            b.storage(),
            m.storage(),
            v.storage(),
            epsilon,
            activation,
            dy.storage(),
        );
        three((
            (dx, &dims),
            (dgamma, &[shape.channels]),
            (dbeta, &[shape.channels]),
        ))
    }

    fn kernel_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [Some(data), Some(g), Some(b)] = [&x, &gamma, &beta].map(f32_data) else {
            return fallback::group_norm::<Flex>(x, gamma, beta, groups, epsilon, activation);
        };
        let (dims, shape) = norm_shape(&data);
        let (y, mean, inv_std) = norm::group_norm_forward(
            data.storage(),
            shape,
            groups,
            g.storage(),
            b.storage(),
            epsilon,
            activation,
        );
        three((
            (y, &dims),
            (mean, &[shape.batch, groups]),
            (inv_std, &[shape.batch, groups]),
        ))
    }

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
        let all = [&x, &gamma, &beta, &mean, &inv_std, &output_grad].map(f32_data);
        let [Some(data), Some(g), Some(b), Some(m), Some(s), Some(dy)] = all else {
            return fallback::group_norm_backward::<Flex>(
                x,
                gamma,
                beta,
                mean,
                inv_std,
                groups,
                activation,
                output_grad,
            );
        };
        let (dims, shape) = norm_shape(&data);
        let (dx, dgamma, dbeta) = norm::group_norm_backward(
            data.storage(),
            shape,
            groups,
            g.storage(),
            b.storage(),
            m.storage(),
            s.storage(),
            activation,
            dy.storage(),
        );
        three((
            (dx, &dims),
            (dgamma, &[shape.channels]),
            (dbeta, &[shape.channels]),
        ))
    }
}

/// The transposed convolution's geometry from its output gradient `[batch, channels_out, H, W]`.
fn transposed_geometry_from_output(
    output_grad: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvTransposeOptions<2>,
) -> Option<ConvGeometry> {
    let [_, channels_out, h, w] = dims::<4>(output_grad);
    let [_, weight_out, kh, kw] = dims::<4>(weight);
    if options.groups != 1 || options.dilation != [1, 1] || weight_out != channels_out {
        return None;
    }
    let out = |size: usize, axis: usize, k: usize| {
        (size + 2 * options.padding[axis])
            .checked_sub(k)
            .map(|span| span / options.stride[axis] + 1)
    };
    Some(ConvGeometry {
        channels: channels_out,
        image: [h, w],
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding,
        output: [out(h, 0, kh)?, out(w, 1, kw)?],
    })
}

/// The dims of `x [batch, channels, ...]`, and them as batch, channels and the product of the
/// rest.
fn norm_shape(x: &FlexTensor) -> (Vec<usize>, NormShape) {
    let dims = x.layout().shape().to_vec();
    let shape = NormShape {
        batch: dims[0],
        channels: dims[1],
        spatial: dims[2..].iter().product(),
    };
    (dims, shape)
}
