//! Stride-1 convolutions as a sum of shifted GEMMs over the zero-padded images, with no patch
//! matrix.
//!
//! Lay the padded images out channel-major, `X [c, n · Hp · Wp]` with `Hp = OH + kh − 1` and
//! `Wp = OW + kw − 1`, and compute the output on the same grid, `Y [m, n · Hp · Wp]`, of which the
//! columns `(n, oh < OH, ow < OW)` are the real output. Output column `q` at kernel offset
//! `(i, j)` reads input column `q + i·Wp + j`, so the convolution is
//!
//! ```text
//! Y = Σ_(i,j) W_ij · X[:, s_ij ..]        s_ij = i·Wp + j,  W_ij [m, c] the weights at (i, j)
//! ```
//!
//! `kh · kw` GEMMs whose right operand is the padded image itself, shifted: the patch matrix of
//! the unfolded form (nine times the image for a 3x3 kernel, and more time to write than the GEMM
//! takes at the U-Net's convolutions) never exists. The other columns of `Y` read across row and
//! image boundaries and are dropped. The weight gradient is the same sum read the other way,
//! `dW_ij = dY · X[:, s_ij ..]ᵀ` with `dY` zero on the dropped columns, and the input gradient of
//! a stride-1 convolution is itself a stride-1 convolution: of `dY` padded by `k − 1 − p`, with
//! the kernel flipped and its two channel axes swapped.
//!
//! The columns are cut into groups of whole images, one rayon task per group and each GEMM
//! sequential inside it, so that a group's output block stays in cache across the `kh · kw`
//! products that add into it.
//!
//! On a CPU with AVX-512 the same sums run as the direct loops of `super::direct` instead, every
//! offset and input channel added in registers and the result written straight into `[n, m, OH,
//! OW]`: over runs of 16 outputs that read the unpadded images in place (no padded copy, and not
//! the padded grid's dropped rows and columns) where the output channels come in fours and the
//! runs fill their vectors, else over channels-last pixels; the weight gradient over a
//! channels-last `dY`, also reading the images in place.

use rayon::prelude::*;

use super::channels_last::pad_channels_last;
use super::conv::{ConvGeometry, View, add_bias, matmul_on, with_scratch};
use super::direct;
use super::filled_in_parallel;
use super::transpose::transpose;

/// Fewest image channels for which the shifted form is used: they are the inner dimension of its
/// GEMMs, which a handful of channels would leave mostly idle.
const MIN_CHANNELS: usize = 16;

/// Floats of one group's output block (`m` rows by its columns), about 1 MiB: it is read and
/// written once per kernel offset, so it should stay in the core's cache.
const BLOCK_FLOATS: usize = 1 << 18;

/// Most outputs computed per output pixel for which the direct sums over runs of outputs and the
/// GEMMs over the padded grid are used. The GEMMs compute the output on the whole padded grid,
/// `(OH + kh − 1)(OW + kw − 1)` columns per image: 15 % more work than the output needs at 28x28
/// with a 3x3 kernel, 31 % at 14x14, 65 % at 7x7. The direct sums compute whole 16-float
/// vectors; the choice counts them as where the runs follow each row, `OH · ⌈OW / 16⌉ · 16`
/// outputs: 14 % more at 28x28 and at 14x14, 129 % at 7x7. (Where the output is as wide as the
/// image the runs follow the whole plane and waste less: nothing at 28x28, 6 % at 14x14, 31 % at
/// 7x7. A 1x1 convolution wastes nothing on the grid: at 7x7 it takes the GEMMs.)
const MAX_GRID_OVERHEAD: f64 = 1.2;

/// How the sums of a stride-1 convolution are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sums {
    /// The direct loops over runs of 16 outputs of a row or of the whole plane.
    Direct,
    /// The direct loops over channels-last pixels, 16 output channels to a vector: no lane is
    /// wasted at any width, for the cost of laying the images out channels-last and scattering
    /// the outputs back. Measured slower than [`Sums::Direct`] at 14x14 and 28x28, faster than
    /// the patch matrix at 7x7.
    Pixels,
    /// `kh · kw` GEMMs over the padded grid.
    Gemm,
}

