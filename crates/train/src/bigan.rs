//! Training BiGAN (Donahue et al., 2017; ALI, Dumoulin et al., 2017) on Fashion-MNIST, and
//! measuring what its encoder learned.
//!
//! Each step is one D step on the pairs `(x, E(x))` and `(G(z), z)`, then one step of G and E
//! together on the swapped labels ([`genmodels::bigan`]). After training, [`analyze`] writes
//! `reconstruction.png` (test images above G(E(x))) and `bigan.json`: the 5-NN class accuracy
//! of E(x), training codes against test codes, beside an untrained encoder of the same shape;
//! and how often the classifier puts G(E(x)) in x's class, with the pixel error of G(E(x)).

use std::path::{Path, PathBuf};

use crate::adam::AdamConfig;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use genmodels::ImageSource;
use genmodels::bigan::{
    DISCRIMINATOR, ENCODER, Encoder, EncoderConfig, GENERATOR, JointDiscriminator,
    JointDiscriminatorConfig, encoder_generator_loss, joint_discriminator_loss,
};
use genmodels::checkpoint::RunFolder;
use genmodels::dcgan::{Generator, GeneratorConfig};
use genmodels::noise::device_normal;
use genmodels_data::{Batch, PixelRange, Split};
use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::cli::{CommonArgs, parse_positive_usize};
use crate::eval::FeatureNetwork;
use crate::eval::scores::to_bytes;
use crate::fit::{FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit, single};
use crate::fsutil::write_atomic;
use crate::grid::{PixelScale, save_above};
use crate::latent::{EVAL_BATCH, NEIGHBOURS, knn_accuracy};
use crate::optim::TrainedNetwork;
use crate::registry::{Opened, SourceOptions, open_for_analysis};
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "bigan";
/// Test images in `reconstruction.png`, in rows of [`FIGURE_COLUMNS`].
const FIGURE_IMAGES: usize = 32;
const FIGURE_COLUMNS: usize = 8;
/// Seed of the untrained encoder the trained one is compared with.
const UNTRAINED_SEED: u64 = 7;

/// The flags of a BiGAN run.
#[derive(Debug, Clone, clap::Args)]
pub struct BiganArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of the latent vector z, the generator's input and the encoder's output.
    #[arg(long, default_value_t = 100, value_parser = parse_positive_usize)]
    pub latent_dim: usize,
}

/// Every setting of a BiGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BiganSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub generator: GeneratorConfig,
    pub encoder: EncoderConfig,
    pub discriminator: JointDiscriminatorConfig,
    /// Adam, one per network.
    pub optimizer: AdamConfig,
}

impl BiganSettings {
    /// DCGAN's settings (Adam 2e-4, betas 0.5 / 0.999, epsilon 1e-8) where a flag is absent.
    pub fn new(args: BiganArgs) -> Self {
        let latent_dim = args.latent_dim;
        Self {
            run: RunSettings::new(args.common, 10, 2e-4),
            generator: GeneratorConfig::new().with_latent_dim(latent_dim),
            encoder: EncoderConfig::new().with_latent_dim(latent_dim),
            discriminator: JointDiscriminatorConfig::new().with_latent_dim(latent_dim),
            optimizer: AdamConfig::new()
                .with_beta_1(0.5)
                .with_beta_2(0.999)
                .with_epsilon(1e-8),
        }
    }
}

/// The generator, the encoder and the joint discriminator, each with its Adam state: one
/// training iteration is [`Bigan::step`].
pub struct Bigan {
    generator: TrainedNetwork<Generator>,
    encoder: TrainedNetwork<Encoder>,
    discriminator: TrainedNetwork<JointDiscriminator>,
    settings: BiganSettings,
}

impl Bigan {
    /// The three networks with DCGAN's initialisation; `device` should be an autodiff device.
    pub fn new(settings: &BiganSettings, device: &Device) -> Self {
        let optimizer = &settings.optimizer;
        Self {
            generator: TrainedNetwork::new(settings.generator.init(device), optimizer.init()),
            encoder: TrainedNetwork::new(settings.encoder.init(device), optimizer.init()),
            discriminator: TrainedNetwork::new(
                settings.discriminator.init(device),
                optimizer.init(),
            ),
            settings: settings.clone(),
        }
    }

