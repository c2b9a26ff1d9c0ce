//! The kernels on burn's CPU backend (flex), for f32 tensors. Anything they do not cover (other
//! dtypes, grouped or dilated convolutions) goes to burn's own ops, like every other backend.

pub mod activation;
pub mod adam;
pub mod channels_last;
pub mod conv;
mod direct;
pub mod norm;
pub mod shifted;
mod simd;
pub mod strided;
mod transpose;

use burn::backend::Flex;
use burn::backend::ops::{ConvOptions, ConvTransposeOptions};
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};

use crate::Activation;
use crate::backend::{
    AdamUpdate, ConvKind, ConvOperand, Convolution, KernelBackend, MatrixProduct, NormKind,
    NormStats, Normalization,
};
use crate::fallback;
use conv::{ConvGeometry, View};
use norm::{NormParams, NormShape};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Floats per task of an element-wise pass: large enough that a task outweighs its
/// scheduling, small enough that both cores get work from a 7x7 feature map's batch.
const ELEMENTWISE_CHUNK: usize = 1 << 15;

/// Shortest contiguous run for which [`f32_data`] copies a strided tensor run by run, in
/// parallel: below it, burn's own copy.
const MIN_RUN: usize = 256;

/// `len` floats, piece `index` of them (`piece` floats, the last one shorter) written by
/// `fill(index, piece)` on the rayon threads, each piece zeroed just before by the thread that
/// fills it; with what each call returned, in order. `vec![0.0; len]` zeroes every float on
/// the calling thread while the others wait (memory the allocator reuses is not zero): in a
/// `full` U-Net iteration on two cores that serial `memset` was about 5 % of the wall time.
/// Here the zeros go to the cache the piece is written through next.
fn filled_in_parallel<T: Send>(
    len: usize,
    piece: usize,
    fill: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    written_in_parallel(
        len,
        piece,
        |_, piece| piece.fill(MaybeUninit::new(0.0)),
        fill,
    )
}

/// `len` floats, piece `index` of them copied from `source(index, piece_len)` and then passed to
/// `update(index, piece)`, on the rayon threads: for passes that start from a copy, which
/// [`filled_in_parallel`] would zero first.
fn copied_in_parallel<'s>(
    len: usize,
    piece: usize,
    source: impl Fn(usize, usize) -> &'s [f32] + Sync,
    update: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let copy = |index: usize, piece: &mut [MaybeUninit<f32>]| {
        let source = source(index, piece.len());
        assert_eq!(source.len(), piece.len(), "piece {index} of the source");
        for (float, value) in piece.iter_mut().zip(source) {
            float.write(*value);
        }
    };
    written_in_parallel(len, piece, copy, update).0
}

/// The pieces of [`filled_in_parallel`] and [`copied_in_parallel`]: each written in full by
/// `init` (which must write every float of it), then passed to `fill`.
fn written_in_parallel<T: Send>(
    len: usize,
    piece: usize,
    init: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
    fill: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    let mut data = Vec::with_capacity(len);
    let returned = data.spare_capacity_mut()[..len]
        .par_chunks_mut(piece.max(1))
        .enumerate()
        .map(|(index, piece)| {
            init(index, piece);
            // SAFETY: `init` has written every float of the piece.
            let piece = unsafe { &mut *(piece as *mut [MaybeUninit<f32>] as *mut [f32]) };
            fill(index, piece)
        })
        .collect();
    // SAFETY: the pieces cover `..len`, and each was written before `collect` returned.
    unsafe { data.set_len(len) };
    (data, returned)
}

/// `len` zeros, written piece by piece on the rayon threads (see [`filled_in_parallel`]): for
/// outputs that are accumulated into, or written in an order of their own.
fn zeros(len: usize) -> Vec<f32> {
    filled_in_parallel(len, ELEMENTWISE_CHUNK, |_, _| ()).0
}

