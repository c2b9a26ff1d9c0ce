//! Convolution as one GEMM over unfolded patches (im2col), for contiguous f32 NCHW data.
//!
//! Every convolution pass of a network is one of three products between the weight matrix
//! `W [m, r]` (r = channels · kh · kw, the patch length), the unfolded patches `U(x) [r, p]` of an
//! image `x` (p = output pixels) and an output-side matrix `Y [m, p]`:
//!
//! | pass                         | product                       |
//! |------------------------------|-------------------------------|
//! | convolution                  | `Y = W · U(x)`                |
//! | its weight gradient          | `dW = dY · U(x)ᵀ`             |
//! | its input gradient           | `dx = fold(Wᵀ · dY)`          |
//!
//! where `fold` (col2im) is the adjoint of `U`: it adds every patch entry back onto the pixel it
//! came from. A transposed convolution is the same geometry read the other way round (its output
//! is the "image" side), so its forward pass is [`image_grad`], its input gradient [`forward`] and
//! its weight gradient [`weight_grad`] with the two operands swapped.
//!
//! Several samples are unfolded side by side (`U [r, count · p]`), so that one GEMM covers a
//! whole chunk of the batch: at 7x7 outputs a per-sample GEMM would have only 49 columns. Chunks
//! are sized so that the patch matrix stays near [`PATCH_BUDGET`] floats, and its buffer is reused
//! from chunk to chunk. Packing loops run in parallel on rayon's pool, one patch row (unfold) or
//! one image plane (fold) per task, so that no two tasks write the same memory.

use std::cell::Cell;

use rayon::prelude::*;

use super::{channels_last, shifted, strided, zeros};

/// Floats of patch matrix per chunk (16 MiB): large enough for a wide GEMM, small enough to stay
/// out of the way of the activations.
const PATCH_BUDGET: usize = 4 << 20;

