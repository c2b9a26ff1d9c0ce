//! Weights that travel between genmodels and PyTorch: a network written as a `.safetensors` file
//! under the parameter names of the equivalent PyTorch module, and a PyTorch checkpoint (a `.pt`
//! state dict or a `.safetensors` file) read into a network.
//!
//! The PyTorch modules are those of `benches/pytorch_reference.py` (the same architectures, timed
//! beside these). Each network says how its burn module paths map to them by implementing
//! [`PytorchNames`]; the tensors themselves go through burn's store, whose adapters transpose
//! linear weights (`[in, out]` here, `[out, in]` in PyTorch) and rename the normalisation
//! parameters (`gamma`/`beta` here, `weight`/`bias` there).
//!
//! ```no_run
//! use genmodels::burn::tensor::Device;
//! use genmodels::dcgan::GeneratorConfig;
//! use genmodels::pytorch::{load_pytorch, save_safetensors};
//!
//! let device = Device::flex();
//! // A generator trained in PyTorch (`torch.save(generator.state_dict(), "generator.pt")`) ...
//! let generator = load_pytorch(GeneratorConfig::new().init(&device), "generator.pt")?;
//! // ... and back: `Generator().load_state_dict(safetensors.torch.load_file(...))` reads it.
//! save_safetensors(&generator, "generator.safetensors")?;
//! # Ok::<(), genmodels::checkpoint::CheckpointError>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::checkpoint::CheckpointError;

/// How a network's parameter paths read in PyTorch.
pub trait PytorchNames {
    /// Renames from this network's module path to the PyTorch module's, each a dot-separated
    /// run of path segments (`"middle.attention"` -> `"mid_attn"`). At every position of a
    /// path the first rule whose segments match there is applied; segments no rule matches keep
    /// their name. Networks without a PyTorch counterpart keep their paths (the default).
    const RENAMES: &'static [(&'static str, &'static str)] = &[];

    /// The PyTorch name of the parameter at `path` (`"project_norm.gamma"` -> `"bn0.weight"`).
    fn pytorch_name(path: &str) -> String {
        let (module, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        let leaf = match leaf {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        };
        let module = rename_segments(module, Self::RENAMES);
        if module.is_empty() {
            leaf.to_string()
        } else {
            format!("{module}.{leaf}")
        }
    }
}

/// Applies `renames` to the segments of `path` (see [`PytorchNames::RENAMES`]).
pub fn rename_segments(path: &str, renames: &[(&str, &str)]) -> String {
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let mut renamed: Vec<&str> = Vec::with_capacity(segments.len());
    let mut at = 0;
    'positions: while at < segments.len() {
        for (from, to) in renames {
            let pattern: Vec<&str> = from.split('.').collect();
            if segments[at..].starts_with(&pattern) {
                renamed.push(to);
                at += pattern.len();
                continue 'positions;
            }
        }
        renamed.push(segments[at]);
        at += 1;
    }
    renamed.join(".")
}

/// Buffers PyTorch keeps that have no counterpart here: BatchNorm's count of batches seen
/// (PyTorch fills it in when a state dict lacks it).
const PYTORCH_ONLY: &[&str] = &["num_batches_tracked"];

