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

impl CommonArgs {
    /// The common flags read from `flags` (without a program name), as a command line would
    /// give them: for code that trains without one, such as the benchmarks and tests.
    pub fn try_parse_from<'a>(
        flags: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            common: CommonArgs,
        }
        let argv = std::iter::once("genmodels").chain(flags);
        <Flags as clap::Parser>::try_parse_from(argv).map(|flags| flags.common)
    }
}

impl Default for CommonArgs {
    /// The flags' own defaults, as if none were given.
    fn default() -> Self {
        Self::try_parse_from([]).expect("the defaults parse")
    }
}

/// The command line of a generator example: `train` (the default: its flags are accepted
/// without the subcommand too) or `sample`.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct GeneratorCli<T: Args, S: Args> {
    #[command(subcommand)]
    command: Option<GeneratorCommand<T, S>>,
    #[command(flatten)]
    train: T,
}

/// What a generator example is asked to do.
#[derive(Debug, Subcommand)]
pub enum GeneratorCommand<T: Args, S: Args> {
    /// Train (the default).
    Train(T),
    /// Draw images from a run's latest checkpoint, without training.
    Sample(S),
    /// Write a run's networks for PyTorch, under the PyTorch module's parameter names.
    Export(ExportArgs),
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

impl<T: Args, S: Args> GeneratorCli<T, S> {
    /// Parses the program's arguments; `about` describes the program in its help.
    pub fn parse_command(about: &'static str) -> GeneratorCommand<T, S> {
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

fn parse_eta(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(format!("must be a number >= 0, got {text}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn parse_positive_usize(text: &str) -> Result<usize, String> {
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
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(_) => Err(format!("must be a positive number, got {text}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

/// Parses a finite real number that is zero or more.
pub fn parse_non_negative_f64(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(format!("must be zero or a positive number, got {text}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(args: &[&str]) -> String {
        CommonArgs::try_parse_from(args.iter().copied())
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let zero = error_of(&["--batch-size", "0"]);
        assert!(
            zero.contains("--batch-size") && zero.contains("at least 1"),
            "{zero}"
        );
        let negative = error_of(&["--lr", "-0.1"]);
        assert!(
            negative.contains("--lr") && negative.contains("positive"),
            "{negative}"
        );
        let nan = error_of(&["--lr", "NaN"]);
        assert!(nan.contains("--lr"), "{nan}");
        let backend = error_of(&["--backend", "tpu"]);
        assert!(
            backend.contains("tpu") && backend.contains("flex"),
            "{backend}"
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
        let empty = error_of(&["--init-from", "generator="]);
        assert!(
            empty.contains("--init-from") && empty.contains("no file"),
            "{empty}"
        );
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
