//! The shifted form's sum of products, `Y = Σ_tap W_tap · X[:, s_tap ..]`, as one
//! register-blocked AVX-512 loop instead of `kh · kw` GEMMs.
//!
//! One GEMM per kernel offset reads and writes the whole output block once per offset and packs
//! its shifted operand each time, and with 32-64 input channels each of those products is short
//! (its inner dimension is the channel count): in the U-Net's 28x28 convolutions the packing and
//! the output traffic took about a quarter of the GEMMs' time. Here a tile of 4 output channels by
//! 96 columns stays in 24 vector registers while every kernel offset and every input channel is
//! added into it, and is written once: per channel and offset, 6 loads of the shifted images, 4
//! broadcast weights and 24 fused multiply-adds. This is the direct convolution of oneDNN's JIT
//! kernels; neither faer nor `gemm` offers a sum of shifted products, hence it is written here.

/// Output channels per register tile: the tile's rows.
const ROWS: usize = 4;

/// 16-float vectors per register tile row: 96 columns.
const VECTORS: usize = 6;

/// Where the columns of a block lie: whole images of `per_image` columns each, of which only the
/// first `computed` are needed (the padded grid's last `kh − 1` rows hold no output).
#[derive(Clone, Copy, Debug)]
pub(super) struct Columns {
    pub per_image: usize,
    pub computed: usize,
}

/// The right operand of the sum: padded images read at each kernel offset's shift.
pub(super) struct Shifted<'a> {
    /// Channel `ci` starts at `data[ci · row_stride]`, at the block's first column.
    pub data: &'a [f32],
    pub channels: usize,
    pub row_stride: usize,
    /// Where each kernel offset reads, relative to the output column.
    pub shifts: &'a [usize],
    pub columns: Columns,
}

/// Whether [`shifted_sum`] computes for `m` output channels on this CPU.
pub(super) fn available(m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        m > 0 && m.is_multiple_of(ROWS) && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = m;
        false
    }
}

/// `block [m, cols] = Σ_tap W_tap · X[:, shifts[tap] ..][.., cols]`, where `weights [taps, m, c]`
/// holds `W_tap [m, c]` and `X` is `images`, on the `computed` first columns of every image (the
/// others are left as they were). Returns false, leaving `block` untouched, where the CPU has no
/// AVX-512 or `m` is not a multiple of 4: the caller then sums GEMMs.
///
/// # Panics
///
/// When `weights` is not `taps · m · c` floats, the block is not whole images, or a shifted view
/// reaches past the images.
pub(super) fn shifted_sum(
    block: &mut [f32],
    m: usize,
    weights: &[f32],
    images: &Shifted<'_>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !available(m) {
            return false;
        }
        let sum = checked(block.len(), m, weights.len(), images);
        // SAFETY: the CPU has just reported AVX-512F, and every load stays within the bounds
        // asserted above: column `q < cols` of channel `ci` at offset `tap` is
        // `data[ci · row_stride + shifts[tap] + q]` and weight `(tap, o, ci)` is
        // `weights[(tap · m + o) · c + ci]`; every store is in `block`.
        unsafe { avx512::sum_into(&sum, weights.as_ptr(), block.as_mut_ptr()) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (block, m, weights, images);
        false
    }
}

/// `grads [taps, m, c] += Σ_q dY [:, q] · X[:, shifts[tap] + q]ᵀ` over the `computed` first
/// columns of every image of the block `dY [m, cols]`: the weight gradient of [`shifted_sum`].
/// A tile of 4 output channels by up to 6 input channels is summed along the columns in 24
/// vector registers and reduced once at the end. Returns false, leaving `grads` untouched,
/// where [`available`] does not hold.
///
/// # Panics
///
/// As [`shifted_sum`], with `grads` in place of `weights`.
pub(super) fn shifted_products(
    grads: &mut [f32],
    output_grad: &[f32],
    m: usize,
    images: &Shifted<'_>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !available(m) {
            return false;
        }
        let sum = checked(output_grad.len(), m, grads.len(), images);
        // SAFETY: as in `shifted_sum`, with `output_grad` read where `block` was written and
        // `grads` updated where `weights` was read.
        unsafe { avx512::products_into(&sum, output_grad.as_ptr(), grads.as_mut_ptr()) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (grads, output_grad, m, images);
        false
    }
}

