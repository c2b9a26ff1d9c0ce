//! A run folder and the pieces every training loop repeats: printing where it computes,
//! resuming from a checkpoint, progress bars, running means of the logged values, throughput,
//! divergence checks, fixed noise.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use genmodels_data::{BatchLoader, PixelRange};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::backend::{SelectedDevice, select_device};
use crate::checkpoint::{Checkpoint, CheckpointWriter, Checkpoints, TrainingState};
use crate::cli::CommonArgs;
use crate::fsutil::write_atomic;
use crate::grid::{PixelScale, save_grid};
use crate::metrics::MetricsLog;
use crate::summary::{EpochReport, TrainSummary};

/// The folder a run writes into, with the device it computes on.
pub struct RunDir {
    /// The model trained: the name its checkpoints carry.
    pub model: String,
    pub root: PathBuf,
    pub device: SelectedDevice,
    pub checkpoints: Checkpoints,
}

/// One piece of a model's training state, kept in a checkpoint under a record name: a network
/// with its optimizer ([`crate::optim::TrainedNetwork`]), a network with its moving average
/// ([`crate::optim::AveragedNetwork`]), or a frozen network a model builds on.
pub trait CheckpointPart {
    /// Writes the part into the checkpoint being written, as `<name>.bpk` and whatever else it
    /// keeps (the optimizer's state, the average).
    fn save(&self, writer: &CheckpointWriter, name: &str) -> Result<()>;
    /// Reads what [`CheckpointPart::save`] wrote.
    fn load(&mut self, checkpoint: &Checkpoint, name: &str) -> Result<()>;
    /// `--init-from`: the weights of a PyTorch file ([`genmodels::pytorch::load_pytorch`]).
    fn init_from(&mut self, file: &Path) -> Result<()>;
    /// `export`: the part's networks written into `dir` for PyTorch
    /// ([`crate::interop::export_network`]); the files written.
    fn export(&self, dir: &Path, name: &str) -> Result<Vec<PathBuf>>;
}

/// A model whose whole training state (networks and optimizers) goes into a checkpoint, and
/// whose networks travel to and from PyTorch. A model lists its parts; loading, saving,
/// `--init-from` and `export` go through them in that order.
pub trait Checkpointed: Sized {
    /// Every part with its record name (its network's name); `--init-from FILE` without a
    /// name sets the first.
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)>;

    /// The state saved in `checkpoint`, loaded into `self`.
    fn load(mut self, checkpoint: &Checkpoint) -> Result<Self> {
        for (name, part) in self.parts() {
            part.load(checkpoint, name)?;
        }
        Ok(self)
    }

    /// Writes the state as a new checkpoint of `run`.
    fn save(&mut self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        for (name, part) in self.parts() {
            part.save(&writer, name)?;
        }
        writer.commit(state)
    }

    /// The record names of the parts, the names `--init-from NETWORK=FILE` takes.
    fn networks(&mut self) -> Vec<&'static str> {
        self.parts().into_iter().map(|(name, _)| name).collect()
    }

    /// `--init-from NETWORK=FILE`: the part `network` (one of [`Checkpointed::networks`]) with
    /// its weights read from a PyTorch file.
    fn init_from(mut self, network: &str, file: &Path) -> Result<Self> {
        for (name, part) in self.parts() {
            if name == network {
                part.init_from(file)?;
            }
        }
        Ok(self)
    }

    /// `export`: every part written into `dir` for PyTorch. Returns the files written.
    fn export(&mut self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for (name, part) in self.parts() {
            files.extend(part.export(dir, name)?);
        }
        Ok(files)
    }
}

/// Where training starts: step 0 of epoch 0, or where a resumed checkpoint stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Start {
    pub step: u64,
    /// Epochs completed.
    pub epoch: usize,
}

