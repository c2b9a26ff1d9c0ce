//! Train InfoGAN (Chen et al., 2016) on Fashion-MNIST, or sample or analyse a trained one.
//!
//! ```text
//! cargo run --release --example infogan -- --epochs 5
//! cargo run --release --example infogan -- analyze --from runs/infogan
//! cargo run --release --example infogan -- sample --from runs/infogan --count 100
//! ```
//!
//! Training writes `runs/infogan/`: `samples/epoch_NNN.png` (the categorical code in turn along
//! each row), `metrics.csv` (with the information terms and the lower bound on I(c; G) in nats),
//! `config.json` and `checkpoints/`; when it ends, and with `analyze`, `categorical.png`,
//! `continuous_0.png`, `continuous_1.png` and `infogan.json` (how far c matches the classes).

mod common;

use std::process::ExitCode;

use clap::Subcommand;
use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::infogan::{AnalyzeArgs, InfoGanArgs, InfoGanSettings, MODEL, analyze, train};
use genmodels_train::registry::{SourceOptions, export, sample};

/// InfoGAN's own command.
#[derive(Subcommand)]
enum InfoGanCommand {
    /// The code figures and the match of the categorical code with the classes.
    Analyze(AnalyzeArgs),
}

fn main() -> ExitCode {
    let command = GeneratorCli::<InfoGanArgs, SampleArgs, InfoGanCommand>::parse_command(
        "Train InfoGAN (Chen et al., 2016) on Fashion-MNIST, or sample or analyse a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&InfoGanSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            sample(&[MODEL], &args, &SourceOptions::default()).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
        GeneratorCommand::Other(InfoGanCommand::Analyze(args)) => analyze(&args).map(drop),
    })
}
