//! The one training loop every model of the project runs, and the trait a model implements to
//! be run by it.
//!
//! [`fit`] owns what every run shares: the run folder and its settings, the data, resuming
//! (mid-epoch included), the progress bar, the means of the logged values over each interval,
//! `metrics.csv`, the divergence check, the FID of `--fid-every`, the sample grid after every
//! epoch, the checkpoints and the summary. A model ([`Trainable`]) brings only its optimisation
//! step and what it does at an epoch's end, as burn's `TrainStep` and lucidrains' `Trainer`
//! divide the work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use burn::tensor::{Device, Tensor};
use genmodels::ImageSource;
use genmodels_data::{Batch, BatchLoader, FashionMnist, PixelRange, Split};
use serde::{Deserialize, Serialize};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::cli::CommonArgs;
use crate::eval::FidMonitor;
use crate::grid::save_image_grid;
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite};
use crate::summary::TrainSummary;

/// What one optimisation step reports: named scalars `[1]`, kept on the device so that only
/// reading their interval means synchronises it.
#[derive(Default)]
pub struct StepMetrics {
    names: Vec<&'static str>,
    values: Vec<Tensor<1>>,
}

impl StepMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the value `name` (a `[1]` tensor, detached).
    pub fn with(mut self, name: &'static str, value: Tensor<1>) -> Self {
        self.names.push(name);
        self.values.push(value);
        self
    }

    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The value `name`, if the step reported it.
    pub fn value(&self, name: &str) -> Option<&Tensor<1>> {
        let index = self.names.iter().position(|n| *n == name)?;
        Some(&self.values[index])
    }
}

/// What a model sees of the run outside its step: the folder, the training batches, the test
/// split, the seed and the device images are drawn on (the run's device without autodiff).
pub struct RunContext<'a> {
    pub run: &'a RunDir,
    pub loader: &'a BatchLoader,
    pub test: &'a Split,
    pub seed: u64,
    pub device: &'a Device,
    pub steps_per_epoch: u64,
}

/// Values a model reports at an epoch's end, by name.
pub type EpochMetrics = Vec<(&'static str, f64)>;

/// A model the loop can train.
pub trait Trainable: Checkpointed {
    /// Batches one optimisation step takes (WGAN's critic steps each take their own).
    fn batches_per_step(&self) -> usize {
        1
    }

    /// Before the first step (and after a resume): figures of the data, schedules that need the
    /// epoch length.
    fn begin(&mut self, _context: &RunContext) -> Result<()> {
        Ok(())
    }

    /// One optimisation step on `batches` ([`Trainable::batches_per_step`] of them); `step`
    /// counts from 1.
    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics;

    /// Columns only the row that closes an epoch fills (NaN in the other rows), such as scores
    /// on the test split.
    fn epoch_metric_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// After each epoch (counted from 1), or where `--max-steps` stopped one: figures of the
    /// model's own, and the values of [`Trainable::epoch_metric_names`], by name.
    fn end_epoch(&mut self, _context: &RunContext, _epoch: usize) -> Result<EpochMetrics> {
        Ok(Vec::new())
    }

    /// After the last epoch.
    fn end_training(&mut self, _context: &RunContext) -> Result<()> {
        Ok(())
    }

    /// The generator as it stands, on the inference device: the epoch grids and the FID of
    /// `--fid-every` draw through it. `None` for a model that draws no images.
    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>>;
}

/// What every run's settings start with (flattened into their `config.json`): the common
/// flags, and the epochs and the learning rate with the model's defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    pub common: CommonArgs,
    pub epochs: usize,
    pub lr: f64,
}

impl RunSettings {
    /// `--epochs` and `--lr`, or the model's defaults where they are absent.
    pub fn new(common: CommonArgs, default_epochs: usize, default_lr: f64) -> Self {
        Self {
            epochs: common.epochs.unwrap_or(default_epochs),
            lr: common.lr.unwrap_or(default_lr),
            common,
        }
    }
}

