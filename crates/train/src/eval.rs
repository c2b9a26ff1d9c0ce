//! Measuring samples: FID against the test split, the train-vs-test floor, mode coverage, and
//! sample export as an IDX file.
//!
//! Every image, real or generated, goes the same way: 8-bit pixels (generated images are
//! rounded to bytes as [`PixelRange::unscale`] does, exactly what `--export` writes), divided by
//! 255, through the committed Fashion-MNIST classifier ([`crate::classifier::pretrained`]). Its
//! 128-wide penultimate layer gives the features whose statistics [`genmodels::fid`] compares;
//! its most likely class gives the mode coverage.
//!
//! The reference statistics (the test split, and the FID of as many training images against
//! it: the floor of this feature space) are computed once and cached in a JSON file named after
//! the classifier weights' hash and the number of reference images, and checked against a hash
//! of the images they came from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use genmodels::Classifier;
use genmodels::cgan::ConditionalGenerator;
use genmodels::diffusion::{NoiseSchedule, UNet, leading_timesteps};
use genmodels::fid::{FeatureMoments, FeatureStatistics};
use genmodels::{Decoder, Generator, GeneratorConfig};
use genmodels_data::idx::{self, Encoding};
use genmodels_data::{
    CLASS_NAMES, FashionMnist, IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES, PixelRange,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::backend::{BackendChoice, select_device};
use crate::cgan::CganSettings;
use crate::checkpoint::Checkpoint;
use crate::classifier::{pretrained, weights_sha256};
use crate::cli::CommonArgs;
use crate::dcgan::DcganSettings;
use crate::ddpm::{DdpmSettings, SamplingSettings};
use crate::fsutil::write_atomic;
use crate::run::{RunDir, fixed_normal};
use crate::vae::VaeSettings;
use crate::wgan::WganSettings;

/// Samples behind the FID logged during training (`--fid-every`).
pub const TRAINING_FID_SAMPLES: usize = 2000;
/// A class with a smaller share of the samples than this is a missed mode.
pub const MODE_THRESHOLD: f64 = 0.02;
/// Images per forward pass, real or generated.
pub const BATCH: usize = 500;

/// The classifier whose features and predictions score images.
pub struct FeatureNetwork {
    classifier: Classifier,
    device: Device,
}

impl FeatureNetwork {
    /// The committed classifier on `device` (without autodiff).
    pub fn load(device: &Device) -> Result<Self> {
        Ok(Self {
            classifier: pretrained(device)?,
            device: device.clone(),
        })
    }

    /// Width of the feature vectors.
    pub fn feature_dim(&self) -> usize {
        self.classifier.feature_dim()
    }

    /// Features (`len * 128`, image after image) and most likely classes of whole 28x28
    /// images given as bytes.
    pub fn score(&self, pixels: &[u8]) -> Result<(Vec<f32>, Vec<usize>)> {
        let count = pixels.len() / IMAGE_PIXELS;
        let values: Vec<f32> = pixels
            .iter()
            .map(|&p| PixelRange::ZeroToOne.scale(p))
            .collect();
        let images = Tensor::<4>::from_data(
            TensorData::new(values, [count, 1, IMAGE_SIDE, IMAGE_SIDE]),
            &self.device,
        );
        let features = self.classifier.features(images); // [B, 128]
        let classes = self.classifier.classify(features.clone()).argmax(1); // [B, 1]
        let classes = classes
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        Ok((features.into_data().try_to_vec::<f32>()?, classes))
    }

    /// The feature statistics of 8-bit images, in batches.
    pub fn statistics(&self, pixels: &[u8]) -> Result<FeatureStatistics> {
        let mut moments = FeatureMoments::new(self.feature_dim());
        for batch in pixels.chunks(BATCH * IMAGE_PIXELS) {
            moments.update(&self.score(batch)?.0)?;
        }
        Ok(moments.statistics()?)
    }
}

/// What generated images are compared with: the test split's statistics and the floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// SHA-256 of the classifier weights the features come from.
    pub weights_sha256: String,
    /// SHA-256 of the reference images: the first `images` test images, then as many
    /// training images.
    pub data_sha256: String,
    /// Test images in the statistics (and training images in the floor).
    pub images: usize,
    /// Feature statistics of the test images.
    pub test: FeatureStatistics,
    /// FID of the training images against the test images, when computed.
    pub floor: Option<f64>,
}