/// The form for a stride-1 convolution to `m` channels with an output of `size`: the direct sums
/// over output rows where they run and waste at most [`MAX_GRID_OVERHEAD`], else the GEMMs where
/// their grid does, else the direct sums over pixels where they run, else none (the
/// channels-last patch matrix, [`super::channels_last`]).
fn sums(size: [usize; 2], kernel: [usize; 2], m: usize) -> Option<Sums> {
    let outputs = (size[0] * size[1]).max(1) as f64;
    let direct = (size[0] * size[1].div_ceil(direct::LANES) * direct::LANES) as f64 / outputs;
    let grid = ((size[0] + kernel[0] - 1) * (size[1] + kernel[1] - 1)) as f64 / outputs;
    if direct::available(m) && direct <= MAX_GRID_OVERHEAD {
        Some(Sums::Direct)
    } else if grid <= MAX_GRID_OVERHEAD {
        Some(Sums::Gemm)
    } else if direct::pixels_available() {
        Some(Sums::Pixels)
    } else {
        None
    }
}

/// The form the passes of a geometry that [`applies`] take; for any other, the GEMMs.
fn preferred(size: [usize; 2], kernel: [usize; 2], m: usize) -> Sums {
    sums(size, kernel, m).unwrap_or(Sums::Gemm)
}

/// Whether a convolution of this geometry (its forward pass and its weight gradient) takes the
/// shifted form.
pub fn applies(g: &ConvGeometry) -> bool {
    g.stride == [1, 1]
        && g.channels >= MIN_CHANNELS
        && g.out_pixels() > 0
        && sums(g.output, g.kernel, g.out_channels).is_some()
}

/// Whether the input gradient of a convolution of this geometry takes the shifted form (it is a
/// stride-1 convolution from the `m` output channels to the `c` image channels).
pub fn applies_to_image_grad(g: &ConvGeometry) -> bool {
    g.stride == [1, 1]
        && g.out_channels >= MIN_CHANNELS
        && g.padding[0] < g.kernel[0]
        && g.padding[1] < g.kernel[1]
        && g.image[0] * g.image[1] > 0
        && sums(g.image, g.kernel, g.channels).is_some()
}

/// The padded grid every image is laid out on, and how its columns are grouped.
struct Grid {
    /// Padded width: one row of the grid.
    width: usize,
    /// Columns of one image: padded height times width.
    per_image: usize,
    /// Columns of the whole batch.
    columns: usize,
    /// Zero columns after the batch, read by the shifted views of the last rows.
    slack: usize,
    /// Images per group of columns.
    images_per_group: usize,
}

impl Grid {
    fn new(g: &ConvGeometry) -> Self {
        let (batch, m) = (g.batch, g.out_channels);
        let [kh, kw] = g.kernel;
        let height = g.output[0] + kh - 1;
        let width = g.output[1] + kw - 1;
        let per_image = height * width;
        // At least four groups per thread, so that the threads stay busy to the end.
        let spread = batch.div_ceil(4 * rayon::current_num_threads()).max(1);
        let images_per_group = (BLOCK_FLOATS / (m * per_image).max(1)).clamp(1, spread);
        Self {
            width,
            per_image,
            columns: batch * per_image,
            slack: (kh - 1) * width + kw - 1,
            images_per_group,
        }
    }

    /// Distance between two channels of the padded images.
    fn row_stride(&self) -> usize {
        self.columns + self.slack
    }

    fn group_columns(&self) -> usize {
        self.images_per_group * self.per_image
    }

    /// Where kernel offset `tap` (row-major over the kernel) reads, relative to the output column.
    fn shift(&self, g: &ConvGeometry, tap: usize) -> usize {
        (tap / g.kernel[1]) * self.width + tap % g.kernel[1]
    }

    /// Where every kernel offset reads, row-major over the kernel.
    fn shifts(&self, g: &ConvGeometry) -> Vec<usize> {
        (0..g.kernel[0] * g.kernel[1])
            .map(|tap| self.shift(g, tap))
            .collect()
    }

