//! Reading what a training run wrote, without the training kit: a run folder's settings
//! (`config.json`) and the networks of its checkpoints.
//!
//! ```text
//! runs/dcgan/
//!     config.json             every setting, the networks' Configs among them
//!     checkpoints/
//!         latest              the name of the newest complete checkpoint
//!         step_000468/
//!             state.json      model name, step, epoch, seed
//!             generator.bpk   one module record (burnpack) per network
//!             optim_generator.bpk
//! ```
//!
//! From a run folder to a trained network is one line per network:
//!
//! ```no_run
//! use genmodels::checkpoint::RunFolder;
//! use genmodels::dcgan::{GENERATOR, GeneratorConfig};
//! use genmodels::ImageSource;
//!
//! let device = burn::tensor::Device::flex();
//! let run = RunFolder::open("runs/dcgan")?;
//! let generator = run.load(GENERATOR, |config: GeneratorConfig| config.init(&device))?;
//! let images = generator.draw(64, 0, &device).images; // [64, 1, 28, 28] in [-1, 1]
//! # Ok::<(), genmodels::checkpoint::CheckpointError>(())
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The checkpoint format this version writes: 1 lists every file's SHA-256 in `state.json`.
/// Checkpoints from before (format 0) are read without that check.
pub const FORMAT: u32 = 1;
/// The file in `checkpoints/` naming the newest complete checkpoint.
pub const LATEST: &str = "latest";
/// The file in a checkpoint folder holding its [`TrainingState`].
pub const STATE: &str = "state.json";
/// The file in a run folder holding its settings.
pub const CONFIG: &str = "config.json";

/// Why a run folder or checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {message}", path.display())]
    Unreadable { path: PathBuf, message: String },
    #[error("{} is not a checkpoint folder (no readable {STATE})", dir.display())]
    NotACheckpoint { dir: PathBuf },
    #[error(
        "{} has no checkpoint: give a run folder (e.g. runs/dcgan) or a checkpoint folder",
        dir.display()
    )]
    NoCheckpoint { dir: PathBuf },
    #[error("{} is a checkpoint of the `{found}` model, not `{expected}`", dir.display())]
    WrongModel {
        dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} does not fit this model: {message}", path.display())]
    Mismatch { path: PathBuf, message: String },
    #[error(
        "{} is corrupt or truncated: its SHA-256 is not the one {STATE} records",
        path.display()
    )]
    Corrupt { path: PathBuf },
    #[error(
        "{} was written in checkpoint format {format}, newer than this version reads ({FORMAT})",
        dir.display()
    )]
    NewerFormat { dir: PathBuf, format: u32 },
}

type Result<T> = std::result::Result<T, CheckpointError>;

fn unreadable(path: &Path, error: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// Where training stood when a checkpoint was taken, and what the checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Model name, so a checkpoint of one model is not loaded into another.
    pub model: String,
    /// Optimisation steps completed.
    pub step: u64,
    /// Epochs completed.
    pub epoch: usize,
    /// The run's seed.
    pub seed: u64,
    /// The checkpoint format ([`FORMAT`]; 0 for checkpoints from before it was recorded).
    #[serde(default)]
    pub format: u32,
    /// The SHA-256 (hex) of every other file of the checkpoint, by file name.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl TrainingState {
    /// The state of `model` after `step` steps and `epoch` complete epochs; the files are listed
    /// when the checkpoint is written.
    pub fn new(model: &str, step: u64, epoch: usize, seed: u64) -> Self {
        Self {
            model: model.into(),
            step,
            epoch,
            seed,
            format: FORMAT,
            files: BTreeMap::new(),
        }
    }
}

/// The SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A complete checkpoint on disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainingState,
}

