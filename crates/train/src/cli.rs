//! Flags every training example shares, so they read and behave alike.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use genmodels::diffusion::{SamplerKind, SamplingSettings};
use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;

/// The common flags: what to train on, where, for how long and where to write.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct CommonArgs {
    /// Passes over the training split (the model's default when omitted).
    #[arg(long, value_parser = parse_positive_usize)]
    pub epochs: Option<usize>,
    /// Images per optimisation step.
    #[arg(long, default_value_t = 128, value_parser = parse_positive_usize)]
    pub batch_size: usize,
    /// Learning rate (the model's default when omitted).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_positive_f64)]
    pub lr: Option<f64>,
    /// Seed for initialisation, noise and data order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after this many optimisation steps (for smoke runs).
    #[arg(long, value_parser = parse_positive_u64)]
    pub max_steps: Option<u64>,
    /// Folder with the Fashion-MNIST IDX files [default: $GENMODELS_DATA_DIR or
    /// datasets/fashion-mnist]; fetched there when absent.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run folder for grids, metrics and checkpoints [default: runs/<model>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Continue from the latest checkpoint in the run folder.
    #[arg(long)]
    pub resume: bool,
    /// Steps between rows of metrics.csv.
    #[arg(long, default_value_t = 50, value_parser = parse_positive_u64)]
    pub log_every: u64,
    /// Log the FID of 2,000 samples against the test split to metrics.csv every N epochs.
    #[arg(long, value_name = "N", value_parser = parse_positive_usize)]
    pub fid_every: Option<usize>,
    /// Also write a checkpoint every N steps [default: only at the end of an epoch, and every
    /// --checkpoint-minutes].
    #[arg(long, value_name = "N", value_parser = parse_positive_u64)]
    pub checkpoint_every: Option<u64>,
    /// Also write a checkpoint when this many minutes have passed since the last one (0: never).
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0, value_parser = parse_non_negative_f64)]
    pub checkpoint_minutes: f64,
    /// Checkpoints kept in the run folder; older ones are removed.
    #[arg(long, value_name = "K", default_value_t = 2, value_parser = parse_positive_usize)]
    pub keep_checkpoints: usize,
    /// Start a network from PyTorch weights: a state dict (.pt, .pth) or a .safetensors file,
    /// under the names of the equivalent PyTorch module. NETWORK (generator, discriminator,
    /// critic, vae, unet) defaults to the model's first; repeat the flag for more networks.
    #[arg(long, value_name = "[NETWORK=]FILE", value_parser = parse_init_from)]
    #[serde(default)]
    pub init_from: Vec<InitFrom>,
}

/// One `--init-from`: a network of the model, and the PyTorch file its weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitFrom {
    /// The network's name; `None` for the model's first network.
    pub network: Option<String>,
    pub file: PathBuf,
}

fn parse_init_from(text: &str) -> Result<InitFrom, String> {
    let (network, file) = match text.split_once('=') {
        Some((network, file)) if !network.is_empty() && !network.contains(['/', '\\']) => {
            (Some(network.to_string()), file)
        }
        _ => (None, text),
    };
    if file.is_empty() {
        return Err(format!("`{text}` names no file"));
    }
    Ok(InitFrom {
        network,
        file: file.into(),
    })
}

/// Flags of type `T` read from `flags` (without a program name), as a command line would give
/// them: for code that trains without one, such as the benchmarks and tests.
pub fn parse_flags<'a, T: Args>(
    flags: impl IntoIterator<Item = &'a str>,
) -> Result<T, clap::Error> {
    #[derive(clap::Parser)]
    struct Flags<T: Args> {
        #[command(flatten)]
        flags: T,
    }
    let argv = std::iter::once("genmodels").chain(flags);
    <Flags<T> as clap::Parser>::try_parse_from(argv).map(|parsed| parsed.flags)
}

impl CommonArgs {
    /// The common flags read from `flags` (without a program name): [`parse_flags`].
    pub fn try_parse_from<'a>(
        flags: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, clap::Error> {
        parse_flags(flags)
    }
}

impl Default for CommonArgs {
    /// The flags' own defaults, as if none were given.
    fn default() -> Self {
        Self::try_parse_from([]).expect("the defaults parse")
    }
}

/// The command line of a generator example: `train` (the default: its flags are accepted
/// without the subcommand too), `sample`, `export`, and the model's own commands `X`, if any.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct GeneratorCli<T: Args, S: Args, X: Subcommand = NoOtherCommand> {
    #[command(subcommand)]
    command: Option<GeneratorCommand<T, S, X>>,
    #[command(flatten)]
    train: T,
}