    /// The padded images at kernel offset `tap`, for the group whose columns start at `start`:
    /// `[channels, columns]` with the channel stride of the padded layout.
    fn shifted<'a>(
        &self,
        g: &ConvGeometry,
        padded: &'a [f32],
        tap: usize,
        start: usize,
        columns: usize,
    ) -> View<'a> {
        View {
            data: &padded[start + self.shift(g, tap)..],
            rows: g.channels,
            cols: columns,
            row_stride: self.row_stride(),
            col_stride: 1,
        }
    }
}

/// Writes the batch `images [batch, c, h, w]` zero-padded into `padded [c, batch · Hp · Wp + slack]`.
fn pad(g: &ConvGeometry, grid: &Grid, images: &[f32], padded: &mut [f32]) {
    let [h, w] = g.image;
    let [top, left] = g.padding;
    let width = grid.width;
    let copied = w.min(width.saturating_sub(left));
    padded[..g.channels * grid.row_stride()]
        .par_chunks_mut(grid.row_stride())
        .enumerate()
        .for_each(|(c, channel)| {
            let (body, slack) = channel.split_at_mut(grid.columns);
            slack.fill(0.0);
            // The whole image zeroed, then its rows copied in: one call per row, not three (the
            // rows are short, and the calls are most of the time of filling a border float).
            for (n, image) in body.chunks_exact_mut(grid.per_image).enumerate() {
                let plane = &images[(n * g.channels + c) * h * w..][..h * w];
                image.fill(0.0);
                for (y, line) in image.chunks_exact_mut(width).enumerate() {
                    if let Some(row) = y.checked_sub(top).filter(|&row| row < h) {
                        line[left..left + copied].copy_from_slice(&plane[row * w..][..copied]);
                    }
                }
            }
        });
}

/// The weights `[m, c, kh, kw]` regrouped by kernel offset: `[kh · kw, m, c]`.
fn weights_by_tap(weight: &[f32], taps: usize) -> Vec<f32> {
    let rows = weight.len() / taps;
    (0..taps)
        .flat_map(|tap| (0..rows).map(move |row| weight[row * taps + tap]))
        .collect()
}

/// `y [batch, m, OH, OW] = conv(x, W) (+ bias [m])` for a geometry [`applies`] accepts.
pub fn forward(g: &ConvGeometry, images: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let form = preferred(g.output, g.kernel, g.out_channels);
    forward_in(form, g, images, weight, bias)
}

