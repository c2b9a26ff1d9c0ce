//! Train a latent diffusion model on the codes of a trained VAE (a vector code and a residual
//! MLP, or a 7x7xC code and a small U-Net), with optional class
//! conditioning for classifier-free guidance; or sample from, or sweep the guidance scale of, a
//! trained one.
//!
//! ```text
//! cargo run --release --example vae -- --epochs 10                      # the autoencoder first
//! cargo run --release --example ldm -- --autoencoder runs/vae --epochs 30
//! cargo run --release --example ldm -- --conditional --out runs/ldm-cfg
//! cargo run --release --example ldm -- sample --from runs/ldm-cfg --class 7 --guidance 3
//! cargo run --release --example ldm -- guidance --from runs/ldm-cfg --scales 0,1,3,5
//! cargo run --release --example vae -- --model ae --latent-channels 4 --out runs/ae-spatial
//! cargo run --release --example ldm -- --autoencoder runs/ae-spatial --denoiser unet --out runs/ldm-unet
//! ```
//!
//! Training writes `runs/ldm/`: `samples/epoch_NNN.png` (decoded samples of the EMA weights;
//! one column per class for a conditional model), `metrics.csv`, `config.json` and
//! `checkpoints/` (which hold the VAE and its code statistics too). `guidance` writes
//! `eval_guidance_<w>.json`, `guidance.csv` and `guidance.png` into the run folder.

mod common;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use genmodels_train::cli::{
    DiffusionArgs, GeneratorCli, GeneratorCommand, GuidedSampleArgs, SampleArgs,
};
use genmodels_train::ldm::{GuidanceSweepArgs, LdmArgs, LdmSettings, MODEL, guidance_sweep, train};
use genmodels_train::registry::{SourceOptions, export, sample};

/// The latent diffusion model's own command.
#[derive(Subcommand)]
enum LdmCommand {
    /// FID and requested-class accuracy of a conditional run at several guidance scales.
    Guidance(GuidanceSweepArgs),
}

#[derive(Args)]
struct LdmSampleArgs {
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    diffusion: DiffusionArgs,
    #[command(flatten)]
    guidance: GuidedSampleArgs,
}

fn main() -> ExitCode {
    let command = GeneratorCli::<LdmArgs, LdmSampleArgs, LdmCommand>::parse_command(
        "Train a latent diffusion model (Rombach et al., 2022) on a VAE's codes, with \
         classifier-free guidance (Ho & Salimans, 2022) when conditional; or sample a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => LdmSettings::new(args).and_then(|s| train(&s)).map(drop),
        GeneratorCommand::Sample(args) => {
            let options = SourceOptions {
                sampling: args.diffusion.settings(),
                class: args.guidance.class,
                guidance: args.guidance.guidance,
                temperature: None,
            };
            sample(&[MODEL], &args.sample, &options).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
        GeneratorCommand::Other(LdmCommand::Guidance(args)) => guidance_sweep(&args).map(drop),
    })
}
