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
use genmodels::checkpoint::{FORMAT, LATEST, STATE, sha256_hex};

use crate::fsutil::{injected_failure, write_atomic};

/// The folder of the checkpoint with the best FID logged, and the file holding that FID.
const BEST: &str = "best";
const BEST_FID: &str = "fid.json";

/// How many checkpoints are kept by default; older ones are removed after a new one is complete.
pub const KEEP: usize = 2;

/// The `checkpoints/` folder of a run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    root: PathBuf,
    keep: usize,
}

/// A checkpoint being written; nothing is visible until [`CheckpointWriter::commit`].
pub struct CheckpointWriter {
    checkpoints: Checkpoints,
    staging: PathBuf,
    name: String,
    step: u64,
}

/// A fault-injection hook for the tests: when this variable holds a step, the process aborts
/// (as a `kill -9` would stop it) right after writing the first file of that step's checkpoint.
pub const CRASH_WHILE_SAVING: &str = "GENMODELS_CRASH_WHILE_SAVING_STEP";

impl Checkpoints {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            keep: KEEP,
        }
    }

    /// Keeps the newest `keep` checkpoints (at least one).
    pub fn keeping(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
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
            step,
        })
    }

    /// The checkpoint kept for the best FID logged so far (`checkpoints/best/`), with that FID.
    pub fn best(&self) -> Result<Option<(Checkpoint, f64)>> {
        let dir = self.root.join(BEST);
        let Ok(text) = fs::read_to_string(dir.join(BEST_FID)) else {
            return Ok(None);
        };
        let fid: f64 = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a number", dir.join(BEST_FID).display()))?;
        Ok(Some((Checkpoint::open(&dir)?, fid)))
    }

    /// Copies `checkpoint` to `checkpoints/best/` when `fid` is lower than the best kept so far
    /// (the newest checkpoints come and go; this one stays until a better FID replaces it).
    pub fn keep_if_best(&self, checkpoint: &Checkpoint, fid: f64) -> Result<()> {
        if self.best()?.is_some_and(|(_, best)| best <= fid) {
            return Ok(());
        }
        let staging = self.root.join(".best.partial");
        if staging.exists() {
            fs::remove_dir_all(&staging)
                .with_context(|| format!("cannot clear {}", staging.display()))?;
        }
        fs::create_dir_all(&staging)
            .with_context(|| format!("cannot create {}", staging.display()))?;
        for entry in fs::read_dir(&checkpoint.dir)
            .with_context(|| format!("cannot list {}", checkpoint.dir.display()))?
        {
            let path = entry?.path();
            let copy = staging.join(path.file_name().expect("a file"));
            fs::copy(&path, &copy)
                .with_context(|| format!("cannot copy {} to {}", path.display(), copy.display()))?;
        }
        write_atomic(
            &staging.join(BEST_FID),
            serde_json::to_string(&fid)?.as_bytes(),
        )?;
        let best = self.root.join(BEST);
        if best.exists() {
            fs::remove_dir_all(&best)
                .with_context(|| format!("cannot replace {}", best.display()))?;
        }
        fs::rename(&staging, &best)
            .with_context(|| format!("cannot move the best checkpoint into {}", best.display()))
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
        injected_failure(&path).with_context(|| format!("cannot save {}", path.display()))?;
        // `valid` first merges the running statistics' pending updates (a BatchNorm's last
        // update waits in a per-thread slot until the next read), which `into_record` alone
        // would leave out: the checkpoint must hold what the next step would read.
        module
            .valid()
            .into_record()
            .save(&path)
            .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", path.display()))?;
        if std::env::var(CRASH_WHILE_SAVING).is_ok_and(|step| step == self.step.to_string()) {
            std::process::abort();
        }
        Ok(())
    }

    /// Adds an optimizer's state (Adam moments, step counts) as `optim_<name>.bpk`.
    pub fn optimizer(&self, name: &str, optimizer: &ModuleOptimizer) -> Result<()> {
        let path = self.staging.join(format!("optim_{name}.bpk"));
        injected_failure(&path).with_context(|| format!("cannot save {}", path.display()))?;
        optimizer
            .save(&path)
            .map_err(|e| anyhow::anyhow!("cannot save {}: {e}", path.display()))
    }

    /// Writes the training state with the SHA-256 of every file written, moves the checkpoint
    /// into place, points `latest` at it and removes all but the newest `keep` checkpoints.
    pub fn commit(self, state: &TrainingState) -> Result<Checkpoint> {
        let mut state = state.clone();
        state.format = FORMAT;
        state.files.clear();
        for entry in fs::read_dir(&self.staging)
            .with_context(|| format!("cannot list {}", self.staging.display()))?
        {
            let path = entry?.path();
            let bytes =
                fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            state.files.insert(name, sha256_hex(&bytes));
        }
        write_atomic(
            &self.staging.join(STATE),
            serde_json::to_string_pretty(&state)?.as_bytes(),
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
        for old in names.iter().rev().skip(self.checkpoints.keep) {
            fs::remove_dir_all(root.join(old))
                .with_context(|| format!("cannot remove old checkpoint {old}"))?;
        }
        Ok(Checkpoint { dir, state })
    }
}

