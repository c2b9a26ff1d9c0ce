//! Training a conditional GAN on Fashion-MNIST, and drawing images of a chosen class from it.
//!
//! Each step is DCGAN's (one D step, then one G step), with both players given the class: the
//! real images carry their labels, and the generated batch uses the same labels, so fakes and
//! reals have the same class mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use genmodels::cgan::{
    ConditionalDiscriminator, ConditionalDiscriminatorConfig, ConditionalGenerator,
    ConditionalGeneratorConfig,
};
use genmodels::gan_loss::{GeneratorLoss, discriminator_loss, generator_loss, mode_seeking_loss};
use genmodels_data::{BatchLoader, CLASS_NAMES, NUM_CLASSES, PixelRange};
use image::RgbImage;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendChoice, select_device};
use crate::checkpoint::{Checkpoint, Checkpoints, TrainingState};
use crate::cli::CommonArgs;
use crate::eval::FidMonitor;
use crate::fsutil::write_atomic_with;
use crate::grid::{PixelScale, image_grid};
use crate::run::{Checkpointed, EpochProgress, RunDir, StepMeans, check_finite, fixed_normal};
use crate::summary::TrainSummary;

/// The model name used for the run folder and checked when resuming.
pub const MODEL: &str = "cgan";
const METRICS: [&str; 9] = [
    "step",
    "epoch",
    "loss_d",
    "loss_g",
    "d_real",
    "d_fake",
    "mode_seeking",
    "images_per_sec",
    "elapsed_s",
];
/// Samples per class in the per-epoch grid: one row per class.
const PER_CLASS: usize = 10;
/// Width of the strip holding the class names, left of the grid.
const NAME_WIDTH: u32 = 110;

/// Every setting of a conditional GAN run; written to `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CganSettings {
    pub common: CommonArgs,
    pub epochs: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub latent_dim: usize,
    pub embedding_dim: usize,
    /// Weight λ of the mode-seeking term in G's loss ([`mode_seeking_loss`]); 0 for the plain
    /// cGAN (and for runs from before the term existed).
    #[serde(default)]
    pub mode_seeking: f64,
}

impl CganSettings {
    /// DCGAN's settings (Adam 2e-4, betas 0.5 / 0.999, epsilon 1e-8) where a flag is absent,
    /// and the mode-seeking weight λ.
    pub fn from_args(common: CommonArgs, mode_seeking: f64) -> Self {
        Self {
            epochs: common.epochs.unwrap_or(10),
            lr: common.lr.unwrap_or(2e-4),
            common,
            beta1: 0.5,
            beta2: 0.999,
            epsilon: 1e-8,
            latent_dim: 100,
            embedding_dim: 50,
            mode_seeking,
        }
    }

    /// The generator these settings train.
    pub fn generator_config(&self) -> ConditionalGeneratorConfig {
        ConditionalGeneratorConfig::new()
            .with_num_classes(NUM_CLASSES)
            .with_latent_dim(self.latent_dim)
            .with_embedding_dim(self.embedding_dim)
    }
}

/// The two networks and their optimizers: one training iteration is [`Cgan::step`].
pub struct Cgan {
    pub generator: ConditionalGenerator,
    pub discriminator: ConditionalDiscriminator,
    optim_g: ModuleOptimizer,
    optim_d: ModuleOptimizer,
    mode_seeking: f64,
}

impl Cgan {
    /// Freshly initialised networks and Adam states (`device` should be an autodiff device).
    pub fn new(settings: &CganSettings, device: &Device) -> Self {
        let adam = AdamConfig::new()
            .with_beta_1(settings.beta1 as f32)
            .with_beta_2(settings.beta2 as f32)
            .with_epsilon(settings.epsilon as f32);
        Self {
            generator: settings.generator_config().init(device),
            discriminator: ConditionalDiscriminatorConfig::new()
                .with_num_classes(NUM_CLASSES)
                .init(device),
            optim_g: adam.init(),
            optim_d: adam.init(),
            mode_seeking: settings.mode_seeking,
        }
    }