/// What a generator example is asked to do.
#[derive(Debug, Subcommand)]
pub enum GeneratorCommand<T: Args, S: Args, X: Subcommand = NoOtherCommand> {
    /// Train (the default).
    Train(T),
    /// Draw images from a run's latest checkpoint, without training.
    Sample(S),
    /// Write a run's networks for PyTorch, under the PyTorch module's parameter names.
    Export(ExportArgs),
    /// The model's own commands, such as the VAE's `analyze`.
    #[command(flatten)]
    Other(X),
}

/// The commands of an example that has none beyond `train`, `sample` and `export`: a type
/// with no values, so that a `match` on [`GeneratorCommand`] needs no arm for them. (clap's
/// derive needs at least one variant, hence the hand-written impls.)
#[derive(Debug, Clone, Copy)]
pub enum NoOtherCommand {}

impl FromArgMatches for NoOtherCommand {
    fn from_arg_matches(_matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand))
    }

    fn update_from_arg_matches(&mut self, _matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        match *self {}
    }
}

impl Subcommand for NoOtherCommand {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        command
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        command
    }

    fn has_subcommand(_name: &str) -> bool {
        false
    }
}

/// The file formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One `<network>.safetensors` per network (`safetensors.torch.load_file` reads it).
    Safetensors,
}

/// The flags of `export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder [default: runs/<model>].
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// The file format.
    #[arg(long, value_enum, default_value = "safetensors")]
    pub format: ExportFormat,
    /// The folder the files go into [default: <run>/export].
    #[arg(long)]
    pub output: Option<PathBuf>,
}

impl<T: Args, S: Args, X: Subcommand> GeneratorCli<T, S, X> {
    /// Parses the program's arguments; `about` describes the program in its help.
    pub fn parse_command(about: &'static str) -> GeneratorCommand<T, S, X> {
        let matches = Self::command().about(about).get_matches();
        let cli = Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        cli.command.unwrap_or(GeneratorCommand::Train(cli.train))
    }
}

/// The flags of every example's `sample` subcommand: which run, how many images, from which
/// seed, where to write the grid.
#[derive(Debug, Clone, Args)]
pub struct SampleArgs {
    /// A run folder (its latest checkpoint) or a checkpoint folder [default: runs/<model>].
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Images to draw.
    #[arg(long, default_value_t = 64, value_parser = parse_positive_usize)]
    pub count: usize,
    /// Seed of the noise the images are drawn from.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The grid's path [default: <run>/samples/sample.png].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
}

/// The reverse process, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplerArg {
    /// Ancestral sampling.
    Ddpm,
    /// DDIM, deterministic at eta 0.
    Ddim,
}

/// How a diffusion model draws images: the flags of its epoch grids, of `sample` and of `eval`.
#[derive(Debug, Clone, Args)]
pub struct DiffusionArgs {
    /// ddim (deterministic at eta 0) or ddpm (ancestral).
    #[arg(long, value_enum, default_value = "ddim")]
    pub sampler: SamplerArg,
    /// Reverse steps, "leading" spacing [default: 50 for ddim, 1000 for ddpm].
    #[arg(long, value_parser = parse_positive_usize)]
    pub sample_steps: Option<usize>,
    /// DDIM's eta: 0 is deterministic, 1 has DDPM's posterior variance.
    #[arg(long, default_value_t = 0.0, value_parser = parse_eta)]
    pub eta: f64,
}

impl DiffusionArgs {
    /// The sampler the flags choose.
    pub fn settings(&self) -> SamplingSettings {
        let (sampler, default_steps) = match self.sampler {
            SamplerArg::Ddim => (SamplerKind::Ddim, 50),
            SamplerArg::Ddpm => (SamplerKind::Ddpm, 1000),
        };
        SamplingSettings {
            sampler,
            steps: self.sample_steps.unwrap_or(default_steps),
            eta: self.eta,
        }
    }
}

/// Class conditioning of a diffusion model, for classifier-free guidance (Ho & Salimans, 2022).
#[derive(Debug, Clone, clap::Args)]
pub struct ConditioningArgs {
    /// Condition the denoiser on the class, for classifier-free guidance.
    #[arg(long)]
    pub conditional: bool,
    /// With --conditional: the probability that a training label is replaced by the null label.
    #[arg(long, default_value_t = 0.1, value_parser = parse_probability)]
    pub label_dropout: f64,
    /// With --conditional: the guidance scale w of the grid drawn after every epoch.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub guidance: f64,
}

