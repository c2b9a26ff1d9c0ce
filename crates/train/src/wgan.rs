//! Training a Wasserstein GAN on Fashion-MNIST: `n_critic` critic steps, each on its own batch,
//! then one generator step. WGAN keeps the critic Lipschitz by clipping its weights, WGAN-GP by
//! the gradient penalty of [`genmodels::wgan`].

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, RmsPropConfig};
use burn::tensor::{Device, Distribution, Tensor};
use genmodels::wgan::{
    Critic, CriticConfig, critic_loss, gradient_penalty, interpolate, wasserstein_generator_loss,
};
use genmodels::{Generator, GeneratorConfig};
use genmodels_data::{BatchLoader, PixelRange};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, TrainingState};
use crate::cli::CommonArgs;
use crate::eval::FidMonitor;
use crate::grid::{PixelScale, save_grid};
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite, fixed_normal};
use crate::summary::TrainSummary;

const METRICS: [&str; 9] = [
    "step",
    "epoch",
    "loss_critic",
    "loss_g",
    "wasserstein",
    "grad_norm",
    "penalty",
    "images_per_sec",
    "elapsed_s",
];
/// Images in the 8x8 sample grid.
const GRID: usize = 64;

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

/// Every setting of a WGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WganSettings {
    pub common: CommonArgs,
    pub loss: WganLoss,
    pub epochs: usize,
    pub lr: f64,
    /// Critic steps per generator step.
    pub n_critic: usize,
    /// WGAN: the clipping range c.
    pub clip: f64,
    /// WGAN-GP: the penalty weight lambda.
    pub gp_lambda: f64,
    /// WGAN-GP: Adam's betas and epsilon.
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// WGAN: RMSprop's smoothing constant (PyTorch's default) and epsilon; no momentum.
    pub rmsprop_alpha: f64,
    pub latent_dim: usize,
}

impl WganSettings {
    /// The papers' settings where a flag is absent: WGAN RMSprop 5e-5, c = 0.01; WGAN-GP Adam
    /// 1e-4 with betas (0.5, 0.9), lambda = 10; 5 critic steps per generator step for both.
    pub fn from_args(common: CommonArgs, loss: WganLoss) -> Self {
        let lr = match loss {
            WganLoss::Wgan => 5e-5,
            WganLoss::WganGp => 1e-4,
        };
        Self {
            epochs: common.epochs.unwrap_or(20),
            lr: common.lr.unwrap_or(lr),
            common,
            loss,
            n_critic: 5,
            clip: 0.01,
            gp_lambda: 10.0,
            beta1: 0.5,
            beta2: 0.9,
            epsilon: 1e-8,
            rmsprop_alpha: 0.99,
            latent_dim: 100,
        }
    }
}

/// The generator, the critic and their optimizers: one training iteration is [`Wgan::step`].
pub struct Wgan {
    pub generator: Generator,
    pub critic: Critic,
    optim_g: ModuleOptimizer,
    optim_c: ModuleOptimizer,
}

impl Wgan {
    /// Freshly initialised networks and optimizer states (`device` should be an autodiff device).
    pub fn new(settings: &WganSettings, device: &Device) -> Self {
        let optimizer = || match settings.loss {
            WganLoss::Wgan => RmsPropConfig::new()
                .with_alpha(settings.rmsprop_alpha as f32)
                .with_momentum(0.0)
                .with_epsilon(settings.epsilon as f32)
                .init(),
            WganLoss::WganGp => AdamConfig::new()
                .with_beta_1(settings.beta1 as f32)
                .with_beta_2(settings.beta2 as f32)
                .with_epsilon(settings.epsilon as f32)
                .init(),
        };
        Self {
            generator: GeneratorConfig::new()
                .with_latent_dim(settings.latent_dim)
                .init(device),
            critic: CriticConfig::new().init(device),
            optim_g: optimizer(),
            optim_c: optimizer(),
        }
    }

