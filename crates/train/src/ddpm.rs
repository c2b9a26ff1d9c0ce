//! Training a DDPM on Fashion-MNIST (Ho et al., 2020, Algorithm 1): for each batch draw
//! `t ~ U{0..T-1}` and `eps ~ N(0, I)`, and minimise `||eps - eps_theta(x_t, t)||^2` with
//! `x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`. An exponential moving average of
//! the weights is kept, checkpointed and used for every sample.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use genmodels::diffusion::{
    DdimScheduler, DdpmScheduler, NoiseSchedule, Sampler, UNet, UNetConfig, leading_timesteps,
};
use genmodels_data::{BatchLoader, PixelRange};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, TrainingState};
use crate::cli::CommonArgs;
use crate::eval::FidMonitor;
use crate::grid::{PixelScale, save_grid};
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite, fixed_normal};
use crate::select_device;
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "ddpm";
const METRICS: [&str; 6] = [
    "step",
    "epoch",
    "loss",
    "grad_norm",
    "images_per_sec",
    "elapsed_s",
];
/// Images in the 8x8 sample grid.
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

/// How samples are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Ancestral sampling, one step per timestep (or a "leading" subsequence).
    Ddpm,
    /// DDIM over a "leading" subsequence; deterministic at eta = 0.
    Ddim,
}

/// How a grid is sampled: which sampler, in how many steps, with which eta (DDIM only).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SamplingSettings {
    pub sampler: SamplerKind,
    pub steps: usize,
    pub eta: f64,
}

/// Every setting of a DDPM run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DdpmSettings {
    pub common: CommonArgs,
    pub epochs: usize,
    pub lr: f64,
    pub adam_epsilon: f64,
    pub preset: Preset,
    /// T, with the linear betas 1e-4 .. 0.02.
    pub diffusion_steps: usize,
    pub ema_decay: f64,
    pub max_grad_norm: f64,
    /// The grid drawn after every epoch.
    pub epoch_sampling: SamplingSettings,
    /// DDPM steps of the grid and `reverse.png` drawn when training ends (0: none).
    pub final_ddpm_steps: usize,
}

impl DdpmSettings {
    /// Adam 2e-4 (epsilon 1e-8), EMA 0.999, clipping at 1, T = 1000, where a flag is absent.
    pub fn from_args(
        common: CommonArgs,
        preset: Preset,
        epoch_sampling: SamplingSettings,
        ema_decay: f64,
        final_ddpm_steps: usize,
    ) -> Self {
        Self {
            epochs: common.epochs.unwrap_or(20),
            lr: common.lr.unwrap_or(2e-4),
            common,
            adam_epsilon: 1e-8,
            preset,
            diffusion_steps: 1000,
            ema_decay,
            max_grad_norm: 1.0,
            epoch_sampling,
            final_ddpm_steps,
        }
    }

    /// The noise schedule of the run: T linear betas from 1e-4 to 0.02.
    pub fn schedule(&self) -> Result<NoiseSchedule> {
        Ok(NoiseSchedule::linear(self.diffusion_steps, 1e-4, 0.02)?)
    }

    /// Refuses sampler settings the schedule cannot honour, before anything is trained.
    fn validate(&self) -> Result<()> {
        leading_timesteps(self.diffusion_steps, self.epoch_sampling.steps)
            .context("--sample-steps")?;
        if self.final_ddpm_steps > 0 {
            leading_timesteps(self.diffusion_steps, self.final_ddpm_steps)
                .context("--final-ddpm-steps")?;
        }
        Ok(())
    }
}

/// The network being trained, its weight average and its optimizer: one training iteration is
/// [`Ddpm::step`].
pub struct Ddpm {
    pub unet: UNet,
    ema: Ema<UNet>,
    optim: ModuleOptimizer,
    schedule: NoiseSchedule,
    timestep_rng: StdRng,
}

