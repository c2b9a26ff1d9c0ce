//! A run folder and the pieces every training loop repeats: printing where it computes,
//! progress bars, throughput, divergence checks, fixed noise.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::backend::{SelectedDevice, select_device};
use crate::checkpoint::Checkpoints;
use crate::cli::CommonArgs;
use crate::fsutil::write_atomic;
use crate::metrics::MetricsLog;

/// The folder a run writes into, with the device it computes on.
pub struct RunDir {
    pub root: PathBuf,
    pub device: SelectedDevice,
    pub checkpoints: Checkpoints,
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
        println!("{model}: computing on {}", device.description);
        println!("{model}: writing to {}", root.display());
        let checkpoints = Checkpoints::new(root.join("checkpoints"));
        Ok(Self {
            root,
            device,
            checkpoints,
        })
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

    /// Opens `metrics.csv` with the given columns.
    pub fn metrics(&self, header: &[&str]) -> Result<MetricsLog> {
        MetricsLog::open(&self.path("metrics.csv"), header)
    }
}

/// A progress bar over the steps of one epoch.
pub fn epoch_bar(epoch: usize, epochs: usize, steps: u64) -> ProgressBar {
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
pub fn fixed_normal(shape: [usize; 2], seed: u64, device: &Device) -> Tensor<2> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Formats a duration as seconds with one decimal.
pub fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}
