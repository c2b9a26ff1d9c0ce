//! Train a VAE (or a plain autoencoder) on Fashion-MNIST, then map its latent space.
//!
//! ```text
//! cargo run --example vae -- --backend flex --epochs 10
//! cargo run --example vae -- --backend flex --epochs 10 --model ae
//! cargo run --example vae -- --analyze runs/vae
//! ```
//!
//! Writes `runs/<vae|ae>/`: `recon/epoch_NNN.png`, `samples/epoch_NNN.png`, `metrics.csv`,
//! `config.json`, `checkpoints/`, then `report.json`, `latent_map.png`, `interpolation.png`,
//! `arithmetic.png` and `priors.png`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use genmodels_train::CommonArgs;
use genmodels_train::cli::parse_non_negative_f64;
use genmodels_train::vae::{AnalysisOptions, ModelKind, VaeSettings, analyze_checkpoint, train};

/// Train a VAE (Kingma & Welling, 2014) or an autoencoder on Fashion-MNIST and analyse its
/// latent space.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// vae: sampled z and a KL term; ae: deterministic z = mu, no KL term.
    #[arg(long, value_enum, default_value = "vae")]
    model: ModelKind,
    /// Size d of the latent space.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..))]
    latent_dim: u16,
    /// Weight of the KL term (1: the ELBO; other values: beta-VAE).
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative_f64)]
    beta: f64,
    /// Epochs over which the KL weight grows linearly from 0 to --beta (0: from the start).
    #[arg(long, default_value_t = 0.0, value_parser = parse_non_negative_f64)]
    kl_warmup_epochs: f64,
    /// Skip training: analyse this checkpoint (a checkpoint folder, or a run folder's latest).
    #[arg(long, value_name = "CHECKPOINT")]
    analyze: Option<PathBuf>,
    /// t-SNE iterations of the latent map.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    tsne_epochs: u32,
    /// Analyse only the first N images of each split [default: all].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(100..))]
    analysis_images: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = VaeSettings::from_args(
        cli.common,
        cli.model,
        cli.latent_dim as usize,
        cli.beta,
        cli.kl_warmup_epochs,
    );
    let options = AnalysisOptions {
        tsne_epochs: cli.tsne_epochs as usize,
        images: cli.analysis_images.map(|n| n as usize),
    };
    genmodels_train::exit_on_error((|| {
        let checkpoint = match cli.analyze {
            Some(path) => path,
            None => train(&settings)?.run_dir,
        };
        analyze_checkpoint(&checkpoint, &settings, &options).map(|_| ())
    })())
}