/// The cache file of the reference statistics for `images` reference images.
pub fn reference_path(cache_dir: &Path, images: usize) -> PathBuf {
    let hash = weights_sha256();
    cache_dir.join(format!("fid_reference_{}_{images}.json", &hash[..12]))
}

/// The reference statistics of the first `images` test images (at most the split), with the
/// floor (as many training images against them) when `with_floor`: read from the cache in
/// `cache_dir` when it holds them for these weights and images, else computed and cached.
pub fn reference(
    network: &FeatureNetwork,
    data: &FashionMnist,
    images: usize,
    with_floor: bool,
    cache_dir: &Path,
) -> Result<Reference> {
    let images = images.min(data.test.len()).min(data.train.len());
    let test_pixels = &data.test.images[..images * IMAGE_PIXELS];
    let train_pixels = &data.train.images[..images * IMAGE_PIXELS];
    let data_sha256 = hex(&Sha256::new()
        .chain_update(test_pixels)
        .chain_update(train_pixels)
        .finalize());
    let weights = weights_sha256();
    let path = reference_path(cache_dir, images);
    let cached = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<Reference>(&text).ok())
        .filter(|r| r.weights_sha256 == weights && r.data_sha256 == data_sha256);
    if let Some(reference) = &cached
        && (reference.floor.is_some() || !with_floor)
    {
        println!("fid: reference statistics from {}", path.display());
        return Ok(reference.clone());
    }
    let started = Instant::now();
    let test = match cached {
        Some(reference) => reference.test,
        None => network.statistics(test_pixels)?,
    };
    let floor = if with_floor {
        Some(network.statistics(train_pixels)?.frechet_distance(&test)?)
    } else {
        None
    };
    let reference = Reference {
        weights_sha256: weights,
        data_sha256,
        images,
        test,
        floor,
    };
    write_atomic(&path, serde_json::to_string(&reference)?.as_bytes())
        .context("caching the FID reference statistics")?;
    println!(
        "fid: reference statistics of {images} test images computed in {:.1} s, cached in {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(reference)
}

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