impl RunDir {
    /// Resolves the backend, creates `runs/<model>` (or `--out`) with its `samples/` and
    /// `checkpoints/` folders, and prints what the run uses.
    pub fn create(model: &str, args: &CommonArgs) -> Result<Self> {
        let device = select_device(args.backend)?;
        let root = args
            .out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(model));
        for sub in ["samples", "checkpoints"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("--out: cannot create {}", dir.display()))?;
        }
        let checkpoints = Checkpoints::new(root.join("checkpoints")).keeping(args.keep_checkpoints);
        if !args.resume
            && let Some(existing) = checkpoints.latest()?
        {
            bail!(
                "--out {}: holds a run already (checkpoint {}); pass --resume to continue it, or \
                 choose another --out",
                root.display(),
                existing.dir.display()
            );
        }
        println!("{model}: computing on {}", device.description);
        println!("{model}: writing to {}", root.display());
        Ok(Self {
            model: model.into(),
            root,
            device,
            checkpoints,
        })
    }

    /// Loads the dataset from `--data-dir` (or its default), fetching it when absent.
    pub fn load_data(&self, args: &CommonArgs) -> Result<genmodels_data::FashionMnist> {
        Ok(genmodels_data::load_or_fetch_in(args.data_dir.as_deref())?)
    }

    /// With `--resume`, loads the latest checkpoint (it must be one of this run's model) into
    /// `model`. Without it, starts at 0; with it and no checkpoint in the folder, refuses. (The
    /// device is reseeded from the seed and the step before every step, see
    /// [`crate::fit::step_seed`], so a resumed run draws the noise of the uninterrupted one.)
    pub fn resume<M: Checkpointed>(&self, args: &CommonArgs, model: M) -> Result<(M, Start)> {
        if !args.resume {
            return Ok((model, Start::default()));
        }
        let name = &self.model;
        let Some(checkpoint) = self.checkpoints.latest()? else {
            bail!(
                "--resume: {} holds no checkpoint to resume from (train without --resume to \
                 start a run there)",
                self.root.display()
            );
        };
        checkpoint.expect_model(name)?;
        let model = model.load(&checkpoint)?;
        let start = Start {
            step: checkpoint.state.step,
            epoch: checkpoint.state.epoch,
        };
        println!(
            "{name}: resumed from {} (step {})",
            checkpoint.dir.display(),
            start.step
        );
        Ok((model, start))
    }

    /// Without `--resume`, reads the networks named by `--init-from` into `model`. (A resumed
    /// run takes its weights from the checkpoint, so the flag is ignored then.)
    pub fn init_from<M: Checkpointed>(&self, args: &CommonArgs, mut model: M) -> Result<M> {
        if args.resume {
            return Ok(model);
        }
        for init in &args.init_from {
            let networks = model.networks();
            let flag = || {
                let name = init
                    .network
                    .as_ref()
                    .map(|n| format!("{n}="))
                    .unwrap_or_default();
                format!("--init-from {name}{}", init.file.display())
            };
            let network = match &init.network {
                None => networks[0],
                Some(name) => match networks.iter().find(|known| *known == name) {
                    Some(known) => known,
                    None => bail!(
                        "{}: the {} model has no network `{name}` (its networks: {})",
                        flag(),
                        self.model,
                        networks.join(", ")
                    ),
                },
            };
            model = model.init_from(network, &init.file).with_context(flag)?;
            println!(
                "{}: {network} initialised from {}",
                self.model,
                init.file.display()
            );
        }
        Ok(model)
    }

    /// Saves `model` as the checkpoint of `step`, with `epoch` epochs completed.
    pub fn save_checkpoint<M: Checkpointed>(
        &self,
        model: &mut M,
        step: u64,
        epoch: usize,
        seed: u64,
    ) -> Result<Checkpoint> {
        model.save(self, &TrainingState::new(&self.model, step, epoch, seed))
    }

    /// Writes the first `count` images of the first training batch to `real.png`, once: what
    /// the generated grids are to be compared with.
    pub fn save_real_grid(
        &self,
        loader: &BatchLoader,
        count: usize,
        range: PixelRange,
    ) -> Result<()> {
        let path = self.path("real.png");
        if path.exists() {
            return Ok(());
        }
        let first = loader
            .epoch(0, &self.device.device)
            .next()
            .context("the training split is empty")?;
        let count = count.min(first.images.dims()[0]);
        save_grid(
            first.images.narrow(0, 0, count),
            8,
            PixelScale::from(range),
            &path,
        )
    }

    /// An empty summary of this run.
    pub fn summary(&self) -> TrainSummary {
        TrainSummary::new(
            &self.model,
            self.root.clone(),
            self.device.description.clone(),
        )
    }

    /// A path inside the run folder.
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.root.join(relative)
    }

    /// `samples/epoch_NNN.png`.
    pub fn epoch_samples(&self, epoch: usize) -> PathBuf {
        self.path(format!("samples/epoch_{epoch:03}.png"))
    }

    /// Writes every setting of the run to `config.json`.
    pub fn write_config(&self, config: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(config)?;
        write_atomic(&self.path("config.json"), text.as_bytes())
    }

    /// Opens `metrics.csv` with the given columns for a run that starts at `start`: see
    /// [`MetricsLog::continue_at`].
    pub fn metrics(&self, header: &[&str], start: Start) -> Result<MetricsLog> {
        MetricsLog::continue_at(&self.path("metrics.csv"), header, start.step)
    }
}

