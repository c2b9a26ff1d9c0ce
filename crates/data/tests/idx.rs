//! IDX reading and writing: round trips, gzip detection, and every kind of bad file.

use std::fs;
use std::io::Write;
use std::path::Path;

use flate2::{Compression, write::GzEncoder};
use genmodels_data::idx::{self, Encoding};
use genmodels_data::{DataError, IMAGE_PIXELS, Split};

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

/// Asserts that the error's message names `path`.
fn assert_names(error: &DataError, path: &Path) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message {message:?} does not name {}",
        path.display()
    );
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
    let error = idx::write_images(&images, &[0u8; 100], Encoding::Raw).unwrap_err();
    assert!(
        matches!(error, DataError::BadDimensions { .. }),
        "{error:?}"
    );
    assert_names(&error, &images);
    let labels = dir.path().join("labels");
    let error = idx::write_labels(&labels, &[1, 10], Encoding::Raw).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_magic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-idx");
    fs::write(
        &path,
        [header(0xDEAD_BEEF, &[1, 28, 28]), vec![0; IMAGE_PIXELS]].concat(),
    )
    .unwrap();
    let error = idx::read_images(&path).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::BadMagic {
                expected: 0x0803,
                found: 0xDEAD_BEEF,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &path);
}

#[test]
fn wrong_image_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images-29x28");
    fs::write(
        &path,
        [header(0x0803, &[1, 29, 28]), vec![0; 29 * 28]].concat(),
    )
    .unwrap();
    let error = idx::read_images(&path).unwrap_err();
    assert!(
        matches!(error, DataError::BadDimensions { .. }),
        "{error:?}"
    );
    assert_names(&error, &path);
    assert!(error.to_string().contains("29x28"), "{error}");
}

#[test]
fn wrong_rank() {
    let dir = tempfile::tempdir().unwrap();
    // A labels file where images are expected, and the other way round.
    let labels = dir.path().join("labels");
    idx::write_labels(&labels, &[1, 2], Encoding::Raw).unwrap();
    let error = idx::read_images(&labels).unwrap_err();
    assert!(
        matches!(error, DataError::BadDimensions { .. }),
        "{error:?}"
    );
    assert_names(&error, &labels);

    let images = dir.path().join("images");
    idx::write_images(&images, &sample_pixels(), Encoding::Raw).unwrap();
    let error = idx::read_labels(&images).unwrap_err();
    assert!(
        matches!(error, DataError::BadDimensions { .. }),
        "{error:?}"
    );
    assert_names(&error, &images);
}

#[test]
fn truncated_header_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let short_header = dir.path().join("short-header");
    fs::write(&short_header, &header(0x0803, &[1, 28, 28])[..10]).unwrap();
    let error = idx::read_images(&short_header).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::Truncated {
                what: "header",
                expected: 16,
                found: 10,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &short_header);

    let empty = dir.path().join("empty");
    fs::write(&empty, []).unwrap();
    let error = idx::read_labels(&empty).unwrap_err();
    assert!(
        matches!(error, DataError::Truncated { found: 0, .. }),
        "{error:?}"
    );

    let short_body = dir.path().join("short-body.gz");
    fs::write(
        &short_body,
        gzip(&[header(0x0803, &[2, 28, 28]), vec![0; IMAGE_PIXELS]].concat()),
    )
    .unwrap();
    let error = idx::read_images(&short_body).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::Truncated {
                expected: 1568,
                found: 784,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &short_body);
}

#[test]
fn trailing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels");
    fs::write(&path, [header(0x0801, &[2]), vec![1, 2, 3]].concat()).unwrap();
    let error = idx::read_labels(&path).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::TrailingData {
                expected: 2,
                extra: 1,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &path);
}

#[test]
fn bad_gzip() {
    let dir = tempfile::tempdir().unwrap();
    // Gzip magic followed by garbage.
    let garbage = dir.path().join("garbage.gz");
    fs::write(&garbage, [0x1f, 0x8b, 0xff, 0x00, 0x12, 0x34]).unwrap();
    let error = idx::read_images(&garbage).unwrap_err();
    assert!(matches!(error, DataError::BadGzip { .. }), "{error:?}");
    assert_names(&error, &garbage);

    // A valid stream cut in half.
    let cut = dir.path().join("cut.gz");
    let full = gzip(&[header(0x0803, &[3, 28, 28]), sample_pixels()].concat());
    fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let error = idx::read_images(&cut).unwrap_err();
    assert!(matches!(error, DataError::BadGzip { .. }), "{error:?}");
    assert_names(&error, &cut);
}

#[test]
fn label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels");
    fs::write(&path, [header(0x0801, &[3]), vec![9, 10, 0]].concat()).unwrap();
    let error = idx::read_labels(&path).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &path);
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = Path::new("/nonexistent/folder/train-images-idx3-ubyte");
    let error = idx::read_images(path).unwrap_err();
    assert!(matches!(error, DataError::Io { .. }), "{error:?}");
    assert_names(&error, path);
}

#[test]
fn split_rejects_count_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let labels = dir.path().join("labels.gz");
    idx::write_images(&images, &sample_pixels(), Encoding::Raw).unwrap();
    idx::write_labels(&labels, &[1, 2], Encoding::Gzip).unwrap();
    let error = Split::load(&images, &labels).unwrap_err();
    assert!(
        matches!(
            error,
            DataError::CountMismatch {
                images: 3,
                labels: 2,
                ..
            }
        ),
        "{error:?}"
    );
    assert_names(&error, &images);
    assert_names(&error, &labels);

    idx::write_labels(&labels, &[1, 2, 7], Encoding::Gzip).unwrap();
    let split = Split::load(&images, &labels).unwrap();
    assert_eq!(split.len(), 3);
    assert_eq!(split.image(2), &sample_pixels()[2 * IMAGE_PIXELS..]);
    assert_eq!(split.labels, vec![1, 2, 7]);
}
