//! Train a denoising diffusion model (DDPM) on Fashion-MNIST, or sample from a trained one.
//!
//! ```text
//! cargo run --example ddpm -- --preset small --epochs 5           # train on a CPU
//! cargo run --example ddpm -- sample --from runs/ddpm --count 64  # sample from the latest checkpoint
//! ```
//!
//! Training writes `runs/ddpm/`: `samples/epoch_NNN.png` (8x8 grids from the EMA weights, same
//! x_T every epoch), `samples/final_ddpm_1000.png`, `forward.png`, `reverse.png`, `metrics.csv`,
//! `config.json` and `checkpoints/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use genmodels_train::ddpm::{
    DdpmSettings, Preset, SampleRequest, SamplerKind, SamplingSettings, sample_from_checkpoint,
    train,
};
use genmodels_train::{BackendChoice, CommonArgs};

/// Train a DDPM (Ho et al., 2020) on Fashion-MNIST, or draw samples from a checkpoint.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Draw images from the EMA weights of a checkpoint, without training.
    Sample(SampleArgs),
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// U-Net size: full (5.2M parameters), small (1.3M, for CPUs) or tiny (smoke tests).
    #[arg(long, value_enum, default_value = "full")]
    preset: Preset,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Decay of the exponential moving average of the weights used for sampling.
    #[arg(long, default_value_t = 0.999, value_parser = parse_unit_interval)]
    ema_decay: f64,
    /// Steps of the DDPM grid drawn when training ends (0: none).
    #[arg(long, default_value_t = 1000)]
    final_ddpm_steps: usize,
}

/// How the per-epoch grids (or, in `sample` mode, the images) are drawn.
#[derive(Args)]
struct SamplingArgs {
    /// ddim (deterministic at eta 0) or ddpm (ancestral).
    #[arg(long, value_enum, default_value = "ddim")]
    sampler: SamplerKind,
    /// Reverse steps, "leading" spacing [default: 50 for ddim, 1000 for ddpm].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    sample_steps: Option<u64>,
    /// DDIM's eta: 0 is deterministic, 1 has DDPM's posterior variance.
    #[arg(long, default_value_t = 0.0, value_parser = parse_eta)]
    eta: f64,
}

impl SamplingArgs {
    fn settings(&self) -> SamplingSettings {
        let default_steps = match self.sampler {
            SamplerKind::Ddim => 50,
            SamplerKind::Ddpm => 1000,
        };
        let steps = self.sample_steps.map_or(default_steps, |s| s as usize);
        SamplingSettings {
            sampler: self.sampler,
            steps,
            eta: self.eta,
        }
    }
}

#[derive(Args)]
struct SampleArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder.
    #[arg(long, default_value = "runs/ddpm")]
    from: PathBuf,
    /// Images to draw.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Seed of x_T and of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// The grid's path [default: <run>/samples/sample_<sampler>_<steps>.png].
    #[arg(long)]
    output: Option<PathBuf>,
}

fn parse_unit_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..1.0).contains(&value) => Ok(value),
        Ok(_) => Err(format!("must be in [0, 1), got {text}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn parse_eta(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(format!("must be a number >= 0, got {text}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Some(Mode::Sample(args)) => {
            let request = SampleRequest {
                from: args.from,
                count: args.count as usize,
                sampling: args.sampling.settings(),
                seed: args.seed,
                backend: args.backend,
                output: args.output,
            };
            sample_from_checkpoint(&request).map(|_| ())
        }
        None => {
            let args = cli.train;
            let settings = DdpmSettings::from_args(
                args.common,
                args.preset,
                args.sampling.settings(),
                args.ema_decay,
                args.final_ddpm_steps,
            );
            train(&settings).map(|_| ())
        }
    };
    genmodels_train::exit_on_error(result)
}