    /// One D step on `(real, labels)` and as many fakes, then one G step. Returns, detached,
    /// `[loss_d, loss_g, mean D(x, y), mean D(G(z, y), y), mode-seeking term]`.
    ///
    /// The fakes take the real batch's labels, except with the mode-seeking term: then the
    /// second half of the fakes repeats the first half's labels with its own z, so that fakes
    /// `i` and `i + B/2` form the pairs of [`mode_seeking_loss`].
    pub fn step(&mut self, real: Tensor<4>, labels: Tensor<1, Int>, lr: f64) -> Tensor<1> {
        let [batch, ..] = real.dims();
        let device = real.device();
        let half = batch / 2;
        let seek_modes = self.mode_seeking > 0.0 && half > 0;
        let fake_labels = if seek_modes {
            let first = labels.clone().slice(0..half);
            let rest = labels.clone().slice(2 * half..batch);
            Tensor::cat(vec![first.clone(), first, rest], 0)
        } else {
            labels.clone()
        };
        let z = self.generator.sample_latent(batch, &device);
        let fake = self.generator.forward(z.clone(), fake_labels.clone());

        let real_logits = self.discriminator.forward(real, labels);
        let fake_logits = self
            .discriminator
            .forward(fake.clone().detach(), fake_labels.clone());
        let loss_d = discriminator_loss(real_logits.clone(), fake_logits.clone());
        let grads = GradientsParams::from_grads(loss_d.backward(), &self.discriminator);
        self.discriminator = self.optim_d.step(lr, self.discriminator.clone(), grads);

        let loss_g = generator_loss(
            self.discriminator.forward(fake.clone(), fake_labels),
            GeneratorLoss::NonSaturating,
        );
        let mode_seeking = if seek_modes {
            mode_seeking_loss(
                fake.clone().slice(0..half),
                fake.slice(half..2 * half),
                z.clone().slice(0..half),
                z.slice(half..2 * half),
            )
        } else {
            Tensor::zeros([1], &device)
        };
        let total = loss_g.clone() + mode_seeking.clone().mul_scalar(self.mode_seeking);
        let grads = GradientsParams::from_grads(total.backward(), &self.generator);
        self.generator = self.optim_g.step(lr, self.generator.clone(), grads);

        Tensor::cat(
            vec![
                loss_d.detach(),
                loss_g.detach(),
                sigmoid(real_logits.detach()).mean(),
                sigmoid(fake_logits.detach()).mean(),
                mode_seeking.detach(),
            ],
            0,
        )
    }
}

impl Checkpointed for Cgan {
    fn load(self, checkpoint: &Checkpoint) -> Result<Self> {
        Ok(Self {
            generator: checkpoint.load_module("generator", self.generator)?,
            discriminator: checkpoint.load_module("discriminator", self.discriminator)?,
            optim_g: checkpoint.load_optimizer("generator", self.optim_g)?,
            optim_d: checkpoint.load_optimizer("discriminator", self.optim_d)?,
            mode_seeking: self.mode_seeking,
        })
    }

    fn save(&self, run: &RunDir, state: &TrainingState) -> Result<Checkpoint> {
        let writer = run.checkpoints.begin(state.step)?;
        writer.module("generator", &self.generator)?;
        writer.module("discriminator", &self.discriminator)?;
        writer.optimizer("generator", &self.optim_g)?;
        writer.optimizer("discriminator", &self.optim_d)?;
        writer.commit(state)
    }
}

/// Labels `[count]`: `classes[i]` repeated `per_class` times each, in order.
fn repeated_labels(classes: &[usize], per_class: usize, device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = classes
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c as i64, per_class))
        .collect();
    let count = values.len();
    Tensor::from_data(TensorData::new(values, [count]), device)
}

