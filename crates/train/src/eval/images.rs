//! Images made by any tool, read as 8-bit 28x28 pixels for scoring: an IDX images file (raw or
//! gzip), a PNG grid of tiles such as this project's sample grids, or a NumPy `.npy` array of
//! bytes.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use genmodels_data::{IMAGE_PIXELS, IMAGE_SIDE};

/// Where the tiles of a PNG grid lie: `tile` pixels square, `pad` pixels before the first and
/// between tiles (this project's grids: 28 and 2). A tile of `k * 28` pixels is averaged down to
/// 28, `k x k` pixels to one.
#[derive(Debug, Clone, Copy)]
pub struct GridLayout {
    pub tile: usize,
    pub pad: usize,
}

impl Default for GridLayout {
    fn default() -> Self {
        Self { tile: 28, pad: 2 }
    }
}

/// The images of `path`, `count * 784` bytes, by its extension: `.png` a grid, `.npy` a NumPy
/// array, anything else (`...-idx3-ubyte`, `.gz`) an IDX images file.
pub fn read_images(path: &Path, grid: GridLayout) -> Result<Vec<u8>> {
    let name = path.to_string_lossy().to_lowercase();
    let pixels = if name.ends_with(".png") {
        read_png_grid(path, grid)?
    } else if name.ends_with(".npy") {
        read_npy(path)?
    } else {
        genmodels_data::idx::read_images(path)?
    };
    ensure!(
        pixels.len() >= 2 * IMAGE_PIXELS,
        "--images {}: {} images; scoring needs at least 2",
        path.display(),
        pixels.len() / IMAGE_PIXELS
    );
    Ok(pixels)
}

/// The tiles of a grid, row after row.
fn read_png_grid(path: &Path, GridLayout { tile, pad }: GridLayout) -> Result<Vec<u8>> {
    if tile == 0 || tile % IMAGE_SIDE != 0 {
        bail!("--tile {tile}: a tile must be a multiple of {IMAGE_SIDE} pixels");
    }
    let grid = image::open(path)
        .with_context(|| format!("--images {}: not a readable PNG", path.display()))?
        .to_luma8();
    let (width, height) = (grid.width() as usize, grid.height() as usize);
    let (columns, rows) = (
        width.saturating_sub(pad) / (tile + pad),
        height.saturating_sub(pad) / (tile + pad),
    );
    ensure!(
        columns * rows > 0,
        "--images {}: a {width}x{height} image holds no {tile}-pixel tile with --pad {pad}",
        path.display()
    );
    let scale = tile / IMAGE_SIDE;
    let mut pixels = Vec::with_capacity(columns * rows * IMAGE_PIXELS);
    for row in 0..rows {
        for column in 0..columns {
            let (x0, y0) = (pad + column * (tile + pad), pad + row * (tile + pad));
            for y in 0..IMAGE_SIDE {
                for x in 0..IMAGE_SIDE {
                    let mut sum = 0u32;
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (x0 + x * scale + dx, y0 + y * scale + dy);
                            sum += u32::from(grid.get_pixel(px as u32, py as u32).0[0]);
                        }
                    }
                    let count = (scale * scale) as u32;
                    pixels.push(((sum + count / 2) / count) as u8);
                }
            }
        }
    }
    Ok(pixels)
}

