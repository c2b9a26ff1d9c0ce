//! Strided convolutions over a channels-last patch matrix.
//!
//! The patch matrix of [`super::conv`] has one row per `(channel, ki, kj)` and one column per
//! output pixel, so filling a row copies a handful of pixels at a time: at stride 2 every other
//! pixel of an image row, seven of them at the DCGAN's 7x7 outputs. Laid out channels-last
//! instead, images `[n, h, w, c]` and the patch matrix transposed, `Uᵀ [count · p, kh · kw · c]`
//! with entries ordered `(ki, kj, c)`, one output pixel's patch is `kh` runs of `kw · c`
//! consecutive floats (fewer where the window crosses the padding): a few long copies where the
//! plain layout takes hundreds of short ones. The weights are read in the same `(ki, kj, c)`
//! order, `W' [m, kh · kw · c]`, and the three passes are the products of [`super::conv`] with the
//! patch matrix transposed:
//!
//! | pass                  | product                                        |
//! |-----------------------|------------------------------------------------|
//! | convolution           | `Y [m, count · p] = W' · (Uᵀ)ᵀ`                 |
//! | its weight gradient   | `dW' = Σ dY · Uᵀ`                              |
//! | its input gradient    | `Pᵀ = dYᵀ · W'`, then fold `Pᵀ` onto the images |
//!
//! The layout changes (`[n, c, h, w]` to `[n, h, w, c]` and back, the weight reordered) are one
//! pass each over data the unfold would otherwise read or write `kh · kw / s²` times.

use rayon::prelude::*;

use super::conv::{ConvGeometry, View, gather, matmul, scatter, with_scratch};
use super::transpose::transpose;
use super::zeros;

/// Fewest image channels for which the channels-last form is used: below that the runs it copies
/// are too short to pay for the layout changes.
const MIN_CHANNELS: usize = 16;

/// Whether a convolution of this geometry (one not taken by the shifted form) takes the
/// channels-last form.
pub fn applies(g: &ConvGeometry) -> bool {
    g.channels >= MIN_CHANNELS
}

/// `[count, c, plane]` to `[count, plane, c]`, an image per task, in 16x16 blocks.
fn to_channels_last(images: &[f32], c: usize, plane: usize, out: &mut [f32]) {
    out.par_chunks_mut(plane * c)
        .zip(images.par_chunks(plane * c))
        .for_each(|(dst, src)| transpose(src, [c, plane], plane, dst, c));
}

/// Writes `images [batch, c, h, w]` zero-padded and channels-last into `padded [batch, height,
/// width, c]`: image pixel `(y, x)` at `(y + top, x + left)`, what falls past `height` or `width`
/// dropped. One task per image.
pub(super) fn pad_channels_last(
    images: &[f32],
    c: usize,
    [h, w]: [usize; 2],
    [top, left]: [usize; 2],
    [height, width]: [usize; 2],
    padded: &mut [f32],
) {
    let copied = w.min(width.saturating_sub(left));
    padded
        .par_chunks_mut(height * width * c)
        .zip(images.par_chunks(c * h * w))
        .for_each(|(image, planes)| {
            for (y, line) in image.chunks_exact_mut(width * c).enumerate() {
                match y.checked_sub(top).filter(|&row| row < h) {
                    Some(row) if copied > 0 => {
                        line[..left * c].fill(0.0);
                        let body = &mut line[left * c..];
                        transpose(&planes[row * w..], [c, copied], h * w, body, c);
                        line[(left + copied) * c..].fill(0.0);
                    }
                    _ => line.fill(0.0),
                }
            }
        });
}

/// `[count, plane, c]` to `[count, c, plane]`, each channel plus `fill[c]` (a bias) when given.
fn from_channels_last(
    nhwc: &[f32],
    c: usize,
    plane: usize,
    fill: Option<&[f32]>,
    images: &mut [f32],
) {
    images
        .par_chunks_mut(plane * c)
        .zip(nhwc.par_chunks(plane * c))
        .for_each(|(dst, src)| {
            transpose(src, [plane, c], c, dst, plane);
            if let Some(fill) = fill {
                for (channel, &shift) in dst.chunks_exact_mut(plane).zip(fill) {
                    channel.iter_mut().for_each(|value| *value += shift);
                }
            }
        });
}

/// Each `[rows, cols]` block of `blocks` transposed to `[cols, rows]`: the weights `[m, c, kh ·
/// kw]` as `[m, kh · kw, c]` (rows = c), and back (rows = kh · kw).
fn transpose_blocks(blocks: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; blocks.len()];
    for (dst, src) in out
        .chunks_exact_mut(rows * cols)
        .zip(blocks.chunks_exact(rows * cols))
    {
        for (r, line) in src.chunks_exact(cols).enumerate() {
            for (c, v) in line.iter().enumerate() {
                dst[c * rows + r] = *v;
            }
        }
    }
    out
}

