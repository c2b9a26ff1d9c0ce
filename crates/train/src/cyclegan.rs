//! Training CycleGAN (Zhu et al., 2017) between two classes of Fashion-MNIST, and measuring its
//! translations.
//!
//! The two domains are classes of the data set, chosen with `--domain-a` and `--domain-b`
//! (Sneaker and Ankle boot by default). Training is unpaired, as the paper's unaligned data
//! sets: an epoch walks the training images of A in a shuffled order, and each step draws as
//! many training images of B at random from the step's seed. A step is one Adam step of both
//! generators on the whole objective of [`genmodels::cyclegan`], then one of both
//! discriminators on the translations, detached.
//!
//! After training, [`analyze`] writes `translation.png` (test images of A, G_AB(A),
//! G_BA(G_AB(A)), then the same from B) and `cyclegan.json`: the share of translated test
//! images the classifier puts in the target class, and the cycle reconstruction error (L1) on
//! the test split.

use std::path::{Path, PathBuf};

use crate::adam::AdamConfig;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use genmodels::checkpoint::RunFolder;
use genmodels::cyclegan::{
    DISCRIMINATOR_A, DISCRIMINATOR_B, GENERATOR_AB, GENERATOR_BA, PatchDiscriminator,
    PatchDiscriminatorConfig, ResnetGenerator, ResnetGeneratorConfig, generator_terms,
    least_squares_discriminator_loss,
};
use genmodels::{Drawn, GridImages, ImageSource};
use genmodels_data::{Batch, CLASS_NAMES, FashionMnist, NUM_CLASSES, PixelRange, Split};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::cli::{CommonArgs, parse_non_negative_f64, parse_positive_usize};
use crate::eval::FeatureNetwork;
use crate::eval::scores::to_bytes;
use crate::fit::{
    FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit_on, single, step_seed,
};
use crate::fsutil::write_atomic;
use crate::grid::{PixelScale, save_strips};
use crate::latent::EVAL_BATCH;
use crate::optim::TrainedNetwork;
use crate::registry::{Opened, SourceOptions, open_for_analysis};
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "cyclegan";
/// The config key of both generators' settings, and of both discriminators'.
const GENERATOR: &str = "generator";
/// Test images of each domain in `translation.png` (and in the epoch grids).
const FIGURE_IMAGES: usize = 10;

/// A Fashion-MNIST class, by its index (0-9) or its name in any case, spaces and punctuation
/// optional (`ankle-boot`, `"Ankle boot"`, `t-shirt/top`).
pub fn parse_class(text: &str) -> Result<usize, String> {
    let key = |name: &str| -> String {
        name.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    if let Ok(index) = text.parse::<usize>() {
        return if index < NUM_CLASSES {
            Ok(index)
        } else {
            Err(format!("class {index} is not below {NUM_CLASSES}"))
        };
    }
    CLASS_NAMES
        .iter()
        .position(|name| key(name) == key(text))
        .ok_or_else(|| {
            format!(
                "'{text}' is not a Fashion-MNIST class: give 0-{} or one of {}",
                NUM_CLASSES - 1,
                CLASS_NAMES.join(", ")
            )
        })
}

/// The flags of a CycleGAN run.
#[derive(Debug, Clone, clap::Args)]
pub struct CycleGanArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Domain A: a class, by index or name.
    #[arg(long, default_value = "sneaker", value_parser = parse_class)]
    pub domain_a: usize,
    /// Domain B: another class.
    #[arg(long, default_value = "ankle-boot", value_parser = parse_class)]
    pub domain_b: usize,
    /// Weight λ of the cycle-consistency term.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub lambda_cycle: f64,
    /// Weight of the identity term, relative to λ (the paper's 0.5: 0.5 λ in all).
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub lambda_identity: f64,
    /// Residual blocks of each generator.
    #[arg(long, default_value_t = 3, value_parser = parse_positive_usize)]
    pub residual_blocks: usize,
}

/// Every setting of a CycleGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CycleGanSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    /// The classes of domains A and B.
    pub domains: [usize; 2],
    /// Both generators'.
    pub generator: ResnetGeneratorConfig,
    /// Both discriminators'.
    pub discriminator: PatchDiscriminatorConfig,
    /// Adam, one per network.
    pub optimizer: AdamConfig,
    pub lambda_cycle: f64,
    /// Relative to `lambda_cycle`.
    pub lambda_identity: f64,
}