    /// One D step on the detached pairs, then one step of G and E on the swapped labels (z from
    /// the device). Returns, detached, the two losses and the mean D of each kind of pair.
    pub fn step(&mut self, real: Tensor<4>) -> StepMetrics {
        let [batch, ..] = real.dims();
        let lr = self.settings.run.lr;
        let z = device_normal([batch, self.settings.generator.latent_dim], &real.device()); // [B, d]
        let fake = self.generator.network.forward(z.clone()); // [B, 1, 28, 28]
        let code = self.encoder.network.forward(real.clone()); // [B, d]

        // D: tell (x, E(x)) from (G(z), z).
        let discriminator = &self.discriminator.network;
        let encoder_logits = discriminator.forward(real.clone(), code.clone().detach()); // [B, 1]
        let generator_logits = discriminator.forward(fake.clone().detach(), z.clone()); // [B, 1]
        let loss_d = joint_discriminator_loss(encoder_logits.clone(), generator_logits.clone());
        self.discriminator.step(loss_d.clone(), lr);

        // G and E: make D take each pair for the other kind, D's weights held fixed (no gradient
        // is computed for them).
        let discriminator = self.discriminator.network.clone().no_grad();
        let loss_ge = encoder_generator_loss(
            discriminator.forward(real, code),
            discriminator.forward(fake, z),
        );
        let mut grads = loss_ge.backward();
        self.generator.step_with(&mut grads, lr);
        self.encoder.step_with(&mut grads, lr);

        StepMetrics::new()
            .with("loss_d", loss_d.detach())
            .with("loss_ge", loss_ge.detach())
            .with("d_encoder", sigmoid(encoder_logits.detach()).mean())
            .with("d_generator", sigmoid(generator_logits.detach()).mean())
    }
}

impl Checkpointed for Bigan {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![
            (GENERATOR, &mut self.generator),
            (ENCODER, &mut self.encoder),
            (DISCRIMINATOR, &mut self.discriminator),
        ]
    }
}

impl Trainable for Bigan {
    fn step(&mut self, batches: Vec<Batch>, _step: u64) -> StepMetrics {
        Bigan::step(self, single(batches).images)
    }

    /// `reconstruction.png` and `bigan.json`, into the run folder.
    fn end_training(&mut self, context: &RunContext) -> Result<()> {
        let networks = TrainedPair {
            generator: self.generator.network.valid(),
            encoder: self.encoder.network.valid(),
        };
        let data = Splits {
            train: context.loader.split(),
            test: context.test,
        };
        analyze_networks(&networks, &data, context.device, &context.run.root)?;
        Ok(())
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.generator.network.valid()))
    }
}

/// Trains BiGAN with `settings`, writing grids, metrics and checkpoints and, at the end,
/// `reconstruction.png` and `bigan.json`.
pub fn train(settings: &BiganSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::MinusOneToOne);
    fit(&plan, settings, |device| Ok(Bigan::new(settings, device)))
}

/// The flags of `analyze`.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/bigan")]
    pub from: PathBuf,
    /// Directory with the Fashion-MNIST files (fetched there if missing).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// What `bigan.json` holds: how much of the data's structure the encoder's codes keep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderReport {
    /// 5-NN class accuracy of the test codes E(x) against the training codes.
    pub knn5_accuracy: f64,
    /// The same for an encoder of the same shape, untrained.
    pub untrained_knn5_accuracy: f64,
    /// The share of test images whose reconstruction G(E(x)) the classifier puts in x's class.
    pub reconstruction_class_agreement: f64,
    /// Mean absolute difference of G(E(x)) and x on the test split, pixels in `[-1, 1]`.
    pub reconstruction_l1: f64,
    /// Test images scored.
    pub test_images: usize,
}

/// A trained generator and encoder, without autodiff.
struct TrainedPair {
    generator: Generator,
    encoder: Encoder,
}

/// The splits the encoder is scored on.
struct Splits<'a> {
    train: &'a Split,
    test: &'a Split,
}

/// `analyze`: `reconstruction.png` and `bigan.json` of a run's latest checkpoint, into its
/// folder.
pub fn analyze(args: &AnalyzeArgs) -> Result<EncoderReport> {
    let (run, device) = open_for_analysis(MODEL, &args.from, args.backend)?;
    let networks = open_networks(&run, &device)?;
    let data = genmodels_data::load_or_fetch_in(args.data_dir.as_deref())?;
    let splits = Splits {
        train: &data.train,
        test: &data.test,
    };
    analyze_networks(&networks, &splits, &device, &run.root)
}

fn open_networks(run: &RunFolder, device: &Device) -> Result<TrainedPair> {
    Ok(TrainedPair {
        generator: run.load(GENERATOR, |config: GeneratorConfig| config.init(device))?,
        encoder: run.load(ENCODER, |config: EncoderConfig| config.init(device))?,
    })
}

/// The trained generator of a run: `G(z)`, z ~ N(0, I).
pub fn open_source(run: &RunFolder, _options: &SourceOptions, device: &Device) -> Opened {
    Ok(Box::new(open_networks(run, device)?.generator))
}

