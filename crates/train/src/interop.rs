//! Weights out to PyTorch: what `export` writes for each network of a run (see
//! [`genmodels::pytorch`] for the names and layouts; `--init-from` reads the other way).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use genmodels::pytorch::{PytorchNames, save_safetensors};

/// Writes `module` as `<dir>/<name>.safetensors`, returning the file's path.
pub fn export_network<M: Module + PytorchNames>(
    dir: &Path,
    name: &str,
    module: &M,
) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.safetensors"));
    save_safetensors(module, &path).with_context(|| format!("exporting {name}"))?;
    Ok(path)
}
