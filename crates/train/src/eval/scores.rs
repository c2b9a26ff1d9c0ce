//! Scores of a set of generated images: feature statistics, mode coverage, the within-class
//! spread of a conditional model, and the images as bytes for an IDX export.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use genmodels::Drawn;
use genmodels::fid::{FeatureMoments, FeatureStatistics};
use genmodels_data::idx::{self, Encoding};
use genmodels_data::{CLASS_NAMES, IMAGE_PIXELS, NUM_CLASSES, PixelRange};
use serde::Serialize;

use super::features::FeatureNetwork;

/// A class with a smaller share of the samples than this is a missed mode.
pub const MODE_THRESHOLD: f64 = 0.02;
/// Images per forward pass, real or generated.
pub const BATCH: usize = 500;

/// The classifier's view of a set of samples: how they spread over the classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModeCoverage {
    /// Samples per predicted class, indexed by label.
    pub counts: Vec<usize>,
    /// The same as fractions of all samples.
    pub fractions: Vec<f64>,
    /// `KL(p || U) = sum_k p_k ln(K p_k)` in nats, with `0 ln 0 = 0`: 0 when every class is
    /// equally frequent, `ln K` when all samples fall in one class.
    pub kl_to_uniform: f64,
    /// Names of the classes with under [`MODE_THRESHOLD`] of the samples.
    pub modes_missed: Vec<String>,
}

impl ModeCoverage {
    /// The coverage of a class histogram.
    pub fn from_counts(counts: &[usize]) -> Self {
        let total = counts.iter().sum::<usize>().max(1) as f64;
        let classes = counts.len() as f64;
        let fractions: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
        let kl_to_uniform = fractions
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| p * (classes * p).ln())
            .sum();
        let modes_missed = fractions
            .iter()
            .enumerate()
            .filter(|&(_, &p)| p < MODE_THRESHOLD)
            .map(|(k, _)| class_name(k))
            .collect();
        Self {
            counts: counts.to_vec(),
            fractions,
            kl_to_uniform,
            modes_missed,
        }
    }
}

pub fn class_name(class: usize) -> String {
    CLASS_NAMES
        .get(class)
        .map_or_else(|| format!("class {class}"), |name| name.to_string())
}

/// How much the images of each class differ among themselves: per class, the standard deviation
/// of each pixel (in [0, 1]) across that class's images, averaged over the pixels. A generator
/// that ignores its noise and draws one image per class scores 0, however good its classes look
/// to FID and the classifier.
#[derive(Debug, Clone)]
pub struct WithinClassSpread {
    counts: [usize; NUM_CLASSES],
    sums: Vec<f64>,
    squares: Vec<f64>,
}

impl Default for WithinClassSpread {
    fn default() -> Self {
        Self {
            counts: [0; NUM_CLASSES],
            sums: vec![0.0; NUM_CLASSES * IMAGE_PIXELS],
            squares: vec![0.0; NUM_CLASSES * IMAGE_PIXELS],
        }
    }
}

impl WithinClassSpread {
    /// The spread of labelled 8-bit images (`labels[i]` is the class of the i-th image).
    pub fn of(pixels: &[u8], labels: impl IntoIterator<Item = usize>) -> Self {
        let mut spread = Self::default();
        for (image, class) in pixels.chunks_exact(IMAGE_PIXELS).zip(labels) {
            spread.add(class, image);
        }
        spread
    }

    /// Adds one 8-bit image of `class`.
    pub fn add(&mut self, class: usize, image: &[u8]) {
        self.counts[class] += 1;
        let range = class * IMAGE_PIXELS..(class + 1) * IMAGE_PIXELS;
        for ((sum, square), &byte) in self.sums[range.clone()]
            .iter_mut()
            .zip(&mut self.squares[range])
            .zip(image)
        {
            let x = f64::from(byte) / 255.0;
            *sum += x;
            *square += x * x;
        }
    }

