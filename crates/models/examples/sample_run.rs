//! Draws images from a run folder written by the project's `dcgan`, `wgan` or `ddpm` example,
//! with nothing but `genmodels`: what a downstream crate does.
//!
//! ```text
//! cargo run -p genmodels --example sample_run -- runs/dcgan
//! cargo run -p genmodels --example sample_run -- runs/ddpm
//! ```

use genmodels::ImageSource;
use genmodels::burn::tensor::Device;
use genmodels::checkpoint::{CheckpointError, RunFolder};
use genmodels::dcgan::{GENERATOR, GeneratorConfig};
use genmodels::diffusion::{
    DiffusionSource, EMA, SCHEDULE, SamplerKind, SamplingSettings, ScheduleConfig, UNET, UNetConfig,
};

/// The run's generator: a diffusion model's EMA U-Net with DDIM-50 when the run has a U-Net,
/// else a DCGAN generator.
fn open(
    run: &RunFolder,
    device: &Device,
) -> Result<Box<dyn ImageSource>, Box<dyn std::error::Error>> {
    match run.config::<UNetConfig>(UNET) {
        Ok(config) => {
            let unet = run.checkpoint.load_module(EMA, config.init(device))?;
            let schedule = run.config::<ScheduleConfig>(SCHEDULE)?.build()?;
            let sampling = SamplingSettings {
                sampler: SamplerKind::Ddim,
                steps: 50,
                eta: 0.0,
            };
            Ok(Box::new(DiffusionSource::new(unet, &schedule, sampling)?))
        }
        Err(CheckpointError::Unreadable { .. }) => {
            let generator = run.load(GENERATOR, |config: GeneratorConfig| config.init(device))?;
            Ok(Box::new(generator))
        }
        Err(other) => Err(other.into()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("give a run folder, e.g. runs/dcgan")?;
    let device = Device::flex();
    let run = RunFolder::open(&path)?;
    let source = open(&run, &device)?;
    let images = source.draw(16, 0, &device).images;
    let values = images.clone().into_data().try_to_vec::<f32>()?;
    let (low, high) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    println!(
        "{} step {}: {}: images {:?}, values in [{low:.3}, {high:.3}] ({:?})",
        run.model(),
        run.checkpoint.state.step,
        source.describe(),
        images.dims(),
        source.pixel_range()
    );
    Ok(())
}
