//! Training InfoGAN (Chen et al., 2016) on Fashion-MNIST, and measuring what its categorical
//! code learned.
//!
//! Each step is DCGAN's (one D step, then one G step) on inputs `[z, c, u]`, with the
//! information terms of [`genmodels::infogan`] added to both losses: the discriminator's trunk
//! and the head Q learn to recover c and u from the fakes, the generator to make them
//! recoverable. After training, [`analyze`] draws `categorical.png` (one row per value of c, z
//! fixed per column) and `continuous_<k>.png` (each continuous code swept from -2 to 2), and
//! scores how far c matches the classes, whose labels training never saw: the project's
//! classifier labels 10,000 samples, and the accuracy of c -> class under the best one-to-one
//! assignment (the Hungarian algorithm) is reported in `infogan.json`.

use std::path::{Path, PathBuf};

use crate::adam::AdamConfig;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::dcgan::{Generator, GeneratorConfig};
use genmodels::gan_loss::{GeneratorLoss, discriminator_loss, generator_loss};
use genmodels::infogan::{
    Codes, DISCRIMINATOR, GENERATOR, InfoDiscriminator, InfoDiscriminatorConfig, InfoGanSource,
    InfoOutputs, LatentLayout, categorical_code_loss, continuous_code_loss,
};
use genmodels::noise::{device_normal, seeded_normal};
use genmodels_data::{Batch, NUM_CLASSES, PixelRange};
use pathfinding::prelude::{Matrix, kuhn_munkres};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::adversarial::Adversarial;
use crate::backend::BackendChoice;
use crate::cli::{CommonArgs, parse_non_negative_f64, parse_positive_f64};
use crate::eval::FeatureNetwork;
use crate::eval::scores::to_bytes;
use crate::fit::{
    FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit, single, step_seed,
};
use crate::fsutil::write_atomic;
use crate::grid::{PixelScale, save_grid};
use crate::registry::{Opened, SourceOptions, open_for_analysis};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "infogan";
/// Samples drawn to match the categorical code with the classes.
const MATCH_SAMPLES: usize = 10_000;
/// Columns (noise vectors) of the code figures.
const FIGURE_COLUMNS: usize = 10;
/// Values of a continuous code in its sweep, from -2 to 2.
const SWEEP_STEPS: usize = 9;

/// The flags of an InfoGAN run.
#[derive(Debug, Clone, clap::Args)]
pub struct InfoGanArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Weight λ of the categorical code's information term.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub lambda_categorical: f64,
    /// Weight λ of the continuous codes' information term.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub lambda_continuous: f64,
    /// Learning rate of D and Q, when it differs from G's `--lr` (the paper's MNIST run: 2e-4
    /// for D, 1e-3 for G).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    pub lr_discriminator: Option<f64>,
}

/// Every setting of an InfoGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoGanSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub layout: LatentLayout,
    pub generator: GeneratorConfig,
    pub discriminator: InfoDiscriminatorConfig,
    /// Adam, one per network.
    pub optimizer: AdamConfig,
    pub lambda_categorical: f64,
    pub lambda_continuous: f64,
    /// D and Q's learning rate; G's is `lr`.
    #[serde(default)]
    pub lr_discriminator: Option<f64>,
}

impl InfoGanSettings {
    /// DCGAN's settings (Adam 2e-4, betas 0.5 / 0.999, epsilon 1e-8) and the paper's latent
    /// layout (62 + 10 + 2) where a flag is absent.
    pub fn new(args: InfoGanArgs) -> Self {
        let layout = LatentLayout::default();
        Self {
            run: RunSettings::new(args.common, 10, 2e-4),
            layout,
            generator: layout.generator(),
            discriminator: layout.discriminator(),
            optimizer: AdamConfig::new()
                .with_beta_1(0.5)
                .with_beta_2(0.999)
                .with_epsilon(1e-8),
            lambda_categorical: args.lambda_categorical,
            lambda_continuous: args.lambda_continuous,
            lr_discriminator: args.lr_discriminator,
        }
    }
}

/// The generator, the discriminator with Q, and their optimizers: one training iteration is
/// [`InfoGan::step`].
pub type InfoGan = Adversarial<Generator, InfoDiscriminator, InfoGanSettings>;

