//! Training a DDPM on Fashion-MNIST (Ho et al., 2020, Algorithm 1): for each batch draw
//! `t ~ U{0..T-1}` and `eps ~ N(0, I)`, and minimise `||eps - eps_theta(x_t, t)||^2` with
//! `x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`. With `--conditional` the U-Net also
//! takes the class, replaced by the null label with probability `--label-dropout`
//! (classifier-free guidance, Ho & Salimans, 2022). An exponential moving average of the weights
//! is kept, checkpointed and used for every sample ([`genmodels::diffusion::DiffusionSource`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::adam::AdamConfig;
use anyhow::{Context, Result};
use burn::tensor::{Device, Distribution, Int, Tensor};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::diffusion::{
    Denoiser, DiffusionSource, EMA, Guidance, NoiseSchedule, SCHEDULE, SamplerKind,
    SamplingSettings, ScheduleConfig, UNET, UNet, UNetConfig, drop_labels, timesteps_tensor,
};
use genmodels::noise::seeded_normal_images;
use genmodels_data::{Batch, PixelRange};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::backend::select_device;
use crate::cli::{CommonArgs, ConditioningArgs, DiffusionArgs, SampleArgs, parse_unit_interval};
use crate::fit::{
    FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit, single, step_seed,
};
use crate::grid::{PixelScale, save_grid, save_strips};
use crate::optim::AveragedNetwork;
use crate::registry::{Opened, SourceOptions, open_run};
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "ddpm";
/// Images in the final grid.
const GRID: usize = 64;
/// Images (rows) in `forward.png` and `reverse.png`.
const STRIP_ROWS: usize = 8;
/// Timesteps between the columns of `forward.png` and `reverse.png`.
const STRIP_EVERY: usize = 100;

/// The U-Net sizes a run can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Channels 64/128/128, about 5.2M parameters (GPU).
    Full,
    /// Channels 32/64/64, about 1.3M parameters (CPU).
    Small,
    /// Channels 8/16/16, one block per level: for smoke tests only.
    Tiny,
}

impl Preset {
    pub fn config(self) -> UNetConfig {
        match self {
            Preset::Full => UNetConfig::full(),
            Preset::Small => UNetConfig::small(),
            Preset::Tiny => UNetConfig::new()
                .with_base_channels(8)
                .with_blocks_per_level(1)
                .with_time_embedding_dim(16),
        }
    }
}

/// The flags of a DDPM run.
#[derive(Debug, Clone, clap::Args)]
pub struct DdpmArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// U-Net size: full (5.2M parameters), small (1.3M, for CPUs) or tiny (smoke tests).
    #[arg(long, value_enum, default_value = "full")]
    pub preset: Preset,
    #[command(flatten)]
    pub conditioning: ConditioningArgs,
    /// How the grid after every epoch is drawn.
    #[command(flatten)]
    pub sampling: DiffusionArgs,
    /// Decay of the exponential moving average of the weights used for sampling.
    #[arg(long, default_value_t = 0.999, value_parser = parse_unit_interval)]
    pub ema_decay: f64,
    /// Steps of the DDPM grid drawn when training ends (0: none).
    #[arg(long, default_value_t = 1000)]
    pub final_ddpm_steps: usize,
}

/// Every setting of a DDPM run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DdpmSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub optimizer: AdamConfig,
    /// The preset the U-Net's Config came from.
    pub preset: Preset,
    pub unet: UNetConfig,
    pub schedule: ScheduleConfig,
    pub ema_decay: f64,
    pub max_grad_norm: f64,
    /// The grid drawn after every epoch.
    pub epoch_sampling: SamplingSettings,
    /// DDPM steps of the grid and `reverse.png` drawn when training ends (0: none).
    pub final_ddpm_steps: usize,
    /// Probability of the null label in training (conditional U-Nets only; absent from the
    /// settings of runs older than the option, which were unconditional).
    #[serde(default)]
    pub label_dropout: f64,
    /// The guidance scale of the grids drawn in training (conditional U-Nets only).
    #[serde(default)]
    pub epoch_guidance: f64,
}