thread_local! {
    /// The scratch buffers of the last call on this thread, kept for the next one: reusing them
    /// saves an allocation of up to [`PATCH_BUDGET`] floats per pass and the page faults of
    /// touching it afresh.
    static SCRATCH: Cell<Vec<Vec<f32>>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `N` scratch buffers of at least `sizes` floats (contents unspecified: every
/// user overwrites what it reads). A nested call gets buffers of its own.
pub(super) fn with_scratch<const N: usize, R>(
    sizes: [usize; N],
    f: impl FnOnce([&mut [f32]; N]) -> R,
) -> R {
    let mut buffers = SCRATCH.take();
    if buffers.len() < N {
        buffers.resize_with(N, Vec::new);
    }
    for (buffer, &size) in buffers.iter_mut().zip(&sizes) {
        if buffer.len() < size {
            buffer.resize(size, 0.0);
        }
    }
    let result = {
        let mut slices = buffers
            .iter_mut()
            .zip(sizes)
            .map(|(b, size)| &mut b[..size]);
        f(std::array::from_fn(|_| {
            slices.next().expect("one buffer per size")
        }))
    };
    SCRATCH.set(buffers);
    result
}

/// A 2-D convolution (dilation 1, one group) of a batch: its image side, the output grid it
/// gives, and the channels of both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Samples in the batch.
    pub batch: usize,
    /// Channels of the image side.
    pub channels: usize,
    /// Channels of the output side, `m`: the rows of the weight matrix.
    pub out_channels: usize,
    /// Height and width of the image side.
    pub image: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding before the first row and column (the padding after them only shows in the
    /// output size).
    pub padding: [usize; 2],
    /// Height and width of the output grid.
    pub output: [usize; 2],
}

impl ConvGeometry {
    /// Entries of one patch: `channels · kh · kw`, the inner dimension of the GEMMs.
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Pixels of the output grid.
    pub fn out_pixels(&self) -> usize {
        self.output[0] * self.output[1]
    }

    /// Floats of one image.
    pub fn image_len(&self) -> usize {
        self.channels * self.image[0] * self.image[1]
    }

    /// Samples per chunk of the batch.
    pub(super) fn chunk(&self) -> usize {
        (PATCH_BUDGET / (self.patch_len() * self.out_pixels()).max(1)).clamp(1, self.batch.max(1))
    }

    /// The output positions `o` along one axis whose input index `o·s + k − pad` falls inside
    /// `0..size`, for kernel offset `k`.
    fn valid(&self, axis: usize, k: usize) -> std::ops::Range<usize> {
        let (s, pad, size, out) = (
            self.stride[axis],
            self.padding[axis],
            self.image[axis],
            self.output[axis],
        );
        let low = pad.saturating_sub(k).div_ceil(s);
        // Largest o with o·s + k − pad <= size − 1.
        let high = match (size + pad).checked_sub(k + 1) {
            Some(span) => (span / s + 1).min(out),
            None => 0,
        };
        low.min(high)..high
    }
}

/// A row-major or strided matrix view over a slice, for [`matmul`].
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_stride: usize,
    pub(super) col_stride: usize,
}

impl<'a> View<'a> {
    pub(super) fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    pub(super) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// The view as a faer matrix. Every view this module builds has a unit column stride (a
    /// row-major matrix) or a unit row stride (the transpose of one).
    fn mat(self) -> faer::MatRef<'a, f32> {
        if self.col_stride == 1 {
            faer::MatRef::from_row_major_slice_with_stride(
                self.data,
                self.rows,
                self.cols,
                self.row_stride,
            )
        } else {
            assert_eq!(self.row_stride, 1, "a GEMM operand needs one unit stride");
            faer::MatRef::from_row_major_slice_with_stride(
                self.data,
                self.cols,
                self.rows,
                self.col_stride,
            )
            .transpose()
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst [m, n] (row-major) = (accumulate ? dst : 0) + lhs [m, k] · rhs [k, n]`, through faer's
/// matmul on all of rayon's threads.
pub(super) fn matmul(dst: &mut [f32], accumulate: bool, lhs: View<'_>, rhs: View<'_>) {
    matmul_on(faer::Par::rayon(0), dst, accumulate, lhs, rhs);
}

/// [`matmul`] on the threads `par` gives: `Par::Seq` inside a task that is one of many.
pub(super) fn matmul_on(
    par: faer::Par,
    dst: &mut [f32],
    accumulate: bool,
    lhs: View<'_>,
    rhs: View<'_>,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "inner dimensions differ");
    assert!(
        dst.len() >= m * n && lhs.fits() && rhs.fits(),
        "matrix out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let accum = if accumulate {
        faer::Accum::Add
    } else {
        faer::Accum::Replace
    };
    let dst = faer::MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
    faer::linalg::matmul::matmul(dst, accum, lhs.mat(), rhs.mat(), 1.0f32, par);
}

/// Unfolds `count` images (contiguous, starting at `images[0]`) into `patches [r, count · p]`:
/// row `(c, ki, kj)`, column `(n, oh, ow)` holds `x[n, c, oh·sh + ki − ph, ow·sw + kj − pw]`, or 0
/// in the padding.
fn unfold(g: &ConvGeometry, images: &[f32], count: usize, patches: &mut [f32]) {
    let p = g.out_pixels();
    let row_len = count * p;
    let [kh, kw] = g.kernel;
    let [h, w] = g.image;
    let [oh_count, ow_count] = g.output;
    patches[..g.patch_len() * row_len]
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(row, dst)| {
            let (c, ki, kj) = (row / (kh * kw), (row / kw) % kh, row % kw);
            let rows = g.valid(0, ki);
            let cols = g.valid(1, kj);
            for n in 0..count {
                let plane = &images[(n * g.channels + c) * h * w..][..h * w];
                let out = &mut dst[n * p..][..p];
                for oh in 0..oh_count {
                    let line = &mut out[oh * ow_count..][..ow_count];
                    if !rows.contains(&oh) {
                        line.fill(0.0);
                        continue;
                    }
                    let src = &plane[(oh * g.stride[0] + ki - g.padding[0]) * w..][..w];
                    line[..cols.start].fill(0.0);
                    line[cols.end..].fill(0.0);
                    if cols.is_empty() {
                        continue;
                    }
                    let first = cols.start * g.stride[1] + kj - g.padding[1];
                    if g.stride[1] == 1 {
                        line[cols.clone()].copy_from_slice(&src[first..first + cols.len()]);
                    } else {
                        let taken = src[first..].iter().step_by(g.stride[1]);
                        for (d, s) in line[cols.clone()].iter_mut().zip(taken) {
                            *d = *s;
                        }
                    }
                }
            }
        });
}

/// Folds `patches [r, count · p]` back onto `count` images: the adjoint of [`unfold`]. Each image
/// plane starts at `fill[c]` (a bias, or 0) and gathers every patch entry that came from it.
fn fold(g: &ConvGeometry, patches: &[f32], count: usize, fill: Option<&[f32]>, images: &mut [f32]) {
    let p = g.out_pixels();
    let row_len = count * p;
    let [kh, kw] = g.kernel;
    let [h, w] = g.image;
    let ow_count = g.output[1];
    images[..count * g.image_len()]
        .par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(index, plane)| {
            let (n, c) = (index / g.channels, index % g.channels);
            plane.fill(fill.map_or(0.0, |values| values[c]));
            for ki in 0..kh {
                let rows = g.valid(0, ki);
                for kj in 0..kw {
                    let cols = g.valid(1, kj);
                    if cols.is_empty() {
                        continue;
                    }
                    let row = (c * kh + ki) * kw + kj;
                    let src = &patches[row * row_len + n * p..][..p];
                    for oh in rows.clone() {
                        let line = &src[oh * ow_count..][..ow_count];
                        let dst = &mut plane[(oh * g.stride[0] + ki - g.padding[0]) * w..][..w];
                        let first = cols.start * g.stride[1] + kj - g.padding[1];
                        let targets = dst[first..].iter_mut().step_by(g.stride[1]);
                        for (d, s) in targets.zip(&line[cols.clone()]) {
                            *d += s;
                        }
                    }
                }
            }
        });
}

/// Copies the samples `first..first + count` of `y [batch, m, p]` into `matrix [m, count · p]`.
pub(super) fn gather(
    y: &[f32],
    m: usize,
    p: usize,
    first: usize,
    count: usize,
    matrix: &mut [f32],
) {
    matrix[..m * count * p]
        .par_chunks_mut(count * p)
        .enumerate()
        .for_each(|(row, dst)| {
            for n in 0..count {
                dst[n * p..][..p].copy_from_slice(&y[((first + n) * m + row) * p..][..p]);
            }
        });
}

/// `y [batch, m, p] = W [m, r] · U(x_n) (+ bias [m])` for every sample: a convolution, or the
/// input gradient of a transposed convolution.
pub fn forward(g: &ConvGeometry, images: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (batch, m, r, p) = (g.batch, g.out_channels, g.patch_len(), g.out_pixels());
    assert_eq!(images.len(), batch * g.image_len(), "image size");
    assert_eq!(weight.len(), m * r, "weight size");
    if shifted::applies(g) {
        return shifted::forward(g, images, weight, bias);
    }
    if strided::applies(g) {
        return strided::forward(g, images, weight, bias);
    }
    if channels_last::applies(g) {
        return channels_last::forward(g, images, weight, bias);
    }
    let chunk = g.chunk();
    let mut out = zeros(batch * m * p);
    with_scratch([r * chunk * p, m * chunk * p], |[patches, product]| {
        for first in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - first);
            let columns = count * p;
            unfold(g, &images[first * g.image_len()..], count, patches);
            matmul(
                product,
                false,
                View::row_major(weight, m, r),
                View::row_major(&patches[..r * columns], r, columns),
            );
            scatter(product, m, p, count, bias, &mut out[first * m * p..]);
        }
    });
    out
}

/// `product [m, count · p]` moved to `out [count, m, p]`, adding `bias [m]` on the way.
pub(super) fn scatter(
    product: &[f32],
    m: usize,
    p: usize,
    count: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let columns = count * p;
    out[..count * m * p]
        .par_chunks_mut(p)
        .enumerate()
        .for_each(|(index, dst)| {
            let (n, row) = (index / m, index % m);
            let src = &product[row * columns + n * p..][..p];
            add_bias(dst, src, bias.map_or(0.0, |b| b[row]));
        });
}

/// `dst = src + bias`, element by element: a GEMM's output moved to its place with the bias.
pub(super) fn add_bias(dst: &mut [f32], src: &[f32], bias: f32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s + bias;
    }
}

/// `dW [m, r] = Σ_n dY_n [m, p] · U(x_n)ᵀ`: the weight gradient of a convolution (`dY` its
/// output gradient, `x` its input), or of a transposed convolution (`dY` its input, `x` its
/// output gradient).
pub fn weight_grad(g: &ConvGeometry, images: &[f32], output_grad: &[f32]) -> Vec<f32> {
    let (batch, m, r, p) = (g.batch, g.out_channels, g.patch_len(), g.out_pixels());
    assert_eq!(images.len(), batch * g.image_len(), "image size");
    assert_eq!(output_grad.len(), batch * m * p, "gradient size");
    if shifted::applies(g) {
        return shifted::weight_grad(g, images, output_grad);
    }
    if strided::applies(g) {
        return strided::weight_grad(g, images, output_grad);
    }
    if channels_last::applies(g) {
        return channels_last::weight_grad(g, images, output_grad);
    }
    let chunk = g.chunk();
    let mut grad = vec![0.0f32; m * r];
    with_scratch([r * chunk * p, m * chunk * p], |[patches, rows]| {
        for (index, first) in (0..batch).step_by(chunk).enumerate() {
            let count = chunk.min(batch - first);
            let columns = count * p;
            unfold(g, &images[first * g.image_len()..], count, patches);
            gather(output_grad, m, p, first, count, rows);
            matmul(
                &mut grad,
                index > 0,
                View::row_major(&rows[..m * columns], m, columns),
                View::row_major(&patches[..r * columns], r, columns).t(),
            );
        }
    });
    grad
}

/// `x [batch, channels, h, w] = fold(Wᵀ · dY_n) (+ bias [channels])`: the input gradient of a
/// convolution, or the forward pass of a transposed convolution (with its bias).
pub fn image_grad(g: &ConvGeometry, weight: &[f32], dy: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (batch, m, r, p) = (g.batch, g.out_channels, g.patch_len(), g.out_pixels());
    assert_eq!(weight.len(), m * r, "weight size");
    assert_eq!(dy.len(), batch * m * p, "gradient size");
    if shifted::applies_to_image_grad(g) {
        return shifted::image_grad(g, weight, dy, bias);
    }
    if strided::applies_to_image_grad(g) {
        return strided::image_grad(g, weight, dy, bias);
    }
    if channels_last::applies(g) {
        return channels_last::image_grad(g, weight, dy, bias);
    }
    let chunk = g.chunk();
    let mut images = zeros(batch * g.image_len());
    with_scratch([r * chunk * p, m * chunk * p], |[patches, rows]| {
        for first in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - first);
            let columns = count * p;
            gather(dy, m, p, first, count, rows);
            matmul(
                patches,
                false,
                View::row_major(weight, m, r).t(),
                View::row_major(&rows[..m * columns], m, columns),
            );
            fold(
                g,
                patches,
                count,
                bias,
                &mut images[first * g.image_len()..],
            );
        }
    });
    images
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A direct seven-loop convolution, the definition the GEMM form must match.
    pub(in crate::flex) fn direct(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let (batch, m) = (g.batch, g.out_channels);
        let [kh, kw] = g.kernel;
        let [h, wd] = g.image;
        let [oh, ow] = g.output;
        let mut y = vec![0.0f32; batch * m * oh * ow];
        for n in 0..batch {
            for o in 0..m {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut acc = 0.0f64;
                        for c in 0..g.channels {
                            for a in 0..kh {
                                for b in 0..kw {
                                    let ih = (i * g.stride[0] + a) as isize - g.padding[0] as isize;
                                    let iw = (j * g.stride[1] + b) as isize - g.padding[1] as isize;
                                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wd
                                    {
                                        let xv = x[((n * g.channels + c) * h + ih as usize) * wd
                                            + iw as usize];
                                        let wv = w[((o * g.channels + c) * kh + a) * kw + b];
                                        acc += xv as f64 * wv as f64;
                                    }
                                }
                            }
                        }
                        y[((n * m + o) * oh + i) * ow + j] = acc as f32;
                    }
                }
            }
        }
        y
    }

    pub(in crate::flex) fn values(len: usize, seed: u32) -> Vec<f32> {
        // A fixed, irregular sequence in [-1, 1): enough to catch any index error.
        (0..len)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (v % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// Images, weights and output gradients of the sizes `g` takes, from the three seeds.
    pub(in crate::flex) fn operands(g: &ConvGeometry, seeds: [u32; 3]) -> [Vec<f32>; 3] {
        let m = g.out_channels;
        [
            values(g.batch * g.image_len(), seeds[0]),
            values(m * g.patch_len(), seeds[1]),
            values(g.batch * m * g.out_pixels(), seeds[2]),
        ]
    }

    pub(in crate::flex) fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// A convolution of `batch` images padded by `padding` on both sides of each axis.
    pub(in crate::flex) fn padded_geometry(
        [m, c, batch]: [usize; 3],
        image: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> ConvGeometry {
        let out = |axis: usize| (image[axis] + 2 * padding[axis] - kernel[axis]) / stride[axis] + 1;
        ConvGeometry {
            batch,
            channels: c,
            out_channels: m,
            image,
            kernel,
            stride,
            padding,
            output: [out(0), out(1)],
        }
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |c, image, kernel, stride, padding| {
            padded_geometry([5, c, 3], image, kernel, [stride; 2], padding)
        };
        vec![
            g(3, [28, 28], [4, 4], 2, [1, 1]), // the DCGAN discriminator's first layer
            g(4, [7, 9], [3, 3], 1, [1, 1]),   // the U-Net's 3x3 convolution, odd sizes
            g(2, [6, 5], [1, 1], 1, [0, 0]),   // a 1x1 skip convolution
            g(2, [11, 8], [5, 3], 3, [2, 0]),  // uneven kernel, stride 3
        ]
    }

    /// The signatures of [`forward`], [`image_grad`] and [`weight_grad`], for checks that any
    /// form of the three passes must pass.
    pub(in crate::flex) type Forward =
        fn(&ConvGeometry, &[f32], &[f32], Option<&[f32]>) -> Vec<f32>;
    pub(in crate::flex) type ImageGrad =
        fn(&ConvGeometry, &[f32], &[f32], Option<&[f32]>) -> Vec<f32>;
    pub(in crate::flex) type WeightGrad = fn(&ConvGeometry, &[f32], &[f32]) -> Vec<f32>;

    /// `forward` with a bias equals the direct convolution plus the bias, within 1e-5 relative.
    pub(in crate::flex) fn assert_matches_direct(
        g: &ConvGeometry,
        forward: Forward,
        seeds: [u32; 3],
    ) {
        let [x, w, _] = operands(g, [seeds[0], seeds[1], 0]);
        let m = g.out_channels;
        let bias = values(m, seeds[2]);
        let expected = direct(g, &x, &w);
        let got = forward(g, &x, &w, Some(&bias));
        let p = g.out_pixels();
        for (i, (e, v)) in expected.iter().zip(&got).enumerate() {
            let e = e + bias[(i / p) % m];
            assert!(
                (e - v).abs() <= 1e-5 * (1.0 + e.abs()),
                "{g:?} at {i}: {e} vs {v}"
            );
        }
    }

    /// The input and weight gradients are the adjoints of the forward map:
    /// <dY, conv(x, W)> = <fold(Wᵀ·dY), x> = <dW(x, dY), W>, within 1e-4 relative.
    pub(in crate::flex) fn assert_adjoint(
        g: &ConvGeometry,
        (forward, image_grad, weight_grad): (Forward, ImageGrad, WeightGrad),
        seeds: [u32; 3],
    ) {
        let [x, w, dy] = operands(g, seeds);
        let y = forward(g, &x, &w, None);
        let dx = image_grad(g, &w, &dy, None);
        let dw = weight_grad(g, &x, &dy);
        let reference = dot(&dy, &y);
        for other in [dot(&dx, &x), dot(&dw, &w)] {
            assert!(
                (reference - other).abs() <= 1e-4 * (1.0 + reference.abs()),
                "{g:?}: {reference} vs {other}"
            );
        }
    }

    #[test]
    fn gemm_forward_matches_the_direct_convolution() {
        for g in geometries() {
            assert_matches_direct(&g, forward, [1, 2, 3]);
        }
    }

    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass() {
        for g in geometries() {
            assert_adjoint(&g, (forward, image_grad, weight_grad), [4, 5, 6]);
        }
    }

    #[test]
    fn small_chunks_give_the_same_result_as_one() {
        // A geometry whose patch matrix is larger than the budget splits the batch into chunks
        // (stride 2, so that it takes the unfolded form).
        let g = ConvGeometry {
            batch: 12,
            channels: 256,
            out_channels: 2,
            image: [28, 28],
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            output: [14, 14],
        };
        assert!(!shifted::applies(&g));
        let (batch, m) = (g.batch, g.out_channels);
        assert!(g.chunk() < batch);
        let [x, w, dy] = operands(&g, [7, 8, 9]);
        let one_sample = ConvGeometry { batch: 1, ..g };
        let one_sample_at_a_time = |n: usize| {
            let x_n = &x[n * g.image_len()..(n + 1) * g.image_len()];
            forward(&one_sample, x_n, &w, None)
        };
        let y = forward(&g, &x, &w, None);
        for n in [0, 5, 11] {
            let per = m * g.out_pixels();
            assert_eq!(
                &y[n * per..(n + 1) * per],
                one_sample_at_a_time(n).as_slice()
            );
        }
        let dw = weight_grad(&g, &x, &dy);
        let mut dw_sum = vec![0.0f64; dw.len()];
        for n in 0..batch {
            let x_n = &x[n * g.image_len()..(n + 1) * g.image_len()];
            let dy_n = &dy[n * m * g.out_pixels()..(n + 1) * m * g.out_pixels()];
            for (s, v) in dw_sum.iter_mut().zip(weight_grad(&one_sample, x_n, dy_n)) {
                *s += v as f64;
            }
        }
        for (a, b) in dw.iter().zip(&dw_sum) {
            assert!((*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()));
        }
    }
}
