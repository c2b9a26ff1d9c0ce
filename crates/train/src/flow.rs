//! Training RealNVP on Fashion-MNIST by maximum likelihood: for each batch of 8-bit images, fresh
//! dequantisation noise `u ~ U[0, 1)`, and one Adam step on the mean negative log-likelihood in
//! bits per dimension ([`genmodels::flow::RealNvp::negative_log_likelihood`]). Before the first
//! step the ActNorms are initialised from the first batch. After each epoch, the exact test
//! NLL in bits per dimension (one fixed draw of `u` per test image) goes to `metrics.csv`; when
//! training ends, samples at temperature 1 and 0.7 and interpolations in z between test images.

use std::path::{Path, PathBuf};

use crate::adam::AdamConfig;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::flow::{
    CouplingNetwork, FLOW, FlowSource, RealNvp, RealNvpConfig, bits_per_dim, logit_transform,
};
use genmodels_data::{Batch, IMAGE_PIXELS, PixelRange, Split};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution as _, Uniform};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointWriter};
use crate::cli::{CommonArgs, parse_positive_f64};
use crate::fit::{
    EpochMetrics, FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit, single,
};
use crate::grid::{PixelScale, save_grid};
use crate::optim::TrainedNetwork;
use crate::registry::{Opened, SourceOptions};
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "realnvp";
/// Test images per forward pass when scoring the split.
const EVAL_BATCH: usize = 500;
/// Pairs of test images interpolated between, one row each, and the points on each row.
const INTERPOLATION_ROWS: usize = 6;
const INTERPOLATION_STEPS: usize = 10;

/// The flags of a RealNVP run.
#[derive(Debug, Clone, clap::Args)]
pub struct FlowArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Scales of the multi-scale architecture (28 -> 14 -> 7 for 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=3))]
    pub scales: u32,
    /// Channels inside each coupling network.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub hidden: u32,
    /// Residual blocks of each coupling network.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub blocks: u32,
    /// The coupling networks: resnet (the paper's) or unet.
    #[arg(long, value_enum, default_value = "resnet")]
    pub coupling: CouplingArg,
    /// Temperature of the grid drawn after every epoch.
    #[arg(long, default_value_t = 0.7, value_parser = parse_positive_f64)]
    pub temperature: f64,
}

/// [`CouplingNetwork`] as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CouplingArg {
    Resnet,
    Unet,
}

/// Every setting of a RealNVP run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub optimizer: AdamConfig,
    pub flow: RealNvpConfig,
    pub max_grad_norm: f64,
    pub epoch_temperature: f64,
}

impl FlowSettings {
    /// Adam 1e-3 (epsilon 1e-8), 10 epochs, the gradient's global norm clipped at 100, where a
    /// flag is absent.
    pub fn new(args: FlowArgs) -> Self {
        let coupling = match args.coupling {
            CouplingArg::Resnet => CouplingNetwork::ResNet,
            CouplingArg::Unet => CouplingNetwork::UNet,
        };
        Self {
            run: RunSettings::new(args.common, 10, 1e-3),
            optimizer: AdamConfig::new().with_epsilon(1e-8),
            flow: RealNvpConfig::new()
                .with_scales(args.scales as usize)
                .with_hidden_channels(args.hidden as usize)
                .with_residual_blocks(args.blocks as usize)
                .with_coupling_network(coupling),
            max_grad_norm: 100.0,
            epoch_temperature: args.temperature,
        }
    }
}

/// The flow and its optimizer: one training iteration is [`Trainer::step`].
pub struct Trainer {
    pub flow: TrainedFlow,
    settings: FlowSettings,
}

/// The flow with its optimizer, and whether its ActNorms hold their data-dependent
/// initialisation: a fresh run sets it from its first batch; a checkpoint or `--init-from`
/// brings it.
pub struct TrainedFlow {
    pub trained: TrainedNetwork<RealNvp>,
    initialized: bool,
}

impl CheckpointPart for TrainedFlow {
    fn save(&self, writer: &CheckpointWriter, name: &str) -> Result<()> {
        self.trained.save(writer, name)
    }

    fn load(&mut self, checkpoint: &Checkpoint, name: &str) -> Result<()> {
        self.trained.load(checkpoint, name)?;
        self.initialized = true;
        Ok(())
    }