impl CycleGanSettings {
    /// The paper's settings (Adam 2e-4, betas 0.5 / 0.999, λ 10, identity 0.5 λ) where a flag
    /// is absent.
    pub fn new(args: CycleGanArgs) -> Self {
        Self {
            run: RunSettings::new(args.common, 10, 2e-4),
            domains: [args.domain_a, args.domain_b],
            generator: ResnetGeneratorConfig::new().with_residual_blocks(args.residual_blocks),
            discriminator: PatchDiscriminatorConfig::new(),
            optimizer: AdamConfig::new()
                .with_beta_1(0.5)
                .with_beta_2(0.999)
                .with_epsilon(1e-8),
            lambda_cycle: args.lambda_cycle,
            lambda_identity: args.lambda_identity,
        }
    }

    /// "Sneaker <-> Ankle boot".
    fn describe_domains(&self) -> String {
        let [a, b] = self.domains;
        format!("{} <-> {}", CLASS_NAMES[a], CLASS_NAMES[b])
    }
}

/// The images of each domain of one split.
#[derive(Debug, Clone)]
pub struct DomainSplits {
    pub a: Split,
    pub b: Split,
}

impl DomainSplits {
    /// The images of `split` in each of the two classes.
    pub fn new(split: &Split, [a, b]: [usize; 2]) -> Self {
        Self {
            a: split.of_class(a as u8),
            b: split.of_class(b as u8),
        }
    }
}

/// The two generators and the two discriminators, each with its Adam state, and the training
/// images of domain B that each step draws from: one training iteration is [`CycleGan::step`].
pub struct CycleGan {
    generator_ab: TrainedNetwork<ResnetGenerator>,
    generator_ba: TrainedNetwork<ResnetGenerator>,
    discriminator_a: TrainedNetwork<PatchDiscriminator>,
    discriminator_b: TrainedNetwork<PatchDiscriminator>,
    settings: CycleGanSettings,
    train_b: Split,
    /// The test images the source translates (grids, `eval`), read at the start of training.
    test: Option<DomainSplits>,
}

impl CycleGan {
    /// The four networks with the paper's initialisation, N(0, 0.02); `train_b` the training
    /// images of domain B. `device` should be an autodiff device.
    pub fn new(settings: &CycleGanSettings, train_b: Split, device: &Device) -> Self {
        let optimizer = &settings.optimizer;
        let generator = || TrainedNetwork::new(settings.generator.init(device), optimizer.init());
        let discriminator =
            || TrainedNetwork::new(settings.discriminator.init(device), optimizer.init());
        Self {
            generator_ab: generator(),
            generator_ba: generator(),
            discriminator_a: discriminator(),
            discriminator_b: discriminator(),
            settings: settings.clone(),
            train_b,
            test: None,
        }
    }

    /// A batch of `count` training images of B, drawn without replacement from `seed`.
    fn batch_b(&self, count: usize, seed: u64, device: &Device) -> Tensor<4> {
        let mut rng = StdRng::seed_from_u64(seed);
        let indices =
            sample(&mut rng, self.train_b.len(), count.min(self.train_b.len())).into_vec();
        self.train_b
            .images_tensor(&indices, PixelRange::MinusOneToOne, device)
    }

