//! Reading and writing IDX files, the format the MNIST family of data sets is published in.
//!
//! An IDX file is a big-endian header followed by the raw items:
//!
//! ```text
//! bytes 0..2   zero
//! byte  2      element type, 0x08 = unsigned byte (the only type used here)
//! byte  3      number of dimensions (3 for images, 1 for labels)
//! then         one u32 (big-endian) per dimension
//! then         the elements, row-major
//! ```
//!
//! So an images file starts with the magic number `0x00000803` and the dimensions
//! `[count, 28, 28]`, a labels file with `0x00000801` and `[count]`.
//!
//! Files may be stored raw or gzip-compressed. The reader tells them apart by the gzip magic
//! bytes `1f 8b`, not by the file name, so a renamed file still loads. The writer writes to a
//! temporary file in the destination folder and renames it into place, so a reader never
//! observes a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder, read::MultiGzDecoder};
use sha2::{Digest, Sha256};

use crate::error::DataError;
use crate::fashion_mnist::{IMAGE_PIXELS, IMAGE_SIDE, NUM_CLASSES};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The IDX element-type code for unsigned bytes.
const UNSIGNED_BYTE_TYPE: u8 = 0x08;

/// The gzip compression level used by the writer. It is fixed so that the same content always
/// gives the same compressed bytes (for a given deflate implementation).
pub const GZIP_LEVEL: u32 = 6;

/// How a file is stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The IDX bytes as they are.
    Raw,
    /// The IDX bytes in a gzip stream, with no file name and a zero modification time in the
    /// gzip header so the output depends only on the content.
    Gzip,
}

impl Encoding {
    /// The conventional encoding for a file name: [`Encoding::Gzip`] for a `.gz` suffix,
    /// [`Encoding::Raw`] otherwise.
    pub fn from_file_name(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("gz") => Encoding::Gzip,
            _ => Encoding::Raw,
        }
    }
}

/// Reads an images file and returns its pixels: `count * 28 * 28` bytes, image after image,
/// each image row after row. The number of images is `pixels.len() / 784`.
pub fn read_images(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_decompressed(path)?;
    let (dims, body_start) =
        parse_header(path, &bytes, 3, "IDX images (unsigned bytes, 3 dimensions)")?;
    if dims[1] as usize != IMAGE_SIDE || dims[2] as usize != IMAGE_SIDE {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: format!(
                "images are {}x{}, expected {IMAGE_SIDE}x{IMAGE_SIDE}",
                dims[1], dims[2]
            ),
        });
    }
    take_body(path, bytes, body_start, dims, "pixel data")
}

/// Reads a labels file and returns one class index (`0..=9`) per item.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_decompressed(path)?;
    let (dims, body_start) =
        parse_header(path, &bytes, 1, "IDX labels (unsigned bytes, 1 dimension)")?;
    let labels = take_body(path, bytes, body_start, dims, "label data")?;
    check_labels(path, &labels)?;
    Ok(labels)
}

/// Every label must be a class index `0..=9`; the first one that is not is reported.
fn check_labels(path: &Path, labels: &[u8]) -> Result<(), DataError> {
    match labels
        .iter()
        .position(|&label| label as usize >= NUM_CLASSES)
    {
        Some(index) => Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            index,
            label: labels[index],
        }),
        None => Ok(()),
    }
}

/// Writes an images file. `pixels` holds whole 28x28 images, one after the other.
pub fn write_images(path: &Path, pixels: &[u8], encoding: Encoding) -> Result<(), DataError> {
    write_images_hashed(path, pixels, encoding).map(|_| ())
}

/// Writes a labels file. Every label must be a class index `0..=9`.
pub fn write_labels(path: &Path, labels: &[u8], encoding: Encoding) -> Result<(), DataError> {
    write_labels_hashed(path, labels, encoding).map(|_| ())
}

/// [`write_images`], returning the SHA-256 (hex) of the uncompressed IDX bytes.
pub(crate) fn write_images_hashed(
    path: &Path,
    pixels: &[u8],
    encoding: Encoding,
) -> Result<String, DataError> {
    if !pixels.len().is_multiple_of(IMAGE_PIXELS) {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: format!(
                "{} bytes of pixels is not a whole number of {IMAGE_SIDE}x{IMAGE_SIDE} images",
                pixels.len()
            ),
        });
    }
    let count = dimension(path, pixels.len() / IMAGE_PIXELS)?;
    let side = IMAGE_SIDE as u32;
    write_idx(path, &[count, side, side], pixels, encoding)
}

/// [`write_labels`], returning the SHA-256 (hex) of the uncompressed IDX bytes.
pub(crate) fn write_labels_hashed(
    path: &Path,
    labels: &[u8],
    encoding: Encoding,
) -> Result<String, DataError> {
    check_labels(path, labels)?;
    let count = dimension(path, labels.len())?;
    write_idx(path, &[count], labels, encoding)
}

/// Lowercase hexadecimal spelling of a digest.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a whole file, decompressing it when it starts with the gzip magic bytes.
fn read_decompressed(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, "cannot read file", e))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    // A multi-member decoder also accepts files made by concatenating gzip streams, which
    // `gzip` itself produces and accepts.
    let mut decompressed = Vec::new();
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut decompressed)
        .map_err(|source| DataError::BadGzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(decompressed)
}