/// A progress bar over the steps of one epoch.
fn epoch_bar(epoch: usize, epochs: usize, steps: u64) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}

/// One epoch under way: its progress bar, its clock and the images it has seen, with the
/// throughput between two readings.
pub struct EpochProgress {
    pub bar: ProgressBar,
    /// Counted from 1.
    epoch: usize,
    started: Instant,
    images: usize,
    throughput: Throughput,
}

impl EpochProgress {
    /// Epoch `epoch` (counted from 1) of `epochs`, of `steps` steps of which `done` were done
    /// before a resume.
    pub fn start(epoch: usize, epochs: usize, steps: u64, done: u64) -> Self {
        let bar = epoch_bar(epoch, epochs, steps);
        bar.set_position(done);
        Self {
            bar,
            epoch,
            started: Instant::now(),
            images: 0,
            throughput: Throughput::default(),
        }
    }

    /// One step on `images` images done.
    pub fn step(&mut self, images: usize) {
        self.bar.inc(1);
        self.images += images;
        self.throughput.add(images);
    }

    /// Images per second since the last reading.
    pub fn images_per_sec(&mut self) -> f64 {
        self.throughput.take()
    }

    /// The epoch's images and wall-clock time so far.
    pub fn report(&self) -> EpochReport {
        EpochReport::new(self.epoch, self.images, self.started.elapsed())
    }

    /// Closes the bar; the epoch's images and wall-clock time.
    pub fn finish(&self) -> EpochReport {
        self.bar.finish();
        self.report()
    }
}

/// Means over steps of the values a step returns (losses, accuracies), summed on the device so
/// that only reading them synchronises it: once per log line, not once per step.
#[derive(Default)]
pub struct StepMeans {
    sums: Option<Tensor<1>>,
    steps: u64,
}

impl StepMeans {
    /// Adds one step's values.
    pub fn add(&mut self, values: Tensor<1>) {
        self.sums = Some(match self.sums.take() {
            Some(sum) => sum + values,
            None => values,
        });
        self.steps += 1;
    }

    /// The sums so far (`None` before the first step).
    pub fn sums(&self) -> Result<Option<Vec<f64>>> {
        let Some(sums) = &self.sums else {
            return Ok(None);
        };
        let sums = sums.clone().into_data().try_to_vec::<f32>()?;
        Ok(Some(sums.into_iter().map(f64::from).collect()))
    }

    /// The means so far (`None` before the first step).
    pub fn means(&self) -> Result<Option<Vec<f64>>> {
        let steps = self.steps as f64;
        Ok(self
            .sums()?
            .map(|sums| sums.into_iter().map(|s| s / steps).collect()))
    }

    /// Steps added so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The means so far, then starts over.
    pub fn take(&mut self) -> Result<Option<Vec<f64>>> {
        let means = self.means();
        *self = Self::default();
        means
    }
}

/// Counts images over wall-clock time between two readings.
pub struct Throughput {
    since: Instant,
    images: usize,
}

impl Default for Throughput {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            images: 0,
        }
    }
}

impl Throughput {
    pub fn add(&mut self, images: usize) {
        self.images += images;
    }

    /// Images per second since the last reading, then starts a new interval.
    pub fn take(&mut self) -> f64 {
        let rate = self.images as f64 / self.since.elapsed().as_secs_f64().max(1e-9);
        *self = Self::default();
        rate
    }
}

/// Stops training when a logged value is NaN or infinite: the last good checkpoint stays.
pub fn check_finite(values: &[(&str, f64)], step: u64, checkpoints: &Checkpoints) -> Result<()> {
    if let Some((name, value)) = values.iter().find(|(_, v)| !v.is_finite()) {
        bail!(
            "training diverged at step {step}: {name} is {value}. Stopped without saving; the last \
             good checkpoint is kept in {} (lower --lr, or change --seed, and --resume)",
            checkpoints.root().display()
        );
    }
    Ok(())
}

/// Latent vectors drawn from N(0, I) on the host with a seeded generator, so that sample grids
/// use the same z on every backend, every epoch and after a resume.
pub use genmodels::noise::seeded_normal as fixed_normal;

/// Formats a duration as seconds with one decimal.
pub fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
