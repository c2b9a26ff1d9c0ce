//! One interface for everything that draws images: a GAN's generator, a VAE's decoder, a
//! diffusion model's network with its sampler.
//!
//! Epoch grids, the FID logged during training, `eval` and every example's `sample` subcommand
//! draw through [`ImageSource`], so a new generator plugs into all of them by implementing it.

use burn::tensor::{Device, Tensor};
pub use genmodels_data::PixelRange;

/// Images drawn from a model: `[B, C, 28, 28]` in the source's [`PixelRange`], with the class
/// each image was asked to be when the model is class-conditional.
pub struct Drawn {
    pub images: Tensor<4>,
    pub classes: Option<Vec<usize>>,
}

impl From<Tensor<4>> for Drawn {
    fn from(images: Tensor<4>) -> Self {
        Self {
            images,
            classes: None,
        }
    }
}

/// Images laid out as a figure: `columns` per row, row after row; `row_classes` names each
/// row's class when every row holds one class.
pub struct GridImages {
    pub images: Tensor<4>,
    pub columns: usize,
    pub row_classes: Option<Vec<usize>>,
}

/// Something that draws images.
pub trait ImageSource {
    /// The range of the pixel values [`ImageSource::draw`] returns.
    fn pixel_range(&self) -> PixelRange;

    /// How images are drawn, in words (`G(z), z ~ N(0, I) in R^100`).
    fn describe(&self) -> String;

    /// `count` images from noise drawn on the host from `seed`: the same images on every
    /// backend for the same seed.
    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn;

    /// The figure drawn after every training epoch: by default 64 images from `seed`, 8 a row.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        GridImages {
            images: self.draw(64, seed, device).images,
            columns: 8,
            row_classes: None,
        }
    }
}

impl<S: ImageSource + ?Sized> ImageSource for Box<S> {
    fn pixel_range(&self) -> PixelRange {
        (**self).pixel_range()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        (**self).draw(count, seed, device)
    }
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        (**self).grid(seed, device)
    }
}
