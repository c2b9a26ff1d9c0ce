//! Training a conditional GAN on Fashion-MNIST.
//!
//! Each step is DCGAN's (one D step, then one G step), with both players given the class: the
//! real images carry their labels, and the generated batch uses the same labels, so fakes and
//! reals have the same class mix.

use crate::adam::AdamConfig;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor};
use genmodels::ImageSource;
use genmodels::cgan::{
    ConditionalDiscriminator, ConditionalDiscriminatorConfig, ConditionalGenerator,
    ConditionalGeneratorConfig, DISCRIMINATOR, GENERATOR,
};
use genmodels::checkpoint::RunFolder;
use genmodels::gan_loss::{GeneratorLoss, discriminator_loss, generator_loss, mode_seeking_loss};
use genmodels_data::{Batch, CLASS_NAMES, NUM_CLASSES, PixelRange};
use serde::{Deserialize, Serialize};

use crate::adversarial::Adversarial;
use crate::cli::{CommonArgs, parse_non_negative_f64};
use crate::fit::{FitPlan, RunSettings, StepMetrics, Trainable, fit, single};
use crate::registry::{Opened, SourceOptions};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "cgan";

/// The flags of a conditional GAN run.
#[derive(Debug, Clone, clap::Args)]
pub struct CganArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Weight λ of the mode-seeking term (Mao et al., 2019) in the generator's loss, which keeps
    /// the generator from ignoring z; 0 trains the plain conditional GAN.
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative_f64)]
    pub mode_seeking: f64,
}

/// Every setting of a conditional GAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CganSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub generator: ConditionalGeneratorConfig,
    pub discriminator: ConditionalDiscriminatorConfig,
    /// Adam, one per network.
    pub optimizer: AdamConfig,
    /// Weight λ of the mode-seeking term in G's loss ([`mode_seeking_loss`]); 0 for the plain
    /// cGAN.
    pub mode_seeking: f64,
}

impl CganSettings {
    /// DCGAN's settings (Adam 2e-4, betas 0.5 / 0.999, epsilon 1e-8) where a flag is absent,
    /// a 50-wide label embedding, and the mode-seeking weight λ.
    pub fn new(args: CganArgs) -> Self {
        Self {
            run: RunSettings::new(args.common, 10, 2e-4),
            generator: ConditionalGeneratorConfig::new()
                .with_num_classes(NUM_CLASSES)
                .with_latent_dim(100)
                .with_embedding_dim(50),
            discriminator: ConditionalDiscriminatorConfig::new().with_num_classes(NUM_CLASSES),
            optimizer: AdamConfig::new()
                .with_beta_1(0.5)
                .with_beta_2(0.999)
                .with_epsilon(1e-8),
            mode_seeking: args.mode_seeking,
        }
    }
}

/// The two networks and their optimizers: one training iteration is [`Cgan::step`].
pub type Cgan = Adversarial<ConditionalGenerator, ConditionalDiscriminator, CganSettings>;

impl Cgan {
    /// The conditional generator and discriminator, freshly initialised, with an Adam state
    /// each (`device` should be an autodiff device).
    pub fn new(settings: &CganSettings, device: &Device) -> Self {
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

    /// One D step on `(real, labels)` and as many fakes, then one G step. Returns, detached,
    /// the losses, the mean D(x, y) and D(G(z, y), y), and the mode-seeking term.
    ///
    /// The fakes take the real batch's labels, except with the mode-seeking term: then the
    /// second half of the fakes repeats the first half's labels with its own z, so that fakes
    /// `i` and `i + B/2` form the pairs of [`mode_seeking_loss`].
    pub fn step(&mut self, real: Tensor<4>, labels: Tensor<1, Int>) -> StepMetrics {
        let (lr, mode_seeking_weight) = (self.rule.run.lr, self.rule.mode_seeking);
        let [batch, ..] = real.dims();
        let device = real.device();
        let half = batch / 2;
        let seek_modes = mode_seeking_weight > 0.0 && half > 0;
        let fake_labels = if seek_modes {
            let first = labels.clone().slice(0..half);
            let rest = labels.clone().slice(2 * half..batch);
            Tensor::cat(vec![first.clone(), first, rest], 0)
        } else {
            labels.clone()
        };
        let z = self.generator().sample_latent(batch, &device);
        let fake = self.generator().forward(z.clone(), fake_labels.clone());

        let real_logits = self.opponent().forward(real, labels);
        let fake_logits = self
            .opponent()
            .forward(fake.clone().detach(), fake_labels.clone());
        let loss_d = discriminator_loss(real_logits.clone(), fake_logits.clone());
        self.step_opponent(lr, loss_d.clone());

        let loss_g = generator_loss(
            self.fixed_opponent().forward(fake.clone(), fake_labels),
            GeneratorLoss::NonSaturating,
        );
        let mode_seeking = if seek_modes {
            mode_seeking_loss(
                fake.clone().slice(0..half),
                fake.slice(half..2 * half),
                z.clone().slice(0..half),
                z.slice(half..2 * half),
            )
        } else {
            Tensor::zeros([1], &device)
        };
        let total = loss_g.clone() + mode_seeking.clone().mul_scalar(mode_seeking_weight);
        self.step_generator(lr, total);

        StepMetrics::new()
            .with("loss_d", loss_d.detach())
            .with("loss_g", loss_g.detach())
            .with("d_real", sigmoid(real_logits.detach()).mean())
            .with("d_fake", sigmoid(fake_logits.detach()).mean())
            .with("mode_seeking", mode_seeking.detach())
    }
}

impl Trainable for Cgan {
    fn step(&mut self, batches: Vec<Batch>, _step: u64) -> StepMetrics {
        let batch = single(batches);
        Cgan::step(self, batch.images, batch.labels)
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.generator().valid()))
    }
}

/// The trained generator of a run: the classes in turn, or only `options.class`.
pub fn open_source(run: &RunFolder, options: &SourceOptions, device: &Device) -> Opened {
    let generator = run.load(GENERATOR, |config: ConditionalGeneratorConfig| {
        config.init(device)
    })?;
    match options.class {
        None => Ok(Box::new(generator)),
        Some(class) if class < NUM_CLASSES => Ok(Box::new(generator.into_class(class))),
        Some(class) => bail!(
            "--class {class}: the classes are 0 to {} ({})",
            NUM_CLASSES - 1,
            CLASS_NAMES.join(", ")
        ),
    }
}

/// Trains a conditional GAN with `settings`, writing per-class grids, metrics and checkpoints.
pub fn train(settings: &CganSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::MinusOneToOne);
    fit(&plan, settings, |device| Ok(Cgan::new(settings, device)))
}