    /// One step of both generators on the whole objective, then one of both discriminators on
    /// the detached translations. Returns, detached, the generators' loss and its three terms
    /// (unweighted) and each discriminator's loss.
    pub fn step(&mut self, real_a: Tensor<4>, real_b: Tensor<4>) -> StepMetrics {
        let settings = &self.settings;
        let lr = settings.run.lr;
        let identity_weight = settings.lambda_cycle * settings.lambda_identity;
        let terms = generator_terms(
            [&self.generator_ab.network, &self.generator_ba.network],
            [&self.discriminator_a.network, &self.discriminator_b.network],
            real_a.clone(),
            real_b.clone(),
            identity_weight > 0.0,
        );
        let loss_g = terms.adversarial.clone()
            + terms.cycle.clone().mul_scalar(settings.lambda_cycle)
            + terms.identity.clone().mul_scalar(identity_weight);
        let mut grads = loss_g.backward();
        self.generator_ab.step_with(&mut grads, lr);
        self.generator_ba.step_with(&mut grads, lr);

        let d_a = &self.discriminator_a.network;
        let d_b = &self.discriminator_b.network;
        let loss_d_a = least_squares_discriminator_loss(
            d_a.forward(real_a),
            d_a.forward(terms.fake_a.detach()),
        );
        let loss_d_b = least_squares_discriminator_loss(
            d_b.forward(real_b),
            d_b.forward(terms.fake_b.detach()),
        );
        let mut grads = (loss_d_a.clone() + loss_d_b.clone()).backward();
        self.discriminator_a.step_with(&mut grads, lr);
        self.discriminator_b.step_with(&mut grads, lr);

        StepMetrics::new()
            .with("loss_g", loss_g.detach())
            .with("adversarial", terms.adversarial.detach())
            .with("cycle", terms.cycle.detach())
            .with("identity", terms.identity.detach())
            .with("loss_d_a", loss_d_a.detach())
            .with("loss_d_b", loss_d_b.detach())
    }

    /// The generators as they stand, without autodiff, with the test images they translate.
    fn translator(&self) -> Option<Translator> {
        Some(Translator {
            generator_ab: self.generator_ab.network.valid(),
            generator_ba: self.generator_ba.network.valid(),
            test: self.test.clone()?,
            domains: self.settings.domains,
        })
    }
}

impl Checkpointed for CycleGan {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![
            (GENERATOR_AB, &mut self.generator_ab),
            (GENERATOR_BA, &mut self.generator_ba),
            (DISCRIMINATOR_A, &mut self.discriminator_a),
            (DISCRIMINATOR_B, &mut self.discriminator_b),
        ]
    }
}

impl Trainable for CycleGan {
    /// The test images of each domain, for the grids and the scores.
    fn begin(&mut self, context: &RunContext) -> Result<()> {
        self.test = Some(DomainSplits::new(context.test, self.settings.domains));
        Ok(())
    }

    /// The batch of A from the loader, a batch of B drawn from the step's seed.
    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
        let real_a = single(batches).images;
        let [count, ..] = real_a.dims();
        let seed = step_seed(self.settings.run.common.seed, step) ^ DOMAIN_B_STREAM;
        let real_b = self.batch_b(count, seed, &real_a.device());
        CycleGan::step(self, real_a, real_b)
    }

    /// `translation.png` and `cyclegan.json`, into the run folder.
    fn end_training(&mut self, context: &RunContext) -> Result<()> {
        let translator = self.translator().expect("set by begin");
        analyze_translator(&translator, context.device, &context.run.root)?;
        Ok(())
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        self.translator()
            .map(|translator| Box::new(translator) as Box<dyn ImageSource>)
    }
}

/// Set apart from the stream the loader and the device draw from, so that B's batches are not
/// correlated with A's order.
const DOMAIN_B_STREAM: u64 = 0xB0B0_B0B0_B0B0_B0B0;

/// Trains CycleGAN with `settings`: the loader walks domain A's training images, the FID of
/// `--fid-every` compares the translations with the test images of both domains.
pub fn train(settings: &CycleGanSettings) -> Result<TrainSummary> {
    let [a, b] = settings.domains;
    if a == b {
        bail!(
            "--domain-a and --domain-b are both {}: the translation needs two classes",
            CLASS_NAMES[a]
        );
    }
    let data = genmodels_data::load_or_fetch_in(settings.run.common.data_dir.as_deref())?;
    let train = DomainSplits::new(&data.train, settings.domains);
    let test = DomainSplits::new(&data.test, settings.domains);
    println!(
        "{MODEL}: {} ({} and {} training images)",
        settings.describe_domains(),
        train.a.len(),
        train.b.len()
    );
    let mut both_test = test.a.clone();
    both_test.images.extend_from_slice(&test.b.images);
    both_test.labels.extend_from_slice(&test.b.labels);
    let domains = FashionMnist {
        train: train.a,
        test: both_test,
    };
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::MinusOneToOne);
    fit_on(&plan, settings, Some(domains), |device| {
        Ok(CycleGan::new(settings, train.b, device))
    })
}