    /// Per class, the mean over pixels of the (population) standard deviation across its
    /// images; `None` for a class with fewer than two images.
    pub fn per_class(&self) -> Vec<Option<f64>> {
        (0..NUM_CLASSES)
            .map(|class| {
                let n = self.counts[class] as f64;
                (self.counts[class] >= 2).then(|| {
                    let range = class * IMAGE_PIXELS..(class + 1) * IMAGE_PIXELS;
                    let total: f64 = self.sums[range.clone()]
                        .iter()
                        .zip(&self.squares[range])
                        .map(|(&sum, &square)| {
                            let mean = sum / n;
                            (square / n - mean * mean).max(0.0).sqrt()
                        })
                        .sum();
                    total / IMAGE_PIXELS as f64
                })
            })
            .collect()
    }
}

/// The within-class spread of conditional samples (by requested class) beside that of the
/// test images (by label).
#[derive(Debug, Clone, Serialize)]
pub struct SpreadReport {
    /// Per class, the samples' spread.
    pub samples: Vec<Option<f64>>,
    /// Per class, the test images' spread.
    pub test: Vec<Option<f64>>,
    /// The mean over classes of the samples' spread divided by the test images' spread: 1 when
    /// the samples vary as much as the data, 0 for one image per class.
    pub mean_ratio: f64,
}

impl SpreadReport {
    pub fn new(samples: &WithinClassSpread, test: &WithinClassSpread) -> Self {
        let (samples, test) = (samples.per_class(), test.per_class());
        let ratios: Vec<f64> = samples
            .iter()
            .zip(&test)
            .filter_map(|(s, t)| Some(s.as_ref()? / t.as_ref()?))
            .collect();
        let mean_ratio = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
        Self {
            samples,
            test,
            mean_ratio,
        }
    }
}

/// Generated images as they are scored: 8-bit pixels, their feature statistics and classes.
pub struct SampleScores {
    moments: FeatureMoments,
    counts: [usize; NUM_CLASSES],
    requested: (usize, usize),
    spread: WithinClassSpread,
    pixels: Option<Vec<u8>>,
}

impl SampleScores {
    /// Nothing scored yet; `keep_pixels` keeps every image's bytes (for `--export`).
    pub fn new(network: &FeatureNetwork, keep_pixels: bool) -> Self {
        Self {
            moments: FeatureMoments::new(network.feature_dim()),
            counts: [0; NUM_CLASSES],
            requested: (0, 0),
            spread: WithinClassSpread::default(),
            pixels: keep_pixels.then(Vec::new),
        }
    }

    /// Scores a batch of generated images `[B, 1, 28, 28]` in `range`; `requested` names the
    /// class each image was asked to be, for a class-conditional model.
    pub fn add(
        &mut self,
        network: &FeatureNetwork,
        images: Tensor<4>,
        range: PixelRange,
        requested: Option<&[usize]>,
    ) -> Result<()> {
        self.add_bytes(network, &to_bytes(images, range)?, requested)
    }

    /// Scores a batch of images given as 8-bit pixels, 784 an image.
    pub fn add_bytes(
        &mut self,
        network: &FeatureNetwork,
        pixels: &[u8],
        requested: Option<&[usize]>,
    ) -> Result<()> {
        let (features, classes) = network.score(pixels)?;
        self.moments.update(&features)?;
        for (i, &class) in classes.iter().enumerate() {
            self.counts[class.min(NUM_CLASSES - 1)] += 1;
            if let Some(&wanted) = requested.and_then(|r| r.get(i)) {
                self.requested.0 += usize::from(wanted == class);
                self.requested.1 += 1;
                self.spread
                    .add(wanted, &pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]);
            }
        }
        if let Some(kept) = &mut self.pixels {
            kept.extend_from_slice(pixels);
        }
        Ok(())
    }

    /// Images scored so far.
    pub fn count(&self) -> usize {
        self.moments.count()
    }

    /// The samples' feature statistics.
    pub fn statistics(&self) -> Result<FeatureStatistics> {
        Ok(self.moments.statistics()?)
    }

    /// The class histogram of the samples.
    pub fn coverage(&self) -> ModeCoverage {
        ModeCoverage::from_counts(&self.counts)
    }

    /// The fraction of samples classified as the class they were asked for (conditional
    /// models only).
    pub fn conditional_accuracy(&self) -> Option<f64> {
        let (correct, total) = self.requested;
        (total > 0).then(|| correct as f64 / total as f64)
    }

    /// The within-class spread of the samples by requested class (conditional models only).
    pub fn spread(&self) -> Option<&WithinClassSpread> {
        (self.requested.1 > 0).then_some(&self.spread)
    }

    /// The kept bytes of every image, in order.
    pub fn pixels(&self) -> Option<&[u8]> {
        self.pixels.as_deref()
    }
}

