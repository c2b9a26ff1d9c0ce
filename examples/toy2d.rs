//! The 2-D lab: the optimal discriminator, the GAN equilibrium and mode collapse (GAN against
//! WGAN-GP) on Gaussian mixtures, with plots and numbers; a few minutes on a CPU.
//!
//! ```text
//! cargo run --example toy2d -- --seeds 1,2,3
//! ```
//!
//! Writes `runs/toy2d/`: `optimal_d.png`, `equilibrium.png`, `mode_collapse_seed<S>.png` and
//! `report.json` (every setting and number).

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use genmodels_train::BackendChoice;
use genmodels_train::cli::parse_positive_f64;
use genmodels_train::toy2d::{Experiment, Toy2dSettings, run};

/// GAN theory on Gaussian mixtures: D*, equilibrium, mode collapse and WGAN-GP.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Which experiment to run.
    #[arg(long, value_enum, default_value = "all")]
    experiment: Experiment,
    /// Seeds of the mode-collapse comparison, comma-separated (the 1-D experiments use the first).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Generator steps on the 8 Gaussians.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Discriminator (critic) steps per generator step on the 8 Gaussians, for both methods.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    d_steps: u64,
    /// Discriminator steps against the frozen generator (optimal-d).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    optimal_d_steps: u64,
    /// GAN steps on the 1-D mixture (equilibrium).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..))]
    equilibrium_steps: u64,
    /// Adam's learning rate on the 8 Gaussians, for both methods, decayed linearly to 0.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    lr: f64,
    /// Adam's learning rate of both players on the 1-D mixture (equilibrium).
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    lr_1d: f64,
    /// WGAN-GP's penalty weight on the 8 Gaussians.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    gp_lambda: f64,
    /// Output folder.
    #[arg(long, default_value = "runs/toy2d")]
    out: PathBuf,
    /// Where to compute (the networks are small: the CPU backend is the default).
    #[arg(long, value_enum, default_value_t = BackendChoice::Flex)]
    backend: BackendChoice,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = Toy2dSettings::new(cli.out, cli.backend);
    settings.experiment = cli.experiment;
    settings.seeds = cli.seeds;
    settings.mode_steps = cli.steps as usize;
    settings.d_steps = cli.d_steps as usize;
    settings.optimal_d_steps = cli.optimal_d_steps as usize;
    settings.equilibrium_steps = cli.equilibrium_steps as usize;
    settings.gp_lambda = cli.gp_lambda;
    settings.lr_2d = cli.lr;
    settings.lr_equilibrium = cli.lr_1d;
    genmodels_train::exit_on_error(run(&settings).map(|_| ()))
}