/// The operands of a sum over a block of `block_len` floats and `weights_len` weights, with
/// their bounds checked.
#[cfg(target_arch = "x86_64")]
fn checked<'a>(block_len: usize, m: usize, weights_len: usize, images: &Shifted<'a>) -> Sum<'a> {
    let Shifted {
        data,
        channels,
        row_stride,
        shifts,
        columns,
    } = *images;
    let cols = block_len / m;
    assert_eq!(block_len, m * cols, "output block size");
    assert_eq!(weights_len, shifts.len() * m * channels, "weights size");
    assert!(
        columns.computed <= columns.per_image && cols.is_multiple_of(columns.per_image.max(1)),
        "a block is whole images"
    );
    let reach = shifts.iter().max().map_or(0, |s| s + cols);
    assert!(
        channels == 0 || data.len() >= (channels - 1) * row_stride + reach,
        "shifted image view out of bounds"
    );
    Sum {
        m,
        cols,
        shifts,
        channels,
        images: data.as_ptr(),
        row_stride,
        columns,
    }
}

/// The operands of one [`shifted_sum`] or [`shifted_products`] but its weights and output.
#[cfg(target_arch = "x86_64")]
struct Sum<'a> {
    m: usize,
    cols: usize,
    shifts: &'a [usize],
    channels: usize,
    images: *const f32,
    row_stride: usize,
    columns: Columns,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };

    use super::{Columns, ROWS, Sum, VECTORS};

    const LANES: usize = 16;

    /// Every tile of the block: per image, whole 96-column tiles, then one narrower tile whose
    /// last vector is masked. Column tiles are the outer loop, so that one tile's shifted images
    /// stay in the L1 cache while every group of output channels reads them.
    ///
    /// # Safety
    ///
    /// AVX-512F, and the bounds [`super::shifted_sum`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum_into(sum: &Sum<'_>, weights: *const f32, out: *mut f32) {
        let Columns {
            per_image,
            computed,
        } = sum.columns;
        let wide = LANES * VECTORS;
        for image in (0..sum.cols).step_by(per_image.max(1)) {
            let end = image + computed;
            let mut q = image;
            while q < end {
                let width = (end - q).min(wide);
                let vectors = width.div_ceil(LANES);
                let last = width - (vectors - 1) * LANES;
                let mask: __mmask16 = if last == LANES { !0 } else { (1 << last) - 1 };
                for o in (0..sum.m).step_by(ROWS) {
                    // SAFETY: as for this function; the tile's columns `q .. q + width` are in
                    // the block, and the mask keeps the last vector's loads and stores to them.
                    unsafe {
                        match vectors {
                            6 => tile::<6>(sum, weights, out, q, o, mask),
                            5 => tile::<5>(sum, weights, out, q, o, mask),
                            4 => tile::<4>(sum, weights, out, q, o, mask),
                            3 => tile::<3>(sum, weights, out, q, o, mask),
                            2 => tile::<2>(sum, weights, out, q, o, mask),
                            _ => tile::<1>(sum, weights, out, q, o, mask),
                        }
                    }
                }
                q += width;
            }
        }
    }

    /// Output channels `o .. o + 4` by columns `q .. q + 16 · V`, summed over every kernel
    /// offset and input channel in registers, then stored; the last vector's loads and store
    /// are masked by `last`.
    ///
    /// # Safety
    ///
    /// AVX-512F; the tile's columns below `sum.cols`, `o + 4 ≤ m`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const V: usize>(
        sum: &Sum<'_>,
        weights: *const f32,
        out: *mut f32,
        q: usize,
        o: usize,
        last: __mmask16,
    ) {
        let c = sum.channels;
        let mut masks = [!0 as __mmask16; V];
        masks[V - 1] = last;
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for (tap, &shift) in sum.shifts.iter().enumerate() {
            // SAFETY (this block): the offsets stay inside the bounds of `shifted_sum`.
            unsafe {
                let weights = weights.add((tap * sum.m + o) * c);
                let images = sum.images.add(shift + q);
                for ci in 0..c {
                    let row = images.add(ci * sum.row_stride);
                    let mut w = [_mm512_setzero_ps(); ROWS];
                    for (r, w) in w.iter_mut().enumerate() {
                        *w = _mm512_set1_ps(*weights.add(r * c + ci));
                    }
                    for (v, &mask) in masks.iter().enumerate() {
                        let x: __m512 = _mm512_maskz_loadu_ps(mask, row.add(v * LANES));
                        for r in 0..ROWS {
                            acc[r][v] = _mm512_fmadd_ps(w[r], x, acc[r][v]);
                        }
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: row `o + r < m`, columns as above.
            unsafe {
                let dst = out.add((o + r) * sum.cols + q);
                for (v, (value, &mask)) in acc.iter().zip(&masks).enumerate() {
                    _mm512_mask_storeu_ps(dst.add(v * LANES), mask, *value);
                }
            }
        }
    }

    /// Every tile of [`super::shifted_products`]: per kernel offset, groups of 4 output channels
    /// by up to 6 input channels.
    ///
    /// # Safety
    ///
    /// AVX-512F, and the bounds [`super::shifted_products`] checks.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn products_into(sum: &Sum<'_>, output_grad: *const f32, grads: *mut f32) {
        for tap in 0..sum.shifts.len() {
            for o in (0..sum.m).step_by(ROWS) {
                let mut ci = 0;
                while ci < sum.channels {
                    let width = (sum.channels - ci).min(VECTORS);
                    let at = Place { tap, o, ci };
                    // SAFETY: as for this function; `o + 4 ≤ m`, `ci + width ≤ c`.
                    unsafe {
                        match width {
                            6 => product_tile::<6>(sum, output_grad, grads, at),
                            5 => product_tile::<5>(sum, output_grad, grads, at),
                            4 => product_tile::<4>(sum, output_grad, grads, at),
                            3 => product_tile::<3>(sum, output_grad, grads, at),
                            2 => product_tile::<2>(sum, output_grad, grads, at),
                            _ => product_tile::<1>(sum, output_grad, grads, at),
                        }
                    }
                    ci += width;
                }
            }
        }
    }

    /// The gradient tile `(tap, o .. o + 4, ci .. ci + C)`.
    #[derive(Clone, Copy)]
    struct Place {
        tap: usize,
        o: usize,
        ci: usize,
    }

    /// `grads[tap, o + r, ci + j] += Σ_q dY[o + r, q] · X[ci + j, shift + q]` over the computed
    /// columns, 16 at a time, the last vector of each image masked.
    ///
    /// # Safety
    ///
    /// AVX-512F; `o + 4 ≤ m`, `ci + C ≤ c`, the bounds of [`super::shifted_products`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn product_tile<const C: usize>(
        sum: &Sum<'_>,
        output_grad: *const f32,
        grads: *mut f32,
        Place { tap, o, ci }: Place,
    ) {
        let Columns {
            per_image,
            computed,
        } = sum.columns;
        let mut acc = [[_mm512_setzero_ps(); C]; ROWS];
        // SAFETY (this block): every column read is below `cols` (masked past the computed
        // ones), at rows below `m` and `c`.
        unsafe {
            let images = sum.images.add(sum.shifts[tap] + ci * sum.row_stride);
            let output_grad = output_grad.add(o * sum.cols);
            for image in (0..sum.cols).step_by(per_image.max(1)) {
                let end = image + computed;
                let mut q = image;
                while q < end {
                    let left = end - q;
                    let mask: __mmask16 = if left >= LANES { !0 } else { (1 << left) - 1 };
                    let mut dy = [_mm512_setzero_ps(); ROWS];
                    for (r, dy) in dy.iter_mut().enumerate() {
                        *dy = _mm512_maskz_loadu_ps(mask, output_grad.add(r * sum.cols + q));
                    }
                    // One input channel at a time, so that only its vector is live beside the
                    // accumulators and the four gradient rows.
                    #[expect(clippy::needless_range_loop, reason = "j also picks the image row")]
                    for j in 0..C {
                        let x = _mm512_maskz_loadu_ps(mask, images.add(j * sum.row_stride + q));
                        for r in 0..ROWS {
                            acc[r][j] = _mm512_fmadd_ps(dy[r], x, acc[r][j]);
                        }
                    }
                    q += LANES;
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let row = grads.add((tap * sum.m + o + r) * sum.channels + ci);
                for (j, value) in acc.iter().enumerate() {
                    *row.add(j) += _mm512_reduce_add_ps(*value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An f32 sum against its f64 value: within 1e-6 of the sum of the terms' magnitudes (f32's
    /// rounding is 6e-8 per addition, and a lane adds up to a few hundred terms in turn), plus
    /// 1e-6 absolute.
    fn close(got: f32, expected: f64, magnitude: f64) -> bool {
        (f64::from(got) - expected).abs() <= 1e-6 * (1.0 + magnitude)
    }

    /// The sum and its weight gradient against their definitions, on blocks of one and of
    /// several images, with tiles that end in a partial vector, input channels that are not a
    /// multiple of the tile's, and columns left out at the end of each image.
    #[test]
    fn the_sums_of_shifted_products_are_their_definitions() {
        for (m, c, images_in_block, per_image, computed) in [
            (4, 3, 1, 7, 7),
            (8, 16, 1, 96 + 16 + 5, 96 + 16 + 5),
            (12, 5, 2, 96, 96),
            (4, 1, 1, 1, 1),
            (8, 7, 3, 81, 63),
            (4, 32, 2, 900, 840),
        ] {
            let cols = images_in_block * per_image;
            let shifts = [0usize, 1, 5, 9];
            let row_stride = cols + 9 + 3;
            let images: Vec<f32> = (0..c * row_stride)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let weights: Vec<f32> = (0..shifts.len() * m * c)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 30.0)
                .collect();
            let mut block = vec![f32::NAN; m * cols];
            let shifted = Shifted {
                data: &images,
                channels: c,
                row_stride,
                shifts: &shifts,
                columns: Columns {
                    per_image,
                    computed,
                },
            };
            if !shifted_sum(&mut block, m, &weights, &shifted) {
                return; // no AVX-512 here: the GEMM path is tested by the convolution tests
            }
            let output_grad: Vec<f32> = (0..m * cols)
                .map(|i| ((i * 29 % 97) as f32 - 48.0) / 40.0)
                .collect();
            let mut grads = vec![0.5f32; weights.len()];
            assert!(shifted_products(&mut grads, &output_grad, m, &shifted));
            for (index, &got) in grads.iter().enumerate() {
                let (t, o, ci) = (index / (m * c), (index / c) % m, index % c);
                let terms = (0..cols).filter(|q| q % per_image < computed).map(|q| {
                    f64::from(output_grad[o * cols + q])
                        * f64::from(images[ci * row_stride + shifts[t] + q])
                });
                let expected = 0.5 + terms.clone().sum::<f64>();
                assert!(
                    close(got, expected, terms.map(f64::abs).sum()),
                    "m {m} c {c} cols {cols}: gradient ({t}, {o}, {ci}) {got} against {expected}"
                );
            }
            for o in 0..m {
                for q in 0..cols {
                    let got = block[o * cols + q];
                    if q % per_image >= computed {
                        assert!(got.is_nan(), "column {q} is not computed, yet written");
                        continue;
                    }
                    let terms = (0..shifts.len())
                        .flat_map(|t| (0..c).map(move |ci| (t, ci)))
                        .map(|(t, ci)| {
                            f64::from(weights[(t * m + o) * c + ci])
                                * f64::from(images[ci * row_stride + shifts[t] + q])
                        });
                    assert!(
                        close(got, terms.clone().sum(), terms.map(f64::abs).sum()),
                        "m {m} c {c} cols {cols}: ({o}, {q}) {got}"
                    );
                }
            }
        }
    }
}