impl Ddpm {
    /// A freshly initialised U-Net, its EMA copy and Adam state (`device` should be an autodiff
    /// device).
    pub fn new(settings: &DdpmSettings, device: &Device) -> Result<Self> {
        let unet = settings.preset.config().init(device);
        Ok(Self {
            ema: Ema::new(&unet, settings.ema_decay),
            unet,
            optim: AdamConfig::new()
                .with_epsilon(settings.adam_epsilon as f32)
                .init(),
            schedule: settings.schedule()?,
            timestep_rng: StdRng::seed_from_u64(settings.common.seed),
        })
    }

    /// One Adam step on `||eps - eps_theta(x_t, t)||^2` for the batch `x0`, with the gradient's
    /// global norm clipped, then an EMA update. Returns, detached, `[loss, gradient norm]`.
    pub fn step(&mut self, x0: Tensor<4>, step: u64, settings: &DdpmSettings) -> Tensor<1> {
        let [batch, ..] = x0.dims();
        let device = x0.device();
        let timesteps: Vec<usize> = (0..batch)
            .map(|_| self.timestep_rng.random_range(0..self.schedule.num_steps()))
            .collect();
        let noise = Tensor::<4>::random(x0.shape(), Distribution::Normal(0.0, 1.0), &device);
        let x_t = self.schedule.add_noise(x0, noise.clone(), &timesteps);
        let predicted = self
            .unet
            .forward(x_t, timesteps_tensor(&timesteps, &device));
        let loss = (predicted - noise).square().mean();

        let grads = GradientsParams::from_grads(loss.backward(), &self.unet);
        let (grads, norm) = clip_grad_norm(grads, &self.unet, settings.max_grad_norm);
        self.unet = self.optim.step(settings.lr, self.unet.clone(), grads);
        self.ema.update(&self.unet, step);
        Tensor::cat(vec![loss.detach().inner(), norm], 0)
    }
}

impl Checkpointed for Ddpm {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        let ema_model = checkpoint.load_module("ema", self.ema.model)?;
        Ok(Self {
            unet: checkpoint.load_module("unet", self.unet)?,
            ema: Ema {
                model: ema_model,
                decay: self.ema.decay,
            },
            optim: checkpoint.load_optimizer("unet", self.optim)?,
            schedule: self.schedule,
            timestep_rng: StdRng::seed_from_u64(
                checkpoint.state.seed.wrapping_add(checkpoint.state.step),
            ),
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module("unet", &self.unet)?;
        writer.module("ema", &self.ema.model)?;
        writer.optimizer("unet", &self.optim)?;
        writer.commit(state)
    }
}

/// Trains a DDPM with `settings`, writing grids, figures, metrics and checkpoints into the run
/// folder.
pub fn train(settings: &DdpmSettings) -> Result<TrainSummary> {
    settings.validate()?;
    let common = &settings.common;
    let run = RunDir::create(MODEL, common)?;
    run.write_config(settings)?;
    let data = run.load_data(common)?;
    let fid = FidMonitor::new(MODEL, common, &run, &data, PixelRange::MinusOneToOne)?;
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);

    let model = Ddpm::new(settings, &device)?;
    let (mut model, start) = run.resume(common, model, &device)?;

    let loader = BatchLoader::new(
        Arc::new(data.train),
        common.batch_size,
        PixelRange::MinusOneToOne,
    )
    .with_seed(common.seed)
    .with_drop_last(true);
    let steps_per_epoch = loader.num_batches() as u64;
    let sample_device = run.device.device.clone();
    if !run.path("forward.png").exists() {
        let first = loader
            .epoch(0, &sample_device)
            .next()
            .expect("the split is not empty");
        let images = first.images.narrow(0, 0, STRIP_ROWS.min(common.batch_size));
        save_forward_process(
            images,
            &model.schedule,
            common.seed,
            &run.path("forward.png"),
        )?;
    }
    let mut metrics = run.metrics(&fid.columns(&METRICS), start)?;
    let mut summary = run.summary();
    let started = Instant::now();
    let mut step = start.step;
    let mut stop = false;

