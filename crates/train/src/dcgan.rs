//! Training a DCGAN on Fashion-MNIST: one discriminator step, then one generator step, per batch.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use genmodels::gan_loss::{GeneratorLoss, discriminator_loss, generator_loss};
use genmodels::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};
use genmodels_data::{BatchLoader, PixelRange};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, TrainingState};
use crate::cli::CommonArgs;
use crate::eval::FidMonitor;
use crate::grid::{PixelScale, save_grid};
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite, fixed_normal};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "dcgan";
const METRICS: [&str; 8] = [
    "step",
    "epoch",
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake",
    "images_per_sec",
    "elapsed_s",
];
/// Images in the 8x8 sample grid.
const GRID: usize = 64;

/// Every setting of a DCGAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DcganSettings {
    pub common: CommonArgs,
    pub epochs: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub latent_dim: usize,
    pub g_loss: GeneratorLoss,
}

impl DcganSettings {
    /// The paper's settings (Adam 2e-4, betas 0.5 / 0.999, epsilon 1e-8) where a flag is absent.
    pub fn from_args(common: CommonArgs, g_loss: GeneratorLoss) -> Self {
        Self {
            epochs: common.epochs.unwrap_or(10),
            lr: common.lr.unwrap_or(2e-4),
            common,
            beta1: 0.5,
            beta2: 0.999,
            epsilon: 1e-8,
            latent_dim: 100,
            g_loss,
        }
    }
}

/// The two networks and their optimizers: one training iteration is [`Dcgan::step`].
pub struct Dcgan {
    pub generator: Generator,
    pub discriminator: Discriminator,
    optim_g: ModuleOptimizer,
    optim_d: ModuleOptimizer,
}

impl Dcgan {
    /// Freshly initialised networks and Adam states (`device` should be an autodiff device).
    pub fn new(settings: &DcganSettings, device: &Device) -> Self {
        let adam = AdamConfig::new()
            .with_beta_1(settings.beta1 as f32)
            .with_beta_2(settings.beta2 as f32)
            .with_epsilon(settings.epsilon as f32);
        Self {
            generator: GeneratorConfig::new()
                .with_latent_dim(settings.latent_dim)
                .init(device),
            discriminator: DiscriminatorConfig::new().init(device),
            optim_g: adam.init(),
            optim_d: adam.init(),
        }
    }

    /// One D step on `real` and fresh fakes, then one G step. Returns, detached,
    /// `[loss_d, loss_g, mean D(x), mean D(G(z))]`.
    pub fn step(&mut self, real: Tensor<4>, lr: f64, g_loss: GeneratorLoss) -> Tensor<1> {
        let [batch, ..] = real.dims();
        let device = real.device();
        let z = self.generator.sample_latent(batch, &device);
        let fake = self.generator.forward(z);

        // Discriminator: minimise -E[log D(x)] - E[log(1 - D(G(z)))]; G is held fixed.
        let real_logits = self.discriminator.forward(real);
        let fake_logits = self.discriminator.forward(fake.clone().detach());
        let loss_d = discriminator_loss(real_logits.clone(), fake_logits.clone());
        let grads = GradientsParams::from_grads(loss_d.backward(), &self.discriminator);
        self.discriminator = self.optim_d.step(lr, self.discriminator.clone(), grads);

        // Generator: against the updated discriminator, as in Goodfellow et al.'s Algorithm 1.
        let loss_g = generator_loss(self.discriminator.forward(fake), g_loss);
        let grads = GradientsParams::from_grads(loss_g.backward(), &self.generator);
        self.generator = self.optim_g.step(lr, self.generator.clone(), grads);

        Tensor::cat(
            vec![
                loss_d.detach(),
                loss_g.detach(),
                sigmoid(real_logits.detach()).mean(),
                sigmoid(fake_logits.detach()).mean(),
            ],
            0,
        )
    }
}

impl Checkpointed for Dcgan {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        Ok(Self {
            generator: checkpoint.load_module("generator", self.generator)?,
            discriminator: checkpoint.load_module("discriminator", self.discriminator)?,
            optim_g: checkpoint.load_optimizer("generator", self.optim_g)?,
            optim_d: checkpoint.load_optimizer("discriminator", self.optim_d)?,
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module("generator", &self.generator)?;
        writer.module("discriminator", &self.discriminator)?;
        writer.optimizer("generator", &self.optim_g)?;
        writer.optimizer("discriminator", &self.optim_d)?;
        writer.commit(state)
    }
}

/// Trains a DCGAN with `settings`, writing grids, metrics and checkpoints into the run folder.
pub fn train(settings: &DcganSettings) -> Result<TrainSummary> {
    let common = &settings.common;
    let run = RunDir::create(MODEL, common)?;
    run.write_config(settings)?;
    let data = run.load_data(common)?;
    let fid = FidMonitor::new(MODEL, common, &run, &data, PixelRange::MinusOneToOne)?;
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);
    let (mut model, start) = run.resume(common, Dcgan::new(settings, &device), &device)?;

    let loader = BatchLoader::new(
        Arc::new(data.train),
        common.batch_size,
        PixelRange::MinusOneToOne,
    )
    .with_seed(common.seed)
    .with_drop_last(true);
    let steps_per_epoch = loader.num_batches() as u64;
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
        for batch in loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize)
        {
            let batch_size = batch.images.dims()[0];
            interval.add(model.step(batch.images, settings.lr, settings.g_loss));
            step += 1;
            progress.step(batch_size);
            stop = common.max_steps.is_some_and(|max| step >= max);
            let completed = (step % steps_per_epoch == 0).then_some(epoch + 1);
            if step % common.log_every == 0 || completed.is_some() || stop {
                let mean = interval.take()?.expect("at least one step");
                check_finite(
                    &[("loss_d", mean[0]), ("loss_g", mean[1])],
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
                    rate,
                    started.elapsed().as_secs_f64(),
                ];
                let row = fid.extend_row(row, completed, |count, seed| {
                    let z = fixed_normal([count, settings.latent_dim], seed, &sample_device);
                    Ok(model.generator.valid().forward(z))
                })?;
                metrics.append(&row)?;
                progress.bar.set_message(format!(
                    "loss_d {:.3} loss_g {:.3} D(x) {:.2} D(G(z)) {:.2} {rate:.0} img/s",
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
