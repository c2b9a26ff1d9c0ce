//! Training the Fashion-MNIST classifier whose features FID compares, and the committed copy of
//! its weights that every FID in the project uses.
//!
//! Adam (lr 1e-3, epsilon 1e-8) on the cross-entropy, batch 128, with the learning rate
//! following a cosine from `lr` to 0 over the run; after each epoch the loss and accuracy on
//! the test split. When training ends the weights are written to `<run>/fashion_classifier.bpk`;
//! the repository's copy is [`WEIGHTS`] (`crates/train/weights/fashion_classifier.bpk`).

use crate::adam::AdamConfig;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor};
use genmodels::{Classifier, ClassifierConfig, ImageSource};
use genmodels_data::{Batch, PixelRange, Split};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cli::CommonArgs;
use crate::fit::{
    EpochMetrics, FitPlan, RunContext, RunSettings, StepMetrics, Trainable, fit, single,
};
use crate::optim::TrainedNetwork;
use crate::run::{CheckpointPart, Checkpointed};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "classifier";
/// The file the trained weights are written to, in the run folder and in the repository.
pub const WEIGHTS_FILE: &str = "fashion_classifier.bpk";
/// The committed weights of the feature network (burnpack), made by `examples/classifier.rs`
/// with its default settings.
pub const WEIGHTS: &[u8] = include_bytes!("../weights/fashion_classifier.bpk");
/// Images per forward pass when evaluating.
const EVAL_BATCH: usize = 500;

/// Every setting of a classifier run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierSettings {
    #[serde(flatten)]
    pub run: RunSettings,
    pub classifier: ClassifierConfig,
    pub optimizer: AdamConfig,
}

impl ClassifierSettings {
    /// 6 epochs of Adam 1e-3 (epsilon 1e-8) where a flag is absent.
    pub fn new(common: CommonArgs) -> Self {
        Self {
            run: RunSettings::new(common, 6, 1e-3),
            classifier: ClassifierConfig::new(),
            optimizer: AdamConfig::new().with_epsilon(1e-8),
        }
    }

    /// The cosine schedule: `lr_t = lr (1 + cos(pi t / T)) / 2` at step `t` of `T`.
    pub fn lr_at(&self, step: u64, total_steps: u64) -> f64 {
        let progress = (step as f64 / total_steps.max(1) as f64).min(1.0);
        self.run.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
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
    pub classifier: TrainedNetwork<Classifier>,
    settings: ClassifierSettings,
    total_steps: u64,
    test_accuracy: Option<f64>,
}

impl Checkpointed for Trainer {
    fn parts(&mut self) -> Vec<(&'static str, &mut dyn CheckpointPart)> {
        vec![(MODEL, &mut self.classifier)]
    }
}

impl Trainer {
    /// A freshly initialised network and Adam state (`device` should be an autodiff device).
    pub fn new(settings: &ClassifierSettings, device: &Device) -> Self {
        Self {
            classifier: TrainedNetwork::new(
                settings.classifier.init(device),
                settings.optimizer.init(),
            ),
            settings: settings.clone(),
            total_steps: 1,
            test_accuracy: None,
        }
    }

    /// One Adam step on the cross-entropy. Returns, detached, the loss and the batch's accuracy.
    pub fn step(&mut self, images: Tensor<4>, labels: Tensor<1, Int>, lr: f64) -> StepMetrics {
        let [batch, ..] = images.dims();
        let loss_fn = CrossEntropyLossConfig::new().init(&images.device());
        let logits = self.classifier.network.forward(images);
        let loss = loss_fn.forward(logits.clone(), labels.clone());
        self.classifier.step(loss.clone(), lr);
        let accuracy = correct(logits.detach(), labels).div_scalar(batch as f64);
        StepMetrics::new()
            .with("train_loss", loss.detach())
            .with("train_accuracy", accuracy)
    }
}

impl Trainable for Trainer {
    fn begin(&mut self, context: &RunContext) -> Result<()> {
        let run = &self.settings.run;
        self.total_steps = run
            .common
            .max_steps
            .unwrap_or(context.steps_per_epoch * run.epochs as u64);
        Ok(())
    }

    fn step(&mut self, batches: Vec<Batch>, step: u64) -> StepMetrics {
        let batch = single(batches);
        let lr = self.settings.lr_at(step - 1, self.total_steps);
        Trainer::step(self, batch.images, batch.labels, lr)
    }

    fn epoch_metric_names(&self) -> &'static [&'static str] {
        &["test_loss", "test_accuracy"]
    }

    fn end_epoch(&mut self, context: &RunContext, epoch: usize) -> Result<EpochMetrics> {
        let scores = evaluate(
            &self.classifier.network.valid(),
            context.test,
            context.device,
        );
        println!(
            "{MODEL}: epoch {epoch} test loss {:.4} accuracy {:.4}",
            scores.loss, scores.accuracy
        );
        self.test_accuracy = Some(scores.accuracy);
        Ok(vec![
            ("test_loss", scores.loss),
            ("test_accuracy", scores.accuracy),
        ])
    }

    /// The trained weights, as `fashion_classifier.bpk` in the run folder.
    fn end_training(&mut self, context: &RunContext) -> Result<()> {
        let weights = context.run.path(WEIGHTS_FILE);
        self.classifier
            .network
            .valid()
            .into_record()
            .save(&weights)
            .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", weights.display()))
            .context("writing the trained weights")?;
        if let Some(accuracy) = self.test_accuracy {
            println!(
                "  {WEIGHTS_FILE}  the trained weights (test accuracy {accuracy:.4}); the \
                 repository's copy is crates/train/weights/{WEIGHTS_FILE}"
            );
        }
        Ok(())
    }

    /// A classifier draws no images.
    fn image_source(&self) -> Option<Box<dyn ImageSource + '_>> {
        None
    }
}

/// Trains the classifier with `settings`, writing metrics, checkpoints and, at the end,
/// `fashion_classifier.bpk` into the run folder.
pub fn train(settings: &ClassifierSettings) -> Result<TrainSummary> {
    let plan = FitPlan::new(MODEL, &settings.run, PixelRange::ZeroToOne);
    fit(&plan, settings, |device| Ok(Trainer::new(settings, device)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_schedule_by_hand() {
        let settings = ClassifierSettings::new(CommonArgs::default());
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
