//! The shifted form's sums of products as register-blocked AVX-512 loops, instead of `kh · kw`
//! GEMMs over the whole padded grid.
//!
//! For one image, output row `oh` and output channel `o`, a stride-1 convolution is
//!
//! ```text
//! y[o, oh, ow] = Σ_tap Σ_ci W_tap[o, ci] · X[ci, oh·Wp + ow + s_tap]      s_tap = i·Wp + j
//! ```
//!
//! over the padded images `X` of the shifted form. One GEMM per kernel offset reads and writes
//! its whole output block once per offset, packs its shifted operand each time, works on the
//! padded grid's dropped rows and columns, and leaves a copy into the output layout; with 32-64
//! input channels each of those products is short. Here a tile of outputs stays in vector
//! registers while every kernel offset and every input channel is added into it, and is then
//! written once, bias included, straight into `[n, m, OH, OW]`. Three loops:
//!
//! - [`convolve`], over output rows: 4 output channels by six 16-float vectors of a row; per
//!   channel and offset, 6 loads of the shifted images, 4 broadcast weights and 24 fused
//!   multiply-adds. A row of 14 fills 14 of 16 lanes, a row of 7 only 7.
//! - [`convolve_pixels`], over channels-last pixels (`X [columns, c]`): 6 pixels by 64 output
//!   channels, 16 channels to a vector, so that no lane is idle at any width; each vector is
//!   scattered to its 16 output planes at the end.
//! - [`correlate`], the weight gradient, the same sum read the other way: 6 input channels by 64
//!   output channels, summed along the pixels of `dY` laid out channels-last, so that no sum
//!   crosses lanes.
//!
//! This is the direct convolution of oneDNN's JIT kernels; neither faer nor `gemm` offers a sum
//! of shifted products, hence it is written here.

/// Output channels per register tile.
const ROWS: usize = 4;

/// 16-float vectors of output row per register tile ([`convolve`]), or input channels per tile
/// ([`correlate`]).
const VECTORS: usize = 6;

/// Floats per vector.
pub(super) const LANES: usize = 16;

/// Up to 16 consecutive outputs of one output row, where they read and where they lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Segment {
    /// Column of the padded images that its first output reads at kernel offset 0.
    pub image: usize,
    /// Offset of its first output in the output, at output channel 0.
    pub output: usize,
    /// Outputs, 1 to 16.
    pub len: usize,
}

/// The segments of `count` images with outputs `[OH, OW]` laid out `[n, m, OH, OW]`, whose padded
/// images are `per_image` columns of rows of `width` columns each.
pub(super) fn segments(
    count: usize,
    m: usize,
    output: [usize; 2],
    per_image: usize,
    width: usize,
) -> Vec<Segment> {
    let [oh, ow] = output;
    let mut segments = Vec::with_capacity(count * oh * ow.div_ceil(LANES));
    for n in 0..count {
        for y in 0..oh {
            for x in (0..ow).step_by(LANES) {
                segments.push(Segment {
                    image: n * per_image + y * width + x,
                    output: (n * m * oh + y) * ow + x,
                    len: (ow - x).min(LANES),
                });
            }
        }
    }
    segments
}

/// The padded images the sums read, shifted by each kernel offset.
pub(super) struct Shifted<'a> {
    /// Channel `ci` starts at `data[ci · row_stride]`.
    pub data: &'a [f32],
    pub channels: usize,
    pub row_stride: usize,
    /// Where each kernel offset reads, relative to the column of offset 0.
    pub shifts: &'a [usize],
}

/// The output side of the sums: `m` channels `plane` floats apart, covered by `segments`.
pub(super) struct Outputs<'a> {
    pub m: usize,
    pub plane: usize,
    pub segments: &'a [Segment],
}

/// Whether the sums run for `m` output channels on this CPU.
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