impl Default for ConditioningArgs {
    /// Unconditional; the flags' defaults otherwise.
    fn default() -> Self {
        Self {
            conditional: false,
            label_dropout: 0.1,
            guidance: 1.0,
        }
    }
}

impl ConditioningArgs {
    /// The classes of a conditional denoiser: `NUM_CLASSES`, or 0 for an unconditional one.
    pub fn num_classes(&self) -> usize {
        if self.conditional {
            genmodels_data::NUM_CLASSES
        } else {
            0
        }
    }
}

/// Which classes `sample` draws from a class-conditional diffusion model, and how hard.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GuidedSampleArgs {
    /// Conditional runs: draw only this class: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress,
    /// 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot [default: the classes in turn].
    #[arg(long)]
    pub class: Option<usize>,
    /// Conditional runs: the guidance scale w [default: 0, the conditional model alone].
    #[arg(long, allow_negative_numbers = true, value_parser = parse_non_negative_f64)]
    pub guidance: Option<f64>,
}

/// Parses a real number for which `accepted` holds; otherwise the error says what it `must` be.
fn parse_f64_that(text: &str, accepted: impl Fn(f64) -> bool, must: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if accepted(value) => Ok(value),
        Ok(_) => Err(format!("must be {must}, got {text}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn parse_eta(text: &str) -> Result<f64, String> {
    parse_f64_that(text, |v| v.is_finite() && v >= 0.0, "a number >= 0")
}

pub fn parse_positive_usize(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

fn parse_positive_u64(text: &str) -> Result<u64, String> {
    parse_positive_usize(text).map(|v| v as u64)
}

/// Parses a strictly positive, finite real number.
pub fn parse_positive_f64(text: &str) -> Result<f64, String> {
    parse_f64_that(text, |v| v.is_finite() && v > 0.0, "a positive number")
}

/// Parses a finite real number that is zero or more.
pub fn parse_non_negative_f64(text: &str) -> Result<f64, String> {
    parse_f64_that(
        text,
        |v| v.is_finite() && v >= 0.0,
        "zero or a positive number",
    )
}

/// Parses a number in [0, 1), such as a moving average's decay.
pub fn parse_unit_interval(text: &str) -> Result<f64, String> {
    parse_f64_that(text, |v| (0.0..1.0).contains(&v), "in [0, 1)")
}

/// Parses a probability, in [0, 1].
pub fn parse_probability(text: &str) -> Result<f64, String> {
    parse_f64_that(text, |v| (0.0..=1.0).contains(&v), "in [0, 1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `args` are refused with an error that holds every one of `expected`.
    fn assert_refused(args: &[&str], expected: &[&str]) {
        let error = CommonArgs::try_parse_from(args.iter().copied())
            .expect_err("should be refused")
            .to_string();
        for needle in expected {
            assert!(error.contains(needle), "`{needle}` missing from: {error}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert_refused(&["--batch-size", "0"], &["--batch-size", "at least 1"]);
        assert_refused(&["--lr", "-0.1"], &["--lr", "positive"]);
        assert_refused(&["--lr", "NaN"], &["--lr"]);
        assert_refused(&["--backend", "tpu"], &["tpu", "flex"]);
    }

    #[test]
    fn fractions_are_checked_against_their_interval() {
        assert_eq!(parse_unit_interval("0"), Ok(0.0));
        assert!(parse_unit_interval("1").unwrap_err().contains("[0, 1)"));
        assert_eq!(parse_probability("1"), Ok(1.0));
        assert!(parse_probability("1.5").unwrap_err().contains("[0, 1]"));
        assert!(parse_probability("-0.1").is_err());
        assert!(
            parse_probability("half")
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn init_from_takes_an_optional_network_name() {
        let common = CommonArgs::try_parse_from([
            "--init-from",
            "g.pt",
            "--init-from",
            "discriminator=weights/d=1.safetensors",
            "--init-from",
            "./a=b.pt",
        ])
        .unwrap();
        let init = |network: Option<&str>, file: &str| InitFrom {
            network: network.map(str::to_string),
            file: file.into(),
        };
        assert_eq!(
            common.init_from,
            [
                init(None, "g.pt"),
                init(Some("discriminator"), "weights/d=1.safetensors"),
                init(None, "./a=b.pt"),
            ]
        );
        assert_refused(&["--init-from", "generator="], &["--init-from", "no file"]);
    }

    #[test]
    fn defaults() {
        let common = CommonArgs::default();
        assert_eq!(common.log_every, 50);
        assert_eq!(common.batch_size, 128);
        assert_eq!(common.backend, BackendChoice::Auto);
        assert_eq!(common.epochs, None);
        assert!(!common.resume);
    }
}
