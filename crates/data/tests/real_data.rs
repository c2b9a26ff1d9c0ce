//! Checks on the real, fetched data set. Skipped (with a message) when the files are absent,
//! so the test suite never needs the network.

use std::io::Read;
use std::path::PathBuf;

use genmodels_data::fashion_mnist::{find_data_file, has_data_files};
use genmodels_data::fetch::CONVERTED_CONTENT_SHA256;
use genmodels_data::{CLASS_NAMES, DATA_DIR_ENV, NUM_CLASSES, Split, load};
use sha2::{Digest, Sha256};

/// The data folder of the repository (or the one named by the environment variable).
fn data_dir() -> PathBuf {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fashion-mnist"),
    }
}

fn class_counts(split: &Split) -> [usize; NUM_CLASSES] {
    let mut counts = [0; NUM_CLASSES];
    for &label in &split.labels {
        counts[label as usize] += 1;
    }
    counts
}

#[test]
fn real_data_loads_with_the_expected_sizes_and_content() {
    let dir = data_dir();
    if !has_data_files(&dir) {
        println!("skipped: no Fashion-MNIST files in {}", dir.display());
        return;
    }
    let data = load(&dir).unwrap();
    assert_eq!(data.train.len(), 60_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(data.train.images.len(), 60_000 * 784);
    assert_eq!(CLASS_NAMES.len(), NUM_CLASSES);

    // The official files and this crate's conversion both hold 6000 / 1000 images per class.
    assert_eq!(class_counts(&data.train), [6000; NUM_CLASSES]);
    assert_eq!(class_counts(&data.test), [1000; NUM_CLASSES]);
    // Real pictures use the whole byte range, and are not blank.
    assert_eq!(data.train.images.iter().max(), Some(&255));
    assert!(data.train.image(0).iter().any(|&p| p > 0));

    // Files produced by the conversion have the recorded content. Files supplied by hand (the
    // official ones, say) legitimately differ, but then none of the four matches.
    let mut matching = 0;
    for (name, expected) in CONVERTED_CONTENT_SHA256 {
        let path = find_data_file(&dir, name).unwrap();
        let mut content = Vec::new();
        let file = std::fs::File::open(&path).unwrap();
        if path.extension().is_some_and(|e| e == "gz") {
            flate2::read::MultiGzDecoder::new(file)
                .read_to_end(&mut content)
                .unwrap();
        } else {
            std::io::BufReader::new(file)
                .read_to_end(&mut content)
                .unwrap();
        }
        let hex: String = Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        matching += usize::from(hex == expected);
    }
    match matching {
        0 => println!(
            "the files in {} are not the npm conversion; assuming they were supplied by hand",
            dir.display()
        ),
        _ => assert_eq!(
            matching, 4,
            "some but not all files match the recorded conversion"
        ),
    }
}
