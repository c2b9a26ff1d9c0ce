//! The training kit shared by every genmodels example: backend choice, run folders,
//! checkpoints, image grids, progress bars and metric logs, and the training loops themselves.

pub mod backend;
pub mod cgan;
pub mod checkpoint;
pub mod classifier;
pub mod cli;
pub mod dcgan;
pub mod ddpm;
pub mod eval;
pub mod fsutil;
pub mod grid;
pub mod latent;
pub mod metrics;
pub mod run;
pub mod summary;
pub mod toy2d;
pub mod vae;
pub mod wgan;

pub use backend::{BackendChoice, SelectedDevice, select_device};

/// mimalloc keeps freed memory for reuse, where glibc's malloc returns large blocks to the
/// kernel and their fresh pages fault in again at every training step: on flex a training step
/// is 5-7% faster on an idle machine, and up to 1.4x faster on a busy one (benches/RESULTS.md).
/// Turn off the default `mimalloc` feature to choose another global allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
