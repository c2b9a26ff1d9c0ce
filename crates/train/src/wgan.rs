//! Training a Wasserstein GAN on Fashion-MNIST: `n_critic` critic steps, each on its own batch,
//! then one generator step. WGAN keeps the critic Lipschitz by clipping its weights, WGAN-GP by
//! the gradient penalty of [`genmodels::wgan`].

use anyhow::Result;
use burn::module::Module;
use burn::optim::{AdamConfig, ModuleOptimizer, RmsPropConfig};
use burn::tensor::{Device, Distribution, Tensor};
use genmodels::ImageSource;
use genmodels::dcgan::{Generator, GeneratorConfig};
use genmodels::wgan::{
    CRITIC, Critic, CriticConfig, critic_loss, gradient_penalty, interpolate,
    wasserstein_generator_loss,
};
use genmodels_data::{Batch, PixelRange};
use serde::{Deserialize, Serialize};

use crate::adversarial::Adversarial;
use crate::cli::{CommonArgs, parse_positive_f64};
use crate::fit::{FitPlan, RunSettings, StepMetrics, Trainable, fit};
use crate::summary::TrainSummary;

/// How the critic is kept 1-Lipschitz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WganLoss {
    /// Arjovsky et al. (2017): weights clipped to [-c, c] after each critic step, RMSprop.
    Wgan,
    /// Gulrajani et al. (2017): the gradient penalty at interpolates, Adam.
    WganGp,
}

impl WganLoss {
    /// The model name: the run folder and the checkpoints' owner.
    pub fn model(self) -> &'static str {
        match self {
            WganLoss::Wgan => "wgan",
            WganLoss::WganGp => "wgan-gp",
        }
    }
}

/// The flags of a WGAN run.
#[derive(Debug, Clone, clap::Args)]
pub struct WganArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// wgan: weight clipping and RMSprop 5e-5; wgan-gp: gradient penalty and Adam 1e-4.
    #[arg(long, value_enum, default_value = "wgan-gp")]
    pub loss: WganLoss,
    /// Critic steps (each on its own batch) per generator step.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub n_critic: u64,
    /// wgan: clip every critic weight to [-c, c].
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    pub clip: f64,
    /// wgan-gp: the penalty weight lambda.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    pub gp_lambda: f64,
}

/// The optimizer of both networks: RMSprop for WGAN, Adam for WGAN-GP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WganOptimizer {
    Rmsprop(RmsPropConfig),
    Adam(AdamConfig),
}

impl WganOptimizer {
    fn init(&self) -> ModuleOptimizer {
        match self {
            Self::Rmsprop(config) => config.init(),
            Self::Adam(config) => config.init(),
        }
    }
}

/// Every setting of a WGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WganSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub loss: WganLoss,
    /// Critic steps per generator step.
    pub n_critic: usize,
    /// WGAN: the clipping range c.
    pub clip: f64,
    /// WGAN-GP: the penalty weight lambda.
    pub gp_lambda: f64,
    pub generator: GeneratorConfig,
    pub critic: CriticConfig,
    pub optimizer: WganOptimizer,
}

impl WganSettings {
    /// The papers' settings where a flag is absent: WGAN RMSprop 5e-5 (PyTorch's smoothing
    /// 0.99, no momentum), c = 0.01; WGAN-GP Adam 1e-4 with betas (0.5, 0.9), lambda = 10; 5
    /// critic steps per generator step for both; epsilon 1e-8.
    pub fn new(args: WganArgs) -> Self {
        let common = args.common;
        let (lr, optimizer) = match args.loss {
            WganLoss::Wgan => (
                5e-5,
                WganOptimizer::Rmsprop(
                    RmsPropConfig::new()
                        .with_alpha(0.99)
                        .with_momentum(0.0)
                        .with_epsilon(1e-8),
                ),
            ),
            WganLoss::WganGp => (
                1e-4,
                WganOptimizer::Adam(
                    AdamConfig::new()
                        .with_beta_1(0.5)
                        .with_beta_2(0.9)
                        .with_epsilon(1e-8),
                ),
            ),
        };
        Self {
            run: RunSettings::new(common, 20, lr),
            loss: args.loss,
            n_critic: args.n_critic as usize,
            clip: args.clip,
            gp_lambda: args.gp_lambda,
            generator: GeneratorConfig::new(),
            critic: CriticConfig::new(),
            optimizer,
        }
    }
}

