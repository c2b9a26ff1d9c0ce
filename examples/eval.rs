//! Score the samples of a trained generator, or images made by any tool: FID against the test
//! split, the train-vs-test floor, mode coverage, and optionally the samples as an IDX file.
//!
//! ```text
//! cargo run --example eval -- --from runs/dcgan
//! cargo run --example eval -- --from runs/ddpm --samples 1000 --export runs/ddpm/samples-idx3-ubyte.gz
//! cargo run --example eval -- --images samples.npy
//! ```
//!
//! Writes `eval.json` into the run folder (`<FILE>.eval.json` beside `--images FILE`), and
//! caches the reference statistics there.

use std::path::PathBuf;
use std::process::ExitCode;

mod common;

use clap::Parser;
use genmodels_train::BackendChoice;
use genmodels_train::cli::DiffusionArgs;
use genmodels_train::eval::images::GridLayout;
use genmodels_train::eval::{EvalRequest, evaluate};

/// Draw samples from a checkpoint of any generator (dcgan, wgan, cgan, vae, ae, ddpm, ldm, realnvp) and
/// measure them.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A run folder (its latest checkpoint) or a checkpoint folder to draw samples from.
    #[arg(long, required_unless_present = "images", conflicts_with = "images")]
    from: Option<PathBuf>,
    /// Or score the images of a file made by any tool: an IDX images file (raw or .gz), a PNG
    /// grid of tiles (--tile, --pad) or a .npy array of uint8 (N, 28, 28).
    #[arg(long, value_name = "FILE")]
    images: Option<PathBuf>,
    /// --images PNG: the side of a tile, a multiple of 28 (averaged down to 28).
    #[arg(long, default_value_t = 28, value_parser = clap::value_parser!(u32).range(28..))]
    tile: u32,
    /// --images PNG: the pixels before the first tile and between tiles.
    #[arg(long, default_value_t = 2)]
    pad: u32,
    /// Samples to draw.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..))]
    samples: u64,
    /// Seed of the noise the samples are drawn from.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Folder with the Fashion-MNIST IDX files [default: $GENMODELS_DATA_DIR or
    /// datasets/fashion-mnist].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Folder of the cached reference statistics [default: the run folder].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Test images the samples are compared with (and training images in the floor).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..))]
    reference_images: u64,
    /// Diffusion models only: the sampler.
    #[command(flatten)]
    diffusion: DiffusionArgs,
    /// Conditional latent diffusion only: the guidance scale w of classifier-free guidance
    /// [default: 0, the conditional model alone].
    #[arg(long, allow_negative_numbers = true, value_parser = genmodels_train::cli::parse_non_negative_f64)]
    guidance: Option<f64>,
    /// Write the samples as an IDX images file (gzip when the name ends in .gz).
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// The report's path [default: <run>/eval.json].
    #[arg(long)]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let request = EvalRequest {
        from: cli.from,
        images: cli.images,
        grid: GridLayout {
            tile: cli.tile as usize,
            pad: cli.pad as usize,
        },
        samples: cli.samples as usize,
        seed: cli.seed,
        backend: cli.backend,
        data_dir: cli.data_dir,
        cache_dir: cli.cache_dir,
        reference_images: cli.reference_images as usize,
        sampling: cli.diffusion.settings(),
        guidance: cli.guidance,
        export: cli.export,
        output: cli.output,
    };
    genmodels_train::exit_on_error(evaluate(&request).map(|_| ()))
}
