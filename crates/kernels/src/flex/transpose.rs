//! Transposition between strided layouts, the layout change of the channels-last sums
//! (`[c, pixels]` to `[pixels, c]` and back).
//!
//! A scalar transposition reads along one side and writes one float per cache line on the
//! other; on a CPU with AVX-512 each 16x16 block is instead loaded as 16 rows, transposed in
//! registers (three rounds of shuffles) and stored as 16 rows. No crate among the project's
//! dependencies transposes between arbitrary strides (faer's and ndarray's copies go element by
//! element), hence it is written here.

/// Floats per side of a block.
const BLOCK: usize = 16;

/// `dst[col · dst_stride + r] = src[r · src_stride + col]` for `r < rows`, `col < cols`.
///
/// # Panics
///
/// When an element lies past `src` or `dst`.
pub(super) fn transpose(
    src: &[f32],
    [rows, cols]: [usize; 2],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        (rows - 1) * src_stride + cols <= src.len(),
        "a row reads past the source"
    );
    assert!(
        (cols - 1) * dst_stride + rows <= dst.len(),
        "a column writes past the destination"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for r0 in (0..rows).step_by(BLOCK) {
            for c0 in (0..cols).step_by(BLOCK) {
                let size = [(rows - r0).min(BLOCK), (cols - c0).min(BLOCK)];
                // SAFETY: the CPU has just reported AVX-512F; the block's `size[0]` rows of
                // `size[1]` floats lie inside `src` and its `size[1]` columns of `size[0]` floats
                // inside `dst` (the asserts above).
                unsafe {
                    avx512::block(
                        src.as_ptr().add(r0 * src_stride + c0),
                        src_stride,
                        dst.as_mut_ptr().add(c0 * dst_stride + r0),
                        dst_stride,
                        size,
                    );
                }
            }
        }
        return;
    }
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                let line = &src[r * src_stride..];
                for col in c0..(c0 + BLOCK).min(cols) {
                    dst[col * dst_stride + r] = line[col];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_castpd_ps, _mm512_castps_pd, _mm512_mask_storeu_ps,
        _mm512_maskz_loadu_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_unpackhi_pd,
        _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };

    /// The first `count` of 16 lanes.
    fn lanes(count: usize) -> __mmask16 {
        if count >= 16 { !0 } else { (1 << count) - 1 }
    }

    /// The block of `rows` rows by `cols` columns (at most 16 each) at `src` (rows `src_stride`
    /// apart) written transposed at `dst` (rows `dst_stride` apart). A partial block is loaded
    /// and stored through masks, so that the edges of a layout change are vector code too.
    ///
    /// # Safety
    ///
    /// AVX-512F; `rows` rows of `cols` floats at `src` readable and `cols` rows of `rows` floats
    /// at `dst` writable.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
        [rows, cols]: [usize; 2],
    ) {
        let (across, down) = (lanes(cols), lanes(rows));
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, row) in r.iter_mut().enumerate().take(rows) {
            // SAFETY: row `i < rows`, its first `cols` floats, inside the caller's bounds.
            *row = unsafe { _mm512_maskz_loadu_ps(across, src.add(i * src_stride)) };
        }
        // Within each 128-bit lane: pairs of rows interleaved, then pairs of pairs, so that
        // lane k of vector 4i + j holds column 4k + j of rows 4i .. 4i + 4.
        let pairs: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let quads: [__m512; 16] = std::array::from_fn(|i| {
            let (group, j) = (i / 4, i % 4);
            let (a, b) = (
                _mm512_castps_pd(pairs[4 * group + j / 2]),
                _mm512_castps_pd(pairs[4 * group + 2 + j / 2]),
            );
            _mm512_castpd_ps(if j % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        // Across lanes: the even lanes (columns 0-3, 8-11 of the lane's four) of two groups of
        // rows side by side, and the odd ones; then the same once more across the halves.
        let halves: [__m512; 16] = std::array::from_fn(|i| {
            let (upper, odd, j) = (i / 8, (i / 4) % 2, i % 4);
            let (a, b) = (quads[8 * upper + j], quads[8 * upper + 4 + j]);
            if odd == 0 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            }
        });
        for column in 0..cols {
            let (j, high) = (column % 8, column / 8);
            let (a, b) = (halves[j], halves[8 + j]);
            let out = if high == 0 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            };
            // SAFETY: the first `rows` floats of column `column < cols`, inside the caller's
            // bounds.
            unsafe { _mm512_mask_storeu_ps(dst.add(column * dst_stride), down, out) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element lands where the definition puts it, on sizes with whole blocks, partial
    /// edges on both sides and strides wider than the rows; elements outside stay untouched.
    #[test]
    fn transposes_between_strides() {
        for (rows, cols, src_stride, dst_stride) in [
            (16, 16, 16, 16),
            (35, 50, 53, 40),
            (7, 33, 33, 9),
            (48, 32, 40, 50),
            (1, 1, 1, 1),
            (64, 14, 196, 64), // a 14-pixel image row to channels-last
            (7, 128, 7, 128),
        ] {
            let src: Vec<f32> = (0..(rows - 1) * src_stride + cols)
                .map(|i| i as f32)
                .collect();
            let mut dst = vec![f32::NAN; (cols - 1) * dst_stride + rows];
            transpose(&src, [rows, cols], src_stride, &mut dst, dst_stride);
            let mut expected = vec![f32::NAN; dst.len()];
            for r in 0..rows {
                for c in 0..cols {
                    expected[c * dst_stride + r] = src[r * src_stride + c];
                }
            }
            for (i, (got, want)) in dst.iter().zip(&expected).enumerate() {
                assert!(
                    got == want || (got.is_nan() && want.is_nan()),
                    "{rows}x{cols}: element {i}: {got} against {want}"
                );
            }
        }
    }
}
