//! IDX reading and writing: round trips, gzip detection, and every kind of bad file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, write::GzEncoder};
use genmodels_data::idx::{self, Encoding};
use genmodels_data::{DataError, IMAGE_PIXELS, Split};

#[macro_use]
mod common;

/// Three images whose pixels are all different from one image to the next.
fn sample_pixels() -> Vec<u8> {
    (0..3 * IMAGE_PIXELS).map(|i| (i * 7 % 256) as u8).collect()
}

/// An IDX header: magic number then dimensions, big-endian.
fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The first half of `bytes`.
fn first_half(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() / 2);
    bytes
}

/// Writes `bytes` to a new file `name` in `dir`; its path.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn images_round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = sample_pixels();
    for (name, encoding) in [("raw-images", Encoding::Raw), ("images.gz", Encoding::Gzip)] {
        let path = dir.path().join(name);
        idx::write_images(&path, &pixels, encoding).unwrap();
        assert_eq!(idx::read_images(&path).unwrap(), pixels);
    }
    // The raw file is exactly header + pixels; the gzip one is smaller and starts with 1f 8b.
    let raw = fs::read(dir.path().join("raw-images")).unwrap();
    assert_eq!(&raw[..16], &header(0x0803, &[3, 28, 28])[..]);
    assert_eq!(raw.len(), 16 + 3 * IMAGE_PIXELS);
    let gz = fs::read(dir.path().join("images.gz")).unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
}

#[test]
fn labels_round_trip_raw_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let labels = vec![0, 9, 3, 3, 1];
    for (name, encoding) in [("labels", Encoding::Raw), ("labels.gz", Encoding::Gzip)] {
        let path = dir.path().join(name);
        idx::write_labels(&path, &labels, encoding).unwrap();
        assert_eq!(idx::read_labels(&path).unwrap(), labels);
    }
    let raw = fs::read(dir.path().join("labels")).unwrap();
    assert_eq!(raw, [header(0x0801, &[5]), labels.clone()].concat());
}

#[test]
fn gzip_is_detected_by_content_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let labels = vec![1, 2, 3];
    // Compressed content under a plain name, and plain content under a .gz name.
    let compressed_plain_name = dir.path().join("labels-idx1-ubyte");
    fs::write(
        &compressed_plain_name,
        gzip(&[header(0x0801, &[3]), labels.clone()].concat()),
    )
    .unwrap();
    let plain_gz_name = dir.path().join("labels-idx1-ubyte.gz");
    fs::write(
        &plain_gz_name,
        [header(0x0801, &[3]), labels.clone()].concat(),
    )
    .unwrap();
    assert_eq!(idx::read_labels(&compressed_plain_name).unwrap(), labels);
    assert_eq!(idx::read_labels(&plain_gz_name).unwrap(), labels);
}

#[test]
fn gzip_output_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.gz"), dir.path().join("b.gz"));
    idx::write_images(&a, &sample_pixels(), Encoding::Gzip).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a timestamp would now differ
    idx::write_images(&b, &sample_pixels(), Encoding::Gzip).unwrap();
    let (a, b) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert_eq!(a, b);
    assert_eq!(&a[4..8], &[0, 0, 0, 0], "gzip mtime must be zero");
    assert_eq!(a[3] & 0x08, 0, "gzip header must not carry a file name");
}

#[test]
fn writer_leaves_only_the_destination_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    idx::write_images(&path, &sample_pixels(), Encoding::Raw).unwrap();
    // Overwriting goes through a temporary file too.
    idx::write_images(&path, &sample_pixels()[..IMAGE_PIXELS], Encoding::Raw).unwrap();
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("images")]);
    assert_eq!(idx::read_images(&path).unwrap().len(), IMAGE_PIXELS);
}

