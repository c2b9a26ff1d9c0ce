//! `--fid-every N`: the FID logged to `metrics.csv` while a model trains.

use std::time::Instant;

use anyhow::{Result, bail};
use burn::tensor::Device;
use genmodels::ImageSource;
use genmodels::fid::FeatureStatistics;
use genmodels_data::{FashionMnist, PixelRange};

use super::features::{FeatureNetwork, reference};
use super::scores::draw_and_score;
use crate::cli::CommonArgs;
use crate::run::RunDir;

/// Samples behind the FID logged during training (`--fid-every`).
pub const TRAINING_FID_SAMPLES: usize = 2000;

/// `--fid-every N`: every N epochs, the FID of 2,000 samples against the test split, as the
/// last column (`fid`) of `metrics.csv`. Without the flag it adds nothing, not even the column.
pub struct FidMonitor {
    active: Option<ActiveMonitor>,
}

struct ActiveMonitor {
    model: String,
    every: usize,
    seed: u64,
    range: PixelRange,
    network: FeatureNetwork,
    test: FeatureStatistics,
}

impl FidMonitor {
    /// Reads `--fid-every`; when given, loads the classifier and the test statistics (cached in
    /// the run folder). `range` is the pixel range of the model's images.
    pub fn new(
        model: &str,
        common: &CommonArgs,
        run: &RunDir,
        data: &FashionMnist,
        range: PixelRange,
    ) -> Result<Self> {
        let Some(every) = common.fid_every else {
            return Ok(Self { active: None });
        };
        let device = run.device.device.clone();
        let network = FeatureNetwork::load(&device)?;
        let reference = reference(&network, data, data.test.len(), false, &run.root)?;
        Ok(Self {
            active: Some(ActiveMonitor {
                model: model.into(),
                every,
                seed: common.seed,
                range,
                network,
                test: reference.test,
            }),
        })
    }

    /// The monitor of a model that draws no images: `--fid-every` is refused.
    pub fn inactive(model: &str, common: &CommonArgs) -> Result<Self> {
        if common.fid_every.is_some() {
            bail!("--fid-every: the {model} draws no images to measure");
        }
        Ok(Self { active: None })
    }

    /// Whether FID is logged (`--fid-every` was given).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The columns of `metrics.csv`: `base`, then `fid` when FID is logged.
    pub fn columns<'a>(&self, base: &[&'a str]) -> Vec<&'a str> {
        let mut columns = base.to_vec();
        if self.active.is_some() {
            columns.push("fid");
        }
        columns
    }

    /// Appends NaN, no measurement, to a row that does not close an epoch, when FID is logged.
    pub fn pad_row(&self, mut row: Vec<f64>) -> Vec<f64> {
        if self.active.is_some() {
            row.push(f64::NAN);
        }
        row
    }

    /// Appends the `fid` value to the row of `metrics.csv` that closes `completed_epoch`, when
    /// FID is logged: measured on images drawn from `source` (the same seeds at every
    /// measurement) when the epoch is a multiple of N, NaN otherwise.
    pub fn extend_row(
        &self,
        row: Vec<f64>,
        completed_epoch: Option<usize>,
        source: &dyn ImageSource,
        device: &Device,
    ) -> Result<Vec<f64>> {
        let Some(active) = &self.active else {
            return Ok(row);
        };
        let Some(epoch) = completed_epoch.filter(|epoch| epoch % active.every == 0) else {
            return Ok(self.pad_row(row));
        };
        let started = Instant::now();
        let fid = draw_and_score(
            &active.network,
            TRAINING_FID_SAMPLES,
            active.seed,
            active.range,
            false,
            |count, seed| Ok(source.draw(count, seed, device)),
        )?
        .statistics()?
        .frechet_distance(&active.test)?;
        println!(
            "{}: epoch {epoch}: FID {fid:.3} ({TRAINING_FID_SAMPLES} samples against the test \
             split, {:.1} s)",
            active.model,
            started.elapsed().as_secs_f64()
        );
        let mut row = row;
        row.push(fid);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;
    use genmodels_data::IMAGE_PIXELS;
    use genmodels_data::IMAGE_SIDE;

    /// Uniform noise in [0, 1], counting the images it draws.
    #[derive(Default)]
    struct Noise {
        drawn: std::cell::Cell<usize>,
    }

    impl ImageSource for Noise {
        fn pixel_range(&self) -> PixelRange {
            PixelRange::ZeroToOne
        }
        fn describe(&self) -> String {
            "uniform noise".into()
        }
        fn draw(&self, count: usize, _seed: u64, device: &Device) -> genmodels::Drawn {
            self.drawn.set(self.drawn.get() + count);
            Tensor::<4>::random(
                [count, 1, 28, 28],
                burn::tensor::Distribution::Uniform(0.0, 1.0),
                device,
            )
            .into()
        }
    }

    #[test]
    fn fid_monitor_adds_a_column_and_measures_only_every_n_epochs() {
        let device = Device::flex();
        assert!(FidMonitor { active: None }.columns(&["step"]) == vec!["step"]);
        let network = FeatureNetwork::load(&device).unwrap();
        // A reference of 50 synthetic images: bright squares of random sizes.
        let mut pixels = vec![0u8; 50 * IMAGE_PIXELS];
        for (i, image) in pixels.chunks_mut(IMAGE_PIXELS).enumerate() {
            let side = 6 + i % 15;
            for y in 4..4 + side {
                for x in 4..4 + side {
                    image[y * IMAGE_SIDE + x] = 200;
                }
            }
        }
        let test = network.statistics(&pixels).unwrap();
        let monitor = FidMonitor {
            active: Some(ActiveMonitor {
                model: "test".into(),
                every: 2,
                seed: 0,
                range: PixelRange::ZeroToOne,
                network,
                test,
            }),
        };
        assert_eq!(
            monitor.columns(&["step", "loss"]),
            vec!["step", "loss", "fid"]
        );
        let source = Noise::default();
        let row = monitor
            .extend_row(vec![1.0], Some(1), &source, &device)
            .unwrap();
        assert!(row[1].is_nan() && row.len() == 2);
        let row = monitor
            .extend_row(vec![1.0], None, &source, &device)
            .unwrap();
        assert!(row[1].is_nan());
        assert_eq!(monitor.pad_row(vec![1.0]).len(), 2);
        assert_eq!(
            source.drawn.get(),
            0,
            "nothing is drawn between measurements"
        );
        let row = monitor
            .extend_row(vec![1.0], Some(4), &source, &device)
            .unwrap();
        assert_eq!(source.drawn.get(), TRAINING_FID_SAMPLES);
        assert!(row[1].is_finite() && row[1] > 0.0, "{}", row[1]);
    }
}