/// What the loop needs to know of a run besides the model.
pub struct FitPlan<'a> {
    /// The model's name: the run folder `runs/<model>` and the checkpoints' owner.
    pub model: &'a str,
    pub run: &'a RunSettings,
    /// The range the batches' pixels are scaled to.
    pub pixels: PixelRange,
    /// Whether an epoch's last, incomplete batch is dropped.
    pub drop_last: bool,
}

impl<'a> FitPlan<'a> {
    /// A run of `model` on batches scaled to `pixels`, the last incomplete one dropped.
    pub fn new(model: &'a str, run: &'a RunSettings, pixels: PixelRange) -> Self {
        Self {
            model,
            run,
            pixels,
            drop_last: true,
        }
    }

    /// Trains on an epoch's last, incomplete batch too.
    pub fn keep_last_batch(mut self) -> Self {
        self.drop_last = false;
        self
    }
}

/// The seed of the device's random numbers at step `step` (counted from 1): derived from the
/// run's seed and the step alone, so that a resumed run draws the noise the uninterrupted run
/// would have drawn.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    // SplitMix64's increment and finaliser: nearby (seed, step) pairs give unrelated seeds.
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Set by Ctrl-C (SIGINT) or SIGTERM: the loop finishes its step, writes a checkpoint and stops.
fn interrupted_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Routes SIGINT and SIGTERM to [`interrupted_flag`], once per process; a second signal while
/// the first is being handled exits at once (status 130).
fn watch_for_interrupts() {
    static INSTALL: Once = Once::new();
    let flag = interrupted_flag();
    INSTALL.call_once(|| {
        for signal in [SIGINT, SIGTERM] {
            let installed =
                signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())
                    .and_then(|_| signal_hook::flag::register(signal, flag.clone()));
            if let Err(error) = installed {
                eprintln!("warning: signal {signal} will not save a checkpoint ({error})");
            }
        }
    });
    flag.store(false, Ordering::SeqCst);
}

fn interrupted() -> bool {
    interrupted_flag().load(Ordering::SeqCst)
}

/// Whether a step checkpoint is due after `step`: every `--checkpoint-every` steps, or when
/// `--checkpoint-minutes` have passed since the last checkpoint.
fn checkpoint_due(common: &CommonArgs, step: u64, last: Instant) -> bool {
    let by_steps = common
        .checkpoint_every
        .is_some_and(|n| step.is_multiple_of(n));
    let minutes = common.checkpoint_minutes;
    by_steps || (minutes > 0.0 && last.elapsed().as_secs_f64() >= minutes * 60.0)
}

/// The single model's batch of a step that takes one.
pub fn single(batches: Vec<Batch>) -> Batch {
    batches
        .into_iter()
        .next()
        .expect("a step is given at least one batch")
}

/// Trains the model `build` makes (on the run's autodiff device) with `plan` on Fashion-MNIST,
/// writing `settings` to `config.json` and grids, metrics and checkpoints into the run folder.
pub fn fit<M: Trainable>(
    plan: &FitPlan,
    settings: &impl Serialize,
    build: impl FnOnce(&Device) -> Result<M>,
) -> Result<TrainSummary> {
    fit_on(plan, settings, None, build)
}

