//! Writing files so that a crash or a full disk never leaves a half-written one behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A fault-injection hook for the tests: every write to a path containing this variable's
/// value fails as a full disk would (`ENOSPC`).
pub const FAIL_WRITES_MATCHING: &str = "GENMODELS_FAIL_WRITES_MATCHING";

/// The injected failure of a write to `path`, if [`FAIL_WRITES_MATCHING`] names it.
pub fn injected_failure(path: &Path) -> std::io::Result<()> {
    match std::env::var(FAIL_WRITES_MATCHING) {
        Ok(pattern) if !pattern.is_empty() && path.to_string_lossy().contains(&pattern) => Err(
            std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device"),
        ),
        _ => Ok(()),
    }
}

/// The sibling path a file is first written to before it is renamed into place.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over the target. Readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut file = fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })
}

/// Like [`write_atomic`], for writers that want a path (image encoders, record savers).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create folder {}", parent.display()))?;
    }
    let tmp = temporary_sibling(path);
    let result = injected_failure(path)
        .and_then(|()| write(&tmp))
        .with_context(|| format!("cannot write {}", path.display()));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kept.txt");
        write_atomic(&path, b"first").unwrap();
        let failed = write_atomic_with(&path, |tmp| {
            fs::write(tmp, b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        let message = format!("{:#}", failed.unwrap_err());
        assert!(
            message.contains("kept.txt") && message.contains("disk full"),
            "{message}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