    fn init_from(&mut self, file: &Path) -> Result<()> {
        self.trained.init_from(file)?;
        self.initialized = true;
        Ok(())
    }

    fn export(&self, dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
        self.trained.export(dir, name)
    }
}

impl Trainer {
    /// A freshly initialised flow and Adam state (`device` should be an autodiff device).
    pub fn new(settings: &FlowSettings, device: &Device) -> Self {
        Self {
            flow: TrainedFlow {
                trained: TrainedNetwork::new(settings.flow.init(device), settings.optimizer.init()),
                initialized: false,
            },
            settings: settings.clone(),
        }
    }

    /// One Adam step on the batch's mean NLL in bits per dimension, `images` in [0, 1] (8-bit
    /// values divided by 255), with fresh dequantisation noise; the ActNorms are initialised
    /// from this batch first if they are not yet. Returns, detached, the bits per dimension
    /// and the gradient norm before clipping.
    pub fn step(&mut self, images: Tensor<4>) -> StepMetrics {
        let pixels = (images * 255.0).round(); // [B, 1, 28, 28], 0..=255
        let uniform = pixels.random_like(Distribution::Default); // [B, 1, 28, 28] in [0, 1)
        let TrainedFlow {
            trained,
            initialized,
        } = &mut self.flow;
        if !*initialized {
            let y = (pixels.clone() + uniform.clone()) / 256.0;
            trained.network = trained
                .network
                .clone()
                .initialize_actnorm(logit_transform(y).0);
            *initialized = true;
        }
        let flow = &trained.network;
        let nll = flow.negative_log_likelihood(pixels, uniform); // [B] nats
        let loss = bits_per_dim(nll, flow.dims()).mean();
        let (lr, max_grad_norm) = (self.settings.run.lr, self.settings.max_grad_norm);
        let norm = trained.step_clipped(loss.clone(), lr, max_grad_norm);
        StepMetrics::new()
            .with("train_bpd", loss.detach().inner())
            .with("grad_norm", norm)
    }

    fn source(&self, temperature: f64) -> FlowSource {
        FlowSource {
            flow: self.flow.trained.network.valid(),
            temperature,
        }
    }
}

/// The exact test negative log-likelihood in bits per dimension: the mean over `split` of
/// `-log p(x) / (D ln 2)`, with one draw of the dequantisation noise per image from `seed`.
pub fn split_bits_per_dim(flow: &RealNvp, split: &Split, seed: u64, device: &Device) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let unit = Uniform::new(0.0f32, 1.0).expect("a valid range");
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut total = 0.0;
    for chunk in indices.chunks(EVAL_BATCH) {
        let shape = [chunk.len(), 1, 28, 28];
        let pixels = split.images_tensor(chunk, PixelRange::ZeroToOne, device) * 255.0;
        let noise: Vec<f32> = (0..chunk.len() * IMAGE_PIXELS)
            .map(|_| unit.sample(&mut rng))
            .collect();
        let uniform = Tensor::from_data(TensorData::new(noise, shape), device);
        let nll = flow.negative_log_likelihood(pixels.round(), uniform);
        total += bits_per_dim(nll, flow.dims()).sum().into_scalar::<f32>() as f64;
    }
    total / split.len() as f64
}

impl Trainable for Trainer {
    fn step(&mut self, batches: Vec<Batch>, _step: u64) -> StepMetrics {
        Trainer::step(self, single(batches).images)
    }

    fn epoch_metric_names(&self) -> &'static [&'static str] {
        &["test_bpd"]
    }

    /// The exact NLL of the test split, in bits per dimension.
    fn end_epoch(&mut self, context: &RunContext, epoch: usize) -> Result<EpochMetrics> {
        let bpd = split_bits_per_dim(
            &self.flow.trained.network.valid(),
            context.test,
            context.seed,
            context.device,
        );
        println!("{MODEL}: epoch {epoch} test NLL {bpd:.4} bits/dim");
        Ok(vec![("test_bpd", bpd)])
    }

    /// Samples at temperature 1 and 0.7, and interpolations in z between test images.
    fn end_training(&mut self, context: &RunContext) -> Result<()> {
        for temperature in [1.0, 0.7] {
            let path = context
                .run
                .path(format!("samples/final_t{temperature}.png"));
            let images = self
                .source(temperature)
                .draw(64, context.seed, context.device)
                .images;
            save_grid(images, 8, PixelScale::ZeroToOne, &path)?;
            println!(
                "  {}  64 samples at temperature {temperature}",
                path.display()
            );
        }
        let path = context.run.path("interpolation.png");
        save_interpolation(
            &self.flow.trained.network.valid(),
            context.test,
            context.device,
            &path,
        )?;
        println!("  interpolation.png   test images, then 8 points on the line between their z");
        Ok(())
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.source(self.settings.epoch_temperature)))
    }
}