/// As [`fit`], on `data` when given (else Fashion-MNIST from `--data-dir`).
pub fn fit_on<M: Trainable>(
    plan: &FitPlan,
    settings: &impl Serialize,
    data: Option<FashionMnist>,
    build: impl FnOnce(&Device) -> Result<M>,
) -> Result<TrainSummary> {
    let common = &plan.run.common;
    let epochs = plan.run.epochs;
    let run = RunDir::create(plan.model, common)?;
    watch_for_interrupts();
    run.write_config(settings)?;
    let data = match data {
        Some(data) => data,
        None => run.load_data(common)?,
    };
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);
    let model = run.init_from(common, build(&device)?)?;
    let (mut model, start) = run.resume(common, model)?;
    let draw_device = run.device.device.clone();
    let fid = match model.image_source() {
        Some(source) => FidMonitor::new(plan.model, common, &run, &data, source.pixel_range())?,
        None => FidMonitor::inactive(plan.model, common)?,
    };

    let test = data.test;
    let loader = BatchLoader::new(Arc::new(data.train), common.batch_size, plan.pixels)
        .with_seed(common.seed)
        .with_drop_last(plan.drop_last);
    let per_step = model.batches_per_step();
    let steps_per_epoch = (loader.num_batches() / per_step) as u64;
    ensure!(
        steps_per_epoch > 0,
        "--batch-size {}: an epoch has fewer than {per_step} batches, one step",
        common.batch_size
    );
    let context = RunContext {
        run: &run,
        loader: &loader,
        test: &test,
        seed: common.seed,
        device: &draw_device,
        steps_per_epoch,
    };
    if model.image_source().is_some() {
        run.save_real_grid(&loader, 64, plan.pixels)?;
    }
    model.begin(&context)?;

    let epoch_names = model.epoch_metric_names();
    let mut log: Option<(Vec<&'static str>, crate::metrics::MetricsLog)> = None;
    let mut summary = run.summary();
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut step = start.step;
    let mut stop = false;

    for epoch in start.epoch..epochs {
        let done_in_epoch = step.saturating_sub(epoch as u64 * steps_per_epoch);
        let mut progress = EpochProgress::start(epoch + 1, epochs, steps_per_epoch, done_in_epoch);
        let mut interval = StepMeans::default();
        let mut batches = loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize * per_step);
        for _ in done_in_epoch..steps_per_epoch {
            let taken: Vec<Batch> = batches.by_ref().take(per_step).collect();
            let images = taken.iter().map(Batch::len).sum();
            device.seed(step_seed(common.seed, step + 1));
            let metrics = model.step(taken, step + 1);
            step += 1;
            let names = metrics.names;
            interval.add(Tensor::cat(metrics.values, 0));
            progress.step(images);
            if log.is_none() {
                let columns = columns(&names, epoch_names, &fid);
                log = Some((names.clone(), run.metrics(&columns, start)?));
            }
            let (step_names, metrics_log) = log.as_mut().expect("opened above");
            ensure!(
                *step_names == names,
                "{}: a step returned the metrics {names:?}, the first one {step_names:?}",
                plan.model
            );
            stop = common.max_steps.is_some_and(|max| step >= max);
            if stop || step % steps_per_epoch == 0 {
                break;
            }
            if step % common.log_every == 0 {
                let row =
                    interval_row(&mut interval, step_names, step, epoch, &run, &mut progress)?;
                let row = with_epoch_values(row, epoch_names, &[], started);
                metrics_log.append(&fid.pad_row(row))?;
            }
            if interrupted() {
                progress.bar.abandon();
                let checkpoint = run.save_checkpoint(&mut model, step, epoch, common.seed)?;
                bail!(interruption(step, &checkpoint.dir));
            }
            if checkpoint_due(common, step, last_checkpoint) {
                run.save_checkpoint(&mut model, step, epoch, common.seed)?;
                last_checkpoint = Instant::now();
            }
        }
        let report = progress.finish();
        let epoch_values = model.end_epoch(&context, epoch + 1)?;
        let mut measured = None;
        if let Some((step_names, metrics_log)) = log.as_mut()
            && interval.steps() > 0
        {
            let row = interval_row(&mut interval, step_names, step, epoch, &run, &mut progress)?;
            let row = with_epoch_values(row, epoch_names, &epoch_values, started);
            let completed = (step % steps_per_epoch == 0).then_some(epoch + 1);
            let row = match model.image_source() {
                Some(source) => fid.extend_row(row, completed, &*source, &draw_device)?,
                None => fid.pad_row(row),
            };
            if fid.is_active() {
                measured = row.last().copied().filter(|value| value.is_finite());
            }
            metrics_log.append(&row)?;
        }
        if let Some(source) = model.image_source() {
            let grid = source.grid(common.seed, &draw_device);
            save_image_grid(grid, source.pixel_range(), &run.epoch_samples(epoch + 1))?;
        }
        let completed = if stop { epoch } else { epoch + 1 };
        let checkpoint = run.save_checkpoint(&mut model, step, completed, common.seed)?;
        last_checkpoint = Instant::now();
        if let Some(value) = measured {
            run.checkpoints.keep_if_best(&checkpoint, value)?;
        }
        if interrupted() {
            bail!(interruption(step, &checkpoint.dir));
        }
        summary.record_epoch(report, checkpoint.dir);
        if stop {
            break;
        }
    }
    model.end_training(&context)?;
    summary.steps = step;
    summary.print();
    Ok(summary)
}