    for epoch in start.epoch..settings.epochs {
        let done_in_epoch = step.saturating_sub(epoch as u64 * steps_per_epoch);
        let mut progress =
            EpochProgress::start(epoch + 1, settings.epochs, steps_per_epoch, done_in_epoch);
        let mut interval = StepMeans::default();
        for batch in loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize)
        {
            let batch_size = batch.images.dims()[0];
            step += 1;
            interval.add(model.step(batch.images, step, settings));
            progress.step(batch_size);
            stop = common.max_steps.is_some_and(|max| step >= max);
            let at_end = step % steps_per_epoch == 0 || stop;
            if step % common.log_every == 0 || at_end {
                // Reading the sums synchronises the device: once per interval, not per step.
                let mean = interval.take()?.expect("at least one step");
                check_finite(
                    &[("loss", mean[0]), ("grad_norm", mean[1])],
                    step,
                    &run.checkpoints,
                )?;
                let rate = progress.images_per_sec();
                let row = vec![
                    step as f64,
                    (epoch + 1) as f64,
                    mean[0],
                    mean[1],
                    rate,
                    started.elapsed().as_secs_f64(),
                ];
                let completed = (step % steps_per_epoch == 0).then_some(epoch + 1);
                let row = fid.extend_row(row, completed, |count, seed| {
                    sample(
                        &model.ema.model,
                        &model.schedule,
                        settings.epoch_sampling,
                        count,
                        seed,
                        &sample_device,
                        |_, _| {},
                    )
                })?;
                metrics.append(&row)?;
                progress.bar.set_message(format!(
                    "loss {:.4} |g| {:.2} {rate:.0} img/s",
                    mean[0], mean[1]
                ));
            }
            if stop {
                break;
            }
        }
        let report = progress.finish();
        let completed = if stop { epoch } else { epoch + 1 };
        let checkpoint = run.save_checkpoint(&model, step, completed, common.seed)?;
        let ema = model.ema.model.clone();
        let sampled = Instant::now();
        let grid = sample(
            &ema,
            &model.schedule,
            settings.epoch_sampling,
            GRID,
            common.seed,
            &sample_device,
            |_, _| {},
        )?;
        save_grid(
            grid,
            8,
            PixelScale::MinusOneToOne,
            &run.epoch_samples(epoch + 1),
        )?;
        println!(
            "{MODEL}: epoch {}: {} grid in {:.1} s",
            epoch + 1,
            describe(settings.epoch_sampling),
            sampled.elapsed().as_secs_f64()
        );
        summary.record_epoch(report, checkpoint.dir);
        if stop {
            break;
        }
    }

    if settings.final_ddpm_steps > 0 {
        let sampling = SamplingSettings {
            sampler: SamplerKind::Ddpm,
            steps: settings.final_ddpm_steps,
            eta: 0.0,
        };
        let path = run.path(format!(
            "samples/final_ddpm_{}.png",
            settings.final_ddpm_steps
        ));
        let sampled = Instant::now();
        draw(
            &model.ema.model,
            &model.schedule,
            sampling,
            GRID,
            common.seed,
            &sample_device,
            &path,
            Some(&run.path("reverse.png")),
        )?;
        println!(
            "{MODEL}: {} grid in {:.1} s: {}",
            describe(sampling),
            sampled.elapsed().as_secs_f64(),
            path.display()
        );
    }
    summary.steps = step;
    summary.print();
    println!("  forward.png   a few images noised at t = 0, 100, ..., 900, 999");
    if settings.final_ddpm_steps > 0 {
        println!("  reverse.png   x_T, x_900, ..., x_100, x_0 of a few DDPM samples");
    }
    Ok(summary)
}

