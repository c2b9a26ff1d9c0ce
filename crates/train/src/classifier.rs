//! Training the Fashion-MNIST classifier whose features FID compares, and the committed copy of
//! its weights that every FID in the project uses.
//!
//! Adam (lr 1e-3, epsilon 1e-8) on the cross-entropy, batch 128, with the learning rate
//! following a cosine from `lr` to 0 over the run; after each epoch the loss and accuracy on
//! the test split. When training ends the weights are written to `<run>/fashion_classifier.bpk`;
//! the repository's copy is [`WEIGHTS`] (`crates/train/weights/fashion_classifier.bpk`).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor};
use genmodels::{Classifier, ClassifierConfig};
use genmodels_data::{BatchLoader, PixelRange, Split};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, TrainingState};
use crate::cli::CommonArgs;
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "classifier";
/// The file the trained weights are written to, in the run folder and in the repository.
pub const WEIGHTS_FILE: &str = "fashion_classifier.bpk";
/// The committed weights of the feature network (burnpack), made by `examples/classifier.rs`
/// with its default settings.
pub const WEIGHTS: &[u8] = include_bytes!("../weights/fashion_classifier.bpk");
const METRICS: [&str; 8] = [
    "step",
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "images_per_sec",
    "elapsed_s",
];
/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 500;

/// Every setting of a classifier run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierSettings {
    pub common: CommonArgs,
    pub epochs: usize,
    pub lr: f64,
    pub epsilon: f64,
}

impl ClassifierSettings {
    /// 6 epochs of Adam 1e-3 (epsilon 1e-8) where a flag is absent.
    pub fn from_args(common: CommonArgs) -> Self {
        Self {
            epochs: common.epochs.unwrap_or(6),
            lr: common.lr.unwrap_or(1e-3),
            common,
            epsilon: 1e-8,
        }
    }

    /// The cosine schedule: `lr_t = lr (1 + cos(pi t / T)) / 2` at step `t` of `T`.
    pub fn lr_at(&self, step: u64, total_steps: u64) -> f64 {
        let progress = (step as f64 / total_steps.max(1) as f64).min(1.0);
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// The SHA-256 (hex) of the committed weights: names the feature space an FID was computed in.
pub fn weights_sha256() -> String {
    Sha256::digest(WEIGHTS)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The feature network with the committed weights, on `device` (a device without autodiff, so
/// that BatchNorm uses its running statistics and dropout is off).
pub fn pretrained(device: &Device) -> Result<Classifier> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(WEIGHTS.to_vec()))
        .map_err(|e| anyhow::anyhow!("the committed classifier weights cannot be read: {e}"))?;
    ClassifierConfig::new()
        .init(device)
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("the committed classifier weights do not fit: {e}"))
}

/// Loss and accuracy of a classifier on a whole split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Mean cross-entropy (nats).
    pub loss: f64,
    /// Fraction of images whose most likely class is their label.
    pub accuracy: f64,
}

/// Scores every image of `split`, in batches of 500 (`classifier` should be on a device
/// without autodiff).
pub fn evaluate(classifier: &Classifier, split: &Split, device: &Device) -> Accuracy {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let indices: Vec<usize> = (0..split.len()).collect();
    let mut sums: Option<Tensor<1>> = None;
    for chunk in indices.chunks(EVAL_BATCH) {
        let batch = split.batch(chunk, PixelRange::ZeroToOne, device);
        let logits = classifier.forward(batch.images);
        let loss = loss_fn.forward(logits.clone(), batch.labels.clone()) * chunk.len() as f32;
        let batch_sums = Tensor::cat(vec![loss, correct(logits, batch.labels)], 0);
        sums = Some(match sums {
            Some(total) => total + batch_sums,
            None => batch_sums,
        });
    }
    let sums = sums
        .map(|s| s.into_data().try_to_vec::<f32>().expect("f32 sums"))
        .unwrap_or(vec![0.0; 2]);
    let n = split.len().max(1) as f64;
    Accuracy {
        loss: sums[0] as f64 / n,
        accuracy: sums[1] as f64 / n,
    }
}

/// How many rows of `logits` have their largest entry at the label: `[1]`.
fn correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let predicted = logits.argmax(1).squeeze_dim::<1>(1); // [B]
    predicted.equal(labels).float().sum()
}

/// The network and its optimizer: one training iteration is [`Trainer::step`].
pub struct Trainer {
    pub classifier: Classifier,
    optim: ModuleOptimizer,
}

impl Trainer {
    /// A freshly initialised network and Adam state (`device` should be an autodiff device).
    pub fn new(settings: &ClassifierSettings, device: &Device) -> Self {
        Self {
            classifier: ClassifierConfig::new().init(device),
            optim: AdamConfig::new()
                .with_epsilon(settings.epsilon as f32)
                .init(),
        }
    }

    /// One Adam step on the cross-entropy. Returns, detached, `[loss, correct predictions]`.
    pub fn step(&mut self, images: Tensor<4>, labels: Tensor<1, Int>, lr: f64) -> Tensor<1> {
        let loss_fn = CrossEntropyLossConfig::new().init(&images.device());
        let logits = self.classifier.forward(images);
        let loss = loss_fn.forward(logits.clone(), labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &self.classifier);
        self.classifier = self.optim.step(lr, self.classifier.clone(), grads);
        Tensor::cat(vec![loss.detach(), correct(logits.detach(), labels)], 0)
    }
}

