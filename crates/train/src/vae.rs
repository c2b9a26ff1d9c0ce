//! Training a VAE (or the plain autoencoder) on Fashion-MNIST: one Adam step on the negative
//! ELBO per batch, and after each epoch the same terms on the test split.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use genmodels::VaeConfig;
use genmodels::vae::{Code, Vae};
use genmodels_data::{BatchLoader, IMAGE_PIXELS, PixelRange, Split};
use serde::{Deserialize, Serialize};

use crate::backend::select_device;
use crate::checkpoint::{Checkpoint, Checkpoints, TrainingState};
use crate::cli::CommonArgs;
use crate::eval::FidMonitor;
use crate::grid::{PixelScale, save_grid};
use crate::latent::{AnalysisInput, Report, TsneSettings, analyze, score_split};
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite, fixed_normal};
use crate::summary::TrainSummary;

/// One row per epoch: the training terms averaged over the epoch's batches, then the same
/// terms on the whole test split (one sampled z per image). `neg_elbo` = recon + KL, whatever
/// beta is; `loss` is what was minimised (recon + beta_t KL).
const METRICS: [&str; 12] = [
    "step",
    "epoch",
    "beta",
    "train_loss",
    "train_recon",
    "train_kl",
    "train_neg_elbo",
    "test_recon",
    "test_kl",
    "test_neg_elbo",
    "images_per_sec",
    "elapsed_s",
];
/// Images in the 8x8 sample grid.
const GRID: usize = 64;
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

    /// An untrained network of this kind.
    pub fn init(self, latent_dim: usize, device: &Device) -> Vae {
        VaeConfig::new()
            .with_latent_dim(latent_dim)
            .with_variational(self == ModelKind::Vae)
            .init(device)
    }
}

/// Every setting of a VAE run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaeSettings {
    pub common: CommonArgs,
    pub model: ModelKind,
    pub epochs: usize,
    pub lr: f64,
    pub epsilon: f64,
    pub latent_dim: usize,
    /// Weight of the KL term (1: the ELBO).
    pub beta: f64,
    /// Epochs over which the KL weight grows linearly from 0 to `beta` (0: none).
    pub kl_warmup_epochs: f64,
}

impl VaeSettings {
    /// Adam 1e-3 (epsilon 1e-8, PyTorch's), 10 epochs, where a flag is absent.
    pub fn from_args(
        common: CommonArgs,
        model: ModelKind,
        latent_dim: usize,
        beta: f64,
        kl_warmup_epochs: f64,
    ) -> Self {
        Self {
            epochs: common.epochs.unwrap_or(10),
            lr: common.lr.unwrap_or(1e-3),
            common,
            model,
            epsilon: 1e-8,
            latent_dim,
            beta,
            kl_warmup_epochs,
        }
    }

    /// The KL weight at `step`: `beta * min(1, step / warm-up steps)`.
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
    pub vae: Vae,
    optim: ModuleOptimizer,
}

impl Trainer {
    /// A freshly initialised network and Adam state (`device` should be an autodiff device).
    pub fn new(settings: &VaeSettings, device: &Device) -> Self {
        Self {
            vae: settings.model.init(settings.latent_dim, device),
            optim: AdamConfig::new()
                .with_epsilon(settings.epsilon as f32)
                .init(),
        }
    }

    /// One Adam step on `mean[recon + beta KL]`. Returns, detached, `[loss, recon, KL]`.
    pub fn step(&mut self, images: Tensor<4>, lr: f64, beta: f64) -> Tensor<1> {
        let terms = self.vae.elbo_terms(images, Code::Sample);
        let loss = terms.loss(beta);
        let grads = GradientsParams::from_grads(loss.backward(), &self.vae);
        self.vae = self.optim.step(lr, self.vae.clone(), grads);
        Tensor::cat(
            vec![
                loss.detach(),
                terms.reconstruction.detach().mean(),
                terms.kl.detach().mean(),
            ],
            0,
        )
    }
}