impl DdpmSettings {
    /// Adam 2e-4 (epsilon 1e-8), EMA 0.999, clipping at 1, T = 1000 linear betas from 1e-4 to
    /// 0.02, where a flag is absent.
    pub fn new(args: DdpmArgs) -> Self {
        Self {
            run: RunSettings::new(args.common, 20, 2e-4),
            optimizer: AdamConfig::new().with_epsilon(1e-8),
            preset: args.preset,
            unet: args.preset.config().with_num_classes(
                args.conditioning
                    .conditional
                    .then(|| args.conditioning.num_classes()),
            ),
            schedule: ScheduleConfig::default(),
            ema_decay: args.ema_decay,
            max_grad_norm: 1.0,
            epoch_sampling: args.sampling.settings(),
            final_ddpm_steps: args.final_ddpm_steps,
            label_dropout: args.conditioning.label_dropout,
            epoch_guidance: args.conditioning.guidance,
        }
    }

    fn conditional(&self) -> bool {
        self.unet.num_classes.unwrap_or(0) > 0
    }

    /// Refuses sampler settings the schedule cannot honour, before anything is trained.
    fn validate(&self) -> Result<NoiseSchedule> {
        let schedule = self.schedule.build()?;
        self.epoch_sampling
            .build(&schedule)
            .context("--sample-steps")?;
        if self.final_ddpm_steps > 0 {
            self.final_sampling()
                .build(&schedule)
                .context("--final-ddpm-steps")?;
        }
        Ok(schedule)
    }

    fn final_sampling(&self) -> SamplingSettings {
        SamplingSettings {
            sampler: SamplerKind::Ddpm,
            steps: self.final_ddpm_steps,
            eta: 0.0,
        }
    }
}

/// The network being trained, its weight average and its optimizer: one training iteration is
/// [`Ddpm::step`].
pub struct Ddpm {
    pub unet: AveragedNetwork<UNet>,
    schedule: NoiseSchedule,
    settings: DdpmSettings,
}

impl Ddpm {
    /// A freshly initialised U-Net, its EMA copy and Adam state (`device` should be an autodiff
    /// device).
    pub fn new(settings: &DdpmSettings, device: &Device) -> Result<Self> {
        let unet = settings.unet.init(device);
        Ok(Self {
            unet: AveragedNetwork::new(unet, &settings.optimizer, settings.ema_decay),
            schedule: settings.validate()?,
            settings: settings.clone(),
        })
    }

    /// One Adam step on `||eps - eps_theta(x_t, t[, y])||^2` for the batch `x0` (with its
    /// classes `labels: [B]`, which a conditional U-Net needs and an unconditional one ignores),
    /// with the gradient's global norm clipped, then EMA update number `step`. Returns, detached,
    /// the loss and the gradient norm before clipping.
    pub fn step(
        &mut self,
        x0: Tensor<4>,
        labels: Option<Tensor<1, Int>>,
        step: u64,
    ) -> StepMetrics {
        let [batch, ..] = x0.dims();
        let device = x0.device();
        let conditional = self.settings.conditional();
        let (timesteps, dropped) = draw_timesteps(
            self.settings.run.common.seed,
            step,
            batch,
            self.schedule.num_steps(),
            conditional.then_some(self.settings.label_dropout),
        );
        let labels = match (conditional, labels) {
            (true, Some(labels)) => {
                Some(drop_labels(
                    labels,
                    &dropped,
                    self.unet.network().null_label(),
                )) // [B]
            }
            (true, None) => panic!("a conditional U-Net is trained with the batch's labels"),
            (false, _) => None,
        };
        let noise = Tensor::<4>::random(x0.shape(), Distribution::Normal(0.0, 1.0), &device);
        let x_t = self.schedule.add_noise(x0, noise.clone(), &timesteps); // [B, 1, 28, 28]
        let t = timesteps_tensor(&timesteps, &device);
        let predicted = self.unet.network().predict(x_t, t, labels); // [B, 1, 28, 28]
        let (lr, max_grad_norm) = (self.settings.run.lr, self.settings.max_grad_norm);
        self.unet
            .noise_prediction_step(predicted, noise, lr, max_grad_norm, step)
    }

    /// The EMA weights drawing with `sampling`; a conditional U-Net the classes in turn at the
    /// epoch guidance scale.
    fn source(&self, sampling: SamplingSettings) -> DiffusionSource {
        let guidance = self.settings.conditional().then_some(Guidance {
            scale: self.settings.epoch_guidance,
            class: None,
        });
        DiffusionSource::new(self.unet.ema.model.clone(), &self.schedule, sampling)
            .expect("validated when the run started")
            .with_guidance(guidance)
            .expect("a conditional U-Net's own classes")
    }
}

