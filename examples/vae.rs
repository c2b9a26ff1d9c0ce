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

use clap::{Parser, Subcommand};
use genmodels_train::cli::{ExportArgs, SampleArgs};
use genmodels_train::registry::{SourceOptions, export, sample};
use genmodels_train::vae::{AnalyzeArgs, VaeArgs, VaeSettings, analyze_checkpoint, train};

/// Train a VAE (Kingma & Welling, 2014) or an autoencoder on Fashion-MNIST and analyse its
/// latent space, or sample a trained one.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: VaeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Train, then analyse the trained network (the default).
    Train(VaeArgs),
    /// Analyse a trained run's latent space, without training.
    Analyze(AnalyzeArgs),
    /// Draw images from a run's latest checkpoint, without training.
    Sample(SampleArgs),
    /// Write a run's networks for PyTorch, under the PyTorch module's parameter names.
    Export(ExportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    genmodels_train::exit_on_error(match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => (|| {
            let analysis = args.analysis.clone();
            let settings = VaeSettings::new(args);
            let run = train(&settings)?.run_dir;
            analyze_checkpoint(&AnalyzeArgs::of_run(run, &settings.run.common, analysis)).map(drop)
        })(),
        Command::Analyze(args) => analyze_checkpoint(&args).map(drop),
        Command::Sample(args) => sample(&["vae", "ae"], &args, &SourceOptions::default()).map(drop),
        Command::Export(args) => export(&["vae", "ae"], &args).map(drop),
    })
}
