//! Train a Wasserstein GAN (weight clipping), WGAN-GP (gradient penalty) or WGAN-CT (the penalty
//! and a consistency term) on Fashion-MNIST, or draw images from a trained one.
//!
//! ```text
//! cargo run --release --example wgan -- --loss wgan-gp --epochs 1
//! cargo run --release --example wgan -- --loss wgan-ct --epochs 1
//! cargo run --release --example wgan -- sample --from runs/wgan-gp --count 64
//! ```
//!
//! Training writes `runs/<wgan|wgan-gp|wgan-ct>/`: `samples/epoch_NNN.png` (8x8 grids from one fixed
//! z), `real.png`, `metrics.csv` (critic loss, Wasserstein estimate, gradient norm),
//! `config.json` and `checkpoints/`. `sample` reads `runs/wgan-gp` unless `--from` says otherwise.

mod common;

use std::process::ExitCode;

use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::registry::{SourceOptions, export, sample};
use genmodels_train::wgan::{WganArgs, WganSettings, train};

fn main() -> ExitCode {
    let command = GeneratorCli::<WganArgs, SampleArgs>::parse_command(
        "Train a WGAN (Arjovsky et al., 2017), WGAN-GP (Gulrajani et al., 2017) or WGAN-CT \
         (Wei et al., 2018) on Fashion-MNIST, or sample a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&WganSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => sample(
            &["wgan-gp", "wgan-ct", "wgan"],
            &args,
            &SourceOptions::default(),
        )
        .map(drop),
        GeneratorCommand::Export(args) => export(&["wgan-gp", "wgan-ct", "wgan"], &args).map(drop),
    })
}