/// Both generators of a trained CycleGAN and the test images of each domain: as an
/// [`ImageSource`] it translates test images, half A -> B and half B -> A.
#[derive(Debug, Clone)]
pub struct Translator {
    pub generator_ab: ResnetGenerator,
    pub generator_ba: ResnetGenerator,
    pub test: DomainSplits,
    pub domains: [usize; 2],
}

impl Translator {
    /// The test images of A (`from_a`) or B at `indices`, translated, `[N, 1, 28, 28]`.
    fn translate(&self, from_a: bool, indices: &[usize], device: &Device) -> Tensor<4> {
        let (split, generator) = match from_a {
            true => (&self.test.a, &self.generator_ab),
            false => (&self.test.b, &self.generator_ba),
        };
        generator.forward(split.images_tensor(indices, PixelRange::MinusOneToOne, device))
    }
}

impl ImageSource for Translator {
    fn pixel_range(&self) -> genmodels::PixelRange {
        genmodels::PixelRange::MinusOneToOne
    }

    fn describe(&self) -> String {
        let [a, b] = self.domains;
        format!(
            "G_AB and G_BA on test images, {} <-> {}",
            CLASS_NAMES[a], CLASS_NAMES[b]
        )
    }

    /// The first half translates test images of A to B, the second B to A, in an order drawn
    /// from `seed` (each image once before any comes again).
    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let mut rng = StdRng::seed_from_u64(seed);
        let from_a = count.div_ceil(2);
        let mut pick = |split: &Split, n: usize| -> Vec<usize> {
            let order = sample(&mut rng, split.len(), split.len()).into_vec();
            (0..n).map(|i| order[i % order.len()]).collect()
        };
        let a = pick(&self.test.a, from_a);
        let b = pick(&self.test.b, count - from_a);
        let mut parts = vec![self.translate(true, &a, device)];
        if !b.is_empty() {
            parts.push(self.translate(false, &b, device));
        }
        Tensor::cat(parts, 0).into()
    }

    /// The translation figure: columns A, G_AB(A), G_BA(G_AB(A)), B, G_BA(B), G_AB(G_BA(B)).
    fn grid(&self, _seed: u64, device: &Device) -> GridImages {
        GridImages {
            images: self.figure(device),
            columns: 6,
            row_classes: None,
        }
    }
}

impl Translator {
    /// The first [`FIGURE_IMAGES`] test images of each domain as rows: A, G_AB(A),
    /// G_BA(G_AB(A)), B, G_BA(B), G_AB(G_BA(B)); `[6 N, 1, 28, 28]`, row after row.
    fn figure(&self, device: &Device) -> Tensor<4> {
        let columns = self.figure_columns(device);
        let stacked = Tensor::stack::<5>(columns, 1); // [N, 6, 1, 28, 28]
        let [rows, count, channels, height, width] = stacked.dims();
        stacked.reshape([rows * count, channels, height, width])
    }

    fn figure_columns(&self, device: &Device) -> Vec<Tensor<4>> {
        let n = FIGURE_IMAGES.min(self.test.a.len()).min(self.test.b.len());
        let indices: Vec<usize> = (0..n).collect();
        let a = self
            .test
            .a
            .images_tensor(&indices, PixelRange::MinusOneToOne, device);
        let b = self
            .test
            .b
            .images_tensor(&indices, PixelRange::MinusOneToOne, device);
        let ab = self.generator_ab.forward(a.clone());
        let aba = self.generator_ba.forward(ab.clone());
        let ba = self.generator_ba.forward(b.clone());
        let bab = self.generator_ab.forward(ba.clone());
        vec![a, ab, aba, b, ba, bab]
    }
}

/// The trained generators of a run, with the test images of its domains (read from the run's
/// data folder).
pub fn open_source(run: &RunFolder, _options: &SourceOptions, device: &Device) -> Opened {
    Ok(Box::new(open_translator(run, device)?))
}

fn open_translator(run: &RunFolder, device: &Device) -> Result<Translator> {
    let settings: CycleGanSettings = run.settings()?;
    let data = genmodels_data::load_or_fetch_in(settings.run.common.data_dir.as_deref())?;
    let init = |config: ResnetGeneratorConfig| config.init(device);
    Ok(Translator {
        generator_ab: run.load_record(GENERATOR, GENERATOR_AB, init)?,
        generator_ba: run.load_record(GENERATOR, GENERATOR_BA, init)?,
        test: DomainSplits::new(&data.test, settings.domains),
        domains: settings.domains,
    })
}