/// Each row: a test image, 8 decodes evenly spaced on the segment between its z and another
/// test image's (ends excluded), that image.
fn save_interpolation(flow: &RealNvp, test: &Split, device: &Device, path: &Path) -> Result<()> {
    let pairs: Vec<usize> = (0..2 * INTERPOLATION_ROWS)
        .map(|i| i * 37 % test.len())
        .collect();
    let images = test.images_tensor(&pairs, PixelRange::ZeroToOne, device); // [12, 1, 28, 28]
    let z = flow.encode(images.clone()); // [12, D]
    let mut rows = Vec::new();
    for row in 0..INTERPOLATION_ROWS {
        let (a, b) = (2 * row, 2 * row + 1);
        let (z_a, z_b) = (z.clone().narrow(0, a, 1), z.clone().narrow(0, b, 1));
        let points: Vec<Tensor<2>> = (1..INTERPOLATION_STEPS - 1)
            .map(|k| {
                let w = k as f64 / (INTERPOLATION_STEPS - 1) as f64;
                z_a.clone() * (1.0 - w) + z_b.clone() * w
            })
            .collect();
        rows.push(images.clone().narrow(0, a, 1));
        rows.push(flow.decode(Tensor::cat(points, 0)));
        rows.push(images.clone().narrow(0, b, 1));
    }
    save_grid(
        Tensor::cat(rows, 0),
        INTERPOLATION_STEPS,
        PixelScale::ZeroToOne,
        path,
    )
}

impl Checkpointed for Trainer {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![(FLOW, &mut self.flow)]
    }
}

/// Trains with `settings`, writing grids, metrics and checkpoints into the run folder.
pub fn train(settings: &FlowSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::ZeroToOne);
    fit(&plan, settings, |device| Ok(Trainer::new(settings, device)))
}

/// The flow of a run, drawing at `options.temperature` (default 1).
pub fn open_source(run: &RunFolder, options: &SourceOptions, device: &Device) -> Opened {
    let flow = run.load(FLOW, |config: RealNvpConfig| config.init(device))?;
    Ok(Box::new(FlowSource {
        flow,
        temperature: options.temperature.unwrap_or(1.0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_lower_the_bits_per_dimension_of_a_fixed_batch() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let args = FlowArgs {
            common: CommonArgs::default(),
            scales: 2,
            hidden: 8,
            blocks: 1,
            coupling: CouplingArg::Resnet,
            temperature: 0.7,
        };
        let mut trainer = Trainer::new(&FlowSettings::new(args), &device);
        // Eight images of a bright bar on a dark background, at different heights.
        let mut pixels = vec![0.0f32; 8 * 784];
        for (i, p) in pixels.iter_mut().enumerate() {
            let (image, y) = (i / 784, (i / 28) % 28);
            if (image * 3..image * 3 + 5).contains(&y) {
                *p = 1.0;
            }
        }
        let batch = Tensor::<4>::from_data(TensorData::new(pixels, [8, 1, 28, 28]), &device);
        let mut bits = Vec::new();
        for _ in 0..30 {
            let metrics = trainer.step(batch.clone());
            bits.push(
                metrics
                    .value("train_bpd")
                    .unwrap()
                    .clone()
                    .into_scalar::<f32>(),
            );
        }
        assert!(trainer.flow.initialized);
        let first = bits[..5].iter().sum::<f32>() / 5.0;
        let last = bits[25..].iter().sum::<f32>() / 5.0;
        assert!(last < 0.8 * first, "bits/dim {first} -> {last}");
        assert!(bits.iter().all(|b| b.is_finite()));
    }
}