/// Whether the sums over channels-last pixels ([`convolve_pixels`], and the weight gradient
/// [`correlate`]) run on this CPU: for any channel counts.
pub(super) fn pixels_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[o · plane + segment outputs] = bias[o] + Σ_tap Σ_ci W_tap[o, ci] · X[ci, image + s_tap
/// ..]` for every segment, where `weights [taps, m, c]` holds `W_tap [m, c]`. Returns false,
/// leaving `out` untouched, where [`available`] does not hold: the caller then sums GEMMs.
///
/// # Panics
///
/// When `weights` or `bias` have the wrong size, or a segment reaches past the images or `out`.
pub(super) fn convolve(
    out: &mut [f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    images: &Shifted<'_>,
    outputs: &Outputs<'_>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !available(outputs.m) {
            return false;
        }
        check(out.len(), weights.len(), images, outputs);
        if let Some(bias) = bias {
            assert_eq!(bias.len(), outputs.m, "bias size");
        }
        // SAFETY: the CPU has just reported AVX-512F; `check` bounds every image column a
        // segment reads at any offset and every output it writes, and the weights.
        unsafe {
            avx512::convolve(
                images,
                outputs,
                weights.as_ptr(),
                bias.map(<[f32]>::as_ptr),
                out.as_mut_ptr(),
            )
        };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (out, weights, bias, images, outputs);
        false
    }
}

/// The padded images channels-last, `X [columns, c]`: column `q` of the padded grid holds its
/// `c` channels side by side.
pub(super) struct ChannelsLast<'a> {
    pub data: &'a [f32],
    pub channels: usize,
    /// Where each kernel offset reads, in columns, relative to the column of offset 0.
    pub shifts: &'a [usize],
}

/// The weights `[taps, c, m]` of [`convolve_pixels`], packed once per call of a convolution:
/// `[⌈m / 64⌉, taps, c, 64]`, zero past `m`, so that one tile's weights at one channel and offset
/// are four whole vectors and a tile reads its block in order.
pub(super) struct Packed {
    data: Vec<f32>,
    taps: usize,
    c: usize,
    m: usize,
}

impl Packed {
    /// # Panics
    ///
    /// When `weights` is not `[taps, c, m]`.
    pub fn new(weights: &[f32], taps: usize, c: usize, m: usize) -> Self {
        assert_eq!(weights.len(), taps * c * m, "weights size");
        let blocks = m.div_ceil(OUTPUT_LANES);
        let mut data = vec![0.0f32; blocks * taps * c * OUTPUT_LANES];
        for (index, chunk) in data.chunks_exact_mut(OUTPUT_LANES).enumerate() {
            let (block, row) = (index / (taps * c), index % (taps * c));
            let o = block * OUTPUT_LANES;
            let len = (m - o).min(OUTPUT_LANES);
            chunk[..len].copy_from_slice(&weights[row * m + o..][..len]);
        }
        Self { data, taps, c, m }
    }
}

/// Output channels per tile of the channels-last sums: four vectors.
const OUTPUT_LANES: usize = 4 * LANES;

/// One output pixel: the column of the padded images it reads at kernel offset 0, and where
/// its output channel 0 lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pixel {
    pub image: usize,
    pub output: usize,
}

/// The output pixels of `count` images with outputs `[OH, OW]` laid out `[n, m, OH, OW]`, whose
/// padded images are `per_image` columns of rows of `width` columns each.
pub(super) fn pixels(
    count: usize,
    m: usize,
    output: [usize; 2],
    per_image: usize,
    width: usize,
) -> Vec<Pixel> {
    let [oh, ow] = output;
    (0..count)
        .flat_map(|n| (0..oh).map(move |y| (n, y)))
        .flat_map(|(n, y)| {
            (0..ow).map(move |x| Pixel {
                image: n * per_image + y * width + x,
                output: (n * m * oh + y) * ow + x,
            })
        })
        .collect()
}

/// `out[pixel.output + o · plane] = bias[o] + Σ_tap Σ_ci W_tap[ci, o] · X[pixel.image + s_tap,
/// ci]` for every pixel and output channel `o`, where `weights` packs `W_tap [c, m]`. A tile of
/// six pixels by 64 output channels (four vectors) stays in registers across every offset and
/// channel: 16 output channels fill a vector, so an output row of any width wastes no lane.
/// Returns false, leaving `out` untouched, without AVX-512.
///
/// # Panics
///
/// When `weights` and `images` disagree, `bias` has the wrong size, or a pixel reads past the
/// images or lies past `out`.
pub(super) fn convolve_pixels(
    out: &mut [f32],
    plane: usize,
    weights: &Packed,
    bias: Option<&[f32]>,
    images: &ChannelsLast<'_>,
    pixels: &[Pixel],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !pixels_available() {
            return false;
        }
        let (c, m) = (images.channels, weights.m);
        assert_eq!(
            (weights.taps, weights.c),
            (images.shifts.len(), c),
            "weights shape"
        );
        assert!(bias.is_none_or(|b| b.len() == m), "bias size");
        assert!(
            i32::try_from(LANES * plane).is_ok(),
            "output planes of {plane} floats"
        );
        let furthest = images.shifts.iter().max().copied().unwrap_or(0);
        for pixel in pixels {
            assert!(
                (pixel.image + furthest + 1) * c <= images.data.len(),
                "pixel {pixel:?} reads past the images"
            );
            assert!(
                m == 0 || pixel.output + (m - 1) * plane < out.len(),
                "pixel {pixel:?} lies past the output"
            );
        }
        // SAFETY: the CPU has just reported AVX-512F; the asserts above bound every read and
        // write, and `Packed` holds every block the tiles read.
        unsafe {
            avx512::convolve_pixels(
                images,
                pixels,
                weights,
                bias.map(<[f32]>::as_ptr),
                out.as_mut_ptr(),
                plane,
            )
        };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (out, plane, weights, bias, images, pixels);
        false
    }
}