/// The flags of `analyze`.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/cyclegan")]
    pub from: PathBuf,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// How one direction translates the test images of its source domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionScores {
    /// "Sneaker -> Ankle boot".
    pub direction: String,
    /// Test images translated.
    pub images: usize,
    /// The share of translations the classifier puts in the target class.
    pub target_class_share: f64,
    /// The same share for the untranslated images: how often the classifier already sees the
    /// target class in the source.
    pub untranslated_target_share: f64,
    /// The FID of the translations against the target class's test images, in the features of
    /// the project's classifier (1,000 images a side: compare it with the next field, not with
    /// 10,000-sample FIDs).
    pub fid_to_target: f64,
    /// The same for the untranslated images: how far apart the two classes start.
    pub untranslated_fid_to_target: f64,
    /// Mean absolute pixel difference of the cycle's reconstruction and the image, `[-1, 1]`.
    pub cycle_l1: f64,
}

/// What `cyclegan.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TranslationReport {
    pub a_to_b: DirectionScores,
    pub b_to_a: DirectionScores,
}

/// `analyze`: `translation.png` and `cyclegan.json` of a run's latest checkpoint, into its folder.
pub fn analyze(args: &AnalyzeArgs) -> Result<TranslationReport> {
    let (run, device) = open_for_analysis(MODEL, &args.from, args.backend)?;
    let translator = open_translator(&run, &device)?;
    analyze_translator(&translator, &device, &run.root)
}