/// The timesteps `t ~ U{0..T-1}` of a batch of `size` and, with a `label_dropout`
/// probability, which of its labels become the null label (none without): drawn from the run's
/// seed and the step, as the device's noise is.
pub(crate) fn draw_timesteps(
    seed: u64,
    step: u64,
    size: usize,
    num_steps: usize,
    label_dropout: Option<f64>,
) -> (Vec<usize>, Vec<bool>) {
    let mut rng = StdRng::seed_from_u64(step_seed(seed, step));
    let timesteps = (0..size).map(|_| rng.random_range(0..num_steps)).collect();
    let dropped = match label_dropout {
        Some(p) => (0..size).map(|_| rng.random_bool(p)).collect(),
        None => vec![false; size],
    };
    (timesteps, dropped)
}

impl Trainable for Ddpm {
    /// `forward.png`, once: a few training images noised at t = 0, 100, ..., 900, T - 1.
    fn begin(&mut self, context: &RunContext) -> Result<()> {
        let path = context.run.path("forward.png");
        if path.exists() {
            return Ok(());
        }
        let first = context
            .loader
            .epoch(0, context.device)
            .next()
            .context("the training split is empty")?;
        let rows = STRIP_ROWS.min(first.len());
        save_forward_process(
            first.images.narrow(0, 0, rows),
            &self.schedule,
            context.seed,
            &path,
        )
    }

    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
        let batch = single(batches);
        Ddpm::step(self, batch.images, Some(batch.labels), step)
    }

    /// The DDPM grid and `reverse.png` of the final weights.
    fn end_training(&mut self, context: &RunContext) -> Result<()> {
        println!("  forward.png   a few images noised at t = 0, 100, ..., 900, 999");
        if self.settings.final_ddpm_steps == 0 {
            return Ok(());
        }
        let source = self.source(self.settings.final_sampling());
        let path = context.run.path(format!(
            "samples/final_ddpm_{}.png",
            self.settings.final_ddpm_steps
        ));
        let started = Instant::now();
        let reverse = context.run.path("reverse.png");
        draw_with_strip(&source, GRID, context.seed, context.device, &path, &reverse)?;
        println!(
            "{MODEL}: {} grid in {:.1} s: {}",
            source.settings.describe(),
            started.elapsed().as_secs_f64(),
            path.display()
        );
        println!("  reverse.png   x_T, x_900, ..., x_100, x_0 of a few DDPM samples");
        Ok(())
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.source(self.settings.epoch_sampling)))
    }
}

impl Checkpointed for Ddpm {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![(UNET, &mut self.unet)]
    }
}

/// Trains a DDPM with `settings`, writing grids, figures, metrics and checkpoints into the run
/// folder.
pub fn train(settings: &DdpmSettings) -> Result<TrainSummary> {
    settings.validate()?;
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::MinusOneToOne);
    fit(&plan, settings, |device| Ddpm::new(settings, device))
}

/// The EMA weights of a run with the sampler, class and guidance scale of `options`.
pub fn open_source(run: &RunFolder, options: &SourceOptions, device: &Device) -> Opened {
    Ok(Box::new(open_diffusion(run, options, device)?))
}

fn open_diffusion(
    run: &RunFolder,
    options: &SourceOptions,
    device: &Device,
) -> Result<DiffusionSource> {
    let unet = run.load_record(UNET, EMA, |config: UNetConfig| config.init(device))?;
    let schedule = run.config::<ScheduleConfig>(SCHEDULE)?.build()?;
    Ok(DiffusionSource::new(unet, &schedule, options.sampling)
        .context("--sample-steps")?
        .with_guidance(options.guidance())?)
}

