//! Train a RealNVP normalizing flow on Fashion-MNIST by maximum likelihood, or sample a trained
//! one.
//!
//! ```text
//! cargo run --release --example realnvp -- --backend flex --hidden 32 --blocks 2 --epochs 3
//! cargo run --release --example realnvp -- sample --from runs/realnvp --temperature 0.7
//! ```
//!
//! Training writes `runs/realnvp/`: `samples/epoch_NNN.png` (64 samples at `--temperature`, the
//! same z every epoch), `metrics.csv` (the training bits per dimension every `--log-every`
//! steps, the exact test NLL in bits per dimension closing each epoch), `config.json`,
//! `checkpoints/`, and when training ends `samples/final_t1.png`, `samples/final_t0.7.png` and
//! `interpolation.png`.

mod common;

use std::process::ExitCode;

use clap::Args;
use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs, parse_positive_f64};
use genmodels_train::flow::{FlowArgs, FlowSettings, MODEL, train};
use genmodels_train::registry::{SourceOptions, export, sample};

#[derive(Args)]
struct FlowSampleArgs {
    #[command(flatten)]
    sample: SampleArgs,
    /// Draw z ~ N(0, T^2 I): below 1 trades diversity for cleaner images.
    #[arg(long, default_value_t = 1.0, value_parser = parse_positive_f64)]
    temperature: f64,
}

fn main() -> ExitCode {
    let command = GeneratorCli::<FlowArgs, FlowSampleArgs>::parse_command(
        "Train RealNVP (Dinh et al., 2017) on Fashion-MNIST by maximum likelihood, or draw \
         samples from a checkpoint.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&FlowSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            let options = SourceOptions {
                temperature: Some(args.temperature),
                ..SourceOptions::default()
            };
            sample(&[MODEL], &args.sample, &options).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
    })
}