/// The generator, the critic and their optimizers: one training iteration is [`Wgan::step`].
pub type Wgan = Adversarial<Generator, Critic, WganSettings>;

impl Wgan {
    /// Fresh networks; the critic's and the generator's optimizer is RMSprop for the clipped
    /// WGAN and Adam for WGAN-GP. `device` should be an autodiff device.
    pub fn new(settings: &WganSettings, device: &Device) -> Self {
        let players = (
            settings.generator.init(device),
            settings.critic.init(device),
        );
        Self::with_players(
            players,
            CRITIC,
            || settings.optimizer.init(),
            settings.clone(),
        )
    }

    /// One critic step on `real` and fresh fakes. Returns, detached, `[critic loss (with the
    /// penalty), E[f(x)] - E[f(G(z))], mean ||grad f(x^)||, penalty]`.
    fn critic_step(&mut self, real: Tensor<4>) -> Tensor<1> {
        let settings = self.rule.clone();
        let [batch, ..] = real.dims();
        let device = real.device();
        let z = self.generator().sample_latent(batch, &device);
        let fake = self.generator().forward(z).detach();
        let loss = critic_loss(
            self.opponent().forward(real.clone()),
            self.opponent().forward(fake.clone()),
        );
        let estimate = loss.clone().detach().neg();
        let mix = Tensor::<1>::random([batch], Distribution::Uniform(0.0, 1.0), &device);
        let x_hat = interpolate(real, fake, mix);
        let (loss, norms, penalty) = match settings.loss {
            WganLoss::WganGp => {
                let gp =
                    gradient_penalty(self.opponent().input_gradient(x_hat), settings.gp_lambda);
                (loss + gp.penalty.clone(), gp.norms, gp.penalty.detach())
            }
            WganLoss::Wgan => {
                // Only reported: the gradient norm the clipping is meant to bound.
                let gp = gradient_penalty(self.opponent().input_gradient(x_hat).detach(), 1.0);
                (loss, gp.norms, Tensor::zeros([1], &device))
            }
        };
        self.step_opponent(settings.run.lr, loss.clone());
        if settings.loss == WganLoss::Wgan {
            self.map_opponent(|critic| critic.clip_weights(settings.clip));
        }
        Tensor::cat(
            vec![loss.detach(), estimate, norms.detach().mean(), penalty],
            0,
        )
    }

    /// `n_critic` critic steps, one per batch of `reals`, then one generator step minimising
    /// `-E[f(G(z))]`. Returns, detached and averaged over the critic steps, the critic's loss,
    /// the generator's, the Wasserstein estimate, the mean gradient norm and the penalty.
    pub fn step(&mut self, reals: Vec<Tensor<4>>) -> StepMetrics {
        let critic_steps = reals.len();
        let [batch, ..] = reals[0].dims();
        let device = reals[0].device();
        let mut sums: Option<Tensor<1>> = None;
        for real in reals {
            let values = self.critic_step(real);
            sums = Some(match sums {
                Some(s) => s + values,
                None => values,
            });
        }
        let means = sums
            .expect("at least one critic step")
            .div_scalar(critic_steps as f64);

        let z = self.generator().sample_latent(batch, &device);
        let loss_g =
            wasserstein_generator_loss(self.opponent().forward(self.generator().forward(z)));
        self.step_generator(self.rule.run.lr, loss_g.clone());

        StepMetrics::new()
            .with("loss_critic", means.clone().narrow(0, 0, 1))
            .with("loss_g", loss_g.detach())
            .with("wasserstein", means.clone().narrow(0, 1, 1))
            .with("grad_norm", means.clone().narrow(0, 2, 1))
            .with("penalty", means.narrow(0, 3, 1))
    }
}

impl Trainable for Wgan {
    fn batches_per_step(&self) -> usize {
        self.rule.n_critic
    }

    fn step(&mut self, batches: Vec<Batch>, _step: u64) -> StepMetrics {
        Wgan::step(
            self,
            batches.into_iter().map(|batch| batch.images).collect(),
        )
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.generator().valid()))
    }
}

/// Trains a WGAN or WGAN-GP with `settings`, writing grids, metrics and checkpoints into the run
/// folder. A step is one generator update after `n_critic` critic updates on as many batches.
pub fn train(settings: &WganSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(
        settings.loss.model(),
        &settings.run,
        PixelRange::MinusOneToOne,
    );
    fit(&plan, settings, |device| Ok(Wgan::new(settings, device)))
}
