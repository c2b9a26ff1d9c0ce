//! The conditional GAN of Mirza & Osindero (2014) on DCGAN networks: both players see the class
//! label y, so the generator learns p(x | y) and `G(z, y)` draws an image of a chosen class.
//!
//! - Generator: z and a learned label embedding e(y) in R^k are projected to 7x7 feature maps on
//!   separate branches, each with its own BatchNorm, then joined and upsampled as in DCGAN:
//!   `G(z, y) = up([BN(W_z z); BN(W_e e(y))])`. Normalising the noise branch on its own keeps z's
//!   share of the features fixed; with `[z, e(y)]` through one projection and one BatchNorm the
//!   generator can let the class fill all the variance and ignore z (one image per class).
//! - Discriminator: a second learned embedding maps y to a 28x28 map, given to the DCGAN
//!   discriminator as an extra input channel: `D(x, y) = D_dcgan([x; m(y)])`.
//!
//! The objectives are those of [`crate::gan_loss`], with both terms conditioned on y.

use burn::nn::conv::ConvTranspose2d;
use burn::nn::{BatchNorm, Embedding, EmbeddingConfig, Linear};
use burn::prelude::*;
use genmodels_kernels::Activation;
use genmodels_kernels::nn::{batch_norm, linear};

use crate::dcgan::{BASE_SIDE, Discriminator, DiscriminatorConfig, upsample_to_image};
pub use crate::dcgan::{DISCRIMINATOR, GENERATOR};
use crate::image_source::{Drawn, GridImages, ImageSource, PixelRange};
use crate::layers::{dcgan_batch_norm, dcgan_linear, dcgan_upsample, dcgan_weight_init};
use crate::noise::{device_normal, seeded_normal};

/// Side of the images and of the discriminator's label map.
const IMAGE_SIDE: usize = 28;

/// Builds a [`ConditionalGenerator`].
#[derive(Config, Debug)]
pub struct ConditionalGeneratorConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Size of the noise vector z.
    #[config(default = 100)]
    pub latent_dim: usize,
    /// Size k of the label embedding.
    #[config(default = 50)]
    pub embedding_dim: usize,
    /// Channels of the 7x7 map projected from z.
    #[config(default = 256)]
    pub noise_channels: usize,
    /// Channels of the 7x7 map projected from e(y).
    #[config(default = 64)]
    pub label_channels: usize,
}