impl Checkpointed for Trainer {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        Ok(Self {
            vae: checkpoint.load_module("vae", self.vae)?,
            optim: checkpoint.load_optimizer("vae", self.optim)?,
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module("vae", &self.vae)?;
        writer.optimizer("vae", &self.optim)?;
        writer.commit(state)
    }
}

/// Test images above their reconstructions (decoding mu): rows of 8 alternate.
fn save_reconstructions(vae: &Vae, originals: &Tensor<4>, path: &std::path::Path) -> Result<()> {
    let (logits, _) = vae.forward(originals.clone(), Code::Mean);
    let reconstructions = burn::tensor::activation::sigmoid(logits);
    let rows: Vec<Tensor<4>> = (0..RECON_IMAGES / 8)
        .flat_map(|row| {
            [
                originals.clone().narrow(0, row * 8, 8),
                reconstructions.clone().narrow(0, row * 8, 8),
            ]
        })
        .collect();
    save_grid(Tensor::cat(rows, 0), 8, PixelScale::ZeroToOne, path)
}

/// Trains with `settings`, writing grids, metrics and checkpoints into the run folder.
pub fn train(settings: &VaeSettings) -> Result<TrainSummary> {
    let common = &settings.common;
    let model_name = settings.model.name();
    let run = RunDir::create(model_name, common)?;
    run.write_config(settings)?;
    let data = run.load_data(common)?;
    let fid = FidMonitor::new(model_name, common, &run, &data, PixelRange::ZeroToOne)?;
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);

    let model = Trainer::new(settings, &device);
    let (mut model, start) = run.resume(common, model, &device)?;

    let loader = BatchLoader::new(
        Arc::new(data.train),
        common.batch_size,
        PixelRange::ZeroToOne,
    )
    .with_seed(common.seed);
    let steps_per_epoch = loader.num_batches() as u64;
    let eval_device = run.device.device.clone();
    let fixed_z = fixed_normal([GRID, settings.latent_dim], common.seed, &eval_device);
    let recon_indices: Vec<usize> = (0..RECON_IMAGES.min(data.test.len())).collect();
    let recon_originals =
        data.test
            .images_tensor(&recon_indices, PixelRange::ZeroToOne, &eval_device);
    let mut metrics = run.metrics(&fid.columns(&METRICS), start)?;
    let mut summary = run.summary();
    let started = Instant::now();
    let mut step = start.step;

    for epoch in start.epoch..settings.epochs {
        let done_in_epoch = step.saturating_sub(epoch as u64 * steps_per_epoch);
        let mut progress =
            EpochProgress::start(epoch + 1, settings.epochs, steps_per_epoch, done_in_epoch);
        let mut epoch_sums = StepMeans::default();
        let mut stop = false;
        let mut beta = settings.beta_at(step, steps_per_epoch);
        for batch in loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize)
        {
            let batch_size = batch.images.dims()[0];
            beta = settings.beta_at(step, steps_per_epoch);
            epoch_sums.add(model.step(batch.images, settings.lr, beta));
            step += 1;
            progress.step(batch_size);
            stop = common.max_steps.is_some_and(|max| step >= max);
            if step % common.log_every == 0 {
                let loss = epoch_sums.means()?.expect("one step")[0];
                check_finite(&[("loss", loss)], step, &run.checkpoints)?;
                let rate = progress.report().images_per_sec();
                progress
                    .bar
                    .set_message(format!("loss {loss:.2} {rate:.0} img/s"));
            }
            if stop {
                break;
            }
        }
        let report = progress.finish();
        let Some(train) = epoch_sums.means()? else {
            break;
        };
        check_finite(
            &[("loss", train[0]), ("recon", train[1]), ("kl", train[2])],
            step,
            &run.checkpoints,
        )?;
        let rate = report.images_per_sec();