/// [`forward`] in the given form (the GEMMs where the direct sums do not run).
fn forward_in(
    form: Sums,
    g: &ConvGeometry,
    images: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (batch, c, m) = (g.batch, g.channels, g.out_channels);
    let taps = g.kernel[0] * g.kernel[1];
    let [oh, ow] = g.output;
    let grid = Grid::new(g);
    let len = batch * m * oh * ow;
    // One task per group of images: their outputs are one contiguous block.
    let block = m * oh * ow * grid.images_per_group;
    if form == Sums::Direct && direct::available(m) {
        // The images are read where they lie: no padded copy.
        let by_tap = weights_by_tap(weight, taps);
        let segments = direct::Segments::new(g, grid.images_per_group);
        let image_len = g.image_len();
        let (out, _) = filled_in_parallel(len, block, |index, out| {
            let count = out.len() / (m * oh * ow);
            let first = index * grid.images_per_group;
            let images = direct::Images {
                data: &images[first * image_len..][..count * image_len],
                channels: c,
                plane: g.image[0] * g.image[1],
            };
            let outputs = segments.outputs(count);
            let done = direct::convolve(out, &by_tap, bias, &images, &outputs);
            debug_assert!(done, "the direct sums are available");
        });
        return out;
    }
    if form == Sums::Pixels && direct::pixels_available() {
        let plane = oh * ow;
        // W [m, c, taps] packed as [taps, c, m]
        let packed =
            direct::Packed::gathered(taps, c, m, |tap, ci, o| weight[(o * c + ci) * taps + tap]);
        return with_scratch([grid.columns * c], |[padded]| {
            let height = grid.per_image / grid.width;
            let padded_images = &mut padded[..grid.columns * c];
            pad_channels_last(
                images,
                c,
                g.image,
                g.padding,
                [height, grid.width],
                padded_images,
            );
            let shifts = grid.shifts(g);
            let padded = &*padded;
            filled_in_parallel(len, block, |index, out| {
                let count = out.len() / (m * plane);
                let pixels = direct::pixels(count, m, g.output, grid.per_image, grid.width);
                let first = index * grid.images_per_group;
                let images = direct::ChannelsLast {
                    data: &padded[first * grid.per_image * c..],
                    channels: c,
                    shifts: &shifts,
                };
                let done = direct::convolve_pixels(out, plane, &packed, bias, &images, &pixels);
                debug_assert!(done, "the direct sums are available");
            })
            .0
        });
    }
    let by_tap = weights_by_tap(weight, taps);
    let group = grid.group_columns();
    with_scratch(
        [c * grid.row_stride(), m * grid.columns],
        |[padded, wide]| {
            pad(g, &grid, images, padded);
            // wide: one [m, columns of the group] block after another.
            let padded = &*padded;
            wide.par_chunks_mut(m * group)
                .enumerate()
                .for_each(|(index, block)| {
                    let columns = block.len() / m;
                    for tap in 0..taps {
                        matmul_on(
                            faer::Par::Seq,
                            block,
                            tap > 0,
                            View::row_major(&by_tap[tap * m * c..][..m * c], m, c),
                            grid.shifted(g, padded, tap, index * group, columns),
                        );
                    }
                });
            let wide = &*wide;
            filled_in_parallel(len, oh * ow, |index, plane| {
                let (n, o) = (index / m, index % m);
                let (group_index, within) = (n / grid.images_per_group, n % grid.images_per_group);
                let block = &wide[group_index * m * group..];
                let columns = (grid.columns - group_index * group).min(group);
                let image = &block[o * columns + within * grid.per_image..][..grid.per_image];
                let shift = bias.map_or(0.0, |b| b[o]);
                for (dst, src) in plane
                    .chunks_exact_mut(ow)
                    .zip(image.chunks_exact(grid.width))
                {
                    add_bias(dst, src, shift);
                }
            })
            .0
        },
    )
}

/// `dW [m, c, kh, kw] = Σ_n dY_n · U(x_n)ᵀ`, the weight gradient of a convolution whose geometry
/// [`applies`] accepts.
pub fn weight_grad(g: &ConvGeometry, images: &[f32], output_grad: &[f32]) -> Vec<f32> {
    let form = preferred(g.output, g.kernel, g.out_channels);
    weight_grad_in(form, g, images, output_grad)
}

