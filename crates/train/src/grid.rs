//! Image grids: a batch of images tiled into one PNG.

use std::path::Path;

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use image::{GrayImage, Luma};

/// How pixel values of a tensor map to 0..255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelScale {
    /// Values in [-1, 1] (tanh outputs, GAN and diffusion data).
    MinusOneToOne,
    /// Values in [0, 1] (sigmoid outputs, VAE data).
    ZeroToOne,
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
    crate::fsutil::write_atomic_with(path, |tmp| {
        grid.save_with_format(tmp, image::ImageFormat::Png)
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
}