fn class_name(class: usize) -> String {
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
    fn new(samples: &WithinClassSpread, test: &WithinClassSpread) -> Self {
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
        let pixels = to_bytes(images, range)?;
        let (features, classes) = network.score(&pixels)?;
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
            kept.extend_from_slice(&pixels);
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

/// A batch of generated images `[B, 1, 28, 28]`, with the class each was asked to be when the
/// model is class-conditional.
pub struct Drawn {
    pub images: Tensor<4>,
    pub requested: Option<Vec<usize>>,
}

impl From<Tensor<4>> for Drawn {
    fn from(images: Tensor<4>) -> Self {
        Self {
            images,
            requested: None,
        }
    }
}

/// Draws `count` images in batches of [`BATCH`] with `draw(batch size, batch seed)` and scores
/// them.
pub fn draw_and_score<D: Into<Drawn>>(
    network: &FeatureNetwork,
    count: usize,
    seed: u64,
    range: PixelRange,
    keep_pixels: bool,
    mut draw: impl FnMut(usize, u64) -> Result<D>,
) -> Result<SampleScores> {
    let mut scores = SampleScores::new(network, keep_pixels);
    let batches = count.div_ceil(BATCH);
    for index in 0..batches {
        let size = BATCH.min(count - index * BATCH);
        let drawn: Drawn = draw(size, batch_seed(seed, index))?.into();
        scores.add(network, drawn.images, range, drawn.requested.as_deref())?;
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

/// `--fid-every N`: every N epochs, the FID of 2,000 samples against the test split, as the
/// last column (`fid`) of `metrics.csv`. Without the flag it adds nothing, not even the column.
pub struct FidMonitor {
    active: Option<ActiveMonitor>,
}

struct ActiveMonitor {
    model: String,
    every: usize,
    seed: u64,
    range: PixelRange,
    network: FeatureNetwork,
    test: FeatureStatistics,
}

impl FidMonitor {
    /// Reads `--fid-every`; when given, loads the classifier and the test statistics (cached in
    /// the run folder). `range` is the pixel range of the model's images.
    pub fn new(
        model: &str,
        common: &CommonArgs,
        run: &RunDir,
        data: &FashionMnist,
        range: PixelRange,
    ) -> Result<Self> {
        let Some(every) = common.fid_every else {
            return Ok(Self { active: None });
        };
        let device = run.device.device.clone();
        let network = FeatureNetwork::load(&device)?;
        let reference = reference(&network, data, data.test.len(), false, &run.root)?;
        Ok(Self {
            active: Some(ActiveMonitor {
                model: model.into(),
                every,
                seed: common.seed,
                range,
                network,
                test: reference.test,
            }),
        })
    }

    /// The columns of `metrics.csv`: `base`, then `fid` when FID is logged.
    pub fn columns<'a>(&self, base: &[&'a str]) -> Vec<&'a str> {
        let mut columns = base.to_vec();
        if self.active.is_some() {
            columns.push("fid");
        }
        columns
    }

    /// Appends the `fid` value to a row of `metrics.csv` when FID is logged: measured when
    /// `completed_epoch` (the row closes that epoch) is a multiple of N, NaN otherwise.
    /// `draw(count, seed)` returns `count` images, in the range given to [`FidMonitor::new`],
    /// the same seeds at every measurement.
    pub fn extend_row<D: Into<Drawn>>(
        &self,
        mut row: Vec<f64>,
        completed_epoch: Option<usize>,
        draw: impl FnMut(usize, u64) -> Result<D>,
    ) -> Result<Vec<f64>> {
        let Some(active) = &self.active else {
            return Ok(row);
        };
        let value = match completed_epoch {
            Some(epoch) if epoch % active.every == 0 => {
                let started = Instant::now();
                let fid = draw_and_score(
                    &active.network,
                    TRAINING_FID_SAMPLES,
                    active.seed,
                    active.range,
                    false,
                    draw,
                )?
                .statistics()?
                .frechet_distance(&active.test)?;
                println!(
                    "{}: epoch {epoch}: FID {fid:.3} ({TRAINING_FID_SAMPLES} samples against the \
                     test split, {:.1} s)",
                    active.model,
                    started.elapsed().as_secs_f64()
                );
                fid
            }
            _ => f64::NAN,
        };
        row.push(value);
        Ok(row)
    }
}

/// A generator rebuilt from a checkpoint of any model of the project, with its run's settings.
// Built once per evaluation, so the variants' different sizes cost nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum SampleSource {
    /// The DCGAN generator, z ~ N(0, I): trained as a DCGAN, a WGAN or a WGAN-GP.
    Gan(Generator),
    /// The conditional GAN's generator, z ~ N(0, I), the classes in turn (sample i asks for
    /// class i mod 10), so that every class has the same share.
    Conditional(ConditionalGenerator),
    /// The VAE's (or autoencoder's) decoder mean sigmoid(l(z)), z ~ N(0, I).
    Vae { decoder: Decoder, latent_dim: usize },
    /// The EMA U-Net of a DDPM run, through a DDIM or DDPM sampler.
    Ddpm {
        unet: UNet,
        schedule: NoiseSchedule,
        sampling: SamplingSettings,
    },
}