/// Consecutive output pixels of one output row, for the weight gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Row {
    /// Column of the padded images that its first pixel reads at kernel offset 0.
    pub image: usize,
    /// Its first pixel in the channels-last output gradient `[pixels, m]`.
    pub pixel: usize,
    /// Pixels.
    pub len: usize,
}

/// The output rows of `count` images with outputs `[OH, OW]`, whose padded images are
/// `per_image` columns of rows of `width` columns each.
pub(super) fn rows(count: usize, output: [usize; 2], per_image: usize, width: usize) -> Vec<Row> {
    let [oh, ow] = output;
    (0..count)
        .flat_map(|n| (0..oh).map(move |y| (n, y)))
        .map(|(n, y)| Row {
            image: n * per_image + y * width,
            pixel: (n * oh + y) * ow,
            len: ow,
        })
        .collect()
}

/// `grads[tap, ci, o] += Σ_rows Σ_k X[ci, image + k + s_tap] · dY[pixel + k, o]`: the weight
/// gradient of [`convolve`] with `dY [pixels, m]` channels-last, so that 16 output channels fill
/// a vector and no sum crosses lanes. Returns false, leaving `grads` untouched, without AVX-512.
///
/// # Panics
///
/// When `grads` is not `[taps, c, m]`, or a row reads past the images or `output_grad`.
pub(super) fn correlate(
    grads: &mut [f32],
    output_grad: &[f32],
    m: usize,
    images: &Shifted<'_>,
    rows: &[Row],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !pixels_available() {
            return false;
        }
        let c = images.channels;
        assert_eq!(grads.len(), images.shifts.len() * c * m, "gradient size");
        let furthest = images.shifts.iter().max().copied().unwrap_or(0);
        for row in rows {
            assert!(
                c == 0
                    || (c - 1) * images.row_stride + row.image + furthest + row.len
                        <= images.data.len(),
                "row {row:?} reads past the images"
            );
            assert!(
                (row.pixel + row.len) * m <= output_grad.len(),
                "row {row:?} reads past the output gradient"
            );
        }
        // SAFETY: the CPU has just reported AVX-512F; the asserts above bound every read, and
        // `grads` holds every `(tap, ci, o)`.
        unsafe { avx512::correlate(images, rows, m, output_grad.as_ptr(), grads.as_mut_ptr()) };
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (grads, output_grad, m, images, rows);
        false
    }
}

