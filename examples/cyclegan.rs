//! Train CycleGAN (Zhu et al., 2017) between two classes of Fashion-MNIST, or translate with or
//! analyse a trained one.
//!
//! ```text
//! cargo run --release --example cyclegan -- --epochs 5
//! cargo run --release --example cyclegan -- --domain-a t-shirt/top --domain-b shirt
//! cargo run --release --example cyclegan -- analyze --from runs/cyclegan
//! cargo run --release --example cyclegan -- sample --from runs/cyclegan --count 64
//! ```
//!
//! Training writes `runs/cyclegan/`: `samples/epoch_NNN.png` (the translation figure of each
//! epoch), `metrics.csv`, `config.json` and `checkpoints/` (both generators and both
//! discriminators); when it ends, and with `analyze`, `translation.png` (test images of A,
//! G_AB(A), G_BA(G_AB(A)), then the same from B) and `cyclegan.json` (the share of translations
//! the classifier puts in the target class, and the cycle error on the test split). `sample`
//! translates test images, half from each domain.

mod common;

use std::process::ExitCode;

use clap::Subcommand;
use genmodels_train::cli::{GeneratorCli, GeneratorCommand, SampleArgs};
use genmodels_train::cyclegan::{
    AnalyzeArgs, CycleGanArgs, CycleGanSettings, MODEL, analyze, train,
};
use genmodels_train::registry::{SourceOptions, export, sample};

/// CycleGAN's own command.
#[derive(Subcommand)]
enum CycleGanCommand {
    /// The translation figure and the scores of the translations.
    Analyze(AnalyzeArgs),
}

fn main() -> ExitCode {
    let command = GeneratorCli::<CycleGanArgs, SampleArgs, CycleGanCommand>::parse_command(
        "Train CycleGAN (Zhu et al., 2017) between two classes of Fashion-MNIST, or translate with or analyse a trained one.",
    );
    genmodels_train::exit_on_error(match command {
        GeneratorCommand::Train(args) => train(&CycleGanSettings::new(args)).map(drop),
        GeneratorCommand::Sample(args) => {
            sample(&[MODEL], &args, &SourceOptions::default()).map(drop)
        }
        GeneratorCommand::Export(args) => export(&[MODEL], &args).map(drop),
        GeneratorCommand::Other(CycleGanCommand::Analyze(args)) => analyze(&args).map(drop),
    })
}
