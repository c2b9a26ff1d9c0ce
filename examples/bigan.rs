//! Train BiGAN (Donahue et al., 2017) on Fashion-MNIST, or sample or analyse a trained one.
//!
//! ```text
//! cargo run --release --example bigan -- --epochs 5
//! cargo run --release --example bigan -- analyze --from runs/bigan
//! cargo run --release --example bigan -- sample --from runs/bigan --count 64
//! ```
//!
//! Training writes `runs/bigan/`: `samples/epoch_NNN.png` (8x8 grids from one fixed z),
//! `metrics.csv`, `config.json` and `checkpoints/` (generator, encoder and discriminator); when
//! it ends, and with `analyze`, `reconstruction.png` (test images above G(E(x))) and
//! `bigan.json` (the 5-NN class accuracy of E(x) beside an untrained encoder's, and how often
//! G(E(x)) keeps x's class).

mod common;

use std::process::ExitCode;

use clap::Subcommand;
use genmodels_train::bigan::{AnalyzeArgs, BiganArgs, BiganSettings, MODEL, analyze, train};
use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::registry::{SourceOptions, export, sample};

/// BiGAN's own command.
#[derive(Subcommand)]
enum BiganCommand {
    /// The reconstruction figure and the scores of the encoder.
    Analyze(AnalyzeArgs),
}

fn main() -> ExitCode {
    let command = GeneratorCli::<BiganArgs, SampleArgs, BiganCommand>::parse_command(
        "Train BiGAN (Donahue et al., 2017) on Fashion-MNIST, or sample or analyse a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&BiganSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            sample(&[MODEL], &args, &SourceOptions::default()).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
        GeneratorCommand::Other(BiganCommand::Analyze(args)) => analyze(&args).map(drop),
    })
}