/// Writes a grid with one row per class (`images` holds `columns` images of each class in
/// `classes`, in order) and each row's class name on its left.
pub fn save_class_grid(
    images: Tensor<4>,
    classes: &[usize],
    columns: usize,
    path: &Path,
) -> Result<()> {
    let grid = image_grid(images, columns, 2, PixelScale::MinusOneToOne)?;
    let width = NAME_WIDTH + grid.width();
    let height = grid.height();
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw_names(&root, classes, grid.height())
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    }
    let mut canvas = RgbImage::from_raw(width, height, pixels).expect("buffer matches the size");
    let grid_rgb = image::DynamicImage::ImageLuma8(grid).to_rgb8();
    image::imageops::replace(&mut canvas, &grid_rgb, NAME_WIDTH as i64, 0);
    // Black text on white and gray tiles: one channel is enough.
    let canvas = image::DynamicImage::ImageRgb8(canvas).to_luma8();
    write_atomic_with(path, |tmp| {
        canvas
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

fn draw_names(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    classes: &[usize],
    grid_height: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let row_height = (grid_height as i32 - 2) / classes.len().max(1) as i32;
    for (row, &class) in classes.iter().enumerate() {
        let y = 2 + row as i32 * row_height + row_height / 2 - 7;
        root.draw(&Text::new(
            CLASS_NAMES[class],
            (6, y),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// Trains a conditional GAN with `settings`, writing per-class grids, metrics and checkpoints.
pub fn train(settings: &CganSettings) -> Result<TrainSummary> {
    let common = &settings.common;
    let run = RunDir::create(MODEL, common)?;
    run.write_config(settings)?;
    let data = run.load_data(common)?;
    let fid = FidMonitor::new(MODEL, common, &run, &data, PixelRange::MinusOneToOne)?;
    let device = run.device.device.clone().autodiff();
    device.seed(common.seed);

    let model = Cgan::new(settings, &device);
    let (mut model, start) = run.resume(common, model, &device)?;

    let loader = BatchLoader::new(
        Arc::new(data.train),
        common.batch_size,
        PixelRange::MinusOneToOne,
    )
    .with_seed(common.seed)
    .with_drop_last(true);
    let steps_per_epoch = loader.num_batches() as u64;
    let sample_device = run.device.device.clone();
    // One z per column, shared by every row, so that a column varies only the class.
    let column_z = fixed_normal(
        [PER_CLASS, settings.latent_dim],
        common.seed,
        &sample_device,
    );
    let fixed_z = column_z.repeat_dim(0, NUM_CLASSES);
    let all_classes: Vec<usize> = (0..NUM_CLASSES).collect();
    let fixed_labels = repeated_labels(&all_classes, PER_CLASS, &sample_device);
    let mut metrics = run.metrics(&fid.columns(&METRICS), start)?;
    let mut summary = run.summary();
    let started = Instant::now();
    let mut step = start.step;

    for epoch in start.epoch..settings.epochs {
        let done_in_epoch = step.saturating_sub(epoch as u64 * steps_per_epoch);
        let mut progress =
            EpochProgress::start(epoch + 1, settings.epochs, steps_per_epoch, done_in_epoch);
        let mut interval = StepMeans::default();
        let mut stop = false;
        for batch in loader
            .epoch(epoch as u64, &device)
            .skip(done_in_epoch as usize)
        {
            let batch_size = batch.images.dims()[0];
            interval.add(model.step(batch.images, batch.labels, settings.lr));
            step += 1;
            progress.step(batch_size);
            stop = common.max_steps.is_some_and(|max| step >= max);
            let at_end = step % steps_per_epoch == 0 || stop;
            if step % common.log_every == 0 || at_end {
                let mean = interval.take()?.expect("at least one step");
                check_finite(
                    &[("loss_d", mean[0]), ("loss_g", mean[1])],
                    step,
                    &run.checkpoints,
                )?;
                let rate = progress.images_per_sec();
                let row = vec![
                    step as f64,
                    (epoch + 1) as f64,
                    mean[0],
                    mean[1],
                    mean[2],
                    mean[3],
                    mean[4],
                    rate,
                    started.elapsed().as_secs_f64(),
                ];
                let completed = (step % steps_per_epoch == 0).then_some(epoch + 1);
                let row = fid.extend_row(row, completed, |count, seed| {
                    // The classes in turn, so that FID compares against a class-balanced set.
                    let z = fixed_normal([count, settings.latent_dim], seed, &sample_device);
                    let classes: Vec<usize> = (0..count).map(|i| i % NUM_CLASSES).collect();
                    let labels = repeated_labels(&classes, 1, &sample_device);
                    Ok(model.generator.valid().forward(z, labels))
                })?;
                metrics.append(&row)?;
                progress.bar.set_message(format!(
                    "loss_d {:.3} loss_g {:.3} D(x) {:.2} D(G(z)) {:.2} {rate:.0} img/s",
                    mean[0], mean[1], mean[2], mean[3]
                ));
            }
            if stop {
                break;
            }
        }
        let report = progress.finish();
        let completed = if stop { epoch } else { epoch + 1 };
        let samples = model
            .generator
            .valid()
            .forward(fixed_z.clone(), fixed_labels.clone());
        save_class_grid(
            samples,
            &all_classes,
            PER_CLASS,
            &run.epoch_samples(epoch + 1),
        )?;
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

/// What `sample` mode needs: a run folder, the class and how many images.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    /// A run folder; its latest checkpoint is used.
    pub from: PathBuf,
    /// The class to draw, `0..10`.
    pub class: usize,
    pub count: usize,
    pub seed: u64,
    pub backend: BackendChoice,
    /// The grid's path [default: `<run>/samples/class_<K>.png`].
    pub output: Option<PathBuf>,
}

/// Draws `count` images of one class from the latest checkpoint of a run, in rows of 8 with the
/// class name on the left. Returns the grid's path.
pub fn sample_class(request: &SampleRequest) -> Result<PathBuf> {
    if request.class >= NUM_CLASSES {
        bail!(
            "--class {}: the classes are 0 to {} ({})",
            request.class,
            NUM_CLASSES - 1,
            CLASS_NAMES.join(", ")
        );
    }
    let config_path = request.from.join("config.json");
    let text = std::fs::read_to_string(&config_path).with_context(|| {
        format!(
            "--from {}: cannot read {} (give a cgan run folder)",
            request.from.display(),
            config_path.display()
        )
    })?;
    let settings: CganSettings = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the config of a cgan run", config_path.display()))?;
    let checkpoint = Checkpoints::new(request.from.join("checkpoints"))
        .latest()?
        .with_context(|| format!("--from {}: no checkpoint yet", request.from.display()))?;
    checkpoint.expect_model(MODEL)?;
    let selected = select_device(request.backend)?;
    println!("{MODEL}: computing on {}", selected.description);
    let device = selected.device;
    let generator =
        checkpoint.load_module("generator", settings.generator_config().init(&device))?;
    let z = fixed_normal([request.count, settings.latent_dim], request.seed, &device);
    let labels = repeated_labels(&[request.class], request.count, &device);
    let images = generator.forward(z, labels);
    let output = request.output.clone().unwrap_or_else(|| {
        request
            .from
            .join(format!("samples/class_{}.png", request.class))
    });
    let columns = 8.min(request.count);
    let rows = request.count.div_ceil(columns);
    save_class_grid(images, &vec![request.class; rows], columns, &output)?;
    println!(
        "{MODEL}: {} images of class {} ({}) from {}: {}",
        request.count,
        request.class,
        CLASS_NAMES[request.class],
        checkpoint.dir.display(),
        output.display()
    );
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_grid_has_a_name_strip_and_the_tiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let device = Device::flex();
        let images = Tensor::<4>::ones([6, 1, 28, 28], &device);
        save_class_grid(images, &[3, 7], 3, &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        // 3 tiles of 28 + 2 padding, plus 2; 2 rows likewise; plus the name strip.
        assert_eq!(image.dimensions(), (NAME_WIDTH + 92, 62));
        // A tile's pixel (value 1 -> white) and the grid's padding (black).
        assert_eq!(image.get_pixel(NAME_WIDTH + 5, 5).0, [255, 255, 255]);
        assert_eq!(image.get_pixel(NAME_WIDTH, 5).0, [0, 0, 0]);
        // Some text was drawn in the strip: not every pixel there is white.
        let dark = (0..NAME_WIDTH)
            .flat_map(|x| (0..62).map(move |y| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(dark > 20, "no class name drawn ({dark} dark pixels)");
    }
}
