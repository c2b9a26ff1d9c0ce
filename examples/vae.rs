//! Train a VAE (or a plain autoencoder) on Fashion-MNIST, then map its latent space; or draw
//! images from, or analyse, a trained one.
//!
//! ```text
//! cargo run --release --example vae -- --backend flex --epochs 10
//! cargo run --release --example vae -- --backend flex --epochs 10 --model ae
//! cargo run --release --example vae -- analyze --from runs/vae
//! cargo run --release --example vae -- sample --from runs/vae --count 64
//! ```
//!
//! Training writes `runs/<vae|ae>/`: `recon/epoch_NNN.png`, `samples/epoch_NNN.png`,
//! `real.png`, `metrics.csv`, `config.json`, `checkpoints/`, then the analysis: `report.json`,
//! `latent_map.png`, `interpolation.png`, `arithmetic.png` and `priors.png`.

mod common;

use std::process::ExitCode;

use clap::Subcommand;
use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::registry::{SourceOptions, export, sample};
use genmodels_train::vae::{AnalyzeArgs, VaeArgs, VaeSettings, analyze_checkpoint, train};

/// The VAE's own command.
#[derive(Subcommand)]
enum VaeCommand {
    /// Analyse a trained run's latent space, without training.
    Analyze(AnalyzeArgs),
}

fn main() -> ExitCode {
    let command = GeneratorCli::<VaeArgs, SampleArgs, VaeCommand>::parse_command(
        "Train a VAE (Kingma & Welling, 2014) or an autoencoder on Fashion-MNIST and analyse its \
         latent space, or sample a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        // Training ends with the analysis of the trained network.
        GeneratorCommand::Train(args) => (|| {
            let analysis = args.analysis.clone();
            let settings = VaeSettings::new(args);
            let run = train(&settings)?.run_dir;
            analyze_checkpoint(&AnalyzeArgs::of_run(run, &settings.run.common, analysis)).map(drop)
        })(),
        GeneratorCommand::Sample(args) => {
            sample(&["vae", "ae"], &args, &SourceOptions::default()).map(drop)
        }
        GeneratorCommand::Export(args) => export(&["vae", "ae"], &args).map(drop),
        GeneratorCommand::Other(VaeCommand::Analyze(args)) => analyze_checkpoint(&args).map(drop),
    })
}