/// A contiguous f32 copy of `tensor` (the tensor itself when it already is one), or `None` for
/// another dtype.
///
/// The gradients of a concatenation (the U-Net's skip connections) arrive as slices along the
/// channels, `[n, c', h, w]` of `[n, c, h, w]`: runs of `c' · h · w` contiguous floats. burn
/// copies such a layout as a 2-D transpose, one float at a time; here each run is one
/// `memcpy`, the runs spread over the cores.
fn f32_data(tensor: &FlexTensor) -> Option<FlexTensor> {
    if tensor.dtype() != DType::F32 {
        return None;
    }
    let layout = tensor.layout();
    let blocks = layout.strided_blocks();
    if layout.is_contiguous() || !layout.has_positive_strides() || blocks.block_len() < MIN_RUN {
        return Some(tensor.to_contiguous());
    }
    let run = blocks.block_len();
    let starts: Vec<usize> = blocks.block_starts().collect();
    let source = tensor.storage::<f32>();
    let data = copied_in_parallel(
        layout.num_elements(),
        run,
        |index, len| &source[starts[index]..][..len],
        |_, _| (),
    );
    Some(from_vec(data, layout.shape()))
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

/// The geometry of `op`, when the kernels handle it: one group, no dilation, and sizes that
/// agree.
fn geometry(op: &Convolution<Flex>) -> Option<ConvGeometry> {
    let (x, weight) = (dims::<4>(&op.x), dims::<4>(&op.weight));
    // A convolution's weight is [out, in, kh, kw], a transposed convolution's [in, out, kh, kw].
    let (groups, dilation, weight_in) = match &op.kind {
        ConvKind::Plain(options) => (options.groups, options.dilation, weight[1]),
        ConvKind::Transposed(options) => (options.groups, options.dilation, weight[0]),
    };
    if groups != 1 || dilation != [1, 1] || weight_in != x[1] {
        return None;
    }
    match &op.kind {
        ConvKind::Plain(options) => conv_geometry(x, weight, options),
        ConvKind::Transposed(options) => transposed_geometry(x, weight, options),
    }
}

/// The geometry of a convolution of `x` by `weight` (their dims).
fn conv_geometry(
    [batch, channels, h, w]: [usize; 4],
    [channels_out, _, kh, kw]: [usize; 4],
    options: &ConvOptions<2>,
) -> Option<ConvGeometry> {
    let [(top, bottom), (left, right)] = options.padding;
    let out = |size: usize, before: usize, after: usize, k: usize, s: usize| {
        (size + before + after)
            .checked_sub(k)
            .map(|span| span / s + 1)
    };
    Some(ConvGeometry {
        batch,
        channels,
        out_channels: channels_out,
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

/// The geometry of a transposed convolution of `x` by `weight` (their dims), seen from its
/// output (the image side of the convolution it transposes).
fn transposed_geometry(
    [batch, channels_in, h, w]: [usize; 4],
    [_, channels_out, kh, kw]: [usize; 4],
    options: &ConvTransposeOptions<2>,
) -> Option<ConvGeometry> {
    let size = |input: usize, axis: usize, k: usize| {
        ((input - 1) * options.stride[axis] + k + options.padding_out[axis])
            .checked_sub(2 * options.padding[axis])
    };
    let geometry = ConvGeometry {
        batch,
        channels: channels_out,
        out_channels: channels_in,
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

/// The two sides of a convolution's geometry: the images it reads and the output grid it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Image,
    Output,
}

impl Side {
    /// Where the input of a convolution of this kind lies: a transposed convolution runs the
    /// convolution it transposes from its output side back to its image side.
    fn of_input(kind: &ConvKind) -> Self {
        match kind {
            ConvKind::Plain(_) => Self::Image,
            ConvKind::Transposed(_) => Self::Output,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Image => Self::Output,
            Self::Output => Self::Image,
        }
    }
}

/// `from`, a batch on one side of the geometry `g`, carried to the side `to` through `weight`
/// (plus `bias`): to the output side by [`conv::forward`], to the image side by
/// [`conv::image_grad`].
fn carry(
    g: &ConvGeometry,
    from: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    to: Side,
) -> FlexTensor {
    let (from, weight) = (from.storage(), weight.storage());
    let bias = bias.map(|b| b.storage());
    match to {
        Side::Output => {
            let y = conv::forward(g, from, weight, bias);
            from_vec(y, &[g.batch, g.out_channels, g.output[0], g.output[1]])
        }
        Side::Image => {
            let x = conv::image_grad(g, weight, from, bias);
            from_vec(x, &[g.batch, g.channels, g.image[0], g.image[1]])
        }
    }
}

/// The matrix `m` (contiguous, 2-D) as a view, transposed or not.
fn matrix_view(m: &FlexTensor, transposed: bool) -> View<'_> {
    let [rows, cols] = dims::<2>(m);
    let view = View::row_major(m.storage(), rows, cols);
    if transposed { view.t() } else { view }
}

/// The parameters of `op` for the kernels, with `gamma` and `beta` the f32 copies of its γ and β.
fn norm_params<'a>(
    op: &Normalization<Flex>,
    gamma: &'a FlexTensor,
    beta: &'a FlexTensor,
) -> NormParams<'a> {
    NormParams {
        gamma: gamma.storage(),
        beta: beta.storage(),
        epsilon: op.kind.epsilon(),
        activation: op.activation,
    }
}

impl KernelBackend for Flex {
    fn kernel_conv(op: Convolution<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let fast = geometry(&op)
            .zip(f32_data(&op.x))
            .zip(f32_data(&op.weight))
            .zip(f32_data(&bias));
        let Some((((g, x), weight), bias_data)) = fast else {
            return fallback::conv::<Flex>(op, bias);
        };
        let to = Side::of_input(&op.kind).other();
        carry(&g, &x, &weight, Some(&bias_data), to)
    }

    fn kernel_conv_backward(
        op: Convolution<Self>,
        output_grad: FloatTensor<Self>,
        wrt: ConvOperand,
    ) -> FloatTensor<Self> {
        // Each gradient reads the output gradient and the other operand.
        let other = match wrt {
            ConvOperand::Input => &op.weight,
            ConvOperand::Weight => &op.x,
        };
        let fast = geometry(&op)
            .zip(f32_data(other))
            .zip(f32_data(&output_grad));
        let Some(((g, other), dy)) = fast else {
            return fallback::conv_backward::<Flex>(op, output_grad, wrt);
        };
        let input_side = Side::of_input(&op.kind);
        match wrt {
            ConvOperand::Input => carry(&g, &dy, &other, None, input_side),
            ConvOperand::Weight => {
                let (images, outputs) = match input_side {
                    Side::Image => (&other, &dy),
                    Side::Output => (&dy, &other),
                };
                let dw = conv::weight_grad(&g, images.storage(), outputs.storage());
                from_vec(dw, &dims::<4>(&op.weight))
            }
        }
    }

    fn kernel_conv_bias_backward(
        op: Convolution<Self>,
        bias: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // burn's own pass swaps the batch and channel axes of `dY` and copies it whole before
        // summing; the sums read it where it lies.
        let Some(dy) = f32_data(&output_grad).filter(|dy| dy.layout().num_dims() >= 2) else {
            return fallback::conv_bias_backward::<Flex>(op, bias, output_grad);
        };
        let (_, shape) = norm_shape(&dy);
        let bias_dims = bias.layout().shape().to_vec();
        from_vec(norm::channel_totals(shape, dy.storage()), &bias_dims)
    }

    fn kernel_norm(op: Normalization<Self>) -> (FloatTensor<Self>, NormStats<Self>) {
        let [Some(x), Some(gamma), Some(beta)] = [&op.x, &op.gamma, &op.beta].map(f32_data) else {
            return fallback::norm::<Flex>(op);
        };
        let (dims, shape) = norm_shape(&x);
        let params = norm_params(&op, &gamma, &beta);
        let ((y, mean, spread), stats_dims) = match op.kind {
            NormKind::Batch { .. } => (
                norm::batch_norm_forward(x.storage(), shape, params),
                vec![shape.channels],
            ),
            NormKind::Group { groups, .. } => (
                norm::group_norm_forward(x.storage(), shape, groups, params),
                vec![shape.batch, groups],
            ),
        };
        let stats = NormStats {
            mean: from_vec(mean, &stats_dims),
            spread: from_vec(spread, &stats_dims),
        };
        (from_vec(y, &dims), stats)
    }

    fn kernel_norm_backward(
        op: Normalization<Self>,
        stats: NormStats<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let all = [
            &op.x,
            &op.gamma,
            &op.beta,
            &stats.mean,
            &stats.spread,
            &output_grad,
        ];
        let [
            Some(x),
            Some(gamma),
            Some(beta),
            Some(mean),
            Some(spread),
            Some(dy),
        ] = all.map(f32_data)
        else {
            return fallback::norm_backward::<Flex>(op, stats, output_grad);
        };
        let (dims, shape) = norm_shape(&x);
        let params = norm_params(&op, &gamma, &beta);
        let (x, saved, dy) = (
            x.storage(),
            (mean.storage(), spread.storage()),
            dy.storage(),
        );
        let (dx, dgamma, dbeta) = match op.kind {
            NormKind::Batch { .. } => norm::batch_norm_backward(x, shape, params, saved, dy),
            NormKind::Group { groups, .. } => {
                norm::group_norm_backward(x, shape, groups, params, saved, dy)
            }
        };
        let channels = [shape.channels];
        (
            from_vec(dx, &dims),
            from_vec(dgamma, &channels),
            from_vec(dbeta, &channels),
        )
    }

    fn kernel_activation(x: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        let Some(data) = f32_data(&x) else {
            return fallback::activation::<Flex>(x, act);
        };
        let z = data.storage::<f32>();
        let y = copied_in_parallel(
            z.len(),
            ELEMENTWISE_CHUNK,
            |index, len| &z[index * ELEMENTWISE_CHUNK..][..len],
            |_, y| activation::apply(act, y),
        );
        from_vec(y, &data.layout().shape().to_vec())
    }

    fn kernel_activation_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
        act: Activation,
    ) -> FloatTensor<Self> {
        let (Some(z), Some(grad)) = (f32_data(&x), f32_data(&output_grad)) else {
            return fallback::activation_backward::<Flex>(x, output_grad, act);
        };
        let (values, grad) = (z.storage::<f32>(), grad.storage::<f32>());
        let at =
            |index: usize, len: usize| index * ELEMENTWISE_CHUNK..index * ELEMENTWISE_CHUNK + len;
        let dz = copied_in_parallel(
            values.len(),
            ELEMENTWISE_CHUNK,
            |index, len| &values[at(index, len)],
            |index, dz| activation::backward(act, dz, &grad[at(index, dz.len())]),
        );
        from_vec(dz, &z.layout().shape().to_vec())
    }

    fn kernel_adam_step(
        update: AdamUpdate<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let operands = [
            &update.param,
            &update.grad,
            &update.moment_1,
            &update.moment_2,
        ];
        let shape = update.param.layout().shape();
        let same_shape = operands.iter().all(|t| t.layout().shape() == shape);
        let Some([Some(p), Some(g), Some(m), Some(v)]) = same_shape.then(|| operands.map(f32_data))
        else {
            return fallback::adam_step::<Flex>(update);
        };
        let shape = p.layout().shape().to_vec();
        let step = &update.step;
        let [p, m, v] = adam::step(p.storage(), g.storage(), m.storage(), v.storage(), step);
        (
            from_vec(p, &shape),
            from_vec(m, &shape),
            from_vec(v, &shape),
        )
    }

    fn kernel_matmul(op: MatrixProduct<Self>) -> FloatTensor<Self> {
        let matrices =
            [&op.lhs, &op.rhs].map(|m| f32_data(m).filter(|m| m.layout().shape().num_dims() == 2));
        let [Some(lhs), Some(rhs)] = matrices else {
            return fallback::matmul::<Flex>(op);
        };
        let (lhs, rhs) = (
            matrix_view(&lhs, op.transposed[0]),
            matrix_view(&rhs, op.transposed[1]),
        );
        if lhs.cols != rhs.rows {
            return fallback::matmul::<Flex>(op);
        }
        let mut product = zeros(lhs.rows * rhs.cols);
        conv::matmul(&mut product, false, lhs, rhs);
        from_vec(product, &[lhs.rows, rhs.cols])
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_piece_is_zeroed_before_it_is_filled_and_what_it_returns_comes_back_in_order() {
        let (data, returned) = filled_in_parallel(10, 3, |index, piece| {
            assert!(piece.iter().all(|&x| x == 0.0), "piece {index} not zeroed");
            piece[0] = index as f32 + 1.0;
            (index, piece.len())
        });
        assert_eq!(data, [1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 4.0]);
        assert_eq!(returned, [(0, 3), (1, 3), (2, 3), (3, 1)]);
        let (empty, none) = filled_in_parallel(0, 0, |_, _| ());
        assert!(empty.is_empty() && none.is_empty());
    }

    #[test]
    fn each_piece_is_copied_from_its_source_before_it_is_updated() {
        let source: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let data = copied_in_parallel(
            10,
            4,
            |index, len| &source[index * 4..][..len],
            |index, piece| piece[0] += 100.0 * (index + 1) as f32,
        );
        let expected = [100.0, 1.0, 2.0, 3.0, 204.0, 5.0, 6.0, 7.0, 308.0, 9.0];
        assert_eq!(data, expected);
        assert!(copied_in_parallel(0, 0, |_, _| &source[..0], |_, _| ()).is_empty());
    }

    fn counting(shape: &[usize]) -> FlexTensor {
        let data = (0..shape.iter().product::<usize>())
            .map(|i| i as f32)
            .collect();
        from_vec(data, shape)
    }

    #[test]
    fn strided_copies_hold_the_elements_they_view() {
        // Channels 1..4 of [2, 5, 16, 16]: runs of 3 · 256 floats, copied run by run.
        let slice = counting(&[2, 5, 16, 16]).narrow(1, 1, 3);
        assert!(!slice.is_contiguous());
        let copy = f32_data(&slice).expect("f32");
        assert!(copy.is_contiguous());
        assert_eq!(dims::<4>(&copy), [2, 3, 16, 16]);
        let expected: Vec<f32> = (0..2)
            .flat_map(|n| (0..3 * 256).map(move |i| (n * 5 * 256 + 256 + i) as f32))
            .collect();
        assert_eq!(copy.storage::<f32>(), &expected[..]);

        // A transpose has runs of one float: burn's own copy, the same elements.
        let transposed = counting(&[3, 300]).transpose(0, 1);
        let copy = f32_data(&transposed).expect("f32");
        let expected: Vec<f32> = (0..300)
            .flat_map(|col| (0..3).map(move |row| (row * 300 + col) as f32))
            .collect();
        assert_eq!(copy.storage::<f32>(), &expected[..]);
    }
}
