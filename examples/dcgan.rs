//! Train a DCGAN on Fashion-MNIST, or draw images from a trained one.
//!
//! ```text
//! cargo run --release --example dcgan -- --epochs 1
//! cargo run --release --example dcgan -- sample --from runs/dcgan --count 64
//! cargo run --release --example dcgan -- export --from runs/dcgan --format safetensors
//! ```
//!
//! Training writes `runs/dcgan/`: `samples/epoch_NNN.png` (8x8 grids from one fixed z),
//! `real.png`, `metrics.csv`, `config.json` and `checkpoints/`.

mod common;

use std::process::ExitCode;

use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::dcgan::{DcganArgs, DcganSettings, MODEL, train};
use genmodels_train::registry::{SourceOptions, export, sample};

fn main() -> ExitCode {
    let command = GeneratorCli::<DcganArgs, SampleArgs>::parse_command(
        "Train a DCGAN (Radford et al., 2016) on Fashion-MNIST, or sample a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&DcganSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            sample(&[MODEL], &args, &SourceOptions::default()).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
    })
}
