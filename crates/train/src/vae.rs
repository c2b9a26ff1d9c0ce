//! Training a VAE (or the plain autoencoder) on Fashion-MNIST: one Adam step on the negative
//! ELBO per batch, and after each epoch the same terms on the test split; then the analysis of
//! its latent space ([`crate::latent`]).

use std::path::PathBuf;

use crate::adam::AdamConfig;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::vae::{Code, VAE, Vae, VaeConfig, spatial_latent_dim};
use genmodels_data::{Batch, IMAGE_PIXELS, PixelRange, Split};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendChoice, select_device};
use crate::cli::{CommonArgs, parse_non_negative_f64};
use crate::fit::{
    EpochMetrics, FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit, single,
};
use crate::grid::{PixelScale, save_above};
use crate::latent::{AnalysisInput, Report, TsneSettings, analyze, score_split};
use crate::optim::TrainedNetwork;
use crate::registry::{Opened, SourceOptions};
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// Test images shown in the reconstruction grid, each above its reconstruction.
const RECON_IMAGES: usize = 32;

/// The two models the example trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Variational autoencoder: sampled z, KL term.
    Vae,
    /// Plain autoencoder: z = mu, no KL term.
    Ae,
}

impl ModelKind {
    /// The model name: run folder `runs/<name>` and the checkpoint's model.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Vae => "vae",
            ModelKind::Ae => "ae",
        }
    }
}

/// The flags of a VAE run.
#[derive(Debug, Clone, clap::Args)]
pub struct VaeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// vae: sampled z and a KL term; ae: deterministic z = mu, no KL term.
    #[arg(long, value_enum, default_value = "vae")]
    pub model: ModelKind,
    /// Size d of the latent space.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..))]
    pub latent_dim: u16,
    /// A spatial code of C 7x7 maps (d = 49 C) instead of a vector, both networks convolutional
    /// to it: the autoencoder of a latent diffusion model with a U-Net (`ldm --denoiser unet`).
    #[arg(long, value_name = "C", conflicts_with = "latent_dim",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub latent_channels: Option<u16>,
    /// Weight of the KL term (1: the ELBO; other values: beta-VAE).
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative_f64)]
    pub beta: f64,
    /// Epochs over which the KL weight grows linearly from 0 to --beta (0: from the start).
    #[arg(long, default_value_t = 0.0, value_parser = parse_non_negative_f64)]
    pub kl_warmup_epochs: f64,
    /// The analysis after training.
    #[command(flatten)]
    pub analysis: AnalysisFlags,
}

/// How much of the latent-space analysis to run.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalysisFlags {
    /// t-SNE iterations of the latent map.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub tsne_epochs: u32,
    /// Analyse only the first N images of each split [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(100..))]
    pub analysis_images: Option<u32>,
}

/// Every setting of a VAE run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaeSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub model: ModelKind,
    pub vae: VaeConfig,
    pub optimizer: AdamConfig,
    /// Weight of the KL term (1: the ELBO).
    pub beta: f64,
    /// Epochs over which the KL weight grows linearly from 0 to `beta` (0: none).
    pub kl_warmup_epochs: f64,
}

impl VaeSettings {
    /// Adam 1e-3 (epsilon 1e-8, PyTorch's), 10 epochs, where a flag is absent.
    pub fn new(args: VaeArgs) -> Self {
        Self {
            run: RunSettings::new(args.common, 10, 1e-3),
            model: args.model,
            vae: match args.latent_channels {
                None => VaeConfig::new().with_latent_dim(args.latent_dim as usize),
                Some(channels) => VaeConfig::new()
                    .with_latent_dim(spatial_latent_dim(channels as usize))
                    .with_latent_channels(Some(channels as usize)),
            }
            .with_variational(args.model == ModelKind::Vae),
            optimizer: AdamConfig::new().with_epsilon(1e-8),
            beta: args.beta,
            kl_warmup_epochs: args.kl_warmup_epochs,
        }
    }

    /// The KL weight after `step` steps: `beta * min(1, step / warm-up steps)`.
    pub fn beta_at(&self, step: u64, steps_per_epoch: u64) -> f64 {
        let warmup_steps = self.kl_warmup_epochs * steps_per_epoch as f64;
        if warmup_steps <= 0.0 {
            self.beta
        } else {
            self.beta * (step as f64 / warmup_steps).min(1.0)
        }
    }
}

