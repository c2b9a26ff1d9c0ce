//! Makes sure Fashion-MNIST is in the data folder, fetching and converting it when absent.
//!
//! ```text
//! cargo run --bin fetch-fashion-mnist [-- DATA_DIR]
//! ```
//!
//! DATA_DIR defaults to `$GENMODELS_DATA_DIR`, then `datasets/fashion-mnist`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let explicit = std::env::args_os().nth(1).map(PathBuf::from);
    let dir = genmodels_data::resolve_data_dir(explicit.as_deref());
    match genmodels_data::load_or_fetch(&dir) {
        Ok(data) => {
            println!(
                "Fashion-MNIST ready in {}: {} training and {} test images",
                dir.display(),
                data.train.len(),
                data.test.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