/// What a run stopped by a signal says.
fn interruption(step: u64, checkpoint: &std::path::Path) -> String {
    format!(
        "interrupted after step {step}; saved {}: run the same command with --resume to continue",
        checkpoint.display()
    )
}

/// `step, epoch`, the step's metrics, the epoch's, `images_per_sec, elapsed_s`, then `fid`
/// when it is logged.
fn columns(
    step_names: &[&'static str],
    epoch_names: &[&'static str],
    fid: &FidMonitor,
) -> Vec<&'static str> {
    let mut columns = vec!["step", "epoch"];
    columns.extend_from_slice(step_names);
    columns.extend_from_slice(epoch_names);
    columns.extend_from_slice(&["images_per_sec", "elapsed_s"]);
    fid.columns(&columns)
}

/// The interval's means, checked to be finite and shown on the progress bar, as the start of a
/// row: step, epoch and the means.
fn interval_row(
    interval: &mut StepMeans,
    names: &[&'static str],
    step: u64,
    epoch: usize,
    run: &RunDir,
    progress: &mut EpochProgress,
) -> Result<(Vec<f64>, f64)> {
    let means = interval.take()?.expect("at least one step");
    let named: Vec<(&str, f64)> = names.iter().copied().zip(means.iter().copied()).collect();
    check_finite(&named, step, &run.checkpoints)?;
    let rate = progress.images_per_sec();
    let message: Vec<String> = named
        .iter()
        .take(4)
        .map(|(name, value)| format!("{name} {value:.3}"))
        .collect();
    progress
        .bar
        .set_message(format!("{} {rate:.0} img/s", message.join(" ")));
    let mut row = vec![step as f64, (epoch + 1) as f64];
    row.extend(means);
    Ok((row, rate))
}

/// Appends the epoch metrics (by name; NaN where absent), the throughput and the clock.
fn with_epoch_values(
    (mut row, rate): (Vec<f64>, f64),
    names: &[&'static str],
    values: &[(&'static str, f64)],
    started: Instant,
) -> Vec<f64> {
    for name in names {
        let value = values
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, v)| *v);
        row.push(value);
    }
    row.push(rate);
    row.push(started.elapsed().as_secs_f64());
    row
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use burn::nn::{Linear, LinearConfig};
    use genmodels::Drawn;
    use genmodels_data::{IMAGE_PIXELS, PixelRange};

    use super::*;
    use crate::checkpoint::{Checkpoint, CheckpointWriter};
    use crate::run::CheckpointPart;

    /// A model whose step learns nothing: it reports `loss = step` (NaN at `nan_at`) and
    /// records the label of the first image of every batch it is given, so that the order of
    /// the data can be compared between runs.
    struct Stub {
        layer: StubNetwork,
        other: StubNetwork,
        nan_at: Option<u64>,
        seen: Rc<RefCell<Vec<u8>>>,
    }

    impl Trainable for Stub {
        fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
            let batch = single(batches);
            let first = batch.labels.slice(0..1).into_data().convert::<i64>();
            self.seen
                .borrow_mut()
                .push(first.try_to_vec::<i64>().unwrap()[0] as u8);
            let device = batch.images.device();
            let loss = match self.nan_at {
                Some(at) if at == step => f32::NAN,
                _ => step as f32,
            };
            StepMetrics::new().with("loss", Tensor::<1>::from_floats([loss], &device))
        }

        fn epoch_metric_names(&self) -> &'static [&'static str] {
            &["closing"]
        }

        fn end_epoch(&mut self, _context: &RunContext, epoch: usize) -> Result<EpochMetrics> {
            Ok(vec![("closing", epoch as f64 * 10.0)])
        }

        fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
            Some(Box::new(Gray))
        }
    }

    impl Checkpointed for Stub {
        fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
            vec![("layer", &mut self.layer), ("other", &mut self.other)]
        }
    }

    /// A network of the stub: its layer, if it has one, is saved and loaded; `--init-from`
    /// reports the call as an error, so that a test sees which network the loop asked for.
    struct StubNetwork {
        name: &'static str,
        layer: Option<Linear>,
    }

    impl CheckpointPart for StubNetwork {
        fn save(&self, writer: &CheckpointWriter, name: &str) -> Result<()> {
            match &self.layer {
                Some(layer) => writer.module(name, layer),
                None => Ok(()),
            }
        }

        fn load(&mut self, checkpoint: &Checkpoint, name: &str) -> Result<()> {
            if let Some(layer) = self.layer.take() {
                self.layer = Some(checkpoint.load_module(name, layer)?);
            }
            Ok(())
        }

        fn init_from(&mut self, file: &std::path::Path) -> Result<()> {
            anyhow::bail!("asked for {} from {}", self.name, file.display())
        }

        fn export(&self, _dir: &std::path::Path, _name: &str) -> Result<Vec<std::path::PathBuf>> {
            Ok(Vec::new())
        }
    }

    /// Images of uniform noise in [0, 1].
    struct Gray;

    impl ImageSource for Gray {
        fn pixel_range(&self) -> PixelRange {
            PixelRange::ZeroToOne
        }
        fn describe(&self) -> String {
            "noise".into()
        }
        fn draw(&self, count: usize, _seed: u64, device: &Device) -> Drawn {
            Tensor::<4>::random(
                [count, 1, 28, 28],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                device,
            )
            .into()
        }
    }

    /// 40 training images (5 batches of 8, so 5 steps an epoch) with labels 0..40 mod 10 and
    /// pixel values that tell them apart, and 20 test images.
    fn data() -> FashionMnist {
        let split = |count: usize| Split {
            images: (0..count * IMAGE_PIXELS)
                .map(|i| ((i * 7) % 256) as u8)
                .collect(),
            labels: (0..count).map(|i| (i % 10) as u8).collect(),
        };
        FashionMnist {
            train: split(40),
            test: split(20),
        }
    }

    fn common(out: &std::path::Path, args: &[&str]) -> CommonArgs {
        let out = out.to_string_lossy().into_owned();
        let mut flags = vec!["--batch-size", "8", "--backend", "flex", "--out", &out];
        flags.extend_from_slice(args);
        CommonArgs::try_parse_from(flags).unwrap()
    }

    /// Runs the stub for `epochs` epochs; the labels it saw.
    fn run_stub(
        common: &CommonArgs,
        epochs: usize,
        nan_at: Option<u64>,
    ) -> (Result<TrainSummary>, Vec<u8>) {
        let settings = RunSettings::new(common.clone(), epochs, 1.0);
        let plan = FitPlan::new("stub", &settings, PixelRange::ZeroToOne);
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let result = fit_on(&plan, &"settings", Some(data()), |device| {
            Ok(Stub {
                layer: StubNetwork {
                    name: "layer",
                    layer: Some(LinearConfig::new(1, 1).init(device)),
                },
                other: StubNetwork {
                    name: "other",
                    layer: None,
                },
                nan_at,
                seen: log,
            })
        });
        let seen = seen.borrow().clone();
        (result, seen)
    }

    fn rows(out: &std::path::Path) -> Vec<Vec<String>> {
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|line| line.split(',').map(String::from).collect())
            .collect()
    }

    #[test]
    fn rows_every_n_steps_and_at_each_epoch_end_with_the_epoch_values_and_fid() {
        let dir = tempfile::tempdir().unwrap();
        let common = common(dir.path(), &["--log-every", "3", "--fid-every", "2"]);
        let (summary, seen) = run_stub(&common, 2, None);
        assert_eq!(summary.unwrap().steps, 10);
        assert_eq!(seen.len(), 10);
        let rows = rows(dir.path());
        assert_eq!(
            rows[0],
            [
                "step",
                "epoch",
                "loss",
                "closing",
                "images_per_sec",
                "elapsed_s",
                "fid"
            ]
        );
        let steps: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
        assert_eq!(steps, ["3", "5", "6", "9", "10"]);
        // The loss column is the mean over the interval: steps 1..=3 -> 2, 4..=5 -> 4.5.
        let losses: Vec<&str> = rows[1..].iter().map(|row| row[2].as_str()).collect();
        assert_eq!(losses, ["2", "4.5", "6", "8", "10"]);
        // Epoch values only in the rows that close an epoch; FID only at epoch 2.
        let closing: Vec<&str> = rows[1..].iter().map(|row| row[3].as_str()).collect();
        assert_eq!(closing, ["NaN", "10", "NaN", "NaN", "20"]);
        let fid: Vec<f64> = rows[1..]
            .iter()
            .map(|row| row[6].parse().unwrap())
            .collect();
        assert!(fid[..4].iter().all(|v| v.is_nan()), "{fid:?}");
        assert!(fid[4].is_finite() && fid[4] > 0.0, "{fid:?}");
        for epoch in [1, 2] {
            assert!(
                dir.path()
                    .join(format!("samples/epoch_00{epoch}.png"))
                    .exists()
            );
        }
        assert!(dir.path().join("real.png").exists());
    }

    #[test]
    fn the_checkpoint_of_the_lowest_fid_is_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--fid-every", "1", "--keep-checkpoints", "1"];
        run_stub(&common(dir.path(), &flags), 4, None).0.unwrap();
        let rows = rows(dir.path());
        let fids: Vec<(u64, f64)> = rows[1..]
            .iter()
            .map(|row| (row[0].parse().unwrap(), row[6].parse().unwrap()))
            .filter(|(_, fid): &(u64, f64)| fid.is_finite())
            .collect();
        assert_eq!(fids.len(), 4, "one FID an epoch: {fids:?}");
        let lowest = fids
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let checkpoints = crate::checkpoint::Checkpoints::new(dir.path().join("checkpoints"));
        let (best, fid) = checkpoints.best().unwrap().unwrap();
        assert_eq!((best.state.step, fid), lowest);
        // Its files are whole copies, checked against their SHA-256 as any checkpoint's.
        best.load_module("layer", LinearConfig::new(1, 1).init(&Device::flex()))
            .unwrap();
        // Only the newest of the others is kept.
        assert_eq!(checkpoints.latest().unwrap().unwrap().state.step, 20);
    }

    #[test]
    fn a_run_stopped_by_max_steps_resumes_mid_epoch_on_the_same_batches() {
        let whole = tempfile::tempdir().unwrap();
        let (_, uninterrupted) = run_stub(&common(whole.path(), &[]), 3, None);
        assert_eq!(uninterrupted.len(), 15);

        let split = tempfile::tempdir().unwrap();
        let (summary, first) = run_stub(&common(split.path(), &["--max-steps", "7"]), 3, None);
        assert_eq!(summary.unwrap().steps, 7);
        let latest = crate::checkpoint::Checkpoints::new(split.path().join("checkpoints"))
            .latest()
            .unwrap()
            .unwrap();
        assert_eq!((latest.state.step, latest.state.epoch), (7, 1));
        // Without --resume the folder is refused, not overwritten.
        let (refused, _) = run_stub(&common(split.path(), &[]), 3, None);
        assert!(refused.unwrap_err().to_string().contains("--resume"));
        let (summary, rest) = run_stub(&common(split.path(), &["--resume"]), 3, None);
        assert_eq!(summary.unwrap().steps, 15);
        assert_eq!([first, rest].concat(), uninterrupted);
        // No step is logged twice; the rows go on where the first run stopped.
        let steps: Vec<String> = rows(split.path())[1..]
            .iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(steps, ["5", "7", "10", "15"]);
    }

    #[test]
    fn init_from_names_the_network_before_training_and_is_ignored_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        // The run stops before its first step with an error holding each of `expected`.
        let refused = |flags: &[&str], expected: &[&str]| {
            let (result, seen) = run_stub(&common(dir.path(), flags), 1, None);
            assert!(seen.is_empty(), "trained before --init-from was applied");
            let error = format!("{:#}", result.err().unwrap());
            for needle in expected {
                assert!(error.contains(needle), "`{needle}` missing from: {error}");
            }
        };
        refused(
            &["--init-from", "w.pt"],
            &["--init-from w.pt: asked for layer from w.pt"],
        );
        refused(&["--init-from", "other=w.pt"], &["asked for other"]);
        refused(
            &["--init-from", "critic=w.pt"],
            &["no network `critic`", "layer, other"],
        );
        // A resumed run has its weights from the checkpoint.
        run_stub(&common(dir.path(), &["--max-steps", "2"]), 1, None)
            .0
            .unwrap();
        let flags = ["--resume", "--init-from", "w.pt"];
        let (summary, _) = run_stub(&common(dir.path(), &flags), 1, None);
        assert_eq!(summary.unwrap().steps, 5);
    }

    #[test]
    fn step_checkpoints_are_written_every_n_steps_and_the_newest_k_kept() {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["--checkpoint-every", "2", "--keep-checkpoints", "3"];
        let (summary, _) = run_stub(&common(dir.path(), &flags), 2, None);
        assert_eq!(summary.unwrap().steps, 10);
        // Steps 2, 4, 5 (the epoch's end), 6, 8, 10: the newest three remain.
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("step_"))
            .collect();
        names.sort();
        assert_eq!(names, ["step_000006", "step_000008", "step_000010"]);
        let mid = Checkpoint::open(dir.path().join("checkpoints/step_000006")).unwrap();
        assert_eq!((mid.state.step, mid.state.epoch), (6, 1));
        // --resume where there is no checkpoint is refused, naming the folder.
        let empty = tempfile::tempdir().unwrap();
        let (refused, seen) = run_stub(&common(empty.path(), &["--resume"]), 1, None);
        let error = refused.unwrap_err().to_string();
        assert!(error.contains("holds no checkpoint"), "{error}");
        assert!(
            error.contains(&empty.path().display().to_string()),
            "{error}"
        );
        assert!(seen.is_empty());
    }

    #[test]
    fn step_seeds_differ_between_steps_and_seeds_and_repeat_exactly() {
        assert_eq!(step_seed(42, 7), step_seed(42, 7));
        let seeds: std::collections::HashSet<u64> = (0..3)
            .flat_map(|seed| (1..1000).map(move |step| step_seed(seed, step)))
            .collect();
        assert_eq!(seeds.len(), 3 * 999);
    }

    #[test]
    fn a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (result, _) = run_stub(&common(dir.path(), &["--log-every", "2"]), 3, Some(7));
        let error = result.unwrap_err().to_string();
        assert!(
            error.contains("diverged at step 8") && error.contains("loss is NaN"),
            "{error}"
        );
        let latest = crate::checkpoint::Checkpoints::new(dir.path().join("checkpoints"))
            .latest()
            .unwrap()
            .unwrap();
        assert_eq!(latest.state.step, 5);
    }
}
