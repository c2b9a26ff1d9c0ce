//! The stride-1 convolutions as register-blocked AVX-512 loops that read the images where they
//! lie, instead of `kh · kw` GEMMs over a zero-padded copy of them.
//!
//! For one image, output pixel `p = (oh, ow)` and output channel `o`, a stride-1 convolution is
//!
//! ```text
//! y[o, p] = Σ_(i,j) Σ_ci W_ij[o, ci] · x[ci, oh + i − top, ow + j − left]
//! ```
//!
//! with `x` zero outside the image. Sixteen consecutive outputs of a row read sixteen
//! consecutive inputs at every offset `(i, j)`; so do sixteen consecutive outputs of the whole
//! plane where the output is as wide as the image (a "same" convolution), since then a step
//! past the end of an output row is a step past the end of an input row. A vector of outputs
//! therefore reads one unaligned vector of the image per offset and channel, its lanes that fall
//! in the padding masked to zero: no padded copy of the images is ever written, and at 28x28 no
//! lane of a vector is idle. A tile of outputs stays in vector registers while every kernel
//! offset and every input channel is added into it, and is then written once, bias included,
//! straight into `[n, m, OH, OW]`. Three loops:
//!
//! - [`convolve`], over runs of 16 outputs: 4 output channels by six such vectors; per channel
//!   and offset, 6 masked loads of the image, 4 broadcast weights and 24 fused multiply-adds.
//! - [`convolve_pixels`], over channels-last pixels of padded images (`X [columns, c]`): 6 pixels
//!   by 64 output channels, 16 channels to a vector, so that no lane is idle at any width; each
//!   vector is scattered to its 16 output planes at the end.
//! - [`correlate`], the weight gradient, the first sum read the other way: 6 input channels by
//!   64 output channels, summed along the pixels of `dY` laid out channels-last (so that no sum
//!   crosses lanes) and, at each offset, along the pixels whose inputs lie inside the image.
//!
//! This is the direct convolution of oneDNN's JIT kernels; neither faer nor `gemm` offers a sum
//! of shifted products, hence it is written here.

use super::conv::ConvGeometry;
use super::filled_in_parallel;

/// Output channels per register tile.
const ROWS: usize = 4;

/// 16-float vectors of outputs per register tile ([`convolve`]), or input channels per tile
/// ([`correlate`]).
const VECTORS: usize = 6;

/// Floats per vector.
pub(super) const LANES: usize = 16;

/// The images the sums read, `[images, c, h, w]` as the batch lies.
pub(super) struct Images<'a> {
    pub data: &'a [f32],
    pub channels: usize,
    /// Floats of one channel of one image, `h · w`: the distance between two channels.
    pub plane: usize,
}

/// Where a vector of 16 lanes reads at one kernel offset: the index in [`Images::data`] of its
/// lane 0 at channel 0, lane `k` reading `at + k`, and the lanes that read inside the image (the
/// others read the zero padding, and are not read at all). At a border `at` may lie before the
/// images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Read {
    pub at: isize,
    pub lanes: u16,
}

/// The index in the images of input `(row, col)` of image `n`, where it lies inside.
fn inside(g: &ConvGeometry, n: usize, row: isize, col: isize) -> Option<isize> {
    let [h, w] = g.image.map(|side| side as isize);
    ((0..h).contains(&row) && (0..w).contains(&col))
        .then(|| (n * g.channels) as isize * h * w + row * w + col)
}

/// Where the input that output `(y, x)` reads at kernel offset `(i, j)` lies, inside the image or
/// not.
fn input_of(g: &ConvGeometry, [y, x]: [usize; 2], [i, j]: [usize; 2]) -> [isize; 2] {
    [
        (y + i) as isize - g.padding[0] as isize,
        (x + j) as isize - g.padding[1] as isize,
    ]
}

/// The kernel offsets `(i, j)`, row-major.
fn offsets(g: &ConvGeometry) -> impl Iterator<Item = [usize; 2]> + '_ {
    (0..g.kernel[0]).flat_map(move |i| (0..g.kernel[1]).map(move |j| [i, j]))
}

/// Up to 16 consecutive outputs of one image's output plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Segment {
    /// Offset of its first output in the output `[n, m, OH, OW]`, at output channel 0.
    pub output: usize,
    /// Outputs, 1 to 16.
    pub len: usize,
}