/// `sample`: draws `args.count` images from the EMA weights of a checkpoint (with the sampler,
/// class and guidance scale of `options`), and writes their grid and, beside it,
/// `<name>_reverse.png`. Returns the grid's path.
pub fn sample_from_checkpoint(args: &SampleArgs, options: &SourceOptions) -> Result<PathBuf> {
    let sampling = options.sampling;
    let run = open_run(&[MODEL], args.from.as_deref())?;
    let selected = select_device(args.backend)?;
    println!("{MODEL}: computing on {}", selected.description);
    let device = selected.device;
    let source = open_diffusion(&run, options, &device)?;
    let output = args.output.clone().unwrap_or_else(|| {
        let name = match sampling.sampler {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
        };
        run.root
            .join(format!("samples/sample_{name}_{}.png", sampling.steps))
    });
    let reverse = output.with_file_name(format!(
        "{}_reverse.png",
        output
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    let started = Instant::now();
    draw_with_strip(&source, args.count, args.seed, &device, &output, &reverse)?;
    println!(
        "{MODEL}: {} images from {} ({}) in {:.1} s: {}",
        args.count,
        run.checkpoint.dir.display(),
        sampling.describe(),
        started.elapsed().as_secs_f64(),
        output.display()
    );
    Ok(output)
}

/// Draws `count` images and writes their grid to `grid_path`, and the reverse process of the
/// first few (x_T, then every 100 steps, then x_0) to `reverse_path`.
fn draw_with_strip(
    source: &DiffusionSource,
    count: usize,
    seed: u64,
    device: &Device,
    grid_path: &Path,
    reverse_path: &Path,
) -> Result<()> {
    let rows = STRIP_ROWS.min(count);
    let mut snapshots = Vec::new();
    let images = source
        .draw_observed(count, seed, device, |t, x| {
            if t == usize::MAX || (t % STRIP_EVERY == 0 && t > 0) {
                snapshots.push(x.clone().narrow(0, 0, rows));
            }
        })
        .images;
    save_grid(images.clone(), 8, PixelScale::MinusOneToOne, grid_path)?;
    snapshots.push(images.narrow(0, 0, rows));
    save_strips(snapshots, PixelScale::MinusOneToOne, reverse_path)
}

/// `forward.png`: each row one image, noised (with one eps per image) at t = 0, 100, ..., 900
/// and T - 1.
fn save_forward_process(
    images: Tensor<4>,
    schedule: &NoiseSchedule,
    seed: u64,
    path: &Path,
) -> Result<()> {
    let [rows, channels, height, width] = images.dims();
    let device = images.device();
    let last = schedule.num_steps() - 1;
    let mut timesteps: Vec<usize> = (0..=last).step_by(STRIP_EVERY).collect();
    if timesteps.last() != Some(&last) {
        timesteps.push(last);
    }
    let noise = seeded_normal_images([rows, channels, height, width], seed, &device);
    let columns: Vec<Tensor<4>> = timesteps
        .iter()
        .map(|&t| schedule.add_noise(images.clone(), noise.clone(), &vec![t; rows]))
        .collect();
    save_strips(columns, PixelScale::MinusOneToOne, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn a_few_steps_on_a_fixed_batch_lower_the_loss() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let mut settings = DdpmSettings::new(DdpmArgs {
            common: CommonArgs::default(),
            preset: Preset::Tiny,
            conditioning: ConditioningArgs::default(),
            sampling: DiffusionArgs {
                sampler: crate::cli::SamplerArg::Ddim,
                sample_steps: Some(5),
                eta: 0.0,
            },
            ema_decay: 0.999,
            final_ddpm_steps: 0,
        });
        settings.run.lr = 2e-3;
        let mut model = Ddpm::new(&settings, &device).unwrap();
        // A fixed batch: 8 images of a bright square on a dark background.
        let mut pixels = vec![-1.0f32; 8 * 28 * 28];
        for (i, p) in pixels.iter_mut().enumerate() {
            let (y, x) = ((i / 28) % 28, i % 28);
            if (8..20).contains(&y) && (8..20).contains(&x) {
                *p = 1.0;
            }
        }
        let batch = Tensor::<4>::from_data(TensorData::new(pixels, [8, 1, 28, 28]), &device);
        // The loss is noisy (fresh t and eps every step): compare means over 5 steps.
        let mut losses = Vec::new();
        for step in 1..=40 {
            let metrics = model.step(batch.clone(), None, step);
            let loss = metrics.value("loss").expect("the loss is reported").clone();
            losses.push(loss.into_scalar::<f32>());
        }
        let first = losses[..5].iter().sum::<f32>() / 5.0;
        let last = losses[35..].iter().sum::<f32>() / 5.0;
        assert!(last < 0.7 * first, "loss {first} -> {last}");
    }
}
