//! `metrics.csv`: one row per logging interval, appended as training goes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fsutil::write_atomic;

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

    /// Opens `path` for a run that continues from `step`, as [`MetricsLog::open`] does, after
    /// dropping the rows logged after `step` (by a run that stopped before its next
    /// checkpoint), so that no step is logged twice. At step 0, a fresh run, the file starts
    /// anew. The first column must be the step.
    pub fn continue_at(path: &Path, header: &[&str], step: u64) -> Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let kept: Vec<&str> = text
                .lines()
                .enumerate()
                .filter(|&(i, line)| {
                    let row_step = line.split(',').next().and_then(|v| v.parse::<f64>().ok());
                    step > 0 && (i == 0 || row_step.is_some_and(|s| s <= step as f64))
                })
                .map(|(_, line)| line)
                .collect();
            if kept.len() < text.lines().count() {
                let text: String = kept.iter().map(|line| format!("{line}\n")).collect();
                write_atomic(path, text.as_bytes())?;
            }
        }
        Self::open(path, header)
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
        crate::fsutil::injected_failure(&self.path)
            .and_then(|()| writeln!(self.file, "{}", row.join(",")))
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns of the logs the tests write.
    const COLUMNS: [&str; 2] = ["step", "loss"];

    #[test]
    fn continuing_drops_the_rows_after_the_checkpoint_and_a_fresh_run_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut log = MetricsLog::open(&path, &COLUMNS).unwrap();
        for step in [50.0, 100.0, 150.0] {
            log.append(&[step, 0.5]).unwrap();
        }
        // The last checkpoint was at step 100: the row of step 150 goes.
        let mut log = MetricsLog::continue_at(&path, &COLUMNS, 100).unwrap();
        log.append(&[150.0, 0.25]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "step,loss\n50,0.5\n100,0.5\n150,0.25\n");
        // A fresh run keeps nothing of the old file, not even another header.
        let mut log = MetricsLog::continue_at(&path, &["step", "other"], 0).unwrap();
        log.append(&[1.0, 2.0]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "step,other\n1,2\n");
    }

    #[test]
    fn rows_append_across_reopen_and_headers_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        MetricsLog::open(&path, &COLUMNS)
            .unwrap()
            .append(&[1.0, 0.5])
            .unwrap();
        MetricsLog::open(&path, &COLUMNS)
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
        let mut log = MetricsLog::open(&path, &COLUMNS).unwrap();
        assert!(log.append(&[1.0]).is_err());
    }
}