/// Checks the magic number and rank, and returns the dimensions and where the elements start.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    rank: usize,
    kind: &'static str,
) -> Result<(Vec<u32>, usize), DataError> {
    let truncated = |expected: usize| DataError::Truncated {
        path: path.to_path_buf(),
        what: "header",
        expected: expected as u64,
        found: bytes.len() as u64,
    };
    let magic_bytes: [u8; 4] = bytes
        .get(..4)
        .ok_or_else(|| truncated(4))?
        .try_into()
        .expect("4 bytes");
    let magic = u32::from_be_bytes(magic_bytes);
    let expected_magic = u32::from_be_bytes([0, 0, UNSIGNED_BYTE_TYPE, rank as u8]);
    // The first three bytes say "IDX of unsigned bytes"; anything else is not a file we can
    // read at all. The fourth is the rank, reported separately because "wrong number of
    // dimensions" explains a mix-up between images and labels better than a bad magic number.
    if magic_bytes[..3] != [0, 0, UNSIGNED_BYTE_TYPE] {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: expected_magic,
            found: magic,
            kind,
        });
    }
    let found_rank = magic_bytes[3] as usize;
    if found_rank != rank {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            detail: format!("{found_rank} dimensions, expected {rank} ({kind})"),
        });
    }
    let body_start = 4 + 4 * rank;
    let dims_bytes = bytes
        .get(4..body_start)
        .ok_or_else(|| truncated(body_start))?;
    let dims = dims_bytes
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes(d.try_into().expect("4 bytes")))
        .collect();
    Ok((dims, body_start))
}

/// Returns the elements after the header, checking that there are exactly as many as the
/// dimensions say.
fn take_body(
    path: &Path,
    mut bytes: Vec<u8>,
    body_start: usize,
    dims: Vec<u32>,
    what: &'static str,
) -> Result<Vec<u8>, DataError> {
    // u64 cannot overflow here: at most 2^32 items of 28x28 bytes.
    let expected: u64 = dims.iter().map(|&d| d as u64).product();
    let found = (bytes.len() - body_start) as u64;
    if found < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what,
            expected,
            found,
        });
    }
    if found > expected {
        return Err(DataError::TrailingData {
            path: path.to_path_buf(),
            expected,
            extra: found - expected,
        });
    }
    bytes.drain(..body_start);
    Ok(bytes)
}

/// Converts an item count to the u32 an IDX dimension holds.
fn dimension(path: &Path, count: usize) -> Result<u32, DataError> {
    u32::try_from(count).map_err(|_| DataError::BadDimensions {
        path: path.to_path_buf(),
        detail: format!("{count} items do not fit in an IDX dimension (u32)"),
    })
}

/// Writes header and elements atomically, returning the SHA-256 (hex) of the uncompressed bytes.
fn write_idx(
    path: &Path,
    dims: &[u32],
    body: &[u8],
    encoding: Encoding,
) -> Result<String, DataError> {
    let mut header = vec![0, 0, UNSIGNED_BYTE_TYPE, dims.len() as u8];
    for d in dims {
        header.extend_from_slice(&d.to_be_bytes());
    }
    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(body);

    let partial = PartialFile::create(path)?;
    let write_error = |e| DataError::io(&partial.path, "cannot write temporary file", e);
    let file = BufWriter::new(partial.file.try_clone().map_err(write_error)?);
    match encoding {
        Encoding::Raw => write_all(file, &header, body).map_err(write_error)?,
        Encoding::Gzip => {
            // Default GzBuilder: no file name, mtime 0, OS byte 255, so the bytes are reproducible.
            let mut gz = GzBuilder::new().write(file, Compression::new(GZIP_LEVEL));
            gz.write_all(&header)
                .and_then(|_| gz.write_all(body))
                .map_err(write_error)?;
            gz.finish()
                .and_then(|f| f.into_inner().map_err(|e| e.into_error()))
                .map_err(write_error)?;
        }
    }
    partial.commit(path)?;
    Ok(to_hex(&hasher.finalize()))
}

fn write_all(mut out: BufWriter<File>, header: &[u8], body: &[u8]) -> io::Result<()> {
    out.write_all(header)?;
    out.write_all(body)?;
    out.into_inner().map_err(|e| e.into_error())?;
    Ok(())
}

/// A temporary file next to its destination, deleted unless [`PartialFile::commit`] renames it
/// into place. Being in the same folder makes the rename atomic.
struct PartialFile {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl PartialFile {
    fn create(destination: &Path) -> Result<Self, DataError> {
        let folder = match destination.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = destination
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = folder.join(format!(".{name}.{}.{unique}.partial", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| DataError::io(&path, "cannot create temporary file", e))?;
        Ok(PartialFile {
            path,
            file,
            committed: false,
        })
    }

    fn commit(mut self, destination: &Path) -> Result<(), DataError> {
        self.file
            .sync_all()
            .map_err(|e| DataError::io(&self.path, "cannot flush temporary file", e))?;
        fs::rename(&self.path, destination)
            .map_err(|e| DataError::io(destination, "cannot move file into place", e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the original error is what matters to the caller.
            let _ = fs::remove_file(&self.path);
        }
    }
}
