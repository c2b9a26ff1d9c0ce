//! Training a latent diffusion model (Rombach et al., 2022) on the codes of a trained VAE: for
//! each batch the frozen encoder gives the standardised codes `z0`
//! ([`genmodels::diffusion::LatentCodec`]), then DDPM's Algorithm 1 on them: `t ~ U{0..T-1}`,
//! `eps ~ N(0, I)`, minimise `||eps - eps_theta(z_t, t[, y])||^2`. The denoiser is a residual
//! MLP, or with `--denoiser unet` a small U-Net for the `C x 7 x 7` codes of a convolutional
//! autoencoder (`vae --latent-channels C`). With `--conditional` the
//! denoiser also takes the class, replaced by the null label with probability
//! `--label-dropout` (classifier-free guidance, Ho & Salimans, 2022). An exponential moving
//! average of the weights is kept and draws every sample; the VAE and its code statistics are
//! saved in every checkpoint, so a run folder is complete without the VAE's.

use std::path::{Path, PathBuf};

use crate::adam::AdamConfig;
use anyhow::{Context, Result, bail, ensure};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::diffusion::{
    AUTOENCODER, CodeStatistics, DENOISER, Denoiser, EMA, Guidance, LatentCodec,
    LatentDenoiserConfig, LatentDiffusionSource, LatentNetwork, LatentNetworkConfig, NoiseSchedule,
    SCHEDULE, SamplingSettings, ScheduleConfig, drop_labels, timesteps_tensor,
};
use genmodels::vae::{VAE, VaeConfig};
use genmodels_data::{Batch, PixelRange};
use serde::{Deserialize, Serialize};

use crate::backend::select_device;
use crate::checkpoint::{Checkpoint, CheckpointWriter};
use crate::cli::{CommonArgs, ConditioningArgs, DiffusionArgs, parse_unit_interval};
use crate::ddpm::draw_timesteps;
use crate::fit::{FitPlan, RunSettings, StepMetrics, Trainable, fit_on, single};
use crate::interop::export_network;
use crate::latent::encode_split;
use crate::optim::AveragedNetwork;
use crate::registry::{Opened, SourceOptions};
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "ldm";
/// The models whose runs can serve as the autoencoder.
const AUTOENCODER_MODELS: [&str; 2] = ["vae", "ae"];

/// The two denoisers of latent codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DenoiserKind {
    /// A residual MLP on the code as a vector (any autoencoder).
    Mlp,
    /// A small U-Net on a C x 7 x 7 code (an autoencoder trained with --latent-channels C).
    Unet,
}

/// The flags of a latent diffusion run.
#[derive(Debug, Clone, clap::Args)]
pub struct LdmArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The trained VAE (or plain autoencoder) run whose codes mu are diffused: a run folder
    /// (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/vae")]
    pub autoencoder: PathBuf,
    /// The denoiser: mlp, or unet for the spatial code of `vae --latent-channels C`.
    #[arg(long, value_enum, default_value = "mlp")]
    pub denoiser: DenoiserKind,
    /// Width of the denoiser: the MLP's units [default: 256] or the U-Net's channels
    /// [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u32).range(8..))]
    pub hidden: Option<u32>,
    /// Residual blocks of the MLP [default: 4], or of the U-Net's level on each side
    /// [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub blocks: Option<u32>,
    #[command(flatten)]
    pub conditioning: ConditioningArgs,
    /// How the grid after every epoch is drawn.
    #[command(flatten)]
    pub sampling: DiffusionArgs,
    /// Decay of the exponential moving average of the weights used for sampling.
    #[arg(long, default_value_t = 0.999, value_parser = parse_unit_interval)]
    pub ema_decay: f64,
}