/// The information terms of a batch of fakes: `lambda_cat CE(c) + lambda_cont NLL(u)`, with
/// the two terms, detached, for the metrics.
fn information_loss(
    settings: &InfoGanSettings,
    outputs: &InfoOutputs,
    codes: &Codes,
) -> (Tensor<1>, Tensor<1>, Tensor<1>) {
    let device = outputs.logits.device();
    let categorical = categorical_code_loss(
        outputs.category_logits.clone(),
        codes.one_hot(settings.layout.categories, &device),
    );
    let continuous = continuous_code_loss(
        outputs.continuous_mean.clone(),
        codes.continuous_tensor(&device),
    );
    let total = categorical.clone().mul_scalar(settings.lambda_categorical)
        + continuous.clone().mul_scalar(settings.lambda_continuous);
    (total, categorical.detach(), continuous.detach())
}

impl InfoGan {
    /// Both networks initialised as DCGAN's, each with its own Adam state; `device` should be
    /// an autodiff device.
    pub fn new(settings: &InfoGanSettings, device: &Device) -> Self {
        let players = (
            settings.generator.init(device),
            settings.discriminator.init(device),
        );
        Self::with_players(
            players,
            DISCRIMINATOR,
            || settings.optimizer.init(),
            settings.clone(),
        )
    }

    /// One D step (GAN loss plus the information terms on the detached fakes), then one G step
    /// (non-saturating loss plus the information terms). The codes come from the run's seed and
    /// `step`, z from the device. Returns, detached, the losses, the mean D(x) and D(G(z)), the
    /// two information terms of the G step and the categorical lower bound on I(c; G) in nats.
    pub fn step(&mut self, real: Tensor<4>, step: u64) -> StepMetrics {
        let [batch, ..] = real.dims();
        let device = real.device();
        let settings = self.rule.clone();
        let lr = settings.run.lr;
        let layout = settings.layout;
        let mut rng = StdRng::seed_from_u64(step_seed(settings.run.common.seed, step));
        let codes = layout.sample_codes(batch, &mut rng);
        let noise = device_normal([batch, layout.noise_dim], &device); // [B, 62]
        let fake = self.generator().forward(layout.input(noise, &codes)); // [B, 1, 28, 28]

        // D and Q: tell reals from fakes, and recover the fakes' codes.
        let real_out = self.opponent().forward(real);
        let fake_out = self.opponent().forward(fake.clone().detach());
        let (info_d, _, _) = information_loss(&settings, &fake_out, &codes);
        let loss_d = discriminator_loss(real_out.logits.clone(), fake_out.logits.clone());
        let lr_d = settings.lr_discriminator.unwrap_or(lr);
        self.step_opponent(lr_d, loss_d.clone() + info_d);

        // G: fool D and keep the codes recoverable by Q.
        let out = self.fixed_opponent().forward(fake);
        let (info_g, categorical, continuous) = information_loss(&settings, &out, &codes);
        let loss_g = generator_loss(out.logits, GeneratorLoss::NonSaturating);
        self.step_generator(lr, loss_g.clone() + info_g);

        let bound = categorical
            .clone()
            .neg()
            .add_scalar((layout.categories as f64).ln());
        StepMetrics::new()
            .with("loss_d", loss_d.detach())
            .with("loss_g", loss_g.detach())
            .with("d_real", sigmoid(real_out.logits.detach()).mean())
            .with("d_fake", sigmoid(fake_out.logits.detach()).mean())
            .with("info_categorical", categorical)
            .with("info_continuous", continuous)
            .with("mi_bound", bound)
    }

    /// The generator as an image source, without autodiff.
    fn source(&self) -> InfoGanSource {
        InfoGanSource {
            generator: self.generator().valid(),
            layout: self.rule.layout,
        }
    }
}

impl Trainable for InfoGan {
    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
        InfoGan::step(self, single(batches).images, step)
    }

    /// The code figures and the match of c with the classes, into the run folder.
    fn end_training(&mut self, context: &RunContext) -> Result<()> {
        analyze_source(
            &self.source(),
            context.seed,
            context.device,
            &context.run.root,
        )?;
        Ok(())
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.source()))
    }
}

/// The trained generator of a run, the categorical code in turn.
pub fn open_source(run: &RunFolder, _options: &SourceOptions, device: &Device) -> Opened {
    Ok(Box::new(open_generator(run, device)?))
}