    /// One critic step on `real` and fresh fakes. Returns, detached, `[critic loss (with the
    /// penalty), E[f(x)] - E[f(G(z))], mean ||grad f(x^)||, penalty]`.
    fn critic_step(&mut self, real: Tensor<4>, settings: &WganSettings) -> Tensor<1> {
        let [batch, ..] = real.dims();
        let device = real.device();
        let z = self.generator.sample_latent(batch, &device);
        let fake = self.generator.forward(z).detach();
        let loss = critic_loss(
            self.critic.forward(real.clone()),
            self.critic.forward(fake.clone()),
        );
        let estimate = loss.clone().detach().neg();
        let mix = Tensor::<1>::random([batch], Distribution::Uniform(0.0, 1.0), &device);
        let x_hat = interpolate(real, fake, mix);
        let (loss, norms, penalty) = match settings.loss {
            WganLoss::WganGp => {
                let gp = gradient_penalty(self.critic.input_gradient(x_hat), settings.gp_lambda);
                (loss + gp.penalty.clone(), gp.norms, gp.penalty.detach())
            }
            WganLoss::Wgan => {
                // Only reported: the gradient norm the clipping is meant to bound.
                let gp = gradient_penalty(self.critic.input_gradient(x_hat).detach(), 1.0);
                (loss, gp.norms, Tensor::zeros([1], &device))
            }
        };
        let grads = GradientsParams::from_grads(loss.backward(), &self.critic);
        self.critic = self.optim_c.step(settings.lr, self.critic.clone(), grads);
        if settings.loss == WganLoss::Wgan {
            self.critic = self.critic.clone().clip_weights(settings.clip);
        }
        Tensor::cat(
            vec![loss.detach(), estimate, norms.detach().mean(), penalty],
            0,
        )
    }

    /// `n_critic` critic steps, one per batch of `reals`, then one generator step minimising
    /// `-E[f(G(z))]`. Returns, detached and averaged over the critic steps, `[loss_critic,
    /// loss_g, wasserstein estimate, gradient-norm mean, penalty]`.
    pub fn step(&mut self, reals: Vec<Tensor<4>>, settings: &WganSettings) -> Tensor<1> {
        let critic_steps = reals.len();
        let [batch, ..] = reals[0].dims();
        let device = reals[0].device();
        let mut sums: Option<Tensor<1>> = None;
        for real in reals {
            let values = self.critic_step(real, settings);
            sums = Some(match sums {
                Some(s) => s + values,
                None => values,
            });
        }
        let means = sums
            .expect("at least one critic step")
            .div_scalar(critic_steps as f64);

        let z = self.generator.sample_latent(batch, &device);
        let loss_g = wasserstein_generator_loss(self.critic.forward(self.generator.forward(z)));
        let grads = GradientsParams::from_grads(loss_g.backward(), &self.generator);
        self.generator = self
            .optim_g
            .step(settings.lr, self.generator.clone(), grads);

        Tensor::cat(
            vec![
                means.clone().narrow(0, 0, 1),
                loss_g.detach(),
                means.narrow(0, 1, 3),
            ],
            0,
        )
    }
}

impl Checkpointed for Wgan {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        Ok(Self {
            generator: checkpoint.load_module("generator", self.generator)?,
            critic: checkpoint.load_module("critic", self.critic)?,
            optim_g: checkpoint.load_optimizer("generator", self.optim_g)?,
            optim_c: checkpoint.load_optimizer("critic", self.optim_c)?,
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module("generator", &self.generator)?;
        writer.module("critic", &self.critic)?;
        writer.optimizer("generator", &self.optim_g)?;
        writer.optimizer("critic", &self.optim_c)?;
        writer.commit(state)
    }
}

/// Trains a WGAN or WGAN-GP with `settings`, writing grids, metrics and checkpoints into the run
/// folder. A step is one generator update after `n_critic` critic updates on as many batches.
pub fn train(settings: &WganSettings) -> Result<TrainSummary> {
    let common = &settings.common;
    let model_name = settings.loss.model();
    let run = RunDir::create(model_name, common)?;
    run.write_config(settings)?;
    let data = run.load_data(common)?;
    let fid = FidMonitor::new(model_name, common, &run, &data, PixelRange::MinusOneToOne)?;
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);
    let (mut model, start) = run.resume(common, Wgan::new(settings, &device), &device)?;

