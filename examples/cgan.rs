//! Train a conditional GAN on Fashion-MNIST, or draw images of one class from a trained one.
//!
//! ```text
//! cargo run --example cgan -- --epochs 1                      # train
//! cargo run --example cgan -- sample --class 7 --from runs/cgan  # 64 sneakers
//! ```
//!
//! Training writes `runs/cgan/`: `samples/epoch_NNN.png` (one row per class, its name on the
//! left, one fixed z per column), `metrics.csv`, `config.json` and `checkpoints/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use genmodels_train::cgan::{CganSettings, SampleRequest, sample_class, train};
use genmodels_train::cli::parse_non_negative_f64;
use genmodels_train::{BackendChoice, CommonArgs};

/// Train a conditional GAN (Mirza & Osindero, 2014) on Fashion-MNIST, or sample one class.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    common: CommonArgs,
    /// Weight λ of the mode-seeking term (Mao et al., 2019) in the generator's loss, which keeps
    /// the generator from ignoring z; 0 trains the plain conditional GAN.
    #[arg(long, default_value_t = 1.0, value_parser = parse_non_negative_f64)]
    mode_seeking: f64,
}

#[derive(Subcommand)]
enum Mode {
    /// Draw images of a chosen class from the latest checkpoint of a run, without training.
    Sample(SampleArgs),
}

#[derive(Args)]
struct SampleArgs {
    /// The class: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
    /// 7 Sneaker, 8 Bag, 9 Ankle boot.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..10))]
    class: u64,
    /// A cgan run folder.
    #[arg(long, default_value = "runs/cgan")]
    from: PathBuf,
    /// Images to draw.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Seed of the noise z.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// The grid's path [default: <run>/samples/class_<K>.png].
    #[arg(long)]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        Some(Mode::Sample(args)) => sample_class(&SampleRequest {
            from: args.from,
            class: args.class as usize,
            count: args.count as usize,
            seed: args.seed,
            backend: args.backend,
            output: args.output,
        })
        .map(|_| ()),
        None => train(&CganSettings::from_args(cli.common, cli.mode_seeking)).map(|_| ()),
    };
    genmodels_train::exit_on_error(result)
}