/// Every setting of a latent diffusion run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LdmSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub optimizer: AdamConfig,
    /// The checkpoint the autoencoder came from.
    pub autoencoder_checkpoint: PathBuf,
    pub autoencoder: VaeConfig,
    pub denoiser: LatentNetworkConfig,
    pub schedule: ScheduleConfig,
    /// Probability of the null label in training (conditional denoisers only).
    pub label_dropout: f64,
    pub ema_decay: f64,
    pub max_grad_norm: f64,
    /// The grid drawn after every epoch, and its guidance scale (conditional denoisers only).
    pub epoch_sampling: SamplingSettings,
    pub epoch_guidance: f64,
}

impl LdmSettings {
    /// Adam 1e-3 (epsilon 1e-8), 30 epochs, EMA 0.999, clipping at 1, T = 1000 linear betas from
    /// 1e-4 to 0.02, where a flag is absent; the autoencoder's Config from its run.
    pub fn new(args: LdmArgs) -> Result<Self> {
        let autoencoder = open_autoencoder_run(&args.autoencoder)?;
        let vae: VaeConfig = autoencoder.config(VAE)?;
        Ok(Self::with_autoencoder(
            args,
            autoencoder.checkpoint.dir,
            vae,
        ))
    }

    /// The settings of `args` for the autoencoder `vae` of the checkpoint folder `checkpoint`.
    pub fn with_autoencoder(args: LdmArgs, checkpoint: PathBuf, vae: VaeConfig) -> Self {
        let num_classes = args.conditioning.num_classes();
        let denoiser = match args.denoiser {
            DenoiserKind::Mlp => {
                let mut config = LatentDenoiserConfig::new()
                    .with_latent_dim(vae.latent_dim)
                    .with_num_classes(num_classes);
                config.hidden = args.hidden.map_or(config.hidden, |h| h as usize);
                config.blocks = args.blocks.map_or(config.blocks, |b| b as usize);
                LatentNetworkConfig::Mlp(config)
            }
            DenoiserKind::Unet => {
                let channels = args.hidden.unwrap_or(64) as usize;
                // A vector code is refused by `validate`; the U-Net is built for it all the same.
                let code_channels = vae.latent_channels.unwrap_or(vae.latent_dim);
                let mut config =
                    LatentNetworkConfig::small_unet(code_channels, channels, num_classes);
                config.blocks_per_level =
                    args.blocks.map_or(config.blocks_per_level, |b| b as usize);
                LatentNetworkConfig::UNet(config)
            }
        };
        Self {
            run: RunSettings::new(args.common, 30, 1e-3),
            optimizer: AdamConfig::new().with_epsilon(1e-8),
            autoencoder_checkpoint: checkpoint,
            autoencoder: vae,
            denoiser,
            schedule: ScheduleConfig::default(),
            label_dropout: args.conditioning.label_dropout,
            ema_decay: args.ema_decay,
            max_grad_norm: 1.0,
            epoch_sampling: args.sampling.settings(),
            epoch_guidance: args.conditioning.guidance,
        }
    }

    fn conditional(&self) -> bool {
        self.denoiser.num_classes() > 0
    }

    /// Refuses a U-Net for a vector code and sampler settings the schedule cannot honour,
    /// before anything is trained.
    fn validate(&self) -> Result<NoiseSchedule> {
        if let LatentNetworkConfig::UNet(unet) = &self.denoiser {
            let groups = unet.groups;
            ensure!(
                self.autoencoder.latent_channels.is_some(),
                "--denoiser unet: the autoencoder {} has a vector code; train one with a \
                 spatial code (`vae --latent-channels C`) or use --denoiser mlp",
                self.autoencoder_checkpoint.display()
            );
            ensure!(
                unet.base_channels.is_multiple_of(groups),
                "--hidden {}: the U-Net's channels must be a multiple of {groups}",
                unet.base_channels
            );
        }
        let schedule = self.schedule.build()?;
        self.epoch_sampling
            .build(&schedule)
            .context("--sample-steps")?;
        Ok(schedule)
    }
}