/// The network and its optimizer: one training iteration is [`Trainer::step`].
pub struct Trainer {
    pub vae: TrainedNetwork<Vae>,
    settings: VaeSettings,
    steps_per_epoch: u64,
    /// The test images of the reconstruction grid.
    recon_originals: Option<Tensor<4>>,
}

impl Trainer {
    /// A freshly initialised network and Adam state (`device` should be an autodiff device).
    pub fn new(settings: &VaeSettings, device: &Device) -> Self {
        Self {
            vae: TrainedNetwork::new(settings.vae.init(device), settings.optimizer.init()),
            settings: settings.clone(),
            steps_per_epoch: 1,
            recon_originals: None,
        }
    }

    /// One Adam step on `mean[recon + beta KL]`. Returns, detached, the KL weight, the loss
    /// minimised, its two terms and the negative ELBO (recon + KL, whatever beta is).
    pub fn step(&mut self, images: Tensor<4>, beta: f64) -> StepMetrics {
        let terms = self.vae.network.elbo_terms(images, Code::Sample);
        let loss = terms.loss(beta);
        self.vae.step(loss.clone(), self.settings.run.lr);
        let recon = terms.reconstruction.detach().mean();
        let kl = terms.kl.detach().mean();
        StepMetrics::new()
            .with("beta", Tensor::full([1], beta, &loss.device()).inner())
            .with("train_loss", loss.detach())
            .with("train_recon", recon.clone())
            .with("train_kl", kl.clone())
            .with("train_neg_elbo", recon + kl)
    }
}

impl Trainable for Trainer {
    fn begin(&mut self, context: &RunContext) -> Result<()> {
        self.steps_per_epoch = context.steps_per_epoch;
        let indices: Vec<usize> = (0..RECON_IMAGES.min(context.test.len())).collect();
        self.recon_originals = Some(context.test.images_tensor(
            &indices,
            PixelRange::ZeroToOne,
            context.device,
        ));
        Ok(())
    }

    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
        let beta = self.settings.beta_at(step - 1, self.steps_per_epoch);
        Trainer::step(self, single(batches).images, beta)
    }

    /// The terms on the whole test split, one sampled z per image.
    fn epoch_metric_names(&self) -> &'static [&'static str] {
        &["test_recon", "test_kl", "test_neg_elbo"]
    }

    fn end_epoch(&mut self, context: &RunContext, epoch: usize) -> Result<EpochMetrics> {
        let vae = self.vae.network.valid();
        let test = score_split(&vae, context.test, Code::Sample, context.device);
        println!(
            "{}: epoch {epoch} test recon {:.2} KL {:.2} -ELBO {:.2} nats",
            self.settings.model.name(),
            test.reconstruction,
            test.kl,
            test.reconstruction + test.kl
        );
        if let Some(originals) = &self.recon_originals {
            save_reconstructions(
                &vae,
                originals,
                &context.run.path(format!("recon/epoch_{epoch:03}.png")),
            )?;
        }
        Ok(vec![
            ("test_recon", test.reconstruction),
            ("test_kl", test.kl),
            ("test_neg_elbo", test.reconstruction + test.kl),
        ])
    }

    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        Some(Box::new(self.vae.network.valid().decoder))
    }
}

impl Checkpointed for Trainer {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![(VAE, &mut self.vae)]
    }
}

/// Test images above their reconstructions (decoding mu): rows of 8 alternate.
fn save_reconstructions(vae: &Vae, originals: &Tensor<4>, path: &std::path::Path) -> Result<()> {
    let (logits, _) = vae.forward(originals.clone(), Code::Mean);
    let reconstructions = burn::tensor::activation::sigmoid(logits);
    save_above(
        originals.clone(),
        reconstructions,
        8,
        PixelScale::ZeroToOne,
        path,
    )
}

/// The decoder of a run, `sigmoid(l(z))` for `z ~ N(0, I)`.
pub fn open_source(run: &RunFolder, _options: &SourceOptions, device: &Device) -> Opened {
    let vae = run.load(VAE, |config: VaeConfig| config.init(device))?;
    Ok(Box::new(vae.decoder))
}

