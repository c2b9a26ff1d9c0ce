//! Train a conditional GAN on Fashion-MNIST, or draw images from a trained one.
//!
//! ```text
//! cargo run --release --example cgan -- --epochs 1                          # train
//! cargo run --release --example cgan -- sample --from runs/cgan             # the classes in turn
//! cargo run --release --example cgan -- sample --class 7 --from runs/cgan   # 64 sneakers
//! ```
//!
//! Training writes `runs/cgan/`: `samples/epoch_NNN.png` (one row per class, its name on the
//! left, one fixed z per column), `real.png`, `metrics.csv`, `config.json` and `checkpoints/`.

mod common;

use std::process::ExitCode;

use clap::Args;
use genmodels_train::cgan::{CganArgs, CganSettings, MODEL, train};
use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::registry::{SourceOptions, export, sample};

#[derive(Args)]
struct CganSampleArgs {
    #[command(flatten)]
    sample: SampleArgs,
    /// Draw only this class: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
    /// 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot [default: the classes in turn].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..10))]
    class: Option<u64>,
}

fn main() -> ExitCode {
    let command = GeneratorCli::<CganArgs, CganSampleArgs>::parse_command(
        "Train a conditional GAN (Mirza & Osindero, 2014) on Fashion-MNIST, or sample a trained \
         one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&CganSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            let options = SourceOptions {
                class: args.class.map(|class| class as usize),
                ..SourceOptions::default()
            };
            sample(&[MODEL], &args.sample, &options).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
    })
}