/// The run `--autoencoder` names, which must be a VAE's or an autoencoder's.
fn open_autoencoder_run(from: &Path) -> Result<RunFolder> {
    let run = RunFolder::open(from).with_context(|| format!("--autoencoder {}", from.display()))?;
    if !AUTOENCODER_MODELS.contains(&run.model()) {
        bail!(
            "--autoencoder {}: a `{}` run, not a VAE's (train one with the `vae` example)",
            from.display(),
            run.model()
        );
    }
    Ok(run)
}

/// The denoiser being trained, its weight average, its optimizer and the frozen autoencoder:
/// one training iteration is [`LatentDiffusion::step`].
pub struct LatentDiffusion {
    pub denoiser: AveragedNetwork<LatentNetwork>,
    /// On the device without autodiff: it is never trained.
    codec: LatentCodec,
    schedule: NoiseSchedule,
    settings: LdmSettings,
}

impl LatentDiffusion {
    /// A freshly initialised denoiser, its EMA copy and Adam state (`device` should be an
    /// autodiff device), with `codec` as the autoencoder.
    pub fn new(settings: &LdmSettings, codec: LatentCodec, device: &Device) -> Result<Self> {
        let denoiser = settings.denoiser.init(device);
        Ok(Self {
            denoiser: AveragedNetwork::new(denoiser, &settings.optimizer, settings.ema_decay),
            codec: codec.valid(),
            schedule: settings.validate()?,
            settings: settings.clone(),
        })
    }

    /// A model whose autoencoder is a fresh network with unit code statistics, to be loaded from
    /// a checkpoint.
    pub(crate) fn unfitted(settings: &LdmSettings, device: &Device) -> Result<Self> {
        let codec = LatentCodec::unfitted(settings.autoencoder.init(device));
        Self::new(settings, codec, device)
    }

    /// One Adam step on `||eps - eps_theta(z_t, t[, y])||^2` for the codes of `batch`, with the
    /// gradient's global norm clipped, then EMA update number `step`. Returns, detached, the
    /// loss and the gradient norm before clipping.
    pub fn step(&mut self, batch: Batch, step: u64) -> StepMetrics {
        let device = batch.images.device();
        let z0 = Tensor::from_inner(self.codec.encode(batch.images.inner())); // [B, C, H, W]
        let [size, ..] = z0.dims();
        let conditional = self.settings.conditional();
        let (timesteps, dropped) = draw_timesteps(
            self.settings.run.common.seed,
            step,
            size,
            self.schedule.num_steps(),
            conditional.then_some(self.settings.label_dropout),
        );
        let labels = conditional.then(|| {
            drop_labels(batch.labels, &dropped, self.denoiser.network().null_label()) // [B]
        });
        let noise = Tensor::<4>::random(z0.shape(), Distribution::Normal(0.0, 1.0), &device);
        let z_t = self.schedule.add_noise(z0, noise.clone(), &timesteps); // [B, C, H, W]
        let t = timesteps_tensor(&timesteps, &device);
        let predicted = self.denoiser.network().predict(z_t, t, labels); // [B, C, H, W]
        let (lr, max_grad_norm) = (self.settings.run.lr, self.settings.max_grad_norm);
        self.denoiser
            .noise_prediction_step(predicted, noise, lr, max_grad_norm, step)
    }
}

impl Trainable for LatentDiffusion {
    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
        LatentDiffusion::step(self, single(batches), step)
    }

    /// The EMA weights, a conditional model's classes in turn at the epoch guidance scale.
    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        let guidance = self.settings.conditional().then_some(Guidance {
            scale: self.settings.epoch_guidance,
            class: None,
        });
        let source = LatentDiffusionSource::new(
            self.denoiser.ema.model.clone(),
            self.codec.clone(),
            &self.schedule,
            self.settings.epoch_sampling,
        )
        .expect("validated when the run started")
        .with_guidance(guidance)
        .expect("a conditional model's own classes");
        Some(Box::new(source))
    }
}