#[test]
fn writer_rejects_bad_buffers_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    assert_error!(
        idx::write_images(&images, &[0u8; 100], Encoding::Raw),
        DataError::BadDimensions { .. },
        &images
    );
    let labels = dir.path().join("labels");
    assert_error!(
        idx::write_labels(&labels, &[1, 10], Encoding::Raw),
        DataError::LabelOutOfRange {
            index: 1,
            label: 10,
            ..
        },
        &labels
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// One test per bad file: `read_…(file, bytes) => pattern` writes `bytes` to `file`, and
/// `idx::read_…` refuses it with an error that matches `pattern` (and its guard, if any) and
/// names the file.
macro_rules! bad_file_tests {
    ($(
        $test:ident: $read:ident($file:literal, $bytes:expr) => $pattern:pat $(if $guard:expr)?,
    )*) => {$(
        #[test]
        fn $test() {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), $file, &$bytes);
            assert_error!(idx::$read(&path), $pattern $(if $guard)?, &path);
        }
    )*};
}

bad_file_tests! {
    bad_magic: read_images(
        "not-idx",
        [header(0xDEAD_BEEF, &[1, 28, 28]), vec![0; IMAGE_PIXELS]].concat()
    ) => DataError::BadMagic { expected: 0x0803, found: 0xDEAD_BEEF, .. },
    wrong_image_size: read_images(
        "images-29x28",
        [header(0x0803, &[1, 29, 28]), vec![0; 29 * 28]].concat()
    ) => DataError::BadDimensions { ref detail, .. } if detail.contains("29x28"),
    truncated_header: read_images("short-header", header(0x0803, &[1, 28, 28])[..10])
        => DataError::Truncated { what: "header", expected: 16, found: 10, .. },
    empty_file: read_labels("empty", []) => DataError::Truncated { found: 0, .. },
    truncated_body: read_images(
        "short-body.gz",
        gzip(&[header(0x0803, &[2, 28, 28]), vec![0; IMAGE_PIXELS]].concat())
    ) => DataError::Truncated { expected: 1568, found: 784, .. },
    trailing_bytes: read_labels("labels", [header(0x0801, &[2]), vec![1, 2, 3]].concat())
        => DataError::TrailingData { expected: 2, extra: 1, .. },
    // Gzip magic followed by garbage, and a valid stream cut in half.
    garbage_gzip: read_images("garbage.gz", [0x1f, 0x8b, 0xff, 0x00, 0x12, 0x34])
        => DataError::BadGzip { .. },
    cut_gzip: read_images(
        "cut.gz",
        first_half(gzip(&[header(0x0803, &[3, 28, 28]), sample_pixels()].concat()))
    ) => DataError::BadGzip { .. },
    label_out_of_range: read_labels("labels", [header(0x0801, &[3]), vec![9, 10, 0]].concat())
        => DataError::LabelOutOfRange { index: 1, label: 10, .. },
}

#[test]
fn wrong_rank() {
    let dir = tempfile::tempdir().unwrap();
    // A labels file where images are expected, and the other way round.
    let labels = dir.path().join("labels");
    idx::write_labels(&labels, &[1, 2], Encoding::Raw).unwrap();
    assert_error!(
        idx::read_images(&labels),
        DataError::BadDimensions { .. },
        &labels
    );
    let images = dir.path().join("images");
    idx::write_images(&images, &sample_pixels(), Encoding::Raw).unwrap();
    assert_error!(
        idx::read_labels(&images),
        DataError::BadDimensions { .. },
        &images
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = Path::new("/nonexistent/folder/train-images-idx3-ubyte");
    assert_error!(idx::read_images(path), DataError::Io { .. }, path);
}

#[test]
fn split_rejects_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let labels = dir.path().join("labels.gz");
    idx::write_images(&images, &sample_pixels(), Encoding::Raw).unwrap();
    idx::write_labels(&labels, &[1, 2], Encoding::Gzip).unwrap();
    assert_error!(
        Split::load(&images, &labels),
        DataError::CountMismatch {
            images: 3,
            labels: 2,
            ..
        },
        &images,
        &labels
    );

    idx::write_labels(&labels, &[1, 2, 7], Encoding::Gzip).unwrap();
    let split = Split::load(&images, &labels).unwrap();
    assert_eq!(split.len(), 3);
    assert_eq!(split.image(2), &sample_pixels()[2 * IMAGE_PIXELS..]);
    assert_eq!(split.labels, vec![1, 2, 7]);
}