/// What `sample` mode needs: a run folder or checkpoint, how many images and how.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// A checkpoint folder (`.../checkpoints/step_NNNNNN`) or a run folder (its latest checkpoint).
    pub from: PathBuf,
    pub count: usize,
    pub sampling: SamplingSettings,
    pub seed: u64,
    pub backend: crate::BackendChoice,
    /// The grid's path [default: `<run>/samples/sample_<sampler>_<steps>.png`].
    pub output: Option<PathBuf>,
}

/// Draws `count` images from the EMA weights of a checkpoint, without training; also writes
/// `reverse.png` beside the grid. Returns the grid's path.
pub fn sample_from_checkpoint(request: &SampleRequest) -> Result<PathBuf> {
    let (run_root, checkpoint) = open_checkpoint(&request.from)?;
    checkpoint.expect_model(MODEL)?;
    let config_path = run_root.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {} (the run's settings)", config_path.display()))?;
    let settings: DdpmSettings = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the config of a ddpm run", config_path.display()))?;
    let selected = select_device(request.backend)?;
    println!("{MODEL}: computing on {}", selected.description);
    let device = selected.device;
    let ema = checkpoint.load_module("ema", settings.preset.config().init(&device))?;
    let schedule = settings.schedule()?;
    leading_timesteps(schedule.num_steps(), request.sampling.steps).context("--sample-steps")?;
    let output = request.output.clone().unwrap_or_else(|| {
        let sampling = request.sampling;
        run_root.join(format!(
            "samples/sample_{}_{}.png",
            describe_sampler(sampling.sampler),
            sampling.steps
        ))
    });
    let reverse = output.with_file_name(format!(
        "{}_reverse.png",
        output
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    let started = Instant::now();
    draw(
        &ema,
        &schedule,
        request.sampling,
        request.count,
        request.seed,
        &device,
        &output,
        Some(&reverse),
    )?;
    println!(
        "{MODEL}: {} images from {} ({}) in {:.1} s: {}",
        request.count,
        checkpoint.dir.display(),
        describe(request.sampling),
        started.elapsed().as_secs_f64(),
        output.display()
    );
    Ok(output)
}

/// A checkpoint folder, or the latest checkpoint of a run folder; with the run's root.
pub fn open_checkpoint(from: &Path) -> Result<(PathBuf, Checkpoint)> {
    if from.join("state.json").exists() {
        let checkpoint = Checkpoint::open(from)?;
        let root = from
            .parent()
            .and_then(Path::parent)
            .with_context(|| format!("{} is not inside a run folder", from.display()))?;
        return Ok((root.to_path_buf(), checkpoint));
    }
    let checkpoints = crate::checkpoint::Checkpoints::new(from.join("checkpoints"));
    match checkpoints.latest()? {
        Some(checkpoint) => Ok((from.to_path_buf(), checkpoint)),
        None => bail!(
            "{} has no checkpoint: give a run folder (e.g. runs/ddpm) or a checkpoint folder",
            from.display()
        ),
    }
}

/// Samples `count` images and writes their grid to `grid_path`, and the reverse process of the
/// first few to `reverse_path`.
#[allow(clippy::too_many_arguments)]
fn draw(
    unet: &UNet,
    schedule: &NoiseSchedule,
    sampling: SamplingSettings,
    count: usize,
    seed: u64,
    device: &Device,
    grid_path: &Path,
    reverse_path: Option<&Path>,
) -> Result<()> {
    let rows = STRIP_ROWS.min(count);
    let mut snapshots = Vec::new();
    let images = sample(unet, schedule, sampling, count, seed, device, |t, x| {
        if t == usize::MAX || (t % STRIP_EVERY == 0 && t > 0) {
            snapshots.push(x.clone().narrow(0, 0, rows));
        }
    })?;
    save_grid(images.clone(), 8, PixelScale::MinusOneToOne, grid_path)?;
    if let Some(path) = reverse_path {
        snapshots.push(images.narrow(0, 0, rows));
        save_strips(snapshots, path)?;
    }
    Ok(())
}

/// Runs the reverse process from a fixed x_T ~ N(0, I) (and fixed per-step noise, both drawn on
/// the host from `seed`, so a grid is the same on every backend). `observe(t, x)` sees x_T with
/// `t = usize::MAX`, then the state before the step at each timestep `t`.
pub fn sample(
    unet: &UNet,
    schedule: &NoiseSchedule,
    sampling: SamplingSettings,
    count: usize,
    seed: u64,
    device: &Device,
    mut observe: impl FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>> {
    let unet = unet.valid();
    match sampling.sampler {
        SamplerKind::Ddpm => {
            let mut sampler = DdpmScheduler::new(schedule.clone());
            sampler.set_timesteps(sampling.steps)?;
            Ok(reverse_process(
                &unet,
                &sampler,
                count,
                seed,
                device,
                &mut observe,
            ))
        }
        SamplerKind::Ddim => {
            let mut sampler = DdimScheduler::new(schedule.clone()).with_eta(sampling.eta)?;
            sampler.set_timesteps(sampling.steps)?;
            Ok(reverse_process(
                &unet,
                &sampler,
                count,
                seed,
                device,
                &mut observe,
            ))
        }
    }
}

fn reverse_process(
    unet: &UNet,
    sampler: &impl Sampler,
    count: usize,
    seed: u64,
    device: &Device,
    observe: &mut impl FnMut(usize, &Tensor<4>),
) -> Tensor<4> {
    let normal = |stream: u64| {
        fixed_normal([count, 28 * 28], seed.wrapping_add(stream), device)
            .reshape([count, 1, 28, 28])
    };
    let mut x = normal(0); // x_T
    observe(usize::MAX, &x);
    for &t in sampler.timesteps() {
        observe(t, &x);
        let eps = unet.forward(x.clone(), timesteps_tensor(&vec![t; count], device));
        let noise = sampler.needs_noise(t).then(|| normal(1 + t as u64));
        x = sampler.step(eps, t, x, noise);
    }
    x
}

/// `forward.png`: each row one image, noised (with one eps per image) at t = 0, 100, ..., 900
/// and T - 1.
fn save_forward_process(
    images: Tensor<4>,
    schedule: &NoiseSchedule,
    seed: u64,
    path: &Path,
) -> Result<()> {
    let [rows, ..] = images.dims();
    let device = images.device();
    let last = schedule.num_steps() - 1;
    let mut timesteps: Vec<usize> = (0..=last).step_by(STRIP_EVERY).collect();
    if timesteps.last() != Some(&last) {
        timesteps.push(last);
    }
    let noise = fixed_normal([rows, 28 * 28], seed, &device).reshape([rows, 1, 28, 28]);
    let columns: Vec<Tensor<4>> = timesteps
        .iter()
        .map(|&t| schedule.add_noise(images.clone(), noise.clone(), &vec![t; rows]))
        .collect();
    save_strips(columns, path)
}

/// Tiles columns of `[rows, 1, H, W]` images: row r holds image r of every column, in order.
fn save_strips(columns: Vec<Tensor<4>>, path: &Path) -> Result<()> {
    let count = columns.len();
    let stacked = Tensor::stack::<5>(columns, 1); // [rows, columns, 1, H, W]
    let [rows, _, channels, height, width] = stacked.dims();
    let images = stacked.reshape([rows * count, channels, height, width]);
    save_grid(images, count, PixelScale::MinusOneToOne, path)
}

fn timesteps_tensor(timesteps: &[usize], device: &Device) -> Tensor<1> {
    let values: Vec<f32> = timesteps.iter().map(|&t| t as f32).collect();
    Tensor::from_data(TensorData::new(values, [timesteps.len()]), device)
}

fn describe_sampler(sampler: SamplerKind) -> &'static str {
    match sampler {
        SamplerKind::Ddpm => "ddpm",
        SamplerKind::Ddim => "ddim",
    }
}

/// A sampler in words: `DDPM-1000`, `DDIM-50 (eta 0)`.
pub fn describe(sampling: SamplingSettings) -> String {
    match sampling.sampler {
        SamplerKind::Ddpm => format!("DDPM-{}", sampling.steps),
        SamplerKind::Ddim => format!("DDIM-{} (eta {})", sampling.steps, sampling.eta),
    }
}

/// An exponential moving average of a module's weights, kept off the autodiff graph:
/// `ema <- d ema + (1 - d) theta` after every optimizer step, with the warm-up of diffusers'
/// `EMAModel`, `d = min(decay, (1 + n) / (10 + n))` at update n, so that early samples are not
/// dominated by the random initialisation.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    pub model: M,
    pub decay: f64,
}

impl<M: Module> Ema<M> {
    /// Starts the average at the module's current weights.
    pub fn new(model: &M, decay: f64) -> Self {
        Self {
            model: model.valid(),
            decay,
        }
    }

    /// The decay used at update `n` (1-based).
    pub fn decay_at(&self, update: u64) -> f64 {
        let warmup = (1.0 + update as f64) / (10.0 + update as f64);
        self.decay.min(warmup)
    }

    /// Moves the average towards `model`'s weights; `update` counts from 1.
    pub fn update(&mut self, model: &M, update: u64) {
        let decay = self.decay_at(update);
        let mut collector = CollectWeights::default();
        model.visit(&mut collector);
        let mut blend = BlendWeights {
            weights: collector.weights.into_iter(),
            decay,
        };
        self.model = self.model.clone().map(&mut blend);
    }
}

/// Every float parameter, flattened, in visiting order and detached from the graph.
#[derive(Default)]
struct CollectWeights {
    weights: Vec<Tensor<1>>,
}

impl ModuleVisitor for CollectWeights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.weights.push(param.val().inner().flatten(0, D - 1));
    }
}

