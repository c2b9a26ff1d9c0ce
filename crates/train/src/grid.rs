//! Figures of images: a batch tiled into one PNG, with class names beside the rows of a
//! conditional model's grid, and strips of a process's steps side by side.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use genmodels::{GridImages, PixelRange};
use genmodels_data::CLASS_NAMES;
use image::{GrayImage, Luma, RgbImage};
use plotters::prelude::*;

use crate::fsutil::write_atomic_with;

/// Width of the strip holding the class names, left of a class grid.
pub const NAME_WIDTH: u32 = 110;

/// How pixel values of a tensor map to 0..255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelScale {
    /// Values in [-1, 1] (tanh outputs, GAN and diffusion data).
    MinusOneToOne,
    /// Values in [0, 1] (sigmoid outputs, VAE data).
    ZeroToOne,
}

impl From<PixelRange> for PixelScale {
    fn from(range: PixelRange) -> Self {
        match range {
            PixelRange::MinusOneToOne => PixelScale::MinusOneToOne,
            PixelRange::ZeroToOne => PixelScale::ZeroToOne,
        }
    }
}

impl PixelScale {
    fn to_byte(self, value: f32) -> u8 {
        let unit = match self {
            PixelScale::MinusOneToOne => (value + 1.0) * 0.5,
            PixelScale::ZeroToOne => value,
        };
        (unit.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Tiles `images` (`[N, 1, H, W]`) into a grid of `columns` columns with `padding` black
/// pixels between and around the tiles, as torchvision's `make_grid` does.
pub fn image_grid(
    images: Tensor<4>,
    columns: usize,
    padding: usize,
    scale: PixelScale,
) -> Result<GrayImage> {
    let [count, channels, height, width] = images.dims();
    if channels != 1 {
        bail!("image grids take single-channel images, got {channels} channels");
    }
    if count == 0 || columns == 0 {
        bail!("an image grid needs at least one image and one column");
    }
    let pixels = images.into_data().convert::<f32>().try_to_vec::<f32>()?;
    let rows = count.div_ceil(columns);
    let grid_width = columns * (width + padding) + padding;
    let grid_height = rows * (height + padding) + padding;
    let mut grid = GrayImage::new(grid_width as u32, grid_height as u32);
    for (index, image) in pixels.chunks_exact(height * width).enumerate() {
        let left = padding + (index % columns) * (width + padding);
        let top = padding + (index / columns) * (height + padding);
        for (offset, &value) in image.iter().enumerate() {
            let (x, y) = (left + offset % width, top + offset / width);
            grid.put_pixel(x as u32, y as u32, Luma([scale.to_byte(value)]));
        }
    }
    Ok(grid)
}

/// Writes an image grid to `path` as PNG, atomically.
pub fn save_grid(images: Tensor<4>, columns: usize, scale: PixelScale, path: &Path) -> Result<()> {
    let grid = image_grid(images, columns, 2, scale)?;
    write_atomic_with(path, |tmp| {
        grid.save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

/// Writes an image source's figure ([`genmodels::ImageSource::grid`]): tiled, with each row's
/// class named on its left when the rows are classes.
pub fn save_image_grid(grid: GridImages, range: PixelRange, path: &Path) -> Result<()> {
    match &grid.row_classes {
        Some(classes) => save_class_grid(grid.images, classes, grid.columns, range.into(), path),
        None => save_grid(grid.images, grid.columns, range.into(), path),
    }
}

/// Writes a grid with one row per class (`images` holds `columns` images of each class in
/// `classes`, in order) and each row's class name on its left.
pub fn save_class_grid(
    images: Tensor<4>,
    classes: &[usize],
    columns: usize,
    scale: PixelScale,
    path: &Path,
) -> Result<()> {
    let grid = image_grid(images, columns, 2, scale)?;
    let width = NAME_WIDTH + grid.width();
    let height = grid.height();
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw_names(&root, classes, grid.height())
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    }
    let mut canvas = RgbImage::from_raw(width, height, pixels).expect("buffer matches the size");
    let grid_rgb = image::DynamicImage::ImageLuma8(grid).to_rgb8();
    image::imageops::replace(&mut canvas, &grid_rgb, NAME_WIDTH as i64, 0);
    // Black text on white and gray tiles: one channel is enough.
    let canvas = image::DynamicImage::ImageRgb8(canvas).to_luma8();
    write_atomic_with(path, |tmp| {
        canvas
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

fn draw_names(
    root: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    classes: &[usize],
    grid_height: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let row_height = (grid_height as i32 - 2) / classes.len().max(1) as i32;
    for (row, &class) in classes.iter().enumerate() {
        let y = 2 + row as i32 * row_height + row_height / 2 - 7;
        root.draw(&Text::new(
            CLASS_NAMES[class],
            (6, y),
            ("sans-serif", 15).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// Images above their reconstructions: `originals` and `reconstructions` (`[N, 1, H, W]`, N a
/// multiple of `columns`) in alternating rows of `columns`.
pub fn save_above(
    originals: Tensor<4>,
    reconstructions: Tensor<4>,
    columns: usize,
    scale: PixelScale,
    path: &Path,
) -> Result<()> {
    let rows: Vec<Tensor<4>> = (0..originals.dims()[0] / columns)
        .flat_map(|row| {
            [
                originals.clone().narrow(0, row * columns, columns),
                reconstructions.clone().narrow(0, row * columns, columns),
            ]
        })
        .collect();
    save_grid(Tensor::cat(rows, 0), columns, scale, path)
}

/// Tiles columns of `[rows, C, H, W]` images: row r holds image r of every column, in order.
pub fn save_strips(columns: Vec<Tensor<4>>, scale: PixelScale, path: &Path) -> Result<()> {
    let count = columns.len();
    let stacked = Tensor::stack::<5>(columns, 1); // [rows, columns, C, H, W]
    let [rows, _, channels, height, width] = stacked.dims();
    let images = stacked.reshape([rows * count, channels, height, width]);
    save_grid(images, count, scale, path)
}

/// Draws a figure of `size` pixels with plotters (`draw` is given the drawing area) and writes
/// it as PNG, atomically.
pub fn save_plot(
    size: (u32, u32),
    path: &Path,
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<()> {
    let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(&root).map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    }
    let image = RgbImage::from_raw(size.0, size.1, pixels).expect("buffer matches the size");
    write_atomic_with(path, |tmp| {
        image
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn tiles_land_where_expected_with_padding() {
        // Three 2x2 images with constant values -1, 0 and 1, in two columns.
        let values: Vec<f32> = [-1.0f32, 0.0, 1.0].iter().flat_map(|&v| [v; 4]).collect();
        let images = Tensor::<4>::from_data(TensorData::new(values, [3, 1, 2, 2]), &Device::flex());
        let grid = image_grid(images, 2, 2, PixelScale::MinusOneToOne).unwrap();
        // 2 columns * (2 + 2) + 2 = 10 wide; 2 rows * (2 + 2) + 2 = 10 high.
        assert_eq!(grid.dimensions(), (10, 10));
        assert_eq!(grid.get_pixel(2, 2)[0], 0); // first tile, -1 -> 0
        assert_eq!(grid.get_pixel(6, 3)[0], 128); // second tile, 0 -> 127.5 rounds to 128
        assert_eq!(grid.get_pixel(3, 7)[0], 255); // third tile, row two, 1 -> 255
        assert_eq!(grid.get_pixel(7, 7)[0], 0); // the missing fourth tile stays black
        assert_eq!(grid.get_pixel(0, 0)[0], 0); // padding
    }

    #[test]
    fn zero_to_one_scale_and_clamping() {
        assert_eq!(PixelScale::ZeroToOne.to_byte(1.0), 255);
        assert_eq!(PixelScale::ZeroToOne.to_byte(1.7), 255);
        assert_eq!(PixelScale::ZeroToOne.to_byte(-0.2), 0);
        assert_eq!(PixelScale::MinusOneToOne.to_byte(0.5), 191);
    }

    #[test]
    fn class_grid_has_a_name_strip_and_the_tiles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let device = Device::flex();
        let images = Tensor::<4>::ones([6, 1, 28, 28], &device);
        save_class_grid(images, &[3, 7], 3, PixelScale::MinusOneToOne, &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        // 3 tiles of 28 + 2 padding, plus 2; 2 rows likewise; plus the name strip.
        assert_eq!(image.dimensions(), (NAME_WIDTH + 92, 62));
        // A tile's pixel (value 1 -> white) and the grid's padding (black).
        assert_eq!(image.get_pixel(NAME_WIDTH + 5, 5).0, [255, 255, 255]);
        assert_eq!(image.get_pixel(NAME_WIDTH, 5).0, [0, 0, 0]);
        // Some text was drawn in the strip: not every pixel there is white.
        let dark = (0..NAME_WIDTH)
            .flat_map(|x| (0..62).map(move |y| (x, y)))
            .filter(|&(x, y)| image.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(dark > 20, "no class name drawn ({dark} dark pixels)");
    }
}