impl Checkpointed for LatentDiffusion {
    /// The denoiser with its moving average, and the frozen autoencoder with its code
    /// statistics, so that a run folder draws images without the autoencoder's run.
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![
            (DENOISER, &mut self.denoiser),
            (AUTOENCODER, &mut self.codec),
        ]
    }
}

/// The frozen autoencoder: saved and loaded whole (the VAE and the code statistics); only the
/// VAE is exported, and `--init-from` cannot set it (it comes from `--autoencoder`).
impl CheckpointPart for LatentCodec {
    fn save(&self, writer: &CheckpointWriter, name: &str) -> Result<()> {
        writer.module(name, self)
    }

    fn load(&mut self, checkpoint: &Checkpoint, name: &str) -> Result<()> {
        *self = checkpoint.load_module(name, self.clone())?;
        Ok(())
    }

    fn init_from(&mut self, _file: &Path) -> Result<()> {
        bail!("the autoencoder is frozen: it is the VAE of --autoencoder")
    }

    fn export(&self, dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
        Ok(vec![export_network(dir, name, &self.vae)?])
    }
}

/// Trains a latent diffusion model with `settings` on the codes of the VAE of
/// `--autoencoder`, writing grids, metrics and checkpoints into the run folder.
pub fn train(settings: &LdmSettings) -> Result<TrainSummary> {
    settings.validate()?;
    let common = &settings.run.common;
    let data = genmodels_data::load_or_fetch_in(common.data_dir.as_deref())?;
    let codec = if common.resume {
        // The checkpoint holds the autoencoder and its statistics.
        None
    } else {
        let selected = select_device(common.backend)?;
        let vae = RunFolder::open(&settings.autoencoder_checkpoint)?
            .load(VAE, |config: VaeConfig| config.init(&selected.device))?;
        let codes = encode_split(&vae, &data.train, &selected.device);
        let statistics = CodeStatistics::of(&codes, vae.code_shape());
        ensure!(
            statistics
                .mean
                .iter()
                .chain(&statistics.std)
                .all(|v| v.is_finite()),
            "--autoencoder {}: its codes are not finite",
            settings.autoencoder_checkpoint.display()
        );
        println!(
            "{MODEL}: {}x{}x{} codes of {} training images from {}, standardised per channel (std {:.3} to {:.3})",
            vae.code_shape()[0],
            vae.code_shape()[1],
            vae.code_shape()[2],
            data.train.len(),
            settings.autoencoder_checkpoint.display(),
            statistics.std.iter().copied().fold(f32::INFINITY, f32::min),
            statistics.std.iter().copied().fold(0.0, f32::max),
        );
        Some((vae, statistics))
    };
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::ZeroToOne);
    fit_on(&plan, settings, Some(data), |device| match codec {
        Some((vae, statistics)) => {
            let codec = LatentCodec::new(vae, &statistics);
            LatentDiffusion::new(settings, codec, device)
        }
        None => LatentDiffusion::unfitted(settings, device),
    })
}

/// The EMA denoiser and the autoencoder of a run, with the sampler, class and guidance scale of
/// `options`.
pub fn open_source(run: &RunFolder, options: &SourceOptions, device: &Device) -> Opened {
    let denoiser = run.load_record(DENOISER, EMA, |config: LatentNetworkConfig| {
        config.init(device)
    })?;
    let codec = run.load(AUTOENCODER, |config: VaeConfig| {
        LatentCodec::unfitted(config.init(device))
    })?;
    let schedule = run.config::<ScheduleConfig>(SCHEDULE)?.build()?;
    let source = LatentDiffusionSource::new(denoiser, codec, &schedule, options.sampling)
        .context("--sample-steps")?
        .with_guidance(options.guidance())?;
    Ok(Box::new(source))
}