/// The segments of the first images of a batch and where each reads at each kernel offset, for
/// [`convolve`].
pub(super) struct Segments {
    segments: Vec<Segment>,
    /// `[segment, offset]`.
    reads: Vec<Read>,
    taps: usize,
    per_image: usize,
    m: usize,
    plane: usize,
}

impl Segments {
    /// The segments of `count` images of a stride-1 convolution: runs of 16 along the whole
    /// output plane where the output is as wide as the image, along each output row elsewhere.
    ///
    /// # Panics
    ///
    /// When the stride is not 1.
    pub fn new(g: &ConvGeometry, count: usize) -> Self {
        assert_eq!(g.stride, [1, 1], "the direct sums are for stride 1");
        let ([oh, ow], m) = (g.output, g.out_channels);
        let plane = oh * ow;
        let runs: Vec<(usize, usize)> = if ow == g.image[1] {
            (0..plane)
                .step_by(LANES)
                .map(|p| (p, (plane - p).min(LANES)))
                .collect()
        } else {
            (0..oh)
                .flat_map(|y| (0..ow).step_by(LANES).map(move |x| (y * ow + x, x)))
                .map(|(p, x)| (p, (ow - x).min(LANES)))
                .collect()
        };
        let taps = g.kernel[0] * g.kernel[1];
        // The reads of the first image; another image's lie one image further each.
        let mut first = Vec::with_capacity(runs.len() * taps);
        for &(start, len) in &runs {
            for offset in offsets(g) {
                let [row, col] = input_of(g, [start / ow, start % ow], offset);
                let at = row * g.image[1] as isize + col;
                let mut lanes = 0u16;
                for k in 0..len {
                    let p = start + k;
                    let [row, col] = input_of(g, [p / ow, p % ow], offset);
                    if let Some(index) = inside(g, 0, row, col) {
                        debug_assert_eq!(index, at + k as isize, "lane {k} reads in order");
                        lanes |= 1 << k;
                    }
                }
                first.push(Read { at, lanes });
            }
        }
        let image_len = (g.channels * g.image[0] * g.image[1]) as isize;
        let segments = (0..count)
            .flat_map(|n| {
                runs.iter().map(move |&(start, len)| Segment {
                    output: n * m * plane + start,
                    len,
                })
            })
            .collect();
        let reads = (0..count as isize)
            .flat_map(|n| {
                first.iter().map(move |read| Read {
                    at: read.at + n * image_len,
                    lanes: read.lanes,
                })
            })
            .collect();
        Self {
            segments,
            reads,
            taps,
            per_image: runs.len(),
            m,
            plane,
        }
    }

    /// The outputs of the first `count` images (at most those it was made for).
    pub fn outputs(&self, count: usize) -> Outputs<'_> {
        let len = (count * self.per_image).min(self.segments.len());
        Outputs {
            m: self.m,
            plane: self.plane,
            segments: &self.segments[..len],
            reads: &self.reads[..len * self.taps],
        }
    }
}

/// The output side of the sums: `m` channels `plane` floats apart, covered by `segments`, each
/// reading as `reads [segment, offset]` says.
pub(super) struct Outputs<'a> {
    pub m: usize,
    pub plane: usize,
    pub segments: &'a [Segment],
    pub reads: &'a [Read],
}

impl Outputs<'_> {
    fn taps(&self) -> usize {
        self.reads.len() / self.segments.len().max(1)
    }
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