/// A `.npy` file of unsigned bytes in C order, shaped `(N, 28, 28)`, `(N, 1, 28, 28)` or
/// `(N, 784)`.
// Written here rather than taken from a crate: only this one dtype and layout are read, and the
// npy crates bring a parser of Python literals for the header's one dictionary.
fn read_npy(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("--images {}", path.display()))?;
    let refuse = |why: &str| anyhow::anyhow!("--images {}: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(refuse("not a .npy file (no \\x93NUMPY magic)"));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        version => return Err(refuse(&format!("npy format version {version} is not read"))),
    };
    let body_start = header_start + header_len;
    let header = bytes
        .get(header_start..body_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| refuse("the header is truncated"))?;
    let descr_ok = ["'|u1'", "'<u1'", "'u1'", "'>u1'"]
        .iter()
        .any(|d| header.contains(&format!("'descr': {d}")));
    if !descr_ok {
        return Err(refuse("the array is not of unsigned bytes (dtype uint8)"));
    }
    if !header.contains("'fortran_order': False") {
        return Err(refuse("the array is in Fortran order; save it in C order"));
    }
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| refuse("the header has no shape"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| refuse("the shape is not a tuple of sizes"))?;
    let per_image: usize = shape.iter().skip(1).product();
    let image_shaped = matches!(shape[1..], [28, 28] | [1, 28, 28] | [784]);
    if shape.is_empty() || !image_shaped || per_image != IMAGE_PIXELS {
        return Err(refuse(&format!(
            "shape {shape:?}; expected (N, 28, 28), (N, 1, 28, 28) or (N, 784)"
        )));
    }
    let body = &bytes[body_start..];
    let expected = shape[0] * IMAGE_PIXELS;
    if body.len() != expected {
        return Err(refuse(&format!(
            "{} data bytes for shape {shape:?}, expected {expected}",
            body.len()
        )));
    }
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 `.npy` file of `pixels` with `shape`.
    fn npy(shape: &str, pixels: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({shape}), }}");
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(pixels);
        bytes
    }

    fn three_images() -> Vec<u8> {
        (0..3 * IMAGE_PIXELS).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn npy_arrays_of_every_image_shape_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = three_images();
        for shape in ["3, 28, 28", "3, 1, 28, 28", "3, 784"] {
            let path = dir.path().join("images.npy");
            std::fs::write(&path, npy(shape, &pixels)).unwrap();
            assert_eq!(
                read_images(&path, GridLayout::default()).unwrap(),
                pixels,
                "{shape}"
            );
        }
        let bad = dir.path().join("bad.npy");
        std::fs::write(&bad, npy("3, 27, 28", &pixels[..3 * 27 * 28])).unwrap();
        let error = read_images(&bad, GridLayout::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("bad.npy") && error.contains("shape"),
            "{error}"
        );
        std::fs::write(&bad, &npy("3, 28, 28", &pixels)[..200]).unwrap();
        let error = read_images(&bad, GridLayout::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("data bytes"), "{error}");
    }

    #[test]
    fn a_grid_gives_back_its_tiles_at_one_and_two_pixels_a_pixel() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = three_images();
        for (scale, pad) in [(1u32, 2u32), (2, 4)] {
            let tile = 28 * scale;
            // Three tiles in two columns, the fourth place left black.
            let side = |n: u32| pad + n * (tile + pad);
            let mut grid = image::GrayImage::new(side(2), side(2));
            for (i, image) in pixels.chunks(IMAGE_PIXELS).enumerate() {
                let (x0, y0) = (side(i as u32 % 2), side(i as u32 / 2));
                for (j, &value) in image.iter().enumerate() {
                    let (x, y) = ((j % 28) as u32, (j / 28) as u32);
                    for d in 0..scale * scale {
                        let (px, py) = (x0 + x * scale + d % scale, y0 + y * scale + d / scale);
                        grid.put_pixel(px, py, image::Luma([value]));
                    }
                }
            }
            let path = dir.path().join("grid.png");
            grid.save(&path).unwrap();
            let layout = GridLayout {
                tile: tile as usize,
                pad: pad as usize,
            };
            let read = read_images(&path, layout).unwrap();
            assert_eq!(read.len(), 4 * IMAGE_PIXELS);
            assert_eq!(read[..3 * IMAGE_PIXELS], pixels[..], "scale {scale}");
            assert!(read[3 * IMAGE_PIXELS..].iter().all(|&v| v == 0));
        }
        let error = read_png_grid(
            &dir.path().join("grid.png"),
            GridLayout { tile: 30, pad: 2 },
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("--tile 30"), "{error}");
    }
}