/// The flags of `guidance`: which run, which guidance scales, how many samples each.
#[derive(Debug, Clone, clap::Args)]
pub struct GuidanceSweepArgs {
    /// A conditional run folder (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/ldm")]
    pub from: PathBuf,
    /// The guidance scales w, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,3,5",
          value_parser = crate::cli::parse_non_negative_f64)]
    pub scales: Vec<f64>,
    /// Samples drawn and scored at each scale.
    #[arg(long, default_value_t = 10_000)]
    pub samples: usize,
    /// Seed of the noise: the same at every scale.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The sampler.
    #[command(flatten)]
    pub diffusion: DiffusionArgs,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = crate::BackendChoice::Auto)]
    pub backend: crate::BackendChoice,
    /// Folder with the Fashion-MNIST IDX files [default: $GENMODELS_DATA_DIR or
    /// datasets/fashion-mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Test images the samples are compared with.
    #[arg(long, default_value_t = 10_000)]
    pub reference_images: usize,
}

/// One guidance scale of [`guidance_sweep`].
#[derive(Debug, Clone, Serialize)]
pub struct GuidanceRow {
    pub scale: f64,
    pub fid: f64,
    /// The fraction of samples the classifier assigns to the class they were asked for.
    pub accuracy: f64,
    /// The within-class spread of the samples against the data's: 1 when the samples of a class
    /// vary as much as its test images, 0 for one image per class.
    pub spread: f64,
    /// KL of the class histogram to uniform: 0 when every class is drawn as often.
    pub kl_to_uniform: f64,
    pub sampling_seconds: f64,
}

/// `guidance`: `eval` of a conditional run at each guidance scale (`eval_guidance_<w>.json`),
/// then `guidance.csv` and `guidance.png` (FID and requested-class accuracy against w) in the
/// run folder.
pub fn guidance_sweep(args: &GuidanceSweepArgs) -> Result<Vec<GuidanceRow>> {
    ensure!(
        !args.scales.is_empty(),
        "--scales: give at least one guidance scale"
    );
    let run = crate::registry::open_run(&[MODEL], Some(&args.from))?;
    let mut rows = Vec::new();
    for &scale in &args.scales {
        let request = crate::eval::EvalRequest {
            from: Some(args.from.clone()),
            images: None,
            grid: Default::default(),
            samples: args.samples,
            seed: args.seed,
            backend: args.backend,
            data_dir: args.data_dir.clone(),
            cache_dir: None,
            reference_images: args.reference_images,
            sampling: args.diffusion.settings(),
            guidance: Some(scale),
            export: None,
            output: Some(run.root.join(format!("eval_guidance_{scale}.json"))),
        };
        let report = crate::eval::evaluate(&request)?;
        rows.push(GuidanceRow {
            scale,
            fid: report.fid,
            accuracy: report
                .conditional_accuracy
                .context("the run's denoiser is not class-conditional")?,
            spread: report
                .within_class_spread
                .as_ref()
                .map_or(f64::NAN, |spread| spread.mean_ratio),
            kl_to_uniform: report.coverage.kl_to_uniform,
            sampling_seconds: report.sampling_seconds,
        });
    }
    let mut csv = String::from(
        "guidance,fid,requested_class_accuracy,within_class_spread,kl_to_uniform,sampling_s\n",
    );
    for row in &rows {
        csv += &format!(
            "{},{:.4},{:.4},{:.4},{:.5},{:.1}\n",
            row.scale, row.fid, row.accuracy, row.spread, row.kl_to_uniform, row.sampling_seconds
        );
    }
    let table = run.root.join("guidance.csv");
    crate::fsutil::write_atomic(&table, csv.as_bytes())?;
    let figure = run.root.join("guidance.png");
    save_guidance_plot(&rows, args.samples, &figure)?;
    println!("{MODEL}: w, FID, requested-class accuracy, within-class spread");
    for row in &rows {
        println!(
            "  w = {}: FID {:.2}, accuracy {:.4}, spread {:.3}",
            row.scale, row.fid, row.accuracy, row.spread
        );
    }
    println!(
        "{MODEL}: wrote {} and {}",
        table.display(),
        figure.display()
    );
    Ok(rows)
}

