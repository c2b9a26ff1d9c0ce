//! Strided convolutions (the DCGAN's 4x4 stride-2 ones and their transposes) as direct sums
//! over channels-last pixels, with no patch matrix.
//!
//! **Forward.** With the images zero-padded and channels-last, `xp [n, Hp, Wp, c]`, a
//! convolution of stride `(s, t)` reads
//!
//! ```text
//! y[o, oh, ow] = Σ_(i,j,ci) W[o, ci, i, j] · xp[s·oh + i, t·ow + j, ci]
//! ```
//!
//! Write `j = t·q + b` (`b < t`). Across `b` and `ci` the pixels `(s·oh + i, t·(ow + q) + b)`
//! are `t · c` consecutive floats of `xp`. Read `xp` as an image `Wp / t` columns wide with
//! `t · c` channels: then the sum is over taps `(i, q)`, each reading column `ow + q` of row
//! `s·oh + i`, which is what [`direct::convolve_pixels`] computes for any list of output pixels
//! and any offsets of the taps. `kh · kw / t` taps of `t · c` channels: the multiply-adds of
//! the convolution, none on the padding between the strides.
//!
//! **Input gradient** (the forward pass of a transposed convolution). Pixel `(r, x)` of the
//! padded image, `r = s·u + a` and `x = t·v + b`, receives
//!
//! ```text
//! dx[ci, s·u + a, t·v + b] = Σ_(o,p,q) W[o, ci, s·p + a, t·q + b] · dy[o, u − p, v − q]
//! ```
//!
//! for each phase `(a, b)` a stride-1 convolution of `dy` with a `kh/s × kw/t` part of the
//! kernel: `s · t` calls of the same sums over the channels-last, padded `dy`, each writing its
//! phase's pixels in place, and no product computed on the dilated zeros of the transposed
//! convolution.
//!
//! **Weight gradient.** With the padded image's columns dealt into `t` phases, the pixels of an
//! output row read consecutive columns of one phase at each kernel offset: the sums of the
//! stride-1 weight gradient, over output rows that read image rows `s` apart.

use rayon::prelude::*;

use super::channels_last::{self, pad_channels_last};
use super::conv::{ConvGeometry, with_scratch};
use super::direct::{self, ChannelsLast, Images, Packed, Pixel, Row, RowRead, Rows};
use super::filled_in_parallel;
use super::transpose::transpose;

/// Fewest channels on either side for which these sums are used: a handful summed per tap
/// leaves the sums mostly loop overhead, and a handful computed leaves most of the 16 lanes of
/// a vector of output channels idle (the patch matrix's GEMM wastes nothing there).
const MIN_CHANNELS: usize = 16;

/// Whether the stride is above 1 and both sides have [`MIN_CHANNELS`].
fn strided(g: &ConvGeometry) -> bool {
    g.stride != [1, 1]
        && g.stride[0] > 0
        && g.stride[1] > 0
        && g.channels >= MIN_CHANNELS
        && g.out_channels >= MIN_CHANNELS
}

/// Whether the forward pass of a convolution of this geometry takes these sums: a stride above
/// 1, a kernel width that is a whole number of strides, on a CPU where the sums run.
pub fn applies(g: &ConvGeometry) -> bool {
    strided(g)
        && g.kernel[1].is_multiple_of(g.stride[1])
        && g.out_pixels() > 0
        && direct::pixels_available()
}

/// Whether the input gradient of a convolution of this geometry takes these sums: both kernel
/// sides whole numbers of strides.
pub fn applies_to_image_grad(g: &ConvGeometry) -> bool {
    strided(g)
        && g.kernel[0].is_multiple_of(g.stride[0])
        && g.kernel[1].is_multiple_of(g.stride[1])
        && g.image[0] * g.image[1] > 0
        && direct::pixels_available()
}