    let loader = BatchLoader::new(
        Arc::new(data.train),
        common.batch_size,
        PixelRange::MinusOneToOne,
    )
    .with_seed(common.seed)
    .with_drop_last(true);
    let steps_per_epoch = (loader.num_batches() / settings.n_critic) as u64;
    anyhow::ensure!(
        steps_per_epoch > 0,
        "--batch-size {}: an epoch has fewer than {} batches, one generator step",
        common.batch_size,
        settings.n_critic
    );
    let sample_device = run.device.device.clone();
    let fixed_z = fixed_normal([GRID, settings.latent_dim], common.seed, &sample_device);
    run.save_real_grid(&loader, GRID, PixelScale::MinusOneToOne)?;
    let mut metrics = run.metrics(&fid.columns(&METRICS), start)?;
    let mut summary = run.summary();
    let started = Instant::now();
    let mut step = start.step;

    for epoch in start.epoch..settings.epochs {
        let done_in_epoch = step.saturating_sub(epoch as u64 * steps_per_epoch);
        let mut progress =
            EpochProgress::start(epoch + 1, settings.epochs, steps_per_epoch, done_in_epoch);
        let mut interval = StepMeans::default();
        let mut stop = false;
        let mut batches = loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize * settings.n_critic);
        for _ in done_in_epoch..steps_per_epoch {
            let reals: Vec<Tensor<4>> = batches
                .by_ref()
                .take(settings.n_critic)
                .map(|b| b.images)
                .collect();
            let images = reals.len() * common.batch_size;
            interval.add(model.step(reals, settings));
            step += 1;
            progress.step(images);
            stop = common.max_steps.is_some_and(|max| step >= max);
            let completed = (step % steps_per_epoch == 0).then_some(epoch + 1);
            if step % common.log_every == 0 || completed.is_some() || stop {
                let mean = interval.take()?.expect("at least one step");
                check_finite(
                    &[("loss_critic", mean[0]), ("loss_g", mean[1])],
                    step,
                    &run.checkpoints,
                )?;
                let rate = progress.images_per_sec();
                let row = vec![
                    step as f64,
                    (epoch + 1) as f64,
                    mean[0],
                    mean[1],
                    mean[2],
                    mean[3],
                    mean[4],
                    rate,
                    started.elapsed().as_secs_f64(),
                ];
                let row = fid.extend_row(row, completed, |count, seed| {
                    let z = fixed_normal([count, settings.latent_dim], seed, &sample_device);
                    Ok(model.generator.valid().forward(z))
                })?;
                metrics.append(&row)?;
                progress.bar.set_message(format!(
                    "loss_c {:.3} loss_g {:.3} W {:.3} |grad| {:.2} {rate:.0} img/s",
                    mean[0], mean[1], mean[2], mean[3]
                ));
            }
            if stop {
                break;
            }
        }
        let report = progress.finish();
        let samples = model.generator.valid().forward(fixed_z.clone());
        save_grid(
            samples,
            8,
            PixelScale::MinusOneToOne,
            &run.epoch_samples(epoch + 1),
        )?;
        let completed = if stop { epoch } else { epoch + 1 };
        let checkpoint = run.save_checkpoint(&model, step, completed, common.seed)?;
        summary.record_epoch(report, checkpoint.dir);
        if stop {
            break;
        }
    }
    summary.steps = step;
    summary.print();
    Ok(summary)
}
