//! Writing checkpoints: every network and optimizer of a run, and where training stood, saved
//! so that `--resume` continues exactly where a run stopped. Reading them needs only
//! [`genmodels::checkpoint`].
//!
//! Layout under the run's `checkpoints/` folder:
//!
//! ```text
//! step_000468/            one folder per checkpoint
//!     generator.bpk       module records (burnpack)
//!     optim_generator.bpk optimizer states
//!     state.json          step, epoch, seed, model
//! latest                  the name of the newest complete checkpoint
//! ```
//!
//! A checkpoint is written into a temporary folder and renamed into place, and `latest` is
//! replaced atomically afterwards, so an interrupted save never hides the previous checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
pub use genmodels::checkpoint::{Checkpoint, RunFolder, TrainingState};
use genmodels::checkpoint::{LATEST, STATE};

use crate::fsutil::write_atomic;

/// How many checkpoints are kept; older ones are removed after a new one is complete.
const KEEP: usize = 2;

/// The `checkpoints/` folder of a run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
}

/// A checkpoint being written; nothing is visible until [`CheckpointWriter::commit`].
pub struct CheckpointWriter {
    checkpoints: Checkpoints,
    staging: PathBuf,
    name: String,
}

impl Checkpoints {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a checkpoint for `step`.
    pub fn begin(&self, step: u64) -> Result<CheckpointWriter> {
        let name = format!("step_{step:06}");
        let staging = self.root.join(format!(".{name}.partial"));
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .with_context(|| format!("cannot clear {}", staging.display()))?;
        }
        fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        Ok(CheckpointWriter {
            checkpoints: self.clone(),
            staging,
            name,
        })
    }

    /// The newest complete checkpoint, if any.
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        Ok(Checkpoint::latest_in(&self.root)?)
    }

    fn complete_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("step_"))
            .collect();
        names.sort();
        Ok(names)
    }
}

impl CheckpointWriter {
    /// Adds a network's parameters (and BatchNorm running statistics) as `<name>.bpk`.
    pub fn module<M: Module>(&self, name: &str, module: &M) -> Result<()> {
        let path = self.staging.join(format!("{name}.bpk"));
        module
            .clone()
            .into_record()
            .save(&path)
            .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", path.display()))
    }

    /// Adds an optimizer's state (Adam moments, step counts) as `optim_<name>.bpk`.
    pub fn optimizer(&self, name: &str, optimizer: &ModuleOptimizer) -> Result<()> {
        let path = self.staging.join(format!("optim_{name}.bpk"));
        optimizer
            .save(&path)
            .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", path.display()))
    }

    /// Writes the training state, moves the checkpoint into place, points `latest` at it and
    /// removes checkpoints older than the last [`KEEP`].
    pub fn commit(self, state: &TrainingState) -> Result<Checkpoint> {
        write_atomic(
            &self.staging.join(STATE),
            serde_json::to_string_pretty(state)?.as_bytes(),
        )?;
        let root = self.checkpoints.root();
        let dir = root.join(&self.name);
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        fs::rename(&self.staging, &dir)
            .with_context(|| format!("cannot move checkpoint into {}", dir.display()))?;
        write_atomic(&root.join(LATEST), self.name.as_bytes())?;
        let names = self.checkpoints.complete_names()?;
        for old in names.iter().rev().skip(KEEP) {
            fs::remove_dir_all(root.join(old))
                .with_context(|| format!("cannot remove old checkpoint {old}"))?;
        }
        Ok(Checkpoint {
            dir,
            state: state.clone(),
        })
    }
}