/// Reads the run's `config.json` as the settings of `model`.
fn read_config<T: DeserializeOwned>(run_root: &Path, model: &str) -> Result<T> {
    let path = run_root.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (the run's settings)", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not the config of a {model} run", path.display()))
}

impl SampleSource {
    /// Rebuilds the network the checkpoint holds (its model named in `state.json`, its sizes in
    /// the run's `config.json`) and loads its weights; DDPM samples with `sampling`.
    pub fn open(
        run_root: &Path,
        checkpoint: &Checkpoint,
        sampling: SamplingSettings,
        device: &Device,
    ) -> Result<Self> {
        let model = checkpoint.state.model.as_str();
        match model {
            crate::dcgan::MODEL => {
                let settings: DcganSettings = read_config(run_root, model)?;
                let generator = GeneratorConfig::new()
                    .with_latent_dim(settings.latent_dim)
                    .init(device);
                Ok(Self::Gan(checkpoint.load_module("generator", generator)?))
            }
            "wgan" | "wgan-gp" => {
                let settings: WganSettings = read_config(run_root, model)?;
                let generator = GeneratorConfig::new()
                    .with_latent_dim(settings.latent_dim)
                    .init(device);
                Ok(Self::Gan(checkpoint.load_module("generator", generator)?))
            }
            crate::cgan::MODEL => {
                let settings: CganSettings = read_config(run_root, model)?;
                let generator = settings.generator_config().init(device);
                Ok(Self::Conditional(
                    checkpoint.load_module("generator", generator)?,
                ))
            }
            "vae" | "ae" => {
                let settings: VaeSettings = read_config(run_root, model)?;
                let vae = settings.model.init(settings.latent_dim, device);
                let vae = checkpoint.load_module("vae", vae)?;
                Ok(Self::Vae {
                    decoder: vae.decoder,
                    latent_dim: settings.latent_dim,
                })
            }
            crate::ddpm::MODEL => {
                let settings: DdpmSettings = read_config(run_root, model)?;
                let unet = settings.preset.config().init(device);
                let schedule = settings.schedule()?;
                leading_timesteps(schedule.num_steps(), sampling.steps)
                    .context("--sample-steps")?;
                Ok(Self::Ddpm {
                    unet: checkpoint.load_module("ema", unet)?,
                    schedule,
                    sampling,
                })
            }
            other => bail!(
                "{}: cannot sample from a `{other}` checkpoint (eval knows dcgan, wgan, wgan-gp, cgan, \
                 vae, ae and ddpm)",
                checkpoint.dir.display()
            ),
        }
    }

    /// The pixel range of the images [`SampleSource::draw`] returns.
    pub fn range(&self) -> PixelRange {
        match self {
            Self::Vae { .. } => PixelRange::ZeroToOne,
            Self::Gan(_) | Self::Conditional(_) | Self::Ddpm { .. } => PixelRange::MinusOneToOne,
        }
    }

    /// How samples are drawn, in words.
    pub fn describe(&self) -> String {
        match self {
            Self::Gan(generator) => format!("G(z), z ~ N(0, I) in R^{}", generator.latent_dim()),
            Self::Conditional(generator) => format!(
                "G(z, y), z ~ N(0, I) in R^{}, y = 0, 1, ..., 9 in turn",
                generator.latent_dim()
            ),
            Self::Vae { latent_dim, .. } => {
                format!("decoder mean sigmoid(l(z)), z ~ N(0, I) in R^{latent_dim}")
            }
            Self::Ddpm { sampling, .. } => {
                format!("EMA U-Net, {}", crate::ddpm::describe(*sampling))
            }
        }
    }

    /// `count` images `[count, 1, 28, 28]` in [`SampleSource::range`], from noise drawn on the
    /// host from `seed` (the same images on every backend), with the requested classes of a
    /// class-conditional model.
    pub fn draw(&self, count: usize, seed: u64, device: &Device) -> Result<Drawn> {
        match self {
            Self::Gan(generator) => {
                let z = fixed_normal([count, generator.latent_dim()], seed, device);
                Ok(generator.forward(z).into())
            }
            Self::Conditional(generator) => {
                let classes: Vec<usize> = (0..count).map(|i| i % NUM_CLASSES).collect();
                let labels = classes.iter().map(|&c| c as i64).collect::<Vec<_>>();
                let labels = Tensor::from_data(TensorData::new(labels, [count]), device);
                let z = fixed_normal([count, generator.latent_dim()], seed, device);
                Ok(Drawn {
                    images: generator.forward(z, labels),
                    requested: Some(classes),
                })
            }
            Self::Vae {
                decoder,
                latent_dim,
            } => Ok(decoder
                .decode(fixed_normal([count, *latent_dim], seed, device))
                .into()),
            Self::Ddpm {
                unet,
                schedule,
                sampling,
            } => {
                Ok(
                    crate::ddpm::sample(unet, schedule, *sampling, count, seed, device, |_, _| {})?
                        .into(),
                )
            }
        }
    }
}

/// What the `eval` example is asked to do.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    pub from: PathBuf,
    pub samples: usize,
    pub seed: u64,
    pub backend: BackendChoice,
    pub data_dir: Option<PathBuf>,
    /// Where the reference statistics are cached [default: the run folder].
    pub cache_dir: Option<PathBuf>,
    /// Test (and training) images in the reference statistics.
    pub reference_images: usize,
    /// DDPM only: the sampler.
    pub sampling: SamplingSettings,
    /// Writes the samples as an IDX images file.
    pub export: Option<PathBuf>,
    /// The report's path [default: `<run>/eval.json`].
    pub output: Option<PathBuf>,
}

