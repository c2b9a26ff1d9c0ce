//! Measuring samples: FID against the test split, the train-vs-test floor, mode coverage, and
//! sample export as an IDX file.
//!
//! Every image, real or generated, goes the same way: 8-bit pixels (generated images are
//! rounded to bytes as [`PixelRange::unscale`] does, exactly what `--export` writes), divided by
//! 255, through the committed Fashion-MNIST classifier ([`crate::classifier::pretrained`]). Its
//! 128-wide penultimate layer gives the features whose statistics [`genmodels::fid`] compares;
//! its most likely class gives the mode coverage.
//!
//! The reference statistics (the test split, and the FID of as many training images against
//! it: the floor of this feature space) are computed once and cached in a JSON file named after
//! the classifier weights' hash and the number of reference images, and checked against a hash
//! of the images they came from.
//!
//! - [`features`]: the feature network and the cached reference statistics.
//! - [`images`]: images made by other tools (IDX, PNG grid, `.npy`), read for scoring.
//! - [`scores`]: FID, mode coverage and spread of a set of samples; the IDX export.
//! - [`monitor`]: the FID logged during training (`--fid-every`).
//! - this module: `eval` itself, from a checkpoint to `eval.json`.

pub mod features;
pub mod images;
pub mod monitor;
pub mod scores;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use genmodels::checkpoint::RunFolder;
use genmodels::diffusion::SamplingSettings;
use serde::Serialize;

pub use features::{FeatureNetwork, Reference, reference, reference_path};
pub use monitor::{FidMonitor, TRAINING_FID_SAMPLES};
pub use scores::{
    BATCH, MODE_THRESHOLD, ModeCoverage, SampleScores, SpreadReport, WithinClassSpread, batch_seed,
    check_sample_count, class_name, draw_and_score, export_idx, to_bytes,
};

use crate::backend::{BackendChoice, select_device};
use crate::fsutil::write_atomic;
use crate::registry::{self, SourceOptions};

/// What the `eval` example is asked to do.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    /// A run folder (its latest checkpoint) or a checkpoint folder to draw samples from.
    pub from: Option<PathBuf>,
    /// Or images made elsewhere, scored as they are ([`images::read_images`]).
    pub images: Option<PathBuf>,
    /// Where the tiles of a PNG grid of `images` lie.
    pub grid: images::GridLayout,
    pub samples: usize,
    pub seed: u64,
    pub backend: BackendChoice,
    pub data_dir: Option<PathBuf>,
    /// Where the reference statistics are cached [default: the run folder].
    pub cache_dir: Option<PathBuf>,
    /// Test (and training) images in the reference statistics.
    pub reference_images: usize,
    /// Diffusion models only: the sampler.
    pub sampling: SamplingSettings,
    /// Conditional latent diffusion only: the guidance scale w.
    pub guidance: Option<f64>,
    /// Writes the samples as an IDX images file.
    pub export: Option<PathBuf>,
    /// The report's path [default: `<run>/eval.json`].
    pub output: Option<PathBuf>,
}

/// What `eval` reports, printed and written to `eval.json`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub checkpoint: PathBuf,
    pub step: u64,
    pub epoch: usize,
    pub device: String,
    pub sampler: String,
    pub samples: usize,
    pub seed: u64,
    /// FID of the samples against the reference test images.
    pub fid: f64,
    /// FID of as many training images against the same test images.
    pub floor_fid: f64,
    pub reference_images: usize,
    pub feature_network_sha256: String,
    pub feature_dim: usize,
    pub coverage: ModeCoverage,
    /// For class-conditional models: the fraction of samples classified as requested.
    pub conditional_accuracy: Option<f64>,
    /// For class-conditional models: how much the samples of a class vary, against the data.
    pub within_class_spread: Option<SpreadReport>,
    pub export: Option<PathBuf>,
    pub sampling_seconds: f64,
}

