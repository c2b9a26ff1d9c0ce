//! Train a DCGAN on Fashion-MNIST, or draw images from a trained one.
//!
//! ```text
//! cargo run --release --example dcgan -- --epochs 1
//! cargo run --release --example dcgan -- sample --from runs/dcgan --count 64
//! ```
//!
//! Training writes `runs/dcgan/`: `samples/epoch_NNN.png` (8x8 grids from one fixed z),
//! `real.png`, `metrics.csv`, `config.json` and `checkpoints/`.

mod common;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use genmodels_train::cli::SampleArgs;
use genmodels_train::dcgan::{DcganArgs, DcganSettings, MODEL, train};
use genmodels_train::registry::{SourceOptions, sample};

/// Train a DCGAN (Radford et al., 2016) on Fashion-MNIST, or sample a trained one.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: DcganArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train (the default).
    Train(DcganArgs),
    /// Draw images from a run's latest checkpoint, without training.
    Sample(SampleArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    genmodels_train::exit_on_error(match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => train(&DcganSettings::new(args)).map(drop),
        Command::Sample(args) => sample(&[MODEL], &args, &SourceOptions::default()).map(drop),
    })
}