        let vae = model.vae.valid();
        let test = score_split(&vae, &data.test, Code::Sample, &eval_device);
        let row = vec![
            step as f64,
            (epoch + 1) as f64,
            beta,
            train[0],
            train[1],
            train[2],
            train[1] + train[2],
            test.reconstruction,
            test.kl,
            test.reconstruction + test.kl,
            rate,
            started.elapsed().as_secs_f64(),
        ];
        let completed = (step % steps_per_epoch == 0).then_some(epoch + 1);
        let row = fid.extend_row(row, completed, |count, seed| {
            let z = fixed_normal([count, settings.latent_dim], seed, &eval_device);
            Ok(vae.decoder.decode(z))
        })?;
        metrics.append(&row)?;
        println!(
            "{model_name}: epoch {} train recon {:.2} KL {:.2} | test recon {:.2} KL {:.2} -ELBO {:.2} nats",
            epoch + 1,
            train[1],
            train[2],
            test.reconstruction,
            test.kl,
            test.reconstruction + test.kl
        );
        save_grid(
            vae.decoder.decode(fixed_z.clone()),
            8,
            PixelScale::ZeroToOne,
            &run.epoch_samples(epoch + 1),
        )?;
        save_reconstructions(
            &vae,
            &recon_originals,
            &run.path(format!("recon/epoch_{:03}.png", epoch + 1)),
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

/// Finds the checkpoint `path` names: a checkpoint folder, or a run folder (its latest).
pub fn resolve_checkpoint(path: &Path) -> Result<Checkpoint> {
    if path.join("checkpoints").is_dir() {
        return Checkpoints::new(path.join("checkpoints"))
            .latest()?
            .with_context(|| {
                format!(
                    "--analyze: the run folder {} has no checkpoint yet",
                    path.display()
                )
            });
    }
    Checkpoint::open(path).with_context(|| format!("--analyze {}", path.display()))
}

/// Options of the analysis that are not part of the training run.
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    /// t-SNE iterations.
    pub tsne_epochs: usize,
    /// Analyse only the first N images of each split (all when `None`): for quick looks.
    pub images: Option<usize>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            tsne_epochs: TsneSettings::default().epochs,
            images: None,
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

/// Loads the checkpoint at `path` into a network of `settings`' kind and size, and analyses it
/// (see [`crate::latent`]), writing into `--out`, or else the run folder of the checkpoint.
pub fn analyze_checkpoint(
    path: &Path,
    settings: &VaeSettings,
    options: &AnalysisOptions,
) -> Result<Report> {
    let model_name = settings.model.name();
    let checkpoint = resolve_checkpoint(path)?;
    checkpoint.expect_model(model_name)?;
    let selected = select_device(settings.common.backend)?;
    let device = selected.device;
    let vae = checkpoint
        .load_module("vae", settings.model.init(settings.latent_dim, &device))
        .with_context(|| {
            format!(
                "is --latent-dim {} the size it was trained with?",
                settings.latent_dim
            )
        })?;
    let run_folder = checkpoint
        .dir
        .parent()
        .filter(|p| p.ends_with("checkpoints"))
        .and_then(Path::parent);
    let out = match (&settings.common.out, run_folder) {
        (Some(out), _) => out.clone(),
        (None, Some(run)) => run.to_path_buf(),
        (None, None) => checkpoint.dir.clone(),
    };
    println!(
        "{model_name}: analysing {} on {}",
        checkpoint.dir.display(),
        selected.description
    );
    let mut data = genmodels_data::load_or_fetch(&genmodels_data::resolve_data_dir(
        settings.common.data_dir.as_deref(),
    ))?;
    if let Some(n) = options.images {
        data.train = first_images(data.train, n);
        data.test = first_images(data.test, n);
    }
    let tsne = TsneSettings {
        seed: settings.common.seed,
        epochs: options.tsne_epochs,
        ..TsneSettings::default()
    };
    let input = AnalysisInput {
        model: model_name,
        checkpoint: &checkpoint,
        tsne,
    };
    analyze(&vae, &data, &input, &out, &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn kl_warm_up_grows_linearly_to_beta() {
        let common = Cli::try_parse_from(["prog"]).unwrap().common;
        let settings = VaeSettings::from_args(common.clone(), ModelKind::Vae, 16, 2.0, 2.0);
        // 2 epochs of 100 steps: beta reaches 2.0 at step 200.
        assert_eq!(settings.beta_at(0, 100), 0.0);
        assert!((settings.beta_at(50, 100) - 0.5).abs() < 1e-12);
        assert!((settings.beta_at(200, 100) - 2.0).abs() < 1e-12);
        assert!((settings.beta_at(900, 100) - 2.0).abs() < 1e-12);
        let constant = VaeSettings::from_args(common, ModelKind::Vae, 16, 0.5, 0.0);
        assert_eq!(constant.beta_at(0, 100), 0.5);
        assert_eq!(constant.lr, 1e-3);
    }
}