/// `ema <- decay ema + (1 - decay) weight`, parameter by parameter in the same order.
struct BlendWeights {
    weights: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for BlendWeights {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let weight = self.weights.next().expect("the same architecture");
        let decay = self.decay;
        param.map(|ema| {
            let weight = weight.reshape(ema.shape());
            ema.mul_scalar(decay) + weight.mul_scalar(1.0 - decay)
        })
    }
}

/// Scales all gradients together so that their global L2 norm is at most `max_norm`, as
/// PyTorch's `clip_grad_norm_`: `g <- g min(1, max_norm / (||g|| + 1e-6))`. Returns the clipped
/// gradients and the norm before clipping, `[1]`, on the device (no synchronisation).
pub fn clip_grad_norm<M: Module>(
    grads: GradientsParams,
    module: &M,
    max_norm: f64,
) -> (GradientsParams, Tensor<1>) {
    let mut norm = SquaredNorm {
        grads: &grads,
        sum: None,
    };
    module.visit(&mut norm);
    let norm = norm
        .sum
        .expect("the module has parameters with gradients")
        .sqrt();
    let scale = norm
        .clone()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    let mut scaler = ScaleGradients { grads, scale };
    module.visit(&mut scaler);
    (scaler.grads, norm)
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squared = grad.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squared,
                None => squared,
            });
        }
    }
}