/// What `eval` reports, printed and written to `eval.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub checkpoint: PathBuf,
    pub step: u64,
    pub epoch: usize,
    pub device: String,
    pub sampler: String,
    pub samples: usize,
    pub seed: u64,
    /// FID of the samples against the reference test images.
    pub fid: f64,
    /// FID of as many training images against the same test images.
    pub floor_fid: f64,
    pub reference_images: usize,
    pub feature_network_sha256: String,
    pub feature_dim: usize,
    pub coverage: ModeCoverage,
    /// For class-conditional models: the fraction of samples classified as requested.
    pub conditional_accuracy: Option<f64>,
    /// For class-conditional models: how much the samples of a class vary, against the data.
    pub within_class_spread: Option<SpreadReport>,
    pub export: Option<PathBuf>,
    pub sampling_seconds: f64,
}

impl EvalReport {
    /// Prints the numbers, one per line, and the class histogram.
    pub fn print(&self) {
        println!(
            "eval: {} step {} (epoch {}), {} samples, {}",
            self.model, self.step, self.epoch, self.samples, self.sampler
        );
        println!(
            "  FID {:.3} against {} test images (floor: {} training images {:.3})",
            self.fid, self.reference_images, self.reference_images, self.floor_fid
        );
        println!(
            "  mode coverage: KL to uniform {:.4} nats, modes missed (< {:.0}%): {}",
            self.coverage.kl_to_uniform,
            MODE_THRESHOLD * 100.0,
            if self.coverage.modes_missed.is_empty() {
                "none".to_string()
            } else {
                self.coverage.modes_missed.join(", ")
            }
        );
        for (k, (&count, &fraction)) in self
            .coverage
            .counts
            .iter()
            .zip(&self.coverage.fractions)
            .enumerate()
        {
            println!(
                "    {:<12} {count:>6}  {:5.1}%",
                class_name(k),
                fraction * 100.0
            );
        }
        if let Some(accuracy) = self.conditional_accuracy {
            println!("  accuracy of the requested class {accuracy:.4}");
        }
        if let Some(spread) = &self.within_class_spread {
            let format = |values: &[Option<f64>]| {
                values
                    .iter()
                    .map(|v| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}")))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  within-class spread (mean pixel std by class; samples / test images): {:.3} of the data's",
                spread.mean_ratio
            );
            println!("    samples {}", format(&spread.samples));
            println!("    test    {}", format(&spread.test));
        }
    }
}

