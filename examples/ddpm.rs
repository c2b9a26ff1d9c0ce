//! Train a denoising diffusion model (DDPM) on Fashion-MNIST, or sample from a trained one.
//!
//! ```text
//! cargo run --release --example ddpm -- --preset small --epochs 5           # train on a CPU
//! cargo run --release --example ddpm -- sample --from runs/ddpm --count 64  # sample the latest checkpoint
//! cargo run --release --example ddpm -- --conditional --out runs/ddpm-cfg   # classifier-free guidance
//! cargo run --release --example ddpm -- sample --from runs/ddpm-cfg --class 9 --guidance 3
//! ```
//!
//! Training writes `runs/ddpm/`: `samples/epoch_NNN.png` (8x8 grids from the EMA weights, same
//! x_T every epoch), `samples/final_ddpm_1000.png`, `forward.png`, `reverse.png`, `metrics.csv`,
//! `config.json` and `checkpoints/`. `sample` writes the grid and, beside it, the reverse
//! process of its first images.

mod common;

use std::process::ExitCode;

use clap::Args;
use genmodels_train::cli::{
    DiffusionArgs, GeneratorCli, GeneratorCommand, GuidedSampleArgs, SampleArgs,
};
use genmodels_train::ddpm::{DdpmArgs, DdpmSettings, MODEL, sample_from_checkpoint, train};
use genmodels_train::registry::{SourceOptions, export};

#[derive(Args)]
struct DdpmSampleArgs {
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    diffusion: DiffusionArgs,
    #[command(flatten)]
    guidance: GuidedSampleArgs,
}

fn main() -> ExitCode {
    let command = GeneratorCli::<DdpmArgs, DdpmSampleArgs>::parse_command(
        "Train a DDPM (Ho et al., 2020) on Fashion-MNIST, or draw samples from a checkpoint.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&DdpmSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            let options = SourceOptions {
                sampling: args.diffusion.settings(),
                class: args.guidance.class,
                guidance: args.guidance.guidance,
                temperature: None,
            };
            sample_from_checkpoint(&args.sample, &options).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
    })
}
