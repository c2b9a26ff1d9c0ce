//! Train the Fashion-MNIST classifier whose features every FID in the project uses.
//!
//! ```text
//! cargo run --example classifier -- --backend flex
//! ```
//!
//! Writes `runs/classifier/`: `metrics.csv` (loss and accuracy per epoch, on the training and
//! test splits), `config.json`, `checkpoints/` and `fashion_classifier.bpk`, the weights. With
//! the default settings they reproduce the committed `crates/train/weights/fashion_classifier.bpk`.

mod common;

use std::process::ExitCode;

use clap::Parser;
use genmodels_train::CommonArgs;
use genmodels_train::classifier::{ClassifierSettings, train};

/// Train the Fashion-MNIST classifier behind FID (6 epochs of Adam 1e-3, cosine decay).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = ClassifierSettings::new(cli.common);
    genmodels_train::exit_on_error(train(&settings).map(|_| ()))
}