impl Checkpoint {
    /// Opens a checkpoint folder, reading its `state.json`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let state_path = dir.join(STATE);
        let text = fs::read_to_string(&state_path)
            .map_err(|_| CheckpointError::NotACheckpoint { dir: dir.clone() })?;
        let state: TrainingState = serde_json::from_str(&text)
            .map_err(|e| unreadable(&state_path, format!("not a valid training state: {e}")))?;
        if state.format > FORMAT {
            return Err(CheckpointError::NewerFormat {
                dir,
                format: state.format,
            });
        }
        Ok(Self { dir, state })
    }

    /// Checks `file` against the SHA-256 `state.json` records for it (from format 1 on).
    pub fn verify(&self, file: &str) -> Result<()> {
        let path = self.dir.join(file);
        if self.state.format == 0 {
            return Ok(());
        }
        let bytes = fs::read(&path).map_err(|e| unreadable(&path, e))?;
        match self.state.files.get(file) {
            Some(expected) if *expected == sha256_hex(&bytes) => Ok(()),
            Some(_) => Err(CheckpointError::Corrupt { path }),
            None => Err(unreadable(&path, format!("is not listed in {STATE}"))),
        }
    }

    /// The newest complete checkpoint in a `checkpoints/` folder, if any.
    pub fn latest_in(checkpoints: &Path) -> Result<Option<Self>> {
        let pointer = checkpoints.join(LATEST);
        if !pointer.exists() {
            return Ok(None);
        }
        let name = fs::read_to_string(&pointer).map_err(|e| unreadable(&pointer, e))?;
        Self::open(checkpoints.join(name.trim())).map(Some)
    }

    /// Checks that the checkpoint belongs to `model`.
    pub fn expect_model(&self, model: &str) -> Result<()> {
        if self.state.model != model {
            return Err(CheckpointError::WrongModel {
                dir: self.dir.clone(),
                found: self.state.model.clone(),
                expected: model.into(),
            });
        }
        Ok(())
    }

    /// Loads `<name>.bpk` into `module` (same architecture), keeping its parameter ids so that
    /// optimizer states saved alongside find their parameters.
    pub fn load_module<M: Module>(&self, name: &str, module: M) -> Result<M> {
        let file = format!("{name}.bpk");
        self.verify(&file)?;
        let path = self.dir.join(file);
        let record = ModuleRecord::load(&path).map_err(|e| unreadable(&path, e))?;
        module
            .try_load_record(record)
            .map_err(|e| CheckpointError::Mismatch {
                path,
                message: e.to_string(),
            })
    }

    /// Loads `optim_<name>.bpk` into `optimizer`.
    pub fn load_optimizer(
        &self,
        name: &str,
        optimizer: ModuleOptimizer,
    ) -> Result<ModuleOptimizer> {
        let file = format!("optim_{name}.bpk");
        self.verify(&file)?;
        let path = self.dir.join(file);
        optimizer.load(&path).map_err(|e| unreadable(&path, e))
    }
}

/// A run folder: its settings and one of its checkpoints.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub root: PathBuf,
    pub checkpoint: Checkpoint,
    config: serde_json::Value,
}

impl RunFolder {
    /// A run folder (with its latest checkpoint) or a checkpoint folder inside one.
    pub fn open(from: impl AsRef<Path>) -> Result<Self> {
        let from = from.as_ref();
        let (root, checkpoint) = if from.join(STATE).exists() {
            let checkpoint = Checkpoint::open(from)?;
            let root = from
                .parent()
                .and_then(Path::parent)
                .ok_or_else(|| unreadable(from, "is not inside a run folder"))?;
            (root.to_path_buf(), checkpoint)
        } else {
            match Checkpoint::latest_in(&from.join("checkpoints"))? {
                Some(checkpoint) => (from.to_path_buf(), checkpoint),
                None => {
                    return Err(CheckpointError::NoCheckpoint {
                        dir: from.to_path_buf(),
                    });
                }
            }
        };
        let config_path = root.join(CONFIG);
        let text = fs::read_to_string(&config_path).map_err(|e| {
            unreadable(&config_path, format!("cannot read the run's settings: {e}"))
        })?;
        let config = serde_json::from_str(&text).map_err(|e| unreadable(&config_path, e))?;
        Ok(Self {
            root,
            checkpoint,
            config,
        })
    }

    /// The model the checkpoint belongs to (`dcgan`, `ddpm`, ...).
    pub fn model(&self) -> &str {
        &self.checkpoint.state.model
    }

    /// The whole `config.json` read as `T`.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone()).map_err(|e| {
            unreadable(
                &self.root.join(CONFIG),
                format!("not the settings of a {} run: {e}", self.model()),
            )
        })
    }

    /// The entry `key` of `config.json` (a network's Config, the noise schedule) read as `T`.
    pub fn config<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let path = self.root.join(CONFIG);
        let value = self
            .config
            .get(key)
            .ok_or_else(|| unreadable(&path, format!("has no `{key}` entry")))?;
        serde_json::from_value(value.clone())
            .map_err(|e| unreadable(&path, format!("`{key}`: {e}")))
    }

    /// The network `name`: built by `init` from the Config stored under `name` in
    /// `config.json`, with the weights of `<name>.bpk` from the checkpoint.
    pub fn load<C: DeserializeOwned, M: Module>(
        &self,
        name: &str,
        init: impl FnOnce(C) -> M,
    ) -> Result<M> {
        self.load_record(name, name, init)
    }

    /// As [`RunFolder::load`], with the Config under `config_key` and the weights of
    /// `<record>.bpk` (a DDPM's `ema` weights are a `unet`).
    pub fn load_record<C: DeserializeOwned, M: Module>(
        &self,
        config_key: &str,
        record: &str,
        init: impl FnOnce(C) -> M,
    ) -> Result<M> {
        let module = init(self.config(config_key)?);
        self.checkpoint.load_module(record, module)
    }
}
