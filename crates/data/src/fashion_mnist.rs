//! The Fashion-MNIST data set in memory, and where to find it on disk.
//!
//! Fashion-MNIST holds 28x28 grey-scale pictures of clothes in ten classes. On disk it is four
//! IDX files (see [`crate::idx`]), each either raw or gzip-compressed with a `.gz` suffix:
//!
//! | file                       | content                         |
//! | -------------------------- | ------------------------------- |
//! | `train-images-idx3-ubyte`  | training images, `[n, 28, 28]`  |
//! | `train-labels-idx1-ubyte`  | training labels, `[n]`          |
//! | `t10k-images-idx3-ubyte`   | test images                     |
//! | `t10k-labels-idx1-ubyte`   | test labels                     |
//!
//! The folder holding them is chosen by [`resolve_data_dir`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::{fetch, idx};

/// Width and height of every image, in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Number of pixels (bytes) in one image.
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes; labels are `0..NUM_CLASSES`.
pub const NUM_CLASSES: usize = 10;

/// Human-readable class names, indexed by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// File name (without `.gz`) of the training images.
pub const TRAIN_IMAGES_FILE: &str = "train-images-idx3-ubyte";
/// File name (without `.gz`) of the training labels.
pub const TRAIN_LABELS_FILE: &str = "train-labels-idx1-ubyte";
/// File name (without `.gz`) of the test images.
pub const TEST_IMAGES_FILE: &str = "t10k-images-idx3-ubyte";
/// File name (without `.gz`) of the test labels.
pub const TEST_LABELS_FILE: &str = "t10k-labels-idx1-ubyte";

/// All four file names (without `.gz`): train images, train labels, test images, test labels.
pub const DATA_FILES: [&str; 4] = [
    TRAIN_IMAGES_FILE,
    TRAIN_LABELS_FILE,
    TEST_IMAGES_FILE,
    TEST_LABELS_FILE,
];

/// Environment variable naming the data folder, used when no folder is given explicitly.
pub const DATA_DIR_ENV: &str = "GENMODELS_DATA_DIR";
/// Data folder used when neither an explicit folder nor [`DATA_DIR_ENV`] is given, relative to
/// the current directory.
pub const DEFAULT_DATA_DIR: &str = "datasets/fashion-mnist";

/// One part of the data set (training or test): images and their labels, in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// `len() * 784` pixels in `0..=255`, image after image, each image row after row.
    pub images: Vec<u8>,
    /// One class index `0..=9` per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of image `index`.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.images[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]
    }

    /// The images of class `class` alone, in their order.
    pub fn of_class(&self, class: u8) -> Split {
        let mut part = Split::default();
        for (index, &label) in self.labels.iter().enumerate() {
            if label == class {
                part.images.extend_from_slice(self.image(index));
                part.labels.push(label);
            }
        }
        part
    }

    /// Loads a split from an images file and a labels file, checking that they agree.
    pub fn load(images_path: &Path, labels_path: &Path) -> Result<Self, DataError> {
        let images = idx::read_images(images_path)?;
        let labels = idx::read_labels(labels_path)?;
        let image_count = images.len() / IMAGE_PIXELS;
        if image_count != labels.len() {
            return Err(DataError::CountMismatch {
                images_path: images_path.to_path_buf(),
                labels_path: labels_path.to_path_buf(),
                images: image_count,
                labels: labels.len(),
            });
        }
        Ok(Split { images, labels })
    }
}

/// The whole data set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FashionMnist {
    /// The training split.
    pub train: Split,
    /// The test split.
    pub test: Split,
}

impl FashionMnist {
    /// See [`load`].
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        load(dir)
    }

    /// See [`load_or_fetch`].
    pub fn load_or_fetch(dir: &Path) -> Result<Self, DataError> {
        load_or_fetch(dir)
    }
}

/// Chooses the data folder: `explicit` (typically from a `--data-dir` flag) if given, else the
/// [`DATA_DIR_ENV`] environment variable if set and not empty, else [`DEFAULT_DATA_DIR`].
pub fn resolve_data_dir(explicit: Option<&Path>) -> PathBuf {
    resolve_data_dir_with(explicit, std::env::var_os(DATA_DIR_ENV))
}

/// [`resolve_data_dir`] with the environment variable's value passed in, so the choice can be
/// tested without touching the process environment.
pub fn resolve_data_dir_with(explicit: Option<&Path>, env_value: Option<OsString>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    match env_value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

/// The path of data file `name` (one of [`DATA_FILES`]) in `dir`: the raw file if it exists,
/// else the `.gz` one if it exists, else `None`.
pub fn find_data_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Whether `dir` holds all four data files (raw or `.gz`).
pub fn has_data_files(dir: &Path) -> bool {
    DATA_FILES
        .iter()
        .all(|name| find_data_file(dir, name).is_some())
}

/// Loads the data set from the four files in `dir`, without fetching anything.
pub fn load(dir: &Path) -> Result<FashionMnist, DataError> {
    let path = |name: &str| {
        find_data_file(dir, name).ok_or_else(|| DataError::Io {
            path: dir.join(name),
            action: "cannot find data file (raw or .gz)",
            source: std::io::ErrorKind::NotFound.into(),
        })
    };
    Ok(FashionMnist {
        train: Split::load(&path(TRAIN_IMAGES_FILE)?, &path(TRAIN_LABELS_FILE)?)?,
        test: Split::load(&path(TEST_IMAGES_FILE)?, &path(TEST_LABELS_FILE)?)?,
    })
}

/// Loads the data set from `dir`, first fetching and converting it (see [`fetch::fetch`]) when
/// any of the four files is missing. Prints one line saying where the data came from.
pub fn load_or_fetch(dir: &Path) -> Result<FashionMnist, DataError> {
    if has_data_files(dir) {
        let data = load(dir)?;
        println!(
            "Fashion-MNIST: loaded {} training and {} test images from {}",
            data.train.len(),
            data.test.len(),
            dir.display()
        );
        return Ok(data);
    }
    fetch::fetch(dir)?;
    load(dir)
}

/// [`load_or_fetch`] in the folder a `--data-dir` flag names, or else the one
/// [`resolve_data_dir`] picks.
pub fn load_or_fetch_in(data_dir: Option<&Path>) -> Result<FashionMnist, DataError> {
    load_or_fetch(&resolve_data_dir(data_dir))
}