/// Trains with `settings`, writing grids, metrics and checkpoints into the run folder.
pub fn train(settings: &VaeSettings) -> Result<TrainSummary> {
    let plan =
        FitPlan::new(settings.model.name(), &settings.run, PixelRange::ZeroToOne).keep_last_batch();
    fit(&plan, settings, |device| Ok(Trainer::new(settings, device)))
}

/// The flags of `analyze`: which run, and how much of the analysis.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/vae")]
    pub from: PathBuf,
    #[command(flatten)]
    pub analysis: AnalysisFlags,
    /// Where the figures and report.json go [default: the run folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder with the Fashion-MNIST IDX files [default: $GENMODELS_DATA_DIR or
    /// datasets/fashion-mnist].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the t-SNE and of the prior samples.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

impl AnalyzeArgs {
    /// The analysis of the run a training run just wrote, with these settings.
    pub fn of_run(run: PathBuf, common: &CommonArgs, analysis: AnalysisFlags) -> Self {
        Self {
            from: run,
            analysis,
            out: None,
            data_dir: common.data_dir.clone(),
            seed: common.seed,
            backend: common.backend,
        }
    }
}

/// The first `n` images of `split`.
fn first_images(split: Split, n: usize) -> Split {
    let n = n.min(split.len());
    Split {
        images: split.images[..n * IMAGE_PIXELS].to_vec(),
        labels: split.labels[..n].to_vec(),
    }
}

/// Loads the network of a VAE or AE run (its size and kind from the run's `config.json`) and
/// analyses it (see [`crate::latent`]), writing into `--out`, or else the run folder.
pub fn analyze_checkpoint(args: &AnalyzeArgs) -> Result<Report> {
    let run =
        RunFolder::open(&args.from).with_context(|| format!("--from {}", args.from.display()))?;
    let settings: VaeSettings = run.settings()?;
    let model_name = settings.model.name();
    run.checkpoint.expect_model(model_name)?;
    let selected = select_device(args.backend)?;
    let device = selected.device;
    let vae = run.load(VAE, |config: VaeConfig| config.init(&device))?;
    let out = args.out.clone().unwrap_or_else(|| run.root.clone());
    println!(
        "{model_name}: analysing {} on {}",
        run.checkpoint.dir.display(),
        selected.description
    );
    let mut data = genmodels_data::load_or_fetch_in(args.data_dir.as_deref())?;
    if let Some(n) = args.analysis.analysis_images {
        data.train = first_images(data.train, n as usize);
        data.test = first_images(data.test, n as usize);
    }
    let tsne = TsneSettings {
        seed: args.seed,
        epochs: args.analysis.tsne_epochs as usize,
        ..TsneSettings::default()
    };
    let input = AnalysisInput {
        model: model_name,
        checkpoint: &run.checkpoint,
        tsne,
    };
    analyze(&vae, &data, &input, &out, &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn with_beta(beta: f64, kl_warmup_epochs: f64) -> VaeSettings {
        VaeSettings::new(VaeArgs {
            common: CommonArgs::default(),
            model: ModelKind::Vae,
            latent_dim: 16,
            latent_channels: None,
            beta,
            kl_warmup_epochs,
            analysis: AnalysisFlags {
                tsne_epochs: 10,
                analysis_images: None,
            },
        })
    }

    #[test]
    fn kl_warm_up_grows_linearly_to_beta() {
        let settings = with_beta(2.0, 2.0);
        // 2 epochs of 100 steps: beta reaches 2.0 at step 200.
        assert_eq!(settings.beta_at(0, 100), 0.0);
        assert!((settings.beta_at(50, 100) - 0.5).abs() < 1e-12);
        assert!((settings.beta_at(200, 100) - 2.0).abs() < 1e-12);
        assert!((settings.beta_at(900, 100) - 2.0).abs() < 1e-12);
        let constant = with_beta(0.5, 0.0);
        assert_eq!(constant.beta_at(0, 100), 0.5);
        assert_eq!(constant.run.lr, 1e-3);
    }
}
