//! What every end-to-end test of an example needs: the built binary, a run of it from the
//! repository root, and its output.
//!
//! Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use genmodels_train::checkpoint::{Checkpoint, Checkpoints};

/// The path of example `name`, built by `cargo test` next to the test binaries.
pub fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` so examples are built",
        path.display()
    );
    path
}

/// Example `name` with `args`, to be run from the repository root, where `datasets/` lives.
pub fn example_command<'a>(name: &str, args: impl IntoIterator<Item = &'a str>) -> Command {
    let mut command = Command::new(example(name));
    command.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    command
}

/// Runs example `name` with `args` from the repository root.
pub fn run_example(name: &str, args: &[&str]) -> Output {
    example_command(name, args.iter().copied())
        .output()
        .expect("the example starts")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output, then standard error.
pub fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The run failed with an error (no panic) whose text holds every one of `expected`.
pub fn assert_clean_failure(output: &Output, expected: &[&str]) {
    let text = stderr(output);
    assert!(!output.status.success(), "should fail: {text}");
    assert!(
        !text.contains("panicked"),
        "panicked instead of an error: {text}"
    );
    for needle in expected {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
}

/// Runs example `name` with the flags of `command_line`, split at whitespace (so no flag
/// value may hold a space: temporary folders do not).
pub fn run(name: &str, command_line: &str) -> Output {
    example_command(name, command_line.split_whitespace())
        .output()
        .expect("the example starts")
}

/// Runs example `name` with `command_line`, which must succeed; its standard output.
pub fn run_ok(name: &str, command_line: &str) -> String {
    let output = run(name, command_line);
    assert!(output.status.success(), "{}", all_output(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs example `name` with `command_line` and `--out` a new temporary folder, which must
/// succeed; the folder (removed when dropped).
pub fn run_in_new_folder(name: &str, command_line: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    run_ok(
        name,
        &format!("{command_line} --out {}", out.path().display()),
    );
    out
}

/// Asserts that every one of `files` (paths relative to `dir`) exists.
pub fn assert_files(dir: &Path, files: &[&str]) {
    for file in files {
        assert!(dir.join(file).exists(), "{file} missing");
    }
}

/// Asserts that the GAN run in `dir` wrote what it writes after its first epoch: the real
/// images, its config and metrics, and a grid of 8 tiles of 28 px with 2 px padding a side
/// (8 * 30 + 2 = 242 px).
pub fn assert_gan_files(dir: &Path) {
    assert_files(
        dir,
        &[
            "real.png",
            "samples/epoch_001.png",
            "config.json",
            "metrics.csv",
        ],
    );
    assert_eq!(image_size(dir.join("samples/epoch_001.png")), (242, 242));
}

/// The width and height of the image at `path`.
pub fn image_size(path: impl AsRef<Path>) -> (u32, u32) {
    let path = path.as_ref();
    let image = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (image.width(), image.height())
}

/// The `metrics.csv` of the run in `dir`.
pub fn read_metrics(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metrics.csv")).unwrap()
}

/// The latest checkpoint of the run in `dir`, which must have one.
pub fn latest_checkpoint(dir: &Path) -> Checkpoint {
    Checkpoints::new(dir.join("checkpoints"))
        .latest()
        .unwrap()
        .expect("a checkpoint")
}