/// Draws samples from a checkpoint and scores them (see the module notes); writes `eval.json`
/// and, when asked, the samples as an IDX file.
pub fn evaluate_checkpoint(request: &EvalRequest) -> Result<EvalReport> {
    check_sample_count(request.samples)?;
    if request.reference_images < 2 {
        bail!(
            "--reference-images must be at least 2, got {}",
            request.reference_images
        );
    }
    let (run_root, checkpoint) = crate::ddpm::open_checkpoint(&request.from)?;
    let selected = select_device(request.backend)?;
    let device = selected.device;
    println!("eval: computing on {}", selected.description);
    let source = SampleSource::open(&run_root, &checkpoint, request.sampling, &device)?;
    let data = genmodels_data::load_or_fetch(&genmodels_data::resolve_data_dir(
        request.data_dir.as_deref(),
    ))?;
    let network = FeatureNetwork::load(&device)?;
    let cache_dir = request
        .cache_dir
        .clone()
        .unwrap_or_else(|| run_root.clone());
    let reference = reference(&network, &data, request.reference_images, true, &cache_dir)?;

    println!(
        "eval: drawing {} samples from {} ({})",
        request.samples,
        checkpoint.dir.display(),
        source.describe()
    );
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(request.samples as u64);
    let scores = draw_and_score(
        &network,
        request.samples,
        request.seed,
        source.range(),
        request.export.is_some(),
        |count, seed| {
            let images = source.draw(count, seed, &device);
            bar.inc(count as u64);
            images
        },
    )?;
    bar.finish();
    let sampling_seconds = started.elapsed().as_secs_f64();
    if let (Some(path), Some(pixels)) = (&request.export, scores.pixels()) {
        export_idx(path, pixels)?;
        println!(
            "eval: wrote {} samples to {}",
            scores.count(),
            path.display()
        );
    }
    let report = EvalReport {
        model: checkpoint.state.model.clone(),
        checkpoint: checkpoint.dir.clone(),
        step: checkpoint.state.step,
        epoch: checkpoint.state.epoch,
        device: selected.description,
        sampler: source.describe(),
        samples: scores.count(),
        seed: request.seed,
        fid: scores.statistics()?.frechet_distance(&reference.test)?,
        floor_fid: reference.floor.context("the reference has its floor")?,
        reference_images: reference.images,
        feature_network_sha256: reference.weights_sha256.clone(),
        feature_dim: network.feature_dim(),
        coverage: scores.coverage(),
        conditional_accuracy: scores.conditional_accuracy(),
        within_class_spread: scores.spread().map(|samples| {
            let labels = data.test.labels.iter().map(|&label| usize::from(label));
            SpreadReport::new(samples, &WithinClassSpread::of(&data.test.images, labels))
        }),
        export: request.export.clone(),
        sampling_seconds,
    };
    let output = request
        .output
        .clone()
        .unwrap_or_else(|| run_root.join("eval.json"));
    write_atomic(&output, serde_json::to_string_pretty(&report)?.as_bytes())?;
    report.print();
    println!("eval: report in {}", output.display());
    Ok(report)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    /// A run folder holding `config.json` and one checkpoint of `module` named `name`.
    fn fake_run(
        config: &impl Serialize,
        model: &str,
        name: &str,
        module: &impl burn::module::Module,
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string(config).unwrap(),
        )
        .unwrap();
        let checkpoints = crate::checkpoint::Checkpoints::new(dir.path().join("checkpoints"));
        let writer = checkpoints.begin(7).unwrap();
        writer.module(name, module).unwrap();
        let state = crate::checkpoint::TrainingState {
            model: model.into(),
            step: 7,
            epoch: 1,
            seed: 0,
        };
        writer.commit(&state).unwrap();
        dir
    }

    fn sampling() -> SamplingSettings {
        SamplingSettings {
            sampler: crate::ddpm::SamplerKind::Ddim,
            steps: 2,
            eta: 0.0,
        }
    }

    #[test]
    fn every_model_is_rebuilt_from_its_checkpoint_and_config() {
        let device = Device::flex();
        let common = CommonArgs::default();

        let settings = crate::vae::VaeSettings::from_args(
            common.clone(),
            crate::vae::ModelKind::Vae,
            5,
            1.0,
            0.0,
        );
        let vae = settings.model.init(5, &device);
        let run = fake_run(&settings, "vae", "vae", &vae);
        let (root, checkpoint) = crate::ddpm::open_checkpoint(run.path()).unwrap();
        let source = SampleSource::open(&root, &checkpoint, sampling(), &device).unwrap();
        assert_eq!(source.range(), PixelRange::ZeroToOne);
        let expected = vae.decoder.decode(fixed_normal([3, 5], 11, &device));
        let drawn = source.draw(3, 11, &device).unwrap().images;
        assert!(drawn.all_close(expected, Some(1e-6), Some(1e-6)));

        let settings =
            DcganSettings::from_args(common.clone(), genmodels::GeneratorLoss::default());
        let generator = GeneratorConfig::new().init(&device);
        let run = fake_run(&settings, "dcgan", "generator", &generator);
        let (root, checkpoint) = crate::ddpm::open_checkpoint(run.path()).unwrap();
        let source = SampleSource::open(&root, &checkpoint, sampling(), &device).unwrap();
        assert_eq!(source.range(), PixelRange::MinusOneToOne);
        let expected = generator.forward(fixed_normal([2, 100], 5, &device));
        let drawn = source.draw(2, 5, &device).unwrap().images;
        assert_eq!(drawn.dims(), [2, 1, 28, 28]);
        assert!(drawn.all_close(expected, Some(1e-6), Some(1e-6)));

        // The WGAN-GP generator is the DCGAN one.
        let settings = WganSettings::from_args(common.clone(), crate::wgan::WganLoss::WganGp);
        let run = fake_run(&settings, "wgan-gp", "generator", &generator);
        let (root, checkpoint) = crate::ddpm::open_checkpoint(run.path()).unwrap();
        let source = SampleSource::open(&root, &checkpoint, sampling(), &device).unwrap();
        let expected = generator.forward(fixed_normal([2, 100], 5, &device));
        let drawn = source.draw(2, 5, &device).unwrap();
        assert!(drawn.requested.is_none());
        assert!(drawn.images.all_close(expected, Some(1e-6), Some(1e-6)));

        // The conditional generator asks for the classes in turn.
        let settings = CganSettings::from_args(common.clone(), 1.0);
        let generator = settings.generator_config().init(&device);
        let run = fake_run(&settings, "cgan", "generator", &generator);
        let (root, checkpoint) = crate::ddpm::open_checkpoint(run.path()).unwrap();
        let source = SampleSource::open(&root, &checkpoint, sampling(), &device).unwrap();
        let drawn = source.draw(12, 5, &device).unwrap();
        let classes = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1];
        assert_eq!(drawn.requested.as_deref(), Some(&classes[..]));
        let labels: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        let expected = generator.forward(
            fixed_normal([12, settings.latent_dim], 5, &device),
            Tensor::from_data(TensorData::new(labels, [12]), &device),
        );
        assert!(drawn.images.all_close(expected, Some(1e-6), Some(1e-6)));

        let settings =
            DdpmSettings::from_args(common, crate::ddpm::Preset::Tiny, sampling(), 0.999, 0);
        let unet = settings.preset.config().init(&device);
        let run = fake_run(&settings, "ddpm", "ema", &unet);
        let (root, checkpoint) = crate::ddpm::open_checkpoint(run.path()).unwrap();
        let source = SampleSource::open(&root, &checkpoint, sampling(), &device).unwrap();
        let schedule = settings.schedule().unwrap();
        let expected =
            crate::ddpm::sample(&unet, &schedule, sampling(), 2, 3, &device, |_, _| {}).unwrap();
        let drawn = source.draw(2, 3, &device).unwrap().images;
        assert!(drawn.all_close(expected, Some(1e-5), Some(1e-5)));

        // A checkpoint of another model is refused by name.
        let run = fake_run(&settings, "classifier", "ema", &unet);
        let (root, checkpoint) = crate::ddpm::open_checkpoint(run.path()).unwrap();
        let error = SampleSource::open(&root, &checkpoint, sampling(), &device)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("`classifier`"), "{error}");
    }

    #[test]
    fn fid_monitor_adds_a_column_and_measures_only_every_n_epochs() {
        let device = Device::flex();
        assert!(FidMonitor { active: None }.columns(&["step"]) == vec!["step"]);
        let network = FeatureNetwork::load(&device).unwrap();
        // A reference of 50 synthetic images: bright squares of random sizes.
        let mut pixels = vec![0u8; 50 * IMAGE_PIXELS];
        for (i, image) in pixels.chunks_mut(IMAGE_PIXELS).enumerate() {
            let side = 6 + i % 15;
            for y in 4..4 + side {
                for x in 4..4 + side {
                    image[y * IMAGE_SIDE + x] = 200;
                }
            }
        }
        let test = network.statistics(&pixels).unwrap();
        let monitor = FidMonitor {
            active: Some(ActiveMonitor {
                model: "test".into(),
                every: 2,
                seed: 0,
                range: PixelRange::ZeroToOne,
                network,
                test,
            }),
        };
        assert_eq!(
            monitor.columns(&["step", "loss"]),
            vec!["step", "loss", "fid"]
        );
        let draws = std::cell::Cell::new(0);
        let mut draw = |count: usize, _seed: u64| -> Result<Tensor<4>> {
            draws.set(draws.get() + count);
            Ok(Tensor::<4>::random(
                [count, 1, 28, 28],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                &device,
            ))
        };
        let row = monitor.extend_row(vec![1.0], Some(1), &mut draw).unwrap();
        assert!(row[1].is_nan() && row.len() == 2);
        let row = monitor.extend_row(vec![1.0], None, &mut draw).unwrap();
        assert!(row[1].is_nan());
        assert_eq!(draws.get(), 0, "nothing is drawn between measurements");
        let row = monitor.extend_row(vec![1.0], Some(4), &mut draw).unwrap();
        assert_eq!(draws.get(), TRAINING_FID_SAMPLES);
        assert!(row[1].is_finite() && row[1] > 0.0, "{}", row[1]);
    }
}