/// Three panels against the guidance scale: FID (lower is closer to the data), the
/// requested-class accuracy (higher is more faithful to the class) and the within-class spread
/// (lower is less diverse).
fn save_guidance_plot(rows: &[GuidanceRow], samples: usize, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let max_scale = rows.iter().map(|r| r.scale).fold(1.0, f64::max);
    let max_fid = rows.iter().map(|r| r.fid).fold(1.0, f64::max) * 1.1;
    type Column = fn(&GuidanceRow) -> f64;
    let panels: [(&str, f64, RGBColor, Column); 3] = [
        ("FID", max_fid, BLUE, |r| r.fid),
        ("requested-class accuracy", 1.0, RED, |r| r.accuracy),
        ("within-class spread / data's", 1.0, GREEN, |r| r.spread),
    ];
    crate::grid::save_plot((1050, 350), path, |root| {
        root.fill(&WHITE)?;
        for (area, (name, top, colour, column)) in root.split_evenly((1, 3)).iter().zip(panels) {
            let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.scale, column(r))).collect();
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name}, {samples} samples"), ("sans-serif", 18))
                .margin(14)
                .x_label_area_size(36)
                .y_label_area_size(50)
                .build_cartesian_2d(0.0..max_scale * 1.05, 0.0..top)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("guidance scale w")
                .draw()?;
            chart.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?;
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_flags;
    use burn::tensor::TensorData;
    use genmodels::cgan::class_labels;

    /// Settings of a tiny conditional model, without a VAE run.
    fn tiny_settings() -> LdmSettings {
        let flags = "--epochs 1 --lr 2e-3 --hidden 32 --blocks 2 --conditional --label-dropout 0.5 \
                     --ema-decay 0.99 --sampler ddim --sample-steps 5";
        let args = parse_flags::<LdmArgs>(flags.split_whitespace()).unwrap();
        let vae = VaeConfig::new()
            .with_latent_dim(4)
            .with_channels([4, 8])
            .with_hidden(16);
        let mut settings = LdmSettings::with_autoencoder(args, "unused".into(), vae);
        settings.denoiser = settings.denoiser.with_time_embedding_dim(16);
        settings
    }

    #[test]
    fn steps_train_the_denoiser_alone_and_lower_its_loss() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let settings = tiny_settings();
        let mut model = LatentDiffusion::unfitted(&settings, &device).unwrap();
        let codec_before = model.codec.clone();
        let mut pixels = vec![0.0f32; 16 * 28 * 28];
        for (i, p) in pixels.iter_mut().enumerate() {
            let (image, y) = (i / 784, (i / 28) % 28);
            *p = if y < 4 + image { 1.0 } else { 0.0 };
        }
        let batch = || Batch {
            images: Tensor::from_data(TensorData::new(pixels.clone(), [16, 1, 28, 28]), &device),
            labels: class_labels(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5], &device),
        };
        let mut losses = Vec::new();
        for step in 1..=60 {
            let metrics = model.step(batch(), step);
            losses.push(metrics.value("loss").unwrap().clone().into_scalar::<f32>());
        }
        let first = losses[..10].iter().sum::<f32>() / 10.0;
        let last = losses[50..].iter().sum::<f32>() / 10.0;
        assert!(last < 0.8 * first, "loss {first} -> {last}");
        // The autoencoder is frozen: its weights are those it started with.
        let before = codec_before.vae.encoder.forward(batch().images.inner()).mu;
        let after = model.codec.vae.encoder.forward(batch().images.inner()).mu;
        assert!(before.all_close(after, Some(0.0), Some(0.0)));
        // The EMA denoiser draws the classes in turn.
        let source = model.image_source().unwrap();
        assert_eq!(
            source.draw(3, 0, &Device::flex()).classes,
            Some(vec![0, 1, 2])
        );
    }
}