/// `out[o · plane + segment outputs] = bias[o] + Σ_tap Σ_ci W_tap[o, ci] · x[ci, read_tap ..]`
/// for every segment, where `weights [taps, m, c]` holds `W_tap [m, c]` and the lanes a read
/// leaves out add zero. Returns false, leaving `out` untouched, where [`available`] does not
/// hold: the caller then sums GEMMs.
///
/// # Panics
///
/// When `weights` or `bias` have the wrong size, or a segment reads past the images or writes
/// past `out`.
pub(super) fn convolve(
    out: &mut [f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    images: &Images<'_>,
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
        // SAFETY: the CPU has just reported AVX-512F; `check` bounds every lane a segment reads
        // at any offset and every output it writes, and the weights.
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
    #[cfg(test)]
    pub fn new(weights: &[f32], taps: usize, c: usize, m: usize) -> Self {
        assert_eq!(weights.len(), taps * c * m, "weights size");
        Self::gathered(taps, c, m, |tap, ci, o| weights[(tap * c + ci) * m + o])
    }

    /// The weights packed from `weight(tap, ci, o)`, read wherever the layer stores them, on the
    /// rayon threads: a convolution's weights reordered into `[taps, c, m]` and then packed
    /// took two serial passes on the calling thread while the others waited.
    pub fn gathered(
        taps: usize,
        c: usize,
        m: usize,
        weight: impl Fn(usize, usize, usize) -> f32 + Sync,
    ) -> Self {
        /// Rows of `OUTPUT_LANES` floats per task.
        const ROWS_PER_TASK: usize = 256;
        let (blocks, rows) = (m.div_ceil(OUTPUT_LANES), taps * c);
        let piece = ROWS_PER_TASK * OUTPUT_LANES;
        let (data, _) = filled_in_parallel(blocks * rows * OUTPUT_LANES, piece, |task, data| {
            for (k, chunk) in data.chunks_exact_mut(OUTPUT_LANES).enumerate() {
                let index = task * ROWS_PER_TASK + k;
                let (block, row) = (index / rows, index % rows);
                let (tap, ci, o) = (row / c, row % c, block * OUTPUT_LANES);
                let len = (m - o).min(OUTPUT_LANES);
                for (lane, value) in chunk[..len].iter_mut().enumerate() {
                    *value = weight(tap, ci, o + lane);
                }
            }
        });
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

/// One output row of one image, for the weight gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Row {
    /// Its first pixel in the channels-last output gradient `[pixels, m]`.
    pub pixel: usize,
    /// Pixels.
    pub len: usize,
}

/// Where the pixels of a row read at one kernel offset: pixel `k` of `from .. to` reads index
/// `at + k` of the image; the others read the zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowRead {
    pub at: isize,
    pub from: usize,
    pub to: usize,
}

/// The output rows of one image and where they read at each kernel offset, for [`correlate`].
pub(super) struct Rows {
    pub rows: Vec<Row>,
    /// `[row, offset]`.
    pub reads: Vec<RowRead>,
}

impl Rows {
    /// The output rows of one image of a stride-1 convolution.
    ///
    /// # Panics
    ///
    /// When the stride is not 1.
    pub fn new(g: &ConvGeometry) -> Self {
        assert_eq!(g.stride, [1, 1], "the direct sums are for stride 1");
        let [oh, ow] = g.output;
        let rows: Vec<Row> = (0..oh)
            .map(|y| Row {
                pixel: y * ow,
                len: ow,
            })
            .collect();
        let mut reads = Vec::with_capacity(oh * g.kernel[0] * g.kernel[1]);
        for y in 0..oh {
            for offset in offsets(g) {
                let [row, col] = input_of(g, [y, 0], offset);
                let w = g.image[1] as isize;
                let read = if (0..g.image[0] as isize).contains(&row) {
                    // Pixel k reads column col + k: inside for -col ≤ k < w − col.
                    let from = (-col).clamp(0, ow as isize) as usize;
                    RowRead {
                        at: row * w + col,
                        from,
                        to: ((w - col).clamp(0, ow as isize) as usize).max(from),
                    }
                } else {
                    RowRead {
                        at: 0,
                        from: 0,
                        to: 0,
                    }
                };
                reads.push(read);
            }
        }
        Self { rows, reads }
    }
}

/// `grads[tap, ci, o] += Σ_rows Σ_k x[ci, read_tap + k] · dY[pixel + k, o]` over the pixels `k`
/// whose reads lie inside the image: the weight gradient of [`convolve`] for one image, with `dY
/// [pixels, m]` channels-last, so that 16 output channels fill a vector and no sum crosses lanes.
/// Returns false, leaving `grads` untouched, without AVX-512.
///
/// # Panics
///
/// When `grads` is not `[taps, c, m]`, or a row reads past the image or `output_grad`.
pub(super) fn correlate(
    grads: &mut [f32],
    output_grad: &[f32],
    m: usize,
    images: &Images<'_>,
    rows: &Rows,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if !pixels_available() {
            return false;
        }
        let c = images.channels;
        let taps = rows.reads.len() / rows.rows.len().max(1);
        assert_eq!(rows.reads.len(), rows.rows.len() * taps, "reads per row");
        assert_eq!(grads.len(), taps * c * m, "gradient size");
        for (row, reads) in rows.rows.iter().zip(rows.reads.chunks_exact(taps.max(1))) {
            assert!(
                (row.pixel + row.len) * m <= output_grad.len(),
                "row {row:?} reads past the output gradient"
            );
            for read in reads.iter().filter(|read| read.from < read.to) {
                assert!(
                    read.to <= row.len
                        && read.at + read.from as isize >= 0
                        && c > 0
                        && (read.at + read.to as isize) as usize + (c - 1) * images.plane
                            <= images.data.len(),
                    "row {row:?} reads {read:?} past the image"
                );
            }
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

/// Asserts that every lane a segment reads and every output it writes lie in their slices.
#[cfg(target_arch = "x86_64")]
fn check(out_len: usize, weights_len: usize, images: &Images<'_>, outputs: &Outputs<'_>) {
    let c = images.channels;
    let taps = outputs.taps();
    assert_eq!(weights_len, taps * outputs.m * c, "weights size");
    assert_eq!(
        outputs.reads.len(),
        outputs.segments.len() * taps,
        "reads per segment"
    );
    for (s, reads) in outputs
        .segments
        .iter()
        .zip(outputs.reads.chunks_exact(taps.max(1)))
    {
        assert!((1..=LANES).contains(&s.len), "segment length {}", s.len);
        assert!(
            (outputs.m - 1) * outputs.plane + s.output + s.len <= out_len,
            "segment {s:?} lies past the output"
        );
        for read in reads.iter().filter(|read| read.lanes != 0) {
            let first = read.at + read.lanes.trailing_zeros() as isize;
            let last = read.at + (LANES - 1) as isize - read.lanes.leading_zeros() as isize;
            assert!(
                u32::from(read.lanes) >> s.len == 0
                    && first >= 0
                    && c > 0
                    && last as usize + (c - 1) * images.plane < images.data.len(),
                "segment {s:?} reads {read:?} past the images"
            );
        }
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
        ChannelsLast, Images, LANES, OUTPUT_LANES, Outputs, Packed, Pixel, ROWS, Row, RowRead,
        Rows, Segment, VECTORS,
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
        images: &Images<'_>,
        outputs: &Outputs<'_>,
        weights: *const f32,
        bias: Option<*const f32>,
        out: *mut f32,
    ) {
        let taps = outputs.taps();
        let tiles = outputs.segments.chunks(VECTORS);
        for (tile, reads) in tiles.zip(outputs.reads.chunks(VECTORS * taps)) {
            let at = Outputs {
                segments: tile,
                reads,
                ..*outputs
            };
            for o in (0..outputs.m).step_by(ROWS) {
                // SAFETY: as for this function; `o + 4 ≤ m`.
                unsafe {
                    match tile.len() {
                        6 => convolve_tile::<6>(images, &at, weights, bias, out, o),
                        5 => convolve_tile::<5>(images, &at, weights, bias, out, o),
                        4 => convolve_tile::<4>(images, &at, weights, bias, out, o),
                        3 => convolve_tile::<3>(images, &at, weights, bias, out, o),
                        2 => convolve_tile::<2>(images, &at, weights, bias, out, o),
                        _ => convolve_tile::<1>(images, &at, weights, bias, out, o),
                    }
                }
            }
        }
    }

    /// Output channels `o .. o + 4` of the `V` segments of `tile`.
    ///
    /// # Safety
    ///
    /// As [`convolve`], with `tile.segments.len() == V` and `o + 4 ≤ m`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn convolve_tile<const V: usize>(
        images: &Images<'_>,
        tile: &Outputs<'_>,
        weights: *const f32,
        bias: Option<*const f32>,
        out: *mut f32,
        o: usize,
    ) {
        let (c, taps) = (images.channels, tile.taps());
        let segments: &[Segment; V] = tile.segments.try_into().expect("a tile of V segments");
        let mut acc = [[_mm512_setzero_ps(); V]; ROWS];
        for tap in 0..taps {
            // Lane 0 of a read may lie before the images; the lanes loaded never do.
            let mut starts = [images.data.as_ptr(); V];
            let mut masks: [__mmask16; V] = [0; V];
            for v in 0..V {
                let read = tile.reads[v * taps + tap];
                starts[v] = images.data.as_ptr().wrapping_offset(read.at);
                masks[v] = read.lanes;
            }
            // SAFETY (this block): the lanes loaded and the weights stay inside the bounds
            // `check` asserted.
            unsafe {
                let weights = weights.add((tap * tile.m + o) * c);
                for ci in 0..c {
                    let channel = ci * images.plane;
                    let mut w = [_mm512_setzero_ps(); ROWS];
                    for (r, w) in w.iter_mut().enumerate() {
                        *w = _mm512_set1_ps(*weights.add(r * c + ci));
                    }
                    for (v, (start, &mask)) in starts.iter().zip(&masks).enumerate() {
                        let x: __m512 = _mm512_maskz_loadu_ps(mask, start.wrapping_add(channel));
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
                let channel = out.add((o + r) * tile.plane);
                for (value, segment) in acc.iter().zip(segments) {
                    let value = _mm512_add_ps(*value, shift);
                    _mm512_mask_storeu_ps(channel.add(segment.output), mask(segment), value);
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
        images: &Images<'_>,
        rows: &Rows,
        m: usize,
        output_grad: *const f32,
        grads: *mut f32,
    ) {
        let taps = rows.reads.len() / rows.rows.len().max(1);
        let per_chunk = rows
            .rows
            .first()
            .map_or(1, |row| PIXELS.div_ceil(row.len.max(1)));
        let chunks = rows.rows.chunks(per_chunk);
        for (chunk, reads) in chunks.zip(rows.reads.chunks(per_chunk * taps)) {
            for ci in (0..images.channels).step_by(VECTORS) {
                let width = (images.channels - ci).min(VECTORS);
                for tap in 0..taps {
                    for o in (0..m).step_by(OUTPUT_LANES) {
                        let at = Place { tap, ci, o, m };
                        let vectors = (m - o).min(OUTPUT_LANES).div_ceil(LANES);
                        let run = (chunk, reads);
                        // SAFETY: as for this function; `ci + width ≤ c`, `o < m`.
                        unsafe {
                            correlate_tile(width, vectors, images, run, output_grad, grads, at)
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
        images: &Images<'_>,
        rows: (&[Row], &[RowRead]),
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

    /// `grads[tap, ci + j, o .. o + 16 V] += Σ_rows Σ_k x[ci + j, at + k] · dY[pixel + k, o .. o +
    /// 16 V]` over each row's pixels `from .. to` at offset `tap`, the last vector masked to the
    /// channels below `m`; `rows` pairs the rows with their reads `[row, offset]`.
    ///
    /// # Safety
    ///
    /// As [`correlate`], with `ci + C ≤ c` and `o + 16 (V − 1) < m`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn correlate_tile_of<const C: usize, const V: usize>(
        images: &Images<'_>,
        (rows, reads): (&[Row], &[RowRead]),
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
            let taps = reads.len() / rows.len().max(1);
            // Before the first pixel read, `at` may lie before the image.
            let base = images.data.as_ptr().add(ci * images.plane);
            for (row, read) in rows.iter().zip(reads.iter().skip(tap).step_by(taps)) {
                let x = base.wrapping_offset(read.at);
                let dy = output_grad.add(row.pixel * m + o);
                for k in read.from..read.to {
                    let d: [__m512; V] = std::array::from_fn(|v| {
                        _mm512_maskz_loadu_ps(masks[v], dy.add(k * m + v * LANES))
                    });
                    for (j, acc) in acc.iter_mut().enumerate() {
                        let value = _mm512_set1_ps(*x.wrapping_add(j * images.plane + k));
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
pub(super) mod tests {
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

    /// A stride-1 convolution of `count` images with the padding `before` and `after` each axis.
    pub(in crate::flex) fn geometry(
        [m, c, count]: [usize; 3],
        image: [usize; 2],
        kernel: [usize; 2],
        before: [usize; 2],
        after: [usize; 2],
    ) -> ConvGeometry {
        let out = |axis: usize| image[axis] + before[axis] + after[axis] + 1 - kernel[axis];
        ConvGeometry {
            batch: count,
            channels: c,
            out_channels: m,
            image,
            kernel,
            stride: [1, 1],
            padding: before,
            output: [out(0), out(1)],
        }
    }

    /// Same-size outputs (whose runs of 16 cross the ends of rows), narrower ones (runs along
    /// each row), uneven kernels and padding, rows longer than a vector, a single pixel.
    fn geometries() -> Vec<ConvGeometry> {
        let same = |mcn, image| geometry(mcn, image, [3, 3], [1, 1], [1, 1]);
        vec![
            same([4, 3, 1], [1, 7]),
            same([8, 16, 1], [3, 37]),
            same([12, 5, 2], [4, 16]),
            same([4, 1, 1], [1, 1]),
            same([8, 7, 3], [7, 7]),
            same([4, 32, 2], [28, 28]),
            same([68, 13, 2], [3, 5]),
            geometry([40, 17, 1], [4, 6], [3, 3], [0, 0], [0, 0]),
            geometry([32, 25, 1], [3, 4], [5, 3], [2, 1], [0, 2]),
            geometry([8, 3, 2], [2, 40], [3, 3], [1, 0], [1, 0]),
        ]
    }

    /// Input `(row, col)` of channel `ci` of image `n`, zero outside the image.
    fn input(g: &ConvGeometry, images: &[f32], [n, ci]: [usize; 2], [row, col]: [isize; 2]) -> f64 {
        let [h, w] = g.image;
        if row < 0 || col < 0 || row as usize >= h || col as usize >= w {
            return 0.0;
        }
        f64::from(images[((n * g.channels + ci) * h + row as usize) * w + col as usize])
    }

    /// The segments of each geometry cover every output of channel 0 once, and each read's
    /// lanes are exactly those whose inputs lie inside the image, lane `k` at `at + k`.
    #[test]
    fn segments_cover_each_output_once_and_read_their_inputs() {
        for g in geometries() {
            let ([oh, ow], m) = (g.output, g.out_channels);
            let plane = oh * ow;
            let segments = Segments::new(&g, g.batch);
            let taps = g.kernel[0] * g.kernel[1];
            let per_image = if ow == g.image[1] {
                plane.div_ceil(LANES)
            } else {
                oh * ow.div_ceil(LANES)
            };
            assert_eq!(segments.segments.len(), g.batch * per_image, "{g:?}");
            let mut covered = vec![0; g.batch * m * plane];
            for (s, reads) in segments.segments.iter().zip(segments.reads.chunks(taps)) {
                assert!((1..=LANES).contains(&s.len));
                for (tap, read) in reads.iter().enumerate() {
                    for k in 0..LANES {
                        let on = read.lanes & (1 << k) != 0;
                        if k >= s.len {
                            assert!(!on, "{g:?}: lane {k} past segment {s:?}");
                            continue;
                        }
                        let at = s.output + k;
                        let (n, p) = (at / (m * plane), at % (m * plane));
                        let offset = [tap / g.kernel[1], tap % g.kernel[1]];
                        let [row, col] = input_of(&g, [p / ow, p % ow], offset);
                        let index = inside(&g, n, row, col);
                        assert_eq!(on, index.is_some(), "{g:?}: {s:?} lane {k} at {tap}");
                        if let Some(index) = index {
                            assert_eq!(index, read.at + k as isize, "{g:?}: {s:?} lane {k}");
                        }
                    }
                }
                for k in 0..s.len {
                    covered[s.output + k] += 1;
                }
            }
            for (i, &count) in covered.iter().enumerate() {
                assert_eq!(
                    count,
                    usize::from((i / plane) % m == 0),
                    "{g:?}: output {i}"
                );
            }
        }
    }

    /// The sum and its weight gradient against their definitions (with the image zero outside),
    /// on tiles of six segments and fewer, partial segments, input channels that are not a
    /// multiple of the gradient's tile, output channels in more than one gradient tile and a
    /// partial vector of them, and outputs left out (which must stay untouched).
    #[test]
    fn the_sums_of_shifted_products_are_their_definitions() {
        for g in geometries() {
            let (m, c, count) = (g.out_channels, g.channels, g.batch);
            let [oh, ow] = g.output;
            let (taps, plane) = (g.kernel[0] * g.kernel[1], oh * ow);
            let offset = |tap: usize| [tap / g.kernel[1], tap % g.kernel[1]];
            let images: Vec<f32> = (0..count * c * g.image[0] * g.image[1])
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                .collect();
            let weights: Vec<f32> = (0..taps * m * c)
                .map(|i| ((i * 53 % 89) as f32 - 44.0) / 30.0)
                .collect();
            let bias: Vec<f32> = (0..m).map(|o| o as f32 / 4.0).collect();
            let view = Images {
                data: &images,
                channels: c,
                plane: g.image[0] * g.image[1],
            };
            // Every other segment only, so that the outputs of the rest must stay NaN.
            let all = Segments::new(&g, count);
            let chosen: Vec<usize> = (0..all.segments.len()).step_by(2).collect();
            let segments: Vec<Segment> = chosen.iter().map(|&s| all.segments[s]).collect();
            let reads: Vec<Read> = chosen
                .iter()
                .flat_map(|&s| all.reads[s * taps..][..taps].iter().copied())
                .collect();
            let outputs = Outputs {
                m,
                plane,
                segments: &segments,
                reads: &reads,
            };
            let mut out = vec![f32::NAN; count * m * plane];
            if !convolve(&mut out, &weights, Some(&bias), &view, &outputs) {
                return; // no AVX-512 here: the GEMM path is tested by the convolution tests
            }
            let (images, weights) = (&images, &weights);
            let mut written = vec![false; out.len()];
            for s in &segments {
                for k in 0..s.len {
                    let (n, p) = ((s.output + k) / (m * plane), (s.output + k) % (m * plane));
                    for o in 0..m {
                        let at = o * plane + s.output + k;
                        written[at] = true;
                        let terms: Vec<f64> = (0..taps)
                            .flat_map(|t| (0..c).map(move |ci| (t, ci)))
                            .map(|(t, ci)| {
                                let from = input_of(&g, [p / ow, p % ow], offset(t));
                                f64::from(weights[(t * m + o) * c + ci])
                                    * input(&g, images, [n, ci], from)
                            })
                            .collect();
                        let expected = f64::from(bias[o]) + terms.iter().sum::<f64>();
                        let magnitude = terms.iter().map(|t| t.abs()).sum();
                        assert!(
                            close(out[at], expected, magnitude),
                            "{g:?}: output {at} {} against {expected}",
                            out[at]
                        );
                    }
                }
            }
            for (value, written) in out.iter().zip(&written) {
                assert_eq!(
                    value.is_nan(),
                    !written,
                    "{g:?}: an output outside the segments"
                );
            }

            // The weight gradient of the last image over every other output row, `dY`
            // channels-last.
            let n = count - 1;
            let one = Images {
                data: &images[n * c * view.plane..][..c * view.plane],
                ..view
            };
            let all = Rows::new(&g);
            let rows = Rows {
                rows: all.rows.iter().copied().step_by(2).collect(),
                reads: (0..oh)
                    .step_by(2)
                    .flat_map(|y| all.reads[y * taps..][..taps].iter().copied())
                    .collect(),
            };
            let output_grad: Vec<f32> = (0..plane * m)
                .map(|i| ((i * 29 % 97) as f32 - 48.0) / 40.0)
                .collect();
            let mut grads = vec![0.5f32; weights.len()];
            assert!(correlate(&mut grads, &output_grad, m, &one, &rows));
            for (index, &got) in grads.iter().enumerate() {
                let (t, ci, o) = (index / (c * m), (index / m) % c, index % m);
                let terms: Vec<f64> = (0..oh)
                    .step_by(2)
                    .flat_map(|y| (0..ow).map(move |x| [y, x]))
                    .map(|[y, x]| {
                        let from = input_of(&g, [y, x], offset(t));
                        f64::from(output_grad[(y * ow + x) * m + o])
                            * input(&g, images, [n, ci], from)
                    })
                    .collect();
                let expected = 0.5 + terms.iter().sum::<f64>();
                assert!(
                    close(got, expected, terms.iter().map(|t| t.abs()).sum()),
                    "{g:?}: gradient ({t}, {ci}, {o}) {got} against {expected}"
                );
            }
        }
    }
}