/// [`weight_grad`] in the given form (the GEMMs where the direct sums do not run).
fn weight_grad_in(form: Sums, g: &ConvGeometry, images: &[f32], output_grad: &[f32]) -> Vec<f32> {
    let (c, m) = (g.channels, g.out_channels);
    let taps = g.kernel[0] * g.kernel[1];
    let [oh, ow] = g.output;
    let grid = Grid::new(g);
    let sum_by_tap = |a: Vec<f32>, b: Vec<f32>| {
        a.into_iter()
            .zip(b)
            .map(|(x, y)| x + y)
            .collect::<Vec<f32>>()
    };
    // The direct sums (over a channels-last dY) give `[kh · kw, c, m]`, the GEMMs `[kh · kw,
    // m, c]`.
    let channels_last = form != Sums::Gemm && direct::pixels_available();
    let by_tap = if channels_last {
        // The images are read where they lie: no padded copy.
        let plane = oh * ow;
        let rows = direct::Rows::new(g);
        let image_len = g.image_len();
        output_grad
            .par_chunks(m * plane)
            .enumerate()
            .fold(
                || (vec![0.0f32; taps * c * m], vec![0.0f32; plane * m]),
                |(mut sum, mut channels_last), (n, dy)| {
                    transpose(dy, [m, plane], plane, &mut channels_last, m);
                    let images = direct::Images {
                        data: &images[n * image_len..][..image_len],
                        channels: c,
                        plane: g.image[0] * g.image[1],
                    };
                    let done = direct::correlate(&mut sum, &channels_last, m, &images, &rows);
                    debug_assert!(done, "the direct sums are available");
                    (sum, channels_last)
                },
            )
            .map(|(sum, _)| sum)
            .reduce_with(sum_by_tap)
            .unwrap_or_else(|| vec![0.0f32; taps * c * m])
    } else {
        let group = grid.group_columns();
        with_scratch(
            [c * grid.row_stride(), m * grid.columns],
            |[padded, wide]| {
                pad(g, &grid, images, padded);
                // dY on the padded grid, zero on the dropped columns, in blocks as in `forward`.
                wide.par_chunks_mut(m * group)
                    .enumerate()
                    .for_each(|(index, block)| {
                        let columns = block.len() / m;
                        let first = index * grid.images_per_group;
                        for (o, row) in block.chunks_exact_mut(columns).enumerate() {
                            for (i, image) in row.chunks_exact_mut(grid.per_image).enumerate() {
                                image.fill(0.0);
                                let plane =
                                    &output_grad[((first + i) * m + o) * oh * ow..][..oh * ow];
                                for (dst, src) in image
                                    .chunks_exact_mut(grid.width)
                                    .zip(plane.chunks_exact(ow))
                                {
                                    dst[..ow].copy_from_slice(src);
                                }
                            }
                        }
                    });
                let wide = &*wide;
                let padded = &*padded;
                wide.par_chunks(m * group)
                    .enumerate()
                    .fold(
                        || vec![0.0f32; taps * m * c],
                        |mut sum, (index, block)| {
                            let columns = block.len() / m;
                            for tap in 0..taps {
                                matmul_on(
                                    faer::Par::Seq,
                                    &mut sum[tap * m * c..][..m * c],
                                    true,
                                    View::row_major(block, m, columns),
                                    grid.shifted(g, padded, tap, index * group, columns).t(),
                                );
                            }
                            sum
                        },
                    )
                    .reduce_with(sum_by_tap)
                    .unwrap_or_else(|| vec![0.0f32; taps * m * c])
            },
        )
    };
    // -> [m, c, kh · kw], one filter per task
    let (grad, _) = filled_in_parallel(m * c * taps, c * taps, |o, filter| {
        for (ci, values) in filter.chunks_exact_mut(taps).enumerate() {
            for (tap, value) in values.iter_mut().enumerate() {
                *value = if channels_last {
                    by_tap[(tap * c + ci) * m + o]
                } else {
                    by_tap[tap * m * c + o * c + ci]
                };
            }
        }
    });
    grad
}

/// `dx [batch, c, h, w] = conv(dY padded by k − 1 − p, flipped Wᵀ) (+ bias [c])`: the input
/// gradient of a convolution (or the forward pass of a stride-1 transposed convolution) whose
/// geometry [`applies_to_image_grad`] accepts.
pub fn image_grad(g: &ConvGeometry, weight: &[f32], dy: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let form = preferred(g.image, g.kernel, g.channels);
    image_grad_in(form, g, weight, dy, bias)
}

