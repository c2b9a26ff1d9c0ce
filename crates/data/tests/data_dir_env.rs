//! The `GENMODELS_DATA_DIR` environment variable in [`resolve_data_dir`].
//!
//! This file holds a single test because it changes the process environment: each test file
//! runs as its own process, so no other thread can read the environment meanwhile.

use std::path::{Path, PathBuf};

use genmodels_data::{DATA_DIR_ENV, DEFAULT_DATA_DIR, resolve_data_dir};

#[test]
fn environment_variable_between_explicit_and_default() {
    let explicit = Path::new("/explicit");
    // SAFETY: this is the only thread of the process that touches the environment.
    unsafe { std::env::set_var(DATA_DIR_ENV, "/from-env") };
    assert_eq!(resolve_data_dir(None), PathBuf::from("/from-env"));
    assert_eq!(resolve_data_dir(Some(explicit)), explicit);

    unsafe { std::env::set_var(DATA_DIR_ENV, "") };
    assert_eq!(resolve_data_dir(None), PathBuf::from(DEFAULT_DATA_DIR));

    unsafe { std::env::remove_var(DATA_DIR_ENV) };
    assert_eq!(resolve_data_dir(None), PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(resolve_data_dir(Some(explicit)), explicit);
}