fn open_generator(run: &RunFolder, device: &Device) -> Result<InfoGanSource> {
    let generator = run.load(GENERATOR, |config: GeneratorConfig| config.init(device))?;
    let settings: InfoGanSettings = run.settings()?;
    Ok(InfoGanSource {
        generator,
        layout: settings.layout,
    })
}

/// Trains InfoGAN with `settings`, writing grids, metrics, checkpoints and, at the end, the code
/// figures and `infogan.json`.
pub fn train(settings: &InfoGanSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::MinusOneToOne);
    fit(&plan, settings, |device| Ok(InfoGan::new(settings, device)))
}

/// The flags of `analyze`.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/infogan")]
    pub from: PathBuf,
    /// Seed of the noise and the codes.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// How far the categorical code matches the classes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeMatch {
    /// Samples drawn, an equal share for each value of c.
    pub samples: usize,
    /// `confusion[c][class]`: samples drawn with code c that the classifier puts in `class`.
    pub confusion: Vec<Vec<usize>>,
    /// The class assigned to each value of c by the best one-to-one matching.
    pub assignment: Vec<usize>,
    /// The share of samples whose class is the one assigned to their code.
    pub accuracy: f64,
}

/// `analyze`: the code figures and `infogan.json` of a run's latest checkpoint, into its folder.
pub fn analyze(args: &AnalyzeArgs) -> Result<CodeMatch> {
    let (run, device) = open_for_analysis(MODEL, &args.from, args.backend)?;
    let source = open_generator(&run, &device)?;
    analyze_source(&source, args.seed, &device, &run.root)
}

/// Writes `categorical.png`, `continuous_<k>.png` and `infogan.json` into `dir`; returns the
/// match of the categorical code with the classes.
fn analyze_source(
    source: &InfoGanSource,
    seed: u64,
    device: &Device,
    dir: &Path,
) -> Result<CodeMatch> {
    let layout = source.layout;
    let noise = seeded_normal([FIGURE_COLUMNS, layout.noise_dim], seed, device);
    let rows = layout.categories;
    // Row r is c = r; column j is noise j; the continuous codes are 0.
    let grid_noise = noise.clone().repeat_dim(0, rows); // [rows * columns, 62]
    let categories = |rows: usize, columns: usize| -> Vec<usize> {
        (0..rows * columns).map(|i| i / columns).collect()
    };
    let codes = Codes {
        categories: categories(rows, FIGURE_COLUMNS),
        continuous: vec![0.0; rows * FIGURE_COLUMNS * layout.continuous],
    };
    let path = dir.join("categorical.png");
    save_grid(
        source.generate(grid_noise, &codes),
        FIGURE_COLUMNS,
        PixelScale::MinusOneToOne,
        &path,
    )?;
    println!("  categorical.png   one row per value of c, z fixed per column");

    // One row per value of c, the first noise vector; code k swept from -2 to 2 along the row.
    let sweep_noise = noise.narrow(0, 0, 1).repeat_dim(0, rows * SWEEP_STEPS);
    for k in 0..layout.continuous {
        let mut continuous = vec![0.0f32; rows * SWEEP_STEPS * layout.continuous];
        for i in 0..rows * SWEEP_STEPS {
            let value = -2.0 + 4.0 * (i % SWEEP_STEPS) as f32 / (SWEEP_STEPS - 1) as f32;
            continuous[i * layout.continuous + k] = value;
        }
        let codes = Codes {
            categories: categories(rows, SWEEP_STEPS),
            continuous,
        };
        let path = dir.join(format!("continuous_{k}.png"));
        let images = source.generate(sweep_noise.clone(), &codes);
        save_grid(images, SWEEP_STEPS, PixelScale::MinusOneToOne, &path)?;
        println!("  continuous_{k}.png  code {k} from -2 to 2 along each row (one row per c)");
    }

    let matched = match_codes_with_classes(source, seed, device)?;
    let path = dir.join("infogan.json");
    write_atomic(&path, serde_json::to_string_pretty(&matched)?.as_bytes())?;
    println!(
        "{MODEL}: c matches the classes with accuracy {:.4} (best one-to-one assignment over {} samples): {}",
        matched.accuracy,
        matched.samples,
        path.display()
    );
    Ok(matched)
}

