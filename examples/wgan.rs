//! Train a Wasserstein GAN (weight clipping) or WGAN-GP (gradient penalty) on Fashion-MNIST, or
//! draw images from a trained one.
//!
//! ```text
//! cargo run --release --example wgan -- --loss wgan-gp --epochs 1
//! cargo run --release --example wgan -- sample --from runs/wgan-gp --count 64
//! ```
//!
//! Training writes `runs/<wgan|wgan-gp>/`: `samples/epoch_NNN.png` (8x8 grids from one fixed
//! z), `real.png`, `metrics.csv` (critic loss, Wasserstein estimate, gradient norm),
//! `config.json` and `checkpoints/`.

mod common;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use genmodels_train::cli::SampleArgs;
use genmodels_train::registry::{SourceOptions, sample};
use genmodels_train::wgan::{WganArgs, WganSettings, train};

/// Train a WGAN (Arjovsky et al., 2017) or WGAN-GP (Gulrajani et al., 2017) on Fashion-MNIST,
/// or sample a trained one.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: WganArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train (the default).
    Train(WganArgs),
    /// Draw images from a run's latest checkpoint (default: runs/wgan-gp), without training.
    Sample(SampleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    genmodels_train::exit_on_error(match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => train(&WganSettings::new(args)).map(drop),
        Command::Sample(args) => {
            sample(&["wgan-gp", "wgan"], &args, &SourceOptions::default()).map(drop)
        }
    })
}
