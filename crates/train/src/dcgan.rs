//! Training a DCGAN on Fashion-MNIST: one discriminator step, then one generator step, per batch.

use crate::adam::AdamConfig;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::dcgan::{
    DISCRIMINATOR, Discriminator, DiscriminatorConfig, GENERATOR, Generator, GeneratorConfig,
};
use genmodels::gan_loss::{GeneratorLoss, discriminator_loss, generator_loss};
use genmodels_data::{Batch, PixelRange};
use serde::{Deserialize, Serialize};

use crate::adversarial::Adversarial;
use crate::cli::CommonArgs;
use crate::fit::{FitPlan, RunSettings, StepMetrics, Trainable, fit, single};
use crate::registry::{Opened, SourceOptions};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "dcgan";

/// The generator's objective, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GeneratorLossArg {
    /// -log D(G(z)): strong gradients early on.
    NonSaturating,
    /// log(1 - D(G(z))), the original objective.
    Minimax,
}

impl From<GeneratorLossArg> for GeneratorLoss {
    fn from(arg: GeneratorLossArg) -> Self {
        match arg {
            GeneratorLossArg::NonSaturating => GeneratorLoss::NonSaturating,
            GeneratorLossArg::Minimax => GeneratorLoss::Minimax,
        }
    }
}

/// The flags of a DCGAN run.
#[derive(Debug, Clone, clap::Args)]
pub struct DcganArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Generator objective: non-saturating -log D(G(z)), or the original log(1 - D(G(z))).
    #[arg(long, value_enum, default_value = "non-saturating")]
    pub g_loss: GeneratorLossArg,
}

/// Every setting of a DCGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DcganSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
    /// Adam, one per network.
    pub optimizer: AdamConfig,
    pub g_loss: GeneratorLoss,
}

impl DcganSettings {
    /// The paper's settings (Adam 2e-4, betas 0.5 / 0.999, epsilon 1e-8) where a flag is absent.
    pub fn new(args: DcganArgs) -> Self {
        Self {
            run: RunSettings::new(args.common, 10, 2e-4),
            generator: GeneratorConfig::new(),
            discriminator: DiscriminatorConfig::new(),
            optimizer: AdamConfig::new()
                .with_beta_1(0.5)
                .with_beta_2(0.999)
                .with_epsilon(1e-8),
            g_loss: args.g_loss.into(),
        }
    }
}

/// The DCGAN's generator and discriminator with their optimizers: one training iteration is
/// [`Dcgan::step`].
pub type Dcgan = Adversarial<Generator, Discriminator, DcganSettings>;

impl Dcgan {
    /// Both networks initialised as the paper (N(0, 0.02) weights), each with its own Adam
    /// state; `device` should be an autodiff device.
    pub fn new(settings: &DcganSettings, device: &Device) -> Self {
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

    /// One D step on `real` and fresh fakes, then one G step. Returns, detached, the losses
    /// and the mean D(x) and D(G(z)).
    pub fn step(&mut self, real: Tensor<4>) -> StepMetrics {
        let [batch, ..] = real.dims();
        let device = real.device();
        let lr = self.rule.run.lr;
        let z = self.generator().sample_latent(batch, &device); // [B, 100]
        let fake = self.generator().forward(z); // [B, 1, 28, 28]

        // Discriminator: minimise -E[log D(x)] - E[log(1 - D(G(z)))]; G is held fixed.
        let real_logits = self.opponent().forward(real); // [B, 1]
        let fake_logits = self.opponent().forward(fake.clone().detach()); // [B, 1]
        let loss_d = discriminator_loss(real_logits.clone(), fake_logits.clone());
        self.step_opponent(lr, loss_d.clone());

        // Generator: against the updated discriminator, as in Goodfellow et al.'s Algorithm 1.
        let loss_g = generator_loss(self.fixed_opponent().forward(fake), self.rule.g_loss);
        self.step_generator(lr, loss_g.clone());

        StepMetrics::new()
            .with("loss_d", loss_d.detach())
            .with("loss_g", loss_g.detach())
            .with("d_real", sigmoid(real_logits.detach()).mean())
            .with("d_fake", sigmoid(fake_logits.detach()).mean())
    }
}

impl Trainable for Dcgan {
    fn step(&mut self, batches: Vec<Batch>, _step: u64) -> StepMetrics {
        Dcgan::step(self, single(batches).images)
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.generator().valid()))
    }
}

/// The trained generator of a DCGAN (or WGAN) run.
pub fn open_source(run: &RunFolder, _options: &SourceOptions, device: &Device) -> Opened {
    let generator = run.load(GENERATOR, |config: GeneratorConfig| config.init(device))?;
    Ok(Box::new(generator))
}

/// Trains a DCGAN with `settings`, writing grids, metrics and checkpoints into the run folder.
pub fn train(settings: &DcganSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::MinusOneToOne);
    fit(&plan, settings, |device| Ok(Dcgan::new(settings, device)))
}
