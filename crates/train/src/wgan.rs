//! Training a Wasserstein GAN on Fashion-MNIST: `n_critic` critic steps, each on its own batch,
//! then one generator step. WGAN keeps the critic Lipschitz by clipping its weights, WGAN-GP by
//! the gradient penalty of [`genmodels::wgan`], WGAN-CT by the penalty and the consistency term,
//! with dropout in every pass of the critic.

use anyhow::Result;
use burn::module::Module;
use burn::optim::{ModuleOptimizer, RmsPropConfig};

use crate::adam::AdamConfig;
use burn::tensor::{Device, Distribution, Tensor};
use genmodels::ImageSource;
use genmodels::dcgan::{Generator, GeneratorConfig};
use genmodels::wgan::{
    CRITIC, Critic, CriticConfig, DropoutMasks, consistency_term, critic_loss, gradient_penalty,
    interpolate, wasserstein_generator_loss,
};
use genmodels_data::{Batch, PixelRange};
use serde::{Deserialize, Serialize};

use crate::adversarial::Adversarial;
use crate::cli::{CommonArgs, parse_non_negative_f64, parse_positive_f64};
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
    /// Wei et al. (2018): WGAN-GP with dropout in the critic and the consistency term between
    /// two dropout passes over each real image.
    WganCt,
}

impl WganLoss {
    /// The model name: the run folder and the checkpoints' owner.
    pub fn model(self) -> &'static str {
        match self {
            WganLoss::Wgan => "wgan",
            WganLoss::WganGp => "wgan-gp",
            WganLoss::WganCt => "wgan-ct",
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
    /// wgan-gp and wgan-ct: the penalty weight lambda.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    pub gp_lambda: f64,
    /// wgan-ct: the consistency term's weight lambda_2.
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub ct_lambda: f64,
    /// wgan-ct: the consistency term's margin M'.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub ct_margin: f64,
    /// wgan-ct: the dropout probability after each hidden layer of the critic.
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true, value_parser = parse_dropout)]
    pub dropout: f64,
}

fn parse_dropout(text: &str) -> Result<f64, String> {
    let p = crate::cli::parse_probability(text)?;
    if p < 1.0 {
        Ok(p)
    } else {
        Err(format!("must be below 1 (1 drops every unit), got {text}"))
    }
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
    /// WGAN-GP and WGAN-CT: the penalty weight lambda.
    pub gp_lambda: f64,
    /// WGAN-CT: the consistency term's weight lambda_2 and margin M', and the critic's dropout
    /// probability (0 in the settings of runs older than WGAN-CT).
    #[serde(default)]
    pub ct_lambda: f64,
    #[serde(default)]
    pub ct_margin: f64,
    #[serde(default)]
    pub dropout: f64,
    pub generator: GeneratorConfig,
    pub critic: CriticConfig,
    pub optimizer: WganOptimizer,
}

impl WganSettings {
    /// The papers' settings where a flag is absent: WGAN RMSprop 5e-5 (PyTorch's smoothing
    /// 0.99, no momentum), c = 0.01; WGAN-GP Adam 1e-4 with betas (0.5, 0.9), lambda = 10;
    /// WGAN-CT the same with lambda_2 = 2, M' = 0 and dropout 0.5; 5 critic steps per generator
    /// step for all; epsilon 1e-8.
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
            WganLoss::WganGp | WganLoss::WganCt => (
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
            ct_lambda: args.ct_lambda,
            ct_margin: args.ct_margin,
            dropout: if args.loss == WganLoss::WganCt {
                args.dropout
            } else {
                0.0
            },
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

    /// Dropout masks for a pass of `batch` images through the critic: fresh ones for WGAN-CT,
    /// none otherwise.
    fn masks(&self, batch: usize, device: &Device) -> Option<DropoutMasks> {
        (self.rule.loss == WganLoss::WganCt)
            .then(|| DropoutMasks::draw(self.opponent(), batch, self.rule.dropout, device))
    }

    /// One critic step on `real` and fresh fakes. Returns, detached, `[critic loss (with the
    /// penalty and the consistency term), E[f(x)] - E[f(G(z))], mean ||grad f(x^)||, penalty,
    /// consistency term]`.
    fn critic_step(&mut self, real: Tensor<4>) -> Tensor<1> {
        let settings = self.rule.clone();
        let [batch, ..] = real.dims();
        let device = real.device();
        let z = self.generator().sample_latent(batch, &device);
        let fake = self.generator().forward(z).detach();
        let real_pass = self
            .opponent()
            .pass(real.clone(), self.masks(batch, &device).as_ref());
        let fake_scores = self
            .opponent()
            .pass(fake.clone(), self.masks(batch, &device).as_ref())
            .scores;
        let loss = critic_loss(real_pass.scores.clone(), fake_scores);
        let estimate = loss.clone().detach().neg();
        let mix = Tensor::<1>::random([batch], Distribution::Uniform(0.0, 1.0), &device);
        let x_hat = interpolate(real.clone(), fake, mix);
        let x_hat_masks = self.masks(batch, &device);
        let input_gradient = self
            .opponent()
            .input_gradient_masked(x_hat, x_hat_masks.as_ref());
        let zero = || Tensor::<1>::zeros([1], &device);
        let (loss, norms, penalty, consistency) = match settings.loss {
            WganLoss::Wgan => {
                // Only reported: the gradient norm the clipping is meant to bound.
                let gp = gradient_penalty(input_gradient.detach(), 1.0);
                (loss, gp.norms, zero(), zero())
            }
            WganLoss::WganGp => {
                let gp = gradient_penalty(input_gradient, settings.gp_lambda);
                (
                    loss + gp.penalty.clone(),
                    gp.norms,
                    gp.penalty.detach(),
                    zero(),
                )
            }
            WganLoss::WganCt => {
                let gp = gradient_penalty(input_gradient, settings.gp_lambda);
                // A second dropout pass over the same real images: x''.
                let second = self
                    .opponent()
                    .pass(real, self.masks(batch, &device).as_ref());
                let ct = consistency_term(&real_pass, &second, settings.ct_margin);
                let total = loss + gp.penalty.clone() + ct.clone().mul_scalar(settings.ct_lambda);
                (total, gp.norms, gp.penalty.detach(), ct.detach())
            }
        };
        self.step_opponent(settings.run.lr, loss.clone());
        if settings.loss == WganLoss::Wgan {
            self.map_opponent(|critic| critic.clip_weights(settings.clip));
        }
        Tensor::cat(
            vec![
                loss.detach(),
                estimate,
                norms.detach().mean(),
                penalty,
                consistency,
            ],
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
        let masks = self.masks(batch, &device);
        let fake_scores = self
            .fixed_opponent()
            .pass(self.generator().forward(z), masks.as_ref())
            .scores;
        let loss_g = wasserstein_generator_loss(fake_scores);
        self.step_generator(self.rule.run.lr, loss_g.clone());

        let metrics = StepMetrics::new()
            .with("loss_critic", means.clone().narrow(0, 0, 1))
            .with("loss_g", loss_g.detach())
            .with("wasserstein", means.clone().narrow(0, 1, 1))
            .with("grad_norm", means.clone().narrow(0, 2, 1))
            .with("penalty", means.clone().narrow(0, 3, 1));
        match self.rule.loss {
            WganLoss::WganCt => metrics.with("consistency", means.narrow(0, 4, 1)),
            _ => metrics,
        }
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
