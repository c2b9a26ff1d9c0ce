//! Choosing the data folder and finding the files in it. The environment variable itself is
//! tested in `data_dir_env.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use genmodels_data::fashion_mnist::{find_data_file, has_data_files, resolve_data_dir_with};
use genmodels_data::{DATA_FILES, DEFAULT_DATA_DIR};

#[test]
fn resolution_order() {
    let explicit = Path::new("/explicit");
    let from_env = Some("/from-env".into());
    // Explicit beats the environment, the environment beats the default.
    assert_eq!(
        resolve_data_dir_with(Some(explicit), from_env.clone()),
        explicit
    );
    assert_eq!(
        resolve_data_dir_with(None, from_env),
        PathBuf::from("/from-env")
    );
    assert_eq!(
        resolve_data_dir_with(None, None),
        PathBuf::from(DEFAULT_DATA_DIR)
    );
    // An empty variable counts as unset.
    assert_eq!(
        resolve_data_dir_with(None, Some("".into())),
        PathBuf::from(DEFAULT_DATA_DIR)
    );
    assert_eq!(DEFAULT_DATA_DIR, "datasets/fashion-mnist");
}

#[test]
fn finds_raw_or_gzip_files_preferring_raw() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!has_data_files(dir.path()));
    assert_eq!(find_data_file(dir.path(), DATA_FILES[0]), None);

    for name in DATA_FILES {
        fs::write(dir.path().join(format!("{name}.gz")), b"").unwrap();
    }
    assert!(has_data_files(dir.path()));
    let gz = dir.path().join(format!("{}.gz", DATA_FILES[0]));
    assert_eq!(find_data_file(dir.path(), DATA_FILES[0]), Some(gz));

    let raw = dir.path().join(DATA_FILES[0]);
    fs::write(&raw, b"").unwrap();
    assert_eq!(find_data_file(dir.path(), DATA_FILES[0]), Some(raw));
}