/// Writes `translation.png` and `cyclegan.json` into `dir`.
fn analyze_translator(
    translator: &Translator,
    device: &Device,
    dir: &Path,
) -> Result<TranslationReport> {
    let path = dir.join("translation.png");
    save_strips(
        translator.figure_columns(device),
        PixelScale::MinusOneToOne,
        &path,
    )?;
    println!("  translation.png  A, G_AB(A), G_BA(G_AB(A)), B, G_BA(B), G_AB(G_BA(B))");
    let classifier = FeatureNetwork::load(device)?;
    let [a, b] = translator.domains;
    let score = |from_a: bool| -> Result<DirectionScores> {
        let test = &translator.test;
        let (split, target_split, forward, backward, target) = match from_a {
            true => (
                &test.a,
                &test.b,
                &translator.generator_ab,
                &translator.generator_ba,
                b,
            ),
            false => (
                &test.b,
                &test.a,
                &translator.generator_ba,
                &translator.generator_ab,
                a,
            ),
        };
        let source = if from_a { a } else { b };
        let indices: Vec<usize> = (0..split.len()).collect();
        let mut translated_pixels = Vec::with_capacity(split.images.len());
        let mut l1 = 0f64;
        for chunk in indices.chunks(EVAL_BATCH) {
            let images = split.images_tensor(chunk, PixelRange::MinusOneToOne, device);
            let translated = forward.forward(images.clone());
            let cycled = backward.forward(translated.clone());
            l1 += (cycled - images).abs().sum().into_scalar::<f32>() as f64;
            translated_pixels.extend(to_bytes(translated, PixelRange::MinusOneToOne)?);
        }
        let target_share = |pixels: &[u8]| -> Result<f64> {
            let (_, classes) = classifier.score(pixels)?;
            let hits = classes.iter().filter(|&&class| class == target).count();
            Ok(hits as f64 / classes.len() as f64)
        };
        let target_statistics = classifier.statistics(&target_split.images)?;
        let fid_to_target = |pixels: &[u8]| -> Result<f64> {
            Ok(classifier
                .statistics(pixels)?
                .frechet_distance(&target_statistics)?)
        };
        let n = split.len();
        Ok(DirectionScores {
            direction: format!("{} -> {}", CLASS_NAMES[source], CLASS_NAMES[target]),
            images: n,
            target_class_share: target_share(&translated_pixels)?,
            untranslated_target_share: target_share(&split.images)?,
            fid_to_target: fid_to_target(&translated_pixels)?,
            untranslated_fid_to_target: fid_to_target(&split.images)?,
            cycle_l1: l1 / (n * split.image(0).len()) as f64,
        })
    };
    let report = TranslationReport {
        a_to_b: score(true)?,
        b_to_a: score(false)?,
    };
    let path = dir.join("cyclegan.json");
    write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    for scores in [&report.a_to_b, &report.b_to_a] {
        println!(
            "{MODEL}: {}: the classifier puts {:.4} of {} translated test images in the target class ({:.4} before translation); FID to the target's test images {:.2} ({:.2} before); cycle L1 {:.4}",
            scores.direction,
            scores.target_class_share,
            scores.images,
            scores.untranslated_target_share,
            scores.fid_to_target,
            scores.untranslated_fid_to_target,
            scores.cycle_l1
        );
    }
    println!("{MODEL}: {}", path.display());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_flags;
    use crate::optim::parameter_values;

    #[test]
    fn classes_are_read_by_index_or_by_name() {
        assert_eq!(parse_class("9"), Ok(9));
        assert_eq!(parse_class("ankle-boot"), Ok(9));
        assert_eq!(parse_class("Ankle boot"), Ok(9));
        assert_eq!(parse_class("t-shirt/top"), Ok(0));
        assert_eq!(parse_class("SNEAKER"), Ok(7));
        assert!(parse_class("10").unwrap_err().contains("not below 10"));
        assert!(parse_class("boot").unwrap_err().contains("Ankle boot"));
    }

    #[test]
    fn the_domains_are_the_two_classes_alone() {
        let split = Split {
            images: (0..5u8).flat_map(|i| vec![i; 784]).collect(),
            labels: vec![7, 9, 0, 7, 9],
        };
        let domains = DomainSplits::new(&split, [7, 9]);
        assert_eq!(domains.a.labels, [7, 7]);
        assert_eq!(domains.a.image(1), [3u8; 784]);
        assert_eq!(domains.b.labels, [9, 9]);
        assert_eq!(domains.b.image(0), [1u8; 784]);
    }

    #[test]
    fn the_translator_draws_as_many_images_as_asked_even_past_the_test_split() {
        let device = Device::flex();
        let generator = ResnetGeneratorConfig::new()
            .with_channels(4)
            .with_residual_blocks(1);
        let split = |class: u8| Split {
            images: vec![class * 20; 3 * 784],
            labels: vec![class; 3],
        };
        let translator = Translator {
            generator_ab: generator.init(&device),
            generator_ba: generator.init(&device),
            test: DomainSplits {
                a: split(7),
                b: split(9),
            },
            domains: [7, 9],
        };
        for count in [1, 4, 11] {
            let drawn = translator.draw(count, 3, &device);
            assert_eq!(drawn.images.dims(), [count, 1, 28, 28]);
        }
    }

    #[test]
    fn a_step_moves_all_four_networks() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let flags = "--residual-blocks 1 --lambda-identity 0.5";
        let settings =
            CycleGanSettings::new(parse_flags::<CycleGanArgs>(flags.split_whitespace()).unwrap());
        let train_b = Split {
            images: vec![200; 3 * 784],
            labels: vec![9; 3],
        };
        let mut model = CycleGan::new(&settings, train_b, &device);
        let parameters = |model: &CycleGan| {
            [
                parameter_values(&model.generator_ab.network),
                parameter_values(&model.generator_ba.network),
                parameter_values(&model.discriminator_a.network),
                parameter_values(&model.discriminator_b.network),
            ]
        };
        let before = parameters(&model);
        let real_a = Tensor::<4>::random(
            [3, 1, 28, 28],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let real_b = model.batch_b(3, 1, &device);
        assert_eq!(real_b.dims(), [3, 1, 28, 28]);
        let metrics = model.step(real_a, real_b);
        let after = parameters(&model);
        for (i, (x, y)) in before.iter().zip(&after).enumerate() {
            assert!(x != y, "network {i} did not move");
        }
        // loss_g = adversarial + 10 cycle + 5 identity.
        let value = |name| metrics.value(name).unwrap().clone().into_scalar::<f32>() as f64;
        let total = value("adversarial") + 10.0 * value("cycle") + 5.0 * value("identity");
        assert!(
            (value("loss_g") - total).abs() < 1e-4 * total,
            "{} vs {total}",
            value("loss_g")
        );
    }
}