impl EvalReport {
    /// Prints the numbers, one per line, and the class histogram.
    pub fn print(&self) {
        println!(
            "eval: {} step {} (epoch {}), {} samples, {}",
            self.model, self.step, self.epoch, self.samples, self.sampler
        );
        println!(
            "  FID {:.3} against {} test images (floor: {} training images {:.3})",
            self.fid, self.reference_images, self.reference_images, self.floor_fid
        );
        println!(
            "  mode coverage: KL to uniform {:.4} nats, modes missed (< {:.0}%): {}",
            self.coverage.kl_to_uniform,
            MODE_THRESHOLD * 100.0,
            if self.coverage.modes_missed.is_empty() {
                "none".to_string()
            } else {
                self.coverage.modes_missed.join(", ")
            }
        );
        for (k, (&count, &fraction)) in self
            .coverage
            .counts
            .iter()
            .zip(&self.coverage.fractions)
            .enumerate()
        {
            println!(
                "    {:<12} {count:>6}  {:5.1}%",
                class_name(k),
                fraction * 100.0
            );
        }
        if let Some(accuracy) = self.conditional_accuracy {
            println!("  accuracy of the requested class {accuracy:.4}");
        }
        if let Some(spread) = &self.within_class_spread {
            let format = |values: &[Option<f64>]| {
                values
                    .iter()
                    .map(|v| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}")))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  within-class spread (mean pixel std by class; samples / test images): {:.3} of the data's",
                spread.mean_ratio
            );
            println!("    samples {}", format(&spread.samples));
            println!("    test    {}", format(&spread.test));
        }
    }
}

/// Scores the samples of a checkpoint (`--from`) or images from a file (`--images`) against the
/// reference statistics, with the same features and the same report.
pub fn evaluate(request: &EvalRequest) -> Result<EvalReport> {
    if request.reference_images < 2 {
        bail!(
            "--reference-images must be at least 2, got {}",
            request.reference_images
        );
    }
    match (&request.from, &request.images) {
        (Some(_), None) => evaluate_checkpoint(request),
        (None, Some(path)) => evaluate_images(request, path),
        _ => bail!("give either --from RUN (samples drawn from a checkpoint) or --images FILE"),
    }
}

/// What both kinds of evaluation share: the device, the data, the feature network and the
/// reference statistics cached in `cache_dir` (or `--cache-dir`).
struct Scoring {
    device: burn::tensor::Device,
    device_description: String,
    data: genmodels_data::FashionMnist,
    network: FeatureNetwork,
    reference: Reference,
}

impl Scoring {
    fn prepare(request: &EvalRequest, cache_dir: &std::path::Path) -> Result<Self> {
        let selected = select_device(request.backend)?;
        println!("eval: computing on {}", selected.description);
        let data = genmodels_data::load_or_fetch_in(request.data_dir.as_deref())?;
        let network = FeatureNetwork::load(&selected.device)?;
        let cache_dir = request.cache_dir.as_deref().unwrap_or(cache_dir);
        let reference = reference(&network, &data, request.reference_images, true, cache_dir)?;
        Ok(Self {
            device: selected.device,
            device_description: selected.description,
            data,
            network,
            reference,
        })
    }

