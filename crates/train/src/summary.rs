//! What a finished run reports: where its files are and how fast it went.

use std::path::PathBuf;
use std::time::Duration;

/// Timing of one epoch.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub images: usize,
    pub duration: Duration,
}

impl EpochReport {
    pub fn new(epoch: usize, images: usize, duration: Duration) -> Self {
        Self {
            epoch,
            images,
            duration,
        }
    }

    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// The outcome of a training run.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub model: String,
    pub run_dir: PathBuf,
    pub device: String,
    pub steps: u64,
    pub epochs: Vec<EpochReport>,
    pub checkpoint: Option<PathBuf>,
}

impl TrainSummary {
    pub fn new(model: &str, run_dir: PathBuf, device: String) -> Self {
        Self {
            model: model.into(),
            run_dir,
            device,
            steps: 0,
            epochs: Vec::new(),
            checkpoint: None,
        }
    }

    /// Records a finished epoch and the checkpoint written after it.
    pub fn record_epoch(&mut self, report: EpochReport, checkpoint: PathBuf) {
        self.epochs.push(report);
        self.checkpoint = Some(checkpoint);
    }

    /// Prints the epoch times and where the files are.
    pub fn print(&self) {
        let model = &self.model;
        for report in &self.epochs {
            println!(
                "{model}: epoch {} took {:.1} s ({:.0} images/s on {})",
                report.epoch,
                report.duration.as_secs_f64(),
                report.images_per_sec(),
                self.device
            );
        }
        println!(
            "{model}: {} steps; files in {}",
            self.steps,
            self.run_dir.display()
        );
        println!("  samples/      image grids, one per epoch");
        println!("  metrics.csv   losses and throughput");
        println!("  config.json   every setting of the run");
        if let Some(checkpoint) = &self.checkpoint {
            println!("  checkpoint    {}", checkpoint.display());
        }
    }
}