fn unreadable(path: &Path, message: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Unreadable {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn mismatch(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Mismatch {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The burn path of every parameter and buffer of `module`, in visiting order.
fn burn_paths<M: Module>(module: &M) -> Vec<String> {
    module
        .collect(None, None, false)
        .into_iter()
        .map(|tensor| tensor.name)
        .collect()
}

/// Writes `module` to `path` as safetensors under its PyTorch names, linear weights transposed
/// to PyTorch's layout. The file is written beside `path` and renamed into place, so an
/// existing file is replaced whole or not at all. Returns the names written, in module order.
pub fn save_safetensors<M: Module + PytorchNames>(
    module: &M,
    path: impl AsRef<Path>,
) -> Result<Vec<String>, CheckpointError> {
    let path = path.as_ref();
    let names: Vec<(String, String)> = burn_paths(module)
        .into_iter()
        .map(|burn| {
            // The adapter renames the leaf (gamma -> weight) before the remapper sees the path.
            let (module_path, leaf) = burn.rsplit_once('.').unwrap_or(("", &burn));
            let adapted = match leaf {
                "gamma" => format!("{module_path}.weight"),
                "beta" => format!("{module_path}.bias"),
                _ => burn.clone(),
            };
            (adapted, M::pytorch_name(&burn))
        })
        .collect();
    let targets: BTreeSet<&str> = names.iter().map(|(_, torch)| torch.as_str()).collect();
    assert_eq!(
        targets.len(),
        names.len(),
        "two parameters share a PyTorch name"
    );
    // Whole-name patterns, so no rename reaches into another; the remapper applies its patterns
    // one after another, so no renamed name may be the source of a later pattern.
    let sources: BTreeSet<&str> = names.iter().map(|(burn, _)| burn.as_str()).collect();
    let patterns: Vec<(String, String)> = names
        .iter()
        .filter(|(burn, torch)| burn != torch)
        .inspect(|(_, torch)| {
            assert!(
                !sources.contains(torch.as_str()),
                "`{torch}` is both a PyTorch name and another parameter's path"
            );
        })
        .map(|(burn, torch)| (format!("^{}$", burn.replace('.', r"\.")), torch.clone()))
        .collect();
    let remapper = KeyRemapper::from_patterns(patterns).expect("escaped literal names");
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper)
        .metadata("format", "pt");
    module
        .save_into(&mut store)
        .map_err(|e| unreadable(path, format!("cannot serialise the network: {e}")))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| unreadable(path, format!("cannot serialise the network: {e}")))?;
    let partial = partial_path(path);
    fs::write(&partial, bytes).map_err(|e| unreadable(&partial, e))?;
    fs::rename(&partial, path).map_err(|e| unreadable(path, e))?;
    Ok(names.into_iter().map(|(_, torch)| torch).collect())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Reads a PyTorch checkpoint into `module` (same architecture): a `.pt`/`.pth` state dict
/// (`torch.save(model.state_dict(), ..)`) or a `.safetensors` file, under the names of
/// [`PytorchNames`]. Every parameter must be in the file with its shape, and every tensor of the
/// file must have a place in the network (BatchNorm's `num_batches_tracked` aside); otherwise
/// the error names the file and the tensors.
pub fn load_pytorch<M: Module + PytorchNames>(
    mut module: M,
    path: impl AsRef<Path>,
) -> Result<M, CheckpointError> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(unreadable(path, "no such file"));
    }
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tensors = match extension {
        // Indices stay as written: PyTorch's `Sequential` numbers its layers with gaps.
        "safetensors" => SafetensorsStore::from_file(path)
            .map_indices_contiguous(false)
            .get_all_tensors()
            .cloned()
            .map_err(|e| unreadable(path, format!("not a readable safetensors file: {e}")))?,
        "pt" | "pth" | "bin" => PytorchStore::from_file(path)
            .map_indices_contiguous(false)
            .get_all_tensors()
            .cloned()
            .map_err(|e| unreadable(path, format!("not a readable PyTorch checkpoint: {e}")))?,
        _ => {
            return Err(unreadable(
                path,
                "is neither a PyTorch state dict (.pt, .pth) nor a .safetensors file",
            ));
        }
    };
    let by_torch_name: BTreeMap<String, String> = burn_paths(&module)
        .into_iter()
        .map(|burn| (M::pytorch_name(&burn), burn))
        .collect();
    let mut unexpected = Vec::new();
    let mut renamed = Vec::new();
    for (name, mut tensor) in tensors {
        match by_torch_name.get(&name) {
            Some(burn) => {
                tensor.name = burn.clone();
                renamed.push(tensor);
            }
            None if PYTORCH_ONLY.iter().any(|leaf| name.ends_with(leaf)) => {}
            None => unexpected.push(name),
        }
    }
    let found: BTreeSet<String> = renamed.iter().map(|t| t.name.clone()).collect();
    let missing: Vec<&String> = by_torch_name
        .iter()
        .filter(|(_, burn)| !found.contains(*burn))
        .map(|(torch, _)| torch)
        .collect();
    let problems: Vec<String> = [
        listed("it lacks", &missing),
        listed("it holds tensors the network does not have:", &unexpected),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !problems.is_empty() {
        return Err(mismatch(path, problems.join("; ")));
    }
    let result = module.apply(renamed, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(mismatch(path, errors.join("; ")));
    }
    Ok(module)
}

/// `"<what> a, b, c"` for a non-empty list (the first eight named).
fn listed(what: &str, names: &[impl AsRef<str>]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let shown: Vec<&str> = names.iter().take(8).map(AsRef::as_ref).collect();
    let more = match names.len() - shown.len() {
        0 => String::new(),
        more => format!(" and {more} more"),
    };
    Some(format!("{what} {}{more}", shown.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &[(&str, &str)] = &[
        ("middle.attention", "mid_attn"),
        ("attention", "attn"),
        ("upsample.conv", "up"),
    ];

    #[test]
    fn renames_apply_to_whole_segments_first_rule_first() {
        assert_eq!(
            rename_segments("middle.attention.norm", RULES),
            "mid_attn.norm"
        );
        assert_eq!(
            rename_segments("up.1.attention.norm", RULES),
            "up.1.attn.norm"
        );
        assert_eq!(rename_segments("up.1.upsample.conv", RULES), "up.1.up");
        // A segment that only begins like a rule is not renamed.
        assert_eq!(
            rename_segments("attentions.upsample", RULES),
            "attentions.upsample"
        );
        assert_eq!(rename_segments("", RULES), "");
    }

    struct Unet;
    impl PytorchNames for Unet {
        const RENAMES: &'static [(&'static str, &'static str)] = RULES;
    }

    #[test]
    fn leaves_take_pytorch_names() {
        assert_eq!(
            Unet::pytorch_name("middle.attention.norm.gamma"),
            "mid_attn.norm.weight"
        );
        assert_eq!(
            Unet::pytorch_name("up.0.attention.norm.beta"),
            "up.0.attn.norm.bias"
        );
        assert_eq!(
            Unet::pytorch_name("up.1.upsample.conv.weight"),
            "up.1.up.weight"
        );
        assert_eq!(Unet::pytorch_name("norm.running_var"), "norm.running_var");
        assert_eq!(Unet::pytorch_name("gamma"), "weight");
    }
}