/// Writes `reconstruction.png` and `bigan.json` into `dir`.
fn analyze_networks(
    networks: &TrainedPair,
    data: &Splits,
    device: &Device,
    dir: &Path,
) -> Result<EncoderReport> {
    let TrainedPair { generator, encoder } = networks;
    let figure: Vec<usize> = (0..FIGURE_IMAGES.min(data.test.len())).collect();
    let originals = data
        .test
        .images_tensor(&figure, PixelRange::MinusOneToOne, device);
    let reconstructions = generator.forward(encoder.forward(originals.clone()));
    let path = dir.join("reconstruction.png");
    let columns = FIGURE_COLUMNS.min(figure.len());
    save_above(
        originals,
        reconstructions,
        columns,
        PixelScale::MinusOneToOne,
        &path,
    )?;
    println!("  reconstruction.png  test images above G(E(x))");

    let dim = encoder.latent_dim();
    let knn = |encoder: &Encoder| {
        let train = encode(encoder, data.train, device);
        let test = encode(encoder, data.test, device);
        let labels = (&data.train.labels, &data.test.labels);
        knn_accuracy(&train, labels.0, &test, labels.1, dim, NEIGHBOURS, device)
    };
    let knn5_accuracy = knn(encoder);
    device.seed(UNTRAINED_SEED);
    let untrained = EncoderConfig::new().with_latent_dim(dim).init(device);
    let untrained_knn5_accuracy = knn(&untrained);
    let (reconstruction_class_agreement, reconstruction_l1) =
        score_reconstructions(networks, data.test, device)?;
    let report = EncoderReport {
        knn5_accuracy,
        untrained_knn5_accuracy,
        reconstruction_class_agreement,
        reconstruction_l1,
        test_images: data.test.len(),
    };
    let path = dir.join("bigan.json");
    write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!(
        "{MODEL}: 5-NN accuracy of E(x) {:.4} (untrained encoder {:.4}); the classifier puts G(E(x)) in x's class for {:.4} of the test images, L1 {:.4}: {}",
        report.knn5_accuracy,
        report.untrained_knn5_accuracy,
        report.reconstruction_class_agreement,
        report.reconstruction_l1,
        path.display()
    );
    Ok(report)
}

/// E(x) of every image of `split`, row by row.
fn encode(encoder: &Encoder, split: &Split, device: &Device) -> Vec<f32> {
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut codes = Vec::with_capacity(split.len() * encoder.latent_dim());
    for chunk in indices.chunks(EVAL_BATCH) {
        let images = split.images_tensor(chunk, PixelRange::MinusOneToOne, device);
        let batch = encoder.forward(images).into_data();
        codes.extend(batch.try_to_vec::<f32>().expect("f32 codes"));
    }
    codes
}

/// The share of `split`'s images whose G(E(x)) the classifier puts in their class, and the mean
/// absolute pixel difference of G(E(x)) and x.
fn score_reconstructions(
    networks: &TrainedPair,
    split: &Split,
    device: &Device,
) -> Result<(f64, f64)> {
    let classifier = FeatureNetwork::load(device)?;
    let indices: Vec<usize> = (0..split.len()).collect();
    let (mut agreeing, mut l1) = (0usize, 0f64);
    for chunk in indices.chunks(EVAL_BATCH) {
        let images = split.images_tensor(chunk, PixelRange::MinusOneToOne, device);
        let reconstructions = networks
            .generator
            .forward(networks.encoder.forward(images.clone()));
        let difference = (reconstructions.clone() - images).abs().sum();
        l1 += difference.into_scalar::<f32>() as f64;
        let pixels = to_bytes(reconstructions, PixelRange::MinusOneToOne)?;
        let (_, classes) = classifier.score(&pixels)?;
        agreeing += chunk
            .iter()
            .zip(classes)
            .filter(|&(&index, class)| split.labels[index] as usize == class)
            .count();
    }
    let pixels = (split.len() * split.image(0).len()) as f64;
    Ok((agreeing as f64 / split.len() as f64, l1 / pixels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_flags;
    use crate::optim::parameter_values;

    #[test]
    fn a_step_moves_all_three_networks_and_reports_its_values() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let args = parse_flags::<BiganArgs>("--latent-dim 8".split_whitespace()).unwrap();
        let settings = BiganSettings::new(args);
        let mut model = Bigan::new(&settings, &device);
        let real = Tensor::<4>::random(
            [8, 1, 28, 28],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let before = parameters(&model);
        let metrics = model.step(real);
        let after = parameters(&model);
        for (name, (a, b)) in ["generator", "encoder", "discriminator"]
            .iter()
            .zip(before.iter().zip(&after))
        {
            assert!(a != b, "{name} did not move");
        }
        assert_eq!(
            metrics.names(),
            ["loss_d", "loss_ge", "d_encoder", "d_generator"]
        );
        // Untrained, D cannot tell the pairs apart: its loss is near 2 ln 2 = 1.386, off by its
        // random initial logits (1.18 to 1.83 over seeds 0-199). G and E are scored after D's
        // step, which has learned to tell them apart: theirs is higher (by 1.66 or more there).
        let value = |name| metrics.value(name).unwrap().clone().into_scalar::<f32>();
        let (loss_d, loss_ge) = (value("loss_d"), value("loss_ge"));
        assert!((loss_d - 2.0 * 2f32.ln()).abs() < 0.6, "loss_d {loss_d}");
        assert!(
            loss_ge > loss_d,
            "loss_ge {loss_ge} after D's step, loss_d {loss_d}"
        );
    }

    /// Each network's parameters: generator, encoder, discriminator.
    fn parameters(model: &Bigan) -> [Vec<f32>; 3] {
        [
            parameter_values(&model.generator.network),
            parameter_values(&model.encoder.network),
            parameter_values(&model.discriminator.network),
        ]
    }
}