/// The seed of batch `index` of a sampling run: far apart, so that samplers that derive one
/// stream per step from it (DDPM) never share noise between batches.
pub fn batch_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_add((index as u64) << 20)
}

/// Draws `count` images in batches of [`BATCH`] with `draw(batch size, batch seed)` and scores
/// them.
pub fn draw_and_score(
    network: &FeatureNetwork,
    count: usize,
    seed: u64,
    range: PixelRange,
    keep_pixels: bool,
    mut draw: impl FnMut(usize, u64) -> Result<Drawn>,
) -> Result<SampleScores> {
    let mut scores = SampleScores::new(network, keep_pixels);
    let batches = count.div_ceil(BATCH);
    for index in 0..batches {
        let size = BATCH.min(count - index * BATCH);
        let drawn = draw(size, batch_seed(seed, index))?;
        scores.add(network, drawn.images, range, drawn.classes.as_deref())?;
    }
    Ok(scores)
}

/// Images `[N, 1, 28, 28]` in `range` as 8-bit pixels, rounded and clamped.
pub fn to_bytes(images: Tensor<4>, range: PixelRange) -> Result<Vec<u8>> {
    let values = images.into_data().convert::<f32>().try_to_vec::<f32>()?;
    Ok(values.into_iter().map(|v| range.unscale(v)).collect())
}

/// Writes 8-bit images as an IDX images file, gzip-compressed when the name ends in `.gz`.
pub fn export_idx(path: &Path, pixels: &[u8]) -> Result<()> {
    idx::write_images(path, pixels, Encoding::from_file_name(path))
        .with_context(|| format!("--export {}", path.display()))
}