/// Asserts that every segment's reads and writes stay in their slices.
#[cfg(target_arch = "x86_64")]
fn check(out_len: usize, weights_len: usize, images: &Shifted<'_>, outputs: &Outputs<'_>) {
    let c = images.channels;
    assert_eq!(
        weights_len,
        images.shifts.len() * outputs.m * c,
        "weights size"
    );
    let furthest = images.shifts.iter().max().copied().unwrap_or(0);
    for s in outputs.segments {
        assert!((1..=LANES).contains(&s.len), "segment length {}", s.len);
        assert!(
            c == 0 || (c - 1) * images.row_stride + s.image + furthest + s.len <= images.data.len(),
            "segment {s:?} reads past the images"
        );
        assert!(
            (outputs.m - 1) * outputs.plane + s.output + s.len <= out_len,
            "segment {s:?} lies past the output"
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_mask_i32scatter_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_mullo_epi32, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setr_epi32,
        _mm512_setzero_ps,
    };

    use super::{
        ChannelsLast, LANES, OUTPUT_LANES, Outputs, Packed, Pixel, ROWS, Row, Segment, Shifted,
        VECTORS,
    };

    fn mask(segment: &Segment) -> __mmask16 {
        if segment.len >= LANES {
            !0
        } else {
            (1 << segment.len) - 1
        }
    }

    /// Every tile of [`super::convolve`]: six segments at a time (the last tile fewer), each
    /// group of four output channels in turn while the segments' images are in the L1 cache.
    ///
    /// # Safety
    ///
    /// AVX-512F, and the bounds `super::check` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn convolve(
        images: &Shifted<'_>,
        outputs: &Outputs<'_>,
        weights: *const f32,
        bias: Option<*const f32>,
        out: *mut f32,
    ) {
        for tile in outputs.segments.chunks(VECTORS) {
            for o in (0..outputs.m).step_by(ROWS) {
                // SAFETY: as for this function; `o + 4 ≤ m`.
                unsafe {
                    match tile.len() {
                        6 => convolve_tile::<6>(images, outputs, tile, weights, bias, out, o),
                        5 => convolve_tile::<5>(images, outputs, tile, weights, bias, out, o),
                        4 => convolve_tile::<4>(images, outputs, tile, weights, bias, out, o),
                        3 => convolve_tile::<3>(images, outputs, tile, weights, bias, out, o),
                        2 => convolve_tile::<2>(images, outputs, tile, weights, bias, out, o),
                        _ => convolve_tile::<1>(images, outputs, tile, weights, bias, out, o),
                    }
                }
            }
        }
    }

    /// Output channels `o .. o + 4` of the `V` segments of `tile`.
    ///
    /// # Safety
    ///
    /// As [`convolve`], with `tile.len() == V` and `o + 4 ≤ m`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn convolve_tile<const V: usize>(
        images: &Shifted<'_>,
        outputs: &Outputs<'_>,
        tile: &[Segment],
        weights: *const f32,
        bias: Option<*const f32>,
        out: *mut f32,
        o: usize,
    ) {
        let c = images.channels;
        let segments: &[Segment; V] = tile.try_into().expect("a tile of V segments");
        let masks = segments.map(|s| mask(&s));
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for (tap, &shift) in images.shifts.iter().enumerate() {
            // SAFETY (this block): the offsets stay inside the bounds `check` asserted.
            unsafe {
                let weights = weights.add((tap * outputs.m + o) * c);
                let base = images.data.as_ptr().add(shift);
                for ci in 0..c {
                    let channel = base.add(ci * images.row_stride);
                    let mut w = [_mm512_setzero_ps(); ROWS];
                    for (r, w) in w.iter_mut().enumerate() {
                        *w = _mm512_set1_ps(*weights.add(r * c + ci));
                    }
                    for (v, (segment, &mask)) in segments.iter().zip(&masks).enumerate() {
                        let x: __m512 = _mm512_maskz_loadu_ps(mask, channel.add(segment.image));
                        for r in 0..ROWS {
                            acc[r][v] = _mm512_fmadd_ps(w[r], x, acc[r][v]);
                        }
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: channel `o + r < m`; each segment's outputs are inside `out`.
            unsafe {
                let shift = _mm512_set1_ps(bias.map_or(0.0, |b| *b.add(o + r)));
                let channel = out.add((o + r) * outputs.plane);
                for ((value, segment), &mask) in acc.iter().zip(segments).zip(&masks) {
                    let value = _mm512_add_ps(*value, shift);
                    _mm512_mask_storeu_ps(channel.add(segment.output), mask, value);
                }
            }
        }
    }

    /// `f::<A, V>(args)` for the run-time tile size `(a, v)`, `a` in 1..=6 (pixels or input
    /// channels) and `v` in 1..=4 (vectors of output channels; past 4 the last arm).
    macro_rules! by_tile_size {
        ($f:ident($a:expr, $v:expr)($($arg:expr),*)) => {
            match $a {
                6 => by_tile_size!(@vectors $f::<6>($v)($($arg),*)),
                5 => by_tile_size!(@vectors $f::<5>($v)($($arg),*)),
                4 => by_tile_size!(@vectors $f::<4>($v)($($arg),*)),
                3 => by_tile_size!(@vectors $f::<3>($v)($($arg),*)),
                2 => by_tile_size!(@vectors $f::<2>($v)($($arg),*)),
                _ => by_tile_size!(@vectors $f::<1>($v)($($arg),*)),
            }
        };
        (@vectors $f:ident::<$a:literal>($v:expr)($($arg:expr),*)) => {
            match $v {
                4 => $f::<$a, 4>($($arg),*),
                3 => $f::<$a, 3>($($arg),*),
                2 => $f::<$a, 2>($($arg),*),
                _ => $f::<$a, 1>($($arg),*),
            }
        };
    }

    /// Output pixels per tile of [`convolve_pixels`].
    const PIXELS_PER_TILE: usize = 6;

    /// Every tile of [`super::convolve_pixels`]: six output pixels by up to 64 output channels.
    ///
    /// # Safety
    ///
    /// AVX-512F, and the bounds `super::convolve_pixels` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn convolve_pixels(
        images: &ChannelsLast<'_>,
        pixels: &[Pixel],
        weights: &Packed,
        bias: Option<*const f32>,
        out: *mut f32,
        plane: usize,
    ) {
        let m = weights.m;
        let block_len = weights.taps * weights.c * OUTPUT_LANES;
        for (block, o) in (0..m).step_by(OUTPUT_LANES).enumerate() {
            let vectors = (m - o).min(OUTPUT_LANES).div_ceil(LANES);
            for tile in pixels.chunks(PIXELS_PER_TILE) {
                let at = Tile {
                    weights: weights.data[block * block_len..].as_ptr(),
                    bias,
                    out,
                    plane,
                    o,
                    m,
                };
                // SAFETY: as for this function.
                unsafe { convolve_pixels_tile(tile.len(), vectors, images, tile, at) };
            }
        }
    }

    /// Where a tile of [`convolve_pixels`] reads its weights and writes its outputs.
    #[derive(Clone, Copy)]
    struct Tile {
        /// The packed weights of its 64 output channels.
        weights: *const f32,
        bias: Option<*const f32>,
        out: *mut f32,
        /// Floats between two output channels.
        plane: usize,
        /// Its first output channel.
        o: usize,
        m: usize,
    }

    /// [`convolve_pixels_tile_of`] for `pixels` pixels and `vectors` vectors of output channels.
    ///
    /// # Safety
    ///
    /// As [`convolve_pixels_tile_of`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn convolve_pixels_tile(
        pixels: usize,
        vectors: usize,
        images: &ChannelsLast<'_>,
        tile: &[Pixel],
        at: Tile,
    ) {
        // SAFETY: as for this function.
        unsafe { by_tile_size!(convolve_pixels_tile_of(pixels, vectors)(images, tile, at)) }
    }

    /// `out[pixel.output + (o + k) · plane] = bias[o + k] + Σ_tap Σ_ci X[pixel.image + s_tap, ci]
    /// · W_tap[ci, o + k]` for the `P` pixels of `tile` and `k < 16 V`, the last vector masked to
    /// the channels below `m`. Each vector of 16 channels is scattered to its 16 planes: once per
    /// `9 · c` multiply-adds, which leaves no layout to change afterwards.
    ///
    /// # Safety
    ///
    /// As [`convolve_pixels`], with `tile.len() == P` and `o + 16 (V − 1) < m`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn convolve_pixels_tile_of<const P: usize, const V: usize>(
        images: &ChannelsLast<'_>,
        tile: &[Pixel],
        Tile {
            weights,
            bias,
            out,
            plane,
            o,
            m,
        }: Tile,
    ) {
        let c = images.channels;
        let tile: &[Pixel; P] = tile.try_into().expect("a tile of P pixels");
        let mut acc = [[_mm512_setzero_ps(); V]; P];
        for (tap, &shift) in images.shifts.iter().enumerate() {
            // SAFETY (this block): every pixel's columns and the packed block are inside the
            // bounds `super::convolve_pixels` asserted.
            unsafe {
                let weights = weights.add(tap * c * OUTPUT_LANES);
                let columns = tile.map(|p| images.data.as_ptr().add((p.image + shift) * c));
                for ci in 0..c {
                    let w: [__m512; V] = std::array::from_fn(|v| {
                        _mm512_loadu_ps(weights.add(ci * OUTPUT_LANES + v * LANES))
                    });
                    for (acc, column) in acc.iter_mut().zip(&columns) {
                        let x = _mm512_set1_ps(*column.add(ci));
                        for (acc, w) in acc.iter_mut().zip(&w) {
                            *acc = _mm512_fmadd_ps(x, *w, *acc);
                        }
                    }
                }
            }
        }
        let plane = plane as i32; // `convolve_pixels` asserted that 16 planes fit an i32
        let lanes = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(plane),
        );
        for v in 0..V {
            let len = (m - o - v * LANES).min(LANES);
            let mask: __mmask16 = if len >= LANES { !0 } else { (1 << len) - 1 };
            // SAFETY: channels `o + 16 v + k < m` of every pixel of the tile, inside `out`.
            unsafe {
                let shift = match bias {
                    Some(bias) => _mm512_maskz_loadu_ps(mask, bias.add(o + v * LANES)),
                    None => _mm512_setzero_ps(),
                };
                for (pixel, acc) in tile.iter().zip(&acc) {
                    let first = out.add(pixel.output + (o + v * LANES) * plane as usize);
                    let value = _mm512_add_ps(acc[v], shift);
                    _mm512_mask_i32scatter_ps::<4>(first, mask, lanes, value);
                }
            }
        }
    }

    /// Every tile of [`super::correlate`]: per run of about [`PIXELS`] pixels, six input
    /// channels at a time (their rows stay in the L1 cache across the kernel offsets) by up to
    /// 64 output channels, the tile added into `grads`.
    ///
    /// # Safety
    ///
    /// AVX-512F, and the bounds `super::correlate` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn correlate(
        images: &Shifted<'_>,
        rows: &[Row],
        m: usize,
        output_grad: *const f32,
        grads: *mut f32,
    ) {
        let per_chunk = rows
            .first()
            .map_or(1, |row| PIXELS.div_ceil(row.len.max(1)));
        for chunk in rows.chunks(per_chunk) {
            for ci in (0..images.channels).step_by(VECTORS) {
                let width = (images.channels - ci).min(VECTORS);
                for tap in 0..images.shifts.len() {
                    for o in (0..m).step_by(OUTPUT_LANES) {
                        let at = Place { tap, ci, o, m };
                        let vectors = (m - o).min(OUTPUT_LANES).div_ceil(LANES);
                        // SAFETY: as for this function; `ci + width ≤ c`, `o < m`.
                        unsafe {
                            correlate_tile(width, vectors, images, chunk, output_grad, grads, at)
                        };
                    }
                }
            }
        }
    }

    /// Pixels summed per visit of a weight-gradient tile: the output gradient of about this many
    /// pixels (for all `m` channels) stays in cache while every tile reads it.
    const PIXELS: usize = 64;

    /// The gradient tile `(tap, ci .. ci + C, o .. o + 16 V)`.
    #[derive(Clone, Copy)]
    struct Place {
        tap: usize,
        ci: usize,
        o: usize,
        m: usize,
    }

    /// [`correlate_tile_of`] for `width` input channels and `vectors` vectors of output channels.
    ///
    /// # Safety
    ///
    /// As [`correlate_tile_of`].
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn correlate_tile(
        width: usize,
        vectors: usize,
        images: &Shifted<'_>,
        rows: &[Row],
        output_grad: *const f32,
        grads: *mut f32,
        at: Place,
    ) {
        // SAFETY: as for this function.
        unsafe {
            by_tile_size!(correlate_tile_of(width, vectors)(
                images,
                rows,
                output_grad,
                grads,
                at
            ))
        }
    }

    /// `grads[tap, ci + j, o .. o + 16 V] += Σ_rows Σ_k X[ci + j, image + k + s_tap] · dY[pixel +
    /// k, o .. o + 16 V]`, the last vector masked to the channels below `m`.
    ///
    /// # Safety
    ///
    /// As [`correlate`], with `ci + C ≤ c` and `o + 16 (V − 1) < m`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn correlate_tile_of<const C: usize, const V: usize>(
        images: &Shifted<'_>,
        rows: &[Row],
        output_grad: *const f32,
        grads: *mut f32,
        Place { tap, ci, o, m }: Place,
    ) {
        let lanes = |v: usize| (m - o - v * LANES).min(LANES);
        let masks: [__mmask16; V] = std::array::from_fn(|v| {
            let len = lanes(v);
            if len >= LANES { !0 } else { (1 << len) - 1 }
        });
        // SAFETY (this block): the tile's gradients lie at channels below `c` and `m`; every
        // read is inside the bounds `super::correlate` asserted.
        unsafe {
            let tile = grads.add((tap * images.channels + ci) * m + o);
            let mut acc = [[_mm512_setzero_ps(); V]; C];
            for (j, acc) in acc.iter_mut().enumerate() {
                for (v, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_maskz_loadu_ps(masks[v], tile.add(j * m + v * LANES));
                }
            }
            let base = images
                .data
                .as_ptr()
                .add(images.shifts[tap] + ci * images.row_stride);
            for row in rows {
                let x = base.add(row.image);
                let dy = output_grad.add(row.pixel * m + o);
                for k in 0..row.len {
                    let d: [__m512; V] = std::array::from_fn(|v| {
                        _mm512_maskz_loadu_ps(masks[v], dy.add(k * m + v * LANES))
                    });
                    for (j, acc) in acc.iter_mut().enumerate() {
                        let value = _mm512_set1_ps(*x.add(j * images.row_stride + k));
                        for (acc, d) in acc.iter_mut().zip(&d) {
                            *acc = _mm512_fmadd_ps(value, *d, *acc);
                        }
                    }
                }
            }
            for (j, acc) in acc.iter().enumerate() {
                for (v, acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(tile.add(j * m + v * LANES), masks[v], *acc);
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

    /// The sums over channels-last pixels against their definition: output channels in two
    /// tiles, the second a partial vector; tiles of six pixels and fewer; pixels left out
    /// (their outputs must stay untouched).
    #[test]
    fn the_sums_over_channels_last_pixels_are_their_definitions() {
        for (m, c, count, output, width) in [(70, 13, 2, [3, 5], 7), (16, 1, 1, [1, 1], 3)] {
            let per_image = (output[0] + 2) * width;
            let shifts = [0usize, 1, width + 1, 2 * width + 2];
            let plane = output[0] * output[1];
            let images: Vec<f32> = (0..count * per_image * c)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let weights: Vec<f32> = (0..shifts.len() * c * m)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 30.0)
                .collect();
            let bias: Vec<f32> = (0..m).map(|o| o as f32 / 4.0).collect();
            let chosen: Vec<Pixel> = pixels(count, m, output, per_image, width)
                .into_iter()
                .step_by(2)
                .collect();
            let view = ChannelsLast {
                data: &images,
                channels: c,
                shifts: &shifts,
            };
            let packed = Packed::new(&weights, shifts.len(), c, m);
            let mut out = vec![f32::NAN; count * m * plane];
            if !convolve_pixels(&mut out, plane, &packed, Some(&bias), &view, &chosen) {
                return; // no AVX-512 here: the GEMM path is tested by the convolution tests
            }
            let mut written = vec![false; out.len()];
            for pixel in &chosen {
                for o in 0..m {
                    let at = pixel.output + o * plane;
                    written[at] = true;
                    let terms: Vec<f64> = (0..shifts.len())
                        .flat_map(|t| (0..c).map(move |ci| (t, ci)))
                        .map(|(t, ci)| {
                            f64::from(weights[(t * c + ci) * m + o])
                                * f64::from(images[(pixel.image + shifts[t]) * c + ci])
                        })
                        .collect();
                    let expected = f64::from(bias[o]) + terms.iter().sum::<f64>();
                    let magnitude = terms.iter().map(|t| t.abs()).sum();
                    assert!(
                        close(out[at], expected, magnitude),
                        "m {m} c {c}: pixel {pixel:?} channel {o}: {} against {expected}",
                        out[at]
                    );
                }
            }
            for (value, written) in out.iter().zip(&written) {
                assert_eq!(value.is_nan(), !written, "an output of a pixel left out");
            }
        }
    }

    /// The segments of two images cover every output once, in rows of at most 16.
    #[test]
    fn segments_cover_each_output_once() {
        let (m, output, width) = (4, [3, 20], 22);
        let per_image = 5 * width;
        let segments = segments(2, m, output, per_image, width);
        let mut covered = vec![0; 2 * m * 3 * 20];
        for s in &segments {
            for k in 0..s.len {
                covered[s.output + k] += 1;
                let (n, y, x) = (s.output / (m * 60), (s.output % 60) / 20, s.output % 20 + k);
                assert_eq!(s.image + k, n * per_image + y * width + x);
            }
        }
        // Channel 0 of both images once, the other channels through `plane` offsets.
        for (i, &count) in covered.iter().enumerate() {
            assert_eq!(count, usize::from((i / 60) % m == 0), "output {i}");
        }
        assert_eq!(segments.len(), 2 * 3 * 2);
    }

    /// The sum and its weight gradient against their definitions, on tiles of six segments and
    /// fewer, partial segments, input channels that are not a multiple of the gradient's tile,
    /// output channels in more than one gradient tile and a partial vector of them, and
    /// outputs left out of every segment (which must stay untouched).
    #[test]
    fn the_sums_of_shifted_products_are_their_definitions() {
        for (m, c, count, output, width) in [
            (4, 3, 1, [1, 7], 9),
            (8, 16, 1, [3, 37], 39),
            (12, 5, 2, [4, 16], 18),
            (4, 1, 1, [1, 1], 3),
            (8, 7, 3, [7, 7], 9),
            (4, 32, 2, [28, 28], 30),
            (68, 13, 2, [3, 5], 7),
            (40, 17, 1, [2, 5], 7),
            (32, 25, 1, [3, 4], 6),
        ] {
            let per_image = (output[0] + 2) * width;
            let shifts = [0usize, 1, width + 1, 2 * width + 2];
            let row_stride = count * per_image + 2 * width + 2;
            let plane = output[0] * output[1];
            let segments = segments(count, m, output, per_image, width);
            let images: Vec<f32> = (0..c * row_stride)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let weights: Vec<f32> = (0..shifts.len() * m * c)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 30.0)
                .collect();
            let bias: Vec<f32> = (0..m).map(|o| o as f32 / 4.0).collect();
            let shifted = Shifted {
                data: &images,
                channels: c,
                row_stride,
                shifts: &shifts,
            };
            // Every other segment only, so that the outputs of the rest must stay NaN.
            let chosen: Vec<Segment> = segments.iter().copied().step_by(2).collect();
            let outputs = Outputs {
                m,
                plane,
                segments: &chosen,
            };
            let mut out = vec![f32::NAN; count * m * plane];
            if !convolve(&mut out, &weights, Some(&bias), &shifted, &outputs) {
                return; // no AVX-512 here: the GEMM path is tested by the convolution tests
            }
            let (images, weights) = (&images, &weights);
            let mut written = vec![false; out.len()];
            for s in &chosen {
                for o in 0..m {
                    for k in 0..s.len {
                        let at = o * plane + s.output + k;
                        written[at] = true;
                        let terms: Vec<f64> = (0..shifts.len())
                            .flat_map(|t| (0..c).map(move |ci| (t, ci)))
                            .map(|(t, ci)| {
                                f64::from(weights[(t * m + o) * c + ci])
                                    * f64::from(images[ci * row_stride + s.image + k + shifts[t]])
                            })
                            .collect();
                        let expected = f64::from(bias[o]) + terms.iter().sum::<f64>();
                        let magnitude = terms.iter().map(|t| t.abs()).sum();
                        assert!(
                            close(out[at], expected, magnitude),
                            "m {m} c {c} {output:?}: output {at} {} against {expected}",
                            out[at]
                        );
                    }
                }
            }
            for (value, written) in out.iter().zip(&written) {
                assert_eq!(value.is_nan(), !written, "an output outside the segments");
            }

            // The weight gradient over every other output row, `dY` channels-last.
            let chosen: Vec<Row> = rows(count, output, per_image, width)
                .into_iter()
                .step_by(2)
                .collect();
            let output_grad: Vec<f32> = (0..count * plane * m)
                .map(|i| ((i * 29 % 97) as f32 - 48.0) / 40.0)
                .collect();
            let mut grads = vec![0.5f32; weights.len()];
            assert!(correlate(&mut grads, &output_grad, m, &shifted, &chosen));
            for (index, &got) in grads.iter().enumerate() {
                let (t, ci, o) = (index / (c * m), (index / m) % c, index % m);
                let terms: Vec<f64> = chosen
                    .iter()
                    .flat_map(|row| (0..row.len).map(move |k| (row, k)))
                    .map(|(row, k)| {
                        f64::from(output_grad[(row.pixel + k) * m + o])
                            * f64::from(images[ci * row_stride + row.image + k + shifts[t]])
                    })
                    .collect();
                let expected = 0.5 + terms.iter().sum::<f64>();
                assert!(
                    close(got, expected, terms.iter().map(|t| t.abs()).sum()),
                    "m {m} c {c} {output:?}: gradient ({t}, {ci}, {o}) {got} against {expected}"
                );
            }
        }
    }
}