/// The kernel offsets `lo..hi` along one axis whose input index `o·s + k − pad` falls inside
/// `0..size`, for output position `o`, and the input index of `lo`.
fn window(g: &ConvGeometry, axis: usize, o: usize) -> (usize, usize, usize) {
    let start = o * g.stride[axis];
    let pad = g.padding[axis];
    let lo = pad.saturating_sub(start).min(g.kernel[axis]);
    let hi = (g.image[axis] + pad)
        .saturating_sub(start)
        .clamp(lo, g.kernel[axis]);
    (lo, hi, start + lo - pad.min(start + lo))
}

/// Unfolds `count` channels-last images into `patches [count · p, kh · kw · c]`: row
/// `(n, oh, ow)`, entry `(ki, kj, ch)` holds `x[n, oh·sh + ki − ph, ow·sw + kj − pw, ch]`, or 0 in
/// the padding. One task per output row `(n, oh)`.
fn unfold(g: &ConvGeometry, nhwc: &[f32], count: usize, patches: &mut [f32]) {
    let (c, r) = (g.channels, g.patch_len());
    let [h, w] = g.image;
    let [oh_count, ow_count] = g.output;
    let kw = g.kernel[1];
    patches[..count * oh_count * ow_count * r]
        .par_chunks_mut(ow_count * r)
        .enumerate()
        .for_each(|(index, rows)| {
            let (n, oh) = (index / oh_count, index % oh_count);
            let image = &nhwc[n * h * w * c..][..h * w * c];
            let (ki_lo, ki_hi, first_row) = window(g, 0, oh);
            for (ow, patch) in rows.chunks_exact_mut(r).enumerate() {
                let (kj_lo, kj_hi, first_col) = window(g, 1, ow);
                patch[..ki_lo * kw * c].fill(0.0);
                patch[ki_hi * kw * c..].fill(0.0);
                for (i, ki) in (ki_lo..ki_hi).enumerate() {
                    let line = &mut patch[ki * kw * c..][..kw * c];
                    line[..kj_lo * c].fill(0.0);
                    line[kj_hi * c..].fill(0.0);
                    let src = &image[((first_row + i) * w + first_col) * c..];
                    line[kj_lo * c..kj_hi * c].copy_from_slice(&src[..(kj_hi - kj_lo) * c]);
                }
            }
        });
}