/// Images per task: at least four tasks per thread, so that the threads stay busy to the end.
fn images_per_group(batch: usize) -> usize {
    batch.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// `y [batch, m, OH, OW] = conv(x, W) (+ bias [m])`, on the patch matrix where the sums do not
/// run.
pub fn forward(g: &ConvGeometry, images: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if !applies(g) {
        return channels_last::forward(g, images, weight, bias);
    }
    let (c, m, [kh, kw], [s, t]) = (g.channels, g.out_channels, g.kernel, g.stride);
    let [oh, ow] = g.output;
    // The padded image as far as the last output reads, `width` columns of `t · c` channels.
    let height = s * (oh - 1) + kh;
    let width = (t * (ow - 1) + kw) / t;
    let (runs, channels) = (kw / t, t * c);
    // W [m, c, kh, kw] packed as [(i, q), (b, ci), m]: kernel column j = t·q + b.
    let packed = Packed::gathered(kh * runs, channels, m, |tap, channel, o| {
        let (i, j) = (tap / runs, t * (tap % runs) + channel / c);
        weight[((o * c + channel % c) * kh + i) * kw + j]
    });
    let shifts: Vec<usize> = (0..kh * runs)
        .map(|tap| (tap / runs) * width + tap % runs)
        .collect();
    let per_image = height * width;
    let group = images_per_group(g.batch);
    let pixels: Vec<Pixel> = (0..group)
        .flat_map(|n| (0..oh).flat_map(move |y| (0..ow).map(move |x| (n, y, x))))
        .map(|(n, y, x)| Pixel {
            image: n * per_image + s * y * width + x,
            output: (n * m * oh + y) * ow + x,
        })
        .collect();
    with_scratch([g.batch * per_image * channels], |[padded]| {
        pad_channels_last(images, c, g.image, g.padding, [height, width * t], padded);
        let padded = &*padded;
        let len = g.batch * m * oh * ow;
        let (out, _) = filled_in_parallel(len, m * oh * ow * group, |index, out| {
            let count = out.len() / (m * oh * ow);
            let images = ChannelsLast {
                data: &padded[index * group * per_image * channels..],
                channels,
                shifts: &shifts,
            };
            let pixels = &pixels[..count * oh * ow];
            let done = direct::convolve_pixels(out, oh * ow, &packed, bias, &images, pixels);
            debug_assert!(done, "the sums run on this CPU");
        });
        out
    })
}

/// The image `[c, h, w]` zero-padded to `[height, t · width]` and its columns dealt into `t`
/// phases: `out [c · t, height, width]`, channel `(ci, b)` at `ci · t + b` holding the padded
/// columns `b, b + t, ..`.
fn deal_columns(g: &ConvGeometry, image: &[f32], [height, width]: [usize; 2], out: &mut [f32]) {
    let ([h, w], [top, left], t) = (g.image, g.padding, g.stride[1]);
    for (index, phase) in out.chunks_exact_mut(height * width).enumerate() {
        let (ci, b) = (index / t, index % t);
        let plane = &image[ci * h * w..][..h * w];
        // The columns v whose padded column t·v + b lies inside the image.
        let first = left.saturating_sub(b).div_ceil(t).min(width);
        let end = (left + w).saturating_sub(b).div_ceil(t).clamp(first, width);
        for (r, line) in phase.chunks_exact_mut(width).enumerate() {
            match r.checked_sub(top).filter(|&row| row < h) {
                Some(row) => {
                    let source = &plane[row * w..][..w];
                    line[..first].fill(0.0);
                    for (v, value) in line[first..end].iter_mut().enumerate() {
                        *value = source[t * (first + v) + b - left];
                    }
                    line[end..].fill(0.0);
                }
                None => line.fill(0.0),
            }
        }
    }
}

/// `dW [m, c, kh, kw] = Σ_n Σ_(oh,ow) dY[o, oh, ow] · xp[ci, s·oh + i, t·ow + j]`, on the patch
/// matrix where the sums do not run.
///
/// With the padded image's columns dealt into `t` phases (`xp[ci, r, t·v + b]` at channel
/// `(ci, b)`, column `v`), output pixels `ow, ow + 1, ..` of a row read consecutive columns
/// `ow + q` of phase `b` at kernel column `j = t·q + b`: the sums of the stride-1 weight
/// gradient ([`direct::correlate`], along the pixels of `dY` channels-last), over rows `s` image
/// rows apart.
pub fn weight_grad(g: &ConvGeometry, images: &[f32], output_grad: &[f32]) -> Vec<f32> {
    if !applies(g) {
        return channels_last::weight_grad(g, images, output_grad);
    }
    let (c, m, [kh, kw], [s, t]) = (g.channels, g.out_channels, g.kernel, g.stride);
    let [oh, ow] = g.output;
    let height = s * (oh - 1) + kh;
    let width = (t * (ow - 1) + kw) / t;
    let (runs, channels) = (kw / t, t * c);
    let taps = kh * runs;
    let rows = Rows {
        rows: (0..oh)
            .map(|y| Row {
                pixel: y * ow,
                len: ow,
            })
            .collect(),
        reads: (0..oh)
            .flat_map(|y| {
                (0..taps).map(move |tap| RowRead {
                    at: ((s * y + tap / runs) * width + tap % runs) as isize,
                    from: 0,
                    to: ow,
                })
            })
            .collect(),
    };
    let (plane, image_len) = (oh * ow, g.image_len());
    let sum = |a: Vec<f32>, b: Vec<f32>| a.into_iter().zip(b).map(|(x, y)| x + y).collect();
    let by_tap: Vec<f32> = output_grad
        .par_chunks(m * plane)
        .enumerate()
        .fold(
            || {
                let sums = vec![0.0f32; taps * channels * m];
                (
                    sums,
                    vec![0.0f32; plane * m],
                    vec![0.0f32; channels * height * width],
                )
            },
            |(mut sums, mut dy, mut dealt), (n, output_grad)| {
                transpose(output_grad, [m, plane], plane, &mut dy, m);
                deal_columns(
                    g,
                    &images[n * image_len..][..image_len],
                    [height, width],
                    &mut dealt,
                );
                let image = Images {
                    data: &dealt,
                    channels,
                    plane: height * width,
                };
                let done = direct::correlate(&mut sums, &dy, m, &image, &rows);
                debug_assert!(done, "the sums run on this CPU");
                (sums, dy, dealt)
            },
        )
        .map(|(sums, _, _)| sums)
        .reduce_with(sum)
        .unwrap_or_else(|| vec![0.0f32; taps * channels * m]);
    // [(i, q), (ci, b), m] -> [m, c, kh, kw], one filter per task
    let (grad, _) = filled_in_parallel(m * c * kh * kw, c * kh * kw, |o, filter| {
        for (row, kernel) in filter.chunks_exact_mut(kh * kw).enumerate() {
            for (index, value) in kernel.iter_mut().enumerate() {
                let (i, j) = (index / kw, index % kw);
                let tap = i * runs + j / t;
                *value = by_tap[(tap * channels + row * t + j % t) * m + o];
            }
        }
    });
    grad
}

/// One phase `(a, b)` of the input gradient: its packed part of the kernel, where its taps read
/// in the padded `dy`, and its pixels.
struct Phase {
    weights: Packed,
    shifts: Vec<usize>,
    pixels: Vec<Pixel>,
}

/// `dx [batch, c, h, w] (+ bias [c])`: the input gradient of a convolution, or the forward pass
/// of a transposed one, on the patch matrix where the sums do not run.
pub fn image_grad(g: &ConvGeometry, weight: &[f32], dy: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if !applies_to_image_grad(g) {
        return channels_last::image_grad(g, weight, dy, bias);
    }
    let (c, m, [kh, kw], [s, t]) = (g.channels, g.out_channels, g.kernel, g.stride);
    let ([h, w], [top, left]) = (g.image, g.padding);
    let (rows, runs) = (kh / s, kw / t);
    // dy padded by rows − 1 rows and runs − 1 columns before, and after as far as the last
    // pixel of the image reads.
    let height = (top + h - 1) / s + rows;
    let width = (left + w - 1) / t + runs;
    let per_image = height * width;
    let group = images_per_group(g.batch);
    // The phase's rows u (or columns v): those with s·u + a inside the image.
    let span = |a: usize, s: usize, pad: usize, size: usize| {
        let first = pad.saturating_sub(a).div_ceil(s);
        let end = (pad + size).saturating_sub(a).div_ceil(s);
        first..end.max(first)
    };
    let phases: Vec<Phase> = (0..s * t)
        .into_par_iter()
        .map(|phase| {
            let (a, b) = (phase / t, phase % t);
            // W [m, c, kh, kw] packed as [(p, q), m, c] at kernel rows s·p + a, columns t·q + b
            let weights = Packed::gathered(rows * runs, m, c, |tap, o, ci| {
                let (i, j) = (s * (tap / runs) + a, t * (tap % runs) + b);
                weight[((o * c + ci) * kh + i) * kw + j]
            });
            let shifts = (0..rows * runs)
                .map(|tap| (rows - 1 - tap / runs) * width + runs - 1 - tap % runs)
                .collect();
            let (us, vs) = (span(a, s, top, h), span(b, t, left, w));
            let pixels = (0..group)
                .flat_map(|n| us.clone().map(move |u| (n, u)))
                .flat_map(|(n, u)| vs.clone().map(move |v| (n, u, v)))
                .map(|(n, u, v)| Pixel {
                    image: n * per_image + u * width + v,
                    output: n * c * h * w + (s * u + a - top) * w + t * v + b - left,
                })
                .collect();
            Phase {
                weights,
                shifts,
                pixels,
            }
        })
        .collect();
    with_scratch([g.batch * per_image * m], |[padded]| {
        pad_channels_last(
            dy,
            m,
            g.output,
            [rows - 1, runs - 1],
            [height, width],
            padded,
        );
        let padded = &*padded;
        let len = g.batch * g.image_len();
        // The pixels no phase lists (read by no output) keep their zeros.
        let (images, _) = filled_in_parallel(len, g.image_len() * group, |index, out| {
            let count = out.len() / g.image_len();
            for phase in &phases {
                let reads = ChannelsLast {
                    data: &padded[index * group * per_image * m..],
                    channels: m,
                    shifts: &phase.shifts,
                };
                let pixels = &phase.pixels[..count * phase.pixels.len() / group];
                let done =
                    direct::convolve_pixels(out, h * w, &phase.weights, bias, &reads, pixels);
                debug_assert!(done, "the sums run on this CPU");
            }
        });
        images
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::conv::tests::{
        assert_adjoint, assert_matches_direct, operands, padded_geometry,
    };

    /// Strided geometries: the DCGAN's, odd sides, image rows no output reads, uneven strides,
    /// kernels that are not whole strides along the height, padding wider than the stride.
    fn geometries() -> Vec<ConvGeometry> {
        let g = |c, image, kernel, stride, padding| {
            padded_geometry([17, c, 3], image, kernel, stride, padding)
        };
        vec![
            g(16, [14, 14], [4, 4], [2, 2], [1, 1]), // the DCGAN discriminator's second layer
            g(16, [7, 9], [4, 4], [2, 2], [1, 1]),   // odd sides
            g(16, [17, 16], [4, 4], [2, 2], [0, 0]), // the last row read by no output
            g(16, [11, 8], [6, 3], [3, 1], [2, 1]),  // uneven kernel and stride
            g(16, [9, 10], [3, 4], [2, 2], [1, 1]),  // a kernel height of no whole strides
            g(16, [4, 4], [4, 4], [2, 2], [3, 3]),   // padding wider than the stride
        ]
    }

    #[test]
    fn strided_sums_match_the_definition() {
        for g in geometries() {
            assert_eq!(applies(&g), direct::pixels_available(), "{g:?}");
            assert_matches_direct(&g, forward, [41, 42, 43]);
            assert_adjoint(&g, (forward, image_grad, weight_grad), [44, 45, 46]);
        }
    }

    /// The input gradient of a batch that splits into groups, the last one short, adds its bias
    /// once per pixel and equals the patch matrix's.
    #[test]
    fn the_input_gradient_by_phases_matches_the_patch_matrix() {
        let g = ConvGeometry {
            batch: 11,
            ..geometries()[1]
        };
        assert_eq!(applies_to_image_grad(&g), direct::pixels_available());
        assert!(images_per_group(g.batch) < g.batch || rayon::current_num_threads() > 2);
        let [_, w, dy] = operands(&g, [51, 52, 53]);
        let fill: Vec<f32> = (0..g.channels).map(|c| c as f32 + 0.5).collect();
        let expected = channels_last::image_grad(&g, &w, &dy, Some(&fill));
        for (i, (a, e)) in image_grad(&g, &w, &dy, Some(&fill))
            .iter()
            .zip(&expected)
            .enumerate()
        {
            assert!(
                (a - e).abs() <= 1e-5 * (1.0 + e.abs()),
                "at {i}: {a} vs {e}"
            );
        }
    }

    /// The weight gradient over dealt columns equals the patch matrix's, entry by entry.
    #[test]
    fn the_weight_gradient_over_dealt_columns_matches_the_patch_matrix() {
        for g in geometries() {
            let [x, _, dy] = operands(&g, [61, 62, 63]);
            let expected = channels_last::weight_grad(&g, &x, &dy);
            let got = weight_grad(&g, &x, &dy);
            assert_eq!(got.len(), expected.len());
            for (i, (a, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{g:?} at {i}: {a} vs {e}"
                );
            }
        }
    }

    #[test]
    fn only_strided_kernels_of_whole_strides_take_the_sums() {
        let dcgan = geometries()[0];
        let pixels = direct::pixels_available();
        assert_eq!(applies(&dcgan) && applies_to_image_grad(&dcgan), pixels);
        let odd = geometries()[4];
        assert_eq!(applies(&odd), pixels);
        assert!(!applies_to_image_grad(&odd));
        assert!(!applies(&ConvGeometry {
            stride: [1, 1],
            ..dcgan
        }));
        // The generator's last layer, a transposed convolution to one channel.
        let to_one = ConvGeometry {
            channels: 1,
            ..dcgan
        };
        assert!(!applies(&to_one) && !applies_to_image_grad(&to_one));
        assert!(!applies(&ConvGeometry {
            out_channels: 8,
            ..dcgan
        }));
        assert!(!applies(&ConvGeometry {
            kernel: [3, 3],
            ..dcgan
        }));
    }
}