/// Draws [`MATCH_SAMPLES`] images (c in turn), has the classifier label them, and matches the
/// codes with the classes.
fn match_codes_with_classes(
    source: &InfoGanSource,
    seed: u64,
    device: &Device,
) -> Result<CodeMatch> {
    let classifier = FeatureNetwork::load(device)?;
    let categories = source.layout.categories;
    let mut confusion = vec![vec![0usize; NUM_CLASSES]; categories];
    let batch = 500;
    for (index, start) in (0..MATCH_SAMPLES).step_by(batch).enumerate() {
        let count = batch.min(MATCH_SAMPLES - start);
        let drawn = source.draw(count, seed.wrapping_add(2 * index as u64), device);
        let pixels = to_bytes(drawn.images, PixelRange::MinusOneToOne)?;
        let (_, classes) = classifier.score(&pixels)?;
        let codes = source.codes(count, 0).categories; // c in turn from 0
        for (c, class) in codes.into_iter().zip(classes) {
            confusion[c][class] += 1;
        }
    }
    let (assignment, matched) = best_assignment(&confusion);
    Ok(CodeMatch {
        samples: MATCH_SAMPLES,
        accuracy: matched as f64 / MATCH_SAMPLES as f64,
        confusion,
        assignment,
    })
}

/// The one-to-one assignment of rows (codes) to columns (classes) that maximises the counts on
/// it (Kuhn-Munkres), and that total. Needs no more rows than columns.
pub fn best_assignment(confusion: &[Vec<usize>]) -> (Vec<usize>, usize) {
    let weights = Matrix::from_rows(
        confusion
            .iter()
            .map(|row| row.iter().map(|&n| n as i64).collect::<Vec<_>>()),
    )
    .expect("rows of equal length");
    let (total, assignment) = kuhn_munkres(&weights);
    (assignment, total as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_flags;
    use genmodels::infogan::categorical_information_bound;

    #[test]
    fn the_hungarian_assignment_of_a_hand_made_confusion_matrix() {
        // The greedy choice (row 0 -> column 0, 9 samples) forces row 1 onto column 2 (1): 10.
        // The best matching is row 0 -> column 1 and row 1 -> column 0: 8 + 7 = 15, row 2 -> 2.
        let confusion = vec![vec![9, 8, 0], vec![7, 0, 1], vec![0, 1, 5]];
        let (assignment, total) = best_assignment(&confusion);
        assert_eq!(assignment, [1, 0, 2]);
        assert_eq!(total, 20);
        // Fewer codes than classes: each code still gets a class of its own.
        let (assignment, total) = best_assignment(&[vec![1, 6, 2], vec![0, 5, 4]]);
        assert_eq!(assignment, [1, 2]);
        assert_eq!(total, 10);
    }

    #[test]
    fn steps_raise_the_information_bound_from_chance() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let args = parse_flags::<InfoGanArgs>("--lr 1e-3".split_whitespace()).unwrap();
        let settings = InfoGanSettings::new(args);
        let mut model = InfoGan::new(&settings, &device);
        let real = Tensor::<4>::random(
            [16, 1, 28, 28],
            burn::tensor::Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        // The bound of the untrained networks: Q guesses the code no better than chance.
        let layout = settings.layout;
        let mut rng = StdRng::seed_from_u64(9);
        let codes = layout.sample_codes(64, &mut rng);
        let noise = device_normal([64, layout.noise_dim], &device);
        let outputs = model
            .opponent()
            .forward(model.generator().forward(layout.input(noise, &codes)));
        let cross_entropy = categorical_code_loss(
            outputs.category_logits,
            codes.one_hot(layout.categories, &device),
        );
        let untrained =
            categorical_information_bound(10, cross_entropy.into_scalar::<f32>() as f64);
        assert!(untrained.abs() < 0.2, "untrained bound {untrained}");

        let mut bounds = Vec::new();
        for step in 1..=30 {
            let metrics = model.step(real.clone(), step);
            bounds.push(
                metrics
                    .value("mi_bound")
                    .unwrap()
                    .clone()
                    .into_scalar::<f32>(),
            );
        }
        let last = bounds[25..].iter().sum::<f32>() / 5.0;
        assert!(last > 0.5, "bound {untrained} -> {last}: {bounds:?}");
        assert!(
            last <= (10f32).ln() + 1e-4,
            "the bound is at most ln 10: {last}"
        );
    }
}