/// G(z, y): noise and class -> image in `[-1, 1]`.
#[derive(Module, Debug)]
pub struct ConditionalGenerator {
    label_embedding: Embedding,
    project_noise: Linear,
    noise_norm: BatchNorm,
    project_label: Linear,
    label_norm: BatchNorm,
    upsample: ConvTranspose2d,
    upsample_norm: BatchNorm,
    to_image: ConvTranspose2d,
    num_classes: usize,
    latent_dim: usize,
    noise_channels: usize,
    label_channels: usize,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl crate::pytorch::PytorchNames for ConditionalGenerator {}

impl ConditionalGeneratorConfig {
    /// The label embedding ~ N(0, 1) (burn's default); every other layer as in DCGAN.
    pub fn init(&self, device: &Device) -> ConditionalGenerator {
        let map = BASE_SIDE * BASE_SIDE;
        let project = |inputs, channels: usize| dcgan_linear(inputs, channels * map, false, device);
        let joined = self.noise_channels + self.label_channels;
        let half = joined / 2;
        let up = |channels, bias| dcgan_upsample(channels, bias, device);
        ConditionalGenerator {
            label_embedding: EmbeddingConfig::new(self.num_classes, self.embedding_dim)
                .init(device),
            project_noise: project(self.latent_dim, self.noise_channels),
            noise_norm: dcgan_batch_norm(self.noise_channels, device),
            project_label: project(self.embedding_dim, self.label_channels),
            label_norm: dcgan_batch_norm(self.label_channels, device),
            upsample: up([joined, half], false),
            upsample_norm: dcgan_batch_norm(half, device),
            to_image: up([half, 1], true),
            num_classes: self.num_classes,
            latent_dim: self.latent_dim,
            noise_channels: self.noise_channels,
            label_channels: self.label_channels,
        }
    }
}

/// Looks up one embedding row per label: labels `[B]` -> `[B, dim]`.
fn embed(embedding: &Embedding, labels: Tensor<1, Int>) -> Tensor<2> {
    let [batch] = labels.dims();
    let rows = embedding.forward(labels.reshape([batch, 1])); // [B, 1, dim]
    rows.flatten(1, 2) // [B, dim]
}

impl ConditionalGenerator {
    /// Maps noise `[B, latent_dim]` and labels `[B]` to images `[B, 1, 28, 28]` in `[-1, 1]`.
    pub fn forward(&self, z: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<4> {
        let [batch, _] = z.dims();
        let to_map =
            |x: Tensor<2>, channels: usize| x.reshape([batch, channels, BASE_SIDE, BASE_SIDE]);
        let noise = to_map(linear(&self.project_noise, z), self.noise_channels); // [B, 256, 7, 7]
        let noise = batch_norm(&self.noise_norm, noise, Activation::Relu); // [B, 256, 7, 7]
        let e = embed(&self.label_embedding, labels); // [B, k]
        let label = to_map(linear(&self.project_label, e), self.label_channels); // [B, 64, 7, 7]
        let label = batch_norm(&self.label_norm, label, Activation::Relu); // [B, 64, 7, 7]
        let x = Tensor::cat(vec![noise, label], 1); // [B, 320, 7, 7]
        upsample_to_image(&self.upsample, &self.upsample_norm, &self.to_image, x) // [B, 1, 28, 28]
    }

    /// Draws `count` noise vectors from N(0, I): `[count, latent_dim]`.
    pub fn sample_latent(&self, count: usize, device: &Device) -> Tensor<2> {
        device_normal([count, self.latent_dim], device)
    }

    /// Size of the noise vector z.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// `count` images of `classes[i]` each, from noise drawn on the host from `seed`.
    pub fn draw_classes(&self, classes: &[usize], seed: u64, device: &Device) -> Tensor<4> {
        let count = classes.len();
        let z = seeded_normal([count, self.latent_dim], seed, device); // [count, latent_dim]
        self.forward(z, class_labels(classes, device)) // [count, 1, 28, 28]
    }

    /// The generator drawing only images of `class`.
    pub fn into_class(self, class: usize) -> OneClass {
        OneClass {
            generator: self,
            class,
        }
    }
}

/// Labels `[count]` for the classes, in order.
pub fn class_labels(classes: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = classes.iter().map(|&class| class as i64).collect();
    Tensor::from_data(TensorData::new(values, [classes.len()]), device)
}

/// `G(z, y)` with the classes in turn (image i asks for class i mod 10), so that every class
/// has the same share of a sample.
impl ImageSource for ConditionalGenerator {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::MinusOneToOne
    }

    fn describe(&self) -> String {
        format!(
            "G(z, y), z ~ N(0, I) in R^{}, y = 0, 1, ..., {} in turn",
            self.latent_dim,
            self.num_classes - 1
        )
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let classes: Vec<usize> = (0..count).map(|i| i % self.num_classes).collect();
        Drawn {
            images: self.draw_classes(&classes, seed, device),
            classes: Some(classes),
        }
    }

    /// One row per class, ten images a row, one z per column shared by every row, so that a
    /// column varies only the class.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        const PER_CLASS: usize = 10;
        let column_z = seeded_normal([PER_CLASS, self.latent_dim], seed, device); // [10, latent_dim]
        let z = column_z.repeat_dim(0, self.num_classes); // [10 classes * 10, latent_dim]
        let classes: Vec<usize> = (0..self.num_classes)
            .flat_map(|class| std::iter::repeat_n(class, PER_CLASS))
            .collect();
        GridImages {
            images: self.forward(z, class_labels(&classes, device)),
            columns: PER_CLASS,
            row_classes: Some((0..self.num_classes).collect()),
        }
    }
}

/// A conditional generator asked for one class only: [`ConditionalGenerator::into_class`].
pub struct OneClass {
    generator: ConditionalGenerator,
    class: usize,
}

impl ImageSource for OneClass {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::MinusOneToOne
    }

    fn describe(&self) -> String {
        let name = genmodels_data::CLASS_NAMES
            .get(self.class)
            .copied()
            .unwrap_or("?");
        format!(
            "G(z, y), z ~ N(0, I) in R^{}, y = {} ({name})",
            self.generator.latent_dim, self.class
        )
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let classes = vec![self.class; count];
        Drawn {
            images: self.generator.draw_classes(&classes, seed, device),
            classes: Some(classes),
        }
    }

    /// Rows of eight images of the class, the class named on each row.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        GridImages {
            images: self.draw(64, seed, device).images,
            columns: 8,
            row_classes: Some(vec![self.class; 8]),
        }
    }
}

