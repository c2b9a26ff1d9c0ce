//! Train a Wasserstein GAN (weight clipping) or WGAN-GP (gradient penalty) on Fashion-MNIST.
//!
//! ```text
//! cargo run --example wgan -- --loss wgan-gp --epochs 1
//! ```
//!
//! Writes `runs/<wgan|wgan-gp>/`: `samples/epoch_NNN.png` (8x8 grids from one fixed z),
//! `real.png`, `metrics.csv` (critic loss, Wasserstein estimate, gradient norm), `config.json`
//! and `checkpoints/`.

use std::process::ExitCode;

use clap::Parser;
use genmodels_train::CommonArgs;
use genmodels_train::cli::parse_positive_f64;
use genmodels_train::wgan::{WganLoss, WganSettings, train};

/// Train a WGAN (Arjovsky et al., 2017) or WGAN-GP (Gulrajani et al., 2017) on Fashion-MNIST.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// wgan: weight clipping and RMSprop 5e-5; wgan-gp: gradient penalty and Adam 1e-4.
    #[arg(long, value_enum, default_value = "wgan-gp")]
    loss: WganLoss,
    /// Critic steps (each on its own batch) per generator step.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    n_critic: u64,
    /// wgan: clip every critic weight to [-c, c].
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    clip: f64,
    /// wgan-gp: the penalty weight lambda.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    gp_lambda: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = WganSettings::from_args(cli.common, cli.loss);
    settings.n_critic = cli.n_critic as usize;
    settings.clip = cli.clip;
    settings.gp_lambda = cli.gp_lambda;
    genmodels_train::exit_on_error(train(&settings).map(|_| ()))
}