/// Folds `patches [count · p, kh · kw · c]` back onto `count` channels-last images: the adjoint
/// of [`unfold`], every patch entry added onto the pixel it came from. One task per image.
fn fold(g: &ConvGeometry, patches: &[f32], count: usize, nhwc: &mut [f32]) {
    let (c, r) = (g.channels, g.patch_len());
    let [h, w] = g.image;
    let [oh_count, ow_count] = g.output;
    let kw = g.kernel[1];
    nhwc[..count * h * w * c]
        .par_chunks_mut(h * w * c)
        .enumerate()
        .for_each(|(n, image)| {
            image.fill(0.0);
            for oh in 0..oh_count {
                let (ki_lo, ki_hi, first_row) = window(g, 0, oh);
                for ow in 0..ow_count {
                    let (kj_lo, kj_hi, first_col) = window(g, 1, ow);
                    let patch = &patches[((n * oh_count + oh) * ow_count + ow) * r..][..r];
                    for (i, ki) in (ki_lo..ki_hi).enumerate() {
                        let src = &patch[(ki * kw + kj_lo) * c..(ki * kw + kj_hi) * c];
                        let dst = &mut image[((first_row + i) * w + first_col) * c..][..src.len()];
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        });
}

/// `y [batch, m, p] = W · U(x_n) (+ bias [m])` for every sample.
pub fn forward(g: &ConvGeometry, images: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (batch, c, m, r, p) = (
        g.batch,
        g.channels,
        g.out_channels,
        g.patch_len(),
        g.out_pixels(),
    );
    let plane = g.image[0] * g.image[1];
    let weight = transpose_blocks(weight, c, g.kernel[0] * g.kernel[1]);
    let chunk = g.chunk();
    let mut out = zeros(batch * m * p);
    let sizes = [chunk * g.image_len(), r * chunk * p, m * chunk * p];
    with_scratch(sizes, |[nhwc, patches, product]| {
        for first in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - first);
            let columns = count * p;
            let images = &images[first * g.image_len()..][..count * g.image_len()];
            to_channels_last(images, c, plane, nhwc);
            unfold(g, nhwc, count, patches);
            matmul(
                product,
                false,
                View::row_major(&weight, m, r),
                View::row_major(&patches[..columns * r], columns, r).t(),
            );
            scatter(product, m, p, count, bias, &mut out[first * m * p..]);
        }
    });
    out
}

/// `dW [m, r] = Σ_n dY_n [m, p] · U(x_n)ᵀ`.
pub fn weight_grad(g: &ConvGeometry, images: &[f32], output_grad: &[f32]) -> Vec<f32> {
    let (batch, c, m, r, p) = (
        g.batch,
        g.channels,
        g.out_channels,
        g.patch_len(),
        g.out_pixels(),
    );
    let plane = g.image[0] * g.image[1];
    let chunk = g.chunk();
    let mut grad = vec![0.0f32; m * r];
    let sizes = [chunk * g.image_len(), r * chunk * p, m * chunk * p];
    with_scratch(sizes, |[nhwc, patches, rows]| {
        for (index, first) in (0..batch).step_by(chunk).enumerate() {
            let count = chunk.min(batch - first);
            let columns = count * p;
            let images = &images[first * g.image_len()..][..count * g.image_len()];
            to_channels_last(images, c, plane, nhwc);
            unfold(g, nhwc, count, patches);
            gather(output_grad, m, p, first, count, rows);
            matmul(
                &mut grad,
                index > 0,
                View::row_major(&rows[..m * columns], m, columns),
                View::row_major(&patches[..columns * r], columns, r),
            );
        }
    });
    transpose_blocks(&grad, g.kernel[0] * g.kernel[1], c)
}

/// `x [batch, channels, h, w] = fold(Wᵀ · dY_n) (+ bias [channels])`.
pub fn image_grad(g: &ConvGeometry, weight: &[f32], dy: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (batch, c, m, r, p) = (
        g.batch,
        g.channels,
        g.out_channels,
        g.patch_len(),
        g.out_pixels(),
    );
    let plane = g.image[0] * g.image[1];
    let weight = transpose_blocks(weight, c, g.kernel[0] * g.kernel[1]);
    let chunk = g.chunk();
    let mut images = zeros(batch * g.image_len());
    let sizes = [chunk * g.image_len(), r * chunk * p, m * chunk * p];
    with_scratch(sizes, |[nhwc, patches, rows]| {
        for first in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - first);
            let columns = count * p;
            gather(dy, m, p, first, count, rows);
            matmul(
                patches,
                false,
                View::row_major(&rows[..m * columns], m, columns).t(),
                View::row_major(&weight, m, r),
            );
            fold(g, patches, count, nhwc);
            let images = &mut images[first * g.image_len()..][..count * g.image_len()];
            from_channels_last(nhwc, c, plane, bias, images);
        }
    });
    images
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::conv::tests::{
        assert_adjoint, assert_matches_direct, operands, padded_geometry,
    };

    /// The strided and padded geometries of the project's networks (small batches), and odd ones.
    fn geometries() -> Vec<ConvGeometry> {
        let g = |c, image, kernel, stride, padding| {
            padded_geometry([5, c, 3], image, kernel, stride, padding)
        };
        vec![
            g(16, [14, 14], [4, 4], [2, 2], [1, 1]), // the DCGAN discriminator's second layer
            g(17, [7, 9], [3, 3], [2, 2], [1, 1]),   // a stride-2 3x3, odd sizes
            g(16, [11, 8], [5, 3], [3, 1], [2, 0]),  // uneven kernel and stride
            g(20, [6, 5], [1, 1], [1, 1], [0, 0]),   // a 1x1 convolution
            g(16, [7, 7], [3, 3], [1, 1], [1, 1]),   // the U-Net's 3x3 at 7x7
            g(16, [4, 4], [4, 4], [2, 2], [3, 3]),   // padding wider than the stride
        ]
    }

    #[test]
    fn channels_last_forward_matches_the_direct_convolution() {
        for g in geometries() {
            assert!(applies(&g));
            assert_matches_direct(&g, forward, [11, 12, 10]);
        }
    }

    /// The three passes are adjoint, and the bias of the input gradient is added once per
    /// pixel.
    #[test]
    fn channels_last_gradients_are_the_adjoints_of_the_forward_pass() {
        for g in geometries() {
            assert_adjoint(&g, (forward, image_grad, weight_grad), [13, 14, 15]);
            let [_, w, dy] = operands(&g, [13, 14, 15]);
            let dx = image_grad(&g, &w, &dy, None);
            let fill: Vec<f32> = (0..g.channels).map(|c| c as f32).collect();
            let shifted = image_grad(&g, &w, &dy, Some(&fill));
            let plane = g.image[0] * g.image[1];
            for (i, (a, b)) in shifted.iter().zip(&dx).enumerate() {
                let expected = b + fill[(i / plane) % g.channels];
                assert!((a - expected).abs() <= 1e-5 * (1.0 + expected.abs()));
            }
        }
    }
}
