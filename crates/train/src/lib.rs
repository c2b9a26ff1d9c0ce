//! The training kit shared by every genmodels example: backend choice, run folders,
//! checkpoints, image grids, progress bars and metric logs, the one training loop ([`fit`]),
//! each model's optimisation step, evaluation, and the registry of generators.

pub mod adam;
pub mod adversarial;
pub mod backend;
pub mod bigan;
pub mod cgan;
pub mod checkpoint;
pub mod classifier;
pub mod cli;
pub mod cyclegan;
pub mod dcgan;
pub mod ddpm;
pub mod eval;
pub mod fit;
pub mod flow;
pub mod fsutil;
pub mod grid;
pub mod infogan;
pub mod interop;
pub mod latent;
pub mod ldm;
pub mod metrics;
pub mod optim;
pub mod registry;
pub mod run;
pub mod summary;
pub mod toy2d;
pub mod vae;
pub mod wgan;

pub use backend::{BackendChoice, SelectedDevice, select_device};

pub use cli::CommonArgs;
pub use summary::TrainSummary;

/// Runs an example's `main` body: prints an error chain as `error: ...` and exits with
/// status 1, without a panic backtrace.
pub fn exit_on_error(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
