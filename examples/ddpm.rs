//! Train a denoising diffusion model (DDPM) on Fashion-MNIST, or sample from a trained one.
//!
//! ```text
//! cargo run --release --example ddpm -- --preset small --epochs 5           # train on a CPU
//! cargo run --release --example ddpm -- sample --from runs/ddpm --count 64  # sample the latest checkpoint
//! ```
//!
//! Training writes `runs/ddpm/`: `samples/epoch_NNN.png` (8x8 grids from the EMA weights, same
//! x_T every epoch), `samples/final_ddpm_1000.png`, `forward.png`, `reverse.png`, `metrics.csv`,
//! `config.json` and `checkpoints/`. `sample` writes the grid and, beside it, the reverse
//! process of its first images.

mod common;

use std::process::ExitCode;

use clap::Args;
use genmodels_train::cli::{DiffusionArgs, GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::ddpm::{DdpmArgs, DdpmSettings, MODEL, sample_from_checkpoint, train};
use genmodels_train::registry::export;

#[derive(Args)]
struct DdpmSampleArgs {
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    diffusion: DiffusionArgs,
}

fn main() -> ExitCode {
    let command = GeneratorCli::<DdpmArgs, DdpmSampleArgs>::parse_command(
        "Train a DDPM (Ho et al., 2020) on Fashion-MNIST, or draw samples from a checkpoint.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&DdpmSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            sample_from_checkpoint(&args.sample, args.diffusion.settings()).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
    })
}