    /// The report of `scores`; written to `output`, and printed.
    fn report(
        self,
        scores: &SampleScores,
        source: ScoredSource,
        request: &EvalRequest,
        output: PathBuf,
    ) -> Result<EvalReport> {
        let test = &self.data.test;
        let report = EvalReport {
            model: source.model,
            checkpoint: source.path,
            step: source.step,
            epoch: source.epoch,
            device: self.device_description,
            sampler: source.description,
            samples: scores.count(),
            seed: request.seed,
            fid: scores
                .statistics()?
                .frechet_distance(&self.reference.test)?,
            floor_fid: self
                .reference
                .floor
                .context("the reference has its floor")?,
            reference_images: self.reference.images,
            feature_network_sha256: self.reference.weights_sha256.clone(),
            feature_dim: self.network.feature_dim(),
            coverage: scores.coverage(),
            conditional_accuracy: scores.conditional_accuracy(),
            within_class_spread: scores.spread().map(|samples| {
                let labels = test.labels.iter().map(|&label| usize::from(label));
                SpreadReport::new(samples, &WithinClassSpread::of(&test.images, labels))
            }),
            export: request.export.clone(),
            sampling_seconds: source.seconds,
        };
        write_atomic(&output, serde_json::to_string_pretty(&report)?.as_bytes())?;
        report.print();
        println!("eval: report in {}", output.display());
        Ok(report)
    }
}

/// Where the scored images came from, for the report.
struct ScoredSource {
    model: String,
    path: PathBuf,
    step: u64,
    epoch: usize,
    description: String,
    seconds: f64,
}

/// `--images FILE`: the images of a file, scored as they are; `eval.json` beside the file.
fn evaluate_images(request: &EvalRequest, path: &std::path::Path) -> Result<EvalReport> {
    let pixels = images::read_images(path, request.grid)?;
    let folder = path.parent().unwrap_or(std::path::Path::new("."));
    let scoring = Scoring::prepare(request, folder)?;
    let started = Instant::now();
    let mut scores = SampleScores::new(&scoring.network, false);
    for batch in pixels.chunks(BATCH * genmodels_data::IMAGE_PIXELS) {
        scores.add_bytes(&scoring.network, batch, None)?;
    }
    let source = ScoredSource {
        model: "images".into(),
        path: path.to_path_buf(),
        step: 0,
        epoch: 0,
        description: format!("the images of {}", path.display()),
        seconds: started.elapsed().as_secs_f64(),
    };
    let output = request.output.clone().unwrap_or_else(|| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        folder.join(format!("{name}.eval.json"))
    });
    scoring.report(&scores, source, request, output)
}

/// Draws samples from a checkpoint and scores them (see the module notes); writes `eval.json`
/// and, when asked, the samples as an IDX file.
fn evaluate_checkpoint(request: &EvalRequest) -> Result<EvalReport> {
    check_sample_count(request.samples)?;
    let from = request.from.as_ref().context("--from")?;
    let run = RunFolder::open(from)?;
    let (run_root, checkpoint) = (run.root.clone(), run.checkpoint.clone());
    let scoring = Scoring::prepare(request, &run_root)?;
    let (network, device) = (&scoring.network, &scoring.device);
    let options = SourceOptions {
        sampling: request.sampling,
        class: None,
        guidance: request.guidance,
        temperature: None,
    };
    let source = registry::open(&run, &options, device)?;

    println!(
        "eval: drawing {} samples from {} ({})",
        request.samples,
        checkpoint.dir.display(),
        source.describe()
    );
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(request.samples as u64);
    let scores = draw_and_score(
        network,
        request.samples,
        request.seed,
        source.pixel_range(),
        request.export.is_some(),
        |count, seed| {
            let drawn = source.draw(count, seed, device);
            bar.inc(count as u64);
            Ok(drawn)
        },
    )?;
    bar.finish();
    let sampling_seconds = started.elapsed().as_secs_f64();
    if let (Some(path), Some(pixels)) = (&request.export, scores.pixels()) {
        export_idx(path, pixels)?;
        println!(
            "eval: wrote {} samples to {}",
            scores.count(),
            path.display()
        );
    }
    let scored = ScoredSource {
        model: checkpoint.state.model.clone(),
        path: checkpoint.dir.clone(),
        step: checkpoint.state.step,
        epoch: checkpoint.state.epoch,
        description: source.describe(),
        seconds: sampling_seconds,
    };
    let output = request
        .output
        .clone()
        .unwrap_or_else(|| run_root.join("eval.json"));
    scoring.report(&scores, scored, request, output)
}
