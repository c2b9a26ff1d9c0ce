//! Train a DCGAN on Fashion-MNIST.
//!
//! ```text
//! cargo run --release --example dcgan -- --epochs 1
//! ```
//!
//! Writes `runs/dcgan/`: `samples/epoch_NNN.png` (8x8 grids from one fixed z), `real.png`,
//! `metrics.csv`, `config.json` and `checkpoints/`.

use std::process::ExitCode;

use clap::Parser;
use genmodels::GeneratorLoss;
use genmodels_train::CommonArgs;
use genmodels_train::dcgan::{DcganSettings, train};

/// Train a DCGAN (Radford et al., 2016) on Fashion-MNIST.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Generator objective: non-saturating -log D(G(z)), or the original log(1 - D(G(z))).
    #[arg(long, value_enum, default_value = "non-saturating")]
    g_loss: GLoss,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GLoss {
    NonSaturating,
    Minimax,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g_loss = match cli.g_loss {
        GLoss::NonSaturating => GeneratorLoss::NonSaturating,
        GLoss::Minimax => GeneratorLoss::Minimax,
    };
    let settings = DcganSettings::from_args(cli.common, g_loss);
    genmodels_train::exit_on_error(train(&settings).map(|_| ()))
}