/// Refuses a sample count the statistics cannot use.
pub fn check_sample_count(samples: usize) -> Result<()> {
    if samples < 2 {
        bail!("--samples must be at least 2 (a covariance needs two samples), got {samples}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use genmodels_data::IMAGE_SIDE;

    #[test]
    fn within_class_spread_by_hand() {
        // Class 0: one black and one white image, so every pixel's std is 0.5. Class 1: the
        // same image three times, std 0. Class 2: pixels 0 and 51 (0.2) in half the pixels,
        // so std 0.1 there and 0 elsewhere: mean 0.05. Class 3: one image only.
        let black = vec![0u8; IMAGE_PIXELS];
        let white = vec![255u8; IMAGE_PIXELS];
        let half: Vec<u8> = (0..IMAGE_PIXELS)
            .map(|i| if i % 2 == 0 { 51 } else { 0 })
            .collect();
        let images = [
            &black, &white, &white, &white, &white, &black, &half, &black,
        ];
        let labels = [0, 0, 1, 1, 1, 2, 2, 3];
        let pixels: Vec<u8> = images
            .iter()
            .flat_map(|image| image.iter().copied())
            .collect();
        let spread = WithinClassSpread::of(&pixels, labels).per_class();
        let expected = [Some(0.5), Some(0.0), Some(0.05), None];
        for (class, want) in expected.iter().enumerate() {
            match (spread[class], want) {
                (Some(got), Some(want)) => {
                    assert!((got - want).abs() < 1e-12, "class {class}: {got}")
                }
                (got, want) => assert_eq!(got, *want, "class {class}"),
            }
        }
        assert!(spread[4..].iter().all(Option::is_none));

        // Samples half as spread as the data in class 0, as spread in class 2.
        let data = WithinClassSpread::of(&pixels, labels);
        let dim: Vec<u8> = vec![128; IMAGE_PIXELS];
        let samples_pixels: Vec<u8> = [&black, &dim, &black, &half]
            .iter()
            .flat_map(|image| image.iter().copied())
            .collect();
        let samples = WithinClassSpread::of(&samples_pixels, [0, 0, 2, 2]);
        let report = SpreadReport::new(&samples, &data);
        let class0 = 64.0 / 255.0 / 0.5;
        assert!(
            (report.mean_ratio - (class0 + 1.0) / 2.0).abs() < 1e-12,
            "{report:?}"
        );
    }

    #[test]
    fn mode_coverage_by_hand() {
        // Uniform: KL 0, nothing missed.
        let uniform = ModeCoverage::from_counts(&[10; 10]);
        assert!(uniform.kl_to_uniform.abs() < 1e-12);
        assert!(uniform.modes_missed.is_empty());
        // All in one class: KL = ln 10, nine classes missed.
        let collapsed = ModeCoverage::from_counts(&[0, 0, 0, 0, 0, 0, 0, 0, 50, 0]);
        assert!((collapsed.kl_to_uniform - 10f64.ln()).abs() < 1e-12);
        assert_eq!(collapsed.modes_missed.len(), 9);
        assert!(!collapsed.modes_missed.contains(&"Bag".to_string()));
        // 1 of 100 is under 2%; 2 of 100 is not. p = (0.01, 0.02, 0.97/8 x 8).
        let mut counts = vec![1usize, 2];
        let rest = [12usize, 12, 12, 12, 12, 12, 12, 13];
        counts.extend(rest);
        let coverage = ModeCoverage::from_counts(&counts);
        assert_eq!(coverage.modes_missed, vec!["T-shirt/top".to_string()]);
        let expected: f64 = counts
            .iter()
            .map(|&c| c as f64 / 100.0)
            .map(|p| p * (10.0 * p).ln())
            .sum();
        assert!((coverage.kl_to_uniform - expected).abs() < 1e-12);
        assert!((coverage.fractions[1] - 0.02).abs() < 1e-15);
    }

    #[test]
    fn exported_samples_read_back_through_the_data_crate() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        // Three images with values across [-1, 1], some outside it.
        let values: Vec<f32> = (0..3 * IMAGE_PIXELS)
            .map(|i| (i as f32 / IMAGE_PIXELS as f32) - 1.2)
            .collect();
        let images = Tensor::<4>::from_data(
            TensorData::new(values.clone(), [3, 1, IMAGE_SIDE, IMAGE_SIDE]),
            &device,
        );
        let pixels = to_bytes(images, PixelRange::MinusOneToOne).unwrap();
        // By hand: (v + 1) * 127.5, rounded, clamped to 0..=255.
        let expected: Vec<u8> = values
            .iter()
            .map(|&v| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
            .collect();
        assert_eq!(pixels, expected);
        assert_eq!((pixels[0], pixels[pixels.len() - 1]), (0, 255));
        for name in ["samples-idx3-ubyte", "samples-idx3-ubyte.gz"] {
            let path = dir.path().join(name);
            export_idx(&path, &pixels).unwrap();
            assert_eq!(idx::read_images(&path).unwrap(), expected, "{name}");
        }
        let gz = std::fs::read(dir.path().join("samples-idx3-ubyte.gz")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip for a .gz name");
    }

    #[test]
    fn batch_seeds_are_distinct_and_reproducible() {
        let seeds: Vec<u64> = (0..20).map(|i| batch_seed(42, i)).collect();
        assert_eq!(seeds[0], 42);
        let mut unique = seeds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 20);
        // DDPM derives seed + t for t in 0..=1000: no overlap between batches.
        assert!(seeds.windows(2).all(|w| w[1] - w[0] > 1001));
    }
}
