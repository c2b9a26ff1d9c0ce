//! Train a denoising diffusion model (DDPM) on Fashion-MNIST, or sample from a trained one.
//!
//! ```text
//! cargo run --release --example ddpm -- --preset small --epochs 5           # train on a CPU
//! cargo run --release --example ddpm -- sample --from runs/ddpm --count 64  # sample the latest checkpoint
//! ```
//!
//! Training writes `runs/ddpm/`: `samples/epoch_NNN.png` (8x8 grids from the EMA weights, same
//! x_T every epoch), `samples/final_ddpm_1000.png`, `forward.png`, `reverse.png`, `metrics.csv`,
//! `config.json` and `checkpoints/`.

mod common;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use genmodels_train::cli::{DiffusionArgs, SampleArgs};
use genmodels_train::ddpm::{DdpmArgs, DdpmSettings, sample_from_checkpoint, train};

/// Train a DDPM (Ho et al., 2020) on Fashion-MNIST, or draw samples from a checkpoint.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: DdpmArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train (the default).
    Train(DdpmArgs),
    /// Draw images from the EMA weights of a checkpoint, and their reverse process, without
    /// training.
    Sample(DdpmSampleArgs),
}

#[derive(Args)]
struct DdpmSampleArgs {
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    diffusion: DiffusionArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    genmodels_train::exit_on_error(match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => train(&DdpmSettings::new(args)).map(drop),
        Command::Sample(args) => {
            sample_from_checkpoint(&args.sample, args.diffusion.settings()).map(drop)
        }
    })
}
