//! What every end-to-end test of an example needs: the built binary, a run of it from the
//! repository root, and its output.
//!
//! Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

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

/// Runs example `name` with `args` from the repository root, where `datasets/` lives.
pub fn run_example(name: &str, args: &[&str]) -> Output {
    Command::new(example(name))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
    let args: Vec<&str> = command_line.split_whitespace().collect();
    run_example(name, &args)
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
