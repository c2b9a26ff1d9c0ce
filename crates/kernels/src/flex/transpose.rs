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
    let whole = [rows - rows % BLOCK, cols - cols % BLOCK];
    let mut blocked = false;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        for r0 in (0..whole[0]).step_by(BLOCK) {
            for c0 in (0..whole[1]).step_by(BLOCK) {
                // SAFETY: the CPU has just reported AVX-512F; the block's 16 rows of 16 floats
                // lie inside `src` and its 16 columns inside `dst` (the asserts above).
                unsafe {
                    avx512::block(
                        src.as_ptr().add(r0 * src_stride + c0),
                        src_stride,
                        dst.as_mut_ptr().add(c0 * dst_stride + r0),
                        dst_stride,
                    );
                }
            }
        }
        blocked = true;
    }
    let scalar = |dst: &mut [f32], rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        for r0 in rows.clone().step_by(BLOCK) {
            for c0 in cols.clone().step_by(BLOCK) {
                for r in r0..(r0 + BLOCK).min(rows.end) {
                    let line = &src[r * src_stride..];
                    for col in c0..(c0 + BLOCK).min(cols.end) {
                        dst[col * dst_stride + r] = line[col];
                    }
                }
            }
        }
    };
    if blocked {
        scalar(dst, 0..whole[0], whole[1]..cols);
        scalar(dst, whole[0]..rows, 0..cols);
    } else {
        scalar(dst, 0..rows, 0..cols);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_castpd_ps, _mm512_castps_pd, _mm512_loadu_ps, _mm512_shuffle_f32x4,
        _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
        _mm512_unpacklo_ps,
    };

    /// The 16x16 block at `src` (rows `src_stride` apart) written transposed at `dst` (rows
    /// `dst_stride` apart).
    ///
    /// # Safety
    ///
    /// AVX-512F; 16 rows of 16 floats at `src` readable and at `dst` writable.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block(
        src: *const f32,
        src_stride: usize,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        // SAFETY: the rows are inside the caller's bounds.
        let r: [__m512; 16] =
            std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * src_stride)) });
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
        for column in 0..16 {
            let (j, high) = (column % 8, column / 8);
            let (a, b) = (halves[j], halves[8 + j]);
            let out = if high == 0 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            };
            // SAFETY: column `column` of the block, inside the caller's bounds.
            unsafe { _mm512_storeu_ps(dst.add(column * dst_stride), out) };
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
