//! `metrics.csv`: one row per logging interval, appended as training goes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// An append-only CSV file with a fixed header.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
    columns: usize,
}

impl MetricsLog {
    /// Opens `path` for appending, writing `header` when the file is new. An existing file must
    /// have the same header (a resumed run of the same model).
    pub fn open(path: &Path, header: &[&str]) -> Result<Self> {
        let header_line = header.join(",");
        let existing = std::fs::read_to_string(path).ok();
        if let Some(text) = &existing {
            let first = text.lines().next().unwrap_or_default();
            if !first.is_empty() && first != header_line {
                bail!(
                    "{} has columns `{first}`, expected `{header_line}`",
                    path.display()
                );
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if existing.is_none_or(|text| text.is_empty()) {
            writeln!(file, "{header_line}")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            columns: header.len(),
        })
    }

    /// Appends one row; numbers are written with enough digits to be read back exactly.
    pub fn append(&mut self, values: &[f64]) -> Result<()> {
        if values.len() != self.columns {
            bail!(
                "{}: {} values for {} columns",
                self.path.display(),
                values.len(),
                self.columns
            );
        }
        let row: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
        writeln!(self.file, "{}", row.join(","))
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_append_across_reopen_and_headers_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        MetricsLog::open(&path, &["step", "loss"])
            .unwrap()
            .append(&[1.0, 0.5])
            .unwrap();
        MetricsLog::open(&path, &["step", "loss"])
            .unwrap()
            .append(&[2.0, 0.25])
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "step,loss\n1,0.5\n2,0.25\n"
        );
        let err = MetricsLog::open(&path, &["step", "other"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("metrics.csv"), "{err}");
        let mut log = MetricsLog::open(&path, &["step", "loss"]).unwrap();
        assert!(log.append(&[1.0]).is_err());
    }
}