impl Checkpointed for Trainer {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        Ok(Self {
            classifier: checkpoint.load_module("classifier", self.classifier)?,
            optim: checkpoint.load_optimizer("classifier", self.optim)?,
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module("classifier", &self.classifier)?;
        writer.optimizer("classifier", &self.optim)?;
        writer.commit(state)
    }
}

/// Trains the classifier with `settings`, writing metrics, checkpoints and, at the end,
/// `fashion_classifier.bpk` into the run folder.
pub fn train(settings: &ClassifierSettings) -> Result<TrainSummary> {
    let common = &settings.common;
    let run = RunDir::create(MODEL, common)?;
    run.write_config(settings)?;
    let data = run.load_data(common)?;
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);

    let model = Trainer::new(settings, &device);
    let (mut model, start) = run.resume(common, model, &device)?;

    let loader = BatchLoader::new(
        Arc::new(data.train),
        common.batch_size,
        PixelRange::ZeroToOne,
    )
    .with_seed(common.seed)
    .with_drop_last(true);
    let steps_per_epoch = loader.num_batches() as u64;
    let total_steps = common
        .max_steps
        .unwrap_or(steps_per_epoch * settings.epochs as u64);
    let eval_device = run.device.device.clone();
    let mut metrics = run.metrics(&METRICS, start)?;
    let mut summary = run.summary();
    let started = Instant::now();
    let mut step = start.step;
    let mut test = None;

    for epoch in start.epoch..settings.epochs {
        let done_in_epoch = step.saturating_sub(epoch as u64 * steps_per_epoch);
        let mut progress =
            EpochProgress::start(epoch + 1, settings.epochs, steps_per_epoch, done_in_epoch);
        let mut epoch_sums = StepMeans::default();
        let mut stop = false;
        for batch in loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize)
        {
            let batch_size = batch.images.dims()[0];
            let lr = settings.lr_at(step, total_steps);
            epoch_sums.add(model.step(batch.images, batch.labels, lr));
            step += 1;
            progress.step(batch_size);
            stop = common.max_steps.is_some_and(|max| step >= max);
            if step % common.log_every == 0 {
                let loss = epoch_sums.means()?.expect("one step")[0];
                check_finite(&[("loss", loss)], step, &run.checkpoints)?;
                let correct = epoch_sums.sums()?.expect("one step")[1];
                progress.bar.set_message(format!(
                    "loss {loss:.3} accuracy {:.3} lr {lr:.2e}",
                    correct / progress.report().images as f64
                ));
            }
            if stop {
                break;
            }
        }
        let report = progress.finish();
        let (Some(means), Some(sums)) = (epoch_sums.means()?, epoch_sums.sums()?) else {
            break;
        };
        // A step returns its mean loss and its number of correct predictions.
        let train_loss = means[0];
        let train_accuracy = sums[1] / report.images.max(1) as f64;
        check_finite(&[("loss", train_loss)], step, &run.checkpoints)?;
        let rate = report.images_per_sec();

        let scores = evaluate(&model.classifier.valid(), &data.test, &eval_device);
        metrics.append(&[
            step as f64,
            (epoch + 1) as f64,
            train_loss,
            train_accuracy,
            scores.loss,
            scores.accuracy,
            rate,
            started.elapsed().as_secs_f64(),
        ])?;
        println!(
            "{MODEL}: epoch {} train loss {train_loss:.4} accuracy {train_accuracy:.4} | test loss {:.4} accuracy {:.4}",
            epoch + 1,
            scores.loss,
            scores.accuracy
        );
        test = Some(scores);

        let completed = if stop { epoch } else { epoch + 1 };
        let checkpoint = run.save_checkpoint(&model, step, completed, common.seed)?;
        summary.record_epoch(report, checkpoint.dir);
        if stop {
            break;
        }
    }
    let weights = run.path(WEIGHTS_FILE);
    model
        .classifier
        .valid()
        .into_record()
        .save(&weights)
        .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", weights.display()))
        .context("writing the trained weights")?;
    summary.steps = step;
    summary.print();
    if let Some(scores) = test {
        println!(
            "  {WEIGHTS_FILE}  the trained weights (test accuracy {:.4}); the repository's copy is \
             crates/train/weights/{WEIGHTS_FILE}",
            scores.accuracy
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_by_hand() {
        let settings = ClassifierSettings::from_args(CommonArgs::default());
        assert_eq!(settings.lr_at(0, 100), 1e-3);
        assert!((settings.lr_at(50, 100) - 5e-4).abs() < 1e-15);
        // cos(pi / 4) = sqrt(2) / 2.
        let quarter = 1e-3 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!((settings.lr_at(25, 100) - quarter).abs() < 1e-15);
        assert!(settings.lr_at(100, 100).abs() < 1e-15);
        assert!(settings.lr_at(150, 100).abs() < 1e-15);
    }

    #[test]
    fn correct_counts_argmax_matches() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_floats(
            [[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [0.0, 0.2, 0.1]],
            &device,
        );
        let labels = Tensor::<1, Int>::from_ints([1, 2, 1], &device);
        assert_eq!(correct(logits, labels).into_scalar::<f32>(), 2.0);
    }
}