struct ScaleGradients {
    grads: GradientsParams,
    scale: Tensor<1>,
}

impl ModuleVisitor for ScaleGradients {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(grad) = self.grads.remove::<D>(id) {
            let scale = self.scale.clone().reshape([1; D]);
            self.grads.register(id, grad * scale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn weights(layer: &Linear) -> Vec<f32> {
        layer.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn ema_update_by_hand() {
        let device = Device::flex();
        let start = LinearConfig::new(2, 1).init(&device);
        let mut ema = Ema::new(&start, 0.999);
        // Update 1 uses min(0.999, 2/11), update 1000 1001/1010, update 100000 0.999.
        assert!((ema.decay_at(1) - 2.0 / 11.0).abs() < 1e-15);
        assert!((ema.decay_at(1000) - 1001.0 / 1010.0).abs() < 1e-15);
        assert_eq!(ema.decay_at(100_000), 0.999);
        let mut moved = start.clone();
        moved.weight = moved.weight.map(|w| w.add_scalar(1.0));
        ema.update(&moved, 1);
        let d = 2.0 / 11.0;
        for (e, s) in weights(&ema.model).iter().zip(weights(&start)) {
            let expected = d * s as f64 + (1.0 - d) * (s as f64 + 1.0);
            assert!((*e as f64 - expected).abs() < 1e-6, "{e} vs {expected}");
        }
        ema.update(&moved, 100_000);
        let d2 = 0.999;
        for (e, s) in weights(&ema.model).iter().zip(weights(&start)) {
            let after_first = d * s as f64 + (1.0 - d) * (s as f64 + 1.0);
            let expected = d2 * after_first + (1.0 - d2) * (s as f64 + 1.0);
            assert!((*e as f64 - expected).abs() < 1e-6, "{e} vs {expected}");
        }
    }

    #[test]
    fn gradients_are_clipped_to_the_global_norm() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &device);
        // loss = 10 * sum(W x + b): dL/dW = 10 x per row, dL/db = 10.
        let loss = layer.forward(x).sum().mul_scalar(10.0);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let (clipped, norm) = clip_grad_norm(grads, &layer, 1.0);
        // ||g||^2 = 2 * 100 * (1 + 4 + 9) + 2 * 100 = 3000.
        let norm = norm.into_scalar::<f32>() as f64;
        assert!((norm - 3000f64.sqrt()).abs() < 1e-3, "{norm}");
        let weight = clipped
            .get::<2>(layer.weight.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let bias = clipped
            .get::<1>(layer.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let total: f64 = weight
            .iter()
            .chain(&bias)
            .map(|&g| (g as f64).powi(2))
            .sum();
        assert!((total.sqrt() - 1.0).abs() < 1e-5, "{}", total.sqrt());
        // The direction is kept: every entry scaled by 1 / sqrt(3000).
        assert!((bias[0] as f64 - 10.0 / 3000f64.sqrt()).abs() < 1e-5);
        // Small gradients pass unchanged.
        let loss = layer
            .forward(Tensor::<2>::from_floats([[0.01, 0.0, 0.0]], &device))
            .sum()
            .mul_scalar(0.01);
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        let (kept, _) = clip_grad_norm(grads, &layer, 1.0);
        let bias = kept
            .get::<1>(layer.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(bias.iter().all(|b| (b - 0.01).abs() < 1e-7), "{bias:?}");
    }

    #[test]
    fn a_few_steps_on_a_fixed_batch_lower_the_loss() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let common = <CommonArgs as clap::FromArgMatches>::from_arg_matches(
            &<CommonArgs as clap::Args>::augment_args(clap::Command::new("t"))
                .get_matches_from(["t"]),
        )
        .unwrap();
        let sampling = SamplingSettings {
            sampler: SamplerKind::Ddim,
            steps: 5,
            eta: 0.0,
        };
        let mut settings = DdpmSettings::from_args(common, Preset::Tiny, sampling, 0.999, 0);
        settings.lr = 2e-3;
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
            let values = model
                .step(batch.clone(), step, &settings)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            losses.push(values[0]);
        }
        let first = losses[..5].iter().sum::<f32>() / 5.0;
        let last = losses[35..].iter().sum::<f32>() / 5.0;
        assert!(last < 0.7 * first, "loss {first} -> {last}");
    }
}