/// [`image_grad`] in the given form (the GEMMs where the direct sums do not run).
fn image_grad_in(
    form: Sums,
    g: &ConvGeometry,
    weight: &[f32],
    dy: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (c, m) = (g.channels, g.out_channels);
    let [kh, kw] = g.kernel;
    let flipped = ConvGeometry {
        batch: g.batch,
        channels: m,
        out_channels: c,
        image: g.output,
        kernel: g.kernel,
        stride: [1, 1],
        padding: [kh - 1 - g.padding[0], kw - 1 - g.padding[1]],
        output: g.image,
    };
    // W' [c, m, i, j] = W [m, c, kh − 1 − i, kw − 1 − j]
    // (one pass over W in order: a division per element costs more than the move)
    let mut swapped = vec![0.0f32; c * m * kh * kw];
    for (row, kernel) in weight.chunks_exact(kh * kw).enumerate() {
        let (o, ci) = (row / c, row % c);
        let flipped = &mut swapped[(ci * m + o) * kh * kw..][..kh * kw];
        for (dst, &value) in flipped.iter_mut().rev().zip(kernel) {
            *dst = value;
        }
    }
    forward_in(form, &flipped, dy, &swapped, bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::conv::tests::{direct, dot, operands, values};
    use crate::flex::direct::tests::geometry;

    /// A stride-1 convolution of 3 images to 16 channels, with the padding `padding` before and
    /// `after` after each axis.
    fn stride_one(
        channels: usize,
        image: [usize; 2],
        kernel: [usize; 2],
        padding: [usize; 2],
        after: [usize; 2],
    ) -> ConvGeometry {
        geometry([16, channels, 3], image, kernel, padding, after)
    }

    /// Stride-1 geometries with enough channels for the shifted form, including odd sides,
    /// uneven kernels, no padding and padding that differs before and after.
    fn geometries() -> Vec<ConvGeometry> {
        vec![
            stride_one(16, [7, 9], [3, 3], [1, 1], [1, 1]), // the U-Net's 3x3, odd sides
            stride_one(17, [5, 6], [1, 1], [0, 0], [0, 0]), // a 1x1 skip
            stride_one(16, [6, 7], [3, 3], [0, 0], [0, 0]), // no padding
            stride_one(18, [6, 5], [5, 3], [2, 1], [0, 2]), // uneven kernel, asymmetric padding
        ]
    }

    /// `dx` and `dW` straight from their definitions, in f64.
    fn direct_grads(g: &ConvGeometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (batch, m) = (g.batch, g.out_channels);
        let [kh, kw] = g.kernel;
        let [h, wd] = g.image;
        let [oh, ow] = g.output;
        let c = g.channels;
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for n in 0..batch {
            for o in 0..m {
                for i in 0..oh {
                    for j in 0..ow {
                        let d = dy[((n * m + o) * oh + i) * ow + j] as f64;
                        for ci in 0..c {
                            for a in 0..kh {
                                for b in 0..kw {
                                    let (ih, iw) = (
                                        (i + a) as isize - g.padding[0] as isize,
                                        (j + b) as isize - g.padding[1] as isize,
                                    );
                                    if ih < 0 || iw < 0 || ih as usize >= h || iw as usize >= wd {
                                        continue;
                                    }
                                    let xi = ((n * c + ci) * h + ih as usize) * wd + iw as usize;
                                    let wi = ((o * c + ci) * kh + a) * kw + b;
                                    dx[xi] += d * w[wi] as f64;
                                    dw[wi] += d * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw)
    }

    fn assert_close(what: &str, got: &[f32], expected: impl IntoIterator<Item = f64>) {
        let mut count = 0;
        for (i, (v, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                (*v as f64 - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{what} at {i}: {v} vs {e}"
            );
            count += 1;
        }
        assert_eq!(count, got.len(), "{what}: length");
    }

    /// The shifted form takes the stride-1 convolutions whose padded grid or whose rows of
    /// vectors waste little, and the rest where the sums over pixels run; never a handful of
    /// channels.
    #[test]
    fn the_form_is_chosen_by_the_wasted_grid() {
        let same = |channels, side| stride_one(channels, [side, side], [3, 3], [1, 1], [1, 1]);
        let g = same(64, 28);
        assert!(applies(&g) && applies_to_image_grad(&g));
        // 14x14: 31 % wasted on the whole grid, 14 % in the rows of vectors.
        let g = same(128, 14);
        assert_eq!(applies(&g), direct::available(128));
        assert_eq!(applies_to_image_grad(&g), direct::available(128));
        // 7x7: 65 % and 129 %; the sums over pixels waste nothing.
        let g = same(128, 7);
        let pixels = direct::pixels_available();
        assert_eq!(applies(&g), pixels);
        assert_eq!(applies_to_image_grad(&g), pixels);
        assert_eq!(
            sums(g.output, g.kernel, 128),
            pixels.then_some(Sums::Pixels)
        );
        // 18 output channels are not whole tiles of the rows: the GEMMs' whole grid at 28x28,
        // the pixels at 14x14.
        assert_eq!(sums([28, 28], [3, 3], 18), Some(Sums::Gemm));
        assert_eq!(sums([14, 14], [3, 3], 18), pixels.then_some(Sums::Pixels));
        // A 1x1 convolution at 7x7: nothing wasted on the grid, 129 % in the rows.
        let g = stride_one(64, [7, 7], [1, 1], [0, 0], [0, 0]);
        assert!(applies(&g) && applies_to_image_grad(&g));
        assert_eq!(sums(g.output, g.kernel, 16), Some(Sums::Gemm));
        let direct_where_available = direct::available(16).then_some(Sums::Direct);
        assert_eq!(
            sums([28, 28], [3, 3], 16),
            direct_where_available.or(Some(Sums::Gemm))
        );
        assert!(!applies(&same(8, 28)));
    }

    /// Each pass in each form against its definition, on geometries small enough to check by
    /// hand (which [`applies`] would send to the patch matrix, but every pass computes them all
    /// the same).
    #[test]
    fn every_pass_matches_the_definition() {
        for (g, form) in geometries()
            .into_iter()
            .flat_map(|g| [(g, Sums::Direct), (g, Sums::Pixels), (g, Sums::Gemm)])
        {
            let [x, w, dy] = operands(&g, [11, 12, 14]);
            let (m, p) = (g.out_channels, g.out_pixels());
            let bias = values(m, 13);
            let y = forward_in(form, &g, &x, &w, Some(&bias));
            let expected = direct(&g, &x, &w);
            let with_bias = expected
                .iter()
                .enumerate()
                .map(|(i, e)| (e + bias[(i / p) % m]) as f64);
            assert_close(&format!("{form:?} {g:?} output"), &y, with_bias);
            let (dx, dw) = direct_grads(&g, &x, &w, &dy);
            assert_close(
                &format!("{form:?} {g:?} input gradient"),
                &image_grad_in(form, &g, &w, &dy, None),
                dx,
            );
            assert_close(
                &format!("{form:?} {g:?} weight gradient"),
                &weight_grad_in(form, &g, &x, &dy),
                dw,
            );
        }
    }

    #[test]
    fn groups_of_images_add_up_like_one_image_at_a_time() {
        // Batch 13 on a 14x14 grid with 64 channels splits into several groups, the last one short.
        let g = ConvGeometry {
            batch: 13,
            out_channels: 64,
            ..stride_one(64, [14, 14], [3, 3], [1, 1], [1, 1])
        };
        let (batch, m) = (g.batch, g.out_channels);
        let grid = Grid::new(&g);
        assert!(grid.images_per_group < batch && batch % grid.images_per_group != 0);
        let [x, w, dy] = operands(&g, [21, 22, 23]);
        let y = forward(&g, &x, &w, None);
        let dw = weight_grad(&g, &x, &dy);
        let one_sample = ConvGeometry { batch: 1, ..g };
        let mut dw_sum = vec![0.0f64; dw.len()];
        let per_out = m * g.out_pixels();
        for n in 0..batch {
            let x_n = &x[n * g.image_len()..][..g.image_len()];
            let dy_n = &dy[n * per_out..][..per_out];
            assert_eq!(
                &y[n * per_out..][..per_out],
                forward(&one_sample, x_n, &w, None).as_slice()
            );
            for (s, v) in dw_sum.iter_mut().zip(weight_grad(&one_sample, x_n, dy_n)) {
                *s += v as f64;
            }
        }
        assert_close("weight gradient by groups", &dw, dw_sum);
        // And the adjoint identity <dY, conv(x)> = <dx, x> on the whole batch.
        let dx = image_grad(&g, &w, &dy, None);
        let (a, b) = (dot(&dy, &y), dot(&dx, &x));
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
}