/// Builds a [`ConditionalDiscriminator`].
#[derive(Config, Debug)]
pub struct ConditionalDiscriminatorConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Channels after the first convolution of the DCGAN discriminator.
    #[config(default = 64)]
    pub base_channels: usize,
}

/// D(x, y) as a logit: image and class -> `l(x, y)`, `D = sigmoid(l)`.
#[derive(Module, Debug)]
pub struct ConditionalDiscriminator {
    label_map: Embedding,
    discriminator: Discriminator,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl crate::pytorch::PytorchNames for ConditionalDiscriminator {}

impl ConditionalDiscriminatorConfig {
    /// A 28x28 label map per class, N(0, 0.02) like the convolutions it feeds, and a DCGAN
    /// discriminator over two channels (image, label map).
    pub fn init(&self, device: &Device) -> ConditionalDiscriminator {
        ConditionalDiscriminator {
            label_map: EmbeddingConfig::new(self.num_classes, IMAGE_SIDE * IMAGE_SIDE)
                .with_initializer(dcgan_weight_init())
                .init(device),
            discriminator: DiscriminatorConfig::new()
                .with_image_channels(2)
                .with_base_channels(self.base_channels)
                .init(device),
        }
    }
}

impl ConditionalDiscriminator {
    /// Maps images `[B, 1, 28, 28]` and labels `[B]` to logits `[B, 1]`.
    pub fn forward(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<2> {
        let [batch, ..] = images.dims();
        let map = embed(&self.label_map, labels); // [B, 784]
        let map = map.reshape([batch, 1, IMAGE_SIDE, IMAGE_SIDE]); // [B, 1, 28, 28]
        let x = Tensor::cat(vec![images, map], 1); // [B, 2, 28, 28]
        self.discriminator.forward(x) // [B, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes() {
        let device = Device::flex();
        let generator = ConditionalGeneratorConfig::new().init(&device);
        let labels = class_labels(&[0, 4, 9], &device);
        let z = generator.sample_latent(3, &device);
        assert_eq!(z.dims(), [3, 100]);
        let images = generator.forward(z, labels.clone());
        assert_eq!(images.dims(), [3, 1, 28, 28]);
        let discriminator = ConditionalDiscriminatorConfig::new().init(&device);
        assert_eq!(discriminator.forward(images, labels).dims(), [3, 1]);
    }

    #[test]
    fn parameter_count_matches_the_two_branches() {
        let device = Device::flex();
        let generator = ConditionalGeneratorConfig::new().init(&device);
        // burn counts a BatchNorm's running mean and variance beside gamma and beta: 4 vectors.
        let expected = 10 * 50 // label embedding
            + 100 * 256 * 49 + 4 * 256 // noise branch: projection (no bias), BatchNorm
            + 50 * 64 * 49 + 4 * 64 // label branch: projection (no bias), BatchNorm
            + 320 * 160 * 16 + 4 * 160 // transposed conv 320 -> 160 (no bias), BatchNorm
            + 160 * 16 + 1; // transposed conv 160 -> 1 with bias
        assert_eq!(generator.num_params(), expected);
    }

    #[test]
    fn the_generated_image_depends_on_the_label_and_only_through_it() {
        let device = Device::flex();
        device.seed(1);
        let generator = ConditionalGeneratorConfig::new().init(&device).valid();
        // One z repeated for all ten classes, and the same z and class twice.
        let z = generator.sample_latent(1, &device).repeat_dim(0, 12);
        let classes = class_labels(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3], &device);
        let images = generator.forward(z, classes);
        let pixels = images.into_data().try_to_vec::<f32>().unwrap();
        let image = |i: usize| &pixels[i * 784..(i + 1) * 784];
        let distance = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        for a in 0..10 {
            for b in (a + 1)..10 {
                assert!(
                    distance(image(a), image(b)) > 1e-3,
                    "classes {a} and {b} give the same image"
                );
            }
        }
        assert!(distance(image(10), image(11)) < 1e-6);
        assert!(distance(image(3), image(10)) < 1e-6);
    }

    #[test]
    fn the_discriminator_sees_the_label() {
        let device = Device::flex();
        device.seed(2);
        let discriminator = ConditionalDiscriminatorConfig::new().init(&device).valid();
        let images = Tensor::<4>::random([1, 1, 28, 28], Distribution::Uniform(-1.0, 1.0), &device)
            .repeat_dim(0, 2);
        let logits = discriminator
            .forward(images, class_labels(&[2, 7], &device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((logits[0] - logits[1]).abs() > 1e-6, "{logits:?}");
    }
}