#[cfg(test)]
mod tests {
    use crate::adam::AdamConfig;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;
    use genmodels::checkpoint::CheckpointError;

    use super::*;

    /// A checkpoint of one `Linear(3, 2)` named `layer` and its optimizer, at step 5.
    fn write_one(root: &Path) -> (Checkpoint, Linear) {
        let layer = LinearConfig::new(3, 2).init(&Device::flex());
        let writer = Checkpoints::new(root).begin(5).unwrap();
        writer.module("layer", &layer).unwrap();
        writer
            .optimizer("layer", &AdamConfig::new().init())
            .unwrap();
        let checkpoint = writer.commit(&TrainingState::new("test", 5, 1, 0)).unwrap();
        (checkpoint, layer)
    }

    fn fresh() -> Linear {
        LinearConfig::new(3, 2).init(&Device::flex())
    }

    #[test]
    fn every_file_is_listed_with_its_sha256_and_checked_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, layer) = write_one(dir.path());
        let on_disk = Checkpoint::open(&checkpoint.dir).unwrap();
        assert_eq!(on_disk.state.format, FORMAT);
        let files: Vec<&str> = on_disk.state.files.keys().map(String::as_str).collect();
        assert_eq!(files, ["layer.bpk", "optim_layer.bpk"]);
        let bytes = fs::read(checkpoint.dir.join("layer.bpk")).unwrap();
        assert_eq!(on_disk.state.files["layer.bpk"], sha256_hex(&bytes));
        let loaded = on_disk.load_module("layer", fresh()).unwrap();
        assert!(
            loaded
                .weight
                .val()
                .equal(layer.weight.val())
                .all()
                .into_scalar::<bool>()
        );
        on_disk
            .load_optimizer("layer", AdamConfig::new().init())
            .unwrap();
    }

    #[test]
    fn a_corrupt_truncated_or_missing_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, _) = write_one(dir.path());
        let path = checkpoint.dir.join("layer.bpk");
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let error = Checkpoint::open(&checkpoint.dir)
            .unwrap()
            .load_module("layer", fresh())
            .unwrap_err();
        assert!(matches!(error, CheckpointError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("layer.bpk"), "{error}");

        let optimizer = checkpoint.dir.join("optim_layer.bpk");
        let optimizer_error = || {
            let loaded = Checkpoint::open(&checkpoint.dir)
                .unwrap()
                .load_optimizer("layer", AdamConfig::new().init());
            loaded.err().unwrap().to_string()
        };
        let bytes = fs::read(&optimizer).unwrap();
        fs::write(&optimizer, &bytes[..bytes.len() / 3]).unwrap();
        let error = optimizer_error();
        assert!(
            error.contains("optim_layer.bpk") && error.contains("corrupt"),
            "{error}"
        );
        fs::remove_file(&optimizer).unwrap();
        let error = optimizer_error();
        assert!(error.contains("optim_layer.bpk"), "{error}");
    }

    #[test]
    fn a_future_format_and_another_size_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (checkpoint, _) = write_one(dir.path());
        let wider = LinearConfig::new(4, 2).init(&Device::flex());
        let error = Checkpoint::open(&checkpoint.dir)
            .unwrap()
            .load_module("layer", wider)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("layer.bpk") && error.contains("does not fit"),
            "{error}"
        );

        let state_path = checkpoint.dir.join(STATE);
        let text = fs::read_to_string(&state_path).unwrap();
        let future = text.replace(&format!("\"format\": {FORMAT}"), "\"format\": 99");
        assert_ne!(future, text);
        fs::write(&state_path, future).unwrap();
        let error = Checkpoint::open(&checkpoint.dir).unwrap_err().to_string();
        assert!(error.contains("format 99"), "{error}");
    }

    #[test]
    fn only_the_newest_checkpoints_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path()).keeping(2);
        let layer = fresh();
        for step in [1, 2, 3] {
            let writer = checkpoints.begin(step).unwrap();
            writer.module("layer", &layer).unwrap();
            writer
                .commit(&TrainingState::new("test", step, 0, 0))
                .unwrap();
        }
        assert_eq!(
            checkpoints.complete_names().unwrap(),
            ["step_000002", "step_000003"]
        );
        assert_eq!(checkpoints.latest().unwrap().unwrap().state.step, 3);
        let _ = layer.into_record();
    }
}
